//! Training runs on the demo dataset: resume continues bit for bit, transfer re-initialises
//! only the head, and the reduced joint preset learns (validation top-1 ≥ 3× chance).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use common::{ok, s};
use mgscope::dataset::Split;
use mgscope::nn::checkpoint::{write_safetensors, StateDict};
use mgscope::nn::resnet3d::PoseC3D;
use mgscope::store::Dataset;
use mgscope::train::init::{init_reference, load_matching, named_vars};
use mgscope::train::run::IterRecord;
use mgscope::train::{train, RunOptions, TrainConfig};

/// The tiny demo, imported: 2 videos, a train and a val split.
fn tiny_demo(dir: &Path) -> std::path::PathBuf {
    let release = dir.join("release");
    let ds = dir.join("ds");
    ok(&["demo", s(&release), "--tiny", "--import", s(&ds)]);
    ds
}

/// The smallest network and clips that still go through every pipeline step.
fn micro_config() -> TrainConfig {
    let mut c = TrainConfig::preset("posec3d-joint-tiny").expect("preset");
    c.model.base_channels = 4;
    c.data.clip_len = 6;
    c.data.resize_short = 20;
    c.data.train_size = 16;
    c.data.val_size = 20;
    c.data.batch_size = 3;
    c.data.repeat = 1;
    c.data.workers = 2;
    c.optim.epochs = 2;
    c.run.seed = 11;
    c
}

fn metrics(run: &Path) -> Vec<IterRecord> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect()
}

fn weights(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let sd = StateDict::read(path).expect("read");
    sd.tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("train.state"))
        .map(|(k, t)| {
            let v: Vec<f32> = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("values");
            (k.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect()
}

#[test]
fn a_stopped_and_resumed_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ds = tiny_demo(tmp.path());
    let cfg = micro_config();

    let whole = tmp.path().join("whole");
    let mut opts = RunOptions::new(&whole);
    opts.register_stream = false;
    let a = train(&ds, Some(&cfg), &opts).expect("uninterrupted run");
    assert!(a.finished);
    let per_epoch = a.total_iters / cfg.optim.epochs;
    assert!(per_epoch >= 2, "{per_epoch} iterations per epoch");

    // Stop in the middle of the first epoch, then again right at the epoch boundary.
    let split = tmp.path().join("split");
    let mut opts = RunOptions::new(&split);
    opts.register_stream = false;
    opts.stop_after = Some(1);
    let b = train(&ds, Some(&cfg), &opts).expect("first leg");
    assert!(!b.finished);
    assert_eq!(b.iter, 1);
    opts.resume = true;
    opts.stop_after = Some(per_epoch);
    let b = train(&ds, None, &opts).expect("second leg");
    assert_eq!(b.iter, per_epoch);
    opts.stop_after = None;
    let b = train(&ds, None, &opts).expect("last leg");
    assert!(b.finished);

    let (ma, mb) = (metrics(&whole), metrics(&split));
    assert_eq!(ma.len(), a.total_iters);
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.epoch, x.iter, x.lr, x.loss, x.grad_norm),
            (y.epoch, y.iter, y.lr, y.loss, y.grad_norm),
            "iteration {}",
            x.iter
        );
    }
    assert_eq!(a.val.len(), cfg.optim.epochs);
    let va = std::fs::read_to_string(whole.join("val.jsonl")).expect("val a");
    let vb = std::fs::read_to_string(split.join("val.jsonl")).expect("val b");
    let strip = |t: &str| -> Vec<(f64, f64)> {
        t.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .map(|v| {
                (
                    v["top1"].as_f64().unwrap_or(-1.0),
                    v["mean_class_acc"].as_f64().unwrap_or(-1.0),
                )
            })
            .collect()
    };
    assert_eq!(strip(&va), strip(&vb));
    // Weights, BatchNorm buffers and momentum buffers bit for bit.
    let (wa, wb) = (
        weights(&whole.join("last.safetensors")),
        weights(&split.join("last.safetensors")),
    );
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    assert!(wa.keys().any(|k| k.starts_with("train.momentum.")));
    assert!(wa.keys().any(|k| k.ends_with("running_var")));
    for (k, v) in &wa {
        assert!(v == &wb[k], "{k} differs after resume");
    }
    // The checkpoint loads as a model for predict.
    ok(&[
        "predict",
        s(&ds),
        "--arch",
        "posec3d-joint36",
        "--checkpoint",
        s(&whole.join("last.safetensors")),
        "--split",
        "val",
        "--views",
        "fast",
        "--out",
        s(&tmp.path().join("p.pkl")),
    ]);
    // A new run refuses a folder that already holds one.
    let mut again = RunOptions::new(&whole);
    again.register_stream = false;
    assert!(train(&ds, Some(&cfg), &again).is_err());
}

