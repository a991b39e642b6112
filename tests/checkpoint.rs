//! Reading torch `.pth` checkpoints (made by tools/make_checkpoint_fixtures.py with torch
//! 2.x), safetensors round trips, and strict key checking.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use mgscope::nn::checkpoint::{build_model, CheckpointError, StateDict};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoint")
        .join(name)
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 values")
}

fn check_values(sd: &StateDict) {
    let t = |k: &str| {
        sd.tensors
            .get(k)
            .unwrap_or_else(|| panic!("key {k} missing"))
    };
    assert_eq!(t("backbone.a").dims(), [2, 3]);
    assert_eq!(f32s(t("backbone.a")), [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]);
    // base[:6].view(3, 2).t(): rows of the transposed view
    assert_eq!(t("backbone.t").dims(), [2, 3]);
    assert_eq!(f32s(t("backbone.t")), [0.0, 0.5, 1.0, 0.25, 0.75, 1.25]);
    assert_eq!(f32s(t("backbone.slice")), [1.75, 2.0, 2.25, 2.5]);
    assert_eq!(t("backbone.bf16").dtype(), DType::BF16);
    assert_eq!(f32s(t("backbone.bf16")), [1.5, -2.0, 0.25]);
    assert_eq!(t("backbone.f16").dtype(), DType::F16);
    assert_eq!(f32s(t("backbone.f16")), [0.5, -1.0]);
    assert_eq!(t("backbone.f64").dtype(), DType::F64);
    assert_eq!(t("backbone.i64").to_vec1::<i64>().expect("i64"), [1, -2, 3]);
    assert_eq!(t("backbone.i8").to_vec1::<i64>().expect("i8"), [-5, 7]);
    assert_eq!(t("backbone.flag").to_vec1::<u8>().expect("bool"), [1, 0]);
    assert_eq!(t("backbone.scalar").dims(), [] as [usize; 0]);
    assert_eq!(f32s(t("backbone.scalar")), [2.5]);
    assert_eq!(f32s(t("cls_head.param")), [-1.0; 4]);
    assert_eq!(sd.tensors.len(), 12);
}

#[test]
fn torch_zip_views_dtypes_and_wrappers_load_exactly() {
    for name in ["wrapped.pth", "bare.pth", "ddp.pth"] {
        let sd = StateDict::read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_values(&sd);
    }
}

#[test]
fn a_foreign_global_refuses_the_checkpoint_without_running_it() {
    let err = StateDict::read(&fixture("hostile.pth")).expect_err("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Pickle { .. }), "{msg}");
    assert!(msg.contains("hostile.pth"), "{msg}");
    assert!(msg.contains("forbidden global posix.system"), "{msg}");
}

#[test]
fn legacy_torchscript_empty_and_foreign_files_are_named_errors() {
    let cases = [
        ("legacy.pth", "legacy (torch < 1.6"),
        ("scripted.pt", "TorchScript"),
    ];
    for (name, want) in cases {
        let msg = StateDict::read(&fixture(name)).expect_err(name).to_string();
        assert!(msg.contains(name) && msg.contains(want), "{msg}");
    }
    let dir = tempdir();
    let empty = dir.join("empty.pth");
    std::fs::write(&empty, b"").expect("write");
    let msg = StateDict::read(&empty).expect_err("empty").to_string();
    assert!(msg.contains("empty.pth") && msg.contains("empty"), "{msg}");
    let text = dir.join("notes.pth");
    std::fs::write(&text, b"hello, not a checkpoint").expect("write");
    let msg = StateDict::read(&text).expect_err("text").to_string();
    assert!(msg.contains("not a checkpoint"), "{msg}");
    // A zip cut in half: the central directory is gone.
    let bytes = std::fs::read(fixture("wrapped.pth")).expect("read");
    let cut = dir.join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let msg = StateDict::read(&cut).expect_err("cut").to_string();
    assert!(msg.contains("cut.pth") && msg.contains("damaged"), "{msg}");
    assert!(StateDict::read(&dir.join("absent.pth")).is_err());
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mgscope-ckpt-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

#[test]
fn safetensors_round_trip_keeps_names_dtypes_and_values() {
    let sd = StateDict::read(&fixture("wrapped.pth")).expect("read");
    let dir = tempdir();
    let out = dir.join("w.safetensors");
    sd.save_safetensors(&out).expect("save");
    let back = StateDict::read(&out).expect("read back");
    check_values(&back);
}

#[test]
fn strict_building_names_missing_unexpected_and_misshaped_keys() {
    let sd = StateDict::read(&fixture("wrapped.pth")).expect("read");
    let dev = Device::Cpu;
    // Exactly the state dict's float keys: loads, and the values arrive converted to f32.
    let ok = build_model(&sd, true, DType::F32, &dev, |vb| {
        let mut out = Vec::new();
        for (k, s) in [
            ("backbone.a", vec![2, 3]),
            ("backbone.t", vec![2, 3]),
            ("backbone.slice", vec![4]),
            ("backbone.bf16", vec![3]),
            ("backbone.f16", vec![1, 2]),
            ("backbone.f64", vec![1]),
            ("backbone.i64", vec![3]),
            ("backbone.i8", vec![2]),
            ("backbone.flag", vec![2]),
            ("backbone.scalar", vec![]),
            ("cls_head.param", vec![2, 2]),
        ] {
            out.push(vb.get(s, k)?);
        }
        Ok(out)
    });
    let (ts, report) = ok.expect("strict load");
    assert!(report.is_clean(), "{report}");
    assert_eq!(f32s(&ts[1]), [0.0, 0.5, 1.0, 0.25, 0.75, 1.25]);

    // A model wanting another shape and a key the file lacks, and not using most keys.
    let build = |vb: candle_nn::VarBuilder| {
        let a = vb.get((3, 2), "backbone.a")?;
        let b = vb.get(5, "backbone.extra")?;
        Ok((a, b))
    };
    let err = build_model(&sd, true, DType::F32, &dev, build).expect_err("strict must refuse");
    let msg = err.to_string();
    assert!(msg.contains("wrapped.pth"), "{msg}");
    assert!(
        msg.contains("backbone.a (checkpoint [2, 3], model [3, 2])"),
        "{msg}"
    );
    assert!(msg.contains("backbone.extra [5]"), "{msg}");

    // Non-strict: reported, and the model keeps its own initialisation.
    let ((a, b), report) =
        build_model(&sd, false, DType::F32, &dev, build).expect("non-strict load");
    assert_eq!(a.dims(), [3, 2]);
    assert_eq!(b.dims(), [5]);
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(
        report.missing,
        vec![("backbone.extra".to_string(), vec![5])]
    );
    // num_batches_tracked is a buffer no model asks for; everything else unused is reported.
    assert_eq!(report.unexpected.len(), 10, "{report}");
    assert!(!report
        .unexpected
        .iter()
        .any(|k| k.ends_with("num_batches_tracked")));
}
