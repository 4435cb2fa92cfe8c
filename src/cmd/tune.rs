//! `gradcode tune`: choose code × s × deadline policy × chunks for this machine by simulation
//! (issue 22 §2; GUIDE §4, §8).
//!
//! 1. **Profile.** The user runs a short uncoded job with the settings to tune for (the
//!    straggler conditions included) and passes its `run.h5` (`--profile`). `tune` does not
//!    launch `mpirun` itself: under Slurm the profiling job is an ordinary `sbatch` of
//!    `train`, and on a workstation one `mpirun` line (docs/tuning.md); `tune` itself is a
//!    serial command that runs anywhere.
//! 2. **Fit.** Per worker, the empirical distribution of its compute time per share of the data
//!    and of its drawn delays (the replay trace of [`crate::sim::Trace`]), and the link model and
//!    rank 0's own times ([`crate::sim::fit_link`]). The profile sends one message per worker
//!    and iteration, so its fit keeps the per-message cost α_m at this machine's default; runs
//!    given with `--link-from` (e.g. the same job with `--chunks 1` and `--chunks 2`) replace
//!    the link fit, α_m included.
//! 3. **Search.** Every candidate (exact codes with s = 0..=3, `hetero` with the fitted per-worker
//!    speeds (the inverse median compute time per share of each worker; written into the TOML as
//!    `worker-speeds` when chosen), `ignore-stragglers`, the `wait`
//!    policy or `best-effort` at three deadlines from the profile's own iteration times, one or
//!    two chunks) is simulated on the replayed trace until its predicted progress reaches the
//!    profile's iterations to target, or until the `--budget-s` wall budget of the search runs
//!    out. Progress per iteration: 1 for an exact decode, 1 − err/√k for an approximate one (a
//!    heuristic: the decoded gradient's relative error bound, GUIDE §5), 0 for an empty one.
//! 4. **Choose.** Candidates ranked by predicted time to target (`--objective time-to-target`)
//!    or by median time per iteration (`time-per-iteration`); predictions within
//!    [`TIE_MARGIN`] (10 %) of the fastest are a tie, ranked least redundant first (smaller s,
//!    then fewer chunks, then waiting over a deadline). The best is written as a `--config`
//!    TOML in the keys of `train` (the profile's own settings with the chosen ones).
//!
//! 5. **Batch size** (a profile run with `--batch B₀`): an uncoded minibatch run records the
//!    gradient noise scale's estimates per iteration (`gns_grad_sq`, `gns_trace`), and B_noise
//!    turns each candidate batch B ∈ {B₀/4, B₀/2, B₀, 2B₀, 4B₀} into iterations to target by
//!    Pollux's statistical efficiency ([`crate::sim::efficiency`]); its compute time per
//!    iteration is the profile's scaled by B/B₀ (delays are not scaled). Batches above B₀ only
//!    when the dataset's rows are known (at most the smallest partition's rows, as `train`
//!    requires). Without a noise scale (a full-batch or coded profile) the batch stays B₀.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::{SimulateArgs, TuneArgs, TuneObjective};
use crate::coding::{CodeKind, Speeds, TrainCode};
use crate::comm::OnDeadline;
use crate::config::{RunConfig, TrainArgs};
use crate::error::{Error, Result};
use crate::io::metrics::percentile;
use crate::io::results::{self, Metric};
use crate::sim::{LinkModel, Sample, SimError, TraceFile};

/// One configuration to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub code: CodeKind,
    pub s: usize,
    pub on_deadline: OnDeadline,
    /// Deadline (ms) of `best-effort`; `wait`'s is the profile's.
    pub deadline_ms: Option<f64>,
    pub chunks: usize,
    /// `--batch` (None: full partitions).
    pub batch: Option<usize>,
    /// `--worker-speeds` of a `hetero` candidate (the profile's fit).
    pub speeds: Option<Speeds>,
}

/// A simulated candidate.
#[derive(Debug, Clone)]
pub struct Scored {
    pub cand: Candidate,
    pub p50_s: f64,
    pub exact_share: f64,
    /// Simulated iterations to reach the profile's progress to target.
    pub iterations: u64,
    /// The progress to reach: the profile's iterations to target, or, for another batch
    /// size, Pollux's prediction of them ([`BatchSearch::adjust`]).
    pub target: u64,
    /// Predicted seconds to target (inf: not reached within the cap).
    pub time_to_target_s: f64,
}

