//! A run: the training loop (pyskl `apis/train.py` with mmcv's `EpochBasedRunner`: per-iteration
//! LR update, forward, backward, clipped SGD step; validation and best-checkpoint every epoch)
//! and its folder.
//!
//! Run folder:
//! - `config.toml`: the full config (resume reads it back);
//! - `metrics.jsonl`: one line per iteration (epoch, iter, lr, loss, grad_norm, time);
//! - `val.jsonl`: one line per validation (epoch, top1, mean_class_acc);
//! - `last.safetensors`: model weights and BatchNorm buffers under the reference keys
//!   (`backbone.…`, `cls_head.…`, loadable by `mgscope predict`), the SGD momentum buffers as
//!   `train.momentum.<key>` (AdamW's moments and step counts as `train.adamw.…`), and
//!   `train.state` (JSON bytes: iteration counter, seed, best so
//!   far). Every random stream is derived from (seed, epoch, sample, iteration), so the seed
//!   and the counter are the whole generator state;
//! - `best.safetensors` (best validation top-1) and `val_scores.json` (its per-clip scores),
//!   registered in the dataset as an ensemble stream when the run completes (RGBPoseConv3D:
//!   one stream per head, `<name>.rgb` and `<name>.pose`; its validation top-1 is pyskl's
//!   `RGBPose_1:1`, the sum of the two heads' probabilities).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::clips::{load_clips, ClipSet};
use super::config::TrainConfig;
use super::data::{self, epoch_order, sample_rng, Batch, BatchInput, Loader};
use super::inflate::{inflate_swin2d, is_swin2d};
use super::init::{init_reference, init_swin, is_buffer, load_matching, named_vars};
use super::optim::{
    cosine_lr, cross_entropy, warmup_cosine_lr, AdamW, GradScaler, ParamGroups, ParamRule, Sgd,
    StepInfo, WarmupCosine,
};
use super::{mix, stream, Result, TrainError};
use crate::nn::checkpoint::{write_safetensors, StateDict};
use crate::nn::resnet3d::PoseC3D;
use crate::nn::rgbpose::RGBPose;
use crate::nn::swin3d::VideoSwin;
use crate::store::{Dataset, StoredStream};

const STATE_KEY: &str = "train.state";
const MOMENTUM_PREFIX: &str = "train.momentum.";
const ADAMW_PREFIX: &str = "train.adamw.";
const STATE_FORMAT: u32 = 1;

/// How to run (what is not part of the config).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its `last.safetensors` (its own config is used).
    pub resume: bool,
    pub device: Device,
    /// Stop (with a checkpoint) once this many iterations of the whole run are done.
    pub stop_after: Option<usize>,
    /// Set from elsewhere (Ctrl+C, the app) to stop at the next step with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// A progress line with ETA on stderr.
    pub progress: bool,
    /// Store the best checkpoint's validation scores in the dataset when the run completes.
    pub register_stream: bool,
}

impl RunOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RunOptions {
            out: out.into(),
            resume: false,
            device: Device::Cpu,
            stop_after: None,
            stop: Arc::new(AtomicBool::new(false)),
            progress: false,
            register_stream: true,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterRecord {
    pub epoch: usize,
    pub iter: usize,
    pub lr: f64,
    pub loss: f64,
    /// NaN for a step skipped on an overflow (written as JSON `null`).
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_norm: f64,
    /// Seconds for this iteration, and the part spent waiting for data.
    pub time: f64,
    pub data_time: f64,
    /// f16 runs: the loss scale this step used, and whether the step was skipped because a
    /// scaled gradient overflowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// serde_json writes a non-finite f64 as `null`; read it back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One line of `val.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValRecord {
    pub epoch: usize,
    pub iter: usize,
    pub top1: f64,
    pub mean_class_acc: f64,
    pub clips: usize,
    pub seconds: f64,
    /// Models with several heads: each head's own top-1, by head name (`top1` is their
    /// 1:1 fusion).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub heads_top1: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrainState {
    format: u32,
    iter: usize,
    iters_per_epoch: usize,
    total_iters: usize,
    seed: u64,
    best: Option<ValRecord>,
    /// f16 runs: the loss scaler's scale and growth tracker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<(f64, usize)>,
}

/// What a call to [`train`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub out: PathBuf,
    /// Iterations of the whole run done so far, and in all.
    pub iter: usize,
    pub total_iters: usize,
    pub finished: bool,
    pub val: Vec<ValRecord>,
    pub best: Option<ValRecord>,
    /// Name of the stream the validation scores went to.
    pub stream: Option<String>,
    pub train_clips: usize,
    pub val_clips: usize,
    /// The `model.init` transfer report, when weights were loaded.
    pub init_report: Option<String>,
    pub skipped: Vec<String>,
    /// Assumptions made about the data (missing frame sizes).
    pub notes: Vec<String>,
}

