//! `gradcode train`: the MPI job (rank 0 runs the training loop, ranks 1..=n work), or with
//! `--reference` the serial path on one process. Both run [`crate::train::run`]; they differ in
//! the gradient engine: gradient coding ([`crate::train::coded`]) or coded mat-vecs
//! ([`crate::train::matvec`]) for the code chosen, the serial engine for the reference.
//!
//! Start-up order (GUIDE §2, see [`super`]): every rank checks the configuration and builds the
//! code identically before any MPI traffic; rank 0 validates the dataset, checks that the run
//! fits in memory, and broadcasts the shape; workers read only what they need; one all-gather of
//! the load outcome ends start-up, after which there are no collectives.

use std::path::Path;

use super::{gather_startup, rank_result, DataShape};
use crate::coding::{self, GradientCode, TrainCode, TreeCode};
use crate::comm::mpi::World;
use crate::comm::{
    GroupCompression, GroupSpec, Leader, Messages, Relay, WorkerLink, WorkerTransport,
};
use crate::compress::Compressor;
use crate::config::{RunConfig, TrainArgs};
use crate::data::batch::BatchPlan;
use crate::data::{partition_ranges, Dataset};
use crate::error::{Error, Result};
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::dataset::{self, Split};
use crate::io::results::{self, AdaptSwitch, AttrValue, RecordedRows, RunMeta, RunWriter};
use crate::linalg::MdsCode;
use crate::model::{self, Model};
use crate::optim::kfac;
use crate::train::adapt::{Adaptation, PartitionSource, StoredShard};
use crate::train::coded::{for_model, CodedGradients, CodedWorker, Shard};
use crate::train::matvec::{layouts, worker_blocks, MatVecGradients};
use crate::train::serial::SerialGradients;
use crate::train::{self, GradientEngine, RunStatus, Setup};

/// Run `gradcode train`; returns the process exit code.
pub fn run(args: &TrainArgs) -> Result<i32> {
    train::install_signal_handlers();
    if wants_reference(args) {
        return run_reference(args);
    }
    super::with_mpi(|world| run_mpi(world, args))
}

fn wants_reference(args: &TrainArgs) -> bool {
    super::reference_requested(args.reference, args.job.config.as_deref())
}

fn run_mpi(world: &World, args: &TrainArgs) -> Result<i32> {
    let rank = world.rank();
    let cfg = match RunConfig::from_args(args, world.size()) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    #[cfg(feature = "fault-injection")]
    if let Err(e) = crate::faults::init(cfg.workers()) {
        return rank_result(rank, e.into());
    }
    if rank == 0 {
        super::warn_if_root();
    }
    match cfg.code {
        TrainCode::Gradient(kind) => {
            let code = match tree_code(&cfg) {
                Ok(Some(t)) => Box::new(t),
                Ok(None) => match coding::build_with(
                    kind,
                    cfg.workers(),
                    cfg.stragglers,
                    cfg.job.seed,
                    &cfg.code_options(),
                ) {
                    Ok(c) => c,
                    Err(e) => return rank_result(rank, e.into()),
                },
                Err(e) => return rank_result(rank, e),
            };
            run_coded(world, &cfg, code)
        }
        TrainCode::MatVec(family) => {
            let k = cfg.workers() - cfg.stragglers;
            let code = match MdsCode::new(family, cfg.workers(), k) {
                Ok(c) => c,
                Err(e) => {
                    return rank_result(
                        rank,
                        crate::config::invalid("code", cfg.code, e.to_string()).into(),
                    )
                }
            };
            run_matvec(world, &cfg, &code)
        }
    }
}

/// The two-level code of `--decode-tree G` (-s at both levels), if asked for.
fn tree_code(cfg: &RunConfig) -> Result<Option<TreeCode>> {
    let (Some(g), TrainCode::Gradient(kind)) = (cfg.decode_tree, cfg.code) else {
        return Ok(None);
    };
    let s = cfg.stragglers;
    Ok(Some(TreeCode::new(
        kind,
        cfg.workers(),
        g,
        s,
        s,
        cfg.job.seed,
    )?))
}

/// Rank 0's code: the workers' one, or with `--decode-tree` the outer code over the leaders.
fn rank0_code(cfg: &RunConfig, code: Box<dyn GradientCode>) -> Result<Box<dyn GradientCode>> {
    Ok(match tree_code(cfg)? {
        Some(t) => Box::new(t.root()),
        None => code,
    })
}

/// The model of `cfg` on data of this shape (the memory checks need it built: a CNN without an
/// image shape is refused here, by name, before them).
fn build_model(cfg: &RunConfig, shape: &DataShape) -> Result<Box<dyn Model>, model::ModelError> {
    model::build(
        cfg.model,
        &cfg.hidden,
        &cfg.conv_filters,
        shape.features,
        shape.image,
        shape.task,
    )
}

/// Parameters of the model of `cfg` on data of this shape.
fn model_dim(cfg: &RunConfig, shape: &DataShape) -> Option<u128> {
    model::size_of(
        cfg.model,
        &cfg.hidden,
        &cfg.conv_filters,
        shape.features,
        shape.image,
        shape.task,
    )
    .map(|m| m.dim)
}

/// Bytes of the gradient kernel's scratch for `rows` rows in blocks of `block` rows (a network's
/// activations and backward buffers of one row block; nothing for the GLMs).
fn kernel_scratch(cfg: &RunConfig, shape: &DataShape, rows: u128, block: usize) -> Option<u128> {
    rows.min(block as u128)
        .checked_mul(scratch_row_bytes(cfg, shape)?)
}

/// Bytes of the kernel's scratch per row of a block (with K-FAC, the factor sums' rows too).
fn scratch_row_bytes(cfg: &RunConfig, shape: &DataShape) -> Option<u128> {
    let size = model::size_of(
        cfg.model,
        &cfg.hidden,
        &cfg.conv_filters,
        shape.features,
        shape.image,
        shape.task,
    )?;
    let kfac = KfacMemory::of(cfg, shape, 0, 0).per_row?;
    size.scratch_per_row.checked_mul(8)?.checked_add(kfac)
}

