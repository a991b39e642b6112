//! Bad input gets an error naming the file, the row or key, and what was expected; an import
//! goes on past a bad video and reports what it skipped. Nothing panics.

use crate::common;

use std::path::{Path, PathBuf};

use mgscope::dataset::import::{import, Format};
use mgscope::pickle::{write_pickle, NdArray, Value};
use mgscope::store::{Dataset, ImportReport};

fn tiny_release(dir: &Path) -> PathBuf {
    let release = dir.join("release");
    mgscope::demo::write_demo(&mgscope::demo::DemoConfig::tiny(), &release, &|_, _| {})
        .expect("demo");
    release
}

fn import_into(dir: &Path, name: &str, fmt: Format, src: &Path) -> mgscope::Result<ImportReport> {
    let mut ds = Dataset::open_or_create(dir.join(name), "imigue").expect("dataset");
    import(fmt, src, &mut ds, &Default::default())
}

fn skipped_text(r: &ImportReport) -> String {
    r.skipped
        .iter()
        .map(|(a, b)| format!("{a}: {b}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bad_label_rows_are_skipped_with_file_row_and_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let release = tiny_release(tmp.path());
    let plans = mgscope::demo::synth::plan(&mgscope::demo::DemoConfig::tiny());
    let p = &plans[0];
    let csv = release.join(&p.vid).join(format!("{}_label.csv", p.vid));
    let text = std::fs::read_to_string(&csv).expect("read");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0] = "3,10".into(); // a missing column
    lines[1] = "11,50,40".into(); // end < start
    lines[2] = format!("11,10,{}", p.n_frames + 5); // beyond the video
    lines[3] = "57,10,20".into(); // not a class
    lines[4] = "11,ten,20".into(); // not a number
    std::fs::write(&csv, lines.join("\n")).expect("write");
    let rep = import_into(tmp.path(), "ds", Format::Imigue, &release).expect("import goes on");
    let t = skipped_text(&rep);
    assert_eq!(rep.skipped.len(), 5, "{t}");
    let name = format!("{}_label.csv", p.vid);
    for (i, (what, why)) in rep.skipped.iter().enumerate() {
        assert!(
            what.contains(&name) && what.contains(&format!("row {i}")),
            "{what}"
        );
        let expect = [
            "expected 3 columns",
            "before start",
            "beyond the video",
            "not a imigue class",
            "expected a non-negative integer",
        ][i];
        assert!(why.contains(expect), "row {i}: {why}");
    }
    let total: usize = plans.iter().map(|p| p.segments.len()).sum();
    assert_eq!(rep.samples_added, total - 5);
}

#[test]
fn truncated_xlsx_skips_that_video_and_imports_the_rest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let release = tiny_release(tmp.path());
    let plans = mgscope::demo::synth::plan(&mgscope::demo::DemoConfig::tiny());
    let bad = &plans[0].vid;
    let xlsx = release.join(bad).join(format!("{bad}_openpose.xlsx"));
    let bytes = std::fs::read(&xlsx).expect("read");
    std::fs::write(&xlsx, &bytes[..bytes.len() / 2]).expect("truncate");
    let rep = import_into(tmp.path(), "ds", Format::Imigue, &release).expect("import goes on");
    assert_eq!(rep.videos_added, plans.len() - 1);
    let t = skipped_text(&rep);
    assert!(
        t.contains(&format!("video {bad}")) && t.contains("_openpose.xlsx"),
        "{t}"
    );

    // Zero bytes and a sheet with too few columns.
    std::fs::write(&xlsx, b"").expect("empty");
    let rep = import_into(tmp.path(), "ds2", Format::Imigue, &release).expect("import goes on");
    assert!(skipped_text(&rep).contains("_openpose.xlsx"));
    std::fs::remove_file(&xlsx).expect("rm");
    let csv = release.join(bad).join(format!("{bad}_openpose.csv"));
    std::fs::write(&csv, "1,2,3\n4,5,6\n").expect("short csv");
    let rep = import_into(tmp.path(), "ds3", Format::Imigue, &release).expect("import goes on");
    let t = skipped_text(&rep);
    assert!(
        t.contains("row 0") && t.contains("expected 411 columns"),
        "{t}"
    );
}

