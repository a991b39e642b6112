//! The Ensemble tab: one weight slider per stored stream or composite (a composite, such as
//! MM-Gesture's RGBPose model = 0.5·rgb head + 0.5·pose head, has its outer slider and one
//! inner slider per part), live validation top-1 and mean class accuracy with their change
//! against a saved preset (or equal weights), per-class accuracy bars and the confusion matrix;
//! clicking a matrix cell filters the sample browser to those clips. Presets are saved in the
//! dataset with their composites; the weights have an undo history in which one slider drag
//! (outer or inner), one keyboard or typed edit, one preset load, one grouping and one
//! application of searched weights are one step each. The working weights and the last loaded
//! preset are written to the dataset at every step, so closing the window loses no tuning.
//!
//! Composites come in two ways: a preset (or the remembered working weights) that has them, and
//! the "Group" action the tab offers for stored streams named `NAME.HEAD` — what
//! `mgscope predict --register NAME` and a dropped RGBPose dump store, `NAME.rgb` and
//! `NAME.pose`. Grouping and ungrouping keep the fused scores as they were.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot};

use crate::dataset::{Split, Taxonomy};
use crate::ensemble::fusion::Fusion;
use crate::ensemble::metrics::{argmax, evaluate, Metrics};
use crate::ensemble::queue::{self, QueueKind};
use crate::ensemble::search::{grid_size, kfold, Control, KFoldReport, Method, Objective};
use crate::ensemble::stream::{CompositeStream, ScoreStream, Stream};
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

/// Indent of a composite's inner sliders under its outer one.
const INNER_INDENT: f32 = 18.0;

/// One undo step: every term before and after, so a step that changed the grouping (a preset
/// of another layout, "Group", "Ungroup") is taken back with its weights.
#[derive(Debug, Clone, PartialEq)]
struct WeightEdit {
    before: Vec<PresetTerm>,
    after: Vec<PresetTerm>,
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
    /// The terms (layout and inner weights) the running or last search tuned outer weights for.
    searched_on: Vec<PresetTerm>,
    /// The split's clips and labels: what a fusion for another layout is built on.
    clips: Vec<String>,
    labels: Vec<Option<u32>>,
    /// The stored streams with the taxonomy's class count that score every clip of the split,
    /// in stored order: what sliders and composites are made of.
    available: Vec<ScoreStream>,
    /// Stored streams of the right class count left out for missing clips of the split.
    uncovered: Vec<String>,
    fusion: Option<Fusion>,
    /// The fusion's inputs in its order, one per outer slider; a composite holds its inner
    /// weights, so moving one re-aligns that input alone.
    inputs: Vec<Stream>,
    /// The outer weights, in the fusion's order.
    weights: Vec<f32>,
    metrics: Option<Metrics>,
    baseline: Option<Baseline>,
    error: Option<String>,
    split: Option<Split>,
    /// The dataset the panel was built for: reloading the same one (another split, new
    /// streams) keeps the weights and, while the layout is the same, their history.
    root: Option<PathBuf>,
    /// The terms as of the last undo step; the sliders differ from them only while a slider
    /// gesture is still open.
    committed: Vec<PresetTerm>,
    history: WeightHistory,
    presets: Vec<PresetInfo>,
    /// The preset the figures are compared with.
    compare: Option<LoadedPreset>,
    preset_name: String,
    confirm_delete: bool,
    /// What the last preset action found worth saying (streams a preset lacks or names).
    notice: Option<String>,
}

/// The split's clips and labels, the streams that can take part, and those that cannot
/// because they miss clips of the split.
type Gathered = (Vec<String>, Vec<Option<u32>>, Vec<ScoreStream>, Vec<String>);

