//! Weighted late fusion of stream probabilities, from scratch and incrementally.
//!
//! Reproduces MM-Gesture `ensemble/ensemble.py`: `pred = argmax(Σ weight · probs)`.

use std::borrow::Borrow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::metrics;
use super::stream::{CompositeStream, EnsembleError, Result, ScoreStream, Stream};

/// Streams aligned on one fixed clip list, with optional labels.
#[derive(Debug, Clone)]
pub struct Fusion {
    clip_ids: Vec<String>,
    labels: Vec<Option<u32>>,
    classes: usize,
    names: Vec<String>,
    /// One `[N, classes]` matrix per stream, rows in `clip_ids` order.
    mats: Vec<Vec<f32>>,
}

impl Fusion {
    pub fn new(
        clip_ids: Vec<String>,
        labels: Vec<Option<u32>>,
        streams: Vec<Stream>,
    ) -> Result<Self> {
        Self::from_streams(clip_ids, labels, &streams)
    }

    /// As `new`, borrowing the streams: only their aligned rows are kept.
    pub fn from_streams(
        clip_ids: Vec<String>,
        labels: Vec<Option<u32>>,
        streams: &[Stream],
    ) -> Result<Self> {
        let first = streams.first().ok_or_else(|| {
            EnsembleError::InvalidArgument("fusion needs at least one stream".into())
        })?;
        let classes = first.classes();
        if labels.len() != clip_ids.len() {
            return Err(EnsembleError::InvalidArgument(format!(
                "{} labels for {} clips",
                labels.len(),
                clip_ids.len()
            )));
        }
        let mut seen = HashSet::new();
        for id in &clip_ids {
            if !seen.insert(id.as_str()) {
                return Err(EnsembleError::DuplicateClip {
                    stream: "(fusion clip list)".into(),
                    clip: id.clone(),
                });
            }
        }
        for (id, l) in clip_ids.iter().zip(&labels) {
            if let Some(l) = *l {
                if l as usize >= classes {
                    return Err(EnsembleError::LabelOutOfRange {
                        clip: id.clone(),
                        label: l,
                        classes,
                    });
                }
            }
        }
        let mut names = Vec::with_capacity(streams.len());
        let mut mats = Vec::with_capacity(streams.len());
        for s in streams {
            if s.classes() != classes {
                return Err(EnsembleError::ClassCount {
                    stream: s.name().to_string(),
                    got: s.classes(),
                    expected: classes,
                });
            }
            if names.iter().any(|n| n == s.name()) {
                return Err(EnsembleError::InvalidArgument(format!(
                    "two streams are named `{}`",
                    s.name()
                )));
            }
            names.push(s.name().to_string());
            mats.push(s.aligned(&clip_ids)?);
        }
        Ok(Fusion {
            clip_ids,
            labels,
            classes,
            names,
            mats,
        })
    }

    pub fn clip_ids(&self) -> &[String] {
        &self.clip_ids
    }
    pub fn labels(&self) -> &[Option<u32>] {
        &self.labels
    }
    pub fn classes(&self) -> usize {
        self.classes
    }
    pub fn n_clips(&self) -> usize {
        self.clip_ids.len()
    }
    pub fn n_streams(&self) -> usize {
        self.mats.len()
    }
    pub fn stream_names(&self) -> &[String] {
        &self.names
    }
    pub fn stream_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
    /// The aligned `[N, classes]` matrix of stream `s`.
    pub fn stream_probs(&self, s: usize) -> &[f32] {
        &self.mats[s]
    }

    pub fn check_weights(&self, weights: &[f32]) -> Result<()> {
        if weights.len() != self.mats.len() {
            return Err(EnsembleError::Weights(format!(
                "{} weights for {} streams",
                weights.len(),
                self.mats.len()
            )));
        }
        if let Some((i, w)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(EnsembleError::Weights(format!(
                "weight of `{}` is {w}",
                self.names[i]
            )));
        }
        Ok(())
    }

