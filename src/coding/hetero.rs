//! Heterogeneity-aware gradient code (`hetero`, issue 22 §2b): more partitions on faster workers,
//! exact decoding from any n − s workers.
//!
//! Following Wang, Guo et al., "Heterogeneity-aware gradient coding for straggler tolerance"
//! (ICDCS 2019), the data is cut into k = [`PARTS_PER_WORKER`]·n partitions, each held by s + 1
//! distinct workers, and worker i holds L_i ≈ k(s + 1)·v_i/Σv of them for speeds v (`--worker-speeds`), so
//! that the expected finish times L_i/v_i are equal (loads capped at k, rounded by largest
//! remainder, at least one each). Placement is wrap-around: the sequence 0, 1, …, k − 1 repeated
//! s + 1 times is cut into consecutive runs of L_i; since L_i ≤ k no worker gets a partition twice.
//!
//! Coefficients (the construction of Halbawi et al. 2018 and Wang et al. on an arbitrary support
//! with s + 1 holders per partition): draw A (n × (n − s)) Gaussian from the seed, so any n − s
//! rows are independent (almost surely). Column j of B is A·m_j with m_j spanning the null space
//! of A restricted to the n − s − 1 workers not holding j, so it vanishes off the support. Every
//! row of B lies in the row space of M = [m_j], and any n − s rows B_F = A_F·M span it; scaling
//! each m_j so that xᵀm_j = 1 for a drawn x puts 1 in that row space, hence every set of n − s
//! responders decodes exactly (least squares, `decode.rs`). A random-coefficient code on the
//! weighted support would not: n − s random rows of length k > n − s almost never span 1.
//!
//! Conditioning check: after the draw, every straggler set of exactly n − s workers (a seeded
//! sample of [`CHECKED_SETS`] when there are more) is decoded; a draw with a residual above
//! tolerance or a condition number above [`MAX_CONDITION`] is redrawn (up to [`DRAWS`] times).
//! Not implemented: n above [`MAX_WORKERS`] (dense SVDs per partition), speeds that change
//! during a run.

use ndarray::{Array1, Array2, Axis};
use ndarray_linalg::SVD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{check_n_s, decode, CodeError, CodeKind, GradientCode, Layout};

/// Partitions per worker: k = this · n (finer partitions balance the loads more closely).
pub const PARTS_PER_WORKER: usize = 8;
/// Largest n the dense construction accepts.
pub const MAX_WORKERS: usize = 64;
/// Straggler sets the conditioning check decodes at most.
pub const CHECKED_SETS: usize = 2_000;
/// Largest condition number of B_F a draw may have on a checked set.
pub const MAX_CONDITION: f64 = 1e8;
/// Draws tried before giving up.
pub const DRAWS: u64 = 10;

/// The heterogeneity-aware code for per-worker speeds.
#[derive(Debug, Clone)]
pub struct Hetero {
    layout: Layout,
    s: usize,
    speeds: Vec<f64>,
    worst_condition: f64,
}

