//! Rank 0's side of the protocol (GUIDE §2): post → collect until decodable or the deadline →
//! (the job decodes) → next round; then STOP and reconcile.
//!
//! Rules kept here, for every job:
//! - Parameters go only to idle workers (those that have reported on their last round; with
//!   `overlap`, also to a worker still busy with one older round, which switches at its next part
//!   boundary), from a ring of buffers, one per parameter version, shared by all destinations; a
//!   buffer is reused only when every send from it has completed. A worker still busy with an old
//!   round is handed the current parameters as soon as its late message arrives.
//! - Rank 0 polls with a matched probe (and a 50 µs sleep when nothing came, so an
//!   oversubscribed node is not starved) and receives every message: late ones are drained,
//!   recorded ([`LateArrival`]) and never used (unless `reuse_stale` folds one that is exactly one
//!   round late into the round being collected); invalid ones (header, sender, length, round,
//!   part, non-finite values, a compressed vector that does not decompress) are erasures,
//!   counted and logged.
//! - No collective after start-up; no send is ever cancelled; STOP is answered by every worker
//!   with its message count and rank 0 drains until the counts match (or a bound passes: the
//!   workers that never answered are returned so the job can abort).
//!
//! Messages are received into a staging buffer and swapped into the worker's slot only when they
//! are accepted, so a rejected message never overwrites an accepted one, and accepting costs no
//! copy. The job decides when a round is complete through a [`Rule`].
//!
//! What became of each worker's share of each round is read from the round's record
//! (`parts_in`) and the late arrivals ([`LateArrival`]); `io::metrics::count_outcomes` turns
//! them into per-worker counts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::{
    payload_is_finite, Header, Kind, FLAG_CHECK, HEADER_LEN, TAG_DIRECT, TAG_PARAMS, TAG_PROBE,
    TAG_REJOIN, TAG_STOP, TAG_SUPPORT,
};
use super::{CommError, Incoming, SendSlot, Transport};
use crate::compress::Compressor;

/// What rank 0 does when the deadline passes before the responders can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDeadline {
    /// Keep collecting until the responder set is decodable, at most --max-wait-ms.
    Wait,
    /// Decode at the deadline, least-squares optimally, from whatever arrived; record the residual.
    BestEffort,
}

/// The shape and policy of a collection, fixed for a job.
#[derive(Debug, Clone)]
pub struct CollectorSpec {
    /// Workers n (ranks 1..=n).
    pub workers: usize,
    /// Result messages per worker and round (chunks of partial work; 1 otherwise).
    pub parts: usize,
    /// Payload length of a result, per phase and worker.
    pub result_len: Vec<Vec<usize>>,
    /// Payload length of one check piece (0: the job sends no checks).
    pub check_len: usize,
    /// Deadline per round.
    pub deadline: Duration,
    /// Bound on waiting past the deadline under [`OnDeadline::Wait`].
    pub max_wait: Duration,
    /// Policy at the deadline.
    pub on_deadline: OnDeadline,
    /// Fold a result exactly one round late into the round being collected (one part only).
    pub reuse_stale: bool,
    /// Hand new parameters to a worker still busy with one older round.
    pub overlap: bool,
    /// Results start with a vector of this many values compressed by this compressor (the job's
    /// own values follow): a payload that does not decompress is rejected like any other
    /// invalid message. None: plain values.
    pub compressed: Option<(Compressor, usize)>,
    /// Workers whose results go to a group leader, not to rank 0 (`--decode-tree`,
    /// [`super::group`]): posted every round, never expected to answer. Empty: none.
    pub relayed: Vec<bool>,
}

impl CollectorSpec {
    /// One message per worker and round, `wait` at the deadline, no stale reuse or overlap: the
    /// coded linear-algebra rounds.
    pub fn one_message(
        workers: usize,
        result_len: Vec<Vec<usize>>,
        deadline: Duration,
        max_wait: Duration,
    ) -> Self {
        CollectorSpec {
            workers,
            parts: 1,
            result_len,
            check_len: 0,
            deadline,
            max_wait,
            on_deadline: OnDeadline::Wait,
            reuse_stale: false,
            overlap: false,
            compressed: None,
            relayed: Vec::new(),
        }
    }
}

/// How a collection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collected {
    /// The job's rule says the responders suffice.
    Decodable,
    /// The deadline passed under [`OnDeadline::BestEffort`].
    Deadline,
    /// The interrupt flag was raised (a signal): the round is abandoned.
    Interrupted,
}

/// When the job's round is complete, and what it does with each accepted result.
pub trait Rule {
    /// An on-time result of worker `w` for `part` was accepted (its payload).
    fn accept(&mut self, _w: usize, _part: usize, _payload: &[f64]) -> Result<(), CommError> {
        Ok(())
    }
    /// Whether the responders so far suffice.
    fn decodable(&self, round: &Round) -> bool;
}

/// A rule for polling outside a collection (nothing is on time then).
struct Idle;
impl Rule for Idle {
    fn decodable(&self, _round: &Round) -> bool {
        false
    }
}

