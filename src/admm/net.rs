//! The network: layer sizes, which layers each layer rank holds, the seeded initialization of a
//! layer, and the assembled forward pass that rank 0 evaluates.

use std::ops::RangeInclusive;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::layer::{cross_entropy, Layer};
use crate::data::DataError;

/// Standard deviation of the initial weights and biases (the authors' 0.1).
pub const INIT_STD: f64 = 0.1;

/// Rows per block of the evaluation's forward pass (bounds its memory).
const EVAL_BLOCK: usize = 1024;

/// Units per layer: n_0 inputs, n_1 … n_{L−1} hidden, n_L classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    sizes: Vec<usize>,
}

impl Net {
    /// The network of `sizes` (at least three: the config checked them).
    pub fn new(sizes: Vec<usize>) -> Net {
        Net { sizes }
    }

    /// Layers L.
    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// n_{l−1}, the inputs of layer l.
    pub fn inputs(&self, l: usize) -> usize {
        self.sizes[l - 1]
    }

    /// n_l, the outputs of layer l.
    pub fn outputs(&self, l: usize) -> usize {
        self.sizes[l]
    }

    /// Classes n_L.
    pub fn classes(&self) -> usize {
        self.sizes[self.layers()]
    }

    /// Parameters of layer l (W_l and b_l).
    pub fn params(&self, l: usize) -> usize {
        self.outputs(l) * (self.inputs(l) + 1)
    }

    /// The layers of each layer rank when each holds `per` consecutive layers.
    pub fn groups(&self, per: usize) -> Vec<RangeInclusive<usize>> {
        let per = per.max(1);
        (0..self.layers().div_ceil(per))
            .map(|g| g * per + 1..=((g + 1) * per).min(self.layers()))
            .collect()
    }
}

/// A zeroed N × M matrix for `what`, allocated fallibly (an allocator refusal is an error line,
/// never an abort).
pub fn try_zeros2(rows: usize, cols: usize, what: &str) -> Result<Array2<f64>, DataError> {
    let oom = || DataError::OutOfMemory {
        what: what.to_string(),
        bytes: rows as u128 * cols as u128 * 8,
    };
    let n = rows.checked_mul(cols).ok_or_else(oom)?;
    let mut v: Vec<f64> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    v.resize(n, 0.0);
    Array2::from_shape_vec((rows, cols), v).map_err(|e| DataError::Invalid(e.to_string()))
}

/// A fallible copy of `a`.
pub fn try_clone(a: &Array2<f64>, what: &str) -> Result<Array2<f64>, DataError> {
    let mut c = try_zeros2(a.nrows(), a.ncols(), what)?;
    c.assign(a);
    Ok(c)
}

/// W_l (n_l × n_{l−1}) and b_l drawn from N(0, INIT_STD²), seeded by (seed, l): every rank draws
/// the same values for layer l whichever rank holds it.
pub fn init_weights(seed: u64, l: usize, n_out: usize, n_in: usize) -> (Array2<f64>, Array1<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(l as u64);
    let normal = Normal::new(0.0, INIT_STD).unwrap_or_else(|_| unreachable!());
    let w = Array2::from_shape_simple_fn((n_out, n_in), || normal.sample(&mut rng));
    let b = Array1::from_shape_simple_fn(n_out, || normal.sample(&mut rng));
    (w, b)
}

/// Layer l at iteration 0 from its input `p` (the training rows for l = 1; else q_{l−1}⁰ as
/// received) and `left_u` (u_{l−1}⁰ as received; None for l = 1): W, b drawn, z = p Wᵀ + b,
/// q = max(z, 0), u = 0, the view of q_{l−1}, u_{l−1} = (p, left_u), the view of p_{l+1} = q.
/// The output layer's z starts at +1 on each row's class and −1 elsewhere (the authors' code).
pub fn init_layer(
    net: &Net,
    l: usize,
    seed: u64,
    p: Array2<f64>,
    left_u: Option<Array2<f64>>,
    labels: Vec<usize>,
) -> Result<Layer, DataError> {
    let (n_in, n_out, n) = (net.inputs(l), net.outputs(l), p.nrows());
    let last = l == net.layers();
    let (w, b) = init_weights(seed, l, n_out, n_in);
    let what = |v: &str| format!("layer {l}'s {v} ({n} × {n_out})");
    let mut z = try_zeros2(n, n_out, &what("z"))?;
    let empty = || Array2::zeros((0, 0));
    let (q, u, right) = if last {
        for (mut row, &y) in z.axis_iter_mut(Axis(0)).zip(&labels) {
            row.fill(-1.0);
            row[y] = 1.0;
        }
        (empty(), empty(), empty())
    } else {
        general_mat_mul(1.0, &p, &w.t(), 0.0, &mut z);
        z += &b;
        let q = z.mapv(|v| v.max(0.0));
        let right = try_clone(&q, &what("view of p_{l+1}"))?;
        (q, try_zeros2(n, n_out, &what("u"))?, right)
    };
    let left = match left_u {
        Some(lu) => (try_clone(&p, &what("view of q_{l-1}"))?, lu),
        None => (empty(), empty()),
    };
    Ok(Layer::from_parts(
        l,
        last,
        w,
        b,
        p,
        z,
        q,
        u,
        left,
        right,
        if last { labels } else { Vec::new() },
    ))
}

/// The assembled network's mean cross-entropy and accuracy on rows `x` with classes `labels`:
/// a forward pass through every layer's (W, b) (ReLU between layers), in blocks of rows.
pub fn evaluate(
    weights: &[(ArrayView2<f64>, ArrayView1<f64>)],
    x: ArrayView2<f64>,
    labels: &[usize],
) -> (f64, f64) {
    let n = x.nrows();
    if n == 0 || weights.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (mut loss, mut correct) = (0.0, 0usize);
    let mut scratch = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + EVAL_BLOCK).min(n);
        let mut a = x.slice(s![start..end, ..]).to_owned();
        for (i, (w, b)) in weights.iter().enumerate() {
            let mut z = Array2::zeros((end - start, w.nrows()));
            general_mat_mul(1.0, &a, &w.t(), 0.0, &mut z);
            z += b;
            if i + 1 < weights.len() {
                z.mapv_inplace(|v| v.max(0.0));
            }
            a = z;
        }
        for (row, &y) in a.axis_iter(Axis(0)).zip(&labels[start..end]) {
            let z = row.to_vec();
            scratch.resize(z.len(), 0.0);
            loss += cross_entropy(&z, y, &mut scratch);
            let best = z
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |acc, (k, &v)| if v > acc.1 { (k, v) } else { acc },
                );
            correct += usize::from(best.0 == y);
        }
        start = end;
    }
    (loss / n as f64, correct as f64 / n as f64)
}

/// Classes 0..C of a classification dataset's labels: multiclass labels as they are, binary
/// −1/+1 as 0/1.
pub fn classes_of(y: ArrayView1<f64>) -> Vec<usize> {
    y.iter()
        .map(|&v| if v < 0.0 { 0 } else { v as usize })
        .collect()
}
