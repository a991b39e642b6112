//! conv3d as one batched conv2d per temporal tap, the path CUDA takes: candle's CUDA conv2d is
//! one im2col kernel and one cuBLAS gemm. Its backward is written out here rather than left to
//! candle's conv2d autograd, whose input gradient is a direct (non-gemm) transposed-conv kernel:
//! the input gradient is itself a conv2d (of the zero-interleaved output gradient with the
//! flipped, transposed kernel) and the kernel gradient is candle's gemm form. The forward is
//! computed outside the graph and `Conv3dGrad` attaches this backward to it.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::{out_len, take_dim, Conv3dConfig};

#[derive(Debug, Clone, Copy)]
pub(super) struct Geom {
    n: usize,
    c: usize,
    o: usize,
    kt: usize,
    kh: usize,
    kw: usize,
    t_out: usize,
    h_out: usize,
    w_out: usize,
    cfg: Conv3dConfig,
}

impl Geom {
    /// None when candle's conv2d cannot express the spatial part (unequal strides or
    /// dilations); errors name impossible shapes as the other paths do.
    pub(super) fn new(x: &[usize], k: &[usize], cfg: &Conv3dConfig) -> Result<Option<Geom>> {
        let (&[n, c, t, h, w], &[o, kc, kt, kh, kw]) = (x, k) else {
            candle_core::bail!("conv3d: expected 5-D input and kernel, got {x:?} and {k:?}");
        };
        if kc != c {
            candle_core::bail!("conv3d: input has {c} channels, kernel expects {kc}");
        }
        let (st, sh, sw) = cfg.stride;
        let (pt, ph, pw) = cfg.padding;
        let (dt, dh, dw) = cfg.dilation;
        let t_out = out_len(t, kt, st, pt, dt)?;
        let h_out = out_len(h, kh, sh, ph, dh)?;
        let w_out = out_len(w, kw, sw, pw, dw)?;
        if sh != sw || dh != dw {
            return Ok(None);
        }
        Ok(Some(Geom {
            n,
            c,
            o,
            kt,
            kh,
            kw,
            t_out,
            h_out,
            w_out,
            cfg: *cfg,
        }))
    }

    /// Spatial padding left to conv2d (equal on both axes), else 0 and padded by hand.
    fn pad2(&self) -> usize {
        let (_, ph, pw) = self.cfg.padding;
        if ph == pw {
            ph
        } else {
            0
        }
    }

    /// x zero-padded in time (and in space when conv2d cannot pad it), as [N, T', C, H', W'].
    fn padded_frames(&self, x: &Tensor) -> Result<Tensor> {
        let (pt, ph, pw) = self.cfg.padding;
        let mut x = x.pad_with_zeros(2, pt, pt)?;
        if ph != pw {
            x = x.pad_with_zeros(3, ph, ph)?.pad_with_zeros(4, pw, pw)?;
        }
        x.permute((0, 2, 1, 3, 4))
    }

    /// Temporal tap `a`'s frames of the padded input as a conv2d batch [N·T_out, C, H', W'].
    fn tap_frames(&self, xt: &Tensor, a: usize) -> Result<Tensor> {
        let (st, _, _) = self.cfg.stride;
        let (dt, _, _) = self.cfg.dilation;
        let (hp, wp) = (xt.dim(3)?, xt.dim(4)?);
        take_dim(xt, 1, a * dt, st, self.t_out)?
            .contiguous()?
            .reshape((self.n * self.t_out, self.c, hp, wp))
    }

    fn tap_kernel(kernel: &Tensor, a: usize) -> Result<Tensor> {
        kernel.narrow(2, a, 1)?.squeeze(2)?.contiguous()
    }

    fn forward(&self, x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
        let (_, s, _) = self.cfg.stride;
        let (_, d, _) = self.cfg.dilation;
        let xt = self.padded_frames(x)?;
        let mut acc: Option<Tensor> = None;
        for a in 0..self.kt {
            let y = self.tap_frames(&xt, a)?.conv2d(
                &Self::tap_kernel(kernel, a)?,
                self.pad2(),
                s,
                d,
                1,
            )?;
            acc = Some(match acc {
                None => y,
                Some(sum) => (sum + y)?,
            });
        }
        let y = acc.ok_or_else(|| candle_core::Error::Msg("conv3d: kernel has no taps".into()))?;
        y.reshape((self.n, self.t_out, self.o, self.h_out, self.w_out))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()
    }

