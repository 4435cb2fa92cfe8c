//! Subcommand implementations: each takes parsed arguments and returns the crate error.
//!
//! The MPI jobs (`train`, `matvec`, `matmul`, coded training through mat-vecs) share the frame
//! below: MPI is initialized once, a job's error is printed on its rank before MPI_Finalize, and
//! a set-up failure is reported by rank 0 alone while the other ranks exit with [`EXIT_INPUT`].

use mpi::topology::SimpleCommunicator;

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
pub(crate) fn with_mpi(job: impl FnOnce(&SimpleCommunicator) -> Result<i32>) -> Result<i32> {
    let universe =
        mpi::initialize().ok_or_else(|| Error::Check("MPI was already initialized".into()))?;
    let world = universe.world();
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
