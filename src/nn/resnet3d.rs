//! The ResNet3d family with `Bottleneck3d` blocks: PoseC3D's `ResNet3dSlowOnly`, the RGB
//! SlowOnly-R50, and the two pathways of RGBPoseConv3D (mmaction2 1.2
//! `mmaction/models/backbones/resnet3d.py`, `resnet3d_slowonly.py`, `resnet3d_slowfast.py`
//! `ResNet3dPathway`; pyskl `pyskl/models/cnns/resnet3d.py` has the same maths), plus
//! `I3DHead` (`mmaction/models/heads/i3d_head.py`). Weights are named by the checkpoint's own
//! keys (`backbone.conv1.conv.weight`, `backbone.layer1.0.conv2.bn.running_mean`,
//! `cls_head.fc_cls.weight`). `Module::forward` is inference (BatchNorm on its running
//! statistics, no dropout); `forward_t(x, true)` is PyTorch's `train()` mode: BatchNorm on batch
//! statistics with the running-stat update of `torch.nn.BatchNorm3d`, dropout in the head.
//!
//! Scope: depth ≥ 50 (Bottleneck3d, expansion 4), `style='pytorch'`, `inflate_style='3x1x1'`,
//! dilation 1 and no non-local blocks: every PoseC3D / SlowOnly / RGBPose config in use.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{linear, Init, Linear, Module, VarBuilder};

use super::ops3d::{
    add_relu, batch_norm_train, conv3d, global_avg_pool3d, max_pool3d, Conv3dConfig, MaskRng,
    Triple,
};

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

