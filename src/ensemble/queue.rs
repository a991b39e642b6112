//! Ranked lists of clips worth a second look, each entry explaining its number.
//!
//! Every list is sorted by its score (direction per list) and then by clip id, so the same inputs
//! always give the same order. Fused scores are divided by the sum of the weights so the numbers
//! shown are probabilities whatever the weights' scale.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::fusion::Fusion;
use super::metrics;
use super::stream::{EnsembleError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub clip_id: String,
    pub score: f64,
    pub explanation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueKind {
    Margin,
    Disagreement,
    LabelError,
    ConfidentMistake,
}

/// Dispatches to one of the rankings; `out_of_sample` is only used by `LabelError`.
pub fn rank(
    kind: QueueKind,
    fusion: &Fusion,
    weights: &[f32],
    out_of_sample: Option<&[f32]>,
    class_names: Option<&[String]>,
) -> Result<Vec<QueueEntry>> {
    match kind {
        QueueKind::Margin => smallest_margin(fusion, weights, class_names),
        QueueKind::Disagreement => modality_disagreement(fusion, weights, class_names),
        QueueKind::LabelError => likely_label_errors(fusion, weights, out_of_sample, class_names),
        QueueKind::ConfidentMistake => confident_mistakes(fusion, weights, class_names),
    }
}

fn class_name(names: Option<&[String]>, c: usize) -> String {
    match names.and_then(|n| n.get(c)) {
        Some(n) => n.clone(),
        None => format!("class {c}"),
    }
}

/// Fused scores as probabilities (f64, divided by Σ weights) plus the argmax of the raw fused sum,
/// which is what `Fusion::predict` returns.
fn fused_probs(fusion: &Fusion, weights: &[f32]) -> Result<(Vec<f64>, Vec<u32>)> {
    let fused = fusion.fused(weights)?;
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    if total <= 0.0 {
        return Err(EnsembleError::Weights(format!(
            "weights sum to {total}; queues need a positive total"
        )));
    }
    let pred = metrics::argmax_rows(&fused, fusion.classes());
    Ok((fused.iter().map(|&v| f64::from(v) / total).collect(), pred))
}

/// Best class other than `skip` (first index on ties).
fn best_other(row: &[f64], skip: usize) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (j, &v) in row.iter().enumerate() {
        if j != skip && best.is_none_or(|b| v > row[b]) {
            best = Some(j);
        }
    }
    best
}

fn sort_entries(entries: &mut [QueueEntry], descending: bool) {
    entries.sort_by(|a, b| {
        let o = a.score.total_cmp(&b.score);
        let o = if descending { o.reverse() } else { o };
        o.then_with(|| a.clip_id.cmp(&b.clip_id))
    });
}

/// Smallest ensemble margin (top-1 minus top-2 fused probability) first; all clips.
pub fn smallest_margin(
    fusion: &Fusion,
    weights: &[f32],
    class_names: Option<&[String]>,
) -> Result<Vec<QueueEntry>> {
    let c = fusion.classes();
    let (probs, pred) = fused_probs(fusion, weights)?;
    let mut out = Vec::with_capacity(fusion.n_clips());
    for (i, (row, &p)) in probs.chunks_exact(c).zip(&pred).enumerate() {
        let p = p as usize;
        let label = fusion.labels()[i];
        let (margin, text) = match best_other(row, p) {
            Some(q) => (
                row[p] - row[q],
                format!(
                    "margin {:.3}: {} {:.3} vs {} {:.3}",
                    row[p] - row[q],
                    class_name(class_names, p),
                    row[p],
                    class_name(class_names, q),
                    row[q]
                ),
            ),
            None => (
                row[p],
                format!("single class {}", class_name(class_names, p)),
            ),
        };
        let text = match label {
            Some(l) => format!("{text}; labelled {}", class_name(class_names, l as usize)),
            None => text,
        };
        out.push(QueueEntry {
            clip_id: fusion.clip_ids()[i].clone(),
            score: margin,
            explanation: text,
        });
    }
    sort_entries(&mut out, false);
    Ok(out)
}

