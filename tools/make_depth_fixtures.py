#!/usr/bin/env python3
"""Make the parity fixtures for mgscope's Depth Anything V2 port (`src/nn/dinov2.rs`,
`src/nn/depth_anything_v2.rs`, `src/modality/depth.rs`).

Run with the reference environment and a checkout of the official repository
(github.com/DepthAnything/Depth-Anything-V2, checked at commit a561b84; it is not on PyPI):

    py=$(bash ../shared/tools/reference-env.sh); $py -m pip install transformers safetensors
    target/debug/mgscope demo /tmp/demo     # the built-in seed; the frame comes from it
    $py tools/make_depth_fixtures.py --official DIR --video /tmp/demo/release/0001/0001.mp4
        [--out tests/fixtures/depth]

What produces each expected output:

* The model, preprocessing and `infer_image` are the official code itself
  (`depth_anything_v2/dpt.py` `DepthAnythingV2`, its `dinov2.py` and `util/transform.py`), with
  a small encoder and head of random weights instead of the released ViT-S/B/L (so the weights
  fit in the repository). The weights are saved under the checkpoint's own key names.
* The same weights in the Hugging Face `-hf` layout (the key names of the published
  `depth-anything/Depth-Anything-V2-*-hf` files) are loaded into transformers'
  `DepthAnythingForDepthEstimation` and must give the official output; this checks the key
  mapping. transformers' Dinov2 resizes the position embedding to the patch grid by `size`,
  whereas the official `interpolate_pos_encoding` passes `scale_factor = (grid + 0.1) / 37`,
  which samples the embedding at slightly different places; for the comparison the HF
  embedding is given the official rule (the unpatched difference is printed too).
* The frame is frame 284 of the demo dataset's first video (our own rendering, so its pixels
  may live in the repository; ../shared/data's videos may not), the figure cropped and reduced
  with cv2 INTER_AREA to 171x113 so that `image2tensor(frame, 140)` gives a non-square
  210x140 input (lower side 140, both multiples of 14) and the fixtures stay small.
* `resize_sizes`: the official `Resize.get_size` on chosen frame sizes, including the
  round-half-to-even cases of `constrain_to_multiple_of`.
* `cubic_*`: cv2.resize INTER_CUBIC on small float64 images (what `image2tensor` feeds it).
* `posinterp_*`: `F.interpolate(mode='bicubic', scale_factor=...)` exactly as the official
  `interpolate_pos_encoding` calls it, shrinking and enlarging.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

# The small model: every structural feature of the released ones (4 taps of a deeper ViT,
# four channel widths, the 4x/2x/1x/0.5x resize layers), with few channels.
EMBED_DIM = 32
DEPTH = 5
HEADS = 2
TAPS = [0, 2, 3, 4]
FEATURES = 8
OUT_CHANNELS = [8, 16, 24, 32]
INPUT_SIZE = 140
FRAME_INDEX = 284
CROP = (160, 30, 342, 226)  # x, y, w, h in the 640x360 video frame: the seated figure
FRAME_WH = (171, 113)

OUT = None


def save(name, arr):
    np.save(os.path.join(OUT, name + '.npy'), np.ascontiguousarray(arr))


def build_official(root):
    sys.path.insert(0, root)
    from depth_anything_v2.dinov2 import DinoVisionTransformer
    from depth_anything_v2.dinov2_layers import MemEffAttention, NestedTensorBlock
    from depth_anything_v2.dpt import DepthAnythingV2, DPTHead

    model = DepthAnythingV2(encoder='vits', features=FEATURES, out_channels=OUT_CHANNELS)
    # The arguments `DINOv2(model_name)` passes for vits, at a smaller width and depth.
    model.pretrained = DinoVisionTransformer(
        img_size=518, patch_size=14, embed_dim=EMBED_DIM, depth=DEPTH, num_heads=HEADS,
        mlp_ratio=4, block_fn=functools.partial(NestedTensorBlock, attn_class=MemEffAttention),
        init_values=1.0, ffn_layer='mlp', block_chunks=0, num_register_tokens=0,
        interpolate_antialias=False, interpolate_offset=0.1)
    model.depth_head = DPTHead(EMBED_DIM, FEATURES, False, out_channels=OUT_CHANNELS,
                               use_clstoken=False)
    model.intermediate_layer_idx = {'vits': TAPS}
    return model.eval()


def randomise(model, seed=0):
    """Weights of a useful size everywhere (the default init leaves LayerNorms at 1/0, layer
    scale at 1 and the position embedding tiny, which would hide mistakes there)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if name.endswith('.gamma'):
                p.copy_(0.6 + 0.3 * n)
            elif p.ndim == 1 and 'norm' in name and name.endswith('weight'):
                p.copy_(1.0 + 0.2 * n)
            elif p.ndim == 1:
                p.copy_(0.1 * n)
            elif name.endswith('pos_embed') or name.endswith('cls_token') \
                    or name.endswith('mask_token'):
                p.copy_(0.5 * n)
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                if 'resize_layers.0' in name or 'resize_layers.1' in name:
                    fan_in = p.shape[0]  # ConvTranspose2d weights are [in, out, k, k]
                p.copy_(n / fan_in ** 0.5)
        # Keep the final ReLU mostly open so that the output says something.
        model.depth_head.scratch.output_conv2[2].bias.fill_(0.6)


