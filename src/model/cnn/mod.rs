//! A LeNet-style convolutional network for images (issue 21): conv 5×5 (C1 filters) → ReLU →
//! 2×2 max-pool → conv 5×5 (C2 filters) → ReLU → 2×2 max-pool → dense (H units, ReLU) →
//! dense (the outputs), with the loss of the MLP's head (softmax cross-entropy for
//! classification, ½(z − y)² for regression). LeNet's widths C1, C2 = 6, 16 and H = 120 are the
//! default ([`Cnn::new`]); `--conv-filters C1,C2` and `--hidden H` choose others
//! ([`Cnn::with_widths`]). "Valid" convolutions with stride 1; a pool drops
//! a last odd row or column. The image shape comes from the dataset (`image_shape` on `/X`,
//! written by `data convert --format idx`); 28×28 gives 24×24 → 12×12 → 8×8 → 4×4, so the first
//! dense layer has 16 · C2 inputs (256 for LeNet).
//!
//! Parameters: one [`ParamBlock`] per layer in the MLP's layout — a convolution is a block with a
//! unit per filter whose inputs are the filter's weights over (channel, row, column) of the
//! 5×5 patch, then its bias; the dense layers as in the MLP. He initialization (fan-in = the
//! unit's inputs).
//!
//! Convolutions as im2col + GEMM through BLAS (Chellapilla et al. 2006): the patches of a row
//! block form a matrix P (one row per image position), Z = P Wᵀ, and backward
//! ∇W += ΔZᵀ P, ΔP = ΔZ W scattered back onto the input (col2im). Activations are stored
//! position-major (image, row, column, channel), so a pooled map of an image is one contiguous
//! row of the dense layer's input. The max-pool's backward recomputes the arg-max from the
//! stored ReLU outputs (first maximum of the 2×2 window), so nothing but values is kept. A row
//! block of [`Cnn::BLOCK_ROWS`] images lives in the caller's [`Workspace`]: after the first call
//! with a given block shape nothing is allocated. f64 throughout, as the MLP (see there).
//!
//! K-FAC (`--optimizer kfac`): every layer's factor sums in one pass ([`Model::kfac_factors_into`]),
//! the dense layers' as the MLP's, the convolutions' the KFC factors of Grosse & Martens (2016)
//! over the output positions, from the same im2col patches and the pre-activation gradients of a
//! backward pass that forms no parameter gradient.
//!
//! Not implemented: padding, strides, other filter sizes or depths (two convolutions and one
//! hidden dense layer), CSR input beyond copying each row block into dense images.

use super::mlp::{dense_input_grad, dense_weight_grad, dense_z, he_init, view, Head};
use super::*;
use crate::data::ImageShape;
use crate::optim::kfac::tri;
use ndarray::s;

/// Filter side of both convolutions.
const K: usize = 5;

/// One convolution + ReLU + pool stage: its input map and its output sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conv {
    block: ParamBlock,
    /// Input channels.
    c: usize,
    /// Strides of the input: channel, row, column, image.
    sc: usize,
    sy: usize,
    sx: usize,
    simg: usize,
    /// Convolution output height and width.
    oh: usize,
    ow: usize,
}

impl Conv {
    fn filters(&self) -> usize {
        self.block.units
    }
    /// Patch length (the filter's inputs).
    fn patch(&self) -> usize {
        self.c * K * K
    }
    /// Positions of one image's convolution output.
    fn positions(&self) -> usize {
        self.oh * self.ow
    }
    /// Pooled height and width.
    fn pooled(&self) -> (usize, usize) {
        (self.oh / 2, self.ow / 2)
    }
    /// Values of one image's pooled output.
    fn pooled_len(&self) -> usize {
        let (ph, pw) = self.pooled();
        ph * pw * self.filters()
    }
}

/// A LeNet-style convolutional network (see the module docs).
#[derive(Debug, Clone)]
pub struct Cnn {
    image: ImageShape,
    conv: [Conv; 2],
    blocks: Vec<ParamBlock>,
    head: Head,
    outputs: usize,
    dim: usize,
    /// Images per block of the forward and backward passes ([`Model::set_block_rows`]).
    block: usize,
}

