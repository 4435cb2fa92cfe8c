//! Coded linear algebra (issue 6): MDS codes for A·x, polynomial and MatDot codes for AᵀB,
//! Lagrange coded computing, all in real (f64) arithmetic with the conditioning reported.
//!
//! Pure math: no MPI, no HDF5. GUIDE §3, "Coded linear algebra".
//!
//! # The codes
//! A linear code here is a real generator G of shape (n·r) × (k·r): the data is cut into k·r
//! blocks, worker i stores the r coded blocks given by rows i·r .. (i+1)·r of G, and any k workers
//! (any k·r rows in groups of r) decode by solving the (k·r) × (k·r) system G_F X = Y. With r = 1
//! this is the classic MDS mat-vec of Lee et al. ([`MdsCode`]); r > 1 is how Ramamoorthy & Tang's
//! embeddings carry complex roots of unity in real arithmetic:
//!
//! * `rotation`: ω = e^{2πi/q} (q = n) is replaced by the 2 × 2 rotation R(2π/q), so r = 2. The
//!   real block matrix [R^{ij}] restricted to any k workers is unitarily similar to
//!   diag(V_F, conj V_F) with V_F the complex Vandermonde matrix on the nodes ω^i, i ∈ F, so its
//!   condition number is exactly that of V_F (computed that way, checked against a real SVD).
//! * `circulant`: ω is replaced by the q × q cyclic permutation P (q the smallest prime ≥ n,
//!   r = q − 1), acting on the sum-zero subspace 1^⊥ in an orthonormal basis Q (q × (q − 1)):
//!   block (i, j) is Qᵀ P^{ij} Q. Then G_F is unitarily similar to diag over ℓ = 1..q−1 of the
//!   Vandermonde matrices on the nodes ω^{ℓi} (all distinct because q is prime), and
//!   cond(G_F) = max_ℓ σ_max / min_ℓ σ_min. Note: with the orthonormal Q the encoding is a dense
//!   (q−1) × (q−1) mixing per block pair instead of R & T's additions-only padding variant; rank 0
//!   encodes once, so this costs nothing per iteration, and it makes the real condition number
//!   equal the complex one instead of up to q times it.
//! * `vandermonde` (equispaced nodes in [−1, 1], monomials) and `chebyshev` (Chebyshev nodes,
//!   monomials) are there to show the problem: their worst cond grows exponentially in n.
//! * `systematic`: G = [I_k; P] with P a Cauchy matrix (every square submatrix of a Cauchy matrix
//!   is invertible, so every k rows of G are); [`StreamingDecoder`] solves only for the missing
//!   systematic blocks, an s × s system for s missing, updated as results arrive.
//! * `replication`: worker i stores block i mod k; decodable iff every block is covered.
//! * `systematic-rotation`: the systematic form G·G_S⁻¹ of `rotation` (r = 2), the k systematic
//!   workers placed at the evenly spread nodes ⌊w·n/k⌋ so that G_S is well conditioned; decoded
//!   by [`StreamingDecoder`] like `systematic`, with 10–100× smaller worst cond than the Cauchy
//!   parity (the table in docs/linear-algebra.md).
//!
//! Decoding always goes through an SVD of the square system ([`svd_solve`]), so the subset's
//! condition number comes with every decode (never the normal equations).
//!
//! # Polynomial codes ([`poly`])
//! Yu–Maddah-Ali–Avestimehr for AᵀB with A in m column blocks and B in p: threshold mp, with real
//! equispaced nodes (`poly-real`), Chebyshev nodes (`poly-chebyshev`) or the 2 × 2 rotation
//! embedding (`poly-rotation`, 2m and 2p blocks, four result blocks per worker); MatDot
//! (threshold 2m − 1) at Chebyshev nodes.
//!
//! # Lagrange coded computing ([`lcc`])
//! Over the reals at Chebyshev nodes; threshold (K − 1)·deg f + 1 enforced. See that module for
//! why the reals and not a prime field.

pub mod code;
pub mod cond;
pub mod job;
pub mod lcc;
pub mod poly;
pub mod serve;
pub mod stream;

#[cfg(test)]
mod tests;

use ndarray::{Array2, ArrayView2, Axis};
use ndarray_linalg::{c64, SVD};
use thiserror::Error;

pub use code::{Decoded, Encoded, Family, MdsCode};
pub use cond::{survey, CondSurvey};
pub use lcc::{Lcc, LccFunction};
pub use poly::{PolyCode, PolyFamily};
pub use stream::StreamingDecoder;