    /// Replaces stream `s` by `stream`, re-aligning only that one: what an inner weight of a
    /// composite moving costs, instead of rebuilding every stream's matrix. The name and class
    /// count must stay, so weights and results keep meaning the same term.
    pub fn set_stream(&mut self, s: usize, stream: &Stream) -> Result<()> {
        let Some(name) = self.names.get(s) else {
            return Err(EnsembleError::InvalidArgument(format!(
                "stream index {s} out of range ({} streams)",
                self.names.len()
            )));
        };
        if stream.name() != name {
            return Err(EnsembleError::InvalidArgument(format!(
                "stream {s} is `{name}`, not `{}`",
                stream.name()
            )));
        }
        if stream.classes() != self.classes {
            return Err(EnsembleError::ClassCount {
                stream: name.clone(),
                got: stream.classes(),
                expected: self.classes,
            });
        }
        self.mats[s] = stream.aligned(&self.clip_ids)?;
        Ok(())
    }

    /// Σ_s weights[s] · P_s, accumulated in stream order in f32. Every other path (incremental
    /// resync, the grid search) reproduces this exact operation order so that results agree bitwise.
    pub fn fused(&self, weights: &[f32]) -> Result<Vec<f32>> {
        self.check_weights(weights)?;
        let mut acc = vec![0.0f32; self.clip_ids.len() * self.classes];
        self.fuse_into(weights, &mut acc);
        Ok(acc)
    }

    fn fuse_into(&self, weights: &[f32], acc: &mut [f32]) {
        acc.fill(0.0);
        for (m, &w) in self.mats.iter().zip(weights) {
            for (a, &p) in acc.iter_mut().zip(m) {
                *a += w * p;
            }
        }
    }

    /// Argmax class per clip (ties go to the lowest class index, as `numpy.argmax`).
    pub fn predict(&self, weights: &[f32]) -> Result<Vec<u32>> {
        Ok(metrics::argmax_rows(&self.fused(weights)?, self.classes))
    }

    /// A fusion over a subset of the clips (rows in the given order), for k-fold splits.
    pub fn subset(&self, rows: &[usize]) -> Fusion {
        let c = self.classes;
        Fusion {
            clip_ids: rows.iter().map(|&r| self.clip_ids[r].clone()).collect(),
            labels: rows.iter().map(|&r| self.labels[r]).collect(),
            classes: c,
            names: self.names.clone(),
            mats: self
                .mats
                .iter()
                .map(|m| {
                    rows.iter()
                        .flat_map(|&r| m[r * c..(r + 1) * c].iter().copied())
                        .collect()
                })
                .collect(),
        }
    }

    /// Indices of the clips that have a label.
    pub fn labelled_rows(&self) -> Vec<usize> {
        (0..self.labels.len())
            .filter(|&i| self.labels[i].is_some())
            .collect()
    }

    pub fn incremental(&self, weights: &[f32]) -> Result<IncrementalFusion<&Fusion>> {
        IncrementalFusion::new(self, weights)
    }
}

/// Every this many incremental changes the fused matrix is re-summed from scratch: adding and
/// removing `w·P` leaves rounding residue that would otherwise grow with the number of changes. At
/// 256 the re-sum adds under 1 µs per change on average (measured by `ensemble_bench`).
pub const DEFAULT_RESYNC_EVERY: u32 = 256;

/// Keeps the fused matrix and its per-clip argmax; one weight change costs one pass over one stream.
///
/// Generic over how it holds the `Fusion` (`&Fusion`, `Arc<Fusion>`, `Fusion`) so the app can own one.
#[derive(Debug, Clone)]
pub struct IncrementalFusion<B: Borrow<Fusion>> {
    fusion: B,
    weights: Vec<f32>,
    fused: Vec<f32>,
    pred: Vec<u32>,
    /// Per class: labelled clips of that class currently predicted correctly.
    class_hits: Vec<u64>,
    class_support: Vec<u64>,
    updates_since_resync: u32,
    resync_every: u32,
}

