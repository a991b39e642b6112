//! The Training tab: the dataset's runs (`DATASET/runs/*`) with status and validation top-1,
//! start a run from a preset, stop it, resume it, live loss and accuracy curves, and "use as
//! ensemble stream". It drives the same engine as `mgscope train` (`train::train`) on a worker
//! thread; the curves are read from the run folder's `metrics.jsonl` / `val.jsonl`, so a run
//! started from the command line shows up and plots the same way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use crate::train::run::{register_run, IterRecord, ValRecord};
use crate::train::{self, RunOptions, TrainConfig, PRESETS};

#[derive(Debug, Clone, PartialEq)]
enum Status {
    /// Trained by this window now.
    Running,
    Finished,
    /// Stopped before its last epoch (resumable from `last.safetensors`).
    Stopped,
    /// No checkpoint yet.
    Empty,
    Failed(String),
}

#[derive(Debug, Clone)]
struct RunInfo {
    dir: PathBuf,
    name: String,
    preset: String,
    epochs: usize,
    status: Status,
    last_val: Option<ValRecord>,
    best_val: Option<ValRecord>,
}

struct Job {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<train::RunSummary, String>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TrainingPanel {
    /// Closing the window stops a run the way Stop does: at the next step, with a checkpoint
    /// that Resume continues from.
    fn drop(&mut self) {
        if let Some(j) = &mut self.job {
            j.stop.store(true, Ordering::Relaxed);
            if let Some(h) = j.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// The selected run's curves, read incrementally from its JSONL files.
#[derive(Default)]
struct Curves {
    dir: PathBuf,
    metrics: Vec<IterRecord>,
    val: Vec<ValRecord>,
    metrics_read: u64,
    val_read: u64,
}

impl Curves {
    fn refresh(&mut self) {
        read_new(
            &self.dir.join("metrics.jsonl"),
            &mut self.metrics_read,
            &mut self.metrics,
        );
        read_new(
            &self.dir.join("val.jsonl"),
            &mut self.val_read,
            &mut self.val,
        );
    }
}

/// Appends the complete lines added to `path` since byte `read`. A resumed run truncates its
/// files back to the checkpoint; a file shorter than what was read is read again from the top.
fn read_new<T: serde::de::DeserializeOwned>(path: &Path, read: &mut u64, out: &mut Vec<T>) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *read {
        *read = 0;
        out.clear();
    }
    if f.seek(SeekFrom::Start(*read)).is_err() {
        return;
    }
    let mut buf = String::new();
    if f.read_to_string(&mut buf).is_err() {
        return;
    }
    // A line still being written has no newline yet: leave it for the next read.
    let complete = buf.rfind('\n').map_or(0, |i| i + 1);
    for line in buf[..complete].lines() {
        if let Ok(v) = serde_json::from_str(line) {
            out.push(v);
        }
    }
    *read += complete as u64;
}

fn read_all<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let mut out = Vec::new();
    read_new(path, &mut 0, &mut out);
    out
}

pub struct TrainingPanel {
    runs: Vec<RunInfo>,
    scanned: Option<Instant>,
    selected: Option<PathBuf>,
    curves: Curves,
    preset: String,
    seed: u64,
    job: Option<Job>,
    message: Option<Result<String, String>>,
}

impl Default for TrainingPanel {
    fn default() -> Self {
        TrainingPanel {
            runs: Vec::new(),
            scanned: None,
            selected: None,
            curves: Curves::default(),
            preset: "posec3d-joint-tiny".into(),
            seed: 0,
            job: None,
            message: None,
        }
    }
}

/// What the panel asks of the rest of the app.
pub enum Action {
    /// A stream was stored: reload the Predictions and Ensemble tabs.
    StreamsChanged,
}

impl TrainingPanel {
    fn runs_dir(dataset: &Path) -> PathBuf {
        dataset.join("runs")
    }