/// K-FAC's share of a rank's memory (`--optimizer kfac`; all 0 without it), in bytes; `None`
/// on overflow. Counted in the `--max-memory-mb` sizing and named when a run is refused.
#[derive(Debug, Clone, Copy)]
struct KfacMemory {
    /// Rank 0: the factors, eigenbases and their workspace ([`kfac::rank0_values`]) and the
    /// packed factor sums of `rank0_messages` messages.
    rank0: Option<u128>,
    /// A worker: the factor scratch's fixed part and the packed sums of `worker_messages`
    /// messages.
    worker: Option<u128>,
    /// The factor scratch per row of a micro-batch.
    per_row: Option<u128>,
}

impl KfacMemory {
    fn of(cfg: &RunConfig, shape: &DataShape, rank0_messages: u128, worker_messages: u128) -> Self {
        let none = KfacMemory {
            rank0: Some(0),
            worker: Some(0),
            per_row: Some(0),
        };
        if cfg.kfac().is_none() {
            return none;
        }
        let Ok(model) = build_model(cfg, shape) else {
            return none;
        };
        let layers = || model.kfac_layers().iter().map(|b| (b.units, b.inputs));
        let packed = kfac::packed_len(layers()) as u128;
        let (per_row, fixed) = model.kfac_scratch();
        let bytes = |values: Option<u128>| values?.checked_mul(8);
        // --kfac-eig workers (an MPI job): the eigen rounds' posts and results.
        let (eig0, eigw) = match cfg.kfac_eig {
            Some(site) if site.spreads() && worker_messages > 0 => {
                eigen_round_values(&kfac::factor_sides(layers()), cfg.workers())
            }
            _ => (Some(0), Some(0)),
        };
        KfacMemory {
            rank0: bytes(
                kfac::rank0_values(layers(), model.dim() as u128).and_then(|v| {
                    v.checked_add(packed.checked_mul(rank0_messages)?)?
                        .checked_add(eig0?)
                }),
            ),
            worker: bytes(
                packed
                    .checked_mul(worker_messages)
                    .and_then(|p| p.checked_add(fixed)?.checked_add(eigw?)),
            ),
            per_row: bytes(Some(per_row)),
        }
    }
}

/// Values of `--kfac-eig workers`' eigen rounds for factors of sides `sides` over `workers`
/// ([`kfac::assign_eigen`]): at rank 0 every worker's post (its packed factors) and result
/// slot (eigenvalues and bases); on the most loaded worker its post, two result buffers and the
/// eigensolver's copy and workspace (3n² + 8n of its largest factor). `None` on overflow.
fn eigen_round_values(sides: &[usize], workers: usize) -> (Option<u128>, Option<u128>) {
    // (packed, result, eigensolver) values of one factor of side n.
    let one = |n: u128| -> Option<(u128, u128, u128)> {
        let sq = n.checked_mul(n)?;
        let eig = sq.checked_mul(3)?.checked_add(n.checked_mul(8)?)?;
        Some((sq.checked_add(n)? / 2, sq.checked_add(n)?, eig))
    };
    let (mut rank0, mut worker) = (Some(0u128), Some(0u128));
    for mine in kfac::assign_eigen(sides, workers) {
        let mut sums = Some((0u128, 0u128, 0u128));
        for &i in &mine {
            sums = sums.and_then(|(p, r, e)| {
                let (pi, ri, ei) = one(sides[i] as u128)?;
                Some((p.checked_add(pi)?, r.checked_add(ri)?, e.max(ei)))
            });
        }
        rank0 = rank0.and_then(|v| {
            let (p, r, _) = sums?;
            v.checked_add(p)?.checked_add(r)
        });
        worker = worker.and_then(|v| {
            let (p, r, e) = sums?;
            Some(v.max(p.checked_add(r.checked_mul(2)?)?.checked_add(e)?))
        });
    }
    (rank0, worker)
}

/// What a refusal says of K-FAC's share `bytes` of a rank's memory (nothing without K-FAC).
fn kfac_share(bytes: Option<u128>) -> String {
    match bytes {
        Some(0) => String::new(),
        Some(b) => format!(
            "; K-FAC's factors, eigenbases and workspace take {} of it",
            crate::config::human_bytes(b)
        ),
        None => "; K-FAC's factors, eigenbases and workspace overflow".into(),
    }
}

/// Rows per block of the networks' kernels (micro-batches: the gradient is accumulated block
/// after block, the same to rounding): the model's default, or fewer when `--max-memory-mb`
/// leaves less room than that for the activations beside the `fixed` bytes a rank needs anyway;
/// 0 when not even one row fits. Every rank computes the same from the same settings (the node's
/// available memory, which differs between nodes, does not shrink the blocks).
fn micro_batch_rows(cfg: &RunConfig, shape: &DataShape, fixed: u128) -> usize {
    let default = match cfg.model {
        model::ModelKind::Cnn => model::Cnn::BLOCK_ROWS,
        _ => model::Mlp::BLOCK_ROWS,
    };
    let per_row = scratch_row_bytes(cfg, shape).unwrap_or(u128::MAX);
    match cfg.job.max_memory_mb {
        Some(mb) if per_row > 0 => {
            let room = ((mb * 1e6) as u128).saturating_sub(fixed);
            (room / per_row).min(default as u128) as usize
        }
        _ => default,
    }
}

/// Says the rows per micro-batch a `--max-memory-mb` budget left (once, on rank 0).
fn log_micro_batches(cfg: &RunConfig, block: usize) {
    let network = matches!(cfg.model, model::ModelKind::Mlp | model::ModelKind::Cnn);
    if let (true, Some(mb)) = (network, cfg.job.max_memory_mb) {
        log::info!(
            "--max-memory-mb {mb}: the network's passes run in micro-batches of {block} rows"
        );
    }
}

