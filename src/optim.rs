//! First-order optimizers over a flat parameter vector: gradient descent, heavy-ball momentum,
//! Nesterov's accelerated gradient (constant momentum, or the (t − 1)/(t + 2) schedule) and
//! Adam (Kingma & Ba 2015, bias-corrected), each with a learning-rate schedule: constant, step
//! decay or cosine decay, after an optional linear warm-up.
//!
//! The optimizer owns the iterate. [`Optimizer::point`] is where the next gradient must be
//! evaluated (the look-ahead point for Nesterov), so rank 0 broadcasts `point()` to the workers and
//! feeds the decoded gradient to [`Optimizer::step`]. The whole state is plain vectors and a
//! counter (the schedules are functions of the step count), written to checkpoints, so a resumed
//! run continues bit for bit.
//!
//! The L2 term is part of the objective's gradient, so with Adam it is classic L2 (scaled by the
//! adaptive step), not decoupled weight decay (AdamW).
//!
//! K-FAC (`kfac`) is heavy-ball momentum on the gradient the caller preconditioned with
//! [`kfac`]: the optimizer keeps the K-FAC state ([`OptimizerState::kfac`]) so that it is
//! checkpointed with the iterate, and the training loop folds the decoded factors in and
//! preconditions before [`Optimizer::step`].
//!
//! Not implemented: AdamW, AMSGrad, per-layer learning rates.

pub mod kfac;

use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, ArrayView1, Zip};

use serde::{Deserialize, Serialize};

/// The optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Gradient descent (minibatch SGD with --batch).
    Gd,
    /// Nesterov's accelerated gradient (gradient at the look-ahead point).
    Nesterov,
    /// Heavy-ball momentum (SGD with momentum): w ← w − lr·g + μ(w − w_prev).
    Momentum,
    /// Adam: bias-corrected moving averages of the gradient and its square.
    Adam,
    /// K-FAC: heavy-ball momentum on the gradient preconditioned by the layers' Kronecker
    /// factors (networks only).
    Kfac,
}

impl OptimizerKind {
    /// The name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Gd => "gd",
            OptimizerKind::Nesterov => "nesterov",
            OptimizerKind::Momentum => "momentum",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Kfac => "kfac",
        }
    }
}

/// The momentum of `nesterov` and `momentum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MomentumSchedule {
    /// The constant --momentum.
    Constant,
    /// Nesterov's schedule (t − 1)/(t + 2) at step t (what published gradient-coding
    /// experiments use); --momentum is ignored.
    NesterovT,
}

/// The learning rate over the steps, as a factor of --lr (after the warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// Always --lr.
    #[default]
    Constant,
    /// --lr · factor^⌊t / every⌋ at step t.
    Step { every: u64, factor: f64 },
    /// --lr · ½(1 + cos(π·min(t, total)/total)) at step t: down to 0 at step `total`, and 0
    /// after it.
    Cosine { total: u64 },
}

impl LrSchedule {
    /// The factor of --lr at step `t` (0-based: the step being taken).
    pub fn factor(&self, t: u64) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Step { every, factor } => {
                factor.powi(i32::try_from(t / every).unwrap_or(i32::MAX))
            }
            LrSchedule::Cosine { total } => {
                let progress = t.min(total) as f64 / total as f64;
                0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// A schedule that does not parse, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSchedule(pub String);

impl fmt::Display for BadSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LrSchedule {
    type Err = BadSchedule;
    /// `constant`, `step:EVERY:FACTOR` (EVERY ≥ 1, FACTOR in (0, 1]) or `cosine:TOTAL`
    /// (TOTAL ≥ 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = s.trim().split(':').map(str::trim).collect();
        let count = |v: &str, what: &str| -> Result<u64, BadSchedule> {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| BadSchedule(format!("{what} '{v}' must be a whole number ≥ 1")))
        };
        match fields.as_slice() {
            ["constant"] => Ok(LrSchedule::Constant),
            ["step", every, factor] => {
                let factor = factor
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f > 0.0 && *f <= 1.0)
                    .ok_or_else(|| BadSchedule(format!("FACTOR '{factor}' must be in (0, 1]")))?;
                Ok(LrSchedule::Step {
                    every: count(every, "EVERY")?,
                    factor,
                })
            }
            ["cosine", total] => Ok(LrSchedule::Cosine {
                total: count(total, "TOTAL")?,
            }),
            _ => Err(BadSchedule(
                "expected constant, step:EVERY:FACTOR or cosine:TOTAL".into(),
            )),
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => write!(f, "constant"),
            LrSchedule::Step { every, factor } => write!(f, "step:{every}:{factor}"),
            LrSchedule::Cosine { total } => write!(f, "cosine:{total}"),
        }
    }
}

