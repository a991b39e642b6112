#!/usr/bin/env python3
"""Writes the pickle fixtures that the Rust reader (src/pickle.rs) is tested
against, and checks that numpy can load what the Rust writer produced.

  python tools/make_pickle_fixtures.py [OUT_DIR]        # numpy 2.x run
  python tools/make_pickle_fixtures.py --np1 [OUT_DIR]  # numpy 1.x run (*_np1.pkl)
  python tools/make_pickle_fixtures.py --check FILE     # load written_by_rust.pkl

OUT_DIR defaults to tests/fixtures/pickle next to this script's parent.
"""
import collections
import json
import math
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "fixtures", "pickle")


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def annotation_dict():
    # Legacy RandomState: its stream is frozen across numpy versions, so the
    # numpy-1 and numpy-2 runs produce identical data.
    rng = np.random.RandomState(20240601)
    anns = []
    names = ["S001C001P001R001A001", "S001C001P002R001A007", "S002C003P004R002A060"]
    for i, name in enumerate(names):
        m, t, v = 1, 5, 36
        # Quarter-pixel / 1/256 quantisation keeps the JSON reprs short.
        kp = (np.round(rng.rand(m, t, v, 2) * 1280 * 4) / 4).astype(np.float32)
        score = (np.round(rng.rand(m, t, v) * 256) / 256).astype(np.float32)
        label = np.int64(59) if i == 2 else [0, 6][i]
        anns.append({
            "frame_dir": name,
            "label": label,
            "total_frames": t,
            "img_shape": (720, 1280),
            "original_shape": (720, 1280),
            "keypoint": kp,
            "keypoint_score": score,
        })
    return {"split": {"train": names[:2], "val": names[2:]}, "annotations": anns}


def score_list():
    rng = np.random.RandomState(7)
    return [(np.round(rng.randn(32) * 1024) / 1024).astype(np.float32) for _ in range(4)]


def mixed_scores():
    f64 = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4) * 0.5 - 2.0)
    assert f64.flags.f_contiguous and not f64.flags.c_contiguous
    be = np.array([1.5, -2.25, 3e-3, 1e20, -0.0], dtype=">f4")
    scalars = [np.float32(0.5), np.int64(-7), np.bool_(True), np.uint64(2**63 + 5),
               np.float16(1.5), np.float64(-0.125)]
    return {"f64_fortran": f64, "be_f4": be, "scalars": scalars}


def dtype_arrays():
    out = {}
    vals = {
        "b1": [True, False, True],
        "i1": [-128, 0, 127],
        "u1": [0, 1, 255],
        "i2": [-32768, 1, 32767],
        "u2": [0, 65535, 258],
        "i4": [-2**31, 5, 2**31 - 1],
        "u4": [0, 2**32 - 1, 65536],
        "i8": [-2**63, 2**40 + 3, 2**63 - 1],
        "u8": [0, 2**53, 2**53 + 2],
        "f2": [1.0, -0.5, 65504.0, 2.0**-24, float("inf")],
        "f4": [0.1, -3.5, 1e30],
        "f8": [0.1, -1e-300, 1e300],
    }
    for code, v in vals.items():
        for order in ("<", ">") if code not in ("b1", "i1", "u1") else ("|",):
            out[f"{order}{code}"] = np.array(v, dtype=order + code)
    out["zero_d_i4"] = np.array(42, dtype="<i4")
    out["empty_f4"] = np.zeros((0, 3), dtype="<f4")
    out["c3d_u2"] = np.arange(24, dtype="<u2").reshape(2, 3, 4)
    out["f3d_i2"] = np.asfortranarray(np.arange(24, dtype="<i2").reshape(2, 3, 4) - 12)
    return out


def builtins_obj():
    shared = [1, 2]
    return {
        "none": None, "t": True, "f": False,
        "small": 5, "neg": -3, "i16": 40000, "i32": -2**31, "i64": 2**62,
        "big": 2**100, "negbig": -2**100,
        "float": 1.25, "negf": -1e300,
        "str": "h\u00e9llo \u2713 \\ \n \U0001F600",
        "bytes": b"\x00\xffab", "empty_bytes": b"", "ba": bytearray(b"xy"),
        "tuple0": (), "tuple1": (1,), "tuple5": (1, 2, 3, 4, 5),
        "list": [1, [2, [3]]],
        "set": {7}, "fs": frozenset({8}),
        "shared": [shared, shared],
    }


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


# --------------------------------------------------------------------------
# JSON expectations
# --------------------------------------------------------------------------

def arr_json(a):
    return {
        "dtype": a.dtype.str[1:],
        "shape": list(a.shape),
        "fortran": bool(a.flags.f_contiguous and not a.flags.c_contiguous),
        # C-order flat values, which is what the Rust accessors return.
        "data": [x.item() if not isinstance(x.item(), float) else float(x)
                 for x in np.ascontiguousarray(a).reshape(-1)],
    }


def to_json(v):
    if isinstance(v, np.ndarray):
        return arr_json(v)
    if isinstance(v, np.generic):
        x = v.item()
        # u64 above i64::MAX becomes a decimal string on the Rust side.
        return str(x) if isinstance(x, int) and x > 2**63 - 1 else x
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    return v