/// `torch.nn.BatchNorm3d(eps=1e-5, momentum=0.1)` (`torch/nn/modules/batchnorm.py`, the
/// `norm_cfg=BN3d` of every ResNet3d config). candle's own `BatchNorm` transposes the whole
/// activation to a channel-major copy in training mode; reducing `[N, C, T·H·W]` in place is
/// cheaper on these volumes.
pub(crate) struct BatchNorm3d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm3d {
    pub(crate) fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.))?;
        let mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.))?;
        let var = vb.get_with_hints(channels, "running_var", Init::Const(1.))?;
        // Built from a VarMap the statistics already are variables and `from_tensor` shares
        // their storage, so the updates below are what a checkpoint of the VarMap saves.
        Ok(BatchNorm3d {
            weight,
            bias,
            running_mean: Var::from_tensor(&mean)?,
            running_var: Var::from_tensor(&var)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Eval-mode BatchNorm as a per-channel affine map `x·scale + shift`.
    pub(crate) fn eval_affine(&self) -> Result<(Tensor, Tensor)> {
        let mean = self.running_mean.as_detached_tensor();
        let var = self.running_var.as_detached_tensor();
        let scale = (var + self.eps)?.sqrt()?.recip()?.mul(&self.weight)?;
        let shift = self.bias.sub(&mean.mul(&scale)?)?;
        Ok((scale, shift))
    }

    /// Train: normalise by the batch's mean and biased variance over (N, T, H, W), and move the
    /// running statistics towards the batch mean and the *unbiased* variance, as PyTorch does.
    /// Eval: the running statistics, with the operations of candle's `BatchNorm::forward_eval`
    /// so inference is unchanged against the parity fixtures.
    #[cfg(test)]
    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_relu_t(x, train, false)
    }

    /// [`BatchNorm3d::forward_t`] followed by ReLU when `relu`; in training on the CPU in f32
    /// both are one autograd op (`ops3d::batch_norm_train`), which keeps two activations for
    /// backward where the composed version keeps six.
    pub(crate) fn forward_relu_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let y = self.forward_plain_t(x, train, relu)?;
        match y {
            (y, true) => Ok(y),
            (y, false) if relu => y.relu(),
            (y, false) => Ok(y),
        }
    }

    /// The output and whether ReLU was already applied.
    fn forward_plain_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<(Tensor, bool)> {
        let fused = train
            && x.device().is_cpu()
            && x.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
            && self.bias.dtype() == DType::F32;
        if fused {
            let dims = x.dims();
            let c = self.weight.dim(0)?;
            if dims.len() < 2 || dims[1] != c {
                candle_core::bail!(
                    "batch-norm: input {dims:?} does not have {c} channels in dim 1"
                );
            }
            let count = x.elem_count() / c;
            if count < 2 {
                candle_core::bail!(
                    "batch-norm in training mode needs more than one value per channel, got {dims:?}"
                );
            }
            let (y, mean, var) = batch_norm_train(x, &self.weight, &self.bias, self.eps, relu)?;
            let dev = x.device();
            let mean = Tensor::from_vec(mean, c, dev)?;
            let var = Tensor::from_vec(var, c, dev)?;
            self.update_running(&mean, &var, count)?;
            return Ok((y, true));
        }
        Ok((self.forward_composed(x, train)?, false))
    }

    /// Moves the running statistics towards the batch mean and the unbiased variance.
    fn update_running(&self, batch_mean: &Tensor, batch_var: &Tensor, count: usize) -> Result<()> {
        let m = self.momentum;
        let batch_mean = batch_mean.to_dtype(self.running_mean.dtype())?;
        let unbiased = (batch_var * (count as f64 / (count - 1) as f64))?
            .to_dtype(self.running_var.dtype())?;
        let new_mean = ((self.running_mean.as_detached_tensor() * (1.0 - m))? + (batch_mean * m)?)?;
        let new_var = ((self.running_var.as_detached_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)
    }

    fn forward_composed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let c = self.weight.dim(0)?;
        if dims.len() < 2 || dims[1] != c {
            candle_core::bail!("batch-norm: input {dims:?} does not have {c} channels in dim 1");
        }
        let n = dims[0];
        let per = x.elem_count() / (n * c).max(1);
        if !train {
            let shape: Vec<usize> = dims
                .iter()
                .enumerate()
                .map(|(i, &d)| if i == 1 { d } else { 1 })
                .collect();
            let shape = shape.as_slice();
            let mean = self.running_mean.as_detached_tensor().reshape(shape)?;
            let var = self.running_var.as_detached_tensor().reshape(shape)?;
            let y = x
                .broadcast_sub(&mean)?
                .broadcast_div(&(var + self.eps)?.sqrt()?)?;
            return y
                .broadcast_mul(&self.weight.reshape(shape)?)?
                .broadcast_add(&self.bias.reshape(shape)?);
        }
        let count = n * per;
        if count < 2 {
            // PyTorch refuses too: the unbiased variance of one value is undefined.
            candle_core::bail!(
                "batch-norm in training mode needs more than one value per channel, got {dims:?}"
            );
        }
        let xr = x.reshape((n, c, per))?;
        let mean = (xr.sum_keepdim(2)?.sum_keepdim(0)? / count as f64)?;
        let centred = xr.broadcast_sub(&mean)?;
        let var = (centred.sqr()?.sum_keepdim(2)?.sum_keepdim(0)? / count as f64)?;
        let scale = (var.clone() + self.eps)?
            .sqrt()?
            .recip()?
            .broadcast_mul(&self.weight.reshape((1, c, 1))?)?;
        let y = centred
            .broadcast_mul(&scale)?
            .broadcast_add(&self.bias.reshape((1, c, 1))?)?
            .reshape(dims)?;
        self.update_running(
            &mean.detach().flatten_all()?,
            &var.detach().flatten_all()?,
            count,
        )?;
        Ok(y)
    }
}

/// Conv (no bias) → BN (eps 1e-5) → optional ReLU: mmcv's `ConvModule` with `norm_cfg=BN3d`.
pub(crate) struct ConvModule {
    weight: Tensor,
    bn: Option<BatchNorm3d>,
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
            Some(BatchNorm3d::new(cout, vb.pp("bn"))?)
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

    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = match (&self.bn, train) {
            // Inference: BatchNorm folded into the convolution (scale the kernel per output
            // channel, add one shift), one pass over the output instead of four.
            (Some(bn), false) => {
                let (scale, shift) = bn.eval_affine()?;
                let o = scale.dim(0)?;
                let w = self
                    .weight
                    .broadcast_mul(&scale.reshape((o, 1, 1, 1, 1))?)?;
                conv3d(x, &w, &self.cfg)?.broadcast_add(&shift.reshape((1, o, 1, 1, 1))?)?
            }
            (Some(bn), true) => {
                return bn.forward_relu_t(&conv3d(x, &self.weight, &self.cfg)?, true, self.relu);
            }
            (None, _) => conv3d(x, &self.weight, &self.cfg)?,
        };
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

impl Module for ConvModule {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
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

impl Bottleneck3d {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.conv1.forward_t(x, train)?;
        let y = self.conv2.forward_t(&y, train)?;
        let y = self.conv3.forward_t(&y, train)?;
        let identity = match &self.downsample {
            Some(d) => d.forward_t(x, train)?,
            None => x.clone(),
        };
        add_relu(&y, &identity)
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
        self.forward_stem_t(x, false)
    }

