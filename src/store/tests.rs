use super::*;
use crate::dataset::{NewSample, NewVideo};

fn dataset_with_samples(dir: &Path) -> Dataset {
    let mut ds = Dataset::open_or_create(dir, "imigue").expect("create dataset");
    let mut k = Keypoints::zeros("imigue36", 100, 1, 36);
    k.set(10, 0, 0, [5.0, 6.0, 0.8]);
    let v = NewVideo {
        vid: "0001".into(),
        subject: "s1".into(),
        media_path: None,
        n_frames: 100,
        width: Some(640),
        height: Some(360),
        fps: Some(25.0),
        keypoints: Some(k),
        samples: (0..3)
            .map(|i| NewSample {
                clip_id: format!("0001_{i}"),
                row_index: i,
                start: i * 30,
                end: i * 30 + 29,
                label: Some(i),
                split: Split::Train,
            })
            .collect(),
    };
    let mut rep = ImportReport::default();
    ds.add_video(&v, &mut rep).expect("add video");
    assert_eq!(rep.samples_added, 3);
    ds
}

#[test]
fn relabel_undo_redo_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut ds = dataset_with_samples(dir.path());
        ds.relabel("0001_0", 5, "alice").expect("relabel");
        ds.set_bounds("0001_1", 31, 58, "alice").expect("bounds");
        ds.set_note("0001_2", "looks like rub hand", "bob")
            .expect("note");
        ds.set_reviewed("0001_2", true, "bob").expect("reviewed");
        assert!(ds.set_bounds("0001_1", 40, 39, "alice").is_err());
        assert!(ds.set_bounds("0001_1", 40, 100, "alice").is_err());
        assert!(ds.relabel("0001_1", 32, "alice").is_err());
        assert!(ds.relabel("nope", 1, "alice").is_err());
    }
    let mut ds = Dataset::open(dir.path()).expect("reopen");
    assert_eq!(ds.sample("0001_0").map(|s| s.label).ok(), Some(Some(5)));
    assert_eq!(
        ds.sample("0001_0").map(|s| s.imported_label).ok(),
        Some(Some(0))
    );
    let s1 = ds.sample("0001_1").expect("s1");
    assert_eq!((s1.start, s1.end), (31, 58));
    let h = ds.history(None).expect("history");
    assert_eq!(h.len(), 4);
    assert_eq!(h[0].author, "alice");
    assert_eq!(
        (h[0].old_value.as_str(), h[0].new_value.as_str()),
        ("0", "5")
    );

    // Undo the last two, reopen, redo one.
    let u = ds.undo().expect("undo").expect("an event");
    assert_eq!(u.kind, EventKind::Reviewed);
    ds.undo().expect("undo");
    drop(ds);
    let mut ds = Dataset::open(dir.path()).expect("reopen");
    let s2 = ds.sample("0001_2").expect("s2");
    assert_eq!((s2.note.as_str(), s2.reviewed), ("", false));
    let r = ds.redo().expect("redo").expect("an event");
    assert_eq!(r.kind, EventKind::Note);
    assert_eq!(
        ds.sample("0001_2").map(|s| s.note).ok().as_deref(),
        Some("looks like rub hand")
    );

    // A new change drops the remaining redo branch.
    ds.relabel("0001_2", 7, "carol").expect("relabel");
    assert!(ds.redo().expect("redo").is_none());
    let states: Vec<EventState> = ds
        .history(None)
        .expect("h")
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        [
            EventState::Done,
            EventState::Done,
            EventState::Done,
            EventState::Discarded,
            EventState::Done
        ]
    );
    // Undo everything back to the imported state.
    while ds.undo().expect("undo").is_some() {}
    let all = ds.samples().expect("samples");
    for (i, s) in all.iter().enumerate() {
        assert_eq!(s.label, Some(i as u32));
        assert_eq!((s.start, s.end), (i as u32 * 30, i as u32 * 30 + 29));
    }
    assert_eq!(ds.history(Some("0001_0")).map(|h| h.len()).ok(), Some(1));
    assert!(ds.history(Some("0009_9")).is_err());
    assert_eq!(ds.integrity_check().ok().as_deref(), Some("ok"));
}

#[test]
fn reimport_keeps_existing_labels_and_reports_skips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ds = dataset_with_samples(dir.path());
    ds.relabel("0001_0", 9, "alice").expect("relabel");
    let v = NewVideo {
        vid: "0001".into(),
        subject: "s1".into(),
        media_path: None,
        n_frames: 100,
        width: None,
        height: None,
        fps: None,
        keypoints: None,
        samples: vec![NewSample {
            clip_id: "0001_0".into(),
            row_index: 0,
            start: 0,
            end: 10,
            label: Some(1),
            split: Split::Val,
        }],
    };
    let mut rep = ImportReport::default();
    ds.add_video(&v, &mut rep).expect("add");
    assert_eq!(rep.samples_added, 0);
    assert_eq!(rep.skipped.len(), 1);
    assert_eq!(ds.sample("0001_0").map(|s| s.label).ok(), Some(Some(9)));
    let k = ds.video_keypoints("0001").expect("kp").expect("present");
    assert_eq!(k.get(10, 0, 0), [5.0, 6.0, 0.8]);
}

#[test]
fn durability_settings_and_schema_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = dataset_with_samples(dir.path());
    let mode: String = ds
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    let sync: i64 = ds
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    assert_eq!(ds.schema_version().ok(), Some(schema::CURRENT_VERSION));
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(dataset_with_samples(dir.path()));
    let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let err = Dataset::open(dir.path()).expect_err("must refuse");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn video_cache_is_keyed_by_stamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = dataset_with_samples(dir.path());
    ds.cache_put("0001", "frame_index", "size=10,mtime=5", b"abc")
        .expect("put");
    assert_eq!(
        ds.cache_get("0001", "frame_index", "size=10,mtime=5")
            .expect("get"),
        Some(b"abc".to_vec())
    );
    assert_eq!(
        ds.cache_get("0001", "frame_index", "size=11,mtime=5")
            .expect("get"),
        None
    );
    ds.cache_put("0001", "frame_index", "size=11,mtime=5", b"xyz")
        .expect("put");
    assert_eq!(
        ds.cache_get("0001", "frame_index", "size=10,mtime=5")
            .expect("get"),
        None
    );
    assert!(ds.cache_put("0404", "frame_index", "s", b"x").is_err());
}

#[test]
fn version_1_datasets_migrate_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(dataset_with_samples(dir.path()));
    // Roll the file back to schema 1 as an older mgscope left it, then reopen.
    let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
    conn.execute_batch(
        "DROP TABLE score_rows; DROP TABLE score_streams; DROP TABLE video_cache;
         PRAGMA user_version = 1;",
    )
    .expect("downgrade");
    drop(conn);
    let ds = Dataset::open(dir.path()).expect("migrates");
    assert_eq!(ds.schema_version().ok(), Some(schema::CURRENT_VERSION));
    assert_eq!(ds.samples().map(|s| s.len()).ok(), Some(3));
    ds.cache_put("0001", "k", "s", b"1")
        .expect("new table works");
}
