//! The α–β link probe at start-up (issue 20 §4): a short ping-pong between rank 0 and each
//! worker, through the collector and the worker link, fitting the latency α (seconds per
//! message) and the inverse bandwidth β (seconds per byte) of the one-way time
//! `t(b) = α + β·b` of a `b`-byte message, Hockney's model.
//!
//! Rank 0 sends probes of a few sizes ([`ProbePlan::sizes`]) to each worker in turn
//! ([`super::Collector::round_trip`]); the worker echoes each one back at once, the same size
//! ([`super::WorkerLink`]). Half a round trip is one one-way time. Per worker and size the fastest
//! of the repetitions is kept (the least disturbed by other processes). The fit ([`fit`]) is the
//! classical ping-pong one: α is the one-way time of the smallest message (less its bytes at
//! rate β; taken as the fastest time of any size, since no message beats a smaller one), β the
//! least-squares slope of the larger messages' extra time over it. The job-wide
//! fit takes, per size, the fastest time over every worker; per-worker fits go to the debug log.
//! The whole probe stops at its budget ([`ProbePlan::budget`]), with what it has measured by
//! then.
//!
//! Why anchored and per-size minima, not a least-squares line through every point: on an
//! oversubscribed node with a busy-polling MPI (MPICH's default), a round trip waits for the
//! scheduler's time slice, milliseconds on a microsecond link, and a free intercept through such
//! points comes out negative (seen: 3 runs in 3 at 5 ranks on 2 cores, no fit written).
//!
//! What it does not do: measure worker-to-worker links (every link measured ends at rank 0),
//! contention (one message in flight at a time), or anything after start-up. On an
//! oversubscribed node the times include scheduling delays: α is then the node's, not the
//! interconnect's.

use std::time::{Duration, Instant};

use super::{Collector, CommError, Transport};

/// Largest probe payload a worker echoes (values): 1 MiB.
pub const MAX_PROBE_LEN: usize = 1 << 17;

/// Which probes to send and for how long.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    /// Payload values of the probes (the 12-value header comes on top).
    pub sizes: Vec<usize>,
    /// Round trips per worker and size (the fastest is kept).
    pub reps: usize,
    /// Stop probing once this much time has passed.
    pub budget: Duration,
    /// Longest wait for one echo.
    pub wait: Duration,
}

impl ProbePlan {
    /// The start-up probe: header only, 16 KiB, 128 KiB and 1 MiB payloads, three round trips
    /// each, at most 0.15 s in all.
    pub fn startup() -> Self {
        ProbePlan {
            sizes: vec![0, 1 << 11, 1 << 14, MAX_PROBE_LEN],
            reps: 3,
            budget: Duration::from_millis(150),
            wait: Duration::from_millis(100),
        }
    }
}

/// The fitted link: one-way time `alpha_s + beta_s_per_byte · bytes`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaBeta {
    /// Latency, seconds per message.
    pub alpha_s: f64,
    /// Inverse bandwidth, seconds per byte.
    pub beta_s_per_byte: f64,
}

impl AlphaBeta {
    /// Modelled one-way time of a message of `bytes` bytes.
    pub fn time_s(&self, bytes: f64) -> f64 {
        self.alpha_s + self.beta_s_per_byte * bytes
    }
}

/// What the probe measured.
#[derive(Debug, Clone)]
pub struct LinkProbe {
    /// The fit over every worker's link (None: too few sizes measured, or a fit that is not
    /// positive).
    pub fit: Option<AlphaBeta>,
    /// The fit per worker (None where it failed).
    pub per_worker: Vec<Option<AlphaBeta>>,
    /// Round trips completed.
    pub round_trips: usize,
    /// Seconds the probe took.
    pub elapsed_s: f64,
}

/// Fit `t = α + β·b` to (bytes, seconds) points, anchored at the smallest message `b₀`. A
/// message is never faster than a smaller one, so the time of `b₀` is at most the fastest time
/// measured at any size: `t₀` is that minimum. Then β = Σ(bᵢ−b₀)(tᵢ−t₀) / Σ(bᵢ−b₀)² over the
/// larger sizes (every term ≥ 0) and α = t₀ − β·b₀. None unless at least two distinct sizes were
/// measured and both α and β come out finite and positive.
pub fn fit(points: &[(f64, f64)]) -> Option<AlphaBeta> {
    let finite = || points.iter().filter(|p| p.0.is_finite() && p.1.is_finite());
    let b0 = finite().map(|p| p.0).min_by(f64::total_cmp)?;
    let t0 = finite().map(|p| p.1).min_by(f64::total_cmp)?;
    let above = || finite().filter(|p| p.0 > b0);
    let var: f64 = above().map(|p| (p.0 - b0).powi(2)).sum();
    let cov: f64 = above().map(|p| (p.0 - b0) * (p.1 - t0)).sum();
    if var <= 0.0 {
        return None;
    }
    let beta = cov / var;
    let alpha = t0 - beta * b0;
    (alpha.is_finite() && beta.is_finite() && alpha > 0.0 && beta > 0.0).then_some(AlphaBeta {
        alpha_s: alpha,
        beta_s_per_byte: beta,
    })
}

