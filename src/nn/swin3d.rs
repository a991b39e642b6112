//! Video Swin Transformer (`SwinTransformer3D`) with `I3DHead`: mmaction2 1.2
//! `mmaction/models/backbones/swin.py` and `heads/i3d_head.py` (the official
//! `SwinTransformer/Video-Swin-Transformer` `swin_transformer.py` computes the same thing).
//! Weights are named by the recognizer checkpoint's own keys (`backbone.patch_embed.proj.weight`,
//! `backbone.layers.0.blocks.1.attn.relative_position_bias_table`, `cls_head.fc_cls.weight`).
//!
//! Features stay channel-last as `[B, D·H·W, C]` token matrices between the stem and the final
//! norm, so every Linear is one 2-D matmul. Padding, the cyclic shift and the window partition
//! of a block are one `index_select` from a per-stage index table (and one back), instead of
//! pad + three rolls + a permute copy each way; gathers are differentiable like the rest.
//! `Module::forward` is inference (fused LayerNorm / softmax kernels, no dropout or drop-path);
//! [`VideoSwin::forward_t`] with `train = true` uses the composed, differentiable forms instead.

use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::{linear_b, linear_no_bias, Linear, VarBuilder};

use super::ops3d::{MaskRng, Triple};

/// The backbone and head hyper-parameters of a Video Swin config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub patch_size: Triple,
    pub in_channels: usize,
    pub embed_dim: usize,
    pub depths: Vec<usize>,
    pub num_heads: Vec<usize>,
    pub window_size: Triple,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    pub patch_norm: bool,
    pub num_classes: usize,
    /// Stochastic depth, `linspace(0, rate, Σdepths)` over blocks; training only.
    pub drop_path_rate: f64,
}

impl Config {
    /// Swin-T on Kinetics-400 (`swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb`).
    pub fn swin_t() -> Config {
        Config {
            patch_size: (2, 4, 4),
            in_channels: 3,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![3, 6, 12, 24],
            window_size: (8, 7, 7),
            mlp_ratio: 4.0,
            qkv_bias: true,
            patch_norm: true,
            num_classes: 400,
            drop_path_rate: 0.1,
        }
    }

    /// Swin-S (`swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb`).
    pub fn swin_s() -> Config {
        Config {
            depths: vec![2, 2, 18, 2],
            drop_path_rate: 0.2,
            ..Self::swin_t()
        }
    }

    /// Swin-B (`swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb`).
    pub fn swin_b() -> Config {
        Config {
            embed_dim: 128,
            num_heads: vec![4, 8, 16, 32],
            drop_path_rate: 0.3,
            ..Self::swin_s()
        }
    }

    /// Channels of the last stage (the head's `in_channels`).
    pub fn num_features(&self) -> usize {
        self.embed_dim << self.depths.len().saturating_sub(1)
    }
}

const LN_EPS: f64 = 1e-5;
/// `compute_mask` fills cross-region pairs with −100, not −∞.
const MASK_VALUE: f32 = -100.0;

/// `nn.LayerNorm` (eps 1e-5) over the last dim.
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Norm {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // The fused kernel has no backward pass.
        if train || !x.is_contiguous() {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, LN_EPS as f32)
        } else {
            candle_nn::ops::layer_norm(x, &self.weight, &self.bias, LN_EPS as f32)
        }
    }
}

