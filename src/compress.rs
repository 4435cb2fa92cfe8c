//! Compression of coded messages (issue 20 §3; GUIDE §3 "Compression with coding"): a worker
//! compresses the coded vector it sends, rank 0 decompresses every message before decoding.
//! Decoding is linear, so the decoded gradient is ĝ = Σ_i a_i C(c_i). With the tree decode the
//! sender to rank 0 is a group leader, which compresses its group's combination
//! (`comm::group`).
//!
//! Compressors (`--compress`):
//! - `none`: the message as it is.
//! - `qsgd:LEVELS[:BUCKET]` (Alistarh et al. 2017, with their bucketing): the vector is cut into
//!   buckets of BUCKET values (default 512), and in a bucket b, C(v)_i = ‖v_b‖₂ · sign(v_i) ·
//!   ξ_i / s with s = LEVELS and ξ_i ∈ {⌊s|v_i|/‖v_b‖⌋, ⌊s|v_i|/‖v_b‖⌋ + 1}, rounding up with
//!   probability equal to the remainder: E[C(v)] = v (unbiased), E‖C(v) − v‖² ≤
//!   min(B/s², √B/s)·‖v‖² with B = BUCKET (without buckets, B would be the whole length and the
//!   variance √len/s‖v‖² unusable for long messages). The random draws are counter-based (a hash
//!   of seed, iteration, rank, chunk and coordinate), so a run is reproducible and needs no
//!   generator state.
//! - `topk:FRACTION`: the k = ⌈FRACTION·len⌉ entries of largest magnitude (ties to the lower
//!   index), zeros elsewhere. Biased.
//! - `sign`: C(v)_i = (‖v‖₁/len) · sign(v_i) (scaled sign, EF-signSGD, Karimireddy et al. 2019;
//!   0 counts as +). Biased.
//! - `lowrank:RANK`: rank-r factors of every weight matrix (the MLP's layers, [`Matrices`]),
//!   PowerSGD-style (Vogels et al. 2019): one step of power iteration per message, P = M·Q,
//!   P orthonormalized (Gram-Schmidt), Q ← Mᵀ·P, and M ≈ P·Qᵀ, r = min(RANK, rows, columns);
//!   the biases and anything after the last matrix are sent as they are. Q is kept by the
//!   sender between messages (a warm start per worker and chunk, [`Compressor::compress_with`];
//!   the first one is seeded from the run's seed, rank and chunk). It is **not** PowerSGD's
//!   all-reduce: each worker factors its own coded message and rank 0 reconstructs each one
//!   before decoding, so P and Q are never averaged across workers. Biased. The GLMs
//!   (logistic, linear, softmax) have no weight matrices: the configuration refuses it there.
//!
//! Error feedback ([`ErrorFeedback`], `--error-feedback`): the sender keeps the residual e of
//! what compression dropped and sends C(c + e), then e ← c + e − C(c + e). It is stable only
//! for a contraction, E‖C(x) − x‖² < ‖x‖²: top-k and sign always are; QSGD only when its
//! variance bound ω = min(B/s², √B/s) is below 1 ([`Compressor::variance_bound`]; measured:
//! qsgd:4 with buckets of 512, ω = 5.7, diverged within 100 iterations), so the configuration
//! refuses feedback on a QSGD with ω ≥ 1. The residual lives
//! with the worker's coded message (one per chunk) and is updated only when a message is sent:
//! an iteration the worker skips (abandoned, superseded, failed) leaves it as it is, so the next
//! message it does send carries it. A message that is sent but arrives after its deadline is
//! dropped by rank 0 with what it carried.
//!
//! Wire format: a message is still f64 values, but fewer. Integers (levels, indices, sign bits)
//! are packed b bits at a time into the low 62 bits of a word read as an f64 bit pattern; bits 62
//! and 63 stay 0, so every word is a finite non-negative f64 and rank 0's check of non-finite
//! payloads still holds. Every length is fixed by the compressor and the vector length
//! ([`Compressor::wire_len`]), so the collector checks it like any other.
//!
//! | compressor | values on the wire for len values |
//! |---|---|
//! | none | len |
//! | qsgd:s:B | ⌈len/B⌉ (bucket norms) + ⌈len / ⌊62/b⌋⌉, b = ⌈log₂(2s + 1)⌉ |
//! | topk:f | k values + ⌈k / ⌊62/b⌋⌉ index words, b = ⌈log₂ len⌉ |
//! | sign | 1 (scale) + ⌈len / 62⌉ |
//! | lowrank:r | Σ over matrices (units × inputs) of r·(units + inputs) + units, + the rest |
//!
//! No I/O, no MPI. Not implemented: sparse-support messages (issue 20 §2).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of compressor settings and of compressed messages.
#[derive(Debug, Error, PartialEq)]
pub enum CompressError {
    /// A `--compress` value that does not parse (clap and the config file name the flag).
    #[error("{reason}")]
    Spec { spec: String, reason: String },
    #[error("malformed {compressor} message: {reason}")]
    Malformed { compressor: String, reason: String },
    #[error("--compress {compressor} is not available here: {reason}")]
    Unavailable { compressor: String, reason: String },
}

