//! The ResNet3d family with `Bottleneck3d` blocks: PoseC3D's `ResNet3dSlowOnly`, the RGB
//! SlowOnly-R50, and the two pathways of RGBPoseConv3D (mmaction2 1.2
//! `mmaction/models/backbones/resnet3d.py`, `resnet3d_slowonly.py`, `resnet3d_slowfast.py`
//! `ResNet3dPathway`; pyskl `pyskl/models/cnns/resnet3d.py` has the same maths), plus
//! `I3DHead` (`mmaction/models/heads/i3d_head.py`). Weights are named by the checkpoint's own
//! keys (`backbone.conv1.conv.weight`, `backbone.layer1.0.conv2.bn.running_mean`,
//! `cls_head.fc_cls.weight`). Inference only so far: BatchNorm uses its running statistics.
//!
//! Scope: depth ≥ 50 (Bottleneck3d, expansion 4), `style='pytorch'`, `inflate_style='3x1x1'`,
//! dilation 1 and no non-local blocks: every PoseC3D / SlowOnly / RGBPose config in use.

use candle_core::{Result, Tensor};
use candle_nn::{
    batch_norm, linear, BatchNorm, BatchNormConfig, Linear, Module, ModuleT, VarBuilder,
};

use super::ops3d::{conv3d, global_avg_pool3d, max_pool3d, Conv3dConfig, Triple};

/// Bottleneck3d's channel expansion (conv3 outputs `4 · planes`).
pub const EXPANSION: usize = 4;

/// The backbone and head hyper-parameters of a ResNet3d(SlowOnly) recognizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub in_channels: usize,
    pub base_channels: usize,
    pub stage_blocks: Vec<usize>,
    /// Per stage: 1 = '3x1x1' inflated blocks.
    pub inflate: Vec<usize>,
    pub spatial_strides: Vec<usize>,
    pub temporal_strides: Vec<usize>,
    pub conv1_kernel: Triple,
    /// Stem conv stride as (temporal, spatial): pyskl's `conv1_stride` tuple, mmaction2's
    /// `(conv1_stride_t, conv1_stride_s)`.
    pub conv1_stride: (usize, usize),
    /// Stem max-pool stride as (temporal, spatial), like `conv1_stride`.
    pub pool1_stride: (usize, usize),
    /// mmaction2 `with_pool2`: a (2,1,1)/(2,1,1) temporal max-pool after layer1. `ResNet3d`
    /// defaults it to true, `ResNet3dSlowOnly` to false; RGBPoseConv3D's forward never applies it.
    pub with_pool2: bool,
    pub num_classes: usize,
}

impl Config {
    /// MM-Gesture's `slowonly_r50_iMiGUE_36/joint.py`: 36 input channels, stages (4, 6, 3),
    /// base 32, temporal stride 2 in layer3, 32 classes.
    pub fn posec3d_joint36() -> Config {
        Config {
            in_channels: 36,
            base_channels: 32,
            stage_blocks: vec![4, 6, 3],
            inflate: vec![0, 1, 1],
            spatial_strides: vec![2, 2, 2],
            temporal_strides: vec![1, 1, 2],
            conv1_kernel: (1, 7, 7),
            conv1_stride: (1, 1),
            pool1_stride: (1, 1),
            with_pool2: false,
            num_classes: 32,
        }
    }

    /// MM-Gesture's `limb.py`: the same network as `joint.py` (36 limb-heatmap channels).
    pub fn posec3d_limb36() -> Config {
        Self::posec3d_joint36()
    }

    /// Former name of [`Config::posec3d_joint36`].
    pub fn posec3d_imigue36() -> Config {
        Self::posec3d_joint36()
    }

    /// pyskl's NTU60-XSub keypoint config (17 COCO keypoints, 60 classes).
    pub fn posec3d_ntu60() -> Config {
        Config {
            in_channels: 17,
            num_classes: 60,
            ..Self::posec3d_joint36()
        }
    }

