//! Cyclic codes: worker i holds partitions {i, …, i+s} mod n (k = n).
//!
//! - `cyclic-repetition` (Tandon, Lei, Dimakis, Karampatziakis 2017, Alg. 2): H (s × n) Gaussian
//!   from the seed with H·1 = 0; b_i[i] = 1 and its other s entries solve H b_i = 0. Every row lies
//!   in null(H) (dimension n − s, containing 1) and any n − s rows span it (almost surely).
//!   Conditioning is poor for large n (GUIDE §3).
//! - `cyclic-mds` (Raviv, Tamo, Tandon, Dimakis 2017): B circulant with the s + 1 coefficients of
//!   g(x) = Π_{j∈J} (x − α^j), α = e^{2πi/n}, J the interval of s exponents centred at n/2. J is
//!   closed under j ↦ n − j, so g is real; this needs n − s odd (s = 0 is the trivial g = 1). The
//!   rows x^i g(x) span the cyclic code of dimension n − s, which contains 1 since 0 ∉ J, and any
//!   n − s of them are independent by the BCH bound.
//!
//! Both decode by least squares (`decode.rs`); `is_decodable` is |F| ≥ n − s, a guarantee.
//! For cyclic MDS with composite n some smaller sets also decode exactly (n = 4, s = 1:
//! g = 1 + x, rows 0 and 2 sum to 1; 52 of 1,012 smaller sets at n = 10, s = 1); the
//! least-squares decoding reports them as exact, `is_decodable` does not promise them. For prime
//! n no smaller set decodes (every minor of the prime-order DFT matrix is non-zero, Chebotarev).
//! Not implemented: the complex-valued MDS code for n − s even.

use ndarray::Array2;
use ndarray_linalg::Solve;
use num_complex::Complex64;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{check_n_s, CodeError, CodeKind, GradientCode, Layout};

/// Cyclic repetition code with a random H drawn from the seed.
#[derive(Debug, Clone)]
pub struct CyclicRepetition {
    layout: Layout,
    s: usize,
}

impl CyclicRepetition {
    pub fn new(n: usize, s: usize, seed: u64) -> Result<Self, CodeError> {
        let kind = CodeKind::CyclicRepetition;
        check_n_s(kind, n, s)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut h = Array2::<f64>::zeros((s, n));
        for mut row in h.rows_mut() {
            let mut sum = 0.0;
            for j in 0..n - 1 {
                let v: f64 = StandardNormal.sample(&mut rng);
                row[j] = v;
                sum += v;
            }
            row[n - 1] = -sum;
        }
        let mut coefs = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = vec![1.0; s + 1];
            if s > 0 {
                // H[:, S_i ∖ {i}] x = −H[:, i]
                let others: Vec<usize> = (1..=s).map(|t| (i + t) % n).collect();
                let m = h.select(ndarray::Axis(1), &others);
                let rhs = h.column(i).mapv(|v| -v);
                let x = m.solve(&rhs).map_err(|e| {
                    CodeError::invalid(
                        kind,
                        format!(
                            "the random H drawn from seed {seed} gives a singular system for \
                             worker {i} ({e}); try another --seed"
                        ),
                    )
                })?;
                if x.iter().any(|v| !v.is_finite()) {
                    return Err(CodeError::invalid(
                        kind,
                        format!("non-finite coefficients for worker {i}; try another --seed"),
                    ));
                }
                for (dst, &v) in c[1..].iter_mut().zip(&x) {
                    *dst = v;
                }
            }
            coefs.push(c);
        }
        Ok(CyclicRepetition {
            layout: Layout::cyclic(n, s, coefs),
            s,
        })
    }
}

least_squares_impl!(CyclicRepetition, CodeKind::CyclicRepetition);

/// Real-valued cyclic MDS (Reed–Solomon) code; needs n − s odd or s = 0.
#[derive(Debug, Clone)]
pub struct CyclicMds {
    layout: Layout,
    s: usize,
    generator: Vec<f64>,
}

impl CyclicMds {
    pub fn new(n: usize, s: usize) -> Result<Self, CodeError> {
        let g = mds_generator(n, s)?;
        let coefs = vec![g.clone(); n];
        Ok(CyclicMds {
            layout: Layout::cyclic(n, s, coefs),
            s,
            generator: g,
        })
    }
    /// The generator's coefficients g_0 … g_s (g_s = 1): row i of B is x^i g(x) mod x^n − 1.
    pub fn generator(&self) -> &[f64] {
        &self.generator
    }
}

least_squares_impl!(CyclicMds, CodeKind::CyclicMds);

/// Coefficients g_0 … g_s of g(x) = Π_{j∈J} (x − e^{2πij/n}) for the interval J of s exponents
/// centred at n/2 (real because J is closed under j ↦ n − j). Errors when n − s is even (s > 0),
/// naming the nearest valid s.
pub fn mds_generator(n: usize, s: usize) -> Result<Vec<f64>, CodeError> {
    let kind = CodeKind::CyclicMds;
    check_n_s(kind, n, s)?;
    if s == 0 {
        return Ok(vec![1.0]);
    }
    if (n - s) % 2 == 0 {
        let near: Vec<String> = [s.checked_sub(1), Some(s + 1)]
            .into_iter()
            .flatten()
            .filter(|&t| t < n)
            .map(|t| format!("s = {t}"))
            .collect();
        return Err(CodeError::invalid(
            kind,
            format!(
                "a real-valued cyclic MDS code needs n − s odd, but n − s = {n} − {s} = {}; \
                 nearest valid: {}",
                n - s,
                near.join(" or ")
            ),
        ));
    }
    // n even ⇒ s odd: n/2 − (s−1)/2 …; n odd ⇒ s even: (n+1)/2 − s/2 …
    let lo = if n % 2 == 0 {
        n / 2 - (s - 1) / 2
    } else {
        n.div_ceil(2) - s / 2
    };
    let mut g = vec![Complex64::new(1.0, 0.0)];
    for j in lo..lo + s {
        let root =
            Complex64::from_polar(1.0, 2.0 * std::f64::consts::PI * (j % n) as f64 / n as f64);
        // (x − root) · g
        let mut next = vec![Complex64::new(0.0, 0.0); g.len() + 1];
        for (t, &c) in g.iter().enumerate() {
            next[t + 1] += c;
            next[t] -= root * c;
        }
        g = next;
    }
    let scale = g.iter().map(|c| c.norm()).fold(1.0, f64::max);
    if let Some(bad) = g.iter().find(|c| c.im.abs() > 1e-9 * scale) {
        return Err(CodeError::invalid(
            kind,
            format!(
                "generator polynomial for n = {n}, s = {s} is not real (imaginary part {:.3e})",
                bad.im
            ),
        ));
    }
    Ok(g.iter().map(|c| c.re).collect())
}