impl EnsemblePanel {
    /// Builds the fusion of the stored streams of the taxonomy's class count over `split`.
    /// A different dataset starts afresh from what the dataset remembers (working weights, the
    /// last loaded preset); the same dataset keeps the terms by stream name.
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
        let old_terms = if self.fusion.is_some() {
            self.terms()
        } else {
            Vec::new()
        };
        // A running search and its result belong to the old clips: dropping the job cancels it.
        self.search = None;
        self.report = None;
        self.fusion = None;
        self.inputs.clear();
        self.weights.clear();
        self.metrics = None;
        self.baseline = None;
        self.error = None;
        self.split = Some(split);
        let gather = || -> crate::Result<Gathered> {
            let classes = ds.taxonomy().len();
            let samples: Vec<_> = ds
                .samples()?
                .into_iter()
                .filter(|s| s.split == split)
                .collect();
            let clips: Vec<String> = samples.iter().map(|s| s.clip_id.clone()).collect();
            let labels = samples.iter().map(|s| s.label).collect();
            let (mut available, mut uncovered) = (Vec::new(), Vec::new());
            for n in ds.stream_names()? {
                let s = ds.load_stream(&n)?;
                if s.classes != classes {
                    continue;
                }
                let s = s.to_stream()?;
                // A stream of another split would fail the whole fusion; it is named instead.
                if s.align(&clips).is_ok() {
                    available.push(s);
                } else {
                    uncovered.push(n);
                }
            }
            Ok((clips, labels, available, uncovered))
        };
        match gather() {
            Ok((clips, labels, available, uncovered)) => {
                self.clips = clips;
                self.labels = labels;
                self.available = available;
                self.uncovered = uncovered;
            }
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        }
        if self.available.is_empty() {
            self.history.clear();
            self.committed.clear();
            return;
        }
        let names = self.available_names();
        let terms = if old_terms.is_empty() {
            self.history.clear();
            self.restore_terms(ds, &names)
        } else {
            let a = arrange(&names, &old_terms);
            let terms = if a.matched > 0 {
                a.terms
            } else {
                equal(&arrange(&names, &[]).terms)
            };
            if !same_layout(&old_terms, &terms) {
                // Steps are whole term lists of one layout; with other streams they mean nothing.
                self.history.clear();
            }
            terms
        };
        if let Err(e) = self.rebuild(&terms) {
            self.error = Some(e.to_string());
            return;
        }
        self.committed = self.terms();
        self.recompute();
        self.refresh_baseline();
    }

    fn available_names(&self) -> Vec<String> {
        self.available.iter().map(|s| s.name.clone()).collect()
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

    /// The terms as they were left in this dataset, else the compared preset's, else equal
    /// weights; a source that weighs none of these streams is passed over.
    fn restore_terms(&mut self, ds: &Dataset, names: &[String]) -> Vec<PresetTerm> {
        let working = match ds.working_weights() {
            Ok(w) => w.unwrap_or_default(),
            Err(e) => {
                self.notice = Some(format!("the weights last used: {e}"));
                Vec::new()
            }
        };
        let preset = self.compare.as_ref().map_or(&[][..], |p| &p.terms[..]);
        let found = [&working[..], preset]
            .into_iter()
            .map(|terms| arrange(names, terms))
            .find(|a| a.matched > 0);
        found.map_or_else(|| equal(&arrange(names, &[]).terms), |a| a.terms)
    }

    /// The fusion inputs for arranged terms, from the available streams.
    fn inputs_for(&self, terms: &[PresetTerm]) -> crate::Result<Vec<Stream>> {
        let find = |n: &str| {
            self.available
                .iter()
                .find(|s| s.name == n)
                .cloned()
                .ok_or_else(|| crate::Error::NotFound(format!("score stream {n:?}")))
        };
        terms
            .iter()
            .map(|t| {
                if t.parts.is_empty() {
                    return Ok(Stream::Single(find(&t.name)?));
                }
                let parts = t
                    .parts
                    .iter()
                    .map(|(n, w)| Ok((find(n)?, *w)))
                    .collect::<crate::Result<Vec<_>>>()?;
                Ok(Stream::Composite(CompositeStream::new(
                    t.name.clone(),
                    parts,
                )?))
            })
            .collect()
    }

    /// A new fusion for `terms` (arranged); the panel is unchanged when it cannot be built.
    fn rebuild(&mut self, terms: &[PresetTerm]) -> crate::Result<()> {
        let inputs = self.inputs_for(terms)?;
        let fusion = Fusion::from_streams(self.clips.clone(), self.labels.clone(), &inputs)?;
        self.fusion = Some(fusion);
        self.inputs = inputs;
        self.weights = terms.iter().map(|t| t.weight).collect();
        Ok(())
    }

    /// Moves inner weight `part` of composite `term`: that input alone is re-aligned through
    /// the engine, so the figures during a drag are the engine's for the weights shown.
    fn set_inner(&mut self, term: usize, part: usize, w: f32) -> crate::Result<()> {
        let Some(Stream::Composite(c)) = self.inputs.get_mut(term) else {
            return Ok(());
        };
        if c.parts.get(part).is_some_and(|(_, old)| *old == w) {
            return Ok(());
        }
        c.set_weight(part, w)?;
        if let (Some(f), Some(input)) = (self.fusion.as_mut(), self.inputs.get(term)) {
            f.set_stream(term, input)?;
        }
        Ok(())
    }

    /// Makes `terms` (arranged over the available streams) the sliders: within one layout only
    /// the moved weights change; another layout gets its own fusion and its own equal-weights
    /// reference.
    fn adopt(&mut self, terms: &[PresetTerm]) {
        let r = if self.fusion.is_some() && same_layout(&self.terms(), terms) {
            terms.iter().enumerate().try_for_each(|(i, t)| {
                self.weights[i] = t.weight;
                t.parts
                    .iter()
                    .enumerate()
                    .try_for_each(|(k, (_, w))| self.set_inner(i, k, *w))
            })
        } else {
            self.rebuild(terms).map(|()| self.refresh_baseline())
        };
        if let Err(e) = r {
            self.error = Some(e.to_string());
        }
        self.recompute();
    }

    /// The search button runs: a 0.05 grid while it stays small, coordinate ascent with
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
                self.searched_on = self.terms();
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
        let composites = self
            .inputs
            .iter()
            .any(|s| matches!(s, Stream::Composite(_)));
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
                if composites {
                    ui.weak("outer weights only; inner weights stay as set");
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
                // Tuned outer weights mean something only for the composites they were tuned
                // with.
                let still = self.sliders_are(&self.searched_on, false);
                if r.tuned.stream_names.len() == self.weights.len() {
                    let b = ui
                        .add_enabled(still, egui::Button::new("Apply the tuned weights"))
                        .on_disabled_hover_text(
                            "the grouping or inner weights changed since the search: search again",
                        );
                    if b.clicked() {
                        apply = Some(r.tuned.weights.clone());
                    }
                }
            }
            Some(Err(e)) => {
                ui.colored_label(egui::Color32::from_rgb(230, 110, 90), e);
            }
            None => {}
        }
        apply
    }

    /// The split the figures are over.
    pub fn split(&self) -> Option<Split> {
        self.split
    }

    pub fn top1(&self) -> Option<f64> {
        self.metrics.as_ref().map(|m| m.top1)
    }

    /// The outer weights, one per slider group, in the fusion's order.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// The inner weights of composite `name`, in part order.
    pub fn inner_weights(&self, name: &str) -> Option<Vec<(String, f32)>> {
        self.inputs.iter().find_map(|s| match s {
            Stream::Composite(c) if c.name == name => {
                Some(c.parts.iter().map(|(p, w)| (p.name.clone(), *w)).collect())
            }
            _ => None,
        })
    }

    /// How many steps Ctrl+Z can take back.
    pub fn undo_depth(&self) -> usize {
        self.history.undo.len()
    }

    /// The preset the figures are compared with.
    pub fn compared_preset(&self) -> Option<&str> {
        self.compare.as_ref().map(|p| p.info.name.as_str())
    }

    /// The sliders as preset terms: streams by name, composites with their parts' weights.
    pub fn terms(&self) -> Vec<PresetTerm> {
        self.inputs
            .iter()
            .zip(&self.weights)
            .map(|(s, &weight)| match s {
                Stream::Single(x) => PresetTerm::stream(x.name.clone(), weight),
                Stream::Composite(c) => PresetTerm {
                    name: c.name.clone(),
                    weight,
                    parts: c.parts.iter().map(|(p, w)| (p.name.clone(), *w)).collect(),
                },
            })
            .collect()
    }

    /// Whether the sliders are `terms` (with `outer`, the outer weights too; else only the
    /// layout and the inner weights), compared in place: this runs every frame.
    fn sliders_are(&self, terms: &[PresetTerm], outer: bool) -> bool {
        self.inputs.len() == terms.len()
            && self
                .inputs
                .iter()
                .zip(&self.weights)
                .zip(terms)
                .all(|((s, &w), t)| {
                    (!outer || w == t.weight)
                        && match s {
                            Stream::Single(x) => x.name == t.name && t.parts.is_empty(),
                            Stream::Composite(c) => {
                                c.name == t.name
                                    && c.parts.len() == t.parts.len()
                                    && c.parts
                                        .iter()
                                        .zip(&t.parts)
                                        .all(|((p, pw), (n, tw))| p.name == *n && pw == tw)
                            }
                        }
                })
    }

    /// Closes the open step: the weights since the last step become one undo entry, and the
    /// dataset remembers them.
    fn commit(&mut self, ds: &Dataset, what: Option<String>) {
        if self.sliders_are(&self.committed, true) {
            return;
        }
        let now = self.terms();
        let what = what.unwrap_or_else(|| describe_change(&self.committed, &now));
        self.history.push(WeightEdit {
            before: std::mem::replace(&mut self.committed, now.clone()),
            after: now,
            what,
        });
        self.remember(ds);
    }

    /// Replaces all outer weights as one step (searched weights, a test's edit).
    pub fn edit_weights(&mut self, ds: &Dataset, weights: Vec<f32>, what: String) {
        if weights.len() != self.weights.len() {
            return;
        }
        self.commit(ds, None);
        self.weights = weights;
        self.commit(ds, Some(what));
        self.recompute();
    }

    /// Replaces every term, grouping included, as one step; `terms` are laid over the
    /// available streams first, so a stream takes part once whatever they say.
    fn edit_terms(&mut self, ds: &Dataset, terms: &[PresetTerm], what: String) {
        self.commit(ds, None);
        let arranged = arrange(&self.available_names(), terms);
        self.adopt(&arranged.terms);
        self.commit(ds, Some(what));
    }

    /// Plain streams that are heads of one model, by the name `mgscope predict --register`
    /// gives them (`NAME.rgb`, `NAME.pose`): two or more `NAME.*` whose NAME is free.
    fn groupable(&self) -> Vec<(String, Vec<String>)> {
        let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for s in &self.inputs {
            if let Stream::Single(x) = s {
                if let Some((model, head)) = x.name.rsplit_once('.') {
                    if !model.is_empty() && !head.is_empty() {
                        by.entry(model).or_default().push(x.name.clone());
                    }
                }
            }
        }
        let taken = |n: &str| {
            self.available.iter().any(|s| s.name == n) || self.inputs.iter().any(|s| s.name() == n)
        };
        by.into_iter()
            .filter(|(model, heads)| heads.len() >= 2 && !taken(model))
            .map(|(model, heads)| (model.to_string(), heads))
            .collect()
    }

    /// Groups plain streams into composite `name` as one step. The outer weight is their sum
    /// and the inner weights their shares, so the fused scores stay what they were; streams
    /// that weigh nothing (or less) start equal inside.
    pub fn group(&mut self, ds: &Dataset, name: &str, parts: &[String]) {
        let mut terms = self.terms();
        let weight_of = |n: &String| {
            terms
                .iter()
                .find(|t| t.parts.is_empty() && &t.name == n)
                .map_or(0.0, |t| t.weight)
        };
        let ws: Vec<f32> = parts.iter().map(weight_of).collect();
        let total: f32 = ws.iter().sum();
        let proportional = total > 0.0 && ws.iter().all(|w| *w >= 0.0);
        let sub = |w: f32| {
            if proportional {
                w / total
            } else {
                1.0 / parts.len().max(1) as f32
            }
        };
        let composite = PresetTerm {
            name: name.to_string(),
            weight: total.max(0.0),
            parts: parts
                .iter()
                .zip(&ws)
                .map(|(n, w)| (n.clone(), sub(*w)))
                .collect(),
        };
        terms.retain(|t| !(t.parts.is_empty() && parts.contains(&t.name)));
        terms.push(composite);
        self.edit_terms(
            ds,
            &terms,
            format!("group {} as '{name}'", parts.join(" + ")),
        );
    }

    /// Splits composite `name` into plain streams weighing outer × inner (the same fused
    /// scores), as one step.
    pub fn ungroup(&mut self, ds: &Dataset, name: &str) {
        let mut terms = self.terms();
        let Some(i) = terms
            .iter()
            .position(|t| t.name == name && !t.parts.is_empty())
        else {
            return;
        };
        let t = terms.remove(i);
        terms.extend(
            t.parts
                .iter()
                .map(|(n, w)| PresetTerm::stream(n.clone(), t.weight * w)),
        );
        self.edit_terms(ds, &terms, format!("ungroup '{name}'"));
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
        let terms = if undo {
            edit.before.clone()
        } else {
            edit.after.clone()
        };
        let said = format!("{} {}", if undo { "undid" } else { "redid" }, edit.what);
        to.push(edit);
        // The history is cleared whenever the available streams change, so its terms are
        // laid out over the streams there are.
        self.adopt(&terms);
        self.committed = self.terms();
        self.remember(ds);
        said
    }

    /// The engine's figures for `terms`: through the sliders' fusion when the layout and inner
    /// weights are its own, else through a fusion built for them.
    fn figures_for(&self, terms: &[PresetTerm]) -> crate::Result<Metrics> {
        let Some(f) = &self.fusion else {
            return Err(crate::Error::Invalid("no score streams".into()));
        };
        let w: Vec<f32> = terms.iter().map(|t| t.weight).collect();
        if self.sliders_are(terms, false) {
            return Ok(evaluate(&f.fused(&w)?, f.classes(), f.labels())?);
        }
        let other = Fusion::new(
            self.clips.clone(),
            self.labels.clone(),
            self.inputs_for(terms)?,
        )?;
        Ok(evaluate(
            &other.fused(&w)?,
            other.classes(),
            other.labels(),
        )?)
    }

    /// The figures' reference: the compared preset's terms through the engine, or every
    /// slider of this layout equal (and the parts of each composite equal).
    fn refresh_baseline(&mut self) {
        self.baseline = None;
        if self.fusion.is_none() {
            return;
        }
        let terms = match &self.compare {
            Some(p) => {
                let a = arrange(&self.available_names(), &p.terms);
                if a.matched == 0 {
                    return;
                }
                a.terms
            }
            None => equal(&self.terms()),
        };
        match self.figures_for(&terms) {
            Ok(m) => {
                self.baseline = Some(Baseline {
                    top1: m.top1,
                    mean_class_accuracy: m.mean_class_accuracy,
                })
            }
            Err(e) => self.notice = Some(format!("no reference figures: {e}")),
        }
    }

    /// What a preset means for these sliders, in words: streams it names that are gone from
    /// the dataset, terms that cannot be sliders here, and streams it does not weigh (set
    /// to 0).
    fn preset_notes(&self, p: &LoadedPreset) -> Option<String> {
        let names = self.available_names();
        let arranged = arrange(&names, &p.terms);
        let mut notes = Vec::new();
        if !p.missing.is_empty() {
            notes.push(format!(
                "not in the dataset any more: {}",
                p.missing.join(", ")
            ));
        }
        if !arranged.skipped.is_empty() {
            notes.push(format!("not sliders here: {}", arranged.skipped.join(", ")));
        }
        let named: HashSet<&str> = p.terms.iter().flat_map(PresetTerm::streams).collect();
        let unweighed: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !named.contains(n))
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

    /// Sets the sliders to a saved preset, its composites included, as one undo step and
    /// remembers it as the last loaded.
    pub fn load_preset(&mut self, ds: &Dataset, name: &str) {
        self.choose_compare(ds, Some(name));
        let Some(p) = &self.compare else { return };
        if self.fusion.is_none() {
            return;
        }
        let arranged = arrange(&self.available_names(), &p.terms);
        if arranged.matched == 0 {
            self.error = Some(format!(
                "preset '{name}' weighs none of this split's streams; the sliders are unchanged"
            ));
            return;
        }
        self.edit_terms(ds, &arranged.terms, format!("load preset '{name}'"));
        if let Err(e) = ds.set_last_preset(Some(name)) {
            self.error = Some(e.to_string());
        }
    }

    /// Saves the current terms under the typed name; an existing name needs the button that
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

    /// The weight each stored stream has in the fusion, by name (what the Predictions tab
    /// fuses with): a composite's part weighs outer × inner.
    pub fn weights_by_stream(&self) -> HashMap<String, f32> {
        let mut out = HashMap::new();
        for (s, &w) in self.inputs.iter().zip(&self.weights) {
            match s {
                Stream::Single(x) => {
                    out.insert(x.name.clone(), w);
                }
                Stream::Composite(c) => {
                    for (p, inner) in &c.parts {
                        out.insert(p.name.clone(), w * inner);
                    }
                }
            }
        }
        out
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
        if self.fusion.is_none() {
            ui.weak(format!(
                "No stored stream with {} classes covers this split. Drop score files (.pkl, \
                 .csv, .npy) on the window or use \"Import scores…\"; `mgscope ensemble DATASET \
                 --stream NAME=FILE` and `mgscope predict --register` store them too.",
                tax.len()
            ));
            if !self.uncovered.is_empty() {
                ui.weak(format!(
                    "Streams without scores for every clip of this split: {}",
                    self.uncovered.join(", ")
                ));
            }
            return None;
        }
        self.presets_ui(ui, ds);
        self.history_ui(ui, ds);
        let mut changed = false;
        let mut held = false;
        let mut inner_moves = Vec::new();
        let mut ungroup = None;
        for i in 0..self.inputs.len() {
            let (name, parts): (String, Vec<(String, f32)>) = match &self.inputs[i] {
                Stream::Single(s) => (s.name.clone(), Vec::new()),
                Stream::Composite(c) => (
                    c.name.clone(),
                    c.parts.iter().map(|(p, w)| (p.name.clone(), *w)).collect(),
                ),
            };
            let mut rows = |ui: &mut egui::Ui| {
                ui.horizontal(|ui| {
                    let r = ui.add(weight_slider(&mut self.weights[i], &name));
                    changed |= r.changed();
                    // From press to release (on the rail or the number) the drag is one gesture.
                    held |= r.is_pointer_button_down_on() || r.dragged();
                    if !parts.is_empty()
                        && ui
                            .small_button("Ungroup")
                            .on_hover_text(format!(
                                "make the parts of '{name}' separate sliders (outer × inner each; one undo step)"
                            ))
                            .clicked()
                    {
                        ungroup = Some(name.clone());
                    }
                });
                for (k, (part, w)) in parts.iter().enumerate() {
                    let mut v = *w;
                    ui.horizontal(|ui| {
                        ui.add_space(INNER_INDENT);
                        let r = ui
                            .add(weight_slider(&mut v, part))
                            .on_hover_text(format!("inner weight of '{part}' in '{name}'"));
                        if r.changed() && v != *w {
                            inner_moves.push((i, k, v));
                        }
                        held |= r.is_pointer_button_down_on() || r.dragged();
                    });
                }
            };
            if parts.is_empty() {
                rows(ui);
            } else {
                ui.group(rows);
            }
        }
        for (i, k, w) in inner_moves {
            match self.set_inner(i, k, w) {
                Ok(()) => changed = true,
                Err(e) => self.error = Some(e.to_string()),
            }
        }
        if changed {
            self.recompute();
        }
        if !held {
            self.commit(ds, None);
        }
        if let Some(name) = ungroup {
            self.ungroup(ds, &name);
        }
        for (model, heads) in self.groupable() {
            ui.horizontal(|ui| {
                ui.weak(format!(
                    "{} look like heads of one model",
                    heads.join(" + ")
                ));
                if ui
                    .small_button(format!("Group as '{model}'"))
                    .on_hover_text(
                        "one outer slider and an inner slider per head; the fused scores stay \
                         as they are (one undo step)",
                    )
                    .clicked()
                {
                    self.group(ds, &model, &heads);
                }
            });
        }
        if !self.uncovered.is_empty() {
            ui.weak(format!(
                "not sliders: {} (no scores for every {} clip)",
                self.uncovered.join(", "),
                self.split.map_or("", Split::as_str)
            ));
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

/// A weight on a 0–1 rail.
fn weight_slider<'a>(w: &'a mut f32, name: &str) -> egui::Slider<'a> {
    egui::Slider::new(w, 0.0..=1.0)
        .text(name)
        // A loaded weight outside the rail stays as loaded, not silently clamped.
        .clamping(egui::SliderClamping::Edits)
        // A typed number is one edit when it is entered, not one per keystroke.
        .update_while_editing(false)
}

