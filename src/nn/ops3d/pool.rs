//! `nn.MaxPool3d` as one CPU autograd op. The tensor-op version takes an element-wise maximum
//! per kernel tap, and autograd keeps every intermediate maximum (eight activation-sized
//! tensors for the 1×3×3 stem pool); this one keeps its input and output and routes each
//! output gradient to the first maximum of its window, as PyTorch's CPU kernel does
//! (`aten/src/ATen/native/cpu/MaxPoolKernel.cpp`: `val > maxval || isnan(val)`).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{dense, f32_slice, with_f32};
use super::{out_len, Triple};

#[derive(Debug, Clone, Copy)]
pub(super) struct MaxPool3dOp {
    pub(super) kernel: Triple,
    pub(super) stride: Triple,
    pub(super) padding: Triple,
}

struct PoolGeom {
    planes: usize,
    inp: (usize, usize, usize),
    out: (usize, usize, usize),
}

impl MaxPool3dOp {
    fn geom(&self, dims: &[usize]) -> Result<PoolGeom> {
        let &[n, c, t, h, w] = dims else {
            candle_core::bail!("max_pool3d: need [N, C, T, H, W], got {dims:?}");
        };
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        Ok(PoolGeom {
            planes: n * c,
            inp: (t, h, w),
            out: (
                out_len(t, k.0, s.0, p.0, 1)?,
                out_len(h, k.1, s.1, p.1, 1)?,
                out_len(w, k.2, s.2, p.2, 1)?,
            ),
        })
    }

    /// Calls `f(out_index, in_index_of_first_max, max)` for every output position of one
    /// `[T, H, W]` plane; windows entirely in the padding yield −∞ and no index.
    fn scan(&self, g: &PoolGeom, x: &[f32], mut f: impl FnMut(usize, Option<usize>, f32)) {
        let (t, h, w) = g.inp;
        let (to, ho, wo) = g.out;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let span = |o: usize, s: usize, p: usize, k: usize, len: usize| {
            let lo = (o * s).saturating_sub(p);
            let hi = (o * s + k).saturating_sub(p).min(len);
            lo..hi
        };
        for ot in 0..to {
            let ts = span(ot, s.0, p.0, k.0, t);
            for oh in 0..ho {
                let hs = span(oh, s.1, p.1, k.1, h);
                for ow in 0..wo {
                    let ws = span(ow, s.2, p.2, k.2, w);
                    let (mut best, mut at) = (f32::NEG_INFINITY, None);
                    for it in ts.clone() {
                        for ih in hs.clone() {
                            let row = (it * h + ih) * w;
                            for iw in ws.clone() {
                                let v = x[row + iw];
                                if at.is_none() || v > best || v.is_nan() {
                                    best = v;
                                    at = Some(row + iw);
                                }
                            }
                        }
                    }
                    f((ot * ho + oh) * wo + ow, at, best);
                }
            }
        }
    }
}

impl CustomOp1 for MaxPool3dOp {
    fn name(&self) -> &'static str {
        "max_pool3d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom(l.dims())?;
        let x = dense(f32_slice(s, "input")?, l)?;
        let (t, h, w) = g.inp;
        let (to, ho, wo) = g.out;
        let (inp, out) = (t * h * w, to * ho * wo);
        let mut y = vec![0f32; g.planes * out];
        y.par_chunks_mut(out.max(1))
            .zip(x.par_chunks(inp.max(1)))
            .for_each(|(yp, xp)| self.scan(&g, xp, |o, _, v| yp[o] = v));
        let dims = l.dims();
        Ok((
            CpuStorage::F32(y),
            Shape::from((dims[0], dims[1], to, ho, wo)),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let g = self.geom(x.dims())?;
        let (t, h, w) = g.inp;
        let (to, ho, wo) = g.out;
        let (inp, out) = (t * h * w, to * ho * wo);
        let gx = with_f32(x, |xs| {
            with_f32(grad, |gs| {
                let mut gx = vec![0f32; xs.len()];
                gx.par_chunks_mut(inp.max(1))
                    .zip(xs.par_chunks(inp.max(1)))
                    .zip(gs.par_chunks(out.max(1)))
                    .for_each(|((gp, xp), dp)| {
                        self.scan(&g, xp, |o, at, _| {
                            if let Some(i) = at {
                                gp[i] += dp[o];
                            }
                        })
                    });
                Ok(gx)
            })
        })?;
        Ok(Some(Tensor::from_vec(gx, x.dims(), x.device())?))
    }
}
