//! `gradcode data convert | synth | inspect`.
use crate::cli::DataCommand;
use crate::error::Result;

/// Run a `data` subcommand.
pub fn run(cmd: &DataCommand) -> Result<()> {
    let _ = cmd;
    Err(crate::error::Error::Check(
        "gradcode data: not implemented yet".into(),
    ))
}
