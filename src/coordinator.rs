//! Rank 0: post parameters → collect coded gradients until the responders are decodable or the
//! deadline passes → decode → step → record → checkpoint; then STOP, reconcile message counts,
//! drain, and report (GUIDE §2, §4).
//!
//! Protocol rules kept here:
//! - Parameters go only to idle workers (those that have reported on their last iteration), from
//!   a ring of buffers, one per parameter version, shared by all destinations; a buffer is reused
//!   only when every send from it has completed. A worker still busy with an old iteration is
//!   handed the current parameters as soon as its late message arrives.
//! - Rank 0 polls with a matched probe (and a short sleep, so that an oversubscribed node is not
//!   starved) and receives every message: late ones are drained and counted, never used; invalid
//!   ones (header, sender, length, iteration, non-finite values) are erasures, counted and logged.
//! - No collective after start-up; no send is ever cancelled.
//!
//! The first iteration of every run is validated outside the timed path: workers also send the
//! uncoded gradient of each partition they hold, and the decoded gradient is compared with the
//! exact one (PASSED when exact to 1e-8, or, for an approximate decoding, within the guaranteed
//! bound err(F)·‖G‖_F).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mpi::point_to_point::{Message, Status};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use ndarray::{Array1, ArrayView1};

use crate::cli::OnDeadline;
use crate::coding::{Decoder, GradientCode};
use crate::comm::mpi::{receive_checked, SendBuf};
use crate::comm::protocol::{
    payload_is_finite, Header, Kind, HEADER_LEN, TAG_ACK, TAG_GRAD, TAG_PARTIAL,
};
use crate::comm::CommError;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::results::{self, AttrValue, FinalRecord, IterationRecord, RunWriter};
use crate::model::{self, Evaluation, Model, Workspace};
use crate::optim::Optimizer;
use crate::straggler::StragglerSchedule;

/// Set by SIGUSR1 / SIGTERM: checkpoint at the next iteration boundary and stop.
pub static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every iteration ran and every worker was reconciled at shutdown.
    Complete,
    /// Every iteration ran but some worker never answered the STOP (named in the log and file).
    Degraded,
    /// Stopped by a signal after writing a checkpoint; resume with --resume.
    Interrupted,
    /// A fatal error stopped the run.
    Failed,
}

impl RunStatus {
    /// The `status` attribute value.
    pub fn name(&self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Degraded => "degraded",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
    /// The process exit code (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunStatus::Complete => 0,
            RunStatus::Failed => 1,
            RunStatus::Degraded => 3,
            RunStatus::Interrupted => 75,
        }
    }
}

/// What the coordinator hands back to the caller.
#[derive(Debug)]
pub struct Outcome {
    pub status: RunStatus,
    /// Workers (ranks) that were not reconciled at shutdown; the job must abort when non-empty.
    pub unreconciled: Vec<usize>,
    /// The error that stopped the run, if any.
    pub error: Option<Error>,
}

/// Everything rank 0 needs.
pub struct Setup<'a> {
    pub world: &'a SimpleCommunicator,
    pub cfg: &'a RunConfig,
    pub model: &'a dyn Model,
    pub code: Box<dyn GradientCode>,
    pub n_rows: usize,
    pub test: Option<Dataset>,
    pub writer: RunWriter,
    pub resume_from: Option<Checkpoint>,
}

/// State of the collection for the current iteration.
struct Collection {
    iteration: u64,
    t0: Instant,
    collecting: bool,
    /// Responders per chunk (sorted worker indices).
    responders: Vec<Vec<usize>>,
    /// Chunks each worker delivered on time.
    chunks_in: Vec<usize>,
    /// (finish time from the header, worker, chunk) of every on-time message, for the oracle.
    finish: Vec<(f64, usize, usize)>,
    arrival_s: Vec<f64>,
    compute_s: Vec<f64>,
    injected_s: Vec<f64>,
    post_offset: Vec<f64>,
    /// Per worker: 0 when its response is fresh, 1 when it is a gradient of the previous
    /// iteration folded in (`--reuse-stale`), NaN when none arrived.
    stale_age: Vec<f64>,
    /// Responses of the previous iteration folded in.
    stale: u32,
    late: u32,
    rejected: u32,
    bytes: f64,
}

impl Collection {
    fn new(n: usize, chunks: usize) -> Self {
        Collection {
            iteration: 0,
            t0: Instant::now(),
            collecting: false,
            responders: vec![Vec::with_capacity(n); chunks],
            chunks_in: vec![0; n],
            finish: Vec::with_capacity(n * chunks),
            arrival_s: vec![f64::NAN; n],
            compute_s: vec![f64::NAN; n],
            injected_s: vec![f64::NAN; n],
            post_offset: vec![f64::NAN; n],
            stale_age: vec![f64::NAN; n],
            stale: 0,
            late: 0,
            rejected: 0,
            bytes: 0.0,
        }
    }
    fn reset(&mut self, iteration: u64) {
        self.iteration = iteration;
        self.t0 = Instant::now();
        self.collecting = true;
        self.responders.iter_mut().for_each(Vec::clear);
        self.chunks_in.fill(0);
        self.finish.clear();
        for v in [
            &mut self.arrival_s,
            &mut self.compute_s,
            &mut self.injected_s,
            &mut self.post_offset,
            &mut self.stale_age,
        ] {
            v.fill(f64::NAN);
        }
        self.stale = 0;
        self.late = 0;
        self.rejected = 0;
        self.bytes = 0.0;
    }
}

/// Per-worker totals for the summary table.
#[derive(Debug, Clone, Default)]
struct WorkerStats {
    on_time: u64,
    late: u64,
    rejected: u64,
    arrival_sum: f64,
    arrivals: Vec<f64>,
}

