//! A multilayer perceptron: dense layers with ReLU between them, and a loss on the last layer's
//! outputs that the dataset's task decides — softmax cross-entropy over C classes (multiclass),
//! over two classes (binary, label −1 → class 0, +1 → class 1), or ½(z − y)² (regression, one
//! output: the linear model's loss).
//!
//! Parameters: one [`ParamBlock`] per layer, `units` = the layer's width, each unit's weights
//! over the previous layer then its bias (the GLMs' layout, layer after layer). He
//! initialization from the seed: weights N(0, 2/fan_in), biases 0.
//!
//! Forward and backward are batched GEMMs through BLAS on row blocks of [`Mlp::BLOCK_ROWS`] rows:
//! Z_l = A_{l−1} W_lᵀ + b_l, A_l = relu(Z_l); backward from the output residual
//! R = weight ⊙ ∂ℓ/∂z: ∇W_l += Δ_lᵀ A_{l−1}, ∇b_l += 1ᵀ Δ_l, Δ_{l−1} = (Δ_l W_l) ⊙ [A_{l−1} > 0].
//! The weights are strided views into the parameter vector (leading dimension inputs + 1, no
//! copy), the gradient is accumulated in place, and the activations of a block live in the
//! caller's [`Workspace`], so after the first call with a given block shape nothing is
//! allocated. A CSR input multiplies the first layer row by row (the sparse product), every
//! other layer is a GEMM. The row blocks bound the activation memory (a block's activations,
//! not the shard's) and keep them in cache between the forward and the backward pass.
//!
//! Precision: f64, like everything else. Measured with `cargo bench --bench kernels -- mlp`
//! (784-256-128-10, the GEMMs of one forward and backward pass of 512 rows, OpenBLAS 0.3.21,
//! `OPENBLAS_NUM_THREADS=1`, on the 2-core machine at a load average of about 5): f64 12.9 ms
//! (40 GFLOP/s), f32 6.3 ms (81 GFLOP/s); this kernel in f64 16.2 ms (32 GFLOP/s, 82 % of a
//! square 512³ dgemm's 39 GFLOP/s in the same run). f32 would halve the GEMM time, and it is not
//! worth it here: a coded message is a combination of partition gradients that rank 0 decodes
//! with weights as large as cond(B_F) (5 at n = 8, 6.7e4 at n = 31 for cyclic MDS, GUIDE §3), so
//! f32 rounding in the messages (1e-7 relative) would become 1e-7·cond in the decoded gradient,
//! past the 1e-8 agreement with the serial reference that the exact codes promise and far past it
//! for large n; and a worker's compute is a small share of an iteration on a loaded node, where
//! messages and stragglers dominate.
//!
//! Not implemented: other activations, dropout, batch normalization (convolutional layers are
//! [`super::Cnn`]'s).

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView2, ArrayViewMut2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::*;
use crate::data::CsrMatrix;
use crate::optim::kfac::tri;

/// What the output layer's loss is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// Softmax cross-entropy; labels are class indices 0..C−1.
    Classes,
    /// Softmax cross-entropy over two classes; labels ±1.
    Binary,
    /// ½(z − y)² on one output.
    Squared,
}

impl Head {
    /// The head for `task` and its outputs.
    pub(super) fn of(task: Task) -> (Head, usize) {
        match task {
            Task::Multiclass { classes } => (Head::Classes, classes),
            Task::Binary => (Head::Binary, 2),
            Task::Regression => (Head::Squared, 1),
        }
    }

    /// The loss of one row's outputs `z`; with `residual`, `z` is overwritten by
    /// weight · ∂ℓ/∂z.
    #[inline]
    pub(super) fn row_loss(self, z: &mut [f64], y: f64, residual: Option<f64>) -> f64 {
        match self {
            Head::Classes | Head::Binary => {
                let class = self.class_of(y);
                match residual {
                    Some(weight) => softmax::row_residual(z, class, weight),
                    None => softmax::row_loss(z, class),
                }
            }
            Head::Squared => {
                let e = z[0] - y;
                if let Some(weight) = residual {
                    z[0] = weight * e;
                }
                0.5 * e * e
            }
        }
    }

    #[inline]
    fn class_of(self, y: f64) -> usize {
        match self {
            Head::Binary => usize::from(y > 0.0),
            _ => softmax::class_of(y),
        }
    }

