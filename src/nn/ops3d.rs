//! 3-D convolution and pooling built from candle's own 2-D ops, so autograd works through them
//! (candle has no conv3d). Layout `[N, C, T, H, W]`, as PyTorch's `nn.Conv3d` /
//! `nn.MaxPool3d` (which `mmaction/models/backbones/resnet3d.py` and pyskl use).
//!
//! conv3d: on the CPU one custom op (im2col + gemm, `ops3d/cpu.rs`); on CUDA, for each
//! temporal tap k the frames `t·st + k·dt` (after zero padding in time) go through one batched
//! conv2d with the kernel's k-th slice, and the taps are summed; elsewhere im2col from tensor
//! ops.
//!
//! conv_transpose3d_temporal: `nn.ConvTranspose3d` with a `kT×1×1` kernel (RGBPoseConv3D's
//! rgb→pose lateral), as one channel matmul for all taps followed by a strided shift-and-add.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod conv2d_path;
mod cpu;
mod norm;
mod pool;

pub(crate) use norm::{add_relu, batch_norm_train};

/// Kernel / stride / padding / dilation as (time, height, width).
pub type Triple = (usize, usize, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dConfig {
    pub stride: Triple,
    pub padding: Triple,
    pub dilation: Triple,
}

impl Default for Conv3dConfig {
    fn default() -> Self {
        Conv3dConfig {
            stride: (1, 1, 1),
            padding: (0, 0, 0),
            dilation: (1, 1, 1),
        }
    }
}

fn out_len(len: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Result<usize> {
    let span = dil * (k - 1) + 1;
    if len + 2 * pad < span || stride == 0 {
        candle_core::bail!(
            "3-D op: input length {len} (+2×{pad} padding) is shorter than the kernel span {span}"
        );
    }
    Ok((len + 2 * pad - span) / stride + 1)
}

/// Elements of the im2col matrix built at once; longer clips are convolved in chunks of
/// output frames so that a 48×64² stem (36·49 rows) never materialises gigabytes.
const COLS_BUDGET: usize = 1 << 22;

/// `nn.Conv3d(bias=False)` forward: x `[N, C, T, H, W]`, kernel `[O, C, kt, kh, kw]`, any
/// stride, padding and dilation.
///
/// im2col over all three kernel axes followed by one matmul per chunk of output frames:
/// each kernel tap is a strided view of the zero-padded input, the taps are stacked into the
/// `C·kt·kh·kw` rows the kernel flattens to, and `[O, C·K] × [C·K, T·H·W]` is the conv. A
/// 1×1×1 kernel needs no copy at all. (candle's own CPU conv2d goes through a tiled im2col
/// that was 4–5× slower than this on these shapes.)
///
/// On the CPU this is one custom autograd op (`cpu::Conv3dOp`, f32; f16 and bf16 convert
/// around it, as candle's CPU matmul has no bf16) that keeps no column matrix for backward;
/// other devices and f64 compose candle ops as below.
pub fn conv3d(x: &Tensor, kernel: &Tensor, cfg: &Conv3dConfig) -> Result<Tensor> {
    let half = |d: DType| matches!(d, DType::F16 | DType::BF16);
    if let Some(dt) = autocast_dtype() {
        if !x.device().is_cpu() && x.dtype() == DType::F32 && kernel.dtype() == DType::F32 {
            // Mixed precision: the convolution's products in half precision, everything
            // around it (batch-norm statistics, residual sums, the loss) in f32, as
            // `torch.autocast` does for conv layers.
            return conv3d(&x.to_dtype(dt)?, &kernel.to_dtype(dt)?, cfg)?.to_dtype(DType::F32);
        }
    }
    if x.device().is_cuda() && cuda_conv3d_mode() != CudaConv3d::Im2col {
        return conv3d_by_conv2d(x, kernel, cfg);
    }
    match (x.device().is_cpu(), x.dtype(), kernel.dtype()) {
        (true, DType::F32, DType::F32) => conv3d_op(x, kernel, cfg, COLS_BUDGET),
        (true, a, b) if a == b && half(a) => conv3d_op(
            &x.to_dtype(DType::F32)?,
            &kernel.to_dtype(DType::F32)?,
            cfg,
            COLS_BUDGET,
        )?
        .to_dtype(a),
        _ => conv3d_tensor_ops(x, kernel, cfg, COLS_BUDGET),
    }
}

thread_local! {
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// Mixed precision for the convolutions run on this thread while the guard lives: f32
/// inputs on a GPU are convolved in `dtype` (bf16 or f16) and the result is returned in f32.
/// The CPU is unaffected (its conv op is f32 throughout).
pub struct Autocast {
    prev: Option<DType>,
}

pub fn autocast(dtype: Option<DType>) -> Autocast {
    let prev = AUTOCAST.with(|c| c.replace(dtype));
    Autocast { prev }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        AUTOCAST.with(|c| c.set(self.prev));
    }
}

fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(Cell::get)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CudaConv3d {
    /// Per-tap conv2d with the gemm-based backward (the default).
    Conv2d,
    /// Per-tap conv2d with candle's conv2d backward.
    Conv2dAutograd,
    /// The tensor-op im2col path.
    Im2col,
}

/// `MGSCOPE_CONV3D=im2col|conv2d-autograd` picks another CUDA conv3d path, for A/B timing.
fn cuda_conv3d_mode() -> CudaConv3d {
    static MODE: std::sync::OnceLock<CudaConv3d> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("MGSCOPE_CONV3D").as_deref() {
        Ok("im2col") => CudaConv3d::Im2col,
        Ok("conv2d-autograd") => CudaConv3d::Conv2dAutograd,
        _ => CudaConv3d::Conv2d,
    })
}

/// conv3d as `kt` batched conv2d calls (one per temporal tap) whose outputs are summed, with
/// a gemm-based backward (`ops3d/conv2d_path.rs`); geometries conv2d cannot express go through
/// the tensor-op path.
fn conv3d_by_conv2d(x: &Tensor, kernel: &Tensor, cfg: &Conv3dConfig) -> Result<Tensor> {
    let autograd = cuda_conv3d_mode() == CudaConv3d::Conv2dAutograd;
    match conv2d_path::conv3d(x, kernel, cfg, autograd)? {
        Some(y) => Ok(y),
        None => conv3d_tensor_ops(x, kernel, cfg, COLS_BUDGET),
    }
}

fn conv3d_op(x: &Tensor, kernel: &Tensor, cfg: &Conv3dConfig, budget: usize) -> Result<Tensor> {
    // Validate before the op so shape errors read the same as on the tensor-op path.
    cpu::Geom::new(x.dims(), kernel.dims(), cfg)?;
    x.apply_op2(&kernel.contiguous()?, cpu::Conv3dOp { cfg: *cfg, budget })
}

/// conv3d from candle tensor ops (any device and dtype); autograd keeps its im2col matrices.
fn conv3d_tensor_ops(
    x: &Tensor,
    kernel: &Tensor,
    cfg: &Conv3dConfig,
    budget: usize,
) -> Result<Tensor> {
    let (n, c, t, h, w) = x.dims5()?;
    let (o, kc, kt, kh, kw) = kernel.dims5()?;
    if kc != c {
        candle_core::bail!("conv3d: input has {c} channels, kernel expects {kc}");
    }
    let (st, sh, sw) = cfg.stride;
    let (pt, ph, pw) = cfg.padding;
    let (dt, dh, dw) = cfg.dilation;
    let t_out = out_len(t, kt, st, pt, dt)?;
    let h_out = out_len(h, kh, sh, ph, dh)?;
    let w_out = out_len(w, kw, sw, pw, dw)?;
    let taps = kt * kh * kw;
    if taps == 1 && (pt, ph, pw) == (0, 0, 0) {
        // Pointwise: a strided view and one batched matmul, no im2col.
        let xs = take_dim(
            &take_dim(&take_dim(x, 2, 0, st, t_out)?, 3, 0, sh, h_out)?,
            4,
            0,
            sw,
            w_out,
        )?;
        let cols = xs.contiguous()?.reshape((n, c, t_out * h_out * w_out))?;
        let y = kernel.reshape((o, c))?.broadcast_matmul(&cols)?;
        return y.reshape((n, o, t_out, h_out, w_out));
    }
    // Rows ordered (tap, channel) so that each batch item's taps concatenate along dim 0
    // (candle's contiguous fast path); the kernel is permuted once to match.
    let wmat = kernel
        .permute((0, 2, 3, 4, 1))?
        .contiguous()?
        .reshape((o, taps * c))?;
    let x = x
        .pad_with_zeros(2, pt, pt)?
        .pad_with_zeros(3, ph, ph)?
        .pad_with_zeros(4, pw, pw)?;
    let per_frame = c * taps * h_out * w_out;
    if n > 1 && n * t_out * per_frame <= budget {
        // The whole batch fits one im2col: no per-item `get`, whose backward would scatter
        // each item's gradient into a zero tensor of the full batch (N× the traffic in
        // training).
        let cols = window_taps(
            &x,
            2,
            0,
            t_out,
            (kt, kh, kw),
            cfg.stride,
            cfg.dilation,
            (h_out, w_out),
        )?;
        let cols = Tensor::cat(&cols, 1)?.reshape((n, taps * c, t_out * h_out * w_out))?;
        return wmat
            .broadcast_matmul(&cols)?
            .reshape((n, o, t_out, h_out, w_out));
    }
    let chunk = (budget / per_frame.max(1)).clamp(1, t_out);
    let mut items = Vec::with_capacity(n);
    for b in 0..n {
        let xb = x.get(b)?;
        let mut outs = Vec::with_capacity(t_out.div_ceil(chunk));
        let mut t0 = 0;
        while t0 < t_out {
            let len = chunk.min(t_out - t0);
            let cols = window_taps(
                &xb,
                1,
                t0,
                len,
                (kt, kh, kw),
                cfg.stride,
                cfg.dilation,
                (h_out, w_out),
            )?;
            let cols = Tensor::cat(&cols, 0)?.reshape((taps * c, len * h_out * w_out))?;
            outs.push(wmat.matmul(&cols)?.reshape((o, len, h_out, w_out))?);
            t0 += len;
        }
        items.push(if outs.len() == 1 {
            outs.swap_remove(0)
        } else {
            Tensor::cat(&outs, 1)?
        });
    }
    Tensor::stack(&items, 0)
}

/// The kernel taps of a 3-D window op as strided views of `x`, whose axes `d, d+1, d+2` are
/// (time, height, width): for tap (a, r, e) the `len` frames from `t0·st + a·dt`, and the
/// `h_out × w_out` positions from `(r·dh, e·dw)`, in (a, r, e)-major order.
#[allow(clippy::too_many_arguments)]
fn window_taps(
    x: &Tensor,
    d: usize,
    t0: usize,
    len: usize,
    kernel: Triple,
    stride: Triple,
    dilation: Triple,
    (h_out, w_out): (usize, usize),
) -> Result<Vec<Tensor>> {
    let (kt, kh, kw) = kernel;
    let (st, sh, sw) = stride;
    let (dt, dh, dw) = dilation;
    let mut taps = Vec::with_capacity(kt * kh * kw);
    for a in 0..kt {
        let xt = take_dim(x, d, t0 * st + a * dt, st, len)?;
        for r in 0..kh {
            let xh = take_dim(&xt, d + 1, r * dh, sh, h_out)?;
            for e in 0..kw {
                taps.push(take_dim(&xh, d + 2, e * dw, sw, w_out)?);
            }
        }
    }
    Ok(taps)
}

/// `nn.MaxPool3d(kernel, stride, padding)` forward (padding counts as −∞, as PyTorch). On
/// the CPU in f32 one custom op (`pool::MaxPool3dOp`) that keeps no per-tap maxima for
/// backward.
pub fn max_pool3d(x: &Tensor, kernel: Triple, stride: Triple, padding: Triple) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.dims5()?;
        return x.contiguous()?.apply_op1(pool::MaxPool3dOp {
            kernel,
            stride,
            padding,
        });
    }
    max_pool3d_tensor_ops(x, kernel, stride, padding)
}

