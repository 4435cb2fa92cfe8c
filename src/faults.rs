//! **Test-only** fault plan: the reliability tests (RELIABILITY.md FI-3..FI-9) make a chosen
//! worker kill or stop itself, delay, or send a corrupted message, and make a checkpoint write
//! fail as a full disk would. Never set it in production: a fault plan deliberately breaks a run.
//!
//! Compiled only with the cargo feature `fault-injection` (on in `make test`, off in the binary
//! `make build`/`make run` produce). A binary built without it refuses to start an MPI job while
//! [`ENV_VAR`] is set (see `config::refuse_fault_plan`), so a plan can never be silently ignored.
//!
//! The plan comes from the environment variable [`ENV_VAR`] (`GRADCODE_FAULT_PLAN`), parsed once
//! at start-up by [`init`] on every rank (a bad plan is a configuration error naming the faulty
//! item, before any MPI traffic). Unset or empty, the plan is inert: [`active`] returns `None` and
//! the hooks cost one load of a `OnceLock`.
//!
//! Grammar: items joined by `,`; each is `ACTION:RANK@ITER[:MS]` for a worker rank (1..) or
//! `ckpt-enospc@ITER` for rank 0's checkpoint writer:
//! - `kill:R@I` — worker R raises SIGKILL just before sending its gradient of iteration I;
//!   (every worker fault fires once, at I or, when rank 0 never handed the worker iteration I,
//!   at the first later iteration it computes)
//! - `stop:R@I` — worker R raises SIGSTOP there (stopped for good: nobody sends SIGCONT);
//! - `delay:R@I:MS` — worker R sleeps MS milliseconds before computing iteration I;
//! - `nan:R@I`, `inf:R@I` — the first gradient value of its message is NaN / +Inf;
//! - `short:R@I` — the message is one value shorter than its header declares (wrong length);
//! - `stale:R@I` — the header carries another iteration (I − 1, or 1 at I = 0);
//! - `ckpt-enospc@I` — saving the checkpoint of iteration I (the `iteration` it resumes at) fails
//!   at the write step with `ENOSPC` after the temporary file was created and partly written, the
//!   way a full disk fails, through the real error path of [`crate::io::checkpoint::save`].
//!
//! Hooks: one in the worker link ([`crate::comm::link`]: delay before compute, the rest just
//! before each result is sent) and one in the checkpoint writer. Nothing else reads the plan.

use std::sync::OnceLock;

use thiserror::Error;

/// The environment variable holding the plan.
pub const ENV_VAR: &str = "GRADCODE_FAULT_PLAN";

/// A malformed fault plan.
#[derive(Debug, Error, PartialEq)]
pub enum FaultError {
    #[error("{var} item '{item}': {reason}")]
    Invalid {
        var: &'static str,
        item: String,
        reason: String,
    },
}

/// What a worker does at its planned iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WorkerFault {
    /// SIGKILL itself before sending.
    Kill,
    /// SIGSTOP itself before sending (for good).
    Stop,
    /// Sleep this many milliseconds before computing.
    Delay(u64),
    /// A NaN in the payload.
    Nan,
    /// An infinity in the payload.
    Inf,
    /// One value fewer than the header declares.
    Short,
    /// A header naming another iteration.
    Stale,
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// A worker fault at (rank, iteration).
    Worker {
        rank: usize,
        iteration: u64,
        fault: WorkerFault,
    },
    /// The checkpoint save for this iteration fails with ENOSPC.
    CheckpointEnospc { iteration: u64 },
}

/// A parsed fault plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
}

fn num<T: std::str::FromStr>(item: &str, s: &str, what: &str) -> Result<T, FaultError> {
    s.trim().parse::<T>().map_err(|_| FaultError::Invalid {
        var: ENV_VAR,
        item: item.to_string(),
        reason: format!("{what} '{s}' is not a non-negative integer"),
    })
}