#[test]
fn transfer_loads_the_backbone_and_reinitialises_the_head() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dev = Device::Cpu;
    let cfg = micro_config();
    // A "pretrained" model with 5 classes and distinctive weights.
    let src_vm = VarMap::new();
    let _src = PoseC3D::new(
        &cfg.network(5).expect("net"),
        VarBuilder::from_varmap(&src_vm, DType::F32, &dev),
    )
    .expect("src");
    init_reference(&src_vm, 99).expect("init");
    let src_vars = named_vars(&src_vm).expect("vars");
    let tensors: BTreeMap<String, Tensor> = src_vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let ckpt = tmp.path().join("pre.safetensors");
    write_safetensors(&tensors, &ckpt).expect("write");

    let vm = VarMap::new();
    let _net = PoseC3D::new(
        &cfg.network(32).expect("net"),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("dst");
    init_reference(&vm, 1).expect("init");
    let head_before: Vec<f32> = named_vars(&vm).expect("v")["cls_head.fc_cls.weight"]
        .as_tensor()
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .expect("h");
    let rep = load_matching(&vm, &StateDict::read(&ckpt).expect("sd")).expect("load");
    let mismatched: BTreeSet<&str> = rep.mismatched.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        mismatched,
        BTreeSet::from(["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"])
    );
    assert!(rep.missing.is_empty() && rep.unused.is_empty(), "{rep}");
    let vars = named_vars(&vm).expect("v");
    for (k, v) in &vars {
        let got: Vec<f32> = v
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("g");
        if k.starts_with("backbone.") {
            let want: Vec<f32> = src_vars[k]
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("w");
            assert_eq!(got, want, "{k}");
        } else if k == "cls_head.fc_cls.weight" {
            assert_eq!(got, head_before);
        }
    }

    // From the command line: --init names what it re-initialised.
    let ds = tiny_demo(tmp.path());
    let cfg_path = tmp.path().join("micro.toml");
    std::fs::write(&cfg_path, cfg.to_toml().expect("toml")).expect("write cfg");
    let run = tmp.path().join("run");
    let out = common::mgscope(&[
        "train",
        s(&ds),
        "--config",
        s(&cfg_path),
        "--init",
        s(&ckpt),
        "--out",
        s(&run),
        "--stop-after",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("re-initialised") && err.contains("cls_head.fc_cls.weight"),
        "{err}"
    );
}

#[test]
fn bad_runs_fail_with_a_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ds = tiny_demo(tmp.path());
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[optim]\nlr = -1.0\n").expect("write");
    let e = common::fails(&[
        "train",
        s(&ds),
        "--config",
        s(&bad),
        "--out",
        s(&tmp.path().join("r")),
    ]);
    assert!(e.contains("optim.lr"), "{e}");
    let e = common::fails(&["train", s(&ds), "--resume", s(&tmp.path().join("nothing"))]);
    assert!(e.contains("config.toml"), "{e}");
    let e = common::fails(&["train", s(&ds), "--preset", "nope"]);
    assert!(e.contains("nope"), "{e}");
}

