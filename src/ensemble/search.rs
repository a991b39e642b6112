//! Fusion-weight search on the probability simplex, and a k-fold estimate of how much of the tuned
//! score is fitted noise.
//!
//! MM-Gesture set its weights by hand (mm-gesture.md §6.1); this module is what it did not have.
//!
//! Weights live on a lattice: `units[s] / n` with `Σ units = n`, `n = round(1 / step)`.
//! Ties between weight vectors are broken deterministically, by this total order:
//!   1. higher objective;
//!   2. closer to uniform weights (smaller L1 distance, computed exactly as `Σ |S·units[s] − n|`);
//!   3. lexicographically smaller `units`.
//!
//! Every candidate is scored with exactly the float operations of `Fusion::fused` (f32, stream order,
//! no fused multiply-add), so the score a search reports is the score `metrics::evaluate` gives for
//! the returned weights, independent of thread count.
//!
//! No Nelder–Mead: both objectives are step functions of the weights, on whose plateaus a simplex
//! method stalls; coordinate ascent with restarts covers the many-stream case instead.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::fusion::Fusion;
use super::metrics;
use super::stream::{EnsembleError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Objective {
    Top1,
    /// sklearn `balanced_accuracy_score`.
    MeanClassAccuracy,
}

impl Objective {
    pub fn label(self) -> &'static str {
        match self {
            Objective::Top1 => "top-1",
            Objective::MeanClassAccuracy => "mean class accuracy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Method {
    /// Every lattice point of the simplex.
    Grid { step: f64 },
    /// Best-improvement moves of weight between two streams, from the uniform point and `restarts`
    /// random lattice points drawn from ChaCha8 seeded with `seed`.
    CoordinateAscent {
        step: f64,
        restarts: usize,
        seed: u64,
    },
}

/// Threads, progress and cancellation for a search.
pub struct Control<'a> {
    /// 0 = `std::thread::available_parallelism()`.
    pub threads: usize,
    /// Called as `(done, total)` from worker threads, hence `Sync`.
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    pub cancel: &'a AtomicBool,
}

static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);

fn no_progress(_: u64, _: u64) {}

impl Control<'static> {
    /// All cores, no progress reports, not cancellable.
    pub fn quiet() -> Self {
        Control {
            threads: 0,
            progress: &no_progress,
            cancel: &NEVER_CANCELLED,
        }
    }
}

impl Control<'_> {
    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(AtomicOrdering::Relaxed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub stream_names: Vec<String>,
    /// `units[s] as f32 / denominator as f32`: exactly the weights that were scored.
    pub weights: Vec<f32>,
    pub units: Vec<u32>,
    pub denominator: u32,
    pub objective: Objective,
    pub score: f64,
    /// Weight vectors scored.
    pub evaluated: u64,
}

/// Refuses grids that would run for hours; coordinate ascent is the tool for those.
pub const MAX_GRID_POINTS: u128 = 400_000_000;

pub fn search(
    fusion: &Fusion,
    method: &Method,
    objective: Objective,
    ctl: &Control,
) -> Result<SearchResult> {
    match *method {
        Method::Grid { step } => grid_search(fusion, step, objective, ctl),
        Method::CoordinateAscent {
            step,
            restarts,
            seed,
        } => coordinate_ascent(fusion, step, restarts, seed, objective, ctl),
    }
}

fn lattice_denominator(step: f64) -> Result<u32> {
    if !(step.is_finite() && step > 0.0 && step <= 1.0) {
        return Err(EnsembleError::InvalidArgument(format!(
            "step {step} must be in (0, 1]"
        )));
    }
    let n = (1.0 / step).round();
    if (n * step - 1.0).abs() > 1e-9 || n > 100_000.0 {
        return Err(EnsembleError::InvalidArgument(format!(
            "step {step} must divide 1 (e.g. 0.05, 0.1, 0.01)"
        )));
    }
    Ok(n as u32)
}

fn binomial(n: u128, k: u128) -> Option<u128> {
    let k = k.min(n.saturating_sub(k));
    let mut r: u128 = 1;
    for i in 0..k {
        r = r.checked_mul(n - i)? / (i + 1);
    }
    Some(r)
}

/// Lattice points of the simplex with `s` streams and denominator `n`: C(n+s−1, s−1).
pub fn grid_size(streams: usize, step: f64) -> Result<u128> {
    let n = lattice_denominator(step)?;
    if streams == 0 {
        return Err(EnsembleError::InvalidArgument("no streams".into()));
    }
    binomial(u128::from(n) + streams as u128 - 1, streams as u128 - 1)
        .ok_or_else(|| EnsembleError::InvalidArgument("grid size overflows".into()))
}

/// A scored lattice point, ordered by the module's tie-break rule.
#[derive(Debug, Clone)]
struct Cand {
    score: f64,
    l1: u64,
    units: Vec<u32>,
}

fn l1_to_uniform(units: &[u32], n: u32) -> u64 {
    let s = units.len() as i64;
    units
        .iter()
        .map(|&u| (i64::from(u) * s - i64::from(n)).unsigned_abs())
        .sum()
}

/// `Greater` when `a` is the better candidate.
fn compare(a: &Cand, b: &Cand) -> Ordering {
    a.score
        .total_cmp(&b.score)
        .then_with(|| b.l1.cmp(&a.l1))
        .then_with(|| b.units.cmp(&a.units))
}

fn keep_better(best: &mut Option<Cand>, c: Cand) {
    match best {
        Some(b) if compare(&c, b) != Ordering::Greater => {}
        _ => *best = Some(c),
    }
}

/// Clips scored side by side: one lane per clip, so the per-clip maxima are plain vector operations.
const LANES: usize = 8;

/// `LANES` clips with similar competitor counts. In every stream's array the block occupies
/// `LANES · (1 + n_lower + n_higher)` values: the labels' scores, then one slot per competitor rank.
#[derive(Debug, Clone)]
struct Block {
    start: usize,
    n_lower: usize,
    n_higher: usize,
    /// Label of each lane; `None` for padding lanes of the last block.
    labels: [Option<u32>; LANES],
}

/// The labelled clips of a fusion in a layout made for scoring many weight vectors.
///
/// Per clip, only the label and the competitors that could ever beat it are kept (see `new`); clips
/// whose outcome cannot depend on the weights are counted once and left out. Competitors with a lower
/// class index than the label (which win exact ties) and with a higher one are kept apart.
struct Evaluator {
    streams: usize,
    classes: usize,
    blocks: Vec<Block>,
    len: usize,
    vals: Vec<Vec<f32>>,
    /// Per class: clips right under every weight vector.
    fixed_hits: Vec<u64>,
    support: Vec<u64>,
    labelled: usize,
    /// Clips that are right under some weights and wrong under others.
    undecided: usize,
    objective: Objective,
}