    pub fn forward_stem_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.conv1.forward_t(x, train)?;
        // The stem max-pool always runs (`with_pool1=True`), even with stride 1 (a 3×3 filter).
        let (pt, ps) = self.pool1_stride;
        max_pool3d(&x, (1, 3, 3), (pt, ps, ps), (0, 1, 1))
    }

    /// Stage `i` (`layer{i+1}`) alone, without pool2: what RGBPoseConv3D's forward calls.
    pub fn forward_stage(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        self.forward_stage_t(i, x, false)
    }

    pub fn forward_stage_t(&self, i: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        let stage = self
            .layers
            .get(i)
            .ok_or_else(|| candle_core::Error::Msg(format!("resnet3d: no stage {i}")))?;
        let mut x = x.clone();
        for block in stage {
            x = block.forward_t(&x, train)?;
        }
        Ok(x)
    }
}

impl ResNet3dSlowOnly {
    /// `ResNet3d.forward` with `out_indices` = the last stage; `train` as `nn.Module.train()`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = self.forward_stem_t(x, train)?;
        for i in 0..self.layers.len() {
            x = self.forward_stage_t(i, &x, train)?;
            if i == 0 && self.with_pool2 {
                x = max_pool3d(&x, (2, 1, 1), (2, 1, 1), (0, 0, 0))?;
            }
        }
        Ok(x)
    }
}

impl Module for ResNet3dSlowOnly {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }
}

/// `I3DHead` / pyskl `SimpleHead` (3D): global average pool → dropout → `fc_cls`.
pub struct I3DHead {
    fc_cls: Linear,
    /// `dropout_ratio` (0.5 in every PoseC3D config).
    pub dropout: f64,
    /// The dropout masks come from this generator rather than candle's device RNG so that a
    /// run is reproducible from its seed; the trainer reseeds it per iteration. Boxed: the
    /// generator's buffer would otherwise triple the size of every model enum holding a head.
    rng: MaskRng,
}

impl I3DHead {
    pub fn new(in_channels: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(I3DHead {
            fc_cls: linear(in_channels, num_classes, vb.pp("fc_cls"))?,
            dropout: 0.5,
            rng: MaskRng::new(),
        })
    }

    /// Restarts the dropout mask generator.
    pub fn set_dropout_seed(&self, seed: u64) -> Result<()> {
        self.rng.reseed(seed)
    }

    #[cfg(test)]
    fn dropout_mask(&self, dims: (usize, usize), device: &candle_core::Device) -> Result<Tensor> {
        dropout_mask(&self.rng, self.dropout, dims, device)
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let pooled = pooled_dropout(x, self.dropout, train, &self.rng)?;
        self.fc_cls.forward(&pooled)
    }
}

/// `nn.Dropout(p)` in training mode: keep with probability 1 − p, scale kept values by
/// 1 / (1 − p).
fn dropout_mask(
    rng: &MaskRng,
    p: f64,
    dims: (usize, usize),
    device: &candle_core::Device,
) -> Result<Tensor> {
    Tensor::from_vec(rng.mask(dims.0 * dims.1, p)?, dims, device)
}

/// The heads' `AdaptiveAvgPool3d(1)` → flatten → `Dropout(p)` (only when `train`), with the
/// masks drawn from the head's own generator.
pub(crate) fn pooled_dropout(x: &Tensor, p: f64, train: bool, rng: &MaskRng) -> Result<Tensor> {
    let pooled = global_avg_pool3d(x)?;
    if !train || p <= 0.0 {
        return Ok(pooled);
    }
    if p >= 1.0 {
        return pooled.zeros_like();
    }
    let mask = dropout_mask(rng, p, pooled.dims2()?, pooled.device())?.to_dtype(pooled.dtype())?;
    pooled * mask
}