/// The reduced joint preset learns the demo's gestures: validation top-1 at least 3× chance
/// (chance = one over the classes present in the val split). Seeded, so the curve is fixed
/// for a given build.
#[test]
fn the_demo_learns() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = tmp.path().join("release");
    let ds_dir = tmp.path().join("ds");
    ok(&["demo", s(&release), "--import", s(&ds_dir)]);
    let ds = Dataset::open(&ds_dir).expect("open");
    let val: Vec<_> = ds
        .samples()
        .expect("samples")
        .into_iter()
        .filter(|x| x.split == Split::Val)
        .collect();
    let classes: BTreeSet<u32> = val.iter().filter_map(|x| x.label).collect();
    drop(ds);
    let chance = 1.0 / classes.len() as f64;

    let cfg = TrainConfig::preset("posec3d-joint-tiny").expect("preset");
    let run = tmp.path().join("run");
    let mut opts = RunOptions::new(&run);
    let t0 = Instant::now();
    let r = train(&ds_dir, Some(&cfg), &opts).expect("train");
    let secs = t0.elapsed().as_secs_f64();
    let curve: Vec<String> = r
        .val
        .iter()
        .map(|v| format!("{}:{:.3}/{:.3}", v.epoch, v.top1, v.mean_class_acc))
        .collect();
    eprintln!(
        "demo curve (epoch:top1/mean-class) {} — {} train / {} val clips, {} classes in val, {secs:.0}s",
        curve.join(" "),
        r.train_clips,
        r.val_clips,
        classes.len()
    );
    let best = r.best.clone().expect("validated");
    assert!(
        best.top1 >= 3.0 * chance,
        "best top-1 {:.3} < 3 × chance {:.3}: {}",
        best.top1,
        chance,
        curve.join(" ")
    );
    // The best checkpoint's scores are an ensemble stream of the dataset now.
    let ds = Dataset::open(&ds_dir).expect("open");
    let name = r.stream.expect("stream");
    let st = ds.load_stream(&name).expect("stream stored");
    assert_eq!(st.clip_ids.len(), r.val_clips);
    opts.resume = true;
    // Resuming a finished run does nothing more.
    let again = train(&ds_dir, None, &opts).expect("resume finished");
    assert!(again.finished && again.iter == r.iter);
}

/// A Video Swin run on the demo's RGB frames (a network small enough for the CPU, the
/// reference pipeline and AdamW with the Swin parameter groups and warm-up): stopped and
/// resumed, it equals an uninterrupted one bit for bit, AdamW moments included, and its
/// validation scores come out per clip.
#[test]
fn a_swin_run_on_frames_resumes_exactly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ds = tiny_demo(tmp.path());
    let mut cfg = TrainConfig::preset("swin-tiny-demo").expect("preset");
    cfg.model.embed_dim = Some(8);
    cfg.model.num_heads = Some(vec![1, 1, 2, 2]);
    cfg.model.window = Some((2, 2, 2));
    cfg.model.drop_path = Some(0.2);
    cfg.data.clip_len = 4;
    cfg.data.resize_short = 40;
    cfg.data.train_size = 32;
    cfg.data.val_size = 32;
    cfg.data.batch_size = 3;
    cfg.optim.epochs = 2;
    cfg.optim.warmup_epochs = Some(0.5);
    cfg.run.seed = 5;
    assert_eq!(cfg.optim.optimizer.as_deref(), Some("adamw"));

    let whole = tmp.path().join("whole");
    let mut opts = RunOptions::new(&whole);
    opts.register_stream = false;
    let a = train(&ds, Some(&cfg), &opts).expect("uninterrupted swin run");
    assert!(a.finished);
    let per_epoch = a.total_iters / cfg.optim.epochs;
    assert!(per_epoch >= 2, "{per_epoch} iterations per epoch");

    let split = tmp.path().join("split");
    let mut opts = RunOptions::new(&split);
    opts.register_stream = false;
    opts.stop_after = Some(1);
    let b = train(&ds, Some(&cfg), &opts).expect("first leg");
    assert_eq!(b.iter, 1);
    opts.resume = true;
    opts.stop_after = None;
    let b = train(&ds, None, &opts).expect("second leg");
    assert!(b.finished);

    let (ma, mb) = (metrics(&whole), metrics(&split));
    assert_eq!(ma.len(), a.total_iters);
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.iter, x.lr, x.loss, x.grad_norm),
            (y.iter, y.lr, y.loss, y.grad_norm),
            "iteration {}",
            x.iter
        );
    }
    // The warm-up: lr rises from a tenth of the base over the first half epoch.
    assert!((ma[0].lr - 1e-4).abs() < 1e-12, "first lr {}", ma[0].lr);
    assert!(ma
        .iter()
        .all(|m| m.loss.is_finite() && m.lr <= 1e-3 + 1e-12));
    let (wa, wb) = (
        weights(&whole.join("last.safetensors")),
        weights(&split.join("last.safetensors")),
    );
    assert!(wa.keys().any(|k| k.starts_with("train.adamw.exp_avg_sq.")));
    assert!(wa
        .keys()
        .any(|k| k.ends_with("relative_position_bias_table")));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    for (k, v) in &wa {
        assert!(v == &wb[k], "{k} differs after resume");
    }
    let scores: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(whole.join("val_scores.json")).expect("scores"),
    )
    .expect("json");
    let probs = scores["probs"].as_array().expect("probs");
    assert_eq!(probs.len(), a.val_clips);
    let row: Vec<f64> = probs[0]
        .as_array()
        .expect("row")
        .iter()
        .map(|v| v.as_f64().expect("p"))
        .collect();
    assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4);
}

