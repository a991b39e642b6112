//! Extraction of derived modalities for whole datasets into the dataset's cache folder,
//! `DATASET/cache/{modality}/{clip_id}.{npy|mp4}`: resumable (finished clips are checked and
//! skipped), shardable without coordination (`--shard I/N` takes the clips whose id hashes to
//! I mod N, so shards stay disjoint and complete however the list is ordered), parallel,
//! cancellable, and a failed clip is reported while the run goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::dataset::{Sample, Skeleton, Split};
use crate::media::decode::VideoReader;
use crate::modality::heatmap::{self, HeatmapParams};
use crate::modality::pose_pipeline::{PoseCompact, PoseSample, Resize};
use crate::modality::{depth, flow, flow_vis, npy, taylor};
use crate::store::Dataset;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Taylor,
    Flow,
    Depth,
    Joint,
    Limb,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Modality::Taylor => "taylor",
            Modality::Flow => "flow",
            Modality::Depth => "depth",
            Modality::Joint => "joint",
            Modality::Limb => "limb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// Exact values: Taylor uint8 [T',H,W,3], flow f32 [T-1,H,W,2], depth f32 [T,H,W],
    /// heatmaps f32 [T,C,64,64].
    Npy,
    /// 8-bit videos as MM-Gesture stores them (Taylor RGB, flow colour wheel, depth gray);
    /// heatmaps are always npy.
    Mp4,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub modalities: Vec<Modality>,
    pub split: Option<Split>,
    /// (index, count)
    pub shard: (u32, u32),
    pub format: OutFormat,
    pub jobs: usize,
    pub depth_weights: Option<PathBuf>,
    pub depth_encoder: depth::Encoder,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub clips: usize,
    pub written: usize,
    pub skipped_existing: usize,
    pub failed: Vec<(String, String)>,
}

pub use crate::util::shard_of;

pub fn output_path(root: &Path, m: Modality, clip: &str, fmt: OutFormat) -> PathBuf {
    let ext = match (m, fmt) {
        (Modality::Joint | Modality::Limb, _) | (_, OutFormat::Npy) => "npy",
        (_, OutFormat::Mp4) => "mp4",
    };
    root.join("cache")
        .join(m.name())
        .join(format!("{clip}.{ext}"))
}

/// An existing output counts as finished only if it reads back whole.
fn is_complete(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy::read_npy(path).is_ok(),
        Some("mp4") => crate::media::probe(path)
            .map(|i| i.frames > 0)
            .unwrap_or(false),
        _ => false,
    }
}

struct Job<'a> {
    sample: &'a Sample,
    media: Option<PathBuf>,
    keypoints: Option<crate::dataset::Keypoints>,
    size: (u32, u32),
}

