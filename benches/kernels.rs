//! Criterion micro-benchmarks of the hot kernels (issue 7), fixed seeds, parameters in the ids:
//!
//! - `gradient/{dense,csr}/rows=R/cols=D`: a worker's coded gradient (logistic, with row weights);
//! - `decode_sum/n=N/d=D`: rank 0's weighted sum of n coded gradients (the coordinator's loop);
//! - `decode_solve/{code}/n=N`: decoding weights for a new responder set (uncached) and a cache hit;
//! - `mlp/...`: the MLP's gradient (784-256-128-10, 512 rows, dense), and the GEMMs of its
//!   forward and backward pass alone in f64 and in f32 (the measurement behind the model's
//!   choice of f64, `src/model/mlp/mod.rs`).
//!
//! Short measurement times so that `make bench` stays within its budget; the end-to-end figures
//! against the bandwidth limit come from `benches/suite.rs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::linalg::{general_mat_mul, Dot};
use ndarray::{Array1, Array2, ArrayView1, LinalgScalar};

use gradcode::coding::{self, CodeKind, Decoder};
use gradcode::data::synth::{self, SynthKind, SynthSpec};
use gradcode::data::{Dataset, Features, Task};
use gradcode::model::{Logistic, Mlp, Model, Workspace};

fn data(rows: usize, d: usize, sparsity: f64) -> Dataset {
    let spec = SynthSpec {
        kind: SynthKind::Logistic,
        rows,
        features: d,
        sparsity,
        test_rows: 0,
        seed: 1,
        zipf: None,
    };
    synth::generate(&spec).expect("synthetic data").0
}

fn gradient(c: &mut Criterion) {
    let mut g = c.benchmark_group("gradient");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let cases = [
        ("dense", 20_000, 1_000, 1.0),
        ("dense", 4_000, 123, 1.0),
        ("csr", 30_000, 123, 14.0 / 123.0),
        ("csr", 100_000, 1_000_000, 50.0 / 1e6),
    ];
    for (kind, rows, d, sp) in cases {
        let ds = data(rows, d, sp);
        let model = Logistic::new(d);
        let w = Array1::from_elem(model.dim(), 0.01);
        let rw = Array1::from_elem(rows, 0.5);
        let mut out = Array1::zeros(model.dim());
        let mut ws = Workspace::default();
        g.throughput(Throughput::Elements(ds.x.nnz() as u64));
        g.bench_function(
            BenchmarkId::new(kind, format!("rows={rows}/cols={d}/nnz={}", ds.x.nnz())),
            |b| {
                b.iter(|| {
                    black_box(model.gradient_into(
                        w.view(),
                        &ds.x,
                        ds.y.view(),
                        Some(rw.view()),
                        &mut ws,
                        out.view_mut(),
                    ))
                })
            },
        );
    }
    g.finish();
}

/// Issue 20 §2: the CSR gradient kernel of one worker's rows of the Amazon-like problem (8
/// workers at s = 1: 2 of 8 partitions of 26,208 rows, 241,915 Zipf columns, 44 a row), on the
/// full column space and re-indexed to the worker's support (local w and g).
fn support(c: &mut Criterion) {
    let mut g = c.benchmark_group("support");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let (rows, d) = (6_552, 241_915);
    let spec = SynthSpec {
        kind: SynthKind::Logistic,
        rows,
        features: d,
        sparsity: 44.0 / d as f64,
        test_rows: 0,
        seed: 1,
        zipf: Some(1.0),
    };
    let ds = synth::generate(&spec).expect("synthetic data").0;
    let Features::Sparse(x) = &ds.x else {
        panic!("zipf data is CSR")
    };
    let cols = x.support();
    let local = Features::Sparse(x.on_support(&cols).expect("its own support"));
    eprintln!(
        "support: {} of {d} columns ({:.1} %)",
        cols.len(),
        100.0 * cols.len() as f64 / d as f64
    );
    let rw = Array1::from_elem(rows, 0.5);
    for (name, x, dim) in [("full", &ds.x, d), ("on-support", &local, cols.len())] {
        let model = Logistic::new(dim);
        let w = Array1::from_elem(model.dim(), 0.01);
        let mut out = Array1::zeros(model.dim());
        let mut ws = Workspace::default();
        g.throughput(Throughput::Elements(x.nnz() as u64));
        g.bench_function(
            BenchmarkId::new(name, format!("rows={rows}/cols={dim}")),
            |b| {
                b.iter(|| {
                    black_box(model.gradient_into(
                        w.view(),
                        x,
                        ds.y.view(),
                        Some(rw.view()),
                        &mut ws,
                        out.view_mut(),
                    ))
                })
            },
        );
    }
    g.finish();
}

fn decode_sum(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_sum");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for (n, d) in [(8, 1_000), (8, 100_000), (64, 100_000), (8, 1_000_000)] {
        let bufs: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..d).map(|j| ((i * 31 + j) % 97) as f64 * 1e-3).collect())
            .collect();
        let a: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
        let mut gsum = Array1::<f64>::zeros(d);
        g.throughput(Throughput::Bytes(((n + 1) * d * 8) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("n={n}/d={d}")), |b| {
            b.iter(|| {
                gsum.fill(0.0);
                for (v, &w) in bufs.iter().zip(&a) {
                    gsum.scaled_add(w, &ArrayView1::from(v.as_slice()));
                }
                black_box(&gsum);
            })
        });
    }
    g.finish();
}