/// Most QSGD levels (so that a level fits 21 bits).
pub const MAX_LEVELS: u32 = 1 << 20;
/// QSGD's bucket size when the spec gives none (the QSGD paper's experiments use 512).
pub const DEFAULT_BUCKET: usize = 512;
/// Bits of a wire word that carry data (62: bits 62 and 63 stay 0, the word is a finite f64).
const WORD_BITS: u32 = 62;

/// Most weight matrices `lowrank` factors (layers of a network).
pub const MAX_MATRICES: usize = 16;

/// The weight matrices `lowrank` factors in a vector: consecutive blocks from its start, each
/// `units` rows of `inputs` weights followed by the unit's bias (a model's parameter blocks);
/// values after the last block are sent as they are. A small value, so the compressor stays
/// `Copy`; empty until the job sets it from its model ([`Compressor::with_matrices`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Matrices {
    count: usize,
    /// (units, inputs) of each block (u32 to keep the value small).
    shapes: [(u32, u32); MAX_MATRICES],
}

impl Matrices {
    fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.shapes[..self.count]
            .iter()
            .map(|&(u, i)| (u as usize, i as usize))
    }
    /// Values the blocks cover.
    fn covered(&self) -> usize {
        self.iter().map(|(u, i)| u * (i + 1)).sum()
    }
}

/// A compressor of coded messages (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Compressor {
    #[default]
    None,
    Qsgd {
        levels: u32,
        bucket: usize,
    },
    TopK {
        fraction: f64,
    },
    Sign,
    LowRank {
        rank: usize,
        /// Set by the job from its model; empty: unavailable.
        matrices: Matrices,
    },
}

/// What makes one message's random draws distinct (QSGD): the run's seed, the iteration, the
/// sender's rank and the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoiseKey {
    pub seed: u64,
    pub iteration: u64,
    pub rank: usize,
    pub part: usize,
}

/// SplitMix64's finalizer: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl NoiseKey {
    fn stream(&self) -> u64 {
        mix(self.seed ^ mix(self.iteration ^ mix(((self.rank as u64) << 32) ^ self.part as u64)))
    }
}

