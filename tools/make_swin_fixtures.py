"""Parity fixtures for the Rust Video Swin port (`src/nn/swin3d.rs`).

Builds mmaction2 1.2's `SwinTransformer3D` + `I3DHead` in small configs, randomises every
parameter with a fixed seed (the released inits are too close to zero to catch mistakes:
a zero relative-position table or unit LayerNorms hide index and order bugs), runs the
forward in float32 in eval mode and writes, per case, `tests/fixtures/models/<case>/`:

    model.pth     {'state_dict': backbone.* / cls_head.* as a recognizer checkpoint, 'meta'}
    input.npy     float32 [N, 3, T, H, W]
    logits.npy    float32 [N, num_classes]
    config.json   the config, with the Rust `Config` field names

The small cases use windows smaller than (8, 7, 7): every block carries an int64
`relative_position_index` buffer of N_w² entries, 1.2 MB each at (8, 7, 7), which would
blow the ~1 MB budget per file. The code paths (padding, shift, mask, clamped windows and
the `[:N, :N]` slice) are the same for any window.

It also writes `full_keys/swin_{t,s,b}.json` ({key: shape}) for the released configs.

    ~/.cache/mgscope-reference/venv/bin/python tools/make_swin_fixtures.py [--out DIR]
    # A bigger, real-window check (about 30 MB, not for the repository):
    ... make_swin_fixtures.py --big /tmp/swin_big
"""

import argparse
import json
import os
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

from mmaction.models.backbones.swin import SwinTransformer3D  # noqa: E402
from mmaction.models.heads import I3DHead  # noqa: E402

torch.set_num_threads(1)

ARCHS = {
    "t": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "s": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    "b": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
}

CASES = {
    # A non-cubic window so that swapped axes show. Stage 0: D=6, H=13, W=14 → padding on
    # all three axes, shift (2,1,2), mask active; PatchMerging pads the odd H.
    # Stage 1: 6×7×7 → padded, shifted; odd H and W into the merge.
    # Stage 2: 6×4×4 → H is padded to 6, W clamps to 4: shift (2,1,0), N=4·3·4=48 < 60,
    # so the [:N,:N] slice is used. Stage 3: 6×2×2 → shift (2,0,0) (Swin-T's stage-3
    # situation), N=16.
    "swin_small_shift": dict(
        config=dict(
            patch_size=[2, 4, 4],
            in_channels=3,
            embed_dim=8,
            depths=[2, 2, 2, 2],
            num_heads=[1, 2, 2, 4],
            window_size=[4, 3, 5],
            mlp_ratio=4.0,
            qkv_bias=True,
            patch_norm=True,
            num_classes=10,
            drop_path_rate=0.1,
        ),
        input=[1, 3, 12, 52, 56],
        seed=0,
    ),
    # T=5 pads to 6 → D=3 < window depth 4: every stage clamps D and uses the [:N,:N]
    # slice; H=58, W=50 are not patch multiples. Batch 2. Also the non-default switches.
    "swin_short_clip": dict(
        config=dict(
            patch_size=[2, 4, 4],
            in_channels=3,
            embed_dim=8,
            depths=[2, 2, 2, 2],
            num_heads=[1, 2, 2, 4],
            window_size=[4, 3, 3],
            mlp_ratio=3.0,
            qkv_bias=False,
            patch_norm=False,
            num_classes=7,
            drop_path_rate=0.0,
        ),
        input=[2, 3, 5, 58, 50],
        seed=1,
    ),
}

BIG = dict(
    config=dict(
        patch_size=[2, 4, 4],
        in_channels=3,
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=[8, 7, 7],
        mlp_ratio=4.0,
        qkv_bias=True,
        patch_norm=True,
        num_classes=400,
        drop_path_rate=0.1,
    ),
    # Swin-T itself on a short, odd clip: D=6 (clamped), 25×27 tokens (padded to 28),
    # stage-3 shift (0,0,0) on 6×4×4.
    input=[1, 3, 12, 100, 108],
    seed=2,
    fan_in_scaled=True,
)


