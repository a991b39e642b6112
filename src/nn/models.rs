//! The architectures by name, built from a checkpoint: what `probe infer`, `predict`, the app
//! and training share. Names follow the reference configs.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use super::checkpoint::{build_model, CheckpointError, LoadReport, StateDict};
use super::resnet3d::{self, PoseC3D};
use super::rgbpose::{self, RGBPose};
use super::swin3d::{self, VideoSwin};

/// What a model takes: one clip tensor, or RGB + pose for RGBPoseConv3D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// `[N, C, T, H, W]` heatmap volume (PoseC3D).
    Heatmaps,
    /// `[N, 3, T, H, W]` normalised RGB (or Taylor / flow / depth rendered as video).
    Video,
    /// RGB `[N, 3, T, H, W]` and heatmaps `[N, C, 4T, H/4, W/4]`.
    RgbPose,
}

/// One architecture preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    pub name: &'static str,
    pub about: &'static str,
    pub inputs: Inputs,
    /// Names of the outputs (`rgb`, `pose` for the two heads of RGBPoseConv3D).
    pub heads: &'static [&'static str],
}

pub const ARCHES: &[Arch] = &[
    Arch {
        name: "posec3d-joint36",
        about: "MM-Gesture PoseC3D joint stream: SlowOnly-R50 (4,6,3), 36 heatmap channels",
        inputs: Inputs::Heatmaps,
        heads: &["cls"],
    },
    Arch {
        name: "posec3d-limb36",
        about: "MM-Gesture PoseC3D limb stream: as joint, one channel per limb",
        inputs: Inputs::Heatmaps,
        heads: &["cls"],
    },
    Arch {
        name: "posec3d-ntu60",
        about: "pyskl PoseC3D NTU60-XSub keypoint config (17 COCO keypoints)",
        inputs: Inputs::Heatmaps,
        heads: &["cls"],
    },
    Arch {
        name: "slowonly-r50-rgb",
        about: "RGB SlowOnly-R50 (MM-Gesture rgb_only.py, the RGBPose pretraining stream)",
        inputs: Inputs::Video,
        heads: &["cls"],
    },
    Arch {
        name: "rgbpose-conv3d",
        about: "RGBPoseConv3D: SlowOnly-R50 RGB + PoseC3D pose pathways with laterals, two heads",
        inputs: Inputs::RgbPose,
        heads: &["rgb", "pose"],
    },
    Arch {
        name: "swin-t",
        about: "Video Swin-T (patch 2×4×4, window 8×7×7), mmaction2 / official keys",
        inputs: Inputs::Video,
        heads: &["cls"],
    },
    Arch {
        name: "swin-s",
        about: "Video Swin-S (depths 2,2,18,2)",
        inputs: Inputs::Video,
        heads: &["cls"],
    },
    Arch {
        name: "swin-b",
        about: "Video Swin-B (C 128, depths 2,2,18,2)",
        inputs: Inputs::Video,
        heads: &["cls"],
    },
];

pub fn arch(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.name == name)
}

pub fn arch_names() -> String {
    ARCHES.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// The key whose first dimension is the class count, per head.
fn class_key(a: &Arch) -> &'static str {
    match a.inputs {
        Inputs::RgbPose => "cls_head.fc_rgb.weight",
        _ => "cls_head.fc_cls.weight",
    }
}

enum Net {
    /// PoseC3D and the RGB SlowOnly: one ResNet3d + I3DHead.
    PoseC3D(Box<PoseC3D>),
    Swin(VideoSwin),
    RgbPose(Box<RGBPose>),
}

