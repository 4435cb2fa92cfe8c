//! `gradcode simulate`: the training loop's timing by discrete-event simulation
//! ([`crate::sim`]), without MPI, written as a results file of the same schema as a real run
//! (`/config` attribute `job = "simulate"`, `/validation` verdict `SIMULATED`), so that
//! `gradcode report` compares simulated with real runs.
//!
//! Inputs: the settings of `train` (code, s, deadline policy, chunks, straggler model, workers,
//! iterations, seed), and either a compute time (`--compute-ms`, with the straggler model
//! spec) or `--replay` of recorded runs. The link and rank 0's own times come from the replayed
//! files (fitted, see [`crate::sim::fit_link`]) unless given; without replay the measured
//! defaults of this machine ([`DEFAULT_LINK`]). Only timing is simulated: no data is read but
//! the dataset's shape (to size the messages), and the loss columns stay NaN.

use std::path::PathBuf;

use crate::cli::SimulateArgs;
use crate::coding::{self, TrainCode};
use crate::config::{RunConfig, TrainArgs};
use crate::error::{Error, Result};
use crate::io::dataset;
use crate::io::results::WorkerMetric;
use crate::io::results::{AttrValue, FinalRecord, IterationRecord, Metric, RunMeta, RunWriter};
use crate::model;
use crate::sim::{
    fit_link, LinkModel, Overheads, SimError, SimRound, SimSettings, Simulator, Trace, TraceFile,
    Workload, DEFAULT_LINK, DEFAULT_OVERHEADS,
};
use crate::train::{RunSummary, SummaryText};

/// Run `gradcode simulate`; returns the process exit code.
pub fn run(args: &SimulateArgs) -> Result<i32> {
    let files = read_traces(&args.replay)?;
    if args.fit_link {
        let (link, over) = fitted(&files)?;
        print_link(&link, &over);
        return Ok(0);
    }
    let default_workers = files.iter().map(|f| f.workers.len()).max();
    let train = match files.iter().find_map(|f| f.recorded.as_deref()) {
        Some(rec) => with_recorded_defaults(&args.train, rec),
        None => args.train.clone(),
    };
    let cfg = RunConfig::for_simulation(&train, default_workers)?;
    let sim = build(args, &cfg, &files)?;
    let replayed: Vec<String> = args
        .replay
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    simulate_to_file(&cfg, sim, &replayed.join(" "))
}

/// The settings of a replay: what is not given is the first replayed run's (its code with s,
/// degree and decoder when no `--code` is given; policy, deadlines, chunks, model, batch; the
/// straggler model its delays were drawn from), so `simulate --replay RUN` simulates that run.
fn with_recorded_defaults(given: &TrainArgs, rec: &TrainArgs) -> TrainArgs {
    let mut a = given.clone();
    // A replayed tree run is simulated as one, unless another code is asked for.
    if given.code.is_none() {
        a.decode_tree = a.decode_tree.or(rec.decode_tree);
    }
    if a.code.is_none() {
        a.code = rec.code;
        a.stragglers = a.stragglers.or(rec.stragglers);
        a.degree = a.degree.or(rec.degree);
        a.decoder = a.decoder.or(rec.decoder);
        a.straggle_prob = a.straggle_prob.or(rec.straggle_prob);
    }
    a.on_deadline = a.on_deadline.or(rec.on_deadline);
    a.chunks = a.chunks.or(rec.chunks);
    a.model = a.model.or(rec.model);
    a.hidden = a.hidden.clone().or_else(|| rec.hidden.clone());
    if a.model == Some(crate::model::ModelKind::Cnn) {
        a.conv_filters = a.conv_filters.clone().or_else(|| rec.conv_filters.clone());
    }
    a.batch = a.batch.or(rec.batch);
    let (j, r) = (&mut a.job, &rec.job);
    j.deadline_ms = j.deadline_ms.or(r.deadline_ms);
    j.max_wait_ms = j.max_wait_ms.or(r.max_wait_ms);
    j.straggler_model = j
        .straggler_model
        .clone()
        .or_else(|| r.straggler_model.clone());
    a
}

