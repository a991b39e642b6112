//! Score streams: one model's per-clip class scores, keyed by clip id.
//!
//! Reproduces the inputs of MM-Gesture `ensemble/ensemble.py` (per-clip softmax vectors), but keyed by
//! clip id rather than by position, with validation that names the offending stream and clip.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Everything that can go wrong in the ensemble engine. The main crate wraps this in its own error.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    #[error("stream `{stream}`: duplicate clip id `{clip}`")]
    DuplicateClip { stream: String, clip: String },
    #[error(
        "stream `{stream}`: clip `{clip}` has {got} scores, expected {expected} (one per class)"
    )]
    RowLength {
        stream: String,
        clip: String,
        got: usize,
        expected: usize,
    },
    #[error("stream `{stream}`: clip `{clip}`, class {class}: value {value} is not finite")]
    NonFinite {
        stream: String,
        clip: String,
        class: usize,
        value: f64,
    },
    #[error("stream `{stream}`: clip `{clip}` is missing ({missing} of {wanted} requested clips missing)")]
    MissingClip {
        stream: String,
        clip: String,
        missing: usize,
        wanted: usize,
    },
    #[error("stream `{stream}`: {got} classes, expected {expected}")]
    ClassCount {
        stream: String,
        got: usize,
        expected: usize,
    },
    #[error("stream `{stream}`: {ids} clip ids but {rows} score rows")]
    IdCount {
        stream: String,
        ids: usize,
        rows: usize,
    },
    #[error("stream `{stream}`: {msg}")]
    InvalidStream { stream: String, msg: String },
    #[error("stream `{stream}`, line {line}: {msg}")]
    Parse {
        stream: String,
        line: usize,
        msg: String,
    },
    #[error("npy: {0}")]
    Npy(String),
    #[error("preset `{preset}` needs stream `{stream}`, which is not loaded")]
    MissingStream { preset: String, stream: String },
    #[error("no stream named `{0}`")]
    UnknownStream(String),
    #[error("clip `{clip}`: label {label} is out of range for {classes} classes")]
    LabelOutOfRange {
        clip: String,
        label: u32,
        classes: usize,
    },
    #[error("weights: {0}")]
    Weights(String),
    #[error("no labelled clips to evaluate")]
    NoLabels,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, EnsembleError>;

/// How to interpret the raw values of a score file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoreKind {
    Probabilities,
    Logits,
    /// Logits when any value is outside [0, 1] or any row does not sum to 1 within `ROW_SUM_TOLERANCE`.
    Auto,
}

/// Rows of saved softmax outputs (f32, 12-view averages) sum to 1 only approximately.
pub const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// What `ScoreStream::new` found and did, for the user to see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub requested: ScoreKind,
    /// `Probabilities` or `Logits`: what the values were taken to be.
    pub detected: ScoreKind,
    pub softmax_applied: bool,
    /// Largest |row sum − 1| of the input values, before any softmax.
    pub max_row_sum_error: f64,
    pub min_value: f64,
    pub max_value: f64,
    /// Human-readable remarks (e.g. "probabilities requested but rows do not sum to 1").
    pub notes: Vec<String>,
}

/// One model's class probabilities for a set of clips, row-major `[clip_ids.len(), classes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreStream {
    pub name: String,
    pub clip_ids: Vec<String>,
    pub classes: usize,
    pub probs: Vec<f32>,
}

impl ScoreStream {
    /// Builds a stream from one score vector per clip (the shape pyskl/mmaction2 pickles have).
    pub fn new(
        name: impl Into<String>,
        clip_ids: Vec<String>,
        classes: usize,
        rows: Vec<Vec<f32>>,
        kind: ScoreKind,
    ) -> Result<(Self, Report)> {
        let name = name.into();
        if rows.len() != clip_ids.len() {
            return Err(EnsembleError::IdCount {
                stream: name,
                ids: clip_ids.len(),
                rows: rows.len(),
            });
        }
        let mut flat = Vec::with_capacity(rows.len() * classes);
        for (row, id) in rows.iter().zip(&clip_ids) {
            if row.len() != classes {
                return Err(EnsembleError::RowLength {
                    stream: name,
                    clip: id.clone(),
                    got: row.len(),
                    expected: classes,
                });
            }
            flat.extend_from_slice(row);
        }
        Self::from_flat(name, clip_ids, classes, flat, kind)
    }

