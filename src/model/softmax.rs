//! Multinomial logistic regression: ℓ(z, y) = logsumexp(z) − z_y over C classes.
use super::*;

/// Softmax regression with intercepts; parameters are C blocks of d + 1.
#[derive(Debug, Clone)]
pub struct Softmax {
    d: usize,
    classes: usize,
}
impl Softmax {
    pub fn new(d: usize, classes: usize) -> Self {
        Softmax { d, classes }
    }
}
impl Model for Softmax {
    fn kind(&self) -> ModelKind {
        ModelKind::Softmax
    }
    fn dim(&self) -> usize {
        (self.d + 1) * self.classes
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