impl Evaluator {
    fn new(fusion: &Fusion, objective: Objective) -> Result<Self> {
        let s = fusion.n_streams();
        let c = fusion.classes();
        let rows = fusion.labelled_rows();
        if rows.is_empty() {
            return Err(EnsembleError::NoLabels);
        }
        let mats: Vec<&[f32]> = (0..s).map(|k| fusion.stream_probs(k)).collect();
        let amax = mats
            .iter()
            .flat_map(|m| m.iter())
            .fold(0.0f32, |a, &b| a.max(b.abs()));
        // Float error of a fused value is at most ~S·u·Σw·amax; twice that, with room, separates two
        // values whose exact difference is at least margin·Σw. Valid for any non-negative weights.
        let margin = (s as f32 + 2.0) * 4.0 * f32::EPSILON * amax.max(f32::MIN_POSITIVE);
        // Padding slots fuse to about −(amax + 1)·Σw, below any real score.
        let pad = -(amax + 1.0);
        let get = |k: usize, r: usize, j: usize| mats[k][r * c + j];

        struct Clip {
            row: usize,
            label: usize,
            lower: Vec<usize>,
            higher: Vec<usize>,
        }
        let mut support = vec![0u64; c];
        let mut fixed_hits = vec![0u64; c];
        let mut clips = Vec::new();
        for &r in &rows {
            let Some(y) = fusion.labels()[r] else {
                continue;
            };
            let y = y as usize;
            support[y] += 1;
            let dominates =
                |a: usize, b: usize, by: f32| (0..s).all(|k| get(k, r, a) >= get(k, r, b) + by);
            // Some class beats the label strictly under every weight vector: always wrong.
            if (0..c).any(|d| d != y && dominates(d, y, margin)) {
                continue;
            }
            let mut lower = Vec::new();
            let mut higher = Vec::new();
            for j in (0..c).filter(|&j| j != y) {
                // The label always beats j: it is >= j in every stream (monotone rounding keeps the
                // fused label >= fused j), strictly by the margin when j would win an exact tie.
                let label_wins = if j > y {
                    dominates(y, j, 0.0)
                } else {
                    dominates(y, j, margin)
                };
                // Some other class beats j strictly wherever j could beat the label, so j's outcome
                // never decides whether the label wins.
                let shadowed = (0..c).any(|d| d != j && d != y && dominates(d, j, margin));
                if !(label_wins || shadowed) {
                    if j < y {
                        lower.push(j);
                    } else {
                        higher.push(j);
                    }
                }
            }
            if lower.is_empty() && higher.is_empty() {
                fixed_hits[y] += 1;
            } else {
                clips.push(Clip {
                    row: r,
                    label: y,
                    lower,
                    higher,
                });
            }
        }
        // Similar competitor counts share a block, which keeps padding small.
        clips.sort_by(|a, b| {
            (b.lower.len() + b.higher.len())
                .cmp(&(a.lower.len() + a.higher.len()))
                .then(b.lower.len().cmp(&a.lower.len()))
                .then(a.row.cmp(&b.row))
        });
        let mut blocks = Vec::new();
        let mut vals: Vec<Vec<f32>> = vec![Vec::new(); s];
        let mut start = 0usize;
        for group in clips.chunks(LANES) {
            let n_lower = group.iter().map(|cl| cl.lower.len()).max().unwrap_or(0);
            let n_higher = group.iter().map(|cl| cl.higher.len()).max().unwrap_or(0);
            let mut labels = [None; LANES];
            for (l, cl) in group.iter().enumerate() {
                labels[l] = Some(cl.label as u32);
            }
            for (k, v) in vals.iter_mut().enumerate() {
                let lane = |l: usize, pick: &dyn Fn(&Clip) -> Option<usize>| {
                    group
                        .get(l)
                        .and_then(|cl| pick(cl).map(|j| get(k, cl.row, j)))
                        .unwrap_or(pad)
                };
                v.extend((0..LANES).map(|l| lane(l, &|cl| Some(cl.label))));
                for t in 0..n_lower {
                    v.extend((0..LANES).map(|l| lane(l, &|cl| cl.lower.get(t).copied())));
                }
                for t in 0..n_higher {
                    v.extend((0..LANES).map(|l| lane(l, &|cl| cl.higher.get(t).copied())));
                }
            }
            blocks.push(Block {
                start,
                n_lower,
                n_higher,
                labels,
            });
            start += LANES * (1 + n_lower + n_higher);
        }
        Ok(Evaluator {
            streams: s,
            classes: c,
            blocks,
            len: start,
            vals,
            fixed_hits,
            support,
            labelled: rows.len(),
            undecided: clips.len(),
            objective,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Objective from per-block lane results; `class_hits` is scratch.
    fn finish_score(
        &self,
        class_hits: &mut [u64],
        mut lane_ok: impl FnMut(&Block) -> [bool; LANES],
    ) -> f64 {
        class_hits.copy_from_slice(&self.fixed_hits);
        for blk in &self.blocks {
            let ok = lane_ok(blk);
            for (label, ok) in blk.labels.iter().zip(ok) {
                if let Some(l) = *label {
                    class_hits[l as usize] += u64::from(ok);
                }
            }
        }
        match self.objective {
            Objective::Top1 => class_hits.iter().sum::<u64>() as f64 / self.labelled as f64,
            Objective::MeanClassAccuracy => {
                metrics::mean_recall_from_counts(class_hits, &self.support).unwrap_or(0.0)
            }
        }
    }

    /// Objective of a fused buffer in this layout.
    fn score(&self, fin: &[f32], class_hits: &mut [u64]) -> f64 {
        self.finish_score(class_hits, |blk| {
            let seg = &fin[blk.start..blk.start + LANES * (1 + blk.n_lower + blk.n_higher)];
            let (label, rest) = seg.split_at(LANES);
            let (lower, higher) = rest.split_at(LANES * blk.n_lower);
            let mut max_lower = [f32::NEG_INFINITY; LANES];
            for ch in lower.chunks_exact(LANES) {
                lane_max(&mut max_lower, ch);
            }
            let mut max_higher = [f32::NEG_INFINITY; LANES];
            for ch in higher.chunks_exact(LANES) {
                lane_max(&mut max_higher, ch);
            }
            lane_outcome(label, &max_lower, &max_higher)
        })
    }

    /// Objective of `pre + a·P + b·Q` (two roundings per value, as the sequential sum), computed on the fly.
    fn score_last_two(
        &self,
        pre: &[f32],
        p: &[f32],
        q: &[f32],
        a: f32,
        b: f32,
        class_hits: &mut [u64],
    ) -> f64 {
        self.finish_score(class_hits, |blk| {
            let r = blk.start..blk.start + LANES * (1 + blk.n_lower + blk.n_higher);
            let (pre, p, q) = (&pre[r.clone()], &p[r.clone()], &q[r]);
            let mut label = [0.0f32; LANES];
            let mut max_lower = [f32::NEG_INFINITY; LANES];
            let mut max_higher = [f32::NEG_INFINITY; LANES];
            let split = LANES * (1 + blk.n_lower);
            let slots = pre
                .chunks_exact(LANES)
                .zip(p.chunks_exact(LANES))
                .zip(q.chunks_exact(LANES));
            for (t, ((x, y), z)) in slots.enumerate() {
                let mut v = [0.0f32; LANES];
                for (l, v) in v.iter_mut().enumerate() {
                    *v = (x[l] + a * y[l]) + b * z[l];
                }
                let at = t * LANES;
                if at == 0 {
                    label = v;
                } else if at < split {
                    lane_max(&mut max_lower, &v);
                } else {
                    lane_max(&mut max_higher, &v);
                }
            }
            lane_outcome(&label, &max_lower, &max_higher)
        })
    }

    /// Scores one lattice point from scratch, in `Fusion::fused`'s operation order.
    fn score_units(&self, units: &[u32], n: u32, fin: &mut [f32], class_hits: &mut [u64]) -> f64 {
        fin.fill(0.0);
        for (v, &u) in self.vals.iter().zip(units) {
            let w = weight(u, n);
            for (a, &p) in fin.iter_mut().zip(v) {
                *a += w * p;
            }
        }
        self.score(fin, class_hits)
    }
}

#[inline]
fn lane_max(acc: &mut [f32; LANES], v: &[f32]) {
    for (m, &x) in acc.iter_mut().zip(v) {
        *m = if x > *m { x } else { *m };
    }
}

/// Per lane: the label beats the lower-index competitors strictly (they win exact ties, as in
/// `numpy.argmax`) and the higher-index ones at least by a tie.
#[inline]
fn lane_outcome(
    label: &[f32],
    max_lower: &[f32; LANES],
    max_higher: &[f32; LANES],
) -> [bool; LANES] {
    let mut ok = [false; LANES];
    for (l, o) in ok.iter_mut().enumerate() {
        *o = label[l] > max_lower[l] && label[l] >= max_higher[l];
    }
    ok
}

/// How many values per stream the grid search scores after pruning (padding included), against
/// clips × classes; and how many clips' outcome depends on the weights at all.
pub fn pruning_stats(fusion: &Fusion) -> Result<(usize, usize, usize)> {
    let ev = Evaluator::new(fusion, Objective::Top1)?;
    Ok((ev.len(), ev.labelled * ev.classes, ev.undecided))
}

#[inline]
fn weight(units: u32, n: u32) -> f32 {
    units as f32 / n as f32
}

/// Per-thread state of the grid walk.
struct GridWorker<'e> {
    ev: &'e Evaluator,
    n: u32,
    units: Vec<u32>,
    /// `prefix[d]` = Σ_{t<d} w_t·P_t, built exactly as `Fusion::fused` accumulates.
    prefix: Vec<Vec<f32>>,
    fin: Vec<f32>,
    class_hits: Vec<u64>,
    best: Option<Cand>,
    best_score: f64,
    evaluated: u64,
}

impl GridWorker<'_> {
    fn consider(&mut self, score: f64) {
        self.evaluated += 1;
        // Cheap reject before building a candidate: most points lose on the score alone.
        if score < self.best_score {
            return;
        }
        let c = Cand {
            score,
            l1: l1_to_uniform(&self.units, self.n),
            units: self.units.clone(),
        };
        keep_better(&mut self.best, c);
        self.best_score = score;
    }

    /// Sets `prefix[depth + 1] = prefix[depth] + w·P_depth`.
    fn extend_prefix(&mut self, depth: usize, w: f32) {
        let (head, tail) = self.prefix.split_at_mut(depth + 1);
        let src = &head[depth];
        let dst = &mut tail[0];
        for ((d, &a), &p) in dst.iter_mut().zip(src).zip(&self.ev.vals[depth]) {
            *d = a + w * p;
        }
    }

    fn walk(&mut self, depth: usize, rem: u32) {
        let s = self.ev.streams;
        if depth + 1 == s {
            self.units[depth] = rem;
            let w = weight(rem, self.n);
            for ((f, &a), &p) in self
                .fin
                .iter_mut()
                .zip(&self.prefix[depth])
                .zip(&self.ev.vals[depth])
            {
                *f = a + w * p;
            }
            let sc = self.ev.score(&self.fin, &mut self.class_hits);
            self.consider(sc);
            return;
        }
        if depth + 2 == s {
            // The last two streams share `rem`: prefix + a·P + b·Q is formed inside the scoring pass
            // with the same two roundings as the sequential sum, and never stored.
            for k in 0..=rem {
                self.units[depth] = k;
                self.units[depth + 1] = rem - k;
                let (a, b) = (weight(k, self.n), weight(rem - k, self.n));
                let (p, q) = (&self.ev.vals[depth], &self.ev.vals[depth + 1]);
                let sc =
                    self.ev
                        .score_last_two(&self.prefix[depth], p, q, a, b, &mut self.class_hits);
                self.consider(sc);
            }
            return;
        }
        for k in 0..=rem {
            self.units[depth] = k;
            self.extend_prefix(depth, weight(k, self.n));
            self.walk(depth + 1, rem - k);
        }
    }
}

/// Exhaustive search over every lattice point of the simplex, split across threads.
pub fn grid_search(
    fusion: &Fusion,
    step: f64,
    objective: Objective,
    ctl: &Control,
) -> Result<SearchResult> {
    let n = lattice_denominator(step)?;
    let s = fusion.n_streams();
    let total = grid_size(s, step)?;
    if total > MAX_GRID_POINTS {
        return Err(EnsembleError::InvalidArgument(format!(
            "a grid of step {step} over {s} streams has {total} points; use a coarser step or coordinate ascent"
        )));
    }
    let total = total as u64;
    let ev = Evaluator::new(fusion, objective)?;

    // Tasks fix the first `fixed` streams' units; the walk enumerates the rest.
    let fixed = s.saturating_sub(2).min(2);
    let mut tasks: Vec<(Vec<u32>, u64)> = Vec::new();
    let mut prefix_units = vec![0u32; fixed];
    enumerate_prefixes(&mut prefix_units, 0, n, &mut |p: &[u32]| {
        let rem = n - p.iter().sum::<u32>();
        let free = (s - fixed) as u128;
        let size = binomial(u128::from(rem) + free - 1, free - 1).unwrap_or(0) as u64;
        tasks.push((p.to_vec(), size));
    });
    // Largest first keeps threads busy to the end; the result does not depend on the order.
    tasks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<(Option<Cand>, u64)>> = Mutex::new(Vec::new());
    let threads = ctl.thread_count().clamp(1, tasks.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let len = ev.len();
                let mut w = GridWorker {
                    ev: &ev,
                    n,
                    units: vec![0; s],
                    prefix: vec![vec![0.0; len]; s],
                    fin: vec![0.0; len],
                    class_hits: vec![0; ev.classes],
                    best: None,
                    best_score: f64::NEG_INFINITY,
                    evaluated: 0,
                };
                loop {
                    if ctl.cancelled() {
                        break;
                    }
                    let t = next.fetch_add(1, AtomicOrdering::Relaxed);
                    let Some((p, size)) = tasks.get(t) else { break };
                    let mut rem = n;
                    for (d, &u) in p.iter().enumerate() {
                        w.units[d] = u;
                        w.extend_prefix(d, weight(u, n));
                        rem -= u;
                    }
                    w.walk(p.len(), rem);
                    let d = done.fetch_add(*size, AtomicOrdering::Relaxed) + size;
                    (ctl.progress)(d, total);
                }
                if let Ok(mut r) = results.lock() {
                    r.push((w.best, w.evaluated));
                }
            });
        }
    });
    if ctl.cancelled() {
        return Err(EnsembleError::Cancelled);
    }
    let results = results
        .into_inner()
        .map_err(|_| EnsembleError::InvalidArgument("a search thread panicked".into()))?;
    let evaluated = results.iter().map(|r| r.1).sum();
    let mut best = None;
    for (c, _) in results {
        if let Some(c) = c {
            keep_better(&mut best, c);
        }
    }
    let best = best.ok_or_else(|| EnsembleError::InvalidArgument("empty grid".into()))?;
    Ok(finish(fusion, best, n, objective, evaluated))
}

