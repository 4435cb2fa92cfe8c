//! `gradcode matvec`: the coded mat-vec MPI job (Lee et al., "Speeding up distributed machine
//! learning using codes"; GUIDE §3 "Coded linear algebra").
//!
//! `mpirun -np N+1 gradcode matvec --matrix A.h5 --code C -k K --iterations R ...`: A is cut into
//! the code's k·r row blocks ([`BlockLayout`]); worker w (rank w + 1) holds one coded block.
//! **Workers encode their own block**: each reads by hyperslab only the data blocks its generator
//! rows touch and combines them ([`crate::linalg::job`]); rank 0 sends nothing large at start-up.
//! A CSR block stays CSR where the code only selects it (`replication`, the systematic workers of
//! `mds-systematic`); parity blocks are densified.
//!
//! Each iteration t, rank 0 draws x_t (standard normal, seeded by (seed, t): a fresh random
//! vector per iteration, so any rectangular A works and every code sees the same vectors) and
//! posts it through the collector; workers ([`BlockWorker`]) answer with block · x; rank 0
//! decodes as soon as the arrived workers are decodable ([`MdsRound`]: `mds-systematic` streams
//! the arrived blocks and solves only for the missing ones). The deadline has training's `wait`
//! semantics: past `--deadline-ms` rank 0 keeps waiting, past `--max-wait-ms` the job fails
//! naming the silent workers.
//!
//! Every iteration, outside the timed path, rank 0 (which reads the whole A once for this)
//! compares the decoded A·x with the uncoded product and records the relative error as
//! `/metrics/grad_rel_err`; the first iteration's comparison is the `/validation` verdict
//! (PASSED when the error is within [`validation_tol`] of the cond of the system solved).
//! `/model/w_final` holds the last decoded A·x.
//!
//! Not done here: power iteration, per-worker sparse parity.

use std::time::Instant;

use ndarray::{Array1, ArrayView1};

use super::{gather_startup, rank_result};
use crate::comm::mpi::World;
use crate::comm::{Collected, Collector, CollectorSpec, WorkerLink};
use crate::config::{MatvecArgs, MatvecConfig};
use crate::data::Features;
use crate::error::{Error, Result};
use crate::io::matrix::{read_matrix_rows, read_matrix_source};
use crate::io::results::{AttrValue, FinalRecord, IterationRecord, Metric, RunMeta, RunWriter};
use crate::linalg::job::{
    encode_worker, features_matvec, iteration_vector, rel_err, validation_tol, worker_ranges,
    BlockLayout, CodedBlock,
};
use crate::linalg::serve::{BlockWorker, MdsRound};
use crate::linalg::MdsCode;
use crate::train::coded::late_row;

/// Run `gradcode matvec`; returns the process exit code.
pub fn run(args: &MatvecArgs) -> Result<i32> {
    super::with_mpi(|world| run_mpi(world, args))
}