/// One PoseC3D training step end to end: the CPU's f32 custom ops (conv3d, fused BatchNorm +
/// ReLU, max-pool, add + ReLU) against the composed candle ops they replace, run in f64 as
/// the reference. Same weights, input, labels and dropout; loss and every gradient compared.
#[test]
fn custom_training_ops_match_the_composed_ops_in_a_whole_step() {
    let cfg = micro_config();
    let net_cfg = cfg.network(4).expect("net");
    let step = |dtype: DType| -> (f64, BTreeMap<String, Vec<f64>>) {
        let vm = VarMap::new();
        let net =
            PoseC3D::new(&net_cfg, VarBuilder::from_varmap(&vm, dtype, &Device::Cpu)).expect("net");
        init_reference(&vm, 3).expect("init");
        net.head.set_dropout_seed(9).expect("seed");
        let n = 2 * 36 * 8 * 20 * 20;
        let x: Vec<f32> = (0..n)
            .map(|k| ((k * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let x = Tensor::from_vec(x, (2, 36, 8, 20, 20), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("x");
        let y = Tensor::new(&[1u32, 3], &Device::Cpu).expect("y");
        let logits = net.forward_t(&x, true).expect("forward");
        let loss = mgscope::train::optim::cross_entropy(&logits, &y, 0.0).expect("loss");
        let grads = loss.backward().expect("backward");
        let mut out = BTreeMap::new();
        for (k, v) in named_vars(&vm).expect("vars") {
            if let Some(g) = grads.get(v.as_tensor()) {
                let g: Vec<f64> = g
                    .to_dtype(DType::F64)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .expect("grad");
                out.insert(k, g);
            }
        }
        let l = loss
            .to_dtype(DType::F64)
            .and_then(|t| t.to_scalar::<f64>())
            .expect("loss value");
        (l, out)
    };
    let (l32, g32) = step(DType::F32);
    let (l64, g64) = step(DType::F64);
    assert!((l32 - l64).abs() <= 1e-5 * l64.abs(), "loss {l32} vs {l64}");
    assert_eq!(
        g32.keys().collect::<Vec<_>>(),
        g64.keys().collect::<Vec<_>>()
    );
    let norm =
        |g: &BTreeMap<String, Vec<f64>>| g.values().flatten().map(|v| v * v).sum::<f64>().sqrt();
    let (n32, n64) = (norm(&g32), norm(&g64));
    eprintln!("gradient norm f32 custom ops {n32:.9}, f64 composed {n64:.9}");
    assert!(
        (n32 - n64).abs() <= 1e-5 * n64,
        "gradient norm {n32} vs {n64}"
    );
    for (k, a) in &g32 {
        let b = &g64[k];
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-3 * n64);
        let d = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            d <= 1e-4 * scale,
            "{k}: max |Δ| {d:e} against max |g| {scale:e}"
        );
    }
}

/// The smallest RGBPoseConv3D that keeps its proportions: RGB 2 frames of 32², pose 8 frames of
/// 8² heatmaps (scale 0.25), pose width half the RGB width.
fn micro_rgbpose() -> TrainConfig {
    let mut c = TrainConfig::preset("rgbpose-tiny").expect("preset");
    c.model.base_channels = 4;
    c.model.rgb_base_channels = Some(8);
    c.data.clip_len = 8;
    c.data.rgb_clip_len = Some(2);
    c.data.resize_short = 40;
    c.data.train_size = 32;
    c.data.val_size = 40;
    c.data.batch_size = 3;
    c.data.workers = 2;
    c.optim.epochs = 2;
    c.optim.lr_steps = Some(vec![1]);
    c.run.seed = 3;
    c
}

/// RGBPoseConv3D's pipeline: RGB and heatmaps of one draw share the crop and the flip (with
/// the flip forced on, the RGB is the mirror image of the unflipped draw and the heatmaps'
/// mass moves to the other side), and a draw is a function of its generator alone.
#[test]
fn rgbpose_rgb_and_heatmaps_are_cropped_and_flipped_together() {
    use mgscope::train::clips::load_clips;
    use rand::SeedableRng;
    let tmp = tempfile::tempdir().expect("tmp");
    let ds_dir = tiny_demo(tmp.path());
    let ds = Dataset::open(&ds_dir).expect("open");
    let mut cfg = micro_rgbpose();
    let draw = |cfg: &TrainConfig, seed: u64| {
        let set = load_clips(&ds, cfg, "train", true).expect("clips").set;
        assert_eq!(set.train_shape(), vec![[3, 2, 32, 32], [36, 8, 8, 8]]);
        assert_eq!(set.val_shape(), vec![[3, 2, 40, 40], [36, 8, 10, 10]]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        set.train_volume(0, &mut rng).expect("volume")
    };
    cfg.data.flip = 0.0;
    let plain = draw(&cfg, 21);
    assert_eq!(plain.len(), 3 * 2 * 32 * 32 + 36 * 8 * 8 * 8);
    assert_eq!(plain, draw(&cfg, 21), "same generator, same draw");
    assert_ne!(plain, draw(&cfg, 22), "another generator, another draw");
    cfg.data.flip = 1.0;
    let flipped = draw(&cfg, 21);
    let rgb = 3 * 2 * 32 * 32;
    for plane in 0..6 {
        for y in 0..32 {
            for x in 0..32 {
                let a = plain[plane * 1024 + y * 32 + x];
                let b = flipped[plane * 1024 + y * 32 + (31 - x)];
                assert_eq!(a, b, "rgb plane {plane} ({x}, {y})");
            }
        }
    }
    // Heatmaps: the horizontal centre of mass over all channels mirrors (x' = w − x).
    let centre = |v: &[f32]| {
        let (mut m, mut mx) = (0f64, 0f64);
        for (i, &h) in v[rgb..].iter().enumerate() {
            m += f64::from(h);
            mx += f64::from(h) * (i % 8) as f64;
        }
        assert!(m > 0.0, "empty heatmaps");
        mx / m
    };
    let (a, b) = (centre(&plain), centre(&flipped));
    assert!(
        (a + b - 7.0).abs() < 1.0,
        "centres {a} and {b} are not mirrored"
    );
    assert!((a - 3.5).abs() > 0.05 || (b - 3.5).abs() > 0.05);
}

/// An RGBPoseConv3D run (both heads, summed losses, step schedule) resumes bit for bit, its
/// validation reports each head and their 1:1 fusion, one ensemble stream per head is stored,
/// and the checkpoint loads for `mgscope predict --arch rgbpose-conv3d`.
#[test]
fn an_rgbpose_run_resumes_exactly_and_registers_both_heads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ds = tiny_demo(tmp.path());
    let cfg = micro_rgbpose();

    let whole = tmp.path().join("whole");
    let a = train(&ds, Some(&cfg), &RunOptions::new(&whole)).expect("uninterrupted run");
    assert!(a.finished);
    let per_epoch = a.total_iters / cfg.optim.epochs;
    assert!(per_epoch >= 2, "{per_epoch} iterations per epoch");
    let split = tmp.path().join("split");
    let mut opts = RunOptions::new(&split);
    opts.register_stream = false;
    opts.stop_after = Some(per_epoch + 1);
    let b = train(&ds, Some(&cfg), &opts).expect("first leg");
    assert_eq!(b.iter, per_epoch + 1);
    opts.resume = true;
    opts.stop_after = None;
    assert!(train(&ds, None, &opts).expect("second leg").finished);

    let (ma, mb) = (metrics(&whole), metrics(&split));
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.iter, x.lr, x.loss, x.grad_norm),
            (y.iter, y.lr, y.loss, y.grad_norm),
            "iteration {}",
            x.iter
        );
    }
    // Step schedule: × 0.1 from epoch 1 on.
    assert!(ma[..per_epoch].iter().all(|m| m.lr == cfg.optim.lr));
    assert!(ma[per_epoch..]
        .iter()
        .all(|m| (m.lr - cfg.optim.lr * 0.1).abs() < 1e-15));
    // Both heads' cross-entropy: the first loss is near 2 ln(classes).
    let classes = Dataset::open(&ds).expect("open").taxonomy().len() as f64;
    assert!(
        (ma[0].loss - 2.0 * classes.ln()).abs() < 0.5,
        "first loss {}",
        ma[0].loss
    );
    let (wa, wb) = (
        weights(&whole.join("last.safetensors")),
        weights(&split.join("last.safetensors")),
    );
    assert!(wa
        .keys()
        .any(|k| k.contains("pose_path.layer1_lateral.bn.running_var")));
    assert!(wa
        .keys()
        .any(|k| k.starts_with("train.momentum.cls_head.fc_rgb")));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    for (k, v) in &wa {
        assert!(v == &wb[k], "{k} differs after resume");
    }

    // Validation: each head, and top-1 = the fusion of the two.
    let best = a.best.clone().expect("best");
    assert_eq!(
        best.heads_top1.keys().collect::<Vec<_>>(),
        vec!["pose", "rgb"]
    );
    let name = a.stream.clone().expect("streams");
    assert_eq!(name, "train:whole.rgb, train:whole.pose");
    let store = Dataset::open(&ds).expect("open");
    let rgb = store.load_stream("train:whole.rgb").expect("rgb stream");
    let pose = store.load_stream("train:whole.pose").expect("pose stream");
    assert_eq!(rgb.clip_ids, pose.clip_ids);
    let c = rgb.classes;
    let labels: BTreeMap<String, u32> = store
        .samples()
        .expect("samples")
        .into_iter()
        .filter_map(|s| s.label.map(|l| (s.clip_id, l)))
        .collect();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
            .0 as u32
    };
    let (mut right, mut n) = (0usize, 0usize);
    for (i, id) in rgb.clip_ids.iter().enumerate() {
        let (r, p) = (
            &rgb.probs[i * c..(i + 1) * c],
            &pose.probs[i * c..(i + 1) * c],
        );
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        let fused: Vec<f32> = r.iter().zip(p).map(|(a, b)| a + b).collect();
        if let Some(&l) = labels.get(id) {
            n += 1;
            right += usize::from(argmax(&fused) == l);
        }
    }
    assert!((best.top1 - right as f64 / n as f64).abs() < 1e-12);

    ok(&[
        "predict",
        s(&ds),
        "--arch",
        "rgbpose-conv3d",
        "--checkpoint",
        s(&whole.join("best.safetensors")),
        "--split",
        "val",
        "--views",
        "fast",
        "--out",
        s(&tmp.path().join("p.pkl")),
    ]);
}

