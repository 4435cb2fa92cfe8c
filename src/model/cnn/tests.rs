//! Tests of the CNN: finite differences of every layer's weights and biases (both convolutions,
//! both dense layers; one and two channels, a non-square image, every task), the blocked
//! kernel against a plain per-image forward pass, dense and CSR input, construction errors and
//! the sizes the memory check uses, and no allocation after the first call.

use ndarray::{Array1, Array2};
use rand::Rng;

use super::super::mlp::tests::allocations;
use super::super::tests::{central_difference, features, normal, rel_err, rng, task_labels};
use super::*;

/// A CNN on `rows` random images of `image` shape, random parameters, labels and signed row
/// weights (one zero).
struct Net {
    cnn: Cnn,
    x: Features,
    y: Array1<f64>,
    w: Array1<f64>,
    rw: Array1<f64>,
}

fn net(task: Task, image: ImageShape, rows: usize, seed: u64) -> Net {
    let mut r = rng(seed);
    let d = image.values().unwrap();
    let cnn = Cnn::new(d, Some(image), task).unwrap();
    let x = Array2::from_shape_fn((rows, d), |_| r.gen_range(0.0..1.0));
    let y = task_labels(&mut r, task, rows);
    // He scale per layer, biases of both signs, so that some ReLUs are off and some on.
    let mut w = cnn.init(seed);
    for b in cnn.blocks() {
        for i in b.range() {
            if b.is_bias(i - b.offset) {
                w[i] = 0.1 * normal(&mut r);
            }
        }
    }
    let mut rw = Array1::from_shape_fn(rows, |_| r.gen_range(-1.5..2.0));
    rw[0] = 0.0;
    Net {
        cnn,
        x: Features::Dense(x),
        y,
        w,
        rw,
    }
}

const MNIST: ImageShape = ImageShape {
    channels: 1,
    height: 28,
    width: 28,
};

#[test]
fn layer_shapes_of_28_by_28_images() {
    let m = Cnn::new(784, Some(MNIST), Task::Multiclass { classes: 10 }).unwrap();
    let b = m.blocks();
    assert_eq!(b.len(), 4);
    assert_eq!((b[0].units, b[0].inputs), (6, 25));
    assert_eq!((b[1].units, b[1].inputs), (16, 150));
    assert_eq!((b[2].units, b[2].inputs), (120, 256));
    assert_eq!((b[3].units, b[3].inputs), (10, 120));
    for pair in b.windows(2) {
        assert_eq!(pair[0].offset + pair[0].len(), pair[1].offset);
    }
    assert_eq!(m.dim(), 6 * 26 + 16 * 151 + 120 * 257 + 10 * 121);
    let size = size_of(
        ModelKind::Cnn,
        &[],
        784,
        Some(MNIST),
        Task::Multiclass { classes: 10 },
    )
    .unwrap();
    assert_eq!(size.dim, m.dim() as u128);
    // Images, patches, conv and pooled maps of both stages, the dense layers, backward.
    let per_row = 784
        + 576 * 25
        + 576 * 6
        + 144 * 6
        + 64 * 150
        + 64 * 16
        + 256
        + 120
        + 10
        + 120
        + 256
        + 64 * 16
        + 64 * 150
        + 144 * 6
        + 576 * 6;
    assert_eq!(size.scratch_per_row, per_row);
}

/// Finite differences of the weighted loss in every parameter, per layer (the relative error
/// of each block separately, so a wrong small layer is not hidden by a large one).
fn check_finite_differences(n: &Net) {
    let m = &n.cnn;
    let g = m.gradient(n.w.view(), &n.x, n.y.view(), Some(n.rw.view()));
    let f = |w: &Array1<f64>| {
        let mut ws = Workspace::default();
        let mut out = Array1::zeros(m.dim());
        m.gradient_into(
            w.view(),
            &n.x,
            n.y.view(),
            Some(n.rw.view()),
            &mut ws,
            out.view_mut(),
        )
    };
    let fd = central_difference(f, &n.w);
    for (l, b) in m.blocks().iter().enumerate() {
        let (gb, fb) = (
            g.slice(s![b.range()]).to_owned(),
            fd.slice(s![b.range()]).to_owned(),
        );
        let biases: Vec<usize> = (0..b.len()).filter(|&i| b.is_bias(i)).collect();
        let gbias = Array1::from_iter(biases.iter().map(|&i| gb[i]));
        let fbias = Array1::from_iter(biases.iter().map(|&i| fb[i]));
        assert!(gb.iter().any(|&v| v != 0.0), "layer {l}: zero gradient");
        assert!(
            gbias.iter().any(|&v| v != 0.0),
            "layer {l}: zero bias gradient"
        );
        let (e, eb) = (rel_err(&gb, &fb), rel_err(&gbias, &fbias));
        assert!(e < 1e-6, "layer {l}: weights and biases relative error {e}");
        assert!(eb < 1e-6, "layer {l}: biases relative error {eb}");
    }
}

