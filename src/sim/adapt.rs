//! Online adaptation of the code's s (issue 22 §3; GUIDE §3, §8): from the per-worker compute
//! times and injected delays of the last window of iterations, refit each worker's model (the
//! same empirical per-worker distribution `gradcode tune` fits from a profile: a replay
//! [`Trace`] of the window) and predict the iteration time of every code s = 0..=max_s the
//! workers' stored partitions allow by simulating it ([`Simulator`], the one simulator). The
//! [`Adapter`] switches to the fastest only when its predicted gain over the current s exceeds
//! a margin (hysteresis) in `confirm` consecutive windows, all towards a larger s or all
//! towards a smaller s (confirmation): one noisy window, or a burst of contention shorter than
//! `confirm` windows, does not make it switch, and two switches are at least `confirm`
//! decisions apart. The one exception: when the s in force cannot finish at all on the window
//! (a worker silent the whole window, which it does not tolerate), it switches at once.
//!
//! Compute times are rescaled by the share of the data: a sample measured under the current
//! code (share (s + 1)/n for the cyclic codes) is stored per unit share, and the simulator
//! multiplies it by each candidate's share, so a smaller s is predicted to compute less.
//!
//! Pure and MPI-free. It does not choose the deadline: `train --adapt` runs under
//! `--on-deadline wait` (exact decoding every iteration), where the deadline only marks the
//! stragglers; `--adapt-deadline` refits it from the arrivals in `train::adapt`. It does not
//! choose the code family, chunks or batch.

use super::des::{SimSettings, Simulator};
use super::trace::{ReplayOrder, Sample, Trace, TraceFile};
use super::workload::Workload;
use super::SimError;
use crate::coding::CodeKind;

/// What the adapter chooses among, and how it predicts.
#[derive(Debug, Clone)]
pub struct AdaptSettings {
    /// The code family (its layouts for s ≤ `max_s` must nest: cyclic codes).
    pub kind: CodeKind,
    pub n: usize,
    /// The largest s the stored partitions allow.
    pub max_s: usize,
    /// Switch only when the predicted time per iteration drops by more than this fraction.
    pub margin: f64,
    /// ... in this many consecutive decisions, all towards a larger s or all towards a smaller
    /// s (1: on one window).
    pub confirm: usize,
    /// Simulated iterations per candidate and decision.
    pub horizon: u64,
    /// Seed of the codes and of the replay's draws.
    pub seed: u64,
    /// The job's settings (chunks, deadline policy, dim, link, overheads).
    pub sim: SimSettings,
}

/// One decision: the predicted seconds per iteration of every s and the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The s in force before the decision.
    pub old_s: usize,
    /// The s chosen (equal to `old_s` when the adapter keeps it).
    pub new_s: usize,
    /// Predicted mean seconds per iteration for s = 0..=max_s (inf: cannot finish, e.g. a
    /// silent worker with s = 0; NaN: no code with that s).
    pub predicted_s: Vec<f64>,
    /// Predicted relative gain of `new_s` over `old_s`: 1 − t(new)/t(old) (0 when kept).
    pub gain: f64,
    /// Consecutive decisions, this one included, whose best s beat the s in force by more than
    /// the margin in the same direction (0: this one did not; reset after a switch).
    pub streak: usize,
    /// Why: one line for the records.
    pub reason: String,
}

impl Decision {
    /// Whether the decision changes s.
    pub fn switches(&self) -> bool {
        self.new_s != self.old_s
    }
}

/// The s in force and the rule that changes it.
#[derive(Debug, Clone)]
pub struct Adapter {
    set: AdaptSettings,
    current: usize,
    /// The s ≤ `max_s` for which the code exists (e.g. the real cyclic MDS code needs n − s
    /// odd).
    allowed: Vec<usize>,
    /// The pending switch: its direction (true: a larger s) and the gains of its decisions.
    pending: Option<(bool, Vec<f64>)>,
}

