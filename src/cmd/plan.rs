//! `gradcode plan`: share one allocation of `--nodes` × `--cores-per-node` ranks among several
//! training jobs (issue 22 §4; GUIDE §8, Pollux). Serial; it launches nothing.
//!
//! 1. **Jobs.** A TOML file with one `[[job]]` table per job: its profiling run (`profile`, the
//!    `run.h5` of a short uncoded `train` run, the input `gradcode tune` fits from), optionally
//!    its `name`, `data` and `model` (default: the profile's), `target_loss` or `iterations`,
//!    and a fixed rank count `ranks`. Every job is checked before anything is simulated.
//! 2. **Curves.** For every job and worker count n (all n up to 16, then every eighth of n, up
//!    to the allocation), the `tune` candidates with the `wait` policy (exact codes and
//!    `ignore-stragglers` with s ≤ 3, one or two chunks) are simulated on the replay of its
//!    profile ([`super::tune::score`]); the fastest predicted time to target is the job's time
//!    at n. Goodput is the simulated throughput times the statistical efficiency: 1 for a
//!    full-batch job; for a minibatch job (a profile with `--batch B₀`) its compute time scales
//!    with the rows an iteration (k·B against the profile's k₀·B₀), and when the profile
//!    recorded the gradient noise scale (an uncoded `--batch` run) and the job gives no fixed
//!    `iterations`, the batch B ∈ B₀ × {1/4, 1/2, 1, 2, 4} is chosen per worker count too, its
//!    iterations to target from Pollux's efficiency ([`super::tune::BatchSearch`],
//!    docs/tuning.md).
//! 3. **Allocation and schedules** ([`crate::sim::plan`]): the plan, an equal split and FIFO,
//!    their mean and max completion times printed as a table.
//! 4. **Output** (`--out DIR`): per job `NAME.toml` (its `train --config`: the profile's
//!    settings with the job's data, model, chosen code, s, chunks, workers and iterations) and
//!    `NAME.sbatch` (`jobscripts/train.sbatch` with the job's name, rank count, a time limit
//!    from the prediction and `CONFIG` set to `NAME.toml`), and `plan.json` (the allocation,
//!    the predicted schedule of each policy).
//!
//! Re-planning (`--replan-every K`) happens in the simulated schedule only: the written scripts
//! are the initial plan (a real re-plan would checkpoint a job and resume it with other ranks).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::PlanArgs;
use crate::comm::OnDeadline;
use crate::config::TrainArgs;
use crate::error::Result;
use crate::io::IoError;
use crate::model::ModelKind;
use crate::report::table::{json_num, json_str};
use crate::sim::plan::{self, Choice, JobCurve, Policy, Schedule};
use crate::sim::SimError;

use super::tune::{self, Candidate};

/// The job script every job's is derived from.
const TEMPLATE: &str = include_str!("../../jobscripts/train.sbatch");

/// Worker counts evaluated past this are every eighth of n apart.
const DENSE_WORKERS: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    job: Vec<JobSpec>,
}

/// One `[[job]]` of the jobs file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct JobSpec {
    name: Option<String>,
    profile: PathBuf,
    data: Option<PathBuf>,
    model: Option<ModelKind>,
    #[serde(alias = "target_loss")]
    target_loss: Option<f64>,
    iterations: Option<u64>,
    ranks: Option<usize>,
}

/// A checked job: its profile read, its settings, its iterations to target.
struct Job {
    name: String,
    profile: tune::Profile,
    /// The profile's settings with the job's own (data, model, iterations).
    base: TrainArgs,
    /// Iterations of progress to target (from the profile's loss, or given) at the profile's
    /// batch and worker count.
    target_iterations: u64,
    fixed_ranks: Option<usize>,
    /// The batch search of a minibatch profile (module docs, step 2).
    batch: tune::BatchSearch,
}

/// Run `gradcode plan`; returns the process exit code.
pub fn run(args: &PlanArgs) -> Result<i32> {
    for (name, v) in [
        ("nodes", args.nodes),
        ("cores-per-node", args.cores_per_node),
    ] {
        if v == 0 {
            return Err(SimError::invalid(name, 0, "must be at least 1").into());
        }
    }
    let ranks = args.nodes * args.cores_per_node;
    let jobs = read_jobs(&args.jobs, ranks)?;
    let curves = jobs
        .iter()
        .map(|j| curve(j, ranks))
        .collect::<Result<Vec<_>>>()?;
    let policy = Policy::Plan {
        objective: args.objective,
        replan_every: args.replan_every,
    };
    let planned = plan::schedule(&curves, ranks, policy)?;
    let equal = plan::schedule(&curves, ranks, Policy::EqualSplit)?;
    let fifo = plan::schedule(&curves, ranks, Policy::Fifo)?;
    print_plan(&jobs, &planned, ranks);
    print_comparison(&[("plan", &planned), ("equal split", &equal), ("FIFO", &fifo)]);
    write_outputs(
        args,
        &jobs,
        &planned,
        &[("equal-split", &equal), ("fifo", &fifo)],
    )?;
    Ok(0)
}

