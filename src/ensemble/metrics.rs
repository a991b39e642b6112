//! Classification metrics on labelled clips, defined to equal scikit-learn's.
//!
//! Reproduces sklearn.metrics: `accuracy_score`, `top_k_accuracy_score`, `balanced_accuracy_score`,
//! `f1_score(average='macro', zero_division=0)`, `recall_score(average=None, zero_division=0)`,
//! `confusion_matrix`.
//!
//! Ties. Predictions are `argmax` with ties going to the lowest class index (as `numpy.argmax`, which
//! MM-Gesture uses). Top-k follows `top_k_accuracy_score`, which ranks by a stable ascending argsort
//! reversed: among equal scores the *higher* class index ranks first. So on an exact tie top-k with
//! k = 1 can differ from top-1; both equal what numpy/sklearn give on the same scores.

use serde::{Deserialize, Serialize};

use super::stream::{EnsembleError, Result};

/// Index of the largest value, first one on ties (`numpy.argmax`). NaN-free input assumed (streams are validated).
#[inline]
pub fn argmax(row: &[f32]) -> u32 {
    // A plain scan measured faster than lane-wise vector variants for 32 classes (few updates per row).
    let mut m = f32::NEG_INFINITY;
    let mut at = 0u32;
    for (j, &v) in row.iter().enumerate() {
        if v > m {
            m = v;
            at = j as u32;
        }
    }
    at
}

pub fn argmax_rows(scores: &[f32], classes: usize) -> Vec<u32> {
    scores.chunks_exact(classes.max(1)).map(argmax).collect()
}

/// Whether `label` is among the top `k` of `row` under sklearn's `top_k_accuracy_score` ranking.
pub fn in_top_k(row: &[f32], label: u32, k: usize) -> bool {
    let y = label as usize;
    let Some(&s) = row.get(y) else {
        return false;
    };
    let ahead = row
        .iter()
        .enumerate()
        .filter(|&(j, &v)| v > s || (v == s && j > y))
        .count();
    ahead < k
}

/// All metrics on the labelled clips of a score matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Labelled clips evaluated.
    pub n: usize,
    pub classes: usize,
    pub top1: f64,
    pub top5: f64,
    /// Recall per class, 0 where the class has no labelled clip (sklearn `zero_division=0`).
    pub per_class_accuracy: Vec<f64>,
    /// Labelled clips per class; 0 marks a class absent from the labels.
    pub support: Vec<u64>,
    pub mean_class_accuracy: f64,
    pub macro_f1: f64,
    /// `confusion[true][pred]`.
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluates `scores` (`[N, classes]`) against `labels` (None = unlabelled, skipped).
pub fn evaluate(scores: &[f32], classes: usize, labels: &[Option<u32>]) -> Result<Metrics> {
    if classes == 0 || scores.len() != labels.len() * classes {
        return Err(EnsembleError::InvalidArgument(format!(
            "{} scores do not form {} rows of {classes} classes",
            scores.len(),
            labels.len()
        )));
    }
    let mut y_true = Vec::new();
    let mut y_pred = Vec::new();
    let mut top5_hits = 0usize;
    for (row, l) in scores.chunks_exact(classes).zip(labels) {
        let Some(l) = *l else { continue };
        if l as usize >= classes {
            return Err(EnsembleError::InvalidArgument(format!(
                "label {l} out of range for {classes} classes"
            )));
        }
        y_true.push(l);
        y_pred.push(argmax(row));
        top5_hits += usize::from(in_top_k(row, l, 5));
    }
    if y_true.is_empty() {
        return Err(EnsembleError::NoLabels);
    }
    let n = y_true.len();
    let confusion = confusion_matrix(&y_true, &y_pred, classes);
    let support: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
    let hits: Vec<u64> = (0..classes).map(|c| confusion[c][c]).collect();
    let per_class_accuracy = hits
        .iter()
        .zip(&support)
        .map(|(&h, &s)| if s == 0 { 0.0 } else { h as f64 / s as f64 })
        .collect();
    let correct: u64 = hits.iter().sum();
    Ok(Metrics {
        n,
        classes,
        top1: correct as f64 / n as f64,
        top5: top5_hits as f64 / n as f64,
        per_class_accuracy,
        mean_class_accuracy: mean_recall_from_counts(&hits, &support).unwrap_or(0.0),
        macro_f1: macro_f1_from_confusion(&confusion),
        support,
        confusion,
    })
}

