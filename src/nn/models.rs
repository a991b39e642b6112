//! The architectures by name, built from a checkpoint: what `probe infer`, `predict`, the app
//! and training share. Names follow the reference configs.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use super::checkpoint::{build_model, CheckpointError, LoadReport, StateDict};
use super::resnet3d::{self, PoseC3D};

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
    PoseC3D(PoseC3D),
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
        let (net, report) = build_model(sd, strict, dtype, device, |vb| {
            Self::build(a, num_classes, vb)
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

    fn build(a: &Arch, num_classes: usize, vb: VarBuilder) -> candle_core::Result<Net> {
        let posec3d = |cfg: resnet3d::Config| -> candle_core::Result<Net> {
            let cfg = resnet3d::Config { num_classes, ..cfg };
            Ok(Net::PoseC3D(PoseC3D::new(&cfg, vb.clone())?))
        };
        match a.name {
            "posec3d-joint36" | "posec3d-limb36" => posec3d(resnet3d::Config::posec3d_imigue36()),
            "posec3d-ntu60" => posec3d(resnet3d::Config::posec3d_ntu60()),
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