impl Serialize for LrSchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LrSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: BadSchedule| {
            serde::de::Error::custom(format!("lr-schedule '{text}': {e}"))
        })
    }
}

/// Adam's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamParams {
    /// β1 = 0.9, β2 = 0.999, ε = 1e-8 (Kingma & Ba).
    fn default() -> Self {
        AdamParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The settings of an optimizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub schedule: MomentumSchedule,
    pub adam: AdamParams,
    pub lr_schedule: LrSchedule,
    /// Steps of linear warm-up: the rate at step t < warmup is scaled by (t + 1)/warmup.
    pub warmup: u64,
    /// K-FAC's settings (used by `kfac` only).
    pub kfac: kfac::KfacSpec,
}

impl OptimizerSpec {
    /// The momentum of the look-ahead after `steps` steps.
    fn momentum_after(&self, steps: u64) -> f64 {
        match self.schedule {
            MomentumSchedule::Constant => self.momentum,
            // Step t = steps (the iterate w_t was produced by step t); w_0 has no momentum.
            MomentumSchedule::NesterovT => {
                let t = steps as f64;
                ((t - 1.0) / (t + 2.0)).max(0.0)
            }
        }
    }

    /// The learning rate of step `t` (0-based): --lr, warmed up, times the schedule. Exactly
    /// --lr with a constant schedule and no warm-up.
    pub fn lr_at(&self, t: u64) -> f64 {
        let mut lr = self.lr;
        if t < self.warmup {
            lr *= (t + 1) as f64 / self.warmup as f64;
        }
        match self.lr_schedule {
            LrSchedule::Constant => lr,
            s => lr * s.factor(t),
        }
    }
}

/// Adam's moment estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamMoments {
    /// First moment m (moving average of the gradient).
    pub m: Array1<f64>,
    /// Second moment v (moving average of its square).
    pub v: Array1<f64>,
}

/// Everything an optimizer needs to continue bit-identically.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Current iterate w_t.
    pub w: Array1<f64>,
    /// Previous iterate w_{t-1} (equal to w_0 at the start).
    pub w_prev: Array1<f64>,
    /// Steps taken.
    pub steps: u64,
    /// Adam's moments (None for the other optimizers).
    pub adam: Option<AdamMoments>,
    /// K-FAC's factors and eigenbases (None for the other optimizers, and for `kfac` until the
    /// caller attaches the layers with [`Optimizer::attach_kfac`]).
    pub kfac: Option<kfac::KfacState>,
}

/// One of the optimizers, with its state.
#[derive(Debug, Clone)]
pub struct Optimizer {
    spec: OptimizerSpec,
    state: OptimizerState,
    /// The point where the next gradient is evaluated.
    point: Array1<f64>,
}

impl Optimizer {
    /// Start at `w0`.
    pub fn new(spec: OptimizerSpec, w0: Array1<f64>) -> Self {
        let adam = (spec.kind == OptimizerKind::Adam).then(|| AdamMoments {
            m: Array1::zeros(w0.len()),
            v: Array1::zeros(w0.len()),
        });
        let state = OptimizerState {
            w_prev: w0.clone(),
            w: w0,
            steps: 0,
            adam,
            kfac: None,
        };
        Self::from_state(spec, state)
    }

