//! The GEMMs of a network's forward and backward pass, and their throughput against OpenBLAS
//! `dgemm` on the same shapes, measured in the same process (issue 21: "GEMM throughput as a
//! fraction of OpenBLAS dgemm measured in the same run on the same shapes"; `gradcode gemm`,
//! which `make bench-nn` runs beside every training run).
//!
//! [`Model::gemm_layers`] lists, per layer, the GEMMs one forward + backward pass multiplies for
//! a batch of rows, split into the model's row blocks as `gradient_into` splits them: Z = A Wᵀ
//! (rows × inputs × units), ∇W += Δᵀ A (units × rows × inputs) and, for every layer but the
//! first, the input gradient Δ W (rows × units × inputs); a convolution's rows are its im2col
//! rows (images × output positions). [`measure`] then times, interleaved so that both see the
//! same load, and taking the median of `repeats` runs:
//! - per layer, its GEMMs as the model issues them (the same functions the networks train with,
//!   `mlp::dense_z`, `dense_weight_grad`, `dense_input_grad`: weights strided in the parameter
//!   vector, transposed operands, accumulation into the gradient) against plain `dgemm` on
//!   contiguous row-major operands of the same m × k × n;
//! - the whole pass, `Model::gradient_into` on synthetic dense rows with row weights (the GEMMs
//!   and everything else: biases, ReLU, im2col/col2im, pooling, the loss), against the sum of
//!   the layers' `dgemm` times.
//!
//! Beside them, for the K-FAC side of a worker's compute, the median time of
//! `Model::kfac_factors_into` on the same rows (the factor sums a worker adds to its message on
//! a factor-update iteration; their GEMMs are not counted above).
//!
//! A fraction is `dgemm` time over the model's time for the same flops (1: as fast as `dgemm`).
//! f64 only: the models compute in f64 (`src/model/mlp/mod.rs` says why), so the ceiling they
//! are held to is `dgemm`; `sgemm` on the MLP's shapes is in `cargo bench --bench kernels -- mlp`.
//! Not covered: the GLMs (matrix-vector products, no GEMM), CSR input (the first layer is then
//! a sparse product).

use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::mlp::{dense_input_grad, dense_weight_grad, dense_z};
use super::{Model, ParamBlock, Workspace};
use crate::data::{Features, Task};

/// One GEMM C (m × n) = A (m × k) · B (k × n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Gemm {
    /// Floating-point operations: 2·m·k·n.
    pub fn flops(&self) -> u64 {
        2 * (self.m as u64) * (self.k as u64) * (self.n as u64)
    }
}

/// The GEMMs of one layer in one forward and backward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerGemms {
    /// The layer, e.g. `dense 784-256` or `conv2 5x5x6-16`.
    pub name: String,
    /// Its parameters (units × (inputs + 1)).
    pub block: ParamBlock,
    /// GEMM rows of each row block: the block's rows (dense) or rows × output positions (conv).
    pub rows: Vec<usize>,
    /// Whether the pass forms the layer's input gradient Δ W (every layer but the first).
    pub input_grad: bool,
}

impl LayerGemms {
    /// The GEMMs, block after block: forward, weight gradient, then the input gradient.
    pub fn gemms(&self) -> Vec<Gemm> {
        let (i, u) = (self.block.inputs, self.block.units);
        let mut out = Vec::with_capacity(3 * self.rows.len());
        for &r in &self.rows {
            out.push(Gemm { m: r, k: i, n: u });
            out.push(Gemm { m: u, k: r, n: i });
            if self.input_grad {
                out.push(Gemm { m: r, k: u, n: i });
            }
        }
        out
    }

    /// Flops of the layer's GEMMs.
    pub fn flops(&self) -> u64 {
        self.gemms().iter().map(Gemm::flops).sum()
    }
}

/// `rows` rows split into blocks of at most `block` (the last one shorter), as the networks'
/// `for_each_block` splits them.
pub(crate) fn row_blocks(rows: usize, block: usize) -> Vec<usize> {
    let block = block.max(1);
    (0..rows.div_ceil(block))
        .map(|b| block.min(rows - b * block))
        .collect()
}

/// One layer's times.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiming {
    pub layer: LayerGemms,
    /// Median seconds of the layer's GEMMs as the model issues them.
    pub model_s: f64,
    /// Median seconds of plain `dgemm` on the same shapes.
    pub dgemm_s: f64,
}

