//! The `mgscope` command line: thin; every command calls into the library.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use mgscope::dataset::export;
use mgscope::dataset::import::{self, Format};
use mgscope::dataset::Split;
use mgscope::demo::DemoConfig;
use mgscope::store::{Dataset, Event, ImportReport};
use mgscope::util::default_author;

mod cli_ensemble;
mod cli_predict;
mod cli_probe;
mod cli_train;

#[derive(Parser)]
#[command(
    name = "mgscope",
    version,
    about = "A workbench for micro-gesture recognition research"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the demo dataset (iMiGUE release layout) into OUT_DIR.
    Demo {
        out_dir: PathBuf,
        /// Seed of the generator (default: the built-in demo's).
        #[arg(long)]
        seed: Option<u64>,
        /// A small version (2 videos × 300 frames) for quick checks.
        #[arg(long)]
        tiny: bool,
        /// Also import it into this dataset folder.
        #[arg(long)]
        import: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Import a source into a dataset folder (created if needed).
    Import {
        #[arg(long, value_enum)]
        format: Format,
        src: PathBuf,
        dataset: PathBuf,
        /// mmaction2 list assigning clips to a split, e.g. `--split-list val=iMiGUE_val_clips_list.txt`.
        #[arg(long, value_parser = parse_split_list)]
        split_list: Vec<(Split, PathBuf)>,
        /// Split for sources that carry none.
        #[arg(long, value_parser = parse_split)]
        split: Option<Split>,
        /// Class for sources that carry none (OpenPose folders): index or name.
        #[arg(long)]
        label: Option<String>,
        /// Folder the clips of an mmaction list live in (default: beside the list).
        #[arg(long)]
        video_root: Option<PathBuf>,
        /// Video file to attach to an OpenPose folder.
        #[arg(long)]
        video: Option<PathBuf>,
        /// Class taxonomy of a new dataset.
        #[arg(long, default_value = "imigue")]
        taxonomy: String,
        #[arg(long)]
        json: bool,
    },
    /// Summarise a dataset: samples per split and class, videos, frames, missing keypoints.
    Info {
        dataset: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Change a sample's class (durable when this returns). With --batch, read
    /// `SAMPLE_ID CLASS` lines from a file or `-` (stdin) and print `ok ...` after each commit.
    Relabel {
        dataset: PathBuf,
        sample_id: Option<String>,
        class: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, conflicts_with_all = ["sample_id", "class"])]
        batch: Option<PathBuf>,
        #[arg(long)]
        author: Option<String>,
    },
    /// Move a sample's boundaries (inclusive frame indices).
    Bounds {
        dataset: PathBuf,
        sample_id: String,
        start: u32,
        end: u32,
        #[arg(long)]
        author: Option<String>,
    },
    /// Mark a sample reviewed (or not, with --unset).
    Review {
        dataset: PathBuf,
        sample_id: String,
        #[arg(long)]
        unset: bool,
        #[arg(long)]
        author: Option<String>,
    },
    /// The change history, oldest first.
    History {
        dataset: PathBuf,
        sample_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revert the latest change.
    Undo { dataset: PathBuf },
    /// Re-apply the latest undone change.
    Redo { dataset: PathBuf },
    /// Export labels and keypoints.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        dataset: PathBuf,
        out: PathBuf,
        /// For kaggle: which split's labels to write.
        #[arg(long, value_parser = parse_split, default_value = "test")]
        split: Split,
    },
    /// Fuse score streams, evaluate, search weights, rank confusing samples, write a submission.
    Ensemble(Box<cli_ensemble::EnsembleArgs>),
    /// Per-channel mean and std (0–255) of a split's frames, for the RGB normalisation
    /// MM-Gesture computes from its own dataset; also written to DATASET/stats/.
    #[cfg(feature = "video")]
    Stats {
        dataset: PathBuf,
        #[arg(long, value_parser = parse_split, default_value = "train")]
        split: Split,
        /// rgb (the source video), or an extracted mp4 modality: taylor, flow, depth.
        #[arg(long, default_value = "rgb")]
        modality: String,
        /// Every N-th frame of each clip.
        #[arg(long, default_value_t = 1)]
        stride: usize,
        /// Clips decoded in parallel.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Extract derived modalities for a dataset into DATASET/cache (resumable, shardable).
    #[cfg(feature = "video")]
    Extract {
        dataset: PathBuf,
        /// Comma-separated: taylor, flow, depth, joint, limb.
        #[arg(long, value_enum, value_delimiter = ',', required = true)]
        modality: Vec<mgscope::extract::Modality>,
        #[arg(long, value_parser = parse_split)]
        split: Option<Split>,
        /// `I/N`: this process takes the clips whose id hashes to I mod N.
        #[arg(long, value_parser = parse_shard, default_value = "0/1")]
        shard: (u32, u32),
        #[arg(long, value_enum, default_value = "npy")]
        format: mgscope::extract::OutFormat,
        /// Clips processed in parallel.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        #[arg(long)]
        depth_weights: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "small")]
        depth_encoder: mgscope::modality::depth::Encoder,
        #[arg(long)]
        json: bool,
    },
    /// Run a checkpoint over a split with the reference test protocol; writes the pyskl /
    /// mmaction2 score dump (.pkl) and its clip ids.
    Predict(Box<cli_predict::PredictArgs>),
    /// Train a stream on a dataset (PoseC3D, RGB SlowOnly, RGBPoseConv3D, Video Swin; the
    /// reference configs as presets); resumable runs in a folder.
    Train(Box<cli_train::TrainArgs>),
    /// Low-level checks on single files.
    Probe {
        #[command(subcommand)]
        what: cli_probe::Probe,
    },
    /// Open the desktop app.
    #[cfg(feature = "gui")]
    Gui {
        dataset: Option<PathBuf>,
        /// A checkpoint whose predictions the Predictions panel computes for each opened clip.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Its architecture (see `probe infer --help`).
        #[arg(long, default_value = "posec3d-joint36")]
        arch: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// iMiGUE release layout: label csvs, OpenPose csvs, clip lists.
    Imigue,
    /// pyskl annotation pickle.
    Pyskl,
    /// Kaggle submission zip (`Id,Target`).
    Kaggle,
}