/// Run `gradcode tune`; returns the process exit code.
pub fn run(args: &TuneArgs) -> Result<i32> {
    if !(args.budget_s.is_finite() && args.budget_s > 0.0) {
        return Err(SimError::invalid("budget-s", args.budget_s, "must be a number > 0").into());
    }
    let profile = Profile::read(&args.profile)?;
    let base = profile.args.clone();
    let n = args.np.unwrap_or(profile.trace.workers.len());
    if n == 0 {
        return Err(SimError::invalid("np", 0, "must be at least 1").into());
    }
    let iterations = profile.iterations_to_target(args.target_loss);
    let batch = BatchSearch::of_profile(&profile);
    let speeds = fit_speeds(&profile.trace.workers).filter(|v| v.0.len() == n);
    if let Some(v) = &speeds {
        println!("fitted worker speeds (fastest = 1, for --code hetero): {v}");
    }
    let link = if args.link_from.is_empty() {
        None
    } else {
        let files = super::simulate::read_traces(&args.link_from)?;
        let (link, _) = super::simulate::fitted(&files)?;
        println!(
            "link fitted from --link-from: alpha {:.3} ms, per message {:.3} ms, beta {:.1} ms/MB",
            link.alpha_s * 1e3,
            link.message_s * 1e3,
            link.beta_s_per_byte * 1e9
        );
        Some(link)
    };
    let started = Instant::now();
    let mut scored = Vec::new();
    let mut skipped = 0usize;
    for cand in candidates(n, &profile.walls, &batch.candidates(), speeds.as_ref()) {
        if started.elapsed().as_secs_f64() > args.budget_s {
            skipped += 1;
            continue;
        }
        if let Some(s) = score(&profile, &base, n, &cand, iterations, link, &batch)? {
            scored.push(s);
        }
    }
    if scored.is_empty() {
        return Err(Error::Check(
            "no candidate configuration could be simulated".into(),
        ));
    }
    rank(&mut scored, args.objective);
    print_ranking(&scored, iterations, skipped, args.top);
    let best = &scored[0];
    let toml = best_config("gradcode tune", &base, n, &best.cand, best.target)?;
    if let Some(dir) = args.config_out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| crate::io::IoError::os(dir, e))?;
        }
    }
    std::fs::write(&args.config_out, toml)
        .map_err(|e| crate::io::IoError::os(&args.config_out, e))?;
    println!(
        "best: {} → {} (run it with `mpirun -np {} gradcode train --config {} --out DIR`)",
        describe(&best.cand),
        args.config_out.display(),
        n + 1,
        args.config_out.display()
    );
    Ok(0)
}

/// A profile run as `tune` and `plan` read it, once: its trace, its own settings and the
/// columns of its `/metrics` rows they use.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// The run directory or results file given.
    pub path: PathBuf,
    pub trace: TraceFile,
    /// Its own settings (its `/config` toml).
    pub args: TrainArgs,
    /// The training loss of every iteration.
    loss: Vec<f64>,
    /// Its iteration times after the first (sorted).
    pub walls: Vec<f64>,
    /// Its gradient noise scale B_noise in rows, when it recorded one.
    pub phi: Option<f64>,
}

impl Profile {
    /// Read the profile at `path` (a run directory or its results file).
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let trace = TraceFile::read(path)?;
        let args = profile_args(path)?;
        let rows = results::read_rows(&run_file(path), None)?;
        let mut walls: Vec<f64> = rows
            .column(Metric::WallS)
            .iter()
            .skip(1)
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        walls.sort_by(f64::total_cmp);
        let phi = crate::sim::efficiency::noise_scale(
            rows.column(Metric::GnsGradSq).as_slice().unwrap_or(&[]),
            rows.column(Metric::GnsTrace).as_slice().unwrap_or(&[]),
        );
        Ok(Profile {
            path: path.to_path_buf(),
            trace,
            args,
            loss: rows.column(Metric::TrainLoss).to_vec(),
            walls,
            phi,
        })
    }

    /// Iterations the profile needed to reach `target` (its whole length without a target, or
    /// when it never reached it: then the prediction is per that many iterations).
    pub(crate) fn iterations_to_target(&self, target: Option<f64>) -> u64 {
        let hit = target.and_then(|t| self.loss.iter().position(|&l| l <= t));
        hit.map_or(self.loss.len() as u64, |i| i as u64 + 1).max(1)
    }
}