    /// mmaction2 `configs/_base_/models/slowonly_r50.py` (= pyskl / MM-Gesture
    /// `rgbpose_conv3d/rgb_only.py`): depth 50, stages (3, 4, 6, 3), conv1 (1,7,7) with spatial
    /// stride 2, pool stride 2, inflate (0, 0, 1, 1); 32 classes as MM-Gesture's rgb_only.
    pub fn slowonly_r50_rgb() -> Config {
        Config {
            in_channels: 3,
            base_channels: 64,
            stage_blocks: vec![3, 4, 6, 3],
            inflate: vec![0, 0, 1, 1],
            spatial_strides: vec![1, 2, 2, 2],
            temporal_strides: vec![1, 1, 1, 1],
            conv1_kernel: (1, 7, 7),
            conv1_stride: (1, 2),
            pool1_stride: (1, 2),
            with_pool2: false,
            num_classes: 32,
        }
    }

    /// Channels of the last stage's output (`ResNet3d.feat_dim`).
    pub fn feat_dim(&self) -> usize {
        self.stage_channels(self.stage_blocks.len().saturating_sub(1))
    }

    /// Output channels of stage `i` (`base · 2^i · 4`).
    pub fn stage_channels(&self, i: usize) -> usize {
        self.base_channels * (1 << i) * EXPANSION
    }
}

/// Conv (no bias) → BN (eps 1e-5) → optional ReLU: mmcv's `ConvModule` with `norm_cfg=BN3d`.
pub(crate) struct ConvModule {
    weight: Tensor,
    bn: Option<BatchNorm>,
    cfg: Conv3dConfig,
    relu: bool,
}

impl ConvModule {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: Triple,
        stride: Triple,
        padding: Triple,
        with_bn: bool,
        relu: bool,
    ) -> Result<Self> {
        let weight = vb
            .pp("conv")
            .get((cout, cin, kernel.0, kernel.1, kernel.2), "weight")?;
        // ConvModule without norm_cfg (RGBPose's pose→rgb lateral) has no `bn` keys at all.
        let bn = if with_bn {
            Some(batch_norm(cout, BatchNormConfig::from(1e-5), vb.pp("bn"))?)
        } else {
            None
        };
        Ok(ConvModule {
            weight,
            bn,
            cfg: Conv3dConfig {
                stride,
                padding,
                dilation: (1, 1, 1),
            },
            relu,
        })
    }
}

impl Module for ConvModule {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv3d(x, &self.weight, &self.cfg)?;
        let y = match &self.bn {
            Some(bn) => bn.forward_t(&y, false)?,
            None => y,
        };
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

/// mmaction2 `Bottleneck3d` (style 'pytorch', inflate_style '3x1x1').
struct Bottleneck3d {
    conv1: ConvModule,
    conv2: ConvModule,
    conv3: ConvModule,
    downsample: Option<ConvModule>,
}

impl Bottleneck3d {
    fn new(
        vb: VarBuilder,
        inplanes: usize,
        planes: usize,
        spatial_stride: usize,
        temporal_stride: usize,
        inflate: bool,
    ) -> Result<Self> {
        let (k1, p1) = if inflate {
            ((3, 1, 1), (1, 0, 0))
        } else {
            ((1, 1, 1), (0, 0, 0))
        };
        let stride = (temporal_stride, spatial_stride, spatial_stride);
        let conv1 = ConvModule::new(
            vb.pp("conv1"),
            inplanes,
            planes,
            k1,
            (1, 1, 1),
            p1,
            true,
            true,
        )?;
        // style='pytorch': the (temporal and spatial) stride sits on the 1×3×3 conv.
        let conv2 = ConvModule::new(
            vb.pp("conv2"),
            planes,
            planes,
            (1, 3, 3),
            stride,
            (0, 1, 1),
            true,
            true,
        )?;
        let conv3 = ConvModule::new(
            vb.pp("conv3"),
            planes,
            planes * EXPANSION,
            (1, 1, 1),
            (1, 1, 1),
            (0, 0, 0),
            true,
            false,
        )?;
        // `make_res_layer` builds it when `spatial_stride != 1 or inplanes != planes * 4`;
        // lateral channels make `inplanes` differ, so fused stages always get one.
        let downsample = if spatial_stride != 1 || inplanes != planes * EXPANSION {
            Some(ConvModule::new(
                vb.pp("downsample"),
                inplanes,
                planes * EXPANSION,
                (1, 1, 1),
                stride,
                (0, 0, 0),
                true,
                false,
            )?)
        } else {
            None
        };
        Ok(Bottleneck3d {
            conv1,
            conv2,
            conv3,
            downsample,
        })
    }
}

impl Module for Bottleneck3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self
            .conv3
            .forward(&self.conv2.forward(&self.conv1.forward(x)?)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        (y + identity)?.relu()
    }
}

