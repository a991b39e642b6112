//! pyskl annotation pickles (`pyskl/datasets/pose_dataset.py` format): `{'split': {name:
//! [frame_dir, ...]}, 'annotations': [{'frame_dir', 'label', 'total_frames', 'img_shape',
//! 'original_shape', 'keypoint' f32 [M,T,V,2], 'keypoint_score' f32 [M,T,V]}, ...]}`, or a bare
//! list of annotations. Read with the restricted unpickler in [`crate::pickle`]. Each
//! annotation is a cut clip, so it becomes its own video with one sample spanning it.

use std::collections::HashMap;
use std::path::Path;

use super::split_clip_id;
use crate::dataset::{Keypoints, NewSample, NewVideo, Split, Taxonomy};
use crate::pickle::{read_pickle, Value};
use crate::store::ImportReport;
use crate::{Error, Result};

/// Layout name for a joint count: 36 is MM-Gesture's, 17 COCO, 25 OpenPose BODY_25.
pub fn layout_for(joints: usize) -> String {
    match joints {
        36 => "imigue36".into(),
        17 => "coco17".into(),
        25 => "openpose-pose25".into(),
        n => format!("v{n}"),
    }
}

pub fn read(path: &Path, taxonomy: &Taxonomy, report: &mut ImportReport) -> Result<Vec<NewVideo>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let root = read_pickle(&bytes).map_err(|e| Error::Pickle {
        path: path.to_path_buf(),
        source: e,
    })?;
    let (annotations, splits) = match &root {
        Value::Dict(_) => {
            let ann = root.get("annotations").ok_or_else(|| {
                Error::format(
                    path,
                    "key 'annotations'",
                    "missing: expected a dict {'split': ..., 'annotations': [...]}",
                )
            })?;
            let ann = ann.as_list().ok_or_else(|| {
                Error::format(
                    path,
                    "key 'annotations'",
                    format!("expected a list of dicts, found {}", ann.type_name()),
                )
            })?;
            (ann, read_splits(path, root.get("split"))?)
        }
        Value::List(l) => (l.as_slice(), HashMap::new()),
        other => {
            return Err(Error::format(
                path,
                "top level",
                format!(
                    "expected a dict with 'annotations' or a list of annotations, found {}",
                    other.type_name()
                ),
            ))
        }
    };
    let mut out = Vec::new();
    for (i, a) in annotations.iter().enumerate() {
        match read_annotation(path, i, a, &splits, taxonomy) {
            Ok(v) => out.push(v),
            Err(e) => report.skip(format!("annotations[{i}]"), e),
        }
    }
    Ok(out)
}

fn read_splits(path: &Path, v: Option<&Value>) -> Result<HashMap<String, Split>> {
    let mut out = HashMap::new();
    let Some(v) = v else {
        return Ok(out);
    };
    let Value::Dict(items) = v else {
        return Err(Error::format(
            path,
            "key 'split'",
            format!(
                "expected a dict of split name → list of frame_dir, found {}",
                v.type_name()
            ),
        ));
    };
    for (k, ids) in items {
        let name = k.as_str().ok_or_else(|| {
            Error::format(
                path,
                "key 'split'",
                format!("expected str keys, found {}", k.type_name()),
            )
        })?;
        // pyskl datasets use names like 'xsub_train'; the split is the part we recognise.
        let split = Split::parse(name)
            .or_else(|| super::split_from_path(Path::new(name)))
            .unwrap_or(Split::None);
        let ids = ids.as_list().ok_or_else(|| {
            Error::format(
                path,
                format!("split[{name:?}]"),
                format!(
                    "expected a list of frame_dir strings, found {}",
                    ids.type_name()
                ),
            )
        })?;
        for id in ids {
            let id = id.as_str().ok_or_else(|| {
                Error::format(
                    path,
                    format!("split[{name:?}]"),
                    format!("expected frame_dir strings, found {}", id.type_name()),
                )
            })?;
            out.insert(id.to_string(), split);
        }
    }
    Ok(out)
}