fn softmax_t(x: &Tensor, train: bool) -> Result<Tensor> {
    // As for LayerNorm: the fused kernel has no backward pass.
    if train {
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// `DropPath` on `[B, L, C]`: whole samples are dropped and the rest scaled by 1/(1−p).
fn drop_path(x: &Tensor, p: f64, train: bool, rng: &MaskRng) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let b = x.dim(0)?;
    let keep = Tensor::from_vec(rng.mask(b, p)?, (b, 1, 1), x.device())?.to_dtype(x.dtype())?;
    x.broadcast_mul(&keep)
}

/// `get_window_size`: an axis no longer than its window gets a window of its own length and
/// no shift (so H = W = 7 at Swin-T's stage 3 gives shift (4, 0, 0)).
pub fn effective_window(size: Triple, window: Triple, shift: Triple) -> (Triple, Triple) {
    let clamp = |x: usize, w: usize, s: usize| if x <= w { (x, 0) } else { (w, s) };
    let (wd, sd) = clamp(size.0, window.0, shift.0);
    let (wh, sh) = clamp(size.1, window.1, shift.1);
    let (ww, sw) = clamp(size.2, window.2, shift.2);
    ((wd, wh, ww), (sd, sh, sw))
}

/// `WindowAttention3D.relative_position_index` for the full window, row-major `[N, N]`
/// with N = wd·wh·ww: tokens are (d, h, w)-major and the index of the pair (i, j) is
/// `(Δd + wd−1)·(2wh−1)(2ww−1) + (Δh + wh−1)·(2ww−1) + (Δw + ww−1)` with Δ = c_i − c_j.
pub fn relative_position_index(window: Triple) -> Vec<u32> {
    let (wd, wh, ww) = window;
    let coords: Vec<(usize, usize, usize)> = (0..wd)
        .flat_map(|d| (0..wh).flat_map(move |h| (0..ww).map(move |w| (d, h, w))))
        .collect();
    let (sh, sw) = ((2 * wh - 1) * (2 * ww - 1), 2 * ww - 1);
    let mut idx = Vec::with_capacity(coords.len() * coords.len());
    for &(di, hi, wi) in &coords {
        for &(dj, hj, wj) in &coords {
            let rd = di + wd - 1 - dj;
            let rh = hi + wh - 1 - hj;
            let rw = wi + ww - 1 - wj;
            idx.push((rd * sh + rh * sw + rw) as u32);
        }
    }
    idx
}

/// How one stage's blocks cut `[B, D·H·W, C]` into windows for a given (window, shift).
struct WindowPlan {
    /// Tokens per window.
    n: usize,
    /// Windows per clip.
    n_windows: usize,
    /// `[nW·N]` source token of each window slot after padding and the −shift roll; padded
    /// slots point at an appended zero row (index D·H·W). `None` when it is the identity.
    gather: Option<Tensor>,
    /// Whether `gather` reads the appended zero row.
    pad_row: bool,
    /// `[D·H·W]` window slot of each token: undoes the partition, the roll and the padding.
    scatter: Option<Tensor>,
    /// `[nW, 1, N, N]` additive mask for shifted windows, `None` without shift.
    mask: Option<Tensor>,
}

impl WindowPlan {
    /// `size` is the unpadded (D, H, W); `window`/`shift` already clamped.
    fn new(size: Triple, window: Triple, shift: Triple, device: &Device) -> Result<Self> {
        let (d, h, w) = size;
        let (wd, wh, ww) = window;
        let (sd, sh, sw) = shift;
        let (pd, ph, pw) = (
            d.div_ceil(wd) * wd,
            h.div_ceil(wh) * wh,
            w.div_ceil(ww) * ww,
        );
        let (nd, nh, nw) = (pd / wd, ph / wh, pw / ww);
        let n = wd * wh * ww;
        let n_windows = nd * nh * nw;
        let l = d * h * w;
        let mut gather = vec![l as u32; n_windows * n];
        let mut scatter = vec![0u32; l];
        // The window slot (win, tok) holds the padded-grid position p, which after
        // `roll(−shift)` came from q = (p + shift) mod P.
        let mut slot = 0usize;
        for a in 0..nd {
            for b in 0..nh {
                for c in 0..nw {
                    for i in 0..wd {
                        for j in 0..wh {
                            for k in 0..ww {
                                let qd = (a * wd + i + sd) % pd;
                                let qh = (b * wh + j + sh) % ph;
                                let qw = (c * ww + k + sw) % pw;
                                if qd < d && qh < h && qw < w {
                                    let src = (qd * h + qh) * w + qw;
                                    gather[slot] = src as u32;
                                    scatter[src] = slot as u32;
                                }
                                slot += 1;
                            }
                        }
                    }
                }
            }
        }
        let pad_row = n_windows * n != l;
        let identity = !pad_row && gather.iter().enumerate().all(|(i, &g)| g as usize == i);
        let (gather, scatter) = if identity {
            (None, None)
        } else {
            (
                Some(Tensor::from_vec(gather, n_windows * n, device)?),
                Some(Tensor::from_vec(scatter, l, device)?),
            )
        };
        let mask = if sd > 0 || sh > 0 || sw > 0 {
            Some(shift_mask((pd, ph, pw), window, shift, device)?)
        } else {
            None
        };
        Ok(WindowPlan {
            n,
            n_windows,
            gather,
            pad_row,
            scatter,
            mask,
        })
    }

    /// `[B, L, C] → [B·nW, N, C]`
    fn partition(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let x = match &self.gather {
            None => x.clone(),
            Some(idx) => {
                let x = if self.pad_row {
                    x.pad_with_zeros(1, 0, 1)?
                } else {
                    x.clone()
                };
                x.index_select(idx, 1)?
            }
        };
        x.reshape((b * self.n_windows, self.n, c))
    }

    /// `[B·nW, N, C] → [B, L, C]`
    fn reverse(&self, x: &Tensor, b: usize) -> Result<Tensor> {
        let (_, n, c) = x.dims3()?;
        let x = x.reshape((b, self.n_windows * n, c))?;
        match &self.scatter {
            None => Ok(x),
            Some(idx) => x.index_select(idx, 1),
        }
    }
}

/// `compute_mask` for the padded size: the padded grid is cut on each shifted axis into
/// `[0, P−w)`, `[P−w, P−s)`, `[P−s, P)`; tokens of one window in different regions get −100.
/// (With s = 0 the reference's third slice `[-0:]` covers the whole axis and, written last,
/// makes that axis a single region.) Returns `[nW, 1, N, N]`.
fn shift_mask(padded: Triple, window: Triple, shift: Triple, device: &Device) -> Result<Tensor> {
    let region = |p: usize, len: usize, w: usize, s: usize| -> usize {
        if s == 0 || p >= len - s {
            2
        } else if p >= len - w {
            1
        } else {
            0
        }
    };
    let (pd, ph, pw) = padded;
    let (wd, wh, ww) = window;
    let (nd, nh, nw) = (pd / wd, ph / wh, pw / ww);
    let n = wd * wh * ww;
    let mut labels = Vec::with_capacity(nd * nh * nw * n);
    for a in 0..nd {
        for b in 0..nh {
            for c in 0..nw {
                for i in 0..wd {
                    for j in 0..wh {
                        for k in 0..ww {
                            let rd = region(a * wd + i, pd, wd, shift.0);
                            let rh = region(b * wh + j, ph, wh, shift.1);
                            let rw = region(c * ww + k, pw, ww, shift.2);
                            labels.push(rd * 9 + rh * 3 + rw);
                        }
                    }
                }
            }
        }
    }
    let mut mask = Vec::with_capacity(labels.len() * n);
    for win in labels.chunks(n) {
        for &li in win {
            mask.extend(
                win.iter()
                    .map(|&lj| if li == lj { 0f32 } else { MASK_VALUE }),
            );
        }
    }
    Tensor::from_vec(mask, (nd * nh * nw, 1, n, n), device)
}

/// `WindowAttention3D`.
struct WindowAttention3D {
    qkv: Linear,
    proj: Linear,
    /// `[(2wd−1)(2wh−1)(2ww−1), nH]`
    bias_table: Tensor,
    /// The full window's index, `[N_full, N_full]` (a buffer in the checkpoint; recomputed).
    index: Tensor,
    num_heads: usize,
    scale: f64,
}

impl WindowAttention3D {
    fn new(
        dim: usize,
        window: Triple,
        num_heads: usize,
        qkv_bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (wd, wh, ww) = window;
        let table_len = (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1);
        let n = wd * wh * ww;
        let index = Tensor::from_vec(relative_position_index(window), (n, n), vb.device())?;
        Ok(WindowAttention3D {
            qkv: linear_b(dim, 3 * dim, qkv_bias, vb.pp("qkv"))?,
            proj: linear_b(dim, dim, true, vb.pp("proj"))?,
            bias_table: vb.get((table_len, num_heads), "relative_position_bias_table")?,
            index,
            num_heads,
            scale: ((dim / num_heads) as f64).powf(-0.5),
        })
    }

    /// `[nH, N, N]`. For a clamped window the reference slices the full window's index
    /// (`relative_position_index[:N, :N]`) rather than recomputing it for the smaller window;
    /// kept as is for parity with trained checkpoints.
    fn position_bias(&self, n: usize) -> Result<Tensor> {
        let full = self.index.dim(0)?;
        let idx = if n == full {
            self.index.flatten_all()?
        } else {
            self.index.narrow(0, 0, n)?.narrow(1, 0, n)?.flatten_all()?
        };
        self.bias_table
            .index_select(&idx, 0)?
            .reshape((n, n, self.num_heads))?
            .permute((2, 0, 1))?
            .contiguous()
    }

    /// `x`: `[B·nW, N, C]` windows, clip-major; `mask`: `[nW, 1, N, N]`.
    fn forward_t(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let (bw, n, c) = x.dims3()?;
        let nh = self.num_heads;
        let hd = c / nh;
        let qkv = self
            .qkv
            .forward(&x.reshape((bw * n, c))?)?
            .reshape((bw, n, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let q = (qkv.get(0)? * self.scale)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let attn = q.matmul(&k.t()?)?.broadcast_add(&self.position_bias(n)?)?;
        let attn = match mask {
            Some(m) => {
                let nw = m.dim(0)?;
                // The mask is built in f32; bf16/f16 models add it in their own dtype.
                attn.reshape((bw / nw, nw, nh, n, n))?
                    .broadcast_add(&m.to_dtype(attn.dtype())?)?
                    .reshape((bw, nh, n, n))?
            }
            None => attn,
        };
        let attn = softmax_t(&attn, train)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((bw * n, c))?;
        self.proj.forward(&y)?.reshape((bw, n, c))
    }
}

/// `SwinTransformerBlock3D` (pre-norm; LN1 comes before the padding, so padded tokens are 0).
struct SwinBlock3D {
    norm1: Norm,
    attn: WindowAttention3D,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
    shifted: bool,
    drop_path: f64,
    rng: MaskRng,
}

impl SwinBlock3D {
    fn forward_t(&self, x: &Tensor, plan: &WindowPlan, train: bool) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        let h = plan.partition(&self.norm1.forward_t(x, train)?)?;
        let h = self.attn.forward_t(&h, plan.mask.as_ref(), train)?;
        let h = plan.reverse(&h, b)?;
        let x = (x + drop_path(&h, self.drop_path, train, &self.rng)?)?;
        let h = self.norm2.forward_t(&x, train)?.reshape((b * l, c))?;
        let h = self.fc2.forward(&self.fc1.forward(&h)?.gelu_erf()?)?;
        x + drop_path(&h.reshape((b, l, c))?, self.drop_path, train, &self.rng)?
    }
}

/// `PatchMerging`: 2×2 spatial neighbours concatenated as x0 (even h, even w), x1 (odd h,
/// even w), x2 (even h, odd w), x3 (odd h, odd w), then LN(4C) and Linear(4C → 2C, no bias).
struct PatchMerging {
    norm: Norm,
    reduction: Linear,
}

impl PatchMerging {
    /// `[B, D·H·W, C] → [B, D·⌈H/2⌉·⌈W/2⌉, 2C]`
    fn forward_t(&self, x: &Tensor, size: Triple, train: bool) -> Result<(Tensor, Triple)> {
        let (b, _, c) = x.dims3()?;
        let (d, h, w) = size;
        let x = x
            .reshape((b, d, h, w, c))?
            .pad_with_zeros(2, 0, h % 2)?
            .pad_with_zeros(3, 0, w % 2)?;
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // [b, d, h2, hp, w2, wp, c] → [b, d, h2, w2, wp, hp, c]: channel block = 2·wp + hp.
        let x = x
            .reshape(vec![b, d, h2, 2, w2, 2, c])?
            .permute([0, 1, 2, 4, 5, 3, 6])?
            .contiguous()?
            .reshape((b * d * h2 * w2, 4 * c))?;
        let x = self.reduction.forward(&self.norm.forward_t(&x, train)?)?;
        Ok((x.reshape((b, d * h2 * w2, 2 * c))?, (d, h2, w2)))
    }
}

/// `BasicLayer`: blocks alternate unshifted / shifted by window/2.
struct BasicLayer {
    blocks: Vec<SwinBlock3D>,
    downsample: Option<PatchMerging>,
    window: Triple,
}

impl BasicLayer {
    fn forward_t(&self, x: &Tensor, size: Triple, train: bool) -> Result<(Tensor, Triple)> {
        let half = (self.window.0 / 2, self.window.1 / 2, self.window.2 / 2);
        let (window, shift) = effective_window(size, self.window, half);
        // Built once per stage and shared by its blocks, like `compute_mask`.
        let plain = WindowPlan::new(size, window, (0, 0, 0), x.device())?;
        let shifted = if shift == (0, 0, 0) {
            None
        } else {
            Some(WindowPlan::new(size, window, shift, x.device())?)
        };
        let mut x = x.clone();
        for blk in &self.blocks {
            let plan = match (&shifted, blk.shifted) {
                (Some(p), true) => p,
                _ => &plain,
            };
            x = blk.forward_t(&x, plan, train)?;
        }
        match &self.downsample {
            Some(m) => m.forward_t(&x, size, train),
            None => Ok((x, size)),
        }
    }
}

/// `PatchEmbed3D`. Kernel = stride, so the Conv3d is a reshape into non-overlapping patches
/// and one matmul (weight flattened in PyTorch's (c, kd, kh, kw) order).
struct PatchEmbed3D {
    proj: Linear,
    norm: Option<Norm>,
    patch: Triple,
    in_channels: usize,
}

impl PatchEmbed3D {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (pd, ph, pw) = cfg.patch_size;
        let e = cfg.embed_dim;
        let cin = cfg.in_channels;
        let weight = vb
            .pp("proj")
            .get((e, cin, pd, ph, pw), "weight")?
            .reshape((e, cin * pd * ph * pw))?;
        let bias = vb.pp("proj").get(e, "bias")?;
        let norm = if cfg.patch_norm {
            Some(Norm::new(e, vb.pp("norm"))?)
        } else {
            None
        };
        Ok(PatchEmbed3D {
            proj: Linear::new(weight, Some(bias)),
            norm,
            patch: cfg.patch_size,
            in_channels: cin,
        })
    }

    /// `[B, Cin, T, H, W] → [B, D·H'·W', E]` with the token grid (D, H', W'). The input is
    /// zero-padded at the end of each axis up to a patch multiple, as the reference does.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Triple)> {
        let (b, c, t, h, w) = x.dims5()?;
        if c != self.in_channels {
            candle_core::bail!(
                "swin patch embed: expected {} channels, got {c}",
                self.in_channels
            );
        }
        let (pd, ph, pw) = self.patch;
        let pad = |n: usize, p: usize| (p - n % p) % p;
        let x = x
            .pad_with_zeros(4, 0, pad(w, pw))?
            .pad_with_zeros(3, 0, pad(h, ph))?
            .pad_with_zeros(2, 0, pad(t, pd))?;
        let (d, h, w) = (t.div_ceil(pd), h.div_ceil(ph), w.div_ceil(pw));
        let x = x
            .reshape(vec![b, c, d, pd, h, ph, w, pw])?
            .permute([0, 2, 4, 6, 1, 3, 5, 7])?
            .contiguous()?
            .reshape((b * d * h * w, c * pd * ph * pw))?;
        let x = self.proj.forward(&x)?;
        let x = match &self.norm {
            Some(n) => n.forward_t(&x, train)?,
            None => x,
        };
        let e = x.dim(1)?;
        Ok((x.reshape((b, d * h * w, e))?, (d, h, w)))
    }
}