fn run_mpi(world: &World, args: &MatvecArgs) -> Result<i32> {
    let rank = world.rank();
    // 1. Identical checks on every rank, no MPI traffic.
    let (cfg, code) = match MatvecConfig::from_args(args, world.size()) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    // 2. Rank 0 validates the matrix and the output, then broadcasts the shape.
    let shape = match super::broadcast_matrix_shape(world, &cfg.matrix, || {
        Ok(crate::io::check_overwrite(
            &cfg.job.results_path(),
            cfg.job.force,
        )?)
    })? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let layout = match BlockLayout::new(&code, shape.rows, shape.features) {
        Ok(l) => l,
        Err(e) => return rank_result(rank, e.into()),
    };
    // 3. Per-rank loading; one all-gather of the outcome.
    let local: Result<Option<Loaded>> = if rank == 0 {
        setup_rank0(&cfg, &code, &layout, world.size(), shape.sparse)
            .map(|s| Some(Loaded::Rank0(Box::new(s))))
    } else {
        let w = rank - 1;
        super::resolved_matrix(&cfg.matrix)
            .and_then(|m| {
                read_matrix_rows(&m, &worker_ranges(&code, &layout, w)).map_err(Error::from)
            })
            .and_then(|x| encode_worker(&code, &layout, w, x).map_err(Error::from))
            .map(|b| {
                log::debug!(
                    "[rank {rank}] holds a {} coded block of {} rows",
                    if b.is_sparse() { "sparse" } else { "dense" },
                    b.result_len()
                );
                Some(Loaded::Block(b))
            })
    };
    match gather_startup(world, local)? {
        Err(code) => Ok(code),
        Ok(Some(Loaded::Rank0(r0))) => {
            let (a, writer) = *r0;
            coordinate(world, &cfg, &code, &layout, &a, writer)
        }
        Ok(Some(Loaded::Block(block))) => {
            let blocks = [block];
            let mut job = BlockWorker::new(&blocks);
            match WorkerLink::new(world.worker(), cfg.job.schedule(), 1).serve(&mut job) {
                Ok(s) => Ok(s.stop_code),
                Err(e) => {
                    log::error!("[rank {rank}] {e}");
                    crate::comm::mpi::abort(1);
                }
            }
        }
        Ok(None) => Err(Error::Check("internal: unexpected start-up state".into())),
    }
}

/// What a rank loaded at start-up.
enum Loaded {
    Rank0(Box<(Features, RunWriter)>),
    Block(CodedBlock),
}

fn setup_rank0(
    cfg: &MatvecConfig,
    code: &MdsCode,
    layout: &BlockLayout,
    size: usize,
    sparse: bool,
) -> Result<(Features, RunWriter)> {
    let a = read_matrix_source(&super::resolved_matrix(&cfg.matrix)?)?;
    let (toml, mut config) = super::write_run_config(
        &cfg.job.out,
        &cfg.job.config_path(),
        cfg.to_toml(),
        cfg,
        "matvec",
    )?;
    let (code_attrs, env_attrs) = super::provenance(size);
    config.extend([
        ("code_name".into(), AttrValue::Str(cfg.code_name())),
        ("rows".into(), AttrValue::U64(layout.rows as u64)),
        ("cols".into(), AttrValue::U64(layout.cols as u64)),
        ("sparse".into(), AttrValue::Bool(sparse)),
        ("data_blocks".into(), AttrValue::U64(layout.blocks as u64)),
        (
            "block_rows".into(),
            AttrValue::U64(layout.block_rows as u64),
        ),
        (
            "blocks_per_worker".into(),
            AttrValue::U64(code.blocks_per_worker() as u64),
        ),
        ("q".into(), AttrValue::U64(code.q() as u64)),
    ]);
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml: toml,
        code_matrix: code.generator().as_standard_layout().into_owned(),
        n_workers: cfg.workers(),
        n_layers: 0,
        adapt: false,
    };
    log::info!(
        "[rank 0] gradcode {} matvec: {} × {} {} matrix, code {} (n = {}, k = {}, {} data blocks of {} rows)",
        crate::VERSION,
        layout.rows,
        layout.cols,
        if sparse { "CSR" } else { "dense" },
        cfg.code_name(),
        cfg.workers(),
        cfg.k,
        layout.blocks,
        layout.block_rows
    );
    let writer = RunWriter::create(&cfg.job.results_path(), &meta, None)?;
    Ok((a, writer))
}

/// Rank 0's state over the run, for `/summary` and `/validation`.
struct Run<'a> {
    cfg: &'a MatvecConfig,
    code: &'a MdsCode,
    layout: &'a BlockLayout,
    a: &'a Features,
    writer: RunWriter,
    start: Instant,
    iterations: u64,
    wall: f64,
    decode: f64,
    max_cond: f64,
    max_rel_err: f64,
    late: u64,
    rejected: u64,
    validation: Vec<(String, AttrValue)>,
    passed: bool,
    /// The last decoded A·x, and the uncoded product (scratch).
    last: Array1<f64>,
    truth: Vec<f64>,
}

