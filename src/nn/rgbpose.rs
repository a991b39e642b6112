//! RGBPoseConv3D (mmaction2 1.2 `mmaction/models/backbones/rgbposeconv3d.py`, the pathways and
//! `DeConvModule` of `resnet3d_slowfast.py`, `heads/rgbpose_head.py`; pyskl
//! `pyskl/models/cnns/rgbposeconv3d.py` is line-for-line the same): an RGB SlowOnly-R50 and a
//! PoseC3D pathway fused by lateral connections in both directions. Keys are the
//! `MMRecognizer3D` checkpoint's: `backbone.rgb_path.*`, `backbone.pose_path.*`,
//! `cls_head.fc_rgb`, `cls_head.fc_pose`. `forward` is inference; `forward_t(…, true)` is
//! PyTorch's `train()` mode (BatchNorm on batch statistics, both heads' dropout), what training
//! uses. `rgb_detach` / `pose_detach` / the lateral drop-paths are off in every config and not
//! offered.

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};

use super::ops3d::{conv_transpose3d_temporal, ConvTranspose3dConfig, MaskRng};
use super::resnet3d::{self, pooled_dropout, BatchNorm3d, ConvModule, ResNet3dSlowOnly, EXPANSION};

/// The two pathways' `ResNet3dPathway` settings plus the fusion hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// RGB pathway (its `num_classes` is unused).
    pub rgb: resnet3d::Config,
    /// Pose pathway (its `num_classes` is unused).
    pub pose: resnet3d::Config,
    /// Frames of pose per frame of RGB (α); the lateral temporal stride.
    pub speed_ratio: usize,
    /// Channel reduction between the pathways (β).
    pub channel_ratio: usize,
    /// Temporal kernel of every lateral (`fusion_kernel`; mmaction2's default is 5, the config
    /// and pyskl use 7).
    pub fusion_kernel: usize,
    pub rgb_lateral_infl: usize,
    pub pose_lateral_infl: usize,
    /// `lateral_activate` per stage: stage i > 0 receives the other pathway's features.
    pub rgb_lateral_activate: Vec<bool>,
    pub pose_lateral_activate: Vec<bool>,
    pub num_classes: usize,
}

impl Config {
    /// MM-Gesture `rgbJoint_conv3d.py` / `rgbLimb_conv3d.py` (= pyskl and mmaction2
    /// `rgbpose_conv3d.py` with 36 pose channels and 32 classes): RGB SlowOnly-R50 with
    /// laterals into layer3/layer4, PoseC3D (4, 6, 3) with temporal strides (1, 1, 1) and
    /// deconv laterals into layer2/layer3.
    pub fn rgbpose_conv3d() -> Config {
        let rgb = resnet3d::Config {
            // ResNet3dPathway inherits ResNet3d's stem defaults: spatial stride 2 in conv1 and pool.
            ..resnet3d::Config::slowonly_r50_rgb()
        };
        let pose = resnet3d::Config {
            temporal_strides: vec![1, 1, 1],
            ..resnet3d::Config::posec3d_joint36()
        };
        Config {
            rgb,
            pose,
            speed_ratio: 4,
            channel_ratio: 4,
            fusion_kernel: 7,
            rgb_lateral_infl: 1,
            pose_lateral_infl: 16,
            rgb_lateral_activate: vec![false, false, true, true],
            pose_lateral_activate: vec![false, true, true],
            num_classes: 32,
        }
    }

    /// pyskl / mmaction2 `rgbpose_conv3d.py` on NTU60: 17 COCO keypoints, 60 classes.
    pub fn rgbpose_conv3d_ntu60() -> Config {
        let mut cfg = Self::rgbpose_conv3d();
        cfg.pose.in_channels = 17;
        cfg.num_classes = 60;
        cfg
    }
}

