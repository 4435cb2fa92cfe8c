//! What one training iteration computes, behind the one loop ([`super::run`]).
//!
//! An engine turns the parameters at the evaluation point into the gradient sum Σ_r ∇ℓ_r (and
//! the loss sum) however it likes: gradient coding over partitions ([`super::coded`]), two coded
//! mat-vecs ([`super::matvec`]), or one process alone ([`super::serial`], the reference the
//! distributed engines must match). The loop around it (optimizer, checks, evaluation,
//! divergence, records, checkpoints, signals, summary) is the same for all of them.

use ndarray::{Array1, Array2, ArrayView1};

use crate::error::Result;
use crate::io::checkpoint::AdaptState;
use crate::io::results::{AdaptSwitch, AttrValue, IterationRecord, LateRow};
use crate::optim::kfac::KfacState;

/// One iteration as the loop hands it to the engine.
pub struct Iteration<'a> {
    /// Iteration number.
    pub t: u64,
    /// The evaluation point (the optimizer's look-ahead point).
    pub point: ArrayView1<'a, f64>,
    /// Whether to check the computed gradient against the exact one (outside the timed path).
    pub check: bool,
    /// Whether to also compute the K-FAC factor sums (packed) into `g[dim + 1..]`.
    pub factors: bool,
    /// The iteration's record: the engine sets its own metrics (decode, responders, timing…).
    pub rec: &'a mut IterationRecord,
    /// Late arrivals recorded during the iteration.
    pub late: &'a mut Vec<LateRow>,
    /// Runs while the engine waits with nothing to do (the loop keeps the results file flushed).
    pub idle: &'a mut dyn FnMut() -> Result<()>,
}

/// What an iteration produced.
#[derive(Debug)]
pub enum Computed {
    /// A gradient sum (exact when every responder set decoded exactly), with the check's outcome
    /// when one was asked for.
    Gradient { exact: bool, check: Option<Check> },
    /// Nothing arrived by the deadline (best-effort): no step.
    Nothing,
    /// A signal arrived while collecting: the iteration is abandoned (and run again on resume).
    Interrupted,
}

/// The outcome of comparing a computed gradient with the exact one.
#[derive(Debug, Clone)]
pub struct Check {
    /// Attributes for `/validation` (check PASSED / FAILED / INCOMPLETE, errors, bounds, ranks).
    pub attrs: Vec<(String, AttrValue)>,
    pub passed: bool,
    /// ‖ĝ − g‖/‖g‖ (NaN when it could not be computed).
    pub rel_err: f64,
    /// Seconds the check took (kept off the training clock).
    pub seconds: f64,
}

impl Check {
    /// The value of string attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find_map(|(k, v)| match v {
            AttrValue::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

/// A way of computing the gradient sum of one iteration.
pub trait GradientEngine {
    /// One line for the log: code, workers, partitions, stragglers.
    fn describe(&self) -> String;
    /// Workers (0 for the serial path).
    fn workers(&self) -> usize;
    /// Messages each worker owes per iteration (chunks; the two mat-vecs), for on-time counts.
    fn parts(&self) -> usize;
    /// The matrix recorded as `/code_matrix/B`.
    fn code_matrix(&self) -> Array2<f64>;
    /// The gradient sum at `it.point` into `g[..dim]` and the loss sum into `g[dim]` (and, when
    /// `it.factors`, the K-FAC factor sums into the rest of `g`).
    fn compute(&mut self, it: &mut Iteration<'_>, g: &mut Array1<f64>) -> Result<Computed>;
    /// K-FAC `--kfac-eig workers`: have the workers eigendecompose the factors of `state`
    /// assigned to them at iteration `t`, installing the eigenbases that arrive by the
    /// deadline. Returns the indices ([`KfacState::factor_sides`] order) of those that did not
    /// (the caller keeps their previous eigenbasis), or None when the engine has no workers or
    /// no plan, or a signal came during the round (the caller eigendecomposes everything
    /// itself).
    fn spread_eigen(
        &mut self,
        t: u64,
        state: &mut KfacState,
        it_rec: &mut IterationRecord,
        late: &mut Vec<LateRow>,
    ) -> Result<Option<Vec<usize>>> {
        let _ = (t, state, it_rec, late);
        Ok(None)
    }
    /// End the run: stop the workers with the job's `exit_code` and reconcile. Late arrivals
    /// drained meanwhile go to `late`. Returns the ranks that were not reconciled.
    fn finish(&mut self, exit_code: i32, late: &mut Vec<LateRow>) -> Result<Vec<usize>>;
    /// Ranks from which nothing at all arrived during the run.
    fn never_answered(&self) -> Vec<usize> {
        Vec::new()
    }
    /// Each worker's peak resident memory in KiB as reported at STOP (NaN where unknown).
    fn peak_rss_kib(&self) -> Vec<f64> {
        vec![f64::NAN; self.workers()]
    }
    /// Messages rejected as invalid, per worker.
    fn rejected(&self) -> Vec<u64> {
        vec![0; self.workers()]
    }
    /// `train --adapt`: the switches of s decided since the last call (for `/adapt`, written
    /// with the iteration's row).
    fn take_adapt_switches(&mut self) -> Vec<AdaptSwitch> {
        Vec::new()
    }
    /// `train --adapt`: the adaptive state a checkpoint keeps (None: the engine does not
    /// adapt).
    fn adapt_state(&self) -> Option<AdaptState> {
        None
    }
    /// `train --adapt`: resume at iteration `next` from a checkpoint's adaptive state (the s
    /// and deadline in force, a switch being confirmed); false when the engine starts again at
    /// `--stragglers` instead (it logged why).
    fn restore_adapt(&mut self, state: &AdaptState, next: u64) -> Result<bool> {
        let _ = (state, next);
        Ok(false)
    }
}