impl LayerTiming {
    /// `dgemm` time over the model's for the same flops.
    pub fn fraction(&self) -> f64 {
        self.dgemm_s / self.model_s
    }
}

/// What [`measure`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmReport {
    /// Rows of the pass.
    pub rows: usize,
    /// Timed runs of each measurement.
    pub repeats: usize,
    pub layers: Vec<LayerTiming>,
    /// Median seconds of the whole forward and backward pass (`gradient_into`).
    pub pass_s: f64,
    /// Median seconds of K-FAC's factor sums on the same rows (`kfac_factors_into`).
    pub factors_s: f64,
}

impl GemmReport {
    /// Flops of every layer's GEMMs.
    pub fn flops(&self) -> u64 {
        self.layers.iter().map(|l| l.layer.flops()).sum()
    }
    /// Σ of the layers' `dgemm` seconds.
    pub fn dgemm_s(&self) -> f64 {
        self.layers.iter().map(|l| l.dgemm_s).sum()
    }
    /// Σ of the layers' GEMM seconds as the model issues them.
    pub fn model_gemm_s(&self) -> f64 {
        self.layers.iter().map(|l| l.model_s).sum()
    }
    /// The pass's GEMM throughput as a fraction of `dgemm`'s: Σ `dgemm` seconds over the pass's.
    pub fn fraction(&self) -> f64 {
        self.dgemm_s() / self.pass_s
    }
}

