#!/usr/bin/env python3
"""Make the parity fixtures for mgscope's modality module (heatmaps, pose pipeline, Taylor).

Run with the reference environment:

    py=$(bash ../shared/tools/reference-env.sh)
    target/debug/mgscope demo /tmp/demo      # the built-in seed; Taylor frames come from it
    $py tools/make_modality_fixtures.py --taylor-video /tmp/demo/release/0001/0001.mp4
        [--out tests/fixtures/modality] [--data ../shared/data/real]
        [--numpy1-python PY]     # a python with numpy 1.x only (python3 -m venv v &&
                                 # v/bin/pip install 'numpy<2'), for the np1_* fixtures

What produces each expected output:

* Heatmaps and pipeline steps: the real mmaction2 1.2.0 classes (`GeneratePoseTarget`,
  `UniformSampleFrames`, `PoseDecode`, `PoseCompact`, `Resize`, `CenterCrop`, `Flip`), called on
  real OpenPose keypoints (Pose2Sim cam01, BODY_25B ids 0-16 = COCO-17) and on seeded synthetic
  36-keypoint iMiGUE clips. pyskl's `GeneratePoseTarget` is the same code with EPS = 1e-3; the
  fixtures set `eps` on the mmaction2 object to choose between the two.
* Taylor videos: MM-Gesture's `dataset/tools/taylor.py` and the official notebook
  (`LeiWangR/video-ar : taylor-video.ipynb`, `videoConvert` + `preprocess_tensor`) are not
  installable, so they are re-implemented here, operation by operation and dtype by dtype, in
  torch on the CPU (taylor.py with --fp32; the notebook in float64), from their source text (see
  ../shared/reference/mm-gesture.md §5.2 and models.md §5.1). A vectorised numpy version of the
  same maths is checked against them; it is also the reference the benchmark times. Their input
  is ten frames of the demo dataset's first video (our own rendering, so the pixels may live in
  the repository; ../shared/data's videos may not), a 320x180 crop around the figure reduced to 80x45, where it moves most.
* Numpy legacy RandomState draws (MT19937) for the bit-exact test-mode sampler.
* `np1_*`: the same mmaction2 class source (GeneratePoseTarget, PoseCompact; taken verbatim via
  `ast` from the installed file) run under NumPy 1.x, whose scalar promotion rounds differently
  (what pyskl / MM-Gesture ran on). Needs --numpy1-python; other fixtures do not.
* `npexp_*`: NumPy's own exp on this CPU (its float32 SIMD kernel and, on AVX-512, SVML float64).

Heatmap outputs are stored sparsely (flat indices of non-zeros + their float32 values) to keep
the fixtures small. Every case has a `_meta.npy` float64 vector whose layout is documented at
the writer below (`save_heatmap_case`).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys

import cv2
import numpy as np
import torch

from mmaction.datasets.transforms import (CenterCrop, Flip, GeneratePoseTarget, PoseCompact,
                                          PoseDecode, Resize, UniformSampleFrames)

# mmaction2 1.2.0's PoseCompact still spells np.Inf, which NumPy 2 removed; restore the alias
# (same value) so the unmodified class runs in the reference environment.
if not hasattr(np, 'Inf'):
    np.Inf = np.inf

COCO_LEFT_KP = (1, 3, 5, 7, 9, 11, 13, 15)
COCO_RIGHT_KP = (2, 4, 6, 8, 10, 12, 14, 16)

# mm-gesture.md §2.2 (MM-Gesture pyskl/configs/posec3d/slowonly_r50_iMiGUE_36/limb.py)
IMIGUE_LEFT_KP = [17, 8, 10, 12, 13, 20, 2, 3, 4, 30, 31, 32, 33, 34, 35]
IMIGUE_RIGHT_KP = [18, 9, 11, 16, 15, 22, 5, 6, 7, 24, 25, 26, 27, 28, 29]
IMIGUE_SKELETON = [(0, 1), (0, 8), (8, 10), (0, 9), (9, 11),
                   (19, 17), (19, 18), (17, 12), (12, 13), (13, 14), (18, 16), (16, 15), (15, 14),
                   (20, 21), (21, 22), (22, 23), (23, 20),
                   (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
                   (4, 30), (30, 31), (30, 32), (30, 33), (30, 34), (30, 35),
                   (7, 24), (24, 25), (24, 26), (24, 27), (24, 28), (24, 29),
                   (0, 19)]
IMIGUE_LEFT_LIMB = [1, 2, 5, 7, 8, 9, 13, 16, 17, 18, 19, 23, 24, 25, 26, 27, 28]
IMIGUE_RIGHT_LIMB = [3, 4, 6, 10, 11, 12, 14, 15, 20, 21, 22, 29, 30, 31, 32, 33, 34]

OUT = None
DATA = None


def save(name, arr):
    np.save(os.path.join(OUT, name + '.npy'), arr)


# ---------------------------------------------------------------------------------------------
# Real keypoints
# ---------------------------------------------------------------------------------------------
def load_pose2sim(json_dir):
    """OpenPose BODY_25B JSON -> COCO-17 keypoints [M, T, 17, 2] f32 and scores [M, T, 17]."""
    files = sorted(glob.glob(os.path.join(json_dir, '*.json')))
    frames = [json.load(open(f))['people'] for f in files]
    m = max(len(p) for p in frames)
    t = len(frames)
    kp = np.zeros((m, t, 17, 2), np.float32)
    sc = np.zeros((m, t, 17), np.float32)
    for ti, people in enumerate(frames):
        for mi, person in enumerate(people):
            a = np.array(person['pose_keypoints_2d'], np.float32).reshape(-1, 3)[:17]
            kp[mi, ti] = a[:, :2]
            sc[mi, ti] = a[:, 2]
    return kp, sc


# ---------------------------------------------------------------------------------------------
# Heatmaps
# ---------------------------------------------------------------------------------------------
def run_gpt(kp, score, img_hw, *, sigma, kind, double, use_score=True, scaling=1.0, eps=1e-3,
            skeleton='coco17'):
    kw = dict(sigma=sigma, use_score=use_score, with_kp=(kind == 'joint'),
              with_limb=(kind == 'limb'), double=double, scaling=scaling)
    if skeleton == 'imigue36':
        kw.update(skeletons=IMIGUE_SKELETON, left_kp=IMIGUE_LEFT_KP, right_kp=IMIGUE_RIGHT_KP,
                  left_limb=IMIGUE_LEFT_LIMB, right_limb=IMIGUE_RIGHT_LIMB)
    gpt = GeneratePoseTarget(**kw)
    gpt.eps = eps  # pyskl uses 1e-3; mmaction2's own default is 1e-4
    results = {'keypoint': kp.copy(), 'img_shape': img_hw}
    if score is not None:
        results['keypoint_score'] = score.copy()
    return gpt.transform(results)['imgs']


def save_heatmap_case(name, kp, score, img_hw, **kw):
    hm = run_gpt(kp, score, img_hw, **kw)
    assert hm.dtype == np.float32
    flat = hm.ravel()
    nz = np.flatnonzero(flat)
    save(f'hm_{name}_kp', kp.astype(np.float32))
    if score is not None:
        save(f'hm_{name}_score', score.astype(np.float32))
    save(f'hm_{name}_nzidx', nz.astype(np.int32))
    save(f'hm_{name}_nzval', flat[nz].astype(np.float32))
    # meta layout: [img_h, img_w, sigma, scaling, kind (0 joint, 1 limb), double, use_score,
    #               eps, out_T, out_C, out_H, out_W, skeleton (0 coco17, 1 imigue36), has_score]
    meta = np.array([img_hw[0], img_hw[1], kw['sigma'], kw.get('scaling', 1.0),
                     0 if kw['kind'] == 'joint' else 1, int(kw['double']),
                     int(kw.get('use_score', True)), kw.get('eps', 1e-3), *hm.shape,
                     0 if kw.get('skeleton', 'coco17') == 'coco17' else 1,
                     int(score is not None)], np.float64)
    save(f'hm_{name}_meta', meta)
    print(f'heatmap {name}: shape {hm.shape}, nonzeros {len(nz)}, max {flat.max():.4f}')


def synthetic_imigue(seed, m, t, size):
    """Random 36-keypoint clips with the awkward cases: missing (0,0) points with score 0, low
    scores on both sides of both EPS values, nearly coincident limb ends (d(A,B) < 1), points off
    the canvas, and points exactly on integer pixels."""
    rs = np.random.RandomState(seed)
    kp = rs.uniform(-0.1 * size, 1.1 * size, (m, t, 36, 2)).astype(np.float32)
    sc = rs.uniform(0.05, 1.0, (m, t, 36)).astype(np.float32)
    kp[..., 0, :] = np.round(kp[..., 0, :])                       # integer centres
    kp[:, :, 30] = kp[:, :, 4] + rs.uniform(-0.6, 0.6, (m, t, 2)).astype(np.float32)
    kp[:, :, 24] = kp[:, :, 7] + rs.uniform(-0.4, 0.4, (m, t, 2)).astype(np.float32)
    miss = rs.rand(m, t, 36) < 0.1
    kp[miss] = 0
    sc[miss] = 0
    low = rs.rand(m, t, 36) < 0.08
    sc[low] = rs.choice(np.array([5e-5, 9.9e-5, 1e-4, 5e-4, 9.99e-4, 1e-3, 2e-3], np.float32),
                        low.sum())
    return kp, sc


def heatmap_fixtures(kp_real, sc_real):
    # Real keypoints through the mmaction2 test pipeline (PoseCompact, Resize, CenterCrop) so the
    # heatmaps are drawn where PoseC3D draws them.
    sel = kp_real[:, 30:42], sc_real[:, 30:42]
    r = {'keypoint': sel[0].copy(), 'keypoint_score': sel[1].copy(), 'img_shape': (1920, 1080),
         'total_frames': 12}
    r = PoseCompact(hw_ratio=1., allow_imgpad=True).transform(r)
    r64 = Resize(scale=(-1, 64)).transform(dict(r))
    r64 = CenterCrop(64).transform(r64)
    kp64 = r64['keypoint'].astype(np.float32)
    save_heatmap_case('coco_joint64', kp64[:, :6], r64['keypoint_score'][:, :6], (64, 64),
                      sigma=0.6, kind='joint', double=False)
    save_heatmap_case('coco_limb64_double', kp64[:, 6:12], r64['keypoint_score'][:, 6:12],
                      (64, 64), sigma=0.6, kind='limb', double=True)
    # RGBPoseConv3D style: 256x256 canvas drawn at scaling 0.25, sigma 0.7.
    r256 = Resize(scale=(256, 256), keep_ratio=False).transform(dict(r))
    kp256 = r256['keypoint'].astype(np.float32)
    save_heatmap_case('coco_joint_s025_double', kp256[:, :4], r256['keypoint_score'][:, :4],
                      (256, 256), sigma=0.7, kind='joint', double=True, scaling=0.25)
    # Odd canvas, scaling that rounds, no scores given, mmaction2's EPS.
    r57 = Resize(scale=(45, 57), keep_ratio=False).transform(dict(r))
    kp57 = r57['keypoint'].astype(np.float32)
    save_heatmap_case('coco_limb_noscore', kp57[:, :4], None, (57, 45), sigma=0.6,
                      kind='limb', double=False, scaling=0.7, eps=1e-4)
    save_heatmap_case('coco_limb_usescore0', kp57[:, 4:6], r57['keypoint_score'][:, 4:6],
                      (57, 45), sigma=1.1, kind='limb', double=True, use_score=False)

    kp36, sc36 = synthetic_imigue(36, 2, 4, 48)
    save_heatmap_case('imigue_joint_double', kp36, sc36, (48, 48), sigma=0.6, kind='joint',
                      double=True, skeleton='imigue36')
    kp36s, sc36s = synthetic_imigue(37, 2, 2, 32)
    save_heatmap_case('imigue_limb_double', kp36s, sc36s, (32, 32), sigma=0.6, kind='limb',
                      double=True, skeleton='imigue36')
    save_heatmap_case('imigue_limb_eps4', kp36s[:1], sc36s[:1], (32, 32), sigma=0.8,
                      kind='limb', double=False, skeleton='imigue36', eps=1e-4)
    kp36b, sc36b = synthetic_imigue(7, 1, 3, 256)
    save_heatmap_case('imigue_joint_s025', kp36b, sc36b, (256, 256), sigma=0.7, kind='joint',
                      double=False, scaling=0.25, skeleton='imigue36')


# ---------------------------------------------------------------------------------------------
# Pipeline steps
# ---------------------------------------------------------------------------------------------
def save_stage(case, step, r):
    kp = r['keypoint']
    h, w = r['img_shape']
    save(f'pipe_{case}_{step}_kp', kp.astype(np.float64))
    if 'keypoint_score' in r:
        save(f'pipe_{case}_{step}_score', r['keypoint_score'].astype(np.float32))
    # meta layout: [img_h, img_w, keypoint dtype (0 float32, 1 float64)]
    save(f'pipe_{case}_{step}_meta',
         np.array([h, w, 0 if kp.dtype == np.float32 else 1], np.float64))


def pipeline_fixtures(kp_real, sc_real):
    save('pipe_real_input_kp', kp_real)
    save('pipe_real_input_score', sc_real)
    r = {'keypoint': kp_real.copy(), 'keypoint_score': sc_real.copy(), 'img_shape': (1920, 1080),
         'total_frames': kp_real.shape[1], 'modality': 'Pose'}
    r = UniformSampleFrames(clip_len=16, num_clips=1, test_mode=True).transform(r)
    save('pipe_real_frame_inds', r['frame_inds'].astype(np.int64))
    r = PoseDecode().transform(r)
    save_stage('real', 's0_decode', r)
    r = PoseCompact(hw_ratio=1., allow_imgpad=True).transform(r)
    save_stage('real', 's1_compact', r)
    r = Resize(scale=(-1, 64)).transform(r)
    save_stage('real', 's2_resize', r)
    r = CenterCrop(64).transform(r)
    save_stage('real', 's3_centercrop', r)
    r = Flip(flip_ratio=1.0, left_kp=COCO_LEFT_KP, right_kp=COCO_RIGHT_KP).transform(r)
    save_stage('real', 's4_flip', r)
    r = Resize(scale=(56, 56), keep_ratio=False).transform(r)
    save_stage('real', 's5_resize56', r)
    hm = run_gpt(r['keypoint'].astype(np.float32), r['keypoint_score'], r['img_shape'],
                 sigma=0.6, kind='joint', double=False)
    flat = hm.ravel()
    nz = np.flatnonzero(flat)
    save('pipe_real_hm_nzidx', nz.astype(np.int32))
    save('pipe_real_hm_nzval', flat[nz])
    save('pipe_real_hm_shape', np.array(hm.shape, np.int64))

    # Variant: no imgpad, no ratio, other padding; exact-size resize; float scale.
    r = {'keypoint': kp_real[:, :8].copy(), 'keypoint_score': sc_real[:, :8].copy(),
         'img_shape': (1920, 1080), 'modality': 'Pose'}
    r = PoseCompact(padding=0.1, hw_ratio=None, allow_imgpad=False).transform(r)
    save_stage('realb', 's1_compact', r)
    r = Resize(scale=(64, 48), keep_ratio=False).transform(r)
    save_stage('realb', 's2_resize', r)
    r = Resize(scale=0.5).transform(r)
    save_stage('realb', 's3_resize_half', r)
    r = CenterCrop((40, 20)).transform(r)
    save_stage('realb', 's4_centercrop', r)

    # Variant: hw_ratio as a range with imgpad; keep-ratio tuple resize.
    r = {'keypoint': kp_real[:, 50:54].copy(), 'keypoint_score': sc_real[:, 50:54].copy(),
         'img_shape': (1920, 1080), 'modality': 'Pose'}
    r = PoseCompact(padding=0.3, hw_ratio=(0.75, 1.5), allow_imgpad=True).transform(r)
    save_stage('realc', 's1_compact', r)
    r = Resize(scale=(100, 64)).transform(r)
    save_stage('realc', 's2_resize', r)

    # Synthetic iMiGUE clip with missing points through compact, resize, flip.
    kp36, sc36 = synthetic_imigue(5, 2, 3, 700)
    kp36[0, 1] = 0  # a frame with nobody
    save('pipe_syn_input_kp', kp36)
    save('pipe_syn_input_score', sc36)
    r = {'keypoint': kp36.copy(), 'keypoint_score': sc36.copy(), 'img_shape': (720, 1280),
         'modality': 'Pose'}
    r = PoseCompact(hw_ratio=1., allow_imgpad=True).transform(r)
    save_stage('syn', 's1_compact', r)
    r = Resize(scale=(-1, 64)).transform(r)
    save_stage('syn', 's2_resize', r)
    r = Flip(flip_ratio=1.0, left_kp=IMIGUE_LEFT_KP, right_kp=IMIGUE_RIGHT_KP).transform(r)
    save_stage('syn', 's3_flip', r)

    # A box below the threshold: PoseCompact leaves everything unchanged.
    tiny = np.zeros((1, 2, 5, 2), np.float32)
    tiny[0, :, :, 0] = [[100, 101, 102, 103, 104], [100, 100, 100, 100, 108]]
    tiny[0, :, :, 1] = 200
    save('pipe_tiny_input_kp', tiny)
    r = PoseCompact(hw_ratio=1., allow_imgpad=True).transform(
        {'keypoint': tiny.copy(), 'img_shape': (300, 400)})
    save_stage('tiny', 's1_compact', r)


# ---------------------------------------------------------------------------------------------
# Sampling and numpy RandomState
# ---------------------------------------------------------------------------------------------
def sampling_fixtures():
    cases = [(100, 48, 1), (100, 48, 10), (60, 48, 10), (30, 48, 10), (5, 48, 10), (96, 48, 1),
             (48, 48, 1), (1000, 32, 10), (7, 7, 3), (95, 48, 2), (1, 8, 2), (300, 48, 10)]
    save('sampling_cases', np.array(cases, np.int64))
    for i, (n, l, c) in enumerate(cases):
        r = UniformSampleFrames(clip_len=l, num_clips=c, test_mode=True).transform(
            {'total_frames': n, 'start_index': 0})
        save(f'sampling_inds_{i}', r['frame_inds'].astype(np.int64))
    rs = np.random.RandomState(255)
    save('mt_seed255_u32', rs.randint(0, 2 ** 32, size=1000, dtype=np.uint64).astype(np.int64))
    rs = np.random.RandomState(0)
    save('mt_seed0_rand', rs.rand(50))
    rs = np.random.RandomState(1234)
    save('mt_seed1234_perm50', rs.permutation(50).astype(np.int64))
    rs = np.random.RandomState(7)
    bsize = np.array([1, 2, 3, 4, 5, 7, 8, 9, 100, 1000, 65537, 2 ** 31 + 5, 2 ** 40 + 3, 6],
                     np.int64)
    save('mt_seed7_bsize', bsize)
    save('mt_seed7_randint', rs.randint(bsize).astype(np.int64))
    rs = np.random.RandomState(42)
    save('mt_seed42_choice', rs.choice(49, 20, replace=False).astype(np.int64))
    rs = np.random.RandomState(2 ** 32 - 1)
    save('mt_seedmax_randint', np.array([rs.randint(0, 10) for _ in range(30)] +
                                        [rs.randint(-5, 3) for _ in range(30)], np.int64))


# ---------------------------------------------------------------------------------------------
# Taylor videos
# ---------------------------------------------------------------------------------------------
def taylor_py_fp32(frames_bgr, terms=3, tprime=0):
    """MM-Gesture dataset/tools/taylor.py video_convert_fast, CPU, --fp32, returning the frames
    it would pipe to ffmpeg (uint8) and the float tensor handed to preprocess_tensor."""
    dtype = torch.float32
    if tprime <= terms + 3:
        tprime = terms + 3
    length = terms + 3
    gray = [torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)).to('cpu', dtype).div_(255.0)
            for f in frames_bgr]
    if len(gray) < length:
        raise RuntimeError('Unexpected EOF while priming buffer')
    h, w = gray[0].shape
    fd = torch.zeros((length, length, h, w), dtype=dtype)
    fd[0, :length] = torch.stack(gray[:length])
    for k in range(1, length):
        fd[k, :length - k] = torch.diff(fd[k - 1, :length - k + 1], dim=0)
    factorial = torch.tensor([math.factorial(i) for i in range(terms)], dtype=dtype)
    total = len(frames_bgr) - tprime + 1
    outs, floats = [], []
    nxt = length
    for idx in range(total):
        base = fd[0, 0]
        xa = fd[0, :length] - base
        powers = torch.stack([(xa ** i) / factorial[i] for i in range(terms)])
        powers_sum = torch.sum(powers, dim=1)
        t1 = torch.sum(powers_sum * fd[1:terms + 1, 0], dim=0)
        t2 = torch.sum(powers_sum * fd[2:terms + 2, 0], dim=0)
        t3 = torch.sum(powers_sum * fd[3:terms + 3, 0], dim=0)
        rgb = torch.stack((t1, t2, t3), dim=-1) / tprime
        floats.append(rgb.numpy().copy())
        outs.append(mm_preprocess_tensor(rgb).numpy())
        if idx + 1 == total:
            break
        fd = torch.roll(fd, shifts=-1, dims=1)
        fd[0, length - 1] = gray[nxt]
        nxt += 1
        j = length - 1
        for k in range(1, length):
            fd[k, j - k].copy_(fd[k - 1, j - k + 1] - fd[k - 1, j - k])
    return np.stack(outs), np.stack(floats)


@torch.jit.script
def mm_preprocess_tensor(t: torch.Tensor) -> torch.Tensor:
    # taylor.py's jit-scripted normaliser; TorchScript lowers 255.0 / mx to reciprocal(mx) * 255
    t = torch.clamp(t, min=0)
    mx = torch.max(t)
    if float(mx) > 0:
        t = t * (255.0 / mx)
    return t.to(torch.uint8)


def nb_preprocess_tensor(tensor):
    # taylor-video.ipynb preprocess_tensor (per channel)
    tensor[tensor < 0] = 0
    max_val = tensor.max()
    if max_val > 0:
        tensor = (tensor * 255 / max_val).to(torch.uint8)
    else:
        tensor = tensor.to(torch.uint8)
    return tensor


def taylor_notebook(frames_bgr, terms=3, tprime=0):
    """taylor-video.ipynb videoConvert (float64 table), returning uint8 frames and the float64
    channels before preprocess_tensor."""
    if tprime <= terms + 3:
        tprime = terms + 3
    vidlength = len(frames_bgr)

    def gray(i):
        return torch.div(torch.from_numpy(cv2.cvtColor(frames_bgr[i], cv2.COLOR_BGR2GRAY)), 255.0)

    norm_g = gray(0)
    h, w = norm_g.shape
    length = terms + 3
    fdl = torch.zeros((length, length, h, w), dtype=torch.float64)
    fdl[0, 0] = norm_g
    for inc in range(1, terms + 3):
        fdl[0, inc] = gray(inc)
    nxt = terms + 3
    img = torch.zeros(((vidlength - tprime + 1), h, w, 3), dtype=torch.uint8)
    floats = np.zeros(((vidlength - tprime + 1), h, w, 3), np.float64)
    for seq in range(0, vidlength - tprime + 1):
        if seq == 0:
            for li in range(1, terms + 3):
                fdl[li] = torch.nn.functional.pad(fdl[li - 1, 1:] - fdl[li - 1, :-1],
                                                  (0, 0, 0, 0, 0, 1))
        if seq != 0:
            fdl = torch.roll(fdl, -1, 1)
            fdl[0, length - 1] = gray(nxt)
            nxt += 1
            for li in range(1, terms + 3):
                fdl[li, length - 1 - li] = fdl[li - 1, length - li] - fdl[li - 1, length - 1 - li]
        t1 = 0
        t2 = 0
        t3 = 0
        dummy = fdl[0, 0].unsqueeze(0).repeat(length, 1, 1)
        xa = fdl[0] - dummy
        for b in range(0, terms):
            part = torch.div(torch.pow(xa, b), math.factorial(b))
            t1 += torch.mul(torch.sum(part, 0), fdl[b + 1, 0])
            t2 += torch.mul(torch.sum(part, 0), fdl[b + 2, 0])
            t3 += torch.mul(torch.sum(part, 0), fdl[b + 3, 0])
        for c, t in enumerate((t1, t2, t3)):
            v = t / tprime
            floats[seq, :, :, c] = v.numpy()
            img[seq, :, :, c] = nb_preprocess_tensor(v.clone())
    return img.numpy(), floats


def taylor_numpy(gray_u8, terms=3, tprime=0, dtype=np.float32, per_channel=False):
    """Vectorised numpy version of the same maths (same dtypes, same summation order)."""
    if tprime <= terms + 3:
        tprime = terms + 3
    length = terms + 3
    n = gray_u8.shape[0] - tprime + 1
    g = (gray_u8.astype(np.float32) / np.float32(255)).astype(dtype)
    win = np.stack([g[j:j + n] for j in range(length)])          # (L, n, H, W)
    d = [win]
    for k in range(1, length):
        d.append(d[-1][1:] - d[-1][:-1])
    xa = win - win[0]
    fact = [math.factorial(i) for i in range(terms)]
    s = []
    for i in range(terms):
        if i == 0:
            p = np.ones_like(xa)
        elif i == 1:
            p = xa
        elif i == 2:
            p = xa * xa
        else:
            p = xa * xa * xa if i == 3 else xa ** i
        p = p / dtype(fact[i])
        acc = p[0].copy()
        for j in range(1, length):
            acc = acc + p[j]
        s.append(acc)
    chans = []
    for c in range(3):
        acc = s[0] * d[c + 1][0]
        for i in range(1, terms):
            acc = acc + s[i] * d[c + 1 + i][0]
        chans.append(acc / dtype(tprime))
    f = np.stack(chans, -1)
    c = np.clip(f, 0, None)
    if per_channel:
        mx = c.max(axis=(1, 2), keepdims=True)
        q = np.where(mx > 0, c * dtype(255) / np.where(mx > 0, mx, 1), c)
    else:
        mx = c.max(axis=(1, 2, 3), keepdims=True)
        scale = (dtype(1) / np.where(mx > 0, mx, 1)) * dtype(255)
        q = np.where(mx > 0, c * scale, c)
    return q.astype(np.uint8), f


def report_numpy_vs_torch(what, u8, nu8, fl, nfl):
    # torch's CPU sum kernel (SumKernel.cpp cascade_sum) adds a column's rows in order for the
    # vectorised columns but uses row_sum's 4-way interleaved order for the last
    # (H*W mod 4*lanes) columns; the sequential numpy version differs there in the last bit.
    # Only those pixels may differ, and by at most one level after quantisation.
    du = np.abs(u8.astype(np.int16) - nu8.astype(np.int16))
    assert du.max() <= 1, what
    print(f'  {what}: numpy-vs-torch float diffs {np.sum(fl != nfl)}, uint8 off-by-one '
          f'{np.sum(du == 1)}')


def taylor_fixtures(video, start):
    cap = cv2.VideoCapture(video)
    frames = []
    while len(frames) < start + 10:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    sel = frames[start:start + 10]
    assert len(sel) == 10, f'{video} has fewer than {start + 10} frames'
    # the figure's head, arm and hands (x, y, w, h in the 640x360 frame), reduced 4x
    x, y, w, h = 200, 40, 320, 180
    small = [cv2.resize(f[y:y + h, x:x + w], (80, 45), interpolation=cv2.INTER_AREA) for f in sel]
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in small])
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in small])
    save('taylor_input_rgb', rgb)
    save('taylor_gray', gray)
    for k in (2, 3, 4):
        u8, fl = taylor_py_fp32(small, terms=k)
        nu8, nfl = taylor_numpy(gray, terms=k)
        report_numpy_vs_torch(f'taylor.py K={k}', u8, nu8, fl, nfl)
        save(f'taylor_mm_k{k}_u8', u8)
        if k == 3:
            save('taylor_mm_k3_f32', fl[:3].astype(np.float32))
        print(f'taylor.py K={k}: {u8.shape}, mean {u8.mean():.2f}, '
              f'non-zero {(u8 > 0).mean():.3f}')
    for k in (2, 3):
        u8, fl = taylor_notebook(small, terms=k)
        nu8, nfl = taylor_numpy(gray, terms=k, dtype=np.float64, per_channel=True)
        report_numpy_vs_torch(f'notebook K={k}', u8, nu8, fl, nfl)
        save(f'taylor_nb_k{k}_u8', u8)
        if k == 3:
            save('taylor_nb_k3_f64', fl[:2])
        print(f'notebook K={k}: {u8.shape}, mean {u8.mean():.2f}')
    # tprime larger than the window: fewer output frames, same window, other divisor.
    u8, _ = taylor_py_fp32(small, terms=2, tprime=7)
    save('taylor_mm_k2_tp7_u8', u8)
    # Grayscale on many colours (the exhaustive check over all 2^24 colours is done once here).
    v = np.arange(1 << 24, dtype=np.uint32)
    allc = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8)
    g_all = cv2.cvtColor(allc.reshape(4096, 4096, 3), cv2.COLOR_RGB2GRAY).ravel()
    r, g, b = (allc[:, i].astype(np.int64) for i in range(3))
    assert np.array_equal(g_all, (r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15)
    pick = np.random.RandomState(3).randint(0, 1 << 24, 16384)
    save('gray_colors_rgb', allc[pick])
    save('gray_colors_gray', g_all[pick])


def exp_fixtures():
    # NumPy's own exp kernels (float32 SIMD, float64 SVML on AVX-512) decide the last bits of
    # every heatmap value; the Rust ports are checked on these directly.
    rs = np.random.RandomState(11)
    x32 = np.concatenate([rs.uniform(-110, 0, 3000), rs.uniform(-12, 0, 3000),
                          -rs.exponential(0.5, 2000), [0.0, -0.0, -87.3, -103.9, -104.0, 1.5]]
                         ).astype(np.float32)
    save('npexp_f32_in', x32)
    save('npexp_f32_out', np.exp(x32))
    x64 = np.concatenate([rs.uniform(-707, 0, 3000), rs.uniform(-20, 0, 3000),
                          -rs.exponential(0.5, 2000), [0.0, -0.0, -1e-300, -700.0, 1.0]])
    save('npexp_f64_in', x64)
    save('npexp_f64_out', np.exp(x64))
    for sigma in (0.6, 0.7, 0.8, 1.1):
        assert sigma ** 2 == sigma * sigma


NUMPY1_RUNNER = r"""
# Runs mmaction2's own GeneratePoseTarget / PoseCompact source under NumPy 1.x: the class
# definitions are taken verbatim (via ast) from the installed pose_transforms.py and executed with
# this interpreter's numpy; only the registry decorator and base class are stubbed out.
import ast, sys
import numpy as np
from typing import Dict, List, Optional, Tuple, Union
assert np.__version__.startswith('1.'), np.__version__
src_path, job_dir = sys.argv[1], sys.argv[2]
src = open(src_path).read()
tree = ast.parse(src)
class _Registry:
    @staticmethod
    def register_module():
        return lambda cls: cls
