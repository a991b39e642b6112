//! SGD with momentum and coupled weight decay (`torch.optim.SGD`, `torch/optim/sgd.py`),
//! gradient clipping by the global L2 norm (`torch.nn.utils.clip_grad_norm_`, as mmcv's
//! `OptimizerHook(grad_clip=dict(max_norm=40))` calls it), the per-iteration cosine schedule
//! (mmcv `CosineAnnealingLrUpdaterHook(by_epoch=False, min_lr=0)`, equal to mmengine
//! `CosineAnnealingLR` by iteration) and cross-entropy on logits with optional label smoothing
//! (mmaction2 `CrossEntropyLoss` / `label_smooth_eps`).
//!
//! For the Video Swin configs: AdamW (`torch.optim.AdamW`) over mmaction2's Swin parameter
//! groups (backbone lr × 0.1, no decay for norms and position tables) and mmengine's chained
//! `LinearLR` warm-up + `CosineAnnealingLR` ([`warmup_cosine_lr`]). Checked against
//! `tests/fixtures/optim/`, written by `tools/make_optim_fixtures.py` through torch + mmengine.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var, D};

use super::{Result, TrainError};

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
        let mut squares = Vec::with_capacity(params.len());
        for (k, p) in params {
            if let Some(g) = grads.get(p.as_tensor()) {
                let g = g.detach();
                squares.push(g.to_dtype(DType::F64)?.sqr()?.sum_all()?);
                with_grad.push((k, p, g));
            }
        }
        // One read of the norm, not one per parameter: on a GPU each read is a sync.
        let grad_norm = if squares.is_empty() {
            0.0
        } else {
            Tensor::stack(&squares, 0)?
                .sum_all()?
                .to_scalar::<f64>()?
                .sqrt()
        };
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

/// One entry of a Swin `paramwise_cfg`: parameters whose name contains `key` get their lr
/// multiplied by `lr_mult` and their weight decay by `decay_mult`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRule {
    pub key: String,
    pub lr_mult: f64,
    pub decay_mult: f64,
}

/// Per-parameter lr and weight-decay multipliers as mmaction2's
/// `SwinOptimWrapperConstructor` (`mmaction/engine/optimizers/swin_optim_wrapper_constructor.py`)
/// sets them. It overrides mmengine's `DefaultOptimWrapperConstructor.add_params`, and its
/// rule is not mmengine's `custom_keys` one (only the longest matching key, ties to the
/// alphabetically first): every `paramwise_cfg` key that is a substring of `"base." + name`
/// applies, and their multipliers multiply (in `paramwise_cfg` order). So
/// `backbone.norm.weight` matches both `norm` and `backbone`: lr × 0.1 and decay × 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamGroups {
    pub rules: Vec<ParamRule>,
}

impl ParamGroups {
    /// The Swin configs' `paramwise_cfg`: `absolute_pos_embed`,
    /// `relative_position_bias_table` and `norm` decay × 0, `backbone` lr × 0.1.
    pub fn swin() -> Self {
        let rule = |key: &str, lr_mult: f64, decay_mult: f64| ParamRule {
            key: key.to_string(),
            lr_mult,
            decay_mult,
        };
        ParamGroups {
            rules: vec![
                rule("absolute_pos_embed", 1.0, 0.0),
                rule("relative_position_bias_table", 1.0, 0.0),
                rule("norm", 1.0, 0.0),
                rule("backbone", 0.1, 1.0),
            ],
        }
    }

    /// `(lr_mult, decay_mult)` of the parameter `key` (a candle key, `backbone.…`, without
    /// the constructor's `base.` prefix).
    pub fn mults(&self, key: &str) -> (f64, f64) {
        let name = format!("base.{key}");
        self.rules
            .iter()
            .filter(|r| name.contains(r.key.as_str()))
            .fold((1.0, 1.0), |(lr, wd), r| {
                (lr * r.lr_mult, wd * r.decay_mult)
            })
    }
}

