#!/usr/bin/env python3
"""Writes the ensemble engine's test fixtures under tests/fixtures/ensemble/.

* sklearn_metrics.json  - random probability matrices + labels and scikit-learn's metrics on them
* mm_gesture_preset.json - nine score streams shaped like MM-Gesture's dumps, fused with the formula
                           of momiji-bit/MM-Gesture ensemble/ensemble.py in float64
* npy/*.npy             - the same small matrix in every float layout numpy writes, plus bad files

Run with the helper venv:  .venv/bin/python tools/make_ensemble_fixtures.py
Probabilities are rounded to 6 decimals and scikit-learn runs on the rounded values, so the Rust side
reads exactly the numbers sklearn saw.
"""
import json
import os
import sys

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    top_k_accuracy_score,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ensemble")
SEED = 20250611


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def distinct_rows(rng, make_row, n):
    """Rows whose rounded values are pairwise distinct, so no tie rule is exercised by accident."""
    rows = []
    while len(rows) < n:
        r = np.round(make_row(rng), 6)
        if len(set(r.tolist())) == len(r):
            rows.append(r)
    return np.array(rows)


def logit_row(rng, c, label, strength):
    x = rng.normal(0.0, 1.0, c)
    # Right most of the time, confidently wrong some of the time.
    target = label if rng.random() < 0.55 else rng.integers(c)
    x[target] += strength
    return softmax(x[None, :])[0]


def case(name, probs, labels):
    c = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    all_labels = list(range(c))
    return {
        "name": name,
        "classes": c,
        "labels": labels.tolist(),
        "probs": probs.tolist(),
        "y_pred": y_pred.tolist(),
        "accuracy": accuracy_score(labels, y_pred),
        "top5": top_k_accuracy_score(labels, probs, k=5, labels=all_labels),
        "top1_sklearn": top_k_accuracy_score(labels, probs, k=1, labels=all_labels),
        "balanced_accuracy": balanced_accuracy_score(labels, y_pred),
        "f1_macro": f1_score(labels, y_pred, average="macro", zero_division=0),
        "confusion": confusion_matrix(labels, y_pred, labels=all_labels).tolist(),
        "recall": recall_score(labels, y_pred, labels=all_labels, average=None, zero_division=0).tolist(),
    }


def metric_cases(rng):
    cases = []

    # iMiGUE-validation-sized: 777 clips x 32 classes, classes 3, 17 and 29 never labelled.
    present = [k for k in range(32) if k not in (3, 17, 29)]
    labels = rng.choice(present, size=777)
    probs = np.array([distinct_rows(rng, lambda r: logit_row(r, 32, l, 2.5), 1)[0] for l in labels])
    cases.append(case("val_777x32_absent_classes", probs, labels))

    # Small: labels only 0..2, predictions include 4 and 5 (absent from y_true); class 3 nowhere.
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    forced = {1: 4, 4: 5, 7: 4, 10: 5}
    rows = []
    for i, l in enumerate(labels):
        def make(r, i=i, l=l):
            x = r.normal(0.0, 0.5, 6)
            x[forced.get(i, l if r.random() < 0.7 else r.integers(3))] += 3.0
            x[3] -= 5.0
            return softmax(x[None, :])[0]
        rows.append(distinct_rows(rng, make, 1)[0])
    cases.append(case("small_pred_absent_from_true", np.array(rows), labels))

    # Five classes: k = 5 covers every class (sklearn warns and scores 1).
    labels = rng.integers(0, 5, size=60)
    probs = np.array([distinct_rows(rng, lambda r: logit_row(r, 5, l, 1.5), 1)[0] for l in labels])
    cases.append(case("five_classes", probs, labels))

    # Deliberate ties: values from a tiny set, so argmax (lowest index) and sklearn's top-k
    # (highest index among equals) disagree on some rows.
    labels = rng.integers(0, 8, size=40)
    probs = rng.choice([0.1, 0.2, 0.3], size=(40, 8))
    probs[0] = [0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.0, 0.0]
    labels[0] = 0
    probs[1] = [0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.0, 0.0]
    labels[1] = 1
    cases.append(case("ties", np.round(probs, 6), labels))
    return cases