/// Lengths of the pieces of a block's scratch, in the order [`Cnn::carve`] hands them out.
const PIECES: usize = 15;

impl Cnn {
    /// Rows (images) per block of the forward and backward passes, unless a memory budget asks
    /// for fewer.
    pub const BLOCK_ROWS: usize = 64;

    /// LeNet's filters of the two convolutions.
    pub const DEFAULT_FILTERS: [usize; 2] = [6, 16];
    /// LeNet's units of the hidden dense layer.
    pub const DEFAULT_HIDDEN: usize = 120;
    /// The most filters or hidden units a layer may have (2^20): every size the network
    /// derives from its widths (parameters, scratch, K-FAC factors) then fits a `usize`, and
    /// the memory check, not an overflow, refuses a network too large for the node.
    pub const MAX_WIDTH: usize = 1 << 20;

    /// LeNet (the default widths) for images of `image` shape (`d` features) and `task`.
    pub fn new(d: usize, image: Option<ImageShape>, task: Task) -> Result<Self, ModelError> {
        Self::with_widths(d, image, task, Self::DEFAULT_FILTERS, Self::DEFAULT_HIDDEN)
    }

    /// The network with `filters` in its two convolutions and `hidden` units in its hidden
    /// dense layer (each > 0 and at most [`Cnn::MAX_WIDTH`]).
    pub fn with_widths(
        d: usize,
        image: Option<ImageShape>,
        task: Task,
        filters: [usize; 2],
        hidden: usize,
    ) -> Result<Self, ModelError> {
        let bad = |w: usize| w == 0 || w > Self::MAX_WIDTH;
        if filters.iter().any(|&f| bad(f)) || bad(hidden) {
            return Err(ModelError::CnnWidths {
                filters: format!("{},{}", filters[0], filters[1]),
                hidden: hidden.to_string(),
            });
        }
        let image = image.ok_or(ModelError::NoImage)?;
        let too_small = || ModelError::ImageTooSmall(image.to_string());
        if image.values() != Some(d) {
            return Err(ModelError::ImageFeatures {
                image: image.to_string(),
                features: d,
            });
        }
        let (head, outputs) = Head::of(task);
        let h1 = image.height.checked_sub(K - 1).ok_or_else(too_small)?;
        let w1 = image.width.checked_sub(K - 1).ok_or_else(too_small)?;
        let c1 = Conv {
            block: ParamBlock {
                offset: 0,
                units: filters[0],
                inputs: image.channels * K * K,
            },
            c: image.channels,
            sc: image.height * image.width,
            sy: image.width,
            sx: 1,
            simg: d,
            oh: h1,
            ow: w1,
        };
        let (p1h, p1w) = c1.pooled();
        let h2 = p1h.checked_sub(K - 1).ok_or_else(too_small)?;
        let w2 = p1w.checked_sub(K - 1).ok_or_else(too_small)?;
        let c2 = Conv {
            block: ParamBlock {
                offset: c1.block.len(),
                units: filters[1],
                inputs: filters[0] * K * K,
            },
            c: filters[0],
            sc: 1,
            sy: p1w * filters[0],
            sx: filters[0],
            simg: c1.pooled_len(),
            oh: h2,
            ow: w2,
        };
        if c2.pooled_len() == 0 {
            return Err(too_small());
        }
        let d1 = ParamBlock {
            offset: c2.block.offset + c2.block.len(),
            units: hidden,
            inputs: c2.pooled_len(),
        };
        let d2 = ParamBlock {
            offset: d1.offset + d1.len(),
            units: outputs,
            inputs: hidden,
        };
        Ok(Cnn {
            image,
            conv: [c1, c2],
            blocks: vec![c1.block, c2.block, d1, d2],
            head,
            outputs,
            dim: d2.offset + d2.len(),
            block: Self::BLOCK_ROWS,
        })
    }

    /// The image shape the network was built for.
    pub fn image(&self) -> ImageShape {
        self.image
    }

