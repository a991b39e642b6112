//! The modality panes: RGB, optical flow, depth, Taylor, joint and limb heatmaps of the open
//! clip, all at the frame the RGB pane shows, with one zoom/pan for all. Each pane is a wgpu
//! draw (`render::PaneRenderer`, shaders in `shaders/`) composited through an egui paint
//! callback. The derived modalities come from the extraction cache when it has the clip, and
//! otherwise from a background job per clip; a pane says which phase that job is in meanwhile
//! ("decoding… 12/48 frames", "computing Taylor… 40%") and the window never waits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eframe::egui;
use eframe::egui_wgpu;

use crate::dataset::{Keypoints, Sample, Skeleton};
use crate::extract::{output_path, Modality, OutFormat};
use crate::media::decode::{RgbFrame, VideoReader};
use crate::modality::heatmap::{self, HeatmapParams, PoseArrays};
use crate::modality::{depth, flow, npy, taylor};
use crate::render::{Colormap, PaneImage, PaneKind, PaneParams, PaneRenderer};
use crate::store::Dataset;

/// Longest stretch of a sample the job computes (frames); longer samples get their first
/// `MAX_FRAMES` and say so.
const MAX_FRAMES: usize = 900;
/// Memory the derived frames of one clip may take (bytes).
const CLIP_BUDGET: usize = 3 << 30;
/// Heatmap canvases are at most this many pixels on their long side.
const HEATMAP_SIDE: f64 = 256.0;

/// A pane image with a name, so the renderer uploads each image once.
pub struct Stamped {
    pub stamp: u64,
    pub image: PaneImage,
}

fn stamped(image: PaneImage) -> Option<Arc<Stamped>> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    image.validate().ok()?;
    Some(Arc::new(Stamped {
        stamp: NEXT.fetch_add(1, Ordering::Relaxed),
        image,
    }))
}

#[derive(Clone, Debug, PartialEq)]
enum TrackState {
    /// The job has not reached this modality's first step yet.
    Waiting,
    /// A step before the frames: reading the extraction cache, loading a model.
    Preparing(&'static str),
    /// The sample's frames are being decoded for the modalities the cache lacks.
    Decoding {
        done: usize,
        total: usize,
    },
    /// Frames decoded; another modality is being computed first.
    Queued,
    Running {
        done: usize,
        total: usize,
    },
    Done,
    Unavailable(String),
}

impl TrackState {
    /// The pane's line while `what` (the pane's name) has no frame to show; `None` once done.
    fn describe(&self, what: &str) -> Option<String> {
        match self {
            TrackState::Waiting => Some("starting…".into()),
            TrackState::Preparing(step) => Some(format!("{step}…")),
            TrackState::Decoding { done, total } => {
                Some(format!("decoding… {done}/{total} frames"))
            }
            TrackState::Queued => Some(format!("frames decoded; {what} is next…")),
            TrackState::Running { done, total } => Some(format!(
                "computing {what}… {}%",
                done * 100 / (*total).max(1)
            )),
            TrackState::Done => None,
            TrackState::Unavailable(why) => Some(why.clone()),
        }
    }

