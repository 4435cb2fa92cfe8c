//! Tests of the MLP: finite differences of every layer's weights and biases (dense and CSR,
//! every task), the blocked kernel against a plain per-row forward pass, He initialization,
//! construction errors, and no allocation after the first call.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ndarray::{s, Array1};
use rand::Rng;

use super::super::tests::{
    assert_kfac_direction_is_the_kronecker_solve, central_difference, features, normal, rel_err,
    rng, task_labels,
};
use super::*;

/// Counts the heap allocations of the current thread (the tests of this binary run in
/// parallel threads, so a global count would see the others).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialized thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Heap allocations made by `f` on this thread.
pub(crate) fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const TASKS: [Task; 3] = [
    Task::Multiclass { classes: 3 },
    Task::Binary,
    Task::Regression,
];

/// An MLP over `d` features with random parameters (biases included), labels and signed row
/// weights (one zero).
struct Net {
    mlp: Mlp,
    dense: Features,
    sparse: Features,
    y: Array1<f64>,
    w: Array1<f64>,
    rw: Array1<f64>,
}

fn net(task: Task, hidden: &[usize], seed: u64, rows: usize, d: usize) -> Net {
    let mut r = rng(seed);
    let (dense, sparse) = features(&mut r, rows, d);
    let y = task_labels(&mut r, task, rows);
    let mlp = Mlp::new(d, hidden, task).unwrap();
    let w = Array1::from_shape_fn(mlp.dim(), |_| 0.6 * normal(&mut r));
    let mut rw = Array1::from_shape_fn(rows, |_| r.gen_range(-1.5..2.0));
    rw[0] = 0.0;
    Net {
        mlp,
        dense,
        sparse,
        y,
        w,
        rw,
    }
}

/// The loss of every row by a plain per-row forward pass (no BLAS, no blocks): the reference
/// the blocked kernel is checked against.
fn plain_losses(m: &Mlp, w: &Array1<f64>, x: &Features, y: &Array1<f64>) -> Vec<f64> {
    let dense = match x {
        Features::Dense(x) => x.clone(),
        Features::Sparse(x) => x.to_dense(),
    };
    let last = m.blocks().len() - 1;
    dense
        .outer_iter()
        .zip(y)
        .map(|(row, &label)| {
            let mut a: Vec<f64> = row.to_vec();
            for (l, b) in m.blocks().iter().enumerate() {
                a = (0..b.units)
                    .map(|k| {
                        let unit = b.offset + k * (b.inputs + 1);
                        let z = w[unit + b.inputs]
                            + (0..b.inputs).map(|j| w[unit + j] * a[j]).sum::<f64>();
                        if l == last || z > 0.0 {
                            z
                        } else {
                            0.0
                        }
                    })
                    .collect();
            }
            if a.len() == 1 {
                0.5 * (a[0] - label).powi(2)
            } else {
                let class = if a.len() == 2 && (label == 1.0 || label == -1.0) {
                    usize::from(label > 0.0)
                } else {
                    label as usize
                };
                let mx = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                mx + a.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() - a[class]
            }
        })
        .collect()
}

#[test]
fn every_layer_matches_finite_differences_for_every_task_dense_and_csr() {
    for task in TASKS {
        let n = net(task, &[5, 4], 3, 20, 7);
        for (name, x) in [("dense", &n.dense), ("csr", &n.sparse)] {
            let g = n.mlp.gradient(n.w.view(), x, n.y.view(), Some(n.rw.view()));
            let f = |w: &Array1<f64>| {
                let l = plain_losses(&n.mlp, w, x, &n.y);
                l.iter().zip(&n.rw).map(|(l, r)| l * r).sum::<f64>()
            };
            let fd = central_difference(f, &n.w);
            // Each layer's weights and biases on their own, so one layer's error cannot hide
            // behind another's larger gradient.
            for (l, b) in n.mlp.blocks().iter().enumerate() {
                for bias in [false, true] {
                    let pick = |v: &Array1<f64>| -> Array1<f64> {
                        v.slice(s![b.range()])
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| b.is_bias(*i) == bias)
                            .map(|(_, &v)| v)
                            .collect()
                    };
                    let (got, want) = (pick(&g), pick(&fd));
                    let err = rel_err(&got, &want);
                    assert!(
                        want.iter().any(|&v| v != 0.0),
                        "{task:?} {name} layer {l}: no signal"
                    );
                    assert!(
                        err < 1e-6,
                        "{task:?} {name} layer {l} {}: FD relative error {err:e}",
                        if bias { "biases" } else { "weights" }
                    );
                }
            }
        }
    }
}

