//! `mgscope probe heatmap|taylor|flow|depth` on reference fixtures and real video.

use crate::common;

use common::{fails, ok, s};
use mgscope::media::decode::VideoReader;
use mgscope::modality::npy::read_npy_as;
use mgscope::modality::{flow, taylor};

#[test]
fn probe_heatmap_equals_the_mmaction2_fixture() {
    let fx = common::fixtures().join("modality");
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, skeleton) in [
        ("hm_imigue_joint_double", "imigue36"),
        ("hm_coco_limb64_double", "coco17"),
    ] {
        let (_, meta) = read_npy_as::<f64>(fx.join(format!("{name}_meta.npy"))).expect("meta");
        let shape: Vec<usize> = meta[8..12].iter().map(|v| *v as usize).collect();
        let out = tmp.path().join(format!("{name}.npy"));
        let kp = fx.join(format!("{name}_kp.npy"));
        let score = fx.join(format!("{name}_score.npy"));
        let mut args: Vec<String> = vec![
            "probe".into(),
            "heatmap".into(),
            "--keypoints".into(),
            s(&kp).into(),
            "--image-size".into(),
            format!("{},{}", meta[0], meta[1]),
            "--kind".into(),
            if meta[4] == 0.0 {
                "joint".into()
            } else {
                "limb".into()
            },
            "--sigma".into(),
            meta[2].to_string(),
            "--scaling".into(),
            meta[3].to_string(),
            "--eps".into(),
            meta[7].to_string(),
            "--skeleton".into(),
            skeleton.into(),
            "--out".into(),
            s(&out).into(),
        ];
        if meta[13] != 0.0 {
            args.extend(["--scores".into(), s(&score).into()]);
        }
        if meta[5] != 0.0 {
            args.push("--double".into());
        }
        if meta[6] == 0.0 {
            args.push("--no-score".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&refs);
        let (got_shape, got) = read_npy_as::<f32>(&out).expect("out");
        assert_eq!(got_shape, shape, "{name}");
        let (_, nzidx) = read_npy_as::<i32>(fx.join(format!("{name}_nzidx.npy"))).expect("idx");
        let (_, nzval) = read_npy_as::<f32>(fx.join(format!("{name}_nzval.npy"))).expect("val");
        let mut want = vec![0f32; got.len()];
        for (i, v) in nzidx.iter().zip(nzval) {
            want[*i as usize] = v;
        }
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(max, 0.0, "{name}: max abs difference vs mmaction2");
    }
    let e = fails(&[
        "probe",
        "heatmap",
        "--keypoints",
        s(&fx.join("hm_imigue_joint_double_score.npy")),
        "--image-size",
        "64,64",
        "--kind",
        "joint",
        "--out",
        s(&tmp.path().join("x.npy")),
    ]);
    assert!(e.contains("expected keypoints [M,T,V,2]"), "{e}");
}

#[test]
fn probe_taylor_and_flow_on_real_video() {
    let v = common::real_data().join("single_face.mp4");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("t.npy");
    ok(&[
        "probe",
        "taylor",
        s(&v),
        "--start",
        "5",
        "--end",
        "16",
        "--out",
        s(&out),
    ]);
    let (shape, got) = read_npy_as::<u8>(&out).expect("taylor");
    let mut r = VideoReader::open(&v).expect("open");
    let mut rgb = Vec::new();
    for i in 5..=16 {
        rgb.extend_from_slice(&r.frame(i).expect("frame").data);
    }
    let want = taylor::taylor_video(&rgb, 12, 360, 640, &taylor::TaylorParams::mm_gesture())
        .expect("taylor");
    assert_eq!(shape, vec![want.frames, 360, 640, 3]);
    assert_eq!(want.frames, 12 - 6 + 1, "window K+3 = 6 sliding by one");
    assert!(got == want.data);
    let e = fails(&[
        "probe",
        "taylor",
        s(&v),
        "--start",
        "0",
        "--end",
        "3",
        "--out",
        s(&out),
    ]);
    assert!(
        e.contains("clip too short") && e.contains("needs at least 6"),
        "{e}"
    );

    let fo = tmp.path().join("f.npy");
    let png = tmp.path().join("f.png");
    ok(&[
        "probe",
        "flow",
        s(&v),
        "--frames",
        "10,12",
        "--out",
        s(&fo),
        "--png",
        s(&png),
    ]);
    let (shape, got) = read_npy_as::<f32>(&fo).expect("flow");
    assert_eq!(shape, vec![360, 640, 2]);
    let a = r.frame(10).expect("a");
    let b = r.frame(12).expect("b");
    let want = flow::dis_flow(
        &flow::rgb_to_gray(&a.data, 640, 360).expect("g"),
        &flow::rgb_to_gray(&b.data, 640, 360).expect("g"),
        &flow::DisParams::medium(),
    )
    .expect("flow");
    assert!(got == want.data);
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));

    let e = fails(&[
        "probe",
        "depth",
        s(&v),
        "--frame",
        "1",
        "--out",
        s(&tmp.path().join("d.npy")),
    ]);
    assert!(
        e.contains("no depth model loaded") && e.contains("--weights"),
        "{e}"
    );
}
