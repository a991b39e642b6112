#!/usr/bin/env python3
"""Writes tests/fixtures/optim/: a reference run of the Video Swin optimiser for the Rust
AdamW and warm-up + cosine schedule (src/train/optim.rs).

Built the way mmaction2 1.x builds it from a Swin config: `build_optim_wrapper` with
`constructor='SwinOptimWrapperConstructor'` and the Swin `paramwise_cfg` (torch.optim.AdamW
inside an OptimWrapper that clips by global norm), and the param schedulers through the
PARAM_SCHEDULERS registry with `epoch_length`, stepped as mmengine's ParamSchedulerHook does
(iteration-based ones after every iteration, epoch-based ones after every epoch).

Run with the reference venv (torch + mmengine + mmaction2):
    ~/.cache/mgscope-reference/venv/bin/python tools/make_optim_fixtures.py

Outputs (a few KB):
  adamw.npz      init [n] and, per step, grad [steps, n] (zero where missing) and param after
                 the step [steps, n] (f32), the parameters flattened and concatenated in key
                 order; lr (f64, [steps, 2]): the lr of the LR_KEYS groups at each step
  schedules.npz  <name> (f64, [iters, 2]): the lr of a 1e-3 group and a 1e-4 group per iteration
  optim.json     keys, shapes, per-key lr / weight decay of the built param groups, the
                 optimiser and schedule settings, missing gradients, grad norms, clip flags
"""

import json
import pathlib

import numpy as np
import torch
from torch import nn

from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, DefaultScope

import mmaction.engine  # noqa: F401  (registers SwinOptimWrapperConstructor)

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "optim"

LR = 1e-3
WD = 0.02
BETAS = (0.9, 0.999)
EPS = 1e-8
MAX_NORM = 1.0
# The Swin configs' paramwise_cfg, in their order.
PARAMWISE = dict(
    absolute_pos_embed=dict(decay_mult=0.0),
    relative_position_bias_table=dict(decay_mult=0.0),
    norm=dict(decay_mult=0.0),
    backbone=dict(lr_mult=0.1),
)
# The gradient scale per step: the norm lands above MAX_NORM on some steps and below on others.
SCALES = [0.05, 0.4, 0.02, 1.5, 0.06, 0.03]
# (step, key): parameters given no gradient on that step (AdamW skips them).
MISSING = [(2, "cls_head.fc_cls.bias"), (4, "backbone.absolute_pos_embed")]
EPOCH_LEN = 2  # iterations per epoch of the AdamW run
# The parameters whose group lr is recorded per step: a backbone one and a head one.
LR_KEYS = ["backbone.patch_embed.proj.weight", "cls_head.fc_cls.weight"]


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm1 = nn.LayerNorm(c)
        self.attn = nn.Module()
        self.attn.relative_position_bias_table = nn.Parameter(torch.zeros(5, 2))
        self.attn.qkv = nn.Linear(c, 6)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.blocks = nn.ModuleList([Block(c)])


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, c, (1, 2, 2), (1, 2, 2))
        self.patch_embed.norm = nn.LayerNorm(c)
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, 3, c))
        self.layers = nn.ModuleList([Layer(c)])
        self.norm = nn.LayerNorm(c)