/// Runs the extraction. `progress(done, total)` is called after each clip.
pub fn run(
    ds: &Dataset,
    opts: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
) -> Result<Summary> {
    let (idx, n) = opts.shard;
    if n == 0 || idx >= n {
        return Err(Error::Invalid(format!(
            "shard {idx}/{n}: expected I/N with 0 <= I < N"
        )));
    }
    let videos = ds.videos()?;
    let samples: Vec<Sample> = ds
        .samples()?
        .into_iter()
        .filter(|s| opts.split.is_none_or(|sp| s.split == sp))
        .filter(|s| shard_of(&s.clip_id, n) == idx)
        .collect();
    let depth_model = if opts.modalities.contains(&Modality::Depth) {
        let p = depth::DepthModel::locate(opts.depth_weights.as_deref())?;
        Some(depth::DepthModel::load(
            &p,
            opts.depth_encoder,
            &candle_core::Device::Cpu,
        )?)
    } else {
        None
    };
    let mut summary = Summary {
        clips: samples.len(),
        ..Default::default()
    };
    let written = AtomicUsize::new(0);
    let skipped = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let root = ds.root().to_path_buf();
    // Keypoints are read per clip up front: the store is not shared across threads.
    let mut jobs = Vec::with_capacity(samples.len());
    for s in &samples {
        let v = videos.iter().find(|v| v.vid == s.video);
        let needs_kp = opts
            .modalities
            .iter()
            .any(|m| matches!(m, Modality::Joint | Modality::Limb));
        jobs.push(Job {
            sample: s,
            media: v.and_then(|v| ds.media_path(v)),
            keypoints: if needs_kp {
                ds.sample_keypoints(s)?
            } else {
                None
            },
            size: v
                .map(|v| (v.width.unwrap_or(1280), v.height.unwrap_or(720)))
                .unwrap_or((1280, 720)),
        });
    }
    let workers = opts.jobs.max(1).min(jobs.len().max(1));
    let has_depth = depth_model.is_some();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { return };
                for &m in opts.modalities.iter().filter(|&&m| m != Modality::Depth) {
                    let out = output_path(&root, m, &job.sample.clip_id, opts.format);
                    if is_complete(&out) {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match extract_one(job, m, opts.format, &out, None) {
                        Ok(()) => {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failed.lock().unwrap_or_else(|p| p.into_inner()).push((
                            format!("{} {}", job.sample.clip_id, m.name()),
                            e.to_string(),
                        )),
                    }
                }
                if !has_depth {
                    let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress(d, jobs.len());
                }
            });
        }
    });
    // candle's modules are neither Send nor Sync: the depth network runs on this thread, after
    // the other modalities (it is the slow one, and uses every core for its matmuls anyway).
    if let Some(model) = depth_model.as_ref() {
        for job in &jobs {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let out = output_path(&root, Modality::Depth, &job.sample.clip_id, opts.format);
            if is_complete(&out) {
                skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                match extract_one(job, Modality::Depth, opts.format, &out, Some(model)) {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((format!("{} depth", job.sample.clip_id), e.to_string())),
                }
            }
            let d = done.fetch_add(1, Ordering::SeqCst) + 1;
            progress(d, jobs.len());
        }
    }
    summary.written = written.into_inner();
    summary.skipped_existing = skipped.into_inner();
    summary.failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.failed.sort();
    Ok(summary)
}

fn clip_frames(job: &Job) -> Result<(Vec<crate::media::decode::RgbFrame>, usize, usize)> {
    let path = job.media.as_ref().ok_or_else(|| {
        Error::NotFound(format!(
            "media of video {} (needed for this modality)",
            job.sample.video
        ))
    })?;
    let mut r = VideoReader::open(path)?;
    let mut frames = Vec::with_capacity(job.sample.frames() as usize);
    for i in job.sample.start..=job.sample.end {
        frames.push(r.frame(i as usize)?);
    }
    let (w, h) = frames
        .first()
        .map(|f| (f.width as usize, f.height as usize))
        .unwrap_or((0, 0));
    Ok((frames, w, h))
}

/// Writes through a temporary file and renames it, so a killed run never leaves a partial
/// output that a resumed run would take as finished.
fn atomic_out(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = out
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{}: no parent folder", out.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".partial-{name}"));
    write(&tmp)?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}

fn write_video(path: &Path, frames: &[Vec<u8>], w: usize, h: usize) -> Result<()> {
    // yuv420p needs even sizes: drop a last odd row/column rather than rescale.
    let (ew, eh) = (w & !1, h & !1);
    let mut wr = crate::media::H264Writer::create(path, ew as u32, eh as u32, 25, 18)?;
    let mut buf = vec![0u8; ew * eh * 3];
    for f in frames {
        for y in 0..eh {
            buf[y * ew * 3..(y + 1) * ew * 3].copy_from_slice(&f[y * w * 3..y * w * 3 + ew * 3]);
        }
        wr.write_rgb(&buf)?;
    }
    wr.finish().map(|_| ())
}