    /// Continue from a saved state. Adam's moments start at zero when the state has none (the
    /// caller checks that a checkpoint of an Adam run carries them).
    pub fn from_state(spec: OptimizerSpec, mut state: OptimizerState) -> Self {
        if spec.kind == OptimizerKind::Adam && state.adam.is_none() {
            state.adam = Some(AdamMoments {
                m: Array1::zeros(state.w.len()),
                v: Array1::zeros(state.w.len()),
            });
        }
        let mut opt = Optimizer {
            spec,
            point: state.w.clone(),
            state,
        };
        opt.update_point();
        opt
    }

    fn update_point(&mut self) {
        match self.spec.kind {
            OptimizerKind::Gd
            | OptimizerKind::Momentum
            | OptimizerKind::Adam
            | OptimizerKind::Kfac => self.point.assign(&self.state.w),
            OptimizerKind::Nesterov => {
                let mu = self.spec.momentum_after(self.state.steps);
                Zip::from(&mut self.point)
                    .and(&self.state.w)
                    .and(&self.state.w_prev)
                    .for_each(|y, &w, &wp| *y = w + mu * (w - wp));
            }
        }
    }

    /// Where the next gradient must be evaluated.
    pub fn point(&self) -> ArrayView1<'_, f64> {
        self.point.view()
    }

    /// The current iterate.
    pub fn params(&self) -> ArrayView1<'_, f64> {
        self.state.w.view()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.state.steps
    }

    /// Take one step with the gradient evaluated at [`Optimizer::point`].
    pub fn step(&mut self, grad: ArrayView1<f64>) {
        let t = self.state.steps;
        let lr = self.spec.lr_at(t);
        std::mem::swap(&mut self.state.w_prev, &mut self.state.w);
        // w_prev now holds w_t; w receives w_{t+1}.
        let OptimizerState {
            w, w_prev, adam, ..
        } = &mut self.state;
        match self.spec.kind {
            // w_{t+1} = point - lr * grad (the look-ahead point for Nesterov).
            OptimizerKind::Gd | OptimizerKind::Nesterov => Zip::from(w)
                .and(&self.point)
                .and(&grad)
                .for_each(|w, &y, &g| *w = y - lr * g),
            // w_{t+1} = w_t − lr·g + μ (w_t − w_{t−1}); w still holds w_{t−1}.
            OptimizerKind::Momentum | OptimizerKind::Kfac => {
                let mu = self.spec.momentum_after(t);
                Zip::from(w)
                    .and(&*w_prev)
                    .and(&grad)
                    .for_each(|w, &wt, &g| *w = wt - lr * g + mu * (wt - *w));
            }
            OptimizerKind::Adam => {
                let AdamParams { beta1, beta2, eps } = self.spec.adam;
                let k = i32::try_from(t + 1).unwrap_or(i32::MAX);
                let (c1, c2) = (1.0 - beta1.powi(k), 1.0 - beta2.powi(k));
                if let Some(AdamMoments { m, v }) = adam {
                    Zip::from(w)
                        .and(&*w_prev)
                        .and(m)
                        .and(v)
                        .and(&grad)
                        .for_each(|w, &wt, m, v, &g| {
                            *m = beta1 * *m + (1.0 - beta1) * g;
                            *v = beta2 * *v + (1.0 - beta2) * g * g;
                            *w = wt - lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                        });
                }
            }
        }
        self.state.steps += 1;
        self.update_point();
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }

    /// The settings.
    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// Give a `kfac` optimizer its K-FAC state when it has none (a new run).
    pub fn attach_kfac(&mut self, state: kfac::KfacState) {
        self.state.kfac.get_or_insert(state);
    }

    /// The K-FAC state, when there is one.
    pub fn kfac_mut(&mut self) -> Option<&mut kfac::KfacState> {
        self.state.kfac.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    fn spec(kind: OptimizerKind, lr: f64, momentum: f64) -> OptimizerSpec {
        OptimizerSpec {
            kind,
            lr,
            momentum,
            schedule: MomentumSchedule::Constant,
            adam: AdamParams::default(),
            lr_schedule: LrSchedule::Constant,
            warmup: 0,
            kfac: kfac::KfacSpec::default(),
        }
    }

    /// Minimize ½‖w − c‖²: both methods converge; GD takes the exact step with lr = 1.
    #[test]
    fn converges_on_a_quadratic() {
        let c = arr1(&[1.0, -2.0, 3.0]);
        for kind in [
            OptimizerKind::Gd,
            OptimizerKind::Nesterov,
            OptimizerKind::Momentum,
            OptimizerKind::Adam,
        ] {
            let mut opt = Optimizer::new(spec(kind, 0.3, 0.5), Array1::zeros(3));
            // Adam's steps shrink only as its second moment forgets the early gradients.
            let steps = if kind == OptimizerKind::Adam {
                3000
            } else {
                200
            };
            for _ in 0..steps {
                let g = &opt.point() - &c;
                opt.step(g.view());
            }
            let tol = if kind == OptimizerKind::Adam {
                1e-6
            } else {
                1e-10
            };
            assert!(
                (&opt.params() - &c).iter().all(|v| v.abs() < tol),
                "{kind:?}: {}",
                opt.params()
            );
        }
        let mut gd = Optimizer::new(spec(OptimizerKind::Gd, 1.0, 0.0), Array1::zeros(3));
        let g = &gd.point() - &c;
        gd.step(g.view());
        assert_eq!(gd.params(), c.view());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let c = arr1(&[0.5, 4.0]);
        for kind in [OptimizerKind::Nesterov, OptimizerKind::Adam] {
            let s = OptimizerSpec {
                lr_schedule: LrSchedule::Cosine { total: 12 },
                warmup: 3,
                ..spec(kind, 0.1, 0.9)
            };
            let mut a = Optimizer::new(s, Array1::zeros(2));
            for _ in 0..5 {
                let g = &a.point() - &c;
                a.step(g.view());
            }
            let mut b = Optimizer::from_state(s, a.state().clone());
            for _ in 0..5 {
                let ga = &a.point() - &c;
                a.step(ga.view());
                let gb = &b.point() - &c;
                b.step(gb.view());
            }
            assert_eq!(a.params(), b.params(), "{kind:?}");
            assert_eq!(a.state(), b.state(), "{kind:?}");
            assert_eq!(a.state().adam.is_some(), kind == OptimizerKind::Adam);
        }
    }

    /// Adam's first step moves every coordinate by about lr against the sign of its gradient
    /// (m̂ = g, v̂ = g²), whatever the gradient's scale; the moments are the documented averages.
    #[test]
    fn adam_takes_bias_corrected_steps() {
        let s = spec(OptimizerKind::Adam, 0.01, 0.0);
        let mut o = Optimizer::new(s, arr1(&[1.0, 1.0, 1.0]));
        let g = arr1(&[1e-4, -3.0, 250.0]);
        o.step(g.view());
        let moved = &o.params() - &arr1(&[1.0, 1.0, 1.0]);
        for (m, gi) in moved.iter().zip(&g) {
            assert!((m + 0.01 * gi.signum()).abs() < 1e-6, "{moved}");
        }
        let a = o.state().adam.as_ref().unwrap();
        for ((m, v), gi) in a.m.iter().zip(&a.v).zip(&g) {
            assert!((m - 0.1 * gi).abs() <= 1e-14 * gi.abs(), "m {m} for g {gi}");
            assert!(
                (v - 0.001 * gi * gi).abs() <= 1e-12 * gi * gi,
                "v {v} for g {gi}"
            );
        }
        // Second step with the same gradient: m̂ and v̂ are again g and g², the same move.
        o.step(g.view());
        let moved2 = &o.params() - &arr1(&[1.0, 1.0, 1.0]);
        assert!((&moved2 - &(&moved * 2.0)).iter().all(|v| v.abs() < 1e-9));
    }

    /// Heavy ball: w_{t+1} = w_t − lr·g(w_t) + μ(w_t − w_{t−1}), gradient at w_t.
    #[test]
    fn momentum_is_the_heavy_ball_recursion() {
        let c = arr1(&[2.0, -1.0]);
        let mut o = Optimizer::new(spec(OptimizerKind::Momentum, 0.1, 0.8), Array1::zeros(2));
        let (mut w, mut prev) = (Array1::<f64>::zeros(2), Array1::<f64>::zeros(2));
        for _ in 0..20 {
            assert_eq!(o.point(), w.view());
            let g = &w - &c;
            o.step(g.view());
            let next = &w - &(&g * 0.1) + &((&w - &prev) * 0.8);
            prev = w;
            w = next;
            assert!((&o.params() - &w).iter().all(|v| v.abs() < 1e-14));
        }
    }

    #[test]
    fn schedules_and_warm_up_scale_the_rate() {
        let s = |lr_schedule, warmup| OptimizerSpec {
            lr_schedule,
            warmup,
            ..spec(OptimizerKind::Gd, 0.4, 0.0)
        };
        // Constant and no warm-up: exactly --lr, every step.
        let c = s(LrSchedule::Constant, 0);
        assert!((0..1000).all(|t| c.lr_at(t).to_bits() == 0.4f64.to_bits()));
        let step = s(
            LrSchedule::Step {
                every: 10,
                factor: 0.5,
            },
            0,
        );
        assert_eq!(
            [step.lr_at(0), step.lr_at(9), step.lr_at(10), step.lr_at(25)],
            [0.4, 0.4, 0.2, 0.1]
        );
        let cos = s(LrSchedule::Cosine { total: 100 }, 0);
        assert_eq!(cos.lr_at(0), 0.4);
        assert!((cos.lr_at(50) - 0.2).abs() < 1e-15);
        assert!(cos.lr_at(100).abs() < 1e-15 && cos.lr_at(500).abs() < 1e-15);
        let warm = s(LrSchedule::Constant, 4);
        assert_eq!(
            (0..6).map(|t| warm.lr_at(t)).collect::<Vec<_>>(),
            [0.1, 0.2, 0.30000000000000004, 0.4, 0.4, 0.4]
        );
        // The step follows the scheduled rate: GD moves by lr_at(t)·g.
        let mut o = Optimizer::new(warm, Array1::zeros(1));
        o.step(arr1(&[1.0]).view());
        assert_eq!(o.params()[0], -0.1);
    }

    #[test]
    fn schedules_parse_and_print_back() {
        for text in ["constant", "step:30:0.1", "cosine:500"] {
            let s: LrSchedule = text.parse().unwrap();
            assert_eq!(s.to_string(), text);
        }
        for bad in [
            "",
            "step:0:0.5",
            "step:10:1.5",
            "step:10:0",
            "cosine:",
            "cosine:x",
            "linear",
        ] {
            assert!(bad.parse::<LrSchedule>().is_err(), "{bad}");
        }
    }

    /// The (t − 1)/(t + 2) schedule: no momentum on the first step, then the look-ahead
    /// w_t + (t − 1)/(t + 2)(w_t − w_{t−1}); it converges on the quadratic too.
    #[test]
    fn nesterov_t_uses_the_accelerated_schedule() {
        let c = arr1(&[1.0, -2.0]);
        let s = OptimizerSpec {
            schedule: MomentumSchedule::NesterovT,
            ..spec(OptimizerKind::Nesterov, 0.2, 0.9)
        };
        assert_eq!(s.momentum_after(0), 0.0);
        assert_eq!(s.momentum_after(1), 0.0);
        assert_eq!(s.momentum_after(4), 0.5);
        let mut o = Optimizer::new(s, Array1::zeros(2));
        for step in 0..300u64 {
            let g = &o.point() - &c;
            o.step(g.view());
            let (w, wp) = (&o.state().w, &o.state().w_prev);
            let mu = ((step + 1) as f64 - 1.0) / ((step + 1) as f64 + 2.0);
            let expect = w + &((w - wp) * mu.max(0.0));
            assert!((&o.point() - &expect).iter().all(|v| v.abs() < 1e-15));
        }
        assert!((&o.params() - &c).iter().all(|v| v.abs() < 1e-8));
    }
}