    /// Filters of the two convolutions.
    pub fn filters(&self) -> [usize; 2] {
        self.conv.map(|c| c.filters())
    }

    /// Units of the hidden dense layer.
    pub fn hidden(&self) -> usize {
        self.blocks[2].units
    }

    /// Lengths of a block's scratch pieces for `r` rows: the input images, per stage the
    /// patches, the convolution output and the pooled output, the hidden and output layers;
    /// then the backward buffers (hidden, pooled 2, conv 2, patches 2, pooled 1, conv 1).
    fn pieces(&self, r: usize) -> [usize; PIECES] {
        let [c1, c2] = self.conv;
        let pos1 = r * c1.positions();
        let pos2 = r * c2.positions();
        let hidden = self.hidden();
        [
            r * c1.simg,
            pos1 * c1.patch(),
            pos1 * c1.filters(),
            r * c1.pooled_len(),
            pos2 * c2.patch(),
            pos2 * c2.filters(),
            r * c2.pooled_len(),
            r * hidden,
            r * self.outputs,
            r * hidden,
            r * c2.pooled_len(),
            pos2 * c2.filters(),
            pos2 * c2.patch(),
            r * c1.pooled_len(),
            pos1 * c1.filters(),
        ]
    }

    /// Scratch values per row of a block (every piece).
    pub(crate) fn scratch_per_row(&self) -> usize {
        self.pieces(1).iter().sum()
    }

    /// Forward pass of the rows `rows` of `x` into the pieces `p` (see [`Cnn::pieces`]).
    fn forward(&self, w: &[f64], x: &Features, rows: std::ops::Range<usize>, p: &mut Pieces) {
        let r = rows.len();
        let [c1, c2] = self.conv;
        gather_images(x, rows, p.img);
        conv_forward(w, &c1, r, p.img, p.patch1, p.z1);
        max_pool(&c1, r, p.z1, p.a1);
        conv_forward(w, &c2, r, p.a1, p.patch2, p.z2);
        max_pool(&c2, r, p.z2, p.a2);
        dense_forward(w, &self.blocks[2], r, p.a2, p.hid, true);
        dense_forward(w, &self.blocks[3], r, p.hid, p.out, false);
    }

    /// Backward pass of a block whose outputs hold the residuals; accumulates into `g`.
    fn backward(&self, w: &[f64], r: usize, p: &mut Pieces, g: &mut [f64]) {
        let [c1, c2] = self.conv;
        let [_, _, b3, b4] = [0, 1, 2, 3].map(|i| self.blocks[i]);
        dense_backward(w, &b4, r, p.out, p.hid, g, Some(&mut *p.dhid));
        relu_mask(p.dhid, p.hid);
        dense_backward(w, &b3, r, p.dhid, p.a2, g, Some(&mut *p.da2));
        max_unpool(&c2, r, p.z2, p.da2, p.dz2);
        conv_backward(
            w,
            &c2,
            r,
            p.patch2,
            p.dz2,
            g,
            Some((&mut *p.dpatch2, &mut *p.da1)),
        );
        max_unpool(&c1, r, p.z1, p.da1, p.dz1);
        conv_backward(w, &c1, r, p.patch1, p.dz1, g, None);
    }

    /// The pre-activation gradients of every layer of a block whose outputs hold the
    /// (unweighted) residuals, without the parameter gradients: `dhid`, `dz2`, `dz1` (K-FAC's
    /// G statistics).
    fn deltas(&self, w: &[f64], r: usize, p: &mut Pieces) {
        let [c1, c2] = self.conv;
        let [_, b2, b3, b4] = [0, 1, 2, 3].map(|i| self.blocks[i]);
        dense_input_grad(w, &b4, r, p.out, p.dhid);
        relu_mask(p.dhid, p.hid);
        dense_input_grad(w, &b3, r, p.dhid, p.da2);
        max_unpool(&c2, r, p.z2, p.da2, p.dz2);
        dense_input_grad(w, &b2, r * c2.positions(), p.dz2, p.dpatch2);
        col2im(&c2, r, p.dpatch2, p.da1);
        max_unpool(&c1, r, p.z1, p.da1, p.dz1);
    }