/// The engine writes a plain stream as the composite `[(name, 1.0)]`; it is the stream.
fn is_plain(t: &PresetTerm) -> bool {
    t.parts.is_empty() || matches!(&t.parts[..], [(n, w)] if *n == t.name && *w == 1.0)
}

/// Terms laid over the available streams.
#[derive(Debug, PartialEq)]
struct Arranged {
    /// One term per slider group, every available stream in exactly one of them, ordered by
    /// their first stream's place among the available ones.
    terms: Vec<PresetTerm>,
    /// How many of the given terms were taken.
    matched: usize,
    /// Terms left out: a stream that is not here or already taken, a composite named like a
    /// stream or another term.
    skipped: Vec<String>,
}

/// Lays `terms` over the `available` streams (stored order): each stream takes part once, as a
/// plain term or as a part of the first composite naming it. A stream no term weighs becomes a
/// plain term of weight 0, since it took no part in that ensemble. The order follows the
/// streams, so one layout has one order however its terms were written (the undo history and
/// the outer weights' order rely on it).
fn arrange(available: &[String], terms: &[PresetTerm]) -> Arranged {
    let here: HashSet<&str> = available.iter().map(String::as_str).collect();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut kept: Vec<PresetTerm> = Vec::new();
    let mut skipped = Vec::new();
    for t in terms {
        if is_plain(t) {
            if here.contains(t.name.as_str()) && !owner.contains_key(t.name.as_str()) {
                owner.insert(&t.name, kept.len());
                kept.push(PresetTerm::stream(t.name.clone(), t.weight));
            } else {
                skipped.push(t.name.clone());
            }
            continue;
        }
        let mut parts = HashSet::new();
        let free = t.parts.iter().all(|(n, _)| {
            here.contains(n.as_str()) && !owner.contains_key(n.as_str()) && parts.insert(n)
        });
        let name_free = !here.contains(t.name.as_str()) && !kept.iter().any(|k| k.name == t.name);
        if free && name_free {
            for (n, _) in &t.parts {
                owner.insert(n, kept.len());
            }
            kept.push(t.clone());
        } else {
            skipped.push(t.name.clone());
        }
    }
    let matched = kept.len();
    let mut placed = vec![false; kept.len()];
    let mut out = Vec::with_capacity(available.len());
    for n in available {
        match owner.get(n.as_str()) {
            Some(&k) if !placed[k] => {
                placed[k] = true;
                out.push(kept[k].clone());
            }
            Some(_) => {}
            None => out.push(PresetTerm::stream(n.clone(), 0.0)),
        }
    }
    Arranged {
        terms: out,
        matched,
        skipped,
    }
}

