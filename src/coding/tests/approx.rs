//! Unit tests of the approximate codes: the expander bound on many seeded sets, optimal ≤
//! one-step, exactness with zero stragglers, unbiasedness of stochastic coding, the guide's
//! n = 50, d = 3 figures, option checks.

use super::*;
use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn opts(degree: usize) -> CodeOptions {
    CodeOptions {
        degree: Some(degree),
        ..CodeOptions::default()
    }
}

fn approx(kind: CodeKind, n: usize, s: usize, seed: u64, o: &CodeOptions) -> ApproxCode {
    ApproxCode::new(kind, n, s, seed, o).unwrap()
}

/// A uniformly random sorted responder set of size n − s.
fn random_set(n: usize, s: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut f = rand::seq::index::sample(rng, n, n - s).into_vec();
    f.sort_unstable();
    f
}

/// Σ a_i (b_iᵀG) with the messages encoded by the code itself.
fn decoded(code: &dyn GradientCode, d: &Decoding, g: &Array2<f64>) -> Array1<f64> {
    let mut est = Array1::<f64>::zeros(g.ncols());
    let mut msg = Array1::<f64>::zeros(g.ncols());
    for (&w, &a) in d.responders.iter().zip(&d.weights) {
        code.encode_into(w, g.view(), msg.view_mut());
        est.scaled_add(a, &msg);
    }
    est
}

fn rank(m: &Array2<f64>) -> usize {
    use ndarray_linalg::SVD;
    let (_, sv, _) = m.svd(false, false).unwrap();
    let tol = sv[0] * 1e-10;
    sv.iter().filter(|&&x| x > tol).count()
}

fn random_g(k: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((k, cols), |_| StandardNormal.sample(&mut rng))
}