fn max_pool3d_tensor_ops(
    x: &Tensor,
    kernel: Triple,
    stride: Triple,
    padding: Triple,
) -> Result<Tensor> {
    let (n, _, t, h, w) = x.dims5()?;
    let (kt, kh, kw) = kernel;
    let (st, sh, sw) = stride;
    let (pt, ph, pw) = padding;
    let t_out = out_len(t, kt, st, pt, 1)?;
    let h_out = out_len(h, kh, sh, ph, 1)?;
    let w_out = out_len(w, kw, sw, pw, 1)?;
    let neg = |x: &Tensor, dim: usize, p: usize| -> Result<Tensor> {
        if p == 0 {
            return Ok(x.clone());
        }
        let mut shape = x.dims().to_vec();
        shape[dim] = p;
        let pad = Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())?;
        Tensor::cat(&[&pad, x, &pad], dim)
    };
    let x = neg(&neg(&neg(x, 2, pt)?, 3, ph)?, 4, pw)?;
    let mut out: Option<Tensor> = None;
    for xw in window_taps(&x, 2, 0, t_out, kernel, stride, (1, 1, 1), (h_out, w_out))? {
        out = Some(match out {
            None => xw,
            Some(m) => m.maximum(&xw)?,
        });
    }
    let y = out.ok_or_else(|| candle_core::Error::Msg("max_pool3d: empty kernel".into()))?;
    debug_assert_eq!(y.dim(0)?, n);
    Ok(y)
}

