//! The Ensemble tab: one weight slider per stored stream, live validation top-1 and mean class
//! accuracy with their change against a saved preset (or equal weights), per-class accuracy
//! bars and the confusion matrix; clicking a matrix cell filters the sample browser to those
//! clips. Presets are saved in the dataset; the weights have an undo history in which one
//! slider drag, one keyboard or typed edit, one preset load and one application of searched
//! weights are one step each. The working weights and the last loaded preset are written to the
//! dataset at every step, so closing the window loses no tuning.

use std::collections::HashMap;
use std::path::PathBuf;

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use crate::dataset::{Split, Taxonomy};
use crate::ensemble::fusion::Fusion;
use crate::ensemble::metrics::{argmax, evaluate, Metrics};
use crate::ensemble::queue::{self, QueueKind};
use crate::ensemble::search::{grid_size, kfold, Control, KFoldReport, Method, Objective};
use crate::ensemble::stream::Stream;
use crate::store::{Dataset, LoadedPreset, PresetInfo, PresetTerm, SaveMode};
use crate::util::format_utc;

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

/// Undo steps kept; older ones are dropped first (rerun keeps 100 as well).
const MAX_UNDO: usize = 100;

/// One undo step: the whole weight vector before and after, in the fusion's stream order.
#[derive(Debug, Clone, PartialEq)]
struct WeightEdit {
    before: Vec<f32>,
    after: Vec<f32>,
    what: String,
}

#[derive(Debug, Default)]
struct WeightHistory {
    undo: Vec<WeightEdit>,
    redo: Vec<WeightEdit>,
}

impl WeightHistory {
    /// Records a step; a new step drops the redo branch, as the label history does.
    fn push(&mut self, edit: WeightEdit) {
        if edit.before == edit.after {
            return;
        }
        self.redo.clear();
        self.undo.push(edit);
        if self.undo.len() > MAX_UNDO {
            self.undo.remove(0);
        }
    }

    fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
    }
}

/// What the figures are compared with: a saved preset, or equal weights when none is chosen.
struct Baseline {
    top1: f64,
    mean_class_accuracy: f64,
}

#[derive(Default)]
pub struct EnsemblePanel {
    search: Option<SearchJob>,
    report: Option<Result<KFoldReport, String>>,
    fusion: Option<Fusion>,
    weights: Vec<f32>,
    metrics: Option<Metrics>,
    baseline: Option<Baseline>,
    error: Option<String>,
    split: Option<Split>,
    /// The dataset the panel was built for: reloading the same one (another split, new
    /// streams) keeps the weights and, while the streams are the same, their history.
    root: Option<PathBuf>,
    /// The weights as of the last undo step; `weights` differs from it only while a slider
    /// gesture is still open.
    committed: Vec<f32>,
    history: WeightHistory,
    presets: Vec<PresetInfo>,
    /// The preset the figures are compared with.
    compare: Option<LoadedPreset>,
    preset_name: String,
    confirm_delete: bool,
    /// What the last preset action found worth saying (streams a preset lacks or names).
    notice: Option<String>,
}

impl EnsemblePanel {
    /// Builds the fusion of every stored stream of the taxonomy's class count over `split`.
    /// A different dataset starts afresh from what the dataset remembers (working weights, the
    /// last loaded preset); the same dataset keeps the weights by stream name.
    pub fn load(&mut self, ds: &Dataset, split: Split) {
        let same = self.root.as_deref() == Some(ds.root());
        if !same {
            *self = EnsemblePanel {
                root: Some(ds.root().to_path_buf()),
                ..Default::default()
            };
            self.restore_compare(ds);
        } else {
            // A drag cannot span a reload; what it moved so far is its own step.
            self.commit(ds, None);
        }
        self.refresh_presets(ds);
        let old_names: Vec<String> = self
            .fusion
            .as_ref()
            .map(|f| f.stream_names().to_vec())
            .unwrap_or_default();
        let old_weights = std::mem::take(&mut self.weights);
        // A running search and its result belong to the old clips: dropping the job cancels it.
        self.search = None;
        self.report = None;
        self.fusion = None;
        self.metrics = None;
        self.baseline = None;
        self.error = None;
        self.split = Some(split);
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
        let fusion = match build() {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.history.clear();
                self.committed.clear();
                return;
            }
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let names = fusion.stream_names().to_vec();
        self.fusion = Some(fusion);
        if !old_names.is_empty() {
            let carried: Vec<PresetTerm> = old_names
                .iter()
                .zip(&old_weights)
                .map(|(n, w)| PresetTerm::stream(n.clone(), *w))
                .collect();
            self.weights = weights_or_equal(&names, &carried);
            if names != old_names {
                // Steps are whole vectors in stream order; with other streams they mean nothing.
                self.history.clear();
            }
        } else {
            self.history.clear();
            self.restore_weights(ds, &names);
        }
        self.committed = self.weights.clone();
        self.recompute();
        self.refresh_baseline();
    }