/// The `SwinTransformer3D` backbone (`vb` at `backbone`). Output `[B, C, D, H, W]` after the
/// final LayerNorm, which mmaction2 1.x stores as `norm3` (for four stages); the official
/// Video-Swin checkpoints call it `backbone.norm`, so loaders of those must rename it.
pub struct SwinTransformer3D {
    patch_embed: PatchEmbed3D,
    layers: Vec<BasicLayer>,
    norm: Norm,
    /// Drop-path masks of every block.
    pub rng: MaskRng,
}

impl SwinTransformer3D {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if cfg.depths.len() != cfg.num_heads.len() || cfg.depths.is_empty() {
            candle_core::bail!(
                "swin: depths {:?} / num_heads {:?}",
                cfg.depths,
                cfg.num_heads
            );
        }
        let patch_embed = PatchEmbed3D::new(cfg, vb.pp("patch_embed"))?;
        let total: usize = cfg.depths.iter().sum();
        // torch.linspace(0, rate, total)
        let rate = |i: usize| {
            if total > 1 {
                cfg.drop_path_rate * i as f64 / (total - 1) as f64
            } else {
                0.0
            }
        };
        let half = (
            cfg.window_size.0 / 2,
            cfg.window_size.1 / 2,
            cfg.window_size.2 / 2,
        );
        let n_stages = cfg.depths.len();
        let mask_rng = MaskRng::new();
        let mut layers = Vec::with_capacity(n_stages);
        let mut dim = cfg.embed_dim;
        let mut block_no = 0;
        for (i, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.num_heads).enumerate() {
            if heads == 0 || dim % heads != 0 {
                candle_core::bail!(
                    "swin stage {i}: {dim} channels do not split into {heads} heads"
                );
            }
            let vl = vb.pp("layers").pp(i);
            let hidden = (dim as f64 * cfg.mlp_ratio) as usize;
            let mut blocks = Vec::with_capacity(depth);
            for j in 0..depth {
                let vbk = vl.pp("blocks").pp(j);
                blocks.push(SwinBlock3D {
                    norm1: Norm::new(dim, vbk.pp("norm1"))?,
                    attn: WindowAttention3D::new(
                        dim,
                        cfg.window_size,
                        heads,
                        cfg.qkv_bias,
                        vbk.pp("attn"),
                    )?,
                    norm2: Norm::new(dim, vbk.pp("norm2"))?,
                    fc1: linear_b(dim, hidden, true, vbk.pp("mlp").pp("fc1"))?,
                    fc2: linear_b(hidden, dim, true, vbk.pp("mlp").pp("fc2"))?,
                    shifted: j % 2 == 1 && half != (0, 0, 0),
                    drop_path: rate(block_no),
                    rng: mask_rng.clone(),
                });
                block_no += 1;
            }
            let downsample = if i + 1 < n_stages {
                let vd = vl.pp("downsample");
                Some(PatchMerging {
                    norm: Norm::new(4 * dim, vd.pp("norm"))?,
                    reduction: linear_no_bias(4 * dim, 2 * dim, vd.pp("reduction"))?,
                })
            } else {
                None
            };
            layers.push(BasicLayer {
                blocks,
                downsample,
                window: cfg.window_size,
            });
            if i + 1 < n_stages {
                dim *= 2;
            }
        }
        let norm = Norm::new(dim, vb.pp(format!("norm{}", n_stages - 1)))?;
        Ok(SwinTransformer3D {
            patch_embed,
            layers,
            norm,
            rng: mask_rng,
        })
    }

    /// The final normed tokens `[B, D·H·W, C]` and their grid (D, H, W).
    pub fn forward_tokens(&self, x: &Tensor, train: bool) -> Result<(Tensor, Triple)> {
        let (mut x, mut size) = self.patch_embed.forward_t(x, train)?;
        for layer in &self.layers {
            (x, size) = layer.forward_t(&x, size, train)?;
        }
        Ok((self.norm.forward_t(&x, train)?, size))
    }

    /// `[B, Cin, T, H, W] → [B, C, D, H, W]`. With `train` the differentiable LayerNorm and
    /// softmax are used and drop-path is active. (An inherent method: generic code that calls
    /// `candle_nn::ModuleT::forward_t` reaches `Module::forward`, i.e. inference.)
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (y, (d, h, w)) = self.forward_tokens(x, train)?;
        let (b, _, c) = y.dims3()?;
        y.reshape((b, d, h, w, c))?
            .permute((0, 4, 1, 2, 3))?
            .contiguous()
    }
}

