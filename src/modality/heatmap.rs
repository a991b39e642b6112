//! Pseudo-heatmap volumes from 2-D keypoints: an exact port of `GeneratePoseTarget`
//! (mmaction2 1.x `mmaction/datasets/transforms/pose_transforms.py`; the same maths as pyskl
//! `pyskl/datasets/pipelines/heatmap_related.py`, which MM-Gesture uses).
//!
//! "Exact" means the same float32 values as the reference run under NumPy on x86-64 with
//! AVX-512 (how the fixtures were made), which needs three things beyond the obvious maths:
//!
//! * NumPy's own float32 `exp` (a Cody-Waite reduction and a rational polynomial, not libm) for
//!   joint patches, and the SVML float64 `exp` NumPy calls on AVX-512 for limb patches — the limb
//!   distance is promoted to float64 by `seg_dominate` being int64. Both are ported below.
//! * NumPy's scalar promotion. Under NumPy 2 (NEP 50) `np.float32 - 3 * sigma` stays float32
//!   and the scalar `(ax - bx) ** 2` goes through libm `powf`; under NumPy 1 (which pyskl and
//!   MM-Gesture ran on) those scalar expressions were float64. [`NumpyPromotion`] picks one.
//! * The `int()` truncation, the exclusive `+1` upper bound and the clipping of the ±3σ window.
//!
//! On CPUs without AVX-512 NumPy itself computes `exp` differently (float64 falls back to libm),
//! so the reference is not bit-stable across machines either; the differences are a few ulp.

use std::mem::MaybeUninit;

use super::error::{ModalityError, Result};

/// pyskl's `EPS` (what MM-Gesture's heatmaps used): keypoints with a smaller score are not drawn.
pub const PYSKL_EPS: f64 = 1e-3;
/// mmaction2 1.x's `self.eps`.
pub const MMACTION2_EPS: f64 = 1e-4;

/// Keypoint layout, limbs and left/right pairs used by the test-time flip.
#[derive(Debug, Clone, PartialEq)]
pub struct Skeleton {
    pub name: &'static str,
    pub num_keypoints: usize,
    /// Limb edges (start, end); one limb-heatmap channel each.
    pub limbs: Vec<(usize, usize)>,
    pub left_kp: Vec<usize>,
    pub right_kp: Vec<usize>,
    pub left_limb: Vec<usize>,
    pub right_limb: Vec<usize>,
}

/// COCO-17: mmaction2's `GeneratePoseTarget` defaults.
pub fn coco17() -> Skeleton {
    Skeleton {
        name: "coco17",
        num_keypoints: 17,
        limbs: vec![
            (0, 1),
            (0, 2),
            (1, 3),
            (2, 4),
            (0, 5),
            (5, 7),
            (7, 9),
            (0, 6),
            (6, 8),
            (8, 10),
            (5, 11),
            (11, 13),
            (13, 15),
            (6, 12),
            (12, 14),
            (14, 16),
            (11, 12),
        ],
        left_kp: vec![1, 3, 5, 7, 9, 11, 13, 15],
        right_kp: vec![2, 4, 6, 8, 10, 12, 14, 16],
        left_limb: vec![0, 2, 4, 5, 6, 10, 11, 12],
        right_limb: vec![1, 3, 7, 8, 9, 13, 14, 15],
    }
}

/// MM-Gesture's 36-keypoint iMiGUE skeleton (`pyskl/configs/posec3d/slowonly_r50_iMiGUE_36/
/// limb.py`; 12 body, 12 face, wrist + 5 fingertips per hand), from the one copy of the tables
/// in `assets/skeleton/imigue36.toml`.
pub fn imigue36() -> Skeleton {
    let a = crate::dataset::Skeleton::imigue36();
    Skeleton {
        name: "imigue36",
        num_keypoints: a.len(),
        limbs: a.limbs.iter().map(|l| (l[0], l[1])).collect(),
        left_kp: a.left_kp,
        right_kp: a.right_kp,
        left_limb: a.left_limb,
        right_limb: a.right_limb,
    }
}

