//! What the training loop needs of a split, whatever the stream: how many clips, their ids and
//! labels, and one training or validation volume `[C, T, H, W]` per clip. The PoseC3D heatmap
//! pipeline and the Video Swin frame pipeline both provide it.

use std::sync::Arc;

use rand_chacha::ChaCha8Rng;

use super::config::TrainConfig;
use super::data::{load_split, Pipeline, PoseItem};
use super::Result;
use crate::store::Dataset;

/// A split as a run uses it, with the clips left out and why.
pub struct LoadedSplit {
    pub set: Arc<dyn ClipSet>,
    pub skipped: Vec<String>,
    /// Assumptions made about the data (missing frame sizes).
    pub notes: Vec<String>,
}

/// The clips of split `split` for the stream `cfg` trains: keypoints through the PoseC3D
/// pipeline, or frames through the Video Swin one.
pub fn load_clips(
    ds: &Dataset,
    cfg: &TrainConfig,
    split: &str,
    labelled_only: bool,
) -> Result<LoadedSplit> {
    if cfg.is_video() {
        return load_video(ds, cfg, split, labelled_only);
    }
    if cfg.is_rgbpose() || cfg.is_rgb_only() {
        return load_rgbpose(ds, cfg, split, labelled_only);
    }
    let s = load_split(ds, split, labelled_only)?;
    Ok(LoadedSplit {
        set: Arc::new(PoseSet {
            items: s.items,
            pipeline: Pipeline::new(cfg.data.clone(), cfg.skeleton()?),
        }),
        skipped: s.skipped,
        notes: s.notes,
    })
}

#[cfg(feature = "video")]
fn load_video(
    ds: &Dataset,
    cfg: &TrainConfig,
    split: &str,
    labelled_only: bool,
) -> Result<LoadedSplit> {
    use crate::nn::video_views::{IMAGENET_MEAN, IMAGENET_STD};
    use crate::train::video_data::{load_video_split, VideoPipelineConfig};
    let d = &cfg.data;
    let source = d.source.as_deref().unwrap_or("rgb");
    let s = load_video_split(ds, split, source, labelled_only)?;
    let pipeline = VideoPipelineConfig {
        clip_len: d.clip_len,
        frame_interval: d.frame_interval.unwrap_or(2),
        resize_short: d.resize_short,
        size: d.train_size,
        crop_area: d.crop_area,
        crop_aspect: d.crop_aspect,
        flip: d.flip,
        mean: d.mean.unwrap_or(IMAGENET_MEAN),
        std: d.std.unwrap_or(IMAGENET_STD),
    };
    Ok(LoadedSplit {
        set: Arc::new(VideoSet {
            items: s.items,
            pipeline,
        }),
        skipped: s.skipped,
        notes: Vec::new(),
    })
}

#[cfg(feature = "video")]
fn load_rgbpose(
    ds: &Dataset,
    cfg: &TrainConfig,
    split: &str,
    labelled_only: bool,
) -> Result<LoadedSplit> {
    use crate::nn::video_views::{IMIGUE_MEAN, IMIGUE_STD};
    use crate::train::config::Heatmap;
    use crate::train::rgbpose_data::{load_rgbpose_split, RgbPosePipeline};
    let d = &cfg.data;
    let s = load_rgbpose_split(ds, split, labelled_only)?;
    let pipeline = RgbPosePipeline {
        skeleton: cfg.skeleton()?,
        limb: d.heatmap == Heatmap::Limb,
        rgb_len: d.rgb_clip_len.unwrap_or(8),
        pose_len: if cfg.is_rgbpose() { d.clip_len } else { 0 },
        size: d.resize_short,
        train_size: d.train_size,
        val_size: d.val_size,
        crop_area: d.crop_area,
        crop_aspect: d.crop_aspect,
        flip: d.flip,
        sigma: d.sigma,
        scaling: d.heatmap_scaling.unwrap_or(0.25),
        mean: d.mean.unwrap_or(IMIGUE_MEAN),
        std: d.std.unwrap_or(IMIGUE_STD),
    };
    Ok(LoadedSplit {
        set: Arc::new(ClipList {
            items: s.items,
            pipeline,
        }),
        skipped: s.skipped,
        notes: s.notes,
    })
}

#[cfg(not(feature = "video"))]
fn load_rgbpose(_: &Dataset, cfg: &TrainConfig, _: &str, _: bool) -> Result<LoadedSplit> {
    Err(super::TrainError::Invalid(format!(
        "model.arch {}: training on RGB frames needs a build with the `video` feature",
        cfg.model.arch
    )))
}

