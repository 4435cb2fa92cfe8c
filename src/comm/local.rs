//! The in-process transport: rank 0 and the workers as threads of one process, messages over
//! channels. Same traits as [`super::mpi`], so the collector and the worker link are unit-tested
//! (deadlines, best-effort, late and malformed messages, silent workers, STOP/ACK) without
//! `mpirun`, and a whole training run can be checked against the serial reference in one test.
//!
//! Semantics kept from MPI: messages between two ranks arrive in the order they were sent; a
//! probe matches the oldest waiting message; a posted send copies the buffer at once (so a
//! buffer is always free again, which is a valid MPI behaviour for a buffered send).
//!
//! [`world`] is a star (rank 0 and workers that talk to it, and to each other only in a tree
//! decode's groups); [`mesh`] connects every rank to
//! every other (the layer ranks of `admm` and their rank 0).
//!
//! Not modelled: bandwidth, message latency, rendezvous sends, process death.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};

use super::{Incoming, PeerTransport, SendSlot, Transport, WorkerTransport};

/// A message in flight: (source rank, tag, values).
#[derive(Debug)]
struct Packet {
    source: usize,
    tag: i32,
    data: Vec<f64>,
}

/// A send buffer whose sends copy it at once.
#[derive(Debug, Clone)]
pub struct LocalBuf(Vec<f64>);

impl SendSlot for LocalBuf {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn write(&mut self) -> &mut [f64] {
        &mut self.0
    }
    fn read(&self) -> &[f64] {
        &self.0
    }
    fn is_free(&mut self) -> bool {
        true
    }
    fn wait(&mut self) {}
}

/// Rank 0's end.
#[derive(Debug)]
pub struct LocalHub {
    to_workers: Vec<Sender<Packet>>,
    inbox: Receiver<Packet>,
}

/// A worker's end.
#[derive(Debug)]
pub struct LocalWorker {
    rank: usize,
    to_hub: Sender<Packet>,
    inbox: Receiver<Packet>,
    /// Messages taken off the channel and not yet received (by [`WorkerTransport::waiting`],
    /// or from another rank than the one asked for).
    early: VecDeque<Packet>,
    /// Every worker's inbox (rank r at r − 1), for messages between workers (`comm::group`).
    peers: Vec<Sender<Packet>>,
}

/// A world of rank 0 and `n` workers (ranks 1..=n).
pub fn world(n: usize) -> (LocalHub, Vec<LocalWorker>) {
    let (to_hub, hub_inbox) = channel();
    let mut to_workers = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = channel();
        to_workers.push(tx);
        inboxes.push(rx);
    }
    for (w, rx) in inboxes.into_iter().enumerate() {
        workers.push(LocalWorker {
            rank: w + 1,
            to_hub: to_hub.clone(),
            inbox: rx,
            early: VecDeque::new(),
            peers: to_workers.clone(),
        });
    }
    (
        LocalHub {
            to_workers,
            inbox: hub_inbox,
        },
        workers,
    )
}

fn incoming(p: Packet) -> Incoming<Vec<f64>> {
    Incoming {
        source: p.source,
        tag: p.tag,
        len: p.data.len(),
        handle: p.data,
    }
}

impl LocalHub {
    fn deliver(&self, to: usize, tag: i32, data: Vec<f64>) {
        // A worker thread that has ended drops its inbox; a message to it is lost, as a message
        // to a dead process would be.
        if let Some(tx) = to.checked_sub(1).and_then(|w| self.to_workers.get(w)) {
            let _ = tx.send(Packet {
                source: 0,
                tag,
                data,
            });
        }
    }
}

impl Transport for LocalHub {
    type Buf = LocalBuf;
    type Handle = Vec<f64>;

    fn buffer(&self, len: usize) -> LocalBuf {
        LocalBuf(vec![0.0; len])
    }
    fn post(&mut self, buf: &mut LocalBuf, to: usize, tag: i32, len: usize) {
        self.deliver(to, tag, buf.0[..len.min(buf.0.len())].to_vec());
    }
    fn send(&mut self, to: usize, tag: i32, data: &[f64]) {
        self.deliver(to, tag, data.to_vec());
    }
    fn probe(&mut self) -> Option<Incoming<Vec<f64>>> {
        self.inbox.try_recv().ok().map(incoming)
    }
    fn receive(&mut self, msg: Incoming<Vec<f64>>, into: &mut [f64]) {
        into.copy_from_slice(&msg.handle);
    }
}

impl LocalWorker {
    /// Send raw values to rank 0 (tests: malformed messages, silent or rogue workers).
    pub fn send_raw(&self, tag: i32, data: Vec<f64>) {
        let _ = self.to_hub.send(Packet {
            source: self.rank,
            tag,
            data,
        });
    }

    /// The next message from rank 0 as raw values, waiting for it; `None` once rank 0 is gone.
    pub fn recv_raw(&mut self) -> Option<(i32, Vec<f64>)> {
        let p = self.next_from(0, true)?;
        Some((p.tag, p.data))
    }

    /// The first packet from rank `from` (earlier ones from others are kept, in order);
    /// `block`: wait for one.
    fn next_from(&mut self, from: usize, block: bool) -> Option<Packet> {
        loop {
            if let Some(i) = self.early.iter().position(|p| p.source == from) {
                return self.early.remove(i);
            }
            let p = if block {
                self.inbox.recv().ok()?
            } else {
                self.inbox.try_recv().ok()?
            };
            self.early.push_back(p);
        }
    }
}

impl WorkerTransport for LocalWorker {
    type Buf = LocalBuf;
    type Handle = Vec<f64>;

