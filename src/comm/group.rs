//! The links of the tree decode (`train --decode-tree G`, issue 20 §4): a group member sends
//! its results to its group leader instead of rank 0; the leader gathers them and forwards ONE
//! combined result per round to rank 0, so rank 0 receives n/G results instead of n.
//!
//! Both ends wrap a worker's transport end ([`WorkerTransport`]), so [`super::WorkerLink`] and
//! the job's [`super::WorkerJob`] run unchanged on them:
//!
//! - [`Relay`] (a member): results (the result tag) go to the leader with nonblocking sends
//!   from the worker link's buffers; everything else (checks, probe echoes, the ACK) to rank 0
//!   as before. Rank 0 posts parameters to a member every round (it never hears from it, so
//!   it cannot know when it is idle): a member that finds newer parameters waiting behind the
//!   ones it matched receives and skips the older ones, so it always computes on the newest.
//!   On STOP it sends its leader a Done with the number of results it sent it, and leaves them
//!   out of its ACK count. When rank 0 sends it [`Kind::Direct`] (its leader went silent,
//!   below), it sends its results to rank 0 from then on, as a worker of the flat decode.
//! - [`Leader`] (the first worker of a group): when the worker link posts the leader's own
//!   result, the leader receives its members' results for that round with matched probes per
//!   member, checking every header like the collector does (kind, sender, round, length, finite
//!   values; an invalid one is an erasure, counted and never used; older rounds are drained as
//!   late; newer ones kept for their round), until the responders can be decoded (the job's
//!   `weights` says so and gives the weights), newer parameters or STOP from rank 0 are waiting
//!   (rank 0 decoded without this group), or the group deadline passes. It then posts
//!   Σ_m a_m (result of m) with one more value, the member mask (bit m for member m in the
//!   combination), under its own header (its compute and injected times); or, when the group
//!   could not be decoded, an abandoned marker (a header with length 0), so rank 0 knows the
//!   leader is idle. On STOP it drains every member until each one's Done count matches what
//!   it received (bounded by the shutdown bound).
//!
//! Fallback: rank 0 sends every member of a group whose leader has not answered a round within
//! the deadline a [`Kind::Direct`] (through the collector, `Collector::redirect`); the member
//! takes it while waiting for parameters, before any newer ones, and its results go to rank 0
//! from then on (rank 0 expects them from the round it posts next). Rank 0 then decodes that
//! group from its members' own messages (`coding::RootCode`). When the leader answers again
//! (it owes rank 0 nothing at the end of an iteration: its late result arrived), rank 0 sends
//! the members [`Kind::Rejoin`] (`Collector::rejoin`), taken the same way: their results go to
//! the leader again from the round posted next, and the group is decoded through the leader. A member's results sent to the
//! leader before the order are lost to rank 0. A member sends to its leader from copies of
//! its results (a pool of buffers): sends to a stopped leader never complete (not even small
//! ones under Open MPI), and would otherwise hold the worker link's buffers for good; at STOP
//! the copies still in flight after a fallback are left to the leader (never freed).
//!
//! Compression (`--compress`, [`GroupCompression`]): the link to rank 0 is the bottleneck, so
//! the leader compresses the combination it forwards (its coded vector; the loss and the member
//! mask stay exact), with error feedback on it when asked (a round it gives up leaves the
//! residual for the next combination it sends). Results that go into a combination — a
//! member's to its leader, the leader's own — are sent uncompressed
//! ([`WorkerTransport::combined`]): that traffic stays in the group, and compressing it too would
//! compound two compression errors in the combination. A member sent to rank 0
//! ([`Kind::Direct`]) compresses its own results as a flat worker does (the job's compressor
//! and its own error feedback).
//!
//! What is decoded where, and which straggler sets decode exactly, is the code's business
//! (`coding::TreeCode`); this module only moves, combines and compresses messages. Not here:
//! chunks, support messages.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::protocol::{
    payload_is_finite, Header, Kind, HEADER_LEN, TAG_DIRECT, TAG_DONE, TAG_PARAMS, TAG_REJOIN,
    TAG_RESULT, TAG_STOP,
};
use super::{Incoming, SendSlot, WorkerTransport};
use crate::compress::{CompressError, Compressor, ErrorFeedback, NoiseKey};

/// A group of the tree decode, as its leader sees it.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The group's ranks, leader first (member m of the group is `ranks[m]`).
    pub ranks: Vec<usize>,
    /// Payload values of a member's result (the combination carries one more: the mask).
    pub len: usize,
    /// The group deadline: how long the leader gathers one round before giving it up.
    pub wait: Duration,
    /// Bound on draining the members at STOP.
    pub shutdown: Duration,
    /// `--compress`: how the leader compresses the combination it forwards (None: as it is).
    pub compress: Option<GroupCompression>,
}

