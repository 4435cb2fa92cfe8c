//! `train --adapt` (issue 22 §3; docs/tuning.md "Online adaptation"): the job's side of
//! [`crate::sim::adapt`].
//!
//! - **Workers** load, at start-up, the partitions of the starting s ([`StoredShard`]):
//!   worker w holds partitions w, …, w + s (mod n). Under the cyclic codes the partitions of
//!   any smaller s are the first s + 1 of those, so a switch down cuts the new shard from rows
//!   in memory; for a larger s, rank 0 asks first (the posts' header `count`), the worker reads
//!   the missing partitions by hyperslab in a background thread ([`StoredShard::prepare`],
//!   `io::dataset`) while it keeps computing, and confirms in its results' header `count`.
//!   Memory: up to the `--adapt-max-s` + 1 partitions plus a copy of the s + 1 in force.
//! - **Rank 0** ([`Adaptation`]) collects each worker's compute and injected seconds of the
//!   window since the last decision (on-time results and late arrivals of the window), and
//!   every `--adapt-every` iterations lets the [`Adapter`] refit and decide (a switch needs
//!   `--adapt-confirm` decisions in a row favouring it; a switch to a larger s waits for the
//!   workers' confirmations, [`Adaptation::after`]). A switch takes
//!   effect at the next iteration on every rank at once: rank 0 posts it as the parameter
//!   message's phase (phase = the s in force), decodes with that s's decoder, and a worker
//!   answers a post of phase s with the coded gradient of code s.
//!
//! - **The deadline** (`--adapt-deadline`): at each decision rank 0 also refits it from the
//!   window's arrivals ([`fit_deadline_ms`]: the [`DEADLINE_QUANTILE`] quantile of the time of
//!   the (n − s)-th arrival, s the one in force after the decision, times [`DEADLINE_MARGIN`],
//!   capped by `--deadline-ms`) and changes it when it moves by more than
//!   [`DEADLINE_CHANGE`]. Under `--on-deadline wait` (the only policy with `--adapt`) decoding
//!   stays exact: the deadline marks the point past which rank 0 is waiting for stragglers.
//!
//! - **Resume**: a checkpoint keeps [`Adaptation::state`] (the s and deadline in force, a
//!   switch being confirmed) and [`Adaptation::restore`] goes on with it; the window in
//!   progress is not kept.
//!
//! Not done here: switching the code family or chunks; dropping partitions no longer used.

use std::ops::Range;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::coding::{CodeKind, Decoder, GradientCode};
use crate::comm::collector::LateArrival;
use crate::comm::probe::AlphaBeta;
use crate::comm::{OnDeadline, Round};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::checkpoint::AdaptState;
use crate::io::dataset::{self, Split};
use crate::io::results::AdaptSwitch;
use crate::io::IoError;
use crate::sim::adapt::{AdaptSettings, Adapter, Decision};
use crate::sim::{LinkModel, Sample, SimSettings, DEFAULT_LINK, DEFAULT_OVERHEADS};

use super::coded::Shard;

/// Switch only when the predicted time per iteration drops by more than this.
pub const ADAPT_MARGIN: f64 = 0.10;
/// Simulated iterations per candidate s and decision.
const HORIZON: u64 = 200;
/// `--adapt-deadline`: the quantile of the window's (n − s)-th arrival times fitted.
pub const DEADLINE_QUANTILE: f64 = 0.95;
/// `--adapt-deadline`: the deadline is this multiple of that quantile (below the cap).
pub const DEADLINE_MARGIN: f64 = 1.5;
/// `--adapt-deadline`: the deadline changes only when the fit moves it by more than this
/// fraction.
pub const DEADLINE_CHANGE: f64 = 0.10;

