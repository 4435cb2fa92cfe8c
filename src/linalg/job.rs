//! The pure parts of the coded mat-vec job (`gradcode matvec`, issue 6): how A is cut into
//! blocks, what each worker holds and computes, the per-iteration vectors and the validation
//! tolerance. No MPI and no HDF5 here; the transport and the files are in `cmd::matvec`.
//!
//! Implements the MDS mat-vec of Lee et al. (GUIDE §3, "Coded linear algebra") on top of
//! [`MdsCode`]: A (rows × cols) is cut into k·r row blocks of b = ⌈rows / (k·r)⌉ rows
//! ([`BlockLayout`], the last blocks zero-padded, exactly as [`MdsCode::encode`] does), and worker
//! w holds the r coded blocks Σ_j G[w·r + t, j] A_j, t < r.
//!
//! # Who encodes
//! Each worker encodes its own block: it reads by hyperslab only the data blocks with a non-zero
//! coefficient in its generator rows ([`needed_blocks`]) and combines them ([`encode_worker`]).
//! Nothing large travels over MPI at start-up. For the dense MDS families (vandermonde,
//! chebyshev, rotation, circulant, and the parity workers of systematic) every coefficient is
//! non-zero, so such a worker reads all of A once: this trades start-up I/O for no start-up
//! messages and is the right call on a shared file system only for moderate A.
//!
//! # Sparse A
//! A worker whose generator rows select a single block (r = 1, one non-zero coefficient:
//! every worker of `replication`, the systematic workers of `mds-systematic`) keeps that block
//! in its original layout ([`CodedBlock::Plain`]): a CSR block stays CSR, scaled on the fly. A
//! parity block, a linear combination of several sparse row blocks, is densified
//! ([`CodedBlock::Dense`], (r·b) × cols): the sum of k sparse blocks has up to k times the
//! non-zeros of one block per row, so a CSR parity block is rarely much smaller than dense for
//! the k used here, and the dense product is BLAS. This is documented, not optimized.
//!
//! Not done here: the polynomial (AᵀB) job, decoding (see [`MdsCode::decode`] and
//! [`super::StreamingDecoder`]).

use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView1};
use rand::{Rng, SeedableRng};

use super::{LinalgError, MdsCode};
use crate::data::Features;

/// How A is cut into the code's k·r data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// Rows of A.
    pub rows: usize,
    /// Columns of A (length of x).
    pub cols: usize,
    /// Data blocks k·r.
    pub blocks: usize,
    /// Rows per block b (the last blocks are zero-padded).
    pub block_rows: usize,
}

impl BlockLayout {
    /// The layout of a rows × cols matrix for `code`.
    pub fn new(code: &MdsCode, rows: usize, cols: usize) -> Result<Self, LinalgError> {
        if rows == 0 || cols == 0 {
            return Err(LinalgError::invalid(
                code.family(),
                format!("the matrix is {rows} × {cols}; it needs at least one row and column"),
            ));
        }
        let blocks = code.data_blocks();
        Ok(BlockLayout {
            rows,
            cols,
            blocks,
            block_rows: rows.div_ceil(blocks).max(1),
        })
    }

    /// Rows of A in data block `j` (empty for a block entirely past the last row).
    pub fn range(&self, j: usize) -> Range<usize> {
        let start = (j * self.block_rows).min(self.rows);
        let end = ((j + 1) * self.block_rows).min(self.rows);
        start..end
    }

    /// Length of one worker's result: r·b.
    pub fn result_len(&self, code: &MdsCode) -> usize {
        code.blocks_per_worker() * self.block_rows
    }
}

/// Data blocks with a non-zero coefficient in worker `w`'s generator rows, ascending.
pub fn needed_blocks(code: &MdsCode, w: usize) -> Vec<usize> {
    let g = code.worker_rows(w);
    (0..g.ncols())
        .filter(|&j| g.column(j).iter().any(|&c| c != 0.0))
        .collect()
}

/// What a worker holds.
#[derive(Debug, Clone)]
pub enum CodedBlock {
    /// coef · A_block, in A's own layout (CSR stays CSR); r = 1.
    Plain {
        block: usize,
        coef: f64,
        data: Features,
        block_rows: usize,
    },
    /// The (r·b) × cols dense coded matrix.
    Dense(Array2<f64>),
}

impl CodedBlock {
    /// Length of the result r·b.
    pub fn result_len(&self) -> usize {
        match self {
            CodedBlock::Plain { block_rows, .. } => *block_rows,
            CodedBlock::Dense(m) => m.nrows(),
        }
    }

    /// Length of the x it multiplies (columns).
    pub fn cols(&self) -> usize {
        match self {
            CodedBlock::Plain { data, .. } => data.n_cols(),
            CodedBlock::Dense(m) => m.ncols(),
        }
    }

    /// Whether the block is kept sparse.
    pub fn is_sparse(&self) -> bool {
        matches!(
            self,
            CodedBlock::Plain {
                data: Features::Sparse(_),
                ..
            }
        )
    }

