//! MDS-type codes for A·x (and any product that acts on row blocks of A): generator families,
//! encoding, decoding from any decodable set with the subset's condition number.

use std::fmt;
use std::str::FromStr;

use ndarray::{s, Array2, ArrayView2, Axis};
use ndarray_linalg::c64;

use super::{
    blocks_to_rows, chebyshev_nodes, check_workers, cond, div_ceil, equispaced_nodes,
    singular_values_c, svd_solve, LinalgError,
};

/// Largest n accepted (the circulant generator is n(q−1) × k(q−1)).
pub const MAX_WORKERS: usize = 512;

/// Generator families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Worker i stores block i mod k.
    Replication,
    /// Real Vandermonde, equispaced nodes on [−1, 1] (unstable: shows the problem).
    Vandermonde,
    /// Real Vandermonde at Chebyshev nodes (somewhat better, still exponential).
    Chebyshev,
    /// Ramamoorthy & Tang 2 × 2 rotation embedding of the n-th roots of unity.
    Rotation,
    /// Ramamoorthy & Tang circulant-permutation embedding (q the smallest prime ≥ n).
    Circulant,
    /// [I_k; P] with P Cauchy; decodes only the missing blocks.
    Systematic,
    /// Systematic form of `rotation`: G·G_S⁻¹ with the k systematic workers at evenly spread
    /// nodes (a well-conditioned G_S); r = 2, decodes only the missing blocks.
    SystematicRotation,
}

impl Family {
    /// Every family, in table order.
    pub const ALL: [Family; 7] = [
        Family::Replication,
        Family::Vandermonde,
        Family::Chebyshev,
        Family::Rotation,
        Family::Circulant,
        Family::Systematic,
        Family::SystematicRotation,
    ];

    /// Name on the command line (`mds-` prefixed forms are accepted too).
    pub fn name(self) -> &'static str {
        match self {
            Family::Replication => "replication",
            Family::Vandermonde => "vandermonde",
            Family::Chebyshev => "chebyshev",
            Family::Rotation => "rotation",
            Family::Circulant => "circulant",
            Family::Systematic => "systematic",
            Family::SystematicRotation => "systematic-rotation",
        }
    }

    /// Whether workers 0..k hold the data blocks themselves (generator rows [I; P]), so
    /// [`super::StreamingDecoder`] applies.
    pub fn is_systematic(self) -> bool {
        matches!(self, Family::Systematic | Family::SystematicRotation)
    }

    /// Comma-separated list of the names.
    pub fn names() -> String {
        Family::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = LinalgError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
        let key = key.strip_prefix("mds-").unwrap_or(&key);
        Family::ALL
            .iter()
            .copied()
            .find(|f| f.name() == key)
            .ok_or_else(|| LinalgError::UnknownFamily {
                name: s.to_string(),
                expected: Family::names(),
            })
    }
}

/// A real linear code: n workers, any k decode, r coded blocks per worker, data in k·r blocks.
#[derive(Debug, Clone)]
pub struct MdsCode {
    family: Family,
    n: usize,
    k: usize,
    r: usize,
    /// q of the root-of-unity families (rotation: q = n; circulant: smallest prime ≥ n), else 0.
    q: usize,
    g: Array2<f64>,
}

/// A matrix encoded for the n workers.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Worker i's coded rows: (r·b) × cols.
    pub blocks: Vec<Array2<f64>>,
    /// Rows per data block b.
    pub block_rows: usize,
    /// Rows of the original matrix.
    pub rows: usize,
}

/// A decoded product.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The uncoded result, with the original row count.
    pub value: Array2<f64>,
    /// Condition number of the system solved.
    pub cond: f64,
    /// Workers whose results were used, in the order given.
    pub used: Vec<usize>,
}

/// Smallest prime ≥ m (m ≥ 2).
pub fn next_prime(m: usize) -> usize {
    let is_prime = |p: usize| p >= 2 && (2..).take_while(|d| d * d <= p).all(|d| p % d != 0);
    (m.max(2)..).find(|&p| is_prime(p)).unwrap_or(m)
}

/// Orthonormal (Helmert) basis of the sum-zero subspace of R^q, as a q × (q − 1) matrix.
pub fn helmert(q: usize) -> Array2<f64> {
    let mut h = Array2::<f64>::zeros((q, q.saturating_sub(1)));
    for t in 1..q {
        let norm = ((t * (t + 1)) as f64).sqrt();
        for i in 0..t {
            h[[i, t - 1]] = 1.0 / norm;
        }
        h[[t, t - 1]] = -(t as f64) / norm;
    }
    h
}

