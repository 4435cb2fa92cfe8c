//! The `gradcode` binary: parse the command line, set up logging, run a subcommand.
use clap::Parser;
use gradcode::cli::{Cli, Command};
use gradcode::error::Error;

/// Exit codes (README, "Exit codes"): 2 for bad input or configuration, 1 for runtime failures.
fn exit_code(e: &Error) -> i32 {
    match e {
        Error::Config(_) | Error::Io(_) | Error::Data(_) | Error::Code(_) | Error::Model(_) => 2,
        Error::Comm(_) | Error::Check(_) => 1,
    }
}

fn main() {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    let result = match &cli.command {
        Command::Train(args) => gradcode::cmd::train::run(args),
        Command::Data(cmd) => gradcode::cmd::data::run(cmd).map(|()| 0),
        Command::Codes(cmd) => gradcode::cmd::codes::run(cmd).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("gradcode: error: {e}");
            std::process::exit(exit_code(&e));
        }
    }
}
