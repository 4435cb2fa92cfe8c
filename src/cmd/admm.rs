//! `gradcode admm`: pdADMM over MPI ranks (model parallelism without backpropagation, issue 19),
//! or with `--reference` the serial reference on one process. The algorithm, its loops and its
//! checkpoints are [`crate::admm`]'s; this is the start-up.
//!
//! `mpirun -np 1+R gradcode admm --data D.h5 --layers 784,500,500,10 ...`: rank 0 coordinates
//! and records; layer rank r (1..=R) holds layers (r − 1)·K + 1 ..= r·K (`--layers-per-rank K`,
//! default 1, so R = L). Start-up, in this order on every rank (GUIDE §2, [`super`]): the config
//! check (the world must have 1 + ⌈L/K⌉ ranks); rank 0 validates the dataset in the
//! resource-limited child, inspects it, checks the memory budget, and broadcasts the shape;
//! every rank checks the network against it (inputs = features, outputs = classes); with
//! `--resume`, rank 0 broadcasts the manifest's boundaries and one all-gather per candidate
//! agrees on the newest one every layer rank's file has; every rank loads its part (rank 0 the
//! rows it evaluates on and the results file; the rank of layer 1 the training rows; the rank of
//! layer L their classes); one all-gather of the load outcome. Then no collectives: the layer
//! ranks exchange with their neighbours and report to rank 0 through `comm`.

use std::ops::RangeInclusive;

use ndarray::Array2;

use super::{gather_startup, rank_result, DataShape};
use crate::admm::coordinator;
use crate::admm::group::{Input, LayerGroup};
use crate::admm::net::{classes_of, Net};
use crate::admm::record::{EvalData, Recorder};
use crate::admm::state::{self, Restore, Stamp};
use crate::admm::worker::{self, Init, Plan};
use crate::admm::{serial, Codec, Outcome, Penalties};
use crate::comm::mpi::World;
use crate::comm::{LayerLink, Monitor};
use crate::config::{AdmmArgs, AdmmConfig, ConfigError};
use crate::data::{Dataset, Features};
use crate::error::{Error, Result};
use crate::io::dataset::{self, Split};
use crate::io::results::{self, AttrValue, RunMeta, RunWriter};
use crate::train::{self, RunStatus};

/// Run `gradcode admm`; returns the process exit code.
pub fn run(args: &AdmmArgs) -> Result<i32> {
    train::install_signal_handlers();
    if wants_reference(args) {
        return run_reference(args);
    }
    super::with_mpi(|world| run_mpi(world, args))
}

fn wants_reference(args: &AdmmArgs) -> bool {
    super::reference_requested(args.reference, args.job.config.as_deref())
}

fn penalties(cfg: &AdmmConfig) -> Penalties {
    Penalties {
        rho: cfg.rho,
        nu: cfg.nu,
    }
}

/// Bytes one rank holding `range` needs for `n` rows (its layers' variables, views and scratch,
/// the training rows for layer 1, message buffers), or rank 0 (`range` None: the rows it
/// evaluates on).
fn rank_bytes(
    cfg: &AdmmConfig,
    net: &Net,
    range: Option<&RangeInclusive<usize>>,
    n: u128,
    test: u128,
) -> Option<u128> {
    let Some(range) = range else {
        let params: u128 = (1..=net.layers()).map(|l| net.params(l) as u128).sum();
        return (n + test)
            .checked_mul(net.inputs(1) as u128 + 1)?
            .checked_add(2 * params)?
            .checked_mul(8);
    };
    let mut values: u128 = 0;
    for l in range.clone() {
        let (i, o) = (net.inputs(l) as u128, net.outputs(l) as u128);
        values = values
            .checked_add(n.checked_mul(4 * i + 6 * o)?)?
            .checked_add(2 * (i + 1) * o)?;
    }
    let (first, last) = (*range.start(), *range.end());
    let messages = (cfg.max_staleness as u128 + 3).checked_mul(
        n.checked_mul(2 * net.outputs(last) as u128 + 3 * net.inputs(first) as u128)?,
    )?;
    values.checked_add(messages)?.checked_mul(8)
}

