//! Communication-efficient gradient codes (Ye & Abbe, "Communication-Computation Efficient
//! Gradient Coding", ICML 2018; GUIDE §3): the gradient is cut into m pieces and each worker
//! sends one vector of ⌈dim/m⌉ values, so a message is m times shorter, at the price of
//! holding d = s + m partitions instead of s + 1. Any n − s workers decode the full gradient.
//!
//! Construction (the polynomial, Vandermonde-type construction of the paper, with d = s + m,
//! k = n partitions, cyclic placement: worker i holds i, i + 1, …, i + d − 1 mod n). Let
//! r = n − s, and give each worker i a node x_i and a basis φ_0 … φ_{r−1} of the polynomials of
//! degree < r. Every message is the evaluation at x_i of one vector polynomial
//! P(x) = Σ_t C_t φ_t(x) whose coefficients C_{τ_u} for the m *target* indices τ_0 … τ_{m−1}
//! are the pieces Σ_j g_j^(u) of the gradient. Partition j contributes p_{j,u}(x)·g_j^(u) with
//! p_{j,u} = φ_{τ_u} + (a combination of the other r − m basis polynomials) chosen to vanish at
//! the r − m nodes of the workers that do not hold j; so worker i's message
//! P(x_i) = Σ_{j held} Σ_u p_{j,u}(x_i)·g_j^(u) needs only its own partitions:
//! b_i[j, u] = p_{j,u}(x_i). Any r messages determine P (interpolation at r distinct nodes) and
//! so its target coefficients: the decoding weights of piece u are a_u = E_F⁻ᵀ e_{τ_u}, with
//! E_F[i, t] = φ_t(x_i). Rank 0 finds them by least squares on B_F (one SVD for all m pieces,
//! `decode.rs`), which also gives the honest residual of a best-effort set.
//!
//! Which basis, nodes and targets. The paper's form is the monomial basis at distinct real
//! nodes with the pieces in the low coefficients (`Construction::Vandermonde` here: x_i
//! equispaced in (0, 1]; nodes must be non-zero, since p_{j,u} = x^u + x^m·q(x)). Real
//! Vandermonde matrices are exponentially ill-conditioned in r. The code used for training
//! (`Construction::Chebyshev`) evaluates the Chebyshev polynomials T_t at the Chebyshev points
//! x_i = cos((2i + 1)π/(2n)) — E is then a DCT-II matrix, whose full n × n form is orthogonal
//! up to scale — and carries the pieces in the *top* m coefficients τ_u = r − m + u, so the
//! free part of each p_{j,u} is a polynomial of degree < r − m that must match T_{τ_u} at r − m
//! distinct nodes: always solvable (a Haar space), whatever the nodes, and computed in Lagrange
//! form without solving a system. Measured worst cond(B_F) over every straggler set, and the
//! worst relative decoding error on random gradients, are in `docs/codes.md`; the tests check
//! that the Chebyshev construction is better conditioned than the Vandermonde one.
//!
//! m = 1 is a valid exact code (like cyclic MDS, for any n − s), with one coefficient per held
//! partition; it then takes the same one-pass path as every other code.
//!
//! Not implemented: the paper's recursive construction over other trade-off points, and a
//! complex-valued (roots of unity) variant; conditioning still grows with n − s.

use std::f64::consts::PI;

use ndarray::{Array1, Array2};
use ndarray_linalg::Solve;

use super::{check_n_s, CodeError, CodeKind, GradientCode, Layout};

/// The basis, nodes and target coefficients of the polynomial construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construction {
    /// Chebyshev polynomials at the Chebyshev points, pieces in the top m coefficients (used).
    Chebyshev,
    /// Monomials at equispaced nodes in (0, 1], pieces in the low m coefficients (the paper's
    /// form; kept for comparison).
    Vandermonde,
}

/// The communication-efficient code of Ye & Abbe (see the module docs).
#[derive(Debug, Clone)]
pub struct CommEfficient {
    layout: Layout,
    s: usize,
    construction: Construction,
}

impl CommEfficient {
    /// n workers, s stragglers, split m (1 ≤ m ≤ n − s), with the Chebyshev construction.
    pub fn new(n: usize, s: usize, m: usize) -> Result<Self, CodeError> {
        Self::with_construction(n, s, m, Construction::Chebyshev)
    }

    /// As [`CommEfficient::new`] with the basis and nodes of `construction`.
    pub fn with_construction(
        n: usize,
        s: usize,
        m: usize,
        construction: Construction,
    ) -> Result<Self, CodeError> {
        let kind = CodeKind::CommEfficient;
        check_n_s(kind, n, s)?;
        check_split(n, s, m)?;
        let r = n - s;
        let d = s + m;
        let parts: Vec<Vec<usize>> = (0..n)
            .map(|i| (0..d).map(|t| (i + t) % n).collect())
            .collect();
        // coefs[i][p·m + u] = p_{j,u}(x_i) for the p-th partition j held by worker i.
        let mut coefs = vec![vec![0.0; d * m]; n];
        let nodes: Vec<f64> = (0..n).map(|i| construction.node(n, i)).collect();
        for j in 0..n {
            let holders: Vec<usize> = (0..d).map(|t| (j + n - t) % n).collect();
            let others: Vec<usize> = (0..n).filter(|i| !holders.contains(i)).collect();
            for u in 0..m {
                let values = construction.vanishing(&nodes, (r, m, u), &others, &holders)?;
                for (&i, v) in holders.iter().zip(values) {
                    let p = (j + n - i) % n;
                    coefs[i][p * m + u] = v;
                }
            }
        }
        if let Some(bad) = coefs.iter().flatten().find(|v| !v.is_finite()) {
            return Err(CodeError::invalid(
                kind,
                format!("non-finite coefficient {bad} for n = {n}, s = {s}, m = {m}"),
            ));
        }
        Ok(CommEfficient {
            layout: Layout::split(n, m, parts, coefs),
            s,
            construction,
        })
    }