    fn scan(&mut self, dataset: &Path) {
        let mut runs = Vec::new();
        if let Ok(rd) = std::fs::read_dir(Self::runs_dir(dataset)) {
            for e in rd.flatten() {
                let dir = e.path();
                let Ok(cfg) = TrainConfig::load(&dir.join("config.toml"), None) else {
                    continue;
                };
                let val: Vec<ValRecord> = read_all(&dir.join("val.jsonl"));
                let running = self.job.as_ref().is_some_and(|j| j.dir == dir);
                let status = if running {
                    Status::Running
                } else if val.last().is_some_and(|v| v.epoch >= cfg.optim.epochs) {
                    Status::Finished
                } else if dir.join("last.safetensors").is_file() {
                    Status::Stopped
                } else {
                    Status::Empty
                };
                let best_val = val.iter().max_by(|a, b| a.top1.total_cmp(&b.top1)).cloned();
                runs.push(RunInfo {
                    name: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    dir,
                    preset: cfg.preset.clone(),
                    epochs: cfg.optim.epochs,
                    status,
                    last_val: val.last().cloned(),
                    best_val,
                });
            }
        }
        // Keep a failure visible until the next start.
        for r in &mut runs {
            if let Some(old) = self.runs.iter().find(|o| o.dir == r.dir) {
                if matches!(old.status, Status::Failed(_)) && r.status != Status::Running {
                    r.status = old.status.clone();
                }
            }
        }
        runs.sort_by(|a, b| b.name.cmp(&a.name));
        self.runs = runs;
        self.scanned = Some(Instant::now());
    }

    fn start(&mut self, dataset: &Path, ctx: &egui::Context, resume: Option<PathBuf>) {
        if self.job.is_some() {
            return;
        }
        let (cfg, out) = match resume {
            Some(dir) => (None, dir),
            None => {
                let mut cfg = match TrainConfig::preset(&self.preset) {
                    Ok(c) => c,
                    Err(e) => {
                        self.message = Some(Err(e.to_string()));
                        return;
                    }
                };
                cfg.run.seed = self.seed;
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let out = Self::runs_dir(dataset).join(format!("{}-{secs}", cfg.preset));
                (Some(cfg), out)
            }
        };
        let mut opts = RunOptions::new(&out);
        opts.resume = cfg.is_none();
        let stop = opts.stop.clone();
        let (tx, rx) = mpsc::channel();
        let ds = dataset.to_path_buf();
        let ctx2 = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("mgscope-train".into())
            .spawn(move || {
                let r = train::train(&ds, cfg.as_ref(), &opts).map_err(|e| e.to_string());
                let _ = tx.send(r);
                ctx2.request_repaint();
            });
        match spawned {
            Ok(handle) => {
                self.message = None;
                self.selected = Some(out.clone());
                self.job = Some(Job {
                    dir: out,
                    stop,
                    done: rx,
                    handle: Some(handle),
                });
                self.scanned = None;
            }
            Err(e) => self.message = Some(Err(format!("no worker thread: {e}"))),
        }
    }

