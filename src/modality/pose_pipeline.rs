//! The skeleton pipeline steps the iMiGUE PoseC3D / RGBPoseConv3D configs run around
//! `GeneratePoseTarget`: `UniformSampleFrames`, `PoseDecode`, `PoseCompact`, `Resize`,
//! `RandomResizedCrop`, `CenterCrop` and `Flip`, acting on keypoints only (mmaction2 1.x
//! `mmaction/datasets/transforms/pose_transforms.py` and `processing.py`; pyskl
//! `pyskl/datasets/pipelines/sampling.py`, `pose_related.py`, `augmentations.py` do the same).
//!
//! Numeric fidelity: keypoints are float32 from the annotation file, but a crop subtracts an
//! int64 box and NumPy promotes them to float64 from then on. [`PoseSample`] stores values in
//! f64 together with the NumPy dtype they currently have, and every step rounds as NumPy would.
//!
//! Test-time sampling reseeds NumPy's legacy global RNG with 255 on every call; this module
//! carries a bit-exact MT19937 and the legacy `RandomState` integer algorithms
//! ([`NumpyRandomState`]), so test indices equal mmaction2's.

use super::error::{ModalityError, Result};
use super::heatmap::NumpyPromotion;

// ---------------------------------------------------------------------------------------------
// NumPy's legacy RandomState
// ---------------------------------------------------------------------------------------------

const MT_N: usize = 624;
const MT_M: usize = 397;

/// MT19937 as NumPy seeds and steps it (`numpy/random/src/mt19937/mt19937.c`).
#[derive(Clone)]
pub struct Mt19937 {
    key: [u32; MT_N],
    pos: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937").field("pos", &self.pos).finish()
    }
}

impl Mt19937 {
    /// `mt19937_seed`: what `np.random.seed(int)` does for 0 ≤ seed < 2^32.
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; MT_N];
        let mut s = seed;
        for (pos, k) in key.iter_mut().enumerate() {
            *k = s;
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(pos as u32 + 1);
        }
        Self { key, pos: MT_N }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % MT_N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.key[i] = self.key[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= MT_N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// High word first, as NumPy's `mt19937_next64`.
    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        (hi << 32) | u64::from(self.next_u32())
    }
}

/// `np.random.RandomState` (the legacy generator behind `np.random.seed`/`randint`/`rand`).
#[derive(Debug, Clone)]
pub struct NumpyRandomState {
    mt: Mt19937,
}

/// Smallest all-ones mask covering `max` (`gen_mask`).
fn gen_mask(max: u64) -> u64 {
    let mut m = max;
    m |= m >> 1;
    m |= m >> 2;
    m |= m >> 4;
    m |= m >> 8;
    m |= m >> 16;
    m |= m >> 32;
    m
}

