//! The DINOv2 ViT encoder as Depth Anything V2 builds it: `depth_anything_v2/dinov2.py`
//! `DinoVisionTransformer` with `dinov2_layers/` (`PatchEmbed`, `NestedTensorBlock`,
//! `Attention`, `LayerScale`, `Mlp`) for `DINOv2("vits" | "vitb" | "vitl")`: patch 14, no
//! register tokens, layer scale, MLP feed-forward, LayerNorm eps 1e-6. Weights are named by the
//! checkpoint's own keys below `pretrained.` (`cls_token`, `pos_embed`,
//! `patch_embed.proj.weight`, `blocks.3.attn.qkv.weight`, `blocks.3.ls1.gamma`, `norm.weight`).
//!
//! Any input whose height and width are multiples of the patch size is accepted: the position
//! embedding, trained on a 37×37 grid, is resized to the input's grid by
//! `interpolate_pos_encoding` (bicubic with the `+0.1` scale-factor rule, see
//! [`DinoVisionTransformer::pos_embed_for`]).

use candle_core::{Module, Result, Tensor};
use candle_nn::{conv2d, layer_norm, linear, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};

use super::interp;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: usize,
    pub patch_size: usize,
    /// The training resolution; the position embedding holds `(img_size / patch)²` patches.
    pub img_size: usize,
    /// Added to the target grid before the scale factor is taken (`interpolate_offset`).
    pub interpolate_offset: f64,
    pub layer_norm_eps: f64,
}

impl Config {
    /// `vit_small` as `DINOv2("vits")` builds it.
    pub fn vit_small() -> Config {
        Config {
            embed_dim: 384,
            depth: 12,
            num_heads: 6,
            mlp_ratio: 4,
            patch_size: 14,
            img_size: 518,
            interpolate_offset: 0.1,
            layer_norm_eps: 1e-6,
        }
    }

    pub fn vit_base() -> Config {
        Config {
            embed_dim: 768,
            num_heads: 12,
            ..Self::vit_small()
        }
    }

    pub fn vit_large() -> Config {
        Config {
            embed_dim: 1024,
            depth: 24,
            num_heads: 16,
            ..Self::vit_small()
        }
    }

    /// Side of the square patch grid the position embedding was trained on.
    pub fn pos_grid(&self) -> usize {
        self.img_size / self.patch_size
    }
}

