//! Tests of the CNN: finite differences of every layer's weights and biases (both convolutions,
//! both dense layers; one and two channels, a non-square image, every task), the blocked
//! kernel against a plain per-image forward pass, dense and CSR input, construction errors and
//! the sizes the memory check uses, and no allocation after the first call; LeNet's widths and
//! others (`--conv-filters`, `--hidden`).

use ndarray::{Array1, Array2};
use rand::Rng;

use super::super::mlp::tests::allocations;
use super::super::tests::{
    assert_kfac_direction_is_the_kronecker_solve, central_difference, features, normal, rel_err,
    rng, task_labels,
};
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
    let (filters, hidden) = (Cnn::DEFAULT_FILTERS, Cnn::DEFAULT_HIDDEN);
    net_with(task, image, rows, seed, filters, hidden)
}

/// [`net`] with `filters` in the convolutions and `hidden` dense units.
fn net_with(
    task: Task,
    image: ImageShape,
    rows: usize,
    seed: u64,
    filters: [usize; 2],
    hidden: usize,
) -> Net {
    let mut r = rng(seed);
    let d = image.values().unwrap();
    let cnn = Cnn::with_widths(d, Some(image), task, filters, hidden).unwrap();
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

/// `--conv-filters 4,8 --hidden 20`: the layers take the widths, the memory sizing follows them,
/// and every layer's gradient matches finite differences.
#[test]
fn other_widths_shape_the_layers_and_match_finite_differences() {
    let task = Task::Multiclass { classes: 10 };
    let m = build(ModelKind::Cnn, &[20], &[4, 8], 784, Some(MNIST), task).unwrap();
    let b = m.blocks();
    let shapes: Vec<(usize, usize)> = b.iter().map(|b| (b.units, b.inputs)).collect();
    assert_eq!(shapes, [(4, 25), (8, 100), (20, 128), (10, 20)]);
    assert_eq!(m.dim(), 4 * 26 + 8 * 101 + 20 * 129 + 10 * 21);
    let size = size_of(ModelKind::Cnn, &[20], &[4, 8], 784, Some(MNIST), task).unwrap();
    assert_eq!(size.dim, m.dim() as u128);
    let per_row = 784
        + 576 * 25
        + 576 * 4
        + 144 * 4
        + 64 * 100
        + 64 * 8
        + 128
        + 20
        + 10
        + 20
        + 128
        + 64 * 8
        + 64 * 100
        + 144 * 4
        + 576 * 4;
    assert_eq!(size.scratch_per_row, per_row);
    let cnn = Cnn::with_widths(784, Some(MNIST), task, [4, 8], 20).unwrap();
    assert_eq!((cnn.filters(), cnn.hidden()), ([4, 8], 20));
    // The defaults are LeNet's, the same network as Cnn::new.
    let lenet = build(ModelKind::Cnn, &[], &[], 784, Some(MNIST), task).unwrap();
    assert_eq!(
        lenet.blocks(),
        Cnn::new(784, Some(MNIST), task).unwrap().blocks()
    );
    let small = ImageShape {
        channels: 1,
        height: 16,
        width: 16,
    };
    check_finite_differences(&net_with(task, small, 3, 40, [4, 8], 20));
    let two_channels = ImageShape {
        channels: 2,
        height: 17,
        width: 19,
    };
    check_finite_differences(&net_with(Task::Binary, two_channels, 2, 41, [3, 5], 7));
}

#[test]
fn refuses_widths_of_zero_too_large_or_of_the_wrong_count() {
    let task = Task::Multiclass { classes: 10 };
    let huge = [usize::MAX, 2];
    let over = [Cnn::MAX_WIDTH + 1];
    for (hidden, conv, text) in [
        (&[20][..], &[4, 0][..], "--conv-filters 4,0 and --hidden 20"),
        // Widths whose sizes would overflow: refused, never a panic or a wrapped count.
        (&[20], &huge[..], "--conv-filters 18446744073709551615,2"),
        (&over[..], &[4, 8], "--hidden 1048577"),
        (&[0], &[4, 8], "--conv-filters 4,8 and --hidden 0"),
        (&[20, 10], &[4, 8], "--hidden 20,10"),
        (&[20], &[4, 8, 16], "--conv-filters 4,8,16"),
    ] {
        let Err(e) = build(ModelKind::Cnn, hidden, conv, 784, Some(MNIST), task) else {
            panic!("{text}: accepted");
        };
        assert!(matches!(e, ModelError::CnnWidths { .. }), "{e}");
        assert!(e.to_string().contains(text), "{e}");
        assert!(size_of(ModelKind::Cnn, hidden, conv, 784, Some(MNIST), task).is_none());
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
        build(ModelKind::Cnn, &[], &[], 784, None, task),
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
    assert!(size_of(ModelKind::Cnn, &[], &[], 784, None, task).is_none());
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

/// A map of `c` channels, `h` rows and `w` columns, `v[(ch · h + y) · w + x]`.
struct Map {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f64>,
}

impl Map {
    fn at(&self, ch: usize, y: usize, x: usize) -> f64 {
        self.v[(ch * self.h + y) * self.w + x]
    }
}

/// One stage by direct loops: the patch (with a 1) at every output position, the ReLU outputs,
/// the 2×2 max-pool and the window position of each pooled cell's first maximum.
struct Stage {
    patches: Vec<Vec<f64>>,
    relu: Map,
    pooled: Map,
    argmax: Vec<(usize, usize)>,
}

fn stage(w: &Array1<f64>, blk: &ParamBlock, a: &Map) -> Stage {
    let (oh, ow) = (a.h - 4, a.w - 4);
    let mut patches = Vec::new();
    let mut relu = Map {
        c: blk.units,
        h: oh,
        w: ow,
        v: vec![0.0; blk.units * oh * ow],
    };
    for y in 0..oh {
        for x in 0..ow {
            let mut p = Vec::new();
            for ch in 0..a.c {
                for ki in 0..5 {
                    for kj in 0..5 {
                        p.push(a.at(ch, y + ki, x + kj));
                    }
                }
            }
            p.push(1.0);
            for f in 0..blk.units {
                let u = blk.offset + f * (blk.inputs + 1);
                let z: f64 = p.iter().enumerate().map(|(i, v)| w[u + i] * v).sum();
                relu.v[(f * oh + y) * ow + x] = z.max(0.0);
            }
            patches.push(p);
        }
    }
    let (ph, pw) = (oh / 2, ow / 2);
    let mut pooled = Map {
        c: blk.units,
        h: ph,
        w: pw,
        v: vec![0.0; blk.units * ph * pw],
    };
    let mut argmax = vec![(0, 0); pooled.v.len()];
    for f in 0..blk.units {
        for py in 0..ph {
            for px in 0..pw {
                let i = (f * ph + py) * pw + px;
                let mut best = (2 * py, 2 * px);
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let c = (2 * py + dy, 2 * px + dx);
                    if relu.at(f, c.0, c.1) > relu.at(f, best.0, best.1) {
                        best = c;
                    }
                }
                pooled.v[i] = relu.at(f, best.0, best.1);
                argmax[i] = best;
            }
        }
    }
    Stage {
        patches,
        relu,
        pooled,
        argmax,
    }
}

/// The pre-activation gradients of a stage from its pooled outputs' gradients `dp`: each goes
/// to its window's first maximum when that is positive.
fn unpool(s: &Stage, dp: &[f64]) -> Map {
    let r = &s.relu;
    let mut dz = Map {
        c: r.c,
        h: r.h,
        w: r.w,
        v: vec![0.0; r.v.len()],
    };
    for (i, &(y, x)) in s.argmax.iter().enumerate() {
        let f = i / (s.pooled.h * s.pooled.w);
        if r.at(f, y, x) > 0.0 {
            dz.v[(f * r.h + y) * r.w + x] = dp[i];
        }
    }
    dz
}

/// Per layer of one image, per position (a dense layer has one): (ā with its 1, g), by direct
/// loops — a plain forward pass and a plain backward pass of the image's loss, no im2col, no
/// BLAS, no blocks.
fn per_position_statistics(
    m: &Cnn,
    w: &Array1<f64>,
    image: &[f64],
    label: f64,
) -> Vec<Vec<(Vec<f64>, Vec<f64>)>> {
    let shape = m.image();
    let b = m.blocks();
    let weight = |blk: &ParamBlock, k: usize, j: usize| w[blk.offset + k * (blk.inputs + 1) + j];
    let a0 = Map {
        c: shape.channels,
        h: shape.height,
        w: shape.width,
        v: image.to_vec(),
    };
    let s1 = stage(w, &b[0], &a0);
    let s2 = stage(w, &b[1], &s1.pooled);
    // The dense layers' input, position-major (row, column, channel).
    let p2 = &s2.pooled;
    let mut flat = Vec::new();
    for y in 0..p2.h {
        for x in 0..p2.w {
            for ch in 0..p2.c {
                flat.push(p2.at(ch, y, x));
            }
        }
    }
    let dense = |a: &[f64], blk: &ParamBlock| -> Vec<f64> {
        (0..blk.units)
            .map(|k| {
                weight(blk, k, blk.inputs)
                    + (0..blk.inputs)
                        .map(|j| weight(blk, k, j) * a[j])
                        .sum::<f64>()
            })
            .collect()
    };
    let hid: Vec<f64> = dense(&flat, &b[2]).iter().map(|v| v.max(0.0)).collect();
    let mut dout = dense(&hid, &b[3]);
    m.head.row_loss(&mut dout, label, Some(1.0));
    // Backward, layer by layer.
    let dhid: Vec<f64> = (0..b[2].units)
        .map(|k| {
            let v: f64 = (0..b[3].units).map(|o| weight(&b[3], o, k) * dout[o]).sum();
            if hid[k] > 0.0 {
                v
            } else {
                0.0
            }
        })
        .collect();
    let dflat: Vec<f64> = (0..b[2].inputs)
        .map(|i| (0..b[2].units).map(|k| weight(&b[2], k, i) * dhid[k]).sum())
        .collect();
    // Back to channel-major for the pooled cells of stage 2.
    let mut dp2 = vec![0.0; p2.v.len()];
    for y in 0..p2.h {
        for x in 0..p2.w {
            for ch in 0..p2.c {
                dp2[(ch * p2.h + y) * p2.w + x] = dflat[(y * p2.w + x) * p2.c + ch];
            }
        }
    }
    let dz2 = unpool(&s2, &dp2);
    let p1 = &s1.pooled;
    let mut dp1 = vec![0.0; p1.v.len()];
    for f in 0..dz2.c {
        for oy in 0..dz2.h {
            for ox in 0..dz2.w {
                let d = dz2.at(f, oy, ox);
                for ch in 0..p1.c {
                    for ki in 0..5 {
                        for kj in 0..5 {
                            dp1[(ch * p1.h + oy + ki) * p1.w + ox + kj] +=
                                weight(&b[1], f, (ch * 5 + ki) * 5 + kj) * d;
                        }
                    }
                }
            }
        }
    }
    let dz1 = unpool(&s1, &dp1);
    let conv = |s: &Stage, dz: &Map| -> Vec<(Vec<f64>, Vec<f64>)> {
        s.patches
            .iter()
            .enumerate()
            .map(|(t, p)| {
                let (y, x) = (t / dz.w, t % dz.w);
                (p.clone(), (0..dz.c).map(|f| dz.at(f, y, x)).collect())
            })
            .collect()
    };
    let with_one = |a: &[f64]| a.iter().copied().chain([1.0]).collect::<Vec<f64>>();
    vec![
        conv(&s1, &dz1),
        conv(&s2, &dz2),
        vec![(with_one(&flat), dhid)],
        vec![(with_one(&hid), dout)],
    ]
}

/// Issue 21, KFC (Grosse & Martens 2016): on a tiny CNN (two channels, a non-square image,
/// blocks of 3 images over 7, the last of one) every layer's factor sums equal the explicit per-image,
/// per-position computation to 1e-12 — for a convolution with T output positions
/// Σ_n c_n (1/T) Σ_t ā ā ᵀ (ā the patch with a 1) and Σ_n c_n Σ_t g gᵀ (g the pre-activation
/// gradients of image n's loss at position t), for a dense layer the MLP's sums; and after the
/// first call with a block of 16 images nothing is allocated.
#[test]
fn kfc_factor_sums_equal_the_per_position_computation() {
    let image = ImageShape {
        channels: 2,
        height: 17,
        width: 18,
    };
    let mut n = net(Task::Multiclass { classes: 3 }, image, 7, 31);
    n.cnn.set_block_rows(3);
    check_factor_sums(&n);
    // Other widths (--conv-filters 4,8 --hidden 20): the factors take their shapes.
    let mut n = net_with(Task::Multiclass { classes: 3 }, image, 7, 34, [4, 8], 20);
    n.cnn.set_block_rows(3);
    let sides: Vec<(usize, usize)> = n
        .cnn
        .kfac_layers()
        .iter()
        .map(|b| (b.inputs + 1, b.units))
        .collect();
    // 17×18 → 13×14 → pooled 6×7 → 2×3 → pooled 1×1: the dense layer sees the 8 filters.
    assert_eq!(sides, [(51, 4), (101, 8), (9, 20), (21, 3)]);
    check_factor_sums(&n);
    // 16 images in one block: ndarray multiplies matrices of at most 7 rows and columns with
    // its own kernel, which allocates, so a block of a few images (the output layer's 3×3 G)
    // would not show what the model allocates.
    for n in [
        net(Task::Multiclass { classes: 3 }, image, 16, 33),
        net_with(Task::Multiclass { classes: 3 }, image, 16, 35, [4, 8], 20),
    ] {
        check_factor_sums_allocate_nothing(&n);
    }
}

/// Every layer's factor sums of `n` equal the per-image, per-position computation to 1e-12.
fn check_factor_sums(n: &Net) {
    let m = &n.cnn;
    let sums = m.kfac_factors(n.w.view(), &n.x, n.y.view(), Some(n.rw.view()));
    let Features::Dense(x) = &n.x else {
        unreachable!()
    };
    let mut want: Vec<(Array2<f64>, Array2<f64>)> = m
        .blocks()
        .iter()
        .map(|b| {
            (
                Array2::zeros((b.inputs + 1, b.inputs + 1)),
                Array2::zeros((b.units, b.units)),
            )
        })
        .collect();
    let outer = |v: &[f64], c: f64| {
        let col = Array1::from(v.to_vec()).insert_axis(ndarray::Axis(1));
        col.dot(&col.t()) * c
    };
    for (r, row) in x.outer_iter().enumerate() {
        let stats = per_position_statistics(m, &n.w, row.as_slice().unwrap(), n.y[r]);
        for (l, positions) in stats.iter().enumerate() {
            let t = positions.len() as f64;
            for (abar, g) in positions {
                assert_eq!(abar.len(), m.blocks()[l].inputs + 1);
                want[l].0 += &outer(abar, n.rw[r] / t);
                want[l].1 += &outer(g, n.rw[r]);
            }
        }
    }
    for (l, ((a, g), (wa, wg))) in sums.iter().zip(&want).enumerate() {
        for (got, exp, name) in [(a, wa, "A"), (g, wg, "G")] {
            let scale = exp.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let err = (got - exp).iter().map(|d| d.abs()).fold(0.0, f64::max);
            assert!(scale > 0.0, "layer {l} {name}: zero");
            assert!(
                err <= 1e-12 * scale,
                "layer {l} {name}: {err:e} of {scale:e}"
            );
        }
    }
}

/// After the first call nothing is allocated, and the memory sizing counts the scratch held.
fn check_factor_sums_allocate_nothing(n: &Net) {
    let m = &n.cnn;
    let len = crate::optim::kfac::packed_len(m.kfac_layers().iter().map(|b| (b.units, b.inputs)));
    let (mut ws, mut out) = (Workspace::default(), vec![0.0; len]);
    let mut run = |out: &mut [f64]| {
        m.kfac_factors_into(
            n.w.view(),
            &n.x,
            n.y.view(),
            Some(n.rw.view()),
            &mut ws,
            out,
        )
    };
    run(&mut out);
    let first = out.clone();
    assert_eq!(
        allocations(|| run(&mut out)),
        0,
        "allocations after the first call"
    );
    assert_eq!(out, first);
    // The memory sizing's count is the scratch the pass holds for the block of 16 images.
    let (per_row, fixed) = m.kfac_scratch();
    assert_eq!(ws.kfac.len() as u128, per_row * 16 + fixed);
}

/// Issue 21, KFC: on a tiny CNN the K-FAC direction of every layer, the two convolutions
/// included, equals (A ⊗ G + γI)⁻¹ vec(∇W) solved densely, to 1e-10 (no decay, no KL clip).
#[test]
fn kfac_direction_of_conv_layers_equals_the_dense_kronecker_solve() {
    let image = ImageShape {
        channels: 1,
        height: 16,
        width: 16,
    };
    let n = net(Task::Multiclass { classes: 3 }, image, 10, 32);
    assert_kfac_direction_is_the_kronecker_solve(&n.cnn, n.w.view(), &n.x, n.y.view());
    let n = net_with(Task::Multiclass { classes: 3 }, image, 10, 36, [4, 8], 20);
    assert_kfac_direction_is_the_kronecker_solve(&n.cnn, n.w.view(), &n.x, n.y.view());
}