impl NumpyRandomState {
    pub fn new(seed: u32) -> Self {
        Self {
            mt: Mt19937::new(seed),
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// `rand()` / `random_sample()`: 53 random bits from two draws.
    pub fn random_sample(&mut self) -> f64 {
        let a = f64::from(self.mt.next_u32() >> 5);
        let b = f64::from(self.mt.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// Uniform on `0..=rng` by masked rejection (`random_bounded_uint64` with `use_masked`,
    /// what every legacy `randint` uses).
    fn bounded_masked(&mut self, rng: u64) -> u64 {
        if rng == 0 {
            return 0;
        }
        let mask = gen_mask(rng);
        if rng <= 0xffff_ffff {
            if rng == 0xffff_ffff {
                return u64::from(self.mt.next_u32());
            }
            loop {
                let v = u64::from(self.mt.next_u32()) & mask;
                if v <= rng {
                    return v;
                }
            }
        }
        if rng == u64::MAX {
            return self.mt.next_u64();
        }
        loop {
            let v = self.mt.next_u64() & mask;
            if v <= rng {
                return v;
            }
        }
    }

    /// `randint(low, high)`: one integer in `[low, high)`.
    pub fn randint(&mut self, low: i64, high: i64) -> Result<i64> {
        if high <= low {
            return Err(ModalityError::param(
                "randint",
                format!("low >= high ({low} >= {high})"),
            ));
        }
        let rng = (high as i128 - low as i128 - 1) as u64;
        Ok((low as i128 + self.bounded_masked(rng) as i128) as i64)
    }

    /// `randint(highs)` with an array: one integer in `[0, h)` per element, in order.
    pub fn randint_each(&mut self, highs: &[i64]) -> Result<Vec<i64>> {
        highs.iter().map(|&h| self.randint(0, h)).collect()
    }

    /// `random_interval`: uniform on `0..=max` by masked rejection (used by `shuffle`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = gen_mask(max);
        if max <= 0xffff_ffff {
            loop {
                let v = u64::from(self.mt.next_u32()) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = self.mt.next_u64() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `shuffle` of a 1-d array: Fisher-Yates from the end.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.interval(i as u64) as usize;
            v.swap(i, j);
        }
    }

    /// `permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n as i64).collect();
        self.shuffle(&mut v);
        v
    }

    /// `choice(pop, size, replace=False)` = `permutation(pop)[:size]`.
    pub fn choice_without_replacement(&mut self, pop: usize, size: usize) -> Result<Vec<i64>> {
        if size > pop {
            return Err(ModalityError::param(
                "choice",
                format!("cannot take a larger sample ({size}) than population ({pop})"),
            ));
        }
        let mut p = self.permutation(pop);
        p.truncate(size);
        Ok(p)
    }
}

/// The random draws the training-time steps need. Implemented for every `rand::Rng` and for
/// [`NumpyRandomState`] (which then reproduces mmaction2's `np.random` draws exactly, except
/// `RandomResizedCrop`'s offsets, which mmaction2 takes from Python's `random` module).
pub trait SamplingRng {
    /// Uniform integer in `[low, high)`; `high > low`.
    fn randint(&mut self, low: i64, high: i64) -> i64;
    /// Uniform in `[0, 1)`.
    fn uniform01(&mut self) -> f64;
    /// `size` distinct values of `0..pop`, in draw order.
    fn choice_without_replacement(&mut self, pop: usize, size: usize) -> Vec<usize>;
}

impl<R: rand::Rng + ?Sized> SamplingRng for R {
    fn randint(&mut self, low: i64, high: i64) -> i64 {
        self.random_range(low..high)
    }

    fn uniform01(&mut self) -> f64 {
        self.random::<f64>()
    }

    fn choice_without_replacement(&mut self, pop: usize, size: usize) -> Vec<usize> {
        rand::seq::index::sample(self, pop, size).into_vec()
    }
}

impl SamplingRng for NumpyRandomState {
    fn randint(&mut self, low: i64, high: i64) -> i64 {
        // callers guarantee high > low; the Err arm cannot happen
        NumpyRandomState::randint(self, low, high).unwrap_or(low)
    }

    fn uniform01(&mut self) -> f64 {
        self.random_sample()
    }

    fn choice_without_replacement(&mut self, pop: usize, size: usize) -> Vec<usize> {
        NumpyRandomState::choice_without_replacement(self, pop, size.min(pop))
            .unwrap_or_default()
            .into_iter()
            .map(|v| v as usize)
            .collect()
    }
}

/// mmaction2 `RandomResizedCrop.get_crop_bbox` (`mmaction/datasets/transforms/processing.py`):
/// ten (log-uniform aspect, uniform area) draws, all made before any is tried; the first that
/// fits places a box at a uniform offset, else the centred square. `[left, top, right,
/// bottom)` of an `h × w` image. Shared by the pose and the video pipelines.
pub fn random_resized_crop_box<R: SamplingRng + ?Sized>(
    h: i64,
    w: i64,
    area_range: (f64, f64),
    aspect_ratio_range: (f64, f64),
    rng: &mut R,
) -> Result<[i64; 4]> {
    let (a0, a1) = area_range;
    let (r0, r1) = aspect_ratio_range;
    if !(0.0 < a0 && a0 <= a1 && a1 <= 1.0) {
        return Err(ModalityError::param("area_range", format!("({a0}, {a1})")));
    }
    if !(0.0 < r0 && r0 <= r1) {
        return Err(ModalityError::param(
            "aspect_ratio_range",
            format!("({r0}, {r1})"),
        ));
    }
    const ATTEMPTS: usize = 10;
    let area = (h * w) as f64;
    let (l0, l1) = (r0.ln(), r1.ln());
    let ratios: Vec<f64> = (0..ATTEMPTS)
        .map(|_| (l0 + (l1 - l0) * rng.uniform01()).exp())
        .collect();
    let areas: Vec<f64> = (0..ATTEMPTS)
        .map(|_| (a0 + (a1 - a0) * rng.uniform01()) * area)
        .collect();
    for (ar, ta) in ratios.iter().zip(&areas) {
        let cw = (ta * ar).sqrt().round_ties_even() as i64;
        let ch = (ta / ar).sqrt().round_ties_even() as i64;
        if ch <= h && cw <= w {
            let x = rng.randint(0, w - cw + 1);
            let y = rng.randint(0, h - ch + 1);
            return Ok([x, y, x + cw, y + ch]);
        }
    }
    let s = h.min(w);
    let (x, y) = ((w - s).div_euclid(2), (h - s).div_euclid(2));
    Ok([x, y, x + s, y + s])
}

// ---------------------------------------------------------------------------------------------
// UniformSampleFrames
// ---------------------------------------------------------------------------------------------

/// `UniformSampleFrames(clip_len, num_clips, test_mode, seed=255)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniformSampleFrames {
    pub clip_len: usize,
    pub num_clips: usize,
    pub seed: u32,
}

impl UniformSampleFrames {
    pub fn new(clip_len: usize, num_clips: usize) -> Self {
        Self {
            clip_len,
            num_clips,
            seed: 255,
        }
    }

    fn check(&self, total_frames: usize) -> Result<()> {
        if self.clip_len == 0 || self.num_clips == 0 {
            return Err(ModalityError::param(
                "UniformSampleFrames",
                format!("clip_len {} / num_clips {}", self.clip_len, self.num_clips),
            ));
        }
        if total_frames == 0 {
            return Err(ModalityError::param(
                "total_frames",
                "0 (nothing to sample from)",
            ));
        }
        Ok(())
    }

    /// Test mode: deterministic, NumPy reseeded with `seed` at every call, exactly as mmaction2.
    /// Returns `num_clips * clip_len` frame indices (`frame_inds`), already `mod total_frames`
    /// and offset by `start_index`.
    pub fn test_indices(&self, total_frames: usize, start_index: i64) -> Result<Vec<i64>> {
        self.check(total_frames)?;
        let (n, l) = (total_frames as i64, self.clip_len as i64);
        let mut rs = NumpyRandomState::new(self.seed);
        let mut all = Vec::with_capacity(self.num_clips * self.clip_len);
        for i in 0..self.num_clips as i64 {
            if n < l {
                let start = if n < self.num_clips as i64 {
                    i
                } else {
                    i * n / self.num_clips as i64
                };
                all.extend(start..start + l);
            } else if n < 2 * l {
                let picks = rs.choice_without_replacement((l + 1) as usize, (n - l) as usize)?;
                all.extend(spread(l as usize, picks.iter().map(|&p| p as usize)));
            } else {
                let (bst, bsize) = bins(n, l);
                let off = rs.randint_each(&bsize)?;
                all.extend(bst.iter().zip(off).map(|(s, o)| s + o));
            }
        }
        Ok(finish(all, n, start_index))
    }

    /// Train mode with the caller's RNG (mmaction2 draws from NumPy's global state).
    pub fn train_indices<R: SamplingRng + ?Sized>(
        &self,
        total_frames: usize,
        start_index: i64,
        rng: &mut R,
    ) -> Result<Vec<i64>> {
        self.check(total_frames)?;
        let (n, l) = (total_frames as i64, self.clip_len as i64);
        let mut all = Vec::with_capacity(self.num_clips * self.clip_len);
        for _ in 0..self.num_clips {
            if n < l {
                let start = rng.randint(0, n);
                all.extend(start..start + l);
            } else if n < 2 * l {
                let picks = rng.choice_without_replacement((l + 1) as usize, (n - l) as usize);
                all.extend(spread(l as usize, picks.into_iter()));
            } else {
                let (bst, bsize) = bins(n, l);
                all.extend(bst.iter().zip(&bsize).map(|(s, &b)| s + rng.randint(0, b)));
            }
        }
        Ok(finish(all, n, start_index))
    }
}

/// `arange(L) + cumsum(offset)[:-1]` where `offset[picks] = 1` over `L + 1` slots.
fn spread(l: usize, picks: impl Iterator<Item = usize>) -> Vec<i64> {
    let mut offset = vec![0i64; l + 1];
    for p in picks {
        offset[p] = 1;
    }
    let mut acc = 0;
    (0..l)
        .map(|i| {
            acc += offset[i];
            i as i64 + acc
        })
        .collect()
}

/// Bin starts `i*N//L` and sizes for the N ≥ 2L regime.
fn bins(n: i64, l: i64) -> (Vec<i64>, Vec<i64>) {
    let bids: Vec<i64> = (0..=l).map(|i| i * n / l).collect();
    let bsize = bids.windows(2).map(|w| w[1] - w[0]).collect();
    (bids[..l as usize].to_vec(), bsize)
}

fn finish(mut inds: Vec<i64>, n: i64, start_index: i64) -> Vec<i64> {
    for v in &mut inds {
        *v = v.rem_euclid(n) + start_index;
    }
    inds
}

// ---------------------------------------------------------------------------------------------
// The sample and its geometric steps
// ---------------------------------------------------------------------------------------------

/// NumPy dtype the keypoint array currently has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KpDtype {
    F32,
    F64,
}

/// The parts of mmaction2's `results` dict these steps read and write.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseSample {
    /// `[M, T, V, 2]`, every value representable in `dtype`.
    pub keypoints: Vec<f64>,
    pub dtype: KpDtype,
    /// `[M, T, V]`.
    pub scores: Option<Vec<f32>>,
    pub num_persons: usize,
    pub num_frames: usize,
    pub num_keypoints: usize,
    /// `(h, w)`.
    pub img_shape: (usize, usize),
}

