//! The Ensemble tab: one weight slider per stored stream, live validation top-1 and mean class
//! accuracy against the equal-weight start, per-class accuracy bars and the confusion matrix;
//! clicking a matrix cell filters the sample browser to those clips.

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use crate::dataset::{Split, Taxonomy};
use crate::ensemble::fusion::Fusion;
use crate::ensemble::metrics::{argmax, evaluate, Metrics};
use crate::ensemble::search::{grid_size, kfold, Control, KFoldReport, Method, Objective};
use crate::ensemble::stream::Stream;
use crate::store::Dataset;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// What a click on a confusion cell asks the browser to show.
pub struct CellFilter {
    pub truth: u32,
    pub predicted: u32,
    pub clips: Vec<String>,
}

/// "Search weights" on a worker thread: the engine's k-fold search (tuned weights on all
/// labelled clips and the held-out estimate that says how much of the gain is real).
struct SearchJob {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
    result: mpsc::Receiver<Result<KFoldReport, String>>,
}

impl Drop for SearchJob {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Folds of the search's held-out estimate.
const SEARCH_FOLDS: usize = 5;

#[derive(Default)]
pub struct EnsemblePanel {
    search: Option<SearchJob>,
    report: Option<Result<KFoldReport, String>>,
    fusion: Option<Fusion>,
    weights: Vec<f32>,
    metrics: Option<Metrics>,
    baseline: Option<(f64, f64)>,
    error: Option<String>,
    split: Option<Split>,
}

impl EnsemblePanel {
    /// Builds the fusion of every stored stream of the taxonomy's class count over `split`.
    pub fn load(&mut self, ds: &Dataset, split: Split) {
        *self = EnsemblePanel {
            split: Some(split),
            ..Default::default()
        };
        let build = || -> crate::Result<Option<Fusion>> {
            let classes = ds.taxonomy().len();
            let mut streams = Vec::new();
            for n in ds.stream_names()? {
                let s = ds.load_stream(&n)?;
                if s.classes == classes {
                    streams.push(Stream::Single(s.to_stream()?));
                }
            }
            if streams.is_empty() {
                return Ok(None);
            }
            let samples: Vec<_> = ds
                .samples()?
                .into_iter()
                .filter(|s| s.split == split)
                .collect();
            let ids = samples.iter().map(|s| s.clip_id.clone()).collect();
            let labels = samples.iter().map(|s| s.label).collect();
            Ok(Some(Fusion::new(ids, labels, streams)?))
        };
        match build() {
            Ok(Some(f)) => {
                let n = f.n_streams();
                self.weights = vec![1.0 / n as f32; n];
                self.fusion = Some(f);
                self.recompute();
                self.baseline = self
                    .metrics
                    .as_ref()
                    .map(|m| (m.top1, m.mean_class_accuracy));
            }
            Ok(None) => {}
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// The search the button runs: a 0.05 grid while it stays small, coordinate ascent with
    /// restarts beyond (the CLI's `--search` offers both).
    fn search_method(streams: usize) -> Method {
        match grid_size(streams, 0.05) {
            Ok(n) if n <= 2_000_000 => Method::Grid { step: 0.05 },
            _ => Method::CoordinateAscent {
                step: 0.05,
                restarts: 8,
                seed: 0,
            },
        }
    }

    fn start_search(&mut self, ctx: &egui::Context) {
        let Some(f) = self.fusion.clone() else { return };
        let (done, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (d, t, c, cx) = (done.clone(), total.clone(), cancel.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("mgscope-search".into())
            .spawn(move || {
                let progress = |a: u64, b: u64| {
                    d.store(a, Ordering::Relaxed);
                    t.store(b, Ordering::Relaxed);
                };
                let ctl = Control {
                    threads: 0,
                    progress: &progress,
                    cancel: &c,
                };
                let method = Self::search_method(f.n_streams());
                let r = kfold(&f, SEARCH_FOLDS, 0, &method, Objective::Top1, &ctl)
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
                cx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.report = None;
                self.search = Some(SearchJob {
                    done,
                    total,
                    cancel,
                    result: rx,
                });
            }
            Err(e) => self.report = Some(Err(format!("no worker thread: {e}"))),
        }
    }

    /// The search button, its progress and cancel, and the result with its k-fold estimate.
    fn search_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(job) = &self.search {
            if let Ok(r) = job.result.try_recv() {
                let cancelled = job.cancel.load(Ordering::Relaxed);
                self.search = None;
                self.report = Some(if cancelled {
                    Err("search cancelled".into())
                } else {
                    r
                });
            }
        }
        ui.horizontal(|ui| match &self.search {
            Some(job) => {
                let (d, t) = (
                    job.done.load(Ordering::Relaxed),
                    job.total.load(Ordering::Relaxed).max(1),
                );
                ui.add(
                    egui::ProgressBar::new(d as f32 / t as f32)
                        .desired_width(180.0)
                        .text(format!("searching {d}/{t}")),
                );
                if ui.button("Cancel").clicked() {
                    job.cancel.store(true, Ordering::Relaxed);
                }
                ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
            }
            None => {
                if ui
                    .button("Search weights")
                    .on_hover_text(format!(
                        "tune the weights for top-1 on these clips, with a {SEARCH_FOLDS}-fold held-out estimate"
                    ))
                    .clicked()
                {
                    self.start_search(ui.ctx());
                }
            }
        });
        let mut apply = None;
        match &self.report {
            Some(Ok(r)) => {
                ui.label(format!(
                    "tuned top-1 {:.2} % on all labelled clips; {}-fold held-out {:.2} ± {:.2} % \
                     (uniform weights {:.2} %)",
                    r.tuned.score * 100.0,
                    r.k,
                    r.heldout_mean * 100.0,
                    r.heldout_stderr * 100.0,
                    r.uniform_heldout_mean * 100.0
                ));
                if let Some(w) = &r.warning {
                    ui.colored_label(egui::Color32::from_rgb(230, 170, 80), w);
                }
                if r.tuned.stream_names.len() == self.weights.len()
                    && ui.button("Apply the tuned weights").clicked()
                {
                    apply = Some(r.tuned.weights.clone());
                }
            }
            Some(Err(e)) => {
                ui.colored_label(egui::Color32::from_rgb(230, 110, 90), e);
            }
            None => {}
        }
        if let Some(w) = apply {
            self.weights = w;
            self.recompute();
        }
    }

    pub fn top1(&self) -> Option<f64> {
        self.metrics.as_ref().map(|m| m.top1)
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    fn recompute(&mut self) {
        let Some(f) = &self.fusion else { return };
        let r = f
            .fused(&self.weights)
            .and_then(|p| evaluate(&p, f.classes(), f.labels()));
        match r {
            Ok(m) => {
                self.metrics = Some(m);
                self.error = None;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// The clips of confusion cell (truth, predicted) under the current weights.
    fn cell_clips(&self, truth: u32, predicted: u32) -> Vec<String> {
        let Some(f) = &self.fusion else {
            return Vec::new();
        };
        let Ok(p) = f.fused(&self.weights) else {
            return Vec::new();
        };
        let c = f.classes();
        f.clip_ids()
            .iter()
            .zip(f.labels())
            .enumerate()
            .filter(|(i, (_, l))| **l == Some(truth) && argmax(&p[i * c..(i + 1) * c]) == predicted)
            .map(|(_, (id, _))| id.clone())
            .collect()
    }

    /// Returns a cell filter when a confusion cell was clicked.
    pub fn ui(&mut self, ui: &mut egui::Ui, ds: &Dataset, tax: &Taxonomy) -> Option<CellFilter> {
        let mut clicked = None;
        ui.horizontal(|ui| {
            ui.label("split:");
            for sp in [Split::Val, Split::Test, Split::Train] {
                if ui
                    .selectable_label(self.split == Some(sp), sp.as_str())
                    .clicked()
                {
                    self.load(ds, sp);
                }
            }
            if ui.button("Reload streams").clicked() {
                self.load(ds, self.split.unwrap_or(Split::Val));
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::from_rgb(230, 110, 90), e);
        }
        let Some(f) = &self.fusion else {
            ui.weak(format!(
                "No stored stream with {} classes covers this split. Import score files with \
                 `mgscope ensemble DATASET --stream NAME=FILE` or `mgscope predict --register`.",
                tax.len()
            ));
            return None;
        };
        let names: Vec<String> = f.stream_names().to_vec();
        let mut changed = false;
        for (i, n) in names.iter().enumerate() {
            ui.horizontal(|ui| {
                let r = ui.add(egui::Slider::new(&mut self.weights[i], 0.0..=1.0).text(n));
                changed |= r.changed();
            });
        }
        if changed {
            self.recompute();
        }
        self.search_ui(ui);
        let Some(m) = &self.metrics else { return None };
        let (b1, bm) = self.baseline.unwrap_or((m.top1, m.mean_class_accuracy));
        ui.strong(format!(
            "top-1 {:.2} % ({:+.2})   mean class acc {:.2} % ({:+.2})   on {} labelled clips",
            m.top1 * 100.0,
            (m.top1 - b1) * 100.0,
            m.mean_class_accuracy * 100.0,
            (m.mean_class_accuracy - bm) * 100.0,
            m.n
        ));
        ui.weak("(change against equal weights)");
        let bars: Vec<Bar> = m
            .per_class_accuracy
            .iter()
            .enumerate()
            .filter(|(c, _)| m.support[*c] > 0)
            .map(|(c, a)| {
                Bar::new(c as f64, a * 100.0)
                    .name(tax.name_of(c as u32))
                    .width(0.8)
            })
            .collect();
        Plot::new("per-class")
            .height(120.0)
            .allow_scroll(false)
            .allow_zoom(false)
            .show(ui, |p| p.bar_chart(BarChart::new("accuracy %", bars)));
        ui.label("Confusion (rows: truth, columns: prediction); click a cell to list its clips");
        let c = m.classes;
        let present: Vec<usize> = (0..c)
            .filter(|&k| m.support[k] > 0 || m.confusion.iter().any(|row| row[k] > 0))
            .collect();
        let cell = (ui.available_width() / present.len().max(1) as f32).clamp(6.0, 28.0);
        let size = egui::vec2(cell * present.len() as f32, cell * present.len() as f32);
        let (rect, resp) = ui.allocate_exact_size(size, egui::Sense::click());
        let painter = ui.painter_at(rect);
        let max = m
            .confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f32;
        for (r, &t) in present.iter().enumerate() {
            for (q, &p) in present.iter().enumerate() {
                let v = m.confusion[t][p] as f32 / max;
                let color = if t == p {
                    egui::Color32::from_rgb(40, (60.0 + 190.0 * v) as u8, 80)
                } else {
                    egui::Color32::from_rgb((40.0 + 210.0 * v) as u8, 50, 60)
                };
                let min = rect.min + egui::vec2(q as f32 * cell, r as f32 * cell);
                painter.rect_filled(
                    egui::Rect::from_min_size(min, egui::vec2(cell - 1.0, cell - 1.0)),
                    0.0,
                    color,
                );
            }
        }
        if let Some(pos) = resp.interact_pointer_pos().filter(|_| resp.clicked()) {
            let r = ((pos.y - rect.min.y) / cell) as usize;
            let q = ((pos.x - rect.min.x) / cell) as usize;
            if let (Some(&t), Some(&p)) = (present.get(r), present.get(q)) {
                clicked = Some((t as u32, p as u32));
            }
        }
        if let Some(pos) = resp.hover_pos() {
            let r = ((pos.y - rect.min.y) / cell) as usize;
            let q = ((pos.x - rect.min.x) / cell) as usize;
            if let (Some(&t), Some(&p)) = (present.get(r), present.get(q)) {
                resp.on_hover_text(format!(
                    "truth {t} {} → predicted {p} {}: {} clips",
                    tax.name_of(t as u32),
                    tax.name_of(p as u32),
                    m.confusion[t][p]
                ));
            }
        }
        clicked.map(|(t, p)| CellFilter {
            truth: t,
            predicted: p,
            clips: self.cell_clips(t, p),
        })
    }
}
