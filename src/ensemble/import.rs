//! A score file dropped on the app (or picked in its menu) becomes score streams of the open
//! dataset: the reader `mgscope ensemble --stream NAME=FILE` uses, the stream named after the
//! file, a name already taken getting a `-2`, `-3` … suffix rather than replacing a stream.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::stream::{parse_id_list, ScoreKind, ScoreStream};
use super::{read_score_file, ParsedScores};
use crate::dataset::Split;
use crate::store::{Dataset, StoredStream};

/// Why a score file did not become streams; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ScoreImportError {
    #[error("{path}: no file name to call the stream by")]
    NoName { path: PathBuf },
    #[error("{path}: not a score file this app reads: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: Box<crate::Error>,
    },
    #[error(
        "{path}: {source} (the rows carry no clip ids and match neither the val, test nor \
         train split's clip order; put the dump's clip ids, one a line, in {sidecar} beside it)"
    )]
    NoRowOrder {
        path: PathBuf,
        sidecar: PathBuf,
        #[source]
        source: Box<crate::Error>,
    },
    #[error("{path}: {got} classes per row, but the dataset's taxonomy has {expected}")]
    Classes {
        path: PathBuf,
        got: usize,
        expected: usize,
    },
    #[error("{path}: none of its {clips} clip ids is a sample of this dataset")]
    UnknownClips { path: PathBuf, clips: usize },
    #[error("{path}: the dataset could not be read or written: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: Box<crate::Error>,
    },
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The new streams' names (an RGBPose dump gives `NAME.rgb` and `NAME.pose`).
    pub streams: Vec<String>,
    /// Where the rows' clip order came from.
    pub order: String,
    /// What is worth saying: logits turned into probabilities, clips that are not samples.
    pub notes: Vec<String>,
}

/// The id list `mgscope predict --out X.pkl` writes beside its dump.
pub fn sidecar_ids(path: &Path) -> PathBuf {
    path.with_extension("ids.txt")
}

/// Reads `path` (`.pkl` / `.pickle`, `.csv`, `.npy`) and stores its streams in `ds`.
///
/// Rows without clip ids take their order from the sidecar id list when there is one, else
/// from the first split whose clip count fits (val, test, train: what `mgscope ensemble`
/// assumes by default is val), and `Imported::order` says which.
pub fn import_score_file(ds: &mut Dataset, path: &Path) -> Result<Imported, ScoreImportError> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScoreImportError::NoName {
            path: path.to_path_buf(),
        })?;
    let store = |source: crate::Error| ScoreImportError::Store {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let all = ds.samples().map_err(store)?;
    let (read, order) = read_with_order(&all, path, &stem)?;
    let expected = ds.taxonomy().len();
    if let Some(s) = read.iter().find(|(s, _)| s.classes != expected) {
        return Err(ScoreImportError::Classes {
            path: path.to_path_buf(),
            got: s.0.classes,
            expected,
        });
    }
    let samples: HashSet<String> = all.into_iter().map(|s| s.clip_id).collect();
    let mut notes = Vec::new();
    for (s, report) in &read {
        let known = s.clip_ids.iter().filter(|c| samples.contains(*c)).count();
        if known == 0 {
            return Err(ScoreImportError::UnknownClips {
                path: path.to_path_buf(),
                clips: s.clip_ids.len(),
            });
        }
        if known < s.clip_ids.len() {
            notes.push(format!(
                "{} of {} clips are not samples of this dataset",
                s.clip_ids.len() - known,
                s.clip_ids.len()
            ));
        }
        notes.extend(report.notes.iter().cloned());
    }
    notes.dedup();
    let taken: HashSet<String> = ds.stream_names().map_err(store)?.into_iter().collect();
    let suffixes: Vec<&str> = read
        .iter()
        .map(|(s, _)| s.name.strip_prefix(stem.as_str()).unwrap_or(""))
        .collect();
    let base = (1..)
        .map(|k| {
            if k == 1 {
                stem.clone()
            } else {
                format!("{stem}-{k}")
            }
        })
        .find(|b| suffixes.iter().all(|x| !taken.contains(&format!("{b}{x}"))))
        .unwrap_or_else(|| stem.clone());
    let mut streams = Vec::new();
    for ((s, report), suffix) in read.iter().zip(&suffixes) {
        let mut st = StoredStream::from(s);
        st.name = format!("{base}{suffix}");
        st.source = path.display().to_string();
        st.report = serde_json::to_string(report).unwrap_or_default();
        ds.put_stream(&st).map_err(store)?;
        streams.push(st.name);
    }
    Ok(Imported {
        streams,
        order,
        notes,
    })
}

type Read = Vec<(ScoreStream, super::stream::Report)>;

/// The file's streams and where their row order came from.
fn read_with_order(
    samples: &[crate::dataset::Sample],
    path: &Path,
    stem: &str,
) -> Result<(Read, String), ScoreImportError> {
    let unreadable = |source: crate::Error| ScoreImportError::Unreadable {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let sidecar = sidecar_ids(path);
    if sidecar.is_file() {
        let text = std::fs::read_to_string(&sidecar)
            .map_err(|e| unreadable(crate::Error::io(&sidecar, e)))?;
        let ids = parse_id_list(&sidecar.display().to_string(), &text)
            .map_err(|e| unreadable(e.into()))?;
        let read = read_score_file(path, stem, Some(&ids), ScoreKind::Auto).map_err(unreadable)?;
        return Ok((read, format!("the clip ids in {}", sidecar.display())));
    }
    // Parsed once, before any id list is tried: a file that is not a dump at all is named as
    // such, not as a row-order problem. CSV rows carry their clip ids.
    let parsed = ParsedScores::read(path, stem, ScoreKind::Auto).map_err(unreadable)?;
    if !parsed.needs_ids() {
        let read = parsed.with_ids(None).map_err(unreadable)?;
        return Ok((read, "the clip ids in the file".into()));
    }
    let mut first_error = None;
    for split in [Split::Val, Split::Test, Split::Train] {
        let ids: Vec<String> = samples
            .iter()
            .filter(|s| s.split == split)
            .map(|s| s.clip_id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        match parsed.with_ids(Some(&ids)) {
            Ok(read) => {
                return Ok((
                    read,
                    format!(
                        "the {} split's clip order ({} clips)",
                        split.as_str(),
                        ids.len()
                    ),
                ))
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let source = first_error.unwrap_or_else(|| {
        crate::Error::Invalid("the dataset has no val, test or train clips".into())
    });
    Err(ScoreImportError::NoRowOrder {
        path: path.to_path_buf(),
        sidecar,
        source: Box::new(source),
    })
}
