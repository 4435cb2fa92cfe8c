//! Tests of the models: finite differences, dense/CSR agreement, additivity over row blocks,
//! numerical stability, evaluation, construction errors and workspace reuse.
use ndarray::{arr1, arr2, s, Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::*;
use crate::data::{CsrMatrix, Features, Task};

const ROWS: usize = 20;
const FEATURES: usize = 7;
const CLASSES: usize = 3;

pub(super) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub(super) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// A random matrix with about `density` of its entries nonzero, as CSR.
pub(super) fn random_csr(
    rng: &mut ChaCha8Rng,
    rows: usize,
    cols: usize,
    density: f64,
) -> CsrMatrix {
    let (mut indptr, mut indices, mut data) = (vec![0], Vec::new(), Vec::new());
    for _ in 0..rows {
        for c in 0..cols {
            if rng.gen::<f64>() < density {
                indices.push(c as u32);
                data.push(normal(rng));
            }
        }
        indptr.push(indices.len());
    }
    CsrMatrix::new(rows, cols, indptr, indices, data).unwrap()
}

/// The same data as (dense, sparse) features.
pub(super) fn features(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> (Features, Features) {
    let csr = random_csr(rng, rows, cols, 0.3);
    (Features::Dense(csr.to_dense()), Features::Sparse(csr))
}

fn task_of(kind: ModelKind) -> Task {
    match kind {
        ModelKind::Logistic => Task::Binary,
        ModelKind::Linear => Task::Regression,
        ModelKind::Softmax | ModelKind::Mlp | ModelKind::Cnn => {
            Task::Multiclass { classes: CLASSES }
        }
    }
}

fn labels(rng: &mut ChaCha8Rng, kind: ModelKind, rows: usize) -> Array1<f64> {
    task_labels(rng, task_of(kind), rows)
}

/// Random labels of `task`: ±1, 2·N(0, 1), or a class.
pub(super) fn task_labels(rng: &mut ChaCha8Rng, task: Task, rows: usize) -> Array1<f64> {
    Array1::from_shape_fn(rows, |_| match task {
        Task::Binary => {
            if rng.gen::<bool>() {
                1.0
            } else {
                -1.0
            }
        }
        Task::Regression => 2.0 * normal(rng),
        Task::Multiclass { classes } => rng.gen_range(0..classes) as f64,
    })
}

fn model(kind: ModelKind, d: usize) -> Box<dyn Model> {
    let task = task_of(kind);
    // The MLP of the generic tests: two hidden layers (the per-task and per-layer checks are
    // in `mlp/tests.rs`).
    build(kind, &[4, 3], &[], d, None, task).unwrap()
}

/// A random problem: model, dense and sparse features, labels, parameters, row weights.
struct Problem {
    model: Box<dyn Model>,
    dense: Features,
    sparse: Features,
    y: Array1<f64>,
    w: Array1<f64>,
    rw: Array1<f64>,
}

fn problem(kind: ModelKind, seed: u64, rows: usize, d: usize) -> Problem {
    let mut rng = rng(seed);
    let (dense, sparse) = features(&mut rng, rows, d);
    let y = labels(&mut rng, kind, rows);
    let model = model(kind, d);
    let w = Array1::from_shape_fn(model.dim(), |_| 0.7 * normal(&mut rng));
    // Coded-gradient coefficients: real, some negative, one zero.
    let mut rw = Array1::from_shape_fn(rows, |_| rng.gen_range(-1.5..2.0));
    rw[0] = 0.0;
    Problem {
        model,
        dense,
        sparse,
        y,
        w,
        rw,
    }
}

const KINDS: [ModelKind; 4] = [
    ModelKind::Logistic,
    ModelKind::Linear,
    ModelKind::Softmax,
    ModelKind::Mlp,
];

/// K-FAC on `model` at `w` over the rows of `x`: each layer's factors from its factor sums
/// (no decay), refreshed, and the eigen-method direction of the mean gradient; each layer's
/// direction equals (A ⊗ G + γI)⁻¹ vec(∇W) solved densely, to 1e-10 of its largest entry (no
/// KL clip).
pub(super) fn assert_kfac_direction_is_the_kronecker_solve(
    model: &dyn Model,
    w: ArrayView1<f64>,
    x: &Features,
    y: ArrayView1<f64>,
) {
    use crate::optim::kfac::{precondition, LayerFactors};
    let inv = 1.0 / x.n_rows() as f64;
    let sums = model.kfac_factors(w, x, y, None);
    let grad = model.gradient(w, x, y, None) * inv;
    let mut layers: Vec<LayerFactors> = model
        .kfac_layers()
        .iter()
        .map(|b| LayerFactors::new(b.offset, b.units, b.inputs))
        .collect();
    assert_eq!(layers.len(), sums.len());
    for (l, (f, (a, g))) in layers.iter_mut().zip(&sums).enumerate() {
        f.update(l, (a * inv).view(), (g * inv).view(), 0.95)
            .unwrap();
        f.refresh(l).unwrap();
    }
    let damping = 0.1;
    let mut out = vec![0.0; model.dim()];
    let nu = precondition(&layers, grad.as_slice().unwrap(), damping, None, &mut out);
    assert_eq!(nu, 1.0);
    for (l, f) in layers.iter().enumerate() {
        let (units, cols) = (f.units, f.inputs + 1);
        let k = ndarray::linalg::kron(&f.a.value, &f.g.value)
            + Array2::<f64>::eye(units * cols) * damping;
        let gw = grad
            .slice(s![f.offset..f.offset + f.len()])
            .into_shape_with_order((units, cols))
            .unwrap();
        // Column-major vec(∇W).
        let rhs = Array1::from_iter(gw.t().iter().copied());
        let x = cholesky_solve(&k, &rhs);
        let got = &out[f.offset..f.offset + f.len()];
        let mut worst: f64 = 0.0;
        let scale = x.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for i in 0..units {
            for j in 0..cols {
                worst = worst.max((got[i * cols + j] - x[j * units + i]).abs());
            }
        }
        assert!(scale > 0.0);
        assert!(
            worst <= 1e-10 * scale,
            "layer {l}: {worst:e} (scale {scale:e})"
        );
    }
}

/// `k⁻¹ b` for a symmetric positive definite `k`, by a plain Cholesky factorization in Rust.
/// Not LAPACK: the CNN's systems (2,416 unknowns) would run OpenBLAS's threaded solver, which
/// crashes beside the other tests' BLAS calls when `OPENBLAS_NUM_THREADS` is not 1.
fn cholesky_solve(k: &Array2<f64>, b: &Array1<f64>) -> Array1<f64> {
    let n = k.nrows();
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        for i in j..n {
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let s = k[(i, j)] - ri.iter().zip(rj).map(|(a, b)| a * b).sum::<f64>();
            l[i * n + j] = if i == j {
                assert!(s > 0.0, "not positive definite");
                s.sqrt()
            } else {
                s / l[j * n + j]
            };
        }
    }
    // L y = b, then Lᵀ x = y.
    let mut y = b.to_vec();
    for i in 0..n {
        let s: f64 = (0..i).map(|j| l[i * n + j] * y[j]).sum();
        y[i] = (y[i] - s) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| l[j * n + i] * y[j]).sum();
        y[i] = (y[i] - s) / l[i * n + i];
    }
    Array1::from(y)
}