/// The micro-batch rows under `--max-memory-mb` beside `fixed` bytes; refuses the run when not
/// even one row of activations fits, naming the smallest budget that could work.
fn refuse_if_no_row_fits(
    cfg: &RunConfig,
    shape: &DataShape,
    who: &str,
    fixed: u128,
    kfac: Option<u128>,
) -> Result<usize> {
    let block = micro_batch_rows(cfg, shape, fixed);
    if block > 0 {
        return Ok(block);
    }
    let need = scratch_row_bytes(cfg, shape).and_then(|r| r.checked_add(fixed));
    let smallest = need.map_or_else(
        || "none: the size overflows".to_string(),
        |b| format!("--max-memory-mb {}", b.div_ceil(1_000_000)),
    );
    Err(Error::Config(crate::config::invalid(
        "max-memory-mb",
        cfg.job.max_memory_mb.unwrap_or(0.0),
        format!(
            "{who} needs {} beside one row of the {}'s activations{}; the smallest budget that could work is {smallest}",
            crate::config::human_bytes(fixed),
            cfg.model.name(),
            kfac_share(kfac)
        ),
    )))
}

/// `count` vectors of `dim` values (plus a message header each), in bytes.
fn vectors(count: u128, dim: u128) -> Option<u128> {
    count.checked_mul(dim.checked_add(16)?)?.checked_mul(8)
}

/// Refuse a run whose buffers exceed the memory budget, naming what it needs (RELIABILITY BI-9).
fn refuse_if_too_big(
    cfg: &RunConfig,
    shape: &DataShape,
    who: &str,
    need: Option<u128>,
    kfac: Option<u128>,
) -> Result<()> {
    let dim = model_dim(cfg, shape);
    let what = format!(
        "{who} of this run ({} features, {} parameters, {} training rows{})",
        shape.features,
        dim.map_or_else(|| "too many".into(), |d| d.to_string()),
        shape.rows,
        kfac_share(kfac)
    );
    let hint = "convert the dataset with fewer features (`gradcode data convert --features`), use more workers, or raise --max-memory-mb if the node has the memory";
    cfg.job
        .budget()
        .check(&what, need, hint)
        .map_err(Error::from)
}

/// Rank 0's and the largest worker's memory for gradient coding, checked against the budget.
fn fits_coded(cfg: &RunConfig, code: &dyn GradientCode, shape: &DataShape) -> Result<()> {
    let mem = CodedMemory::of(cfg, code, shape);
    let k = mem.kfac;
    let Some(rank0) = mem.rank0 else {
        return refuse_if_too_big(cfg, shape, "rank 0", None, k.rank0);
    };
    let Some(worker) = mem.worker else {
        return refuse_if_too_big(cfg, shape, "each worker", None, k.worker);
    };
    let (fixed, kfac_fixed) = if rank0 >= worker {
        (rank0, k.rank0)
    } else {
        (worker, k.worker)
    };
    let block = refuse_if_no_row_fits(cfg, shape, "every rank", fixed, kfac_fixed)?;
    // Evaluating the test split runs the kernel's scratch too.
    let rank0 = kernel_scratch(cfg, shape, shape.test_rows as u128, block)
        .and_then(|s| rank0.checked_add(s));
    refuse_if_too_big(cfg, shape, "rank 0", rank0, k.rank0)?;
    let worker = mem
        .rows
        .and_then(|r| kernel_scratch(cfg, shape, r, block))
        .and_then(|s| worker.checked_add(s));
    // The worker's K-FAC share: its fixed part and the factor rows of one micro-batch.
    let kfac_worker = mem.rows.and_then(|r| {
        k.per_row?
            .checked_mul(r.min(block as u128))?
            .checked_add(k.worker?)
    });
    refuse_if_too_big(cfg, shape, "each worker", worker, kfac_worker)
}

/// The memory of gradient coding's ranks besides the kernel's scratch; `None` on overflow.
struct CodedMemory {
    /// Rank 0: optimizer (3), loop (3), engine copy, ring (2), staging, decode copy (11), a slot
    /// per worker and chunk, a check piece per partition and chunk; the test split.
    rank0: Option<u128>,
    /// The largest worker: its shard, the drawn minibatch, its vectors.
    worker: Option<u128>,
    /// The largest worker's rows.
    rows: Option<u128>,
    /// K-FAC's share (counted in `rank0` and `worker`).
    kfac: KfacMemory,
}

impl CodedMemory {
    fn of(cfg: &RunConfig, code: &dyn GradientCode, shape: &DataShape) -> Self {
        let dim = model_dim(cfg, shape);
        let (n, k, c) = (
            code.n_workers() as u128,
            code.n_partitions() as u128,
            cfg.chunks as u128,
        );
        let held = (0..code.n_workers())
            .map(|w| code.assignment(w).len())
            .max()
            .unwrap_or(0) as u128;
        let rows = (shape.rows as u128).div_ceil(k.max(1)).checked_mul(held);
        // With minibatches, the iteration's rows are gathered into buffers beside the shard.
        let batch_rows = cfg.batch.map_or(Some(0), |b| (b as u128).checked_mul(held));
        // K-FAC: the packed factor sums ride on a result per worker and chunk, the loop's sum,
        // the staging and decode copies at rank 0; on a worker's message buffers.
        let kfac = KfacMemory::of(cfg, shape, 3 + n * c, 1 + 2 * c);
        let worker = dim.and_then(|d| {
            let data = shape.bytes_of_rows(usize::try_from(rows?).ok()?)?;
            let drawn = shape.bytes_of_rows(usize::try_from(batch_rows?).ok()?)?;
            data.checked_add(drawn)?
                .checked_add(vectors(3 + 2 * c + held * c, d)?)?
                .checked_add(kfac.worker?)
        });
        let rank0 = dim
            .and_then(|d| vectors(11 + n * c + k * c, d))
            .and_then(|v| v.checked_add(shape.bytes_of_rows(shape.test_rows)?))
            .and_then(|v| v.checked_add(kfac.rank0?));
        CodedMemory {
            rank0,
            worker,
            rows,
            kfac,
        }
    }

