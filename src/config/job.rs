//! What every MPI job shares: deadline, max wait, injected stragglers, seed, run folder, memory
//! budget. [`JobArgs`] is flattened into the arguments of `train`, `matvec` and `matmul`;
//! [`JobConfig`] is its checked form, with the straggler spec parsed once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{human_bytes, invalid, ConfigError, CHECKPOINT_FILE, CONFIG_FILE, RESULTS_FILE};
use crate::straggler::{StragglerSchedule, StragglerSpec};

/// Settings every MPI job takes (flags, or keys of the `--config` file).
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobArgs {
    /// TOML file of settings, keys the long flag names (dashes or underscores); flags override
    /// it. The effective config is written to OUT/config.toml, which re-runs the job.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Deadline per iteration in milliseconds. Past it, `train` applies --on-deadline; the
    /// linear-algebra jobs log the silent workers and keep waiting [default: 1000].
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<f64>,
    /// Bound on waiting for a decodable set of workers; past it the job fails naming the silent
    /// workers [default: 30000].
    #[arg(long, value_name = "MS")]
    pub max_wait_ms: Option<f64>,
    /// Injected stragglers, components joined by '+' (their delays add up); RANKS are worker
    /// ranks 1..=N, comma-separated [default: none]:
    ///   none
    ///   fixed:RANKS:MS           those ranks sleep MS after computing, every iteration
    ///   fixed:RANKS:MS@ITER      the same from iteration ITER on (a regime change)
    ///   slow:RANKS:FACTOR        their compute takes FACTOR times as long (busy spin)
    ///   exp:MEAN_MS              every worker sleeps an exponential delay of that mean
    ///   shifted-exp:SHIFT_MS:MEAN_MS   SHIFT plus an exponential delay
    ///   pareto:SCALE_MS:ALPHA    heavy-tailed delay (SCALE times a Pareto(ALPHA) draw)
    ///   markov:P01:P10:MS        bursts: a worker turns slow with probability P01 per
    ///                            iteration, recovers with P10, and sleeps MS while slow
    ///   fail:RANK@ITER           the rank stops answering from ITER on (stays alive)
    #[arg(long, value_name = "SPEC", verbatim_doc_comment)]
    pub straggler_model: Option<String>,
    /// Seed of everything random in the run (code matrix, injected delays, data order)
    /// [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder: results in OUT/run.h5, effective config in OUT/config.toml [default: results/run;
    /// results/matvec and results/matmul for those jobs].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing run folder's results.
    #[arg(long)]
    #[serde(default, skip_serializing)]
    pub force: bool,
    /// Workers N the run expects (checked against the MPI world: N = ranks − 1). Written into
    /// OUT/config.toml, so a re-run with another rank count says so [default: the world's].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Memory budget per rank in MB. A run whose buffers would not fit is refused at start-up,
    /// naming the bytes it needs [default: the memory available on the node].
    #[arg(long, value_name = "MB")]
    pub max_memory_mb: Option<f64>,
}

