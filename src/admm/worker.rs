//! A layer rank's loop: its layers' iterations, the exchange with its two neighbours, reports
//! and checkpoints, under rank 0's grants, halt and STOP.
//!
//! Iteration k: wait for a grant past k; phase A once the view of the previous layer's q, u is
//! at most `--max-staleness` K iterations old (k − K or newer); the injected straggler delay
//! (`--straggler-model`, by this rank and k); send p backwards (used by the previous rank's
//! phase B of k); phase B once the view of the next layer's p is of iteration k − K or newer;
//! send q, u forwards (used by the next rank's phase A of k + 1); report k to rank 0 (with the
//! weights at evaluation iterations). With K = 0 every exchange is synchronous and the
//! arithmetic is the serial reference's. While a layer waits it takes every message that has
//! arrived (the newest values win) and rank 0's messages, so a STOP ends any wait.
//!
//! Checkpoints are a consistent cut: at a checkpoint boundary c (every `--checkpoint-every`, or
//! rank 0's halt) the rank's views must hold exactly the previous rank's values of iteration c
//! and the next rank's p of iteration c − 1, so it never takes a message beyond those before
//! the cut (messages from one rank arrive in order, one per iteration), waits for them, writes
//! its file and tells rank 0.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use super::group::LayerGroup;
use super::net::Net;
use super::quant::Codec;
use super::report::{group_report_len, is_eval, write_report, RankTiming};
use super::state::{save_group, Stamp};
use crate::comm::{CommError, LayerLink, LinkSpec, PeerTransport, Side};
use crate::error::{Error, Result};
use crate::straggler::StragglerSchedule;

/// What a layer rank needs to know about the run.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// Iterations of the run (T).
    pub iterations: u64,
    /// The first iteration (the resumed boundary, or 0).
    pub first: u64,
    /// `--max-staleness` K.
    pub staleness: u64,
    pub checkpoint_every: u64,
    pub eval_every: u64,
    pub stamp: Stamp<'a>,
    /// How long shutdown may wait for the neighbours.
    pub shutdown_bound: Duration,
}

/// The links of layer rank `rank` (1-based) of `groups` for `rows` training rows: its
/// neighbours are the ranks before and after it, which send the q and u of the layer before its
/// first and the p of the layer after its last.
pub fn link_spec(
    net: &Net,
    groups: &[RangeInclusive<usize>],
    rank: usize,
    rows: usize,
    codec: Codec,
) -> LinkSpec {
    let range = &groups[rank - 1];
    LinkSpec {
        left: (rank > 1).then(|| rank - 1),
        right: (rank < groups.len()).then_some(rank + 1),
        from_left_len: 2 * codec.len(rows * net.inputs(*range.start())),
        from_right_len: codec.len(rows * net.outputs(*range.end())),
        left_layer: range.start() - 1,
        right_layer: range.end() + 1,
    }
}

/// Builds a rank's layers at iteration 0 from the previous rank's first message (None for the
/// rank holding layer 1).
pub type Builder<'a> = Box<dyn FnOnce(Option<&[f64]>) -> Result<LayerGroup> + 'a>;

/// How the rank's layers come to be.
pub enum Init<'a> {
    /// Built at iteration 0 by the builder.
    Fresh(Builder<'a>),
    /// Loaded from a checkpoint of boundary `Plan::first`.
    Resumed(LayerGroup),
}

/// A wait ended because rank 0 sent STOP.
struct Stopped;

struct Rank<'p, T: PeerTransport> {
    link: LayerLink<T>,
    group: LayerGroup,
    plan: &'p Plan<'p>,
    schedule: StragglerSchedule,
    /// The iterations of the values in the views of the previous and the next layer.
    left: i64,
    right: i64,
    /// Seconds waited during the current iteration.
    waited: f64,
    bytes: (f64, f64),
}

/// Sleep between polls while waiting.
const POLL: Duration = Duration::from_micros(100);

/// Run the rank until STOP; returns the exit code rank 0 sent.
pub fn run<T: PeerTransport>(
    mut link: LayerLink<T>,
    plan: &Plan<'_>,
    schedule: StragglerSchedule,
    init: Init<'_>,
) -> Result<i32> {
    let (group, left, right) = match init {
        Init::Resumed(g) => (g, plan.first as i64, plan.first as i64 - 1),
        Init::Fresh(build) => match fresh(&mut link, build)? {
            Some(g) => (g, 0, -1),
            None => return finish(link, plan),
        },
    };
    let mut r = Rank {
        link,
        group,
        plan,
        schedule,
        left,
        right,
        waited: 0.0,
        bytes: (0.0, 0.0),
    };
    r.iterate()?;
    finish(r.link, plan)
}