/// Checkpoint key prefixes of [`AdamW::state_tensors`].
pub const EXP_AVG_PREFIX: &str = "exp_avg.";
pub const EXP_AVG_SQ_PREFIX: &str = "exp_avg_sq.";
pub const STEP_PREFIX: &str = "step.";

/// `torch.optim.AdamW(amsgrad=False)` (`torch/optim/adam.py`, `_single_tensor_adam` with
/// `decoupled_weight_decay=True`) over parameter groups built by [`ParamGroups`], after
/// `clip_grad_norm_` as mmengine's `OptimWrapper(clip_grad=dict(max_norm=…))` calls it.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// The optimiser's lr: a parameter's group starts at `lr · lr_mult`.
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// A parameter's group decays by `weight_decay · decay_mult`.
    pub weight_decay: f64,
    pub groups: ParamGroups,
    /// First moments by parameter key; absent until a parameter's first step.
    pub exp_avg: BTreeMap<String, Tensor>,
    /// Second moments by parameter key.
    pub exp_avg_sq: BTreeMap<String, Tensor>,
    /// Steps taken by parameter key (a parameter without a gradient does not count a step).
    pub steps: BTreeMap<String, u64>,
}

impl AdamW {
    pub fn new(
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        groups: ParamGroups,
    ) -> Self {
        AdamW {
            lr,
            betas,
            eps,
            weight_decay,
            groups,
            exp_avg: BTreeMap::new(),
            exp_avg_sq: BTreeMap::new(),
            steps: BTreeMap::new(),
        }
    }

    /// The Swin configs' optimiser: lr 1e-3, betas (0.9, 0.999), eps 1e-8, the given weight
    /// decay (0.02 or 0.05 by config) and [`ParamGroups::swin`].
    pub fn swin(weight_decay: f64) -> Self {
        AdamW::new(1e-3, (0.9, 0.999), 1e-8, weight_decay, ParamGroups::swin())
    }

    /// `(initial lr, weight decay)` of the group of parameter `key`, as the constructor
    /// computes them: `lr · Π lr_mult`, `weight_decay · Π decay_mult`.
    pub fn group(&self, key: &str) -> (f64, f64) {
        let (lr_mult, decay_mult) = self.groups.mults(key);
        (self.lr * lr_mult, self.weight_decay * decay_mult)
    }

    /// One step over `params` (key order fixes the summation order of the norm).
    /// `lr_at(initial)` gives a group's lr this step from its initial lr, e.g.
    /// `|b| warmup_cosine_lr(b, &schedule, iter)`, or `|b| b` for a constant lr: the
    /// schedule runs per group as mmengine runs it, which matters when `eta_min` ≠ 0.
    /// Parameters without a gradient are left alone, weight decay and step count included,
    /// as in PyTorch.
    pub fn step(
        &mut self,
        params: &BTreeMap<String, Var>,
        grads: &GradStore,
        lr_at: impl Fn(f64) -> f64,
        max_norm: Option<f64>,
    ) -> Result<StepInfo> {
        let mut with_grad = Vec::with_capacity(params.len());
        for (k, p) in params {
            if let Some(g) = grads.get(p.as_tensor()) {
                with_grad.push((k, p, g.detach()));
            }
        }
        let grad_norm = global_norm(with_grad.iter().map(|(_, _, g)| g))?;
        // clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only when below 1.
        let scale = max_norm
            .map(|m| m / (grad_norm + 1e-6))
            .filter(|&c| c < 1.0);
        let (beta1, beta2) = self.betas;
        // the scheduled lr per initial lr: a handful of groups, many parameters
        let mut lrs: Vec<(f64, f64)> = Vec::new();
        for (k, p, g) in with_grad {
            let g = match scale {
                Some(c) => (g * c)?,
                None => g,
            };
            let (initial, wd) = self.group(k);
            let lr = match lrs.iter().find(|(b, _)| *b == initial) {
                Some(&(_, lr)) => lr,
                None => {
                    let lr = lr_at(initial);
                    lrs.push((initial, lr));
                    lr
                }
            };
            let step = self.steps.get(k).copied().unwrap_or(0) + 1;
            let mut w = p.as_detached_tensor();
            if wd != 0.0 {
                w = (w * (1.0 - lr * wd))?;
            }
            // exp_avg.lerp_(g, 1 − β1) and exp_avg_sq·β2 + (1 − β2)·g·g, from zeros on the
            // first step (where they reduce to the second terms exactly)
            let g_sq = ((&g * (1.0 - beta2))? * &g)?;
            let (m, v) = match (self.exp_avg.get(k), self.exp_avg_sq.get(k)) {
                (Some(m), Some(v)) => ((m + ((&g - m)? * (1.0 - beta1))?)?, ((v * beta2)? + g_sq)?),
                _ => ((&g * (1.0 - beta1))?, g_sq),
            };
            let t = step as f64;
            let bias1 = 1.0 - beta1.powf(t);
            let bias2_sqrt = (1.0 - beta2.powf(t)).powf(0.5);
            let step_size = lr / bias1;
            let denom = ((v.sqrt()? / bias2_sqrt)? + self.eps)?;
            let update = ((&m * step_size)? / denom)?;
            p.set(&(w - update)?)?;
            self.exp_avg.insert(k.clone(), m);
            self.exp_avg_sq.insert(k.clone(), v);
            self.steps.insert(k.clone(), step);
        }
        Ok(StepInfo {
            grad_norm,
            clipped: scale.is_some(),
        })
    }