/// Looks a skeleton up by the names the CLI accepts.
pub fn skeleton_by_name(name: &str) -> Option<Skeleton> {
    match name {
        "coco17" | "coco" => Some(coco17()),
        "imigue36" | "imigue" => Some(imigue36()),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeatmapKind {
    /// One channel per keypoint (`with_kp=True`).
    Joint,
    /// One channel per skeleton edge (`with_limb=True`).
    Limb,
}

/// Which NumPy's scalar type promotion to reproduce (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumpyPromotion {
    /// NumPy ≥ 2 (NEP 50): float32 scalars stay float32. The reference environment here.
    Numpy2,
    /// NumPy 1.x: scalar-with-Python-float arithmetic and scalar `** 2` run in float64.
    Numpy1,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapParams {
    pub kind: HeatmapKind,
    pub sigma: f64,
    /// Peak = keypoint score (else 1).
    pub use_score: bool,
    /// Canvas `int(H*scaling+0.5)` × `int(W*scaling+0.5)`, keypoints multiplied by `scaling`.
    pub scaling: f64,
    /// Append the horizontally flipped copy with left/right channels swapped (test time).
    pub double: bool,
    /// Points (limbs) whose score (smaller end score) is below this are not drawn.
    pub eps: f64,
    pub promotion: NumpyPromotion,
    /// Worker threads over frames; 0 = all available cores.
    pub threads: usize,
}

impl HeatmapParams {
    /// pyskl defaults for a joint volume: use_score, scaling 1, no double, EPS 1e-3.
    pub fn joint(sigma: f64) -> Self {
        Self {
            kind: HeatmapKind::Joint,
            sigma,
            use_score: true,
            scaling: 1.0,
            double: false,
            eps: PYSKL_EPS,
            promotion: NumpyPromotion::Numpy2,
            threads: 0,
        }
    }

    pub fn limb(sigma: f64) -> Self {
        Self {
            kind: HeatmapKind::Limb,
            ..Self::joint(sigma)
        }
    }
}

/// A heatmap volume `[frames, channels, height, width]`, float32, C order. With `double` the
/// frames are the T originals followed by their T flipped copies (mmaction2 concatenates along
/// axis 0), so `frames = 2T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmaps {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

/// Keypoints `[M, T, V, 2]` (x, y in pixels) and optional scores `[M, T, V]`, C order.
#[derive(Debug, Clone, Copy)]
pub struct PoseArrays<'a> {
    pub keypoints: &'a [f32],
    pub scores: Option<&'a [f32]>,
    pub num_persons: usize,
    pub num_frames: usize,
    pub num_keypoints: usize,
}

/// Canvas size after `scaling`: Python's `int(h * scaling + 0.5)`.
pub fn scaled_canvas(img_h: usize, img_w: usize, scaling: f64) -> (usize, usize) {
    let f = |v: usize| ((v as f64) * scaling + 0.5) as usize;
    (f(img_h), f(img_w))
}

/// `GeneratePoseTarget.transform`: heatmaps for every frame of one clip.
pub fn generate_pose_target(
    pose: PoseArrays<'_>,
    img_h: usize,
    img_w: usize,
    skeleton: &Skeleton,
    params: &HeatmapParams,
) -> Result<Heatmaps> {
    let (m, t, v) = (pose.num_persons, pose.num_frames, pose.num_keypoints);
    let n = m * t * v;
    if pose.keypoints.len() != n * 2 {
        return Err(ModalityError::shape(
            "keypoints",
            format!(
                "[M={m}, T={t}, V={v}, 2] needs {} values, got {}",
                n * 2,
                pose.keypoints.len()
            ),
        ));
    }
    if let Some(s) = pose.scores {
        if s.len() != n {
            return Err(ModalityError::shape(
                "scores",
                format!("[M={m}, T={t}, V={v}] needs {n} values, got {}", s.len()),
            ));
        }
    }
    if !(params.sigma.is_finite() && params.sigma > 0.0) {
        return Err(ModalityError::param(
            "sigma",
            format!("{} (must be > 0)", params.sigma),
        ));
    }
    if !(params.scaling.is_finite() && params.scaling > 0.0) {
        return Err(ModalityError::param(
            "scaling",
            format!("{} (must be > 0)", params.scaling),
        ));
    }
    if !params.eps.is_finite() {
        return Err(ModalityError::param("eps", format!("{}", params.eps)));
    }
    let channels = match params.kind {
        HeatmapKind::Joint => v,
        HeatmapKind::Limb => {
            if let Some(&(a, b)) = skeleton.limbs.iter().find(|&&(a, b)| a >= v || b >= v) {
                return Err(ModalityError::param(
                    "skeleton",
                    format!(
                        "limb ({a}, {b}) of '{}' indexes past the {v} keypoints given",
                        skeleton.name
                    ),
                ));
            }
            skeleton.limbs.len()
        }
    };
    let flip_order = if params.double {
        let (left, right) = match params.kind {
            HeatmapKind::Joint => (&skeleton.left_kp, &skeleton.right_kp),
            HeatmapKind::Limb => (&skeleton.left_limb, &skeleton.right_limb),
        };
        Some(flip_indices(channels, left, right)?)
    } else {
        None
    };
    let (h, w) = scaled_canvas(img_h, img_w, params.scaling);

    let scale32 = params.scaling as f32;
    let kps: Vec<f32> = pose.keypoints.iter().map(|&x| x * scale32).collect();
    let vals: Vec<f32> = match (params.use_score, pose.scores) {
        (true, Some(s)) => s.to_vec(),
        _ => vec![1.0; n],
    };
    let consts = Consts::new(params);
    check_finite(&kps, &vals, &consts)?;

    let chw = channels * h * w;
    let frames_out = if params.double { 2 * t } else { t };
    let job = Job {
        kps: &kps,
        vals: &vals,
        m,
        t,
        v,
        h,
        w,
        channels,
        kind: params.kind,
        limbs: &skeleton.limbs,
        consts,
        flip_order: flip_order.as_deref(),
    };
    let data = if chw > 0 && t > 0 {
        run_frames(&job, frames_out * chw, params.threads)
    } else {
        vec![0f32; frames_out * chw]
    };
    Ok(Heatmaps {
        shape: [frames_out, channels, h, w],
        data,
    })
}

/// mmaction2's `indices`: start from the identity and assign the pairs in order.
fn flip_indices(channels: usize, left: &[usize], right: &[usize]) -> Result<Vec<usize>> {
    if left.len() != right.len() {
        return Err(ModalityError::param(
            "flip pairs",
            format!("{} left vs {} right indices", left.len(), right.len()),
        ));
    }
    let mut idx: Vec<usize> = (0..channels).collect();
    for (&l, &r) in left.iter().zip(right) {
        if l >= channels || r >= channels {
            return Err(ModalityError::param(
                "flip pairs",
                format!("pair ({l}, {r}) outside {channels} channels"),
            ));
        }
        idx[l] = r;
        idx[r] = l;
    }
    Ok(idx)
}

/// The reference would raise on `int(nan)`; refuse such input up front instead of drawing junk.
fn check_finite(kps: &[f32], vals: &[f32], c: &Consts) -> Result<()> {
    for (i, &s) in vals.iter().enumerate() {
        if s.is_nan() {
            return Err(ModalityError::param(
                "scores",
                format!("NaN at flat index {i}"),
            ));
        }
        let finite = kps[2 * i].is_finite() && kps[2 * i + 1].is_finite();
        if !finite && !c.below_eps(s) {
            return Err(ModalityError::param(
                "keypoints",
                format!("non-finite coordinate at flat index {i} with score {s}"),
            ));
        }
    }
    Ok(())
}

/// Per-call constants, rounded the way the reference rounds them.
#[derive(Debug, Clone, Copy)]
struct Consts {
    promotion: NumpyPromotion,
    /// `3 * sigma` (Python float64).
    three_sigma: f64,
    /// `sigma ** 2` as float32 (joint patches divide a float32 array by it).
    sig2_f32: f32,
    /// `sigma ** 2` in float64 (limb patches are float64).
    sig2_f64: f64,
    eps: f64,
    eps_f32: f32,
}

impl Consts {
    fn new(p: &HeatmapParams) -> Self {
        let sig2 = p.sigma * p.sigma;
        Self {
            promotion: p.promotion,
            three_sigma: 3.0 * p.sigma,
            sig2_f32: sig2 as f32,
            sig2_f64: sig2,
            eps: p.eps,
            eps_f32: p.eps as f32,
        }
    }

    /// `score < self.eps` with a float32 score: NumPy 2 compares in float32, NumPy 1 in float64.
    #[inline(always)]
    fn below_eps(&self, s: f32) -> bool {
        match self.promotion {
            NumpyPromotion::Numpy2 => s < self.eps_f32,
            NumpyPromotion::Numpy1 => f64::from(s) < self.eps,
        }
    }

    /// `max(int(lo - 3σ), 0)` and `min(int(hi + 3σ) + 1, n)` as i64 (may be an empty range).
    #[inline(always)]
    fn window(&self, lo: f32, hi: f32, n: usize) -> (i64, i64) {
        let (a, b) = match self.promotion {
            NumpyPromotion::Numpy2 => {
                let ts = self.three_sigma as f32;
                ((lo - ts) as i64, (hi + ts) as i64)
            }
            NumpyPromotion::Numpy1 => (
                (f64::from(lo) - self.three_sigma) as i64,
                (f64::from(hi) + self.three_sigma) as i64,
            ),
        };
        (a.max(0), b.saturating_add(1).min(n as i64))
    }
}

struct Job<'a> {
    kps: &'a [f32],
    vals: &'a [f32],
    m: usize,
    t: usize,
    v: usize,
    h: usize,
    w: usize,
    channels: usize,
    kind: HeatmapKind,
    limbs: &'a [(usize, usize)],
    consts: Consts,
    flip_order: Option<&'a [usize]>,
}

