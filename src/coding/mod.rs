//! Gradient codes: which partitions each worker holds, the coefficients of its coded message,
//! and decoding of the full gradient from a responder set.
//!
//! Notation (GUIDE §3): n workers, k partitions, B (n × k) the code matrix; worker i sends
//! `b_iᵀ G` where G stacks the k partial gradients; from responders F rank 0 finds `a` with
//! `a_Fᵀ B_F = 1ᵀ` (least squares by SVD, never the normal equations) and forms
//! `ĝ = Σ_{i∈F} a_i (b_iᵀ G)`. Decodings are cached per responder set in [`Decoder`].
//!
//! Exact codes: `uncoded`, `ignore-stragglers`, `frc` (fractional repetition),
//! `cyclic-repetition` (Tandon et al. 2017, Alg. 2), `cyclic-mds` (Raviv, Tamo, Tandon, Dimakis
//! 2017, real-valued). Approximate codes (`approx.rs`): `expander` (B = A_G/d for a seeded random
//! d-regular graph, with the bound (λ/d)·√(ns/(n−s))), `bgc` (Bernoulli gradient code),
//! `frc-approx` (FRC groups of d, stopping at n − s responders) and `stochastic` (cyclic placement,
//! unbiased one-step scaling by the straggle probability). Approximate codes decode with the
//! selectable [`DecoderKind`]: `optimal` (least squares) or `one-step` (one common weight).
//!
//! This module knows no MPI and no I/O. Workers are indexed 0..n here (MPI rank = index + 1).

use std::collections::HashMap;
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2, ArrayViewMut1};
use thiserror::Error;

/// The [`GradientCode`] methods every code answers from its `layout: Layout` field, written once.
macro_rules! layout_methods {
    () => {
        fn n_workers(&self) -> usize {
            self.layout.n()
        }
        fn n_partitions(&self) -> usize {
            self.layout.k()
        }
        fn assignment(&self, worker: usize) -> &[usize] {
            self.layout.assignment(worker)
        }
        fn coefficients(&self, worker: usize) -> &[f64] {
            self.layout.coefficients(worker)
        }
        fn matrix(&self) -> ndarray::Array2<f64> {
            self.layout.b().clone()
        }
    };
}

mod approx;
mod choice;
mod cyclic;
mod decode;
mod expander;
mod frc;
mod stop;
mod uncoded;

pub use approx::ApproxCode;
pub use choice::TrainCode;
pub use cyclic::{mds_generator, CyclicMds, CyclicRepetition};
pub use decode::{least_squares_decode, residual_of, uniform_decode};
pub use expander::{random_regular_graph, second_eigenvalue};
pub use frc::Frc;
pub use stop::{StopTracker, StoppingRule};
pub use uncoded::{IgnoreStragglers, Uncoded};

/// Errors of code construction and decoding.
#[derive(Debug, Error)]
pub enum CodeError {
    #[error("invalid code parameters for '{code}': {reason}")]
    Invalid { code: String, reason: String },
    #[error("responder set {responders:?} cannot be decoded by '{code}'")]
    NotDecodable {
        code: String,
        responders: Vec<usize>,
    },
    #[error(
        "responder set {responders:?} for '{code}' must be sorted, without repeats, \
         with every worker below n = {n}"
    )]
    BadResponders {
        code: String,
        responders: Vec<usize>,
        n: usize,
    },
    #[error("linear algebra failed while decoding: {0}")]
    Linalg(String),
}

impl CodeError {
    pub(crate) fn invalid(kind: CodeKind, reason: impl Into<String>) -> CodeError {
        CodeError::Invalid {
            code: kind.name().into(),
            reason: reason.into(),
        }
    }
}

