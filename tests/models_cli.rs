//! `mgscope probe infer` on the mmaction2 fixtures (tools/make_*_fixtures.py): the logits
//! the reference computed, through the command a researcher uses, and named errors for bad
//! checkpoints and inputs.

use crate::common;

use common::{fails, ok, s};
use mgscope::modality::npy::read_npy_as;

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

fn infer_case(arch: &str, case: &str, extra: &[&str]) -> (Vec<usize>, f32) {
    let dir = common::fixtures().join("models").join(case);
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("y.npy");
    let (ckpt, input) = (dir.join("model.pth"), dir.join("input.npy"));
    let mut args = vec![
        "probe",
        "infer",
        "--arch",
        arch,
        "--checkpoint",
        s(&ckpt),
        "--input",
        s(&input),
        "--out",
        s(&out),
    ];
    args.extend_from_slice(extra);
    let msg = ok(&args);
    assert!(msg.contains(arch), "{msg}");
    let (shape, got) = read_npy_as::<f32>(&out).expect("read logits");
    let (_, want) = read_npy_as::<f32>(dir.join("logits.npy")).expect("reference logits");
    (shape, max_rel_diff(&got, &want))
}

#[test]
fn probe_infer_swin_reproduces_mmaction2_logits() {
    for case in ["swin_small_shift", "swin_short_clip"] {
        let (shape, rel) = infer_case("swin-t", case, &[]);
        assert_eq!(shape.len(), 2, "{case}");
        assert!(rel <= 1e-4, "{case}: max relative difference {rel}");
    }
}

#[test]
fn probe_infer_resnet3d_family_reproduces_mmaction2_logits() {
    for (arch, case) in [
        ("posec3d-joint36", "posec3d_small"),
        ("slowonly-r50-rgb", "slowonly_rgb_small"),
    ] {
        let (shape, rel) = infer_case(arch, case, &[]);
        assert_eq!(shape.len(), 2, "{case}");
        assert!(rel <= 1e-4, "{case}: max relative difference {rel}");
    }
    // RGBPoseConv3D: both heads, stacked [2, N, C] as rgb, pose.
    let dir = common::fixtures().join("models").join("rgbpose_small");
    let pose = dir.join("input_pose.npy");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("y.npy");
    let (ckpt, input) = (dir.join("model.pth"), dir.join("input.npy"));
    ok(&[
        "probe",
        "infer",
        "--arch",
        "rgbpose-conv3d",
        "--checkpoint",
        s(&ckpt),
        "--input",
        s(&input),
        "--input-pose",
        s(&pose),
        "--out",
        s(&out),
    ]);
    let (shape, got) = read_npy_as::<f32>(&out).expect("logits");
    let (_, rgb) = read_npy_as::<f32>(dir.join("logits_rgb.npy")).expect("rgb");
    let (_, pose_ref) = read_npy_as::<f32>(dir.join("logits_pose.npy")).expect("pose");
    assert_eq!(shape, vec![2, 1, rgb.len()]);
    let (a, b) = got.split_at(rgb.len());
    assert!(max_rel_diff(a, &rgb) <= 1e-4);
    assert!(max_rel_diff(b, &pose_ref) <= 1e-4);
    // Without the pose volume it says what is missing.
    let msg = fails(&[
        "probe",
        "infer",
        "--arch",
        "rgbpose-conv3d",
        "--checkpoint",
        s(&ckpt),
        "--input",
        s(&input),
        "--out",
        s(&out),
    ]);
    assert!(msg.contains("--input-pose"), "{msg}");
}

