//! The one training loop (rank 0, or the single process of `--reference`):
//! post → collect → decode → step → record → checkpoint, around a [`GradientEngine`] that says
//! how the gradient of one iteration is computed.
//!
//! Engines: [`coded::CodedGradients`] (gradient coding, Tandon et al.; GUIDE §3),
//! [`matvec::MatVecGradients`] (coded training through two coded mat-vecs, Lee et al. §IV) and
//! [`serial::SerialGradients`] (the serial reference the distributed engines must reproduce).
//! Everything else is written once, here: the optimizer step on the objective, the gradient
//! check against the exact gradient (the first iteration always, then every
//! `--check-gradient-every`; outside the timed path), test evaluation every `--eval-every`,
//! divergence detection, one results row per iteration and the late arrivals, checkpoints every
//! `--checkpoint-every` and on SIGUSR1/SIGTERM/SIGINT, the end-of-run summary, and the run's
//! status and exit code ([`RunStatus`]).
//!
//! Not here: MPI start-up (the job entry point in `cmd::train`), the protocol (`comm`).

pub mod adapt;
pub mod checkpointer;
pub mod coded;
pub mod engine;
pub mod matvec;
pub mod phase;
pub mod serial;
pub mod summary;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use checkpointer::Checkpointer;
pub use engine::{Check, Computed, GradientEngine, Iteration};
pub use summary::{RunSummary, SummaryText};

use ndarray::Array1;

use crate::config::RunConfig;
use crate::data::{try_zeros, Dataset};
use crate::error::{Error, Result};
use crate::io::checkpoint::{AdaptState, Checkpoint};
use crate::io::results::{
    self, AttrValue, FinalRecord, IterationRecord, LateRow, Metric, PeakMemory, RecordedRows,
    RunWriter,
};
use crate::model::{Evaluation, Model, Objective, Workspace};
use crate::optim::kfac::{self, EigSite, KfacSpec, KfacState};
use crate::optim::Optimizer;

/// Set by SIGUSR1 / SIGTERM / SIGINT: checkpoint at the next iteration boundary and stop.
pub static INTERRUPT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// Route SIGUSR1 (Slurm's early warning, forwarded by mpirun), SIGTERM and SIGINT (Ctrl-C) to
/// [`INTERRUPT`].
pub fn install_signal_handlers() {
    for sig in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every iteration ran and every worker was reconciled at shutdown.
    Complete,
    /// Every iteration ran but some worker never answered the STOP (named in the log and file).
    Degraded,
    /// Stopped by a signal after writing a checkpoint; resume with --resume.
    Interrupted,
    /// The objective became non-finite or exploded; the rows are kept.
    Diverged,
    /// A fatal error stopped the run.
    Failed,
}

impl RunStatus {
    /// The `status` attribute value.
    pub fn name(&self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Degraded => "degraded",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
        }
    }
    /// The process exit code (documented in `docs/training.md`).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunStatus::Complete => 0,
            RunStatus::Failed | RunStatus::Diverged => 1,
            RunStatus::Degraded => 3,
            RunStatus::Interrupted => 75,
        }
    }
}

/// What the loop hands back to the job.
#[derive(Debug)]
pub struct Outcome {
    pub status: RunStatus,
    /// Workers (ranks) that were not reconciled at shutdown; the job must abort when non-empty.
    pub unreconciled: Vec<usize>,
    /// The error that stopped the run, if any.
    pub error: Option<Error>,
}

/// Everything the loop needs besides the engine.
pub struct Setup<'a> {
    pub cfg: &'a RunConfig,
    pub model: &'a dyn Model,
    /// Rows the loss sum of a step is over (the objective's N): the training rows, or k·B with
    /// minibatches ([`RunConfig::step_rows`]).
    pub n_rows: usize,
    pub test: Option<Dataset>,
    pub writer: RunWriter,
    /// The checkpoint to resume from.
    pub resume: Option<Checkpoint>,
    /// The rows the results file already holds (a resumed run).
    pub initial: Option<RecordedRows>,
}

/// What one pass of the loop body decided.
enum Next {
    /// Go on with the next iteration.
    Continue,
    /// The iteration was abandoned (a signal): do not advance.
    Again,
    /// Stop the run (status set).
    Stop,
}

