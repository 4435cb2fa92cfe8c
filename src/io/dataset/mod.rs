//! HDF5 dataset layout (GUIDE §5): dense `/X` or CSR `/X/{data,indices,indptr}` with a `shape`
//! attribute, `/y`, optional `/X_test`, `/y_test`; attributes `source`, `sha256`, `license`,
//! `task`, `classes`, row and feature counts.
//!
//! Workers read only the rows of the partitions they hold, by hyperslab. Every declared shape is
//! checked (checked arithmetic, caps) before anything is allocated. The module is split by
//! concern:
//! - `checks`: checks of single HDF5 objects (signature, hard links, storage, dtype, caps),
//!   shared with [`super::matrix`];
//! - `object`: one matrix object (dense 2-D dataset or CSR group), shared with
//!   [`super::matrix`];
//! - `layout`: the dataset layout's check ([`inspect`], [`split_shape`]);
//! - `read`: hyperslab reads of rows, partitions and labels ([`read_rows`], [`read_partitions`],
//!   [`read_all`], [`label_summary`]);
//! - `write`: creating a dataset file ([`write()`]).
//!
//! Input files are hostile (GUIDE §5), so before any data is read [`inspect`] checks:
//! - the file starts with an HDF5 signature (at offset 0, 512, 1024, ...) before libhdf5 sees it;
//! - `/X`, `/y` (and `/X_test`, `/y_test`, `/X/data`, ...) are hard links, never external or soft
//!   links, so no other file is ever opened;
//! - every dataset has a contiguous, compact or chunked layout (no virtual layout), no external
//!   storage and an empty filter pipeline (so no filter plugin is ever loaded);
//! - ranks, dtypes and every declared count, multiplied with checked arithmetic against caps
//!   ([`MAX_ROWS`], [`MAX_FEATURES`], [`MAX_BYTES`]);
//! - every dataset's allocated storage covers its declared size and fits in the file, which bounds
//!   any later allocation by the size of the file itself;
//! - rows(X) == rows(y), `indptr` has rows + 1 entries running from 0 to nnz.
//!
//! Not done: a full scan of `indptr` in `inspect` (it would read data); [`read_rows`] validates the
//! part of `indptr` it reads, and [`crate::data::CsrMatrix::new`] validates indices and values.

use std::path::PathBuf;

use crate::data::{ImageShape, Task};

pub(crate) mod checks;
pub(crate) mod layout;
pub(crate) mod object;
pub(crate) mod read;
pub(crate) mod write;

pub use layout::{inspect, split_shape};
pub use read::{label_summary, read_all, read_partitions, read_rows};
pub use write::write;

/// Largest number of rows (and of features) a dataset may declare.
pub const MAX_ROWS: usize = 1 << 31;
/// Largest number of features a dataset may declare.
pub const MAX_FEATURES: usize = 1 << 31;
/// Largest in-memory size of any one declared array (dense X, CSR data + indices, y): 64 GiB.
pub const MAX_BYTES: u64 = 64 << 30;
/// The `format_version` attribute written and accepted.
pub const FORMAT_VERSION: u64 = 1;

/// Which split of a dataset file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("X", "y"),
            Split::Test => ("X_test", "y_test"),
        }
    }
    /// "train" or "test".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// What a dataset file declares, checked without reading the data.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub n_rows: usize,
    pub n_features: usize,
    pub sparse: bool,
    /// Stored non-zeros (rows × features when dense).
    pub nnz: u64,
    pub task: Task,
    /// Rows of the test split, if present.
    pub test_rows: Option<usize>,
    /// String attributes of the root group (source, sha256, license, ...).
    pub attrs: Vec<(String, String)>,
    /// The `image_shape` attribute of `/X`, when the rows are images (checked against the
    /// features).
    pub image: Option<ImageShape>,
}

/// The attribute of `/X` (and `/X_test`) holding the image shape [channels, height, width] of
/// the rows.
pub const IMAGE_SHAPE_ATTR: &str = "image_shape";

/// Provenance recorded as attributes of a written dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetMeta {
    pub source: String,
    pub sha256: String,
    pub license: String,
    /// The image shape of the rows (IDX images), written as the `image_shape` attribute of
    /// `/X` (and `/X_test`).
    pub image: Option<ImageShape>,
}

/// Shape of one split as declared by the file (checked, not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitShape {
    pub n_rows: usize,
    pub n_features: usize,
    pub sparse: bool,
    /// Stored entries (rows × features when dense).
    pub nnz: u64,
}

/// Label statistics of a split (read from `y` only).
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSummary {
    /// Binary or multiclass: (label, count), sorted by label.
    Counts(Vec<(f64, usize)>),
    /// Regression targets.
    Range { min: f64, max: f64, mean: f64 },
}

// ------------------------------------------------------------------------------------------------
// Checked opening

/// Test fixtures shared by this module's unit tests.
#[cfg(test)]
mod fixtures;

/// Hostile-file builders shared with `tests/reliability.rs`.
#[cfg(test)]
#[path = "../../../tests/common/hostile.rs"]
pub(crate) mod hostile_fixtures;
