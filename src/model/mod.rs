//! Models: per-row losses summed over a shard, and their gradients, for dense and CSR features.
//!
//! The generalized linear models (logistic, linear, softmax) and a multilayer perceptron
//! ([`Mlp`]). Every model's parameter vector is a sequence of [`ParamBlock`]s: `units` blocks of
//! `inputs + 1` values (a unit's weights, then its bias). A GLM is one block with a unit per
//! output, so `dim = (d + 1) * outputs`; an MLP has one block per layer. The blocks say where the
//! biases are: the training objective divides the loss sum by the row count and adds L2
//! regularization on the weights, not the biases (see [`objective_gradient_into`]), and
//! `--no-intercept` holds the biases at 0. Losses are *sums* over rows (so partition sums add up
//! to the full sum). Numerically stable log-sigmoid and log-sum-exp. A model gives its initial
//! parameters from the run's seed ([`Model::init`]: zeros for the GLMs, He initialization for the
//! MLP).
//!
//! The worker's coded gradient is one pass over its stacked rows with per-row weights
//! (`c_i = X_Sᵀ (row_weights ⊙ r(w))`, GUIDE §1), so [`Model::gradient_into`] takes optional
//! row weights.
//!
//! The convolutional network ([`Cnn`]) is the MLP's head on a LeNet-style convolutional body
//! over the dataset's image shape.
//!
//! The networks also give K-FAC's factor sums ([`Model::kfac_factors_into`]): per dense layer
//! those of Martens & Grosse (2015), per convolution the KFC ones of Grosse & Martens (2016).

mod cnn;
pub mod gemm;
mod glm;
mod linear;
mod logistic;
mod mlp;
mod softmax;

pub use cnn::Cnn;
pub use linear::Linear;
pub use logistic::Logistic;
pub use mlp::Mlp;
pub use softmax::Softmax;

/// `units` consecutive blocks of `inputs + 1` parameters starting at `offset`: each unit's
/// `inputs` weights, then its bias. A model's parameters are a sequence of these
/// ([`Model::blocks`]); the weights are regularized, the biases are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamBlock {
    /// Index of the block's first parameter.
    pub offset: usize,
    /// Units (outputs of a GLM, neurons of a layer).
    pub units: usize,
    /// Inputs of each unit (weights per unit; the bias comes after them).
    pub inputs: usize,
}

impl ParamBlock {
    /// Parameters in the block.
    pub fn len(&self) -> usize {
        self.units * (self.inputs + 1)
    }
    /// Whether the block holds no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the parameter vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
    /// Whether entry `i` of the block (counted from `offset`) is a bias.
    #[inline]
    pub fn is_bias(&self, i: usize) -> bool {
        (i + 1) % (self.inputs + 1) == 0
    }
}

use ndarray::{Array1, ArrayView1, ArrayViewMut1};
use thiserror::Error;

use crate::data::{Features, ImageShape, Task};

/// Errors of model construction.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("model '{model}' cannot train on a {task} dataset ({hint})")]
    TaskMismatch {
        model: String,
        task: String,
        hint: String,
    },
    #[error("unknown model '{0}' (expected logistic, linear, softmax, mlp or cnn)")]
    Unknown(String),
    #[error("--hidden {0}: an MLP needs at least one hidden layer, each of width > 0 (e.g. --hidden 256,128)")]
    Hidden(String),
    #[error("--model cnn needs images, and the dataset records no image shape (attribute 'image_shape' on /X); convert IDX images again with `gradcode data convert --format idx`")]
    NoImage,
    #[error("--model cnn: images of {0} are too small for two 5×5 convolutions each followed by a 2×2 pool (at least 16×16)")]
    ImageTooSmall(String),
    #[error("--model cnn: the image shape {image} does not match the {features} features")]
    ImageFeatures { image: String, features: usize },
    #[error("--model cnn: --conv-filters {filters} and --hidden {hidden}: two convolutions' filters and one hidden width, each > 0 and at most 1048576 (e.g. --conv-filters 16,32 --hidden 128)")]
    CnnWidths { filters: String, hidden: String },
}

