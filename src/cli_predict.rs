//! `mgscope predict`: a checkpoint over a split with the reference test protocol, written as
//! the pyskl / mmaction2 dump (a pickle list of per-clip probability vectors; RGBPose a list
//! of `{'rgb', 'pose'}` dicts) plus the clip ids of its rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use mgscope::dataset::Split;
use mgscope::modality::heatmap::{imigue36, HeatmapKind};
use mgscope::nn::models::{self, Inputs, Model};
use mgscope::nn::predict::{predict_pose_clip, PoseViewConfig, PoseViews, Views};
use mgscope::pickle::{write_pickle, NdArray, Value};
use mgscope::store::{Dataset, StoredStream};

#[derive(clap::Args)]
pub struct PredictArgs {
    pub dataset: PathBuf,
    #[arg(long)]
    pub arch: String,
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, value_parser = crate::parse_split)]
    pub split: Split,
    /// The dump: `.pkl`. The clip ids of its rows go to `<out stem>.ids.txt`.
    #[arg(long)]
    pub out: PathBuf,
    /// `reference` (PoseC3D 10 clips × 2 flips) or `fast` (1 clip, the validation protocol).
    #[arg(long, default_value = "reference")]
    pub views: String,
    /// `I/N`: the clips whose id hashes to I mod N (as `extract`).
    #[arg(long, value_parser = crate::parse_shard, default_value = "0/1")]
    pub shard: (u32, u32),
    /// Views per forward pass.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Also store the scores in the dataset as this ensemble stream.
    #[arg(long)]
    pub register: Option<String>,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub strict: bool,
    /// What a video model sees: `rgb` (the source video) or `taylor`, `flow`, `depth` (the
    /// 8-bit videos `mgscope extract --format mp4` writes to DATASET/cache).
    #[arg(long, default_value = "rgb")]
    pub modality: String,
}

pub fn ids_path(out: &Path) -> PathBuf {
    out.with_extension("ids.txt")
}

