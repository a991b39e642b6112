//! The RGBPoseConv3D data pipelines (MM-Gesture `pyskl/configs/rgbpose_conv3d/
//! rgbJoint_conv3d.py`, pyskl `pyskl/datasets/pipelines/multi_modality.py` and `augmentations.py`;
//! mm-gesture.md §3.3, models.md §3.5): RGB frames and pose heatmaps of one clip, cropped and
//! flipped together.
//!
//! Train: `MMUniformSampleFrames(RGB r, Pose 4r)` → `MMDecode` → `MMCompact(hw_ratio 1,
//! allow_imgpad)` → `Resize((S, S))` → `RandomResizedCrop(0.56–1)` → `Resize((s, s))` →
//! `Flip(0.5, left_kp, right_kp)` → `GeneratePoseTarget(σ, use_score, scaling)` → normalise
//! RGB → `[3, r, s, s]` and `[K, 4r, s·scaling, s·scaling]`.
//! Val: test-mode sampling (one clip), `MMCompact`, `Resize((S, S))`, no crop or flip — the
//! inference views of `mgscope predict --views fast` with the run's mean/std.
//!
//! With `pose_len = 0` it is the RGB-only pretraining pipeline of the RGB pathway
//! (`rgb_only.py`, mm-gesture.md §3.2): the same steps without heatmaps, MMCompact's box from
//! the keypoints of every frame (MMDecode leaves them unsampled).
//!
//! Draws come in the reference's order (RGB indices, pose indices, crop, flip) from the
//! sample's own generator.

use rand_chacha::ChaCha8Rng;

use super::clips::{Clip, ClipPipeline};
use super::config::Heatmap;
use super::data::{
    check_joints, frames_to_channels, heatmap_channels, load_split, train_heatmap_params, PoseItem,
};
use super::video_data::{flip_horizontal, load_video_split, read_frames, to_cthw, VideoItem};
use super::{Result, TrainError};
use crate::media::decode::VideoReader;
use crate::modality::heatmap::{scaled_canvas, HeatmapParams, Skeleton};
use crate::modality::pose_pipeline::{PoseCompact, PoseSample, Resize, UniformSampleFrames};
use crate::nn::models::ModelError;
use crate::nn::predict::{rgb_pose_inputs, RgbPoseViewConfig};
use crate::nn::video_views::{crop_padded, resize_bilinear, Rgb};
use crate::store::Dataset;

/// One clip: its keypoints and where its RGB frames are.
#[derive(Debug, Clone)]
pub struct RgbPoseItem {
    pub pose: PoseItem,
    pub video: VideoItem,
}

impl Clip for RgbPoseItem {
    fn clip_id(&self) -> &str {
        &self.pose.clip_id
    }

    fn label(&self) -> Option<u32> {
        self.pose.label
    }
}

/// The clips of a split with both keypoints and a source video; `skipped` names the others.
pub struct RgbPoseSplit {
    pub items: Vec<RgbPoseItem>,
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
}

pub fn load_rgbpose_split(ds: &Dataset, split: &str, labelled_only: bool) -> Result<RgbPoseSplit> {
    let poses = load_split(ds, split, labelled_only)?;
    let videos = load_video_split(ds, split, "rgb", labelled_only)?;
    let mut by_id: std::collections::HashMap<String, VideoItem> = videos
        .items
        .into_iter()
        .map(|v| (v.clip_id.clone(), v))
        .collect();
    let mut skipped = poses.skipped;
    for s in videos.skipped {
        if !skipped.contains(&s) {
            skipped.push(s);
        }
    }
    let mut items = Vec::with_capacity(poses.items.len());
    for pose in poses.items {
        // without a video, load_video_split has said why it is skipped
        if let Some(video) = by_id.remove(&pose.clip_id) {
            items.push(RgbPoseItem { pose, video });
        }
    }
    Ok(RgbPoseSplit {
        items,
        skipped,
        notes: poses.notes,
    })
}

