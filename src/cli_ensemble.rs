//! `mgscope ensemble`: load score streams into the dataset, fuse them, evaluate, search
//! weights with a k-fold honest estimate, rank confusing samples, write a submission.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use mgscope::dataset::Split;
use mgscope::ensemble::fusion::{mm_gesture, Fusion};
use mgscope::ensemble::metrics::{evaluate, Metrics};
use mgscope::ensemble::queue::{self, QueueEntry};
use mgscope::ensemble::search::{self, Control, KFoldReport, Method, Objective, SearchResult};
use mgscope::ensemble::stream::{ScoreKind, ScoreStream, Stream};
use mgscope::store::{Dataset, StoredStream};

#[derive(Args)]
pub struct EnsembleArgs {
    dataset: PathBuf,
    /// `NAME=FILE[:WEIGHT]` loads a score file (.pkl, .npy, .csv) into the dataset under NAME;
    /// `NAME[:WEIGHT]` uses a stream stored earlier.
    #[arg(long = "stream")]
    streams: Vec<String>,
    /// Clip ids of the rows of files that carry none (.pkl, .npy): one per line, or a JSON list.
    /// Default: the clips of the split being loaded, in dataset order.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Split whose clips the score files hold, when --ids is not given (default: --split).
    #[arg(long, value_parser = parse_split)]
    ids_split: Option<Split>,
    /// How to read the values: probabilities, logits (softmax applied) or auto-detect.
    #[arg(long, value_enum, default_value = "auto")]
    kind: Kind,
    /// Split to evaluate on (needs labels).
    #[arg(long, value_parser = parse_split, default_value = "val")]
    split: Split,
    /// Weights from a preset instead of the --stream weights.
    #[arg(long, value_enum)]
    preset: Option<PresetName>,
    #[arg(long, value_enum)]
    search: Option<SearchKind>,
    /// Grid / coordinate step on the simplex.
    #[arg(long, default_value_t = 0.05)]
    step: f64,
    #[arg(long, value_enum, default_value = "top1")]
    objective: ObjectiveArg,
    /// Restarts of the coordinate ascent.
    #[arg(long, default_value_t = 8)]
    restarts: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// k-fold honest estimate of the tuned weights over the evaluation split.
    #[arg(long)]
    kfold: Option<usize>,
    #[arg(long, value_enum)]
    queue: Option<QueueArg>,
    /// Entries of the queue to print.
    #[arg(long, default_value_t = 20)]
    top: usize,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    save_weights: Option<PathBuf>,
    /// Write a Kaggle submission (`Id,Target`, zipped) for the test split with the final weights.
    #[arg(long)]
    submit: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Auto,
    Probs,
    Logits,
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetName {
    MmGesture,
}

#[derive(Clone, Copy, ValueEnum)]
enum SearchKind {
    Grid,
    Coord,
}

#[derive(Clone, Copy, ValueEnum)]
enum ObjectiveArg {
    Top1,
    /// Mean class accuracy.
    Mca,
}

#[derive(Clone, Copy, ValueEnum)]
enum QueueArg {
    Margin,
    Disagreement,
    LabelError,
    Confident,
}

fn parse_split(s: &str) -> Result<Split, String> {
    Split::parse(s).ok_or_else(|| format!("unknown split {s:?}"))
}

#[derive(Serialize)]
struct Output {
    split: String,
    clips: usize,
    streams: Vec<String>,
    loaded: Vec<serde_json::Value>,
    weights: BTreeMap<String, f32>,
    metrics: MetricsOut,
    per_stream_top1: BTreeMap<String, f64>,
    search: Option<SearchResult>,
    tuned_metrics: Option<MetricsOut>,
    kfold: Option<KFoldReport>,
    queue: Option<Vec<QueueEntry>>,
    submission: Option<(String, usize)>,
}

#[derive(Serialize)]
struct MetricsOut {
    top1: f64,
    top5: f64,
    mean_class_accuracy: f64,
    macro_f1: f64,
    per_class_accuracy: Vec<f64>,
    support: Vec<u64>,
    confusion: Vec<Vec<u64>>,
}

impl From<&Metrics> for MetricsOut {
    fn from(m: &Metrics) -> Self {
        MetricsOut {
            top1: m.top1,
            top5: m.top5,
            mean_class_accuracy: m.mean_class_accuracy,
            macro_f1: m.macro_f1,
            per_class_accuracy: m.per_class_accuracy.clone(),
            support: m.support.clone(),
            confusion: m.confusion.clone(),
        }
    }
}

fn split_ids(ds: &Dataset, split: Split) -> Result<(Vec<String>, Vec<Option<u32>>)> {
    let s: Vec<_> = ds
        .samples()?
        .into_iter()
        .filter(|s| s.split == split)
        .collect();
    Ok((
        s.iter().map(|s| s.clip_id.clone()).collect(),
        s.iter().map(|s| s.label).collect(),
    ))
}

pub fn run(a: EnsembleArgs) -> Result<()> {
    let mut ds = Dataset::open(&a.dataset)?;
    let kind = match a.kind {
        Kind::Auto => ScoreKind::Auto,
        Kind::Probs => ScoreKind::Probabilities,
        Kind::Logits => ScoreKind::Logits,
    };
    let file_ids: Vec<String> = match &a.ids {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            mgscope::ensemble::stream::parse_id_list("--ids", &text)?
        }
        None => split_ids(&ds, a.ids_split.unwrap_or(a.split))?.0,
    };