/// The gradient codes selectable on the command line (named exactly so).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CodeKind {
    /// k = n, every worker one partition; wait for all.
    Uncoded,
    /// k = n; sum the first n − s plain gradients, scaled by n/(n − s) (approximate).
    IgnoreStragglers,
    /// Fractional repetition; needs (s + 1) | n.
    Frc,
    /// Cyclic repetition (Tandon et al., Alg. 2) with a random H from the seed.
    CyclicRepetition,
    /// Real-valued cyclic MDS (Reed–Solomon) code; needs n − s odd.
    CyclicMds,
    /// Approximate: B = A_G/d for a seeded random d-regular graph G (--degree d, n·d even, d < n).
    Expander,
    /// Approximate: Bernoulli gradient code, each worker holds each partition with prob. d/n.
    Bgc,
    /// Approximate: FRC groups of d workers (d | n), stops after n − s responders.
    FrcApprox,
    /// Approximate: cyclic placement on d workers, one-step scaling 1/(d(1 − p)) (unbiased).
    Stochastic,
}

impl CodeKind {
    /// The name used on the command line and in result files.
    pub fn name(&self) -> &'static str {
        match self {
            CodeKind::Uncoded => "uncoded",
            CodeKind::IgnoreStragglers => "ignore-stragglers",
            CodeKind::Frc => "frc",
            CodeKind::CyclicRepetition => "cyclic-repetition",
            CodeKind::CyclicMds => "cyclic-mds",
            CodeKind::Expander => "expander",
            CodeKind::Bgc => "bgc",
            CodeKind::FrcApprox => "frc-approx",
            CodeKind::Stochastic => "stochastic",
        }
    }
    /// Whether the code is approximate by construction (decodes approximately from n − s).
    pub fn is_approximate(&self) -> bool {
        matches!(
            self,
            CodeKind::IgnoreStragglers
                | CodeKind::Expander
                | CodeKind::Bgc
                | CodeKind::FrcApprox
                | CodeKind::Stochastic
        )
    }
    /// Whether the code takes `--degree`, `--decoder` and (stochastic) `--straggle-prob`.
    pub fn takes_degree(&self) -> bool {
        matches!(
            self,
            CodeKind::Expander | CodeKind::Bgc | CodeKind::FrcApprox | CodeKind::Stochastic
        )
    }
}

/// How an approximate code turns the responders' messages into a gradient.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderKind {
    /// Least squares a* = argmin ‖B_Fᵀa − 1‖₂ (SVD; cached per responder set by `Decoder`).
    Optimal,
    /// One common weight on every responder: n/(|F|·r) with r the mean column sum of B
    /// (= n/(n − s) for expander at the stopping rule), or 1/(r(1 − p)) for `stochastic`.
    OneStep,
}

impl DecoderKind {
    pub fn name(&self) -> &'static str {
        match self {
            DecoderKind::Optimal => "optimal",
            DecoderKind::OneStep => "one-step",
        }
    }
}

impl std::fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of the approximate codes; `CodeOptions::default()` gives every code its defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CodeOptions {
    /// Replication d (`--degree`): graph degree for `expander`, expected partitions per worker
    /// for `bgc`, group size for `frc-approx`, workers per partition for `stochastic`.
    /// Default s + 1. Only the approximate codes accept it.
    pub degree: Option<usize>,
    /// Decoder (`--decoder`). Default: `optimal`, except `stochastic` (`one-step`, unbiased).
    /// Exact codes always decode by least squares and refuse `one-step`; `ignore-stragglers`
    /// is one-step by construction and refuses `optimal`.
    pub decoder: Option<DecoderKind>,
    /// Straggle probability p of `stochastic` (`--straggle-prob`), in [0, 1). Default s/n.
    pub straggle_prob: Option<f64>,
}

impl std::fmt::Display for CodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Weights that combine the responders' messages into the gradient, and their quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoding {
    /// The responders (sorted worker indices) the weights belong to.
    pub responders: Vec<usize>,
    /// One weight per responder, in the order of `responders`.
    pub weights: Vec<f64>,
    /// err(F) = ‖B_Fᵀ a − 1‖₂: zero for an exact decoding.
    pub residual: f64,
    /// Whether the decoded gradient equals the full gradient (residual below tolerance).
    pub exact: bool,
    /// Condition number of B_F (σ_max / σ_min of its non-zero singular values).
    pub condition: f64,
}