/// e^{2πi·a/q}.
fn root(a: usize, q: usize) -> c64 {
    let phi = 2.0 * std::f64::consts::PI * (a % q) as f64 / q as f64;
    c64::new(phi.cos(), phi.sin())
}

impl MdsCode {
    /// Build the code of `family` for n workers of which any k decode.
    pub fn new(family: Family, n: usize, k: usize) -> Result<Self, LinalgError> {
        if k == 0 || k > n {
            return Err(LinalgError::invalid(
                family,
                format!("need 1 ≤ k ≤ n, got n = {n}, k = {k}"),
            ));
        }
        if n > MAX_WORKERS {
            return Err(LinalgError::invalid(
                family,
                format!("n = {n} exceeds the limit of {MAX_WORKERS} workers"),
            ));
        }
        let (r, q, g) = match family {
            Family::Replication => {
                let g = Array2::from_shape_fn((n, k), |(i, j)| f64::from(u8::from(i % k == j)));
                (1, 0, g)
            }
            Family::Vandermonde | Family::Chebyshev => {
                let x = if family == Family::Vandermonde {
                    equispaced_nodes(n)
                } else {
                    chebyshev_nodes(n)
                };
                let g = Array2::from_shape_fn((n, k), |(i, j)| x[i].powi(j as i32));
                (1, 0, g)
            }
            Family::SystematicRotation => {
                // Worker w < k sits at node ⌊w·n/k⌋ (distinct, evenly spread: the k × k
                // Vandermonde block on these roots of unity is well conditioned), the others at
                // the remaining nodes in increasing order. G_sys = G · G_S⁻¹, computed as the
                // solve G_Sᵀ Y = Gᵀ (Y = G_sysᵀ); the top block is then set to I exactly.
                let top: Vec<usize> = (0..k).map(|w| w * n / k).collect();
                let mut nodes = top.clone();
                nodes.extend((0..n).filter(|i| !top.contains(i)));
                let theta = 2.0 * std::f64::consts::PI / n as f64;
                let g = Array2::from_shape_fn((2 * n, 2 * k), |(row, col)| {
                    let (i, s) = (nodes[row / 2], row % 2);
                    let (j, u) = (col / 2, col % 2);
                    let phi = ((i * j) % n) as f64 * theta;
                    match (s, u) {
                        (0, 0) | (1, 1) => phi.cos(),
                        (0, _) => -phi.sin(),
                        _ => phi.sin(),
                    }
                });
                let gs = g.slice(s![..2 * k, ..]).to_owned();
                let (y, _) = svd_solve(gs.t(), g.t())?;
                let mut sys = y.t().as_standard_layout().into_owned();
                for i in 0..2 * k {
                    for j in 0..2 * k {
                        sys[[i, j]] = f64::from(u8::from(i == j));
                    }
                }
                (2, n, sys)
            }
            Family::Rotation => {
                let q = n;
                let theta = 2.0 * std::f64::consts::PI / q as f64;
                let g = Array2::from_shape_fn((2 * n, 2 * k), |(row, col)| {
                    let (i, s) = (row / 2, row % 2);
                    let (j, u) = (col / 2, col % 2);
                    let phi = ((i * j) % q) as f64 * theta;
                    // R(φ) = [[cos, −sin], [sin, cos]]
                    match (s, u) {
                        (0, 0) | (1, 1) => phi.cos(),
                        (0, _) => -phi.sin(),
                        _ => phi.sin(),
                    }
                });
                (2, q, g)
            }
            Family::Circulant => {
                let q = next_prime(n);
                let r = q - 1;
                let h = helmert(q);
                let mut g = Array2::<f64>::zeros((n * r, k * r));
                // block for each power a = ij mod q: Hᵀ P^a H, (P^a H)[s, c] = H[(s − a) mod q, c]
                let mut cache: Vec<Option<Array2<f64>>> = vec![None; q];
                for i in 0..n {
                    for j in 0..k {
                        let a = (i * j) % q;
                        let blk = cache[a].get_or_insert_with(|| {
                            let ph =
                                Array2::from_shape_fn((q, r), |(s, c)| h[[(s + q - a) % q, c]]);
                            h.t().dot(&ph)
                        });
                        g.slice_mut(s![i * r..(i + 1) * r, j * r..(j + 1) * r])
                            .assign(blk);
                    }
                }
                (r, q, g)
            }
            Family::Systematic => {
                let m = n - k;
                let mut g = Array2::<f64>::zeros((n, k));
                for j in 0..k {
                    g[[j, j]] = 1.0;
                }
                for (i, x) in cauchy_rows(m, k).into_iter().enumerate() {
                    for j in 0..k {
                        g[[k + i, j]] = 1.0 / (x - j as f64);
                    }
                }
                (1, 0, g)
            }
        };
        Ok(MdsCode {
            family,
            n,
            k,
            r,
            q,
            g,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }
    pub fn n_workers(&self) -> usize {
        self.n
    }
    /// Workers needed to decode (k).
    pub fn threshold(&self) -> usize {
        self.k
    }
    /// Coded blocks per worker r.
    pub fn blocks_per_worker(&self) -> usize {
        self.r
    }
    /// Data blocks the matrix is cut into (k·r).
    pub fn data_blocks(&self) -> usize {
        self.k * self.r
    }
    /// q of the root-of-unity families (0 for the others).
    pub fn q(&self) -> usize {
        self.q
    }
    /// The real generator, (n·r) × (k·r).
    pub fn generator(&self) -> ArrayView2<'_, f64> {
        self.g.view()
    }
    /// Worker w's rows of the generator, r × (k·r).
    pub fn worker_rows(&self, w: usize) -> ArrayView2<'_, f64> {
        self.g.slice(s![w * self.r..(w + 1) * self.r, ..])
    }

