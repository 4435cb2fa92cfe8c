//! Checked configurations of the MPI jobs, validated once, early, identically on every rank.
//!
//! Each job has an `…Args` struct (clap flags and the keys of a `--config` TOML file, every field
//! optional) and a checked config built from it: [`JobArgs`] → [`JobConfig`] holds what every
//! MPI job shares (deadline, max wait, injected stragglers parsed once, seed, run folder, memory
//! budget); [`TrainArgs`] → [`RunConfig`] adds training; [`MatvecArgs`] → [`MatvecConfig`] and
//! [`MatmulArgs`] → [`MatmulConfig`] the coded linear-algebra jobs; [`AdmmArgs`] →
//! [`AdmmConfig`] pdADMM. A bad setting is refused on every rank with the same message naming
//! the flag, before any MPI traffic.
//!
//! A config file uses the long flag names as keys (dashes or underscores); flags override it; an
//! unknown key is refused naming the valid ones. Every run writes its effective config back as
//! TOML in the same keys, so `--config OUT/config.toml` re-runs it.
//!
//! Not here: checks that depend on the file system (run on rank 0 only: see
//! [`JobConfig::check_output`]) or on the dataset (after rank 0 has inspected it).

mod admm;
mod file;
mod job;
mod linalg;
mod train;

pub use admm::{AdmmArgs, AdmmConfig, MAX_STALENESS};
pub use file::{read_settings, settings_keys};
pub use job::{refuse_fault_plan, JobArgs, JobConfig, MemoryBudget};
pub use linalg::{MatmulArgs, MatmulConfig, MatvecArgs, MatvecConfig};
pub(crate) use train::{conv_filters, hidden_layers};
pub use train::{RunConfig, TrainArgs};

use std::path::PathBuf;

use thiserror::Error;

use crate::straggler::StragglerError;

/// Errors of configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0} is required (flag --{0}, or `{0} = ...` in the config file)")]
    Missing(&'static str),
    #[error("--{name} = {value}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("gradcode {job} runs as 1 coordinator + N workers but the MPI world has {world} rank(s); run it as `mpirun -np N+1 gradcode {job} ...`{hint}")]
    WorldTooSmall {
        job: &'static str,
        world: usize,
        hint: &'static str,
    },
    #[error(transparent)]
    Straggler(#[from] StragglerError),
    #[error("{path} already exists (pass --force to overwrite, or --resume to continue from its checkpoint)")]
    OutputExists { path: PathBuf },
    #[error("--resume: no checkpoint at {path}")]
    NoCheckpoint { path: PathBuf },
    #[error("{what} needs {need} but {budget}; {hint}")]
    TooBig {
        what: String,
        need: String,
        budget: String,
        hint: String,
    },
    #[error("{var} is set but this binary was built without the test-only fault injection (cargo feature `fault-injection`); unset {var}")]
    FaultPlanUnsupported { var: &'static str },
}

/// A checked setting that is out of range.
pub(crate) fn invalid(
    name: &'static str,
    value: impl ToString,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Name of the results file inside the run folder.
pub const RESULTS_FILE: &str = "run.h5";
/// Name of the checkpoint file inside the run folder.
pub const CHECKPOINT_FILE: &str = "ckpt.h5";
/// Name of the effective config inside the run folder.
pub const CONFIG_FILE: &str = "config.toml";

/// Bytes as a readable figure ("16.0 GB").
pub fn human_bytes(b: u128) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