pub(super) fn rel_err(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let diff = (a - b).mapv(|v| v * v).sum().sqrt();
    let scale = b
        .mapv(|v| v * v)
        .sum()
        .sqrt()
        .max(a.mapv(|v| v * v).sum().sqrt());
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// Σ_r weight_r ℓ_r(w), one row at a time through `loss`.
fn weighted_loss(
    m: &dyn Model,
    w: &Array1<f64>,
    x: &Features,
    y: &Array1<f64>,
    rw: &Array1<f64>,
) -> f64 {
    let mut ws = Workspace::default();
    (0..y.len())
        .map(|r| {
            let xr = x.slice_rows(r..r + 1);
            rw[r] * m.loss(w.view(), &xr, y.slice(s![r..r + 1]), &mut ws)
        })
        .sum()
}

pub(super) fn central_difference(f: impl Fn(&Array1<f64>) -> f64, w: &Array1<f64>) -> Array1<f64> {
    const H: f64 = 1e-6;
    Array1::from_shape_fn(w.len(), |i| {
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[i] += H;
        wm[i] -= H;
        (f(&wp) - f(&wm)) / (2.0 * H)
    })
}

#[test]
fn gradients_match_finite_differences_with_signed_row_weights() {
    for kind in KINDS {
        let p = problem(kind, 11, ROWS, FEATURES);
        for (name, x) in [("dense", &p.dense), ("csr", &p.sparse)] {
            let g = p
                .model
                .gradient(p.w.view(), x, p.y.view(), Some(p.rw.view()));
            let fd = central_difference(|w| weighted_loss(&*p.model, w, x, &p.y, &p.rw), &p.w);
            let err = rel_err(&g, &fd);
            println!("FD {} {name}: relative error {err:.2e}", kind.name());
            assert!(
                err < 1e-6,
                "{} {name}: FD relative error {err:e}",
                kind.name()
            );

            // Unweighted: against FD of `loss` itself.
            let g1 = p.model.gradient(p.w.view(), x, p.y.view(), None);
            let loss = |w: &Array1<f64>| {
                p.model
                    .loss(w.view(), x, p.y.view(), &mut Workspace::default())
            };
            let err1 = rel_err(&g1, &central_difference(loss, &p.w));
            println!(
                "FD {} {name} unweighted: relative error {err1:.2e}",
                kind.name()
            );
            assert!(err1 < 1e-6, "{} {name} unweighted: {err1:e}", kind.name());
        }
    }
}

#[test]
fn dense_and_csr_agree() {
    // 5,000 columns make several dense row blocks (block_rows = 16) over 40 rows.
    for (rows, d) in [(ROWS, FEATURES), (40, 5000)] {
        for kind in KINDS {
            let p = problem(kind, 23, rows, d);
            let mut ws = Workspace::default();
            let ld = p.model.loss(p.w.view(), &p.dense, p.y.view(), &mut ws);
            let ls = p.model.loss(p.w.view(), &p.sparse, p.y.view(), &mut ws);
            assert!(
                (ld - ls).abs() <= 1e-12 * ld.abs(),
                "{}: loss {ld} vs {ls}",
                kind.name()
            );
            for rw in [None, Some(p.rw.view())] {
                let gd = p.model.gradient(p.w.view(), &p.dense, p.y.view(), rw);
                let gs = p.model.gradient(p.w.view(), &p.sparse, p.y.view(), rw);
                let err = rel_err(&gd, &gs);
                assert!(
                    err < 1e-12,
                    "{} ({rows} x {d}): gradient {err:e}",
                    kind.name()
                );
            }
        }
    }
}

#[test]
fn dense_blocking_does_not_change_the_gradient() {
    for kind in [ModelKind::Logistic, ModelKind::Softmax] {
        let p = problem(kind, 5, 50, 9);
        let Features::Dense(x) = &p.dense else {
            unreachable!()
        };
        let mut results = Vec::new();
        for block in [1, 3, 16, 50, 1000] {
            let mut g = Array1::zeros(p.model.dim());
            let mut ws = Workspace::default();
            match kind {
                ModelKind::Logistic => glm::gradient_into_blocked::<logistic::LogLoss>(
                    9,
                    p.w.view(),
                    &p.dense,
                    p.y.view(),
                    Some(p.rw.view()),
                    &mut ws,
                    g.view_mut(),
                    block,
                ),
                _ => softmax::dense_gradient(
                    x.view(),
                    p.w.as_slice().unwrap(),
                    p.y.view(),
                    Some(p.rw.view()),
                    &mut ws.rows,
                    g.as_slice_mut().unwrap(),
                    CLASSES,
                    block,
                ),
            };
            results.push(g);
        }
        for g in &results[1..] {
            assert!(rel_err(g, &results[0]) < 1e-13, "{}", kind.name());
        }
    }
}

#[test]
fn weighted_stacked_gradient_is_the_weighted_sum_of_block_gradients() {
    for kind in KINDS {
        for sparse in [false, true] {
            let blocks: Vec<Problem> = (0..3)
                .map(|j| problem(kind, 100 + j, 8 + j as usize, FEATURES))
                .collect();
            let coef = [0.75, -1.25, 2.0];
            let x = |p: &Problem| {
                if sparse {
                    p.sparse.clone()
                } else {
                    p.dense.clone()
                }
            };
            let xs: Vec<Features> = blocks.iter().map(x).collect();
            let stacked = Features::vstack(&xs.iter().collect::<Vec<_>>()).unwrap();
            let y = ndarray::concatenate(
                ndarray::Axis(0),
                &blocks.iter().map(|p| p.y.view()).collect::<Vec<_>>(),
            )
            .unwrap();
            let rw: Array1<f64> = blocks
                .iter()
                .zip(coef)
                .flat_map(|(p, c)| std::iter::repeat(c).take(p.y.len()))
                .collect();
            let w = &blocks[0].w;
            let m = &blocks[0].model;
            let coded = m.gradient(w.view(), &stacked, y.view(), Some(rw.view()));
            let mut sum = Array1::zeros(m.dim());
            for ((p, xj), c) in blocks.iter().zip(&xs).zip(coef) {
                sum.scaled_add(c, &m.gradient(w.view(), xj, p.y.view(), None));
            }
            let err = rel_err(&coded, &sum);
            assert!(err < 1e-13, "{} sparse={sparse}: {err:e}", kind.name());

            // Losses add up over blocks too.
            let mut ws = Workspace::default();
            let total = m.loss(w.view(), &stacked, y.view(), &mut ws);
            let parts: f64 = blocks
                .iter()
                .zip(&xs)
                .map(|(p, xj)| m.loss(w.view(), xj, p.y.view(), &mut ws))
                .sum();
            assert!((total - parts).abs() <= 1e-12 * total.abs());
        }
    }
}

#[test]
fn huge_margins_stay_finite() {
    // One feature, value ±1; w = 1000 gives |z| = 1000 (plus bias) on every row.
    let x = Features::Dense(arr2(&[[1.0], [-1.0], [1.0], [-1.0]]));
    let xs = Features::Sparse(
        CsrMatrix::new(
            4,
            1,
            vec![0, 1, 2, 3, 4],
            vec![0; 4],
            vec![1.0, -1.0, 1.0, -1.0],
        )
        .unwrap(),
    );
    let mut ws = Workspace::default();

    let y = arr1(&[1.0, -1.0, -1.0, 1.0]); // two right by 1000, two wrong by 1000
    let m = Logistic::new(1);
    for (xf, name) in [(&x, "dense"), (&xs, "csr")] {
        for scale in [1e3, -1e3, 1e6] {
            let w = arr1(&[scale, 0.5]);
            let l = m.loss(w.view(), xf, y.view(), &mut ws);
            let g = m.gradient(w.view(), xf, y.view(), None);
            assert!(
                l.is_finite() && g.iter().all(|v| v.is_finite()),
                "{name} {scale}: {l} {g}"
            );
        }
        // Exact values at margin 1000: the wrong rows cost 1000 ∓ 0.5 each, the right ones ~0.
        let w = arr1(&[1e3, 0.5]);
        let l = m.loss(w.view(), xf, y.view(), &mut ws);
        assert!((l - 2000.0).abs() < 1e-9, "{name}: {l}");
        let g = m.gradient(w.view(), xf, y.view(), None);
        // Wrong rows: dℓ/dz = −y, so g_w = Σ −y x = −(−1)(1) − (1)(−1) = 2, bias = 1 − 1 = 0.
        assert!(
            (g[0] - 2.0).abs() < 1e-12 && g[1].abs() < 1e-12,
            "{name}: {g}"
        );
    }

    let ys = arr1(&[0.0, 1.0, 2.0, 1.0]);
    let sm = Softmax::new(1, 3);
    for (xf, name) in [(&x, "dense"), (&xs, "csr")] {
        // Class logits ±1000, ±800, 0 (biases 1e4 shift everything up).
        let w = arr1(&[1e3, 1e4, -8e2, 1e4, 0.0, 1e4]);
        let l = sm.loss(w.view(), xf, ys.view(), &mut ws);
        let g = sm.gradient(w.view(), xf, ys.view(), None);
        assert!(
            l.is_finite() && g.iter().all(|v| v.is_finite()),
            "{name}: {l} {g}"
        );
        // Row 0 (z = 1.1e4, 0.92e4, 1e4, label 0) costs ~0; row 1 (z = 0.9e4, 1.08e4, 1e4,
        // label 1) ~0; row 2 (label 2, top logit 1.1e4) 1000; row 3 (label 1, top 1.08e4) 0.
        assert!((l - 1000.0).abs() < 1e-6, "{name}: {l}");
    }
}

#[test]
fn roc_auc_counts_ranked_pairs_with_ties_as_half() {
    let auc = |v: &[(f64, bool)]| roc_auc(&mut v.to_vec());
    // Scikit-learn's documented example: y = (0, 0, 1, 1), scores (0.1, 0.4, 0.35, 0.8).
    assert_eq!(
        auc(&[(0.1, false), (0.4, false), (0.35, true), (0.8, true)]),
        Some(0.75)
    );
    assert_eq!(auc(&[(1.0, true), (0.0, false), (2.0, true)]), Some(1.0));
    assert_eq!(auc(&[(-1.0, true), (0.0, false)]), Some(0.0));
    assert_eq!(auc(&[(0.5, true), (0.5, false), (0.5, false)]), Some(0.5));
    assert_eq!(auc(&[(0.5, true), (1.5, true)]), None);
    assert_eq!(auc(&[(0.5, false)]), None);
    assert_eq!(auc(&[]), None);
    // Against counting every (positive, negative) pair, on scores with many ties.
    let mut rng = rng(17);
    for _ in 0..50 {
        let m = rng.gen_range(2..200);
        let v: Vec<(f64, bool)> = (0..m)
            .map(|_| (f64::from(rng.gen_range(0..12u8)), rng.gen_bool(0.3)))
            .collect();
        let (mut pairs, mut wins) = (0.0, 0.0);
        for p in v.iter().filter(|p| p.1) {
            for n in v.iter().filter(|n| !n.1) {
                pairs += 1.0;
                wins += if p.0 > n.0 {
                    1.0
                } else if p.0 == n.0 {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let expect = (pairs > 0.0).then(|| wins / pairs);
        match (auc(&v), expect) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{a} vs {b}"),
            (a, b) => assert_eq!(a, b),
        }
    }
}

#[test]
fn evaluate_counts_accuracy() {
    // Logistic, w = (1, 0): z = x. z = 0 predicts +1.
    let x = Features::Dense(arr2(&[[2.0], [-1.0], [0.0], [0.0], [3.0]]));
    let y = arr1(&[1.0, -1.0, 1.0, -1.0, -1.0]);
    let mut ws = Workspace::default();
    let m = Logistic::new(1);
    let e = m.evaluate(arr1(&[1.0, 0.0]).view(), &x, y.view(), &mut ws);
    assert_eq!(e.accuracy, Some(0.6));
    // Positives score 2 and 0, negatives -1, 0 and 3: of the 6 pairs, 3 ranked right and one
    // tied (0 against 0).
    assert_eq!(e.auc, Some(3.5 / 6.0));
    let expect = (log1p_exp(-2.0) + log1p_exp(-1.0) + 2.0 * 2f64.ln() + log1p_exp(3.0)) / 5.0;
    assert!((e.loss - expect).abs() < 1e-15);

    // Softmax over 3 classes, w_c = (c, 0): z_c = c·x; x > 0 predicts 2, x < 0 predicts 0,
    // x = 0 ties everywhere and predicts class 0.
    let sm = Softmax::new(1, 3);
    let w = arr1(&[0.0, 0.0, 1.0, 0.0, 2.0, 0.0]);
    let ys = arr1(&[2.0, 0.0, 0.0, 1.0, 1.0]);
    let e = sm.evaluate(w.view(), &x, ys.view(), &mut ws);
    assert_eq!(e.accuracy, Some(0.6));
    assert_eq!(e.auc, None);
    assert!(e.loss.is_finite() && e.loss > 0.0);

    let lin = Linear::new(1);
    let e = lin.evaluate(
        arr1(&[1.0, 1.0]).view(),
        &x,
        arr1(&[3.0, 0.0, 1.0, 1.0, 4.0]).view(),
        &mut ws,
    );
    assert_eq!(
        e,
        Evaluation {
            loss: 0.0,
            accuracy: None,
            auc: None
        }
    );
}

#[test]
fn build_rejects_task_mismatches() {
    let mismatches = [
        (ModelKind::Logistic, Task::Regression),
        (ModelKind::Logistic, Task::Multiclass { classes: 3 }),
        (ModelKind::Softmax, Task::Binary),
        (ModelKind::Softmax, Task::Regression),
        (ModelKind::Linear, Task::Multiclass { classes: 3 }),
    ];
    for (kind, task) in mismatches {
        match build(kind, &[], &[], 4, None, task) {
            Err(ModelError::TaskMismatch { model, task: t, .. }) => {
                assert_eq!(model, kind.name());
                assert_eq!(t, task.name());
            }
            other => panic!("{kind:?} on {task:?}: {other:?}"),
        }
    }
    let m = build(
        ModelKind::Softmax,
        &[],
        &[],
        4,
        None,
        Task::Multiclass { classes: 5 },
    )
    .unwrap();
    assert_eq!(
        (m.dim(), m.n_features(), m.kind()),
        (25, 4, ModelKind::Softmax)
    );
    assert_eq!(
        build(ModelKind::Linear, &[], &[], 4, None, Task::Binary)
            .unwrap()
            .dim(),
        5
    );
}

#[test]
fn objective_gradient_matches_finite_differences() {
    let l2 = 0.3;
    for kind in KINDS {
        let p = problem(kind, 31, ROWS, FEATURES);
        for x in [&p.dense, &p.sparse] {
            let m = &*p.model;
            let f = |w: &Array1<f64>| {
                let sum = m.loss(w.view(), x, p.y.view(), &mut Workspace::default());
                objective(m, sum, w.view(), ROWS, l2)
            };
            let g_sum = m.gradient(p.w.view(), x, p.y.view(), None);
            let mut g = Array1::zeros(m.dim());
            objective_gradient_into(m, g_sum.view(), p.w.view(), ROWS, l2, g.view_mut());
            let err = rel_err(&g, &central_difference(f, &p.w));
            assert!(err < 1e-6, "{}: {err:e}", kind.name());
        }
    }
}

#[test]
fn workspace_reuse_is_bit_identical_and_allocation_free() {
    for kind in KINDS {
        let p = problem(kind, 47, 40, 5000);
        for x in [&p.dense, &p.sparse] {
            let m = &*p.model;
            let mut ws = Workspace::default();
            let mut g = Array1::zeros(m.dim());
            m.gradient_into(
                p.w.view(),
                x,
                p.y.view(),
                Some(p.rw.view()),
                &mut ws,
                g.view_mut(),
            );
            let first = g.clone();
            let ptrs = (ws.rows.as_ptr(), ws.rows.capacity());
            let loss = m.loss(p.w.view(), x, p.y.view(), &mut ws);
            for _ in 0..3 {
                g.fill(f64::NAN); // out is overwritten, not accumulated
                m.gradient_into(
                    p.w.view(),
                    x,
                    p.y.view(),
                    Some(p.rw.view()),
                    &mut ws,
                    g.view_mut(),
                );
                assert_eq!(
                    g.as_slice().unwrap(),
                    first.as_slice().unwrap(),
                    "{}",
                    kind.name()
                );
                assert_eq!(
                    m.loss(p.w.view(), x, p.y.view(), &mut ws).to_bits(),
                    loss.to_bits()
                );
            }
            assert_eq!(
                (ws.rows.as_ptr(), ws.rows.capacity()),
                ptrs,
                "{}: buffer reallocated",
                kind.name()
            );
            assert!(ws.params.capacity() == 0 && ws.grad.capacity() == 0);

            // Stale scratch from a call with non-finite parameters must not leak into the next.
            let bad = Array1::from_elem(m.dim(), f64::NAN);
            m.gradient_into(bad.view(), x, p.y.view(), None, &mut ws, g.view_mut());
            m.gradient_into(
                p.w.view(),
                x,
                p.y.view(),
                Some(p.rw.view()),
                &mut ws,
                g.view_mut(),
            );
            assert_eq!(
                g.as_slice().unwrap(),
                first.as_slice().unwrap(),
                "{}",
                kind.name()
            );
        }
    }
}

#[test]
fn strided_parameter_and_output_views_work() {
    for kind in KINDS {
        let p = problem(kind, 59, ROWS, FEATURES);
        let m = &*p.model;
        let expect = m.gradient(p.w.view(), &p.dense, p.y.view(), Some(p.rw.view()));
        // Parameters and output as every other entry of a longer array.
        let mut wide = Array1::zeros(2 * m.dim());
        wide.slice_mut(s![..;2]).assign(&p.w);
        let mut out = Array1::from_elem(2 * m.dim(), f64::NAN);
        let mut ws = Workspace::default();
        for x in [&p.dense, &p.sparse] {
            m.gradient_into(
                wide.slice(s![..;2]),
                x,
                p.y.view(),
                Some(p.rw.view()),
                &mut ws,
                out.slice_mut(s![..;2]),
            );
            assert!(rel_err(&out.slice(s![..;2]).to_owned(), &expect) < 1e-12);
            assert!(
                out.slice(s![1..;2]).iter().all(|v| v.is_nan()),
                "touched outside the view"
            );
        }
    }
}

#[test]
fn empty_shard_gives_zero_gradient() {
    for kind in KINDS {
        let m = model(kind, 3);
        let x = Features::Dense(Array2::zeros((0, 3)));
        let y = Array1::zeros(0);
        let mut ws = Workspace::default();
        let mut g = Array1::from_elem(m.dim(), f64::NAN);
        m.gradient_into(
            Array1::ones(m.dim()).view(),
            &x,
            y.view(),
            None,
            &mut ws,
            g.view_mut(),
        );
        assert!(g.iter().all(|&v| v == 0.0));
        assert_eq!(
            m.loss(Array1::ones(m.dim()).view(), &x, y.view(), &mut ws),
            0.0
        );
    }
}

#[test]
fn gradient_returns_the_weighted_loss_of_the_same_pass() {
    for kind in KINDS {
        let p = problem(kind, 21, 40, 6);
        for x in [&p.dense, &p.sparse] {
            let mut ws = Workspace::default();
            let mut g = Array1::zeros(p.model.dim());
            let got = p.model.gradient_into(
                p.w.view(),
                x,
                p.y.view(),
                Some(p.rw.view()),
                &mut ws,
                g.view_mut(),
            );
            let want = weighted_loss(p.model.as_ref(), &p.w, x, &p.y, &p.rw);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{kind:?}: {got} vs {want}"
            );
            let plain =
                p.model
                    .gradient_into(p.w.view(), x, p.y.view(), None, &mut ws, g.view_mut());
            let loss = p.model.loss(p.w.view(), x, p.y.view(), &mut ws);
            assert!(
                (plain - loss).abs() <= 1e-12 * loss.abs().max(1.0),
                "{kind:?}: {plain} vs {loss}"
            );
        }
    }
}

/// The wide-model CSR kernel (w and g interleaved) gives bit-identical gradients and losses to
/// the plain kernel, with and without row weights, for both scalar losses.
#[test]
fn interleaved_csr_kernel_is_bit_identical_to_the_plain_one() {
    use super::glm::{csr_gradient, csr_gradient_interleaved};
    let mut r = rng(17);
    let (rows, cols) = (300, 150_000);
    let (mut indptr, mut indices, mut data) = (vec![0], Vec::new(), Vec::new());
    for _ in 0..rows {
        let mut cs: Vec<u32> = (0..40).map(|_| r.gen_range(0..cols as u32)).collect();
        cs.sort_unstable();
        cs.dedup();
        for c in cs {
            indices.push(c);
            data.push(normal(&mut r));
        }
        indptr.push(indices.len());
    }
    let x = CsrMatrix::new(rows, cols, indptr, indices, data).unwrap();
    let w: Vec<f64> = (0..=cols).map(|_| 0.01 * normal(&mut r)).collect();
    let y_bin = Array1::from_iter((0..rows).map(|i| (i % 2) as f64));
    let y_reg = Array1::from_iter((0..rows).map(|_| normal(&mut r)));
    let rw = Array1::from_iter((0..rows).map(|i| 0.5 + (i % 3) as f64));
    let mut scratch = Vec::new();
    for weights in [None, Some(rw.view())] {
        let (mut a, mut b) = (vec![0.0; cols + 1], vec![7.0; cols + 1]);
        let la = csr_gradient::<logistic::LogLoss>(&x, &w, y_bin.view(), weights, &mut a);
        let lb = csr_gradient_interleaved::<logistic::LogLoss>(
            &x,
            &w,
            y_bin.view(),
            weights,
            &mut scratch,
            &mut b,
        );
        assert_eq!(la.to_bits(), lb.to_bits());
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        assert!(a.iter().any(|&v| v != 0.0));
        let la = csr_gradient::<linear::SquaredLoss>(&x, &w, y_reg.view(), weights, &mut a);
        let lb = csr_gradient_interleaved::<linear::SquaredLoss>(
            &x,
            &w,
            y_reg.view(),
            weights,
            &mut scratch,
            &mut b,
        );
        assert_eq!(la.to_bits(), lb.to_bits());
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
    // The model entry point takes the interleaved path at this width and agrees too.
    let model = Logistic::new(cols);
    let mut ws = Workspace::default();
    let mut g = Array1::zeros(cols + 1);
    let xf = Features::Sparse(x.clone());
    let l = model.gradient_into(
        ArrayView1::from(&w),
        &xf,
        y_bin.view(),
        None,
        &mut ws,
        g.view_mut(),
    );
    let mut plain = vec![0.0; cols + 1];
    let lp = csr_gradient::<logistic::LogLoss>(&x, &w, y_bin.view(), None, &mut plain);
    assert_eq!(l.to_bits(), lp.to_bits());
    assert!(g
        .iter()
        .zip(&plain)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
}

/// The fused logistic loss and derivative are bit-identical to the separate functions, across
/// signs, zero, large magnitudes and both labels.
#[test]
fn fused_logistic_loss_matches_the_separate_functions_bit_for_bit() {
    use super::glm::ScalarLoss;
    let mut r = rng(5);
    let mut zs: Vec<f64> = vec![0.0, -0.0, 1e-300, -1e-300, 30.0, -30.0, 800.0, -800.0];
    zs.extend((0..2000).map(|_| 10.0 * normal(&mut r)));
    for z in zs {
        for y in [-1.0, 1.0] {
            let (l, d) = logistic::LogLoss::loss_and_dloss(z, y);
            assert_eq!(
                l.to_bits(),
                logistic::LogLoss::loss(z, y).to_bits(),
                "loss at {z}, {y}"
            );
            assert_eq!(
                d.to_bits(),
                logistic::LogLoss::dloss(z, y).to_bits(),
                "dloss at {z}, {y}"
            );
        }
    }
}

/// Issue 20 §2: a worker's rows re-indexed to their support (the columns they touch) give,
/// with the parameters gathered on the support (and the intercept), a gradient that is the
/// full gradient gathered on the support — bit for bit, the same sums in the same order — and
/// the full gradient is exactly zero off the support; the loss is the same.
#[test]
fn the_gradient_on_the_support_is_the_full_gradient_gathered() {
    let mut r = rng(31);
    let (rows, cols) = (40, 500);
    let x = random_csr(&mut r, rows, cols, 0.01);
    let y = Array1::from_iter((0..rows).map(|i| if i % 3 == 0 { 1.0 } else { -1.0 }));
    let rw = Array1::from_iter((0..rows).map(|i| 0.5 + i as f64 / 80.0));
    let support = x.support();
    assert!(
        !support.is_empty() && support.len() < cols / 2,
        "{}",
        support.len()
    );
    let local = x.on_support(&support).unwrap();
    assert_eq!(local.n_cols(), support.len());
    let w = Array1::from_iter((0..=cols).map(|_| normal(&mut r)));
    let mut w_local: Vec<f64> = support.iter().map(|&j| w[j as usize]).collect();
    w_local.push(w[cols]);
    let (full, small) = (Logistic::new(cols), Logistic::new(support.len()));
    let mut ws = Workspace::default();
    let mut g = Array1::zeros(cols + 1);
    let mut g_local = Array1::zeros(support.len() + 1);
    let (xf, xl) = (Features::Sparse(x), Features::Sparse(local));
    let loss = full.gradient_into(
        w.view(),
        &xf,
        y.view(),
        Some(rw.view()),
        &mut ws,
        g.view_mut(),
    );
    let loss_local = small.gradient_into(
        Array1::from(w_local).view(),
        &xl,
        y.view(),
        Some(rw.view()),
        &mut ws,
        g_local.view_mut(),
    );
    assert_eq!(loss.to_bits(), loss_local.to_bits());
    let mut on = vec![false; cols];
    for (l, &j) in support.iter().enumerate() {
        assert_eq!(g[j as usize].to_bits(), g_local[l].to_bits(), "column {j}");
        on[j as usize] = true;
    }
    assert_eq!(g[cols].to_bits(), g_local[support.len()].to_bits());
    assert!((0..cols).filter(|&j| !on[j]).all(|j| g[j] == 0.0));
    // A support that misses a touched column, or is not increasing, is refused.
    let Features::Sparse(x) = &xf else {
        unreachable!()
    };
    assert!(x.on_support(&support[1..]).is_err());
    let mut rev = support.clone();
    rev.reverse();
    assert!(x.on_support(&rev).is_err());
}
