//! `mgscope stats`: the per-channel moments of a split's frames, checked against a direct
//! computation over the same decoded frames; missing media and unextracted modalities are
//! named, not fatal.

use crate::common;

use common::{fails, ok, s};
use mgscope::dataset::Split;
use mgscope::media::decode::VideoReader;
use mgscope::store::Dataset;

#[test]
fn stats_match_a_direct_computation_and_name_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    ok(&["demo", s(&release), "--tiny", "--import", s(&ds_dir)]);

    // Every 3rd frame of each train clip, summed directly in f64.
    let ds = Dataset::open(&ds_dir).expect("open");
    let videos = ds.videos().expect("videos");
    let train: Vec<_> = ds
        .samples()
        .expect("samples")
        .into_iter()
        .filter(|x| x.split == Split::Train)
        .collect();
    assert!(!train.is_empty());
    let (mut sum, mut sq, mut px, mut frames) = ([0f64; 3], [0f64; 3], 0f64, 0u64);
    for smp in &train {
        let v = videos.iter().find(|v| v.vid == smp.video).expect("video");
        let mut r = VideoReader::open(&ds.media_path(v).expect("media")).expect("open video");
        for i in (smp.start..=smp.end).step_by(3) {
            let f = r.frame(i as usize).expect("frame");
            for p in f.data.chunks_exact(3) {
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                    sq[c] += f64::from(p[c]).powi(2);
                }
            }
            px += (f.data.len() / 3) as f64;
            frames += 1;
        }
    }
    let out = ok(&["stats", s(&ds_dir), "--stride", "3", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["frames"].as_u64(), Some(frames));
    assert_eq!(v["clips"].as_u64(), Some(train.len() as u64));
    for c in 0..3 {
        let mean = sum[c] / px;
        let std = (sq[c] / px - mean * mean).sqrt();
        let got_mean = v["mean"][c].as_f64().expect("mean");
        let got_std = v["std"][c].as_f64().expect("std");
        assert!(
            (got_mean - mean).abs() < 1e-9,
            "channel {c}: {got_mean} vs {mean}"
        );
        assert!(
            (got_std - std).abs() < 1e-6,
            "channel {c}: {got_std} vs {std}"
        );
        // A rendered scene, not a constant: the spread is real.
        assert!(got_std > 1.0, "channel {c} std {got_std}");
    }
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ds_dir.join("stats/rgb_train.json")).expect("stats file"),
    )
    .expect("saved json");
    assert_eq!(saved["mean"], v["mean"]);

    // A video gone missing: its clips are left out by name, the rest still count.
    let gone = &train[0].video;
    let media = ds
        .media_path(videos.iter().find(|v| &v.vid == gone).expect("video"))
        .expect("media");
    drop(ds);
    std::fs::remove_file(&media).expect("remove video");
    let n_gone = train.iter().filter(|x| &x.video == gone).count();
    let args = ["stats", s(&ds_dir), "--stride", "3", "--json"];
    if n_gone < train.len() {
        // The other videos' clips still count; the lost ones are listed by name.
        let v: serde_json::Value = serde_json::from_str(&ok(&args)).expect("json");
        let failed = v["failed"].as_array().expect("failed");
        assert_eq!(failed.len(), n_gone);
        assert!(failed[0][1].as_str().expect("why").contains(gone.as_str()));
        assert_eq!(v["clips"].as_u64(), Some((train.len() - n_gone) as u64));
    } else {
        // Nothing left to measure: a named error, not a mean of nothing.
        let msg = fails(&args);
        assert!(msg.contains("no frame could be measured"), "{msg}");
        assert!(
            msg.contains(&format!("{n_gone} of {n_gone} clips failed")),
            "{msg}"
        );
        assert!(msg.contains(&media.display().to_string()), "{msg}");
    }

    // Unextracted modality and unknown names are refused with what to do.
    let msg = fails(&["stats", s(&ds_dir), "--modality", "taylor"]);
    assert!(msg.contains("mgscope extract"), "{msg}");
    let msg = fails(&["stats", s(&ds_dir), "--modality", "joint"]);
    assert!(msg.contains("expected rgb, taylor, flow or depth"), "{msg}");
}