/// The models selectable on the command line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Binary logistic regression (labels ±1).
    Logistic,
    /// Least-squares linear regression.
    Linear,
    /// Multinomial logistic regression (labels 0..C-1).
    Softmax,
    /// Multilayer perceptron (`--hidden`), ReLU; the loss follows the task.
    Mlp,
    /// LeNet-style convolutional network on the dataset's images (conv 5×5 → pool → conv 5×5 →
    /// pool → dense 120 → dense); the loss follows the task.
    Cnn,
}

impl ModelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::Logistic => "logistic",
            ModelKind::Linear => "linear",
            ModelKind::Softmax => "softmax",
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }
    /// Whether the model has matrix-shaped parameter blocks (layers) that `--compress
    /// lowrank:RANK` can factor: the MLP's layers. None of the GLMs does (softmax's weights are
    /// one block per class, trained as one vector).
    pub fn has_matrix_parameters(&self) -> bool {
        matches!(self, ModelKind::Mlp)
    }
}

/// Scratch space owned by the caller so that gradient evaluation does not allocate per call.
///
/// Buffers grow to the largest shape seen and are then reused: after one call with a given
/// shard shape, further calls with that shape perform no heap allocation.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    /// General scratch (see [`Workspace::take`]); kept for callers outside the model kernels.
    #[allow(dead_code)]
    pub(crate) buf: Vec<f64>,
    /// Scores z, overwritten in place by residuals r, for one block of rows (rows × outputs);
    /// a network's activations and backward buffers of one row block.
    pub(crate) rows: Vec<f64>,
    /// Contiguous copy of the parameters when the caller passes a strided view.
    pub(crate) params: Vec<f64>,
    /// Contiguous gradient when the caller's output view is strided.
    pub(crate) grad: Vec<f64>,
    /// (score, positive) pairs of a binary classifier's evaluation, sorted for [`roc_auc`].
    pub(crate) scored: Vec<(f64, bool)>,
    /// K-FAC's scratch for one row block: a layer's inputs (with the 1) or pre-activation
    /// gradients, their row-weighted copy, and one factor as a full matrix.
    pub(crate) kfac: Vec<f64>,
}

impl Workspace {
    /// A zeroed slice of `len` values, reusing the allocation.
    #[allow(dead_code)]
    pub(crate) fn take(&mut self, len: usize) -> &mut [f64] {
        self.buf.clear();
        self.buf.resize(len, 0.0);
        &mut self.buf
    }
}

/// A slice of exactly `len` values of `v`, reusing its allocation. The contents are unspecified
/// (left over from earlier calls): callers overwrite every entry before reading it.
#[inline]
pub(crate) fn scratch(v: &mut Vec<f64>, len: usize) -> &mut [f64] {
    if v.len() != len {
        v.clear();
        v.resize(len, 0.0);
    }
    v.as_mut_slice()
}

/// `w` as a contiguous slice: borrowed when it already is one, else copied into `buf`.
#[inline]
pub(crate) fn contiguous<'a>(w: ArrayView1<'a, f64>, buf: &'a mut Vec<f64>) -> &'a [f64] {
    match w.to_slice() {
        Some(s) => s,
        None => {
            buf.clear();
            buf.extend(w.iter().copied());
            buf.as_slice()
        }
    }
}

/// The parameters of a kernel call as a contiguous slice, after the shape checks every kernel
/// shares: `dim` parameters, `d` feature columns in X, one label per row. A mismatch is a
/// programming error of the caller (data and model are checked against each other at start-up).
#[inline]
pub(crate) fn checked_params<'a>(
    dim: usize,
    d: usize,
    w: ArrayView1<'a, f64>,
    buf: &'a mut Vec<f64>,
    x: &Features,
    y: ArrayView1<f64>,
) -> &'a [f64] {
    assert_eq!(w.len(), dim, "parameter length must be the model dimension");
    assert_eq!(x.n_cols(), d, "feature count of X does not match the model");
    assert_eq!(x.n_rows(), y.len(), "rows of X and length of y differ");
    contiguous(w, buf)
}