impl<B: Borrow<Fusion>> IncrementalFusion<B> {
    pub fn new(fusion: B, weights: &[f32]) -> Result<Self> {
        let f = fusion.borrow();
        f.check_weights(weights)?;
        let c = f.classes;
        let mut class_support = vec![0u64; c];
        for l in f.labels.iter().flatten() {
            class_support[*l as usize] += 1;
        }
        let n = f.n_clips();
        let mut me = IncrementalFusion {
            weights: weights.to_vec(),
            fused: vec![0.0; n * c],
            pred: vec![0; n],
            class_hits: vec![0; c],
            class_support,
            updates_since_resync: 0,
            resync_every: DEFAULT_RESYNC_EVERY,
            fusion,
        };
        me.resync();
        Ok(me)
    }

    pub fn fusion(&self) -> &Fusion {
        self.fusion.borrow()
    }
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
    pub fn fused(&self) -> &[f32] {
        &self.fused
    }
    pub fn predictions(&self) -> &[u32] {
        &self.pred
    }

    /// 0 disables automatic resyncs.
    pub fn set_resync_every(&mut self, n: u32) {
        self.resync_every = n;
    }

    /// Recomputes the fused matrix from scratch (bitwise equal to `Fusion::fused`).
    pub fn resync(&mut self) {
        let f = self.fusion.borrow();
        f.fuse_into(&self.weights, &mut self.fused);
        let c = f.classes;
        for (p, row) in self.pred.iter_mut().zip(self.fused.chunks_exact(c)) {
            *p = metrics::argmax(row);
        }
        self.class_hits.fill(0);
        for (p, l) in self.pred.iter().zip(&f.labels) {
            if let Some(l) = *l {
                if *p == l {
                    self.class_hits[l as usize] += 1;
                }
            }
        }
        self.updates_since_resync = 0;
    }

    pub fn set_weight_by_name(&mut self, name: &str, w: f32) -> Result<()> {
        let s = self
            .fusion
            .borrow()
            .stream_index(name)
            .ok_or_else(|| EnsembleError::UnknownStream(name.to_string()))?;
        self.set_weight(s, w)
    }

    /// Adds `(w − w_old)·P_stream` to the fused matrix and re-takes each clip's argmax in the same pass.
    pub fn set_weight(&mut self, stream: usize, w: f32) -> Result<()> {
        let f = self.fusion.borrow();
        if stream >= f.mats.len() {
            return Err(EnsembleError::InvalidArgument(format!(
                "stream index {stream} out of range ({} streams)",
                f.mats.len()
            )));
        }
        if !w.is_finite() {
            return Err(EnsembleError::Weights(format!(
                "weight of `{}` is {w}",
                f.names[stream]
            )));
        }
        let delta = w - self.weights[stream];
        self.weights[stream] = w;
        if delta == 0.0 {
            return Ok(());
        }
        self.updates_since_resync += 1;
        if self.resync_every != 0 && self.updates_since_resync >= self.resync_every {
            self.resync();
            return Ok(());
        }
        let c = f.classes;
        let rows = self
            .fused
            .chunks_exact_mut(c)
            .zip(f.mats[stream].chunks_exact(c));
        for (((row, p), pred), label) in rows.zip(self.pred.iter_mut()).zip(&f.labels) {
            let old = *pred as usize;
            // The old winner's new score, rounded exactly as the loop below rounds it.
            let t = row[old] + delta * p[old];
            let mut at_least = 0u32;
            for (a, &x) in row.iter_mut().zip(p) {
                *a += delta * x;
                at_least += u32::from(*a >= t);
            }
            // Usually the old winner is still the only class at or above its score: a branch-free
            // count settles that, and only the rest pay for a full argmax.
            if at_least == 1 {
                continue;
            }
            let new = metrics::argmax(row);
            if new != *pred {
                if let Some(l) = *label {
                    if *pred == l {
                        self.class_hits[l as usize] -= 1;
                    } else if new == l {
                        self.class_hits[l as usize] += 1;
                    }
                }
                *pred = new;
            }
        }
        Ok(())
    }

    /// Top-1 accuracy over the labelled clips; `None` without labels.
    pub fn top1(&self) -> Option<f64> {
        let n: u64 = self.class_support.iter().sum();
        (n > 0).then(|| self.class_hits.iter().sum::<u64>() as f64 / n as f64)
    }

