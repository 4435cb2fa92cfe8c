//! Subcommand implementations: each takes parsed arguments and returns the crate error.
//!
//! The MPI jobs (`train`, `matvec`, `matmul`, coded training through mat-vecs) share the frame
//! below: MPI is initialized once, a job's error is printed on its rank before MPI_Finalize, and
//! a set-up failure is reported by rank 0 alone while the other ranks exit with [`EXIT_INPUT`].

use std::path::Path;

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::data::Task;
use crate::error::{Error, Result};

pub mod codes;
pub mod data;
pub mod linalg;
pub mod matmul;
pub mod matvec;
pub mod mds_train;
pub mod recover;
pub mod train;

/// Exit code of a rank that stops because of an error another rank (rank 0) reports.
pub const EXIT_INPUT: i32 = 2;

/// Initialize MPI, run `job` on the world communicator, finalize; returns the exit code.
/// A panic on any rank aborts the whole job; ranks other than 0 log warnings and errors only
/// (unless debug logging was asked for), so rank 0 stays readable.
pub(crate) fn with_mpi(job: impl FnOnce(&SimpleCommunicator) -> Result<i32>) -> Result<i32> {
    let universe =
        mpi::initialize().ok_or_else(|| Error::Check("MPI was already initialized".into()))?;
    let world = universe.world();
    let rank = world.rank();
    install_panic_hook(rank);
    if rank != 0 && log::max_level() < log::LevelFilter::Debug {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let code = match job(&world) {
        Ok(c) => c,
        Err(e) => {
            // Print before MPI_Finalize: once the other ranks exit with an error code, mpirun may
            // kill this one, and the message must not be lost.
            eprintln!("gradcode: error: {e}");
            e.exit_code()
        }
    };
    drop(universe);
    Ok(code)
}

/// A panic unwinding on one rank would finalize MPI while the others wait (GUIDE §2): print it
/// and abort the whole job instead.
fn install_panic_hook(rank: i32) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("gradcode: fatal: rank {rank} panicked; aborting the MPI job");
        crate::comm::mpi::abort(70);
    }));
}

/// Set-up failures on one rank: rank 0 reports the error, other ranks exit quietly (they failed
/// the same deterministic check, or rank 0 told them so).
pub(crate) fn rank_result(rank: i32, e: Error) -> Result<i32> {
    if rank == 0 {
        Err(e)
    } else {
        Ok(EXIT_INPUT)
    }
}

/// A checked setting that is out of range, as the crate error.
pub(crate) fn invalid(
    name: &'static str,
    value: impl ToString,
    reason: impl Into<String>,
) -> Error {
    crate::config::invalid(name, value, reason).into()
}

/// The start-up handshake, the last collective of a job: every rank reports whether its set-up
/// (`local`) succeeded. When all did, every rank goes on with its value (`Ok(Ok(v))`). When any
/// failed, rank 0 returns its own error or one naming the failed worker ranks, and the other
/// ranks log theirs and return [`EXIT_INPUT`] as `Ok(Err(code))`.
pub(crate) fn gather_startup<T>(
    world: &SimpleCommunicator,
    local: Result<T>,
) -> Result<std::result::Result<T, i32>> {
    let rank = world.rank();
    let flag = i32::from(local.is_err());
    let mut flags = vec![0i32; world.size() as usize];
    world.all_gather_into(&flag, &mut flags[..]);
    let failed: Vec<usize> = flags
        .iter()
        .enumerate()
        .filter(|(_, &f)| f != 0)
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

/// The worker count N of a 1 + N rank job, refusing a world of fewer than two ranks.
pub(crate) fn workers_of(world: usize, job: &str) -> Result<usize> {
    if world < 2 {
        return Err(invalid(
            "np",
            world,
            format!(
                "gradcode {job} runs as 1 coordinator + N workers; run it as `mpirun -np N+1 gradcode {job} ...`"
            ),
        ));
    }
    Ok(world - 1)
}

/// The timing settings shared by the coded linear-algebra jobs: `--deadline-ms` finite and
/// ≥ 0, `--max-wait-ms` finite and at least the deadline, and a straggler model valid for `n`
/// workers.
pub(crate) fn check_timing(
    deadline_ms: f64,
    max_wait_ms: f64,
    straggler_model: &str,
    n: usize,
    seed: u64,
) -> Result<()> {
    if !(deadline_ms.is_finite() && deadline_ms >= 0.0) {
        return Err(invalid(
            "deadline-ms",
            deadline_ms,
            "must be a finite number ≥ 0",
        ));
    }
    if !(max_wait_ms.is_finite() && max_wait_ms >= deadline_ms) {
        return Err(invalid(
            "max-wait-ms",
            max_wait_ms,
            "must be finite and at least --deadline-ms",
        ));
    }
    crate::straggler::StragglerSchedule::parse(straggler_model, n, seed)
        .map_err(|e| Error::Config(e.into()))?;
    Ok(())
}

/// What every rank learns from rank 0 about the dataset before loading its part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DataShape {
    pub rows: usize,
    pub features: usize,
    pub sparse: bool,
    pub task: Task,
}

/// Rank 0 runs `precheck` (its own checks, e.g. of the output folder), then validates `data` in
/// the resource-limited child (libhdf5 is not safe on crafted files: BI-1..BI-3; a crash or hang
/// there refuses the file) and inspects it; one broadcast gives every rank the shape. On a
/// failure rank 0 returns the error and the other ranks `Ok(Err(EXIT_INPUT))`.
pub(crate) fn broadcast_data_shape(
    world: &SimpleCommunicator,
    data: &Path,
    precheck: impl FnOnce() -> Result<()>,
) -> Result<std::result::Result<DataShape, i32>> {
    // [ok, rows, features, sparse, task (1 binary, 2 regression, 3 multiclass), classes]
    let mut msg = [0.0f64; 6];
    let mut err = None;
    if world.rank() == 0 {
        let checked = precheck()
            .and_then(|()| {
                crate::io::validate::validate_isolated(data)
                    .and_then(|r| r.into_result(data))
                    .map_err(Error::from)
            })
            .and_then(|()| crate::io::dataset::inspect(data).map_err(Error::from));
        match checked {
            Ok(info) => {
                let (task, classes) = match info.task {
                    Task::Binary => (1.0, 0),
                    Task::Regression => (2.0, 0),
                    Task::Multiclass { classes } => (3.0, classes),
                };
                msg = [
                    1.0,
                    info.n_rows as f64,
                    info.n_features as f64,
                    f64::from(u8::from(info.sparse)),
                    task,
                    classes as f64,
                ];
            }
            Err(e) => err = Some(e),
        }
    }
    world.process_at_rank(0).broadcast_into(&mut msg[..]);
    if msg[0] != 1.0 {
        return match err {
            Some(e) => Err(e),
            None => Ok(Err(EXIT_INPUT)),
        };
    }
    let task = match msg[4] as i32 {
        1 => Task::Binary,
        2 => Task::Regression,
        _ => Task::Multiclass {
            classes: msg[5] as usize,
        },
    };
    Ok(Ok(DataShape {
        rows: msg[1] as usize,
        features: msg[2] as usize,
        sparse: msg[3] == 1.0,
        task,
    }))
}
