//! Shared kernels of the single-output models (logistic, linear): z = X w + b, then a scalar
//! per-row loss ℓ(z, y) and its derivative ∂ℓ/∂z.
//!
//! Dense: row blocks of X go through BLAS gemv twice while they are in cache (forward
//! `z_b = X_b w`, backward `g += X_bᵀ r_b`). CSR: one loop over rows computing the row's score and
//! scattering its residual while the row is in L1.
use ndarray::linalg::general_mat_vec_mul;
use ndarray::{s, ArrayView1, ArrayView2, ArrayViewMut1};

use super::{block_rows, checked_params, run_gradient_kernel, scratch, Workspace};
use crate::data::{CsrMatrix, Features};

/// A per-row loss of a scalar score.
pub(crate) trait ScalarLoss {
    /// ℓ(z, y).
    fn loss(z: f64, y: f64) -> f64;
    /// ∂ℓ/∂z at (z, y).
    fn dloss(z: f64, y: f64) -> f64;
    /// (ℓ, ∂ℓ/∂z) at (z, y), bit-identical to the two calls; a loss overrides it when both share
    /// work (the logistic loss needs one `exp` instead of two).
    #[inline]
    fn loss_and_dloss(z: f64, y: f64) -> (f64, f64) {
        (Self::loss(z, y), Self::dloss(z, y))
    }
}

#[inline]
fn csr_score(w: &[f64], bias: f64, idx: &[u32], val: &[f64]) -> f64 {
    let mut z = bias;
    for (&c, &v) in idx.iter().zip(val) {
        z += v * w[c as usize];
    }
    z
}

/// Call `f(row, z_row)` for every row, in order.
pub(crate) fn for_each_score(
    d: usize,
    w: ArrayView1<f64>,
    x: &Features,
    y: ArrayView1<f64>,
    ws: &mut Workspace,
    mut f: impl FnMut(usize, f64),
) {
    let Workspace { rows, params, .. } = ws;
    let w = checked_params(d + 1, d, w, params, x, y);
    let (wv, bias) = (ArrayView1::from(&w[..d]), w[d]);
    match x {
        Features::Dense(x) => {
            let n = x.nrows();
            let block = block_rows(n, d);
            let mut start = 0;
            while start < n {
                let end = (start + block).min(n);
                let xb = x.slice(s![start..end, ..]);
                let zb = scratch(rows, end - start);
                let mut zv = ArrayViewMut1::from(&mut *zb);
                general_mat_vec_mul(1.0, &xb, &wv, 0.0, &mut zv);
                for (i, &z) in zb.iter().enumerate() {
                    f(start + i, z + bias);
                }
                start = end;
            }
        }
        Features::Sparse(x) => {
            for r in 0..x.n_rows() {
                let (idx, val) = x.row(r);
                f(r, csr_score(w, bias, idx, val));
            }
        }
    }
}

/// Σ_r ℓ(z_r, y_r).
pub(crate) fn loss<L: ScalarLoss>(
    d: usize,
    w: ArrayView1<f64>,
    x: &Features,
    y: ArrayView1<f64>,
    ws: &mut Workspace,
) -> f64 {
    let mut total = 0.0;
    for_each_score(d, w, x, y, ws, |r, z| total += L::loss(z, y[r]));
    total
}

/// `out = Σ_r weight_r ∇ℓ(z_r, y_r)`.
pub(crate) fn gradient_into<L: ScalarLoss>(
    d: usize,
    w: ArrayView1<f64>,
    x: &Features,
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    ws: &mut Workspace,
    out: ArrayViewMut1<f64>,
) -> f64 {
    let n = x.n_rows();
    gradient_into_blocked::<L>(d, w, x, y, rw, ws, out, block_rows(n, d))
}

/// [`gradient_into`] with an explicit dense block size (for timing comparisons).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gradient_into_blocked<L: ScalarLoss>(
    d: usize,
    w: ArrayView1<f64>,
    x: &Features,
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    ws: &mut Workspace,
    out: ArrayViewMut1<f64>,
    block: usize,
) -> f64 {
    run_gradient_kernel(
        d + 1,
        d,
        w,
        x,
        y,
        rw.as_ref(),
        ws,
        out,
        |w, rows, g| match x {
            Features::Dense(x) => dense_gradient::<L>(x.view(), w, y, rw, rows, g, block.max(1)),
            Features::Sparse(x) if x.n_cols() >= INTERLEAVE_MIN_COLS => {
                csr_gradient_interleaved::<L>(x, w, y, rw, rows, g)
            }
            Features::Sparse(x) => csr_gradient::<L>(x, w, y, rw, g),
        },
    )
}