#[test]
fn hostile_and_malformed_pickles_are_refused_with_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fx = common::fixtures().join("pickle");

    let e = import_into(
        tmp.path(),
        "a",
        Format::Pyskl,
        &fx.join("evil_os_system_p0.pkl"),
    )
    .expect_err("dangerous global");
    let msg = e.to_string();
    assert!(
        msg.contains("evil_os_system_p0.pkl") && msg.contains("system"),
        "{msg}"
    );

    // A dict without 'annotations'.
    let p = tmp.path().join("no_ann.pkl");
    std::fs::write(
        &p,
        write_pickle(&Value::Dict(vec![(
            Value::Str("split".into()),
            Value::Dict(vec![]),
        )])),
    )
    .expect("write");
    let msg = import_into(tmp.path(), "b", Format::Pyskl, &p)
        .expect_err("no annotations")
        .to_string();
    assert!(
        msg.contains("no_ann.pkl") && msg.contains("'annotations'"),
        "{msg}"
    );

    // Keypoints of the wrong shape, a bad label type, total_frames disagreeing: each annotation
    // is skipped with its key named; the good one imports.
    let ann = |name: &str, shape: Vec<usize>, label: Value, total: i64| {
        let n: usize = shape.iter().product();
        Value::Dict(vec![
            (Value::Str("frame_dir".into()), Value::Str(name.into())),
            (Value::Str("label".into()), label),
            (Value::Str("total_frames".into()), Value::Int(total)),
            (
                Value::Str("keypoint".into()),
                Value::Array(NdArray::from_f32(shape, vec![1.0; n]).expect("array")),
            ),
        ])
    };
    let root = Value::Dict(vec![(
        Value::Str("annotations".into()),
        Value::List(vec![
            ann("0001_0", vec![1, 5, 36], Value::Int(3), 5),
            ann("0001_1", vec![1, 5, 36, 2], Value::Str("three".into()), 5),
            ann("0001_2", vec![1, 5, 36, 2], Value::Int(3), 6),
            ann("0001_3", vec![1, 5, 36, 2], Value::Int(3), 5),
        ]),
    )]);
    let p = tmp.path().join("shapes.pkl");
    std::fs::write(&p, write_pickle(&root)).expect("write");
    let rep = import_into(tmp.path(), "c", Format::Pyskl, &p).expect("import goes on");
    assert_eq!(rep.samples_added, 1);
    let t = skipped_text(&rep);
    assert!(
        t.contains("annotations[0].keypoint") && t.contains("[M,T,V,2]"),
        "{t}"
    );
    assert!(
        t.contains("annotations[1].label") && t.contains("expected int"),
        "{t}"
    );
    assert!(t.contains("annotations[2].total_frames"), "{t}");

    // Garbage bytes and an empty file.
    let p = tmp.path().join("garbage.pkl");
    std::fs::write(&p, b"\x80\x04\x95garbage").expect("write");
    let msg = import_into(tmp.path(), "d", Format::Pyskl, &p)
        .expect_err("garbage")
        .to_string();
    assert!(msg.contains("garbage.pkl"), "{msg}");
    std::fs::write(&p, b"").expect("write");
    assert!(import_into(tmp.path(), "e", Format::Pyskl, &p).is_err());
}

#[test]
fn other_bad_sources_name_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A folder without the release layout.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let msg = import_into(tmp.path(), "a", Format::Imigue, &empty)
        .expect_err("no labels")
        .to_string();
    assert!(msg.contains("_label.csv"), "{msg}");
    // An mmaction list with a broken line and a missing clip.
    let list = tmp.path().join("iMiGUE_val_clips_list.txt");
    std::fs::write(&list, "0001_0.mp4 3\nbroken-line\n").expect("write");
    let msg = import_into(tmp.path(), "b", Format::MmactionList, &list)
        .expect_err("bad line")
        .to_string();
    assert!(
        msg.contains("iMiGUE_val_clips_list.txt") && msg.contains("line 2"),
        "{msg}"
    );
    std::fs::write(&list, "0001_0.mp4 3\n").expect("write");
    let rep = import_into(tmp.path(), "c", Format::MmactionList, &list).expect("import goes on");
    assert!(skipped_text(&rep).contains("not found"));
    // OpenPose JSON with a non-numeric coordinate.
    let dir = tmp.path().join("json");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("a.json"),
        r#"{"people":[{"pose_keypoints_2d":[1,"x",0.5]}]}"#,
    )
    .expect("write");
    let msg = mgscope::dataset::import::openpose::parse_frame(&dir.join("a.json"))
        .expect_err("bad number")
        .to_string();
    assert!(
        msg.contains("a.json") && msg.contains("people[0].pose_keypoints_2d[1]"),
        "{msg}"
    );
}