/// `Attention` (the `MemEffAttention` subclass computes the same without xFormers).
struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        if cfg.num_heads == 0 || dim % cfg.num_heads != 0 {
            candle_core::bail!(
                "DINOv2: embed_dim {dim} is not a multiple of num_heads {}",
                cfg.num_heads
            );
        }
        Ok(Attention {
            qkv: linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: linear(dim, dim, vb.pp("proj"))?,
            num_heads: cfg.num_heads,
            scale: ((dim / cfg.num_heads) as f64).powf(-0.5),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.num_heads;
        // [B, N, 3·C] → [3, B, heads, N, head_dim], the reference's reshape + permute.
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.num_heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        // The reference scales q before the product, not the logits after it.
        let q = (qkv.get(0)? * self.scale)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let attn = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.proj.forward(&y)
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.embed_dim * cfg.mlp_ratio;
        Ok(Mlp {
            fc1: linear(cfg.embed_dim, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, cfg.embed_dim, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // nn.GELU's default is the exact erf form.
        self.fc2.forward(&self.fc1.forward(x)?.gelu_erf()?)
    }
}

/// `NestedTensorBlock` at inference: pre-norm attention and MLP, each scaled by its
/// `LayerScale` before the residual add.
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    ls1: Tensor,
    norm2: LayerNorm,
    mlp: Mlp,
    ls2: Tensor,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        Ok(Block {
            norm1: layer_norm(dim, cfg.layer_norm_eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ls1: vb.get(dim, "ls1.gamma")?,
            norm2: layer_norm(dim, cfg.layer_norm_eps, vb.pp("norm2"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            ls2: vb.get(dim, "ls2.gamma")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attn.forward(&self.norm1.forward(x)?)?;
        let x = (x + a.broadcast_mul(&self.ls1)?)?;
        let m = self.mlp.forward(&self.norm2.forward(&x)?)?;
        x + m.broadcast_mul(&self.ls2)?
    }
}

pub struct DinoVisionTransformer {
    patch_embed: Conv2d,
    cls_token: Tensor,
    /// `[1, 1 + grid², C]`.
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    cfg: Config,
}

impl DinoVisionTransformer {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        let p = cfg.patch_size;
        if p == 0 || cfg.img_size % p != 0 {
            candle_core::bail!(
                "DINOv2: img_size {} is not a multiple of the patch size {p}",
                cfg.img_size
            );
        }
        let patch_cfg = Conv2dConfig {
            stride: p,
            ..Default::default()
        };
        let grid = cfg.pos_grid();
        Ok(DinoVisionTransformer {
            patch_embed: conv2d(3, dim, p, patch_cfg, vb.pp("patch_embed.proj"))?,
            cls_token: vb.get((1, 1, dim), "cls_token")?,
            pos_embed: vb.get((1, 1 + grid * grid, dim), "pos_embed")?,
            blocks: (0..cfg.depth)
                .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<_>>()?,
            norm: layer_norm(dim, cfg.layer_norm_eps, vb.pp("norm"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The position embedding for a `gh × gw` patch grid (`interpolate_pos_encoding`).
    ///
    /// The reference asks `F.interpolate` for `scale_factor = ((g + 0.1) / 37)` per axis, not
    /// for a size: the output is `floor(37 · s) = g` samples, but ATen then spaces them by
    /// `1 / s`, i.e. `37 / (g + 0.1)` input samples apart rather than `37 / g`. At the training
    /// grid of a square input the table is used as is.
    pub fn pos_embed_for(&self, gh: usize, gw: usize) -> Result<Tensor> {
        let grid = self.cfg.pos_grid();
        if gh == grid && gw == grid {
            return Ok(self.pos_embed.clone());
        }
        let dim = self.cfg.embed_dim;
        let cls = self.pos_embed.narrow(1, 0, 1)?;
        let patches = self
            .pos_embed
            .narrow(1, 1, grid * grid)?
            .reshape((1, grid, grid, dim))?
            .permute((0, 3, 1, 2))?;
        // sqrt(N) in the reference is exactly the grid side: N is a perfect square.
        let off = self.cfg.interpolate_offset;
        let sh = (gh as f64 + off) / grid as f64;
        let sw = (gw as f64 + off) / grid as f64;
        let out = interp::bicubic_scale_factor(&patches, (gh, gw), (sh, sw))?;
        let out = out.permute((0, 2, 3, 1))?.reshape((1, gh * gw, dim))?;
        Tensor::cat(&[&cls, &out], 1)
    }

    /// `prepare_tokens_with_masks` without masks: patch tokens after the class token, plus
    /// the position embedding. `x` is `[B, 3, H, W]` with H and W multiples of the patch.
    fn prepare_tokens(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let p = self.cfg.patch_size;
        if h % p != 0 || w % p != 0 || h == 0 || w == 0 {
            candle_core::bail!("DINOv2: input {h}×{w} is not a non-empty multiple of {p}");
        }
        let (gh, gw) = (h / p, w / p);
        let tokens = self
            .patch_embed
            .forward(x)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let cls = self
            .cls_token
            .broadcast_as((b, 1, self.cfg.embed_dim))?
            .to_dtype(tokens.dtype())?;
        let x = Tensor::cat(&[&cls, &tokens], 1)?;
        x.broadcast_add(&self.pos_embed_for(gh, gw)?)
    }

    /// `get_intermediate_layers(x, taps, norm=True)`: the final LayerNorm applied to the
    /// output of each block in `taps` (0-based, increasing), class token dropped: one
    /// `[B, gh·gw, C]` per tap, patches in row-major grid order.
    pub fn get_intermediate_layers(&self, x: &Tensor, taps: &[usize]) -> Result<Vec<Tensor>> {
        if let Some(&t) = taps.iter().find(|&&t| t >= self.blocks.len()) {
            candle_core::bail!(
                "DINOv2: intermediate layer {t} asked of {} blocks",
                self.blocks.len()
            );
        }
        let mut x = self.prepare_tokens(x)?;
        let mut out = Vec::with_capacity(taps.len());
        let last = taps.iter().copied().max().unwrap_or(0);
        for (i, blk) in self.blocks.iter().enumerate().take(last + 1) {
            x = blk.forward(&x)?;
            if taps.contains(&i) {
                let n = x.dim(1)?;
                out.push(self.norm.forward(&x)?.narrow(1, 1, n - 1)?);
            }
        }
        Ok(out)
    }
}

impl Module for DinoVisionTransformer {
    /// The normalised class token (`forward` with the identity head).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.prepare_tokens(x)?;
        for blk in &self.blocks {
            x = blk.forward(&x)?;
        }
        self.norm.forward(&x)?.narrow(1, 0, 1)?.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn tiny() -> Config {
        Config {
            embed_dim: 8,
            depth: 3,
            num_heads: 2,
            img_size: 70,
            ..Config::vit_small()
        }
    }

    #[test]
    fn square_training_grid_uses_the_table_and_other_grids_resize_it() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net =
            DinoVisionTransformer::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &dev))
                .expect("build");
        let same = net.pos_embed_for(5, 5).expect("5x5");
        assert_eq!(same.dims(), &[1, 26, 8]);
        let diff = (same - &net.pos_embed)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert_eq!(diff, 0.0);
        let other = net.pos_embed_for(3, 7).expect("3x7");
        assert_eq!(other.dims(), &[1, 22, 8]);
        let x = Tensor::zeros((2, 3, 42, 98), DType::F32, &dev).expect("x");
        let outs = net.get_intermediate_layers(&x, &[0, 2]).expect("layers");
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[1].dims(), &[2, 21, 8]);
        assert!(net.get_intermediate_layers(&x, &[3]).is_err());
        let bad = Tensor::zeros((1, 3, 40, 98), DType::F32, &dev).expect("bad");
        let e = net
            .get_intermediate_layers(&bad, &[0])
            .expect_err("not /14");
        assert!(e.to_string().contains("multiple of 14"), "{e}");
    }
}