fn parse_split(s: &str) -> Result<Split, String> {
    Split::parse(s).ok_or_else(|| format!("unknown split {s:?}: expected train, val, test or none"))
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("expected I/N, found {s:?}"))?;
    let i: u32 = i
        .parse()
        .map_err(|_| format!("shard index {i:?} is not a number"))?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("shard count {n:?} is not a number"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: expected 0 <= I < N"));
    }
    Ok((i, n))
}

fn parse_split_list(s: &str) -> Result<(Split, PathBuf), String> {
    let (split, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected SPLIT=FILE, found {s:?}"))?;
    Ok((parse_split(split)?, PathBuf::from(path)))
}

fn main() {
    // Output piped into `head` must end the process quietly, as for any Unix tool, not panic
    // in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = run(Cli::parse()) {
        // Library errors already print their cause; show each link of the chain once.
        let mut parts: Vec<String> = Vec::new();
        for link in e.chain() {
            let s = link.to_string();
            if !parts.iter().any(|p| p.contains(&s)) {
                parts.push(s);
            }
        }
        eprintln!("error: {}", parts.join(": "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        #[cfg(feature = "gui")]
        return mgscope::app::run(None, None);
        #[cfg(not(feature = "gui"))]
        bail!("this mgscope was built without the `gui` feature; see `mgscope --help`");
    };
    match command {
        Command::Demo {
            out_dir,
            seed,
            tiny,
            import: into,
            json,
        } => {
            let mut cfg = if tiny {
                DemoConfig::tiny()
            } else {
                DemoConfig::standard()
            };
            if let Some(seed) = seed {
                cfg.seed = seed;
            }
            let report = mgscope::demo::write_demo(&cfg, &out_dir, &|done, total| {
                if !json {
                    eprintln!("demo: {done}/{total} videos written");
                }
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "demo dataset in {}: {} videos, {} frames, {} samples, {:.1} MiB, {:.1} s",
                    report.out.display(),
                    report.videos,
                    report.frames,
                    report.samples,
                    report.bytes as f64 / (1024.0 * 1024.0),
                    report.seconds
                );
            }
            if let Some(ds_dir) = into {
                let mut ds = Dataset::open_or_create(&ds_dir, "imigue")?;
                let rep = import::import(Format::Imigue, &out_dir, &mut ds, &Default::default())?;
                print_import(&rep, &ds_dir, json)?;
            }
        }
        Command::Import {
            format,
            src,
            dataset,
            split_list,
            split,
            label,
            video_root,
            video,
            taxonomy,
            json,
        } => {
            let mut ds = Dataset::open_or_create(&dataset, &taxonomy)?;
            let label = match label {
                Some(l) => Some(ds.taxonomy().parse_class(&l)?),
                None => None,
            };
            let opts = import::Options {
                split_lists: split_list,
                split,
                label,
                video_root,
                video,
            };
            let report = import::import(format, &src, &mut ds, &opts)
                .with_context(|| format!("importing {}", src.display()))?;
            print_import(&report, &dataset, json)?;
        }
        Command::Info { dataset, json } => {
            let ds = Dataset::open(&dataset)?;
            let s = ds.summary()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_summary(&ds, &s);
            }
        }
        Command::Relabel {
            dataset,
            sample_id,
            class,
            note,
            batch,
            author,
        } => {
            let author = author.unwrap_or_else(default_author);
            let mut ds = Dataset::open(&dataset)?;
            if let Some(batch) = batch {
                relabel_batch(&mut ds, &batch, &author)?;
            } else {
                let (Some(sample), Some(class)) = (sample_id, class) else {
                    bail!("relabel needs SAMPLE_ID and CLASS, or --batch FILE");
                };
                let c = ds.taxonomy().parse_class(&class)?;
                let old = ds.sample(&sample)?.label;
                ds.relabel(&sample, c, &author)?;
                if let Some(n) = note {
                    ds.set_note(&sample, &n, &author)?;
                }
                let tax = ds.taxonomy();
                println!(
                    "{sample}: {} -> {c} ({})",
                    old.map(|o| format!("{o} ({})", tax.name_of(o)))
                        .unwrap_or_else(|| "unlabeled".into()),
                    tax.name_of(c)
                );
            }
        }
        Command::Bounds {
            dataset,
            sample_id,
            start,
            end,
            author,
        } => {
            let mut ds = Dataset::open(&dataset)?;
            let old = ds.sample(&sample_id)?;
            ds.set_bounds(
                &sample_id,
                start,
                end,
                &author.unwrap_or_else(default_author),
            )?;
            println!(
                "{sample_id}: [{}, {}] -> [{start}, {end}]",
                old.start, old.end
            );
        }
        Command::Review {
            dataset,
            sample_id,
            unset,
            author,
        } => {
            let mut ds = Dataset::open(&dataset)?;
            ds.set_reviewed(&sample_id, !unset, &author.unwrap_or_else(default_author))?;
            println!("{sample_id}: reviewed = {}", !unset);
        }
        Command::History {
            dataset,
            sample_id,
            json,
        } => {
            let ds = Dataset::open(&dataset)?;
            let h = ds.history(sample_id.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else if h.is_empty() {
                println!("no changes yet");
            } else {
                for e in &h {
                    println!("{}", describe_event(e));
                }
            }
        }
        Command::Undo { dataset } => {
            let mut ds = Dataset::open(&dataset)?;
            match ds.undo()? {
                Some(e) => println!("undone: {}", describe_event(&e)),
                None => println!("nothing to undo"),
            }
        }
        Command::Redo { dataset } => {
            let mut ds = Dataset::open(&dataset)?;
            match ds.redo()? {
                Some(e) => println!("redone: {}", describe_event(&e)),
                None => println!("nothing to redo"),
            }
        }
        Command::Export {
            format,
            dataset,
            out,
            split,
        } => {
            let ds = Dataset::open(&dataset)?;
            match format {
                ExportFormat::Imigue => {
                    let r = export::export_imigue(&ds, &out)?;
                    print_export(&r, &out);
                }
                ExportFormat::Pyskl => {
                    let r = export::export_pyskl(&ds, &out)?;
                    print_export(&r, &out);
                }
                ExportFormat::Kaggle => {
                    let rows: Vec<(String, u32)> = ds
                        .samples()?
                        .into_iter()
                        .filter(|s| s.split == split)
                        .map(|s| {
                            s.label
                                .map(|l| (s.clip_id.clone(), l))
                                .with_context(|| format!("sample {} has no label", s.clip_id))
                        })
                        .collect::<Result<_>>()?;
                    export::write_kaggle_submission(&out, &rows)?;
                    println!("{} rows ({split}) written to {}", rows.len(), out.display());
                }
            }
        }
        Command::Ensemble(args) => cli_ensemble::run(*args)?,
        Command::Predict(args) => cli_predict::run(*args)?,
        Command::Train(args) => cli_train::run(*args)?,
        #[cfg(feature = "video")]
        Command::Stats {
            dataset,
            split,
            modality,
            stride,
            jobs,
            json,
        } => {
            use mgscope::extract::Modality;
            use mgscope::stats::Source;
            let source = match modality.as_str() {
                "rgb" => Source::Rgb,
                "taylor" => Source::Extracted(Modality::Taylor),
                "flow" => Source::Extracted(Modality::Flow),
                "depth" => Source::Extracted(Modality::Depth),
                other => anyhow::bail!(
                    "--modality {other:?}: expected rgb, taylor, flow or depth (videos; joint/limb heatmaps are not normalised)"
                ),
            };
            let ds = Dataset::open(&dataset)?;
            let opts = mgscope::stats::Options {
                source,
                split: Some(split),
                stride,
                jobs,
            };
            let progress = |done: usize, total: usize| {
                if !json {
                    eprint!("\rstats: {done}/{total} clips   ");
                    if done == total {
                        eprintln!();
                    }
                }
            };
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let st = mgscope::stats::channel_stats(&ds, &opts, &progress, &cancel)?;
            let text = serde_json::to_string_pretty(&st)?;
            let dir = dataset.join("stats");
            let file = dir.join(format!("{}_{}.json", st.source, st.split));
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(&file, &text))
                .with_context(|| format!("writing {}", file.display()))?;
            if json {
                println!("{text}");
            } else {
                let f = |v: [f64; 3]| format!("[{:.3}, {:.3}, {:.3}]", v[0], v[1], v[2]);
                println!(
                    "{} {} ({} clips, {} frames, stride {stride}): mean = {}, std = {} (0–255, R G B)",
                    st.source,
                    st.split,
                    st.clips,
                    st.frames,
                    f(st.mean),
                    f(st.std)
                );
                for (clip, why) in &st.failed {
                    println!("  left out {clip}: {why}");
                }
                println!("written to {}", file.display());
            }
        }
        #[cfg(feature = "video")]
        Command::Extract {
            dataset,
            modality,
            split,
            shard,
            format,
            jobs,
            depth_weights,
            depth_encoder,
            json,
        } => {
            let ds = Dataset::open(&dataset)?;
            let opts = mgscope::extract::Options {
                modalities: modality,
                split,
                shard,
                format,
                jobs,
                depth_weights,
                depth_encoder,
            };
            let started = std::time::Instant::now();
            let progress = |done: usize, total: usize| {
                if json {
                    return;
                }
                let el = started.elapsed().as_secs_f64();
                let eta = if done > 0 {
                    el / done as f64 * (total - done) as f64
                } else {
                    0.0
                };
                eprint!("\rextract: {done}/{total} clips, {el:.0} s elapsed, ETA {eta:.0} s   ");
                if done == total {
                    eprintln!();
                }
            };
            let cancel = std::sync::atomic::AtomicBool::new(false);
            let s = mgscope::extract::run(&ds, &opts, &progress, &cancel)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "{} clips (shard {}/{}): {} outputs written, {} already done, {} failed",
                    s.clips,
                    shard.0,
                    shard.1,
                    s.written,
                    s.skipped_existing,
                    s.failed.len()
                );
                for (what, why) in &s.failed {
                    println!("  failed {what}: {why}");
                }
            }
        }
        Command::Probe { what } => cli_probe::run(what)?,
        #[cfg(feature = "gui")]
        Command::Gui {
            dataset,
            checkpoint,
            arch,
        } => mgscope::app::run(dataset, checkpoint.map(|c| (arch, c)))?,
    }
    Ok(())
}