#[test]
fn expander_bound_holds_and_optimal_beats_one_step() {
    let mut checked = 0;
    for (n, d) in [(20, 3), (50, 3), (30, 4)] {
        for seed in [1, 2] {
            let code = approx(CodeKind::Expander, n, 1, seed, &opts(d));
            let lambda = code.lambda().unwrap();
            assert!(lambda < d as f64, "({n},{d}) λ = {lambda}");
            let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
            for s in [1, 2, 3, 5, n / 4, n / 2] {
                for _ in 0..150 {
                    let f = random_set(n, s, &mut rng);
                    let bound = code.error_bound(&f).unwrap();
                    let want = lambda / d as f64 * ((n * s) as f64 / (n - s) as f64).sqrt();
                    assert!((bound - want).abs() < 1e-12);
                    let opt = code.decode_optimal(&f).unwrap();
                    let one = code.decode_one_step(&f).unwrap();
                    assert!(opt.residual <= bound + 1e-9, "({n},{d},{s}) {f:?}");
                    assert!(one.residual <= bound + 1e-9, "({n},{d},{s}) {f:?}");
                    assert!(opt.residual <= one.residual + 1e-9, "({n},{d},{s}) {f:?}");
                    assert!(one
                        .weights
                        .iter()
                        .all(|&a| (a - n as f64 / (n - s) as f64).abs() < 1e-12));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 5000, "{checked}");
}

#[test]
fn expander_is_a_seeded_simple_regular_graph() {
    for (n, d) in [(20, 3), (50, 3), (30, 4), (12, 11), (40, 12)] {
        let a = approx(CodeKind::Expander, n, 2, 9, &opts(d));
        let b = approx(CodeKind::Expander, n, 2, 9, &opts(d));
        assert_eq!(a.matrix(), b.matrix(), "seeded");
        let m = a.matrix();
        for i in 0..n {
            let nb = a.assignment(i);
            assert_eq!(nb.len(), d);
            assert!(!nb.contains(&i), "no loops");
            assert!(nb.windows(2).all(|w| w[0] < w[1]), "no multi-edges");
            for &j in nb {
                assert_eq!(m[[j, i]], 1.0 / d as f64, "symmetric");
            }
        }
        for s in m.sum_axis(Axis(0)).iter().chain(m.sum_axis(Axis(1)).iter()) {
            assert!((s - 1.0).abs() < 1e-12);
        }
    }
    let other = approx(CodeKind::Expander, 50, 2, 10, &opts(3));
    let first = approx(CodeKind::Expander, 50, 2, 9, &opts(3));
    assert_ne!(other.matrix(), first.matrix());
    // the complete graph K_n: λ = 1
    let k = approx(CodeKind::Expander, 8, 1, 1, &opts(7));
    assert!((k.lambda().unwrap() - 1.0).abs() < 1e-9);
}

fn reason(e: CodeError) -> String {
    match e {
        CodeError::Invalid { reason, .. } => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn invalid_approximate_parameters_give_specific_errors() {
    let r = reason(build_with(CodeKind::Expander, 15, 2, 1, &opts(3)).unwrap_err());
    assert!(r.contains("n·d = 15·3 = 45 is odd"), "{r}");
    let r = reason(build_with(CodeKind::Expander, 6, 2, 1, &opts(6)).unwrap_err());
    assert!(
        r.contains("d = 6 must be smaller than the number of workers n = 6"),
        "{r}"
    );
    let r = reason(build_with(CodeKind::Expander, 6, 2, 1, &opts(0)).unwrap_err());
    assert!(r.contains("at least 1"), "{r}");
    let r = reason(build_with(CodeKind::FrcApprox, 10, 1, 1, &opts(3)).unwrap_err());
    assert!(r.contains("valid d for n = 10: 1, 2, 5, 10"), "{r}");
    let r = reason(build_with(CodeKind::Bgc, 10, 1, 1, &opts(11)).unwrap_err());
    assert!(r.contains("must not exceed"), "{r}");
    let bad_p = CodeOptions {
        straggle_prob: Some(1.0),
        ..CodeOptions::default()
    };
    let r = reason(build_with(CodeKind::Stochastic, 10, 1, 1, &bad_p).unwrap_err());
    assert!(r.contains("[0, 1)"), "{r}");
    // options a code does not use are refused, not ignored
    let r = reason(build_with(CodeKind::CyclicMds, 8, 1, 1, &opts(3)).unwrap_err());
    assert!(r.contains("--degree 3 applies only"), "{r}");
    let p = CodeOptions {
        straggle_prob: Some(0.1),
        ..CodeOptions::default()
    };
    let r = reason(build_with(CodeKind::Expander, 8, 1, 1, &p).unwrap_err());
    assert!(r.contains("only to the stochastic"), "{r}");
    let one = CodeOptions {
        decoder: Some(DecoderKind::OneStep),
        ..CodeOptions::default()
    };
    let r = reason(build_with(CodeKind::Frc, 8, 1, 1, &one).unwrap_err());
    assert!(r.contains("always decodes optimal"), "{r}");
    assert!(build_with(CodeKind::IgnoreStragglers, 8, 1, 1, &one).is_ok());
    for kind in [
        CodeKind::Expander,
        CodeKind::Bgc,
        CodeKind::FrcApprox,
        CodeKind::Stochastic,
    ] {
        let r = reason(build(kind, 5, 5, 1).unwrap_err());
        assert_eq!(r, "s = 5 must be smaller than the number of workers n = 5");
    }
}

#[test]
fn stopping_rule_and_decoder_selection() {
    for kind in [CodeKind::Expander, CodeKind::Bgc, CodeKind::Stochastic] {
        let code = build_with(kind, 10, 3, 1, &opts(4)).unwrap();
        assert_eq!(code.max_stragglers(), 3);
        assert!(code.is_decodable(&[0, 1, 2, 3, 4, 5, 6]), "{kind}");
        assert!(!code.is_decodable(&[0, 1, 2, 3, 4, 5]), "{kind}");
        assert!(!code.is_decodable(&[1, 0, 2, 3, 4, 5, 6]), "{kind}");
        assert!(code.decode(&[1, 0]).is_err());
        let want = if kind == CodeKind::Stochastic {
            DecoderKind::OneStep
        } else {
            DecoderKind::Optimal
        };
        assert_eq!(code.decoder_kind(), want);
        assert!(code.summary().is_some());
        assert_eq!(code.error_bound(&[0]).is_some(), kind == CodeKind::Expander);
        for dk in [DecoderKind::Optimal, DecoderKind::OneStep] {
            let o = CodeOptions {
                degree: Some(4),
                decoder: Some(dk),
                ..CodeOptions::default()
            };
            let c = build_with(kind, 10, 3, 1, &o).unwrap();
            assert_eq!(c.decoder_kind(), dk);
            let f = [0, 2, 3, 5, 6, 8, 9];
            let d = c.decode(&f).unwrap();
            // the reported residual is the honest one
            assert!((d.residual - residual_of(c.as_ref(), &f, &d.weights)).abs() < 1e-12);
            if dk == DecoderKind::OneStep {
                assert!(d.weights.windows(2).all(|w| w[0] == w[1]));
            }
        }
    }
    assert!(
        build(CodeKind::Expander, 10, 3, 1).is_ok(),
        "default d = s + 1 = 4"
    );
    // frc-approx: any set covering every group decodes (exactly), else |F| ≥ n − s
    let code = build_with(CodeKind::FrcApprox, 12, 5, 1, &opts(3)).unwrap();
    assert!(code.is_decodable(&[0, 4, 8, 11]));
    assert!(code.decode(&[0, 4, 8, 11]).unwrap().exact);
    assert!(!code.is_decodable(&[0, 1, 2, 3, 4, 5]));
    assert!(code.is_decodable(&[0, 1, 2, 3, 4, 5, 6]));
    let d = code.decode(&[0, 1, 2, 3, 4, 5]).unwrap();
    assert!(!d.exact);
    assert!(
        (d.residual - 6f64.sqrt()).abs() < 1e-12,
        "two groups uncovered"
    );
    assert_eq!(d.weights, [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn zero_stragglers_reproduce_the_exact_gradient() {
    let g = random_g(20, 5, 3);
    let full = g.sum_axis(Axis(0));
    let all: Vec<usize> = (0..20).collect();
    let close = |code: &dyn GradientCode, d: &Decoding| {
        let diff = decoded(code, d, &g) - &full;
        diff.dot(&diff).sqrt() / full.dot(&full).sqrt()
    };
    // expander: all n responders, both decoders exact (a = 1)
    let code = approx(CodeKind::Expander, 20, 2, 5, &opts(3));
    for d in [
        code.decode_optimal(&all).unwrap(),
        code.decode_one_step(&all).unwrap(),
    ] {
        assert!(d.exact && d.residual < 1e-10, "{}", d.residual);
        assert!(close(&code, &d) < 1e-10);
    }
    assert_eq!(code.error_bound(&all), Some(0.0));
    // bgc: from all n the optimal decoding is exact exactly when 1 lies in the row space of B
    // (checked independently by rank); a partition held by nobody rules that out. Sparse
    // 0/1 patterns can miss it even when covered (a column equal to the sum of two others).
    let (mut covered, mut exact) = (0, 0);
    for seed in 0..40 {
        let code = approx(CodeKind::Bgc, 20, 2, seed, &opts(3));
        let d = code.decode_optimal(&all).unwrap();
        let b = code.matrix();
        let mut b1 = b.clone();
        b1.push_row(Array1::ones(20).view()).unwrap();
        let in_rowspace = rank(&b) == rank(&b1);
        assert_eq!(d.exact, in_rowspace, "seed {seed}: residual {}", d.residual);
        if code.unheld_partitions() > 0 {
            assert!(!d.exact);
            continue;
        }
        covered += 1;
        if d.exact {
            exact += 1;
            assert!(close(&code, &d) < 1e-9);
        }
    }
    assert!(
        covered >= 10 && exact >= 5,
        "covered {covered}, exact {exact}"
    );
    // frc-approx: covered groups decode exactly
    let code = approx(CodeKind::FrcApprox, 20, 7, 1, &opts(4));
    let d = code.decode_optimal(&all).unwrap();
    assert!(d.exact && close(&code, &d) < 1e-12);
    let d = code.decode_optimal(&[3, 4, 10, 13, 19]).unwrap();
    assert!(d.exact && close(&code, &d) < 1e-12);
}

#[test]
fn stochastic_one_step_is_unbiased() {
    let (n, d, p) = (10, 3, 0.3);
    let o = CodeOptions {
        degree: Some(d),
        straggle_prob: Some(p),
        ..CodeOptions::default()
    };
    let code = approx(CodeKind::Stochastic, n, 3, 1, &o);
    assert!((code.one_step_weight(7) - 1.0 / (d as f64 * (1.0 - p))).abs() < 1e-15);
    for j in 0..n {
        let holders = (0..n).filter(|&w| code.assignment(w).contains(&j)).count();
        assert_eq!(holders, d, "partition {j}");
    }
    let g = random_g(n, 4, 8);
    let full = g.sum_axis(Axis(0));
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let trials = 20_000;
    let mut mean = Array1::<f64>::zeros(4);
    for _ in 0..trials {
        let f: Vec<usize> = (0..n).filter(|_| !rng.gen_bool(p)).collect();
        let dec = code.decode(&f).unwrap();
        mean += &decoded(&code, &dec, &g);
    }
    mean /= trials as f64;
    let diff = &mean - &full;
    let rel = diff.dot(&diff).sqrt() / full.dot(&full).sqrt();
    assert!(rel < 0.03, "relative bias {rel}");
    // the default p is s/n
    let code = approx(CodeKind::Stochastic, 10, 2, 1, &opts(3));
    assert_eq!(code.straggle_prob(), Some(0.2));
}

/// GUIDE §3, n = 50, d = 3: bound 1.62 / 2.14 / 3.21, one-step 1.01 / 1.33 / 1.99, optimal
/// 0.26 / 0.48 / 1.07 at s = 3 / 5 / 10 (means over random straggler sets).
#[test]
fn guide_table_order_of_magnitude_at_50_3() {
    let code = approx(CodeKind::Expander, 50, 3, 1, &opts(3));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let sets = 300;
    let mut rows = Vec::new();
    for s in [3, 5, 10] {
        let (mut one, mut opt) = (0.0, 0.0);
        let mut bound = 0.0;
        for _ in 0..sets {
            let f = random_set(50, s, &mut rng);
            bound = code.error_bound(&f).unwrap();
            one += code.decode_one_step(&f).unwrap().residual;
            opt += code.decode_optimal(&f).unwrap().residual;
        }
        rows.push((s, bound, one / sets as f64, opt / sets as f64));
    }
    let within = |x: f64, lo: f64, hi: f64| x >= lo && x <= hi;
    for &(s, bound, one, opt) in &rows {
        let (b, o1, op) = match s {
            3 => (1.62, 1.01, 0.26),
            5 => (2.14, 1.33, 0.48),
            _ => (3.21, 1.99, 1.07),
        };
        assert!(within(bound, b - 0.3, b + 0.3), "s={s}: {rows:?}");
        assert!(within(one, o1 * 0.7, o1 * 1.35), "s={s}: {rows:?}");
        assert!(within(opt, op * 0.5, op * 1.7), "s={s}: {rows:?}");
        assert!(opt < 0.75 * one && one < bound, "s={s}: {rows:?}");
    }
    let (_, _, one5, opt5) = rows[1];
    assert!(within(opt5, 0.2, 0.8) && within(one5, 0.9, 1.8), "{rows:?}");
}

#[test]
fn decoder_caches_approximate_decodings() {
    let mut dec = Decoder::new(build_with(CodeKind::Expander, 20, 3, 1, &opts(3)).unwrap());
    let f: Vec<usize> = (3..20).collect();
    let a = dec.decode(&f).unwrap().clone();
    let b = dec.decode(&f).unwrap().clone();
    assert_eq!(a, b);
    assert_eq!((dec.hits(), dec.misses()), (1, 1));
    assert!(!a.exact && a.residual > 0.0);
    assert!(a.residual <= dec.code().error_bound(&f).unwrap());
}
