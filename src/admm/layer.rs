//! One layer of pdADMM: its variables, its views of its neighbours' values, and its updates
//! (the module docs of [`super`] give the equations).
//!
//! Storage is row-major with one row per training sample (the paper stores samples as
//! columns): p_l is N × n_{l−1}, W_l is n_l × n_{l−1}, z_l, q_l, u_l are N × n_l. Both φ_l and
//! the p-subproblem are quadratic, so the backtracking condition of the paper is read off two
//! norms along the step's direction, and the residual R = z − p Wᵀ − 1 bᵀ is carried through the
//! updates instead of recomputed (it is recomputed from scratch at the start of every
//! iteration, so rounding never accumulates and a resumed run repeats the same arithmetic).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, Axis, Zip};

/// The two penalties: ρ of the coupling p_{l+1} = q_l, ν of the relaxed constraints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    pub rho: f64,
    pub nu: f64,
}

/// First τ (θ) the backtracking tries; each failed try doubles it.
pub const STEP0: f64 = 1e-12;
/// Doublings before the backtracking gives up (then the step is tiny, never wrong).
const MAX_DOUBLINGS: u32 = 200;
/// Newton iterations of the output layer's z-update, per row.
const MAX_NEWTON: usize = 50;

/// What a layer's last iteration measured (its report).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Terms {
    /// φ_l after the z-update.
    pub phi: f64,
    /// (ν/2)‖q_l − f(z_l)‖² (0 for the output layer).
    pub gap: f64,
    /// R(z_L; y) (output layer; 0 elsewhere).
    pub loss: f64,
    /// ⟨u_l, p_{l+1} − q_l⟩ + (ρ/2)‖p_{l+1} − q_l‖² with the layer's view of p_{l+1} (0 for the
    /// output layer).
    pub coupling: f64,
    /// ‖p_{l+1} − q_l‖ (NaN for the output layer).
    pub primal: f64,
    /// ρ‖q_l⁺ − q_l‖ (NaN for the output layer).
    pub dual: f64,
    /// τ of the p-update (NaN for layer 1, which has no p to update).
    pub tau: f64,
    /// θ of the W-update.
    pub theta: f64,
    /// Iterations by which the previous layer's q, u used were old (0: synchronous; negative:
    /// the neighbour ran ahead and its newer values were used).
    pub left_age: f64,
    /// The same for the next layer's p.
    pub right_age: f64,
}

impl Terms {
    /// Values in a report.
    pub const LEN: usize = 10;

    /// The terms in report order.
    pub fn values(&self) -> [f64; Terms::LEN] {
        [
            self.phi,
            self.gap,
            self.loss,
            self.coupling,
            self.primal,
            self.dual,
            self.tau,
            self.theta,
            self.left_age,
            self.right_age,
        ]
    }

    /// Terms from values in report order.
    pub fn from_values(v: &[f64]) -> Terms {
        let g = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        Terms {
            phi: g(0),
            gap: g(1),
            loss: g(2),
            coupling: g(3),
            primal: g(4),
            dual: g(5),
            tau: g(6),
            theta: g(7),
            left_age: g(8),
            right_age: g(9),
        }
    }
}

/// One layer's variables and scratch.
#[derive(Debug, Clone)]
pub struct Layer {
    /// l, 1-based.
    pub index: usize,
    /// Whether this is the output layer L (no q, u; cross-entropy on z).
    pub last: bool,
    /// W_l, n_l × n_{l−1}.
    pub w: Array2<f64>,
    /// b_l.
    pub b: Array1<f64>,
    /// p_l (layer 1: the training rows, never updated).
    pub p: Array2<f64>,
    pub z: Array2<f64>,
    /// q_l and u_l (0 × 0 for the output layer).
    pub q: Array2<f64>,
    pub u: Array2<f64>,
    /// The layer's view of q_{l−1} and u_{l−1} (0 × 0 for layer 1).
    pub left_q: Array2<f64>,
    pub left_u: Array2<f64>,
    /// The layer's view of p_{l+1} (0 × 0 for the output layer).
    pub right_p: Array2<f64>,
    /// The class of each row (output layer only).
    pub labels: Vec<usize>,
    pub terms: Terms,
    r: Array2<f64>,
    gp: Array2<f64>,
    h: Array2<f64>,
    gw: Array2<f64>,
}

