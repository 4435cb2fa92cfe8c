//! A layer rank's links in `gradcode admm` (pdADMM, model parallelism): its two neighbour layer
//! ranks and rank 0.
//!
//! - To the **previous** layer rank ([`Side::Left`]) go [`Kind::Backward`] messages (the p of the
//!   rank's first layer); from it come [`Kind::Forward`] messages (the q and u of the layer just
//!   before). To the **next** rank ([`Side::Right`]) the reverse. Each data message is sent with
//!   a nonblocking send from a ring of buffers per destination: a buffer is reused only when
//!   every send from it has completed, and a send is never cancelled (GUIDE §2).
//! - Every received message is matched from its sender's rank (so the messages of one
//!   neighbour are taken in the order they were sent) and its header checked: kind for the side,
//!   sender, the layer it names, the payload length, and an iteration that only increases. A
//!   message that fails is a protocol error: a layer cannot skip its neighbour's values.
//! - To rank 0: one [`Kind::Report`] per iteration and a [`Kind::Saved`] per checkpoint; from
//!   rank 0: [`Kind::Grant`] (run every iteration below this one), [`Kind::Halt`] (checkpoint at
//!   this boundary and stop there) and STOP. [`LayerLink::poll_root`] takes them without waiting;
//!   the job polls it in every wait, so a STOP is seen even by a layer blocked on a neighbour.
//! - Shutdown ([`LayerLink::shutdown`], after STOP): a [`Kind::Done`] with the count of data
//!   messages sent goes to each neighbour, every message from each neighbour is received up to
//!   its `Done` (messages from one sender arrive in order, so nothing is left behind), then the
//!   ACK with the count of messages sent to rank 0; all within a bound.
//!
//! What the payloads mean, which values are used, and how old they may be (`--max-staleness`)
//! is the job's business (`crate::admm`); this module moves and checks buffers.

use std::time::{Duration, Instant};

use super::protocol::{Header, Kind, HEADER_LEN, TAG_ACK, TAG_DONE, TAG_SAVED};
use super::{CommError, PeerTransport, SendSlot};

/// Which neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The previous layer rank (lower layers).
    Left,
    /// The next layer rank (higher layers).
    Right,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
    /// The kind of data message that arrives from this side.
    fn incoming(self) -> Kind {
        match self {
            Side::Left => Kind::Forward,
            Side::Right => Kind::Backward,
        }
    }
}

/// Who a layer rank's neighbours are and what they send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// Rank of the previous layer rank (none for the rank holding the first layer).
    pub left: Option<usize>,
    /// Rank of the next layer rank (none for the rank holding the last layer).
    pub right: Option<usize>,
    /// Payload values of a message from the left (a Forward) and from the right (a Backward).
    pub from_left_len: usize,
    pub from_right_len: usize,
    /// The layer a message from the left names (the layer just before this rank's first), and
    /// from the right (the layer just after this rank's last).
    pub left_layer: usize,
    pub right_layer: usize,
}

/// A checked data message from a neighbour; the payload is borrowed until the next receive.
#[derive(Debug)]
pub struct FromNeighbour<'a> {
    pub side: Side,
    /// The iteration that uses it (Forward: its first phase; Backward: its second).
    pub iteration: u64,
    pub payload: &'a [f64],
}

/// What a layer rank's link did, for its log line.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LinkSummary {
    /// Data messages sent to and received from the neighbours.
    pub neighbour_sent: u64,
    pub neighbour_received: u64,
    /// Messages sent to rank 0 (reconciled with rank 0's count through the ACK).
    pub root_sent: u64,
}

/// A layer rank's end: neighbours and rank 0.
pub struct LayerLink<T: PeerTransport> {
    t: T,
    spec: LinkSpec,
    rank: usize,
    /// Send buffers: to the left, to the right, to rank 0.
    out: [Vec<T::Buf>; 3],
    /// Data messages sent to / received from each side.
    sent: [u64; 2],
    received: [u64; 2],
    root_sent: u64,
    /// The iteration of the last message received from each side.
    last: [Option<u64>; 2],
    /// The count each side's `Done` announced.
    done: [Option<u64>; 2],
    staging: Vec<f64>,
    control: Vec<f64>,
    granted: u64,
    halt: Option<u64>,
    stop: Option<i32>,
    /// Bytes of data messages sent to and received from the neighbours (whole run).
    pub bytes_sent: f64,
    pub bytes_received: f64,
}

