//! Condition numbers over k-subsets of workers: all of them when there are at most
//! `max_subsets`, else the n cyclically contiguous erasure patterns (often the worst for
//! root-of-unity nodes) plus a seeded sample of distinct random subsets.

use std::collections::HashSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::code::{Family, MdsCode};
use super::LinalgError;

/// What [`survey`] found.
#[derive(Debug, Clone)]
pub struct CondSurvey {
    pub family: Family,
    pub n: usize,
    pub k: usize,
    /// C(n, k), saturating.
    pub total: u128,
    pub checked: usize,
    pub exhaustive: bool,
    /// k-subsets that cannot decode (replication only).
    pub undecodable: usize,
    /// Worst cond over the decodable subsets checked.
    pub worst: f64,
    /// Arithmetic mean of cond over the decodable subsets checked.
    pub mean: f64,
    /// Geometric mean.
    pub geo_mean: f64,
    pub worst_subset: Vec<usize>,
}

/// C(n, m), saturating.
pub fn binomial(n: usize, m: usize) -> u128 {
    if m > n {
        return 0;
    }
    let m = m.min(n - m);
    let mut c: u128 = 1;
    for i in 0..m {
        c = c.saturating_mul((n - i) as u128) / (i as u128 + 1);
    }
    c
}

/// Every sorted m-subset of 0..n, lexicographic.
pub fn all_subsets(n: usize, m: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    if m > n {
        return out;
    }
    let mut cur: Vec<usize> = (0..m).collect();
    loop {
        out.push(cur.clone());
        let Some(pos) = (0..m).rev().find(|&p| cur[p] < n - m + p) else {
            return out;
        };
        cur[pos] += 1;
        for q in pos + 1..m {
            cur[q] = cur[q - 1] + 1;
        }
    }
}

/// The n subsets that miss n − m cyclically consecutive workers, then random distinct sorted
/// m-subsets from `seed`, `count` in all (needs C(n, m) > count).
pub fn sample_subsets(n: usize, m: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    for start in 0..n {
        let mut f: Vec<usize> = (0..m).map(|t| (start + t) % n).collect();
        f.sort_unstable();
        if out.len() < count && seen.insert(f.clone()) {
            out.push(f);
        }
    }
    while out.len() < count {
        let mut f = rand::seq::index::sample(&mut rng, n, m).into_vec();
        f.sort_unstable();
        if seen.insert(f.clone()) {
            out.push(f);
        }
    }
    out
}

/// Worst and mean cond over the k-subsets of `code`'s workers.
pub fn survey(code: &MdsCode, max_subsets: usize, seed: u64) -> Result<CondSurvey, LinalgError> {
    let (n, k) = (code.n_workers(), code.threshold());
    let total = binomial(n, k);
    let exhaustive = total <= max_subsets as u128;
    let sets = if exhaustive {
        all_subsets(n, k)
    } else {
        sample_subsets(n, k, max_subsets, seed)
    };
    let mut out = CondSurvey {
        family: code.family(),
        n,
        k,
        total,
        checked: 0,
        exhaustive,
        undecodable: 0,
        worst: 0.0,
        mean: 0.0,
        geo_mean: 0.0,
        worst_subset: Vec::new(),
    };
    let (mut sum, mut log_sum, mut good) = (0.0, 0.0, 0usize);
    for f in sets {
        out.checked += 1;
        if !code.is_decodable(&f) {
            out.undecodable += 1;
            continue;
        }
        let c = code.subset_cond(&f)?;
        good += 1;
        sum += c;
        log_sum += c.ln();
        if out.worst_subset.is_empty() || c > out.worst || c.is_nan() {
            out.worst = c;
            out.worst_subset = f;
        }
    }
    if good > 0 {
        out.mean = sum / good as f64;
        out.geo_mean = (log_sum / good as f64).exp();
    } else {
        out.worst = f64::NAN;
        out.mean = f64::NAN;
        out.geo_mean = f64::NAN;
    }
    Ok(out)
}
