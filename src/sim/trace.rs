//! Replay of recorded per-worker compute and delay distributions from results files.
//!
//! From each `run.h5` ([`TraceFile::read`]), per worker and iteration: the compute seconds it
//! reported (`/timing/compute_s`, or its late message in `/late` when it missed the iteration),
//! divided by the share of the data it held under the run's code (rebuilt from `/config`), so
//! that a simulated code that gives it twice the rows gives it twice the compute; the delay the
//! straggler model drew (`/stragglers/planned_s`: every draw, unbiased by who answered; files
//! without it fall back to `/stragglers/injected_s`, which only on-time workers have); and the
//! busy-spin factor of a `slow:` worker (its injected time beyond the planned delay, over its
//! compute). A worker's unknown compute or factor in some iteration takes its median. The first
//! iteration is left out (warm-up and the gradient check). Also the round trips and rank 0's
//! step and gap times the link fit needs ([`super::link`]).
//!
//! Several files concatenate per worker. Simulating more workers than a trace has is refused,
//! unless `--pool-workers` makes every simulated worker draw from all recorded workers' samples
//! together. Infinite delays (a failed worker) replay as a failure: that worker answers nothing
//! from then on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::link::LinkSample;
use super::SimError;
use crate::coding::{self, CodeOptions, TrainCode};
use crate::comm::protocol::HEADER_LEN;
use crate::config::TrainArgs;
use crate::io::metrics::{percentile, RecordedRows, WorkerMetric};
use crate::io::results::{self, Metric};

/// How replayed samples are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayOrder {
    /// Each (iteration, worker) draws one of that worker's recorded iterations, uniformly and
    /// seeded: the distribution, not the sequence.
    #[default]
    Sample,
    /// Simulated iteration t replays recorded iteration t of each worker (wrapping around): the
    /// sequence, bursts and failures at their iteration included.
    Sequential,
}

/// One recorded iteration of one worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Compute seconds per unit share of the data (compute / fraction of the rows held).
    pub compute_per_share_s: f64,
    /// Busy-spin factor of a `slow:` worker (1: none).
    pub slow_factor: f64,
    /// Delay drawn after computing (inf: the worker failed).
    pub delay_s: f64,
}

/// What one results file gives the simulator.
#[derive(Debug, Clone)]
pub struct TraceFile {
    pub path: PathBuf,
    /// Per worker, its samples in iteration order.
    pub workers: Vec<Vec<Sample>>,
    /// Round trips of on-time messages.
    pub link: Vec<LinkSample>,
    /// Rank 0's time from the last on-time arrival to the step, per iteration.
    pub step_s: Vec<f64>,
    /// Rank 0's time between iterations (training clock increase minus wall time).
    pub gap_s: Vec<f64>,
    /// Parameters of the run's model (from `/model/w_final`), when the file has them.
    pub dim: Option<usize>,
    /// The recorded run's settings (its `/config`), when read from a file.
    pub recorded: Option<Box<TrainArgs>>,
}

impl TraceFile {
    /// A trace of per-worker `workers` samples alone (no link, rank-0 times, model or
    /// recorded settings), named `path`.
    pub fn of_samples(path: &str, workers: Vec<Vec<Sample>>) -> TraceFile {
        TraceFile {
            path: path.into(),
            workers,
            link: Vec::new(),
            step_s: Vec::new(),
            gap_s: Vec::new(),
            dim: None,
            recorded: None,
        }
    }

    /// Read `path` (a results file or a run folder holding `run.h5`).
    pub fn read(path: &Path) -> Result<TraceFile, SimError> {
        let path = if path.is_dir() {
            path.join(crate::config::RESULTS_FILE)
        } else {
            path.to_path_buf()
        };
        let bad = |reason: String| SimError::Trace {
            path: path.clone(),
            reason,
        };
        let rows = results::read_rows(&path, None).map_err(|e| match e {
            crate::io::IoError::Layout { .. } => {
                bad("not a gradcode results file (no /metrics)".into())
            }
            other => SimError::Io(other),
        })?;
        let toml = results::read_str_attr(&path, "config", "toml")
            .map_err(|_| bad("has no /config toml: its code cannot be known".into()))?;
        let args: TrainArgs = toml::from_str(&toml)
            .map_err(|e| bad(format!("its /config toml does not parse ({e})")))?;
        let shares = shares_of(&args).map_err(&bad)?;
        let dim = results::read_vector(&path, "model/w_final")
            .ok()
            .map(|w| w.len());
        let chunks = args.chunks.unwrap_or(1).max(1);
        let mut file = TraceFile::from_rows(&path, &rows, &shares, chunks, dim)?;
        file.recorded = Some(Box::new(args));
        Ok(file)
    }