fn decode_solve(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_solve");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for kind in [CodeKind::CyclicMds, CodeKind::Frc] {
        for n in [8, 32, 64] {
            let code = coding::build(kind, n, 1, 1).expect("code");
            let resp: Vec<usize> = (1..n).collect();
            g.bench_function(
                BenchmarkId::new(format!("{}/uncached", kind.name()), format!("n={n}")),
                |b| b.iter(|| black_box(code.decode(black_box(&resp)).expect("decode"))),
            );
            let mut dec = Decoder::new(coding::build(kind, n, 1, 1).expect("code"));
            g.bench_function(
                BenchmarkId::new(format!("{}/cached", kind.name()), format!("n={n}")),
                |b| {
                    b.iter(|| {
                        black_box(dec.decode(black_box(&resp)).expect("decode").weights.len())
                    })
                },
            );
        }
    }
    g.finish();
}

/// The GEMMs of one forward and backward pass of a dense MLP with layer `widths` over `rows`
/// rows, in precision `A`: Z_l = A_{l−1} W_lᵀ, then ∇W_l = Δ_lᵀ A_{l−1} and Δ_{l−1} = Δ_l W_l.
struct Gemms<A> {
    acts: Vec<Array2<A>>,
    weights: Vec<Array2<A>>,
    grads: Vec<Array2<A>>,
    deltas: Vec<Array2<A>>,
}

impl<A: LinalgScalar + From<u8>> Gemms<A> {
    fn new(rows: usize, widths: &[usize]) -> Self {
        let v = |i: usize| A::from((i % 7) as u8);
        Gemms {
            acts: widths
                .iter()
                .map(|&w| Array2::from_shape_fn((rows, w), |(i, j)| v(i + j)))
                .collect(),
            weights: widths
                .windows(2)
                .map(|p| Array2::from_shape_fn((p[1], p[0]), |(i, j)| v(i * 3 + j)))
                .collect(),
            grads: widths
                .windows(2)
                .map(|p| Array2::from_elem((p[1], p[0]), A::zero()))
                .collect(),
            deltas: widths
                .iter()
                .map(|&w| Array2::from_elem((rows, w), A::zero()))
                .collect(),
        }
    }

    fn pass(&mut self) {
        let layers = self.weights.len();
        for l in 0..layers {
            let (before, after) = self.acts.split_at_mut(l + 1);
            let w = &self.weights[l];
            general_mat_mul(A::one(), &before[l], &w.t(), A::zero(), &mut after[0]);
        }
        for l in (0..layers).rev() {
            let (before, after) = self.deltas.split_at_mut(l + 1);
            general_mat_mul(
                A::one(),
                &after[0].t(),
                &self.acts[l],
                A::one(),
                &mut self.grads[l],
            );
            if l > 0 {
                general_mat_mul(
                    A::one(),
                    &after[0],
                    &self.weights[l],
                    A::zero(),
                    &mut before[l],
                );
            }
        }
    }
}

fn mlp(c: &mut Criterion) {
    let mut g = c.benchmark_group("mlp");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let (rows, widths) = (512, [784, 256, 128, 10]);
    // Elements: the flops of the pass (three GEMMs per layer but the first, which has two).
    let flops: usize = widths
        .windows(2)
        .map(|p| 2 * rows * p[0] * p[1])
        .sum::<usize>()
        * 3
        - 2 * rows * widths[0] * widths[1];
    g.throughput(Throughput::Elements(flops as u64));
    let mut g64 = Gemms::<f64>::new(rows, &widths);
    g.bench_function("gemms-f64/784-256-128-10/rows=512", |b| {
        b.iter(|| g64.pass())
    });
    let mut g32 = Gemms::<f32>::new(rows, &widths);
    g.bench_function("gemms-f32/784-256-128-10/rows=512", |b| {
        b.iter(|| g32.pass())
    });
    let x = Array2::from_shape_fn((rows, 784), |(i, j)| ((i * 7 + j) % 13) as f64 / 13.0);
    let y = Array1::from_shape_fn(rows, |i| (i % 10) as f64);
    let model = Mlp::new(784, &[256, 128], Task::Multiclass { classes: 10 }).expect("mlp");
    let w = model.init(1);
    let rw = Array1::from_elem(rows, 0.5);
    let mut out = Array1::zeros(model.dim());
    let mut ws = Workspace::default();
    let xf = Features::Dense(x);
    g.bench_function("gradient-f64/784-256-128-10/rows=512", |b| {
        b.iter(|| {
            black_box(model.gradient_into(
                w.view(),
                &xf,
                y.view(),
                Some(rw.view()),
                &mut ws,
                out.view_mut(),
            ))
        })
    });
    // A plain square dgemm, the BLAS ceiling on this machine (elements: its flops).
    let a = Array2::from_shape_fn((512, 512), |(i, j)| ((i + j) % 5) as f64);
    g.throughput(Throughput::Elements(2 * 512 * 512 * 512));
    g.bench_function("dgemm/512x512x512", |b| b.iter(|| black_box(a.dot(&a))));
    g.finish();
}

criterion_group!(benches, gradient, support, decode_sum, decode_solve, mlp);
criterion_main!(benches);