    /// Positions (into `workers`, which is in arrival order) of the set that will be decoded: the
    /// first k for the MDS families, the first covering set for replication; None if the
    /// workers cannot decode.
    pub fn decoding_set(&self, workers: &[usize]) -> Option<Vec<usize>> {
        if self.family == Family::Replication {
            let mut covered = vec![false; self.k];
            let mut pos = Vec::with_capacity(self.k);
            for (p, &w) in workers.iter().enumerate() {
                if w < self.n && !covered[w % self.k] {
                    covered[w % self.k] = true;
                    pos.push(p);
                    if pos.len() == self.k {
                        return Some(pos);
                    }
                }
            }
            None
        } else if workers.len() >= self.k {
            Some((0..self.k).collect())
        } else {
            None
        }
    }

    /// Whether the (distinct) workers can decode.
    pub fn is_decodable(&self, workers: &[usize]) -> bool {
        check_workers(self.family.name(), workers, self.n).is_ok()
            && self.decoding_set(workers).is_some()
    }

    /// G_F: the generator rows of `workers` (exactly those, in order).
    pub fn submatrix(&self, workers: &[usize]) -> Array2<f64> {
        let rows: Vec<usize> = workers
            .iter()
            .flat_map(|&w| w * self.r..(w + 1) * self.r)
            .collect();
        self.g.select(Axis(0), &rows)
    }

    /// Condition number of the system that decodes from `workers` (the decoding set among them).
    ///
    /// For rotation and circulant this is computed from the equivalent complex Vandermonde
    /// blocks (exactly equal to cond(G_F), see the module docs), which is much cheaper than an SVD
    /// of the (k·r) × (k·r) real matrix.
    pub fn subset_cond(&self, workers: &[usize]) -> Result<f64, LinalgError> {
        check_workers(self.family.name(), workers, self.n)?;
        let pos = self
            .decoding_set(workers)
            .ok_or_else(|| LinalgError::NotDecodable {
                family: self.family.name().into(),
                workers: workers.to_vec(),
            })?;
        let set: Vec<usize> = pos.iter().map(|&p| workers[p]).collect();
        match self.family {
            Family::Rotation => self.structured_cond(&set, &[1]),
            Family::Circulant => {
                let ls: Vec<usize> = (1..=(self.q / 2).max(1)).collect();
                self.structured_cond(&set, &ls)
            }
            _ => cond(self.submatrix(&set).view()),
        }
    }

    /// cond of diag over ℓ ∈ `ls` of V_ℓ[i, j] = ω^{ℓ·i·j}, i ∈ set, j < k.
    fn structured_cond(&self, set: &[usize], ls: &[usize]) -> Result<f64, LinalgError> {
        let (mut smax, mut smin) = (0.0f64, f64::INFINITY);
        for &l in ls {
            let v = Array2::from_shape_fn((set.len(), self.k), |(a, j)| {
                root((l * set[a] % self.q) * j, self.q)
            });
            let sv = singular_values_c(v.view())?;
            for x in sv {
                smax = smax.max(x);
                smin = smin.min(x);
            }
        }
        Ok(if smin > 0.0 {
            smax / smin
        } else {
            f64::INFINITY
        })
    }