/// The deadline in ms fitted to a window: per round, the time of its `k`-th arrival (seconds;
/// infinite when fewer than `k` arrived on time), their [`DEADLINE_QUANTILE`] quantile (the
/// nearest rank: the ⌈q·m⌉-th smallest of m), times [`DEADLINE_MARGIN`], at most `cap_ms`.
/// None for an empty window.
pub fn fit_deadline_ms(rounds: &[Vec<f64>], k: usize, cap_ms: f64) -> Option<f64> {
    let mut kth: Vec<f64> = rounds
        .iter()
        .map(|a| {
            let mut on_time: Vec<f64> = a.iter().copied().filter(|v| v.is_finite()).collect();
            on_time.sort_by(f64::total_cmp);
            match k {
                0 => 0.0,
                _ => on_time.get(k - 1).copied().unwrap_or(f64::INFINITY),
            }
        })
        .collect();
    if kth.is_empty() {
        return None;
    }
    kth.sort_by(f64::total_cmp);
    let rank = (DEADLINE_QUANTILE * kth.len() as f64).ceil() as usize;
    let q = kth[rank.clamp(1, kth.len()) - 1];
    Some((DEADLINE_MARGIN * q * 1e3).min(cap_ms))
}

/// `--adapt-deadline`: the deadline in force, its cap and the window's arrival times.
struct DeadlineFit {
    cap_ms: f64,
    current_ms: f64,
    /// Per round of the window, the seconds from post to each worker's arrival (NaN: none).
    rounds: Vec<Vec<f64>>,
}

/// Every code s = 0..=max_s of `cfg`'s family (None where the family has no such code).
fn codes(cfg: &RunConfig, kind: CodeKind, max_s: usize) -> Vec<Option<Box<dyn GradientCode>>> {
    (0..=max_s)
        .map(|s| {
            crate::coding::build_with(kind, cfg.workers(), s, cfg.job.seed, &cfg.code_options())
                .ok()
        })
        .collect()
}

/// Where a worker's partitions come from: the training split of `path`, `rows` rows in `k`
/// partitions.
#[derive(Debug, Clone)]
pub struct PartitionSource {
    pub path: PathBuf,
    pub rows: usize,
    pub k: usize,
}

/// Partitions being read in the background: the s they complete and the reading thread.
type Loading = (
    usize,
    JoinHandle<std::result::Result<(Dataset, Vec<Range<usize>>), IoError>>,
);

/// A worker's partitions: those of the starting s, then of larger s as rank 0 asks, read in the
/// background, up to the largest s; the shard of any s held is cut from them.
#[derive(Debug)]
pub struct StoredShard {
    w: usize,
    data: Dataset,
    /// Rows of each held partition (in the order of the code with the largest s).
    ranges: Vec<Range<usize>>,
    /// The partitions of the code with the largest s (held: the first `ranges.len()`).
    all: Vec<usize>,
    codes: Vec<Option<Box<dyn GradientCode>>>,
    source: PartitionSource,
    loading: Option<Loading>,
}

impl StoredShard {
    /// Worker `w`'s rows of the first partitions of `store` (the code with s =
    /// `--adapt-max-s`), `ranges[p]` the rows of its p-th partition. Checks that every code
    /// s ≤ max_s of the family holds a prefix of them.
    pub fn new(
        cfg: &RunConfig,
        store: &dyn GradientCode,
        w: usize,
        data: Dataset,
        ranges: Vec<Range<usize>>,
        source: PartitionSource,
    ) -> Result<StoredShard> {
        let codes = codes(cfg, store.kind(), store.max_stragglers());
        let all = store.assignment(w).to_vec();
        for code in codes.iter().flatten() {
            let a = code.assignment(w);
            if a.len() > all.len() || a != &all[..a.len()] {
                return Err(Error::Check(format!(
                    "internal: --adapt: the partitions of {} with s = {} are not a prefix of those with s = {}",
                    code.kind(),
                    code.max_stragglers(),
                    store.max_stragglers()
                )));
            }
        }
        if ranges.len() > all.len() {
            return Err(Error::Check(
                "internal: --adapt: more partitions held than the largest s has".into(),
            ));
        }
        Ok(StoredShard {
            w,
            data,
            ranges,
            all,
            codes,
            source,
            loading: None,
        })
    }

