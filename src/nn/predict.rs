//! The reference test protocols: the views a clip is cut into, one batched forward pass per
//! group of views, softmax per view and the mean over views (mmaction2 `average_clips='prob'`,
//! `mmaction/models/recognizers/base.py`; pyskl `pyskl/models/recognizers/*.py`).
//!
//! PoseC3D (pyskl `configs/posec3d/*/joint.py` test pipeline): UniformSampleFrames(48,
//! num_clips=10, test seed 255) → PoseDecode → PoseCompact(hw_ratio 1, allow_imgpad) →
//! Resize((64, 64)) → GeneratePoseTarget(σ 0.6, use_score, double) → 10 clips × 2 flips.
//! `Views::Fast` is the validation protocol: one clip, no flip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor, D};

use super::models::{Inputs, Model, ModelError};
use super::video_views::{
    center_crop_box, crop_padded, normalize_clip, resize_bilinear, sample_frames_test,
    short_side_size, three_crop_boxes, Rgb, IMAGENET_MEAN, IMAGENET_STD, IMIGUE_MEAN, IMIGUE_STD,
};
use crate::dataset::Keypoints;
use crate::modality::heatmap::{HeatmapKind, HeatmapParams, Skeleton};
use crate::modality::pose_pipeline::{PoseCompact, PoseSample, Resize, UniformSampleFrames};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Views {
    /// The reference test protocol (PoseC3D 10 clips × 2 flips, RGBPose 10 clips, Swin
    /// 4 clips × 3 crops).
    Reference,
    /// One view per clip (the validation protocol): ~10–20× faster.
    Fast,
}

impl Views {
    pub fn parse(s: &str) -> Option<Views> {
        match s {
            "reference" => Some(Views::Reference),
            "fast" => Some(Views::Fast),
            _ => None,
        }
    }
}

/// pyskl's PoseC3D heatmap settings for the iMiGUE configs.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseViewConfig {
    pub clip_len: usize,
    pub num_clips: usize,
    pub double: bool,
    pub size: usize,
    pub sigma: f64,
    pub kind: HeatmapKind,
}

impl PoseViewConfig {
    pub fn posec3d(kind: HeatmapKind, views: Views) -> Self {
        let reference = views == Views::Reference;
        PoseViewConfig {
            clip_len: 48,
            num_clips: if reference { 10 } else { 1 },
            double: reference,
            size: 64,
            sigma: 0.6,
            kind,
        }
    }

    pub fn view_count(&self) -> usize {
        self.num_clips * if self.double { 2 } else { 1 }
    }
}

/// A sample's keypoints after sampling, compaction and resizing: heatmap views are drawn
/// from it one clip at a time so that 20 views of 36×48×64² never sit in memory together.
pub struct PoseViews {
    sample: PoseSample,
    cfg: PoseViewConfig,
    skeleton: Skeleton,
    /// Channels per view.
    pub channels: usize,
}

impl PoseViews {
    /// `img_hw` is the frame size the keypoints are measured in.
    pub fn new(
        kp: &Keypoints,
        img_hw: (usize, usize),
        skeleton: &Skeleton,
        cfg: PoseViewConfig,
    ) -> Result<PoseViews, ModelError> {
        let bad = |e: crate::modality::error::ModalityError| ModelError::Input(e.to_string());
        if kp.frames == 0 {
            return Err(ModelError::Input("the clip has no keypoint frames".into()));
        }
        let (xy, sc) = kp.to_pyskl();
        let full = PoseSample::new(&xy, Some(&sc), [kp.persons, kp.frames, kp.joints], img_hw)
            .map_err(bad)?;
        let inds = UniformSampleFrames::new(cfg.clip_len, cfg.num_clips)
            .test_indices(kp.frames, 0)
            .map_err(bad)?;
        let mut sample = full.decode(&inds).map_err(bad)?;
        sample.pose_compact(&PoseCompact::default()).map_err(bad)?;
        sample
            .resize(&Resize::exact(cfg.size, cfg.size))
            .map_err(bad)?;
        let channels = match cfg.kind {
            HeatmapKind::Joint => kp.joints,
            HeatmapKind::Limb => skeleton.limbs.len(),
        };
        Ok(PoseViews {
            sample,
            cfg,
            skeleton: skeleton.clone(),
            channels,
        })
    }