#[cfg(not(feature = "video"))]
fn load_video(_: &Dataset, cfg: &TrainConfig, _: &str, _: bool) -> Result<LoadedSplit> {
    Err(super::TrainError::Invalid(format!(
        "model.arch {}: training on video frames needs a build with the `video` feature",
        cfg.model.arch
    )))
}

pub trait ClipSet: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn clip_id(&self, i: usize) -> &str;
    fn label(&self, i: usize) -> Option<u32>;
    /// One random training view of clip `i`, drawn from `rng` alone.
    fn train_volume(&self, i: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>>;
    fn val_volume(&self, i: usize) -> Result<Vec<f32>>;
    /// The inputs of one volume, in order (one for most models; RGB then heatmaps for
    /// RGBPoseConv3D). A volume is its inputs' values one after the other.
    fn train_shape(&self) -> Vec<[usize; 4]>;
    fn val_shape(&self) -> Vec<[usize; 4]>;
}

/// What the loop reads of one clip record.
pub trait Clip: Send + Sync {
    fn clip_id(&self) -> &str;
    fn label(&self) -> Option<u32>;
}

/// A data pipeline: one training or validation volume of a clip record.
pub trait ClipPipeline<I>: Send + Sync {
    fn train_volume(&self, item: &I, rng: &mut ChaCha8Rng) -> Result<Vec<f32>>;
    fn val_volume(&self, item: &I) -> Result<Vec<f32>>;
    fn train_shape(&self) -> Vec<[usize; 4]>;
    fn val_shape(&self) -> Vec<[usize; 4]>;
}

/// A split's clip records and the pipeline that turns them into volumes.
pub struct ClipList<I, P> {
    pub items: Vec<I>,
    pub pipeline: P,
}

impl<I: Clip, P: ClipPipeline<I>> ClipSet for ClipList<I, P> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn clip_id(&self, i: usize) -> &str {
        self.items[i].clip_id()
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.items[i].label()
    }

    fn train_volume(&self, i: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        self.pipeline.train_volume(&self.items[i], rng)
    }

    fn val_volume(&self, i: usize) -> Result<Vec<f32>> {
        self.pipeline.val_volume(&self.items[i])
    }

    fn train_shape(&self) -> Vec<[usize; 4]> {
        self.pipeline.train_shape()
    }

    fn val_shape(&self) -> Vec<[usize; 4]> {
        self.pipeline.val_shape()
    }
}

/// A split's keypoint clips through the PoseC3D pipeline.
pub type PoseSet = ClipList<PoseItem, Pipeline>;

impl Clip for PoseItem {
    fn clip_id(&self) -> &str {
        &self.clip_id
    }

    fn label(&self) -> Option<u32> {
        self.label
    }
}

impl ClipPipeline<PoseItem> for Pipeline {
    fn train_volume(&self, item: &PoseItem, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        Pipeline::train_volume(self, item, rng)
    }

    fn val_volume(&self, item: &PoseItem) -> Result<Vec<f32>> {
        Pipeline::val_volume(self, item)
    }

    fn train_shape(&self) -> Vec<[usize; 4]> {
        let c = &self.cfg;
        vec![[self.channels, c.clip_len, c.train_size, c.train_size]]
    }

    fn val_shape(&self) -> Vec<[usize; 4]> {
        let c = &self.cfg;
        vec![[self.channels, c.clip_len, c.val_size, c.val_size]]
    }
}

#[cfg(feature = "video")]
pub use video::VideoSet;

#[cfg(feature = "video")]
mod video {
    use super::*;
    use crate::train::video_data::{VideoItem, VideoPipelineConfig};

    /// A split's clips as frames (RGB, or an extracted Taylor / flow / depth video) through
    /// the Video Swin pipeline.
    pub type VideoSet = ClipList<VideoItem, VideoPipelineConfig>;

    impl Clip for VideoItem {
        fn clip_id(&self) -> &str {
            &self.clip_id
        }

        fn label(&self) -> Option<u32> {
            self.label
        }
    }

    impl ClipPipeline<VideoItem> for VideoPipelineConfig {
        fn train_volume(&self, item: &VideoItem, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
            VideoPipelineConfig::train_volume(self, item, rng)
        }

        fn val_volume(&self, item: &VideoItem) -> Result<Vec<f32>> {
            VideoPipelineConfig::val_volume(self, item)
        }

        fn train_shape(&self) -> Vec<[usize; 4]> {
            vec![VideoPipelineConfig::train_shape(self)]
        }

        fn val_shape(&self) -> Vec<[usize; 4]> {
            vec![VideoPipelineConfig::train_shape(self)]
        }
    }
}