/// The loop's state.
struct Trainer<'a> {
    cfg: &'a RunConfig,
    model: &'a dyn Model,
    objective: Objective,
    test: Option<Dataset>,
    writer: RunWriter,
    ckpt: Checkpointer,
    opt: Optimizer,
    /// K-FAC's settings (`--optimizer kfac`; its state is in the optimizer's).
    kfac: Option<KfacSpec>,
    /// The preconditioned gradient (K-FAC only).
    pre: Vec<f64>,
    /// `--kfac-eig auto`: the measurement and the choice.
    eig_auto: kfac::EigAuto,
    first: u64,
    elapsed0: f64,
    start: Instant,
    /// Gradient sum and loss sum; the objective's gradient; the evaluation point.
    g: Array1<f64>,
    grad: Array1<f64>,
    point: Array1<f64>,
    ws: Workspace,
    rec: IterationRecord,
    late: Vec<LateRow>,
    summary: RunSummary,
    validation: Vec<(String, AttrValue)>,
    checks_s: f64,
    first_loss: Option<f64>,
    last_loss: f64,
    last_test: Option<Evaluation>,
    all_exact: bool,
    status: RunStatus,
    error: Option<Error>,
}

/// Run the loop until the last iteration, a signal, divergence or a fatal error, then stop the
/// engine's workers and write the end of the results file.
pub fn run(setup: Setup<'_>, engine: &mut dyn GradientEngine) -> Outcome {
    let mut tr = match Trainer::new(setup, engine) {
        Ok(tr) => tr,
        Err(e) => {
            log::error!("[rank 0] {e}");
            // Nothing was run: stop the workers and report the error.
            let unreconciled = engine
                .finish(RunStatus::Failed.exit_code(), &mut Vec::new())
                .unwrap_or_default();
            return Outcome {
                status: RunStatus::Failed,
                unreconciled,
                error: Some(e),
            };
        }
    };
    log::info!(
        "[rank 0] {}; model {} (dim {}), {} rows per step; iterations {}..{}{}",
        engine.describe(),
        tr.model.kind().name(),
        tr.model.dim(),
        tr.objective.n_rows,
        tr.first,
        tr.cfg.iterations,
        match tr.cfg.batch {
            Some(b) => format!(
                " ({b} rows of each of {} partitions per step, {} iterations per epoch)",
                tr.cfg.partitions, tr.cfg.per_epoch
            ),
            None => String::new(),
        }
    );
    let mut t = tr.first;
    while t < tr.cfg.iterations {
        if INTERRUPT.load(Ordering::SeqCst) {
            tr.interrupt(t, engine);
            break;
        }
        match tr.iteration(engine, t) {
            Ok(Next::Continue) => t += 1,
            Ok(Next::Again) => continue,
            Ok(Next::Stop) => break,
            Err(e) => {
                log::error!("[rank 0] {e}");
                tr.fail(e);
                break;
            }
        }
        if tr.ckpt.due(t) {
            if let Err(e) = tr.checkpoint(t, engine) {
                log::error!(
                    "[rank 0] checkpoint at iteration {t} failed: {e}; the previous generation is kept"
                );
                tr.fail(e);
                break;
            }
        }
    }
    tr.finish(engine)
}

/// `train --adapt` resumed at iteration `next`: the engine continues with the checkpoint's
/// adaptive state; a checkpoint without one (format 3 or older, or a run without `--adapt`)
/// starts again at `--stragglers` and the user's deadline, with a warning.
fn restore_adapt(
    cfg: &RunConfig,
    engine: &mut dyn GradientEngine,
    state: Option<&AdaptState>,
    next: u64,
) -> Result<()> {
    match (state, cfg.adapts()) {
        (Some(a), true) => {
            engine.restore_adapt(a, next)?;
        }
        (None, true) => log::warn!(
            "[rank 0] --adapt: the checkpoint holds no adaptive state (written before it was kept, or by a run without --adapt); starting again at s = {} and --deadline-ms",
            cfg.stragglers
        ),
        (Some(a), false) => log::warn!(
            "[rank 0] the checkpoint was written by an --adapt run (s = {} in force); this run without --adapt goes on with s = {}",
            a.s,
            cfg.stragglers
        ),
        (None, false) => {}
    }
    Ok(())
}

