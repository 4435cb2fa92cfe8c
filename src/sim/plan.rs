//! Sharing one allocation among several training jobs (issue 22 §4; GUIDE §8, Pollux): how many
//! ranks each job gets, and the schedule that follows, from each job's predicted completion
//! time at every worker count.
//!
//! Input per job: a [`JobCurve`], the predicted seconds to its target with n workers (n + 1
//! ranks: rank 0 coordinates) and the configuration (code, s, chunks) that achieves it, for
//! the worker counts evaluated. The caller (`gradcode plan`) fills it by simulating the job's
//! profiling run ([`crate::sim::Simulator`]) for each candidate configuration at each n: the
//! predicted time is iterations to target ÷ goodput, and goodput is Pollux's throughput ×
//! statistical efficiency. For a full-batch job the statistical efficiency is 1 (every
//! iteration is one full gradient whatever n; an approximate decode counts as the fraction of
//! an iteration of `gradcode tune`), so goodput is the simulated throughput. For a minibatch
//! job (`--batch B` rows per partition, so k·B rows an iteration with k partitions) the caller
//! also chooses B per worker count, and its iterations to target follow the gradient noise
//! scale of the profile ([`crate::sim::efficiency`]): more workers mean a larger total batch,
//! worth fewer than proportionally fewer iterations.
//!
//! Allocation ([`allocate`]): every job starts at one worker; ranks are then handed out
//! greedily: for `mean`, to the job and worker count with the largest decrease of its time per
//! rank added; for `max`, to the job whose time is the largest while that improves it, then
//! (the max fixed) to the others as for `mean`. A job
//! with a fixed rank count keeps it. Schedules ([`schedule`]): the plan runs every job at once
//! from time 0; with `replan_every = k`, after every k completions the ranks of finished jobs
//! are re-allocated among the running ones (their remaining work a fraction of their time at
//! the new worker count: in the simulated schedule only; a real job would restart from its
//! checkpoint with the new rank count, and that restart is not costed). The baselines: an
//! equal split of the ranks among all jobs at once, and FIFO (one job after another, each with
//! every rank), each job with its best configuration at its worker count.
//!
//! Not modelled: the change of the noise scale during training (Pollux refits it as the job
//! runs; the plan uses the profile's), contention between jobs on shared nodes, queueing
//! delays of the batch system.

use super::SimError;
use crate::coding::CodeKind;

/// What the plan minimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlanObjective {
    /// The mean completion time of the jobs.
    #[default]
    Mean,
    /// The last completion time (makespan).
    Max,
}

impl PlanObjective {
    /// Its `--objective` name.
    pub fn name(self) -> &'static str {
        match self {
            PlanObjective::Mean => "mean",
            PlanObjective::Max => "max",
        }
    }
}

/// The best predicted configuration of a job at one worker count.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub workers: usize,
    pub code: CodeKind,
    pub s: usize,
    pub chunks: usize,
    /// `--batch` rows per partition (None: full partitions).
    pub batch: Option<usize>,
    /// Iterations to target with this choice (for a minibatch job, Pollux's prediction at its
    /// batch and worker count).
    pub iterations: u64,
    /// Predicted seconds from start to target.
    pub time_s: f64,
}

/// A job's predicted completion time by worker count.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCurve {
    pub name: String,
    /// One entry per evaluated worker count, ascending by workers; finite times only.
    pub choices: Vec<Choice>,
    /// Ranks the job must have (its file's `ranks`), else the plan chooses.
    pub fixed_ranks: Option<usize>,
}

impl JobCurve {
    /// The choice at exactly `workers`.
    pub fn at(&self, workers: usize) -> Option<&Choice> {
        self.choices.iter().find(|c| c.workers == workers)
    }
    /// The best choice with at most `workers` workers (FIFO and the equal split take the
    /// largest evaluated count that fits).
    fn within(&self, workers: usize) -> Option<&Choice> {
        self.choices
            .iter()
            .filter(|c| c.workers <= workers)
            .min_by(|a, b| a.time_s.total_cmp(&b.time_s))
    }
    fn smallest(&self) -> Option<&Choice> {
        match self.fixed_ranks {
            Some(r) => self.at(r.saturating_sub(1)),
            None => self.choices.first(),
        }
    }
}

