//! A discrete-event simulator of the training loop (issue 22 §1; GUIDE §2, §4): rank 0 posts
//! the parameters → each worker computes its share and sleeps its injected delay → its messages
//! travel to rank 0 → rank 0 stops at the first decodable set (or at the deadline, by the same
//! `wait` / `best-effort` policy as the real job) → it steps → the next iteration. MPI-free and
//! HDF5-free: the same [`GradientCode`](crate::coding::GradientCode)s and straggler models as the
//! real job, and the protocol rules of `comm::Collector` and `comm::WorkerLink`:
//!
//! - a worker still computing an older iteration is not given the new one; it is handed the
//!   current parameters when its late message reaches rank 0 during the collection, or at the
//!   start of the next iteration ([`des`]);
//! - with `--chunks C` a worker sends each chunk as it finishes (the delay spread over the
//!   chunks), may be handed new parameters while busy with one older round (overlap), and then
//!   abandons its remaining chunks at the next chunk boundary;
//! - late messages are drained and recorded, and with `--reuse-stale` one exactly one round
//!   late is folded into the round being collected;
//! - the oracle is the earliest moment the workers' own finish times formed a decodable set.
//!
//! Time per message: latency α, then rank 0 receives messages one at a time, each taking
//! β × bytes of its time (a single server: at n = 10⁴ the receive queue, not the latency,
//! dominates); parameters reach every worker α + β × bytes after the post ([`LinkModel`]).
//! Rank 0 spends [`Overheads::step_s`] from the decodable set to the step (decode, step,
//! bookkeeping) and [`Overheads::gap_s`] between iterations (evaluation, results).
//!
//! Where compute times and delays come from ([`Workload`]): a constant compute time per unit of
//! data held and a straggler model spec, or the **replay** of per-worker compute and delay
//! distributions recorded in results files ([`Trace`]). Compute scales with the share of the data
//! a worker holds under the simulated code against the share it held in the trace.
//!
//! Tree decode (`--decode-tree G`, [`Simulator::tree`]): the workers hold the two-level code
//! (`coding::TreeCode`), members send to their leader (each leader a single receiver like rank
//! 0), a leader whose own result is done waits for its group until it is decodable or the
//! group deadline (`--max-wait-ms`, as the real leaders) and forwards one combined message (one
//! value longer) or an abandoned marker; rank 0 decodes `coding::RootCode` over the leaders. A
//! group whose leader owes rank 0 a round for longer than `--deadline-ms` at the end of an
//! iteration falls back: its members send to rank 0 from the next round on, until the leader
//! owes nothing at the end of an iteration (then they send to it again), as `train`. Not
//! modelled there: the leader's CPU time for gathering and combining, and contention between a
//! leader and its members for cores. A replayed tree run's members have no recorded compute
//! (rank 0 never hears from them): they take the others' median per share.
//!
//! Decodability is tracked one arrival at a time through the code's stopping rule
//! ([`crate::coding::StopTracker`], O(1) per arrival), so n = 10⁴ costs O(n log n) per
//! iteration. A code without such a rule is checked on the whole sorted set after each arrival
//! (O(|F|) each, O(n²) per iteration). Decoding weights (residual, condition number) are computed
//! only up to [`DECODE_MAX_WORKERS`] workers; past that an exact code's decodable set is recorded
//! as exact by its rule (the real cyclic MDS code loses digits past n ≈ 30, GUIDE §3, which the
//! simulator does not see) and the residual of anything else is unknown (NaN).
//!
//! Not simulated: the gradient check of the first iteration (a real run's first iteration waits
//! for the uncoded pieces), message loss or corruption, contention between workers for cores (it
//! is in replayed compute times, not modelled), process death.

pub mod adapt;
mod des;
pub mod efficiency;
mod link;
pub mod plan;
mod trace;
mod workload;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use thiserror::Error;

pub use des::{Outcome, RoundDecoding, SimRound, SimSettings, Simulator, DECODE_MAX_WORKERS};
pub use link::{fit_link, LinkModel, LinkSample, Overheads, DEFAULT_LINK, DEFAULT_OVERHEADS};
pub use trace::{ReplayOrder, Sample, Trace, TraceFile};
pub use workload::{Draw, Workload};

/// Errors of the simulator.
#[derive(Debug, Error)]
pub enum SimError {
    /// A setting the simulator cannot use.
    #[error("--{name} = {value}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// A replayed results file that cannot serve as a trace.
    #[error("--replay {path}: {reason}")]
    Trace { path: PathBuf, reason: String },
    /// A `gradcode plan` jobs file that cannot be planned.
    #[error("{path}: {reason}")]
    Plan { path: PathBuf, reason: String },
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    #[error(transparent)]
    Code(#[from] crate::coding::CodeError),
    /// Under `--on-deadline wait`, no decodable set within `--max-wait-ms` (as the real job).
    #[error(
        "simulated iteration {iteration}: no decodable set of workers within --max-wait-ms \
         {max_wait_ms} ({have} of {n} workers answered; silent ranks {silent:?})"
    )]
    Timeout {
        iteration: u64,
        max_wait_ms: f64,
        have: usize,
        n: usize,
        silent: Vec<usize>,
    },
}

impl SimError {
    pub(crate) fn invalid(
        name: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> SimError {
        SimError::Invalid {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
