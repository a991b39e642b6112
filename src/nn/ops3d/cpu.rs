//! CPU f32 kernels behind the conv3d custom op: im2col / col2im over raw slices and gemm on
//! them, chunked over output frames so that no column matrix outlives one chunk.
//!
//! The autograd graph of the tensor-op conv3d keeps every im2col matrix until backward (for a
//! PoseC3D stem that is C·49 times the input). Here the forward keeps nothing but its inputs,
//! and the backward rebuilds each chunk's columns, as PyTorch's `slow_conv3d` does
//! (`aten/src/ATen/native/ConvolutionMM3d.cpp`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::{out_len, Conv3dConfig};

/// Shapes and hyper-parameters of one conv3d call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geom {
    n: usize,
    c: usize,
    /// Input (t, h, w).
    t: usize,
    h: usize,
    w: usize,
    o: usize,
    k: (usize, usize, usize),
    cfg: Conv3dConfig,
    /// Output (t, h, w).
    to: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    pub(super) fn new(x: &[usize], kernel: &[usize], cfg: &Conv3dConfig) -> Result<Geom> {
        let (&[n, c, t, h, w], &[o, kc, kt, kh, kw]) = (x, kernel) else {
            candle_core::bail!("conv3d: need 5-D input and kernel, got {x:?} and {kernel:?}");
        };
        if kc != c {
            candle_core::bail!("conv3d: input has {c} channels, kernel expects {kc}");
        }
        Ok(Geom {
            n,
            c,
            t,
            h,
            w,
            o,
            k: (kt, kh, kw),
            cfg: *cfg,
            to: out_len(t, kt, cfg.stride.0, cfg.padding.0, cfg.dilation.0)?,
            ho: out_len(h, kh, cfg.stride.1, cfg.padding.1, cfg.dilation.1)?,
            wo: out_len(w, kw, cfg.stride.2, cfg.padding.2, cfg.dilation.2)?,
        })
    }

    fn taps(&self) -> usize {
        self.k.0 * self.k.1 * self.k.2
    }

    /// Rows of the column matrix, ordered (channel, kt, kh, kw) like the flattened kernel.
    fn rows(&self) -> usize {
        self.c * self.taps()
    }

    fn out_frame(&self) -> usize {
        self.ho * self.wo
    }

    fn out_item(&self) -> usize {
        self.to * self.out_frame()
    }

    fn in_item(&self) -> usize {
        self.c * self.t * self.h * self.w
    }

    /// A 1×1×1 kernel with unit stride and no padding reads the input as it is.
    fn is_identity_window(&self) -> bool {
        self.taps() == 1 && self.cfg.stride == (1, 1, 1) && self.cfg.padding == (0, 0, 0)
    }

    /// Output frames per chunk so that one column matrix stays within `budget` elements.
    fn chunk_frames(&self, budget: usize) -> usize {
        (budget / (self.rows() * self.out_frame()).max(1)).clamp(1, self.to)
    }
}

/// A strided `[N, C, T, H, W]` view of a slice, as a candle layout describes it.
#[derive(Clone, Copy)]
struct Src<'a> {
    data: &'a [f32],
    offset: usize,
    stride: [usize; 5],
}

impl<'a> Src<'a> {
    fn new(data: &'a [f32], layout: &Layout) -> Result<Src<'a>> {
        let &[s0, s1, s2, s3, s4] = layout.stride() else {
            candle_core::bail!("conv3d: input layout {layout:?} is not 5-D");
        };
        Ok(Src {
            data,
            offset: layout.start_offset(),
            stride: [s0, s1, s2, s3, s4],
        })
    }

    /// Item `b` as a contiguous `[C, T·H·W]` slice, when the layout allows it.
    fn contiguous_item(&self, g: &Geom, b: usize) -> Option<&'a [f32]> {
        let plane = g.t * g.h * g.w;
        let dense = [g.in_item(), plane, g.h * g.w, g.w, 1];
        // Unit dims may carry any stride; only the others must match the dense layout.
        let dims = [g.n, g.c, g.t, g.h, g.w];
        let ok = (1..5).all(|i| dims[i] == 1 || self.stride[i] == dense[i]);
        let start = self.offset + b * self.stride[0];
        if ok {
            self.data.get(start..start + g.in_item())
        } else {
            None
        }
    }
}