/// Refuse a run whose largest rank would not fit in the memory budget (RELIABILITY BI-9); the
/// serial reference holds rank 0's rows and every layer in one process.
fn fits(cfg: &AdmmConfig, shape: &DataShape) -> Result<()> {
    let net = Net::new(cfg.sizes.clone());
    let n = cfg.train_rows.unwrap_or(shape.rows) as u128;
    let test = (shape.test_rows + cfg.holdout) as u128;
    let hint = "use --train-rows to train on fewer rows, narrower layers, more layer ranks (--layers-per-rank), or raise --max-memory-mb if the node has the memory";
    let budget = cfg.job.budget();
    let what = |who: &str| {
        format!(
            "{who} of this run ({n} training rows, layers {})",
            cfg.layers
        )
    };
    let rank0 = rank_bytes(cfg, &net, None, n, test);
    if cfg.reference {
        let all = rank_bytes(cfg, &net, Some(&(1..=net.layers())), n, test);
        let need = rank0.zip(all).and_then(|(a, b)| a.checked_add(b));
        return Ok(budget.check(&what("the serial reference"), need, hint)?);
    }
    budget.check(&what("rank 0"), rank0, hint)?;
    for (r, g) in net.groups(cfg.layers_per_rank).into_iter().enumerate() {
        let who = format!("layer rank {} (layers {}..={})", r + 1, g.start(), g.end());
        budget.check(&what(&who), rank_bytes(cfg, &net, Some(&g), n, test), hint)?;
    }
    Ok(())
}

/// Dense rows of a split.
fn dense(d: Dataset) -> (Array2<f64>, Vec<usize>) {
    let y = classes_of(d.y.view());
    let x = match d.x {
        Features::Dense(a) => a,
        Features::Sparse(c) => c.to_dense(),
    };
    (x, y)
}

/// The first `n` training rows.
fn training_rows(cfg: &AdmmConfig, n: usize) -> Result<(Array2<f64>, Vec<usize>)> {
    Ok(dense(dataset::read_rows(
        &cfg.data,
        Split::Train,
        std::slice::from_ref(&(0..n)),
    )?))
}

/// The rows rank 0 evaluates on: the training rows and the test split or the held-out rows.
fn eval_data(cfg: &AdmmConfig, shape: &DataShape, n: usize) -> Result<EvalData> {
    let (train_x, train_y) = training_rows(cfg, n)?;
    let test = if shape.test_rows > 0 {
        Some(dense(dataset::read_all(&cfg.data, Split::Test)?))
    } else if cfg.holdout > 0 {
        let r = shape.rows - cfg.holdout..shape.rows;
        Some(dense(dataset::read_rows(
            &cfg.data,
            Split::Train,
            std::slice::from_ref(&r),
        )?))
    } else {
        None
    };
    Ok(EvalData {
        train_x,
        train_y,
        test,
    })
}

/// The run folder, the effective config, the rows of a resumed run up to `first`, the results
/// file.
fn results_file(
    cfg: &AdmmConfig,
    net: &Net,
    workers: usize,
    world: usize,
    first: u64,
) -> Result<RunWriter> {
    let mut attrs = vec![
        (
            "config_sha256".into(),
            AttrValue::Str(cfg.trajectory_hash()),
        ),
        ("n_layers".into(), AttrValue::U64(net.layers() as u64)),
        ("layer_ranks".into(), AttrValue::U64(workers as u64)),
    ];
    let (toml, mut config) = super::write_run_config(
        &cfg.job.out,
        &cfg.job.config_path(),
        cfg.to_toml(),
        cfg,
        "admm",
    )?;
    config.append(&mut attrs);
    let path = cfg.job.results_path();
    let initial = if cfg.resume && path.exists() {
        let r = results::read_rows(&path, Some(first as usize))?;
        if r.len() != first as usize {
            return Err(Error::Check(format!(
                "{} has {} rows but the checkpoint is at iteration {first}; cannot continue the same results",
                path.display(),
                r.len()
            )));
        }
        Some(r)
    } else {
        None
    };
    let (code, env) = super::provenance(world);
    let meta = RunMeta {
        code,
        env,
        config,
        config_toml: toml,
        code_matrix: Array2::ones((1, 1)),
        n_workers: workers,
        n_layers: net.layers(),
        adapt: false,
    };
    Ok(RunWriter::create(&path, &meta, initial.as_ref())?)
}