/// The prologue every gradient kernel shares: [`checked_params`], a gradient of `dim` values,
/// one row weight per row; then `kernel(w, rows, g)` runs with contiguous parameters, the row
/// scratch and the gradient as a contiguous slice. Returns the kernel's (weighted) loss.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn run_gradient_kernel(
    dim: usize,
    d: usize,
    w: ArrayView1<f64>,
    x: &Features,
    y: ArrayView1<f64>,
    rw: Option<&ArrayView1<f64>>,
    ws: &mut Workspace,
    out: ArrayViewMut1<f64>,
    kernel: impl FnOnce(&[f64], &mut Vec<f64>, &mut [f64]) -> f64,
) -> f64 {
    assert_eq!(
        out.len(),
        dim,
        "gradient length must be the model dimension"
    );
    if let Some(rw) = rw {
        assert_eq!(rw.len(), x.n_rows(), "one row weight per row");
    }
    let Workspace {
        rows, params, grad, ..
    } = ws;
    let w = checked_params(dim, d, w, params, x, y);
    let mut loss = 0.0;
    with_contiguous_out(out, grad, |g| loss = kernel(w, rows, g));
    loss
}

/// Run `f` on `out` as a contiguous mutable slice, going through `buf` when `out` is strided.
#[inline]
pub(crate) fn with_contiguous_out(
    mut out: ArrayViewMut1<f64>,
    buf: &mut Vec<f64>,
    f: impl FnOnce(&mut [f64]),
) {
    if let Some(s) = out.as_slice_mut() {
        f(s);
        return;
    }
    let g = scratch(buf, out.len());
    f(g);
    for (o, &v) in out.iter_mut().zip(g.iter()) {
        *o = v;
    }
}

/// Rows per block of the dense kernels: a block of X (about 512 KiB, half the 1 MiB L2 of the
/// target machine) stays in cache between the forward product `z = X_b w` and the backward
/// product `g += X_bᵀ r`, so X is streamed from memory once per gradient instead of twice
/// (20,000 × 1,000 logistic: ~7–9 ms per gradient blocked, ~11–17 ms as two whole passes).
#[inline]
pub(crate) fn block_rows(n_rows: usize, n_cols: usize) -> usize {
    const BLOCK_BYTES: usize = 512 * 1024;
    let rows = BLOCK_BYTES / (8 * n_cols.max(1));
    rows.clamp(16, n_rows.max(16))
}

/// K-FAC's scratch for one row block ([`Model::kfac_factors_into`]): a layer's inputs with the
/// 1 (or its pre-activation gradients), their row-weighted copy, and one factor as a square.
pub(crate) struct FactorScratch<'a> {
    rows: &'a mut [f64],
    scaled: &'a mut [f64],
    square: &'a mut [f64],
}

impl<'a> FactorScratch<'a> {
    /// The scratch inside `buf` for at most `cells` values of rows (rows × width) and factors of
    /// at most `side` × `side`; `buf` grows only when a larger shape comes.
    pub(crate) fn carve(buf: &'a mut Vec<f64>, cells: usize, side: usize) -> Self {
        let k = scratch(buf, 2 * cells + side * side);
        let (vs, square) = k.split_at_mut(2 * cells);
        let (rows, scaled) = vs.split_at_mut(cells);
        FactorScratch {
            rows,
            scaled,
            square,
        }
    }

    /// Add a block of rows of layer `b` to its packed factor sums `out` (A's upper triangle,
    /// then G's): `grads` are the rows' pre-activation gradients (m × b.units), `inputs` fills
    /// their inputs (m × b.inputs, the 1 for the bias is added here); row i weighs `c(i)` in G
    /// and `c(i) · a_scale` in A.
    pub(crate) fn add_layer(
        &mut self,
        b: &ParamBlock,
        inputs: impl FnOnce(&mut ndarray::ArrayViewMut2<f64>),
        grads: ndarray::ArrayView2<f64>,
        c: impl Fn(usize) -> f64,
        a_scale: f64,
        out: &mut [f64],
    ) {
        use crate::optim::kfac::{add_weighted_gram, tri};
        let (m, n) = (grads.nrows(), b.inputs + 1);
        let mut abar = ndarray::ArrayViewMut2::from_shape((m, n), &mut self.rows[..m * n])
            .unwrap_or_else(|_| unreachable!());
        inputs(&mut abar.slice_mut(ndarray::s![.., ..b.inputs]));
        abar.column_mut(b.inputs).fill(1.0);
        let (fa, fg) = out.split_at_mut(tri(n));
        let (s, q) = (&mut *self.scaled, &mut *self.square);
        add_weighted_gram(abar.view(), |i| c(i) * a_scale, s, q, fa);
        add_weighted_gram(grads, c, s, q, &mut fg[..tri(b.units)]);
    }
}

