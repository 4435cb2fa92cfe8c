//! Least squares: ℓ(z, y) = ½ (z − y)².
use super::glm::{self, ScalarLoss};
use super::*;

/// Least-squares linear regression with intercept.
#[derive(Debug, Clone)]
pub struct Linear {
    d: usize,
    blocks: [ParamBlock; 1],
}
impl Linear {
    pub fn new(d: usize) -> Self {
        Linear {
            d,
            blocks: [ParamBlock {
                offset: 0,
                units: 1,
                inputs: d,
            }],
        }
    }
}

/// ℓ = ½ (z − y)², ∂ℓ/∂z = z − y.
pub(crate) struct SquaredLoss;
impl ScalarLoss for SquaredLoss {
    #[inline]
    fn loss(z: f64, y: f64) -> f64 {
        let e = z - y;
        0.5 * e * e
    }
    #[inline]
    fn dloss(z: f64, y: f64) -> f64 {
        z - y
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
    fn blocks(&self) -> &[ParamBlock] {
        &self.blocks
    }
    fn loss(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> f64 {
        glm::loss::<SquaredLoss>(self.d, w, x, y, ws)
    }
    fn row_loss(&self, z: f64, y: f64) -> Option<(f64, f64)> {
        Some((SquaredLoss::loss(z, y), SquaredLoss::dloss(z, y)))
    }
    fn gradient_into(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        rw: Option<ArrayView1<f64>>,
        ws: &mut Workspace,
        out: ArrayViewMut1<f64>,
    ) -> f64 {
        glm::gradient_into::<SquaredLoss>(self.d, w, x, y, rw, ws, out)
    }
    /// Mean squared-error loss; no accuracy or AUC. An empty shard gives a NaN loss.
    fn evaluate(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> Evaluation {
        let total = self.loss(w, x, y, ws);
        Evaluation {
            loss: total / y.len() as f64,
            accuracy: None,
            auc: None,
        }
    }
}
