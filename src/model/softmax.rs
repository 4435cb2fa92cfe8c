//! Multinomial logistic regression: ℓ(z, y) = logsumexp(z) − z_y over C classes.
//!
//! Parameters are C blocks of d + 1 values; block c scores class c: z_c = x·w_c + b_c. The dense
//! kernel views the weights as a strided C × d matrix (leading dimension d + 1, no copy) and runs
//! BLAS gemm per block of rows: Z_b = X_b Wᵀ, then G += R_bᵀ X_b while X_b is in cache.
use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView2, ArrayViewMut2};

use super::*;
use crate::data::CsrMatrix;

/// Softmax regression with intercepts; parameters are C blocks of d + 1.
#[derive(Debug, Clone)]
pub struct Softmax {
    d: usize,
    classes: usize,
    blocks: [ParamBlock; 1],
}
impl Softmax {
    pub fn new(d: usize, classes: usize) -> Self {
        Softmax {
            d,
            classes,
            blocks: [ParamBlock {
                offset: 0,
                units: classes,
                inputs: d,
            }],
        }
    }

    /// Call `f(row, z)` with the C logits of every row (biases included), in order.
    fn for_each_logits(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
        mut f: impl FnMut(usize, &[f64]),
    ) {
        let Workspace { rows, params, .. } = ws;
        let w = checked_params(self.dim(), self.d, w, params, x, y);
        let (d, c) = (self.d, self.classes);
        match x {
            Features::Dense(x) => {
                let wmat = weight_view(w, d, c);
                let n = x.nrows();
                let block = block_rows(n, d);
                let mut start = 0;
                while start < n {
                    let end = (start + block).min(n);
                    let xb = x.slice(s![start..end, ..]);
                    let zb = scratch(rows, (end - start) * c);
                    dense_logits(xb, wmat, w, d, zb);
                    for (i, z) in zb.chunks_exact(c).enumerate() {
                        f(start + i, z);
                    }
                    start = end;
                }
            }
            Features::Sparse(x) => {
                let z = scratch(rows, c);
                for r in 0..x.n_rows() {
                    csr_logits(x, r, w, d, z);
                    f(r, z);
                }
            }
        }
    }
}

/// The C × d weight matrix inside the parameter vector (row stride d + 1).
#[inline]
fn weight_view(w: &[f64], d: usize, c: usize) -> ArrayView2<'_, f64> {
    // Lengths were checked against (d + 1) * c by the caller.
    let full = ArrayView2::from_shape((c, d + 1), w).unwrap_or_else(|_| unreachable!());
    full.slice_move(s![.., ..d])
}

/// Z_b (rows × C, row-major in `zb`) = X_b Wᵀ + 1 bᵀ.
#[inline]
fn dense_logits(xb: ArrayView2<f64>, wmat: ArrayView2<f64>, w: &[f64], d: usize, zb: &mut [f64]) {
    let c = wmat.nrows();
    let mut zv =
        ArrayViewMut2::from_shape((xb.nrows(), c), &mut *zb).unwrap_or_else(|_| unreachable!());
    general_mat_mul(1.0, &xb, &wmat.t(), 0.0, &mut zv);
    for z in zb.chunks_exact_mut(c) {
        for (k, zk) in z.iter_mut().enumerate() {
            *zk += w[k * (d + 1) + d];
        }
    }
}

/// The C logits of CSR row `r`.
#[inline]
fn csr_logits(x: &CsrMatrix, r: usize, w: &[f64], d: usize, z: &mut [f64]) {
    let (idx, val) = x.row(r);
    for (k, zk) in z.iter_mut().enumerate() {
        let wk = &w[k * (d + 1)..(k + 1) * (d + 1)];
        let mut acc = wk[d];
        for (&j, &v) in idx.iter().zip(val) {
            acc += v * wk[j as usize];
        }
        *zk = acc;
    }
}

/// The class index stored in a label.
#[inline]
pub(super) fn class_of(y: f64) -> usize {
    debug_assert!(y >= 0.0 && y.fract() == 0.0, "bad class label {y}");
    y as usize
}

/// logsumexp(z) − z_y with the max-shift.
#[inline]
pub(super) fn row_loss(z: &[f64], y: usize) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    m + s.ln() - z[y]
}

