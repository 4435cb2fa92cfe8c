//! The MPI transport: the only code in gradcode that calls rsmpi.
//!
//! - [`with_mpi`] initializes MPI once for a job, installs the abort-on-panic hook, quiets ranks
//!   other than 0, runs the job on a [`World`], prints a job error before `MPI_Finalize`, and
//!   returns the exit code.
//! - [`World`]: the start-up collectives (the last ones of a job: a broadcast from rank 0 and one
//!   all-gather of the load outcome), the job-wide abort, and the two transport ends.
//! - [`MpiTransport`] (rank 0), [`MpiWorker`] and [`MpiPeer`] implement [`Transport`],
//!   [`WorkerTransport`] and [`PeerTransport`] with nonblocking sends and matched probes.
//!
//! rsmpi ties a request to the lifetime of its buffer through a scope. gradcode's sends must
//! outlive any lexical scope (a parameter send to a worker may still be in flight when rank 0
//! moves on to the next iteration), so [`SendBuf`] owns a heap buffer, lends it to MPI as a
//! `'static` slice, and guarantees by construction that the buffer is neither written nor freed
//! while a request on it is pending: [`SendSlot::write`] and `Drop` first complete every request.
//! Sends are never cancelled (Open MPI cannot cancel sends, GUIDE §2); they complete because the
//! receiver always matches every message (rank 0 drains late messages).

use mpi::point_to_point::{Destination, Message, Source};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::{Incoming, PeerTransport, SendSlot, Transport, WorkerTransport};

/// A heap buffer with the nonblocking sends currently reading from it.
pub struct SendBuf {
    data: Box<[f64]>,
    pending: Vec<Request<'static, [f64], StaticScope>>,
}

impl std::fmt::Debug for SendBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBuf")
            .field("len", &self.data.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl SendBuf {
    /// A zeroed buffer of `len` values.
    pub fn new(len: usize) -> Self {
        SendBuf {
            data: vec![0.0; len].into_boxed_slice(),
            pending: Vec::new(),
        }
    }

    /// Post a nonblocking send of the first `len` values to `dest` with `tag`.
    fn post(&mut self, comm: &SimpleCommunicator, dest: i32, tag: i32, len: usize) {
        let len = len.min(self.data.len());
        // SAFETY: the slice points into `self.data`, a boxed slice whose heap allocation never
        // moves. It is only written through `write()` and only freed in `Drop`, both of which
        // complete every pending request first, so MPI never reads freed or changing memory.
        let slice: &'static [f64] = unsafe { std::slice::from_raw_parts(self.data.as_ptr(), len) };
        let req = comm
            .process_at_rank(dest)
            .immediate_send_with_tag(StaticScope, slice, tag);
        self.pending.push(req);
    }
}

impl SendSlot for SendBuf {
    fn len(&self) -> usize {
        self.data.len()
    }

    /// Complete what has completed; in place (no allocation: it runs for every ring slot every
    /// iteration).
    fn is_free(&mut self) -> bool {
        let mut i = 0;
        while i < self.pending.len() {
            // `test` consumes the request and hands it back while incomplete: take it out,
            // and put an incomplete one back where it was (never beyond the capacity).
            let r = self.pending.swap_remove(i);
            if let Err(r) = r.test() {
                self.pending.push(r);
                let last = self.pending.len() - 1;
                self.pending.swap(i, last);
                i += 1;
            }
        }
        self.pending.is_empty()
    }

    fn wait(&mut self) {
        for r in self.pending.drain(..) {
            r.wait();
        }
    }

    fn write(&mut self) -> &mut [f64] {
        self.wait();
        &mut self.data
    }

    fn read(&self) -> &[f64] {
        &self.data
    }
}

impl Drop for SendBuf {
    fn drop(&mut self) {
        self.wait();
    }
}

/// Number of f64 values in a probed message.
fn count_f64(status: &mpi::point_to_point::Status) -> usize {
    usize::try_from(status.count(f64::equivalent_datatype())).unwrap_or(0)
}

fn incoming(msg: Message, status: mpi::point_to_point::Status) -> Incoming<Message> {
    Incoming {
        source: usize::try_from(status.source_rank()).unwrap_or(usize::MAX),
        tag: status.tag(),
        len: count_f64(&status),
        handle: msg,
    }
}

/// The next message from rank `from` (any tag), matched, without waiting.
fn probe_rank(world: &SimpleCommunicator, from: usize) -> Option<Incoming<Message>> {
    world
        .process_at_rank(from as i32)
        .immediate_matched_probe()
        .map(|(m, s)| incoming(m, s))
}

/// Rank 0's end over MPI.
#[derive(Clone, Copy)]
pub struct MpiTransport<'a> {
    world: &'a SimpleCommunicator,
}

impl Transport for MpiTransport<'_> {
    type Buf = SendBuf;
    type Handle = Message;

    fn buffer(&self, len: usize) -> SendBuf {
        SendBuf::new(len)
    }
    fn post(&mut self, buf: &mut SendBuf, to: usize, tag: i32, len: usize) {
        buf.post(self.world, to as i32, tag, len);
    }
    fn send(&mut self, to: usize, tag: i32, data: &[f64]) {
        self.world
            .process_at_rank(to as i32)
            .send_with_tag(data, tag);
    }
    fn probe(&mut self) -> Option<Incoming<Message>> {
        self.world
            .any_process()
            .immediate_matched_probe()
            .map(|(m, s)| incoming(m, s))
    }
    fn receive(&mut self, msg: Incoming<Message>, into: &mut [f64]) {
        msg.handle.matched_receive_into(into);
    }
}

/// A worker's end over MPI.
pub struct MpiWorker<'a> {
    world: &'a SimpleCommunicator,
    rank: usize,
}

