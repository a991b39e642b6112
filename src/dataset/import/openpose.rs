//! A folder of OpenPose JSON files, one per frame (`*_keypoints.json` or any `*.json`, in natural
//! order). Each person has `pose_keypoints_2d` and optionally `face_keypoints_2d`,
//! `hand_left_keypoints_2d`, `hand_right_keypoints_2d`, flat lists of (x, y, confidence).
//! When every person carries the full BODY_25 + face + hands (137 groups) the frame is reduced
//! to MM-Gesture's 36 keypoints; otherwise the pose points are kept as they are.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{media_ref, probe_media, Options};
use crate::dataset::skeleton::OPENPOSE_GROUPS;
use crate::dataset::{Keypoints, NewSample, NewVideo, Skeleton, Split};
use crate::store::{Dataset, ImportReport};
use crate::util::natural_key;
use crate::{Error, Result};

const PARTS: [(&str, usize); 4] = [
    ("pose_keypoints_2d", 25),
    ("face_keypoints_2d", 70),
    ("hand_left_keypoints_2d", 21),
    ("hand_right_keypoints_2d", 21),
];

/// One person of one frame: the four arrays as (x, y, c) triples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Person {
    pub pose: Vec<[f32; 3]>,
    pub face: Vec<[f32; 3]>,
    pub hand_left: Vec<[f32; 3]>,
    pub hand_right: Vec<[f32; 3]>,
}

impl Person {
    fn is_full_137(&self) -> bool {
        self.pose.len() == 25
            && self.face.len() == 70
            && self.hand_left.len() == 21
            && self.hand_right.len() == 21
    }

    fn groups_137(&self) -> Vec<[f32; 3]> {
        let mut g = Vec::with_capacity(OPENPOSE_GROUPS);
        g.extend_from_slice(&self.pose);
        g.extend_from_slice(&self.face);
        g.extend_from_slice(&self.hand_left);
        g.extend_from_slice(&self.hand_right);
        g
    }
}

/// The JSON files of a folder in frame order.
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        })
        .collect();
    files.sort_by_key(|p| natural_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    Ok(files)
}

/// Parses one OpenPose JSON frame.
pub fn parse_frame(path: &Path) -> Result<Vec<Person>> {
    let text = super::read_to_string(path)?;
    let json: Value = serde_json::from_str(&text).map_err(|e| {
        Error::format(
            path,
            format!("line {}, column {}", e.line(), e.column()),
            format!("not valid JSON: {e}"),
        )
    })?;
    let people = json
        .get("people")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::format(path, "key `people`", "expected an array of persons"))?;
    let mut out = Vec::with_capacity(people.len());
    for (pi, person) in people.iter().enumerate() {
        let mut parts: [Vec<[f32; 3]>; 4] = Default::default();
        for (slot, (key, _)) in parts.iter_mut().zip(PARTS) {
            let Some(arr) = person.get(key) else {
                continue;
            };
            let arr = arr.as_array().ok_or_else(|| {
                Error::format(
                    path,
                    format!("people[{pi}].{key}"),
                    "expected a flat array of numbers",
                )
            })?;
            if arr.len() % 3 != 0 {
                return Err(Error::format(
                    path,
                    format!("people[{pi}].{key}"),
                    format!(
                        "expected a multiple of 3 values (x, y, confidence), found {}",
                        arr.len()
                    ),
                ));
            }
            let mut pts = Vec::with_capacity(arr.len() / 3);
            for (i, c) in arr.chunks_exact(3).enumerate() {
                let mut p = [0f32; 3];
                for (d, v) in c.iter().enumerate() {
                    p[d] = v.as_f64().ok_or_else(|| {
                        Error::format(
                            path,
                            format!("people[{pi}].{key}[{}]", i * 3 + d),
                            format!("expected a number, found {v}"),
                        )
                    })? as f32;
                }
                pts.push(p);
            }
            *slot = pts;
        }
        let [pose, face, hand_left, hand_right] = parts;
        out.push(Person {
            pose,
            face,
            hand_left,
            hand_right,
        });
    }
    Ok(out)
}

/// Reads a whole folder. A frame whose file is damaged becomes a frame with no persons and is
/// reported; the rest of the folder still imports.
pub fn read_frames(dir: &Path, report: &mut ImportReport) -> Result<Vec<Vec<Person>>> {
    let files = frame_files(dir)?;
    if files.is_empty() {
        return Err(Error::format(dir, "folder", "contains no .json files"));
    }
    let mut frames = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        match parse_frame(f) {
            Ok(p) => frames.push(p),
            Err(e) => {
                report.skip(
                    format!("frame {i}"),
                    format!("{e} (frame kept, no persons)"),
                );
                frames.push(Vec::new());
            }
        }
    }
    Ok(frames)
}

/// Packs frames into a keypoint block: 36-point when all persons are full 137-group
/// OpenPose, else the pose points alone.
pub fn to_keypoints(frames: &[Vec<Person>]) -> Keypoints {
    let persons = frames.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let all_full =
        frames.iter().flatten().all(Person::is_full_137) && frames.iter().any(|f| !f.is_empty());
    if all_full {
        let sk = Skeleton::imigue36();
        let mut k = Keypoints::zeros(&sk.name, frames.len(), persons, sk.len());
        for (t, f) in frames.iter().enumerate() {
            for (m, p) in f.iter().enumerate() {
                for (j, v) in sk.reduce_openpose(&p.groups_137()).into_iter().enumerate() {
                    k.set(t, m, j, v);
                }
            }
        }
        k
    } else {
        let joints = frames
            .iter()
            .flatten()
            .map(|p| p.pose.len())
            .max()
            .unwrap_or(25);
        let mut k = Keypoints::zeros(
            &format!("openpose-pose{joints}"),
            frames.len(),
            persons,
            joints,
        );
        for (t, f) in frames.iter().enumerate() {
            for (m, p) in f.iter().enumerate() {
                for (j, v) in p.pose.iter().enumerate() {
                    k.set(t, m, j, *v);
                }
            }
        }
        k
    }
}

pub fn read(
    dir: &Path,
    ds: &Dataset,
    opts: &Options,
    report: &mut ImportReport,
) -> Result<NewVideo> {
    let frames = read_frames(dir, report)?;
    let keypoints = to_keypoints(&frames);
    let vid = dir
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches("_json").to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "openpose".to_string());
    let media = match &opts.video {
        Some(p) => Some((p.clone(), probe_media(p)?)),
        None => None,
    };
    if let Some((p, info)) = &media {
        if info.frames as usize != keypoints.frames {
            report.skip(
                format!("{}", p.display()),
                format!(
                    "video has {} frames but the folder has {} JSON frames; using the JSON count",
                    info.frames, keypoints.frames
                ),
            );
        }
    }
    let n = keypoints.frames as u32;
    Ok(NewVideo {
        subject: vid.clone(),
        media_path: media.as_ref().map(|(p, _)| media_ref(ds, p)),
        n_frames: n,
        width: media.as_ref().map(|(_, i)| i.width),
        height: media.as_ref().map(|(_, i)| i.height),
        fps: media.as_ref().and_then(|(_, i)| i.fps),
        samples: vec![NewSample {
            clip_id: vid.clone(),
            row_index: 0,
            start: 0,
            end: n.saturating_sub(1),
            label: opts.label,
            split: opts.split.unwrap_or(Split::None),
        }],
        vid,
        keypoints: Some(keypoints),
    })
}