struct Coordinator<'a> {
    world: &'a SimpleCommunicator,
    cfg: &'a RunConfig,
    decoder: Decoder,
    n: usize,
    dim: usize,
    chunks: usize,
    /// Per worker, the iterations it was given and the chunk messages still expected for each,
    /// oldest first (at most two: with chunks, a busy worker may be handed the newest parameters
    /// and abandons the rest of its old iteration).
    pending: Vec<std::collections::VecDeque<(u64, usize)>>,
    /// Receive buffers [worker][chunk].
    recv: Vec<Vec<Vec<f64>>>,
    partial_buf: Vec<f64>,
    scratch: Vec<f64>,
    received: Vec<u64>,
    acked: Vec<Option<u64>>,
    ring: Vec<SendBuf>,
    current_slot: usize,
    cur: Collection,
    partials: Vec<Option<Array1<f64>>>,
    /// err(F_q) of the last decoding, per chunk (NaN: nobody delivered that chunk). Reused every
    /// iteration: the decode path allocates nothing once the decoder cache is warm.
    chunk_residual: Vec<f64>,
    /// Scratch of [`Coordinator::oracle`]: the finished workers per chunk.
    oracle_sets: Vec<Vec<usize>>,
    validation_iteration: Option<u64>,
    stats: Vec<WorkerStats>,
}

fn sleep_poll() {
    std::thread::sleep(Duration::from_micros(50));
}

impl<'a> Coordinator<'a> {
    fn protocol(&self, rank: i32, reason: String) -> CommError {
        CommError::Protocol { rank, reason }
    }

    /// Post the current parameters (ring slot `current_slot`) to worker `w`.
    fn post_to(&mut self, w: usize) {
        let it = self.cur.iteration;
        self.ring[self.current_slot].post(
            self.world,
            (w + 1) as i32,
            Kind::Params.tag(),
            HEADER_LEN + self.dim,
        );
        self.pending[w].push_back((it, self.chunks));
        self.cur.post_offset[w] = self.cur.t0.elapsed().as_secs_f64();
    }

    /// Start iteration `t` at `point`: fill a free ring slot and post to every idle worker.
    fn begin(&mut self, t: u64, point: ArrayView1<f64>, validate: bool) {
        self.cur.reset(t);
        let slot = match self.ring.iter_mut().position(|b| b.is_free()) {
            Some(i) => i,
            None => {
                self.ring.push(SendBuf::new(HEADER_LEN + self.dim));
                log::debug!(
                    "[rank 0] parameter ring grew to {} buffers",
                    self.ring.len()
                );
                self.ring.len() - 1
            }
        };
        self.current_slot = slot;
        let buf = self.ring[slot].write();
        Header {
            iteration: t,
            part: usize::from(validate),
            len: self.dim,
            ..Header::new(Kind::Params)
        }
        .write(buf);
        for (dst, &v) in buf[HEADER_LEN..].iter_mut().zip(point.iter()) {
            *dst = v;
        }
        for w in 0..self.n {
            // Idle workers get the parameters; with chunks, so do workers still busy with an older
            // iteration (they switch at their next chunk boundary), but never two ahead.
            let busy = self.pending[w].len();
            if busy == 0 || (self.chunks > 1 && busy == 1) {
                self.post_to(w);
            }
        }
    }

    /// Receive every message that has arrived.
    fn poll(&mut self) -> Result<bool> {
        let mut any = false;
        while let Some((msg, status)) = self.world.any_process().immediate_matched_probe() {
            self.handle(msg, status)?;
            any = true;
        }
        Ok(any)
    }

