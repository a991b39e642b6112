//! Deterministic synthesis of the offline demo dataset: a seated athlete at a
//! press-conference table performing iMiGUE-style micro-gestures.
//!
//! One 2-D skeleton per frame drives both outputs: the renderer draws the
//! figure from its joints and the OpenPose-137 keypoints are those same joints
//! plus detector-like noise, so pixels and keypoints agree by construction.
//! Every frame is a pure function of (seed, video, frame index), so frames can
//! be rendered in any order or in parallel.
//!
//! Geometry is authored in "design pixels" of a 640×360 frame whose origin is
//! the frame centre; a per-video camera scales and shifts it into the output.

use super::raster::{
    mix, rgb, scale, sd_capsule, sd_ellipse, v2, Canvas, Convex, Paint, Rect, Rgb, V2,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{PI, TAU};
use std::fmt;
use std::sync::OnceLock;

/// Settings of one synthetic dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    pub seed: u64,
    pub videos: usize,
    pub frames_per_video: usize,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl DemoConfig {
    /// The demo shipped with the app: 6 one-minute videos.
    pub fn standard() -> Self {
        DemoConfig {
            seed: 0x1A16_0E00,
            videos: 6,
            frames_per_video: 1500,
            width: 640,
            height: 360,
            fps: 25,
        }
    }

    /// Small enough for unit tests.
    pub fn tiny() -> Self {
        DemoConfig {
            videos: 2,
            frames_per_video: 300,
            ..Self::standard()
        }
    }
}

/// One labelled span of a video, frames `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// iMiGUE raw class id: 1..=31 for micro-gestures, 99 for non-gesture.
    pub raw_class: u32,
    pub start: u32,
    pub end: u32,
}

impl Segment {
    pub fn frames(&self) -> u32 {
        self.end + 1 - self.start
    }
}

pub const TOUCH_HAT: u32 = 3;
pub const TOUCH_FACE: u32 = 4;
pub const TOUCH_EARS: u32 = 9;
pub const BITE_NAILS: u32 = 10;
pub const TOUCH_CHIN: u32 = 11;
pub const FOLD_ARM: u32 = 17;
pub const MOVE_TORSO: u32 = 20;
pub const RUB_HAND: u32 = 23;
pub const SHAKE_SHOULDER: u32 = 31;
pub const NON_GESTURE: u32 = 99;

/// The micro-gesture classes the demo synthesises (raw iMiGUE ids).
pub const GESTURES: [u32; 9] = [
    TOUCH_HAT,
    TOUCH_FACE,
    TOUCH_EARS,
    BITE_NAILS,
    TOUCH_CHIN,
    FOLD_ARM,
    MOVE_TORSO,
    RUB_HAND,
    SHAKE_SHOULDER,
];

/// Short English label of a raw class id the demo produces.
pub fn class_name(raw_class: u32) -> &'static str {
    match raw_class {
        TOUCH_HAT => "touch hat",
        TOUCH_FACE => "touch face",
        TOUCH_EARS => "touch ears",
        BITE_NAILS => "bite nails",
        TOUCH_CHIN => "touch chin",
        FOLD_ARM => "fold arm",
        MOVE_TORSO => "move torso",
        RUB_HAND => "rub hand",
        SHAKE_SHOULDER => "shake shoulder",
        NON_GESTURE => "non-gesture",
        _ => "unknown",
    }
}

/// Number of OpenPose keypoints per frame: BODY_25, face-70, left hand, right hand.
pub const N_KEYPOINTS: usize = 137;
pub const FACE0: usize = 25;
pub const LHAND0: usize = 95;
pub const RHAND0: usize = 116;

pub const MIN_SEGMENT: u32 = 20;
pub const MAX_SEGMENT: u32 = 90;

/// Number of distinct subject looks.
pub const N_SUBJECTS: usize = 5;

// Vertical landmarks in design pixels (origin at frame centre, +y down).
const NECK_Y: f32 = -36.0;
const SHOULDER_Y: f32 = -30.0;
const TABLE_Y: f32 = 82.0;
const TABLE_FRONT_Y: f32 = 100.0;
const REST_Y: f32 = 87.0;
const HIP_Y: f32 = 118.0;

/// x sign of each arm in design space: index 0 is the subject's right, which
/// faces the camera on the image left.
const SIDE: [f32; 2] = [-1.0, 1.0];

// Hand proportions in design pixels for a hand scale of 1.
const PALM_LEN: f32 = 19.0;
const PALM_HALF: f32 = 8.0;
/// (along, across) position of the index..pinky knuckles in palm units.
const KNUCKLES: [(f32, f32); 4] = [(0.97, 0.72), (1.0, 0.24), (0.95, -0.24), (0.86, -0.68)];
const SPREAD: [f32; 4] = [0.10, 0.02, -0.06, -0.14];
const PHALANGES: [[f32; 3]; 4] = [
    [8.0, 5.0, 4.0],
    [8.8, 5.6, 4.2],
    [8.2, 5.2, 4.0],
    [6.4, 4.0, 3.4],
];
const THUMB: [f32; 3] = [7.0, 5.5, 4.5];
/// How much each phalanx appears to shorten when the finger curls towards the palm.
const CURL_SHRINK: [f32; 3] = [0.35, 0.6, 0.7];
const FINGER_R: [f32; 5] = [2.8, 2.4, 2.5, 2.3, 2.0];
/// Hand keypoint chains: thumb, index, middle, ring, pinky.
const CHAINS: [[usize; 4]; 5] = [
    [1, 2, 3, 4],
    [5, 6, 7, 8],
    [9, 10, 11, 12],
    [13, 14, 15, 16],
    [17, 18, 19, 20],
];

// Keypoint detector model: a whole hand is sometimes lost for a frame, and
// single points drop out at a rate that depends on what covers them.
const HAND_DROPOUT: f32 = 0.005;
const HAND_MISS: f32 = 0.015;
const HAND_MISS_NEAR_FACE: f32 = 0.05;
const HAND_MISS_TUCKED: f32 = 0.12;
const FACE_MISS_OCCLUDED: f32 = 0.3;

const TAG_PLAN: u64 = 0x504c_414e;
const TAG_KEYPOINTS: u64 = 0x4b45_5950;
const TAG_BLINK: u64 = 0x424c_4e4b;
const TAG_LOGO: u64 = 0x4c4f_474f;

/// Builds the plans of every video of `cfg`; cheap, nothing is rendered yet.
pub fn plan(cfg: &DemoConfig) -> Vec<VideoPlan> {
    (0..cfg.videos).map(|v| VideoPlan::new(cfg, v)).collect()
}

/// Everything needed to synthesise one video deterministically.
#[derive(Clone)]
pub struct VideoPlan {
    /// Video id as in the release: "0001", "0002", ...
    pub vid: String,
    /// Which subject look (0..N_SUBJECTS) the video shows.
    pub subject: usize,
    /// Labelled segments tiling `0..n_frames` in order.
    pub segments: Vec<Segment>,
    pub n_frames: u32,
    width: u32,
    height: u32,
    fps: u32,
    seed: u64,
    index: usize,
    style: Style,
    cam: Camera,
    idle: Idle,
    /// Motion parameters of each segment, parallel to `segments`.
    motions: Vec<Motion>,
    /// The static backdrop and table, painted on first use and then copied per frame.
    background: OnceLock<Vec<u8>>,
}

impl fmt::Debug for VideoPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoPlan")
            .field("vid", &self.vid)
            .field("subject", &self.subject)
            .field("segments", &self.segments.len())
            .field("n_frames", &self.n_frames)
            .field("size", &(self.width, self.height))
            .finish_non_exhaustive()
    }
}