impl PoseSample {
    /// A clip as stored in the annotation pickle: float32 keypoints `[M, T, V, 2]`.
    pub fn new(
        keypoints: &[f32],
        scores: Option<&[f32]>,
        dims: [usize; 3],
        img_shape: (usize, usize),
    ) -> Result<Self> {
        let [m, t, v] = dims;
        if keypoints.len() != m * t * v * 2 {
            return Err(ModalityError::shape(
                "keypoints",
                format!(
                    "[{m}, {t}, {v}, 2] needs {} values, got {}",
                    m * t * v * 2,
                    keypoints.len()
                ),
            ));
        }
        if let Some(s) = scores {
            if s.len() != m * t * v {
                return Err(ModalityError::shape(
                    "scores",
                    format!(
                        "[{m}, {t}, {v}] needs {} values, got {}",
                        m * t * v,
                        s.len()
                    ),
                ));
            }
        }
        Ok(Self {
            keypoints: keypoints.iter().map(|&x| f64::from(x)).collect(),
            dtype: KpDtype::F32,
            scores: scores.map(<[f32]>::to_vec),
            num_persons: m,
            num_frames: t,
            num_keypoints: v,
            img_shape,
        })
    }

    /// `keypoint.astype(np.float32)`, what `GeneratePoseTarget` starts from.
    pub fn keypoints_f32(&self) -> Vec<f32> {
        self.keypoints.iter().map(|&x| x as f32).collect()
    }

    /// Rounds a result to the current dtype (float32 arithmetic = exact f64 op, then round).
    #[inline]
    fn r(&self, x: f64) -> f64 {
        match self.dtype {
            KpDtype::F32 => f64::from(x as f32),
            KpDtype::F64 => x,
        }
    }

    /// `PoseDecode`: keep frames `frame_inds` (in that order); the result is float32.
    pub fn decode(&self, frame_inds: &[i64]) -> Result<PoseSample> {
        let (m, t, v) = (self.num_persons, self.num_frames, self.num_keypoints);
        let mut kp = Vec::with_capacity(m * frame_inds.len() * v * 2);
        let mut sc = self
            .scores
            .as_ref()
            .map(|_| Vec::with_capacity(m * frame_inds.len() * v));
        for p in 0..m {
            for &f in frame_inds {
                let f = usize::try_from(f).ok().filter(|&f| f < t).ok_or_else(|| {
                    ModalityError::param("frame_inds", format!("index {f} outside 0..{t}"))
                })?;
                let base = (p * t + f) * v;
                kp.extend(
                    self.keypoints[2 * base..2 * (base + v)]
                        .iter()
                        .map(|&x| f64::from(x as f32)),
                );
                if let (Some(out), Some(src)) = (sc.as_mut(), self.scores.as_ref()) {
                    out.extend_from_slice(&src[base..base + v]);
                }
            }
        }
        Ok(PoseSample {
            keypoints: kp,
            dtype: KpDtype::F32,
            scores: sc,
            num_persons: m,
            num_frames: frame_inds.len(),
            num_keypoints: v,
            img_shape: self.img_shape,
        })
    }

