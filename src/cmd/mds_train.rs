//! `gradcode train --code mds-<family>`: coded training through mat-vecs (Lee et al., "Speeding
//! up distributed machine learning using codes", §IV; GUIDE §3 "Coded linear algebra").
//!
//! Linear and logistic models (with intercept, the same objective, optimizer and defaults as
//! `train --reference`): every gradient step is two coded mat-vecs over the same MDS code with
//! k = n − s. Phase 0 computes z = X w (X cut into k·r row blocks), rank 0 adds the bias, forms
//! the per-row loss and residual r_i = ∂ℓ/∂z(z_i, y_i); phase 1 computes Xᵀ r (Xᵀ cut into k·r
//! row blocks, i.e. X into column blocks); rank 0 adds Σ r for the bias, forms the objective
//! gradient (`model::objective_gradient_into`) and steps. Each phase decodes from the first
//! decodable set of workers, with `matvec`'s protocol ([`super::matvec`]: header `part` = phase,
//! round number 2t + phase, ring of send buffers, late results drained, STOP/ACK shutdown).
//!
//! Each worker holds two coded blocks (one of X, one of Xᵀ). It reads the whole X once at
//! start-up (the column blocks of X are not a hyperslab of the CSR layout), encodes, and keeps
//! only its coded blocks; Xᵀ blocks are dense. Rank 0 holds y and, for the first-iteration check,
//! X: `/validation` compares the decoded gradient sum with the exact one (`Model::gradient_into`).
//!
//! Metrics per iteration as in training: `train_loss` (objective at the evaluation point),
//! `wall_s` (both phases), `decode_s`, `n_responders` (the smaller of the two phases), `cond`
//! (the larger), `bytes_received`, `late`, `rejected`; `grad_rel_err` at the first iteration.
//!
//! Dispatch: `--code` of `train` is a closed list of gradient codes, so `main` hands the whole
//! command line to [`run_from_args`] when `train` is given a `--code` starting with `mds-`.
//! The test split, when the dataset has one, is evaluated at the new parameters every
//! `--eval-every` iterations and after the last, as in `train` (`test_loss`, `test_accuracy`,
//! `test_auc`).
//! Not done: softmax, checkpoints and `--resume`, `--chunks`, the `best-effort` deadline policy.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use ndarray::{s, Array1};

use super::matvec::{work_or_abort, MatvecConfig, Phase, Rank0};
use super::{invalid, rank_result};
use crate::cli::OptimizerKind;
use crate::coordinator::RunStatus;
use crate::data::Features;
use crate::error::{Error, Result};
use crate::io::dataset::{self, Split};
use crate::io::results::{self, AttrValue, FinalRecord, IterationRecord, RunMeta, RunWriter};
use crate::linalg::job::{encode_worker, rel_err, validation_tol, worker_ranges, BlockLayout};
use crate::linalg::{Family, MdsCode};
use crate::model::{self, Model, ModelKind, Workspace};
use crate::optim::Optimizer;
use crate::straggler::StragglerSchedule;

pub use super::EXIT_INPUT;

/// Arguments of `gradcode train --code mds-<family>` (defaults as in `train`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "gradcode train",
    about = "Coded training through mat-vecs (MDS codes)"
)]
pub struct MdsTrainArgs {
    /// More log output.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// HDF5 dataset.
    #[arg(long, value_name = "FILE.h5")]
    pub data: PathBuf,
    /// linear or logistic.
    #[arg(long, value_enum, default_value = "logistic")]
    pub model: ModelKind,
    /// mds-systematic, mds-systematic-rotation, mds-vandermonde, mds-chebyshev, mds-rotation,
    /// mds-circulant, mds-replication.
    #[arg(long)]
    pub code: String,
    /// Stragglers tolerated: any k = n − s workers decode each mat-vec.
    #[arg(short = 's', long, default_value_t = 1)]
    pub stragglers: usize,
    #[arg(long, default_value_t = 100)]
    pub iterations: u64,
    #[arg(long, default_value_t = 0.5)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub l2: f64,
    #[arg(long, value_enum, default_value = "gd")]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 1000.0)]
    pub deadline_ms: f64,
    #[arg(long, default_value_t = 30000.0)]
    pub max_wait_ms: f64,
    #[arg(long, value_name = "SPEC", default_value = "none")]
    pub straggler_model: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_name = "DIR", default_value = "results/run")]
    pub out: PathBuf,
    #[arg(long)]
    pub force: bool,
    /// Print a progress line every K iterations.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Evaluate the test split (when the dataset has one) every K iterations and after the
    /// last, as `train` does.
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub eval_every: u64,
}

