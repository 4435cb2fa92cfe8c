//! A worker's side of the protocol (GUIDE §2): wait for the newest parameters, let the job
//! compute, inject the seeded straggler delay, send each result with a nonblocking send, and
//! answer STOP with the number of messages sent. A link probe from rank 0 (start-up,
//! [`super::probe`]) is echoed back at once.
//!
//! A worker blocks in a matched probe on rank 0 (blocking waits are the cheapest on an
//! oversubscribed node). It never runs ahead of rank 0: rank 0 hands it new parameters only after
//! it has reported. Injected stragglers (seeded by iteration and rank, [`StragglerSchedule`])
//! slow it (busy spin proportional to its compute), delay it after computing (spread evenly over
//! the parts of an iteration, so a slow worker still finishes its first parts early), or make it
//! stop answering (`fail:RANK@ITER`) while staying alive. On STOP it reports its message count,
//! completes its pending sends (rank 0 drains them) and returns the job's exit code.
//!
//! Results go out of two buffers per part, alternated, so a part's next message never waits for
//! its previous send; check pieces out of a pool of buffers reused once their sends complete.
//!
//! With the `fault-injection` feature (tests only), the fault plan of [`crate::faults`] hooks in
//! here: a delay before computing, and kill/stop/corruption just before each send.

use std::time::{Duration, Instant};

use super::protocol::{
    Header, Kind, HEADER_LEN, TAG_ACK, TAG_CHECK, TAG_PARAMS, TAG_PROBE, TAG_RESULT, TAG_SUPPORT,
};
use super::{CommError, SendSlot, WorkerTransport};
use crate::straggler::StragglerSchedule;

/// What a worker computes for each parameter message. Implemented by every MPI job's worker
/// (coded gradients, coded mat-vec blocks, product shares).
pub trait WorkerJob {
    /// Whether a parameter message of `len` payload values for `phase` is valid for this job.
    fn accepts(&self, phase: usize, len: usize) -> bool;
    /// Largest parameter payload of any phase (a longer message is refused before it is
    /// received into the worker's buffer).
    fn max_params_len(&self) -> usize;
    /// Answer one parameter message: send every part with [`Responder::send_result`] (or
    /// abandon the rest when [`Responder::superseded`]), and the check pieces when asked.
    fn serve<T: WorkerTransport>(
        &mut self,
        params: &[f64],
        out: &mut Responder<'_, T>,
    ) -> Result<(), CommError>;
    /// The support to send once before serving ([`WorkerLink::send_support`]); None: the job
    /// sends none (rank 0 expects none).
    fn support(&self) -> Option<Vec<u32>> {
        None
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

/// This process's peak resident memory in KiB (`getrusage` `ru_maxrss`; NaN where it cannot be
/// read). Workers send it with their STOP acknowledgement; rank 0 records its own beside them.
pub fn peak_rss_kib() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the zeroed buffer it is given and reads
    // nothing else; the buffer is only read after it returned 0.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc == 0 {
        // SAFETY: initialised by the successful call above (and zeroed before it).
        let usage = unsafe { usage.assume_init() };
        usage.ru_maxrss as f64
    } else {
        f64::NAN
    }
}

/// Send buffers and counters of a worker.
struct Outbox<T: WorkerTransport> {
    t: T,
    /// Two buffers per part.
    results: Vec<[Option<T::Buf>; 2]>,
    which: Vec<usize>,
    checks: Vec<T::Buf>,
    sent: u64,
}

impl<T: WorkerTransport> Outbox<T> {
    /// A free check buffer with room for `len` values.
    fn check_buf(&mut self, len: usize) -> usize {
        if let Some(i) = self
            .checks
            .iter_mut()
            .position(|b| b.len() >= len && b.is_free())
        {
            return i;
        }
        self.checks.push(self.t.buffer(len));
        self.checks.len() - 1
    }

    fn wait_all(&mut self) {
        for b in self.results.iter_mut().flatten().flatten() {
            b.wait();
        }
        for b in &mut self.checks {
            b.wait();
        }
    }
}

/// The state of one parameter message being answered, handed to [`WorkerJob::serve`].
pub struct Responder<'a, T: WorkerTransport> {
    out: &'a mut Outbox<T>,
    rank: usize,
    iteration: u64,
    phase: usize,
    check: bool,
    delay_per_part: f64,
    factor: f64,
    compute_s: f64,
    injected_s: f64,
    abandoned: bool,
    /// `train --adapt`: the s whose partitions rank 0 asks this worker to hold.
    prepare: u64,
    /// `train --adapt`: the largest s whose partitions this worker holds (its results' count).
    held: u64,
    #[cfg(feature = "fault-injection")]
    faults: &'a [crate::faults::WorkerFault],
}

