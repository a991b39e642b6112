//! The iMiGUE / MiGA release layout: per video `{VID}/{VID}_label.csv` (rows `class,start,end`,
//! no header, 0-based inclusive frames; classes 1..31 and 99) and `{VID}/{VID}_openpose.xlsx`
//! (no header, one row per frame, 137 × (x, y, confidence)) or its CSV export
//! `{VID}_openpose.csv`. Mirrors MM-Gesture's `dataset/tools/processing_Skeleton.ipynb`:
//! clip id `{VID}_{row}`, label `k-1` / `99 → 31`, the 36 groups of `assets/skeleton`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use calamine::{Data, Reader};

use super::{media_ref, probe_media, read_split_lists, split_from_path, Options};
use crate::dataset::skeleton::OPENPOSE_GROUPS;
use crate::dataset::{Keypoints, NewSample, NewVideo, Skeleton, Split, Taxonomy};
use crate::store::{Dataset, ImportReport};
use crate::{Error, Result};

pub const COLUMNS: usize = OPENPOSE_GROUPS * 3;
const VIDEO_EXTS: [&str; 6] = ["mp4", "avi", "mkv", "mov", "webm", "m4v"];

/// One video folder of the release.
#[derive(Debug, Clone)]
pub struct VideoFolder {
    pub vid: String,
    pub label_csv: PathBuf,
    pub keypoints: Option<PathBuf>,
    pub media: Option<PathBuf>,
}

/// Finds every `{VID}_label.csv` under `src` (the release nests them 2–3 folders deep).
pub fn find_videos(src: &Path) -> Result<Vec<VideoFolder>> {
    let mut out = Vec::new();
    walk(src, 0, &mut out)?;
    out.sort_by(|a, b| a.vid.cmp(&b.vid).then(a.label_csv.cmp(&b.label_csv)));
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<VideoFolder>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            subdirs.push(path);
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(vid) = name.strip_suffix("_label.csv") else {
            continue;
        };
        let with = |suffix: &str| {
            let p = dir.join(format!("{vid}{suffix}"));
            p.is_file().then_some(p)
        };
        let keypoints = with("_openpose.xlsx").or_else(|| with("_openpose.csv"));
        let media = VIDEO_EXTS.iter().find_map(|e| with(&format!(".{e}")));
        out.push(VideoFolder {
            vid: vid.to_string(),
            label_csv: path,
            keypoints,
            media,
        });
    }
    if depth < 4 {
        subdirs.sort();
        for d in subdirs {
            walk(&d, depth + 1, out)?;
        }
    }
    Ok(())
}

/// A label row: `class,start,end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRow {
    pub raw_class: u32,
    pub start: u32,
    pub end: u32,
}

/// Parses a label csv. A row that cannot be parsed is returned as an error string naming the
/// row, so the caller can skip it and go on.
pub fn parse_label_csv(path: &Path) -> Result<Vec<std::result::Result<LabelRow, String>>> {
    let text = super::read_to_string(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed = if cells.len() != 3 {
            Err(format!(
                "row {i}: expected 3 columns class,start,end, found {}",
                cells.len()
            ))
        } else {
            let num = |j: usize, what: &str| {
                // pandas writes integers as `12.0` when a column held a NaN once.
                let c = cells[j];
                c.parse::<u32>().or_else(|_| {
                    c.parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u32::MAX as f64)
                        .map(|f| f as u32)
                        .ok_or_else(|| {
                            format!("row {i}, column {j} ({what}): expected a non-negative integer, found {c:?}")
                        })
                })
            };
            (|| {
                Ok(LabelRow {
                    raw_class: num(0, "class")?,
                    start: num(1, "start")?,
                    end: num(2, "end")?,
                })
            })()
        };
        rows.push(parsed);
    }
    Ok(rows)
}

/// Reads a 137-group OpenPose sheet (xlsx or csv) and reduces each frame to `skeleton`.
pub fn read_openpose_sheet(path: &Path, skeleton: &Skeleton) -> Result<Keypoints> {
    let is_xlsx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx") || e.eq_ignore_ascii_case("xls"));
    let frames = if is_xlsx {
        read_xlsx_rows(path)?
    } else {
        read_csv_rows(path)?
    };
    let mut k = Keypoints::zeros(&skeleton.name, frames.len(), 1, skeleton.len());
    for (f, row) in frames.iter().enumerate() {
        let groups: Vec<[f32; 3]> = row
            .chunks_exact(3)
            .map(|c| [c[0] as f32, c[1] as f32, c[2] as f32])
            .collect();
        for (j, p) in skeleton.reduce_openpose(&groups).into_iter().enumerate() {
            k.set(f, 0, j, p);
        }
    }
    Ok(k)
}

