//! In-memory data: dense and CSR feature matrices, labels, tasks, partitioning of rows, and the
//! minibatch draws that keep a gradient code exact ([`batch`]; rows gathered into reused
//! buffers by [`Dataset::gather_into`]).
//!
//! No I/O here: `io::dataset` reads and writes these types from HDF5, `io::convert` builds them
//! from LIBSVM / IDX / CSV text, and [`synth`] generates them from a seed.
//!
//! Not implemented: column-major (CSC) storage, which no kernel of gradcode needs.

pub mod batch;
pub mod synth;

use std::ops::Range;

use ndarray::{s, Array1, Array2, Axis};
use thiserror::Error;

/// Errors of in-memory data handling.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("CSR matrix is malformed: {0}")]
    BadCsr(String),
    #[error("shapes disagree: {what} ({left} vs {right})")]
    ShapeMismatch {
        what: String,
        left: usize,
        right: usize,
    },
    #[error("cannot split {rows} rows into {parts} non-empty partitions")]
    EmptyPartition { rows: usize, parts: usize },
    #[error("{what} contains a non-finite value at row {row}")]
    NonFinite { what: String, row: usize },
    #[error("label {label} at row {row} is not valid for a {task} task{hint}")]
    BadLabel {
        label: f64,
        row: usize,
        task: String,
        hint: String,
    },
    #[error("invalid parameter: {0}")]
    Invalid(String),
    #[error("out of memory: {what} needs {bytes} bytes and the allocator refused them")]
    OutOfMemory { what: String, bytes: u128 },
}

/// A zeroed array of `len` values for `what`, allocated fallibly: an allocator refusal is an
/// error naming the bytes, never an abort (RELIABILITY BI-9). For the buffers whose size the
/// input decides (parameters, gradients); the run's total was checked against the memory budget
/// before, so this fails only when the node ran short meanwhile.
pub fn try_zeros(len: usize, what: &str) -> Result<ndarray::Array1<f64>, DataError> {
    let mut v: Vec<f64> = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| DataError::OutOfMemory {
            what: what.to_string(),
            bytes: len as u128 * 8,
        })?;
    v.resize(len, 0.0);
    Ok(ndarray::Array1::from(v))
}

/// The shape of the images a dense dataset's rows are: `channels × height × width` values per
/// row, channel-major then row-major (an IDX image is one channel). Stored as the `/X`
/// attribute `image_shape` = [channels, height, width]; the convolutional network needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// Values per image (the features of a row), `None` on overflow.
    pub fn values(&self) -> Option<usize> {
        self.channels
            .checked_mul(self.height)?
            .checked_mul(self.width)
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// The learning task a dataset is for; decides which models accept it and how labels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Labels in {-1, +1} (0/1 are normalized to -1/+1 on load).
    Binary,
    /// Real-valued targets.
    Regression,
    /// Labels in {0, .., classes-1}.
    Multiclass { classes: usize },
}

