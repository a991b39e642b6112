//! The timeline along the bottom of the window: the open clip's whole video with every sample
//! of it as a coloured interval, the open sample's draggable bounds, the cursor and a ruler.
//!
//! Everything is in integer frame indices; x positions are derived from them and mapped back
//! by flooring, never through seconds. Frame `f` occupies `[f, f + 1)` on the frame axis, so a
//! sample `[start, end]` (inclusive) spans `[start, end + 1)` and its handles sit on the frame
//! boundaries `start` and `end + 1`.

use eframe::egui;

use super::clip_view::ClipView;

/// The fewest frames the view may span: enough to tell single frames apart on any video.
pub const MIN_SPAN: f64 = 8.0;
/// Pixels either side of a handle that grab it rather than seek.
const HANDLE_GRAB_PX: f32 = 6.0;

/// Frame axis ↔ screen x for one view of the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameScale {
    /// Frame coordinate at the left edge (fractional while zoomed).
    pub first: f64,
    /// Frames across the width.
    pub span: f64,
    pub left: f32,
    pub width: f32,
}

impl FrameScale {
    pub fn x_of(&self, frame: f64) -> f32 {
        self.left + ((frame - self.first) / self.span * f64::from(self.width)) as f32
    }

    fn frame_coord(&self, x: f32) -> f64 {
        self.first + f64::from(x - self.left) / f64::from(self.width.max(1.0)) * self.span
    }

    /// The frame under `x`, clamped to the video's `n` frames.
    pub fn frame_at(&self, x: f32, n: u32) -> u32 {
        let f = self.frame_coord(x).floor();
        f.clamp(0.0, f64::from(n.saturating_sub(1))) as u32
    }

    /// The frame boundary nearest to `x` (0..=n): where a dragged handle lands.
    pub fn boundary_at(&self, x: f32, n: u32) -> u32 {
        self.frame_coord(x).round().clamp(0.0, f64::from(n)) as u32
    }

    pub fn px_per_frame(&self) -> f32 {
        self.width / self.span as f32
    }

    /// Zooms by `factor` (< 1 zooms in) keeping the frame under `anchor_x` where it is.
    pub fn zoomed(&self, factor: f64, anchor_x: f32, n: u32) -> FrameScale {
        let anchor = self.frame_coord(anchor_x);
        let span = clamp_span(self.span * factor, n);
        let first = anchor - (anchor - self.first) * span / self.span;
        FrameScale {
            first: clamp_first(first, span, n),
            span,
            ..*self
        }
    }

    /// Moves the view by `dx` pixels' worth of frames.
    pub fn panned(&self, dx: f32, n: u32) -> FrameScale {
        let first = self.first - f64::from(dx) / f64::from(self.width.max(1.0)) * self.span;
        FrameScale {
            first: clamp_first(first, self.span, n),
            ..*self
        }
    }

    /// Shifts the view the least so that `frame` is inside it.
    pub fn following(&self, frame: u32, n: u32) -> FrameScale {
        let f = f64::from(frame);
        let first = if f < self.first {
            f
        } else if f + 1.0 > self.first + self.span {
            f + 1.0 - self.span
        } else {
            return *self;
        };
        FrameScale {
            first: clamp_first(first, self.span, n),
            ..*self
        }
    }
}

fn clamp_span(span: f64, n: u32) -> f64 {
    let n = f64::from(n.max(1));
    span.clamp(MIN_SPAN.min(n), n)
}

fn clamp_first(first: f64, span: f64, n: u32) -> f64 {
    first.clamp(0.0, (f64::from(n) - span).max(0.0))
}

/// The view (first, span) that shows frames `start..=end` with a margin either side.
pub fn fit_range(start: u32, end: u32, n: u32) -> (f64, f64) {
    let len = f64::from(end.saturating_sub(start) + 1);
    let span = clamp_span(len * 1.5 + 4.0, n);
    let mid = (f64::from(start) + f64::from(end) + 1.0) / 2.0;
    (clamp_first(mid - span / 2.0, span, n), span)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    Start,
    End,
}

