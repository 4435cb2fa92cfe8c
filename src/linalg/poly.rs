//! Polynomial codes (Yu, Maddah-Ali, Avestimehr) and MatDot (Dutta et al.) for C = AᵀB.
//!
//! A is s × ca and B is s × cb.
//!
//! * `poly-real`, `poly-chebyshev`: A in m column blocks A_j, B in p column blocks B_k; worker i
//!   gets Ã_i = Σ_j A_j x_i^j and B̃_i = Σ_k B_k x_i^{km} and returns Ã_iᵀB̃_i =
//!   Σ_{j,k} x_i^{j+km} A_jᵀB_k, a polynomial of degree mp − 1: any mp results decode by
//!   solving the mp × mp Vandermonde system (by SVD). Nodes equispaced on [−1, 1] or Chebyshev;
//!   both are exponentially ill-conditioned in mp.
//! * `poly-rotation`: the x_i are replaced by the rotations R(iθ), θ = 2π/n (Ramamoorthy & Tang).
//!   A is cut into 2m column blocks, paired as Ā_j = [A_{2j} A_{2j+1}], B into 2p blocks, and
//!   worker i gets Ã_i = Σ_j Ā_j (R(ijθ) ⊗ I), B̃_i = Σ_k B̄_k (R(ikmθ) ⊗ I). Its result
//!   Ã_iᵀB̃_i has 2 × 2 blocks, block (s, t) = Σ R(ijθ)_{us} R(ikmθ)_{vt} A_{2j+u}ᵀB_{2k+v}. In
//!   the eigenbasis of R every entry is a Laurent polynomial in ω^i = e^{2πi·i/n} with mp
//!   consecutive exponents, so any mp workers decode (a 4mp × 4mp real system) with the
//!   conditioning of a Vandermonde matrix on n-th roots of unity. Same storage per worker (1/m
//!   of A, 1/p of B) and the same result size (1/(mp) of C) as the real polynomial code.
//! * `matdot`: A and B are cut along the shared dimension s into m row blocks; worker i gets
//!   p_A(x_i) = Σ_j A_j x_i^j, p_B(x_i) = Σ_l B_l x_i^{m−1−l}; the coefficient of x^{m−1} in
//!   p_A(x)ᵀp_B(x) is Σ_j A_jᵀB_j = AᵀB, the degree is 2m − 2, so any 2m − 1 results decode.
//!   Chebyshev nodes. Each worker returns a full ca × cb matrix (the price of the lower
//!   threshold).

use std::fmt;
use std::str::FromStr;

use ndarray::{s, Array1, Array2, ArrayView2, Axis};

use super::code::Decoded;
use super::{
    chebyshev_nodes, check_workers, cond, div_ceil, equispaced_nodes, svd_solve, LinalgError,
};

/// Polynomial code variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolyFamily {
    PolyReal,
    PolyChebyshev,
    PolyRotation,
    MatDot,
}

impl PolyFamily {
    pub const ALL: [PolyFamily; 4] = [
        PolyFamily::PolyReal,
        PolyFamily::PolyChebyshev,
        PolyFamily::PolyRotation,
        PolyFamily::MatDot,
    ];
    pub fn name(self) -> &'static str {
        match self {
            PolyFamily::PolyReal => "poly-real",
            PolyFamily::PolyChebyshev => "poly-chebyshev",
            PolyFamily::PolyRotation => "poly-rotation",
            PolyFamily::MatDot => "matdot",
        }
    }
}