/// The profile's own settings (its `/config` toml).
fn profile_args(path: &Path) -> Result<TrainArgs> {
    let path = run_file(path);
    let text = results::read_str_attr(&path, "config", "toml")?;
    toml::from_str(&text).map_err(|e| {
        SimError::Trace {
            path,
            reason: format!("its /config toml does not parse ({e})"),
        }
        .into()
    })
}

fn run_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(crate::config::RESULTS_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The batch-size search (module docs, step 5).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSearch {
    /// The profile's `--batch` (None: full partitions).
    pub b0: Option<usize>,
    /// Its gradient noise scale B_noise, in rows.
    pub phi: Option<f64>,
    /// The dataset's training rows, when it could be read.
    pub rows: Option<usize>,
    /// The profile's partitions (uncoded: its workers); a batch of B rows per partition is
    /// k·B rows an iteration.
    pub k0: usize,
}

impl BatchSearch {
    /// The search of a profile with noise scale `phi`, settings `base` (its batch and dataset)
    /// and `k0` workers (uncoded), silently.
    pub fn new(phi: Option<f64>, base: &TrainArgs, k0: usize) -> Self {
        BatchSearch {
            b0: base.batch,
            phi,
            rows: base
                .data
                .as_deref()
                .and_then(|d| crate::io::dataset::inspect(d).ok())
                .map(|i| i.n_rows),
            k0: k0.max(1),
        }
    }

    /// The search of `profile` with its own settings, printing the noise scale or why the
    /// batch is not searched.
    pub(crate) fn of_profile(profile: &Profile) -> Self {
        let k0 = profile.trace.workers.len();
        let search = Self::new(profile.phi, &profile.args, k0);
        let phi = search.phi;
        match (search.b0, phi) {
            (Some(b0), Some(phi)) => println!(
                "gradient noise scale of the profile: B_noise ≈ {phi:.0} rows (batch {b0} × {k0} partitions); batch candidates {} (each at most the candidate code's smallest partition)",
                search
                    .candidates()
                    .iter()
                    .flatten()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some(b0), None) => println!(
                "batch {b0} not searched: the profile has no gradient noise scale (an uncoded --batch run with --chunks 1 records it)"
            ),
            (None, _) => {}
        }
        search
    }

    /// The batches to try: B₀ × {1/4, 1/2, 1, 2, 4}, at least 1 row, above B₀ only when the
    /// dataset's rows are known; the profile's alone without a noise scale.
    pub fn candidates(&self) -> Vec<Option<usize>> {
        let (Some(b0), Some(_)) = (self.b0, self.phi) else {
            return vec![self.b0];
        };
        let mut v: Vec<usize> = [b0 / 4, b0 / 2, b0, 2 * b0, 4 * b0]
            .into_iter()
            .filter(|&b| b >= 1 && (b <= b0 || self.rows.is_some()))
            .collect();
        v.dedup();
        v.into_iter().map(Some).collect()
    }

    /// For `cand` under a code of `k` partitions: the iterations to target (Pollux's, from the
    /// profile's `iterations` at B₀·k₀ rows) and the factor on the profile's compute times,
    /// B·k/(B₀·k₀) (a worker computes B rows of each partition it holds; the replay scales by
    /// the share of partitions). None when B is larger than the smallest of the k partitions
    /// (`train` refuses that). Without a batch: the profile's iterations, factor 1.
    pub fn adjust(&self, cand: &Candidate, k: usize, iterations: u64) -> Option<(u64, f64)> {
        let (Some(b0), Some(b)) = (self.b0, cand.batch) else {
            return Some((iterations, 1.0));
        };
        if let Some(rows) = self.rows {
            if b > rows / k.max(1) {
                return None;
            }
        }
        let (m0, m) = ((b0 * self.k0) as f64, (b * k) as f64);
        let target = match self.phi {
            Some(phi) => crate::sim::efficiency::iterations_at(phi, iterations, m0, m),
            None => iterations,
        };
        Some((target, m / m0))
    }
}

/// Per-worker speeds from a profile: the inverse of each worker's median compute time per share
/// of the data (slow-down included, drawn delays not: they do not grow with the load), scaled
/// so that the fastest is 1 and rounded to two decimals (at least 0.01). None when a worker has
/// no finite sample.
pub fn fit_speeds(workers: &[Vec<Sample>]) -> Option<Speeds> {
    let times: Vec<f64> = workers
        .iter()
        .map(|w| {
            let mut t: Vec<f64> = w
                .iter()
                .map(|x| x.compute_per_share_s * x.slow_factor.max(1.0))
                .filter(|t| t.is_finite() && *t > 0.0)
                .collect();
            t.sort_by(f64::total_cmp);
            (!t.is_empty()).then(|| percentile(&t, 0.5))
        })
        .collect::<Option<_>>()?;
    let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
    (!times.is_empty()).then(|| {
        Speeds(
            times
                .iter()
                .map(|t| ((fastest / t) * 100.0).round().max(1.0) / 100.0)
                .collect(),
        )
    })
}

/// The search space for n workers (`hetero` with `speeds` when they are given).
pub fn candidates(
    n: usize,
    walls: &[f64],
    batches: &[Option<usize>],
    speeds: Option<&Speeds>,
) -> Vec<Candidate> {
    let mut codes: Vec<(CodeKind, usize)> = vec![(CodeKind::Uncoded, 0)];
    for s in 1..=3.min(n.saturating_sub(1)) {
        if speeds.is_some() {
            codes.push((CodeKind::Hetero, s));
        }
        codes.push((CodeKind::CyclicRepetition, s));
        codes.push((CodeKind::CyclicMds, s));
        if n % (s + 1) == 0 {
            codes.push((CodeKind::Frc, s));
        }
        codes.push((CodeKind::IgnoreStragglers, s));
    }
    let mut policies = vec![(OnDeadline::Wait, None)];
    if !walls.is_empty() {
        for q in [0.25, 0.5, 0.75] {
            let ms = (percentile(walls, q) * 1e3 * 10.0).round() / 10.0;
            if ms > 0.0 {
                policies.push((OnDeadline::BestEffort, Some(ms)));
            }
        }
    }
    let mut out = Vec::new();
    for &(code, s) in &codes {
        for &(on_deadline, deadline_ms) in &policies {
            for chunks in [1, 2] {
                for &b in batches {
                    out.push(Candidate {
                        code,
                        s,
                        on_deadline,
                        deadline_ms,
                        chunks,
                        batch: b,
                        speeds: speeds.filter(|_| code == CodeKind::Hetero).cloned(),
                    });
                }
            }
        }
    }
    out
}

/// The train settings of `cand` over the profile's.
fn candidate_args(base: &TrainArgs, n: usize, cand: &Candidate) -> TrainArgs {
    let mut a = base.clone();
    a.job.config = None;
    a.job.out = None;
    a.job.force = false;
    a.job.workers = Some(n);
    a.code = Some(TrainCode::Gradient(cand.code));
    a.stragglers = Some(cand.s);
    a.on_deadline = Some(cand.on_deadline);
    if let Some(d) = cand.deadline_ms {
        a.job.deadline_ms = Some(d);
    }
    a.chunks = Some(cand.chunks);
    a.batch = cand.batch;
    a.worker_speeds = cand.speeds.clone();
    a.reuse_stale = false;
    a.resume = false;
    a
}

/// Simulate `cand` on the replay of `profile` (read from `profile_path`) until its progress
/// reaches `target_iterations` (adjusted for its batch by `batch`; at most 20× as many
/// iterations); None when the candidate is not a valid configuration here. `link`: the link to
/// use instead of the profile's fit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn score(
    profile: &Profile,
    base: &TrainArgs,
    n: usize,
    cand: &Candidate,
    target_iterations: u64,
    link: Option<LinkModel>,
    batch: &BatchSearch,
) -> Result<Option<Scored>> {
    let mut train = candidate_args(base, n, cand);
    train.data = None;
    let sargs = SimulateArgs {
        train,
        replay: vec![profile.path.clone()],
        replay_order: crate::sim::ReplayOrder::Sample,
        pool_workers: n > profile.trace.workers.len(),
        compute_ms: None,
        alpha_ms: link.map(|l| l.alpha_s * 1e3),
        message_ms: link.map(|l| l.message_s * 1e3),
        beta_ms_per_mb: link.map(|l| l.beta_s_per_byte * 1e9),
        step_ms: None,
        gap_ms: None,
        dim: profile.trace.dim.or(Some(1)),
        fit_link: false,
    };
    let Ok(cfg) = RunConfig::for_simulation(&sargs.train, Some(n)) else {
        return Ok(None);
    };
    let Ok(mut sim) = super::simulate::build(&sargs, &cfg, std::slice::from_ref(&profile.trace))
    else {
        return Ok(None);
    };
    let Some((target_iterations, factor)) =
        batch.adjust(cand, sim.code().n_partitions(), target_iterations)
    else {
        return Ok(None);
    };
    if factor != 1.0 {
        sim.scale_compute(factor);
    }
    let k = sim.code().n_partitions().max(1) as f64;
    let (mut progress, mut walls, mut exact, mut t) = (0.0, Vec::new(), 0u64, 0u64);
    let mut elapsed = 0.0;
    let cap = target_iterations.saturating_mul(20);
    while progress < target_iterations as f64 && t < cap {
        let round = match sim.step() {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        let p = match sim.decoding(&round)? {
            Some(d) if d.exact == 1.0 => 1.0,
            Some(d) if d.residual.is_finite() => (1.0 - d.residual / k.sqrt()).max(0.0),
            _ => 0.0,
        };
        exact += u64::from(p == 1.0);
        progress += p;
        walls.push(round.wall_s);
        elapsed = round.elapsed_s;
        t += 1;
    }
    walls.sort_by(f64::total_cmp);
    Ok(Some(Scored {
        cand: cand.clone(),
        p50_s: percentile(&walls, 0.5),
        exact_share: exact as f64 / t.max(1) as f64,
        iterations: t,
        target: target_iterations,
        time_to_target_s: if progress >= target_iterations as f64 {
            elapsed
        } else {
            f64::INFINITY
        },
    }))
}

/// Best first by the objective (ties: the simpler candidate, which comes first in the search).
pub fn rank(scored: &mut [Scored], objective: TuneObjective) {
    let key = |s: &Scored| match objective {
        TuneObjective::TimeToTarget => s.time_to_target_s,
        TuneObjective::TimePerIteration => s.p50_s,
    };
    scored.sort_by(|a, b| key(a).total_cmp(&key(b)));
    // Ties: the candidates within TIE_MARGIN of the fastest, least redundant first.
    let Some(best) = scored.first().map(key).filter(|b| b.is_finite()) else {
        return;
    };
    let tied = scored
        .iter()
        .take_while(|s| key(s) <= best * (1.0 + TIE_MARGIN))
        .count();
    scored[..tied].sort_by(|a, b| {
        redundancy(&a.cand)
            .cmp(&redundancy(&b.cand))
            .then(key(a).total_cmp(&key(b)))
    });
}

/// Predicted times closer than this fraction of the fastest are a tie: the simulator's p50
/// is within 0.7–1.05 of the real runs' on this machine (docs/tuning.md, validation), and it
/// does not model CPU contention, which redundant computing and more messages add to (it
/// predicted two chunks 9–10 % faster than one where real runs found them slower).
pub const TIE_MARGIN: f64 = 0.10;

/// How much a candidate costs beyond its predicted time, for ties: s (each worker computes
/// s + 1 shares), then chunks (messages per worker), then a deadline policy over waiting.
fn redundancy(c: &Candidate) -> (usize, usize, bool) {
    (c.s, c.chunks, c.on_deadline != OnDeadline::Wait)
}

pub(crate) fn describe(c: &Candidate) -> String {
    let policy = match (c.on_deadline, c.deadline_ms) {
        (OnDeadline::BestEffort, Some(d)) => format!("best-effort {d} ms"),
        _ => "wait".into(),
    };
    let batch = c.batch.map_or_else(String::new, |b| format!(" batch={b}"));
    format!(
        "{} s={} {policy} chunks={}{batch}",
        c.code.name(),
        c.s,
        c.chunks
    )
}

fn print_ranking(scored: &[Scored], target: u64, skipped: usize, top: usize) {
    println!(
        "{} candidates simulated (progress of {target} exact iterations to target){}",
        scored.len(),
        if skipped > 0 {
            format!("; {skipped} skipped by --budget-s")
        } else {
            String::new()
        }
    );
    println!(
        "{:>4}  {:<44} {:>9} {:>7} {:>7} {:>12}",
        "rank", "configuration", "p50 ms", "exact", "iters", "to target s"
    );
    for (i, s) in scored.iter().take(top).enumerate() {
        println!(
            "{:>4}  {:<44} {:>9.2} {:>6.0}% {:>7} {:>12.3}",
            i + 1,
            describe(&s.cand),
            s.p50_s * 1e3,
            s.exact_share * 100.0,
            s.iterations,
            s.time_to_target_s
        );
    }
}

/// The best candidate as a `train --config` TOML: the profile's settings with the chosen code,
/// s, policy, deadline, chunks and workers, and the iterations to target; no output folder.
pub(crate) fn best_config(
    origin: &str,
    base: &TrainArgs,
    n: usize,
    cand: &Candidate,
    iterations: u64,
) -> Result<String> {
    let mut a = candidate_args(base, n, cand);
    a.iterations = base
        .iterations
        .map(|i| i.max(iterations))
        .or(Some(iterations));
    let body = toml::to_string(&a).map_err(|e| Error::Check(format!("config: {e}")))?;
    Ok(format!(
        "# {origin}: {} (predicted best for this machine; docs/tuning.md)\n{body}",
        describe(cand)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_space_has_frc_only_where_s_plus_1_divides_n() {
        let walls = [0.01, 0.02, 0.03, 0.04];
        let c = candidates(8, &walls, &[None], None);
        let frc: Vec<usize> = c
            .iter()
            .filter(|c| c.code == CodeKind::Frc && c.chunks == 1)
            .filter(|c| c.on_deadline == OnDeadline::Wait)
            .map(|c| c.s)
            .collect();
        assert_eq!(frc, vec![1, 3]);
        // Best-effort deadlines at the profile's quartiles (nearest rank), in ms.
        let mut d: Vec<f64> = c.iter().filter_map(|c| c.deadline_ms).collect();
        d.sort_by(f64::total_cmp);
        d.dedup();
        assert_eq!(d, vec![20.0, 30.0]);
        // One worker: uncoded only.
        assert!(candidates(1, &walls, &[None], None)
            .iter()
            .all(|c| c.code == CodeKind::Uncoded));
    }

    #[test]
    fn speeds_are_fitted_from_compute_per_share_and_slow_down() {
        let w = |c: f64, slow: f64| {
            vec![
                Sample {
                    compute_per_share_s: c,
                    slow_factor: slow,
                    delay_s: 0.3,
                };
                3
            ]
        };
        let v = fit_speeds(&[w(0.1, 1.0), w(0.1, 2.0), w(0.4, 1.0), w(0.1, 1.0)]).unwrap();
        assert_eq!(v.0, vec![1.0, 0.5, 0.25, 1.0]);
        assert!(fit_speeds(&[w(0.1, 1.0), Vec::new()]).is_none());
        let speeds = Speeds(vec![1.0; 4]);
        let c = candidates(4, &[], &[None], Some(&speeds));
        let h: Vec<&Candidate> = c.iter().filter(|c| c.code == CodeKind::Hetero).collect();
        assert!(!h.is_empty() && h.iter().all(|c| c.speeds.as_ref() == Some(&speeds)));
        assert!(c
            .iter()
            .filter(|c| c.code != CodeKind::Hetero)
            .all(|c| c.speeds.is_none()));
    }

    #[test]
    fn a_hetero_best_config_carries_the_fitted_speeds_into_the_toml() {
        let speeds = Speeds(vec![1.0, 0.5, 1.0, 0.25]);
        let c = candidates(4, &[], &[None], Some(&speeds));
        let h = c.iter().find(|c| c.code == CodeKind::Hetero).unwrap();
        let toml = best_config("gradcode tune", &TrainArgs::default(), 4, h, 50).unwrap();
        assert!(toml.contains("worker-speeds = \"1,0.5,1,0.25\""), "{toml}");
        let back: TrainArgs = toml::from_str(&toml).unwrap();
        assert_eq!(back.worker_speeds, Some(speeds));
        assert_eq!(back.code, Some(TrainCode::Gradient(CodeKind::Hetero)));
        let other = c.iter().find(|c| c.code == CodeKind::CyclicMds).unwrap();
        let toml = best_config("gradcode tune", &TrainArgs::default(), 4, other, 50).unwrap();
        assert!(!toml.contains("worker-speeds"), "{toml}");
    }

    #[test]
    fn batch_candidates_need_a_noise_scale_and_fit_the_code_s_partitions() {
        let b = |b0, phi, rows| BatchSearch {
            b0,
            phi,
            rows,
            k0: 4,
        };
        assert_eq!(b(Some(16), None, Some(2000)).candidates(), vec![Some(16)]);
        assert_eq!(b(None, Some(10.0), Some(2000)).candidates(), vec![None]);
        let all = |v: &[usize]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        let search = b(Some(16), Some(100.0), Some(2000));
        assert_eq!(search.candidates(), all(&[4, 8, 16, 32, 64]));
        // Unknown rows: nothing above B₀.
        assert_eq!(b(Some(16), Some(10.0), None).candidates(), all(&[4, 8, 16]));
        assert_eq!(b(Some(2), Some(10.0), None).candidates(), all(&[1, 2]));
        // Per candidate code: B at most the smallest of its k partitions; the compute factor
        // B·k/(B₀·k₀) and Pollux's iterations at B·k rows.
        let mut c = candidates(4, &[], &[Some(64)], None)[0].clone();
        assert_eq!(search.adjust(&c, 32, 40), None); // 2000/32 = 62 < 64
        let (it, f) = search.adjust(&c, 4, 40).unwrap();
        assert_eq!(f, 4.0);
        assert_eq!(
            it,
            crate::sim::efficiency::iterations_at(100.0, 40, 64.0, 256.0)
        );
        c.batch = Some(16);
        assert_eq!(search.adjust(&c, 4, 40), Some((40, 1.0)));
        assert_eq!(search.adjust(&c, 8, 40).unwrap().1, 2.0);
        c.batch = None;
        assert_eq!(search.adjust(&c, 32, 40), Some((40, 1.0)));
    }

    #[test]
    fn ranking_puts_the_fastest_first_by_the_objective() {
        let c = candidates(4, &[], &[None], None);
        let mk = |i: usize, p50: f64, ttt: f64| Scored {
            cand: c[i].clone(),
            p50_s: p50,
            exact_share: 1.0,
            iterations: 10,
            target: 10,
            time_to_target_s: ttt,
        };
        let mut v = vec![
            mk(0, 0.03, 1.0),
            mk(1, 0.01, f64::INFINITY),
            mk(2, 0.02, 0.5),
        ];
        rank(&mut v, TuneObjective::TimeToTarget);
        assert_eq!(v[0].cand, c[2]);
        assert_eq!(v[2].cand, c[1]);
        rank(&mut v, TuneObjective::TimePerIteration);
        assert_eq!(v[0].cand, c[1]);
        // Within 10 % of the fastest, the least redundant comes first.
        let pick = |code: CodeKind, s: usize, chunks: usize| {
            c.iter()
                .position(|x| {
                    x.code == code
                        && x.s == s
                        && x.chunks == chunks
                        && x.on_deadline == OnDeadline::Wait
                })
                .unwrap()
        };
        let (frc3, unc, frc3c2) = (
            pick(CodeKind::Frc, 3, 1),
            pick(CodeKind::Uncoded, 0, 1),
            pick(CodeKind::Frc, 3, 2),
        );
        let mut v = vec![
            mk(frc3c2, 0.01, 13.67),
            mk(frc3, 0.01, 13.9),
            mk(unc, 0.01, 13.75),
        ];
        rank(&mut v, TuneObjective::TimeToTarget);
        let order: Vec<_> = v.iter().map(|s| (s.cand.code, s.cand.chunks)).collect();
        assert_eq!(
            order,
            [
                (CodeKind::Uncoded, 1),
                (CodeKind::Frc, 1),
                (CodeKind::Frc, 2)
            ]
        );
        // Beyond the margin the fastest stays first.
        let mut v = vec![mk(unc, 0.01, 15.1), mk(frc3c2, 0.01, 13.67)];
        rank(&mut v, TuneObjective::TimeToTarget);
        assert_eq!(v[0].cand.code, CodeKind::Frc);
    }
}