/// Top-k accuracy over labelled clips (sklearn `top_k_accuracy_score` with `labels=range(C)`).
pub fn top_k_accuracy(
    scores: &[f32],
    classes: usize,
    labels: &[Option<u32>],
    k: usize,
) -> Result<f64> {
    let mut n = 0usize;
    let mut hits = 0usize;
    for (row, l) in scores.chunks_exact(classes.max(1)).zip(labels) {
        if let Some(l) = *l {
            if l as usize >= classes {
                return Err(EnsembleError::InvalidArgument(format!(
                    "label {l} out of range"
                )));
            }
            n += 1;
            hits += usize::from(in_top_k(row, l, k));
        }
    }
    if n == 0 {
        return Err(EnsembleError::NoLabels);
    }
    Ok(hits as f64 / n as f64)
}

/// `confusion[true][pred]` (sklearn `confusion_matrix` with `labels=range(C)`).
/// Every label and prediction must be `< classes` (`evaluate` checks labels; argmax guarantees predictions).
pub fn confusion_matrix(y_true: &[u32], y_pred: &[u32], classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; classes]; classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        m[t as usize][p as usize] += 1;
    }
    m
}

/// sklearn `balanced_accuracy_score`: mean recall over classes present in y_true.
/// Shared by the metrics, the incremental evaluator and the search so all three agree to the bit.
pub fn mean_recall_from_counts(hits: &[u64], support: &[u64]) -> Option<f64> {
    let mut sum = 0.0f64;
    let mut present = 0usize;
    for (&h, &s) in hits.iter().zip(support) {
        if s > 0 {
            sum += h as f64 / s as f64;
            present += 1;
        }
    }
    (present > 0).then(|| sum / present as f64)
}

