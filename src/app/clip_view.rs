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

/// Sample frames the RGB pane's decoding line counts at most.
const PHASE_SPAN: usize = 1000;

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
    transport: Transport,
    /// Playback stays inside the sample (wrapping) instead of running over the whole video.
    pub loop_sample: bool,
    /// Frames in the video, known once the frame index is built.
    frames: Option<u32>,
    last_step: Instant,
    /// The egui pass playback last moved in: `update` may be called twice in one pass.
    ticked_pass: Option<u64>,
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
            transport: Transport::default(),
            loop_sample: true,
            frames: None,
            last_step: Instant::now(),
            ticked_pass: None,
            fps: video.fps.unwrap_or(25.0).clamp(1.0, 240.0),
            state: State::Opening(rx),
            cache: Arc::new(FrameCache::new(DEFAULT_BUDGET_BYTES)),
            // The whole video's keypoints: the cursor may leave the sample to adjust its bounds.
            keypoints: ds.video_keypoints(&s.video).ok().flatten(),
            skeleton: Skeleton::imigue36(),
            shown: None,
        })
    }

    /// A view with no video behind it, for tests of the playback state and the keyboard path.
    #[cfg(test)]
    pub fn for_test(s: &Sample, frames: u32) -> ClipView {
        ClipView {
            clip_id: s.clip_id.clone(),
            video: s.video.clone(),
            path: PathBuf::new(),
            start: s.start,
            end: s.end,
            cursor: s.start,
            transport: Transport::default(),
            loop_sample: true,
            frames: Some(frames),
            last_step: Instant::now(),
            ticked_pass: None,
            fps: 25.0,
            state: State::Failed("no video in tests".into()),
            cache: Arc::new(FrameCache::new(0)),
            keypoints: None,
            skeleton: Skeleton::imigue36(),
            shown: None,
        }
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
                self.frames = u32::try_from(idx.len()).ok();
                Some(idx)
            }
            Err(e) => {
                self.state = State::Failed(e);
                None
            }
        }
    }

    /// What the RGB pane says while the cursor's frame is not on screen: indexing, or
    /// decoding with how much of the sample the prefetcher has ready.
    pub fn phase(&self) -> Option<String> {
        match &self.state {
            State::Opening(_) => Some("indexing the video…".into()),
            State::Failed(e) => Some(format!("cannot open the video: {e}")),
            State::Ready(pf) => {
                if self.shown.as_ref().is_some_and(|(i, _)| *i == self.cursor) {
                    return None;
                }
                // Bounded: this runs every frame while the decoder is behind.
                let total = (self.end.saturating_sub(self.start) as usize + 1).min(PHASE_SPAN);
                let ready = self.cache.count_present(
                    pf.key,
                    (self.start..=self.end).take(total).map(|i| i as usize),
                );
                Some(format!(
                    "decoding frame {}… {ready}/{total} frames of the sample",
                    self.cursor
                ))
            }
        }
    }

    /// Frames in the whole video (from the frame index); `None` while it is being built.
    pub fn frame_count(&self) -> Option<u32> {
        self.frames
    }

    pub fn video(&self) -> &str {
        &self.video
    }

    pub fn cursor(&self) -> u32 {
        self.cursor
    }

    pub fn range(&self) -> (u32, u32) {
        (self.start, self.end)
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The sample's bounds as the store now has them (after a drag, an undo or a redo).
    pub fn set_range(&mut self, start: u32, end: u32) {
        self.start = start;
        self.end = end;
    }

    /// Shows another sample of the same video without rebuilding the index or dropping the
    /// decoded frames.
    pub fn retarget(&mut self, s: &Sample) {
        self.clip_id = s.clip_id.clone();
        self.set_range(s.start, s.end);
        self.transport.pause();
        self.seek(s.start);
    }

    /// The last frame the cursor may reach: the whole video once its length is known.
    fn last_frame(&self) -> u32 {
        match self.frames {
            Some(n) => n.saturating_sub(1),
            None => self.end,
        }
    }

    pub fn seek(&mut self, frame: u32) {
        let lo = if self.frames.is_some() { 0 } else { self.start };
        self.cursor = frame.clamp(lo, self.last_frame().max(lo));
        if let State::Ready(pf) = &self.state {
            let backward = self.transport.playing && !self.transport.forward;
            pf.set_cursor_dir(self.cursor as usize, backward);
        }
    }

    pub fn step(&mut self, delta: i64) {
        let f = (i64::from(self.cursor) + delta).clamp(0, i64::from(u32::MAX));
        self.transport.pause();
        self.seek(f as u32);
    }

    /// The frame the panes show and its pixels.
    pub fn shown_frame(&self) -> Option<(u32, Arc<RgbFrame>)> {
        self.shown.clone()
    }

    /// The keypoints of the whole video (indexed by video frame).
    pub fn keypoints(&self) -> Option<&Keypoints> {
        self.keypoints.as_ref()
    }

    pub fn skeleton(&self) -> &Skeleton {
        &self.skeleton
    }

    pub fn go_to_start(&mut self) {
        self.transport.pause();
        self.seek(self.start);
    }

    pub fn go_to_end(&mut self) {
        self.transport.pause();
        self.seek(self.end);
    }

    pub fn toggle_play(&mut self) {
        self.transport.toggle();
        self.last_step = Instant::now();
    }

    /// J (`forward == false`) or L; `slower` is the Shift variant.
    pub fn shuttle(&mut self, forward: bool, slower: bool) {
        let was = self.transport.playing;
        self.transport.shuttle(forward, slower);
        if !was {
            self.last_step = Instant::now();
        }
        // The prefetcher learns the direction before the first frame is needed.
        self.seek(self.cursor);
    }

    pub fn pause(&mut self) {
        self.transport.pause();
    }

    /// Moves playback on by the frames that are due, but only onto a decoded frame: playback
    /// waits for the decoder in both directions, the window does not.
    fn tick(&mut self, ctx: &egui::Context) {
        let pass = ctx.cumulative_pass_nr();
        if !self.transport.playing || self.ticked_pass == Some(pass) {
            return;
        }
        self.ticked_pass = Some(pass);
        let speed = self.transport.speed();
        let period = Duration::from_secs_f64(1.0 / (self.fps * speed.abs()));
        let key = match &self.state {
            State::Ready(pf) => Some(pf.key),
            _ => None,
        };
        let elapsed = self.last_step.elapsed();
        // Several frames per repaint at 4×; capped so a stall is not followed by a leap.
        let due = ((elapsed.as_secs_f64() / period.as_secs_f64()) as i64).min(8);
        if due >= 1 {
            let delta = if speed > 0.0 { due } else { -due };
            match advance(
                self.cursor,
                delta,
                (self.start, self.end),
                self.last_frame(),
                self.loop_sample,
            ) {
                Advance::Stop => self.transport.pause(),
                Advance::To(next) => {
                    if key.is_some_and(|k| self.cache.contains(k, next as usize)) {
                        self.seek(next);
                        self.last_step = if elapsed > period * 8 {
                            Instant::now()
                        } else {
                            self.last_step + period * due as u32
                        };
                    }
                }
            }
        }
        ctx.request_repaint_after(period / 2);
    }

    /// Takes the finished frame index and moves playback on. The app calls this before it
    /// draws anything, so the timeline and the frame agree on the cursor within a pass.
    pub fn update(&mut self, ctx: &egui::Context, ds: &Dataset) {
        if let Some(idx) = self.poll(ctx) {
            if let Ok(stamp) = crate::media::file_stamp(&self.path) {
                let _ = ds.cache_put(&self.video, "frame_index", &stamp, &idx.to_bytes());
            }
        }
        self.tick(ctx);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ds: &Dataset) {
        let ctx = ui.ctx().clone();
        self.update(&ctx, ds);

        ui.horizontal(|ui| {
            if ui
                .button(if self.transport.playing {
                    "Pause"
                } else {
                    "Play"
                })
                .clicked()
            {
                self.toggle_play();
            }
            let mut f = self.cursor;
            let r = ui.add(
                egui::Slider::new(&mut f, 0..=self.last_frame())
                    .text("frame")
                    .clamping(egui::SliderClamping::Always),
            );
            if r.changed() {
                self.transport.pause();
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

/// J/K/L shuttle speeds; each further press in the same direction takes the next rung.
pub const SPEEDS: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];
const NORMAL: usize = 2;

/// Playback direction and speed, kept apart from the view so the ladder is testable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transport {
    pub playing: bool,
    pub forward: bool,
    /// Index into [`SPEEDS`].
    pub rung: usize,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            playing: false,
            forward: true,
            rung: NORMAL,
        }
    }
}

impl Transport {
    /// Signed frames-per-frame rate; 0 when paused.
    pub fn speed(&self) -> f64 {
        match (self.playing, self.forward) {
            (false, _) => 0.0,
            (true, true) => SPEEDS[self.rung],
            (true, false) => -SPEEDS[self.rung],
        }
    }

    /// L / J: start at 1× in that direction, or double while already going that way.
    /// With `slower` (Shift): halve instead, starting at 0.5×, down to 0.25×.
    pub fn shuttle(&mut self, forward: bool, slower: bool) {
        let same = self.playing && self.forward == forward;
        self.rung = match (same, slower) {
            (true, false) => (self.rung + 1).min(SPEEDS.len() - 1),
            (true, true) => self.rung.saturating_sub(1),
            (false, false) => NORMAL,
            (false, true) => NORMAL - 1,
        };
        self.forward = forward;
        self.playing = true;
    }

    pub fn pause(&mut self) {
        self.playing = false;
    }

    /// Space: pause, or play forward at normal speed.
    pub fn toggle(&mut self) {
        if self.playing {
            self.playing = false;
        } else {
            *self = Transport {
                playing: true,
                forward: true,
                rung: NORMAL,
            };
        }
    }

    pub fn label(&self) -> String {
        if !self.playing {
            return "paused".into();
        }
        let s = SPEEDS[self.rung];
        format!(
            "{} {s}×",
            if self.forward { "playing" } else { "reversing" }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    To(u32),
    /// The end of the video in the playing direction: playback stops.
    Stop,
}

/// Where playback goes from `cursor` after `delta` frames. Looping wraps inside the sample
/// (a cursor outside it re-enters at the sample's first frame in the playing direction);
/// otherwise playback runs over the video and stops at its ends.
pub fn advance(cursor: u32, delta: i64, sample: (u32, u32), last: u32, looping: bool) -> Advance {
    let (s, e) = (i64::from(sample.0), i64::from(sample.1.max(sample.0)));
    let c = i64::from(cursor);
    if looping {
        if c < s || c > e {
            return Advance::To(if delta >= 0 { s } else { e } as u32);
        }
        let len = e - s + 1;
        return Advance::To((s + (c + delta - s).rem_euclid(len)) as u32);
    }
    let last = i64::from(last);
    if (delta > 0 && c >= last) || (delta < 0 && c <= 0) {
        return Advance::Stop;
    }
    Advance::To((c + delta).clamp(0, last) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l_doubles_up_to_4x_and_j_mirrors_it() {
        let mut t = Transport::default();
        assert_eq!(t.speed(), 0.0);
        let mut seen = Vec::new();
        for _ in 0..5 {
            t.shuttle(true, false);
            seen.push(t.speed());
        }
        assert_eq!(seen, [1.0, 2.0, 4.0, 4.0, 4.0]);
        // J while going forward turns round at normal speed rather than slowing down.
        t.shuttle(false, false);
        assert_eq!(t.speed(), -1.0);
        t.shuttle(false, false);
        assert_eq!(t.speed(), -2.0);
        t.pause();
        assert_eq!(t.speed(), 0.0);
    }

    #[test]
    fn shift_walks_down_to_a_quarter() {
        let mut t = Transport::default();
        let mut seen = Vec::new();
        for _ in 0..4 {
            t.shuttle(true, true);
            seen.push(t.speed());
        }
        assert_eq!(seen, [0.5, 0.25, 0.25, 0.25]);
        t.shuttle(false, true);
        assert_eq!(t.speed(), -0.5);
        // The whole ladder is reachable: 0.25 .. 4 in both directions.
        t.shuttle(false, true);
        for _ in 0..4 {
            t.shuttle(false, false);
        }
        assert_eq!(t.speed(), -4.0);
    }

    #[test]
    fn space_resumes_forward_at_normal_speed() {
        let mut t = Transport::default();
        t.shuttle(false, false);
        t.shuttle(false, false);
        t.toggle();
        assert!(!t.playing);
        t.toggle();
        assert_eq!(t.speed(), 1.0);
    }

    #[test]
    fn looping_wraps_inside_the_sample_both_ways() {
        assert_eq!(advance(10, 1, (10, 20), 99, true), Advance::To(11));
        assert_eq!(advance(20, 1, (10, 20), 99, true), Advance::To(10));
        assert_eq!(advance(19, 4, (10, 20), 99, true), Advance::To(12));
        assert_eq!(advance(10, -1, (10, 20), 99, true), Advance::To(20));
        assert_eq!(advance(11, -4, (10, 20), 99, true), Advance::To(18));
        // Outside the sample (after a seek there) playback re-enters it.
        assert_eq!(advance(50, 1, (10, 20), 99, true), Advance::To(10));
        assert_eq!(advance(3, -1, (10, 20), 99, true), Advance::To(20));
        // A one-frame sample stays put.
        assert_eq!(advance(7, 1, (7, 7), 99, true), Advance::To(7));
    }

    #[test]
    fn without_loop_playback_crosses_the_sample_and_stops_at_the_video_ends() {
        assert_eq!(advance(20, 1, (10, 20), 99, false), Advance::To(21));
        assert_eq!(advance(97, 4, (10, 20), 99, false), Advance::To(99));
        assert_eq!(advance(99, 1, (10, 20), 99, false), Advance::Stop);
        assert_eq!(advance(2, -4, (10, 20), 99, false), Advance::To(0));
        assert_eq!(advance(0, -1, (10, 20), 99, false), Advance::Stop);
    }
}