/// Renders all frames into a new buffer of `total` values. Each worker zero-fills a frame right
/// before drawing into it, so the drawing hits cache; a pre-zeroed 28 MB buffer (one clip at
/// 64×64) would be cold again by then and cost a second pass over memory.
fn run_frames(job: &Job<'_>, total: usize, threads: usize) -> Vec<f32> {
    let chw = job.channels * job.h * job.w;
    let mut data: Vec<f32> = Vec::with_capacity(total);
    let spare = &mut data.spare_capacity_mut()[..total];
    let (orig, flip) = spare.split_at_mut(job.t * chw);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, job.t);
    let per = job.t.div_ceil(threads);
    if threads == 1 {
        render_dispatch(job, 0, orig, flip);
    } else {
        std::thread::scope(|s| {
            let mut flips = if flip.is_empty() {
                None
            } else {
                Some(flip.chunks_mut(per * chw))
            };
            for (i, chunk) in orig.chunks_mut(per * chw).enumerate() {
                let fchunk: &mut [MaybeUninit<f32>] = match flips.as_mut().and_then(|f| f.next()) {
                    Some(f) => f,
                    None => &mut [],
                };
                s.spawn(move || render_dispatch(job, i * per, chunk, fchunk));
            }
        });
    }
    // SAFETY: `render` zero-fills every original frame before drawing into it and `flip_frame`
    // writes every element of every flipped frame; the chunks above cover all `total` values
    // (orig = T frames, flip = the rest), and all workers have been joined. A panic in a worker
    // propagates out of the scope before this line, leaving the Vec empty.
    unsafe { data.set_len(total) };
    data
}

/// Zero-fills a frame and hands it back as initialised floats.
fn zero_init(frame: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for x in frame.iter_mut() {
        x.write(0.0);
    }
    // SAFETY: every element was written just above, and `MaybeUninit<f32>` has the layout of
    // `f32`.
    unsafe { &mut *(frame as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Renders consecutive frames starting at `t0` into `orig` (and their flips into `flip`).
/// The exact `exp` ports lean on fused multiply-adds; with the CPU's FMA unit they inline and
/// vectorise (AVX2), otherwise `mul_add` falls back to libm's correctly rounded `fma` — same
/// results, slower.
fn render_dispatch(
    job: &Job<'_>,
    t0: usize,
    orig: &mut [MaybeUninit<f32>],
    flip: &mut [MaybeUninit<f32>],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            unsafe { render_avx2(job, t0, orig, flip) };
            return;
        }
    }
    render(job, t0, orig, flip);
}

/// `unsafe fn` (not a safe `#[target_feature]` fn) keeps the crate building on Rust < 1.86.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn render_avx2(
    job: &Job<'_>,
    t0: usize,
    orig: &mut [MaybeUninit<f32>],
    flip: &mut [MaybeUninit<f32>],
) {
    render(job, t0, orig, flip);
}