fn read_annotation(
    path: &Path,
    i: usize,
    a: &Value,
    splits: &HashMap<String, Split>,
    taxonomy: &Taxonomy,
) -> Result<NewVideo> {
    let loc = |key: &str| format!("annotations[{i}].{key}");
    let err = |key: &str, msg: String| Error::format(path, loc(key), msg);
    if !matches!(a, Value::Dict(_)) {
        return Err(Error::format(
            path,
            format!("annotations[{i}]"),
            format!("expected a dict, found {}", a.type_name()),
        ));
    }
    let frame_dir = a
        .get("frame_dir")
        .ok_or_else(|| err("frame_dir", "missing".into()))?;
    let frame_dir = frame_dir
        .as_str()
        .ok_or_else(|| {
            err(
                "frame_dir",
                format!("expected str, found {}", frame_dir.type_name()),
            )
        })?
        .to_string();
    let label = match a.get("label") {
        None | Some(Value::None) => None,
        Some(v) => {
            let l = v
                .as_i64()
                .ok_or_else(|| err("label", format!("expected int, found {}", v.type_name())))?;
            if l < 0 {
                None
            } else if (l as usize) < taxonomy.len() {
                Some(l as u32)
            } else {
                return Err(err(
                    "label",
                    format!(
                        "{l} is out of range for taxonomy {} (0..{})",
                        taxonomy.name,
                        taxonomy.len() - 1
                    ),
                ));
            }
        }
    };
    let kp = a
        .get("keypoint")
        .ok_or_else(|| err("keypoint", "missing: expected float array [M,T,V,2]".into()))?;
    let kp = kp.as_array().ok_or_else(|| {
        err(
            "keypoint",
            format!("expected a numpy array [M,T,V,2], found {}", kp.type_name()),
        )
    })?;
    let [m, t, v, c] = kp.shape[..] else {
        return Err(err(
            "keypoint",
            format!(
                "expected 4 dimensions [M,T,V,2], found shape {:?}",
                kp.shape
            ),
        ));
    };
    if c != 2 && c != 3 {
        return Err(err(
            "keypoint",
            format!(
                "expected last dimension 2 (x, y), found shape {:?}",
                kp.shape
            ),
        ));
    }
    if t == 0 {
        return Err(err("keypoint", "has no frames (T = 0)".into()));
    }
    let xy = kp
        .to_f32_vec()
        .map_err(|e| err("keypoint", e.to_string()))?;
    let scores = match a.get("keypoint_score") {
        Some(s) => {
            let s = s.as_array().ok_or_else(|| {
                err(
                    "keypoint_score",
                    format!("expected a numpy array [M,T,V], found {}", s.type_name()),
                )
            })?;
            if s.shape != [m, t, v] {
                return Err(err(
                    "keypoint_score",
                    format!(
                        "expected shape [{m}, {t}, {v}] to match keypoint, found {:?}",
                        s.shape
                    ),
                ));
            }
            Some(
                s.to_f32_vec()
                    .map_err(|e| err("keypoint_score", e.to_string()))?,
            )
        }
        None => None,
    };
    if let Some(tf) = a.get("total_frames") {
        let tf = tf.as_i64().ok_or_else(|| {
            err(
                "total_frames",
                format!("expected int, found {}", tf.type_name()),
            )
        })?;
        // pyskl's UniformSampleFrames asserts the same.
        if tf != t as i64 {
            return Err(err(
                "total_frames",
                format!("{tf} does not match the keypoint array's T = {t}"),
            ));
        }
    }
    let (height, width) = match a.get("img_shape") {
        Some(s) => {
            let dims = s.as_list().unwrap_or(&[]);
            match dims {
                [h, w] => (h.as_i64(), w.as_i64()),
                _ => {
                    return Err(err(
                        "img_shape",
                        format!("expected a tuple (height, width), found {}", s.type_name()),
                    ))
                }
            }
        }
        None => (None, None),
    };
    let mut k = Keypoints::zeros(&layout_for(v), t, m, v);
    for mi in 0..m {
        for ti in 0..t {
            for vi in 0..v {
                let base = ((mi * t + ti) * v + vi) * c;
                let score = match &scores {
                    Some(s) => s[(mi * t + ti) * v + vi],
                    None if c == 3 => xy[base + 2],
                    None => 1.0,
                };
                k.set(ti, mi, vi, [xy[base], xy[base + 1], score]);
            }
        }
    }
    let (subject, row) = match split_clip_id(&frame_dir) {
        Some((s, r)) => (s.to_string(), r),
        None => (frame_dir.clone(), 0),
    };
    Ok(NewVideo {
        vid: frame_dir.clone(),
        subject,
        media_path: None,
        n_frames: t as u32,
        width: width.map(|w| w as u32),
        height: height.map(|h| h as u32),
        fps: None,
        keypoints: Some(k),
        samples: vec![NewSample {
            split: splits.get(&frame_dir).copied().unwrap_or(Split::None),
            clip_id: frame_dir,
            row_index: row,
            start: 0,
            end: t as u32 - 1,
            label,
        }],
    })
}
