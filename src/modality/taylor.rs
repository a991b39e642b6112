//! Taylor videos (Wang, Yuan, Gedeon, Zheng, ICML 2024): each output frame encodes the motion in
//! a window of K+3 grayscale frames as three channels — displacement, velocity, acceleration —
//! built from forward differences weighted by sums of powers of intensity change.
//!
//! Two references, reproduced bit for bit on the CPU:
//!
//! * MM-Gesture `dataset/tools/taylor.py` (`video_convert_fast`, run with `--fp32`): float32,
//!   one max over the whole frame and all channels, `x * (1/max * 255)` truncated to uint8.
//!   This is the default: MM-Gesture's Taylor models were trained on it (their run used fp16 on
//!   a GPU, which no CPU implementation reproduces bit for bit).
//! * The official notebook `LeiWangR/video-ar : taylor-video.ipynb` (`videoConvert` with
//!   `preprocess_tensor`): float64, max per channel, `x * 255 / max` truncated.
//!
//! For window start t0, with I_t the grayscale frame in [0, 1], L = K+3:
//!
//! ```text
//! Δ^k I(t0)  forward differences, k = 1 ..= K+2 (computed recursively, as the references do)
//! S_n = Σ_{j<L} (I_{t0+j} − I_{t0})^n / n!                   n = 0 .. K−1
//! R = Σ_n S_n Δ^{n+1} I,  G = Σ_n S_n Δ^{n+2} I,  B = Σ_n S_n Δ^{n+3} I,   each / tprime
//! ```
//!
//! Bit-exactness details that matter: grayscale is OpenCV's `cvtColor(..., RGB2GRAY)` on uint8
//! (fixed point, 15-bit coefficients, OpenCV ≥ 4); `/255` is a float32 division (the notebook
//! widens that float32 to float64); `x**2` and `x**3` are plain products; and the window sum
//! S_n follows torch's CPU `sum` kernel, which adds the rows of a column in order except for the
//! last `H*W mod 32` (float32) / `H*W mod 16` (float64) pixels of a frame, where it uses a
//! four-way interleaved order (`row_sum` in `aten/src/ATen/native/cpu/SumKernel.cpp`).
//! Exact for K ≤ 4; for K ≥ 5 torch's general `pow` (SLEEF) is not reproduced.

use std::ops::{Add, Div, Mul, Sub};

use super::error::{ModalityError, Result};

/// Arithmetic the Taylor maths runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `taylor.py --fp32`.
    F32,
    /// The notebook's float64 difference table.
    F64,
}

/// How float frames become uint8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// MM-Gesture: clamp at 0, one max over the frame's three channels, ×(1/max·255), truncate.
    FrameMax,
    /// Notebook: clamp at 0, max per channel, ×255/max, truncate.
    ChannelMax,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaylorParams {
    /// K, the number of Taylor terms (≥ 1); the window is K+3 frames.
    pub terms: usize,
    /// Divisor; raised to K+3 when smaller (both references do). A larger value also shortens
    /// the output to `N − tprime + 1` frames, as in the references.
    pub tprime: usize,
    pub precision: Precision,
    pub normalization: Normalization,
    /// Worker threads over output frames; 0 = all available cores.
    pub threads: usize,
}

impl TaylorParams {
    /// MM-Gesture `taylor.py` defaults (K = 3), float32.
    pub fn mm_gesture() -> Self {
        Self {
            terms: 3,
            tprime: 0,
            precision: Precision::F32,
            normalization: Normalization::FrameMax,
            threads: 2,
        }
    }

    /// The official notebook (K = 3), float64, per-channel normalisation.
    pub fn notebook() -> Self {
        Self {
            precision: Precision::F64,
            normalization: Normalization::ChannelMax,
            ..Self::mm_gesture()
        }
    }

    /// Window length K+3.
    pub fn window(&self) -> usize {
        self.terms + 3
    }

    /// The divisor actually used: `max(tprime, K+3)`.
    pub fn effective_tprime(&self) -> usize {
        self.tprime.max(self.window())
    }