/// The recorded runs of `--replay`.
pub(crate) fn read_traces(paths: &[PathBuf]) -> Result<Vec<TraceFile>> {
    paths
        .iter()
        .map(|p| TraceFile::read(p).map_err(Error::from))
        .collect()
}

/// The link and rank 0's times fitted from `files` (an error when they have none).
pub(crate) fn fitted(files: &[TraceFile]) -> Result<(LinkModel, Overheads)> {
    if files.is_empty() {
        return Err(
            SimError::invalid("fit-link", "", "needs --replay RUN.h5 (one or more)").into(),
        );
    }
    let samples: Vec<_> = files.iter().flat_map(|f| f.link.iter().copied()).collect();
    let link = fit_link(&samples, DEFAULT_LINK).ok_or_else(|| {
        SimError::invalid(
            "fit-link",
            "",
            "the replayed files have no on-time arrivals with a known message size (/model/w_final)",
        )
    })?;
    Ok((link, overheads_of(files)))
}

/// Rank 0's step (median) and gap (mean) times of `files`, defaults where they have none.
fn overheads_of(files: &[TraceFile]) -> Overheads {
    let mut step: Vec<f64> = files
        .iter()
        .flat_map(|f| f.step_s.iter().copied())
        .collect();
    step.sort_by(f64::total_cmp);
    let gap: Vec<f64> = files.iter().flat_map(|f| f.gap_s.iter().copied()).collect();
    Overheads {
        step_s: if step.is_empty() {
            DEFAULT_OVERHEADS.step_s
        } else {
            crate::io::metrics::percentile(&step, 0.5)
        },
        gap_s: if gap.is_empty() {
            DEFAULT_OVERHEADS.gap_s
        } else {
            gap.iter().sum::<f64>() / gap.len() as f64
        },
    }
}

fn print_link(link: &LinkModel, over: &Overheads) {
    println!(
        "alpha-ms = {:.4}\nmessage-ms = {:.4}\nbeta-ms-per-mb = {:.4}\nstep-ms = {:.4}\ngap-ms = {:.4}",
        link.alpha_s * 1e3,
        link.message_s * 1e3,
        link.beta_s_per_byte * 1e9,
        over.step_s * 1e3,
        over.gap_s * 1e3
    );
}

/// Model parameters: `--dim`, else the replayed runs' (when the same model), else the dataset's.
fn dim_of(args: &SimulateArgs, cfg: &RunConfig, files: &[TraceFile]) -> Result<usize> {
    if let Some(d) = args.dim {
        if d == 0 {
            return Err(SimError::invalid("dim", 0, "must be at least 1").into());
        }
        return Ok(d);
    }
    if cfg.has_data() {
        let info = dataset::inspect(&cfg.data)?;
        let m = model::build(
            cfg.model,
            &cfg.hidden,
            &cfg.conv_filters,
            info.n_features,
            info.image,
            info.task,
        )?;
        return Ok(m.dim());
    }
    files.iter().find_map(|f| f.dim).ok_or_else(|| {
        SimError::invalid(
            "dim",
            "",
            "the message size is unknown: pass --data, --dim or a --replay file with /model/w_final",
        )
        .into()
    })
}