    // Load the files into the dataset; collect (name, weight).
    let mut chosen: Vec<(String, Option<f32>)> = Vec::new();
    let mut loaded = Vec::new();
    for spec in &a.streams {
        let (head, weight) = match spec.rsplit_once(':') {
            Some((h, w)) if w.parse::<f32>().is_ok() => (h, w.parse::<f32>().ok()),
            _ => (spec.as_str(), None),
        };
        match head.split_once('=') {
            Some((name, file)) => {
                let path = PathBuf::from(file);
                let got = mgscope::ensemble::read_score_file(&path, name, Some(&file_ids), kind)?;
                for (s, report) in &got {
                    let mut st = StoredStream::from(s);
                    st.source = path.display().to_string();
                    st.report = serde_json::to_string(report)?;
                    ds.put_stream(&st)?;
                    loaded.push(serde_json::json!({
                        "stream": s.name, "file": path.display().to_string(),
                        "clips": s.clip_ids.len(), "classes": s.classes, "report": report,
                    }));
                    chosen.push((s.name.clone(), weight));
                }
            }
            None => chosen.push((head.to_string(), weight)),
        }
    }
    if chosen.is_empty() && a.preset.is_none() {
        let names = ds.stream_names()?;
        if names.is_empty() {
            bail!("no streams: give --stream NAME=FILE[:WEIGHT] (the dataset has none stored)");
        }
        chosen = names.into_iter().map(|n| (n, None)).collect();
    }

