//! The Video Swin data pipelines (MM-Gesture `configs/recognition/swin/*.py`, mmaction2 1.x;
//! mm-gesture.md §4.1), for RGB and for the Taylor / flow / depth videos `mgscope extract`
//! writes.
//!
//! Train: `SampleFrames(clip_len, frame_interval, 1)` → `Resize((-1, short))` →
//! `RandomResizedCrop(area, aspect)` → `Resize((size, size), keep_ratio=False)` → `Flip(0.5)`
//! → normalisation (the data preprocessor's mean/std) → `[3, T, H, W]`.
//! Val: `SampleFrames(…, test_mode=True)` → `Resize((-1, short))` → `CenterCrop(size)`.
//!
//! Random draws come in the reference's order (frame offset, crop, flip) from the sample's own
//! generator, as in the pose pipeline.

use std::path::PathBuf;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Result, TrainError};
use crate::dataset::Split;
use crate::extract::{output_path, Modality, OutFormat};
use crate::media::decode::VideoReader;
use crate::modality::pose_pipeline::random_resized_crop_box;
use crate::nn::video_views::{
    center_crop_box, crop_padded, resize_bilinear, sample_frames_test, short_side_size, Rgb,
};
use crate::store::Dataset;

/// One clip of a video stream.
#[derive(Debug, Clone)]
pub struct VideoItem {
    pub clip_id: String,
    pub label: Option<u32>,
    /// The file frames are read from: the source video (RGB) or an extracted clip video.
    pub path: PathBuf,
    /// First frame and frame count of the clip inside `path` (an extracted video is the whole
    /// file: `len = None`, its length is read when it is opened).
    pub start: usize,
    pub len: Option<usize>,
}

/// The clips of one split that have frames to read, in the dataset's order; `skipped` names
/// the others and why.
pub struct VideoSplit {
    pub items: Vec<VideoItem>,
    pub skipped: Vec<String>,
}