/// Errors of the coded linear algebra.
#[derive(Debug, Error)]
pub enum LinalgError {
    #[error("invalid parameters for '{family}': {reason}")]
    Invalid { family: String, reason: String },
    #[error("unknown family '{name}' (expected one of: {expected})")]
    UnknownFamily { name: String, expected: String },
    #[error("{have} distinct results cannot decode '{family}': its recovery threshold is {need}")]
    BelowThreshold {
        family: String,
        have: usize,
        need: usize,
    },
    #[error("results from workers {workers:?} cannot be decoded by '{family}'")]
    NotDecodable { family: String, workers: Vec<usize> },
    #[error("numerically singular system: {0}")]
    Singular(String),
    #[error("linear algebra failed: {0}")]
    Numeric(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
}

impl LinalgError {
    pub(crate) fn invalid(family: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        LinalgError::Invalid {
            family: family.to_string(),
            reason: reason.into(),
        }
    }
}

/// Singular values of a real matrix, largest first.
fn singular_values(a: ArrayView2<f64>) -> Result<Vec<f64>, LinalgError> {
    let (_, s, _) = a
        .svd(false, false)
        .map_err(|e| LinalgError::Numeric(format!("SVD ({} × {}): {e}", a.nrows(), a.ncols())))?;
    Ok(s.to_vec())
}

/// Singular values of a complex matrix, largest first.
pub(crate) fn singular_values_c(a: ArrayView2<c64>) -> Result<Vec<f64>, LinalgError> {
    let (_, s, _) = a
        .svd(false, false)
        .map_err(|e| LinalgError::Numeric(format!("SVD ({} × {}): {e}", a.nrows(), a.ncols())))?;
    Ok(s.to_vec())
}

/// 2-norm condition number σ_max/σ_min of a real matrix (∞ when singular, NaN when empty).
pub fn cond(a: ArrayView2<f64>) -> Result<f64, LinalgError> {
    let s = singular_values(a)?;
    Ok(ratio(&s))
}

/// 2-norm condition number of a complex matrix.
pub fn cond_c(a: ArrayView2<c64>) -> Result<f64, LinalgError> {
    let s = singular_values_c(a)?;
    Ok(ratio(&s))
}

fn ratio(s: &[f64]) -> f64 {
    let smax = s.iter().copied().fold(f64::NAN, f64::max);
    let smin = s.iter().copied().fold(f64::NAN, f64::min);
    if smin > 0.0 {
        smax / smin
    } else if smax.is_nan() {
        f64::NAN
    } else {
        f64::INFINITY
    }
}

/// Solve the square system A X = Y by SVD (backward stable, error ≈ cond · ε); returns X and
/// cond(A). Fails when σ_min ≤ n · ε · σ_max (numerically singular).
pub fn svd_solve(
    a: ArrayView2<f64>,
    y: ArrayView2<f64>,
) -> Result<(Array2<f64>, f64), LinalgError> {
    let n = a.nrows();
    if a.ncols() != n || y.nrows() != n {
        return Err(LinalgError::Shape(format!(
            "system {} × {} with right-hand side {} × {}",
            a.nrows(),
            a.ncols(),
            y.nrows(),
            y.ncols()
        )));
    }
    let (u, s, vt) = a
        .svd(true, true)
        .map_err(|e| LinalgError::Numeric(format!("SVD ({n} × {n}): {e}")))?;
    let (u, vt) = match (u, vt) {
        (Some(u), Some(vt)) => (u, vt),
        _ => {
            return Err(LinalgError::Numeric(
                "SVD returned no singular vectors".into(),
            ))
        }
    };
    let c = ratio(&s.to_vec());
    let smax = s.iter().copied().fold(0.0, f64::max);
    let smin = s.iter().copied().fold(f64::INFINITY, f64::min);
    if smin.is_nan() || smin <= smax * n as f64 * f64::EPSILON {
        return Err(LinalgError::Singular(format!(
            "{n} × {n} system with σ_min = {smin:.3e}, σ_max = {smax:.3e}"
        )));
    }
    let mut uty = u.t().dot(&y);
    for (mut row, &sv) in uty.axis_iter_mut(Axis(0)).zip(s.iter()) {
        row.mapv_inplace(|v| v / sv);
    }
    Ok((vt.t().dot(&uty), c))
}

/// Chebyshev nodes of the first kind on [−1, 1]: cos((2i + 1)π / 2n), i = 0..n.
pub fn chebyshev_nodes(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((2 * i + 1) as f64 * std::f64::consts::PI / (2 * n) as f64).cos())
        .collect()
}

/// n equispaced nodes on [−1, 1] (0 for n = 1).
pub fn equispaced_nodes(n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![0.0];
    }
    (0..n)
        .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
        .collect()
}

/// Ceiling division.
pub(crate) fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Check that `workers` are distinct and below n.
pub(crate) fn check_workers(family: &str, workers: &[usize], n: usize) -> Result<(), LinalgError> {
    let mut seen = vec![false; n];
    for &w in workers {
        if w >= n || seen[w] {
            return Err(LinalgError::invalid(
                family,
                format!("worker list {workers:?} must be distinct workers below n = {n}"),
            ));
        }
        seen[w] = true;
    }
    Ok(())
}

/// Copy a (r·b) × c block matrix into r rows of length b·c (row-major flattening of each block).
pub(crate) fn blocks_to_rows(m: ArrayView2<f64>, r: usize) -> Array2<f64> {
    let b = m.nrows() / r.max(1);
    let c = m.ncols();
    let mut out = Array2::<f64>::zeros((r, b * c));
    for t in 0..r {
        for i in 0..b {
            for j in 0..c {
                out[[t, i * c + j]] = m[[t * b + i, j]];
            }
        }
    }
    out
}