class Head(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.fc_cls = nn.Linear(c, k)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone(4)
        self.cls_head = Head(4, 3)


def schedulers(optim_wrapper, epoch_length, cfgs):
    built = []
    for cfg in cfgs:
        built.append(
            PARAM_SCHEDULERS.build(
                dict(cfg),
                default_args=dict(optimizer=optim_wrapper, epoch_length=epoch_length),
            )
        )
    return built


def after_iter(scheds, it, epoch_length):
    """ParamSchedulerHook: after_train_iter, then after_train_epoch at an epoch's end."""
    for s in scheds:
        if not s.by_epoch:
            s.step()
    if (it + 1) % epoch_length == 0:
        for s in scheds:
            if s.by_epoch:
                s.step()


def swin_schedule(t_max, eta_min=0.0, cosine_iter_based=False):
    cosine = dict(
        type="CosineAnnealingLR",
        T_max=t_max,
        eta_min=eta_min,
        by_epoch=True,
        begin=0,
        end=t_max,
    )
    if cosine_iter_based:
        cosine["convert_to_iter_based"] = True
    return [
        dict(
            type="LinearLR",
            start_factor=0.1,
            by_epoch=True,
            begin=0,
            end=2.5,
            convert_to_iter_based=True,
        ),
        cosine,
    ]


def adamw_run():
    torch.manual_seed(7)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ow = build_optim_wrapper(
        net,
        dict(
            type="OptimWrapper",
            optimizer=dict(type="AdamW", lr=LR, betas=BETAS, eps=EPS, weight_decay=WD),
            clip_grad=dict(max_norm=MAX_NORM),
            constructor="SwinOptimWrapperConstructor",
            paramwise_cfg=PARAMWISE,
        ),
    )
    named = list(net.named_parameters())
    by_id = {id(p): k for k, p in named}
    group_of = {}
    for g in ow.optimizer.param_groups:
        for p in g["params"]:
            group_of[by_id[id(p)]] = g
    groups = {k: dict(lr=g["lr"], weight_decay=g["weight_decay"]) for k, g in group_of.items()}
    t_max = (len(SCALES) + EPOCH_LEN - 1) // EPOCH_LEN
    scheds = schedulers(ow, EPOCH_LEN, swin_schedule(t_max))

    flat = lambda ts: np.concatenate([t.reshape(-1) for t in ts]).astype(np.float32)
    init = flat([p.detach().numpy() for _, p in named])
    rng = np.random.default_rng(11)
    grads, params, lrs, norms, clipped = [], [], [], [], []
    for step, scale in enumerate(SCALES):
        missing = {k for s, k in MISSING if s == step}
        sq = 0.0
        row = []
        for k, p in named:
            g = (rng.standard_normal(p.shape) * scale).astype(np.float32)
            if k in missing:
                p.grad = None
                g[...] = 0.0
            else:
                p.grad = torch.from_numpy(g.copy())
                sq += float((g.astype(np.float64) ** 2).sum())
            row.append(g)
        grads.append(flat(row))
        norms.append(sq**0.5)
        clipped.append(bool(MAX_NORM / (sq**0.5 + 1e-6) < 1.0))
        lrs.append([group_of[k]["lr"] for k in LR_KEYS])
        ow.step()
        params.append(flat([p.detach().numpy() for _, p in named]))
        after_iter(scheds, step, EPOCH_LEN)
    arrays = dict(init=init, grad=np.stack(grads), param=np.stack(params))
    arrays["lr"] = np.array(lrs, dtype=np.float64)
    meta = dict(
        keys=[k for k, _ in named],
        shapes={k: list(p.shape) for k, p in named},
        groups=groups,
        lr=LR,
        weight_decay=WD,
        betas=list(BETAS),
        eps=EPS,
        max_norm=MAX_NORM,
        steps=len(SCALES),
        lr_keys=LR_KEYS,
        missing=[[s, k] for s, k in MISSING],
        grad_norm=norms,
        clipped=clipped,
        schedule=dict(
            start_factor=0.1,
            warmup_iters=int(2.5 * EPOCH_LEN),
            cosine_period=EPOCH_LEN,
            t_max=t_max,
            eta_min=0.0,
        ),
    )
    return arrays, meta


def schedule_run(epoch_len, iters, cfgs):
    """The lr of two groups (1e-3 and 1e-4) at every iteration `0..iters`."""
    a = nn.Parameter(torch.zeros(1))
    b = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([dict(params=[a], lr=1e-3), dict(params=[b], lr=1e-4)], lr=1e-3)
    ow = OptimWrapper(opt)
    scheds = schedulers(ow, epoch_len, cfgs)
    out = []
    for it in range(iters):
        out.append([g["lr"] for g in opt.param_groups])
        ow.step()
        after_iter(scheds, it, epoch_len)
    return np.array(out, dtype=np.float64)


def main():
    DefaultScope.get_instance("make_optim_fixtures", scope_name="mmaction")
    OUT.mkdir(parents=True, exist_ok=True)
    arrays, meta = adamw_run()
    np.savez(OUT / "adamw.npz", **arrays)

    # name: (epoch_len, iterations, configs, schedule for the Rust side)
    runs = {
        # the reference: iteration-based warm-up over 2.5 epochs, epoch-based cosine from 0;
        # runs past the cosine's end, where the lr stays put
        "swin": (
            7,
            48,
            swin_schedule(6),
            dict(warmup_iters=17, cosine_period=7, t_max=6, eta_min=0.0),
        ),
        # eta_min > 0 makes the chained order of the two schedulers matter
        "eta_min": (
            5,
            40,
            swin_schedule(7, 2e-5),
            dict(warmup_iters=12, cosine_period=5, t_max=7, eta_min=2e-5),
        ),
        # both by iteration
        "by_iter": (
            4,
            30,
            swin_schedule(6, 1e-5, cosine_iter_based=True),
            dict(warmup_iters=10, cosine_period=1, t_max=24, eta_min=1e-5),
        ),
        # int(2.5 * 1) = 2 warm-up iterations; cosine by epoch of one iteration
        "short": (
            1,
            8,
            swin_schedule(5),
            dict(warmup_iters=2, cosine_period=1, t_max=5, eta_min=0.0),
        ),
    }
    sched_arrays, sched_meta = {}, {}
    for name, (epoch_len, iters, cfgs, rust) in runs.items():
        sched_arrays[name] = schedule_run(epoch_len, iters, cfgs)
        sched_meta[name] = dict(rust, start_factor=0.1, bases=[1e-3, 1e-4], iters=iters)
    np.savez(OUT / "schedules.npz", **sched_arrays)
    meta["schedules"] = sched_meta
    (OUT / "optim.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
