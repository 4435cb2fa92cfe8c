//! Reading a checked dataset file by hyperslab (GUIDE §5): the rows of given ranges
//! ([`read_rows`]), the partitions a worker holds ([`read_partitions`]), a whole split
//! ([`read_all`]) and label statistics ([`label_summary`]). Every read opens the file through
//! [`super::layout::open_checked`] first; [`read_x_rows`] (dense or CSR rows of any matrix
//! object) is shared with [`crate::io::matrix`].
//!
//! Not done here: the layout's checks (see [`super::layout`]); a CSR block's `indptr` is
//! validated as it is read, and [`CsrMatrix::new`] validates indices and values.

use std::ops::Range;
use std::path::Path;

use hdf5::types::TypeDescriptor;
use ndarray::{s, Array1, Array2};

use super::checks::{layout_err, open_dataset, read_index_slice, Kind};
use super::layout::open_checked;
use super::object::{SplitLayout, XKind};
use super::{LabelSummary, Split, SplitShape};
use crate::data::{partition_ranges, CsrMatrix, DataError, Dataset, Features, Task};
use crate::io::IoError;

pub fn label_summary(path: &Path, split: Split) -> Result<LabelSummary, IoError> {
    let c = open_checked(path)?;
    let lay = c.split(split)?;
    let (_, yn) = split.names();
    let yds = open_dataset(path, &c.file, yn, &format!("/{yn}"))?;
    let n = lay.shape.n_rows;
    const BLOCK: usize = 1 << 20;
    let mut counts: std::collections::BTreeMap<u64, (f64, usize)> = Default::default();
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    let mut a = 0;
    while a < n {
        let b = (a + BLOCK).min(n);
        let y = yds
            .read_slice_1d::<f64, _>(s![a..b])
            .map_err(|e| IoError::hdf5(path, format!("reading /{yn}: {e}")))?;
        for (i, &v) in y.iter().enumerate() {
            if !v.is_finite() {
                return Err(IoError::Data {
                    path: path.to_path_buf(),
                    source: DataError::NonFinite {
                        what: format!("labels /{yn}"),
                        row: a + i,
                    },
                });
            }
            match c.task {
                Task::Regression => {
                    min = min.min(v);
                    max = max.max(v);
                    sum += v;
                }
                _ => {
                    // Binary files store ±1; a hand-written 0/1 file reads 0 as -1 like `read_rows`.
                    counts.entry(v.to_bits()).or_insert((v, 0)).1 += 1;
                }
            }
        }
        a = b;
    }
    Ok(match c.task {
        Task::Regression => LabelSummary::Range {
            min,
            max,
            mean: sum / n as f64,
        },
        _ => {
            let mut v: Vec<(f64, usize)> = counts.into_values().collect();
            v.sort_by(|p, q| p.0.total_cmp(&q.0));
            LabelSummary::Counts(v)
        }
    })
}

/// The local (shard) row index → global row index.
pub(crate) fn global_row(ranges: &[Range<usize>], local: usize) -> usize {
    let mut off = 0;
    for r in ranges {
        if local < off + r.len() {
            return r.start + (local - off);
        }
        off += r.len();
    }
    local
}

fn data_err(path: &Path, ranges: &[Range<usize>], e: DataError) -> IoError {
    let e = match e {
        DataError::NonFinite { what, row } => DataError::NonFinite {
            what,
            row: global_row(ranges, row),
        },
        DataError::BadLabel {
            label,
            row,
            task,
            hint,
        } => DataError::BadLabel {
            label,
            row: global_row(ranges, row),
            task,
            hint,
        },
        other => other,
    };
    IoError::Data {
        path: path.to_path_buf(),
        source: e,
    }
}