/// Extra input channels per stage from the other pathway
/// (`ResNet3dPathway._calculate_lateral_inplanes`, depth ≥ 50).
fn lateral_inplanes(
    cfg: &resnet3d::Config,
    activate: &[bool],
    inv: bool,
    infl: usize,
    ratio: usize,
) -> Vec<usize> {
    (0..cfg.stage_blocks.len())
        .map(|i| {
            if !activate.get(i).copied().unwrap_or(false) {
                return 0;
            }
            // The channels entering stage i: the stem's for i = 0, else stage i−1's output.
            let planes = if i == 0 {
                cfg.base_channels
            } else {
                cfg.base_channels * (1 << i) * (EXPANSION / 2)
            };
            if inv {
                planes * ratio / infl
            } else {
                planes * infl / ratio
            }
        })
        .collect()
}

/// mmaction2 `DeConvModule`: ConvTranspose3d (bias=False) sized to `(stride·T, H, W)`, then
/// BatchNorm3d and ReLU. The rgb→pose lateral.
struct DeConvModule {
    weight: Tensor,
    bn: BatchNorm3d,
    stride: usize,
    padding: usize,
}

impl DeConvModule {
    fn new(vb: VarBuilder, cin: usize, cout: usize, kernel: usize, stride: usize) -> Result<Self> {
        // nn.ConvTranspose3d keeps its weight as (in, out, kT, kH, kW).
        let weight = vb.pp("conv").get((cin, cout, kernel, 1, 1), "weight")?;
        let bn = BatchNorm3d::new(cout, vb.pp("bn"))?;
        Ok(DeConvModule {
            weight,
            bn,
            stride,
            padding: (kernel - 1) / 2,
        })
    }
}

impl DeConvModule {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let t = x.dim(2)?;
        let kt = self.weight.dim(2)?;
        // `self.conv(x, output_size=(N, C, stride·T, H, W))`: PyTorch turns the requested size
        // into an output_padding (3 for kernel 7, stride 4, padding 3).
        let output_padding = ConvTranspose3dConfig::output_padding_for(
            t,
            kt,
            self.stride,
            self.padding,
            self.stride * t,
        )?;
        let cfg = ConvTranspose3dConfig {
            stride: self.stride,
            padding: self.padding,
            output_padding,
        };
        let y = conv_transpose3d_temporal(x, &self.weight, &cfg)?;
        self.bn.forward_relu_t(&y, train, true)
    }
}

/// A `layer{i}_lateral`: a bare Conv3d (pose → rgb) or a `DeConvModule` (rgb → pose).
enum Lateral {
    Conv(ConvModule),
    Deconv(DeConvModule),
}

impl Lateral {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Lateral::Conv(m) => m.forward_t(x, train),
            Lateral::Deconv(m) => m.forward_t(x, train),
        }
    }
}

/// One `ResNet3dPathway`: the ResNet3d stages plus its `layer{i}_lateral` modules, which read
/// the *other* pathway's features.
pub struct Pathway {
    pub net: ResNet3dSlowOnly,
    /// `laterals[i]` is `layer{i+1}_lateral`, feeding stage i+1.
    laterals: Vec<Option<Lateral>>,
}

impl Pathway {
    fn new(
        cfg: &resnet3d::Config,
        activate: &[bool],
        inv: bool,
        infl: usize,
        top: &Config,
        vb: VarBuilder,
    ) -> Result<Self> {
        if activate.first().copied().unwrap_or(false) {
            // conv1_lateral (stem fusion) is in no RGBPose config; refuse rather than ignore it.
            candle_core::bail!("rgbpose: lateral_activate[0] (conv1_lateral) is not supported");
        }
        let (ratio, fk, speed) = (top.channel_ratio, top.fusion_kernel, top.speed_ratio);
        let lat_in = lateral_inplanes(cfg, activate, inv, infl, ratio);
        let net = ResNet3dSlowOnly::new_pathway(cfg, &lat_in, vb.clone())?;
        let n = cfg.stage_blocks.len();
        let mut laterals = Vec::with_capacity(n);
        for i in 0..n {
            // No lateral out of the final stage (`i != num_stages - 1`).
            if i + 1 == n || !activate.get(i + 1).copied().unwrap_or(false) {
                laterals.push(None);
                continue;
            }
            let inplanes = cfg.stage_channels(i);
            let vbl = vb.pp(format!("layer{}_lateral", i + 1));
            let m = if inv {
                Lateral::Deconv(DeConvModule::new(
                    vbl,
                    inplanes * ratio,
                    inplanes * ratio / infl,
                    fk,
                    speed,
                )?)
            } else {
                // `lateral_norm=False`: a bare Conv3d, no BN and no activation.
                Lateral::Conv(ConvModule::new(
                    vbl,
                    inplanes / ratio,
                    inplanes * infl / ratio,
                    (fk, 1, 1),
                    (speed, 1, 1),
                    ((fk - 1) / 2, 0, 0),
                    false,
                    false,
                )?)
            };
            laterals.push(Some(m));
        }
        Ok(Pathway { net, laterals })
    }

