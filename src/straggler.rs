//! Seeded straggler and failure injection (GUIDE §4).
//!
//! A schedule is parsed from a spec such as `exp:50+fail:2@5` and answers, for any
//! (iteration, worker rank), how long the worker sleeps after computing, how much its compute is
//! slowed, and whether it has failed. Every draw is a pure function of (seed, iteration, rank,
//! component), so every code sees exactly the same stragglers for a given seed, rank 0 can record
//! the delays of workers that never answered, and a resumed run sees the delays it would have
//! seen. The two-state Markov model is the only stateful one; its chain is replayed from
//! iteration 0 and memoized.
//!
//! Grammar (components joined by `+`; delays of several components add up):
//! `none`, `fixed:RANKS:MS[@ITER]`, `slow:RANKS:FACTOR`, `exp:MEAN_MS`, `shifted-exp:SHIFT_MS:MEAN_MS`,
//! `pareto:SCALE_MS:ALPHA`, `markov:P01:P10:MS`, `fail:RANK@ITER`. RANKS are MPI ranks of
//! workers (1..=n), comma-separated.
//!
//! Replay of recorded traces is the simulator's (`sim::Trace`), not a straggler model of the
//! real job.

use thiserror::Error;

/// Errors of straggler specs.
#[derive(Debug, Error)]
pub enum StragglerError {
    #[error("straggler model '{spec}': {reason}")]
    Invalid { spec: String, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Component {
    /// From iteration `from` on (0: always).
    Fixed {
        ranks: Vec<usize>,
        seconds: f64,
        from: u64,
    },
    Slow {
        ranks: Vec<usize>,
        factor: f64,
    },
    Exp {
        mean: f64,
    },
    ShiftedExp {
        shift: f64,
        mean: f64,
    },
    Pareto {
        scale: f64,
        alpha: f64,
    },
    Markov {
        p01: f64,
        p10: f64,
        seconds: f64,
    },
    Fail {
        rank: usize,
        iteration: u64,
    },
}

/// A parsed straggler spec (syntax and values checked), independent of the worker count and
/// the seed: what a checked job config holds. [`StragglerSpec::check_workers`] checks its ranks
/// against the world, [`StragglerSpec::schedule`] makes the seeded schedule. Serialized as the
/// text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct StragglerSpec {
    text: String,
    components: Vec<Component>,
}

/// A seeded straggler schedule: the delays, slow-downs and failures of every worker at every
/// iteration.
#[derive(Debug, Clone)]
pub struct StragglerSchedule {
    spec: String,
    seed: u64,
    components: Vec<Component>,
    /// Markov chains, per component index and rank: states for iterations 0..len.
    markov: Vec<Vec<Vec<bool>>>,
}

/// SplitMix64: a stateless, portable mixing function for counter-based draws (also the
/// minibatch sampler's, `data::batch`).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform draw in (0, 1) determined by (seed, iteration, rank, stream).
pub(crate) fn uniform(seed: u64, iteration: u64, rank: usize, stream: usize) -> f64 {
    let mut h = splitmix64(seed ^ 0x5EED_0F57_4A66_1E25);
    h = splitmix64(h ^ iteration);
    h = splitmix64(h ^ rank as u64);
    h = splitmix64(h ^ stream as u64);
    // 53 random bits, shifted off zero.
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

impl StragglerSpec {
    /// Parse `spec`; ranks must be ≥ 1 (checked against the world by
    /// [`StragglerSpec::check_workers`]).
    pub fn parse(spec: &str) -> Result<Self, StragglerError> {
        let err = |reason: String| StragglerError::Invalid {
            spec: spec.to_string(),
            reason,
        };
        let num = |s: &str, what: &str| -> Result<f64, StragglerError> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(format!("{what} '{s}' is not a finite number")))
        };
        let ranks = |s: &str| -> Result<Vec<usize>, StragglerError> {
            s.split(',')
                .map(|r| match r.trim().parse::<usize>() {
                    Ok(v) if v >= 1 => Ok(v),
                    _ => Err(err(format!("rank '{r}' is not a worker rank (1..)"))),
                })
                .collect()
        };
        let mut components = Vec::new();
        for part in spec.split('+').map(str::trim) {
            let fields: Vec<&str> = part.split(':').collect();
            let arity = |k: usize, form: &str| -> Result<(), StragglerError> {
                if fields.len() == k + 1 {
                    Ok(())
                } else {
                    Err(err(format!("'{part}' should read {form}")))
                }
            };
            let positive = |v: f64, what: &str| -> Result<f64, StragglerError> {
                if v >= 0.0 {
                    Ok(v)
                } else {
                    Err(err(format!("{what} must be >= 0, got {v}")))
                }
            };
            let prob = |v: f64, what: &str| -> Result<f64, StragglerError> {
                if (0.0..=1.0).contains(&v) {
                    Ok(v)
                } else {
                    Err(err(format!(
                        "{what} must be a probability in [0, 1], got {v}"
                    )))
                }
            };
            let c = match fields[0] {
                "none" if fields.len() == 1 => continue,
                "fixed" => {
                    arity(2, "fixed:RANKS:MS[@ITER]")?;
                    let (ms, from) = match fields[2].split_once('@') {
                        None => (fields[2], 0),
                        Some((ms, it)) => (
                            ms,
                            it.trim().parse::<u64>().map_err(|_| {
                                err(format!("iteration '{it}' is not a non-negative integer"))
                            })?,
                        ),
                    };
                    let seconds = positive(num(ms, "delay")?, "delay")? / 1e3;
                    Component::Fixed { ranks: ranks(fields[1])?, seconds, from }
                }
                "slow" => {
                    arity(2, "slow:RANKS:FACTOR")?;
                    let factor = num(fields[2], "factor")?;
                    if factor < 1.0 {
                        return Err(err(format!("slow factor must be >= 1, got {factor}")));
                    }
                    Component::Slow { ranks: ranks(fields[1])?, factor }
                }
                "exp" => {
                    arity(1, "exp:MEAN_MS")?;
                    Component::Exp { mean: positive(num(fields[1], "mean")?, "mean")? / 1e3 }
                }
                "shifted-exp" => {
                    arity(2, "shifted-exp:SHIFT_MS:MEAN_MS")?;
                    Component::ShiftedExp {
                        shift: positive(num(fields[1], "shift")?, "shift")? / 1e3,
                        mean: positive(num(fields[2], "mean")?, "mean")? / 1e3,
                    }
                }
                "pareto" => {
                    arity(2, "pareto:SCALE_MS:ALPHA")?;
                    let alpha = num(fields[2], "alpha")?;
                    if alpha <= 0.0 {
                        return Err(err(format!("pareto alpha must be > 0, got {alpha}")));
                    }
                    Component::Pareto { scale: positive(num(fields[1], "scale")?, "scale")? / 1e3, alpha }
                }
                "markov" => {
                    arity(3, "markov:P01:P10:MS")?;
                    Component::Markov {
                        p01: prob(num(fields[1], "P01")?, "P01")?,
                        p10: prob(num(fields[2], "P10")?, "P10")?,
                        seconds: positive(num(fields[3], "delay")?, "delay")? / 1e3,
                    }
                }
                "fail" => {
                    arity(1, "fail:RANK@ITER")?;
                    let (r, it) = fields[1]
                        .split_once('@')
                        .ok_or_else(|| err(format!("'{part}' should read fail:RANK@ITER")))?;
                    let rank = ranks(r)?[0];
                    let iteration = it
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| err(format!("iteration '{it}' is not a non-negative integer")))?;
                    Component::Fail { rank, iteration }
                }
                other => {
                    return Err(err(format!(
                        "unknown component '{other}' (expected none, fixed, slow, exp, shifted-exp, pareto, markov or fail)"
                    )))
                }
            };
            components.push(c);
        }
        Ok(StragglerSpec {
            text: spec.to_string(),
            components,
        })
    }

    /// Every rank the spec names is a worker of a world with `n` workers (ranks 1..=n).
    pub fn check_workers(&self, n: usize) -> Result<(), StragglerError> {
        let named = self.components.iter().flat_map(|c| match c {
            Component::Fixed { ranks, .. } | Component::Slow { ranks, .. } => ranks.clone(),
            Component::Fail { rank, .. } => vec![*rank],
            _ => Vec::new(),
        });
        for r in named {
            if r > n {
                return Err(StragglerError::Invalid {
                    spec: self.text.clone(),
                    reason: format!("rank '{r}' is not a worker rank (1..={n})"),
                });
            }
        }
        Ok(())
    }

    /// The schedule of this spec under `seed`.
    pub fn schedule(&self, seed: u64) -> StragglerSchedule {
        StragglerSchedule {
            spec: self.text.clone(),
            seed,
            markov: vec![Vec::new(); self.components.len()],
            components: self.components.clone(),
        }
    }

    /// The text of the spec.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the spec injects nothing at all.
    pub fn is_none(&self) -> bool {
        self.components.is_empty()
    }
}