    let (ids, labels) = split_ids(&ds, a.split)?;
    if ids.is_empty() {
        bail!("split {} of {} has no clips", a.split, a.dataset.display());
    }
    let (streams, weights): (Vec<Stream>, Vec<f32>) = match a.preset {
        Some(PresetName::MmGesture) => {
            let preset = mm_gesture();
            let mut avail = Vec::new();
            for t in &preset.terms {
                for (n, _) in &t.parts {
                    avail.push(
                        ds.load_stream(n)
                            .with_context(|| format!("preset mm-gesture needs stream {n:?}"))?
                            .to_stream()?,
                    );
                }
            }
            preset.apply(&avail)?
        }
        None => {
            let mut s = Vec::new();
            let mut w = Vec::new();
            let uniform = 1.0 / chosen.len() as f32;
            for (n, wt) in &chosen {
                s.push(Stream::Single(ds.load_stream(n)?.to_stream()?));
                w.push(wt.unwrap_or(uniform));
            }
            (s, w)
        }
    };
    let fusion = Fusion::new(ids.clone(), labels.clone(), streams)?;
    let c = fusion.classes();
    let names: Vec<String> = fusion.stream_names().to_vec();
    let fused = fusion.fused(&weights)?;
    let metrics = evaluate(&fused, c, &labels)?;
    let mut per_stream_top1 = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let m = evaluate(fusion.stream_probs(i), c, &labels)?;
        per_stream_top1.insert(n.clone(), m.top1);
    }

    let objective = match a.objective {
        ObjectiveArg::Top1 => Objective::Top1,
        ObjectiveArg::Mca => Objective::MeanClassAccuracy,
    };
    let method = a.search.map(|s| match s {
        SearchKind::Grid => Method::Grid { step: a.step },
        SearchKind::Coord => Method::CoordinateAscent {
            step: a.step,
            restarts: a.restarts,
            seed: a.seed,
        },
    });
    let cancel = AtomicBool::new(false);
    let quiet = a.json;
    let progress = move |done: u64, total: u64| {
        if !quiet && total > 0 && (done == total || done % (total / 20).max(1) == 0) {
            eprint!("\rsearch: {done}/{total}");
            if done == total {
                eprintln!();
            }
        }
    };
    let ctl = Control {
        threads: 0,
        progress: &progress,
        cancel: &cancel,
    };
    let found = match &method {
        Some(m) => Some(search::search(&fusion, m, objective, &ctl)?),
        None => None,
    };
    let final_weights = found
        .as_ref()
        .map_or(weights.clone(), |f| f.weights.clone());
    let tuned_metrics = match &found {
        Some(f) => Some(evaluate(&fusion.fused(&f.weights)?, c, &labels)?),
        None => None,
    };
    let kf = match (a.kfold, &method) {
        (Some(k), Some(m)) => Some(search::kfold(&fusion, k, a.seed, m, objective, &ctl)?),
        (Some(_), None) => bail!("--kfold estimates tuned weights: give --search grid|coord"),
        _ => None,
    };

    let class_names: Vec<String> = ds
        .taxonomy()
        .classes
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let q = match a.queue {
        None => None,
        Some(kind) => {
            let oos = match &kf {
                Some(r) => Some(search::out_of_sample_probs(&fusion, r)?),
                None => None,
            };
            let mut entries = match kind {
                QueueArg::Margin => {
                    queue::smallest_margin(&fusion, &final_weights, Some(&class_names))?
                }
                QueueArg::Disagreement => {
                    queue::modality_disagreement(&fusion, &final_weights, Some(&class_names))?
                }
                QueueArg::LabelError => queue::likely_label_errors(
                    &fusion,
                    &final_weights,
                    oos.as_deref(),
                    Some(&class_names),
                )?,
                QueueArg::Confident => {
                    queue::confident_mistakes(&fusion, &final_weights, Some(&class_names))?
                }
            };
            entries.truncate(a.top);
            Some(entries)
        }
    };

    if let Some(p) = &a.save_weights {
        let mut t = String::from("# mgscope ensemble weights\n[weights]\n");
        for (n, w) in names.iter().zip(&final_weights) {
            t.push_str(&format!("{:?} = {w}\n", n));
        }
        std::fs::write(p, t).with_context(|| format!("writing {}", p.display()))?;
    }

    let submission = match &a.submit {
        Some(out) => {
            let (test_ids, test_labels) = split_ids(&ds, Split::Test)?;
            if test_ids.is_empty() {
                bail!("the dataset has no test split to submit");
            }
            let mut ts = Vec::new();
            for s in fusion_streams_for(&ds, &names, a.preset.is_some())? {
                ts.push(s);
            }
            let f = Fusion::new(test_ids.clone(), test_labels, ts)
                .context("the streams must hold scores for every test clip")?;
            let pred = f.predict(&final_weights)?;
            let rows: Vec<(String, u32)> = test_ids.into_iter().zip(pred).collect();
            mgscope::dataset::export::write_kaggle_submission(out, &rows)?;
            Some((out.display().to_string(), rows.len()))
        }
        None => None,
    };

    let mut weight_map = BTreeMap::new();
    for (n, w) in names.iter().zip(&final_weights) {
        weight_map.insert(n.clone(), *w);
    }
    let out = Output {
        split: a.split.to_string(),
        clips: ids.len(),
        streams: names.clone(),
        loaded,
        weights: weight_map,
        metrics: (&metrics).into(),
        per_stream_top1,
        search: found,
        tuned_metrics: tuned_metrics.as_ref().map(Into::into),
        kfold: kf,
        queue: q,
        submission,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_human(&out);
    }
    Ok(())
}

