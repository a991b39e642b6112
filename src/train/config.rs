//! A run's configuration: TOML, a named preset with the file's keys laid over it.
//!
//! `posec3d-joint` / `posec3d-limb` are MM-Gesture's `slowonly_r50_iMiGUE_36/{joint,limb}.py`
//! (mm-gesture.md §3.1); the `-cpu` and `-tiny` presets shrink width, depth, frames and crop so
//! a run fits a laptop CPU, keeping the pipeline's proportions (short side : crop : val size
//! as 64 : 56 : 64). `swin-{t,s,b}-{rgb,taylor,flow,depth}` are the Video Swin configs
//! (`swin-*-iMiGUE_36_*.py`, mm-gesture.md §4), `swin-tiny-demo` a Swin small enough for the
//! demo on a CPU.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Result, TrainError};
use crate::modality::heatmap::{skeleton_by_name, HeatmapKind, Skeleton};
use crate::nn::resnet3d;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset the file's keys were laid over.
    pub preset: String,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    pub run: RunConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Architecture name the checkpoints load under (`mgscope predict --arch`):
    /// `posec3d-joint36` / `posec3d-limb36` (heatmap streams) or `swin-t` / `swin-s` /
    /// `swin-b` (video streams).
    pub arch: String,
    /// PoseC3D width and stage depths.
    pub base_channels: usize,
    pub stage_blocks: Vec<usize>,
    /// I3DHead `dropout_ratio`.
    pub dropout: f64,
    /// Swin: stochastic-depth rate (`drop_path_rate`); default the arch's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_path: Option<f64>,
    /// Swin: a narrower or shallower network than the arch's (CPU presets): channels of the
    /// first stage, blocks per stage, heads per stage, and the attention window (T, H, W).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depths: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<(usize, usize, usize)>,
    /// RGBPoseConv3D: the RGB pathway's width and blocks per stage (4 stages); default
    /// SlowOnly-R50's 64 and (3, 4, 6, 3). `base_channels` / `stage_blocks` are the pose
    /// pathway's, which needs half the RGB width (the laterals' channel ratio 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_base_channels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_stage_blocks: Option<Vec<usize>>,
    /// Weights to start from (`load_from`): every tensor whose key and shape match is copied;
    /// the rest (a head for another class count) keeps its fresh initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Heatmap {
    Joint,
    Limb,
}