impl VideoPlan {
    fn new(cfg: &DemoConfig, index: usize) -> VideoPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[cfg.seed, index as u64, TAG_PLAN]));
        let subject = index % N_SUBJECTS;
        let style = Style::preset(subject).jittered(&mut rng);
        let cam = Camera::sample(cfg.width, cfg.height, &mut rng);
        let idle = Idle::sample(&mut rng, cfg.fps);
        let n_frames = u32::try_from(cfg.frames_per_video).unwrap_or(u32::MAX);
        let (segments, motions) = timeline(&mut rng, n_frames);
        VideoPlan {
            vid: format!("{:04}", index + 1),
            subject,
            segments,
            n_frames,
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            seed: cfg.seed,
            index,
            style,
            cam,
            idle,
            motions,
            background: OnceLock::new(),
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Raw class of frame `i` (99 outside the timeline).
    pub fn class_at(&self, i: u32) -> u32 {
        self.segment_index(i)
            .map_or(NON_GESTURE, |s| self.segments[s].raw_class)
    }

    /// Renders frame `i` into `rgb` (row-major RGB24). Deterministic; any order of `i`.
    ///
    /// # Panics
    /// If `rgb.len()` is not `width * height * 3`: a mis-sized buffer is a caller bug.
    pub fn render(&self, i: u32, rgb: &mut [u8]) {
        let bg = self.background.get_or_init(|| self.paint_background());
        assert_eq!(
            rgb.len(),
            bg.len(),
            "frame buffer must be width*height*3 bytes"
        );
        rgb.copy_from_slice(bg);
        if let Some(mut cv) = Canvas::new(rgb, self.width, self.height) {
            let pose = self.pose(i);
            self.draw_figure(&mut cv, &pose);
        }
    }

    /// OpenPose-137 keypoints of frame `i` as (x, y, confidence) in pixels:
    /// BODY_25 (0–24), face-70 (25–94), left hand-21 (95–115), right hand-21
    /// (116–136). Missing points are (0, 0, 0).
    pub fn keypoints(&self, i: u32) -> [[f32; 3]; N_KEYPOINTS] {
        let pose = self.pose(i);
        let now = pose.points();
        // Detectors get blurrier on fast motion, so noise and confidence depend on speed.
        let before = if i > 0 {
            self.pose(i - 1).points()
        } else {
            now
        };
        let k = pose.k;
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[
            self.seed,
            self.index as u64,
            i as u64,
            TAG_KEYPOINTS,
        ]));
        let dropped = [
            rng.random::<f32>() < HAND_DROPOUT,
            rng.random::<f32>() < HAND_DROPOUT,
        ];
        let occluded = pose.face_occlusion();
        let near_face = [pose.hand_near_face(0), pose.hand_near_face(1)];
        let (w, h) = (
            (self.width.max(1) - 1) as f32,
            (self.height.max(1) - 1) as f32,
        );
        let mut out = [[0.0f32; 3]; N_KEYPOINTS];
        for (j, o) in out.iter_mut().enumerate() {
            // Same number of draws for every point so one point's fate never shifts another's noise.
            let u_miss: f32 = rng.random();
            let u_conf: f32 = rng.random();
            let (g1, g2) = gauss2(&mut rng);
            let (sigma, base, p_miss) = match kind(j) {
                Kind::Absent => continue,
                Kind::Hip => (4.0, 0.36, 0.6),
                Kind::Body => (1.3, 0.86, 0.002),
                Kind::Face if occluded[j - FACE0] => (1.6, 0.45, FACE_MISS_OCCLUDED),
                Kind::Face => (0.8, 0.82, 0.003),
                Kind::Hand(s) => {
                    if dropped[s] {
                        continue;
                    }
                    if pose.tucked == Some(s) {
                        (2.4, 0.42, HAND_MISS_TUCKED)
                    } else if near_face[s] {
                        (2.0, 0.68, HAND_MISS_NEAR_FACE)
                    } else {
                        (1.8, 0.74, HAND_MISS)
                    }
                }
            };
            if u_miss < p_miss {
                continue;
            }
            let speed = now[j].dist(before[j]) / k;
            let conf = (base + (u_conf - 0.5) * 0.16 - (0.02 * speed).min(0.25)).clamp(0.3, 0.95);
            let s = (sigma + 0.08 * speed) * k;
            *o = [
                (now[j].x + g1 * s).clamp(0.0, w),
                (now[j].y + g2 * s).clamp(0.0, h),
                conf,
            ];
        }
        out
    }

    fn segment_index(&self, i: u32) -> Option<usize> {
        let s = self
            .segments
            .partition_point(|s| s.start <= i)
            .checked_sub(1)?;
        (i <= self.segments[s].end).then_some(s)
    }

    /// The motion driving frame `i` and the frame's offset into it.
    fn motion_at(&self, i: u32) -> (&Motion, f32) {
        match self.segment_index(i) {
            Some(s) => (&self.motions[s], (i - self.segments[s].start) as f32),
            None => (&IDLE_MOTION, 0.0),
        }
    }

    fn eye_open(&self, i: u32) -> f32 {
        let p = self.idle.blink_period.max(8);
        let block = i / p;
        let jitter =
            mix_seed(&[self.seed, self.index as u64, block as u64, TAG_BLINK]) % (p as u64 - 4);
        match i.checked_sub(block * p + jitter as u32) {
            Some(0) => 0.4,
            Some(1) => 0.05,
            Some(2) => 0.35,
            _ => 1.0,
        }
    }

    /// Mouth opening from talking: answering questions is what these people do between gestures.
    fn talking(&self, t: f32) -> f32 {
        let gate = ((wave(&[self.idle.talk], t) + self.idle.talk_bias) * 3.0).clamp(0.0, 1.0);
        let syllables =
            0.5 + 0.5 * (TAU * self.idle.syllable_hz * t + 1.7 * (TAU * 0.9 * t).sin()).sin();
        0.55 * gate * syllables
    }

    fn rest_arm(&self, s: usize, t: f32, shoulder: V2) -> ArmLocal {
        let idle = &self.idle;
        let drift = wave(&idle.drift[s], t);
        ArmLocal {
            wrist: v2(
                idle.rest_x[s] + drift,
                REST_Y + idle.rest_dy[s] + 0.3 * drift,
            ),
            elbow: shoulder + v2(0.3, 1.05) * self.style.upper,
            ang: PI - idle.rest_ang[s],
            flip: 1.0,
            curl: idle.rest_curl,
        }
    }

    /// An arm whose `finger` keypoint lands exactly on `target`.
    fn reach(&self, target: V2, finger: usize, ang: f32, curl: [f32; 5], elbow: V2) -> ArmLocal {
        let (pts, _) = hand_geom(V2::default(), ang, -1.0, &curl, self.style.hand);
        ArmLocal {
            wrist: target - pts[finger],
            elbow,
            ang,
            flip: -1.0,
            curl,
        }
    }

    /// Peak arm configuration of arm `s` under motion `m`, or `None` when the arm stays at rest.
    fn gesture_arm(&self, m: &Motion, s: usize, r: &Reach) -> Option<ArmLocal> {
        let st = &self.style;
        let hh = 2.0 * st.head.y;
        let active = s == m.side;
        let l = |p: V2| local(s, p);
        let jit = m.jitter * hh;
        let sh = r.shoulder;
        let osc = r.osc * r.gate;
        match m.class {
            TOUCH_CHIN if active => {
                let ang = 1.5 * PI - 0.35 + m.turn;
                let target = l(r.face[8]) + jit * 0.6 + v2(0.0, 0.02 * hh + m.amp * osc);
                let elbow = sh + v2(-0.3 * st.shoulder, 72.0);
                Some(self.reach(target, m.finger, ang, [0.5, 0.1, 0.6, 0.7, 0.75], elbow))
            }
            TOUCH_FACE if active => {
                let j = if s == 0 { m.pick } else { 16 - m.pick };
                let ang = 1.5 * PI - 0.15 + m.turn;
                // Tapping: the fingertip lifts off the cheek and comes back.
                let lift = V2::angle(ang) * (m.amp * osc.max(0.0));
                let target = l(r.face[j]).lerp(l(r.face[30]), 0.25) + jit * 0.5 - lift;
                let elbow = sh + v2(-0.15 * st.shoulder, 66.0);
                Some(self.reach(target, m.finger, ang, [0.4, 0.1, 0.2, 0.35, 0.45], elbow))
            }
            TOUCH_EARS if active => {
                let ang = 1.5 * PI + 0.1 + 0.5 * m.turn;
                let target = l(r.ears[s]) + v2(0.0, -0.04 * hh + m.amp * osc) + jit * 0.4;
                let elbow = sh + v2(25.0, 40.0);
                Some(self.reach(target, m.finger, ang, [0.3, 0.15, 0.1, 0.2, 0.3], elbow))
            }
            TOUCH_HAT if active => {
                let ang = 1.5 * PI - 0.45 + m.turn;
                // Scratching strokes run along the scalp, across the hand's axis.
                let stroke = V2::angle(ang).perp() * (m.amp * osc);
                let target = l(r.scalp[s]) + jit * 0.5 + stroke;
                let c = 0.45 + 0.2 * osc;
                let elbow = sh + v2(40.0, -5.0);
                Some(self.reach(target, m.finger, ang, [0.5, c, c, c, c + 0.05], elbow))
            }
            BITE_NAILS if active => {
                let ang = 1.5 * PI - 0.3 + m.turn;
                let nibble = V2::angle(ang) * (m.amp * osc);
                let mouth = l(r.face[62]).lerp(l(r.face[66]), 0.5);
                let target = mouth + jit * 0.25 + nibble;
                let elbow = sh + v2(-0.3 * st.shoulder, 70.0);
                Some(self.reach(target, m.finger, ang, [0.75, 0.25, 0.85, 0.9, 0.9], elbow))
            }
            FOLD_ARM => {
                // The active arm lies on top; the other one tucks its hand under it.
                let depth = if active { 72.0 } else { 94.0 };
                let wrist = l(r.neck) + v2(-12.0 + 0.5 * jit.x, depth + m.amp * osc);
                Some(ArmLocal {
                    wrist,
                    elbow: sh + v2(-4.0, 84.0),
                    ang: PI - 0.12 + 0.5 * m.turn,
                    flip: 1.0,
                    curl: [0.4, 0.3, 0.3, 0.35, 0.4],
                })
            }
            RUB_HAND => {
                let sign = if active { 1.0 } else { -0.6 };
                let wrist = l(r.neck) + v2(14.0, 100.0 + sign * m.amp * osc) + jit * 0.3;
                Some(ArmLocal {
                    wrist,
                    elbow: sh + v2(10.0, 86.0),
                    ang: 1.5 * PI - 0.95 + 0.3 * m.turn,
                    flip: 0.35,
                    curl: [0.2, 0.1, 0.1, 0.15, 0.2],
                })
            }
            NON_GESTURE if active && m.pick == 2 => {
                let mut a = r.rest;
                a.wrist = a.wrist + jit * 2.0;
                a.ang += m.turn;
                Some(a)
            }
            _ => None,
        }
    }

    /// The skeleton of frame `i` in output pixels.
    fn pose(&self, i: u32) -> Pose {
        let st = &self.style;
        let idle = &self.idle;
        let fps = self.fps.max(1) as f32;
        let t = i as f32 / fps;
        let (m, tau) = self.motion_at(i);
        let e = m.envelope(tau);
        // Micro-movements only run once the hand has arrived.
        let gate = smooth((e - 0.6) / 0.4);
        let osc = (TAU * m.hz * tau / fps + m.phase).sin();

        let breath = (TAU * idle.breath_hz * t + idle.breath_phase).sin();
        let mut lean = wave(&idle.sway, t);
        let mut shift = 0.0;
        let mut forward = 0.0;
        let mut shrug = [0.0f32; 2];
        let mut yaw = wave(&idle.yaw, t);
        let mut roll = wave(&idle.roll, t);
        let mut pitch = wave(&idle.pitch, t);
        let mut mouth = self.talking(t);
        match m.class {
            SHAKE_SHOULDER => {
                let up = e * (0.75 + 0.25 * osc) * m.amp;
                shrug[m.side] = up;
                shrug[1 - m.side] = up * m.second;
            }
            MOVE_TORSO => {
                lean += e * m.amp * (0.7 + 0.3 * osc);
                shift += e * m.amp * 60.0;
                forward += e * m.second;
            }
            BITE_NAILS => {
                pitch += 0.09 * e;
                mouth = mouth.max(0.5 * e);
            }
            TOUCH_EARS => roll += SIDE[m.side] * 0.07 * e,
            TOUCH_HAT => pitch += 0.05 * e,
            NON_GESTURE => match m.pick {
                1 => yaw += m.amp * e,
                3 => pitch += m.amp * osc * gate,
                4 => lean += m.amp * e,
                _ => {}
            },
            _ => {}
        }

        // The upper body pivots about the hidden hips; the hands on the table do not follow.
        let pivot = v2(0.0, HIP_Y);
        let body = |p: V2| pivot + (p - pivot).rot(lean) * (1.0 + forward) + v2(shift, 0.0);
        let neck = body(v2(0.0, NECK_Y - 0.5 * breath));
        let shoulders = [0, 1].map(|s| {
            body(v2(
                SIDE[s] * st.shoulder,
                SHOULDER_Y - 0.8 * breath - shrug[s],
            ))
        });
        let lift = 0.2 * (shrug[0] + shrug[1]);
        let head_c = body(v2(
            0.0,
            NECK_Y - st.neck - 0.95 * st.head.y - 0.4 * breath - lift,
        ));
        let roll = roll + lean;
        let hf = HeadFrame::new(head_c, st.head, roll, yaw, pitch);
        let eye_open = self.eye_open(i);
        let face = face_template(eye_open, mouth).map(|(u, v, z)| hf.at(u, v, z));
        let ears = [hf.at(-1.0, -0.05, -0.15), hf.at(1.0, -0.05, -0.15)];
        let scalp = [hf.at(-0.55, -0.86, 0.3), hf.at(0.55, -0.86, 0.3)];

        let cam = self.cam;
        let k = cam.k;
        let size = st.hand;
        let mut hands = [[V2::default(); 21]; 2];
        let mut palms = [[V2::default(); 4]; 2];
        let mut elbows = [V2::default(); 2];
        for s in 0..2 {
            let sh = local(s, shoulders[s]);
            let rest = self.rest_arm(s, t, sh);
            let reach = Reach {
                face: &face,
                ears: &ears,
                scalp: &scalp,
                neck,
                shoulder: sh,
                rest,
                gate,
                osc,
            };
            let arm = match self.gesture_arm(m, s, &reach) {
                Some(g) => rest.blend(&g, e, m.arc),
                None => rest,
            }
            .constrained(st.fore);
            let (h, p) = hand_geom(arm.wrist, arm.ang, arm.flip, &arm.curl, size);
            hands[s] = h.map(|q| cam.px(local(s, q)));
            palms[s] = p.map(|q| cam.px(local(s, q)));
            elbows[s] = cam.px(local(s, arm.elbow));
        }

        let sw = st.shoulder;
        let torso = [
            neck + v2(-15.0, -8.0),
            shoulders[0] + v2(0.0, -4.0),
            shoulders[0] + v2(-12.0, 10.0),
            v2(-sw + 2.0, TABLE_Y + 2.0),
            v2(sw - 2.0, TABLE_Y + 2.0),
            shoulders[1] + v2(12.0, 10.0),
            shoulders[1] + v2(0.0, -4.0),
            neck + v2(15.0, -8.0),
        ]
        .map(|p| cam.px(p));

        Pose {
            k,
            hand_size: size * k,
            neck: cam.px(neck),
            shoulder: shoulders.map(|p| cam.px(p)),
            elbow: elbows,
            hip: [
                cam.px(v2(0.0, HIP_Y)),
                cam.px(v2(-0.55 * sw, HIP_Y)),
                cam.px(v2(0.55 * sw, HIP_Y)),
            ],
            torso,
            head: cam.px(head_c),
            head_r: st.head * k,
            roll,
            eye_open,
            mouth,
            face: face.map(|p| cam.px(p)),
            ears: ears.map(|p| cam.px(p)),
            hand: hands,
            palm: palms,
            order: [1 - m.side, m.side],
            tucked: (m.class == FOLD_ARM && e > 0.5).then_some(1 - m.side),
        }
    }

    fn paint_background(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut buf = vec![0u8; w * h * 3];
        let Some(mut cv) = Canvas::new(&mut buf, self.width, self.height) else {
            return buf;
        };
        let st = &self.style;
        let cam = self.cam;
        let k = cam.k;
        let table_px = cam.px(v2(0.0, TABLE_Y)).y;
        let front_px = cam.px(v2(0.0, TABLE_FRONT_Y)).y;
        cv.gradient_rows(0.0, table_px, scale(st.wall, 1.12), scale(st.wall, 0.82));

        // Sponsor wall: staggered rows of logo boards, in design space so they scale with the camera.
        let left = -cam.origin.x / k;
        let right = (w as f32 - cam.origin.x) / k;
        let top = -cam.origin.y / k;
        let (cell_w, cell_h) = (96.0, 58.0);
        let row0 = (top / cell_h).floor() as i32 - 1;
        let row1 = (TABLE_Y / cell_h).ceil() as i32;
        let col0 = (left / cell_w).floor() as i32 - 1;
        let col1 = (right / cell_w).ceil() as i32 + 1;
        for row in row0..=row1 {
            for col in col0..=col1 {
                let stagger = if row.rem_euclid(2) == 1 { 48.0 } else { 0.0 };
                let c = v2(col as f32 * cell_w + stagger, row as f32 * cell_h + 12.0);
                if c.y + 16.0 > TABLE_Y {
                    continue;
                }
                let ink = st.logos[(row + col).rem_euclid(2) as usize];
                let variant = mix_seed(&[
                    self.seed,
                    self.index as u64,
                    row as u64,
                    col as u64,
                    TAG_LOGO,
                ]) % 3;
                let p = cam.px(c);
                let back = Paint::flat(st.wall);
                match variant {
                    0 => {
                        cv.rbox(
                            p,
                            v2(30.0, 12.0) * k,
                            4.0 * k,
                            0.0,
                            &Paint::flat(ink).alpha(0.9),
                        );
                        cv.circle(p + v2(-18.0, 0.0) * k, 6.0 * k, &back);
                        cv.rbox(
                            p + v2(7.0, -3.0) * k,
                            v2(14.0, 2.2) * k,
                            1.0 * k,
                            0.0,
                            &back.alpha(0.8),
                        );
                        cv.rbox(
                            p + v2(5.0, 4.0) * k,
                            v2(12.0, 2.0) * k,
                            1.0 * k,
                            0.0,
                            &back.alpha(0.8),
                        );
                    }
                    1 => {
                        cv.circle(p + v2(-16.0, 0.0) * k, 11.0 * k, &Paint::flat(ink));
                        cv.circle(p + v2(-16.0, 0.0) * k, 6.5 * k, &back);
                        cv.rbox(
                            p + v2(12.0, 0.0) * k,
                            v2(16.0, 3.5) * k,
                            1.5 * k,
                            0.0,
                            &Paint::flat(ink),
                        );
                    }
                    _ => {
                        cv.rbox(
                            p + v2(0.0, -4.0) * k,
                            v2(28.0, 4.5) * k,
                            2.0 * k,
                            0.0,
                            &Paint::flat(ink),
                        );
                        cv.rbox(
                            p + v2(-6.0, 6.0) * k,
                            v2(20.0, 2.5) * k,
                            1.0 * k,
                            0.0,
                            &Paint::flat(ink).alpha(0.7),
                        );
                    }
                }
            }
        }

        // Table: a lit top surface seen from slightly above, then the cloth-covered front.
        cv.gradient_rows(
            table_px,
            front_px,
            scale(st.table, 1.1),
            scale(st.table, 0.9),
        );
        cv.gradient_rows(front_px, h as f32, st.cloth, scale(st.cloth, 0.7));
        let stripe = cam.px(v2(0.0, TABLE_FRONT_Y + 8.0));
        cv.rbox(
            stripe,
            v2(2000.0, 2.0 * k),
            0.0,
            0.0,
            &Paint::flat(scale(st.cloth, 1.5)),
        );
        let plate = cam.px(v2(0.0, TABLE_FRONT_Y + 32.0));
        cv.rbox(
            plate,
            v2(52.0, 12.0) * k,
            2.0 * k,
            0.0,
            &Paint::shaded(rgb(240, 240, 236), 2.0 * k, 0.15),
        );
        cv.rbox(
            plate + v2(-12.0, -2.0) * k,
            v2(30.0, 3.0) * k,
            1.0 * k,
            0.0,
            &Paint::flat(rgb(40, 40, 48)),
        );
        cv.rbox(
            plate + v2(20.0, 5.0) * k,
            v2(16.0, 1.8) * k,
            1.0 * k,
            0.0,
            &Paint::flat(rgb(120, 120, 130)),
        );

        // A water bottle on the far side from the microphone.
        let bx = -self.idle.mic_side * 135.0;
        let glass = Paint::shaded(rgb(185, 212, 232), 3.0 * k, 0.3).alpha(0.85);
        cv.capsule(
            cam.px(v2(bx, 56.0)),
            cam.px(v2(bx, 82.0)),
            8.0 * k,
            8.0 * k,
            &glass,
        );
        cv.rbox(
            cam.px(v2(bx, 47.0)),
            v2(4.5, 3.5) * k,
            1.0 * k,
            0.0,
            &Paint::flat(rgb(30, 90, 200)),
        );
        cv.rbox(
            cam.px(v2(bx, 66.0)),
            v2(8.0, 5.0) * k,
            1.0 * k,
            0.0,
            &Paint::flat(st.logos[0]).alpha(0.8),
        );
        buf
    }

    fn draw_figure(&self, cv: &mut Canvas, p: &Pose) {
        let st = &self.style;
        let k = p.k;
        let skin = Paint::shaded(st.skin, 3.0 * k, 0.22);
        let top = Paint::shaded(st.top, 5.0 * k, 0.3);

        if st.hair_kind == Hair::Curly {
            draw_hair(cv, p, st, true);
        }
        cv.convex(&Convex::new(&p.torso), 3.0 * k, &top);

        let across = (p.shoulder[1] - p.shoulder[0]).norm();
        let down = across.perp();
        let n = p.neck;
        match st.garment {
            Garment::Jersey { trim } => {
                cv.ellipse(n - down * k, v2(15.0, 8.0) * k, p.roll, &Paint::flat(trim));
                cv.capsule(n + down * (-2.0 * k), p.head, 10.5 * k, 10.0 * k, &skin);
            }
            Garment::Suit { tie } => {
                cv.capsule(n + down * (2.0 * k), p.head, 10.5 * k, 10.0 * k, &skin);
                let vee = [
                    n + (across * -13.0 + down * -8.0) * k,
                    n + (across * 13.0 + down * -8.0) * k,
                    n + down * (48.0 * k),
                ];
                cv.convex(
                    &Convex::new(&vee),
                    0.5 * k,
                    &Paint::shaded(st.shirt, 3.0 * k, 0.15),
                );
                if let Some(tie) = tie {
                    let knot = [
                        n + (across * -3.5 + down * -3.0) * k,
                        n + (across * 3.5 + down * -3.0) * k,
                        n + (across * 2.5 + down * 4.0) * k,
                        n + (across * -2.5 + down * 4.0) * k,
                    ];
                    let blade = [
                        n + (across * -2.5 + down * 3.0) * k,
                        n + (across * 2.5 + down * 3.0) * k,
                        n + (across * 5.0 + down * 38.0) * k,
                        n + down * (45.0 * k),
                        n + (across * -5.0 + down * 38.0) * k,
                    ];
                    cv.convex(
                        &Convex::new(&blade),
                        0.3 * k,
                        &Paint::shaded(tie, 2.0 * k, 0.3),
                    );
                    cv.convex(&Convex::new(&knot), 0.3 * k, &Paint::flat(scale(tie, 0.85)));
                }
                let lapel = Paint::flat(scale(st.top, 0.6));
                cv.capsule(vee[0], vee[2], 1.2 * k, 1.2 * k, &lapel);
                cv.capsule(vee[1], vee[2], 1.2 * k, 1.2 * k, &lapel);
            }
        }

        self.draw_head(cv, p);
        self.draw_mic(cv, k);
        for s in p.order {
            self.draw_arm(cv, p, s);
        }
    }

    fn draw_head(&self, cv: &mut Canvas, p: &Pose) {
        let st = &self.style;
        let k = p.k;
        let f = &p.face;
        let r = p.head_r;
        let ear = Paint::shaded(scale(st.skin, 0.92), 2.0 * k, 0.3);
        for e in p.ears {
            cv.ellipse(e, v2(0.2 * r.x, 0.3 * r.y), p.roll, &ear);
        }
        cv.ellipse(p.head, r, p.roll, &Paint::shaded(st.skin, 0.35 * r.x, 0.22));

        let brow = Paint::flat(scale(st.hair, 0.8)).alpha(0.9);
        cv.polyline(&f[17..22], 1.2 * k, &brow);
        cv.polyline(&f[22..27], 1.2 * k, &brow);
        for (eye, pupil) in [(36usize, 68usize), (42, 69)] {
            let (a, b) = (f[eye], f[eye + 3]);
            let c = a.lerp(b, 0.5);
            let half = 0.5 * a.dist(b);
            let open = 0.5 * f[eye + 1].dist(f[eye + 5]);
            let ang = (b.y - a.y).atan2(b.x - a.x);
            if p.eye_open > 0.3 {
                cv.ellipse(
                    c,
                    v2(half, open.max(0.5 * k) * 1.1),
                    ang,
                    &Paint::flat(rgb(236, 232, 226)),
                );
                cv.circle(
                    f[pupil],
                    open.clamp(0.8 * k, 1.9 * k),
                    &Paint::flat(rgb(48, 34, 28)),
                );
            }
            let lid = [f[eye], f[eye + 1], f[eye + 2], f[eye + 3]];
            cv.polyline(&lid, 0.6 * k, &Paint::flat(rgb(45, 32, 28)).alpha(0.85));
        }
        cv.capsule(
            f[27],
            f[30],
            1.4 * k,
            2.0 * k,
            &Paint::flat(scale(st.skin, 0.82)).alpha(0.5),
        );
        let nostrils = v2(0.5 * f[31].dist(f[35]), 1.2 * k);
        cv.ellipse(
            f[33] + v2(0.0, -0.5 * k),
            nostrils,
            p.roll,
            &Paint::flat(scale(st.skin, 0.6)).alpha(0.6),
        );
        let lips = mix(st.skin, rgb(165, 62, 66), 0.45);
        cv.convex(&Convex::new(&f[48..60]), 0.4 * k, &Paint::flat(lips));
        if p.mouth > 0.12 {
            cv.convex(
                &Convex::new(&f[60..68]),
                0.2 * k,
                &Paint::flat(rgb(70, 28, 30)),
            );
        }
        draw_hair(cv, p, st, false);
    }

    fn draw_mic(&self, cv: &mut Canvas, k: f32) {
        let cam = self.cam;
        let sx = self.idle.mic_side;
        let at = |x: f32, y: f32| cam.px(v2(sx * x, y));
        let metal = Paint::shaded(rgb(70, 72, 78), 1.5 * k, 0.3);
        cv.rbox(
            at(105.0, 80.0),
            v2(15.0, 4.0) * k,
            2.0 * k,
            0.0,
            &Paint::shaded(rgb(35, 35, 40), 2.0 * k, 0.3),
        );
        cv.capsule(at(105.0, 78.0), at(103.0, 38.0), 1.6 * k, 1.6 * k, &metal);
        cv.capsule(at(103.0, 38.0), at(86.0, 14.0), 1.6 * k, 1.6 * k, &metal);
        cv.capsule(
            at(86.0, 14.0),
            at(78.0, 8.0),
            4.5 * k,
            4.0 * k,
            &Paint::shaded(rgb(25, 25, 28), 2.0 * k, 0.4),
        );
    }

    fn draw_arm(&self, cv: &mut Canvas, p: &Pose, s: usize) {
        let st = &self.style;
        let k = p.k;
        let (sh, el, wr) = (p.shoulder[s], p.elbow[s], p.hand[s][0]);
        let fdir = (wr - el).norm();
        let skin = Paint::shaded(st.skin, 3.0 * k, 0.22);
        // Hands get a slightly redder tone and darker rims so fingers read against the face.
        let hand_skin = mix(st.skin, rgb(215, 120, 110), 0.08);
        match st.garment {
            Garment::Suit { .. } => {
                let sleeve = Paint::shaded(st.top, 5.0 * k, 0.3);
                cv.capsule(sh, el, 14.0 * k, 12.5 * k, &sleeve);
                cv.capsule(el, wr - fdir * (5.0 * k), 12.0 * k, 10.0 * k, &sleeve);
                let cuff = Paint::shaded(st.shirt, 2.0 * k, 0.2);
                // A band across the sleeve end, not a ball: forearms on the table are foreshortened.
                let band = v2(1.8 * k, 6.8 * k);
                cv.rbox(
                    wr - fdir * (3.0 * k),
                    band,
                    1.2 * k,
                    fdir.y.atan2(fdir.x),
                    &cuff,
                );
            }
            Garment::Jersey { trim } => {
                cv.capsule(sh.lerp(el, 0.45), el, 11.0 * k, 10.5 * k, &skin);
                cv.capsule(el, wr, 10.0 * k, 7.5 * k, &skin);
                let mid = sh.lerp(el, 0.55);
                cv.capsule(
                    sh,
                    mid,
                    15.0 * k,
                    13.5 * k,
                    &Paint::shaded(st.top, 5.0 * k, 0.3),
                );
                let along = el - sh;
                let band = v2(1.6 * k, 13.8 * k);
                cv.rbox(
                    mid,
                    band,
                    0.8 * k,
                    along.y.atan2(along.x),
                    &Paint::flat(trim),
                );
            }
        }
        let h = &p.hand[s];
        cv.convex(
            &Convex::new(&p.palm[s]),
            2.5 * p.hand_size,
            &Paint::shaded(hand_skin, 2.5 * k, 0.3),
        );
        for (f, chain) in CHAINS.iter().enumerate() {
            let r = FINGER_R[f] * p.hand_size;
            let start = if f == 0 {
                h[0].lerp(h[1], 0.6)
            } else {
                h[chain[0]]
            };
            let pts = [start, h[chain[1]], h[chain[2]], h[chain[3]]];
            let finger = Paint::shaded(hand_skin, r, 0.42);
            for (j, w) in pts.windows(2).enumerate() {
                let taper = 1.0 - 0.06 * j as f32;
                cv.capsule(w[0], w[1], r * taper, r * (taper - 0.06), &finger);
            }
        }
    }
}