/// After STOP: the neighbour links drained, the ACK sent; the STOP's exit code.
fn finish<T: PeerTransport>(link: LayerLink<T>, plan: &Plan<'_>) -> Result<i32> {
    let code = link.stop_code().unwrap_or(1);
    let rank = link.rank();
    let s = link.shutdown(plan.shutdown_bound)?;
    log::debug!(
        "[rank {rank}] done: {} messages to and {} from the neighbours, {} to rank 0",
        s.neighbour_sent,
        s.neighbour_received,
        s.root_sent
    );
    Ok(code)
}

/// Iteration 0's layers from the previous rank's first message, then this rank's first message
/// to the next; None when STOP came first.
fn fresh<T: PeerTransport>(
    link: &mut LayerLink<T>,
    build: Builder<'_>,
) -> Result<Option<LayerGroup>> {
    let group = if let Some(left) = link.neighbour(Side::Left) {
        loop {
            link.poll_root()?;
            if link.stop_code().is_some() {
                return Ok(None);
            }
            if let Some(m) = link.next(Side::Left)? {
                if m.iteration != 0 {
                    return Err(CommError::Protocol {
                        rank: left,
                        reason: format!("first message of iteration {}, expected 0", m.iteration),
                    }
                    .into());
                }
                let payload = m.payload.to_vec();
                break build(Some(&payload))?;
            }
            std::thread::sleep(POLL);
        }
    } else {
        build(None)?
    };
    link.send(Side::Right, 0, group.last(), group.forward_len(), |b| {
        group.encode_forward(b);
        Ok::<(), Error>(())
    })?;
    Ok(Some(group))
}