fn relabel_batch(ds: &mut Dataset, batch: &Path, author: &str) -> Result<()> {
    let reader: Box<dyn BufRead> = if batch.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(batch).with_context(|| format!("opening {}", batch.display()))?,
        ))
    };
    let mut out = std::io::stdout().lock();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {} line {}", batch.display(), i + 1))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(sample), Some(class), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!(
                "{} line {}: expected `SAMPLE_ID CLASS`, found {line:?}",
                batch.display(),
                i + 1
            );
        };
        let c = ds.taxonomy().parse_class(class)?;
        let ev = ds.relabel(sample, c, author)?;
        // Printed only after the commit returned: a line on stdout is an acknowledged change.
        writeln!(out, "ok {sample} {c} {ev}")?;
        out.flush()?;
    }
    Ok(())
}

fn describe_event(e: &Event) -> String {
    format!(
        "#{} {} {} {:?}: {} -> {} by {} [{:?}]",
        e.id,
        e.time_utc(),
        e.clip_id,
        e.kind,
        if e.old_value.is_empty() {
            "∅"
        } else {
            &e.old_value
        },
        if e.new_value.is_empty() {
            "∅"
        } else {
            &e.new_value
        },
        e.author,
        e.state
    )
}

fn print_import(r: &ImportReport, dataset: &Path, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "imported into {}: {} videos, {} samples",
        dataset.display(),
        r.videos_added,
        r.samples_added
    );
    if !r.skipped.is_empty() {
        println!("skipped {}:", r.skipped.len());
        for (what, why) in &r.skipped {
            println!("  {what}: {why}");
        }
    }
    Ok(())
}

