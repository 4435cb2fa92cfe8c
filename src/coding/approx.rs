//! The approximate gradient codes: `expander`, `bgc`, `frc-approx`, `stochastic` (k = n).
//!
//! All four stop at the rule |F| ≥ n − s ([`GradientCode::is_decodable`]) and decode with the
//! selected [`DecoderKind`], reporting the honest residual err(F) = ‖B_Fᵀa − 1‖₂ (`exact` only
//! when it is below tolerance). d is `--degree` (default s + 1).
//!
//! - `expander` (Raviv, Tamo, Tandon, Dimakis 2017, §V; Glasgow & Wootters): B = A_G/d for a
//!   seeded random simple d-regular graph G (pairing model, `expander.rs`); worker i holds the d
//!   partitions adjacent to vertex i, each with coefficient 1/d, so every row and column of B
//!   sums to 1. Needs n·d even and d < n. λ = the second largest |eigenvalue| of A_G; up to
//!   [`GRAPH_TRIES`] graphs are drawn until one has λ < d (connected, not bipartite). The one-step
//!   decoder a = n/|F| (= n/(n − s) at the stopping rule) meets err ≤ (λ/d)·√(n s/(n − s)) with
//!   s = n − |F| (expander mixing: 1_F = (|F|/n)·1 + z with z ⊥ 1, ‖z‖² = s|F|/n, ‖Az‖ ≤ λ‖z‖),
//!   and the optimal decoder is never worse than one-step, so both meet the bound.
//! - `bgc` (Bernoulli gradient code, Charles, Papailiopoulos, Ellenberg 2017): worker i holds
//!   each partition independently with probability d/n (and one uniformly drawn partition if it
//!   drew none); every coefficient is 1/d, one over the expected replication n·(d/n) = d, so
//!   E[Bᵀ1] ≈ 1 as for the expander. A partition nobody drew can never be recovered; such
//!   partitions are counted in [`GradientCode::summary`]. No worst-case bound.
//! - `frc-approx`: the FRC layout with groups of d consecutive workers (d | n; default d = s + 1,
//!   so (s + 1) | n), coefficients 1. Decodable when every group has a responder (then exact)
//!   or |F| ≥ n − s. The optimal decoding is FRC's: weight 1 on the first responder of each
//!   group, so an uncovered group leaves residual √(d · #uncovered groups) (least squares can do
//!   no better: the groups' rows are orthogonal).
//! - `stochastic` (stochastic gradient coding, Bitar, Wootters, El Rouayheb 2020): worker i holds
//!   partitions i, …, i + d − 1 (mod n) with coefficient 1, so every partition is on d workers.
//!   Its one-step decoder scales each received message by 1/(d(1 − p)) for the straggle
//!   probability p (`--straggle-prob`, default s/n): if every worker is missing independently
//!   with probability p, E[ĝ] = Σ_i (1 − p)/(d(1 − p)) b_iᵀG = 1ᵀG (unbiased). Default decoder
//!   one-step; `optimal` is allowed (smaller error, but biased).
//!
//! The generic one-step weight (all but `stochastic`) is n/(|F|·r) with r = (Σ B)/k the mean
//! column sum of B (1 for expander, ≈ 1 for bgc, d for frc-approx): unbiased over uniformly
//! random responder sets of a given size.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::expander::{random_regular_graph, second_eigenvalue};
use super::{
    check_n_s, check_responders, decode, CodeError, CodeKind, CodeOptions, DecoderKind, Decoding,
    GradientCode, Layout, StoppingRule,
};

/// Graphs drawn at most while looking for one with λ < d (almost always the first is).
pub const GRAPH_TRIES: usize = 100;

/// One of the approximate codes (see the module docs).
#[derive(Debug, Clone)]
pub struct ApproxCode {
    kind: CodeKind,
    layout: Layout,
    s: usize,
    degree: usize,
    decoder: DecoderKind,
    /// Mean column sum r of B.
    col_mean: f64,
    /// `stochastic` only.
    straggle_prob: Option<f64>,
    /// `expander` only.
    lambda: Option<f64>,
    /// Partitions no worker holds (`bgc` only can have any).
    unheld: usize,
}