/// The checked shared settings of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobConfig {
    /// Workers n (world size − 1; 0 for the serial reference, and then not written).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workers: usize,
    pub deadline_ms: f64,
    pub max_wait_ms: f64,
    pub straggler_model: StragglerSpec,
    pub seed: u64,
    pub out: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<f64>,
    /// Operational, not a setting of the run: never written back.
    #[serde(skip)]
    pub force: bool,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl JobConfig {
    /// Merge `flags` over `file`, apply defaults (`default_out` for the run folder), check. With
    /// `workers` (the MPI world's), `--workers` and the straggler spec's ranks are checked
    /// against them.
    pub fn from_args(
        flags: &JobArgs,
        file: &JobArgs,
        default_out: &str,
        workers: Option<usize>,
    ) -> Result<JobConfig, ConfigError> {
        let spec_text = flags
            .straggler_model
            .clone()
            .or(file.straggler_model.clone())
            .unwrap_or_else(|| "none".into());
        if let (Some(n), Some(expect)) = (workers, flags.workers.or(file.workers)) {
            if expect != n {
                return Err(invalid(
                    "workers",
                    expect,
                    format!(
                        "but the MPI world has {n} workers (mpirun -np {}); launch with -np {} or drop `workers` from the config file",
                        n + 1,
                        expect + 1
                    ),
                ));
            }
        }
        let cfg = JobConfig {
            workers: workers.unwrap_or(0),
            deadline_ms: flags.deadline_ms.or(file.deadline_ms).unwrap_or(1000.0),
            max_wait_ms: flags.max_wait_ms.or(file.max_wait_ms).unwrap_or(30_000.0),
            straggler_model: StragglerSpec::parse(&spec_text)?,
            seed: flags.seed.or(file.seed).unwrap_or(1),
            out: flags
                .out
                .clone()
                .or(file.out.clone())
                .unwrap_or_else(|| PathBuf::from(default_out)),
            max_memory_mb: flags.max_memory_mb.or(file.max_memory_mb),
            force: flags.force || file.force,
        };
        cfg.check()?;
        if let Some(n) = workers {
            cfg.straggler_model.check_workers(n)?;
        }
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.deadline_ms.is_finite() && self.deadline_ms >= 0.0) {
            return Err(invalid(
                "deadline-ms",
                self.deadline_ms,
                "must be a finite number ≥ 0",
            ));
        }
        if !(self.max_wait_ms.is_finite() && self.max_wait_ms > 0.0) {
            return Err(invalid(
                "max-wait-ms",
                self.max_wait_ms,
                "must be a finite number > 0",
            ));
        }
        if self.max_wait_ms < self.deadline_ms {
            return Err(invalid(
                "max-wait-ms",
                self.max_wait_ms,
                format!("must be at least the deadline ({} ms)", self.deadline_ms),
            ));
        }
        if self.out.as_os_str().is_empty() {
            return Err(invalid("out", "''", "must name a run folder"));
        }
        if let Some(mb) = self.max_memory_mb {
            if !(mb.is_finite() && mb > 0.0) {
                return Err(invalid("max-memory-mb", mb, "must be a finite number > 0"));
            }
        }
        Ok(())
    }

    /// The deadline per round.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.deadline_ms / 1e3)
    }

    /// The bound on waiting for a decodable set.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(self.max_wait_ms / 1e3)
    }

    /// How long rank 0 waits for the workers' STOP acknowledgements (at least 10 s).
    pub fn shutdown_bound(&self) -> Duration {
        Duration::from_secs_f64((self.max_wait_ms / 1e3).max(10.0))
    }

    /// The seeded straggler schedule.
    pub fn schedule(&self) -> StragglerSchedule {
        self.straggler_model.schedule(self.seed)
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
    /// `OUT/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.out.join(CONFIG_FILE)
    }

    /// Checks of the run folder (rank 0 only, and the serial path: rank 0 creates these files,
    /// so other ranks would see another state). `resume`: a checkpoint must exist; otherwise an
    /// existing results file needs --force.
    pub fn check_output(&self, resume: bool) -> Result<(), ConfigError> {
        if self.out.is_file() {
            return Err(invalid(
                "out",
                self.out.display(),
                "is a file; --out names a run folder",
            ));
        }
        if resume {
            if !self.checkpoint_path().exists() && !self.previous_checkpoint_path().exists() {
                return Err(ConfigError::NoCheckpoint {
                    path: self.checkpoint_path(),
                });
            }
        } else if !self.force && self.results_path().exists() {
            return Err(ConfigError::OutputExists {
                path: self.results_path(),
            });
        }
        Ok(())
    }

    /// The memory budget of one rank.
    pub fn budget(&self) -> MemoryBudget {
        match self.max_memory_mb {
            Some(mb) => MemoryBudget {
                bytes: (mb * 1e6) as u128,
                source: format!(
                    "--max-memory-mb {mb} allows {}",
                    human_bytes((mb * 1e6) as u128)
                ),
            },
            None => MemoryBudget::available(),
        }
    }
}

