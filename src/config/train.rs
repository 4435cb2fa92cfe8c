//! The checked configuration of `gradcode train`.
//!
//! [`RunConfig::from_args`] merges a TOML file (`--config`) with command-line flags (flags win),
//! applies defaults, and checks every setting once, identically on every rank, before any MPI
//! traffic: a bad setting is refused on all ranks with the same message. The effective config is
//! written back as TOML in the keys of the flags (into the run folder and the result file), so it
//! re-runs the same job; a hash of the settings that shape the trajectory guards checkpoints
//! against resuming under another configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{invalid, read_settings, ConfigError, JobArgs, JobConfig};
use crate::coding::{CodeKind, CodeOptions, DecoderKind, TrainCode};
use crate::comm::OnDeadline;
use crate::compress::Compressor;
use crate::model::ModelKind;
use crate::optim::{MomentumSchedule, OptimizerKind, OptimizerSpec};

/// Arguments of `gradcode train`. Every setting may also come from `--config FILE.toml` (the long
/// flag names as keys, dashes or underscores); flags given on the command line override the file.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub job: JobArgs,
    /// HDF5 dataset (see `gradcode data convert`).
    #[arg(long, value_name = "FILE.h5")]
    pub data: Option<PathBuf>,
    /// Model: logistic (binary labels ±1 or 0/1; log-loss), linear (least squares, per-row loss
    /// ½(xᵀw + b − y)², so the objective is ½·MSE plus the L2 term), softmax (classes 0..C−1;
    /// cross-entropy). Every model has an intercept per output, stored last in each output's
    /// block of `/model/w_final` (d weights, then the intercept; see --no-intercept)
    /// [default: logistic].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Code [default: cyclic-mds]. The mds-* codes train through two coded mat-vecs per step
    /// (linear and logistic only).
    #[arg(long, value_enum)]
    pub code: Option<TrainCode>,
    /// Stragglers s the code tolerates (mds-*: any k = N − s workers decode) [default: 1;
    /// uncoded: 0].
    #[arg(short = 's', long)]
    pub stragglers: Option<usize>,
    /// Replication d of the approximate codes: graph degree (expander; n·d even, d < n),
    /// expected partitions per worker (bgc), group size (frc-approx; d | n), workers per
    /// partition (stochastic) [default: s + 1].
    #[arg(long, value_name = "D")]
    pub degree: Option<usize>,
    /// Decoder of the approximate codes: optimal (least squares, cached per responder set) or
    /// one-step (one common weight, n/(n − s) for expander) [default: optimal; stochastic: one-step].
    #[arg(long, value_enum)]
    pub decoder: Option<DecoderKind>,
    /// Straggle probability p of the stochastic code; its one-step decoder scales every message
    /// by 1/(d(1 − p)), unbiased when workers straggle independently with probability p [default: s/n].
    #[arg(long, value_name = "P")]
    pub straggle_prob: Option<f64>,
    /// Pieces m of the comm-efficient code (Ye & Abbe): each worker holds s + m partitions and
    /// sends ⌈dim/m⌉ values instead of dim, so rank 0 receives m times fewer bytes;
    /// 1 ≤ m ≤ n − s [default: 2, or 1 when n − s = 1].
    #[arg(long, value_name = "M")]
    pub split: Option<usize>,
    /// Policy when the deadline passes without a decodable set: wait (at most --max-wait-ms) or
    /// best-effort (decode least-squares optimally from what arrived) [default: wait].
    #[arg(long, value_enum)]
    pub on_deadline: Option<OnDeadline>,
    /// Iterations to run [default: 100].
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Learning rate (step size) [default: 0.5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// L2 regularization λ: the objective is the mean loss over the training rows plus
    /// (λ/2)‖w‖² on the weights, not the intercepts [default: 1e-4].
    #[arg(long)]
    pub l2: Option<f64>,
    /// Train without intercepts: the bias entry of every output stays 0 (it is still stored, last
    /// in each output's block of `/model/w_final`).
    #[arg(long)]
    #[serde(default)]
    pub no_intercept: bool,
    /// Optimizer: gd (gradient descent) or nesterov (accelerated, gradient at the look-ahead
    /// point) [default: gd].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Momentum μ of nesterov, in [0, 1) [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Momentum schedule of nesterov: constant (--momentum) or nesterov-t ((t − 1)/(t + 2) at
    /// step t) [default: constant].
    #[arg(long, value_enum)]
    pub momentum_schedule: Option<MomentumSchedule>,
    /// Stop with status `diverged` (exit 1) when the training objective is not finite or exceeds
    /// this factor times its first value [default: 1e6].
    #[arg(long, value_name = "X")]
    pub divergence_factor: Option<f64>,
    /// Write OUT/ckpt.h5 every K iterations (0: never) [default: 0].
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<u64>,
    /// Continue from OUT/ckpt.h5 (the config must match the one that wrote it).
    #[arg(long)]
    #[serde(default, skip_serializing)]
    pub resume: bool,
    /// Evaluate test loss, accuracy and (binary logistic) ROC AUC every K iterations and after
    /// the last (0: only after the last) [default: 10].
    #[arg(long, value_name = "K")]
    pub eval_every: Option<u64>,
    /// Print a progress line every K iterations [default: 10].
    #[arg(long, value_name = "K")]
    pub log_every: Option<u64>,
    /// Every K iterations also gather the uncoded partition gradients (outside the timed path)
    /// and record the true relative error ‖ĝ − g‖/‖g‖ of the decoded gradient (0: only the
    /// first iteration) [default: 0].
    #[arg(long, value_name = "K")]
    pub check_gradient_every: Option<u64>,
    /// Partial work: each worker processes its partitions in C chunks and sends each chunk's
    /// coded result as soon as it is done, so rank 0 can use the finished part of a slow
    /// worker's work [default: 1].
    #[arg(long, value_name = "C")]
    pub chunks: Option<usize>,
    /// Compress every coded message at its sender (rank 0 decompresses before decoding):
    /// none; qsgd:LEVELS (stochastic quantization to LEVELS levels, unbiased); topk:FRACTION
    /// (the largest FRACTION of the entries, as index/value pairs); sign (one bit per entry and
    /// the mean magnitude); lowrank:RANK (matrix parameters of neural networks only). Biased
    /// compressors (topk, sign) want --error-feedback [default: none].
    #[arg(long, value_name = "SPEC")]
    pub compress: Option<Compressor>,
    /// Error feedback at each worker: send C(c + e), keep e ← c + e − C(c + e) per coded message;
    /// a message the worker skips leaves e for the next one it sends. Needs --compress.
    #[arg(long)]
    #[serde(default)]
    pub error_feedback: bool,
    /// Fold a coded gradient that arrives one iteration late into the current decode in place of
    /// its worker's missing fresh one (SAG-style stale reuse), rather than drop it; older ones
    /// are still dropped. A fresh message from the same worker replaces it. Recorded per
    /// iteration (`/metrics/stale`) and per worker (`/timing/stale_age`: 0 fresh, 1 stale).
    /// Needs `--chunks 1`; not on the first (validated) iteration.
    #[arg(long)]
    #[serde(default)]
    pub reuse_stale: bool,
    /// Run the serial reference path on one process instead of the MPI job.
    #[arg(long)]
    #[serde(default)]
    pub reference: bool,
}

