//! The one protocol between rank 0 and the workers (GUIDE §2), written once.
//!
//! - [`protocol`]: message kinds, tags and the checked header (pure).
//! - [`Collector`] ([`collector`]): rank 0's side. Posts parameters from a ring of buffers shared
//!   by all destinations, receives every message with a matched probe, checks every header and
//!   payload (an invalid message is an erasure, counted and never used), collects until the
//!   responders are decodable or the deadline policy says stop, drains late messages and records
//!   them, gathers the uncoded pieces of a correctness check, and at the end sends STOP and
//!   reconciles message counts so that every send completes.
//! - [`WorkerLink`] ([`link`]): a worker's side. Blocks for the newest parameters, hands them to
//!   the job's [`link::WorkerJob`], injects the seeded straggler delays, sends each result with a
//!   nonblocking send from double buffers, and answers STOP with its message count.
//! - [`group`]: the tree decode (`--decode-tree G`, issue 20 §4). A group member's transport
//!   end ([`Relay`]) sends its results to its group leader instead of rank 0; a leader's
//!   ([`Leader`]) gathers its members' results for the round (matched probes, the collector's
//!   header checks) until its group decodes, rank 0 moves on or the group deadline passes, and
//!   forwards ONE combined result to rank 0. Both wrap a worker's transport end, so the worker
//!   link and the job are unchanged.
//! - [`probe`]: the α–β link probe at start-up (rank 0 times echoed probes of a few sizes to
//!   each worker through the collector and the worker link and fits latency and inverse
//!   bandwidth).
//! - [`LayerLink`] ([`neighbour`]) and [`Monitor`] ([`stream`]): the links of `gradcode admm`
//!   (pdADMM, model parallelism). A layer rank exchanges with its two neighbour layer ranks by
//!   nonblocking point-to-point (p backwards, q and u forwards), streams one report per iteration
//!   to rank 0, and obeys rank 0's grants, halt and STOP; rank 0 receives the reports as a
//!   stream, in order per rank. The same rules as above: every header checked, matched receives,
//!   sends from buffers that outlive them and are never cancelled, every message received before
//!   shutdown (a `Done` with a count on every neighbour link, STOP/ACK with rank 0), polling with
//!   a short sleep, no collective after start-up.
//! - Transports behind three traits, each with two implementations: [`mpi`] (rsmpi
//!   point-to-point, the only place that calls it) and [`local`] (threads and channels in one
//!   process, for unit tests of the protocol without `mpirun`). [`Transport`] is rank 0's end,
//!   [`WorkerTransport`] a worker's (it talks to rank 0 only), [`PeerTransport`] a layer rank's
//!   (it talks to rank 0 and its neighbours).
//!
//! Every MPI job (`train`, `matvec`, `matmul`, coded training through mat-vecs) talks through
//! the collector and the worker link; `admm` through the layer link and the monitor (a job whose
//! workers run ahead of rank 0 by design: a round per iteration posted and collected by rank 0
//! would be a barrier every iteration, which `--max-staleness` exists to avoid). What a job
//! computes and how rank 0 decides that a round is complete stay with the job
//! ([`link::WorkerJob`], [`collector::Rule`]).
//!
//! Unit tests of the protocol run rank 0 and the workers as threads over [`local`] (`tests.rs`,
//! and the layer link's in `neighbour.rs`).
//!
//! Not here: collectives after start-up (there are none on the data path: GUIDE §2, Open MPI 4.1
//! has no fault tolerance).

pub mod collector;
pub mod group;
pub mod link;
pub mod local;
pub mod mpi;
pub mod neighbour;
pub mod probe;
pub mod protocol;
pub mod stream;
#[cfg(test)]
mod tests;

pub use collector::{Collected, Collector, CollectorSpec, OnDeadline, Round, Rule};
pub use group::{GroupCompression, GroupSpec, Leader, Relay};
pub use link::{peak_rss_kib, Responder, WorkerJob, WorkerLink, WorkerSummary};
pub use neighbour::{FromNeighbour, LayerLink, LinkSpec, Side};
pub use stream::{Event, Monitor};

use thiserror::Error;

/// What a worker's coded results carry (`--messages`, issue 20 §2).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Messages {
    /// The full vector.
    #[default]
    Dense,
    /// Only the columns the worker's rows touch (its support, sent once at start-up): the
    /// results carry them, and rank 0 sends each worker the parameters on them only.
    Support,
    /// The support when it is at most half the columns, else the full vector (per worker).
    Auto,
}

/// Errors of the transport and of the collection protocol.
#[derive(Debug, Error)]
pub enum CommError {
    #[error("protocol violation from rank {rank}: {reason}")]
    Protocol { rank: usize, reason: String },
    #[error("iteration {iteration}: no decodable set of responders after {waited_ms:.0} ms (--max-wait-ms); {have} of {n} workers answered; silent workers (ranks): {silent:?}")]
    Timeout {
        iteration: u64,
        waited_ms: f64,
        have: usize,
        n: usize,
        silent: Vec<usize>,
    },
    #[error("{0}")]
    Fatal(String),
}