/// The bounds a handle dragged to frame boundary `boundary` gives, clamped so that the sample
/// keeps at least one frame and stays inside the video.
pub fn drag_bounds(handle: Handle, boundary: u32, start: u32, end: u32, n: u32) -> (u32, u32) {
    let last = n.saturating_sub(1);
    match handle {
        Handle::Start => (boundary.min(end).min(last), end),
        Handle::End => (
            start,
            boundary.saturating_sub(1).clamp(start, last.max(start)),
        ),
    }
}

/// The store refuses bad bounds too; this says why before a change is attempted, in words the
/// status line can show.
pub fn validate_bounds(start: u32, end: u32, n: u32) -> Result<(), String> {
    if end < start {
        return Err(format!("end {end} is before start {start}"));
    }
    if end >= n {
        return Err(format!(
            "end {end} is beyond the video's last frame {}",
            n.saturating_sub(1)
        ));
    }
    Ok(())
}

/// Ruler tick spacing in frames: the smallest 1-2-5 step whose labels are `min_px` apart.
pub fn tick_step(px_per_frame: f32, min_px: f32) -> u32 {
    let mut base = 1u32;
    loop {
        for m in [1, 2, 5] {
            let step = base.saturating_mul(m);
            if step as f32 * px_per_frame >= min_px {
                return step;
            }
        }
        match base.checked_mul(10) {
            Some(b) => base = b,
            None => return base,
        }
    }
}

/// A stable colour per class: the same class always gets the same colour in every view.
pub fn class_color(label: Option<u32>) -> egui::Color32 {
    let Some(l) = label else {
        return egui::Color32::from_gray(120);
    };
    let (r, g, b) = PALETTE[l as usize % PALETTE.len()];
    egui::Color32::from_rgb(r, g, b)
}

/// 32 distinguishable colours (Glasbey-like, dark and light greys left out so that unlabeled
/// grey stays unambiguous).
const PALETTE: [(u8, u8, u8); 32] = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (67, 99, 216),
    (245, 130, 49),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (188, 246, 12),
    (250, 190, 190),
    (0, 128, 128),
    (230, 190, 255),
    (154, 99, 36),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (255, 99, 71),
    (0, 191, 255),
    (218, 165, 32),
    (107, 142, 35),
    (199, 21, 133),
    (32, 178, 170),
    (205, 133, 63),
    (123, 104, 238),
    (255, 20, 147),
    (46, 139, 87),
    (210, 105, 30),
    (100, 149, 237),
    (186, 85, 211),
];

/// One sample of the open video as the timeline draws it.
pub struct Interval<'a> {
    pub clip_id: &'a str,
    pub start: u32,
    pub end: u32,
    pub label: Option<u32>,
    pub name: &'a str,
}

/// What the user did on the timeline this frame; the app applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// One completed handle drag: the new bounds of the open sample.
    SetBounds {
        clip_id: String,
        start: u32,
        end: u32,
    },
    /// Open another sample of this video (double-click on its interval).
    Open(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    #[default]
    Sample,
    Video,
}

#[derive(Debug, Clone)]
enum Drag {
    Seek,
    /// A handle drag abandoned with Escape: the rest of the gesture does nothing.
    Cancelled,
    Bounds {
        clip_id: String,
        handle: Handle,
        start: u32,
        end: u32,
    },
}

#[derive(Default)]
pub struct Timeline {
    fit: Fit,
    /// (first, span); `None` until the next frame fits it to the sample or the video.
    view: Option<(f64, f64)>,
    /// What the view was last fitted for: refit when the sample or the video changes.
    fitted_for: Option<(String, u32)>,
    drag: Option<Drag>,
    /// The last refused bounds change, shown until the next drag.
    pub error: Option<String>,
    /// Where the track was drawn and how, for tests that point at frames.
    #[cfg(test)]
    pub last: Option<(egui::Rect, FrameScale)>,
}

pub const HEIGHT: f32 = 104.0;

impl Timeline {
    #[cfg(test)]
    pub fn fit(&self) -> Fit {
        self.fit
    }

