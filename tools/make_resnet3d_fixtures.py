#!/usr/bin/env python3
"""Reference fixtures for the candle ResNet3d family (PoseC3D, SlowOnly-R50 RGB, RGBPoseConv3D).

Builds the networks with mmaction2 1.2's own registry (`Recognizer3D` / `MMRecognizer3D`), so the
state-dict keys are exactly a recognizer checkpoint's, in small configs that keep every structural
feature (inflation, downsample, strided stem, temporal stride 2, laterals both ways), randomises
every parameter and BatchNorm running statistic with a fixed seed, and runs one float32 eval
forward pass. Also dumps key -> shape of the FULL configs for the key-set test.

Run with the reference venv from the crate root:
    ~/.cache/mgscope-reference/venv/bin/python tools/make_resnet3d_fixtures.py
Writes tests/fixtures/models/<case>/{model.pth,input*.npy,logits*.npy,config.json}
and tests/fixtures/models/full_keys/*.json.
"""

import copy
import json
import os
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

from mmaction.registry import MODELS  # noqa: E402
from mmaction.utils import register_all_modules  # noqa: E402

register_all_modules()
torch.set_num_threads(1)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
SEED = 20240601


def posec3d_backbone(in_channels, base_channels, stage_blocks):
    # mmaction2 configs/skeleton/posec3d/slowonly_r50_8xb16-u48-240e_ntu60-xsub-keypoint.py with
    # MM-Gesture's slowonly_r50_iMiGUE_36 channel count.
    return dict(
        type="ResNet3dSlowOnly", depth=50, in_channels=in_channels, base_channels=base_channels,
        num_stages=3, out_indices=(2,), stage_blocks=stage_blocks, conv1_stride_s=1,
        pool1_stride_s=1, inflate=(0, 1, 1), spatial_strides=(2, 2, 2),
        temporal_strides=(1, 1, 2), dilations=(1, 1, 1))


def slowonly_backbone(base_channels, stage_blocks):
    # mmaction2 configs/_base_/models/slowonly_r50.py (conv1 stride 2, pool stride 2 by default).
    bb = dict(type="ResNet3dSlowOnly", depth=50, lateral=False, conv1_kernel=(1, 7, 7),
              conv1_stride_t=1, pool1_stride_t=1, inflate=(0, 0, 1, 1), norm_eval=False)
    if base_channels is not None:
        bb["base_channels"] = base_channels
    if stage_blocks is not None:
        bb["stage_blocks"] = stage_blocks
    return bb


def rgbpose_backbone(pose_in, rgb_base, pose_base, rgb_blocks, pose_blocks):
    # mmaction2 configs/skeleton/posec3d/rgbpose_conv3d/rgbpose_conv3d.py (= pyskl / MM-Gesture
    # rgbJoint_conv3d.py with in_channels 36).
    rgb = dict(num_stages=4, lateral=True, lateral_infl=1, lateral_activate=[0, 0, 1, 1],
               fusion_kernel=7, base_channels=rgb_base, conv1_kernel=(1, 7, 7),
               inflate=(0, 0, 1, 1), with_pool2=False)
    if rgb_blocks is not None:
        rgb["stage_blocks"] = rgb_blocks
    pose = dict(num_stages=3, stage_blocks=pose_blocks, lateral=True, lateral_inv=True,
                lateral_infl=16, lateral_activate=(0, 1, 1), fusion_kernel=7,
                in_channels=pose_in, base_channels=pose_base, out_indices=(2,),
                conv1_kernel=(1, 7, 7), conv1_stride_s=1, conv1_stride_t=1, pool1_stride_s=1,
                pool1_stride_t=1, inflate=(0, 1, 1), spatial_strides=(2, 2, 2),
                temporal_strides=(1, 1, 1), dilations=(1, 1, 1), with_pool2=False)
    return dict(type="RGBPoseConv3D", speed_ratio=4, channel_ratio=4, rgb_pathway=rgb,
                pose_pathway=pose)


def recognizer(backbone, feat, num_classes):
    return dict(type="Recognizer3D", backbone=backbone,
                cls_head=dict(type="I3DHead", in_channels=feat, num_classes=num_classes,
                              dropout_ratio=0.5, average_clips="prob"))


def mm_recognizer(backbone, feats, num_classes):
    return dict(type="MMRecognizer3D", backbone=backbone,
                cls_head=dict(type="RGBPoseHead", num_classes=num_classes, in_channels=feats,
                              loss_components=["rgb", "pose"], loss_weights=[1.0, 1.0],
                              average_clips="prob"))