def hf_key(k):
    """Official checkpoint key -> the published -hf key (None: a key with no -hf twin)."""
    pre = 'pretrained.'
    if k.startswith(pre):
        k = k[len(pre):]
        simple = {'cls_token': 'backbone.embeddings.cls_token',
                  'mask_token': 'backbone.embeddings.mask_token',
                  'pos_embed': 'backbone.embeddings.position_embeddings',
                  'norm.weight': 'backbone.layernorm.weight',
                  'norm.bias': 'backbone.layernorm.bias'}
        if k in simple:
            return simple[k]
        if k.startswith('patch_embed.proj.'):
            return 'backbone.embeddings.patch_embeddings.projection.' + k.split('.')[-1]
        parts = k.split('.')
        assert parts[0] == 'blocks', k
        i, rest = parts[1], '.'.join(parts[2:])
        sub = {'ls1.gamma': 'layer_scale1.lambda1', 'ls2.gamma': 'layer_scale2.lambda1',
               'attn.proj.weight': 'attention.output.dense.weight',
               'attn.proj.bias': 'attention.output.dense.bias'}.get(rest, rest)
        return f'backbone.encoder.layer.{i}.{sub}'
    k = k[len('depth_head.'):]
    parts = k.split('.')
    if parts[0] == 'projects':
        return f'neck.reassemble_stage.layers.{parts[1]}.projection.{parts[2]}'
    if parts[0] == 'resize_layers':
        return f'neck.reassemble_stage.layers.{parts[1]}.resize.{parts[2]}'
    assert parts[0] == 'scratch', k
    name = parts[1]
    if name.endswith('_rn'):
        return f'neck.convs.{int(name[5]) - 1}.weight'
    if name.startswith('refinenet'):
        layer = 4 - int(name[len('refinenet'):])
        rest = '.'.join(parts[2:])
        rest = rest.replace('out_conv', 'projection').replace('resConfUnit', 'residual_layer')
        rest = rest.replace('conv1', 'convolution1').replace('conv2', 'convolution2')
        return f'neck.fusion_stage.layers.{layer}.{rest}'
    if name == 'output_conv1':
        return f'head.conv1.{parts[2]}'
    if name == 'output_conv2':
        return {'0': 'head.conv2.', '2': 'head.conv3.'}[parts[2]] + parts[3]
    raise KeyError(k)


def hf_state(official_state):
    """The official state dict in the published -hf layout (qkv split into query/key/value)."""
    out = {}
    for k, v in official_state.items():
        if '.attn.qkv.' in k:
            block = k.split('.')[2]
            kind = k.split('.')[-1]
            for part, t in zip(('query', 'key', 'value'), v.chunk(3, dim=0)):
                out[f'backbone.encoder.layer.{block}.attention.attention.{part}.{kind}'] = \
                    t.contiguous()
        else:
            out[hf_key(k)] = v.contiguous()
    return out


def to_transformers5(state):
    # transformers 5 renames the Dinov2 attention on load; load_state_dict does not.
    ren = {'attention.attention.query': 'attention.q_proj',
           'attention.attention.key': 'attention.k_proj',
           'attention.attention.value': 'attention.v_proj',
           'attention.output.dense': 'attention.o_proj'}
    out = {}
    for k, v in state.items():
        for a, b in ren.items():
            k = k.replace(a, b)
        out[k] = v
    return out


def official_pos_interp(self, embeddings, height, width):
    """transformers' Dinov2Embeddings.interpolate_pos_encoding replaced by the rule of the
    official dinov2.py: scale factors (grid + 0.1) / sqrt(N), bicubic, no antialias."""
    pos = self.position_embeddings
    n = pos.shape[1] - 1
    if embeddings.shape[1] - 1 == n and height == width:
        return pos
    side = int(n ** 0.5)
    gh, gw = height // 14 + 0.1, width // 14 + 0.1
    grid = pos[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(gh / n ** 0.5, gw / n ** 0.5), mode='bicubic',
                         antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return torch.cat((pos[:, :1], grid.to(pos.dtype)), dim=1)


def build_hf(state):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=EMBED_DIM,
                            num_hidden_layers=DEPTH, num_attention_heads=HEADS, mlp_ratio=4,
                            layerscale_value=1.0, out_indices=[t + 1 for t in TAPS],
                            apply_layernorm=True, reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=EMBED_DIM,
                              patch_size=14, neck_hidden_sizes=OUT_CHANNELS,
                              fusion_hidden_size=FEATURES, head_hidden_size=32,
                              depth_estimation_type='relative')
    model = DepthAnythingForDepthEstimation(cfg).eval()
    model.load_state_dict(to_transformers5(state), strict=True)
    return model


