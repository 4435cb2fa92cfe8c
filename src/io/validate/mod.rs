//! Dataset validation in a resource-limited child process (RELIABILITY BI-1, BI-2, BI-3, SEC-3).
//!
//! libhdf5 1.10.8 is not safe on crafted files (GUIDE §5): a mutated file can make it corrupt its
//! heap or crash inside the library, before any check of ours runs. So rank 0 never lets libhdf5
//! parse an untrusted file first in its own address space: it runs `gradcode data validate
//! --child FILE` as a child process ([`run_child`]) with
//! - `RLIMIT_AS` (address space, default 2 GiB), `RLIMIT_CPU` (CPU seconds), `RLIMIT_CORE` = 0
//!   (no core dumps), `RLIMIT_FSIZE` = 0 (the validator writes no file), `RLIMIT_NOFILE` = 64;
//! - a wall-clock timeout after which the child is killed (`SIGKILL`), and `PR_SET_PDEATHSIG` so it
//!   dies with its parent;
//! - `HDF5_PLUGIN_PRELOAD=::` (libhdf5 never loads a filter plugin) and `HDF5_PLUGIN_PATH`
//!   pointing at a folder that does not exist (SEC-3).
//!
//! The child runs [`check`]: [`dataset::inspect`] (signature, hard links only, no external /
//! virtual / filtered layouts, shapes with checked arithmetic against caps, storage inside the
//! file) and then, for files up to [`FULL_CHECK_MAX_BYTES`], a full read of every split in
//! bounded row blocks (finite values, labels valid for the task, CSR structure).
//!
//! A user's own matrix for `matvec` / `matmul` ([`validate_matrix_isolated`]) is checked the
//! same way: the child, started with `--matrix OBJECT` naming the in-file path (empty: find it),
//! runs [`check_matrix`] ([`crate::io::matrix::matrix_info`], then the full read).
//!
//! Outcome ([`Outcome`]): exit 0 = valid; exit 2 with one `gradcode: error: ...` line = invalid
//! (the message is forwarded); anything else (killed by a signal, over a limit, timed out, any
//! other exit code) = refused, with the message "libhdf5 crashed or exceeded limits on this
//! file: refused". A refused or invalid file never reaches the training job.

mod child;

use std::path::{Path, PathBuf};

pub use child::{
    run_child, run_matrix_child, Limits, Outcome, Report, ENV_MEMORY_MB, ENV_TIMEOUT_MS,
};

use super::dataset::{self, DatasetInfo, Split, SplitShape};
use super::matrix::{self, MatrixInfo, MatrixSource};
use super::IoError;

/// Files up to this size are read in full by [`check`]; larger files get [`dataset::inspect`]
/// only (the workers' reads validate the rows they hold).
pub const FULL_CHECK_MAX_BYTES: u64 = 1 << 30;
/// Bytes of one row block of the full read (bounds the validator's memory).
const BLOCK_BYTES: u64 = 16 << 20;

/// Validate `file` in a child of this executable under [`Limits::from_env`]. The check rank 0 of
/// `gradcode train` runs before anything else opens the dataset.
pub fn validate_isolated(file: &Path) -> Result<Report, IoError> {
    let exe = current_exe(file)?;
    run_child(&exe, file, &Limits::from_env())
}

/// This executable (`/proc/self/exe`).
pub fn current_exe(file: &Path) -> Result<PathBuf, IoError> {
    std::env::current_exe().map_err(|e| {
        IoError::layout(
            file,
            format!("cannot locate the gradcode executable to validate the dataset ({e})"),
        )
    })
}

/// Validate a user's matrix `src` in a child of this executable under [`Limits::from_env`]
/// ([`check_matrix`] there), then describe it in this process: what `matvec` / `matmul` run
/// before anything else opens the file.
pub fn validate_matrix_isolated(src: &MatrixSource) -> Result<MatrixInfo, IoError> {
    let exe = current_exe(&src.file)?;
    run_matrix_child(&exe, src, &Limits::from_env())?.into_result(&src.file)?;
    matrix::matrix_info(src)
}

/// Row ranges of about [`BLOCK_BYTES`] each covering the `shape.n_rows` rows.
fn row_blocks(shape: &SplitShape) -> impl Iterator<Item = std::ops::Range<usize>> {
    let rows = shape.n_rows;
    let bytes_per_row = if shape.sparse {
        (shape.nnz.saturating_mul(12) / (rows as u64).max(1)).max(16)
    } else {
        (shape.n_features as u64).saturating_mul(8).max(8)
    };
    let block = usize::try_from(BLOCK_BYTES / bytes_per_row)
        .unwrap_or(usize::MAX)
        .max(1);
    (0..rows)
        .step_by(block)
        .map(move |start| start..start.saturating_add(block).min(rows))
}

/// Whether `path` is small enough for [`check`] and [`check_matrix`] to read every value.
fn full_read(path: &Path) -> Result<bool, IoError> {
    let len = std::fs::metadata(path)
        .map_err(|e| IoError::os(path, e))?
        .len();
    Ok(len <= FULL_CHECK_MAX_BYTES)
}

/// The checks the child runs, in this process: [`dataset::inspect`], then (files up to
/// [`FULL_CHECK_MAX_BYTES`]) every row of every split read in blocks of about 16 MiB, which
/// checks finiteness, labels and CSR structure. Returns what `inspect` found and whether the
/// full read ran.
pub fn check(path: &Path) -> Result<(DatasetInfo, bool), IoError> {
    let info = dataset::inspect(path)?;
    if !full_read(path)? {
        return Ok((info, false));
    }
    for split in [Split::Train, Split::Test] {
        let Some(shape) = dataset::split_shape(path, split)? else {
            continue;
        };
        for rows in row_blocks(&shape) {
            dataset::read_rows(path, split, std::slice::from_ref(&rows))?;
        }
    }
    Ok((info, true))
}

/// The checks a matrix child runs, in this process: [`matrix::matrix_info`] (the layout checks
/// of a dataset's `/X`), then (files up to [`FULL_CHECK_MAX_BYTES`]) every row read in blocks,
/// which checks finiteness and CSR structure. Returns the matrix and whether the full read ran.
pub fn check_matrix(src: &MatrixSource) -> Result<(MatrixInfo, bool), IoError> {
    let info = matrix::matrix_info(src)?;
    if !full_read(&src.file)? {
        return Ok((info, false));
    }
    // The object found, so that each block read does not search the file again.
    let found = MatrixSource {
        file: src.file.clone(),
        object: Some(info.object.clone()),
    };
    let shape = SplitShape {
        n_rows: info.rows,
        n_features: info.cols,
        sparse: info.sparse,
        nnz: info.nnz,
    };
    for rows in row_blocks(&shape) {
        matrix::read_matrix_rows(&found, std::slice::from_ref(&rows))?;
    }
    Ok((info, true))
}