/// The smallest t = STEP0 · 2^j with `curvature` ≤ t: the paper's backtracking, whose condition
/// f(x⁺) ≤ f(x) + ⟨∇f, x⁺ − x⟩ + (t/2)‖x⁺ − x‖² reads `curvature` ≤ t for a quadratic f along the
/// step's direction (curvature = the quadratic's second derivative along it over its norm²).
pub fn backtrack(curvature: f64) -> f64 {
    let mut t = STEP0;
    for _ in 0..MAX_DOUBLINGS {
        if curvature <= t {
            break;
        }
        t *= 2.0;
    }
    t
}

/// argmin_z (z − m)² + (q − max(z, 0))² + (z − z0)²: the hidden layers' z-update per element
/// (the common factor ν/2 dropped). On z ≤ 0 the minimiser is min((m + z0)/2, 0), on z ≥ 0
/// max((m + z0 + q)/3, 0); the better of the two (the negative one on a tie).
#[inline]
pub fn z_prox(m: f64, q: f64, z0: f64) -> f64 {
    let neg = ((m + z0) / 2.0).min(0.0);
    let pos = ((m + z0 + q) / 3.0).max(0.0);
    let h = |z: f64| (z - m).powi(2) + (q - z.max(0.0)).powi(2) + (z - z0).powi(2);
    if h(pos) < h(neg) {
        pos
    } else {
        neg
    }
}

/// (log Σ e^{z}, softmax(z) into `s`).
fn softmax_into(z: &[f64], s: &mut [f64]) -> f64 {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (si, &zi) in s.iter_mut().zip(z) {
        *si = (zi - max).exp();
        sum += *si;
    }
    for si in s.iter_mut() {
        *si /= sum;
    }
    max + sum.ln()
}

/// The cross-entropy of one row: log Σ e^{z} − z_y.
pub fn cross_entropy(z: &[f64], y: usize, scratch: &mut [f64]) -> f64 {
    softmax_into(z, scratch) - z[y]
}

/// g(z) = log Σ e^{z} − z_y + (ν/2)‖z − m‖².
fn row_objective(z: &[f64], m: &[f64], y: usize, nu: f64, scratch: &mut [f64]) -> f64 {
    let d2: f64 = z.iter().zip(m).map(|(a, b)| (a - b) * (a - b)).sum();
    cross_entropy(z, y, scratch) + 0.5 * nu * d2
}