    /// Overwrite the outputs of the rows `rows` (each `z`, `width` wide) by their residuals:
    /// weight · ∂ℓ/∂z; returns Σ weight · ℓ.
    pub(super) fn residuals(
        self,
        outputs: &mut [f64],
        width: usize,
        rows: std::ops::Range<usize>,
        y: ArrayView1<f64>,
        rw: Option<&ArrayView1<f64>>,
    ) -> f64 {
        let mut loss = 0.0;
        for (z, r) in outputs.chunks_exact_mut(width).zip(rows) {
            let weight = rw.map_or(1.0, |rw| rw[r]);
            loss += weight * self.row_loss(z, y[r], Some(weight));
        }
        loss
    }

    /// Mean loss, accuracy (classification) and AUC (binary) of the outputs that `each` (given
    /// the workspace) hands to its callback, row by row.
    pub(super) fn evaluate(
        self,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
        each: impl FnOnce(&mut Workspace, &mut dyn FnMut(usize, &mut [f64])),
    ) -> Evaluation {
        let mut scored = std::mem::take(&mut ws.scored);
        scored.clear();
        let (mut total, mut correct) = (0.0, 0usize);
        each(ws, &mut |r, z| {
            if self != Head::Squared {
                correct += usize::from(softmax::argmax(z) == self.class_of(y[r]));
            }
            if self == Head::Binary {
                scored.push((z[1] - z[0], y[r] > 0.0));
            }
            total += self.row_loss(z, y[r], None);
        });
        let auc = roc_auc(&mut scored);
        ws.scored = scored;
        let n = y.len();
        Evaluation {
            loss: total / n as f64,
            accuracy: (self != Head::Squared && n > 0).then(|| correct as f64 / n as f64),
            auc,
        }
    }
}

/// A multilayer perceptron with ReLU hidden layers.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// Widths of every layer: the input features, the hidden layers, the outputs.
    widths: Vec<usize>,
    blocks: Vec<ParamBlock>,
    head: Head,
    dim: usize,
    /// Rows per block of the forward and backward passes ([`Model::set_block_rows`]).
    block: usize,
}

impl Mlp {
    /// Rows per block of the forward and backward passes, unless a memory budget asks for fewer.
    pub const BLOCK_ROWS: usize = 256;

    /// An MLP over `d` input features with `hidden` layer widths for `task`.
    pub fn new(d: usize, hidden: &[usize], task: Task) -> Result<Self, ModelError> {
        if hidden.is_empty() || hidden.contains(&0) {
            return Err(ModelError::Hidden(format!("{hidden:?}")));
        }
        let (head, outputs) = Head::of(task);
        let mut widths = Vec::with_capacity(hidden.len() + 2);
        widths.push(d);
        widths.extend_from_slice(hidden);
        widths.push(outputs);
        let mut blocks = Vec::with_capacity(widths.len() - 1);
        let mut offset = 0usize;
        for pair in widths.windows(2) {
            let b = ParamBlock {
                offset,
                units: pair[1],
                inputs: pair[0],
            };
            offset = pair[0]
                .checked_add(1)
                .and_then(|w| w.checked_mul(pair[1]))
                .and_then(|n| n.checked_add(offset))
                .ok_or_else(|| ModelError::Hidden(format!("{hidden:?} (too many parameters)")))?;
            blocks.push(b);
        }
        Ok(Mlp {
            widths,
            blocks,
            head,
            dim: offset,
            block: Self::BLOCK_ROWS,
        })
    }

    /// Widths of every layer, input and output included.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Layers with weights.
    fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// Values of the activations of `rows` rows (every layer after the input).
    fn act_len(&self, rows: usize) -> usize {
        rows * self.widths[1..].iter().sum::<usize>()
    }

    /// Forward pass of one row block: layer l's outputs (post-ReLU for the hidden layers, the
    /// raw outputs for the last) into `acts`, layer after layer, each `rows × width` row-major.
    fn forward(&self, w: &[f64], x: &Features, rows: std::ops::Range<usize>, acts: &mut [f64]) {
        let r = rows.len();
        let mut at = 0;
        for (l, b) in self.blocks.iter().enumerate() {
            let (before, rest) = acts.split_at_mut(at);
            let out = &mut rest[..r * b.units];
            if l == 0 {
                first_layer(x, rows.clone(), weight_view(w, b), out);
            } else {
                dense_z(w, b, r, &before[at - r * self.widths[l]..], out);
            }
            let last = l + 1 == self.layers();
            for row in out.chunks_exact_mut(b.units) {
                for (k, z) in row.iter_mut().enumerate() {
                    let v = *z + w[b.offset + k * (b.inputs + 1) + b.inputs];
                    *z = if last || v > 0.0 { v } else { 0.0 };
                }
            }
            at += r * b.units;
        }
    }