    /// Mean class accuracy (balanced accuracy) over the classes present among the labels.
    pub fn mean_class_accuracy(&self) -> Option<f64> {
        metrics::mean_recall_from_counts(&self.class_hits, &self.class_support)
    }

    /// Largest |incremental − from-scratch| over the fused matrix (a drift diagnostic).
    pub fn drift(&self) -> f32 {
        let fresh = self.fusion.borrow();
        let mut acc = vec![0.0f32; self.fused.len()];
        fresh.fuse_into(&self.weights, &mut acc);
        acc.iter()
            .zip(&self.fused)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
    }
}

/// One weighted term of a preset: a stream, or a composite of named parts with sub-weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetTerm {
    pub name: String,
    pub weight: f32,
    /// `(stream name, sub-weight)`; a single part with sub-weight 1 is the stream itself.
    pub parts: Vec<(String, f32)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub terms: Vec<PresetTerm>,
}

/// Stream names of MM-Gesture's score dumps: the `ensemble/2025/**` directory names in mm-gesture.md §6;
/// `.rgb` / `.pose` are the two heads of an RGBPoseConv3D dump.
pub mod names {
    pub const SWIN_B_RGB: &str = "swin_base";
    pub const SWIN_S_RGB_MA52: &str = "swin_small_trans";
    pub const SWIN_B_TAYLOR: &str = "swin_base_taylor";
    pub const SWIN_B_FLOW: &str = "swin_base_of";
    pub const SWIN_B_DEPTH: &str = "swin_base_depth";
    pub const RGB_J: &str = "p3d_rgb+j";
    pub const RGB_J_RGB: &str = "p3d_rgb+j.rgb";
    pub const RGB_J_POSE: &str = "p3d_rgb+j.pose";
    pub const RGB_L: &str = "p3d_rgb+l_12";
    pub const RGB_L_RGB: &str = "p3d_rgb+l_12.rgb";
    pub const RGB_L_POSE: &str = "p3d_rgb+l_12.pose";
}

/// MM-Gesture's final rule (`ensemble/ensemble.py`): 0.2 per Swin stream, 0.5 per RGBPose model,
/// each RGBPose model being 0.5·rgb head + 0.5·pose head.
pub fn mm_gesture() -> Preset {
    use names::*;
    let single = |n: &str| PresetTerm {
        name: n.to_string(),
        weight: 0.2,
        parts: vec![(n.to_string(), 1.0)],
    };
    let rgbpose = |n: &str, rgb: &str, pose: &str| PresetTerm {
        name: n.to_string(),
        weight: 0.5,
        parts: vec![(rgb.to_string(), 0.5), (pose.to_string(), 0.5)],
    };
    Preset {
        name: "mm-gesture".into(),
        terms: vec![
            single(SWIN_B_RGB),
            single(SWIN_S_RGB_MA52),
            single(SWIN_B_TAYLOR),
            single(SWIN_B_FLOW),
            single(SWIN_B_DEPTH),
            rgbpose(RGB_J, RGB_J_RGB, RGB_J_POSE),
            rgbpose(RGB_L, RGB_L_RGB, RGB_L_POSE),
        ],
    }
}