impl Module for SwinTransformer3D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }
}

/// `I3DHead` (spatial_type 'avg', dropout 0.5): global average, dropout, `fc_cls`.
pub struct I3DHead {
    fc_cls: Linear,
    pub dropout: f64,
    rng: MaskRng,
}

impl I3DHead {
    pub fn new(in_channels: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(I3DHead {
            fc_cls: linear_b(in_channels, num_classes, true, vb.pp("fc_cls"))?,
            dropout: 0.5,
            rng: MaskRng::new(),
        })
    }

    /// Pooled features `[B, C]` → logits `[B, classes]`.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Result<Tensor> {
        let x = if train && self.dropout > 0.0 {
            let mask = Tensor::from_vec(
                self.rng.mask(pooled.elem_count(), self.dropout)?,
                pooled.dims(),
                pooled.device(),
            )?
            .to_dtype(pooled.dtype())?;
            (pooled * mask)?
        } else {
            pooled.clone()
        };
        self.fc_cls.forward(&x)
    }
}

/// Recognizer3D = `SwinTransformer3D` + `I3DHead`; `vb` at the checkpoint root
/// (`backbone.*`, `cls_head.*`).
pub struct VideoSwin {
    pub backbone: SwinTransformer3D,
    pub head: I3DHead,
}