/// Zero the packed K-FAC factor sums of the layers `blocks` at the front of `out`.
pub(crate) fn zero_factor_sums(blocks: &[ParamBlock], out: &mut [f64]) {
    let len = crate::optim::kfac::packed_len(blocks.iter().map(|b| (b.units, b.inputs)));
    out[..len].fill(0.0);
}

/// Quality measures of a parameter vector on a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean per-row loss (no regularization).
    pub loss: f64,
    /// Fraction of rows classified correctly (classification models only).
    pub accuracy: Option<f64>,
    /// Area under the ROC curve of the scores (binary classifiers only, and only when both
    /// classes occur in the data).
    pub auc: Option<f64>,
}

impl std::fmt::Display for Evaluation {
    /// `test loss L  test accuracy A  test AUC U`, each part only when the model has it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "test loss {:.6}", self.loss)?;
        if let Some(a) = self.accuracy {
            write!(f, "  test accuracy {a:.4}")?;
        }
        if let Some(u) = self.auc {
            write!(f, "  test AUC {u:.4}")?;
        }
        Ok(())
    }
}

/// Area under the ROC curve of `(score, positive)` pairs: the probability that a random positive
/// scores above a random negative, ties counting one half (the Mann–Whitney U statistic over
/// P·N). Sorts `scored` in place; O(m log m), no allocation. `None` when either class is absent.
/// NaN scores sort last (`f64::total_cmp`), so they rank as the highest scores.
pub fn roc_auc(scored: &mut [(f64, bool)]) -> Option<f64> {
    scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut below_neg, mut pairs) = (0u64, 0f64);
    // Each group of equal scores: its positives beat every negative below it and tie with the
    // negatives inside it.
    for group in scored.chunk_by(|a, b| a.0.total_cmp(&b.0).is_eq()) {
        let pos = group.iter().filter(|p| p.1).count() as u64;
        let neg = group.len() as u64 - pos;
        pairs += pos as f64 * below_neg as f64 + 0.5 * pos as f64 * neg as f64;
        below_neg += neg;
    }
    let n_pos = scored.len() as u64 - below_neg;
    (n_pos > 0 && below_neg > 0).then(|| pairs / (n_pos as f64 * below_neg as f64))
}

