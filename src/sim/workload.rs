//! Where a simulated worker's compute time and delay come from: a constant compute time per
//! unit share of the data with a straggler model spec (the real job's [`StragglerSchedule`],
//! seeded identically), or a replayed [`Trace`].

use super::trace::Trace;
use crate::straggler::StragglerSchedule;

/// One worker's draw for one round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// Compute seconds of the worker's whole share for one round (all its parts).
    pub compute_s: f64,
    /// Busy-spin factor (`slow:`): the compute takes this many times as long, the excess
    /// reported as injected delay, as the real worker does.
    pub slow_factor: f64,
    /// Delay after computing (spread evenly over the parts); inf when failed.
    pub delay_s: f64,
    /// The worker stops answering (from this round on).
    pub failed: bool,
}

/// The source of compute times and delays.
#[derive(Debug, Clone)]
pub enum Workload {
    /// `compute_per_share_s` × the worker's share of the data, and the delays, slow-downs and
    /// failures of a straggler schedule.
    Model {
        compute_per_share_s: f64,
        schedule: StragglerSchedule,
    },
    /// Recorded samples.
    Replay(Trace),
}

impl Workload {
    /// Scale the compute times drawn from now on by `factor` (delays unchanged).
    pub fn scale_compute(&mut self, factor: f64) {
        match self {
            Workload::Model {
                compute_per_share_s,
                ..
            } => *compute_per_share_s *= factor,
            Workload::Replay(trace) => trace.scale_compute(factor),
        }
    }

    /// Worker `w`'s (0-based) draw at `round`, holding `share` of the data.
    pub fn draw(&mut self, round: u64, w: usize, share: f64) -> Draw {
        match self {
            Workload::Model {
                compute_per_share_s,
                schedule,
            } => {
                let rank = w + 1;
                let failed = schedule.failed(round, rank);
                Draw {
                    compute_s: *compute_per_share_s * share,
                    slow_factor: schedule.slow_factor(rank),
                    delay_s: if failed {
                        f64::INFINITY
                    } else {
                        schedule.delay_s(round, rank)
                    },
                    failed,
                }
            }
            Workload::Replay(trace) => {
                let s = trace.draw(round, w);
                Draw {
                    compute_s: s.compute_per_share_s * share,
                    slow_factor: s.slow_factor.max(1.0),
                    delay_s: s.delay_s,
                    failed: s.delay_s.is_infinite(),
                }
            }
        }
    }
}