    /// The outputs of `r` rows inside `acts`.
    fn outputs<'s>(&self, acts: &'s mut [f64], r: usize) -> &'s mut [f64] {
        let len = acts.len();
        let width = self.widths[self.widths.len() - 1];
        &mut acts[len - r * width..]
    }

    /// Backward pass of one row block whose outputs hold the residuals: accumulate the
    /// gradient into `g`. `acts` as [`Mlp::forward`] left it; `d0`, `d1` scratch of
    /// `rows × widest hidden layer`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        w: &[f64],
        x: &Features,
        rows: std::ops::Range<usize>,
        acts: &[f64],
        d0: &mut [f64],
        d1: &mut [f64],
        g: &mut [f64],
    ) {
        let r = rows.len();
        // `acts[..at]` ends with layer l's outputs.
        let mut at = acts.len();
        let (mut cur, mut next) = (d0, d1);
        for l in (0..self.layers()).rev() {
            let b = self.blocks[l];
            let start = at - r * b.units;
            // Δ_l: the residuals for the last layer, else the scratch filled below.
            let delta: &[f64] = if l + 1 == self.layers() {
                &acts[start..at]
            } else {
                &cur[..r * b.units]
            };
            let gl = &mut g[b.range()];
            // Bias: column sums of Δ_l.
            for row in delta.chunks_exact(b.units) {
                for (k, &v) in row.iter().enumerate() {
                    gl[k * (b.inputs + 1) + b.inputs] += v;
                }
            }
            if l == 0 {
                first_layer_grad(
                    x,
                    rows.clone(),
                    view(delta, r, b.units),
                    &mut grad_view(gl, b),
                );
                break;
            }
            let input = &acts[start - r * b.inputs..start];
            dense_weight_grad(&b, r, delta, input, gl);
            previous_delta(w, &b, r, delta, input, &mut next[..r * b.inputs]);
            std::mem::swap(&mut cur, &mut next);
            at = start;
        }
    }

    /// Rows of the largest row block over `n` rows.
    fn block_rows(&self, n: usize) -> usize {
        self.block.min(n)
    }

    /// Run `f(block rows, acts)` after the forward pass of every row block of `x`; `acts` has
    /// room for the activations of the largest block.
    fn for_each_block(
        &self,
        w: &[f64],
        x: &Features,
        acts: &mut [f64],
        mut f: impl FnMut(std::ops::Range<usize>, &mut [f64]),
    ) {
        let n = x.n_rows();
        let mut start = 0;
        while start < n {
            let end = (start + self.block).min(n);
            let a = &mut acts[..self.act_len(end - start)];
            self.forward(w, x, start..end, a);
            f(start..end, a);
            start = end;
        }
    }

    /// The forward pass of every row block of `x` at `w` (checked), then `f(row, outputs)` for
    /// every row; the activations live in `ws.rows`.
    fn for_each_output(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
        mut f: impl FnMut(usize, &mut [f64]),
    ) {
        let Workspace { rows, params, .. } = ws;
        let w = checked_params(self.dim, self.widths[0], w, params, x, y);
        let acts = scratch(rows, self.act_len(self.block_rows(x.n_rows())));
        let width = self.widths[self.widths.len() - 1];
        self.for_each_block(w, x, acts, |rows, a| {
            let out = self.outputs(a, rows.len());
            for (z, r) in out.chunks_exact_mut(width).zip(rows) {
                f(r, z);
            }
        });
    }
}

/// He initialization of the layers `blocks` of `w` from `seed`: weights N(0, 2/fan_in), biases 0.
pub(super) fn he_init(blocks: &[ParamBlock], seed: u64, mut w: ArrayViewMut1<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    w.fill(0.0);
    for b in blocks {
        let std = (2.0 / b.inputs.max(1) as f64).sqrt();
        let normal = Normal::new(0.0, std).unwrap_or_else(|_| unreachable!());
        let mut block = w.slice_mut(s![b.range()]);
        for (i, v) in block.iter_mut().enumerate() {
            if !b.is_bias(i) {
                *v = normal.sample(&mut rng);
            }
        }
    }
}