STREAMS = [
    "swin_base", "swin_small_trans", "swin_base_taylor", "swin_base_of", "swin_base_depth",
    "p3d_rgb+j.rgb", "p3d_rgb+j.pose", "p3d_rgb+l_12.rgb", "p3d_rgb+l_12.pose",
]


def preset_fixture(rng):
    n, c = 40, 32
    ids = [f"{54 + i // 10:04d}_{i % 10}" for i in range(n)]
    while True:
        base = rng.normal(0.0, 1.0, (n, c))
        base[np.arange(n), rng.integers(0, c, n)] += 2.0
        streams = {s: np.round(softmax(base + rng.normal(0.0, 1.2, (n, c))), 6) for s in STREAMS}
        # ensemble/ensemble.py: R, RT, D, TY, OF at 0.2; RJ, RL = 0.5*rgb + 0.5*pose at 0.5.
        fused = (
            streams["swin_base"] * 0.2
            + streams["swin_small_trans"] * 0.2
            + streams["swin_base_depth"] * 0.2
            + streams["swin_base_taylor"] * 0.2
            + streams["swin_base_of"] * 0.2
            + (0.5 * streams["p3d_rgb+j.rgb"] + 0.5 * streams["p3d_rgb+j.pose"]) * 0.5
            + (0.5 * streams["p3d_rgb+l_12.rgb"] + 0.5 * streams["p3d_rgb+l_12.pose"]) * 0.5
        )
        top2 = np.sort(fused, axis=1)[:, -2:]
        # f32 vs f64 must not be able to flip an argmax.
        if (top2[:, 1] - top2[:, 0]).min() > 1e-4:
            break
    return {
        "clip_ids": ids,
        "classes": c,
        "streams": {s: v.tolist() for s, v in streams.items()},
        "fused": fused.tolist(),
        "pred": fused.argmax(axis=1).tolist(),
    }


def npy_fixtures(d):
    os.makedirs(d, exist_ok=True)
    a = np.arange(12).reshape(3, 4) / 8 + 0.125
    np.save(os.path.join(d, "f4_le_c_v1.npy"), a.astype("<f4"))
    np.save(os.path.join(d, "f8_le_c_v1.npy"), a.astype("<f8"))
    np.save(os.path.join(d, "f4_be_c_v1.npy"), a.astype(">f4"))
    np.save(os.path.join(d, "f8_be_f_v1.npy"), np.asfortranarray(a.astype(">f8")))
    np.save(os.path.join(d, "f4_le_f_v1.npy"), np.asfortranarray(a.astype("<f4")))
    for version, dt, name in [((2, 0), "<f4", "f4_le_c_v2.npy"), ((3, 0), "<f8", "f8_le_c_v3.npy")]:
        with open(os.path.join(d, name), "wb") as f:
            np.lib.format.write_array(f, a.astype(dt), version=version)
    np.save(os.path.join(d, "i8_1d.npy"), np.arange(3, dtype="<i8"))
    np.save(os.path.join(d, "f4_1d.npy"), np.zeros(3, dtype="<f4"))
    np.save(os.path.join(d, "object.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    # Score matrix + id list, for ScoreStream::from_npy (logits, big-endian Fortran f8 on purpose).
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    np.save(os.path.join(d, "logits_2x3.npy"), np.asfortranarray(logits.astype(">f8")))
    with open(os.path.join(d, "logits_2x3_ids.txt"), "w") as f:
        f.write("0054_0\n0054_1\n")


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(ROOT, exist_ok=True)
    meta = {"generator": "tools/make_ensemble_fixtures.py", "seed": SEED,
            "sklearn": sklearn.__version__, "numpy": np.__version__}
    with open(os.path.join(ROOT, "sklearn_metrics.json"), "w") as f:
        json.dump({**meta, "cases": metric_cases(rng)}, f, separators=(",", ":"))
    with open(os.path.join(ROOT, "mm_gesture_preset.json"), "w") as f:
        json.dump({**meta, **preset_fixture(rng)}, f, separators=(",", ":"))
    npy_fixtures(os.path.join(ROOT, "npy"))
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fs in os.walk(ROOT) for fn in fs)
    print(f"fixtures written to {os.path.normpath(ROOT)}: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