fn bad(path: &Path, reason: impl Into<String>) -> SimError {
    SimError::Plan {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Read and check every job of `path` (names, profiles, data, ranks).
fn read_jobs(path: &Path, ranks: usize) -> Result<Vec<Job>> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
    let file: JobsFile = toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        bad(path, format!("not a jobs file ({msg})"))
    })?;
    if file.job.is_empty() {
        return Err(bad(path, "no [[job]]").into());
    }
    let mut jobs = Vec::with_capacity(file.job.len());
    for (i, spec) in file.job.into_iter().enumerate() {
        let job = check_job(path, i, spec, ranks)?;
        if jobs.iter().any(|j: &Job| j.name == job.name) {
            return Err(bad(path, format!("two jobs are named '{}'", job.name)).into());
        }
        jobs.push(job);
    }
    let fixed: usize = jobs.iter().map(|j| j.fixed_ranks.unwrap_or(2)).sum();
    if fixed > ranks {
        return Err(bad(
            path,
            format!(
                "the jobs need at least {fixed} ranks (their `ranks`, else 2 each), more than \
                 the allocation's {ranks}"
            ),
        )
        .into());
    }
    Ok(jobs)
}

fn check_job(path: &Path, i: usize, spec: JobSpec, ranks: usize) -> Result<Job> {
    let name = spec.name.unwrap_or_else(|| format!("job{}", i + 1));
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            path,
            format!("job name '{name}': use letters, digits, - and _"),
        )
        .into());
    }
    let job_err = |reason: String| bad(path, format!("job '{name}': {reason}"));
    let profile =
        tune::Profile::read(&spec.profile).map_err(|e| job_err(format!("profile: {e}")))?;
    let mut base = profile.args.clone();
    if let Some(d) = spec.data {
        base.data = Some(d);
    }
    let data = base
        .data
        .clone()
        .ok_or_else(|| job_err("no `data` and the profile names none".into()))?;
    if !data.is_file() {
        return Err(job_err(format!("dataset {} does not exist", data.display())).into());
    }
    base.data = Some(std::fs::canonicalize(&data).map_err(|e| IoError::os(&data, e))?);
    if let Some(m) = spec.model {
        base.model = Some(m);
    }
    match spec.ranks {
        Some(r) if r < 2 => {
            return Err(job_err(format!(
                "ranks = {r}: needs at least 2 (rank 0 and a worker)"
            ))
            .into())
        }
        Some(r) if r > ranks => {
            return Err(job_err(format!(
                "ranks = {r}: more than the allocation's {ranks} (--nodes × --cores-per-node)"
            ))
            .into())
        }
        _ => {}
    }
    if let Some(t) = spec.target_loss {
        if !t.is_finite() {
            return Err(job_err(format!("target-loss = {t}: must be a finite number")).into());
        }
    }
    if spec.iterations == Some(0) {
        return Err(job_err("iterations = 0: must be at least 1".into()).into());
    }
    let target_iterations = match (spec.target_loss, spec.iterations) {
        (None, Some(it)) => it,
        (t, _) => profile.iterations_to_target(t),
    };
    base.iterations = spec.iterations.or(Some(target_iterations));
    let mut batch = tune::BatchSearch::new(profile.phi, &base, profile.trace.workers.len());
    if spec.iterations.is_some() {
        // Iterations fixed by the user: keep the profile's batch (their meaning depends on it).
        batch.phi = None;
    }
    if let (Some(b0), Some(phi)) = (batch.b0, batch.phi) {
        println!(
            "job {name}: gradient noise scale B_noise ≈ {phi:.0} rows (batch {b0} × {} \
             partitions): the batch is chosen per worker count",
            batch.k0
        );
    }
    Ok(Job {
        name,
        profile,
        base,
        target_iterations,
        fixed_ranks: spec.ranks,
        batch,
    })
}

/// Worker counts to evaluate with `ranks` ranks: all up to [`DENSE_WORKERS`], then every
/// eighth of n.
fn worker_grid(ranks: usize) -> Vec<usize> {
    let max = ranks.saturating_sub(1);
    let mut out = Vec::new();
    let mut n = 1;
    while n <= max {
        out.push(n);
        n += if n < DENSE_WORKERS { 1 } else { n.div_ceil(8) };
    }
    if out.last().is_some_and(|&l| l < max) {
        out.push(max);
    }
    out
}