fn read_xlsx_rows(path: &Path) -> Result<Vec<Vec<f64>>> {
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|e| Error::format(path, "workbook", format!("cannot open as xlsx: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| Error::format(path, "workbook", "has no worksheet"))?
        .map_err(|e| Error::format(path, "sheet 0", format!("cannot read: {e}")))?;
    let (row0, col0) = range.start().unwrap_or((0, 0));
    let mut rows: Vec<Vec<f64>> = vec![vec![0.0; COLUMNS]; row0 as usize];
    for (i, r) in range.rows().enumerate() {
        let frame = row0 as usize + i;
        let width = col0 as usize + r.len();
        if width < COLUMNS {
            return Err(Error::format(
                path,
                format!("row {frame}"),
                format!("expected {COLUMNS} columns (137 × x, y, confidence), found {width}"),
            ));
        }
        let mut vals = vec![0.0; COLUMNS];
        for (j, cell) in r.iter().enumerate() {
            let col = col0 as usize + j;
            if col >= COLUMNS {
                break;
            }
            vals[col] = match cell {
                Data::Float(f) => *f,
                Data::Int(n) => *n as f64,
                Data::String(s) => s.trim().parse::<f64>().map_err(|_| {
                    Error::format(
                        path,
                        format!("row {frame}, column {col}"),
                        format!("expected a number, found {s:?}"),
                    )
                })?,
                // An empty cell inside the sheet is a point OpenPose did not write; the
                // reference reads it as NaN and pyskl then treats the point as missing.
                Data::Empty => 0.0,
                other => {
                    return Err(Error::format(
                        path,
                        format!("row {frame}, column {col}"),
                        format!("expected a number, found {other:?}"),
                    ))
                }
            };
        }
        if i == 0
            && r.iter()
                .any(|c| matches!(c, Data::String(s) if s.trim().parse::<f64>().is_err()))
        {
            continue;
        }
        rows.push(vals);
    }
    Ok(rows)
}

fn read_csv_rows(path: &Path) -> Result<Vec<Vec<f64>>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| Error::format(path, format!("row {i}"), e.to_string()))?;
        if rec.len() != COLUMNS {
            return Err(Error::format(
                path,
                format!("row {i}"),
                format!(
                    "expected {COLUMNS} columns (137 × x, y, confidence), found {}",
                    rec.len()
                ),
            ));
        }
        let mut vals = Vec::with_capacity(COLUMNS);
        let mut header = false;
        for (j, c) in rec.iter().enumerate() {
            let c = c.trim();
            match c.parse::<f64>() {
                Ok(v) => vals.push(if v.is_nan() { 0.0 } else { v }),
                Err(_) if c.is_empty() => vals.push(0.0),
                Err(_) if i == 0 => {
                    header = true;
                    break;
                }
                Err(_) => {
                    return Err(Error::format(
                        path,
                        format!("row {i}, column {j}"),
                        format!("expected a number, found {c:?}"),
                    ))
                }
            }
        }
        if !header {
            rows.push(vals);
        }
    }
    Ok(rows)
}

/// `vid,subject` rows of an optional `subjects.csv` at the top of the release.
fn read_subjects(src: &Path) -> Result<HashMap<String, String>> {
    let path = src.join("subjects.csv");
    let mut out = HashMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let text = super::read_to_string(&path)?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("vid")) {
            continue;
        }
        let (vid, subject) = line
            .split_once(',')
            .ok_or_else(|| Error::format(&path, format!("row {i}"), "expected `vid,subject`"))?;
        out.insert(vid.trim().to_string(), subject.trim().to_string());
    }
    Ok(out)
}

/// List files in the release folder named like MM-Gesture's `iMiGUE_{split}_clips_list.txt`.
fn find_split_lists(src: &Path) -> Vec<(Split, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(src) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            if !name.ends_with(".txt") || !name.contains("list") {
                continue;
            }
            if let Some(split) = split_from_path(Path::new(&name)) {
                out.push((split, e.path()));
            }
        }
    }
    out.sort();
    out
}

