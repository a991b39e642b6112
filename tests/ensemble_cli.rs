//! `mgscope ensemble` on the demo dataset with score files the test writes (pickle dumps in the
//! pyskl/mmaction2 shapes, .npy + id list, csv): loading, fusion, metrics, search, k-fold,
//! queues, submission, stored streams, and named errors for bad files.

use crate::common;

use std::path::Path;

use common::{fails, ok, s};
use mgscope::dataset::Split;
use mgscope::ensemble::metrics::evaluate;
use mgscope::pickle::{write_pickle, NdArray, Value};
use mgscope::store::Dataset;

const C: usize = 32;

/// Noisy class scores that favour the true label with strength `sharp`.
fn scores(labels: &[Option<u32>], seed: u64, sharp: f32) -> Vec<Vec<f32>> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f32 / (1u64 << 53) as f32
    };
    labels
        .iter()
        .map(|l| {
            let mut row: Vec<f32> = (0..C).map(|_| rnd() * 2.0).collect();
            if let Some(l) = l {
                row[*l as usize] += sharp * rnd() * 2.0;
            }
            let m = row.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let z: f32 = e.iter().sum();
            e.iter().map(|v| v / z).collect()
        })
        .collect()
}

fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let bytes = mgscope::modality::npy::to_npy_bytes(&[rows.len(), C], &flat).expect("npy bytes");
    std::fs::write(path, bytes).expect("npy");
}