/// One row block of a layer in the model's layout: its rows, the inputs A, outputs Z, output
/// gradients Δ and input gradients.
type BlockBufs = (usize, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// The buffers of one layer's GEMMs in the model's layout, and of `dgemm` on the same shapes.
struct LayerBufs {
    block: ParamBlock,
    input_grad: bool,
    blocks: Vec<BlockBufs>,
    /// Per GEMM: contiguous A (m × k), B (k × n), C (m × n).
    plain: Vec<(Array2<f64>, Array2<f64>, Array2<f64>)>,
}

impl LayerBufs {
    fn new(l: &LayerGemms, rng: &mut ChaCha8Rng) -> Self {
        let mut fill = |n: usize| {
            (0..n)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect::<Vec<f64>>()
        };
        let (i, u) = (l.block.inputs, l.block.units);
        let blocks = l
            .rows
            .iter()
            .map(|&r| {
                (
                    r,
                    fill(r * i),
                    vec![0.0; r * u],
                    fill(r * u),
                    vec![0.0; r * i],
                )
            })
            .collect();
        let plain = l
            .gemms()
            .iter()
            .map(|g| {
                let a = Array2::from_shape_vec((g.m, g.k), fill(g.m * g.k));
                let b = Array2::from_shape_vec((g.k, g.n), fill(g.k * g.n));
                match (a, b) {
                    (Ok(a), Ok(b)) => (a, b, Array2::zeros((g.m, g.n))),
                    _ => (
                        Array2::zeros((0, 0)),
                        Array2::zeros((0, 0)),
                        Array2::zeros((0, 0)),
                    ),
                }
            })
            .collect();
        LayerBufs {
            block: l.block,
            input_grad: l.input_grad,
            blocks,
            plain,
        }
    }

    /// The layer's GEMMs as the model issues them; seconds.
    fn model(&mut self, w: &[f64], g: &mut [f64]) -> f64 {
        let b = self.block;
        let start = Instant::now();
        for (r, a, z, d, da) in &mut self.blocks {
            let r = *r;
            dense_z(w, &b, r, a, z);
            dense_weight_grad(&b, r, d, a, &mut g[b.range()]);
            if self.input_grad {
                dense_input_grad(w, &b, r, d, da);
            }
        }
        start.elapsed().as_secs_f64()
    }

    /// Plain `dgemm` on the same shapes; seconds.
    fn dgemm(&mut self) -> f64 {
        let start = Instant::now();
        for (a, b, c) in &mut self.plain {
            general_mat_mul(1.0, &*a, &*b, 0.0, c);
        }
        start.elapsed().as_secs_f64()
    }
}

/// The median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Labels of `rows` synthetic rows for `task`: classes in turn, ±1, or 0.5.
fn labels(task: Task, rows: usize) -> Array1<f64> {
    Array1::from_shape_fn(rows, |i| match task {
        Task::Multiclass { classes } => (i % classes.max(1)) as f64,
        Task::Binary => {
            if i % 2 == 0 {
                1.0
            } else {
                -1.0
            }
        }
        Task::Regression => 0.5,
    })
}

/// Time `model`'s forward and backward pass of `rows` synthetic dense rows (`task`'s labels,
/// row weights 1) and each layer's GEMMs, model layout and plain `dgemm`, the median of
/// `repeats` runs each after one untimed run (see the module docs).
pub fn measure(
    model: &dyn Model,
    task: Task,
    rows: usize,
    repeats: usize,
    seed: u64,
) -> GemmReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((rows, model.n_features()), |_| rng.gen_range(0.0..1.0));
    let x = Features::Dense(x);
    let y = labels(task, rows);
    let rw = Array1::from_elem(rows, 1.0);
    let w = model.init(seed);
    let w = w.as_slice().map_or_else(|| w.to_vec(), <[f64]>::to_vec);
    let mut g = vec![0.0; model.dim()];
    let mut out = Array1::zeros(model.dim());
    let mut ws = Workspace::default();
    let layers = model.gemm_layers(rows);
    let mut bufs: Vec<LayerBufs> = layers.iter().map(|l| LayerBufs::new(l, &mut rng)).collect();
    let wv = ndarray::ArrayView1::from(&w[..]);
    let packed =
        crate::optim::kfac::packed_len(model.kfac_layers().iter().map(|b| (b.units, b.inputs)));
    let mut factors = vec![0.0; packed];
    let mut factor_s = Vec::with_capacity(repeats);
    let mut pass = Vec::with_capacity(repeats);
    let mut times = vec![(Vec::with_capacity(repeats), Vec::with_capacity(repeats)); layers.len()];
    for rep in 0..=repeats {
        let start = Instant::now();
        std::hint::black_box(model.gradient_into(
            wv,
            &x,
            y.view(),
            Some(rw.view()),
            &mut ws,
            out.view_mut(),
        ));
        let pass_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        model.kfac_factors_into(wv, &x, y.view(), Some(rw.view()), &mut ws, &mut factors);
        let f_s = start.elapsed().as_secs_f64();
        let layer_s: Vec<(f64, f64)> = bufs
            .iter_mut()
            .map(|b| (b.model(&w, &mut g), b.dgemm()))
            .collect();
        // The first run warms the caches and the workspace up, untimed.
        if rep > 0 {
            pass.push(pass_s);
            factor_s.push(f_s);
            for (t, (m, d)) in times.iter_mut().zip(layer_s) {
                t.0.push(m);
                t.1.push(d);
            }
        }
    }
    std::hint::black_box((&g, &factors));
    GemmReport {
        rows,
        repeats,
        layers: layers
            .into_iter()
            .zip(times)
            .map(|(layer, (m, d))| LayerTiming {
                layer,
                model_s: median(m),
                dgemm_s: median(d),
            })
            .collect(),
        pass_s: median(pass),
        factors_s: median(factor_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageShape;
    use crate::model::{Cnn, Mlp};

    fn shapes(l: &LayerGemms) -> Vec<(usize, usize, usize)> {
        l.gemms().iter().map(|g| (g.m, g.k, g.n)).collect()
    }

    #[test]
    fn row_blocks_split_like_the_networks() {
        assert_eq!(row_blocks(64, 256), vec![64]);
        assert_eq!(row_blocks(600, 256), vec![256, 256, 88]);
        assert_eq!(row_blocks(512, 256), vec![256, 256]);
        assert_eq!(row_blocks(0, 256), Vec::<usize>::new());
        assert_eq!(row_blocks(3, 0), vec![1, 1, 1]);
    }

    /// The MLP 784-256-128-10 on 64 rows: three GEMMs per layer but the first, flops exact.
    #[test]
    fn mlp_gemms_and_flops() {
        let m = Mlp::new(784, &[256, 128], Task::Multiclass { classes: 10 }).expect("mlp");
        let l = m.gemm_layers(64);
        let names: Vec<&str> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["dense 784-256", "dense 256-128", "dense 128-10"]);
        assert_eq!(
            shapes(&l[0]),
            [(64, 784, 256), (256, 64, 784)],
            "no input gradient for the first layer"
        );
        assert_eq!(
            shapes(&l[1]),
            [(64, 256, 128), (128, 64, 256), (64, 128, 256)]
        );
        assert_eq!(l[2].flops(), 3 * 2 * 64 * 128 * 10);
        let total: u64 = l.iter().map(LayerGemms::flops).sum();
        assert_eq!(
            total,
            2 * 64 * (2 * 784 * 256 + 3 * 256 * 128 + 3 * 128 * 10)
        );
        // Past one block of 256 rows the GEMMs repeat per block.
        let l = m.gemm_layers(300);
        assert_eq!(l[0].rows, vec![256, 44]);
        assert_eq!(l[0].gemms().len(), 4);
    }

    /// The CNN on 28×28 images: the convolutions' rows are images × positions (24² and 8²).
    #[test]
    fn cnn_gemms_are_the_im2col_shapes() {
        let image = ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        };
        let c = Cnn::new(784, Some(image), Task::Multiclass { classes: 10 }).expect("cnn");
        let l = c.gemm_layers(100);
        let names: Vec<&str> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1 5x5x1-6",
                "conv2 5x5x6-16",
                "dense 256-120",
                "dense 120-10"
            ]
        );
        // Blocks of 64 images: 64 and 36.
        assert_eq!(l[0].rows, vec![64 * 576, 36 * 576]);
        assert_eq!(shapes(&l[0])[..2], [(64 * 576, 25, 6), (6, 64 * 576, 25)]);
        assert!(!l[0].input_grad && l[1].input_grad && l[2].input_grad);
        assert_eq!(shapes(&l[1])[2], (64 * 64, 16, 150));
        assert_eq!(l[3].flops(), 3 * 2 * 100 * 120 * 10);
        let dim: usize = l.iter().map(|l| l.block.len()).sum();
        assert_eq!(dim, c.dim(), "the layers cover every parameter");
    }

    /// The GLMs multiply no matrices: nothing to measure.
    #[test]
    fn glms_have_no_gemms() {
        assert!(crate::model::Softmax::new(5, 3).gemm_layers(10).is_empty());
    }

    /// The model-layout GEMMs compute the layer's products: Z = A Wᵀ, ∇W += Δᵀ A and Δ W
    /// against sums written out, on weights strided in the parameter vector.
    #[test]
    fn model_layout_gemms_compute_the_layer() {
        let b = ParamBlock {
            offset: 2,
            units: 3,
            inputs: 4,
        };
        let l = LayerGemms {
            name: "dense 4-3".into(),
            block: b,
            rows: vec![5],
            input_grad: true,
        };
        let mut bufs = LayerBufs::new(&l, &mut ChaCha8Rng::seed_from_u64(3));
        let w: Vec<f64> = (0..b.offset + b.len())
            .map(|i| i as f64 * 0.25 - 1.0)
            .collect();
        let mut g = vec![0.5; w.len()];
        assert!(bufs.model(&w, &mut g) >= 0.0);
        let (r, a, z, d, da) = &bufs.blocks[0];
        assert_eq!(*r, 5);
        let wt = |k: usize, j: usize| w[b.offset + k * (b.inputs + 1) + j];
        for i in 0..5 {
            for k in 0..3 {
                let want: f64 = (0..4).map(|j| a[i * 4 + j] * wt(k, j)).sum();
                assert!((z[i * 3 + k] - want).abs() < 1e-12);
            }
            for j in 0..4 {
                let want: f64 = (0..3).map(|k| d[i * 3 + k] * wt(k, j)).sum();
                assert!((da[i * 4 + j] - want).abs() < 1e-12);
            }
        }
        for k in 0..3 {
            for j in 0..4 {
                let want: f64 = 0.5 + (0..5).map(|i| d[i * 3 + k] * a[i * 4 + j]).sum::<f64>();
                assert!((g[b.offset + k * 5 + j] - want).abs() < 1e-12);
            }
            assert_eq!(g[b.offset + k * 5 + 4], 0.5, "biases untouched");
        }
        assert_eq!(g[..2], [0.5, 0.5], "other parameters untouched");
    }

    /// A measurement runs every layer's GEMMs and the pass and reports positive times.
    #[test]
    fn measure_reports_every_layer() {
        let m = Mlp::new(12, &[8], Task::Multiclass { classes: 3 }).expect("mlp");
        let r = measure(&m, Task::Multiclass { classes: 3 }, 16, 3, 7);
        assert_eq!(r.layers.len(), 2);
        assert_eq!(r.rows, 16);
        assert_eq!(r.flops(), 2 * 16 * (2 * 12 * 8 + 3 * 8 * 3));
        assert!(r.pass_s > 0.0 && r.dgemm_s() > 0.0 && r.model_gemm_s() > 0.0);
        assert!(r.layers.iter().all(|l| l.fraction() > 0.0));
        assert!(r.fraction().is_finite());
        assert!(r.factors_s > 0.0);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