    /// `PoseCompact`: one box over all persons and frames (coordinates equal to 0 are missing),
    /// grown by `padding`, optionally pushed to an aspect-ratio range, truncated to ints; shifts
    /// the present keypoints into it and makes it the new image. Below `threshold` on either
    /// side nothing changes. Returns the box `[x0, y0, x1, y1)` in the old image (it may
    /// reach outside it with `allow_imgpad`), or `None` when nothing changed, so that
    /// `MMCompact` can cut the images to the same box.
    pub fn pose_compact(&mut self, cfg: &PoseCompact) -> Result<Option<[i64; 4]>> {
        if cfg.padding < 0.0 {
            return Err(ModalityError::param(
                "padding",
                format!("{} < 0", cfg.padding),
            ));
        }
        for x in &mut self.keypoints {
            if x.is_nan() {
                *x = 0.0;
            }
        }
        let (h, w) = self.img_shape;
        let mut ext = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for xy in self.keypoints.chunks_exact(2) {
            for a in 0..2 {
                if xy[a] != 0.0 {
                    ext[a] = ext[a].min(xy[a]);
                    ext[a + 2] = ext[a + 2].max(xy[a]);
                }
            }
        }
        let [min_x, min_y, max_x, max_y] = ext;
        // `max - min` of two dtype scalars stays in that dtype under both NumPy versions
        let (span_x, span_y) = (self.r(max_x - min_x), self.r(max_y - min_y));
        let thr = cfg.threshold as f64;
        if span_x < thr || span_y < thr || span_x.is_nan() || span_y.is_nan() {
            return Ok(None);
        }
        // NumPy 2 keeps float32 scalars float32 (Python floats are weak); NumPy 1 promoted
        // `np.float32 / 2` and friends to float64.
        let s = |x: f64| -> f64 {
            match (cfg.promotion, self.dtype) {
                (NumpyPromotion::Numpy2, KpDtype::F32) => f64::from(x as f32),
                _ => x,
            }
        };
        let cx = s(self.r(max_x + min_x) / 2.0);
        let cy = s(self.r(max_y + min_y) / 2.0);
        let grow = s(1.0 + cfg.padding);
        let mut hw = s(s(span_x / 2.0) * grow);
        let mut hh = s(s(span_y / 2.0) * grow);
        if let Some((r0, r1)) = cfg.hw_ratio {
            let a = s(s(r0) * hw);
            if a > hh {
                hh = a;
            }
            let b = s(s(1.0 / r1) * hh);
            if b > hw {
                hw = b;
            }
        }
        let (bx0, bx1, by0, by1) = (s(cx - hw), s(cx + hw), s(cy - hh), s(cy + hh));
        let trunc = |v: f64| v as i64;
        let (x0, y0, x1, y1) = if cfg.allow_imgpad {
            (trunc(bx0), trunc(by0), trunc(bx1), trunc(by1))
        } else {
            // Python's max(0, v) / min(w, v): the int unless v is strictly beyond it
            let lo = |v: f64| if v > 0.0 { trunc(v) } else { 0 };
            let hi = |v: f64, n: usize| if v < n as f64 { trunc(v) } else { n as i64 };
            (lo(bx0), lo(by0), hi(bx1, w), hi(by1, h))
        };
        let (nh, nw) = (y1 - y0, x1 - x0);
        if nh <= 0 || nw <= 0 {
            return Err(ModalityError::param(
                "PoseCompact",
                format!("box ({x0}, {y0})-({x1}, {y1}) lies outside the {w}x{h} image"),
            ));
        }
        let (ox, oy) = (x0 as f64, y0 as f64);
        let dtype = self.dtype;
        for xy in self.keypoints.chunks_exact_mut(2) {
            if xy[0] != 0.0 {
                xy[0] = round_to(dtype, xy[0] - round_to(dtype, ox));
            }
            if xy[1] != 0.0 {
                xy[1] = round_to(dtype, xy[1] - round_to(dtype, oy));
            }
        }
        self.img_shape = (nh as usize, nw as usize);
        Ok(Some([x0, y0, x1, y1]))
    }

    /// `Resize`: new size from mmcv's `rescale_size` (or the exact size), keypoints times
    /// the float32 scale factors `new / old` per axis.
    pub fn resize(&mut self, resize: &Resize) -> Result<()> {
        let (h, w) = self.img_shape;
        let (nw, nh) = resize.new_size(w, h)?;
        let fx = (nw as f64 / w as f64) as f32;
        let fy = (nh as f64 / h as f64) as f32;
        let dtype = self.dtype;
        for xy in self.keypoints.chunks_exact_mut(2) {
            xy[0] = round_to(dtype, xy[0] * f64::from(fx));
            xy[1] = round_to(dtype, xy[1] * f64::from(fy));
        }
        self.img_shape = (nh, nw);
        Ok(())
    }

    /// Crop to `[left, top, right, bottom)`: `keypoint - crop_bbox[:2]`. Every keypoint moves,
    /// missing (0, 0) ones too, and the int64 box promotes the keypoints to float64.
    pub fn crop(&mut self, left: i64, top: i64, right: i64, bottom: i64) -> Result<()> {
        if right <= left || bottom <= top {
            return Err(ModalityError::param(
                "crop",
                format!("empty box ({left}, {top})-({right}, {bottom})"),
            ));
        }
        for xy in self.keypoints.chunks_exact_mut(2) {
            xy[0] -= left as f64;
            xy[1] -= top as f64;
        }
        self.dtype = KpDtype::F64;
        self.img_shape = ((bottom - top) as usize, (right - left) as usize);
        Ok(())
    }