fn enumerate_prefixes(units: &mut Vec<u32>, depth: usize, rem: u32, f: &mut dyn FnMut(&[u32])) {
    if depth == units.len() {
        f(units);
        return;
    }
    for k in 0..=rem {
        units[depth] = k;
        enumerate_prefixes(units, depth + 1, rem - k, f);
    }
}

fn finish(
    fusion: &Fusion,
    best: Cand,
    n: u32,
    objective: Objective,
    evaluated: u64,
) -> SearchResult {
    SearchResult {
        stream_names: fusion.stream_names().to_vec(),
        weights: best.units.iter().map(|&u| weight(u, n)).collect(),
        units: best.units,
        denominator: n,
        objective,
        score: best.score,
        evaluated,
    }
}

/// The lattice point closest to uniform: `n / S` each, the remainder to the first streams.
fn uniform_units(s: usize, n: u32) -> Vec<u32> {
    let base = n / s as u32;
    let extra = (n % s as u32) as usize;
    (0..s).map(|i| base + u32::from(i < extra)).collect()
}

/// A uniformly random lattice point (stars and bars with a partial Fisher–Yates draw).
fn random_units(rng: &mut ChaCha8Rng, s: usize, n: u32) -> Vec<u32> {
    let slots = n as usize + s - 1;
    let mut pool: Vec<usize> = (0..slots).collect();
    for i in 0..s - 1 {
        let j = rng.random_range(i..slots);
        pool.swap(i, j);
    }
    let mut bars = pool[..s - 1].to_vec();
    bars.sort_unstable();
    let mut out = Vec::with_capacity(s);
    let mut prev = 0usize;
    for &b in &bars {
        out.push((b - prev) as u32);
        prev = b + 1;
    }
    out.push((slots - prev) as u32);
    out
}

