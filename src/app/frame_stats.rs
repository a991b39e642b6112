//! Frame-time measurement of the real window, for `benches/ui.rs`: with `MGSCOPE_FRAME_STATS=N`
//! the app opens the first sample with all six panes, waits for their data, plays the clip while
//! redrawing continuously, records eframe's per-frame time (`cpu_usage`: the app's ui,
//! tessellation and the wgpu paint and present, without vsync waits) for N frames, prints
//! p50/p95/max as one JSON line and closes. `MGSCOPE_FRAME_LOAD=1` adds a training run and an
//! extraction of the whole dataset on background threads while it measures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eframe::egui;

pub struct FrameStats {
    target: usize,
    load: bool,
    samples: Vec<f32>,
    /// Wall-clock time between consecutive frames under continuous repaint: everything a frame
    /// costs, the software rasteriser's work that `cpu_usage` may not wait for included.
    intervals: Vec<f32>,
    last: Option<Instant>,
    started: Option<Instant>,
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl FrameStats {
    pub fn from_env() -> Option<FrameStats> {
        let target = std::env::var("MGSCOPE_FRAME_STATS").ok()?.parse().ok()?;
        Some(FrameStats {
            target,
            load: std::env::var("MGSCOPE_FRAME_LOAD").is_ok_and(|v| v == "1"),
            samples: Vec::new(),
            intervals: Vec::new(),
            last: None,
            started: None,
            stop: Arc::new(AtomicBool::new(false)),
            workers: Vec::new(),
        })
    }

    fn start_load(&mut self, root: PathBuf) {
        let (r, stop) = (root.clone(), self.stop.clone());
        self.workers.push(std::thread::spawn(move || {
            let Ok(cfg) = crate::train::TrainConfig::preset("posec3d-joint-tiny") else {
                return;
            };
            let out =
                std::env::temp_dir().join(format!("mgscope-frame-stats-{}", std::process::id()));
            let mut opts = crate::train::RunOptions::new(&out);
            opts.stop = stop;
            opts.register_stream = false;
            if let Err(e) = crate::train::train(&r, Some(&cfg), &opts) {
                eprintln!("training: {e}");
            }
            let _ = std::fs::remove_dir_all(out);
        }));
        let stop = self.stop.clone();
        self.workers.push(std::thread::spawn(move || {
            use crate::extract::{Modality, Options, OutFormat};
            let opts = Options {
                modalities: vec![Modality::Taylor, Modality::Flow, Modality::Joint],
                split: None,
                shard: (0, 1),
                format: OutFormat::Npy,
                jobs: 1,
                depth_weights: None,
                depth_encoder: crate::modality::depth::Encoder::Small,
            };
            // Extraction writes into the dataset's cache; run it on a copy of nothing else:
            // the outputs are removed again after each pass.
            while !stop.load(Ordering::Relaxed) {
                match crate::store::Dataset::open(&root) {
                    Ok(ds) => {
                        if let Err(e) = crate::extract::run(&ds, &opts, &|_, _| {}, &stop) {
                            eprintln!("extraction: {e}");
                            return;
                        }
                    }
                    Err(e) => {
                        eprintln!("extraction: {e}");
                        return;
                    }
                }
                for m in ["taylor", "flow", "joint"] {
                    let _ = std::fs::remove_dir_all(root.join("cache").join(m));
                }
            }
        }));
    }

    /// Called once per frame by the app; `ready` once the clip plays with its panes' data.
    /// Returns true when the measurement is complete.
    pub fn frame(
        &mut self,
        ctx: &egui::Context,
        cpu_usage: Option<f32>,
        ready: bool,
        root: Option<PathBuf>,
    ) -> bool {
        ctx.request_repaint();
        if !ready {
            return false;
        }
        if self.started.is_none() {
            self.started = Some(Instant::now());
            if self.load {
                if let Some(r) = root {
                    self.start_load(r);
                }
            }
            return false;
        }
        // The first frames after the load starts are its start-up, not its steady state.
        if self
            .started
            .is_some_and(|t| t.elapsed().as_secs_f32() < 2.0)
        {
            return false;
        }
        if let Some(s) = cpu_usage {
            self.samples.push(s * 1e3);
        }
        let now = Instant::now();
        if let Some(l) = self.last.replace(now) {
            self.intervals.push((now - l).as_secs_f32() * 1e3);
        }
        if self.samples.len() < self.target {
            return false;
        }
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let stats = |v: &[f32]| {
            let mut v = v.to_vec();
            v.sort_by(f32::total_cmp);
            let q = |p: f64| {
                v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                    .copied()
            };
            serde_json::json!({"p50_ms": q(0.5), "p95_ms": q(0.95), "max_ms": q(1.0)})
        };
        println!(
            "{}",
            serde_json::json!({
                "frames": self.samples.len(),
                "load": self.load,
                "frame_time": stats(&self.samples),
                "frame_interval": stats(&self.intervals),
            })
        );
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        true
    }
}
