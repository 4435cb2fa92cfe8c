//! The cost of messages and of rank 0's own work in the simulator, and their fit from real runs.
//!
//! A message costs a latency α, a per-message cost α_m, then β seconds per byte: parameters
//! reach every worker α + β × bytes after their post (the workers copy in parallel); a worker
//! spends α_m of its own time on each message it sends (a chunk's send delays the next chunk);
//! the message waits α, then rank 0 receives it, one message at a time, for α_m + β × bytes of
//! its time. A round trip of a worker sending C messages to an idle rank 0 is therefore
//! 2α + (C + 1)·α_m + β × (parameter bytes + result bytes).
//!
//! α_m is what makes more chunks cost more than their bytes: on a node whose cores are shared
//! by more ranks than it has, each message is a wake-up of the receiver (a context switch),
//! whatever its size. Without it the simulator predicted two chunks about 20 % faster than one
//! on this machine, where they are equal (docs/tuning.md).
//!
//! Fit ([`fit_link`]): in a real run, the time from the post to a worker's arrival at rank 0
//! minus its own compute and injected delay (both in its message header) is that round trip,
//! plus whatever the operating system adds (on an oversubscribed node, waiting for a core). The
//! median round trip of each (message size, messages per worker) pair is one observation; the
//! constant 2α, β and α_m are the least squares fit through them, each of β and α_m only when
//! the observations vary in what it multiplies (two message sizes, e.g. a9a's 1 KB and
//! Fashion-MNIST's 63 KB; two chunk counts, e.g. the same run with `--chunks 1` and `2`),
//! otherwise it keeps its default and α takes the rest. Rank 0's step time is the median of
//! wall time minus the last on-time arrival; the gap between iterations the mean of the
//! training clock's increase minus the wall time. The first iteration of a run (warm-up,
//! gradient check) is left out.

use crate::io::metrics::percentile;

/// Latency, per-message and per-byte cost of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// α: seconds from a send to the message being receivable.
    pub alpha_s: f64,
    /// α_m: seconds of the sender's and of rank 0's time per message, whatever its size.
    pub message_s: f64,
    /// β: seconds per byte (parameters to each worker; rank 0's receive of each result).
    pub beta_s_per_byte: f64,
}

/// Rank 0's own time per iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overheads {
    /// From the decodable set to the step: decode, optimizer step, bookkeeping.
    pub step_s: f64,
    /// Between the step and the next post: evaluation every `--eval-every`, results, log.
    pub gap_s: f64,
}

/// The link of this machine (2 cores, Open MPI 4.1 shared memory, `--oversubscribe`, 9 ranks):
/// α and β fitted by `gradcode simulate --fit-link` from uncoded runs of a9a (1.1 KB messages)
/// and Fashion-MNIST softmax (63 KB) with `exp:20` at n = 8; α_m from four `frc` s = 3 runs of
/// a9a under `exp:20`, 100 iterations each, alternately with one and two chunks, at a load
/// average of 10 (docs/tuning.md). The per-byte and per-message costs reflect cores shared by
/// nine processes more than memory bandwidth.
pub const DEFAULT_LINK: LinkModel = LinkModel {
    alpha_s: 0.6e-3,
    message_s: 0.6e-3,
    beta_s_per_byte: 0.25e-6,
};

/// Rank 0's defaults when nothing is replayed: half a millisecond per step, no gap.
pub const DEFAULT_OVERHEADS: Overheads = Overheads {
    step_s: 0.5e-3,
    gap_s: 0.0,
};

/// One observed round trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    /// Parameter bytes plus result bytes of the round trip.
    pub bytes: f64,
    /// Messages the worker sent in the round trip (its chunks).
    pub messages: f64,
    /// Seconds from the post to the arrival, less the worker's compute and injected delay.
    pub round_trip_s: f64,
}