    /// The micro-batch rows every rank uses (the same on all: fits_coded refused the run when
    /// no row fits).
    fn block_rows(&self, cfg: &RunConfig, shape: &DataShape) -> usize {
        let fixed = self.rank0.unwrap_or(0).max(self.worker.unwrap_or(0));
        micro_batch_rows(cfg, shape, fixed).max(1)
    }
}

/// The dataset's shape and the model on every rank, or the exit code of a failed start-up.
type Started = std::result::Result<(DataShape, Box<dyn Model>), i32>;

/// The dataset's shape from rank 0 (after its checks and `fits`) and the model, on every rank;
/// `Err(code)` when start-up failed (rank 0 has reported why).
fn start(
    world: &World,
    cfg: &RunConfig,
    fits: impl FnOnce(&DataShape) -> Result<()>,
) -> Result<Started> {
    let shape = match super::broadcast_data_shape(
        world,
        &cfg.data,
        || Ok(cfg.job.check_output(cfg.resume)?),
        |shape| {
            build_model(cfg, shape)?;
            fits(shape)
        },
    )? {
        Ok(s) => s,
        Err(code) => return Ok(Err(code)),
    };
    match build_model(cfg, &shape) {
        Ok(m) => Ok(Ok((shape, m))),
        Err(e) => rank_result(world.rank(), e.into()).map(Err),
    }
}

fn run_coded(world: &World, cfg: &RunConfig, code: Box<dyn GradientCode>) -> Result<i32> {
    let rank = world.rank();
    // --adapt: every worker loads the partitions of the starting s, and those of a larger s in
    // the background when rank 0 asks (the cyclic codes' partitions of a smaller s are a prefix
    // of those of a larger one); memory is checked for the largest s.
    let store = match cfg.adapt_max_s {
        Some(max_s) => match coding::build_with(
            code.kind(),
            cfg.workers(),
            max_s,
            cfg.job.seed,
            &cfg.code_options(),
        ) {
            Ok(c) => Some(c),
            Err(e) => return rank_result(rank, e.into()),
        },
        None => None,
    };
    let load: &dyn GradientCode = store.as_deref().unwrap_or(code.as_ref());
    let (shape, mut model) = match start(world, cfg, |shape| fits_coded(cfg, load, shape))? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    // The micro-batches rank 0 checked (fits_coded refused the run when no row fits).
    let block = CodedMemory::of(cfg, load, &shape).block_rows(cfg, &shape);
    model.set_block_rows(block);
    if rank == 0 {
        log_micro_batches(cfg, block);
    }
    let k = code.n_partitions();
    let cfg = &match check_partitions(cfg, shape.rows, k) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e),
    };
    // Per-rank loading; one all-gather of the outcome.
    let local: Result<Loaded> = if rank == 0 {
        setup_rank0(
            cfg,
            model.as_ref(),
            code.matrix(),
            rank0_attrs(code.as_ref()),
            world.size(),
        )
        .map(|r| Loaded::Rank0(Box::new(r)))
    } else {
        let w = rank - 1;
        dataset::read_partitions(&cfg.data, Split::Train, shape.rows, k, code.assignment(w))
            .map_err(Error::from)
            .and_then(|(data, ranges)| {
                if data.n_features() != shape.features {
                    return Err(Error::Check(format!(
                        "rank {rank}: shard has {} features, dataset declares {}",
                        data.n_features(),
                        shape.features
                    )));
                }
                if store.is_some() {
                    let source = PartitionSource {
                        path: cfg.data.clone(),
                        rows: shape.rows,
                        k,
                    };
                    let stored = StoredShard::new(cfg, load, w, data, ranges, source)?;
                    log::info!(
                        "[rank {rank}] --adapt: holds the partitions of s = {} ({} rows) at start-up; those of a larger s up to {} are read when rank 0 asks",
                        stored.held_s(),
                        stored.rows(),
                        stored.max_s()
                    );
                    return Ok(Loaded::Stored(Box::new(stored)));
                }
                let plan = match cfg.batch {
                    Some(b) => Some(BatchPlan::new(cfg.job.seed, b, shape.rows, k)?),
                    None => None,
                };
                Ok(Loaded::Shard(Shard::new(
                    code.as_ref(),
                    w,
                    data,
                    ranges,
                    cfg.chunks,
                    plan,
                )?))
            })
    };
    match gather_startup(world, local)? {
        Err(code) => Ok(code),
        Ok(Loaded::Rank0(mut r0)) => {
            let dim = model.dim();
            let compress = for_model(cfg.compress, model.as_ref())?;
            let kfac = kfac_len(cfg, model.as_ref());
            let kind = code.kind();
            let code = rank0_code(cfg, code)?;
            let mut engine = CodedGradients::new(world.transport(), cfg, code, dim, compress, kfac);
            if let Some(sides) = eigen_sides(cfg, model.as_ref()) {
                engine = engine.with_eigen(&sides)?;
            }
            if cfg.messages != Messages::Dense {
                engine.receive_supports(cfg.job.max_wait())?;
            }
            let probe = engine.probe_links()?;
            r0.writer.add_env(link_attrs(&probe));
            if cfg.adapts() {
                engine = engine.adaptive(Adaptation::new(cfg, kind, dim, probe.fit)?);
            }
            finish_rank0(
                cfg,
                model.as_ref(),
                cfg.step_rows(shape.rows),
                *r0,
                &mut engine,
            )
        }
        Ok(Loaded::Shard(shard)) => {
            let compress = for_model(cfg.compress, model.as_ref())?;
            let mut job = CodedWorker::new(model.as_ref(), shard, code.as_ref(), rank - 1)
                .compressing(compress, cfg.error_feedback, cfg.job.seed)
                .messages(cfg.messages, cfg.model)?
                .with_kfac(kfac_len(cfg, model.as_ref()));
            if let Some(sides) = eigen_sides(cfg, model.as_ref()) {
                job = job.with_eigen(&sides, cfg.workers(), rank - 1);
            }
            serve_coded(world, cfg, (model.dim() + 1, compress), &mut job)
        }
        Ok(Loaded::Stored(stored)) => {
            let s = cfg.stragglers;
            let mut stored = stored;
            let shard = stored.shard(s)?;
            let mut job = CodedWorker::new(model.as_ref(), shard, code.as_ref(), rank - 1)
                .adaptive(*stored, s);
            serve(world.worker(), cfg, 1, &mut job)
        }
        Ok(_) => Err(Error::Check("internal: unexpected start-up state".into())),
    }
}

