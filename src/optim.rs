//! First-order optimizers over a flat parameter vector: gradient descent and Nesterov's
//! accelerated gradient.
//!
//! The optimizer owns the iterate. [`Optimizer::point`] is where the next gradient must be
//! evaluated (the look-ahead point for Nesterov), so rank 0 broadcasts `point()` to the workers and
//! feeds the decoded gradient to [`Optimizer::step`]. The whole state is plain vectors and a
//! counter, written to checkpoints, so a resumed run continues bit for bit.
//!
//! Not implemented: momentum SGD with minibatches, Adam, K-FAC (later issues).

use ndarray::{Array1, ArrayView1, Zip};

use crate::cli::OptimizerKind;

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

/// Gradient descent or Nesterov's method with constant step and momentum.
#[derive(Debug, Clone)]
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    momentum: f64,
    state: OptimizerState,
    /// The point where the next gradient is evaluated.
    point: Array1<f64>,
}

impl Optimizer {
    /// Start at `w0`.
    pub fn new(kind: OptimizerKind, lr: f64, momentum: f64, w0: Array1<f64>) -> Self {
        let state = OptimizerState {
            w_prev: w0.clone(),
            w: w0,
            steps: 0,
        };
        Self::from_state(kind, lr, momentum, state)
    }

    /// Continue from a saved state.
    pub fn from_state(kind: OptimizerKind, lr: f64, momentum: f64, state: OptimizerState) -> Self {
        let mut opt = Optimizer {
            kind,
            lr,
            momentum,
            point: state.w.clone(),
            state,
        };
        opt.update_point();
        opt
    }

    fn update_point(&mut self) {
        match self.kind {
            OptimizerKind::Gd => self.point.assign(&self.state.w),
            OptimizerKind::Nesterov => {
                let mu = self.momentum;
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
        let lr = self.lr;
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

    /// Minimize ½‖w − c‖²: both methods converge; GD takes the exact step with lr = 1.
    #[test]
    fn converges_on_a_quadratic() {
        let c = arr1(&[1.0, -2.0, 3.0]);
        for kind in [OptimizerKind::Gd, OptimizerKind::Nesterov] {
            let mut opt = Optimizer::new(kind, 0.3, 0.5, Array1::zeros(3));
            for _ in 0..200 {
                let g = &opt.point() - &c;
                opt.step(g.view());
            }
            assert!(
                (&opt.params() - &c).iter().all(|v| v.abs() < 1e-10),
                "{kind:?}"
            );
        }
        let mut gd = Optimizer::new(OptimizerKind::Gd, 1.0, 0.0, Array1::zeros(3));
        let g = &gd.point() - &c;
        gd.step(g.view());
        assert_eq!(gd.params(), c.view());
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let c = arr1(&[0.5, 4.0]);
        let mut a = Optimizer::new(OptimizerKind::Nesterov, 0.1, 0.9, Array1::zeros(2));
        for _ in 0..5 {
            let g = &a.point() - &c;
            a.step(g.view());
        }
        let mut b = Optimizer::from_state(OptimizerKind::Nesterov, 0.1, 0.9, a.state().clone());
        for _ in 0..5 {
            let ga = &a.point() - &c;
            a.step(ga.view());
            let gb = &b.point() - &c;
            b.step(gb.view());
        }
        assert_eq!(a.params(), b.params());
    }
}
