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

/// One chunk of a worker's work: for every held partition j, its q-th sub-partition, stacked.
#[derive(Debug)]
pub struct Chunk {
    /// Rows of this chunk.
    pub data: Dataset,
    /// Per-row coefficient: rows of partition j get b_ij.
    pub row_weights: Array1<f64>,
    /// (partition, local row range inside `data`) for every held partition.
    pub parts: Vec<(usize, Range<usize>)>,
}

/// What one worker holds: its partitions, split into chunks (one chunk unless `--chunks`).
///
/// Chunk q holds the q-th of C balanced sub-ranges of every held partition, so each chunk is a
/// coded message of the same code over sub-partitions: rank 0 decodes every chunk from the
/// workers that delivered it and sums, exactly once every chunk's responder set is decodable.
/// Worker w processes chunks in the cyclic order w, w+1, …, so the finished part of a slow
/// worker's work covers different sub-partitions on different workers (partial stragglers).
#[derive(Debug)]
pub struct Shard {
    pub chunks: Vec<Chunk>,
}

impl Shard {
    /// Split worker `w`'s stacked rows (`ranges[p]` = rows of its p-th held partition) into
    /// `n_chunks` chunks. Every partition needs at least `n_chunks` rows.
    pub fn new(
        code: &dyn GradientCode,
        w: usize,
        data: Dataset,
        ranges: Vec<Range<usize>>,
        n_chunks: usize,
    ) -> Result<Shard, crate::data::DataError> {
        let parts = code.assignment(w);
        let coefs = code.coefficients(w);
        if n_chunks <= 1 {
            let mut row_weights = Array1::zeros(data.n_rows());
            for (r, &c) in ranges.iter().zip(coefs) {
                row_weights.slice_mut(ndarray::s![r.clone()]).fill(c);
            }
            let parts = parts.iter().copied().zip(ranges).collect();
            return Ok(Shard {
                chunks: vec![Chunk {
                    data,
                    row_weights,
                    parts,
                }],
            });
        }
        let splits: Vec<Vec<Range<usize>>> = ranges
            .iter()
            .map(|r| {
                crate::data::partition_ranges(r.len(), n_chunks).map(|sub| {
                    sub.into_iter()
                        .map(|s| r.start + s.start..r.start + s.end)
                        .collect()
                })
            })
            .collect::<Result<_, _>>()?;
        let mut chunks = Vec::with_capacity(n_chunks);
        for q in 0..n_chunks {
            let pieces: Vec<Dataset> = splits
                .iter()
                .map(|sub| data.slice_rows(sub[q].clone()))
                .collect();
            let xs: Vec<&crate::data::Features> = pieces.iter().map(|d| &d.x).collect();
            let x = crate::data::Features::vstack(&xs)?;
            let ys: Vec<ndarray::ArrayView1<f64>> = pieces.iter().map(|d| d.y.view()).collect();
            let y = ndarray::concatenate(ndarray::Axis(0), &ys)
                .map_err(|e| crate::data::DataError::Invalid(e.to_string()))?;
            let mut row_weights = Array1::zeros(y.len());
            let mut local = Vec::with_capacity(pieces.len());
            let mut at = 0;
            for ((piece, &j), &c) in pieces.iter().zip(parts).zip(coefs) {
                let len = piece.n_rows();
                row_weights.slice_mut(ndarray::s![at..at + len]).fill(c);
                local.push((j, at..at + len));
                at += len;
            }
            chunks.push(Chunk {
                data: Dataset {
                    x,
                    y,
                    task: data.task,
                },
                row_weights,
                parts: local,
            });
        }
        Ok(Shard { chunks })
    }