/// ImageNet 2-D Swin weights inflated for Video Swin equal mmaction2 1.2's `inflate_weights`
/// (fixture: `tools/make_swin_inflate_fixtures.py`; the window (2, 4, 4) needs the bicubic
/// resize of the 3×3-window bias tables), and `model.init` with a 2-D checkpoint inflates it.
#[test]
fn swin2d_weights_inflate_as_mmaction2_does() {
    use mgscope::train::inflate::{inflate_swin2d, is_swin2d};
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/swin_inflate");
    let sd2 = StateDict::read(&fx.join("swin2d.pth")).expect("2-D checkpoint");
    assert!(is_swin2d(&sd2));
    let want = StateDict::read(&fx.join("inflated.npz")).expect("reference");
    let mut cfg = TrainConfig::preset("swin-tiny-demo").expect("preset");
    cfg.model.embed_dim = Some(8);
    cfg.model.depths = Some(vec![1, 1, 2, 1]);
    cfg.model.num_heads = Some(vec![1, 1, 2, 2]);
    cfg.model.window = Some((2, 4, 4));
    let net = cfg.swin_network(10).expect("network");
    let (got, notes) = inflate_swin2d(&sd2, &net).expect("inflate");
    assert!(notes.is_empty(), "{notes:?}");
    for (k, w) in &want.tensors {
        let g = got
            .tensors
            .get(&format!("backbone.{k}"))
            .unwrap_or_else(|| panic!("{k} not inflated"));
        assert_eq!(g.dims(), w.dims(), "{k}");
        let diff = (g - w)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert!(diff <= 1e-6, "{k}: max abs difference {diff}");
    }
    // Only the ImageNet classifier is left over.
    let extra: Vec<&String> = got
        .tensors
        .keys()
        .filter(|k| !want.tensors.contains_key(k.trim_start_matches("backbone.")))
        .collect();
    assert_eq!(extra, vec!["backbone.head.bias", "backbone.head.weight"]);

    let tmp = tempfile::tempdir().expect("tmp");
    let ds = tiny_demo(tmp.path());
    cfg.model.init = Some(fx.join("swin2d.pth"));
    cfg.data.clip_len = 4;
    cfg.data.resize_short = 40;
    cfg.data.train_size = 32;
    cfg.data.val_size = 32;
    cfg.data.batch_size = 3;
    let mut opts = RunOptions::new(tmp.path().join("run"));
    opts.register_stream = false;
    opts.stop_after = Some(1);
    let r = train(&ds, Some(&cfg), &opts).expect("run from 2-D weights");
    let rep = r.init_report.expect("report");
    assert!(rep.contains("inflated"), "{rep}");
    assert!(
        rep.contains(&format!("{} tensors loaded", want.tensors.len())),
        "{rep}"
    );
}