/// The flag a SIGINT sets: [`install_interrupt_handler`] connects it.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

extern "C" fn on_sigint(_: libc::c_int) {
    let flag = interrupt_flag();
    if flag.swap(true, Ordering::SeqCst) {
        // a second Ctrl+C while the checkpoint is written: leave at once
        unsafe { libc::_exit(130) };
    }
}

/// Ctrl+C sets [`interrupt_flag`] (the run stops at its next step with a checkpoint); a second
/// one exits immediately.
pub fn install_interrupt_handler() {
    let _ = interrupt_flag();
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only touches an already-initialised atomic and calls _exit, both
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// The network a run trains.
enum Recognizer {
    Pose(PoseC3D),
    Swin(VideoSwin),
    RgbPose(Box<RGBPose>),
}

impl Recognizer {
    /// Logits per head, from the batch's inputs in the data pipeline's order.
    fn forward_t(&self, x: &[Tensor], train: bool) -> candle_core::Result<Vec<Tensor>> {
        let one = |i: usize| {
            x.get(i).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "the model needs input {i}, the batch has {}",
                    x.len()
                ))
            })
        };
        Ok(match self {
            Recognizer::Pose(m) => vec![m.forward_t(one(0)?, train)?],
            Recognizer::Swin(m) => vec![m.forward_t(one(0)?, train)?],
            Recognizer::RgbPose(m) => {
                let (r, p) = m.forward_t(one(0)?, one(1)?, train)?;
                vec![r, p]
            }
        })
    }

    /// Head names (`RGBPoseHead`'s loss components); one unnamed head otherwise.
    fn heads(&self) -> &'static [&'static str] {
        match self {
            Recognizer::RgbPose(_) => &["rgb", "pose"],
            _ => &[""],
        }
    }

    fn set_dropout_seed(&self, seed: u64) -> candle_core::Result<()> {
        match self {
            Recognizer::Pose(m) => m.head.set_dropout_seed(seed),
            Recognizer::Swin(m) => m.set_dropout_seed(seed),
            Recognizer::RgbPose(m) => m.head.set_dropout_seed(seed),
        }
    }
}

struct Net {
    vm: VarMap,
    model: Recognizer,
    /// Every variable by key; `params` excludes the BatchNorm buffers.
    vars: BTreeMap<String, Var>,
    params: BTreeMap<String, Var>,
}

fn build_net(cfg: &TrainConfig, classes: usize, device: &Device) -> Result<Net> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, device);
    let model = if cfg.is_video() {
        let mut m = VideoSwin::new(&cfg.swin_network(classes)?, vb)?;
        m.head.dropout = cfg.model.dropout;
        Recognizer::Swin(m)
    } else if cfg.is_rgbpose() {
        let mut m = RGBPose::new(&cfg.rgbpose_network(classes)?, vb)?;
        m.head.dropout = cfg.model.dropout;
        Recognizer::RgbPose(Box::new(m))
    } else {
        let mut m = PoseC3D::new(&cfg.network(classes)?, vb)?;
        m.head.dropout = cfg.model.dropout;
        Recognizer::Pose(m)
    };
    let vars = named_vars(&vm)?;
    let params = vars
        .iter()
        .filter(|(k, _)| !is_buffer(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Net {
        vm,
        model,
        vars,
        params,
    })
}

/// The optimiser a config names, with its state.
enum Optimizer {
    Sgd(Sgd),
    AdamW(AdamW),
}

impl Optimizer {
    fn new(cfg: &TrainConfig) -> Self {
        let o = &cfg.optim;
        match o.optimizer.as_deref() {
            Some("adamw") => {
                // Swin's paramwise_cfg with the config's backbone multiplier.
                let mut groups = ParamGroups::swin();
                for r in &mut groups.rules {
                    if r.key == "backbone" {
                        r.lr_mult = o.backbone_lr_mult.unwrap_or(1.0);
                    }
                }
                if !cfg.is_video() {
                    // PoseC3D has no position tables; norms still skip decay.
                    groups
                        .rules
                        .retain(|r: &ParamRule| r.key == "backbone" || r.key == "norm");
                }
                Optimizer::AdamW(AdamW::new(
                    o.lr,
                    o.betas.unwrap_or((0.9, 0.999)),
                    1e-8,
                    o.weight_decay,
                    groups,
                ))
            }
            _ => Optimizer::Sgd(Sgd::new(o.momentum, o.weight_decay)),
        }
    }