    /// The trace of `rows`, recorded with `chunks` parts per worker and iteration and the data
    /// shares `shares` per worker; `dim` sizes the messages of the link samples (none without).
    pub fn from_rows(
        path: &Path,
        rows: &RecordedRows,
        shares: &[f64],
        chunks: usize,
        dim: Option<usize>,
    ) -> Result<TraceFile, SimError> {
        let bad = |reason: String| SimError::Trace {
            path: path.to_path_buf(),
            reason,
        };
        let n = rows.workers();
        if n == 0 || !rows.has(WorkerMetric::ComputeS) {
            return Err(bad(
                "has no per-worker timing (/timing/compute_s): a serial reference or a file \
                 written before per-worker timing"
                    .into(),
            ));
        }
        if !rows.has(WorkerMetric::PlannedS) && !rows.has(WorkerMetric::InjectedS) {
            return Err(bad(
                "has no per-worker delays (/stragglers/planned_s or /stragglers/injected_s)".into(),
            ));
        }
        if shares.len() != n {
            return Err(bad(format!(
                "its /config describes {} workers but its timing has {n}",
                shares.len()
            )));
        }
        let first = usize::from(rows.len() > 1);
        if rows.len() <= first {
            return Err(bad("has no complete iteration to replay".into()));
        }
        // A `--decode-tree` run's members never report their compute to rank 0 (their leader
        // forwards under its own header): they are given the others' median per share.
        let per_share = median(shares.iter().enumerate().flat_map(|(w, &share)| {
            (first..rows.len()).map(move |t| cell(rows, WorkerMetric::ComputeS, t, w) / share)
        }));
        let mut workers = Vec::with_capacity(n);
        for (w, &share) in shares.iter().enumerate() {
            let others = per_share * share;
            workers.push(worker_samples(rows, w, share, chunks, first, others).map_err(&bad)?);
        }
        Ok(TraceFile {
            path: path.to_path_buf(),
            workers,
            link: link_samples(rows, chunks, dim, first),
            step_s: step_samples(rows, chunks, first),
            gap_s: gap_samples(rows, first),
            dim,
            recorded: None,
        })
    }
}

/// The share of the data (rows held / all rows) of each worker under the run's code.
fn shares_of(args: &TrainArgs) -> Result<Vec<f64>, String> {
    if args.reference {
        return Err("is a serial reference run (no workers)".into());
    }
    let kind = match args.code {
        Some(TrainCode::Gradient(k)) => k,
        Some(c @ TrainCode::MatVec(_)) => {
            return Err(format!(
                "ran {c} (coded mat-vecs, two phases per step); only gradient-code runs replay"
            ))
        }
        None => return Err("its /config names no code".into()),
    };
    let n = args
        .job
        .workers
        .ok_or("its /config names no worker count")?;
    let s = args.stragglers.unwrap_or(0);
    let opts = CodeOptions {
        degree: args.degree,
        decoder: args.decoder,
        straggle_prob: args.straggle_prob,
        split: args.split,
        speeds: args.worker_speeds.as_ref().map(|v| v.0.clone()),
    };
    let seed = args.job.seed.unwrap_or(1);
    // A tree run's workers held the two-level code's partitions ((s + 1)² of them at s).
    let code: Box<dyn coding::GradientCode> = match args.decode_tree {
        Some(g) => Box::new(coding::TreeCode::new(kind, n, g, s, s, seed).map_err(|e| {
            format!("its two-level code (--decode-tree {g}) cannot be rebuilt ({e})")
        })?),
        None => coding::build_with(kind, n, s, seed, &opts)
            .map_err(|e| format!("its code cannot be rebuilt ({e})"))?,
    };
    let k = code.n_partitions() as f64;
    Ok((0..n)
        .map(|w| code.assignment(w).len() as f64 / k)
        .collect())
}

