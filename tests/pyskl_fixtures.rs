//! The pyskl importer on annotation pickles written by real numpy (1.26 and 2.x) at
//! protocols 2, 4 and 5 (tools/make_pickle_fixtures.py), compared with the values Python saw.

use crate::common;

use mgscope::dataset::import::{import, Format};
use mgscope::dataset::Split;
use mgscope::store::Dataset;

#[test]
fn pyskl_pickles_from_numpy_import_exactly() {
    let fx = common::fixtures().join("pickle");
    // Python's json writes Infinity for the dtype fixtures; the annotation part is plain JSON.
    let text = std::fs::read_to_string(fx.join("expected.json"))
        .expect("expected.json")
        .replace("-Infinity", "null")
        .replace("Infinity", "null");
    let expected: serde_json::Value = serde_json::from_str(&text).expect("json");
    let ann = &expected["annotation"];
    for file in [
        "ann_p2.pkl",
        "ann_p4.pkl",
        "ann_p5.pkl",
        "ann_p2_np1.pkl",
        "ann_p4_np1.pkl",
        "ann_p5_np1.pkl",
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut ds = Dataset::open_or_create(tmp.path(), "ma52").expect("dataset");
        let rep = import(Format::Pyskl, &fx.join(file), &mut ds, &Default::default()).expect(file);
        // The fixture's third clip carries NTU label 59, beyond MA-52's 52 classes: skipped,
        // with the key and the range named.
        assert_eq!(rep.skipped.len(), 1, "{file}: {:?}", rep.skipped);
        assert_eq!(rep.skipped[0].0, "annotations[2]");
        assert!(rep.skipped[0]
            .1
            .contains("annotations[2].label: 59 is out of range"));
        let list = ann["annotations"].as_array().expect("annotations");
        assert_eq!(list[2]["label"].as_i64(), Some(59));
        assert_eq!(rep.samples_added, list.len() - 1, "{file}");
        for a in &list[..2] {
            let id = a["frame_dir"].as_str().expect("frame_dir");
            let s = ds.sample(id).expect(id);
            assert_eq!(s.label.map(i64::from), a["label"].as_i64(), "{file} {id}");
            let want_split = ["train", "val", "test"]
                .iter()
                .find(|sp| {
                    ann["split"][**sp]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(id)))
                })
                .and_then(|sp| Split::parse(sp))
                .unwrap_or(Split::None);
            assert_eq!(s.split, want_split, "{file} {id}");
            let t = a["total_frames"].as_u64().expect("T") as u32;
            assert_eq!((s.start, s.end), (0, t - 1));
            let k = ds.sample_keypoints(&s).expect("kp").expect("present");
            let xy: Vec<f32> = a["keypoint"]["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_f64().expect("num") as f32)
                .collect();
            let sc: Vec<f32> = a["keypoint_score"]["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_f64().expect("num") as f32)
                .collect();
            let (m, v) = (k.persons, k.joints);
            assert_eq!(xy.len(), m * k.frames * v * 2);
            for mi in 0..m {
                for ti in 0..k.frames {
                    for vi in 0..v {
                        let i = (mi * k.frames + ti) * v + vi;
                        assert_eq!(
                            k.get(ti, mi, vi),
                            [xy[2 * i], xy[2 * i + 1], sc[i]],
                            "{file} {id}"
                        );
                    }
                }
            }
            let video = ds
                .videos()
                .expect("videos")
                .into_iter()
                .find(|x| x.vid == id)
                .expect("video");
            assert_eq!((video.height, video.width), (Some(720), Some(1280)));
        }
    }
}