/// argmin_z log Σ e^{z} − z_y + (ν/2)‖z − m‖² for one row, from `z` (in place): Newton's method
/// with an Armijo line search, until the gradient's largest entry is below 1e-12. The Hessian
/// diag(s) − s sᵀ + νI is inverted by Sherman–Morrison; no step increases g beyond rounding.
pub fn z_last_row(z: &mut [f64], m: &[f64], y: usize, nu: f64, work: &mut [Vec<f64>; 3]) {
    let c = z.len();
    let [s, d, trial] = work;
    s.resize(c, 0.0);
    d.resize(c, 0.0);
    trial.resize(c, 0.0);
    let mut f = row_objective(z, m, y, nu, s);
    for _ in 0..MAX_NEWTON {
        softmax_into(z, s);
        // Gradient into d, then the Newton direction in place.
        let mut gmax: f64 = 0.0;
        for k in 0..c {
            d[k] = s[k] - f64::from(u8::from(k == y)) + nu * (z[k] - m[k]);
            gmax = gmax.max(d[k].abs());
        }
        if gmax <= 1e-12 {
            break;
        }
        // H = D − s sᵀ with D = diag(s + ν): H⁻¹g = D⁻¹g + D⁻¹s (sᵀD⁻¹g) / (1 − sᵀD⁻¹s).
        let (mut sa, mut sb) = (0.0, 0.0);
        for k in 0..c {
            let dk = s[k] + nu;
            sa += s[k] * d[k] / dk;
            sb += s[k] * s[k] / dk;
        }
        let coef = sa / (1.0 - sb);
        let mut slope = 0.0;
        for k in 0..c {
            let g = d[k];
            d[k] = -(g + s[k] * coef) / (s[k] + nu);
            slope += g * d[k];
        }
        if slope.is_nan() || slope >= 0.0 {
            break;
        }
        let mut t = 1.0;
        let accepted = loop {
            for k in 0..c {
                trial[k] = z[k] + t * d[k];
            }
            let ft = row_objective(trial, m, y, nu, s);
            // Armijo, with room for rounding: g is a difference of terms of the size of the
            // largest |z|, so near the minimiser its decrease is below its precision, and the
            // gradient test above ends the iterations instead.
            let noise = 1e-14 * (1.0 + f.abs() + z.iter().fold(0.0f64, |a, v| a.max(v.abs())));
            if ft <= f + 1e-4 * t * slope + noise {
                break Some(ft);
            }
            t *= 0.5;
            if t < 1e-12 {
                break None;
            }
        };
        let Some(ft) = accepted else { break };
        z.copy_from_slice(trial);
        f = ft;
    }
}

fn sum_sq(a: &Array2<f64>) -> f64 {
    a.iter().map(|v| v * v).sum()
}

