//! Depth Anything V2 (relative depth): the DINOv2 encoder ([`super::dinov2`]) and the DPT head
//! of `depth_anything_v2/dpt.py` (`DPTHead`, `DepthAnythingV2.forward`) with
//! `util/blocks.py` (`_make_scratch`, `FeatureFusionBlock`, `ResidualConvUnit`). Weights are
//! named by the official checkpoint's keys (`pretrained.*`, `depth_head.projects.0.weight`,
//! `depth_head.scratch.refinenet4.resConfUnit2.conv1.bias`, ...); [`hf_to_official`] renames a
//! Hugging Face `-hf` file's tensors to them.
//!
//! The input is `[B, 3, H, W]` with H and W any multiples of 14; the output is `[B, H, W]`.

use std::collections::HashMap;

use candle_core::{Module, Result, Tensor};
use candle_nn::{conv2d, conv2d_no_bias, Conv2d, Conv2dConfig, VarBuilder};

use super::dinov2::{self, DinoVisionTransformer};
use super::interp::bilinear_align_corners;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub encoder: dinov2::Config,
    /// The blocks whose outputs feed the head (`intermediate_layer_idx`).
    pub taps: [usize; 4],
    /// Channels of the fusion path (`features`).
    pub features: usize,
    /// Channels of the four reassembled maps (`out_channels`).
    pub out_channels: [usize; 4],
}

/// `head_features_2` of `DPTHead`: fixed, not a parameter of the released models.
const HEAD_FEATURES_2: usize = 32;

impl Config {
    /// `depth_anything_v2_vits` (`run.py` `model_configs['vits']`).
    pub fn vit_small() -> Config {
        Config {
            encoder: dinov2::Config::vit_small(),
            taps: [2, 5, 8, 11],
            features: 64,
            out_channels: [48, 96, 192, 384],
        }
    }

    pub fn vit_base() -> Config {
        Config {
            encoder: dinov2::Config::vit_base(),
            taps: [2, 5, 8, 11],
            features: 128,
            out_channels: [96, 192, 384, 768],
        }
    }

    pub fn vit_large() -> Config {
        Config {
            encoder: dinov2::Config::vit_large(),
            taps: [4, 11, 17, 23],
            features: 256,
            out_channels: [256, 512, 1024, 1024],
        }
    }
}

fn conv3x3_cfg(stride: usize) -> Conv2dConfig {
    Conv2dConfig {
        padding: 1,
        stride,
        ..Default::default()
    }
}

/// `ConvTranspose2d(c, c, kernel_size=k, stride=k, padding=0)`. With the stride equal to the
/// kernel the outputs of different input pixels do not overlap, so the layer is one matmul
/// (every input pixel becomes a k×k block) and a pixel shuffle.
struct PatchUpsample {
    /// `[c_out·k·k, c_in]`, rows in PyTorch's `(out, kh, kw)` order.
    weight: Tensor,
    bias: Tensor,
    c_out: usize,
    k: usize,
}

impl PatchUpsample {
    fn new(c: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        // PyTorch stores transposed-convolution weights as [in, out, kh, kw].
        let w = vb.get((c, c, k, k), "weight")?;
        Ok(PatchUpsample {
            weight: w.reshape((c, c * k * k))?.t()?.contiguous()?,
            bias: vb.get(c, "bias")?,
            c_out: c,
            k,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c_in, h, w) = x.dims4()?;
        let k = self.k;
        let cols = x.reshape((b, c_in, h * w))?;
        let y = self.weight.broadcast_matmul(&cols)?; // [B, c_out·k·k, h·w]
        let y = y
            .reshape((b, self.c_out, k, k, h, w))?
            .permute((0, 1, 4, 2, 5, 3))?
            .reshape((b, self.c_out, h * k, w * k))?;
        y.broadcast_add(&self.bias.reshape((1, self.c_out, 1, 1))?)
    }
}

/// `resize_layers[i]`: ×4 and ×2 transposed convolutions, identity, stride-2 3×3 convolution.
enum Resize {
    Up(PatchUpsample),
    Same,
    Down(Conv2d),
}

impl Resize {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Resize::Up(u) => u.forward(x),
            Resize::Same => Ok(x.clone()),
            Resize::Down(c) => c.forward(x),
        }
    }
}