/// f16 loss scaling (GradScaler's rules) on the CPU, where the convolutions stay f32: scaling by
/// a power of two is exact, so a run with it equals the plain run step for step; started from
/// a scale that overflows, the first steps are skipped with the scale halved each time, the
/// weights stay put, and the scaler's state resumes exactly.
#[test]
fn f16_loss_scaling_is_exact_and_skips_overflowing_steps() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ds = tiny_demo(tmp.path());
    let mut cfg = micro_config();
    cfg.optim.epochs = 1;
    let run = |cfg: &TrainConfig, name: &str, stop: Option<usize>| {
        let mut opts = RunOptions::new(tmp.path().join(name));
        opts.register_stream = false;
        opts.stop_after = stop;
        train(&ds, Some(cfg), &opts).expect("run");
        metrics(&tmp.path().join(name))
    };
    let plain = run(&cfg, "plain", None);
    cfg.run.amp = Some("f16".into());
    let scaled = run(&cfg, "scaled", None);
    assert_eq!(plain.len(), scaled.len());
    for (a, b) in plain.iter().zip(&scaled) {
        assert_eq!(
            (a.loss, a.grad_norm),
            (b.loss, b.grad_norm),
            "iteration {}",
            a.iter
        );
        assert_eq!(b.loss_scale, Some(65536.0));
        assert!(!b.skipped);
    }

    // 2^130 · loss overflows f32: skip, halve, until the scaled gradients fit.
    cfg.run.init_scale = Some(2f64.powi(130));
    cfg.optim.epochs = 4;
    let over = run(&cfg, "over", None);
    let skipped = over.iter().take_while(|m| m.skipped).count();
    assert!(skipped >= 2, "{skipped} steps skipped");
    assert!(skipped < over.len(), "every step overflowed");
    for (k, m) in over.iter().enumerate().take(skipped + 1) {
        assert_eq!(
            m.loss_scale,
            Some(2f64.powi(130 - k as i32)),
            "iteration {}",
            m.iter
        );
    }
    assert!(over[..skipped].iter().all(|m| m.grad_norm.is_nan()));
    assert!(over[skipped].grad_norm.is_finite());
    // Resume in the middle of the skipping keeps the scale.
    let mut o = RunOptions::new(tmp.path().join("over2"));
    o.register_stream = false;
    o.stop_after = Some(1);
    train(&ds, Some(&cfg), &o).expect("first leg");
    o.resume = true;
    o.stop_after = None;
    train(&ds, None, &o).expect("second leg");
    let over2 = metrics(&tmp.path().join("over2"));
    assert_eq!(over.len(), over2.len());
    for (a, b) in over.iter().zip(&over2) {
        assert_eq!(
            (a.loss, a.loss_scale, a.skipped),
            (b.loss, b.loss_scale, b.skipped),
            "iteration {}",
            a.iter
        );
        assert!(a.grad_norm == b.grad_norm || a.grad_norm.is_nan() && b.grad_norm.is_nan());
    }
}