/// The round being collected, as the job reads it.
#[derive(Debug, Clone)]
pub struct Round {
    pub iteration: u64,
    pub phase: usize,
    /// When the round was posted.
    pub t0: Instant,
    pub collecting: bool,
    /// Responders per part (sorted worker indices).
    pub responders: Vec<Vec<usize>>,
    /// Parts each worker delivered on time (a folded stale result counts as one).
    pub parts_in: Vec<usize>,
    /// (finish time from the worker's header counted from the post, worker, part) of every
    /// on-time message, for the oracle.
    pub finish: Vec<(f64, usize, usize)>,
    /// Seconds from the post to the arrival of each worker's last on-time part (NaN: none).
    pub arrival_s: Vec<f64>,
    /// Compute seconds each worker reported (NaN: no message).
    pub compute_s: Vec<f64>,
    /// Injected delay seconds each worker reported for what it sent (NaN: no message).
    pub injected_s: Vec<f64>,
    /// Seconds from the start of the round to the post to each worker (NaN: not posted).
    pub post_offset: Vec<f64>,
    /// 0 for a fresh response, 1 for one folded in a round late, NaN for none.
    pub stale_age: Vec<f64>,
    /// Results folded in a round late.
    pub stale: u32,
    /// Late messages (of earlier rounds) drained during this round.
    pub late: u32,
    /// Messages rejected during this round.
    pub rejected: u32,
    /// Bytes received during this round.
    pub bytes_in: f64,
    /// Result messages received during this round (those of `bytes_in`).
    pub messages_in: u32,
    /// Bytes of parameters posted during this round.
    pub bytes_out: f64,
}

impl Round {
    fn new(n: usize, parts: usize) -> Self {
        Round {
            iteration: 0,
            phase: 0,
            t0: Instant::now(),
            collecting: false,
            responders: vec![Vec::with_capacity(n); parts],
            parts_in: vec![0; n],
            finish: Vec::with_capacity(n * parts),
            arrival_s: vec![f64::NAN; n],
            compute_s: vec![f64::NAN; n],
            injected_s: vec![f64::NAN; n],
            post_offset: vec![f64::NAN; n],
            stale_age: vec![f64::NAN; n],
            stale: 0,
            late: 0,
            rejected: 0,
            bytes_in: 0.0,
            messages_in: 0,
            bytes_out: 0.0,
        }
    }

    fn reset(&mut self, iteration: u64, phase: usize) {
        self.iteration = iteration;
        self.phase = phase;
        self.t0 = Instant::now();
        self.collecting = true;
        self.responders.iter_mut().for_each(Vec::clear);
        self.parts_in.fill(0);
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
        self.bytes_in = 0.0;
        self.messages_in = 0;
        self.bytes_out = 0.0;
    }

    /// Workers every part of which arrived on time.
    pub fn complete_responders(&self) -> usize {
        let parts = self.responders.len();
        self.parts_in.iter().filter(|&&c| c == parts).count()
    }

    /// Ranks of the workers that delivered nothing on time.
    pub fn silent(&self) -> Vec<usize> {
        (0..self.parts_in.len())
            .filter(|&w| self.parts_in[w] == 0)
            .map(|w| w + 1)
            .collect()
    }

    fn is_current(&self, iteration: u64, phase: usize) -> bool {
        self.collecting && self.iteration == iteration && self.phase == phase
    }
}

/// A message that arrived after its round was decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LateArrival {
    /// The round being collected when it arrived (the last round + 1, at shutdown).
    pub received_during: u64,
    /// The round it was computed for.
    pub iteration: u64,
    pub phase: usize,
    /// Sender's rank.
    pub rank: usize,
    pub part: usize,
    /// Seconds from the post of its parameters to its arrival.
    pub delay_s: f64,
    pub compute_s: f64,
    pub injected_s: f64,
    /// Folded into the next round (`reuse_stale`).
    pub used: bool,
}

/// One round a worker was given and has not finished.
#[derive(Debug, Clone, Copy)]
struct Expect {
    iteration: u64,
    phase: usize,
    remaining: usize,
    posted: Instant,
}

/// Rank 0's end of the protocol over a transport `T`.
pub struct Collector<T: Transport> {
    t: T,
    spec: CollectorSpec,
    /// Workers not posted to while set ([`Collector::hold`]).
    held: Vec<bool>,
    pending: Vec<VecDeque<Expect>>,
    /// Accepted messages (header + payload), per worker and part.
    slots: Vec<Vec<Vec<f64>>>,
    staging: Vec<f64>,
    /// Messages received from each worker (reconciled with its ACK).
    received: Vec<u64>,
    /// Of those, link-probe echoes ([`Collector::round_trip`]).
    echoes: Vec<u64>,
    acked: Vec<Option<u64>>,
    /// Each worker's peak resident memory (KiB) from its ACK; NaN until it arrived.
    peak_rss_kib: Vec<f64>,
    ring: Vec<T::Buf>,
    current: usize,
    /// Per-worker rings of buffers of [`Collector::begin_each`], and per worker the buffer
    /// holding the current round and its message's length.
    each: Vec<Vec<T::Buf>>,
    each_current: Vec<(usize, usize)>,
    each_mode: bool,
    params_len: usize,
    params_flags: u32,
    /// `train --adapt`: the s whose partitions the posts ask the workers to hold (the
    /// parameter header's `count`).
    prepare: u64,
    /// `train --adapt`: per worker, the largest s whose partitions its last valid result said
    /// it holds (the result header's `count`).
    stored_s: Vec<u64>,
    round: Round,
    /// Whether each worker was given the current round.
    posted: Vec<bool>,
    check_round: Option<(u64, usize)>,
    checks: Vec<Vec<f64>>,
    have_check: Vec<bool>,
    /// Workers that sent any check piece in the current check round.
    check_senders: Vec<bool>,
    rejected: Vec<u64>,
    late: Vec<LateArrival>,
    draining: bool,
}