    /// The construction in use.
    pub fn construction(&self) -> Construction {
        self.construction
    }
}

/// 1 ≤ m ≤ n − s: each worker holds s + m of the n partitions.
pub(crate) fn check_split(n: usize, s: usize, m: usize) -> Result<(), CodeError> {
    if m == 0 || m + s > n {
        return Err(CodeError::invalid(
            CodeKind::CommEfficient,
            format!(
                "--split {m} does not fit n = {n} workers with s = {s}: each worker holds \
                 s + m of the n partitions, so m must be between 1 and n − s = {}",
                n - s.min(n)
            ),
        ));
    }
    Ok(())
}

impl Construction {
    /// Node of worker i of n.
    fn node(self, n: usize, i: usize) -> f64 {
        match self {
            Construction::Chebyshev => {
                let p = (i * golden_stride(n)) % n;
                ((2 * p + 1) as f64 * PI / (2 * n) as f64).cos()
            }
            Construction::Vandermonde => (i + 1) as f64 / n as f64,
        }
    }

    /// φ_t at node x.
    fn basis(self, t: usize, x: f64) -> f64 {
        match self {
            Construction::Chebyshev => (t as f64 * x.clamp(-1.0, 1.0).acos()).cos(),
            Construction::Vandermonde => x.powi(t as i32),
        }
    }

    /// Index τ_u of the coefficient that carries piece u (r basis polynomials, m pieces).
    fn target(self, r: usize, m: usize, u: usize) -> usize {
        match self {
            Construction::Chebyshev => r - m + u,
            Construction::Vandermonde => u,
        }
    }

    /// p_{j,u}(x_h) for every holder h (piece u of m, r basis polynomials): φ_{τ_u} plus a
    /// combination of the r − m non-target basis polynomials, vanishing at the `nodes` of
    /// `others` (the r − m workers not holding j).
    fn vanishing(
        self,
        nodes: &[f64],
        (r, m, u): (usize, usize, usize),
        others: &[usize],
        holders: &[usize],
    ) -> Result<Vec<f64>, CodeError> {
        let x = |i: usize| nodes[i];
        let tau = self.target(r, m, u);
        if self == Construction::Chebyshev {
            // The free part has degree < r − m: minus the Lagrange interpolant q of T_τ at the
            // non-holders' nodes, so p = T_τ − q (no system to solve).
            return Ok(holders
                .iter()
                .map(|&h| {
                    let xh = x(h);
                    let q: f64 = others
                        .iter()
                        .map(|&a| {
                            let l: f64 = others
                                .iter()
                                .filter(|&&b| b != a)
                                .map(|&b| (xh - x(b)) / (x(a) - x(b)))
                                .product();
                            self.basis(tau, x(a)) * l
                        })
                        .sum();
                    self.basis(tau, xh) - q
                })
                .collect());
        }
        // Monomials with the pieces low: p = x^u + Σ_{t=m}^{r−1} c_t x^t, solved for c.
        let free: Vec<usize> = (m..r).collect();
        let c = if others.is_empty() {
            Array1::zeros(0)
        } else {
            let a = Array2::from_shape_fn((others.len(), free.len()), |(p, q)| {
                self.basis(free[q], x(others[p]))
            });
            let rhs = Array1::from_iter(others.iter().map(|&i| -self.basis(tau, x(i))));
            a.solve(&rhs).map_err(|e| {
                CodeError::invalid(
                    CodeKind::CommEfficient,
                    format!("singular interpolation system (r = {r}, m = {m}): {e}"),
                )
            })?
        };
        Ok(holders
            .iter()
            .map(|&h| {
                let rest: f64 = free
                    .iter()
                    .zip(c.iter())
                    .map(|(&t, &ct)| ct * self.basis(t, x(h)))
                    .sum();
                self.basis(tau, x(h)) + rest
            })
            .collect())
    }
}

least_squares_impl!(
    CommEfficient,
    CodeKind::CommEfficient,
    fn summary(&self) -> Option<String> {
        let m = self.layout.m;
        let name = match self.construction {
            Construction::Chebyshev => "Chebyshev",
            Construction::Vandermonde => "Vandermonde",
        };
        Some(format!(
            "split m = {m}: each worker holds d = s + m = {} partitions and sends ⌈dim/{m}⌉ values; {name} construction",
            self.s + m
        ))
    }
);

/// The stride q coprime to n nearest to n/φ (φ the golden ratio): worker i gets Chebyshev point
/// i·q mod n, so the d consecutive workers that hold a partition sit at well-spread nodes (the
/// golden-ratio sequence is the most evenly spread), not at d neighbouring ones.
pub(crate) fn golden_stride(n: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = (n as f64 / ((1.0 + 5f64.sqrt()) / 2.0)).round() as usize;
    (0..n)
        .flat_map(|d| [g + d, g.saturating_sub(d)])
        .find(|&q| q > 0 && q < n && gcd(q, n) == 1)
        .unwrap_or(1)
}