/// One iteration's record from the collected round.
fn record(
    round: &crate::comm::Round,
    t: u64,
    wall: f64,
    elapsed: f64,
    decode_s: f64,
    cond: f64,
    err: f64,
) -> IterationRecord {
    let n = round.parts_in.len();
    let mut rec = IterationRecord::new(n);
    rec.set(Metric::Iteration, t as f64);
    rec.set(Metric::WallS, wall);
    rec.set(Metric::ElapsedS, elapsed);
    rec.set(Metric::DecodeS, decode_s);
    rec.set(Metric::NResponders, round.complete_responders() as f64);
    rec.set(Metric::Exact, 1.0);
    rec.set(Metric::Cond, cond);
    rec.set(Metric::GradRelErr, err);
    super::record_round(&mut rec, round);
    rec
}

/// The first iteration's `/validation`.
fn validation(
    err: f64,
    cond: f64,
    used: &[usize],
    silent: &[usize],
) -> (bool, Vec<(String, AttrValue)>) {
    let tol = validation_tol(cond);
    let passed = err <= tol;
    let verdict = if passed { "PASSED" } else { "FAILED" };
    log::info!(
        "[rank 0] validation at iteration 0: decoded vs uncoded A·x rel. error {err:.3e} (cond {cond:.3e}, tolerance {tol:.1e}): {verdict}"
    );
    let ranks: Vec<usize> = used.iter().map(|w| w + 1).collect();
    (
        passed,
        vec![
            ("iteration".into(), AttrValue::U64(0)),
            ("check".into(), AttrValue::Str(verdict.into())),
            ("verdict".into(), AttrValue::Str(verdict.into())),
            ("rel_err".into(), AttrValue::F64(err)),
            ("tolerance".into(), AttrValue::F64(tol)),
            ("cond".into(), AttrValue::F64(cond)),
            ("used_workers".into(), AttrValue::Str(format!("{ranks:?}"))),
            (
                "silent_workers".into(),
                AttrValue::Str(format!("{silent:?}")),
            ),
        ],
    )
}

/// Rank 0: run every iteration, write the results, stop the workers. Returns the exit code.
fn coordinate(
    world: &World,
    cfg: &MatvecConfig,
    code: &MdsCode,
    layout: &BlockLayout,
    a: &Features,
    writer: RunWriter,
) -> Result<i32> {
    let n = cfg.workers();
    let mut c = Collector::new(
        world.transport(),
        CollectorSpec::one_message(
            n,
            vec![vec![layout.result_len(code); n]],
            cfg.job.deadline(),
            cfg.job.max_wait(),
        ),
    );
    let mut run = Run {
        cfg,
        code,
        layout,
        a,
        writer,
        start: Instant::now(),
        iterations: 0,
        wall: 0.0,
        decode: 0.0,
        max_cond: 0.0,
        max_rel_err: 0.0,
        late: 0,
        rejected: 0,
        validation: Vec::new(),
        passed: false,
        last: Array1::zeros(layout.rows),
        truth: vec![0.0; layout.rows],
    };
    let outcome = (0..cfg.iterations).try_for_each(|t| run.iteration(&mut c, t));
    run.finish(&mut c, outcome)
}