fn print_export(r: &export::ExportReport, out: &Path) {
    println!(
        "exported {} samples to {} ({} files)",
        r.samples,
        out.display(),
        r.files
    );
    for w in &r.warnings {
        println!("  warning: {w}");
    }
}

fn print_summary(ds: &Dataset, s: &mgscope::store::Summary) {
    let tax = ds.taxonomy();
    println!("dataset {} (taxonomy {})", s.path.display(), s.taxonomy);
    println!(
        "  {} videos ({} frames, {} without media), {} samples ({} frames)",
        s.videos, s.frames_in_videos, s.videos_without_media, s.samples, s.frames_in_samples
    );
    for (split, n) in &s.per_split {
        println!("  {split}: {n} samples");
        if let Some(classes) = s.per_split_class.get(split) {
            let mut rows: Vec<(&String, &usize)> = classes.iter().collect();
            rows.sort_by_key(|(c, _)| c.parse::<u32>().unwrap_or(u32::MAX));
            for (c, n) in rows {
                let name = c
                    .parse::<u32>()
                    .map(|i| tax.name_of(i).to_string())
                    .unwrap_or_default();
                println!("    {c:>9} {name:<24} {n}");
            }
        }
    }
    let pct = if s.keypoint_points > 0 {
        100.0 * s.keypoint_missing as f64 / s.keypoint_points as f64
    } else {
        0.0
    };
    println!(
        "  keypoints: {} points, {} missing ({pct:.2} %)",
        s.keypoint_points, s.keypoint_missing
    );
    if !s.videos_without_keypoints.is_empty() {
        println!(
            "  videos without keypoints: {}",
            s.videos_without_keypoints.join(", ")
        );
    }
}
