//! mmaction2 video list files: `<clip>.<ext> <label>` per line (mmaction2
//! `VideoDataset.load_data_list`), as MA-52 and MM-Gesture's clip lists are distributed. Each
//! clip file is one sample spanning the whole file.

use std::path::{Path, PathBuf};

use super::{media_ref, probe_media, split_clip_id, split_from_path, Options};
use crate::dataset::{NewSample, NewVideo, Split};
use crate::store::{Dataset, ImportReport};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Path as written in the list (relative to the video root).
    pub file: String,
    /// File stem: the clip id.
    pub clip_id: String,
    pub label: u32,
}

/// Parses a list file; any malformed line is an error naming the line.
pub fn parse_list(path: &Path) -> Result<Vec<ListEntry>> {
    let text = super::read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (file, label) = line.rsplit_once(char::is_whitespace).ok_or_else(|| {
            Error::format(
                path,
                format!("line {}", i + 1),
                format!("expected `<clip file> <label>`, found {line:?}"),
            )
        })?;
        let label = label.trim().parse::<u32>().map_err(|_| {
            Error::format(
                path,
                format!("line {}", i + 1),
                format!("expected an integer label after the file name, found {label:?}"),
            )
        })?;
        let file = file.trim().to_string();
        let clip_id = Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.clone());
        out.push(ListEntry {
            file,
            clip_id,
            label,
        });
    }
    Ok(out)
}

pub fn read(
    list: &Path,
    ds: &Dataset,
    opts: &Options,
    report: &mut ImportReport,
) -> Result<Vec<NewVideo>> {
    let entries = parse_list(list)?;
    let root: PathBuf = opts
        .video_root
        .clone()
        .or_else(|| list.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let split = opts
        .split
        .or_else(|| split_from_path(list))
        .unwrap_or(Split::None);
    let classes = ds.taxonomy().len() as u32;
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let what = format!("{}: line {} ({})", list.display(), i + 1, e.file);
        if e.label >= classes {
            report.skip(
                what,
                format!(
                    "label {} is out of range for taxonomy {} (0..{})",
                    e.label,
                    ds.taxonomy().name,
                    classes - 1
                ),
            );
            continue;
        }
        let path = root.join(&e.file);
        if !path.is_file() {
            report.skip(what, format!("video file {} not found", path.display()));
            continue;
        }
        let info = match probe_media(&path) {
            Ok(info) if info.frames > 0 => info,
            Ok(_) => {
                report.skip(what, "video has no frames");
                continue;
            }
            Err(err) => {
                report.skip(what, err);
                continue;
            }
        };
        // iMiGUE clip names are `{VID}_{row}`: keep the subject so splits by subject work.
        let subject = split_clip_id(&e.clip_id)
            .map(|(v, _)| v.to_string())
            .unwrap_or_else(|| e.clip_id.clone());
        out.push(NewVideo {
            vid: e.clip_id.clone(),
            subject,
            media_path: Some(media_ref(ds, &path)),
            n_frames: info.frames,
            width: Some(info.width),
            height: Some(info.height),
            fps: info.fps,
            keypoints: None,
            samples: vec![NewSample {
                clip_id: e.clip_id,
                row_index: 0,
                start: 0,
                end: info.frames - 1,
                label: Some(e.label),
                split,
            }],
        });
    }
    Ok(out)
}
