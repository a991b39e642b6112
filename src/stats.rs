//! `mgscope stats`: per-channel mean and standard deviation of a split's frames on the 0–255
//! scale that mmaction2's `ActionDataPreprocessor(mean=…, std=…)` takes. MM-Gesture normalises
//! its RGB (and Taylor / flow / depth video) streams with the dataset's own values rather than
//! ImageNet's (mm-gesture.md §3–4), so they are measured here.
//!
//! Sums are exact integers (u64 per channel), so the figures do not depend on the number of
//! threads or the order clips finish in.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::dataset::{Sample, Split};
use crate::extract::{output_path, Modality, OutFormat};
use crate::media::decode::VideoReader;
use crate::store::Dataset;
use crate::{Error, Result};

/// Which frames are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The clip's frames of the source video.
    Rgb,
    /// A derived video written by `mgscope extract --format mp4` (Taylor, flow or depth).
    Extracted(Modality),
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Rgb => "rgb",
            Source::Extracted(m) => m.name(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// None = every split.
    pub split: Option<Split>,
    /// Every `stride`-th frame of each clip (1 = all).
    pub stride: usize,
    pub jobs: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelStats {
    pub source: String,
    pub split: String,
    /// R, G, B.
    pub mean: [f64; 3],
    /// Population standard deviation, R, G, B.
    pub std: [f64; 3],
    pub clips: usize,
    pub frames: u64,
    pub pixels: u64,
    /// Clips that could not be read, with why; they are left out of the figures.
    pub failed: Vec<(String, String)>,
}

#[derive(Default)]
struct Sums {
    sum: [u64; 3],
    sq: [u64; 3],
    frames: u64,
    pixels: u64,
}

impl Sums {
    fn add_rgb(&mut self, data: &[u8]) {
        for px in data.chunks_exact(3) {
            for (c, &v) in px.iter().enumerate() {
                let v = u64::from(v);
                self.sum[c] += v;
                self.sq[c] += v * v;
            }
        }
        self.frames += 1;
        self.pixels += (data.len() / 3) as u64;
    }

    fn merge(&mut self, o: &Sums) {
        for c in 0..3 {
            self.sum[c] += o.sum[c];
            self.sq[c] += o.sq[c];
        }
        self.frames += o.frames;
        self.pixels += o.pixels;
    }
}

/// Where one sample's frames are read from, and which of them.
struct Job {
    clip_id: String,
    path: Option<PathBuf>,
    frames: Vec<usize>,
    what: String,
}

fn plan(ds: &Dataset, s: &Sample, opts: &Options, videos: &[crate::dataset::Video]) -> Job {
    let stride = opts.stride.max(1);
    match opts.source {
        Source::Rgb => Job {
            clip_id: s.clip_id.clone(),
            path: videos
                .iter()
                .find(|v| v.vid == s.video)
                .and_then(|v| ds.media_path(v)),
            frames: (s.start as usize..=s.end as usize)
                .step_by(stride)
                .collect(),
            what: format!("media of video {}", s.video),
        },
        Source::Extracted(m) => {
            let p = output_path(ds.root(), m, &s.clip_id, OutFormat::Mp4);
            Job {
                clip_id: s.clip_id.clone(),
                what: format!(
                    "{} (run `mgscope extract --modality {} --format mp4` first)",
                    p.display(),
                    m.name()
                ),
                path: p.exists().then_some(p),
                // The whole extracted clip, thinned by the stride once its length is known.
                frames: vec![stride],
            }
        }
    }
}

fn measure(job: &Job, source: Source, cancel: &AtomicBool) -> Result<Sums> {
    let path = job
        .path
        .as_ref()
        .ok_or_else(|| Error::NotFound(job.what.clone()))?;
    let mut r = VideoReader::open(path)?;
    let frames: Vec<usize> = match source {
        Source::Rgb => job.frames.clone(),
        Source::Extracted(_) => (0..r.len()).step_by(job.frames[0]).collect(),
    };
    let mut sums = Sums::default();
    for i in frames {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let f = r.frame(i)?;
        sums.add_rgb(&f.data);
    }
    Ok(sums)
}

/// Measures the selected frames of every sample in the split, `jobs` clips at a time.
/// `progress(done, total)` after each clip; a set `cancel` stops at the next frame.
pub fn channel_stats(
    ds: &Dataset,
    opts: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
) -> Result<ChannelStats> {
    if opts.stride == 0 {
        return Err(Error::Invalid("stats: --stride must be ≥ 1".into()));
    }
    let videos = ds.videos()?;
    let jobs: Vec<Job> = ds
        .samples()?
        .into_iter()
        .filter(|s| opts.split.is_none_or(|sp| s.split == sp))
        .map(|s| plan(ds, &s, opts, &videos))
        .collect();
    if jobs.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no samples in split {}",
            ds.root().display(),
            opts.split.map_or("(all)".to_string(), |s| s.to_string())
        )));
    }
    let total = Mutex::new(Sums::default());
    let failed = Mutex::new(Vec::new());
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.clamp(1, jobs.len()) {
            scope.spawn(|| loop {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let Some(job) = jobs.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                match measure(job, opts.source, cancel) {
                    Ok(s) => total.lock().unwrap_or_else(|p| p.into_inner()).merge(&s),
                    Err(e) => failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((job.clip_id.clone(), e.to_string())),
                }
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, jobs.len());
            });
        }
    });
    let sums = total.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    failed.sort();
    if sums.pixels == 0 {
        let why = failed
            .first()
            .map_or("no frames".to_string(), |(c, e)| format!("{c}: {e}"));
        return Err(Error::Invalid(format!(
            "{}: no frame could be measured ({} of {} clips failed; first: {why})",
            ds.root().display(),
            failed.len(),
            jobs.len()
        )));
    }
    let n = sums.pixels as f64;
    let mut out = ChannelStats {
        source: opts.source.name().to_string(),
        split: opts.split.map_or("all".to_string(), |s| s.to_string()),
        clips: jobs.len() - failed.len(),
        frames: sums.frames,
        pixels: sums.pixels,
        failed,
        ..Default::default()
    };
    for c in 0..3 {
        let mean = sums.sum[c] as f64 / n;
        out.mean[c] = mean;
        out.std[c] = (sums.sq[c] as f64 / n - mean * mean).max(0.0).sqrt();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_give_population_moments() {
        let mut a = Sums::default();
        a.add_rgb(&[10, 20, 30, 50, 60, 70]);
        let mut b = Sums::default();
        b.add_rgb(&[10, 20, 30, 50, 60, 70]);
        a.merge(&b);
        assert_eq!(a.sum, [120, 160, 200]);
        assert_eq!(a.sq, [2 * (100 + 2500), 2 * (400 + 3600), 2 * (900 + 4900)]);
        assert_eq!((a.frames, a.pixels), (2, 4));
    }
}