impl Heatmap {
    pub fn kind(self) -> HeatmapKind {
        match self {
            Heatmap::Joint => HeatmapKind::Joint,
            Heatmap::Limb => HeatmapKind::Limb,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub heatmap: Heatmap,
    pub skeleton: String,
    /// `UniformSampleFrames(clip_len)`.
    pub clip_len: usize,
    /// `GeneratePoseTarget(sigma)`.
    pub sigma: f64,
    /// `Resize(scale=(-1, resize_short))` before the crop.
    pub resize_short: usize,
    /// `RandomResizedCrop(area_range)`.
    pub crop_area: (f64, f64),
    pub crop_aspect: (f64, f64),
    /// `Resize((train_size, train_size), keep_ratio=False)` after the crop.
    pub train_size: usize,
    /// Validation `Resize((val_size, val_size))`, one clip, no flip.
    pub val_size: usize,
    /// `Flip(flip_ratio)`.
    pub flip: f64,
    /// `RepeatDataset(times)`: one epoch is this many passes over the train split.
    pub repeat: usize,
    pub batch_size: usize,
    pub val_batch_size: usize,
    /// Loader threads (each builds whole batches).
    pub workers: usize,
    /// Batches each loader thread may have ready ahead of the model.
    pub prefetch: usize,
    pub train_split: String,
    pub val_split: String,
    /// Video streams: `rgb` (the source video) or an extracted `taylor` / `flow` / `depth`
    /// video (`mgscope extract --format mp4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Video streams: `SampleFrames(frame_interval)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_interval: Option<usize>,
    /// Video streams: the data preprocessor's mean / std (0–255, RGB); default ImageNet's.
    /// `mgscope stats DATASET` measures a dataset's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// RGBPoseConv3D: RGB frames per clip (`MMUniformSampleFrames(clip_len=dict(RGB=…))`);
    /// `clip_len` is the pose frames, 4× as many (the speed ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rgb_clip_len: Option<usize>,
    /// RGBPoseConv3D: `GeneratePoseTarget(scaling)`, the heatmap canvas relative to the RGB
    /// frame (0.25: 224² RGB, 56² heatmaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap_scaling: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// `clip_grad_norm_(max_norm)`; none = no clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    pub label_smoothing: f64,
    pub epochs: usize,
    /// Cosine floor (`min_lr`).
    pub eta_min: f64,
    /// `sgd` (momentum, coupled weight decay; the default) or `adamw` (decoupled weight
    /// decay, Swin's parameter groups: backbone lr × `backbone_lr_mult`, no decay on norms
    /// and position tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<(f64, f64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_lr_mult: Option<f64>,
    /// Linear warm-up (`LinearLR(start_factor)`) over this many epochs, by iteration, before
    /// the cosine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_start_factor: Option<f64>,
    /// Step schedule instead of the cosine (mmcv `lr_config=dict(policy='step', step=[…])`):
    /// the lr is multiplied by `lr_gamma` (default 0.1) at the start of each listed epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_steps: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_gamma: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub seed: u64,
    /// Validate every this many epochs (and always after the last).
    pub val_every: usize,
    /// Name of the ensemble stream the best checkpoint's validation scores are stored under
    /// (default: `train:<run folder name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Mixed precision on a GPU: `"bf16"` runs the convolutions in bfloat16 (f32 master
    /// weights, batch-norm and loss); `"f16"` in half precision with dynamic loss scaling
    /// (GradScaler's defaults). The convolutions stay f32 on the CPU; f16's loss scaling runs
    /// there too (exact: powers of two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amp: Option<String>,
    /// f16: the loss scale to start from (`GradScaler(init_scale)`, default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_scale: Option<f64>,
}

/// Preset names with one line each.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "posec3d-joint",
        "MM-Gesture PoseC3D joint: SlowOnly-R50 (4,6,3) base 32, 48×56², lr 0.05, 24 epochs",
    ),
    (
        "posec3d-limb",
        "MM-Gesture PoseC3D limb: as joint on limb heatmaps, lr 0.2",
    ),
    (
        "posec3d-joint-cpu",
        "reduced for CPUs: base 16, blocks (2,2,2), 32×42² (val 48²)",
    ),
    ("posec3d-limb-cpu", "reduced for CPUs, limb heatmaps"),
    (
        "posec3d-joint-tiny",
        "the demo/test size: base 8, blocks (1,1,1), 12×20² (val 24²), lr 0.2, 12 epochs",
    ),
    (
        "rgb-slowonly",
        "MM-Gesture rgb_only.py, the RGB pathway's pretraining: SlowOnly-R50 on 8×224² RGB, lr 0.15, cosine, 18 epochs",
    ),
    (
        "rgb-slowonly-tiny",
        "the RGB SlowOnly for the demo on a CPU: base 16, blocks (1,1,1,1), 4×64² (val 64²), 8 epochs",
    ),
    (
        "rgbpose-joint",
        "MM-Gesture RGB+J RGBPoseConv3D: RGB 8×224² + joint heatmaps 32×56² (σ 0.7), lr 0.0075, steps at 12 and 16, 20 epochs; init from `mgscope probe merge-rgbpose`",
    ),
    (
        "rgbpose-limb",
        "MM-Gesture RGB+L as published: pose pathway from the limb PoseC3D, heatmaps drawn from joints (its config is RGB+J's; set data.heatmap = \"limb\" to draw limbs)",
    ),
    (
        "rgbpose-tiny",
        "an RGBPoseConv3D for the demo on a CPU: RGB base 16 (1,1,1,1), pose base 8 (1,1,1), RGB 4×64², pose 16×16², 10 epochs",
    ),
    (
        "swin-t-rgb",
        "MM-Gesture Video Swin-T on RGB: 32×2 frames, 224², AdamW 1e-3 (backbone ×0.1), wd 0.02, warm-up 2.5 + cosine, 30 epochs",
    ),
    ("swin-t-taylor", "Swin-T on the extracted Taylor videos"),
    ("swin-t-flow", "Swin-T on the extracted optical-flow videos"),
    ("swin-t-depth", "Swin-T on the extracted depth videos"),
    ("swin-s-rgb", "Swin-S on RGB: drop-path 0.2, batch 5"),
    ("swin-b-rgb", "Swin-B on RGB: drop-path 0.3, wd 0.05, batch 4"),
    (
        "swin-tiny-demo",
        "a Swin for the demo on a CPU: C 24, depths (1,1,1,1), window (2,4,4), 8×2 frames, 64², 8 epochs",
    ),
];

