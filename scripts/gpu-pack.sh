#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs and packs it for the device tool:
#   .devbin/{mgscope,train,models}.xz  release binaries with --features cuda (no gui, no video),
#   .pyref/                            mmaction2 1.2 + mmengine + mmcv-lite sources (pure Python).
# Then:  device run `bash scripts/gpu-check.sh`, carry [".devbin", ".pyref"].
# Both folders must be in .git/info/exclude. CARGO_TARGET_DIR defaults to /work/cuda-target (the
# first build compiles candle's kernels: about 15 minutes on 2 cores).
#
# The PyPI nvcc the toolchain installs is the newest 13.x, whose PTX the GPU machine's driver
# may refuse (CUDA_ERROR_UNSUPPORTED_PTX_VERSION: nvcc 13.5 writes ISA 9.5, driver 580 reads up
# to 9.0). PTX_VERSION rewrites the `.version` line of the embedded PTX to that ISA (same
# length, so the binary stays valid); the kernels use no newer instruction.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-/work/cuda-target}
ptx=${PTX_VERSION:-9.0}
eval "$(../shared/tools/cuda-toolchain.sh)"
export CARGO_TARGET_DIR=$target
cargo build --release --no-default-features --features cuda --bin mgscope
json=$(cargo bench --no-run --no-default-features --features cuda --bench train --bench models \
  --message-format=json 2>/dev/null)
mkdir -p .devbin
cp "$target/release/mgscope" .devbin/mgscope
for b in train models; do
  exe=$(grep -o "\"executable\":\"[^\"]*/$b-[^\"]*\"" <<<"$json" | tail -n 1 | cut -d'"' -f4)
  cp "$exe" ".devbin/$b"
done
for f in .devbin/mgscope .devbin/train .devbin/models; do
  strip "$f"
  python3 - "$f" "$ptx" <<'EOF'
import re, sys
path, want = sys.argv[1], sys.argv[2].encode()
data = open(path, 'rb').read()
def fix(m):
    old = m.group(1)
    return b'.version ' + (want if len(want) == len(old) else old) + b'\n'
new, n = re.subn(rb'\.version (\d+\.\d+)\n', fix, data)
open(path, 'wb').write(new)
print(f'{path}: {n} PTX modules set to ISA {want.decode()}')
EOF
  xz -T2 -6 -f "$f"
done
# The reference implementation for the PyTorch side, from ../shared/tools/reference-env.sh's venv.
py=$(../shared/tools/reference-env.sh)
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf .pyref && mkdir -p .pyref
for d in mmaction mmengine mmcv addict yapf yapf_third_party termcolor platformdirs; do
  cp -r "$site/$d" .pyref/
done
find .pyref -name __pycache__ -prune -exec rm -rf {} +
# mmaction2 imports the importlib_metadata backport; the stdlib module serves, except that the
# GPU image's transformers 5 must read as absent (it breaks mmaction2's optional VindLU import).
cat >.pyref/importlib_metadata.py <<'EOF'
"""Stand-in for the importlib_metadata backport mmaction2 imports: the stdlib module, except
that transformers reads as absent (the GPU image's transformers 5 cannot serve mmaction2's
multimodal models, which the benchmarks do not use)."""
from importlib.metadata import *  # noqa: F401,F403
from importlib.metadata import PackageNotFoundError, version  # noqa: F401
from importlib.metadata import distribution as _distribution


def distribution(name):
    if name == 'transformers':
        raise PackageNotFoundError(name)
    return _distribution(name)
EOF
du -sh .devbin .pyref