/// Every setting of a training run, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunConfig {
    pub data: PathBuf,
    pub model: ModelKind,
    /// The code (`reference` for the serial path, which uses none).
    pub code: TrainCode,
    pub stragglers: usize,
    #[serde(flatten)]
    pub job: JobConfig,
    pub on_deadline: OnDeadline,
    pub iterations: u64,
    pub lr: f64,
    pub l2: f64,
    /// Whether the model has intercepts (`--no-intercept` clears it).
    #[serde(skip)]
    pub intercept: bool,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub momentum_schedule: MomentumSchedule,
    pub divergence_factor: f64,
    pub checkpoint_every: u64,
    pub eval_every: u64,
    pub log_every: u64,
    /// Chunks per worker and iteration (partial work); 1 = one message per iteration.
    pub chunks: usize,
    /// Check the decoded gradient against the exact one every K iterations (0: first only).
    pub check_gradient_every: u64,
    /// Degree d of approximate codes (None: the code's default, s + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degree: Option<usize>,
    /// Decoder of approximate codes (None: the code's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder: Option<DecoderKind>,
    /// Straggle probability p of the stochastic code (None: s / n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straggle_prob: Option<f64>,
    /// Pieces m of the comm-efficient code (None: its default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<usize>,
    /// Fold gradients one iteration late into the current decode (`--reuse-stale`).
    pub reuse_stale: bool,
    /// Compressor of the coded messages (`--compress`).
    #[serde(default, skip_serializing_if = "Compressor::is_none")]
    pub compress: Compressor,
    /// Error feedback on the compressed messages (`--error-feedback`).
    #[serde(default)]
    pub error_feedback: bool,
    /// Continue from the checkpoint (operational: never written back).
    #[serde(skip)]
    pub resume: bool,
    pub reference: bool,
    /// `no-intercept` as written back (the negation of `intercept`).
    no_intercept: bool,
}

