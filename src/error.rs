//! The crate-wide error: one variant per module area, each carrying that area's own error enum.
//! `main` carries these in `anyhow` and asks [`Error::exit_code`] for the exit code.

use thiserror::Error;

/// Any error gradcode reports to the user.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Code(#[from] crate::coding::CodeError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Comm(#[from] crate::comm::CommError),
    /// `gradcode simulate` / `tune`: bad settings or traces (exit 2), a simulated timeout (1).
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
    /// A malformed test-only fault plan (`GRADCODE_FAULT_PLAN`).
    #[cfg(feature = "fault-injection")]
    #[error(transparent)]
    Fault(#[from] crate::faults::FaultError),

    /// A check that ran and failed (e.g. `codes verify`); the message says which.
    #[error("{0}")]
    Check(String),
}

/// Result with the crate-wide error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Process exit code (docs/training.md, "Exit codes"): 2 for bad input or configuration, 1 for runtime
    /// failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Io(_) | Error::Data(_) | Error::Code(_) | Error::Model(_) => {
                2
            }
            #[cfg(feature = "fault-injection")]
            Error::Fault(_) => 2,
            Error::Sim(crate::sim::SimError::Timeout { .. }) => 1,
            Error::Sim(_) => 2,
            Error::Comm(_) | Error::Check(_) => 1,
        }
    }
}

/// Coded linear algebra: bad parameters are input errors (exit 2), a failed decode at run time
/// is a runtime failure (exit 1).
impl From<crate::linalg::LinalgError> for Error {
    fn from(e: crate::linalg::LinalgError) -> Self {
        use crate::coding::CodeError;
        use crate::config::ConfigError;
        match e {
            crate::linalg::LinalgError::Invalid { family, reason } => CodeError::Invalid {
                code: family,
                reason,
            }
            .into(),
            crate::linalg::LinalgError::UnknownFamily { name, expected } => ConfigError::Invalid {
                name: "family",
                value: name,
                reason: format!("unknown family (expected one of: {expected})"),
            }
            .into(),
            other => Error::Check(other.to_string()),
        }
    }
}