/// Per size, the fastest one-way time over every worker (infinite where none was measured).
fn fastest_per_size(best: &[Vec<f64>], sizes: usize) -> Vec<f64> {
    (0..sizes)
        .map(|i| best.iter().map(|b| b[i]).fold(f64::INFINITY, f64::min))
        .collect()
}

/// Run `plan` from rank 0 over `c` (before the first round): returns the fit. An echo that
/// does not come within `plan.wait` ends the probe of that worker.
pub fn probe_links<T: Transport>(
    c: &mut Collector<T>,
    plan: &ProbePlan,
) -> Result<LinkProbe, CommError> {
    let n = c.workers();
    let header_bytes = (super::protocol::HEADER_LEN * 8) as f64;
    // Fastest one-way time per worker and size.
    let mut best = vec![vec![f64::INFINITY; plan.sizes.len()]; n];
    let mut dead = vec![false; n];
    let start = Instant::now();
    let mut round_trips = 0;
    let mut seq = 0;
    'reps: for _ in 0..plan.reps {
        for (w, best_w) in best.iter_mut().enumerate() {
            if dead[w] {
                continue;
            }
            for (i, &len) in plan.sizes.iter().enumerate() {
                if start.elapsed() > plan.budget {
                    break 'reps;
                }
                seq += 1;
                match c.round_trip(w, seq, len.min(MAX_PROBE_LEN), plan.wait)? {
                    Some(rtt) => {
                        round_trips += 1;
                        best_w[i] = best_w[i].min(rtt.as_secs_f64() / 2.0);
                    }
                    None => {
                        log::warn!("[rank 0] link probe: rank {} did not echo in time", w + 1);
                        dead[w] = true;
                        break;
                    }
                }
            }
        }
    }
    let points_of = |b: &Vec<f64>| -> Vec<(f64, f64)> {
        plan.sizes
            .iter()
            .zip(b)
            .filter(|(_, t)| t.is_finite())
            .map(|(&len, &t)| (header_bytes + (len * 8) as f64, t))
            .collect()
    };
    let per_worker = best.iter().map(|b| fit(&points_of(b))).collect();
    Ok(LinkProbe {
        fit: fit(&points_of(&fastest_per_size(&best, plan.sizes.len()))),
        per_worker,
        round_trips,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_line_and_refuses_what_is_not_one() {
        let line = |b: f64| 2e-6 + 1e-9 * b;
        let pts: Vec<(f64, f64)> = [96.0, 1000.0, 1e6].iter().map(|&b| (b, line(b))).collect();
        let f = fit(&pts).expect("a line fits");
        assert!((f.alpha_s - 2e-6).abs() < 1e-12, "{f:?}");
        assert!((f.beta_s_per_byte - 1e-9).abs() < 1e-18, "{f:?}");
        assert!((f.time_s(500.0) - line(500.0)).abs() < 1e-15);
        // One size only, or a slope that is not positive: no fit.
        assert_eq!(fit(&[(96.0, 1e-6), (96.0, 2e-6)]), None);
        assert_eq!(fit(&[(96.0, 2e-6), (1e6, 1e-6)]), None);
        assert_eq!(fit(&[]), None);
    }

    /// Points that are not on a line: the largest message slower per byte than the rest (a
    /// time slice lost, a cache overflowed). A free least-squares line through them has the
    /// intercept −19.5 µs; the anchored fit keeps α at the smallest message's time.
    #[test]
    fn points_off_a_line_still_give_a_positive_fit() {
        let pts = [
            (96.0, 5e-6),
            (16_480.0, 10e-6),
            (131_168.0, 50e-6),
            (1_048_672.0, 900e-6),
        ];
        let f = fit(&pts).expect("anchored fit");
        assert!(f.alpha_s > 0.0 && f.beta_s_per_byte > 0.0, "{f:?}");
        assert!((f.time_s(96.0) - 5e-6).abs() < 1e-15, "{f:?}");
        // Noisier still: the smallest message slowed by a time slice more than the rest. A
        // message is never faster than a smaller one, so α comes from the fastest time seen.
        let pts = [
            (96.0, 900e-6),
            (16_480.0, 30e-6),
            (131_168.0, 60e-6),
            (1_048_672.0, 400e-6),
        ];
        let f = fit(&pts).expect("anchored at the fastest time");
        assert!(f.alpha_s > 0.0 && f.beta_s_per_byte > 0.0, "{f:?}");
        assert!((f.time_s(96.0) - 30e-6).abs() < 1e-15, "{f:?}");
        // The job-wide points take the fastest worker per size.
        let best = vec![vec![5e-6, f64::INFINITY], vec![7e-6, 1e-4]];
        assert_eq!(fastest_per_size(&best, 2), vec![5e-6, 1e-4]);
    }
}