impl WorkerTransport for MpiWorker<'_> {
    type Buf = SendBuf;
    type Handle = Message;

    fn rank(&self) -> usize {
        self.rank
    }
    fn buffer(&self, len: usize) -> SendBuf {
        SendBuf::new(len)
    }
    fn post(&mut self, buf: &mut SendBuf, tag: i32, len: usize) {
        buf.post(self.world, 0, tag, len);
    }
    fn send(&mut self, tag: i32, data: &[f64]) {
        self.world.process_at_rank(0).send_with_tag(data, tag);
    }
    fn wait(&mut self) -> Incoming<Message> {
        let (m, s) = self.world.process_at_rank(0).matched_probe();
        incoming(m, s)
    }
    fn receive(&mut self, msg: Incoming<Message>, into: &mut [f64]) {
        msg.handle.matched_receive_into(into);
    }
    fn waiting(&mut self, tag: i32) -> bool {
        self.world
            .process_at_rank(0)
            .immediate_probe_with_tag(tag)
            .is_some()
    }
    fn post_to(&mut self, buf: &mut SendBuf, to: usize, tag: i32, len: usize) {
        buf.post(self.world, to as i32, tag, len);
    }
    fn send_to(&mut self, to: usize, tag: i32, data: &[f64]) {
        MpiTransport { world: self.world }.send(to, tag, data);
    }
    fn probe_from(&mut self, from: usize) -> Option<Incoming<Message>> {
        probe_rank(self.world, from)
    }
}

/// A layer rank's end over MPI (it talks to rank 0 and its neighbours).
pub struct MpiPeer<'a> {
    world: &'a SimpleCommunicator,
    rank: usize,
}

impl PeerTransport for MpiPeer<'_> {
    type Buf = SendBuf;
    type Handle = Message;

    fn rank(&self) -> usize {
        self.rank
    }
    fn buffer(&self, len: usize) -> SendBuf {
        SendBuf::new(len)
    }
    /// As rank 0's end posts (to any rank).
    fn post(&mut self, buf: &mut SendBuf, to: usize, tag: i32, len: usize) {
        MpiTransport { world: self.world }.post(buf, to, tag, len);
    }
    fn send(&mut self, to: usize, tag: i32, data: &[f64]) {
        MpiTransport { world: self.world }.send(to, tag, data);
    }
    fn probe(&mut self, from: usize) -> Option<Incoming<Message>> {
        probe_rank(self.world, from)
    }
    fn receive(&mut self, msg: Incoming<Message>, into: &mut [f64]) {
        msg.handle.matched_receive_into(into);
    }
}

/// The MPI world of a job: rank, size, start-up collectives, transports, abort.
pub struct World {
    comm: SimpleCommunicator,
}

impl World {
    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    /// Ranks in the job.
    pub fn size(&self) -> usize {
        self.comm.size() as usize
    }

    /// Rank 0's transport end.
    pub fn transport(&self) -> MpiTransport<'_> {
        MpiTransport { world: &self.comm }
    }

    /// A worker's transport end.
    pub fn worker(&self) -> MpiWorker<'_> {
        MpiWorker {
            world: &self.comm,
            rank: self.rank(),
        }
    }

    /// A layer rank's transport end.
    pub fn peer(&self) -> MpiPeer<'_> {
        MpiPeer {
            world: &self.comm,
            rank: self.rank(),
        }
    }

    /// Every rank's flag, gathered on every rank (a start-up collective).
    pub fn all_gather_flags(&self, flag: bool) -> Vec<bool> {
        let mut flags = vec![0i32; self.size()];
        self.comm.all_gather_into(&i32::from(flag), &mut flags[..]);
        flags.into_iter().map(|f| f != 0).collect()
    }

    /// Broadcast `values` from rank 0 to every rank (a start-up collective).
    pub fn broadcast(&self, values: &mut [f64]) {
        self.comm.process_at_rank(0).broadcast_into(values);
    }
}

/// Abort the whole MPI job with `code` (every rank exits; used for fatal errors and panics).
pub fn abort(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

/// Rank of this process in the world communicator (0 when MPI is not initialized).
pub fn world_rank() -> usize {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        SimpleCommunicator::world().rank() as usize
    } else {
        0
    }
}

/// The MPI library's version string and the MPI standard version, for provenance.
pub fn library_version() -> (String, String) {
    let lib = mpi::environment::library_version()
        .unwrap_or_default()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let (major, minor) = mpi::environment::version();
    (lib, format!("{major}.{minor}"))
}

/// Initialize MPI, run `job` on the world, finalize; returns the exit code.
///
/// A panic on any rank aborts the whole job (unwinding would finalize MPI while the others wait,
/// GUIDE §2); ranks other than 0 log warnings and errors only (unless debug logging was asked
/// for), so rank 0 stays readable. A job error is printed on its rank before `MPI_Finalize`: once
/// the other ranks exit, mpirun may kill this one, and the message must not be lost.
pub fn with_mpi<E: std::fmt::Display>(
    job: impl FnOnce(&World) -> Result<i32, E>,
    exit_code: impl Fn(&E) -> i32,
) -> Option<i32> {
    let universe = mpi::initialize()?;
    let world = World {
        comm: universe.world(),
    };
    let rank = world.rank();
    install_panic_hook(rank);
    if rank != 0 && log::max_level() < log::LevelFilter::Debug {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let code = match job(&world) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gradcode: error: {e}");
            exit_code(&e)
        }
    };
    drop(world);
    drop(universe);
    Some(code)
}

fn install_panic_hook(rank: usize) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("gradcode: fatal: rank {rank} panicked; aborting the MPI job");
        abort(70);
    }));
}