impl Preset {
    /// The fusion inputs and weights this preset builds from streams looked up by name.
    pub fn apply(&self, available: &[ScoreStream]) -> Result<(Vec<Stream>, Vec<f32>)> {
        let find = |n: &str| {
            available
                .iter()
                .find(|s| s.name == n)
                .ok_or_else(|| EnsembleError::MissingStream {
                    preset: self.name.clone(),
                    stream: n.to_string(),
                })
        };
        let mut streams = Vec::with_capacity(self.terms.len());
        let mut weights = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let stream = match &t.parts[..] {
                [(n, w)] if *w == 1.0 => {
                    let mut s = find(n)?.clone();
                    s.name = t.name.clone();
                    Stream::Single(s)
                }
                parts => {
                    let ps = parts
                        .iter()
                        .map(|(n, w)| find(n).map(|s| (s.clone(), *w)))
                        .collect::<Result<Vec<_>>>()?;
                    Stream::Composite(CompositeStream::new(t.name.clone(), ps)?)
                }
            };
            streams.push(stream);
            weights.push(t.weight);
        }
        Ok((streams, weights))
    }

    /// `apply`, then a `Fusion` on `clip_ids`.
    pub fn fusion(
        &self,
        available: &[ScoreStream],
        clip_ids: Vec<String>,
        labels: Vec<Option<u32>>,
    ) -> Result<(Fusion, Vec<f32>)> {
        let (streams, weights) = self.apply(available)?;
        Ok((Fusion::new(clip_ids, labels, streams)?, weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::stream::ScoreKind;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    pub(crate) fn random_stream(
        rng: &mut ChaCha8Rng,
        name: &str,
        ids: &[String],
        c: usize,
    ) -> ScoreStream {
        let rows: Vec<Vec<f32>> = ids
            .iter()
            .map(|_| (0..c).map(|_| rng.random_range(-3.0f32..3.0)).collect())
            .collect();
        ScoreStream::new(name, ids.to_vec(), c, rows, ScoreKind::Logits)
            .unwrap()
            .0
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i:05}")).collect()
    }

    #[test]
    fn fused_is_weighted_sum_aligned_by_id() {
        let a = ScoreStream::new(
            "a",
            vec!["x".into(), "y".into()],
            2,
            vec![vec![0.9, 0.1], vec![0.3, 0.7]],
            ScoreKind::Auto,
        )
        .unwrap()
        .0;
        let b = ScoreStream::new(
            "b",
            vec!["y".into(), "x".into()],
            2,
            vec![vec![0.5, 0.5], vec![0.0, 1.0]],
            ScoreKind::Auto,
        )
        .unwrap()
        .0;
        let f = Fusion::new(
            vec!["x".into(), "y".into()],
            vec![Some(0), None],
            vec![a.into(), b.into()],
        )
        .unwrap();
        let fused = f.fused(&[1.0, 2.0]).unwrap();
        assert_eq!(fused, vec![0.9, 2.1, 1.3, 1.7]);
        assert_eq!(f.predict(&[1.0, 2.0]).unwrap(), vec![1, 1]);
        assert_eq!(f.predict(&[1.0, 0.0]).unwrap(), vec![0, 1]);
        assert!(matches!(f.fused(&[1.0]), Err(EnsembleError::Weights(_))));
        assert!(f.fused(&[1.0, f32::NAN]).is_err());
    }

    #[test]
    fn fusion_errors_name_the_problem() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = random_stream(&mut rng, "a", &ids(3), 4);
        let b = random_stream(&mut rng, "b", &ids(2), 4);
        let e = Fusion::new(ids(3), vec![None; 3], vec![a.clone().into(), b.into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stream `b`: clip `c00002` is missing (1 of 3 requested clips missing)"
        );
        let e = Fusion::new(ids(3), vec![None, Some(4), None], vec![a.clone().into()]).unwrap_err();
        assert!(matches!(e, EnsembleError::LabelOutOfRange { label: 4, .. }));
        let c = random_stream(&mut rng, "c", &ids(3), 5);
        let e = Fusion::new(ids(3), vec![None; 3], vec![a.into(), c.into()]).unwrap_err();
        assert!(matches!(
            e,
            EnsembleError::ClassCount {
                got: 5,
                expected: 4,
                ..
            }
        ));
    }

    #[test]
    fn incremental_matches_from_scratch_over_many_random_changes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (n, c, s) = (600, 16, 5);
        let clip_ids = ids(n);
        let streams: Vec<Stream> = (0..s)
            .map(|k| random_stream(&mut rng, &format!("s{k}"), &clip_ids, c).into())
            .collect();
        let labels: Vec<Option<u32>> = (0..n)
            .map(|i| (i % 7 != 0).then(|| rng.random_range(0..c as u32)))
            .collect();
        let f = Fusion::new(clip_ids, labels, streams).unwrap();
        let mut inc = f.incremental(&[0.2; 5]).unwrap();
        // Never resync automatically, so drift accumulates over all 3,000 changes.
        inc.set_resync_every(0);
        let mut disagreements_outside_near_ties = 0;
        for step in 0..3000 {
            let k = rng.random_range(0..s);
            inc.set_weight(k, rng.random_range(0.0f32..1.0)).unwrap();
            if step % 100 == 99 {
                let fresh = f.fused(inc.weights()).unwrap();
                let fresh_pred = metrics::argmax_rows(&fresh, c);
                for (i, (a, b)) in inc.predictions().iter().zip(&fresh_pred).enumerate() {
                    if a != b {
                        // A flip is only acceptable when the two top scores are within float noise.
                        let row = &fresh[i * c..(i + 1) * c];
                        let gap = (row[*a as usize] - row[*b as usize]).abs();
                        if gap > 1e-5 {
                            disagreements_outside_near_ties += 1;
                        }
                    }
                }
                let m = metrics::evaluate(&fresh, c, f.labels()).unwrap();
                let drift = inc.drift();
                assert!(drift < 1e-4, "drift {drift}");
                if inc.predictions() == &fresh_pred[..] {
                    assert!((inc.top1().unwrap() - m.top1).abs() < 1e-12);
                    assert!(
                        (inc.mean_class_accuracy().unwrap() - m.mean_class_accuracy).abs() < 1e-12
                    );
                }
            }
        }
        assert_eq!(disagreements_outside_near_ties, 0);
        // After a resync the state is bitwise the from-scratch one.
        inc.resync();
        assert_eq!(inc.fused(), &f.fused(inc.weights()).unwrap()[..]);
        assert_eq!(inc.drift(), 0.0);
        let m = metrics::evaluate(inc.fused(), c, f.labels()).unwrap();
        assert_eq!(inc.top1().unwrap(), m.top1);
    }

    #[test]
    fn incremental_top1_tracks_a_known_flip() {
        let a = ScoreStream::new(
            "a",
            vec!["x".into()],
            2,
            vec![vec![0.8, 0.2]],
            ScoreKind::Auto,
        )
        .unwrap()
        .0;
        let b = ScoreStream::new(
            "b",
            vec!["x".into()],
            2,
            vec![vec![0.1, 0.9]],
            ScoreKind::Auto,
        )
        .unwrap()
        .0;
        let f = Fusion::new(vec!["x".into()], vec![Some(0)], vec![a.into(), b.into()]).unwrap();
        let mut inc = IncrementalFusion::new(std::sync::Arc::new(f), &[1.0, 0.5]).unwrap();
        assert_eq!(inc.top1(), Some(1.0));
        inc.set_weight_by_name("b", 2.0).unwrap();
        assert_eq!(inc.predictions(), &[1]);
        assert_eq!(inc.top1(), Some(0.0));
        assert_eq!(inc.mean_class_accuracy(), Some(0.0));
        inc.set_weight(1, 0.0).unwrap();
        assert_eq!(inc.top1(), Some(1.0));
        assert!(matches!(
            inc.set_weight_by_name("zz", 1.0),
            Err(EnsembleError::UnknownStream(_))
        ));
        assert!(inc.set_weight(5, 1.0).is_err());
    }

    #[test]
    fn automatic_resync_keeps_bitwise_agreement_at_the_boundary() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let clip_ids = ids(50);
        let streams: Vec<Stream> = (0..3)
            .map(|k| random_stream(&mut rng, &format!("s{k}"), &clip_ids, 6).into())
            .collect();
        let f = Fusion::new(clip_ids, vec![None; 50], streams).unwrap();
        let mut inc = f.incremental(&[1.0, 1.0, 1.0]).unwrap();
        inc.set_resync_every(4);
        for i in 0..4 {
            inc.set_weight(i % 3, 0.1 * (i + 1) as f32).unwrap();
        }
        assert_eq!(inc.fused(), &f.fused(inc.weights()).unwrap()[..]);
        assert_eq!(inc.top1(), None);
    }

    /// Scores shaped like MM-Gesture's dumps, fused by numpy with ensemble.py's formula (tools/make_ensemble_fixtures.py).
    #[test]
    fn mm_gesture_preset_reproduces_ensemble_py() {
        #[derive(serde::Deserialize)]
        struct Fx {
            clip_ids: Vec<String>,
            classes: usize,
            streams: std::collections::BTreeMap<String, Vec<Vec<f32>>>,
            fused: Vec<Vec<f64>>,
            pred: Vec<u32>,
        }
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ensemble/mm_gesture_preset.json"
        ))
        .unwrap();
        let fx: Fx = serde_json::from_str(&text).unwrap();
        assert_eq!(fx.streams.len(), 9);
        let available: Vec<ScoreStream> = fx
            .streams
            .iter()
            .map(|(n, rows)| {
                ScoreStream::new(
                    n.clone(),
                    fx.clip_ids.clone(),
                    fx.classes,
                    rows.clone(),
                    ScoreKind::Probabilities,
                )
                .unwrap()
                .0
            })
            .collect();
        let preset = mm_gesture();
        let (f, w) = preset
            .fusion(
                &available,
                fx.clip_ids.clone(),
                vec![None; fx.clip_ids.len()],
            )
            .unwrap();
        assert_eq!(w, vec![0.2, 0.2, 0.2, 0.2, 0.2, 0.5, 0.5]);
        assert_eq!(f.stream_names()[5], names::RGB_J);
        let fused = f.fused(&w).unwrap();
        for (i, row) in fx.fused.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert!(
                    (f64::from(fused[i * fx.classes + c]) - v).abs() < 1e-5,
                    "clip {i} class {c}"
                );
            }
        }
        assert_eq!(f.predict(&w).unwrap(), fx.pred);

        let without: Vec<ScoreStream> = available
            .iter()
            .filter(|s| s.name != names::RGB_L_POSE)
            .cloned()
            .collect();
        let e = preset.apply(&without).unwrap_err();
        assert_eq!(
            e.to_string(),
            "preset `mm-gesture` needs stream `p3d_rgb+l_12.pose`, which is not loaded"
        );
    }

    #[test]
    fn a_moved_inner_weight_fuses_as_a_fresh_build() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let clip_ids = ids(40);
        let a = random_stream(&mut rng, "a", &clip_ids, 5);
        let rgb = random_stream(&mut rng, "m.rgb", &clip_ids, 5);
        let pose = random_stream(&mut rng, "m.pose", &clip_ids, 5);
        let mut c = CompositeStream::new("m", vec![(rgb, 0.5), (pose, 0.5)]).unwrap();
        let labels: Vec<Option<u32>> = (0..40).map(|i| Some(i % 5)).collect();
        let mut f = Fusion::new(
            clip_ids.clone(),
            labels.clone(),
            vec![a.clone().into(), c.clone().into()],
        )
        .unwrap();
        c.set_weight(1, 0.2).unwrap();
        assert!(c.set_weight(0, -0.1).is_err());
        assert!(c.set_weight(2, 0.1).is_err());
        f.set_stream(1, &c.clone().into()).unwrap();
        let fresh = Fusion::new(clip_ids, labels, vec![a.clone().into(), c.into()]).unwrap();
        assert_eq!(
            f.fused(&[0.3, 0.7]).unwrap(),
            fresh.fused(&[0.3, 0.7]).unwrap()
        );
        // Only the same term may take the slot.
        assert!(f.set_stream(1, &a.into()).is_err());
    }

    #[test]
    fn subset_keeps_rows_in_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let clip_ids = ids(5);
        let s = random_stream(&mut rng, "a", &clip_ids, 3);
        let f = Fusion::new(
            clip_ids,
            vec![Some(0), None, Some(2), Some(1), None],
            vec![s.into()],
        )
        .unwrap();
        let sub = f.subset(&[3, 0]);
        assert_eq!(
            sub.clip_ids(),
            &["c00003".to_string(), "c00000".to_string()]
        );
        assert_eq!(sub.labels(), &[Some(1), Some(0)]);
        assert_eq!(sub.stream_probs(0)[..3], f.stream_probs(0)[9..12]);
        assert_eq!(f.labelled_rows(), vec![0, 2, 3]);
    }
}