/// The simulator of `cfg`: its code, the workload (replay or `--compute-ms` with the straggler
/// model) and the link (flags, else fitted from the replayed files, else this machine's).
pub(crate) fn build(
    args: &SimulateArgs,
    cfg: &RunConfig,
    files: &[TraceFile],
) -> Result<Simulator> {
    let kind = match cfg.code {
        TrainCode::Gradient(k) => k,
        TrainCode::MatVec(_) => return Err(SimError::invalid(
            "code",
            cfg.code,
            "the simulator runs gradient codes only (an mds-* code trains by two coded mat-vecs)",
        )
        .into()),
    };
    // --decode-tree G: the two-level code, -s at both levels (as `train`).
    let tree = |seed| {
        cfg.decode_tree.map(|g| {
            coding::TreeCode::new(kind, cfg.workers(), g, cfg.stragglers, cfg.stragglers, seed)
        })
    };
    enum Codes {
        Flat(Box<dyn coding::GradientCode>),
        /// The workers' two-level code and rank 0's view of it.
        Tree(Box<(coding::TreeCode, coding::RootCode)>),
    }
    let code = match (tree(cfg.job.seed), tree(cfg.job.seed)) {
        (Some(workers), Some(root)) => Codes::Tree(Box::new((workers?, root?.root()))),
        _ => Codes::Flat(coding::build_with(
            kind,
            cfg.workers(),
            cfg.stragglers,
            cfg.job.seed,
            &cfg.code_options(),
        )?),
    };
    let workload = if files.is_empty() {
        let ms = args.compute_ms.ok_or_else(|| {
            SimError::invalid(
                "compute-ms",
                "",
                "without --replay the simulator needs each iteration's compute time of a worker \
                 holding the whole dataset (--compute-ms)",
            )
        })?;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(SimError::invalid("compute-ms", ms, "must be a finite number ≥ 0").into());
        }
        Workload::Model {
            compute_per_share_s: ms * 1e-3,
            schedule: cfg.job.schedule(),
        }
    } else {
        Workload::Replay(Trace::new(
            files,
            cfg.workers(),
            args.replay_order,
            cfg.job.seed,
            args.pool_workers,
        )?)
    };
    let (mut link, mut over) = match fitted(files) {
        Ok(f) => f,
        Err(_) => (DEFAULT_LINK, overheads_of(files)),
    };
    if let Some(a) = args.alpha_ms {
        link.alpha_s = a * 1e-3;
    }
    if let Some(m) = args.message_ms {
        link.message_s = m * 1e-3;
    }
    if let Some(b) = args.beta_ms_per_mb {
        link.beta_s_per_byte = b * 1e-9;
    }
    if let Some(s) = args.step_ms {
        over.step_s = s * 1e-3;
    }
    if let Some(g) = args.gap_ms {
        over.gap_s = g * 1e-3;
    }
    let settings = SimSettings {
        chunks: cfg.chunks,
        deadline_s: cfg.job.deadline_ms * 1e-3,
        max_wait_s: cfg.job.max_wait_ms * 1e-3,
        on_deadline: cfg.on_deadline,
        reuse_stale: cfg.reuse_stale,
        dim: dim_of(args, cfg, files)?,
        link,
        overheads: over,
    };
    Ok(match code {
        Codes::Flat(flat) => Simulator::new(flat, settings, workload)?,
        Codes::Tree(both) => Simulator::tree(both.0, both.1, settings, workload)?,
    })
}

/// `/config` of a simulated run: the settings, the code, the link and `job = "simulate"`.
fn meta(cfg: &RunConfig, sim: &Simulator, replayed: &str) -> RunMeta {
    let (code_attrs, env_attrs) = super::provenance(0);
    let mut config = super::settings_attrs(&cfg.settings());
    let code = sim.code();
    let set = sim.settings();
    let f = |v: f64| AttrValue::F64(v);
    config.extend([
        ("code".into(), AttrValue::Str(cfg.code_name())),
        (
            "code_name".into(),
            AttrValue::Str(code.kind().name().into()),
        ),
        (
            "partitions".into(),
            AttrValue::U64(code.n_partitions() as u64),
        ),
        ("job".into(), AttrValue::Str("simulate".into())),
        ("simulated".into(), AttrValue::Bool(true)),
        ("sim_replay".into(), AttrValue::Str(replayed.into())),
        ("sim_alpha_s".into(), f(set.link.alpha_s)),
        ("sim_message_s".into(), f(set.link.message_s)),
        ("sim_beta_s_per_byte".into(), f(set.link.beta_s_per_byte)),
        ("sim_step_s".into(), f(set.overheads.step_s)),
        ("sim_gap_s".into(), f(set.overheads.gap_s)),
        ("sim_dim".into(), AttrValue::U64(set.dim as u64)),
    ]);
    RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml: cfg.to_toml(),
        code_matrix: code.matrix(),
        n_workers: cfg.workers(),
        n_layers: 0,
        adapt: false,
    }
}

