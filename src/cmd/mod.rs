//! Subcommand implementations: each takes parsed arguments and returns the crate error.
//!
//! The MPI jobs (`train`, `matvec`, `matmul`, `admm`) are entry points over the same frame, in this
//! order on every rank (GUIDE §2): check the configuration identically, before any MPI traffic;
//! rank 0 validates the input in the resource-limited child, inspects it, checks what the run
//! needs against the memory budget, and broadcasts the shape; every rank loads its part; one
//! all-gather of the load outcome ([`gather_startup`]); then no collectives — every message goes
//! through `comm`'s collector and worker link. A set-up failure is reported by rank 0 alone
//! while the other ranks exit with [`EXIT_INPUT`]; a panic on any rank aborts the job.

use std::path::Path;

use crate::comm::mpi::World;
use crate::comm::Round;
use crate::data::Task;
use crate::error::{Error, Result};
use crate::io::results::{AttrValue, IterationRecord, Metric, WorkerMetric};

pub mod admm;
pub mod codes;
pub mod data;
pub mod gemm;
pub mod linalg;
pub mod matmul;
pub mod matvec;
pub mod plan;
pub mod recover;
pub mod simulate;
pub mod train;
pub mod tune;

/// Exit code of a rank that stops because of an error another rank (rank 0) reports.
pub const EXIT_INPUT: i32 = 2;

/// Initialize MPI, run `job` on the world, finalize; returns the exit code.
pub(crate) fn with_mpi(job: impl FnOnce(&World) -> Result<i32>) -> Result<i32> {
    if let Err(e) = crate::config::refuse_fault_plan() {
        // Before MPI starts: rank 0 of the launch reports it, the other ranks exit quietly.
        return if crate::cli::is_launcher_rank_zero() {
            Err(e.into())
        } else {
            Ok(EXIT_INPUT)
        };
    }
    crate::comm::mpi::with_mpi(job, Error::exit_code)
        .ok_or_else(|| Error::Check("MPI was already initialized".into()))
}

/// Set-up failures on one rank: rank 0 reports the error, other ranks exit quietly (they failed
/// the same deterministic check, or rank 0 told them so).
pub(crate) fn rank_result(rank: usize, e: Error) -> Result<i32> {
    if rank == 0 {
        Err(e)
    } else {
        Ok(EXIT_INPUT)
    }
}

/// The start-up handshake, the last collective of a job: every rank reports whether its set-up
/// (`local`) succeeded. When all did, every rank goes on with its value (`Ok(Ok(v))`). When any
/// failed, rank 0 returns its own error or one naming the failed worker ranks, and the other
/// ranks log theirs and return [`EXIT_INPUT`] as `Ok(Err(code))`.
pub(crate) fn gather_startup<T>(
    world: &World,
    local: Result<T>,
) -> Result<std::result::Result<T, i32>> {
    let rank = world.rank();
    let flags = world.all_gather_flags(local.is_err());
    let failed: Vec<usize> = flags
        .iter()
        .enumerate()
        .filter(|(_, &f)| f)
        .map(|(r, _)| r)
        .collect();
    if failed.is_empty() {
        return local.map(Ok);
    }
    match (rank, local) {
        (0, Err(e)) => Err(e),
        (0, Ok(_)) => Err(Error::Check(format!(
            "start-up failed on worker rank(s) {failed:?}; see their messages above"
        ))),
        (_, Err(e)) => {
            log::error!("[rank {rank}] {e}");
            Ok(Err(EXIT_INPUT))
        }
        (_, Ok(_)) => Ok(Err(EXIT_INPUT)),
    }
}

/// Rank 0 after a run: when some worker never answered the STOP, its process cannot take part
/// in MPI_Finalize, so the job is aborted with `code` (the results file is already closed).
pub(crate) fn abort_if_unreconciled(unreconciled: &[usize], results: &Path, code: i32) {
    if unreconciled.is_empty() {
        return;
    }
    eprintln!(
        "gradcode: error: workers {unreconciled:?} never answered the STOP; results are in {}; aborting the job",
        results.display()
    );
    crate::comm::mpi::abort(code);
}

/// What every rank learns from rank 0 about the input before loading its part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DataShape {
    pub rows: usize,
    pub features: usize,
    pub sparse: bool,
    pub task: Task,
    /// Stored non-zeros of the training split (rows × features when dense).
    pub nnz: u64,
    /// Rows of the test split (0: none).
    pub test_rows: usize,
    /// The image shape of the rows, when the dataset records one.
    pub image: Option<crate::data::ImageShape>,
}

impl DataShape {
    /// Bytes of `rows` rows of this data in memory (dense f64, or CSR at the average row density).
    pub fn bytes_of_rows(&self, rows: usize) -> Option<u128> {
        let rows = rows as u128;
        if self.sparse {
            let nnz_per_row = (self.nnz as u128).div_ceil((self.rows as u128).max(1));
            // value + index per non-zero, one row pointer and one label per row.
            rows.checked_mul(nnz_per_row)?
                .checked_mul(16)?
                .checked_add(rows.checked_mul(16)?)
        } else {
            rows.checked_mul(self.features as u128)?
                .checked_mul(8)?
                .checked_add(rows.checked_mul(8)?)
        }
    }
}