/// A differentiable per-row loss summed over the rows of a shard.
pub trait Model: Send + Sync + std::fmt::Debug {
    /// Which model this is.
    fn kind(&self) -> ModelKind;
    /// Number of parameters, intercepts included.
    fn dim(&self) -> usize;
    /// Number of input features the model was built for.
    fn n_features(&self) -> usize;
    /// The layout of the parameters: where the weights and the biases are.
    fn blocks(&self) -> &[ParamBlock];
    /// Writes the parameters training starts from into `w` (length [`Model::dim`]), drawn from
    /// `seed` where the model needs randomness (the GLMs start from zeros).
    fn init_into(&self, seed: u64, mut w: ArrayViewMut1<f64>) {
        let _ = seed;
        w.fill(0.0);
    }
    /// [`Model::init_into`] into a new vector.
    fn init(&self, seed: u64) -> Array1<f64> {
        let mut w = Array1::zeros(self.dim());
        self.init_into(seed, w.view_mut());
        w
    }
    /// Σ_rows ℓ_r(w) (no regularization).
    fn loss(&self, w: ArrayView1<f64>, x: &Features, y: ArrayView1<f64>, ws: &mut Workspace)
        -> f64;
    /// `out = Σ_rows weight_r ∇ℓ_r(w)` (weight 1 when `row_weights` is `None`); `out` is overwritten.
    /// Returns the weighted loss `Σ_rows weight_r ℓ_r(w)` from the same pass (coded messages carry
    /// it, so rank 0 decodes the training loss with the same weights as the gradient).
    fn gradient_into(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        row_weights: Option<ArrayView1<f64>>,
        ws: &mut Workspace,
        out: ArrayViewMut1<f64>,
    ) -> f64;
    /// Mean loss, (for classifiers) accuracy and (for binary classifiers) ROC AUC.
    fn evaluate(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> Evaluation;

    /// (ℓ(z, y), ∂ℓ/∂z) of one row whose score (with the intercept) is z, for the
    /// single-output models; coded training through mat-vecs forms its residuals with it. `None`
    /// for models with several outputs.
    fn row_loss(&self, z: f64, y: f64) -> Option<(f64, f64)> {
        let _ = (z, y);
        None
    }

    /// Bound the rows a network's kernels hold activations for at once (micro-batches: the
    /// gradient is accumulated block after block, the same to rounding; at least 1). The linear
    /// models, whose scratch is a few values per row, ignore it.
    fn set_block_rows(&mut self, rows: usize) {
        let _ = rows;
    }

    /// The GEMMs of one forward and backward pass over `rows` rows, per layer, in the model's
    /// row blocks ([`gemm`]); empty for the GLMs, which multiply no matrices.
    fn gemm_layers(&self, rows: usize) -> Vec<gemm::LayerGemms> {
        let _ = rows;
        Vec::new()
    }

    /// The layers K-FAC preconditions (a network's dense layers, in order); empty for the models
    /// without K-FAC factors.
    fn kfac_layers(&self) -> &[ParamBlock] {
        &[]
    }

    /// Values of the scratch [`Model::kfac_factors_into`] holds beside the kernel's: per row of
    /// a block, and fixed (the largest factor's square); (0, 0) without K-FAC layers.
    fn kfac_scratch(&self) -> (u128, u128) {
        (0, 0)
    }

    /// The K-FAC factor sums of every [`Model::kfac_layers`] layer over the rows of `x` at `w`,
    /// with the row weights, packed into `out` (`optim::kfac::packed_len` values: per layer the
    /// upper triangle of Σ c_r ā_r ā_rᵀ, then that of Σ c_r g_r g_rᵀ; a convolution's are the
    /// KFC sums over the positions, see [`Cnn`]). Linear in the rows, so coded combinations
    /// decode like the gradient. The scratch lives in `ws`: after the first call with a given
    /// block shape nothing is allocated. Writes nothing for models without layers.
    fn kfac_factors_into(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        row_weights: Option<ArrayView1<f64>>,
        ws: &mut Workspace,
        out: &mut [f64],
    ) {
        let _ = (w, x, y, row_weights, ws, out);
    }

    /// Allocating variant of [`Model::kfac_factors_into`]: every layer's (A sum, G sum) as full
    /// symmetric matrices.
    fn kfac_factors(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        row_weights: Option<ArrayView1<f64>>,
    ) -> Vec<(ndarray::Array2<f64>, ndarray::Array2<f64>)> {
        use crate::optim::kfac::{packed_len, unpack_upper};
        let layers = self.kfac_layers();
        let mut packed = vec![0.0; packed_len(layers.iter().map(|b| (b.units, b.inputs)))];
        let mut ws = Workspace::default();
        self.kfac_factors_into(w, x, y, row_weights, &mut ws, &mut packed);
        let mut at = 0;
        let mut unpack = |n: usize| {
            let mut m = ndarray::Array2::zeros((n, n));
            unpack_upper(&packed[at..], n, 1.0, &mut m);
            at += n * (n + 1) / 2;
            m
        };
        layers
            .iter()
            .map(|b| (unpack(b.inputs + 1), unpack(b.units)))
            .collect()
    }

    /// Allocating variant of [`Model::gradient_into`].
    fn gradient(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        row_weights: Option<ArrayView1<f64>>,
    ) -> Array1<f64> {
        let mut out = Array1::zeros(self.dim());
        self.gradient_into(
            w,
            x,
            y,
            row_weights,
            &mut Workspace::default(),
            out.view_mut(),
        );
        out
    }
}

/// The CNN of `--conv-filters` `conv` and `--hidden` `hidden` (each empty: LeNet's).
fn cnn(
    conv: &[usize],
    hidden: &[usize],
    n_features: usize,
    image: Option<ImageShape>,
    task: Task,
) -> Result<Cnn, ModelError> {
    let filters = match conv {
        [] => Some(Cnn::DEFAULT_FILTERS),
        &[a, b] => Some([a, b]),
        _ => None,
    };
    let units = match hidden {
        [] => Some(Cnn::DEFAULT_HIDDEN),
        &[h] => Some(h),
        _ => None,
    };
    let text = |w: &[usize]| {
        let t: Vec<String> = w.iter().map(usize::to_string).collect();
        t.join(",")
    };
    match (filters, units) {
        (Some(f), Some(h)) => Cnn::with_widths(n_features, image, task, f, h),
        _ => Err(ModelError::CnnWidths {
            filters: text(conv),
            hidden: text(hidden),
        }),
    }
}

/// Build the model `kind` for a dataset with `n_features` features (images of shape `image`, when
/// the dataset records one) and the given task; `hidden` are the hidden layer widths of an MLP
/// or the CNN's one hidden dense layer, `conv` the CNN's filters per convolution (empty: the
/// CNN's default widths; both ignored by the other models).
pub fn build(
    kind: ModelKind,
    hidden: &[usize],
    conv: &[usize],
    n_features: usize,
    image: Option<ImageShape>,
    task: Task,
) -> Result<Box<dyn Model>, ModelError> {
    let mismatch = |hint: &str| ModelError::TaskMismatch {
        model: kind.name().into(),
        task: task.name().into(),
        hint: hint.into(),
    };
    match (kind, task) {
        (ModelKind::Mlp, _) => Ok(Box::new(Mlp::new(n_features, hidden, task)?)),
        (ModelKind::Cnn, _) => Ok(Box::new(cnn(conv, hidden, n_features, image, task)?)),
        (ModelKind::Logistic, Task::Binary) => Ok(Box::new(Logistic::new(n_features))),
        (ModelKind::Linear, Task::Regression | Task::Binary) => {
            Ok(Box::new(Linear::new(n_features)))
        }
        (ModelKind::Softmax, Task::Multiclass { classes }) => {
            Ok(Box::new(Softmax::new(n_features, classes)))
        }
        (ModelKind::Logistic, Task::Regression) => Err(mismatch(
            "logistic needs binary labels; if the targets are only ±1 or 0/1 (a CSV converts \
             them as regression by default), convert again with \
             `gradcode data convert ... --task binary`",
        )),
        (ModelKind::Logistic, _) => Err(mismatch(
            "logistic needs binary labels; use softmax for multiclass",
        )),
        (ModelKind::Softmax, _) => Err(mismatch("softmax needs a multiclass dataset")),
        (ModelKind::Linear, _) => Err(mismatch("linear needs real-valued or ±1 targets")),
    }
}

/// What a model needs in memory, known before it is built (the memory check sizes a run from
/// it before anything is allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSize {
    /// Parameters.
    pub dim: u128,
    /// Scratch values per row of a block the gradient kernel holds at once (a network's
    /// activations and backward buffers; 0 for the GLMs, whose scratch is a few values per row).
    pub scratch_per_row: u128,
}

