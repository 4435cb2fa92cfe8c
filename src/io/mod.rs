//! All file I/O: HDF5 datasets (read-only hyperslabs), text converters into the dataset layout,
//! the results writer, checkpoints and provenance. The only module that imports `hdf5`.

pub mod checkpoint;
pub mod convert;
pub mod dataset;
pub mod matrix;
pub mod metrics;
pub mod results;
pub mod validate;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::data::DataError;

/// Errors of file I/O and file contents.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Os {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an HDF5 file or unreadable ({detail})")]
    NotHdf5 { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Layout { path: PathBuf, detail: String },
    #[error("{path}: HDF5 error: {detail}")]
    Hdf5 { path: PathBuf, detail: String },
    #[error("{path}:{line}: {detail}")]
    Parse {
        path: PathBuf,
        line: u64,
        detail: String,
    },
    #[error("{path}: {source}")]
    Data { path: PathBuf, source: DataError },
    #[error("{path} already exists (pass --force to overwrite)")]
    Exists { path: PathBuf },
}

impl IoError {
    pub(crate) fn hdf5(path: &Path, e: impl std::fmt::Display) -> IoError {
        IoError::Hdf5 {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    }
    pub(crate) fn layout(path: &Path, detail: impl Into<String>) -> IoError {
        IoError::Layout {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
    pub(crate) fn os(path: &Path, source: std::io::Error) -> IoError {
        if source.kind() == std::io::ErrorKind::NotFound {
            IoError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            IoError::Os {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// The HDF5 library's version, for provenance.
pub fn hdf5_version() -> String {
    let (a, b, c) = hdf5::library_version();
    format!("{a}.{b}.{c}")
}

/// Refuse to overwrite `path` unless `force`.
pub fn check_overwrite(path: &Path, force: bool) -> Result<(), IoError> {
    if path.exists() && !force {
        return Err(IoError::Exists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