#[test]
fn convert_to_safetensors_gives_the_same_logits() {
    let dir = common::fixtures().join("models").join("swin_short_clip");
    let tmp = tempfile::tempdir().expect("tmp");
    let st = tmp.path().join("swin.safetensors");
    let (pth, input, out) = (
        dir.join("model.pth"),
        dir.join("input.npy"),
        tmp.path().join("y.npy"),
    );
    let msg = ok(&[
        "probe",
        "convert",
        "--checkpoint",
        s(&pth),
        "--out",
        s(&st),
        "--arch",
        "swin-t",
    ]);
    assert!(msg.contains("every key matched"), "{msg}");
    ok(&[
        "probe",
        "infer",
        "--arch",
        "swin-t",
        "--checkpoint",
        s(&st),
        "--input",
        s(&input),
        "--out",
        s(&out),
    ]);
    let (_, got) = read_npy_as::<f32>(&out).expect("logits");
    let (_, want) = read_npy_as::<f32>(dir.join("logits.npy")).expect("reference");
    assert!(max_rel_diff(&got, &want) <= 1e-4);
}

/// Half precision on the CPU: the same checkpoints in bf16 (8-bit mantissa) and f16 stay
/// within a few per cent / per mille of the f32 reference.
#[test]
fn probe_infer_half_precision_stays_close_to_the_reference() {
    for (arch, case) in [
        ("posec3d-joint36", "posec3d_small"),
        ("swin-t", "swin_small_shift"),
        ("slowonly-r50-rgb", "slowonly_rgb_small"),
    ] {
        let (_, bf16) = infer_case(arch, case, &["--dtype", "bf16"]);
        let (_, f16) = infer_case(arch, case, &["--dtype", "f16"]);
        println!("{case}: bf16 {bf16:.2e}, f16 {f16:.2e}");
        assert!(bf16 <= 5e-2, "{case}: bf16 max relative difference {bf16}");
        assert!(f16 <= 5e-3, "{case}: f16 max relative difference {f16}");
        assert!(f16 > 0.0, "{case}: f16 must actually run in f16");
    }
}

#[test]
fn probe_infer_errors_name_the_problem() {
    let dir = common::fixtures().join("models").join("swin_small_shift");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("y.npy");
    let (ckpt, input) = (dir.join("model.pth"), dir.join("input.npy"));
    let base = |arch: &'static str| {
        vec![
            "probe".to_string(),
            "infer".into(),
            "--arch".into(),
            arch.into(),
            "--checkpoint".into(),
            s(&ckpt).into(),
            "--input".into(),
            s(&input).into(),
            "--out".into(),
            s(&out).into(),
        ]
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&refs)
    };
    let msg = run(base("resnet-9000"));
    assert!(
        msg.contains("unknown --arch") && msg.contains("swin-t"),
        "{msg}"
    );
    // A Swin checkpoint is not a PoseC3D one: the missing keys are named with shapes.
    let msg = run(base("posec3d-joint36"));
    assert!(msg.contains("model.pth"), "{msg}");
    assert!(msg.contains("backbone.conv1.conv.weight"), "{msg}");
    assert!(msg.contains("unexpected key"), "{msg}");
    // The hostile pickle is refused by name.
    let hostile = common::fixtures().join("checkpoint/hostile.pth");
    let mut args = base("swin-t");
    args[5] = s(&hostile).into();
    let msg = run(args);
    assert!(msg.contains("forbidden global posix.system"), "{msg}");
    // An input of the wrong rank.
    let bad = tmp.path().join("bad.npy");
    mgscope::modality::npy::write_npy(&bad, &[3, 4], &[0f32; 12]).expect("write");
    let mut args = base("swin-t");
    args[7] = s(&bad).into();
    let msg = run(args);
    assert!(
        msg.contains("bad.npy") && msg.contains("[N, C, T, H, W]"),
        "{msg}"
    );
    // No CUDA in this build: said plainly.
    if !cfg!(feature = "cuda") {
        let mut args = base("swin-t");
        args.extend(["--device".to_string(), "cuda:0".to_string()]);
        let msg = run(args);
        assert!(msg.contains("without CUDA"), "{msg}");
    }
    assert!(!out.exists(), "no output is written on failure");
}