pub fn read(
    src: &Path,
    ds: &Dataset,
    opts: &Options,
    report: &mut ImportReport,
) -> Result<Vec<NewVideo>> {
    let folders = find_videos(src)?;
    if folders.is_empty() {
        return Err(Error::format(
            src,
            "folder",
            "no `{VID}_label.csv` found (expected the iMiGUE release layout {VID}/{VID}_label.csv)",
        ));
    }
    let lists = if opts.split_lists.is_empty() {
        find_split_lists(src)
    } else {
        opts.split_lists.clone()
    };
    let split_of = read_split_lists(&lists)?;
    let subjects = read_subjects(src)?;
    let skeleton = Skeleton::imigue36();
    let mut out = Vec::new();
    for folder in folders {
        match read_video(&folder, ds, &skeleton, &split_of, &subjects, opts, report) {
            Ok(v) => out.push(v),
            Err(e) => report.skip(format!("video {}", folder.vid), e),
        }
    }
    Ok(out)
}

fn read_video(
    folder: &VideoFolder,
    ds: &Dataset,
    skeleton: &Skeleton,
    split_of: &HashMap<String, Split>,
    subjects: &HashMap<String, String>,
    opts: &Options,
    report: &mut ImportReport,
) -> Result<NewVideo> {
    let taxonomy: &Taxonomy = ds.taxonomy();
    let keypoints = match &folder.keypoints {
        Some(p) => Some(read_openpose_sheet(p, skeleton)?),
        None => None,
    };
    let media = match &folder.media {
        Some(p) => match probe_media(p) {
            Ok(info) => Some((p, info)),
            Err(e) => {
                report.skip(format!("media of video {}", folder.vid), e);
                None
            }
        },
        None => None,
    };
    // The sheet has one row per frame, so it defines the frame count the labels index.
    let n_frames = match (&keypoints, &media) {
        (Some(k), _) => k.frames as u32,
        (None, Some((_, info))) => info.frames,
        (None, None) => {
            return Err(Error::format(
                &folder.label_csv,
                "video",
                format!(
                    "neither {vid}_openpose.xlsx/.csv nor a video file {vid}.mp4 is beside it, so the frame range is unknown",
                    vid = folder.vid
                ),
            ))
        }
    };
    let folder_split = split_from_path(&folder.label_csv).or(opts.split);
    let mut samples = Vec::new();
    for (row, parsed) in parse_label_csv(&folder.label_csv)?.into_iter().enumerate() {
        let where_ = || format!("{}: row {row}", folder.label_csv.display());
        let r = match parsed {
            Ok(r) => r,
            Err(e) => {
                report.skip(where_(), format!("{}: {e}", folder.label_csv.display()));
                continue;
            }
        };
        let label = if r.raw_class == 0 {
            None
        } else {
            match taxonomy.from_raw(r.raw_class) {
                Some(c) => Some(c),
                None => {
                    report.skip(
                        where_(),
                        format!(
                            "class {} is not a {} class id (expected 1..31 or 99, or 0 for unlabeled)",
                            r.raw_class, taxonomy.name
                        ),
                    );
                    continue;
                }
            }
        };
        if r.end < r.start {
            report.skip(
                where_(),
                format!("end frame {} is before start frame {}", r.end, r.start),
            );
            continue;
        }
        if r.end >= n_frames {
            report.skip(
                where_(),
                format!(
                    "end frame {} is beyond the video's last frame {}",
                    r.end,
                    n_frames.saturating_sub(1)
                ),
            );
            continue;
        }
        let clip_id = format!("{}_{row}", folder.vid);
        let split = split_of
            .get(&clip_id)
            .copied()
            .or(folder_split)
            .unwrap_or(Split::None);
        samples.push(NewSample {
            clip_id,
            row_index: row as u32,
            start: r.start,
            end: r.end,
            label,
            split,
        });
    }
    Ok(NewVideo {
        vid: folder.vid.clone(),
        subject: subjects
            .get(&folder.vid)
            .cloned()
            .unwrap_or_else(|| folder.vid.clone()),
        media_path: media.as_ref().map(|(p, _)| media_ref(ds, p)),
        n_frames,
        width: media.as_ref().map(|(_, i)| i.width),
        height: media.as_ref().map(|(_, i)| i.height),
        fps: media.as_ref().and_then(|(_, i)| i.fps),
        keypoints,
        samples,
    })
}