def randomise(model, gen):
    """Every parameter and BN buffer random; conv scales near He so activations stay O(1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                if isinstance(_owner(model, name), torch.nn.ConvTranspose3d):
                    # (in, out, kT, kH, kW): each output sees in * kT / stride taps on average.
                    fan_in = p.shape[0] * p.shape[2] / 4.0
                else:
                    fan_in = p[0].numel()
                std = (2.0 / fan_in) ** 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif name.endswith("bn.weight"):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.8 + 0.4)
            else:  # BN bias, fc bias
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) * 1.5 + 0.5)
            elif name.endswith("num_batches_tracked"):
                b.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))


def _owner(model, pname):
    mod = model
    for part in pname.split(".")[:-1]:
        mod = getattr(mod, part)
    return mod


def save_case(name, cfg, model, inputs, outputs, meta):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "meta": meta}, os.path.join(d, "model.pth"))
    for fname, t in inputs.items():
        np.save(os.path.join(d, fname), t.numpy().astype(np.float32))
    for fname, t in outputs.items():
        np.save(os.path.join(d, fname), t.detach().numpy().astype(np.float32))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model": cfg, "meta": meta,
                   "inputs": {k: list(v.shape) for k, v in inputs.items()},
                   "outputs": {k: list(v.shape) for k, v in outputs.items()}},
                  f, indent=1, default=list)
    nparam = sum(v.numel() for k, v in sd.items() if "num_batches" not in k)
    size = os.path.getsize(os.path.join(d, "model.pth"))
    print(f"{name}: {len(sd)} keys, {nparam} values, pth {size / 1e6:.2f} MB, "
          + ", ".join(f"{k} {list(v.shape)} max|.| {v.abs().max():.3f}" for k, v in outputs.items()))


def build(cfg):
    model = MODELS.build(copy.deepcopy(cfg))
    model.eval()
    return model


def main():
    gen = torch.Generator().manual_seed(SEED)

    # PoseC3D, 36 heatmap channels (MM-Gesture iMiGUE): base 8, blocks (2, 2, 2).
    cfg = recognizer(posec3d_backbone(36, 8, (2, 2, 2)), 8 * 4 * 4, 5)
    model = build(cfg)
    randomise(model, gen)
    x = torch.rand((1, 36, 8, 24, 24), generator=gen)
    with torch.no_grad():
        logits = model.cls_head(model.backbone(x))
    save_case("posec3d_small", cfg, model, {"input.npy": x}, {"logits.npy": logits},
              {"seed": SEED, "mmaction": "1.2.0", "case": "posec3d_small"})

    # SlowOnly-R50 RGB stem (conv1 stride 2, pool stride 2): base 8, blocks (1, 2, 2, 1).
    cfg = recognizer(slowonly_backbone(8, (1, 2, 2, 1)), 8 * 8 * 4, 6)
    model = build(cfg)
    randomise(model, gen)
    x = torch.randn((1, 3, 4, 64, 64), generator=gen)
    with torch.no_grad():
        logits = model.cls_head(model.backbone(x))
    save_case("slowonly_rgb_small", cfg, model, {"input.npy": x}, {"logits.npy": logits},
              {"seed": SEED, "mmaction": "1.2.0", "case": "slowonly_rgb_small"})

    # RGBPoseConv3D: rgb base 8 (must be 2x pose base so the channel_ratio-4 laterals line up),
    # pose base 4, 36 pose channels. Spatial: pose is rgb / 4, time: pose is rgb x 4.
    cfg = mm_recognizer(rgbpose_backbone(36, 8, 4, (1, 1, 2, 1), (2, 2, 1)), [8 * 8 * 4, 4 * 4 * 4], 7)
    model = build(cfg)
    randomise(model, gen)
    rgb = torch.randn((1, 3, 4, 64, 64), generator=gen)
    pose = torch.rand((1, 36, 16, 16, 16), generator=gen)
    with torch.no_grad():
        scores = model.cls_head(model.backbone(rgb, pose))
    save_case("rgbpose_small", cfg, model, {"input.npy": rgb, "input_pose.npy": pose},
              {"logits_rgb.npy": scores["rgb"], "logits_pose.npy": scores["pose"]},
              {"seed": SEED, "mmaction": "1.2.0", "case": "rgbpose_small"})

    # Key -> shape of the full configs (32 classes, as MM-Gesture on iMiGUE).
    d = os.path.join(ROOT, "full_keys")
    os.makedirs(d, exist_ok=True)
    full = {
        "posec3d_joint36": recognizer(posec3d_backbone(36, 32, (4, 6, 3)), 512, 32),
        "slowonly_r50_rgb": recognizer(slowonly_backbone(None, None), 2048, 32),
        "rgbpose_conv3d": mm_recognizer(rgbpose_backbone(36, 64, 32, None, (4, 6, 3)),
                                        [2048, 512], 32),
    }
    for name, cfg in full.items():
        sd = build(cfg).state_dict()
        with open(os.path.join(d, name + ".json"), "w") as f:
            json.dump({k: list(v.shape) for k, v in sd.items()}, f, indent=0)
        learn = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k)
        print(f"{name}: {len(sd)} keys, {learn} learnable parameters")


if __name__ == "__main__":
    main()
