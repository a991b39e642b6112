//! Score streams in the dataset, so the app and the CLI see the same ones.

use rusqlite::{params, OptionalExtension};

use super::Dataset;
use crate::util::now_ms;
use crate::{Error, Result};

/// A stream as stored: row-major `[clip_ids.len(), classes]` probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    pub name: String,
    pub classes: usize,
    pub clip_ids: Vec<String>,
    pub probs: Vec<f32>,
    /// Where it came from (file path and format).
    pub source: String,
    /// What loading found (logits detected, softmax applied …), as JSON.
    pub report: String,
}

impl Dataset {
    /// Stores a stream, replacing one of the same name, in one transaction.
    pub fn put_stream(&mut self, s: &StoredStream) -> Result<()> {
        if s.probs.len() != s.clip_ids.len() * s.classes {
            return Err(Error::Invalid(format!(
                "stream {}: {} values for {} clips × {} classes",
                s.name,
                s.probs.len(),
                s.clip_ids.len(),
                s.classes
            )));
        }
        let db = self.db_path.clone();
        let sql = |e| Error::Sqlite {
            path: db.clone(),
            source: e,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM score_streams WHERE name = ?1", params![s.name])
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO score_streams(name, classes, source, report, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.name, s.classes as i64, s.source, s.report, now_ms()],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        {
            let mut st = tx
                .prepare("INSERT INTO score_rows(stream_id, clip_id, probs) VALUES (?1, ?2, ?3)")
                .map_err(sql)?;
            for (i, clip) in s.clip_ids.iter().enumerate() {
                let row = &s.probs[i * s.classes..(i + 1) * s.classes];
                let blob: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                st.execute(params![id, clip, blob]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Names of the stored streams, sorted.
    pub fn stream_names(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM score_streams ORDER BY name")
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    pub fn load_stream(&self, name: &str) -> Result<StoredStream> {
        let head: Option<(i64, i64, String, String)> = self
            .conn
            .query_row(
                "SELECT id, classes, source, report FROM score_streams WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((id, classes, source, report)) = head else {
            return Err(Error::NotFound(format!(
                "score stream {name:?} in dataset {}",
                self.root.display()
            )));
        };
        let classes = classes as usize;
        let mut st = self
            .conn
            .prepare("SELECT clip_id, probs FROM score_rows WHERE stream_id = ?1 ORDER BY rowid")
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(params![id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = StoredStream {
            name: name.to_string(),
            classes,
            clip_ids: Vec::new(),
            probs: Vec::new(),
            source,
            report,
        };
        for r in rows {
            let (clip, blob) = r.map_err(|e| self.sql(e))?;
            if blob.len() != classes * 4 {
                return Err(Error::Invalid(format!(
                    "{}: stream {name}, clip {clip}: {} bytes of scores, expected {classes} × f32",
                    self.db_path.display(),
                    blob.len()
                )));
            }
            out.probs.extend(
                blob.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            out.clip_ids.push(clip);
        }
        Ok(out)
    }
}
