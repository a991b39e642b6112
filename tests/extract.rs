//! `mgscope extract`: outputs equal the library's, resumable, shards partition the clips,
//! a failing clip is reported and the run goes on.

use crate::common;

use std::collections::BTreeSet;

use common::{ok, s};
use mgscope::extract::{output_path, shard_of, Modality, OutFormat};
use mgscope::media::decode::VideoReader;
use mgscope::modality::npy::read_npy_as;
use mgscope::modality::taylor;
use mgscope::store::Dataset;

#[test]
fn extract_is_exact_resumable_and_sharded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    ok(&["demo", s(&release), "--tiny", "--import", s(&ds_dir)]);
    let ds = Dataset::open(&ds_dir).expect("open");
    let samples = ds.samples().expect("samples");
    let short = samples[0].clone();
    drop(ds);
    // One clip too short for a Taylor video (window 6).
    ok(&[
        "bounds",
        s(&ds_dir),
        &short.clip_id,
        &short.start.to_string(),
        &(short.start + 3).to_string(),
    ]);

    let run = |shard: &str| -> serde_json::Value {
        let out = ok(&[
            "extract",
            s(&ds_dir),
            "--modality",
            "taylor,joint",
            "--shard",
            shard,
            "--json",
        ]);
        serde_json::from_str(&out).expect("json")
    };
    let a = run("0/2");
    let b = run("1/2");
    let clips = a["clips"].as_u64().expect("n") + b["clips"].as_u64().expect("n");
    assert_eq!(
        clips as usize,
        samples.len(),
        "two shards cover every clip once"
    );
    let in0: BTreeSet<&str> = samples
        .iter()
        .filter(|x| shard_of(&x.clip_id, 2) == 0)
        .map(|x| x.clip_id.as_str())
        .collect();
    assert_eq!(a["clips"].as_u64(), Some(in0.len() as u64));
    let failed: Vec<String> = a["failed"]
        .as_array()
        .into_iter()
        .chain(b["failed"].as_array())
        .flatten()
        .map(|f| {
            format!(
                "{} {}",
                f[0].as_str().unwrap_or(""),
                f[1].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains(&short.clip_id) && failed[0].contains("clip too short"),
        "{failed:?}"
    );
    let written = a["written"].as_u64().expect("w") + b["written"].as_u64().expect("w");
    assert_eq!(written as usize, 2 * samples.len() - 1);

    // Resumed: nothing to do except the clip that failed.
    let again = run("0/2");
    assert_eq!(again["written"].as_u64(), Some(0));

    // Values equal the library on the same frames.
    let c = &samples[1];
    let out = output_path(&ds_dir, Modality::Taylor, &c.clip_id, OutFormat::Npy);
    let (shape, got) = read_npy_as::<u8>(&out).expect("taylor npy");
    let video = ds_dir.join(format!("../release/{}/{}.mp4", c.video, c.video));
    let mut r = VideoReader::open(&video).expect("open");
    let mut rgb = Vec::new();
    for i in c.start..=c.end {
        rgb.extend_from_slice(&r.frame(i as usize).expect("frame").data);
    }
    let want = taylor::taylor_video(
        &rgb,
        c.frames() as usize,
        360,
        640,
        &taylor::TaylorParams::mm_gesture(),
    )
    .expect("t");
    assert_eq!(shape, vec![want.frames, 360, 640, 3]);
    assert!(got == want.data);
    let (hshape, hm) = read_npy_as::<f32>(output_path(
        &ds_dir,
        Modality::Joint,
        &c.clip_id,
        OutFormat::Npy,
    ))
    .expect("hm");
    assert_eq!(hshape, vec![c.frames() as usize, 36, 64, 64]);
    let peak = hm.iter().cloned().fold(0f32, f32::max);
    assert!(
        peak > 0.3 && peak <= 1.0,
        "joint heatmap peaks at a keypoint score: {peak}"
    );
    // No partial files left behind.
    let partial = std::fs::read_dir(ds_dir.join("cache/taylor"))
        .expect("dir")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".partial"));
    assert!(!partial);
}
