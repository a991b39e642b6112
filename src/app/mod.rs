//! The desktop app (eframe/egui on wgpu). This first version is the sample browser with
//! keyboard relabeling over the durable store; the modality panes, timeline and the
//! prediction/ensemble/training tabs build on it.

mod clip_view;
mod commands;
mod ensemble_panel;
mod frame_stats;
mod panes;
mod predictions;
mod timeline;
mod training_panel;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Result;
use eframe::egui;

use crate::dataset::{Sample, Split};
use crate::store::{Dataset, Event};
use crate::util::default_author;

const LAST_DATASET_KEY: &str = "mgscope.last_dataset";
const PANES_KEY: &str = "mgscope.panes";
const RECENT_KEY: &str = "mgscope.recent";
/// Datasets kept in the Recent menu.
const RECENT_MAX: usize = 8;

/// Default place for the demo dataset the app offers on first launch.
pub fn default_demo_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mgscope").join("demo")
}

/// Opens the window. `dataset`: a dataset folder; `None` reopens the last one or offers the demo.
/// Opens the window; `checkpoint` = (architecture, file) to load into the Predictions panel.
pub fn run(dataset: Option<PathBuf>, checkpoint: Option<(String, PathBuf)>) -> Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("mgscope")
            .with_inner_size([1280.0, 800.0]),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options: eframe::egui_wgpu::WgpuConfiguration {
            // MGSCOPE_NO_VSYNC=1: present without waiting for a vertical blank (frame-time
            // measurements; X servers without vblank, such as Xvfb, otherwise pace frames).
            surface: eframe::egui_wgpu::SurfaceConfig {
                present_mode: if std::env::var("MGSCOPE_NO_VSYNC").is_ok_and(|v| v == "1") {
                    wgpu::PresentMode::AutoNoVsync
                } else {
                    wgpu::PresentMode::AutoVsync
                },
                ..eframe::egui_wgpu::SurfaceConfig::LOW_LATENCY
            },
            ..Default::default()
        },
        ..Default::default()
    };
    eframe::run_native(
        "mgscope",
        options,
        Box::new(move |cc| Ok(Box::new(MgApp::new(cc, dataset, checkpoint)))),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window: {e}"))
}

/// A score file being read and stored on a worker thread (its own connection to the dataset).
struct ScoreJob {
    file: PathBuf,
    rx: mpsc::Receiver<Result<crate::ensemble::import::Imported, String>>,
}

/// What the import dialog and the drop target take as score files.
const SCORE_EXTENSIONS: [&str; 4] = ["pkl", "pickle", "csv", "npy"];

enum DemoMsg {
    Progress(usize, usize),
    Done(Result<PathBuf, String>),
}

/// The app's state. Public so that tests can drive the real app (egui_kittest builds it through
/// [`MgApp::new`] with a wgpu renderer, as eframe does).
#[derive(Default)]
pub struct MgApp {
    dataset: Option<Dataset>,
    samples: Vec<Sample>,
    selected: Option<usize>,
    filter: String,
    split_filter: Option<Split>,
    history: Vec<Event>,
    status: String,
    error: Option<String>,
    demo_job: Option<(mpsc::Receiver<DemoMsg>, (usize, usize))>,
    score_jobs: Vec<ScoreJob>,
    /// `MGSCOPE_FRAME_STATS`: the window measures its own frame times (benches/ui.rs).
    frame_stats: Option<frame_stats::FrameStats>,
    /// Digits typed so far for a keyboard relabel (applied with Enter).
    class_entry: String,
    clip: Option<clip_view::ClipView>,
    /// The clip `clip` was opened for (also when it had no media): reopen only on a change.
    clip_for: Option<String>,
    /// A selection to apply at the next frame, where the egui context is at hand.
    pending_select: Option<usize>,
    predictions: predictions::Predictions,
    panes: panes::Panes,
    training: training_panel::TrainingPanel,
    ensemble: ensemble_panel::EnsemblePanel,
    /// The browser shows only these clips (a confusion-matrix cell).
    cell_filter: Option<ensemble_panel::CellFilter>,
    /// Filters and order that use the ensemble's predictions and the review state.
    browse: Browse,
    tab: Tab,
    timeline: timeline::Timeline,
    palette: commands::Palette,
    help_open: bool,
    /// Put the keyboard in the filter field at the next frame (it is drawn after the keys).
    focus_filter: bool,
    /// Commands that open a dialog or start a job run from `ui`, not from the key handler.
    open_dialog: bool,
    scores_dialog: bool,
    demo_requested: bool,
    /// Scroll the sample list to the selection (moved by a key, maybe off screen).
    reveal_selected: bool,
    /// The sample list's scroll offset and height at the last frame.
    list_view: (f32, f32),
    /// Datasets opened before, most recent first (kept in eframe storage).
    recent: Vec<PathBuf>,
}