impl GroupSpec {
    /// Values of a leader's forwarded payload: the combination (with `--compress`, its first
    /// values compressed) and the member mask.
    pub fn forwarded_len(&self) -> usize {
        match &self.compress {
            Some(gc) => gc.c.wire_len(gc.values) + self.len.saturating_sub(gc.values) + 1,
            None => self.len + 1,
        }
    }
}

/// How a leader compresses the combination it forwards (`--compress` with `--decode-tree`):
/// the first `values` values (the coded vector) by `c`, with error feedback on the forwarded
/// combination when `error_feedback`; the rest (the loss) and the member mask stay exact.
#[derive(Debug, Clone, Copy)]
pub struct GroupCompression {
    pub c: Compressor,
    /// Values compressed (the coded vector; a member's result has one more, the loss).
    pub values: usize,
    pub error_feedback: bool,
    /// The run's seed (QSGD's draws, low-rank's cold start), keyed with the leader's rank.
    pub seed: u64,
}

/// What a leader did with its rounds and its members' messages, for its log line.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct GroupStats {
    /// Rounds forwarded to rank 0 as one combined result.
    pub forwarded: u64,
    /// Rounds given up (not decodable before rank 0 moved on or the group deadline).
    pub given_up: u64,
    /// Member results that came after their round (drained, not used).
    pub late: u64,
    /// Member messages refused (invalid header or payload).
    pub refused: u64,
}

/// Largest group: the member mask travels as an f64 integer (exact below 2^53).
pub const MAX_GROUP: usize = 52;

/// Sleep between polls of a gathering leader (as rank 0's collector).
fn sleep_poll() {
    std::thread::sleep(Duration::from_micros(50));
}

/// The [`WorkerTransport`] methods both group ends pass through to the wrapped end `t`.
macro_rules! passed_through {
    () => {
        fn rank(&self) -> usize {
            self.t.rank()
        }
        fn buffer(&self, len: usize) -> T::Buf {
            self.t.buffer(len)
        }
        fn receive(&mut self, msg: Incoming<T::Handle>, into: &mut [f64]) {
            self.t.receive(msg, into);
        }
        fn waiting(&mut self, tag: i32) -> bool {
            self.t.waiting(tag)
        }
        fn post_to(&mut self, buf: &mut T::Buf, to: usize, tag: i32, len: usize) {
            self.t.post_to(buf, to, tag, len);
        }
        fn send_to(&mut self, to: usize, tag: i32, data: &[f64]) {
            self.t.send_to(to, tag, data);
        }
        fn probe_from(&mut self, from: usize) -> Option<Incoming<T::Handle>> {
            self.t.probe_from(from)
        }
    };
}

/// A group member's transport end: results go to the leader (to rank 0 once it says so).
pub struct Relay<T: WorkerTransport> {
    t: T,
    leader: usize,
    relayed: u64,
    /// Rank 0 sent [`Kind::Direct`]: results go to rank 0.
    direct: bool,
    /// Copies of the results sent to the leader, each sent from its own buffer, so that a send
    /// a silent leader never completes holds one of these and never the worker link's buffers
    /// (which its results to rank 0 need after the fallback).
    pool: Vec<T::Buf>,
    scratch: Vec<f64>,
}