/// Residual below which a decoding counts as exact.
pub const EXACT_TOL: f64 = 1e-8;

/// A gradient code: assignment of partitions to workers, coefficients, decoding.
pub trait GradientCode: Send + Sync + std::fmt::Debug {
    /// Which code this is.
    fn kind(&self) -> CodeKind;
    /// Number of workers n.
    fn n_workers(&self) -> usize;
    /// Number of data partitions k.
    fn n_partitions(&self) -> usize;
    /// Stragglers tolerated with exact decoding (s).
    fn max_stragglers(&self) -> usize;
    /// Partitions held by `worker` (0-based), in the order of [`GradientCode::coefficients`].
    fn assignment(&self, worker: usize) -> &[usize];
    /// Coefficients b_ij of `worker`'s coded message, one per held partition.
    fn coefficients(&self, worker: usize) -> &[f64];
    /// Whether rank 0 may stop collecting once `responders` (sorted, 0-based) have answered.
    /// Cheap (no linear algebra). For exact codes a guarantee in exact arithmetic: `true` implies
    /// [`GradientCode::decode`] is exact (tested in floating point on every set for n ≤ 10;
    /// the real cyclic MDS code loses digits past n ≈ 30, which is why `decode` reports `exact`
    /// from its own residual and the coordinator records that, not this). For approximate codes (`ignore-stragglers`, `expander`,
    /// `bgc`, `frc-approx`, `stochastic`) it is the stopping rule |F| ≥ n − s (`frc-approx`:
    /// also every group covered), and the decoding carries its honest residual. It may be `false` for
    /// a few sets that happen to decode exactly (cyclic MDS with composite n). Malformed sets
    /// (unsorted, repeats, out of range) are never decodable.
    fn is_decodable(&self, responders: &[usize]) -> bool;
    /// The rule behind [`GradientCode::is_decodable`] when it is a count of responders or a
    /// cover of worker groups ([`StoppingRule`]), so that it can be tracked one arrival at a time
    /// ([`StopTracker`]); `None` for a code whose test only `is_decodable` can make on the whole
    /// set. Every code of this crate has one, and its `is_decodable` is that rule.
    fn stopping_rule(&self) -> Option<StoppingRule> {
        None
    }
    /// Decoding weights for `responders` (sorted, 0-based). For a set that is not decodable this
    /// is the best-effort (least-squares optimal or code-specific) decoding with its residual.
    /// Approximate codes use their configured [`DecoderKind`].
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError>;

    /// The decoder [`GradientCode::decode`] uses (least squares for the exact codes).
    fn decoder_kind(&self) -> DecoderKind {
        DecoderKind::Optimal
    }

    /// A guaranteed upper bound on err(F) = ‖B_Fᵀa − 1‖₂ of [`GradientCode::decode`] for
    /// `responders`, where the code has one: `expander` gives (λ/d)·√(n s'/(n − s')) with
    /// s' = n − |F| (both decoders meet it); None for every other code and for F = ∅.
    fn error_bound(&self, responders: &[usize]) -> Option<f64> {
        let _ = responders;
        None
    }

    /// A one-line description of code-specific parameters (degree, λ, decoder, p), if any.
    fn summary(&self) -> Option<String> {
        None
    }

    /// The code matrix B (n × k).
    fn matrix(&self) -> Array2<f64> {
        let mut b = Array2::zeros((self.n_workers(), self.n_partitions()));
        for w in 0..self.n_workers() {
            for (&j, &c) in self.assignment(w).iter().zip(self.coefficients(w)) {
                b[[w, j]] = c;
            }
        }
        b
    }

    /// `out = b_wᵀ G` for partial gradients `g` (k × d): what worker `w` sends.
    fn encode_into(&self, worker: usize, g: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
        out.fill(0.0);
        for (&j, &c) in self
            .assignment(worker)
            .iter()
            .zip(self.coefficients(worker))
        {
            out.scaled_add(c, &g.row(j));
        }
    }
}

