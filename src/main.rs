//! The `gradcode` binary: parse the command line, set up logging, run a subcommand.
use clap::Parser;
use gradcode::cli::{Cli, Command};

fn main() {
    // `train --code mds-*`: coded training through mat-vecs, its own argument parser.
    let argv: Vec<String> = std::env::args().collect();
    if gradcode::cmd::mds_train::wanted(&argv) {
        std::process::exit(gradcode::cmd::mds_train::run_from_args(&argv));
    }
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
        Command::Report(args) => gradcode::report::run(args),
        Command::Matvec(args) => gradcode::cmd::matvec::run(args),
        Command::Matmul(args) => gradcode::cmd::matmul::run(args),
        Command::Recover(args) => gradcode::cmd::recover::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("gradcode: error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