#[inline(always)]
fn render(job: &Job<'_>, t0: usize, orig: &mut [MaybeUninit<f32>], flip: &mut [MaybeUninit<f32>]) {
    let hw = job.h * job.w;
    let chw = job.channels * hw;
    let mut sc = Scratch::default();
    let mut flips = flip.chunks_mut(chw);
    for (k, frame) in orig.chunks_mut(chw).enumerate() {
        let t = t0 + k;
        let frame = zero_init(frame);
        for (c, arr) in frame.chunks_mut(hw).enumerate() {
            match job.kind {
                HeatmapKind::Joint => {
                    for p in 0..job.m {
                        let i = (p * job.t + t) * job.v + c;
                        draw_gaussian(
                            arr,
                            job.h,
                            job.w,
                            job.kps[2 * i],
                            job.kps[2 * i + 1],
                            job.vals[i],
                            &job.consts,
                            &mut sc,
                        );
                    }
                }
                HeatmapKind::Limb => {
                    let (a, b) = job.limbs[c];
                    for p in 0..job.m {
                        let ia = (p * job.t + t) * job.v + a;
                        let ib = (p * job.t + t) * job.v + b;
                        draw_limb(
                            arr,
                            job.h,
                            job.w,
                            [job.kps[2 * ia], job.kps[2 * ia + 1]],
                            [job.kps[2 * ib], job.kps[2 * ib + 1]],
                            job.vals[ia],
                            job.vals[ib],
                            &job.consts,
                            &mut sc,
                        );
                    }
                }
            }
        }
        if let (Some(order), Some(out)) = (job.flip_order, flips.next()) {
            flip_frame(frame, out, order, job.h, job.w);
        }
    }
}

/// Per-thread buffers, so a patch is computed as one flat, vectorisable run of `exp`s.
#[derive(Default)]
struct Scratch {
    f32s: Vec<f32>,
    f64s: Vec<f64>,
}

/// `heatmap[..., ::-1][:, indices]` for one frame.
fn flip_frame(src: &[f32], dst: &mut [MaybeUninit<f32>], order: &[usize], h: usize, w: usize) {
    let hw = h * w;
    for (c, out) in dst.chunks_mut(hw).enumerate() {
        let from = &src[order[c] * hw..(order[c] + 1) * hw];
        for (orow, irow) in out.chunks_mut(w).zip(from.chunks(w)) {
            for (o, i) in orow.iter_mut().zip(irow.iter().rev()) {
                o.write(*i);
            }
        }
    }
}

/// `generate_a_heatmap` for one person: a float32 Gaussian patch max-combined into `arr`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn draw_gaussian(
    arr: &mut [f32],
    h: usize,
    w: usize,
    mx: f32,
    my: f32,
    val: f32,
    c: &Consts,
    sc: &mut Scratch,
) {
    if c.below_eps(val) {
        return;
    }
    let (x0, x1) = c.window(mx, mx, w);
    let (y0, y1) = c.window(my, my, h);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let nx = (x1 - x0) as usize;
    let buf = &mut sc.f32s;
    buf.clear();
    for y in y0..y1 {
        let dy = y as f32 - my;
        let dy2 = dy * dy;
        for x in x0..x1 {
            let dx = x as f32 - mx;
            buf.push(-(dx * dx + dy2) / 2.0 / c.sig2_f32);
        }
    }
    let n = buf.len();
    buf.resize(n.next_multiple_of(8), 0.0);
    exp_f32_slice(buf);
    for (row_vals, y) in buf[..n].chunks_exact(nx).zip(y0 as usize..) {
        let row = &mut arr[y * w + x0 as usize..y * w + x1 as usize];
        for (o, &e) in row.iter_mut().zip(row_vals) {
            let e = e * val;
            *o = if e > *o { e } else { *o };
        }
    }
}