/// The job's best predicted configuration at each worker count (its fixed count only, when
/// it has one).
fn curve(job: &Job, ranks: usize) -> Result<JobCurve> {
    let grid = match job.fixed_ranks {
        Some(r) => vec![r - 1],
        None => worker_grid(ranks),
    };
    let mut choices = Vec::new();
    for n in grid {
        let mut best: Option<Choice> = None;
        // Plan does not fit per-worker speeds: no `hetero` candidates.
        for cand in tune::candidates(n, &[], &job.batch.candidates(), None) {
            let Some(s) = tune::score(
                &job.profile,
                &job.base,
                n,
                &cand,
                job.target_iterations,
                None,
                &job.batch,
            )?
            else {
                continue;
            };
            let better = match &best {
                Some(b) => s.time_to_target_s < b.time_s,
                None => true,
            };
            if s.time_to_target_s.is_finite() && better {
                best = Some(Choice {
                    workers: n,
                    code: cand.code,
                    s: cand.s,
                    chunks: cand.chunks,
                    batch: cand.batch,
                    iterations: s.target,
                    time_s: s.time_to_target_s,
                });
            }
        }
        choices.extend(best);
    }
    Ok(JobCurve {
        name: job.name.clone(),
        choices,
        fixed_ranks: job.fixed_ranks,
    })
}

fn print_plan(jobs: &[Job], planned: &Schedule, ranks: usize) {
    let used: usize = planned.slots.iter().map(|s| s.choice.workers + 1).sum();
    println!("plan: {used} of {ranks} ranks");
    println!(
        "{:<16} {:>6} {:<44} {:>11} {:>10}",
        "job", "ranks", "configuration", "iterations", "predicted s"
    );
    for (j, s) in jobs.iter().zip(&planned.slots) {
        let c = &s.choice;
        let mut end = format!("{:.2}", s.end_s);
        for (t, w) in &s.replans {
            let _ = write!(end, " (re-planned at {t:.2} s to {} ranks)", w + 1);
        }
        println!(
            "{:<16} {:>6} {:<44} {:>11} {:>10}",
            j.name,
            c.workers + 1,
            tune::describe(&candidate(c)),
            c.iterations,
            end
        );
    }
}

fn print_comparison(rows: &[(&str, &Schedule)]) {
    println!(
        "\n{:<12} {:>16} {:>15}",
        "schedule", "mean completion s", "max completion s"
    );
    for (name, s) in rows {
        println!("{:<12} {:>16.2} {:>15.2}", name, s.mean_s(), s.max_s());
    }
}

fn candidate(c: &Choice) -> Candidate {
    Candidate {
        code: c.code,
        s: c.s,
        on_deadline: OnDeadline::Wait,
        deadline_ms: None,
        chunks: c.chunks,
        batch: c.batch,
        speeds: None,
    }
}

/// `NAME.toml`, `NAME.sbatch` per job and `plan.json` in `--out`.
fn write_outputs(
    args: &PlanArgs,
    jobs: &[Job],
    planned: &Schedule,
    others: &[(&str, &Schedule)],
) -> Result<()> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).map_err(|e| IoError::os(dir, e))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| IoError::os(dir, e))?;
    let write = |name: String, text: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| IoError::os(&p, e))?;
        Ok(p)
    };
    let mut files = Vec::new();
    for (j, s) in jobs.iter().zip(&planned.slots) {
        let c = &s.choice;
        let mut base = j.base.clone();
        base.iterations = Some(c.iterations);
        let toml = tune::best_config("gradcode plan", &base, c.workers, &candidate(c), 1)?;
        let config = write(format!("{}.toml", j.name), &toml)?;
        let script = job_script(&j.name, c.workers + 1, s.end_s - s.start_s, &config);
        let sbatch = write(format!("{}.sbatch", j.name), &script)?;
        files.push((config, sbatch));
    }
    let json = plan_json(args, jobs, planned, others, &files);
    write("plan.json".into(), &json)?;
    println!(
        "\nwrote {} (submit each NAME.sbatch from the project root)",
        dir.display()
    );
    Ok(())
}