    /// The state as tensors to checkpoint: `exp_avg.<key>`, `exp_avg_sq.<key>` (the
    /// parameter's dtype and shape) and `step.<key>` (i64, `[1]`), on the CPU.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let cpu = Device::Cpu;
        let mut out = BTreeMap::new();
        for (k, m) in &self.exp_avg {
            out.insert(format!("{EXP_AVG_PREFIX}{k}"), m.to_device(&cpu)?);
        }
        for (k, v) in &self.exp_avg_sq {
            out.insert(format!("{EXP_AVG_SQ_PREFIX}{k}"), v.to_device(&cpu)?);
        }
        for (k, &s) in &self.steps {
            let s = i64::try_from(s).map_err(|_| TrainError::Invalid(format!("{k}: step {s}")))?;
            out.insert(format!("{STEP_PREFIX}{k}"), Tensor::new(&[s], &cpu)?);
        }
        Ok(out)
    }

    /// Replaces the state by what [`AdamW::state_tensors`] wrote (other keys are ignored),
    /// on each parameter's device and in its dtype. Every parameter with a step must have
    /// both moments, shaped like it.
    pub fn load_state_tensors(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        params: &BTreeMap<String, Var>,
    ) -> Result<()> {
        let param = |k: &str| {
            params.get(k).ok_or_else(|| {
                TrainError::Invalid(format!("AdamW state for {k}: no such parameter"))
            })
        };
        let mut exp_avg = BTreeMap::new();
        let mut exp_avg_sq = BTreeMap::new();
        let mut steps = BTreeMap::new();
        for (name, t) in tensors {
            if let Some(k) = name.strip_prefix(STEP_PREFIX) {
                param(k)?;
                let s = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
                let s = match s.as_slice() {
                    [s] => u64::try_from(*s).ok(),
                    _ => None,
                }
                .ok_or_else(|| TrainError::Invalid(format!("{name}: not a step count")))?;
                steps.insert(k.to_string(), s);
                continue;
            }
            // "exp_avg_sq." also starts with "exp_avg": try the longer prefix first
            let (k, map) = if let Some(k) = name.strip_prefix(EXP_AVG_SQ_PREFIX) {
                (k, &mut exp_avg_sq)
            } else if let Some(k) = name.strip_prefix(EXP_AVG_PREFIX) {
                (k, &mut exp_avg)
            } else {
                continue;
            };
            let p = param(k)?;
            if t.dims() != p.dims() {
                return Err(TrainError::Invalid(format!(
                    "{name} has shape {:?}, the parameter {:?}",
                    t.dims(),
                    p.dims()
                )));
            }
            map.insert(k.to_string(), t.to_dtype(p.dtype())?.to_device(p.device())?);
        }
        for k in steps.keys() {
            if !exp_avg.contains_key(k) || !exp_avg_sq.contains_key(k) {
                return Err(TrainError::Invalid(format!(
                    "AdamW state for {k}: a step count without both moments"
                )));
            }
        }
        if exp_avg.len() != steps.len() || exp_avg_sq.len() != steps.len() {
            return Err(TrainError::Invalid(
                "AdamW state: moments without a step count".into(),
            ));
        }
        self.exp_avg = exp_avg;
        self.exp_avg_sq = exp_avg_sq;
        self.steps = steps;
        Ok(())
    }
}