impl FaultPlan {
    /// Parse a plan (grammar in the module docs). An empty string is an empty plan.
    pub fn parse(spec: &str) -> Result<FaultPlan, FaultError> {
        let mut faults = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |reason: &str| FaultError::Invalid {
                var: ENV_VAR,
                item: item.to_string(),
                reason: reason.to_string(),
            };
            if let Some(it) = item.strip_prefix("ckpt-enospc@") {
                faults.push(Fault::CheckpointEnospc {
                    iteration: num(item, it, "iteration")?,
                });
                continue;
            }
            let (action, rest) = item
                .split_once(':')
                .ok_or_else(|| bad("expected ACTION:RANK@ITER[:MS] or ckpt-enospc@ITER"))?;
            let (rank_s, after) = rest
                .split_once('@')
                .ok_or_else(|| bad("expected RANK@ITER after the action"))?;
            let rank: usize = num(item, rank_s, "rank")?;
            if rank == 0 {
                return Err(bad(
                    "rank 0 is the coordinator; worker faults need a worker rank (1..)",
                ));
            }
            let (it_s, ms) = match after.split_once(':') {
                Some((i, m)) => (i, Some(m)),
                None => (after, None),
            };
            let iteration: u64 = num(item, it_s, "iteration")?;
            let fault = match (action, ms) {
                ("delay", Some(m)) => WorkerFault::Delay(num(item, m, "milliseconds")?),
                ("delay", None) => return Err(bad("delay needs milliseconds: delay:RANK@ITER:MS")),
                (_, Some(_)) => return Err(bad("only delay takes milliseconds")),
                ("kill", None) => WorkerFault::Kill,
                ("stop", None) => WorkerFault::Stop,
                ("nan", None) => WorkerFault::Nan,
                ("inf", None) => WorkerFault::Inf,
                ("short", None) => WorkerFault::Short,
                ("stale", None) => WorkerFault::Stale,
                _ => {
                    return Err(bad(&format!(
                        "unknown action '{action}' (kill, stop, delay, nan, inf, short, stale, ckpt-enospc)"
                    )))
                }
            };
            faults.push(Fault::Worker {
                rank,
                iteration,
                fault,
            });
        }
        Ok(FaultPlan { faults })
    }

    /// Check worker ranks against the number of workers `n`.
    pub fn check_ranks(&self, n: usize) -> Result<(), FaultError> {
        for f in &self.faults {
            if let Fault::Worker {
                rank, iteration, ..
            } = f
            {
                if *rank > n {
                    return Err(FaultError::Invalid {
                        var: ENV_VAR,
                        item: format!("{rank}@{iteration}"),
                        reason: format!("rank {rank} is not a worker (workers are 1..={n})"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The worker faults of `rank` at `iteration`, in plan order.
    pub fn worker(&self, rank: usize, iteration: u64) -> impl Iterator<Item = WorkerFault> + '_ {
        self.faults.iter().filter_map(move |f| match f {
            Fault::Worker {
                rank: r,
                iteration: i,
                fault,
            } if *r == rank && *i == iteration => Some(*fault),
            _ => None,
        })
    }

    /// Total planned delay of `rank` at `iteration`, in milliseconds.
    pub fn delay_ms(&self, rank: usize, iteration: u64) -> u64 {
        self.worker(rank, iteration)
            .map(|f| match f {
                WorkerFault::Delay(ms) => ms,
                _ => 0,
            })
            .sum()
    }

    /// The worker faults of `rank` due at `iteration`: planned for it, or for an earlier
    /// iteration this worker was never handed (rank 0 hands a busy worker the newest parameters,
    /// so a worker may skip iterations); each fault fires once. `fired` holds one flag per plan
    /// item.
    pub fn due(&self, rank: usize, iteration: u64, fired: &mut [bool]) -> Vec<WorkerFault> {
        let mut out = Vec::new();
        for (f, done) in self.faults.iter().zip(fired.iter_mut()) {
            if let Fault::Worker {
                rank: r,
                iteration: i,
                fault,
            } = f
            {
                if *r == rank && *i <= iteration && !*done {
                    *done = true;
                    out.push(*fault);
                }
            }
        }
        out
    }

    /// Whether saving the checkpoint of `iteration` must fail with ENOSPC.
    pub fn checkpoint_fails(&self, iteration: u64) -> bool {
        self.faults.contains(&Fault::CheckpointEnospc { iteration })
    }
}

static PLAN: OnceLock<Option<FaultPlan>> = OnceLock::new();

/// Parse [`ENV_VAR`] once (later calls return the first outcome's plan). `n` is the number of
/// workers. Unset or empty: no plan.
pub fn init(n: usize) -> Result<(), FaultError> {
    let spec = std::env::var(ENV_VAR).unwrap_or_default();
    let plan = FaultPlan::parse(&spec)?;
    plan.check_ranks(n)?;
    let plan = if plan.faults.is_empty() {
        None
    } else {
        log::warn!("test-only fault plan active: {spec}");
        Some(plan)
    };
    let _ = PLAN.set(plan);
    Ok(())
}

/// The active plan, if [`init`] found one.
pub fn active() -> Option<&'static FaultPlan> {
    PLAN.get().and_then(Option::as_ref)
}

/// Sleep the planned delays of `due` (a worker's faults at `iteration`) before it computes.
pub fn delay_before_compute(due: &[WorkerFault], rank: usize, iteration: u64) {
    let ms: u64 = due
        .iter()
        .map(|f| match f {
            WorkerFault::Delay(ms) => *ms,
            _ => 0,
        })
        .sum();
    if ms > 0 {
        log::warn!("[rank {rank}] fault plan: {ms} ms delay at iteration {iteration}");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Apply the corrupting faults of `fault` to an outgoing gradient message (`head` already
/// written for `iteration`, `payload` the gradient and loss). Returns the number of values to
/// send out of `full_len`. Kill and stop act here, just before the send, and do not return.
pub fn corrupt_message(
    fault: WorkerFault,
    iteration: u64,
    head: &mut [f64],
    payload: &mut [f64],
    full_len: usize,
) -> usize {
    match fault {
        WorkerFault::Kill => {
            log::warn!("fault plan: SIGKILL at iteration {iteration}");
            // SAFETY: raise only sends a signal to this process.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
            full_len
        }
        WorkerFault::Stop => {
            log::warn!("fault plan: SIGSTOP at iteration {iteration}");
            // SAFETY: as above.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
            full_len
        }
        WorkerFault::Nan | WorkerFault::Inf => {
            if let Some(v) = payload.first_mut() {
                *v = if fault == WorkerFault::Nan {
                    f64::NAN
                } else {
                    f64::INFINITY
                };
            }
            full_len
        }
        WorkerFault::Short => full_len.saturating_sub(1),
        WorkerFault::Stale => {
            // The iteration lives in header slot 2 (comm::protocol::Header::write).
            if let Some(v) = head.get_mut(2) {
                *v = if iteration == 0 {
                    1.0
                } else {
                    (iteration - 1) as f64
                };
            }
            full_len
        }
        WorkerFault::Delay(_) => full_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        let p = FaultPlan::parse(
            "kill:2@5, stop:3@1,delay:1@0:250,nan:4@7,inf:4@8,short:1@2,stale:2@0,ckpt-enospc@4",
        )
        .unwrap();
        assert_eq!(p.faults.len(), 8);
        assert_eq!(p.worker(2, 5).collect::<Vec<_>>(), vec![WorkerFault::Kill]);
        assert_eq!(p.worker(3, 1).collect::<Vec<_>>(), vec![WorkerFault::Stop]);
        assert_eq!(p.delay_ms(1, 0), 250);
        assert_eq!(p.delay_ms(1, 1), 0);
        assert_eq!(p.worker(4, 7).collect::<Vec<_>>(), vec![WorkerFault::Nan]);
        assert_eq!(p.worker(1, 2).collect::<Vec<_>>(), vec![WorkerFault::Short]);
        assert!(p.checkpoint_fails(4) && !p.checkpoint_fails(2));
        assert_eq!(p.worker(2, 6).count(), 0);
        assert!(FaultPlan::parse("").unwrap().faults.is_empty());
        assert!(FaultPlan::parse(" , ").unwrap().faults.is_empty());
    }

    #[test]
    fn due_faults_fire_once_even_when_their_iteration_was_skipped() {
        let p = FaultPlan::parse("nan:2@3,delay:2@5:10,kill:1@3").unwrap();
        let mut fired = vec![false; p.faults.len()];
        assert!(p.due(2, 2, &mut fired).is_empty());
        // Rank 2 never got iteration 3: the NaN fires at 4, once.
        assert_eq!(p.due(2, 4, &mut fired), vec![WorkerFault::Nan]);
        assert!(p.due(2, 4, &mut fired).is_empty());
        assert_eq!(p.due(2, 9, &mut fired), vec![WorkerFault::Delay(10)]);
        assert!(p.due(2, 10, &mut fired).is_empty());
        assert_eq!(p.due(1, 3, &mut fired), vec![WorkerFault::Kill]);
    }

    #[test]
    fn bad_plans_name_the_item_and_the_problem() {
        for (spec, want) in [
            ("kill", "expected ACTION:RANK@ITER"),
            ("kill:2", "expected RANK@ITER"),
            ("kill:x@1", "rank 'x'"),
            ("kill:0@1", "rank 0 is the coordinator"),
            ("kill:1@-1", "iteration '-1'"),
            ("boom:1@1", "unknown action 'boom'"),
            ("delay:1@1", "delay needs milliseconds"),
            ("delay:1@1:1.5", "milliseconds '1.5'"),
            ("nan:1@1:5", "only delay takes milliseconds"),
            ("ckpt-enospc@x", "iteration 'x'"),
        ] {
            let e = FaultPlan::parse(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
            assert!(e.contains(ENV_VAR), "{e}");
        }
        let e = FaultPlan::parse("kill:5@1")
            .unwrap()
            .check_ranks(4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 5 is not a worker"), "{e}");
    }

    #[test]
    fn corruptions_change_the_message_as_documented() {
        let mut head = [0.0; 8];
        head[2] = 5.0;
        let mut payload = [1.0, 2.0, 3.0];
        assert_eq!(
            corrupt_message(WorkerFault::Nan, 5, &mut head, &mut payload, 11),
            11
        );
        assert!(payload[0].is_nan());
        corrupt_message(WorkerFault::Inf, 5, &mut head, &mut payload, 11);
        assert_eq!(payload[0], f64::INFINITY);
        assert_eq!(
            corrupt_message(WorkerFault::Short, 5, &mut head, &mut payload, 11),
            10
        );
        corrupt_message(WorkerFault::Stale, 5, &mut head, &mut payload, 11);
        assert_eq!(head[2], 4.0);
        corrupt_message(WorkerFault::Stale, 0, &mut head, &mut payload, 11);
        assert_eq!(head[2], 1.0);
    }

    #[test]
    fn inert_without_init() {
        // No test in this binary calls init(): the plan is off.
        assert!(active().is_none());
    }
}
