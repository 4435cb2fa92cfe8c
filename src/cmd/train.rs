//! `gradcode train`: the MPI job (rank 0 coordinates, ranks 1..=n work), or with `--reference`
//! the serial path on one process.
//!
//! Start-up order (GUIDE §2): every rank checks the configuration and builds the code identically
//! before any MPI traffic; rank 0 validates the dataset and broadcasts what the workers need;
//! workers read only their partitions; one all-gather of load status ends start-up, after which
//! there are no collectives. A panic on any rank aborts the whole job (`MPI_Abort`), so no rank
//! can hang waiting for a dead peer.

use std::path::Path;

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::rank_result;
use crate::cli::TrainArgs;
use crate::coding::{self, GradientCode};
use crate::config::RunConfig;
use crate::coordinator::{self, RunStatus, Setup, INTERRUPT};
use crate::data::partition_ranges;
use crate::error::{Error, Result};
use crate::io::checkpoint;
use crate::io::dataset::{self, Split};
use crate::io::results::{self, AttrValue, FinalRecord, IterationRecord, RunMeta, RunWriter};
use crate::model;
use crate::straggler::StragglerSchedule;
use crate::worker::{self, Shard};

pub use super::EXIT_INPUT;

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPT.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGUSR1, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Typed attributes from the effective config.
fn config_attrs(cfg: &RunConfig) -> Vec<(String, AttrValue)> {
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(cfg) {
        for (k, v) in t {
            let a = match v {
                toml::Value::String(s) => AttrValue::Str(s),
                toml::Value::Integer(i) => AttrValue::U64(i.max(0) as u64),
                toml::Value::Float(f) => AttrValue::F64(f),
                toml::Value::Boolean(b) => AttrValue::Bool(b),
                other => AttrValue::Str(other.to_string()),
            };
            out.push((k, a));
        }
    }
    out
}

/// Attributes of one group.
type Attrs = Vec<(String, AttrValue)>;

/// `/code` and `/env` attributes.
pub(crate) fn provenance(world_size: usize) -> (Attrs, Attrs) {
    let s = |v: &str| AttrValue::Str(v.to_string());
    let hdf5 = {
        let (a, b, c) = hdf5::library_version();
        format!("{a}.{b}.{c}")
    };
    let mpi_lib = mpi::environment::library_version()
        .unwrap_or_default()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let (mv, ms) = mpi::environment::version();
    let code = vec![
        ("gradcode_version".into(), s(crate::VERSION)),
        ("git_revision".into(), s(env!("GRADCODE_GIT_REV"))),
        ("build_profile".into(), s(env!("GRADCODE_PROFILE"))),
        ("mpi_library".into(), AttrValue::Str(mpi_lib)),
        ("mpi_standard".into(), AttrValue::Str(format!("{mv}.{ms}"))),
        ("hdf5_version".into(), AttrValue::Str(hdf5)),
    ];
    let mut env = vec![
        ("world_size".into(), AttrValue::U64(world_size as u64)),
        ("hostname".into(), AttrValue::Str(hostname())),
        (
            "cwd".into(),
            AttrValue::Str(
                std::env::current_dir()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ),
        (
            "command_line".into(),
            AttrValue::Str(std::env::args().collect::<Vec<_>>().join(" ")),
        ),
    ];
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("SLURM_") || k == "OMP_NUM_THREADS" || k == "OPENBLAS_NUM_THREADS"
        })
        .collect();
    vars.sort();
    env.extend(vars.into_iter().map(|(k, v)| (k, AttrValue::Str(v))));
    (code, env)
}

/// The host name (without MPI, which the serial path never initializes).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// RELIABILITY.md promise 7: running as root is allowed but warned about (hostile input files are
/// parsed with root rights then).
fn warn_if_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        log::warn!(
            "running as root: input files are parsed and results written with root rights; run as an unprivileged user"
        );
    }
}

fn wants_reference(args: &TrainArgs) -> bool {
    args.reference
        || args
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("reference").and_then(|v| v.as_bool()))
            .unwrap_or(false)
}

/// Run `gradcode train`; returns the process exit code.
pub fn run(args: &TrainArgs) -> Result<i32> {
    if wants_reference(args) {
        return run_reference(args);
    }
    super::with_mpi(|world| run_mpi(world, args))
}