    fn busy(&self) -> bool {
        !matches!(self, TrackState::Done | TrackState::Unavailable(_))
    }
}

/// One derived modality of the open clip: a frame per sample frame (Taylor and flow have fewer:
/// their frame k starts at sample frame k).
struct Track {
    frames: Vec<Option<Arc<Stamped>>>,
    state: TrackState,
    /// Where the frames came from, for the pane's tooltip.
    source: &'static str,
    /// Flow: the largest vector length of each frame (the automatic normalisation).
    max_len: Vec<f32>,
}

impl Default for Track {
    fn default() -> Self {
        Track {
            frames: Vec::new(),
            state: TrackState::Waiting,
            source: "",
            max_len: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Shared {
    taylor: Track,
    flow: Track,
    depth: Track,
    joint: Track,
    limb: Track,
    /// Frames computed (< the sample's length when it is longer than the budget allows).
    limit: Option<usize>,
}

impl Shared {
    fn track(&self, k: PaneKind) -> Option<&Track> {
        match k {
            PaneKind::Rgb => None,
            PaneKind::Flow => Some(&self.flow),
            PaneKind::Depth => Some(&self.depth),
            PaneKind::Taylor => Some(&self.taylor),
            PaneKind::Joint => Some(&self.joint),
            PaneKind::Limb => Some(&self.limb),
        }
    }

    fn track_mut(&mut self, m: Modality) -> &mut Track {
        match m {
            Modality::Taylor => &mut self.taylor,
            Modality::Flow => &mut self.flow,
            Modality::Depth => &mut self.depth,
            Modality::Joint => &mut self.joint,
            Modality::Limb => &mut self.limb,
        }
    }
}

struct Job {
    clip_id: String,
    root: PathBuf,
    media: Option<PathBuf>,
    start: u32,
    end: u32,
    keypoints: Option<Keypoints>,
    /// The video's frame size (the keypoints' coordinate frame).
    size: Option<(u32, u32)>,
    depth_weights: Option<PathBuf>,
}

struct ClipJob {
    key: (String, u32, u32),
    shared: Arc<Mutex<Shared>>,
    cancel: Arc<AtomicBool>,
}

impl Drop for ClipJob {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn set_state(shared: &Mutex<Shared>, m: Modality, st: TrackState) {
    lock(shared).track_mut(m).state = st;
}

/// The clip's derived modalities, in the order that makes something visible soonest.
fn compute(job: Job, shared: Arc<Mutex<Shared>>, cancel: Arc<AtomicBool>, repaint: impl Fn()) {
    let n = (job.end - job.start + 1) as usize;
    heatmaps(&job, &shared);
    repaint();
    let Some(media) = job.media.clone() else {
        for m in [Modality::Taylor, Modality::Flow, Modality::Depth] {
            set_state(
                &shared,
                m,
                TrackState::Unavailable("the video has no media file".into()),
            );
        }
        return;
    };
    // The extraction cache first: exact values written by `mgscope extract --format npy`.
    let mut needed = Vec::new();
    for m in [Modality::Taylor, Modality::Flow, Modality::Depth] {
        set_state(
            &shared,
            m,
            TrackState::Preparing("reading the extraction cache"),
        );
    }
    repaint();
    for m in [Modality::Taylor, Modality::Flow, Modality::Depth] {
        if !from_cache(&job, m, &shared) {
            needed.push(m);
        }
    }
    repaint();
    let depth_model = if needed.contains(&Modality::Depth) {
        set_state(
            &shared,
            Modality::Depth,
            TrackState::Preparing("loading the depth model"),
        );
        repaint();
        match load_depth(job.depth_weights.as_deref()) {
            Ok(model) => Some(model),
            Err(e) => {
                set_state(&shared, Modality::Depth, TrackState::Unavailable(e));
                needed.retain(|m| *m != Modality::Depth);
                None
            }
        }
    } else {
        None
    };
    if needed.is_empty() {
        return;
    }
    // Decode the sample's frames once for every modality still needed.
    let decoding = |done: usize, total: usize| {
        let mut g = lock(&shared);
        for m in &needed {
            g.track_mut(*m).state = TrackState::Decoding { done, total };
        }
    };
    decoding(0, n.min(MAX_FRAMES));
    repaint();
    let mut reader = match VideoReader::open(&media) {
        Ok(r) => r,
        Err(e) => {
            for m in &needed {
                set_state(
                    &shared,
                    *m,
                    TrackState::Unavailable(format!("cannot decode: {e}")),
                );
            }
            return;
        }
    };
    let mut frames: Vec<RgbFrame> = Vec::new();
    let mut limit = n.min(MAX_FRAMES);
    for i in 0..n {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        match reader.frame(job.start as usize + i) {
            Ok(f) => {
                if i == 0 {
                    // Per frame: RGB 3 + Taylor 3 + flow 8 + depth 1 bytes a pixel, plus the
                    // decoded frame itself.
                    let per = f.width as usize * f.height as usize * 18;
                    limit = limit.min((CLIP_BUDGET / per.max(1)).max(2));
                }
                frames.push(f);
            }
            Err(e) => {
                // Frames decoded before damage stay usable.
                if frames.is_empty() {
                    for m in &needed {
                        set_state(
                            &shared,
                            *m,
                            TrackState::Unavailable(format!("cannot decode: {e}")),
                        );
                    }
                    return;
                }
                break;
            }
        }
        if frames.len() >= limit {
            break;
        }
        decoding(frames.len(), limit);
        if i % 4 == 0 {
            repaint();
        }
    }
    if frames.len() < n {
        lock(&shared).limit = Some(frames.len());
    }
    {
        let mut g = lock(&shared);
        for m in &needed {
            g.track_mut(*m).state = TrackState::Queued;
        }
    }
    repaint();
    for m in needed {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let r = match m {
            Modality::Taylor => taylor_track(&frames, &shared),
            Modality::Flow => flow_track(&frames, &shared, &cancel, &repaint),
            Modality::Depth => match &depth_model {
                Some(model) => depth_track(&frames, model, &shared, &cancel, &repaint),
                None => Ok(()),
            },
            Modality::Joint | Modality::Limb => Ok(()),
        };
        if let Err(e) = r {
            set_state(&shared, m, TrackState::Unavailable(e));
        }
        repaint();
    }
}

fn load_depth(explicit: Option<&std::path::Path>) -> Result<depth::DepthModel, String> {
    let path = depth::DepthModel::locate(explicit).map_err(|e| e.to_string())?;
    let encoder = match std::env::var("MGSCOPE_DEPTH_ENCODER").as_deref() {
        Ok("base") => depth::Encoder::Base,
        Ok("large") => depth::Encoder::Large,
        _ => depth::Encoder::Small,
    };
    depth::DepthModel::load(&path, encoder, &candle_core::Device::Cpu).map_err(|e| e.to_string())
}

/// Frames from `mgscope extract --format npy` when the clip has them and they read back whole.
fn from_cache(job: &Job, m: Modality, shared: &Mutex<Shared>) -> bool {
    let path = output_path(&job.root, m, &job.clip_id, OutFormat::Npy);
    if !path.is_file() {
        return false;
    }
    let frames: Option<Vec<Option<Arc<Stamped>>>> = match m {
        Modality::Taylor => npy::read_npy_as::<u8>(&path)
            .ok()
            .and_then(|(shape, data)| {
                let [t, h, w, 3] = shape[..] else { return None };
                Some(
                    data.chunks(h * w * 3)
                        .take(t)
                        .map(|c| {
                            stamped(PaneImage::Rgb {
                                width: w as u32,
                                height: h as u32,
                                rgb: c.to_vec(),
                            })
                        })
                        .collect(),
                )
            }),
        Modality::Flow => npy::read_npy_as::<f32>(&path)
            .ok()
            .and_then(|(shape, data)| {
                let [t, h, w, 2] = shape[..] else { return None };
                let fields: Vec<flow::FlowField> = data
                    .chunks(h * w * 2)
                    .take(t)
                    .filter_map(|c| flow::FlowField::new(w, h, c.to_vec()).ok())
                    .collect();
                lock(shared).flow.max_len =
                    fields.iter().map(flow::FlowField::max_magnitude).collect();
                Some(
                    fields
                        .into_iter()
                        .map(|f| {
                            stamped(PaneImage::Flow {
                                width: w as u32,
                                height: h as u32,
                                uv: f.data,
                            })
                        })
                        .collect(),
                )
            }),
        Modality::Depth => npy::read_npy_as::<f32>(&path)
            .ok()
            .and_then(|(shape, data)| {
                let [t, h, w] = shape[..] else { return None };
                let d: Vec<Vec<f32>> = data.chunks(h * w).take(t).map(<[f32]>::to_vec).collect();
                Some(
                    depth::clip_to_u8(&d)
                        .into_iter()
                        .map(|g| {
                            stamped(PaneImage::Gray {
                                width: w as u32,
                                height: h as u32,
                                data: g,
                            })
                        })
                        .collect(),
                )
            }),
        Modality::Joint | Modality::Limb => None,
    };
    let Some(frames) = frames else { return false };
    let mut g = lock(shared);
    let t = g.track_mut(m);
    t.frames = frames;
    t.state = TrackState::Done;
    t.source = "extraction cache";
    true
}

/// Joint and limb volumes in frame coordinates (so they line up with the other panes), on a
/// canvas at most `HEATMAP_SIDE` pixels long with σ scaled as if the 64-pixel training crop
/// were the whole frame. The exact 64×64 training volumes are what `extract --modality joint`
/// writes.
fn heatmaps(job: &Job, shared: &Mutex<Shared>) {
    let Some(k) = &job.keypoints else {
        for m in [Modality::Joint, Modality::Limb] {
            set_state(
                shared,
                m,
                TrackState::Unavailable("this clip has no keypoints".into()),
            );
        }
        return;
    };
    let skeleton = match k.joints {
        36 => heatmap::imigue36(),
        17 => heatmap::coco17(),
        v => {
            for m in [Modality::Joint, Modality::Limb] {
                set_state(
                    shared,
                    m,
                    TrackState::Unavailable(format!(
                        "{v} keypoints: heatmaps need 36 (iMiGUE) or 17 (COCO)"
                    )),
                );
            }
            return;
        }
    };
    let Some((w, h)) = job
        .size
        .map(|(w, h)| (f64::from(w.max(1)), f64::from(h.max(1))))
    else {
        for m in [Modality::Joint, Modality::Limb] {
            set_state(
                shared,
                m,
                TrackState::Unavailable("the video's frame size is unknown".into()),
            );
        }
        return;
    };
    let scaling = (HEATMAP_SIDE / w.max(h)).min(1.0);
    let sigma = 0.6 * (w.max(h) * scaling) / 64.0;
    let (xy, sc) = k.to_pyskl();
    for (m, limb) in [(Modality::Joint, false), (Modality::Limb, true)] {
        set_state(shared, m, TrackState::Running { done: 0, total: 1 });
        let mut params = if limb {
            HeatmapParams::limb(sigma)
        } else {
            HeatmapParams::joint(sigma)
        };
        params.scaling = scaling;
        params.threads = 1;
        let r = heatmap::generate_pose_target(
            PoseArrays {
                keypoints: &xy,
                scores: Some(&sc),
                num_persons: k.persons,
                num_frames: k.frames,
                num_keypoints: k.joints,
            },
            h as usize,
            w as usize,
            &skeleton,
            &params,
        );
        let mut g = lock(shared);
        let t = g.track_mut(m);
        match r {
            Ok(hm) => {
                let [frames, c, hh, ww] = hm.shape;
                t.frames = hm
                    .data
                    .chunks(c * hh * ww)
                    .take(frames)
                    .map(|f| {
                        stamped(PaneImage::Stack {
                            width: ww as u32,
                            height: hh as u32,
                            layers: c as u32,
                            data: f
                                .iter()
                                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                                .collect(),
                        })
                    })
                    .collect();
                t.state = TrackState::Done;
                t.source = "computed for this clip";
            }
            Err(e) => t.state = TrackState::Unavailable(e.to_string()),
        }
    }
}

fn taylor_track(frames: &[RgbFrame], shared: &Mutex<Shared>) -> Result<(), String> {
    let params = taylor::TaylorParams::mm_gesture();
    let (w, h) = (frames[0].width as usize, frames[0].height as usize);
    if frames.len() < params.window() {
        return Err(format!(
            "the clip has {} frames; a Taylor frame needs a window of {} (K = {} terms + 3)",
            frames.len(),
            params.window(),
            params.window() - 3
        ));
    }
    set_state(
        shared,
        Modality::Taylor,
        TrackState::Running { done: 0, total: 1 },
    );
    let rgb: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
    let tv = taylor::taylor_video(&rgb, frames.len(), h, w, &params).map_err(|e| e.to_string())?;
    let mut g = lock(shared);
    g.taylor.frames = tv
        .data
        .chunks(h * w * 3)
        .map(|c| {
            stamped(PaneImage::Rgb {
                width: w as u32,
                height: h as u32,
                rgb: c.to_vec(),
            })
        })
        .collect();
    g.taylor.state = TrackState::Done;
    g.taylor.source = "computed for this clip (MM-Gesture normalisation, K = 3)";
    Ok(())
}

fn flow_track(
    frames: &[RgbFrame],
    shared: &Mutex<Shared>,
    cancel: &AtomicBool,
    repaint: &impl Fn(),
) -> Result<(), String> {
    if frames.len() < 2 {
        return Err("flow needs at least 2 frames".into());
    }
    let (w, h) = (frames[0].width as usize, frames[0].height as usize);
    let mut dis = flow::DisFlow::new(flow::DisParams::medium()).map_err(|e| e.to_string())?;
    let total = frames.len() - 1;
    set_state(
        shared,
        Modality::Flow,
        TrackState::Running { done: 0, total },
    );
    repaint();
    let mut prev = flow::rgb_to_gray(&frames[0].data, w, h).map_err(|e| e.to_string())?;
    for (i, f) in frames[1..].iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let next = flow::rgb_to_gray(&f.data, w, h).map_err(|e| e.to_string())?;
        let field = dis.calc(&prev, &next).map_err(|e| e.to_string())?;
        prev = next;
        let len = field.max_magnitude();
        let img = stamped(PaneImage::Flow {
            width: w as u32,
            height: h as u32,
            uv: field.data,
        });
        let mut g = lock(shared);
        g.flow.frames.push(img);
        g.flow.max_len.push(len);
        g.flow.state = TrackState::Running { done: i + 1, total };
        drop(g);
        if i % 4 == 0 {
            repaint();
        }
    }
    let mut g = lock(shared);
    g.flow.state = TrackState::Done;
    g.flow.source = "computed for this clip (DIS, medium preset)";
    Ok(())
}

fn depth_track(
    frames: &[RgbFrame],
    model: &depth::DepthModel,
    shared: &Mutex<Shared>,
    cancel: &AtomicBool,
    repaint: &impl Fn(),
) -> Result<(), String> {
    let (w, h) = (frames[0].width as usize, frames[0].height as usize);
    set_state(
        shared,
        Modality::Depth,
        TrackState::Running {
            done: 0,
            total: frames.len(),
        },
    );
    repaint();
    let mut out = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        out.push(model.infer(&f.data, w, h).map_err(|e| e.to_string())?);
        set_state(
            shared,
            Modality::Depth,
            TrackState::Running {
                done: i + 1,
                total: frames.len(),
            },
        );
        repaint();
    }
    // Per-clip min/max to 8 bit, as MM-Gesture's depth videos.
    let q = depth::clip_to_u8(&out);
    let mut g = lock(shared);
    g.depth.frames = q
        .into_iter()
        .map(|data| {
            stamped(PaneImage::Gray {
                width: w as u32,
                height: h as u32,
                data,
            })
        })
        .collect();
    g.depth.state = TrackState::Done;
    g.depth.source = "computed for this clip (Depth Anything V2)";
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Arrangement {
    Grid,
    Row,
    Column,
}

/// What the user chose for the panes; remembered between sessions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PaneSettings {
    pub visible: Vec<PaneKind>,
    pub arrangement: Arrangement,
    pub skeleton: bool,
    pub flow_auto: bool,
    pub flow_max: f32,
    pub depth_range: [f32; 2],
    pub depth_colormap: Colormap,
    pub taylor_gain: [f32; 3],
    /// 0 = all three channels, 1..3 = one.
    pub taylor_channel: u32,
    pub heat_one: bool,
    pub joint_channel: u32,
    pub limb_channel: u32,
    pub heat_colormap: Colormap,
    pub heat_gain: f32,
}

impl Default for PaneSettings {
    fn default() -> Self {
        PaneSettings {
            visible: vec![
                PaneKind::Rgb,
                PaneKind::Flow,
                PaneKind::Taylor,
                PaneKind::Joint,
            ],
            arrangement: Arrangement::Grid,
            skeleton: true,
            flow_auto: true,
            flow_max: 4.0,
            depth_range: [0.0, 1.0],
            depth_colormap: Colormap::Turbo,
            taylor_gain: [1.0; 3],
            taylor_channel: 0,
            heat_one: false,
            joint_channel: 0,
            limb_channel: 0,
            heat_colormap: Colormap::Inferno,
            heat_gain: 1.0,
        }
    }
}

/// Zoom and pan shared by every pane: the centre of the view in texture coordinates and the
/// magnification (1 = the whole frame fits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub center: [f32; 2],
    pub zoom: f32,
}

impl Default for View {
    fn default() -> Self {
        View {
            center: [0.5, 0.5],
            zoom: 1.0,
        }
    }
}

impl View {
    pub fn uv_rect(&self) -> ([f32; 2], [f32; 2]) {
        let half = 0.5 / self.zoom;
        (
            [self.center[0] - half, self.center[1] - half],
            [self.center[0] + half, self.center[1] + half],
        )
    }

