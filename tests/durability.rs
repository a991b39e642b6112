//! A change reported as done is on disk: kill -9 a process in the middle of a burst of relabels
//! and every acknowledged change is there after reopening, with the database intact.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::s;
use mgscope::dataset::import::{import, Format};
use mgscope::store::Dataset;

#[test]
fn sigkill_during_relabel_burst_loses_no_acknowledged_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    let cfg = mgscope::demo::DemoConfig::tiny();
    mgscope::demo::write_demo(&cfg, &release, &|_, _| {}).expect("demo");
    let mut ds = Dataset::open_or_create(&ds_dir, "imigue").expect("dataset");
    import(Format::Imigue, &release, &mut ds, &Default::default()).expect("import");
    let clips: Vec<String> = ds
        .samples()
        .expect("samples")
        .into_iter()
        .map(|s| s.clip_id)
        .collect();
    assert!(clips.len() >= 8, "tiny demo has {} samples", clips.len());
    drop(ds);

    // A long burst: every clip relabelled many times, cycling through classes.
    let mut batch = String::new();
    let mut planned = Vec::new();
    for round in 0..40u32 {
        for (i, c) in clips.iter().enumerate() {
            let class = (round * 7 + i as u32) % 32;
            batch.push_str(&format!("{c} {class}\n"));
            planned.push((c.clone(), class));
        }
    }
    let batch_path = tmp.path().join("batch.txt");
    std::fs::write(&batch_path, batch).expect("write batch");

    let mut child = Command::new(env!("CARGO_BIN_EXE_mgscope"))
        .args(["relabel", s(&ds_dir), "--batch", s(&batch_path)])
        .env("MGSCOPE_AUTHOR", "burst")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked: Vec<(String, u32)> = Vec::new();
    let kill_after = planned.len() / 3;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[0], "ok", "{line}");
        acked.push((parts[1].to_string(), parts[2].parse().expect("class")));
        if acked.len() == kill_after {
            child.kill().expect("SIGKILL");
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "the process must have been killed mid-burst"
    );
    assert_eq!(acked.len(), kill_after);
    std::io::stdout().flush().ok();

    let ds = Dataset::open(&ds_dir).expect("reopen after kill");
    assert_eq!(ds.integrity_check().expect("check"), "ok");
    let history = ds.history(None).expect("history");
    // The process may have committed (and printed into the pipe) a few more than we read
    // before the kill; those are durable too. What must hold: every acknowledged change is
    // there, and the history is exactly a prefix of the planned burst.
    assert!(
        history.len() >= acked.len(),
        "{} events < {} acks",
        history.len(),
        acked.len()
    );
    assert!(
        history.len() < planned.len(),
        "the kill came before the burst ended"
    );
    for (i, ev) in history.iter().enumerate() {
        let (clip, class) = &planned[i];
        assert_eq!(
            (&ev.clip_id, ev.new_value.as_str()),
            (clip, class.to_string().as_str()),
            "event {i}"
        );
        assert_eq!(ev.author, "burst");
    }
    for (i, (clip, class)) in acked.iter().enumerate() {
        assert_eq!((clip, class), (&planned[i].0, &planned[i].1));
    }
    let mut expected = std::collections::HashMap::new();
    for (c, k) in &planned[..history.len()] {
        expected.insert(c.clone(), *k);
    }
    for (clip, class) in &expected {
        assert_eq!(
            ds.sample(clip).expect("sample").label,
            Some(*class),
            "{clip}"
        );
    }
}