fn dense_gradient<L: ScalarLoss>(
    x: ArrayView2<f64>,
    w: &[f64],
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    rows: &mut Vec<f64>,
    g: &mut [f64],
    block: usize,
) -> f64 {
    let (n, d) = x.dim();
    let mut loss = 0.0;
    let (wv, bias) = (ArrayView1::from(&w[..d]), w[d]);
    let (gw, gb) = g.split_at_mut(d);
    gw.fill(0.0);
    let mut gw = ArrayViewMut1::from(gw);
    let mut bias_sum = 0.0;
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let xb = x.slice(s![start..end, ..]);
        let rb = scratch(rows, end - start);
        general_mat_vec_mul(1.0, &xb, &wv, 0.0, &mut ArrayViewMut1::from(&mut *rb));
        for (i, r) in rb.iter_mut().enumerate() {
            let row = start + i;
            let weight = rw.as_ref().map_or(1.0, |rw| rw[row]);
            let z = *r + bias;
            let (l, dl) = L::loss_and_dloss(z, y[row]);
            loss += weight * l;
            *r = weight * dl;
            bias_sum += *r;
        }
        general_mat_vec_mul(1.0, &xb.t(), &ArrayView1::from(&*rb), 1.0, &mut gw);
        start = end;
    }
    gb[0] = bias_sum;
    loss
}

pub(super) fn csr_gradient<L: ScalarLoss>(
    x: &CsrMatrix,
    w: &[f64],
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    g: &mut [f64],
) -> f64 {
    let d = x.n_cols();
    let bias = w[d];
    g.fill(0.0);
    let mut bias_sum = 0.0;
    let mut loss = 0.0;
    for r in 0..x.n_rows() {
        let weight = rw.as_ref().map_or(1.0, |rw| rw[r]);
        let (idx, val) = x.row(r);
        let z = csr_score(w, bias, idx, val);
        let (l, dl) = L::loss_and_dloss(z, y[r]);
        loss += weight * l;
        let res = weight * dl;
        bias_sum += res;
        for (&c, &v) in idx.iter().zip(val) {
            g[c as usize] += res * v;
        }
    }
    g[d] = bias_sum;
    loss
}

/// CSR gradient for wide models (w and g far larger than L2). Their entries are random accesses
/// that miss the cache (~90 % of the plain kernel's samples on 10⁶ features), so w and g are
/// interleaved in `wg` (wg[2c] = w_c, wg[2c+1] = g_c) for the pass: each non-zero touches one
/// cache line instead of two (measured 51 → 27 ms on 100,000 × 10⁶, 50 nnz per row), and the
/// lines of the row `PREFETCH_ROWS` ahead are prefetched so the misses overlap with this row. The copy in and out is two
/// sequential passes over d values, cheap next to nnz random accesses. Same sums, same order as
/// [`csr_gradient`]: bit-identical results.
pub(super) fn csr_gradient_interleaved<L: ScalarLoss>(
    x: &CsrMatrix,
    w: &[f64],
    y: ArrayView1<f64>,
    rw: Option<ArrayView1<f64>>,
    wg: &mut Vec<f64>,
    g: &mut [f64],
) -> f64 {
    let d = x.n_cols();
    let bias = w[d];
    let wg = scratch(wg, 2 * d);
    for (pair, &wc) in wg.chunks_exact_mut(2).zip(&w[..d]) {
        pair[0] = wc;
        pair[1] = 0.0;
    }
    let mut bias_sum = 0.0;
    let mut loss = 0.0;
    let n = x.n_rows();
    for r in 0..n {
        if r + PREFETCH_ROWS < n {
            let (idx, _) = x.row(r + PREFETCH_ROWS);
            for &c in idx {
                prefetch_read(wg, 2 * c as usize);
            }
        }
        let weight = rw.as_ref().map_or(1.0, |rw| rw[r]);
        let (idx, val) = x.row(r);
        let mut z = bias;
        for (&c, &v) in idx.iter().zip(val) {
            z += v * wg[2 * c as usize];
        }
        let (l, dl) = L::loss_and_dloss(z, y[r]);
        loss += weight * l;
        let res = weight * dl;
        bias_sum += res;
        for (&c, &v) in idx.iter().zip(val) {
            wg[2 * c as usize + 1] += res * v;
        }
    }
    for (gc, pair) in g[..d].iter_mut().zip(wg.chunks_exact(2)) {
        *gc = pair[1];
    }
    g[d] = bias_sum;
    loss
}

/// Columns from which the CSR kernel interleaves w and g (2¹⁷ f64 = 1 MiB per vector, half the
/// L2: below that both stay in cache and the plain kernel is faster).
const INTERLEAVE_MIN_COLS: usize = 1 << 17;

/// How many rows ahead the CSR kernel prefetches.
const PREFETCH_ROWS: usize = 2;

/// Hint that `v[i]` will be read soon (no effect on results; a no-op off x86-64).
#[inline(always)]
fn prefetch_read(v: &[f64], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = v.get(i) {
        // SAFETY: prefetching is a hint that never faults; `p` points into `v`.
        #[allow(unused_unsafe)]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>((p as *const f64).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, i);
}