impl VideoSwin {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(VideoSwin {
            backbone: SwinTransformer3D::new(cfg, vb.pp("backbone"))?,
            head: I3DHead::new(cfg.num_features(), cfg.num_classes, vb.pp("cls_head"))?,
        })
    }

    /// Restarts the drop-path and dropout generators (the trainer does, every iteration).
    pub fn set_dropout_seed(&self, seed: u64) -> Result<()> {
        self.backbone.rng.reseed(seed)?;
        self.head.rng.reseed(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// `[B, Cin, T, H, W] → [B, classes]` logits (see [`SwinTransformer3D::forward_t`]).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // AdaptiveAvgPool3d(1) = the mean over tokens.
        let (y, _) = self.backbone.forward_tokens(x, train)?;
        self.head.forward_t(&y.mean(1)?, train)
    }
}

impl Module for VideoSwin {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The reference's loops, literally: `img_mask[:, d, h, w] = cnt` over the slices in
    /// nested order (later writes win), then partition and compare.
    fn reference_mask(padded: Triple, window: Triple, shift: Triple) -> Vec<f32> {
        let (pd, ph, pw) = padded;
        let slices = |len: usize, w: usize, s: usize| -> [(usize, usize); 3] {
            // Python: slice(-w) , slice(-w, -s), slice(-s, None); -0 is 0.
            let a = (0, len - w);
            let b = if s == 0 { (0, 0) } else { (len - w, len - s) };
            let c = if s == 0 { (0, len) } else { (len - s, len) };
            [a, b, c]
        };
        let mut img = vec![0f32; pd * ph * pw];
        let mut cnt = 0f32;
        for &(d0, d1) in &slices(pd, window.0, shift.0) {
            for &(h0, h1) in &slices(ph, window.1, shift.1) {
                for &(w0, w1) in &slices(pw, window.2, shift.2) {
                    for d in d0..d1 {
                        for h in h0..h1 {
                            for w in w0..w1 {
                                img[(d * ph + h) * pw + w] = cnt;
                            }
                        }
                    }
                    cnt += 1.0;
                }
            }
        }
        let (wd, wh, ww) = window;
        let mut out = Vec::new();
        for a in 0..pd / wd {
            for b in 0..ph / wh {
                for c in 0..pw / ww {
                    let mut win = Vec::new();
                    for i in 0..wd {
                        for j in 0..wh {
                            for k in 0..ww {
                                win.push(img[((a * wd + i) * ph + b * wh + j) * pw + c * ww + k]);
                            }
                        }
                    }
                    for &x in &win {
                        for &y in &win {
                            out.push(if y - x != 0.0 { -100.0 } else { 0.0 });
                        }
                    }
                }
            }
        }
        out
    }