/// The `units × inputs` weight matrix of block `b` inside `w` (row stride inputs + 1).
///
/// Built with explicit strides: slicing the bias column off a `units × (inputs + 1)` view would
/// give a one-unit layer a row stride of 0, which BLAS refuses, and ndarray would then fall back
/// to a matrix product that allocates on every call.
#[inline]
pub(super) fn weight_view<'a>(w: &'a [f64], b: &ParamBlock) -> ArrayView2<'a, f64> {
    use ndarray::ShapeBuilder;
    // The block lies inside `w` (dim checked by the caller); the view ends at the last weight.
    let shape = (b.units, b.inputs).strides((b.inputs + 1, 1));
    ArrayView2::from_shape(shape, &w[b.offset..b.offset + b.len().saturating_sub(1)])
        .unwrap_or_else(|_| unreachable!())
}

/// The weight part of a block's gradient `gl` (the block's own slice), strided like
/// [`weight_view`].
#[inline]
pub(super) fn grad_view<'a>(gl: &'a mut [f64], b: ParamBlock) -> ArrayViewMut2<'a, f64> {
    use ndarray::ShapeBuilder;
    let shape = (b.units, b.inputs).strides((b.inputs + 1, 1));
    let len = gl.len().saturating_sub(1);
    ArrayViewMut2::from_shape(shape, &mut gl[..len]).unwrap_or_else(|_| unreachable!())
}

#[inline]
pub(super) fn view(v: &[f64], rows: usize, cols: usize) -> ArrayView2<'_, f64> {
    ArrayView2::from_shape((rows, cols), &v[..rows * cols]).unwrap_or_else(|_| unreachable!())
}

#[inline]
pub(super) fn view_mut(v: &mut [f64], rows: usize, cols: usize) -> ArrayViewMut2<'_, f64> {
    ArrayViewMut2::from_shape((rows, cols), &mut v[..rows * cols])
        .unwrap_or_else(|_| unreachable!())
}

/// The three GEMMs of a dense layer `b` on a block of `r` rows, in the parameter layout (the
/// weights strided inside `w`, the gradient inside the layer's slice): every dense layer of the
/// MLP and the CNN, the CNN's convolutions on their im2col rows, and `gradcode gemm`'s timing of
/// them ([`super::gemm`]) go through these, so what is timed is what trains.
///
/// Z (r × units) = A Wᵀ from the inputs A (r × inputs): the pre-activations without the bias.
pub(crate) fn dense_z(w: &[f64], b: &ParamBlock, r: usize, a: &[f64], z: &mut [f64]) {
    general_mat_mul(
        1.0,
        &view(a, r, b.inputs),
        &weight_view(w, b).t(),
        0.0,
        &mut view_mut(z, r, b.units),
    );
}

/// ∇W += Δᵀ A into the weights of the layer's gradient slice `gl` (not the biases).
pub(crate) fn dense_weight_grad(
    b: &ParamBlock,
    r: usize,
    delta: &[f64],
    a: &[f64],
    gl: &mut [f64],
) {
    general_mat_mul(
        1.0,
        &view(delta, r, b.units).t(),
        &view(a, r, b.inputs),
        1.0,
        &mut grad_view(gl, *b),
    );
}

/// Δ_in (r × inputs) = Δ W: the gradient of the layer's inputs.
pub(crate) fn dense_input_grad(
    w: &[f64],
    b: &ParamBlock,
    r: usize,
    delta: &[f64],
    d_in: &mut [f64],
) {
    general_mat_mul(
        1.0,
        &view(delta, r, b.units),
        &weight_view(w, b),
        0.0,
        &mut view_mut(d_in, r, b.inputs),
    );
}

/// Z_1 = X_b W_1ᵀ (no bias) for the rows of a block, dense (GEMM) or CSR (row by row).
fn first_layer(x: &Features, rows: std::ops::Range<usize>, w1: ArrayView2<f64>, out: &mut [f64]) {
    let (r, units) = (rows.len(), w1.nrows());
    match x {
        Features::Dense(x) => {
            let xb = x.slice(s![rows, ..]);
            general_mat_mul(1.0, &xb, &w1.t(), 0.0, &mut view_mut(out, r, units));
        }
        Features::Sparse(x) => {
            for (i, z) in rows.zip(out.chunks_exact_mut(units)) {
                let (idx, val) = x.row(i);
                for (k, zk) in z.iter_mut().enumerate() {
                    let wk = w1.row(k);
                    let mut acc = 0.0;
                    for (&j, &v) in idx.iter().zip(val) {
                        acc += v * wk[j as usize];
                    }
                    *zk = acc;
                }
            }
        }
    }
}