/// A buffer of `ring` no send reads from any more, with room for `len` values (the ring grows
/// when every buffer is still being sent, a buffer grows when it is too short).
fn free_slot<T: Transport>(t: &T, ring: &mut Vec<T::Buf>, len: usize) -> usize {
    let slot = match ring.iter_mut().position(SendSlot::is_free) {
        Some(i) => i,
        None => {
            ring.push(t.buffer(len));
            log::debug!("[rank 0] a send ring grew to {} buffers", ring.len());
            ring.len() - 1
        }
    };
    if ring[slot].len() < len {
        ring[slot] = t.buffer(len);
    }
    slot
}

fn sleep_poll() {
    std::thread::sleep(Duration::from_micros(50));
}

impl<T: Transport> Collector<T> {
    /// A collector for `spec` over transport `t`; nothing posted yet.
    pub fn new(t: T, spec: CollectorSpec) -> Self {
        let n = spec.workers;
        let slots = (0..n)
            .map(|w| {
                let len = spec.result_len.iter().map(|p| p[w]).max().unwrap_or(0);
                vec![Vec::with_capacity(HEADER_LEN + len); spec.parts]
            })
            .collect();
        let round = Round::new(n, spec.parts);
        Collector {
            held: vec![false; n],
            t,
            pending: vec![VecDeque::with_capacity(2); n],
            slots,
            staging: Vec::new(),
            received: vec![0; n],
            echoes: vec![0; n],
            acked: vec![None; n],
            peak_rss_kib: vec![f64::NAN; n],
            ring: Vec::new(),
            current: 0,
            each: (0..n).map(|_| Vec::new()).collect(),
            each_current: vec![(0, 0); n],
            each_mode: false,
            params_len: 0,
            params_flags: 0,
            prepare: 0,
            stored_s: vec![0; n],
            round,
            posted: vec![false; n],
            check_round: None,
            checks: Vec::new(),
            have_check: Vec::new(),
            check_senders: vec![false; n],
            rejected: vec![0; n],
            late: Vec::new(),
            draining: false,
            spec,
        }
    }

