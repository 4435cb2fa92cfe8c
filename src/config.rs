//! The checked run configuration of `gradcode train`.
//!
//! [`RunConfig::from_args`] merges a TOML file (`--config`) with command-line flags (flags win),
//! applies defaults, and checks every setting once, identically on every rank, before any MPI
//! traffic: a bad setting is refused on all ranks with the same message. The effective config is
//! written back as TOML (into the run folder and the result file), and a hash of the settings that
//! shape the trajectory guards checkpoints against resuming under another configuration.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::cli::{OnDeadline, OptimizerKind, TrainArgs};
use crate::coding::CodeKind;
use crate::model::ModelKind;
use crate::straggler::{StragglerError, StragglerSchedule};

/// Errors of configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0} is required (flag --{0}, or `{0} = ...` in the config file)")]
    Missing(&'static str),
    #[error("--{name} = {value}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("gradcode train runs as 1 coordinator + N workers but the MPI world has {world} rank(s); run it as `mpirun -np N+1 gradcode train ...`, or pass --reference for the serial path")]
    WorldTooSmall { world: usize },
    #[error(transparent)]
    Straggler(#[from] StragglerError),
    #[error("{path} already exists (pass --force to overwrite, or --resume to continue from its checkpoint)")]
    OutputExists { path: PathBuf },
    #[error("--resume: no checkpoint at {path}")]
    NoCheckpoint { path: PathBuf },
}

/// Every setting of a training run, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunConfig {
    pub data: PathBuf,
    pub model: ModelKind,
    pub code: CodeKind,
    pub stragglers: usize,
    /// Number of workers n (world size − 1; 0 for the serial reference).
    pub workers: usize,
    pub deadline_ms: f64,
    pub on_deadline: OnDeadline,
    pub max_wait_ms: f64,
    pub iterations: u64,
    pub lr: f64,
    pub l2: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub straggler_model: String,
    pub seed: u64,
    pub out: PathBuf,
    pub force: bool,
    pub resume: bool,
    pub checkpoint_every: u64,
    pub eval_every: u64,
    pub log_every: u64,
    /// Chunks per worker and iteration (partial work); 1 = one message per iteration.
    pub chunks: usize,
    /// Check the decoded gradient against the exact one every K iterations (0: first only).
    #[serde(default)]
    pub check_gradient_every: u64,
    /// Degree d of approximate codes (None: the code's default, s + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degree: Option<usize>,
    /// Decoder of approximate codes (None: the code's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<crate::coding::DecoderKind>,
    /// Straggle probability p of the stochastic code (None: s / n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straggle_prob: Option<f64>,
    /// Fold gradients one iteration late into the current decode (`--reuse-stale`).
    #[serde(default)]
    pub reuse_stale: bool,
    pub reference: bool,
}

/// Name of the results file inside the run folder.
pub const RESULTS_FILE: &str = "run.h5";
/// Name of the checkpoint file inside the run folder.
pub const CHECKPOINT_FILE: &str = "ckpt.h5";