    fn handle(&mut self, msg: Message, status: Status) -> Result<()> {
        let src = status.source_rank();
        if src < 1 || src as usize > self.n {
            receive_checked(msg, &status, &mut [], &mut self.scratch);
            return Err(self
                .protocol(src, "message from a rank that is not a worker".into())
                .into());
        }
        let w = src as usize - 1;
        match status.tag() {
            TAG_GRAD => {
                // A worker's chunks of one iteration arrive in its processing order (MPI does not
                // reorder messages between two ranks), so the expected chunk is known and the
                // message lands directly in its buffer.
                let front = self.pending[w].front().copied();
                let q = front.map_or(0, |(_, rem)| {
                    (w + self.chunks - rem.min(self.chunks)) % self.chunks
                });
                let (len, ok) =
                    receive_checked(msg, &status, &mut self.recv[w][q], &mut self.scratch);
                self.received[w] += 1;
                self.cur.bytes += (len * 8) as f64;
                let was = front.map(|(it, _)| it);
                if let Some(f) = self.pending[w].front_mut() {
                    f.1 -= 1;
                    if f.1 == 0 {
                        self.pending[w].pop_front();
                    }
                }
                let buf = if ok {
                    &self.recv[w][q][..len]
                } else {
                    &self.scratch[..len]
                };
                let verdict = match Header::parse(buf) {
                    Err(e) => Err(e.to_string()),
                    Ok(h) if h.kind != Kind::Grad => {
                        Err(format!("kind {:?} on the gradient tag", h.kind))
                    }
                    Ok(h) if h.rank != src as usize => Err(format!("header names rank {}", h.rank)),
                    Ok(h) if h.len != self.dim + 1 && h.len != 0 => Err(format!(
                        "payload of {} values, expected {}",
                        h.len,
                        self.dim + 1
                    )),
                    Ok(h) if Some(h.iteration) != was => Err(format!(
                        "iteration {} but the worker was given {:?}",
                        h.iteration, was
                    )),
                    Ok(h) if h.part != q => {
                        Err(format!("chunk {} where chunk {q} was due", h.part))
                    }
                    Ok(h)
                        if h.len == 0
                            && self.cur.collecting
                            && h.iteration == self.cur.iteration =>
                    {
                        Err("an abandoned chunk for the iteration being collected".into())
                    }
                    Ok(_) if !payload_is_finite(&buf[HEADER_LEN..]) => {
                        Err("non-finite values in the payload".into())
                    }
                    Ok(h) => Ok(h),
                };
                match verdict {
                    Ok(h) if h.len == 0 => {
                        // The worker switched to newer parameters and skipped this chunk.
                        log::trace!(
                            "[rank 0] rank {src} abandoned chunk {q} of iteration {}",
                            h.iteration
                        );
                    }
                    Err(reason) => {
                        // A folded-in stale response may have been overwritten: drop it.
                        self.drop_stale(w);
                        self.cur.rejected += 1;
                        self.stats[w].rejected += 1;
                        log::warn!(
                            "[rank 0] iteration {}: rejected message from rank {src}: {reason}",
                            self.cur.iteration
                        );
                    }
                    Ok(h) if self.cur.collecting && h.iteration == self.cur.iteration => {
                        // The fresh response replaces a stale one folded in for this worker.
                        self.drop_stale(w);
                        self.cur.stale_age[w] = 0.0;
                        let set = &mut self.cur.responders[q];
                        if let Err(pos) = set.binary_search(&w) {
                            set.insert(pos, w);
                        }
                        let a = self.cur.t0.elapsed().as_secs_f64();
                        self.cur.chunks_in[w] += 1;
                        self.cur.arrival_s[w] = a;
                        self.cur.compute_s[w] = h.compute_s;
                        self.cur.injected_s[w] = h.injected_s;
                        self.cur.finish.push((
                            self.cur.post_offset[w] + h.compute_s + h.injected_s,
                            w,
                            q,
                        ));
                        if self.cur.chunks_in[w] == self.chunks {
                            self.stats[w].on_time += 1;
                            self.stats[w].arrival_sum += a;
                            self.stats[w].arrivals.push(a);
                        }
                    }
                    Ok(h) if self.reusable(w, h.iteration) => {
                        // --reuse-stale: one iteration late, no fresh response from this worker
                        // yet; its coded gradient stands in for the missing one (SAG-style).
                        let set = &mut self.cur.responders[0];
                        if let Err(pos) = set.binary_search(&w) {
                            set.insert(pos, w);
                        }
                        self.cur.chunks_in[w] = 1;
                        self.cur.arrival_s[w] = self.cur.t0.elapsed().as_secs_f64();
                        self.cur.compute_s[w] = h.compute_s;
                        self.cur.injected_s[w] = h.injected_s;
                        self.cur.stale_age[w] = 1.0;
                        self.cur.stale += 1;
                        log::debug!(
                            "[rank 0] iteration {}: folded in rank {src}'s gradient of iteration {}",
                            self.cur.iteration,
                            h.iteration
                        );
                        if self.pending[w].is_empty() {
                            self.post_to(w);
                        }
                    }
                    Ok(h) => {
                        self.cur.late += 1;
                        self.stats[w].late += 1;
                        log::debug!(
                            "[rank 0] late message from rank {src} for iteration {} (now {})",
                            h.iteration,
                            self.cur.iteration
                        );
                        if self.cur.collecting && self.pending[w].is_empty() {
                            self.post_to(w);
                        }
                    }
                }
            }
            TAG_PARTIAL => {
                let (len, ok) =
                    receive_checked(msg, &status, &mut self.partial_buf, &mut self.scratch);
                self.received[w] += 1;
                let buf = if ok {
                    &self.partial_buf[..len]
                } else {
                    &self.scratch[..len]
                };
                match Header::parse(buf) {
                    Ok(h)
                        if h.kind == Kind::Partial
                            && Some(h.iteration) == self.validation_iteration
                            && h.len == self.dim + 1
                            && h.part < self.partials.len()
                            && payload_is_finite(&buf[HEADER_LEN..]) =>
                    {
                        if self.partials[h.part].is_none() {
                            self.partials[h.part] = Some(Array1::from(buf[HEADER_LEN..].to_vec()));
                        }
                    }
                    Ok(h)
                        if h.kind == Kind::Partial
                            && Some(h.iteration) != self.validation_iteration =>
                    {
                        log::debug!("[rank 0] drained a late validation message from rank {src}");
                    }
                    _ => {
                        log::warn!("[rank 0] ignored an invalid validation message from rank {src}")
                    }
                }
            }
            TAG_ACK => {
                let mut ack = [0.0; HEADER_LEN];
                let (len, ok) = receive_checked(msg, &status, &mut ack, &mut self.scratch);
                match Header::parse(if ok {
                    &ack[..len]
                } else {
                    &self.scratch[..len]
                }) {
                    Ok(h) if h.kind == Kind::Ack => self.acked[w] = Some(h.iteration),
                    _ => {
                        return Err(self
                            .protocol(src, "malformed STOP acknowledgement".into())
                            .into())
                    }
                }
            }
            tag => {
                receive_checked(msg, &status, &mut [], &mut self.scratch);
                self.received[w] += 1;
                self.cur.rejected += 1;
                log::warn!("[rank 0] rejected a message with unknown tag {tag} from rank {src}");
            }
        }
        Ok(())
    }

    /// Whether a message of `iteration` from worker `w` may stand in for its missing response to
    /// the iteration being collected (`--reuse-stale`: exactly one iteration late, one message
    /// per iteration, not the validated iteration, nothing from `w` yet).
    fn reusable(&self, w: usize, iteration: u64) -> bool {
        self.cfg.reuse_stale
            && self.chunks == 1
            && self.cur.collecting
            && iteration + 1 == self.cur.iteration
            && Some(self.cur.iteration) != self.validation_iteration
            && self.cur.chunks_in[w] == 0
    }