#[test]
fn blocked_kernel_matches_a_plain_forward_pass_across_blocks() {
    // 600 rows: three row blocks, the last one short.
    for task in TASKS {
        let n = net(task, &[6, 3, 4], 8, 600, 9);
        for x in [&n.dense, &n.sparse] {
            let mut ws = Workspace::default();
            let plain = plain_losses(&n.mlp, &n.w, x, &n.y);
            let want: f64 = plain.iter().sum();
            let got = n.mlp.loss(n.w.view(), x, n.y.view(), &mut ws);
            assert!(
                (got - want).abs() <= 1e-11 * want.abs(),
                "{task:?}: {got} vs {want}"
            );
            let weighted: f64 = plain.iter().zip(&n.rw).map(|(l, r)| l * r).sum();
            let mut g = Array1::zeros(n.mlp.dim());
            let from_gradient = n.mlp.gradient_into(
                n.w.view(),
                x,
                n.y.view(),
                Some(n.rw.view()),
                &mut ws,
                g.view_mut(),
            );
            assert!(
                (from_gradient - weighted).abs() <= 1e-11 * weighted.abs(),
                "{task:?}: {from_gradient} vs {weighted}"
            );
            // The gradient of the 600 rows is the sum of the gradients of rows taken one by one.
            let mut sum = Array1::zeros(n.mlp.dim());
            for r in 0..600 {
                let xr = x.slice_rows(r..r + 1);
                let gr = n.mlp.gradient(
                    n.w.view(),
                    &xr,
                    n.y.slice(s![r..r + 1]),
                    Some(n.rw.slice(s![r..r + 1])),
                );
                sum += &gr;
            }
            assert!(rel_err(&g, &sum) < 1e-12, "{task:?}: {}", rel_err(&g, &sum));
        }
    }
}