/// Fit α, α_m and β to round trips (see the module docs); `default` gives β when all samples
/// have one message size and α_m when all have one message count. `None` when there is no
/// finite sample.
pub fn fit_link(samples: &[LinkSample], default: LinkModel) -> Option<LinkModel> {
    // Median round trip per (size, messages).
    let mut keys: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.round_trip_s.is_finite() && s.bytes.is_finite() && s.messages.is_finite())
        .map(|s| (s.bytes, s.messages))
        .collect();
    keys.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    keys.dedup();
    if keys.is_empty() {
        return None;
    }
    // One observation per key: (bytes, messages + 1, median round trip).
    let points: Vec<[f64; 3]> = keys
        .iter()
        .map(|&(b, m)| {
            let mut rt: Vec<f64> = samples
                .iter()
                .filter(|s| s.bytes == b && s.messages == m && s.round_trip_s.is_finite())
                .map(|s| s.round_trip_s)
                .collect();
            rt.sort_by(f64::total_cmp);
            [b, m + 1.0, percentile(&rt, 0.5)]
        })
        .collect();
    let varies = |i: usize| points.iter().any(|p| p[i] != points[0][i]);
    let defaults = [default.beta_s_per_byte, default.message_s];
    // The most coefficients the observations determine: β and α_m, else α_m (chunk counts
    // differ), else β (sizes differ), else only the constant.
    let (free, c, theta) = [vec![0, 1], vec![1], vec![0], vec![]]
        .into_iter()
        .filter(|f| f.iter().all(|&j| varies(j)) && points.len() > f.len())
        .find_map(|free| {
            let (c, theta) = fit_free(&points, &free, defaults)?;
            Some((free, c, theta))
        })?;
    let mut coef = defaults;
    for (&j, t) in free.iter().zip(theta) {
        coef[j] = t.max(0.0);
    }
    // With a coefficient clamped at 0, the constant takes the mean of the rest.
    let c = if free.iter().all(|&j| coef[j] > 0.0) {
        c
    } else {
        points
            .iter()
            .map(|p| p[2] - coef[0] * p[0] - coef[1] * p[1])
            .sum::<f64>()
            / points.len() as f64
    };
    Some(LinkModel {
        alpha_s: (c / 2.0).max(0.0),
        message_s: coef[1],
        beta_s_per_byte: coef[0],
    })
}

/// The constant and the coefficients of the columns `free` of `points` ([bytes, messages + 1,
/// round trip]), the others fixed at `defaults`; None when they are not determined.
fn fit_free(points: &[[f64; 3]], free: &[usize], defaults: [f64; 2]) -> Option<(f64, Vec<f64>)> {
    let y: Vec<f64> = points
        .iter()
        .map(|p| {
            p[2] - (0..2)
                .filter(|j| !free.contains(j))
                .map(|j| defaults[j] * p[j])
                .sum::<f64>()
        })
        .collect();
    let xs: Vec<Vec<f64>> = points
        .iter()
        .map(|p| free.iter().map(|&j| p[j]).collect())
        .collect();
    least_squares(&xs, &y)
}

/// Least squares y ≈ c + Σ θ_j x_j (x centred, normal equations by elimination); None when the
/// normal equations are singular (the columns do not determine θ).
fn least_squares(xs: &[Vec<f64>], y: &[f64]) -> Option<(f64, Vec<f64>)> {
    let m = y.len() as f64;
    let k = xs.first().map_or(0, Vec::len);
    let my = y.iter().sum::<f64>() / m;
    let mx: Vec<f64> = (0..k)
        .map(|j| xs.iter().map(|x| x[j]).sum::<f64>() / m)
        .collect();
    // Augmented normal equations [S | s_xy] of the centred columns.
    let mut a: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            let mut row: Vec<f64> = (0..k)
                .map(|j| {
                    xs.iter()
                        .map(|x| (x[i] - mx[i]) * (x[j] - mx[j]))
                        .sum::<f64>()
                })
                .collect();
            row.push(
                xs.iter()
                    .zip(y)
                    .map(|(x, yv)| (x[i] - mx[i]) * (yv - my))
                    .sum(),
            );
            row
        })
        .collect();
    let scale: Vec<f64> = (0..k).map(|j| a[j][j].sqrt()).collect();
    for col in 0..k {
        let p = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        a.swap(col, p);
        let piv = a[col][col];
        if piv.is_nan() || piv.abs() <= 1e-9 * scale[col] * scale[col] {
            return None;
        }
        let pivot_row = a[col].clone();
        for (_, row) in a.iter_mut().enumerate().filter(|(r, _)| *r != col) {
            let f = row[col] / piv;
            for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *x -= f * p;
            }
        }
    }
    let theta: Vec<f64> = (0..k).map(|j| a[j][k] / a[j][j]).collect();
    let c = my - theta.iter().zip(&mx).map(|(t, x)| t * x).sum::<f64>();
    Some((c, theta))
}

impl LinkModel {
    /// Seconds from the post of `bytes` of parameters to their arrival at a worker.
    pub fn delivery_s(&self, bytes: f64) -> f64 {
        self.alpha_s + self.beta_s_per_byte * bytes
    }
    /// Seconds rank 0 spends receiving a message of `bytes`.
    pub fn receive_s(&self, bytes: f64) -> f64 {
        self.message_s + self.beta_s_per_byte * bytes
    }
}
