//! Exporters: the iMiGUE release layout (label csvs, a 137-group OpenPose csv, clip lists), a
//! pyskl annotation pickle, and a Kaggle submission (`Id,Target`, zipped).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::dataset::import::imigue::COLUMNS;
use crate::dataset::{Sample, Skeleton, Split};
use crate::pickle::{write_pickle, NdArray, Value};
use crate::store::Dataset;
use crate::{Error, Result};

/// What an export wrote and what it could not carry over.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ExportReport {
    pub files: usize,
    pub samples: usize,
    pub warnings: Vec<String>,
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|e| Error::io(path, e))
}

fn finish(mut w: std::io::BufWriter<std::fs::File>, path: &Path) -> Result<()> {
    w.flush().map_err(|e| Error::io(path, e))?;
    w.get_ref().sync_all().map_err(|e| Error::io(path, e))
}

/// Writes the release layout into `out`: `{VID}/{VID}_label.csv`, `{VID}/{VID}_openpose.csv`
/// (the 36 points at their OpenPose groups, the other groups 0), the media file (hard link or
/// copy), `subjects.csv` and MM-Gesture-style `iMiGUE_{split}_clips_list.txt` files. Importing
/// `out` again gives the same samples and keypoints.
pub fn export_imigue(ds: &Dataset, out: &Path) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    let tax = ds.taxonomy();
    let skeleton = Skeleton::imigue36();
    let samples = ds.samples()?;
    let mut by_video: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in &samples {
        by_video.entry(s.video.as_str()).or_default().push(s);
    }
    let mut lists: BTreeMap<Split, Vec<String>> = BTreeMap::new();
    let mut subjects = String::from("vid,subject\n");
    for v in ds.videos()? {
        let dir = out.join(&v.vid);
        let rows = by_video.get(v.vid.as_str()).cloned().unwrap_or_default();
        // Clip ids are `{VID}_{row}`: a gap in the rows would renumber the clips on re-import.
        if rows
            .iter()
            .enumerate()
            .any(|(i, s)| s.row_index as usize != i)
        {
            report.warnings.push(format!(
                "video {}: label rows are not contiguous from 0; clip ids will be renumbered on re-import",
                v.vid
            ));
        }
        let label_path = dir.join(format!("{}_label.csv", v.vid));
        let mut w = create(&label_path)?;
        for s in &rows {
            let raw = match s.label {
                Some(l) => tax.to_raw(l).unwrap_or(0),
                None => 0,
            };
            writeln!(w, "{raw},{},{}", s.start, s.end).map_err(|e| Error::io(&label_path, e))?;
            let label = s.label.map(|l| l as i64).unwrap_or(-1);
            lists
                .entry(s.split)
                .or_default()
                .push(format!("{}.mp4 {}", s.clip_id, label.max(0)));
            report.samples += 1;
        }
        finish(w, &label_path)?;
        report.files += 1;
        subjects.push_str(&format!("{},{}\n", v.vid, v.subject));

        if let Some(k) = ds.video_keypoints(&v.vid)? {
            if k.layout != skeleton.name || k.persons != 1 {
                report.warnings.push(format!(
                    "video {}: keypoints are {} with {} persons; the release layout holds one person in the 36-point layout, so they were not written",
                    v.vid, k.layout, k.persons
                ));
            } else {
                let kp_path = dir.join(format!("{}_openpose.csv", v.vid));
                let mut w = create(&kp_path)?;
                let mut row = vec![0f32; COLUMNS];
                for f in 0..k.frames {
                    row.iter_mut().for_each(|x| *x = 0.0);
                    for (j, &g) in skeleton.openpose_groups.iter().enumerate() {
                        row[g * 3..g * 3 + 3].copy_from_slice(&k.get(f, 0, j));
                    }
                    let line: Vec<String> = row.iter().map(|x| x.to_string()).collect();
                    writeln!(w, "{}", line.join(",")).map_err(|e| Error::io(&kp_path, e))?;
                }
                finish(w, &kp_path)?;
                report.files += 1;
            }
        }
        if let Some(src) = ds.media_path(&v) {
            let ext = src.extension().map(|e| e.to_string_lossy().into_owned());
            let dst = dir.join(format!("{}.{}", v.vid, ext.as_deref().unwrap_or("mp4")));
            if dst != src && !dst.exists() {
                if std::fs::hard_link(&src, &dst).is_err() {
                    std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
                }
                report.files += 1;
            }
        }
    }
    for (split, lines) in lists {
        if split == Split::None {
            continue;
        }
        let p = out.join(format!("iMiGUE_{}_clips_list.txt", split.as_str()));
        let mut w = create(&p)?;
        for l in lines {
            writeln!(w, "{l}").map_err(|e| Error::io(&p, e))?;
        }
        finish(w, &p)?;
        report.files += 1;
    }
    let sp = out.join("subjects.csv");
    std::fs::write(&sp, subjects).map_err(|e| Error::io(&sp, e))?;
    report.files += 1;
    Ok(report)
}

fn pkl_err(e: crate::pickle::PickleError) -> Error {
    Error::Invalid(format!("building a numpy array for the pickle: {e}"))
}

