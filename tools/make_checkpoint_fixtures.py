"""Writes the small torch checkpoints that tests/checkpoint.rs reads.

Run with the reference env: `$(bash ../shared/tools/reference-env.sh) tools/make_checkpoint_fixtures.py`.
Values are arange-based so the Rust test states them without Python.
"""
import collections
import os
import sys

import torch

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "checkpoint")
os.makedirs(out, exist_ok=True)


def tensors():
    base = torch.arange(12, dtype=torch.float32) / 4  # one storage shared by three views
    sd = collections.OrderedDict()
    sd["backbone.a"] = base[:6].view(2, 3)
    sd["backbone.t"] = base[:6].view(3, 2).t()  # non-contiguous (stride (1, 2))
    sd["backbone.slice"] = base[7:11]  # storage offset 7
    sd["backbone.bf16"] = torch.tensor([1.5, -2.0, 0.25], dtype=torch.bfloat16)
    sd["backbone.f16"] = torch.tensor([[0.5, -1.0]], dtype=torch.float16)
    sd["backbone.f64"] = torch.tensor([1e-3], dtype=torch.float64)
    sd["backbone.i64"] = torch.tensor([1, -2, 3], dtype=torch.int64)
    sd["backbone.i8"] = torch.tensor([-5, 7], dtype=torch.int8)
    sd["backbone.flag"] = torch.tensor([True, False])
    sd["backbone.scalar"] = torch.tensor(2.5)
    sd["backbone.bn.num_batches_tracked"] = torch.tensor(7)
    sd["cls_head.param"] = torch.nn.Parameter(torch.full((2, 2), -1.0))
    return sd


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


torch.save({"state_dict": tensors(), "meta": {"epoch": 3, "note": "mgscope fixture"}},
           os.path.join(out, "wrapped.pth"))
torch.save(tensors(), os.path.join(out, "bare.pth"))
torch.save({"model": collections.OrderedDict(("module." + k, v) for k, v in tensors().items())},
           os.path.join(out, "ddp.pth"))
torch.save({"state_dict": tensors(), "extra": Hostile()}, os.path.join(out, "hostile.pth"))
torch.save(tensors(), os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), os.path.join(out, "scripted.pt"))
print("wrote", sorted(os.listdir(out)), file=sys.stderr)