/// Column `m` of worker `w`, NaN where the file lacks it.
fn cell(rows: &RecordedRows, m: WorkerMetric, t: usize, w: usize) -> f64 {
    if rows.has(m) {
        rows.worker(m)[[t, w]]
    } else {
        f64::NAN
    }
}

/// Median of the finite values (NaN when none).
fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut s: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

fn worker_samples(
    rows: &RecordedRows,
    w: usize,
    share: f64,
    chunks: usize,
    first: usize,
    others: f64,
) -> Result<Vec<Sample>, String> {
    let rank = w + 1;
    let late_compute = |t: usize| {
        rows.late
            .iter()
            .find(|l| l.iteration == t as u64 && l.rank == rank && chunks == 1)
            .map_or(f64::NAN, |l| l.compute_s)
    };
    // (compute, factor, delay) per iteration, NaN where unknown.
    let raw: Vec<(f64, f64, f64)> = (first..rows.len())
        .map(|t| {
            let planned = cell(rows, WorkerMetric::PlannedS, t, w);
            let injected = cell(rows, WorkerMetric::InjectedS, t, w);
            let complete = cell(rows, WorkerMetric::Chunks, t, w) >= chunks as f64
                || !rows.has(WorkerMetric::Chunks);
            let own = cell(rows, WorkerMetric::ComputeS, t, w);
            let compute = if complete && own.is_finite() {
                own
            } else {
                late_compute(t)
            };
            let delay = if planned.is_nan() { injected } else { planned };
            let factor = if complete && compute > 0.0 && injected.is_finite() && planned.is_finite()
            {
                1.0 + (injected - planned).max(0.0) / compute
            } else {
                f64::NAN
            };
            (compute, factor, delay)
        })
        .collect();
    let mut compute_med = median(raw.iter().map(|r| r.0));
    if compute_med.is_nan() {
        compute_med = others;
    }
    if compute_med.is_nan() {
        return Err(format!("worker rank {rank} has no recorded compute time"));
    }
    let factor_med = median(raw.iter().map(|r| r.1));
    let factor_med = if factor_med.is_nan() { 1.0 } else { factor_med };
    Ok(raw
        .into_iter()
        .filter(|r| !r.2.is_nan())
        .map(|(c, f, d)| Sample {
            compute_per_share_s: if c.is_finite() { c } else { compute_med } / share.max(1e-300),
            slow_factor: if f.is_finite() { f } else { factor_med },
            delay_s: d,
        })
        .collect())
}

fn link_samples(
    rows: &RecordedRows,
    chunks: usize,
    dim: Option<usize>,
    first: usize,
) -> Vec<LinkSample> {
    let Some(dim) = dim else {
        return Vec::new();
    };
    if !rows.has(WorkerMetric::ArrivalS) {
        return Vec::new();
    }
    // The parameters and one chunk of the result (the worker's last message).
    let bytes = ((2 * HEADER_LEN + dim + dim.div_ceil(chunks.max(1)) + 1) * 8) as f64;
    let mut out = Vec::new();
    for t in first..rows.len() {
        for w in 0..rows.workers() {
            if cell(rows, WorkerMetric::Chunks, t, w) < chunks as f64 {
                continue;
            }
            let rt = cell(rows, WorkerMetric::ArrivalS, t, w)
                - cell(rows, WorkerMetric::ComputeS, t, w)
                - cell(rows, WorkerMetric::InjectedS, t, w);
            if rt.is_finite() {
                out.push(LinkSample {
                    bytes,
                    messages: chunks as f64,
                    round_trip_s: rt.max(0.0),
                });
            }
        }
    }
    out
}