    /// Builds a stream from a row-major `[N, classes]` matrix (the shape `.npy` files have).
    pub fn from_flat(
        name: impl Into<String>,
        clip_ids: Vec<String>,
        classes: usize,
        values: Vec<f32>,
        kind: ScoreKind,
    ) -> Result<(Self, Report)> {
        let name = name.into();
        if classes == 0 {
            return Err(EnsembleError::InvalidStream {
                stream: name,
                msg: "zero classes".into(),
            });
        }
        if values.len() != clip_ids.len() * classes {
            return Err(EnsembleError::IdCount {
                stream: name,
                ids: clip_ids.len(),
                rows: values.len() / classes,
            });
        }
        check_unique(&name, &clip_ids)?;
        check_finite(&name, &clip_ids, classes, &values)?;

        let mut max_err = 0.0f64;
        let mut min_v = f64::INFINITY;
        let mut max_v = f64::NEG_INFINITY;
        for row in values.chunks_exact(classes) {
            let mut sum = 0.0f64;
            for &v in row {
                let v = f64::from(v);
                sum += v;
                min_v = min_v.min(v);
                max_v = max_v.max(v);
            }
            max_err = max_err.max((sum - 1.0).abs());
        }
        if clip_ids.is_empty() {
            min_v = 0.0;
            max_v = 0.0;
        }
        let looks_like_probs = min_v >= 0.0 && max_v <= 1.0 && max_err <= ROW_SUM_TOLERANCE;
        let detected = match kind {
            ScoreKind::Probabilities => ScoreKind::Probabilities,
            ScoreKind::Logits => ScoreKind::Logits,
            ScoreKind::Auto if looks_like_probs => ScoreKind::Probabilities,
            ScoreKind::Auto => ScoreKind::Logits,
        };
        let mut notes = Vec::new();
        match (kind, detected) {
            (ScoreKind::Auto, ScoreKind::Logits) => notes.push(format!(
                "values look like logits (range {min_v:.4}..{max_v:.4}, largest |row sum - 1| = {max_err:.2e}); softmax applied"
            )),
            (ScoreKind::Auto, _) => notes.push("values look like probabilities; used as they are".into()),
            (ScoreKind::Probabilities, _) if !looks_like_probs => notes.push(format!(
                "probabilities requested, but values range {min_v:.4}..{max_v:.4} and largest |row sum - 1| is {max_err:.2e}; used as they are"
            )),
            (ScoreKind::Logits, _) if looks_like_probs => notes.push(
                "logits requested, but the values already look like probabilities; softmax applied anyway".into(),
            ),
            _ => {}
        }
        let mut probs = values;
        let softmax_applied = detected == ScoreKind::Logits;
        if softmax_applied {
            for row in probs.chunks_exact_mut(classes) {
                softmax_in_place(row);
            }
        }
        let report = Report {
            requested: kind,
            detected,
            softmax_applied,
            max_row_sum_error: max_err,
            min_value: min_v,
            max_value: max_v,
            notes,
        };
        Ok((
            ScoreStream {
                name,
                clip_ids,
                classes,
                probs,
            },
            report,
        ))
    }

    pub fn len(&self) -> usize {
        self.clip_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clip_ids.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.probs[i * self.classes..(i + 1) * self.classes]
    }

    /// Row index of each requested clip, in the requested order.
    pub fn align(&self, ids: &[String]) -> Result<Vec<usize>> {
        let index: HashMap<&str, usize> = self
            .clip_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        let mut first_missing: Option<&String> = None;
        let mut missing = 0usize;
        for id in ids {
            match index.get(id.as_str()) {
                Some(&i) => out.push(i),
                None => {
                    missing += 1;
                    first_missing.get_or_insert(id);
                }
            }
        }
        match first_missing {
            Some(clip) => Err(EnsembleError::MissingClip {
                stream: self.name.clone(),
                clip: clip.clone(),
                missing,
                wanted: ids.len(),
            }),
            None => Ok(out),
        }
    }

    /// The `[ids.len(), classes]` matrix of this stream in the order of `ids`.
    pub fn aligned(&self, ids: &[String]) -> Result<Vec<f32>> {
        let rows = self.align(ids)?;
        let mut out = Vec::with_capacity(rows.len() * self.classes);
        for r in rows {
            out.extend_from_slice(self.row(r));
        }
        Ok(out)
    }