#[test]
fn ensemble_cli_end_to_end() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    ok(&["demo", s(&release), "--tiny", "--import", s(&ds_dir)]);
    let ds = Dataset::open(&ds_dir).expect("open");
    let samples = ds.samples().expect("samples");
    drop(ds);
    let val: Vec<_> = samples.iter().filter(|x| x.split == Split::Val).collect();
    let train: Vec<_> = samples.iter().filter(|x| x.split == Split::Train).collect();
    assert!(val.len() >= 4 && !train.is_empty());
    let val_labels: Vec<Option<u32>> = val.iter().map(|x| x.label).collect();

    // Stream A: a pickle list of numpy arrays in val order (ids from the split).
    let a = scores(&val_labels, 1, 3.0);
    let pkl = tmp.path().join("a.pkl");
    let list = Value::List(
        a.iter()
            .map(|r| Value::Array(NdArray::from_f32(vec![C], r.clone()).expect("arr")))
            .collect(),
    );
    std::fs::write(&pkl, write_pickle(&list)).expect("write");
    // Stream B: an RGBPose dump (two heads) as a list of dicts.
    let b_rgb = scores(&val_labels, 2, 1.0);
    let b_pose = scores(&val_labels, 3, 2.0);
    let rgbpose = Value::List(
        b_rgb
            .iter()
            .zip(&b_pose)
            .map(|(r, p)| {
                Value::Dict(vec![
                    (
                        Value::Str("rgb".into()),
                        Value::Array(NdArray::from_f32(vec![C], r.clone()).expect("arr")),
                    ),
                    (
                        Value::Str("pose".into()),
                        Value::Array(NdArray::from_f32(vec![C], p.clone()).expect("arr")),
                    ),
                ])
            })
            .collect(),
    );
    let rp = tmp.path().join("rgbpose.pkl");
    std::fs::write(&rp, write_pickle(&rgbpose)).expect("write");
    // Stream C: .npy + an explicit id list in a shuffled order, covering val and train.
    let mut both: Vec<_> = val.iter().chain(train.iter()).collect();
    both.reverse();
    let c_labels: Vec<Option<u32>> = both.iter().map(|x| x.label).collect();
    let c = scores(&c_labels, 4, 0.5);
    let npy = tmp.path().join("c.npy");
    write_npy(&npy, &c);
    let ids = tmp.path().join("c_ids.txt");
    std::fs::write(
        &ids,
        both.iter()
            .map(|x| x.clip_id.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("ids");

    let d = s(&ds_dir);
    ok(&[
        "ensemble",
        d,
        "--stream",
        &format!("a={}", s(&pkl)),
        "--stream",
        &format!("b={}", s(&rp)),
    ]);
    ok(&[
        "ensemble",
        d,
        "--ids",
        s(&ids),
        "--stream",
        &format!("c={}", s(&npy)),
    ]);
    let out = ok(&[
        "ensemble",
        d,
        "--stream",
        "a:0.5",
        "--stream",
        "b.rgb:0.2",
        "--stream",
        "b.pose:0.2",
        "--stream",
        "c:0.1",
        "--split",
        "val",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["clips"].as_u64(), Some(val.len() as u64));
    // The fused top-1 equals the engine's metric on the same weighted sum computed here.
    let pos_c: std::collections::HashMap<&str, usize> = both
        .iter()
        .enumerate()
        .map(|(i, x)| (x.clip_id.as_str(), i))
        .collect();
    let mut fused = Vec::new();
    for (i, v) in val.iter().enumerate() {
        let ci = pos_c[v.clip_id.as_str()];
        for k in 0..C {
            fused.push(0.5 * a[i][k] + 0.2 * b_rgb[i][k] + 0.2 * b_pose[i][k] + 0.1 * c[ci][k]);
        }
    }
    let m = evaluate(&fused, C, &val_labels).expect("metrics");
    assert!((j["metrics"]["top1"].as_f64().expect("top1") - m.top1).abs() < 1e-12);
    assert!((j["metrics"]["macro_f1"].as_f64().expect("f1") - m.macro_f1).abs() < 1e-12);
    let pa = evaluate(
        &a.iter().flatten().copied().collect::<Vec<_>>(),
        C,
        &val_labels,
    )
    .expect("m");
    assert!((j["per_stream_top1"]["a"].as_f64().expect("a") - pa.top1).abs() < 1e-12);

    // Search with k-fold, a queue, saved weights and a submission for the test split... which
    // the tiny demo lacks: the error says so.
    let w = tmp.path().join("w.toml");
    let out = ok(&[
        "ensemble",
        d,
        "--stream",
        "a",
        "--stream",
        "b.rgb",
        "--stream",
        "b.pose",
        "--stream",
        "c",
        "--search",
        "grid",
        "--step",
        "0.25",
        "--kfold",
        "2",
        "--queue",
        "margin",
        "--top",
        "3",
        "--save-weights",
        s(&w),
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).expect("json");
    let weights: Vec<f64> = j["search"]["weights"]
        .as_array()
        .expect("w")
        .iter()
        .map(|x| x.as_f64().unwrap_or(-1.0))
        .collect();
    assert_eq!(weights.len(), 4);
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    assert!(
        weights
            .iter()
            .all(|w| (w * 4.0 - (w * 4.0).round()).abs() < 1e-6),
        "on the 0.25 grid"
    );
    let tuned = j["tuned_metrics"]["top1"].as_f64().expect("tuned");
    assert!(
        tuned >= j["metrics"]["top1"].as_f64().expect("top1") - 1e-12,
        "search never loses to the given weights on its own objective"
    );
    assert!(j["kfold"]["heldout_mean"].as_f64().is_some());
    assert_eq!(j["queue"].as_array().map(|q| q.len()), Some(3));
    assert!(std::fs::read_to_string(&w)
        .expect("weights")
        .contains("\"a\" = "));
    let e = fails(&[
        "ensemble",
        d,
        "--stream",
        "a",
        "--submit",
        s(&tmp.path().join("p.zip")),
    ]);
    assert!(e.contains("no test split"), "{e}");
}

#[test]
fn bad_score_files_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    ok(&["demo", s(&release), "--tiny", "--import", s(&ds_dir)]);
    let d = s(&ds_dir);
    let ds = Dataset::open(&ds_dir).expect("open");
    let val: Vec<String> = ds
        .samples()
        .expect("s")
        .into_iter()
        .filter(|x| x.split == Split::Val)
        .map(|x| x.clip_id)
        .collect();
    drop(ds);
    // A csv missing one val clip: fusion names the stream and the clip.
    let mut csv = String::new();
    for id in &val[1..] {
        csv.push_str(id);
        for k in 0..C {
            csv.push_str(if k == 0 { ",1" } else { ",0" });
        }
        csv.push('\n');
    }
    let p = tmp.path().join("short.csv");
    std::fs::write(&p, &csv).expect("write");
    let e = fails(&["ensemble", d, "--stream", &format!("short={}", s(&p))]);
    assert!(e.contains("short") && e.contains(&val[0]), "{e}");
    // NaN in a row.
    let p2 = tmp.path().join("nan.csv");
    std::fs::write(&p2, csv.replacen(",1", ",NaN", 1)).expect("write");
    let e = fails(&["ensemble", d, "--stream", &format!("n={}", s(&p2))]);
    assert!(
        e.contains("nan.csv") && e.contains(&val[1]) && e.contains("not finite"),
        "{e}"
    );
    // A pickle with the wrong number of rows for the split.
    let p3 = tmp.path().join("rows.pkl");
    std::fs::write(
        &p3,
        write_pickle(&Value::List(vec![Value::Array(
            NdArray::from_f32(vec![C], vec![0.03; C]).expect("a"),
        )])),
    )
    .expect("write");
    let e = fails(&["ensemble", d, "--stream", &format!("r={}", s(&p3))]);
    assert!(e.contains("rows.pkl") && e.contains("1 score rows"), "{e}");
    // An unknown stored stream.
    let e = fails(&["ensemble", d, "--stream", "nothing"]);
    assert!(e.contains("nothing"), "{e}");
}