/// Every term of this layout weighing alike, and the parts of each composite alike (for a
/// two-head model, MM-Gesture's 0.5 / 0.5).
fn equal(terms: &[PresetTerm]) -> Vec<PresetTerm> {
    let w = 1.0 / terms.len().max(1) as f32;
    terms
        .iter()
        .map(|t| PresetTerm {
            name: t.name.clone(),
            weight: w,
            parts: t
                .parts
                .iter()
                .map(|(n, _)| (n.clone(), 1.0 / t.parts.len() as f32))
                .collect(),
        })
        .collect()
}

/// The same terms made of the same streams, whatever the weights.
fn same_layout(a: &[PresetTerm], b: &[PresetTerm]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.parts.len() == y.parts.len()
                && x.parts.iter().zip(&y.parts).all(|(p, q)| p.0 == q.0)
        })
}

/// "weight of 'rgb' 0.50 -> 0.20", "weight of 'm.pose' in 'm' …", or how many moved.
fn describe_change(before: &[PresetTerm], after: &[PresetTerm]) -> String {
    if !same_layout(before, after) {
        return "the grouping of the streams".into();
    }
    let mut moved = Vec::new();
    for (b, a) in before.iter().zip(after) {
        if b.weight != a.weight {
            moved.push(format!(
                "weight of '{}' {:.2} -> {:.2}",
                a.name, b.weight, a.weight
            ));
        }
        for ((n, bw), (_, aw)) in b.parts.iter().zip(&a.parts) {
            if bw != aw {
                moved.push(format!(
                    "weight of '{n}' in '{}' {bw:.2} -> {aw:.2}",
                    a.name
                ));
            }
        }
    }
    match moved.len() {
        1 => moved.remove(0),
        n => format!("weights of {n} streams"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, weight: f32, parts: &[(&str, f32)]) -> PresetTerm {
        PresetTerm {
            name: name.into(),
            weight,
            parts: parts.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arrange_takes_each_stream_once_in_stream_order() {
        let here = names(&["a", "m.pose", "m.rgb", "z"]);
        let a = arrange(
            &here,
            &[
                t("z", 0.3, &[("z", 1.0)]),
                t("m", 0.5, &[("m.rgb", 0.6), ("m.pose", 0.4)]),
                // Already a part of "m": left out, and so is a stream that is not here.
                t("m.rgb", 0.9, &[]),
                t("gone", 0.9, &[]),
            ],
        );
        assert_eq!(a.matched, 2);
        assert_eq!(a.skipped, ["m.rgb", "gone"]);
        assert_eq!(
            a.terms,
            vec![
                t("a", 0.0, &[]),
                t("m", 0.5, &[("m.rgb", 0.6), ("m.pose", 0.4)]),
                t("z", 0.3, &[]),
            ]
        );
        // A composite named like a stream would give the fusion two inputs of one name.
        let b = arrange(&here, &[t("a", 1.0, &[("m.rgb", 1.0), ("m.pose", 1.0)])]);
        assert_eq!(b.matched, 0);
        assert_eq!(b.skipped, ["a"]);
        assert_eq!(b.terms.len(), 4);
    }

    #[test]
    fn equal_weights_split_each_composite_evenly() {
        let e = equal(&[t("a", 0.9, &[]), t("m", 0.1, &[("x", 0.9), ("y", 0.1)])]);
        assert_eq!(
            e,
            vec![t("a", 0.5, &[]), t("m", 0.5, &[("x", 0.5), ("y", 0.5)])]
        );
    }

    #[test]
    fn a_change_is_described_by_what_moved() {
        let before = vec![t("a", 0.5, &[]), t("m", 0.5, &[("x", 0.5), ("y", 0.5)])];
        let mut after = before.clone();
        after[1].parts[1].1 = 0.25;
        assert_eq!(
            describe_change(&before, &after),
            "weight of 'y' in 'm' 0.50 -> 0.25"
        );
        after[0].weight = 0.1;
        assert_eq!(describe_change(&before, &after), "weights of 2 streams");
        assert_eq!(
            describe_change(&before, &[t("a", 1.0, &[])]),
            "the grouping of the streams"
        );
    }
}