    /// One step; `lr_at(initial)` is a parameter group's lr this iteration.
    fn step(
        &mut self,
        params: &BTreeMap<String, Var>,
        grads: &candle_core::backprop::GradStore,
        base_lr: f64,
        lr_at: impl Fn(f64) -> f64,
        clip: Option<f64>,
    ) -> Result<StepInfo> {
        match self {
            Optimizer::Sgd(o) => o.step(params, grads, lr_at(base_lr), clip),
            Optimizer::AdamW(o) => o.step(params, grads, lr_at, clip),
        }
    }

    fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(match self {
            Optimizer::Sgd(o) => o
                .buffers
                .iter()
                .map(|(k, b)| (format!("{MOMENTUM_PREFIX}{k}"), b.clone()))
                .collect(),
            Optimizer::AdamW(o) => o
                .state_tensors()?
                .into_iter()
                .map(|(k, t)| (format!("{ADAMW_PREFIX}{k}"), t))
                .collect(),
        })
    }

    fn load(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        params: &BTreeMap<String, Var>,
        bad: &dyn Fn(String) -> TrainError,
    ) -> Result<()> {
        match self {
            Optimizer::Sgd(sgd) => {
                sgd.buffers.clear();
                for (k, t) in tensors {
                    if let Some(name) = k.strip_prefix(MOMENTUM_PREFIX) {
                        let p = params.get(name).ok_or_else(|| {
                            bad(format!("{k}: the model has no parameter {name}"))
                        })?;
                        sgd.buffers.insert(
                            name.to_string(),
                            t.to_dtype(p.dtype())?.to_device(p.device())?,
                        );
                    }
                }
                Ok(())
            }
            Optimizer::AdamW(adam) => {
                let state: BTreeMap<String, Tensor> = tensors
                    .iter()
                    .filter_map(|(k, t)| {
                        k.strip_prefix(ADAMW_PREFIX)
                            .map(|name| (name.to_string(), t.clone()))
                    })
                    .collect();
                adam.load_state_tensors(&state, params)
            }
        }
    }
}

/// The lr schedule: per-iteration cosine (PoseC3D), or mmengine's linear warm-up chained with
/// an epoch-based cosine (Swin).
enum Schedule {
    Cosine {
        eta_min: f64,
        total: usize,
    },
    Warmup(WarmupCosine),
    /// mmcv's `StepLrUpdaterHook` by epoch: × `gamma` at each of `steps`.
    Step {
        ipe: usize,
        steps: Vec<usize>,
        gamma: f64,
    },
}

impl Schedule {
    fn new(cfg: &TrainConfig, ipe: usize, total: usize) -> Self {
        let o = &cfg.optim;
        if let Some(steps) = &o.lr_steps {
            return Schedule::Step {
                ipe: ipe.max(1),
                steps: steps.clone(),
                gamma: o.lr_gamma.unwrap_or(0.1),
            };
        }
        match o.warmup_epochs {
            Some(w) => Schedule::Warmup(WarmupCosine {
                start_factor: o.warmup_start_factor.unwrap_or(0.1),
                // mmengine's convert_to_iter_based truncates: int(2.5 · iters_per_epoch)
                warmup_iters: (w * ipe as f64) as usize,
                cosine_period: ipe.max(1),
                t_max: o.epochs,
                eta_min: o.eta_min,
            }),
            None => Schedule::Cosine {
                eta_min: o.eta_min,
                total,
            },
        }
    }

    fn lr(&self, initial: f64, iter: usize) -> f64 {
        match self {
            Schedule::Cosine { eta_min, total } => cosine_lr(initial, *eta_min, iter, *total),
            Schedule::Warmup(s) => warmup_cosine_lr(initial, s, iter),
            Schedule::Step { ipe, steps, gamma } => {
                let epoch = iter / ipe;
                let passed = steps.iter().filter(|&&s| epoch >= s).count();
                initial * gamma.powi(passed as i32)
            }
        }
    }
}