/// Worker counts (one per job) minimizing `objective` within `ranks` (see the module docs);
/// `remaining[j]` scales job j's times (the fraction of its work left; 1 at the start).
pub fn allocate(
    jobs: &[JobCurve],
    ranks: usize,
    objective: PlanObjective,
    remaining: &[f64],
) -> Result<Vec<usize>, SimError> {
    let mut alloc = Vec::with_capacity(jobs.len());
    for j in jobs {
        let c = j.smallest().ok_or_else(|| {
            SimError::invalid(
                "plan",
                &j.name,
                match j.fixed_ranks {
                    Some(r) => format!("no configuration could be simulated with {r} ranks"),
                    None => "no configuration could be simulated at any worker count".into(),
                },
            )
        })?;
        alloc.push(c.workers);
    }
    let used: usize = alloc.iter().map(|w| w + 1).sum();
    if used > ranks {
        return Err(SimError::invalid(
            "plan",
            format!("{used} ranks"),
            format!(
                "the jobs need at least {used} ranks (their fixed ranks, else 2 each: rank 0 and \
                 one worker), more than the allocation's {ranks}"
            ),
        ));
    }
    let time = |j: usize, w: usize| {
        jobs[j]
            .at(w)
            .map_or(f64::INFINITY, |c| c.time_s * remaining[j])
    };
    let mut free = ranks - used;
    loop {
        // Max: only the slowest job's time decides; when it cannot be shortened, the spare
        // ranks shorten the others (the max does not grow, the mean falls).
        let worst =
            (0..jobs.len()).max_by(|&a, &b| time(a, alloc[a]).total_cmp(&time(b, alloc[b])));
        let step = match objective {
            PlanObjective::Mean => None,
            PlanObjective::Max => {
                best_move(jobs, worst.into_iter(), &alloc, free, &time, remaining)
            }
        }
        .or_else(|| best_move(jobs, 0..jobs.len(), &alloc, free, &time, remaining));
        let Some((j, w)) = step else {
            return Ok(alloc);
        };
        free -= w - alloc[j];
        alloc[j] = w;
    }
}

/// Among `order`, the move (job, new workers) within `free` spare ranks with the largest
/// decrease of the job's time per rank added; None when no move shortens a job.
fn best_move(
    jobs: &[JobCurve],
    order: impl Iterator<Item = usize>,
    alloc: &[usize],
    free: usize,
    time: &dyn Fn(usize, usize) -> f64,
    remaining: &[f64],
) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, f64)> = None;
    for j in order {
        if jobs[j].fixed_ranks.is_some() {
            continue;
        }
        let now = time(j, alloc[j]);
        for c in jobs[j].choices.iter().filter(|c| c.workers > alloc[j]) {
            let extra = c.workers - alloc[j];
            if extra > free {
                continue;
            }
            let gain = (now - c.time_s * remaining[j]) / extra as f64;
            if gain > 0.0 && !matches!(best, Some(b) if b.2 >= gain) {
                best = Some((j, c.workers, gain));
            }
        }
    }
    best.map(|(j, w, _)| (j, w))
}

/// Which schedule to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// [`allocate`], all jobs at once; re-allocate after every `replan_every` completions
    /// (0: never).
    Plan {
        objective: PlanObjective,
        replan_every: usize,
    },
    /// Every job at once with an equal share of the ranks.
    EqualSplit,
    /// One job after another in file order, each with every rank.
    Fifo,
}

/// One job in a simulated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The configuration it starts with.
    pub choice: Choice,
    pub start_s: f64,
    pub end_s: f64,
    /// Worker counts after each re-plan that changed them (time, workers).
    pub replans: Vec<(f64, usize)>,
}

/// A simulated schedule of all jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub slots: Vec<Slot>,
}

impl Schedule {
    /// Mean completion time.
    pub fn mean_s(&self) -> f64 {
        self.slots.iter().map(|s| s.end_s).sum::<f64>() / self.slots.len().max(1) as f64
    }
    /// Last completion time.
    pub fn max_s(&self) -> f64 {
        self.slots.iter().map(|s| s.end_s).fold(0.0, f64::max)
    }
}