impl Module for I3DHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
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

impl PoseC3D {
    /// Logits `[N, classes]`; `train` switches BatchNorm to batch statistics (updating the
    /// running ones) and turns the head's dropout on.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head
            .forward_t(&self.backbone.forward_t(x, train)?, train)
    }
}

impl Module for PoseC3D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
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

    fn set(vm: &VarMap, key: &str, v: &[f32]) {
        let data = vm.data().lock().expect("lock");
        let t = Tensor::new(v, &Device::Cpu).expect("t");
        data.get(key).expect(key).set(&t).expect("set");
    }

    fn get(vm: &VarMap, key: &str) -> Vec<f32> {
        let data = vm.data().lock().expect("lock");
        data.get(key).expect(key).as_tensor().to_vec1().expect("v")
    }

    #[test]
    fn train_mode_batch_norm_matches_a_hand_computation() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let bn = BatchNorm3d::new(2, VarBuilder::from_varmap(&vm, DType::F32, &dev).pp("bn"))
            .expect("bn");
        set(&vm, "bn.weight", &[2.0, 0.5]);
        set(&vm, "bn.bias", &[0.1, -1.0]);
        // [N=2, C=2, T=1, H=1, W=2]: channel 0 holds 1, 2, 3, 6 (mean 3, biased var 3.5,
        // unbiased 14/3); channel 1 holds 0, 0, 4, 4 (mean 2, var 4, unbiased 16/3).
        let x = Tensor::new(&[1f32, 2., 0., 0., 3., 6., 4., 4.], &dev)
            .and_then(|t| t.reshape((2, 2, 1, 1, 2)))
            .expect("x");
        let y = bn.forward_t(&x, true).expect("train");
        let y: Vec<f32> = y.flatten_all().and_then(|t| t.to_vec1()).expect("y");
        let (s0, s1) = ((3.5f64 + 1e-5).sqrt(), (4f64 + 1e-5).sqrt());
        let f0 = |v: f64| ((v - 3.0) / s0 * 2.0 + 0.1) as f32;
        let f1 = |v: f64| ((v - 2.0) / s1 * 0.5 - 1.0) as f32;
        let want = [
            f0(1.),
            f0(2.),
            f1(0.),
            f1(0.),
            f0(3.),
            f0(6.),
            f1(4.),
            f1(4.),
        ];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
        // momentum 0.1 towards the batch mean and the unbiased variance
        let rm = get(&vm, "bn.running_mean");
        let rv = get(&vm, "bn.running_var");
        assert!(
            (rm[0] - 0.3).abs() < 1e-6 && (rm[1] - 0.2).abs() < 1e-6,
            "{rm:?}"
        );
        let want_rv: [f64; 2] = [0.9 + 0.1 * 14.0 / 3.0, 0.9 + 0.1 * 16.0 / 3.0];
        assert!((rv[0] - want_rv[0] as f32).abs() < 1e-6, "{rv:?}");
        assert!((rv[1] - want_rv[1] as f32).abs() < 1e-6, "{rv:?}");
        // eval mode now uses those running statistics
        let e: Vec<f32> = bn
            .forward_t(&x, false)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("eval");
        let want0 = ((1.0 - 0.3) / (want_rv[0] + 1e-5).sqrt() * 2.0 + 0.1) as f32;
        assert!((e[0] - want0).abs() < 1e-5, "{} vs {want0}", e[0]);
    }

    #[test]
    fn train_mode_batch_norm_gradients() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let bn = BatchNorm3d::new(1, VarBuilder::from_varmap(&vm, DType::F32, &dev).pp("bn"))
            .expect("bn");
        set(&vm, "bn.weight", &[1.5]);
        let x = candle_core::Var::new(&[1f32, 4., 2., 9.], &dev).expect("x");
        let x = x.as_tensor().reshape((2, 1, 1, 1, 2)).expect("r");
        let y = bn.forward_t(&x, true).expect("y");
        // loss = Σ y²: with x̂ the normalised input, ∂/∂γ = 2γ Σ x̂² = 2γ·n·var/(var+eps) and
        // ∂/∂β = 2 Σ y = 2nβ = 0; the gradient w.r.t. x is orthogonal to 1 (and x̂).
        let grads = y
            .sqr()
            .and_then(|t| t.sum_all())
            .and_then(|l| l.backward())
            .expect("bw");
        let data = vm.data().lock().expect("lock");
        let gw: Vec<f32> = grads
            .get(data["bn.weight"].as_tensor())
            .expect("gw")
            .to_vec1()
            .expect("v");
        let var = (1.0f64 + 16.0 + 4.0 + 81.0) / 4.0 - 4.0f64.powi(2);
        let want = 2.0 * 1.5 * 4.0 * var / (var + 1e-5);
        assert!((f64::from(gw[0]) - want).abs() < 1e-4, "{gw:?} vs {want}");
        let gb: Vec<f32> = grads
            .get(data["bn.bias"].as_tensor())
            .expect("gb")
            .to_vec1()
            .expect("v");
        assert!(gb[0].abs() < 1e-5, "{gb:?}");
        assert!(grads.get(data["bn.running_mean"].as_tensor()).is_none());
    }

    #[test]
    fn fused_batch_norm_matches_the_composed_version() {
        let dev = Device::Cpu;
        let (n, c, t, h, w) = (2, 3, 2, 3, 4);
        let xv: Vec<f32> = (0..n * c * t * h * w)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i % 3) as f32))
            .collect();
        for relu in [false, true] {
            let mut outs = Vec::new();
            for fused in [true, false] {
                let vm = VarMap::new();
                let bn =
                    BatchNorm3d::new(c, VarBuilder::from_varmap(&vm, DType::F32, &dev).pp("bn"))
                        .expect("bn");
                set(&vm, "bn.weight", &[1.5, -0.7, 0.3]);
                set(&vm, "bn.bias", &[0.2, 0.1, -0.4]);
                let x = candle_core::Var::from_vec(xv.clone(), (n, c, t, h, w), &dev).expect("x");
                // A strided view as input, as the op must accept any layout.
                let xt = x.as_tensor().transpose(3, 4).expect("view");
                let y = if fused {
                    bn.forward_relu_t(&xt, true, relu).expect("fused")
                } else {
                    let y = bn.forward_composed(&xt, true).expect("composed");
                    if relu {
                        y.relu().expect("relu")
                    } else {
                        y
                    }
                };
                let r: Vec<f32> = (0..y.elem_count())
                    .map(|i| (i * 13 % 17) as f32 - 8.0)
                    .collect();
                let r = Tensor::from_vec(r, y.dims(), &dev).expect("r");
                let grads = (&y * &r)
                    .and_then(|l| l.sum_all())
                    .and_then(|l| l.backward())
                    .expect("bw");
                let data = vm.data().lock().expect("lock");
                let flat =
                    |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("v");
                outs.push([
                    flat(&y),
                    flat(grads.get(&x).expect("gx")),
                    flat(grads.get(data["bn.weight"].as_tensor()).expect("gw")),
                    flat(grads.get(data["bn.bias"].as_tensor()).expect("gb")),
                    flat(data["bn.running_mean"].as_tensor()),
                    flat(data["bn.running_var"].as_tensor()),
                ]);
            }
            let names = ["y", "gx", "gw", "gb", "running_mean", "running_var"];
            for (k, name) in names.iter().enumerate() {
                let (a, b) = (&outs[0][k], &outs[1][k]);
                let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (i, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= 2e-5 * scale,
                        "relu {relu} {name}[{i}]: fused {p} vs composed {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn head_dropout_is_seeded_and_scaled() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let head =
            I3DHead::new(64, 3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).expect("head");
        let x = Tensor::ones((4, 64, 1, 1, 1), DType::F32, &dev).expect("x");
        head.set_dropout_seed(7).expect("seed");
        let m1: Vec<f32> = head
            .dropout_mask((4, 64), &dev)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("m");
        head.set_dropout_seed(7).expect("seed");
        let m2: Vec<f32> = head
            .dropout_mask((4, 64), &dev)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("m");
        assert_eq!(m1, m2);
        assert!(m1.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = m1.iter().filter(|&&v| v > 0.0).count();
        assert!((96..=160).contains(&kept), "{kept} of 256 kept");
        let a = head.forward_t(&x, false).expect("eval");
        let b = head.forward(&x).expect("forward");
        assert_eq!(
            a.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("a"),
            b.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("b")
        );
    }
}