/// Uniform in [0, 1) for coordinate `i` of the message with stream `s`.
fn uniform(s: u64, i: usize) -> f64 {
    (mix(s ^ mix(i as u64)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Bits for integers 0..count (at least 1).
fn bits_for(count: u64) -> u32 {
    (64 - count.saturating_sub(1).leading_zeros()).max(1)
}

/// Words holding `count` integers of `bits` bits.
fn packed_words(count: usize, bits: u32) -> usize {
    count.div_ceil((WORD_BITS / bits) as usize)
}

/// Pack `values` (each below 2^bits) into `out`.
fn pack(values: impl Iterator<Item = u64>, bits: u32, out: &mut [f64]) {
    let per = (WORD_BITS / bits) as usize;
    out.fill(0.0);
    let mut word = 0u64;
    let mut at = 0;
    for (i, v) in values.enumerate() {
        word |= v << ((i % per) as u32 * bits);
        if i % per == per - 1 {
            out[at] = f64::from_bits(word);
            at += 1;
            word = 0;
        }
    }
    if word != 0 {
        out[at] = f64::from_bits(word);
    }
}

/// The `count` integers of `bits` bits packed in `words`, each handed to `f(i, value)`; an
/// error when a word uses bits 62 or 63.
fn unpack(
    words: &[f64],
    bits: u32,
    count: usize,
    mut f: impl FnMut(usize, u64) -> Result<(), String>,
) -> Result<(), String> {
    let per = (WORD_BITS / bits) as usize;
    let mask = (1u64 << bits) - 1;
    for (w, word) in words.iter().enumerate() {
        let word = word.to_bits();
        if word >> WORD_BITS != 0 {
            return Err(format!("word {w} has its top bits set"));
        }
        for j in 0..per {
            let i = w * per + j;
            if i >= count {
                break;
            }
            f(i, (word >> (j as u32 * bits)) & mask)?;
        }
    }
    Ok(())
}

impl std::fmt::Display for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compressor::None => f.write_str("none"),
            Compressor::Qsgd { levels, bucket } if *bucket == DEFAULT_BUCKET => {
                write!(f, "qsgd:{levels}")
            }
            Compressor::Qsgd { levels, bucket } => write!(f, "qsgd:{levels}:{bucket}"),
            Compressor::TopK { fraction } => write!(f, "topk:{fraction}"),
            Compressor::Sign => f.write_str("sign"),
            Compressor::LowRank { rank, .. } => write!(f, "lowrank:{rank}"),
        }
    }
}

impl std::str::FromStr for Compressor {
    type Err = CompressError;
    fn from_str(text: &str) -> Result<Self, CompressError> {
        let spec = text.trim();
        let err = |reason: String| CompressError::Spec {
            spec: spec.to_string(),
            reason,
        };
        let (name, arg) = match spec.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        let needs = |what: &str| err(format!("{name} needs {what} ({name}:{what})"));
        match (name, arg) {
            ("none", None) => Ok(Compressor::None),
            ("sign", None) => Ok(Compressor::Sign),
            ("qsgd", Some(a)) => {
                let (l, b) = match a.split_once(':') {
                    Some((l, b)) => (l, Some(b)),
                    None => (a, None),
                };
                let levels = match l.parse::<u32>() {
                    Ok(v) if (1..=MAX_LEVELS).contains(&v) => v,
                    _ => {
                        return Err(err(format!(
                            "the number of levels must be an integer from 1 to {MAX_LEVELS}"
                        )))
                    }
                };
                let bucket = match b.map(str::parse::<usize>) {
                    None => DEFAULT_BUCKET,
                    Some(Ok(v)) if v >= 1 => v,
                    Some(_) => {
                        return Err(err(
                            "the bucket size (qsgd:LEVELS:BUCKET) must be an integer of at least 1"
                                .into(),
                        ))
                    }
                };
                Ok(Compressor::Qsgd { levels, bucket })
            }
            ("topk", Some(a)) => match a.parse::<f64>() {
                Ok(fraction) if fraction > 0.0 && fraction <= 1.0 => {
                    Ok(Compressor::TopK { fraction })
                }
                _ => Err(err(
                    "the fraction of entries kept must be a number in (0, 1]".into(),
                )),
            },
            ("lowrank", Some(a)) => match a.parse::<usize>() {
                Ok(rank) if rank >= 1 => Ok(Compressor::LowRank {
                    rank,
                    matrices: Matrices::default(),
                }),
                _ => Err(err("the rank must be an integer of at least 1".into())),
            },
            ("qsgd", None) => Err(needs("LEVELS")),
            ("topk", None) => Err(needs("FRACTION")),
            ("lowrank", None) => Err(needs("RANK")),
            ("none" | "sign", Some(_)) => Err(err(format!("{name} takes no argument"))),
            _ => Err(err(
                "unknown compressor (expected none, qsgd:LEVELS, topk:FRACTION, sign or lowrank:RANK)"
                    .into(),
            )),
        }
    }
}

impl Serialize for Compressor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Compressor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Compressor {
    /// Whether E[C(v)] ≠ v (top-k, sign, low-rank): error feedback corrects the bias.
    pub fn is_biased(&self) -> bool {
        matches!(
            self,
            Compressor::TopK { .. } | Compressor::Sign | Compressor::LowRank { .. }
        )
    }

