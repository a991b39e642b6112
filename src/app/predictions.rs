//! The Predictions section: for the open sample, each stored score stream's top-5 and their
//! ensemble at the Ensemble tab's weights, and live predictions of a loaded checkpoint run on the open clip as
//! a background job (progress, cancel; results cached per sample, checkpoint and protocol).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use eframe::egui;

use crate::dataset::{Sample, Taxonomy};
use crate::inference::ClipPredictor;
use crate::nn::models::{self, Model};
use crate::nn::predict::{Hooks, Views};
use crate::store::{Dataset, StoredStream};

/// One stream's rows, keyed by clip id.
struct Stream {
    name: String,
    classes: usize,
    rows: HashMap<String, Vec<f32>>,
}

impl Stream {
    fn from_stored(s: StoredStream) -> Stream {
        let rows = s
            .clip_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    id.clone(),
                    s.probs[i * s.classes..(i + 1) * s.classes].to_vec(),
                )
            })
            .collect();
        Stream {
            name: s.name,
            classes: s.classes,
            rows,
        }
    }
}

type CacheKey = (String, PathBuf, bool);

enum Msg {
    Loaded(Result<(Arc<Model>, String), String>),
    Done(String, Result<Vec<Vec<f32>>, String>),
}

struct Job {
    clip: String,
    cancel: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

pub struct Predictions {
    streams: Vec<Stream>,
    arch: String,
    reference_views: bool,
    checkpoint: Option<PathBuf>,
    model: Option<Arc<Model>>,
    loading: bool,
    job: Option<Job>,
    cache: HashMap<CacheKey, Vec<Vec<f32>>>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    note: Option<String>,
}

impl Default for Predictions {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Predictions {
            streams: Vec::new(),
            arch: "posec3d-joint36".into(),
            reference_views: false,
            checkpoint: None,
            model: None,
            loading: false,
            job: None,
            cache: HashMap::new(),
            tx,
            rx,
            note: None,
        }
    }
}

fn top_k(p: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, p[i])).collect()
}

impl Predictions {
    /// Reloads the dataset's score streams (after opening a dataset or registering scores).
    pub fn load_streams(&mut self, ds: &Dataset) {
        self.streams.clear();
        match ds.stream_names() {
            Ok(names) => {
                for n in names {
                    match ds.load_stream(&n) {
                        Ok(s) => self.streams.push(Stream::from_stored(s)),
                        Err(e) => self.note = Some(format!("stream {n}: {e}")),
                    }
                }
            }
            Err(e) => self.note = Some(e.to_string()),
        }
    }

    fn key(&self, clip: &str) -> Option<CacheKey> {
        self.checkpoint
            .as_ref()
            .map(|c| (clip.to_string(), c.clone(), self.reference_views))
    }