/// Δ_{l−1} = (Δ_l W_l) ⊙ [A_{l−1} > 0] into `prev` for the `r` rows of a block: `delta` the
/// layer's Δ_l, `input` its inputs A_{l−1}.
fn previous_delta(
    w: &[f64],
    b: &ParamBlock,
    r: usize,
    delta: &[f64],
    input: &[f64],
    prev: &mut [f64],
) {
    dense_input_grad(w, b, r, delta, prev);
    for (p, &av) in prev.iter_mut().zip(input) {
        if av <= 0.0 {
            *p = 0.0;
        }
    }
}

/// The rows `rows` of `x` into `out` (dense; a CSR row scattered into zeros).
fn dense_rows(x: &Features, rows: std::ops::Range<usize>, out: &mut ArrayViewMut2<f64>) {
    match x {
        Features::Dense(x) => out.assign(&x.slice(s![rows, ..])),
        Features::Sparse(x) => {
            out.fill(0.0);
            for (mut o, i) in out.outer_iter_mut().zip(rows) {
                let (idx, val) = x.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    o[j as usize] = v;
                }
            }
        }
    }
}

/// ∇W_1 += Δ_1ᵀ X_b for the rows of a block.
fn first_layer_grad(
    x: &Features,
    rows: std::ops::Range<usize>,
    delta: ArrayView2<f64>,
    gw: &mut ArrayViewMut2<f64>,
) {
    match x {
        Features::Dense(x) => {
            let xb = x.slice(s![rows, ..]);
            general_mat_mul(1.0, &delta.t(), &xb, 1.0, gw);
        }
        Features::Sparse(x) => csr_grad(x, rows, delta, gw),
    }
}

fn csr_grad(
    x: &CsrMatrix,
    rows: std::ops::Range<usize>,
    delta: ArrayView2<f64>,
    gw: &mut ArrayViewMut2<f64>,
) {
    for (i, dr) in rows.zip(delta.outer_iter()) {
        let (idx, val) = x.row(i);
        for (k, &dk) in dr.iter().enumerate() {
            if dk == 0.0 {
                continue;
            }
            let mut gk = gw.row_mut(k);
            for (&j, &v) in idx.iter().zip(val) {
                gk[j as usize] += dk * v;
            }
        }
    }
}

impl Model for Mlp {
    fn gemm_layers(&self, rows: usize) -> Vec<gemm::LayerGemms> {
        let blocks = gemm::row_blocks(rows, self.block);
        self.blocks
            .iter()
            .enumerate()
            .map(|(l, b)| gemm::LayerGemms {
                name: format!("dense {}-{}", b.inputs, b.units),
                block: *b,
                rows: blocks.clone(),
                input_grad: l > 0,
            })
            .collect()
    }
    fn kfac_layers(&self) -> &[ParamBlock] {
        &self.blocks
    }
    fn kfac_scratch(&self) -> (u128, u128) {
        // FactorScratch::carve(block · side, side), as kfac_factors_into asks.
        let side = self.blocks.iter().map(|b| (b.inputs + 1).max(b.units));
        let side = side.max().unwrap_or(0) as u128;
        (2 * side, side * side)
    }