/// A built network with its checkpoint's class count.
pub struct Model {
    pub arch: &'static Arch,
    pub num_classes: usize,
    pub device: Device,
    pub dtype: DType,
    net: Net,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture {0:?}; known: {1}")]
    UnknownArch(String, String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: no {key} in the checkpoint, so the class count is unknown")]
    NoHead { path: String, key: &'static str },
    #[error("{0}")]
    Input(String),
    #[error("forward pass: {0}")]
    Forward(#[from] candle_core::Error),
    #[error("cancelled")]
    Cancelled,
}

impl Model {
    /// Builds `arch` from a checkpoint file, taking the class count from its head.
    pub fn load(
        arch_name: &str,
        checkpoint: &Path,
        strict: bool,
        dtype: DType,
        device: &Device,
    ) -> Result<(Model, LoadReport), ModelError> {
        let sd = StateDict::read(checkpoint)?;
        Self::from_state_dict(arch_name, &sd, strict, dtype, device)
    }

    pub fn from_state_dict(
        arch_name: &str,
        sd: &StateDict,
        strict: bool,
        dtype: DType,
        device: &Device,
    ) -> Result<(Model, LoadReport), ModelError> {
        let a = arch(arch_name)
            .ok_or_else(|| ModelError::UnknownArch(arch_name.to_string(), arch_names()))?;
        let key = class_key(a);
        let num_classes = sd
            .dims(key)
            .and_then(|d| d.first().copied())
            .ok_or_else(|| ModelError::NoHead {
                path: sd.source.display().to_string(),
                key,
            })?;
        // The official Video-Swin checkpoints name the final norm `backbone.norm`;
        // mmaction2 1.x calls it `backbone.norm3`.
        let renamed;
        let sd = if a.name.starts_with("swin")
            && sd.tensors.contains_key("backbone.norm.weight")
            && !sd.tensors.contains_key("backbone.norm3.weight")
        {
            let mut c = sd.clone();
            c.rename_prefix("backbone.norm.", "backbone.norm3.");
            renamed = c;
            &renamed
        } else {
            sd
        };
        let (net, report) = build_model(sd, strict, dtype, device, |vb| {
            Self::build_from(a, num_classes, sd, vb)
        })?;
        Ok((
            Model {
                arch: a,
                num_classes,
                device: device.clone(),
                dtype,
                net,
            },
            report,
        ))
    }

    /// The network with fresh (random) weights, e.g. for training from scratch.
    pub fn build_named(
        arch_name: &str,
        num_classes: usize,
        vb: VarBuilder,
    ) -> Result<Model, ModelError> {
        let a = arch(arch_name)
            .ok_or_else(|| ModelError::UnknownArch(arch_name.to_string(), arch_names()))?;
        let device = vb.device().clone();
        let dtype = vb.dtype();
        let net = Self::build(a, num_classes, vb)?;
        Ok(Model {
            arch: a,
            num_classes,
            device,
            dtype,
            net,
        })
    }

    /// Sizes from the checkpoint where the family allows it.
    fn build_from(
        a: &Arch,
        num_classes: usize,
        sd: &StateDict,
        vb: VarBuilder,
    ) -> candle_core::Result<Net> {
        // A checkpoint of another family has none of the keys sizes are read from; the
        // preset is built then, and the strict key check names what does not fit.
        if a.name.starts_with("swin") {
            if let Ok(cfg) = swin_config_from(sd, swin_preset(a.name), num_classes) {
                return Ok(Net::Swin(VideoSwin::new(&cfg, vb)?));
            }
        } else if a.name == "rgbpose-conv3d" {
            let p = rgbpose::Config::rgbpose_conv3d();
            if let (Ok(rgb), Ok(pose)) = (
                resnet3d_config_from(sd, "backbone.rgb_path.", p.rgb.clone()),
                resnet3d_config_from(sd, "backbone.pose_path.", p.pose.clone()),
            ) {
                let cfg = rgbpose::Config {
                    rgb,
                    pose,
                    num_classes,
                    ..p
                };
                return Ok(Net::RgbPose(Box::new(RGBPose::new(&cfg, vb)?)));
            }
        } else if let Some(preset) = resnet3d_preset(a.name) {
            if let Ok(cfg) = resnet3d_config_from(sd, "backbone.", preset) {
                let cfg = resnet3d::Config { num_classes, ..cfg };
                return Ok(Net::PoseC3D(Box::new(PoseC3D::new(&cfg, vb)?)));
            }
        }
        Self::build(a, num_classes, vb)
    }

    fn build(a: &Arch, num_classes: usize, vb: VarBuilder) -> candle_core::Result<Net> {
        let posec3d = |cfg: resnet3d::Config| -> candle_core::Result<Net> {
            let cfg = resnet3d::Config { num_classes, ..cfg };
            Ok(Net::PoseC3D(Box::new(PoseC3D::new(&cfg, vb.clone())?)))
        };
        if let Some(preset) = resnet3d_preset(a.name) {
            return posec3d(preset);
        }
        match a.name {
            "rgbpose-conv3d" => {
                let cfg = rgbpose::Config {
                    num_classes,
                    ..rgbpose::Config::rgbpose_conv3d()
                };
                Ok(Net::RgbPose(Box::new(RGBPose::new(&cfg, vb)?)))
            }
            "swin-t" | "swin-s" | "swin-b" => {
                let cfg = swin3d::Config {
                    num_classes,
                    ..swin_preset(a.name)
                };
                Ok(Net::Swin(VideoSwin::new(&cfg, vb)?))
            }
            other => candle_core::bail!("architecture {other} has no builder"),
        }
    }

    /// Logits per head, each `[N, classes]`, for the inputs this architecture takes (one
    /// tensor, or RGB then pose).
    pub fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ModelError> {
        let want = match self.arch.inputs {
            Inputs::RgbPose => 2,
            _ => 1,
        };
        if inputs.len() != want {
            return Err(ModelError::Input(format!(
                "{} takes {want} input tensor(s), got {}",
                self.arch.name,
                inputs.len()
            )));
        }
        for (i, x) in inputs.iter().enumerate() {
            if x.rank() != 5 {
                return Err(ModelError::Input(format!(
                    "input {i} has shape {:?}; expected [N, C, T, H, W]",
                    x.dims()
                )));
            }
        }
        let x = inputs[0].to_device(&self.device)?.to_dtype(self.dtype)?;
        let out = match &self.net {
            Net::PoseC3D(m) => vec![m.forward(&x)?],
            Net::Swin(m) => vec![m.forward(&x)?],
            Net::RgbPose(m) => {
                let pose = inputs[1].to_device(&self.device)?.to_dtype(self.dtype)?;
                let (r, p) = m.forward(&x, &pose)?;
                vec![r, p]
            }
        };
        Ok(out
            .into_iter()
            .map(|t| t.to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()?)
    }
}

/// `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, ModelError> {
    let s = s.trim();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ModelError::Input(format!("device {s:?}: expected cuda:N")))?,
        None => {
            return Err(ModelError::Input(format!(
                "device {s:?}: expected cpu, cuda or cuda:N"
            )))
        }
    };
    if !cfg!(feature = "cuda") {
        return Err(ModelError::Input(format!(
            "device {s}: this mgscope was built without CUDA; rebuild with --features cuda"
        )));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| ModelError::Input(format!("device {s}: cannot open it: {e}")))
}

/// `f32`, `bf16` or `f16`.
pub fn parse_dtype(s: &str) -> Result<DType, ModelError> {
    match s.trim() {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" | "half" => Ok(DType::F16),
        other => Err(ModelError::Input(format!(
            "dtype {other:?}: expected f32, bf16 or f16"
        ))),
    }
}

fn resnet3d_preset(name: &str) -> Option<resnet3d::Config> {
    Some(match name {
        "posec3d-joint36" => resnet3d::Config::posec3d_joint36(),
        "posec3d-limb36" => resnet3d::Config::posec3d_limb36(),
        "posec3d-ntu60" => resnet3d::Config::posec3d_ntu60(),
        "slowonly-r50-rgb" => resnet3d::Config::slowonly_r50_rgb(),
        _ => return None,
    })
}

/// A ResNet3d whose input channels, width, blocks per stage, inflation and stem kernel come
/// from the checkpoint under `prefix`; strides (which weights cannot show) from `preset`.
pub fn resnet3d_config_from(
    sd: &StateDict,
    prefix: &str,
    preset: resnet3d::Config,
) -> candle_core::Result<resnet3d::Config> {
    let stem = need(sd, &format!("{prefix}conv1.conv.weight"))?;
    let [base, cin, kt, kh, kw] = stem else {
        candle_core::bail!("{prefix}conv1.conv.weight has shape {stem:?}; expected 5-D");
    };
    // mmcv names the stages layer1, layer2, …
    let stages = (1..)
        .take_while(|i| {
            sd.tensors
                .contains_key(&format!("{prefix}layer{i}.0.conv1.conv.weight"))
        })
        .count();
    if stages == 0 || stages > preset.spatial_strides.len() {
        candle_core::bail!(
            "{}: {stages} ResNet stages under {prefix}; the {}-stage preset cannot supply strides",
            sd.source.display(),
            preset.spatial_strides.len()
        );
    }
    let mut blocks = Vec::new();
    let mut inflate = Vec::new();
    for i in 1..=stages {
        let p = format!("{prefix}layer{i}.");
        blocks.push(count_indexed(sd, &p, ".conv1.conv.weight"));
        let k = need(sd, &format!("{p}0.conv1.conv.weight"))?;
        inflate.push(usize::from(k.get(2).copied().unwrap_or(1) == 3));
    }
    Ok(resnet3d::Config {
        in_channels: *cin,
        base_channels: *base,
        stage_blocks: blocks,
        inflate,
        spatial_strides: preset.spatial_strides[..stages].to_vec(),
        temporal_strides: preset.temporal_strides[..stages].to_vec(),
        conv1_kernel: (*kt, *kh, *kw),
        ..preset
    })
}

fn swin_preset(name: &str) -> swin3d::Config {
    match name {
        "swin-s" => swin3d::Config::swin_s(),
        "swin-b" => swin3d::Config::swin_b(),
        _ => swin3d::Config::swin_t(),
    }
}

/// Counts `prefix{i}{suffix}` keys for i = 0, 1, … until one is missing.
fn count_indexed(sd: &StateDict, prefix: &str, suffix: &str) -> usize {
    (0..)
        .take_while(|i| sd.tensors.contains_key(&format!("{prefix}{i}{suffix}")))
        .count()
}

fn need<'a>(sd: &'a StateDict, key: &str) -> candle_core::Result<&'a [usize]> {
    sd.dims(key).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{}: no {key}, so the architecture's size cannot be read from it",
            sd.source.display()
        ))
    })
}

