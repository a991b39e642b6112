//! Samples, splits, taxonomies, skeleton layouts; importers and exporters.
//!
//! A sample is a segment `[start, end]` (inclusive frame indices) of a long video, as in the
//! iMiGUE release. Frame index is the unit of time everywhere.

pub mod export;
pub mod import;
pub mod keypoints;
pub mod skeleton;
pub mod taxonomy;

pub use keypoints::Keypoints;
pub use skeleton::Skeleton;
pub use taxonomy::Taxonomy;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
    /// Not assigned to any split (e.g. an OpenPose folder without a list).
    None,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Val, Split::Test, Split::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::None => "none",
        }
    }

    /// Accepts the names used by the releases: `validate`, `valid`, `validation` mean val.
    pub fn parse(s: &str) -> Option<Split> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validate" | "validation" => Some(Split::Val),
            "test" | "testing" => Some(Split::Test),
            "none" | "" => Some(Split::None),
            _ => None,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A labelled segment as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub id: i64,
    /// `{VID}_{row}` for the iMiGUE layout; the file stem for per-clip sources.
    pub clip_id: String,
    pub video: String,
    /// Row of the source label csv (the `n` in `{VID}_{n}`); keeps export order stable.
    pub row_index: u32,
    pub start: u32,
    pub end: u32,
    /// 0-based class index; `None` = unlabeled.
    pub label: Option<u32>,
    pub split: Split,
    pub note: String,
    pub reviewed: bool,
    /// The label the sample had when imported, to show what a relabel changed.
    pub imported_label: Option<u32>,
}

impl Sample {
    pub fn frames(&self) -> u32 {
        self.end - self.start + 1
    }
}

/// A long video (or a clip file) that samples are cut from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Video {
    pub id: i64,
    pub vid: String,
    /// Subject / identity the video shows; the split is by subject.
    pub subject: String,
    /// Relative to the dataset folder, or absolute.
    pub media_path: Option<String>,
    pub n_frames: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
}

/// What an importer produces before it reaches the store.
#[derive(Debug, Clone)]
pub struct NewVideo {
    pub vid: String,
    pub subject: String,
    pub media_path: Option<String>,
    pub n_frames: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    pub keypoints: Option<Keypoints>,
    pub samples: Vec<NewSample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSample {
    pub clip_id: String,
    pub row_index: u32,
    pub start: u32,
    pub end: u32,
    pub label: Option<u32>,
    pub split: Split,
}
