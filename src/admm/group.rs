//! Consecutive layers in one process (`--layers-per-rank`, or all of them in the serial
//! reference) and their hand-offs.
//!
//! An iteration of a group is phase A of each of its layers, then the backward hand-offs inside
//! the group (layer l's new p_l into layer l−1's view), then phase B, then the forward hand-offs
//! (q_l, u_l into layer l+1's views) — the synchronous algorithm. The values crossing a boundary
//! go through the message codec even inside a process, so the trajectory does not depend on how
//! the layers are packed into ranks. What crosses the group's own two boundaries is encoded into
//! (and decoded from) message payloads by the caller's link.

use std::ops::RangeInclusive;

use ndarray::Array2;

use super::layer::{Layer, Penalties, Terms};
use super::net::{init_layer, try_zeros2, Net};
use super::quant::Codec;
use crate::data::DataError;

/// What feeds a group's first layer at initialization.
#[derive(Debug)]
pub enum Input<'a> {
    /// The training rows (the group holds layer 1).
    Rows(Array2<f64>),
    /// The previous layer's q⁰, u⁰ as a Forward payload (`rows` training rows).
    Message { payload: &'a [f64], rows: usize },
}

/// Consecutive layers of one process.
#[derive(Debug, Clone)]
pub struct LayerGroup {
    pub layers: Vec<Layer>,
    pen: Penalties,
    codec: Codec,
    buf: Vec<f64>,
}

fn flat(a: &Array2<f64>) -> &[f64] {
    a.as_slice().unwrap_or_else(|| unreachable!())
}

fn flat_mut(a: &mut Array2<f64>) -> &mut [f64] {
    a.as_slice_mut().unwrap_or_else(|| unreachable!())
}

impl LayerGroup {
    /// A group of `layers` (consecutive, standard layout).
    pub fn new(layers: Vec<Layer>, pen: Penalties, codec: Codec) -> LayerGroup {
        LayerGroup {
            layers,
            pen,
            codec,
            buf: Vec::new(),
        }
    }

    /// Layers `range` of `net` at iteration 0, from `input`; `labels` for the output layer.
    pub fn init(
        net: &Net,
        range: RangeInclusive<usize>,
        pen: Penalties,
        codec: Codec,
        seed: u64,
        input: Input<'_>,
        labels: &[usize],
    ) -> Result<LayerGroup, DataError> {
        let mut g = LayerGroup::new(Vec::new(), pen, codec);
        let mut from_left = match input {
            Input::Rows(x) => Some((x, None)),
            Input::Message { payload, rows } => {
                let n_in = net.inputs(*range.start());
                let mut q = try_zeros2(rows, n_in, "the view of the previous layer's q")?;
                let mut u = try_zeros2(rows, n_in, "the view of the previous layer's u")?;
                let half = codec.len(q.len());
                codec.decode(&payload[..half], flat_mut(&mut q));
                codec.decode(&payload[half..], flat_mut(&mut u));
                Some((q, Some(u)))
            }
        };
        for l in range {
            let (p, left_u) = match from_left.take() {
                Some(v) => v,
                None => g.hand_forward_init(net, l)?,
            };
            let labels = if l == net.layers() {
                labels.to_vec()
            } else {
                Vec::new()
            };
            g.layers.push(init_layer(net, l, seed, p, left_u, labels)?);
        }
        Ok(g)
    }

    /// The input of layer l at initialization from the group's previous layer (through the codec).
    fn hand_forward_init(
        &mut self,
        net: &Net,
        l: usize,
    ) -> Result<(Array2<f64>, Option<Array2<f64>>), DataError> {
        let prev = self.layers.last().ok_or_else(|| {
            DataError::Invalid(format!("layer {l} has no previous layer in its group"))
        })?;
        let rows = prev.rows();
        let mut q = try_zeros2(rows, net.inputs(l), "the view of the previous layer's q")?;
        let mut u = try_zeros2(rows, net.inputs(l), "the view of the previous layer's u")?;
        self.buf.resize(self.codec.len(q.len()), 0.0);
        self.codec.encode(flat(&prev.q), &mut self.buf);
        self.codec.decode(&self.buf, flat_mut(&mut q));
        self.codec.encode(flat(&prev.u), &mut self.buf);
        self.codec.decode(&self.buf, flat_mut(&mut u));
        Ok((q, Some(u)))
    }