/// One simulated round into `rec` (the columns a real round fills, losses NaN).
fn record(sim: &mut Simulator, round: &SimRound, rec: &mut IterationRecord) -> Result<()> {
    rec.reset();
    rec.set(Metric::Iteration, round.iteration as f64);
    rec.set(Metric::WallS, round.wall_s);
    rec.set(Metric::ElapsedS, round.elapsed_s);
    rec.set(Metric::OracleS, round.oracle_s);
    let parts = sim.settings().chunks;
    let full = round.parts_in.iter().filter(|&&p| p >= parts).count();
    rec.set(Metric::NResponders, full as f64);
    rec.set(Metric::Late, f64::from(round.late));
    rec.set(Metric::Stale, f64::from(round.stale));
    rec.set(Metric::BytesReceived, round.bytes_in);
    rec.set(Metric::MessagesReceived, f64::from(round.messages_in));
    rec.set(Metric::BytesSent, round.bytes_out);
    rec.set(Metric::DecodeS, 0.0);
    if let Some(d) = sim.decoding(round)? {
        rec.set(Metric::Exact, d.exact);
        rec.set(Metric::DecodeResidual, d.residual);
        rec.set(Metric::Cond, d.condition);
        rec.set(Metric::ErrorBound, d.error_bound);
    } else {
        rec.set(Metric::Exact, 0.0);
    }
    super::record_workers(
        rec,
        &round.arrival_s,
        &round.compute_s,
        &round.injected_s,
        &round.parts_in,
    );
    rec.worker_mut(WorkerMetric::PlannedS)
        .copy_from_slice(&round.planned_s);
    rec.worker_mut(WorkerMetric::StaleAge)
        .copy_from_slice(&round.stale_age);
    Ok(())
}

/// Simulate `cfg.iterations` rounds into OUT/run.h5 and print the summary.
fn simulate_to_file(cfg: &RunConfig, mut sim: Simulator, replayed: &str) -> Result<i32> {
    cfg.job.check_output(false)?;
    let out = &cfg.job.out;
    std::fs::create_dir_all(out).map_err(|e| crate::io::IoError::os(out, e))?;
    let meta = meta(cfg, &sim, replayed);
    std::fs::write(cfg.job.config_path(), &meta.config_toml)
        .map_err(|e| crate::io::IoError::os(out, e))?;
    let mut writer = RunWriter::create(&cfg.job.results_path(), &meta, None)?;
    let n = cfg.workers();
    let mut summary = RunSummary::new(n, cfg.chunks, None);
    let mut rec = IterationRecord::new(n);
    let mut all_exact = true;
    let mut timeout = None;
    for _ in 0..cfg.iterations {
        let round = match sim.step() {
            Ok(r) => r,
            Err(e @ SimError::Timeout { .. }) => {
                timeout = Some(e);
                break;
            }
            Err(e) => return Err(e.into()),
        };
        record(&mut sim, &round, &mut rec)?;
        all_exact &= rec.get(Metric::Exact) == 1.0;
        for l in &round.late_rows {
            writer.append_late(l);
            summary.add_late(l);
        }
        summary.add(&rec);
        writer.append(&rec)?;
    }
    for l in sim.shutdown() {
        writer.append_late(&l);
        summary.add_late(&l);
    }
    let status = if timeout.is_some() {
        "failed"
    } else {
        "complete"
    };
    let validation = vec![
        ("check".into(), AttrValue::Str("SIMULATED".into())),
        ("verdict".into(), AttrValue::Str("SIMULATED".into())),
        ("all_iterations_exact".into(), AttrValue::Bool(all_exact)),
    ];
    let rejected = vec![0; n];
    summary.print(&SummaryText {
        iterations: cfg.iterations,
        status,
        final_loss: f64::NAN,
        test: None,
        validation: &validation,
        rejected: &rejected,
        decode_tree: cfg.decode_tree,
    });
    println!("  results: {} (simulated)", writer.path().display());
    let (mut attrs, per_worker) = summary.record(&rejected);
    let error = timeout.as_ref().map(|e| e.to_string()).unwrap_or_default();
    attrs.push(("error".into(), AttrValue::Str(error)));
    writer.finish(&FinalRecord {
        status: status.into(),
        w_final: ndarray::Array1::zeros(0),
        validation,
        summary: attrs,
        per_worker,
        adapt: None,
    })?;
    match timeout {
        Some(e) => {
            eprintln!("gradcode: error: {e}");
            Ok(1)
        }
        None => Ok(0),
    }
}