/// Whether the command line is `gradcode [-v|-q]… train … --code mds-…`.
pub fn wanted(argv: &[String]) -> bool {
    let sub = argv.iter().skip(1).find(|a| !a.starts_with('-'));
    if sub.map(String::as_str) != Some("train") {
        return false;
    }
    argv.windows(2)
        .any(|w| w[0] == "--code" && w[1].starts_with("mds-"))
        || argv.iter().any(|a| a.starts_with("--code=mds-"))
}

/// Parse the command line (the `train` token removed), set up logging, run; returns the exit
/// code.
pub fn run_from_args(argv: &[String]) -> i32 {
    let mut rest: Vec<String> = vec!["gradcode train".into()];
    let mut dropped = false;
    for a in argv.iter().skip(1) {
        if !dropped && a == "train" {
            dropped = true;
            continue;
        }
        rest.push(a.clone());
    }
    let args = match MdsTrainArgs::try_parse_from(&rest) {
        Ok(a) => a,
        Err(e) => crate::cli::exit_on_parse_error(e),
    };
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .try_init();
    match run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gradcode: error: {e}");
            e.exit_code()
        }
    }
}

/// Checked settings (identical on every rank).
fn check(args: &MdsTrainArgs, world: usize) -> Result<(MatvecConfig, MdsCode)> {
    if world < 2 {
        return Err(invalid(
            "np",
            world,
            "coded training runs as 1 coordinator + N workers; run it as `mpirun -np N+1 gradcode train ...`",
        ));
    }
    let n = world - 1;
    let family: Family = args.code.parse().map_err(|_| {
        invalid(
            "code",
            &args.code,
            "expected mds-systematic, mds-systematic-rotation, mds-vandermonde, mds-chebyshev, mds-rotation, mds-circulant or mds-replication",
        )
    })?;
    if !matches!(args.model, ModelKind::Linear | ModelKind::Logistic) {
        return Err(invalid(
            "model",
            args.model.name(),
            "coded training through mat-vecs supports linear and logistic",
        ));
    }
    if args.stragglers >= n {
        return Err(invalid(
            "stragglers",
            args.stragglers,
            format!("need s < N = {n} workers (k = N − s ≥ 1)"),
        ));
    }
    if args.iterations == 0 {
        return Err(invalid("iterations", 0, "need at least one iteration"));
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(invalid("lr", args.lr, "must be a finite number > 0"));
    }
    if !(args.l2.is_finite() && args.l2 >= 0.0) {
        return Err(invalid("l2", args.l2, "must be a finite number ≥ 0"));
    }
    if !(args.deadline_ms.is_finite() && args.deadline_ms >= 0.0) {
        return Err(invalid("deadline-ms", args.deadline_ms, "must be ≥ 0"));
    }
    if !(args.max_wait_ms.is_finite() && args.max_wait_ms >= args.deadline_ms) {
        return Err(invalid(
            "max-wait-ms",
            args.max_wait_ms,
            "must be finite and at least --deadline-ms",
        ));
    }
    StragglerSchedule::parse(&args.straggler_model, n, args.seed)
        .map_err(|e| Error::Config(e.into()))?;
    let k = n - args.stragglers;
    let code =
        MdsCode::new(family, n, k).map_err(|e| invalid("code", &args.code, e.to_string()))?;
    Ok((
        MatvecConfig {
            matrix: args.data.clone(),
            family,
            n,
            k,
            iterations: args.iterations,
            deadline_ms: args.deadline_ms,
            max_wait_ms: args.max_wait_ms,
            straggler_model: args.straggler_model.clone(),
            seed: args.seed,
            out: args.out.clone(),
            force: args.force,
        },
        code,
    ))
}

/// Run the job under MPI.
pub fn run(args: &MdsTrainArgs) -> Result<i32> {
    super::with_mpi(|world| run_mpi(world, args))
}

fn transpose(x: &Features) -> Features {
    match x {
        Features::Dense(m) => Features::Dense(m.t().as_standard_layout().to_owned()),
        Features::Sparse(m) => Features::Dense(m.to_dense().t().as_standard_layout().to_owned()),
    }
}

fn stacked(x: &Features, ranges: Vec<std::ops::Range<usize>>) -> Result<Features> {
    if ranges.is_empty() {
        return Ok(x.slice_rows(0..0));
    }
    let parts: Vec<Features> = ranges.into_iter().map(|r| x.slice_rows(r)).collect();
    let refs: Vec<&Features> = parts.iter().collect();
    Ok(Features::vstack(&refs)?)
}

