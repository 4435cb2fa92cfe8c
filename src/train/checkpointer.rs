//! When and what rank 0 checkpoints: `OUT/ckpt.h5` every `--checkpoint-every` iterations and on
//! a signal (GUIDE §5; the atomic write and the previous generation are
//! [`crate::io::checkpoint`]'s). A checkpoint holds the next iteration to run, the optimizer
//! state, the training clock and the config's trajectory hash, so a resumed run continues bit for
//! bit and refuses another configuration.

use std::path::PathBuf;

use crate::config::RunConfig;
use crate::io::checkpoint::{self, AdaptState, Checkpoint};
use crate::io::IoError;
use crate::optim::OptimizerState;

/// Rank 0's checkpoint policy for one run.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    out: PathBuf,
    every: u64,
    iterations: u64,
    hash: String,
    seed: u64,
}

impl Checkpointer {
    /// The policy of `cfg`.
    pub fn new(cfg: &RunConfig) -> Self {
        Checkpointer {
            out: cfg.job.out.clone(),
            every: cfg.checkpoint_every,
            iterations: cfg.iterations,
            hash: cfg.trajectory_hash(),
            seed: cfg.job.seed,
        }
    }

    /// Whether a checkpoint is due before running iteration `next` (never before the first or
    /// after the last).
    pub fn due(&self, next: u64) -> bool {
        self.every > 0 && next % self.every == 0 && next > 0 && next < self.iterations
    }

    /// Write the checkpoint that resumes at iteration `next`.
    pub fn save(
        &self,
        next: u64,
        state: &OptimizerState,
        elapsed_s: f64,
        adapt: Option<AdaptState>,
    ) -> Result<PathBuf, IoError> {
        checkpoint::save(
            &self.out,
            &Checkpoint {
                iteration: next,
                state: state.clone(),
                config_hash: self.hash.clone(),
                seed: self.seed,
                elapsed_s,
                adapt,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_every_k_but_not_at_the_ends() {
        let c = Checkpointer {
            out: PathBuf::from("x"),
            every: 3,
            iterations: 9,
            hash: String::new(),
            seed: 1,
        };
        let due: Vec<u64> = (0..=9).filter(|&t| c.due(t)).collect();
        assert_eq!(due, vec![3, 6]);
        let never = Checkpointer { every: 0, ..c };
        assert!(!(0..=9).any(|t| never.due(t)));
    }
}