/// Trains (or resumes) a run on the dataset at `dataset`. `cfg` is required for a new run and
/// ignored on resume, where the run folder's own `config.toml` is used.
pub fn train(dataset: &Path, cfg: Option<&TrainConfig>, opts: &RunOptions) -> Result<RunSummary> {
    let out = &opts.out;
    let config_path = out.join("config.toml");
    let last_path = out.join("last.safetensors");
    let cfg = if opts.resume {
        TrainConfig::load(&config_path, None)?
    } else {
        let cfg = cfg.ok_or_else(|| TrainError::Invalid("a new run needs a config".into()))?;
        if last_path.exists() {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run; resume it (--resume) or choose another --out",
                out.display()
            )));
        }
        cfg.validate().map_err(|message| TrainError::Config {
            path: config_path.clone(),
            message,
        })?;
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        let text = cfg.to_toml().map_err(|message| TrainError::Config {
            path: config_path.clone(),
            message,
        })?;
        std::fs::write(&config_path, text).map_err(|e| TrainError::io(&config_path, e))?;
        cfg.clone()
    };
    let mut ds = Dataset::open(dataset)?;
    let classes = ds.taxonomy().len();
    let d = &cfg.data;
    let train = load_clips(&ds, &cfg, &d.train_split, true)?;
    let val = load_clips(&ds, &cfg, &d.val_split, false)?;
    if train.set.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: split {} has no labelled clip with {}",
            dataset.display(),
            d.train_split,
            if cfg.is_video() {
                "frames"
            } else {
                "keypoints"
            }
        )));
    }
    for i in 0..train.set.len() {
        if train.set.label(i).is_some_and(|l| l as usize >= classes) {
            return Err(TrainError::Sample {
                clip_id: train.set.clip_id(i).to_string(),
                message: format!("label beyond the taxonomy's {classes} classes"),
            });
        }
    }
    let mut skipped = train.skipped.clone();
    skipped.extend(val.skipped.iter().cloned());
    let mut notes = train.notes.clone();
    notes.extend(
        val.notes
            .iter()
            .filter(|n| !notes.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let net = build_net(&cfg, classes, &opts.device)?;
    let seed = cfg.run.seed;
    let ipe = (train.set.len() * d.repeat).div_ceil(d.batch_size);
    let total = ipe * cfg.optim.epochs;
    let mut optimizer = Optimizer::new(&cfg);
    let schedule = Schedule::new(&cfg, ipe, total);
    let mut best: Option<ValRecord> = None;
    let mut iter = 0usize;
    let mut init_report = None;
    let mut scaler = cfg.loss_scaling().then(|| GradScaler {
        scale: cfg.run.init_scale.unwrap_or(65536.0),
        ..GradScaler::default()
    });
    if opts.resume {
        let st = load_last(&last_path, &net, &mut optimizer)?;
        if let (Some(sc), Some((scale, tracker))) = (scaler.as_mut(), st.loss_scale) {
            sc.scale = scale;
            sc.growth_tracker = tracker;
        }
        if st.iters_per_epoch != ipe || st.total_iters != total || st.seed != seed {
            return Err(TrainError::Checkpoint {
                path: last_path.clone(),
                message: format!(
                    "saved for {} iterations/epoch, {} in all, seed {}; the dataset and config now give {ipe}, {total}, seed {seed} (did the train split change?)",
                    st.iters_per_epoch, st.total_iters, st.seed
                ),
            });
        }
        iter = st.iter;
        best = st.best;
        truncate_jsonl(&out.join("metrics.jsonl"), |v| {
            v.get("iter")
                .and_then(|i| i.as_u64())
                .is_some_and(|i| i as usize <= iter)
        })?;
        truncate_jsonl(&out.join("val.jsonl"), |v| {
            v.get("iter")
                .and_then(|i| i.as_u64())
                .is_some_and(|i| i as usize <= iter)
        })?;
    } else {
        if cfg.is_video() {
            init_swin(&net.vm, seed)?;
        } else {
            // ResNet3d and RGBPoseConv3D share the reference init (laterals included).
            init_reference(&net.vm, seed)?;
        }
        if let Some(p) = &cfg.model.init {
            let mut sd = StateDict::read(p)?;
            let mut inflated = String::new();
            if cfg.is_video() && is_swin2d(&sd) {
                let (sd3, notes) = inflate_swin2d(&sd, &cfg.swin_network(classes)?)?;
                sd = sd3;
                inflated = format!(
                    " (a 2-D Swin, inflated as mmaction2's pretrained2d{})",
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", notes.join("; "))
                    }
                );
            }
            let rep = load_matching(&net.vm, &sd)?;
            init_report = Some(format!("{}{inflated}: {rep}", p.display()));
        }
    }
    let mut val_log = Vec::new();
    let mut metrics = append(&out.join("metrics.jsonl"))?;
    let mut val_file = append(&out.join("val.jsonl"))?;
    let started = Instant::now();
    let start_iter = iter;
    let mut finished = iter >= total;
    let train_items = train.set;
    let val_items = val.set;
    let _autocast = crate::nn::ops3d::autocast(cfg.amp_dtype());
    while iter < total {
        let epoch = iter / ipe;
        let order = Arc::new(epoch_order(
            train_items.len(),
            d.repeat,
            d.batch_size,
            seed,
            epoch as u64,
        ));
        let make = {
            let (order, items) = (order.clone(), train_items.clone());
            Arc::new(move |b: usize| train_batch(&order[b], items.as_ref(), seed, epoch as u64))
        };
        let loader = Loader::spawn(iter % ipe, ipe, d.workers, d.prefetch, make);
        let mut wait = Instant::now();
        for batch in loader {
            let batch = batch?;
            let data_time = wait.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let lr = schedule.lr(cfg.optim.lr, iter);
            let x = inputs(batch.inputs, &opts.device)?;
            let y = Tensor::new(batch.labels.as_slice(), &opts.device)?;
            net.model
                .set_dropout_seed(mix(mix(seed, stream::DROPOUT), iter as u64))?;
            // RGBPoseHead: the heads' losses with weights 1 and 1.
            let mut loss: Option<Tensor> = None;
            for logits in net.model.forward_t(&x, true)? {
                let l = cross_entropy(&logits, &y, cfg.optim.label_smoothing)?;
                loss = Some(match loss {
                    Some(acc) => (acc + l)?,
                    None => l,
                });
            }
            let loss = loss.ok_or_else(|| TrainError::Invalid("the model has no head".into()))?;
            let loss_v = f64::from(loss.to_scalar::<f32>()?);
            if !loss_v.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "iteration {}: the loss is {loss_v} (lower optim.lr?)",
                    iter + 1
                )));
            }
            let loss_scale = scaler.as_ref().map(|sc| sc.scale);
            let mut grads = match loss_scale {
                Some(k) => (&loss * k)?.backward()?,
                None => loss.backward()?,
            };
            let finite = match &scaler {
                Some(sc) => sc.unscale(&net.params, &mut grads)?,
                None => true,
            };
            let step = if finite {
                optimizer.step(
                    &net.params,
                    &grads,
                    cfg.optim.lr,
                    |initial| schedule.lr(initial, iter),
                    cfg.optim.grad_clip,
                )?
            } else {
                // GradScaler.step: an overflowed step leaves weights and optimiser state alone.
                StepInfo {
                    grad_norm: f64::NAN,
                    clipped: false,
                }
            };
            if let Some(sc) = scaler.as_mut() {
                sc.update(!finite);
            }
            drop(grads);
            iter += 1;
            let rec = IterRecord {
                epoch: epoch + 1,
                iter,
                lr,
                loss: loss_v,
                grad_norm: step.grad_norm,
                time: data_time + t0.elapsed().as_secs_f64(),
                data_time,
                loss_scale,
                skipped: !finite,
            };
            write_line(&mut metrics, &out.join("metrics.jsonl"), &rec)?;
            if opts.progress {
                progress(&rec, cfg.optim.epochs, total, start_iter, started);
            }
            if iter % ipe == 0 {
                let e = iter / ipe;
                if !val_items.is_empty()
                    && (e % cfg.run.val_every.max(1) == 0 || e == cfg.optim.epochs)
                {
                    let (rec, probs) = validate(&net.model, &val_items, d, opts, e, iter)?;
                    write_line(&mut val_file, &out.join("val.jsonl"), &rec)?;
                    if opts.progress {
                        eprintln!(
                            "\repoch {e}: val top-1 {:.4}, mean class acc {:.4} ({} clips, {:.1}s){}",
                            rec.top1,
                            rec.mean_class_acc,
                            rec.clips,
                            rec.seconds,
                            " ".repeat(20)
                        );
                    }
                    if best.as_ref().is_none_or(|b| rec.top1 > b.top1) {
                        best = Some(rec.clone());
                        let st = state(iter, ipe, total, seed, best.clone(), scaler.as_ref());
                        save(&net, None, &st, &out.join("best.safetensors"))?;
                        write_scores(
                            &out.join("val_scores.json"),
                            val_items.as_ref(),
                            &probs,
                            &rec,
                        )?;
                    }
                    val_log.push(rec);
                }
                let st = state(iter, ipe, total, seed, best.clone(), scaler.as_ref());
                save(&net, Some(&optimizer), &st, &last_path)?;
            }
            let stop =
                opts.stop.load(Ordering::SeqCst) || opts.stop_after.is_some_and(|s| iter >= s);
            if stop && iter < total {
                if iter % ipe != 0 {
                    let st = state(iter, ipe, total, seed, best.clone(), scaler.as_ref());
                    save(&net, Some(&optimizer), &st, &last_path)?;
                }
                if opts.progress {
                    eprintln!(
                        "\nstopped after iteration {iter}; resume with --resume {}",
                        out.display()
                    );
                }
                return Ok(RunSummary {
                    out: out.clone(),
                    iter,
                    total_iters: total,
                    finished: false,
                    val: val_log,
                    best,
                    stream: None,
                    train_clips: train_items.len(),
                    val_clips: val_items.len(),
                    init_report,
                    skipped,
                    notes,
                });
            }
            wait = Instant::now();
        }
        finished = iter >= total;
    }
    if opts.progress {
        eprintln!();
    }
    let mut stream_name = None;
    if finished && opts.register_stream && best.is_some() {
        let name = stream_name_for(&cfg, out);
        stream_name = Some(register(
            &mut ds,
            &name,
            &out.join("val_scores.json"),
            &out.join("best.safetensors"),
            classes,
        )?);
    }
    Ok(RunSummary {
        out: out.clone(),
        iter,
        total_iters: total,
        finished,
        val: val_log,
        best,
        stream: stream_name,
        train_clips: train_items.len(),
        val_clips: val_items.len(),
        init_report,
        skipped,
        notes,
    })
}