    /// The preset loaded last, as the dataset remembers it, becomes the one compared with.
    fn restore_compare(&mut self, ds: &Dataset) {
        let loaded = ds
            .last_preset()
            .and_then(|last| last.map(|n| ds.load_preset(&n)).transpose());
        match loaded {
            Ok(p) => self.compare = p,
            Err(e) => self.notice = Some(format!("the last loaded preset: {e}")),
        }
    }

    /// The weights as they were left in this dataset, else the compared preset's, else equal;
    /// a source that weighs none of these streams is passed over.
    fn restore_weights(&mut self, ds: &Dataset, names: &[String]) {
        let working = match ds.working_weights() {
            Ok(w) => w.unwrap_or_default(),
            Err(e) => {
                self.notice = Some(format!("the weights last used: {e}"));
                Vec::new()
            }
        };
        let preset = self.compare.as_ref().map_or(&[][..], |p| &p.terms[..]);
        self.weights = [&working[..], preset]
            .into_iter()
            .map(|terms| weights_from_terms(names, terms))
            .find(|(_, matched)| *matched > 0)
            .map_or_else(|| weights_or_equal(names, &[]), |(w, _)| w);
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

    /// The search button, its progress and cancel, and the result with its k-fold estimate;
    /// returns the tuned weights when the user applies them.
    fn search_ui(&mut self, ui: &mut egui::Ui) -> Option<Vec<f32>> {
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
        apply
    }

    pub fn top1(&self) -> Option<f64> {
        self.metrics.as_ref().map(|m| m.top1)
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// How many steps Ctrl+Z can take back.
    pub fn undo_depth(&self) -> usize {
        self.history.undo.len()
    }

    /// The preset the figures are compared with.
    pub fn compared_preset(&self) -> Option<&str> {
        self.compare.as_ref().map(|p| p.info.name.as_str())
    }

    /// The weights as preset terms, by stream name.
    fn terms(&self) -> Vec<PresetTerm> {
        let Some(f) = &self.fusion else {
            return Vec::new();
        };
        f.stream_names()
            .iter()
            .zip(&self.weights)
            .map(|(n, w)| PresetTerm::stream(n.clone(), *w))
            .collect()
    }

    /// Closes the open step: the weights since the last step become one undo entry, and the
    /// dataset remembers them.
    fn commit(&mut self, ds: &Dataset, what: Option<String>) {
        if self.weights == self.committed {
            return;
        }
        let what = what.unwrap_or_else(|| self.describe_change());
        self.history.push(WeightEdit {
            before: std::mem::replace(&mut self.committed, self.weights.clone()),
            after: self.weights.clone(),
            what,
        });
        self.remember(ds);
    }

    /// Replaces all weights as one step (a preset load, searched weights, a test's edit).
    pub fn edit_weights(&mut self, ds: &Dataset, weights: Vec<f32>, what: String) {
        if weights.len() != self.weights.len() {
            return;
        }
        self.commit(ds, None);
        self.weights = weights;
        self.commit(ds, Some(what));
        self.recompute();
    }

    /// "weight of 'rgb' 0.50 -> 0.20", or how many streams moved.
    fn describe_change(&self) -> String {
        let names = self
            .fusion
            .as_ref()
            .map(|f| f.stream_names())
            .unwrap_or(&[]);
        let moved: Vec<usize> = (0..self.weights.len())
            .filter(|&i| self.committed.get(i) != self.weights.get(i))
            .collect();
        match moved[..] {
            [i] => format!(
                "weight of '{}' {:.2} -> {:.2}",
                names.get(i).map_or("?", String::as_str),
                self.committed.get(i).copied().unwrap_or(f32::NAN),
                self.weights[i]
            ),
            _ => format!("weights of {} streams", moved.len()),
        }
    }

    fn remember(&mut self, ds: &Dataset) {
        if let Err(e) = ds.set_working_weights(&self.terms()) {
            self.error = Some(format!("the weights could not be remembered: {e}"));
        }
    }

    /// Ctrl+Z / Ctrl+Shift+Z while this tab is shown. Returns what the status line says.
    pub fn undo_redo(&mut self, ds: &Dataset, undo: bool) -> String {
        // A drag still held is a step of its own: undo takes it back first.
        self.commit(ds, None);
        let h = &mut self.history;
        let (from, to) = if undo {
            (&mut h.undo, &mut h.redo)
        } else {
            (&mut h.redo, &mut h.undo)
        };
        let Some(edit) = from.pop() else {
            return format!(
                "no weight change to {} (label changes: {} in the Label tab)",
                if undo { "undo" } else { "redo" },
                if undo { "Ctrl+Z" } else { "Ctrl+Shift+Z" }
            );
        };
        self.weights = if undo {
            edit.before.clone()
        } else {
            edit.after.clone()
        };
        let said = format!("{} {}", if undo { "undid" } else { "redid" }, edit.what);
        to.push(edit);
        self.committed = self.weights.clone();
        self.remember(ds);
        self.recompute();
        said
    }

    /// The figures' reference: the compared preset's weights through the same engine call as
    /// the live figures, or equal weights.
    fn refresh_baseline(&mut self) {
        self.baseline = None;
        let Some(f) = &self.fusion else { return };
        let names = f.stream_names();
        let weights = match &self.compare {
            Some(p) => {
                let (w, matched) = weights_from_terms(names, &p.terms);
                if matched == 0 {
                    return;
                }
                w
            }
            None => weights_or_equal(names, &[]),
        };
        if let Ok(m) = f
            .fused(&weights)
            .and_then(|p| evaluate(&p, f.classes(), f.labels()))
        {
            self.baseline = Some(Baseline {
                top1: m.top1,
                mean_class_accuracy: m.mean_class_accuracy,
            });
        }
    }

    /// What a preset means for this fusion, in words: streams it names that are gone from the
    /// dataset or not in this fusion, and streams here that it does not weigh (set to 0).
    fn preset_notes(&self, p: &LoadedPreset) -> Option<String> {
        let names = self
            .fusion
            .as_ref()
            .map(|f| f.stream_names())
            .unwrap_or(&[]);
        let mut notes = Vec::new();
        if !p.missing.is_empty() {
            notes.push(format!(
                "not in the dataset any more: {}",
                p.missing.join(", ")
            ));
        }
        let elsewhere: Vec<&str> = p
            .terms
            .iter()
            .filter(|t| !t.parts.is_empty() || !names.contains(&t.name))
            .map(|t| t.name.as_str())
            .collect();
        if !elsewhere.is_empty() {
            notes.push(format!("not sliders here: {}", elsewhere.join(", ")));
        }
        let unweighed: Vec<&str> = names
            .iter()
            .filter(|n| !p.terms.iter().any(|t| t.parts.is_empty() && &t.name == *n))
            .map(String::as_str)
            .collect();
        if !unweighed.is_empty() {
            notes.push(format!(
                "not in the preset (weight 0): {}",
                unweighed.join(", ")
            ));
        }
        (!notes.is_empty()).then(|| format!("preset '{}': {}", p.info.name, notes.join("; ")))
    }

    fn refresh_presets(&mut self, ds: &Dataset) {
        match ds.presets() {
            Ok(p) => self.presets = p,
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Compares the figures with `name` (or equal weights) without touching the sliders.
    fn choose_compare(&mut self, ds: &Dataset, name: Option<&str>) {
        self.confirm_delete = false;
        self.notice = None;
        self.compare = match name {
            None => None,
            Some(n) => match ds.load_preset(n) {
                Ok(p) => {
                    self.notice = self.preset_notes(&p);
                    Some(p)
                }
                Err(e) => {
                    self.error = Some(e.to_string());
                    self.refresh_presets(ds);
                    None
                }
            },
        };
        self.refresh_baseline();
    }

    /// Sets the sliders to a saved preset as one undo step and remembers it as the last loaded.
    pub fn load_preset(&mut self, ds: &Dataset, name: &str) {
        self.choose_compare(ds, Some(name));
        let Some(p) = &self.compare else { return };
        let Some(f) = &self.fusion else { return };
        let (w, matched) = weights_from_terms(f.stream_names(), &p.terms);
        if matched == 0 {
            self.error = Some(format!(
                "preset '{name}' weighs none of this split's streams; the sliders are unchanged"
            ));
            return;
        }
        self.edit_weights(ds, w, format!("load preset '{name}'"));
        if let Err(e) = ds.set_last_preset(Some(name)) {
            self.error = Some(e.to_string());
        }
    }

    /// Saves the current weights under the typed name; an existing name needs the button that
    /// says "Overwrite".
    fn save_preset(&mut self, ds: &mut Dataset) {
        self.commit(ds, None);
        let name = self.preset_name.trim().to_string();
        let mode = if self.presets.iter().any(|p| p.name == name) {
            SaveMode::Overwrite
        } else {
            SaveMode::CreateOnly
        };
        let terms = self.terms();
        match ds.save_preset(&name, &terms, mode) {
            Ok(_) => {
                self.error = None;
                self.refresh_presets(ds);
                // The sliders are that preset now: it is the reference and the one to reopen on.
                self.choose_compare(ds, Some(&name));
                if let Err(e) = ds.set_last_preset(Some(&name)) {
                    self.error = Some(e.to_string());
                }
                self.notice = Some(format!("saved preset '{name}'"));
            }
            Err(e) => {
                // Another window may have taken the name: the list now shows it, and the button
                // reads "Overwrite".
                self.error = Some(e.to_string());
                self.refresh_presets(ds);
            }
        }
    }

    fn delete_compared(&mut self, ds: &mut Dataset) {
        self.confirm_delete = false;
        let Some(name) = self.compare.as_ref().map(|p| p.info.name.clone()) else {
            return;
        };
        match ds.delete_preset(&name) {
            Ok(()) => self.notice = Some(format!("deleted preset '{name}'")),
            Err(e) => self.error = Some(e.to_string()),
        }
        self.compare = None;
        self.refresh_presets(ds);
        self.refresh_baseline();
    }

    /// The preset row: the picker (what the figures are compared with), load, delete, and
    /// saving the sliders under a name.
    fn presets_ui(&mut self, ui: &mut egui::Ui, ds: &mut Dataset) {
        let current = self.compare.as_ref().map(|p| p.info.name.clone());
        let mut pick: Option<Option<String>> = None;
        let mut load = false;
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("compare with")
                .selected_text(current.as_deref().unwrap_or("equal weights"))
                .show_ui(ui, |ui| {
                    if ui
                        .selectable_label(current.is_none(), "equal weights")
                        .clicked()
                    {
                        pick = Some(None);
                    }
                    for p in &self.presets {
                        let r = ui
                            .selectable_label(current.as_deref() == Some(&p.name), &p.name)
                            .on_hover_text(format!("saved {} UTC", format_utc(p.updated_ms)));
                        if r.clicked() {
                            pick = Some(Some(p.name.clone()));
                        }
                    }
                });
            if current.is_some() {
                load = ui
                    .button("Load")
                    .on_hover_text("set the sliders to this preset (one undo step)")
                    .clicked();
                if ui.button("Delete…").clicked() {
                    self.confirm_delete = true;
                }
            }
        });
        if let Some(p) = pick {
            self.choose_compare(ds, p.as_deref());
        }
        if let (true, Some(name)) = (load, &current) {
            self.load_preset(ds, name);
        }
        if let (true, Some(name)) = (self.confirm_delete, &current) {
            ui.horizontal(|ui| {
                ui.label(format!("Delete preset '{name}' from the dataset?"));
                if ui.button("Delete").clicked() {
                    self.delete_compared(ds);
                }
                if ui.button("Keep").clicked() {
                    self.confirm_delete = false;
                }
            });
        }
        ui.horizontal(|ui| {
            let label = ui.label("Preset name");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.preset_name)
                        .hint_text("e.g. best-kfold")
                        .desired_width(140.0),
                )
                .labelled_by(label.id);
            let name = self.preset_name.trim().to_string();
            let exists = self.presets.iter().any(|p| p.name == name);
            let text = if exists {
                format!("Overwrite '{name}'")
            } else {
                "Save preset".to_string()
            };
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let clicked = ui
                .add_enabled(!name.is_empty(), egui::Button::new(text))
                .on_hover_text("save the sliders' weights in the dataset under this name")
                .clicked();
            // Enter saves a new name; replacing a saved preset takes the explicit button.
            if clicked || (enter && !exists && !name.is_empty()) {
                self.save_preset(ds);
            }
        });
        if let Some(n) = &self.notice {
            ui.weak(n);
        }
    }