    /// Output frames for a clip of `n` frames: `n − tprime + 1`, or `ClipTooShort`.
    pub fn output_len(&self, n: usize) -> Result<usize> {
        let needed = self.effective_tprime();
        if n < needed {
            return Err(ModalityError::ClipTooShort { frames: n, needed });
        }
        Ok(n - needed + 1)
    }
}

impl Default for TaylorParams {
    fn default() -> Self {
        Self::mm_gesture()
    }
}

/// uint8 Taylor frames `[frames, height, width, 3]` (R = displacement, G = velocity,
/// B = acceleration).
#[derive(Debug, Clone, PartialEq)]
pub struct TaylorVideo {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

/// The float frames before normalisation (`stack(t1, t2, t3) / tprime`), `[frames, h, w, 3]`,
/// widened to f64 (exact for the float32 path).
#[derive(Debug, Clone, PartialEq)]
pub struct TaylorFloat {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f64>,
}

/// OpenCV's `cvtColor(COLOR_RGB2GRAY)` for uint8 (OpenCV ≥ 4: `(9798 R + 19235 G + 3735 B +
/// 2^14) >> 15`, equal to OpenCV's output on all 2^24 colours). `rgb` is packed RGB24.
pub fn rgb_to_gray(rgb: &[u8], gray: &mut [u8]) {
    for (g, px) in gray.iter_mut().zip(rgb.chunks_exact(3)) {
        let v = 9798 * u32::from(px[0]) + 19235 * u32::from(px[1]) + 3735 * u32::from(px[2]);
        *g = ((v + (1 << 14)) >> 15) as u8;
    }
}

fn check_dims(len: usize, frames: usize, h: usize, w: usize, ch: usize) -> Result<()> {
    let want = frames
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .and_then(|v| v.checked_mul(ch))
        .ok_or_else(|| ModalityError::shape("frames", "dimensions overflow"))?;
    if want != len {
        return Err(ModalityError::shape(
            "frames",
            format!("[{frames}, {h}, {w}, {ch}] needs {want} bytes, got {len}"),
        ));
    }
    if h == 0 || w == 0 {
        return Err(ModalityError::shape(
            "frames",
            format!("empty frame {w}x{h}"),
        ));
    }
    Ok(())
}

fn check_params(p: &TaylorParams) -> Result<()> {
    if p.terms == 0 {
        return Err(ModalityError::param("terms", "0 (need at least 1)"));
    }
    // (K-1)! must stay an exact integer before its one rounding to float, as in the references
    if p.terms > 20 {
        return Err(ModalityError::param(
            "terms",
            format!("{} (at most 20)", p.terms),
        ));
    }
    Ok(())
}

fn to_gray(rgb: &[u8], frames: usize, h: usize, w: usize) -> Result<Vec<u8>> {
    check_dims(rgb.len(), frames, h, w, 3)?;
    let mut gray = vec![0u8; frames * h * w];
    rgb_to_gray(rgb, &mut gray);
    Ok(gray)
}

/// Taylor video of RGB24 frames `[frames, h, w, 3]`.
pub fn taylor_video(
    rgb: &[u8],
    frames: usize,
    h: usize,
    w: usize,
    params: &TaylorParams,
) -> Result<TaylorVideo> {
    check_params(params)?;
    params.output_len(frames)?;
    let gray = to_gray(rgb, frames, h, w)?;
    taylor_video_gray(&gray, frames, h, w, params)
}

/// Taylor video of grayscale frames `[frames, h, w]`.
pub fn taylor_video_gray(
    gray: &[u8],
    frames: usize,
    h: usize,
    w: usize,
    params: &TaylorParams,
) -> Result<TaylorVideo> {
    check_params(params)?;
    check_dims(gray.len(), frames, h, w, 1)?;
    let n = params.output_len(frames)?;
    let mut data = vec![0u8; n * h * w * 3];
    run(gray, h * w, params, n, Some(&mut data), None);
    Ok(TaylorVideo {
        frames: n,
        height: h,
        width: w,
        data,
    })
}

/// The float frames before normalisation, for RGB24 input.
pub fn taylor_video_float(
    rgb: &[u8],
    frames: usize,
    h: usize,
    w: usize,
    params: &TaylorParams,
) -> Result<TaylorFloat> {
    check_params(params)?;
    params.output_len(frames)?;
    let gray = to_gray(rgb, frames, h, w)?;
    let n = params.output_len(frames)?;
    let mut data = vec![0f64; n * h * w * 3];
    run(&gray, h * w, params, n, None, Some(&mut data));
    Ok(TaylorFloat {
        frames: n,
        height: h,
        width: w,
        data,
    })
}

// ---------------------------------------------------------------------------------------------
// Kernel
// ---------------------------------------------------------------------------------------------

trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const HALF: Self;
    /// Pixels per torch vectorised outer-sum step: 4 rows × one 32-byte vector.
    const TORCH_SUM_COLS: usize;
    fn gray(g: u8) -> Self;
    fn from_usize(v: usize) -> Self;
    /// One rounding of an exact integer (how torch/Python turn `math.factorial` into floats).
    fn from_u64(v: u64) -> Self;
    fn to_f64(self) -> f64;
    fn to_u8(self) -> u8;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    const TORCH_SUM_COLS: usize = 32;
    fn gray(g: u8) -> Self {
        f32::from(g) / 255.0
    }
    fn from_usize(v: usize) -> Self {
        v as f32
    }
    fn from_u64(v: u64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    /// Truncation for [0, 256) and NaN → 0 (all callers pass), like the saturating `as u8`, but
    /// via the exponent trick (2^23 + integer keeps the integer in the low mantissa bits) so
    /// that loops over it vectorise; `as` casts to integers do not.
    fn to_u8(self) -> u8 {
        ((self.trunc() + 8_388_608.0).to_bits() & 0xff) as u8
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    const TORCH_SUM_COLS: usize = 16;
    /// `torch.div(uint8, 255.0)` is float32; the notebook stores it in a float64 table.
    fn gray(g: u8) -> Self {
        f64::from(f32::from(g) / 255.0)
    }
    fn from_usize(v: usize) -> Self {
        v as f64
    }
    fn from_u64(v: u64) -> Self {
        v as f64
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn to_u8(self) -> u8 {
        ((self.trunc() + 4_503_599_627_370_496.0).to_bits() & 0xff) as u8
    }
}

/// `x ** n` as torch computes it for n ≤ 3 (fill 1, copy, x·x, x·x·x).
#[inline(always)]
fn tpow<T: Real>(x: T, n: usize) -> T {
    match n {
        0 => T::ONE,
        1 => x,
        2 => x * x,
        3 => x * x * x,
        _ => {
            let mut r = x * x * x;
            for _ in 3..n {
                r = r * x;
            }
            r
        }
    }
}

fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// torch `multi_row_sum` for one column: cascaded accumulators (plain in-order addition for
/// fewer than 16 rows).
fn torch_multi_row_sum<T: Real>(v: impl Fn(usize) -> T, n: usize) -> T {
    let level_power = (ceil_log2(n) / 4).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [T::ZERO; 4];
    let mut i = 0;
    while i + level_step <= n {
        for _ in 0..level_step {
            acc[0] = acc[0] + v(i);
            i += 1;
        }
        for j in 1..4 {
            acc[j] = acc[j] + acc[j - 1];
            acc[j - 1] = T::ZERO;
            if i & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
        }
    }
    while i < n {
        acc[0] = acc[0] + v(i);
        i += 1;
    }
    for j in 1..4 {
        acc[0] = acc[0] + acc[j];
    }
    acc[0]
}

/// torch `row_sum` (the scalar path for the last few pixels of a frame): four interleaved
/// partial sums, the leftover rows into the first, then the partials added in order.
fn torch_row_sum<T: Real>(v: &[T]) -> T {
    let n = v.len();
    let ilp = n / 4;
    let mut part = [T::ZERO; 4];
    for (k, p) in part.iter_mut().enumerate() {
        *p = torch_multi_row_sum(|r| v[4 * r + k], ilp);
    }
    for &x in &v[4 * ilp..] {
        part[0] = part[0] + x;
    }
    part[0] + part[1] + part[2] + part[3]
}

/// Pixels per block of the vectorised kernel.
const B: usize = 64;

struct Scratch<T> {
    /// Forward-difference triangle: `tri[k * l + j]` = Δ^k I at window offset j, for B pixels.
    tri: Vec<[T; B]>,
    s: Vec<[T; B]>,
    /// Running per-lane maxima of the clamped channel values.
    max: [[T; B]; 3],
}

impl<T: Real> Scratch<T> {
    fn new(l: usize, k: usize) -> Self {
        Self {
            tri: vec![[T::ZERO; B]; l * l],
            s: vec![[T::ZERO; B]; k],
            max: [[T::ZERO; B]; 3],
        }
    }
}

struct Geometry {
    hw: usize,
    l: usize,
    k: usize,
    tprime: usize,
}

/// Float frame for window start `t0` into `out` (planar, 3 × hw). `ring` holds the window's
/// frames, frame t at slot `t % l`.
#[inline(always)]
fn compute_frame<T: Real>(
    ring: &[T],
    t0: usize,
    g: &Geometry,
    fact: &[T],
    sc: &mut Scratch<T>,
    out: &mut [T],
) -> [T; 3] {
    let (hw, l, k) = (g.hw, g.l, g.k);
    let tp = T::from_usize(g.tprime);
    sc.max = [[T::ZERO; B]; 3];
    // ring slots are `hw + B` long so a block may read past the frame's end into padding
    let stride = hw + B;
    let slot = |j: usize| &ring[((t0 + j) % l) * stride..((t0 + j) % l + 1) * stride];
    // torch adds the last H*W mod (4 lanes) pixels in another order; they go the scalar way.
    let cut = hw / T::TORCH_SUM_COLS * T::TORCH_SUM_COLS;
    let (out_r, rest) = out.split_at_mut(hw);
    let (out_g, out_b) = rest.split_at_mut(hw);
    let mut start = 0;
    while start < cut {
        let len = B.min(cut - start);
        let win = |j: usize| &slot(j)[start..start + B];
        // forward differences, row by row: Δ^k_j = Δ^{k-1}_{j+1} − Δ^{k-1}_j (row 0 is the
        // window itself, read in place from the ring)
        for j in 0..l - 1 {
            for ((d, &a), &b) in sc.tri[l + j].iter_mut().zip(win(j + 1)).zip(win(j)) {
                *d = a - b;
            }
        }
        for kk in 2..l {
            let (prev, cur) = sc.tri.split_at_mut(kk * l);
            let prev = &prev[(kk - 1) * l..];
            for j in 0..l - kk {
                let (a, b, d) = (&prev[j + 1], &prev[j], &mut cur[j]);
                for p in 0..B {
                    d[p] = a[p] - b[p];
                }
            }
        }
        // S_n, added over the window in order (torch's vectorised columns). S_0 adds L ones,
        // exactly L; the divisions by 1! are identities and by 2! an exact halving, so only
        // n >= 3 divides.
        let w0 = win(0);
        sc.s[0] = [T::from_usize(l); B];
        if k >= 2 {
            let (s1, rest) = sc.s[1..].split_at_mut(1);
            let s1 = &mut s1[0];
            s1.fill(T::ZERO);
            if k >= 3 {
                let s2 = &mut rest[0];
                s2.fill(T::ZERO);
                let half = T::HALF;
                for j in 0..l {
                    let wj = win(j);
                    for p in 0..B {
                        let x = wj[p] - w0[p];
                        s1[p] = s1[p] + x;
                        s2[p] = s2[p] + x * x * half;
                    }
                }
            } else {
                for j in 0..l {
                    let wj = win(j);
                    for p in 0..B {
                        s1[p] = s1[p] + (wj[p] - w0[p]);
                    }
                }
            }
        }
        for (n, (acc, &f)) in sc.s.iter_mut().zip(fact).enumerate().skip(3) {
            acc.fill(T::ZERO);
            for j in 0..l {
                let wj = win(j);
                for p in 0..B {
                    acc[p] = acc[p] + tpow(wj[p] - w0[p], n) / f;
                }
            }
        }
        for (c, dst) in [&mut *out_r, &mut *out_g, &mut *out_b]
            .into_iter()
            .enumerate()
        {
            let mut acc = [T::ZERO; B];
            for n in 0..k {
                let (s, d) = (&sc.s[n], &sc.tri[(c + 1 + n) * l]);
                for p in 0..B {
                    acc[p] = acc[p] + s[p] * d[p];
                }
            }
            let m = &mut sc.max[c];
            for p in 0..B {
                let v = acc[p] / tp;
                acc[p] = v;
                let v = if v < T::ZERO { T::ZERO } else { v };
                m[p] = if v > m[p] && p < len { v } else { m[p] };
            }
            dst[start..start + len].copy_from_slice(&acc[..len]);
        }
        start += len;
    }
    // the torch tail: window sums in row_sum order, term sums in order
    let mut vals = vec![T::ZERO; l];
    let mut d = vec![T::ZERO; l];
    let mut dk = vec![T::ZERO; l];
    let mut s = vec![T::ZERO; k];
    let mut pw = vec![T::ZERO; l];
    for p in cut..hw {
        for (j, v) in vals.iter_mut().enumerate() {
            *v = slot(j)[p];
        }
        d.copy_from_slice(&vals);
        for (kk, dkk) in dk.iter_mut().enumerate().skip(1) {
            for j in 0..l - kk {
                d[j] = d[j + 1] - d[j];
            }
            *dkk = d[0];
        }
        for (n, sn) in s.iter_mut().enumerate() {
            for (x, v) in pw.iter_mut().zip(&vals) {
                *x = tpow(*v - vals[0], n) / fact[n];
            }
            *sn = torch_row_sum(&pw);
        }
        for (c, dst) in [&mut *out_r, &mut *out_g, &mut *out_b]
            .into_iter()
            .enumerate()
        {
            let mut acc = T::ZERO;
            for (n, sn) in s.iter().enumerate() {
                acc = acc + *sn * dk[c + 1 + n];
            }
            dst[p] = acc / tp;
        }
    }
    // max is exact in any order; fold the lanes and the tail pixels
    let mut mx = [T::ZERO; 3];
    for (c, m) in mx.iter_mut().enumerate() {
        let tail = &[&*out_r, &*out_g, &*out_b][c][cut..hw];
        for &v in sc.max[c].iter().chain(tail) {
            let v = if v < T::ZERO { T::ZERO } else { v };
            *m = if v > *m { v } else { *m };
        }
    }
    mx
}

/// Clamp, scale and truncate one planar float frame into interleaved RGB, given the clamped
/// per-channel maxima.
#[inline(always)]
fn quantise<T: Real>(
    planar: &[T],
    hw: usize,
    norm: Normalization,
    max: [T; 3],
    bytes: &mut [u8],
    out: &mut [u8],
) {
    #[inline(always)]
    fn clamp<T: Real>(v: T) -> T {
        if v < T::ZERO {
            T::ZERO
        } else {
            v
        }
    }
    let c255 = T::from_usize(255);
    match norm {
        Normalization::FrameMax => {
            let mx = if max[1] > max[0] { max[1] } else { max[0] };
            let mx = if max[2] > mx { max[2] } else { mx };
            // TorchScript lowers `255.0 / mx` to `reciprocal(mx) * 255`; with max 0 every
            // value is 0 and the plain cast gives 0 too
            let scale = if mx > T::ZERO {
                (T::ONE / mx) * c255
            } else {
                T::ONE
            };
            for (o, &v) in bytes.iter_mut().zip(planar) {
                *o = (clamp(v) * scale).to_u8();
            }
        }
        Normalization::ChannelMax => {
            for (c, &m) in max.iter().enumerate() {
                let src = &planar[c * hw..(c + 1) * hw];
                let dst = &mut bytes[c * hw..(c + 1) * hw];
                if m > T::ZERO {
                    for (o, &v) in dst.iter_mut().zip(src) {
                        *o = (clamp(v) * c255 / m).to_u8();
                    }
                } else {
                    for (o, &v) in dst.iter_mut().zip(src) {
                        *o = clamp(v).to_u8();
                    }
                }
            }
        }
    }
    let (r, rest) = bytes.split_at(hw);
    let (g, b) = rest.split_at(hw);
    for (o, ((&vr, &vg), &vb)) in out.chunks_exact_mut(3).zip(r.iter().zip(g).zip(b)) {
        o[0] = vr;
        o[1] = vg;
        o[2] = vb;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn worker<T: Real>(
    gray: &[u8],
    g: &Geometry,
    norm: Normalization,
    first: usize,
    count: usize,
    mut out_u8: Option<&mut [u8]>,
    mut out_f: Option<&mut [f64]>,
) {
    let hw = g.hw;
    let fact: Vec<T> = {
        let mut f = Vec::with_capacity(g.k);
        let mut acc = 1u64;
        for n in 0..g.k {
            acc *= (n as u64).max(1);
            f.push(T::from_u64(acc));
        }
        f
    };
    let stride = hw + B;
    let mut ring = vec![T::ZERO; g.l * stride];
    let mut loaded_upto = first; // frames [first, loaded_upto) are in the ring
    let mut planar = vec![T::ZERO; 3 * hw];
    let mut bytes = vec![0u8; if out_u8.is_some() { 3 * hw } else { 0 }];
    let mut sc = Scratch::<T>::new(g.l, g.k);
    for i in 0..count {
        let t0 = first + i;
        while loaded_upto < t0 + g.l {
            let t = loaded_upto;
            let dst = &mut ring[(t % g.l) * stride..(t % g.l) * stride + hw];
            for (d, &v) in dst.iter_mut().zip(&gray[t * hw..(t + 1) * hw]) {
                *d = T::gray(v);
            }
            loaded_upto += 1;
        }
        let max = compute_frame(&ring, t0, g, &fact, &mut sc, &mut planar);
        if let Some(o) = out_f.as_deref_mut() {
            let o = &mut o[i * 3 * hw..(i + 1) * 3 * hw];
            for c in 0..3 {
                for (p, &v) in planar[c * hw..(c + 1) * hw].iter().enumerate() {
                    o[3 * p + c] = v.to_f64();
                }
            }
        }
        if let Some(o) = out_u8.as_deref_mut() {
            quantise(
                &planar,
                hw,
                norm,
                max,
                &mut bytes,
                &mut o[i * 3 * hw..(i + 1) * 3 * hw],
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn worker_dispatch(
    gray: &[u8],
    g: &Geometry,
    prec: Precision,
    norm: Normalization,
    first: usize,
    count: usize,
    out_u8: Option<&mut [u8]>,
    out_f: Option<&mut [f64]>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above. Plain IEEE adds, multiplies and
            // divides give the same results at any vector width.
            unsafe { worker_avx2(gray, g, prec, norm, first, count, out_u8, out_f) };
            return;
        }
    }
    worker_any(gray, g, prec, norm, first, count, out_u8, out_f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn worker_avx2(
    gray: &[u8],
    g: &Geometry,
    prec: Precision,
    norm: Normalization,
    first: usize,
    count: usize,
    out_u8: Option<&mut [u8]>,
    out_f: Option<&mut [f64]>,
) {
    worker_any(gray, g, prec, norm, first, count, out_u8, out_f);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn worker_any(
    gray: &[u8],
    g: &Geometry,
    prec: Precision,
    norm: Normalization,
    first: usize,
    count: usize,
    out_u8: Option<&mut [u8]>,
    out_f: Option<&mut [f64]>,
) {
    match prec {
        Precision::F32 => worker::<f32>(gray, g, norm, first, count, out_u8, out_f),
        Precision::F64 => worker::<f64>(gray, g, norm, first, count, out_u8, out_f),
    }
}

fn run(
    gray: &[u8],
    hw: usize,
    p: &TaylorParams,
    n_out: usize,
    out_u8: Option<&mut [u8]>,
    out_f: Option<&mut [f64]>,
) {
    let g = Geometry {
        hw,
        l: p.window(),
        k: p.terms,
        tprime: p.effective_tprime(),
    };
    let threads = if p.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        p.threads
    }
    .clamp(1, n_out.max(1));
    let per = n_out.div_ceil(threads);
    let (prec, norm) = (p.precision, p.normalization);
    if threads == 1 {
        worker_dispatch(gray, &g, prec, norm, 0, n_out, out_u8, out_f);
        return;
    }
    let fsz = 3 * hw;
    let mut u8_chunks = out_u8.map(|o| o.chunks_mut(per * fsz));
    let mut f_chunks = out_f.map(|o| o.chunks_mut(per * fsz));
    std::thread::scope(|s| {
        for i in 0..threads {
            let first = i * per;
            if first >= n_out {
                break;
            }
            let count = per.min(n_out - first);
            let cu = u8_chunks.as_mut().and_then(|c| c.next());
            let cf = f_chunks.as_mut().and_then(|c| c.next());
            let g = &g;
            s.spawn(move || worker_dispatch(gray, g, prec, norm, first, count, cu, cf));
        }
    });
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

    fn input() -> (Vec<u8>, usize, usize, usize) {
        let (shape, rgb) = read_npy_as::<u8>(fixture("taylor_input_rgb")).unwrap();
        (rgb, shape[0], shape[1], shape[2])
    }

    #[test]
    fn grayscale_equals_opencv() {
        let (_, rgb) = read_npy_as::<u8>(fixture("gray_colors_rgb")).unwrap();
        let (_, want) = read_npy_as::<u8>(fixture("gray_colors_gray")).unwrap();
        let mut got = vec![0u8; want.len()];
        rgb_to_gray(&rgb, &mut got);
        assert_eq!(got, want);
        let (rgb, t, h, w) = input();
        let (_, want) = read_npy_as::<u8>(fixture("taylor_gray")).unwrap();
        let mut got = vec![0u8; t * h * w];
        rgb_to_gray(&rgb, &mut got);
        assert_eq!(got, want);
    }

    fn count_diff(a: &[u8], b: &[u8]) -> (usize, u8) {
        let mut n = 0;
        let mut m = 0;
        for (x, y) in a.iter().zip(b) {
            if x != y {
                n += 1;
                m = m.max(x.abs_diff(*y));
            }
        }
        (n, m)
    }

    #[test]
    fn uint8_parity_with_both_references() {
        let (rgb, t, h, w) = input();
        let cases: [(&str, TaylorParams); 6] = [
            (
                "taylor_mm_k2_u8",
                TaylorParams {
                    terms: 2,
                    ..TaylorParams::mm_gesture()
                },
            ),
            ("taylor_mm_k3_u8", TaylorParams::mm_gesture()),
            (
                "taylor_mm_k4_u8",
                TaylorParams {
                    terms: 4,
                    ..TaylorParams::mm_gesture()
                },
            ),
            (
                "taylor_mm_k2_tp7_u8",
                TaylorParams {
                    terms: 2,
                    tprime: 7,
                    ..TaylorParams::mm_gesture()
                },
            ),
            (
                "taylor_nb_k2_u8",
                TaylorParams {
                    terms: 2,
                    ..TaylorParams::notebook()
                },
            ),
            ("taylor_nb_k3_u8", TaylorParams::notebook()),
        ];
        for (name, params) in cases {
            let (shape, want) = read_npy_as::<u8>(fixture(name)).unwrap();
            for threads in [1, 2, 3] {
                let p = TaylorParams {
                    threads,
                    ..params.clone()
                };
                let got = taylor_video(&rgb, t, h, w, &p).unwrap();
                assert_eq!(
                    [got.frames, got.height, got.width, 3],
                    [shape[0], shape[1], shape[2], shape[3]]
                );
                let (n, m) = count_diff(&got.data, &want);
                println!(
                    "{name:22} threads {threads}: {n} of {} bytes differ (max {m})",
                    want.len()
                );
                assert_eq!(n, 0, "{name}");
            }
        }
    }

    #[test]
    fn float_parity_with_both_references() {
        let (rgb, t, h, w) = input();
        let got = taylor_video_float(&rgb, t, h, w, &TaylorParams::mm_gesture()).unwrap();
        let (shape, want) = read_npy_as::<f32>(fixture("taylor_mm_k3_f32")).unwrap();
        let n = want.len();
        assert_eq!(shape[0], 3);
        let bad = got.data[..n]
            .iter()
            .zip(&want)
            .filter(|(a, b)| (**a as f32).to_bits() != b.to_bits() || **a != f64::from(**b))
            .count();
        assert_eq!(bad, 0, "taylor.py float32 values");
        let got = taylor_video_float(&rgb, t, h, w, &TaylorParams::notebook()).unwrap();
        let (_, want) = read_npy_as::<f64>(fixture("taylor_nb_k3_f64")).unwrap();
        let bad = got.data[..want.len()]
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(bad, 0, "notebook float64 values");
    }

    #[test]
    fn short_clip_is_an_error_not_a_skip() {
        let (rgb, _, h, w) = input();
        let five = &rgb[..5 * h * w * 3];
        let e = taylor_video(five, 5, h, w, &TaylorParams::mm_gesture()).unwrap_err();
        assert!(
            matches!(
                e,
                ModalityError::ClipTooShort {
                    frames: 5,
                    needed: 6
                }
            ),
            "{e}"
        );
        let p = TaylorParams {
            terms: 2,
            ..TaylorParams::mm_gesture()
        };
        assert_eq!(taylor_video(five, 5, h, w, &p).unwrap().frames, 1);
        let p = TaylorParams {
            terms: 2,
            tprime: 9,
            ..TaylorParams::mm_gesture()
        };
        assert!(matches!(
            taylor_video(five, 5, h, w, &p),
            Err(ModalityError::ClipTooShort {
                frames: 5,
                needed: 9
            })
        ));
        assert!(taylor_video(&rgb[..10], 5, h, w, &TaylorParams::default()).is_err());
        let p = TaylorParams {
            terms: 0,
            ..TaylorParams::mm_gesture()
        };
        assert!(taylor_video(five, 5, h, w, &p).is_err());
    }

    #[test]
    fn static_video_is_black_and_torch_sum_orders() {
        let gray = vec![77u8; 8 * 5 * 7];
        let v = taylor_video_gray(&gray, 8, 5, 7, &TaylorParams::notebook()).unwrap();
        assert_eq!(v.frames, 3);
        assert!(v.data.iter().all(|&x| x == 0));
        // row_sum: ((((x0 + x4) + x5) + x1) + x2) + x3 for six rows
        let x = [1e8f32, 1.0, -1e8, 3.0, 0.5, 0.25];
        let want = ((((0.0 + x[0] + x[4]) + x[5]) + x[1]) + x[2]) + x[3];
        assert_eq!(torch_row_sum(&x).to_bits(), want.to_bits());
        let seq: f32 = x.iter().fold(0.0, |a, &b| a + b);
        assert_eq!(torch_multi_row_sum(|i| x[i], 6).to_bits(), seq.to_bits());
        // 16+ rows go through the cascade levels
        let v: Vec<f64> = (0..40).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let c = torch_multi_row_sum(|i| v[i], 40);
        let first16: f64 = v[..16].iter().fold(0.0, |a, &b| a + b);
        let second16: f64 = v[16..32].iter().fold(0.0, |a, &b| a + b);
        let rest: f64 = v[32..].iter().fold(0.0, |a, &b| a + b);
        assert_eq!(
            c.to_bits(),
            ((rest + (first16 + second16)) + 0.0 + 0.0).to_bits()
        );
    }
}