    /// QSGD's bound ω on E‖C(x) − x‖² ≤ ω‖x‖² for vectors of any length: min(B/s², √B/s) with
    /// B the bucket size and s the levels. None for the other compressors. Error feedback on an
    /// unbiased compressor is stable only when ω < 1 (then C is a contraction); top-k and sign
    /// always are (ω ≤ 1 − k/len and 1 − ‖x‖₁²/(len‖x‖²)).
    pub fn variance_bound(&self) -> Option<f64> {
        match *self {
            Compressor::Qsgd { levels, bucket } => {
                let (b, s) = (bucket as f64, f64::from(levels));
                Some((b / (s * s)).min(b.sqrt() / s))
            }
            _ => None,
        }
    }

    /// Whether messages are compressed at all.
    pub fn is_none(&self) -> bool {
        *self == Compressor::None
    }

    fn unavailable(&self) -> CompressError {
        CompressError::Unavailable {
            compressor: self.to_string(),
            reason: "low-rank compression applies to the matrix parameters of neural-network \
                     models, and none were given"
                .into(),
        }
    }

    /// `lowrank` factoring the blocks `shapes` ((units, inputs) each, consecutive from the
    /// vector's start); the other compressors are returned as they are. More than
    /// [`MAX_MATRICES`] blocks, or none, is an error.
    pub fn with_matrices(self, shapes: &[(usize, usize)]) -> Result<Self, CompressError> {
        let Compressor::LowRank { rank, .. } = self else {
            return Ok(self);
        };
        if shapes.is_empty() || shapes.len() > MAX_MATRICES {
            return Err(CompressError::Unavailable {
                compressor: self.to_string(),
                reason: format!(
                    "the model has {} weight matrices; low-rank compression takes 1 to {MAX_MATRICES}",
                    shapes.len()
                ),
            });
        }
        let mut matrices = Matrices {
            count: shapes.len(),
            ..Matrices::default()
        };
        for (dst, &(u, i)) in matrices.shapes.iter_mut().zip(shapes) {
            *dst = match (u32::try_from(u), u32::try_from(i)) {
                (Ok(u), Ok(i)) => (u, i),
                _ => {
                    return Err(CompressError::Unavailable {
                        compressor: self.to_string(),
                        reason: format!("a {u} × {i} weight matrix is too large"),
                    })
                }
            };
        }
        Ok(Compressor::LowRank { rank, matrices })
    }

    /// Low-rank's (rank, matrices) when it has matrices and they fit `len` values.
    fn factors(&self, len: usize) -> Option<(usize, &Matrices)> {
        match self {
            Compressor::LowRank { rank, matrices }
                if matrices.count > 0 && matrices.covered() <= len =>
            {
                Some((*rank, matrices))
            }
            _ => None,
        }
    }

    /// Entries top-k keeps of `len`.
    fn kept(fraction: f64, len: usize) -> usize {
        ((fraction * len as f64).ceil() as usize).clamp(len.min(1), len)
    }

    /// Values on the wire for a vector of `len` values (see the module docs' table).
    pub fn wire_len(&self, len: usize) -> usize {
        match *self {
            Compressor::LowRank { .. } => match self.factors(len) {
                Some((rank, m)) => {
                    let factored: usize = m
                        .iter()
                        .map(|(u, i)| rank.min(u).min(i) * (u + i) + u)
                        .sum();
                    factored + len - m.covered()
                }
                None => len,
            },
            Compressor::None => len,
            Compressor::Qsgd { levels, bucket } => {
                len.div_ceil(bucket) + packed_words(len, bits_for(2 * u64::from(levels) + 1))
            }
            Compressor::TopK { fraction } => {
                let k = Self::kept(fraction, len);
                k + packed_words(k, bits_for(len as u64))
            }
            Compressor::Sign => 1 + packed_words(len, 1),
        }
    }

    /// Write C(`v`) into `wire` ([`Compressor::wire_len`] of `v.len()` values). `key` seeds the
    /// random rounding of QSGD (and low-rank's cold start: see [`Compressor::compress_with`]).
    pub fn compress(
        &self,
        v: &[f64],
        key: NoiseKey,
        wire: &mut [f64],
    ) -> Result<(), CompressError> {
        self.compress_with(v, key, wire, &mut Vec::new())
    }