    /// out = (coded block) · x; `out` has [`CodedBlock::result_len`] values.
    pub fn matvec_into(&self, x: ArrayView1<f64>, out: &mut [f64]) -> Result<(), LinalgError> {
        if out.len() != self.result_len() {
            return Err(LinalgError::Shape(format!(
                "result buffer of {} values for a block result of {}",
                out.len(),
                self.result_len()
            )));
        }
        match self {
            CodedBlock::Plain { coef, data, .. } => {
                let m = data.n_rows();
                features_matvec(data, x, &mut out[..m])?;
                if *coef != 1.0 {
                    out[..m].iter_mut().for_each(|v| *v *= coef);
                }
                out[m..].fill(0.0);
                Ok(())
            }
            CodedBlock::Dense(c) => {
                if c.ncols() != x.len() {
                    return Err(LinalgError::Shape(format!(
                        "x of length {} for a block of {} columns",
                        x.len(),
                        c.ncols()
                    )));
                }
                let y = c.dot(&x);
                for (o, v) in out.iter_mut().zip(y.iter()) {
                    *o = *v;
                }
                Ok(())
            }
        }
    }
}

/// out = A x for dense or CSR A (`out` has A's row count).
pub fn features_matvec(
    a: &Features,
    x: ArrayView1<f64>,
    out: &mut [f64],
) -> Result<(), LinalgError> {
    if a.n_cols() != x.len() || a.n_rows() != out.len() {
        return Err(LinalgError::Shape(format!(
            "{} × {} matrix times x of length {} into {} values",
            a.n_rows(),
            a.n_cols(),
            x.len(),
            out.len()
        )));
    }
    match a {
        Features::Dense(m) => {
            for (o, row) in out.iter_mut().zip(m.rows()) {
                *o = row.dot(&x);
            }
        }
        Features::Sparse(m) => {
            for (r, o) in out.iter_mut().enumerate() {
                let (idx, val) = m.row(r);
                *o = idx.iter().zip(val).map(|(&j, &v)| v * x[j as usize]).sum();
            }
        }
    }
    Ok(())
}

/// Build worker `w`'s coded block from `data`: the rows of the [`needed_blocks`] of `w`,
/// stacked in that order (each block's rows as in [`BlockLayout::range`]).
pub fn encode_worker(
    code: &MdsCode,
    layout: &BlockLayout,
    w: usize,
    data: Features,
) -> Result<CodedBlock, LinalgError> {
    let needed = needed_blocks(code, w);
    let expect: usize = needed.iter().map(|&j| layout.range(j).len()).sum();
    if data.n_rows() != expect || data.n_cols() != layout.cols {
        return Err(LinalgError::Shape(format!(
            "worker {w}: {} × {} rows read, expected {expect} × {} for blocks {needed:?}",
            data.n_rows(),
            data.n_cols(),
            layout.cols
        )));
    }
    let g = code.worker_rows(w);
    let r = code.blocks_per_worker();
    let b = layout.block_rows;
    if r == 1 && needed.len() == 1 {
        return Ok(CodedBlock::Plain {
            block: needed[0],
            coef: g[[0, needed[0]]],
            data,
            block_rows: b,
        });
    }
    let mut c = Array2::<f64>::zeros((r * b, layout.cols));
    let mut at = 0;
    for &j in &needed {
        let len = layout.range(j).len();
        for t in 0..r {
            let coef = g[[t, j]];
            if coef == 0.0 {
                continue;
            }
            for i in 0..len {
                let mut dst = c.row_mut(t * b + i);
                match &data {
                    Features::Dense(m) => dst.scaled_add(coef, &m.row(at + i)),
                    Features::Sparse(m) => {
                        let (idx, val) = m.row(at + i);
                        for (&jj, &v) in idx.iter().zip(val) {
                            dst[jj as usize] += coef * v;
                        }
                    }
                }
            }
        }
        at += len;
    }
    Ok(CodedBlock::Dense(c))
}

/// The row ranges of A worker `w` reads, in the order [`encode_worker`] expects (empty ranges
/// of all-padding blocks are dropped).
pub fn worker_ranges(code: &MdsCode, layout: &BlockLayout, w: usize) -> Vec<Range<usize>> {
    needed_blocks(code, w)
        .into_iter()
        .map(|j| layout.range(j))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The x of iteration `iteration`: standard normal entries seeded by (seed, iteration), the
/// same on every run and every rank.
pub fn iteration_vector(seed: u64, iteration: u64, len: usize) -> Array1<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4D41_5456_4543_0000);
    rng.set_stream(iteration);
    Array1::from_shape_fn(len, |_| {
        // Box–Muller: two uniforms in (0, 1].
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    })
}

/// ‖a − b‖₂ / ‖b‖₂ (the absolute error when b = 0).
pub fn rel_err(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    let diff = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let norm = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm > 0.0 {
        diff / norm
    } else {
        diff
    }
}

/// Relative error accepted for a decode through a system of condition number `cond`: a
/// backward-stable solve loses about cond · ε; the tolerance allows a factor 10⁴ over that
/// (encoding and the products add their own rounding), and never less than 1e-12.
pub fn validation_tol(cond: f64) -> f64 {
    (cond.max(1.0) * f64::EPSILON * 1e4).max(1e-12)
}
