//! Ensemble weight presets kept in the dataset, and the Ensemble tab's working state (the
//! weights being tuned, the preset last loaded), so that neither is lost with the window.
//!
//! A preset is a list of terms in the engine's sense (`ensemble::fusion::PresetTerm`): a stream
//! name with its weight, or a composite of stored streams with sub-weights. It is stored as one
//! JSON document per row; weights travel as the `f64` of the engine's `f32`, so a JSON parser
//! that is off by an ulp of `f64` still rounds back to the very same `f32` and a reloaded preset
//! fuses bit for bit as it did when saved.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::util::now_ms;
use crate::{Error, Result};

/// Longest preset name accepted; a name is a label in a picker, not a document.
pub const MAX_PRESET_NAME: usize = 120;

const LAST_PRESET_KEY: &str = "ensemble.last_preset";
const WORKING_KEY: &str = "ensemble.working";

/// Why a preset could not be saved, found or read.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("a preset needs a name")]
    EmptyName,
    #[error("preset name {0:?} is too long (at most {MAX_PRESET_NAME} characters)")]
    NameTooLong(String),
    #[error("preset name {0:?} contains a control character")]
    NameControlChar(String),
    #[error("preset {0:?} not found")]
    NotFound(String),
    #[error("preset {0:?} already exists; overwrite it or choose another name")]
    Exists(String),
    #[error("preset {0:?} has no streams")]
    NoTerms(String),
    #[error("preset {preset:?}: a term has no stream name")]
    UnnamedTerm { preset: String },
    #[error("preset {preset:?}: stream {stream:?} appears twice")]
    DuplicateTerm { preset: String, stream: String },
    #[error("preset {preset:?}: weight of {stream:?} is {weight}; weights must be finite")]
    BadWeight {
        preset: String,
        stream: String,
        weight: f64,
    },
    #[error(
        "preset {preset:?}: sub-weight {weight} of {part:?} in {stream:?} must be finite and >= 0"
    )]
    BadSubWeight {
        preset: String,
        stream: String,
        part: String,
        weight: f64,
    },
    #[error("preset {name:?}: the stored weights cannot be read: {source}")]
    Corrupt {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One weighted term: a stored stream (`parts` empty), or the sub-weighted sum of the stored
/// streams in `parts` weighed as one (MM-Gesture's RGBPose model = 0.5·rgb + 0.5·pose).
#[derive(Debug, Clone, PartialEq)]
pub struct PresetTerm {
    pub name: String,
    pub weight: f32,
    pub parts: Vec<(String, f32)>,
}

impl PresetTerm {
    /// A plain stream with its weight.
    pub fn stream(name: impl Into<String>, weight: f32) -> PresetTerm {
        PresetTerm {
            name: name.into(),
            weight,
            parts: Vec::new(),
        }
    }

    /// The stored streams this term reads.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        let own = self.parts.is_empty().then_some(self.name.as_str());
        own.into_iter()
            .chain(self.parts.iter().map(|(n, _)| n.as_str()))
    }
}

/// A preset as the picker lists it; [`Dataset::load_preset`] reads its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetInfo {
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A preset read back against the streams the dataset has now.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPreset {
    pub info: PresetInfo,
    /// The terms whose streams are all in the dataset, in saved order.
    pub terms: Vec<PresetTerm>,
    /// Streams the preset names that the dataset no longer has, sorted; the terms reading them
    /// are left out of `terms` rather than failing the load.
    pub missing: Vec<String>,
}

/// Whether [`Dataset::save_preset`] may replace a preset of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    /// Refuse with [`PresetError::Exists`]: a typo must not silently replace a saved preset.
    CreateOnly,
    Overwrite,
}

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Replaced,
}

/// The stored JSON document; an object rather than a bare list so fields can be added later
/// with serde defaults, without a migration.
#[derive(Serialize, Deserialize)]
struct Doc {
    terms: Vec<DocTerm>,
}

#[derive(Serialize, Deserialize)]
struct DocTerm {
    name: String,
    weight: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<(String, f64)>,
}