    /// [`Compressor::compress`] with the sender's state `warm`: low-rank's Q of every matrix,
    /// used as the power iteration's start and replaced by the new Q (empty or of another size:
    /// a cold start drawn from the key's seed, rank and chunk). The other compressors leave it.
    pub fn compress_with(
        &self,
        v: &[f64],
        key: NoiseKey,
        wire: &mut [f64],
        warm: &mut Vec<f64>,
    ) -> Result<(), CompressError> {
        let len = v.len();
        match *self {
            Compressor::None => wire.copy_from_slice(v),
            Compressor::LowRank { .. } => match self.factors(len) {
                Some((rank, m)) => low_rank(rank, m, v, key, wire, warm),
                None => return Err(self.unavailable()),
            },
            Compressor::Qsgd { levels, bucket } => {
                let s = f64::from(levels);
                let buckets = len.div_ceil(bucket);
                let (norms, packed) = wire.split_at_mut(buckets);
                for (nb, b) in norms.iter_mut().zip(v.chunks(bucket)) {
                    *nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                }
                let stream = key.stream();
                let codes = v.iter().enumerate().map(|(i, &x)| {
                    let norm = norms[i / bucket];
                    if norm == 0.0 {
                        return u64::from(levels);
                    }
                    let r = (x.abs() / norm * s).min(s);
                    let low = r.floor();
                    let level = (low + f64::from(u8::from(uniform(stream, i) < r - low))).min(s);
                    // code = s + sign · level, in 0..=2s
                    if x < 0.0 {
                        u64::from(levels) - level as u64
                    } else {
                        u64::from(levels) + level as u64
                    }
                });
                pack(codes, bits_for(2 * u64::from(levels) + 1), packed);
            }
            Compressor::TopK { fraction } => {
                let k = Self::kept(fraction, len);
                let mut idx: Vec<usize> = (0..len).collect();
                let by_size =
                    |a: &usize, b: &usize| v[*b].abs().total_cmp(&v[*a].abs()).then(a.cmp(b));
                if k < len {
                    idx.select_nth_unstable_by(k - 1, by_size);
                }
                idx.truncate(k);
                idx.sort_unstable();
                for (dst, &i) in wire.iter_mut().zip(&idx) {
                    *dst = v[i];
                }
                pack(
                    idx.iter().map(|&i| i as u64),
                    bits_for(len as u64),
                    &mut wire[k..],
                );
            }
            Compressor::Sign => {
                wire[0] = v.iter().map(|x| x.abs()).sum::<f64>() / len.max(1) as f64;
                pack(v.iter().map(|&x| u64::from(x < 0.0)), 1, &mut wire[1..]);
            }
        }
        Ok(())
    }

    fn malformed(&self, reason: String) -> CompressError {
        CompressError::Malformed {
            compressor: self.to_string(),
            reason,
        }
    }

    /// Write the vector `wire` stands for into `out` (`len` values). A message that cannot
    /// come from [`Compressor::compress`] (wrong length, an index out of range, a level above
    /// the range, a negative or non-finite scale) is an error, never a panic.
    pub fn decompress(&self, wire: &[f64], out: &mut [f64]) -> Result<(), CompressError> {
        if matches!(self, Compressor::TopK { .. }) {
            out.fill(0.0);
        }
        self.each(wire, out.len(), |i, v| out[i] = v)
    }

    /// Whether `wire` is a well-formed message for a vector of `len` values (what
    /// [`Compressor::decompress`] checks, without writing anything).
    pub fn validate(&self, wire: &[f64], len: usize) -> Result<(), CompressError> {
        self.each(wire, len, |_, _| {})
    }