fn state(
    iter: usize,
    ipe: usize,
    total: usize,
    seed: u64,
    best: Option<ValRecord>,
    scaler: Option<&GradScaler>,
) -> TrainState {
    TrainState {
        format: STATE_FORMAT,
        iter,
        iters_per_epoch: ipe,
        total_iters: total,
        seed,
        best,
        loss_scale: scaler.map(|s| (s.scale, s.growth_tracker)),
    }
}

/// One training batch: item `i` at epoch position `p` draws from `sample_rng(seed, epoch, p)`.
fn train_batch(
    slots: &[(usize, usize)],
    set: &dyn ClipSet,
    seed: u64,
    epoch: u64,
) -> Result<Batch> {
    let mut vols = Vec::with_capacity(slots.len());
    let mut labels = Vec::with_capacity(slots.len());
    let mut idx = Vec::with_capacity(slots.len());
    for &(pos, i) in slots {
        let mut rng = sample_rng(seed, epoch, pos);
        vols.push(set.train_volume(i, &mut rng)?);
        labels.push(set.label(i).unwrap_or(0));
        idx.push(i);
    }
    data::stack(idx, vols, labels, &set.train_shape())
}

/// The batch's inputs as tensors on `device` (the buffers are moved, not copied).
fn inputs(inputs: Vec<BatchInput>, device: &Device) -> Result<Vec<Tensor>> {
    inputs
        .into_iter()
        .map(|i| Ok(Tensor::from_vec(i.data, i.shape.to_vec(), &Device::Cpu)?.to_device(device)?))
        .collect()
}

