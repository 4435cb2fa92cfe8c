//! Binary logistic regression: ℓ(z, y) = log(1 + exp(−y z)), y ∈ {−1, +1}.
use super::*;

/// Binary logistic regression with intercept.
#[derive(Debug, Clone)]
pub struct Logistic {
    d: usize,
}
impl Logistic {
    pub fn new(d: usize) -> Self {
        Logistic { d }
    }
}
impl Model for Logistic {
    fn kind(&self) -> ModelKind {
        ModelKind::Logistic
    }
    fn dim(&self) -> usize {
        self.d + 1
    }
    fn n_features(&self) -> usize {
        self.d
    }
    fn loss(
        &self,
        _w: ArrayView1<f64>,
        _x: &Features,
        _y: ArrayView1<f64>,
        _ws: &mut Workspace,
    ) -> f64 {
        f64::NAN
    }
    fn gradient_into(
        &self,
        _w: ArrayView1<f64>,
        _x: &Features,
        _y: ArrayView1<f64>,
        _rw: Option<ArrayView1<f64>>,
        _ws: &mut Workspace,
        mut out: ArrayViewMut1<f64>,
    ) -> f64 {
        out.fill(f64::NAN);
        f64::NAN
    }
    fn evaluate(
        &self,
        _w: ArrayView1<f64>,
        _x: &Features,
        _y: ArrayView1<f64>,
        _ws: &mut Workspace,
    ) -> Evaluation {
        Evaluation {
            loss: f64::NAN,
            accuracy: None,
        }
    }
}