/// The sample browser's filters beyond text and split. The predictions are the Ensemble tab's:
/// its streams fused with its current weights over its split (other clips have none).
#[derive(Debug, Clone, Default, PartialEq)]
struct Browse {
    order: BrowseOrder,
    /// Only clips the ensemble predicts as this class.
    predicted: Option<u32>,
    /// Only labelled clips whose ensemble prediction differs from the label.
    misclassified: bool,
    /// Only reviewed (true) or only not yet reviewed (false) clips.
    reviewed: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum BrowseOrder {
    /// The dataset's own order.
    #[default]
    Dataset,
    /// One of the engine's review queues: only its clips, most worth a look first.
    Queue(crate::ensemble::queue::QueueKind),
}

impl BrowseOrder {
    const ALL: [BrowseOrder; 5] = [
        BrowseOrder::Dataset,
        BrowseOrder::Queue(crate::ensemble::queue::QueueKind::Margin),
        BrowseOrder::Queue(crate::ensemble::queue::QueueKind::Disagreement),
        BrowseOrder::Queue(crate::ensemble::queue::QueueKind::LabelError),
        BrowseOrder::Queue(crate::ensemble::queue::QueueKind::ConfidentMistake),
    ];

    fn name(self) -> &'static str {
        use crate::ensemble::queue::QueueKind as Q;
        match self {
            BrowseOrder::Dataset => "dataset",
            BrowseOrder::Queue(Q::Margin) => "smallest margin",
            BrowseOrder::Queue(Q::Disagreement) => "streams disagree",
            BrowseOrder::Queue(Q::LabelError) => "likely label error",
            BrowseOrder::Queue(Q::ConfidentMistake) => "confident mistake",
        }
    }
}

/// What Ctrl+Z and Ctrl+Shift+Z act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UndoTarget {
    /// The label store's durable history (label, bounds, note, reviewed).
    Labels,
    /// The Ensemble tab's weight history.
    Weights,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Tab {
    #[default]
    Label,
    Predictions,
    Ensemble,
    Training,
}