    /// The largest s.
    pub fn max_s(&self) -> usize {
        self.codes.len().saturating_sub(1)
    }

    /// The code with `s` (None: none in the family).
    pub fn code(&self, s: usize) -> Option<&dyn GradientCode> {
        self.codes.get(s).and_then(|c| c.as_deref())
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.data.n_rows()
    }

    /// The largest s whose partitions are all held.
    pub fn held_s(&self) -> usize {
        (0..self.codes.len())
            .rev()
            .find(|&s| {
                self.code(s)
                    .is_some_and(|c| c.assignment(self.w).len() <= self.ranges.len())
            })
            .unwrap_or(0)
    }

    /// Partitions the code with `s` needs beyond those held.
    fn missing(&self, s: usize) -> Vec<usize> {
        let want = self.code(s).map_or(0, |c| c.assignment(self.w).len());
        self.all[self.ranges.len()..want.max(self.ranges.len())].to_vec()
    }

    /// Rank 0 asks for the partitions of `s`: start reading the missing ones in a background
    /// thread (by hyperslab, `io::dataset`), unless they are held or being read.
    pub fn prepare(&mut self, s: usize) {
        if s <= self.held_s() || self.loading.is_some() || self.code(s).is_none() {
            return;
        }
        let parts = self.missing(s);
        let src = self.source.clone();
        log::info!(
            "[rank {}] --adapt: loading partitions {parts:?} for s = {s} in the background",
            self.w + 1
        );
        let handle = std::thread::spawn(move || {
            dataset::read_partitions(&src.path, Split::Train, src.rows, src.k, &parts)
        });
        self.loading = Some((s, handle));
    }

    /// Take in the background read if it has finished (`wait`: wait for it).
    pub fn poll(&mut self, wait: bool) -> Result<()> {
        if !self
            .loading
            .as_ref()
            .is_some_and(|(_, h)| wait || h.is_finished())
        {
            return Ok(());
        }
        let Some((s, handle)) = self.loading.take() else {
            return Ok(());
        };
        let (data, ranges) = handle.join().map_err(|_| {
            Error::Check(format!(
                "rank {}: --adapt: the thread loading partitions panicked",
                self.w + 1
            ))
        })??;
        if data.n_features() != self.data.n_features() {
            return Err(Error::Check(format!(
                "rank {}: --adapt: partitions of {} features, held ones {}",
                self.w + 1,
                data.n_features(),
                self.data.n_features()
            )));
        }
        let at = self.data.n_rows();
        self.data.append_rows(&data)?;
        self.ranges
            .extend(ranges.into_iter().map(|r| r.start + at..r.end + at));
        log::info!(
            "[rank {}] --adapt: holds the partitions of s = {} ({} rows; loaded for s = {s})",
            self.w + 1,
            self.held_s(),
            self.data.n_rows()
        );
        Ok(())
    }

    /// Hold the partitions of `s` now: wait for a background read, then read what is still
    /// missing in the foreground (a post of an s not prepared, e.g. after a resume).
    fn ensure(&mut self, s: usize) -> Result<()> {
        self.poll(true)?;
        if s > self.held_s() {
            log::info!(
                "[rank {}] --adapt: rank 0 posted s = {s} before its partitions were loaded; loading them now",
                self.w + 1
            );
            self.prepare(s);
            self.poll(true)?;
        }
        Ok(())
    }