/// Busy-spin for `secs` (CPU contention, unlike a sleep).
fn spin(secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

impl<T: WorkerTransport> Responder<'_, T> {
    /// The iteration (round) being answered.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }
    /// The phase being answered.
    pub fn phase(&self) -> usize {
        self.phase
    }
    /// Whether rank 0 asked for the uncoded check pieces too.
    pub fn wants_check(&self) -> bool {
        self.check
    }
    /// This worker's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// `train --adapt`: the s whose partitions rank 0 asks this worker to hold.
    pub fn prepare(&self) -> u64 {
        self.prepare
    }
    /// `train --adapt`: say in this round's results that the partitions of every s up to `s`
    /// are held (the confirmation rank 0 waits for before switching to a larger s).
    pub fn set_held(&mut self, s: u64) {
        self.held = s;
    }

    /// Whether this round's results go into a tree-decode group leader's combination
    /// ([`WorkerTransport::combined`]): send them uncompressed.
    pub fn combined(&self) -> bool {
        self.out.t.combined()
    }

    /// Whether newer parameters are waiting: rank 0 has decoded this round without this worker,
    /// so the rest of its parts may be abandoned ([`Responder::abandon`]).
    pub fn superseded(&mut self) -> bool {
        self.out.t.waiting(TAG_PARAMS)
    }

    /// Compute `part` with `fill` (which writes `len` payload values; timed as compute), then
    /// apply this worker's injected slow-down and delay, then send it with a nonblocking send.
    pub fn send_result(
        &mut self,
        part: usize,
        len: usize,
        fill: impl FnOnce(&mut [f64]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        let start = Instant::now();
        let Outbox {
            t, results, which, ..
        } = &mut *self.out;
        if results.len() <= part {
            results.resize_with(part + 1, || [None, None]);
            which.resize(part + 1, 0);
        }
        let slot = &mut results[part][which[part]];
        if let Some(b) = slot.as_mut().filter(|b| b.len() < HEADER_LEN + len) {
            b.wait();
            *slot = None;
        }
        let b = slot.get_or_insert_with(|| t.buffer(HEADER_LEN + len));
        let data = b.write();
        fill(&mut data[HEADER_LEN..HEADER_LEN + len])?;
        let compute = start.elapsed().as_secs_f64();
        let spun = (self.factor - 1.0).max(0.0) * compute;
        spin(spun);
        if self.delay_per_part > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(self.delay_per_part));
        }
        self.compute_s += compute;
        self.injected_s += spun + self.delay_per_part;
        let mut h = Header::result(self.iteration, self.rank, self.phase, part, len);
        h.count = self.held;
        h.compute_s = self.compute_s;
        h.injected_s = self.injected_s;
        h.write(data);
        #[allow(unused_mut)]
        let mut send_len = HEADER_LEN + len;
        #[cfg(feature = "fault-injection")]
        for &f in self.faults {
            let (head, payload) = data.split_at_mut(HEADER_LEN);
            send_len = crate::faults::corrupt_message(f, self.iteration, head, payload, send_len);
        }
        t.post(b, TAG_RESULT, send_len);
        which[part] ^= 1;
        self.out.sent += 1;
        Ok(())
    }

    /// Tell rank 0 that `part` of this round will not come (header only).
    pub fn abandon(&mut self, part: usize) {
        let mut h = Header::result(self.iteration, self.rank, self.phase, part, 0);
        h.count = self.held;
        self.out.t.send(TAG_RESULT, &h.to_message());
        self.out.sent += 1;
        self.abandoned = true;
    }

    /// Send uncoded check piece `piece` (`len` values written by `fill`), not timed.
    pub fn send_check(
        &mut self,
        piece: usize,
        len: usize,
        fill: impl FnOnce(&mut [f64]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        let i = self.out.check_buf(HEADER_LEN + len);
        let buf = self.out.checks[i].write();
        Header::check(self.iteration, self.rank, self.phase, piece, len).write(buf);
        fill(&mut buf[HEADER_LEN..HEADER_LEN + len])?;
        let out = &mut *self.out;
        out.t.post(&mut out.checks[i], TAG_CHECK, HEADER_LEN + len);
        out.sent += 1;
        Ok(())
    }
}

/// A worker's end of the protocol.
pub struct WorkerLink<T: WorkerTransport> {
    out: Outbox<T>,
    rank: usize,
    schedule: StragglerSchedule,
    /// Parts (messages) per round, over which the injected delay is spread.
    parts: usize,
    params: Vec<f64>,
    scratch: Vec<f64>,
    summary: WorkerSummary,
}

impl<T: WorkerTransport> WorkerLink<T> {
    /// A link over `t` with this worker's straggler `schedule`; `parts` messages per round.
    pub fn new(t: T, schedule: StragglerSchedule, parts: usize) -> Self {
        let rank = t.rank();
        WorkerLink {
            out: Outbox {
                t,
                results: Vec::new(),
                which: Vec::new(),
                checks: Vec::new(),
                sent: 0,
            },
            rank,
            schedule,
            parts: parts.max(1),
            params: Vec::new(),
            scratch: Vec::new(),
            summary: WorkerSummary::default(),
        }
    }

    fn protocol(reason: String) -> CommError {
        CommError::Protocol { rank: 0, reason }
    }

