//! demo → import → info round trip through the CLI, and every exporter by re-import.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{ok, s};
use mgscope::dataset::import::{import, Format};
use mgscope::dataset::Split;
use mgscope::store::Dataset;

fn samples_by_clip(ds: &Dataset) -> BTreeMap<String, (u32, u32, Option<u32>, Split)> {
    ds.samples()
        .expect("samples")
        .into_iter()
        .map(|s| (s.clip_id.clone(), (s.start, s.end, s.label, s.split)))
        .collect()
}

fn demo(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let release = dir.join("release");
    let ds = dir.join("ds");
    let out = ok(&["demo", s(&release), "--tiny", "--import", s(&ds)]);
    assert!(out.contains("imported into"), "{out}");
    (release, ds)
}

#[test]
fn demo_import_info_and_export_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (release, ds_dir) = demo(tmp.path());

    // What the generator wrote, read straight from its label csvs and lists.
    let plans = mgscope::demo::synth::plan(&mgscope::demo::DemoConfig::tiny());
    let total: usize = plans.iter().map(|p| p.segments.len()).sum();
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", s(&ds_dir), "--json"])).expect("json");
    assert_eq!(info["samples"].as_u64(), Some(total as u64));
    assert_eq!(info["videos"].as_u64(), Some(plans.len() as u64));
    let frames: u64 = plans.iter().map(|p| u64::from(p.n_frames)).sum();
    assert_eq!(info["frames_in_videos"].as_u64(), Some(frames));
    assert_eq!(info["videos_without_media"].as_u64(), Some(0));
    // Two subjects → train and val, by subject.
    let per_split = info["per_split"].as_object().expect("per_split");
    assert_eq!(
        per_split
            .values()
            .map(|v| v.as_u64().unwrap_or(0))
            .sum::<u64>(),
        total as u64
    );
    assert!(per_split.contains_key("train") && per_split.contains_key("val"));
    let missing = info["keypoint_missing"].as_u64().unwrap_or(0) as f64
        / info["keypoint_points"].as_u64().unwrap_or(1) as f64;
    assert!(missing > 0.0 && missing < 0.3, "missing fraction {missing}");

    let ds = Dataset::open(&ds_dir).expect("open");
    let tax = ds.taxonomy().clone();
    let orig = samples_by_clip(&ds);
    for p in &plans {
        for (row, seg) in p.segments.iter().enumerate() {
            let (a, b, label, _) = orig[&format!("{}_{row}", p.vid)];
            assert_eq!((a, b), (seg.start, seg.end));
            assert_eq!(label, tax.from_raw(seg.raw_class));
        }
        // Keypoints: the 36 groups of frame 17 equal the generator's (2-decimal rounding).
        let k = ds.video_keypoints(&p.vid).expect("kp").expect("has kp");
        assert_eq!(k.frames as u32, p.n_frames);
        let full = p.keypoints(17);
        let sk = mgscope::dataset::Skeleton::imigue36();
        for (j, &g) in sk.openpose_groups.iter().enumerate() {
            let got = k.get(17, 0, j);
            for d in 0..3 {
                assert!(
                    (got[d] - full[g][d]).abs() <= 0.005 + 1e-4,
                    "joint {j} dim {d}"
                );
            }
        }
    }

    // xlsx and csv carry the same numbers: import the csv-only copy and compare keypoints.
    let csv_only = tmp.path().join("csv_only");
    for p in &plans {
        let d = csv_only.join(&p.vid);
        std::fs::create_dir_all(&d).expect("mkdir");
        for f in ["_label.csv", "_openpose.csv"] {
            std::fs::copy(
                release.join(&p.vid).join(format!("{}{f}", p.vid)),
                d.join(format!("{}{f}", p.vid)),
            )
            .expect("copy");
        }
    }
    let mut ds_csv = Dataset::open_or_create(tmp.path().join("ds_csv"), "imigue").expect("ds");
    import(Format::Imigue, &csv_only, &mut ds_csv, &Default::default()).expect("import csv");
    for p in &plans {
        assert_eq!(
            ds_csv.video_keypoints(&p.vid).expect("kp"),
            ds.video_keypoints(&p.vid).expect("kp")
        );
    }

    // Relabel one sample so the exports carry a user change.
    let first = orig.keys().next().expect("a clip").clone();
    ok(&[
        "relabel",
        s(&ds_dir),
        &first,
        "rub hand",
        "--note",
        "checked",
    ]);
    let ds = Dataset::open(&ds_dir).expect("open");
    let changed = samples_by_clip(&ds);
    assert_eq!(changed[&first].2, Some(22));

    // iMiGUE layout export → import: identical samples and keypoints.
    let exp = tmp.path().join("export_imigue");
    ok(&["export", "--format", "imigue", s(&ds_dir), s(&exp)]);
    let mut ds2 = Dataset::open_or_create(tmp.path().join("ds2"), "imigue").expect("ds2");
    let rep = import(Format::Imigue, &exp, &mut ds2, &Default::default()).expect("reimport");
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(samples_by_clip(&ds2), changed);
    for p in &plans {
        assert_eq!(
            ds2.video_keypoints(&p.vid).expect("kp"),
            ds.video_keypoints(&p.vid).expect("kp")
        );
    }
    let v1 = ds.videos().expect("v");
    let v2 = ds2.videos().expect("v");
    for (a, b) in v1.iter().zip(&v2) {
        assert_eq!(
            (&a.vid, &a.subject, a.n_frames, a.width),
            (&b.vid, &b.subject, b.n_frames, b.width)
        );
    }

    // pyskl export → import: each clip comes back with its label, split and keypoints.
    let pkl = tmp.path().join("demo.pkl");
    ok(&["export", "--format", "pyskl", s(&ds_dir), s(&pkl)]);
    let mut ds3 = Dataset::open_or_create(tmp.path().join("ds3"), "imigue").expect("ds3");
    let rep = import(Format::Pyskl, &pkl, &mut ds3, &Default::default()).expect("pyskl import");
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    let back = samples_by_clip(&ds3);
    assert_eq!(back.len(), changed.len());
    for (clip, (a, b, label, split)) in &changed {
        let (a3, b3, l3, s3) = back[clip];
        assert_eq!((a3, b3), (0, b - a), "{clip}");
        assert_eq!((l3, s3), (*label, *split), "{clip}");
        let orig_kp = ds
            .sample_keypoints(&ds.sample(clip).expect("s"))
            .expect("kp");
        let new_kp = ds3
            .sample_keypoints(&ds3.sample(clip).expect("s"))
            .expect("kp");
        assert_eq!(orig_kp.map(|k| k.data), new_kp.map(|k| k.data), "{clip}");
    }

    // Kaggle submission of the val split, read back.
    let zip = tmp.path().join("prediction.zip");
    ok(&[
        "export",
        "--format",
        "kaggle",
        "--split",
        "val",
        s(&ds_dir),
        s(&zip),
    ]);
    let rows = mgscope::dataset::export::read_kaggle_submission(&zip).expect("read zip");
    let want: Vec<(String, u32)> = changed
        .iter()
        .filter(|(_, v)| v.3 == Split::Val)
        .map(|(c, v)| (c.clone(), v.2.expect("labelled")))
        .collect();
    let mut got = rows.clone();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn cli_relabel_bounds_history_undo_redo() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, ds_dir) = demo(tmp.path());
    let d = s(&ds_dir);
    let ds = Dataset::open(&ds_dir).expect("open");
    let first = ds.samples().expect("s")[0].clone();
    drop(ds);
    let clip = first.clip_id.as_str();
    ok(&["relabel", d, clip, "7"]);
    ok(&[
        "bounds",
        d,
        clip,
        &(first.start + 1).to_string(),
        &first.end.to_string(),
    ]);
    let h = ok(&["history", d, clip]);
    assert_eq!(h.lines().count(), 2, "{h}");
    assert!(
        h.contains("Label") && h.contains("Bounds") && h.contains("by test"),
        "{h}"
    );
    assert!(ok(&["undo", d]).contains("Bounds"));
    let ds = Dataset::open(&ds_dir).expect("open");
    assert_eq!(ds.sample(clip).expect("s").start, first.start);
    assert_eq!(ds.sample(clip).expect("s").label, Some(7));
    drop(ds);
    assert!(ok(&["redo", d]).contains("Bounds"));
    assert!(ok(&["redo", d]).contains("nothing to redo"));
    let ds = Dataset::open(&ds_dir).expect("open");
    assert_eq!(ds.sample(clip).expect("s").start, first.start + 1);
    // Errors name what was wrong and never panic.
    let e = common::fails(&["relabel", d, clip, "not a class"]);
    assert!(e.contains("not a class"), "{e}");
    let e = common::fails(&["bounds", d, clip, "10", "5"]);
    assert!(e.contains("before start"), "{e}");
    let e = common::fails(&["relabel", d, "0999_0", "1"]);
    assert!(e.contains("0999_0"), "{e}");
    let e = common::fails(&["info", s(&tmp.path().join("nowhere"))]);
    assert!(e.contains("nowhere"), "{e}");
}