/// `--kfac-eig workers`: the sides of the model's K-FAC factors the workers eigendecompose.
fn eigen_sides(cfg: &RunConfig, model: &dyn Model) -> Option<Vec<usize>> {
    cfg.kfac_eig
        .is_some_and(|e| e.spreads())
        .then(|| kfac::factor_sides(model.kfac_layers().iter().map(|b| (b.units, b.inputs))))
}

/// Values of the packed K-FAC factors a factor-update message carries (0 without K-FAC).
fn kfac_len(cfg: &RunConfig, model: &dyn Model) -> usize {
    match cfg.kfac() {
        Some(_) => {
            crate::optim::kfac::packed_len(model.kfac_layers().iter().map(|b| (b.units, b.inputs)))
        }
        None => 0,
    }
}

/// The link probe's `/env` attributes, logged once: α and β when the fit succeeded, and what
/// the probe did.
fn link_attrs(p: &crate::comm::probe::LinkProbe) -> Vec<(String, AttrValue)> {
    let mut attrs = vec![
        (
            "link_probe_round_trips".into(),
            AttrValue::U64(p.round_trips as u64),
        ),
        ("link_probe_s".into(), AttrValue::F64(p.elapsed_s)),
    ];
    for (w, f) in p.per_worker.iter().enumerate() {
        if let Some(f) = f {
            log::debug!(
                "[rank 0] link to rank {}: alpha {:.2} us, beta {:.3} ns/byte",
                w + 1,
                f.alpha_s * 1e6,
                f.beta_s_per_byte * 1e9
            );
        }
    }
    match p.fit {
        Some(f) => {
            log::info!(
                "[rank 0] link probe: alpha {:.2} us, beta {:.3} ns/byte ({:.2} GB/s) from {} round trips in {:.0} ms",
                f.alpha_s * 1e6,
                f.beta_s_per_byte * 1e9,
                1e-9 / f.beta_s_per_byte,
                p.round_trips,
                p.elapsed_s * 1e3
            );
            attrs.push(("link_alpha_s".into(), AttrValue::F64(f.alpha_s)));
            attrs.push((
                "link_beta_s_per_byte".into(),
                AttrValue::F64(f.beta_s_per_byte),
            ));
        }
        None => log::warn!(
            "[rank 0] link probe: no positive alpha-beta fit from {} round trips in {:.0} ms; /env/link_* not written",
            p.round_trips,
            p.elapsed_s * 1e3
        ),
    }
    attrs
}

/// Every partition non-empty, at least `--chunks` rows in each (without --batch), and the
/// config resolved against the partitions ([`RunConfig::for_data`]: --batch, --epochs).
fn check_partitions(cfg: &RunConfig, rows: usize, k: usize) -> Result<RunConfig> {
    partition_ranges(rows, k)?;
    if cfg.batch.is_none() && rows / k < cfg.chunks {
        return Err(crate::config::invalid(
            "chunks",
            cfg.chunks,
            format!(
                "every partition needs at least that many rows, but {rows} rows in {k} partitions give {}",
                rows / k
            ),
        )
        .into());
    }
    Ok(cfg.for_data(rows, k)?)
}

/// What each rank loaded at start-up.
enum Loaded {
    Rank0(Box<Rank0>),
    Shard(Shard),
    /// `--adapt`: the partitions of the largest s.
    Stored(Box<StoredShard>),
    Blocks(Vec<crate::linalg::job::CodedBlock>),
}

/// Rank 0's start-up products: the test split, the results writer, where to resume.
struct Rank0 {
    test: Option<Dataset>,
    writer: RunWriter,
    resume: Option<Checkpoint>,
    initial: Option<RecordedRows>,
    /// The training split (kept by the coded mat-vec engine, which needs y and X).
    train: Option<Dataset>,
}

/// The code's typed attributes for `/config`.
fn rank0_attrs(code: &dyn GradientCode) -> Vec<(String, AttrValue)> {
    vec![
        (
            "code_name".into(),
            AttrValue::Str(code.kind().name().into()),
        ),
        (
            "partitions".into(),
            AttrValue::U64(code.n_partitions() as u64),
        ),
        (
            "decoder_used".into(),
            AttrValue::Str(code.decoder_kind().name().into()),
        ),
    ]
}

