//! The dataset store: one SQLite file (`mgscope.sqlite`) per dataset folder.
//!
//! WAL mode with `synchronous=FULL`: a change is acknowledged only after its transaction is
//! durable, so neither a killed process nor a power cut loses it. Every user decision is one
//! transaction that writes the new state and an event row; undo/redo walk that table, so they
//! survive restarts. Ensemble weight presets and the Ensemble tab's working weights live here
//! too (`presets`), so tuning is as durable as labelling.

mod presets;
mod schema;
mod scores;

pub use presets::{
    LoadedPreset, PresetError, PresetInfo, PresetTerm, SaveMode, Saved, MAX_PRESET_NAME,
};
pub use scores::StoredStream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::dataset::{Keypoints, NewVideo, Sample, Split, Taxonomy, Video};
use crate::util::{format_utc, now_ms};
use crate::{Error, Result};

pub const DB_FILE: &str = "mgscope.sqlite";

/// What a user can change about a sample; each change is one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Label,
    Bounds,
    Note,
    Reviewed,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Label => "label",
            EventKind::Bounds => "bounds",
            EventKind::Note => "note",
            EventKind::Reviewed => "reviewed",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        match s {
            "label" => Some(EventKind::Label),
            "bounds" => Some(EventKind::Bounds),
            "note" => Some(EventKind::Note),
            "reviewed" => Some(EventKind::Reviewed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Applied and part of the undo history.
    Done,
    /// Reverted by undo; redo re-applies it.
    Undone,
    /// Undone, then superseded by a new change (the redo branch was dropped).
    Discarded,
}

impl EventState {
    fn as_str(self) -> &'static str {
        match self {
            EventState::Done => "done",
            EventState::Undone => "undone",
            EventState::Discarded => "discarded",
        }
    }

    fn parse(s: &str) -> Option<EventState> {
        match s {
            "done" => Some(EventState::Done),
            "undone" => Some(EventState::Undone),
            "discarded" => Some(EventState::Discarded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub clip_id: String,
    pub kind: EventKind,
    pub old_value: String,
    pub new_value: String,
    pub time_ms: i64,
    pub author: String,
    pub state: EventState,
}

impl Event {
    pub fn time_utc(&self) -> String {
        format_utc(self.time_ms)
    }
}

/// Per-split, per-class counts and keypoint coverage, as `mgscope info` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub path: PathBuf,
    pub taxonomy: String,
    pub videos: usize,
    pub samples: usize,
    pub frames_in_videos: u64,
    pub frames_in_samples: u64,
    /// split → number of samples.
    pub per_split: BTreeMap<String, usize>,
    /// split → class index (or "unlabeled") → number of samples.
    pub per_split_class: BTreeMap<String, BTreeMap<String, usize>>,
    pub keypoint_points: u64,
    pub keypoint_missing: u64,
    pub videos_without_keypoints: Vec<String>,
    pub videos_without_media: usize,
}

/// What an import added and what it skipped, and why.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    pub videos_added: usize,
    pub samples_added: usize,
    /// (what, why) for each video, row or clip that was not imported.
    pub skipped: Vec<(String, String)>,
}

impl ImportReport {
    pub fn skip(&mut self, what: impl Into<String>, why: impl std::fmt::Display) {
        self.skipped.push((what.into(), why.to_string()));
    }
}

pub struct Dataset {
    root: PathBuf,
    db_path: PathBuf,
    conn: Connection,
    taxonomy: Taxonomy,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset").field("root", &self.root).finish()
    }
}