    fn poll(&mut self) -> Option<Action> {
        let job = self.job.as_ref()?;
        let r = job.done.try_recv().ok()?;
        let dir = job.dir.clone();
        self.job = None;
        self.scanned = None;
        match r {
            Ok(s) => {
                let what = if s.finished {
                    "finished"
                } else {
                    "stopped with a checkpoint"
                };
                self.message = Some(Ok(format!(
                    "{}: {what} at iteration {}/{}{}",
                    dir.display(),
                    s.iter,
                    s.total_iters,
                    s.stream
                        .as_ref()
                        .map(|n| format!("; validation scores stored as stream {n}"))
                        .unwrap_or_default()
                )));
                s.stream.map(|_| Action::StreamsChanged)
            }
            Err(e) => {
                if let Some(r) = self.runs.iter_mut().find(|r| r.dir == dir) {
                    r.status = Status::Failed(e.clone());
                }
                self.message = Some(Err(e));
                None
            }
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, dataset: &Path) -> Option<Action> {
        let mut action = self.poll();
        if self
            .scanned
            .is_none_or(|t| t.elapsed() > Duration::from_secs(2))
        {
            self.scan(dataset);
        }
        if self.job.is_some() {
            // Curves move while a run trains; nothing else asks for frames.
            ui.ctx().request_repaint_after(Duration::from_millis(500));
        }

        ui.horizontal(|ui| {
            ui.label("preset");
            egui::ComboBox::from_id_salt("train-preset")
                .selected_text(&self.preset)
                .show_ui(ui, |ui| {
                    for (name, about) in PRESETS {
                        ui.selectable_value(&mut self.preset, name.to_string(), *name)
                            .on_hover_text(*about);
                    }
                });
            ui.label("seed");
            ui.add(egui::DragValue::new(&mut self.seed));
        });
        ui.horizontal(|ui| {
            let busy = self.job.is_some();
            if ui
                .add_enabled(!busy, egui::Button::new("Start run"))
                .on_hover_text("train on this dataset's train split, validate on val (CPU)")
                .clicked()
            {
                self.start(dataset, ui.ctx(), None);
            }
            if let Some(j) = &self.job {
                let stopping = j.stop.load(Ordering::Relaxed);
                if ui
                    .add_enabled(!stopping, egui::Button::new("Stop"))
                    .on_hover_text(
                        "stops at the next step with a checkpoint; resume continues exactly",
                    )
                    .clicked()
                {
                    j.stop.store(true, Ordering::Relaxed);
                }
                ui.spinner();
                ui.label(if stopping {
                    "stopping…"
                } else {
                    "training…"
                });
            }
        });
        match &self.message {
            Some(Ok(m)) => {
                ui.label(m);
            }
            Some(Err(e)) => {
                ui.colored_label(egui::Color32::from_rgb(230, 90, 80), e);
            }
            None => {}
        }
        ui.separator();

        if self.runs.is_empty() {
            ui.weak(format!(
                "No runs in {} yet. Start one above, or `mgscope train {}`.",
                Self::runs_dir(dataset).display(),
                dataset.display()
            ));
        }
        let mut resume = None;
        let mut register = None;
        egui::Grid::new("runs").striped(true).show(ui, |ui| {
            ui.strong("run");
            ui.strong("status");
            ui.strong("val top-1");
            ui.end_row();
            for r in &self.runs {
                let sel = self.selected.as_ref() == Some(&r.dir);
                if ui
                    .selectable_label(sel, &r.name)
                    .on_hover_text(format!("{} · {} epochs", r.preset, r.epochs))
                    .clicked()
                {
                    self.selected = Some(r.dir.clone());
                }
                match &r.status {
                    Status::Failed(e) => {
                        ui.colored_label(egui::Color32::from_rgb(230, 90, 80), "failed")
                            .on_hover_text(e);
                    }
                    s => {
                        ui.label(match s {
                            Status::Running => "running",
                            Status::Finished => "finished",
                            Status::Stopped => "stopped",
                            _ => "no checkpoint",
                        });
                    }
                }
                match (&r.last_val, &r.best_val) {
                    (Some(l), Some(b)) => ui
                        .label(format!("{:.1} %", l.top1 * 100.0))
                        .on_hover_text(format!(
                            "last: epoch {} top-1 {:.2} %, mean class acc {:.2} %\nbest: epoch {} top-1 {:.2} %",
                            l.epoch,
                            l.top1 * 100.0,
                            l.mean_class_acc * 100.0,
                            b.epoch,
                            b.top1 * 100.0
                        )),
                    _ => ui.weak("—"),
                };
                ui.end_row();
            }
        });
        // Actions for the selected run, under the table so the panel keeps its width.
        if let Some(r) = self
            .runs
            .iter()
            .find(|r| Some(&r.dir) == self.selected.as_ref())
        {
            ui.horizontal(|ui| {
                if r.status == Status::Stopped
                    && ui
                        .add_enabled(self.job.is_none(), egui::Button::new("Resume"))
                        .on_hover_text("continue from last.safetensors; the result equals an uninterrupted run")
                        .clicked()
                {
                    resume = Some(r.dir.clone());
                }
                if r.best_val.is_some()
                    && r.status != Status::Running
                    && ui
                        .button("Use as ensemble stream")
                        .on_hover_text("store the best checkpoint's validation scores in the dataset")
                        .clicked()
                {
                    register = Some(r.dir.clone());
                }
            });
        }
        if let Some(dir) = resume {
            self.start(dataset, ui.ctx(), Some(dir));
        }
        if let Some(dir) = register {
            match register_run(dataset, &dir) {
                Ok(name) => {
                    self.message = Some(Ok(format!("stored as ensemble stream {name}")));
                    action = Some(Action::StreamsChanged);
                }
                Err(e) => self.message = Some(Err(e.to_string())),
            }
        }

        let Some(sel) = self.selected.clone() else {
            return action;
        };
        if self.curves.dir != sel {
            self.curves = Curves {
                dir: sel.clone(),
                ..Default::default()
            };
        }
        self.curves.refresh();
        ui.separator();
        ui.label(format!(
            "{} — {} iterations, {} validations",
            sel.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.curves.metrics.len(),
            self.curves.val.len()
        ));
        let loss: PlotPoints = self
            .curves
            .metrics
            .iter()
            .map(|m| [m.iter as f64, m.loss])
            .collect();
        Plot::new("train-loss")
            .height(150.0)
            .legend(Legend::default())
            .x_axis_label("iteration")
            .show(ui, |p| {
                p.line(Line::new("training loss", loss));
            });
        let top1: Vec<[f64; 2]> = self
            .curves
            .val
            .iter()
            .map(|v| [v.epoch as f64, v.top1 * 100.0])
            .collect();
        let mca: Vec<[f64; 2]> = self
            .curves
            .val
            .iter()
            .map(|v| [v.epoch as f64, v.mean_class_acc * 100.0])
            .collect();
        Plot::new("train-val")
            .height(150.0)
            .legend(Legend::default())
            .x_axis_label("epoch")
            .y_axis_label("%")
            .include_y(0.0)
            .show(ui, |p| {
                p.line(Line::new("val top-1", PlotPoints::from(top1.clone())));
                p.points(Points::new("", PlotPoints::from(top1)).radius(3.0));
                p.line(Line::new("val mean class acc", PlotPoints::from(mca)));
            });
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_is_read_incrementally_and_a_truncated_file_is_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("val.jsonl");
        let rec = |e: usize, t: f64| ValRecord {
            epoch: e,
            iter: e * 10,
            top1: t,
            mean_class_acc: t / 2.0,
            clips: 10,
            seconds: 1.0,
            heads_top1: Default::default(),
        };
        let line = |r: &ValRecord| serde_json::to_string(r).expect("json") + "\n";
        std::fs::write(&p, line(&rec(1, 0.1)) + &line(&rec(2, 0.2))).expect("write");
        let (mut read, mut out) = (0u64, Vec::<ValRecord>::new());
        read_new(&p, &mut read, &mut out);
        assert_eq!(out, vec![rec(1, 0.1), rec(2, 0.2)]);
        // A half-written line waits for its newline.
        let partial = line(&rec(3, 0.3));
        let (head, tail) = partial.split_at(10);
        let mut text = std::fs::read_to_string(&p).expect("read");
        text.push_str(head);
        std::fs::write(&p, &text).expect("write");
        read_new(&p, &mut read, &mut out);
        assert_eq!(out.len(), 2);
        text.push_str(tail);
        std::fs::write(&p, &text).expect("write");
        read_new(&p, &mut read, &mut out);
        assert_eq!(out.last(), Some(&rec(3, 0.3)));
        // Resume truncated the file back to epoch 1: read again from the start.
        std::fs::write(&p, line(&rec(1, 0.1))).expect("write");
        read_new(&p, &mut read, &mut out);
        assert_eq!(out, vec![rec(1, 0.1)]);
    }
}