fn take_dim(x: &Tensor, dim: usize, start: usize, step: usize, n: usize) -> Result<Tensor> {
    if step == 1 {
        return x.narrow(dim, start, n);
    }
    let idx: Vec<u32> = (0..n).map(|i| (start + i * step) as u32).collect();
    let idx = Tensor::new(idx.as_slice(), x.device())?;
    // candle's index_select reads only contiguous tensors (a narrowed view is not).
    if x.is_contiguous() {
        x.index_select(&idx, dim)
    } else {
        x.contiguous()?.index_select(&idx, dim)
    }
}

/// `nn.AdaptiveAvgPool3d(1)` followed by flattening: `[N, C, T, H, W] → [N, C]` (I3DHead).
pub fn global_avg_pool3d(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}

/// Temporal hyper-parameters of a `kT×1×1` transposed convolution (`nn.ConvTranspose3d` with
/// spatial kernel 1, stride 1, padding 0, dilation 1, groups 1, bias=False).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose3dConfig {
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
}

impl ConvTranspose3dConfig {
    /// The output length PyTorch gives for input length `t` (before `output_size` is applied).
    pub fn out_len(&self, t: usize, kt: usize) -> Result<usize> {
        let full = (t.max(1) - 1) * self.stride + kt + self.output_padding;
        if t == 0 || full <= 2 * self.padding {
            candle_core::bail!("conv_transpose3d: empty output for length {t}, {self:?}");
        }
        Ok(full - 2 * self.padding)
    }

    /// The `output_padding` PyTorch derives from `output_size` (`_ConvTransposeNd._output_padding`):
    /// the target must lie in `[min, min + stride)` where `min` is the length with no output
    /// padding. `DeConvModule` asks for `stride · t`.
    pub fn output_padding_for(
        t: usize,
        kt: usize,
        stride: usize,
        padding: usize,
        target: usize,
    ) -> Result<usize> {
        let min = ConvTranspose3dConfig {
            stride,
            padding,
            output_padding: 0,
        }
        .out_len(t, kt)?;
        if target < min || target >= min + stride {
            candle_core::bail!(
                "conv_transpose3d: requested length {target} is outside [{min}, {})",
                min + stride
            );
        }
        Ok(target - min)
    }
}

/// `nn.ConvTranspose3d(bias=False)` forward for kernels that are 1×1 in space:
/// x `[N, Cin, T, H, W]`, weight `[Cin, Cout, kT, 1, 1]` (PyTorch's transposed layout).
/// Output `[N, Cout, T', H, W]` with `T' = (T−1)·stride − 2·padding + kT + output_padding`.
///
/// Definition: `y[t·s + k − p] += Σ_i x[i, t] · w[i, o, k]`. All taps are computed by one matmul
/// over channels (no zero-inserted input, so no wasted multiplies); each tap's frames are then
/// spread `s` apart and shifted by `k`, summed, and the window `[p, p + T')` is kept. Only
/// candle ops are used, so autograd flows to `x` and `w`.
pub fn conv_transpose3d_temporal(
    x: &Tensor,
    weight: &Tensor,
    cfg: &ConvTranspose3dConfig,
) -> Result<Tensor> {
    let (n, cin, t, h, w) = x.dims5()?;
    let (wc, cout, kt, kh, kw) = weight.dims5()?;
    if wc != cin {
        candle_core::bail!("conv_transpose3d: input has {cin} channels, weight expects {wc}");
    }
    if kh != 1 || kw != 1 {
        candle_core::bail!(
            "conv_transpose3d: only 1×1 spatial kernels are supported, got {kh}×{kw}"
        );
    }
    let s = cfg.stride;
    if s == 0 || cfg.output_padding >= s {
        // PyTorch's own constraint: output_padding must be smaller than the stride.
        candle_core::bail!("conv_transpose3d: need output_padding < stride, got {cfg:?}");
    }
    let t_out = cfg.out_len(t, kt)?;
    // [Cin, Cout·kT]ᵀ · [N, Cin, T·H·W] → [N, Cout·kT, T·H·W]; row index o·kT + k.
    let wm = weight.reshape((cin, cout * kt))?.t()?.contiguous()?;
    let xm = x.reshape((n, cin, t * h * w))?;
    let z = wm.broadcast_left(n)?.matmul(&xm.contiguous()?)?;
    let z = z.reshape((n, cout, kt, t, h, w))?;
    // Frames spread `s` apart: z_k at t·s, zeros between → length (T−1)·s + 1.
    let spread_len = (t - 1) * s + 1;
    // Uncropped output: positions t·s + k for k < kT, plus output_padding zeros at the end.
    let full_len = spread_len + kt - 1 + cfg.output_padding;
    let mut acc: Option<Tensor> = None;
    for k in 0..kt {
        let zk = z.narrow(2, k, 1)?.squeeze(2)?; // [N, Cout, T, H, W]
        let spread = if s == 1 {
            zk
        } else {
            let zeros = Tensor::zeros((n, cout, t, s - 1, h, w), zk.dtype(), zk.device())?;
            Tensor::cat(&[&zk.unsqueeze(3)?, &zeros], 3)?
                .reshape((n, cout, t * s, h, w))?
                .narrow(2, 0, spread_len)?
        };
        let placed = spread.pad_with_zeros(2, k, full_len - spread_len - k)?;
        acc = Some(match acc {
            None => placed,
            Some(a) => (a + placed)?,
        });
    }
    let y = acc.ok_or_else(|| candle_core::Error::Msg("conv_transpose3d: empty kernel".into()))?;
    // Output index j is uncropped position j + padding.
    y.narrow(2, cfg.padding, t_out)
}