impl<T: PeerTransport> Rank<'_, T> {
    fn is_cut(&self, c: u64) -> bool {
        let p = self.plan;
        self.link.halt_at() == Some(c)
            || (p.checkpoint_every > 0
                && c % p.checkpoint_every == 0
                && c > p.first
                && c < p.iterations)
    }

    /// The next checkpoint boundary at or after `from` (None: none before the end).
    fn next_cut(&self, from: u64) -> Option<u64> {
        let p = self.plan;
        let periodic = (p.checkpoint_every > 0)
            .then(|| {
                let c = from.div_ceil(p.checkpoint_every) * p.checkpoint_every;
                let c = if c <= p.first {
                    c + p.checkpoint_every
                } else {
                    c
                };
                (c < p.iterations).then_some(c)
            })
            .flatten();
        match (periodic, self.link.halt_at().filter(|&h| h >= from)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How far the views may be brought while working towards boundary `from`: never past the
    /// next cut (left: its iteration; right: the one before).
    fn limits(&self, from: u64) -> (i64, i64) {
        match self.next_cut(from) {
            Some(c) => (c as i64, c as i64 - 1),
            None => (i64::MAX, i64::MAX),
        }
    }

    /// Take what has arrived from the neighbours (up to `limits`) and from rank 0; whether any
    /// message came.
    fn absorb(&mut self, limits: (i64, i64)) -> Result<bool> {
        let mut any = self.link.poll_root()?;
        while self.left < limits.0 {
            let Some(m) = self.link.next(Side::Left)? else {
                break;
            };
            self.left = m.iteration as i64;
            let payload = m.payload;
            self.group.decode_from_left(payload);
            any = true;
        }
        while self.right < limits.1 {
            let Some(m) = self.link.next(Side::Right)? else {
                break;
            };
            self.right = m.iteration as i64;
            let payload = m.payload;
            self.group.decode_from_right(payload);
            any = true;
        }
        Ok(any)
    }

    /// Wait until `ready`, taking messages up to `limits`; `Err(Stopped)` on STOP.
    fn wait(
        &mut self,
        limits: (i64, i64),
        ready: impl Fn(&Self) -> bool,
    ) -> Result<std::result::Result<(), Stopped>> {
        let start = Instant::now();
        loop {
            let got = self.absorb(limits)?;
            if ready(self) {
                break;
            }
            if self.link.stop_code().is_some() {
                self.waited += start.elapsed().as_secs_f64();
                return Ok(Err(Stopped));
            }
            if !got {
                std::thread::sleep(POLL);
            }
        }
        self.waited += start.elapsed().as_secs_f64();
        Ok(Ok(()))
    }

    fn has(&self, side: Side) -> bool {
        self.link.neighbour(side).is_some()
    }

    /// Boundaries and iterations until STOP.
    fn iterate(&mut self) -> Result<()> {
        let plan = self.plan;
        let rank = self.link.rank();
        let mut k = plan.first;
        let mut saved_at = None;
        loop {
            self.absorb(self.limits(k))?;
            if self.link.stop_code().is_some() {
                return Ok(());
            }
            if self.is_cut(k) && saved_at != Some(k) {
                if self.cut(k)?.is_err() {
                    return Ok(());
                }
                saved_at = Some(k);
            }
            if self.link.halt_at() == Some(k)
                || k >= plan.iterations
                || self.schedule.failed(k, rank)
            {
                if self.schedule.failed(k, rank) && k < plan.iterations {
                    log::debug!("[rank {rank}] iteration {k}: injected failure, not answering");
                }
                let _ = self.wait(self.limits(k), |_| false)?;
                return Ok(());
            }
            let granted = self.wait(self.limits(k), |s| {
                s.link.granted() > k || s.link.halt_at() == Some(k)
            })?;
            if granted.is_err() {
                return Ok(());
            }
            if self.link.halt_at() == Some(k) {
                continue;
            }
            if self.iteration(k)?.is_err() {
                return Ok(());
            }
            k += 1;
        }
    }

    /// Wait for the views of boundary `c` exactly, then write the checkpoint and tell rank 0.
    fn cut(&mut self, c: u64) -> Result<std::result::Result<(), Stopped>> {
        let (l, r) = (c as i64, c as i64 - 1);
        let (has_l, has_r) = (self.has(Side::Left), self.has(Side::Right));
        if self
            .wait((l, r), |s| {
                (!has_l || s.left == l) && (!has_r || s.right == r)
            })?
            .is_err()
        {
            return Ok(Err(Stopped));
        }
        let path = save_group(&self.plan.stamp, &self.group, c, 0.0)?;
        log::debug!(
            "[rank {}] checkpoint of boundary {c} written to {}",
            self.link.rank(),
            path.display()
        );
        self.link.saved(c);
        Ok(Ok(()))
    }

    /// Injected straggling after `compute` seconds of work at iteration `k`: the slow-down spin
    /// and, after phase A, the drawn delay. Returns the seconds injected.
    fn inject(&mut self, k: u64, compute: f64, delay: bool) -> f64 {
        let rank = self.link.rank();
        let spin = (self.schedule.slow_factor(rank) - 1.0).max(0.0) * compute;
        let end = Instant::now() + Duration::from_secs_f64(spin);
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        let sleep = if delay {
            self.schedule.delay_s(k, rank)
        } else {
            0.0
        };
        if sleep > 0.0 && sleep.is_finite() {
            std::thread::sleep(Duration::from_secs_f64(sleep));
        }
        spin + sleep
    }

    /// Iteration `k`: both phases, the two sends, the report.
    fn iteration(&mut self, k: u64) -> Result<std::result::Result<(), Stopped>> {
        let plan = self.plan;
        let need = k as i64 - plan.staleness as i64;
        let limits = self.limits(k + 1);
        let has_l = self.has(Side::Left);
        if self.wait(limits, |s| !has_l || s.left >= need)?.is_err() {
            return Ok(Err(Stopped));
        }
        let left_age = if has_l {
            (k as i64 - self.left) as f64
        } else {
            0.0
        };
        let t0 = Instant::now();
        self.group.phase_a();
        let compute_a = t0.elapsed().as_secs_f64();
        let mut injected = self.inject(k, compute_a, true);
        let (group, link) = (&self.group, &mut self.link);
        link.send(Side::Left, k, group.first(), group.backward_len(), |b| {
            group.encode_backward(b);
            Ok::<(), Error>(())
        })?;
        let has_r = self.has(Side::Right);
        if self.wait(limits, |s| !has_r || s.right >= need)?.is_err() {
            return Ok(Err(Stopped));
        }
        let right_age = if has_r {
            (k as i64 - self.right) as f64
        } else {
            0.0
        };
        let t1 = Instant::now();
        self.group.phase_b();
        let compute_b = t1.elapsed().as_secs_f64();
        injected += self.inject(k, compute_b, false);
        let (group, link) = (&self.group, &mut self.link);
        link.send(Side::Right, k + 1, group.last(), group.forward_len(), |b| {
            group.encode_forward(b);
            Ok::<(), Error>(())
        })?;
        if let Some(l) = self.group.layers.first_mut() {
            l.terms.left_age = left_age;
        }
        if let Some(l) = self.group.layers.last_mut() {
            l.terms.right_age = right_age;
        }
        self.report(k, compute_a + compute_b, injected)?;
        Ok(Ok(()))
    }

    /// The report of iteration `k` to rank 0.
    fn report(&mut self, k: u64, compute_s: f64, injected_s: f64) -> Result<()> {
        let plan = self.plan;
        let weights = is_eval(plan.eval_every, plan.iterations, k);
        let (sent, received) = (self.link.bytes_sent, self.link.bytes_received);
        let timing = RankTiming {
            compute_s,
            injected_s,
            wait_s: self.waited,
            bytes_sent: sent - self.bytes.0,
            bytes_received: received - self.bytes.1,
        };
        self.bytes = (sent, received);
        self.waited = 0.0;
        let len = group_report_len(&self.group, weights);
        let group = &self.group;
        self.link
            .report(k, compute_s, injected_s.max(0.0), len, |b| {
                write_report(b, &timing, group, weights);
                Ok::<(), Error>(())
            })?;
        Ok(())
    }
}
