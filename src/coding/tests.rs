//! Unit tests of the codes and the decoder: exactness on every straggler set for n ≤ 10,
//! agreement of `is_decodable` with the decoding, code-specific properties, errors, caching.

use super::*;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const ALL: [CodeKind; 5] = [
    CodeKind::Uncoded,
    CodeKind::IgnoreStragglers,
    CodeKind::Frc,
    CodeKind::CyclicRepetition,
    CodeKind::CyclicMds,
];
/// Codes whose decoding is exact from every set `is_decodable` accepts.
const EXACT: [CodeKind; 4] = [
    CodeKind::Uncoded,
    CodeKind::Frc,
    CodeKind::CyclicRepetition,
    CodeKind::CyclicMds,
];

fn random_g(k: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((k, d), |_| StandardNormal.sample(&mut rng))
}

/// All subsets of 0..n of size m, sorted.
fn subsets(n: usize, m: usize) -> Vec<Vec<usize>> {
    fn rec(start: usize, n: usize, m: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == m {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            if n - i < m - cur.len() {
                break;
            }
            cur.push(i);
            rec(i + 1, n, m, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    rec(0, n, m, &mut Vec::new(), &mut out);
    out
}

/// ‖Σ a_i (b_iᵀG) − 1ᵀG‖ / ‖1ᵀG‖ with the messages encoded by the code itself.
fn rel_err(code: &dyn GradientCode, d: &Decoding, g: &Array2<f64>) -> f64 {
    let full = g.sum_axis(ndarray::Axis(0));
    let mut est = Array1::<f64>::zeros(g.ncols());
    let mut msg = Array1::<f64>::zeros(g.ncols());
    for (&w, &a) in d.responders.iter().zip(&d.weights) {
        code.encode_into(w, g.view(), msg.view_mut());
        est.scaled_add(a, &msg);
    }
    let diff = &est - &full;
    diff.dot(&diff).sqrt() / full.dot(&full).sqrt()
}

/// (n, s) pairs with n ≤ 10 that `kind` accepts.
fn valid_params(kind: CodeKind) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for n in 1..=10 {
        for s in 0..n {
            let ok = match kind {
                CodeKind::Uncoded => s == 0,
                CodeKind::Frc => n % (s + 1) == 0,
                CodeKind::CyclicMds => s == 0 || (n - s) % 2 == 1,
                _ => true,
            };
            if ok {
                v.push((n, s));
            }
        }
    }
    v
}

#[test]
fn every_straggler_set_decodes_exactly() {
    let mut checked = 0;
    for kind in EXACT {
        for (n, s) in valid_params(kind) {
            let code = build(kind, n, s, 7).unwrap();
            assert_eq!(code.n_partitions(), n);
            assert_eq!(code.max_stragglers(), s);
            let g = random_g(n, 8, 11);
            for f in subsets(n, n - s) {
                assert!(code.is_decodable(&f), "{kind} ({n},{s}) {f:?}");
                let d = code.decode(&f).unwrap();
                assert!(d.exact, "{kind} ({n},{s}) {f:?}: residual {}", d.residual);
                let e = rel_err(code.as_ref(), &d, &g);
                assert!(e < 1e-10, "{kind} ({n},{s}) {f:?}: rel err {e:e}");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

/// `is_decodable` is a guarantee (it implies `exact`) everywhere, and an equivalence on every
/// subset for uncoded, FRC, cyclic repetition (generic H) and cyclic MDS with prime n
/// (Chebotarev: every minor of the prime-order DFT matrix is non-zero).
#[test]
fn is_decodable_agrees_with_exact_on_every_subset() {
    for kind in EXACT {
        for n in [1, 2, 3, 4, 5, 6, 7, 8] {
            let tight = kind != CodeKind::CyclicMds || [1, 2, 3, 5, 7].contains(&n);
            for s in 0..n {
                let Ok(code) = build(kind, n, s, 3) else {
                    continue;
                };
                for m in 0..=n {
                    for f in subsets(n, m) {
                        let d = code.decode(&f).unwrap();
                        let ok = if tight || m + s >= n {
                            code.is_decodable(&f) == d.exact
                        } else {
                            !code.is_decodable(&f)
                        };
                        assert!(ok, "{kind} ({n},{s}) {f:?}: residual {:e}", d.residual);
                    }
                }
            }
        }
    }
}

/// For composite n the cyclic MDS code decodes some sets smaller than n − s exactly; the cheap
/// `is_decodable` (|F| ≥ n − s) does not promise them, and best-effort decoding finds them.
#[test]
fn cyclic_mds_composite_n_decodes_some_smaller_sets() {
    // n = 4, s = 1: g = 1 + x, so rows 0 and 2 sum to 1.
    let code = build(CodeKind::CyclicMds, 4, 1, 1).unwrap();
    assert!(!code.is_decodable(&[0, 2]));
    let d = code.decode(&[0, 2]).unwrap();
    assert!(d.exact, "{}", d.residual);
    assert!(!code.decode(&[0, 1]).unwrap().exact);
}

#[test]
fn uncoded_waits_for_all_and_accepts_any_s() {
    let code = build(CodeKind::Uncoded, 5, 2, 1).unwrap();
    assert_eq!(code.max_stragglers(), 0);
    assert!(code.is_decodable(&[0, 1, 2, 3, 4]));
    assert!(!code.is_decodable(&[0, 1, 2, 4]));
    let d = code.decode(&[0, 1, 2, 3, 4]).unwrap();
    assert_eq!(d.weights, vec![1.0; 5]);
    assert!(d.exact);
    let d = code.decode(&[0, 2, 4]).unwrap();
    assert!(!d.exact);
    assert!((d.residual - 2f64.sqrt()).abs() < 1e-12);
    for w in &d.weights {
        assert!((w - 1.0).abs() < 1e-12);
    }
}

/// Ignore-stragglers is approximate by design: on every (n, s) with n ≤ 10 and every responder
/// set of size n − s it scales the plain sum by n/(n − s), reports its residual
/// ‖B_Fᵀa − 1‖₂ = √(|F|(n/|F| − 1)² + (n − |F|)) exactly, and ĝ − g = (B_Fᵀa − 1)ᵀG; with all
/// n responders it is exact.
#[test]
fn ignore_stragglers_is_an_honest_approximation() {
    let mut checked = 0;
    for (n, s) in valid_params(CodeKind::IgnoreStragglers) {
        let code = build(CodeKind::IgnoreStragglers, n, s, 1).unwrap();
        let g = random_g(n, 8, 5);
        let full = g.sum_axis(ndarray::Axis(0));
        let m = n - s;
        let scale = n as f64 / m as f64;
        let want_residual = (m as f64 * (scale - 1.0).powi(2) + s as f64).sqrt();
        for f in subsets(n, m) {
            assert!(code.is_decodable(&f), "({n},{s}) {f:?}");
            let d = code.decode(&f).unwrap();
            assert_eq!(d.exact, s == 0, "({n},{s}) {f:?}");
            assert!(d.weights.iter().all(|&a| (a - scale).abs() < 1e-15));
            assert!(
                (d.residual - want_residual).abs() < 1e-12,
                "({n},{s}) {f:?}: residual {} vs {want_residual}",
                d.residual
            );
            let mut r = Array1::<f64>::from_elem(n, -1.0);
            let mut est = Array1::<f64>::zeros(8);
            for &w in &f {
                r[w] += scale;
                est.scaled_add(scale, &g.row(w));
            }
            let diff = &est - &full - r.dot(&g);
            assert!(diff.dot(&diff).sqrt() < 1e-12, "({n},{s}) {f:?}");
            checked += 1;
        }
        if s > 0 {
            assert!(
                !code.is_decodable(&(0..m - 1).collect::<Vec<_>>()),
                "({n},{s})"
            );
        }
        let d = code.decode(&(0..n).collect::<Vec<_>>()).unwrap();
        assert!(d.exact, "({n},{s})");
        assert!(d.residual < 1e-12, "({n},{s}): {}", d.residual);
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn frc_decoding_is_bitwise_independent_of_responding_member() {
    let code = build(CodeKind::Frc, 6, 2, 1).unwrap();
    let g = random_g(6, 8, 9);
    // group 0 = {0,1,2}, group 1 = {3,4,5}
    let sets = [
        vec![0, 3],
        vec![1, 5],
        vec![2, 4],
        vec![0, 1, 2, 3, 4, 5],
        vec![1, 2, 4, 5],
    ];
    let mut results = Vec::new();
    for f in &sets {
        let d = code.decode(f).unwrap();
        assert!(d.exact);
        assert_eq!(d.condition, 1.0);
        let mut est = Array1::<f64>::zeros(8);
        let mut msg = Array1::<f64>::zeros(8);
        for (&w, &a) in d.responders.iter().zip(&d.weights) {
            if a != 0.0 {
                code.encode_into(w, g.view(), msg.view_mut());
                est.scaled_add(a, &msg);
            }
        }
        results.push(est);
    }
    for r in &results[1..] {
        for (x, y) in r.iter().zip(results[0].iter()) {
            assert_eq!(x.to_bits(), y.to_bits());
        }
    }
    let d = code.decode(&[1, 2, 4, 5]).unwrap();
    assert_eq!(d.weights, vec![1.0, 0.0, 1.0, 0.0]);
    // best effort: group 1 missing ⇒ 3 partitions uncovered
    let d = code.decode(&[0, 2]).unwrap();
    assert!(!d.exact);
    assert!((d.residual - 3f64.sqrt()).abs() < 1e-15);
    assert!(!code.is_decodable(&[0, 2]));
}

#[test]
fn frc_assignment_is_groups_of_consecutive_workers() {
    let code = build(CodeKind::Frc, 6, 1, 1).unwrap();
    assert_eq!(code.assignment(0), &[0, 1]);
    assert_eq!(code.assignment(1), &[0, 1]);
    assert_eq!(code.assignment(4), &[4, 5]);
    assert_eq!(code.coefficients(5), &[1.0, 1.0]);
}

#[test]
fn cyclic_mds_is_real_and_circulant() {
    for (n, s) in [(8, 1), (7, 2), (12, 3), (9, 4), (10, 5)] {
        let code = build(CodeKind::CyclicMds, n, s, 1).unwrap();
        let b = code.matrix();
        for i in 0..n {
            for j in 0..n {
                assert_eq!(b[[i, j]], b[[(i + 1) % n, (j + 1) % n]], "({n},{s})");
                assert!(b[[i, j]].is_finite());
            }
            assert_eq!(code.assignment(i).len(), s + 1);
        }
        let g = mds_generator(n, s).unwrap();
        assert_eq!(g.len(), s + 1);
        assert!((g[s] - 1.0).abs() < 1e-12);
        // 1 is in the row space: g(1) ≠ 0 and B·1 = g(1)·1
        let row_sum: f64 = g.iter().sum();
        assert!(row_sum.abs() > 1e-6);
    }
    // n = 4, s = 1: J = {2}, g = x + 1
    assert_eq!(mds_generator(4, 1).unwrap(), vec![1.0, 1.0]);
}

#[test]
fn cyclic_mds_conditioning_at_8_1_is_moderate() {
    let code = build(CodeKind::CyclicMds, 8, 1, 1).unwrap();
    let worst = subsets(8, 7)
        .iter()
        .map(|f| code.decode(f).unwrap().condition)
        .fold(0.0, f64::max);
    // GUIDE §3 measured 5
    assert!(worst > 1.0 && worst < 50.0, "{worst}");
}

#[test]
fn cyclic_repetition_is_seeded_and_rows_are_in_null_h() {
    let a = build(CodeKind::CyclicRepetition, 7, 3, 42)
        .unwrap()
        .matrix();
    let b = build(CodeKind::CyclicRepetition, 7, 3, 42)
        .unwrap()
        .matrix();
    let c = build(CodeKind::CyclicRepetition, 7, 3, 43)
        .unwrap()
        .matrix();
    assert_eq!(a, b);
    assert_ne!(a, c);
    for i in 0..7 {
        assert_eq!(a[[i, i]], 1.0);
        assert_eq!(a[[i, (i + 4) % 7]], 0.0);
    }
}

#[test]
fn s_zero_is_plain_for_every_code() {
    for kind in ALL {
        for n in [1, 2, 5, 6] {
            let code = build(kind, n, 0, 1).unwrap();
            assert_eq!(code.matrix(), Array2::<f64>::eye(n), "{kind} n={n}");
        }
    }
}

fn reason(e: CodeError) -> String {
    match e {
        CodeError::Invalid { reason, .. } => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn invalid_parameters_give_specific_errors() {
    for kind in ALL {
        let r = reason(build(kind, 5, 5, 1).unwrap_err());
        assert_eq!(r, "s = 5 must be smaller than the number of workers n = 5");
        let r = reason(build(kind, 0, 0, 1).unwrap_err());
        assert!(r.contains("at least 1"), "{r}");
    }
    let r = reason(build(CodeKind::Frc, 7, 1, 1).unwrap_err());
    assert!(r.contains("must divide"), "{r}");
    assert!(r.contains("valid s for n = 7: 0, 6"), "{r}");
    let r = reason(build(CodeKind::Frc, 12, 4, 1).unwrap_err());
    assert!(r.contains("0, 1, 2, 3, 5, 11"), "{r}");
    let e = build(CodeKind::CyclicMds, 8, 2, 1).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("invalid code parameters for 'cyclic-mds'"));
    let r = reason(e);
    assert!(r.contains("n − s odd"), "{r}");
    assert!(r.contains("s = 1 or s = 3"), "{r}");
    let r = reason(build(CodeKind::CyclicMds, 7, 1, 1).unwrap_err());
    assert!(r.contains("s = 0 or s = 2"), "{r}");
}

#[test]
fn bad_responder_sets_are_errors_and_not_decodable() {
    for kind in ALL {
        let code = build(kind, 4, 1, 1).unwrap_or_else(|_| build(kind, 4, 0, 1).unwrap());
        for bad in [vec![1, 0, 2, 3], vec![0, 0, 1, 2], vec![0, 1, 2, 4]] {
            assert!(!code.is_decodable(&bad), "{kind} {bad:?}");
            assert!(
                matches!(code.decode(&bad), Err(CodeError::BadResponders { .. })),
                "{kind} {bad:?}"
            );
        }
    }
}

#[test]
fn least_squares_of_no_responders_is_the_zero_decoding() {
    let code = build(CodeKind::CyclicMds, 5, 2, 1).unwrap();
    let d = code.decode(&[]).unwrap();
    assert!(d.weights.is_empty());
    assert!(!d.exact);
    assert!((d.residual - 5f64.sqrt()).abs() < 1e-15);
    assert!(d.condition.is_nan());
}

#[test]
fn least_squares_on_supersets_is_exact_and_rank_aware() {
    // all n responders: B is n × n of rank n − s; cond over the non-zero singular values only
    let code = build(CodeKind::CyclicMds, 9, 2, 1).unwrap();
    let d = code.decode(&(0..9).collect::<Vec<_>>()).unwrap();
    assert!(d.exact);
    assert!(
        d.condition.is_finite() && d.condition < 1e6,
        "{}",
        d.condition
    );
}

#[test]
fn decoder_caches_per_responder_set() {
    let mut dec = Decoder::new(build(CodeKind::CyclicMds, 8, 1, 1).unwrap());
    let first = dec.decode(&[0, 1, 2, 3, 4, 5, 7]).unwrap().clone();
    assert_eq!((dec.hits(), dec.misses()), (0, 1));
    let second = dec.decode(&[0, 1, 2, 3, 4, 5, 7]).unwrap().clone();
    assert_eq!((dec.hits(), dec.misses()), (1, 1));
    assert_eq!(first, second);
    dec.decode(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    assert_eq!((dec.hits(), dec.misses(), dec.cached()), (1, 2, 2));
    assert!(dec.decode(&[3, 1]).is_err());
    assert_eq!(dec.cached(), 2);
}

/// Decoded gradient from the code's own messages of `g` (k × dim), relative error against 1ᵀG:
/// split-aware ([`combine_into`]).
fn split_rel_err(code: &dyn GradientCode, d: &Decoding, g: &Array2<f64>) -> f64 {
    let full = g.sum_axis(ndarray::Axis(0));
    let len = piece_len(g.ncols(), code.split());
    let msgs: Vec<Array1<f64>> = d
        .responders
        .iter()
        .map(|&w| {
            let mut m = Array1::zeros(len);
            code.encode_into(w, g.view(), m.view_mut());
            m
        })
        .collect();
    let views: Vec<_> = msgs.iter().map(|m| m.view()).collect();
    let mut est = Array1::zeros(g.ncols());
    combine_into(d, &views, est.view_mut());
    let diff = &est - &full;
    diff.dot(&diff).sqrt() / full.dot(&full).sqrt()
}

/// Comm-efficient (Ye & Abbe): for every n ≤ 10, s < n, 1 ≤ m ≤ n − s and every straggler set
/// of size s, the n − s responders decode the full gradient exactly from messages of ⌈dim/m⌉
/// values (dim = 8m + 3, so the last piece is padded).
#[test]
fn comm_efficient_every_straggler_set_decodes_exactly() {
    let mut checked = 0;
    for n in 1..=10 {
        for s in 0..n {
            for m in 1..=n - s {
                let code = build_with(
                    CodeKind::CommEfficient,
                    n,
                    s,
                    1,
                    &CodeOptions {
                        split: Some(m),
                        ..Default::default()
                    },
                )
                .unwrap();
                assert_eq!((code.split(), code.n_partitions()), (m, n));
                assert_eq!(code.matrix().dim(), (n, n * m));
                for w in 0..n {
                    assert_eq!(code.assignment(w).len(), s + m, "({n},{s},{m})");
                    assert_eq!(code.coefficients(w).len(), (s + m) * m);
                }
                let g = random_g(n, 8 * m + 3, 17);
                for f in subsets(n, n - s) {
                    assert!(code.is_decodable(&f), "({n},{s},{m}) {f:?}");
                    let d = code.decode(&f).unwrap();
                    assert_eq!(d.pieces(), m);
                    assert!(d.exact, "({n},{s},{m}) {f:?}: residual {:e}", d.residual);
                    let e = split_rel_err(code.as_ref(), &d, &g);
                    assert!(e < 1e-10, "({n},{s},{m}) {f:?}: rel err {e:e}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 5000, "{checked}");
}

/// Fewer than n − s responders never decode exactly (n ≤ 8), and the residual the decoder
/// reports is the one recomputed from the code's rows.
#[test]
fn comm_efficient_smaller_sets_are_not_exact_and_residuals_are_honest() {
    for n in 2..=8 {
        for s in 0..n {
            for m in 1..=n - s {
                let code = CommEfficient::new(n, s, m).unwrap();
                for size in 0..n - s {
                    for f in subsets(n, size) {
                        assert!(!code.is_decodable(&f));
                        let d = code.decode(&f).unwrap();
                        assert!(!d.exact, "({n},{s},{m}) {f:?}");
                        let r = residual_of(&code, &f, &d.weights);
                        assert!(
                            (r - d.residual).abs() < 1e-9 * r.max(1.0),
                            "{r} vs {}",
                            d.residual
                        );
                    }
                }
            }
        }
    }
}

/// The construction in use (Chebyshev basis at Chebyshev points, spread by the golden stride,
/// pieces in the top coefficients) is far better conditioned than the paper's monomial form at
/// equispaced nodes: worst cond(B_F) and decoding error over every straggler set.
#[test]
fn comm_efficient_chebyshev_is_better_conditioned_than_vandermonde() {
    for (n, s, m) in [(8, 1, 2), (10, 2, 2), (10, 3, 4)] {
        let worst = |c: Construction| {
            let code = CommEfficient::with_construction(n, s, m, c).unwrap();
            let g = random_g(n, 8 * m, 3);
            subsets(n, n - s)
                .iter()
                .fold((0.0f64, 0.0f64), |(wc, we), f| {
                    let d = code.decode(f).unwrap();
                    (wc.max(d.condition), we.max(split_rel_err(&code, &d, &g)))
                })
        };
        let (cheb_cond, cheb_err) = worst(Construction::Chebyshev);
        let (vand_cond, vand_err) = worst(Construction::Vandermonde);
        assert!(
            cheb_cond * 1e3 < vand_cond,
            "({n},{s},{m}): {cheb_cond:e} vs {vand_cond:e}"
        );
        assert!(
            cheb_err < 1e-12 && cheb_err < vand_err,
            "({n},{s},{m}): {cheb_err:e} vs {vand_err:e}"
        );
    }
}

#[test]
fn comm_efficient_messages_are_m_times_shorter_and_m_1_is_one_coefficient_per_partition() {
    let code = CommEfficient::new(6, 1, 3).unwrap();
    let g = random_g(6, 10, 4);
    // ⌈10/3⌉ = 4 values; worker 0 holds partitions 0..=3.
    let mut msg = Array1::<f64>::zeros(piece_len(10, 3));
    code.encode_into(0, g.view(), msg.view_mut());
    assert_eq!(msg.len(), 4);
    let c = code.coefficients(0);
    // coordinate 3 of the message = piece 2's coordinate 3, i.e. gradient coordinate 11 ≥ dim:
    // padding, so only pieces 0 and 1 contribute there.
    let got3: f64 = (0..4)
        .map(|p| c[p * 3] * g[[p, 3]] + c[p * 3 + 1] * g[[p, 7]])
        .sum();
    assert!((msg[3] - got3).abs() < 1e-12, "{} vs {got3}", msg[3]);
    assert_eq!(code.assignment(0), &[0, 1, 2, 3]);
    let one = CommEfficient::new(7, 2, 1).unwrap();
    assert_eq!(one.split(), 1);
    assert_eq!(one.coefficients(3).len(), 3);
    assert_eq!(one.assignment(3), &[3, 4, 5]);
}

#[test]
fn split_is_refused_where_it_does_not_fit() {
    let opts = |m| CodeOptions {
        split: Some(m),
        ..Default::default()
    };
    let r = reason(build_with(CodeKind::CommEfficient, 4, 1, 1, &opts(4)).unwrap_err());
    assert!(
        r.contains("--split 4") && r.contains("between 1 and n − s = 3"),
        "{r}"
    );
    let r = reason(build_with(CodeKind::CommEfficient, 4, 1, 1, &opts(0)).unwrap_err());
    assert!(r.contains("--split 0"), "{r}");
    let r = reason(build_with(CodeKind::CyclicMds, 5, 2, 1, &opts(2)).unwrap_err());
    assert!(r.contains("only to the comm-efficient code"), "{r}");
    // the default split is 2, or 1 when n − s = 1
    assert_eq!(build(CodeKind::CommEfficient, 5, 1, 1).unwrap().split(), 2);
    assert_eq!(build(CodeKind::CommEfficient, 2, 1, 1).unwrap().split(), 1);
}

#[test]
fn the_incremental_stop_tracker_agrees_with_is_decodable() {
    // Every code of the crate (approximate ones with their default degree, where they build),
    // n ≤ 10, 20 seeded arrival orders each: after every arrival the tracker says what
    // is_decodable says of the sorted set so far.
    let kinds = [
        CodeKind::Uncoded,
        CodeKind::IgnoreStragglers,
        CodeKind::Frc,
        CodeKind::CyclicRepetition,
        CodeKind::CyclicMds,
        CodeKind::Expander,
        CodeKind::Bgc,
        CodeKind::FrcApprox,
        CodeKind::Stochastic,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for kind in kinds {
        for n in 1..=10 {
            for s in 0..n {
                let Ok(code) = build(kind, n, s, 1) else {
                    continue;
                };
                let rule = code.stopping_rule().expect("every code here has a rule");
                for _ in 0..20 {
                    let mut order: Vec<usize> = (0..n).collect();
                    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
                    let mut tracker = StopTracker::new(rule, n);
                    let mut set = Vec::new();
                    for &w in &order {
                        let now = tracker.add(w);
                        tracker.add(w); // a repeat changes nothing
                        set.push(w);
                        set.sort_unstable();
                        assert_eq!(now, code.is_decodable(&set), "{kind} n={n} s={s} {set:?}");
                        assert_eq!(tracker.holds(), now);
                        assert_eq!(tracker.count(), set.len());
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
    // Out-of-range workers are ignored, and a rule never holds on a malformed set.
    let mut t = StopTracker::new(StoppingRule::AtLeast(1), 2);
    assert!(!t.add(5));
    assert!(!StoppingRule::AtLeast(1).holds(2, &[1, 0]));
}

#[test]
fn codes_build_without_the_dense_matrix_at_ten_thousand_workers() {
    // The simulator builds codes at n = 10⁴: the dense B (800 MB) must not be made unless asked.
    for kind in [CodeKind::CyclicMds, CodeKind::Frc, CodeKind::Uncoded] {
        let s = if kind == CodeKind::Uncoded { 0 } else { 1 };
        let n = 10_000;
        let code = build(kind, n, s, 1).unwrap();
        assert_eq!(code.assignment(n - 1).len(), s + 1);
        let rule = code.stopping_rule().unwrap();
        assert!(rule.holds(n, &(0..n).collect::<Vec<_>>()));
    }
    let small = build(CodeKind::Frc, 4, 1, 1).unwrap();
    assert_eq!(small.matrix().dim(), (4, 4));
}
