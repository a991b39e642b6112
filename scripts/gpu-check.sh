#!/usr/bin/env bash
# The CUDA check, run on a GPU machine from the repository root (one call of the device tool):
#   1. the four models' logits on CUDA against the mmaction2 fixtures (tests/fixtures/models),
#   2. PoseC3D training throughput against PyTorch eager on the same GPU (f32 and bf16),
#   3. forward timings of the four models against PyTorch on the same GPU,
#   4. `mgscope train` on CUDA for a few iterations, when a dataset was carried.
# SECTIONS picks parts (default 1234; 5 adds a TF32 run). scripts/gpu-pack.sh builds and packs
# what it expects, built on the CPU machine with ../shared/tools/cuda-toolchain.sh and carried:
#   .devbin/{mgscope,train,models}[.xz]  release binaries with --features cuda (no gui/video),
#   .pyref/   mmaction2 1.2 + mmengine + mmcv-lite sources (pure Python) for the PyTorch side,
#   .devdata/ optional: a dataset folder for step 4.
# Everything it prints also goes to $OUT/gpu-check.log.
set -u
out=${OUT:-/tmp}
exec > >(tee "$out/gpu-check.log") 2>&1
for f in .devbin/*.xz; do [[ -e $f ]] && xz -d -f -T0 "$f"; done
chmod +x .devbin/* 2>/dev/null
py=python3
site=$($py -c 'import site; print(site.getsitepackages()[0])')
libs=$(find "$site/nvidia" -maxdepth 3 -type d -name lib | tr '\n' ':')
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
export PYTHONPATH="$PWD/.pyref"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$py -c 'import torch, mmaction; print("torch", torch.__version__, "mmaction", mmaction.__version__)'
B=.devbin
fx=tests/fixtures/models

sections=${SECTIONS:-1234}
if [[ $sections == *1* ]]; then
echo "== 1. logits on CUDA against the mmaction2 fixtures"
compare() { # got want...
  $py - "$@" <<'EOF'
import sys, numpy as np
got = np.load(sys.argv[1]).reshape(-1)
want = np.concatenate([np.load(p).reshape(-1) for p in sys.argv[2:]])
rel = np.abs(got - want) / np.maximum(np.abs(want), 1.0)
print(f"  max relative difference {rel.max():.3e} over {want.size} logits")
EOF
}
for spec in posec3d-joint36:posec3d_small slowonly-r50-rgb:slowonly_rgb_small \
  swin-t:swin_small_shift swin-t:swin_short_clip; do
  arch=${spec%%:*} case=${spec#*:}
  echo "$arch $case"
  $B/mgscope probe infer --arch "$arch" --checkpoint $fx/$case/model.pth \
    --input $fx/$case/input.npy --out /tmp/$case.npy --device cuda:0 &&
    compare /tmp/$case.npy $fx/$case/logits.npy
done
echo "rgbpose-conv3d rgbpose_small"
$B/mgscope probe infer --arch rgbpose-conv3d --checkpoint $fx/rgbpose_small/model.pth \
  --input $fx/rgbpose_small/input.npy --input-pose $fx/rgbpose_small/input_pose.npy \
  --out /tmp/rgbpose.npy --device cuda:0 &&
  compare /tmp/rgbpose.npy $fx/rgbpose_small/logits_rgb.npy $fx/rgbpose_small/logits_pose.npy

fi
t() { timeout "$@" || echo "  (exit $? — timed out or failed)"; }
if [[ $sections == *2* ]]; then
echo "== 2. training throughput, PoseC3D joint36 batch 8 (ratio = candle / PyTorch eager)"
t 150 $B/train --device cuda:0 --threads 16 --reps 10 --python $py
t 150 $B/train --device cuda:0 --threads 16 --reps 10 --python $py --amp bf16
[[ $sections == *5* ]] && MGSCOPE_TF32=1 t 150 $B/train --device cuda:0 --threads 16 --reps 10 --python $py
fi
if [[ $sections == *3* ]]; then
echo "-- the same first step on this machine's CPU (same weights, input and dropout): loss and gradient norm against CUDA's"
t 200 $B/train --device cpu --threads 16 --reps 1 --python /bin/false
echo "-- A/B of the CUDA conv3d paths, candle side only"
MGSCOPE_CONV3D=conv2d-autograd t 100 $B/train --device cuda:0 --reps 3 --python /bin/false
MGSCOPE_CONV3D=im2col t 100 $B/train --device cuda:0 --reps 3 --python /bin/false
fi
if [[ $sections == *2* ]]; then
echo "-- Video Swin-T training step, batch 8 × 3×32×224²"
t 150 $B/train --device cuda:0 --threads 16 --reps 3 --python $py --arch swin-t

fi
if [[ $sections == *4* ]]; then
echo "== 3. forward per view"
t 200 $B/models --device cuda:0 --threads 16 --reps 10 --python $py

fi
if [[ -d .devdata ]]; then
  echo "== 4. mgscope train on CUDA"
  ds=$(ls -d .devdata/*/ | head -n 1)
  $B/mgscope train "$ds" --preset posec3d-joint-tiny --device cuda:0 --out /tmp/run-cuda \
    ${MGSCOPE_TRAIN_EXTRA:-} && tail -n 3 /tmp/run-cuda/val.jsonl && cp /tmp/run-cuda/*.jsonl "$out"/
fi