    /// Hand every value `wire` stands for to `put(index, value)` (top-k: only the kept ones),
    /// after checking the message (see [`Compressor::decompress`]).
    fn each(
        &self,
        wire: &[f64],
        len: usize,
        mut put: impl FnMut(usize, f64),
    ) -> Result<(), CompressError> {
        if wire.len() != self.wire_len(len) {
            return Err(self.malformed(format!(
                "{} values, expected {} for a vector of {len}",
                wire.len(),
                self.wire_len(len)
            )));
        }
        let scale_ok = |s: f64| s.is_finite() && s >= 0.0;
        let unpacked = match *self {
            Compressor::None => {
                wire.iter().enumerate().for_each(|(i, &v)| put(i, v));
                Ok(())
            }
            Compressor::LowRank { .. } => match self.factors(len) {
                Some((rank, m)) => {
                    low_rank_each(rank, m, wire, put);
                    Ok(())
                }
                None => return Err(self.unavailable()),
            },
            Compressor::Qsgd { levels, bucket } => {
                let (norms, packed) = wire.split_at(len.div_ceil(bucket));
                if let Some(bad) = norms.iter().find(|&&x| !scale_ok(x)) {
                    return Err(self.malformed(format!("bucket norm {bad}")));
                }
                let s = u64::from(levels);
                unpack(packed, bits_for(2 * s + 1), len, |i, code| {
                    if code > 2 * s {
                        return Err(format!("level code {code} above {}", 2 * s));
                    }
                    put(
                        i,
                        (code as f64 - s as f64) * norms[i / bucket] / f64::from(levels),
                    );
                    Ok(())
                })
            }
            Compressor::TopK { fraction } => {
                let k = Self::kept(fraction, len);
                let values = &wire[..k];
                unpack(&wire[k..], bits_for(len as u64), k, |i, at| {
                    if at as usize >= len {
                        return Err(format!("index {at} of a vector of {len}"));
                    }
                    put(at as usize, values[i]);
                    Ok(())
                })
            }
            Compressor::Sign => {
                let scale = wire[0];
                if !scale_ok(scale) {
                    return Err(self.malformed(format!("scale {scale}")));
                }
                unpack(&wire[1..], 1, len, |i, bit| {
                    put(i, if bit == 1 { -scale } else { scale });
                    Ok(())
                })
            }
        };
        unpacked.map_err(|r| self.malformed(r))
    }
}

/// The error-feedback state of one coded message stream (one worker, one chunk): the residual
/// of what compression has dropped so far, added to the next message sent.
#[derive(Debug, Clone, Default)]
pub struct ErrorFeedback {
    residual: Vec<f64>,
    /// The compressor's own state (low-rank's warm start).
    warm: Vec<f64>,
    corrected: Vec<f64>,
    sent: Vec<f64>,
}

impl ErrorFeedback {
    /// The residual e (empty before the first message).
    pub fn residual(&self) -> &[f64] {
        &self.residual
    }

    /// Write C(`v` + e) into `wire` and set e ← v + e − C(v + e).
    pub fn compress(
        &mut self,
        c: &Compressor,
        v: &[f64],
        key: NoiseKey,
        wire: &mut [f64],
    ) -> Result<(), CompressError> {
        let len = v.len();
        self.residual.resize(len, 0.0);
        self.corrected.clear();
        self.corrected
            .extend(v.iter().zip(&self.residual).map(|(a, e)| a + e));
        c.compress_with(&self.corrected, key, wire, &mut self.warm)?;
        self.sent.resize(len, 0.0);
        c.decompress(wire, &mut self.sent)?;
        for ((e, x), y) in self
            .residual
            .iter_mut()
            .zip(&self.corrected)
            .zip(&self.sent)
        {
            *e = x - y;
        }
        Ok(())
    }
}