impl Task {
    /// The name written into the HDF5 `task` attribute.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Regression => "regression",
            Task::Multiclass { .. } => "multiclass",
        }
    }

    /// Parse the HDF5 `task` attribute (`classes` is required for multiclass).
    pub fn from_name(name: &str, classes: Option<usize>) -> Result<Task, DataError> {
        match (name, classes) {
            ("binary", _) => Ok(Task::Binary),
            ("regression", _) => Ok(Task::Regression),
            ("multiclass", Some(c)) if c >= 2 => Ok(Task::Multiclass { classes: c }),
            ("multiclass", _) => Err(DataError::Invalid(
                "task 'multiclass' needs an attribute 'classes' >= 2".into(),
            )),
            (other, _) => Err(DataError::Invalid(format!(
                "unknown task '{other}' (expected binary, regression or multiclass)"
            ))),
        }
    }

    /// Check labels (and normalize binary 0/1 to -1/+1 in place).
    pub fn check_labels(&self, y: &mut Array1<f64>) -> Result<(), DataError> {
        let bad = |label: f64, row: usize, hint: &str| DataError::BadLabel {
            label,
            row,
            task: self.name().to_string(),
            hint: hint.to_string(),
        };
        for (row, v) in y.iter().enumerate() {
            if !v.is_finite() {
                return Err(DataError::NonFinite {
                    what: "labels y".into(),
                    row,
                });
            }
        }
        match *self {
            Task::Regression => Ok(()),
            Task::Binary => {
                let zero_one = y.iter().all(|&v| v == 0.0 || v == 1.0);
                if zero_one {
                    y.mapv_inplace(|v| if v == 1.0 { 1.0 } else { -1.0 });
                    return Ok(());
                }
                match y.iter().position(|&v| v != 1.0 && v != -1.0) {
                    Some(row) => Err(bad(y[row], row, " (expected -1/+1 or 0/1)")),
                    None => Ok(()),
                }
            }
            Task::Multiclass { classes } => {
                match y
                    .iter()
                    .position(|&v| v < 0.0 || v.fract() != 0.0 || v >= classes as f64)
                {
                    Some(row) => Err(bad(
                        y[row],
                        row,
                        &format!(
                            " (expected an integer class in 0..={})",
                            classes.saturating_sub(1)
                        ),
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A compressed-sparse-row matrix of f64 with u32 column indices.
///
/// Invariants (checked by [`CsrMatrix::new`]): `indptr` has `n_rows + 1` non-decreasing entries
/// starting at 0 and ending at `nnz`; every index is `< n_cols`; indices within a row are
/// strictly increasing; every value is finite.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    data: Vec<f64>,
}

impl CsrMatrix {
    /// Build and validate a CSR matrix.
    pub fn new(
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f64>,
    ) -> Result<Self, DataError> {
        let bad = |m: String| Err(DataError::BadCsr(m));
        if indptr.len() != n_rows + 1 {
            return bad(format!(
                "indptr has {} entries, expected rows + 1 = {}",
                indptr.len(),
                n_rows + 1
            ));
        }
        if indices.len() != data.len() {
            return bad(format!(
                "{} indices but {} values",
                indices.len(),
                data.len()
            ));
        }
        if indptr[0] != 0 || indptr[n_rows] != data.len() {
            return bad(format!(
                "indptr must run from 0 to nnz = {} (found {} .. {})",
                data.len(),
                indptr[0],
                indptr[n_rows]
            ));
        }
        if n_cols > u32::MAX as usize {
            return bad(format!("{n_cols} columns exceed the u32 index range"));
        }
        for r in 0..n_rows {
            let (a, b) = (indptr[r], indptr[r + 1]);
            if b < a {
                return bad(format!("indptr decreases at row {r}"));
            }
            let row = &indices[a..b];
            for (i, &c) in row.iter().enumerate() {
                if c as usize >= n_cols {
                    return bad(format!(
                        "column index {c} at row {r} is out of range (columns: {n_cols})"
                    ));
                }
                if i > 0 && row[i - 1] >= c {
                    return bad(format!(
                        "column indices of row {r} are not strictly increasing"
                    ));
                }
            }
            if let Some(k) = data[a..b].iter().position(|v| !v.is_finite()) {
                let _ = k;
                return Err(DataError::NonFinite {
                    what: "features X".into(),
                    row: r,
                });
            }
        }
        Ok(CsrMatrix {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    pub fn nnz(&self) -> usize {
        self.data.len()
    }
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// Column indices and values of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// The columns some row touches, sorted: the support of every gradient of these rows
    /// (issue 20 §2, sparse-support messages).
    pub fn support(&self) -> Vec<u32> {
        let mut seen = vec![false; self.n_cols];
        for &c in &self.indices {
            seen[c as usize] = true;
        }
        (0..self.n_cols as u32)
            .filter(|&j| seen[j as usize])
            .collect()
    }

    /// This matrix with its columns re-indexed to `support` (strictly increasing columns that
    /// hold every column a row touches, e.g. [`CsrMatrix::support`]): column `support[l]`
    /// becomes column l of `support.len()`. The kernels then read and write vectors of the
    /// support's length instead of `n_cols`, with every row's entries in the same order, so
    /// the results gathered back are bit-identical. An error when `support` is not strictly
    /// increasing, is out of range, or misses a touched column.
    pub fn on_support(&self, support: &[u32]) -> Result<CsrMatrix, DataError> {
        let bad = |m: String| Err(DataError::BadCsr(m));
        if support.windows(2).any(|w| w[0] >= w[1]) {
            return bad("the support's columns must be strictly increasing".into());
        }
        if support.last().is_some_and(|&j| j as usize >= self.n_cols) {
            return bad(format!(
                "the support names a column beyond the {} columns",
                self.n_cols
            ));
        }
        let mut local = vec![u32::MAX; self.n_cols];
        for (l, &j) in support.iter().enumerate() {
            local[j as usize] = l as u32;
        }
        let mut indices = Vec::with_capacity(self.indices.len());
        for &j in &self.indices {
            match local[j as usize] {
                u32::MAX => return bad(format!("column {j} is touched but not in the support")),
                l => indices.push(l),
            }
        }
        Ok(CsrMatrix {
            n_rows: self.n_rows,
            n_cols: support.len(),
            indptr: self.indptr.clone(),
            indices,
            data: self.data.clone(),
        })
    }

    /// Stack several CSR matrices with the same column count vertically.
    pub fn vstack(parts: &[&CsrMatrix]) -> Result<CsrMatrix, DataError> {
        let n_cols = parts.first().map_or(0, |p| p.n_cols);
        let mut indptr = vec![0usize];
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        for p in parts {
            if p.n_cols != n_cols {
                return Err(DataError::ShapeMismatch {
                    what: "columns of stacked CSR blocks".into(),
                    left: n_cols,
                    right: p.n_cols,
                });
            }
            let base = data.len();
            indptr.extend(p.indptr[1..].iter().map(|&q| q + base));
            indices.extend_from_slice(&p.indices);
            data.extend_from_slice(&p.data);
        }
        let n_rows = indptr.len() - 1;
        Ok(CsrMatrix {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    /// The rows in `range` as a new matrix.
    pub fn slice_rows(&self, range: Range<usize>) -> CsrMatrix {
        let (a, b) = (self.indptr[range.start], self.indptr[range.end]);
        CsrMatrix {
            n_rows: range.len(),
            n_cols: self.n_cols,
            indptr: self.indptr[range.start..=range.end]
                .iter()
                .map(|&p| p - a)
                .collect(),
            indices: self.indices[a..b].to_vec(),
            data: self.data[a..b].to_vec(),
        }
    }

    /// Append the rows of `other` (the same number of columns) below this matrix's.
    pub fn append_rows(&mut self, other: &CsrMatrix) -> Result<(), DataError> {
        if other.n_cols != self.n_cols {
            return Err(DataError::ShapeMismatch {
                what: "columns of the rows appended".into(),
                left: self.n_cols,
                right: other.n_cols,
            });
        }
        let base = self.indptr.last().copied().unwrap_or(0);
        self.indptr
            .extend(other.indptr.iter().skip(1).map(|&p| p + base));
        self.indices.extend_from_slice(&other.indices);
        self.data.extend_from_slice(&other.data);
        self.n_rows += other.n_rows;
        Ok(())
    }

    /// Overwrite `out` with rows `rows` of this matrix, in that order, reusing its storage.
    pub fn gather_into(&self, rows: &[usize], out: &mut CsrMatrix) {
        out.n_rows = rows.len();
        out.n_cols = self.n_cols;
        out.indptr.clear();
        out.indices.clear();
        out.data.clear();
        out.indptr.push(0);
        for &r in rows {
            let (a, b) = (self.indptr[r], self.indptr[r + 1]);
            out.indices.extend_from_slice(&self.indices[a..b]);
            out.data.extend_from_slice(&self.data[a..b]);
            out.indptr.push(out.data.len());
        }
    }

    /// Dense copy (for tests and small matrices only).
    pub fn to_dense(&self) -> Array2<f64> {
        let mut out = Array2::zeros((self.n_rows, self.n_cols));
        for r in 0..self.n_rows {
            let (idx, val) = self.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                out[[r, c as usize]] = v;
            }
        }
        out
    }
}

/// A feature matrix: dense (row-major) or CSR. Sparse data stays sparse end to end.
#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    Dense(Array2<f64>),
    Sparse(CsrMatrix),
}

impl Features {
    pub fn n_rows(&self) -> usize {
        match self {
            Features::Dense(x) => x.nrows(),
            Features::Sparse(x) => x.n_rows(),
        }
    }
    pub fn n_cols(&self) -> usize {
        match self {
            Features::Dense(x) => x.ncols(),
            Features::Sparse(x) => x.n_cols(),
        }
    }
    /// Stored entries: rows x cols when dense.
    pub fn nnz(&self) -> usize {
        match self {
            Features::Dense(x) => x.len(),
            Features::Sparse(x) => x.nnz(),
        }
    }
    pub fn is_sparse(&self) -> bool {
        matches!(self, Features::Sparse(_))
    }

    /// The rows in `range` as a new matrix.
    pub fn slice_rows(&self, range: Range<usize>) -> Features {
        match self {
            Features::Dense(x) => Features::Dense(x.slice(s![range, ..]).to_owned()),
            Features::Sparse(x) => Features::Sparse(x.slice_rows(range)),
        }
    }

    /// Overwrite `out` with rows `rows` of this matrix, in that order, in the same storage
    /// (dense or CSR). Reuses `out`'s storage when it already has that kind and, for dense
    /// rows, that shape: a buffer refilled every iteration allocates only the first time.
    pub fn gather_into(&self, rows: &[usize], out: &mut Features) {
        match (self, &mut *out) {
            (Features::Dense(x), Features::Dense(o)) if o.dim() == (rows.len(), x.ncols()) => {
                for (mut dst, &r) in o.outer_iter_mut().zip(rows) {
                    dst.assign(&x.row(r));
                }
            }
            (Features::Dense(x), _) => *out = Features::Dense(x.select(Axis(0), rows)),
            (Features::Sparse(x), Features::Sparse(o)) => x.gather_into(rows, o),
            (Features::Sparse(x), _) => {
                let mut o = CsrMatrix {
                    n_rows: 0,
                    n_cols: x.n_cols,
                    indptr: Vec::new(),
                    indices: Vec::new(),
                    data: Vec::new(),
                };
                x.gather_into(rows, &mut o);
                *out = Features::Sparse(o);
            }
        }
    }

    /// Stack blocks of the same kind and column count vertically.
    pub fn vstack(parts: &[&Features]) -> Result<Features, DataError> {
        let first = parts
            .first()
            .ok_or_else(|| DataError::Invalid("nothing to stack".into()))?;
        match first {
            Features::Dense(_) => {
                let views: Result<Vec<_>, _> = parts
                    .iter()
                    .map(|p| match p {
                        Features::Dense(x) => Ok(x.view()),
                        Features::Sparse(_) => Err(DataError::Invalid(
                            "cannot stack dense and sparse blocks".into(),
                        )),
                    })
                    .collect();
                let views = views?;
                let cols = views[0].ncols();
                if let Some(v) = views.iter().find(|v| v.ncols() != cols) {
                    return Err(DataError::ShapeMismatch {
                        what: "columns of stacked dense blocks".into(),
                        left: cols,
                        right: v.ncols(),
                    });
                }
                ndarray::concatenate(Axis(0), &views)
                    .map(Features::Dense)
                    .map_err(|e| DataError::Invalid(e.to_string()))
            }
            Features::Sparse(_) => {
                let mats: Result<Vec<_>, _> = parts
                    .iter()
                    .map(|p| match p {
                        Features::Sparse(x) => Ok(x),
                        Features::Dense(_) => Err(DataError::Invalid(
                            "cannot stack dense and sparse blocks".into(),
                        )),
                    })
                    .collect();
                CsrMatrix::vstack(&mats?).map(Features::Sparse)
            }
        }
    }

    /// First row containing a non-finite value, if any.
    pub fn first_non_finite_row(&self) -> Option<usize> {
        match self {
            Features::Dense(x) => x
                .outer_iter()
                .position(|r| r.iter().any(|v| !v.is_finite())),
            Features::Sparse(x) => {
                (0..x.n_rows()).find(|&r| x.row(r).1.iter().any(|v| !v.is_finite()))
            }
        }
    }
}

/// Features, labels and the task they are for.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub x: Features,
    pub y: Array1<f64>,
    pub task: Task,
}

impl Dataset {
    /// Check shapes, finiteness and labels (normalizing binary 0/1 labels).
    pub fn new(x: Features, mut y: Array1<f64>, task: Task) -> Result<Self, DataError> {
        if x.n_rows() != y.len() {
            return Err(DataError::ShapeMismatch {
                what: "rows of X and length of y".into(),
                left: x.n_rows(),
                right: y.len(),
            });
        }
        if let Some(row) = x.first_non_finite_row() {
            return Err(DataError::NonFinite {
                what: "features X".into(),
                row,
            });
        }
        task.check_labels(&mut y)?;
        Ok(Dataset { x, y, task })
    }

    pub fn n_rows(&self) -> usize {
        self.y.len()
    }
    pub fn n_features(&self) -> usize {
        self.x.n_cols()
    }

    /// Overwrite `out` with rows `rows` (features and labels), reusing its storage (see
    /// [`Features::gather_into`]).
    pub fn gather_into(&self, rows: &[usize], out: &mut Dataset) {
        self.x.gather_into(rows, &mut out.x);
        if out.y.len() != rows.len() {
            out.y = Array1::zeros(rows.len());
        }
        for (dst, &r) in out.y.iter_mut().zip(rows) {
            *dst = self.y[r];
        }
        out.task = self.task;
    }

    /// Append the rows of `other` (the same columns, storage and task) below this dataset's.
    pub fn append_rows(&mut self, other: &Dataset) -> Result<(), DataError> {
        let mismatch = |what: &str, left: usize, right: usize| DataError::ShapeMismatch {
            what: what.into(),
            left,
            right,
        };
        if other.task != self.task {
            return Err(DataError::Invalid("rows appended from another task".into()));
        }
        match (&mut self.x, &other.x) {
            (Features::Dense(a), Features::Dense(b)) => {
                if a.ncols() != b.ncols() {
                    return Err(mismatch(
                        "columns of the rows appended",
                        a.ncols(),
                        b.ncols(),
                    ));
                }
                let mut all = Array2::zeros((a.nrows() + b.nrows(), a.ncols()));
                all.slice_mut(s![..a.nrows(), ..]).assign(a);
                all.slice_mut(s![a.nrows().., ..]).assign(b);
                *a = all;
            }
            (Features::Sparse(a), Features::Sparse(b)) => a.append_rows(b)?,
            _ => {
                return Err(DataError::Invalid(
                    "rows appended in another storage (dense and sparse)".into(),
                ))
            }
        }
        let mut y = Array1::zeros(self.y.len() + other.y.len());
        y.slice_mut(s![..self.y.len()]).assign(&self.y);
        y.slice_mut(s![self.y.len()..]).assign(&other.y);
        self.y = y;
        Ok(())
    }

    /// The rows in `range`.
    pub fn slice_rows(&self, range: Range<usize>) -> Dataset {
        Dataset {
            x: self.x.slice_rows(range.clone()),
            y: self.y.slice(s![range]).to_owned(),
            task: self.task,
        }
    }
}

/// Split `rows` into `k` contiguous, balanced partitions (the first `rows % k` get one extra row).
/// Deterministic; every partition is non-empty.
pub fn partition_ranges(rows: usize, k: usize) -> Result<Vec<Range<usize>>, DataError> {
    if k == 0 || rows < k {
        return Err(DataError::EmptyPartition { rows, parts: k });
    }
    let (base, extra) = (rows / k, rows % k);
    let mut start = 0;
    Ok((0..k)
        .map(|j| {
            let len = base + usize::from(j < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_rows_follow_the_held_ones_dense_and_sparse() {
        let t = Task::Binary;
        let dense = |rows: &[[f64; 2]], y: &[f64]| {
            let x = Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
            Dataset::new(Features::Dense(x), Array1::from(y.to_vec()), t).unwrap()
        };
        let mut a = dense(&[[1.0, 2.0]], &[1.0]);
        a.append_rows(&dense(&[[3.0, 4.0], [5.0, 6.0]], &[-1.0, 1.0]))
            .unwrap();
        assert_eq!(
            a,
            dense(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], &[1.0, -1.0, 1.0])
        );
        let csr = CsrMatrix::new(1, 3, vec![0, 1], vec![2], vec![7.0]).unwrap();
        let mut m = csr;
        m.append_rows(&CsrMatrix::new(2, 3, vec![0, 0, 2], vec![0, 1], vec![8.0, 9.0]).unwrap())
            .unwrap();
        assert_eq!(
            m,
            CsrMatrix::new(3, 3, vec![0, 1, 1, 3], vec![2, 0, 1], vec![7.0, 8.0, 9.0]).unwrap()
        );
        assert!(m
            .append_rows(&CsrMatrix::new(1, 4, vec![0, 0], vec![], vec![]).unwrap())
            .is_err());
    }

    /// A size the allocator cannot give is an error naming the bytes, not an abort.
    #[test]
    fn try_zeros_refuses_an_impossible_size_as_an_error() {
        assert_eq!(try_zeros(3, "x").unwrap().to_vec(), vec![0.0; 3]);
        let e = try_zeros(usize::MAX / 8, "the parameters").unwrap_err();
        assert!(e.to_string().contains("the parameters needs"), "{e}");
    }

    #[test]
    fn partitions_are_balanced_and_cover_all_rows() {
        let p = partition_ranges(10, 3).unwrap();
        assert_eq!(p, vec![0..4, 4..7, 7..10]);
        assert!(partition_ranges(2, 3).is_err());
        assert!(partition_ranges(5, 0).is_err());
    }

    #[test]
    fn csr_validation_rejects_bad_input() {
        assert!(CsrMatrix::new(1, 3, vec![0, 2], vec![2, 1], vec![1.0, 1.0]).is_err());
        assert!(CsrMatrix::new(1, 3, vec![0, 1], vec![3], vec![1.0]).is_err());
        assert!(CsrMatrix::new(1, 3, vec![0, 1], vec![0], vec![f64::NAN]).is_err());
        let m = CsrMatrix::new(2, 3, vec![0, 1, 3], vec![1, 0, 2], vec![1.0, 2.0, 3.0]).unwrap();
        let st = CsrMatrix::vstack(&[&m, &m.slice_rows(1..2)]).unwrap();
        assert_eq!(st.n_rows(), 3);
        assert_eq!(st.to_dense().row(2), m.to_dense().row(1));
    }

    #[test]
    fn gathered_rows_match_and_reuse_the_buffer() {
        let m = CsrMatrix::new(
            4,
            3,
            vec![0, 1, 3, 3, 5],
            vec![1, 0, 2, 0, 1],
            vec![1.0, 2.0, 3.0, 4.0, 5.0],
        )
        .unwrap();
        let y = ndarray::arr1(&[0.0, 1.0, 2.0, 1.0]);
        let task = Task::Multiclass { classes: 3 };
        let rows = [3, 0, 2, 3];
        for x in [Features::Dense(m.to_dense()), Features::Sparse(m.clone())] {
            let d = Dataset::new(x, y.clone(), task).unwrap();
            let mut out = d.slice_rows(0..1);
            for _ in 0..2 {
                d.gather_into(&rows, &mut out);
                assert_eq!(out.y, ndarray::arr1(&[1.0, 0.0, 2.0, 1.0]));
                let dense = match &out.x {
                    Features::Dense(a) => a.clone(),
                    Features::Sparse(c) => c.to_dense(),
                };
                for (i, &r) in rows.iter().enumerate() {
                    assert_eq!(dense.row(i), m.to_dense().row(r));
                }
            }
            // The second gather reused the first one's storage.
            let before = match &out.x {
                Features::Dense(a) => a.as_ptr() as usize,
                Features::Sparse(c) => c.data().as_ptr() as usize,
            };
            d.gather_into(&[1, 2, 0, 0], &mut out);
            let after = match &out.x {
                Features::Dense(a) => a.as_ptr() as usize,
                Features::Sparse(c) => c.data().as_ptr() as usize,
            };
            assert_eq!(before, after);
        }
    }

    #[test]
    fn binary_labels_normalize() {
        let mut y = ndarray::arr1(&[0.0, 1.0, 1.0]);
        Task::Binary.check_labels(&mut y).unwrap();
        assert_eq!(y, ndarray::arr1(&[-1.0, 1.0, 1.0]));
        let mut y = ndarray::arr1(&[2.0]);
        assert!(Task::Binary.check_labels(&mut y).is_err());
        let mut y = ndarray::arr1(&[9.0, 10.0]);
        assert!(Task::Multiclass { classes: 10 }
            .check_labels(&mut y)
            .is_err());
    }
}