/// Overwrite the logits `z` by the residual weight · (softmax(z) − e_y); returns the row's
/// loss logsumexp(z) − z_y (unweighted), computed from the same exponentials.
#[inline]
pub(super) fn row_residual(z: &mut [f64], y: usize, weight: f64) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let zy = z[y];
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    let scale = weight / s;
    for v in z.iter_mut() {
        *v *= scale;
    }
    z[y] -= weight;
    m + s.ln() - zy
}

/// First index of the largest logit.
#[inline]
pub(super) fn argmax(z: &[f64]) -> usize {
    let mut best = 0;
    for (k, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = k;
        }
    }
    best
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
        let mut total = 0.0;
        self.for_each_logits(w, x, y, ws, |r, z| total += row_loss(z, class_of(y[r])));
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
        let (d, c) = (self.d, self.classes);
        run_gradient_kernel(
            self.dim(),
            d,
            w,
            x,
            y,
            rw.as_ref(),
            ws,
            out,
            |w, rows, g| match x {
                Features::Dense(x) => {
                    let block = block_rows(x.nrows(), d);
                    dense_gradient(x.view(), w, y, rw, rows, g, c, block)
                }
                Features::Sparse(x) => csr_gradient(x, w, y, rw, rows, g, c),
            },
        )
    }
    /// Mean loss and accuracy of the argmax prediction (ties go to the lowest class). An empty
    /// shard gives a NaN loss and no accuracy. No AUC: ROC AUC is a binary measure, and a
    /// one-vs-rest average would hide which classes are confused.
    fn evaluate(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> Evaluation {
        let (mut total, mut correct) = (0.0, 0usize);
        self.for_each_logits(w, x, y, ws, |r, z| {
            let k = class_of(y[r]);
            total += row_loss(z, k);
            correct += usize::from(argmax(z) == k);
        });
        let n = y.len();
        Evaluation {
            loss: total / n as f64,
            accuracy: (n > 0).then(|| correct as f64 / n as f64),
            auc: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn dense_gradient(
    x: ArrayView2<f64>,
    w: &[f64],
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    rows: &mut Vec<f64>,
    g: &mut [f64],
    c: usize,
    block: usize,
) -> f64 {
    let (n, d) = x.dim();
    let mut loss = 0.0;
    let wmat = weight_view(w, d, c);
    g.fill(0.0);
    let mut gfull = ArrayViewMut2::from_shape((c, d + 1), g).unwrap_or_else(|_| unreachable!());
    let block = block.max(1);
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let xb = x.slice(s![start..end, ..]);
        let rb = scratch(rows, (end - start) * c);
        dense_logits(xb, wmat, w, d, rb);
        for (i, z) in rb.chunks_exact_mut(c).enumerate() {
            let row = start + i;
            let weight = rw.as_ref().map_or(1.0, |rw| rw[row]);
            loss += weight * row_residual(z, class_of(y[row]), weight);
            for (k, &r) in z.iter().enumerate() {
                gfull[[k, d]] += r;
            }
        }
        let rv = ArrayView2::from_shape((end - start, c), &*rb).unwrap_or_else(|_| unreachable!());
        general_mat_mul(1.0, &rv.t(), &xb, 1.0, &mut gfull.slice_mut(s![.., ..d]));
        start = end;
    }
    loss
}

fn csr_gradient(
    x: &CsrMatrix,
    w: &[f64],
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    rows: &mut Vec<f64>,
    g: &mut [f64],
    c: usize,
) -> f64 {
    let d = x.n_cols();
    g.fill(0.0);
    let mut loss = 0.0;
    let z = scratch(rows, c);
    for r in 0..x.n_rows() {
        let weight = rw.as_ref().map_or(1.0, |rw| rw[r]);
        csr_logits(x, r, w, d, z);
        loss += weight * row_residual(z, class_of(y[r]), weight);
        let (idx, val) = x.row(r);
        for (k, &res) in z.iter().enumerate() {
            let gk = &mut g[k * (d + 1)..(k + 1) * (d + 1)];
            for (&j, &v) in idx.iter().zip(val) {
                gk[j as usize] += res * v;
            }
            gk[d] += res;
        }
    }
    loss
}
