//! Transport.
use thiserror::Error;

/// Errors of the transport.
#[derive(Debug, Error)]
pub enum CommError {
    #[error("{0}")]
    Protocol(String),
}