/// Python's `min(a, b)` / `max(a, b)`: the first argument unless the second is strictly
/// smaller / larger.
#[inline(always)]
fn py_min(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

#[inline(always)]
fn py_max(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// `generate_a_limb_heatmap` for one person: squared distance to the segment AB, float64 patch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn draw_limb(
    arr: &mut [f32],
    h: usize,
    w: usize,
    a: [f32; 2],
    b: [f32; 2],
    va: f32,
    vb: f32,
    c: &Consts,
    sc: &mut Scratch,
) {
    let value = py_min(va, vb);
    if c.below_eps(value) {
        return;
    }
    let (x0, x1) = c.window(py_min(a[0], b[0]), py_max(a[0], b[0]), w);
    let (y0, y1) = c.window(py_min(a[1], b[1]), py_max(a[1], b[1]), h);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let (ddx, ddy) = (a[0] - b[0], a[1] - b[1]);
    // `d2_ab` is a NumPy scalar expression: float32 through libm powf under NumPy 2 (the
    // exponent is hidden from the optimiser, which would otherwise turn powf(x, 2) into x*x and
    // round differently), float64 under NumPy 1 (where the square is exact).
    let d2_ab: f32 = match c.promotion {
        NumpyPromotion::Numpy2 => {
            let two = std::hint::black_box(2.0f32);
            ddx.powf(two) + ddy.powf(two)
        }
        NumpyPromotion::Numpy1 => {
            let d = f64::from(ddx) * f64::from(ddx) + f64::from(ddy) * f64::from(ddy);
            if d < 1.0 {
                draw_gaussian(arr, h, w, a[0], a[1], va, c, sc);
                return;
            }
            d as f32
        }
    };
    if d2_ab < 1.0 {
        draw_gaussian(arr, h, w, a[0], a[1], va, c, sc);
        return;
    }
    let (bx, by) = (b[0] - a[0], b[1] - a[1]);
    let vd = f64::from(value);
    let nx = (x1 - x0) as usize;
    let n = nx * (y1 - y0) as usize;
    let buf = &mut sc.f64s;
    buf.clear();
    // one flat run for the whole window, padded to whole vectors (the pad is never read)
    buf.resize(n.next_multiple_of(8), 0.0);
    for (row_args, y) in buf.chunks_exact_mut(nx).zip(y0..y1) {
        let yf = y as f32;
        let dys = yf - a[1];
        let dye = yf - b[1];
        let (dys2, dye2) = (dys * dys, dye * dye);
        for (i, arg) in row_args.iter_mut().enumerate() {
            let xf = (x0 + i as i64) as f32;
            let dxs = xf - a[0];
            let dxe = xf - b[0];
            let d2s = dxs * dxs + dys2;
            let d2e = dxe * dxe + dye2;
            let coeff = (d2s - d2e + d2_ab) / 2.0 / d2_ab;
            let lx = xf - (a[0] + coeff * bx);
            let ly = yf - (a[1] + coeff * by);
            let d2l = lx * lx + ly * ly;
            let d2 = if coeff <= 0.0 {
                d2s
            } else if coeff >= 1.0 {
                d2e
            } else {
                d2l
            };
            // float64 from here on: `seg_dominate` is int64
            *arg = -f64::from(d2) / 2.0 / c.sig2_f64;
        }
    }
    exp_f64_slice(buf);
    for (row_vals, y) in buf.chunks_exact(nx).zip(y0 as usize..y1 as usize) {
        let row = &mut arr[y * w + x0 as usize..y * w + x1 as usize];
        for (o, &e) in row.iter_mut().zip(row_vals) {
            let e = (e * vd) as f32;
            *o = if e > *o { e } else { *o };
        }
    }
}

/// `exp` over a slice: a plain loop over the branch-free kernel, which the loop vectoriser
/// turns into SIMD (gathers for the 2^(j/16) table included).
#[inline(always)]
fn exp_f32_slice(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = np_exp_f32(*x);
    }
}

#[inline(always)]
fn exp_f64_slice(v: &mut [f64]) {
    for x in v.iter_mut() {
        *x = np_exp_f64(*x);
    }
}

// ---------------------------------------------------------------------------------------------
// NumPy's exp, bit for bit
// ---------------------------------------------------------------------------------------------

/// NumPy's float32 `exp` (`simd_exp_FLOAT` in `numpy/_core/src/umath/loops_exponent_log.
/// dispatch.c.src`, the AVX2/AVX-512F kernels): Cody-Waite reduction by ln 2, a 5/2 rational
/// approximation, scaling by 2^k. Not libm's `expf`: ~40% of results differ in the last ulp.
/// Written without branches so that loops over it vectorise.
#[inline(always)]
pub(crate) fn np_exp_f32(x: f32) -> f32 {
    const XMAX: f32 = f32::from_bits(0x42b1_7218); // 88.72283935546875
    const XMIN: f32 = f32::from_bits(0xc2cf_f1b5); // -103.97208404541015625
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = f32::from_bits(0xBF31_7200); // -6.93145752e-1 (ln 2 high part)
    const C2: f32 = f32::from_bits(0xB5BF_BE8E); // -1.42860677e-6 (ln 2 low part)
                                                 // NPY_COEFF_{P,Q}*_EXPf, as the float32 values the C literals round to
    const P0: f32 = f32::from_bits(0x3f80_0000); // 9.999999999980870924916e-01
    const P1: f32 = f32::from_bits(0x3f39_cbd5); // 7.257664613233124478488e-01
    const P2: f32 = f32::from_bits(0x3e7d_4c58); // 2.473615434895520810817e-01
    const P3: f32 = f32::from_bits(0x3d51_7d8c); // 5.114512081637298353406e-02
    const P4: f32 = f32::from_bits(0x3bdd_7159); // 6.757896990527504603057e-03
    const P5: f32 = f32::from_bits(0x3a05_3dd8); // 5.082762527590693718096e-04
    const Q1: f32 = f32::from_bits(0xbe8c_6857); // -2.742335390411667452936e-01
    const Q2: f32 = f32::from_bits(0x3cb0_e832); // 2.159509375685829852307e-02
    let nan = x.is_nan();
    let over = x >= XMAX;
    let under = x <= XMIN;
    let xc = if nan || over || under { 0.0 } else { x };
    let k = (xc * LOG2E).round_ties_even();
    let y = k.mul_add(C1, xc);
    let y = k.mul_add(C2, y);
    let num = P5.mul_add(y, P4);
    let num = num.mul_add(y, P3);
    let num = num.mul_add(y, P2);
    let num = num.mul_add(y, P1);
    let num = num.mul_add(y, P0);
    let den = Q2.mul_add(y, Q1);
    let den = den.mul_add(y, 1.0);
    let poly = num / den;
    // scalef: one rounding of poly·2^k, into the subnormals too (the product is exact in f64;
    // k >= -150 here)
    let r = (f64::from(poly) * f64::from_bits(((k as i32 + 1023) as u64) << 52)) as f32;
    let r = if over { f32::INFINITY } else { r };
    let r = if under { 0.0 } else { r };
    if nan {
        x
    } else {
        r
    }
}