/// Rank 0 runs `precheck` (its own checks, e.g. of the output folder), validates `data` in the
/// resource-limited child (libhdf5 is not safe on crafted files: BI-1..BI-3; a crash or hang
/// there refuses the file), inspects it and runs `fits` on its shape (the memory budget); one
/// broadcast gives every rank the shape. On a failure rank 0 returns the error and the other
/// ranks `Ok(Err(EXIT_INPUT))`.
pub(crate) fn broadcast_data_shape(
    world: &World,
    data: &Path,
    precheck: impl FnOnce() -> Result<()>,
    fits: impl FnOnce(&DataShape) -> Result<()>,
) -> Result<std::result::Result<DataShape, i32>> {
    broadcast_shape(world, || {
        precheck()?;
        crate::io::validate::validate_isolated(data).and_then(|r| r.into_result(data))?;
        let shape = DataShape::from(&crate::io::dataset::inspect(data)?);
        fits(&shape)?;
        Ok(shape)
    })
}

/// The same for a user's matrix (`matvec --matrix FILE.h5[:/PATH]`): validated as a matrix in
/// the resource-limited child (no labels or task needed).
pub(crate) fn broadcast_matrix_shape(
    world: &World,
    src: &str,
    precheck: impl FnOnce() -> Result<()>,
) -> Result<std::result::Result<DataShape, i32>> {
    broadcast_shape(world, || {
        precheck()?;
        let info = crate::io::validate::validate_matrix_isolated(&src.parse()?)?;
        Ok(DataShape {
            rows: info.rows,
            features: info.cols,
            sparse: info.sparse,
            task: Task::Regression,
            nnz: info.nnz,
            test_rows: 0,
            image: None,
        })
    })
}

/// Rank 0 runs `produce`; one broadcast gives every rank the shape, or rank 0 the error and the
/// others `Ok(Err(EXIT_INPUT))`.
fn broadcast_shape(
    world: &World,
    produce: impl FnOnce() -> Result<DataShape>,
) -> Result<std::result::Result<DataShape, i32>> {
    // [ok, rows, features, sparse, task (1 binary, 2 regression, 3 multiclass), classes, nnz,
    //  test rows, image channels, height, width (0: no image shape)]
    Ok(
        broadcast_from_rank0::<11>(world, || produce().map(|s| encode_shape(&s)))?
            .map(|msg| decode_shape(&msg)),
    )
}

/// Rank 0 runs `produce` (values 1.. of the message; value 0 is set to 1 for success); one
/// broadcast (a start-up collective) gives every rank the message, or rank 0 its error and the
/// other ranks `Ok(Err(EXIT_INPUT))`.
pub(crate) fn broadcast_from_rank0<const N: usize>(
    world: &World,
    produce: impl FnOnce() -> Result<[f64; N]>,
) -> Result<std::result::Result<[f64; N], i32>> {
    let mut msg = [0.0f64; N];
    let mut err = None;
    if world.rank() == 0 {
        match produce() {
            Ok(m) => {
                msg = m;
                msg[0] = 1.0;
            }
            Err(e) => err = Some(e),
        }
    }
    world.broadcast(&mut msg);
    if msg[0] != 1.0 {
        return match err {
            Some(e) => Err(e),
            None => Ok(Err(EXIT_INPUT)),
        };
    }
    Ok(Ok(msg))
}

/// Whether a job runs its serial reference: `--reference`, or `reference = true` in its
/// `--config` file.
pub(crate) fn reference_requested(flag: bool, config: Option<&Path>) -> bool {
    flag || config
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("reference").and_then(|v| v.as_bool()))
        .unwrap_or(false)
}

/// A user's matrix on a rank after rank 0 has validated it: the object named, or the one the
/// file holds.
pub(crate) fn resolved_matrix(src: &str) -> Result<crate::io::matrix::MatrixSource> {
    let mut m: crate::io::matrix::MatrixSource = src.parse()?;
    if m.object.is_none() {
        m.object = Some(crate::io::matrix::matrix_info(&m)?.object);
    }
    Ok(m)
}

fn encode_shape(s: &DataShape) -> [f64; 11] {
    let (task, classes) = match s.task {
        Task::Binary => (1.0, 0),
        Task::Regression => (2.0, 0),
        Task::Multiclass { classes } => (3.0, classes),
    };
    [
        1.0,
        s.rows as f64,
        s.features as f64,
        f64::from(u8::from(s.sparse)),
        task,
        classes as f64,
        s.nnz as f64,
        s.test_rows as f64,
        s.image.map_or(0.0, |i| i.channels as f64),
        s.image.map_or(0.0, |i| i.height as f64),
        s.image.map_or(0.0, |i| i.width as f64),
    ]
}