fn run_mpi(world: &SimpleCommunicator, args: &MdsTrainArgs) -> Result<i32> {
    let rank = world.rank();
    let size = world.size() as usize;
    let (cfg, code) = match check(args, size) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e),
    };
    let shape = match super::broadcast_data_shape(world, &cfg.matrix, || {
        crate::io::check_overwrite(&cfg.results_path(), cfg.force).map_err(Error::from)
    })? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (rows, d, task) = (shape.rows, shape.features, shape.task);
    let model = match model::build(args.model, d, task) {
        Ok(m) => m,
        Err(e) => return rank_result(rank, e.into()),
    };
    let (l0, l1) = match (
        BlockLayout::new(&code, rows, d),
        BlockLayout::new(&code, d, rows),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return rank_result(rank, e.into()),
    };
    // Loading: rank 0 the whole dataset and the results file, workers their two coded blocks.
    let mut rank0 = None;
    let mut blocks = Vec::new();
    let local: Result<()> = if rank == 0 {
        setup_rank0(args, &cfg, &code, size).map(|s| rank0 = Some(s))
    } else {
        let w = rank as usize - 1;
        dataset::read_all(&cfg.matrix, Split::Train)
            .map_err(Error::from)
            .and_then(|data| {
                let x = data.x;
                let b0 = encode_worker(&code, &l0, w, stacked(&x, worker_ranges(&code, &l0, w))?)?;
                let xt = transpose(&x);
                let b1 = encode_worker(&code, &l1, w, stacked(&xt, worker_ranges(&code, &l1, w))?)?;
                blocks = vec![b0, b1];
                Ok(())
            })
    };
    if let Err(code) = super::gather_startup(world, local)? {
        return Ok(code);
    }
    if rank == 0 {
        let Some((data, test, writer)) = rank0 else {
            return Err(Error::Check("internal: rank 0 set-up missing".into()));
        };
        let phases = vec![
            Phase {
                code: &code,
                rows,
                cols: d,
                out_len: l0.result_len(&code),
            },
            Phase {
                code: &code,
                rows: d,
                cols: rows,
                out_len: l1.result_len(&code),
            },
        ];
        coordinate(
            world,
            args,
            &cfg,
            phases,
            model.as_ref(),
            (&data, test.as_ref()),
            writer,
        )
    } else {
        work_or_abort(world, &blocks, &cfg)
    }
}

fn setup_rank0(
    args: &MdsTrainArgs,
    cfg: &MatvecConfig,
    code: &MdsCode,
    size: usize,
) -> Result<(
    crate::data::Dataset,
    Option<crate::data::Dataset>,
    RunWriter,
)> {
    let data = dataset::read_all(&cfg.matrix, Split::Train)?;
    let test = if dataset::inspect(&cfg.matrix)?.test_rows.is_some() {
        Some(dataset::read_all(&cfg.matrix, Split::Test)?)
    } else {
        None
    };
    std::fs::create_dir_all(&cfg.out).map_err(|e| crate::io::IoError::os(&cfg.out, e))?;
    let (code_attrs, env_attrs) = super::train::provenance(size);
    let s = |v: String| AttrValue::Str(v);
    let config = vec![
        ("job".into(), s("train-mds".into())),
        ("data".into(), s(cfg.matrix.display().to_string())),
        ("model".into(), s(args.model.name().into())),
        ("code".into(), s(args.code.clone())),
        ("code_name".into(), s(args.code.clone())),
        ("workers".into(), AttrValue::U64(cfg.n as u64)),
        ("stragglers".into(), AttrValue::U64(args.stragglers as u64)),
        ("k".into(), AttrValue::U64(cfg.k as u64)),
        ("iterations".into(), AttrValue::U64(args.iterations)),
        ("lr".into(), AttrValue::F64(args.lr)),
        ("l2".into(), AttrValue::F64(args.l2)),
        (
            "optimizer".into(),
            s(format!("{:?}", args.optimizer).to_lowercase()),
        ),
        ("momentum".into(), AttrValue::F64(args.momentum)),
        ("deadline_ms".into(), AttrValue::F64(args.deadline_ms)),
        ("max_wait_ms".into(), AttrValue::F64(args.max_wait_ms)),
        ("straggler_model".into(), s(args.straggler_model.clone())),
        ("seed".into(), AttrValue::U64(args.seed)),
        ("eval_every".into(), AttrValue::U64(args.eval_every)),
        ("decoder_used".into(), s("mds-matvec".into())),
    ];
    let toml = format!(
        "data = {:?}\nmodel = {:?}\ncode = {:?}\nstragglers = {}\niterations = {}\nlr = {}\nl2 = {}\n\
         momentum = {}\ndeadline-ms = {}\nmax-wait-ms = {}\nstraggler-model = {:?}\nseed = {}\nout = {:?}\n",
        cfg.matrix.display().to_string(),
        args.model.name(),
        args.code,
        args.stragglers,
        args.iterations,
        args.lr,
        args.l2,
        args.momentum,
        args.deadline_ms,
        args.max_wait_ms,
        args.straggler_model,
        args.seed,
        cfg.out.display().to_string()
    );
    std::fs::write(cfg.out.join("config.toml"), &toml)
        .map_err(|e| crate::io::IoError::os(&cfg.out, e))?;
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml: toml,
        code_matrix: code.generator().as_standard_layout().into_owned(),
        n_workers: cfg.n,
    };
    let writer = RunWriter::create(&cfg.results_path(), &meta, None)?;
    Ok((data, test, writer))
}