    fn mask_vec(padded: Triple, window: Triple, shift: Triple) -> Vec<f32> {
        shift_mask(padded, window, shift, &Device::Cpu)
            .and_then(|m| m.flatten_all())
            .and_then(|m| m.to_vec1::<f32>())
            .expect("mask")
    }

    #[test]
    fn shift_mask_hand_values() {
        // One axis of 4 with window 2, shift 1, the others trivial: windows {0,1} and {2,3};
        // regions [0,2), [2,3), [3,4). Window 0 is one region; window 1 splits 2 | 3.
        let m = mask_vec((1, 1, 4), (1, 1, 2), (0, 0, 1));
        assert_eq!(m, vec![0.0, 0.0, 0.0, 0.0, 0.0, -100.0, -100.0, 0.0]);
        // Swin-T stage 0 (16×56×56, window 8×7×7, shift 4×3×3): 128 windows of 392 tokens.
        let (p, w, s) = ((16, 56, 56), (8, 7, 7), (4, 3, 3));
        let m = mask_vec(p, w, s);
        let n = 392;
        assert_eq!(m.len(), 128 * n * n);
        let at = |win: usize, i: usize, j: usize| m[(win * n + i) * n + j];
        // Window 0 lies inside region (0,0,0): nothing masked.
        assert!((0..n * n).all(|k| m[k] == 0.0));
        // The last window (1,7,7) is cut on all three axes (d: 8+[0,4) | 8+[4,8); h and w:
        // 49+[0,4) | 49+[4,7)). Token 0 = (0,0,0) is in region (1,1,1); token (4,3,3) =
        // 4·49+3·7+3 = 220 is in (2,1,1); token (0,0,4) = 4 is in (1,1,2); token (3,2,2) =
        // 3·49+2·7+2 = 163 is in (1,1,1) like token 0.
        let last = 127;
        assert_eq!(at(last, 0, 220), -100.0);
        assert_eq!(at(last, 0, 4), -100.0);
        assert_eq!(at(last, 0, 163), 0.0);
        assert_eq!(at(last, 220, 220), 0.0);
        // Window (0,0,7) (index 7) is cut only in w: tokens 3 (w=3) and 4 (w=4) differ.
        assert_eq!(at(7, 3, 4), -100.0);
        assert_eq!(at(7, 0, 3 + 6 * 7 + 7 * 49), 0.0);
    }