/// Clips where streams vote against the ensemble: most dissenting streams first, then the higher
/// entropy of the votes. `score = dissenters + 0.5 · entropy / log2(streams)`, so the integer part
/// is the count and the fraction (< 1) orders equal counts by entropy. Only clips with a dissenter.
pub fn modality_disagreement(
    fusion: &Fusion,
    weights: &[f32],
    class_names: Option<&[String]>,
) -> Result<Vec<QueueEntry>> {
    let c = fusion.classes();
    let s = fusion.n_streams();
    let (_, pred) = fused_probs(fusion, weights)?;
    let votes: Vec<Vec<u32>> = (0..s)
        .map(|k| metrics::argmax_rows(fusion.stream_probs(k), c))
        .collect();
    let max_entropy = (s as f64).log2();
    let mut out = Vec::new();
    let mut counts = vec![0usize; c];
    for (i, &e) in pred.iter().enumerate() {
        counts.fill(0);
        let mut against = Vec::new();
        for (k, v) in votes.iter().enumerate() {
            counts[v[i] as usize] += 1;
            if v[i] != e {
                against.push(format!(
                    "{}: {}",
                    fusion.stream_names()[k],
                    class_name(class_names, v[i] as usize)
                ));
            }
        }
        if against.is_empty() {
            continue;
        }
        let entropy: f64 = counts
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| {
                let p = n as f64 / s as f64;
                -p * p.log2()
            })
            .sum();
        let frac = if max_entropy > 0.0 {
            0.5 * entropy / max_entropy
        } else {
            0.0
        };
        out.push(QueueEntry {
            clip_id: fusion.clip_ids()[i].clone(),
            score: against.len() as f64 + frac,
            explanation: format!(
                "{} of {s} streams vote against the ensemble's {} ({}); vote entropy {:.2} bits",
                against.len(),
                class_name(class_names, e as usize),
                against.join(", "),
                entropy
            ),
        });
    }
    sort_entries(&mut out, true);
    Ok(out)
}

/// Likely label errors in the confident-learning sense (Northcutt, Jiang & Chuang 2021, "Confident
/// Learning"; cleanlab's per-class thresholds and normalized margin).
///
/// Threshold `t_j` = mean probability of class j over clips labelled j. A labelled clip is a
/// candidate when its label's probability is below `t_label` and some other class k has
/// `p_k >= t_k`; k is the most probable such class and the score is `p_k − p_label`, largest first.
/// Pass `out_of_sample` (`[N, classes]`, rows in the fusion's clip order) when available: scores from
/// models that saw a clip's label in training understate its label errors. Classes with no labelled
/// clip get an infinite threshold (no evidence to call anything confidently that class).
pub fn likely_label_errors(
    fusion: &Fusion,
    weights: &[f32],
    out_of_sample: Option<&[f32]>,
    class_names: Option<&[String]>,
) -> Result<Vec<QueueEntry>> {
    let c = fusion.classes();
    let probs: Vec<f64> = match out_of_sample {
        Some(p) => {
            if p.len() != fusion.n_clips() * c {
                return Err(EnsembleError::InvalidArgument(format!(
                    "out-of-sample scores have {} values, expected {} clips x {c} classes",
                    p.len(),
                    fusion.n_clips()
                )));
            }
            p.iter().map(|&v| f64::from(v)).collect()
        }
        None => fused_probs(fusion, weights)?.0,
    };
    let source = if out_of_sample.is_some() {
        "out-of-sample"
    } else {
        "fused"
    };
    let mut sum = vec![0.0f64; c];
    let mut count = vec![0u64; c];
    for (row, l) in probs.chunks_exact(c).zip(fusion.labels()) {
        if let Some(l) = *l {
            sum[l as usize] += row[l as usize];
            count[l as usize] += 1;
        }
    }
    if count.iter().all(|&n| n == 0) {
        return Err(EnsembleError::NoLabels);
    }
    let thresholds: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(&s, &n)| if n == 0 { f64::INFINITY } else { s / n as f64 })
        .collect();
    let mut out = Vec::new();
    for (i, (row, l)) in probs.chunks_exact(c).zip(fusion.labels()).enumerate() {
        let Some(y) = *l else { continue };
        let y = y as usize;
        if row[y] >= thresholds[y] {
            continue;
        }
        let mut other: Option<usize> = None;
        for k in (0..c).filter(|&k| k != y && row[k] >= thresholds[k]) {
            if other.is_none_or(|o| row[k] > row[o]) {
                other = Some(k);
            }
        }
        let Some(k) = other else { continue };
        let margin = row[k] - row[y];
        out.push(QueueEntry {
            clip_id: fusion.clip_ids()[i].clone(),
            score: margin,
            explanation: format!(
                "labelled {} with {source} p {:.3} < its class threshold {:.3}; {} p {:.3} >= its threshold {:.3}; margin {:.3}",
                class_name(class_names, y),
                row[y],
                thresholds[y],
                class_name(class_names, k),
                row[k],
                thresholds[k],
                margin
            ),
        });
    }
    sort_entries(&mut out, true);
    Ok(out)
}