/// The pipeline's parameters (a run config's `data` section, resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbPosePipeline {
    pub skeleton: Skeleton,
    /// Joint or limb heatmaps.
    pub limb: bool,
    pub rgb_len: usize,
    /// Pose frames; 0 for the RGB-only pipeline.
    pub pose_len: usize,
    /// `Resize((S, S))` after MMCompact (256).
    pub size: usize,
    /// Crop output (224).
    pub train_size: usize,
    /// Validation `Resize((v, v))` after MMCompact: 256 for RGBPose, 224 for RGB-only.
    pub val_size: usize,
    pub crop_area: (f64, f64),
    pub crop_aspect: (f64, f64),
    pub flip: f64,
    pub sigma: f64,
    pub scaling: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl RgbPosePipeline {
    fn kind(&self) -> Heatmap {
        if self.limb {
            Heatmap::Limb
        } else {
            Heatmap::Joint
        }
    }

    fn channels(&self) -> usize {
        heatmap_channels(self.kind(), &self.skeleton)
    }

    fn heatmap_params(&self) -> HeatmapParams {
        HeatmapParams {
            scaling: self.scaling,
            ..train_heatmap_params(self.kind(), self.sigma)
        }
    }

    /// `int(x · scaling + 0.5)`, GeneratePoseTarget's canvas side.
    fn canvas(&self, side: usize) -> usize {
        scaled_canvas(side, side, self.scaling).0
    }

    fn check(&self, item: &RgbPoseItem) -> Result<()> {
        check_joints(&item.pose, &self.skeleton)
    }

    /// One training draw: RGB `[3, r, s, s]` followed by heatmaps `[K, 4r, s', s']`.
    fn train_inputs(&self, item: &RgbPoseItem, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        self.check(item)?;
        let id = &item.pose.clip_id;
        let bad = |e: crate::modality::error::ModalityError| TrainError::Sample {
            clip_id: id.clone(),
            message: e.to_string(),
        };
        let kp = &item.pose.keypoints;
        let n = kp.frames;
        // MMUniformSampleFrames: RGB first, then pose, each its own UniformSampleFrames.
        let rgb_inds = UniformSampleFrames::new(self.rgb_len, 1)
            .train_indices(n, 0, rng)
            .map_err(bad)?;
        let (xy, sc) = kp.to_pyskl();
        let full = PoseSample::new(
            &xy,
            Some(&sc),
            [kp.persons, kp.frames, kp.joints],
            item.pose.img_hw,
        )
        .map_err(bad)?;
        let with_pose = self.pose_len > 0;
        let mut pose = if with_pose {
            let pose_inds = UniformSampleFrames::new(self.pose_len, 1)
                .train_indices(n, 0, rng)
                .map_err(bad)?;
            full.decode(&pose_inds).map_err(bad)?
        } else {
            full
        };
        let (ih, iw) = item.pose.img_hw;
        // MMCompact: the box of the sampled pose frames; the whole frame when too small.
        let compact = pose
            .pose_compact(&PoseCompact::default())
            .map_err(bad)?
            .unwrap_or([0, 0, iw as i64, ih as i64]);
        pose.resize(&Resize::exact(self.size, self.size))
            .map_err(bad)?;
        let crop = pose
            .random_resized_crop(self.crop_area, self.crop_aspect, rng)
            .map_err(bad)?;
        pose.resize(&Resize::exact(self.train_size, self.train_size))
            .map_err(bad)?;
        let flipped = pose
            .random_flip(
                self.flip,
                &self.skeleton.left_kp,
                &self.skeleton.right_kp,
                rng,
            )
            .map_err(bad)?;
        let idx: Vec<usize> = rgb_inds.iter().map(|&i| i as usize).collect();
        let frames = read_frames(&item.video, &idx)?;
        let s = self.train_size;
        let rgb: Vec<Rgb> = frames
            .iter()
            .map(|f| {
                let square = resize_bilinear(&crop_padded(f, compact), self.size, self.size);
                let mut v = resize_bilinear(&crop_padded(&square, crop), s, s);
                if flipped {
                    flip_horizontal(&mut v);
                }
                v
            })
            .collect();
        let mut out = to_cthw(&rgb, self.mean, self.std);
        if !with_pose {
            return Ok(out);
        }
        let hm = pose
            .heatmaps(&self.skeleton, &self.heatmap_params())
            .map_err(bad)?;
        out.extend(frames_to_channels(&hm.data, hm.shape));
        Ok(out)
    }

    /// The validation view: RGB `[3, r, S, S]` followed by heatmaps `[K, 4r, S', S']`.
    fn val_inputs(&self, item: &RgbPoseItem) -> Result<Vec<f32>> {
        self.check(item)?;
        let id = &item.pose.clip_id;
        let bad = |e: ModelError| TrainError::Sample {
            clip_id: id.clone(),
            message: e.to_string(),
        };
        let cfg = RgbPoseViewConfig {
            rgb_len: self.rgb_len,
            pose_len: self.pose_len,
            num_clips: 1,
            size: self.val_size,
            sigma: self.sigma,
            scaling: self.scaling,
        };
        let v = &item.video;
        let mut reader = VideoReader::open(&v.path).map_err(|e| TrainError::Sample {
            clip_id: id.clone(),
            message: e.to_string(),
        })?;
        let mut frame = |i: usize| -> std::result::Result<Rgb, ModelError> {
            let f = reader
                .frame(v.start + i)
                .map_err(|e| ModelError::Input(format!("frame {}: {e}", v.start + i)))?;
            Ok(Rgb {
                width: f.width as usize,
                height: f.height as usize,
                data: f.data,
            })
        };
        let inputs = rgb_pose_inputs(
            &item.pose.keypoints,
            item.pose.img_hw,
            &mut frame,
            &cfg,
            self.mean,
            self.std,
            self.heatmap_params(),
        )
        .map_err(bad)?;
        let rgb = inputs.rgb.first().ok_or_else(|| TrainError::Sample {
            clip_id: id.clone(),
            message: "no RGB clip was sampled".into(),
        })?;
        let mut out = rgb.flatten_all()?.to_vec1::<f32>()?;
        let Some(pose) = inputs.pose else {
            return Ok(out);
        };
        out.extend(
            pose.clip(0, &self.skeleton)
                .map_err(bad)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        Ok(out)
    }

    fn shapes(&self, side: usize) -> Vec<[usize; 4]> {
        let mut v = vec![[3, self.rgb_len, side, side]];
        if self.pose_len > 0 {
            let hm = self.canvas(side);
            v.push([self.channels(), self.pose_len, hm, hm]);
        }
        v
    }
}

impl ClipPipeline<RgbPoseItem> for RgbPosePipeline {
    fn train_volume(&self, item: &RgbPoseItem, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        self.train_inputs(item, rng)
    }

    fn val_volume(&self, item: &RgbPoseItem) -> Result<Vec<f32>> {
        self.val_inputs(item)
    }

    fn train_shape(&self) -> Vec<[usize; 4]> {
        self.shapes(self.train_size)
    }

    fn val_shape(&self) -> Vec<[usize; 4]> {
        self.shapes(self.val_size)
    }
}