/// `2^(j/16)`, high parts (SVML `__svml_dexp_ha_data_internal_avx512`, offsets 0 and 64).
const EXP16_HI: [u64; 16] = [
    0x3ff0000000000000,
    0x3ff0b5586cf9890f,
    0x3ff172b83c7d517b,
    0x3ff2387a6e756238,
    0x3ff306fe0a31b715,
    0x3ff3dea64c123422,
    0x3ff4bfdad5362a27,
    0x3ff5ab07dd485429,
    0x3ff6a09e667f3bcd,
    0x3ff7a11473eb0187,
    0x3ff8ace5422aa0db,
    0x3ff9c49182a3f090,
    0x3ffae89f995ad3ad,
    0x3ffc199bdd85529c,
    0x3ffd5818dcfba487,
    0x3ffea4afa2a490da,
];

/// `2^(j/16)`, relative low parts (offsets 128 and 192).
const EXP16_LO: [u64; 16] = [
    0x0,
    0x3c979aa65d837b6d,
    0xbc801b15eaa59348,
    0x3c968efde3a8a894,
    0x3c834d754db0abb6,
    0x3c859f48a72a4c6d,
    0x3c7690cebb7aafb0,
    0x3c9063e1e21c5409,
    0xbc93b3efbf5e2228,
    0xbc7b32dcb94da51d,
    0x3c8db72fc1f0eab4,
    0x3c71affc2b91ce27,
    0x3c8c1a7792cb3387,
    0x3c736eae30af0cb3,
    0x3c74a385a63d07a7,
    0xbc8ff7128fd391f0,
];

/// NumPy's float64 `exp` on AVX-512 (SKX) CPUs, which NumPy routes to Intel SVML's
/// `__svml_exp8_ha` (numpy/SVML `linux/avx512/svml_z0_exp_d_ha.s`): N = x·log2(e) truncated to
/// 1/16 steps, r = x − N·ln 2 in two fused steps, a degree-6 polynomial, the table 2^(j/16),
/// and a final scale by 2^floor(N). Branch-free so that loops over it vectorise.
///
/// Exact for −707.70 < x < 707.70 (the kernel's own range; beyond it SVML takes a scalar slow
/// path). Below that this returns 0 — what every caller here sees after rounding to float32 —
/// and above it +inf; NaN passes through.
#[inline(always)]
pub(crate) fn np_exp_f64(x: f64) -> f64 {
    const L2E: f64 = f64::from_bits(0x3ff71547652b82fe);
    const LN2_HI: f64 = f64::from_bits(0x3fe62e42fefa39ef);
    const LN2_LO: f64 = f64::from_bits(0x3c7abc9e3b39803f);
    const C6: f64 = f64::from_bits(0x3f57411836940c04);
    const C5: f64 = f64::from_bits(0x3f81101cbbc265c0);
    const C4: f64 = f64::from_bits(0x3fa55557242d68fe);
    const C3: f64 = f64::from_bits(0x3fc5555553939732);
    const C2: f64 = f64::from_bits(0x3fe000000000d008);
    const C1: f64 = f64::from_bits(0x3fefffffffffff70);
    const THRESHOLD: f64 = f64::from_bits(0x40861da04cbafe44); // 707.703…
    let nan = x.is_nan();
    let big = x.abs() >= THRESHOLD;
    let xc = if nan || big { 0.0 } else { x };
    // floor(16·x·log2e) of the exact product (the kernel adds a shifter in round-toward-zero):
    // the rounded product only misleads when 16·p is an integer and the rounding went up.
    let p = xc * L2E;
    let f = p * 16.0;
    let fl = f.floor();
    let k16 = if fl == f && xc.mul_add(L2E, -p) < 0.0 {
        fl - 1.0
    } else {
        fl
    };
    let ki = k16 as i32;
    let j = (ki & 15) as usize;
    let n = k16 / 16.0;
    let r = (-n).mul_add(LN2_HI, xc);
    let r = (-n).mul_add(LN2_LO, r);
    let r = f64::from_bits(r.to_bits() & 0xbfff_ffff_ffff_ffff);
    let r2 = r * r;
    let p56 = C6.mul_add(r, C5);
    let p34 = C4.mul_add(r, C3);
    let p12 = C2.mul_add(r, C1);
    let p36 = r2.mul_add(p56, p34);
    let p16 = r2.mul_add(p36, p12);
    let th = f64::from_bits(EXP16_HI[j]);
    let tl = f64::from_bits(EXP16_LO[j]);
    let poly = p16.mul_add(r, tl);
    let res = th.mul_add(poly, th);
    // vscalefpd by floor(N) = ki >> 4; |x| < 707.7 keeps 2^floor(N) and the result normal
    let res = res * f64::from_bits((i64::from((ki >> 4) + 1023) as u64) << 52);
    let big_val = if x < 0.0 { 0.0 } else { f64::INFINITY };
    let res = if big { big_val } else { res };
    if nan {
        x
    } else {
        res
    }
}

#[cfg(test)]
mod tests {
    use super::super::npy::read_npy_as;
    use super::*;

    fn fixture(name: &str) -> String {
        format!(
            "{}/{name}.npy",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/modality")
        )
    }

