//! # gradcode
//!
//! Straggler-resilient distributed training by gradient coding over MPI.
//!
//! Each MPI rank `1..=n` is a worker that holds redundant data partitions, computes the
//! gradient of its partitions and sends one coded combination to rank 0 with a nonblocking
//! send. Rank 0 decodes the full gradient from whichever messages arrive before a deadline
//! (exactly from any `n - s` workers, or approximately with a recorded error bound), steps the
//! model and goes on without waiting for stragglers. HDF5 holds datasets, checkpoints and
//! results.
//!
//! Layering, top to bottom (nothing imports upward; checked by `tests/layering.rs`):
//! `main` → `cli` → `cmd` (job entry points) → `train` (the loop and its gradient engines),
//! `admm` (pdADMM's loops), `report` → `config`, `io`, `model`, `linalg` → `comm`, `coding`, `data`, `straggler`,
//! `optim`, `error`. `data` knows no HDF5, `coding` knows no MPI, `model` knows no transport;
//! `io` is the only module that imports `hdf5`, `comm::mpi` the only one that imports `mpi`.
//! Nothing below `cli` imports `cli`.
//!
//! See `../shared/GUIDE.md` for the design and the math, `docs/architecture.md` for the layers,
//! and `docs/` for usage.

// BLAS for ndarray's `dot` comes from the system OpenBLAS.
extern crate blas_src;

pub mod admm;
pub mod cli;
pub mod cmd;
pub mod coding;
pub mod comm;
pub mod compress;
pub mod config;
pub mod data;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod io;
pub mod linalg;
pub mod model;
pub mod optim;
pub mod report;
pub mod sim;
pub mod straggler;
pub mod train;

/// Version of this build, written into every result file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
