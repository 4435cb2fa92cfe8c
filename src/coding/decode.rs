//! Generic least-squares decoding: for responders F, a* = argmin ‖B_Fᵀ a − 1‖₂ by SVD.
//!
//! The pseudo-inverse cuts singular values below `max(|F|, k) · ε · σ_max` (the LAPACK/NumPy
//! `rcond` default), so rank-deficient B_F (more responders than needed, or too few) yields the
//! minimum-norm least-squares weights. The normal equations are never formed: they would square
//! the condition number. Not implemented: an incremental (rank-one update) decoder.

use ndarray::{Array1, ArrayView2, Axis};
use ndarray_linalg::SVD;

use super::{CodeError, Decoding, GradientCode, EXACT_TOL};

/// Whether `residual` counts as exact for k partitions: `residual ≤ EXACT_TOL · max(1, √k)`.
pub(crate) fn is_exact(residual: f64, k: usize) -> bool {
    residual <= EXACT_TOL * (k as f64).sqrt().max(1.0)
}

/// err(F) = ‖Σ_{i∈F} a_i b_i − 1‖₂, computed from the code's sparse rows.
pub fn residual_of(code: &dyn GradientCode, responders: &[usize], weights: &[f64]) -> f64 {
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
    let k = b.ncols();
    let m = responders.len();
    if m == 0 || k == 0 {
        let residual = (k as f64).sqrt();
        return Ok(Decoding {
            responders: responders.to_vec(),
            weights: vec![0.0; m],
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
    let vt1 = vt.sum_axis(Axis(1)); // Vᵀ 1
    let mut coef = Array1::<f64>::zeros(m);
    let mut smin = f64::INFINITY;
    for (t, &sv) in sigma.iter().enumerate() {
        if sv > cutoff && sv > 0.0 {
            coef[t] = vt1[t] / sv;
            smin = smin.min(sv);
        }
    }
    let a = u.dot(&coef);
    let r = bf.t().dot(&a) - 1.0;
    let residual = r.dot(&r).sqrt();
    let condition = if smin.is_finite() {
        smax / smin
    } else {
        f64::NAN
    };
    Ok(Decoding {
        responders: responders.to_vec(),
        weights: a.to_vec(),
        residual,
        exact: is_exact(residual, k),
        condition,
    })
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