/// The streams (by the fusion's names) again, for another clip set; presets rebuild composites.
fn fusion_streams_for(ds: &Dataset, names: &[String], preset: bool) -> Result<Vec<Stream>> {
    if preset {
        let p = mm_gesture();
        let mut avail: Vec<ScoreStream> = Vec::new();
        for t in &p.terms {
            for (n, _) in &t.parts {
                avail.push(ds.load_stream(n)?.to_stream()?);
            }
        }
        return Ok(p.apply(&avail)?.0);
    }
    names
        .iter()
        .map(|n| Ok(Stream::Single(ds.load_stream(n)?.to_stream()?)))
        .collect()
}

fn print_human(o: &Output) {
    for l in &o.loaded {
        println!(
            "loaded {} from {} ({} clips, {} classes): {}",
            l["stream"].as_str().unwrap_or("?"),
            l["file"].as_str().unwrap_or("?"),
            l["clips"],
            l["classes"],
            l["report"]["detected"].as_str().unwrap_or("?")
        );
    }
    println!("split {} — {} clips", o.split, o.clips);
    println!("{:<28} {:>8} {:>9}", "stream", "weight", "top-1");
    for n in &o.streams {
        println!(
            "{:<28} {:>8.3} {:>8.2}%",
            n,
            o.weights.get(n).copied().unwrap_or(0.0),
            100.0 * o.per_stream_top1.get(n).copied().unwrap_or(0.0)
        );
    }
    let m = |label: &str, x: &MetricsOut| {
        println!(
            "{label:<10} top-1 {:6.2}%  top-5 {:6.2}%  mean class acc {:6.2}%  macro-F1 {:6.2}%",
            100.0 * x.top1,
            100.0 * x.top5,
            100.0 * x.mean_class_accuracy,
            100.0 * x.macro_f1
        )
    };
    m("ensemble", &o.metrics);
    if let (Some(s), Some(t)) = (&o.search, &o.tuned_metrics) {
        println!(
            "search: {} weight vectors evaluated, best {} {:.2}%",
            s.evaluated,
            s.objective.label(),
            100.0 * s.score
        );
        m("tuned", t);
    }
    if let Some(k) = &o.kfold {
        println!(
            "k-fold honest estimate: held-out {:.2}% ± {:.2} (tuned on all: {:.2}%, optimism gap {:.2} points)",
            100.0 * k.heldout_mean,
            100.0 * k.heldout_std,
            100.0 * k.tuned.score,
            100.0 * k.optimism_gap
        );
        if let Some(w) = &k.warning {
            println!("warning: {w}");
        }
    }
    if let Some(q) = &o.queue {
        println!("queue:");
        for e in q {
            println!("  {:<12} {:>8.4}  {}", e.clip_id, e.score, e.explanation);
        }
    }
    if let Some((p, n)) = &o.submission {
        println!("submission: {n} test clips -> {p}");
    }
}