ns = dict(np=np, Dict=Dict, List=List, Optional=Optional, Tuple=Tuple, Union=Union,
          BaseTransform=object, TRANSFORMS=_Registry,
          _pair=lambda x: x if isinstance(x, tuple) else (x, x),
          _combine_quadruple=lambda a, b: (a[0] + a[2] * b[0], a[1] + a[3] * b[1],
                                           a[2] * b[2], a[3] * b[3]))
for node in tree.body:
    if isinstance(node, ast.ClassDef) and node.name in ('GeneratePoseTarget', 'PoseCompact'):
        exec(compile(ast.Module([node], []), src_path, 'exec'), ns)
import json
jobs = json.load(open(job_dir + '/jobs.json'))
for job in jobs:
    kp = np.load(job_dir + '/' + job['name'] + '_kp.npy')
    if job['what'] == 'heatmap':
        kw = job['kw']
        g = ns['GeneratePoseTarget'](**kw)
        g.eps = job['eps']
        r = {'keypoint': kp.copy(), 'img_shape': tuple(job['img'])}
        if job['score']:
            r['keypoint_score'] = np.load(job_dir + '/' + job['name'] + '_score.npy')
        np.save(job_dir + '/' + job['name'] + '_out.npy', g.transform(r)['imgs'])
    else:
        r = ns['PoseCompact'](**job['kw']).transform({'keypoint': kp.copy(),
                                                       'img_shape': tuple(job['img'])})
        np.save(job_dir + '/' + job['name'] + '_out.npy', r['keypoint'].astype(np.float64))
        np.save(job_dir + '/' + job['name'] + '_shape.npy', np.array(r['img_shape'], np.float64))