/// `source`: `rgb` (the clip's frames of its source video) or an extracted modality video.
pub fn load_video_split(
    ds: &Dataset,
    split: &str,
    source: &str,
    labelled_only: bool,
) -> Result<VideoSplit> {
    let split = Split::parse(split).ok_or_else(|| {
        TrainError::Invalid(format!(
            "split {split:?}: expected train, val, test or none"
        ))
    })?;
    let modality = match source {
        "rgb" => None,
        "taylor" => Some(Modality::Taylor),
        "flow" => Some(Modality::Flow),
        "depth" => Some(Modality::Depth),
        other => {
            return Err(TrainError::Invalid(format!(
                "data.source {other:?}: expected rgb, taylor, flow or depth"
            )))
        }
    };
    let videos = ds.videos()?;
    let mut out = VideoSplit {
        items: Vec::new(),
        skipped: Vec::new(),
    };
    for s in ds.samples()?.into_iter().filter(|s| s.split == split) {
        if labelled_only && s.label.is_none() {
            out.skipped.push(format!("{}: unlabelled", s.clip_id));
            continue;
        }
        let item = match modality {
            None => {
                let media = videos
                    .iter()
                    .find(|v| v.vid == s.video)
                    .and_then(|v| ds.media_path(v));
                match media {
                    Some(path) => VideoItem {
                        clip_id: s.clip_id.clone(),
                        label: s.label,
                        path,
                        start: s.start as usize,
                        len: Some(s.frames() as usize),
                    },
                    None => {
                        out.skipped
                            .push(format!("{}: no media for video {}", s.clip_id, s.video));
                        continue;
                    }
                }
            }
            Some(m) => {
                let path = output_path(ds.root(), m, &s.clip_id, OutFormat::Mp4);
                if !path.is_file() {
                    out.skipped.push(format!(
                        "{}: no {} video (mgscope extract --modality {} --format mp4)",
                        s.clip_id,
                        m.name(),
                        m.name()
                    ));
                    continue;
                }
                VideoItem {
                    clip_id: s.clip_id.clone(),
                    label: s.label,
                    path,
                    start: 0,
                    len: None,
                }
            }
        };
        out.items.push(item);
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoPipelineConfig {
    pub clip_len: usize,
    pub frame_interval: usize,
    pub resize_short: usize,
    pub size: usize,
    pub crop_area: (f64, f64),
    pub crop_aspect: (f64, f64),
    pub flip: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// mmaction2 `SampleFrames._get_train_clips` for one clip, then `out_of_bound_opt='loop'`:
/// offset uniform in `[0, n − clip_len·interval]` when the clip is long enough, else 0
/// (`avg_interval == 0` also gives offset 0).
pub fn sample_frames_train(
    n: usize,
    clip_len: usize,
    interval: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let span = clip_len * interval;
    let offset = if n > span {
        // avg_interval = n − span + 1 > 1: randint(avg_interval)
        rng.random_range(0..n - span + 1)
    } else {
        0
    };
    (0..clip_len).map(|k| (offset + k * interval) % n).collect()
}

/// The frames at `indices` (relative to the clip) of an item.
pub(crate) fn read_frames(item: &VideoItem, indices: &[usize]) -> Result<Vec<Rgb>> {
    let mut r = VideoReader::open(&item.path).map_err(|e| TrainError::Sample {
        clip_id: item.clip_id.clone(),
        message: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(indices.len());
    for &i in indices {
        let f = r.frame(item.start + i).map_err(|e| TrainError::Sample {
            clip_id: item.clip_id.clone(),
            message: format!("frame {}: {e}", item.start + i),
        })?;
        out.push(Rgb {
            width: f.width as usize,
            height: f.height as usize,
            data: f.data,
        });
    }
    Ok(out)
}

fn clip_len_of(item: &VideoItem) -> Result<usize> {
    match item.len {
        Some(n) => Ok(n),
        None => VideoReader::open(&item.path)
            .map(|r| r.len())
            .map_err(|e| TrainError::Sample {
                clip_id: item.clip_id.clone(),
                message: e.to_string(),
            }),
    }
}

/// `[3, T, H, W]` f32, `(x − mean) / std` per channel.
pub(crate) fn to_cthw(frames: &[Rgb], mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let t = frames.len();
    let (h, w) = frames.first().map_or((0, 0), |f| (f.height, f.width));
    let mut data = vec![0f32; 3 * t * h * w];
    for (ti, f) in frames.iter().enumerate() {
        for (p, px) in f.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[(c * t + ti) * h * w + p] = (f32::from(px[c]) - mean[c]) / std[c];
            }
        }
    }
    data
}

pub(crate) fn flip_horizontal(img: &mut Rgb) {
    let row = img.width * 3;
    for line in img.data.chunks_exact_mut(row) {
        for x in 0..img.width / 2 {
            let (a, b) = (x * 3, (img.width - 1 - x) * 3);
            for c in 0..3 {
                line.swap(a + c, b + c);
            }
        }
    }
}

impl VideoPipelineConfig {
    pub fn train_shape(&self) -> [usize; 4] {
        [3, self.clip_len, self.size, self.size]
    }

    /// One training view of `item`.
    pub fn train_volume(&self, item: &VideoItem, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        let n = clip_len_of(item)?;
        let idx = sample_frames_train(n, self.clip_len, self.frame_interval, rng);
        let frames = read_frames(item, &idx)?;
        let (w, h) = frames.first().map_or((0, 0), |f| (f.width, f.height));
        if w == 0 || h == 0 {
            return Err(TrainError::Sample {
                clip_id: item.clip_id.clone(),
                message: "no frames".into(),
            });
        }
        let (rw, rh) = short_side_size(w, h, self.resize_short);
        let bx =
            random_resized_crop_box(rh as i64, rw as i64, self.crop_area, self.crop_aspect, rng)
                .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let flip = rng.random::<f64>() < self.flip;
        let out: Vec<Rgb> = frames
            .iter()
            .map(|f| {
                let mut v = resize_bilinear(
                    &crop_padded(&resize_bilinear(f, rw, rh), bx),
                    self.size,
                    self.size,
                );
                if flip {
                    flip_horizontal(&mut v);
                }
                v
            })
            .collect();
        Ok(to_cthw(&out, self.mean, self.std))
    }

    /// The validation view: one test-mode clip, short side resized, centre crop.
    pub fn val_volume(&self, item: &VideoItem) -> Result<Vec<f32>> {
        let n = clip_len_of(item)?;
        let idx = sample_frames_test(n, self.clip_len, self.frame_interval, 1);
        let frames = read_frames(item, &idx)?;
        let out: Vec<Rgb> = frames
            .iter()
            .map(|f| {
                let (rw, rh) = short_side_size(f.width, f.height, self.resize_short);
                crop_padded(
                    &resize_bilinear(f, rw, rh),
                    center_crop_box(rw, rh, self.size),
                )
            })
            .collect();
        Ok(to_cthw(&out, self.mean, self.std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn train_sampling_follows_sample_frames() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Long clip: 32 frames two apart from an offset in [0, 100 − 64].
        for _ in 0..50 {
            let idx = sample_frames_train(100, 32, 2, &mut rng);
            assert_eq!(idx.len(), 32);
            assert!(idx[0] <= 36, "{idx:?}");
            assert!(idx.windows(2).all(|w| w[1] == w[0] + 2));
        }
        // Short clip: offset 0, looping.
        let idx = sample_frames_train(40, 32, 2, &mut rng);
        assert_eq!(&idx[..3], &[0, 2, 4]);
        assert_eq!(idx[20], 0);
        assert_eq!(idx[31], 62 % 40);
        assert!(sample_frames_train(0, 32, 2, &mut rng).is_empty());
    }

    #[test]
    fn flip_mirrors_rows_and_normalisation_is_channel_major() {
        let mut img = Rgb {
            width: 3,
            height: 1,
            data: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
        };
        flip_horizontal(&mut img);
        assert_eq!(img.data, vec![7, 8, 9, 4, 5, 6, 1, 2, 3]);
        let v = to_cthw(&[img], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]);
        // channel R over the 3 pixels, then G, then B
        assert_eq!(v, vec![3.0, 1.5, 0.0, 3.0, 1.5, 0.0, 3.0, 1.5, 0.0]);
    }
}