    /// Zooms by `factor` keeping the image point under `at` (0..1 across the pane) fixed.
    pub fn zoom_at(&mut self, factor: f32, at: [f32; 2]) {
        let (min, max) = self.uv_rect();
        let p = [
            min[0] + at[0] * (max[0] - min[0]),
            min[1] + at[1] * (max[1] - min[1]),
        ];
        let zoom = (self.zoom * factor).clamp(1.0, 64.0);
        let half = 0.5 / zoom;
        self.center = [
            p[0] + (0.5 - at[0]) * 2.0 * half,
            p[1] + (0.5 - at[1]) * 2.0 * half,
        ];
        self.zoom = zoom;
        self.clamp();
    }

    /// Pans by a drag of `delta` pane widths/heights.
    pub fn pan(&mut self, delta: [f32; 2]) {
        self.center[0] -= delta[0] / self.zoom;
        self.center[1] -= delta[1] / self.zoom;
        self.clamp();
    }

    /// Keeps some of the image in view.
    fn clamp(&mut self) {
        let half = 0.5 / self.zoom;
        for c in &mut self.center {
            *c = c.clamp(half.min(0.5), (1.0 - half).max(0.5));
        }
    }

    /// Where image point `p` (0..1) lands inside `rect`.
    pub fn to_screen(self, rect: egui::Rect, p: [f32; 2]) -> egui::Pos2 {
        let (min, max) = self.uv_rect();
        egui::pos2(
            rect.min.x + (p[0] - min[0]) / (max[0] - min[0]) * rect.width(),
            rect.min.y + (p[1] - min[1]) / (max[1] - min[1]) * rect.height(),
        )
    }
}

/// The paint callback of one pane: uploads its image when it changed, then draws.
struct PaneCallback {
    id: u64,
    kind: PaneKind,
    image: Arc<Stamped>,
    params: PaneParams,
}

impl egui_wgpu::CallbackTrait for PaneCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(r) = resources.get_mut::<PaneRenderer>() {
            if r.stamp(self.id) != Some(self.image.stamp) {
                // Images are validated when made; a failure here leaves the old texture.
                let _ = r.upload(device, queue, self.id, &self.image.image, self.image.stamp);
            }
            r.set_params(queue, self.id, &self.params);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(r) = resources.get::<PaneRenderer>() {
            r.draw(pass, self.id, self.kind);
        }
    }
}

/// Registers the pane renderer with eframe's wgpu state (once, at start-up).
pub fn install(cc: &eframe::CreationContext<'_>) {
    if let Some(rs) = cc.wgpu_render_state.as_ref() {
        let r = PaneRenderer::new(&rs.device, rs.target_format);
        rs.renderer.write().callback_resources.insert(r);
    }
}

/// What the clip view gives the panes for one frame.
pub struct FrameInput<'a> {
    /// The frame the RGB pane shows (the decoded one), and its pixels.
    pub frame: Option<(u32, Arc<RgbFrame>)>,
    /// The whole video's keypoints, indexed by video frame.
    pub keypoints: Option<&'a Keypoints>,
    pub skeleton: &'a Skeleton,
    /// What the clip view is doing while the cursor's frame is not decoded yet.
    pub phase: Option<String>,
}