    /// `CenterCrop(crop_size=(w, h))`.
    pub fn center_crop(&mut self, crop_w: usize, crop_h: usize) -> Result<()> {
        let (h, w) = self.img_shape;
        let left = (w as i64 - crop_w as i64).div_euclid(2);
        let top = (h as i64 - crop_h as i64).div_euclid(2);
        self.crop(left, top, left + crop_w as i64, top + crop_h as i64)
    }

    /// `RandomResizedCrop(area_range, aspect_ratio_range)` with the caller's RNG: ten candidate
    /// boxes (log-uniform aspect, uniform area, `np.round`), the first that fits, at a uniform
    /// offset; the centred square if none fits. Returns the box.
    pub fn random_resized_crop<R: SamplingRng + ?Sized>(
        &mut self,
        area_range: (f64, f64),
        aspect_ratio_range: (f64, f64),
        rng: &mut R,
    ) -> Result<[i64; 4]> {
        let (h, w) = (self.img_shape.0 as i64, self.img_shape.1 as i64);
        let [l, t, r, b] = random_resized_crop_box(h, w, area_range, aspect_ratio_range, rng)?;
        self.crop(l, t, r, b)?;
        Ok([l, t, r, b])
    }

    /// `Flip` (horizontal) applied: `x' = img_w - x` for x ≠ 0, then left/right keypoints
    /// (and their scores) swap places.
    pub fn flip(&mut self, left_kp: &[usize], right_kp: &[usize]) -> Result<()> {
        let v = self.num_keypoints;
        if left_kp.len() != right_kp.len() {
            return Err(ModalityError::param(
                "flip pairs",
                format!("{} left vs {} right", left_kp.len(), right_kp.len()),
            ));
        }
        let mut order: Vec<usize> = (0..v).collect();
        for (&l, &r) in left_kp.iter().zip(right_kp) {
            if l >= v || r >= v {
                return Err(ModalityError::param(
                    "flip pairs",
                    format!("pair ({l}, {r}) outside {v} keypoints"),
                ));
            }
            order[l] = r;
            order[r] = l;
        }
        let w = self.img_shape.1 as f64;
        let dtype = self.dtype;
        for xy in self.keypoints.chunks_exact_mut(2) {
            if xy[0] != 0.0 {
                xy[0] = round_to(dtype, round_to(dtype, w) - xy[0]);
            }
        }
        let src = self.keypoints.clone();
        for (dst, s) in self
            .keypoints
            .chunks_exact_mut(2 * v)
            .zip(src.chunks_exact(2 * v))
        {
            for (k, &o) in order.iter().enumerate() {
                dst[2 * k] = s[2 * o];
                dst[2 * k + 1] = s[2 * o + 1];
            }
        }
        if let Some(scores) = self.scores.as_mut() {
            let src = scores.clone();
            for (dst, s) in scores.chunks_exact_mut(v).zip(src.chunks_exact(v)) {
                for (k, &o) in order.iter().enumerate() {
                    dst[k] = s[o];
                }
            }
        }
        Ok(())
    }

    /// `GeneratePoseTarget` on this sample's keypoints, scores and image shape:
    /// `[T, C, H, W]` heatmaps.
    pub fn heatmaps(
        &self,
        skeleton: &super::heatmap::Skeleton,
        params: &super::heatmap::HeatmapParams,
    ) -> Result<super::heatmap::Heatmaps> {
        self.frames_heatmaps(0, self.num_frames, skeleton, params)
    }

    /// `GeneratePoseTarget` on frames `start..start + len` of every person (one test clip of
    /// a sample whose clips were sampled back to back).
    pub fn frames_heatmaps(
        &self,
        start: usize,
        len: usize,
        skeleton: &super::heatmap::Skeleton,
        params: &super::heatmap::HeatmapParams,
    ) -> Result<super::heatmap::Heatmaps> {
        let (m, t, v) = (self.num_persons, self.num_frames, self.num_keypoints);
        if start + len > t {
            return Err(ModalityError::shape(
                "frames",
                format!("frames {start}..{} of a {t}-frame sample", start + len),
            ));
        }
        let mut keypoints = Vec::with_capacity(m * len * v * 2);
        let mut scores = Vec::with_capacity(if self.scores.is_some() {
            m * len * v
        } else {
            0
        });
        for p in 0..m {
            let base = (p * t + start) * v;
            let xy = &self.keypoints[2 * base..2 * (base + len * v)];
            keypoints.extend(xy.iter().map(|&x| x as f32));
            if let Some(sc) = &self.scores {
                scores.extend_from_slice(&sc[base..base + len * v]);
            }
        }
        let arrays = super::heatmap::PoseArrays {
            keypoints: &keypoints,
            scores: self.scores.as_ref().map(|_| scores.as_slice()),
            num_persons: m,
            num_frames: len,
            num_keypoints: v,
        };
        let (h, w) = self.img_shape;
        super::heatmap::generate_pose_target(arrays, h, w, skeleton, params)
    }

    /// `Flip(flip_ratio, left_kp, right_kp)`: flips when `rand() < flip_ratio`; returns whether.
    pub fn random_flip<R: SamplingRng + ?Sized>(
        &mut self,
        flip_ratio: f64,
        left_kp: &[usize],
        right_kp: &[usize],
        rng: &mut R,
    ) -> Result<bool> {
        let flip = rng.uniform01() < flip_ratio;
        if flip {
            self.flip(left_kp, right_kp)?;
        }
        Ok(flip)
    }
}

