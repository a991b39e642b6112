//! SGD with momentum and coupled weight decay (`torch.optim.SGD`, `torch/optim/sgd.py`),
//! gradient clipping by the global L2 norm (`torch.nn.utils.clip_grad_norm_`, as mmcv's
//! `OptimizerHook(grad_clip=dict(max_norm=40))` calls it), the per-iteration cosine schedule
//! (mmcv `CosineAnnealingLrUpdaterHook(by_epoch=False, min_lr=0)`, equal to mmengine
//! `CosineAnnealingLR` by iteration) and cross-entropy on logits with optional label smoothing
//! (mmaction2 `CrossEntropyLoss` / `label_smooth_eps`).
//!
//! For the Video Swin configs: mmengine's chained `LinearLR` warm-up + `CosineAnnealingLR`
//! ([`warmup_cosine_lr`]). Checked against `tests/fixtures/optim/`, written by
//! `tools/make_optim_fixtures.py` through torch + mmengine.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var, D};

use super::Result;

/// `lr(t) = η_min + (η₀ − η_min)·(1 + cos(π·t / T)) / 2` for iteration `t` of `T`.
pub fn cosine_lr(base: f64, eta_min: f64, iter: usize, total: usize) -> f64 {
    let p = iter as f64 / total.max(1) as f64;
    eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * p).cos()) / 2.0
}

/// Mean cross-entropy of `logits [B, K]` against `labels [B]` (u32); with smoothing ε the
/// target is `(1 − ε)·onehot + ε / K`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let picked = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let nll = picked.mean_all()?.neg()?;
    if smoothing <= 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.mean_all()?.neg()?;
    Ok(((nll * (1.0 - smoothing))? + (uniform * smoothing)?)?)
}

/// `torch.optim.SGD(momentum, weight_decay, dampening=0, nesterov=False)`.
#[derive(Debug, Clone)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Momentum buffers by parameter key; absent until a parameter's first step.
    pub buffers: BTreeMap<String, Tensor>,
}

/// What one step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
}

impl Sgd {
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            weight_decay,
            buffers: BTreeMap::new(),
        }
    }

    /// One step over `params` (key order fixes the summation order of the norm). Parameters
    /// without a gradient are left alone, weight decay included, as in PyTorch.
    pub fn step(
        &mut self,
        params: &BTreeMap<String, Var>,
        grads: &GradStore,
        lr: f64,
        max_norm: Option<f64>,
    ) -> Result<StepInfo> {
        let mut with_grad = Vec::with_capacity(params.len());
        let mut sq = 0f64;
        for (k, p) in params {
            if let Some(g) = grads.get(p.as_tensor()) {
                let g = g.detach();
                sq += f64::from(
                    g.to_dtype(DType::F32)?
                        .sqr()?
                        .sum_all()?
                        .to_scalar::<f32>()?,
                );
                with_grad.push((k, p, g));
            }
        }
        let grad_norm = sq.sqrt();
        // clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only when below 1.
        let scale = max_norm
            .map(|m| m / (grad_norm + 1e-6))
            .filter(|&c| c < 1.0);
        for (k, p, g) in with_grad {
            let mut g = match scale {
                Some(c) => (g * c)?,
                None => g,
            };
            let w = p.as_detached_tensor();
            if self.weight_decay != 0.0 {
                g = (g + (&w * self.weight_decay)?)?;
            }
            let buf = if self.momentum != 0.0 {
                match self.buffers.get(k) {
                    Some(b) => ((b * self.momentum)? + g)?,
                    // the first step's buffer is the gradient itself
                    None => g,
                }
            } else {
                g
            };
            p.set(&(w - (&buf * lr)?)?)?;
            if self.momentum != 0.0 {
                self.buffers.insert(k.clone(), buf);
            }
        }
        Ok(StepInfo {
            grad_norm,
            clipped: scale.is_some(),
        })
    }
}

/// LR of the Swin configs' `param_scheduler`: mmengine `LinearLR` (warm-up) and
/// `CosineAnnealingLR`, both starting at step 0 and chained, i.e. each step multiplies (or,
/// for the cosine, rescales towards `eta_min`) the lr the other one left.
///
/// The Swin configs (mmaction2 `configs/recognition/swin/*.py`, MM-Gesture's included) set
/// the warm-up over epochs 0–2.5 with `convert_to_iter_based=True`, so it steps after every
/// iteration, but leave the cosine epoch-based (`by_epoch=True, begin=0, end=30, T_max=30`),
/// so it steps after every epoch and already runs during the warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// `LinearLR.start_factor` (`end_factor` is 1).
    pub start_factor: f64,
    /// `LinearLR`'s `end` in iterations (`begin` 0); 0 for no warm-up. mmengine converts
    /// the configs' epochs by truncating: `int(2.5 · iters_per_epoch)`.
    pub warmup_iters: usize,
    /// Iterations per cosine step: the epoch length for an epoch-based cosine, 1 for an
    /// iteration-based one.
    pub cosine_period: usize,
    /// `CosineAnnealingLR.T_max` in cosine steps; the cosine runs from step 0 to `T_max`
    /// (`begin=0, end=T_max`) and the lr holds its last value after it.
    pub t_max: usize,
    pub eta_min: f64,
}