impl TrainConfig {
    /// A preset by name.
    pub fn preset(name: &str) -> Result<TrainConfig> {
        let joint = TrainConfig {
            preset: name.to_string(),
            model: ModelConfig {
                arch: "posec3d-joint36".into(),
                base_channels: 32,
                stage_blocks: vec![4, 6, 3],
                dropout: 0.5,
                init: None,
                drop_path: None,
                embed_dim: None,
                depths: None,
                num_heads: None,
                window: None,
                rgb_base_channels: None,
                rgb_stage_blocks: None,
            },
            data: DataConfig {
                heatmap: Heatmap::Joint,
                skeleton: "imigue36".into(),
                clip_len: 48,
                sigma: 0.6,
                resize_short: 64,
                crop_area: (0.56, 1.0),
                crop_aspect: (3.0 / 4.0, 4.0 / 3.0),
                train_size: 56,
                val_size: 64,
                flip: 0.5,
                repeat: 10,
                // videos_per_gpu=32; the reference ran 8 GPUs (256 per step) at this lr.
                batch_size: 32,
                val_batch_size: 8,
                workers: 4,
                prefetch: 2,
                train_split: "train".into(),
                val_split: "val".into(),
                source: None,
                frame_interval: None,
                mean: None,
                std: None,
                rgb_clip_len: None,
                heatmap_scaling: None,
            },
            optim: OptimConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 3e-4,
                grad_clip: Some(40.0),
                label_smoothing: 0.0,
                epochs: 24,
                eta_min: 0.0,
                optimizer: None,
                betas: None,
                backbone_lr_mult: None,
                warmup_epochs: None,
                warmup_start_factor: None,
                lr_steps: None,
                lr_gamma: None,
            },
            run: RunConfig {
                seed: 0,
                val_every: 1,
                stream: None,
                amp: None,
                init_scale: None,
            },
        };
        let limb = |mut c: TrainConfig| {
            c.model.arch = "posec3d-limb36".into();
            c.data.heatmap = Heatmap::Limb;
            // `lr=0.4/2` in MM-Gesture's limb.py
            c.optim.lr = 0.2;
            c
        };
        let cpu = |mut c: TrainConfig| {
            c.model.base_channels = 16;
            c.model.stage_blocks = vec![2, 2, 2];
            c.data.clip_len = 32;
            c.data.resize_short = 48;
            c.data.train_size = 42;
            c.data.val_size = 48;
            c.data.repeat = 1;
            c.data.batch_size = 8;
            c.data.workers = 2;
            c
        };
        // mm-gesture.md §4.1: SampleFrames(32, 2), Resize(-1, 256), RandomResizedCrop,
        // Resize(224), Flip(0.5); AdamW 1e-3 (0.9, 0.999), backbone lr ×0.1; LinearLR(0.1)
        // over 2.5 epochs, then cosine to 0 at 30 epochs; ImageNet mean/std.
        let swin = |arch: &str, source: &str| {
            let mut c = joint.clone();
            c.model.arch = arch.into();
            c.model.dropout = 0.5;
            c.data.source = Some(source.into());
            c.data.clip_len = 32;
            c.data.frame_interval = Some(2);
            c.data.resize_short = 256;
            c.data.crop_area = (0.08, 1.0);
            c.data.train_size = 224;
            c.data.val_size = 224;
            c.data.repeat = 1;
            c.data.batch_size = 8;
            c.data.val_batch_size = 8;
            c.optim.optimizer = Some("adamw".into());
            c.optim.lr = 1e-3;
            c.optim.betas = Some((0.9, 0.999));
            c.optim.weight_decay = 0.02;
            c.optim.backbone_lr_mult = Some(0.1);
            c.optim.grad_clip = None;
            c.optim.warmup_epochs = Some(2.5);
            c.optim.warmup_start_factor = Some(0.1);
            c.optim.epochs = 30;
            c
        };
        // mm-gesture.md §3.3 (`rgbJoint_conv3d.py`): MMUniformSampleFrames(RGB 8, Pose 32),
        // MMCompact, Resize 256², RandomResizedCrop(0.56–1), Resize 224², Flip; heatmaps σ 0.7
        // at scale 0.25 with scores; SGD 0.0075 (batch 6 per GPU), wd 1e-4, clip 40, step
        // at [12, 16], 20 epochs; MM-Gesture's iMiGUE mean/std.
        let rgbpose = || {
            let mut c = joint.clone();
            c.model.arch = "rgbpose-conv3d".into();
            c.data.clip_len = 32;
            c.data.rgb_clip_len = Some(8);
            c.data.sigma = 0.7;
            c.data.heatmap_scaling = Some(0.25);
            c.data.resize_short = 256;
            c.data.train_size = 224;
            c.data.val_size = 256;
            c.data.repeat = 1;
            c.data.batch_size = 6;
            c.data.val_batch_size = 4;
            c.data.mean = Some(crate::nn::video_views::IMIGUE_MEAN);
            c.data.std = Some(crate::nn::video_views::IMIGUE_STD);
            c.optim.lr = 0.0075;
            c.optim.weight_decay = 1e-4;
            c.optim.epochs = 20;
            c.optim.lr_steps = Some(vec![12, 16]);
            c
        };
        // mm-gesture.md §3.2 (`rgb_only.py`): MMUniformSampleFrames(RGB 8), MMCompact, Resize
        // 256², RandomResizedCrop(0.56–1), Resize 224², Flip; val Resize 224²; SGD 0.15
        // (batch 26 per GPU), wd 1e-4, cosine, 18 epochs.
        let rgb_only = || {
            let mut c = rgbpose();
            c.model.arch = "slowonly-r50-rgb".into();
            c.data.clip_len = 8;
            c.data.rgb_clip_len = Some(8);
            c.data.heatmap_scaling = None;
            c.data.val_size = 224;
            c.data.batch_size = 26;
            c.optim.lr = 0.15;
            c.optim.epochs = 18;
            c.optim.lr_steps = None;
            c
        };
        Ok(match name {
            "rgb-slowonly" => rgb_only(),
            "rgb-slowonly-tiny" => {
                let mut c = rgb_only();
                c.model.rgb_base_channels = Some(16);
                c.model.rgb_stage_blocks = Some(vec![1, 1, 1, 1]);
                c.data.clip_len = 4;
                c.data.rgb_clip_len = Some(4);
                c.data.resize_short = 72;
                c.data.train_size = 64;
                c.data.val_size = 64;
                c.data.batch_size = 8;
                c.data.val_batch_size = 8;
                c.data.workers = 2;
                c.optim.lr = 0.05;
                c.optim.epochs = 8;
                c
            }
            "rgbpose-joint" | "rgbpose-limb" => rgbpose(),
            "rgbpose-tiny" => {
                let mut c = rgbpose();
                c.model.base_channels = 8;
                c.model.stage_blocks = vec![1, 1, 1];
                c.model.rgb_base_channels = Some(16);
                c.model.rgb_stage_blocks = Some(vec![1, 1, 1, 1]);
                c.data.clip_len = 16;
                c.data.rgb_clip_len = Some(4);
                c.data.resize_short = 72;
                c.data.train_size = 64;
                c.data.val_size = 72;
                c.data.batch_size = 8;
                c.data.val_batch_size = 8;
                c.data.workers = 2;
                c.optim.lr = 0.05;
                c.optim.epochs = 10;
                c.optim.lr_steps = Some(vec![7, 9]);
                c
            }
            "swin-t-rgb" => swin("swin-t", "rgb"),
            "swin-t-taylor" => swin("swin-t", "taylor"),
            "swin-t-flow" => swin("swin-t", "flow"),
            "swin-t-depth" => swin("swin-t", "depth"),
            "swin-s-rgb" => {
                let mut c = swin("swin-s", "rgb");
                c.data.batch_size = 5;
                c
            }
            "swin-b-rgb" => {
                let mut c = swin("swin-b", "rgb");
                c.data.batch_size = 4;
                c.optim.weight_decay = 0.05;
                c
            }
            "swin-tiny-demo" => {
                let mut c = swin("swin-t", "rgb");
                c.model.embed_dim = Some(24);
                c.model.depths = Some(vec![1, 1, 1, 1]);
                c.model.num_heads = Some(vec![1, 2, 4, 8]);
                c.model.window = Some((2, 4, 4));
                c.model.drop_path = Some(0.0);
                c.data.clip_len = 8;
                c.data.resize_short = 72;
                c.data.crop_area = (0.3, 1.0);
                c.data.train_size = 64;
                c.data.val_size = 64;
                c.data.batch_size = 8;
                c.data.workers = 2;
                c.optim.epochs = 8;
                c.optim.warmup_epochs = Some(1.0);
                c
            }
            "posec3d-joint" => joint,
            "posec3d-limb" => limb(joint),
            "posec3d-joint-cpu" => cpu(joint),
            "posec3d-limb-cpu" => limb(cpu(joint)),
            "posec3d-joint-tiny" => {
                let mut c = cpu(joint);
                c.model.base_channels = 8;
                c.model.stage_blocks = vec![1, 1, 1];
                c.data.clip_len = 12;
                c.data.resize_short = 24;
                c.data.train_size = 20;
                c.data.val_size = 24;
                c.data.batch_size = 8;
                c.data.repeat = 2;
                // 111 demo clips underfit at 0.05 in the few epochs a CI run affords
                c.optim.lr = 0.2;
                c.optim.epochs = 12;
                c
            }
            other => {
                let known: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                return Err(TrainError::UnknownPreset(
                    other.to_string(),
                    known.join(", "),
                ));
            }
        })
    }

    /// Reads a TOML file: its `preset` key (or `preset`, or `posec3d-joint`) gives the base
    /// and every key the file sets replaces the preset's.
    pub fn load(path: &Path, preset: Option<&str>) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(&text, preset).map_err(|message| TrainError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// `preset` (from the command line) wins over the file's own `preset` key.
    pub fn from_toml(text: &str, preset: Option<&str>) -> std::result::Result<Self, String> {
        let over: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let file_preset = over
            .get("preset")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let name = preset
            .map(str::to_string)
            .or(file_preset)
            .unwrap_or_else(|| "posec3d-joint".into());
        let name = name.as_str();
        let base = Self::preset(name).map_err(|e| e.to_string())?;
        let mut table = toml::Table::try_from(&base).map_err(|e| e.to_string())?;
        merge(&mut table, over);
        table.insert("preset".into(), toml::Value::String(name.to_string()));
        let cfg: TrainConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> std::result::Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| e.to_string())
    }

    /// What the loader and model cannot work with, named by key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let d = &self.data;
        let m = &self.model;
        let o = &self.optim;
        let video = self.is_video();
        let sources = ["rgb", "taylor", "flow", "depth"];
        let rgbpose = self.is_rgbpose();
        let checks: Vec<(bool, String)> = vec![
            (m.base_channels > 0, "model.base_channels must be > 0".into()),
            (
                m.stage_blocks.len() == 3 && m.stage_blocks.iter().all(|&b| b > 0),
                format!(
                    "model.stage_blocks must be 3 positive counts (PoseC3D's strides are per stage), got {:?}",
                    m.stage_blocks
                ),
            ),
            ((0.0..1.0).contains(&m.dropout), format!("model.dropout {} outside [0, 1)", m.dropout)),
            (d.clip_len > 0, "data.clip_len must be > 0".into()),
            (
                d.train_size >= 8 && d.val_size >= 8 && d.resize_short >= 8,
                "data.train_size, val_size and resize_short must be ≥ 8 (three stride-2 stages)".into(),
            ),
            (
                d.batch_size > 0 && d.val_batch_size > 0 && d.repeat > 0,
                "data.batch_size, val_batch_size and repeat must be > 0".into(),
            ),
            (
                0.0 < d.crop_area.0 && d.crop_area.0 <= d.crop_area.1 && d.crop_area.1 <= 1.0,
                format!("data.crop_area {:?} must satisfy 0 < lo ≤ hi ≤ 1", d.crop_area),
            ),
            (
                0.0 < d.crop_aspect.0 && d.crop_aspect.0 <= d.crop_aspect.1,
                format!("data.crop_aspect {:?} must satisfy 0 < lo ≤ hi", d.crop_aspect),
            ),
            (video || skeleton_by_name(&d.skeleton).is_some(), format!("data.skeleton {:?} unknown (imigue36, coco17)", d.skeleton)),
            (
                !video || d.source.as_deref().is_some_and(|s| sources.contains(&s)),
                format!("data.source {:?}: a Swin stream reads rgb, taylor, flow or depth", d.source.as_deref().unwrap_or_default()),
            ),
            (
                video || rgbpose || matches!(m.arch.as_str(), "posec3d-joint36" | "posec3d-limb36" | "slowonly-r50-rgb"),
                format!("model.arch {:?}: expected posec3d-joint36, posec3d-limb36, slowonly-r50-rgb, rgbpose-conv3d, swin-t, swin-s or swin-b", m.arch),
            ),
            (
                d.rgb_clip_len.is_none_or(|r| r > 0)
                    && (!rgbpose || d.rgb_clip_len.is_some_and(|r| d.clip_len == 4 * r)),
                format!(
                    "data.clip_len {} must be 4 × data.rgb_clip_len {:?} (RGBPoseConv3D's speed ratio)",
                    d.clip_len, d.rgb_clip_len
                ),
            ),
            (
                m.rgb_stage_blocks.as_ref().is_none_or(|b| b.len() == 4 && b.iter().all(|&x| x > 0))
                    && m.rgb_base_channels.is_none_or(|c| c > 0)
                    && (!rgbpose || m.rgb_base_channels.unwrap_or(64) == 2 * m.base_channels),
                format!(
                    "model.rgb_stage_blocks must be 4 positive counts and model.rgb_base_channels ({}) twice model.base_channels ({}): the laterals divide channels by 4",
                    m.rgb_base_channels.unwrap_or(64),
                    m.base_channels
                ),
            ),
            (
                d.heatmap_scaling.is_none_or(|s| s > 0.0 && s <= 1.0)
                    && o.lr_gamma.is_none_or(|g| g > 0.0)
                    && o.lr_steps.as_ref().is_none_or(|v| v.windows(2).all(|w| w[0] < w[1])),
                "data.heatmap_scaling must be in (0, 1], optim.lr_gamma > 0, optim.lr_steps increasing".into(),
            ),
            (
                matches!(o.optimizer.as_deref(), None | Some("sgd" | "adamw")),
                format!("optim.optimizer {:?}: expected sgd or adamw", o.optimizer.as_deref().unwrap_or_default()),
            ),
            (
                d.frame_interval.is_none_or(|i| i > 0)
                    && o.warmup_epochs.is_none_or(|w| w >= 0.0)
                    && o.warmup_start_factor.is_none_or(|f| f > 0.0 && f <= 1.0)
                    && d.std.is_none_or(|s| s.iter().all(|&v| v > 0.0)),
                "data.frame_interval must be ≥ 1, optim.warmup_epochs ≥ 0, optim.warmup_start_factor in (0, 1], data.std > 0".into(),
            ),
            (
                o.lr > 0.0 && o.momentum >= 0.0 && o.weight_decay >= 0.0 && o.epochs > 0,
                "optim.lr and optim.epochs must be > 0, momentum and weight_decay ≥ 0".into(),
            ),
            (
                (0.0..1.0).contains(&o.label_smoothing),
                format!("optim.label_smoothing {} outside [0, 1)", o.label_smoothing),
            ),
            (
                o.grad_clip.is_none_or(|c| c > 0.0)
                    && self.run.init_scale.is_none_or(|k| k.is_finite() && k > 0.0),
                "optim.grad_clip must be > 0 (leave it out for no clipping), run.init_scale finite and > 0".into(),
            ),
            (
                matches!(self.run.amp.as_deref(), None | Some("bf16" | "f16" | "off")),
                format!(
                    "run.amp {:?}: expected \"bf16\", \"f16\" or \"off\"",
                    self.run.amp.as_deref().unwrap_or_default()
                ),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg),
            None => Ok(()),
        }
    }

    /// A Video Swin stream (frames in, `swin-*` arch) rather than a heatmap one.
    pub fn is_video(&self) -> bool {
        self.model.arch.starts_with("swin")
    }

    /// An RGBPoseConv3D stream (RGB frames and heatmaps in, two heads out).
    pub fn is_rgbpose(&self) -> bool {
        self.model.arch == "rgbpose-conv3d"
    }

    /// The RGB SlowOnly that pretrains RGBPoseConv3D's RGB pathway (RGB frames in).
    pub fn is_rgb_only(&self) -> bool {
        self.model.arch == "slowonly-r50-rgb"
    }

    /// The RGBPoseConv3D network of this config: MM-Gesture's, with the config's widths, depths
    /// and heatmap channels.
    pub fn rgbpose_network(&self, num_classes: usize) -> Result<crate::nn::rgbpose::Config> {
        let m = &self.model;
        let mut c = crate::nn::rgbpose::Config::rgbpose_conv3d();
        c.pose.in_channels = self.in_channels()?;
        c.pose.base_channels = m.base_channels;
        c.pose.stage_blocks = m.stage_blocks.clone();
        c.rgb = self.rgb_pathway();
        c.num_classes = num_classes;
        Ok(c)
    }

    /// The RGB SlowOnly-R50 (RGBPoseConv3D's RGB pathway) with `model.rgb_*` applied.
    fn rgb_pathway(&self) -> resnet3d::Config {
        let m = &self.model;
        let mut c = resnet3d::Config::slowonly_r50_rgb();
        if let Some(b) = m.rgb_base_channels {
            c.base_channels = b;
        }
        if let Some(v) = &m.rgb_stage_blocks {
            c.stage_blocks = v.clone();
        }
        c
    }

    /// The Swin network of this config: the arch's, with the config's overrides.
    pub fn swin_network(&self, num_classes: usize) -> Result<crate::nn::swin3d::Config> {
        use crate::nn::swin3d;
        let m = &self.model;
        let mut c = match m.arch.as_str() {
            "swin-t" => swin3d::Config::swin_t(),
            "swin-s" => swin3d::Config::swin_s(),
            "swin-b" => swin3d::Config::swin_b(),
            other => {
                return Err(TrainError::Invalid(format!(
                    "model.arch {other:?} is not a Swin (swin-t, swin-s, swin-b)"
                )))
            }
        };
        c.num_classes = num_classes;
        if let Some(v) = m.drop_path {
            c.drop_path_rate = v;
        }
        if let Some(v) = m.embed_dim {
            c.embed_dim = v;
        }
        if let Some(v) = &m.depths {
            c.depths = v.clone();
        }
        if let Some(v) = &m.num_heads {
            c.num_heads = v.clone();
        }
        if let Some(v) = m.window {
            c.window_size = v;
        }
        Ok(c)
    }

    /// The dtype the convolutions run in under `run.amp` (none: f32).
    pub fn amp_dtype(&self) -> Option<candle_core::DType> {
        match self.run.amp.as_deref() {
            Some("bf16") => Some(candle_core::DType::BF16),
            Some("f16") => Some(candle_core::DType::F16),
            _ => None,
        }
    }

    /// f16 needs its loss scaled (bf16 has f32's exponent range and does not).
    pub fn loss_scaling(&self) -> bool {
        self.run.amp.as_deref() == Some("f16")
    }

    pub fn skeleton(&self) -> Result<Skeleton> {
        skeleton_by_name(&self.data.skeleton).ok_or_else(|| {
            TrainError::Invalid(format!("unknown skeleton {:?}", self.data.skeleton))
        })
    }

    /// Heatmap channels: one per keypoint or one per limb.
    pub fn in_channels(&self) -> Result<usize> {
        let sk = self.skeleton()?;
        Ok(match self.data.heatmap {
            Heatmap::Joint => sk.num_keypoints,
            Heatmap::Limb => sk.limbs.len(),
        })
    }

    /// The network: PoseC3D's strides and stem with this config's width and depth (the RGB
    /// SlowOnly-R50's with `model.rgb_*` for `slowonly-r50-rgb`).
    pub fn network(&self, num_classes: usize) -> Result<resnet3d::Config> {
        if self.is_rgb_only() {
            return Ok(resnet3d::Config {
                num_classes,
                ..self.rgb_pathway()
            });
        }
        Ok(resnet3d::Config {
            in_channels: self.in_channels()?,
            base_channels: self.model.base_channels,
            stage_blocks: self.model.stage_blocks.clone(),
            num_classes,
            ..resnet3d::Config::posec3d_joint36()
        })
    }
}