fn draw_hair(cv: &mut Canvas, p: &Pose, st: &Style, back: bool) {
    let (c, r, roll) = (p.head, p.head_r, p.roll);
    let k = p.k;
    let bounds = Rect::around(c, 1.4 * r.x.max(r.y), 1.4 * r.y.max(r.x));
    let hair = Paint::shaded(st.hair, 3.0 * k, 0.35);
    // Hair shapes are authored in the head's own frame so they tilt with it.
    let head = |q: V2| (q - c).rot(-roll);
    match (st.hair_kind, back) {
        (Hair::Curly, true) => {
            cv.fill_sdf(bounds, &hair, |q| {
                sd_ellipse(
                    head(q),
                    v2(0.0, -0.22 * r.y),
                    v2(1.28 * r.x, 1.08 * r.y),
                    0.0,
                )
            });
        }
        (_, true) => {}
        (Hair::Crop, false)
        | (Hair::Buzz, false)
        | (Hair::Curly, false)
        | (Hair::Parted, false) => {
            let (grow, line, paint) = match st.hair_kind {
                Hair::Buzz => (1.02, -0.6, Paint::flat(mix(st.hair, st.skin, 0.35))),
                Hair::Curly => (1.12, -0.5, hair),
                _ => (1.07, -0.46, hair),
            };
            let parted = st.hair_kind == Hair::Parted;
            let curly = st.hair_kind == Hair::Curly;
            cv.fill_sdf(bounds, &paint, |q| {
                let h = head(q);
                let u = h.x / r.x;
                let hairline = if parted {
                    -0.62 + 0.14 * (u + 1.0)
                } else if curly {
                    line + 0.06 * (u * 9.0).sin()
                } else {
                    line + 0.14 * u * u
                };
                let skull = sd_ellipse(h, v2(0.0, -0.05 * r.y), v2(grow * r.x, 1.03 * r.y), 0.0);
                skull.max(h.y - hairline * r.y)
            });
        }
        (Hair::Cap, false) => {
            let cap = Paint::shaded(st.hat, 3.0 * k, 0.35);
            cv.fill_sdf(bounds, &cap, |q| {
                let h = head(q);
                sd_ellipse(h, v2(0.0, -0.06 * r.y), v2(1.08 * r.x, 1.0 * r.y), 0.0)
                    .max(h.y + 0.36 * r.y)
            });
            let brim = c + v2(0.0, -0.36 * r.y).rot(roll);
            cv.ellipse(
                brim,
                v2(1.14 * r.x, 0.13 * r.y),
                roll,
                &Paint::shaded(scale(st.hat, 0.75), 2.0 * k, 0.3),
            );
            let badge = c + v2(0.0, -0.66 * r.y).rot(roll);
            cv.circle(badge, 0.13 * r.x, &Paint::flat(rgb(235, 235, 235)));
        }
    }
}