impl ApproxCode {
    /// Build `kind` (one of expander, bgc, frc-approx, stochastic) for n workers, s stragglers.
    pub fn new(
        kind: CodeKind,
        n: usize,
        s: usize,
        seed: u64,
        opts: &CodeOptions,
    ) -> Result<Self, CodeError> {
        check_n_s(kind, n, s)?;
        let d = opts.degree.unwrap_or(s + 1);
        if d == 0 {
            return Err(CodeError::invalid(kind, "--degree must be at least 1"));
        }
        if d > n {
            return Err(CodeError::invalid(
                kind,
                format!("the degree d = {d} must not exceed the number of workers n = {n}"),
            ));
        }
        if let Some(p) = opts.straggle_prob.filter(|_| kind != CodeKind::Stochastic) {
            return Err(CodeError::invalid(
                kind,
                format!("--straggle-prob {p} applies only to the stochastic code"),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut lambda = None;
        let mut straggle_prob = None;
        let (parts, coefs): (Vec<Vec<usize>>, Vec<Vec<f64>>) = match kind {
            CodeKind::Expander => {
                let mut best = None;
                for _ in 0..GRAPH_TRIES {
                    let adj = random_regular_graph(n, d, &mut rng)
                        .map_err(|r| CodeError::invalid(kind, r))?;
                    let l = second_eigenvalue(&adj)?;
                    let good = l < d as f64 - 1e-9;
                    best = Some((adj, l));
                    if good {
                        break;
                    }
                }
                let Some((adj, l)) = best else {
                    return Err(CodeError::invalid(kind, "no graph drawn"));
                };
                lambda = Some(l);
                let coefs = adj.iter().map(|a| vec![1.0 / d as f64; a.len()]).collect();
                (adj, coefs)
            }
            CodeKind::Bgc => {
                let p = d as f64 / n as f64;
                let parts: Vec<Vec<usize>> = (0..n)
                    .map(|_| {
                        let mut held: Vec<usize> = (0..n).filter(|_| rng.gen_bool(p)).collect();
                        if held.is_empty() {
                            held.push(rng.gen_range(0..n));
                        }
                        held
                    })
                    .collect();
                let coefs = parts
                    .iter()
                    .map(|p| vec![1.0 / d as f64; p.len()])
                    .collect();
                (parts, coefs)
            }
            CodeKind::FrcApprox => {
                if n % d != 0 {
                    let valid: Vec<String> = (1..=n)
                        .filter(|t| n % t == 0)
                        .map(|t| t.to_string())
                        .collect();
                    return Err(CodeError::invalid(
                        kind,
                        format!(
                            "the group size d = {d} (--degree, default s + 1) must divide the \
                             number of workers n = {n}; valid d for n = {n}: {}",
                            valid.join(", ")
                        ),
                    ));
                }
                let parts = (0..n)
                    .map(|i| {
                        let g0 = (i / d) * d;
                        (g0..g0 + d).collect()
                    })
                    .collect();
                (parts, vec![vec![1.0; d]; n])
            }
            CodeKind::Stochastic => {
                let p = opts.straggle_prob.unwrap_or(s as f64 / n as f64);
                if !(0.0..1.0).contains(&p) {
                    return Err(CodeError::invalid(
                        kind,
                        format!("the straggle probability p = {p} must be in [0, 1)"),
                    ));
                }
                straggle_prob = Some(p);
                let parts = (0..n)
                    .map(|i| (0..d).map(|t| (i + t) % n).collect())
                    .collect();
                (parts, vec![vec![1.0; d]; n])
            }
            _ => {
                return Err(CodeError::invalid(
                    kind,
                    "not an approximate code (expander, bgc, frc-approx, stochastic)",
                ))
            }
        };
        // From the sparse rows: the dense B is built only when a decoding needs it.
        let col_mean = coefs.iter().flatten().sum::<f64>() / n as f64;
        let mut held = vec![false; n];
        for (&j, &c) in parts.iter().flatten().zip(coefs.iter().flatten()) {
            held[j] |= c != 0.0;
        }
        let unheld = held.iter().filter(|h| !**h).count();
        let layout = Layout::new(n, parts, coefs);
        let decoder = opts.decoder.unwrap_or(if kind == CodeKind::Stochastic {
            DecoderKind::OneStep
        } else {
            DecoderKind::Optimal
        });
        Ok(ApproxCode {
            kind,
            layout,
            s,
            degree: d,
            decoder,
            col_mean,
            straggle_prob,
            lambda,
            unheld,
        })
    }

    /// The replication d (graph degree, expected partitions per worker, group size, or
    /// workers per partition).
    pub fn degree(&self) -> usize {
        self.degree
    }
    /// λ, the second largest |eigenvalue| of A_G (`expander` only).
    pub fn lambda(&self) -> Option<f64> {
        self.lambda
    }
    /// The straggle probability p (`stochastic` only).
    pub fn straggle_prob(&self) -> Option<f64> {
        self.straggle_prob
    }
    /// Partitions held by no worker (only `bgc` can have any).
    pub fn unheld_partitions(&self) -> usize {
        self.unheld
    }
    /// |F| ≥ n − s; for `frc-approx` also any set covering every group (exact).
    fn rule(&self) -> StoppingRule {
        let m = self.layout.n() - self.s;
        if self.kind == CodeKind::FrcApprox {
            StoppingRule::AtLeastOrEveryGroup {
                m,
                size: self.degree,
            }
        } else {
            StoppingRule::AtLeast(m)
        }
    }
    /// The one-step weight for `m` responders.
    pub fn one_step_weight(&self, m: usize) -> f64 {
        match self.straggle_prob {
            Some(p) => 1.0 / (self.col_mean * (1.0 - p)),
            None if m == 0 => 0.0,
            None => self.layout.n() as f64 / (m as f64 * self.col_mean),
        }
    }
    /// The one-step decoding of `responders` (whatever the configured decoder).
    pub fn decode_one_step(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        check_responders(self.kind, self.layout.n(), responders)?;
        Ok(decode::uniform_decode(
            self,
            responders,
            self.one_step_weight(responders.len()),
        ))
    }
    /// The least-squares optimal decoding of `responders` (whatever the configured decoder).
    pub fn decode_optimal(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        check_responders(self.kind, self.layout.n(), responders)?;
        if self.kind != CodeKind::FrcApprox {
            return decode::least_squares_decode(self.layout.b().view(), responders);
        }
        // FRC groups: weight 1 on the first responder of each group
        let d = self.degree;
        let mut last = None;
        let weights: Vec<f64> = responders
            .iter()
            .map(|&w| {
                let g = w / d;
                if last == Some(g) {
                    0.0
                } else {
                    last = Some(g);
                    1.0
                }
            })
            .collect();
        let residual = decode::residual_of(self, responders, &weights);
        Ok(Decoding {
            responders: responders.to_vec(),
            exact: decode::is_exact(residual, self.layout.k()),
            weights,
            residual,
            condition: if responders.is_empty() { f64::NAN } else { 1.0 },
        })
    }
}

impl GradientCode for ApproxCode {
    fn kind(&self) -> CodeKind {
        self.kind
    }
    layout_methods!();
    /// The stragglers it stops without (the decoding is then approximate).
    fn max_stragglers(&self) -> usize {
        self.s
    }
    /// |F| ≥ n − s; for `frc-approx` also any set covering every group (exact).
    fn is_decodable(&self, responders: &[usize]) -> bool {
        self.rule().holds(self.layout.n(), responders)
    }
    fn stopping_rule(&self) -> Option<StoppingRule> {
        Some(self.rule())
    }
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError> {
        match self.decoder {
            DecoderKind::Optimal => self.decode_optimal(responders),
            DecoderKind::OneStep => self.decode_one_step(responders),
        }
    }
    fn decoder_kind(&self) -> DecoderKind {
        self.decoder
    }
    fn error_bound(&self, responders: &[usize]) -> Option<f64> {
        let lambda = self.lambda?;
        let n = self.layout.n();
        let m = responders.len();
        if m == 0 || m > n {
            return None;
        }
        let s = (n - m) as f64;
        let n = n as f64;
        Some(lambda / self.degree as f64 * (n * s / (n - s)).sqrt())
    }
    fn summary(&self) -> Option<String> {
        let d = self.degree;
        let n = self.layout.n();
        let what = match self.kind {
            CodeKind::Expander => format!(
                "degree d = {d}, λ = {:.4} (second largest |eigenvalue| of A_G), \
                 bound (λ/d)·√(ns/(n−s))",
                self.lambda.unwrap_or(f64::NAN)
            ),
            CodeKind::Bgc => format!(
                "degree d = {d} (each partition held with probability d/n = {:.4}, \
                 coefficients 1/d), mean replication {:.3}, {} partition(s) held by nobody",
                d as f64 / n as f64,
                self.col_mean * d as f64,
                self.unheld
            ),
            CodeKind::FrcApprox => format!("groups of d = {d} workers, {} groups", n / d),
            _ => format!(
                "each partition on d = {d} workers, straggle probability p = {:.4}",
                self.straggle_prob.unwrap_or(f64::NAN)
            ),
        };
        let weight = match self.straggle_prob {
            Some(_) => format!("1/(d(1−p)) = {:.4}", self.one_step_weight(0)),
            None => format!("n/(|F|·{:.4})", self.col_mean),
        };
        Some(format!(
            "{what}; decoder {} (one-step weight {weight})",
            self.decoder
        ))
    }
}
