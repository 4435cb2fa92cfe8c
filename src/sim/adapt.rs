//! Online adaptation of the code's s (issue 22 §3; GUIDE §3, §8): from the per-worker compute
//! times and injected delays of the last window of iterations, refit each worker's model (the
//! same empirical per-worker distribution `gradcode tune` fits from a profile: a replay
//! [`Trace`] of the window) and predict the iteration time of every code s = 0..=max_s the
//! workers' stored partitions allow by simulating it ([`Simulator`], the one simulator). The
//! [`Adapter`] switches to the fastest only when its predicted gain over the current s exceeds
//! a margin (hysteresis), so a stationary noisy regime does not make it flap.
//!
//! Compute times are rescaled by the share of the data: a sample measured under the current
//! code (share (s + 1)/n for the cyclic codes) is stored per unit share, and the simulator
//! multiplies it by each candidate's share, so a smaller s is predicted to compute less.
//!
//! Pure and MPI-free. It does not choose the deadline: `train --adapt` runs under
//! `--on-deadline wait` (exact decoding every iteration), where the deadline only marks the
//! stragglers, so a switch keeps it. It does not choose the code family, chunks or batch.

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
        }
        ok
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
        let switch = best != old && gain > self.set.margin;
        let reason = if switch {
            format!(
                "predicted {:.3} ms per iteration with s = {best} against {:.3} ms with s = {old}",
                t_best * 1e3,
                t_old * 1e3
            )
        } else {
            format!(
                "kept s = {old}: best s = {best} gains {:.1} % (margin {:.1} %)",
                gain.max(0.0) * 100.0,
                self.set.margin * 100.0
            )
        };
        let new_s = if switch { best } else { old };
        self.current = new_s;
        Ok(Decision {
            old_s: old,
            new_s,
            predicted_s: predicted,
            gain: if switch { gain } else { 0.0 },
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
