//! `mgscope probe merge-rgbpose`: MM-Gesture's RGBPoseConv3D initialisation. Because the
//! convolutions that receive laterals are zero-padded, the merged network's RGB head must give
//! exactly the RGB SlowOnly's logits and its pose head the PoseC3D pathway's, whatever the
//! (random, non-zero) lateral weights are.

use crate::common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use common::{fails, ok, s};
use mgscope::nn::checkpoint::{write_safetensors, StateDict};
use mgscope::nn::models::Model;
use mgscope::nn::resnet3d::{Config, PoseC3D};
use mgscope::train::init::named_vars;

/// Every tensor of a freshly built model set to seeded values of a plausible size (BatchNorm
/// variances positive), so that no branch of the network is trivially zero.
fn randomise(vm: &VarMap, seed: u64) -> BTreeMap<String, Tensor> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32 // [0, 1)
    };
    let mut out = BTreeMap::new();
    for (k, v) in named_vars(vm).expect("vars") {
        let n = v.as_tensor().elem_count();
        let vals: Vec<f32> = if k.ends_with("running_var") {
            (0..n).map(|_| 0.5 + next()).collect()
        } else if k.ends_with(".bn.weight") || k.ends_with("running_mean") {
            (0..n).map(|_| 0.5 + 0.5 * next()).collect()
        } else {
            (0..n).map(|_| (next() - 0.5) * 0.1).collect()
        };
        let t = Tensor::from_vec(vals, v.as_tensor().dims(), &Device::Cpu).expect("t");
        v.set(&t).expect("set");
        out.insert(k, t);
    }
    out
}

fn lcg_input(dims: &[usize], seed: u32) -> Tensor {
    let n: usize = dims.iter().product();
    let mut x = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).expect("input")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn merged_rgbpose_starts_as_the_two_single_stream_networks() {
    merge_case(Config::slowonly_r50_rgb(), Config::posec3d_joint36());
}

/// Reduced pathways (what `rgb-slowonly-tiny` and `posec3d-joint-tiny` train) merge with the
/// widths and depths their checkpoints have.
#[test]
fn reduced_pathways_merge_with_their_own_widths() {
    let rgb = Config {
        base_channels: 16,
        stage_blocks: vec![1, 1, 1, 1],
        ..Config::slowonly_r50_rgb()
    };
    let pose = Config {
        base_channels: 8,
        stage_blocks: vec![1, 1, 1],
        ..Config::posec3d_joint36()
    };
    merge_case(rgb, pose);
}

fn merge_case(rgb_cfg: Config, pose_cfg: Config) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dev = Device::Cpu;
    let classes = 5;

    let rgb_cfg = Config {
        num_classes: classes,
        ..rgb_cfg
    };
    let rgb_vm = VarMap::new();
    let rgb_net = PoseC3D::new(&rgb_cfg, VarBuilder::from_varmap(&rgb_vm, DType::F32, &dev))
        .expect("rgb net");
    let rgb_sd = randomise(&rgb_vm, 1);
    // The pose pathway of RGBPoseConv3D has temporal strides (1, 1, 1).
    let pose_cfg = Config {
        num_classes: classes,
        temporal_strides: vec![1, 1, 1],
        ..pose_cfg
    };
    let pose_vm = VarMap::new();
    let pose_net = PoseC3D::new(
        &pose_cfg,
        VarBuilder::from_varmap(&pose_vm, DType::F32, &dev),
    )
    .expect("pose net");
    let pose_sd = randomise(&pose_vm, 2);
    let (rp, pp, mp) = (
        tmp.path().join("rgb.safetensors"),
        tmp.path().join("pose.safetensors"),
        tmp.path().join("merged.safetensors"),
    );
    write_safetensors(&rgb_sd, &rp).expect("write rgb");
    write_safetensors(&pose_sd, &pp).expect("write pose");

    let msg = ok(&[
        "probe",
        "merge-rgbpose",
        "--rgb",
        s(&rp),
        "--pose",
        s(&pp),
        "--out",
        s(&mp),
        "--seed",
        "3",
    ]);
    // rgb layer3.0 / layer4.0 conv1 and downsample, pose layer2.0 / layer3.0 likewise.
    assert!(msg.contains("8 zero-padded"), "{msg}");
    assert!(msg.contains("(5 classes)"), "{msg}");

    let merged = StateDict::read(&mp).expect("merged");
    let w = &merged.tensors["backbone.rgb_path.layer3.0.conv1.conv.weight"];
    let orig = &rgb_sd["backbone.layer3.0.conv1.conv.weight"];
    // layer3's first conv: its own stage-2 input plus pose layer1's lateral.
    let (own, lateral) = (rgb_cfg.stage_channels(1), pose_cfg.stage_channels(0));
    assert_eq!(
        w.dims(),
        &[rgb_cfg.base_channels * 4, own + lateral, 3, 1, 1]
    );
    assert_eq!(
        max_abs_diff(&w.narrow(1, 0, own).expect("n"), orig),
        0.0,
        "own channels copied"
    );
    let pad_sum = w
        .narrow(1, own, lateral)
        .and_then(|t| t.abs())
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f32>())
        .expect("pad");
    assert_eq!(pad_sum, 0.0, "lateral channels start at zero");

    // Strictly loadable, and the heads reproduce the single-stream networks.
    let (model, _) =
        Model::from_state_dict("rgbpose-conv3d", &merged, true, DType::F32, &dev).expect("load");
    let rgb_x = lcg_input(&[1, 3, 8, 64, 64], 7);
    let pose_x = lcg_input(&[1, 36, 32, 16, 16], 9);
    let out = model
        .forward(&[rgb_x.clone(), pose_x.clone()])
        .expect("fused forward");
    let want_rgb = rgb_net.forward_t(&rgb_x, false).expect("rgb forward");
    let want_pose = pose_net.forward_t(&pose_x, false).expect("pose forward");
    let (d_rgb, d_pose) = (
        max_abs_diff(&out[0], &want_rgb),
        max_abs_diff(&out[1], &want_pose),
    );
    let scale = want_rgb
        .abs()
        .and_then(|t| t.max_keepdim(1))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.max(0))
        .and_then(|t| t.to_scalar::<f32>())
        .expect("scale");
    assert!(scale > 1e-3, "logits not trivially zero ({scale})");
    assert!(
        d_rgb <= 1e-4 * scale.max(1.0),
        "rgb head differs by {d_rgb}"
    );
    assert!(d_pose <= 1e-4, "pose head differs by {d_pose}");

    // Checkpoints that are not the two pathways are refused by name.
    let msg = fails(&[
        "probe",
        "merge-rgbpose",
        "--rgb",
        s(&mp),
        "--pose",
        s(&mp),
        "--out",
        s(&tmp.path().join("x.safetensors")),
        "--classes",
        "5",
    ]);
    assert!(msg.contains("merged.safetensors"), "{msg}");
}