    fn rank(&self) -> usize {
        self.rank
    }
    fn buffer(&self, len: usize) -> LocalBuf {
        LocalBuf(vec![0.0; len])
    }
    fn post(&mut self, buf: &mut LocalBuf, tag: i32, len: usize) {
        self.send_raw(tag, buf.0[..len.min(buf.0.len())].to_vec());
    }
    fn send(&mut self, tag: i32, data: &[f64]) {
        self.send_raw(tag, data.to_vec());
    }
    fn wait(&mut self) -> Incoming<Vec<f64>> {
        // Rank 0 gone without a STOP: a STOP with a failure code is what MPI_Abort would
        // amount to for this worker.
        let p = self.next_from(0, true).unwrap_or(Packet {
            source: 0,
            tag: super::protocol::TAG_STOP,
            data: super::protocol::Header::stop(1).to_message().to_vec(),
        });
        incoming(p)
    }
    fn receive(&mut self, msg: Incoming<Vec<f64>>, into: &mut [f64]) {
        into.copy_from_slice(&msg.handle);
    }
    fn waiting(&mut self, tag: i32) -> bool {
        while let Ok(p) = self.inbox.try_recv() {
            self.early.push_back(p);
        }
        self.early.iter().any(|p| p.source == 0 && p.tag == tag)
    }
    fn post_to(&mut self, buf: &mut LocalBuf, to: usize, tag: i32, len: usize) {
        self.send_to(to, tag, &buf.0[..len.min(buf.0.len())]);
    }
    fn send_to(&mut self, to: usize, tag: i32, data: &[f64]) {
        if let Some(tx) = to.checked_sub(1).and_then(|w| self.peers.get(w)) {
            let _ = tx.send(Packet {
                source: self.rank,
                tag,
                data: data.to_vec(),
            });
        }
    }
    fn probe_from(&mut self, from: usize) -> Option<Incoming<Vec<f64>>> {
        self.next_from(from, false).map(incoming)
    }
}

/// One rank of a [`mesh`]: a channel to every rank and one from every rank.
#[derive(Debug)]
pub struct LocalPeer {
    rank: usize,
    to: Vec<Sender<Packet>>,
    from: Vec<Receiver<Packet>>,
    /// Where the next any-source probe starts (rank 0's end), so no sender is starved.
    next: usize,
}

/// `n` ranks (0..n), each connected to every other; messages from one rank arrive in order.
pub fn mesh(n: usize) -> Vec<LocalPeer> {
    let mut to: Vec<Vec<Sender<Packet>>> = (0..n).map(|_| Vec::with_capacity(n)).collect();
    let mut from: Vec<Vec<Receiver<Packet>>> = (0..n).map(|_| Vec::with_capacity(n)).collect();
    // Channel (src → dst) for every pair, self included (never used).
    for dst_from in from.iter_mut() {
        for src_to in to.iter_mut() {
            let (tx, rx) = channel();
            src_to.push(tx);
            dst_from.push(rx);
        }
    }
    // `to[src][dst]` must pair with `from[dst][src]`: the loops above built `to[src]` in dst
    // order and `from[dst]` in src order, so they do.
    to.into_iter()
        .zip(from)
        .enumerate()
        .map(|(rank, (to, from))| LocalPeer {
            rank,
            to,
            from,
            next: 0,
        })
        .collect()
}

impl LocalPeer {
    fn deliver(&self, to: usize, tag: i32, data: Vec<f64>) {
        // A rank thread that has ended dropped its inboxes; the message is lost, as a message to
        // a dead process would be.
        if let Some(tx) = self.to.get(to) {
            let _ = tx.send(Packet {
                source: self.rank,
                tag,
                data,
            });
        }
    }
}

impl PeerTransport for LocalPeer {
    type Buf = LocalBuf;
    type Handle = Vec<f64>;

    fn rank(&self) -> usize {
        self.rank
    }
    fn buffer(&self, len: usize) -> LocalBuf {
        LocalBuf(vec![0.0; len])
    }
    fn post(&mut self, buf: &mut LocalBuf, to: usize, tag: i32, len: usize) {
        self.deliver(to, tag, buf.0[..len.min(buf.0.len())].to_vec());
    }
    fn send(&mut self, to: usize, tag: i32, data: &[f64]) {
        self.deliver(to, tag, data.to_vec());
    }
    fn probe(&mut self, from: usize) -> Option<Incoming<Vec<f64>>> {
        self.from.get(from)?.try_recv().ok().map(incoming)
    }
    fn receive(&mut self, msg: Incoming<Vec<f64>>, into: &mut [f64]) {
        into.copy_from_slice(&msg.handle);
    }
}

/// Rank 0 of a mesh as the coordinator's end: any-source probes, round robin over the senders.
impl Transport for LocalPeer {
    type Buf = LocalBuf;
    type Handle = Vec<f64>;

    fn buffer(&self, len: usize) -> LocalBuf {
        PeerTransport::buffer(self, len)
    }
    fn post(&mut self, buf: &mut LocalBuf, to: usize, tag: i32, len: usize) {
        PeerTransport::post(self, buf, to, tag, len);
    }
    fn send(&mut self, to: usize, tag: i32, data: &[f64]) {
        PeerTransport::send(self, to, tag, data);
    }
    fn probe(&mut self) -> Option<Incoming<Vec<f64>>> {
        let n = self.from.len();
        for i in 0..n {
            let src = (self.next + i) % n;
            if let Ok(p) = self.from[src].try_recv() {
                self.next = (src + 1) % n;
                return Some(incoming(p));
            }
        }
        None
    }
    fn receive(&mut self, msg: Incoming<Vec<f64>>, into: &mut [f64]) {
        PeerTransport::receive(self, msg, into);
    }
}