/// A Swin config whose widths, depths, heads, patch and window come from the checkpoint
/// (so reduced or custom variants load under their family's name); drop-path from `preset`.
pub fn swin_config_from(
    sd: &StateDict,
    preset: swin3d::Config,
    num_classes: usize,
) -> candle_core::Result<swin3d::Config> {
    let pe = need(sd, "backbone.patch_embed.proj.weight")?;
    let [embed_dim, in_channels, pt, ph, pw] = pe else {
        candle_core::bail!("backbone.patch_embed.proj.weight has shape {pe:?}; expected 5-D");
    };
    let stages = count_indexed(sd, "backbone.layers.", ".blocks.0.norm1.weight");
    if stages == 0 {
        candle_core::bail!(
            "{}: no backbone.layers.0.blocks.0 keys",
            sd.source.display()
        );
    }
    let mut depths = Vec::new();
    let mut heads = Vec::new();
    for i in 0..stages {
        depths.push(count_indexed(
            sd,
            &format!("backbone.layers.{i}.blocks."),
            ".norm1.weight",
        ));
        let t = need(
            sd,
            &format!("backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"),
        )?;
        heads.push(t.get(1).copied().unwrap_or(1));
    }
    let table = need(
        sd,
        "backbone.layers.0.blocks.0.attn.relative_position_bias_table",
    )?[0];
    let index_n = sd
        .dims("backbone.layers.0.blocks.0.attn.relative_position_index")
        .and_then(|d| d.first().copied());
    let window = infer_window(sd, preset.window_size, table, index_n)?;
    let fc1 = need(sd, "backbone.layers.0.blocks.0.mlp.fc1.weight")?[0];
    Ok(swin3d::Config {
        patch_size: (*pt, *ph, *pw),
        in_channels: *in_channels,
        embed_dim: *embed_dim,
        depths,
        num_heads: heads,
        window_size: window,
        mlp_ratio: fc1 as f64 / *embed_dim as f64,
        qkv_bias: sd
            .tensors
            .contains_key("backbone.layers.0.blocks.0.attn.qkv.bias"),
        patch_norm: sd.tensors.contains_key("backbone.patch_embed.norm.weight"),
        num_classes,
        ..preset
    })
}