impl<'a> Trainer<'a> {
    fn new(setup: Setup<'a>, engine: &mut dyn GradientEngine) -> Result<Self> {
        let Setup {
            cfg,
            model,
            n_rows,
            test,
            writer,
            resume,
            initial,
        } = setup;
        let dim = model.dim();
        let spec = cfg.optimizer_spec();
        let kfac = cfg.kfac();
        let (first, elapsed0, mut opt) = match resume {
            Some(ck) => {
                restore_adapt(cfg, engine, ck.adapt.as_ref(), ck.iteration)?;
                (
                    ck.iteration,
                    ck.elapsed_s,
                    Optimizer::from_state(spec, ck.state),
                )
            }
            None => {
                let mut w = try_zeros(dim, "the parameters")?;
                model.init_into(cfg.job.seed, w.view_mut());
                (0, 0.0, Optimizer::new(spec, w))
            }
        };
        let kfac_len = match kfac {
            Some(_) => {
                let layers = model.kfac_layers().iter();
                opt.attach_kfac(KfacState::new(
                    layers.map(|b| (b.offset, b.units, b.inputs)),
                ));
                opt.kfac_mut().map_or(0, |k| k.packed_len())
            }
            None => 0,
        };
        let first_loss = initial.as_ref().and_then(|r| {
            r.column(Metric::TrainLoss)
                .iter()
                .copied()
                .find(|v| v.is_finite())
        });
        Ok(Trainer {
            cfg,
            model,
            objective: Objective {
                n_rows,
                l2: cfg.l2,
                intercept: cfg.intercept,
            },
            test,
            writer,
            ckpt: Checkpointer::new(cfg),
            opt,
            kfac,
            eig_auto: kfac::EigAuto::default(),
            pre: if kfac.is_some() {
                vec![0.0; dim]
            } else {
                Vec::new()
            },
            first,
            elapsed0,
            start: Instant::now(),
            g: try_zeros(dim + 1 + kfac_len, "the gradient sum and K-FAC factors")?,
            grad: try_zeros(dim, "the gradient")?,
            point: try_zeros(dim, "the evaluation point")?,
            ws: Workspace::default(),
            rec: IterationRecord::new(engine.workers()),
            late: Vec::new(),
            summary: RunSummary::new(engine.workers(), engine.parts(), initial.as_ref()),
            validation: vec![("check".into(), AttrValue::Str("NOT RUN".into()))],
            checks_s: 0.0,
            first_loss,
            last_loss: f64::NAN,
            last_test: None,
            all_exact: true,
            status: RunStatus::Complete,
            error: None,
        })
    }

    /// The training clock: wall time since the start of the run (across resumes), without the
    /// gradient checks.
    fn elapsed(&self) -> f64 {
        self.elapsed0 + self.start.elapsed().as_secs_f64() - self.checks_s
    }

    fn fail(&mut self, e: Error) {
        self.error = Some(e);
        self.status = RunStatus::Failed;
    }

    /// One iteration: compute, step, record.
    fn iteration(&mut self, engine: &mut dyn GradientEngine, t: u64) -> Result<Next> {
        let cfg = self.cfg;
        let check =
            t == self.first || (cfg.check_gradient_every > 0 && t % cfg.check_gradient_every == 0);
        self.rec.reset();
        self.point.assign(&self.opt.point());
        let start = Instant::now();
        let writer = &mut self.writer;
        let mut idle = || writer.flush_due().map_err(Error::from);
        let factors = self.kfac.is_some_and(|k| k.updates_at(t));
        let computed = engine.compute(
            &mut Iteration {
                t,
                point: self.point.view(),
                check,
                factors,
                rec: &mut self.rec,
                late: &mut self.late,
                idle: &mut idle,
            },
            &mut self.g,
        )?;
        let dim = self.model.dim();
        let stepped = matches!(computed, Computed::Gradient { .. });
        let (loss, check) = match computed {
            Computed::Interrupted => {
                log::warn!("[rank 0] iteration {t}: signal received while collecting; abandoning the iteration");
                return Ok(Next::Again);
            }
            Computed::Nothing => {
                self.all_exact = false;
                log::warn!(
                    "[rank 0] iteration {t}: no worker answered by the deadline; step skipped"
                );
                self.rec.set(Metric::Exact, 0.0);
                (f64::NAN, None)
            }
            Computed::Gradient { exact, check } => {
                let g = self.g.slice(ndarray::s![..dim]);
                self.objective.gradient_into(
                    self.model,
                    g,
                    self.point.view(),
                    self.grad.view_mut(),
                );
                self.precondition(engine, t, factors)?;
                self.opt.step(self.grad.view());
                self.all_exact &= exact;
                self.rec.set(Metric::Exact, f64::from(u8::from(exact)));
                let loss = self
                    .objective
                    .value(self.model, self.g[dim], self.point.view());
                (loss, check)
            }
        };
        self.rec.set(Metric::Iteration, t as f64);
        self.rec.set(Metric::Epoch, self.epochs_after(t));
        self.rec.set(Metric::WallS, start.elapsed().as_secs_f64());
        self.rec.set(Metric::TrainLoss, loss);
        self.last_loss = loss;
        if let Some(c) = check {
            self.record_check(t, c);
        }
        self.evaluate(t);
        self.rec.set(Metric::ElapsedS, self.elapsed());
        let diverged = stepped && self.diverged(t, loss);
        for switch in engine.take_adapt_switches() {
            self.writer.append_adapt(&switch)?;
        }
        self.append()?;
        self.log_progress(t, engine.workers());
        if diverged {
            return Ok(Next::Stop);
        }
        Ok(Next::Continue)
    }