/// The one generator behind every drop-path and dropout mask of a model, so that training
/// draws are a function of the seed the trainer sets per iteration (an exact resume) rather
/// than of a process-wide generator.
#[derive(Clone)]
pub struct MaskRng(Arc<Mutex<ChaCha8Rng>>);

impl MaskRng {
    pub(crate) fn new() -> Self {
        MaskRng(Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(0))))
    }

    pub fn reseed(&self, seed: u64) -> Result<()> {
        *self.lock()? = ChaCha8Rng::seed_from_u64(seed);
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ChaCha8Rng>> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("mask generator poisoned".into()))
    }

    /// `n` values: 0 with probability `p`, else 1/(1−p).
    pub(crate) fn mask(&self, n: usize, p: f64) -> Result<Vec<f32>> {
        let keep = (1.0 / (1.0 - p)) as f32;
        let mut rng = self.lock()?;
        Ok((0..n)
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    /// Direct 7-loop convolution in f64, the definition of `nn.Conv3d`.
    #[allow(clippy::too_many_arguments)]
    fn naive_conv3d(
        x: &[f32],
        (n, c, t, h, w): (usize, usize, usize, usize, usize),
        k: &[f32],
        (o, kt, kh, kw): (usize, usize, usize, usize),
        cfg: &Conv3dConfig,
    ) -> (Vec<f64>, [usize; 5]) {
        let (st, sh, sw) = cfg.stride;
        let (pt, ph, pw) = cfg.padding;
        let (dt, dh, dw) = cfg.dilation;
        let to = (t + 2 * pt - dt * (kt - 1) - 1) / st + 1;
        let ho = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
        let wo = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
        let mut y = vec![0f64; n * o * to * ho * wo];
        for b in 0..n {
            for oc in 0..o {
                for ot in 0..to {
                    for oh in 0..ho {
                        for ow in 0..wo {
                            let mut acc = 0f64;
                            for ic in 0..c {
                                for a in 0..kt {
                                    for bb in 0..kh {
                                        for cc in 0..kw {
                                            let it = (ot * st + a * dt) as isize - pt as isize;
                                            let ih = (oh * sh + bb * dh) as isize - ph as isize;
                                            let iw = (ow * sw + cc * dw) as isize - pw as isize;
                                            if it < 0
                                                || ih < 0
                                                || iw < 0
                                                || it >= t as isize
                                                || ih >= h as isize
                                                || iw >= w as isize
                                            {
                                                continue;
                                            }
                                            let xi = (((b * c + ic) * t + it as usize) * h
                                                + ih as usize)
                                                * w
                                                + iw as usize;
                                            let ki = (((oc * c + ic) * kt + a) * kh + bb) * kw + cc;
                                            acc += f64::from(x[xi]) * f64::from(k[ki]);
                                        }
                                    }
                                }
                            }
                            y[(((b * o + oc) * to + ot) * ho + oh) * wo + ow] = acc;
                        }
                    }
                }
            }
        }
        (y, [n, o, to, ho, wo])
    }

    #[test]
    fn conv3d_matches_the_definition() {
        let dev = Device::Cpu;
        let cases = [
            // (x dims, kernel (o, kt, kh, kw), cfg): PoseC3D stem, bottleneck 3×1×1, strided,
            // dilated, unequal spatial padding.
            (
                (2, 3, 5, 9, 9),
                (4, 1, 7, 7),
                Conv3dConfig {
                    stride: (1, 1, 1),
                    padding: (0, 3, 3),
                    dilation: (1, 1, 1),
                },
            ),
            (
                (1, 4, 6, 8, 8),
                (3, 3, 1, 1),
                Conv3dConfig {
                    stride: (1, 1, 1),
                    padding: (1, 0, 0),
                    dilation: (1, 1, 1),
                },
            ),
            (
                (1, 2, 7, 9, 9),
                (2, 3, 3, 3),
                Conv3dConfig {
                    stride: (2, 2, 2),
                    padding: (1, 1, 1),
                    dilation: (1, 1, 1),
                },
            ),
            (
                (1, 2, 9, 8, 8),
                (2, 3, 3, 3),
                Conv3dConfig {
                    stride: (1, 1, 1),
                    padding: (2, 2, 2),
                    dilation: (2, 2, 2),
                },
            ),
            (
                (1, 2, 4, 6, 7),
                (2, 1, 3, 3),
                Conv3dConfig {
                    stride: (1, 1, 1),
                    padding: (0, 1, 2),
                    dilation: (1, 1, 1),
                },
            ),
        ];
        for (xd, (o, kt, kh, kw), cfg) in cases {
            let (n, c, t, h, w) = xd;
            let xv = lcg(n * c * t * h * w, 1);
            let kv = lcg(o * c * kt * kh * kw, 2);
            let x = Tensor::from_vec(xv.clone(), (n, c, t, h, w), &dev).expect("x");
            let k = Tensor::from_vec(kv.clone(), (o, c, kt, kh, kw), &dev).expect("k");
            let (want, shape) = naive_conv3d(&xv, xd, &kv, (o, kt, kh, kw), &cfg);
            // Whole, and in chunks of one output frame (a tiny im2col budget). All three
            // implementations: the custom op, the tensor-op path, and the per-tap conv2d
            // path CUDA takes (run here on candle's CPU conv2d).
            for (budget, op) in [
                (COLS_BUDGET, 0),
                (1, 0),
                (COLS_BUDGET, 1),
                (1, 1),
                (COLS_BUDGET, 2),
            ] {
                let y = match op {
                    0 => conv3d_op(&x, &k, &cfg, budget),
                    1 => conv3d_tensor_ops(&x, &k, &cfg, budget),
                    _ => conv3d_by_conv2d(&x, &k, &cfg),
                }
                .expect("conv3d");
                assert_eq!(y.dims(), shape, "{cfg:?}");
                let got = y
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("vec");
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (f64::from(*a) - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err < 1e-4,
                    "{cfg:?} budget {budget} op {op}: max abs error {err}"
                );
            }
        }
        // A strided view (not contiguous) as input gives the same as its copy.
        let base = Tensor::from_vec(lcg(2 * 3 * 4 * 6 * 6, 5), (2, 3, 4, 6, 6), &dev).expect("x");
        let view = base.transpose(3, 4).expect("view");
        let k = Tensor::from_vec(lcg(4 * 3, 6), (4, 3, 1, 1, 1), &dev).expect("k");
        let cfg = Conv3dConfig {
            stride: (2, 2, 2),
            ..Default::default()
        };
        let a = conv3d(&view, &k, &cfg).expect("view conv");
        let b = conv3d(&view.contiguous().expect("c"), &k, &cfg).expect("copy conv");
        let d = (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert_eq!(d, 0.0);
        let x = Tensor::zeros((1, 2, 2, 4, 4), candle_core::DType::F32, &dev).expect("x");
        let k = Tensor::zeros((1, 2, 3, 1, 1), candle_core::DType::F32, &dev).expect("k");
        assert!(
            conv3d(&x, &k, &Conv3dConfig::default()).is_err(),
            "kernel longer than the clip"
        );
    }

    #[test]
    fn conv3d_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let cfg = Conv3dConfig {
            stride: (2, 1, 1),
            padding: (1, 1, 1),
            dilation: (1, 1, 1),
        };
        let xd = (1, 2, 5, 5, 5);
        let kd = (2, 2, 3, 3, 3);
        let xv = lcg(2 * 5 * 5 * 5, 3);
        let kv = lcg(2 * 2 * 27, 4);
        let x = Var::from_vec(xv.clone(), xd, &dev).expect("x");
        let k = Var::from_vec(kv.clone(), kd, &dev).expect("k");
        // Loss = Σ y ⊙ r for a fixed random r, so every output position contributes.
        let y = conv3d(x.as_tensor(), k.as_tensor(), &cfg).expect("y");
        let r = Tensor::from_vec(lcg(y.elem_count(), 5), y.dims(), &dev).expect("r");
        let loss = (&y * &r).and_then(|t| t.sum_all()).expect("loss");
        let grads = loss.backward().expect("backward");
        let gx = grads
            .get(&x)
            .expect("gx")
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("v");
        let gk = grads
            .get(&k)
            .expect("gk")
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("v");
        let loss_at = |xv: &[f32], kv: &[f32]| -> f64 {
            let (y, _) = naive_conv3d(xv, xd, kv, (2, 3, 3, 3), &cfg);
            let r = lcg(y.len(), 5);
            y.iter().zip(&r).map(|(a, b)| a * f64::from(*b)).sum()
        };
        let eps = 1e-2f32;
        for i in (0..xv.len()).step_by(17) {
            let (mut a, mut b) = (xv.clone(), xv.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (loss_at(&a, &kv) - loss_at(&b, &kv)) / (2.0 * f64::from(eps));
            assert!(
                (fd - f64::from(gx[i])).abs() < 1e-3,
                "dx[{i}]: fd {fd} vs {}",
                gx[i]
            );
        }
        for i in (0..kv.len()).step_by(5) {
            let (mut a, mut b) = (kv.clone(), kv.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (loss_at(&xv, &a) - loss_at(&xv, &b)) / (2.0 * f64::from(eps));
            assert!(
                (fd - f64::from(gk[i])).abs() < 1e-3,
                "dk[{i}]: fd {fd} vs {}",
                gk[i]
            );
        }
    }

    fn cfg3(stride: Triple, padding: Triple, dilation: Triple) -> Conv3dConfig {
        Conv3dConfig {
            stride,
            padding,
            dilation,
        }
    }

    /// Σ y ⊙ r and its gradients with respect to (x, k), through `conv`.
    fn grads_of(
        conv: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
        x: &Tensor,
        k: &Tensor,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let xv = Var::from_tensor(x).expect("x var");
        let kv = Var::from_tensor(k).expect("k var");
        let y = conv(xv.as_tensor(), kv.as_tensor()).expect("y");
        let r = Tensor::from_vec(lcg(y.elem_count(), 21), y.dims(), x.device()).expect("r");
        let loss = (&y * &r).and_then(|t| t.sum_all()).expect("loss");
        let grads = loss.backward().expect("backward");
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        (
            flat(&y),
            flat(grads.get(&xv).expect("gx")),
            flat(grads.get(&kv).expect("gk")),
        )
    }

    fn assert_close(name: &str, a: &[f32], b: &[f32], rel: f32) {
        assert_eq!(a.len(), b.len(), "{name}: lengths");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= rel * scale,
                "{name}[{i}]: {x} vs {y} (scale {scale})"
            );
        }
    }

    #[test]
    fn conv3d_op_gradients_match_the_tensor_op_path() {
        let dev = Device::Cpu;
        let cases = [
            // (x dims, kernel (o, kt, kh, kw), cfg)
            (
                (2, 3, 4, 9, 9),
                (4, 1, 7, 7),
                cfg3((1, 2, 2), (0, 3, 3), (1, 1, 1)),
            ),
            (
                (2, 4, 6, 5, 5),
                (3, 3, 1, 1),
                cfg3((1, 1, 1), (1, 0, 0), (1, 1, 1)),
            ),
            (
                (1, 4, 6, 5, 5),
                (5, 1, 1, 1),
                cfg3((1, 1, 1), (0, 0, 0), (1, 1, 1)),
            ),
            (
                (3, 4, 6, 5, 5),
                (5, 1, 1, 1),
                cfg3((2, 2, 2), (0, 0, 0), (1, 1, 1)),
            ),
            (
                (1, 2, 7, 9, 8),
                (2, 3, 3, 3),
                cfg3((2, 2, 3), (1, 1, 2), (1, 1, 1)),
            ),
            (
                (2, 2, 9, 8, 8),
                (2, 3, 3, 3),
                cfg3((1, 1, 1), (2, 2, 2), (2, 2, 2)),
            ),
            (
                (2, 3, 4, 7, 7),
                (4, 1, 3, 3),
                cfg3((2, 2, 2), (0, 1, 1), (1, 1, 1)),
            ),
            (
                (1, 2, 5, 6, 7),
                (3, 2, 2, 3),
                cfg3((1, 2, 1), (0, 1, 3), (2, 1, 2)),
            ),
            (
                (2, 2, 5, 6, 7),
                (3, 3, 3, 3),
                cfg3((2, 1, 1), (1, 1, 2), (1, 1, 1)),
            ),
            (
                (1, 3, 6, 9, 9),
                (2, 3, 3, 3),
                cfg3((2, 2, 2), (1, 1, 1), (1, 1, 1)),
            ),
        ];
        for (xd, (o, kt, kh, kw), cfg) in cases {
            let (n, c, t, h, w) = xd;
            let x = Tensor::from_vec(lcg(n * c * t * h * w, 7), xd, &dev).expect("x");
            let k = Tensor::from_vec(lcg(o * c * kt * kh * kw, 8), (o, c, kt, kh, kw), &dev)
                .expect("k");
            let want = grads_of(&|x, k| conv3d_tensor_ops(x, k, &cfg, COLS_BUDGET), &x, &k);
            for budget in [COLS_BUDGET, 1] {
                let got = grads_of(&|x, k| conv3d_op(x, k, &cfg, budget), &x, &k);
                let name = format!("{cfg:?} budget {budget}");
                assert_close(&format!("y {name}"), &got.0, &want.0, 1e-5);
                assert_close(&format!("gx {name}"), &got.1, &want.1, 1e-5);
                assert_close(&format!("gk {name}"), &got.2, &want.2, 1e-5);
            }
            // The CUDA path: per-tap conv2d with its hand-written backward, and with candle's
            // conv2d backward, checked here on candle's CPU conv2d.
            for autograd in [false, true] {
                let got = grads_of(
                    &|x, k| match conv2d_path::conv3d(x, k, &cfg, autograd)? {
                        Some(y) => Ok(y),
                        None => conv3d_tensor_ops(x, k, &cfg, COLS_BUDGET),
                    },
                    &x,
                    &k,
                );
                let name = format!("{cfg:?} per-tap conv2d (candle backward: {autograd})");
                assert_close(&format!("y {name}"), &got.0, &want.0, 1e-5);
                assert_close(&format!("gx {name}"), &got.1, &want.1, 1e-5);
                assert_close(&format!("gk {name}"), &got.2, &want.2, 1e-5);
            }
        }
    }

    #[test]
    fn conv3d_op_reads_strided_views() {
        let dev = Device::Cpu;
        // x stored as [N, C, T, W, H] and viewed as [N, C, T, H, W].
        let base = Tensor::from_vec(lcg(2 * 3 * 4 * 7 * 6, 9), (2, 3, 4, 7, 6), &dev).expect("x");
        let k = Tensor::from_vec(lcg(4 * 3 * 27, 10), (4, 3, 3, 3, 3), &dev).expect("k");
        for cfg in [
            cfg3((1, 2, 2), (1, 1, 1), (1, 1, 1)),
            cfg3((1, 1, 1), (0, 0, 0), (1, 1, 1)),
        ] {
            let k = if cfg.padding == (0, 0, 0) {
                k.narrow(2, 0, 1)
                    .and_then(|k| k.narrow(3, 0, 1))
                    .and_then(|k| k.narrow(4, 0, 1))
                    .expect("1×1×1")
            } else {
                k.clone()
            };
            // The view goes through the graph so that the gradient reaches `base`.
            let op = |b: &Tensor, k: &Tensor| conv3d_op(&b.transpose(3, 4)?, k, &cfg, 1);
            let ops = |b: &Tensor, k: &Tensor| {
                conv3d_tensor_ops(&b.transpose(3, 4)?, k, &cfg, COLS_BUDGET)
            };
            let got = grads_of(&op, &base, &k);
            let want = grads_of(&ops, &base, &k);
            assert_close("y", &got.0, &want.0, 1e-5);
            assert_close("gx", &got.1, &want.1, 1e-5);
            assert_close("gk", &got.2, &want.2, 1e-5);
        }
        // Other dtypes take the tensor-op path and agree with f32.
        let x = Tensor::from_vec(lcg(2 * 3 * 4 * 7 * 6, 9), (2, 3, 4, 7, 6), &dev).expect("x");
        let cfg = cfg3((1, 2, 2), (1, 1, 1), (1, 1, 1));
        let y32 = conv3d(&x, &k, &cfg).expect("f32");
        for dt in [DType::F16, DType::BF16, DType::F64] {
            let y = conv3d(
                &x.to_dtype(dt).expect("x"),
                &k.to_dtype(dt).expect("k"),
                &cfg,
            )
            .and_then(|y| y.to_dtype(DType::F32))
            .expect("conv");
            let d = (&y - &y32)
                .and_then(|d| d.abs())
                .and_then(|d| d.flatten_all())
                .and_then(|d| d.max(0))
                .and_then(|d| d.to_scalar::<f32>())
                .expect("diff");
            assert!(d < 0.1, "{dt:?}: max abs difference {d}");
        }
    }

    #[test]
    fn max_pool3d_op_gradients_match_the_tensor_op_path() {
        let dev = Device::Cpu;
        // A permutation of distinct values, so that every window has one maximum.
        let (n, c, t, h, w) = (2, 3, 5, 7, 6);
        let len = n * c * t * h * w;
        let xv: Vec<f32> = (0..len).map(|i| ((i * 7919) % len) as f32).collect();
        let x = Tensor::from_vec(xv, (n, c, t, h, w), &dev).expect("x");
        for (k, s, p) in [
            ((1, 3, 3), (1, 1, 1), (0, 1, 1)),
            ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            ((2, 1, 1), (2, 1, 1), (0, 0, 0)),
            ((3, 2, 3), (2, 2, 1), (1, 1, 1)),
        ] {
            let op = grads_of_pool(&|x| max_pool3d(x, k, s, p), &x);
            let ops = grads_of_pool(&|x| max_pool3d_tensor_ops(x, k, s, p), &x);
            assert_eq!(op.0, ops.0, "forward {k:?} {s:?} {p:?}");
            assert_eq!(op.1, ops.1, "gradient {k:?} {s:?} {p:?}");
        }
    }

    fn grads_of_pool(pool: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> (Vec<f32>, Vec<f32>) {
        let xv = Var::from_tensor(x).expect("var");
        let y = pool(xv.as_tensor()).expect("pool");
        let r: Vec<f32> = (0..y.elem_count()).map(|i| (i % 11) as f32 - 5.0).collect();
        let r = Tensor::from_vec(r, y.dims(), x.device()).expect("r");
        let grads = (&y * &r)
            .and_then(|l| l.sum_all())
            .and_then(|l| l.backward())
            .expect("bw");
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        (flat(&y), flat(grads.get(&xv).expect("gx")))
    }

    #[test]
    fn add_relu_matches_its_composition() {
        let dev = Device::Cpu;
        let a = Var::from_vec(lcg(2 * 3 * 4 * 5, 31), (2, 3, 4, 5), &dev).expect("a");
        let b = Var::from_vec(lcg(2 * 3 * 4 * 5, 32), (2, 3, 5, 4), &dev).expect("b");
        let r = Tensor::from_vec(lcg(2 * 3 * 4 * 5, 33), (2, 3, 4, 5), &dev).expect("r");
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        let run = |fused: bool| {
            // A transposed view on one side exercises the op's copy of strided inputs.
            let bt = b.as_tensor().transpose(2, 3).expect("view");
            let y = if fused {
                add_relu(a.as_tensor(), &bt)
            } else {
                (a.as_tensor() + &bt).and_then(|s| s.relu())
            }
            .expect("y");
            let g = (&y * &r)
                .and_then(|l| l.sum_all())
                .and_then(|l| l.backward())
                .expect("bw");
            [
                flat(&y),
                flat(g.get(&a).expect("ga")),
                flat(g.get(&b).expect("gb")),
            ]
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn max_pool3d_and_global_average_match_the_definition() {
        let dev = Device::Cpu;
        let (n, c, t, h, w) = (1, 2, 4, 7, 7);
        let xv = lcg(n * c * t * h * w, 6);
        let x = Tensor::from_vec(xv.clone(), (n, c, t, h, w), &dev).expect("x");
        // The SlowOnly stem pool: kernel (1,3,3), stride (1,2,2), padding (0,1,1).
        let y = max_pool3d(&x, (1, 3, 3), (1, 2, 2), (0, 1, 1)).expect("pool");
        assert_eq!(y.dims(), [1, 2, 4, 4, 4]);
        let got = y.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
        for ci in 0..c {
            for ti in 0..t {
                for oh in 0..4 {
                    for ow in 0..4 {
                        let mut m = f32::NEG_INFINITY;
                        for a in 0..3 {
                            for b in 0..3 {
                                let ih = (oh * 2 + a) as isize - 1;
                                let iw = (ow * 2 + b) as isize - 1;
                                if ih >= 0 && iw >= 0 && ih < h as isize && iw < w as isize {
                                    m = m.max(
                                        xv[((ci * t + ti) * h + ih as usize) * w + iw as usize],
                                    );
                                }
                            }
                        }
                        assert_eq!(got[((ci * t + ti) * 4 + oh) * 4 + ow], m);
                    }
                }
            }
        }
        let g = global_avg_pool3d(&x)
            .and_then(|t| t.to_vec2::<f32>())
            .expect("gap");
        for ci in 0..c {
            let per = t * h * w;
            let mean: f32 = xv[ci * per..(ci + 1) * per].iter().sum::<f32>() / per as f32;
            assert!((g[0][ci] - mean).abs() < 1e-6);
        }
    }

    /// Direct scatter form of `nn.ConvTranspose3d` (kT×1×1) in f64:
    /// `y[n, o, t·s + k − p, h, w] += x[n, i, t, h, w] · w[i, o, k]`.
    fn naive_conv_transpose_t(
        x: &[f32],
        (n, c, t, h, w): (usize, usize, usize, usize, usize),
        k: &[f32],
        (o, kt): (usize, usize),
        cfg: &ConvTranspose3dConfig,
    ) -> (Vec<f64>, [usize; 5]) {
        let to = (t - 1) * cfg.stride + kt + cfg.output_padding - 2 * cfg.padding;
        let mut y = vec![0f64; n * o * to * h * w];
        for b in 0..n {
            for ic in 0..c {
                for it in 0..t {
                    for oc in 0..o {
                        for a in 0..kt {
                            let ot = (it * cfg.stride + a) as isize - cfg.padding as isize;
                            if ot < 0 || ot >= to as isize {
                                continue;
                            }
                            let wv = f64::from(k[(ic * o + oc) * kt + a]);
                            for p in 0..h * w {
                                let xi = ((b * c + ic) * t + it) * h * w + p;
                                let yi = ((b * o + oc) * to + ot as usize) * h * w + p;
                                y[yi] += f64::from(x[xi]) * wv;
                            }
                        }
                    }
                }
            }
        }
        (y, [n, o, to, h, w])
    }

    #[test]
    fn conv_transpose_temporal_matches_the_definition() {
        let dev = Device::Cpu;
        let ct = |stride, padding, output_padding| ConvTranspose3dConfig {
            stride,
            padding,
            output_padding,
        };
        let cases = [
            // RGBPoseConv3D's lateral: k 7, stride 4, pad 3, output_size 4T → output_padding 3.
            ((2, 5, 3, 4, 3), (3, 7), ct(4, 3, 3)),
            ((1, 3, 1, 2, 2), (2, 7), ct(4, 3, 3)),
            // Stride 1 (no spreading), stride 2 with no padding, padding larger than the overlap.
            ((1, 2, 4, 3, 3), (3, 3), ct(1, 1, 0)),
            ((1, 3, 3, 2, 5), (2, 3), ct(2, 0, 1)),
            ((1, 2, 5, 2, 2), (2, 2), ct(3, 2, 2)),
        ];
        for (xd, (o, kt), cfg) in cases {
            let (n, c, t, h, w) = xd;
            let xv = lcg(n * c * t * h * w, 11);
            let kv = lcg(c * o * kt, 12);
            let x = Tensor::from_vec(xv.clone(), xd, &dev).expect("x");
            let k = Tensor::from_vec(kv.clone(), (c, o, kt, 1, 1), &dev).expect("k");
            let y = conv_transpose3d_temporal(&x, &k, &cfg).expect("deconv");
            let (want, shape) = naive_conv_transpose_t(&xv, xd, &kv, (o, kt), &cfg);
            assert_eq!(y.dims(), shape, "{cfg:?}");
            let got = y.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (f64::from(*a) - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-5, "{cfg:?}: max abs error {err}");
        }
        // PyTorch's output_size rule: DeConvModule asks for 4T from k 7, s 4, p 3.
        for t in 1..10 {
            let op = ConvTranspose3dConfig::output_padding_for(t, 7, 4, 3, 4 * t).expect("op");
            assert_eq!(op, 3);
        }
        assert!(ConvTranspose3dConfig::output_padding_for(8, 7, 4, 3, 4 * 8 + 1).is_err());
        assert!(ConvTranspose3dConfig::output_padding_for(8, 7, 4, 3, 4 * 8 - 4).is_err());
        let x = Tensor::zeros((1, 2, 3, 2, 2), candle_core::DType::F32, &dev).expect("x");
        let k = Tensor::zeros((2, 2, 3, 3, 3), candle_core::DType::F32, &dev).expect("k");
        assert!(
            conv_transpose3d_temporal(&x, &k, &ct(1, 0, 0)).is_err(),
            "3×3 spatial kernels are refused"
        );
    }

    #[test]
    fn conv_transpose_temporal_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let cfg = ConvTranspose3dConfig {
            stride: 4,
            padding: 3,
            output_padding: 3,
        };
        let xd = (1, 3, 3, 2, 2);
        let (o, kt) = (2, 7);
        let xv = lcg(3 * 3 * 2 * 2, 13);
        let kv = lcg(3 * o * kt, 14);
        let x = Var::from_vec(xv.clone(), xd, &dev).expect("x");
        let k = Var::from_vec(kv.clone(), (3, o, kt, 1, 1), &dev).expect("k");
        let y = conv_transpose3d_temporal(x.as_tensor(), k.as_tensor(), &cfg).expect("y");
        let r = Tensor::from_vec(lcg(y.elem_count(), 15), y.dims(), &dev).expect("r");
        let loss = (&y * &r).and_then(|t| t.sum_all()).expect("loss");
        let grads = loss.backward().expect("backward");
        let flat = |v: &Var| {
            grads
                .get(v)
                .expect("grad")
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("v")
        };
        let (gx, gk) = (flat(&x), flat(&k));
        let loss_at = |xv: &[f32], kv: &[f32]| -> f64 {
            let (y, _) = naive_conv_transpose_t(xv, xd, kv, (o, kt), &cfg);
            let r = lcg(y.len(), 15);
            y.iter().zip(&r).map(|(a, b)| a * f64::from(*b)).sum()
        };
        let eps = 1e-2f32;
        let check = |name: &str, base: &[f32], g: &[f32], is_x: bool| {
            for i in 0..base.len() {
                let (mut a, mut b) = (base.to_vec(), base.to_vec());
                a[i] += eps;
                b[i] -= eps;
                let (la, lb) = if is_x {
                    (loss_at(&a, &kv), loss_at(&b, &kv))
                } else {
                    (loss_at(&xv, &a), loss_at(&xv, &b))
                };
                let fd = (la - lb) / (2.0 * f64::from(eps));
                assert!(
                    (fd - f64::from(g[i])).abs() < 1e-3,
                    "{name}[{i}]: fd {fd} vs {}",
                    g[i]
                );
            }
        };
        check("dx", &xv, &gx, true);
        check("dk", &kv, &gk, false);
    }
}