impl Hetero {
    /// The code for `speeds.len()` = n workers tolerating `s` stragglers.
    pub fn new(n: usize, s: usize, seed: u64, speeds: &[f64]) -> Result<Self, CodeError> {
        let kind = CodeKind::Hetero;
        check_n_s(kind, n, s)?;
        check_speeds(n, speeds)?;
        if n > MAX_WORKERS {
            return Err(CodeError::invalid(
                kind,
                format!("n = {n} workers: the dense construction takes at most {MAX_WORKERS}"),
            ));
        }
        let k = PARTS_PER_WORKER * n;
        let parts = wrap_around(k, s, &loads(k, s, speeds));
        let mut last = String::new();
        for draw in 0..DRAWS {
            let stream = seed.wrapping_add(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            match coefficients(n, s, k, &parts, stream) {
                Ok(coefs) => {
                    let layout = Layout::new(k, parts.clone(), coefs);
                    let worst = worst_condition(&layout, n, s, stream)?;
                    if worst.is_finite() && worst <= MAX_CONDITION {
                        return Ok(Hetero {
                            layout,
                            s,
                            speeds: speeds.to_vec(),
                            worst_condition: worst,
                        });
                    }
                    last = format!("worst condition number {worst:.3e}");
                }
                Err(e) => last = e,
            }
        }
        Err(CodeError::invalid(
            kind,
            format!(
                "no well-conditioned draw in {DRAWS} from seed {seed} ({last}); try another --seed"
            ),
        ))
    }
    /// The speeds the loads were balanced for.
    pub fn speeds(&self) -> &[f64] {
        &self.speeds
    }
    /// The largest condition number of B_F over the checked straggler sets.
    pub fn worst_condition(&self) -> f64 {
        self.worst_condition
    }
}

least_squares_impl!(
    Hetero,
    CodeKind::Hetero,
    fn summary(&self) -> Option<String> {
        let loads: Vec<String> = (0..self.layout.n())
            .map(|w| self.layout.assignment(w).len().to_string())
            .collect();
        Some(format!(
            "speeds {}; partitions per worker {} of k = {}; worst cond(B_F) over checked sets {:.3e}",
            self.speeds
                .iter()
                .map(|v| format!("{v}"))
                .collect::<Vec<_>>()
                .join(","),
            loads.join(","),
            self.layout.k(),
            self.worst_condition
        ))
    }
);

/// n speeds, each finite and > 0.
fn check_speeds(n: usize, speeds: &[f64]) -> Result<(), CodeError> {
    let kind = CodeKind::Hetero;
    if speeds.len() != n {
        return Err(CodeError::invalid(
            kind,
            format!(
                "--worker-speeds gives {} speeds for n = {n} workers; give one per worker",
                speeds.len()
            ),
        ));
    }
    if let Some((i, v)) = speeds
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(CodeError::invalid(
            kind,
            format!("speed {v} of worker {} must be a number > 0", i + 1),
        ));
    }
    Ok(())
}

