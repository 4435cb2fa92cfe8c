//! The cost of messages and of rank 0's own work in the simulator, and their fit from real runs.
//!
//! A message costs a latency α, then β seconds per byte: parameters reach every worker
//! α + β × bytes after their post (the workers copy in parallel), and a result waits α, then
//! rank 0 receives it, one message at a time, for β × bytes of its time. A round trip to an idle
//! rank 0 is therefore 2α + β × (parameter bytes + result bytes).
//!
//! Fit ([`fit_link`]): in a real run, the time from the post to a worker's arrival at rank 0
//! minus its own compute and injected delay (both in its message header) is that round trip,
//! plus whatever the operating system adds (on an oversubscribed node, waiting for a core). The
//! median round trip of each run is one observation at that run's message size; with runs of two
//! or more sizes (e.g. a9a's 1 KB and Fashion-MNIST's 63 KB messages) α and β come from a least
//! squares line through them, with one size β keeps its default and α takes the rest. Rank 0's
//! step time is the median of wall time minus the last on-time arrival; the gap between
//! iterations the mean of the training clock's increase minus the wall time. The first iteration
//! of a run (warm-up, gradient check) is left out.

use crate::io::metrics::percentile;

/// Latency and per-byte cost of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// α: seconds from a send to the message being receivable.
    pub alpha_s: f64,
    /// β: seconds per byte (parameters to each worker; rank 0's receive of each result).
    pub beta_s_per_byte: f64,
}

/// Rank 0's own time per iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overheads {
    /// From the decodable set to the step: decode, optimizer step, bookkeeping.
    pub step_s: f64,
    /// Between the step and the next post: evaluation every `--eval-every`, results, log.
    pub gap_s: f64,
}

/// The link of this machine (2 cores, Open MPI 4.1 shared memory, `--oversubscribe`, 9 ranks),
/// fitted by `gradcode simulate --fit-link` from uncoded runs of a9a (1.1 KB messages) and
/// Fashion-MNIST softmax (63 KB) with `exp:20` at n = 8 (docs/tuning.md). The per-byte cost
/// reflects cores shared by nine processes more than memory bandwidth.
pub const DEFAULT_LINK: LinkModel = LinkModel {
    alpha_s: 0.6e-3,
    beta_s_per_byte: 0.25e-6,
};

/// Rank 0's defaults when nothing is replayed: half a millisecond per step, no gap.
pub const DEFAULT_OVERHEADS: Overheads = Overheads {
    step_s: 0.5e-3,
    gap_s: 0.0,
};

/// One observed round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    /// Parameter bytes plus result bytes of the round trip.
    pub bytes: f64,
    /// Seconds from the post to the arrival, less the worker's compute and injected delay.
    pub round_trip_s: f64,
}

/// Fit α and β to round trips (see the module docs); `default_beta` when all samples have one
/// message size. `None` when there is no finite sample.
pub fn fit_link(samples: &[LinkSample], default_beta: f64) -> Option<LinkModel> {
    // Median round trip per message size.
    let mut sizes: Vec<f64> = samples
        .iter()
        .filter(|s| s.round_trip_s.is_finite() && s.bytes.is_finite())
        .map(|s| s.bytes)
        .collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let points: Vec<(f64, f64)> = sizes
        .iter()
        .map(|&b| {
            let mut rt: Vec<f64> = samples
                .iter()
                .filter(|s| s.bytes == b && s.round_trip_s.is_finite())
                .map(|s| s.round_trip_s)
                .collect();
            rt.sort_by(f64::total_cmp);
            (b, percentile(&rt, 0.5))
        })
        .collect();
    match points.as_slice() {
        [] => None,
        [(b, rt)] => Some(LinkModel {
            alpha_s: ((rt - default_beta * b) / 2.0).max(0.0),
            beta_s_per_byte: default_beta,
        }),
        _ => {
            // Least squares rt = c + β·bytes, c = 2α.
            let m = points.len() as f64;
            let mx = points.iter().map(|p| p.0).sum::<f64>() / m;
            let my = points.iter().map(|p| p.1).sum::<f64>() / m;
            let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
            let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
            let beta = (sxy / sxx).max(0.0);
            Some(LinkModel {
                alpha_s: ((my - beta * mx) / 2.0).max(0.0),
                beta_s_per_byte: beta,
            })
        }
    }
}

impl LinkModel {
    /// Seconds from the post of `bytes` of parameters to their arrival at a worker.
    pub fn delivery_s(&self, bytes: f64) -> f64 {
        self.alpha_s + self.beta_s_per_byte * bytes
    }
    /// Seconds rank 0 spends receiving a message of `bytes`.
    pub fn receive_s(&self, bytes: f64) -> f64 {
        self.beta_s_per_byte * bytes
    }
}