fn decode_shape(msg: &[f64; 11]) -> DataShape {
    let task = match msg[4] as i32 {
        1 => Task::Binary,
        2 => Task::Regression,
        _ => Task::Multiclass {
            classes: msg[5] as usize,
        },
    };
    DataShape {
        rows: msg[1] as usize,
        features: msg[2] as usize,
        sparse: msg[3] == 1.0,
        task,
        nnz: msg[6] as u64,
        test_rows: msg[7] as usize,
        image: (msg[8] > 0.0).then(|| crate::data::ImageShape {
            channels: msg[8] as usize,
            height: msg[9] as usize,
            width: msg[10] as usize,
        }),
    }
}

/// The round's traffic and per-worker timing into `rec`: late, rejected, bytes both ways,
/// arrival, compute and injected seconds, parts on time (the coded linear-algebra jobs).
pub(crate) fn record_round(rec: &mut IterationRecord, round: &Round) {
    rec.set(Metric::Late, f64::from(round.late));
    rec.set(Metric::Rejected, f64::from(round.rejected));
    rec.set(Metric::BytesReceived, round.bytes_in);
    rec.set(Metric::MessagesReceived, f64::from(round.messages_in));
    rec.set(Metric::BytesSent, round.bytes_out);
    record_workers(
        rec,
        &round.arrival_s,
        &round.compute_s,
        &round.injected_s,
        &round.parts_in,
    );
}

/// Per-worker arrival, compute and injected seconds and parts on time into `rec`.
pub(crate) fn record_workers(
    rec: &mut IterationRecord,
    arrival_s: &[f64],
    compute_s: &[f64],
    injected_s: &[f64],
    parts_in: &[usize],
) {
    rec.worker_mut(WorkerMetric::ArrivalS)
        .copy_from_slice(arrival_s);
    rec.worker_mut(WorkerMetric::ComputeS)
        .copy_from_slice(compute_s);
    rec.worker_mut(WorkerMetric::InjectedS)
        .copy_from_slice(injected_s);
    for (x, &p) in rec
        .worker_mut(WorkerMetric::Chunks)
        .iter_mut()
        .zip(parts_in)
    {
        *x = p as f64;
    }
}

impl From<&crate::io::dataset::DatasetInfo> for DataShape {
    fn from(info: &crate::io::dataset::DatasetInfo) -> Self {
        DataShape {
            rows: info.n_rows,
            features: info.n_features,
            sparse: info.sparse,
            task: info.task,
            nnz: info.nnz,
            test_rows: info.test_rows.unwrap_or(0),
            image: info.image,
        }
    }
}

/// Attributes of one group.
pub(crate) type Attrs = Vec<(String, AttrValue)>;

/// `/code` and `/env` attributes of a results file.
pub(crate) fn provenance(world_size: usize) -> (Attrs, Attrs) {
    let s = |v: &str| AttrValue::Str(v.to_string());
    let (mpi_lib, mpi_std) = crate::comm::mpi::library_version();
    let code = vec![
        ("gradcode_version".into(), s(crate::VERSION)),
        ("git_revision".into(), s(env!("GRADCODE_GIT_REV"))),
        ("build_profile".into(), s(env!("GRADCODE_PROFILE"))),
        (
            "features".into(),
            s(if cfg!(feature = "fault-injection") {
                "fault-injection"
            } else {
                ""
            }),
        ),
        ("mpi_library".into(), AttrValue::Str(mpi_lib)),
        ("mpi_standard".into(), AttrValue::Str(mpi_std)),
        (
            "hdf5_version".into(),
            AttrValue::Str(crate::io::hdf5_version()),
        ),
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
pub(crate) fn warn_if_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        log::warn!(
            "running as root: input files are parsed and results written with root rights; run as an unprivileged user"
        );
    }
}

/// Create the run folder `out`, write the effective config `toml` to `config_path`, and return it
/// with the typed `/config` attributes of the settings `cfg` (plus `job`).
pub(crate) fn write_run_config(
    out: &Path,
    config_path: &Path,
    toml: String,
    cfg: &impl serde::Serialize,
    job: &str,
) -> Result<(String, Attrs)> {
    std::fs::create_dir_all(out).map_err(|e| crate::io::IoError::os(out, e))?;
    std::fs::write(config_path, &toml).map_err(|e| crate::io::IoError::os(out, e))?;
    let settings = toml::Value::try_from(cfg)
        .ok()
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    let mut attrs = settings_attrs(&settings);
    attrs.push(("job".into(), AttrValue::Str(job.into())));
    Ok((toml, attrs))
}

/// Typed attributes from a TOML table of settings.
pub(crate) fn settings_attrs(t: &toml::Table) -> Attrs {
    t.iter()
        .map(|(k, v)| {
            let a = match v {
                toml::Value::String(s) => AttrValue::Str(s.clone()),
                toml::Value::Integer(i) => AttrValue::U64((*i).max(0) as u64),
                toml::Value::Float(f) => AttrValue::F64(*f),
                toml::Value::Boolean(b) => AttrValue::Bool(*b),
                other => AttrValue::Str(other.to_string()),
            };
            (k.clone(), a)
        })
        .collect()
}