/// The global L2 norm of `grads` (`clip_grad_norm_`'s total norm), summed in f64 and read
/// once: on a GPU each read is a sync.
fn global_norm<'a>(grads: impl Iterator<Item = &'a Tensor>) -> Result<f64> {
    let squares = grads
        .map(|g| g.to_dtype(DType::F64)?.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    if squares.is_empty() {
        return Ok(0.0);
    }
    Ok(Tensor::stack(&squares, 0)?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

/// Dynamic loss scaling for f16 (`torch.cuda.amp.GradScaler` with its defaults: scale 2¹⁶,
/// ×2 after 2,000 steps without overflow, ×0.5 and the step skipped on an overflow). The
/// loss is multiplied by `scale` before backward so small f16 gradients do not flush to zero;
/// the gradients are divided by it before clipping and the step. Scaling by a power of two is
/// exact, so where nothing overflows the step equals the unscaled one.
#[derive(Debug, Clone, PartialEq)]
pub struct GradScaler {
    pub scale: f64,
    /// Steps since the last overflow or growth.
    pub growth_tracker: usize,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: usize,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler {
            scale: 65536.0,
            growth_tracker: 0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl GradScaler {
    /// Divides every parameter's gradient by the scale in place; false when any of them is
    /// not finite (`unscale_`'s `found_inf`), one host read for all.
    pub fn unscale(&self, params: &BTreeMap<String, Var>, grads: &mut GradStore) -> Result<bool> {
        let inv = 1.0 / self.scale;
        for p in params.values() {
            if let Some(g) = grads.remove(p.as_tensor()) {
                grads.insert(p.as_tensor(), (g.detach() * inv)?);
            }
        }
        // NaN and ±inf survive a sum of squares in f64; finite f32 values cannot overflow it.
        let norm = global_norm(params.values().filter_map(|p| grads.get(p.as_tensor())))?;
        Ok(norm.is_finite())
    }

    /// `_amp_update_scale_`: back off on an overflow, grow after `growth_interval` clean steps.
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == self.growth_interval {
                self.scale *= self.growth_factor;
                self.growth_tracker = 0;
            }
        }
    }
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

    /// The fixture's parameters, flattened in key order, as (key, shape) slices of `flat`.
    struct Layout {
        keys: Vec<String>,
        shapes: Vec<Vec<usize>>,
    }

    impl Layout {
        fn of(meta: &serde_json::Value) -> Self {
            let keys: Vec<String> = meta["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k.as_str().expect("key").to_string())
                .collect();
            let shapes = keys
                .iter()
                .map(|k| {
                    meta["shapes"][k]
                        .as_array()
                        .expect("shape")
                        .iter()
                        .map(u)
                        .collect()
                })
                .collect();
            Layout { keys, shapes }
        }

        /// `flat [n]` split into tensors by key.
        fn split(&self, flat: &Tensor) -> Vec<(String, Tensor)> {
            let mut at = 0;
            self.keys
                .iter()
                .zip(&self.shapes)
                .map(|(k, shape)| {
                    let n: usize = shape.iter().product();
                    let t = flat
                        .narrow(0, at, n)
                        .and_then(|t| t.reshape(shape.as_slice()));
                    at += n;
                    (k.clone(), t.expect("slice"))
                })
                .collect()
        }
    }

    struct Run {
        layout: Layout,
        params: BTreeMap<String, Var>,
        grads: Tensor,
        want: Tensor,
        lr: Tensor,
        meta: serde_json::Value,
        schedule: WarmupCosine,
    }

    impl Run {
        fn load() -> Self {
            let meta = fixture_json();
            let arrays = npz("adamw.npz");
            let layout = Layout::of(&meta);
            let params = layout
                .split(&arrays["init"])
                .into_iter()
                .map(|(k, t)| (k, Var::from_tensor(&t).expect("var")))
                .collect();
            let schedule = schedule_of(&meta["schedule"]);
            Run {
                layout,
                params,
                grads: arrays["grad"].clone(),
                want: arrays["param"].clone(),
                lr: arrays["lr"].clone(),
                meta,
                schedule,
            }
        }

        fn optimiser(&self) -> AdamW {
            let b = &self.meta["betas"];
            AdamW::new(
                f(&self.meta["lr"]),
                (f(&b[0]), f(&b[1])),
                f(&self.meta["eps"]),
                f(&self.meta["weight_decay"]),
                ParamGroups::swin(),
            )
        }

        fn missing(&self, step: usize, key: &str) -> bool {
            self.meta["missing"]
                .as_array()
                .expect("missing")
                .iter()
                .any(|m| u(&m[0]) == step && m[1].as_str() == Some(key))
        }

        /// Step `step` of the fixture on `params` (the fixture's grads, its schedule).
        fn step(&self, opt: &mut AdamW, params: &BTreeMap<String, Var>, step: usize) -> StepInfo {
            let flat = self.grads.get(step).expect("grad row");
            let mut grads = GradStore::default();
            for (k, g) in self.layout.split(&flat) {
                if !self.missing(step, &k) {
                    grads.insert(params[&k].as_tensor(), g);
                }
            }
            let max_norm = f(&self.meta["max_norm"]);
            let s = self.schedule;
            opt.step(
                params,
                &grads,
                |b| warmup_cosine_lr(b, &s, step),
                Some(max_norm),
            )
            .expect("step")
        }

        fn steps(&self) -> usize {
            u(&self.meta["steps"])
        }

        /// Largest |got − want| / max(|want|, 1e-3) over all parameters after `step`.
        fn max_rel_diff(&self, params: &BTreeMap<String, Var>, step: usize) -> f64 {
            let want = self.want.get(step).expect("param row");
            let mut worst = 0f64;
            for (k, w) in self.layout.split(&want) {
                let got: Vec<f32> = params[&k]
                    .as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .expect("got");
                let w: Vec<f32> = w.flatten_all().and_then(|t| t.to_vec1()).expect("want");
                for (a, b) in got.iter().zip(&w) {
                    let d = f64::from((a - b).abs()) / f64::from(b.abs()).max(1e-3);
                    worst = worst.max(d);
                }
            }
            worst
        }
    }

    #[test]
    fn param_groups_match_the_swin_constructor() {
        let meta = fixture_json();
        let opt = AdamW::swin(f(&meta["weight_decay"]));
        let groups = meta["groups"].as_object().expect("groups");
        assert_eq!(groups.len(), 14);
        for (k, g) in groups {
            // the same products in the same order as the constructor: equal to the bit
            assert_eq!(opt.group(k), (f(&g["lr"]), f(&g["weight_decay"])), "{k}");
        }
        let swin = ParamGroups::swin();
        // every matching key applies, multipliers multiply
        assert_eq!(
            swin.mults("backbone.layers.2.downsample.norm.bias"),
            (0.1, 0.0)
        );
        assert_eq!(
            swin.mults("backbone.layers.0.blocks.1.mlp.fc1.weight"),
            (0.1, 1.0)
        );
        assert_eq!(swin.mults("cls_head.fc_cls.weight"), (1.0, 1.0));
        // matched against "base." + key, as the constructor's prefix is "base"
        let base = ParamGroups {
            rules: vec![ParamRule {
                key: "e.cls".into(),
                lr_mult: 2.0,
                decay_mult: 1.0,
            }],
        };
        assert_eq!(base.mults("cls_head.fc_cls.weight"), (2.0, 1.0));
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

    #[test]
    fn adamw_matches_torch_through_mmengine() {
        let run = Run::load();
        let mut opt = run.optimiser();
        let lr_keys: Vec<&str> = run.meta["lr_keys"]
            .as_array()
            .expect("lr_keys")
            .iter()
            .map(|k| k.as_str().expect("key"))
            .collect();
        let want_lr: Vec<Vec<f64>> = run.lr.to_vec2().expect("lr");
        let mut worst = 0f64;
        let mut worst_lr = 0f64;
        let mut worst_norm = 0f64;
        assert_eq!(want_lr.len(), run.steps());
        for (step, want_row) in want_lr.iter().enumerate() {
            for (key, want) in lr_keys.iter().zip(want_row) {
                let got = warmup_cosine_lr(opt.group(key).0, &run.schedule, step);
                worst_lr = worst_lr.max((got - want).abs() / want);
            }
            let info = run.step(&mut opt, &run.params, step);
            let norm = f(&run.meta["grad_norm"][step]);
            worst_norm = worst_norm.max((info.grad_norm - norm).abs() / norm);
            assert!(
                (info.grad_norm - norm).abs() / norm < 1e-6,
                "step {step}: {info:?}"
            );
            assert_eq!(Some(info.clipped), run.meta["clipped"][step].as_bool());
            let d = run.max_rel_diff(&run.params, step);
            assert!(d < 1e-6, "step {step}: relative difference {d:e}");
            worst = worst.max(d);
        }
        assert!(worst_lr < 1e-12, "lr relative difference {worst_lr:e}");
        // the parameters that missed a gradient once are a step behind
        assert_eq!(
            opt.steps["backbone.absolute_pos_embed"],
            run.steps() as u64 - 1
        );
        assert_eq!(opt.steps["cls_head.fc_cls.weight"], run.steps() as u64);
        eprintln!(
            "AdamW vs torch: max relative difference: parameters {worst:e}, lr {worst_lr:e}, \
             grad norm {worst_norm:e}"
        );
    }

    #[test]
    fn adamw_decays_only_where_the_groups_say() {
        // a zero gradient leaves both moments at 0 and the Adam update at 0/(0 + eps) = 0,
        // so a step is the decoupled decay alone: p·(1 − lr·wd) with the group's lr and wd
        let dev = Device::Cpu;
        let keys = [
            "backbone.layers.0.blocks.0.mlp.fc1.weight",
            "backbone.layers.0.blocks.0.norm2.weight",
            "backbone.layers.0.blocks.0.attn.relative_position_bias_table",
            "cls_head.fc_cls.weight",
        ];
        let params: BTreeMap<String, Var> = keys
            .iter()
            .map(|k| (k.to_string(), Var::new(&[0.5f32, -2.0], &dev).expect("p")))
            .collect();
        let mut grads = GradStore::default();
        for p in params.values() {
            grads.insert(
                p.as_tensor(),
                Tensor::zeros(2, DType::F32, &dev).expect("g"),
            );
        }
        let mut opt = AdamW::swin(0.05);
        let info = opt
            .step(&params, &grads, |b| b * 0.5, Some(1.0))
            .expect("step");
        assert_eq!(info.grad_norm, 0.0);
        assert!(!info.clipped);
        for (k, lr, wd) in [
            (keys[0], 0.5e-4, 0.05),
            (keys[1], 0.5e-4, 0.0),
            (keys[2], 0.5e-4, 0.0),
            (keys[3], 0.5e-3, 0.05),
        ] {
            let got: Vec<f32> = params[k].as_tensor().to_vec1().expect("v");
            let c = 1.0 - lr * wd;
            let want = [(0.5 * c) as f32, (-2.0 * c) as f32];
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (f64::from(*g) - f64::from(w)).abs() <= 1e-7,
                    "{k}: {got:?} vs {want:?}"
                );
            }
            assert_eq!(opt.steps[k], 1);
        }
    }

    #[test]
    fn adamw_resumes_exactly_from_saved_state() {
        let run = Run::load();
        let n = run.steps();
        let half = n / 2;
        // straight through
        let straight: BTreeMap<String, Var> = run
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Var::from_tensor(&v.as_detached_tensor()).expect("var"),
                )
            })
            .collect();
        let mut opt = run.optimiser();
        for step in 0..n {
            run.step(&mut opt, &straight, step);
        }
        // half, save weights and state to a file, load both into fresh ones, the rest
        let first: BTreeMap<String, Var> = run
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Var::from_tensor(&v.as_detached_tensor()).expect("var"),
                )
            })
            .collect();
        let mut opt1 = run.optimiser();
        for step in 0..half {
            run.step(&mut opt1, &first, step);
        }
        let mut saved = opt1.state_tensors().expect("state");
        for (k, v) in &first {
            saved.insert(format!("param.{k}"), v.as_detached_tensor());
        }
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("last.safetensors");
        let to_save: std::collections::HashMap<String, Tensor> =
            saved.clone().into_iter().collect();
        candle_core::safetensors::save(&to_save, &path).expect("save");
        let loaded: BTreeMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
            .expect("load")
            .into_iter()
            .collect();
        let second: BTreeMap<String, Var> = run
            .layout
            .keys
            .iter()
            .map(|k| {
                let t = &loaded[&format!("param.{k}")];
                (k.clone(), Var::from_tensor(t).expect("var"))
            })
            .collect();
        let mut opt2 = run.optimiser();
        opt2.load_state_tensors(&loaded, &second).expect("restore");
        assert_eq!(opt2.steps, opt1.steps);
        for step in half..n {
            run.step(&mut opt2, &second, step);
        }
        for (k, v) in &straight {
            let a: Vec<f32> = v
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("a");
            let b: Vec<f32> = second[k]
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("b");
            assert_eq!(a, b, "{k}");
            let m = |o: &AdamW| -> Vec<f32> {
                o.exp_avg_sq[k]
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .expect("v")
            };
            assert_eq!(m(&opt), m(&opt2), "{k}");
        }
        assert_eq!(opt.steps, opt2.steps);
        // a state for a parameter the model lacks is refused
        let mut bad = saved.clone();
        bad.insert(
            format!("{STEP_PREFIX}nope"),
            Tensor::new(&[1i64], &Device::Cpu).expect("t"),
        );
        assert!(run.optimiser().load_state_tensors(&bad, &second).is_err());
    }

    #[test]
    fn grad_scaler_backs_off_grows_and_unscales() {
        let mut s = GradScaler {
            growth_interval: 3,
            ..GradScaler::default()
        };
        s.update(true);
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 0));
        for _ in 0..2 {
            s.update(false);
        }
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 2));
        s.update(false);
        assert_eq!((s.scale, s.growth_tracker), (65536.0, 0));

        let dev = Device::Cpu;
        let w = Var::new(&[1f32, 2.0], &dev).expect("var");
        let params: BTreeMap<String, Var> = [("w".to_string(), w.clone())].into();
        let loss =
            ((w.as_tensor() * 3.0).expect("mul").sum_all().expect("sum") * s.scale).expect("scale");
        let mut grads = loss.backward().expect("backward");
        assert!(s.unscale(&params, &mut grads).expect("unscale"));
        let g: Vec<f32> = grads
            .get(w.as_tensor())
            .expect("grad")
            .to_vec1()
            .expect("v");
        assert_eq!(g, vec![3.0, 3.0]);
        let loss = (w.as_tensor().sum_all().expect("sum") * f64::from(f32::MAX))
            .expect("huge")
            .affine(4.0, 0.0)
            .expect("overflow");
        let mut grads = loss.backward().expect("backward");
        assert!(!s.unscale(&params, &mut grads).expect("unscale"));
    }
}