/// The size of model `kind` (`hidden` for an MLP, `hidden`, `conv` and `image` for a CNN, as
/// [`build`]) on `features` features for `task`; `None` when it overflows 128 bits or the model
/// cannot be built (a CNN without a valid image shape: [`build`] says why).
pub fn size_of(
    kind: ModelKind,
    hidden: &[usize],
    conv: &[usize],
    features: usize,
    image: Option<ImageShape>,
    task: Task,
) -> Option<ModelSize> {
    if kind == ModelKind::Cnn {
        let cnn = cnn(conv, hidden, features, image, task).ok()?;
        return Some(ModelSize {
            dim: cnn.dim() as u128,
            scratch_per_row: cnn.scratch_per_row() as u128,
        });
    }
    let outputs = match (kind, task) {
        (ModelKind::Softmax | ModelKind::Mlp, Task::Multiclass { classes }) => classes,
        (ModelKind::Mlp, Task::Binary) => 2,
        _ => 1,
    } as u128;
    if kind != ModelKind::Mlp {
        let dim = (features as u128).checked_add(1)?.checked_mul(outputs)?;
        return Some(ModelSize {
            dim,
            scratch_per_row: 0,
        });
    }
    let widths: Vec<u128> = std::iter::once(features as u128)
        .chain(hidden.iter().map(|&w| w as u128))
        .chain(std::iter::once(outputs))
        .collect();
    let mut dim = 0u128;
    for pair in widths.windows(2) {
        dim = dim.checked_add(pair[0].checked_add(1)?.checked_mul(pair[1])?)?;
    }
    let widest = widths[1..].iter().copied().max().unwrap_or(0);
    let acts = widths[1..]
        .iter()
        .try_fold(0u128, |a, &w| a.checked_add(w))?;
    Some(ModelSize {
        dim,
        scratch_per_row: acts.checked_add(widest.checked_mul(2)?)?,
    })
}