    /// Receive every worker's support ([`super::WorkerLink::send_support`]), once, before the
    /// first round, waiting at most `wait`: strictly increasing columns below `n_cols`. From
    /// then on a worker with a support sends results of `support.len() + extra` values in
    /// every phase (the collector checks that length); an empty support keeps the worker's
    /// result length (dense results). Any other message, a malformed support, a second one or
    /// silence past `wait` is an error naming the rank.
    pub fn receive_supports(
        &mut self,
        n_cols: usize,
        extra: usize,
        wait: Duration,
    ) -> Result<Vec<Vec<u32>>, CommError> {
        let n = self.spec.workers;
        let mut got: Vec<Option<Vec<u32>>> = vec![None; n];
        let start = Instant::now();
        while got.iter().any(Option::is_none) {
            let Some(msg) = self.t.probe() else {
                if start.elapsed() > wait {
                    let silent: Vec<usize> = (1..=n).filter(|&r| got[r - 1].is_none()).collect();
                    return Err(CommError::Fatal(format!(
                        "no support from ranks {silent:?} within {:.0} ms of start-up",
                        wait.as_secs_f64() * 1e3
                    )));
                }
                sleep_poll();
                continue;
            };
            let (src, tag) = (msg.source, msg.tag);
            self.staging.resize(msg.len, 0.0);
            self.t.receive(msg, &mut self.staging);
            let bad = |reason: String| CommError::Protocol { rank: src, reason };
            if src == 0 || src > n {
                return Err(bad("message from a rank that is not a worker".into()));
            }
            let w = src - 1;
            self.received[w] += 1;
            if tag != TAG_SUPPORT {
                return Err(bad(format!("a message with tag {tag} before its support")));
            }
            let h = Header::parse(&self.staging).map_err(|e| bad(format!("support: {e}")))?;
            if h.kind != Kind::Support || h.rank != src || got[w].is_some() {
                return Err(bad(format!(
                    "not the one support of rank {src} ({:?} from rank {})",
                    h.kind, h.rank
                )));
            }
            let mut cols: Vec<u32> = Vec::with_capacity(h.len);
            for &v in &self.staging[HEADER_LEN..] {
                let increasing = cols.last().map_or(true, |&p| f64::from(p) < v);
                if !(v.fract() == 0.0 && v >= 0.0 && v < n_cols as f64 && increasing) {
                    return Err(bad(format!(
                        "support column {v} is not an increasing column index below {n_cols}"
                    )));
                }
                cols.push(v as u32);
            }
            if !cols.is_empty() {
                for phase in self.spec.result_len.iter_mut() {
                    phase[w] = cols.len() + extra;
                }
            }
            got[w] = Some(cols);
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Results of `phase` are `lens[w]` values from worker `w` (a phase the spec did not
    /// size, e.g. a job's extra round; phases in between expect nothing).
    pub fn set_result_len(&mut self, phase: usize, lens: Vec<usize>) {
        let n = self.spec.workers;
        while self.spec.result_len.len() <= phase {
            self.spec.result_len.push(vec![0; n]);
        }
        for (slots, &len) in self.slots.iter_mut().zip(&lens) {
            for s in slots.iter_mut() {
                s.reserve((HEADER_LEN + len).saturating_sub(s.len()));
            }
        }
        self.spec.result_len[phase] = lens;
    }

    /// The round deadline of the spec (`--deadline-ms`).
    pub fn deadline(&self) -> Duration {
        self.spec.deadline
    }

    /// Workers n.
    pub fn workers(&self) -> usize {
        self.spec.workers
    }

    /// The round being (or last) collected.
    pub fn round(&self) -> &Round {
        &self.round
    }

    /// Payload of worker `w`'s accepted result for `part` in the current round.
    pub fn payload(&self, w: usize, part: usize) -> &[f64] {
        self.slots[w][part].get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Messages rejected as invalid, per worker, over the run.
    pub fn rejected_by_worker(&self) -> Vec<u64> {
        self.rejected.clone()
    }

    /// Each worker's peak resident memory in KiB, as its STOP acknowledgement reported it (NaN
    /// for a worker whose ACK did not arrive).
    pub fn peak_rss_kib(&self) -> &[f64] {
        &self.peak_rss_kib
    }

    /// Ranks of the workers from which nothing at all arrived during the run (link-probe
    /// echoes do not count).
    pub fn never_answered(&self) -> Vec<usize> {
        (0..self.spec.workers)
            .filter(|&w| self.received[w] == self.echoes[w])
            .map(|w| w + 1)
            .collect()
    }

    /// How long worker `w` has owed the oldest round posted to it (None: it owes nothing; a
    /// tree-decode member whose results go to its leader never owes rank 0 anything).
    pub fn owed_for(&self, w: usize) -> Option<Duration> {
        self.pending[w].front().map(|e| e.posted.elapsed())
    }

    /// `--decode-tree` fallback ([`super::group`]): tell worker `w`, a group member whose
    /// results went to its leader, to send them to rank 0 from round `iteration` on (a small
    /// blocking send, before that round's parameters); from the next post on it is expected
    /// like any worker.
    pub fn redirect(&mut self, w: usize, iteration: u64) {
        let order = Header::direct(iteration).to_message();
        self.t.send(w + 1, TAG_DIRECT, &order);
        if let Some(r) = self.spec.relayed.get_mut(w) {
            *r = false;
        }
    }

    /// Post nothing to worker `w` while `hold` (`--decode-tree`: the silent leader of a group
    /// that fell back, so that when it answers again it is given the next round only together
    /// with its members' return, [`Collector::rejoin`]). Its owed results are taken as usual.
    pub fn hold(&mut self, w: usize, hold: bool) {
        if let Some(h) = self.held.get_mut(w) {
            *h = hold;
        }
    }

    /// `--decode-tree` return ([`super::group`]): tell worker `w`, a member sent to rank 0 by
    /// [`Collector::redirect`], to send its results to its leader again (its leader answered);
    /// from the next post on it is not expected here. A result it still owes (posted before)
    /// comes here and is taken as usual.
    pub fn rejoin(&mut self, w: usize, iteration: u64) {
        let order = Header::rejoin(iteration).to_message();
        self.t.send(w + 1, TAG_REJOIN, &order);
        if let Some(r) = self.spec.relayed.get_mut(w) {
            *r = true;
        }
    }

    /// `train --adapt`: from the next round on, ask every worker to hold the partitions of the
    /// code with `s` (the posts' `count`).
    pub fn set_prepare(&mut self, s: u64) {
        self.prepare = s;
    }

    /// `train --adapt`: per worker, the largest s whose partitions its last valid result said
    /// it holds.
    pub fn stored_s(&self) -> &[u64] {
        &self.stored_s
    }

    /// Late arrivals recorded since the last call.
    pub fn take_late(&mut self) -> Vec<LateArrival> {
        std::mem::take(&mut self.late)
    }

    /// Start round (`iteration`, `phase`) with `params` for every worker: write them once into a
    /// free ring buffer and post to every idle worker. With `check_pieces` > 0 the workers also
    /// send that many uncoded pieces in all ([`Collector::await_checks`]).
    pub fn begin(&mut self, iteration: u64, phase: usize, params: &[f64], check_pieces: usize) {
        self.start(iteration, phase, check_pieces);
        self.each_mode = false;
        let slot = self.free_ring_slot(HEADER_LEN + params.len());
        self.current = slot;
        self.params_len = params.len();
        let buf = self.ring[slot].write();
        let mut h = Header::params(iteration, phase, self.params_flags, params.len());
        h.count = self.prepare;
        h.write(buf);
        buf[HEADER_LEN..HEADER_LEN + params.len()].copy_from_slice(params);
        self.post_idle();
    }

    /// Post the current round to every worker that is idle (or, with `overlap`, busy with one
    /// older round).
    fn post_idle(&mut self) {
        for w in 0..self.spec.workers {
            let busy = self.pending[w].len();
            if !self.held[w] && (busy == 0 || (self.spec.overlap && busy == 1)) {
                self.post_to(w);
            }
        }
    }

    /// A ring buffer no send reads from any more, with room for `len` values (the ring grows
    /// when every buffer is still being sent).
    fn free_ring_slot(&mut self, len: usize) -> usize {
        free_slot(&self.t, &mut self.ring, len)
    }

    /// One link-probe round trip (start-up only, before the first round; [`super::probe`]):
    /// send probe `seq` of `len` zero values to worker `w` from a ring buffer and wait at most
    /// `wait` for its echo. Returns the round-trip time, or None when the echo did not come in
    /// time (it is drained when it comes). Any other message meanwhile is handled as always.
    pub fn round_trip(
        &mut self,
        w: usize,
        seq: usize,
        len: usize,
        wait: Duration,
    ) -> Result<Option<Duration>, CommError> {
        let slot = self.free_ring_slot(HEADER_LEN + len);
        let buf = self.ring[slot].write();
        Header::probe(0, seq, len).write(buf);
        buf[HEADER_LEN..HEADER_LEN + len].fill(0.0);
        let t0 = Instant::now();
        self.t
            .post(&mut self.ring[slot], w + 1, TAG_PROBE, HEADER_LEN + len);
        loop {
            let Some(msg) = self.t.probe() else {
                if t0.elapsed() > wait {
                    return Ok(None);
                }
                // Yield rather than sleep: a sleep would add its granularity to the latency
                // measured, and the worker may need this core to answer.
                std::thread::yield_now();
                continue;
            };
            if msg.tag != TAG_PROBE {
                self.handle(msg, &mut Idle)?;
                continue;
            }
            let src = msg.source;
            if let Some(h) = self.on_echo(msg)? {
                if src == w + 1 && h.part == seq && h.len == len {
                    return Ok(Some(t0.elapsed()));
                }
            }
        }
    }

    /// Receive a link-probe echo; its header when it is one (a stale echo is drained and
    /// counted like the others).
    fn on_echo(&mut self, msg: Incoming<T::Handle>) -> Result<Option<Header>, CommError> {
        let src = self.take(msg)? + 1;
        self.received[src - 1] += 1;
        match Header::parse(&self.staging) {
            Ok(h) if h.kind == Kind::Probe && h.rank == src => {
                self.echoes[src - 1] += 1;
                Ok(Some(h))
            }
            _ => {
                self.rejected[src - 1] += 1;
                log::warn!("[rank 0] rejected a malformed link-probe echo from rank {src}");
                Ok(None)
            }
        }
    }

    /// Start round (`iteration`, `phase`) with a payload of its own for each worker (e.g. its
    /// share of a product, or the parameters on its support): `len(w)` values that `fill(w,
    /// buf)` writes. Like [`Collector::begin`] otherwise: `check_pieces` > 0 asks for the check
    /// pieces, and the round is posted to every idle worker (the others get it when they
    /// answer). Each worker has its own ring of buffers, so a send still in flight to a
    /// straggler is never waited for.
    pub fn begin_each(
        &mut self,
        iteration: u64,
        phase: usize,
        check_pieces: usize,
        len: impl Fn(usize) -> usize,
        mut fill: impl FnMut(usize, &mut [f64]),
    ) {
        self.start(iteration, phase, check_pieces);
        self.each_mode = true;
        for w in 0..self.spec.workers {
            let p = len(w);
            let slot = free_slot(&self.t, &mut self.each[w], HEADER_LEN + p);
            self.each_current[w] = (slot, HEADER_LEN + p);
            let buf = self.each[w][slot].write();
            let mut h = Header::params(iteration, phase, self.params_flags, p);
            h.count = self.prepare;
            h.write(buf);
            fill(w, &mut buf[HEADER_LEN..HEADER_LEN + p]);
        }
        self.post_idle();
    }

    fn start(&mut self, iteration: u64, phase: usize, check_pieces: usize) {
        self.end();
        self.round.reset(iteration, phase);
        self.posted.fill(false);
        if check_pieces > 0 {
            self.check_round = Some((iteration, phase));
            let len = HEADER_LEN + self.spec.check_len;
            self.checks
                .resize_with(check_pieces, || Vec::with_capacity(len));
            self.checks.truncate(check_pieces);
            self.have_check.clear();
            self.have_check.resize(check_pieces, false);
            self.check_senders.fill(false);
            self.params_flags = FLAG_CHECK;
        } else {
            self.params_flags = 0;
        }
    }

    /// Post the current round's parameters to worker `w`.
    fn post_to(&mut self, w: usize) {
        let (buf, len) = if self.each_mode {
            let (slot, len) = self.each_current[w];
            (&mut self.each[w][slot], len)
        } else {
            (&mut self.ring[self.current], HEADER_LEN + self.params_len)
        };
        self.t.post(buf, w + 1, TAG_PARAMS, len);
        self.posted[w] = true;
        self.round.post_offset[w] = self.round.t0.elapsed().as_secs_f64();
        self.round.bytes_out += (len * 8) as f64;
        if self.spec.relayed.get(w).copied().unwrap_or(false) {
            // Its results go to its group leader: idle again at once.
            return;
        }
        self.pending[w].push_back(Expect {
            iteration: self.round.iteration,
            phase: self.round.phase,
            remaining: self.spec.parts,
            posted: Instant::now(),
        });
    }

    /// Collect until the rule says decodable, the deadline policy says stop, or `interrupt` is
    /// raised. `idle` runs while no message is waiting (rank 0 keeps its results file within its
    /// flush interval during a long wait).
    pub fn collect<E: From<CommError>>(
        &mut self,
        rule: &mut dyn Rule,
        interrupt: Option<&AtomicBool>,
        idle: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<Collected, E> {
        let (deadline, policy) = (self.spec.deadline, self.spec.on_deadline);
        self.collect_by(rule, deadline, policy, interrupt, idle)
    }

    /// Change the deadline of the rounds to come (`train --adapt --adapt-deadline`).
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.spec.deadline = deadline;
    }

    /// Collect like [`Collector::collect`], but stop at `deadline` after the post whatever the
    /// deadline policy: for a round the job can finish without (K-FAC's spread
    /// eigendecompositions keep the previous eigenbasis), so a straggler never stalls it.
    pub fn collect_until<E: From<CommError>>(
        &mut self,
        rule: &mut dyn Rule,
        deadline: Duration,
        interrupt: Option<&AtomicBool>,
        idle: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<Collected, E> {
        self.collect_by(rule, deadline, OnDeadline::BestEffort, interrupt, idle)
    }

    /// The collection loop of both: past `deadline`, `policy` decides (best-effort: stop;
    /// wait: on until the spec's `max_wait`, then a timeout).
    fn collect_by<E: From<CommError>>(
        &mut self,
        rule: &mut dyn Rule,
        deadline: Duration,
        policy: OnDeadline,
        interrupt: Option<&AtomicBool>,
        idle: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<Collected, E> {
        let mut warned = false;
        loop {
            let got = self.poll(rule)?;
            if rule.decodable(&self.round) {
                return Ok(Collected::Decodable);
            }
            if interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Ok(Collected::Interrupted);
            }
            let waited = self.round.t0.elapsed();
            if waited >= deadline {
                match policy {
                    OnDeadline::BestEffort => return Ok(Collected::Deadline),
                    OnDeadline::Wait if waited >= self.spec.max_wait => {
                        return Err(CommError::Timeout {
                            iteration: self.round.iteration,
                            waited_ms: waited.as_secs_f64() * 1e3,
                            have: self.round.complete_responders(),
                            n: self.spec.workers,
                            silent: self.round.silent(),
                        }
                        .into());
                    }
                    OnDeadline::Wait if !warned => {
                        warned = true;
                        log::debug!(
                            "[rank 0] iteration {}: deadline passed with {} responders (silent ranks {:?}); waiting (at most {} ms)",
                            self.round.iteration,
                            self.round.complete_responders(),
                            self.round.silent(),
                            self.spec.max_wait.as_millis()
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

    /// End the collection of the current round: what arrives for it from now on is late.
    pub fn end(&mut self) {
        self.round.collecting = false;
    }

    /// Wait at most `wait` for the check pieces of the current check round. Returns which
    /// arrived (by piece index).
    pub fn await_checks(&mut self, wait: Duration) -> Result<&[bool], CommError> {
        let start = Instant::now();
        while self.have_check.iter().any(|h| !h) && start.elapsed() < wait {
            if !self.poll(&mut Idle)? {
                sleep_poll();
            }
        }
        Ok(&self.have_check)
    }

    /// Whether worker `w` sent any check piece in the current check round.
    pub fn sent_check(&self, w: usize) -> bool {
        self.check_senders.get(w).copied().unwrap_or(false)
    }

    /// Payload of check piece `i`, if it arrived.
    pub fn check(&self, i: usize) -> Option<&[f64]> {
        self.have_check
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| &self.checks[i][HEADER_LEN..])
    }

    /// Close the check round (its late pieces are drained from now on).
    pub fn end_checks(&mut self) {
        self.check_round = None;
        self.params_flags = 0;
        self.have_check.fill(false);
    }

    /// Receive every message that has arrived; whether any did.
    fn poll(&mut self, rule: &mut dyn Rule) -> Result<bool, CommError> {
        let mut any = false;
        while let Some(msg) = self.t.probe() {
            self.handle(msg, rule)?;
            any = true;
        }
        Ok(any)
    }

    /// Receive `msg` into the staging buffer; the sending worker's index (a message from a rank
    /// that is not a worker is a protocol error).
    fn take(&mut self, msg: Incoming<T::Handle>) -> Result<usize, CommError> {
        let src = msg.source;
        self.staging.resize(msg.len, 0.0);
        self.t.receive(msg, &mut self.staging);
        if src == 0 || src > self.spec.workers {
            return Err(CommError::Protocol {
                rank: src,
                reason: "message from a rank that is not a worker".into(),
            });
        }
        Ok(src - 1)
    }

    fn handle(&mut self, msg: Incoming<T::Handle>, rule: &mut dyn Rule) -> Result<(), CommError> {
        if msg.tag == TAG_PROBE {
            // An echo that came after its probe gave up waiting: drained.
            return self.on_echo(msg).map(|_| ());
        }
        let tag = msg.tag;
        let w = self.take(msg)?;
        let src = w + 1;
        if tag != super::protocol::TAG_ACK {
            self.received[w] += 1;
        }
        match Kind::of_tag(tag) {
            Some(Kind::Result) => self.on_result(w, rule),
            Some(Kind::Check) => {
                self.on_check(w);
                Ok(())
            }
            Some(Kind::Ack) => self.on_ack(w),
            _ => {
                self.round.rejected += 1;
                self.rejected[w] += 1;
                log::warn!("[rank 0] rejected a message with tag {tag} from rank {src}");
                Ok(())
            }
        }
    }

    /// Why worker `w`'s result in the staging buffer is invalid, if it is.
    fn verdict(&self, w: usize, front: Option<Expect>) -> Result<Header, String> {
        let h = Header::parse(&self.staging).map_err(|e| e.to_string())?;
        if h.kind != Kind::Result {
            return Err(format!("kind {:?} on the result tag", h.kind));
        }
        if h.rank != w + 1 {
            return Err(format!("header names rank {}", h.rank));
        }
        let Some(f) = front else {
            return Err(format!(
                "a result for iteration {} but the worker was given nothing",
                h.iteration
            ));
        };
        if (h.iteration, h.phase) != (f.iteration, f.phase) {
            return Err(format!(
                "iteration {} phase {} but the worker was given iteration {} phase {}",
                h.iteration, h.phase, f.iteration, f.phase
            ));
        }
        if h.part >= self.spec.parts {
            return Err(format!("part {} of {}", h.part, self.spec.parts));
        }
        let expect = self.spec.result_len.get(h.phase).map_or(0, |p| p[w]);
        if h.len == 0 {
            if self.round.is_current(h.iteration, h.phase) {
                return Err("an abandoned part for the round being collected".into());
            }
            return Ok(h);
        }
        if h.len != expect {
            return Err(format!("payload of {} values, expected {expect}", h.len));
        }
        if self.round.is_current(h.iteration, h.phase)
            && self.round.responders[h.part].binary_search(&w).is_ok()
            && self.round.stale_age[w] != 1.0
        {
            return Err(format!("part {} twice", h.part));
        }
        if !payload_is_finite(&self.staging[HEADER_LEN..]) {
            return Err("non-finite values in the payload".into());
        }
        if let Some((c, len)) = &self.spec.compressed {
            let wire = &self.staging[HEADER_LEN..];
            c.validate(&wire[..c.wire_len(*len).min(wire.len())], *len)
                .map_err(|e| e.to_string())?;
        }
        Ok(h)
    }

    fn on_result(&mut self, w: usize, rule: &mut dyn Rule) -> Result<(), CommError> {
        self.round.bytes_in += (self.staging.len() * 8) as f64;
        self.round.messages_in += 1;
        let front = self.pending[w].front().copied();
        let verdict = self.verdict(w, front);
        let on_time =
            matches!(&verdict, Ok(h) if h.len > 0 && self.round.is_current(h.iteration, h.phase));
        if let Some(f) = self.pending[w].front_mut() {
            f.remaining -= 1;
            if f.remaining == 0 {
                self.pending[w].pop_front();
            }
        }
        if let Ok(h) = &verdict {
            self.stored_s[w] = h.count;
        }
        match verdict {
            Ok(h) if h.len == 0 => {
                log::trace!(
                    "[rank 0] rank {} abandoned part {} of iteration {}",
                    w + 1,
                    h.part,
                    h.iteration
                );
            }
            Err(reason) => {
                self.round.rejected += 1;
                self.rejected[w] += 1;
                log::warn!(
                    "[rank 0] iteration {}: rejected message from rank {}: {reason}",
                    self.round.iteration,
                    w + 1
                );
            }
            Ok(h) if on_time => self.accept(w, h, rule)?,
            Ok(h) => self.late_result(w, h, front, rule)?,
        }
        if self.round.collecting && self.pending[w].is_empty() && !self.posted[w] && !self.held[w] {
            self.post_to(w);
        }
        Ok(())
    }

    /// An on-time result: into the worker's slot, counted as a responder.
    fn accept(&mut self, w: usize, h: Header, rule: &mut dyn Rule) -> Result<(), CommError> {
        // A fresh response replaces one folded in from the previous round.
        self.drop_stale(w);
        let q = h.part;
        std::mem::swap(&mut self.staging, &mut self.slots[w][q]);
        let r = &mut self.round;
        if let Err(pos) = r.responders[q].binary_search(&w) {
            r.responders[q].insert(pos, w);
        }
        let a = r.t0.elapsed().as_secs_f64();
        r.parts_in[w] += 1;
        r.arrival_s[w] = a;
        r.compute_s[w] = h.compute_s;
        r.injected_s[w] = h.injected_s;
        r.stale_age[w] = 0.0;
        r.finish
            .push((r.post_offset[w] + h.compute_s + h.injected_s, w, q));
        rule.accept(w, q, &self.slots[w][q][HEADER_LEN..])
    }

    /// Whether a message of `iteration` from worker `w` may stand in for its missing response
    /// (`reuse_stale`: exactly one round late, one part, not a check round, nothing from `w`).
    fn reusable(&self, w: usize, h: &Header) -> bool {
        self.spec.reuse_stale
            && self.spec.parts == 1
            && self.round.collecting
            && h.phase == self.round.phase
            && h.iteration + 1 == self.round.iteration
            && self.check_round.is_none()
            && self.round.parts_in[w] == 0
    }

    fn late_result(
        &mut self,
        w: usize,
        h: Header,
        front: Option<Expect>,
        rule: &mut dyn Rule,
    ) -> Result<(), CommError> {
        let used = self.reusable(w, &h);
        self.late.push(LateArrival {
            received_during: if self.draining {
                self.round.iteration + 1
            } else {
                self.round.iteration
            },
            iteration: h.iteration,
            phase: h.phase,
            rank: w + 1,
            part: h.part,
            delay_s: front.map_or(f64::NAN, |f| f.posted.elapsed().as_secs_f64()),
            compute_s: h.compute_s,
            injected_s: h.injected_s,
            used,
        });
        if used {
            std::mem::swap(&mut self.staging, &mut self.slots[w][0]);
            let r = &mut self.round;
            if let Err(pos) = r.responders[0].binary_search(&w) {
                r.responders[0].insert(pos, w);
            }
            r.parts_in[w] = 1;
            r.arrival_s[w] = r.t0.elapsed().as_secs_f64();
            r.compute_s[w] = h.compute_s;
            r.injected_s[w] = h.injected_s;
            r.stale_age[w] = 1.0;
            r.stale += 1;
            log::debug!(
                "[rank 0] iteration {}: folded in rank {}'s result of iteration {}",
                r.iteration,
                w + 1,
                h.iteration
            );
            return rule.accept(w, 0, &self.slots[w][0][HEADER_LEN..]);
        }
        self.round.late += 1;
        log::debug!(
            "[rank 0] late message from rank {} for iteration {} (now {})",
            w + 1,
            h.iteration,
            self.round.iteration
        );
        Ok(())
    }

    /// Remove worker `w`'s folded-in stale response, if any, from the round being collected.
    fn drop_stale(&mut self, w: usize) {
        let r = &mut self.round;
        if r.stale_age[w] == 1.0 {
            if let Ok(pos) = r.responders[0].binary_search(&w) {
                r.responders[0].remove(pos);
            }
            r.parts_in[w] = 0;
            r.stale_age[w] = f64::NAN;
            r.stale -= 1;
        }
    }

    fn on_check(&mut self, w: usize) {
        let src = w + 1;
        let h = Header::parse(&self.staging);
        if let Ok(h) = &h {
            if h.kind == Kind::Check
                && h.rank == src
                && Some((h.iteration, h.phase)) == self.check_round
            {
                self.check_senders[w] = true;
            }
        }
        match h {
            Ok(h)
                if h.kind == Kind::Check
                    && h.rank == src
                    && Some((h.iteration, h.phase)) == self.check_round
                    && h.len == self.spec.check_len
                    && h.part < self.checks.len()
                    && payload_is_finite(&self.staging[HEADER_LEN..]) =>
            {
                if !self.have_check[h.part] {
                    std::mem::swap(&mut self.staging, &mut self.checks[h.part]);
                    self.have_check[h.part] = true;
                }
            }
            Ok(h)
                if h.kind == Kind::Check
                    && h.rank == src
                    && self.check_round != Some((h.iteration, h.phase)) =>
            {
                log::debug!("[rank 0] drained a late check message from rank {src}");
            }
            _ => {
                self.round.rejected += 1;
                self.rejected[w] += 1;
                log::warn!("[rank 0] ignored an invalid check message from rank {src}");
            }
        }
    }

    fn on_ack(&mut self, w: usize) -> Result<(), CommError> {
        match Header::parse(&self.staging) {
            Ok(h) if h.kind == Kind::Ack && h.rank == w + 1 => {
                self.acked[w] = Some(h.count);
                self.peak_rss_kib[w] = Header::ack_peak_rss_kib(&self.staging).unwrap_or(f64::NAN);
                Ok(())
            }
            _ => Err(CommError::Protocol {
                rank: w + 1,
                reason: "malformed STOP acknowledgement".into(),
            }),
        }
    }

    /// Stop every worker with the job's `exit_code`, reconcile message counts and drain, for at
    /// most `bound`. Returns the ranks of the workers that were not reconciled (empty when all
    /// were).
    pub fn shutdown(&mut self, exit_code: i32, bound: Duration) -> Result<Vec<usize>, CommError> {
        self.end();
        self.draining = true;
        let stop = Header::stop(exit_code.clamp(0, 255)).to_message();
        for w in 0..self.spec.workers {
            self.t.send(w + 1, TAG_STOP, &stop);
        }
        let start = Instant::now();
        let unreconciled = loop {
            let got = self.poll(&mut Idle)?;
            let open: Vec<usize> = (0..self.spec.workers)
                .filter(|&w| self.acked[w] != Some(self.received[w]))
                .map(|w| w + 1)
                .collect();
            if open.is_empty() || start.elapsed() > bound {
                break open;
            }
            if !got {
                sleep_poll();
            }
        };
        if unreconciled.is_empty() {
            for b in self.ring.iter_mut().chain(self.each.iter_mut().flatten()) {
                b.wait();
            }
        }
        Ok(unreconciled)
    }
}