impl MgApp {
    /// The app as the window starts it: the pane renderer registered with eframe's wgpu state,
    /// remembered pane settings, `dataset` (else the last one) opened.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        dataset: Option<PathBuf>,
        checkpoint: Option<(String, PathBuf)>,
    ) -> MgApp {
        let last = cc
            .storage
            .and_then(|s| s.get_string(LAST_DATASET_KEY))
            .map(PathBuf::from);
        panes::install(cc);
        let mut app = MgApp {
            frame_stats: frame_stats::FrameStats::from_env(),
            ..Default::default()
        };
        if let Some(p) = cc
            .storage
            .and_then(|s| s.get_string(PANES_KEY))
            .and_then(|j| serde_json::from_str(&j).ok())
        {
            app.panes.settings = p;
        }
        app.recent = cc
            .storage
            .and_then(|s| s.get_string(RECENT_KEY))
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        if let Some(p) = dataset.or(last) {
            app.open(&p);
        }
        if let Some((arch, ckpt)) = checkpoint {
            app.predictions.load_from(arch, ckpt, &cc.egui_ctx);
        }
        app
    }

    /// The clip open in the panes, and the frame they show (for tests and the status line).
    pub fn open_clip(&self) -> Option<(&str, Option<u32>)> {
        let c = self.clip.as_ref()?;
        Some((c.clip_id.as_str(), c.shown_frame().map(|(i, _)| i)))
    }

    /// One frame of the `MGSCOPE_FRAME_STATS` measurement: open the first sample with all six
    /// panes, play it once their data is there, let `FrameStats` record.
    fn measure_frame(&mut self, ctx: &egui::Context, cpu_usage: Option<f32>) {
        if self.selected.is_none() && !self.samples.is_empty() {
            self.panes.settings.visible = crate::render::PaneKind::ALL.to_vec();
            self.pending_select = Some(0);
        }
        let ready = self.open_clip().is_some_and(|(_, f)| f.is_some()) && !self.panes.busy();
        if ready && !self.playing() {
            if let Some(c) = self.clip.as_mut() {
                c.toggle_play();
            }
        }
        let root = self.dataset.as_ref().map(|d| d.root().to_path_buf());
        let playing = self.playing();
        if let Some(fs) = self.frame_stats.as_mut() {
            if fs.frame(ctx, cpu_usage, ready && playing, root) {
                self.frame_stats = None;
            }
        }
    }

    /// Shows these panes (in this order), for tests and benchmarks.
    pub fn show_panes(&mut self, kinds: &[crate::render::PaneKind]) {
        if !kinds.is_empty() {
            self.panes.settings.visible = kinds.to_vec();
        }
    }

    /// Whether the clip is playing.
    pub fn playing(&self) -> bool {
        self.clip.as_ref().is_some_and(|c| c.transport().playing)
    }

    /// Whether the panes' per-clip job is still computing.
    pub fn panes_busy(&self) -> bool {
        self.panes.busy()
    }

    /// The ensemble tab's validation top-1 for its current weights.
    pub fn ensemble_top1(&self) -> Option<f64> {
        self.ensemble.top1()
    }

    /// The ensemble tab's weights, in stream order.
    pub fn ensemble_weights(&self) -> &[f32] {
        self.ensemble.weights()
    }

    /// The inner weights of the Ensemble tab's composite `name`, by part.
    pub fn ensemble_inner_weights(&self, name: &str) -> Option<Vec<(String, f32)>> {
        self.ensemble.inner_weights(name)
    }

    /// The Ensemble tab's sliders as preset terms (composites with their parts).
    pub fn ensemble_terms(&self) -> Vec<crate::store::PresetTerm> {
        self.ensemble.terms()
    }

    /// How many weight changes Ctrl+Z can take back in the Ensemble tab.
    pub fn ensemble_undo_depth(&self) -> usize {
        self.ensemble.undo_depth()
    }

    /// The saved preset the Ensemble tab compares its figures with.
    pub fn ensemble_compared_preset(&self) -> Option<&str> {
        self.ensemble.compared_preset()
    }

    /// The status line's text.
    pub fn status(&self) -> &str {
        &self.status
    }

    fn open(&mut self, dir: &Path) {
        match Dataset::open(dir) {
            Ok(ds) => {
                remember_recent(&mut self.recent, ds.root());
                self.predictions.load_streams(&ds);
                self.ensemble.load(&ds, Split::Val);
                self.cell_filter = None;
                self.dataset = Some(ds);
                self.selected = None;
                self.clip = None;
                self.clip_for = None;
                self.panes.close();
                self.reload();
                self.status = format!("opened {}", dir.display());
                self.error = None;
            }
            Err(e) => self.error = Some(format!("{e}")),
        }
    }

    fn reload(&mut self) {
        let Some(ds) = &self.dataset else { return };
        match ds.samples() {
            Ok(s) => self.samples = s,
            Err(e) => self.error = Some(e.to_string()),
        }
        self.load_history();
    }

    fn load_history(&mut self) {
        let (Some(ds), Some(s)) = (&self.dataset, self.current()) else {
            self.history.clear();
            return;
        };
        match ds.history(Some(&s.clip_id)) {
            Ok(h) => self.history = h,
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Selects a sample and opens its frames (on worker threads).
    fn select(&mut self, i: Option<usize>, ctx: &egui::Context) {
        self.selected = i;
        self.load_history();
        let want = self.current().map(|s| s.clip_id.clone());
        if self.clip_for != want {
            self.clip_for = want;
            let s = self.current().cloned();
            match (&mut self.clip, s) {
                // Same video: keep its index and decoded frames.
                (Some(c), Some(s)) if c.video() == s.video => c.retarget(&s),
                (_, s) => {
                    self.clip = match (s, &self.dataset) {
                        (Some(s), Some(ds)) => clip_view::ClipView::open(ds, &s, ctx),
                        _ => None,
                    };
                }
            }
        }
    }

    /// The next or previous sample in the browser's current (filtered, sorted) order.
    fn adjacent(&self, next: bool) -> Option<usize> {
        let visible = self.visible();
        let pos = self
            .selected
            .and_then(|s| visible.iter().position(|&v| v == s));
        match (pos, next) {
            (None, _) => visible.first().copied(),
            (Some(p), true) => visible.get(p + 1).or(visible.last()).copied(),
            (Some(p), false) => visible.get(p.saturating_sub(1)).copied(),
        }
    }

    fn current(&self) -> Option<&Sample> {
        self.selected.and_then(|i| self.samples.get(i))
    }

    fn visible(&self) -> Vec<usize> {
        self.visible_and_note().0
    }

    /// The browser's rows, and a note when an ensemble-based filter has nothing to work with.
    fn visible_and_note(&self) -> (Vec<usize>, Option<String>) {
        let f = self.filter.to_lowercase();
        let tax = self.dataset.as_ref().map(|d| d.taxonomy());
        let b = &self.browse;
        let needs_predictions = b.predicted.is_some() || b.misclassified;
        let predicted = if needs_predictions {
            self.ensemble.predictions_by_clip()
        } else {
            Default::default()
        };
        let mut note = (needs_predictions && predicted.is_empty())
            .then(|| "no ensemble predictions: load score streams in the Ensemble tab".to_string());
        let queue: Option<Vec<String>> = match b.order {
            BrowseOrder::Dataset => None,
            BrowseOrder::Queue(kind) => {
                let names: Vec<String> = tax
                    .map(|t| {
                        (0..t.len() as u32)
                            .map(|c| t.name_of(c).to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                match self.ensemble.queue_order(kind, &names) {
                    Ok(q) => Some(q),
                    Err(e) => {
                        note = Some(e);
                        Some(Vec::new())
                    }
                }
            }
        };
        let mut rows: Vec<usize> = self
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| self.split_filter.is_none_or(|sp| s.split == sp))
            .filter(|(_, s)| {
                self.cell_filter
                    .as_ref()
                    .is_none_or(|c| c.clips.contains(&s.clip_id))
            })
            .filter(|(_, s)| b.reviewed.is_none_or(|r| s.reviewed == r))
            .filter(|(_, s)| {
                b.predicted
                    .is_none_or(|c| predicted.get(&s.clip_id) == Some(&c))
            })
            .filter(|(_, s)| {
                !b.misclassified
                    || matches!((s.label, predicted.get(&s.clip_id)), (Some(l), Some(p)) if l != *p)
            })
            .filter(|(_, s)| {
                f.is_empty()
                    || s.clip_id.to_lowercase().contains(&f)
                    || s.label
                        .zip(tax)
                        .is_some_and(|(l, t)| t.name_of(l).to_lowercase().contains(&f))
            })
            .map(|(i, _)| i)
            .collect();
        if let Some(q) = queue {
            let rank: HashMap<&str, usize> =
                q.iter().enumerate().map(|(r, c)| (c.as_str(), r)).collect();
            rows.retain(|&i| rank.contains_key(self.samples[i].clip_id.as_str()));
            rows.sort_by_key(|&i| rank[self.samples[i].clip_id.as_str()]);
        }
        (rows, note)
    }

    /// Applies one store action to the selected sample, then refreshes from the store so the
    /// screen shows exactly what is on disk.
    fn act(&mut self, f: impl FnOnce(&mut Dataset, &str, &str) -> crate::Result<i64>) {
        let Some(clip) = self.current().map(|s| s.clip_id.clone()) else {
            return;
        };
        let Some(ds) = self.dataset.as_mut() else {
            return;
        };
        match f(ds, &clip, &default_author()) {
            Ok(_) => {
                self.status = format!("saved change to {clip}");
                self.error = None;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
        self.reload();
    }

    fn undo_redo(&mut self, undo: bool) {
        let Some(ds) = self.dataset.as_mut() else {
            return;
        };
        let r = if undo { ds.undo() } else { ds.redo() };
        match r {
            Ok(Some(e)) => {
                self.status = format!(
                    "{} {:?} of {}",
                    if undo { "undid" } else { "redid" },
                    e.kind,
                    e.clip_id
                );
                if let Some(i) = self.samples.iter().position(|s| s.clip_id == e.clip_id) {
                    // Show the sample the change was about; moved bounds reach the clip view
                    // through `sync_clip_range`.
                    self.pending_select = Some(i);
                }
            }
            Ok(None) => self.status = format!("nothing to {}", if undo { "undo" } else { "redo" }),
            Err(e) => self.error = Some(e.to_string()),
        }
        self.reload();
    }

    /// The keys act on what the user is looking at: in the Ensemble tab the weights being
    /// tuned, whose history is there to see; elsewhere the labels. The two histories never
    /// chain into each other, so repeated Ctrl+Z in the Ensemble tab cannot reach past the
    /// weights and silently change a label of a sample that is not on screen.
    fn undo_target(&self) -> UndoTarget {
        if self.tab == Tab::Ensemble {
            UndoTarget::Weights
        } else {
            UndoTarget::Labels
        }
    }

    fn weights_undo_redo(&mut self, undo: bool) {
        if let Some(ds) = &self.dataset {
            self.status = self.ensemble.undo_redo(ds, undo);
        }
    }

    fn start_demo(&mut self, ctx: &egui::Context) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let dir = default_demo_dir();
        std::thread::spawn(move || {
            let release = dir.join("release");
            let progress_tx = tx.clone();
            let progress_ctx = ctx.clone();
            let result = (|| -> crate::Result<PathBuf> {
                let cfg = crate::demo::DemoConfig::standard();
                crate::demo::write_demo(&cfg, &release, &|d, n| {
                    let _ = progress_tx.send(DemoMsg::Progress(d, n));
                    progress_ctx.request_repaint();
                })?;
                let mut ds = Dataset::open_or_create(&dir, "imigue")?;
                crate::dataset::import::import(
                    crate::dataset::import::Format::Imigue,
                    &release,
                    &mut ds,
                    &Default::default(),
                )?;
                Ok(dir)
            })();
            let _ = tx.send(DemoMsg::Done(result.map_err(|e| e.to_string())));
            ctx.request_repaint();
        });
        self.demo_job = Some((rx, (0, 0)));
    }

    /// Reads and stores a score file in the background; the Ensemble tab shows its streams
    /// when it is done.
    fn import_scores(&mut self, file: &Path, ctx: &egui::Context) {
        let Some(root) = self.dataset.as_ref().map(|d| d.root().to_path_buf()) else {
            self.error = Some(format!(
                "{}: open a dataset first to import scores into it",
                file.display()
            ));
            return;
        };
        let (tx, rx) = mpsc::channel();
        let (f, cx) = (file.to_path_buf(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("mgscope-scores".into())
            .spawn(move || {
                let r = Dataset::open(&root)
                    .map_err(|e| e.to_string())
                    .and_then(|mut ds| {
                        crate::ensemble::import::import_score_file(&mut ds, &f)
                            .map_err(|e| e.to_string())
                    });
                let _ = tx.send(r);
                cx.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.status = format!("importing scores from {}…", file.display());
                self.score_jobs.push(ScoreJob {
                    file: file.to_path_buf(),
                    rx,
                });
            }
            Err(e) => self.error = Some(format!("no worker thread for the import: {e}")),
        }
    }

    /// Takes finished score imports: new streams reach the Predictions and Ensemble tabs.
    fn poll_score_jobs(&mut self) {
        let mut done = Vec::new();
        self.score_jobs.retain(|j| match j.rx.try_recv() {
            Ok(r) => {
                done.push((j.file.clone(), r));
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
            Err(mpsc::TryRecvError::Disconnected) => {
                done.push((
                    j.file.clone(),
                    Err("the import stopped without a result".into()),
                ));
                false
            }
        });
        let mut reload = false;
        for (file, r) in done {
            match r {
                Ok(imp) => {
                    reload = true;
                    let mut said = format!(
                        "imported {} as stream {} (rows in {})",
                        file.display(),
                        imp.streams.join(", "),
                        imp.order
                    );
                    for n in &imp.notes {
                        said.push_str("; ");
                        said.push_str(n);
                    }
                    self.status = said;
                    self.error = None;
                    self.tab = Tab::Ensemble;
                }
                Err(e) => self.error = Some(format!("cannot import scores: {e}")),
            }
        }
        // Once for all the imports that finished this frame.
        if let (true, Some(ds)) = (reload, &self.dataset) {
            self.predictions.load_streams(ds);
            self.ensemble
                .load(ds, self.ensemble.split().unwrap_or(Split::Val));
        }
    }

    fn poll_jobs(&mut self) {
        self.poll_score_jobs();
        let mut finished = None;
        if let Some((rx, progress)) = &mut self.demo_job {
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    DemoMsg::Progress(d, n) => *progress = (d, n),
                    DemoMsg::Done(r) => finished = Some(r),
                }
            }
        }
        if let Some(r) = finished {
            self.demo_job = None;
            match r {
                Ok(dir) => self.open(&dir),
                Err(e) => self.error = Some(format!("demo generation failed: {e}")),
            }
        }
    }

    /// Runs the commands whose shortcuts were pressed. Their keys are consumed before any
    /// widget is drawn, so egui does not also move focus or click a focused button with them.
    fn keyboard(&mut self, ctx: &egui::Context) {
        // Only a text field keeps the keys: a focused button must not swallow J/K/L.
        if self.palette.open || ctx.text_edit_focused() {
            return;
        }
        let cx = self.command_context();
        let pressed = ctx.input_mut(|i| commands::take_pressed(i, &cx));
        if pressed.is_empty() {
            return;
        }
        // Arrow keys already set a focus direction when the frame began; cancel it.
        ctx.memory_mut(|m| m.move_focus(egui::FocusDirection::None));
        for (id, shortcut) in pressed {
            self.run_command(id, Some(shortcut), ctx);
        }
    }

    /// The one relabel path: number keys, the class grid and the palette's class entries.
    fn relabel(&mut self, class: u32) {
        if self
            .dataset
            .as_ref()
            .is_some_and(|d| (class as usize) < d.taxonomy().len())
        {
            self.act(|ds, clip, who| ds.relabel(clip, class, who));
        } else {
            self.error = Some(format!("{class} is not a class index"));
        }
    }
}

/// Puts `root` first in the recent list, once, keeping at most [`RECENT_MAX`].
fn remember_recent(recent: &mut Vec<PathBuf>, root: &Path) {
    recent.retain(|p| p != root);
    recent.insert(0, root.to_path_buf());
    recent.truncate(RECENT_MAX);
}

impl eframe::App for MgApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.draw(ui);
        if self.frame_stats.is_some() {
            self.measure_frame(ui.ctx(), frame.info().cpu_usage);
        }
        if let Some(storage) = frame.storage_mut() {
            if let Some(ds) = &self.dataset {
                storage.set_string(LAST_DATASET_KEY, ds.root().display().to_string());
            }
            if let Ok(j) = serde_json::to_string(&self.panes.settings) {
                storage.set_string(PANES_KEY, j);
            }
            if let Ok(j) = serde_json::to_string(&self.recent) {
                storage.set_string(RECENT_KEY, j);
            }
        }
    }
}

impl MgApp {
    /// A file or folder dropped on the window: a folder opens as a dataset, a checkpoint loads
    /// for live predictions (as the Predictions tab's architecture), a score file becomes
    /// streams of the open dataset; anything else is named.
    fn dropped(&mut self, p: &Path, ctx: &egui::Context) {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if p.is_dir() {
            self.open(p);
        } else if matches!(ext.as_str(), "pth" | "pt" | "tar" | "safetensors" | "npz") {
            self.predictions.load_dropped(p.to_path_buf(), ctx);
            self.tab = Tab::Predictions;
            self.status = format!("loading {}", p.display());
        } else if SCORE_EXTENSIONS.contains(&ext.as_str()) {
            self.import_scores(p, ctx);
        } else {
            self.error = Some(format!(
                "{}: drop a dataset folder, a checkpoint (.pth, .pt, .safetensors, .npz) or a score file (.pkl, .csv, .npy)",
                p.display()
            ));
        }
    }

    fn pick_score_files(&mut self, ctx: &egui::Context) {
        if self.dataset.is_none() {
            self.error = Some("open a dataset first to import scores into it".into());
            return;
        }
        let files = rfd::FileDialog::new()
            .add_filter("score file", &SCORE_EXTENSIONS)
            .pick_files()
            .unwrap_or_default();
        for f in files {
            self.import_scores(&f, ctx);
        }
    }

    /// One frame of the window; apart from `eframe::App::ui` so tests can drive it.
    fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll_jobs();
        let open = self.current().cloned();
        self.predictions
            .poll(self.dataset.as_ref(), open.as_ref(), &ctx);
        self.keyboard(&ctx);
        if let Some(i) = self.pending_select.take() {
            self.select(Some(i), &ctx);
        }
        self.sync_clip_range();
        if let (Some(c), Some(ds)) = (self.clip.as_mut(), self.dataset.as_ref()) {
            c.update(&ctx, ds);
        }
        if std::mem::take(&mut self.open_dialog) {
            if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                self.open(&dir);
            }
        }
        if std::mem::take(&mut self.scores_dialog) {
            self.pick_score_files(&ctx);
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        for p in dropped {
            self.dropped(&p, &ctx);
        }
        if std::mem::take(&mut self.demo_requested) && self.demo_job.is_none() {
            self.start_demo(&ctx);
        }
        self.overlays(&ctx);

        egui::Panel::top("menu").show(ui, |ui| {
            ui.horizontal(|ui| {
                if ui.button("Open dataset…").clicked() {
                    if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                        self.open(&dir);
                    }
                }
                let mut reopen = None;
                ui.add_enabled_ui(!self.recent.is_empty(), |ui| {
                    ui.menu_button("Recent", |ui| {
                        for p in &self.recent {
                            let there = p.is_dir();
                            let r =
                                ui.add_enabled(there, egui::Button::new(p.display().to_string()));
                            let r = if there {
                                r
                            } else {
                                r.on_disabled_hover_text("not found")
                            };
                            if r.clicked() {
                                reopen = Some(p.clone());
                                ui.close();
                            }
                        }
                    });
                });
                if let Some(p) = reopen {
                    self.open(&p);
                }
                if ui
                    .add_enabled(self.dataset.is_some(), egui::Button::new("Import scores…"))
                    .on_hover_text(
                        "score files (.pkl result dumps, .csv, .npy) become score streams of this \
                         dataset; dropping them on the window does the same",
                    )
                    .clicked()
                {
                    self.pick_score_files(&ctx);
                }
                for j in &self.score_jobs {
                    ui.spinner();
                    ui.weak(format!(
                        "importing {}",
                        j.file.file_name().map_or_else(
                            || j.file.display().to_string(),
                            |n| n.to_string_lossy().into_owned()
                        )
                    ));
                }
                let busy = self.demo_job.is_some();
                if ui
                    .add_enabled(!busy, egui::Button::new("Generate demo dataset"))
                    .clicked()
                {
                    self.start_demo(&ctx);
                }
                if let Some((_, (d, n))) = &self.demo_job {
                    ui.add(
                        egui::ProgressBar::new(if *n > 0 { *d as f32 / *n as f32 } else { 0.0 })
                            .desired_width(160.0)
                            .text(format!("demo: {d}/{n} videos")),
                    );
                }
                ui.separator();
                match &self.dataset {
                    Some(ds) => ui.label(format!(
                        "{} — {} samples",
                        ds.root().display(),
                        self.samples.len()
                    )),
                    None => ui.label("no dataset open"),
                };
            });
        });

        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if !self.class_entry.is_empty() {
                    ui.strong(format!(
                        "class: {}_ (Enter applies, Esc cancels)",
                        self.class_entry
                    ));
                } else if let Some(e) = &self.error {
                    ui.colored_label(egui::Color32::from_rgb(230, 90, 80), e);
                } else {
                    ui.label(&self.status);
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.weak("?: all keys · Ctrl+K: commands · J/K/L: play · digits+Enter: relabel");
                });
            });
        });

        egui::Panel::bottom("timeline")
            .resizable(false)
            .exact_size(timeline::HEIGHT)
            .show(ui, |ui| self.timeline_panel(ui));

        egui::Panel::left("samples")
            .default_size(390.0)
            .show(ui, |ui| self.sample_list(ui));

        egui::Panel::right("details")
            .default_size(360.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.selectable_value(&mut self.tab, Tab::Label, "Label");
                    ui.selectable_value(&mut self.tab, Tab::Predictions, "Predictions");
                    ui.selectable_value(&mut self.tab, Tab::Ensemble, "Ensemble");
                    ui.selectable_value(&mut self.tab, Tab::Training, "Training");
                });
                ui.separator();
                match self.tab {
                    Tab::Label => self.details(ui),
                    Tab::Predictions => self.predictions_tab(ui),
                    Tab::Training => {
                        if let Some(ds) = &self.dataset {
                            let root = ds.root().to_path_buf();
                            let action = egui::ScrollArea::vertical()
                                .show(ui, |ui| self.training.ui(ui, &root))
                                .inner;
                            if let Some(training_panel::Action::StreamsChanged) = action {
                                self.predictions.load_streams(ds);
                                self.ensemble.load(ds, Split::Val);
                            }
                        }
                    }
                    Tab::Ensemble => {
                        if let Some(ds) = self.dataset.as_mut() {
                            let tax = ds.taxonomy().clone();
                            egui::ScrollArea::vertical().show(ui, |ui| {
                                if let Some(c) = self.ensemble.ui(ui, ds, &tax) {
                                    self.cell_filter = Some(c);
                                }
                            });
                        }
                    }
                }
            });

        // Keyed by clip and bounds: a bounds change (a drag, an undo) recomputes, a repaint
        // does not.
        match (self.current(), &self.dataset) {
            (Some(s), Some(ds)) => {
                let s = s.clone();
                self.panes.open(ds, &s, &ctx);
            }
            _ => self.panes.close(),
        }
        egui::CentralPanel::default().show(ui, |ui| match (&mut self.clip, &self.dataset) {
            (Some(c), Some(ds)) => {
                c.ui(ui, ds);
                self.panes.toolbar(ui);
                let input = panes::FrameInput {
                    frame: c.shown_frame(),
                    keypoints: c.keypoints(),
                    skeleton: c.skeleton(),
                    phase: c.phase(),
                };
                self.panes.ui(ui, &input);
            }
            _ => {
                ui.centered_and_justified(|ui| {
                    ui.label(if self.selected.is_some() {
                        "This sample's video has no media file."
                    } else {
                        "Select a sample on the left: its frames play here."
                    })
                });
            }
        });
    }
}