/// Build the code `kind` for `n` workers tolerating `s` stragglers (random codes drawn from `seed`).
///
/// Checks `n ≥ 1`, `s < n` and each code's own constraints, with errors that say what to change:
/// `frc` needs (s + 1) | n; `cyclic-mds` needs n − s odd (or s = 0). `uncoded` accepts any
/// valid s but always waits for all n workers (its [`GradientCode::max_stragglers`] is 0);
/// `ignore-stragglers` stops after n − s responders and is approximate by design. The seed is
/// used by `cyclic-repetition`, `expander` and `bgc`. The approximate codes get their defaults
/// (degree s + 1, see [`CodeOptions`]); use [`build_with`] to choose.
pub fn build(
    kind: CodeKind,
    n: usize,
    s: usize,
    seed: u64,
) -> Result<Box<dyn GradientCode>, CodeError> {
    build_with(kind, n, s, seed, &CodeOptions::default())
}

/// [`build`] with the options of the approximate codes (`expander`, `bgc`, `frc-approx`,
/// `stochastic` use `seed` for their random placement where they have one: expander and bgc).
///
/// Refuses options a code does not use rather than ignoring them: `degree` and
/// `straggle_prob` on the exact codes, `straggle_prob` on anything but `stochastic`,
/// `one-step` on the exact codes, `optimal` on `ignore-stragglers`.
pub fn build_with(
    kind: CodeKind,
    n: usize,
    s: usize,
    seed: u64,
    opts: &CodeOptions,
) -> Result<Box<dyn GradientCode>, CodeError> {
    check_n_s(kind, n, s)?;
    if !kind.takes_degree() {
        if let Some(d) = opts.degree {
            return Err(CodeError::invalid(
                kind,
                format!(
                    "--degree {d} applies only to the approximate codes expander, bgc,                      frc-approx and stochastic"
                ),
            ));
        }
        let own = if kind == CodeKind::IgnoreStragglers {
            DecoderKind::OneStep
        } else {
            DecoderKind::Optimal
        };
        if let Some(dk) = opts.decoder.filter(|&dk| dk != own) {
            return Err(CodeError::invalid(
                kind,
                format!(
                    "--decoder {dk} does not apply: {kind} always decodes {own}; the decoder                      is selectable for expander, bgc, frc-approx and stochastic"
                ),
            ));
        }
    }
    if kind != CodeKind::Stochastic {
        if let Some(p) = opts.straggle_prob {
            return Err(CodeError::invalid(
                kind,
                format!("--straggle-prob {p} applies only to the stochastic code"),
            ));
        }
    }
    Ok(match kind {
        CodeKind::Uncoded => Box::new(Uncoded::new(n)?),
        CodeKind::IgnoreStragglers => Box::new(IgnoreStragglers::new(n, s)?),
        CodeKind::Frc => Box::new(Frc::new(n, s)?),
        CodeKind::CyclicRepetition => Box::new(CyclicRepetition::new(n, s, seed)?),
        CodeKind::CyclicMds => Box::new(CyclicMds::new(n, s)?),
        CodeKind::Expander | CodeKind::Bgc | CodeKind::FrcApprox | CodeKind::Stochastic => {
            Box::new(ApproxCode::new(kind, n, s, seed, opts)?)
        }
    })
}

/// The checks every code shares: at least one worker and fewer stragglers than workers.
pub(crate) fn check_n_s(kind: CodeKind, n: usize, s: usize) -> Result<(), CodeError> {
    if n == 0 {
        return Err(CodeError::invalid(
            kind,
            "the number of workers n must be at least 1",
        ));
    }
    if s >= n {
        return Err(CodeError::invalid(
            kind,
            format!("s = {s} must be smaller than the number of workers n = {n}"),
        ));
    }
    Ok(())
}

