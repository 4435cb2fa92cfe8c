//! Binary logistic regression: ℓ(z, y) = log(1 + exp(−y z)), y ∈ {−1, +1}.
use super::glm::{self, ScalarLoss};
use super::*;

/// Binary logistic regression with intercept.
#[derive(Debug, Clone)]
pub struct Logistic {
    d: usize,
    blocks: [ParamBlock; 1],
}
impl Logistic {
    pub fn new(d: usize) -> Self {
        Logistic {
            d,
            blocks: [ParamBlock {
                offset: 0,
                units: 1,
                inputs: d,
            }],
        }
    }
}

/// ℓ = log1p(exp(−y z)), ∂ℓ/∂z = −y σ(−y z); stable for any |z|.
pub(crate) struct LogLoss;
impl ScalarLoss for LogLoss {
    #[inline]
    fn loss(z: f64, y: f64) -> f64 {
        log1p_exp(-y * z)
    }
    #[inline]
    fn dloss(z: f64, y: f64) -> f64 {
        -y * sigmoid(-y * z)
    }
    /// One `exp(−|t|)` for both, t = −y z: the same branches and operations as [`log1p_exp`]
    /// and [`sigmoid`], so the same bits (a tenth of the a9a kernel's time was the second exp).
    #[inline]
    fn loss_and_dloss(z: f64, y: f64) -> (f64, f64) {
        let t = -y * z;
        let e = (-t.abs()).exp();
        let loss = if t > 0.0 { t + e.ln_1p() } else { e.ln_1p() };
        let sig = if t >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        (loss, -y * sig)
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
        glm::loss::<LogLoss>(self.d, w, x, y, ws)
    }
    fn row_loss(&self, z: f64, y: f64) -> Option<(f64, f64)> {
        Some((LogLoss::loss(z, y), LogLoss::dloss(z, y)))
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
        glm::gradient_into::<LogLoss>(self.d, w, x, y, rw, ws, out)
    }
    /// Mean loss, accuracy of the prediction sign(z) (z = 0 predicts +1) and ROC AUC of the
    /// score z. An empty shard gives a NaN loss, no accuracy and no AUC; one with a single class
    /// has no AUC.
    fn evaluate(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> Evaluation {
        let (mut total, mut correct) = (0.0, 0usize);
        let mut scored = std::mem::take(&mut ws.scored);
        scored.clear();
        glm::for_each_score(self.d, w, x, y, ws, |r, z| {
            total += LogLoss::loss(z, y[r]);
            let pred = if z >= 0.0 { 1.0 } else { -1.0 };
            correct += usize::from(pred == y[r]);
            scored.push((z, y[r] > 0.0));
        });
        let auc = roc_auc(&mut scored);
        ws.scored = scored;
        let n = y.len();
        Evaluation {
            loss: total / n as f64,
            accuracy: (n > 0).then(|| correct as f64 / n as f64),
            auc,
        }
    }
}
