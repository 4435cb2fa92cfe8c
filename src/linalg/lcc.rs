//! Lagrange coded computing (Yu et al.): evaluate a polynomial f on K data blocks X_1..X_K with
//! n workers, any (K − 1)·deg f + 1 of which suffice.
//!
//! Encoding: u(z) = Σ_j X_j ℓ_j(z) with ℓ_j the Lagrange basis on the points β_1..β_K, so
//! u(β_j) = X_j; worker i gets u(α_i) and returns f(u(α_i)). Since f ∘ u is a polynomial of degree
//! (K − 1)·deg f, any T = (K − 1)·deg f + 1 results determine it, and f(X_j) = (f ∘ u)(β_j) is
//! read off by Lagrange interpolation on the responders' α's. With fewer than T results the
//! decoder refuses ([`LinalgError::BelowThreshold`]): there is no exact answer to give.
//!
//! **Field: the reals, at Chebyshev nodes.** α_i are the n Chebyshev points of [−1, 1] and β_j
//! the K Chebyshev points, so both encoding (ℓ_j(α_i)) and decoding (interpolation at the α's of
//! any T responders, evaluated at the β's) are interpolation at well-spread points on one
//! interval; the amplification of rounding errors is the Lebesgue constant
//! max_j Σ_i |L_i(β_j)|, which the decoder reports. We chose the reals because the data of this
//! project (gradients, features) is f64: a prime field would be exact, but only for integer data,
//! needing fixed-point quantization with a scale chosen so that f of the quantized values stays
//! below the prime (f doubles the bit width per degree), plus modular arithmetic on every worker.
//! The price of the reals: with many stragglers the responders' α's leave gaps and the Lebesgue
//! constant grows (exponentially in the gap size), so the decode error is reported, not assumed.
//! For exact integer data, a prime-field variant is left as future work.

use ndarray::{Array2, ArrayView2};

use super::{chebyshev_nodes, check_workers, LinalgError};

/// The polynomial f, applied to one block.
#[derive(Debug, Clone, PartialEq)]
pub enum LccFunction {
    /// f(X) = XᵀX (degree 2).
    Gram,
    /// f(X) = Σ_d c_d X^{∘d}, elementwise (degree = index of the last non-zero coefficient).
    Elementwise(Vec<f64>),
}

impl LccFunction {
    /// deg f.
    pub fn degree(&self) -> usize {
        match self {
            LccFunction::Gram => 2,
            LccFunction::Elementwise(c) => c.iter().rposition(|&v| v != 0.0).unwrap_or(0),
        }
    }

    /// f(x).
    pub fn apply(&self, x: ArrayView2<f64>) -> Array2<f64> {
        match self {
            LccFunction::Gram => x.t().dot(&x),
            LccFunction::Elementwise(c) => {
                x.mapv(|v| c.iter().rev().fold(0.0, |acc, &cd| acc * v + cd))
            }
        }
    }
}

/// A Lagrange code for K blocks on n workers.
#[derive(Debug, Clone)]
pub struct Lcc {
    n: usize,
    k: usize,
    f: LccFunction,
    alphas: Vec<f64>,
    betas: Vec<f64>,
}

/// What [`Lcc::decode`] returns.
#[derive(Debug, Clone)]
pub struct LccDecoded {
    /// f(X_j), j = 1..K.
    pub values: Vec<Array2<f64>>,
    /// Lebesgue constant of the interpolation used: max_j Σ_i |L_i(β_j)|.
    pub lebesgue: f64,
    /// Workers used.
    pub used: Vec<usize>,
}

/// ℓ(x) for the Lagrange basis on `pts`: ℓ_i(x) = Π_{l≠i} (x − p_l)/(p_i − p_l).
fn lagrange_basis(pts: &[f64], x: f64) -> Vec<f64> {
    (0..pts.len())
        .map(|i| {
            pts.iter()
                .enumerate()
                .filter(|&(l, _)| l != i)
                .map(|(_, &pl)| (x - pl) / (pts[i] - pl))
                .product()
        })
        .collect()
}

impl Lcc {
    const NAME: &'static str = "lcc";

    /// n workers, K data blocks, polynomial f. Needs n ≥ (K − 1)·deg f + 1.
    pub fn new(n: usize, k: usize, f: LccFunction) -> Result<Self, LinalgError> {
        if k == 0 {
            return Err(LinalgError::invalid(Self::NAME, "need K ≥ 1 data blocks"));
        }
        let t = (k - 1) * f.degree() + 1;
        if n < t {
            return Err(LinalgError::invalid(
                Self::NAME,
                format!(
                    "n = {n} workers is below the recovery threshold (K − 1)·deg f + 1 = \
                     ({} − 1)·{} + 1 = {t}",
                    k,
                    f.degree()
                ),
            ));
        }
        Ok(Lcc {
            n,
            k,
            alphas: chebyshev_nodes(n),
            betas: chebyshev_nodes(k),
            f,
        })
    }

    /// Recovery threshold (K − 1)·deg f + 1.
    pub fn threshold(&self) -> usize {
        (self.k - 1) * self.f.degree() + 1
    }

    pub fn function(&self) -> &LccFunction {
        &self.f
    }

    /// Worker inputs u(α_i), from the K equal-shape blocks.
    pub fn encode(&self, blocks: &[Array2<f64>]) -> Result<Vec<Array2<f64>>, LinalgError> {
        if blocks.len() != self.k || blocks.iter().any(|b| b.dim() != blocks[0].dim()) {
            return Err(LinalgError::Shape(format!(
                "LCC needs K = {} blocks of one shape, got {}",
                self.k,
                blocks.len()
            )));
        }
        Ok(self
            .alphas
            .iter()
            .map(|&a| {
                let l = lagrange_basis(&self.betas, a);
                let mut u = Array2::<f64>::zeros(blocks[0].dim());
                for (x, &c) in blocks.iter().zip(&l) {
                    u.scaled_add(c, x);
                }
                u
            })
            .collect())
    }

    /// A worker's computation f(u(α_i)).
    pub fn compute(&self, input: ArrayView2<f64>) -> Array2<f64> {
        self.f.apply(input)
    }

    /// f(X_1..X_K) from the first T results (worker, f(u(α_i))) in arrival order.
    pub fn decode(&self, results: &[(usize, ArrayView2<f64>)]) -> Result<LccDecoded, LinalgError> {
        let workers: Vec<usize> = results.iter().map(|(w, _)| *w).collect();
        check_workers(Self::NAME, &workers, self.n)?;
        let t = self.threshold();
        if results.len() < t {
            return Err(LinalgError::BelowThreshold {
                family: format!("lcc (K = {}, deg f = {})", self.k, self.f.degree()),
                have: results.len(),
                need: t,
            });
        }
        let chosen = &results[..t];
        let pts: Vec<f64> = chosen.iter().map(|(w, _)| self.alphas[*w]).collect();
        let dim = chosen[0].1.dim();
        if chosen.iter().any(|(_, r)| r.dim() != dim) {
            return Err(LinalgError::Shape("results differ in shape".into()));
        }
        let mut lebesgue = 0.0f64;
        let values = self
            .betas
            .iter()
            .map(|&b| {
                let l = lagrange_basis(&pts, b);
                lebesgue = lebesgue.max(l.iter().map(|v| v.abs()).sum());
                let mut out = Array2::<f64>::zeros(dim);
                for ((_, r), &c) in chosen.iter().zip(&l) {
                    out.scaled_add(c, r);
                }
                out
            })
            .collect();
        Ok(LccDecoded {
            values,
            lebesgue,
            used: workers[..t].to_vec(),
        })
    }
}
