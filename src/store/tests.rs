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
        "DROP TABLE ensemble_presets; DROP TABLE score_rows; DROP TABLE score_streams;
         DROP TABLE video_cache; PRAGMA user_version = 1;",
    )
    .expect("downgrade");
    drop(conn);
    let ds = Dataset::open(dir.path()).expect("migrates");
    assert_eq!(ds.schema_version().ok(), Some(schema::CURRENT_VERSION));
    assert_eq!(ds.samples().map(|s| s.len()).ok(), Some(3));
    ds.cache_put("0001", "k", "s", b"1")
        .expect("new table works");
}

fn small_stream(name: &str) -> StoredStream {
    StoredStream {
        name: name.into(),
        classes: 2,
        clip_ids: vec!["0001_0".into(), "0001_1".into()],
        probs: vec![0.9, 0.1, 0.2, 0.8],
        source: "test".into(),
        report: "{}".into(),
    }
}

/// The named reason inside a preset error, or a panic naming what came back instead.
fn preset_error<T: std::fmt::Debug>(r: Result<T>) -> PresetError {
    match r {
        Err(Error::Preset { source, .. }) => source,
        other => panic!("expected a preset error, got {other:?}"),
    }
}

#[test]
fn newer_schema_names_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(dataset_with_samples(dir.path()));
    let next = schema::CURRENT_VERSION + 1;
    let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
    conn.pragma_update(None, "user_version", next)
        .expect("bump");
    drop(conn);
    let err = Dataset::open(dir.path()).expect_err("must refuse");
    let msg = err.to_string();
    assert!(msg.contains(&format!("schema version {next}")), "{msg}");
    assert!(
        msg.contains(&format!("({})", schema::CURRENT_VERSION)),
        "{msg}"
    );
    // Refusing must not have touched the file.
    let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, next);
}

#[test]
fn version_3_datasets_gain_presets_and_keep_their_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut ds = dataset_with_samples(dir.path());
        ds.put_stream(&small_stream("rgb")).expect("stream");
        ds.relabel("0001_0", 4, "alice").expect("relabel");
    }
    // The file as mgscope left it before presets existed.
    let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
    conn.execute_batch("DROP TABLE ensemble_presets; PRAGMA user_version = 3;")
        .expect("downgrade");
    drop(conn);
    let mut ds = Dataset::open(dir.path()).expect("migrates");
    assert_eq!(ds.schema_version().ok(), Some(4));
    assert_eq!(schema::CURRENT_VERSION, 4);
    assert_eq!(ds.load_stream("rgb").ok(), Some(small_stream("rgb")));
    assert_eq!(ds.history(None).map(|h| h.len()).ok(), Some(1));
    assert_eq!(ds.presets().map(|p| p.len()).ok(), Some(0));
    ds.save_preset(
        "first",
        &[PresetTerm::stream("rgb", 1.0)],
        SaveMode::CreateOnly,
    )
    .expect("the new table takes presets");
    drop(ds);
    let ds = Dataset::open(dir.path()).expect("reopen");
    assert_eq!(ds.schema_version().ok(), Some(4));
    assert_eq!(ds.integrity_check().ok().as_deref(), Some("ok"));
    assert_eq!(
        ds.load_preset("first").map(|p| p.terms).ok(),
        Some(vec![PresetTerm::stream("rgb", 1.0)])
    );
}