/// Arm state in the arm's mirrored frame, where +x always points away from the body's midline.
#[derive(Clone, Copy, Debug)]
struct ArmLocal {
    wrist: V2,
    elbow: V2,
    /// Direction from the wrist to the middle knuckle, radians.
    ang: f32,
    /// +1 palm down / back of hand up, -1 palm towards the face; the thumb side flips with it.
    flip: f32,
    /// Thumb, index, middle, ring, pinky curl in 0..1.
    curl: [f32; 5],
}

impl ArmLocal {
    fn blend(&self, g: &ArmLocal, e: f32, arc: f32) -> ArmLocal {
        // Reaching hands swing slightly outwards instead of sliding in a straight line.
        let bulge = (PI * e).sin() * arc;
        let mut curl = self.curl;
        for (c, gc) in curl.iter_mut().zip(g.curl) {
            *c += (gc - *c) * e;
        }
        ArmLocal {
            wrist: self.wrist.lerp(g.wrist, e) + v2(bulge, -0.3 * bulge),
            elbow: self.elbow.lerp(g.elbow, e),
            ang: self.ang + (g.ang - self.ang) * e,
            flip: self.flip + (g.flip - self.flip) * e,
            curl,
        }
    }

    /// Keeps the projected forearm no longer than the real one.
    fn constrained(mut self, fore: f32) -> ArmLocal {
        let d = self.elbow - self.wrist;
        if d.len() > fore {
            self.elbow = self.wrist + d.norm() * fore;
        }
        self
    }
}