/// The range of output positions `j` whose input index `j·s + off − pad` lies in `[0, len)`.
fn valid(out: usize, s: usize, off: usize, pad: usize, len: usize) -> (usize, usize) {
    let lo = if pad > off {
        (pad - off).div_ceil(s)
    } else {
        0
    };
    let hi = if len + pad > off {
        ((len - 1 + pad - off) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Columns of item `b` for output frames `[t0, t0 + len)`: `cols[row, (tl, oh, ow)]` is the
/// input under tap `row` (zero in the padding).
fn im2col(x: Src, g: &Geom, b: usize, t0: usize, len: usize, cols: &mut [f32]) {
    let (kt, kh, kw) = g.k;
    let (st, sh, sw) = g.cfg.stride;
    let (pt, ph, pw) = g.cfg.padding;
    let (dt, dh, dw) = g.cfg.dilation;
    let (frame, wo) = (g.out_frame(), g.wo);
    let [_, xc, xt, xh, xw] = x.stride;
    cols.par_chunks_mut(len * frame)
        .enumerate()
        .for_each(|(row, out)| {
            let e = row % kw;
            let r = (row / kw) % kh;
            let a = (row / (kw * kh)) % kt;
            let c = row / (kw * kh * kt);
            let base = x.offset + b * x.stride[0] + c * xc;
            let (lo, hi) = valid(wo, sw, e * dw, pw, g.w);
            let (h_lo, h_hi) = valid(g.ho, sh, r * dh, ph, g.h);
            for (tl, plane) in out.chunks_mut(frame).enumerate() {
                let it = (t0 + tl) * st + a * dt;
                if it < pt || it - pt >= g.t {
                    plane.fill(0.0);
                    continue;
                }
                let tbase = base + (it - pt) * xt;
                for (oh, dst) in plane.chunks_mut(wo).enumerate() {
                    if oh < h_lo || oh >= h_hi {
                        dst.fill(0.0);
                        continue;
                    }
                    let rbase = tbase + (oh * sh + r * dh - ph) * xh;
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if lo == hi {
                        continue;
                    }
                    let iw0 = lo * sw + e * dw - pw;
                    if sw == 1 && xw == 1 {
                        let s = rbase + iw0;
                        dst[lo..hi].copy_from_slice(&x.data[s..s + hi - lo]);
                    } else {
                        let step = sw * xw;
                        for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = x.data[rbase + iw0 * xw + i * step];
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: adds `cols` back onto the input positions each tap read, into
/// `gx`, the contiguous `[C, T, H, W]` gradient of one item.
fn col2im(cols: &[f32], g: &Geom, t0: usize, len: usize, gx: &mut [f32]) {
    let (kt, kh, kw) = g.k;
    let (st, sh, sw) = g.cfg.stride;
    let (pt, ph, pw) = g.cfg.padding;
    let (dt, dh, dw) = g.cfg.dilation;
    let (frame, wo, taps) = (g.out_frame(), g.wo, g.taps());
    let l = len * frame;
    // One channel per task: its taps touch only its own plane.
    gx.par_chunks_mut(g.t * g.h * g.w)
        .zip(cols.par_chunks(taps * l))
        .for_each(|(plane, rows)| {
            for (tap, src) in rows.chunks(l).enumerate() {
                let e = tap % kw;
                let r = (tap / kw) % kh;
                let a = tap / (kw * kh);
                debug_assert!(a < kt);
                let (lo, hi) = valid(wo, sw, e * dw, pw, g.w);
                let (h_lo, h_hi) = valid(g.ho, sh, r * dh, ph, g.h);
                if lo == hi {
                    continue;
                }
                for (tl, sf) in src.chunks(frame).enumerate() {
                    let it = (t0 + tl) * st + a * dt;
                    if it < pt || it - pt >= g.t {
                        continue;
                    }
                    let tbase = (it - pt) * g.h * g.w;
                    for oh in h_lo..h_hi {
                        let rbase = tbase + (oh * sh + r * dh - ph) * g.w;
                        let iw0 = lo * sw + e * dw - pw;
                        let sr = &sf[oh * wo + lo..oh * wo + hi];
                        if sw == 1 {
                            let d = &mut plane[rbase + iw0..rbase + iw0 + (hi - lo)];
                            d.iter_mut().zip(sr).for_each(|(d, s)| *d += s);
                        } else {
                            for (i, s) in sr.iter().enumerate() {
                                plane[rbase + iw0 + i * sw] += s;
                            }
                        }
                    }
                }
            }
        });
}

/// A row-major-or-transposed matrix operand: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl Mat<'_> {
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, dst rows `dst_rs` apart; bounds are checked here so
/// that the gemm call cannot read or write outside the slices.
fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: Mat,
    rhs: Mat,
) -> Result<()> {
    let out = Mat {
        data: dst,
        rs: dst_rs,
        cs: 1,
    };
    if !(out.fits(m, n) && lhs.fits(m, k) && rhs.fits(k, n)) {
        candle_core::bail!("conv3d: matmul operands out of bounds ({m}×{k} · {k}×{n})");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return Ok(());
    }
    let threads = candle_core::utils::get_num_threads();
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: `fits` checked above that every index the gemm touches lies inside its slice;
    // `dst` is borrowed mutably and so is disjoint from the operands.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// `y = conv3d(x, w)` with `w` the contiguous `[O, C·K]` kernel.
fn forward(x: Src, w: &[f32], g: &Geom, budget: usize) -> Result<Vec<f32>> {
    let (o, rows, per) = (g.o, g.rows(), g.out_item());
    let mut y = vec![0f32; g.n * o * per];
    let wmat = Mat {
        data: w,
        rs: rows,
        cs: 1,
    };
    let chunk = g.chunk_frames(budget);
    let mut cols = Vec::new();
    for (b, yb) in y.chunks_mut(o * per).enumerate() {
        if g.is_identity_window() {
            if let Some(xb) = x.contiguous_item(g, b) {
                let xm = Mat {
                    data: xb,
                    rs: per,
                    cs: 1,
                };
                matmul(yb, per, false, (o, per, rows), wmat, xm)?;
                continue;
            }
        }
        let mut t0 = 0;
        while t0 < g.to {
            let len = chunk.min(g.to - t0);
            let l = len * g.out_frame();
            cols.resize(rows * l, 0.0);
            im2col(x, g, b, t0, len, &mut cols);
            let cm = Mat {
                data: &cols,
                rs: l,
                cs: 1,
            };
            matmul(
                &mut yb[t0 * g.out_frame()..],
                per,
                false,
                (o, l, rows),
                wmat,
                cm,
            )?;
            t0 += len;
        }
    }
    Ok(y)
}

/// The input's and the kernel's gradient, each when asked for.
type Grads = (Option<Vec<f32>>, Option<Vec<f32>>);

/// Gradients of `conv3d(x, w)` given the contiguous output gradient `gy`: the input's
/// (`[N, C, T, H, W]`) and the kernel's (`[O, C·K]`), each only when asked for.
fn backward(
    x: Src,
    w: &[f32],
    gy: &[f32],
    g: &Geom,
    (want_x, want_w): (bool, bool),
    budget: usize,
) -> Result<Grads> {
    let (o, rows, per) = (g.o, g.rows(), g.out_item());
    let mut gx = want_x.then(|| vec![0f32; g.n * g.in_item()]);
    let mut gw = want_w.then(|| vec![0f32; o * rows]);
    // Wᵀ as a `[C·K, O]` operand.
    let wt = Mat {
        data: w,
        rs: 1,
        cs: rows,
    };
    let chunk = g.chunk_frames(budget);
    let mut cols = Vec::new();
    for b in 0..g.n {
        let gyb = &gy[b * o * per..(b + 1) * o * per];
        let mut gxb = gx
            .as_mut()
            .map(|v| &mut v[b * g.in_item()..(b + 1) * g.in_item()]);
        if g.is_identity_window() {
            if let Some(xb) = x.contiguous_item(g, b) {
                let gym = Mat {
                    data: gyb,
                    rs: per,
                    cs: 1,
                };
                if let Some(gw) = gw.as_mut() {
                    // gW += gY · Xᵀ
                    let xt = Mat {
                        data: xb,
                        rs: 1,
                        cs: per,
                    };
                    matmul(gw, rows, true, (o, rows, per), gym, xt)?;
                }
                if let Some(gxb) = gxb {
                    matmul(gxb, per, false, (rows, per, o), wt, gym)?;
                }
                continue;
            }
        }
        let mut t0 = 0;
        while t0 < g.to {
            let len = chunk.min(g.to - t0);
            let l = len * g.out_frame();
            let gyc = Mat {
                data: &gyb[t0 * g.out_frame()..],
                rs: per,
                cs: 1,
            };
            cols.resize(rows * l, 0.0);
            if let Some(gw) = gw.as_mut() {
                im2col(x, g, b, t0, len, &mut cols);
                let colst = Mat {
                    data: &cols,
                    rs: 1,
                    cs: l,
                };
                matmul(gw, rows, true, (o, rows, l), gyc, colst)?;
            }
            if let Some(gxb) = gxb.as_deref_mut() {
                // The columns are spent; their buffer takes Wᵀ·gY for this chunk.
                matmul(&mut cols, l, false, (rows, l, o), wt, gyc)?;
                col2im(&cols, g, t0, len, gxb);
            }
            t0 += len;
        }
    }
    Ok((gx, gw))
}

/// conv3d on (input, kernel) as one autograd node: see the module comment.
pub(super) struct Conv3dOp {
    pub(super) cfg: Conv3dConfig,
    pub(super) budget: usize,
}

/// Runs `f` on the elements of `t` (made contiguous) as one f32 slice.
pub(super) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(s) = &*s else {
        candle_core::bail!("CPU op: the tensor is not on the CPU");
    };
    f(dense(f32_slice(s, "tensor")?, l)?)
}

pub(super) fn f32_slice<'a>(s: &'a CpuStorage, what: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        other => candle_core::bail!("CPU op: {what} must be f32, got {:?}", other.dtype()),
    }
}

/// The elements of a contiguous layout (the callers make their operands contiguous).
pub(super) fn dense<'a>(data: &'a [f32], layout: &Layout) -> Result<&'a [f32]> {
    if !layout.is_contiguous() {
        candle_core::bail!("CPU op: operand {layout:?} is not contiguous");
    }
    let start = layout.start_offset();
    data.get(start..start + layout.shape().elem_count())
        .ok_or_else(|| candle_core::Error::Msg("CPU op: storage shorter than its layout".into()))
}

impl CustomOp2 for Conv3dOp {
    fn name(&self) -> &'static str {
        "conv3d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), &self.cfg)?;
        let x = Src::new(f32_slice(s1, "input")?, l1)?;
        let w = dense(f32_slice(s2, "kernel")?, l2)?;
        let y = forward(x, w, &g, self.budget)?;
        Ok((
            CpuStorage::F32(y),
            Shape::from((g.n, g.o, g.to, g.ho, g.wo)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Data fed to the stem needs no gradient, and its col2im costs as much as the forward.
        let want = (x.track_op(), kernel.track_op());
        if want == (false, false) {
            return Ok((None, None));
        }
        let g = Geom::new(x.dims(), kernel.dims(), &self.cfg)?;
        let kernel_c = kernel.contiguous()?;
        let grad = grad.contiguous()?;
        let (gx, gw) = {
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = kernel_c.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(ws), Storage::Cpu(gs)) = (&*xs, &*ws, &*gs) else {
                candle_core::bail!("conv3d op: backward on a non-CPU tensor");
            };
            let xsrc = Src::new(f32_slice(xs, "input")?, xl)?;
            let w = dense(f32_slice(ws, "kernel")?, wl)?;
            let gy = dense(f32_slice(gs, "output gradient")?, gl)?;
            backward(xsrc, w, gy, &g, want, self.budget)?
        };
        let gx = gx
            .map(|v| Tensor::from_vec(v, x.dims(), x.device()))
            .transpose()?;
        let gw = gw
            .map(|v| Tensor::from_vec(v, kernel.dims(), kernel.device()))
            .transpose()?;
        Ok((gx, gw))
    }
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn valid_ranges_clip_to_the_input() {
        // w = 5, pad 1, kernel offset 0, stride 1: output 0 reads −1 (padding).
        assert_eq!(valid(5, 1, 0, 1, 5), (1, 5));
        // offset 2: output 4 reads 5 (padding).
        assert_eq!(valid(5, 1, 2, 1, 5), (0, 4));
        // stride 2, pad 3, offset 0: outputs 0, 1 read −3, −1.
        assert_eq!(valid(4, 2, 0, 3, 5), (2, 4));
        // Nothing valid.
        assert_eq!(valid(2, 1, 0, 9, 3), (2, 2));
    }
}
