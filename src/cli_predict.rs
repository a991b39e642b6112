//! `mgscope predict`: a checkpoint over a split with the reference test protocol, written as
//! the pyskl / mmaction2 dump (a pickle list of per-clip probability vectors; RGBPose a list
//! of `{'rgb', 'pose'}` dicts) plus the clip ids of its rows.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use mgscope::dataset::Split;
use mgscope::inference::{ClipPredictor, PredictError};
use mgscope::nn::models::{self, Model};
use mgscope::nn::predict::Views;
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
    let mut predictor = ClipPredictor::new(&ds)?;
    let t0 = Instant::now();
    let mut ids = Vec::new();
    let mut rows: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut skipped = Vec::new();
    let (mut correct, mut labelled) = (0usize, 0usize);
    for (i, s) in samples.iter().enumerate() {
        let probs = match predictor.predict(
            &ds,
            &model,
            s,
            views,
            &a.modality,
            a.batch,
            Default::default(),
        ) {
            Ok(p) => p,
            Err(PredictError::Skip(why)) => {
                skipped.push(format!("{}: {why}", s.clip_id));
                continue;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("clip {}", s.clip_id))),
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
    let idp = mgscope::ensemble::import::sidecar_ids(&a.out);
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