/// `ResNet3d` as used by `ResNet3dSlowOnly` and `ResNet3dPathway`: stem conv, stem max-pool,
/// stages of Bottleneck3d. A pathway's fused stages take extra lateral channels in their first
/// block (`lateral_inplanes`, concatenated after the stage's own input).
pub struct ResNet3dSlowOnly {
    conv1: ConvModule,
    pool1_stride: (usize, usize),
    with_pool2: bool,
    layers: Vec<Vec<Bottleneck3d>>,
}

impl ResNet3dSlowOnly {
    /// `vb` at the backbone's prefix (`backbone`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::new_pathway(cfg, &[], vb)
    }

    /// A pathway whose stage `i` takes `lateral_inplanes[i]` extra input channels (missing
    /// entries are 0): mmaction2 `ResNet3d.__init__` adds them to the first block's `inplanes`.
    pub fn new_pathway(cfg: &Config, lateral_inplanes: &[usize], vb: VarBuilder) -> Result<Self> {
        let n = cfg.stage_blocks.len();
        if cfg.inflate.len() != n
            || cfg.spatial_strides.len() != n
            || cfg.temporal_strides.len() != n
        {
            candle_core::bail!("resnet3d: per-stage lists must all have {n} entries: {cfg:?}");
        }
        let (kt, kh, kw) = cfg.conv1_kernel;
        let conv1 = ConvModule::new(
            vb.pp("conv1"),
            cfg.in_channels,
            cfg.base_channels,
            cfg.conv1_kernel,
            (cfg.conv1_stride.0, cfg.conv1_stride.1, cfg.conv1_stride.1),
            ((kt - 1) / 2, (kh - 1) / 2, (kw - 1) / 2),
            true,
            true,
        )?;
        let mut inplanes = cfg.base_channels;
        let mut layers = Vec::with_capacity(n);
        for (i, &blocks) in cfg.stage_blocks.iter().enumerate() {
            let planes = cfg.base_channels * (1 << i);
            let vbl = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks);
            inplanes += lateral_inplanes.get(i).copied().unwrap_or(0);
            for b in 0..blocks {
                let (ss, ts) = if b == 0 {
                    (cfg.spatial_strides[i], cfg.temporal_strides[i])
                } else {
                    (1, 1)
                };
                stage.push(Bottleneck3d::new(
                    vbl.pp(b.to_string()),
                    inplanes,
                    planes,
                    ss,
                    ts,
                    cfg.inflate[i] == 1,
                )?);
                inplanes = planes * EXPANSION;
            }
            layers.push(stage);
        }
        Ok(ResNet3dSlowOnly {
            conv1,
            pool1_stride: cfg.pool1_stride,
            with_pool2: cfg.with_pool2,
            layers,
        })
    }

    pub fn num_stages(&self) -> usize {
        self.layers.len()
    }

    /// `conv1` then `maxpool`.
    pub fn forward_stem(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward(x)?;
        // The stem max-pool always runs (`with_pool1=True`), even with stride 1 (a 3×3 filter).
        let (pt, ps) = self.pool1_stride;
        max_pool3d(&x, (1, 3, 3), (pt, ps, ps), (0, 1, 1))
    }

    /// Stage `i` (`layer{i+1}`) alone, without pool2: what RGBPoseConv3D's forward calls.
    pub fn forward_stage(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let stage = self
            .layers
            .get(i)
            .ok_or_else(|| candle_core::Error::Msg(format!("resnet3d: no stage {i}")))?;
        let mut x = x.clone();
        for block in stage {
            x = block.forward(&x)?;
        }
        Ok(x)
    }
}

impl Module for ResNet3dSlowOnly {
    /// `ResNet3d.forward` with `out_indices` = the last stage.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.forward_stem(x)?;
        for i in 0..self.layers.len() {
            x = self.forward_stage(i, &x)?;
            if i == 0 && self.with_pool2 {
                x = max_pool3d(&x, (2, 1, 1), (2, 1, 1), (0, 0, 0))?;
            }
        }
        Ok(x)
    }
}

/// `I3DHead` / pyskl `SimpleHead` (3D): global average pool → (dropout) → `fc_cls`.
pub struct I3DHead {
    fc_cls: Linear,
}