    /// "Fit sample" ↔ "fit video".
    pub fn toggle_fit(&mut self) {
        self.fit = match self.fit {
            Fit::Sample => Fit::Video,
            Fit::Video => Fit::Sample,
        };
        self.fitted_for = None;
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        clip: &mut ClipView,
        intervals: &[Interval<'_>],
    ) -> Option<Action> {
        let Some(n) = clip.frame_count().filter(|&n| n > 0) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("indexing the video for the timeline…");
            });
            return None;
        };
        let (start, end) = clip.range();
        let mut action = None;

        ui.horizontal(|ui| {
            let fit_label = match self.fit {
                Fit::Sample => "fit: sample",
                Fit::Video => "fit: video",
            };
            if ui
                .button(fit_label)
                .on_hover_text("F: switch between the sample and the whole video")
                .clicked()
            {
                self.toggle_fit();
            }
            ui.checkbox(&mut clip.loop_sample, "loop sample");
            ui.monospace(format!(
                "frame {:>6} / {}  {}",
                clip.cursor(),
                n - 1,
                clip.transport().label()
            ));
            match &self.drag {
                Some(Drag::Bounds { start, end, .. }) => {
                    ui.strong(format!(
                        "new bounds [{start}, {end}]: release to save, Esc cancels"
                    ));
                }
                _ => {
                    ui.weak(format!("{} [{start}, {end}]", clip.clip_id));
                }
            }
            if let Some(e) = &self.error {
                ui.colored_label(egui::Color32::from_rgb(230, 90, 80), e);
            }
        });

        let width = ui.available_width().max(50.0);
        let (rect, resp) = ui.allocate_exact_size(
            egui::vec2(width, (ui.available_height()).clamp(44.0, 80.0)),
            egui::Sense::click_and_drag(),
        );

        let key = (clip.clip_id.clone(), n);
        let out_of_view = self.view.is_some_and(|(first, span)| {
            f64::from(start) < first || f64::from(end) + 1.0 > first + span
        });
        // New bounds from a drag stay where they were dropped; an undo that moves them out
        // of sight refits.
        if self.view.is_none()
            || self.fitted_for.as_ref() != Some(&key)
            || (self.fit == Fit::Sample && out_of_view && self.drag.is_none())
        {
            self.view = Some(match self.fit {
                Fit::Sample => fit_range(start, end, n),
                Fit::Video => (0.0, f64::from(n)),
            });
            self.fitted_for = Some(key);
        }
        let (first, span) = self.view.unwrap_or((0.0, f64::from(n)));
        let mut scale = FrameScale {
            first,
            span: clamp_span(span, n),
            left: rect.left(),
            width: rect.width(),
        };

        if resp.hovered() {
            // Taken, so that nothing else scrolls with the same wheel turn.
            let (scroll, pointer) = ui.input_mut(|i| {
                (
                    std::mem::take(&mut i.smooth_scroll_delta),
                    i.pointer.hover_pos(),
                )
            });
            if let Some(p) = pointer {
                if scroll.y != 0.0 {
                    scale = scale.zoomed((-f64::from(scroll.y) / 200.0).exp2(), p.x, n);
                }
                if scroll.x != 0.0 {
                    scale = scale.panned(scroll.x, n);
                }
            }
        }

        let hit_handle = |x: f32, s: &FrameScale| -> Option<Handle> {
            let ds = (x - s.x_of(f64::from(start))).abs();
            let de = (x - s.x_of(f64::from(end) + 1.0)).abs();
            match (ds <= HANDLE_GRAB_PX, de <= HANDLE_GRAB_PX) {
                (true, true) if de < ds => Some(Handle::End),
                (true, _) => Some(Handle::Start),
                (false, true) => Some(Handle::End),
                _ => None,
            }
        };

        if resp.drag_started() {
            let origin = ui.input(|i| i.pointer.press_origin());
            self.drag = Some(match origin.and_then(|p| hit_handle(p.x, &scale)) {
                Some(handle) => {
                    self.error = None;
                    Drag::Bounds {
                        clip_id: clip.clip_id.clone(),
                        handle,
                        start,
                        end,
                    }
                }
                None => Drag::Seek,
            });
        }
        if matches!(self.drag, Some(Drag::Bounds { .. }))
            && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Escape))
        {
            self.drag = Some(Drag::Cancelled);
        }
        let pointer = resp.interact_pointer_pos();
        match (&mut self.drag, pointer) {
            (
                Some(Drag::Bounds {
                    handle,
                    start: s,
                    end: e,
                    ..
                }),
                Some(p),
            ) => {
                (*s, *e) = drag_bounds(*handle, scale.boundary_at(p.x, n), start, end, n);
            }
            (Some(Drag::Seek), Some(p)) => clip.seek(scale.frame_at(p.x, n)),
            // A press seeks at once, except on a handle, where it may be the start of a drag.
            (None, Some(p)) if resp.is_pointer_button_down_on() => {
                let origin = ui.input(|i| i.pointer.press_origin());
                if origin.and_then(|o| hit_handle(o.x, &scale)).is_none() {
                    clip.seek(scale.frame_at(p.x, n));
                }
            }
            _ => {}
        }
        if resp.drag_stopped() {
            if let Some(Drag::Bounds {
                clip_id,
                start: s,
                end: e,
                ..
            }) = self.drag.take()
            {
                if clip_id != clip.clip_id {
                    // The sample changed under the drag: the bounds belong to no one now.
                } else if let Err(msg) = validate_bounds(s, e, n) {
                    self.error = Some(format!("bounds not changed: {msg}"));
                } else if (s, e) != (start, end) {
                    action = Some(Action::SetBounds {
                        clip_id,
                        start: s,
                        end: e,
                    });
                }
            }
            self.drag = None;
        }
        if resp.double_clicked() {
            if let Some(p) = pointer.or(resp.hover_pos()) {
                let f = scale.frame_at(p.x, n);
                if let Some(iv) = intervals
                    .iter()
                    .find(|iv| iv.clip_id != clip.clip_id && iv.start <= f && f <= iv.end)
                {
                    action = Some(Action::Open(iv.clip_id.to_string()));
                }
            }
        }
        if clip.transport().playing && self.drag.is_none() {
            scale = scale.following(clip.cursor(), n);
        }
        self.view = Some((scale.first, scale.span));
        #[cfg(test)]
        {
            self.last = Some((rect, scale));
        }

        // While a handle is dragged the open sample is drawn where it would go.
        let shown = match &self.drag {
            Some(Drag::Bounds { start, end, .. }) => (*start, *end),
            _ => (start, end),
        };
        paint(ui, rect, &scale, n, clip, shown, intervals);
        if resp.hovered() && self.drag.is_none() {
            if let Some(p) = resp.hover_pos() {
                if hit_handle(p.x, &scale).is_some() {
                    ui.ctx().set_cursor_icon(egui::CursorIcon::ResizeHorizontal);
                }
            }
        }
        action
    }
}

