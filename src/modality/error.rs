//! Errors of the derived-modality code (heatmaps, pose pipeline steps, Taylor videos, NPY I/O).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModalityError {
    /// An array's length or dimensions do not match what the caller said they are.
    #[error("{what}: {detail}")]
    Shape { what: &'static str, detail: String },

    /// A parameter outside what the reference accepts (its asserts, or maths that cannot run).
    #[error("invalid {name}: {detail}")]
    InvalidParameter { name: &'static str, detail: String },

    /// A Taylor video needs at least `needed` frames (the window K+3, or tprime if larger);
    /// MM-Gesture's `taylor.py` raises "Unexpected EOF while priming buffer" here and its batch
    /// driver then silently skips the clip.
    #[error("clip too short for a Taylor video: {frames} frames, needs at least {needed}")]
    ClipTooShort { frames: usize, needed: usize },

    /// A malformed or unsupported NPY file.
    #[error("npy{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Npy {
        path: Option<PathBuf>,
        detail: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ModalityError {
    pub(crate) fn shape(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Shape {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn param(name: &'static str, detail: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = ModalityError> = std::result::Result<T, E>;