/// The manifest's boundaries and clocks, newest first; an error when there is none.
fn manifest(stamp: &Stamp<'_>) -> Result<Vec<(u64, f64)>> {
    let (good, reasons) = state::manifest_boundaries(stamp);
    if !good.is_empty() {
        return Ok(good);
    }
    let path = stamp.dir.join(format!("{}.h5", state::MANIFEST));
    Err(if reasons.is_empty() {
        ConfigError::NoCheckpoint { path }.into()
    } else {
        crate::io::IoError::layout(
            &path,
            format!("no usable checkpoint manifest: {}", reasons.join("; ")),
        )
        .into()
    })
}

/// With `--resume`: the newest boundary of the manifest that every layer rank's checkpoint has
/// (rank 0 broadcasts the manifest's boundaries; one all-gather per candidate), and the training
/// clock there. Without: (0, 0).
fn resume_boundary(
    world: &World,
    cfg: &AdmmConfig,
    stamp: &Stamp<'_>,
    groups: &[RangeInclusive<usize>],
) -> Result<std::result::Result<(u64, f64), i32>> {
    if !cfg.resume {
        return Ok(Ok((0, 0.0)));
    }
    let rank = world.rank();
    // [ok, candidates, boundary, clock, boundary, clock]
    let msg = match super::broadcast_from_rank0::<6>(world, || {
        let list = manifest(stamp)?;
        let mut msg = [0.0; 6];
        msg[1] = list.len().min(2) as f64;
        for (i, (c, e)) in list.iter().take(2).enumerate() {
            msg[2 + 2 * i] = *c as f64;
            msg[3 + 2 * i] = *e;
        }
        Ok(msg)
    })? {
        Ok(m) => m,
        Err(code) => return Ok(Err(code)),
    };
    let candidates: Vec<(u64, f64)> = (0..msg[1] as usize)
        .map(|i| (msg[2 + 2 * i] as u64, msg[3 + 2 * i]))
        .collect();
    let mine = if rank == 0 {
        None
    } else {
        Some(state::group_boundaries(stamp, &groups[rank - 1]))
    };
    for &(c, clock) in &candidates {
        let has = mine.as_ref().map_or(true, |(b, _)| b.contains(&c));
        if world.all_gather_flags(has).iter().all(|&f| f) {
            if rank == 0 {
                log::info!("[rank 0] resuming from the checkpoints of iteration {c}");
            }
            return Ok(Ok((c, clock)));
        }
    }
    if let Some((b, reasons)) = &mine {
        log::error!(
            "[rank {rank}] its checkpoints hold iterations {b:?}{}",
            if reasons.is_empty() {
                String::new()
            } else {
                format!("; refused: {}", reasons.join("; "))
            }
        );
    }
    rank_result(
        rank,
        Error::Check(format!(
            "--resume: no iteration of the manifest {:?} has a checkpoint on every layer rank (see their messages)",
            candidates.iter().map(|c| c.0).collect::<Vec<_>>()
        )),
    )
    .map(Err)
}

