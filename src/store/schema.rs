//! Schema versions and migrations. `PRAGMA user_version` is the schema version; each
//! migration runs in its own transaction and bumps it, so a dataset from any earlier mgscope
//! opens in a later one.

use std::path::Path;

use rusqlite::Connection;

use crate::{Error, Result};

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    "CREATE TABLE meta(
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE videos(
        id INTEGER PRIMARY KEY,
        vid TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        media_path TEXT,
        n_frames INTEGER NOT NULL CHECK(n_frames >= 0),
        width INTEGER,
        height INTEGER,
        fps REAL
    );
    CREATE TABLE keypoints(
        video_id INTEGER PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
        layout TEXT NOT NULL,
        frames INTEGER NOT NULL,
        persons INTEGER NOT NULL,
        joints INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE samples(
        id INTEGER PRIMARY KEY,
        clip_id TEXT NOT NULL UNIQUE,
        video_id INTEGER NOT NULL REFERENCES videos(id),
        row_index INTEGER NOT NULL,
        start_frame INTEGER NOT NULL CHECK(start_frame >= 0),
        end_frame INTEGER NOT NULL,
        label INTEGER,
        split TEXT NOT NULL CHECK(split IN ('train', 'val', 'test', 'none')),
        note TEXT NOT NULL DEFAULT '',
        reviewed INTEGER NOT NULL DEFAULT 0,
        imported_label INTEGER,
        CHECK(end_frame >= start_frame)
    );
    CREATE INDEX samples_video ON samples(video_id, row_index);
    CREATE TABLE events(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sample_id INTEGER NOT NULL REFERENCES samples(id),
        kind TEXT NOT NULL CHECK(kind IN ('label', 'bounds', 'note', 'reviewed')),
        old_value TEXT NOT NULL,
        new_value TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        author TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'done' CHECK(state IN ('done', 'undone', 'discarded')),
        changed_ms INTEGER
    );
    CREATE INDEX events_sample ON events(sample_id);
    CREATE INDEX events_state ON events(state, id);",
    // 1 → 2: derived data cached per video (frame index, modality outputs), each stamped with
    // the media file's size and mtime so a changed file invalidates it.
    "CREATE TABLE video_cache(
        video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        stamp TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY(video_id, kind)
    );",
    // 2 → 3: score streams (one model's per-clip class probabilities), keyed by clip id.
    "CREATE TABLE score_streams(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        classes INTEGER NOT NULL,
        source TEXT NOT NULL,
        report TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE score_rows(
        stream_id INTEGER NOT NULL REFERENCES score_streams(id) ON DELETE CASCADE,
        clip_id TEXT NOT NULL,
        probs BLOB NOT NULL,
        PRIMARY KEY(stream_id, clip_id)
    );",
    // 3 → 4: named ensemble weight sets. One row per preset, its terms as JSON: a preset is
    // written, read and deleted whole, composite terms nest (parts with sub-weights), and the
    // stream names are deliberately not foreign keys, so a preset outlives the deletion or
    // re-import of a stream it names (loading reports the missing ones).
    "CREATE TABLE ensemble_presets(
        name TEXT PRIMARY KEY CHECK(length(name) > 0),
        weights_json TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );",
];

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let sql = |e| Error::Sqlite {
        path: path.to_path_buf(),
        source: e,
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version > CURRENT_VERSION {
        return Err(Error::Invalid(format!(
            "{}: schema version {version} is newer than this mgscope understands ({CURRENT_VERSION}); upgrade mgscope",
            path.display()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(step).map_err(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
    }
    Ok(())
}