    /// Parses `clip_id,p0,p1,...` lines (optional header; `#` comments and blank lines skipped).
    pub fn from_csv(
        name: impl Into<String>,
        text: &str,
        kind: ScoreKind,
    ) -> Result<(Self, Report)> {
        let name = name.into();
        let (ids, classes, values) = parse_csv(&name, text)?;
        Self::from_flat(name, ids, classes, values, kind)
    }

    /// A 2-D `.npy` matrix plus an id list (one id per line, or a JSON array like MM-Gesture's `test_list.json`).
    pub fn from_npy(
        name: impl Into<String>,
        npy_bytes: &[u8],
        id_list: &str,
        kind: ScoreKind,
    ) -> Result<(Self, Report)> {
        let name = name.into();
        let arr = crate::modality::npy::parse_npy(npy_bytes)
            .map_err(|e| EnsembleError::Npy(e.to_string()))?;
        let [rows, classes] = match arr.shape[..] {
            [r, c] => [r, c],
            _ => {
                return Err(EnsembleError::Npy(format!(
                    "expected a 2-D [clips, classes] array, found shape {:?}",
                    arr.shape
                )))
            }
        };
        let data: Vec<f32> = match arr.data {
            crate::modality::npy::NpyData::F32(v) => v,
            crate::modality::npy::NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
            _ => {
                return Err(EnsembleError::Npy(
                    "expected a float32 or float64 score matrix".into(),
                ))
            }
        };
        let ids = parse_id_list(&name, id_list)?;
        if ids.len() != rows {
            return Err(EnsembleError::IdCount {
                stream: name,
                ids: ids.len(),
                rows,
            });
        }
        Self::from_flat(name, ids, classes, data, kind)
    }
}

fn check_unique(stream: &str, ids: &[String]) -> Result<()> {
    let mut seen = HashSet::with_capacity(ids.len());
    for id in ids {
        if !seen.insert(id.as_str()) {
            return Err(EnsembleError::DuplicateClip {
                stream: stream.to_string(),
                clip: id.clone(),
            });
        }
    }
    Ok(())
}

fn check_finite(stream: &str, ids: &[String], classes: usize, values: &[f32]) -> Result<()> {
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(EnsembleError::NonFinite {
            stream: stream.to_string(),
            clip: ids[pos / classes].clone(),
            class: pos % classes,
            value: f64::from(values[pos]),
        });
    }
    Ok(())
}

/// Numerically stable softmax, computed in f64 so that large logits do not lose the small classes.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exps: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    for (r, e) in row.iter_mut().zip(exps) {
        *r = (e / sum) as f32;
    }
}