    /// The shard of the code with `s`: the rows of its first s + 1 partitions (read first when
    /// they are not held yet).
    pub fn shard(&mut self, s: usize) -> Result<Shard> {
        self.ensure(s)?;
        let code = self.code(s).ok_or_else(|| {
            Error::Check(format!(
                "--adapt: rank 0 asked for s = {s}, which has no code"
            ))
        })?;
        let held = code.assignment(self.w).len();
        if held > self.ranges.len() {
            return Err(Error::Check(format!(
                "internal: --adapt: the partitions of s = {s} are not held"
            )));
        }
        let end = self.ranges.get(held - 1).map_or(0, |r| r.end);
        let data = self.data.slice_rows(0..end);
        Ok(Shard::new(
            code,
            self.w,
            data,
            self.ranges[..held].to_vec(),
            1,
            None,
        )?)
    }
}

/// Rank 0's adaptation: the window, the adapter, the decoders of the other s.
pub struct Adaptation {
    adapter: Adapter,
    /// Decoders of the s not in force (index s; the one in force is the engine's).
    parked: Vec<Option<Decoder>>,
    every: u64,
    /// Per worker, its samples since the last decision.
    window: Vec<Vec<Sample>>,
    /// First iteration of the window.
    from: u64,
    /// The switches not yet taken for `/adapt`.
    switches: Vec<AdaptSwitch>,
    /// `--adapt-deadline`: the deadline refitted at each decision.
    deadline: Option<DeadlineFit>,
    /// A switch to a larger s waiting for the workers to hold its partitions.
    prep: Option<Prep>,
}

/// A switch to a larger s decided but not taken: the workers are asked to load its
/// partitions (in the background), and it is taken once every worker that answered since has
/// confirmed them.
struct Prep {
    target: usize,
    /// The iteration after which it was decided.
    since: u64,
    /// Workers that answered since (on time or late).
    answered: Vec<bool>,
    gain: f64,
    reason: String,
}

impl Adaptation {
    /// Rank 0's adaptation for `cfg` (with `--adapt`) of a model of `dim` parameters, starting
    /// at `cfg.stragglers`. Messages cost what the start-up link probe measured (`probe`: α
    /// per message, at rank 0 and on the wire, and β per byte), or the simulator's defaults
    /// when it could not fit them.
    pub fn new(
        cfg: &RunConfig,
        kind: CodeKind,
        dim: usize,
        probe: Option<AlphaBeta>,
    ) -> Result<Adaptation> {
        let link = probe.map_or(DEFAULT_LINK, |p| LinkModel {
            alpha_s: p.alpha_s,
            message_s: p.alpha_s,
            beta_s_per_byte: p.beta_s_per_byte,
        });
        let max_s = cfg.adapt_max_s.unwrap_or(cfg.stragglers);
        let n = cfg.workers();
        let settings = AdaptSettings {
            kind,
            n,
            max_s,
            margin: ADAPT_MARGIN,
            confirm: cfg.adapt_confirm.max(1),
            horizon: HORIZON,
            seed: cfg.job.seed,
            sim: SimSettings {
                chunks: 1,
                deadline_s: cfg.job.deadline_ms * 1e-3,
                max_wait_s: cfg.job.max_wait_ms * 1e-3,
                on_deadline: OnDeadline::Wait,
                reuse_stale: false,
                dim,
                link,
                overheads: DEFAULT_OVERHEADS,
            },
        };
        let adapter = Adapter::new(settings, cfg.stragglers)?;
        let mut parked: Vec<Option<Decoder>> = codes(cfg, kind, max_s)
            .into_iter()
            .map(|c| c.map(Decoder::new))
            .collect();
        parked[cfg.stragglers] = None;
        Ok(Adaptation {
            adapter,
            parked,
            every: cfg.adapt_every.max(1),
            window: vec![Vec::new(); n],
            from: 0,
            switches: Vec::new(),
            deadline: cfg.adapt_deadline.then(|| DeadlineFit {
                cap_ms: cfg.job.deadline_ms,
                current_ms: cfg.job.deadline_ms,
                rounds: Vec::new(),
            }),
            prep: None,
        })
    }

    /// The state a checkpoint keeps: the s in force, the deadline in force and the switch
    /// being confirmed (the window of samples since the last decision is not kept).
    pub fn state(&self) -> AdaptState {
        AdaptState {
            s: self.current() as u64,
            deadline_ms: self.deadline_ms(),
            pending: self.adapter.pending().cloned(),
        }
    }