/// Lays `over` onto `base` key by key, descending into tables.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_round_trips_through_toml() {
        for (name, _) in PRESETS {
            let c = TrainConfig::preset(name).expect("preset");
            c.validate().expect("valid");
            let text = c.to_toml().expect("toml");
            let back = TrainConfig::from_toml(&text, None).expect("parse");
            assert_eq!(back, c, "{name}");
        }
    }

    #[test]
    fn file_keys_override_the_preset() {
        let c = TrainConfig::from_toml(
            "preset = \"posec3d-limb\"\n[optim]\nlr = 0.01\n[data]\nbatch_size = 4\n",
            None,
        )
        .expect("parse");
        assert_eq!(c.data.heatmap, Heatmap::Limb);
        assert_eq!(c.optim.lr, 0.01);
        assert_eq!(c.data.batch_size, 4);
        assert_eq!(c.optim.epochs, 24);
        let c = TrainConfig::from_toml("", Some("posec3d-joint-tiny")).expect("parse");
        assert_eq!(c.model.base_channels, 8);
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let e = TrainConfig::from_toml("[optim]\nlrr = 1.0\n", None).expect_err("unknown key");
        assert!(e.contains("lrr"), "{e}");
        let e =
            TrainConfig::from_toml("[optim]\nlabel_smoothing = 1.5\n", None).expect_err("range");
        assert!(e.contains("label_smoothing"), "{e}");
        let e = TrainConfig::from_toml("preset = \"nope\"\n", None).expect_err("preset");
        assert!(e.contains("nope"), "{e}");
        let e = TrainConfig::from_toml("[run]\namp = \"fp8\"\n", Some("posec3d-joint-tiny"))
            .expect_err("amp");
        assert!(e.contains("run.amp") && e.contains("fp8"), "{e}");
    }

    #[test]
    fn amp_selects_bf16_convolutions() {
        let c = TrainConfig::from_toml("[run]\namp = \"bf16\"\n", Some("posec3d-joint-tiny"))
            .expect("parse");
        assert_eq!(c.amp_dtype(), Some(candle_core::DType::BF16));
        assert!(!c.loss_scaling());
        let c = TrainConfig::from_toml("[run]\namp = \"f16\"\n", Some("posec3d-joint-tiny"))
            .expect("parse");
        assert_eq!(c.amp_dtype(), Some(candle_core::DType::F16));
        assert!(c.loss_scaling());
        let c = TrainConfig::from_toml("", Some("posec3d-joint-tiny")).expect("parse");
        assert_eq!(c.amp_dtype(), None);
        assert!(!c.to_toml().expect("toml").contains("amp"));
    }
}