    /// K-FAC: fold the decoded factors of iteration `t` in (when it carried them), refresh the
    /// eigenbases when due (and after the first factors), and precondition the gradient in
    /// place. Nothing without K-FAC, or before any factors arrived.
    fn precondition(
        &mut self,
        engine: &mut dyn GradientEngine,
        t: u64,
        factors: bool,
    ) -> Result<()> {
        let Some(spec) = self.kfac else {
            return Ok(());
        };
        let start = Instant::now();
        let lr = self.opt.spec().lr_at(self.opt.steps());
        let (dim, rows) = (self.model.dim(), self.objective.n_rows);
        let Some(state) = self.opt.kfac_mut() else {
            return Ok(());
        };
        let kerr = |e: kfac::KfacError| Error::Check(e.to_string());
        let first = state.last_update.is_none();
        if factors {
            let sums = self.g.as_slice().map_or(&[][..], |g| &g[dim + 1..]);
            state
                .update_packed(sums, rows, spec.decay, t)
                .map_err(kerr)?;
        }
        if state.last_update.is_none() {
            return Ok(());
        }
        let mut eig_s = 0.0;
        if spec.refreshes_at(t) || (factors && first) {
            let e = Instant::now();
            // --kfac-eig workers (or auto's turn for them): the workers' share; a factor that
            // did not come back keeps its previous eigenbasis, unless it has none yet (the
            // first refresh: rank 0).
            let site = match self.cfg.kfac_eig {
                Some(EigSite::Auto) => self.eig_auto.next(),
                site => site.unwrap_or_default(),
            };
            let spread = match site {
                EigSite::Workers => engine.spread_eigen(t, state, &mut self.rec, &mut self.late)?,
                _ => None,
            };
            // Where it ran: no workers (the serial reference) or a signal means rank 0.
            let ran = if spread.is_some() {
                EigSite::Workers
            } else {
                EigSite::Rank0
            };
            self.rec.set(
                Metric::KfacEigWorkers,
                f64::from(u8::from(spread.is_some())),
            );
            let fell_back = spread.as_ref().is_some_and(|missing| !missing.is_empty());
            match spread {
                None => state.refresh().map_err(kerr)?,
                Some(missing) => {
                    if first {
                        state.refresh_some(&missing).map_err(kerr)?;
                    } else if !missing.is_empty() {
                        log::warn!(
                            "[rank 0] iteration {t}: K-FAC factors {missing:?} not eigendecomposed by the deadline; their previous eigenbases are kept"
                        );
                    }
                    self.rec.set(Metric::KfacEigFallbacks, missing.len() as f64);
                }
            }
            eig_s = e.elapsed().as_secs_f64();
            if self.cfg.kfac_eig == Some(EigSite::Auto) {
                // A round that fell back did not do the work in its time: it counts as never.
                let timed = if fell_back { f64::INFINITY } else { eig_s };
                if let Some((chosen, workers_s, rank0_s)) = self.eig_auto.record(ran, timed) {
                    let workers = if workers_s.is_finite() {
                        format!("took {workers_s:.4} s")
                    } else {
                        "fell back (or had no workers)".into()
                    };
                    log::info!(
                        "[rank 0] --kfac-eig auto: the workers' eigen round {workers}, rank 0's refresh {rank0_s:.4} s: the refreshes after iteration {t} run at {}",
                        chosen.name()
                    );
                }
            }
        }
        let clip = (spec.kl_clip > 0.0).then_some((lr, spec.kl_clip));
        let grad = self.grad.as_slice().unwrap_or(&[]);
        let p = Instant::now();
        let nu = kfac::precondition(&state.layers, grad, spec.damping, clip, &mut self.pre);
        self.grad.assign(&ndarray::ArrayView1::from(&self.pre[..]));
        self.rec
            .set(Metric::KfacPrecondS, p.elapsed().as_secs_f64());
        self.rec.set(Metric::KfacS, start.elapsed().as_secs_f64());
        self.rec.set(Metric::KfacEigS, eig_s);
        self.rec.set(Metric::KfacNu, nu);
        Ok(())
    }