/// Rank 0's start-up: the test split, the run folder and its effective config, the checkpoint to
/// resume from with the rows already written, and the results file.
fn setup_rank0(
    cfg: &RunConfig,
    model: &dyn Model,
    code_matrix: ndarray::Array2<f64>,
    extra: Vec<(String, AttrValue)>,
    world_size: usize,
) -> Result<Rank0> {
    let info = dataset::inspect(&cfg.data)?;
    let test = match info.test_rows {
        Some(_) => {
            let t = dataset::read_all(&cfg.data, Split::Test)?;
            if t.n_features() != model.n_features() {
                return Err(Error::Check(format!(
                    "test split has {} features, training split {}",
                    t.n_features(),
                    model.n_features()
                )));
            }
            Some(t)
        }
        None => None,
    };
    let out = &cfg.job.out;
    std::fs::create_dir_all(out).map_err(|e| crate::io::IoError::os(out, e))?;
    let (resume, initial) = resume_point(cfg)?;
    if let Some(ck) = &resume {
        fits_checkpoint(cfg, model, ck)?;
    }
    let config_toml = cfg.to_toml();
    std::fs::write(cfg.job.config_path(), &config_toml)
        .map_err(|e| crate::io::IoError::os(out, e))?;
    let (code_attrs, env_attrs) = super::provenance(world_size);
    let mut config = super::settings_attrs(&cfg.settings());
    config.push(("code".into(), AttrValue::Str(cfg.code_name())));
    config.push((
        "config_sha256".into(),
        AttrValue::Str(cfg.trajectory_hash()),
    ));
    config.push(("job".into(), AttrValue::Str("train".into())));
    config.extend(extra);
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml,
        code_matrix,
        // The reference with --batch knows a worker count (its partitions) but has no workers.
        n_workers: if cfg.reference { 0 } else { cfg.workers() },
        n_layers: 0,
        adapt: cfg.adapts(),
    };
    let kept = kept_switches(cfg, resume.as_ref())?;
    let mut writer = RunWriter::create(&cfg.job.results_path(), &meta, initial.as_ref())?;
    for switch in &kept {
        writer.append_adapt(switch)?;
    }
    Ok(Rank0 {
        test,
        writer,
        resume,
        initial,
        train: None,
    })
}

/// `--adapt` resumed: the switches of `/adapt` before the checkpoint's iteration, which the
/// new results file keeps (none without `--adapt` or a results file).
fn kept_switches(cfg: &RunConfig, resume: Option<&Checkpoint>) -> Result<Vec<AdaptSwitch>> {
    let results = cfg.job.results_path();
    match resume {
        Some(ck) if cfg.adapts() && results.exists() => Ok(results::read_adapt(&results)?
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w.iteration < ck.iteration)
            .collect()),
        _ => Ok(Vec::new()),
    }
}

/// With `--resume`: the newest good checkpoint, and the rows of the results file up to it.
fn resume_point(cfg: &RunConfig) -> Result<(Option<Checkpoint>, Option<RecordedRows>)> {
    let out = &cfg.job.out;
    if !cfg.resume {
        checkpoint::clean_stale(out);
        return Ok((None, None));
    }
    let (ck, path, reasons) = checkpoint::load(out, &cfg.trajectory_hash())?;
    for r in &reasons {
        log::warn!("[rank 0] skipped a checkpoint generation: {r}");
    }
    log::info!(
        "[rank 0] resuming from {} at iteration {}",
        path.display(),
        ck.iteration
    );
    let results = cfg.job.results_path();
    let rows = if results.exists() {
        let r = results::read_rows(&results, Some(ck.iteration as usize))?;
        if r.len() != ck.iteration as usize {
            return Err(Error::Check(format!(
                "{} has {} rows but the checkpoint is at iteration {}; cannot continue the same results",
                results.display(),
                r.len(),
                ck.iteration
            )));
        }
        Some(r)
    } else {
        None
    };
    Ok((Some(ck), rows))
}

/// A checkpoint's state must fit the model and the optimizer it resumes (the config hash covers
/// both; this names what does not fit when a file was written by another build).
fn fits_checkpoint(cfg: &RunConfig, model: &dyn Model, ck: &Checkpoint) -> Result<()> {
    let adam = cfg.optimizer == crate::optim::OptimizerKind::Adam;
    let why = if ck.state.w.len() != model.dim() {
        format!(
            "it holds {} parameters, the model has {}",
            ck.state.w.len(),
            model.dim()
        )
    } else if adam && ck.state.adam.is_none() {
        "it has no Adam moments (checkpoint format 1, written before Adam existed)".into()
    } else if !adam && ck.state.adam.is_some() {
        format!(
            "it holds Adam moments but the optimizer is {}",
            cfg.optimizer.name()
        )
    } else if let Some(why) = kfac_misfit(cfg, model, ck) {
        why
    } else {
        return Ok(());
    };
    Err(Error::Check(format!(
        "cannot resume from the checkpoint in {}: {why}; start a new run folder",
        cfg.job.out.display()
    )))
}

/// Why a checkpoint's K-FAC state does not fit the run (None: it fits).
fn kfac_misfit(cfg: &RunConfig, model: &dyn Model, ck: &Checkpoint) -> Option<String> {
    match (&ck.state.kfac, cfg.kfac().is_some()) {
        (None, true) => Some(
            "it has no K-FAC state (checkpoint format 2 or older, or another optimizer)".into(),
        ),
        (Some(_), false) => Some(format!(
            "it holds K-FAC state but the optimizer is {}",
            cfg.optimizer.name()
        )),
        (Some(k), true) => {
            let theirs = k.layers.iter().map(|l| (l.offset, l.units, l.inputs));
            let ours = model
                .kfac_layers()
                .iter()
                .map(|b| (b.offset, b.units, b.inputs));
            (!theirs.eq(ours)).then(|| "its K-FAC layers are not the model's".into())
        }
        (None, false) => None,
    }
}