#[derive(Default)]
pub struct Panes {
    pub settings: PaneSettings,
    pub view: View,
    job: Option<ClipJob>,
    /// The RGB frame last wrapped for upload: (video frame index, image).
    rgb: Option<(u32, Arc<Stamped>)>,
}

impl Panes {
    /// Starts (or keeps) the job for `s`'s frames.
    pub fn open(&mut self, ds: &Dataset, s: &Sample, ctx: &egui::Context) {
        let key = (s.clip_id.clone(), s.start, s.end);
        if self.job.as_ref().is_some_and(|j| j.key == key) {
            return;
        }
        self.rgb = None;
        let video = ds
            .videos()
            .ok()
            .and_then(|vs| vs.into_iter().find(|v| v.vid == s.video));
        let media = video.as_ref().and_then(|v| ds.media_path(v));
        let size = video.as_ref().and_then(|v| Some((v.width?, v.height?)));
        let job = Job {
            clip_id: s.clip_id.clone(),
            root: ds.root().to_path_buf(),
            media,
            start: s.start,
            end: s.end,
            keypoints: ds.sample_keypoints(s).ok().flatten(),
            size,
            depth_weights: None,
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let cancel = Arc::new(AtomicBool::new(false));
        let (sh, cn, cx) = (shared.clone(), cancel.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("mgscope-panes".into())
            .spawn(move || compute(job, sh, cn, move || cx.request_repaint()));
        if let Err(e) = spawned {
            let mut g = lock(&shared);
            for m in [
                Modality::Taylor,
                Modality::Flow,
                Modality::Depth,
                Modality::Joint,
                Modality::Limb,
            ] {
                g.track_mut(m).state = TrackState::Unavailable(format!("no worker thread: {e}"));
            }
        }
        self.job = Some(ClipJob {
            key,
            shared,
            cancel,
        });
    }

    /// Whether the open clip's job is still computing a pane.
    pub fn busy(&self) -> bool {
        self.job.as_ref().is_some_and(|j| {
            let g = lock(&j.shared);
            [&g.taylor, &g.flow, &g.depth, &g.joint, &g.limb]
                .iter()
                .any(|t| t.state.busy())
        })
    }

    pub fn close(&mut self) {
        self.job = None;
        self.rgb = None;
    }

    /// The pane toolbar: which panes, their arrangement, the overlay and the view.
    pub fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            for k in PaneKind::ALL {
                let mut on = self.settings.visible.contains(&k);
                if ui.checkbox(&mut on, k.name()).changed() {
                    if on {
                        self.settings.visible.push(k);
                        self.settings
                            .visible
                            .sort_by_key(|v| PaneKind::ALL.iter().position(|a| a == v));
                    } else if self.settings.visible.len() > 1 {
                        self.settings.visible.retain(|v| *v != k);
                    }
                }
            }
            ui.separator();
            egui::ComboBox::from_label("layout")
                .selected_text(format!("{:?}", self.settings.arrangement).to_lowercase())
                .show_ui(ui, |ui| {
                    for a in [Arrangement::Grid, Arrangement::Row, Arrangement::Column] {
                        ui.selectable_value(
                            &mut self.settings.arrangement,
                            a,
                            format!("{a:?}").to_lowercase(),
                        );
                    }
                });
            ui.checkbox(&mut self.settings.skeleton, "skeleton");
            if ui
                .add_enabled(self.view != View::default(), egui::Button::new("fit"))
                .on_hover_text("Zoom: mouse wheel over a pane; pan: drag; double-click: fit")
                .clicked()
            {
                self.view = View::default();
            }
            if self.view.zoom > 1.0 {
                ui.weak(format!("{:.1}×", self.view.zoom));
            }
        });
    }

    /// The grid of panes at the frame `input` shows.
    pub fn ui(&mut self, ui: &mut egui::Ui, input: &FrameInput<'_>) {
        let area = ui.available_rect_before_wrap();
        ui.allocate_rect(area, egui::Sense::hover());
        let kinds = self.settings.visible.clone();
        let n = kinds.len().max(1);
        let (cols, rows) = match self.settings.arrangement {
            Arrangement::Row => (n, 1),
            Arrangement::Column => (1, n),
            Arrangement::Grid => {
                let cols = match n {
                    1 => 1,
                    2..=4 => 2,
                    _ => 3,
                };
                (cols, n.div_ceil(cols))
            }
        };
        let cell = egui::vec2(area.width() / cols as f32, area.height() / rows as f32);
        let aspect = input
            .frame
            .as_ref()
            .map(|(_, f)| f.width as f32 / f.height.max(1) as f32)
            .unwrap_or(16.0 / 9.0);
        if let Some((i, f)) = &input.frame {
            if self.rgb.as_ref().map(|(j, _)| j) != Some(i) {
                self.rgb = stamped(PaneImage::Rgb {
                    width: f.width,
                    height: f.height,
                    rgb: f.data.clone(),
                })
                .map(|s| (*i, s));
            }
        }
        for (slot, kind) in kinds.into_iter().enumerate() {
            let (c, r) = (slot % cols, slot / cols);
            let rect = egui::Rect::from_min_size(
                area.min + egui::vec2(c as f32 * cell.x, r as f32 * cell.y),
                cell,
            )
            .shrink(3.0);
            self.pane(ui, kind, rect, aspect, input);
        }
    }

    fn pane(
        &mut self,
        ui: &mut egui::Ui,
        kind: PaneKind,
        cell: egui::Rect,
        aspect: f32,
        input: &FrameInput<'_>,
    ) {
        let body = egui::Rect::from_min_max(egui::pos2(cell.min.x, cell.min.y + 22.0), cell.max);
        let mut size = body.size();
        if size.x / size.y.max(1.0) > aspect {
            size.x = size.y * aspect;
        } else {
            size.y = size.x / aspect;
        }
        let rect = egui::Rect::from_center_size(body.center(), size.max(egui::vec2(1.0, 1.0)));
        // The title sits on the image, not at the top of a taller cell.
        let header = egui::Rect::from_min_size(
            egui::pos2(rect.min.x, rect.min.y - 22.0),
            egui::vec2(rect.width().max(160.0).min(cell.width()), 20.0),
        );
        let frame_no = input.frame.as_ref().map(|(i, _)| *i);
        let (image, status, source) = self.image_for(kind, frame_no);
        let mut hui = ui.new_child(egui::UiBuilder::new().max_rect(header));
        hui.set_clip_rect(header.intersect(cell));
        hui.horizontal(|ui| {
            self.pane_menu(ui, kind);
            ui.strong(kind.name());
            if let Some(f) = frame_no {
                ui.weak(format!("frame {f}"));
            }
        })
        .response
        .on_hover_text(source);

        let id = ui.make_persistent_id(("pane", kind));
        let resp = ui.interact(rect, id, egui::Sense::click_and_drag());
        if resp.double_clicked() {
            self.view = View::default();
        }
        if resp.dragged() {
            let d = resp.drag_delta();
            self.view.pan([d.x / rect.width(), d.y / rect.height()]);
        }
        if resp.hovered() {
            let scroll = ui.input(|i| i.smooth_scroll_delta.y);
            if scroll != 0.0 {
                if let Some(p) = resp.hover_pos() {
                    let at = [
                        (p.x - rect.min.x) / rect.width(),
                        (p.y - rect.min.y) / rect.height(),
                    ];
                    self.view.zoom_at((scroll / 200.0).exp(), at);
                }
            }
        }
        let painter = ui.painter_at(cell);
        match image {
            Some(img) => {
                let (uv_min, uv_max) = self.view.uv_rect();
                let params = self.params(kind, uv_min, uv_max, frame_no);
                let pid = PaneKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u64;
                painter.add(egui_wgpu::Callback::new_paint_callback(
                    rect,
                    PaneCallback {
                        id: pid,
                        kind,
                        image: img,
                        params,
                    },
                ));
                if kind == PaneKind::Rgb && self.settings.skeleton {
                    self.skeleton(&painter, rect, input);
                }
            }
            None => {
                painter.rect_filled(rect, 2.0, egui::Color32::from_gray(22));
                let text = status
                    .or_else(|| input.phase.clone())
                    .unwrap_or_else(|| "waiting for the frame…".into());
                let galley = painter.layout(
                    text,
                    egui::FontId::proportional(12.0),
                    egui::Color32::from_gray(170),
                    (rect.width() - 12.0).max(40.0),
                );
                let at = rect.center() - galley.size() / 2.0;
                painter
                    .with_clip_rect(rect)
                    .galley(at, galley, egui::Color32::from_gray(170));
            }
        }
    }

    /// The image a pane shows at video frame `f`, a status line, and where it came from.
    fn image_for(
        &self,
        kind: PaneKind,
        f: Option<u32>,
    ) -> (Option<Arc<Stamped>>, Option<String>, String) {
        if kind == PaneKind::Rgb {
            let img = self
                .rgb
                .as_ref()
                .filter(|(i, _)| Some(*i) == f)
                .map(|(_, s)| s.clone());
            return (img, None, "decoded by FFmpeg".into());
        }
        let Some(job) = &self.job else {
            return (None, Some("no clip".into()), String::new());
        };
        let g = lock(&job.shared);
        let Some(track) = g.track(kind) else {
            return (None, None, String::new());
        };
        let (_, start, end) = job.key;
        let what = kind.name();
        let Some(f) = f else {
            // No RGB frame yet: the job's own phase still says how far this pane is.
            let phase = track
                .state
                .describe(what)
                .unwrap_or_else(|| "ready; waiting for the first frame…".into());
            return (None, Some(phase), String::new());
        };
        if f < start || f > end {
            return (
                None,
                Some(format!(
                    "outside the sample ({start}–{end}): derived panes cover the sample"
                )),
                String::new(),
            );
        }
        let k = (f - start) as usize;
        let img = track.frames.get(k).cloned().flatten();
        let status = match (&track.state, &img) {
            (TrackState::Unavailable(why), _) => Some(why.clone()),
            (_, Some(_)) => None,
            (TrackState::Done, None) => Some(match (kind, g.limit) {
                (_, Some(l)) if k >= l => format!("beyond the first {l} frames computed"),
                (PaneKind::Taylor, _) => {
                    "no Taylor frame: its window of 6 frames runs past the sample's end".into()
                }
                (PaneKind::Flow, _) => "no flow after the sample's last frame".into(),
                _ => "no frame here".into(),
            }),
            (state, None) => state.describe(what),
        };
        (img, status, track.source.to_string())
    }

    fn params(
        &self,
        kind: PaneKind,
        uv_min: [f32; 2],
        uv_max: [f32; 2],
        f: Option<u32>,
    ) -> PaneParams {
        let s = &self.settings;
        let mut p = PaneParams {
            uv_min,
            uv_max,
            ..Default::default()
        };
        match kind {
            PaneKind::Rgb => {}
            PaneKind::Flow => {
                let auto = self.job.as_ref().and_then(|j| {
                    let k = f?.checked_sub(j.key.1)? as usize;
                    lock(&j.shared).flow.max_len.get(k).copied()
                });
                // The automatic scale is RAFT's per-frame normalisation (max length + 1e-5).
                p.flow_max = match (s.flow_auto, auto) {
                    (true, Some(m)) => m + 1e-5,
                    _ => s.flow_max.max(1e-3),
                };
            }
            PaneKind::Depth => {
                p.range = s.depth_range;
                p.colormap = s.depth_colormap;
            }
            PaneKind::Taylor => {
                p.gain = [s.taylor_gain[0], s.taylor_gain[1], s.taylor_gain[2], 1.0];
                p.mode = s.taylor_channel;
                p.colormap = Colormap::Inferno;
            }
            PaneKind::Joint | PaneKind::Limb => {
                p.mode = u32::from(s.heat_one);
                p.layer = if kind == PaneKind::Joint {
                    s.joint_channel
                } else {
                    s.limb_channel
                };
                p.gain = [s.heat_gain, 1.0, 1.0, 1.0];
                p.colormap = s.heat_colormap;
            }
        }
        p
    }

    fn pane_menu(&mut self, ui: &mut egui::Ui, kind: PaneKind) {
        let s = &mut self.settings;
        let cmap = |ui: &mut egui::Ui, c: &mut Colormap| {
            ui.horizontal(|ui| {
                ui.label("colormap");
                for m in Colormap::ALL {
                    ui.selectable_value(c, m, m.name());
                }
            });
        };
        match kind {
            PaneKind::Rgb => {}
            PaneKind::Flow => {
                ui.menu_button("view", |ui| {
                    ui.checkbox(
                        &mut s.flow_auto,
                        "per-frame normalisation (RAFT / MM-Gesture)",
                    );
                    ui.add_enabled(
                        !s.flow_auto,
                        egui::Slider::new(&mut s.flow_max, 0.1..=50.0)
                            .logarithmic(true)
                            .text("px at full colour"),
                    );
                });
            }
            PaneKind::Depth => {
                ui.menu_button("view", |ui| {
                    ui.add(
                        egui::Slider::new(&mut s.depth_range[0], 0.0..=1.0).text("far (dark end)"),
                    );
                    ui.add(
                        egui::Slider::new(&mut s.depth_range[1], 0.0..=1.0)
                            .text("near (bright end)"),
                    );
                    cmap(ui, &mut s.depth_colormap);
                });
            }
            PaneKind::Taylor => {
                ui.menu_button("view", |ui| {
                    for (i, name) in ["orders 1..K", "orders 2..K+1", "orders 3..K+2"]
                        .iter()
                        .enumerate()
                    {
                        ui.add(egui::Slider::new(&mut s.taylor_gain[i], 0.0..=8.0).text(*name));
                    }
                    ui.horizontal(|ui| {
                        ui.label("show");
                        ui.selectable_value(&mut s.taylor_channel, 0, "all");
                        for c in 1..=3u32 {
                            ui.selectable_value(&mut s.taylor_channel, c, format!("ch {c}"));
                        }
                    });
                });
            }
            PaneKind::Joint | PaneKind::Limb => {
                let skel = crate::extract::skeleton();
                ui.menu_button("view", |ui| {
                    ui.horizontal(|ui| {
                        ui.selectable_value(&mut s.heat_one, false, "max over channels");
                        ui.selectable_value(&mut s.heat_one, true, "one channel");
                    });
                    if s.heat_one {
                        let (ch, names): (&mut u32, Vec<String>) = if kind == PaneKind::Joint {
                            (&mut s.joint_channel, skel.names.clone())
                        } else {
                            (
                                &mut s.limb_channel,
                                skel.limbs
                                    .iter()
                                    .map(|l| {
                                        let n = |i: usize| {
                                            skel.names.get(i).cloned().unwrap_or_default()
                                        };
                                        format!("{}–{}", n(l[0]), n(l[1]))
                                    })
                                    .collect(),
                            )
                        };
                        egui::ComboBox::from_id_salt(("heat-channel", kind))
                            .selected_text(names.get(*ch as usize).cloned().unwrap_or_default())
                            .height(300.0)
                            .show_ui(ui, |ui| {
                                for (i, name) in names.iter().enumerate() {
                                    ui.selectable_value(ch, i as u32, name);
                                }
                            });
                    }
                    ui.add(
                        egui::Slider::new(&mut s.heat_gain, 0.25..=8.0)
                            .logarithmic(true)
                            .text("gain"),
                    );
                    cmap(ui, &mut s.heat_colormap);
                });
            }
        }
    }

    /// The 36 keypoints and limbs over the RGB pane, confidence as opacity, under the zoom.
    fn skeleton(&self, painter: &egui::Painter, rect: egui::Rect, input: &FrameInput<'_>) {
        let (Some(k), Some((shown, frame)), Some(job)) = (input.keypoints, &input.frame, &self.job)
        else {
            return;
        };
        let (_, start, _) = job.key;
        let Some(t) = shown.checked_sub(start).map(|t| t as usize) else {
            return;
        };
        if t >= k.frames || k.joints != input.skeleton.len() {
            return;
        }
        let (w, h) = (frame.width as f32, frame.height as f32);
        let to_screen = |p: [f32; 3]| self.view.to_screen(rect, [p[0] / w, p[1] / h]);
        let painter = painter.with_clip_rect(rect);
        for m in 0..k.persons {
            for l in &input.skeleton.limbs {
                let (a, b) = (k.get(t, m, l[0]), k.get(t, m, l[1]));
                if Keypoints::is_missing(a) || Keypoints::is_missing(b) {
                    continue;
                }
                let alpha = (a[2].min(b[2]).clamp(0.0, 1.0) * 255.0) as u8;
                painter.line_segment(
                    [to_screen(a), to_screen(b)],
                    egui::Stroke::new(
                        1.5,
                        egui::Color32::from_rgba_unmultiplied(80, 220, 120, alpha),
                    ),
                );
            }
            for j in 0..k.joints {
                let p = k.get(t, m, j);
                if Keypoints::is_missing(p) {
                    continue;
                }
                let alpha = (p[2].clamp(0.0, 1.0) * 255.0) as u8;
                painter.circle_filled(
                    to_screen(p),
                    2.5,
                    egui::Color32::from_rgba_unmultiplied(255, 200, 40, alpha),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pane_without_its_frame_says_the_jobs_phase() {
        let say = |st: TrackState| st.describe("Taylor");
        assert_eq!(
            say(TrackState::Decoding {
                done: 12,
                total: 48
            })
            .as_deref(),
            Some("decoding… 12/48 frames")
        );
        assert_eq!(
            say(TrackState::Running { done: 2, total: 5 }).as_deref(),
            Some("computing Taylor… 40%")
        );
        assert_eq!(
            say(TrackState::Preparing("loading the depth model")).as_deref(),
            Some("loading the depth model…")
        );
        assert_eq!(
            say(TrackState::Queued).as_deref(),
            Some("frames decoded; Taylor is next…")
        );
        assert_eq!(say(TrackState::Done), None);
        assert!(TrackState::Decoding { done: 0, total: 1 }.busy());
        assert!(!TrackState::Unavailable("x".into()).busy());
    }

    /// Until the RGB frame is there, a derived pane reports its job's phase rather than a
    /// bare "waiting".
    #[test]
    fn the_phase_shows_before_the_first_rgb_frame() {
        let shared = Arc::new(Mutex::new(Shared::default()));
        lock(&shared).flow.state = TrackState::Decoding { done: 3, total: 30 };
        let panes = Panes {
            job: Some(ClipJob {
                key: ("c".into(), 10, 39),
                shared: shared.clone(),
                cancel: Arc::new(AtomicBool::new(false)),
            }),
            ..Default::default()
        };
        let (img, status, _) = panes.image_for(PaneKind::Flow, None);
        assert!(img.is_none());
        assert_eq!(status.as_deref(), Some("decoding… 3/30 frames"));
        lock(&shared).flow.state = TrackState::Running { done: 1, total: 4 };
        let (_, status, _) = panes.image_for(PaneKind::Flow, Some(12));
        assert_eq!(status.as_deref(), Some("computing optical flow… 25%"));
    }

    #[test]
    fn zoom_keeps_the_point_under_the_pointer() {
        let mut v = View::default();
        let at = [0.25, 0.75];
        let before = v.uv_rect();
        let p = [
            before.0[0] + at[0] * (before.1[0] - before.0[0]),
            before.0[1] + at[1] * (before.1[1] - before.0[1]),
        ];
        v.zoom_at(4.0, at);
        let (min, max) = v.uv_rect();
        let q = [
            min[0] + at[0] * (max[0] - min[0]),
            min[1] + at[1] * (max[1] - min[1]),
        ];
        assert!(
            (p[0] - q[0]).abs() < 1e-6 && (p[1] - q[1]).abs() < 1e-6,
            "{p:?} vs {q:?}"
        );
        assert_eq!(v.zoom, 4.0);
        assert!((max[0] - min[0] - 0.25).abs() < 1e-6);
        // Zooming out past 1 stops at the whole frame, centred.
        v.zoom_at(0.01, [0.5, 0.5]);
        assert_eq!(v, View::default());
    }

    #[test]
    fn pan_stays_on_the_image() {
        let mut v = View {
            center: [0.5, 0.5],
            zoom: 2.0,
        };
        v.pan([0.5, 0.0]); // drag right by half a pane: the view moves left by a quarter frame
        assert!((v.center[0] - 0.25).abs() < 1e-6);
        v.pan([10.0, -10.0]);
        let (min, max) = v.uv_rect();
        assert!(min[0] >= -1e-6 && max[1] <= 1.0 + 1e-6, "{min:?} {max:?}");
        let r = egui::Rect::from_min_size(egui::pos2(10.0, 20.0), egui::vec2(200.0, 100.0));
        let p = v.to_screen(r, [min[0], min[1]]);
        assert!((p.x - 10.0).abs() < 1e-3 && (p.y - 20.0).abs() < 1e-3);
    }
}