    /// Remove worker `w`'s folded-in stale response, if any, from the iteration being collected.
    fn drop_stale(&mut self, w: usize) {
        if self.cur.stale_age[w] == 1.0 {
            if let Ok(pos) = self.cur.responders[0].binary_search(&w) {
                self.cur.responders[0].remove(pos);
            }
            self.cur.chunks_in[w] = 0;
            self.cur.stale_age[w] = f64::NAN;
            self.cur.stale -= 1;
        }
    }

    /// Collect until decodable or the deadline policy says stop. Returns whether decodable, or
    /// `None` when a signal (SIGTERM/SIGUSR1) arrived first: the iteration is abandoned so the
    /// checkpoint is written now, not after a wait of up to `--max-wait-ms` (Slurm sends SIGKILL
    /// `KillWait` seconds after SIGTERM). `idle` runs while no message is waiting (rank 0 keeps
    /// the results file within its flush interval during a long wait).
    fn collect(&mut self, idle: &mut dyn FnMut() -> Result<()>) -> Result<Option<bool>> {
        let deadline = Duration::from_secs_f64(self.cfg.deadline_ms / 1e3);
        let hard = Duration::from_secs_f64(self.cfg.max_wait_ms / 1e3);
        let mut warned = false;
        loop {
            let got = self.poll()?;
            if self.decodable() {
                return Ok(Some(true));
            }
            if INTERRUPT.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let waited = self.cur.t0.elapsed();
            if waited >= deadline {
                match self.cfg.on_deadline {
                    OnDeadline::BestEffort => return Ok(Some(false)),
                    OnDeadline::Wait if waited >= hard => {
                        let silent: Vec<usize> = (0..self.n)
                            .filter(|&w| self.cur.chunks_in[w] < self.chunks)
                            .map(|w| w + 1)
                            .collect();
                        return Err(CommError::Timeout {
                            iteration: self.cur.iteration,
                            waited_ms: waited.as_secs_f64() * 1e3,
                            have: self.complete_responders(),
                            n: self.n,
                            silent,
                        }
                        .into());
                    }
                    OnDeadline::Wait if !warned => {
                        warned = true;
                        log::debug!(
                            "[rank 0] iteration {}: deadline passed with {} responders; waiting (at most {} ms)",
                            self.cur.iteration,
                            self.complete_responders(),
                            self.cfg.max_wait_ms
                        );
                    }
                    OnDeadline::Wait => {}
                }
            }
            if !got {
                idle()?;
                sleep_poll();
            }
        }
    }

    /// Whether every chunk's responder set is decodable.
    fn decodable(&self) -> bool {
        self.cur
            .responders
            .iter()
            .all(|set| self.decoder.code().is_decodable(set))
    }

    /// Workers whose every chunk arrived on time.
    fn complete_responders(&self) -> usize {
        self.cur
            .chunks_in
            .iter()
            .filter(|&&c| c == self.chunks)
            .count()
    }

    /// The oracle: the earliest moment the workers' own finish times (per chunk) formed a
    /// decodable set for every chunk.
    /// Sorts this iteration's finish times in place and reuses `oracle_sets`: no allocation.
    fn oracle(&mut self) -> f64 {
        let fin = &mut self.cur.finish;
        fin.retain(|(f, _, _)| f.is_finite());
        fin.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sets = &mut self.oracle_sets;
        sets.iter_mut().for_each(Vec::clear);
        for &(f, w, q) in fin.iter() {
            if let Err(p) = sets[q].binary_search(&w) {
                sets[q].insert(p, w);
            }
            if sets.iter().all(|set| self.decoder.code().is_decodable(set)) {
                return f;
            }
        }
        f64::NAN
    }

    /// Decode every chunk from its responders into `gsum` (gradient sum and loss sum); `None`
    /// when nobody answered at all. Weighted sums run in worker order, so the result depends only
    /// on the responder sets, not on arrival order.
    fn decode_into(&mut self, gsum: &mut Array1<f64>) -> Result<Option<Combined>> {
        if self.cur.responders.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        gsum.fill(0.0);
        let k = self.decoder.code().n_partitions();
        let (mut exact, mut res2, mut cond) = (true, 0.0, 0.0f64);
        for q in 0..self.chunks {
            if self.cur.responders[q].is_empty() {
                exact = false;
                res2 += k as f64;
                self.chunk_residual[q] = f64::NAN;
                continue;
            }
            // Borrowed from the cache (no copy of the weights on the hot path).
            let d = self.decoder.decode(&self.cur.responders[q])?;
            for (&w, &a) in d.responders.iter().zip(&d.weights) {
                if a != 0.0 {
                    gsum.scaled_add(a, &ArrayView1::from(&self.recv[w][q][HEADER_LEN..]));
                }
            }
            exact &= d.exact;
            res2 += d.residual * d.residual;
            cond = cond.max(d.condition);
            self.chunk_residual[q] = d.residual;
        }
        Ok(Some(Combined {
            // With a gradient of the previous iteration folded in (--reuse-stale) the decode is
            // exact for the messages, not the gradient at the current parameters.
            exact: exact && self.cur.stale == 0,
            residual: res2.sqrt(),
            condition: cond,
        }))
    }