impl Dataset {
    /// Opens the dataset in `dir`, creating the folder and the database if needed.
    pub fn open_or_create(dir: impl AsRef<Path>, taxonomy: &str) -> Result<Dataset> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Self::open_inner(dir, Some(taxonomy))
    }

    /// Opens an existing dataset; a folder without `mgscope.sqlite` is an error.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref();
        if !dir.join(DB_FILE).is_file() {
            return Err(Error::NotFound(format!(
                "dataset {} (no {DB_FILE} in it; create one with `mgscope import` or `mgscope demo`)",
                dir.display()
            )));
        }
        Self::open_inner(dir, None)
    }

    fn open_inner(dir: &Path, taxonomy: Option<&str>) -> Result<Dataset> {
        let db_path = dir.join(DB_FILE);
        let sql = |e| Error::Sqlite {
            path: db_path.clone(),
            source: e,
        };
        let mut conn = Connection::open(&db_path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        schema::migrate(&mut conn, &db_path)?;
        let stored: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'taxonomy'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        let name = match (stored, taxonomy) {
            (Some(s), _) => s,
            (None, t) => {
                let t = t.unwrap_or("imigue").to_string();
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('taxonomy', ?1)",
                    params![t],
                )
                .map_err(sql)?;
                t
            }
        };
        let taxonomy = Taxonomy::by_name(&name)?;
        Ok(Dataset {
            root: dir.to_path_buf(),
            db_path,
            conn,
            taxonomy,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    fn sql(&self, e: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.db_path.clone(),
            source: e,
        }
    }

    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    /// Adds one video with its keypoints and samples in one transaction. A clip id that is
    /// already in the dataset is skipped (never overwritten: that would lose its labels).
    pub fn add_video(&mut self, v: &NewVideo, report: &mut ImportReport) -> Result<()> {
        let db_path = self.db_path.clone();
        let sql = |e| Error::Sqlite {
            path: db_path.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM videos WHERE vid = ?1",
                params![v.vid],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        let video_id = match existing {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO videos(vid, subject, media_path, n_frames, width, height, fps)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        v.vid,
                        v.subject,
                        v.media_path,
                        v.n_frames,
                        v.width,
                        v.height,
                        v.fps
                    ],
                )
                .map_err(sql)?;
                report.videos_added += 1;
                tx.last_insert_rowid()
            }
        };
        if let Some(k) = &v.keypoints {
            tx.execute(
                "INSERT OR REPLACE INTO keypoints(video_id, layout, frames, persons, joints, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    video_id,
                    k.layout,
                    k.frames as i64,
                    k.persons as i64,
                    k.joints as i64,
                    k.to_blob()
                ],
            )
            .map_err(sql)?;
        }
        for s in &v.samples {
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM samples WHERE clip_id = ?1)",
                    params![s.clip_id],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if taken {
                report.skip(
                    s.clip_id.clone(),
                    "a sample with this clip id is already in the dataset (kept as it is)",
                );
                continue;
            }
            tx.execute(
                "INSERT INTO samples(clip_id, video_id, row_index, start_frame, end_frame, label,
                                     split, imported_label)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
                params![
                    s.clip_id,
                    video_id,
                    s.row_index,
                    s.start,
                    s.end,
                    s.label,
                    s.split.as_str()
                ],
            )
            .map_err(sql)?;
            report.samples_added += 1;
        }
        tx.commit().map_err(sql)
    }

    fn row_to_sample(r: &rusqlite::Row<'_>) -> rusqlite::Result<Sample> {
        let split: String = r.get(7)?;
        Ok(Sample {
            id: r.get(0)?,
            clip_id: r.get(1)?,
            video: r.get(2)?,
            row_index: r.get(3)?,
            start: r.get(4)?,
            end: r.get(5)?,
            label: r.get(6)?,
            split: Split::parse(&split).unwrap_or(Split::None),
            note: r.get(8)?,
            reviewed: r.get(9)?,
            imported_label: r.get(10)?,
        })
    }

    const SAMPLE_COLS: &'static str = "s.id, s.clip_id, v.vid, s.row_index, s.start_frame,
        s.end_frame, s.label, s.split, s.note, s.reviewed, s.imported_label
        FROM samples s JOIN videos v ON v.id = s.video_id";

    /// All samples, by video then label-csv row.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let q = format!("SELECT {} ORDER BY v.vid, s.row_index", Self::SAMPLE_COLS);
        let mut st = self.conn.prepare(&q).map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], Self::row_to_sample)
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    pub fn sample(&self, clip_id: &str) -> Result<Sample> {
        let q = format!("SELECT {} WHERE s.clip_id = ?1", Self::SAMPLE_COLS);
        self.conn
            .query_row(&q, params![clip_id], Self::row_to_sample)
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "sample {clip_id:?} in dataset {}",
                    self.root.display()
                ))
            })
    }

    pub fn videos(&self) -> Result<Vec<Video>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, vid, subject, media_path, n_frames, width, height, fps
                 FROM videos ORDER BY vid",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Video {
                    id: r.get(0)?,
                    vid: r.get(1)?,
                    subject: r.get(2)?,
                    media_path: r.get(3)?,
                    n_frames: r.get(4)?,
                    width: r.get(5)?,
                    height: r.get(6)?,
                    fps: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// Absolute path of a video's media file, if it has one.
    pub fn media_path(&self, v: &Video) -> Option<PathBuf> {
        v.media_path.as_ref().map(|p| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.root.join(p)
            }
        })
    }

    /// The whole video's keypoints, if any were imported.
    pub fn video_keypoints(&self, vid: &str) -> Result<Option<Keypoints>> {
        let row = self
            .conn
            .query_row(
                "SELECT k.layout, k.frames, k.persons, k.joints, k.data
                 FROM keypoints k JOIN videos v ON v.id = k.video_id WHERE v.vid = ?1",
                params![vid],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        match row {
            None => Ok(None),
            Some((layout, f, p, j, blob)) => {
                Keypoints::from_blob(&layout, f as usize, p as usize, j as usize, &blob)
                    .map(Some)
                    .map_err(|e| {
                        Error::Invalid(format!("{}: video {vid}: {e}", self.db_path.display()))
                    })
            }
        }
    }

    /// The keypoints of a sample's frames.
    pub fn sample_keypoints(&self, s: &Sample) -> Result<Option<Keypoints>> {
        Ok(self
            .video_keypoints(&s.video)?
            .map(|k| k.slice_frames(s.start as usize, s.end as usize)))
    }

    fn sample_row(&self, clip_id: &str) -> Result<(i64, u32, u32, u32)> {
        let s = self.sample(clip_id)?;
        let n: u32 = self
            .conn
            .query_row(
                "SELECT n_frames FROM videos WHERE vid = ?1",
                params![s.video],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        Ok((s.id, s.start, s.end, n))
    }

    /// Writes a new state and its event in one durable transaction; drops the redo branch.
    fn record(
        &mut self,
        sample_id: i64,
        kind: EventKind,
        old: &str,
        new: &str,
        author: &str,
    ) -> Result<i64> {
        let db_path = self.db_path.clone();
        let sql = |e| Error::Sqlite {
            path: db_path.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        apply_value(&tx, sample_id, kind, new).map_err(sql)?;
        let now = now_ms();
        tx.execute(
            "UPDATE events SET state = 'discarded', changed_ms = ?1 WHERE state = 'undone'",
            params![now],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT INTO events(sample_id, kind, old_value, new_value, time_ms, author, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'done')",
            params![sample_id, kind.as_str(), old, new, now, author],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql)?;
        Ok(id)
    }

    /// Sets a sample's class (and optionally its note, as a second event). Returns the event id.
    pub fn relabel(&mut self, clip_id: &str, class: u32, author: &str) -> Result<i64> {
        if class as usize >= self.taxonomy.len() {
            return Err(Error::Invalid(format!(
                "class {class} is out of range for taxonomy {} (0..{})",
                self.taxonomy.name,
                self.taxonomy.len() - 1
            )));
        }
        let s = self.sample(clip_id)?;
        let old = s.label.map(|l| l.to_string()).unwrap_or_default();
        self.record(s.id, EventKind::Label, &old, &class.to_string(), author)
    }

    /// Moves a sample's boundaries. `start..=end` must lie inside its video.
    pub fn set_bounds(&mut self, clip_id: &str, start: u32, end: u32, author: &str) -> Result<i64> {
        let (id, old_start, old_end, n_frames) = self.sample_row(clip_id)?;
        if end < start {
            return Err(Error::Invalid(format!(
                "sample {clip_id}: end {end} is before start {start}"
            )));
        }
        if end >= n_frames {
            return Err(Error::Invalid(format!(
                "sample {clip_id}: end {end} is beyond its video's last frame {}",
                n_frames.saturating_sub(1)
            )));
        }
        self.record(
            id,
            EventKind::Bounds,
            &format!("{old_start},{old_end}"),
            &format!("{start},{end}"),
            author,
        )
    }

    pub fn set_note(&mut self, clip_id: &str, note: &str, author: &str) -> Result<i64> {
        let s = self.sample(clip_id)?;
        self.record(s.id, EventKind::Note, &s.note, note, author)
    }

    pub fn set_reviewed(&mut self, clip_id: &str, reviewed: bool, author: &str) -> Result<i64> {
        let s = self.sample(clip_id)?;
        self.record(
            s.id,
            EventKind::Reviewed,
            if s.reviewed { "1" } else { "0" },
            if reviewed { "1" } else { "0" },
            author,
        )
    }

    /// Reverts the latest applied change. Returns it, or `None` when there is nothing to undo.
    pub fn undo(&mut self) -> Result<Option<Event>> {
        self.walk_history(true)
    }

    /// Re-applies the most recently undone change.
    pub fn redo(&mut self) -> Result<Option<Event>> {
        self.walk_history(false)
    }

    fn walk_history(&mut self, undo: bool) -> Result<Option<Event>> {
        let db_path = self.db_path.clone();
        let sql = |e| Error::Sqlite {
            path: db_path.clone(),
            source: e,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Undo takes the newest applied event; redo the oldest undone one, which is the one
        // undone last, because undo walks backwards.
        let q = if undo {
            "SELECT id FROM events WHERE state = 'done' ORDER BY id DESC LIMIT 1"
        } else {
            "SELECT id FROM events WHERE state = 'undone' ORDER BY id ASC LIMIT 1"
        };
        let Some(id) = tx
            .query_row(q, [], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(sql)?
        else {
            return Ok(None);
        };
        let ev = load_event(&tx, id).map_err(sql)?;
        let (value, state) = if undo {
            (&ev.old_value, EventState::Undone)
        } else {
            (&ev.new_value, EventState::Done)
        };
        let sample_id: i64 = tx
            .query_row("SELECT sample_id FROM events WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        apply_value(&tx, sample_id, ev.kind, value).map_err(sql)?;
        tx.execute(
            "UPDATE events SET state = ?1, changed_ms = ?2 WHERE id = ?3",
            params![state.as_str(), now_ms(), id],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Some(Event { state, ..ev }))
    }

    /// The event history, oldest first; optionally for one sample.
    pub fn history(&self, clip_id: Option<&str>) -> Result<Vec<Event>> {
        let mut ids = Vec::new();
        {
            let mut st = self
                .conn
                .prepare(
                    "SELECT e.id FROM events e JOIN samples s ON s.id = e.sample_id
                     WHERE ?1 IS NULL OR s.clip_id = ?1 ORDER BY e.id",
                )
                .map_err(|e| self.sql(e))?;
            let rows = st
                .query_map(params![clip_id], |r| r.get::<_, i64>(0))
                .map_err(|e| self.sql(e))?;
            for r in rows {
                ids.push(r.map_err(|e| self.sql(e))?);
            }
        }
        if let Some(c) = clip_id {
            // Distinguish "no events" from "no such sample".
            self.sample(c)?;
        }
        ids.into_iter()
            .map(|id| load_event(&self.conn, id).map_err(|e| self.sql(e)))
            .collect()
    }

    /// A cached blob for a video, if present and made from the same file (`stamp`).
    pub fn cache_get(&self, vid: &str, kind: &str, stamp: &str) -> Result<Option<Vec<u8>>> {
        self.conn
            .query_row(
                "SELECT c.data FROM video_cache c JOIN videos v ON v.id = c.video_id
                 WHERE v.vid = ?1 AND c.kind = ?2 AND c.stamp = ?3",
                params![vid, kind, stamp],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub fn cache_put(&self, vid: &str, kind: &str, stamp: &str, data: &[u8]) -> Result<()> {
        let n = self
            .conn
            .execute(
                "INSERT OR REPLACE INTO video_cache(video_id, kind, stamp, data)
                 SELECT id, ?2, ?3, ?4 FROM videos WHERE vid = ?1",
                params![vid, kind, stamp, data],
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "video {vid:?} in dataset {}",
                self.root.display()
            )));
        }
        Ok(())
    }

    pub fn summary(&self) -> Result<Summary> {
        let samples = self.samples()?;
        let videos = self.videos()?;
        let mut per_split = BTreeMap::new();
        let mut per_split_class: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut frames_in_samples = 0u64;
        for s in &samples {
            *per_split.entry(s.split.to_string()).or_insert(0) += 1;
            let class = s
                .label
                .map(|l| l.to_string())
                .unwrap_or_else(|| "unlabeled".into());
            *per_split_class
                .entry(s.split.to_string())
                .or_default()
                .entry(class)
                .or_insert(0) += 1;
            frames_in_samples += u64::from(s.frames());
        }
        let mut keypoint_points = 0u64;
        let mut keypoint_missing = 0u64;
        let mut videos_without_keypoints = Vec::new();
        for v in &videos {
            match self.video_keypoints(&v.vid)? {
                Some(k) => {
                    keypoint_points += k.point_count() as u64;
                    keypoint_missing += k.missing_count() as u64;
                }
                None => videos_without_keypoints.push(v.vid.clone()),
            }
        }
        Ok(Summary {
            path: self.root.clone(),
            taxonomy: self.taxonomy.name.clone(),
            videos: videos.len(),
            samples: samples.len(),
            frames_in_videos: videos.iter().map(|v| u64::from(v.n_frames)).sum(),
            frames_in_samples,
            per_split,
            per_split_class,
            keypoint_points,
            keypoint_missing,
            videos_without_keypoints,
            videos_without_media: videos.iter().filter(|v| v.media_path.is_none()).count(),
        })
    }
}

fn load_event(conn: &Connection, id: i64) -> rusqlite::Result<Event> {
    conn.query_row(
        "SELECT e.id, s.clip_id, e.kind, e.old_value, e.new_value, e.time_ms, e.author, e.state
         FROM events e JOIN samples s ON s.id = e.sample_id WHERE e.id = ?1",
        [id],
        |r| {
            let kind: String = r.get(2)?;
            let state: String = r.get(7)?;
            Ok(Event {
                id: r.get(0)?,
                clip_id: r.get(1)?,
                kind: EventKind::parse(&kind).ok_or_else(|| bad_column(2, &kind))?,
                old_value: r.get(3)?,
                new_value: r.get(4)?,
                time_ms: r.get(5)?,
                author: r.get(6)?,
                state: EventState::parse(&state).ok_or_else(|| bad_column(7, &state))?,
            })
        },
    )
}

fn bad_column(i: usize, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("unexpected value {v:?}").into(),
    )
}

/// Writes one stored value (as the events table keeps it) into the sample's row.
fn apply_value(
    conn: &Connection,
    sample_id: i64,
    kind: EventKind,
    value: &str,
) -> rusqlite::Result<()> {
    match kind {
        EventKind::Label => {
            let label: Option<i64> = if value.is_empty() {
                None
            } else {
                Some(value.parse().map_err(|_| bad_column(4, value))?)
            };
            conn.execute(
                "UPDATE samples SET label = ?1 WHERE id = ?2",
                params![label, sample_id],
            )?;
        }
        EventKind::Bounds => {
            let (a, b) = value.split_once(',').ok_or_else(|| bad_column(4, value))?;
            let a: i64 = a.parse().map_err(|_| bad_column(4, value))?;
            let b: i64 = b.parse().map_err(|_| bad_column(4, value))?;
            conn.execute(
                "UPDATE samples SET start_frame = ?1, end_frame = ?2 WHERE id = ?3",
                params![a, b, sample_id],
            )?;
        }
        EventKind::Note => {
            conn.execute(
                "UPDATE samples SET note = ?1 WHERE id = ?2",
                params![value, sample_id],
            )?;
        }
        EventKind::Reviewed => {
            conn.execute(
                "UPDATE samples SET reviewed = ?1 WHERE id = ?2",
                params![value == "1", sample_id],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