/// What a reaching arm may aim at, in design space (face, ears, scalp, neck) or the arm's frame.
struct Reach<'a> {
    face: &'a [V2; 70],
    ears: &'a [V2; 2],
    scalp: &'a [V2; 2],
    neck: V2,
    shoulder: V2,
    rest: ArmLocal,
    gate: f32,
    osc: f32,
}

fn local(s: usize, p: V2) -> V2 {
    v2(SIDE[s] * p.x, p.y)
}

/// The 21 hand keypoints (OpenPose order) and the palm outline, in the arm's frame.
fn hand_geom(wrist: V2, ang: f32, flip: f32, curl: &[f32; 5], size: f32) -> ([V2; 21], [V2; 4]) {
    let dir = V2::angle(ang);
    // Never fully edge-on: a zero-width palm would collapse the fingers onto one line.
    let f = if flip >= 0.0 {
        flip.max(0.3)
    } else {
        flip.min(-0.3)
    };
    let lat = dir.perp() * f;
    let mut p = [V2::default(); 21];
    p[0] = wrist;

    let tc = curl[0];
    let cmc = wrist + dir * (0.2 * PALM_LEN * size) + lat * (0.55 * PALM_HALF * size);
    p[1] = cmc;
    let mut td = (dir * 0.45 + lat * 0.9).norm();
    let mut q = cmc;
    for (j, len) in THUMB.iter().enumerate() {
        if j > 0 {
            td = (td + dir * (0.45 - 0.05 * j as f32)).norm();
        }
        // Curling swings the thumb across the palm.
        td = (td - lat * (0.8 * tc)).norm();
        q = q + td * (len * size * (1.0 - 0.3 * tc));
        p[2 + j] = q;
    }

    for (fi, (&(a, b), phal)) in KNUCKLES.iter().zip(PHALANGES.iter()).enumerate() {
        let mcp = wrist + dir * (a * PALM_LEN * size) + lat * (b * PALM_HALF * size);
        let fd = (dir + lat * SPREAD[fi]).norm();
        let c = curl[fi + 1];
        let base = 5 + 4 * fi;
        p[base] = mcp;
        let mut q = mcp;
        for (j, len) in phal.iter().enumerate() {
            q = q + fd * (len * size * (1.0 - c * CURL_SHRINK[j]));
            p[base + 1 + j] = q;
        }
    }
    let palm = [
        wrist + lat * (0.8 * PALM_HALF * size),
        p[5],
        p[17],
        wrist - lat * (0.8 * PALM_HALF * size),
    ];
    (p, palm)
}

/// Maps face-template coordinates (u, v in head radii, z = depth towards the camera) to design space.
struct HeadFrame {
    c: V2,
    r: V2,
    roll: f32,
    yaw: (f32, f32),
    pitch: (f32, f32),
}

impl HeadFrame {
    fn new(c: V2, r: V2, roll: f32, yaw: f32, pitch: f32) -> Self {
        HeadFrame {
            c,
            r,
            roll,
            yaw: yaw.sin_cos(),
            pitch: pitch.sin_cos(),
        }
    }

    fn at(&self, u: f32, v: f32, z: f32) -> V2 {
        // Turning the head moves points in proportion to their depth: the nose most, the ears least.
        let uu = u * self.yaw.1 + z * self.yaw.0;
        let vv = v * self.pitch.1 + 0.7 * z * self.pitch.0;
        self.c + v2(uu * self.r.x, vv * self.r.y).rot(self.roll)
    }
}

/// The 70 OpenPose face points as (u, v, depth) in head radii; u < 0 is the subject's right.
fn face_template(eye_open: f32, mouth: f32) -> [(f32, f32, f32); 70] {
    let mut f = [(0.0f32, 0.0f32, 0.0f32); 70];
    for (j, p) in f.iter_mut().enumerate().take(17) {
        let a = PI + 0.12 - (j as f32 / 16.0) * (PI + 0.24);
        let (u, v) = (0.97 * a.cos(), 0.95 * a.sin());
        // An open mouth drops the chin.
        let drop = if v > 0.5 {
            0.08 * mouth * (v - 0.5) / 0.45
        } else {
            0.0
        };
        *p = (u, v + drop, 0.85 * (1.0 - u * u).max(0.0).sqrt());
    }
    for j in 0..5 {
        let t = j as f32 / 4.0;
        let arch = -0.33 - 0.07 * (PI * t).sin();
        f[17 + j] = (-0.72 + 0.56 * t, arch, 0.78);
        f[22 + j] = (0.16 + 0.56 * t, -0.33 - 0.07 * (PI * (1.0 - t)).sin(), 0.78);
    }
    for (j, (v, z)) in [(-0.2, 0.85), (-0.08, 0.92), (0.04, 1.0), (0.17, 1.08)]
        .into_iter()
        .enumerate()
    {
        f[27 + j] = (0.0, v, z);
    }
    for (j, (u, v)) in [
        (-0.17, 0.24),
        (-0.09, 0.27),
        (0.0, 0.29),
        (0.09, 0.27),
        (0.17, 0.24),
    ]
    .into_iter()
    .enumerate()
    {
        f[31 + j] = (u, v, 0.9);
    }
    let (ew, eh) = (0.17, 0.07 * eye_open);
    for (base, cx) in [(36usize, -0.4f32), (42, 0.4)] {
        let cy = -0.12;
        let ring = [
            (cx - ew, cy),
            (cx - 0.35 * ew, cy - eh),
            (cx + 0.35 * ew, cy - eh),
            (cx + ew, cy),
            (cx + 0.35 * ew, cy + eh),
            (cx - 0.35 * ew, cy + eh),
        ];
        for (j, (u, v)) in ring.into_iter().enumerate() {
            f[base + j] = (u, v, 0.7);
        }
    }
    let o = 0.1 * mouth;
    let outer = [
        (-0.28, 0.52),
        (-0.18, 0.47),
        (-0.07, 0.455),
        (0.0, 0.45),
        (0.07, 0.455),
        (0.18, 0.47),
        (0.28, 0.52),
        (0.18, 0.58 + o),
        (0.08, 0.61 + o),
        (0.0, 0.62 + o),
        (-0.08, 0.61 + o),
        (-0.18, 0.58 + o),
    ];
    for (j, (u, v)) in outer.into_iter().enumerate() {
        f[48 + j] = (u, v, if j == 0 || j == 6 { 0.75 } else { 0.85 });
    }
    let inner = [
        (-0.22, 0.52),
        (-0.07, 0.505),
        (0.0, 0.505),
        (0.07, 0.505),
        (0.22, 0.52),
        (0.07, 0.535 + o),
        (0.0, 0.54 + o),
        (-0.07, 0.535 + o),
    ];
    for (j, (u, v)) in inner.into_iter().enumerate() {
        f[60 + j] = (u, v, 0.85);
    }
    f[68] = (-0.4, -0.12, 0.75);
    f[69] = (0.4, -0.12, 0.75);
    f
}

/// One frame's skeleton in output pixels; the source of both drawing and keypoints.
#[derive(Clone, Debug)]
struct Pose {
    k: f32,
    hand_size: f32,
    neck: V2,
    shoulder: [V2; 2],
    elbow: [V2; 2],
    /// Mid, right and left hip, all behind the table.
    hip: [V2; 3],
    torso: [V2; 8],
    head: V2,
    head_r: V2,
    roll: f32,
    eye_open: f32,
    mouth: f32,
    face: [V2; 70],
    ears: [V2; 2],
    /// Hand keypoints, index 0 = subject's right hand.
    hand: [[V2; 21]; 2],
    palm: [[V2; 4]; 2],
    /// Arms in drawing order, the front one last.
    order: [usize; 2],
    /// A hand hidden under the other arm.
    tucked: Option<usize>,
}

impl Pose {
    fn points(&self) -> [V2; N_KEYPOINTS] {
        let mut p = [V2::default(); N_KEYPOINTS];
        p[0] = self.face[30];
        p[1] = self.neck;
        p[2] = self.shoulder[0];
        p[3] = self.elbow[0];
        p[4] = self.hand[0][0];
        p[5] = self.shoulder[1];
        p[6] = self.elbow[1];
        p[7] = self.hand[1][0];
        p[8] = self.hip[0];
        p[9] = self.hip[1];
        p[12] = self.hip[2];
        p[15] = self.face[68];
        p[16] = self.face[69];
        p[17] = self.ears[0];
        p[18] = self.ears[1];
        p[FACE0..FACE0 + 70].copy_from_slice(&self.face);
        p[LHAND0..LHAND0 + 21].copy_from_slice(&self.hand[1]);
        p[RHAND0..RHAND0 + 21].copy_from_slice(&self.hand[0]);
        p
    }

    /// Whether point `q` lies on (or within `margin` of) the drawn hand `s`.
    fn hand_covers(&self, s: usize, q: V2, margin: f32) -> bool {
        let h = &self.hand[s];
        if Convex::new(&self.palm[s]).sd(q) - 2.5 * self.hand_size < margin {
            return true;
        }
        CHAINS.iter().enumerate().any(|(f, c)| {
            let r = FINGER_R[f] * self.hand_size;
            c.windows(2)
                .any(|w| sd_capsule(q, h[w[0]], h[w[1]], r, r) < margin)
        })
    }

    fn face_occlusion(&self) -> [bool; 70] {
        let near = [self.hand_near_face(0), self.hand_near_face(1)];
        let margin = 1.5 * self.k;
        self.face
            .map(|q| (0..2).any(|s| near[s] && self.hand_covers(s, q, margin)))
    }