/// Partitions per worker: k(s + 1)·v_i/Σv, water-filled under the cap k, rounded by largest
/// remainder, at least 1 each (taken from the most loaded). Sums to k(s + 1).
pub fn loads(k: usize, s: usize, speeds: &[f64]) -> Vec<usize> {
    let n = speeds.len();
    let total = k * (s + 1);
    let mut target = vec![0.0; n];
    let mut capped = vec![false; n];
    loop {
        let free: f64 = (0..n).filter(|&i| !capped[i]).map(|i| speeds[i]).sum();
        let left = total as f64 - capped.iter().filter(|&&c| c).count() as f64 * k as f64;
        let mut changed = false;
        for i in 0..n {
            target[i] = if capped[i] {
                k as f64
            } else {
                left * speeds[i] / free
            };
            if !capped[i] && target[i] > k as f64 {
                capped[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut l: Vec<usize> = target.iter().map(|t| (t.floor() as usize).min(k)).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        (target[b] - target[b].floor()).total_cmp(&(target[a] - target[a].floor()))
    });
    let mut short = total.saturating_sub(l.iter().sum());
    for &i in order.iter().cycle().take(n * (s + 2)) {
        if short == 0 {
            break;
        }
        if l[i] < k {
            l[i] += 1;
            short -= 1;
        }
    }
    for i in 0..n {
        if l[i] == 0 {
            if let Some(j) = (0..n).max_by_key(|&j| l[j]).filter(|&j| l[j] > 1) {
                l[j] -= 1;
                l[i] = 1;
            }
        }
    }
    l
}

/// Worker i takes the next `loads[i]` entries of 0, 1, …, k − 1 repeated s + 1 times.
fn wrap_around(k: usize, s: usize, loads: &[usize]) -> Vec<Vec<usize>> {
    let mut pos = 0usize;
    let mut parts = Vec::with_capacity(loads.len());
    for &l in loads {
        let mut p: Vec<usize> = (pos..pos + l).map(|q| q % k).collect();
        p.sort_unstable();
        parts.push(p);
        pos += l;
    }
    debug_assert_eq!(pos, k * (s + 1));
    parts
}

/// The coefficients of every worker on its partitions (see the module docs), or why the draw
/// from `stream` failed.
fn coefficients(
    n: usize,
    s: usize,
    k: usize,
    parts: &[Vec<usize>],
    stream: u64,
) -> Result<Vec<Vec<f64>>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(stream);
    let r = n - s;
    let a = Array2::from_shape_fn((n, r), |_| StandardNormal.sample(&mut rng));
    let x: Array1<f64> = Array1::from_shape_fn(r, |_| rng.gen_range(0.5..1.5));
    let mut holders = vec![Vec::new(); k];
    for (w, p) in parts.iter().enumerate() {
        for &j in p {
            holders[j].push(w);
        }
    }
    let mut b = Array2::<f64>::zeros((n, k));
    for (j, h) in holders.iter().enumerate() {
        let others: Vec<usize> = (0..n).filter(|w| !h.contains(w)).collect();
        let m: Array1<f64> = if others.is_empty() {
            Array1::ones(r)
        } else {
            let sub = a.select(Axis(0), &others);
            let (_, _, vt) = sub
                .svd(false, true)
                .map_err(|e| format!("SVD failed for partition {j}: {e}"))?;
            let vt = vt.ok_or("SVD returned no right singular vectors")?;
            vt.row(r - 1).to_owned()
        };
        let scale = x.dot(&m);
        if scale.abs() < 1e-6 * m.dot(&m).sqrt() {
            return Err(format!("partition {j}: xᵀm_j is nearly 0"));
        }
        let col = a.dot(&m) / scale;
        for &w in h {
            b[[w, j]] = col[w];
        }
    }
    Ok(parts
        .iter()
        .enumerate()
        .map(|(w, p)| p.iter().map(|&j| b[[w, j]]).collect())
        .collect())
}

/// The largest condition number of B_F over the checked straggler sets of n − s workers, or
/// infinity when one of them does not decode exactly.
fn worst_condition(layout: &Layout, n: usize, s: usize, stream: u64) -> Result<f64, CodeError> {
    let mut worst: f64 = 0.0;
    for f in checked_sets(n, n - s, stream) {
        let d = decode::least_squares_decode(layout.b().view(), &f)?;
        if !d.exact {
            return Ok(f64::INFINITY);
        }
        worst = worst.max(d.condition);
    }
    Ok(worst)
}

/// Every sorted subset of size r of 0..n when there are at most [`CHECKED_SETS`], else that many
/// seeded random ones.
pub fn checked_sets(n: usize, r: usize, stream: u64) -> Vec<Vec<usize>> {
    let mut count: f64 = 1.0;
    for i in 0..r.min(n - r) {
        count = count * (n - i) as f64 / (i + 1) as f64;
    }
    if count <= CHECKED_SETS as f64 {
        let mut out = Vec::new();
        let mut set: Vec<usize> = (0..r).collect();
        loop {
            out.push(set.clone());
            let Some(i) = (0..r).rev().find(|&i| set[i] < n - r + i) else {
                break;
            };
            set[i] += 1;
            for t in i + 1..r {
                set[t] = set[t - 1] + 1;
            }
        }
        return out;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(stream ^ 0x5EED);
    (0..CHECKED_SETS)
        .map(|_| {
            let mut all: Vec<usize> = (0..n).collect();
            for i in 0..r {
                let j = rng.gen_range(i..n);
                all.swap(i, j);
            }
            let mut f = all[..r].to_vec();
            f.sort_unstable();
            f
        })
        .collect()
}

/// Per-worker speeds as given on the command line and in config files: "1,1,0.5,…" (each
/// finite and > 0; only the ratios matter).
#[derive(Debug, Clone, PartialEq)]
pub struct Speeds(pub Vec<f64>);

impl std::str::FromStr for Speeds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let v: Vec<f64> = text
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| format!("speed '{}' in '{text}' is not a number > 0", p.trim()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Speeds(v))
    }
}

impl std::fmt::Display for Speeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|v| format!("{v}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl serde::Serialize for Speeds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Speeds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