    /// Stop every worker, reconcile message counts, drain. Returns unreconciled worker ranks.
    fn shutdown(&mut self, exit_code: i32) -> Result<Vec<usize>> {
        self.cur.collecting = false;
        let mut stop = vec![0.0; HEADER_LEN];
        Header {
            iteration: exit_code.max(0) as u64,
            ..Header::new(Kind::Stop)
        }
        .write(&mut stop);
        for w in 0..self.n {
            self.world
                .process_at_rank((w + 1) as i32)
                .send_with_tag(&stop[..], Kind::Stop.tag());
        }
        let bound = Duration::from_secs_f64((self.cfg.max_wait_ms / 1e3).max(10.0));
        let start = Instant::now();
        loop {
            let got = self.poll()?;
            let done = (0..self.n).all(|w| self.acked[w] == Some(self.received[w]));
            if done {
                for b in &mut self.ring {
                    b.wait();
                }
                return Ok(Vec::new());
            }
            if start.elapsed() > bound {
                return Ok((0..self.n)
                    .filter(|&w| self.acked[w] != Some(self.received[w]))
                    .map(|w| w + 1)
                    .collect());
            }
            if !got {
                sleep_poll();
            }
        }
    }
}

/// The decodings of every chunk of one iteration, combined (per-chunk residuals stay in
/// `Coordinator::chunk_residual`).
#[derive(Debug, Clone, Copy)]
struct Combined {
    /// Every chunk decoded exactly.
    exact: bool,
    /// √(Σ_q err(F_q)²).
    residual: f64,
    /// Largest cond(B_F) over the chunks.
    condition: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run rank 0 until the last iteration, a signal or a fatal error.
pub fn run(setup: Setup<'_>) -> Outcome {
    let Setup {
        world,
        cfg,
        model,
        code,
        n_rows,
        test,
        mut writer,
        resume_from,
    } = setup;
    let n = code.n_workers();
    let k = code.n_partitions();
    let dim = model.dim();
    let msg_len = HEADER_LEN + dim + 1;
    let schedule = match StragglerSchedule::parse(&cfg.straggler_model, n, cfg.seed) {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                status: RunStatus::Failed,
                unreconciled: Vec::new(),
                error: Some(Error::Config(e.into())),
            }
        }
    };
    let mut c = Coordinator {
        world,
        cfg,
        decoder: Decoder::new(code),
        n,
        dim,
        chunks: cfg.chunks,
        pending: vec![std::collections::VecDeque::with_capacity(2); n],
        recv: vec![vec![vec![0.0; msg_len]; cfg.chunks]; n],
        partial_buf: vec![0.0; msg_len],
        scratch: Vec::new(),
        received: vec![0; n],
        acked: vec![None; n],
        ring: vec![
            SendBuf::new(HEADER_LEN + dim),
            SendBuf::new(HEADER_LEN + dim),
        ],
        current_slot: 0,
        cur: Collection::new(n, cfg.chunks),
        partials: vec![None; k * cfg.chunks],
        chunk_residual: vec![f64::NAN; cfg.chunks],
        oracle_sets: vec![Vec::with_capacity(n); cfg.chunks],
        validation_iteration: None,
        stats: vec![WorkerStats::default(); n],
    };
    let (first, elapsed0, mut opt) = match &resume_from {
        Some(ck) => (
            ck.iteration,
            ck.elapsed_s,
            Optimizer::from_state(cfg.optimizer, cfg.lr, cfg.momentum, ck.state.clone()),
        ),
        None => (
            0,
            0.0,
            Optimizer::new(cfg.optimizer, cfg.lr, cfg.momentum, Array1::zeros(dim)),
        ),
    };
    let run_start = Instant::now();
    let mut gsum = Array1::<f64>::zeros(dim + 1);
    let mut grad = Array1::<f64>::zeros(dim);
    // The point the gradient was evaluated at (kept for the loss and the step; reused buffer).
    let mut point = Array1::<f64>::zeros(dim);
    // Seconds spent in gradient checks, excluded from the training clock `elapsed_s`.
    let mut checks_s = 0.0;
    let mut ws = Workspace::default();
    let mut validation: Vec<(String, AttrValue)> =
        vec![("check".into(), AttrValue::Str("NOT RUN".into()))];
    let mut iter_times = Vec::new();
    let mut oracle_times = Vec::new();
    let mut status = RunStatus::Complete;
    let mut error: Option<Error> = None;
    let mut all_exact = true;
    let mut last_loss = f64::NAN;
    let mut last_test: Option<Evaluation> = None;

    log::info!(
        "[rank 0] {} workers, code {} (k = {k}, s = {}), model {} (dim {dim}), {} rows; iterations {first}..{}",
        n,
        c.decoder.code().kind(),
        c.decoder.code().max_stragglers(),
        model.kind().name(),
        n_rows,
        cfg.iterations
    );

    if let Some(summary) = c.decoder.code().summary() {
        log::info!("[rank 0] code: {summary}");
    }
    // One record, reset every iteration (the writer copies it).
    let mut rec = IterationRecord::new(n);
    let mut t = first;
    while t < cfg.iterations {
        if INTERRUPT.load(Ordering::SeqCst) {
            if let Err(e) = writer.flush() {
                // No checkpoint ahead of the results: a resume would refuse the pair.
                log::error!("[rank 0] signal received but the results could not be written: {e}");
                error = Some(e.into());
                status = RunStatus::Failed;
                break;
            }
            let ck = Checkpoint {
                iteration: t,
                state: opt.state().clone(),
                config_hash: cfg.trajectory_hash(),
                seed: cfg.seed,
                elapsed_s: elapsed0 + run_start.elapsed().as_secs_f64() - checks_s,
            };
            match checkpoint::save(&cfg.out, &ck) {
                Ok(p) => log::warn!(
                    "[rank 0] signal received: checkpoint at iteration {t} written to {}; stopping",
                    p.display()
                ),
                Err(e) => {
                    log::error!("[rank 0] signal received but the checkpoint failed: {e}");
                    error = Some(e.into());
                }
            }
            status = if error.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Interrupted
            };
            break;
        }
        // The first iteration is always validated; with --check-gradient-every K, every K-th too
        // (the true relative error ‖ĝ − g‖/‖g‖ goes into /metrics/grad_rel_err).
        let validate =
            t == first || (cfg.check_gradient_every > 0 && t % cfg.check_gradient_every == 0);
        if validate {
            c.validation_iteration = Some(t);
            c.partials.iter_mut().for_each(|p| *p = None);
        }
        c.begin(t, opt.point(), validate);
        let decodable = match c.collect(&mut || writer.flush_due().map_err(Error::from)) {
            Ok(Some(d)) => d,
            Ok(None) => {
                // Signalled mid-collection: iteration t is not done; the branch at the top
                // checkpoints at t (its messages are drained as late at shutdown).
                c.cur.collecting = false;
                log::warn!("[rank 0] iteration {t}: signal received while collecting; abandoning the iteration");
                continue;
            }
            Err(e) => {
                log::error!("[rank 0] {e}");
                error = Some(e);
                status = RunStatus::Failed;
                break;
            }
        };
        c.cur.collecting = false;
        let td = Instant::now();
        rec.reset();
        point.assign(&opt.point());
        let decoding = match c.decode_into(&mut gsum) {
            Ok(d) => d,
            Err(e) => {
                error = Some(e);
                status = RunStatus::Failed;
                break;
            }
        };
        if let Some(d) = &decoding {
            model::objective_gradient_into(
                model,
                gsum.slice(ndarray::s![..dim]),
                point.view(),
                n_rows,
                cfg.l2,
                grad.view_mut(),
            );
            opt.step(grad.view());
            all_exact &= d.exact;
        } else {
            all_exact = false;
            log::warn!("[rank 0] iteration {t}: no worker answered by the deadline; step skipped");
        }
        let decode_s = td.elapsed().as_secs_f64();
        let wall_s = c.cur.t0.elapsed().as_secs_f64();
        let oracle_s = if decodable { c.oracle() } else { f64::NAN };
        iter_times.push(wall_s);
        if oracle_s.is_finite() {
            oracle_times.push(oracle_s);
        }
        let train_loss = if decoding.is_some() {
            model::objective(model, gsum[dim], point.view(), n_rows, cfg.l2)
        } else {
            f64::NAN
        };
        last_loss = train_loss;
        rec.set("iteration", t as f64);
        rec.set("wall_s", wall_s);
        rec.set("decode_s", decode_s);
        rec.set("oracle_s", oracle_s);
        rec.set("train_loss", train_loss);
        rec.set("n_responders", c.complete_responders() as f64);
        rec.set("late", f64::from(c.cur.late));
        rec.set("stale", f64::from(c.cur.stale));
        rec.set("rejected", f64::from(c.cur.rejected));
        rec.set("bytes_received", c.cur.bytes);
        if let Some(d) = &decoding {
            rec.set("exact", f64::from(u8::from(d.exact)));
            rec.set("decode_residual", d.residual);
            // The guarantee of approximate codes (expander: (λ/d)·√(ns/(n−s))) for the worst chunk.
            let bound = c
                .cur
                .responders
                .iter()
                .filter_map(|set| c.decoder.code().error_bound(set))
                .fold(f64::NAN, f64::max);
            rec.set("error_bound", bound);
            rec.set("cond", d.condition);
        }
        for w in 0..n {
            rec.per_worker[0][w] = c.cur.arrival_s[w];
            rec.per_worker[1][w] = c.cur.compute_s[w];
            rec.per_worker[3][w] = c.cur.chunks_in[w] as f64;
            rec.per_worker[4][w] = c.cur.stale_age[w];
            // What the worker says it injected for the gradient it sent (a `slow` worker's
            // busy-spin included), not the plan: a worker still busy with an earlier iteration
            // never applied this one's delay. NaN = no message this iteration, inf = failed.
            rec.per_worker[2][w] = if schedule.failed(t, w + 1) {
                f64::INFINITY
            } else {
                c.cur.injected_s[w]
            };
        }
        let last = t + 1 == cfg.iterations;
        if let Some(test) = &test {
            if (cfg.eval_every > 0 && (t + 1) % cfg.eval_every == 0) || last {
                let ev = model.evaluate(opt.params(), &test.x, test.y.view(), &mut ws);
                rec.set_test(&ev);
                last_test = Some(ev);
            }
        }
        // Validation, outside the timed path, with a bounded wait; its time is kept out of
        // `elapsed_s` (the training clock) and recorded in the summary instead.
        if validate {
            let check_start = Instant::now();
            let ghat = gsum.clone();
            let wait = Duration::from_secs_f64(
                (2.0 * cfg.deadline_ms / 1e3)
                    .max(2.0)
                    .min(cfg.max_wait_ms / 1e3),
            );
            let start = Instant::now();
            while c.partials.iter().any(Option::is_none) && start.elapsed() < wait {
                match c.poll() {
                    Ok(true) => {}
                    Ok(false) => sleep_poll(),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let check = validate_first(&c, decoding.as_ref(), &ghat, t);
            if let Some((_, AttrValue::F64(err))) = check.iter().find(|(k, _)| k == "rel_err") {
                rec.set("grad_rel_err", *err);
            }
            checks_s += check_start.elapsed().as_secs_f64();
            if t == first {
                validation = check;
            } else if !check
                .iter()
                .any(|(k, v)| k == "check" && *v == AttrValue::Str("PASSED".into()))
            {
                log::warn!("[rank 0] gradient check at iteration {t} did not pass: {check:?}");
            }
            c.validation_iteration = None;
        }
        rec.set(
            "elapsed_s",
            elapsed0 + run_start.elapsed().as_secs_f64() - checks_s,
        );
        if let Err(e) = writer.append(&rec) {
            log::error!("[rank 0] could not write results: {e}");
            error = Some(e.into());
            status = RunStatus::Failed;
            break;
        }
        if t % cfg.log_every == 0 || last {
            log::info!(
                "[rank 0] it {:>5}/{}  loss {:.6}  iter {:7.2} ms  oracle {:7.2} ms  responders {}/{}  late {}{}",
                t,
                cfg.iterations,
                train_loss,
                wall_s * 1e3,
                oracle_s * 1e3,
                c.complete_responders(),
                n,
                c.cur.late,
                last_test.and_then(|e| e.accuracy).map_or(String::new(), |a| format!("  test acc {a:.4}"))
            );
        }
        t += 1;
        if cfg.checkpoint_every > 0 && t % cfg.checkpoint_every == 0 && t < cfg.iterations {
            if let Err(e) = writer.flush() {
                log::error!("[rank 0] could not write results: {e}");
                error = Some(e.into());
                status = RunStatus::Failed;
                break;
            }
            let ck = Checkpoint {
                iteration: t,
                state: opt.state().clone(),
                config_hash: cfg.trajectory_hash(),
                seed: cfg.seed,
                elapsed_s: elapsed0 + run_start.elapsed().as_secs_f64() - checks_s,
            };
            if let Err(e) = checkpoint::save(&cfg.out, &ck) {
                log::error!("[rank 0] checkpoint at iteration {t} failed: {e}; the previous generation is kept");
                error = Some(e.into());
                status = RunStatus::Failed;
                break;
            }
        }
    }

    let unreconciled = match c.shutdown(status.exit_code()) {
        Ok(u) => u,
        Err(e) => {
            error.get_or_insert(e);
            (1..=n).collect()
        }
    };
    if !unreconciled.is_empty() {
        log::error!(
            "[rank 0] workers {unreconciled:?} did not answer the STOP; the run is degraded"
        );
        if status == RunStatus::Complete {
            status = RunStatus::Degraded;
        }
    }

    // Summary.
    let mut sorted = iter_times.clone();
    sorted.sort_by(f64::total_cmp);
    let mut osorted = oracle_times.clone();
    osorted.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&sorted, 0.5), percentile(&sorted, 0.95));
    let o50 = percentile(&osorted, 0.5);
    let verdict_ok = validation
        .iter()
        .any(|(k, v)| k == "check" && *v == AttrValue::Str("PASSED".into()))
        && opt.params().iter().all(|v| v.is_finite());
    validation.push((
        "verdict".into(),
        AttrValue::Str(if verdict_ok { "VALID" } else { "INVALID" }.into()),
    ));
    validation.push(("all_iterations_exact".into(), AttrValue::Bool(all_exact)));
    let done = sorted.len();
    println!();
    let resumed = if first > 0 {
        format!(" (resumed at iteration {first})")
    } else {
        String::new()
    };
    println!(
        "gradcode summary: {done} of {} iterations run{resumed}, status {}",
        cfg.iterations,
        status.name()
    );
    println!(
        "  time per iteration  p50 {:8.2} ms   p95 {:8.2} ms",
        p50 * 1e3,
        p95 * 1e3
    );
    println!(
        "  oracle              p50 {:8.2} ms   overhead p50/oracle p50 = {:.3}",
        o50 * 1e3,
        p50 / o50
    );
    println!("  final train loss    {last_loss:.6}");
    if let Some(ev) = &last_test {
        println!("  {ev}");
    }
    for (k, v) in &validation {
        if let AttrValue::Str(s) = v {
            println!("  validation {k}: {s}");
        }
    }
    println!(
        "  {:>6} {:>9} {:>7} {:>9} {:>12} {:>12}",
        "rank", "on-time", "late", "rejected", "arrival p50", "arrival p95"
    );
    let mut straggled = Vec::new();
    for (w, s) in c.stats.iter().enumerate() {
        let mut a = s.arrivals.clone();
        a.sort_by(f64::total_cmp);
        println!(
            "  {:>6} {:>9} {:>7} {:>9} {:>9.2} ms {:>9.2} ms",
            w + 1,
            s.on_time,
            s.late,
            s.rejected,
            percentile(&a, 0.5) * 1e3,
            percentile(&a, 0.95) * 1e3
        );
        if done > 0 && (s.on_time as f64) < 0.5 * done as f64 {
            straggled.push(w + 1);
        }
    }
    println!("  stragglers (used in < 50% of iterations): {straggled:?}");
    println!("  results: {}", writer.path().display());

    let fin = FinalRecord {
        status: status.name().into(),
        w_final: opt.params().to_owned(),
        validation,
        summary: vec![
            ("iterations_run".into(), AttrValue::U64(done as u64)),
            ("gradient_checks_s".into(), AttrValue::F64(checks_s)),
            ("time_per_iteration_p50_s".into(), AttrValue::F64(p50)),
            ("time_per_iteration_p95_s".into(), AttrValue::F64(p95)),
            ("oracle_p50_s".into(), AttrValue::F64(o50)),
            ("overhead_over_oracle".into(), AttrValue::F64(p50 / o50)),
            ("final_train_loss".into(), AttrValue::F64(last_loss)),
            (
                "stragglers".into(),
                AttrValue::Str(format!("{straggled:?}")),
            ),
            (
                "unreconciled_workers".into(),
                AttrValue::Str(format!("{unreconciled:?}")),
            ),
            (
                "error".into(),
                AttrValue::Str(error.as_ref().map(|e| e.to_string()).unwrap_or_default()),
            ),
        ]
        .into_iter()
        .chain(results::test_summary(last_test.as_ref()))
        .collect(),
        per_worker: vec![
            (
                "on_time".into(),
                c.stats.iter().map(|s| s.on_time as f64).collect(),
            ),
            (
                "late".into(),
                c.stats.iter().map(|s| s.late as f64).collect(),
            ),
            (
                "rejected".into(),
                c.stats.iter().map(|s| s.rejected as f64).collect(),
            ),
            (
                "mean_arrival_s".into(),
                c.stats
                    .iter()
                    .map(|s| {
                        if s.on_time > 0 {
                            s.arrival_sum / s.on_time as f64
                        } else {
                            f64::NAN
                        }
                    })
                    .collect(),
            ),
        ],
    };
    if let Err(e) = writer.finish(&fin) {
        log::error!("[rank 0] could not finish the results file: {e}");
        error.get_or_insert(e.into());
        if status == RunStatus::Complete {
            status = RunStatus::Failed;
        }
    }
    Outcome {
        status,
        unreconciled,
        error,
    }
}

