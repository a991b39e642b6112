//! `mgscope train`: a thin wrapper over `mgscope::train`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use clap::Args;

use mgscope::nn::models;
use mgscope::train::{self, run, RunOptions, TrainConfig};

#[derive(Args)]
pub struct TrainArgs {
    /// The dataset folder (its train split trains, its val split validates).
    pub dataset: Option<PathBuf>,
    /// A TOML config; its keys are laid over the preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Base preset (see --list-presets); wins over the config file's `preset` key.
    #[arg(long)]
    pub preset: Option<String>,
    /// Continue the run in this folder from its last checkpoint, with its own config.
    #[arg(long, conflicts_with_all = ["config", "preset", "out", "init", "seed"])]
    pub resume: Option<PathBuf>,
    /// Run folder (default: DATASET/runs/<preset>-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start from these weights (.pth / .safetensors); tensors of another shape (a head for
    /// another class count) are re-initialised.
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Stop with a checkpoint once the run has done this many iterations.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Do not store the validation scores as an ensemble stream.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the presets and exit.
    #[arg(long)]
    pub list_presets: bool,
    /// Print the resolved config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: TrainArgs) -> Result<()> {
    if a.list_presets {
        for (name, about) in train::PRESETS {
            println!("{name:20} {about}");
        }
        return Ok(());
    }
    train::retain_freed_memory();
    let cfg = if a.resume.is_some() {
        None
    } else {
        let mut cfg = match &a.config {
            Some(p) => TrainConfig::load(p, a.preset.as_deref())?,
            None => TrainConfig::preset(a.preset.as_deref().unwrap_or("posec3d-joint"))?,
        };
        if let Some(p) = &a.init {
            cfg.model.init = Some(p.clone());
        }
        if let Some(s) = a.seed {
            cfg.run.seed = s;
        }
        Some(cfg)
    };
    if a.print_config {
        match &cfg {
            Some(c) => print!("{}", c.to_toml().map_err(anyhow::Error::msg)?),
            None => bail!("--print-config shows a new run's config; read RUN/config.toml instead"),
        }
        return Ok(());
    }
    let Some(dataset) = a.dataset else {
        bail!("a DATASET folder is required");
    };
    let out = match (&a.resume, &a.out, &cfg) {
        (Some(r), _, _) => r.clone(),
        (None, Some(o), _) => o.clone(),
        (None, None, Some(c)) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            dataset.join("runs").join(format!("{}-{secs}", c.preset))
        }
        (None, None, None) => bail!("no run folder"),
    };
    let mut opts = RunOptions::new(&out);
    opts.resume = a.resume.is_some();
    opts.device = models::parse_device(&a.device)?;
    opts.stop_after = a.stop_after;
    opts.progress = true;
    opts.register_stream = !a.no_stream;
    run::install_interrupt_handler();
    opts.stop = run::interrupt_flag();
    eprintln!("run folder: {}", out.display());
    let s = train::train(&dataset, cfg.as_ref(), &opts)
        .with_context(|| format!("training run {}", out.display()))?;
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    if let Some(r) = &s.init_report {
        eprintln!("init: {r}");
    }
    if a.json {
        let v = serde_json::json!({
            "out": s.out,
            "iter": s.iter,
            "total_iters": s.total_iters,
            "finished": s.finished,
            "interrupted": opts.stop.load(Ordering::SeqCst),
            "val": s.val,
            "best": s.best,
            "stream": s.stream,
            "train_clips": s.train_clips,
            "val_clips": s.val_clips,
            "init": s.init_report,
            "skipped": s.skipped,
            "notes": s.notes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {}/{} iterations{}; {} train / {} val clips",
            s.out.display(),
            s.iter,
            s.total_iters,
            if s.finished {
                ", finished"
            } else {
                ", stopped (resume with --resume)"
            },
            s.train_clips,
            s.val_clips
        );
        if let Some(b) = &s.best {
            println!(
                "best: epoch {} top-1 {:.4} mean class acc {:.4}",
                b.epoch, b.top1, b.mean_class_acc
            );
        }
        if let Some(st) = &s.stream {
            println!("validation scores stored as stream {st}");
        }
        if !s.skipped.is_empty() {
            println!(
                "{} clips skipped (first: {})",
                s.skipped.len(),
                s.skipped[0]
            );
        }
    }
    Ok(())
}
