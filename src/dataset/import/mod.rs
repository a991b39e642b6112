//! Importers: each reads one exchange format into [`NewVideo`]s and hands them to the store.
//! A bad video, row or clip is skipped with a reason in the [`ImportReport`]; only a source that
//! cannot be read at all is an error.

pub mod imigue;
pub mod mmaction;
pub mod openpose;
pub mod pyskl;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::dataset::Split;
use crate::store::{Dataset, ImportReport};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// iMiGUE / MiGA release layout: `{VID}/{VID}_label.csv` + `{VID}_openpose.xlsx|csv`.
    Imigue,
    /// pyskl annotation pickle.
    Pyskl,
    /// A folder of OpenPose JSON files, one per frame.
    OpenposeJson,
    /// mmaction2 video list: `<clip>.mp4 <label>` per line.
    MmactionList,
}

/// Options shared by the importers; each uses the ones that apply to it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// mmaction2 list files assigning clip ids to splits (iMiGUE layout).
    pub split_lists: Vec<(Split, PathBuf)>,
    /// Split for sources that carry none (OpenPose folders, list files with no split in name).
    pub split: Option<Split>,
    /// Class for sources that carry none (an OpenPose folder).
    pub label: Option<u32>,
    /// Where clip videos live (mmaction lists), if not beside the list file.
    pub video_root: Option<PathBuf>,
    /// A video file to attach (OpenPose folder).
    pub video: Option<PathBuf>,
}

/// Imports `src` into `ds` and returns what was added and skipped.
pub fn import(
    format: Format,
    src: &Path,
    ds: &mut Dataset,
    opts: &Options,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let videos = match format {
        Format::Imigue => imigue::read(src, ds, opts, &mut report)?,
        Format::Pyskl => pyskl::read(src, ds.taxonomy(), &mut report)?,
        Format::OpenposeJson => vec![openpose::read(src, ds, opts, &mut report)?],
        Format::MmactionList => mmaction::read(src, ds, opts, &mut report)?,
    };
    for v in &videos {
        ds.add_video(v, &mut report)?;
    }
    Ok(report)
}

/// Reads mmaction2 list files (`<clip>.<ext> <label>` per line) into clip id → split.
pub fn read_split_lists(lists: &[(Split, PathBuf)]) -> Result<HashMap<String, Split>> {
    let mut out = HashMap::new();
    for (split, path) in lists {
        for entry in mmaction::parse_list(path)? {
            out.insert(entry.clip_id, *split);
        }
    }
    Ok(out)
}

/// Store path for a media file: relative to the dataset folder when it is inside it.
pub fn media_ref(ds: &Dataset, path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let root = std::fs::canonicalize(ds.root()).unwrap_or_else(|_| ds.root().to_path_buf());
    match abs.strip_prefix(&root) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => abs.to_string_lossy().into_owned(),
    }
}

/// Frame count, size and rate of a video file, when FFmpeg support is built in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaInfo {
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
}

#[cfg(feature = "video")]
pub fn probe_media(path: &Path) -> Result<MediaInfo> {
    crate::media::probe(path)
}

#[cfg(not(feature = "video"))]
pub fn probe_media(path: &Path) -> Result<MediaInfo> {
    Err(Error::Invalid(format!(
        "{}: reading video files needs mgscope built with the `video` feature",
        path.display()
    )))
}

pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!("byte {}", e.utf8_error().valid_up_to()),
            "expected UTF-8 text",
        )
    })
}

/// Splits a clip id `{VID}_{n}` into its video id and row.
pub fn split_clip_id(clip: &str) -> Option<(&str, u32)> {
    let (vid, row) = clip.rsplit_once('_')?;
    row.parse().ok().map(|r| (vid, r))
}

/// Split named by a path component (`imigue_skeleton_train`, `..._validate`, `..._test`).
pub fn split_from_path(path: &Path) -> Option<Split> {
    path.components().rev().find_map(|c| {
        let s = c.as_os_str().to_string_lossy().to_ascii_lowercase();
        ["train", "validate", "val", "test"].iter().find_map(|key| {
            let hit = s == *key
                || s.ends_with(&format!("_{key}"))
                || s.starts_with(&format!("{key}_"))
                || s.contains(&format!("_{key}_"));
            if hit {
                Split::parse(key)
            } else {
                None
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_in_paths() {
        assert_eq!(
            split_from_path(Path::new("/d/imigue_skeleton_validate/0001")),
            Some(Split::Val)
        );
        assert_eq!(
            split_from_path(Path::new("x/imigue_skeleton_train/0003")),
            Some(Split::Train)
        );
        assert_eq!(
            split_from_path(Path::new("iMiGUE_test_clips_list.txt")),
            Some(Split::Test)
        );
        assert_eq!(split_from_path(Path::new("/data/contest/0003")), None);
        assert_eq!(split_clip_id("0001_12"), Some(("0001", 12)));
        assert_eq!(split_clip_id("a_b_3"), Some(("a_b", 3)));
        assert_eq!(split_clip_id("test0001"), None);
    }
}