impl Adapter {
    /// An adapter starting at `initial_s`.
    pub fn new(settings: AdaptSettings, initial_s: usize) -> Result<Adapter, SimError> {
        if settings.max_s >= settings.n {
            return Err(SimError::invalid(
                "adapt-max-s",
                settings.max_s,
                format!("must be below the {} workers", settings.n),
            ));
        }
        if initial_s > settings.max_s {
            return Err(SimError::invalid(
                "stragglers",
                initial_s,
                format!("must be at most --adapt-max-s {}", settings.max_s),
            ));
        }
        if !(settings.margin.is_finite() && (0.0..1.0).contains(&settings.margin)) {
            return Err(SimError::invalid(
                "adapt-margin",
                settings.margin,
                "must be in [0, 1)",
            ));
        }
        if settings.confirm == 0 {
            return Err(SimError::invalid(
                "adapt-confirm",
                settings.confirm,
                "must be at least 1",
            ));
        }
        let allowed: Vec<usize> = (0..=settings.max_s)
            .filter(|&s| crate::coding::build(settings.kind, settings.n, s, settings.seed).is_ok())
            .collect();
        if !allowed.contains(&initial_s) {
            return Err(SimError::invalid(
                "stragglers",
                initial_s,
                format!(
                    "{} has no code with s = {initial_s} for {} workers",
                    settings.kind.name(),
                    settings.n
                ),
            ));
        }
        Ok(Adapter {
            set: settings,
            current: initial_s,
            allowed,
            pending: None,
        })
    }

    /// The s the adapter chooses among (increasing).
    pub fn allowed(&self) -> &[usize] {
        &self.allowed
    }

    /// The s in force.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Set the s in force (resume from a checkpoint); false (and unchanged) when `s` is not
    /// one of [`Self::allowed`].
    pub fn set_current(&mut self, s: usize) -> bool {
        let ok = self.allowed.contains(&s);
        if ok {
            self.current = s;
            self.pending = None;
        }
        ok
    }

    /// The switch being confirmed: its direction (true: a larger s) and the predicted gains of
    /// the decisions in a row that favoured it (None: none).
    pub fn pending(&self) -> Option<&(bool, Vec<f64>)> {
        self.pending.as_ref()
    }

    /// Resume from a checkpoint: the s in force and the switch being confirmed; false (and
    /// unchanged) when `s` is not one of [`Self::allowed`]. A pending streak of `confirm` or
    /// more decisions (another `--adapt-confirm` than the checkpointed run's) is cut to
    /// `confirm` − 1, so that the next favouring decision confirms it.
    pub fn restore(&mut self, s: usize, pending: Option<(bool, Vec<f64>)>) -> bool {
        if !self.set_current(s) {
            return false;
        }
        let keep = self.set.confirm.saturating_sub(1);
        self.pending = pending
            .map(|(up, mut g)| {
                let cut = g.len().saturating_sub(keep);
                g.drain(..cut);
                (up, g)
            })
            .filter(|(up, g)| !g.is_empty() && (*up || s > 0) && (!*up || s < self.set.max_s));
        true
    }

    /// The settings.
    pub fn settings(&self) -> &AdaptSettings {
        &self.set
    }

    /// Share of the data worker-held under s (the cyclic codes: s + 1 of n partitions).
    pub fn share(&self, s: usize) -> f64 {
        (s + 1) as f64 / self.set.n as f64
    }

    /// Predicted mean seconds per iteration of the code with `s` on the replay of `window`
    /// (per worker, its samples; a worker without any is treated as failed).
    pub fn predict(&self, window: &[Vec<Sample>], s: usize) -> Result<f64, SimError> {
        let failed = Sample {
            compute_per_share_s: 0.0,
            slow_factor: 1.0,
            delay_s: f64::INFINITY,
        };
        let workers = (0..self.set.n)
            .map(|w| match window.get(w) {
                Some(v) if !v.is_empty() => v.clone(),
                _ => vec![failed],
            })
            .collect();
        let file = TraceFile::of_samples("adapt-window", workers);
        let trace = Trace::new(
            std::slice::from_ref(&file),
            self.set.n,
            ReplayOrder::Sample,
            self.set.seed,
            false,
        )?;
        let code = crate::coding::build(self.set.kind, self.set.n, s, self.set.seed)?;
        let mut sim = Simulator::new(code, self.set.sim.clone(), Workload::Replay(trace))?;
        let mut total = 0.0;
        for _ in 0..self.set.horizon.max(1) {
            match sim.step() {
                Ok(r) => total += r.wall_s,
                Err(SimError::Timeout { .. }) => return Ok(f64::INFINITY),
                Err(e) => return Err(e),
            }
        }
        Ok(total / self.set.horizon.max(1) as f64)
    }