pub fn run(a: PredictArgs) -> Result<()> {
    let views = Views::parse(&a.views)
        .with_context(|| format!("--views {:?}: expected reference or fast", a.views))?;
    let arch = models::arch(&a.arch).with_context(|| {
        format!(
            "unknown --arch {:?}; known: {}",
            a.arch,
            models::arch_names()
        )
    })?;
    let mut ds = Dataset::open(&a.dataset)?;
    let device = models::parse_device(&a.device)?;
    let dtype = models::parse_dtype(&a.dtype)?;
    let (model, report) = Model::load(&a.arch, &a.checkpoint, a.strict, dtype, &device)?;
    if !report.is_clean() {
        eprintln!("warning: {}: {report}", a.checkpoint.display());
    }
    let classes = ds.taxonomy().len();
    if model.num_classes != classes {
        eprintln!(
            "warning: the checkpoint has {} classes, the dataset's taxonomy {classes}",
            model.num_classes
        );
    }
    let videos: HashMap<String, (usize, usize)> = ds
        .videos()?
        .into_iter()
        .filter_map(|v| Some((v.vid, (v.height? as usize, v.width? as usize))))
        .collect();
    let (shard, of) = a.shard;
    let samples: Vec<_> = ds
        .samples()?
        .into_iter()
        .filter(|s| s.split == a.split && mgscope::util::shard_of(&s.clip_id, of) == shard)
        .collect();
    if samples.is_empty() {
        bail!(
            "{}: no clips in split {} (shard {shard}/{of})",
            a.dataset.display(),
            a.split.as_str()
        );
    }
    let skeleton = imigue36();
    let mut readers = Readers::default();
    let t0 = Instant::now();
    let mut ids = Vec::new();
    let mut rows: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut skipped = Vec::new();
    let (mut correct, mut labelled) = (0usize, 0usize);
    for (i, s) in samples.iter().enumerate() {
        let probs = match arch.inputs {
            Inputs::Heatmaps => {
                let kind = if arch.name.contains("limb") {
                    HeatmapKind::Limb
                } else {
                    HeatmapKind::Joint
                };
                let Some(kp) = ds.sample_keypoints(s)? else {
                    skipped.push(format!("{}: no keypoints", s.clip_id));
                    continue;
                };
                let Some(&hw) = videos.get(&s.video) else {
                    skipped.push(format!(
                        "{}: video {} has no frame size",
                        s.clip_id, s.video
                    ));
                    continue;
                };
                let pv = PoseViews::new(&kp, hw, &skeleton, PoseViewConfig::posec3d(kind, views))
                    .with_context(|| format!("clip {}", s.clip_id))?;
                predict_pose_clip(&model, &pv, a.batch)
                    .with_context(|| format!("clip {}", s.clip_id))?
            }
            Inputs::Video | Inputs::RgbPose => {
                video_clip(&ds, &mut readers, &model, s, &videos, &a, views, &skeleton)
                    .with_context(|| format!("clip {}", s.clip_id))?
            }
        };
        if let Some(l) = s.label {
            labelled += 1;
            // RGBPose reports rgb + pose at 1:1 (pyskl `auto_mix2`).
            let fused: Vec<f32> = (0..model.num_classes)
                .map(|c| probs.iter().map(|p| p[c]).sum())
                .collect();
            if argmax(&fused) == l as usize {
                correct += 1;
            }
        }
        ids.push(s.clip_id.clone());
        rows.push(probs);
        let done = i + 1;
        let el = t0.elapsed().as_secs_f64();
        let eta = el / done as f64 * (samples.len() - done) as f64;
        eprint!(
            "\r[{done}/{}] {} {:.1} s elapsed, ETA {:.0} s   ",
            samples.len(),
            s.clip_id,
            el,
            eta
        );
    }
    eprintln!();
    let heads = arch.heads;
    let list: Vec<Value> = rows
        .iter()
        .map(|per_head| {
            let arr = |p: &Vec<f32>| NdArray::from_f32(vec![p.len()], p.clone()).map(Value::Array);
            if per_head.len() == 1 {
                arr(&per_head[0])
            } else {
                Ok(Value::Dict(
                    heads
                        .iter()
                        .zip(per_head)
                        .map(|(h, p)| Ok((Value::Str((*h).to_string()), arr(p)?)))
                        .collect::<Result<Vec<_>, mgscope::pickle::PickleError>>()?,
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    std::fs::write(&a.out, write_pickle(&Value::List(list)))
        .with_context(|| format!("writing {}", a.out.display()))?;
    let idp = ids_path(&a.out);
    std::fs::write(&idp, ids.join("\n") + "\n")
        .with_context(|| format!("writing {}", idp.display()))?;
    if let Some(name) = &a.register {
        for (h, head) in heads.iter().enumerate() {
            let n = if heads.len() == 1 {
                name.clone()
            } else {
                format!("{name}.{head}")
            };
            ds.put_stream(&StoredStream {
                name: n,
                classes: model.num_classes,
                clip_ids: ids.clone(),
                probs: rows.iter().flat_map(|r| r[h].iter().copied()).collect(),
                source: format!("mgscope predict {} {}", a.arch, a.checkpoint.display()),
                report: serde_json::json!({"views": a.views, "split": a.split.as_str()})
                    .to_string(),
            })?;
        }
    }
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    let acc = if labelled > 0 {
        format!(
            ", top-1 {:.2} % on {labelled} labelled clips",
            100.0 * correct as f64 / labelled as f64
        )
    } else {
        String::new()
    };
    println!(
        "{}: {} clips × {} head(s) in {:.1} s{acc} -> {} + {}",
        a.arch,
        ids.len(),
        heads.len(),
        t0.elapsed().as_secs_f64(),
        a.out.display(),
        idp.display()
    );
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// One open decoder per video file, reused across the clips of that video.
#[derive(Default)]
struct Readers {
    #[cfg(feature = "video")]
    open: HashMap<PathBuf, mgscope::media::decode::VideoReader>,
}

#[cfg(not(feature = "video"))]
#[allow(clippy::too_many_arguments)]
fn video_clip(
    _ds: &Dataset,
    _readers: &mut Readers,
    model: &Model,
    _s: &mgscope::dataset::Sample,
    _videos: &HashMap<String, (usize, usize)>,
    _a: &PredictArgs,
    _views: Views,
    _skeleton: &mgscope::modality::heatmap::Skeleton,
) -> Result<Vec<Vec<f32>>> {
    bail!(
        "{} reads video frames: this mgscope was built without the `video` feature",
        model.arch.name
    )
}

#[cfg(feature = "video")]
#[allow(clippy::too_many_arguments)]
fn video_clip(
    ds: &Dataset,
    readers: &mut Readers,
    model: &Model,
    s: &mgscope::dataset::Sample,
    videos: &HashMap<String, (usize, usize)>,
    a: &PredictArgs,
    views: Views,
    skeleton: &mgscope::modality::heatmap::Skeleton,
) -> Result<Vec<Vec<f32>>> {
    use mgscope::media::decode::VideoReader;
    use mgscope::nn::models::ModelError;
    use mgscope::nn::predict::{
        predict_rgb_clip, predict_swin_clip, RgbPoseViewConfig, SwinViewConfig,
    };
    use mgscope::nn::video_views::Rgb;

    // Which file holds the frames, and where the clip starts in it.
    let (path, first, n) = if a.modality == "rgb" {
        let v = ds
            .videos()?
            .into_iter()
            .find(|v| v.vid == s.video)
            .with_context(|| format!("video {} is not in the dataset", s.video))?;
        let p = ds
            .media_path(&v)
            .with_context(|| format!("video {} has no media file", s.video))?;
        (p, s.start as usize, s.frames() as usize)
    } else {
        let m = match a.modality.as_str() {
            "taylor" => mgscope::extract::Modality::Taylor,
            "flow" => mgscope::extract::Modality::Flow,
            "depth" => mgscope::extract::Modality::Depth,
            other => bail!("--modality {other:?}: expected rgb, taylor, flow or depth"),
        };
        let p = mgscope::extract::output_path(
            ds.root(),
            m,
            &s.clip_id,
            mgscope::extract::OutFormat::Mp4,
        );
        if !p.exists() {
            bail!(
                "{} is missing: run `mgscope extract {} --modality {} --format mp4` first",
                p.display(),
                ds.root().display(),
                a.modality
            );
        }
        (p, 0, 0)
    };
    if !readers.open.contains_key(&path) {
        let r = VideoReader::open(&path)?;
        readers.open.insert(path.clone(), r);
    }
    let reader = readers
        .open
        .get_mut(&path)
        .context("video reader vanished")?;
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
    match model.arch.inputs {
        Inputs::Video if model.arch.name.starts_with("swin") => Ok(predict_swin_clip(
            model,
            n,
            &mut frame,
            &SwinViewConfig::swin(views),
            a.batch,
        )?),
        _ => {
            let kp = ds
                .sample_keypoints(s)?
                .context("no keypoints (MMCompact needs them)")?;
            let hw = *videos
                .get(&s.video)
                .with_context(|| format!("video {} has no frame size", s.video))?;
            let cfg = if model.arch.inputs == Inputs::RgbPose {
                RgbPoseViewConfig::rgbpose(views)
            } else {
                RgbPoseViewConfig::rgb_only(views)
            };
            Ok(predict_rgb_clip(
                model, &kp, hw, &mut frame, skeleton, &cfg, a.batch,
            )?)
        }
    }
}