    #[test]
    fn shift_mask_matches_the_reference_loops() {
        for (p, w, s) in [
            ((16, 56, 56), (8, 7, 7), (4, 3, 3)),
            ((16, 7, 7), (8, 7, 7), (4, 0, 0)),
            ((8, 15, 10), (4, 3, 5), (2, 1, 2)),
            ((3, 9, 9), (3, 3, 3), (0, 1, 1)),
        ] {
            assert_eq!(
                mask_vec(p, w, s),
                reference_mask(p, w, s),
                "{p:?} {w:?} {s:?}"
            );
        }
    }

    #[test]
    fn relative_position_index_hand_values() {
        let idx = relative_position_index((8, 7, 7));
        let n = 392;
        assert_eq!(idx.len(), n * n);
        // Same token: Δ = 0 → (7·169 + 6·13 + 6) = 1267, the table's centre.
        assert_eq!(idx[0], 1267);
        assert!((0..n).all(|i| idx[i * n + i] == 1267));
        // i = (0,0,0), j = (7,6,6) (the last token): Δ = (−7,−6,−6) → 0.
        assert_eq!(idx[n - 1], 0);
        // i = (7,6,6), j = (0,0,0): Δ = (7,6,6) → 14·169 + 12·13 + 12 = 2534, the last entry.
        assert_eq!(idx[(n - 1) * n], 2534);
        // i = (0,0,1), j = (1,0,0): Δ = (−1,0,1) → 6·169 + 6·13 + 7 = 1099.
        assert_eq!(idx[n + 49], 1099);
        assert_eq!(*idx.iter().max().expect("max"), 2534);
        // The [:N,:N] slice for a clamped (4,7,7) window is not that window's own index:
        // i = (0,1,0) (token 7), j = (1,0,0) (token 49) under the full window gives
        // 6·169 + 7·13 + 6 = 1111, whereas a (4,7,7) window's own index would be
        // 2·169 + 7·13 + 6 = 435.
        assert_eq!(idx[7 * n + 49], 1111);
    }