    /// The order in which worker `w` processes its chunks.
    pub fn order(&self, w: usize) -> impl Iterator<Item = usize> + '_ {
        let c = self.chunks.len();
        (0..c).map(move |t| (w + t) % c)
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
    // Two buffers per chunk: a chunk's next message never waits for its previous send.
    let mut bufs: Vec<[SendBuf; 2]> = shard
        .chunks
        .iter()
        .map(|_| [SendBuf::new(msg_len), SendBuf::new(msg_len)])
        .collect();
    let mut which = vec![0usize; shard.chunks.len()];
    let mut partial_bufs: Vec<SendBuf> = Vec::new();
    let mut ws = Workspace::default();
    let mut summary = WorkerSummary::default();
    let protocol = |reason: String| CommError::Protocol { rank: 0, reason };
    // This worker's chunk order, fixed for the run.
    let order: Vec<usize> = shard.order(urank - 1).collect();
    // Test-only fault plan (crate::faults); None unless GRADCODE_FAULT_PLAN is set.
    let faults = crate::faults::active();
    let mut fired = vec![false; faults.map_or(0, |p| p.faults.len())];
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
                let due = faults.map_or_else(Vec::new, |p| p.due(urank, it, &mut fired));
                let ms: u64 = due
                    .iter()
                    .map(|f| match f {
                        crate::faults::WorkerFault::Delay(ms) => *ms,
                        _ => 0,
                    })
                    .sum();
                if ms > 0 {
                    log::warn!("[rank {rank}] fault plan: {ms} ms delay at iteration {it}");
                    std::thread::sleep(Duration::from_millis(ms));
                }
                let w = ArrayView1::from(&params[HEADER_LEN..HEADER_LEN + dim]);
                let n_chunks = shard.chunks.len();
                // The injected delay is spread over the chunks, so a slow worker still finishes
                // its first chunks early (with one chunk: compute, then the whole delay).
                let delay = schedule.delay_s(it, urank) / n_chunks as f64;
                let factor = schedule.slow_factor(urank);
                let (mut compute_total, mut injected_total) = (0.0, 0.0);
                let mut abandoned = false;
                for (t, &q) in order.iter().enumerate() {
                    // Newer parameters waiting (rank 0 decoded this iteration without us): skip the
                    // rest, telling rank 0 with a header-only message per skipped chunk.
                    if t > 0 && root.immediate_probe_with_tag(TAG_PARAMS).is_some() {
                        for &skip in &order[t..] {
                            let mut marker = [0.0; HEADER_LEN];
                            Header {
                                kind: Kind::Grad,
                                iteration: it,
                                rank: urank,
                                part: skip,
                                len: 0,
                                ..Header::new(Kind::Grad)
                            }
                            .write(&mut marker);
                            root.send_with_tag(&marker[..], Kind::Grad.tag());
                            summary.messages_sent += 1;
                        }
                        abandoned = true;
                        break;
                    }
                    let chunk = &shard.chunks[q];
                    let t = Instant::now();
                    let slot = &mut bufs[q][which[q]];
                    let buf = slot.write();
                    let (head, rest) = buf.split_at_mut(HEADER_LEN);
                    let (g, loss) = rest.split_at_mut(dim);
                    loss[0] = model.gradient_into(
                        w,
                        &chunk.data.x,
                        chunk.data.y.view(),
                        Some(chunk.row_weights.view()),
                        &mut ws,
                        ArrayViewMut1::from(&mut *g),
                    );
                    let compute_s = t.elapsed().as_secs_f64();
                    let spun = (factor - 1.0) * compute_s;
                    spin(spun);
                    if delay > 0.0 {
                        std::thread::sleep(Duration::from_secs_f64(delay));
                    }
                    compute_total += compute_s;
                    injected_total += spun + delay;
                    Header {
                        kind: Kind::Grad,
                        iteration: it,
                        rank: urank,
                        compute_s: compute_total,
                        injected_s: injected_total,
                        part: q,
                        len: dim + 1,
                    }
                    .write(head);
                    let mut send_len = msg_len;
                    for &f in &due {
                        send_len = crate::faults::corrupt_message(f, it, head, g, send_len);
                    }
                    slot.post(world, 0, Kind::Grad.tag(), send_len);
                    which[q] ^= 1;
                    summary.messages_sent += 1;
                }
                summary.compute_s += compute_total;
                if abandoned {
                    continue;
                }
                summary.iterations_computed += 1;
                if h.part == 1 {
                    // First-iteration validation: the uncoded gradient of every held
                    // sub-partition (partition j, chunk q), tagged part = j * chunks + q.
                    for (q, chunk) in shard.chunks.iter().enumerate() {
                        for (j, range) in &chunk.parts {
                            let x = chunk.data.x.slice_rows(range.clone());
                            let y = chunk.data.y.slice(ndarray::s![range.clone()]);
                            let mut pb = SendBuf::new(msg_len);
                            let buf = pb.write();
                            let (head, rest) = buf.split_at_mut(HEADER_LEN);
                            let (g, loss) = rest.split_at_mut(dim);
                            loss[0] = model.gradient_into(
                                w,
                                &x,
                                y,
                                None,
                                &mut ws,
                                ArrayViewMut1::from(g),
                            );
                            Header {
                                kind: Kind::Partial,
                                iteration: it,
                                rank: urank,
                                part: j * n_chunks + q,
                                len: dim + 1,
                                ..Header::new(Kind::Partial)
                            }
                            .write(head);
                            pb.post(world, 0, Kind::Partial.tag(), msg_len);
                            partial_bufs.push(pb);
                            summary.messages_sent += 1;
                        }
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
                for b in bufs.iter_mut().flatten().chain(partial_bufs.iter_mut()) {
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