impl fmt::Display for PolyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PolyFamily {
    type Err = LinalgError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
        PolyFamily::ALL
            .iter()
            .copied()
            .find(|f| f.name() == key)
            .ok_or_else(|| LinalgError::UnknownFamily {
                name: s.to_string(),
                expected: PolyFamily::ALL
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// R(φ)[a][b] with R(φ) = [[cos, −sin], [sin, cos]].
fn rot(phi: f64, a: usize, b: usize) -> f64 {
    match (a, b) {
        (0, 0) | (1, 1) => phi.cos(),
        (0, _) => -phi.sin(),
        _ => phi.sin(),
    }
}

/// A polynomial or MatDot code for AᵀB on n workers.
#[derive(Debug, Clone)]
pub struct PolyCode {
    family: PolyFamily,
    n: usize,
    m: usize,
    p: usize,
    /// Real nodes (poly-real, poly-chebyshev, matdot).
    nodes: Vec<f64>,
    /// Generator: rows per worker r (1, or 4 for poly-rotation) × unknown coefficient blocks.
    g: Array2<f64>,
    r: usize,
}

/// One worker's share of the inputs.
#[derive(Debug, Clone)]
pub struct Share {
    pub a: Array2<f64>,
    pub b: Array2<f64>,
}

impl Share {
    /// The worker's computation: ÃᵀB̃.
    pub fn compute(&self) -> Array2<f64> {
        self.a.t().dot(&self.b)
    }
}

impl PolyCode {
    /// Build the code; A in m blocks, B in p blocks (p is ignored by MatDot).
    pub fn new(family: PolyFamily, n: usize, m: usize, p: usize) -> Result<Self, LinalgError> {
        if m == 0 || p == 0 {
            return Err(LinalgError::invalid(family, "need m ≥ 1 and p ≥ 1"));
        }
        let threshold = match family {
            PolyFamily::MatDot => 2 * m - 1,
            _ => m * p,
        };
        if n < threshold {
            return Err(LinalgError::invalid(
                family,
                format!("n = {n} workers is below the recovery threshold {threshold}"),
            ));
        }
        if n > super::code::MAX_WORKERS {
            return Err(LinalgError::invalid(
                family,
                format!("n = {n} is too large"),
            ));
        }
        let (nodes, g, r) = match family {
            PolyFamily::PolyReal | PolyFamily::PolyChebyshev | PolyFamily::MatDot => {
                let x = if family == PolyFamily::PolyReal {
                    equispaced_nodes(n)
                } else {
                    chebyshev_nodes(n)
                };
                let g = Array2::from_shape_fn((n, threshold), |(i, u)| x[i].powi(u as i32));
                (x, g, 1)
            }
            PolyFamily::PolyRotation => {
                let theta = 2.0 * std::f64::consts::PI / n as f64;
                let g = Array2::from_shape_fn((4 * n, 4 * m * p), |(row, col)| {
                    let (i, s, t) = (row / 4, (row / 2) % 2, row % 2);
                    let (blk, u, v) = (col / 4, (col / 2) % 2, col % 2);
                    let (j, k) = (blk % m, blk / m);
                    let pa = ((i * j) % n) as f64 * theta;
                    let pb = ((i * k * m) % n) as f64 * theta;
                    rot(pa, u, s) * rot(pb, v, t)
                });
                (Vec::new(), g, 4)
            }
        };
        Ok(PolyCode {
            family,
            n,
            m,
            p,
            nodes,
            g,
            r,
        })
    }

    pub fn family(&self) -> PolyFamily {
        self.family
    }
    pub fn n_workers(&self) -> usize {
        self.n
    }
    /// Results needed to decode: mp, or 2m − 1 for MatDot.
    pub fn threshold(&self) -> usize {
        match self.family {
            PolyFamily::MatDot => 2 * self.m - 1,
            _ => self.m * self.p,
        }
    }

    /// Column blocks of A and B (2m and 2p for the rotation code).
    fn splits(&self) -> (usize, usize) {
        match self.family {
            PolyFamily::PolyRotation => (2 * self.m, 2 * self.p),
            PolyFamily::MatDot => (self.m, 1),
            _ => (self.m, self.p),
        }
    }

    /// Each worker's inputs for A (s × ca) and B (s × cb).
    pub fn encode(
        &self,
        a: ArrayView2<f64>,
        b: ArrayView2<f64>,
    ) -> Result<Vec<Share>, LinalgError> {
        if a.nrows() != b.nrows() {
            return Err(LinalgError::Shape(format!(
                "AᵀB needs A and B with the same rows, got {:?} and {:?}",
                a.dim(),
                b.dim()
            )));
        }
        let (sa, sb) = self.splits();
        let shares = match self.family {
            PolyFamily::MatDot => {
                let rows = div_ceil(a.nrows(), self.m).max(1);
                let pa = pad(a, rows * self.m, a.ncols());
                let pb = pad(b, rows * self.m, b.ncols());
                let ab: Vec<_> = (0..self.m)
                    .map(|j| pa.slice(s![j * rows..(j + 1) * rows, ..]))
                    .collect();
                let bb: Vec<_> = (0..self.m)
                    .map(|j| pb.slice(s![j * rows..(j + 1) * rows, ..]))
                    .collect();
                (0..self.n)
                    .map(|i| {
                        let x = self.nodes[i];
                        let mut ta = Array2::<f64>::zeros((rows, a.ncols()));
                        let mut tb = Array2::<f64>::zeros((rows, b.ncols()));
                        for j in 0..self.m {
                            ta.scaled_add(x.powi(j as i32), &ab[j]);
                            tb.scaled_add(x.powi((self.m - 1 - j) as i32), &bb[j]);
                        }
                        Share { a: ta, b: tb }
                    })
                    .collect()
            }
            PolyFamily::PolyReal | PolyFamily::PolyChebyshev => {
                let (aw, bw) = (
                    div_ceil(a.ncols(), sa).max(1),
                    div_ceil(b.ncols(), sb).max(1),
                );
                let pa = pad(a, a.nrows(), aw * sa);
                let pb = pad(b, b.nrows(), bw * sb);
                (0..self.n)
                    .map(|i| {
                        let x = self.nodes[i];
                        let mut ta = Array2::<f64>::zeros((a.nrows(), aw));
                        let mut tb = Array2::<f64>::zeros((b.nrows(), bw));
                        for j in 0..self.m {
                            ta.scaled_add(
                                x.powi(j as i32),
                                &pa.slice(s![.., j * aw..(j + 1) * aw]),
                            );
                        }
                        for k in 0..self.p {
                            tb.scaled_add(
                                x.powi((k * self.m) as i32),
                                &pb.slice(s![.., k * bw..(k + 1) * bw]),
                            );
                        }
                        Share { a: ta, b: tb }
                    })
                    .collect()
            }
            PolyFamily::PolyRotation => {
                let (aw, bw) = (
                    div_ceil(a.ncols(), sa).max(1),
                    div_ceil(b.ncols(), sb).max(1),
                );
                let pa = pad(a, a.nrows(), aw * sa);
                let pb = pad(b, b.nrows(), bw * sb);
                let theta = 2.0 * std::f64::consts::PI / self.n as f64;
                (0..self.n)
                    .map(|i| {
                        let mut ta = Array2::<f64>::zeros((a.nrows(), 2 * aw));
                        let mut tb = Array2::<f64>::zeros((b.nrows(), 2 * bw));
                        for v in 0..2 {
                            for j in 0..self.m {
                                let phi = ((i * j) % self.n) as f64 * theta;
                                for u in 0..2 {
                                    let c = 2 * j + u;
                                    ta.slice_mut(s![.., v * aw..(v + 1) * aw]).scaled_add(
                                        rot(phi, u, v),
                                        &pa.slice(s![.., c * aw..(c + 1) * aw]),
                                    );
                                }
                            }
                            for k in 0..self.p {
                                let phi = ((i * k * self.m) % self.n) as f64 * theta;
                                for u in 0..2 {
                                    let c = 2 * k + u;
                                    tb.slice_mut(s![.., v * bw..(v + 1) * bw]).scaled_add(
                                        rot(phi, u, v),
                                        &pb.slice(s![.., c * bw..(c + 1) * bw]),
                                    );
                                }
                            }
                        }
                        Share { a: ta, b: tb }
                    })
                    .collect()
            }
        };
        Ok(shares)
    }

    /// Condition number of the system that decodes from exactly these workers.
    pub fn subset_cond(&self, workers: &[usize]) -> Result<f64, LinalgError> {
        check_workers(self.family.name(), workers, self.n)?;
        let rows: Vec<usize> = workers
            .iter()
            .flat_map(|&w| w * self.r..(w + 1) * self.r)
            .collect();
        cond(self.g.select(Axis(0), &rows).view())
    }

    /// Decode AᵀB (ca × cb) from the first threshold results (worker, ÃᵀB̃) in arrival order.
    pub fn decode(
        &self,
        results: &[(usize, ArrayView2<f64>)],
        ca: usize,
        cb: usize,
    ) -> Result<Decoded, LinalgError> {
        let workers: Vec<usize> = results.iter().map(|(w, _)| *w).collect();
        check_workers(self.family.name(), &workers, self.n)?;
        let t = self.threshold();
        if results.len() < t {
            return Err(LinalgError::BelowThreshold {
                family: self.family.name().into(),
                have: results.len(),
                need: t,
            });
        }
        let chosen = &results[..t];
        let used: Vec<usize> = workers[..t].to_vec();
        let dim = chosen[0].1.dim();
        if chosen.iter().any(|(_, w)| w.dim() != dim) {
            return Err(LinalgError::Shape("results differ in shape".into()));
        }
        if self.family == PolyFamily::MatDot {
            // weights w with V_Fᵀ w = e_{m−1}; AᵀB = Σ w_i W_i
            let vf = self.g.select(Axis(0), &used);
            let mut e = Array2::<f64>::zeros((t, 1));
            e[[self.m - 1, 0]] = 1.0;
            let (w, c) = svd_solve(vf.t(), e.view())?;
            let mut out = Array2::<f64>::zeros(dim);
            for ((_, wi), &a) in chosen.iter().zip(w.column(0)) {
                out.scaled_add(a, wi);
            }
            let value = out.slice(s![..ca.min(dim.0), ..cb.min(dim.1)]).to_owned();
            return Ok(Decoded {
                value,
                cond: c,
                used,
            });
        }
        let (sa, sb) = self.splits();
        let (aw, bw) = (div_ceil(ca, sa).max(1), div_ceil(cb, sb).max(1));
        let expect = if self.r == 4 {
            (2 * aw, 2 * bw)
        } else {
            (aw, bw)
        };
        if dim != expect {
            return Err(LinalgError::Shape(format!(
                "results are {dim:?}, expected {expect:?} for a {ca} × {cb} product"
            )));
        }
        let mut y = Array2::<f64>::zeros((t * self.r, aw * bw));
        for (idx, (_, wi)) in chosen.iter().enumerate() {
            for blk in 0..self.r {
                let (s0, t0) = if self.r == 4 {
                    (blk / 2, blk % 2)
                } else {
                    (0, 0)
                };
                let sub = wi.slice(s![s0 * aw..(s0 + 1) * aw, t0 * bw..(t0 + 1) * bw]);
                let flat: Array1<f64> = sub.iter().copied().collect();
                y.row_mut(idx * self.r + blk).assign(&flat);
            }
        }
        let rows: Vec<usize> = used
            .iter()
            .flat_map(|&w| w * self.r..(w + 1) * self.r)
            .collect();
        let gf = self.g.select(Axis(0), &rows);
        let (x, c) = svd_solve(gf.view(), y.view())?;
        let mut out = Array2::<f64>::zeros((aw * sa, bw * sb));
        for (u, row) in x.axis_iter(Axis(0)).enumerate() {
            let (ablk, bblk) = if self.r == 4 {
                let (blk, uu, vv) = (u / 4, (u / 2) % 2, u % 2);
                let (j, k) = (blk % self.m, blk / self.m);
                (2 * j + uu, 2 * k + vv)
            } else {
                (u % self.m, u / self.m)
            };
            let mut dst = out.slice_mut(s![ablk * aw..(ablk + 1) * aw, bblk * bw..(bblk + 1) * bw]);
            for (d, v) in dst.iter_mut().zip(row.iter()) {
                *d = *v;
            }
        }
        Ok(Decoded {
            value: out.slice(s![..ca, ..cb]).to_owned(),
            cond: c,
            used,
        })
    }
}

/// `a` zero-padded to rows × cols.
fn pad(a: ArrayView2<f64>, rows: usize, cols: usize) -> Array2<f64> {
    let mut out = Array2::<f64>::zeros((rows, cols));
    out.slice_mut(s![..a.nrows(), ..a.ncols()]).assign(&a);
    out
}