    /// Per layer, in order: (its inputs of a block of `r` images, as rows of `inputs` values;
    /// its pre-activation gradients, as rows of `units` values; rows per image) — a
    /// convolution's rows are its positions (the im2col patches), a dense layer's its images.
    fn kfac_rows<'p>(&self, r: usize, p: &'p Pieces) -> [(&'p [f64], &'p [f64], usize); 4] {
        let [c1, c2] = self.conv;
        [
            (&*p.patch1, &*p.dz1, c1.positions()),
            (&*p.patch2, &*p.dz2, c2.positions()),
            (&*p.a2, &*p.dhid, 1),
            (&*p.hid, &p.out[..r * self.outputs], 1),
        ]
    }

    /// K-FAC's scratch for blocks of `block` images: the most values of a layer's rows
    /// (positions × images for a convolution) times its widest factor side, and that side.
    fn factor_scratch(&self, block: usize) -> (usize, usize) {
        let per_image = [self.conv[0].positions(), self.conv[1].positions(), 1, 1];
        let side = |b: &ParamBlock| (b.inputs + 1).max(b.units);
        let cells = self.blocks.iter().zip(per_image);
        let cells = cells.map(|(b, t)| block * t * side(b)).max().unwrap_or(0);
        (cells, self.blocks.iter().map(side).max().unwrap_or(0))
    }

    /// The pieces of a block of `r` rows inside `buf`.
    fn carve<'a>(&self, buf: &'a mut [f64], r: usize) -> Pieces<'a> {
        let mut rest = buf;
        let [img, patch1, z1, a1, patch2, z2, a2, hid, out, dhid, da2, dz2, dpatch2, da1, dz1] =
            self.pieces(r).map(|len| {
                let (a, b) = std::mem::take(&mut rest).split_at_mut(len);
                rest = b;
                a
            });
        Pieces {
            img,
            patch1,
            z1,
            a1,
            patch2,
            z2,
            a2,
            hid,
            out,
            dhid,
            da2,
            dz2,
            dpatch2,
            da1,
            dz1,
        }
    }

    /// Run `f(rows, pieces)` after the forward pass of every row block of `x` (at checked
    /// parameters `w`), with the scratch in `rows_buf`.
    fn for_each_block(
        &self,
        w: &[f64],
        x: &Features,
        rows_buf: &mut Vec<f64>,
        mut f: impl FnMut(std::ops::Range<usize>, &mut Pieces),
    ) {
        let n = x.n_rows();
        let block = self.block.min(n);
        let buf = scratch(rows_buf, self.pieces(block).iter().sum());
        let mut start = 0;
        while start < n {
            let end = (start + self.block).min(n);
            let mut p = self.carve(buf, end - start);
            self.forward(w, x, start..end, &mut p);
            f(start..end, &mut p);
            start = end;
        }
    }

    /// The forward pass of every row at `w` (checked), then `f(row, outputs)` for every row.
    fn for_each_output(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
        f: &mut dyn FnMut(usize, &mut [f64]),
    ) {
        let Workspace { rows, params, .. } = ws;
        let w = checked_params(self.dim, self.image_len(), w, params, x, y);
        self.for_each_block(w, x, rows, |rows, p| {
            for (z, r) in p.out.chunks_exact_mut(self.outputs).zip(rows) {
                f(r, z);
            }
        });
    }

    fn image_len(&self) -> usize {
        self.conv[0].simg
    }
}

/// A row block's buffers (see [`Cnn::pieces`]).
struct Pieces<'a> {
    img: &'a mut [f64],
    patch1: &'a mut [f64],
    z1: &'a mut [f64],
    a1: &'a mut [f64],
    patch2: &'a mut [f64],
    z2: &'a mut [f64],
    a2: &'a mut [f64],
    hid: &'a mut [f64],
    out: &'a mut [f64],
    dhid: &'a mut [f64],
    da2: &'a mut [f64],
    dz2: &'a mut [f64],
    dpatch2: &'a mut [f64],
    da1: &'a mut [f64],
    dz1: &'a mut [f64],
}

