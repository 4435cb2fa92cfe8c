//! `gradcode recover RUN_DIR_OR_FILE`: the documented recovery path for the results of a killed
//! job (RELIABILITY.md promise 5, CR-6).
//!
//! A job killed with SIGKILL leaves `run.h5` with status `running`, every iteration flushed
//! before the kill, and the SWMR flag set (plain readers refuse it until `h5clear -s`).
//! `recover` reads the complete iterations (rows present in every metric), writes a consistent
//! copy with status `recovered` (or `failed` when not one iteration is complete) through
//! [`crate::io::results::recover`], keeps the original as `run.h5.killed`, and prints what it
//! found. Exit 0 when rows were recovered or the file needed nothing, 1 when no complete
//! iteration was left, 2 when the file cannot be read.

use crate::cli::RecoverArgs;
use crate::error::Result;
use crate::io::results;

/// Run `gradcode recover`; returns the process exit code.
pub fn run(args: &RecoverArgs) -> Result<i32> {
    let path = if args.path.is_dir() {
        args.path.join(crate::config::RESULTS_FILE)
    } else {
        args.path.clone()
    };
    let r = results::recover(&path)?;
    match &r.kept {
        None => {
            println!(
                "{}: status {}, {} iterations: nothing to recover",
                r.path.display(),
                r.status_before,
                r.rows
            );
            Ok(0)
        }
        Some(kept) => {
            println!(
                "{}: status {} -> {}; {} complete iterations kept; original file kept as {}",
                r.path.display(),
                r.status_before,
                r.status_after,
                r.rows,
                kept.display()
            );
            Ok(if r.rows > 0 { 0 } else { 1 })
        }
    }
}
