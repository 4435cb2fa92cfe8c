//! Generic least-squares decoding: for responders F, a* = argmin ‖B_Fᵀ a − 1‖₂ by SVD. For a
//! code with split m > 1 (B is n × k·m, column j·m + u) one SVD of B_F serves the m targets
//! t_u (1 on the columns of piece u, 0 elsewhere): a_u* = argmin ‖B_Fᵀ a_u − t_u‖₂.
//!
//! The pseudo-inverse cuts singular values below `max(|F|, k) · ε · σ_max` (the LAPACK/NumPy
//! `rcond` default), so rank-deficient B_F (more responders than needed, or too few) yields the
//! minimum-norm least-squares weights. The normal equations are never formed: they would square
//! the condition number. Not implemented: an incremental (rank-one update) decoder.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use ndarray_linalg::SVD;

use super::{CodeError, Decoding, GradientCode, EXACT_TOL};

/// Whether `residual` counts as exact for k partitions: `residual ≤ EXACT_TOL · max(1, √k)`.
pub(crate) fn is_exact(residual: f64, k: usize) -> bool {
    residual <= EXACT_TOL * (k as f64).sqrt().max(1.0)
}

/// err(F) = ‖Σ_{i∈F} a_i b_i − 1‖₂, computed from the code's sparse rows (split m > 1:
/// √Σ_u ‖Σ_i a_u[i] b_i − t_u‖², `weights` piece-major).
pub fn residual_of(code: &dyn GradientCode, responders: &[usize], weights: &[f64]) -> f64 {
    let m = code.split();
    if m > 1 {
        let n = responders.len();
        let mut total = 0.0;
        for u in 0..m {
            let mut r = vec![-1.0; code.n_partitions()];
            for (&w, &a) in responders.iter().zip(weights.get(u * n..).unwrap_or(&[])) {
                let held = code.assignment(w).iter();
                for (&j, c) in held.zip(code.coefficients(w).chunks(m)) {
                    if let Some(x) = r.get_mut(j) {
                        *x += a * c[u];
                    }
                }
            }
            // The other pieces' columns should be 0: their coefficients under a_u.
            let mut off = 0.0;
            for v in (0..m).filter(|&v| v != u) {
                let mut q = vec![0.0; code.n_partitions()];
                for (&w, &a) in responders.iter().zip(weights.get(u * n..).unwrap_or(&[])) {
                    let held = code.assignment(w).iter();
                    for (&j, c) in held.zip(code.coefficients(w).chunks(m)) {
                        if let Some(x) = q.get_mut(j) {
                            *x += a * c[v];
                        }
                    }
                }
                off += q.iter().map(|x| x * x).sum::<f64>();
            }
            total += r.iter().map(|x| x * x).sum::<f64>() + off;
        }
        return total.sqrt();
    }
    let mut r = vec![-1.0; code.n_partitions()];
    for (&w, &a) in responders.iter().zip(weights) {
        for (&j, &c) in code.assignment(w).iter().zip(code.coefficients(w)) {
            if let Some(x) = r.get_mut(j) {
                *x += a * c;
            }
        }
    }
    r.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Least-squares decoding of `responders` (sorted, valid rows of `b`) for code matrix `b` (n × k).
///
/// `condition` is σ_max/σ_min over the singular values of B_F above the cutoff (NaN when B_F has
/// none, e.g. no responders); `residual` is recomputed from the weights, not taken from the SVD.
pub fn least_squares_decode(
    b: ArrayView2<f64>,
    responders: &[usize],
) -> Result<Decoding, CodeError> {
    least_squares_decode_split(b, responders, 1)
}

/// [`least_squares_decode`] for a code with split `pieces` = m (B is n × k·m, column j·m + u):
/// m weight vectors, piece-major, from one SVD; the residual is √Σ_u ‖B_Fᵀ a_u − t_u‖² and
/// exactness is judged on k·m columns. m = 1 is [`least_squares_decode`].
pub fn least_squares_decode_split(
    b: ArrayView2<f64>,
    responders: &[usize],
    pieces: usize,
) -> Result<Decoding, CodeError> {
    let k = b.ncols();
    let m = responders.len();
    let pieces = pieces.max(1);
    if m == 0 || k == 0 {
        let residual = (k as f64).sqrt();
        return Ok(Decoding {
            responders: responders.to_vec(),
            weights: vec![0.0; m * pieces],
            residual,
            exact: is_exact(residual, k),
            condition: f64::NAN,
        });
    }
    if let Some(&bad) = responders.iter().find(|&&r| r >= b.nrows()) {
        return Err(CodeError::Linalg(format!(
            "responder {bad} is not a row of the {} × {k} code matrix",
            b.nrows()
        )));
    }
    let bf = b.select(Axis(0), responders); // m × k
    let (u, sigma, vt) = bf
        .svd(true, true)
        .map_err(|e| CodeError::Linalg(format!("SVD of B_F ({m} × {k}): {e}")))?;
    let (u, vt) = match (u, vt) {
        (Some(u), Some(vt)) => (u, vt),
        _ => return Err(CodeError::Linalg("SVD returned no singular vectors".into())),
    };
    // B_F = U Σ Vᵀ, so B_Fᵀ a = 1 has the least-squares solution a = U Σ⁺ Vᵀ 1.
    let smax = sigma.iter().copied().fold(0.0, f64::max);
    let cutoff = smax * (m.max(k) as f64) * f64::EPSILON;
    let kept = |sv: f64| sv > cutoff && sv > 0.0;
    let smin = sigma
        .iter()
        .copied()
        .filter(|&sv| kept(sv))
        .fold(f64::INFINITY, f64::min);
    let condition = if smin.is_finite() {
        smax / smin
    } else {
        f64::NAN
    };
    if pieces > 1 {
        let (weights, residual) = split_weights(bf.view(), (&u, &sigma, &vt), cutoff, pieces);
        return Ok(Decoding {
            responders: responders.to_vec(),
            weights,
            residual,
            exact: is_exact(residual, k),
            condition,
        });
    }
    let vt1 = vt.sum_axis(Axis(1)); // Vᵀ 1
    let mut coef = Array1::<f64>::zeros(m);
    for (t, &sv) in sigma.iter().enumerate() {
        if kept(sv) {
            coef[t] = vt1[t] / sv;
        }
    }
    let a = u.dot(&coef);
    let r = bf.t().dot(&a) - 1.0;
    let residual = r.dot(&r).sqrt();
    Ok(Decoding {
        responders: responders.to_vec(),
        weights: a.to_vec(),
        residual,
        exact: is_exact(residual, k),
        condition,
    })
}

/// The m weight vectors a_u = U Σ⁺ Vᵀ t_u of a split code (piece-major) from the SVD
/// (U, Σ, Vᵀ) of B_F (|F| × k·m), singular values at or below `cutoff` dropped; and the residual
/// √Σ_u ‖B_Fᵀ a_u − t_u‖².
fn split_weights(
    bf: ArrayView2<f64>,
    (u, sigma, vt): (&Array2<f64>, &Array1<f64>, &Array2<f64>),
    cutoff: f64,
    pieces: usize,
) -> (Vec<f64>, f64) {
    let m = bf.nrows();
    let mut weights = Vec::with_capacity(m * pieces);
    let mut res2 = 0.0;
    for p in 0..pieces {
        let mut coef = Array1::<f64>::zeros(m);
        for (t, &sv) in sigma.iter().enumerate() {
            if sv > cutoff && sv > 0.0 {
                // (Vᵀ t_p)[t]: the columns j·m + p of row t.
                let vtt: f64 = vt.row(t).iter().skip(p).step_by(pieces).sum();
                coef[t] = vtt / sv;
            }
        }
        let a = u.dot(&coef);
        let mut r = bf.t().dot(&a);
        for (c, x) in r.iter_mut().enumerate() {
            if c % pieces == p {
                *x -= 1.0;
            }
        }
        res2 += r.dot(&r);
        weights.extend(a.iter().copied());
    }
    (weights, res2.sqrt())
}

/// The same weight `weight` on every responder (a one-step decoding), with its honest residual
/// ‖B_Fᵀa − 1‖₂. `condition` is not computed (NaN): the one-step decoder needs no solve.
pub fn uniform_decode(code: &dyn GradientCode, responders: &[usize], weight: f64) -> Decoding {
    let weights = vec![weight; responders.len()];
    let residual = residual_of(code, responders, &weights);
    Decoding {
        responders: responders.to_vec(),
        exact: is_exact(residual, code.n_partitions()),
        weights,
        residual,
        condition: f64::NAN,
    }
}