/// Misclassified labelled clips, most confident prediction first.
pub fn confident_mistakes(
    fusion: &Fusion,
    weights: &[f32],
    class_names: Option<&[String]>,
) -> Result<Vec<QueueEntry>> {
    let c = fusion.classes();
    let (probs, pred) = fused_probs(fusion, weights)?;
    let mut out = Vec::new();
    for (i, ((row, &p), l)) in probs
        .chunks_exact(c)
        .zip(&pred)
        .zip(fusion.labels())
        .enumerate()
    {
        let Some(y) = *l else { continue };
        let (p, y) = (p as usize, y as usize);
        if p == y {
            continue;
        }
        let rank = 1 + row
            .iter()
            .filter(|&&v| v.partial_cmp(&row[y]) == Some(Ordering::Greater))
            .count();
        out.push(QueueEntry {
            clip_id: fusion.clip_ids()[i].clone(),
            score: row[p],
            explanation: format!(
                "predicted {} with p {:.3}; label {} has p {:.3} (rank {rank})",
                class_name(class_names, p),
                row[p],
                class_name(class_names, y),
                row[y]
            ),
        });
    }
    sort_entries(&mut out, true);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::stream::{ScoreKind, ScoreStream, Stream};

    fn stream(name: &str, rows: Vec<Vec<f32>>) -> Stream {
        let ids = (0..rows.len()).map(|i| format!("c{i}")).collect();
        ScoreStream::new(name, ids, 3, rows, ScoreKind::Probabilities)
            .unwrap()
            .0
            .into()
    }

    fn names() -> Vec<String> {
        vec![
            "touch chin".into(),
            "touch face".into(),
            "scratch head".into(),
        ]
    }

    /// Four clips, three streams, three classes, hand-checkable numbers.
    fn fixture() -> Fusion {
        let a = stream(
            "rgb",
            vec![
                vec![0.5, 0.4, 0.1],
                vec![0.8, 0.1, 0.1],
                vec![0.1, 0.2, 0.7],
                vec![0.3, 0.3, 0.4],
            ],
        );
        let b = stream(
            "pose",
            vec![
                vec![0.3, 0.6, 0.1],
                vec![0.7, 0.2, 0.1],
                vec![0.2, 0.7, 0.1],
                vec![0.3, 0.3, 0.4],
            ],
        );
        let c = stream(
            "flow",
            vec![
                vec![0.6, 0.3, 0.1],
                vec![0.9, 0.05, 0.05],
                vec![0.1, 0.1, 0.8],
                vec![0.3, 0.3, 0.4],
            ],
        );
        let ids = (0..4).map(|i| format!("c{i}")).collect();
        Fusion::new(ids, vec![Some(0), Some(1), Some(2), None], vec![a, b, c]).unwrap()
    }

    #[test]
    fn margin_queue_orders_by_margin_then_id() {
        let f = fixture();
        let q = smallest_margin(&f, &[1.0, 1.0, 1.0], Some(&names())).unwrap();
        let ids: Vec<&str> = q.iter().map(|e| e.clip_id.as_str()).collect();
        // Fused (÷3): c0 [.467 .433 .1] m .033; c1 [.8 .117 .083] m .683; c2 [.133 .333 .533] m .2; c3 [.3 .3 .4] m .1.
        assert_eq!(ids, vec!["c0", "c3", "c2", "c1"]);
        assert!((q[0].score - 0.1 / 3.0).abs() < 1e-6, "{}", q[0].score);
        assert_eq!(
            q[0].explanation,
            "margin 0.033: touch chin 0.467 vs touch face 0.433; labelled touch chin"
        );
        assert_eq!(
            q[1].explanation,
            "margin 0.100: scratch head 0.400 vs touch chin 0.300"
        );
        // Weights scaled by 2 give the same probabilities.
        let q2 = smallest_margin(&f, &[2.0, 2.0, 2.0], Some(&names())).unwrap();
        assert_eq!(q2[0].explanation, q[0].explanation);
        assert!(smallest_margin(&f, &[0.0, 0.0, 0.0], None).is_err());
    }

    #[test]
    fn disagreement_counts_dissenters_then_entropy() {
        let f = fixture();
        let q = modality_disagreement(&f, &[1.0, 1.0, 1.0], None).unwrap();
        // c0: ensemble 0, pose votes 1 -> 1 dissenter; c2: ensemble 2, pose votes 1 -> 1; ties by id.
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].clip_id, "c0");
        assert_eq!(q[1].clip_id, "c2");
        let h = -(2.0f64 / 3.0) * (2.0f64 / 3.0).log2() - (1.0 / 3.0) * (1.0f64 / 3.0).log2();
        assert!((q[0].score - (1.0 + 0.5 * h / 3f64.log2())).abs() < 1e-12);
        assert_eq!(
            q[0].explanation,
            "1 of 3 streams vote against the ensemble's class 0 (pose: class 1); vote entropy 0.92 bits"
        );
        // Weight on pose alone: pose is the ensemble, rgb and flow dissent on c0 and c2.
        let q = modality_disagreement(&f, &[0.0, 1.0, 0.0], None).unwrap();
        assert_eq!(q[0].score.floor(), 2.0);
    }

    #[test]
    fn label_errors_follow_confident_learning_thresholds() {
        // With one clip per class every threshold equals that clip's own label probability, so
        // nothing is below its threshold and nothing is flagged.
        let oos: Vec<f32> = vec![0.7, 0.2, 0.1, 0.6, 0.3, 0.1, 0.8, 0.1, 0.1, 0.3, 0.3, 0.4];
        let f = fixture();
        let q = likely_label_errors(&f, &[1.0; 3], Some(&oos), Some(&names())).unwrap();
        assert!(q.is_empty(), "{q:?}");
        assert!(likely_label_errors(&f, &[1.0; 3], Some(&oos[..6]), None).is_err());

        // Two clips per class: t0 = (.9 + .2) / 2 = .55, t1 = (.8 + .6) / 2 = .7, t2 = (.4 + .8) / 2 = .6.
        let rows = vec![
            vec![0.9, 0.05, 0.05], // label 0
            vec![0.2, 0.75, 0.05], // label 0: .2 < t0 and class 1 .75 >= t1 -> candidate, margin .55
            vec![0.1, 0.8, 0.1],   // label 1
            vec![0.1, 0.6, 0.3],   // label 1: .6 < t1, but no other class reaches its threshold
            vec![0.5, 0.1, 0.4],   // label 2: .4 < t2, class 0 .5 < t0 -> not a candidate
            vec![0.1, 0.1, 0.8],   // label 2
        ];
        let ids: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
        let s = ScoreStream::new("m", ids.clone(), 3, rows, ScoreKind::Probabilities)
            .unwrap()
            .0;
        let labels = vec![Some(0), Some(0), Some(1), Some(1), Some(2), Some(2)];
        let f = Fusion::new(ids, labels, vec![s.into()]).unwrap();
        let q = likely_label_errors(&f, &[1.0], None, Some(&names())).unwrap();
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].clip_id, "d1");
        assert!((q[0].score - 0.55).abs() < 1e-6);
        assert_eq!(
            q[0].explanation,
            "labelled touch chin with fused p 0.200 < its class threshold 0.550; touch face p 0.750 >= its threshold 0.700; margin 0.550"
        );
    }

    #[test]
    fn confident_mistakes_rank_by_predicted_probability() {
        let f = fixture();
        // Equal weights: c0 right (0), c1 wrong (label 1, pred 0, p .8), c2 right (2).
        let q = confident_mistakes(&f, &[1.0, 1.0, 1.0], Some(&names())).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].clip_id, "c1");
        assert!((q[0].score - 0.8).abs() < 1e-6);
        assert_eq!(
            q[0].explanation,
            "predicted touch chin with p 0.800; label touch face has p 0.117 (rank 2)"
        );
        // Pose only: c0 wrong (pred 1, .6), c1 wrong (pred 0, .7), c2 wrong (pred 1, .7) -> ties by id.
        let q = rank(
            QueueKind::ConfidentMistake,
            &f,
            &[0.0, 1.0, 0.0],
            None,
            None,
        )
        .unwrap();
        let ids: Vec<&str> = q.iter().map(|e| e.clip_id.as_str()).collect();
        assert_eq!(ids, vec!["c1", "c2", "c0"]);
    }
}