fn extract_one(
    job: &Job,
    m: Modality,
    fmt: OutFormat,
    out: &Path,
    depth_model: Option<&depth::DepthModel>,
) -> Result<()> {
    match m {
        Modality::Taylor => {
            let (frames, w, h) = clip_frames(job)?;
            let rgb: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
            let tv = taylor::taylor_video(
                &rgb,
                frames.len(),
                h,
                w,
                &taylor::TaylorParams::mm_gesture(),
            )?;
            atomic_out(out, |p| match fmt {
                OutFormat::Npy => Ok(npy::write_npy(p, &[tv.frames, h, w, 3], &tv.data)?),
                OutFormat::Mp4 => {
                    let fr: Vec<Vec<u8>> = tv.data.chunks(h * w * 3).map(<[u8]>::to_vec).collect();
                    write_video(p, &fr, w, h)
                }
            })
        }
        Modality::Flow => {
            let (frames, w, h) = clip_frames(job)?;
            if frames.len() < 2 {
                return Err(Error::Invalid("flow needs at least 2 frames".into()));
            }
            let mut dis = flow::DisFlow::new(flow::DisParams::medium())?;
            let gray: Vec<flow::GrayImage> = frames
                .iter()
                .map(|f| flow::rgb_to_gray(&f.data, w, h))
                .collect::<std::result::Result<_, _>>()?;
            let mut fields = Vec::with_capacity(gray.len() - 1);
            for p in gray.windows(2) {
                fields.push(dis.calc(&p[0], &p[1])?);
            }
            atomic_out(out, |p| match fmt {
                OutFormat::Npy => {
                    let data: Vec<f32> =
                        fields.iter().flat_map(|f| f.data.iter().copied()).collect();
                    Ok(npy::write_npy(p, &[fields.len(), h, w, 2], &data)?)
                }
                OutFormat::Mp4 => {
                    let fr = fields
                        .iter()
                        .map(|f| flow_vis::flow_to_rgb(f, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    write_video(p, &fr, w, h)
                }
            })
        }
        Modality::Depth => {
            let model = depth_model.ok_or_else(|| Error::Invalid(depth::NO_MODEL.into()))?;
            let (frames, w, h) = clip_frames(job)?;
            let d = frames
                .iter()
                .map(|f| model.infer(&f.data, w, h))
                .collect::<Result<Vec<_>>>()?;
            atomic_out(out, |p| match fmt {
                OutFormat::Npy => {
                    let data: Vec<f32> = d.iter().flatten().copied().collect();
                    Ok(npy::write_npy(p, &[d.len(), h, w], &data)?)
                }
                OutFormat::Mp4 => {
                    let q = depth::clip_to_u8(&d);
                    let fr: Vec<Vec<u8>> = q
                        .iter()
                        .map(|g| g.iter().flat_map(|&v| [v, v, v]).collect())
                        .collect();
                    write_video(p, &fr, w, h)
                }
            })
        }
        Modality::Joint | Modality::Limb => {
            let k = job.keypoints.as_ref().ok_or_else(|| {
                Error::NotFound(format!("keypoints of clip {}", job.sample.clip_id))
            })?;
            let hm = heatmaps_64(k, job.size, m == Modality::Limb)?;
            atomic_out(out, |p| Ok(npy::write_npy(p, &hm.shape, &hm.data)?))
        }
    }
}

/// All frames of a clip as PoseC3D's validation pipeline sees them: PoseCompact (hw_ratio 1,
/// allow_imgpad), Resize to 64×64, GeneratePoseTarget (σ 0.6, scores as peaks).
pub fn heatmaps_64(
    k: &crate::dataset::Keypoints,
    (w, h): (u32, u32),
    limb: bool,
) -> Result<heatmap::Heatmaps> {
    let (m, t, v) = (k.persons, k.frames, k.joints);
    let (xy, sc) = k.to_pyskl();
    let mut sample = PoseSample::new(&xy, Some(&sc), [m, t, v], (h as usize, w as usize))?;
    sample.pose_compact(&PoseCompact::default())?;
    sample.resize(&Resize::exact(64, 64))?;
    let sk = if v == 36 {
        heatmap::imigue36()
    } else {
        heatmap::coco17()
    };
    let params = if limb {
        HeatmapParams::limb(0.6)
    } else {
        HeatmapParams::joint(0.6)
    };
    Ok(sample.heatmaps(&sk, &params)?)
}

/// The 36-point skeleton from the assets, for callers that need names with the layout.
pub fn skeleton() -> Skeleton {
    Skeleton::imigue36()
}