/// ln(1 + eᵗ), stable for any t.
fn log1p_exp(t: f64) -> f64 {
    if t > 0.0 {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

/// 1 / (1 + e⁻ᵗ), stable for any t.
fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// (ℓ(z, y), ∂ℓ/∂z) of the model's per-row loss (the same as `model::{Linear, Logistic}`).
fn loss_and_residual(kind: ModelKind, z: f64, y: f64) -> (f64, f64) {
    match kind {
        ModelKind::Linear => (0.5 * (z - y) * (z - y), z - y),
        _ => (log1p_exp(-y * z), -y * sigmoid(-y * z)),
    }
}

fn coordinate(
    world: &SimpleCommunicator,
    args: &MdsTrainArgs,
    cfg: &MatvecConfig,
    phases: Vec<Phase<'_>>,
    model: &dyn Model,
    (data, test): (&crate::data::Dataset, Option<&crate::data::Dataset>),
    mut writer: RunWriter,
) -> Result<i32> {
    let n = cfg.n;
    let rows = data.n_rows();
    let d = model.n_features();
    let dim = d + 1;
    let mut c = Rank0::new(world, cfg, phases);
    let mut opt = Optimizer::new(args.optimizer, args.lr, args.momentum, Array1::zeros(dim));
    let mut gsum = Array1::<f64>::zeros(dim);
    let mut grad = Array1::<f64>::zeros(dim);
    let mut r = Array1::<f64>::zeros(rows);
    let mut ws = Workspace::default();
    let start = Instant::now();
    let mut validation: Vec<(String, AttrValue)> = Vec::new();
    let mut passed = false;
    let mut last_loss = f64::NAN;
    let mut last_test = None;
    let mut run = || -> Result<()> {
        for t in 0..args.iterations {
            let t_it = Instant::now();
            let point = opt.point().to_owned();
            // Phase 0: z = X w + b.
            c.begin(2 * t, 0, point.slice(s![..d]))?;
            c.collect()?;
            let z = c.decode()?;
            let (dec0, bytes0, late0, rej0) = (c.decode_s, c.bytes, c.late, c.rejected);
            let resp0 = n - c.silent().len();
            let arrival0 = c.arrival_s.clone();
            let compute0 = c.compute_s.clone();
            let injected0 = c.injected_s.clone();
            c.collecting = false;
            let mut loss_sum = 0.0;
            for ((ri, &zi), &yi) in r.iter_mut().zip(z.value.column(0)).zip(&data.y) {
                let (l, g) = loss_and_residual(model.kind(), zi + point[d], yi);
                loss_sum += l;
                *ri = g;
            }
            // Phase 1: Xᵀ r.
            c.begin(2 * t + 1, 1, r.view())?;
            c.collect()?;
            let gx = c.decode()?;
            c.collecting = false;
            gsum.slice_mut(s![..d]).assign(&gx.value.column(0));
            gsum[d] = r.sum();
            let wall = t_it.elapsed().as_secs_f64();
            model::objective_gradient_into(
                model,
                gsum.view(),
                point.view(),
                rows,
                args.l2,
                grad.view_mut(),
            );
            opt.step(grad.view());
            let loss = model::objective(model, loss_sum, point.view(), rows, args.l2);
            last_loss = loss;
            let cond = z.cond.max(gx.cond);
            let mut grad_err = f64::NAN;
            if t == 0 {
                // Outside the timed path: the exact gradient sum.
                let mut g = Array1::<f64>::zeros(dim);
                model.gradient_into(
                    point.view(),
                    &data.x,
                    data.y.view(),
                    None,
                    &mut ws,
                    g.view_mut(),
                );
                grad_err = rel_err(gsum.view(), g.view());
                let tol = validation_tol(z.cond.max(1.0) * gx.cond.max(1.0));
                passed = grad_err <= tol;
                let verdict = if passed { "PASSED" } else { "FAILED" };
                log::info!(
                    "[rank 0] validation at iteration 0: decoded vs exact gradient rel. error {grad_err:.3e} (conds {:.2e}, {:.2e}; tolerance {tol:.1e}): {verdict}",
                    z.cond,
                    gx.cond
                );
                validation = vec![
                    ("iteration".into(), AttrValue::U64(0)),
                    ("check".into(), AttrValue::Str(verdict.into())),
                    ("verdict".into(), AttrValue::Str(verdict.into())),
                    ("rel_err".into(), AttrValue::F64(grad_err)),
                    ("tolerance".into(), AttrValue::F64(tol)),
                    ("exact_decoding".into(), AttrValue::Bool(true)),
                ];
            }
            let mut rec = IterationRecord::new(n);
            // The test split at the new parameters, on the schedule of `train`.
            let due =
                (args.eval_every > 0 && (t + 1) % args.eval_every == 0) || t + 1 == args.iterations;
            if let Some(test) = test.filter(|_| due) {
                let ev = model.evaluate(opt.params(), &test.x, test.y.view(), &mut ws);
                rec.set_test(&ev);
                last_test = Some(ev);
            }
            rec.set("iteration", t as f64);
            rec.set("wall_s", wall);
            rec.set("elapsed_s", start.elapsed().as_secs_f64());
            rec.set("decode_s", dec0 + c.decode_s);
            rec.set("train_loss", loss);
            rec.set("n_responders", resp0.min(n - c.silent().len()) as f64);
            rec.set("exact", 1.0);
            rec.set("decode_residual", 0.0);
            rec.set("cond", cond);
            rec.set("grad_rel_err", grad_err);
            rec.set("late", f64::from(late0 + c.late));
            rec.set("rejected", f64::from(rej0 + c.rejected));
            rec.set("bytes_received", bytes0 + c.bytes);
            rec.per_worker[0] = arrival0;
            rec.per_worker[1] = compute0
                .iter()
                .zip(&c.compute_s)
                .map(|(a, b)| a + b)
                .collect();
            rec.per_worker[2] = injected0
                .iter()
                .zip(&c.injected_s)
                .map(|(a, b)| a + b)
                .collect();
            rec.per_worker[3] = c
                .arrival_s
                .iter()
                .map(|a| if a.is_nan() { 0.0 } else { 1.0 })
                .collect();
            writer.append(&rec)?;
            if t % args.log_every.max(1) == 0 || t + 1 == args.iterations {
                log::info!(
                    "[rank 0] it {t:>5}/{}  loss {loss:.6}  wall {:.2} ms  cond {cond:.2e}",
                    args.iterations,
                    wall * 1e3
                );
            }
        }
        Ok(())
    };
    let outcome = run();
    let exit = i32::from(!(outcome.is_ok() && passed));
    let unreconciled = c.shutdown(exit)?;
    if validation.is_empty() {
        validation = vec![
            ("check".into(), AttrValue::Str("FAILED".into())),
            ("verdict".into(), AttrValue::Str("FAILED".into())),
            (
                "reason".into(),
                AttrValue::Str("the first iteration never decoded".into()),
            ),
        ];
    }
    let path = writer.path().to_path_buf();
    writer.finish(&FinalRecord {
        status: if exit == 0 { "complete" } else { "failed" }.into(),
        w_final: opt.params().to_owned(),
        validation,
        summary: vec![
            ("final_train_loss".into(), AttrValue::F64(last_loss)),
            (
                "unreconciled_workers".into(),
                AttrValue::Str(format!("{unreconciled:?}")),
            ),
        ]
        .into_iter()
        .chain(results::test_summary(last_test.as_ref()))
        .collect(),
        per_worker: Vec::new(),
    })?;
    super::abort_if_unreconciled(&unreconciled, &path, RunStatus::Degraded.exit_code());
    outcome?;
    if !passed {
        return Err(Error::Check(format!(
            "validation FAILED: the decoded gradient differs from the exact one; see /validation in {}",
            path.display()
        )));
    }
    let test_text = last_test
        .as_ref()
        .map_or(String::new(), |e| format!(", {e}"));
    println!(
        "train ({} through mat-vecs): final train loss {last_loss:.6}{test_text}; results: {}",
        args.code,
        path.display()
    );
    Ok(0)
}