    /// Send this worker's support once, before serving: the columns of the full result vector
    /// its results will carry, in that order ([`Collector::receive_supports`]).
    ///
    /// [`Collector::receive_supports`]: super::Collector::receive_supports
    pub fn send_support(&mut self, columns: &[u32]) {
        let mut msg = vec![0.0; HEADER_LEN + columns.len()];
        Header::support(self.rank, columns.len()).write(&mut msg);
        for (m, &c) in msg[HEADER_LEN..].iter_mut().zip(columns) {
            *m = f64::from(c);
        }
        self.out.t.send(TAG_SUPPORT, &msg);
        self.out.sent += 1;
    }

    /// Serve `job` until STOP; returns what the worker did and the job's exit code.
    pub fn serve<J: WorkerJob>(mut self, job: &mut J) -> Result<WorkerSummary, CommError> {
        #[cfg(feature = "fault-injection")]
        let plan = crate::faults::active();
        #[cfg(feature = "fault-injection")]
        let mut fired = vec![false; plan.map_or(0, |p| p.faults.len())];
        if let Some(columns) = job.support() {
            self.send_support(&columns);
        }
        loop {
            let msg = self.out.t.wait();
            let (tag, len) = (msg.tag, msg.len);
            if tag == TAG_PARAMS && len > HEADER_LEN + job.max_params_len() {
                self.scratch.resize(len, 0.0);
                self.out.t.receive(msg, &mut self.scratch);
                return Err(Self::protocol(format!(
                    "parameter message of {len} values, expected at most {}",
                    HEADER_LEN + job.max_params_len()
                )));
            }
            if tag == TAG_PROBE && len > HEADER_LEN + super::probe::MAX_PROBE_LEN {
                self.scratch.resize(len, 0.0);
                self.out.t.receive(msg, &mut self.scratch);
                return Err(Self::protocol(format!(
                    "link probe of {len} values, expected at most {}",
                    HEADER_LEN + super::probe::MAX_PROBE_LEN
                )));
            }
            let buf = if tag == TAG_PARAMS {
                &mut self.params
            } else {
                &mut self.scratch
            };
            buf.resize(len, 0.0);
            self.out.t.receive(msg, buf);
            let h = Header::parse(buf).map_err(|e| Self::protocol(format!("header: {e}")))?;
            match Kind::of_tag(tag) {
                Some(Kind::Params) if h.kind == Kind::Params => {
                    if !job.accepts(h.phase, h.len) {
                        return Err(Self::protocol(format!(
                            "parameter message of {} values for phase {} is not what this job expects",
                            h.len, h.phase
                        )));
                    }
                    if self.schedule.failed(h.iteration, self.rank) {
                        log::debug!(
                            "[rank {}] iteration {}: injected failure, not answering",
                            self.rank,
                            h.iteration
                        );
                        continue;
                    }
                    #[cfg(feature = "fault-injection")]
                    let due =
                        plan.map_or_else(Vec::new, |p| p.due(self.rank, h.iteration, &mut fired));
                    #[cfg(feature = "fault-injection")]
                    crate::faults::delay_before_compute(&due, self.rank, h.iteration);
                    let delay = self.schedule.delay_s(h.iteration, self.rank);
                    let mut r = Responder {
                        out: &mut self.out,
                        rank: self.rank,
                        iteration: h.iteration,
                        phase: h.phase,
                        check: h.wants_check(),
                        delay_per_part: delay / self.parts as f64,
                        factor: self.schedule.slow_factor(self.rank),
                        compute_s: 0.0,
                        injected_s: 0.0,
                        abandoned: false,
                        prepare: h.count,
                        held: 0,
                        #[cfg(feature = "fault-injection")]
                        faults: &due,
                    };
                    job.serve(&self.params[HEADER_LEN..], &mut r)?;
                    self.summary.compute_s += r.compute_s;
                    if !r.abandoned {
                        self.summary.iterations_computed += 1;
                    }
                }
                Some(Kind::Probe) if h.kind == Kind::Probe && h.rank == 0 => {
                    // Echoed at once, the same size, with this worker's rank.
                    Header::probe(self.rank, h.part, h.len).write(buf);
                    self.out.t.send(TAG_PROBE, buf);
                    self.out.sent += 1;
                }
                Some(Kind::Stop) if h.kind == Kind::Stop => {
                    self.summary.stop_code = h.exit_code;
                    // A tree decode's group settles first (`comm::group`); results sent to
                    // a group leader are not rank 0's to count.
                    self.out.t.close();
                    let to_root = self.out.sent - self.out.t.relayed();
                    let ack = Header::ack_message(self.rank, to_root, peak_rss_kib());
                    self.out.t.send(TAG_ACK, &ack);
                    self.out.wait_all();
                    self.summary.messages_sent = self.out.sent;
                    return Ok(self.summary);
                }
                _ => {
                    return Err(Self::protocol(format!(
                        "unexpected {:?} message with tag {tag} ({len} values)",
                        h.kind
                    )))
                }
            }
        }
    }
}