/// Rank 0 after start-up: print the effective config, run the loop, report.
fn finish_rank0(
    cfg: &RunConfig,
    model: &dyn Model,
    n_rows: usize,
    r0: Rank0,
    engine: &mut dyn GradientEngine,
) -> Result<i32> {
    log::info!(
        "[rank 0] gradcode {} ({}), effective config:\n{}",
        crate::VERSION,
        env!("GRADCODE_GIT_REV"),
        cfg.to_toml()
    );
    let outcome = train::run(
        Setup {
            cfg,
            model,
            n_rows,
            test: r0.test,
            writer: r0.writer,
            resume: r0.resume,
            initial: r0.initial,
        },
        engine,
    );
    super::abort_if_unreconciled(
        &outcome.unreconciled,
        &cfg.job.results_path(),
        outcome.status.exit_code(),
    );
    match outcome.error {
        // A failure during the run (I/O included, e.g. a full disk at a checkpoint) is a
        // runtime failure: status `failed` or `diverged`, exit 1 (exit 2 is for input refused
        // up front).
        Some(e) if matches!(outcome.status, RunStatus::Failed | RunStatus::Diverged) => {
            eprintln!("gradcode: error: {e}");
            Ok(outcome.status.exit_code())
        }
        _ => Ok(outcome.status.exit_code()),
    }
}

/// A coded worker (uncompressed results of `len` values, the coded vector and the loss;
/// `compress` the job's compressor set for the model): on its own, or with `--decode-tree G` as
/// its group's leader (it gathers the group and forwards one combined result, compressed by
/// `compress`) or a member (its results go to its leader uncompressed).
fn serve_coded(
    world: &World,
    cfg: &RunConfig,
    (len, compress): (usize, Compressor),
    job: &mut CodedWorker,
) -> Result<i32> {
    let (rank, t) = (world.rank(), world.worker());
    let (Some(g), Some(tree)) = (cfg.decode_tree, tree_code(cfg)?) else {
        return serve(t, cfg, cfg.chunks, job);
    };
    let leader = rank - (rank - 1) % g;
    if rank != leader {
        return serve(Relay::new(t, leader), cfg, 1, job);
    }
    let spec = GroupSpec {
        ranks: (leader..leader + g).collect(),
        len,
        wait: cfg.job.max_wait(),
        shutdown: cfg.job.shutdown_bound(),
        compress: (!compress.is_none()).then_some(GroupCompression {
            c: compress,
            values: len - 1,
            error_feedback: cfg.error_feedback,
            seed: cfg.job.seed,
        }),
    };
    // Exact inner decodings only, as weights over the members in `set`.
    let weights = |set: &[usize]| {
        if !tree.group_decodable(set) {
            return None;
        }
        let d = tree.leader_decode(set).ok().filter(|d| d.exact)?;
        let weight = |m: &usize| {
            let i = d.responders.iter().position(|r| r == m);
            i.map_or(0.0, |i| d.weights[i])
        };
        Some(set.iter().map(weight).collect())
    };
    serve(Leader::new(t, spec, weights), cfg, 1, job)
}

/// A worker: serve `job` over `t` until STOP; a fatal error on the data path aborts the whole
/// job.
fn serve<J: crate::comm::WorkerJob, T: WorkerTransport>(
    t: T,
    cfg: &RunConfig,
    parts: usize,
    job: &mut J,
) -> Result<i32> {
    let rank = t.rank();
    match WorkerLink::new(t, cfg.job.schedule(), parts).serve(job) {
        Ok(s) => {
            log::debug!(
                "[rank {rank}] done: {} messages, {} iterations, {:.3} s compute",
                s.messages_sent,
                s.iterations_computed,
                s.compute_s
            );
            Ok(s.stop_code)
        }
        Err(e) => {
            log::error!("[rank {rank}] {e}");
            crate::comm::mpi::abort(1);
        }
    }
}

/// Memory of coded training through mat-vecs: rank 0 holds the whole data, each worker the whole
/// X while it encodes (and its dense transpose).
fn fits_matvec(cfg: &RunConfig, shape: &DataShape) -> Result<()> {
    let data = shape.bytes_of_rows(shape.rows);
    let rank0 = data
        .and_then(|d| d.checked_add(shape.bytes_of_rows(shape.test_rows)?))
        .and_then(|d| d.checked_add(vectors(12, model_dim(cfg, shape)?)?));
    refuse_if_too_big(cfg, shape, "rank 0", rank0, Some(0))?;
    let dense_t = (shape.rows as u128)
        .checked_mul(shape.features as u128)
        .and_then(|v| v.checked_mul(8));
    let worker = data.and_then(|d| d.checked_mul(2)?.checked_add(dense_t?));
    refuse_if_too_big(cfg, shape, "each worker", worker, Some(0))
}

fn run_matvec(world: &World, cfg: &RunConfig, code: &MdsCode) -> Result<i32> {
    let rank = world.rank();
    let (shape, model) = match start(world, cfg, |shape| fits_matvec(cfg, shape))? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let lay = match layouts(code, shape.rows, shape.features) {
        Ok(l) => l,
        Err(e) => return rank_result(rank, e),
    };
    // No minibatches here (refused by the config); --epochs are iterations.
    let cfg = &match cfg.for_data(shape.rows, 1) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    let local: Result<Loaded> = if rank == 0 {
        let extra = vec![
            ("code_name".into(), AttrValue::Str(cfg.code.name().into())),
            ("k".into(), AttrValue::U64(code.threshold() as u64)),
            ("decoder_used".into(), AttrValue::Str("mds-matvec".into())),
        ];
        let matrix = code.generator().as_standard_layout().into_owned();
        setup_rank0(cfg, model.as_ref(), matrix, extra, world.size()).and_then(|mut r0| {
            r0.train = Some(dataset::read_all(&cfg.data, Split::Train)?);
            Ok(Loaded::Rank0(Box::new(r0)))
        })
    } else {
        dataset::read_all(&cfg.data, Split::Train)
            .map_err(Error::from)
            .and_then(|d| worker_blocks(code, &lay, rank - 1, &d.x))
            .map(Loaded::Blocks)
    };
    match gather_startup(world, local)? {
        Err(code) => Ok(code),
        Ok(Loaded::Rank0(mut r0)) => {
            let Some(data) = r0.train.take() else {
                return Err(Error::Check(
                    "internal: rank 0 training split missing".into(),
                ));
            };
            let mut engine =
                MatVecGradients::new(world.transport(), cfg, code, &lay, model.as_ref(), &data);
            finish_rank0(cfg, model.as_ref(), shape.rows, *r0, &mut engine)
        }
        Ok(Loaded::Blocks(blocks)) => {
            let mut job = crate::linalg::serve::BlockWorker::new(&blocks);
            serve(world.worker(), cfg, 1, &mut job)
        }
        Ok(_) => Err(Error::Check("internal: unexpected start-up state".into())),
    }
}

