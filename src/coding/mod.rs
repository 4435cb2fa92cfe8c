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

use ndarray::{Array2, ArrayView2, ArrayViewMut1};
use thiserror::Error;

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
    #[error("linear algebra failed while decoding: {0}")]
    Linalg(String),
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
pub fn build(
    kind: CodeKind,
    n: usize,
    s: usize,
    seed: u64,
) -> Result<Box<dyn GradientCode>, CodeError> {
    let _ = (n, s, seed);
    Err(CodeError::Invalid {
        code: kind.name().into(),
        reason: "not implemented yet".into(),
    })
}

/// Decodes responder sets of one code, caching the weights per set (the set repeats far more
/// often than it changes, so the least-squares solve is off the hot path).
#[derive(Debug)]
pub struct Decoder {
    code: Box<dyn GradientCode>,
    cache: std::collections::HashMap<Vec<usize>, Decoding>,
}

impl Decoder {
    pub fn new(code: Box<dyn GradientCode>) -> Self {
        Decoder {
            code,
            cache: std::collections::HashMap::new(),
        }
    }
    pub fn code(&self) -> &dyn GradientCode {
        self.code.as_ref()
    }
    /// Decoding for `responders` (sorted, 0-based), from the cache when seen before.
    pub fn decode(&mut self, responders: &[usize]) -> Result<&Decoding, CodeError> {
        if !self.cache.contains_key(responders) {
            let d = self.code.decode(responders)?;
            self.cache.insert(responders.to_vec(), d);
        }
        self.cache
            .get(responders)
            .ok_or_else(|| CodeError::Linalg("decoding cache lost an entry".into()))
    }
}
