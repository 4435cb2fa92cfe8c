//! Criterion micro-benchmarks of the hot kernels (issue 7), fixed seeds, parameters in the ids:
//!
//! - `gradient/{dense,csr}/rows=R/cols=D`: a worker's coded gradient (logistic, with row weights);
//! - `decode_sum/n=N/d=D`: rank 0's weighted sum of n coded gradients (the coordinator's loop);
//! - `decode_solve/{code}/n=N`: decoding weights for a new responder set (uncached) and a cache hit.
//!
//! Short measurement times so that `make bench` stays within its budget; the end-to-end figures
//! against the bandwidth limit come from `benches/suite.rs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array1, ArrayView1};

use gradcode::coding::{self, CodeKind, Decoder};
use gradcode::data::synth::{self, SynthKind, SynthSpec};
use gradcode::data::Dataset;
use gradcode::model::{Logistic, Model, Workspace};

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

criterion_group!(benches, gradient, decode_sum, decode_solve);
criterion_main!(benches);