/// `ResidualConvUnit` without batch norm: `x + conv2(relu(conv1(relu(x))))`.
struct ResidualConvUnit {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResidualConvUnit {
    fn new(features: usize, vb: VarBuilder) -> Result<Self> {
        Ok(ResidualConvUnit {
            conv1: conv2d(features, features, 3, conv3x3_cfg(1), vb.pp("conv1"))?,
            conv2: conv2d(features, features, 3, conv3x3_cfg(1), vb.pp("conv2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward(&x.relu()?)?;
        let y = self.conv2.forward(&y.relu()?)?;
        y + x
    }
}

/// `FeatureFusionBlock` (no deconv, no bn, no expand, `align_corners=True`).
struct FusionBlock {
    /// Only used when there is a skip input: `refinenet4` has the weights but never runs it,
    /// so it is not loaded there.
    res1: Option<ResidualConvUnit>,
    res2: ResidualConvUnit,
    out_conv: Conv2d,
}

impl FusionBlock {
    fn new(features: usize, with_skip: bool, vb: VarBuilder) -> Result<Self> {
        Ok(FusionBlock {
            res1: if with_skip {
                Some(ResidualConvUnit::new(features, vb.pp("resConfUnit1"))?)
            } else {
                None
            },
            res2: ResidualConvUnit::new(features, vb.pp("resConfUnit2"))?,
            out_conv: conv2d(features, features, 1, Default::default(), vb.pp("out_conv"))?,
        })
    }

    /// `size`: the output size; `None` doubles (`scale_factor=2`, floor of 2·H and 2·W).
    fn forward(
        &self,
        x: &Tensor,
        skip: Option<&Tensor>,
        size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let x = match (skip, &self.res1) {
            (Some(s), Some(res1)) => (x + res1.forward(s)?)?,
            (None, _) => x.clone(),
            (Some(_), None) => candle_core::bail!("fusion block built without a skip input"),
        };
        let x = self.res2.forward(&x)?;
        let (_, _, h, w) = x.dims4()?;
        let (oh, ow) = size.unwrap_or((2 * h, 2 * w));
        self.out_conv.forward(&bilinear_align_corners(&x, oh, ow)?)
    }
}

struct DptHead {
    projects: Vec<Conv2d>,
    resize: Vec<Resize>,
    layer_rn: Vec<Conv2d>,
    /// `refinenet1` .. `refinenet4`.
    refinenet: Vec<FusionBlock>,
    output_conv1: Conv2d,
    output_conv2_0: Conv2d,
    output_conv2_2: Conv2d,
}

impl DptHead {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let in_ch = cfg.encoder.embed_dim;
        let oc = cfg.out_channels;
        let f = cfg.features;
        let projects = oc
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                conv2d(
                    in_ch,
                    c,
                    1,
                    Default::default(),
                    vb.pp(format!("projects.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let rl = vb.pp("resize_layers");
        let resize = vec![
            Resize::Up(PatchUpsample::new(oc[0], 4, rl.pp("0"))?),
            Resize::Up(PatchUpsample::new(oc[1], 2, rl.pp("1"))?),
            Resize::Same,
            Resize::Down(conv2d(oc[3], oc[3], 3, conv3x3_cfg(2), rl.pp("3"))?),
        ];
        let scratch = vb.pp("scratch");
        let layer_rn = oc
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                conv2d_no_bias(
                    c,
                    f,
                    3,
                    conv3x3_cfg(1),
                    scratch.pp(format!("layer{}_rn", i + 1)),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let refinenet = (1..=4)
            .map(|i| FusionBlock::new(f, i != 4, scratch.pp(format!("refinenet{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let half = f / 2;
        Ok(DptHead {
            projects,
            resize,
            layer_rn,
            refinenet,
            output_conv1: conv2d(f, half, 3, conv3x3_cfg(1), scratch.pp("output_conv1"))?,
            output_conv2_0: conv2d(
                half,
                HEAD_FEATURES_2,
                3,
                conv3x3_cfg(1),
                scratch.pp("output_conv2.0"),
            )?,
            output_conv2_2: conv2d(
                HEAD_FEATURES_2,
                1,
                1,
                Default::default(),
                scratch.pp("output_conv2.2"),
            )?,
        })
    }

    /// `features`: the four `[B, gh·gw, C]` token maps. Returns `[B, 1, 14·gh, 14·gw]`.
    fn forward(&self, features: &[Tensor], gh: usize, gw: usize, patch: usize) -> Result<Tensor> {
        if features.len() != 4 {
            candle_core::bail!("DPT head: {} feature maps, expected 4", features.len());
        }
        let mut rn = Vec::with_capacity(4);
        for (i, x) in features.iter().enumerate() {
            let (b, _, c) = x.dims3()?;
            let x = x.transpose(1, 2)?.reshape((b, c, gh, gw))?;
            let x = self.resize[i].forward(&self.projects[i].forward(&x)?)?;
            rn.push(self.layer_rn[i].forward(&x)?);
        }
        let size = |t: &Tensor| -> Result<(usize, usize)> {
            let (_, _, h, w) = t.dims4()?;
            Ok((h, w))
        };
        let path4 = self.refinenet[3].forward(&rn[3], None, Some(size(&rn[2])?))?;
        let path3 = self.refinenet[2].forward(&path4, Some(&rn[2]), Some(size(&rn[1])?))?;
        let path2 = self.refinenet[1].forward(&path3, Some(&rn[1]), Some(size(&rn[0])?))?;
        let path1 = self.refinenet[0].forward(&path2, Some(&rn[0]), None)?;
        let out = self.output_conv1.forward(&path1)?;
        let out = bilinear_align_corners(&out, gh * patch, gw * patch)?;
        let out = self.output_conv2_0.forward(&out)?.relu()?;
        self.output_conv2_2.forward(&out)?.relu()
    }
}

pub struct DepthAnythingV2 {
    pretrained: DinoVisionTransformer,
    depth_head: DptHead,
    taps: [usize; 4],
}

impl DepthAnythingV2 {
    /// `vb` at the checkpoint's root (it holds `pretrained.*` and `depth_head.*`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if cfg.taps.iter().any(|&t| t >= cfg.encoder.depth) {
            candle_core::bail!(
                "Depth Anything V2: taps {:?} beyond the encoder's {} blocks",
                cfg.taps,
                cfg.encoder.depth
            );
        }
        Ok(DepthAnythingV2 {
            pretrained: DinoVisionTransformer::new(&cfg.encoder, vb.pp("pretrained"))?,
            depth_head: DptHead::new(cfg, vb.pp("depth_head"))?,
            taps: cfg.taps,
        })
    }
}

impl Module for DepthAnythingV2 {
    /// `[B, 3, H, W]` (ImageNet-normalised RGB, H and W multiples of 14) → `[B, H, W]`
    /// relative inverse depth.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let p = self.pretrained.config().patch_size;
        let features = self.pretrained.get_intermediate_layers(x, &self.taps)?;
        let depth = self.depth_head.forward(&features, h / p, w / p, p)?;
        // `F.relu` after the head's own final ReLU changes nothing; it is kept out.
        depth.squeeze(1)
    }
}

/// Renames the tensors of a Hugging Face `-hf` checkpoint (`DepthAnythingForDepthEstimation`:
/// `backbone.*`, `neck.*`, `head.*`) to the official keys; query, key and value are joined
/// into `qkv`. Both the published files' attention names
/// (`attention.attention.query`, `attention.output.dense`) and transformers 5's
/// (`attention.q_proj`, `attention.o_proj`) are accepted. A map already in the official layout
/// is returned unchanged.
pub fn hf_to_official(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    if !tensors.keys().any(|k| k.starts_with("backbone.")) {
        return Ok(tensors);
    }
    let mut out = HashMap::with_capacity(tensors.len());
    // block index → (kind "weight"/"bias") → [q, k, v]
    let mut qkv: HashMap<(String, String), [Option<Tensor>; 3]> = HashMap::new();
    for (key, t) in tensors {
        if let Some((block, part, kind)) = attention_part(&key) {
            qkv.entry((block, kind)).or_default()[part] = Some(t);
            continue;
        }
        match official_key(&key) {
            Some(k) => {
                out.insert(k, t);
            }
            None => candle_core::bail!("Hugging Face checkpoint: no official name for {key}"),
        }
    }
    for ((block, kind), parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            candle_core::bail!(
                "Hugging Face checkpoint: block {block} lacks one of its query/key/value {kind}s"
            );
        };
        let joined = Tensor::cat(&[&q, &k, &v], 0)?;
        out.insert(format!("pretrained.blocks.{block}.attn.qkv.{kind}"), joined);
    }
    Ok(out)
}

/// `backbone.encoder.layer.{i}.attention.{attention.query | q_proj}.{kind}` → (i, 0..3, kind).
fn attention_part(key: &str) -> Option<(String, usize, String)> {
    let rest = key.strip_prefix("backbone.encoder.layer.")?;
    let (block, rest) = rest.split_once('.')?;
    let rest = rest.strip_prefix("attention.")?;
    let (name, kind) = rest.rsplit_once('.')?;
    let part = match name {
        "attention.query" | "q_proj" => 0,
        "attention.key" | "k_proj" => 1,
        "attention.value" | "v_proj" => 2,
        _ => return None,
    };
    Some((block.to_string(), part, kind.to_string()))
}

/// The official key of every `-hf` tensor other than query/key/value.
fn official_key(key: &str) -> Option<String> {
    if let Some(rest) = key.strip_prefix("backbone.") {
        let fixed = match rest {
            "embeddings.cls_token" => Some("cls_token"),
            "embeddings.mask_token" => Some("mask_token"),
            "embeddings.position_embeddings" => Some("pos_embed"),
            "layernorm.weight" => Some("norm.weight"),
            "layernorm.bias" => Some("norm.bias"),
            _ => None,
        };
        if let Some(k) = fixed {
            return Some(format!("pretrained.{k}"));
        }
        if let Some(kind) = rest.strip_prefix("embeddings.patch_embeddings.projection.") {
            return Some(format!("pretrained.patch_embed.proj.{kind}"));
        }
        let rest = rest.strip_prefix("encoder.layer.")?;
        let (block, name) = rest.split_once('.')?;
        let name = match name {
            "layer_scale1.lambda1" => "ls1.gamma".to_string(),
            "layer_scale2.lambda1" => "ls2.gamma".to_string(),
            n => {
                let (module, kind) = n.rsplit_once('.')?;
                let module = match module {
                    "attention.output.dense" | "attention.o_proj" => "attn.proj",
                    "norm1" | "norm2" | "mlp.fc1" | "mlp.fc2" => module,
                    _ => return None,
                };
                format!("{module}.{kind}")
            }
        };
        return Some(format!("pretrained.blocks.{block}.{name}"));
    }
    if let Some(rest) = key.strip_prefix("neck.reassemble_stage.layers.") {
        let (i, rest) = rest.split_once('.')?;
        let (module, kind) = rest.split_once('.')?;
        let module = match module {
            "projection" => "projects",
            "resize" => "resize_layers",
            _ => return None,
        };
        return Some(format!("depth_head.{module}.{i}.{kind}"));
    }
    if let Some(rest) = key.strip_prefix("neck.convs.") {
        let (i, kind) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        return Some(format!("depth_head.scratch.layer{}_rn.{kind}", i + 1));
    }
    if let Some(rest) = key.strip_prefix("neck.fusion_stage.layers.") {
        let (i, rest) = rest.split_once('.')?;
        // The fusion stage runs deepest first: its layer 0 is refinenet4.
        let i: usize = i.parse().ok()?;
        let n = 4usize.checked_sub(i).filter(|n| (1..=4).contains(n))?;
        let (module, rest) = rest.split_once('.')?;
        let module = match module {
            "projection" => "out_conv".to_string(),
            "residual_layer1" => "resConfUnit1".to_string(),
            "residual_layer2" => "resConfUnit2".to_string(),
            _ => return None,
        };
        let rest = match rest.split_once('.') {
            Some(("convolution1", kind)) => format!("conv1.{kind}"),
            Some(("convolution2", kind)) => format!("conv2.{kind}"),
            Some(_) => return None,
            None => rest.to_string(),
        };
        return Some(format!("depth_head.scratch.refinenet{n}.{module}.{rest}"));
    }
    if let Some(rest) = key.strip_prefix("head.") {
        let (module, kind) = rest.split_once('.')?;
        let module = match module {
            "conv1" => "output_conv1",
            "conv2" => "output_conv2.0",
            "conv3" => "output_conv2.2",
            _ => return None,
        };
        return Some(format!("depth_head.scratch.{module}.{kind}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_the_checkpoint_keys() {
        let cases = [
            (
                "backbone.embeddings.position_embeddings",
                "pretrained.pos_embed",
            ),
            (
                "backbone.encoder.layer.7.layer_scale2.lambda1",
                "pretrained.blocks.7.ls2.gamma",
            ),
            (
                "backbone.encoder.layer.0.attention.output.dense.bias",
                "pretrained.blocks.0.attn.proj.bias",
            ),
            (
                "backbone.encoder.layer.3.attention.o_proj.weight",
                "pretrained.blocks.3.attn.proj.weight",
            ),
            (
                "neck.reassemble_stage.layers.3.resize.weight",
                "depth_head.resize_layers.3.weight",
            ),
            ("neck.convs.0.weight", "depth_head.scratch.layer1_rn.weight"),
            (
                "neck.fusion_stage.layers.0.residual_layer2.convolution1.bias",
                "depth_head.scratch.refinenet4.resConfUnit2.conv1.bias",
            ),
            (
                "neck.fusion_stage.layers.3.projection.weight",
                "depth_head.scratch.refinenet1.out_conv.weight",
            ),
            ("head.conv3.bias", "depth_head.scratch.output_conv2.2.bias"),
        ];
        for (hf, official) in cases {
            assert_eq!(official_key(hf).as_deref(), Some(official), "{hf}");
        }
        assert_eq!(
            official_key("neck.fusion_stage.layers.4.projection.weight"),
            None
        );
        assert_eq!(official_key("backbone.pooler.weight"), None);
        assert_eq!(
            attention_part("backbone.encoder.layer.11.attention.attention.value.weight"),
            Some(("11".into(), 2, "weight".into()))
        );
    }
}