    /// Collects finished work; starts the open clip's prediction when a model is loaded.
    pub fn poll(&mut self, ds: Option<&Dataset>, open: Option<&Sample>, ctx: &egui::Context) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Loaded(Ok((model, msg))) => {
                    self.loading = false;
                    self.model = Some(model);
                    self.note = Some(msg);
                }
                Msg::Loaded(Err(e)) => {
                    self.loading = false;
                    self.checkpoint = None;
                    self.note = Some(e);
                }
                Msg::Done(clip, r) => {
                    let ours = self.job.as_ref().is_some_and(|j| j.clip == clip);
                    if ours {
                        self.job = None;
                    }
                    match r {
                        Ok(p) => {
                            if let Some(k) = self.key(&clip) {
                                self.cache.insert(k, p);
                            }
                        }
                        Err(e) if ours => self.note = Some(format!("{clip}: {e}")),
                        Err(_) => {}
                    }
                }
            }
        }
        // A job for another clip than the open one is stale.
        if let Some(j) = &self.job {
            if open.map(|s| s.clip_id.as_str()) != Some(j.clip.as_str()) {
                j.cancel.store(true, Ordering::Relaxed);
                self.job = None;
            }
        }
        let (Some(ds), Some(s), Some(model)) = (ds, open, self.model.clone()) else {
            return;
        };
        let Some(key) = self.key(&s.clip_id) else {
            return;
        };
        if self.job.is_some() || self.cache.contains_key(&key) || self.note_is_error_for(s) {
            return;
        }
        self.start(ds.root(), s.clone(), model, ctx);
    }

    fn note_is_error_for(&self, s: &Sample) -> bool {
        self.note
            .as_deref()
            .is_some_and(|n| n.starts_with(&format!("{}: ", s.clip_id)))
    }

    fn start(&mut self, root: &Path, s: Sample, model: Arc<Model>, ctx: &egui::Context) {
        let job = Job {
            clip: s.clip_id.clone(),
            cancel: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicUsize::new(0)),
            total: Arc::new(AtomicUsize::new(0)),
        };
        let (cancel, done, total) = (job.cancel.clone(), job.done.clone(), job.total.clone());
        let tx = self.tx.clone();
        let ctx = ctx.clone();
        let root = root.to_path_buf();
        let views = if self.reference_views {
            Views::Reference
        } else {
            Views::Fast
        };
        std::thread::spawn(move || {
            let run = || -> Result<Vec<Vec<f32>>, String> {
                // Its own connection: SQLite in WAL mode lets the UI keep writing.
                let ds = Dataset::open(&root).map_err(|e| e.to_string())?;
                let mut p = ClipPredictor::new(&ds).map_err(|e| e.to_string())?;
                let progress = |d: usize, n: usize| {
                    done.store(d, Ordering::Relaxed);
                    total.store(n, Ordering::Relaxed);
                    ctx.request_repaint();
                };
                let hooks = Hooks {
                    cancel: Some(&cancel),
                    progress: Some(&progress),
                };
                p.predict(&ds, &model, &s, views, "rgb", 4, hooks)
                    .map_err(|e| e.to_string())
            };
            let r = run();
            let _ = tx.send(Msg::Done(s.clip_id.clone(), r));
            ctx.request_repaint();
        });
        self.note = None;
        self.job = Some(job);
    }

    /// Loads `path` as the architecture chosen in the tab (a file dropped on the window).
    pub fn load_dropped(&mut self, path: PathBuf, ctx: &egui::Context) {
        self.load_checkpoint(path, ctx);
    }

    /// Loads `path` as `arch` in the background.
    pub fn load_from(&mut self, arch: String, path: PathBuf, ctx: &egui::Context) {
        self.arch = arch;
        self.load_checkpoint(path, ctx);
    }

    fn load_checkpoint(&mut self, path: PathBuf, ctx: &egui::Context) {
        let tx = self.tx.clone();
        let arch = self.arch.clone();
        let ctx = ctx.clone();
        self.loading = true;
        self.model = None;
        self.checkpoint = Some(path.clone());
        std::thread::spawn(move || {
            let device = if cfg!(feature = "cuda") {
                models::parse_device("cuda").unwrap_or(candle_core::Device::Cpu)
            } else {
                candle_core::Device::Cpu
            };
            let r = Model::load(&arch, &path, true, candle_core::DType::F32, &device)
                .map(|(m, _)| {
                    let msg = format!(
                        "{arch} loaded from {} ({} classes, {})",
                        path.display(),
                        m.num_classes,
                        if device.is_cuda() { "CUDA" } else { "CPU" }
                    );
                    (Arc::new(m), msg)
                })
                .map_err(|e| e.to_string());
            let _ = tx.send(Msg::Loaded(r));
            ctx.request_repaint();
        });
    }

    fn rows_ui(ui: &mut egui::Ui, tax: &Taxonomy, p: &[f32], truth: Option<u32>) {
        let green = egui::Color32::from_rgb(90, 190, 110);
        let red = egui::Color32::from_rgb(230, 110, 90);
        for (rank, (c, v)) in top_k(p, 5).into_iter().enumerate() {
            let hit = truth == Some(c as u32);
            let text = format!("{:>5.1} %  {:>2} {}", v * 100.0, c, tax.name_of(c as u32));
            ui.horizontal(|ui| {
                // ASCII markers: egui's bundled fonts have no check-mark glyph.
                let (mark, color) = match (rank, hit, truth.is_some()) {
                    (0, true, _) => ("+", Some(green)),
                    (0, false, true) => ("x", Some(red)),
                    (_, true, _) => ("*", None),
                    _ => (" ", None),
                };
                let mut m = egui::RichText::new(mark);
                let mut t = egui::RichText::new(text).monospace();
                if let Some(c) = color {
                    m = m.color(c);
                    t = t.color(c);
                } else if hit {
                    t = t.strong();
                }
                ui.add_sized([12.0, 14.0], egui::Label::new(m));
                ui.label(t);
            });
        }
    }

    /// `weights`: the Ensemble tab's current weight per stream name; the fused row uses them
    /// when they cover every stream of this clip, else equal weights (and says which).
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        tax: &Taxonomy,
        s: &Sample,
        weights: &std::collections::HashMap<String, f32>,
    ) {
        let ctx = ui.ctx().clone();
        ui.label(match s.label {
            Some(l) => format!("true label: {l} {}", tax.name_of(l)),
            None => "unlabelled".into(),
        });
        // Stored streams.
        let with_clip: Vec<&Stream> = self
            .streams
            .iter()
            .filter(|st| st.rows.contains_key(&s.clip_id))
            .collect();
        if with_clip.is_empty() {
            ui.weak("No score stream covers this clip (import one with `mgscope ensemble` or `mgscope predict --register`).");
        }
        for st in &with_clip {
            ui.collapsing(format!("{} ({} classes)", st.name, st.classes), |ui| {
                Self::rows_ui(ui, tax, &st.rows[&s.clip_id], s.label);
            });
        }
        let same: Vec<(&str, &Vec<f32>)> = with_clip
            .iter()
            .filter(|st| st.classes == tax.len())
            .map(|st| (st.name.as_str(), &st.rows[&s.clip_id]))
            .collect();
        if same.len() > 1 {
            let tuned: Option<Vec<f32>> =
                same.iter().map(|(n, _)| weights.get(*n).copied()).collect();
            let (w, how) = match tuned.filter(|w| w.iter().sum::<f32>() > 0.0) {
                Some(w) => (w, "the Ensemble tab's weights"),
                None => (vec![1.0; same.len()], "equal weights"),
            };
            let total: f32 = w.iter().sum();
            let mut fused = vec![0f32; tax.len()];
            for ((_, r), wi) in same.iter().zip(&w) {
                for (f, v) in fused.iter_mut().zip(r.iter()) {
                    *f += v * wi / total;
                }
            }
            ui.strong(format!("Ensemble, {how} over {} streams", same.len()));
            Self::rows_ui(ui, tax, &fused, s.label);
        }
        ui.separator();
        // Live model.
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("arch")
                .selected_text(&self.arch)
                .show_ui(ui, |ui| {
                    for a in models::ARCHES {
                        ui.selectable_value(&mut self.arch, a.name.to_string(), a.name)
                            .on_hover_text(a.about);
                    }
                });
            if ui
                .add_enabled(!self.loading, egui::Button::new("Load checkpoint…"))
                .clicked()
            {
                if let Some(p) = rfd::FileDialog::new()
                    .add_filter("checkpoint", &["pth", "pt", "safetensors", "npz"])
                    .pick_file()
                {
                    self.load_checkpoint(p, &ctx);
                }
            }
        });
        let mut reference = self.reference_views;
        ui.checkbox(
            &mut reference,
            "reference views (10 clips × 2 flips / 4 × 3 crops)",
        );
        if reference != self.reference_views {
            self.reference_views = reference;
            self.note = None;
        }
        if self.loading {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("loading the checkpoint…");
            });
        }
        if let Some(j) = &self.job {
            let (d, n) = (
                j.done.load(Ordering::Relaxed),
                j.total.load(Ordering::Relaxed),
            );
            ui.horizontal(|ui| {
                ui.add(
                    egui::ProgressBar::new(if n > 0 { d as f32 / n as f32 } else { 0.0 })
                        .desired_width(180.0)
                        .text(if n > 0 {
                            format!("computing… {d}/{n} views")
                        } else {
                            "computing… (preparing views)".to_string()
                        }),
                );
                if ui.button("Cancel").clicked() {
                    j.cancel.store(true, Ordering::Relaxed);
                }
            });
        }
        if self.model.is_some()
            && self.job.is_none()
            && self.note_is_error_for(s)
            && ui.button("Run on this clip again").clicked()
        {
            self.note = None;
        }
        if let (Some(m), Some(key)) = (&self.model, self.key(&s.clip_id)) {
            if let Some(p) = self.cache.get(&key) {
                for (h, probs) in m.arch.heads.iter().zip(p) {
                    ui.strong(format!("{} · {h}", m.arch.name));
                    if probs.len() == tax.len() {
                        Self::rows_ui(ui, tax, probs, s.label);
                    } else {
                        // A checkpoint for another taxonomy: class indices only.
                        for (c, v) in top_k(probs, 5) {
                            ui.monospace(format!("{:>5.1} %  class {c}", v * 100.0));
                        }
                    }
                }
            }
        }
        if let Some(n) = &self.note {
            ui.weak(n);
        }
    }
}