/// Hill-climbing from several starts; each move shifts 1, 2, 4, … units from one stream to another
/// and the best move (by the module's total order) is taken until none improves.
pub fn coordinate_ascent(
    fusion: &Fusion,
    step: f64,
    restarts: usize,
    seed: u64,
    objective: Objective,
    ctl: &Control,
) -> Result<SearchResult> {
    let n = lattice_denominator(step)?;
    let s = fusion.n_streams();
    let ev = Evaluator::new(fusion, objective)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut starts = vec![uniform_units(s, n)];
    for _ in 0..restarts {
        starts.push(random_units(&mut rng, s, n));
    }
    let total = starts.len() as u64;
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<(Cand, u64)>> = Mutex::new(Vec::new());
    let threads = ctl.thread_count().clamp(1, starts.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut fin = vec![0.0f32; ev.len()];
                let mut class_hits = vec![0u64; ev.classes];
                loop {
                    if ctl.cancelled() {
                        break;
                    }
                    let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                    let Some(start) = starts.get(i) else { break };
                    let r = climb(&ev, start.clone(), n, &mut fin, &mut class_hits, ctl);
                    if let Ok(mut res) = results.lock() {
                        res.push(r);
                    }
                    let d = done.fetch_add(1, AtomicOrdering::Relaxed) + 1;
                    (ctl.progress)(d, total);
                }
            });
        }
    });
    if ctl.cancelled() {
        return Err(EnsembleError::Cancelled);
    }
    let results = results
        .into_inner()
        .map_err(|_| EnsembleError::InvalidArgument("a search thread panicked".into()))?;
    let evaluated = results.iter().map(|r| r.1).sum();
    let mut best = None;
    for (c, _) in results {
        keep_better(&mut best, c);
    }
    let best = best.ok_or_else(|| EnsembleError::InvalidArgument("no starting point".into()))?;
    Ok(finish(fusion, best, n, objective, evaluated))
}