    /// Gradients of x and the kernel from the output gradient `gy` [N, O, T_out, H_out, W_out].
    fn backward(&self, x: &Tensor, kernel: &Tensor, gy: &Tensor) -> Result<(Tensor, Tensor)> {
        let (st, s, _) = self.cfg.stride;
        let (dt, d, _) = self.cfg.dilation;
        let (pt, ph, pw) = self.cfg.padding;
        let p = self.pad2();
        let (n, t_out) = (self.n, self.t_out);
        let b = n * t_out;
        let xt = self.padded_frames(x)?;
        let (tp, hp, wp) = (xt.dim(1)?, xt.dim(3)?, xt.dim(4)?);
        let g = gy
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?
            .reshape((b, self.o, self.h_out, self.w_out))?;
        // The output gradient spread back onto the stride-1 grid (zeros between), so that the
        // input gradient is a stride-1 conv2d.
        let g_up = if s == 1 {
            g.clone()
        } else {
            let (ho, wo) = (self.h_out, self.w_out);
            g.reshape((b, self.o, ho, 1, wo, 1))?
                .pad_with_zeros(3, 0, s - 1)?
                .pad_with_zeros(5, 0, s - 1)?
                .reshape((b, self.o, ho * s, wo * s))?
                .narrow(2, 0, (ho - 1) * s + 1)?
                .narrow(3, 0, (wo - 1) * s + 1)?
                .contiguous()?
        };
        let span_h = d * (self.kh - 1);
        let span_w = d * (self.kw - 1);
        // Full-correlation padding; the conv2d pads both axes alike, so unequal spans (or
        // padding beyond the span) pad by hand.
        let (qh, qw) = (span_h as isize - p as isize, span_w as isize - p as isize);
        if qh < 0 || qw < 0 {
            candle_core::bail!("conv3d backward: padding {p} exceeds the kernel span");
        }
        let (qh, qw) = (qh as usize, qw as usize);
        let (g_up, q) = if qh == qw {
            (g_up, qh)
        } else {
            (
                g_up.pad_with_zeros(2, qh, qh)?.pad_with_zeros(3, qw, qw)?,
                0,
            )
        };
        let flip = |k: &Tensor, dim: usize| -> Result<Tensor> {
            let len = k.dim(dim)?;
            let idx: Vec<u32> = (0..len as u32).rev().collect();
            k.index_select(&Tensor::new(idx.as_slice(), k.device())?, dim)
        };
        let frame_len = (t_out - 1) * st + 1;
        let mut gx_t: Option<Tensor> = None;
        let mut gk_taps = Vec::with_capacity(self.kt);
        for a in 0..self.kt {
            let ka = Self::tap_kernel(kernel, a)?;
            let kf = flip(&flip(&ka, 2)?, 3)?.transpose(0, 1)?.contiguous()?;
            // [B, C, rows, cols] with rows = H' - the stride remainder; zero rows complete it.
            let gxa = g_up.conv2d(&kf, q, 1, d, 1)?;
            let (rows, cols) = (gxa.dim(2)?, gxa.dim(3)?);
            let gxa = gxa
                .pad_with_zeros(2, 0, hp - rows)?
                .pad_with_zeros(3, 0, wp - cols)?
                .reshape((n, t_out, self.c, hp, wp))?;
            // Back to the padded time axis: frame i of this tap came from a·dt + i·st.
            let spread = if st == 1 {
                gxa
            } else {
                gxa.reshape((n, t_out, 1, self.c, hp, wp))?
                    .pad_with_zeros(2, 0, st - 1)?
                    .reshape((n, t_out * st, self.c, hp, wp))?
                    .narrow(1, 0, frame_len)?
            };
            let placed = spread.pad_with_zeros(1, a * dt, tp - a * dt - frame_len)?;
            gx_t = Some(match gx_t {
                None => placed,
                Some(sum) => (sum + placed)?,
            });
            // Kernel gradient as candle's conv2d backward forms it: the input's channels as
            // the batch, the output gradient as the kernel.
            let xa = self.tap_frames(&xt, a)?;
            let gka = xa
                .transpose(0, 1)?
                .conv2d(&g.transpose(0, 1)?, p, d, s, 1)?
                .transpose(0, 1)?
                .narrow(2, 0, self.kh)?
                .narrow(3, 0, self.kw)?;
            gk_taps.push(gka.unsqueeze(2)?);
        }
        let gx_t =
            gx_t.ok_or_else(|| candle_core::Error::Msg("conv3d: kernel has no taps".into()))?;
        let mut gx = gx_t.narrow(1, pt, tp - 2 * pt)?;
        if ph != pw {
            gx = gx.narrow(3, ph, hp - 2 * ph)?.narrow(4, pw, wp - 2 * pw)?;
        }
        let gx = gx.permute((0, 2, 1, 3, 4))?.contiguous()?;
        let gk = Tensor::cat(&gk_taps, 2)?.contiguous()?;
        Ok((gx, gk))
    }
}

/// Passes a precomputed conv3d output through (arg 3) and gives arg 1 (x) and arg 2 (the
/// kernel) their gradients.
struct Conv3dGrad(Geom);

fn clone_whole<S: BackendStorage>(s: &S, l: &Layout) -> Result<(S, Shape)> {
    // The result was made contiguous from offset 0 by `forward`; a clone is exactly it.
    if !l.is_contiguous() || l.start_offset() != 0 {
        candle_core::bail!("conv3d: internal result is not a fresh contiguous tensor");
    }
    Ok((s.try_clone(l)?, l.shape().clone()))
}

impl CustomOp3 for Conv3dGrad {
    fn name(&self) -> &'static str {
        "conv3d-per-tap-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        clone_whole(s3, l3)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        clone_whole(s3, l3)
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gk) = self
            .0
            .backward(&x.detach(), &kernel.detach(), &grad.detach())?;
        Ok((Some(gx), Some(gk), None))
    }
}

/// conv3d through per-tap conv2d with the hand-written backward; None when the geometry is
/// outside what conv2d expresses (the caller falls back). `autograd` = candle's own conv2d
/// backward instead (kept for A/B timing).
pub(super) fn conv3d(
    x: &Tensor,
    kernel: &Tensor,
    cfg: &Conv3dConfig,
    autograd: bool,
) -> Result<Option<Tensor>> {
    let Some(geom) = Geom::new(x.dims(), kernel.dims(), cfg)? else {
        return Ok(None);
    };
    // The hand-written input gradient pads the output gradient by span − padding.
    let (_, ph, pw) = cfg.padding;
    let (_, dh, dw) = cfg.dilation;
    let (_, _, _, kh, kw) = kernel.dims5()?;
    let spans_cover = ph != pw || (ph <= dh * (kh - 1) && pw <= dw * (kw - 1));
    if autograd || !spans_cover || !(x.track_op() || kernel.track_op()) {
        return geom.forward(x, kernel).map(Some);
    }
    let y = geom.forward(&x.detach(), &kernel.detach())?;
    x.apply_op3(kernel, &y, Conv3dGrad(geom)).map(Some)
}