/// One validation pass (1 clip, no flip), probabilities per clip; top-1 and mean class accuracy
/// over the labelled clips (pyskl `top_k_accuracy`, `mean_class_accuracy`).
fn validate(
    model: &Recognizer,
    items: &Arc<dyn ClipSet>,
    c: &crate::train::config::DataConfig,
    opts: &RunOptions,
    epoch: usize,
    iter: usize,
) -> Result<(ValRecord, HeadProbs)> {
    let t0 = Instant::now();
    let bs = c.val_batch_size.max(1);
    let chunks: Arc<Vec<Vec<usize>>> = Arc::new(
        (0..items.len())
            .collect::<Vec<_>>()
            .chunks(bs)
            .map(<[_]>::to_vec)
            .collect(),
    );
    let make = {
        let (chunks, items) = (chunks.clone(), items.clone());
        Arc::new(move |b: usize| {
            let idx = chunks[b].clone();
            let vols = idx
                .iter()
                .map(|&i| items.val_volume(i))
                .collect::<Result<Vec<_>>>()?;
            let labels = idx.iter().map(|&i| items.label(i).unwrap_or(0)).collect();
            data::stack(idx, vols, labels, &items.val_shape())
        })
    };
    let heads = model.heads();
    // per head, per clip
    let mut probs = vec![vec![Vec::new(); items.len()]; heads.len()];
    for batch in Loader::spawn(0, chunks.len(), c.workers, c.prefetch, make) {
        let batch = batch?;
        let x = inputs(batch.inputs, &opts.device)?;
        for (h, logits) in model.forward_t(&x, false)?.into_iter().enumerate() {
            let p = candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, 1)?.to_vec2::<f32>()?;
            for (&i, row) in batch.items.iter().zip(p) {
                probs[h][i] = row;
            }
        }
    }
    let labels: Vec<Option<u32>> = (0..items.len()).map(|i| items.label(i)).collect();
    let mut heads_top1 = BTreeMap::new();
    if heads.len() > 1 {
        for (name, p) in heads.iter().zip(&probs) {
            heads_top1.insert((*name).to_string(), accuracy(&labels, p).0);
        }
    }
    // pyskl `RGBPose_1:1`: the heads' probabilities summed; one head is itself.
    let fused: Vec<Vec<f32>> = (0..items.len())
        .map(|i| {
            let mut acc = probs[0][i].clone();
            for p in &probs[1..] {
                for (a, b) in acc.iter_mut().zip(&p[i]) {
                    *a += b;
                }
            }
            acc
        })
        .collect();
    let (top1, mca, _) = accuracy(&labels, &fused);
    Ok((
        ValRecord {
            epoch,
            iter,
            top1,
            mean_class_acc: mca,
            clips: items.len(),
            seconds: t0.elapsed().as_secs_f64(),
            heads_top1,
        },
        heads.iter().map(|h| (*h).to_string()).zip(probs).collect(),
    ))
}