/// How many bytes one rank may allocate, and where that figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryBudget {
    pub bytes: u128,
    pub source: String,
}

impl MemoryBudget {
    /// The memory available on this node (`MemAvailable` of /proc/meminfo); unbounded where it
    /// cannot be read.
    pub fn available() -> MemoryBudget {
        match mem_available(Path::new("/proc/meminfo")) {
            Some(b) => MemoryBudget {
                bytes: b,
                source: format!("the node has {} available", human_bytes(b)),
            },
            None => MemoryBudget {
                bytes: u128::MAX,
                source: "the available memory is unknown".into(),
            },
        }
    }

    /// Refuse `need` bytes (None: the size overflows) for `what` when they exceed the budget.
    pub fn check(&self, what: &str, need: Option<u128>, hint: &str) -> Result<(), ConfigError> {
        match need {
            Some(b) if b <= self.bytes => Ok(()),
            _ => Err(ConfigError::TooBig {
                what: what.to_string(),
                need: need.map_or_else(|| "more bytes than fit in 128 bits".into(), human_bytes),
                budget: self.source.clone(),
                hint: hint.to_string(),
            }),
        }
    }
}

fn mem_available(meminfo: &Path) -> Option<u128> {
    let text = std::fs::read_to_string(meminfo).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// An MPI job refuses to start in a binary without fault injection while the test-only fault
/// plan variable is set: a plan must never be silently ignored.
pub fn refuse_fault_plan() -> Result<(), ConfigError> {
    #[cfg(not(feature = "fault-injection"))]
    {
        const VAR: &str = "GRADCODE_FAULT_PLAN";
        if std::env::var(VAR).is_ok_and(|v| !v.trim().is_empty()) {
            return Err(ConfigError::FaultPlanUnsupported { var: VAR });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_in() {
        let file = JobArgs {
            deadline_ms: Some(250.0),
            seed: Some(9),
            straggler_model: Some("exp:5".into()),
            ..Default::default()
        };
        let flags = JobArgs {
            seed: Some(3),
            ..Default::default()
        };
        let c = JobConfig::from_args(&flags, &file, "results/x", Some(4)).unwrap();
        assert_eq!(c.deadline_ms, 250.0);
        assert_eq!(c.seed, 3);
        assert_eq!(c.max_wait_ms, 30_000.0);
        assert_eq!(c.out, PathBuf::from("results/x"));
        assert_eq!(c.straggler_model.as_str(), "exp:5");
        let e = JobConfig::from_args(
            &JobArgs {
                straggler_model: Some("fixed:7:10".into()),
                ..Default::default()
            },
            &JobArgs::default(),
            "r",
            Some(4),
        )
        .unwrap_err();
        assert!(e.to_string().contains("(1..=4)"), "{e}");
        let e = JobConfig::from_args(
            &JobArgs {
                max_memory_mb: Some(-1.0),
                ..Default::default()
            },
            &JobArgs::default(),
            "r",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--max-memory-mb"), "{e}");
    }

    #[test]
    fn the_budget_names_the_bytes() {
        let b = MemoryBudget {
            bytes: 1_000_000,
            source: "--max-memory-mb 1 allows 1.0 MB".into(),
        };
        assert!(b.check("x", Some(999_999), "h").is_ok());
        let e = b
            .check("rank 0", Some(16_000_000_008), "lower it")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rank 0 needs 16.0 GB but --max-memory-mb 1 allows 1.0 MB; lower it"
        );
        assert!(b
            .check("x", None, "h")
            .unwrap_err()
            .to_string()
            .contains("128 bits"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meminfo");
        std::fs::write(&p, "MemTotal: 100 kB\nMemAvailable:   2048 kB\n").unwrap();
        assert_eq!(mem_available(&p), Some(2048 * 1024));
    }
}
