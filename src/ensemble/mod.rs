//! The ensemble and evaluation engine: score streams keyed by clip id, weighted fusion (with
//! MM-Gesture's rule as a preset), metrics equal to scikit-learn's, weight search with a k-fold
//! honest estimate, and confusing-sample queues.

pub mod fusion;
pub mod import;
pub mod metrics;
pub mod queue;
pub mod search;
pub mod stream;

use std::path::Path;

use crate::pickle::{read_pickle, Value};
use crate::store::StoredStream;
use crate::{Error, Result};
use stream::{EnsembleError, ScoreKind, ScoreStream};

impl From<EnsembleError> for Error {
    fn from(e: EnsembleError) -> Self {
        Error::Invalid(e.to_string())
    }
}

/// Reads a score file into one or more streams (an RGBPose dump gives `NAME.rgb` and
/// `NAME.pose`). `ids` orders the rows of files that carry no clip ids (pickles, `.npy`):
/// the clip order of the dump.
pub fn read_score_file(
    path: &Path,
    name: &str,
    ids: Option<&[String]>,
    kind: ScoreKind,
) -> Result<Vec<(ScoreStream, stream::Report)>> {
    ParsedScores::read(path, name, kind)?.with_ids(ids)
}

/// A score file read and parsed once, before its rows are given clip ids (so a caller can try
/// several id lists on one parse).
pub struct ParsedScores {
    path: std::path::PathBuf,
    name: String,
    kind: ScoreKind,
    body: Parsed,
}

enum Parsed {
    /// CSV rows carry their clip ids.
    Csv(Vec<(ScoreStream, stream::Report)>),
    Npy(Vec<u8>),
    Pickle(Vec<NamedRows>),
}

impl ParsedScores {
    pub fn read(path: &Path, name: &str, kind: ScoreKind) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let ctx = |e: EnsembleError| Error::format(path, format!("stream {name}"), e.to_string());
        let body = match ext.as_str() {
            "csv" => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::format(path, "file", "expected UTF-8 csv"))?;
                Parsed::Csv(vec![ScoreStream::from_csv(name, &text, kind).map_err(ctx)?])
            }
            "npy" => Parsed::Npy(bytes),
            "pkl" | "pickle" => {
                let v = read_pickle(&bytes).map_err(|e| Error::Pickle {
                    path: path.to_path_buf(),
                    source: e,
                })?;
                Parsed::Pickle(pickle_rows(path, &v)?)
            }
            other => {
                return Err(Error::format(
                    path,
                    "extension",
                    format!(
                        "unknown score file type {other:?}: expected .pkl, .npy (+ id list) or .csv"
                    ),
                ))
            }
        };
        Ok(ParsedScores {
            path: path.to_path_buf(),
            name: name.to_string(),
            kind,
            body,
        })
    }

    /// Whether the rows need an id list (pickles and `.npy` carry none).
    pub fn needs_ids(&self) -> bool {
        !matches!(self.body, Parsed::Csv(_))
    }

    /// The streams, with `ids` as the clip order of the rows where the file has none.
    pub fn with_ids(&self, ids: Option<&[String]>) -> Result<Vec<(ScoreStream, stream::Report)>> {
        let (path, name, kind) = (self.path.as_path(), self.name.as_str(), self.kind);
        let need_ids = || {
            ids.map(<[String]>::to_vec).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: the file has no clip ids; give the id list of its rows (--ids FILE) or a split",
                    path.display()
                ))
            })
        };
        let ctx = |e: EnsembleError| Error::format(path, format!("stream {name}"), e.to_string());
        match &self.body {
            Parsed::Csv(streams) => Ok(streams.clone()),
            Parsed::Npy(bytes) => {
                let ids = need_ids()?.join("\n");
                Ok(vec![
                    ScoreStream::from_npy(name, bytes, &ids, kind).map_err(ctx)?
                ])
            }
            Parsed::Pickle(parts) => {
                let ids = need_ids()?;
                let mut out = Vec::new();
                for (suffix, rows) in parts {
                    if rows.len() != ids.len() {
                        return Err(Error::format(
                            path,
                            "top level",
                            format!(
                                "{} score rows but {} clip ids: the id list must give the dump's clip order",
                                rows.len(),
                                ids.len()
                            ),
                        ));
                    }
                    let classes = rows.first().map_or(0, Vec::len);
                    let n = match suffix {
                        Some(s) => format!("{name}.{s}"),
                        None => name.to_string(),
                    };
                    out.push(
                        ScoreStream::new(n, ids.clone(), classes, rows.clone(), kind)
                            .map_err(ctx)?,
                    );
                }
                Ok(out)
            }
        }
    }
}

