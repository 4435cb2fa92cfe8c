//! `gradcode report`: read results files (complete, partial or damaged) and print a comparison
//! table (text, CSV or JSON), optionally drawing a figure.
//!
//! Files are read only through [`crate::io::results`]. A file that is missing, not HDF5 or not a
//! gradcode results file gives one `gradcode: error:` line naming it; the others are still
//! reported and the exit code is 2. A run killed mid-way (status `running`) is reported from
//! the iterations it finished and marked `partial (status running)`; missing groups are named
//! in `note:` lines (text) or the `notes` field (CSV, JSON).

pub mod load;
pub mod plot;
pub mod table;

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::error::Result;
use crate::io::IoError;

pub use load::{load, LoadedRun};
pub use table::Summary;

/// Arguments of `gradcode report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Results files (`OUT/run.h5`) or run folders holding one.
    #[arg(required = true, value_name = "RUN.h5")]
    pub files: Vec<PathBuf>,
    /// Report the first wall-clock time (`elapsed_s`) at which the training loss is ≤ LOSS.
    #[arg(long, value_name = "LOSS")]
    pub target_loss: Option<f64>,
    /// Draw a 1600 × 1000 PNG: loss against time and iterations, time per iteration with the
    /// oracle (dashed), and the first run's worker × iteration arrival heat map (red = missed).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Print the table as CSV (header + one row per run; times in seconds).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Print the table as JSON (`{"runs": [...], "errors": [...]}`; times in seconds).
    #[arg(long)]
    pub json: bool,
}

/// Run `gradcode report`; returns the exit code (0, or 2 when a file could not be reported).
pub fn run(args: &ReportArgs) -> Result<i32> {
    if let Some(x) = args.target_loss {
        if !x.is_finite() {
            return Err(crate::config::ConfigError::Invalid {
                name: "target-loss",
                value: x.to_string(),
                reason: "must be a finite number".into(),
            }
            .into());
        }
    }
    if let Some(p) = &args.plot {
        if !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            return Err(IoError::Layout {
                path: p.clone(),
                detail: "--plot writes a PNG: give a file name ending in .png".into(),
            }
            .into());
        }
    }
    let mut runs = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    for f in &args.files {
        match load(f) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("gradcode: error: {e}");
                errors.push((f.display().to_string(), e.to_string()));
            }
        }
    }
    let rows: Vec<Summary> = runs
        .iter()
        .map(|r| Summary::of(r, args.target_loss))
        .collect();
    let out = if args.json {
        table::json(&rows, &errors)
    } else if args.csv {
        table::csv(&rows)
    } else if rows.is_empty() {
        String::new()
    } else {
        table::text(&rows)
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    if let Some(p) = &args.plot {
        if runs.is_empty() {
            eprintln!(
                "gradcode: error: {}: not drawn (no run to plot)",
                p.display()
            );
        } else {
            plot::draw(&runs, p).map_err(|detail| IoError::Layout {
                path: p.clone(),
                detail: format!("cannot draw the plot: {detail}"),
            })?;
            if !args.json && !args.csv {
                println!(
                    "plot: {} ({} x {} px)",
                    p.display(),
                    plot::WIDTH,
                    plot::HEIGHT
                );
            }
        }
    }
    Ok(if errors.is_empty() { 0 } else { 2 })
}