fn step_samples(rows: &RecordedRows, chunks: usize, first: usize) -> Vec<f64> {
    let wall = rows.column(Metric::WallS);
    (first..rows.len())
        .filter_map(|t| {
            let last = (0..rows.workers())
                .filter(|&w| cell(rows, WorkerMetric::Chunks, t, w) >= chunks as f64)
                .map(|w| cell(rows, WorkerMetric::ArrivalS, t, w))
                .filter(|a| a.is_finite())
                .fold(f64::NAN, f64::max);
            let step = wall[t] - last;
            step.is_finite().then_some(step.max(0.0))
        })
        .collect()
}

fn gap_samples(rows: &RecordedRows, first: usize) -> Vec<f64> {
    let wall = rows.column(Metric::WallS);
    let elapsed = rows.column(Metric::ElapsedS);
    (first.max(1)..rows.len())
        .map(|t| elapsed[t] - elapsed[t - 1] - wall[t])
        .filter(|g| g.is_finite())
        .map(|g| g.max(0.0))
        .collect()
}

/// Recorded samples to draw from, per simulated worker.
#[derive(Debug, Clone)]
pub struct Trace {
    workers: Vec<Vec<Sample>>,
    pooled: bool,
    order: ReplayOrder,
    seed: u64,
}

/// Stream of the replay's draws (the straggler schedule uses its component indices).
const REPLAY_STREAM: usize = 0x5EB1A7;

impl Trace {
    /// Scale every sample's compute time by `factor` (a candidate that computes `factor` times
    /// the profile's rows an iteration).
    pub fn scale_compute(&mut self, factor: f64) {
        for s in self.workers.iter_mut().flatten() {
            s.compute_per_share_s *= factor;
        }
    }

    /// The samples of `files` for `n` simulated workers: worker w replays recorded worker w of
    /// every file (concatenated); with `pool`, every worker draws from all recorded samples.
    pub fn new(
        files: &[TraceFile],
        n: usize,
        order: ReplayOrder,
        seed: u64,
        pool: bool,
    ) -> Result<Trace, SimError> {
        let recorded = files.iter().map(|f| f.workers.len()).max().unwrap_or(0);
        if pool {
            if order == ReplayOrder::Sequential {
                return Err(SimError::invalid(
                    "replay-order",
                    "sequential",
                    "replays each worker's own sequence; it cannot be combined with \
                     --pool-workers (use --replay-order sample)",
                ));
            }
            let all: Vec<Sample> = files
                .iter()
                .flat_map(|f| f.workers.iter().flatten().copied())
                .collect();
            if all.is_empty() {
                return Err(SimError::invalid(
                    "replay",
                    "",
                    "the traces hold no samples",
                ));
            }
            return Ok(Trace {
                workers: vec![all],
                pooled: true,
                order,
                seed,
            });
        }
        if n > recorded {
            return Err(SimError::invalid(
                "workers",
                n,
                format!(
                    "the replayed trace has only {recorded} workers (ranks 1..={recorded}); \
                     simulate at most {recorded}, or pass --pool-workers to draw every \
                     worker's compute and delays from all {recorded} recorded workers"
                ),
            ));
        }
        let mut workers = Vec::with_capacity(n);
        for w in 0..n {
            let samples: Vec<Sample> = files
                .iter()
                .filter_map(|f| f.workers.get(w))
                .flatten()
                .copied()
                .collect();
            if samples.is_empty() {
                return Err(SimError::invalid(
                    "replay",
                    "",
                    format!("worker rank {} has no recorded iteration", w + 1),
                ));
            }
            workers.push(samples);
        }
        Ok(Trace {
            workers,
            pooled: false,
            order,
            seed,
        })
    }

    /// The sample of worker `w` at simulated iteration `round`.
    pub fn draw(&self, round: u64, w: usize) -> Sample {
        let list = if self.pooled {
            &self.workers[0]
        } else {
            &self.workers[w.min(self.workers.len() - 1)]
        };
        let len = list.len();
        let i = match self.order {
            ReplayOrder::Sequential => (round % len as u64) as usize,
            ReplayOrder::Sample => {
                let u = crate::straggler::uniform(self.seed, round, w + 1, REPLAY_STREAM);
                ((u * len as f64) as usize).min(len - 1)
            }
        };
        list[i]
    }
}