/// The rows of a block as dense images (a CSR row is scattered into zeros).
fn gather_images(x: &Features, rows: std::ops::Range<usize>, img: &mut [f64]) {
    match x {
        Features::Dense(x) => {
            let xb = x.slice(s![rows, ..]);
            let d = xb.ncols();
            for (dst, src) in img.chunks_exact_mut(d).zip(xb.outer_iter()) {
                for (o, &v) in dst.iter_mut().zip(src.iter()) {
                    *o = v;
                }
            }
        }
        Features::Sparse(x) => {
            img.fill(0.0);
            let d = x.n_cols();
            for (dst, i) in img.chunks_exact_mut(d).zip(rows) {
                let (idx, val) = x.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    dst[j as usize] = v;
                }
            }
        }
    }
}

/// The offset in the input of each patch entry (channel, row, column) relative to the patch's
/// top-left corner, visited in the weights' order; `f(patch entry, input offset)`.
#[inline]
fn for_each_tap(c: &Conv, mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    for ch in 0..c.c {
        for ki in 0..K {
            for kj in 0..K {
                f(i, ch * c.sc + ki * c.sy + kj * c.sx);
                i += 1;
            }
        }
    }
}

/// im2col: one row of `patches` per (image, output row, output column).
fn im2col(c: &Conv, r: usize, input: &[f64], patches: &mut [f64]) {
    let kk = c.patch();
    let mut rows = patches.chunks_exact_mut(kk);
    for n in 0..r {
        for y in 0..c.oh {
            for x in 0..c.ow {
                let base = n * c.simg + y * c.sy + x * c.sx;
                if let Some(row) = rows.next() {
                    for_each_tap(c, |i, off| row[i] = input[base + off]);
                }
            }
        }
    }
}

/// col2im: `d_input` = the patch gradients summed back onto the input positions.
fn col2im(c: &Conv, r: usize, d_patches: &[f64], d_input: &mut [f64]) {
    d_input.fill(0.0);
    let mut rows = d_patches.chunks_exact(c.patch());
    for n in 0..r {
        for y in 0..c.oh {
            for x in 0..c.ow {
                let base = n * c.simg + y * c.sy + x * c.sx;
                if let Some(row) = rows.next() {
                    for_each_tap(c, |i, off| d_input[base + off] += row[i]);
                }
            }
        }
    }
}

/// `out = act(a Wᵀ + b)` of layer `b` on `r` rows (ReLU when `relu`).
fn dense_forward(w: &[f64], b: &ParamBlock, r: usize, a: &[f64], out: &mut [f64], relu: bool) {
    dense_z(w, b, r, a, out);
    add_bias(w, b, out, relu);
}

/// `z += b` per unit, then ReLU when `relu`.
fn add_bias(w: &[f64], b: &ParamBlock, z: &mut [f64], relu: bool) {
    for row in z.chunks_exact_mut(b.units) {
        for (k, v) in row.iter_mut().enumerate() {
            let t = *v + w[b.offset + k * (b.inputs + 1) + b.inputs];
            *v = if !relu || t > 0.0 { t } else { 0.0 };
        }
    }
}

/// Backward through layer `b` on `r` rows with output gradients `delta` and inputs `a`:
/// ∇W += Δᵀ A, ∇b += 1ᵀ Δ, and the input gradients Δ W into `d_in` when given.
fn dense_backward(
    w: &[f64],
    b: &ParamBlock,
    r: usize,
    delta: &[f64],
    a: &[f64],
    g: &mut [f64],
    d_in: Option<&mut [f64]>,
) {
    let gl = &mut g[b.range()];
    for row in delta.chunks_exact(b.units) {
        for (k, &v) in row.iter().enumerate() {
            gl[k * (b.inputs + 1) + b.inputs] += v;
        }
    }
    dense_weight_grad(b, r, delta, a, gl);
    if let Some(d_in) = d_in {
        dense_input_grad(w, b, r, delta, d_in);
    }
}