/// The attention window: the preset's when its bias-table size fits, else the one window
/// whose table size (and, when the checkpoint keeps it, relative-position index) matches.
fn infer_window(
    sd: &StateDict,
    preset: (usize, usize, usize),
    table: usize,
    index_n: Option<usize>,
) -> candle_core::Result<(usize, usize, usize)> {
    let size = |w: (usize, usize, usize)| (2 * w.0 - 1) * (2 * w.1 - 1) * (2 * w.2 - 1);
    let fits =
        |w: (usize, usize, usize)| size(w) == table && index_n.is_none_or(|n| n == w.0 * w.1 * w.2);
    if fits(preset) {
        return Ok(preset);
    }
    let stored: Option<Vec<i64>> = sd
        .tensors
        .get("backbone.layers.0.blocks.0.attn.relative_position_index")
        .and_then(|t| t.flatten_all().ok())
        .and_then(|t| t.to_dtype(DType::I64).ok())
        .and_then(|t| t.to_vec1::<i64>().ok());
    let mut found = Vec::new();
    for d in 1..=32 {
        for h in 1..=32 {
            for w in 1..=32 {
                let win = (d, h, w);
                if !fits(win) {
                    continue;
                }
                if let Some(s) = &stored {
                    let mine = swin3d::relative_position_index(win);
                    if mine.len() != s.len() || mine.iter().zip(s).any(|(a, b)| i64::from(*a) != *b)
                    {
                        continue;
                    }
                }
                found.push(win);
            }
        }
    }
    match found.as_slice() {
        [w] => Ok(*w),
        [] => candle_core::bail!(
            "{}: no attention window fits a relative-position table of {table} rows",
            sd.source.display()
        ),
        many => candle_core::bail!(
            "{}: the relative-position table ({table} rows) fits several windows {many:?}; \
             the checkpoint has no relative_position_index to decide",
            sd.source.display()
        ),
    }
}