    /// Refit from `window` and decide; the s in force becomes the decision's `new_s`.
    pub fn decide(&mut self, window: &[Vec<Sample>]) -> Result<Decision, SimError> {
        let mut predicted = vec![f64::NAN; self.set.max_s + 1];
        for &s in &self.allowed {
            predicted[s] = self.predict(window, s)?;
        }
        let old = self.current;
        let best = self
            .allowed
            .iter()
            .copied()
            .min_by(|&a, &b| predicted[a].total_cmp(&predicted[b]))
            .unwrap_or(old);
        let (t_old, t_best) = (predicted[old], predicted[best]);
        let gain = if t_old.is_infinite() && t_best.is_finite() {
            1.0
        } else if t_old > 0.0 && t_old.is_finite() {
            1.0 - t_best / t_old
        } else {
            0.0
        };
        let favours = best != old && gain > self.set.margin;
        // The streak of decisions favouring a switch in this direction, this one included.
        let gains = match (favours, self.pending.take()) {
            (false, _) => Vec::new(),
            (true, Some((up, mut g))) if up == (best > old) => {
                g.push(gain);
                g
            }
            (true, _) => vec![gain],
        };
        let streak = gains.len();
        let confirm = self.set.confirm;
        let stuck = t_old.is_infinite() && t_best.is_finite();
        let switch = favours && (streak >= confirm || stuck);
        let percent = |g: &[f64]| {
            g.iter()
                .map(|v| format!("{:.1} %", v * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reason = if switch {
            let why = if streak >= confirm && confirm > 1 {
                format!(", in {streak} windows in a row (gains {})", percent(&gains))
            } else if stuck && confirm > 1 {
                format!(" (s = {old} cannot finish: at once, without confirmation)")
            } else {
                String::new()
            };
            format!(
                "predicted {:.3} ms per iteration with s = {best} against {:.3} ms with s = {old}{why}",
                t_best * 1e3,
                t_old * 1e3
            )
        } else if favours {
            format!(
                "kept s = {old}: best s = {best} gains {:.1} % (margin {:.1} %), {streak} of {confirm} windows in a row",
                gain * 100.0,
                self.set.margin * 100.0
            )
        } else {
            format!(
                "kept s = {old}: best s = {best} gains {:.1} % (margin {:.1} %)",
                gain.max(0.0) * 100.0,
                self.set.margin * 100.0
            )
        };
        if favours && !switch {
            self.pending = Some((best > old, gains));
        }
        let new_s = if switch { best } else { old };
        self.current = new_s;
        Ok(Decision {
            old_s: old,
            new_s,
            predicted_s: predicted,
            gain: if switch { gain } else { 0.0 },
            streak: if favours { streak } else { 0 },
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::OnDeadline;
    use crate::sim::{DEFAULT_LINK, DEFAULT_OVERHEADS};

    const N: usize = 6;

    fn settings(max_s: usize) -> AdaptSettings {
        AdaptSettings {
            kind: CodeKind::CyclicRepetition,
            n: N,
            max_s,
            margin: 0.1,
            confirm: 1,
            horizon: 100,
            seed: 7,
            sim: SimSettings {
                chunks: 1,
                deadline_s: 0.05,
                max_wait_s: 30.0,
                on_deadline: OnDeadline::Wait,
                reuse_stale: false,
                dim: 100,
                link: DEFAULT_LINK,
                overheads: DEFAULT_OVERHEADS,
            },
        }
    }

    /// A window of `iters` iterations: every worker computes 60 ms per unit share with ±10 %
    /// noise (seeded by `seed`) and draws a small delay, except `slow` workers, who add 150 ms.
    fn window(iters: usize, slow: &[usize], seed: u64) -> Vec<Vec<Sample>> {
        (0..N)
            .map(|w| {
                (0..iters)
                    .map(|t| {
                        let u = crate::straggler::uniform(seed, t as u64, w + 1, 1);
                        let v = crate::straggler::uniform(seed, t as u64, w + 1, 2);
                        let extra = if slow.contains(&w) { 0.15 } else { 0.0 };
                        Sample {
                            compute_per_share_s: 0.06 * (0.9 + 0.2 * u),
                            slow_factor: 1.0,
                            delay_s: 0.002 * v + extra,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_calm_regime_picks_the_smallest_s() {
        let mut a = Adapter::new(settings(3), 2).unwrap();
        let d = a.decide(&window(20, &[], 1)).unwrap();
        assert_eq!(d.new_s, 0, "{d:?}");
        assert!(d.switches() && d.gain > 0.1, "{d:?}");
        // Predicted time grows with s: every worker computes more.
        assert!(d.predicted_s.windows(2).all(|p| p[0] < p[1]), "{d:?}");
    }

    #[test]
    fn persistently_slow_workers_pick_a_larger_s() {
        let mut a = Adapter::new(settings(3), 0).unwrap();
        let d = a.decide(&window(20, &[1], 2)).unwrap();
        assert_eq!(d.new_s, 1, "one slow worker: {d:?}");
        let d = a.decide(&window(20, &[1, 4], 3)).unwrap();
        assert_eq!((d.old_s, d.new_s), (1, 2), "two slow workers: {d:?}");
        assert_eq!(a.current(), 2);
        // And back once they recover.
        let d = a.decide(&window(20, &[], 4)).unwrap();
        assert_eq!(d.new_s, 0, "{d:?}");
    }

    #[test]
    fn a_silent_worker_rules_out_s_zero() {
        let mut w = window(20, &[], 5);
        w[2].clear();
        let a = Adapter::new(settings(2), 0).unwrap();
        assert!(a.predict(&w, 0).unwrap().is_infinite());
        assert!(a.predict(&w, 1).unwrap().is_finite());
    }

    #[test]
    fn a_stationary_noisy_regime_does_not_flap() {
        // One worker slow about half the time: s = 0 and s = 1 are close, and the noise of the
        // windows must not make the adapter switch back and forth.
        let mut a = Adapter::new(settings(3), 1).unwrap();
        let mut switches = 0;
        for k in 0..12 {
            let mut w = window(20, &[], 100 + k);
            for (t, s) in w[3].iter_mut().enumerate() {
                let u = crate::straggler::uniform(200 + k, t as u64, 4, 3);
                s.delay_s += if u < 0.5 { 0.03 } else { 0.0 };
            }
            switches += usize::from(a.decide(&w).unwrap().switches());
        }
        assert!(switches <= 1, "{switches} switches on a stationary regime");
    }

    /// A window where worker `w` is slowed by contention: 40 ms more on every iteration.
    fn burst(mut w: Vec<Vec<Sample>>, worker: usize) -> Vec<Vec<Sample>> {
        w[worker].iter_mut().for_each(|s| s.delay_s += 0.04);
        w
    }

    fn confirming(confirm: usize, initial_s: usize) -> Adapter {
        let mut set = settings(2);
        set.confirm = confirm;
        Adapter::new(set, initial_s).unwrap()
    }

    #[test]
    fn one_window_bursts_flap_without_confirmation_and_not_with_it() {
        // A stationary regime (every worker 60 ms per unit share ± 10 %) where every other
        // window one worker is slowed by contention for that window only: each burst alone
        // predicts s = 1 > 50 % faster, each calm window s = 0.
        let windows: Vec<Vec<Vec<Sample>>> = (0..16u64)
            .map(|k| {
                let w = window(5, &[], 300 + k);
                if k % 2 == 1 {
                    burst(w, (k as usize * 7 + 3) % N)
                } else {
                    w
                }
            })
            .collect();
        let run = |confirm: usize| {
            let mut a = confirming(confirm, 0);
            let d: Vec<Decision> = windows.iter().map(|w| a.decide(w).unwrap()).collect();
            d
        };
        // Without confirmation (the old rule), 0 -> 1 on each of the 8 bursts and back after
        // each of the first 7: 15 switches in 16 windows.
        let old = run(1);
        let switches = old.iter().filter(|d| d.switches()).count();
        assert_eq!(switches, 15, "{old:?}");
        // With two windows in a row it never switches; each burst is a streak of one.
        let new = run(2);
        assert!(new.iter().all(|d| !d.switches() && d.new_s == 0), "{new:?}");
        for (k, d) in new.iter().enumerate() {
            assert_eq!(d.streak, k % 2, "window {k}: {d:?}");
        }
        assert!(
            new[1].reason.contains("1 of 2 windows in a row"),
            "{}",
            new[1].reason
        );
    }

    #[test]
    fn a_persistent_change_switches_after_confirm_windows() {
        for confirm in [1, 2, 3] {
            // Calm for 3 windows, worker 2 slow (150 ms) from window 3 on, for 5 windows, then
            // calm again.
            let mut a = confirming(confirm, 0);
            let mut at = Vec::new();
            for k in 0..16u64 {
                let slow: &[usize] = if (3..8).contains(&k) { &[2] } else { &[] };
                let d = a.decide(&window(5, slow, 400 + k)).unwrap();
                if d.switches() {
                    at.push((k, d.old_s, d.new_s));
                    if confirm > 1 {
                        assert!(d.reason.contains("windows in a row"), "{}", d.reason);
                    }
                }
            }
            // Up at the end of the confirm-th slow window, back at the confirm-th calm one.
            let c = confirm as u64;
            assert_eq!(at, [(2 + c, 0, 1), (7 + c, 1, 0)], "confirm {confirm}");
        }
    }

    #[test]
    fn a_change_within_a_window_counts_that_window() {
        // Worker 2 turns slow in the middle of window 2: that window already favours s = 1,
        // so with two windows in a row it switches after window 3.
        let mut a = confirming(2, 0);
        let mut w = window(5, &[], 500);
        let half = window(5, &[2], 501);
        for t in 2..5 {
            w[2][t] = half[2][t];
        }
        let ds: Vec<Decision> = [window(5, &[], 502), window(5, &[], 503), w]
            .iter()
            .chain([window(5, &[2], 504)].iter())
            .map(|w| a.decide(w).unwrap())
            .collect();
        let switched: Vec<usize> = (0..4).filter(|&k| ds[k].switches()).collect();
        assert_eq!(switched, [3], "{ds:?}");
        assert_eq!(ds[2].streak, 1);
    }

    #[test]
    fn a_streak_keeps_its_direction_not_its_s() {
        // One slow worker (best s = 1) then two (best s = 2): both towards a larger s, so
        // the second window confirms and switches to its own best.
        let mut a = confirming(2, 0);
        let d = a.decide(&window(20, &[1], 600)).unwrap();
        assert_eq!((d.new_s, d.streak), (0, 1), "{d:?}");
        let d = a.decide(&window(20, &[1, 4], 601)).unwrap();
        assert_eq!((d.old_s, d.new_s, d.streak), (0, 2, 2), "{d:?}");
        // From s = 1, a window favouring a smaller s and one favouring a larger s alternate:
        // each starts a new streak, and nothing switches.
        assert!(a.set_current(1));
        for (k, slow) in [&[][..], &[1, 4], &[], &[2, 5]].into_iter().enumerate() {
            let d = a.decide(&window(20, slow, 610 + k as u64)).unwrap();
            assert_eq!((d.new_s, d.streak), (1, 1), "window {k}: {d:?}");
        }
    }

    /// A resumed adapter (a checkpoint's s and pending switch) decides as the uninterrupted
    /// one: one favouring window before the checkpoint and one after confirm the switch.
    #[test]
    fn a_restored_adapter_continues_its_streak() {
        let mut a = confirming(2, 0);
        let slow = window(20, &[1], 800);
        let d = a.decide(&slow).unwrap();
        assert_eq!((d.new_s, d.streak), (0, 1), "{d:?}");
        let pending = a.pending().cloned();
        assert!(
            matches!(pending, Some((true, ref g)) if g.len() == 1),
            "{pending:?}"
        );
        let mut b = confirming(2, 1);
        assert!(b.restore(0, pending.clone()));
        let (da, db) = (a.decide(&slow).unwrap(), b.decide(&slow).unwrap());
        assert_eq!(da, db);
        assert_eq!((db.old_s, db.new_s, db.streak), (0, 1, 2), "{db:?}");
        // Under --adapt-confirm 1 a restored streak is cut to 0 decisions; an s not allowed
        // is refused and leaves the adapter as it was.
        let mut c = confirming(1, 0);
        assert!(c.restore(1, pending) && c.current() == 1 && c.pending().is_none());
        assert!(!c.restore(9, None) && c.current() == 1);
    }

    #[test]
    fn a_silent_worker_switches_at_once() {
        let mut a = confirming(2, 0);
        let mut w = window(20, &[], 700);
        w[2].clear();
        let d = a.decide(&w).unwrap();
        assert_eq!((d.old_s, d.new_s, d.gain), (0, 1, 1.0), "{d:?}");
        assert!(d.reason.contains("cannot finish"), "{}", d.reason);
        let mut set = settings(2);
        set.confirm = 0;
        assert!(Adapter::new(set, 0).is_err());
    }

    #[test]
    fn max_s_must_leave_a_worker() {
        assert!(Adapter::new(settings(N), 0).is_err());
        assert!(Adapter::new(settings(2), 3).is_err());
        // The real cyclic MDS code needs n − s odd for s ≥ 1: at n = 6 not s = 2.
        let mut mds = settings(3);
        mds.kind = CodeKind::CyclicMds;
        assert!(Adapter::new(mds.clone(), 2).is_err());
        let a = Adapter::new(mds, 1).unwrap();
        assert!(
            !a.allowed().contains(&2) && a.allowed().contains(&3),
            "{:?}",
            a.allowed()
        );
        let mut a = a;
        assert!(!a.set_current(2) && a.current() == 1);
    }
}