/// A message that has arrived and is matched to this receiver (no other receive can take it);
/// it must be received with the transport that probed it.
#[derive(Debug)]
pub struct Incoming<M> {
    /// Sender's rank.
    pub source: usize,
    /// The message's tag.
    pub tag: i32,
    /// Values in the message.
    pub len: usize,
    handle: M,
}

/// A send buffer that may be read by nonblocking sends in flight. Writing waits for them.
pub trait SendSlot {
    /// Values in the buffer.
    fn len(&self) -> usize;
    /// Whether the buffer has no values.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The buffer for writing; waits until no send reads from it.
    fn write(&mut self) -> &mut [f64];
    /// Read access.
    fn read(&self) -> &[f64];
    /// Whether no send reads from the buffer any more (completes what has completed).
    fn is_free(&mut self) -> bool;
    /// Block until every send from this buffer has completed.
    fn wait(&mut self);
}

/// Rank 0's end of the transport.
pub trait Transport {
    /// The send buffer type.
    type Buf: SendSlot;
    /// What a matched probe holds until the receive.
    type Handle;
    /// A zeroed send buffer of `len` values.
    fn buffer(&self, len: usize) -> Self::Buf;
    /// Post a nonblocking send of the first `len` values of `buf` to rank `to`.
    fn post(&mut self, buf: &mut Self::Buf, to: usize, tag: i32, len: usize);
    /// A small blocking send (STOP).
    fn send(&mut self, to: usize, tag: i32, data: &[f64]);
    /// The next message from any rank, matched, without waiting.
    fn probe(&mut self) -> Option<Incoming<Self::Handle>>;
    /// Receive a matched message; `into` has exactly `msg.len` values.
    fn receive(&mut self, msg: Incoming<Self::Handle>, into: &mut [f64]);
}

/// A worker's end of the transport (it talks only to rank 0).
pub trait WorkerTransport {
    /// The send buffer type.
    type Buf: SendSlot;
    /// What a matched probe holds until the receive.
    type Handle;
    /// This worker's rank (1..=n).
    fn rank(&self) -> usize;
    /// A zeroed send buffer of `len` values.
    fn buffer(&self, len: usize) -> Self::Buf;
    /// Post a nonblocking send of the first `len` values of `buf` to rank 0.
    fn post(&mut self, buf: &mut Self::Buf, tag: i32, len: usize);
    /// A small blocking send to rank 0 (ACK, an abandoned part).
    fn send(&mut self, tag: i32, data: &[f64]);
    /// Block until a message from rank 0 arrives; matched.
    fn wait(&mut self) -> Incoming<Self::Handle>;
    /// Receive a matched message; `into` has exactly `msg.len` values.
    fn receive(&mut self, msg: Incoming<Self::Handle>, into: &mut [f64]);
    /// Whether a message with `tag` from rank 0 is waiting.
    fn waiting(&mut self, tag: i32) -> bool;
    /// Post a nonblocking send of the first `len` values of `buf` to worker rank `to` (a group
    /// member to its leader, [`group`]).
    fn post_to(&mut self, buf: &mut Self::Buf, to: usize, tag: i32, len: usize);
    /// A small blocking send to worker rank `to` (a member's Done to its leader).
    fn send_to(&mut self, to: usize, tag: i32, data: &[f64]);
    /// The next message from worker rank `from` (any tag, in the order it was sent), matched,
    /// without waiting (a leader gathering its group).
    fn probe_from(&mut self, from: usize) -> Option<Incoming<Self::Handle>>;
    /// Of the messages this end sent, how many went to another worker rather than rank 0
    /// (a group member's results): not counted in the ACK.
    fn relayed(&self) -> u64 {
        0
    }
    /// Whether this end's results reach rank 0 only inside a group leader's combination (a
    /// tree-decode member sending to its leader, or a leader's own result, [`group`]): the
    /// job then sends them uncompressed, and the leader compresses what it forwards.
    fn combined(&self) -> bool {
        false
    }
    /// Called once on STOP, before the ACK: a group member tells its leader how many results
    /// it sent, a leader drains its members ([`group`]).
    fn close(&mut self) {}
}

/// A layer rank's end of the transport (`gradcode admm`): it talks to rank 0 and to its
/// neighbour ranks, each by rank.
pub trait PeerTransport {
    /// The send buffer type.
    type Buf: SendSlot;
    /// What a matched probe holds until the receive.
    type Handle;
    /// This rank.
    fn rank(&self) -> usize;
    /// A zeroed send buffer of `len` values.
    fn buffer(&self, len: usize) -> Self::Buf;
    /// Post a nonblocking send of the first `len` values of `buf` to rank `to`.
    fn post(&mut self, buf: &mut Self::Buf, to: usize, tag: i32, len: usize);
    /// A small blocking send (a header-only message).
    fn send(&mut self, to: usize, tag: i32, data: &[f64]);
    /// The next message from rank `from` (any tag, in the order it was sent), matched, without
    /// waiting.
    fn probe(&mut self, from: usize) -> Option<Incoming<Self::Handle>>;
    /// Receive a matched message; `into` has exactly `msg.len` values.
    fn receive(&mut self, msg: Incoming<Self::Handle>, into: &mut [f64]);
}