    /// Cut `a` (rows × cols) into k·r row blocks of b = ⌈rows / (k·r)⌉ rows (zero-padded) and
    /// encode: worker i gets the (r·b) × cols matrix of its r coded blocks.
    pub fn encode(&self, a: ArrayView2<f64>) -> Encoded {
        let kr = self.data_blocks();
        let rows = a.nrows();
        let cols = a.ncols();
        let b = div_ceil(rows, kr).max(1);
        let mut padded = Array2::<f64>::zeros((kr * b, cols));
        padded.slice_mut(s![..rows, ..]).assign(&a);
        let flat = blocks_to_rows(padded.view(), kr); // kr × (b·cols)
        let blocks = (0..self.n)
            .map(|w| {
                let coded = self.worker_rows(w).dot(&flat); // r × (b·cols)
                rows_to_blocks(coded.view(), b, cols)
            })
            .collect();
        Encoded {
            blocks,
            block_rows: b,
            rows,
        }
    }

    /// Decode from `results` (worker, its (r·b) × c result) in arrival order: uses the decoding
    /// set among them and returns the first `rows` rows of the uncoded (k·r·b) × c result.
    pub fn decode(
        &self,
        results: &[(usize, ArrayView2<f64>)],
        rows: usize,
    ) -> Result<Decoded, LinalgError> {
        let workers: Vec<usize> = results.iter().map(|(w, _)| *w).collect();
        check_workers(self.family.name(), &workers, self.n)?;
        let pos = self.decoding_set(&workers).ok_or_else(|| {
            if workers.len() < self.k {
                LinalgError::BelowThreshold {
                    family: self.family.name().into(),
                    have: workers.len(),
                    need: self.k,
                }
            } else {
                LinalgError::NotDecodable {
                    family: self.family.name().into(),
                    workers: workers.clone(),
                }
            }
        })?;
        let (rb, c) = results[pos[0]].1.dim();
        if rb % self.r != 0 || results.iter().any(|(_, m)| m.dim() != (rb, c)) {
            return Err(LinalgError::Shape(format!(
                "results must all be (r·b) × c with r = {}; got {:?}",
                self.r,
                results.iter().map(|(_, m)| m.dim()).collect::<Vec<_>>()
            )));
        }
        let b = rb / self.r;
        let used: Vec<usize> = pos.iter().map(|&p| workers[p]).collect();
        let mut y = Array2::<f64>::zeros((self.data_blocks(), b * c));
        for (t, &p) in pos.iter().enumerate() {
            y.slice_mut(s![t * self.r..(t + 1) * self.r, ..])
                .assign(&blocks_to_rows(results[p].1, self.r));
        }
        let gf = self.submatrix(&used);
        let (x, cnd) = svd_solve(gf.view(), y.view())?;
        let full = rows_to_blocks(x.view(), b, c);
        let rows = rows.min(full.nrows());
        Ok(Decoded {
            value: full.slice(s![..rows, ..]).to_owned(),
            cond: cnd,
            used,
        })
    }
}

/// Rows x_i of the Cauchy parity P_ij = 1/(x_i − j): half-integers interleaved with the column
/// nodes 0..k when m ≤ k, else (2ik − 1)/(2m), which never hits an integer.
pub(crate) fn cauchy_rows(m: usize, k: usize) -> Vec<f64> {
    (0..m)
        .map(|i| {
            if m <= k {
                ((i as f64 + 0.5) * k as f64 / m as f64).floor() - 0.5
            } else {
                (2 * i * k) as f64 / (2 * m) as f64 - 1.0 / (2 * m) as f64
            }
        })
        .collect()
}

/// Inverse of [`blocks_to_rows`]: r rows of length b·c into an (r·b) × c matrix.
pub(crate) fn rows_to_blocks(m: ArrayView2<f64>, b: usize, c: usize) -> Array2<f64> {
    let r = m.nrows();
    let mut out = Array2::<f64>::zeros((r * b, c));
    for t in 0..r {
        for i in 0..b {
            for j in 0..c {
                out[[t * b + i, j]] = m[[t, i * c + j]];
            }
        }
    }
    out
}