/// The per-clip rows of a result pickle. Handles pyskl/mmaction2 dumps: a list of arrays; a
/// list of dicts with `pred_score` (mmaction2 1.x) or `pred_scores.item`; a list of dicts
/// `{'rgb': ..., 'pose': ...}` (RGBPoseConv3D, two streams); a 2-D array. A dump holding torch
/// tensors is refused by the unpickler (torch's rebuild functions are not on its whitelist).
/// Rows of one stream, with the suffix of an RGBPose head (`rgb` / `pose`) when there is one.
type NamedRows = (Option<String>, Vec<Vec<f32>>);

fn pickle_rows(path: &Path, v: &Value) -> Result<Vec<NamedRows>> {
    let vec_of = |x: &Value, loc: &str| -> Result<Vec<f32>> {
        match x {
            Value::Array(a) => a
                .to_f32_vec()
                .map_err(|e| Error::format(path, loc, e.to_string())),
            Value::List(l) | Value::Tuple(l) => l
                .iter()
                .map(|e| {
                    e.as_f64().map(|f| f as f32).ok_or_else(|| {
                        Error::format(
                            path,
                            loc,
                            format!("expected numbers, found {}", e.type_name()),
                        )
                    })
                })
                .collect(),
            other => Err(Error::format(
                path,
                loc,
                format!(
                    "expected a score vector (numpy array or list), found {}",
                    other.type_name()
                ),
            )),
        }
    };
    match v {
        Value::Array(a) if a.shape.len() == 2 => {
            let c = a.shape[1];
            let flat = a
                .to_f32_vec()
                .map_err(|e| Error::format(path, "array", e.to_string()))?;
            Ok(vec![(
                None,
                flat.chunks(c.max(1)).map(<[f32]>::to_vec).collect(),
            )])
        }
        Value::List(items) => {
            let Some(first) = items.first() else {
                return Err(Error::format(path, "top level", "empty list of results"));
            };
            if first.get("rgb").is_some() && first.get("pose").is_some() {
                let mut rgb = Vec::with_capacity(items.len());
                let mut pose = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    for (key, dst) in [("rgb", &mut rgb), ("pose", &mut pose)] {
                        let x = it.get(key).ok_or_else(|| {
                            Error::format(path, format!("[{i}]"), format!("missing key '{key}'"))
                        })?;
                        dst.push(vec_of(x, &format!("[{i}]['{key}']"))?);
                    }
                }
                return Ok(vec![(Some("rgb".into()), rgb), (Some("pose".into()), pose)]);
            }
            let mut rows = Vec::with_capacity(items.len());
            for (i, it) in items.iter().enumerate() {
                let x = match it {
                    Value::Dict(_) => it
                        .get("pred_score")
                        .or_else(|| it.get("pred_scores").and_then(|p| p.get("item")))
                        .ok_or_else(|| {
                            Error::format(
                                path,
                                format!("[{i}]"),
                                "expected key 'pred_score' (mmaction2 dump) or 'rgb'/'pose'",
                            )
                        })?,
                    other => other,
                };
                rows.push(vec_of(x, &format!("[{i}]"))?);
            }
            Ok(vec![(None, rows)])
        }
        other => Err(Error::format(
            path,
            "top level",
            format!(
                "expected a list of per-clip scores, found {}",
                other.type_name()
            ),
        )),
    }
}

impl From<&ScoreStream> for StoredStream {
    fn from(s: &ScoreStream) -> Self {
        StoredStream {
            name: s.name.clone(),
            classes: s.classes,
            clip_ids: s.clip_ids.clone(),
            probs: s.probs.clone(),
            source: String::new(),
            report: String::new(),
        }
    }
}

impl StoredStream {
    /// Back to an engine stream; the stored values are already probabilities.
    pub fn to_stream(&self) -> Result<ScoreStream> {
        Ok(ScoreStream::from_flat(
            self.name.clone(),
            self.clip_ids.clone(),
            self.classes,
            self.probs.clone(),
            ScoreKind::Probabilities,
        )?
        .0)
    }
}
