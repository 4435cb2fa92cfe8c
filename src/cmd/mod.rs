//! Subcommand implementations: each takes parsed arguments and returns the crate error.

pub mod codes;
pub mod data;
pub mod linalg;
pub mod matmul;
pub mod matvec;
pub mod mds_train;
pub mod train;