pub(crate) fn invalid(
    name: &'static str,
    value: impl ToString,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl RunConfig {
    /// Merge `--config` and flags, apply defaults, and check everything for an MPI world of
    /// `world` ranks.
    pub fn from_args(args: &TrainArgs, world: usize) -> Result<RunConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => TrainArgs::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                args.$f.clone().or(file.$f.clone()).unwrap_or($default)
            };
        }
        let reference = args.reference || file.reference;
        let workers = if reference {
            0
        } else {
            world.saturating_sub(1)
        };
        if !reference && world < 2 {
            return Err(ConfigError::WorldTooSmall { world });
        }
        let cfg = RunConfig {
            data: args
                .data
                .clone()
                .or(file.data.clone())
                .ok_or(ConfigError::Missing("data"))?,
            model: pick!(model, ModelKind::Logistic),
            code: pick!(code, CodeKind::CyclicMds),
            stragglers: pick!(stragglers, 1),
            workers,
            deadline_ms: pick!(deadline_ms, 1000.0),
            on_deadline: pick!(on_deadline, OnDeadline::Wait),
            max_wait_ms: pick!(max_wait_ms, 30_000.0),
            iterations: pick!(iterations, 100),
            lr: pick!(lr, 0.5),
            l2: pick!(l2, 1e-4),
            optimizer: pick!(optimizer, OptimizerKind::Gd),
            momentum: pick!(momentum, 0.9),
            straggler_model: pick!(straggler_model, "none".to_string()),
            seed: pick!(seed, 1),
            out: pick!(out, PathBuf::from("results/run")),
            force: args.force || file.force,
            resume: args.resume || file.resume,
            checkpoint_every: pick!(checkpoint_every, 0),
            eval_every: pick!(eval_every, 10),
            log_every: pick!(log_every, 10),
            chunks: pick!(chunks, 1),
            check_gradient_every: pick!(check_gradient_every, 0),
            degree: args.degree.or(file.degree),
            decoder: args.decoder.or(file.decoder),
            straggle_prob: args.straggle_prob.or(file.straggle_prob),
            reuse_stale: args.reuse_stale || file.reuse_stale,
            reference,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let finite_pos = |name, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(name, v, "must be a finite number > 0"))
            }
        };
        finite_pos("deadline-ms", self.deadline_ms)?;
        finite_pos("max-wait-ms", self.max_wait_ms)?;
        finite_pos("lr", self.lr)?;
        if self.max_wait_ms < self.deadline_ms {
            return Err(invalid(
                "max-wait-ms",
                self.max_wait_ms,
                format!("must be at least the deadline ({} ms)", self.deadline_ms),
            ));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(invalid("l2", self.l2, "must be a finite number >= 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid("momentum", self.momentum, "must be in [0, 1)"));
        }
        if self.iterations == 0 {
            return Err(invalid("iterations", 0, "must be at least 1"));
        }
        if !(1..=64).contains(&self.chunks) {
            return Err(invalid("chunks", self.chunks, "must be between 1 and 64"));
        }
        if self.reuse_stale && self.chunks > 1 {
            return Err(invalid(
                "reuse-stale",
                "true",
                format!(
                    "works with one message per worker and iteration; drop it or use --chunks 1 (given --chunks {})",
                    self.chunks
                ),
            ));
        }
        if self.log_every == 0 {
            return Err(invalid("log-every", 0, "must be at least 1"));
        }
        if !self.reference {
            if self.stragglers >= self.workers {
                return Err(invalid(
                    "stragglers",
                    self.stragglers,
                    format!(
                        "must be smaller than the number of workers n = {} (world size {} = 1 coordinator + {} workers)",
                        self.workers,
                        self.workers + 1,
                        self.workers
                    ),
                ));
            }
            StragglerSchedule::parse(&self.straggler_model, self.workers, self.seed)?;
        }
        if self.out.as_os_str().is_empty() {
            return Err(invalid("out", "''", "must name a run folder"));
        }
        Ok(())
    }

    /// Checks that depend on the file system (output folder, checkpoint). They run on rank 0 only
    /// (and in the serial path): rank 0 creates these files, so other ranks would see a different
    /// state, and a check that differs between ranks would leave some ranks in a collective alone.
    pub fn check_paths(&self) -> Result<(), ConfigError> {
        if self.out.is_file() {
            return Err(invalid(
                "out",
                self.out.display(),
                "is a file; --out names a run folder",
            ));
        }
        if self.resume {
            if !self.checkpoint_path().exists() && !self.previous_checkpoint_path().exists() {
                return Err(ConfigError::NoCheckpoint {
                    path: self.checkpoint_path(),
                });
            }
        } else if !self.force && !self.reference && self.results_path().exists() {
            return Err(ConfigError::OutputExists {
                path: self.results_path(),
            });
        }
        Ok(())
    }

    /// Options of the code (degree, decoder, straggle probability).
    pub fn code_options(&self) -> crate::coding::CodeOptions {
        crate::coding::CodeOptions {
            degree: self.degree,
            decoder: self.decoder,
            straggle_prob: self.straggle_prob,
        }
    }

    /// `OUT/run.h5`.
    pub fn results_path(&self) -> PathBuf {
        self.out.join(RESULTS_FILE)
    }
    /// `OUT/ckpt.h5`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.out.join(CHECKPOINT_FILE)
    }
    /// `OUT/ckpt.prev.h5`: the previous checkpoint generation.
    pub fn previous_checkpoint_path(&self) -> PathBuf {
        self.out.join("ckpt.prev.h5")
    }

    /// The effective config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# could not serialize config: {e}\n"))
    }

    /// SHA-256 over the settings that shape the trajectory (not iterations, output or logging),
    /// so that a checkpoint refuses to resume under another configuration.
    pub fn trajectory_hash(&self) -> String {
        let key = format!(
            "data={}\nmodel={}\ncode={}\ns={}\nn={}\ndeadline_ms={:?}\non_deadline={:?}\nlr={:?}\nl2={:?}\noptimizer={:?}\nmomentum={:?}\nstragglers={}\nseed={}\nchunks={}\n",
            self.data.display(),
            self.model.name(),
            self.code.name(),
            self.stragglers,
            self.workers,
            self.deadline_ms,
            self.on_deadline,
            self.lr,
            self.l2,
            self.optimizer,
            self.momentum,
            self.straggler_model,
            self.seed,
            self.chunks
        ) + &format!("degree={:?}\ndecoder={:?}\nstraggle_prob={:?}\n", self.degree, self.decoder, self.straggle_prob)
            // Only when set, so the hashes of runs without it are unchanged.
            + if self.reuse_stale { "reuse_stale=true\n" } else { "" };
        let digest = Sha256::digest(key.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn read_file(path: &Path) -> Result<TrainArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut parsed: TrainArgs = toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string().trim().replace('\n', " "),
    })?;
    // Relative data and output paths in a config file are relative to the working directory,
    // like flags; nothing to rebase. `config` itself cannot be nested.
    parsed.config = None;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> TrainArgs {
        TrainArgs {
            data: Some("d.h5".into()),
            out: Some(std::env::temp_dir().join("gradcode-config-test-none")),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_apply_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "data = \"x.h5\"\ncode = \"frc\"\nstragglers = 2\nlr = 0.1\ndeadline-ms = 250\n",
        )
        .unwrap();
        let a = TrainArgs {
            config: Some(f),
            lr: Some(0.3),
            out: Some(dir.path().join("run")),
            ..Default::default()
        };
        let c = RunConfig::from_args(&a, 7).unwrap();
        assert_eq!(c.data, PathBuf::from("x.h5"));
        assert_eq!(c.code, CodeKind::Frc);
        assert_eq!(c.stragglers, 2);
        assert_eq!(c.lr, 0.3);
        assert_eq!(c.deadline_ms, 250.0);
        assert_eq!(c.workers, 6);
        assert_eq!(c.iterations, 100);
        let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let cases: Vec<(TrainArgs, usize, &str)> = vec![
            (
                TrainArgs {
                    stragglers: Some(3),
                    ..args()
                },
                4,
                "--stragglers = 3",
            ),
            (
                TrainArgs {
                    deadline_ms: Some(0.0),
                    ..args()
                },
                4,
                "--deadline-ms",
            ),
            (
                TrainArgs {
                    lr: Some(f64::NAN),
                    ..args()
                },
                4,
                "--lr",
            ),
            (
                TrainArgs {
                    momentum: Some(1.0),
                    ..args()
                },
                4,
                "--momentum",
            ),
            (
                TrainArgs {
                    iterations: Some(0),
                    ..args()
                },
                4,
                "--iterations",
            ),
            (
                TrainArgs {
                    straggler_model: Some("fixed:7:10".into()),
                    ..args()
                },
                4,
                "not a worker rank",
            ),
            (
                TrainArgs {
                    reuse_stale: true,
                    chunks: Some(2),
                    ..args()
                },
                4,
                "--reuse-stale",
            ),
            (args(), 1, "mpirun -np N+1"),
            (
                TrainArgs {
                    data: None,
                    ..args()
                },
                4,
                "data is required",
            ),
        ];
        for (a, world, needle) in cases {
            let e = RunConfig::from_args(&a, world).unwrap_err().to_string();
            assert!(e.contains(needle), "expected '{needle}' in '{e}'");
        }
        let resume = RunConfig::from_args(
            &TrainArgs {
                resume: true,
                ..args()
            },
            4,
        )
        .unwrap();
        let e = resume.check_paths().unwrap_err().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "data = \"x.h5\"\nlearning-rate = 0.1\n").unwrap();
        let a = TrainArgs {
            config: Some(f),
            ..Default::default()
        };
        let e = RunConfig::from_args(&a, 4).unwrap_err().to_string();
        assert!(e.contains("learning-rate"), "{e}");
    }

    #[test]
    fn trajectory_hash_ignores_iterations_but_not_lr() {
        let c = RunConfig::from_args(&args(), 4).unwrap();
        let more = RunConfig {
            iterations: 500,
            ..c.clone()
        };
        let other = RunConfig {
            lr: 0.25,
            ..c.clone()
        };
        assert_eq!(c.trajectory_hash(), more.trajectory_hash());
        assert_ne!(c.trajectory_hash(), other.trajectory_hash());
    }
}