fn protocol(rank: usize, reason: String) -> CommError {
    CommError::Protocol { rank, reason }
}

impl<T: PeerTransport> LayerLink<T> {
    /// A link over `t`; nothing granted yet.
    pub fn new(t: T, spec: LinkSpec) -> Self {
        let rank = t.rank();
        LayerLink {
            t,
            spec,
            rank,
            out: [Vec::new(), Vec::new(), Vec::new()],
            sent: [0; 2],
            received: [0; 2],
            root_sent: 0,
            last: [None; 2],
            done: [None; 2],
            staging: Vec::new(),
            control: Vec::new(),
            granted: 0,
            halt: None,
            stop: None,
            bytes_sent: 0.0,
            bytes_received: 0.0,
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The neighbour's rank on `side`, if any.
    pub fn neighbour(&self, side: Side) -> Option<usize> {
        match side {
            Side::Left => self.spec.left,
            Side::Right => self.spec.right,
        }
    }

    /// Every iteration below this one may run (rank 0's latest grant).
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// The boundary at which rank 0 asked this rank to checkpoint and stop, if it did.
    pub fn halt_at(&self) -> Option<u64> {
        self.halt
    }

    /// The exit code of rank 0's STOP, once it arrived.
    pub fn stop_code(&self) -> Option<i32> {
        self.stop
    }

    /// The iteration of the newest message received from `side`.
    pub fn last_from(&self, side: Side) -> Option<u64> {
        self.last[side.index()]
    }

    /// A free buffer of ring `ring` with room for `len` values (a new one when all are busy).
    fn free_buffer(&mut self, ring: usize, len: usize) -> usize {
        let t = &self.t;
        let bufs = &mut self.out[ring];
        if let Some(i) = bufs.iter_mut().position(|b| b.len() >= len && b.is_free()) {
            return i;
        }
        bufs.push(t.buffer(len));
        bufs.len() - 1
    }

    /// Post `header` and a payload of `len` values written by `fill` to rank `to` from ring
    /// `ring`.
    fn post<E>(
        &mut self,
        ring: usize,
        to: usize,
        header: Header,
        fill: impl FnOnce(&mut [f64]) -> Result<(), E>,
    ) -> Result<(), E> {
        let len = HEADER_LEN + header.len;
        let i = self.free_buffer(ring, len);
        let buf = self.out[ring][i].write();
        header.write(buf);
        fill(&mut buf[HEADER_LEN..len])?;
        self.t
            .post(&mut self.out[ring][i], to, header.kind.tag(), len);
        Ok(())
    }

    /// Send layer `layer`'s values used by the neighbour at `iteration` to `side` (Backward to
    /// the left, Forward to the right): `len` payload values written by `fill`. Nothing happens
    /// when there is no neighbour on that side.
    pub fn send<E>(
        &mut self,
        side: Side,
        iteration: u64,
        layer: usize,
        len: usize,
        fill: impl FnOnce(&mut [f64]) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(to) = self.neighbour(side) else {
            return Ok(());
        };
        let kind = match side {
            Side::Left => Kind::Backward,
            Side::Right => Kind::Forward,
        };
        let h = Header::neighbour(kind, iteration, self.rank, layer, len);
        self.post(side.index(), to, h, fill)?;
        self.sent[side.index()] += 1;
        self.bytes_sent += ((HEADER_LEN + len) * 8) as f64;
        Ok(())
    }

    /// Send the report of `iteration` to rank 0: `len` values written by `fill`.
    pub fn report<E>(
        &mut self,
        iteration: u64,
        compute_s: f64,
        injected_s: f64,
        len: usize,
        fill: impl FnOnce(&mut [f64]) -> Result<(), E>,
    ) -> Result<(), E> {
        let h = Header::report(iteration, self.rank, compute_s, injected_s, len);
        self.post(2, 0, h, fill)?;
        self.root_sent += 1;
        Ok(())
    }

    /// Tell rank 0 that this rank's checkpoint of boundary `iteration` is written.
    pub fn saved(&mut self, iteration: u64) {
        self.t.send(
            0,
            TAG_SAVED,
            &Header::saved(iteration, self.rank).to_message(),
        );
        self.root_sent += 1;
    }

    /// Take every message rank 0 has sent (grants, halt, STOP) without waiting; whether any came.
    pub fn poll_root(&mut self) -> Result<bool, CommError> {
        let mut any = false;
        while let Some(msg) = self.t.probe(0) {
            any = true;
            self.control.resize(msg.len, 0.0);
            let tag = msg.tag;
            self.t.receive(msg, &mut self.control);
            let h = Header::parse(&self.control)
                .map_err(|e| protocol(0, format!("header from rank 0: {e}")))?;
            if h.kind.tag() != tag {
                return Err(protocol(0, format!("a {:?} on tag {tag}", h.kind)));
            }
            match h.kind {
                Kind::Grant => self.granted = self.granted.max(h.iteration),
                Kind::Halt => self.halt = Some(h.iteration),
                Kind::Stop => self.stop = Some(h.exit_code),
                other => {
                    return Err(protocol(
                        0,
                        format!("unexpected {other:?} message to a layer rank"),
                    ))
                }
            }
        }
        Ok(any)
    }

    /// Receive the next message from `side` without waiting, checked. `None` when nothing is
    /// waiting, when there is no neighbour there, or after its `Done`.
    pub fn next(&mut self, side: Side) -> Result<Option<FromNeighbour<'_>>, CommError> {
        let s = side.index();
        let Some(from) = self.neighbour(side) else {
            return Ok(None);
        };
        if self.done[s].is_some() {
            return Ok(None);
        }
        let Some(msg) = self.t.probe(from) else {
            return Ok(None);
        };
        let tag = msg.tag;
        self.staging.resize(msg.len, 0.0);
        self.t.receive(msg, &mut self.staging);
        let h = self.check(side, from, tag)?;
        if h.kind == Kind::Done {
            self.done[s] = Some(h.count);
            return Ok(None);
        }
        self.received[s] += 1;
        self.last[s] = Some(h.iteration);
        self.bytes_received += (self.staging.len() * 8) as f64;
        Ok(Some(FromNeighbour {
            side,
            iteration: h.iteration,
            payload: &self.staging[HEADER_LEN..],
        }))
    }

    /// The header of the message from `side` in the staging buffer, if it is valid.
    fn check(&self, side: Side, from: usize, tag: i32) -> Result<Header, CommError> {
        let bad = |reason: String| protocol(from, reason);
        let h = Header::parse(&self.staging).map_err(|e| bad(format!("header: {e}")))?;
        if h.kind.tag() != tag {
            return Err(bad(format!("a {:?} on tag {tag}", h.kind)));
        }
        if h.rank != from {
            return Err(bad(format!("header names rank {}", h.rank)));
        }
        if h.kind == Kind::Done {
            return Ok(h);
        }
        let (layer, len) = match side {
            Side::Left => (self.spec.left_layer, self.spec.from_left_len),
            Side::Right => (self.spec.right_layer, self.spec.from_right_len),
        };
        if h.kind != side.incoming() {
            return Err(bad(format!("a {:?} from the {side:?} neighbour", h.kind)));
        }
        if h.part != layer {
            return Err(bad(format!("values of layer {}, expected {layer}", h.part)));
        }
        if h.len != len {
            return Err(bad(format!("payload of {} values, expected {len}", h.len)));
        }
        if let Some(prev) = self.last[side.index()] {
            if h.iteration <= prev {
                return Err(bad(format!(
                    "iteration {} after iteration {prev}",
                    h.iteration
                )));
            }
        }
        Ok(h)
    }

    /// After STOP: a `Done` to each neighbour, every message from each neighbour received up to
    /// its `Done`, the ACK to rank 0; then every send completes. Fails past `bound`.
    pub fn shutdown(mut self, bound: Duration) -> Result<LinkSummary, CommError> {
        for side in [Side::Left, Side::Right] {
            if let Some(to) = self.neighbour(side) {
                let done = Header::done(self.rank, self.sent[side.index()]).to_message();
                self.t.send(to, TAG_DONE, &done);
            }
        }
        let start = Instant::now();
        for side in [Side::Left, Side::Right] {
            let s = side.index();
            let Some(from) = self.neighbour(side) else {
                continue;
            };
            while self.done[s].is_none() {
                if self.next(side)?.is_none() && self.done[s].is_none() {
                    if start.elapsed() > bound {
                        return Err(CommError::Fatal(format!(
                            "rank {}: rank {from} sent no Done within {:.0} s of STOP",
                            self.rank,
                            bound.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            if self.done[s] != Some(self.received[s]) {
                return Err(protocol(
                    from,
                    format!(
                        "announced {:?} messages on the link, {} arrived",
                        self.done[s], self.received[s]
                    ),
                ));
            }
        }
        let ack = Header::ack_message(self.rank, self.root_sent, super::link::peak_rss_kib());
        self.t.send(0, TAG_ACK, &ack);
        for b in self.out.iter_mut().flatten() {
            b.wait();
        }
        Ok(LinkSummary {
            neighbour_sent: self.sent[0] + self.sent[1],
            neighbour_received: self.received[0] + self.received[1],
            root_sent: self.root_sent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::local::{self, LocalPeer};
    use crate::comm::protocol::{TAG_GRANT, TAG_REPORT, TAG_STOP};
    use crate::comm::Transport;

    fn spec(rank: usize, n: usize, len: usize) -> LinkSpec {
        LinkSpec {
            left: (rank > 1).then(|| rank - 1),
            right: (rank < n).then_some(rank + 1),
            from_left_len: len,
            from_right_len: len,
            left_layer: rank - 1,
            right_layer: rank + 1,
        }
    }

    /// Receive (side, iteration, first value) of every neighbour message until STOP.
    fn until_stop(link: &mut LayerLink<LocalPeer>) -> Vec<(Side, u64, f64)> {
        let mut got = Vec::new();
        let start = Instant::now();
        loop {
            link.poll_root().unwrap();
            for side in [Side::Left, Side::Right] {
                while let Some(m) = link.next(side).unwrap() {
                    got.push((m.side, m.iteration, m.payload[0]));
                }
            }
            if link.stop_code().is_some() {
                return got;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no STOP");
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    #[test]
    fn a_chain_exchanges_in_order_and_drains_everything_at_shutdown() {
        // Rank 0 and three layer ranks; each layer rank sends 5 messages to each neighbour
        // (payload: its rank · 100 + iteration), then rank 0 grants, stops, and reconciles.
        let (n, len) = (3usize, 4usize);
        let mut peers = local::mesh(n + 1).into_iter();
        let mut root = peers.next().unwrap();
        let handles: Vec<_> = peers
            .map(|p| {
                std::thread::spawn(move || {
                    let rank = PeerTransport::rank(&p);
                    let mut link = LayerLink::new(p, spec(rank, n, len));
                    for it in 0..5u64 {
                        for side in [Side::Left, Side::Right] {
                            link.send(side, it, rank, len, |b| {
                                b.fill((rank * 100) as f64 + it as f64);
                                Ok::<(), CommError>(())
                            })
                            .unwrap();
                        }
                    }
                    link.report(0, 0.1, 0.0, 2, |b| {
                        b.copy_from_slice(&[rank as f64, 1.0]);
                        Ok::<(), CommError>(())
                    })
                    .unwrap();
                    let got = until_stop(&mut link);
                    assert_eq!(link.granted(), 7);
                    let summary = link.shutdown(Duration::from_secs(10)).unwrap();
                    (rank, got, summary)
                })
            })
            .collect();
        for r in 1..=n {
            PeerTransport::send(
                &mut root,
                r,
                TAG_GRANT,
                &Header::control(Kind::Grant, 7).to_message(),
            );
        }
        // The reports, then STOP and the ACKs (each counting the one report).
        let receive = |root: &mut LocalPeer| -> Header {
            loop {
                if let Some(m) = Transport::probe(root) {
                    let mut buf = vec![0.0; m.len];
                    Transport::receive(root, m, &mut buf);
                    return Header::parse(&buf).unwrap();
                }
            }
        };
        for _ in 0..n {
            assert_eq!(receive(&mut root).kind, Kind::Report);
        }
        for r in 1..=n {
            PeerTransport::send(&mut root, r, TAG_STOP, &Header::stop(0).to_message());
        }
        for _ in 0..n {
            let h = receive(&mut root);
            assert_eq!((h.kind, h.count), (Kind::Ack, 1));
        }
        for h in handles {
            let (rank, got, summary) = h.join().unwrap();
            // What arrived before STOP came in order from each side; the rest was drained at
            // shutdown; nothing was lost.
            for side in [Side::Left, Side::Right] {
                let its: Vec<u64> = got.iter().filter(|g| g.0 == side).map(|g| g.1).collect();
                assert!(its.windows(2).all(|w| w[0] < w[1]), "{its:?}");
                for g in got.iter().filter(|g| g.0 == side) {
                    let from = if side == Side::Left {
                        rank - 1
                    } else {
                        rank + 1
                    };
                    assert_eq!(g.2, (from * 100) as f64 + g.1 as f64);
                }
            }
            let neighbours = [rank > 1, rank < n].iter().filter(|&&b| b).count() as u64;
            assert_eq!(summary.neighbour_sent, 5 * neighbours);
            assert_eq!(summary.neighbour_received, 5 * neighbours);
            assert_eq!(summary.root_sent, 1);
        }
    }

    #[test]
    fn bad_neighbour_messages_are_protocol_errors() {
        let len = 3;
        let mut peers = local::mesh(3).into_iter();
        let _root = peers.next().unwrap();
        let mut left = peers.next().unwrap();
        let right = peers.next().unwrap();
        let mut link = LayerLink::new(right, spec(2, 2, len));
        let send = |p: &mut LocalPeer, h: Header, n: usize| {
            let mut m = vec![0.5; HEADER_LEN + n];
            h.write(&mut m);
            PeerTransport::send(p, 2, h.kind.tag(), &m);
        };
        // In order, right length, right layer: accepted.
        send(
            &mut left,
            Header::neighbour(Kind::Forward, 3, 1, 1, len),
            len,
        );
        assert_eq!(link.next(Side::Left).unwrap().unwrap().iteration, 3);
        // An iteration that does not increase, a wrong layer, a wrong length, a wrong kind.
        let cases = [
            (
                Header::neighbour(Kind::Forward, 3, 1, 1, len),
                len,
                "after iteration 3",
            ),
            (
                Header::neighbour(Kind::Forward, 4, 1, 2, len),
                len,
                "layer 2",
            ),
            (
                Header::neighbour(Kind::Forward, 4, 1, 1, len + 1),
                len + 1,
                "expected 3",
            ),
            (
                Header::neighbour(Kind::Backward, 4, 1, 1, len),
                len,
                "Backward from the Left",
            ),
            (
                Header::neighbour(Kind::Forward, 4, 2, 1, len),
                len,
                "names rank 2",
            ),
        ];
        for (h, n, expect) in cases {
            send(&mut left, h, n);
            let e = link.next(Side::Left).unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
        // A Done ends the link.
        send(&mut left, Header::done(1, 1), 0);
        assert!(link.next(Side::Left).unwrap().is_none());
        assert_eq!(link.done[0], Some(1));
    }

    #[test]
    fn rank_zero_grants_halts_and_stops() {
        let mut peers = local::mesh(2).into_iter();
        let mut root = peers.next().unwrap();
        let mut link = LayerLink::new(peers.next().unwrap(), spec(1, 1, 1));
        assert!(!link.poll_root().unwrap());
        for (kind, it) in [(Kind::Grant, 5), (Kind::Grant, 3), (Kind::Halt, 4)] {
            PeerTransport::send(
                &mut root,
                1,
                kind.tag(),
                &Header::control(kind, it).to_message(),
            );
        }
        assert!(link.poll_root().unwrap());
        // Grants only grow; the halt is kept.
        assert_eq!(
            (link.granted(), link.halt_at(), link.stop_code()),
            (5, Some(4), None)
        );
        PeerTransport::send(&mut root, 1, TAG_STOP, &Header::stop(75).to_message());
        link.poll_root().unwrap();
        assert_eq!(link.stop_code(), Some(75));
        // A report tag from rank 0 is not a control message.
        PeerTransport::send(
            &mut root,
            1,
            TAG_REPORT,
            &Header::report(0, 0, 0.0, 0.0, 0).to_message(),
        );
        assert!(link.poll_root().is_err());
    }
}
