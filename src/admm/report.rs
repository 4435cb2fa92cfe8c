//! A layer rank's report to rank 0, one per iteration: its timing, every one of its layers'
//! [`Terms`], and at evaluation iterations every one of its layers' W and b (rank 0 assembles
//! the network from them).
//!
//! Payload: `wait_s, bytes_sent, bytes_received` (this iteration's), then [`Terms::LEN`] values
//! per layer, first layer first, then (evaluation iterations) per layer W (row-major) and b. The
//! compute and injected seconds travel in the message header.

use std::ops::RangeInclusive;

use ndarray::{Array1, Array2};

use super::group::LayerGroup;
use super::layer::Terms;
use super::net::Net;

/// Values of the rank's timing at the front of a report.
pub const RANK_VALUES: usize = 3;

/// What one layer rank spent on one iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RankTiming {
    /// Seconds computing both phases (the injected slow-down excluded).
    pub compute_s: f64,
    /// Seconds of injected delay (sleep and slow-down spin).
    pub injected_s: f64,
    /// Seconds waiting for neighbours and grants.
    pub wait_s: f64,
    /// Bytes sent to and received from the neighbour ranks.
    pub bytes_sent: f64,
    pub bytes_received: f64,
}

/// Whether iteration `t` of a run of `iterations` is an evaluation iteration (every
/// `eval_every`, and the last).
pub fn is_eval(eval_every: u64, iterations: u64, t: u64) -> bool {
    (eval_every > 0 && (t + 1) % eval_every == 0) || t + 1 == iterations
}

/// Payload values of a report of the layers `range`, with their weights or not.
pub fn report_len(net: &Net, range: &RangeInclusive<usize>, weights: bool) -> usize {
    let layers = range.clone().count();
    let w: usize = if weights {
        range.clone().map(|l| net.params(l)).sum()
    } else {
        0
    };
    RANK_VALUES + Terms::LEN * layers + w
}

/// The length of `group`'s report: [`report_len`] of its layers.
pub fn group_report_len(group: &LayerGroup, weights: bool) -> usize {
    let w: usize = if weights {
        group.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    } else {
        0
    };
    RANK_VALUES + Terms::LEN * group.layers.len() + w
}

/// Write the report of `group` into `out` (exactly [`report_len`] values).
pub fn write_report(out: &mut [f64], timing: &RankTiming, group: &LayerGroup, weights: bool) {
    out[..RANK_VALUES].copy_from_slice(&[timing.wait_s, timing.bytes_sent, timing.bytes_received]);
    let mut at = RANK_VALUES;
    for l in &group.layers {
        out[at..at + Terms::LEN].copy_from_slice(&l.terms.values());
        at += Terms::LEN;
    }
    if weights {
        for l in &group.layers {
            for (o, v) in out[at..].iter_mut().zip(l.w.iter().chain(l.b.iter())) {
                *o = *v;
            }
            at += l.w.len() + l.b.len();
        }
    }
}

/// A report as rank 0 reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub timing: RankTiming,
    /// Terms of the rank's layers, first layer first.
    pub terms: Vec<Terms>,
    /// W and b of the rank's layers (evaluation iterations; empty otherwise).
    pub weights: Vec<(Array2<f64>, Array1<f64>)>,
}

/// Read a report of layers `range` (its length was checked against [`report_len`]).
pub fn read_report(
    payload: &[f64],
    net: &Net,
    range: &RangeInclusive<usize>,
    compute_s: f64,
    injected_s: f64,
) -> Report {
    let timing = RankTiming {
        compute_s,
        injected_s,
        wait_s: payload[0],
        bytes_sent: payload[1],
        bytes_received: payload[2],
    };
    let mut at = RANK_VALUES;
    let mut terms = Vec::new();
    for _ in range.clone() {
        terms.push(Terms::from_values(&payload[at..at + Terms::LEN]));
        at += Terms::LEN;
    }
    let mut weights = Vec::new();
    if payload.len() > at {
        for l in range.clone() {
            let (n_out, n_in) = (net.outputs(l), net.inputs(l));
            let w = Array2::from_shape_vec((n_out, n_in), payload[at..at + n_out * n_in].to_vec())
                .unwrap_or_else(|_| Array2::zeros((n_out, n_in)));
            at += n_out * n_in;
            let b = Array1::from(payload[at..at + n_out].to_vec());
            at += n_out;
            weights.push((w, b));
        }
    }
    Report {
        timing,
        terms,
        weights,
    }
}
