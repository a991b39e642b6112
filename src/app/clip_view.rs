//! The open clip's cursor, frame slider and playback. Frames come from a prefetch thread
//! through the frame cache; the window never waits on the decoder, and the frame number shown
//! is the number of the pixels shown (the panes draw them, `panes.rs`).

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use eframe::egui;

use crate::dataset::{Keypoints, Sample, Skeleton};
use crate::media::cache::{FrameCache, Prefetcher, DEFAULT_BUDGET_BYTES};
use crate::media::decode::{build_index, FrameIndex, RgbFrame};
use crate::store::Dataset;

enum State {
    /// The frame index is being built on a worker thread.
    Opening(mpsc::Receiver<Result<FrameIndex, String>>),
    Ready(Prefetcher),
    Failed(String),
}

pub struct ClipView {
    pub clip_id: String,
    video: String,
    path: PathBuf,
    start: u32,
    end: u32,
    cursor: u32,
    playing: bool,
    last_step: Instant,
    fps: f64,
    state: State,
    cache: Arc<FrameCache>,
    keypoints: Option<Keypoints>,
    skeleton: Skeleton,
    /// The frame on screen: the cursor's once it is decoded, the previous one until then.
    shown: Option<(u32, Arc<RgbFrame>)>,
}

impl ClipView {
    /// `None` when the sample's video has no media file.
    pub fn open(ds: &Dataset, s: &Sample, ctx: &egui::Context) -> Option<ClipView> {
        let video = ds.videos().ok()?.into_iter().find(|v| v.vid == s.video)?;
        let path = ds.media_path(&video)?;
        let (tx, rx) = mpsc::channel();
        // A cached index is a fast read; building one demuxes the file, so it goes to a thread.
        let cached = crate::media::file_stamp(&path)
            .ok()
            .and_then(|st| ds.cache_get(&video.vid, "frame_index", &st).ok().flatten())
            .and_then(|b| FrameIndex::from_bytes(&b));
        match cached {
            Some(idx) => {
                let _ = tx.send(Ok(idx));
            }
            None => {
                let p = path.clone();
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let _ = tx.send(build_index(&p).map_err(|e| e.to_string()));
                    ctx.request_repaint();
                });
            }
        }
        Some(ClipView {
            clip_id: s.clip_id.clone(),
            video: video.vid.clone(),
            path,
            start: s.start,
            end: s.end,
            cursor: s.start,
            playing: false,
            last_step: Instant::now(),
            fps: video.fps.unwrap_or(25.0).clamp(1.0, 240.0),
            state: State::Opening(rx),
            cache: Arc::new(FrameCache::new(DEFAULT_BUDGET_BYTES)),
            keypoints: ds.sample_keypoints(s).ok().flatten(),
            skeleton: Skeleton::imigue36(),
            shown: None,
        })
    }

    /// The index built on the worker, to be cached in the dataset by the caller.
    fn poll(&mut self, ctx: &egui::Context) -> Option<FrameIndex> {
        let State::Opening(rx) = &self.state else {
            return None;
        };
        let msg = rx.try_recv().ok()?;
        match msg {
            Ok(idx) => {
                let ctx2 = ctx.clone();
                let pf = Prefetcher::spawn(
                    self.path.clone(),
                    idx.clone(),
                    self.cache.clone(),
                    48,
                    8,
                    Box::new(move || ctx2.request_repaint()),
                );
                pf.set_cursor(self.cursor as usize);
                self.state = State::Ready(pf);
                Some(idx)
            }
            Err(e) => {
                self.state = State::Failed(e);
                None
            }
        }
    }

    fn seek(&mut self, frame: u32) {
        self.cursor = frame.clamp(self.start, self.end);
        if let State::Ready(pf) = &self.state {
            pf.set_cursor(self.cursor as usize);
        }
    }

    pub fn step(&mut self, delta: i64) {
        let f = (i64::from(self.cursor) + delta).clamp(i64::from(self.start), i64::from(self.end));
        self.playing = false;
        self.seek(f as u32);
    }

    /// The frame the panes show and its pixels.
    pub fn shown_frame(&self) -> Option<(u32, Arc<RgbFrame>)> {
        self.shown.clone()
    }

    pub fn keypoints(&self) -> Option<&Keypoints> {
        self.keypoints.as_ref()
    }

    pub fn skeleton(&self) -> &Skeleton {
        &self.skeleton
    }

    pub fn toggle_play(&mut self) {
        self.playing = !self.playing;
        self.last_step = Instant::now();
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ds: &Dataset) {
        let ctx = ui.ctx().clone();
        if let Some(idx) = self.poll(&ctx) {
            if let Ok(stamp) = crate::media::file_stamp(&self.path) {
                let _ = ds.cache_put(&self.video, "frame_index", &stamp, &idx.to_bytes());
            }
        }
        if self.playing {
            let period = Duration::from_secs_f64(1.0 / self.fps);
            // Advance only when the next frame is decoded: playback waits for frames, the
            // window does not.
            let key = match &self.state {
                State::Ready(pf) => Some(pf.key),
                _ => None,
            };
            if self.last_step.elapsed() >= period {
                let next = if self.cursor >= self.end {
                    self.start
                } else {
                    self.cursor + 1
                };
                if key.is_some_and(|k| self.cache.contains(k, next as usize)) {
                    self.seek(next);
                    self.last_step = Instant::now();
                }
            }
            ctx.request_repaint_after(period / 2);
        }

        ui.horizontal(|ui| {
            if ui
                .button(if self.playing { "Pause" } else { "Play" })
                .clicked()
            {
                self.toggle_play();
            }
            let mut f = self.cursor;
            let r = ui.add(
                egui::Slider::new(&mut f, self.start..=self.end)
                    .text("frame")
                    .clamping(egui::SliderClamping::Always),
            );
            if r.changed() {
                self.playing = false;
                self.seek(f);
            }
        });

        let key = match &self.state {
            State::Opening(_) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("indexing the video…");
                });
                return;
            }
            State::Failed(e) => {
                ui.colored_label(
                    egui::Color32::from_rgb(230, 90, 80),
                    format!("cannot open the video: {e}"),
                );
                return;
            }
            State::Ready(pf) => {
                for e in pf.take_errors() {
                    ui.colored_label(egui::Color32::from_rgb(230, 90, 80), e);
                }
                pf.key
            }
        };
        if let Some(f) = self.cache.get(key, self.cursor as usize) {
            self.shown = Some((self.cursor, f));
        }
        let Some((shown, _)) = &self.shown else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("decoding frame {}…", self.cursor));
            });
            return;
        };
        ui.label(format!(
            "{} — frame {shown} (sample {}–{}){}",
            self.clip_id,
            self.start,
            self.end,
            if *shown != self.cursor {
                "  · decoding…"
            } else {
                ""
            }
        ));
    }
}
