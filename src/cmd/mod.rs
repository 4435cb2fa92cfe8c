//! Subcommand implementations: each takes parsed arguments and returns the crate error.

pub mod codes;
pub mod data;
pub mod linalg;
pub mod recover;
pub mod train;