impl WarmupCosine {
    /// The Swin configs' schedule at `iters_per_epoch` iterations per epoch:
    /// `LinearLR(start_factor=0.1)` over epochs 0–2.5 by iteration, then (and meanwhile)
    /// `CosineAnnealingLR(T_max=30, eta_min=0)` by epoch.
    pub fn swin(iters_per_epoch: usize) -> Self {
        WarmupCosine {
            start_factor: 0.1,
            warmup_iters: iters_per_epoch * 5 / 2,
            cosine_period: iters_per_epoch,
            t_max: 30,
            eta_min: 0.0,
        }
    }
}

/// The lr that a parameter group whose initial lr is `base` has during iteration `iter`
/// (0-based) under `s`, computed as mmengine does (`mmengine/optim/scheduler/
/// param_scheduler.py`, the chained `_get_value` forms): both schedulers step once when built
/// (the warm-up multiplies by `start_factor`, the cosine leaves the lr), then, after each
/// iteration, the warm-up steps while its step count is below `warmup_iters`, and then, at
/// the end of each cosine period, the cosine steps while its count is below `t_max`. With
/// `eta_min` = 0 this is `base · (f + (1 − f)·min(i, W−1)/(W−1)) · (1 + cos(π·c/T))/2` with
/// `c = min(⌊i/period⌋, T−1)`; the warm-up's factor reaches 1 at iteration `W − 1`, not `W`.
/// Costs O(min(iter, W) + iter/period).
pub fn warmup_cosine_lr(base: f64, s: &WarmupCosine, iter: usize) -> f64 {
    let sf = s.start_factor;
    let w = s.warmup_iters;
    let period = s.cosine_period.max(1);
    let t_max = s.t_max as f64;
    let cosine = |lr: f64, c: usize| -> f64 {
        // the chained CosineAnnealingLR step c ≥ 1; its restart branch only fires at
        // c = T_max + 1, past `end`
        let pi = std::f64::consts::PI;
        (1.0 + (pi * c as f64 / t_max).cos()) / (1.0 + (pi * (c - 1) as f64 / t_max).cos())
            * (lr - s.eta_min)
            + s.eta_min
    };
    let mut lr = base;
    if w > 0 {
        lr *= sf;
    }
    // the warm-up steps after iterations 0..W−1 (its last step, number W−1, makes the factor 1)
    let warm_end = iter.min(w.saturating_sub(1));
    for done in 1..=warm_end {
        // LinearLR step `done` (iterations done so far), then the cosine's if a period ended
        lr *= 1.0 + (1.0 - sf) / ((w - 1) as f64 * sf + (done - 1) as f64 * (1.0 - sf));
        if done % period == 0 && done / period < s.t_max {
            lr = cosine(lr, done / period);
        }
    }
    let last = (iter / period).min(s.t_max.saturating_sub(1));
    for c in warm_end / period + 1..=last {
        lr = cosine(lr, c);
    }
    lr
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cosine_matches_the_closed_form() {
        assert!((cosine_lr(0.1, 0.0, 0, 100) - 0.1).abs() < 1e-12);
        assert!((cosine_lr(0.1, 0.0, 50, 100) - 0.05).abs() < 1e-12);
        assert!(cosine_lr(0.1, 0.0, 100, 100).abs() < 1e-12);
        assert!((cosine_lr(0.1, 0.01, 100, 100) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn cross_entropy_with_and_without_smoothing() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2f32, 0.0, 0.0], [0.0, 0.0, 0.0]], &dev).expect("l");
        let labels = Tensor::new(&[0u32, 2], &dev).expect("y");
        let z = 2f64.exp() + 2.0;
        let l0 = -(2f64.exp() / z).ln();
        let l1 = 3f64.ln();
        let got = cross_entropy(&logits, &labels, 0.0)
            .and_then(|t| Ok(t.to_scalar::<f32>()?))
            .expect("ce");
        assert!((f64::from(got) - (l0 + l1) / 2.0).abs() < 1e-6);
        // smoothing 0.3 on K=3: target = 0.8 for the label, 0.1 elsewhere
        let lp0 = [2.0 - z.ln(), -z.ln(), -z.ln()];
        let s0 = -(0.8 * lp0[0] + 0.1 * lp0[1] + 0.1 * lp0[2]);
        let s1 = 3f64.ln();
        let got = cross_entropy(&logits, &labels, 0.3)
            .and_then(|t| Ok(t.to_scalar::<f32>()?))
            .expect("ce");
        assert!((f64::from(got) - (s0 + s1) / 2.0).abs() < 1e-6, "{got}");
    }

    #[test]
    fn sgd_matches_torch_by_hand() {
        // torch: p=[1, -2], g = 2p (loss = Σp²), lr 0.1, momentum 0.9, wd 0.01, max_norm 1.
        let dev = Device::Cpu;
        let p = Var::new(&[1f32, -2.0], &dev).expect("p");
        let params: BTreeMap<String, Var> = [("p".to_string(), p.clone())].into();
        let mut opt = Sgd::new(0.9, 0.01);
        let mut want = [1f64, -2.0];
        let mut buf = [0f64; 2];
        for step in 0..3 {
            let loss = p.as_tensor().sqr().and_then(|t| t.sum_all()).expect("loss");
            let grads = loss.backward().expect("bw");
            let info = opt.step(&params, &grads, 0.1, Some(1.0)).expect("step");
            let g = [2.0 * want[0], 2.0 * want[1]];
            let norm = (g[0] * g[0] + g[1] * g[1]).sqrt();
            assert!((info.grad_norm - norm).abs() < 1e-4);
            let c = (1.0 / (norm + 1e-6)).min(1.0);
            for i in 0..2 {
                let d = g[i] * c + 0.01 * want[i];
                buf[i] = if step == 0 { d } else { 0.9 * buf[i] + d };
                want[i] -= 0.1 * buf[i];
            }
            let got: Vec<f32> = p.as_tensor().to_vec1().expect("v");
            for i in 0..2 {
                assert!(
                    (f64::from(got[i]) - want[i]).abs() < 1e-5,
                    "step {step}: {got:?} vs {want:?}"
                );
            }
        }
    }

    // ---- AdamW and the warm-up + cosine schedule against tests/fixtures/optim/ ----

    fn fixture_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim")
    }

    fn fixture_json() -> serde_json::Value {
        let path = fixture_dir().join("optim.json");
        let text = std::fs::read_to_string(&path).expect("optim.json");
        serde_json::from_str(&text).expect("json")
    }

    fn npz(name: &str) -> BTreeMap<String, Tensor> {
        Tensor::read_npz(fixture_dir().join(name))
            .expect("npz")
            .into_iter()
            .collect()
    }

    fn f(v: &serde_json::Value) -> f64 {
        v.as_f64().expect("number")
    }

    fn u(v: &serde_json::Value) -> usize {
        v.as_u64().expect("integer") as usize
    }

    fn schedule_of(v: &serde_json::Value) -> WarmupCosine {
        WarmupCosine {
            start_factor: f(&v["start_factor"]),
            warmup_iters: u(&v["warmup_iters"]),
            cosine_period: u(&v["cosine_period"]),
            t_max: u(&v["t_max"]),
            eta_min: f(&v["eta_min"]),
        }
    }

    #[test]
    fn warmup_cosine_matches_mmengine() {
        let meta = fixture_json();
        let arrays = npz("schedules.npz");
        let mut worst = 0f64;
        for (name, v) in meta["schedules"].as_object().expect("schedules") {
            let s = schedule_of(v);
            let want: Vec<Vec<f64>> = arrays[name].to_vec2().expect("lrs");
            assert_eq!(want.len(), u(&v["iters"]), "{name}");
            let bases: Vec<f64> = v["bases"]
                .as_array()
                .expect("bases")
                .iter()
                .map(f)
                .collect();
            for (iter, row) in want.iter().enumerate() {
                for (base, want) in bases.iter().zip(row) {
                    let got = warmup_cosine_lr(*base, &s, iter);
                    let d = (got - want).abs() / want.abs();
                    assert!(d < 1e-12, "{name} iter {iter}: {got} vs {want}");
                    worst = worst.max(d);
                }
            }
        }
        eprintln!("warmup_cosine_lr: max relative difference {worst:e}");
        // the closed form for eta_min = 0
        let s = WarmupCosine::swin(7);
        assert_eq!(s.warmup_iters, 17);
        for i in 0..250 {
            let warm = 0.1 + 0.9 * (i.min(16) as f64) / 16.0;
            let c = (i / 7).min(29) as f64;
            let cos = (1.0 + (std::f64::consts::PI * c / 30.0).cos()) / 2.0;
            let got = warmup_cosine_lr(1e-3, &s, i);
            assert!((got - 1e-3 * warm * cos).abs() < 1e-15, "{i}: {got}");
        }
    }
}