    pub fn view_count(&self) -> usize {
        self.cfg.view_count()
    }

    /// The views of clip `c`: `[1 or 2, C, T, H, W]` (original, then flipped).
    pub fn clip(&self, c: usize) -> Result<Tensor, ModelError> {
        let l = self.cfg.clip_len;
        let params = HeatmapParams {
            double: self.cfg.double,
            ..match self.cfg.kind {
                HeatmapKind::Joint => HeatmapParams::joint(self.cfg.sigma),
                HeatmapKind::Limb => HeatmapParams::limb(self.cfg.sigma),
            }
        };
        let hm = self
            .sample
            .frames_heatmaps(c * l, l, &self.skeleton, &params)
            .map_err(|e| ModelError::Input(e.to_string()))?;
        let [frames, ch, hh, ww] = hm.shape;
        let copies = frames / l;
        // [copies·T, C, H, W] → [copies, C, T, H, W] (FormatShape 'NCTHW_Heatmap')
        let t = Tensor::from_vec(hm.data, (copies, l, ch, hh, ww), &Device::Cpu)?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?;
        Ok(t)
    }
}

/// What a caller running predictions in the background can ask for: stop between forward
/// passes, and hear how many views are done.
#[derive(Default, Clone, Copy)]
pub struct Hooks<'a> {
    pub cancel: Option<&'a AtomicBool>,
    /// `(views done, views in the clip)`
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

impl Hooks<'_> {
    fn check(&self) -> Result<(), ModelError> {
        match self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(ModelError::Cancelled),
            _ => Ok(()),
        }
    }
}

/// Softmax per view, summed; divide by the view count at the end.
#[derive(Clone)]
pub struct ProbMean<'a> {
    sums: Vec<Vec<f64>>,
    views: usize,
    total: usize,
    hooks: Hooks<'a>,
}

impl<'a> ProbMean<'a> {
    pub fn new(heads: usize, classes: usize) -> Self {
        Self::with_hooks(heads, classes, 0, Hooks::default())
    }

    /// `total` views are expected; `hooks` are consulted before and after every batch.
    pub fn with_hooks(heads: usize, classes: usize, total: usize, hooks: Hooks<'a>) -> Self {
        ProbMean {
            sums: vec![vec![0.0; classes]; heads],
            views: 0,
            total,
            hooks,
        }
    }

    /// `logits[h]` is `[B, classes]` for head h.
    pub fn add(&mut self, logits: &[Tensor]) -> Result<(), ModelError> {
        let mut batch = 0;
        for (h, l) in logits.iter().enumerate() {
            let p = candle_nn::ops::softmax(&l.to_dtype(candle_core::DType::F32)?, D::Minus1)?;
            let rows = p.to_vec2::<f32>()?;
            batch = rows.len();
            for r in rows {
                for (s, x) in self.sums[h].iter_mut().zip(r) {
                    *s += f64::from(x);
                }
            }
        }
        self.views += batch;
        if let Some(p) = self.hooks.progress {
            p(self.views, self.total);
        }
        self.hooks.check()
    }

    pub fn views(&self) -> usize {
        self.views
    }

    /// Mean probabilities per head.
    pub fn finish(&self) -> Vec<Vec<f32>> {
        let n = self.views.max(1) as f64;
        self.sums
            .iter()
            .map(|s| s.iter().map(|x| (x / n) as f32).collect())
            .collect()
    }
}