fn parse_csv(stream: &str, text: &str) -> Result<(Vec<String>, usize, Vec<f32>)> {
    let err = |line: usize, msg: String| EnsembleError::Parse {
        stream: stream.to_string(),
        line,
        msg,
    };
    let mut ids = Vec::new();
    let mut values = Vec::new();
    let mut classes: Option<usize> = None;
    let mut first_content = true;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(',').map(|f| f.trim());
        let id = unquote(fields.next().unwrap_or_default());
        let nums: Vec<&str> = fields.collect();
        let parsed: std::result::Result<Vec<f32>, _> =
            nums.iter().map(|f| f.parse::<f32>()).collect();
        let is_first = std::mem::replace(&mut first_content, false);
        let row = match parsed {
            Ok(row) => row,
            // A first line whose scores are not numbers is a header (e.g. `clip_id,p0,p1`).
            Err(_) if is_first => continue,
            Err(e) => {
                let bad = nums
                    .iter()
                    .position(|f| f.parse::<f32>().is_err())
                    .unwrap_or(0);
                return Err(err(
                    line_no,
                    format!("field {} `{}`: {e}", bad + 2, nums[bad]),
                ));
            }
        };
        if id.is_empty() {
            return Err(err(line_no, "empty clip id".into()));
        }
        if row.is_empty() {
            return Err(err(line_no, format!("clip `{id}` has no scores")));
        }
        match classes {
            None => classes = Some(row.len()),
            Some(c) if c != row.len() => {
                return Err(EnsembleError::RowLength {
                    stream: stream.to_string(),
                    clip: id.to_string(),
                    got: row.len(),
                    expected: c,
                })
            }
            Some(_) => {}
        }
        ids.push(id.to_string());
        values.extend(row);
    }
    let classes = classes.ok_or_else(|| err(0, "no score rows".into()))?;
    Ok((ids, classes, values))
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// One id per line (blank lines skipped), or a JSON array of strings.
pub fn parse_id_list(stream: &str, text: &str) -> Result<Vec<String>> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(trimmed).map_err(|e| EnsembleError::Parse {
            stream: stream.to_string(),
            line: e.line(),
            msg: format!("id list is not a JSON array of strings: {e}"),
        });
    }
    Ok(trimmed
        .lines()
        .map(|l| unquote(l.trim()).to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// A sub-weighted sum of streams treated as one (MM-Gesture's RGBPose model = 0.5·rgb + 0.5·pose).
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeStream {
    pub name: String,
    pub parts: Vec<(ScoreStream, f32)>,
}

fn check_sub_weight(composite: &str, part: &str, w: f32) -> Result<()> {
    if !w.is_finite() || w < 0.0 {
        return Err(EnsembleError::Weights(format!(
            "composite `{composite}`: sub-weight {w} of `{part}` must be finite and >= 0"
        )));
    }
    Ok(())
}

impl CompositeStream {
    pub fn new(name: impl Into<String>, parts: Vec<(ScoreStream, f32)>) -> Result<Self> {
        let name = name.into();
        let Some((first, _)) = parts.first() else {
            return Err(EnsembleError::InvalidStream {
                stream: name,
                msg: "composite stream has no parts".into(),
            });
        };
        let classes = first.classes;
        for (p, w) in &parts {
            if p.classes != classes {
                return Err(EnsembleError::ClassCount {
                    stream: p.name.clone(),
                    got: p.classes,
                    expected: classes,
                });
            }
            check_sub_weight(&name, &p.name, *w)?;
        }
        Ok(CompositeStream { name, parts })
    }

    /// Sets the sub-weight of part `part`, with the check `new` makes.
    pub fn set_weight(&mut self, part: usize, w: f32) -> Result<()> {
        let name = &self.name;
        let Some((p, slot)) = self.parts.get_mut(part) else {
            return Err(EnsembleError::InvalidArgument(format!(
                "composite `{name}` has no part {part}"
            )));
        };
        check_sub_weight(name, &p.name, w)?;
        *slot = w;
        Ok(())
    }

    /// Σ sub-weight · part, in part order, for the clips `ids`.
    pub fn aligned(&self, ids: &[String]) -> Result<Vec<f32>> {
        let classes = self.parts.first().map_or(0, |(p, _)| p.classes);
        let mut acc = vec![0.0f32; ids.len() * classes];
        for (part, w) in &self.parts {
            let rows = part.align(ids)?;
            for (dst, &r) in acc.chunks_exact_mut(classes).zip(&rows) {
                for (d, &p) in dst.iter_mut().zip(part.row(r)) {
                    *d += w * p;
                }
            }
        }
        Ok(acc)
    }
}

/// What fusion weighs: a plain stream or a composite.
#[derive(Debug, Clone, PartialEq)]
pub enum Stream {
    Single(ScoreStream),
    Composite(CompositeStream),
}

impl Stream {
    pub fn name(&self) -> &str {
        match self {
            Stream::Single(s) => &s.name,
            Stream::Composite(c) => &c.name,
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Stream::Single(s) => s.classes,
            Stream::Composite(c) => c.parts.first().map_or(0, |(p, _)| p.classes),
        }
    }

    pub fn aligned(&self, ids: &[String]) -> Result<Vec<f32>> {
        match self {
            Stream::Single(s) => s.aligned(ids),
            Stream::Composite(c) => c.aligned(ids),
        }
    }
}

impl From<ScoreStream> for Stream {
    fn from(s: ScoreStream) -> Self {
        Stream::Single(s)
    }
}

impl From<CompositeStream> for Stream {
    fn from(c: CompositeStream) -> Self {
        Stream::Composite(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v_{i}")).collect()
    }

    #[test]
    fn probabilities_pass_through_and_auto_detects_them() {
        let rows = vec![vec![0.2, 0.8], vec![0.6, 0.4]];
        let (s, rep) = ScoreStream::new("a", ids(2), 2, rows, ScoreKind::Auto).unwrap();
        assert_eq!(rep.detected, ScoreKind::Probabilities);
        assert!(!rep.softmax_applied);
        assert_eq!(s.probs, vec![0.2, 0.8, 0.6, 0.4]);
        assert_eq!(s.row(1), &[0.6, 0.4]);
    }

    #[test]
    fn auto_detects_logits_and_applies_softmax() {
        let rows = vec![vec![1.0, 2.0, 3.0], vec![0.0, 0.0, 0.0]];
        let (s, rep) = ScoreStream::new("lg", ids(2), 3, rows, ScoreKind::Auto).unwrap();
        assert_eq!(rep.detected, ScoreKind::Logits);
        assert!(rep.softmax_applied);
        assert!(rep.notes[0].contains("logits"), "{:?}", rep.notes);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).collect();
        let z: f64 = e.iter().sum();
        for (c, ec) in e.iter().enumerate() {
            assert!((f64::from(s.probs[c]) - ec / z).abs() < 1e-7);
            assert!((f64::from(s.probs[3 + c]) - 1.0 / 3.0).abs() < 1e-7);
        }
    }

    #[test]
    fn auto_detects_logits_inside_unit_interval_by_row_sum() {
        // All values in [0,1] but rows do not sum to 1: only the row-sum rule catches it.
        let rows = vec![vec![0.1, 0.2, 0.3]];
        let (_, rep) = ScoreStream::new("x", ids(1), 3, rows, ScoreKind::Auto).unwrap();
        assert_eq!(rep.detected, ScoreKind::Logits);
        assert!((rep.max_row_sum_error - 0.4).abs() < 1e-6);
    }

    #[test]
    fn softmax_survives_huge_logits() {
        let mut row = vec![1000.0f32, 0.0, -1000.0];
        softmax_in_place(&mut row);
        assert_eq!(row[0], 1.0);
        assert_eq!(row[2], 0.0);
    }

    #[test]
    fn explicit_probabilities_that_do_not_sum_are_noted() {
        let (s, rep) = ScoreStream::new(
            "p",
            ids(1),
            2,
            vec![vec![2.0, 3.0]],
            ScoreKind::Probabilities,
        )
        .unwrap();
        assert!(!rep.softmax_applied);
        assert_eq!(s.probs, vec![2.0, 3.0]);
        assert!(rep.notes[0].contains("probabilities requested"));
    }

    #[test]
    fn duplicate_ids_name_stream_and_clip() {
        let ids = vec!["a".to_string(), "b".into(), "a".into()];
        let e = ScoreStream::new("rgb", ids, 1, vec![vec![1.0]; 3], ScoreKind::Auto).unwrap_err();
        assert_eq!(e.to_string(), "stream `rgb`: duplicate clip id `a`");
    }

    #[test]
    fn wrong_row_length_names_clip() {
        let e = ScoreStream::new(
            "d",
            ids(2),
            2,
            vec![vec![0.5, 0.5], vec![1.0]],
            ScoreKind::Auto,
        )
        .unwrap_err();
        assert!(
            matches!(&e, EnsembleError::RowLength { clip, got: 1, expected: 2, .. } if clip == "v_1"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_names_first_clip_and_class() {
        let rows = vec![
            vec![0.5, 0.5],
            vec![0.5, f32::INFINITY],
            vec![f32::NAN, 0.0],
        ];
        let e = ScoreStream::new("flow", ids(3), 2, rows, ScoreKind::Auto).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stream `flow`: clip `v_1`, class 1: value inf is not finite"
        );
    }

    #[test]
    fn id_count_mismatch_is_an_error() {
        let e = ScoreStream::from_flat("s", ids(3), 2, vec![0.5; 4], ScoreKind::Auto).unwrap_err();
        assert!(matches!(
            e,
            EnsembleError::IdCount {
                ids: 3,
                rows: 2,
                ..
            }
        ));
    }

    #[test]
    fn align_maps_by_id_and_names_first_missing() {
        let (s, _) = ScoreStream::new(
            "s",
            vec!["x".into(), "y".into(), "z".into()],
            1,
            vec![vec![1.0]; 3],
            ScoreKind::Probabilities,
        )
        .unwrap();
        let want: Vec<String> = vec!["z".into(), "x".into()];
        assert_eq!(s.align(&want).unwrap(), vec![2, 0]);
        let want: Vec<String> = vec!["x".into(), "q".into(), "r".into()];
        let e = s.align(&want).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stream `s`: clip `q` is missing (2 of 3 requested clips missing)"
        );
    }

    #[test]
    fn csv_with_header_comments_and_quotes() {
        let text = "\u{feff}clip_id,p0,p1\n# comment\n\"a_0\",0.25,0.75\r\n\nb_1, 0.5 ,0.5\n";
        let (s, rep) = ScoreStream::from_csv("c", text, ScoreKind::Auto).unwrap();
        assert_eq!(s.clip_ids, vec!["a_0", "b_1"]);
        assert_eq!(s.classes, 2);
        assert_eq!(s.probs, vec![0.25, 0.75, 0.5, 0.5]);
        assert_eq!(rep.detected, ScoreKind::Probabilities);
    }

    #[test]
    fn csv_errors_name_line_and_clip() {
        let e = ScoreStream::from_csv("c", "a,0.5,0.5\nb,0.5,x\n", ScoreKind::Auto).unwrap_err();
        assert!(matches!(&e, EnsembleError::Parse { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("`x`"), "{e}");
        let e = ScoreStream::from_csv("c", "a,0.5,0.5\nb,1.0\n", ScoreKind::Auto).unwrap_err();
        assert!(
            matches!(&e, EnsembleError::RowLength { clip, .. } if clip == "b"),
            "{e}"
        );
        let e = ScoreStream::from_csv("c", "a,0.5,0.5\na,0.5,0.5\n", ScoreKind::Auto).unwrap_err();
        assert!(matches!(e, EnsembleError::DuplicateClip { .. }));
        let e = ScoreStream::from_csv("c", "id,p0\n", ScoreKind::Auto).unwrap_err();
        assert!(e.to_string().contains("no score rows"), "{e}");
    }

    #[test]
    fn npy_plus_id_list_builds_a_stream() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ensemble/npy");
        let bytes = std::fs::read(format!("{dir}/logits_2x3.npy")).unwrap();
        let ids = std::fs::read_to_string(format!("{dir}/logits_2x3_ids.txt")).unwrap();
        let (s, rep) = ScoreStream::from_npy("npy", &bytes, &ids, ScoreKind::Auto).unwrap();
        assert!(rep.softmax_applied);
        assert_eq!(s.clip_ids, vec!["0054_0", "0054_1"]);
        let z = 2f64.exp() + 1.0 + (-1f64).exp();
        assert!((f64::from(s.probs[0]) - 2f64.exp() / z).abs() < 1e-7);
        assert!((f64::from(s.probs[4]) - 1.0 / 3.0).abs() < 1e-7);
        let e = ScoreStream::from_npy("npy", &bytes, "a\nb\nc\n", ScoreKind::Auto).unwrap_err();
        assert!(
            matches!(
                e,
                EnsembleError::IdCount {
                    ids: 3,
                    rows: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn id_list_plain_and_json() {
        assert_eq!(
            parse_id_list("s", "a\n\n b \r\nc").unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            parse_id_list("s", "[\"0054_0\", \"0054_1\"]").unwrap(),
            vec!["0054_0", "0054_1"]
        );
        assert!(parse_id_list("s", "[1, 2]").is_err());
    }

    #[test]
    fn composite_is_sub_weighted_sum() {
        let mk = |name: &str, v: Vec<Vec<f32>>| {
            ScoreStream::new(
                name,
                vec!["a".into(), "b".into()],
                2,
                v,
                ScoreKind::Probabilities,
            )
            .unwrap()
            .0
        };
        let rgb = mk("rgb", vec![vec![1.0, 0.0], vec![0.5, 0.5]]);
        // Different clip order in the second part: alignment is by id.
        let mut pose = mk("pose", vec![vec![0.0, 1.0], vec![0.2, 0.8]]);
        pose.clip_ids.reverse();
        let c = CompositeStream::new("rgbpose", vec![(rgb, 0.5), (pose, 0.5)]).unwrap();
        let got = Stream::from(c).aligned(&["a".into(), "b".into()]).unwrap();
        assert_eq!(got, vec![0.6, 0.4, 0.25, 0.75]);
    }

    #[test]
    fn composite_rejects_class_mismatch_and_negative_weight() {
        let a = ScoreStream::new("a", ids(1), 2, vec![vec![0.5, 0.5]], ScoreKind::Auto)
            .unwrap()
            .0;
        let b = ScoreStream::new("b", ids(1), 3, vec![vec![0.2, 0.3, 0.5]], ScoreKind::Auto)
            .unwrap()
            .0;
        assert!(matches!(
            CompositeStream::new("c", vec![(a.clone(), 1.0), (b, 1.0)]),
            Err(EnsembleError::ClassCount {
                got: 3,
                expected: 2,
                ..
            })
        ));
        assert!(CompositeStream::new("c", vec![(a, -1.0)]).is_err());
        assert!(CompositeStream::new("c", vec![]).is_err());
    }
}