    /// The undo and redo buttons, each saying which step it takes.
    fn history_ui(&mut self, ui: &mut egui::Ui, ds: &Dataset) {
        let undo = self.history.undo.last().map(|e| e.what.clone());
        let redo = self.history.redo.last().map(|e| e.what.clone());
        let mut said = None;
        ui.horizontal(|ui| {
            let r = ui
                .add_enabled(undo.is_some(), egui::Button::new("Undo"))
                .on_hover_text(undo.map_or("no weight change to undo".into(), |w| {
                    format!("undo {w} (Ctrl+Z)")
                }));
            if r.clicked() {
                said = Some(self.undo_redo(ds, true));
            }
            let r = ui
                .add_enabled(redo.is_some(), egui::Button::new("Redo"))
                .on_hover_text(redo.map_or("no weight change to redo".into(), |w| {
                    format!("redo {w} (Ctrl+Shift+Z)")
                }));
            if r.clicked() {
                said = Some(self.undo_redo(ds, false));
            }
        });
        if let Some(s) = said {
            self.notice = Some(s);
        }
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

    /// The current weight of each stream, by name (what the Predictions tab fuses with).
    pub fn weights_by_stream(&self) -> HashMap<String, f32> {
        self.fusion
            .as_ref()
            .map(|f| {
                f.stream_names()
                    .iter()
                    .cloned()
                    .zip(self.weights.iter().copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The fused prediction of every clip of the panel's split under the current weights
    /// (what the sample browser filters on); empty without streams.
    pub fn predictions_by_clip(&self) -> HashMap<String, u32> {
        let Some(f) = &self.fusion else {
            return HashMap::new();
        };
        match f.predict(&self.weights) {
            Ok(p) => f.clip_ids().iter().cloned().zip(p).collect(),
            Err(_) => HashMap::new(),
        }
    }

    /// The clips of one of the engine's review queues under the current weights, in its order
    /// (most worth a look first), or why there is none.
    pub fn queue_order(
        &self,
        kind: QueueKind,
        class_names: &[String],
    ) -> Result<Vec<String>, String> {
        let f = self
            .fusion
            .as_ref()
            .ok_or("no score streams over this split (the Ensemble tab shows what is loaded)")?;
        queue::rank(kind, f, &self.weights, None, Some(class_names))
            .map(|q| q.into_iter().map(|e| e.clip_id).collect())
            .map_err(|e| e.to_string())
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
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        ds: &mut Dataset,
        tax: &Taxonomy,
    ) -> Option<CellFilter> {
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
        self.presets_ui(ui, ds);
        self.history_ui(ui, ds);
        let mut changed = false;
        let mut held = false;
        for (i, n) in names.iter().enumerate() {
            ui.horizontal(|ui| {
                let r = ui.add(
                    egui::Slider::new(&mut self.weights[i], 0.0..=1.0)
                        .text(n)
                        // A loaded weight outside the rail stays as loaded, not silently clamped.
                        .clamping(egui::SliderClamping::Edits)
                        // A typed number is one edit when it is entered, not one per keystroke.
                        .update_while_editing(false),
                );
                changed |= r.changed();
                // From press to release (on the rail or the number) the drag is one gesture.
                held |= r.is_pointer_button_down_on() || r.dragged();
            });
        }
        if changed {
            self.recompute();
        }
        if !held {
            self.commit(ds, None);
        }
        if let Some(w) = self.search_ui(ui) {
            self.edit_weights(ds, w, "apply the searched weights".into());
        }
        let Some(m) = &self.metrics else { return None };
        let against = match &self.compare {
            Some(p) => format!("vs '{}'", p.info.name),
            None => "vs equal weights".into(),
        };
        let delta = |now: f64, then: Option<f64>| match then {
            Some(t) => format!("{:+.2} pts {against}", (now - t) * 100.0),
            None => format!("no figures {against}: it weighs none of these streams"),
        };
        ui.strong(format!(
            "top-1 {:.2} % ({})",
            m.top1 * 100.0,
            delta(m.top1, self.baseline.as_ref().map(|b| b.top1))
        ));
        ui.strong(format!(
            "mean class acc {:.2} % ({})",
            m.mean_class_accuracy * 100.0,
            delta(
                m.mean_class_accuracy,
                self.baseline.as_ref().map(|b| b.mean_class_accuracy)
            )
        ));
        ui.weak(format!("on {} labelled clips", m.n));
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
                    "truth {t} {} -> predicted {p} {}: {} clips",
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

/// Weights for `names` from preset terms, matched by stream name; a stream the terms do not
/// weigh gets 0, since it took no part in that ensemble. Also returns how many matched.
fn weights_from_terms(names: &[String], terms: &[PresetTerm]) -> (Vec<f32>, usize) {
    let mut matched = 0;
    let w = names
        .iter()
        .map(
            |n| match terms.iter().find(|t| t.parts.is_empty() && &t.name == n) {
                Some(t) => {
                    matched += 1;
                    t.weight
                }
                None => 0.0,
            },
        )
        .collect();
    (w, matched)
}

/// `weights_from_terms`, or equal weights when none of the terms is here.
fn weights_or_equal(names: &[String], terms: &[PresetTerm]) -> Vec<f32> {
    match weights_from_terms(names, terms) {
        (w, m) if m > 0 => w,
        _ => vec![1.0 / names.len().max(1) as f32; names.len()],
    }
}
