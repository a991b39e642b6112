"""Fixture for inflating an ImageNet 2-D Swin checkpoint into Video Swin (`pretrained2d=True`,
mmaction2 1.2 `SwinTransformer3D.inflate_weights`), for `src/train/inflate.rs`.

Makes a small random 2-D Swin checkpoint in the layout of the official ImageNet releases
(`swin_tiny_patch4_window7_224.pth`: {'model': patch_embed.*, layers.i.blocks.j.*, with
`relative_position_index` and `attn_mask` buffers, layers.i.downsample.*, norm.*, head.*}),
lets mmaction2 inflate it into a `SwinTransformer3D` whose window needs the bicubic resize of
the bias tables, and writes `tests/fixtures/swin_inflate/`:

    swin2d.pth          the 2-D checkpoint
    inflated.npz        the 3-D backbone's state dict after `init_weights()` (float32), keys as
                        the backbone's own (no `backbone.` prefix)
    config.json         the 3-D config

    ~/.cache/mgscope-reference/venv/bin/python tools/make_swin_inflate_fixtures.py [--out DIR]

mmaction2 1.2 imports its VindLU models when `transformers` is installed, and they need `timm`;
put a stand-in `importlib_metadata` that reports transformers as absent first on PYTHONPATH
(or install timm).
"""

import argparse
import json
import os
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

from mmaction.models.backbones.swin import SwinTransformer3D  # noqa: E402

torch.set_num_threads(1)

EMBED = 8
DEPTHS = [1, 1, 2, 1]
HEADS = [1, 1, 2, 2]
WINDOW_2D = 3
WINDOW_3D = (2, 4, 4)
PATCH = (2, 4, 4)


def swin2d_state(gen):
    """A random 2-D Swin state dict with the official ImageNet checkpoint's keys."""
    sd = {}

    def rnd(*shape):
        return torch.randn(*shape, generator=gen) * 0.5

    sd["patch_embed.proj.weight"] = rnd(EMBED, 3, PATCH[1], PATCH[2])
    sd["patch_embed.proj.bias"] = rnd(EMBED)
    sd["patch_embed.norm.weight"] = rnd(EMBED)
    sd["patch_embed.norm.bias"] = rnd(EMBED)
    dim = EMBED
    w = WINDOW_2D
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (w - 1)
    index = rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]
    for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            sd[p + "norm1.weight"] = rnd(dim)
            sd[p + "norm1.bias"] = rnd(dim)
            sd[p + "attn.relative_position_bias_table"] = rnd((2 * w - 1) ** 2, heads)
            sd[p + "attn.relative_position_index"] = index.clone()
            sd[p + "attn.qkv.weight"] = rnd(3 * dim, dim)
            sd[p + "attn.qkv.bias"] = rnd(3 * dim)
            sd[p + "attn.proj.weight"] = rnd(dim, dim)
            sd[p + "attn.proj.bias"] = rnd(dim)
            sd[p + "norm2.weight"] = rnd(dim)
            sd[p + "norm2.bias"] = rnd(dim)
            sd[p + "mlp.fc1.weight"] = rnd(4 * dim, dim)
            sd[p + "mlp.fc1.bias"] = rnd(4 * dim)
            sd[p + "mlp.fc2.weight"] = rnd(dim, 4 * dim)
            sd[p + "mlp.fc2.bias"] = rnd(dim)
            if j % 2 == 1:
                sd[p + "attn_mask"] = torch.zeros(4, w * w, w * w)
        if i + 1 < len(DEPTHS):
            p = f"layers.{i}.downsample."
            sd[p + "reduction.weight"] = rnd(2 * dim, 4 * dim)
            sd[p + "norm.weight"] = rnd(4 * dim)
            sd[p + "norm.bias"] = rnd(4 * dim)
            dim *= 2
    sd["norm.weight"] = rnd(dim)
    sd["norm.bias"] = rnd(dim)
    sd["head.weight"] = rnd(1000, dim)
    sd["head.bias"] = rnd(1000)
    return sd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/swin_inflate")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(20261126)
    sd2d = swin2d_state(gen)
    ckpt = os.path.join(args.out, "swin2d.pth")
    torch.save({"model": sd2d}, ckpt)

    net = SwinTransformer3D(
        arch={"embed_dims": EMBED, "depths": DEPTHS, "num_heads": HEADS},
        pretrained=ckpt,
        pretrained2d=True,
        patch_size=PATCH,
        window_size=WINDOW_3D,
        out_indices=(3,),
    )
    # Everything inflate_weights does not load keeps this value, so the test can tell
    # loaded from untouched.
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(-7.0)
    net.init_weights()
    out = {
        k: v.detach().float().numpy()
        for k, v in net.state_dict().items()
        if "relative_position_index" not in k
    }
    np.savez_compressed(os.path.join(args.out, "inflated.npz"), **out)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(
            {
                "embed_dim": EMBED,
                "depths": DEPTHS,
                "num_heads": HEADS,
                "window_size": list(WINDOW_3D),
                "patch_size": list(PATCH),
                "window_2d": WINDOW_2D,
            },
            f,
            indent=1,
        )
    print(f"{args.out}: {len(out)} tensors")


if __name__ == "__main__":
    main()