"""


def numpy1_fixtures(py1):
    """The same reference classes under NumPy 1.x (what pyskl/MM-Gesture ran on), where scalar
    float32 arithmetic promoted to float64: the limb's d2_ab, the window bounds and the EPS test
    round differently."""
    import json
    import subprocess
    import tempfile
    import mmaction.datasets.transforms.pose_transforms as pt
    jobs = []
    with tempfile.TemporaryDirectory() as d:
        def add_hm(name, kp, score, img, kind, sigma, eps, double=False, skeleton='coco17'):
            np.save(f'{d}/{name}_kp.npy', kp.astype(np.float32))
            if score is not None:
                np.save(f'{d}/{name}_score.npy', score.astype(np.float32))
            kw = dict(sigma=sigma, use_score=True, with_kp=kind == 'joint',
                      with_limb=kind == 'limb', double=double)
            if skeleton == 'imigue36':
                kw.update(skeletons=[list(e) for e in IMIGUE_SKELETON], left_kp=IMIGUE_LEFT_KP,
                          right_kp=IMIGUE_RIGHT_KP, left_limb=IMIGUE_LEFT_LIMB,
                          right_limb=IMIGUE_RIGHT_LIMB)
            jobs.append(dict(what='heatmap', name=name, kw=kw, eps=eps, img=img,
                             score=score is not None, kind=kind, sigma=sigma,
                             skeleton=skeleton, double=double))
        # keypoints placed where f32 and f64 scalar maths round the window differently:
        # integer + 0.8 (± a few ulp), and scores at EPS in both directions
        rs = np.random.RandomState(99)
        kp, sc = synthetic_imigue(41, 2, 2, 32)
        edge = (rs.randint(2, 30, (2, 2, 36, 2)) + np.float32(0.8)).astype(np.float32)
        nudge = rs.randint(-3, 4, edge.shape).astype(np.int32)
        edge = (edge.view(np.int32) + nudge).view(np.float32)
        pick = rs.rand(2, 2, 36) < 0.5
        kp[pick] = edge[pick]
        sc[0, 0, :6] = np.float32(1e-4)
        sc[0, 1, :6] = np.nextafter(np.float32(1e-4), np.float32(1))
        add_hm('imigue_joint', kp, sc, [32, 32], 'joint', 0.6, 1e-4, True, 'imigue36')
        add_hm('imigue_limb', kp, sc, [32, 32], 'limb', 0.6, 1e-4, False, 'imigue36')
        add_hm('imigue_limb_s07', kp[:1], sc[:1], [32, 32], 'limb', 0.7, 1e-3, False,
               'imigue36')
        kp2, sc2 = load_pose2sim(os.path.join(DATA, 'pose2sim-cam01_json'))
        r = PoseCompact(hw_ratio=1., allow_imgpad=True).transform(
            {'keypoint': kp2[:, 60:63].copy(), 'keypoint_score': sc2[:, 60:63].copy(),
             'img_shape': (1920, 1080)})
        r = Resize(scale=(-1, 64)).transform(r)
        add_hm('coco_limb', r['keypoint'].astype(np.float32), r['keypoint_score'],
               list(r['img_shape']), 'limb', 0.6, 1e-3)
        kp3, _ = synthetic_imigue(5, 2, 3, 700)
        np.save(f'{d}/compact_kp.npy', kp3)
        jobs.append(dict(what='compact', name='compact', img=[720, 1280],
                         kw=dict(hw_ratio=1., allow_imgpad=True)))
        json.dump(jobs, open(f'{d}/jobs.json', 'w'))
        subprocess.run([py1, '-c', NUMPY1_RUNNER, pt.__file__, d], check=True)
        for job in jobs:
            name = job['name']
            out = np.load(f'{d}/{name}_out.npy')
            kpin = np.load(f'{d}/{name}_kp.npy')
            save(f'np1_{name}_kp', kpin)
            if job['what'] == 'compact':
                save('np1_compact_out', out)
                save('np1_compact_shape', np.load(f'{d}/{name}_shape.npy'))
                continue
            if job['score']:
                save(f'np1_{name}_score', np.load(f'{d}/{name}_score.npy'))
            flat = out.ravel()
            nz = np.flatnonzero(flat)
            save(f'np1_{name}_nzidx', nz.astype(np.int32))
            save(f'np1_{name}_nzval', flat[nz].astype(np.float32))
            # same meta layout as the NumPy 2 heatmap cases
            save(f'np1_{name}_meta', np.array(
                [*job['img'], job['sigma'], 1.0, 0 if job['kind'] == 'joint' else 1,
                 int(job['double']), 1, job['eps'], *out.shape,
                 0 if job['skeleton'] == 'coco17' else 1, int(job['score'])], np.float64))
            ref2 = run_gpt(kpin, np.load(f'{d}/{name}_score.npy') if job['score'] else None,
                           tuple(job['img']), sigma=job['sigma'], kind=job['kind'],
                           double=job['double'], eps=job['eps'], skeleton=job['skeleton'])
            print(f'numpy1 {name}: {np.sum(ref2 != out)} values differ from NumPy 2, '
                  f'max {np.abs(ref2 - out).max():.2e}')


def main():
    global OUT
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(here, '..', 'tests', 'fixtures', 'modality'))
    ap.add_argument('--data', default=os.path.join(here, '..', '..', 'shared', 'data',
                                                   'real'))
    ap.add_argument('--numpy1-python', default=os.environ.get('MGSCOPE_NUMPY1_PY'),
                    help='a python with numpy 1.x (only numpy needed) for the NumPy 1 fixtures')
    ap.add_argument('--taylor-video', required=True,
                    help="the demo dataset's first video (mgscope demo DIR: "
                         "DIR/release/0001/0001.mp4)")
    ap.add_argument('--taylor-start', type=int, default=284,
                    help='first of the ten frames (284: the most motion in the default demo)')
    args = ap.parse_args()
    global DATA
    DATA = os.path.abspath(args.data)
    OUT = os.path.abspath(args.out)
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    kp, sc = load_pose2sim(os.path.join(args.data, 'pose2sim-cam01_json'))
    exp_fixtures()
    heatmap_fixtures(kp, sc)
    pipeline_fixtures(kp, sc)
    sampling_fixtures()
    taylor_fixtures(args.taylor_video, args.taylor_start)
    if args.numpy1_python:
        numpy1_fixtures(args.numpy1_python)
    else:
        print('no --numpy1-python: NumPy 1 fixtures not refreshed')
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f'{len(os.listdir(OUT))} files, {total / 1e6:.2f} MB in {OUT}')


if __name__ == '__main__':
    sys.exit(main())
