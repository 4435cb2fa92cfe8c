//! Transport between rank 0 and the workers.
//!
//! [`protocol`] defines message kinds, tags and the checked header (pure, unit-tested);
//! [`mpi`] holds the MPI plumbing (send buffers that outlive nonblocking sends, checked matched
//! receives, job-wide abort). The collection loop itself lives in `coordinator`, the worker loop
//! in `worker`.
//!
//! Not implemented: an in-process transport for protocol unit tests (the protocol is tested by
//! running the real binary under `mpirun`).

pub mod mpi;
pub mod protocol;

use thiserror::Error;

/// Errors of the transport and of the collection protocol.
#[derive(Debug, Error)]
pub enum CommError {
    #[error("protocol violation from rank {rank}: {reason}")]
    Protocol { rank: i32, reason: String },
    #[error("iteration {iteration}: no decodable set of responders after {waited_ms:.0} ms (--max-wait-ms); {have} of {n} workers answered; silent workers (ranks): {silent:?}")]
    Timeout {
        iteration: u64,
        waited_ms: f64,
        have: usize,
        n: usize,
        silent: Vec<usize>,
    },
    #[error("{0}")]
    Fatal(String),
}
