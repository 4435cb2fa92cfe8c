//! Test-only stress driver for RELIABILITY CR-2: resume from the newest checkpoint generation in
//! DIR, then save generations with increasing iteration numbers as fast as possible, printing
//! `saved N` (flushed) after each `checkpoint::save` returns, until killed.
//!
//! Usage: `ckpt_stress DIR [DIM] [MAX_SAVES]` (DIM: parameters per vector, default 4096).
//! `tests/reliability.rs` kills it with SIGKILL at random moments and checks that
//! `checkpoint::load` then finds the newest complete generation.
use std::io::Write;
use std::path::PathBuf;

use gradcode::io::checkpoint::{self, Checkpoint};
use gradcode::io::IoError;
use gradcode::optim::OptimizerState;
use ndarray::Array1;

/// Config hash the stress driver writes and expects.
const HASH: &str = "ckpt-stress-config";

fn state(iteration: u64, dim: usize) -> Checkpoint {
    let w: Array1<f64> = (0..dim)
        .map(|i| iteration as f64 + i as f64 * 1e-3)
        .collect();
    Checkpoint {
        iteration,
        state: OptimizerState {
            w_prev: w.mapv(|v| v * 0.5),
            w,
            steps: iteration,
            adam: None,
            kfac: None,
        },
        config_hash: HASH.into(),
        seed: 7,
        elapsed_s: iteration as f64 * 0.01,
        adapt: None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: ckpt_stress DIR [DIM] [MAX_SAVES]");
        std::process::exit(2);
    };
    let dim: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4096);
    let max: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let mut out = std::io::stdout().lock();
    let mut it = match checkpoint::load(&dir, HASH) {
        Ok((c, _, _)) => c.iteration,
        Err(IoError::NotFound { .. }) => 0,
        Err(e) => {
            eprintln!("ckpt_stress: load failed: {e}");
            std::process::exit(1);
        }
    };
    let _ = writeln!(out, "start {it}");
    let _ = out.flush();
    for _ in 0..max {
        it += 1;
        if let Err(e) = checkpoint::save(&dir, &state(it, dim)) {
            eprintln!("ckpt_stress: save failed: {e}");
            std::process::exit(1);
        }
        let _ = writeln!(out, "saved {it}");
        let _ = out.flush();
    }
}
