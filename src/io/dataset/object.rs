//! One matrix object of an HDF5 file, checked before its data is read: a dense 2-D dataset or
//! a CSR group (`data`, `indices`, `indptr` and a `shape` attribute `[rows, cols]`). Used for
//! `/X` and `/X_test` of a dataset file ([`super::layout`]) and for a user's own matrix
//! ([`crate::io::matrix`]).
//!
//! Not done here: which objects a file holds, or reading values beyond the first and last
//! `indptr` entries (see [`super::read::read_x_rows`]).

use std::path::Path;

use hdf5::LocationType;

use super::checks::{
    check_caps, check_dataset, check_storage, checked_product, hard_link, layout_err, links_of,
    open_dataset, read_index_slice, read_u64_attr, Kind,
};
use super::{SplitShape, MAX_BYTES};
use crate::io::IoError;

/// How a matrix object is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XKind {
    Dense,
    Csr,
}

/// A checked matrix object: its shape and storage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitLayout {
    pub(crate) shape: SplitShape,
    pub(crate) kind: XKind,
}

/// Checks the matrix object `name` of `group` (named `full` in messages): a dense 2-D dataset or
/// a CSR group (`data`, `indices`, `indptr`, attribute `shape`), whose values are of a kind in
/// `values`. The caller has checked that `name` is a hard link.
pub(crate) fn check_x(
    path: &Path,
    file_len: u64,
    group: &hdf5::Group,
    name: &str,
    full: &str,
    values: &[Kind],
) -> Result<SplitLayout, IoError> {
    let x_type = group
        .loc_type_by_name(name)
        .map_err(|e| layout_err(path, format!("{full}: cannot read object type: {e}")))?;
    match x_type {
        LocationType::Dataset => {
            let ds = open_dataset(path, group, name, full)?;
            check_dense_x(path, file_len, &ds, full, values)
        }
        LocationType::Group => {
            let g = group
                .group(name)
                .map_err(|e| layout_err(path, format!("{full}: cannot open group: {e}")))?;
            check_csr_x(path, file_len, &g, full, values)
        }
        other => Err(layout_err(
            path,
            format!("{full} is a {other:?} (expected a dataset or a CSR group)"),
        )),
    }
}

fn check_dense_x(
    path: &Path,
    file_len: u64,
    ds: &hdf5::Dataset,
    xf: &str,
    values: &[Kind],
) -> Result<SplitLayout, IoError> {
    let (dims, _) = check_dataset(path, ds, xf, 2, values)?;
    let (rows, cols) = (dims[0], dims[1]);
    check_caps(path, xf, rows, cols)?;
    let bytes = checked_product(path, &dims, 8, xf)?;
    if bytes > MAX_BYTES {
        return Err(layout_err(
            path,
            format!(
                "{xf} is {rows} x {cols} dense, {bytes} bytes as f64, over the cap of {MAX_BYTES} bytes"
            ),
        ));
    }
    check_storage(path, file_len, ds, &dims, xf)?;
    let nnz = checked_product(path, &dims, 1, xf)?;
    Ok(SplitLayout {
        shape: SplitShape {
            n_rows: rows,
            n_features: cols,
            sparse: false,
            nnz,
        },
        kind: XKind::Dense,
    })
}

/// The declared `[rows, cols]` of a CSR group (its `shape` attribute), capped.
fn csr_shape(path: &Path, g: &hdf5::Group, xf: &str) -> Result<(usize, usize), IoError> {
    let shape = read_u64_attr(path, g, "shape", &format!("{xf}/shape"))?;
    let [rows, cols] = shape[..] else {
        return Err(layout_err(
            path,
            format!(
                "attribute {xf}/shape has {} values (expected [rows, cols])",
                shape.len()
            ),
        ));
    };
    let too_big = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let (rows, cols) = (too_big(rows), too_big(cols));
    check_caps(path, xf, rows, cols)?;
    Ok((rows, cols))
}

fn check_csr_x(
    path: &Path,
    file_len: u64,
    g: &hdf5::Group,
    xf: &str,
    values: &[Kind],
) -> Result<SplitLayout, IoError> {
    let (rows, cols) = csr_shape(path, g, xf)?;
    let glinks = links_of(path, g, xf)?;
    let mut dss = Vec::new();
    for name in ["data", "indices", "indptr"] {
        let full = format!("{xf}/{name}");
        if !hard_link(path, &glinks, name, &full)? {
            return Err(layout_err(
                path,
                format!("missing {full} (CSR group needs data, indices, indptr)"),
            ));
        }
        dss.push((open_dataset(path, g, name, &full)?, full));
    }
    let (data_dims, _) = check_dataset(path, &dss[0].0, &dss[0].1, 1, values)?;
    let (idx_dims, _) = check_dataset(path, &dss[1].0, &dss[1].1, 1, &[Kind::Int, Kind::UInt])?;
    let (ptr_dims, ptr_kind) =
        check_dataset(path, &dss[2].0, &dss[2].1, 1, &[Kind::Int, Kind::UInt])?;
    let nnz = data_dims[0];
    if idx_dims[0] != nnz {
        return Err(layout_err(
            path,
            format!(
                "{xf}/indices has {} entries but {xf}/data has {nnz}",
                idx_dims[0]
            ),
        ));
    }
    let nnz_bytes = checked_product(path, &[nnz], 12, &format!("{xf}/data"))?;
    if nnz_bytes > MAX_BYTES {
        return Err(layout_err(
            path,
            format!("{xf} declares {nnz} non-zeros ({nnz_bytes} bytes), over the cap of {MAX_BYTES} bytes"),
        ));
    }
    for ((ds, full), dims) in dss.iter().zip([&data_dims, &idx_dims, &ptr_dims]) {
        check_storage(path, file_len, ds, dims, full)?;
    }
    if Some(ptr_dims[0]) != rows.checked_add(1) {
        return Err(layout_err(
            path,
            format!(
                "{xf}/indptr has {} entries, expected rows + 1 = {} (shape attribute {:?})",
                ptr_dims[0],
                rows as u128 + 1,
                [rows, cols]
            ),
        ));
    }
    let first = read_index_slice(path, &dss[2].0, ptr_kind, 0..1, &dss[2].1)?;
    let last = read_index_slice(path, &dss[2].0, ptr_kind, rows..rows + 1, &dss[2].1)?;
    if first != [0] || last != [nnz as u64] {
        return Err(layout_err(
            path,
            format!(
                "{xf}/indptr must run from 0 to nnz = {nnz} (found {:?} .. {:?})",
                first.first(),
                last.first()
            ),
        ));
    }
    Ok(SplitLayout {
        shape: SplitShape {
            n_rows: rows,
            n_features: cols,
            sparse: true,
            nnz: nnz as u64,
        },
        kind: XKind::Csr,
    })
}
