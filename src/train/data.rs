//! The PoseC3D data pipelines and the loader that runs them ahead of the model.
//!
//! Train (pyskl `configs/posec3d/slowonly_r50_iMiGUE_36/joint.py` `train_pipeline`):
//! UniformSampleFrames(clip_len) in train mode → PoseDecode → PoseCompact(hw_ratio 1,
//! allow_imgpad) → Resize(-1, short) → RandomResizedCrop(area, aspect) → Resize(size²) →
//! Flip(0.5, left_kp, right_kp) → GeneratePoseTarget(σ, joint or limb) → NCTHW.
//! Val (`val_pipeline`): one clip in test mode, Resize(val²), no flip: `PoseViews` with the
//! `Views::Fast` protocol, so validation sees exactly what `mgscope predict --views fast` does.
//!
//! Every random draw of sample `p` of epoch `e` comes from a generator seeded with
//! (seed, e, p), so the data are the same whatever the thread count or timing, and a resumed
//! run regenerates the batches it skipped identically.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::{DataConfig, Heatmap};
use super::{mix, stream, Result, TrainError};
use crate::dataset::{Keypoints, Split};
use crate::modality::heatmap::{HeatmapParams, Skeleton};
use crate::modality::pose_pipeline::{PoseCompact, PoseSample, Resize, UniformSampleFrames};
use crate::nn::predict::{PoseViewConfig, PoseViews};
use crate::store::Dataset;

/// One clip's keypoints, held in memory for the whole run.
#[derive(Debug, Clone)]
pub struct PoseItem {
    pub clip_id: String,
    pub label: Option<u32>,
    pub keypoints: Keypoints,
    /// (h, w) of the frames the keypoints are measured in.
    pub img_hw: (usize, usize),
}

/// The samples of one split that have keypoints, in the dataset's order; `skipped` names the
/// others and why, `notes` what was assumed.
pub struct SplitItems {
    pub items: Vec<PoseItem>,
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
}

pub fn load_split(ds: &Dataset, split: &str, labelled_only: bool) -> Result<SplitItems> {
    let split = Split::parse(split).ok_or_else(|| {
        TrainError::Invalid(format!(
            "split {split:?}: expected train, val, test or none"
        ))
    })?;
    let mut sizes: HashMap<String, Option<(usize, usize)>> = ds
        .videos()?
        .into_iter()
        .map(|v| {
            let hw = v.height.zip(v.width).map(|(h, w)| (h as usize, w as usize));
            (v.vid, hw)
        })
        .collect();
    let mut out = SplitItems {
        items: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    for s in ds.samples()?.into_iter().filter(|s| s.split == split) {
        if labelled_only && s.label.is_none() {
            out.skipped.push(format!("{}: unlabelled", s.clip_id));
            continue;
        }
        let Some(kp) = ds.sample_keypoints(&s)?.filter(|k| k.frames > 0) else {
            out.skipped.push(format!("{}: no keypoints", s.clip_id));
            continue;
        };
        let img_hw = match sizes.get(&s.video).copied().flatten() {
            Some(hw) => hw,
            None => {
                // Without media (a headless import) the frame size is unknown. PoseCompact
                // with allow_imgpad only falls back to the frame for near-empty clips, so
                // the keypoints' extent over the whole video stands in for it.
                let hw = ds
                    .video_keypoints(&s.video)?
                    .map(|k| keypoint_extent(&k))
                    .unwrap_or((1, 1));
                out.notes.push(format!(
                    "video {}: no frame size; using the keypoints' extent {}×{}",
                    s.video, hw.1, hw.0
                ));
                sizes.insert(s.video.clone(), Some(hw));
                hw
            }
        };
        out.items.push(PoseItem {
            clip_id: s.clip_id,
            label: s.label,
            keypoints: kp,
            img_hw,
        });
    }
    Ok(out)
}

/// (h, w) that holds every keypoint: one past the largest coordinate.
fn keypoint_extent(k: &Keypoints) -> (usize, usize) {
    let (mut mx, mut my) = (0f32, 0f32);
    for p in k.data.chunks_exact(3) {
        if p[0].is_finite() && p[1].is_finite() {
            mx = mx.max(p[0]);
            my = my.max(p[1]);
        }
    }
    (my.ceil() as usize + 1, mx.ceil() as usize + 1)
}

/// The train and val transforms of one config.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub cfg: DataConfig,
    pub skeleton: Skeleton,
    /// Heatmap channels.
    pub channels: usize,
}