    /// The K-FAC factor sums of every layer over the rows of `x` at `w`, packed into `out`
    /// ([`Model::kfac_factors_into`]): per layer the upper triangles of Σ_r c_r ā_r ā_rᵀ and
    /// Σ_r c_r g_r g_rᵀ, with ā_r the layer's input on row r and a 1 for the bias, g_r the
    /// gradient of row r's loss with respect to the layer's pre-activations and c_r the row
    /// weight (1 without). Both are linear in the rows, so a coded combination of partition sums
    /// decodes like the gradient. One forward pass per row block, then the backward recursion
    /// of the Δ's; per layer two GEMMs (`optim::kfac::add_weighted_gram`) into a reused square
    /// whose upper triangle is added to `out`.
    fn kfac_factors_into(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        rw: Option<ArrayView1<f64>>,
        ws: &mut Workspace,
        out: &mut [f64],
    ) {
        let Workspace {
            rows, params, kfac, ..
        } = ws;
        let w = checked_params(self.dim, self.widths[0], w, params, x, y);
        zero_factor_sums(&self.blocks, out);
        let block = self.block_rows(x.n_rows());
        let widest = self.widths[1..].iter().copied().max().unwrap_or(0);
        let side = self.blocks.iter().map(|b| (b.inputs + 1).max(b.units));
        let side = side.max().unwrap_or(0);
        let acts_len = self.act_len(block);
        let buf = scratch(rows, acts_len + 2 * block * widest);
        let (acts, deltas) = buf.split_at_mut(acts_len);
        let (d0, d1) = deltas.split_at_mut(block * widest);
        let mut fs = FactorScratch::carve(kfac, block * side, side);
        let width = self.widths[self.widths.len() - 1];
        let packed = |l: usize| -> usize {
            let before = self.blocks[..l].iter();
            before.map(|b| tri(b.inputs + 1) + tri(b.units)).sum()
        };
        self.for_each_block(w, x, acts, |rows, a| {
            let r = rows.len();
            let c = |i: usize| rw.as_ref().map_or(1.0, |rw| rw[rows.start + i]);
            self.head
                .residuals(self.outputs(a, r), width, rows.clone(), y, None);
            let mut at = a.len();
            let (mut cur, mut next) = (&mut *d0, &mut *d1);
            for l in (0..self.layers()).rev() {
                let b = self.blocks[l];
                let start = at - r * b.units;
                let delta: &[f64] = if l + 1 == self.layers() {
                    &a[start..at]
                } else {
                    &cur[..r * b.units]
                };
                let input = &a[start.saturating_sub(r * b.inputs)..start];
                let fill = |v: &mut ArrayViewMut2<f64>| match l {
                    0 => dense_rows(x, rows.clone(), v),
                    _ => v.assign(&view(input, r, b.inputs)),
                };
                let g = view(delta, r, b.units);
                fs.add_layer(&b, fill, g, c, 1.0, &mut out[packed(l)..]);
                if l > 0 {
                    previous_delta(w, &b, r, delta, input, &mut next[..r * b.inputs]);
                    std::mem::swap(&mut cur, &mut next);
                }
                at = start;
            }
        });
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Mlp
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_features(&self) -> usize {
        self.widths[0]
    }
    fn blocks(&self) -> &[ParamBlock] {
        &self.blocks
    }
    /// He initialization: weights N(0, 2/fan_in) from `seed`, biases 0.
    fn init_into(&self, seed: u64, w: ArrayViewMut1<f64>) {
        he_init(&self.blocks, seed ^ 0x4D4C_505F_494E_4954, w);
    }
    fn set_block_rows(&mut self, rows: usize) {
        self.block = rows.max(1);
    }
    fn loss(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> f64 {
        let mut total = 0.0;
        self.for_each_output(w, x, y, ws, |r, z| {
            total += self.head.row_loss(z, y[r], None)
        });
        total
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
        let block = self.block_rows(x.n_rows());
        let widest = self.widths[1..].iter().copied().max().unwrap_or(0);
        let width = self.widths[self.widths.len() - 1];
        let acts_len = self.act_len(block);
        run_gradient_kernel(
            self.dim,
            self.widths[0],
            w,
            x,
            y,
            rw.as_ref(),
            ws,
            out,
            |w, rows, g| {
                g.fill(0.0);
                // One buffer: the activations of a block, then two backward buffers.
                let buf = scratch(rows, acts_len + 2 * block * widest);
                let (acts, deltas) = buf.split_at_mut(acts_len);
                let (d0, d1) = deltas.split_at_mut(block * widest);
                let mut loss = 0.0;
                self.for_each_block(w, x, acts, |rows, a| {
                    let out = self.outputs(a, rows.len());
                    loss += self
                        .head
                        .residuals(out, width, rows.clone(), y, rw.as_ref());
                    self.backward(w, x, rows, a, d0, d1, g);
                });
                loss
            },
        )
    }
    /// Mean loss; for classification, the accuracy of the argmax (ties to the lowest class);
    /// for a binary task, the ROC AUC of the score z₊ − z₋.
    fn evaluate(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> Evaluation {
        self.head
            .evaluate(y, ws, |ws, f| self.for_each_output(w, x, y, ws, f))
    }
}

#[cfg(test)]
pub(super) mod tests;