/// What each rank loaded at start-up.
enum Loaded<'a> {
    Rank0(Box<Recorder<'a>>),
    Layers(Init<'a>),
}

fn run_mpi(world: &World, args: &AdmmArgs) -> Result<i32> {
    let rank = world.rank();
    let cfg = match AdmmConfig::from_args(args, world.size()) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    if rank == 0 {
        super::warn_if_root();
    }
    let shape = match super::broadcast_data_shape(
        world,
        &cfg.data,
        || Ok(cfg.job.check_output(cfg.resume)?),
        |shape| fits(&cfg, shape),
    )? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (n, _) = match cfg.check_data(shape.features, shape.task, shape.rows, shape.test_rows > 0) {
        Ok(v) => v,
        Err(e) => return rank_result(rank, e.into()),
    };
    let net = Net::new(cfg.sizes.clone());
    let groups = net.groups(cfg.layers_per_rank);
    let hash = cfg.trajectory_hash();
    let stamp = Stamp {
        dir: &cfg.job.out,
        hash: &hash,
        seed: cfg.job.seed,
    };
    let (first, clock) = match resume_boundary(world, &cfg, &stamp, &groups)? {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let local: Result<Loaded> = if rank == 0 {
        let start = (first, clock, world.size());
        setup_rank0(&cfg, &net, &shape, n, groups.len(), start).map(|r| Loaded::Rank0(Box::new(r)))
    } else {
        load_layers(&cfg, &net, &groups[rank - 1], n, first, &stamp).map(Loaded::Layers)
    };
    let started = gather_startup(world, local)?;
    match started {
        Err(code) => Ok(code),
        Ok(Loaded::Rank0(rec)) => {
            let rec = *rec;
            log::info!(
                "[rank 0] gradcode {} admm: {} layers ({}) on {} layer ranks, {n} training rows, ρ = {}, ν = {}, staleness {}{}; iterations {first}..{}",
                crate::VERSION,
                net.layers(),
                cfg.layers,
                groups.len(),
                cfg.rho,
                cfg.nu,
                cfg.max_staleness,
                cfg.quantize_bits.map_or(String::new(), |b| format!(", {b}-bit exchange")),
                cfg.iterations
            );
            let mon = Monitor::new(world.transport(), groups.len(), first);
            let outcome = coordinator::run(&cfg, &net, mon, rec, &stamp, first);
            finish(&cfg, outcome)
        }
        Ok(Loaded::Layers(init)) => {
            let codec = Codec::new(cfg.quantize_bits);
            let link = LayerLink::new(
                world.peer(),
                worker::link_spec(&net, &groups, rank, n, codec),
            );
            let plan = Plan {
                iterations: cfg.iterations,
                first,
                staleness: cfg.max_staleness,
                checkpoint_every: cfg.checkpoint_every,
                eval_every: cfg.eval_every,
                stamp: stamp.clone(),
                shutdown_bound: cfg.job.shutdown_bound(),
            };
            match worker::run(link, &plan, cfg.job.schedule(), init) {
                Ok(code) => Ok(code),
                Err(e) => {
                    log::error!("[rank {rank}] {e}");
                    crate::comm::mpi::abort(1);
                }
            }
        }
    }
}

/// Rank 0's start-up: the rows it evaluates on and the results file; `start` is (first
/// iteration, training clock there, world size).
fn setup_rank0<'a>(
    cfg: &'a AdmmConfig,
    net: &'a Net,
    shape: &DataShape,
    n: usize,
    ranks: usize,
    start: (u64, f64, usize),
) -> Result<Recorder<'a>> {
    let (first, clock, world) = start;
    if !cfg.resume {
        crate::io::checkpoint::clean_stale(&cfg.job.out);
    }
    let eval = eval_data(cfg, shape, n)?;
    let writer = results_file(cfg, net, ranks, world, first)?;
    Ok(Recorder::new(cfg, net, writer, eval, ranks, first, clock))
}

