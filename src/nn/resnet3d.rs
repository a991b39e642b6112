//! `ResNet3dSlowOnly` with `Bottleneck3d` and `I3DHead`: PoseC3D's network (pyskl
//! `pyskl/models/cnns/resnet3d.py`, `resnet3d_slowonly.py`, `heads/simple_head.py`; the same
//! maths as mmaction2 `backbones/resnet3d.py`). Weights are named by the checkpoint's own keys
//! (`backbone.conv1.conv.weight`, `backbone.layer1.0.conv2.bn.running_mean`, `cls_head.fc_cls`).
//! Inference only so far: BatchNorm uses its running statistics.

use candle_core::{Result, Tensor};
use candle_nn::{
    batch_norm, linear, BatchNorm, BatchNormConfig, Linear, Module, ModuleT, VarBuilder,
};

use super::ops3d::{conv3d, global_avg_pool3d, max_pool3d, Conv3dConfig, Triple};

/// The backbone and head hyper-parameters of a PoseC3D config.
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
    pub conv1_stride: (usize, usize),
    pub pool1_stride: (usize, usize),
    pub num_classes: usize,
}

impl Config {
    /// MM-Gesture's `slowonly_r50_iMiGUE_36/joint.py` (and limb.py): 36 input channels,
    /// stages (4, 6, 3), base 32, 32 classes.
    pub fn posec3d_imigue36() -> Config {
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
            num_classes: 32,
        }
    }

    /// pyskl's NTU60-XSub keypoint config (17 COCO keypoints, 60 classes).
    pub fn posec3d_ntu60() -> Config {
        Config {
            in_channels: 17,
            num_classes: 60,
            ..Self::posec3d_imigue36()
        }
    }
}

/// Conv (no bias) → BN (eps 1e-5) → optional ReLU: mmcv's `ConvModule`.
struct ConvModule {
    weight: Tensor,
    bn: BatchNorm,
    cfg: Conv3dConfig,
    relu: bool,
}

impl ConvModule {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: Triple,
        stride: Triple,
        padding: Triple,
        relu: bool,
    ) -> Result<Self> {
        let weight = vb
            .pp("conv")
            .get((cout, cin, kernel.0, kernel.1, kernel.2), "weight")?;
        let bn = batch_norm(cout, BatchNormConfig::from(1e-5), vb.pp("bn"))?;
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv3d(x, &self.weight, &self.cfg)?;
        let y = self.bn.forward_t(&y, false)?;
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

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
        let conv1 = ConvModule::new(vb.pp("conv1"), inplanes, planes, k1, (1, 1, 1), p1, true)?;
        // style='pytorch': the stride sits on the 1×3×3 conv.
        let conv2 = ConvModule::new(
            vb.pp("conv2"),
            planes,
            planes,
            (1, 3, 3),
            stride,
            (0, 1, 1),
            true,
        )?;
        let conv3 = ConvModule::new(
            vb.pp("conv3"),
            planes,
            planes * 4,
            (1, 1, 1),
            (1, 1, 1),
            (0, 0, 0),
            false,
        )?;
        // The reference builds it when `spatial_stride != 1 or inplanes != planes * 4`.
        let downsample = if spatial_stride != 1 || inplanes != planes * 4 {
            Some(ConvModule::new(
                vb.pp("downsample"),
                inplanes,
                planes * 4,
                (1, 1, 1),
                stride,
                (0, 0, 0),
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

pub struct ResNet3dSlowOnly {
    conv1: ConvModule,
    pool1_stride: (usize, usize),
    layers: Vec<Vec<Bottleneck3d>>,
}

impl ResNet3dSlowOnly {
    /// `vb` at the backbone's prefix (`backbone`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (kt, kh, kw) = cfg.conv1_kernel;
        let conv1 = ConvModule::new(
            vb.pp("conv1"),
            cfg.in_channels,
            cfg.base_channels,
            cfg.conv1_kernel,
            (1, cfg.conv1_stride.0, cfg.conv1_stride.1),
            ((kt - 1) / 2, (kh - 1) / 2, (kw - 1) / 2),
            true,
        )?;
        let mut inplanes = cfg.base_channels;
        let mut layers = Vec::new();
        for (i, &blocks) in cfg.stage_blocks.iter().enumerate() {
            let planes = cfg.base_channels * (1 << i);
            let vbl = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks);
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
                inplanes = planes * 4;
            }
            layers.push(stage);
        }
        Ok(ResNet3dSlowOnly {
            conv1,
            pool1_stride: cfg.pool1_stride,
            layers,
        })
    }
}

impl Module for ResNet3dSlowOnly {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward(x)?;
        // The stem max-pool always runs, even with stride 1 (a 3×3 max filter).
        let mut x = max_pool3d(
            &x,
            (1, 3, 3),
            (1, self.pool1_stride.0, self.pool1_stride.1),
            (0, 1, 1),
        )?;
        for stage in &self.layers {
            for block in stage {
                x = block.forward(&x)?;
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
        self.fc_cls.forward(&global_avg_pool3d(x)?)
    }
}

/// Backbone + head under the checkpoint's `backbone.` / `cls_head.` prefixes.
pub struct PoseC3D {
    pub backbone: ResNet3dSlowOnly,
    pub head: I3DHead,
}

impl PoseC3D {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let out = cfg.base_channels * (1 << (cfg.stage_blocks.len() - 1)) * 4;
        Ok(PoseC3D {
            backbone: ResNet3dSlowOnly::new(cfg, vb.pp("backbone"))?,
            head: I3DHead::new(out, cfg.num_classes, vb.pp("cls_head"))?,
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
        let cfg = Config::posec3d_imigue36();
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
}