    /// Resume at iteration `next` from a checkpoint's `state`: the s it was in force (on a
    /// change, `decoder`, the engine's, becomes that s's), its deadline (at most the cap) and
    /// its pending switch. The first window starts at `next`. False, with a warning and nothing
    /// changed but the window, when the s is not one this run can switch to (another
    /// `--adapt-max-s`): the run starts at `--stragglers`.
    pub fn restore(
        &mut self,
        state: &AdaptState,
        next: u64,
        decoder: &mut Decoder,
    ) -> Result<bool> {
        self.from = next;
        let old = self.current();
        let s = usize::try_from(state.s).unwrap_or(usize::MAX);
        let parked = s != old && self.parked.get(s).is_some_and(Option::is_some);
        if (s != old && !parked) || !self.adapter.restore(s, state.pending.clone()) {
            log::warn!(
                "[rank 0] --adapt: the checkpoint's s = {} is not one of this run's (up to --adapt-max-s {}); starting again at s = {old}",
                state.s,
                self.max_s()
            );
            return Ok(false);
        }
        if s != old {
            let mut next_decoder = self.parked[s].take().ok_or_else(|| {
                Error::Check(format!("internal: --adapt: no decoder for s = {s}"))
            })?;
            std::mem::swap(decoder, &mut next_decoder);
            self.parked[old] = Some(next_decoder);
        }
        if let Some(f) = &mut self.deadline {
            match state.deadline_ms.filter(|d| d.is_finite() && *d > 0.0) {
                Some(d) => f.current_ms = d.min(f.cap_ms),
                None => log::warn!(
                    "[rank 0] --adapt-deadline: the checkpoint holds no deadline; starting again at --deadline-ms {:.3}",
                    f.cap_ms
                ),
            }
        }
        Ok(true)
    }

    /// Make `decoder` (the engine's, for `old`) the decoder of `new`.
    fn swap_decoder(&mut self, old: usize, new: usize, decoder: &mut Decoder) -> Result<()> {
        let mut next = self.parked[new]
            .take()
            .ok_or_else(|| Error::Check(format!("internal: --adapt: no decoder for s = {new}")))?;
        std::mem::swap(decoder, &mut next);
        self.parked[old] = Some(next);
        Ok(())
    }

    /// Take the prepared switch after iteration `t` when the workers that answered since it
    /// was decided all hold its partitions, and at least n − s do.
    fn take_prepared(
        &mut self,
        t: u64,
        decoder: &mut Decoder,
        held: &[u64],
    ) -> Result<Option<Decision>> {
        let Some(p) = &self.prep else {
            return Ok(None);
        };
        let holds = |w: usize| held.get(w).is_some_and(|&h| h as usize >= p.target);
        let n = p.answered.len();
        let ready = (0..n).all(|w| !p.answered[w] || holds(w))
            && (0..n).filter(|&w| holds(w)).count() >= n - p.target;
        if !ready {
            return Ok(None);
        }
        let Some(p) = self.prep.take() else {
            return Ok(None);
        };
        let old = self.current();
        self.swap_decoder(old, p.target, decoder)?;
        if !self.adapter.set_current(p.target) {
            return Err(Error::Check(format!(
                "internal: --adapt: s = {} is not allowed",
                p.target
            )));
        }
        let reason = format!(
            "{}; taken once the workers that answered since iteration {} held its partitions, loaded in the background",
            p.reason, p.since
        );
        let current = self.deadline_ms();
        self.switches.push(AdaptSwitch {
            iteration: t,
            old_s: old as u64,
            new_s: p.target as u64,
            gain: p.gain,
            reason: reason.clone(),
            deadline_ms: current.map(|c| (c, c)),
        });
        Ok(Some(Decision {
            old_s: old,
            new_s: p.target,
            predicted_s: Vec::new(),
            gain: p.gain,
            streak: 0,
            reason,
        }))
    }