impl Run<'_> {
    /// One mat-vec: post x_t, collect, decode, compare with the uncoded product, record.
    fn iteration<T: crate::comm::Transport>(&mut self, c: &mut Collector<T>, t: u64) -> Result<()> {
        let (layout, code) = (self.layout, self.code);
        let x = iteration_vector(self.cfg.job.seed, t, layout.cols);
        c.begin(t, 0, x.as_slice().unwrap_or(&x.to_vec()), 0);
        let mut rule = MdsRound::new(code, layout.rows)?;
        let got = c.collect::<Error>(&mut rule, None, &mut || Ok(()));
        c.end();
        for l in c.take_late() {
            self.writer.append_late(&late_row(&l));
        }
        if got? != Collected::Decodable {
            return Err(Error::Check(
                "internal: a mat-vec round ended undecoded".into(),
            ));
        }
        let d = rule.decode()?;
        let wall = c.round().t0.elapsed().as_secs_f64();
        // Outside the timed path: the uncoded product.
        features_matvec(self.a, x.view(), &mut self.truth)?;
        let y = d.value.column(0);
        let err = if y.len() == layout.rows {
            rel_err(y, ArrayView1::from(&self.truth[..]))
        } else {
            f64::INFINITY
        };
        if t == 0 {
            (self.passed, self.validation) = validation(err, d.cond, &d.used, &c.round().silent());
        }
        let round = c.round();
        let elapsed = self.start.elapsed().as_secs_f64();
        let rec = record(round, t, wall, elapsed, rule.decode_s, d.cond, err);
        self.writer.append(&rec)?;
        self.iterations += 1;
        self.wall += wall;
        self.decode += rule.decode_s;
        self.max_cond = self.max_cond.max(d.cond);
        self.max_rel_err = self.max_rel_err.max(err);
        self.late += u64::from(round.late);
        self.rejected += u64::from(round.rejected);
        log::debug!(
            "[rank 0] it {t}: wall {:.3} ms, decode {:.3} ms, used ranks {:?}, cond {:.2e}, rel. error {err:.2e}",
            wall * 1e3,
            rule.decode_s * 1e3,
            d.used.iter().map(|w| w + 1).collect::<Vec<_>>(),
            d.cond
        );
        self.last.assign(&y);
        Ok(())
    }

    /// Stop the workers, write the end of the results file, report.
    fn finish<T: crate::comm::Transport>(
        mut self,
        c: &mut Collector<T>,
        outcome: Result<()>,
    ) -> Result<i32> {
        let exit = i32::from(!(outcome.is_ok() && self.passed));
        let unreconciled = c.shutdown(exit, self.cfg.job.shutdown_bound())?;
        for l in c.take_late() {
            self.writer.append_late(&late_row(&l));
        }
        if self.validation.is_empty() {
            self.validation = vec![
                ("check".into(), AttrValue::Str("FAILED".into())),
                ("verdict".into(), AttrValue::Str("FAILED".into())),
                (
                    "reason".into(),
                    AttrValue::Str("the first iteration never decoded".into()),
                ),
            ];
        }
        let it = self.iterations.max(1) as f64;
        let summary = vec![
            ("iterations".into(), AttrValue::U64(self.iterations)),
            ("mean_wall_s".into(), AttrValue::F64(self.wall / it)),
            ("mean_decode_s".into(), AttrValue::F64(self.decode / it)),
            ("max_cond".into(), AttrValue::F64(self.max_cond)),
            ("max_rel_err".into(), AttrValue::F64(self.max_rel_err)),
            ("late".into(), AttrValue::U64(self.late)),
            ("rejected".into(), AttrValue::U64(self.rejected)),
            (
                "unreconciled_workers".into(),
                AttrValue::Str(format!("{unreconciled:?}")),
            ),
        ];
        let path = self.writer.path().to_path_buf();
        self.writer.finish(&FinalRecord {
            status: if exit == 0 { "complete" } else { "failed" }.into(),
            w_final: self.last,
            validation: self.validation,
            summary,
            per_worker: Vec::new(),
            adapt: None,
        })?;
        super::abort_if_unreconciled(&unreconciled, &path, 3);
        outcome?;
        if !self.passed {
            return Err(Error::Check(format!(
                "matvec validation FAILED: the decoded A·x differs from the uncoded product beyond the tolerance; see /validation in {}",
                path.display()
            )));
        }
        println!(
            "matvec: {} iterations with {}, mean wall {:.3} ms, mean decode {:.3} ms, max cond {:.3e}, max rel. error {:.3e}; validation PASSED; results: {}",
            self.iterations,
            self.cfg.code_name(),
            self.wall / it * 1e3,
            self.decode / it * 1e3,
            self.max_cond,
            self.max_rel_err,
            path.display()
        );
        Ok(0)
    }
}