    /// The first layer's index.
    pub fn first(&self) -> usize {
        self.layers.first().map_or(0, |l| l.index)
    }

    /// The last layer's index.
    pub fn last(&self) -> usize {
        self.layers.last().map_or(0, |l| l.index)
    }

    /// Training rows N.
    pub fn rows(&self) -> usize {
        self.layers.first().map_or(0, Layer::rows)
    }

    /// The penalties.
    pub fn penalties(&self) -> Penalties {
        self.pen
    }

    /// Slots of a message from the left (the previous layer's q and u).
    pub fn from_left_len(&self) -> usize {
        let n = self.rows() * self.layers.first().map_or(0, Layer::inputs);
        2 * self.codec.len(n)
    }

    /// Slots of a message from the right (the next layer's p).
    pub fn from_right_len(&self) -> usize {
        let n = self.rows() * self.layers.last().map_or(0, Layer::outputs);
        self.codec.len(n)
    }

    /// Slots of this group's message to the left (its first layer's p).
    pub fn backward_len(&self) -> usize {
        self.from_left_len() / 2
    }

    /// Slots of this group's message to the right (its last layer's q and u).
    pub fn forward_len(&self) -> usize {
        2 * self.from_right_len()
    }

    /// Code the first layer's p into `out` (a Backward payload).
    pub fn encode_backward(&self, out: &mut [f64]) {
        if let Some(l) = self.layers.first() {
            self.codec.encode(flat(&l.p), out);
        }
    }

    /// Code the last layer's q and u into `out` (a Forward payload).
    pub fn encode_forward(&self, out: &mut [f64]) {
        if let Some(l) = self.layers.last() {
            let half = self.codec.len(l.q.len());
            self.codec.encode(flat(&l.q), &mut out[..half]);
            self.codec.encode(flat(&l.u), &mut out[half..]);
        }
    }

    /// A Forward payload from the left into the first layer's view of q_{l−1}, u_{l−1}.
    pub fn decode_from_left(&mut self, payload: &[f64]) {
        let codec = self.codec;
        if let Some(l) = self.layers.first_mut() {
            let half = codec.len(l.left_q.len());
            codec.decode(&payload[..half], flat_mut(&mut l.left_q));
            codec.decode(&payload[half..], flat_mut(&mut l.left_u));
        }
    }

    /// A Backward payload from the right into the last layer's view of p_{l+1}.
    pub fn decode_from_right(&mut self, payload: &[f64]) {
        let codec = self.codec;
        if let Some(l) = self.layers.last_mut() {
            codec.decode(payload, flat_mut(&mut l.right_p));
        }
    }

    /// Phase A of every layer, then the backward hand-offs inside the group.
    pub fn phase_a(&mut self) {
        let pen = self.pen;
        for l in &mut self.layers {
            l.phase_a(pen);
        }
        for i in 1..self.layers.len() {
            let (lo, hi) = self.layers.split_at_mut(i);
            let src = &hi[0].p;
            self.buf.resize(self.codec.len(src.len()), 0.0);
            self.codec.encode(flat(src), &mut self.buf);
            self.codec
                .decode(&self.buf, flat_mut(&mut lo[i - 1].right_p));
        }
    }

    /// Phase B of every layer (the output layer only closes its terms), then the forward
    /// hand-offs inside the group.
    pub fn phase_b(&mut self) {
        let pen = self.pen;
        for l in &mut self.layers {
            if l.last {
                l.close_output();
            } else {
                l.phase_b(pen);
            }
        }
        for i in 1..self.layers.len() {
            let (lo, hi) = self.layers.split_at_mut(i);
            let (src, dst) = (&lo[i - 1], &mut hi[0]);
            let half = self.codec.len(src.q.len());
            self.buf.resize(2 * half, 0.0);
            self.codec.encode(flat(&src.q), &mut self.buf[..half]);
            self.codec.encode(flat(&src.u), &mut self.buf[half..]);
            self.codec
                .decode(&self.buf[..half], flat_mut(&mut dst.left_q));
            self.codec
                .decode(&self.buf[half..], flat_mut(&mut dst.left_u));
        }
    }

    /// Each layer's terms of the last iteration, first layer first.
    pub fn terms(&self) -> Vec<Terms> {
        self.layers.iter().map(|l| l.terms).collect()
    }
}