fn round_to(dtype: KpDtype, x: f64) -> f64 {
    match dtype {
        KpDtype::F32 => f64::from(x as f32),
        KpDtype::F64 => x,
    }
}

/// `PoseCompact(padding, threshold, hw_ratio, allow_imgpad)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseCompact {
    pub padding: f64,
    pub threshold: i64,
    /// `(lo, hi)` of the box's h/w ratio; `_pair(1.)` = `(1, 1)` forces a square.
    pub hw_ratio: Option<(f64, f64)>,
    pub allow_imgpad: bool,
    /// Which NumPy's scalar arithmetic to reproduce for the box (float32 keypoints only).
    pub promotion: NumpyPromotion,
}

impl Default for PoseCompact {
    /// The iMiGUE configs: `PoseCompact(hw_ratio=1., allow_imgpad=True)`.
    fn default() -> Self {
        Self {
            padding: 0.25,
            threshold: 10,
            hw_ratio: Some((1.0, 1.0)),
            allow_imgpad: true,
            promotion: NumpyPromotion::Numpy2,
        }
    }
}

/// The `scale` argument of `Resize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeScale {
    /// A float: multiply both sides (`keep_ratio` must be true).
    Factor(f64),
    /// A tuple of ints: with `keep_ratio` the largest size within (long, short) edges, where
    /// -1 means unbounded (`(-1, 64)` = short side 64); without it the exact `(w, h)`.
    Tuple(i64, i64),
}

/// `Resize(scale, keep_ratio=True)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resize {
    pub scale: ResizeScale,
    pub keep_ratio: bool,
}

impl Resize {
    /// `Resize(scale=(-1, short))`: short side to `short`, aspect kept.
    pub fn short_side(short: i64) -> Self {
        Self {
            scale: ResizeScale::Tuple(-1, short),
            keep_ratio: true,
        }
    }

    /// `Resize(scale=(w, h), keep_ratio=False)`.
    pub fn exact(w: usize, h: usize) -> Self {
        Self {
            scale: ResizeScale::Tuple(w as i64, h as i64),
            keep_ratio: false,
        }
    }

    /// `(new_w, new_h)` as mmaction2 computes it (mmcv `rescale_size` / `_scale_size`).
    pub fn new_size(&self, w: usize, h: usize) -> Result<(usize, usize)> {
        let bad = |d: String| Err(ModalityError::param("Resize scale", d));
        if w == 0 || h == 0 {
            return bad(format!("image {w}x{h} is empty"));
        }
        let factor = match (self.scale, self.keep_ratio) {
            (ResizeScale::Factor(f), true) => {
                if !(f.is_finite() && f > 0.0) {
                    return bad(format!("{f} (must be positive)"));
                }
                f
            }
            (ResizeScale::Factor(f), false) => {
                return bad(format!("{f}: a float scale needs keep_ratio"));
            }
            (ResizeScale::Tuple(a, b), true) => {
                let (long, short) = if a.min(b) == -1 {
                    (f64::INFINITY, a.max(b) as f64)
                } else {
                    (a.max(b) as f64, a.min(b) as f64)
                };
                if short <= 0.0 {
                    return bad(format!("({a}, {b})"));
                }
                let (hf, wf) = (h as f64, w as f64);
                (long / hf.max(wf)).min(short / hf.min(wf))
            }
            (ResizeScale::Tuple(a, b), false) => {
                if a <= 0 || b <= 0 {
                    return bad(format!("({a}, {b})"));
                }
                return Ok((a as usize, b as usize));
            }
        };
        let nw = (w as f64 * factor + 0.5) as usize;
        let nh = (h as f64 * factor + 0.5) as usize;
        if nw == 0 || nh == 0 {
            return bad(format!("factor {factor} shrinks {w}x{h} to nothing"));
        }
        Ok((nw, nh))
    }
}

#[cfg(test)]
mod tests {
    use super::super::heatmap::{coco17, imigue36, HeatmapParams};
    use super::super::npy::read_npy_as;
    use super::*;
    use rand::SeedableRng;

    fn fixture(name: &str) -> String {
        format!(
            "{}/{name}.npy",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/modality")
        )
    }

    fn i64s(name: &str) -> Vec<i64> {
        read_npy_as::<i64>(fixture(name)).unwrap().1
    }

    #[test]
    fn mt19937_and_legacy_randomstate_match_numpy() {
        let mut rs = NumpyRandomState::new(255);
        let want = i64s("mt_seed255_u32");
        let got: Vec<i64> = (0..want.len()).map(|_| i64::from(rs.next_u32())).collect();
        assert_eq!(got, want);

        let mut rs = NumpyRandomState::new(0);
        let (_, want) = read_npy_as::<f64>(fixture("mt_seed0_rand")).unwrap();
        for w in want {
            assert_eq!(rs.random_sample().to_bits(), w.to_bits());
        }

        let mut rs = NumpyRandomState::new(1234);
        assert_eq!(rs.permutation(50), i64s("mt_seed1234_perm50"));

        let mut rs = NumpyRandomState::new(7);
        assert_eq!(
            rs.randint_each(&i64s("mt_seed7_bsize")).unwrap(),
            i64s("mt_seed7_randint")
        );

        let mut rs = NumpyRandomState::new(42);
        assert_eq!(
            rs.choice_without_replacement(49, 20).unwrap(),
            i64s("mt_seed42_choice")
        );

        let mut rs = NumpyRandomState::new(u32::MAX);
        let mut got: Vec<i64> = (0..30).map(|_| rs.randint(0, 10).unwrap()).collect();
        got.extend((0..30).map(|_| rs.randint(-5, 3).unwrap()));
        assert_eq!(got, i64s("mt_seedmax_randint"));
        assert!(rs.randint(3, 3).is_err());
    }