    #[test]
    fn exp_ports_match_numpy_bit_for_bit() {
        let (_, x) = read_npy_as::<f32>(fixture("npexp_f32_in")).unwrap();
        let (_, y) = read_npy_as::<f32>(fixture("npexp_f32_out")).unwrap();
        let bad = x
            .iter()
            .zip(&y)
            .filter(|(a, b)| np_exp_f32(**a).to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "float32 exp mismatches out of {}", x.len());
        let (_, x) = read_npy_as::<f64>(fixture("npexp_f64_in")).unwrap();
        let (_, y) = read_npy_as::<f64>(fixture("npexp_f64_out")).unwrap();
        let bad = x
            .iter()
            .zip(&y)
            .filter(|(a, b)| np_exp_f64(**a).to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "float64 exp mismatches out of {}", x.len());
    }

    struct Case {
        kp: Vec<f32>,
        scores: Option<Vec<f32>>,
        /// keypoint array shape [M, T, V, 2]
        dims: [usize; 4],
        img: (usize, usize),
        params: HeatmapParams,
        skeleton: Skeleton,
        shape: [usize; 4],
        expected: Vec<f32>,
    }

    impl Case {
        fn pose(&self) -> PoseArrays<'_> {
            PoseArrays {
                keypoints: &self.kp,
                scores: self.scores.as_deref(),
                num_persons: self.dims[0],
                num_frames: self.dims[1],
                num_keypoints: self.dims[2],
            }
        }
    }

    fn load_case(name: &str) -> Case {
        let (kshape, kp) = read_npy_as::<f32>(fixture(&format!("{name}_kp"))).unwrap();
        let (_, meta) = read_npy_as::<f64>(fixture(&format!("{name}_meta"))).unwrap();
        let scores = (meta[13] != 0.0).then(|| {
            read_npy_as::<f32>(fixture(&format!("{name}_score")))
                .unwrap()
                .1
        });
        let (_, nzidx) = read_npy_as::<i32>(fixture(&format!("{name}_nzidx"))).unwrap();
        let (_, nzval) = read_npy_as::<f32>(fixture(&format!("{name}_nzval"))).unwrap();
        let shape = [meta[8], meta[9], meta[10], meta[11]].map(|v| v as usize);
        let mut expected = vec![0f32; shape.iter().product()];
        for (i, v) in nzidx.iter().zip(nzval) {
            expected[*i as usize] = v;
        }
        let mut params = if meta[4] == 0.0 {
            HeatmapParams::joint(meta[2])
        } else {
            HeatmapParams::limb(meta[2])
        };
        params.scaling = meta[3];
        params.double = meta[5] != 0.0;
        params.use_score = meta[6] != 0.0;
        params.eps = meta[7];
        let skeleton = if meta[12] == 0.0 {
            coco17()
        } else {
            imigue36()
        };
        Case {
            kp,
            scores,
            dims: [kshape[0], kshape[1], kshape[2], kshape[3]],
            img: (meta[0] as usize, meta[1] as usize),
            params,
            skeleton,
            shape,
            expected,
        }
    }

    fn max_abs(a: &[f32], b: &[f32]) -> (f32, usize) {
        let mut m = 0f32;
        let mut n = 0;
        for (x, y) in a.iter().zip(b) {
            let d = (x - y).abs();
            m = m.max(d);
            if x.to_bits() != y.to_bits() {
                n += 1;
            }
        }
        (m, n)
    }

    /// (fixture prefix, NumPy whose promotion the reference ran under)
    const CASES: [(&str, NumpyPromotion); 13] = [
        ("hm_coco_joint64", NumpyPromotion::Numpy2),
        ("hm_coco_limb64_double", NumpyPromotion::Numpy2),
        ("hm_coco_joint_s025_double", NumpyPromotion::Numpy2),
        ("hm_coco_limb_noscore", NumpyPromotion::Numpy2),
        ("hm_coco_limb_usescore0", NumpyPromotion::Numpy2),
        ("hm_imigue_joint_double", NumpyPromotion::Numpy2),
        ("hm_imigue_limb_double", NumpyPromotion::Numpy2),
        ("hm_imigue_limb_eps4", NumpyPromotion::Numpy2),
        ("hm_imigue_joint_s025", NumpyPromotion::Numpy2),
        ("np1_imigue_joint", NumpyPromotion::Numpy1),
        ("np1_imigue_limb", NumpyPromotion::Numpy1),
        ("np1_imigue_limb_s07", NumpyPromotion::Numpy1),
        ("np1_coco_limb", NumpyPromotion::Numpy1),
    ];

    #[test]
    fn parity_with_mmaction2_generate_pose_target() {
        for (name, promotion) in CASES {
            let case = load_case(name);
            for threads in [1, 3] {
                let mut params = case.params.clone();
                params.threads = threads;
                params.promotion = promotion;
                let (h, w) = case.img;
                let hm = generate_pose_target(case.pose(), h, w, &case.skeleton, &params).unwrap();
                assert_eq!(hm.shape, case.shape, "{name}");
                let (err, nbits) = max_abs(&hm.data, &case.expected);
                println!(
                    "{name:28} threads {threads}: max abs err {err:e}, {nbits} values differ in any bit"
                );
                assert!(err <= 1e-5, "{name}: max abs err {err}");
                assert_eq!(nbits, 0, "{name}: not bit-exact");
            }
        }
    }

    #[test]
    fn numpy_promotion_matters() {
        let case = load_case("np1_imigue_limb");
        let mut p = case.params.clone();
        p.promotion = NumpyPromotion::Numpy2;
        let (h, w) = case.img;
        let hm = generate_pose_target(case.pose(), h, w, &case.skeleton, &p).unwrap();
        let (err, n) = max_abs(&hm.data, &case.expected);
        assert!(
            n > 0 && err > 1e-5,
            "NumPy 2 maths should not match the NumPy 1 reference"
        );
    }

    #[test]
    fn small_cases_by_hand() {
        // One person, one frame, point at (2, 1) on a 4x5 canvas, sigma 0.6: the window is
        // x in [0, 4], y in [0, 2] (int(2-1.8)=0 .. int(2+1.8)+1=4).
        let kp = [2.0f32, 1.0];
        let pose = PoseArrays {
            keypoints: &kp,
            scores: Some(&[0.5]),
            num_persons: 1,
            num_frames: 1,
            num_keypoints: 1,
        };
        let mut sk = coco17();
        sk.num_keypoints = 1;
        let mut p = HeatmapParams::joint(0.6);
        p.threads = 1;
        let hm = generate_pose_target(pose, 4, 5, &sk, &p).unwrap();
        assert_eq!(hm.shape, [1, 1, 4, 5]);
        assert_eq!(hm.data[5 + 2], 0.5); // the centre carries the score
        assert_eq!(hm.data[3 * 5 + 2], 0.0); // y = 3 is outside the window
        assert_eq!(hm.data[5 + 4], 0.0); // x = 4 is outside the window
        assert!(hm.data[5 + 3] > 0.0 && hm.data[5 + 3] < 0.5);
        // below EPS: nothing drawn
        let pose2 = PoseArrays {
            scores: Some(&[9e-4]),
            ..pose
        };
        let hm = generate_pose_target(pose2, 4, 5, &sk, &p).unwrap();
        assert!(hm.data.iter().all(|&v| v == 0.0));
        p.eps = MMACTION2_EPS;
        let hm = generate_pose_target(pose2, 4, 5, &sk, &p).unwrap();
        assert_eq!(hm.data[5 + 2], 9e-4);
    }

    #[test]
    fn double_layout_is_originals_then_flips() {
        let sk = coco17();
        let mut kp = vec![0f32; 2 * 17 * 2];
        kp[2] = 3.0; // frame 0, keypoint 1 (left eye) at (3, 4)
        kp[3] = 4.0;
        let mut p = HeatmapParams::joint(0.6);
        p.double = true;
        let pose = PoseArrays {
            keypoints: &kp,
            scores: None,
            num_persons: 1,
            num_frames: 2,
            num_keypoints: 17,
        };
        let hm = generate_pose_target(pose, 8, 10, &sk, &p).unwrap();
        assert_eq!(hm.shape, [4, 17, 8, 10]);
        let at = |f: usize, c: usize, y: usize, x: usize| hm.data[((f * 17 + c) * 8 + y) * 10 + x];
        assert_eq!(at(0, 1, 4, 3), 1.0);
        // flipped copy of frame 0 is frame 2; left eye (1) moves to right eye (2), x -> W-1-x
        assert_eq!(at(2, 2, 4, 6), 1.0);
        assert_eq!(at(2, 1, 4, 3), 0.0);
        // keypoint 0 sits at (0,0) with score 1 in both frames
        assert_eq!(at(1, 0, 0, 0), 1.0);
        assert_eq!(at(3, 0, 0, 9), 1.0);
    }

    #[test]
    fn bad_input_is_refused() {
        let sk = coco17();
        let p = HeatmapParams::limb(0.6);
        let kp = vec![0f32; 10];
        let pose = PoseArrays {
            keypoints: &kp,
            scores: None,
            num_persons: 1,
            num_frames: 1,
            num_keypoints: 5,
        };
        let e = generate_pose_target(pose, 8, 8, &sk, &p).unwrap_err();
        assert!(e.to_string().contains("limb"), "{e}");
        let pose = PoseArrays {
            num_keypoints: 17,
            ..pose
        };
        assert!(generate_pose_target(pose, 8, 8, &sk, &p).is_err());
        let kp = [f32::NAN, 1.0];
        let pose = PoseArrays {
            keypoints: &kp,
            scores: None,
            num_persons: 1,
            num_frames: 1,
            num_keypoints: 1,
        };
        let e = generate_pose_target(pose, 8, 8, &sk, &HeatmapParams::joint(0.6)).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        let mut bad = HeatmapParams::joint(0.0);
        assert!(generate_pose_target(pose, 8, 8, &sk, &bad).is_err());
        bad.sigma = 0.6;
        bad.scaling = -1.0;
        assert!(generate_pose_target(pose, 8, 8, &sk, &bad).is_err());
    }

    #[test]
    fn skeleton_constants() {
        let s = imigue36();
        assert_eq!(s.limbs.len(), 36);
        assert_eq!(s.left_kp.len(), s.right_kp.len());
        assert_eq!(s.left_limb.len(), s.right_limb.len());
        // every flipped limb pair maps onto each other's mirror: (a,b) <-> (f(a), f(b))
        let mut f: Vec<usize> = (0..36).collect();
        for (&l, &r) in s.left_kp.iter().zip(&s.right_kp) {
            f[l] = r;
            f[r] = l;
        }
        for (&l, &r) in s.left_limb.iter().zip(&s.right_limb) {
            let (a, b) = s.limbs[l];
            let (c, d) = s.limbs[r];
            assert!(
                (f[a], f[b]) == (c, d) || (f[a], f[b]) == (d, c),
                "limb pair {l}/{r}"
            );
        }
        let c = coco17();
        assert_eq!(c.limbs.len(), 17);
        assert_eq!(skeleton_by_name("imigue36").unwrap().num_keypoints, 36);
        assert!(skeleton_by_name("nope").is_none());
    }
}
