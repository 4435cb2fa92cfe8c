//! First-order optimizers over a flat parameter vector: gradient descent and Nesterov's
//! accelerated gradient (constant momentum, or the (t − 1)/(t + 2) schedule).
//!
//! The optimizer owns the iterate. [`Optimizer::point`] is where the next gradient must be
//! evaluated (the look-ahead point for Nesterov), so rank 0 broadcasts `point()` to the workers and
//! feeds the decoded gradient to [`Optimizer::step`]. The whole state is plain vectors and a
//! counter, written to checkpoints, so a resumed run continues bit for bit.
//!
//! Not implemented: momentum SGD with minibatches, Adam, K-FAC (later issues).

use ndarray::{Array1, ArrayView1, Zip};

use serde::{Deserialize, Serialize};

/// The optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Full-batch gradient descent.
    Gd,
    /// Nesterov's accelerated gradient (gradient at the look-ahead point).
    Nesterov,
}

/// The momentum of `nesterov`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MomentumSchedule {
    /// The constant --momentum.
    Constant,
    /// Nesterov's schedule (t − 1)/(t + 2) at step t (what published gradient-coding
    /// experiments use); --momentum is ignored.
    NesterovT,
}

/// The settings of an optimizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub schedule: MomentumSchedule,
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
}

/// Gradient descent or Nesterov's method with constant step.
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
        let state = OptimizerState {
            w_prev: w0.clone(),
            w: w0,
            steps: 0,
        };
        Self::from_state(spec, state)
    }

    /// Continue from a saved state.
    pub fn from_state(spec: OptimizerSpec, state: OptimizerState) -> Self {
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
            OptimizerKind::Gd => self.point.assign(&self.state.w),
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
        let lr = self.spec.lr;
        std::mem::swap(&mut self.state.w_prev, &mut self.state.w);
        // w_{t+1} = point - lr * grad; w_prev now holds w_t.
        Zip::from(&mut self.state.w)
            .and(&self.point)
            .and(&grad)
            .for_each(|w, &y, &g| *w = y - lr * g);
        self.state.steps += 1;
        self.update_point();
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &OptimizerState {
        &self.state
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
        }
    }

    /// Minimize ½‖w − c‖²: both methods converge; GD takes the exact step with lr = 1.
    #[test]
    fn converges_on_a_quadratic() {
        let c = arr1(&[1.0, -2.0, 3.0]);
        for kind in [OptimizerKind::Gd, OptimizerKind::Nesterov] {
            let mut opt = Optimizer::new(spec(kind, 0.3, 0.5), Array1::zeros(3));
            for _ in 0..200 {
                let g = &opt.point() - &c;
                opt.step(g.view());
            }
            assert!(
                (&opt.params() - &c).iter().all(|v| v.abs() < 1e-10),
                "{kind:?}"
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
        let mut a = Optimizer::new(spec(OptimizerKind::Nesterov, 0.1, 0.9), Array1::zeros(2));
        for _ in 0..5 {
            let g = &a.point() - &c;
            a.step(g.view());
        }
        let mut b =
            Optimizer::from_state(spec(OptimizerKind::Nesterov, 0.1, 0.9), a.state().clone());
        for _ in 0..5 {
            let ga = &a.point() - &c;
            a.step(ga.view());
            let gb = &b.point() - &c;
            b.step(gb.view());
        }
        assert_eq!(a.params(), b.params());
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