/// Runs a heatmap model (PoseC3D) over all views of one clip, `batch` views per forward pass.
pub fn predict_pose_clip(
    model: &Model,
    views: &PoseViews,
    batch: usize,
    hooks: Hooks<'_>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    hooks.check()?;
    if model.arch.inputs != Inputs::Heatmaps {
        return Err(ModelError::Input(format!(
            "{} does not take heatmap volumes",
            model.arch.name
        )));
    }
    let mut acc = ProbMean::with_hooks(
        model.arch.heads.len(),
        model.num_classes,
        views.view_count(),
        hooks,
    );
    let mut pending: Vec<Tensor> = Vec::new();
    let mut flush = |pending: &mut Vec<Tensor>| -> Result<(), ModelError> {
        if pending.is_empty() {
            return Ok(());
        }
        let x = Tensor::cat(pending, 0)?;
        pending.clear();
        acc.add(&model.forward(&[x])?)
    };
    for c in 0..views.cfg.num_clips {
        let t = views.clip(c)?;
        for i in 0..t.dim(0)? {
            pending.push(t.narrow(0, i, 1)?);
            if pending.len() >= batch.max(1) {
                flush(&mut pending)?;
            }
        }
    }
    flush(&mut pending)?;
    Ok(acc.finish())
}

/// Gives frame `i` of the clip (0 = the clip's first frame) as 8-bit RGB.
pub type FrameSource<'a> = dyn FnMut(usize) -> Result<Rgb, ModelError> + 'a;

/// Video Swin views (MM-Gesture's Swin configs).
#[derive(Debug, Clone, PartialEq)]
pub struct SwinViewConfig {
    pub clip_len: usize,
    pub interval: usize,
    pub num_clips: usize,
    /// Short side after `Resize((-1, short))`.
    pub short: usize,
    pub crop: usize,
    /// ThreeCrop (test) or CenterCrop (validation).
    pub three_crop: bool,
}

impl SwinViewConfig {
    pub fn swin(views: Views) -> Self {
        match views {
            Views::Reference => SwinViewConfig {
                clip_len: 32,
                interval: 2,
                num_clips: 4,
                short: 224,
                crop: 224,
                three_crop: true,
            },
            Views::Fast => SwinViewConfig {
                clip_len: 32,
                interval: 2,
                num_clips: 1,
                short: 256,
                crop: 224,
                three_crop: false,
            },
        }
    }
}

/// Decodes each sampled index once, through `prep` (resize / compact), in sampling order.
fn sampled_frames(
    inds: &[usize],
    frame: &mut FrameSource<'_>,
    prep: &dyn Fn(&Rgb) -> Rgb,
) -> Result<Vec<Rgb>, ModelError> {
    let mut cache: HashMap<usize, Rgb> = HashMap::new();
    let mut out = Vec::with_capacity(inds.len());
    for &i in inds {
        if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(i) {
            e.insert(prep(&frame(i)?));
        }
        out.push(cache[&i].clone());
    }
    Ok(out)
}

/// Runs a video model (Swin or RGB SlowOnly on one input) over views given as `[3, T, H, W]`
/// tensors, `batch` per forward pass.
fn run_views(
    model: &Model,
    views: Vec<Tensor>,
    batch: usize,
    hooks: Hooks<'_>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let mut acc = ProbMean::with_hooks(
        model.arch.heads.len(),
        model.num_classes,
        views.len(),
        hooks,
    );
    for chunk in views.chunks(batch.max(1)) {
        let x = Tensor::stack(chunk, 0)?;
        acc.add(&model.forward(&[x])?)?;
    }
    Ok(acc.finish())
}

/// A Swin clip: `n` frames read through `frame`.
pub fn predict_swin_clip(
    model: &Model,
    n: usize,
    frame: &mut FrameSource<'_>,
    cfg: &SwinViewConfig,
    batch: usize,
    hooks: Hooks<'_>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    hooks.check()?;
    if model.arch.inputs != Inputs::Video {
        return Err(ModelError::Input(format!(
            "{} does not take a video clip",
            model.arch.name
        )));
    }
    let inds = sample_frames_test(n, cfg.clip_len, cfg.interval, cfg.num_clips);
    if inds.is_empty() {
        return Err(ModelError::Input("the clip has no frames".into()));
    }
    let short = cfg.short;
    let resize = move |f: &Rgb| {
        let (w, h) = short_side_size(f.width, f.height, short);
        resize_bilinear(f, w, h)
    };
    let frames = sampled_frames(&inds, frame, &resize)?;
    let (w, h) = (frames[0].width, frames[0].height);
    let boxes: Vec<[i64; 4]> = if cfg.three_crop {
        three_crop_boxes(w, h, cfg.crop).to_vec()
    } else {
        vec![center_crop_box(w, h, cfg.crop)]
    };
    let mut views = Vec::new();
    for clip in frames.chunks(cfg.clip_len) {
        for b in &boxes {
            let cropped: Vec<Rgb> = clip.iter().map(|f| crop_padded(f, *b)).collect();
            views.push(normalize_clip(&cropped, IMAGENET_MEAN, IMAGENET_STD)?);
        }
    }
    run_views(model, views, batch, hooks)
}