# --------------------------------------------------------------------------
# --check: what the Rust writer produced
# --------------------------------------------------------------------------

def rust_sample():
    """Must match `sample_value()` in the Rust tests."""
    n_kp = 1 * 5 * 36 * 2
    kp = (np.arange(n_kp, dtype=np.float32) * np.float32(0.25) - np.float32(10)).reshape(1, 5, 36, 2)
    sc = (np.arange(180, dtype=np.float32) % 256 / np.float32(256)).reshape(1, 5, 36)
    return {
        "split": {"train": ["S001C001P001R001A001", "S001C001P001R001A002"],
                  "val": ["S001C001P001R001A003"]},
        "annotations": [{
            "frame_dir": "S001C001P001R001A001",
            "label": 0,
            "total_frames": 5,
            "img_shape": (720, 1280),
            "original_shape": (720, 1280),
            "keypoint": kp,
            "keypoint_score": sc,
        }],
        "extras": {
            "big": 2**100,
            "negbig": -(2**70) - 1,
            "i64min": -2**63,
            "bytes": bytes(range(256)),
            "empty": b"",
            "set": {1},
            "tuple4": (1, "a", None, True),
            "float": -0.1,
            "unicode": "h\u00e9 \u2713 \U0001F600",
            "f64_fortran": np.asfortranarray(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])),
            "i64": np.array([-1, 2**40], dtype=np.int64),
            "u8": np.array([0, 255], dtype=np.uint8),
            "bool": np.array([True, False]),
            "f16": np.array([1.5, -2.0], dtype=np.float16),
            "zero_d": np.array(3.5, dtype=np.float32),
            "empty_arr": np.zeros((0, 3), dtype=np.float32),
        },
    }


def same(a, b, path="root"):
    if isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray), path
        assert a.dtype == b.dtype, (path, a.dtype, b.dtype)
        assert a.shape == b.shape, (path, a.shape, b.shape)
        assert a.flags.f_contiguous == b.flags.f_contiguous, path
        assert a.flags.c_contiguous == b.flags.c_contiguous, path
        assert a.tobytes(order="A") == b.tobytes(order="A"), path
        return
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(b, dict):
        assert list(a.keys()) == list(b.keys()), path
        for k in b:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(b, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), (path, a, b)
    else:
        assert a == b, (path, a, b)


def check(path):
    import warnings
    with open(path, "rb") as f:
        data = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pickle.loads(data)
    same(got, rust_sample())
    print(f"OK: numpy {np.__version__} (Python {sys.version.split()[0]}) loaded {path} "
          f"and it matches the expected values")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def dump(out, name, obj, protocol, **kw):
    with open(os.path.join(out, name), "wb") as f:
        pickle.dump(obj, f, protocol=protocol, **kw)


def main(argv):
    if argv[:1] == ["--check"]:
        check(argv[1])
        return
    np1 = argv[:1] == ["--np1"]
    if np1:
        argv = argv[1:]
        assert np.__version__.startswith("1."), np.__version__
    out = argv[0] if argv else DEFAULT_OUT
    os.makedirs(out, exist_ok=True)

    ann = annotation_dict()
    if np1:
        for p in (2, 4, 5):
            dump(out, f"ann_p{p}_np1.pkl", ann, p)
        dump(out, "mixed_p2_np1.pkl", mixed_scores(), 2)
        return

    for p in (2, 4, 5):
        dump(out, f"ann_p{p}.pkl", ann, p)
    dump(out, "scores_p4.pkl", score_list(), 4)
    for p in (2, 4, 5):
        dump(out, f"mixed_p{p}.pkl", mixed_scores(), p)
    for p in (2, 4):
        dump(out, f"dtypes_p{p}.pkl", dtype_arrays(), p)
    for p in range(6):
        dump(out, f"builtins_p{p}.pkl", builtins_obj(), p)
    od = collections.OrderedDict(
        [("zeta", 1), ("alpha", [1.5, None]), ("mid", collections.OrderedDict([("x", (1, 2))]))])
    for p in (2, 4):
        dump(out, f"ordered_p{p}.pkl", od, p)

    # Dangerous globals: a real pickler run (os.system pickles as posix.system
    # on Linux) and the classic hand-written protocol-0 exploit.
    dump(out, "evil_reduce_p4.pkl", Evil(), 4)
    with open(os.path.join(out, "evil_os_system_p0.pkl"), "wb") as f:
        f.write(b"cos\nsystem\n(S'echo pwned'\ntR.")

    # Things the reader must refuse with a clear error.
    dump(out, "object_array_p4.pkl", np.array([1, "a"], dtype=object), 4)
    dump(out, "unicode_array_p4.pkl", np.array(["ab", "c"]), 4)
    buffers = []
    dump(out, "oob_p5.pkl", np.arange(4, dtype=np.float32), 5, buffer_callback=buffers.append)
    assert buffers, "expected an out-of-band buffer"

    expected = {
        "annotation": to_json(ann),
        "scores": to_json(score_list()),
        "mixed": to_json(mixed_scores()),
        "dtypes": to_json(dtype_arrays()),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
