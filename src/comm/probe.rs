//! The α–β link probe at start-up (issue 20 §4): a short ping-pong between rank 0 and each
//! worker, through the collector and the worker link, fitting the latency α (seconds per
//! message) and the inverse bandwidth β (seconds per byte) of the one-way time
//! `t(b) = α + β·b` of a `b`-byte message, Hockney's model.
//!
//! Rank 0 sends probes of a few sizes ([`ProbePlan::sizes`]) to each worker in turn
//! ([`super::Collector::round_trip`]); the worker echoes each one back at once, the same size
//! ([`super::WorkerLink`]). Half a round trip is one one-way time. Per worker and size the fastest
//! of the repetitions is kept (the least disturbed by other processes), and α and β are the least
//! squares fit over all of them (per worker too, for the log). The whole probe stops at its
//! budget ([`ProbePlan::budget`]), with what it has measured by then.
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

/// Least-squares fit of `t = α + β·b` to (bytes, seconds) points; None unless at least two
/// distinct sizes were measured and both α and β come out finite and positive.
pub fn fit(points: &[(f64, f64)]) -> Option<AlphaBeta> {
    let n = points.len() as f64;
    let mean_b = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_t = points.iter().map(|p| p.1).sum::<f64>() / n;
    let var: f64 = points.iter().map(|p| (p.0 - mean_b).powi(2)).sum();
    let cov: f64 = points.iter().map(|p| (p.0 - mean_b) * (p.1 - mean_t)).sum();
    if points.len() < 2 || var <= 0.0 {
        return None;
    }
    let beta = cov / var;
    let alpha = mean_t - beta * mean_b;
    (alpha.is_finite() && beta.is_finite() && alpha > 0.0 && beta > 0.0).then_some(AlphaBeta {
        alpha_s: alpha,
        beta_s_per_byte: beta,
    })
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
    let all: Vec<(f64, f64)> = best.iter().flat_map(points_of).collect();
    Ok(LinkProbe {
        fit: fit(&all),
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
}