/// Memory of the serial reference: the whole data and a few parameter vectors.
fn fits_reference(cfg: &RunConfig, info: &dataset::DatasetInfo) -> Result<()> {
    let shape = DataShape::from(info);
    build_model(cfg, &shape)?;
    // With minibatches, the k·B rows of an iteration are gathered beside the data.
    let kfac = KfacMemory::of(cfg, &shape, 2, 0);
    let kfac_fixed = kfac.rank0.and_then(|r| r.checked_add(kfac.worker?));
    let Some(fixed) = reference_fixed(cfg, &shape) else {
        return refuse_if_too_big(cfg, &shape, "the serial reference", None, kfac_fixed);
    };
    let block = refuse_if_no_row_fits(cfg, &shape, "the serial reference", fixed, kfac_fixed)?;
    let need =
        kernel_scratch(cfg, &shape, shape.rows as u128, block).and_then(|s| fixed.checked_add(s));
    let kfac_all = kfac.per_row.and_then(|p| {
        p.checked_mul((shape.rows as u128).min(block as u128))?
            .checked_add(kfac_fixed?)
    });
    refuse_if_too_big(cfg, &shape, "the serial reference", need, kfac_all)
}

/// The serial reference's memory besides the kernel's scratch (as [`fits_reference`] counts it):
/// with K-FAC, its factors, eigenbases and workspace, and two packed factor sums.
fn reference_fixed(cfg: &RunConfig, shape: &DataShape) -> Option<u128> {
    let drawn = cfg.step_rows(shape.rows).min(shape.rows);
    let kfac = KfacMemory::of(cfg, shape, 2, 0);
    shape
        .bytes_of_rows(shape.rows + shape.test_rows)?
        .checked_add(shape.bytes_of_rows(if cfg.batch.is_some() { drawn } else { 0 })?)?
        .checked_add(vectors(8, model_dim(cfg, shape)?)?)?
        .checked_add(kfac.rank0?)?
        .checked_add(kfac.worker?)
}

fn run_reference(args: &TrainArgs) -> Result<i32> {
    let cfg = RunConfig::from_args(args, 1)?;
    super::warn_if_root();
    cfg.job.check_output(cfg.resume)?;
    // The same resource-limited child validator as the MPI path (BI-1..BI-3): libhdf5 is not
    // safe on crafted files, so nothing in this process opens the dataset before it passes.
    crate::io::validate::validate_isolated(&cfg.data).and_then(|r| r.into_result(&cfg.data))?;
    let info = dataset::inspect(&cfg.data)?;
    let rows = DataShape::from(&info).rows;
    let k = reference_partitions(&cfg)?;
    if cfg.batch.is_some() {
        partition_ranges(rows, k)?;
    }
    let cfg = cfg.for_data(rows, k)?;
    fits_reference(&cfg, &info)?;
    let train = dataset::read_all(&cfg.data, Split::Train)?;
    let shape = DataShape::from(&info);
    let mut model = build_model(&cfg, &shape)?;
    if let Some(fixed) = reference_fixed(&cfg, &shape) {
        let block = micro_batch_rows(&cfg, &shape, fixed).max(1);
        model.set_block_rows(block);
        log_micro_batches(&cfg, block);
    }
    let r0 = setup_rank0(
        &cfg,
        model.as_ref(),
        ndarray::Array2::ones((1, 1)),
        Vec::new(),
        1,
    )?;
    log::info!(
        "gradcode {} serial reference, effective config:\n{}",
        crate::VERSION,
        cfg.to_toml()
    );
    let plan = match cfg.batch {
        Some(b) => Some(BatchPlan::new(cfg.job.seed, b, rows, k)?),
        None => None,
    };
    let mut engine = SerialGradients::new(model.as_ref(), &train, plan, k)?;
    let outcome = train::run(
        Setup {
            cfg: &cfg,
            model: model.as_ref(),
            n_rows: cfg.step_rows(train.n_rows()),
            test: r0.test,
            writer: r0.writer,
            resume: r0.resume,
            initial: r0.initial,
        },
        &mut engine,
    );
    if let Some(e) = outcome.error {
        if matches!(outcome.status, RunStatus::Failed | RunStatus::Diverged) {
            eprintln!("gradcode: error: {e}");
        }
    }
    Ok(outcome.status.exit_code())
}

/// The partitions k the reference's minibatches follow: those of `--code` with `--workers N`
/// (every code of gradcode has k = N); 1 without --batch (the whole data).
fn reference_partitions(cfg: &RunConfig) -> Result<usize> {
    match (cfg.batch, cfg.code) {
        (None, _) => Ok(1),
        (Some(_), TrainCode::Gradient(kind)) => Ok(coding::build_with(
            kind,
            cfg.workers(),
            cfg.stragglers,
            cfg.job.seed,
            &cfg.code_options(),
        )?
        .n_partitions()),
        // Refused by the config (no minibatches with the mds-* codes).
        (Some(b), TrainCode::MatVec(_)) => {
            Err(crate::config::invalid("batch", b, "is not available with the mds-* codes").into())
        }
    }
}

/// Whether `path` looks like a results file of a finished run (used by tests and scripts).
pub fn is_complete(path: &Path) -> bool {
    results::read_str_attr(path, "", "status")
        .map(|s| s == "complete")
        .unwrap_or(false)
}