/// sklearn `f1_score(average='macro', zero_division=0)`: labels are those in y_true ∪ y_pred.
pub fn macro_f1_from_confusion(confusion: &[Vec<u64>]) -> f64 {
    let mut sum = 0.0f64;
    let mut used = 0usize;
    for (k, row) in confusion.iter().enumerate() {
        let tp = row[k];
        let support = row.iter().sum::<u64>();
        let predicted = confusion.iter().map(|r| r[k]).sum::<u64>();
        if support == 0 && predicted == 0 {
            continue;
        }
        used += 1;
        // F1 = 2tp / (2tp + fp + fn); the denominator is > 0 for every label in y_true ∪ y_pred.
        let denom = (support + predicted) as f64;
        sum += 2.0 * tp as f64 / denom;
    }
    if used == 0 {
        0.0
    } else {
        sum / used as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Case {
        name: String,
        classes: usize,
        labels: Vec<u32>,
        probs: Vec<Vec<f32>>,
        y_pred: Vec<u32>,
        accuracy: f64,
        top5: f64,
        top1_sklearn: f64,
        balanced_accuracy: f64,
        f1_macro: f64,
        confusion: Vec<Vec<u64>>,
        recall: Vec<f64>,
    }

    #[derive(Deserialize)]
    struct Fixtures {
        cases: Vec<Case>,
    }

    fn fixtures() -> Fixtures {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ensemble/sklearn_metrics.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn equals_sklearn_on_every_fixture_case() {
        let fx = fixtures();
        assert!(fx.cases.len() >= 4);
        for case in &fx.cases {
            let c = case.classes;
            let flat: Vec<f32> = case.probs.iter().flatten().copied().collect();
            let labels: Vec<Option<u32>> = case.labels.iter().map(|&l| Some(l)).collect();
            let m = evaluate(&flat, c, &labels).unwrap();
            let name = &case.name;
            assert_eq!(argmax_rows(&flat, c), case.y_pred, "{name}: argmax");
            assert_eq!(m.confusion, case.confusion, "{name}: confusion");
            assert!(
                (m.top1 - case.accuracy).abs() < 1e-9,
                "{name}: top1 {} vs {}",
                m.top1,
                case.accuracy
            );
            assert!(
                (m.top5 - case.top5).abs() < 1e-9,
                "{name}: top5 {} vs {}",
                m.top5,
                case.top5
            );
            let t1 = top_k_accuracy(&flat, c, &labels, 1).unwrap();
            assert!(
                (t1 - case.top1_sklearn).abs() < 1e-9,
                "{name}: top_k(1) {t1} vs {}",
                case.top1_sklearn
            );
            assert!(
                (m.mean_class_accuracy - case.balanced_accuracy).abs() < 1e-9,
                "{name}: balanced {} vs {}",
                m.mean_class_accuracy,
                case.balanced_accuracy
            );
            assert!(
                (m.macro_f1 - case.f1_macro).abs() < 1e-9,
                "{name}: f1 {} vs {}",
                m.macro_f1,
                case.f1_macro
            );
            assert_eq!(m.per_class_accuracy.len(), c);
            for (k, (a, b)) in m.per_class_accuracy.iter().zip(&case.recall).enumerate() {
                assert!((a - b).abs() < 1e-9, "{name}: recall[{k}] {a} vs {b}");
            }
        }
    }

    #[test]
    fn fixture_cases_cover_the_awkward_situations() {
        let fx = fixtures();
        let absent_true = fx.cases.iter().any(|c| {
            let m = evaluate(
                &c.probs.concat(),
                c.classes,
                &c.labels.iter().map(|&l| Some(l)).collect::<Vec<_>>(),
            )
            .unwrap();
            m.support.contains(&0)
        });
        assert!(absent_true, "a case must have classes absent from y_true");
        let pred_absent = fx
            .cases
            .iter()
            .any(|c| c.y_pred.iter().any(|p| !c.labels.contains(p)));
        assert!(
            pred_absent,
            "a case must predict classes absent from y_true"
        );
        let tie_case = fx.cases.iter().find(|c| c.name == "ties").unwrap();
        assert_ne!(
            tie_case.accuracy, tie_case.top1_sklearn,
            "the tie case must separate the two tie rules"
        );
    }

    #[test]
    fn hand_checked_small_example() {
        // y_true = [0, 0, 1, 2], y_pred = [0, 1, 1, 1]; class 3 never appears.
        let scores = [
            0.7, 0.2, 0.1, 0.0, //
            0.3, 0.6, 0.1, 0.0, //
            0.1, 0.8, 0.05, 0.05, //
            0.2, 0.5, 0.3, 0.0,
        ];
        let labels = [Some(0), Some(0), Some(1), Some(2), None];
        let mut scores_v = scores.to_vec();
        scores_v.extend([0.0, 0.0, 0.0, 1.0]);
        let m = evaluate(&scores_v, 4, &labels).unwrap();
        assert_eq!(m.n, 4);
        assert_eq!(m.top1, 0.5);
        assert_eq!(m.per_class_accuracy, vec![0.5, 1.0, 0.0, 0.0]);
        assert_eq!(m.support, vec![2, 1, 1, 0]);
        assert!((m.mean_class_accuracy - 0.5).abs() < 1e-15);
        // F1: class0 2·1/(2+1)=2/3, class1 2·1/(1+3)=1/2, class2 0 → mean over 3 labels.
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-15);
        assert_eq!(m.confusion[0], vec![1, 1, 0, 0]);
        assert_eq!(m.confusion[2], vec![0, 1, 0, 0]);
        assert!(matches!(
            evaluate(&scores_v, 4, &[None; 5]),
            Err(EnsembleError::NoLabels)
        ));
        assert!(evaluate(&scores_v, 3, &labels).is_err());
    }

    #[test]
    fn tie_rules_are_numpy_argmax_and_sklearn_top_k() {
        let row = [0.4f32, 0.4, 0.2];
        assert_eq!(argmax(&row), 0);
        // sklearn: among equal scores the higher index ranks first.
        assert!(in_top_k(&row, 1, 1));
        assert!(!in_top_k(&row, 0, 1));
        assert!(in_top_k(&row, 0, 2));
        assert!(!in_top_k(&row, 2, 2));
        assert!(in_top_k(&row, 2, 3));
        let long: Vec<f32> = (0..37).map(|i| ((i * 7) % 37) as f32).collect();
        assert_eq!(
            argmax(&long),
            long.iter().position(|&v| v == 36.0).unwrap() as u32
        );
    }
}