/// Per-clip probabilities of each head, by head name (`""` for a model with one head).
type HeadProbs = Vec<(String, Vec<Vec<f32>>)>;

/// (top-1, mean class accuracy, labelled clips) of per-clip probabilities; unlabelled clips
/// (`None`) are left out.
pub fn accuracy(labels: &[Option<u32>], probs: &[Vec<f32>]) -> (f64, f64, usize) {
    let mut per_class: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    let (mut right, mut n) = (0usize, 0usize);
    for (label, p) in labels.iter().zip(probs) {
        let Some(label) = *label else { continue };
        // first maximum, as numpy's argmax
        let pred = p
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |a, (i, &v)| {
                if v > a.1 {
                    (i, v)
                } else {
                    a
                }
            })
            .0;
        let ok = pred == label as usize;
        n += 1;
        right += usize::from(ok);
        let e = per_class.entry(label).or_default();
        e.0 += usize::from(ok);
        e.1 += 1;
    }
    let top1 = if n == 0 { 0.0 } else { right as f64 / n as f64 };
    let mca = if per_class.is_empty() {
        0.0
    } else {
        per_class
            .values()
            .map(|&(r, c)| r as f64 / c as f64)
            .sum::<f64>()
            / per_class.len() as f64
    };
    (top1, mca, n)
}

fn save(net: &Net, optimizer: Option<&Optimizer>, st: &TrainState, path: &Path) -> Result<()> {
    let mut t: BTreeMap<String, Tensor> = net
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_detached_tensor()))
        .collect();
    if let Some(o) = optimizer {
        t.extend(o.state_tensors()?);
    }
    let json = serde_json::to_vec(st).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("encoding the state: {e}"),
    })?;
    let n = json.len();
    t.insert(STATE_KEY.into(), Tensor::from_vec(json, n, &Device::Cpu)?);
    // write beside and rename, so an interrupted write never leaves a half checkpoint
    let tmp = path.with_extension("safetensors.tmp");
    write_safetensors(&t, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn load_last(path: &Path, net: &Net, optimizer: &mut Optimizer) -> Result<TrainState> {
    let sd = StateDict::read(path)?;
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let raw = sd
        .tensors
        .get(STATE_KEY)
        .ok_or_else(|| {
            bad(format!(
                "no {STATE_KEY}: not a checkpoint written by mgscope train"
            ))
        })?
        .to_vec1::<u8>()?;
    let st: TrainState =
        serde_json::from_slice(&raw).map_err(|e| bad(format!("{STATE_KEY}: {e}")))?;
    if st.format != STATE_FORMAT {
        return Err(bad(format!(
            "state format {} (this build reads {STATE_FORMAT})",
            st.format
        )));
    }
    for (k, v) in &net.vars {
        let t = sd
            .tensors
            .get(k)
            .ok_or_else(|| bad(format!("no {k} (was the config changed?)")))?;
        if t.dims() != v.as_tensor().dims() {
            return Err(bad(format!(
                "{k} has shape {:?}, the model {:?}",
                t.dims(),
                v.as_tensor().dims()
            )));
        }
        v.set(&t.to_dtype(v.dtype())?.to_device(v.device())?)?;
    }
    optimizer.load(&sd.tensors, &net.params, &bad)?;
    Ok(st)
}

fn append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))
}

fn write_line<T: Serialize>(f: &mut std::fs::File, path: &Path, rec: &T) -> Result<()> {
    let mut line = serde_json::to_string(rec).map_err(|e| TrainError::Invalid(e.to_string()))?;
    line.push('\n');
    f.write_all(line.as_bytes())
        .map_err(|e| TrainError::io(path, e))
}

/// Keeps the lines `keep` accepts: what a crashed run logged after its last checkpoint is
/// dropped so the resumed run's lines follow on without duplicates.
fn truncate_jsonl(path: &Path, keep: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| keep(&v)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| TrainError::io(path, e))
}

#[derive(Serialize, Deserialize)]
struct Scores {
    val: ValRecord,
    clip_ids: Vec<String>,
    /// Per clip: the heads' probabilities one after the other, in `heads` order.
    probs: Vec<Vec<f32>>,
    /// Head names of a model with several heads; empty for one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    heads: Vec<String>,
}