fn climb(
    ev: &Evaluator,
    start: Vec<u32>,
    n: u32,
    fin: &mut [f32],
    class_hits: &mut [u64],
    ctl: &Control,
) -> (Cand, u64) {
    let mut seen: HashMap<Vec<u32>, f64> = HashMap::new();
    let mut eval = |units: &[u32], seen: &mut HashMap<Vec<u32>, f64>| -> Cand {
        let score = match seen.get(units) {
            Some(&sc) => sc,
            None => {
                let sc = ev.score_units(units, n, fin, class_hits);
                seen.insert(units.to_vec(), sc);
                sc
            }
        };
        Cand {
            score,
            l1: l1_to_uniform(units, n),
            units: units.to_vec(),
        }
    };
    let mut cur = eval(&start, &mut seen);
    let s = start.len();
    // Each accepted move strictly improves a total order over a finite set, so this terminates;
    // the cap only guards against a bug turning into a hang.
    for _ in 0..100_000 {
        if ctl.cancelled() {
            break;
        }
        let mut best_move: Option<Cand> = None;
        for from in 0..s {
            let mut delta = 1u32;
            while delta <= cur.units[from] {
                for to in (0..s).filter(|&t| t != from) {
                    let mut u = cur.units.clone();
                    u[from] -= delta;
                    u[to] += delta;
                    let c = eval(&u, &mut seen);
                    keep_better(&mut best_move, c);
                }
                delta *= 2;
            }
        }
        match best_move {
            Some(m) if compare(&m, &cur) == Ordering::Greater => cur = m,
            _ => break,
        }
    }
    let evaluated = seen.len() as u64;
    (cur, evaluated)
}

/// Objective of given weights on given rows, computed the canonical way (`Fusion::fused` + metrics).
pub fn score_weights(fusion: &Fusion, weights: &[f32], objective: Objective) -> Result<f64> {
    let m = metrics::evaluate(&fusion.fused(weights)?, fusion.classes(), fusion.labels())?;
    Ok(match objective {
        Objective::Top1 => m.top1,
        Objective::MeanClassAccuracy => m.mean_class_accuracy,
    })
}

/// Tuned-on-everything score next to an honest, held-out estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KFoldReport {
    pub k: usize,
    pub seed: u64,
    pub objective: Objective,
    /// The search on all labelled clips: the weights one would ship, and its (optimistic) score.
    pub tuned: SearchResult,
    /// Uniform weights on all labelled clips, for reference.
    pub uniform_score: f64,
    pub fold_sizes: Vec<usize>,
    /// Row indices (into the fusion's clip list) of each fold.
    pub fold_rows: Vec<Vec<usize>>,
    pub fold_weights: Vec<Vec<f32>>,
    /// Score on the k−1 folds each fold's weights were tuned on.
    pub fold_train_scores: Vec<f64>,
    /// Score of each fold's tuned weights on that fold, which the tuning never saw.
    pub fold_heldout_scores: Vec<f64>,
    /// Uniform weights on each held-out fold: what tuning has to beat.
    pub fold_uniform_scores: Vec<f64>,
    pub heldout_mean: f64,
    /// Sample standard deviation (ddof = 1) of the held-out scores.
    pub heldout_std: f64,
    pub heldout_stderr: f64,
    pub uniform_heldout_mean: f64,
    /// `tuned.score − heldout_mean`.
    pub optimism_gap: f64,
    pub warning: Option<String>,
}

/// Gap (in objective units) above which the tuned score is flagged whatever the standard error says.
pub const GAP_WARN_ABSOLUTE: f64 = 0.02;