/// RGB SlowOnly (`rgb_only.py`) and RGBPoseConv3D views.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbPoseViewConfig {
    pub rgb_len: usize,
    pub pose_len: usize,
    pub num_clips: usize,
    /// Square size after MMCompact + Resize: 224 for `rgb_only` test, 256 for RGBPose.
    pub size: usize,
    /// Heatmaps: σ 0.7 on a canvas `size × 0.25`.
    pub sigma: f64,
    pub scaling: f64,
}

impl RgbPoseViewConfig {
    pub fn rgb_only(views: Views) -> Self {
        RgbPoseViewConfig {
            rgb_len: 8,
            pose_len: 0,
            num_clips: if views == Views::Reference { 10 } else { 1 },
            size: 224,
            sigma: 0.7,
            scaling: 0.25,
        }
    }

    pub fn rgbpose(views: Views) -> Self {
        RgbPoseViewConfig {
            pose_len: 32,
            size: 256,
            ..Self::rgb_only(views)
        }
    }
}

/// The inputs of RGB SlowOnly / RGBPoseConv3D for one clip, before any model runs: the RGB
/// views (`[3, T, S, S]`, normalised) and, for RGBPose, the pose clips to draw heatmaps from.
pub struct RgbPoseInputs {
    pub rgb: Vec<Tensor>,
    pub pose: Option<PoseClips>,
}

/// The compacted, resized pose frames of every sampled clip; heatmaps are drawn one clip at a
/// time so ten clips never hold ten heatmap volumes at once.
pub struct PoseClips {
    sample: PoseSample,
    clip_len: usize,
    params: HeatmapParams,
}

impl PoseClips {
    /// Heatmaps of clip `c`: `[K, L, H·scaling, W·scaling]`.
    pub fn clip(&self, c: usize, skeleton: &Skeleton) -> Result<Tensor, ModelError> {
        let (pose, l) = (&self.sample, self.clip_len);
        if (c + 1) * l > pose.num_frames {
            return Err(ModelError::Input(format!(
                "pose clip {c} is beyond the {} sampled frames",
                pose.num_frames
            )));
        }
        let hm = pose
            .frames_heatmaps(c * l, l, skeleton, &self.params)
            .map_err(|e| ModelError::Input(e.to_string()))?;
        let [t, ch, hh, ww] = hm.shape;
        Ok(Tensor::from_vec(hm.data, (t, ch, hh, ww), &Device::Cpu)?
            .permute((1, 0, 2, 3))?
            .contiguous()?)
    }
}