    /// Epochs completed after iteration `t`.
    fn epochs_after(&self, t: u64) -> f64 {
        (t + 1) as f64 / self.cfg.per_epoch.max(1) as f64
    }

    fn record_check(&mut self, t: u64, c: Check) {
        self.rec.set(Metric::GradRelErr, c.rel_err);
        self.checks_s += c.seconds;
        if t == self.first {
            self.validation = c.attrs;
        } else if !c.passed {
            log::warn!(
                "[rank 0] gradient check at iteration {t} did not pass: {:?}",
                c.attrs
            );
        }
    }

    /// The test split at the new parameters, every `--eval-every` iterations and after the last.
    fn evaluate(&mut self, t: u64) {
        let cfg = self.cfg;
        let due = (cfg.eval_every > 0 && (t + 1) % cfg.eval_every == 0) || t + 1 == cfg.iterations;
        if let Some(test) = self.test.as_ref().filter(|_| due) {
            let ev = self
                .model
                .evaluate(self.opt.params(), &test.x, test.y.view(), &mut self.ws);
            self.rec.set_test(&ev);
            self.last_test = Some(ev);
        }
    }

    /// Whether the objective left the finite or exploded past `--divergence-factor` times its
    /// first value (at least 1); sets the status and error.
    fn diverged(&mut self, t: u64, loss: f64) -> bool {
        let first = *self.first_loss.get_or_insert(loss);
        let limit = self.cfg.divergence_factor * first.max(1.0);
        if loss.is_finite() && loss <= limit {
            return false;
        }
        let cfg = self.cfg;
        let momentum = match cfg.optimizer {
            crate::optim::OptimizerKind::Nesterov
            | crate::optim::OptimizerKind::Momentum
            | crate::optim::OptimizerKind::Kfac => {
                format!(" or --momentum (now {})", cfg.momentum)
            }
            crate::optim::OptimizerKind::Adam => " or warm up (--warmup)".into(),
            crate::optim::OptimizerKind::Gd => String::new(),
        };
        let msg = format!(
            "training diverged at iteration {t}: the objective is {loss:.3e}, over the limit {limit:.3e} (--divergence-factor {} × its first value {first:.3e}, at least 1); lower --lr (now {}){momentum}",
            cfg.divergence_factor, cfg.lr
        );
        log::error!("[rank 0] {msg}");
        self.error = Some(Error::Check(msg));
        self.status = RunStatus::Diverged;
        true
    }

    /// Append the iteration's row and its late arrivals.
    fn append(&mut self) -> Result<()> {
        for l in self.late.drain(..) {
            self.writer.append_late(&l);
            self.summary.add_late(&l);
        }
        self.summary.add(&self.rec);
        self.writer.append(&self.rec)?;
        Ok(())
    }

    fn log_progress(&self, t: u64, workers: usize) {
        let cfg = self.cfg;
        if t % cfg.log_every != 0 && t + 1 != cfg.iterations {
            return;
        }
        let r = &self.rec;
        let mut tail = self
            .last_test
            .and_then(|e| e.accuracy)
            .map_or(String::new(), |a| format!("  test acc {a:.4}"));
        if cfg.batch.is_some() {
            tail.push_str(&format!("  epoch {:.2}", self.epochs_after(t)));
        }
        if workers == 0 {
            log::info!(
                "reference it {t:>5}/{}  loss {:.6}  iter {:7.2} ms{tail}",
                cfg.iterations,
                r.get(Metric::TrainLoss),
                r.get(Metric::WallS) * 1e3
            );
            return;
        }
        log::info!(
            "[rank 0] it {:>5}/{}  loss {:.6}  iter {:7.2} ms  oracle {:7.2} ms  responders {}/{}  late {}{tail}",
            t,
            cfg.iterations,
            r.get(Metric::TrainLoss),
            r.get(Metric::WallS) * 1e3,
            r.get(Metric::OracleS) * 1e3,
            r.get(Metric::NResponders),
            workers,
            r.get(Metric::Late),
        );
    }

