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
//! 2017, real-valued), and `comm-efficient` (Ye & Abbe 2018, `comm.rs`: the gradient cut into m
//! pieces, messages of ⌈dim/m⌉ values, each worker holding s + m partitions), and `hetero`
//! (`hetero.rs`: Wang et al. 2019, partitions in proportion to per-worker speeds). Approximate codes (`approx.rs`): `expander` (B = A_G/d for a seeded random
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
        fn split(&self) -> usize {
            self.layout.m
        }
    };
}

/// The [`GradientCode`] impl of the exact codes that stop at |F| ≥ n − s and decode every set
/// by least squares (`cyclic-repetition`, `cyclic-mds`, `comm-efficient`), from their
/// `layout: Layout` and `s` fields; further methods (`summary`) may follow the kind.
macro_rules! least_squares_impl {
    ($ty:ty, $kind:expr $(, $($extra:tt)*)?) => {
        impl GradientCode for $ty {
            fn kind(&self) -> CodeKind {
                $kind
            }
            layout_methods!();
            fn max_stragglers(&self) -> usize {
                self.s
            }
            /// |F| ≥ n − s.
            fn is_decodable(&self, responders: &[usize]) -> bool {
                $crate::coding::StoppingRule::AtLeast(self.layout.n() - self.s)
                    .holds(self.layout.n(), responders)
            }
            fn stopping_rule(&self) -> Option<$crate::coding::StoppingRule> {
                Some($crate::coding::StoppingRule::AtLeast(self.layout.n() - self.s))
            }
            /// Least squares by SVD (one SVD for the m pieces of a split code), for decodable
            /// and best-effort sets alike.
            fn decode(
                &self,
                responders: &[usize],
            ) -> Result<$crate::coding::Decoding, $crate::coding::CodeError> {
                $crate::coding::check_responders($kind, self.layout.n(), responders)?;
                $crate::coding::least_squares_decode_split(
                    self.layout.b().view(),
                    responders,
                    self.layout.m,
                )
            }
            $($($extra)*)?
        }
    };
}

mod approx;
mod choice;
mod comm;
mod cyclic;
mod decode;
mod expander;
mod frc;
pub(crate) mod hetero;
mod stop;
mod tree;
mod uncoded;

pub use approx::ApproxCode;
pub use choice::TrainCode;
pub use comm::{CommEfficient, Construction};
pub use cyclic::{mds_generator, CyclicMds, CyclicRepetition};
pub use decode::{least_squares_decode, least_squares_decode_split, residual_of, uniform_decode};
pub use expander::{random_regular_graph, second_eigenvalue};
pub use frc::Frc;
pub use hetero::{Hetero, Speeds};
pub use stop::{StopTracker, StoppingRule};
pub use tree::{RootCode, TreeCode};
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
    /// Communication-efficient (Ye & Abbe): the gradient in m pieces (--split m), messages of
    /// ⌈dim/m⌉ values, each worker holding s + m partitions.
    CommEfficient,
    /// Heterogeneity-aware (Wang et al. 2019): partitions in proportion to --worker-speeds,
    /// exact from any n − s workers.
    Hetero,
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
            CodeKind::CommEfficient => "comm-efficient",
            CodeKind::Hetero => "hetero",
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

/// Options of the approximate codes and of `hetero`; `CodeOptions::default()` gives every code
/// its defaults.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Pieces m of `comm-efficient` (`--split`), 1 ≤ m ≤ n − s. Default 2 (1 when n − s = 1).
    /// Only `comm-efficient` accepts it.
    pub split: Option<usize>,
    /// Per-worker speeds of `hetero` (`--worker-speeds`), one per worker, each > 0 (relative:
    /// only their ratios matter). Default all equal. Only `hetero` accepts it.
    pub speeds: Option<Vec<f64>>,
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
    /// One weight per responder, in the order of `responders`; for a code with split m > 1,
    /// m such vectors one after the other (piece-major: [`Decoding::piece`]).
    pub weights: Vec<f64>,
    /// err(F) = ‖B_Fᵀ a − 1‖₂ (split codes: √Σ_u ‖B_Fᵀ a_u − t_u‖²): zero for an exact decoding.
    pub residual: f64,
    /// Whether the decoded gradient equals the full gradient (residual below tolerance).
    pub exact: bool,
    /// Condition number of B_F (σ_max / σ_min of its non-zero singular values).
    pub condition: f64,
}

impl Decoding {
    /// Weight vectors in `weights`: the code's split m (1 for every code but comm-efficient).
    pub fn pieces(&self) -> usize {
        self.weights.len() / self.responders.len().max(1)
    }
    /// The weights of piece `u`, one per responder (piece 0 is all of them when m = 1).
    pub fn piece(&self, u: usize) -> &[f64] {
        let n = self.responders.len();
        self.weights.get(u * n..(u + 1) * n).unwrap_or(&[])
    }
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
    /// Coefficients b_ij of `worker`'s coded message, one per held partition; with a split
    /// m > 1, m per held partition (`[p·m + u]`: held partition p, piece u).
    fn coefficients(&self, worker: usize) -> &[f64];
    /// Pieces m the gradient is cut into (Ye & Abbe): a worker's message carries ⌈dim/m⌉
    /// values, piece u of the gradient being coordinates u·⌈dim/m⌉ … . 1 for every code but
    /// `comm-efficient`.
    fn split(&self) -> usize {
        1
    }
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

    /// The code matrix B (n × k; with a split m > 1, n × k·m, column j·m + u for partition j,
    /// piece u).
    fn matrix(&self) -> Array2<f64> {
        let m = self.split();
        let mut b = Array2::zeros((self.n_workers(), self.n_partitions() * m));
        for w in 0..self.n_workers() {
            for (&j, c) in self
                .assignment(w)
                .iter()
                .zip(self.coefficients(w).chunks(m))
            {
                for (u, &v) in c.iter().enumerate() {
                    b[[w, j * m + u]] = v;
                }
            }
        }
        b
    }

