//! Unit tests of the heterogeneity-aware code: exact decoding from every straggler set for
//! n ≤ 10 and several speed vectors, loads in proportion to speed, the support, bad input.

use super::hetero::{loads, PARTS_PER_WORKER};
use super::*;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Speed vectors for n workers: equal, two at half speed, a ramp, one ten times slower.
fn speed_vectors(n: usize) -> Vec<Vec<f64>> {
    let mut two_slow = vec![1.0; n];
    for v in two_slow.iter_mut().skip(1).take(2) {
        *v = 0.5;
    }
    let ramp = (0..n).map(|i| 1.0 + i as f64).collect();
    let mut one_slow = vec![1.0; n];
    one_slow[n - 1] = 0.1;
    vec![vec![1.0; n], two_slow, ramp, one_slow]
}

fn hetero(n: usize, s: usize, speeds: &[f64]) -> Box<dyn GradientCode> {
    let opts = CodeOptions {
        speeds: Some(speeds.to_vec()),
        ..CodeOptions::default()
    };
    build_with(CodeKind::Hetero, n, s, 7, &opts).unwrap()
}

#[test]
fn every_straggler_set_decodes_exactly_for_n_up_to_10() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for n in 1..=10 {
        for s in 0..n.min(4) {
            for speeds in speed_vectors(n) {
                let code = hetero(n, s, &speeds);
                let k = code.n_partitions();
                let g = Array2::from_shape_fn((k, 3), |_| StandardNormal.sample(&mut rng));
                let full = g.sum_axis(ndarray::Axis(0));
                for mask in 0u32..(1 << n) {
                    let f: Vec<usize> = (0..n).filter(|&i| mask & (1 << i) != 0).collect();
                    if f.len() < n - s {
                        continue;
                    }
                    assert!(code.is_decodable(&f));
                    let d = code.decode(&f).unwrap();
                    assert!(d.exact, "n={n} s={s} {speeds:?} F={f:?}: {}", d.residual);
                    let msgs: Vec<Array1<f64>> = f
                        .iter()
                        .map(|&w| {
                            let mut m = Array1::zeros(3);
                            code.encode_into(w, g.view(), m.view_mut());
                            m
                        })
                        .collect();
                    let views: Vec<_> = msgs.iter().map(|m| m.view()).collect();
                    let mut out = Array1::zeros(3);
                    combine_into(&d, &views, out.view_mut());
                    let err = (&out - &full).mapv(f64::abs).sum() / full.mapv(f64::abs).sum();
                    assert!(err < 1e-8, "n={n} s={s} {speeds:?} F={f:?}: {err}");
                }
                // one fewer responder is not promised
                if n > s + 1 {
                    let f: Vec<usize> = (0..n - s - 1).collect();
                    assert!(!code.is_decodable(&f));
                }
            }
        }
    }
}

#[test]
fn every_partition_has_s_plus_1_distinct_holders_and_loads_follow_speed() {
    for n in [4, 7, 10] {
        for s in 0..3 {
            for speeds in speed_vectors(n) {
                let code = hetero(n, s, &speeds);
                let k = code.n_partitions();
                assert_eq!(k, PARTS_PER_WORKER * n);
                let mut holders = vec![Vec::new(); k];
                for w in 0..n {
                    let a = code.assignment(w);
                    assert!(!a.is_empty(), "worker {w} holds nothing");
                    assert!(a.windows(2).all(|p| p[0] < p[1]), "repeats on {w}");
                    assert_eq!(a.len(), code.coefficients(w).len());
                    for &j in a {
                        holders[j].push(w);
                    }
                }
                assert!(holders.iter().all(|h| h.len() == s + 1));
                // expected finish time L_i / v_i within one partition of the ideal (when
                // no worker's share is capped at k)
                let total: f64 = speeds.iter().sum();
                let ideal = (k * (s + 1)) as f64 / total;
                let max_v = speeds.iter().copied().fold(0.0, f64::max);
                if ideal * max_v > k as f64 {
                    continue;
                }
                for (w, &v) in speeds.iter().enumerate() {
                    let l = code.assignment(w).len() as f64;
                    if ideal * v >= 1.0 {
                        assert!(
                            (l - ideal * v).abs() <= 1.0,
                            "n={n} s={s} {speeds:?} worker {w}: {l} vs {}",
                            ideal * v
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn loads_are_capped_and_sum_to_k_times_s_plus_1() {
    // one worker 100× faster would want more than k: capped at k, the rest shared
    let l = loads(16, 2, &[100.0, 1.0, 1.0, 1.0]);
    assert_eq!(l.iter().sum::<usize>(), 48);
    assert_eq!(l[0], 16);
    assert!(l[1..].iter().all(|&x| (10..=11).contains(&x)), "{l:?}");
    assert_eq!(loads(8, 1, &[1.0; 4]), vec![4; 4]);
    let l = loads(8, 1, &[1.0, 1.0, 2.0, 1e-6]);
    assert!(l.iter().all(|&x| x >= 1), "{l:?}");
    assert_eq!(l.iter().sum::<usize>(), 16);
}

#[test]
fn the_same_seed_builds_the_same_code() {
    let a = hetero(6, 2, &[1.0, 2.0, 1.0, 0.5, 1.0, 1.0]);
    let b = hetero(6, 2, &[1.0, 2.0, 1.0, 0.5, 1.0, 1.0]);
    assert_eq!(a.matrix(), b.matrix());
    assert!(a.summary().unwrap().contains("speeds 1,2,1,0.5,1,1"));
}

#[test]
fn bad_speeds_are_refused_with_the_reason() {
    let opts = |v: Vec<f64>| CodeOptions {
        speeds: Some(v),
        ..CodeOptions::default()
    };
    let e = build_with(CodeKind::Hetero, 4, 1, 1, &opts(vec![1.0; 3])).unwrap_err();
    assert!(e.to_string().contains("3 speeds for n = 4"), "{e}");
    let e = build_with(CodeKind::Hetero, 3, 1, 1, &opts(vec![1.0, 0.0, 1.0])).unwrap_err();
    assert!(e.to_string().contains("speed 0 of worker 2"), "{e}");
    let e = build_with(CodeKind::CyclicMds, 4, 1, 1, &opts(vec![1.0; 4])).unwrap_err();
    assert!(e.to_string().contains("only to the hetero code"), "{e}");
    assert!("1,x".parse::<Speeds>().unwrap_err().contains("'x'"));
    assert!("1,-2".parse::<Speeds>().is_err());
    assert_eq!("1, 0.5".parse::<Speeds>().unwrap().to_string(), "1,0.5");
}
