//! Unit tests of the compressors and of error feedback.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn random_v(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| StandardNormal.sample(&mut rng)).collect()
}

fn key(iteration: u64) -> NoiseKey {
    NoiseKey {
        seed: 7,
        iteration,
        rank: 3,
        part: 0,
    }
}

/// C(v) as the receiver sees it.
fn round_trip(c: &Compressor, v: &[f64], k: NoiseKey) -> Vec<f64> {
    let mut wire = vec![f64::NAN; c.wire_len(v.len())];
    c.compress(v, k, &mut wire).unwrap();
    assert!(
        wire.iter().all(|x| x.is_finite()),
        "{c}: a non-finite wire word"
    );
    let mut out = vec![f64::NAN; v.len()];
    c.decompress(&wire, &mut out).unwrap();
    out
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// QSGD is unbiased: the mean of C(v) over many seeds (iterations) tends to v, within four
/// standard errors of the measured variance, which itself stays below the QSGD bound
/// min(B/s², √B/s)·‖v‖² for buckets of B values (one bucket of 200, or buckets of 16); the
/// same key gives the same message, another key another.
#[test]
fn qsgd_is_unbiased_over_seeds_and_reproducible() {
    let len = 200;
    let v = random_v(len, 1);
    for (levels, bucket) in [(1u32, 512), (4, 512), (16, 512), (2, 16)] {
        let c = Compressor::Qsgd { levels, bucket };
        let draws = 4000;
        let mut mean = vec![0.0; len];
        let mut sq_err = 0.0;
        for t in 0..draws {
            let q = round_trip(&c, &v, key(t));
            for ((m, x), y) in mean.iter_mut().zip(&q).zip(&v) {
                *m += x / draws as f64;
                sq_err += (x - y) * (x - y) / draws as f64;
            }
        }
        let (s, b) = (f64::from(levels), bucket.min(len) as f64);
        let bound = (b / (s * s)).min(b.sqrt() / s) * norm(&v).powi(2);
        assert!(
            sq_err <= bound,
            "qsgd:{levels}: E‖C(v) − v‖² {sq_err} > bound {bound}"
        );
        let bias: Vec<f64> = mean.iter().zip(&v).map(|(m, x)| m - x).collect();
        let tol = 4.0 * (sq_err / draws as f64).sqrt();
        assert!(
            norm(&bias) < tol,
            "qsgd:{levels}: ‖mean − v‖ {} ≥ {tol}",
            norm(&bias)
        );
        assert!(sq_err > 0.0);
    }
    let c = Compressor::Qsgd {
        levels: 4,
        bucket: DEFAULT_BUCKET,
    };
    assert_eq!(round_trip(&c, &v, key(5)), round_trip(&c, &v, key(5)));
    assert_ne!(round_trip(&c, &v, key(5)), round_trip(&c, &v, key(6)));
    let other_rank = NoiseKey { rank: 4, ..key(5) };
    assert_ne!(round_trip(&c, &v, key(5)), round_trip(&c, &v, other_rank));
    // Every decoded value is a multiple of ‖v‖/s with the sign of v (or 0).
    let q = round_trip(&c, &v, key(9));
    let unit = norm(&v) / 4.0;
    for (x, y) in q.iter().zip(&v) {
        let l = x / unit;
        assert!((l - l.round()).abs() < 1e-9 && l.abs() <= 4.0 + 1e-9, "{l}");
        assert!(*x == 0.0 || x.signum() == y.signum());
    }
    assert_eq!(round_trip(&c, &[0.0; 5], key(1)), vec![0.0; 5]);
}

#[test]
fn topk_keeps_the_largest_entries_and_zeros_the_rest() {
    let v = vec![0.5, -3.0, 0.1, 2.0, -2.0, 0.0, 1.0, -0.2];
    let c = Compressor::TopK { fraction: 0.3 }; // ⌈2.4⌉ = 3 entries
    let q = round_trip(&c, &v, key(0));
    // |−3| > |2| = |−2| (tie: the lower index, 3, is kept first) ... the third is −2.
    assert_eq!(q, vec![0.0, -3.0, 0.0, 2.0, -2.0, 0.0, 0.0, 0.0]);
    let c = Compressor::TopK { fraction: 0.25 }; // 2 entries: the tie goes to index 3
    assert_eq!(
        round_trip(&c, &v, key(0)),
        vec![0.0, -3.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    );
    let all = Compressor::TopK { fraction: 1.0 };
    assert_eq!(round_trip(&all, &v, key(0)), v);
    // On a long random vector: exactly k non-zeros, each at least as large as every dropped one.
    let v = random_v(5000, 2);
    let c = Compressor::TopK { fraction: 0.01 };
    let q = round_trip(&c, &v, key(0));
    let kept: Vec<f64> = q.iter().filter(|x| **x != 0.0).map(|x| x.abs()).collect();
    assert_eq!(kept.len(), 50);
    let smallest_kept = kept.iter().copied().fold(f64::INFINITY, f64::min);
    let largest_dropped = v
        .iter()
        .zip(&q)
        .filter(|(_, y)| **y == 0.0)
        .map(|(x, _)| x.abs())
        .fold(0.0, f64::max);
    assert!(smallest_kept >= largest_dropped);
    for (x, y) in q.iter().zip(&v) {
        assert!(*x == 0.0 || x == y);
    }
}

#[test]
fn sign_sends_the_mean_magnitude_with_each_sign() {
    let v = vec![1.0, -2.0, 0.0, 4.0, -1.0];
    let q = round_trip(&Compressor::Sign, &v, key(0));
    let scale = 8.0 / 5.0;
    assert_eq!(q, vec![scale, -scale, scale, scale, -scale]);
    let v = random_v(1000, 3);
    let q = round_trip(&Compressor::Sign, &v, key(0));
    let scale = v.iter().map(|x| x.abs()).sum::<f64>() / 1000.0;
    for (x, y) in q.iter().zip(&v) {
        assert_eq!(x.abs(), scale);
        assert_eq!(x.signum(), y.signum());
    }
}

/// Wire lengths follow the table of the module docs and shrink the message: at 120,958 values
/// (half of a 241,916-parameter model), qsgd:4 sends 4 bits, sign 1 bit, top-1 % about 1.3 %.
#[test]
fn wire_lengths_are_fixed_and_short() {
    let len: usize = 120_958;
    assert_eq!(Compressor::None.wire_len(len), len);
    let qsgd = |levels, bucket| Compressor::Qsgd { levels, bucket };
    assert_eq!(qsgd(4, len).wire_len(len), 1 + len.div_ceil(15));
    assert_eq!(qsgd(1, len).wire_len(len), 1 + len.div_ceil(31));
    assert_eq!(
        qsgd(4, 512).wire_len(len),
        len.div_ceil(512) + len.div_ceil(15)
    );
    assert_eq!(Compressor::Sign.wire_len(len), 1 + len.div_ceil(62));
    let k: usize = 1210;
    assert_eq!(
        Compressor::TopK { fraction: 0.01 }.wire_len(len),
        k + k.div_ceil(3)
    );
    for c in [
        qsgd(255, 512),
        Compressor::TopK { fraction: 0.5 },
        Compressor::Sign,
    ] {
        assert!(c.wire_len(len) < len, "{c}");
        let v = random_v(len, 4);
        let q = round_trip(&c, &v, key(1));
        assert_eq!(q.len(), len);
    }
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let len = 10;
    let mut out = vec![0.0; len];
    let c = Compressor::TopK { fraction: 0.2 }; // 2 values, 4-bit indices
    let mut wire = vec![0.0; c.wire_len(len)];
    c.compress(&random_v(len, 5), key(0), &mut wire).unwrap();
    let mut bad = wire.clone();
    bad[2] = f64::from_bits(15 | (3 << 4)); // index 15 ≥ 10
    let e = c.decompress(&bad, &mut out).unwrap_err().to_string();
    assert!(e.contains("index 15 of a vector of 10"), "{e}");
    assert!(c.validate(&bad, len).is_err() && c.validate(&wire, len).is_ok());
    bad[2] = f64::from_bits(1 << 62);
    assert!(c.decompress(&bad, &mut out).is_err());
    assert!(c.decompress(&wire[..2], &mut out).is_err());
    let q = Compressor::Qsgd {
        levels: 2,
        bucket: 512,
    }; // codes 0..=4 in 3 bits
    let mut wire = vec![0.0; q.wire_len(len)];
    q.compress(&random_v(len, 6), key(0), &mut wire).unwrap();
    wire[1] = f64::from_bits(7);
    let e = q.decompress(&wire, &mut out).unwrap_err().to_string();
    assert!(e.contains("level code 7 above 4"), "{e}");
    wire[0] = -1.0;
    assert!(q.decompress(&wire, &mut out).is_err());
    let mut wire = vec![0.0; Compressor::Sign.wire_len(len)];
    wire[0] = f64::INFINITY;
    assert!(Compressor::Sign.decompress(&wire, &mut out).is_err());
    let low: Compressor = "lowrank:2".parse().unwrap();
    assert!(low.compress(&[1.0], key(0), &mut [0.0]).is_err());
}

#[test]
fn specs_parse_and_bad_ones_say_why() {
    for (text, c) in [
        ("none", Compressor::None),
        (
            "qsgd:8",
            Compressor::Qsgd {
                levels: 8,
                bucket: DEFAULT_BUCKET,
            },
        ),
        (
            "qsgd:8:64",
            Compressor::Qsgd {
                levels: 8,
                bucket: 64,
            },
        ),
        ("topk:0.01", Compressor::TopK { fraction: 0.01 }),
        ("sign", Compressor::Sign),
        (
            "lowrank:4",
            Compressor::LowRank {
                rank: 4,
                matrices: Matrices::default(),
            },
        ),
    ] {
        assert_eq!(text.parse::<Compressor>().unwrap(), c);
        assert_eq!(c.to_string().parse::<Compressor>().unwrap(), c);
    }
    for (text, want) in [
        (
            "topk:0",
            "the fraction of entries kept must be a number in (0, 1]",
        ),
        ("topk:1.5", "(0, 1]"),
        ("topk", "topk needs FRACTION"),
        ("qsgd:0", "from 1 to"),
        ("qsgd:4:0", "bucket size"),
        ("lowrank:0", "at least 1"),
        ("sign:2", "takes no argument"),
        ("gzip", "unknown compressor (expected none, qsgd:LEVELS"),
    ] {
        let e = text.parse::<Compressor>().unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
    assert!(Compressor::Sign.is_biased() && !"qsgd:2".parse::<Compressor>().unwrap().is_biased());
    // ω = min(B/s², √B/s): √512/4 = 5.66 for qsgd:4, 16/64² = 0.0039 for qsgd:64:16.
    let omega = |t: &str| t.parse::<Compressor>().unwrap().variance_bound().unwrap();
    assert!((omega("qsgd:4") - 512f64.sqrt() / 4.0).abs() < 1e-12);
    assert!((omega("qsgd:64:16") - 16.0 / 4096.0).abs() < 1e-12);
    assert_eq!(Compressor::Sign.variance_bound(), None);
}

/// Error feedback: what was sent plus the residual is what was given, across a skipped send
/// (the residual waits for the next message); top-k with feedback eventually delivers the
/// coordinates it dropped at first.
#[test]
fn error_feedback_accumulates_and_survives_a_skipped_send() {
    let c = Compressor::TopK { fraction: 0.25 };
    let mut ef = ErrorFeedback::default();
    let inputs = [random_v(8, 10), random_v(8, 11), random_v(8, 12)];
    let mut given = [0.0; 8];
    let mut sent_sum = [0.0; 8];
    let mut wire = vec![0.0; c.wire_len(8)];
    for (t, v) in inputs.iter().enumerate() {
        if t == 1 {
            // The worker missed this iteration: no message, the residual is kept as it was.
            continue;
        }
        let before = ef.residual().to_vec();
        ef.compress(&c, v, key(t as u64), &mut wire).unwrap();
        let mut sent = vec![0.0; 8];
        c.decompress(&wire, &mut sent).unwrap();
        // The message carried the residual of the earlier send.
        if t == 2 {
            let plain = round_trip(&c, v, key(2));
            assert_ne!(sent, plain, "the residual was not added");
            assert!(before.iter().any(|e| *e != 0.0));
        }
        for i in 0..8 {
            given[i] += v[i];
            sent_sum[i] += sent[i];
        }
    }
    for i in 0..8 {
        let lhs = sent_sum[i] + ef.residual()[i];
        assert!((lhs - given[i]).abs() < 1e-12, "{i}: {lhs} vs {}", given[i]);
    }
    // A constant input: sign with feedback sends the right total up to a bounded residual.
    let mut ef = ErrorFeedback::default();
    let v = vec![1.0, 0.01, -0.5, 0.0];
    let mut total = [0.0; 4];
    let mut wire = vec![0.0; Compressor::Sign.wire_len(4)];
    for t in 0..200 {
        ef.compress(&Compressor::Sign, &v, key(t), &mut wire)
            .unwrap();
        let mut sent = vec![0.0; 4];
        Compressor::Sign.decompress(&wire, &mut sent).unwrap();
        total.iter_mut().zip(&sent).for_each(|(a, b)| *a += b);
    }
    for (a, x) in total.iter().zip(&v) {
        assert!((a / 200.0 - x).abs() < 0.05, "{a} vs {x}");
    }
}

/// `v` laid out as blocks (units × (inputs + 1)) whose weights are rank-`ranks[l]` products of
/// random factors, random biases, then `tail` random values.
fn low_rank_vector(shapes: &[(usize, usize)], ranks: &[usize], tail: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for (l, (&(units, inputs), &r)) in shapes.iter().zip(ranks).enumerate() {
        let a = random_v(units * r, 10 + l as u64);
        let b = random_v(inputs * r, 20 + l as u64);
        let bias = random_v(units, 30 + l as u64);
        for u in 0..units {
            for i in 0..inputs {
                v.push((0..r).map(|k| a[u * r + k] * b[i * r + k]).sum());
            }
            v.push(bias[u]);
        }
    }
    v.extend(random_v(tail, 40));
    v
}

/// Low-rank: a matrix of rank ≤ r comes back exactly (one power step spans its column space),
/// the biases and the tail as they are; the wire holds r(units + inputs) + units per matrix;
/// the cold start is reproducible by key; without matrices, or with too many, it is refused.
#[test]
fn lowrank_recovers_low_rank_matrices_exactly_in_fewer_values() {
    let shapes = [(6, 9), (4, 6), (2, 4)];
    let v = low_rank_vector(&shapes, &[2, 1, 2], 3);
    let c = "lowrank:2".parse::<Compressor>().unwrap();
    let c = c.with_matrices(&shapes).unwrap();
    let len = v.len();
    assert_eq!(len, 60 + 28 + 10 + 3);
    // r = 2, 2, 2: 2·15 + 6, 2·10 + 4, 2·6 + 2, then 3.
    assert_eq!(c.wire_len(len), 36 + 24 + 14 + 3);
    let back = round_trip(&c, &v, key(0));
    let err = back
        .iter()
        .zip(&v)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-12, "max error {err}");
    let (mut w1, mut w2) = (vec![0.0; c.wire_len(len)], vec![0.0; c.wire_len(len)]);
    c.compress(&v, key(3), &mut w1).unwrap();
    c.compress(&v, key(5), &mut w2).unwrap();
    assert_eq!(
        w1, w2,
        "the cold start depends on seed, rank and chunk, not the iteration"
    );
    assert_eq!(
        Compressor::Sign.with_matrices(&shapes),
        Ok(Compressor::Sign)
    );
    assert!(c.with_matrices(&[]).is_err());
    assert!(c.with_matrices(&[(2, 2); MAX_MATRICES + 1]).is_err());
}

/// Low-rank's warm start: on a full-rank matrix, repeated messages with the kept Q (power
/// iteration across messages) approach the best rank-r approximation — the error falls from
/// the cold start's and settles — while a cold start every time stays where it began.
#[test]
fn lowrank_warm_start_improves_the_approximation() {
    let shapes = [(12, 10)];
    let v = low_rank_vector(&shapes, &[10], 0);
    let c = "lowrank:3"
        .parse::<Compressor>()
        .unwrap()
        .with_matrices(&shapes)
        .unwrap();
    let mut wire = vec![0.0; c.wire_len(v.len())];
    let mut out = vec![0.0; v.len()];
    let mut warm = Vec::new();
    let mut errs = Vec::new();
    for t in 0..30 {
        c.compress_with(&v, key(t), &mut wire, &mut warm).unwrap();
        c.decompress(&wire, &mut out).unwrap();
        let d: Vec<f64> = out.iter().zip(&v).map(|(a, b)| a - b).collect();
        errs.push(norm(&d) / norm(&v));
    }
    assert_eq!(warm.len(), 10 * 3);
    let cold = errs[0];
    let last = errs[29];
    assert!(last < cold - 1e-3, "warm {last} vs cold {cold}: {errs:?}");
    assert!(
        (errs[28] - last).abs() < 1e-3 * last,
        "not settled: {errs:?}"
    );
    assert!(last < 1.0 && last > 0.0);
}