    fn hand_near_face(&self, s: usize) -> bool {
        let reach = 1.4 * self.head_r.y;
        [0, 4, 8, 12, 16, 20]
            .iter()
            .any(|&j| self.hand[s][j].dist(self.face[30]) < reach)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Body,
    /// Behind the table: usually lost, otherwise guessed with low confidence.
    Hip,
    /// Legs and feet, always below the table.
    Absent,
    Face,
    Hand(usize),
}

fn kind(j: usize) -> Kind {
    match j {
        8 | 9 | 12 => Kind::Hip,
        10 | 11 | 13 | 14 | 19..=24 => Kind::Absent,
        0..=24 => Kind::Body,
        25..=94 => Kind::Face,
        95..=115 => Kind::Hand(1),
        _ => Kind::Hand(0),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hair {
    Crop,
    Buzz,
    Curly,
    Parted,
    Cap,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Garment {
    Suit { tie: Option<Rgb> },
    Jersey { trim: Rgb },
}

/// The look of one subject and the event backdrop behind them.
#[derive(Clone, Debug)]
struct Style {
    shoulder: f32,
    head: V2,
    neck: f32,
    upper: f32,
    fore: f32,
    hand: f32,
    skin: Rgb,
    hair: Rgb,
    hair_kind: Hair,
    hat: Rgb,
    top: Rgb,
    shirt: Rgb,
    garment: Garment,
    wall: Rgb,
    logos: [Rgb; 2],
    table: Rgb,
    cloth: Rgb,
}

impl Style {
    fn preset(subject: usize) -> Style {
        let base = Style {
            shoulder: 62.0,
            head: v2(24.0, 30.0),
            neck: 20.0,
            upper: 82.0,
            fore: 75.0,
            hand: 1.0,
            skin: rgb(232, 190, 160),
            hair: rgb(62, 42, 30),
            hair_kind: Hair::Crop,
            hat: rgb(20, 20, 26),
            top: rgb(30, 40, 78),
            shirt: rgb(236, 236, 240),
            garment: Garment::Suit {
                tie: Some(rgb(150, 30, 42)),
            },
            wall: rgb(38, 88, 160),
            logos: [rgb(245, 245, 245), rgb(250, 200, 40)],
            table: rgb(200, 200, 205),
            cloth: rgb(25, 45, 95),
        };
        match subject % N_SUBJECTS {
            0 => base,
            1 => Style {
                shoulder: 66.0,
                head: v2(25.0, 31.0),
                upper: 86.0,
                fore: 78.0,
                hand: 1.06,
                skin: rgb(118, 78, 54),
                hair: rgb(24, 20, 18),
                hair_kind: Hair::Buzz,
                top: rgb(186, 34, 40),
                garment: Garment::Jersey {
                    trim: rgb(245, 245, 245),
                },
                wall: rgb(226, 229, 234),
                logos: [rgb(30, 60, 140), rgb(220, 120, 30)],
                table: rgb(90, 60, 40),
                cloth: rgb(30, 30, 34),
                ..base
            },
            2 => Style {
                shoulder: 60.0,
                head: v2(23.0, 29.0),
                neck: 18.0,
                skin: rgb(204, 152, 112),
                hair: rgb(40, 30, 25),
                hair_kind: Hair::Cap,
                hat: rgb(24, 70, 150),
                top: rgb(118, 124, 132),
                garment: Garment::Jersey {
                    trim: rgb(40, 40, 46),
                },
                wall: rgb(28, 110, 72),
                logos: [rgb(240, 240, 240), rgb(250, 200, 40)],
                table: rgb(215, 215, 210),
                cloth: rgb(20, 70, 45),
                ..base
            },
            3 => Style {
                shoulder: 64.0,
                head: v2(25.0, 31.0),
                upper: 84.0,
                skin: rgb(172, 122, 88),
                hair: rgb(30, 22, 20),
                hair_kind: Hair::Curly,
                top: rgb(26, 26, 30),
                shirt: rgb(200, 216, 236),
                garment: Garment::Suit { tie: None },
                wall: rgb(72, 40, 104),
                logos: [rgb(232, 232, 232), rgb(240, 170, 60)],
                table: rgb(170, 150, 130),
                cloth: rgb(50, 25, 70),
                ..base
            },
            _ => Style {
                shoulder: 58.0,
                head: v2(23.0, 29.0),
                neck: 19.0,
                upper: 78.0,
                fore: 72.0,
                hand: 0.95,
                skin: rgb(242, 206, 182),
                hair: rgb(196, 160, 96),
                hair_kind: Hair::Parted,
                top: rgb(84, 146, 208),
                garment: Garment::Jersey {
                    trim: rgb(20, 40, 90),
                },
                wall: rgb(178, 52, 40),
                logos: [rgb(255, 255, 255), rgb(35, 35, 40)],
                table: rgb(225, 225, 225),
                cloth: rgb(120, 25, 25),
                ..base
            },
        }
    }

    /// Small per-video differences so two videos of one subject are not pixel-identical.
    fn jittered(mut self, rng: &mut ChaCha8Rng) -> Style {
        let mut j = |x: f32| x * rng.random_range(0.97..1.03);
        self.shoulder = j(self.shoulder);
        self.head = v2(j(self.head.x), j(self.head.y));
        self.neck = j(self.neck);
        self.upper = j(self.upper);
        self.fore = j(self.fore);
        self.hand = j(self.hand);
        let tint = rng.random_range(0.94..1.06);
        self.skin = scale(self.skin, tint);
        self
    }
}

/// Maps design pixels to output pixels.
#[derive(Clone, Copy, Debug)]
struct Camera {
    k: f32,
    origin: V2,
}

impl Camera {
    fn sample(width: u32, height: u32, rng: &mut ChaCha8Rng) -> Camera {
        let k = height as f32 / 360.0 * rng.random_range(0.92..1.08);
        let dx = rng.random_range(-28.0..28.0);
        let dy = rng.random_range(-8.0..10.0);
        Camera {
            k,
            origin: v2(width as f32 * 0.5 + dx * k, height as f32 * 0.5 + dy * k),
        }
    }

    fn px(&self, p: V2) -> V2 {
        self.origin + p * self.k
    }
}

#[derive(Clone, Copy, Debug)]
struct Wave {
    amp: f32,
    hz: f32,
    phase: f32,
}

fn wave(ws: &[Wave], t: f32) -> f32 {
    ws.iter()
        .map(|w| w.amp * (TAU * w.hz * t + w.phase).sin())
        .sum()
}

/// Per-video idle behaviour that runs underneath every segment.
#[derive(Clone, Debug)]
struct Idle {
    breath_hz: f32,
    breath_phase: f32,
    sway: [Wave; 2],
    yaw: [Wave; 2],
    roll: [Wave; 2],
    pitch: [Wave; 2],
    talk: Wave,
    talk_bias: f32,
    syllable_hz: f32,
    blink_period: u32,
    rest_x: [f32; 2],
    rest_dy: [f32; 2],
    rest_ang: [f32; 2],
    rest_curl: [f32; 5],
    drift: [[Wave; 2]; 2],
    mic_side: f32,
}

impl Idle {
    fn sample(rng: &mut ChaCha8Rng, fps: u32) -> Idle {
        let mut w = |amp: (f32, f32), hz: (f32, f32)| Wave {
            amp: rng.random_range(amp.0..=amp.1),
            hz: rng.random_range(hz.0..hz.1),
            phase: rng.random_range(0.0..TAU),
        };
        let sway = [
            w((0.006, 0.014), (0.05, 0.12)),
            w((0.003, 0.007), (0.2, 0.4)),
        ];
        let yaw = [w((0.06, 0.14), (0.03, 0.08)), w((0.02, 0.05), (0.15, 0.3))];
        let roll = [
            w((0.015, 0.035), (0.04, 0.1)),
            w((0.005, 0.012), (0.2, 0.35)),
        ];
        let pitch = [w((0.02, 0.04), (0.05, 0.1)), w((0.01, 0.02), (0.3, 0.5))];
        let talk = w((1.0, 1.0), (0.04, 0.08));
        let drift = [
            [w((0.8, 2.0), (0.02, 0.06)), w((0.3, 0.8), (0.1, 0.2))],
            [w((0.8, 2.0), (0.02, 0.06)), w((0.3, 0.8), (0.1, 0.2))],
        ];
        let blink_s = rng.random_range(2.8..5.2);
        Idle {
            breath_hz: rng.random_range(0.2..0.33),
            breath_phase: rng.random_range(0.0..TAU),
            sway,
            yaw,
            roll,
            pitch,
            talk,
            talk_bias: rng.random_range(-0.2..0.3),
            syllable_hz: rng.random_range(3.5..5.0),
            blink_period: ((blink_s * fps as f32) as u32).max(8),
            rest_x: [rng.random_range(32.0..48.0), rng.random_range(32.0..48.0)],
            rest_dy: [rng.random_range(-2.0..3.0), rng.random_range(-2.0..3.0)],
            rest_ang: [rng.random_range(0.1..0.35), rng.random_range(0.1..0.35)],
            rest_curl: [
                rng.random_range(0.1..0.3),
                rng.random_range(0.15..0.35),
                rng.random_range(0.2..0.4),
                rng.random_range(0.25..0.45),
                rng.random_range(0.3..0.5),
            ],
            drift,
            mic_side: if rng.random_bool(0.5) { 1.0 } else { -1.0 },
        }
    }
}

/// How one segment moves: an envelope (onset, rise, hold, fall) and the gesture's own parameters.
#[derive(Clone, Debug)]
struct Motion {
    class: u32,
    /// Active arm: 0 = subject's right, 1 = left.
    side: usize,
    onset: f32,
    rise: f32,
    hold: f32,
    fall: f32,
    /// Micro-movement amplitude (design px, or radians for torso lean).
    amp: f32,
    hz: f32,
    phase: f32,
    /// Target offset in head heights.
    jitter: V2,
    /// Hand angle offset, radians.
    turn: f32,
    /// Sideways bulge of the reaching path, design px.
    arc: f32,
    /// Hand keypoint that lands on the target.
    finger: usize,
    /// Class-specific choice: cheek point for touch face, idle variant for non-gesture.
    pick: usize,
    /// Strength of the secondary effect (other shoulder, forward lean).
    second: f32,
}

const IDLE_MOTION: Motion = Motion {
    class: NON_GESTURE,
    side: 0,
    onset: 0.0,
    rise: 1.0,
    hold: 0.0,
    fall: 1.0,
    amp: 0.0,
    hz: 0.0,
    phase: 0.0,
    jitter: v2(0.0, 0.0),
    turn: 0.0,
    arc: 0.0,
    finger: 8,
    pick: 0,
    second: 0.0,
};

impl Motion {
    fn sample(rng: &mut ChaCha8Rng, class: u32, len: u32) -> Motion {
        let l = len as f32;
        let rise = (l * rng.random_range(0.14..0.28)).clamp(4.0, 24.0);
        let fall = (l * rng.random_range(0.14..0.28)).clamp(4.0, 24.0);
        let onset = l * rng.random_range(0.0..0.12);
        let tail = l * rng.random_range(0.0..0.08);
        let hold = (l - onset - rise - fall - tail).max(1.0);
        let mut m = Motion {
            class,
            // Slightly more right-handed gestures, as in the real data.
            side: usize::from(rng.random_bool(0.42)),
            onset,
            rise,
            hold,
            fall,
            amp: 0.0,
            hz: 1.0,
            phase: rng.random_range(0.0..TAU),
            jitter: v2(rng.random_range(-0.05..0.05), rng.random_range(-0.05..0.05)),
            turn: rng.random_range(-0.15..0.15),
            arc: rng.random_range(2.0..10.0),
            finger: 8,
            pick: 0,
            second: 0.0,
        };
        let (amp, hz) = match class {
            TOUCH_CHIN => ((1.0, 3.0), (1.2, 2.5)),
            TOUCH_FACE => ((1.0, 2.5), (1.5, 3.0)),
            TOUCH_EARS => ((1.0, 2.5), (1.5, 3.0)),
            TOUCH_HAT => ((2.5, 5.0), (3.0, 5.5)),
            BITE_NAILS => ((0.8, 1.8), (3.5, 6.0)),
            FOLD_ARM => ((0.3, 0.8), (0.3, 0.6)),
            RUB_HAND => ((3.0, 6.0), (2.0, 3.5)),
            SHAKE_SHOULDER => ((4.0, 9.0), (0.8, 2.0)),
            MOVE_TORSO => ((0.05, 0.11), (0.3, 0.8)),
            _ => ((0.0, 0.0), (0.5, 1.5)),
        };
        m.amp = rng.random_range(amp.0..=amp.1);
        m.hz = rng.random_range(hz.0..hz.1);
        m.finger = if rng.random_bool(0.6) { 8 } else { 12 };
        match class {
            TOUCH_FACE => m.pick = rng.random_range(2..=5),
            SHAKE_SHOULDER => m.second = rng.random_range(0.4..1.0),
            MOVE_TORSO => {
                if rng.random_bool(0.5) {
                    m.amp = -m.amp;
                }
                m.second = rng.random_range(0.0..0.05);
            }
            NON_GESTURE => {
                // 0 still, 1 glance aside, 2 shift a hand, 3 nod, 4 settle the posture.
                m.pick = rng.random_range(0..5);
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                m.amp = sign
                    * match m.pick {
                        1 => rng.random_range(0.15..0.35),
                        3 => rng.random_range(0.03..0.07),
                        4 => rng.random_range(0.01..0.025),
                        _ => 0.0,
                    };
            }
            _ => {}
        }
        m
    }

    fn envelope(&self, tau: f32) -> f32 {
        let t = tau - self.onset;
        if t <= 0.0 {
            return 0.0;
        }
        if t < self.rise {
            return smooth(t / self.rise);
        }
        let t = t - self.rise;
        if t < self.hold {
            return 1.0;
        }
        let t = t - self.hold;
        if t < self.fall {
            1.0 - smooth(t / self.fall)
        } else {
            0.0
        }
    }
}

/// Typical duration of each class, in frames (always within MIN_SEGMENT..=MAX_SEGMENT).
fn length_range(class: u32) -> (u32, u32) {
    match class {
        TOUCH_CHIN => (30, 80),
        TOUCH_FACE | TOUCH_EARS => (25, 70),
        TOUCH_HAT => (30, 85),
        BITE_NAILS => (30, 85),
        FOLD_ARM => (45, 90),
        RUB_HAND => (30, 80),
        SHAKE_SHOULDER => (20, 50),
        MOVE_TORSO => (30, 75),
        _ => (MIN_SEGMENT, MAX_SEGMENT),
    }
}

/// Contiguous segments covering `0..n`. Classes come from shuffled decks holding
/// every gesture once and the non-gesture twice, which keeps them balanced.
fn timeline(rng: &mut ChaCha8Rng, n: u32) -> (Vec<Segment>, Vec<Motion>) {
    let mut deck: Vec<u32> = Vec::new();
    let mut segments = Vec::new();
    let mut motions = Vec::new();
    let mut pos = 0u32;
    while pos < n {
        if deck.is_empty() {
            deck.extend(GESTURES);
            deck.extend([NON_GESTURE; 2]);
            deck.shuffle(rng);
        }
        let class = deck.pop().unwrap_or(NON_GESTURE);
        let (lo, hi) = length_range(class);
        let remaining = n - pos;
        let mut len = rng.random_range(lo..=hi);
        if remaining <= MAX_SEGMENT {
            // Too little left for two segments: the last one takes the rest.
            if len >= remaining || remaining - len < MIN_SEGMENT {
                len = remaining;
            }
        } else if remaining - len < MIN_SEGMENT {
            len = remaining - MIN_SEGMENT;
        }
        segments.push(Segment {
            raw_class: class,
            start: pos,
            end: pos + len - 1,
        });
        motions.push(Motion::sample(rng, class, len));
        pos += len;
    }
    (segments, motions)
}

fn smooth(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One well-mixed seed from several parts, so (seed, video, frame) streams never overlap.
fn mix_seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x6D67_7363_6F70_6521, |h, &p| splitmix(h ^ splitmix(p)))
}

/// Two independent standard normal samples (Box–Muller).
fn gauss2(rng: &mut ChaCha8Rng) -> (f32, f32) {
    let u1: f32 = rng.random::<f32>().max(1e-7);
    let u2: f32 = rng.random();
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (TAU * u2).sin_cos();
    (r * c, r * s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::time::Instant;

    fn frame(p: &VideoPlan, i: u32) -> Vec<u8> {
        let mut buf = vec![0u8; (p.width() * p.height() * 3) as usize];
        p.render(i, &mut buf);
        buf
    }

    fn digest(buf: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        buf.hash(&mut h);
        h.finish()
    }

    fn bits(kp: &[[f32; 3]; N_KEYPOINTS]) -> Vec<u32> {
        kp.iter().flatten().map(|v| v.to_bits()).collect()
    }

    fn pixel(img: &[u8], p: &VideoPlan, q: V2) -> [u8; 3] {
        let (x, y) = (q.x.round() as usize, q.y.round() as usize);
        let o = (y * p.width() as usize + x) * 3;
        [img[o], img[o + 1], img[o + 2]]
    }

    fn near_colour(c: [u8; 3], want: Rgb, tol: f32) -> bool {
        c.iter()
            .zip(want)
            .all(|(&a, b)| (a as f32 - b).abs() <= tol * b + 10.0)
    }

    /// Frames at which segment `s`'s gesture is fully developed.
    fn peak_frame(seg: &Segment, m: &Motion) -> u32 {
        (seg.start + (m.onset + m.rise + 0.5 * m.hold) as u32).min(seg.end)
    }

    #[test]
    fn same_config_gives_identical_frames_and_keypoints() {
        let a = plan(&DemoConfig::tiny());
        let b = plan(&DemoConfig::tiny());
        assert_eq!(a.len(), 2);
        for (pa, pb) in a.iter().zip(&b) {
            assert_eq!(pa.segments, pb.segments);
            for i in [0, 57, 151, 299] {
                assert_eq!(digest(&frame(pa, i)), digest(&frame(pb, i)), "frame {i}");
                assert_eq!(
                    bits(&pa.keypoints(i)),
                    bits(&pb.keypoints(i)),
                    "keypoints {i}"
                );
            }
        }
        // The figure moves, and another seed gives another video.
        assert_ne!(digest(&frame(&a[0], 0)), digest(&frame(&a[0], 120)));
        let other = plan(&DemoConfig {
            seed: DemoConfig::tiny().seed + 1,
            ..DemoConfig::tiny()
        });
        assert_ne!(digest(&frame(&a[0], 100)), digest(&frame(&other[0], 100)));
        assert_ne!(bits(&a[0].keypoints(100)), bits(&other[0].keypoints(100)));
    }

    #[test]
    fn frame_order_does_not_matter() {
        let cfg = DemoConfig::tiny();
        let (fwd, rev) = (plan(&cfg), plan(&cfg));
        let order = [3u32, 120, 121, 250, 299];
        let ahead: Vec<_> = order
            .iter()
            .map(|&i| (digest(&frame(&fwd[1], i)), bits(&fwd[1].keypoints(i))))
            .collect();
        let mut behind: Vec<_> = order
            .iter()
            .rev()
            .map(|&i| (digest(&frame(&rev[1], i)), bits(&rev[1].keypoints(i))))
            .collect();
        behind.reverse();
        assert_eq!(ahead, behind);
    }

    #[test]
    fn segments_tile_the_timeline() {
        for cfg in [DemoConfig::standard(), DemoConfig::tiny()] {
            for p in plan(&cfg) {
                let segs = &p.segments;
                assert_eq!(segs.first().map(|s| s.start), Some(0));
                assert_eq!(segs.last().map(|s| s.end), Some(p.n_frames - 1));
                for w in segs.windows(2) {
                    assert_eq!(w[1].start, w[0].end + 1, "gap or overlap in {}", p.vid);
                }
                for s in segs {
                    assert!((MIN_SEGMENT..=MAX_SEGMENT).contains(&s.frames()), "{s:?}");
                }
                assert_eq!(p.motions.len(), segs.len());
            }
        }
    }

    #[test]
    fn standard_has_all_classes_roughly_balanced() {
        let plans = plan(&DemoConfig::standard());
        let mut counts: HashMap<u32, usize> = HashMap::new();
        let mut sides = [0usize; 2];
        for p in &plans {
            for (s, m) in p.segments.iter().zip(&p.motions) {
                *counts.entry(s.raw_class).or_default() += 1;
                if s.raw_class != NON_GESTURE {
                    sides[m.side] += 1;
                }
            }
        }
        let gestures: Vec<usize> = GESTURES
            .iter()
            .map(|c| counts.get(c).copied().unwrap_or(0))
            .collect();
        assert!(gestures.iter().all(|&n| n > 0), "{counts:?}");
        assert!(counts.keys().filter(|&&c| c != NON_GESTURE).count() >= 9);
        let mean = gestures.iter().sum::<usize>() as f32 / gestures.len() as f32;
        assert!(
            gestures.iter().all(|&n| n as f32 > 0.5 * mean),
            "{counts:?}"
        );
        assert!(counts[&NON_GESTURE] as f32 > 1.3 * mean, "{counts:?}");
        assert!(
            sides[0] > 20 && sides[1] > 20,
            "both hands are used: {sides:?}"
        );
        let subjects: std::collections::HashSet<usize> = plans.iter().map(|p| p.subject).collect();
        assert!(subjects.len() >= 4);
    }

    #[test]
    fn keypoints_sit_on_the_drawn_body() {
        let cfg = DemoConfig {
            videos: N_SUBJECTS,
            ..DemoConfig::tiny()
        };
        for p in plan(&cfg) {
            // Every segment starts in the rest pose: face and both hands unobstructed.
            let i = p.segments[1].start;
            assert_eq!(p.motions[1].envelope(0.0), 0.0);
            let pose = p.pose(i);
            let img = frame(&p, i);
            let skin = p.style.skin;
            let nose = pixel(&img, &p, pose.face[30]);
            assert!(
                near_colour(nose, skin, 0.2),
                "video {} nose {nose:?} vs skin {skin:?}",
                p.vid
            );
            for s in 0..2 {
                let palm = pose.hand[s][0].lerp(pose.hand[s][9], 0.5);
                let c = pixel(&img, &p, palm);
                assert!(
                    near_colour(c, skin, 0.25),
                    "video {} hand {s} {c:?} vs {skin:?}",
                    p.vid
                );
            }
            let corner = pixel(&img, &p, v2(3.0, 3.0));
            assert!(
                !near_colour(corner, skin, 0.2),
                "background {corner:?} looks like skin"
            );
            let torso = pixel(
                &img,
                &p,
                pose.shoulder[0].lerp(pose.shoulder[1], 0.5) + v2(-20.0, 40.0) * pose.k,
            );
            assert!(
                near_colour(torso, p.style.top, 0.35),
                "torso {torso:?} vs {:?}",
                p.style.top
            );
            // Noisy keypoints stay close to the drawn joints.
            let kp = p.keypoints(i);
            let clean = pose.points();
            for j in [0usize, 1, 2, 5, FACE0 + 8, FACE0 + 30] {
                if kp[j][2] > 0.0 {
                    assert!(v2(kp[j][0], kp[j][1]).dist(clean[j]) < 8.0, "point {j}");
                }
            }
        }
    }

    #[test]
    fn subject_right_is_on_the_image_left() {
        for p in plan(&DemoConfig::tiny()) {
            for i in (0..p.n_frames).step_by(13) {
                let q = p.pose(i).points();
                assert!(q[2].x < q[5].x && q[15].x < q[16].x && q[17].x < q[18].x);
                assert!(q[FACE0].x < q[FACE0 + 16].x && q[FACE0 + 36].x < q[FACE0 + 45].x);
                assert!(q[FACE0 + 17].x < q[FACE0 + 26].x && q[FACE0 + 48].x < q[FACE0 + 54].x);
                if p.class_at(i) == NON_GESTURE {
                    assert!(
                        q[RHAND0].x < q[LHAND0].x,
                        "right wrist on the image left at rest"
                    );
                }
            }
        }
    }

    #[test]
    fn gestures_move_the_intended_keypoints() {
        let plans = plan(&DemoConfig::standard());
        let mut checked: HashMap<u32, usize> = HashMap::new();
        for p in &plans {
            for (seg, m) in p.segments.iter().zip(&p.motions) {
                let poses: Vec<Pose> = (seg.start..=seg.end).map(|i| p.pose(i)).collect();
                let peak = p.pose(peak_frame(seg, m));
                let hh = 2.0 * peak.head_r.y;
                let s = m.side;
                let min =
                    |f: &dyn Fn(&Pose) -> f32| poses.iter().map(f).fold(f32::INFINITY, f32::min);
                let range = |f: &dyn Fn(&Pose) -> f32| {
                    let v: Vec<f32> = poses.iter().map(f).collect();
                    v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                        - v.iter().copied().fold(f32::INFINITY, f32::min)
                };
                let tip = m.finger;
                let what = format!("video {} {:?} {}", p.vid, seg, class_name(seg.raw_class));
                match seg.raw_class {
                    TOUCH_CHIN => {
                        assert!(
                            min(&|q| q.hand[s][tip].dist(q.face[8])) < 0.2 * hh,
                            "{what}"
                        );
                        assert!(min(&|q| q.hand[s][0].dist(q.face[8])) < 0.9 * hh, "{what}");
                    }
                    TOUCH_FACE => {
                        let j = if s == 0 { m.pick } else { 16 - m.pick };
                        assert!(
                            min(&|q| q.hand[s][tip].dist(q.face[j])) < 0.35 * hh,
                            "{what}"
                        );
                    }
                    TOUCH_EARS => {
                        assert!(
                            min(&|q| q.hand[s][tip].dist(q.ears[s])) < 0.25 * hh,
                            "{what}"
                        );
                    }
                    TOUCH_HAT => {
                        assert!(
                            min(&|q| q.hand[s][tip].y - q.face[68].y) < -0.25 * hh,
                            "{what}"
                        );
                        assert!(min(&|q| q.hand[s][tip].dist(q.head)) < 0.8 * hh, "{what}");
                    }
                    BITE_NAILS => {
                        let mouth = |q: &Pose| q.face[62].lerp(q.face[66], 0.5);
                        assert!(
                            min(&|q| q.hand[s][tip].dist(mouth(q))) < 0.15 * hh,
                            "{what}"
                        );
                    }
                    FOLD_ARM => {
                        assert!(
                            peak.hand[0][0].x > peak.neck.x && peak.hand[1][0].x < peak.neck.x,
                            "{what}"
                        );
                    }
                    RUB_HAND => {
                        assert!(peak.hand[0][0].dist(peak.hand[1][0]) < 0.6 * hh, "{what}");
                    }
                    SHAKE_SHOULDER => {
                        assert!(range(&|q| q.shoulder[s].y) > 2.0 * peak.k, "{what}");
                    }
                    MOVE_TORSO => {
                        assert!(range(&|q| q.neck.x) > 3.0 * peak.k, "{what}");
                    }
                    _ => {
                        for q in &poses {
                            for h in &q.hand {
                                assert!(
                                    h[0].y > q.face[8].y + 1.2 * hh,
                                    "{what}: wrist left the table"
                                );
                                assert!(
                                    h[12].dist(q.face[30]) > 1.5 * hh,
                                    "{what}: hand near face"
                                );
                            }
                        }
                    }
                }
                *checked.entry(seg.raw_class).or_default() += 1;
            }
        }
        assert!(
            GESTURES
                .iter()
                .all(|c| checked.get(c).copied().unwrap_or(0) >= 3),
            "{checked:?}"
        );
    }

    #[test]
    fn missing_points_and_confidences_are_in_range() {
        let plans = plan(&DemoConfig {
            videos: 3,
            frames_per_video: 600,
            ..DemoConfig::tiny()
        });
        let (mut hand_rest, mut hand_rest_missing) = (0usize, 0usize);
        let (mut face_rest, mut face_rest_missing) = (0usize, 0usize);
        let (mut face_touch, mut face_touch_missing) = (0usize, 0usize);
        let (mut body, mut body_missing) = (0usize, 0usize);
        for p in &plans {
            for i in 0..p.n_frames {
                let kp = p.keypoints(i);
                let class = p.class_at(i);
                let touching = p.pose(i).face_occlusion().iter().any(|&o| o);
                for (j, k) in kp.iter().enumerate() {
                    let missing = k[2] == 0.0;
                    if missing {
                        assert_eq!(*k, [0.0; 3], "missing point {j} must be all zero");
                    } else {
                        assert!(
                            (0.3..=0.95).contains(&k[2]),
                            "confidence {} of point {j}",
                            k[2]
                        );
                        assert!(
                            k[0] >= 0.0
                                && k[1] >= 0.0
                                && k[0] < p.width() as f32
                                && k[1] < p.height() as f32
                        );
                    }
                    match kind(j) {
                        Kind::Absent => assert!(missing, "leg point {j} must be missing"),
                        Kind::Body => {
                            body += 1;
                            body_missing += usize::from(missing);
                        }
                        Kind::Hand(_) if class == NON_GESTURE => {
                            hand_rest += 1;
                            hand_rest_missing += usize::from(missing);
                        }
                        Kind::Face if touching => {
                            face_touch += 1;
                            face_touch_missing += usize::from(missing);
                        }
                        Kind::Face if class == NON_GESTURE => {
                            face_rest += 1;
                            face_rest_missing += usize::from(missing);
                        }
                        _ => {}
                    }
                }
            }
        }
        let rate = |m: usize, n: usize| m as f32 / n.max(1) as f32;
        let hand = rate(hand_rest_missing, hand_rest);
        assert!(
            (0.008..=0.04).contains(&hand),
            "hand missing rate at rest {hand}"
        );
        assert!(
            rate(body_missing, body) < 0.01,
            "body missing rate {}",
            rate(body_missing, body)
        );
        let (rest, touch) = (
            rate(face_rest_missing, face_rest),
            rate(face_touch_missing, face_touch),
        );
        assert!(face_touch > 500, "too few frames with a hand on the face");
        assert!(
            rest < 0.01 && touch > 3.0 * rest && touch > 0.02,
            "face missing: rest {rest}, touched {touch}"
        );
    }

    #[test]
    #[should_panic(expected = "width*height*3")]
    fn mis_sized_buffer_is_rejected() {
        let plans = plan(&DemoConfig::tiny());
        let mut small = vec![0u8; 10];
        plans[0].render(0, &mut small);
    }

    /// `cargo test --release -- --ignored --nocapture bench`
    #[test]
    #[ignore = "benchmark: run in release with --ignored --nocapture"]
    fn bench_render() {
        let plans = plan(&DemoConfig::standard());
        let n = 300u32;
        let mut buf = vec![0u8; 640 * 360 * 3];
        let (mut render_s, mut kp_s, mut bg_s) = (0.0, 0.0, 0.0);
        for p in &plans {
            let t = Instant::now();
            p.render(0, &mut buf);
            bg_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            for i in 0..n {
                p.render(i * 5 % p.n_frames, &mut buf);
            }
            render_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            for i in 0..n {
                std::hint::black_box(p.keypoints(i * 5 % p.n_frames));
            }
            kp_s += t.elapsed().as_secs_f64();
        }
        let frames = (n as usize * plans.len()) as f64;
        println!(
            "render {:.3} ms/frame, keypoints {:.3} ms/frame, first frame (background) {:.2} ms/video",
            1e3 * render_s / frames,
            1e3 * kp_s / frames,
            1e3 * bg_s / plans.len() as f64
        );
    }
}
