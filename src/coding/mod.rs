//! Gradient codes: which partitions each worker holds, the coefficients of its coded message,
//! and decoding of the full gradient from a responder set.
//!
//! Notation (GUIDE §3): n workers, k partitions, B (n × k) the code matrix; worker i sends
//! `b_iᵀ G` where G stacks the k partial gradients; from responders F rank 0 finds `a` with
//! `a_Fᵀ B_F = 1ᵀ` (least squares by SVD, never the normal equations) and forms
//! `ĝ = Σ_{i∈F} a_i (b_iᵀ G)`. Decodings are cached per responder set in [`Decoder`].
//!
//! Codes: `uncoded`, `ignore-stragglers`, `frc` (fractional repetition), `cyclic-repetition`
//! (Tandon et al. 2017, Alg. 2), `cyclic-mds` (Raviv, Tamo, Tandon, Dimakis 2017, real-valued).
//!
//! This module knows no MPI and no I/O. Workers are indexed 0..n here (MPI rank = index + 1).

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2, ArrayViewMut1};
use thiserror::Error;

mod cyclic;
mod decode;
mod frc;
mod uncoded;

pub use cyclic::{mds_generator, CyclicMds, CyclicRepetition};
pub use decode::{least_squares_decode, residual_of};
pub use frc::Frc;
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
        }
    }
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
    /// Cheap (no linear algebra) and a guarantee: `true` implies [`GradientCode::decode`] is
    /// exact (except `ignore-stragglers`, which is approximate by design). It may be `false` for
    /// a few sets that happen to decode exactly (cyclic MDS with composite n). Malformed sets
    /// (unsorted, repeats, out of range) are never decodable.
    fn is_decodable(&self, responders: &[usize]) -> bool;
    /// Decoding weights for `responders` (sorted, 0-based). For a set that is not decodable this
    /// is the best-effort (least-squares optimal or code-specific) decoding with its residual.
    fn decode(&self, responders: &[usize]) -> Result<Decoding, CodeError>;

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
/// `ignore-stragglers` stops after n − s responders and is approximate by design. Only
/// `cyclic-repetition` uses the seed.
pub fn build(
    kind: CodeKind,
    n: usize,
    s: usize,
    seed: u64,
) -> Result<Box<dyn GradientCode>, CodeError> {
    check_n_s(kind, n, s)?;
    Ok(match kind {
        CodeKind::Uncoded => Box::new(Uncoded::new(n)?),
        CodeKind::IgnoreStragglers => Box::new(IgnoreStragglers::new(n, s)?),
        CodeKind::Frc => Box::new(Frc::new(n, s)?),
        CodeKind::CyclicRepetition => Box::new(CyclicRepetition::new(n, s, seed)?),
        CodeKind::CyclicMds => Box::new(CyclicMds::new(n, s)?),
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

/// Partitions and coefficients per worker, with the dense B they define; shared by every code.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    parts: Vec<Vec<usize>>,
    coefs: Vec<Vec<f64>>,
    b: Array2<f64>,
}

impl Layout {
    /// From per-worker partitions and coefficients (same lengths, partitions below `k`).
    fn new(k: usize, parts: Vec<Vec<usize>>, coefs: Vec<Vec<f64>>) -> Layout {
        let mut b = Array2::zeros((parts.len(), k));
        for (w, (p, c)) in parts.iter().zip(&coefs).enumerate() {
            for (&j, &v) in p.iter().zip(c) {
                b[[w, j]] += v;
            }
        }
        Layout { parts, coefs, b }
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
        self.b.ncols()
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
mod tests;