/// Objective F(w) = (1/N) Σ ℓ_r(w) + (λ/2)‖w_weights‖² (biases not regularized).
pub fn objective(
    model: &dyn Model,
    loss_sum: f64,
    w: ArrayView1<f64>,
    n_rows: usize,
    l2: f64,
) -> f64 {
    let reg: f64 = model
        .blocks()
        .iter()
        .map(|b| {
            w.slice(ndarray::s![b.range()])
                .iter()
                .enumerate()
                .filter(|(i, _)| !b.is_bias(*i))
                .map(|(_, v)| v * v)
                .sum::<f64>()
        })
        .sum();
    loss_sum / n_rows as f64 + 0.5 * l2 * reg
}

/// From the summed data gradient `g_sum`, the gradient of the objective:
/// `out = g_sum / N + λ w` (bias entries not regularized).
pub fn objective_gradient_into(
    model: &dyn Model,
    g_sum: ArrayView1<f64>,
    w: ArrayView1<f64>,
    n_rows: usize,
    l2: f64,
    mut out: ArrayViewMut1<f64>,
) {
    let inv_n = 1.0 / n_rows as f64;
    for b in model.blocks() {
        let r = b.range();
        let (g_sum, w) = (
            g_sum.slice(ndarray::s![r.clone()]),
            w.slice(ndarray::s![r.clone()]),
        );
        let mut out = out.slice_mut(ndarray::s![r]);
        for (i, ((o, &g), &wi)) in out.iter_mut().zip(g_sum).zip(w).enumerate() {
            let reg = if b.is_bias(i) { 0.0 } else { l2 * wi };
            *o = g * inv_n + reg;
        }
    }
}

/// The training objective F(w) = (1/N) Σ_r ℓ_r(w) + (λ/2)‖w_weights‖², with the intercepts
/// trained (unregularized) or held at 0 (`--no-intercept`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// Rows N the loss sum is over (the training rows; k·B for a minibatch).
    pub n_rows: usize,
    /// λ.
    pub l2: f64,
    /// Whether the intercepts are trained.
    pub intercept: bool,
}

impl Objective {
    /// F(w) from the summed loss.
    pub fn value(&self, model: &dyn Model, loss_sum: f64, w: ArrayView1<f64>) -> f64 {
        objective(model, loss_sum, w, self.n_rows, self.l2)
    }

    /// ∇F(w) from the summed data gradient; without intercepts their entries are 0, so a model
    /// started at 0 keeps them at 0.
    pub fn gradient_into(
        &self,
        model: &dyn Model,
        g_sum: ArrayView1<f64>,
        w: ArrayView1<f64>,
        mut out: ArrayViewMut1<f64>,
    ) {
        objective_gradient_into(model, g_sum, w, self.n_rows, self.l2, out.view_mut());
        if !self.intercept {
            for b in model.blocks() {
                let mut out = out.slice_mut(ndarray::s![b.range()]);
                for (i, o) in out.iter_mut().enumerate() {
                    if b.is_bias(i) {
                        *o = 0.0;
                    }
                }
            }
        }
    }
}

/// log(1 + exp(x)) without overflow.
#[inline]
pub fn log1p_exp(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The logistic function 1 / (1 + exp(-x)) without overflow.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests;
