//! SGD with momentum and coupled weight decay (`torch.optim.SGD`, `torch/optim/sgd.py`),
//! gradient clipping by the global L2 norm (`torch.nn.utils.clip_grad_norm_`, as mmcv's
//! `OptimizerHook(grad_clip=dict(max_norm=40))` calls it), the per-iteration cosine schedule
//! (mmcv `CosineAnnealingLrUpdaterHook(by_epoch=False, min_lr=0)`, equal to mmengine
//! `CosineAnnealingLR` by iteration) and cross-entropy on logits with optional label smoothing
//! (mmaction2 `CrossEntropyLoss` / `label_smooth_eps`).

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
}