    /// Flush the rows, then write the checkpoint that resumes at `next` (never a checkpoint ahead
    /// of the results: a resume would refuse the pair).
    fn checkpoint(&mut self, next: u64, engine: &dyn GradientEngine) -> Result<std::path::PathBuf> {
        self.writer.flush()?;
        let elapsed = self.elapsed();
        let adapt = engine.adapt_state();
        Ok(self.ckpt.save(next, self.opt.state(), elapsed, adapt)?)
    }

    /// A signal: checkpoint at `t` and stop with status `interrupted`.
    fn interrupt(&mut self, t: u64, engine: &dyn GradientEngine) {
        match self.checkpoint(t, engine) {
            Ok(p) => {
                log::warn!(
                    "[rank 0] signal received: checkpoint at iteration {t} written to {}; stopping",
                    p.display()
                );
                self.status = RunStatus::Interrupted;
            }
            Err(e) => {
                log::error!("[rank 0] signal received but the checkpoint failed: {e}");
                self.fail(e);
            }
        }
    }

    /// Stop the workers, print and write the summary, close the file.
    fn finish(mut self, engine: &mut dyn GradientEngine) -> Outcome {
        let unreconciled = match engine.finish(self.status.exit_code(), &mut self.late) {
            Ok(u) => u,
            Err(e) => {
                self.error.get_or_insert(e);
                (1..=engine.workers()).collect()
            }
        };
        for l in self.late.drain(..) {
            self.writer.append_late(&l);
            self.summary.add_late(&l);
        }
        if !unreconciled.is_empty() {
            log::error!(
                "[rank 0] workers {unreconciled:?} did not answer the STOP; the run is degraded"
            );
            if self.status == RunStatus::Complete {
                self.status = RunStatus::Degraded;
            }
        }
        let never = engine.never_answered();
        self.finish_validation(&never);
        let rejected = engine.rejected();
        self.summary.print(&SummaryText {
            iterations: self.cfg.iterations,
            status: self.status.name(),
            final_loss: self.last_loss,
            test: self.last_test.as_ref(),
            validation: &self.validation,
            rejected: &rejected,
            decode_tree: self.cfg.decode_tree,
        });
        let memory = PeakMemory::from_kib(crate::comm::peak_rss_kib(), &engine.peak_rss_kib());
        memory.print();
        println!("  results: {}", self.writer.path().display());
        let (mut summary, mut per_worker) = self.summary.record(&rejected);
        memory.record(&mut summary, &mut per_worker);
        summary.extend([
            ("gradient_checks_s".into(), AttrValue::F64(self.checks_s)),
            ("final_train_loss".into(), AttrValue::F64(self.last_loss)),
            (
                "unreconciled_workers".into(),
                AttrValue::Str(format!("{unreconciled:?}")),
            ),
            (
                "never_answered".into(),
                AttrValue::Str(format!("{never:?}")),
            ),
            (
                "error".into(),
                AttrValue::Str(
                    self.error
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                ),
            ),
        ]);
        summary.extend(results::test_summary(self.last_test.as_ref()));
        let fin = FinalRecord {
            status: self.status.name().into(),
            w_final: self.opt.params().to_owned(),
            validation: std::mem::take(&mut self.validation),
            summary,
            per_worker,
            // `/adapt`: the switches appended during the run.
            adapt: None,
        };
        if let Err(e) = self.writer.finish(&fin) {
            log::error!("[rank 0] could not finish the results file: {e}");
            self.error.get_or_insert(e.into());
            if self.status == RunStatus::Complete {
                self.status = RunStatus::Failed;
            }
        }
        Outcome {
            status: self.status,
            unreconciled,
            error: self.error,
        }
    }

    /// The overall verdict (VALID when the first check passed and the parameters are finite;
    /// REFERENCE for the serial path) and the ranks that never answered during the run.
    fn finish_validation(&mut self, never: &[usize]) {
        let check = self.validation.iter().find_map(|(k, v)| match v {
            AttrValue::Str(s) if k == "check" => Some(s.clone()),
            _ => None,
        });
        let finite = self.opt.params().iter().all(|v| v.is_finite());
        let verdict = match check.as_deref() {
            Some("REFERENCE") => "REFERENCE",
            Some("PASSED") if finite && self.status != RunStatus::Diverged => "VALID",
            _ => "INVALID",
        };
        self.validation
            .push(("verdict".into(), AttrValue::Str(verdict.into())));
        self.validation.push((
            "all_iterations_exact".into(),
            AttrValue::Bool(self.all_exact),
        ));
        if verdict != "REFERENCE" {
            self.validation
                .push(("silent".into(), AttrValue::Str(format!("{never:?}"))));
        }
    }
}
