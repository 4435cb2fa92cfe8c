//! HDF5 dataset layout (GUIDE §5): dense `/X` or CSR `/X/{data,indices,indptr}` with a `shape`
//! attribute, `/y`, optional `/X_test`, `/y_test`; attributes `source`, `sha256`, `license`,
//! `task`, `classes`, row and feature counts.
//!
//! Workers read only the rows of the partitions they hold, by hyperslab. Every declared shape is
//! checked (checked arithmetic, caps) before anything is allocated.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::IoError;
use crate::data::{Dataset, Task};

/// Which split of a dataset file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
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
}

/// Provenance recorded as attributes of a written dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetMeta {
    pub source: String,
    pub sha256: String,
    pub license: String,
}

/// Check the layout and shapes of a dataset file without reading its data.
pub fn inspect(path: &Path) -> Result<DatasetInfo, IoError> {
    Err(IoError::layout(path, "not implemented yet"))
}

/// Read the rows in `ranges` of `split`, stacked in the order given (hyperslab reads only).
pub fn read_rows(path: &Path, split: Split, ranges: &[Range<usize>]) -> Result<Dataset, IoError> {
    let _ = (split, ranges);
    Err(IoError::layout(path, "not implemented yet"))
}

/// Read a whole split.
pub fn read_all(path: &Path, split: Split) -> Result<Dataset, IoError> {
    let _ = split;
    Err(IoError::layout(path, "not implemented yet"))
}

/// Write a dataset file (refuses to overwrite unless `force`).
pub fn write(
    path: &Path,
    train: &Dataset,
    test: Option<&Dataset>,
    meta: &DatasetMeta,
    force: bool,
) -> Result<(), IoError> {
    let _ = (train, test, meta, force);
    Err(IoError::layout(path, "not implemented yet"))
}

/// Read the rows of partitions `parts` (of `k` balanced partitions of `n_rows` rows), stacked in
/// the order given, with each partition's local row range inside the stacked shard.
pub fn read_partitions(
    path: &Path,
    split: Split,
    n_rows: usize,
    k: usize,
    parts: &[usize],
) -> Result<(Dataset, Vec<Range<usize>>), IoError> {
    let _ = (split, n_rows, k, parts);
    Err(IoError::layout(path, "not implemented yet"))
}