    fn lateral(&self, i: usize) -> Option<&Lateral> {
        self.laterals.get(i).and_then(Option::as_ref)
    }
}

/// The RGBPoseConv3D backbone: `rgb_path` and `pose_path` under `backbone.`.
pub struct RGBPoseConv3D {
    pub rgb_path: Pathway,
    pub pose_path: Pathway,
}

impl RGBPoseConv3D {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if cfg.rgb.stage_blocks.len() != cfg.pose.stage_blocks.len() + 1 {
            // The forward pairs RGB stage i+1 with pose stage i.
            candle_core::bail!("rgbpose: the RGB pathway needs exactly one stage more than pose");
        }
        let rgb_path = Pathway::new(
            &cfg.rgb,
            &cfg.rgb_lateral_activate,
            false,
            cfg.rgb_lateral_infl,
            cfg,
            vb.pp("rgb_path"),
        )?;
        let pose_path = Pathway::new(
            &cfg.pose,
            &cfg.pose_lateral_activate,
            true,
            cfg.pose_lateral_infl,
            cfg,
            vb.pp("pose_path"),
        )?;
        Ok(RGBPoseConv3D {
            rgb_path,
            pose_path,
        })
    }

    /// `RGBPoseConv3D.forward` in eval mode: returns (RGB features, pose features).
    pub fn forward(&self, rgb: &Tensor, pose: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_t(rgb, pose, false)
    }

    /// `RGBPoseConv3D.forward`; `train` as `nn.Module.train()`.
    pub fn forward_t(&self, rgb: &Tensor, pose: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let (r, p) = (&self.rgb_path, &self.pose_path);
        let mut x_rgb = r.net.forward_stem_t(rgb, train)?;
        let mut x_pose = p.net.forward_stem_t(pose, train)?;
        x_rgb = r.net.forward_stage_t(0, &x_rgb, train)?;
        x_rgb = r.net.forward_stage_t(1, &x_rgb, train)?;
        x_pose = p.net.forward_stage_t(0, &x_pose, train)?;
        // Then per fusion point j: RGB after layer(j+2) meets pose after layer(j+1).
        for j in 0..p.net.num_stages() - 1 {
            // Both laterals read the pre-concat features, and each pathway keeps its own
            // features first in the concat.
            let from_pose = r
                .lateral(j + 1)
                .map(|m| m.forward_t(&x_pose, train))
                .transpose()?;
            let from_rgb = p
                .lateral(j)
                .map(|m| m.forward_t(&x_rgb, train))
                .transpose()?;
            if let Some(l) = from_pose {
                x_rgb = Tensor::cat(&[&x_rgb, &l], 1)?;
            }
            if let Some(l) = from_rgb {
                x_pose = Tensor::cat(&[&x_pose, &l], 1)?;
            }
            x_rgb = r.net.forward_stage_t(j + 2, &x_rgb, train)?;
            x_pose = p.net.forward_stage_t(j + 1, &x_pose, train)?;
        }
        Ok((x_rgb, x_pose))
    }
}

/// `RGBPoseHead`: per stream global average pool → dropout → `fc_rgb` / `fc_pose`.
pub struct RGBPoseHead {
    fc_rgb: Linear,
    fc_pose: Linear,
    /// `dropout` (0.5, expanded to both streams).
    pub dropout: f64,
    /// One seeded generator for both masks (RGB drawn first), as `I3DHead`'s.
    rng: MaskRng,
}

impl RGBPoseHead {
    pub fn new(in_rgb: usize, in_pose: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(RGBPoseHead {
            fc_rgb: linear(in_rgb, num_classes, vb.pp("fc_rgb"))?,
            fc_pose: linear(in_pose, num_classes, vb.pp("fc_pose"))?,
            dropout: 0.5,
            rng: MaskRng::new(),
        })
    }