/// Simulate `policy` over `jobs` on `ranks` ranks.
pub fn schedule(jobs: &[JobCurve], ranks: usize, policy: Policy) -> Result<Schedule, SimError> {
    match policy {
        Policy::Plan {
            objective,
            replan_every,
        } => plan_schedule(jobs, ranks, objective, replan_every),
        Policy::EqualSplit => {
            let share = ranks / jobs.len().max(1);
            let slots = jobs
                .iter()
                .map(|j| {
                    let w = j.fixed_ranks.unwrap_or(share).saturating_sub(1);
                    let c = j.within(w).ok_or_else(|| too_few(j, w + 1))?;
                    Ok(slot(c.clone(), 0.0))
                })
                .collect::<Result<_, SimError>>()?;
            Ok(Schedule { slots })
        }
        Policy::Fifo => {
            let mut t = 0.0;
            let mut slots = Vec::with_capacity(jobs.len());
            for j in jobs {
                let w = j.fixed_ranks.unwrap_or(ranks).saturating_sub(1);
                let c = j.within(w).ok_or_else(|| too_few(j, w + 1))?;
                let s = slot(c.clone(), t);
                t = s.end_s;
                slots.push(s);
            }
            Ok(Schedule { slots })
        }
    }
}

fn slot(choice: Choice, start_s: f64) -> Slot {
    Slot {
        end_s: start_s + choice.time_s,
        choice,
        start_s,
        replans: Vec::new(),
    }
}

fn too_few(j: &JobCurve, ranks: usize) -> SimError {
    SimError::invalid(
        "plan",
        &j.name,
        format!("no configuration could be simulated within {ranks} ranks"),
    )
}

/// The plan's schedule: all jobs at once, re-allocated after every `replan_every` completions.
fn plan_schedule(
    jobs: &[JobCurve],
    ranks: usize,
    objective: PlanObjective,
    replan_every: usize,
) -> Result<Schedule, SimError> {
    let k = jobs.len();
    let alloc = allocate(jobs, ranks, objective, &vec![1.0; k])?;
    let mut slots: Vec<Slot> = jobs
        .iter()
        .zip(&alloc)
        .map(|(j, &w)| {
            j.at(w)
                .map(|c| slot(c.clone(), 0.0))
                .ok_or_else(|| too_few(j, w + 1))
        })
        .collect::<Result<_, _>>()?;
    if replan_every == 0 {
        return Ok(Schedule { slots });
    }
    // Event loop: the fraction of each job's work left, its current workers and time rate.
    let mut left = vec![1.0; k];
    let mut workers = alloc;
    let mut now = 0.0;
    let mut done = vec![false; k];
    let mut finished = 0usize;
    while finished < k {
        let next = (0..k)
            .filter(|&j| !done[j])
            .min_by(|&a, &b| slots[a].end_s.total_cmp(&slots[b].end_s));
        let Some(j) = next else { break };
        let t = slots[j].end_s;
        for i in (0..k).filter(|&i| !done[i]) {
            let full = jobs[i].at(workers[i]).map_or(f64::INFINITY, |c| c.time_s);
            left[i] = (left[i] - (t - now) / full).max(0.0);
        }
        now = t;
        done[j] = true;
        left[j] = 0.0;
        finished += 1;
        if finished % replan_every != 0 || finished == k {
            continue;
        }
        let running: Vec<usize> = (0..k).filter(|&i| !done[i]).collect();
        let sub: Vec<JobCurve> = running.iter().map(|&i| jobs[i].clone()).collect();
        let rem: Vec<f64> = running.iter().map(|&i| left[i]).collect();
        let new = allocate(&sub, ranks, objective, &rem)?;
        for (&i, &w) in running.iter().zip(&new) {
            if w != workers[i] {
                workers[i] = w;
                slots[i].replans.push((now, w));
            }
            let full = jobs[i].at(w).map_or(f64::INFINITY, |c| c.time_s);
            slots[i].end_s = now + left[i] * full;
        }
    }
    Ok(Schedule { slots })
}
