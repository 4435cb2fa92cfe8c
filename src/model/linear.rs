//! Least squares: ℓ(z, y) = ½ (z − y)².
use super::*;

/// Least-squares linear regression with intercept.
#[derive(Debug, Clone)]
pub struct Linear {
    d: usize,
}
impl Linear {
    pub fn new(d: usize) -> Self {
        Linear { d }
    }
}
impl Model for Linear {
    fn kind(&self) -> ModelKind {
        ModelKind::Linear
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