/// Whether `responders` is strictly increasing with every entry below `n` (cheap, O(|F|)).
pub(crate) fn responders_valid(n: usize, responders: &[usize]) -> bool {
    responders.windows(2).all(|w| w[0] < w[1]) && responders.iter().all(|&r| r < n)
}

/// [`responders_valid`] as an error naming the code.
pub(crate) fn check_responders(
    kind: CodeKind,
    n: usize,
    responders: &[usize],
) -> Result<(), CodeError> {
    if responders_valid(n, responders) {
        Ok(())
    } else {
        Err(CodeError::BadResponders {
            code: kind.name().into(),
            responders: responders.to_vec(),
            n,
        })
    }
}

/// Partitions and coefficients per worker, and the dense B they define (built on first use: at
/// n = 10⁴ it would take 800 MB, and the simulator needs only the sparse rows); shared by every
/// code.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    parts: Vec<Vec<usize>>,
    coefs: Vec<Vec<f64>>,
    k: usize,
    b: OnceLock<Array2<f64>>,
}

impl Layout {
    /// From per-worker partitions and coefficients (same lengths, partitions below `k`).
    fn new(k: usize, parts: Vec<Vec<usize>>, coefs: Vec<Vec<f64>>) -> Layout {
        Layout {
            parts,
            coefs,
            k,
            b: OnceLock::new(),
        }
    }
    /// The dense code matrix B (n × k).
    fn b(&self) -> &Array2<f64> {
        self.b.get_or_init(|| {
            let mut b = Array2::zeros((self.parts.len(), self.k));
            for (w, (p, c)) in self.parts.iter().zip(&self.coefs).enumerate() {
                for (&j, &v) in p.iter().zip(c) {
                    b[[w, j]] += v;
                }
            }
            b
        })
    }
    /// Worker i holds {i, …, i+s} mod n with coefficients `coefs[i]` (cyclic assignment).
    fn cyclic(n: usize, s: usize, coefs: Vec<Vec<f64>>) -> Layout {
        let parts = (0..n)
            .map(|i| (0..=s).map(|t| (i + t) % n).collect())
            .collect();
        Layout::new(n, parts, coefs)
    }
    fn n(&self) -> usize {
        self.parts.len()
    }
    fn k(&self) -> usize {
        self.k
    }
    fn assignment(&self, worker: usize) -> &[usize] {
        self.parts.get(worker).map_or(&[], |p| p.as_slice())
    }
    fn coefficients(&self, worker: usize) -> &[f64] {
        self.coefs.get(worker).map_or(&[], |c| c.as_slice())
    }
}

/// Decodes responder sets of one code, caching the weights per set (the set repeats far more
/// often than it changes, so the least-squares solve is off the hot path).
#[derive(Debug)]
pub struct Decoder {
    code: Box<dyn GradientCode>,
    cache: HashMap<Vec<usize>, Decoding>,
    hits: u64,
    misses: u64,
}

impl Decoder {
    pub fn new(code: Box<dyn GradientCode>) -> Self {
        Decoder {
            code,
            cache: HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }
    pub fn code(&self) -> &dyn GradientCode {
        self.code.as_ref()
    }
    /// Decoding for `responders` (sorted, 0-based), from the cache when seen before.
    /// Errors (bad responder sets, failed SVD) are not cached.
    pub fn decode(&mut self, responders: &[usize]) -> Result<&Decoding, CodeError> {
        if self.cache.contains_key(responders) {
            self.hits += 1;
        } else {
            let d = self.code.decode(responders)?;
            self.misses += 1;
            self.cache.insert(responders.to_vec(), d);
        }
        self.cache
            .get(responders)
            .ok_or_else(|| CodeError::Linalg("decoding cache lost an entry".into()))
    }
    /// Decodings served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }
    /// Decodings computed (one per distinct responder set).
    pub fn misses(&self) -> u64 {
        self.misses
    }
    /// Distinct responder sets cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
#[path = "tests/approx.rs"]
mod approx_tests;
#[cfg(test)]
mod tests;
