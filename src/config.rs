//! Checked run configuration.
use thiserror::Error;

/// Errors of configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}
