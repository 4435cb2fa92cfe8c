//! Matrices in HDF5 files outside the dataset layout:
//! - a dense result matrix written to its own file and read back (`gradcode matmul` writes
//!   `OUT/product.h5` with `/C` and the decode's attributes; `codes` writes `B`):
//!   [`write_matrix`], [`read_matrix`], [`read_f64_attr`];
//! - a user's own input matrix for `matvec` / `matmul`, named by a [`MatrixSource`]
//!   (`FILE.h5` or `FILE.h5:/path`), checked and read by hyperslab ([`user`]).
//!
//! Not done here: chunked or compressed writes of very large products (the whole matrix is
//! written in one call).

pub mod source;
pub mod user;

pub use source::MatrixSource;
pub use user::{matrix_info, read_matrix_rows, read_matrix_source, MatrixInfo};

use std::path::Path;

use hdf5::File;
use ndarray::{Array2, ArrayView2};

use super::results::{write_attrs, AttrValue};
use super::IoError;

/// Write `m` as dataset `name` of a new file `path` with `attrs` on the dataset. An existing
/// file is replaced when `overwrite`, refused otherwise; a symbolic link is always refused.
pub fn write_matrix(
    path: &Path,
    name: &str,
    m: ArrayView2<f64>,
    attrs: &[(String, AttrValue)],
    overwrite: bool,
) -> Result<(), IoError> {
    let e = |err: hdf5::Error| IoError::hdf5(path, err);
    if path
        .symlink_metadata()
        .map(|md| md.file_type().is_symlink())
        .unwrap_or(false)
    {
        return Err(IoError::layout(
            path,
            "is a symbolic link; refusing to write through it",
        ));
    }
    let file = if overwrite {
        File::create(path)
    } else if path.exists() {
        return Err(IoError::Exists {
            path: path.to_path_buf(),
        });
    } else {
        File::create_excl(path)
    }
    .map_err(e)?;
    let ds = file
        .new_dataset_builder()
        .with_data(&m.as_standard_layout())
        .create(name)
        .map_err(e)?;
    write_attrs(path, &ds, attrs)?;
    file.close().map_err(e)
}

/// Read dataset `name` of `path` as a matrix.
pub fn read_matrix(path: &Path, name: &str) -> Result<Array2<f64>, IoError> {
    let file = File::open(path).map_err(|err| IoError::hdf5(path, err))?;
    let ds = file
        .dataset(name)
        .map_err(|_| IoError::layout(path, format!("no /{name}")))?;
    ds.read_2d::<f64>().map_err(|err| IoError::hdf5(path, err))
}

/// Read f64 attribute `attr` of dataset `name` of `path`.
pub fn read_f64_attr(path: &Path, name: &str, attr: &str) -> Result<f64, IoError> {
    let file = File::open(path).map_err(|err| IoError::hdf5(path, err))?;
    let ds = file
        .dataset(name)
        .map_err(|_| IoError::layout(path, format!("no /{name}")))?;
    ds.attr(attr)
        .and_then(|a| a.read_scalar::<f64>())
        .map_err(|err| IoError::hdf5(path, err))
}