impl I3DHead {
    pub fn new(in_channels: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(I3DHead {
            fc_cls: linear(in_channels, num_classes, vb.pp("fc_cls"))?,
        })
    }
}

impl Module for I3DHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Dropout is the identity at inference.
        self.fc_cls.forward(&global_avg_pool3d(x)?)
    }
}

/// Backbone + head under the checkpoint's `backbone.` / `cls_head.` prefixes: PoseC3D, and
/// equally the RGB SlowOnly-R50 recognizer (`Config::slowonly_r50_rgb`).
pub struct PoseC3D {
    pub backbone: ResNet3dSlowOnly,
    pub head: I3DHead,
}

/// The RGB SlowOnly recognizer has exactly PoseC3D's structure (`Recognizer3D` + `I3DHead`).
pub type SlowOnlyRgb = PoseC3D;

impl PoseC3D {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(PoseC3D {
            backbone: ResNet3dSlowOnly::new(cfg, vb.pp("backbone"))?,
            head: I3DHead::new(cfg.feat_dim(), cfg.num_classes, vb.pp("cls_head"))?,
        })
    }
}

impl Module for PoseC3D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.backbone.forward(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn ntu60_parameter_count_and_key_shapes_match_the_reference() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let _net = PoseC3D::new(&Config::posec3d_ntu60(), vb).expect("build");
        let data = vm.data().lock().expect("lock");
        let learnable: usize = data
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, v)| v.elem_count())
            .sum();
        // models.md §1.5: backbone 1,994,080 + head 30,780 = 2,024,860.
        assert_eq!(learnable, 2_024_860);
        let dims = |k: &str| data.get(k).map(|v| v.dims().to_vec());
        assert_eq!(
            dims("backbone.conv1.conv.weight"),
            Some(vec![32, 17, 1, 7, 7])
        );
        assert_eq!(
            dims("backbone.layer1.0.conv3.conv.weight"),
            Some(vec![128, 32, 1, 1, 1])
        );
        assert_eq!(
            dims("backbone.layer1.0.downsample.conv.weight"),
            Some(vec![128, 32, 1, 1, 1])
        );
        assert_eq!(
            dims("backbone.layer2.0.conv1.conv.weight"),
            Some(vec![64, 128, 3, 1, 1])
        );
        assert_eq!(
            dims("backbone.layer3.0.downsample.conv.weight"),
            Some(vec![512, 256, 1, 1, 1])
        );
        assert_eq!(
            dims("backbone.layer3.2.conv2.bn.running_var"),
            Some(vec![128])
        );
        assert_eq!(dims("cls_head.fc_cls.weight"), Some(vec![60, 512]));
        assert!(dims("backbone.layer1.1.downsample.conv.weight").is_none());
    }

    #[test]
    fn forward_shapes_follow_the_strides() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let cfg = Config::posec3d_joint36();
        let net = PoseC3D::new(&cfg, vb).expect("build");
        // A small clip: T 4, 16×16 → layer3 halves T once and H, W three times.
        let x = Tensor::rand(0f32, 1.0, (2, 36, 4, 16, 16), &dev).expect("x");
        let feat = net.backbone.forward(&x).expect("backbone");
        assert_eq!(feat.dims(), [2, 512, 2, 2, 2]);
        let logits = net.head.forward(&feat).expect("head");
        assert_eq!(logits.dims(), [2, 32]);
        let v = logits
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("v");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn slowonly_rgb_stem_strides_and_pool2() {
        let dev = Device::Cpu;
        let mut cfg = Config::slowonly_r50_rgb();
        (cfg.base_channels, cfg.stage_blocks) = (8, vec![1, 1, 1, 1]);
        let vm = VarMap::new();
        let net = PoseC3D::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).expect("b");
        // conv1 (1,2,2) and pool (1,2,2) quarter 64×64; layers 2–4 halve it three more times.
        let x = Tensor::rand(0f32, 1.0, (1, 3, 4, 64, 64), &dev).expect("x");
        assert_eq!(
            net.backbone.forward(&x).expect("f").dims(),
            [1, 256, 4, 2, 2]
        );
        // with_pool2 (mmaction2 ResNet3d's default) halves time after layer1.
        cfg.with_pool2 = true;
        let vm = VarMap::new();
        let net = PoseC3D::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).expect("b");
        assert_eq!(
            net.backbone.forward(&x).expect("f").dims(),
            [1, 256, 2, 2, 2]
        );
    }
}