impl Default for StragglerSpec {
    fn default() -> Self {
        StragglerSpec {
            text: "none".into(),
            components: Vec::new(),
        }
    }
}

impl std::fmt::Display for StragglerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for StragglerSpec {
    type Err = StragglerError;
    fn from_str(s: &str) -> Result<Self, StragglerError> {
        StragglerSpec::parse(s)
    }
}

impl serde::Serialize for StragglerSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for StragglerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        StragglerSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl StragglerSchedule {
    /// Parse `spec` for workers with MPI ranks 1..=n, seeded by `seed`.
    pub fn parse(spec: &str, n: usize, seed: u64) -> Result<Self, StragglerError> {
        let s = StragglerSpec::parse(spec)?;
        s.check_workers(n)?;
        Ok(s.schedule(seed))
    }

    /// The spec this schedule was parsed from.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Whether the schedule injects nothing at all.
    pub fn is_none(&self) -> bool {
        self.components.is_empty()
    }

    /// Seconds worker `rank` sleeps after computing at `iteration` (0 when it has failed).
    pub fn delay_s(&mut self, iteration: u64, rank: usize) -> f64 {
        let seed = self.seed;
        let mut total = 0.0;
        for (ci, c) in self.components.iter().enumerate() {
            let u = || uniform(seed, iteration, rank, ci);
            total += match c {
                Component::Fixed {
                    ranks,
                    seconds,
                    from,
                } if ranks.contains(&rank) && iteration >= *from => *seconds,
                Component::Exp { mean } => -mean * u().ln(),
                Component::ShiftedExp { shift, mean } => shift - mean * u().ln(),
                Component::Pareto { scale, alpha } => scale * u().powf(-1.0 / alpha),
                Component::Markov { p01, p10, seconds } => {
                    let chains = &mut self.markov[ci];
                    if chains.len() <= rank {
                        chains.resize(rank + 1, Vec::new());
                    }
                    let chain = &mut chains[rank];
                    while chain.len() as u64 <= iteration {
                        let t = chain.len() as u64;
                        let prev = chain.last().copied().unwrap_or(false);
                        let v = uniform(seed, t, rank, ci);
                        chain.push(if prev { v >= *p10 } else { v < *p01 });
                    }
                    if chain[iteration as usize] {
                        *seconds
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            };
        }
        total
    }

    /// Factor by which worker `rank`'s compute is slowed (1 = not slowed).
    pub fn slow_factor(&self, rank: usize) -> f64 {
        self.components
            .iter()
            .map(|c| match c {
                Component::Slow { ranks, factor } if ranks.contains(&rank) => *factor,
                _ => 1.0,
            })
            .product()
    }

    /// Whether worker `rank` has stopped answering by `iteration`.
    pub fn failed(&self, iteration: u64, rank: usize) -> bool {
        self.components
            .iter()
            .any(|c| matches!(c, Component::Fail { rank: r, iteration: i } if *r == rank && iteration >= *i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_component_and_combinations() {
        let mut s = StragglerSchedule::parse("fixed:1,3:250+exp:10+fail:2@5", 4, 7).unwrap();
        assert!(s.delay_s(0, 1) >= 0.25);
        assert!(s.delay_s(0, 2) < 0.25 + 1.0);
        assert!(!s.failed(4, 2) && s.failed(5, 2) && !s.failed(9, 1));
        // A fixed delay from an iteration on: a regime change mid-run.
        let mut s = StragglerSchedule::parse("fixed:2:80@10", 4, 7).unwrap();
        assert_eq!(
            (s.delay_s(9, 2), s.delay_s(10, 2), s.delay_s(30, 1)),
            (0.0, 0.08, 0.0)
        );
        for spec in [
            "none",
            "slow:2:3",
            "shifted-exp:5:10",
            "pareto:5:1.5",
            "markov:0.011:0.286:100",
        ] {
            StragglerSchedule::parse(spec, 4, 1).unwrap();
        }
        assert_eq!(
            StragglerSchedule::parse("slow:2:3", 4, 1)
                .unwrap()
                .slow_factor(2),
            3.0
        );
        assert!(StragglerSchedule::parse("none", 4, 1).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        for (spec, needle) in [
            ("fixed:9:10", "not a worker rank"),
            ("fixed:0:10", "not a worker rank"),
            ("exp:-1", ">= 0"),
            ("exp:nan", "finite"),
            ("slow:1:0.5", ">= 1"),
            ("markov:2:0.1:5", "probability"),
            ("fail:1", "fail:RANK@ITER"),
            ("gamma:1", "unknown component"),
            ("fixed:1", "fixed:RANKS:MS[@ITER]"),
            ("fixed:1:10@x", "iteration 'x'"),
        ] {
            let e = StragglerSchedule::parse(spec, 4, 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn draws_are_reproducible_and_have_the_right_mean() {
        let mut a = StragglerSchedule::parse("exp:50+markov:0.1:0.3:20", 8, 3).unwrap();
        let mut b = StragglerSchedule::parse("exp:50+markov:0.1:0.3:20", 8, 3).unwrap();
        // b is queried out of order: the Markov chain must still agree.
        let late = b.delay_s(999, 5);
        let mut sum = 0.0;
        for t in 0..1000 {
            for r in 1..=8 {
                sum += a.delay_s(t, r);
            }
        }
        assert_eq!(a.delay_s(999, 5), late);
        let mean = sum / 8000.0;
        // exp mean 50 ms + markov stationary share 0.1/0.4 of 20 ms = 55 ms.
        assert!((mean - 0.055).abs() < 0.004, "mean {mean}");
        let mut c = StragglerSchedule::parse("exp:50", 8, 4).unwrap();
        assert_ne!(c.delay_s(0, 1), a.delay_s(0, 1));
    }
}