/// Stratified fold of each labelled row: each class's rows, shuffled (ChaCha8, `seed`), are dealt
/// round-robin, continuing across classes so fold sizes differ by at most one.
pub fn stratified_folds(labels: &[Option<u32>], k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    let labelled = labels.iter().filter(|l| l.is_some()).count();
    if k < 2 || k > labelled {
        return Err(EnsembleError::InvalidArgument(format!(
            "k-fold needs 2 <= k <= labelled clips ({labelled}), got k = {k}"
        )));
    }
    let classes = labels
        .iter()
        .flatten()
        .map(|&l| l as usize + 1)
        .max()
        .unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, l) in labels.iter().enumerate() {
        if let Some(l) = *l {
            by_class[l as usize].push(i);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut next = 0usize;
    for rows in &mut by_class {
        for i in (1..rows.len()).rev() {
            let j = rng.random_range(0..=i);
            rows.swap(i, j);
        }
        for &r in rows.iter() {
            folds[next % k].push(r);
            next += 1;
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    Ok(folds)
}

/// Tunes on k−1 folds and scores the held-out fold, k times, plus the tuning on all labelled clips.
pub fn kfold(
    fusion: &Fusion,
    k: usize,
    seed: u64,
    method: &Method,
    objective: Objective,
    ctl: &Control,
) -> Result<KFoldReport> {
    let folds = stratified_folds(fusion.labels(), k, seed)?;
    let uniform = vec![1.0f32 / fusion.n_streams() as f32; fusion.n_streams()];
    let per_search = match *method {
        Method::Grid { step } => {
            u64::try_from(grid_size(fusion.n_streams(), step)?).unwrap_or(u64::MAX)
        }
        Method::CoordinateAscent { restarts, .. } => restarts as u64 + 1,
    };
    let grand_total = per_search.saturating_mul(k as u64 + 1);
    let run = |sub: &Fusion, round: u64| {
        let offset = per_search.saturating_mul(round);
        let forward = move |d: u64, _t: u64| (ctl.progress)(offset + d, grand_total);
        let inner = Control {
            threads: ctl.threads,
            progress: &forward,
            cancel: ctl.cancel,
        };
        search(sub, method, objective, &inner)
    };

    let labelled = fusion.subset(&fusion.labelled_rows());
    let tuned = run(&labelled, 0)?;
    let uniform_score = score_weights(&labelled, &uniform, objective)?;
    let mut fold_weights = Vec::with_capacity(k);
    let mut fold_train_scores = Vec::with_capacity(k);
    let mut fold_heldout_scores = Vec::with_capacity(k);
    let mut fold_uniform_scores = Vec::with_capacity(k);
    for (f, held) in folds.iter().enumerate() {
        let train_rows: Vec<usize> = folds
            .iter()
            .enumerate()
            .filter(|&(g, _)| g != f)
            .flat_map(|(_, rows)| rows.iter().copied())
            .collect();
        let train = fusion.subset(&train_rows);
        let test = fusion.subset(held);
        let r = run(&train, f as u64 + 1)?;
        fold_heldout_scores.push(score_weights(&test, &r.weights, objective)?);
        fold_uniform_scores.push(score_weights(&test, &uniform, objective)?);
        fold_train_scores.push(r.score);
        fold_weights.push(r.weights);
    }
    let (heldout_mean, heldout_std) = mean_std(&fold_heldout_scores);
    let heldout_stderr = heldout_std / (k as f64).sqrt();
    let (uniform_heldout_mean, _) = mean_std(&fold_uniform_scores);
    let optimism_gap = tuned.score - heldout_mean;
    let pts = |x: f64| 100.0 * x;
    let warning = (optimism_gap > 2.0 * heldout_stderr || optimism_gap > GAP_WARN_ABSOLUTE).then(|| {
        format!(
            "tuned {obj} {:.2}% is {:.2} points above the held-out estimate {:.2}% ± {:.2} (SE over {k} folds); \
             the tuned weights partly fit noise in these {} clips, expect about {:.2}% on new data \
             (uniform weights held out: {:.2}%)",
            pts(tuned.score),
            pts(optimism_gap),
            pts(heldout_mean),
            pts(heldout_stderr),
            labelled.n_clips(),
            pts(heldout_mean),
            pts(uniform_heldout_mean),
            obj = objective.label(),
        )
    });
    Ok(KFoldReport {
        k,
        seed,
        objective,
        tuned,
        uniform_score,
        fold_sizes: folds.iter().map(Vec::len).collect(),
        fold_rows: folds,
        fold_weights,
        fold_train_scores,
        fold_heldout_scores,
        fold_uniform_scores,
        heldout_mean,
        heldout_std,
        heldout_stderr,
        uniform_heldout_mean,
        optimism_gap,
        warning,
    })
}

/// Fused probabilities (÷ Σ weights) where each labelled clip is fused with the weights tuned
/// without its fold, and every other clip with the weights tuned on everything: the out-of-sample
/// scores `queue::likely_label_errors` asks for.
pub fn out_of_sample_probs(fusion: &Fusion, report: &KFoldReport) -> Result<Vec<f32>> {
    let c = fusion.classes();
    let normalised = |w: &[f32]| -> Result<Vec<f32>> {
        let total: f32 = w.iter().sum();
        if total <= 0.0 {
            return Err(EnsembleError::Weights("weights sum to zero".into()));
        }
        Ok(fusion.fused(w)?.into_iter().map(|v| v / total).collect())
    };
    let mut out = normalised(&report.tuned.weights)?;
    for (rows, w) in report.fold_rows.iter().zip(&report.fold_weights) {
        let fused = normalised(w)?;
        for &r in rows {
            if r >= fusion.n_clips() {
                return Err(EnsembleError::InvalidArgument(format!(
                    "k-fold report row {r} is beyond this fusion's {} clips",
                    fusion.n_clips()
                )));
            }
            out[r * c..(r + 1) * c].copy_from_slice(&fused[r * c..(r + 1) * c]);
        }
    }
    Ok(out)
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::stream::{ScoreKind, ScoreStream, Stream};

    /// Streams of varying quality: stream k is right with probability `quality[k]`.
    pub(crate) fn synthetic(n: usize, c: usize, quality: &[f64], seed: u64) -> Fusion {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ids: Vec<String> = (0..n).map(|i| format!("clip{i:04}")).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
        let streams: Vec<Stream> = quality
            .iter()
            .enumerate()
            .map(|(k, &q)| {
                let rows = labels
                    .iter()
                    .map(|&l| {
                        let mut row: Vec<f32> =
                            (0..c).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                        let target = if rng.random_bool(q) {
                            l as usize
                        } else {
                            rng.random_range(0..c)
                        };
                        row[target] += 2.0;
                        row
                    })
                    .collect();
                ScoreStream::new(format!("s{k}"), ids.clone(), c, rows, ScoreKind::Logits)
                    .unwrap()
                    .0
                    .into()
            })
            .collect();
        Fusion::new(ids, labels.into_iter().map(Some).collect(), streams).unwrap()
    }

    /// Every lattice point, scored the canonical way, best by the documented total order.
    fn brute_force(f: &Fusion, n: u32, objective: Objective) -> Cand {
        let mut best = None;
        let mut units = vec![0u32; f.n_streams()];
        fn rec(
            f: &Fusion,
            n: u32,
            o: Objective,
            d: usize,
            rem: u32,
            u: &mut Vec<u32>,
            best: &mut Option<Cand>,
        ) {
            if d + 1 == u.len() {
                u[d] = rem;
                let w: Vec<f32> = u.iter().map(|&x| weight(x, n)).collect();
                let score = score_weights(f, &w, o).unwrap();
                keep_better(
                    best,
                    Cand {
                        score,
                        l1: l1_to_uniform(u, n),
                        units: u.clone(),
                    },
                );
                return;
            }
            for k in 0..=rem {
                u[d] = k;
                rec(f, n, o, d + 1, rem - k, u, best);
            }
        }
        rec(f, n, objective, 0, n, &mut units, &mut best);
        best.unwrap()
    }

    #[test]
    fn grid_size_counts_compositions() {
        assert_eq!(grid_size(6, 0.05).unwrap(), 53_130);
        assert_eq!(grid_size(1, 0.1).unwrap(), 1);
        assert_eq!(grid_size(3, 0.5).unwrap(), 6);
        assert!(grid_size(3, 0.3).is_err());
        assert!(grid_size(3, 0.0).is_err());
    }

    #[test]
    fn grid_equals_brute_force_and_canonical_scoring() {
        for (objective, seed) in [(Objective::Top1, 1), (Objective::MeanClassAccuracy, 2)] {
            let f = synthetic(150, 7, &[0.5, 0.35, 0.2, 0.4], seed);
            let r = grid_search(&f, 0.1, objective, &Control::quiet()).unwrap();
            let b = brute_force(&f, 10, objective);
            assert_eq!(r.units, b.units, "{objective:?}");
            assert_eq!(r.score, b.score);
            assert_eq!(r.evaluated, 286);
            assert_eq!(r.score, score_weights(&f, &r.weights, objective).unwrap());
            assert_eq!(r.units.iter().sum::<u32>(), 10);
        }
    }

    #[test]
    fn pruned_evaluator_matches_canonical_on_every_point() {
        // Peaked probabilities make most competitors prunable; the score must not change.
        let f = synthetic(200, 12, &[0.7, 0.6, 0.5], 5);
        let ev = Evaluator::new(&f, Objective::Top1).unwrap();
        assert!(ev.len() < 200 * 12, "pruning removed nothing: {}", ev.len());
        let mut fin = vec![0.0; ev.len()];
        let mut hits = vec![0; 12];
        for a in 0..=20u32 {
            for b in 0..=(20 - a) {
                let u = [a, b, 20 - a - b];
                let w: Vec<f32> = u.iter().map(|&x| weight(x, 20)).collect();
                assert_eq!(
                    ev.score_units(&u, 20, &mut fin, &mut hits),
                    score_weights(&f, &w, Objective::Top1).unwrap(),
                    "{u:?}"
                );
            }
        }
    }

    /// Coarsely rounded probabilities (many exact ties) in every scoring path against the canonical one.
    #[test]
    fn every_scoring_path_matches_canonical_with_many_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let (n, c, s) = (120usize, 6usize, 4usize);
        let ids: Vec<String> = (0..n).map(|i| format!("t{i:03}")).collect();
        let labels: Vec<Option<u32>> = (0..n)
            .map(|i| (i % 9 != 0).then(|| rng.random_range(0..c as u32)))
            .collect();
        let streams: Vec<Stream> = (0..s)
            .map(|k| {
                let rows = (0..n)
                    .map(|_| {
                        (0..c)
                            .map(|_| f32::from(rng.random_range(0u8..4)) * 0.25)
                            .collect()
                    })
                    .collect();
                ScoreStream::new(
                    format!("q{k}"),
                    ids.clone(),
                    c,
                    rows,
                    ScoreKind::Probabilities,
                )
                .unwrap()
                .0
                .into()
            })
            .collect();
        let f = Fusion::new(ids, labels, streams).unwrap();
        for objective in [Objective::Top1, Objective::MeanClassAccuracy] {
            let ev = Evaluator::new(&f, objective).unwrap();
            let (mut fin, mut hits) = (vec![0.0; ev.len()], vec![0; c]);
            let mut prefix = vec![0.0f32; ev.len()];
            for _ in 0..300 {
                let u = random_units(&mut rng, s, 12);
                let w: Vec<f32> = u.iter().map(|&x| weight(x, 12)).collect();
                let canonical = score_weights(&f, &w, objective).unwrap();
                assert_eq!(
                    ev.score_units(&u, 12, &mut fin, &mut hits),
                    canonical,
                    "{u:?}"
                );
                prefix.fill(0.0);
                for (v, &wk) in ev.vals.iter().zip(&w).take(s - 2) {
                    for (d, &p) in prefix.iter_mut().zip(v) {
                        *d += wk * p;
                    }
                }
                let last = ev.score_last_two(
                    &prefix,
                    &ev.vals[s - 2],
                    &ev.vals[s - 1],
                    w[s - 2],
                    w[s - 1],
                    &mut hits,
                );
                assert_eq!(last, canonical, "{u:?}");
            }
        }
    }

    #[test]
    fn pruning_respects_exact_ties() {
        // Exact ties go to the lowest class index, so the label loses each of these clips: pruning a
        // lower-index competitor that merely equals the label (or equals a shadowing class) would be wrong.
        let rows = vec![
            vec![0.5f32, 0.5, 0.0],
            vec![0.3, 0.3, 0.3],
            vec![0.2, 0.5, 0.3],
        ];
        let ids: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mk = |n: &str| -> Stream {
            ScoreStream::new(n, ids.clone(), 3, rows.clone(), ScoreKind::Probabilities)
                .unwrap()
                .0
                .into()
        };
        let f = Fusion::new(
            ids.clone(),
            vec![Some(1), Some(1), Some(1)],
            vec![mk("x"), mk("y")],
        )
        .unwrap();
        for u in [[1u32, 2], [0, 3], [2, 1]] {
            let w: Vec<f32> = u.iter().map(|&x| weight(x, 3)).collect();
            let canonical = score_weights(&f, &w, Objective::Top1).unwrap();
            assert!((canonical - 1.0 / 3.0).abs() < 1e-12, "{canonical}");
            let ev = Evaluator::new(&f, Objective::Top1).unwrap();
            let (mut fin, mut hits) = (vec![0.0; ev.len()], vec![0; 3]);
            assert_eq!(
                ev.score_units(&u, 3, &mut fin, &mut hits),
                canonical,
                "{u:?}"
            );
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let f = synthetic(120, 6, &[0.4, 0.3, 0.3, 0.2, 0.35], 11);
        let run = |t: usize| {
            let ctl = Control {
                threads: t,
                ..Control::quiet()
            };
            (
                grid_search(&f, 0.1, Objective::MeanClassAccuracy, &ctl).unwrap(),
                coordinate_ascent(&f, 0.05, 6, 42, Objective::Top1, &ctl).unwrap(),
            )
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(5));
    }

    #[test]
    fn coordinate_ascent_is_seeded_and_reaches_a_local_optimum() {
        let f = synthetic(200, 8, &[0.6, 0.3, 0.45, 0.2], 4);
        let a = coordinate_ascent(&f, 0.05, 5, 7, Objective::Top1, &Control::quiet()).unwrap();
        let b = coordinate_ascent(&f, 0.05, 5, 7, Objective::Top1, &Control::quiet()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.score,
            score_weights(&f, &a.weights, Objective::Top1).unwrap()
        );
        let grid = grid_search(&f, 0.05, Objective::Top1, &Control::quiet()).unwrap();
        assert!(a.score <= grid.score);
        assert!(
            a.score >= grid.score - 0.03,
            "ascent {} vs grid {}",
            a.score,
            grid.score
        );
        assert!(a.score >= score_weights(&f, &[0.25; 4], Objective::Top1).unwrap());
        // No single-unit move improves on the result.
        let ev = Evaluator::new(&f, Objective::Top1).unwrap();
        let (mut fin, mut hits) = (vec![0.0; ev.len()], vec![0; 8]);
        for from in 0..4 {
            for to in 0..4 {
                if from != to && a.units[from] > 0 {
                    let mut u = a.units.clone();
                    u[from] -= 1;
                    u[to] += 1;
                    assert!(ev.score_units(&u, 20, &mut fin, &mut hits) <= a.score);
                }
            }
        }
    }

    #[test]
    fn random_units_are_valid_and_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut first_nonzero = 0;
        for _ in 0..500 {
            let u = random_units(&mut rng, 5, 20);
            assert_eq!(u.len(), 5);
            assert_eq!(u.iter().sum::<u32>(), 20);
            first_nonzero += usize::from(u[0] > 0);
        }
        // Uniform over compositions: P(u0 > 0) = C(23,3)/C(24,4) = 1 - 4/24 ≈ 0.83.
        assert!((380..=450).contains(&first_nonzero), "{first_nonzero}");
        assert_eq!(uniform_units(3, 10), vec![4, 3, 3]);
    }

    #[test]
    fn tie_break_prefers_closer_to_uniform_then_lexicographic() {
        let c = |score, units: Vec<u32>| Cand {
            score,
            l1: l1_to_uniform(&units, 10),
            units,
        };
        assert_eq!(
            compare(&c(0.5, vec![10, 0]), &c(0.4, vec![5, 5])),
            Ordering::Greater
        );
        assert_eq!(
            compare(&c(0.5, vec![6, 4]), &c(0.5, vec![10, 0])),
            Ordering::Greater
        );
        assert_eq!(
            compare(&c(0.5, vec![4, 6]), &c(0.5, vec![6, 4])),
            Ordering::Greater
        );
        // Two streams that are identical: every split scores the same, so the uniform one must win.
        let s = ScoreStream::new(
            "a",
            vec!["x".into(), "y".into()],
            2,
            vec![vec![0.9, 0.1], vec![0.2, 0.8]],
            ScoreKind::Auto,
        )
        .unwrap()
        .0;
        let mut t = s.clone();
        t.name = "b".into();
        let f = Fusion::new(
            vec!["x".into(), "y".into()],
            vec![Some(0), Some(1)],
            vec![s.into(), t.into()],
        )
        .unwrap();
        let r = grid_search(&f, 0.1, Objective::Top1, &Control::quiet()).unwrap();
        assert_eq!(r.units, vec![5, 5]);
        assert_eq!(r.score, 1.0);
    }

    #[test]
    fn progress_reaches_total_and_cancel_stops() {
        let f = synthetic(60, 5, &[0.5, 0.4, 0.3, 0.3], 3);
        let last = AtomicU64::new(0);
        let calls = AtomicU64::new(0);
        let progress = |d: u64, t: u64| {
            assert_eq!(t, 1771);
            last.fetch_max(d, AtomicOrdering::Relaxed);
            calls.fetch_add(1, AtomicOrdering::Relaxed);
        };
        let cancel = AtomicBool::new(false);
        let ctl = Control {
            threads: 2,
            progress: &progress,
            cancel: &cancel,
        };
        let r = grid_search(&f, 0.05, Objective::Top1, &ctl).unwrap();
        assert_eq!(r.evaluated, 1771);
        assert_eq!(last.load(AtomicOrdering::Relaxed), 1771);
        assert!(calls.load(AtomicOrdering::Relaxed) > 1);

        let cancel = AtomicBool::new(false);
        let stop_early = |d: u64, _t: u64| {
            if d > 100 {
                cancel.store(true, AtomicOrdering::Relaxed);
            }
        };
        let ctl = Control {
            threads: 1,
            progress: &stop_early,
            cancel: &cancel,
        };
        assert!(matches!(
            grid_search(&f, 0.05, Objective::Top1, &ctl),
            Err(EnsembleError::Cancelled)
        ));
        assert!(matches!(
            coordinate_ascent(&f, 0.05, 3, 1, Objective::Top1, &ctl),
            Err(EnsembleError::Cancelled)
        ));
    }

    #[test]
    fn stratified_folds_partition_and_balance() {
        let labels: Vec<Option<u32>> = (0..103)
            .map(|i| {
                if i % 10 == 9 {
                    None
                } else {
                    Some((i % 4) as u32)
                }
            })
            .collect();
        let folds = stratified_folds(&labels, 5, 1).unwrap();
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        let expected: Vec<usize> = (0..103).filter(|&i| labels[i].is_some()).collect();
        assert_eq!(all, expected);
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        for c in 0..4u32 {
            let per: Vec<usize> = folds
                .iter()
                .map(|f| f.iter().filter(|&&r| labels[r] == Some(c)).count())
                .collect();
            assert!(
                per.iter().max().unwrap() - per.iter().min().unwrap() <= 1,
                "class {c}: {per:?}"
            );
        }
        assert_eq!(folds, stratified_folds(&labels, 5, 1).unwrap());
        assert_ne!(folds, stratified_folds(&labels, 5, 2).unwrap());
        assert!(stratified_folds(&labels, 1, 1).is_err());
    }

    #[test]
    fn kfold_reports_an_honest_estimate_and_warns_on_noise() {
        // Pure-noise streams: any tuned gain over chance is fitted noise and must be flagged.
        let f = synthetic(150, 4, &[0.0, 0.0, 0.0, 0.0], 21);
        let r = kfold(
            &f,
            5,
            9,
            &Method::Grid { step: 0.1 },
            Objective::Top1,
            &Control::quiet(),
        )
        .unwrap();
        assert_eq!(r.fold_heldout_scores.len(), 5);
        assert_eq!(r.fold_sizes.iter().sum::<usize>(), 150);
        assert!(r.tuned.score > r.heldout_mean, "{r:?}");
        for (tr, ho) in r.fold_train_scores.iter().zip(&r.fold_heldout_scores) {
            assert!((0.0..=1.0).contains(ho));
            assert!(*tr >= 0.0);
        }
        let w = r.warning.as_deref().expect("noise must be flagged");
        assert!(w.contains("held-out estimate"), "{w}");
        let again = kfold(
            &f,
            5,
            9,
            &Method::Grid { step: 0.1 },
            Objective::Top1,
            &Control::quiet(),
        )
        .unwrap();
        assert_eq!(r, again);
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.2909944487358056).abs() < 1e-15);
    }

    #[test]
    fn out_of_sample_rows_use_their_folds_weights() {
        let f = synthetic(90, 5, &[0.6, 0.2, 0.4], 12);
        let r = kfold(
            &f,
            3,
            5,
            &Method::CoordinateAscent {
                step: 0.1,
                restarts: 2,
                seed: 1,
            },
            Objective::Top1,
            &Control::quiet(),
        )
        .unwrap();
        let oos = out_of_sample_probs(&f, &r).unwrap();
        let c = f.classes();
        for (rows, w) in r.fold_rows.iter().zip(&r.fold_weights) {
            let total: f32 = w.iter().sum();
            let fused = f.fused(w).unwrap();
            for &row in rows {
                for j in 0..c {
                    assert_eq!(oos[row * c + j], fused[row * c + j] / total);
                }
            }
        }
        let q = crate::ensemble::queue::likely_label_errors(&f, &r.tuned.weights, Some(&oos), None)
            .unwrap();
        assert!(q.iter().all(|e| e.explanation.contains("out-of-sample")));
    }

    #[test]
    fn kfold_progress_spans_all_searches() {
        let f = synthetic(80, 4, &[0.6, 0.3, 0.5], 8);
        let max = AtomicU64::new(0);
        let progress = |d: u64, t: u64| {
            assert_eq!(t, 66 * 4);
            max.fetch_max(d, AtomicOrdering::Relaxed);
        };
        let cancel = AtomicBool::new(false);
        let ctl = Control {
            threads: 2,
            progress: &progress,
            cancel: &cancel,
        };
        let r = kfold(
            &f,
            3,
            1,
            &Method::Grid { step: 0.1 },
            Objective::MeanClassAccuracy,
            &ctl,
        )
        .unwrap();
        assert_eq!(max.load(AtomicOrdering::Relaxed), 66 * 4);
        assert!(r.tuned.score >= r.uniform_score);
    }
}
