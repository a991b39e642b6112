//! Training in candle: PoseC3D (pyskl / MM-Gesture `configs/posec3d/slowonly_r50_iMiGUE_36/
//! {joint,limb}.py`) on heatmaps ([`data`]) and Video Swin (MM-Gesture `configs/recognition/
//! swin/*.py`) on RGB / Taylor / flow / depth frames ([`video_data`]), both behind [`clips`]
//! with a seeded, multi-threaded loader; SGD with momentum and per-iteration cosine, or AdamW
//! with Swin's parameter groups and a linear warm-up chained to an epoch cosine, gradient
//! clipping ([`optim`]); runs that checkpoint, resume exactly and register their validation
//! scores ([`run`]); RGBPoseConv3D and its RGB pretraining on RGB frames with heatmaps
//! ([`rgbpose_data`]); ImageNet 2-D Swin weights inflated for Video Swin ([`inflate`]).
//!
//! Single device: one CPU or one CUDA GPU per run (no NCCL data parallelism).

pub mod clips;
pub mod config;
pub mod data;
pub mod inflate;
pub mod init;
pub mod optim;
#[cfg(feature = "video")]
pub mod rgbpose_data;
pub mod run;
#[cfg(feature = "video")]
pub mod video_data;

use std::path::PathBuf;

pub use config::{TrainConfig, PRESETS};
pub use run::{train, RunOptions, RunSummary};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("unknown preset {0:?}; known: {1}")]
    UnknownPreset(String, String),
    #[error("dataset: {0}")]
    Dataset(#[from] crate::Error),
    #[error("sample {clip_id}: {message}")]
    Sample { clip_id: String, message: String },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] crate::nn::checkpoint::CheckpointError),
    #[error("{0}")]
    Invalid(String),
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("data loader: {0}")]
    Loader(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// splitmix64's finaliser: decorrelates the (seed, purpose, epoch, index) tuples that every
/// random stream of a run is derived from, so a stream depends on its coordinates only and
/// not on which thread drew before it.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_add(0x9E37_79B9_7F4A_7C15).rotate_left(23);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Purposes of the derived random streams.
pub(crate) mod stream {
    pub const INIT: u64 = 1;
    pub const SHUFFLE: u64 = 2;
    pub const SAMPLE: u64 = 3;
    pub const DROPOUT: u64 = 4;
}

/// Makes glibc keep freed memory for reuse instead of unmapping it (process-wide; call once
/// before training). Every candle op allocates its output, and an autograd step frees and
/// reallocates gigabytes of activation-sized buffers; served by fresh `mmap`s each one costs
/// a page fault per 4 KiB, about a third of a CPU PoseC3D step (measured: 11.9 s → 8.3 s at
/// batch 2). Peak memory stays the same since the freed blocks are what the next step needs.
/// No-op elsewhere than glibc Linux.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before the worker
    // threads start allocating.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