impl RunConfig {
    /// Merge `--config` and flags, apply defaults, and check everything for an MPI world of
    /// `world` ranks (ignored by the serial reference).
    pub fn from_args(args: &TrainArgs, world: usize) -> Result<RunConfig, ConfigError> {
        let file = match &args.job.config {
            Some(path) => read_settings::<TrainArgs>(path)?,
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
            return Err(ConfigError::WorldTooSmall {
                job: "train",
                world,
                hint: ", or pass --reference for the serial path",
            });
        }
        let code = pick!(code, TrainCode::Gradient(CodeKind::CyclicMds));
        let default_s = usize::from(code != TrainCode::Gradient(CodeKind::Uncoded));
        let no_intercept = args.no_intercept || file.no_intercept;
        let cfg = RunConfig {
            data: args
                .data
                .clone()
                .or(file.data.clone())
                .ok_or(ConfigError::Missing("data"))?,
            model: pick!(model, ModelKind::Logistic),
            code,
            stragglers: if reference {
                0
            } else {
                pick!(stragglers, default_s)
            },
            job: JobConfig::from_args(
                &args.job,
                &file.job,
                "results/run",
                (!reference).then_some(workers),
            )?,
            on_deadline: pick!(on_deadline, OnDeadline::Wait),
            iterations: pick!(iterations, 100),
            lr: pick!(lr, 0.5),
            l2: pick!(l2, 1e-4),
            intercept: !no_intercept,
            optimizer: pick!(optimizer, OptimizerKind::Gd),
            momentum: pick!(momentum, 0.9),
            momentum_schedule: pick!(momentum_schedule, MomentumSchedule::Constant),
            divergence_factor: pick!(divergence_factor, 1e6),
            checkpoint_every: pick!(checkpoint_every, 0),
            eval_every: pick!(eval_every, 10),
            log_every: pick!(log_every, 10),
            chunks: pick!(chunks, 1),
            check_gradient_every: pick!(check_gradient_every, 0),
            degree: args.degree.or(file.degree),
            decoder: args.decoder.or(file.decoder),
            straggle_prob: args.straggle_prob.or(file.straggle_prob),
            split: args.split.or(file.split),
            reuse_stale: args.reuse_stale || file.reuse_stale,
            compress: args.compress.or(file.compress).unwrap_or_default(),
            error_feedback: args.error_feedback || file.error_feedback,
            resume: args.resume || file.resume,
            reference,
            no_intercept,
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
        finite_pos("deadline-ms", self.job.deadline_ms)?;
        finite_pos("lr", self.lr)?;
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(invalid("l2", self.l2, "must be a finite number >= 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid("momentum", self.momentum, "must be in [0, 1)"));
        }
        if !(self.divergence_factor.is_finite() && self.divergence_factor > 1.0) {
            return Err(invalid(
                "divergence-factor",
                self.divergence_factor,
                "must be a finite number > 1",
            ));
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
            self.check_code()?;
        }
        Ok(())
    }

    /// Checks of the code against the world and the other settings.
    fn check_code(&self) -> Result<(), ConfigError> {
        if self.stragglers >= self.workers() {
            return Err(invalid(
                "stragglers",
                self.stragglers,
                format!(
                    "must be smaller than the number of workers n = {} (world size {} = 1 coordinator + {} workers)",
                    self.workers(),
                    self.workers() + 1,
                    self.workers()
                ),
            ));
        }
        if let TrainCode::MatVec(_) = self.code {
            let refuse = |name: &'static str, value: String| {
                Err(invalid(
                    name,
                    value,
                    "is not available with the mds-* codes (coded training through mat-vecs decodes each mat-vec exactly from any N − s workers, one message per worker)",
                ))
            };
            if !matches!(self.model, ModelKind::Linear | ModelKind::Logistic) {
                return Err(invalid(
                    "model",
                    self.model.name(),
                    "coded training through mat-vecs (mds-* codes) supports linear and logistic",
                ));
            }
            if self.chunks > 1 {
                return refuse("chunks", self.chunks.to_string());
            }
            if self.reuse_stale {
                return refuse("reuse-stale", "true".into());
            }
            if self.on_deadline == OnDeadline::BestEffort {
                return refuse("on-deadline", "best-effort".into());
            }
            if self.degree.is_some() || self.decoder.is_some() || self.straggle_prob.is_some() {
                return refuse("degree/decoder/straggle-prob", "set".into());
            }
            if let Some(m) = self.split {
                return refuse("split", m.to_string());
            }
            if !self.compress.is_none() {
                return refuse("compress", self.compress.to_string());
            }
        }
        self.check_compression()
    }

    /// `--compress` and `--error-feedback` against each other and the model.
    fn check_compression(&self) -> Result<(), ConfigError> {
        if self.error_feedback && self.compress.is_none() {
            return Err(invalid(
                "error-feedback",
                "true",
                "needs a compressor: add --compress qsgd:LEVELS, topk:FRACTION or sign",
            ));
        }
        if let Some(omega) = self.compress.variance_bound().filter(|&w| w >= 1.0) {
            if self.error_feedback {
                return Err(invalid(
                    "error-feedback",
                    "true",
                    format!(
                        "feeding back the error of --compress {} is unstable: its error bound E‖C(x) − x‖² ≤ ω‖x‖² has ω = min(B/s², √B/s) = {omega:.3} ≥ 1, so the residual grows; use more levels or smaller buckets (ω < 1), or no error feedback (QSGD is unbiased without it)",
                        self.compress
                    ),
                ));
            }
        }
        if let Compressor::LowRank { .. } = self.compress {
            if !self.model.has_matrix_parameters() {
                return Err(invalid(
                    "compress",
                    self.compress,
                    format!(
                        "--compress lowrank on a GLM ({}): low-rank compression factors the matrix parameters of neural-network models, and this model has one parameter vector; use qsgd:LEVELS, topk:FRACTION or sign",
                        self.model.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The optimizer's settings.
    pub fn optimizer_spec(&self) -> OptimizerSpec {
        OptimizerSpec {
            kind: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            schedule: self.momentum_schedule,
        }
    }

    /// Workers n (0 for the serial reference).
    pub fn workers(&self) -> usize {
        self.job.workers
    }

    /// Options of the code (degree, decoder, straggle probability).
    pub fn code_options(&self) -> CodeOptions {
        CodeOptions {
            degree: self.degree,
            decoder: self.decoder,
            straggle_prob: self.straggle_prob,
            split: self.split,
        }
    }

    /// The code's name as recorded: `reference` for the serial path.
    pub fn code_name(&self) -> String {
        if self.reference {
            "reference".into()
        } else {
            self.code.name().into()
        }
    }

    /// Keys that mean nothing to the serial reference (it has no workers, code or deadline).
    const NOT_REFERENCE: &'static [&'static str] = &[
        "code",
        "stragglers",
        "workers",
        "deadline-ms",
        "max-wait-ms",
        "straggler-model",
        "on-deadline",
        "chunks",
        "check-gradient-every",
        "reuse-stale",
        "degree",
        "decoder",
        "straggle-prob",
        "split",
        "compress",
        "error-feedback",
    ];

    /// The effective settings in the keys of the flags (the serial reference's own: without the
    /// settings it does not use).
    pub fn settings(&self) -> toml::Table {
        let mut t = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        if self.reference {
            t.retain(|k, _| !Self::NOT_REFERENCE.contains(&k));
        }
        t
    }

    /// The effective config as TOML, in the keys of the flags: `--config` of this file re-runs
    /// the job.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(&self.settings())
            .unwrap_or_else(|e| format!("# could not serialize config: {e}\n"));
        format!(
            "# gradcode {} effective config: `gradcode train --config THIS_FILE` re-runs it.\n{body}",
            crate::VERSION
        )
    }

    /// SHA-256 over the settings that shape the trajectory (not iterations, output or logging),
    /// so that a checkpoint refuses to resume under another configuration.
    pub fn trajectory_hash(&self) -> String {
        let j = &self.job;
        let key = format!(
            "data={}\nmodel={}\ncode={}\ns={}\nn={}\ndeadline_ms={:?}\non_deadline={:?}\nlr={:?}\nl2={:?}\noptimizer={:?}\nmomentum={:?}\nstragglers={}\nseed={}\nchunks={}\n",
            self.data.display(),
            self.model.name(),
            self.code.name(),
            self.stragglers,
            j.workers,
            j.deadline_ms,
            self.on_deadline,
            self.lr,
            self.l2,
            self.optimizer,
            self.momentum,
            j.straggler_model,
            j.seed,
            self.chunks
        ) + &format!("degree={:?}\ndecoder={:?}\nstraggle_prob={:?}\n", self.degree, self.decoder, self.straggle_prob)
            // Only when set, so the hashes of runs without them are unchanged.
            + &self.split.map_or(String::new(), |m| format!("split={m}\n"))
            + if self.reuse_stale { "reuse_stale=true\n" } else { "" }
            + &(if self.compress.is_none() { String::new() } else { format!("compress={}\n", self.compress) })
            + if self.error_feedback { "error_feedback=true\n" } else { "" }
            + if self.intercept { "" } else { "no_intercept=true\n" }
            + match self.momentum_schedule {
                MomentumSchedule::Constant => "",
                MomentumSchedule::NesterovT => "momentum_schedule=nesterov-t\n",
            };
        let digest = Sha256::digest(key.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobArgs;

    fn args() -> TrainArgs {
        TrainArgs {
            data: Some("d.h5".into()),
            job: JobArgs {
                out: Some(std::env::temp_dir().join("gradcode-config-test-none")),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn defaults_apply_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "data = \"x.h5\"\ncode = \"frc\"\nstragglers = 2\nlr = 0.1\ndeadline_ms = 250\n",
        )
        .unwrap();
        let a = TrainArgs {
            job: JobArgs {
                config: Some(f),
                out: Some(dir.path().join("run")),
                ..Default::default()
            },
            lr: Some(0.3),
            ..Default::default()
        };
        let c = RunConfig::from_args(&a, 7).unwrap();
        assert_eq!(c.data, PathBuf::from("x.h5"));
        assert_eq!(c.code, TrainCode::Gradient(CodeKind::Frc));
        assert_eq!(c.stragglers, 2);
        assert_eq!(c.lr, 0.3);
        assert_eq!(c.job.deadline_ms, 250.0);
        assert_eq!(c.workers(), 6);
        assert_eq!(c.iterations, 100);
    }

    #[test]
    fn the_written_config_reads_back_to_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        for extra in [
            TrainArgs::default(),
            TrainArgs {
                code: Some("mds-rotation".parse().unwrap()),
                no_intercept: true,
                momentum_schedule: Some(MomentumSchedule::NesterovT),
                ..Default::default()
            },
            TrainArgs {
                code: Some(TrainCode::Gradient(CodeKind::Expander)),
                degree: Some(3),
                reuse_stale: true,
                job: JobArgs {
                    straggler_model: Some("exp:5+fail:2@3".into()),
                    max_memory_mb: Some(512.0),
                    ..Default::default()
                },
                ..Default::default()
            },
            TrainArgs {
                reference: true,
                ..Default::default()
            },
            TrainArgs {
                code: Some(TrainCode::Gradient(CodeKind::CommEfficient)),
                split: Some(3),
                compress: Some("topk:0.05".parse().unwrap()),
                error_feedback: true,
                ..Default::default()
            },
        ] {
            let mut a = args();
            a.code = extra.code;
            a.no_intercept = extra.no_intercept;
            a.momentum_schedule = extra.momentum_schedule;
            a.degree = extra.degree;
            a.reuse_stale = extra.reuse_stale;
            a.reference = extra.reference;
            a.split = extra.split;
            a.compress = extra.compress;
            a.error_feedback = extra.error_feedback;
            a.job.straggler_model = extra.job.straggler_model.clone();
            a.job.max_memory_mb = extra.job.max_memory_mb;
            let c = RunConfig::from_args(&a, 9).unwrap();
            let f = dir.path().join("config.toml");
            std::fs::write(&f, c.to_toml()).unwrap();
            let again = RunConfig::from_args(
                &TrainArgs {
                    job: JobArgs {
                        config: Some(f),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                9,
            )
            .unwrap();
            assert_eq!(again, c, "{}", c.to_toml());
            assert_eq!(again.trajectory_hash(), c.trajectory_hash());
        }
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
                    job: JobArgs {
                        deadline_ms: Some(0.0),
                        ..args().job
                    },
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
                    job: JobArgs {
                        straggler_model: Some("fixed:7:10".into()),
                        ..args().job
                    },
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
            (
                TrainArgs {
                    job: JobArgs {
                        workers: Some(8),
                        ..args().job
                    },
                    ..args()
                },
                4,
                "--workers = 8",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    model: Some(ModelKind::Softmax),
                    ..args()
                },
                4,
                "--model = softmax",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    on_deadline: Some(OnDeadline::BestEffort),
                    ..args()
                },
                4,
                "--on-deadline",
            ),
            (args(), 1, "mpirun -np N+1"),
            (
                TrainArgs {
                    error_feedback: true,
                    ..args()
                },
                4,
                "--error-feedback = true: needs a compressor",
            ),
            (
                TrainArgs {
                    compress: Some("qsgd:4".parse().unwrap()),
                    error_feedback: true,
                    ..args()
                },
                4,
                "ω = min(B/s², √B/s) = 5.657 ≥ 1",
            ),
            (
                TrainArgs {
                    compress: Some("lowrank:4".parse().unwrap()),
                    ..args()
                },
                4,
                "--compress = lowrank:4: --compress lowrank on a GLM (logistic)",
            ),
            (
                TrainArgs {
                    code: Some("mds-rotation".parse().unwrap()),
                    compress: Some("sign".parse().unwrap()),
                    ..args()
                },
                4,
                "--compress = sign: is not available with the mds-* codes",
            ),
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
        let e = resume.job.check_output(true).unwrap_err().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "data = \"x.h5\"\nlearning-rate = 0.1\n").unwrap();
        let a = TrainArgs {
            job: JobArgs {
                config: Some(f),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = RunConfig::from_args(&a, 4).unwrap_err().to_string();
        assert!(
            e.contains("learning-rate") && e.contains("deadline-ms"),
            "{e}"
        );
    }

    #[test]
    fn uncoded_defaults_to_no_stragglers() {
        let c = RunConfig::from_args(
            &TrainArgs {
                code: Some(TrainCode::Gradient(CodeKind::Uncoded)),
                ..args()
            },
            4,
        )
        .unwrap();
        assert_eq!(c.stragglers, 0);
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