#[test]
fn gradients_match_finite_differences_in_every_layer() {
    let two_channels = ImageShape {
        channels: 2,
        height: 17,
        width: 19,
    };
    let small = ImageShape {
        channels: 1,
        height: 16,
        width: 16,
    };
    let cases = [
        (Task::Multiclass { classes: 3 }, small, 3),
        (Task::Binary, two_channels, 2),
        (Task::Regression, small, 2),
    ];
    for (i, (task, image, rows)) in cases.into_iter().enumerate() {
        check_finite_differences(&net(task, image, rows, 10 + i as u64));
    }
}

/// The loss of every row by a plain per-image forward pass (direct convolution sums, no
/// im2col, no BLAS, no blocks).
fn plain_losses(m: &Cnn, w: &Array1<f64>, x: &Array2<f64>, y: &Array1<f64>) -> Vec<f64> {
    let img = m.image();
    let b = m.blocks();
    let unit = |blk: &ParamBlock, k: usize| blk.offset + k * (blk.inputs + 1);
    // a[c][y][x] → conv (valid 5×5) + ReLU → pool 2×2.
    let conv_pool = |a: &Vec<Vec<Vec<f64>>>, blk: &ParamBlock| -> Vec<Vec<Vec<f64>>> {
        let (c, h, wd) = (a.len(), a[0].len(), a[0][0].len());
        let (oh, ow) = (h - 4, wd - 4);
        (0..blk.units)
            .map(|f| {
                let conv: Vec<Vec<f64>> = (0..oh)
                    .map(|yy| {
                        (0..ow)
                            .map(|xx| {
                                let mut z = w[unit(blk, f) + blk.inputs];
                                for ch in 0..c {
                                    for ki in 0..5 {
                                        for kj in 0..5 {
                                            z += w[unit(blk, f) + (ch * 5 + ki) * 5 + kj]
                                                * a[ch][yy + ki][xx + kj];
                                        }
                                    }
                                }
                                z.max(0.0)
                            })
                            .collect()
                    })
                    .collect();
                (0..oh / 2)
                    .map(|py| {
                        (0..ow / 2)
                            .map(|px| {
                                let v = [(0, 0), (0, 1), (1, 0), (1, 1)]
                                    .map(|(dy, dx)| conv[2 * py + dy][2 * px + dx]);
                                v.into_iter().fold(f64::NEG_INFINITY, f64::max)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    };
    x.outer_iter()
        .zip(y)
        .map(|(row, &label)| {
            let a0: Vec<Vec<Vec<f64>>> = (0..img.channels)
                .map(|c| {
                    (0..img.height)
                        .map(|yy| {
                            (0..img.width)
                                .map(|xx| row[(c * img.height + yy) * img.width + xx])
                                .collect()
                        })
                        .collect()
                })
                .collect();
            let a2 = conv_pool(&conv_pool(&a0, &b[0]), &b[1]);
            // Flatten position-major: (row, column, channel).
            let (ph, pw) = (a2[0].len(), a2[0][0].len());
            let mut flat = Vec::new();
            for yy in 0..ph {
                for xx in 0..pw {
                    for ch in &a2 {
                        flat.push(ch[yy][xx]);
                    }
                }
            }
            let dense = |a: &[f64], blk: &ParamBlock, relu: bool| -> Vec<f64> {
                (0..blk.units)
                    .map(|k| {
                        let z = w[unit(blk, k) + blk.inputs]
                            + (0..blk.inputs)
                                .map(|j| w[unit(blk, k) + j] * a[j])
                                .sum::<f64>();
                        if relu {
                            z.max(0.0)
                        } else {
                            z
                        }
                    })
                    .collect()
            };
            let mut z = dense(&dense(&flat, &b[2], true), &b[3], false);
            m.head.row_loss(&mut z, label, None)
        })
        .collect()
}

#[test]
fn blocked_kernel_matches_a_plain_forward_pass_and_csr_input() {
    // More rows than a block, so the last block is partial.
    let rows = Cnn::BLOCK_ROWS + 5;
    let n = net(Task::Multiclass { classes: 4 }, MNIST, rows, 3);
    let Features::Dense(x) = &n.x else {
        unreachable!()
    };
    let plain: f64 = plain_losses(&n.cnn, &n.w, x, &n.y).iter().sum();
    let mut ws = Workspace::default();
    let loss = n.cnn.loss(n.w.view(), &n.x, n.y.view(), &mut ws);
    assert!(
        (loss - plain).abs() <= 1e-10 * plain.abs(),
        "{loss} vs {plain}"
    );
    // The same images as CSR give the same gradient.
    let (dense, csr) = features(&mut rng(4), rows, 784);
    let gd = n
        .cnn
        .gradient(n.w.view(), &dense, n.y.view(), Some(n.rw.view()));
    let gs = n
        .cnn
        .gradient(n.w.view(), &csr, n.y.view(), Some(n.rw.view()));
    assert_eq!(gd, gs);
}

#[test]
fn refuses_a_missing_or_unusable_image_shape() {
    let task = Task::Multiclass { classes: 10 };
    assert!(matches!(
        build(ModelKind::Cnn, &[], 784, None, task),
        Err(ModelError::NoImage)
    ));
    let tiny = ImageShape {
        channels: 1,
        height: 15,
        width: 28,
    };
    assert!(matches!(
        Cnn::new(15 * 28, Some(tiny), task),
        Err(ModelError::ImageTooSmall(_))
    ));
    assert!(matches!(
        Cnn::new(783, Some(MNIST), task),
        Err(ModelError::ImageFeatures { features: 783, .. })
    ));
    assert!(size_of(ModelKind::Cnn, &[], 784, None, task).is_none());
    let msg = ModelError::NoImage.to_string();
    assert!(
        msg.contains("image_shape") && msg.contains("--format idx"),
        "{msg}"
    );
}

#[test]
fn workspace_reuse_is_bit_identical_and_allocation_free() {
    let n = net(Task::Multiclass { classes: 10 }, MNIST, 70, 5);
    let mut ws = Workspace::default();
    let mut g1 = Array1::zeros(n.cnn.dim());
    let mut g2 = Array1::zeros(n.cnn.dim());
    let l1 = n.cnn.gradient_into(
        n.w.view(),
        &n.x,
        n.y.view(),
        Some(n.rw.view()),
        &mut ws,
        g1.view_mut(),
    );
    let mut l2 = 0.0;
    let count = allocations(|| {
        l2 = n.cnn.gradient_into(
            n.w.view(),
            &n.x,
            n.y.view(),
            Some(n.rw.view()),
            &mut ws,
            g2.view_mut(),
        );
    });
    assert_eq!(count, 0, "allocations after the first call");
    assert_eq!(l1, l2);
    assert_eq!(g1, g2);
    let fresh = n
        .cnn
        .gradient(n.w.view(), &n.x, n.y.view(), Some(n.rw.view()));
    assert_eq!(fresh, g1);
}

#[test]
fn evaluation_counts_the_argmax() {
    let n = net(Task::Multiclass { classes: 3 }, MNIST, 9, 8);
    let Features::Dense(x) = &n.x else {
        unreachable!()
    };
    let e = n
        .cnn
        .evaluate(n.w.view(), &n.x, n.y.view(), &mut Workspace::default());
    let plain = plain_losses(&n.cnn, &n.w, x, &n.y);
    let mean = plain.iter().sum::<f64>() / 9.0;
    assert!((e.loss - mean).abs() < 1e-12 * mean.abs().max(1.0));
    let acc = e.accuracy.unwrap();
    assert!((0.0..=1.0).contains(&acc) && ((acc * 9.0).round() - acc * 9.0).abs() < 1e-9);
}

/// Issue 21 (memory-bounded workers): micro-batches of any size (gradient accumulation block
/// after block) give the gradient and the loss of one pass, to rounding.
#[test]
fn micro_batches_accumulate_the_same_gradient() {
    let n = net(Task::Multiclass { classes: 4 }, MNIST, 70, 6);
    let whole = n
        .cnn
        .gradient(n.w.view(), &n.x, n.y.view(), Some(n.rw.view()));
    for rows in [1, 7, 200] {
        let mut m = n.cnn.clone();
        m.set_block_rows(rows);
        let g = m.gradient(n.w.view(), &n.x, n.y.view(), Some(n.rw.view()));
        let e = rel_err(&g, &whole);
        assert!(e < 1e-12, "blocks of {rows}: {e}");
        let mut ws = Workspace::default();
        let (a, b) = (
            m.loss(n.w.view(), &n.x, n.y.view(), &mut ws),
            n.cnn.loss(n.w.view(), &n.x, n.y.view(), &mut ws),
        );
        assert!(
            (a - b).abs() < 1e-12 * b.abs(),
            "blocks of {rows}: {a} vs {b}"
        );
    }
}