/// Heatmap channels of `skeleton`: one per keypoint or one per limb.
pub(crate) fn heatmap_channels(kind: Heatmap, skeleton: &Skeleton) -> usize {
    match kind {
        Heatmap::Joint => skeleton.num_keypoints,
        Heatmap::Limb => skeleton.limbs.len(),
    }
}

/// GeneratePoseTarget's settings for training draws, on one thread (the loader's threads
/// already fill the cores).
pub(crate) fn train_heatmap_params(kind: Heatmap, sigma: f64) -> HeatmapParams {
    HeatmapParams {
        threads: 1,
        ..match kind {
            Heatmap::Joint => HeatmapParams::joint(sigma),
            Heatmap::Limb => HeatmapParams::limb(sigma),
        }
    }
}

/// The item's keypoints have the skeleton's joint count.
pub(crate) fn check_joints(item: &PoseItem, skeleton: &Skeleton) -> Result<()> {
    let kp = &item.keypoints;
    if kp.joints != skeleton.num_keypoints {
        return Err(TrainError::Sample {
            clip_id: item.clip_id.clone(),
            message: format!(
                "{} joints ({}), the {} skeleton has {}",
                kp.joints, kp.layout, skeleton.name, skeleton.num_keypoints
            ),
        });
    }
    Ok(())
}

impl Pipeline {
    pub fn new(cfg: DataConfig, skeleton: Skeleton) -> Self {
        let channels = heatmap_channels(cfg.heatmap, &skeleton);
        Pipeline {
            cfg,
            skeleton,
            channels,
        }
    }

    /// `[C, T, train_size, train_size]` for one training draw.
    pub fn train_volume(&self, item: &PoseItem, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let bad = |e: crate::modality::error::ModalityError| TrainError::Sample {
            clip_id: item.clip_id.clone(),
            message: e.to_string(),
        };
        check_joints(item, &self.skeleton)?;
        let kp = &item.keypoints;
        let (xy, sc) = kp.to_pyskl();
        let full = PoseSample::new(
            &xy,
            Some(&sc),
            [kp.persons, kp.frames, kp.joints],
            item.img_hw,
        )
        .map_err(bad)?;
        let inds = UniformSampleFrames::new(c.clip_len, 1)
            .train_indices(kp.frames, 0, rng)
            .map_err(bad)?;
        let mut s = full.decode(&inds).map_err(bad)?;
        s.pose_compact(&PoseCompact::default()).map_err(bad)?;
        s.resize(&Resize::short_side(c.resize_short as i64))
            .map_err(bad)?;
        s.random_resized_crop(c.crop_area, c.crop_aspect, rng)
            .map_err(bad)?;
        s.resize(&Resize::exact(c.train_size, c.train_size))
            .map_err(bad)?;
        s.random_flip(c.flip, &self.skeleton.left_kp, &self.skeleton.right_kp, rng)
            .map_err(bad)?;
        let params = train_heatmap_params(c.heatmap, c.sigma);
        let hm = s.heatmaps(&self.skeleton, &params).map_err(bad)?;
        Ok(frames_to_channels(&hm.data, hm.shape))
    }