    /// (RGB logits, pose logits); dropout is the identity at inference.
    pub fn forward(&self, x_rgb: &Tensor, x_pose: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_t(x_rgb, x_pose, false)
    }

    pub fn forward_t(
        &self,
        x_rgb: &Tensor,
        x_pose: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor)> {
        let r = pooled_dropout(x_rgb, self.dropout, train, &self.rng)?;
        let p = pooled_dropout(x_pose, self.dropout, train, &self.rng)?;
        Ok((self.fc_rgb.forward(&r)?, self.fc_pose.forward(&p)?))
    }

    /// Restarts the dropout mask generator.
    pub fn set_dropout_seed(&self, seed: u64) -> Result<()> {
        self.rng.reseed(seed)
    }
}

/// The `MMRecognizer3D`: backbone under `backbone.`, head under `cls_head.`.
pub struct RGBPose {
    pub backbone: RGBPoseConv3D,
    pub head: RGBPoseHead,
}

impl RGBPose {
    /// `vb` at the checkpoint root.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(RGBPose {
            backbone: RGBPoseConv3D::new(cfg, vb.pp("backbone"))?,
            head: RGBPoseHead::new(
                cfg.rgb.feat_dim(),
                cfg.pose.feat_dim(),
                cfg.num_classes,
                vb.pp("cls_head"),
            )?,
        })
    }

    /// RGB `[N, 3, T, H, W]` and pose heatmaps `[N, K, α·T, H/4, W/4]` → (RGB logits, pose
    /// logits), each `[N, num_classes]`, as `RGBPoseHead.forward`'s `{'rgb', 'pose'}`.
    pub fn forward(&self, rgb: &Tensor, pose: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_t(rgb, pose, false)
    }

    /// `train` switches BatchNorm to batch statistics (updating the running ones) and turns
    /// both heads' dropout on.
    pub fn forward_t(&self, rgb: &Tensor, pose: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let (x_rgb, x_pose) = self.backbone.forward_t(rgb, pose, train)?;
        self.head.forward_t(&x_rgb, &x_pose, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn lateral_channels_match_the_reference_table() {
        let cfg = Config::rgbpose_conv3d();
        // models.md §3.2: RGB layer3 gets 128 and layer4 256 extra; pose layer2 32, layer3 64.
        assert_eq!(
            lateral_inplanes(&cfg.rgb, &cfg.rgb_lateral_activate, false, 1, 4),
            vec![0, 0, 128, 256]
        );
        assert_eq!(
            lateral_inplanes(&cfg.pose, &cfg.pose_lateral_activate, true, 16, 4),
            vec![0, 32, 64]
        );
    }

    #[test]
    fn ntu60_parameter_count_and_forward_shapes() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let net = RGBPose::new(&Config::rgbpose_conv3d_ntu60(), vb).expect("build");
        {
            let data = vm.data().lock().expect("lock");
            let learnable: usize = data
                .iter()
                .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
                .map(|(_, v)| v.elem_count())
                .sum();
            // mmaction2 1.2 MMRecognizer3D(RGBPoseConv3D, RGBPoseHead(60)): 36,147,928
            // (models.md §3.6: ≈36.15M).
            assert_eq!(learnable, 36_147_928);
        }
        // Small clip with the pathways' ratios: pose time ×4, pose space ÷4.
        let rgb = Tensor::rand(0f32, 1.0, (1, 3, 2, 64, 64), &dev).expect("rgb");
        let pose = Tensor::rand(0f32, 1.0, (1, 17, 8, 16, 16), &dev).expect("pose");
        let (fr, fp) = net.backbone.forward(&rgb, &pose).expect("backbone");
        assert_eq!(fr.dims(), [1, 2048, 2, 2, 2]);
        assert_eq!(fp.dims(), [1, 512, 8, 2, 2]);
        let (lr, lp) = net.head.forward(&fr, &fp).expect("head");
        assert_eq!(
            (lr.dims(), lp.dims()),
            ([1, 60].as_slice(), [1, 60].as_slice())
        );
    }
}