fn run_mpi(world: &SimpleCommunicator, args: &TrainArgs) -> Result<i32> {
    let rank = world.rank();
    let size = world.size() as usize;
    install_signal_handlers();
    // 1. Identical checks on every rank, no MPI traffic.
    let cfg = match RunConfig::from_args(args, size) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    if let Err(e) = crate::faults::init(cfg.workers) {
        return rank_result(rank, e.into());
    }
    if rank == 0 {
        warn_if_root();
    }
    let code: Box<dyn GradientCode> = match coding::build_with(
        cfg.code,
        cfg.workers,
        cfg.stragglers,
        cfg.seed,
        &cfg.code_options(),
    ) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    // 2. Rank 0 validates the dataset and broadcasts its shape.
    let shape = match super::broadcast_data_shape(world, &cfg.data, || {
        log::info!(
            "[rank 0] gradcode {} ({}), effective config:\n{}",
            crate::VERSION,
            env!("GRADCODE_GIT_REV"),
            cfg.to_toml()
        );
        cfg.check_paths().map_err(Error::from)
    })? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (n_rows, n_features, task) = (shape.rows, shape.features, shape.task);
    let model = match model::build(cfg.model, n_features, task) {
        Ok(m) => m,
        Err(e) => return rank_result(rank, e.into()),
    };
    let k = code.n_partitions();
    if let Err(e) = partition_ranges(n_rows, k) {
        return rank_result(rank, Error::Data(e));
    }
    if n_rows / k < cfg.chunks {
        let e = crate::config::ConfigError::Invalid {
            name: "chunks",
            value: cfg.chunks.to_string(),
            reason: format!("every partition needs at least that many rows, but {n_rows} rows in {k} partitions give {}", n_rows / k),
        };
        return rank_result(rank, e.into());
    }
    // 3. Per-rank loading; one all-gather of the outcome.
    let mut local: Result<Option<Shard>> = Ok(None);
    let mut rank0: Option<(
        Option<crate::data::Dataset>,
        RunWriter,
        Option<checkpoint::Checkpoint>,
    )> = None;
    if rank == 0 {
        match setup_rank0(&cfg, code.as_ref(), size, n_features) {
            Ok(s) => rank0 = Some(s),
            Err(e) => local = Err(e),
        }
    } else {
        let w = rank as usize - 1;
        local = dataset::read_partitions(&cfg.data, Split::Train, n_rows, k, code.assignment(w))
            .map_err(Error::from)
            .and_then(|(data, ranges)| {
                if data.n_features() != n_features {
                    return Err(Error::Check(format!(
                        "rank {rank}: shard has {} features, dataset declares {n_features}",
                        data.n_features()
                    )));
                }
                Ok(Some(Shard::new(
                    code.as_ref(),
                    w,
                    data,
                    ranges,
                    cfg.chunks,
                )?))
            });
    }
    let shard = match super::gather_startup(world, local)? {
        Ok(shard) => shard,
        Err(code) => return Ok(code),
    };
    // 4. The run.
    if rank == 0 {
        let Some((test, writer, resume_from)) = rank0 else {
            return Err(Error::Check("internal: rank 0 set-up missing".into()));
        };
        let outcome = coordinator::run(Setup {
            world,
            cfg: &cfg,
            model: model.as_ref(),
            code,
            n_rows,
            test,
            writer,
            resume_from,
        });
        super::abort_if_unreconciled(
            &outcome.unreconciled,
            &cfg.results_path(),
            outcome.status.exit_code(),
        );
        match outcome.error {
            // A failure during the run (I/O included, e.g. a full disk at a checkpoint) is a
            // runtime failure: status `failed`, exit 1 (exit 2 is for input refused up front).
            Some(e) if outcome.status == RunStatus::Failed => {
                eprintln!("gradcode: error: {e}");
                Ok(outcome.status.exit_code())
            }
            _ => Ok(outcome.status.exit_code()),
        }
    } else {
        let Some(shard) = shard else {
            return Err(Error::Check("internal: worker shard missing".into()));
        };
        let mut schedule = StragglerSchedule::parse(&cfg.straggler_model, cfg.workers, cfg.seed)
            .map_err(|e| Error::Config(e.into()))?;
        match worker::run(world, model.as_ref(), &shard, &mut schedule) {
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
}

type Rank0Setup = (
    Option<crate::data::Dataset>,
    RunWriter,
    Option<checkpoint::Checkpoint>,
);

fn setup_rank0(
    cfg: &RunConfig,
    code: &dyn GradientCode,
    size: usize,
    n_features: usize,
) -> Result<Rank0Setup> {
    let info = dataset::inspect(&cfg.data)?;
    let test = match info.test_rows {
        Some(_) => {
            let t = dataset::read_all(&cfg.data, Split::Test)?;
            if t.n_features() != n_features {
                return Err(Error::Check(format!(
                    "test split has {} features, training split {n_features}",
                    t.n_features()
                )));
            }
            Some(t)
        }
        None => None,
    };
    std::fs::create_dir_all(&cfg.out).map_err(|e| crate::io::IoError::os(&cfg.out, e))?;
    let (resume_from, initial) = if cfg.resume {
        let (ck, path, reasons) = checkpoint::load(&cfg.out, &cfg.trajectory_hash())?;
        for r in &reasons {
            log::warn!("[rank 0] skipped a checkpoint generation: {r}");
        }
        log::info!(
            "[rank 0] resuming from {} at iteration {}",
            path.display(),
            ck.iteration
        );
        let rows = if cfg.results_path().exists() {
            let r = results::read_rows(&cfg.results_path(), Some(ck.iteration as usize))?;
            if r.len() != ck.iteration as usize {
                return Err(Error::Check(format!(
                    "{} has {} rows but the checkpoint is at iteration {}; cannot continue the same results",
                    cfg.results_path().display(),
                    r.len(),
                    ck.iteration
                )));
            }
            Some(r)
        } else {
            None
        };
        (Some(ck), rows)
    } else {
        checkpoint::clean_stale(&cfg.out);
        (None, None)
    };
    let config_toml = cfg.to_toml();
    std::fs::write(cfg.out.join("config.toml"), &config_toml)
        .map_err(|e| crate::io::IoError::os(&cfg.out, e))?;
    let (code_attrs, env_attrs) = provenance(size);
    let mut config = config_attrs(cfg);
    config.push((
        "config_sha256".into(),
        AttrValue::Str(cfg.trajectory_hash()),
    ));
    config.push((
        "code_name".into(),
        AttrValue::Str(code.kind().name().into()),
    ));
    config.push((
        "partitions".into(),
        AttrValue::U64(code.n_partitions() as u64),
    ));
    config.push((
        "decoder_used".into(),
        AttrValue::Str(code.decoder_kind().name().into()),
    ));
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml,
        code_matrix: code.matrix(),
        n_workers: code.n_workers(),
    };
    let writer = RunWriter::create(&cfg.results_path(), &meta, initial.as_ref())?;
    Ok((test, writer, resume_from))
}

fn run_reference(args: &TrainArgs) -> Result<i32> {
    let cfg = RunConfig::from_args(args, 1)?;
    warn_if_root();
    cfg.check_paths()?;
    // The same resource-limited child validator as the MPI path (BI-1..BI-3): libhdf5 is not
    // safe on crafted files, so nothing in this process opens the dataset before it passes.
    crate::io::validate::validate_isolated(&cfg.data).and_then(|r| r.into_result(&cfg.data))?;
    log::info!(
        "gradcode {} serial reference, effective config:\n{}",
        crate::VERSION,
        cfg.to_toml()
    );
    let train = dataset::read_all(&cfg.data, Split::Train)?;
    let info = dataset::inspect(&cfg.data)?;
    let test = if info.test_rows.is_some() {
        Some(dataset::read_all(&cfg.data, Split::Test)?)
    } else {
        None
    };
    let model = model::build(cfg.model, train.n_features(), train.task)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| crate::io::IoError::os(&cfg.out, e))?;
    let config_toml = cfg.to_toml();
    let (code_attrs, env_attrs) = provenance(1);
    let mut config = config_attrs(&cfg);
    config.push((
        "config_sha256".into(),
        AttrValue::Str(cfg.trajectory_hash()),
    ));
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml,
        code_matrix: ndarray::Array2::ones((1, 1)),
        n_workers: 1,
    };
    let path = cfg.results_path();
    crate::io::check_overwrite(&path, cfg.force)?;
    let mut writer = RunWriter::create(&path, &meta, None)?;
    let start = std::time::Instant::now();
    let mut write_err = None;
    let run = crate::reference::train(
        &cfg,
        model.as_ref(),
        &train,
        test.as_ref(),
        |t, loss, wall, ev| {
            let mut rec = IterationRecord::new(1);
            rec.set("iteration", t as f64);
            rec.set("wall_s", wall);
            rec.set("elapsed_s", start.elapsed().as_secs_f64());
            rec.set("train_loss", loss);
            rec.set("n_responders", 1.0);
            rec.set("exact", 1.0);
            rec.set("decode_residual", 0.0);
            if let Some(ev) = ev {
                rec.set_test(&ev);
            }
            if let Err(e) = writer.append(&rec) {
                write_err.get_or_insert(e);
            }
            if t % cfg.log_every == 0 || t + 1 == cfg.iterations {
                log::info!("reference it {t:>5}/{}  loss {loss:.6}", cfg.iterations);
            }
        },
    );
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let mut summary = vec![(
        "final_train_loss".into(),
        AttrValue::F64(run.train_loss.last().copied().unwrap_or(f64::NAN)),
    )];
    summary.extend(results::test_summary(run.test.as_ref()));
    if let Some(ev) = &run.test {
        println!("reference: {ev}");
    }
    writer.finish(&FinalRecord {
        status: "complete".into(),
        w_final: run.w,
        validation: vec![("check".into(), AttrValue::Str("REFERENCE".into()))],
        summary,
        per_worker: Vec::new(),
    })?;
    println!(
        "reference: final train loss {:.6}; results: {}",
        run.train_loss.last().copied().unwrap_or(f64::NAN),
        path.display()
    );
    Ok(0)
}

/// Whether `path` looks like a results file of a finished run (used by tests and scripts).
pub fn is_complete(path: &Path) -> bool {
    results::read_str_attr(path, "", "status")
        .map(|s| s == "complete")
        .unwrap_or(false)
}
