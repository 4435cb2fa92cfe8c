//! Statistical efficiency of a batch size from the gradient noise scale (issue 22 §2; GUIDE §8).
//!
//! - **The gradient noise scale** B_noise = tr(Σ)/|G|² (McCandlish et al., "An Empirical Model of
//!   Large-Batch Training", 2018, appendix A.1): G the true gradient, Σ the per-sample gradient
//!   covariance. From gradients at two batch sizes b < B, with E|G_b|² = |G|² + tr(Σ)/b, the
//!   unbiased estimates are
//!   |G|² ≈ (B|G_B|² − b|G_b|²)/(B − b) and tr(Σ) ≈ (|G_b|² − |G_B|²)/(1/b − 1/B).
//!   Rank 0 of an uncoded minibatch run has both in every iteration: each worker's message is
//!   one partition's gradient of b rows, and their sum is the gradient of B = r·b rows
//!   ([`noise_estimates`]). Each estimate is noisy; B_noise is the ratio of their means over
//!   the run ([`noise_scale`]), as the paper advises, not the mean of per-iteration ratios.
//! - **Pollux's statistical efficiency** (Qiao et al., OSDI'21, §3.1): relative to a batch of M₀
//!   rows, the progress per row at M is E(M) = (B_noise + M₀)/(B_noise + M), so the iterations to
//!   reach the same loss are I(M) = I₀ · M₀/(M · E(M)) ([`iterations_at`]): a larger batch needs
//!   fewer iterations, with diminishing returns past B_noise.
//!
//! Not done: B_noise changes during training (it grows as the loss falls); the estimate is the
//! profile's, and the iteration prediction is only as good as that. The gradient carries the L2
//! term in every partition's share, which is not sampling noise; it biases |G|² up slightly.

/// Per-iteration estimates (|G|², tr Σ) from `r` partition gradients of `b` rows each (sums
/// over rows, all with the same scale: the scale cancels in B_noise): `sum_sq` = Σ_p |g_p|²,
/// `total_sq` = |Σ_p g_p|². None when fewer than 2 partitions or no rows.
pub fn noise_estimates(sum_sq: f64, total_sq: f64, r: usize, b: usize) -> Option<(f64, f64)> {
    if r < 2 || b == 0 {
        return None;
    }
    let (rf, bs) = (r as f64, b as f64);
    let bb = rf * bs;
    // Per-row means: G_b = g_p / b (averaged over p), G_B = Σ g_p / (r b).
    let small = sum_sq / rf / (bs * bs);
    let big = total_sq / (bb * bb);
    let g2 = (bb * big - bs * small) / (bb - bs);
    let trace = (small - big) / (1.0 / bs - 1.0 / bb);
    (g2.is_finite() && trace.is_finite()).then_some((g2, trace))
}

/// B_noise = mean(tr Σ)/mean(|G|²) over the finite pairs; None when there are none or the ratio
/// is not a finite positive number (e.g. a full-batch profile, or too few iterations).
pub fn noise_scale(grad_sq: &[f64], trace: &[f64]) -> Option<f64> {
    let (mut g, mut s, mut n) = (0.0, 0.0, 0usize);
    for (&a, &b) in grad_sq.iter().zip(trace) {
        if a.is_finite() && b.is_finite() {
            g += a;
            s += b;
            n += 1;
        }
    }
    let phi = s / g;
    (n > 0 && phi.is_finite() && phi > 0.0).then_some(phi)
}

/// Pollux's E(M) = (φ + M₀)/(φ + M) for B_noise `phi`.
pub fn efficiency(phi: f64, m0: f64, m: f64) -> f64 {
    (phi + m0) / (phi + m)
}

/// Iterations at batch `m` to make the progress `i0` iterations at `m0` made:
/// I₀ · M₀/(M · E(M)), rounded up, at least 1.
pub fn iterations_at(phi: f64, i0: u64, m0: f64, m: f64) -> u64 {
    let i = i0 as f64 * m0 / (m * efficiency(phi, m0, m));
    (i.ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    #[test]
    fn the_estimates_recover_the_true_gradient_and_noise() {
        // Per-row gradients G + ε, ε ~ N(0, σ² I) in d dimensions: |G|² = 4, tr Σ = d σ² = 40,
        // so B_noise = 10. r = 8 partitions of b = 4 rows each, 4000 iterations.
        let (d, sigma, r, b) = (10usize, 2.0f64, 8usize, 4usize);
        let g_true: Vec<f64> = (0..d).map(|i| if i < 4 { 1.0 } else { 0.0 }).collect();
        let noise = Normal::new(0.0, sigma).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let (mut gs, mut ts) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let mut total = vec![0.0; d];
            let mut sum_sq = 0.0;
            for _ in 0..r {
                let mut gp = vec![0.0; d];
                for _ in 0..b {
                    for (x, &g) in gp.iter_mut().zip(&g_true) {
                        *x += g + noise.sample(&mut rng);
                    }
                }
                sum_sq += gp.iter().map(|x| x * x).sum::<f64>();
                for (t, x) in total.iter_mut().zip(&gp) {
                    *t += x;
                }
            }
            let total_sq = total.iter().map(|x| x * x).sum::<f64>();
            let (g2, tr) = noise_estimates(sum_sq, total_sq, r, b).unwrap();
            gs.push(g2);
            ts.push(tr);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&gs) - 4.0).abs() < 0.2, "|G|² {}", mean(&gs));
        assert!((mean(&ts) - 40.0).abs() < 1.5, "tr Σ {}", mean(&ts));
        let phi = noise_scale(&gs, &ts).unwrap();
        assert!((phi - 10.0).abs() < 0.6, "B_noise {phi}");
        // A scale common to every gradient (a 1/N in the loss) cancels in B_noise.
        let scaled = noise_estimates(9.0 * 50.0, 9.0 * 200.0, r, b).unwrap();
        let plain = noise_estimates(50.0, 200.0, r, b).unwrap();
        assert!((scaled.1 / scaled.0 - plain.1 / plain.0).abs() < 1e-12);
    }

    #[test]
    fn no_estimate_without_two_partitions_or_a_positive_ratio() {
        assert!(noise_estimates(1.0, 1.0, 1, 4).is_none());
        assert!(noise_estimates(1.0, 1.0, 4, 0).is_none());
        assert!(noise_scale(&[], &[]).is_none());
        assert!(noise_scale(&[1.0, f64::NAN], &[-3.0, 2.0]).is_none());
        assert_eq!(
            noise_scale(&[1.0, f64::NAN, 3.0], &[2.0, 5.0, 6.0]),
            Some(2.0)
        );
    }

    #[test]
    fn pollux_iterations_fall_with_the_batch_and_flatten_past_the_noise_scale() {
        // At M₀ the profile's own iterations.
        assert_eq!(iterations_at(100.0, 400, 64.0, 64.0), 400);
        // Far below B_noise, doubling the batch halves the iterations (almost).
        let (a, b) = (
            iterations_at(1e6, 400, 64.0, 64.0),
            iterations_at(1e6, 400, 64.0, 128.0),
        );
        assert!((b as f64 / a as f64 - 0.5).abs() < 0.01, "{a} {b}");
        // Far above B_noise, a bigger batch saves nothing: I(M) → I₀ M₀/(φ + M₀).
        let c = iterations_at(1.0, 400, 64.0, 1e6);
        assert_eq!(c, (400.0f64 * 64.0 / 65.0).ceil() as u64);
        assert!((efficiency(10.0, 10.0, 30.0) - 0.5).abs() < 1e-15);
    }
}