/// Writes a pyskl annotation pickle of every sample with keypoints: the dict MM-Gesture's
/// `processing_Skeleton.ipynb` builds, loadable by pyskl's `PoseDataset` (numpy arrays,
/// protocol 2, `numpy.core` names so numpy 1.x loads it too).
pub fn export_pyskl(ds: &Dataset, out: &Path) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    let videos: BTreeMap<String, crate::dataset::Video> = ds
        .videos()?
        .into_iter()
        .map(|v| (v.vid.clone(), v))
        .collect();
    let mut annotations = Vec::new();
    let mut splits: BTreeMap<Split, Vec<Value>> = BTreeMap::new();
    let mut kp_cache: Option<(String, Option<crate::dataset::Keypoints>)> = None;
    for s in ds.samples()? {
        if kp_cache
            .as_ref()
            .map(|(v, _)| v != &s.video)
            .unwrap_or(true)
        {
            kp_cache = Some((s.video.clone(), ds.video_keypoints(&s.video)?));
        }
        let Some((_, Some(all))) = &kp_cache else {
            report
                .warnings
                .push(format!("sample {}: no keypoints, not exported", s.clip_id));
            continue;
        };
        let k = all.slice_frames(s.start as usize, s.end as usize);
        let (m, t, v) = (k.persons, k.frames, k.joints);
        let (xy, sc) = k.to_pyskl();
        // MM-Gesture hard-codes (720, 1280) when it has no video to measure.
        let vid = videos.get(&s.video);
        let h = vid.and_then(|v| v.height).unwrap_or(720) as i64;
        let w = vid.and_then(|v| v.width).unwrap_or(1280) as i64;
        let shape = Value::Tuple(vec![Value::Int(h), Value::Int(w)]);
        let mut entry = vec![(
            Value::Str("frame_dir".into()),
            Value::Str(s.clip_id.clone()),
        )];
        if let Some(l) = s.label {
            entry.push((Value::Str("label".into()), Value::Int(l as i64)));
        }
        entry.extend([
            (Value::Str("total_frames".into()), Value::Int(t as i64)),
            (Value::Str("img_shape".into()), shape.clone()),
            (Value::Str("original_shape".into()), shape),
            (
                Value::Str("keypoint".into()),
                Value::Array(NdArray::from_f32(vec![m, t, v, 2], xy).map_err(pkl_err)?),
            ),
            (
                Value::Str("keypoint_score".into()),
                Value::Array(NdArray::from_f32(vec![m, t, v], sc).map_err(pkl_err)?),
            ),
        ]);
        annotations.push(Value::Dict(entry));
        if s.split != Split::None {
            splits
                .entry(s.split)
                .or_default()
                .push(Value::Str(s.clip_id.clone()));
        }
        report.samples += 1;
    }
    let split = Value::Dict(
        splits
            .into_iter()
            .map(|(k, v)| (Value::Str(k.as_str().into()), Value::List(v)))
            .collect(),
    );
    let root = Value::Dict(vec![
        (Value::Str("split".into()), split),
        (Value::Str("annotations".into()), Value::List(annotations)),
    ]);
    let bytes = write_pickle(&root);
    let mut w = create(out)?;
    w.write_all(&bytes).map_err(|e| Error::io(out, e))?;
    finish(w, out)?;
    report.files = 1;
    Ok(report)
}

/// Writes a Kaggle submission: `prediction.csv` (`Id,Target`, 0-based targets) zipped alone,
/// as MM-Gesture's `ensemble/ensemble.py` does.
pub fn write_kaggle_submission(out: &Path, rows: &[(String, u32)]) -> Result<()> {
    let mut csv = String::from("Id,Target\n");
    for (id, target) in rows {
        if id.contains(',') || id.contains('\n') {
            return Err(Error::Invalid(format!(
                "clip id {id:?} cannot be written to a csv submission"
            )));
        }
        csv.push_str(&format!("{id},{target}\n"));
    }
    let file = create(out)?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let zerr = |e: zip::result::ZipError| Error::format(out, "zip", e.to_string());
    zip.start_file("prediction.csv", opts).map_err(zerr)?;
    zip.write_all(csv.as_bytes())
        .map_err(|e| Error::io(out, e))?;
    let w = zip.finish().map_err(zerr)?;
    finish(w, out)
}

/// Reads a submission zip (or bare csv) back: `(Id, Target)` rows.
pub fn read_kaggle_submission(path: &Path) -> Result<Vec<(String, u32)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = if bytes.starts_with(b"PK") {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| Error::format(path, "zip", e.to_string()))?;
        let mut f = archive
            .by_index(0)
            .map_err(|e| Error::format(path, "zip entry 0", e.to_string()))?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s)
            .map_err(|e| Error::format(path, "zip entry 0", e.to_string()))?;
        s
    } else {
        String::from_utf8(bytes).map_err(|_| Error::format(path, "file", "expected UTF-8 csv"))?
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            if line.trim() != "Id,Target" {
                return Err(Error::format(
                    path,
                    "row 0",
                    format!("expected header `Id,Target`, found {line:?}"),
                ));
            }
            continue;
        }
        let (id, t) = line
            .split_once(',')
            .ok_or_else(|| Error::format(path, format!("row {i}"), "expected `Id,Target`"))?;
        let t = t.trim().parse().map_err(|_| {
            Error::format(
                path,
                format!("row {i}"),
                format!("expected an integer target, found {t:?}"),
            )
        })?;
        rows.push((id.to_string(), t));
    }
    Ok(rows)
}