/// A layer rank's layers: loaded from its checkpoint, or built at iteration 0 once the previous
/// rank's first message arrives (the rank of layer 1 reads the training rows, the rank of layer
/// L their classes).
fn load_layers<'a>(
    cfg: &'a AdmmConfig,
    net: &'a Net,
    range: &RangeInclusive<usize>,
    n: usize,
    first: u64,
    stamp: &Stamp<'_>,
) -> Result<Init<'a>> {
    let (holds_first, holds_last) = (*range.start() == 1, *range.end() == net.layers());
    let (rows, labels) = if holds_first || holds_last {
        let (x, y) = training_rows(cfg, n)?;
        (
            holds_first.then_some(x),
            if holds_last { y } else { Vec::new() },
        )
    } else {
        (None, Vec::new())
    };
    let pen = penalties(cfg);
    let codec = Codec::new(cfg.quantize_bits);
    if cfg.resume {
        let group = state::load_group(
            stamp,
            first,
            Restore {
                net,
                range: range.clone(),
                pen,
                codec,
                rows,
                labels: &labels,
                n,
            },
        )?;
        return Ok(Init::Resumed(group));
    }
    let range = range.clone();
    let seed = cfg.job.seed;
    Ok(Init::Fresh(Box::new(move |payload| {
        let input = match (rows, payload) {
            (Some(x), _) => Input::Rows(x),
            (None, Some(p)) => Input::Message {
                payload: p,
                rows: n,
            },
            (None, None) => {
                return Err(Error::Check(format!(
                    "internal: layer {} has neither the training rows nor a message",
                    range.start()
                )))
            }
        };
        Ok(LayerGroup::init(
            net, range, pen, codec, seed, input, &labels,
        )?)
    })))
}

/// Rank 0 (or the reference) after the run: abort when a layer rank was not reconciled, print
/// the error of a failed run, return the exit code.
fn finish(cfg: &AdmmConfig, outcome: Outcome) -> Result<i32> {
    super::abort_if_unreconciled(
        &outcome.unreconciled,
        &cfg.job.results_path(),
        outcome.status.exit_code(),
    );
    if let Some(e) = outcome.error {
        if matches!(outcome.status, RunStatus::Failed | RunStatus::Diverged) {
            eprintln!("gradcode: error: {e}");
        }
    }
    Ok(outcome.status.exit_code())
}

fn run_reference(args: &AdmmArgs) -> Result<i32> {
    let cfg = AdmmConfig::from_args(args, 1)?;
    super::warn_if_root();
    cfg.job.check_output(cfg.resume)?;
    crate::io::validate::validate_isolated(&cfg.data).and_then(|r| r.into_result(&cfg.data))?;
    let shape = DataShape::from(&dataset::inspect(&cfg.data)?);
    fits(&cfg, &shape)?;
    let (n, _) = cfg.check_data(shape.features, shape.task, shape.rows, shape.test_rows > 0)?;
    let net = Net::new(cfg.sizes.clone());
    let range = 1..=net.layers();
    let hash = cfg.trajectory_hash();
    let stamp = Stamp {
        dir: &cfg.job.out,
        hash: &hash,
        seed: cfg.job.seed,
    };
    let eval = eval_data(&cfg, &shape, n)?;
    let pen = penalties(&cfg);
    let codec = Codec::new(cfg.quantize_bits);
    let (group, first, clock) = if cfg.resume {
        let list = manifest(&stamp)?;
        let (have, _) = state::group_boundaries(&stamp, &range);
        let Some(&(c, clock)) = list.iter().find(|(c, _)| have.contains(c)) else {
            return Err(Error::Check(format!(
                "--resume: no iteration of the manifest {:?} has a checkpoint of the layers (they hold {have:?})",
                list.iter().map(|c| c.0).collect::<Vec<_>>()
            )));
        };
        let restore = Restore {
            net: &net,
            range: range.clone(),
            pen,
            codec,
            rows: Some(eval.train_x.clone()),
            labels: &eval.train_y,
            n,
        };
        (state::load_group(&stamp, c, restore)?, c, clock)
    } else {
        crate::io::checkpoint::clean_stale(&cfg.job.out);
        let input = Input::Rows(eval.train_x.clone());
        let g = LayerGroup::init(&net, range, pen, codec, cfg.job.seed, input, &eval.train_y)?;
        (g, 0, 0.0)
    };
    let writer = results_file(&cfg, &net, 0, 1, first)?;
    let rec = Recorder::new(&cfg, &net, writer, eval, 0, first, clock);
    log::info!(
        "gradcode {} admm serial reference: {} layers ({}), {n} training rows, ρ = {}, ν = {}; iterations {first}..{}",
        crate::VERSION,
        net.layers(),
        cfg.layers,
        cfg.rho,
        cfg.nu,
        cfg.iterations
    );
    let outcome = serial::run(&cfg, group, rec, &stamp, first);
    finish(&cfg, outcome)
}