    /// The switches since the last call, in order (each is taken once, for `/adapt`).
    pub fn take_switches(&mut self) -> Vec<AdaptSwitch> {
        std::mem::take(&mut self.switches)
    }

    /// The s in force.
    pub fn current(&self) -> usize {
        self.adapter.current()
    }

    /// The s whose partitions the workers are asked to hold: the one being prepared, else the
    /// one in force.
    pub fn prepare_target(&self) -> usize {
        self.prep.as_ref().map_or(self.current(), |p| p.target)
    }

    /// The largest s.
    pub fn max_s(&self) -> usize {
        self.adapter.settings().max_s
    }

    /// `--adapt-deadline`: the deadline in force, in ms (None without it).
    pub fn deadline_ms(&self) -> Option<f64> {
        self.deadline.as_ref().map(|d| d.current_ms)
    }

    fn sample(&self, compute_s: f64, injected_s: f64) -> Option<Sample> {
        (compute_s.is_finite() && injected_s.is_finite()).then(|| Sample {
            compute_per_share_s: compute_s / self.adapter.share(self.current()),
            slow_factor: 1.0,
            delay_s: injected_s,
        })
    }

    /// The on-time results of a round and the late arrivals drained during it.
    pub fn observe(&mut self, round: &Round, late: &[LateArrival]) {
        if let Some(d) = &mut self.deadline {
            d.rounds.push(round.arrival_s.clone());
        }
        if let Some(p) = &mut self.prep {
            for (w, a) in p.answered.iter_mut().enumerate() {
                *a |= round.parts_in[w] > 0;
            }
            for l in late {
                if let Some(a) = p.answered.get_mut(l.rank.wrapping_sub(1)) {
                    *a = true;
                }
            }
        }
        for w in 0..self.window.len() {
            if round.parts_in[w] > 0 {
                if let Some(s) = self.sample(round.compute_s[w], round.injected_s[w]) {
                    self.window[w].push(s);
                }
            }
        }
        for l in late.iter().filter(|l| l.iteration >= self.from) {
            if let Some(s) = self.sample(l.compute_s, l.injected_s) {
                if let Some(v) = self.window.get_mut(l.rank.wrapping_sub(1)) {
                    v.push(s);
                }
            }
        }
    }

