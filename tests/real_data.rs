//! Importers on material made by other people (see ../shared/data/README.md).

use crate::common;

use mgscope::dataset::import::{import, openpose, Format, Options};
use mgscope::store::{Dataset, ImportReport};

#[test]
fn pose2sim_openpose_json_folder_imports_exactly() {
    let dir = common::real_data().join("pose2sim-cam01_json");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut ds = Dataset::open_or_create(tmp.path(), "imigue").expect("dataset");
    let opts = Options {
        split: Some(mgscope::dataset::Split::Test),
        ..Default::default()
    };
    let rep = import(Format::OpenposeJson, &dir, &mut ds, &opts).expect("import");
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!((rep.videos_added, rep.samples_added), (1, 1));

    let s = ds
        .sample("pose2sim-cam01")
        .expect("one sample named after the folder");
    assert_eq!((s.start, s.end, s.label), (0, 99, None));
    let k = ds
        .video_keypoints("pose2sim-cam01")
        .expect("kp")
        .expect("present");
    // BODY_25B pose only (face and hands are empty), so the points stay as they are.
    assert_eq!(k.layout, "openpose-pose25");
    assert_eq!((k.frames, k.joints), (100, 25));
    assert_eq!(k.persons, 3, "frames hold 2 or 3 persons");
    // Values straight from the JSON files.
    assert_eq!(k.get(0, 0, 0), [505.232, 431.63, 0.664216]);
    assert_eq!(k.get(0, 0, 1), [515.849, 410.613, 0.60741]);
    assert_eq!(k.get(42, 0, 10), [557.753, 399.947, 0.625089]);
    assert_eq!(k.get(42, 1, 10), [13.5624, 484.208, 0.278071]);
    assert_eq!(k.get(99, 1, 24), [0.0, 0.0, 0.0]);
    // Frame 0 has two persons: the third slot is empty.
    assert_eq!(k.get(0, 2, 0), [0.0, 0.0, 0.0]);
}

#[test]
fn natural_frame_order_and_damaged_frames() {
    let src = common::real_data().join("pose2sim-cam01_json");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cam_json");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Renamed without zero padding: 2 must still come before 10.
    for i in [0usize, 1, 2, 10] {
        std::fs::copy(
            src.join(format!("cam01.{i:04}.json")),
            dir.join(format!("f{i}.json")),
        )
        .expect("copy");
    }
    std::fs::write(
        dir.join("f11.json"),
        b"{\"people\": [{\"pose_keypoints_2d\": [1, 2",
    )
    .expect("write");
    let mut rep = ImportReport::default();
    let frames = openpose::read_frames(&dir, &mut rep).expect("read");
    assert_eq!(frames.len(), 5);
    let expect = openpose::parse_frame(&src.join("cam01.0010.json")).expect("parse");
    assert_eq!(frames[3], expect);
    assert!(frames[4].is_empty());
    assert_eq!(rep.skipped.len(), 1);
    let why = &rep.skipped[0].1;
    assert!(why.contains("f11.json") && why.contains("JSON"), "{why}");
}