    /// `[C, T, val_size, val_size]`: the validation view.
    pub fn val_volume(&self, item: &PoseItem) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let bad = |e: crate::nn::models::ModelError| TrainError::Sample {
            clip_id: item.clip_id.clone(),
            message: e.to_string(),
        };
        let views = PoseViews::new(
            &item.keypoints,
            item.img_hw,
            &self.skeleton,
            PoseViewConfig {
                clip_len: c.clip_len,
                num_clips: 1,
                double: false,
                size: c.val_size,
                sigma: c.sigma,
                kind: c.heatmap.kind(),
            },
        )
        .map_err(bad)?;
        let t = views.clip(0).map_err(bad)?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// `[T, C, H, W]` → `[C, T, H, W]` (FormatShape 'NCTHW_Heatmap' for one clip).
pub(crate) fn frames_to_channels(data: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let [t, c, h, w] = shape;
    let plane = h * w;
    let mut out = vec![0f32; data.len()];
    for ti in 0..t {
        for ci in 0..c {
            let src = (ti * c + ci) * plane;
            let dst = (ci * t + ti) * plane;
            out[dst..dst + plane].copy_from_slice(&data[src..src + plane]);
        }
    }
    out
}

/// A batch as the loader hands it over: per model input `[B, C, T, H, W]` values on the host.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Which items (indices into the split's item list).
    pub items: Vec<usize>,
    pub inputs: Vec<BatchInput>,
    /// Class per item (unlabelled items are absent from train batches; 0 in val ones).
    pub labels: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct BatchInput {
    pub data: Vec<f32>,
    pub shape: [usize; 5],
}

/// Assembles a batch from per-item volumes of equal size, each its inputs' values (`shapes`,
/// in order) one after the other.
pub fn stack(
    items: Vec<usize>,
    volumes: Vec<Vec<f32>>,
    labels: Vec<u32>,
    shapes: &[[usize; 4]],
) -> Result<Batch> {
    let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    let per: usize = sizes.iter().sum();
    if let Some(v) = volumes.iter().find(|v| v.len() != per) {
        return Err(TrainError::Loader(format!(
            "a volume has {} values, expected {per} ({shapes:?})",
            v.len()
        )));
    }
    let b = volumes.len();
    let mut inputs: Vec<BatchInput> = shapes
        .iter()
        .zip(&sizes)
        .map(|(s, &n)| BatchInput {
            data: Vec::with_capacity(b * n),
            shape: [b, s[0], s[1], s[2], s[3]],
        })
        .collect();
    for v in &volumes {
        let mut at = 0;
        for (input, &n) in inputs.iter_mut().zip(&sizes) {
            input.data.extend_from_slice(&v[at..at + n]);
            at += n;
        }
    }
    Ok(Batch {
        items,
        inputs,
        labels,
    })
}

/// The training batches of one epoch: `RepeatDataset(repeat)` over the split, shuffled with the
/// epoch's generator, cut into `batch_size` runs (the last one may be short). Each entry is
/// (position in the epoch, item index).
pub fn epoch_order(
    n_items: usize,
    repeat: usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<(usize, usize)>> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..n_items * repeat).map(|i| i % n_items.max(1)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed, stream::SHUFFLE), epoch));
    order.shuffle(&mut rng);
    let indexed: Vec<(usize, usize)> = order.into_iter().enumerate().collect();
    indexed
        .chunks(batch_size.max(1))
        .map(<[_]>::to_vec)
        .collect()
}

/// The generator of one training draw.
pub fn sample_rng(seed: u64, epoch: u64, position: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed, stream::SAMPLE), epoch), position as u64))
}

type MakeBatch = dyn Fn(usize) -> Result<Batch> + Send + Sync;

/// Builds batches `first..total` on `workers` threads, each with up to `prefetch` finished
/// batches queued, and yields them in order. Batch `b` is always built by thread
/// `(b − first) mod workers`, so order never depends on timing. Dropping the loader stops the
/// threads (their next send fails) and joins them.
pub struct Loader {
    rxs: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    first: usize,
    total: usize,
}