impl<T: WorkerTransport> Relay<T> {
    /// A member over `t` whose leader is rank `leader`.
    pub fn new(t: T, leader: usize) -> Self {
        Relay {
            t,
            leader,
            relayed: 0,
            direct: false,
            pool: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

impl<T: WorkerTransport> Relay<T> {
    /// Post a copy of `data` to the leader from a free pool buffer (the pool grows while sends
    /// to a silent leader stay incomplete).
    fn post_copy_to_leader(&mut self, tag: i32, data: &[f64]) {
        let len = data.len();
        let i = match self
            .pool
            .iter_mut()
            .position(|b| b.len() >= len && b.is_free())
        {
            Some(i) => i,
            None => {
                self.pool.push(self.t.buffer(len));
                self.pool.len() - 1
            }
        };
        self.pool[i].write()[..len].copy_from_slice(data);
        self.t.post_to(&mut self.pool[i], self.leader, tag, len);
    }
}

impl<T: WorkerTransport> WorkerTransport for Relay<T> {
    type Buf = T::Buf;
    type Handle = T::Handle;

    fn post(&mut self, buf: &mut T::Buf, tag: i32, len: usize) {
        if tag == TAG_RESULT && !self.direct {
            self.relayed += 1;
            let data = &buf.read()[..len.min(buf.len())];
            self.post_copy_to_leader(tag, data);
        } else {
            self.t.post(buf, tag, len);
        }
    }
    fn send(&mut self, tag: i32, data: &[f64]) {
        if tag == TAG_RESULT && !self.direct {
            self.relayed += 1;
            self.post_copy_to_leader(tag, data);
        } else {
            self.t.send(tag, data);
        }
    }
    /// The next message from rank 0; parameters with newer ones waiting behind them are
    /// received and skipped; rank 0's [`Kind::Direct`] is taken here (results to rank 0 from
    /// now on), a malformed one is refused like any invalid message (logged, not obeyed).
    fn wait(&mut self) -> Incoming<T::Handle> {
        loop {
            let msg = self.t.wait();
            if msg.tag == TAG_DIRECT || msg.tag == TAG_REJOIN {
                self.scratch.resize(msg.len, 0.0);
                self.t.receive(msg, &mut self.scratch);
                match Header::parse(&self.scratch) {
                    Ok(h) if h.kind == Kind::Direct => {
                        log::warn!(
                            "[rank {}] group member: leader rank {} silent, results to rank 0 from iteration {}",
                            self.t.rank(),
                            self.leader,
                            h.iteration
                        );
                        self.direct = true;
                    }
                    Ok(h) if h.kind == Kind::Rejoin => {
                        log::warn!(
                            "[rank {}] group member: leader rank {} answers again, results to it from iteration {}",
                            self.t.rank(),
                            self.leader,
                            h.iteration
                        );
                        self.direct = false;
                    }
                    Ok(h) => log::warn!(
                        "[rank {}] group member: refused a {:?} from rank 0 (an order was expected)",
                        self.t.rank(),
                        h.kind
                    ),
                    Err(e) => log::warn!(
                        "[rank {}] group member: refused a message from rank 0: {e}",
                        self.t.rank()
                    ),
                }
                continue;
            }
            if msg.tag == TAG_PARAMS && self.t.waiting(TAG_PARAMS) {
                self.scratch.resize(msg.len, 0.0);
                self.t.receive(msg, &mut self.scratch);
                continue;
            }
            return msg;
        }
    }
    passed_through!();
    fn relayed(&self) -> u64 {
        self.relayed
    }
    /// Results to the leader go into its combination (uncompressed); after [`Kind::Direct`]
    /// they go to rank 0 as a flat worker's (compressed by the job as usual).
    fn combined(&self) -> bool {
        !self.direct
    }
    /// Tell the leader how many results it sent it; complete the sends to it. After a
    /// fallback the leader may never receive (stopped): the Done and the copies still in
    /// flight are left to it, their buffers leaked (never freed, so never reused or read
    /// freed), and the member goes on to its ACK.
    fn close(&mut self) {
        let done = Header::done(self.t.rank(), self.relayed).to_message();
        self.post_copy_to_leader(TAG_DONE, &done);
        if !self.direct {
            for b in &mut self.pool {
                b.wait();
            }
            return;
        }
        let stuck = self
            .pool
            .iter_mut()
            .map(|b| usize::from(!b.is_free()))
            .sum::<usize>();
        if stuck > 0 {
            log::warn!(
                "[rank {}] group member: {stuck} sends to the silent leader rank {} never completed; left to it",
                self.t.rank(),
                self.leader
            );
        }
        for b in std::mem::take(&mut self.pool) {
            std::mem::forget(b);
        }
    }
}

/// A group leader's transport end: its own result is combined with its members' and forwarded.
/// `weights(set)` gives the decoding weights of the sorted member indices `set` (0 = the
/// leader), None when the set cannot be decoded.
pub struct Leader<T: WorkerTransport, F> {
    t: T,
    spec: GroupSpec,
    weights: F,
    cache: HashMap<Vec<usize>, Option<Vec<f64>>>,
    /// Per member: results of rounds the leader has not reached yet, in order.
    ahead: Vec<VecDeque<Vec<f64>>>,
    /// This round's result per member (the leader's own at 0), valid where `have`.
    got: Vec<Vec<f64>>,
    have: Vec<bool>,
    /// Result-tag messages received from each member (reconciled with its Done).
    received: Vec<u64>,
    done: Vec<Option<u64>>,
    out: [Option<T::Buf>; 2],
    which: usize,
    staging: Vec<f64>,
    stats: GroupStats,
    /// `--compress`: the combination before compression, the error feedback on it (with
    /// `--error-feedback`) or the compressor's own state (low-rank's warm start).
    combo: Vec<f64>,
    feedback: Option<ErrorFeedback>,
    warm: Vec<f64>,
}

impl<T: WorkerTransport, F: FnMut(&[usize]) -> Option<Vec<f64>>> Leader<T, F> {
    /// The leader of `spec`'s group over `t`.
    pub fn new(t: T, spec: GroupSpec, weights: F) -> Self {
        let g = spec.ranks.len();
        Leader {
            t,
            weights,
            cache: HashMap::new(),
            ahead: vec![VecDeque::new(); g],
            got: vec![Vec::with_capacity(HEADER_LEN + spec.len); g],
            have: vec![false; g],
            received: vec![0; g],
            done: vec![None; g],
            out: [None, None],
            which: 0,
            staging: Vec::new(),
            stats: GroupStats::default(),
            combo: Vec::new(),
            feedback: spec
                .compress
                .filter(|c| c.error_feedback)
                .map(|_| ErrorFeedback::default()),
            warm: Vec::new(),
            spec,
        }
    }

    /// What the leader did so far.
    pub fn stats(&self) -> GroupStats {
        self.stats
    }

    /// Decoding weights of `set`, cached per set.
    fn decode(&mut self, set: &[usize]) -> Option<Vec<f64>> {
        if let Some(a) = self.cache.get(set) {
            return a.clone();
        }
        let a = (self.weights)(set);
        self.cache.insert(set.to_vec(), a.clone());
        a
    }

    /// Receive everything member `m` has sent; `round`: (iteration, phase, part) being
    /// gathered (None at shutdown: every result is late).
    fn pull(&mut self, m: usize, round: Option<(u64, usize, usize)>) {
        let src = self.spec.ranks[m];
        while let Some(msg) = self.t.probe_from(src) {
            let tag = msg.tag;
            self.staging.resize(msg.len, 0.0);
            self.t.receive(msg, &mut self.staging);
            if tag == TAG_RESULT {
                self.received[m] += 1;
            }
            self.take(m, tag, round);
        }
    }

    /// Member `m`'s message in the staging buffer.
    fn take(&mut self, m: usize, tag: i32, round: Option<(u64, usize, usize)>) {
        let src = self.spec.ranks[m];
        let h = match Header::parse(&self.staging) {
            Ok(h) => h,
            Err(e) => return self.refuse(src, &e.to_string()),
        };
        if h.rank != src {
            return self.refuse(src, &format!("header names rank {}", h.rank));
        }
        match (Kind::of_tag(tag), h.kind) {
            (Some(Kind::Done), Kind::Done) => self.done[m] = Some(h.count),
            (Some(Kind::Result), Kind::Result) if h.len == 0 => {}
            (Some(Kind::Result), Kind::Result) if h.len != self.spec.len => self.refuse(
                src,
                &format!("payload of {} values, expected {}", h.len, self.spec.len),
            ),
            (Some(Kind::Result), Kind::Result)
                if !payload_is_finite(&self.staging[HEADER_LEN..]) =>
            {
                self.refuse(src, "non-finite values in the payload")
            }
            (Some(Kind::Result), Kind::Result) => match round {
                Some((it, phase, part))
                    if (h.iteration, h.phase, h.part) == (it, phase, part) && !self.have[m] =>
                {
                    std::mem::swap(&mut self.staging, &mut self.got[m]);
                    self.have[m] = true;
                }
                Some((it, _, _)) if h.iteration > it => {
                    self.ahead[m].push_back(self.staging.clone());
                }
                _ => self.stats.late += 1,
            },
            _ => self.refuse(src, &format!("unexpected {:?} with tag {tag}", h.kind)),
        }
    }

    fn refuse(&mut self, src: usize, reason: &str) {
        self.stats.refused += 1;
        log::warn!(
            "[rank {}] group leader: refused a message from rank {src}: {reason}",
            self.t.rank()
        );
    }

    /// Start gathering `round`: members' kept results of it are taken, older ones dropped.
    fn start(&mut self, round: (u64, usize, usize)) {
        for m in 1..self.spec.ranks.len() {
            self.have[m] = false;
            while let Some(msg) = self.ahead[m].pop_front() {
                self.staging = msg;
                let src = self.spec.ranks[m];
                match Header::parse(&self.staging) {
                    Ok(h) if h.iteration > round.0 => {
                        self.ahead[m].push_front(std::mem::take(&mut self.staging));
                        break;
                    }
                    Ok(_) => self.take(m, TAG_RESULT, Some(round)),
                    Err(e) => self.refuse(src, &e.to_string()),
                }
            }
        }
    }

    /// Gather `round` until decodable (the responders and their weights), rank 0 moves on or
    /// the group deadline passes (None).
    fn gather(&mut self, round: (u64, usize, usize)) -> Option<(Vec<usize>, Vec<f64>)> {
        let start = Instant::now();
        let g = self.spec.ranks.len();
        loop {
            for m in 1..g {
                self.pull(m, Some(round));
            }
            let set: Vec<usize> = (0..g).filter(|&m| self.have[m]).collect();
            if let Some(a) = self.decode(&set) {
                return Some((set, a));
            }
            if self.t.waiting(TAG_PARAMS)
                || self.t.waiting(TAG_STOP)
                || start.elapsed() >= self.spec.wait
            {
                return None;
            }
            sleep_poll();
        }
    }

    /// Post Σ a_m (result of m) and the member mask under the leader's header `h`; with
    /// `--compress` the combination's coded vector compressed (error feedback on it when
    /// asked; the loss and the mask exact). A compression error forwards nothing.
    fn forward(&mut self, h: &Header, set: &[usize], a: &[f64]) -> Result<(), CompressError> {
        let len = self.spec.len;
        let payload_len = self.spec.forwarded_len();
        let total = HEADER_LEN + payload_len;
        let slot = &mut self.out[self.which];
        let buf = slot.get_or_insert_with(|| self.t.buffer(total));
        let data = buf.write();
        let mask = set.iter().fold(0u64, |mask, &m| mask | 1 << m);
        let combine = |into: &mut [f64], got: &[Vec<f64>]| {
            into.fill(0.0);
            for (&m, &am) in set.iter().zip(a) {
                for (p, v) in into.iter_mut().zip(&got[m][HEADER_LEN..]) {
                    *p += am * v;
                }
            }
        };
        match self.spec.compress {
            None => combine(&mut data[HEADER_LEN..HEADER_LEN + len], &self.got),
            Some(gc) => {
                self.combo.resize(len, 0.0);
                combine(&mut self.combo, &self.got);
                let (v, rest) = self.combo.split_at(gc.values.min(len));
                let payload = &mut data[HEADER_LEN..total - 1];
                let (wire, tail) = payload.split_at_mut(gc.c.wire_len(v.len()));
                let key = NoiseKey {
                    seed: gc.seed,
                    iteration: h.iteration,
                    rank: h.rank,
                    part: h.part,
                };
                match &mut self.feedback {
                    Some(e) => e.compress(&gc.c, v, key, wire)?,
                    None => gc.c.compress_with(v, key, wire, &mut self.warm)?,
                }
                tail.copy_from_slice(rest);
            }
        }
        data[total - 1] = mask as f64;
        let mut out = Header::result(h.iteration, h.rank, h.phase, h.part, payload_len);
        out.compute_s = h.compute_s;
        out.injected_s = h.injected_s;
        out.write(data);
        self.t.post(buf, TAG_RESULT, total);
        self.which ^= 1;
        self.stats.forwarded += 1;
        Ok(())
    }
}

impl<T: WorkerTransport, F: FnMut(&[usize]) -> Option<Vec<f64>>> WorkerTransport for Leader<T, F> {
    type Buf = T::Buf;
    type Handle = T::Handle;

    /// The leader's own result: gather the group's round, then forward the combination (or an
    /// abandoned marker). Anything else, and an own result that is not a valid one of the
    /// group's length (rank 0 judges it), goes to rank 0 as it is.
    fn post(&mut self, buf: &mut T::Buf, tag: i32, len: usize) {
        let own = &buf.read()[..len.min(buf.len())];
        let h = match Header::parse(own) {
            Ok(h) if tag == TAG_RESULT && h.kind == Kind::Result && h.len == self.spec.len => h,
            _ => return self.t.post(buf, tag, len),
        };
        self.got[0].clear();
        self.got[0].extend_from_slice(own);
        self.have[0] = true;
        let round = (h.iteration, h.phase, h.part);
        self.start(round);
        match self
            .gather(round)
            .map(|(set, a)| self.forward(&h, &set, &a))
        {
            Some(Ok(())) => return,
            Some(Err(e)) => log::error!(
                "[rank {}] group leader: iteration {} not forwarded: {e}",
                h.rank,
                h.iteration
            ),
            None => log::debug!(
                "[rank {}] group leader: iteration {} not decodable in the group, given up",
                h.rank,
                h.iteration
            ),
        }
        self.stats.given_up += 1;
        let marker = Header::result(h.iteration, h.rank, h.phase, h.part, 0).to_message();
        self.t.send(TAG_RESULT, &marker);
    }
    fn send(&mut self, tag: i32, data: &[f64]) {
        self.t.send(tag, data);
    }
    fn wait(&mut self) -> Incoming<T::Handle> {
        self.t.wait()
    }
    passed_through!();
    /// The leader's own result is one term of its combination: uncompressed.
    fn combined(&self) -> bool {
        true
    }
    /// Drain every member until its Done count matches what arrived (at most the shutdown
    /// bound), then complete the forwarded sends.
    fn close(&mut self) {
        let start = Instant::now();
        let g = self.spec.ranks.len();
        loop {
            for m in 1..g {
                self.pull(m, None);
            }
            let open: Vec<usize> = (1..g)
                .filter(|&m| self.done[m] != Some(self.received[m]))
                .map(|m| self.spec.ranks[m])
                .collect();
            if open.is_empty() {
                break;
            }
            if start.elapsed() > self.spec.shutdown {
                log::warn!(
                    "[rank {}] group leader: members {open:?} not reconciled at STOP",
                    self.t.rank()
                );
                break;
            }
            sleep_poll();
        }
        for b in self.out.iter_mut().flatten() {
            b.wait();
        }
        log::debug!("[rank {}] group leader: {:?}", self.t.rank(), self.stats);
    }
}

#[cfg(test)]
mod tests {
    use super::super::local;
    use super::super::Transport;
    use super::*;

    /// A result of `len` values, all `v`, from `rank` for `iteration`.
    fn result(rank: usize, iteration: u64, len: usize, v: f64) -> Vec<f64> {
        let mut m = vec![v; HEADER_LEN + len];
        Header::result(iteration, rank, 0, 0, len).write(&mut m);
        m
    }

    fn post<T: WorkerTransport>(t: &mut T, msg: &[f64]) {
        let mut b = t.buffer(msg.len());
        b.write().copy_from_slice(msg);
        t.post(&mut b, TAG_RESULT, msg.len());
    }

    /// Any two of three decode, each with weight 1/|set| · 2 (a stand-in for a code's).
    fn two_of_three(set: &[usize]) -> Option<Vec<f64>> {
        (set.len() >= 2).then(|| vec![0.5; set.len()])
    }

    fn next(hub: &mut local::LocalHub) -> (usize, Vec<f64>) {
        let msg = hub.probe().expect("a message at rank 0");
        let mut v = vec![0.0; msg.len];
        let src = msg.source;
        hub.receive(msg, &mut v);
        (src, v)
    }

    type TestLeader = Leader<local::LocalWorker, fn(&[usize]) -> Option<Vec<f64>>>;

    /// Rank 0, the leader (rank 1, any two of three decode) and its members 2 and 3, whose
    /// results are of 2 values; the group deadline and shutdown bound are `ms`.
    fn group(
        ms: u64,
    ) -> (
        local::LocalHub,
        TestLeader,
        Relay<local::LocalWorker>,
        Relay<local::LocalWorker>,
    ) {
        group_of(ms, 2, None)
    }

    /// [`group`] with results of `len` values, the leader compressing by `compress`.
    fn group_of(
        ms: u64,
        len: usize,
        compress: Option<GroupCompression>,
    ) -> (
        local::LocalHub,
        TestLeader,
        Relay<local::LocalWorker>,
        Relay<local::LocalWorker>,
    ) {
        let (hub, mut ws) = local::world(3);
        let third = ws.pop().expect("rank 3");
        let second = ws.pop().expect("rank 2");
        let first = ws.pop().expect("rank 1");
        let spec = GroupSpec {
            ranks: vec![1, 2, 3],
            len,
            wait: Duration::from_millis(ms),
            shutdown: Duration::from_millis(ms),
            compress,
        };
        let weights: fn(&[usize]) -> Option<Vec<f64>> = two_of_three;
        let leader = Leader::new(first, spec, weights);
        (hub, leader, Relay::new(second, 1), Relay::new(third, 1))
    }

    #[test]
    fn a_leader_forwards_one_combination_of_a_decodable_set_with_its_mask() {
        let (mut hub, mut leader, mut m2, mut m3) = group(200);
        // Rank 3 answers iteration 0 (rank 2 straggles), and already iteration 1.
        post(&mut m3, &result(3, 0, 2, 4.0));
        post(&mut m3, &result(3, 1, 2, 8.0));
        post(&mut leader, &result(1, 0, 2, 2.0));
        let (src, v) = next(&mut hub);
        let h = Header::parse(&v).expect("valid header");
        assert_eq!((src, h.kind, h.iteration, h.len), (1, Kind::Result, 0, 3));
        assert_eq!(&v[HEADER_LEN..], &[3.0, 3.0, 0b101 as f64]);
        // Iteration 1: rank 2's late result of 0 is drained, rank 3's kept one is used.
        post(&mut m2, &result(2, 0, 2, 100.0));
        post(&mut m2, &result(2, 1, 2, 6.0));
        post(&mut leader, &result(1, 1, 2, 2.0));
        let (_, v) = next(&mut hub);
        assert_eq!(&v[HEADER_LEN..], &[8.0, 8.0, 0b111 as f64]);
        assert_eq!(leader.stats().late, 1);
        // Nothing from the members: given up at the group deadline, with an abandoned marker.
        post(&mut leader, &result(1, 2, 2, 2.0));
        let (_, v) = next(&mut hub);
        let h = Header::parse(&v).expect("valid header");
        assert_eq!((h.iteration, h.len), (2, 0));
        assert_eq!(leader.stats().given_up, 1);
        // Members' results are not theirs to ACK; Done reconciles them with the leader.
        assert_eq!((m2.relayed(), m3.relayed()), (2, 2));
        m2.close();
        m3.close();
        leader.close();
        assert_eq!(leader.received[1..], [2, 2]);
        assert_eq!(leader.done[1..], [Some(2), Some(2)]);
        assert!(hub.probe().is_none());
    }

    #[test]
    fn a_member_told_direct_sends_its_results_to_rank_0() {
        let (mut hub, _leader, mut m2, _m3) = group(30);
        // Before the order: to the leader (rank 1), not counted in the ACK.
        post(&mut m2, &result(2, 0, 2, 1.0));
        assert_eq!(m2.relayed(), 1);
        // A malformed order is refused (not obeyed); the real one is taken while waiting,
        // before the parameters behind it.
        hub.send(2, TAG_DIRECT, &Header::stop(0).to_message());
        hub.send(2, TAG_DIRECT, &Header::direct(1).to_message());
        hub.send(2, TAG_PARAMS, &Header::params(1, 0, 0, 0).to_message());
        assert!(m2.combined(), "to the leader: uncompressed");
        let msg = m2.wait();
        assert_eq!(msg.tag, TAG_PARAMS);
        assert!(!m2.combined(), "to rank 0: compressed as a flat worker's");
        post(&mut m2, &result(2, 1, 2, 3.0));
        let (src, v) = next(&mut hub);
        let h = Header::parse(&v).expect("valid header");
        assert_eq!((src, h.iteration, h.len), (2, 1, 2));
        assert_eq!(&v[HEADER_LEN..], &[3.0, 3.0]);
        assert_eq!(m2.relayed(), 1);
        assert!(hub.probe().is_none());
    }

    #[test]
    fn a_leader_refuses_invalid_member_results() {
        let (mut hub, mut leader, mut m2, mut m3) = group(30);
        // A wrong length, a NaN, a header naming another rank: three erasures, not decodable.
        post(&mut m2, &result(2, 0, 3, 1.0));
        post(&mut m3, &result(3, 0, 2, f64::NAN));
        post(&mut m3, &result(2, 0, 2, 1.0));
        post(&mut leader, &result(1, 0, 2, 2.0));
        let (_, v) = next(&mut hub);
        assert_eq!(Header::parse(&v).expect("header").len, 0);
        assert_eq!(leader.stats().refused, 3);
    }

    /// A result of the given values (coded vector, then the loss) from `rank` for `iteration`.
    fn result_of(rank: usize, iteration: u64, values: &[f64]) -> Vec<f64> {
        let mut m = vec![0.0; HEADER_LEN];
        m.extend_from_slice(values);
        Header::result(iteration, rank, 0, 0, values.len()).write(&mut m);
        m
    }

    /// The leader's forwarded payload split into (compressed vector, loss, mask).
    fn split_forwarded(v: &[f64]) -> (&[f64], f64, f64) {
        let p = &v[HEADER_LEN..];
        (&p[..p.len() - 2], p[p.len() - 2], p[p.len() - 1])
    }

    #[test]
    fn a_compressing_leader_forwards_its_compressed_combination_with_exact_loss_and_mask() {
        // 8 coded values and the loss; QSGD with 2 levels in buckets of 4.
        let c: Compressor = "qsgd:2:4".parse().expect("spec");
        let gc = GroupCompression {
            c,
            values: 8,
            error_feedback: false,
            seed: 7,
        };
        let (mut hub, mut leader, _m2, mut m3) = group_of(200, 9, Some(gc));
        let own = [1.0, -2.0, 0.5, 3.0, -0.25, 4.0, 0.0, -1.5, 10.0];
        let third = [0.5, 2.5, -1.0, 1.0, 2.0, -3.0, 0.75, 0.0, 6.0];
        post(&mut m3, &result_of(3, 0, &third));
        post(&mut leader, &result_of(1, 0, &own));
        let (src, v) = next(&mut hub);
        let h = Header::parse(&v).expect("valid header");
        assert_eq!((src, h.iteration, h.len), (1, 0, c.wire_len(8) + 2));
        assert!(c.wire_len(8) < 8);
        // Σ a_m (result of m) with a = (0.5, 0.5) over members {0, 2}.
        let y: Vec<f64> = own
            .iter()
            .zip(&third)
            .map(|(a, b)| 0.5 * a + 0.5 * b)
            .collect();
        let (wire, loss, mask) = split_forwarded(&v);
        assert_eq!((loss, mask), (y[8], 0b101 as f64), "loss and mask exact");
        // The wire is the compressor's on the combination, keyed by the leader's rank ...
        let key = NoiseKey {
            seed: 7,
            iteration: 0,
            rank: 1,
            part: 0,
        };
        let mut expect = vec![0.0; c.wire_len(8)];
        c.compress(&y[..8], key, &mut expect).expect("compress");
        assert_eq!(wire, &expect[..]);
        // ... so it decompresses to the combination within QSGD's bound: every value within
        // ‖bucket‖/s of the combination's.
        let mut back = vec![0.0; 8];
        c.decompress(wire, &mut back).expect("decompress");
        for (b, (bucket, got)) in y[..8].chunks(4).zip(back.chunks(4)).enumerate() {
            let norm = bucket.iter().map(|x| x * x).sum::<f64>().sqrt();
            for (x, g) in bucket.iter().zip(got) {
                assert!(
                    (x - g).abs() <= norm / 2.0 + 1e-12,
                    "bucket {b}: {x} vs {g}"
                );
            }
        }
        assert!(back != y[..8], "QSGD with 2 levels changed nothing");
    }

    #[test]
    fn a_leaders_error_feedback_survives_a_round_it_gives_up() {
        let c: Compressor = "topk:0.25".parse().expect("spec");
        let gc = GroupCompression {
            c,
            values: 8,
            error_feedback: true,
            seed: 7,
        };
        let (mut hub, mut leader, _m2, mut m3) = group_of(30, 9, Some(gc));
        let rounds = [
            [1.0, -2.0, 0.5, 3.0, -0.25, 4.0, 0.0, -1.5, 10.0],
            [9.0; 9],
            [0.5, 2.5, -1.0, 1.0, 2.0, -3.0, 0.75, 0.0, 6.0],
        ];
        let mut ef = ErrorFeedback::default();
        let (mut sent, mut total) = (vec![0.0; 8], vec![0.0; 8]);
        for (t, values) in rounds.iter().enumerate() {
            let t = t as u64;
            // Round 1: rank 3 is silent, the group cannot decode, the leader gives it up.
            if t != 1 {
                post(&mut m3, &result_of(3, t, values));
            }
            post(&mut leader, &result_of(1, t, values));
            let (_, v) = next(&mut hub);
            if t == 1 {
                assert_eq!(Header::parse(&v).expect("header").len, 0);
                continue;
            }
            // Both members sent the same values, weights 0.5: the combination is `values`.
            let key = NoiseKey {
                seed: 7,
                iteration: t,
                rank: 1,
                part: 0,
            };
            let mut expect = vec![0.0; c.wire_len(8)];
            ef.compress(&c, &values[..8], key, &mut expect)
                .expect("compress");
            let (wire, loss, _) = split_forwarded(&v);
            assert_eq!((wire, loss), (&expect[..], values[8]), "iteration {t}");
            c.decompress(wire, &mut sent).expect("decompress");
            for (i, s) in sent.iter().enumerate() {
                total[i] += s - values[i];
            }
        }
        assert_eq!(leader.stats().given_up, 1);
        // What the two forwarded messages dropped is exactly what the residual holds.
        for (dropped, e) in total.iter().zip(ef.residual()) {
            assert!((dropped + e).abs() < 1e-12, "{dropped} vs residual {e}");
        }
        assert!(ef.residual().iter().any(|&e| e != 0.0));
    }
}