fn write_scores(
    path: &Path,
    items: &dyn ClipSet,
    probs: &HeadProbs,
    rec: &ValRecord,
) -> Result<()> {
    let s = Scores {
        val: rec.clone(),
        clip_ids: (0..items.len())
            .map(|i| items.clip_id(i).to_string())
            .collect(),
        probs: (0..items.len())
            .map(|i| {
                probs
                    .iter()
                    .flat_map(|(_, p)| p[i].iter().copied())
                    .collect()
            })
            .collect(),
        heads: if probs.len() > 1 {
            probs.iter().map(|(h, _)| h.clone()).collect()
        } else {
            Vec::new()
        },
    };
    let text = serde_json::to_string(&s).map_err(|e| TrainError::Invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

/// The ensemble stream a run's validation scores go to: the config's `run.stream`, else
/// `train:<run folder name>`.
pub fn stream_name_for(cfg: &TrainConfig, out: &Path) -> String {
    cfg.run.stream.clone().unwrap_or_else(|| {
        format!(
            "train:{}",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into())
        )
    })
}

/// Stores a run's best validation scores (`val_scores.json`) as an ensemble stream of the
/// dataset at `dataset` — what a completed run does by itself, for a run stopped early or made
/// with `--no-stream`. Returns the stream's name.
pub fn register_run(dataset: &Path, out: &Path) -> Result<String> {
    let cfg = TrainConfig::load(&out.join("config.toml"), None)?;
    let scores = out.join("val_scores.json");
    if !scores.is_file() {
        return Err(TrainError::Invalid(format!(
            "{}: the run has not validated yet (no val_scores.json)",
            out.display()
        )));
    }
    let mut ds = Dataset::open(dataset)?;
    let classes = ds.taxonomy().len();
    let name = stream_name_for(&cfg, out);
    register(
        &mut ds,
        &name,
        &scores,
        &out.join("best.safetensors"),
        classes,
    )
}

/// Stores the scores as one stream, or one per head (`<name>.<head>`); returns the names,
/// comma-separated.
fn register(
    ds: &mut Dataset,
    name: &str,
    scores: &Path,
    best: &Path,
    classes: usize,
) -> Result<String> {
    let text = std::fs::read_to_string(scores).map_err(|e| TrainError::io(scores, e))?;
    let s: Scores = serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: scores.to_path_buf(),
        message: e.to_string(),
    })?;
    let heads = s.heads.len().max(1);
    if s.probs.iter().any(|p| p.len() != classes * heads) {
        return Err(TrainError::Checkpoint {
            path: scores.to_path_buf(),
            message: format!("scores are not {heads} × {classes} classes wide"),
        });
    }
    let report = serde_json::json!({
        "epoch": s.val.epoch,
        "top1": s.val.top1,
        "mean_class_acc": s.val.mean_class_acc,
        "heads_top1": s.val.heads_top1,
        "protocol": "val: 1 clip, no flip",
    });
    let mut names = Vec::with_capacity(heads);
    for h in 0..heads {
        let stream = match s.heads.get(h) {
            Some(head) => format!("{name}.{head}"),
            None => name.to_string(),
        };
        ds.put_stream(&StoredStream {
            name: stream.clone(),
            classes,
            clip_ids: s.clip_ids.clone(),
            probs: s
                .probs
                .iter()
                .flat_map(|p| p[h * classes..(h + 1) * classes].iter().copied())
                .collect(),
            source: format!("{} (mgscope train)", best.display()),
            report: report.to_string(),
        })?;
        names.push(stream);
    }
    Ok(names.join(", "))
}

fn progress(rec: &IterRecord, epochs: usize, total: usize, start_iter: usize, started: Instant) {
    let done = rec.iter.saturating_sub(start_iter).max(1);
    let per = started.elapsed().as_secs_f64() / done as f64;
    let eta = per * total.saturating_sub(rec.iter) as f64;
    eprint!(
        "\repoch {}/{epochs} iter {}/{total} loss {:.4} lr {:.5} |g| {:.2} {:.2}s/it ETA {}   ",
        rec.epoch,
        rec.iter,
        rec.loss,
        rec.lr,
        rec.grad_norm,
        per,
        hms(eta)
    );
    let _ = std::io::stderr().flush();
}

fn hms(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_mean_class_accuracy() {
        let items = [Some(0), Some(0), Some(1), None];
        let probs = vec![
            vec![0.9, 0.1],
            vec![0.2, 0.8],
            vec![0.3, 0.7],
            vec![0.5, 0.5],
        ];
        let (top1, mca, n) = accuracy(&items, &probs);
        assert_eq!(n, 3);
        assert!((top1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((mca - 0.75).abs() < 1e-12);
    }

    #[test]
    fn hms_formats() {
        assert_eq!(hms(3725.4), "1:02:05");
    }
}