fn read_csr_block(
    path: &Path,
    g: &hdf5::Group,
    xf: &str,
    shape: SplitShape,
    range: Range<usize>,
) -> Result<CsrMatrix, IoError> {
    let data = open_dataset(path, g, "data", &format!("{xf}/data"))?;
    let indices = open_dataset(path, g, "indices", &format!("{xf}/indices"))?;
    let indptr = open_dataset(path, g, "indptr", &format!("{xf}/indptr"))?;
    let kind_of = |ds: &hdf5::Dataset| -> Result<Kind, IoError> {
        match ds.dtype().and_then(|t| t.to_descriptor()) {
            Ok(TypeDescriptor::Unsigned(_)) => Ok(Kind::UInt),
            Ok(_) => Ok(Kind::Int),
            Err(e) => Err(IoError::hdf5(path, e)),
        }
    };
    let ptr = read_index_slice(
        path,
        &indptr,
        kind_of(&indptr)?,
        range.start..range.end + 1,
        &format!("{xf}/indptr"),
    )?;
    let nnz = shape.nnz;
    for (i, w) in ptr.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(layout_err(
                path,
                format!(
                    "{xf}/indptr decreases at row {} ({} then {})",
                    range.start + i,
                    w[0],
                    w[1]
                ),
            ));
        }
    }
    let (pa, pb) = (ptr[0], ptr[ptr.len() - 1]);
    if pb > nnz {
        return Err(layout_err(
            path,
            format!("{xf}/indptr[{}] = {pb} exceeds nnz = {nnz}", range.end),
        ));
    }
    // pa <= pb <= nnz <= usize (checked in open_checked).
    let (pa, pb) = (pa as usize, pb as usize);
    let vals = data
        .read_slice_1d::<f64, _>(s![pa..pb])
        .map_err(|e| IoError::hdf5(path, format!("reading {xf}/data: {e}")))?
        .into_raw_vec_and_offset()
        .0;
    let idx64 = read_index_slice(
        path,
        &indices,
        kind_of(&indices)?,
        pa..pb,
        &format!("{xf}/indices"),
    )?;
    let mut idx = Vec::with_capacity(idx64.len());
    for (k, &v) in idx64.iter().enumerate() {
        match u32::try_from(v) {
            Ok(v) if (v as usize) < shape.n_features => idx.push(v),
            _ => {
                return Err(layout_err(
                    path,
                    format!(
                        "{xf}/indices[{}] = {v} is out of range (features: {})",
                        pa + k,
                        shape.n_features
                    ),
                ))
            }
        }
    }
    let local_ptr: Vec<usize> = ptr.iter().map(|&p| p as usize - pa).collect();
    CsrMatrix::new(range.len(), shape.n_features, local_ptr, idx, vals).map_err(|e| {
        let e = match e {
            DataError::BadCsr(m) => {
                DataError::BadCsr(format!("{m} (rows {}..{} of {xf})", range.start, range.end))
            }
            DataError::NonFinite { what, row } => DataError::NonFinite {
                what,
                row: row + range.start,
            },
            other => other,
        };
        IoError::Data {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// Read the rows in `ranges` (checked by the caller against the row count) of the matrix object
/// `name` of `group` (named `full` in messages, laid out as `lay`), stacked in the order given.
pub(crate) fn read_x_rows(
    path: &Path,
    group: &hdf5::Group,
    name: &str,
    full: &str,
    lay: SplitLayout,
    ranges: &[Range<usize>],
) -> Result<Features, IoError> {
    let shape = lay.shape;
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    Ok(match lay.kind {
        XKind::Dense => {
            let ds = open_dataset(path, group, name, full)?;
            let mut out = Array2::<f64>::zeros((total, shape.n_features));
            let mut at = 0;
            for r in ranges.iter().filter(|r| !r.is_empty()) {
                let block = ds.read_slice_2d::<f64, _>(s![r.clone(), ..]).map_err(|e| {
                    IoError::hdf5(
                        path,
                        format!("reading {full} rows {}..{}: {e}", r.start, r.end),
                    )
                })?;
                out.slice_mut(s![at..at + r.len(), ..]).assign(&block);
                at += r.len();
            }
            Features::Dense(out)
        }
        XKind::Csr => {
            let g = group
                .group(name)
                .map_err(|e| layout_err(path, format!("{full}: cannot open group: {e}")))?;
            let mut blocks = Vec::with_capacity(ranges.len());
            for r in ranges.iter().filter(|r| !r.is_empty()) {
                blocks.push(read_csr_block(path, &g, full, shape, r.clone())?);
            }
            if blocks.is_empty() {
                blocks.push(
                    CsrMatrix::new(0, shape.n_features, vec![0], vec![], vec![]).map_err(|e| {
                        IoError::Data {
                            path: path.to_path_buf(),
                            source: e,
                        }
                    })?,
                );
            }
            let refs: Vec<&CsrMatrix> = blocks.iter().collect();
            Features::Sparse(CsrMatrix::vstack(&refs).map_err(|e| IoError::Data {
                path: path.to_path_buf(),
                source: e,
            })?)
        }
    })
}

/// Read the rows in `ranges` of `split`, stacked in the order given (hyperslab reads only).
pub fn read_rows(path: &Path, split: Split, ranges: &[Range<usize>]) -> Result<Dataset, IoError> {
    let c = open_checked(path)?;
    let lay = c.split(split)?;
    let shape = lay.shape;
    let (xn, yn) = split.names();
    let (xf, yf) = (format!("/{xn}"), format!("/{yn}"));
    for r in ranges {
        if r.start > r.end || r.end > shape.n_rows {
            return Err(IoError::Data {
                path: path.to_path_buf(),
                source: DataError::Invalid(format!(
                    "row range {}..{} is outside the {} rows of {xf}",
                    r.start, r.end, shape.n_rows
                )),
            });
        }
    }
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let x = read_x_rows(path, &c.file, xn, &xf, lay, ranges)?;
    let yds = open_dataset(path, &c.file, yn, &yf)?;
    let mut y = Vec::with_capacity(total);
    for r in ranges.iter().filter(|r| !r.is_empty()) {
        let block = yds.read_slice_1d::<f64, _>(s![r.clone()]).map_err(|e| {
            IoError::hdf5(
                path,
                format!("reading {yf} rows {}..{}: {e}", r.start, r.end),
            )
        })?;
        y.extend(block.iter().copied());
    }
    Dataset::new(x, Array1::from(y), c.task).map_err(|e| data_err(path, ranges, e))
}

/// Read a whole split.
pub fn read_all(path: &Path, split: Split) -> Result<Dataset, IoError> {
    let n = {
        let c = open_checked(path)?;
        c.split(split)?.shape.n_rows
    };
    read_rows(path, split, std::slice::from_ref(&(0..n)))
}

/// Read the partitions `parts` of `partition_ranges(n_rows, k)` of `split`, stacked in the order
/// given; also returns each held partition's local row range inside the stacked shard.
///
/// `n_rows` must equal the rows of the split (it is what the caller partitioned).
pub fn read_partitions(
    path: &Path,
    split: Split,
    n_rows: usize,
    k: usize,
    parts: &[usize],
) -> Result<(Dataset, Vec<Range<usize>>), IoError> {
    let data_err = |e: DataError| IoError::Data {
        path: path.to_path_buf(),
        source: e,
    };
    let actual = {
        let c = open_checked(path)?;
        c.split(split)?.shape.n_rows
    };
    if actual != n_rows {
        return Err(data_err(DataError::ShapeMismatch {
            what: format!("rows of the {} split and rows partitioned", split.name()),
            left: actual,
            right: n_rows,
        }));
    }
    let all = partition_ranges(n_rows, k).map_err(data_err)?;
    let mut ranges = Vec::with_capacity(parts.len());
    let mut local = Vec::with_capacity(parts.len());
    let mut at = 0;
    for &p in parts {
        let r = all.get(p).cloned().ok_or_else(|| {
            data_err(DataError::Invalid(format!(
                "partition {p} does not exist (k = {k} partitions)"
            )))
        })?;
        local.push(at..at + r.len());
        at += r.len();
        ranges.push(r);
    }
    Ok((read_rows(path, split, &ranges)?, local))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::super::fixtures::{csr_ds, dense_ds, meta, stack};
    use super::super::{inspect, write};
    use super::*;
    use ndarray::arr1;
    use std::fs;

    #[test]
    fn dense_round_trip_and_hyperslabs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.h5");
        let train = dense_ds(23, 4, Task::Multiclass { classes: 3 });
        let test = dense_ds(5, 4, Task::Multiclass { classes: 3 });
        write(&p, &train, Some(&test), &meta(), false).unwrap();
        let info = inspect(&p).unwrap();
        assert_eq!((info.n_rows, info.n_features, info.sparse), (23, 4, false));
        assert_eq!(info.nnz, 92);
        assert_eq!(info.task, Task::Multiclass { classes: 3 });
        assert_eq!(info.test_rows, Some(5));
        let get = |n: &str| info.attrs.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("source"), "unit test");
        assert_eq!(get("format_version"), "1");
        assert!(get("created_by").starts_with("gradcode "));
        for ranges in [vec![0..23], vec![3..7, 0..2, 20..23], vec![5..5, 22..23]] {
            assert_eq!(
                read_rows(&p, Split::Train, &ranges).unwrap(),
                stack(&train, &ranges)
            );
        }
        assert_eq!(read_all(&p, Split::Test).unwrap(), test);
        // Nothing left behind but the file itself.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let s = label_summary(&p, Split::Train).unwrap();
        assert_eq!(s, LabelSummary::Counts(vec![(0.0, 8), (1.0, 8), (2.0, 7)]));
    }

    #[test]
    fn csr_round_trip_and_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.h5");
        let train = csr_ds(31, 9);
        write(&p, &train, None, &meta(), false).unwrap();
        let info = inspect(&p).unwrap();
        assert!(info.sparse);
        assert_eq!(info.nnz as usize, train.x.nnz());
        assert_eq!(info.test_rows, None);
        for ranges in [vec![0..31], vec![10..12, 0..3, 30..31], vec![4..4]] {
            assert_eq!(
                read_rows(&p, Split::Train, &ranges).unwrap(),
                stack(&train, &ranges)
            );
        }
        let (shard, local) = read_partitions(&p, Split::Train, 31, 4, &[3, 1]).unwrap();
        let parts = partition_ranges(31, 4).unwrap();
        assert_eq!(local, vec![0..7, 7..15]);
        assert_eq!(shard, stack(&train, &[parts[3].clone(), parts[1].clone()]));
        let e = read_partitions(&p, Split::Train, 31, 4, &[4]).unwrap_err();
        assert!(e.to_string().contains("partition 4 does not exist"), "{e}");
        let e = read_partitions(&p, Split::Train, 30, 4, &[0]).unwrap_err();
        assert!(e.to_string().contains("31 vs 30"), "{e}");
        let e = read_rows(&p, Split::Test, &[0..1]).unwrap_err();
        assert!(e.to_string().contains("no test split"), "{e}");
        let e = read_rows(&p, Split::Train, &[30..32]).unwrap_err();
        assert!(e.to_string().contains("outside the 31 rows"), "{e}");
    }

    #[test]
    fn csr_with_empty_rows_and_no_nonzeros() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.h5");
        let x = CsrMatrix::new(3, 2, vec![0, 0, 0, 0], vec![], vec![]).unwrap();
        let d = Dataset::new(
            Features::Sparse(x),
            arr1(&[1.0, 2.0, 3.0]),
            Task::Regression,
        )
        .unwrap();
        write(&p, &d, None, &meta(), false).unwrap();
        assert_eq!(read_all(&p, Split::Train).unwrap(), d);
        assert_eq!(
            label_summary(&p, Split::Train).unwrap(),
            LabelSummary::Range {
                min: 1.0,
                max: 3.0,
                mean: 2.0
            }
        );
    }
}
