use std::path::{Path, PathBuf};

/// The library's error. Every variant that comes from a file names it, and where it can, the
/// row, column or key and what was expected there.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Content of a file that does not have the expected shape.
    #[error("{path}: {location}: {message}")]
    Format {
        path: PathBuf,
        /// Row, column, key or byte offset inside the file.
        location: String,
        message: String,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Pickle {
        path: PathBuf,
        #[source]
        source: crate::pickle::PickleError,
    },
    /// An ensemble preset that cannot be saved, found or read as asked.
    #[error("{path}: {source}")]
    Preset {
        path: PathBuf,
        #[source]
        source: crate::store::PresetError,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[cfg(feature = "video")]
    #[error("{path}: {what}: {source}")]
    Ffmpeg {
        path: PathBuf,
        what: String,
        #[source]
        source: ffmpeg_next::Error,
    },
}

impl From<crate::modality::error::ModalityError> for Error {
    fn from(e: crate::modality::error::ModalityError) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<crate::modality::flow::FlowError> for Error {
    fn from(e: crate::modality::flow::FlowError) -> Self {
        Error::Invalid(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn format(
        path: impl AsRef<Path>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            location: location.into(),
            message: message.into(),
        }
    }
}