/// Zero the gradients of units whose ReLU output was 0.
fn relu_mask(delta: &mut [f64], act: &[f64]) {
    for (d, &a) in delta.iter_mut().zip(act) {
        if a <= 0.0 {
            *d = 0.0;
        }
    }
}

/// Convolution + bias + ReLU of stage `c` on `r` images of `input`: patches, then one GEMM.
fn conv_forward(w: &[f64], c: &Conv, r: usize, input: &[f64], patches: &mut [f64], z: &mut [f64]) {
    im2col(c, r, input, patches);
    let rows = r * c.positions();
    dense_forward(w, &c.block, rows, patches, z, true);
}

/// Backward of stage `c` from the gradients `dz` of its (ReLU-masked) outputs: the filter and
/// bias gradients, and with `input_grad` = (patch scratch, input gradient) the gradient of the
/// stage's input.
fn conv_backward(
    w: &[f64],
    c: &Conv,
    r: usize,
    patches: &[f64],
    dz: &[f64],
    g: &mut [f64],
    input_grad: Option<(&mut [f64], &mut [f64])>,
) {
    let rows = r * c.positions();
    match input_grad {
        Some((dpatches, d_input)) => {
            dense_backward(w, &c.block, rows, dz, patches, g, Some(&mut *dpatches));
            col2im(c, r, dpatches, d_input);
        }
        None => dense_backward(w, &c.block, rows, dz, patches, g, None),
    }
}

/// The index in `z` (position-major, `f` channels) of each pooled cell's 2×2 window, visited
/// as `f(pooled index, [window indices])`.
#[inline]
fn for_each_window(c: &Conv, r: usize, mut f: impl FnMut(usize, [usize; 4])) {
    let (ph, pw) = c.pooled();
    let nf = c.filters();
    let mut o = 0;
    for n in 0..r {
        for py in 0..ph {
            for px in 0..pw {
                let top = (n * c.oh + 2 * py) * c.ow + 2 * px;
                let win = [top, top + 1, top + c.ow, top + c.ow + 1].map(|p| p * nf);
                for ch in 0..nf {
                    f(o, win.map(|i| i + ch));
                    o += 1;
                }
            }
        }
    }
}

/// 2×2 max-pool of the stage's ReLU outputs `z` into `out`.
fn max_pool(c: &Conv, r: usize, z: &[f64], out: &mut [f64]) {
    for_each_window(c, r, |o, win| {
        out[o] = win.iter().map(|&i| z[i]).fold(f64::NEG_INFINITY, f64::max);
    });
}

/// The max-pool's and the ReLU's backward: each pooled gradient goes to the first maximum of
/// its window when that maximum is positive (the ReLU passed it).
fn max_unpool(c: &Conv, r: usize, z: &[f64], d_out: &[f64], dz: &mut [f64]) {
    dz.fill(0.0);
    for_each_window(c, r, |o, win| {
        let mut best = win[0];
        for &i in &win[1..] {
            if z[i] > z[best] {
                best = i;
            }
        }
        if z[best] > 0.0 {
            dz[best] = d_out[o];
        }
    });
}

impl Model for Cnn {
    fn gemm_layers(&self, rows: usize) -> Vec<gemm::LayerGemms> {
        let blocks = gemm::row_blocks(rows, self.block);
        let conv = self.conv.iter().enumerate().map(|(l, c)| gemm::LayerGemms {
            name: format!("conv{} {K}x{K}x{}-{}", l + 1, c.c, c.filters()),
            block: c.block,
            rows: blocks.iter().map(|r| r * c.positions()).collect(),
            // conv1's input is the image: no input gradient.
            input_grad: l > 0,
        });
        let dense = self.blocks[2..].iter().map(|b| gemm::LayerGemms {
            name: format!("dense {}-{}", b.inputs, b.units),
            block: *b,
            rows: blocks.clone(),
            input_grad: true,
        });
        conv.chain(dense).collect()
    }
    fn kfac_layers(&self) -> &[ParamBlock] {
        &self.blocks
    }
    fn kfac_scratch(&self) -> (u128, u128) {
        // FactorScratch::carve(cells, side) of kfac_factors_into; the cells grow with the rows.
        let (cells, side) = self.factor_scratch(1);
        (2 * cells as u128, (side as u128) * (side as u128))
    }