/// RGB SlowOnly / RGBPoseConv3D test-mode inputs of one clip: MMUniformSampleFrames per
/// modality, one MMCompact box from the keypoints (the sampled pose frames for RGBPose, all
/// frames for `rgb_only`, as pyskl's MMDecode leaves them), both resized to a square; RGB
/// normalised with `mean` / `std`; the pose clips drawn with `heatmap`.
pub fn rgb_pose_inputs(
    kp: &Keypoints,
    img_hw: (usize, usize),
    frame: &mut FrameSource<'_>,
    cfg: &RgbPoseViewConfig,
    mean: [f32; 3],
    std: [f32; 3],
    heatmap: HeatmapParams,
) -> Result<RgbPoseInputs, ModelError> {
    let bad = |e: crate::modality::error::ModalityError| ModelError::Input(e.to_string());
    let n = kp.frames;
    if n == 0 {
        return Err(ModelError::Input("the clip has no frames".into()));
    }
    let rgb_pose = cfg.pose_len > 0;
    let rgb_inds: Vec<usize> = UniformSampleFrames::new(cfg.rgb_len, cfg.num_clips)
        .test_indices(n, 0)
        .map_err(bad)?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let (xy, sc) = kp.to_pyskl();
    let full =
        PoseSample::new(&xy, Some(&sc), [kp.persons, kp.frames, kp.joints], img_hw).map_err(bad)?;
    let mut pose = if rgb_pose {
        let inds = UniformSampleFrames::new(cfg.pose_len, cfg.num_clips)
            .test_indices(n, 0)
            .map_err(bad)?;
        full.decode(&inds).map_err(bad)?
    } else {
        full
    };
    let bx = pose
        .pose_compact(&PoseCompact::default())
        .map_err(bad)?
        .unwrap_or([0, 0, img_hw.1 as i64, img_hw.0 as i64]);
    pose.resize(&Resize::exact(cfg.size, cfg.size))
        .map_err(bad)?;
    let size = cfg.size;
    let prep = move |f: &Rgb| resize_bilinear(&crop_padded(f, bx), size, size);
    let frames = sampled_frames(&rgb_inds, frame, &prep)?;
    let rgb = frames
        .chunks(cfg.rgb_len)
        .map(|c| normalize_clip(c, mean, std))
        .collect::<candle_core::Result<_>>()?;
    let pose = rgb_pose.then_some(PoseClips {
        sample: pose,
        clip_len: cfg.pose_len,
        params: heatmap,
    });
    Ok(RgbPoseInputs { rgb, pose })
}

/// RGB SlowOnly or RGBPoseConv3D on one clip ([`rgb_pose_inputs`] with MM-Gesture's iMiGUE
/// mean/std).
#[allow(clippy::too_many_arguments)]
pub fn predict_rgb_clip(
    model: &Model,
    kp: &Keypoints,
    img_hw: (usize, usize),
    frame: &mut FrameSource<'_>,
    skeleton: &Skeleton,
    cfg: &RgbPoseViewConfig,
    batch: usize,
    hooks: Hooks<'_>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    hooks.check()?;
    let cfg = RgbPoseViewConfig {
        pose_len: if model.arch.inputs == Inputs::RgbPose {
            cfg.pose_len
        } else {
            0
        },
        ..cfg.clone()
    };
    let heatmap = HeatmapParams {
        scaling: cfg.scaling,
        ..HeatmapParams::joint(cfg.sigma)
    };
    let inputs = rgb_pose_inputs(kp, img_hw, frame, &cfg, IMIGUE_MEAN, IMIGUE_STD, heatmap)?;
    let Some(pose) = inputs.pose else {
        return run_views(model, inputs.rgb, batch, hooks);
    };
    let mut acc = ProbMean::with_hooks(
        model.arch.heads.len(),
        model.num_classes,
        inputs.rgb.len(),
        hooks,
    );
    let mut pending: Vec<(Tensor, Tensor)> = Vec::new();
    for (c, rgb) in inputs.rgb.into_iter().enumerate() {
        pending.push((rgb, pose.clip(c, skeleton)?));
        if pending.len() >= batch.max(1) {
            flush_pairs(model, &mut pending, &mut acc)?;
        }
    }
    flush_pairs(model, &mut pending, &mut acc)?;
    Ok(acc.finish())
}

fn flush_pairs(
    model: &Model,
    pending: &mut Vec<(Tensor, Tensor)>,
    acc: &mut ProbMean,
) -> Result<(), ModelError> {
    if pending.is_empty() {
        return Ok(());
    }
    let rgb: Vec<Tensor> = pending.iter().map(|p| p.0.clone()).collect();
    let pose: Vec<Tensor> = pending.iter().map(|p| p.1.clone()).collect();
    pending.clear();
    let out = model.forward(&[Tensor::stack(&rgb, 0)?, Tensor::stack(&pose, 0)?])?;
    acc.add(&out)
}
