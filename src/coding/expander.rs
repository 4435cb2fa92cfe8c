//! Random d-regular graphs for the expander code, and their second eigenvalue.
//!
//! The graph is drawn by the pairing (configuration) model with the Steger–Wormald refinement:
//! the n·d half-edges ("stubs") are paired one pair at a time, only ever pairing two stubs of
//! different, not yet adjacent vertices; when no such pair is left the attempt restarts. Plain
//! rejection of non-simple pairings needs ~e^{(d²−1)/4} attempts (hopeless for d ≳ 8); this
//! needs very few and is asymptotically uniform for d = o(n^{1/3}). Everything comes from the
//! caller's seeded RNG, so a seed always gives the same graph.

use ndarray::Array2;
use ndarray_linalg::{EigValsh, UPLO};
use rand::Rng;

use super::CodeError;

/// Restarts of the pairing before giving up (a restart is needed only near the end of an
/// unlucky pairing; a handful suffice in practice).
const MAX_RESTARTS: usize = 1000;
/// Random stub pairs tried before scanning for a suitable pair exhaustively.
const RANDOM_TRIES: usize = 64;

/// A seeded random simple d-regular graph on n vertices, as sorted adjacency lists.
///
/// Errors (as a reason to show the user) when d ≥ n or n·d is odd, where none exists.
pub fn random_regular_graph<R: Rng>(
    n: usize,
    d: usize,
    rng: &mut R,
) -> Result<Vec<Vec<usize>>, String> {
    if d == 0 {
        return Err("the degree d must be at least 1".into());
    }
    if d >= n {
        return Err(format!(
            "the degree d = {d} must be smaller than the number of workers n = {n}"
        ));
    }
    if (n * d) % 2 == 1 {
        return Err(format!(
            "n·d = {n}·{d} = {} is odd: a d-regular graph on n vertices needs n·d even \
             (change --degree or n)",
            n * d
        ));
    }
    for _ in 0..MAX_RESTARTS {
        if let Some(adj) = try_pairing(n, d, rng) {
            return Ok(adj);
        }
    }
    Err(format!(
        "no simple {d}-regular graph on {n} vertices found in {MAX_RESTARTS} attempts"
    ))
}

/// One pairing attempt; None when it got stuck.
fn try_pairing<R: Rng>(n: usize, d: usize, rng: &mut R) -> Option<Vec<Vec<usize>>> {
    let mut stubs: Vec<usize> = (0..n).flat_map(|v| std::iter::repeat(v).take(d)).collect();
    let mut adj = vec![Vec::with_capacity(d); n];
    let ok = |adj: &[Vec<usize>], u: usize, v: usize| u != v && !adj[u].contains(&v);
    while !stubs.is_empty() {
        let m = stubs.len();
        let mut pick = None;
        for _ in 0..RANDOM_TRIES {
            let (i, j) = (rng.gen_range(0..m), rng.gen_range(0..m));
            if i != j && ok(&adj, stubs[i], stubs[j]) {
                pick = Some((i, j));
                break;
            }
        }
        if pick.is_none() {
            let cands: Vec<(usize, usize)> = (0..m)
                .flat_map(|i| (i + 1..m).map(move |j| (i, j)))
                .filter(|&(i, j)| ok(&adj, stubs[i], stubs[j]))
                .collect();
            if cands.is_empty() {
                return None;
            }
            pick = Some(cands[rng.gen_range(0..cands.len())]);
        }
        let (i, j) = pick?;
        let (u, v) = (stubs[i], stubs[j]);
        adj[u].push(v);
        adj[v].push(u);
        let (hi, lo) = if i > j { (i, j) } else { (j, i) };
        stubs.swap_remove(hi);
        stubs.swap_remove(lo);
    }
    for a in &mut adj {
        a.sort_unstable();
    }
    Some(adj)
}

/// λ = the second largest |eigenvalue| of the adjacency matrix of the d-regular graph `adj`
/// (symmetric eigensolver): the largest |μ| over all eigenvalues but one copy of d. It equals
/// d when the graph is disconnected or bipartite.
pub fn second_eigenvalue(adj: &[Vec<usize>]) -> Result<f64, CodeError> {
    let n = adj.len();
    if n < 2 {
        return Ok(0.0);
    }
    let mut a = Array2::<f64>::zeros((n, n));
    for (u, nb) in adj.iter().enumerate() {
        for &v in nb {
            a[[u, v]] = 1.0;
        }
    }
    let mut mu = a
        .eigvalsh(UPLO::Lower)
        .map_err(|e| CodeError::Linalg(format!("eigenvalues of the {n}-vertex graph: {e}")))?
        .to_vec();
    // the largest eigenvalue is d (regular graph); drop it and take the largest modulus left
    mu.sort_by(|x, y| x.total_cmp(y));
    mu.pop();
    Ok(mu.iter().map(|x| x.abs()).fold(0.0, f64::max))
}