#[test]
fn evaluation_measures_what_the_task_asks() {
    for task in TASKS {
        let n = net(task, &[5], 12, 300, 6);
        let mut ws = Workspace::default();
        let e = n.mlp.evaluate(n.w.view(), &n.dense, n.y.view(), &mut ws);
        let plain = plain_losses(&n.mlp, &n.w, &n.dense, &n.y);
        let mean = plain.iter().sum::<f64>() / 300.0;
        assert!((e.loss - mean).abs() < 1e-12 * mean, "{task:?}");
        match task {
            Task::Regression => assert_eq!((e.accuracy, e.auc), (None, None)),
            Task::Binary => {
                let (a, u) = (e.accuracy.unwrap(), e.auc.unwrap());
                assert!((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&u));
            }
            Task::Multiclass { .. } => {
                assert!(e.accuracy.is_some() && e.auc.is_none());
            }
        }
    }
    // A net whose output copies its input: class 1 when x > 0 (binary), so accuracy 1.
    let m = Mlp::new(1, &[2], Task::Binary).unwrap();
    // Hidden: h0 = relu(x), h1 = relu(−x); outputs: z0 = h1, z1 = h0.
    let w = Array1::from(vec![1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    let x = Features::Dense(ndarray::arr2(&[[2.0], [-1.0], [0.5], [-3.0]]));
    let y = Array1::from(vec![1.0, -1.0, 1.0, -1.0]);
    let e = m.evaluate(w.view(), &x, y.view(), &mut Workspace::default());
    assert_eq!((e.accuracy, e.auc), (Some(1.0), Some(1.0)));
}

#[test]
fn he_initialization_is_seeded_and_scaled_per_layer() {
    let m = Mlp::new(400, &[300, 50], Task::Multiclass { classes: 10 }).unwrap();
    let a = m.init(7);
    assert_eq!(a, m.init(7));
    assert_ne!(a, m.init(8));
    for b in m.blocks() {
        let block = a.slice(s![b.range()]);
        let weights: Vec<f64> = (0..b.len())
            .filter(|&i| !b.is_bias(i))
            .map(|i| block[i])
            .collect();
        assert!((0..b.len())
            .filter(|&i| b.is_bias(i))
            .all(|i| block[i] == 0.0));
        let var = weights.iter().map(|v| v * v).sum::<f64>() / weights.len() as f64;
        let want = 2.0 / b.inputs as f64;
        assert!(
            (var / want - 1.0).abs() < 0.1,
            "layer of fan-in {}: variance {var} vs {want}",
            b.inputs
        );
    }
    assert_eq!(
        m.dim(),
        (401 * 300 + 301 * 50 + 51 * 10) as usize,
        "dimension"
    );
    let size = size_of(
        ModelKind::Mlp,
        &[300, 50],
        &[],
        400,
        None,
        Task::Multiclass { classes: 10 },
    )
    .unwrap();
    assert_eq!(size.dim, m.dim() as u128);
    assert_eq!(size.scratch_per_row, 300 + 50 + 10 + 2 * 300);
}

#[test]
fn the_objective_does_not_regularize_the_biases() {
    let n = net(Task::Multiclass { classes: 3 }, &[4, 3], 5, 20, 6);
    let l2 = 0.4;
    let m = &n.mlp;
    let f = |w: &Array1<f64>| {
        let sum = m.loss(w.view(), &n.dense, n.y.view(), &mut Workspace::default());
        objective(m, sum, w.view(), 20, l2)
    };
    let g_sum = m.gradient(n.w.view(), &n.dense, n.y.view(), None);
    let mut g = Array1::zeros(m.dim());
    objective_gradient_into(m, g_sum.view(), n.w.view(), 20, l2, g.view_mut());
    assert!(rel_err(&g, &central_difference(f, &n.w)) < 1e-6);
    // Moving only the biases changes the objective by the loss alone.
    let mut wb = n.w.clone();
    for b in m.blocks() {
        for i in 0..b.len() {
            if b.is_bias(i) {
                wb[b.offset + i] = 0.0;
            }
        }
    }
    let loss = |w: &Array1<f64>| m.loss(w.view(), &n.dense, n.y.view(), &mut Workspace::default());
    let reg = |w: &Array1<f64>| objective(m, loss(w), w.view(), 20, l2) - loss(w) / 20.0;
    assert!((reg(&n.w) - reg(&wb)).abs() < 1e-12);
}

#[test]
fn construction_refuses_no_or_empty_hidden_layers() {
    for hidden in [&[][..], &[4, 0][..], &[0][..]] {
        let e = Mlp::new(3, hidden, Task::Binary).unwrap_err().to_string();
        assert!(e.contains("--hidden"), "{e}");
    }
    let e = build(ModelKind::Mlp, &[], &[], 3, None, Task::Binary)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one hidden layer"), "{e}");
}

#[test]
fn after_the_first_call_the_kernel_allocates_nothing() {
    for task in TASKS {
        let n = net(task, &[16, 8], 21, 700, 30);
        for x in [&n.dense, &n.sparse] {
            let mut ws = Workspace::default();
            let mut g = Array1::zeros(n.mlp.dim());
            let run = |ws: &mut Workspace, g: &mut Array1<f64>| {
                n.mlp.gradient_into(
                    n.w.view(),
                    x,
                    n.y.view(),
                    Some(n.rw.view()),
                    ws,
                    g.view_mut(),
                );
                n.mlp.loss(n.w.view(), x, n.y.view(), ws)
            };
            let first = run(&mut ws, &mut g);
            let g1 = g.clone();
            let mut again = 0.0;
            let count = allocations(|| again = run(&mut ws, &mut g));
            assert_eq!(count, 0, "{task:?}: allocations after the first call");
            assert_eq!(first.to_bits(), again.to_bits());
            assert_eq!(g, g1);
        }
    }
}

/// Issue 21: the K-FAC factor sums of a tiny MLP (6-5-3) are Σ c_r ā_r ā_rᵀ and Σ c_r g_r g_rᵀ —
/// g_r being row r's own bias gradient (unweighted), ā_r the layer's input with a 1 — for signed
/// row weights, dense and CSR alike.
#[test]
fn kfac_factor_sums_are_weighted_sums_of_per_row_outer_products() {
    let n = net(Task::Multiclass { classes: 3 }, &[5], 21, 9, 6);
    let m = &n.mlp;
    let sums = m.kfac_factors(n.w.view(), &n.dense, n.y.view(), Some(n.rw.view()));
    let sparse = m.kfac_factors(n.w.view(), &n.sparse, n.y.view(), Some(n.rw.view()));
    let Features::Dense(x) = &n.dense else {
        unreachable!()
    };
    let b = m.blocks().to_vec();
    let mut want: Vec<(ndarray::Array2<f64>, ndarray::Array2<f64>)> = b
        .iter()
        .map(|b| {
            (
                ndarray::Array2::zeros((b.inputs + 1, b.inputs + 1)),
                ndarray::Array2::zeros((b.units, b.units)),
            )
        })
        .collect();
    for r in 0..9 {
        let xr = Features::Dense(x.slice(s![r..r + 1, ..]).to_owned());
        let g = m.gradient(n.w.view(), &xr, n.y.slice(s![r..r + 1]), None);
        // Layer inputs: x_r, then relu(W_1 x_r + b_1).
        let x1: Vec<f64> = x.row(r).to_vec();
        let h: Vec<f64> = (0..b[0].units)
            .map(|k| {
                let u = b[0].offset + k * 7;
                (n.w[u + 6] + (0..6).map(|j| n.w[u + j] * x1[j]).sum::<f64>()).max(0.0)
            })
            .collect();
        for (l, input) in [x1, h].into_iter().enumerate() {
            let abar = Array1::from_iter(input.into_iter().chain([1.0]));
            let gl = Array1::from_iter(
                (0..b[l].units).map(|k| g[b[l].offset + k * (b[l].inputs + 1) + b[l].inputs]),
            );
            let c = n.rw[r];
            let outer = |v: &Array1<f64>| {
                let col = v.view().insert_axis(ndarray::Axis(1));
                col.dot(&col.t()) * c
            };
            want[l].0 += &outer(&abar);
            want[l].1 += &outer(&gl);
        }
    }
    for l in 0..2 {
        for (got, exp, name) in [(&sums[l].0, &want[l].0, "A"), (&sums[l].1, &want[l].1, "G")] {
            let err = (got - exp).iter().map(|d| d.abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "layer {l} {name}: {err}");
        }
        let err = (&sums[l].1 - &sparse[l].1)
            .iter()
            .map(|d| d.abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "layer {l}: dense and CSR differ by {err}");
    }
}

/// The packed K-FAC factor sums: after the first call with a shape nothing is allocated (the
/// factors accumulate straight into the packed buffer through the workspace), a second call
/// gives the same bits, and row blocks of any size give the whole pass's sums to rounding.
#[test]
fn kfac_factor_sums_reuse_the_workspace_and_blocks_agree() {
    use crate::optim::kfac::packed_len;
    let n = net(Task::Multiclass { classes: 3 }, &[9, 4], 24, 300, 7);
    let m = &n.mlp;
    let len = packed_len(m.kfac_layers().iter().map(|b| (b.units, b.inputs)));
    let (mut ws, mut out) = (Workspace::default(), vec![f64::NAN; len]);
    let run = |m: &Mlp, ws: &mut Workspace, out: &mut [f64]| {
        m.kfac_factors_into(n.w.view(), &n.dense, n.y.view(), Some(n.rw.view()), ws, out)
    };
    run(m, &mut ws, &mut out);
    let first = out.clone();
    assert!(first.iter().all(|v| v.is_finite()));
    let count = allocations(|| run(m, &mut ws, &mut out));
    assert_eq!(count, 0, "allocations after the first call");
    assert_eq!(out, first);
    // The memory sizing's count is the scratch the pass holds: 2 · side per row of a block and
    // side² (side = 10, the widest factor: layer 2's 9 inputs and the 1); blocks of 256 rows.
    let (per_row, fixed) = m.kfac_scratch();
    assert_eq!((per_row, fixed), (20, 100));
    assert_eq!(ws.kfac.len() as u128, per_row * 256 + fixed);
    for rows in [1, 13] {
        let mut small = m.clone();
        small.set_block_rows(rows);
        let mut o = vec![0.0; len];
        let mut w = Workspace::default();
        run(&small, &mut w, &mut o);
        assert_eq!(w.kfac.len() as u128, per_row * rows as u128 + fixed);
        let e = rel_err(&Array1::from(o), &Array1::from(first.clone()));
        assert!(e < 1e-12, "blocks of {rows}: {e}");
    }
}

/// Issue 21: on a tiny MLP (6-5-3) the K-FAC direction of each layer (eigen method) equals
/// (A ⊗ G + γI)⁻¹ vec(∇W) solved densely, to 1e-10 (no decay, no KL clip).
#[test]
fn kfac_direction_equals_the_dense_kronecker_solve() {
    let rows = 12;
    let n = net(Task::Multiclass { classes: 3 }, &[5], 22, rows, 6);
    assert_kfac_direction_is_the_kronecker_solve(&n.mlp, n.w.view(), &n.dense, n.y.view());
}

/// Issue 21 (memory-bounded workers): micro-batches of any size give the gradient of one pass,
/// to rounding, dense and CSR.
#[test]
fn micro_batches_accumulate_the_same_gradient() {
    let n = net(Task::Multiclass { classes: 3 }, &[9, 4], 23, 300, 7);
    for x in [&n.dense, &n.sparse] {
        let whole = n.mlp.gradient(n.w.view(), x, n.y.view(), Some(n.rw.view()));
        for rows in [1, 13, 1000] {
            let mut m = n.mlp.clone();
            m.set_block_rows(rows);
            let g = m.gradient(n.w.view(), x, n.y.view(), Some(n.rw.view()));
            let e = rel_err(&g, &whole);
            assert!(e < 1e-12, "blocks of {rows}: {e}");
        }
    }
}
