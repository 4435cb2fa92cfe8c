//! The worker loop (ranks 1..=n): take the newest parameters, compute the coded gradient of the
//! held partitions in one pass over the stacked rows, send it to rank 0 with a nonblocking send.
//!
//! A worker blocks in a matched probe on rank 0 (blocking waits are the cheapest on an
//! oversubscribed node, GUIDE §2). It never runs ahead of the coordinator: rank 0 hands it new
//! parameters only after it has reported. Injected stragglers (seeded by iteration and rank) slow
//! or delay it after computing, or make it stop answering (`fail:RANK@ITER`) while staying alive.
//! On STOP it reports how many messages it sent, then completes its pending sends (rank 0 drains
//! them) and returns.

use std::ops::Range;
use std::time::{Duration, Instant};

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

use crate::coding::GradientCode;
use crate::comm::mpi::{count_f64, receive_checked, SendBuf};
use crate::comm::protocol::{Header, Kind, HEADER_LEN, TAG_PARAMS, TAG_STOP};
use crate::comm::CommError;
use crate::data::Dataset;
use crate::model::{Model, Workspace};
use crate::straggler::StragglerSchedule;

/// What one worker holds.
#[derive(Debug)]
pub struct Shard {
    /// Rows of the held partitions, stacked in the order of the code's assignment.
    pub data: Dataset,
    /// Local row range of each held partition inside `data`.
    pub ranges: Vec<Range<usize>>,
    /// Partition index of each range.
    pub parts: Vec<usize>,
    /// Per-row coefficient: row r of partition j gets b_ij.
    pub row_weights: Array1<f64>,
}

impl Shard {
    /// Build the shard of worker `w` (0-based) from its stacked rows.
    pub fn new(
        code: &dyn GradientCode,
        w: usize,
        data: Dataset,
        ranges: Vec<Range<usize>>,
    ) -> Shard {
        let mut row_weights = Array1::zeros(data.n_rows());
        for (r, &c) in ranges.iter().zip(code.coefficients(w)) {
            row_weights.slice_mut(ndarray::s![r.clone()]).fill(c);
        }
        Shard {
            data,
            ranges,
            parts: code.assignment(w).to_vec(),
            row_weights,
        }
    }
}

/// What a worker did, for its log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerSummary {
    pub messages_sent: u64,
    pub iterations_computed: u64,
    pub compute_s: f64,
    /// Exit code rank 0 sent with STOP (so every rank exits with the job's status).
    pub stop_code: i32,
}

/// Busy-spin for `secs` (CPU contention, unlike a sleep).
fn spin(secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Run the worker loop until STOP.
pub fn run(
    world: &SimpleCommunicator,
    model: &dyn Model,
    shard: &Shard,
    schedule: &mut StragglerSchedule,
) -> Result<WorkerSummary, CommError> {
    let rank = world.rank();
    let urank = rank as usize;
    let dim = model.dim();
    let msg_len = HEADER_LEN + dim + 1;
    let root = world.process_at_rank(0);
    let mut params = vec![0.0; msg_len];
    let mut scratch = Vec::new();
    let mut bufs = [SendBuf::new(msg_len), SendBuf::new(msg_len)];
    let mut partial_bufs: Vec<SendBuf> = Vec::new();
    let mut which = 0;
    let mut ws = Workspace::default();
    let mut summary = WorkerSummary::default();
    let protocol = |reason: String| CommError::Protocol { rank: 0, reason };
    loop {
        let (msg, status) = root.matched_probe();
        match status.tag() {
            TAG_PARAMS => {
                let (n, ok) = receive_checked(msg, &status, &mut params, &mut scratch);
                if !ok || n != HEADER_LEN + dim {
                    return Err(protocol(format!(
                        "parameter message of {n} values, expected {}",
                        HEADER_LEN + dim
                    )));
                }
                let h = Header::parse(&params[..n])
                    .map_err(|e| protocol(format!("parameter header: {e}")))?;
                if h.kind != Kind::Params {
                    return Err(protocol(format!("expected parameters, got {:?}", h.kind)));
                }
                let it = h.iteration;
                if schedule.failed(it, urank) {
                    log::debug!("[rank {rank}] iteration {it}: injected failure, not answering");
                    continue;
                }
                let w = ArrayView1::from(&params[HEADER_LEN..HEADER_LEN + dim]);
                let t = Instant::now();
                let buf = bufs[which].write();
                let (head, rest) = buf.split_at_mut(HEADER_LEN);
                let (g, loss) = rest.split_at_mut(dim);
                loss[0] = model.gradient_into(
                    w,
                    &shard.data.x,
                    shard.data.y.view(),
                    Some(shard.row_weights.view()),
                    &mut ws,
                    ArrayViewMut1::from(g),
                );
                let compute_s = t.elapsed().as_secs_f64();
                let factor = schedule.slow_factor(urank);
                let spun = (factor - 1.0) * compute_s;
                spin(spun);
                let delay = schedule.delay_s(it, urank);
                if delay > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(delay));
                }
                let header = Header {
                    kind: Kind::Grad,
                    iteration: it,
                    rank: urank,
                    compute_s,
                    injected_s: spun + delay,
                    part: 0,
                    len: dim + 1,
                };
                header.write(head);
                bufs[which].post(world, 0, Kind::Grad.tag(), msg_len);
                which ^= 1;
                summary.messages_sent += 1;
                summary.iterations_computed += 1;
                summary.compute_s += compute_s;
                if h.part == 1 {
                    // First-iteration validation: the uncoded gradient of every held partition.
                    if partial_bufs.is_empty() {
                        partial_bufs = shard.ranges.iter().map(|_| SendBuf::new(msg_len)).collect();
                    }
                    for ((range, &j), pb) in shard
                        .ranges
                        .iter()
                        .zip(&shard.parts)
                        .zip(partial_bufs.iter_mut())
                    {
                        let x = shard.data.x.slice_rows(range.clone());
                        let y = shard.data.y.slice(ndarray::s![range.clone()]);
                        let buf = pb.write();
                        let (head, rest) = buf.split_at_mut(HEADER_LEN);
                        let (g, loss) = rest.split_at_mut(dim);
                        loss[0] =
                            model.gradient_into(w, &x, y, None, &mut ws, ArrayViewMut1::from(g));
                        Header {
                            kind: Kind::Partial,
                            iteration: it,
                            rank: urank,
                            part: j,
                            len: dim + 1,
                            ..Header::new(Kind::Partial)
                        }
                        .write(head);
                        pb.post(world, 0, Kind::Partial.tag(), msg_len);
                        summary.messages_sent += 1;
                    }
                }
            }
            TAG_STOP => {
                let (n, ok) = receive_checked(msg, &status, &mut params, &mut scratch);
                if ok {
                    if let Ok(h) = Header::parse(&params[..n]) {
                        summary.stop_code = i32::try_from(h.iteration).unwrap_or(1);
                    }
                }
                let mut ack = vec![0.0; HEADER_LEN];
                Header {
                    iteration: summary.messages_sent,
                    rank: urank,
                    ..Header::new(Kind::Ack)
                }
                .write(&mut ack);
                root.send_with_tag(&ack[..], Kind::Ack.tag());
                for b in bufs.iter_mut().chain(partial_bufs.iter_mut()) {
                    b.wait();
                }
                return Ok(summary);
            }
            tag => {
                let n = count_f64(&status);
                let _ = receive_checked(msg, &status, &mut params, &mut scratch);
                return Err(protocol(format!(
                    "unexpected message with tag {tag} ({n} values)"
                )));
            }
        }
    }
}