#[test]
fn presets_save_list_load_overwrite_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ds = dataset_with_samples(dir.path());
    for n in ["rgb", "pose.rgb", "pose.pose"] {
        ds.put_stream(&small_stream(n)).expect("stream");
    }
    // Weights that do not survive a careless text round trip.
    let terms = vec![
        PresetTerm::stream("rgb", 1.0 / 3.0),
        PresetTerm {
            name: "pose".into(),
            weight: 0.1 + 0.2,
            parts: vec![("pose.rgb".into(), 0.55), ("pose.pose".into(), 0.45)],
        },
    ];
    assert_eq!(
        ds.save_preset("  best-kfold ", &terms, SaveMode::CreateOnly)
            .ok(),
        Some(Saved::Created)
    );
    ds.save_preset(
        "Alpha",
        &[PresetTerm::stream("rgb", f32::MIN_POSITIVE)],
        SaveMode::CreateOnly,
    )
    .expect("save");
    let listed: Vec<String> = ds
        .presets()
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(listed, ["Alpha", "best-kfold"]);

    let loaded = ds.load_preset("best-kfold").expect("load");
    assert_eq!(loaded.terms, terms, "bit-exact weights");
    assert!(loaded.missing.is_empty());
    let created = loaded.info.created_ms;
    assert_eq!(
        ds.load_preset("Alpha").map(|p| p.terms[0].weight).ok(),
        Some(f32::MIN_POSITIVE)
    );

    // The same name again is refused unless overwriting, and nothing changes.
    let other = vec![PresetTerm::stream("rgb", 0.5)];
    assert!(matches!(
        preset_error(ds.save_preset("best-kfold", &other, SaveMode::CreateOnly)),
        PresetError::Exists(n) if n == "best-kfold"
    ));
    assert_eq!(
        ds.load_preset("best-kfold").map(|p| p.terms).ok(),
        Some(terms.clone())
    );
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(
        ds.save_preset("best-kfold", &other, SaveMode::Overwrite)
            .ok(),
        Some(Saved::Replaced)
    );
    let again = ds.load_preset("best-kfold").expect("load");
    assert_eq!(again.terms, other);
    assert_eq!(again.info.created_ms, created);
    assert!(again.info.updated_ms > created);

    ds.delete_preset("best-kfold").expect("delete");
    assert!(matches!(
        preset_error(ds.load_preset("best-kfold")),
        PresetError::NotFound(n) if n == "best-kfold"
    ));
    assert!(matches!(
        preset_error(ds.delete_preset("best-kfold")),
        PresetError::NotFound(_)
    ));
    assert_eq!(ds.presets().map(|p| p.len()).ok(), Some(1));
}

#[test]
fn a_preset_naming_a_removed_stream_loads_the_streams_it_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ds = dataset_with_samples(dir.path());
    for n in ["rgb", "flow", "pose.rgb"] {
        ds.put_stream(&small_stream(n)).expect("stream");
    }
    let terms = vec![
        PresetTerm::stream("rgb", 0.2),
        PresetTerm::stream("flow", 0.3),
        PresetTerm {
            name: "pose".into(),
            weight: 0.5,
            parts: vec![("pose.rgb".into(), 0.5), ("pose.pose".into(), 0.5)],
        },
    ];
    ds.save_preset("mm", &terms, SaveMode::CreateOnly)
        .expect("save");
    // The flow stream goes away after the preset was saved (no API deletes streams yet).
    ds.conn
        .execute("DELETE FROM score_streams WHERE name = 'flow'", [])
        .expect("drop stream");
    let loaded = ds.load_preset("mm").expect("loads what it can");
    assert_eq!(loaded.terms, vec![PresetTerm::stream("rgb", 0.2)]);
    assert_eq!(loaded.missing, ["flow", "pose.pose"]);
    // The stored preset itself is untouched: the streams may come back.
    ds.put_stream(&small_stream("flow")).expect("stream");
    ds.put_stream(&small_stream("pose.pose")).expect("stream");
    let back = ds.load_preset("mm").expect("load");
    assert_eq!(back.terms, terms);
    assert!(back.missing.is_empty());
}