impl Layer {
    /// A layer from its variables; the scratch is sized here. `q`, `u`, `left_*`, `right_p` are
    /// empty (0 × 0) where the layer has none.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        index: usize,
        last: bool,
        w: Array2<f64>,
        b: Array1<f64>,
        p: Array2<f64>,
        z: Array2<f64>,
        q: Array2<f64>,
        u: Array2<f64>,
        left: (Array2<f64>, Array2<f64>),
        right_p: Array2<f64>,
        labels: Vec<usize>,
    ) -> Layer {
        let (n, n_in, n_out) = (p.nrows(), w.ncols(), w.nrows());
        let gp = if index > 1 {
            Array2::zeros((n, n_in))
        } else {
            Array2::zeros((0, 0))
        };
        Layer {
            index,
            last,
            r: Array2::zeros((n, n_out)),
            h: Array2::zeros((n, n_out)),
            gw: Array2::zeros((n_out, n_in)),
            gp,
            w,
            b,
            p,
            z,
            q,
            u,
            left_q: left.0,
            left_u: left.1,
            right_p,
            labels,
            terms: Terms::default(),
        }
    }

    /// Rows N.
    pub fn rows(&self) -> usize {
        self.p.nrows()
    }

    /// n_{l−1}.
    pub fn inputs(&self) -> usize {
        self.w.ncols()
    }

    /// n_l.
    pub fn outputs(&self) -> usize {
        self.w.nrows()
    }

    /// R = z − p Wᵀ − 1 bᵀ from scratch.
    pub fn refresh_residual(&mut self) {
        self.r.assign(&self.z);
        general_mat_mul(-1.0, &self.p, &self.w.t(), 1.0, &mut self.r);
        self.r -= &self.b;
    }

    /// Phase A of an iteration: p (l ≥ 2), W, b, z, with the current view of q_{l−1}, u_{l−1}.
    pub fn phase_a(&mut self, pen: Penalties) {
        self.refresh_residual();
        if self.index > 1 {
            self.update_p(pen);
        } else {
            self.terms.tau = f64::NAN;
        }
        self.update_w(pen);
        self.update_b();
        self.update_z(pen);
        self.terms.phi = 0.5 * pen.nu * sum_sq(&self.r);
    }

    /// Phase B of an iteration (not for the output layer): q, then u, with the current view of
    /// p_{l+1}; records the residuals and the layer's coupling terms.
    pub fn phase_b(&mut self, pen: Penalties) {
        self.terms.dual = self.update_q(pen);
        self.update_u(pen);
    }

    /// The p-update: G = ∇_p[φ + ⟨u', p − q'⟩ + (ρ/2)‖p − q'‖²] = −ν R W + u' + ρ(p − q'),
    /// H = G Wᵀ, τ ≥ ν‖H‖²/‖G‖² by backtracking, p ← p − G/(τ + ρ) (so R ← R + H/(τ + ρ)).
    pub fn update_p(&mut self, pen: Penalties) {
        let Penalties { rho, nu } = pen;
        Zip::from(&mut self.gp)
            .and(&self.left_u)
            .and(&self.p)
            .and(&self.left_q)
            .for_each(|g, &u, &p, &q| *g = u + rho * (p - q));
        general_mat_mul(-nu, &self.r, &self.w, 1.0, &mut self.gp);
        general_mat_mul(1.0, &self.gp, &self.w.t(), 0.0, &mut self.h);
        let (gg, hh) = (sum_sq(&self.gp), sum_sq(&self.h));
        if gg == 0.0 {
            self.terms.tau = STEP0;
            return;
        }
        let tau = backtrack(nu * hh / gg);
        let step = 1.0 / (tau + rho);
        self.p.scaled_add(-step, &self.gp);
        self.r.scaled_add(step, &self.h);
        self.terms.tau = tau;
    }

    /// The W-update: g = ∇_W φ = −ν Rᵀ p, K = p gᵀ, θ ≥ ν‖K‖²/‖g‖² by backtracking,
    /// W ← W − g/θ (so R ← R + K/θ).
    pub fn update_w(&mut self, pen: Penalties) {
        let nu = pen.nu;
        general_mat_mul(-nu, &self.r.t(), &self.p, 0.0, &mut self.gw);
        general_mat_mul(1.0, &self.p, &self.gw.t(), 0.0, &mut self.h);
        let (gg, kk) = (sum_sq(&self.gw), sum_sq(&self.h));
        if gg == 0.0 {
            self.terms.theta = STEP0;
            return;
        }
        let theta = backtrack(nu * kk / gg);
        self.w.scaled_add(-1.0 / theta, &self.gw);
        self.r.scaled_add(1.0 / theta, &self.h);
        self.terms.theta = theta;
    }

    /// The b-update, exact: b ← b + mean_rows(R) (the row mean of z − p Wᵀ), R ← R − that mean.
    pub fn update_b(&mut self) {
        let Some(delta) = self.r.mean_axis(Axis(0)) else {
            return;
        };
        self.b += &delta;
        self.r -= &delta;
    }

    /// The z-update: hidden layers elementwise by [`z_prox`]; the output layer per row by
    /// [`z_last_row`] (and R(z_L; y) recorded). R ← z⁺ − (p Wᵀ + b).
    pub fn update_z(&mut self, pen: Penalties) {
        if !self.last {
            Zip::from(&mut self.z)
                .and(&mut self.r)
                .and(&self.q)
                .for_each(|z, r, &q| {
                    let m = *z - *r;
                    let zn = z_prox(m, q, *z);
                    *r = zn - m;
                    *z = zn;
                });
            return;
        }
        let mut work: [Vec<f64>; 3] = Default::default();
        let mut m = vec![0.0; self.outputs()];
        let mut loss = 0.0;
        for ((mut z, mut r), &y) in self
            .z
            .axis_iter_mut(Axis(0))
            .zip(self.r.axis_iter_mut(Axis(0)))
            .zip(&self.labels)
        {
            for ((mk, &zk), &rk) in m.iter_mut().zip(z.iter()).zip(r.iter()) {
                *mk = zk - rk;
            }
            let zs = z.as_slice_mut().unwrap_or_else(|| unreachable!());
            z_last_row(zs, &m, y, pen.nu, &mut work);
            loss += cross_entropy(zs, y, &mut work[0]);
            for ((rk, &zk), &mk) in r.iter_mut().zip(zs.iter()).zip(&m) {
                *rk = zk - mk;
            }
        }
        self.terms.loss = loss;
    }

    /// The q-update, exact: q ← (ν f(z) + ρ p' + u)/(ν + ρ) with p' the view of p_{l+1};
    /// returns the dual residual ρ‖q⁺ − q‖.
    pub fn update_q(&mut self, pen: Penalties) -> f64 {
        let Penalties { rho, nu } = pen;
        let mut dq = 0.0;
        Zip::from(&mut self.q)
            .and(&self.z)
            .and(&self.right_p)
            .and(&self.u)
            .for_each(|q, &z, &p, &u| {
                let qn = (nu * z.max(0.0) + rho * p + u) / (nu + rho);
                dq += (qn - *q) * (qn - *q);
                *q = qn;
            });
        rho * dq.sqrt()
    }

    /// The dual update u ← u + ρ(p' − q), then the layer's terms at the new point: the primal
    /// residual ‖p' − q‖, (ν/2)‖q − f(z)‖² and ⟨u, p' − q⟩ + (ρ/2)‖p' − q‖².
    pub fn update_u(&mut self, pen: Penalties) {
        let Penalties { rho, nu } = pen;
        let (mut pr, mut gap, mut cross) = (0.0, 0.0, 0.0);
        Zip::from(&mut self.u)
            .and(&self.q)
            .and(&self.z)
            .and(&self.right_p)
            .for_each(|u, &q, &z, &p| {
                let d = p - q;
                *u += rho * d;
                pr += d * d;
                gap += (q - z.max(0.0)) * (q - z.max(0.0));
                cross += *u * d;
            });
        self.terms.primal = pr.sqrt();
        self.terms.gap = 0.5 * nu * gap;
        self.terms.coupling = cross + 0.5 * rho * pr;
    }

    /// The output layer's terms that phase B would set elsewhere.
    pub fn close_output(&mut self) {
        self.terms.gap = 0.0;
        self.terms.coupling = 0.0;
        self.terms.primal = f64::NAN;
        self.terms.dual = f64::NAN;
    }

    /// This layer's part of L_ρ at its current point, from scratch, as the layer sees it: φ_l,
    /// (ν/2)‖q_l − f(z_l)‖², R(z_L; y), the coupling with its view of p_{l+1}, and the coupling
    /// ⟨u_{l−1}, p_l − q_{l−1}⟩ + (ρ/2)‖p_l − q_{l−1}‖² with its view of q_{l−1}, u_{l−1}. Every
    /// primal update of the layer's own variables leaves it no larger.
    pub fn lagrangian(&self, pen: Penalties) -> f64 {
        let Penalties { rho, nu } = pen;
        let mut r = self.z.clone();
        general_mat_mul(-1.0, &self.p, &self.w.t(), 1.0, &mut r);
        r -= &self.b;
        let mut total = 0.5 * nu * sum_sq(&r);
        if self.last {
            let mut s = vec![0.0; self.outputs()];
            for (z, &y) in self.z.axis_iter(Axis(0)).zip(&self.labels) {
                total += cross_entropy(&z.to_vec(), y, &mut s);
            }
        } else {
            Zip::from(&self.q)
                .and(&self.z)
                .and(&self.u)
                .and(&self.right_p)
                .for_each(|&q, &z, &u, &p| {
                    let d = p - q;
                    total += 0.5 * nu * (q - z.max(0.0)).powi(2) + u * d + 0.5 * rho * d * d;
                });
        }
        if self.index > 1 {
            Zip::from(&self.p)
                .and(&self.left_q)
                .and(&self.left_u)
                .for_each(|&p, &q, &u| {
                    let d = p - q;
                    total += u * d + 0.5 * rho * d * d;
                });
        }
        total
    }

    /// The weights and bias, for the assembled forward pass.
    pub fn weights(&self) -> (&Array2<f64>, ArrayView1<'_, f64>) {
        (&self.w, self.b.view())
    }
}