/// `jobscripts/train.sbatch` with the job's name, rank count, time limit and config.
fn job_script(name: &str, ranks: usize, predicted_s: f64, config: &Path) -> String {
    // Twice the prediction plus ten minutes, in whole minutes.
    let minutes = ((2.0 * predicted_s + 600.0) / 60.0).ceil() as u64;
    let mut out = String::new();
    for line in TEMPLATE.lines() {
        let l = if line.starts_with("#SBATCH --job-name=") {
            format!("#SBATCH --job-name={name}")
        } else if line.starts_with("#SBATCH --ntasks=") {
            format!("#SBATCH --ntasks={ranks}")
        } else if line.starts_with("#SBATCH --nodes=") {
            "# (nodes: placed by Slurm within the allocation; gradcode plan sets --ntasks)".into()
        } else if line.starts_with("#SBATCH --time=") {
            format!("#SBATCH --time={:02}:{:02}:00", minutes / 60, minutes % 60)
        } else if line.starts_with("# Defaults when no CONFIG file is given") {
            format!(
                ": \"${{CONFIG:={}}}\" # written by gradcode plan\n\n{line}",
                config.display()
            )
        } else if line == "#!/usr/bin/env bash" {
            format!(
                "{line}\n# Written by `gradcode plan` for job {name} ({ranks} ranks), from \
                 jobscripts/train.sbatch."
            )
        } else {
            line.to_string()
        };
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn schedule_json(s: &Schedule, jobs: &[Job]) -> String {
    let slots: Vec<String> = s
        .slots
        .iter()
        .zip(jobs)
        .map(|(sl, j)| {
            let replans: Vec<String> = sl
                .replans
                .iter()
                .map(|(t, w)| format!("{{\"at_s\": {}, \"ranks\": {}}}", json_num(*t), w + 1))
                .collect();
            format!(
                "{{\"job\": {}, \"ranks\": {}, \"workers\": {}, \"code\": {}, \"s\": {}, \
                 \"chunks\": {}, \"batch\": {}, \"iterations\": {}, \"start_s\": {}, \"end_s\": {}, \
                 \"replans\": [{}]}}",
                json_str(&j.name),
                sl.choice.workers + 1,
                sl.choice.workers,
                json_str(sl.choice.code.name()),
                sl.choice.s,
                sl.choice.chunks,
                sl.choice.batch.map_or("null".into(), |b| b.to_string()),
                sl.choice.iterations,
                json_num(sl.start_s),
                json_num(sl.end_s),
                replans.join(", ")
            )
        })
        .collect();
    format!(
        "{{\"mean_completion_s\": {}, \"max_completion_s\": {}, \"jobs\": [\n      {}\n    ]}}",
        json_num(s.mean_s()),
        json_num(s.max_s()),
        slots.join(",\n      ")
    )
}

fn plan_json(
    args: &PlanArgs,
    jobs: &[Job],
    planned: &Schedule,
    others: &[(&str, &Schedule)],
    files: &[(PathBuf, PathBuf)],
) -> String {
    let job_files: Vec<String> = jobs
        .iter()
        .zip(files)
        .map(|(j, (c, s))| {
            format!(
                "{{\"job\": {}, \"profile\": {}, \"target_iterations\": {}, \"config\": {}, \
                 \"script\": {}}}",
                json_str(&j.name),
                json_str(&j.profile.path.display().to_string()),
                j.target_iterations,
                json_str(&c.display().to_string()),
                json_str(&s.display().to_string())
            )
        })
        .collect();
    let mut schedules = vec![format!("\"plan\": {}", schedule_json(planned, jobs))];
    for (name, s) in others {
        schedules.push(format!("{}: {}", json_str(name), schedule_json(s, jobs)));
    }
    format!(
        "{{\n  \"nodes\": {},\n  \"cores_per_node\": {},\n  \"ranks\": {},\n  \"objective\": {},\n  \
         \"replan_every\": {},\n  \"files\": [\n    {}\n  ],\n  \"schedules\": {{\n    {}\n  }}\n}}\n",
        args.nodes,
        args.cores_per_node,
        args.nodes * args.cores_per_node,
        json_str(args.objective.name()),
        args.replan_every,
        job_files.join(",\n    "),
        schedules.join(",\n    ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_grid_is_dense_then_geometric_and_ends_at_the_allocation() {
        assert_eq!(worker_grid(2), vec![1]);
        assert_eq!(worker_grid(5), vec![1, 2, 3, 4]);
        let g = worker_grid(100);
        assert_eq!(&g[..16], &(1..=16).collect::<Vec<_>>()[..]);
        assert_eq!(g[16], 18);
        assert_eq!(*g.last().unwrap(), 99);
        assert!(g.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_job_script_is_train_sbatch_with_the_jobs_settings() {
        let s = job_script("a9a", 5, 30.0, Path::new("/p/a9a.toml"));
        assert!(s.contains("#SBATCH --job-name=a9a\n"));
        assert!(s.contains("#SBATCH --ntasks=5\n"));
        assert!(s.contains("#SBATCH --time=00:11:00\n"));
        assert!(s.contains(": \"${CONFIG:=/p/a9a.toml}\""));
        assert!(!s.contains("#SBATCH --nodes="));
        // The CONFIG default comes before the script reads it.
        assert!(s.find("CONFIG:=/p").unwrap() < s.find("if [[ -z \"${CONFIG:-}\" ]]").unwrap());
    }
}
