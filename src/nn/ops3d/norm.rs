//! Training-mode batch norm (optionally followed by ReLU) as one CPU autograd op.
//!
//! Composed from candle ops, train-mode BatchNorm3d leaves about five activation-sized
//! tensors in the graph (input, centred, its square, scaled, output) and its backward runs
//! single-threaded broadcast reductions; this op keeps only its input and output and
//! computes the closed-form gradient of `torch.nn.functional.batch_norm`
//! (`aten/src/ATen/native/Normalization.cpp`, `batch_norm_backward_cpu_template`).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{dense, f32_slice, with_f32};

/// Elements per (item, channel) plane of a `[N, C, ...]` shape.
fn plane_dims(dims: &[usize]) -> Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        candle_core::bail!("batch-norm op: need [N, C, ...], got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Per-channel mean and biased variance of `[N, C, per]` data (two passes in f64).
fn channel_stats(x: &[f32], (n, c, per): (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let count = (n * per) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |b| &x[(b * c + ch) * per..(b * c + ch + 1) * per]);
            let sum: f64 = planes()
                .map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>())
                .sum();
            let mean = sum / count;
            let sq: f64 = planes()
                .map(|p| {
                    p.iter()
                        .map(|&v| (f64::from(v) - mean).powi(2))
                        .sum::<f64>()
                })
                .sum();
            (mean as f32, (sq / count) as f32)
        })
        .unzip()
}

struct BatchNormOp {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    relu: bool,
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, per) = plane_dims(l1.dims())?;
        let x = dense(f32_slice(s1, "input")?, l1)?;
        let gamma = dense(f32_slice(s2, "weight")?, l2)?;
        let beta = dense(f32_slice(s3, "bias")?, l3)?;
        if gamma.len() != c || beta.len() != c || self.mean.len() != c {
            candle_core::bail!("batch-norm op: {c} channels, weight/bias/statistics differ");
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(per.max(1))
            .zip(x.par_chunks(per.max(1)))
            .enumerate()
            .for_each(|(i, (yp, xp))| {
                let ch = i % c;
                let scale = self.invstd[ch] * gamma[ch];
                let shift = beta[ch] - self.mean[ch] * scale;
                for (y, &x) in yp.iter_mut().zip(xp) {
                    let v = x * scale + shift;
                    *y = if self.relu { v.max(0.0) } else { v };
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, per) = plane_dims(x.dims())?;
        let count = (n * per) as f32;
        let gamma = weight.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let (mean, invstd, relu) = (&self.mean, &self.invstd, self.relu);
        let (gx, gw, gb) = with_f32(x, |xs| {
            with_f32(grad, |gs| {
                with_f32(res, |ys| {
                    // The gradient through ReLU: zero where the output was clipped.
                    let dy = |i: usize| if relu && ys[i] <= 0.0 { 0.0 } else { gs[i] };
                    let sums: Vec<(f32, f32)> = (0..c)
                        .into_par_iter()
                        .map(|ch| {
                            let (mut sdy, mut sdyx) = (0f64, 0f64);
                            for b in 0..n {
                                let r = (b * c + ch) * per..(b * c + ch + 1) * per;
                                let planes = xs[r.clone()].iter().zip(&gs[r.clone()]).zip(&ys[r]);
                                for ((&x, &g), &y) in planes {
                                    let d = f64::from(if relu && y <= 0.0 { 0.0 } else { g });
                                    sdy += d;
                                    sdyx += d * f64::from((x - mean[ch]) * invstd[ch]);
                                }
                            }
                            (sdy as f32, sdyx as f32)
                        })
                        .collect();
                    let mut gx = vec![0f32; xs.len()];
                    gx.par_chunks_mut(per.max(1))
                        .enumerate()
                        .for_each(|(p, out)| {
                            let ch = p % c;
                            let (sdy, sdyx) = sums[ch];
                            let k = gamma[ch] * invstd[ch];
                            let (mdy, mdyx) = (sdy / count, sdyx / count);
                            for (j, o) in out.iter_mut().enumerate() {
                                let i = p * per + j;
                                let xhat = (xs[i] - mean[ch]) * invstd[ch];
                                *o = k * (dy(i) - mdy - xhat * mdyx);
                            }
                        });
                    let (gb, gw): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
                    Ok((gx, gw, gb))
                })
            })
        })?;
        let gx = Tensor::from_vec(gx, x.dims(), x.device())?;
        let gw = Tensor::from_vec(gw, weight.dims(), weight.device())?.to_dtype(weight.dtype())?;
        let gb = Tensor::from_vec(gb, bias.dims(), bias.device())?.to_dtype(bias.dtype())?;
        Ok((
            x.track_op().then_some(gx),
            weight.track_op().then_some(gw),
            bias.track_op().then_some(gb),
        ))
    }
}

/// `F.batch_norm(x, training=True)` over `[N, C, ...]` with per-channel affine `weight`,
/// `bias`, then ReLU when `relu`: CPU f32 only. Also returns the batch's mean and biased
/// variance per channel (for the running statistics).
pub(crate) fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let dims = plane_dims(x.dims())?;
    let x = x.contiguous()?;
    let (mean, var) = with_f32(&x, |xs| Ok(channel_stats(xs, dims)))?;
    let invstd = var
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
        .collect();
    let op = BatchNormOp {
        mean: mean.clone(),
        invstd,
        relu,
    };
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok((y, mean, var))
}

/// `relu(a + b)` (the residual join of a Bottleneck3d) as one CPU op: the composed version
/// keeps the sum for ReLU's backward besides its two inputs.
struct AddReluOp;

impl candle_core::CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            candle_core::bail!(
                "add-relu: shapes {:?} and {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let a = dense(f32_slice(s1, "lhs")?, l1)?;
        let b = dense(f32_slice(s2, "rhs")?, l2)?;
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(1 << 16)
            .zip(a.par_chunks(1 << 16).zip(b.par_chunks(1 << 16)))
            .for_each(|(y, (a, b))| {
                for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
                    *y = (a + b).max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = with_f32(res, |ys| {
            with_f32(grad, |gs| {
                let mut g = vec![0f32; gs.len()];
                g.par_chunks_mut(1 << 16)
                    .zip(ys.par_chunks(1 << 16).zip(gs.par_chunks(1 << 16)))
                    .for_each(|(o, (y, d))| {
                        for ((o, y), d) in o.iter_mut().zip(y).zip(d) {
                            *o = if *y > 0.0 { *d } else { 0.0 };
                        }
                    });
                Ok(g)
            })
        })?;
        let g = Tensor::from_vec(g, a.dims(), a.device())?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

/// `relu(a + b)`; one autograd op for two CPU f32 tensors of one shape.
pub(crate) fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if cpu_f32(a) && cpu_f32(b) && a.dims() == b.dims() {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
    } else {
        (a + b)?.relu()
    }
}
