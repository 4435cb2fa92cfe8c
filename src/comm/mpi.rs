//! MPI plumbing shared by rank 0 and the workers: send buffers that outlive their nonblocking
//! sends, matched receives with length checks, and the job-wide abort.
//!
//! rsmpi ties a request to the lifetime of its buffer through a scope. gradcode's sends must
//! outlive any lexical scope (a parameter send to a worker may still be in flight when rank 0
//! moves on to the next iteration), so [`SendBuf`] owns a heap buffer, lends it to MPI as a
//! `'static` slice, and guarantees by construction that the buffer is neither written nor freed
//! while a request on it is pending: [`SendBuf::write`] and `Drop` first complete every request.
//! Sends are never cancelled (Open MPI cannot cancel sends, GUIDE §2); they complete because the
//! receiver always matches every message (rank 0 drains late messages).

use mpi::point_to_point::{Destination, Message, Status};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

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

    /// Length in values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the buffer has zero length.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Complete what has completed; true when no send reads from the buffer any more.
    /// In place (no allocation: it runs for every ring slot every iteration).
    pub fn is_free(&mut self) -> bool {
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

    /// Number of sends still reading from the buffer (after testing them).
    pub fn in_flight(&mut self) -> usize {
        self.is_free();
        self.pending.len()
    }

    /// Block until every send from this buffer has completed.
    pub fn wait(&mut self) {
        for r in self.pending.drain(..) {
            r.wait();
        }
    }

    /// The buffer for writing; waits for pending sends first.
    pub fn write(&mut self) -> &mut [f64] {
        self.wait();
        &mut self.data
    }

    /// Read access (always safe: MPI only reads a send buffer).
    pub fn read(&self) -> &[f64] {
        &self.data
    }

    /// Post a nonblocking send of the first `len` values to `dest` with `tag`.
    pub fn post(&mut self, comm: &SimpleCommunicator, dest: i32, tag: i32, len: usize) {
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

impl Drop for SendBuf {
    fn drop(&mut self) {
        self.wait();
    }
}

/// Number of f64 values in a probed message.
pub fn count_f64(status: &Status) -> usize {
    usize::try_from(status.count(f64::equivalent_datatype())).unwrap_or(0)
}

/// Receive a probed message into `buf` if it fits, else into `scratch` (a message must always be
/// matched, never left queued, even when it is too long to be valid).
/// Returns the number of values received and whether they went to `buf`.
pub fn receive_checked(
    msg: Message,
    status: &Status,
    buf: &mut [f64],
    scratch: &mut Vec<f64>,
) -> (usize, bool) {
    let n = count_f64(status);
    if n <= buf.len() {
        msg.matched_receive_into(&mut buf[..n]);
        (n, true)
    } else {
        scratch.resize(n, 0.0);
        msg.matched_receive_into(&mut scratch[..n]);
        (n, false)
    }
}

/// Abort the whole MPI job with `code` (every rank exits; used for fatal errors and panics).
pub fn abort(code: i32) -> ! {
    let world = SimpleCommunicator::world();
    world.abort(code)
}

/// Rank of this process in the world communicator (0 when MPI is not initialized).
pub fn world_rank() -> i32 {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        SimpleCommunicator::world().rank()
    } else {
        0
    }
}