    #[test]
    fn effective_window_clamps() {
        assert_eq!(
            effective_window((16, 7, 7), (8, 7, 7), (4, 3, 3)),
            ((8, 7, 7), (4, 0, 0))
        );
        assert_eq!(
            effective_window((4, 56, 56), (8, 7, 7), (4, 3, 3)),
            ((4, 7, 7), (0, 3, 3))
        );
    }

    /// The reshape + matmul patch embedding equals the Conv3d it replaces.
    #[test]
    fn patch_embed_equals_conv3d() -> Result<()> {
        use super::super::ops3d::{conv3d, Conv3dConfig};
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 1f32, (5, 3, 2, 4, 4), &dev)?;
        let bias = Tensor::randn(0f32, 1f32, 5, &dev)?;
        let pe = PatchEmbed3D {
            proj: Linear::new(weight.reshape((5, 96))?, Some(bias.clone())),
            norm: None,
            patch: (2, 4, 4),
            in_channels: 3,
        };
        let x = Tensor::randn(0f32, 1f32, (2, 3, 6, 16, 12), &dev)?;
        let (y, size) = pe.forward_t(&x, false)?;
        assert_eq!(size, (3, 4, 3));
        let conv = conv3d(
            &x,
            &weight,
            &Conv3dConfig {
                stride: (2, 4, 4),
                ..Default::default()
            },
        )?
        .broadcast_add(&bias.reshape((1, 5, 1, 1, 1))?)?;
        let conv = conv.flatten_from(2)?.transpose(1, 2)?;
        let err = (y - conv)?.abs()?.max_all()?.to_scalar::<f32>()?;
        // Outputs are sums of 96 products of N(0,1) values (|y| ~ 10): 1e-4 is ~1e-5 relative.
        assert!(err < 1e-4, "max error {err}");
        Ok(())
    }

    /// The window gather/scatter round-trips and puts padding slots on zero rows.
    #[test]
    fn window_plan_round_trip() -> Result<()> {
        let dev = Device::Cpu;
        let size = (3, 5, 4);
        let (window, shift) = effective_window(size, (2, 3, 3), (1, 1, 1));
        let plan = WindowPlan::new(size, window, shift, &dev)?;
        assert_eq!((plan.n, plan.n_windows), (18, 2 * 2 * 2));
        let x = Tensor::arange(1f32, 61., &dev)?.reshape((1, 60, 1))?;
        let w = plan.partition(&x)?;
        let zeros = w
            .eq(0f32)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        // Padded grid 4×6×6 = 144 slots for 60 tokens.
        assert_eq!(zeros, 84.0);
        let back = plan.reverse(&w, 1)?;
        assert_eq!(
            back.flatten_all()?.to_vec1::<f32>()?,
            x.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    /// The training path (composed LayerNorm / softmax) computes the same function and
    /// back-propagates into the relative-position table through the index gather.
    #[test]
    fn training_path_matches_and_has_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = Config {
            embed_dim: 4,
            depths: vec![2, 2],
            num_heads: vec![1, 2],
            window_size: (2, 3, 3),
            num_classes: 3,
            drop_path_rate: 0.0,
            ..Config::swin_t()
        };
        let varmap = candle_nn::VarMap::new();
        let model = SwinTransformer3D::new(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &dev).pp("backbone"),
        )?;
        for v in varmap.all_vars() {
            v.set(&Tensor::randn(0f32, 0.5, v.shape(), &dev)?)?;
        }
        // 4×24×20 → tokens 2×6×5: D clamps, H and W are shifted, W is padded.
        let x = Tensor::randn(0f32, 1f32, (1, 3, 4, 24, 20), &dev)?;
        let y_inf = model.forward(&x)?;
        let y_train = model.forward_t(&x, true)?;
        assert_eq!(y_inf.dims(), [1, 8, 2, 3, 3]);
        let err = (&y_inf - &y_train)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-4, "train/inference paths differ by {err}");
        let grads = y_train.sqr()?.sum_all()?.backward()?;
        let data = varmap.data().lock().expect("varmap");
        let table = &data["backbone.layers.0.blocks.1.attn.relative_position_bias_table"];
        let g = grads.get(table).expect("no gradient for the bias table");
        assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        Ok(())
    }
}
