//! Parity of the candle ResNet3d family with mmaction2 1.2's forward pass, on the small random
//! models written by `tools/make_resnet3d_fixtures.py`, and the exact key → shape set of the full
//! configs. `num_batches_tracked` is left out of the key comparison: it is a BatchNorm training
//! counter that inference never reads, so the candle models do not request it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mgscope::nn::checkpoint::{build_model, StateDict};
use mgscope::nn::resnet3d::{self, PoseC3D};
use mgscope::nn::rgbpose::{self as rp, RGBPose};

const TOL: f32 = 1e-4;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(case)
}

fn config_json(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(case).join("config.json")).expect("config.json");
    serde_json::from_str(&text).expect("json")
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("uint") as usize)
        .collect()
}

/// max |got − want| / max(1, max |want|); prints both the absolute and the relative figure.
fn compare(label: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{label}: shape");
    let g = got
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("got");
    let w = want
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("want");
    let abs = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = w.iter().map(|x| x.abs()).fold(1f32, f32::max);
    let rel = abs / scale;
    println!("{label}: max|diff| {abs:.3e}, / max(1, max|ref|) = {rel:.3e} (max|ref| {scale:.3})");
    assert!(rel <= TOL, "{label}: relative diff {rel} > {TOL}");
    rel
}

/// The mmaction2 checkpoint `model.pth` through the strict loader: every key must match.
fn load<M>(case: &str, build: impl FnOnce(VarBuilder) -> candle_core::Result<M>) -> M {
    let sd = StateDict::read(&fixture(case).join("model.pth")).expect("model.pth");
    let (m, report) = build_model(&sd, true, DType::F32, &Device::Cpu, build).expect("strict load");
    assert!(report.is_clean(), "{report}");
    m
}

fn npy(case: &str, name: &str) -> Tensor {
    Tensor::read_npy(fixture(case).join(name)).expect(name)
}

/// The small configs of `make_resnet3d_fixtures.py`, checked against its `config.json`.
fn small_resnet(case: &str, base: resnet3d::Config, num_classes: usize) -> resnet3d::Config {
    let j = config_json(case);
    let bb = &j["model"]["backbone"];
    let cfg = resnet3d::Config {
        base_channels: bb["base_channels"].as_u64().expect("base") as usize,
        stage_blocks: usizes(&bb["stage_blocks"]),
        num_classes,
        ..base
    };
    assert_eq!(
        j["model"]["cls_head"]["num_classes"].as_u64(),
        Some(num_classes as u64)
    );
    cfg
}

#[test]
fn posec3d_small_matches_mmaction2() {
    let case = "posec3d_small";
    let cfg = small_resnet(case, resnet3d::Config::posec3d_joint36(), 5);
    let net = load(case, |vb| PoseC3D::new(&cfg, vb));
    let logits = net.forward(&npy(case, "input.npy")).expect("forward");
    compare(case, &logits, &npy(case, "logits.npy"));
}

#[test]
fn slowonly_rgb_small_matches_mmaction2() {
    let case = "slowonly_rgb_small";
    let cfg = small_resnet(case, resnet3d::Config::slowonly_r50_rgb(), 6);
    let net = load(case, |vb| PoseC3D::new(&cfg, vb));
    let logits = net.forward(&npy(case, "input.npy")).expect("forward");
    compare(case, &logits, &npy(case, "logits.npy"));
}

#[test]
fn rgbpose_small_matches_mmaction2() {
    let case = "rgbpose_small";
    let j = config_json(case);
    let bb = &j["model"]["backbone"];
    let mut cfg = rp::Config::rgbpose_conv3d();
    cfg.rgb.base_channels = bb["rgb_pathway"]["base_channels"].as_u64().expect("b") as usize;
    cfg.rgb.stage_blocks = usizes(&bb["rgb_pathway"]["stage_blocks"]);
    cfg.pose.base_channels = bb["pose_pathway"]["base_channels"].as_u64().expect("b") as usize;
    cfg.pose.stage_blocks = usizes(&bb["pose_pathway"]["stage_blocks"]);
    cfg.pose.in_channels = bb["pose_pathway"]["in_channels"].as_u64().expect("c") as usize;
    cfg.num_classes = j["model"]["cls_head"]["num_classes"].as_u64().expect("n") as usize;
    let net = load(case, |vb| RGBPose::new(&cfg, vb));
    let (lr, lp) = net
        .forward(&npy(case, "input.npy"), &npy(case, "input_pose.npy"))
        .expect("forward");
    compare("rgbpose_small rgb", &lr, &npy(case, "logits_rgb.npy"));
    compare("rgbpose_small pose", &lp, &npy(case, "logits_pose.npy"));
}

/// Builds a model on a VarMap and returns (key → shape, learnable parameter count).
fn varmap_keys(build: impl FnOnce(VarBuilder)) -> (BTreeMap<String, Vec<usize>>, usize) {
    let vm = VarMap::new();
    build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu));
    let data = vm.data().lock().expect("lock");
    let keys = data
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    let learnable = data
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, v)| v.elem_count())
        .sum();
    (keys, learnable)
}

fn reference_keys(name: &str) -> BTreeMap<String, Vec<usize>> {
    let path = fixture("full_keys").join(format!("{name}.json"));
    let text = std::fs::read_to_string(path).expect("full_keys json");
    let map: BTreeMap<String, Vec<usize>> = serde_json::from_str(&text).expect("json");
    map.into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .collect()
}

fn assert_same_keys(name: &str, ours: &BTreeMap<String, Vec<usize>>) {
    let want = reference_keys(name);
    let missing: Vec<_> = want.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong: Vec<_> = want
        .iter()
        .filter_map(|(k, s)| {
            ours.get(k)
                .filter(|o| *o != s)
                .map(|o| (k, s.clone(), o.clone()))
        })
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && wrong.is_empty(),
        "{name}: missing {missing:?}, extra {extra:?}, shape (ref, ours) {wrong:?}"
    );
    println!("{name}: {} keys match", want.len());
}

#[test]
fn full_posec3d_joint36_keys_match_mmaction2() {
    let (keys, n) = varmap_keys(|vb| {
        PoseC3D::new(&resnet3d::Config::posec3d_joint36(), vb).expect("build");
    });
    assert_same_keys("posec3d_joint36", &keys);
    println!("posec3d_joint36: {n} learnable parameters");
    assert_eq!(n, 2_040_288);
}

#[test]
fn full_slowonly_r50_rgb_keys_match_mmaction2() {
    let (keys, n) = varmap_keys(|vb| {
        PoseC3D::new(&resnet3d::Config::slowonly_r50_rgb(), vb).expect("build");
    });
    assert_same_keys("slowonly_r50_rgb", &keys);
    println!("slowonly_r50_rgb: {n} learnable parameters");
    assert_eq!(n, 31_700_064);
}

#[test]
fn full_rgbpose_conv3d_keys_match_mmaction2() {
    let (keys, n) = varmap_keys(|vb| {
        RGBPose::new(&rp::Config::rgbpose_conv3d(), vb).expect("build");
    });
    assert_same_keys("rgbpose_conv3d", &keys);
    println!("rgbpose_conv3d: {n} learnable parameters");
    assert_eq!(n, 36_105_984);
}