#[test]
fn bad_presets_are_refused_with_named_errors_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ds = dataset_with_samples(dir.path());
    let ok = [PresetTerm::stream("rgb", 0.5)];
    let mut save = |name: &str, terms: &[PresetTerm]| {
        preset_error(ds.save_preset(name, terms, SaveMode::Overwrite))
    };
    assert!(matches!(save("   ", &ok), PresetError::EmptyName));
    assert!(matches!(
        save(&"x".repeat(MAX_PRESET_NAME + 1), &ok),
        PresetError::NameTooLong(_)
    ));
    assert!(matches!(save("a\nb", &ok), PresetError::NameControlChar(_)));
    assert!(matches!(save("p", &[]), PresetError::NoTerms(_)));
    assert!(matches!(
        save("p", &[PresetTerm::stream(" ", 0.5)]),
        PresetError::UnnamedTerm { .. }
    ));
    assert!(matches!(
        save("p", &[PresetTerm::stream("rgb", 0.5), PresetTerm::stream("rgb", 0.1)]),
        PresetError::DuplicateTerm { stream, .. } if stream == "rgb"
    ));
    assert!(matches!(
        save("p", &[PresetTerm::stream("rgb", f32::NAN)]),
        PresetError::BadWeight { .. }
    ));
    let negative_part = PresetTerm {
        name: "pose".into(),
        weight: 0.5,
        parts: vec![("pose.rgb".into(), -0.5)],
    };
    assert!(matches!(
        save("p", &[negative_part]),
        PresetError::BadSubWeight { part, .. } if part == "pose.rgb"
    ));
    assert_eq!(ds.presets().map(|p| p.len()).ok(), Some(0));

    // A row edited by hand into something unreadable: named on load, the list still works.
    ds.conn
        .execute(
            "INSERT INTO ensemble_presets VALUES ('hand-edited', '{\"terms\": 3}', 0, 0)",
            [],
        )
        .expect("insert");
    assert!(matches!(
        preset_error(ds.load_preset("hand-edited")),
        PresetError::Corrupt { name, .. } if name == "hand-edited"
    ));
    assert_eq!(ds.presets().map(|p| p.len()).ok(), Some(1));
    let msg = ds
        .load_preset("hand-edited")
        .expect_err("corrupt")
        .to_string();
    assert!(
        msg.contains(DB_FILE) && msg.contains("hand-edited"),
        "{msg}"
    );
}

#[test]
fn last_preset_and_working_weights_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut ds = dataset_with_samples(dir.path());
        assert_eq!(ds.last_preset().ok(), Some(None));
        assert_eq!(ds.working_weights().ok(), Some(None));
        ds.save_preset("a", &[PresetTerm::stream("rgb", 0.7)], SaveMode::CreateOnly)
            .expect("save");
        ds.set_last_preset(Some("a")).expect("remember");
        ds.set_working_weights(&[
            PresetTerm::stream("rgb", 0.25),
            PresetTerm::stream("flow", 0.1),
        ])
        .expect("working");
    }
    let mut ds = Dataset::open(dir.path()).expect("reopen");
    assert_eq!(ds.last_preset().ok(), Some(Some("a".to_string())));
    assert_eq!(
        ds.working_weights().ok(),
        Some(Some(vec![
            PresetTerm::stream("rgb", 0.25),
            PresetTerm::stream("flow", 0.1)
        ]))
    );
    // Deleting the remembered preset forgets it; another remembered one is kept.
    ds.delete_preset("a").expect("delete");
    assert_eq!(ds.last_preset().ok(), Some(None));
    ds.save_preset("b", &[PresetTerm::stream("rgb", 0.7)], SaveMode::CreateOnly)
        .expect("save");
    ds.save_preset("c", &[PresetTerm::stream("rgb", 0.7)], SaveMode::CreateOnly)
        .expect("save");
    ds.set_last_preset(Some("b")).expect("remember");
    ds.delete_preset("c").expect("delete");
    assert_eq!(ds.last_preset().ok(), Some(Some("b".to_string())));
    ds.set_last_preset(None).expect("forget");
    assert_eq!(ds.last_preset().ok(), Some(None));
}