fn to_json(terms: &[PresetTerm]) -> std::result::Result<String, serde_json::Error> {
    let doc = Doc {
        terms: terms
            .iter()
            .map(|t| DocTerm {
                name: t.name.clone(),
                weight: f64::from(t.weight),
                parts: t
                    .parts
                    .iter()
                    .map(|(n, w)| (n.clone(), f64::from(*w)))
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string(&doc)
}

fn from_json(text: &str) -> std::result::Result<Vec<PresetTerm>, serde_json::Error> {
    let doc: Doc = serde_json::from_str(text)?;
    Ok(doc
        .terms
        .into_iter()
        .map(|t| PresetTerm {
            name: t.name,
            weight: t.weight as f32,
            parts: t.parts.into_iter().map(|(n, w)| (n, w as f32)).collect(),
        })
        .collect())
}

/// Trimmed, non-empty, short and printable: the name is shown in a picker and typed back.
fn check_name(name: &str) -> std::result::Result<String, PresetError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(PresetError::EmptyName);
    }
    if name.chars().count() > MAX_PRESET_NAME {
        return Err(PresetError::NameTooLong(name.to_string()));
    }
    if name.chars().any(char::is_control) {
        return Err(PresetError::NameControlChar(name.to_string()));
    }
    Ok(name.to_string())
}

/// The checks the fusion engine would make when building from these terms, made before
/// anything is written, so a stored preset always builds.
fn check_terms(preset: &str, terms: &[PresetTerm]) -> std::result::Result<(), PresetError> {
    if terms.is_empty() {
        return Err(PresetError::NoTerms(preset.to_string()));
    }
    let mut seen = std::collections::HashSet::new();
    for t in terms {
        if t.name.trim().is_empty() || t.parts.iter().any(|(n, _)| n.trim().is_empty()) {
            return Err(PresetError::UnnamedTerm {
                preset: preset.to_string(),
            });
        }
        if !seen.insert(t.name.as_str()) {
            return Err(PresetError::DuplicateTerm {
                preset: preset.to_string(),
                stream: t.name.clone(),
            });
        }
        if !t.weight.is_finite() {
            return Err(PresetError::BadWeight {
                preset: preset.to_string(),
                stream: t.name.clone(),
                weight: f64::from(t.weight),
            });
        }
        if let Some((part, w)) = t.parts.iter().find(|(_, w)| !w.is_finite() || *w < 0.0) {
            return Err(PresetError::BadSubWeight {
                preset: preset.to_string(),
                stream: t.name.clone(),
                part: part.clone(),
                weight: f64::from(*w),
            });
        }
    }
    Ok(())
}

impl Dataset {
    fn preset_err(&self, e: PresetError) -> Error {
        Error::Preset {
            path: self.db_path.clone(),
            source: e,
        }
    }

    /// Saves `terms` under `name` (trimmed) in one transaction. With [`SaveMode::CreateOnly`]
    /// an existing preset of that name is left as it is and the save is refused; overwriting
    /// keeps its creation time.
    pub fn save_preset(
        &mut self,
        name: &str,
        terms: &[PresetTerm],
        mode: SaveMode,
    ) -> Result<Saved> {
        let name = check_name(name).map_err(|e| self.preset_err(e))?;
        check_terms(&name, terms).map_err(|e| self.preset_err(e))?;
        let json = to_json(terms).map_err(|source| {
            self.preset_err(PresetError::Corrupt {
                name: name.clone(),
                source,
            })
        })?;
        let db = self.db_path.clone();
        let sql = |e| Error::Sqlite {
            path: db.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM ensemble_presets WHERE name = ?1)",
                params![name],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if exists && mode == SaveMode::CreateOnly {
            return Err(Error::Preset {
                path: db.clone(),
                source: PresetError::Exists(name),
            });
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO ensemble_presets(name, weights_json, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(name) DO UPDATE SET weights_json = excluded.weights_json,
                                             updated_ms = excluded.updated_ms",
            params![name, json, now],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(if exists {
            Saved::Replaced
        } else {
            Saved::Created
        })
    }

    /// Every preset, by name (case-insensitively). Only names and times are read, so one
    /// unreadable preset does not hide the others.
    pub fn presets(&self) -> Result<Vec<PresetInfo>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT name, created_ms, updated_ms FROM ensemble_presets
                 ORDER BY name COLLATE NOCASE, name",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(PresetInfo {
                    name: r.get(0)?,
                    created_ms: r.get(1)?,
                    updated_ms: r.get(2)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// Reads a preset and matches it against the dataset's score streams: terms whose streams
    /// are gone are left out and named in [`LoadedPreset::missing`] instead of failing.
    pub fn load_preset(&self, name: &str) -> Result<LoadedPreset> {
        let name = name.trim();
        let row: Option<(String, i64, i64)> = self
            .conn
            .query_row(
                "SELECT weights_json, created_ms, updated_ms FROM ensemble_presets
                 WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((json, created_ms, updated_ms)) = row else {
            return Err(self.preset_err(PresetError::NotFound(name.to_string())));
        };
        let all = from_json(&json).map_err(|source| {
            self.preset_err(PresetError::Corrupt {
                name: name.to_string(),
                source,
            })
        })?;
        // Written through `save_preset`, so this only fails for a row edited by hand.
        check_terms(name, &all).map_err(|e| self.preset_err(e))?;
        let have: std::collections::HashSet<String> = self.stream_names()?.into_iter().collect();
        let mut missing: Vec<String> = Vec::new();
        let mut terms = Vec::with_capacity(all.len());
        for t in all {
            let gone: Vec<String> = t
                .streams()
                .filter(|s| !have.contains(*s))
                .map(str::to_string)
                .collect();
            if gone.is_empty() {
                terms.push(t);
            } else {
                missing.extend(gone);
            }
        }
        missing.sort();
        missing.dedup();
        Ok(LoadedPreset {
            info: PresetInfo {
                name: name.to_string(),
                created_ms,
                updated_ms,
            },
            terms,
            missing,
        })
    }

    /// Deletes a preset; forgets it as the last loaded one in the same transaction, so the app
    /// never reopens on a preset that is gone.
    pub fn delete_preset(&mut self, name: &str) -> Result<()> {
        let name = name.trim();
        let db = self.db_path.clone();
        let sql = |e| Error::Sqlite {
            path: db.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let n = tx
            .execute(
                "DELETE FROM ensemble_presets WHERE name = ?1",
                params![name],
            )
            .map_err(sql)?;
        if n == 0 {
            return Err(Error::Preset {
                path: db.clone(),
                source: PresetError::NotFound(name.to_string()),
            });
        }
        tx.execute(
            "DELETE FROM meta WHERE key = ?1 AND value = ?2",
            params![LAST_PRESET_KEY, name],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// The preset the Ensemble tab loaded last, if it still exists.
    pub fn last_preset(&self) -> Result<Option<String>> {
        self.meta_get(LAST_PRESET_KEY)
    }

    /// Remembers (or with `None` forgets) the preset the Ensemble tab loaded last.
    pub fn set_last_preset(&self, name: Option<&str>) -> Result<()> {
        match name {
            Some(n) => self.meta_put(LAST_PRESET_KEY, n.trim()),
            None => self.meta_delete(LAST_PRESET_KEY),
        }
    }

    /// The weights the Ensemble tab had when it last changed them; no preset name, no checks
    /// against the streams (the tab matches them by name).
    pub fn working_weights(&self) -> Result<Option<Vec<PresetTerm>>> {
        let Some(json) = self.meta_get(WORKING_KEY)? else {
            return Ok(None);
        };
        from_json(&json).map(Some).map_err(|source| {
            self.preset_err(PresetError::Corrupt {
                name: "(working weights)".into(),
                source,
            })
        })
    }

    pub fn set_working_weights(&self, terms: &[PresetTerm]) -> Result<()> {
        let json = to_json(terms).map_err(|source| {
            self.preset_err(PresetError::Corrupt {
                name: "(working weights)".into(),
                source,
            })
        })?;
        self.meta_put(WORKING_KEY, &json)
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    fn meta_put(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    fn meta_delete(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", params![key])
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }
}