def read_frame(video):
    cap = cv2.VideoCapture(video)
    # decoded in order: cv2's seek can land on another frame
    for _ in range(FRAME_INDEX + 1):
        ok, bgr = cap.read()
        assert ok, video
    x, y, w, h = CROP
    assert y + h <= bgr.shape[0] and x + w <= bgr.shape[1], (bgr.shape, CROP)
    return cv2.resize(bgr[y:y + h, x:x + w], FRAME_WH, interpolation=cv2.INTER_AREA)


def size_fixtures(root):
    from depth_anything_v2.util.transform import Resize

    cases = [(640, 360, 518), (1080, 1920, 518), (518, 518, 518), (539, 518, 518),
             (518, 511, 518), (171, 113, 140), (113, 171, 140), (1, 1, 518), (100, 3, 518),
             (1920, 1080, 518), (333, 517, 518), (35, 21, 140), (500, 499, 518),
             (3000, 2999, 518), (147, 140, 140)]
    rows = []
    for w, h, size in cases:
        r = Resize(width=size, height=size, resize_target=False, keep_aspect_ratio=True,
                   ensure_multiple_of=14, resize_method='lower_bound',
                   image_interpolation_method=cv2.INTER_CUBIC)
        nw, nh = r.get_size(w, h)
        rows.append((w, h, size, int(nw), int(nh)))
    save('resize_sizes', np.array(rows, dtype=np.int64))


def cubic_fixtures():
    rng = np.random.default_rng(5)
    img = rng.random((17, 23, 3))
    img[2:5, 3:9] = [1.0, 0.0, 0.5]  # edges overshoot, as in real frames
    save('cubic_src', img)
    for name, (w, h) in {'down': (9, 6), 'up': (41, 30), 'mixed': (14, 28)}.items():
        save(f'cubic_{name}', cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC))


def posinterp_fixtures():
    g = torch.Generator().manual_seed(3)
    for name, side, (gh, gw) in [('down', 37, (10, 15)), ('up', 5, (12, 7))]:
        grid = torch.randn(1, 4, side, side, generator=g)
        out = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side),
                            mode='bicubic', antialias=False)
        assert out.shape[-2:] == (gh, gw)
        save(f'posinterp_{name}_src', grid[0].numpy())
        save(f'posinterp_{name}_out', out[0].numpy())


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument('--official', required=True,
                    help='checkout of github.com/DepthAnything/Depth-Anything-V2')
    ap.add_argument('--out', default='tests/fixtures/depth')
    ap.add_argument('--video', required=True,
                    help="the demo dataset's first video (mgscope demo DIR: "
                         "DIR/release/0001/0001.mp4)")
    args = ap.parse_args()
    OUT = args.out
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(False)

    model = build_official(args.official)
    randomise(model)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(OUT, 'tiny_official.safetensors'))
    hf = hf_state(state)
    save_file(hf, os.path.join(OUT, 'tiny_hf.safetensors'))

    bgr = read_frame(args.video)
    save('frame_rgb', cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    x, (h, w) = model.image2tensor(bgr, INPUT_SIZE)
    assert x.dtype == torch.float32 and (h, w) == bgr.shape[:2]
    save('input', x[0].numpy())
    raw = model(x)
    save('dpt_out', raw[0].numpy())
    depth = model.infer_image(bgr, INPUT_SIZE)
    save('depth', depth)
    print(f'input {tuple(x.shape)}, dpt output {tuple(raw.shape)} range '
          f'[{raw.min():.4f}, {raw.max():.4f}], zero fraction {(raw == 0).float().mean():.3f}; '
          f'depth {depth.shape}')

    net = build_hf(hf)
    plain = net(pixel_values=x).predicted_depth
    emb = net.backbone.embeddings
    emb.interpolate_pos_encoding = official_pos_interp.__get__(emb)
    patched = net(pixel_values=x).predicted_depth
    print(f'transformers vs official: {(patched - raw).abs().max():.3e} with the official '
          f'position-embedding rule, {(plain - raw).abs().max():.3e} with its own')
    assert (patched - raw).abs().max() <= 1e-5 * raw.abs().max()

    size_fixtures(args.official)
    cubic_fixtures()
    posinterp_fixtures()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f'{len(os.listdir(OUT))} files, {total / 1024:.0f} KiB in {OUT}')


if __name__ == '__main__':
    main()