/// Low-rank compression of `v` laid out as `m` into `wire` (see the module docs): per matrix
/// M (units × inputs, row stride inputs + 1), P = M·Q orthonormalized, then Q = Mᵀ·P; the wire
/// holds P (units × r), Q (inputs × r), the biases; then the rest of `v`. `warm` holds every
/// matrix's Q (inputs × r, row-major) in order.
fn low_rank(
    rank: usize,
    m: &Matrices,
    v: &[f64],
    key: NoiseKey,
    wire: &mut [f64],
    warm: &mut Vec<f64>,
) {
    let q_len: usize = m.iter().map(|(u, i)| rank.min(u).min(i) * i).sum();
    if warm.len() != q_len {
        let s = NoiseKey {
            iteration: 0,
            ..key
        }
        .stream();
        warm.clear();
        warm.extend((0..q_len).map(|i| uniform(s, i) - 0.5));
    }
    let (mut at_v, mut at_w, mut at_q) = (0, 0, 0);
    for (units, inputs) in m.iter() {
        let r = rank.min(units).min(inputs);
        let stride = inputs + 1;
        let block = &v[at_v..at_v + units * stride];
        let q = &mut warm[at_q..at_q + inputs * r];
        if q.iter().all(|&x| x == 0.0) {
            // A zero matrix left a zero Q: start again from the seeded draw.
            let s = NoiseKey {
                iteration: 0,
                ..key
            }
            .stream();
            q.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = uniform(s, at_q + i) - 0.5);
        }
        let (p, rest) = wire[at_w..].split_at_mut(units * r);
        let (q_out, rest) = rest.split_at_mut(inputs * r);
        p.fill(0.0);
        for u in 0..units {
            let row = &block[u * stride..u * stride + inputs];
            let pu = &mut p[u * r..(u + 1) * r];
            for (i, &x) in row.iter().enumerate() {
                for (pk, qk) in pu.iter_mut().zip(&q[i * r..(i + 1) * r]) {
                    *pk += x * qk;
                }
            }
        }
        orthonormalize_columns(p, r);
        q_out.fill(0.0);
        for u in 0..units {
            let row = &block[u * stride..u * stride + inputs];
            let pu = &p[u * r..(u + 1) * r];
            for (i, &x) in row.iter().enumerate() {
                for (qk, pk) in q_out[i * r..(i + 1) * r].iter_mut().zip(pu) {
                    *qk += x * pk;
                }
            }
        }
        q.copy_from_slice(q_out);
        for (b, u) in rest[..units].iter_mut().zip(0..units) {
            *b = block[u * stride + inputs];
        }
        at_v += units * stride;
        at_w += r * (units + inputs) + units;
        at_q += inputs * r;
    }
    wire[at_w..].copy_from_slice(&v[at_v..]);
}

/// Gram-Schmidt (two passes) on the `r` columns of the row-major `rows × r` matrix `p`; a column
/// left with less than 1e-10 of its norm (in the span of the earlier ones: a matrix of rank
/// below r) becomes zero, so it adds nothing to P·Qᵀ.
fn orthonormalize_columns(p: &mut [f64], r: usize) {
    let col_norm = |p: &[f64], k: usize| p.chunks(r).map(|row| row[k] * row[k]).sum::<f64>().sqrt();
    for k in 0..r {
        let before = col_norm(p, k);
        for _ in 0..2 {
            for j in 0..k {
                let dot: f64 = p.chunks(r).map(|row| row[k] * row[j]).sum();
                p.chunks_mut(r).for_each(|row| row[k] -= dot * row[j]);
            }
        }
        let norm = col_norm(p, k);
        let scale = if norm > 1e-10 * before && norm > 0.0 {
            1.0 / norm
        } else {
            0.0
        };
        p.chunks_mut(r).for_each(|row| row[k] *= scale);
    }
}

/// Every value of the low-rank message `wire` for layout `m`, to `put(index, value)`: P·Qᵀ
/// for each matrix's weights, its biases, then the rest.
fn low_rank_each(rank: usize, m: &Matrices, wire: &[f64], mut put: impl FnMut(usize, f64)) {
    let (mut at_v, mut at_w) = (0, 0);
    for (units, inputs) in m.iter() {
        let r = rank.min(units).min(inputs);
        let (p, rest) = wire[at_w..].split_at(units * r);
        let (q, biases) = rest.split_at(inputs * r);
        for u in 0..units {
            let pu = &p[u * r..(u + 1) * r];
            for i in 0..inputs {
                let qi = &q[i * r..(i + 1) * r];
                put(
                    at_v + u * (inputs + 1) + i,
                    pu.iter().zip(qi).map(|(a, b)| a * b).sum(),
                );
            }
            put(at_v + u * (inputs + 1) + inputs, biases[u]);
        }
        at_v += units * (inputs + 1);
        at_w += r * (units + inputs) + units;
    }
    for (j, &x) in wire[at_w..].iter().enumerate() {
        put(at_v + j, x);
    }
}

#[cfg(test)]
mod tests;