def build(cfg):
    backbone = SwinTransformer3D(
        arch=dict(
            embed_dims=cfg["embed_dim"],
            depths=list(cfg["depths"]),
            num_heads=list(cfg["num_heads"]),
        ),
        pretrained=None,
        pretrained2d=False,
        patch_size=tuple(cfg["patch_size"]),
        in_channels=cfg["in_channels"],
        window_size=tuple(cfg["window_size"]),
        mlp_ratio=cfg["mlp_ratio"],
        qkv_bias=cfg["qkv_bias"],
        patch_norm=cfg["patch_norm"],
        drop_path_rate=cfg["drop_path_rate"],
    )
    final_dim = cfg["embed_dim"] * 2 ** (len(cfg["depths"]) - 1)
    head = I3DHead(num_classes=cfg["num_classes"], in_channels=final_dim)
    return backbone, head


def randomise(module, gen, fan_in_scaled=False):
    """N(0, 0.2²) everywhere, LayerNorm weights 1 + N(0, 0.2²). With `fan_in_scaled`, matrix
    weights get std 1/sqrt(fan_in) instead: at Swin-T's widths a flat 0.2 multiplies the
    activations by ~5 per Linear and float32 itself drifts ~3e-4 from float64."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            std = 0.2
            if fan_in_scaled and p.dim() >= 2 and "relative_position_bias_table" not in name:
                std = p[0].numel() ** -0.5
            noise = torch.randn(p.shape, generator=gen) * std
            if isinstance(_owner(module, name), torch.nn.LayerNorm) and name.endswith("weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def _owner(root, name):
    m = root
    for part in name.split(".")[:-1]:
        m = getattr(m, part)
    return m


def state_dict(backbone, head):
    sd = {}
    for k, v in backbone.state_dict().items():
        sd["backbone." + k] = v.detach().clone()
    for k, v in head.state_dict().items():
        sd["cls_head." + k] = v.detach().clone()
    return sd


def write_case(out_dir, name, spec):
    cfg = spec["config"]
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    backbone, head = build(cfg)
    randomise(backbone, gen, spec.get("fan_in_scaled", False))
    randomise(head, gen, spec.get("fan_in_scaled", False))
    backbone.eval()
    head.eval()
    x = torch.randn(spec["input"], generator=gen, dtype=torch.float32)
    with torch.no_grad():
        feat = backbone(x)
        logits = head(feat)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    sd = state_dict(backbone, head)
    meta = dict(
        case=name,
        config=cfg,
        input_shape=list(x.shape),
        feature_shape=list(feat.shape),
        torch=str(torch.__version__),
        mmaction="1.2",
        seed=spec["seed"],
    )
    torch.save({"state_dict": sd, "meta": meta}, os.path.join(d, "model.pth"))
    np.save(os.path.join(d, "input.npy"), x.numpy())
    np.save(os.path.join(d, "logits.npy"), logits.numpy().astype(np.float32))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    print(f"{name}: input {list(x.shape)} features {list(feat.shape)} "
          f"logits {list(logits.shape)} |logits|max {logits.abs().max():.3f}; sizes {sizes}")


def write_full_keys(out_dir):
    d = os.path.join(out_dir, "full_keys")
    os.makedirs(d, exist_ok=True)
    for tag, arch in ARCHS.items():
        cfg = dict(BIG["config"], **arch)
        backbone, head = build(cfg)
        sd = state_dict(backbone, head)
        keys = {k: list(v.shape) for k, v in sd.items()}
        with open(os.path.join(d, f"swin_{tag}.json"), "w") as f:
            json.dump(keys, f, indent=1)
            f.write("\n")
        n = sum(v.numel() for k, v in sd.items() if "relative_position_index" not in k)
        print(f"swin_{tag}: {len(keys)} keys, {n} parameters")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "models"))
    ap.add_argument("--big", help="also write the real-window Swin-T case `swin_t_big` here")
    args = ap.parse_args()
    for name, spec in CASES.items():
        write_case(args.out, name, spec)
    write_full_keys(args.out)
    if args.big:
        write_case(args.big, "swin_t_big", BIG)


if __name__ == "__main__":
    main()