/// Compare the decoded first-iteration gradient with the exact one from the partials (one per
/// partition and chunk). An exact decoding passes at relative error ≤ 1e-8; an approximate one
/// passes when ‖ĝ − g‖ ≤ Σ_q err(F_q)·‖G_q‖_F, the guarantee of least-squares decoding.
fn validate_first(
    c: &Coordinator<'_>,
    decoding: Option<&Combined>,
    ghat: &Array1<f64>,
    t: u64,
) -> Vec<(String, AttrValue)> {
    let mut out: Vec<(String, AttrValue)> = vec![("iteration".into(), AttrValue::U64(t))];
    let chunks = c.chunks;
    let missing: Vec<usize> = c
        .partials
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(i, _)| i / chunks)
        .collect();
    let Some(d) = decoding else {
        out.push(("check".into(), AttrValue::Str("FAILED".into())));
        out.push((
            "reason".into(),
            AttrValue::Str("no decoding at the first iteration".into()),
        ));
        return out;
    };
    // Workers that sent nothing to the validation gather within its bounded wait (ranks).
    let silent: Vec<usize> = (0..c.n)
        .filter(|&w| c.received[w] == 0)
        .map(|w| w + 1)
        .collect();
    if !missing.is_empty() {
        let mut parts = missing.clone();
        parts.dedup();
        out.push(("check".into(), AttrValue::Str("INCOMPLETE".into())));
        out.push((
            "reason".into(),
            AttrValue::Str(format!("partitions {parts:?} never reported; workers that never answered (ranks): {silent:?}")),
        ));
        log::warn!(
            "[rank 0] validation incomplete: partitions {parts:?} missing; silent ranks {silent:?}"
        );
        return out;
    }
    let dim = c.dim;
    let k = c.decoder.code().n_partitions();
    let mut g = Array1::<f64>::zeros(dim + 1);
    let mut chunk_frob2 = vec![0.0; chunks];
    for (i, p) in c.partials.iter().enumerate() {
        if let Some(p) = p {
            g += p;
            chunk_frob2[i % chunks] += p
                .slice(ndarray::s![..dim])
                .iter()
                .map(|v| v * v)
                .sum::<f64>();
        }
    }
    let norm2 = |v: ndarray::ArrayView1<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = norm2((&ghat.slice(ndarray::s![..dim]) - &g.slice(ndarray::s![..dim])).view());
    let norm = norm2(g.slice(ndarray::s![..dim]));
    let rel = if norm > 0.0 { diff / norm } else { diff };
    // A chunk nobody delivered is bounded by err(∅) = ‖1‖ = √k.
    let bound: f64 = c
        .chunk_residual
        .iter()
        .zip(&chunk_frob2)
        .map(|(&r, f2)| if r.is_nan() { (k as f64).sqrt() } else { r } * f2.sqrt())
        .sum();
    let passed = if d.exact {
        rel <= 1e-8
    } else {
        diff <= bound * (1.0 + 1e-9) + 1e-12 * norm
    };
    let verdict = if passed { "PASSED" } else { "FAILED" };
    log::info!(
        "[rank 0] validation at iteration {t}: decoded vs exact gradient rel. error {rel:.3e} ({} decoding, residual {:.3e}): {verdict}",
        if d.exact { "exact" } else { "approximate" },
        d.residual
    );
    let responders: Vec<usize> = (0..c.n)
        .filter(|&w| c.cur.chunks_in[w] == chunks)
        .map(|w| w + 1)
        .collect();
    out.push(("check".into(), AttrValue::Str(verdict.into())));
    out.push(("rel_err".into(), AttrValue::F64(rel)));
    out.push(("abs_err".into(), AttrValue::F64(diff)));
    out.push((
        "bound".into(),
        AttrValue::F64(if d.exact { 1e-8 * norm } else { bound }),
    ));
    out.push(("exact_decoding".into(), AttrValue::Bool(d.exact)));
    out.push(("decode_residual".into(), AttrValue::F64(d.residual)));
    let not_decoded: Vec<usize> = (1..=c.n).filter(|r| !responders.contains(r)).collect();
    out.push((
        "responders".into(),
        AttrValue::Str(format!("{responders:?}")),
    ));
    // Named even when the check passes: who was left out of the decoding (late or failed), and
    // who also never answered the gather of the exact gradient.
    out.push((
        "not_decoded".into(),
        AttrValue::Str(format!("{not_decoded:?}")),
    ));
    out.push(("silent".into(), AttrValue::Str(format!("{silent:?}"))));
    out
}