    /// `out = b_wᵀ G` for partial gradients `g` (k × d): what worker `w` sends. With a split
    /// m > 1 `out` has ⌈d/m⌉ values: Σ_{held j} Σ_u b_w[j, u] G_j^(u), G_j^(u) the u-th piece of
    /// row j (the last piece zero-padded).
    fn encode_into(&self, worker: usize, g: ArrayView2<f64>, mut out: ArrayViewMut1<f64>) {
        out.fill(0.0);
        let m = self.split();
        if m == 1 {
            for (&j, &c) in self
                .assignment(worker)
                .iter()
                .zip(self.coefficients(worker))
            {
                out.scaled_add(c, &g.row(j));
            }
            return;
        }
        let len = out.len();
        for (&j, c) in self
            .assignment(worker)
            .iter()
            .zip(self.coefficients(worker).chunks(m))
        {
            let row = g.row(j);
            for (u, &cu) in c.iter().enumerate() {
                let piece = row.slice(ndarray::s![
                    (u * len).min(row.len())..((u + 1) * len).min(row.len())
                ]);
                out.slice_mut(ndarray::s![..piece.len()])
                    .scaled_add(cu, &piece);
            }
        }
    }
}

/// Length of one message of a code with split `m` for a gradient of `dim` values: ⌈dim/m⌉.
pub fn piece_len(dim: usize, m: usize) -> usize {
    dim.div_ceil(m.max(1))
}

/// ĝ = the decoded gradient from the responders' `messages` (in the order of
/// `d.responders`, each of ⌈dim/m⌉ values, m = [`Decoding::pieces`]): piece u of `out`
/// (dim values) is Σ_i a_u[i] · messages[i] (truncated to the piece).
pub fn combine_into(
    d: &Decoding,
    messages: &[ndarray::ArrayView1<f64>],
    mut out: ArrayViewMut1<f64>,
) {
    out.fill(0.0);
    let m = d.pieces().max(1);
    let len = piece_len(out.len(), m);
    for u in 0..m {
        let lo = (u * len).min(out.len());
        let hi = ((u + 1) * len).min(out.len());
        let mut dst = out.slice_mut(ndarray::s![lo..hi]);
        for (msg, &a) in messages.iter().zip(d.piece(u)) {
            dst.scaled_add(a, &msg.slice(ndarray::s![..hi - lo]));
        }
    }
}

/// Build the code `kind` for `n` workers tolerating `s` stragglers (random codes drawn from `seed`).
///
/// Checks `n ≥ 1`, `s < n` and each code's own constraints, with errors that say what to change:
/// `frc` needs (s + 1) | n; `cyclic-mds` needs n − s odd (or s = 0). `uncoded` accepts any
/// valid s but always waits for all n workers (its [`GradientCode::max_stragglers`] is 0);
/// `ignore-stragglers` stops after n − s responders and is approximate by design. The seed is
/// used by `cyclic-repetition`, `hetero`, `expander` and `bgc`. The approximate codes get their defaults
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
    if kind != CodeKind::CommEfficient {
        if let Some(m) = opts.split {
            return Err(CodeError::invalid(
                kind,
                format!("--split {m} applies only to the comm-efficient code"),
            ));
        }
    }
    if kind != CodeKind::Hetero && opts.speeds.is_some() {
        return Err(CodeError::invalid(
            kind,
            "--worker-speeds applies only to the hetero code",
        ));
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
        CodeKind::CommEfficient => {
            let m = opts.split.unwrap_or(if n - s >= 2 { 2 } else { 1 });
            Box::new(CommEfficient::new(n, s, m)?)
        }
        CodeKind::Hetero => {
            let equal = vec![1.0; n];
            Box::new(Hetero::new(
                n,
                s,
                seed,
                opts.speeds.as_deref().unwrap_or(&equal),
            )?)
        }
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
///
/// With a split m > 1 (`comm-efficient`) each held partition has m coefficients, one per piece
/// (`coefs[w][p·m + u]`), and B has a column per (partition, piece): column j·m + u.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    parts: Vec<Vec<usize>>,
    coefs: Vec<Vec<f64>>,
    k: usize,
    m: usize,
    b: OnceLock<Array2<f64>>,
}

impl Layout {
    /// From per-worker partitions and coefficients (same lengths, partitions below `k`).
    fn new(k: usize, parts: Vec<Vec<usize>>, coefs: Vec<Vec<f64>>) -> Layout {
        Layout::split(k, 1, parts, coefs)
    }
    /// From per-worker partitions and m coefficients per held partition (`coefs[w][p·m + u]`).
    fn split(k: usize, m: usize, parts: Vec<Vec<usize>>, coefs: Vec<Vec<f64>>) -> Layout {
        Layout {
            parts,
            coefs,
            k,
            m,
            b: OnceLock::new(),
        }
    }
    /// The dense code matrix B (n × k·m).
    fn b(&self) -> &Array2<f64> {
        self.b.get_or_init(|| {
            let m = self.m;
            let mut b = Array2::zeros((self.parts.len(), self.k * m));
            for (w, (p, c)) in self.parts.iter().zip(&self.coefs).enumerate() {
                for (&j, cj) in p.iter().zip(c.chunks(m)) {
                    for (u, &v) in cj.iter().enumerate() {
                        b[[w, j * m + u]] += v;
                    }
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
#[path = "tests/hetero.rs"]
mod hetero_tests;
#[cfg(test)]
mod tests;
