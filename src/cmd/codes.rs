//! `gradcode codes show | verify`.
use crate::cli::CodesCommand;
use crate::error::Result;

/// Run a `codes` subcommand.
pub fn run(cmd: &CodesCommand) -> Result<()> {
    let _ = cmd;
    Err(crate::error::Error::Check(
        "gradcode codes: not implemented yet".into(),
    ))
}
