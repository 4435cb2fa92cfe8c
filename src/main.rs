//! The `gradcode` binary: parse the command line, set up logging, run a subcommand, and turn
//! its outcome into one `gradcode: error:` line and the documented exit code (docs/training.md, "Exit
//! codes": 0 success, 1 runtime failure, 2 bad input or configuration; a job's own codes such
//! as 75 for a checkpoint-and-stop are returned by the subcommand).
use clap::Parser;
use gradcode::cli::{Cli, Command};

/// Exit code of an error: the library's own classification where the error is one of
/// gradcode's, 1 for anything else.
fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<gradcode::error::Error>()
        .map_or(1, gradcode::error::Error::exit_code)
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    Ok(match &cli.command {
        Command::Train(args) => gradcode::cmd::train::run(args)?,
        Command::Data(cmd) => gradcode::cmd::data::run(cmd).map(|()| 0)?,
        Command::Codes(cmd) => gradcode::cmd::codes::run(cmd).map(|()| 0)?,
        Command::Report(args) => gradcode::report::run(args)?,
        Command::Matvec(args) => gradcode::cmd::matvec::run(args)?,
        Command::Matmul(args) => gradcode::cmd::matmul::run(args)?,
        Command::Admm(args) => gradcode::cmd::admm::run(args)?,
        Command::Recover(args) => gradcode::cmd::recover::run(args)?,
        Command::Simulate(args) => gradcode::cmd::simulate::run(args)?,
        Command::Tune(args) => gradcode::cmd::tune::run(args)?,
        Command::Plan(args) => gradcode::cmd::plan::run(args)?,
        Command::Gemm(args) => gradcode::cmd::gemm::run(args).map(|()| 0)?,
    })
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| gradcode::cli::exit_on_parse_error(e));
    if !cli.command.is_mpi_job() {
        // Commands whose output is piped (`data inspect | head`) end quietly on a closed pipe,
        // as command-line tools do. MPI jobs keep Rust's default (EPIPE is an error there).
        gradcode::cli::restore_default_sigpipe();
    }
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    match run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("gradcode: error: {e}");
            std::process::exit(exit_code(&e));
        }
    }
}