    /// K-FAC's factor sums, packed (see [`Model::kfac_factors_into`]): for a dense layer those
    /// of the MLP; for a convolution the KFC factors (Grosse & Martens 2016) over its T output
    /// positions, Σ_n c_n (1/T) Σ_t ā_{n,t} ā_{n,t}ᵀ with ā the im2col patch and a 1, and
    /// Σ_n c_n Σ_t g_{n,t} g_{n,t}ᵀ with g the gradient of image n's loss with respect to the
    /// pre-activations at position t. Divided by the images N at rank 0, A is the mean over
    /// images and positions and G the mean over images of the sum over positions, so A ⊗ G is
    /// KFC's Ω ⊗ Γ (their product carries the one 1/T) and a 1×1 map is a dense layer.
    fn kfac_factors_into(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        rw: Option<ArrayView1<f64>>,
        ws: &mut Workspace,
        out: &mut [f64],
    ) {
        let Workspace {
            rows, params, kfac, ..
        } = ws;
        let w = checked_params(self.dim, self.image_len(), w, params, x, y);
        zero_factor_sums(&self.blocks, out);
        let (cells, side) = self.factor_scratch(self.block.min(x.n_rows()));
        let mut fs = FactorScratch::carve(kfac, cells, side);
        self.for_each_block(w, x, rows, |rows, p| {
            let r = rows.len();
            self.head
                .residuals(p.out, self.outputs, rows.clone(), y, None);
            self.deltas(w, r, p);
            let mut at = 0;
            for (b, (inputs, grads, t)) in self.blocks.iter().zip(self.kfac_rows(r, p)) {
                let m = r * t;
                let c = |i: usize| rw.as_ref().map_or(1.0, |rw| rw[rows.start + i / t]);
                let fill =
                    |a: &mut ndarray::ArrayViewMut2<f64>| a.assign(&view(inputs, m, b.inputs));
                let grads = view(grads, m, b.units);
                fs.add_layer(b, fill, grads, c, 1.0 / t as f64, &mut out[at..]);
                at += tri(b.inputs + 1) + tri(b.units);
            }
        });
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Cnn
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_features(&self) -> usize {
        self.image_len()
    }
    fn blocks(&self) -> &[ParamBlock] {
        &self.blocks
    }
    /// He initialization: weights N(0, 2/fan_in) from `seed`, biases 0.
    fn init_into(&self, seed: u64, w: ArrayViewMut1<f64>) {
        he_init(&self.blocks, seed ^ 0x434E_4E5F_494E_4954, w);
    }
    fn set_block_rows(&mut self, rows: usize) {
        self.block = rows.max(1);
    }
    fn loss(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> f64 {
        let mut total = 0.0;
        self.for_each_output(w, x, y, ws, &mut |r, z| {
            total += self.head.row_loss(z, y[r], None)
        });
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
        run_gradient_kernel(
            self.dim,
            self.image_len(),
            w,
            x,
            y,
            rw.as_ref(),
            ws,
            out,
            |w, rows, g| {
                g.fill(0.0);
                let mut loss = 0.0;
                self.for_each_block(w, x, rows, |rows, p| {
                    let r = rows.len();
                    loss += self
                        .head
                        .residuals(p.out, self.outputs, rows, y, rw.as_ref());
                    self.backward(w, r, p, g);
                });
                loss
            },
        )
    }
    /// As the MLP's: mean loss, accuracy of the argmax, AUC for a binary task.
    fn evaluate(
        &self,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        ws: &mut Workspace,
    ) -> Evaluation {
        self.head
            .evaluate(y, ws, |ws, f| self.for_each_output(w, x, y, ws, f))
    }
}

#[cfg(test)]
mod tests;