    /// At the end of iteration `t`: when a decision is due, refit and decide; on a switch,
    /// `decoder` (the engine's, for the s in force) becomes the new s's. The decision, when
    /// one was made.
    ///
    /// A switch to a larger s is taken only once the workers hold its partitions (`held`: per
    /// worker, the largest s its last result said it holds): when some do not, it is prepared
    /// instead (the posts ask for them, [`Self::prepare_target`]) and taken after a later
    /// iteration, once every worker that answered since has confirmed and at least n − s have
    /// (a silent worker is a straggler; it loads the partitions when it gets the new s). A
    /// decision due at the iteration a prepared switch is taken is skipped; one that favours no
    /// switch cancels the preparation.
    pub fn after(
        &mut self,
        t: u64,
        decoder: &mut Decoder,
        held: &[u64],
    ) -> Result<Option<Decision>> {
        if let Some(d) = self.take_prepared(t, decoder, held)? {
            self.window.iter_mut().for_each(Vec::clear);
            self.from = t + 1;
            if let Some(f) = &mut self.deadline {
                f.rounds.clear();
            }
            return Ok(Some(d));
        }
        if (t + 1) % self.every != 0 {
            return Ok(None);
        }
        let mut d = self.adapter.decide(&self.window)?;
        self.window.iter_mut().for_each(Vec::clear);
        self.from = t + 1;
        let everyone = |s: usize| held.iter().all(|&h| h as usize >= s);
        if d.switches() && d.new_s > d.old_s && !everyone(d.new_s) {
            self.adapter.set_current(d.old_s);
            self.prep = Some(Prep {
                target: d.new_s,
                since: t,
                answered: vec![false; self.window.len()],
                gain: d.gain,
                reason: d.reason.clone(),
            });
            d.reason = format!(
                "{}; preparing s = {}: the workers load its partitions in the background",
                d.reason, d.new_s
            );
            d.new_s = d.old_s;
            d.gain = 0.0;
        } else if d.switches() || d.streak == 0 {
            self.prep = None;
        }
        if d.switches() {
            self.swap_decoder(d.old_s, d.new_s, decoder)?;
        }
        let n = self.window.len();
        let deadline = self.deadline.as_mut().and_then(|f| {
            let k = n - d.new_s;
            let fitted = fit_deadline_ms(&f.rounds, k, f.cap_ms);
            let m = f.rounds.len();
            f.rounds.clear();
            let new = fitted.filter(|&v| (v - f.current_ms).abs() > DEADLINE_CHANGE * f.current_ms)?;
            let old = std::mem::replace(&mut f.current_ms, new);
            let why = format!(
                "deadline {old:.3} -> {new:.3} ms: {DEADLINE_MARGIN} × the {:.0} % quantile of the time of arrival {k} of {n} (n − s) over {m} iterations (cap {:.3} ms)",
                DEADLINE_QUANTILE * 100.0,
                f.cap_ms
            );
            Some((old, new, why))
        });
        if d.switches() || deadline.is_some() {
            let (reason, gain) = match (&deadline, d.switches()) {
                (Some((_, _, why)), true) => (format!("{}; {why}", d.reason), d.gain),
                (Some((_, _, why)), false) => (why.clone(), f64::NAN),
                (None, _) => (d.reason.clone(), d.gain),
            };
            let current = self.deadline_ms();
            self.switches.push(AdaptSwitch {
                iteration: t,
                old_s: d.old_s as u64,
                new_s: d.new_s as u64,
                gain,
                reason,
                deadline_ms: deadline
                    .map(|(old, new, _)| (old, new))
                    .or(current.map(|c| (c, c))),
            });
        }
        Ok(Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_fit_is_the_margin_times_the_quantile_of_the_kth_arrival_below_the_cap() {
        let nan = f64::NAN;
        // 20 rounds of 4 workers: the 3rd arrival of round r is (r + 1) ms, the 4th 50 ms.
        let rounds: Vec<Vec<f64>> = (0..20)
            .map(|r| {
                let third = (r + 1) as f64 * 1e-3;
                vec![0.05, third * 0.5, third, third * 0.25]
            })
            .collect();
        // The 95 % nearest rank of 20 is the 19th smallest: 19 ms, × 1.5.
        let fit = fit_deadline_ms(&rounds, 3, 1e4).unwrap();
        assert!((fit - 1.5 * 19.0).abs() < 1e-9, "{fit}");
        assert!((fit_deadline_ms(&rounds, 4, 1e4).unwrap() - 75.0).abs() < 1e-9);
        // Capped by the user's deadline.
        assert_eq!(fit_deadline_ms(&rounds, 3, 20.0), Some(20.0));
        // The 4th arrival missing (NaN: not on time) in one round of 20: the 19th smallest is
        // still 50 ms; in two, it is unknown (infinite) and the fit is the cap.
        let mut missing = rounds.clone();
        missing[0][0] = nan;
        assert!((fit_deadline_ms(&missing, 4, 300.0).unwrap() - 75.0).abs() < 1e-9);
        missing[1][0] = nan;
        assert_eq!(fit_deadline_ms(&missing, 4, 300.0), Some(300.0));
        assert_eq!(fit_deadline_ms(&[], 3, 300.0), None);
        // A single round: its k-th arrival.
        let one = [vec![0.004, 0.001, nan]];
        assert!((fit_deadline_ms(&one, 2, 1e4).unwrap() - 6.0).abs() < 1e-9);
    }
}