const RULER_H: f32 = 18.0;

fn paint(
    ui: &egui::Ui,
    rect: egui::Rect,
    scale: &FrameScale,
    n: u32,
    clip: &ClipView,
    (start, end): (u32, u32),
    intervals: &[Interval<'_>],
) {
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    let text = visuals.text_color();
    let weak = visuals.weak_text_color();
    painter.rect_filled(rect, 2.0, visuals.extreme_bg_color);
    let ruler = egui::Rect::from_min_max(rect.min, egui::pos2(rect.right(), rect.top() + RULER_H));
    let track = egui::Rect::from_min_max(
        egui::pos2(rect.left(), ruler.bottom() + 2.0),
        rect.max - egui::vec2(0.0, 2.0),
    );

    // Ruler: labelled major ticks, minor ticks at a fifth where they do not crowd.
    let ppf = scale.px_per_frame();
    let major = tick_step(ppf, 70.0);
    let minor = [major / 5, major / 2, major]
        .into_iter()
        .find(|&m| m >= 1 && m as f32 * ppf >= 6.0 && major % m == 0)
        .unwrap_or(major);
    let lo = scale.first.max(0.0) as u32;
    let hi = ((scale.first + scale.span).ceil() as u32).min(n);
    let font = egui::FontId::monospace(10.0);
    let mut f = lo - lo % minor;
    while f <= hi {
        // Ticks sit at the middle of their frame: that is where the cursor line is drawn.
        let x = scale.x_of(f64::from(f) + 0.5);
        if f % major == 0 {
            painter.line_segment(
                [
                    egui::pos2(x, ruler.bottom() - 7.0),
                    egui::pos2(x, ruler.bottom()),
                ],
                egui::Stroke::new(1.0, text),
            );
            // The cursor's own label covers this part of the ruler.
            let cursor_x = scale.x_of(f64::from(clip.cursor()) + 0.5);
            if (x + 2.0 - cursor_x).abs() > 40.0 {
                painter.text(
                    egui::pos2(x + 2.0, ruler.top()),
                    egui::Align2::LEFT_TOP,
                    f.to_string(),
                    font.clone(),
                    weak,
                );
            }
        } else {
            painter.line_segment(
                [
                    egui::pos2(x, ruler.bottom() - 3.0),
                    egui::pos2(x, ruler.bottom()),
                ],
                egui::Stroke::new(1.0, weak),
            );
        }
        f += minor;
    }

    // The video's extent (its ends may be inside the view when zoomed out).
    let video =
        egui::Rect::from_x_y_ranges(scale.x_of(0.0)..=scale.x_of(f64::from(n)), track.y_range())
            .intersect(track);
    painter.rect_filled(video, 2.0, visuals.faint_bg_color);

    let label_font = egui::FontId::proportional(11.0);
    let draw = |iv_start: u32, iv_end: u32, label: Option<u32>, name: &str, open: bool| {
        let r = egui::Rect::from_x_y_ranges(
            scale.x_of(f64::from(iv_start))..=scale.x_of(f64::from(iv_end) + 1.0),
            if open {
                track.y_range()
            } else {
                egui::Rangef::new(track.top() + 6.0, track.bottom() - 6.0)
            },
        );
        if r.right() < rect.left() || r.left() > rect.right() {
            return;
        }
        let color = class_color(label);
        let ink = if color.intensity() > 0.45 {
            egui::Color32::BLACK
        } else {
            egui::Color32::WHITE
        };
        painter.rect_filled(r, 2.0, color.gamma_multiply(if open { 0.9 } else { 0.55 }));
        if open {
            painter.rect_stroke(
                r,
                2.0,
                egui::Stroke::new(2.0, egui::Color32::WHITE),
                egui::StrokeKind::Inside,
            );
        }
        let visible = r.intersect(rect);
        if visible.width() > 30.0 {
            // One line, cut with an ellipsis: a wrapped name would spill out of a short bar.
            let mut job =
                egui::text::LayoutJob::simple_singleline(name.to_string(), label_font.clone(), ink);
            job.wrap = egui::text::TextWrapping::truncate_at_width(visible.width() - 6.0);
            let galley = painter.layout_job(job);
            let pos = egui::pos2(visible.left() + 3.0, r.center().y - galley.size().y / 2.0);
            painter
                .with_clip_rect(visible.shrink(1.0))
                .galley(pos, galley, ink);
        }
    };
    for iv in intervals.iter().filter(|iv| iv.clip_id != clip.clip_id) {
        draw(iv.start, iv.end, iv.label, iv.name, false);
    }
    if let Some(iv) = intervals.iter().find(|iv| iv.clip_id == clip.clip_id) {
        draw(start, end, iv.label, iv.name, true);
    }

    // Handles on the open sample's first and after-last frame boundaries.
    for b in [start, end + 1] {
        let x = scale.x_of(f64::from(b));
        if !(rect.left() - 1.0..=rect.right() + 1.0).contains(&x) {
            continue;
        }
        let h = egui::Rect::from_center_size(
            egui::pos2(x, track.center().y),
            egui::vec2(5.0, track.height()),
        );
        painter.rect_filled(h, 1.0, egui::Color32::WHITE);
        painter.rect_stroke(
            h,
            1.0,
            egui::Stroke::new(1.0, egui::Color32::BLACK),
            egui::StrokeKind::Inside,
        );
    }

    // Cursor: a line through the middle of its frame, and a frame-wide band when zoomed in far
    // enough that a frame is wider than the line.
    let c = clip.cursor();
    let cx = scale.x_of(f64::from(c) + 0.5);
    if ppf >= 4.0 {
        let band = egui::Rect::from_x_y_ranges(
            scale.x_of(f64::from(c))..=scale.x_of(f64::from(c) + 1.0),
            rect.y_range(),
        );
        painter.rect_filled(
            band,
            0.0,
            egui::Color32::from_rgba_unmultiplied(255, 80, 60, 40),
        );
    }
    let cursor_color = egui::Color32::from_rgb(255, 80, 60);
    painter.line_segment(
        [egui::pos2(cx, rect.top()), egui::pos2(cx, rect.bottom())],
        egui::Stroke::new(1.5, cursor_color),
    );
    let label = painter.layout_no_wrap(c.to_string(), font, egui::Color32::WHITE);
    let w = label.size().x + 6.0;
    // Keep the number on screen at the ends of the track.
    let lx = (cx - w / 2.0).clamp(rect.left(), rect.right() - w);
    let lr = egui::Rect::from_min_size(egui::pos2(lx, rect.top()), egui::vec2(w, 13.0));
    painter.rect_filled(lr, 2.0, cursor_color);
    painter.galley(
        egui::pos2(lx + 3.0, rect.top()),
        label,
        egui::Color32::WHITE,
    );
}

impl super::MgApp {
    /// Keeps the open clip's bounds equal to the store's (after a drag, an undo or a redo).
    pub(super) fn sync_clip_range(&mut self) {
        let range = self.current().map(|s| (s.clip_id.clone(), s.start, s.end));
        if let (Some(c), Some((id, start, end))) = (self.clip.as_mut(), range) {
            if c.clip_id == id && c.range() != (start, end) {
                c.set_range(start, end);
            }
        }
    }

    pub(super) fn timeline_panel(&mut self, ui: &mut egui::Ui) {
        let Some(clip) = self.clip.as_mut() else {
            ui.weak("The timeline shows the open sample's whole video.");
            return;
        };
        let tax = self.dataset.as_ref().map(|d| d.taxonomy());
        let intervals: Vec<Interval<'_>> = self
            .samples
            .iter()
            .filter(|s| s.video == clip.video())
            .map(|s| Interval {
                clip_id: &s.clip_id,
                start: s.start,
                end: s.end,
                label: s.label,
                name: match (s.label, tax) {
                    (Some(l), Some(t)) => t.name_of(l),
                    _ => "unlabeled",
                },
            })
            .collect();
        let action = self.timeline.ui(ui, clip, &intervals);
        drop(intervals);
        match action {
            Some(Action::SetBounds {
                clip_id,
                start,
                end,
            }) => {
                let before = self.error.clone();
                if self.current().is_some_and(|s| s.clip_id == clip_id) {
                    self.act(|ds, clip, who| ds.set_bounds(clip, start, end, who));
                }
                if self.error != before {
                    self.timeline.error.clone_from(&self.error);
                }
                self.sync_clip_range();
            }
            Some(Action::Open(clip_id)) => {
                self.pending_select = self.samples.iter().position(|s| s.clip_id == clip_id);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(first: f64, span: f64) -> FrameScale {
        FrameScale {
            first,
            span,
            left: 100.0,
            width: 1000.0,
        }
    }

    #[test]
    fn whole_video_maps_frames_to_pixels_and_back() {
        let s = scale(0.0, 1000.0);
        assert_eq!(s.x_of(0.0), 100.0);
        assert_eq!(s.x_of(500.0), 600.0);
        assert_eq!(s.frame_at(600.0, 1000), 500);
        assert_eq!(s.frame_at(600.99, 1000), 500);
        assert_eq!(s.frame_at(601.0, 1000), 501);
        // Past either end: the first or last frame, never out of the video.
        assert_eq!(s.frame_at(0.0, 1000), 0);
        assert_eq!(s.frame_at(5000.0, 1000), 999);
    }

    #[test]
    fn every_frame_is_hit_at_the_tightest_zoom_of_a_long_video() {
        let n = 100_000;
        let s = scale(54_321.0, MIN_SPAN);
        let ppf = s.px_per_frame();
        assert_eq!(ppf, 125.0);
        for k in 0..8u32 {
            let mid = s.x_of(f64::from(54_321 + k) + 0.5);
            assert_eq!(s.frame_at(mid, n), 54_321 + k);
        }
        // Zoomed out on the same video, one pixel covers 100 frames, still integers.
        let out = scale(0.0, f64::from(n));
        assert_eq!(out.frame_at(101.0, n), 100);
        assert_eq!(out.frame_at(100.0 + 999.999, n), 99_999);
    }

    #[test]
    fn wheel_zoom_keeps_the_frame_under_the_pointer() {
        let n = 10_000;
        let s = scale(1000.0, 2000.0);
        let anchor_x = 350.0; // frame 1500
        assert_eq!(s.frame_at(anchor_x, n), 1500);
        let z = s.zoomed(0.25, anchor_x, n);
        assert_eq!(z.span, 500.0);
        assert_eq!(z.frame_at(anchor_x, n), 1500);
        assert!((z.x_of(1500.0) - anchor_x).abs() < 1e-3);
        // Zooming in further stops at MIN_SPAN, out at the whole video.
        let tight = z.zoomed(1e-6, anchor_x, n);
        assert_eq!(tight.span, MIN_SPAN);
        let wide = s.zoomed(1e6, anchor_x, n);
        assert_eq!((wide.first, wide.span), (0.0, 10_000.0));
    }

    #[test]
    fn pan_and_follow_stay_inside_the_video() {
        let n = 1000;
        let s = scale(100.0, 200.0);
        assert_eq!(s.panned(500.0, n).first, 0.0);
        assert_eq!(s.panned(-5000.0, n).first, 800.0);
        assert_eq!(s.following(150, n), s);
        assert_eq!(s.following(350, n).first, 151.0);
        assert_eq!(s.following(20, n).first, 20.0);
    }

    #[test]
    fn fit_sample_centres_it_with_a_margin() {
        let (first, span) = fit_range(100, 149, 1500);
        assert_eq!(span, 79.0);
        assert!(first < 100.0 && first + span > 150.0);
        // Near the start of the video the view is pushed inside it.
        assert_eq!(fit_range(0, 9, 1500).0, 0.0);
        // A video shorter than the margin shows whole.
        assert_eq!(fit_range(0, 3, 5), (0.0, 5.0));
    }

    #[test]
    fn dragging_a_handle_clamps_to_the_sample_and_the_video() {
        let n = 1500;
        // Start handle on boundary 90 → start 90.
        assert_eq!(drag_bounds(Handle::Start, 90, 100, 149, n), (90, 149));
        // Past the end: the sample keeps one frame.
        assert_eq!(drag_bounds(Handle::Start, 400, 100, 149, n), (149, 149));
        // End handle on boundary 160 → last frame 159.
        assert_eq!(drag_bounds(Handle::End, 160, 100, 149, n), (100, 159));
        assert_eq!(drag_bounds(Handle::End, 0, 100, 149, n), (100, 100));
        assert_eq!(drag_bounds(Handle::End, n, 100, 149, n), (100, n - 1));
        // Boundaries come from the pointer already clamped to 0..=n.
        let s = scale(0.0, f64::from(n));
        assert_eq!(s.boundary_at(-50.0, n), 0);
        assert_eq!(s.boundary_at(5000.0, n), n);
    }

    #[test]
    fn bounds_validation_names_the_problem() {
        assert_eq!(validate_bounds(10, 20, 100), Ok(()));
        assert_eq!(validate_bounds(10, 10, 100), Ok(()));
        assert_eq!(
            validate_bounds(20, 10, 100),
            Err("end 10 is before start 20".into())
        );
        assert_eq!(
            validate_bounds(10, 100, 100),
            Err("end 100 is beyond the video's last frame 99".into())
        );
    }

    #[test]
    fn ruler_steps_are_1_2_5_and_far_enough_apart() {
        assert_eq!(tick_step(100.0, 70.0), 1);
        assert_eq!(tick_step(40.0, 70.0), 2);
        assert_eq!(tick_step(20.0, 70.0), 5);
        assert_eq!(tick_step(1.0, 70.0), 100);
        assert_eq!(tick_step(0.01, 70.0), 10_000);
    }

    #[test]
    fn class_colours_are_stable_and_distinct() {
        assert_eq!(class_color(Some(3)), class_color(Some(3)));
        assert_eq!(class_color(Some(3)), class_color(Some(35)));
        let all: std::collections::HashSet<_> = (0..32).map(|c| class_color(Some(c))).collect();
        assert_eq!(all.len(), 32);
        assert!(!all.contains(&class_color(None)));
    }
}
