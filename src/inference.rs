//! One dataset sample through a model with the reference test protocol: the sample's
//! keypoints become heatmap views, its frames (from the source video, or the 8-bit modality
//! videos `extract` writes) become RGB views. Shared by `mgscope predict` and the app's live
//! predictions.

use std::collections::HashMap;
#[cfg(feature = "video")]
use std::path::PathBuf;

use crate::dataset::Sample;
use crate::modality::heatmap::{imigue36, HeatmapKind, Skeleton};
use crate::nn::models::{Inputs, Model, ModelError};
use crate::nn::predict::{predict_pose_clip, Hooks, PoseViewConfig, PoseViews, Views};
use crate::store::Dataset;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The sample cannot be predicted (no keypoints, no frame size); a run goes on.
    #[error("{0}")]
    Skip(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error("{0}")]
    Media(String),
}

/// Per-dataset state kept across samples: frame sizes and open decoders.
pub struct ClipPredictor {
    skeleton: Skeleton,
    /// video id → (height, width)
    sizes: HashMap<String, (usize, usize)>,
    /// video id → its record (media path), read once rather than per clip.
    #[cfg(feature = "video")]
    videos: HashMap<String, crate::dataset::Video>,
    #[cfg(feature = "video")]
    readers: HashMap<PathBuf, crate::media::decode::VideoReader>,
}

impl ClipPredictor {
    pub fn new(ds: &Dataset) -> Result<Self, PredictError> {
        let all = ds.videos()?;
        let sizes = all
            .iter()
            .filter_map(|v| Some((v.vid.clone(), (v.height? as usize, v.width? as usize))))
            .collect();
        Ok(ClipPredictor {
            skeleton: imigue36(),
            sizes,
            #[cfg(feature = "video")]
            videos: all.into_iter().map(|v| (v.vid.clone(), v)).collect(),
            #[cfg(feature = "video")]
            readers: HashMap::new(),
        })
    }

    /// Mean probabilities per head for sample `s`. `modality` picks the frames a video
    /// model sees: `rgb` or an extracted `taylor` / `flow` / `depth` video.
    #[allow(clippy::too_many_arguments)]
    pub fn predict(
        &mut self,
        ds: &Dataset,
        model: &Model,
        s: &Sample,
        views: Views,
        modality: &str,
        batch: usize,
        hooks: Hooks<'_>,
    ) -> Result<Vec<Vec<f32>>, PredictError> {
        match model.arch.inputs {
            Inputs::Heatmaps => {
                let kind = if model.arch.name.contains("limb") {
                    HeatmapKind::Limb
                } else {
                    HeatmapKind::Joint
                };
                let kp = ds
                    .sample_keypoints(s)?
                    .ok_or_else(|| PredictError::Skip("no keypoints".into()))?;
                let hw = self.size(&s.video)?;
                let pv = PoseViews::new(
                    &kp,
                    hw,
                    &self.skeleton,
                    PoseViewConfig::posec3d(kind, views),
                )?;
                Ok(predict_pose_clip(model, &pv, batch, hooks)?)
            }
            Inputs::Video | Inputs::RgbPose => {
                self.video_clip(ds, model, s, views, modality, batch, hooks)
            }
        }
    }

    fn size(&self, video: &str) -> Result<(usize, usize), PredictError> {
        self.sizes
            .get(video)
            .copied()
            .ok_or_else(|| PredictError::Skip(format!("video {video} has no frame size")))
    }

    #[cfg(not(feature = "video"))]
    #[allow(clippy::too_many_arguments)]
    fn video_clip(
        &mut self,
        _ds: &Dataset,
        model: &Model,
        _s: &Sample,
        _views: Views,
        _modality: &str,
        _batch: usize,
        _hooks: Hooks<'_>,
    ) -> Result<Vec<Vec<f32>>, PredictError> {
        Err(PredictError::Media(format!(
            "{} reads video frames: this mgscope was built without the `video` feature",
            model.arch.name
        )))
    }

    #[cfg(feature = "video")]
    #[allow(clippy::too_many_arguments)]
    fn video_clip(
        &mut self,
        ds: &Dataset,
        model: &Model,
        s: &Sample,
        views: Views,
        modality: &str,
        batch: usize,
        hooks: Hooks<'_>,
    ) -> Result<Vec<Vec<f32>>, PredictError> {
        use crate::extract::{output_path, Modality, OutFormat};
        use crate::media::decode::VideoReader;
        use crate::nn::predict::{
            predict_rgb_clip, predict_swin_clip, RgbPoseViewConfig, SwinViewConfig,
        };
        use crate::nn::video_views::Rgb;

        // Which file holds the frames, and where the clip starts in it.
        let (path, first, n) = if modality == "rgb" {
            let v = self.videos.get(&s.video).ok_or_else(|| {
                PredictError::Skip(format!("video {} is not in the dataset", s.video))
            })?;
            let p = ds.media_path(v).ok_or_else(|| {
                PredictError::Skip(format!("video {} has no media file", s.video))
            })?;
            (p, s.start as usize, s.frames() as usize)
        } else {
            let m = match modality {
                "taylor" => Modality::Taylor,
                "flow" => Modality::Flow,
                "depth" => Modality::Depth,
                other => {
                    return Err(PredictError::Media(format!(
                        "modality {other:?}: expected rgb, taylor, flow or depth"
                    )))
                }
            };
            let p = output_path(ds.root(), m, &s.clip_id, OutFormat::Mp4);
            if !p.exists() {
                return Err(PredictError::Media(format!(
                    "{} is missing: run `mgscope extract {} --modality {modality} --format mp4` first",
                    p.display(),
                    ds.root().display(),
                )));
            }
            (p, 0, 0)
        };
        let hw = self.size(&s.video);
        let skeleton = self.skeleton.clone();
        if !self.readers.contains_key(&path) {
            let r = VideoReader::open(&path).map_err(|e| PredictError::Media(e.to_string()))?;
            self.readers.insert(path.clone(), r);
        }
        let reader = self
            .readers
            .get_mut(&path)
            .ok_or_else(|| PredictError::Media("video reader vanished".into()))?;
        let n = if n == 0 { reader.len() } else { n };
        let mut frame = |i: usize| -> Result<Rgb, ModelError> {
            let f = reader.frame(first + i).map_err(|e| {
                ModelError::Input(format!("{}: frame {}: {e}", path.display(), first + i))
            })?;
            Ok(Rgb {
                width: f.width as usize,
                height: f.height as usize,
                data: f.data,
            })
        };
        if model.arch.inputs == Inputs::Video && model.arch.name.starts_with("swin") {
            return Ok(predict_swin_clip(
                model,
                n,
                &mut frame,
                &SwinViewConfig::swin(views),
                batch,
                hooks,
            )?);
        }
        let kp = ds
            .sample_keypoints(s)?
            .ok_or_else(|| PredictError::Skip("no keypoints (MMCompact needs them)".into()))?;
        let hw = hw?;
        let cfg = if model.arch.inputs == Inputs::RgbPose {
            RgbPoseViewConfig::rgbpose(views)
        } else {
            RgbPoseViewConfig::rgb_only(views)
        };
        Ok(predict_rgb_clip(
            model, &kp, hw, &mut frame, &skeleton, &cfg, batch, hooks,
        )?)
    }
}
