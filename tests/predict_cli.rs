//! `mgscope predict` on the demo dataset with the mmaction2 fixture checkpoints: the dump is
//! the pyskl format (a pickle list of per-clip probability vectors, RGBPose `{'rgb','pose'}`
//! dicts), rows follow the id list, probabilities are means of softmaxes, runs are
//! deterministic, shards partition the split, and the scores land in the dataset as streams.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{fails, ok, s};
use mgscope::dataset::Split;
use mgscope::ensemble::read_score_file;
use mgscope::pickle::{read_pickle, Value};
use mgscope::store::Dataset;

fn ckpt(case: &str) -> std::path::PathBuf {
    common::fixtures()
        .join("models")
        .join(case)
        .join("model.pth")
}

fn rows(pkl: &Path) -> Vec<Value> {
    match read_pickle(&std::fs::read(pkl).expect("read dump")).expect("pickle") {
        Value::List(v) => v,
        other => panic!("dump is a {}", other.type_name()),
    }
}

fn probs(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").to_f32_vec().expect("f32")
}

fn assert_distribution(p: &[f32], classes: usize) {
    assert_eq!(p.len(), classes);
    let sum: f32 = p.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "sum {sum}");
    assert!(p.iter().all(|x| *x > 0.0 && *x < 1.0));
}

fn ids(pkl: &Path) -> Vec<String> {
    std::fs::read_to_string(pkl.with_extension("ids.txt"))
        .expect("ids")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn predict_writes_the_reference_dump_and_registers_streams() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    ok(&["demo", s(&release), "--tiny", "--import", s(&ds_dir)]);
    let ds = Dataset::open(&ds_dir).expect("open");
    let test: BTreeSet<String> = ds
        .samples()
        .expect("samples")
        .into_iter()
        .filter(|x| x.split == Split::Val)
        .map(|x| x.clip_id)
        .collect();
    drop(ds);
    assert!(test.len() >= 4, "the tiny demo has a val split");

    // PoseC3D, validation protocol (1 clip), the whole split, registered as a stream.
    let fast = tmp.path().join("p3d_fast.pkl");
    let p3d = ckpt("posec3d_small");
    let msg = ok(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "posec3d-joint36",
        "--checkpoint",
        s(&p3d),
        "--split",
        "val",
        "--views",
        "fast",
        "--out",
        s(&fast),
        "--register",
        "p3d",
    ]);
    assert!(msg.contains("top-1"), "{msg}");
    let r = rows(&fast);
    let got_ids = ids(&fast);
    assert_eq!(r.len(), test.len());
    assert_eq!(got_ids.iter().cloned().collect::<BTreeSet<_>>(), test);
    for row in &r {
        assert_distribution(&probs(row), 5);
    }
    // The ensemble reader keys the dump by the id list, and the registered stream agrees.
    let streams = read_score_file(
        &fast,
        "p3d",
        Some(&got_ids),
        mgscope::ensemble::stream::ScoreKind::Auto,
    )
    .expect("ensemble reads the dump");
    assert_eq!(streams.len(), 1);
    let ds = Dataset::open(&ds_dir).expect("open");
    let stored = ds.load_stream("p3d").expect("registered");
    assert_eq!(stored.classes, 5);
    assert_eq!(stored.clip_ids, got_ids);
    assert_eq!(&stored.probs[..5], probs(&r[0]).as_slice());
    drop(ds);

    // Same input, same bytes.
    let again = tmp.path().join("again.pkl");
    ok(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "posec3d-joint36",
        "--checkpoint",
        s(&p3d),
        "--split",
        "val",
        "--views",
        "fast",
        "--out",
        s(&again),
    ]);
    assert_eq!(
        std::fs::read(&fast).expect("a"),
        std::fs::read(&again).expect("b")
    );

    // Two shards partition the split and give the same rows as the whole run.
    let fast_rows = rows(&fast);
    let mut union = BTreeSet::new();
    for shard in ["0/2", "1/2"] {
        let out = tmp.path().join(format!("fast{}.pkl", &shard[..1]));
        ok(&[
            "predict",
            s(&ds_dir),
            "--arch",
            "posec3d-joint36",
            "--checkpoint",
            s(&p3d),
            "--split",
            "val",
            "--views",
            "fast",
            "--shard",
            shard,
            "--out",
            s(&out),
        ]);
        for (row, id) in rows(&out).iter().zip(ids(&out)) {
            let k = got_ids.iter().position(|x| *x == id).expect("in split");
            assert_eq!(probs(row), probs(&fast_rows[k]));
            assert!(union.insert(id.clone()), "{id} in two shards");
        }
    }
    assert_eq!(union, test);

    // The reference protocol (10 clips × 2 flips, 5 views per pass) on a few clips.
    let refp = tmp.path().join("ref.pkl");
    ok(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "posec3d-joint36",
        "--checkpoint",
        s(&p3d),
        "--split",
        "val",
        "--shard",
        "0/3",
        "--batch",
        "5",
        "--out",
        s(&refp),
    ]);
    let (r, i) = (rows(&refp), ids(&refp));
    assert!(!r.is_empty());
    assert_eq!(r.len(), i.len());
    for (row, id) in r.iter().zip(&i) {
        assert_distribution(&probs(row), 5);
        // 20 views average differently from 1.
        let k = got_ids.iter().position(|x| x == id).expect("in split");
        assert_ne!(probs(row), probs(&fast_rows[k]));
    }

    // RGBPoseConv3D on decoded frames: a list of {'rgb', 'pose'} dicts, two streams.
    let rp = tmp.path().join("rgbpose.pkl");
    ok(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "rgbpose-conv3d",
        "--checkpoint",
        s(&ckpt("rgbpose_small")),
        "--split",
        "val",
        "--views",
        "fast",
        "--shard",
        "0/2",
        "--out",
        s(&rp),
        "--register",
        "rgbj",
    ]);
    let r = rows(&rp);
    assert!(!r.is_empty());
    for row in &r {
        for head in ["rgb", "pose"] {
            assert_distribution(&probs(row.get(head).expect(head)), 7);
        }
    }
    let ds = Dataset::open(&ds_dir).expect("open");
    assert_eq!(ds.load_stream("rgbj.rgb").expect("rgb").classes, 7);
    assert_eq!(ds.load_stream("rgbj.pose").expect("pose").classes, 7);
    drop(ds);

    // Video Swin on the RGB frames (1 clip, CenterCrop 224).
    let sw = tmp.path().join("swin.pkl");
    ok(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "swin-t",
        "--checkpoint",
        s(&ckpt("swin_small_shift")),
        "--split",
        "val",
        "--views",
        "fast",
        "--shard",
        "1/2",
        "--out",
        s(&sw),
    ]);
    for row in rows(&sw) {
        assert_distribution(&probs(&row), 10);
    }

    // Named errors: a split with no clips, Taylor videos not extracted yet.
    let msg = fails(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "swin-t",
        "--checkpoint",
        s(&ckpt("swin_small_shift")),
        "--split",
        "test",
        "--out",
        s(&sw),
    ]);
    assert!(msg.contains("no clips in split test"), "{msg}");
    let msg = fails(&[
        "predict",
        s(&ds_dir),
        "--arch",
        "swin-t",
        "--checkpoint",
        s(&ckpt("swin_small_shift")),
        "--split",
        "val",
        "--modality",
        "taylor",
        "--out",
        s(&sw),
    ]);
    assert!(msg.contains("mgscope extract"), "{msg}");
}