impl MgApp {
    fn sample_list(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Filter");
            let r = ui
                .text_edit_singleline(&mut self.filter)
                .labelled_by(label.id);
            if std::mem::take(&mut self.focus_filter) {
                r.request_focus();
            }
        });
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.split_filter, None, "all");
            for sp in [Split::Train, Split::Val, Split::Test] {
                ui.selectable_value(&mut self.split_filter, Some(sp), sp.as_str());
            }
        });
        self.browse_controls(ui);
        let mut clear = false;
        if let (Some(c), Some(ds)) = (&self.cell_filter, &self.dataset) {
            let tax = ds.taxonomy();
            ui.horizontal(|ui| {
                ui.label(format!(
                    "cell: {} → {} ({} clips)",
                    tax.name_of(c.truth),
                    tax.name_of(c.predicted),
                    c.clips.len()
                ));
                clear = ui.button("clear").clicked();
            });
        }
        if clear {
            self.cell_filter = None;
        }
        ui.separator();
        if self.dataset.is_none() {
            ui.label("Open a dataset folder, or generate the demo dataset.");
            return;
        }
        let (visible, note) = self.visible_and_note();
        if let Some(n) = note {
            ui.weak(n);
        }
        // The rows' real height (a selectable label is at least interact_size tall): with a
        // smaller one show_rows picks the wrong rows and scrolling to the selection misses.
        let row_h = (ui.text_style_height(&egui::TextStyle::Monospace)
            + 2.0 * ui.spacing().button_padding.y)
            .max(ui.spacing().interact_size.y);
        let mut clicked = None;
        let tax = self.dataset.as_ref().map(|d| d.taxonomy().clone());
        let mut area = egui::ScrollArea::vertical().auto_shrink([false, false]);
        if std::mem::take(&mut self.reveal_selected) {
            let pitch = row_h + ui.spacing().item_spacing.y;
            let pos = self
                .selected
                .and_then(|s| visible.iter().position(|&v| v == s));
            if let Some(top) = pos.map(|p| p as f32 * pitch) {
                let (offset, height) = self.list_view;
                // Scroll only as far as needed, so the list does not jump on every key.
                if top < offset {
                    area = area.vertical_scroll_offset(top);
                } else if top + pitch > offset + height {
                    area = area.vertical_scroll_offset(top + pitch - height);
                }
            }
        }
        let out = area.show_rows(ui, row_h, visible.len(), |ui, range| {
            ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Truncate);
            for &i in &visible[range] {
                let s = &self.samples[i];
                let class = match (s.label, &tax) {
                    (Some(l), Some(t)) => format!("{l:>2} {}", t.name_of(l)),
                    _ => "unlabeled".to_string(),
                };
                let mark = if s.reviewed { "R" } else { " " };
                let changed = if s.label != s.imported_label {
                    "*"
                } else {
                    " "
                };
                let text = format!(
                    "{mark}{changed} {:<10} {:<5} {:>5}-{:<5} {class}",
                    s.clip_id,
                    s.split.as_str(),
                    s.start,
                    s.end
                );
                let r = ui.selectable_label(
                    self.selected == Some(i),
                    egui::RichText::new(text).monospace(),
                );
                if r.clicked() {
                    clicked = Some(i);
                }
            }
        });
        self.list_view = (out.state.clamped_offset().y, out.inner_rect.height());
        if clicked.is_some() {
            let ctx = ui.ctx().clone();
            self.select(clicked, &ctx);
        }
    }

    /// Order (dataset or an engine queue), predicted class, misclassified, reviewed.
    fn browse_controls(&mut self, ui: &mut egui::Ui) {
        let names: Vec<String> = self
            .dataset
            .as_ref()
            .map(|d| {
                let t = d.taxonomy();
                (0..t.len() as u32)
                    .map(|c| t.name_of(c).to_string())
                    .collect()
            })
            .unwrap_or_default();
        let b = &mut self.browse;
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("order");
            egui::ComboBox::from_id_salt("browse-order")
                .selected_text(b.order.name())
                .show_ui(ui, |ui| {
                    for o in BrowseOrder::ALL {
                        ui.selectable_value(&mut b.order, o, o.name());
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text(
                    "An engine queue lists only its clips, most worth a look first, under the \
                     Ensemble tab's current weights and split",
                );
            let shown = b
                .predicted
                .and_then(|c| names.get(c as usize))
                .map_or("any".to_string(), String::clone);
            let l = ui.label("predicted");
            egui::ComboBox::from_id_salt("browse-predicted")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut b.predicted, None, "any");
                    for (c, n) in names.iter().enumerate() {
                        ui.selectable_value(&mut b.predicted, Some(c as u32), n);
                    }
                })
                .response
                .labelled_by(l.id);
            ui.checkbox(&mut b.misclassified, "misclassified");
            let l = ui.label("reviewed");
            egui::ComboBox::from_id_salt("browse-reviewed")
                .selected_text(match b.reviewed {
                    None => "any",
                    Some(true) => "yes",
                    Some(false) => "no",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut b.reviewed, None, "any");
                    ui.selectable_value(&mut b.reviewed, Some(true), "yes");
                    ui.selectable_value(&mut b.reviewed, Some(false), "no");
                })
                .response
                .labelled_by(l.id);
        });
    }

    fn predictions_tab(&mut self, ui: &mut egui::Ui) {
        let (Some(s), Some(tax)) = (
            self.current().cloned(),
            self.dataset.as_ref().map(|d| d.taxonomy().clone()),
        ) else {
            ui.weak("Select a sample: each stream's top-5, the ensemble and live predictions.");
            return;
        };
        ui.heading(&s.clip_id);
        let weights = self.ensemble.weights_by_stream();
        egui::ScrollArea::vertical().show(ui, |ui| self.predictions.ui(ui, &tax, &s, &weights));
    }

    fn details(&mut self, ui: &mut egui::Ui) {
        let Some(s) = self.current().cloned() else {
            ui.centered_and_justified(|ui| ui.label("The sample's facts, classes and history."));
            return;
        };
        let Some(tax) = self.dataset.as_ref().map(|d| d.taxonomy().clone()) else {
            return;
        };
        ui.heading(&s.clip_id);
        egui::Grid::new("facts").num_columns(2).show(ui, |ui| {
            ui.label("video");
            ui.label(&s.video);
            ui.end_row();
            ui.label("frames");
            ui.label(format!("[{}, {}] — {} frames", s.start, s.end, s.frames()));
            ui.end_row();
            ui.label("split");
            ui.label(s.split.as_str());
            ui.end_row();
            ui.label("class");
            ui.label(match s.label {
                Some(l) => format!("{l}: {}", tax.name_of(l)),
                None => "unlabeled".into(),
            });
            ui.end_row();
            ui.label("imported as");
            ui.label(match s.imported_label {
                Some(l) => format!("{l}: {}", tax.name_of(l)),
                None => "unlabeled".into(),
            });
            ui.end_row();
            ui.label("reviewed");
            ui.label(if s.reviewed { "yes" } else { "no" });
            ui.end_row();
        });
        ui.separator();
        ui.label("Relabel (click a class):");
        let mut chosen = None;
        egui::Grid::new("classes").num_columns(2).show(ui, |ui| {
            for (i, c) in tax.classes.iter().enumerate() {
                let r =
                    ui.selectable_label(s.label == Some(c.id), format!("{:>2} {}", c.id, c.name));
                if r.clicked() {
                    chosen = Some(c.id);
                }
                if i % 2 == 1 {
                    ui.end_row();
                }
            }
        });
        if let Some(c) = chosen.filter(|c| Some(*c) != s.label) {
            self.relabel(c);
        }
        ui.separator();
        ui.label("History of this sample:");
        egui::ScrollArea::vertical()
            .id_salt("history")
            .show(ui, |ui| {
                if self.history.is_empty() {
                    ui.weak("no changes");
                }
                for e in self.history.iter().rev() {
                    ui.label(format!(
                        "{} {:?}: {} -> {} by {} ({:?})",
                        e.time_utc(),
                        e.kind,
                        e.old_value,
                        e.new_value,
                        e.author,
                        e.state
                    ));
                }
            });
    }
}

#[cfg(test)]
mod tests;