impl Loader {
    pub fn spawn(
        first: usize,
        total: usize,
        workers: usize,
        prefetch: usize,
        make: Arc<MakeBatch>,
    ) -> Loader {
        let workers = workers.clamp(1, total.saturating_sub(first).max(1));
        let mut rxs = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(prefetch.max(1));
            let make = make.clone();
            handles.push(std::thread::spawn(move || {
                let mut b = first + w;
                while b < total {
                    if tx.send(make(b)).is_err() {
                        return;
                    }
                    b += workers;
                }
            }));
            rxs.push(rx);
        }
        Loader {
            rxs,
            handles,
            next: first,
            first,
            total,
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total || self.rxs.is_empty() {
            return None;
        }
        let w = (self.next - self.first) % self.rxs.len();
        self.next += 1;
        Some(self.rxs[w].recv().unwrap_or_else(|_| {
            Err(TrainError::Loader(
                "a loader thread stopped before its batch (it panicked)".into(),
            ))
        }))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.rxs.clear();
        for h in self.handles.drain(..) {
            // a panicked worker has already been reported through its closed channel
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_keeps_order_with_many_threads() {
        let make: Arc<MakeBatch> = Arc::new(|b| {
            // uneven work so threads finish out of order
            std::thread::sleep(std::time::Duration::from_millis(((b * 7) % 5) as u64));
            stack(
                vec![b],
                vec![vec![b as f32]],
                vec![b as u32],
                &[[1, 1, 1, 1]],
            )
        });
        let got: Vec<usize> = Loader::spawn(3, 20, 4, 2, make)
            .map(|b| b.expect("batch").items[0])
            .collect();
        assert_eq!(got, (3..20).collect::<Vec<_>>());
    }

    #[test]
    fn loader_stops_when_dropped_early() {
        let make: Arc<MakeBatch> =
            Arc::new(|b| stack(vec![b], vec![vec![0.0]], vec![0], &[[1, 1, 1, 1]]));
        let mut l = Loader::spawn(0, 1000, 3, 1, make);
        assert!(l.next().is_some());
        drop(l);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation_of_the_repeats() {
        let a = epoch_order(5, 2, 3, 9, 1);
        assert_eq!(a, epoch_order(5, 2, 3, 9, 1));
        assert_ne!(a, epoch_order(5, 2, 3, 9, 2));
        assert_eq!(a.len(), 4);
        let mut items: Vec<usize> = a.iter().flatten().map(|p| p.1).collect();
        items.sort_unstable();
        assert_eq!(items, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        let pos: Vec<usize> = a.iter().flatten().map(|p| p.0).collect();
        assert_eq!(pos, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn stack_splits_each_volume_into_its_inputs() {
        // two items, inputs of 2 and 3 values
        let b = stack(
            vec![4, 7],
            vec![vec![1., 2., 3., 4., 5.], vec![6., 7., 8., 9., 10.]],
            vec![0, 1],
            &[[2, 1, 1, 1], [1, 3, 1, 1]],
        )
        .expect("stack");
        assert_eq!(b.inputs[0].data, vec![1., 2., 6., 7.]);
        assert_eq!(b.inputs[0].shape, [2, 2, 1, 1, 1]);
        assert_eq!(b.inputs[1].data, vec![3., 4., 5., 8., 9., 10.]);
        assert_eq!(b.inputs[1].shape, [2, 1, 3, 1, 1]);
        let e = stack(
            vec![0],
            vec![vec![1.0; 4]],
            vec![0],
            &[[2, 1, 1, 1], [1, 3, 1, 1]],
        );
        assert!(e.is_err_and(|e| e.to_string().contains("expected 5")));
    }

    #[test]
    fn channels_first_transpose() {
        // T 2, C 3, 1×1
        let v: Vec<f32> = (0..6).map(|x| x as f32).collect();
        assert_eq!(
            frames_to_channels(&v, [2, 3, 1, 1]),
            vec![0., 3., 1., 4., 2., 5.]
        );
    }
}