    #[test]
    fn uniform_sample_frames_test_mode_matches_mmaction2() {
        let cases = i64s("sampling_cases");
        for (i, c) in cases.chunks_exact(3).enumerate() {
            let s = UniformSampleFrames::new(c[1] as usize, c[2] as usize);
            let got = s.test_indices(c[0] as usize, 0).unwrap();
            assert_eq!(got, i64s(&format!("sampling_inds_{i}")), "case {c:?}");
        }
        let got = UniformSampleFrames::new(4, 1).test_indices(100, 7).unwrap();
        let base = UniformSampleFrames::new(4, 1).test_indices(100, 0).unwrap();
        assert_eq!(got, base.iter().map(|v| v + 7).collect::<Vec<_>>());
        assert!(UniformSampleFrames::new(4, 1).test_indices(0, 0).is_err());
        assert!(UniformSampleFrames::new(0, 1).test_indices(10, 0).is_err());
    }

    #[test]
    fn uniform_sample_frames_train_mode_properties() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for &(n, l, c) in &[
            (100usize, 48usize, 2usize),
            (60, 48, 3),
            (30, 48, 2),
            (96, 48, 1),
        ] {
            let s = UniformSampleFrames::new(l, c);
            for _ in 0..20 {
                let inds = s.train_indices(n, 0, &mut rng).unwrap();
                assert_eq!(inds.len(), l * c);
                assert!(inds.iter().all(|&i| (0..n as i64).contains(&i)));
                for clip in inds.chunks(l) {
                    if n >= l {
                        // one frame per bin / strictly increasing picks
                        assert!(clip.windows(2).all(|w| w[1] > w[0]), "{clip:?}");
                    } else {
                        assert!(clip
                            .windows(2)
                            .all(|w| (w[1] - w[0]).rem_euclid(n as i64) == 1));
                    }
                }
            }
        }
        // with NumPy's RandomState it is NumPy's train sampling
        let mut rs = NumpyRandomState::new(1);
        let a = UniformSampleFrames::new(8, 1)
            .train_indices(100, 0, &mut rs)
            .unwrap();
        let mut rs = NumpyRandomState::new(1);
        let (bst, bsize) = bins(100, 8);
        let off = rs.randint_each(&bsize).unwrap();
        let b: Vec<i64> = bst.iter().zip(off).map(|(s, o)| s + o).collect();
        assert_eq!(a, b);
    }

    struct Stage {
        kp: Vec<f64>,
        score: Option<Vec<f32>>,
        h: usize,
        w: usize,
        f64_dtype: bool,
    }

    fn stage(case: &str, step: &str) -> Stage {
        let kp = read_npy_as::<f64>(fixture(&format!("pipe_{case}_{step}_kp")))
            .unwrap()
            .1;
        let score_path = fixture(&format!("pipe_{case}_{step}_score"));
        let score = std::path::Path::new(&score_path)
            .exists()
            .then(|| read_npy_as::<f32>(&score_path).unwrap().1);
        let meta = read_npy_as::<f64>(fixture(&format!("pipe_{case}_{step}_meta")))
            .unwrap()
            .1;
        Stage {
            kp,
            score,
            h: meta[0] as usize,
            w: meta[1] as usize,
            f64_dtype: meta[2] != 0.0,
        }
    }

    fn assert_stage(s: &PoseSample, case: &str, step: &str) {
        let want = stage(case, step);
        assert_eq!(s.img_shape, (want.h, want.w), "{case}/{step} img_shape");
        assert_eq!(
            s.dtype == KpDtype::F64,
            want.f64_dtype,
            "{case}/{step} dtype"
        );
        assert_eq!(s.keypoints.len(), want.kp.len(), "{case}/{step}");
        let bad = s
            .keypoints
            .iter()
            .zip(&want.kp)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "{case}/{step}: keypoints differ");
        if let Some(ws) = want.score {
            assert_eq!(s.scores.as_ref().unwrap(), &ws, "{case}/{step} scores");
        }
    }

    fn input(case: &str, img: (usize, usize)) -> PoseSample {
        let (shape, kp) = read_npy_as::<f32>(fixture(&format!("pipe_{case}_input_kp"))).unwrap();
        let sp = fixture(&format!("pipe_{case}_input_score"));
        let sc = std::path::Path::new(&sp)
            .exists()
            .then(|| read_npy_as::<f32>(&sp).unwrap().1);
        PoseSample::new(&kp, sc.as_deref(), [shape[0], shape[1], shape[2]], img).unwrap()
    }

    #[test]
    fn pipeline_steps_match_mmaction2() {
        let coco = coco17();
        let full = input("real", (1920, 1080));
        let inds = UniformSampleFrames::new(16, 1)
            .test_indices(full.num_frames, 0)
            .unwrap();
        assert_eq!(inds, i64s("pipe_real_frame_inds"));
        let mut s = full.decode(&inds).unwrap();
        assert_stage(&s, "real", "s0_decode");
        s.pose_compact(&PoseCompact::default()).unwrap();
        assert_stage(&s, "real", "s1_compact");
        s.resize(&Resize::short_side(64)).unwrap();
        assert_stage(&s, "real", "s2_resize");
        s.center_crop(64, 64).unwrap();
        assert_stage(&s, "real", "s3_centercrop");
        s.flip(&coco.left_kp, &coco.right_kp).unwrap();
        assert_stage(&s, "real", "s4_flip");
        s.resize(&Resize::exact(56, 56)).unwrap();
        assert_stage(&s, "real", "s5_resize56");
        // and on to the heatmaps, end to end
        let hm = s.heatmaps(&coco, &HeatmapParams::joint(0.6)).unwrap();
        let shape = i64s("pipe_real_hm_shape");
        assert_eq!(hm.shape.map(|v| v as i64).to_vec(), shape);
        let idx = read_npy_as::<i32>(fixture("pipe_real_hm_nzidx")).unwrap().1;
        let val = read_npy_as::<f32>(fixture("pipe_real_hm_nzval")).unwrap().1;
        let mut want = vec![0f32; hm.data.len()];
        for (i, v) in idx.iter().zip(val) {
            want[*i as usize] = v;
        }
        assert!(hm
            .data
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));

        let mut s = full.decode(&(0..8).collect::<Vec<_>>()).unwrap();
        s.pose_compact(&PoseCompact {
            padding: 0.1,
            hw_ratio: None,
            allow_imgpad: false,
            ..PoseCompact::default()
        })
        .unwrap();
        assert_stage(&s, "realb", "s1_compact");
        s.resize(&Resize::exact(64, 48)).unwrap();
        assert_stage(&s, "realb", "s2_resize");
        s.resize(&Resize {
            scale: ResizeScale::Factor(0.5),
            keep_ratio: true,
        })
        .unwrap();
        assert_stage(&s, "realb", "s3_resize_half");
        s.center_crop(40, 20).unwrap();
        assert_stage(&s, "realb", "s4_centercrop");

        let mut s = full.decode(&(50..54).collect::<Vec<_>>()).unwrap();
        s.pose_compact(&PoseCompact {
            padding: 0.3,
            hw_ratio: Some((0.75, 1.5)),
            ..PoseCompact::default()
        })
        .unwrap();
        assert_stage(&s, "realc", "s1_compact");
        s.resize(&Resize {
            scale: ResizeScale::Tuple(100, 64),
            keep_ratio: true,
        })
        .unwrap();
        assert_stage(&s, "realc", "s2_resize");

        let im = imigue36();
        let mut s = input("syn", (720, 1280));
        s.pose_compact(&PoseCompact::default()).unwrap();
        assert_stage(&s, "syn", "s1_compact");
        s.resize(&Resize::short_side(64)).unwrap();
        assert_stage(&s, "syn", "s2_resize");
        s.flip(&im.left_kp, &im.right_kp).unwrap();
        assert_stage(&s, "syn", "s3_flip");

        // the same step under NumPy 1's float64 scalar maths
        let (shape, kp) = read_npy_as::<f32>(fixture("np1_compact_kp")).unwrap();
        let mut s =
            PoseSample::new(&kp, None, [shape[0], shape[1], shape[2]], (720, 1280)).unwrap();
        s.pose_compact(&PoseCompact {
            promotion: NumpyPromotion::Numpy1,
            ..PoseCompact::default()
        })
        .unwrap();
        let want = read_npy_as::<f64>(fixture("np1_compact_out")).unwrap().1;
        let wshape = read_npy_as::<f64>(fixture("np1_compact_shape")).unwrap().1;
        assert_eq!(s.img_shape, (wshape[0] as usize, wshape[1] as usize));
        assert!(s
            .keypoints
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));

        let mut s = input("tiny", (300, 400));
        s.pose_compact(&PoseCompact::default()).unwrap();
        assert_stage(&s, "tiny", "s1_compact");
    }

    #[test]
    fn random_resized_crop_and_flip_behave() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let kp: Vec<f32> = (0..2 * 2 * 17 * 2).map(|i| (i % 50) as f32 + 1.0).collect();
        let base = PoseSample::new(&kp, None, [2, 2, 17], (64, 80)).unwrap();
        for _ in 0..200 {
            let mut s = base.clone();
            let [l, t, r, b] = s
                .random_resized_crop((0.56, 1.0), (0.75, 4.0 / 3.0), &mut rng)
                .unwrap();
            assert!(l >= 0 && t >= 0 && r <= 80 && b <= 64);
            let area = ((r - l) * (b - t)) as f64 / (64.0 * 80.0);
            assert!((0.5..=1.0).contains(&area), "{area}");
            assert_eq!(s.img_shape, ((b - t) as usize, (r - l) as usize));
            assert_eq!(s.dtype, KpDtype::F64);
            assert_eq!(s.keypoints[0], base.keypoints[0] - l as f64);
        }
        // an impossible aspect range falls back to the centred square
        let mut s = base.clone();
        assert_eq!(
            s.random_resized_crop((1.0, 1.0), (10.0, 20.0), &mut rng)
                .unwrap(),
            [8, 0, 72, 64]
        );
        assert!(base
            .clone()
            .random_resized_crop((0.0, 1.0), (1.0, 1.0), &mut rng)
            .is_err());

        let mut flips = 0;
        for _ in 0..100 {
            let mut s = base.clone();
            if s.random_flip(0.5, &[1], &[2], &mut rng).unwrap() {
                flips += 1;
                assert_eq!(s.keypoints[2], 80.0 - base.keypoints[4]);
            } else {
                assert_eq!(s, base);
            }
        }
        assert!((30..=70).contains(&flips));
    }

    #[test]
    fn resize_sizes_like_mmcv() {
        assert_eq!(
            Resize::short_side(64).new_size(1080, 1920).unwrap(),
            (64, 114)
        );
        assert_eq!(Resize::short_side(64).new_size(300, 200).unwrap(), (96, 64));
        assert_eq!(Resize::exact(56, 56).new_size(3, 900).unwrap(), (56, 56));
        let fit = Resize {
            scale: ResizeScale::Tuple(100, 64),
            keep_ratio: true,
        };
        assert_eq!(fit.new_size(200, 200).unwrap(), (64, 64));
        assert!(Resize {
            scale: ResizeScale::Factor(0.5),
            keep_ratio: false
        }
        .new_size(10, 10)
        .is_err());
    }
}
