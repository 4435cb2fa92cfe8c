//! Message kinds, tags and the header every message carries (GUIDE §2).
//!
//! Every message is one contiguous `f64` buffer: a [`HEADER_LEN`]-value header followed by the
//! payload, so a header can never be matched with the wrong payload. Integers in the header are
//! exact in f64 (below 2^53). Tags are fixed per kind (all far below the portable bound 32767);
//! the iteration lives in the header.
//!
//! Every field means one thing. A field that a kind does not use must be zero: [`Header::parse`]
//! refuses anything else, so a message that is not what it claims to be is an erasure, counted
//! and never used (RELIABILITY FI-5, FI-6), as is a wrong magic, kind, length or a non-finite
//! timing. What each kind uses:
//!
//! | kind | sender | fields |
//! |---|---|---|
//! | [`Kind::Params`] | rank 0 | `iteration`, `phase`, `flags` ([`FLAG_CHECK`]), `count` (`train --adapt`: the s whose partitions rank 0 asks the worker to hold, loading what it lacks in the background; 0 otherwise), `len` |
//! | [`Kind::Result`] | worker | `iteration`, `rank`, `phase`, `part`, `compute_s`, `injected_s`, `count` (`train --adapt`: the largest s whose partitions the worker holds; 0 otherwise), `len` (0: the part was abandoned) |
//! | [`Kind::Check`] | worker | `iteration`, `rank`, `phase`, `part` (which uncoded piece), `len` |
//! | [`Kind::Stop`] | rank 0 | `exit_code` |
//! | [`Kind::Ack`] | worker | `rank`, `count` (messages the worker sent in the whole run), `len` = [`ACK_LEN`] (the payload: the sender's peak resident memory in KiB) |
//! | [`Kind::Support`] | worker, once at start-up | `rank`, `len` (the payload: the columns its results carry, increasing) |
//! | [`Kind::Probe`] | rank 0 → worker at start-up, echoed back | `iteration` (always 0), `rank` (0 from rank 0, the worker's in the echo), `part` (the probe's number), `len` (zeros: only the size matters) |
//! | [`Kind::Direct`] | rank 0 → a `--decode-tree` group member | `iteration` (the first round rank 0 expects from it directly) |
//! | [`Kind::Rejoin`] | rank 0 → a `--decode-tree` group member that fell back | `iteration` (from the round it is posted next: results to the leader again) |
//! | [`Kind::Forward`] | layer rank → next layer rank | `iteration` (the iteration whose first phase uses it), `rank`, `part` (the layer l whose q_l, u_l it carries), `len` |
//! | [`Kind::Backward`] | layer rank → previous layer rank | `iteration` (the iteration whose second phase uses it), `rank`, `part` (the layer l whose p_l it carries), `len` |
//! | [`Kind::Done`] | layer rank → neighbour | `rank`, `count` (data messages it sent on this link) |
//! | [`Kind::Report`] | layer rank → rank 0 | `iteration`, `rank`, `compute_s`, `injected_s`, `len` |
//! | [`Kind::Saved`] | layer rank → rank 0 | `iteration` (the boundary its checkpoint holds), `rank` |
//! | [`Kind::Grant`] | rank 0 → layer rank | `iteration` (the first iteration not yet granted) |
//! | [`Kind::Halt`] | rank 0 → layer rank | `iteration` (the boundary at which to checkpoint and stop) |
//!
//! The last seven are the messages of `gradcode admm` (pdADMM: layers exchange with their two
//! neighbours, [`super::neighbour`], and stream their reports to rank 0, [`super::stream`]).
//!
//! Pure and MPI-free: the transports in [`super::mpi`] and [`super::local`] move the buffers.

use thiserror::Error;

/// Tag of parameter messages (rank 0 → worker).
pub const TAG_PARAMS: i32 = 11;
/// Tag of coded results (worker → rank 0).
pub const TAG_RESULT: i32 = 12;
/// Tag of uncoded pieces sent for a correctness check (worker → rank 0).
pub const TAG_CHECK: i32 = 13;
/// Tag of the STOP message (rank 0 → worker).
pub const TAG_STOP: i32 = 14;
/// Tag of the STOP acknowledgement (worker → rank 0).
pub const TAG_ACK: i32 = 15;
/// Tag of a layer's q and u sent to the next layer rank (admm).
pub const TAG_FORWARD: i32 = 16;
/// Tag of a layer's p sent to the previous layer rank (admm).
pub const TAG_BACKWARD: i32 = 17;
/// Tag of the last message on a neighbour link, with its count (admm).
pub const TAG_DONE: i32 = 18;
/// Tag of a layer rank's per-iteration report to rank 0 (admm).
pub const TAG_REPORT: i32 = 19;
/// Tag of a layer rank's "checkpoint written" to rank 0 (admm).
pub const TAG_SAVED: i32 = 20;
/// Tag of rank 0's grant of iterations to a layer rank (admm).
pub const TAG_GRANT: i32 = 21;
/// Tag of rank 0's request to checkpoint and stop at a boundary (admm).
pub const TAG_HALT: i32 = 22;
/// Tag of a worker's support, sent once at start-up (worker → rank 0; issue 20 §2).
pub const TAG_SUPPORT: i32 = 23;
/// Tag of the link probe at start-up (rank 0 → worker, echoed back; [`Kind::Probe`]).
pub const TAG_PROBE: i32 = 24;
/// Tag of rank 0's order to a tree-decode group member to send its results to rank 0 from now
/// on ([`Kind::Direct`], `comm::group`).
pub const TAG_DIRECT: i32 = 25;
/// Tag of rank 0's order to a member that fell back to send to its leader again (its leader
/// answered; [`Kind::Rejoin`], `comm::group`).
pub const TAG_REJOIN: i32 = 26;

/// Values in the header.
pub const HEADER_LEN: usize = 12;
/// Marks a gradcode message ("gc" in ASCII).
pub const MAGIC: f64 = 26_467.0;
/// Parameter flag: the worker also sends the uncoded pieces of its work ([`Kind::Check`]) so rank
/// 0 can compare the decoded result with the exact one.
pub const FLAG_CHECK: u32 = 1;
/// Values in an ACK's payload: the sender's peak resident memory in KiB (`ru_maxrss`), so rank 0
/// records every rank's memory high-water mark in the results.
pub const ACK_LEN: usize = 1;
/// Largest payload a header may declare (2^40 values, 8 TiB: beyond any real message, below the
/// exactness limit of f64 integers).
pub const MAX_LEN: usize = 1 << 40;

/// What a message is (its number in the header; the admm kinds are numbered like their tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Rank 0's parameters (or the vector of a mat-vec, a worker's share of a product).
    Params = 1,
    /// A worker's coded result for one part of one iteration.
    Result = 2,
    /// An uncoded piece of a worker's work, for the correctness check.
    Check = 3,
    /// Rank 0 ends the run; carries the job's exit code.
    Stop = 4,
    /// A worker's answer to STOP; carries how many messages it sent.
    Ack = 5,
    /// A layer's q_l and u_l for the next layer rank.
    Forward = 16,
    /// A layer's p_l for the previous layer rank.
    Backward = 17,
    /// The last message on a neighbour link; carries how many data messages preceded it.
    Done = 18,
    /// A layer rank's per-iteration report (objective terms, residuals, timings; weights at
    /// evaluation iterations).
    Report = 19,
    /// A layer rank wrote its checkpoint of a boundary.
    Saved = 20,
    /// Rank 0 lets a layer rank run every iteration below `iteration`.
    Grant = 21,
    /// Rank 0 asks a layer rank to checkpoint at boundary `iteration` and stop there.
    Halt = 22,
    /// A worker's support: the columns (indices into the full result vector) its results carry,
    /// in this order, sent once before the first round.
    Support = 6,
    /// The α–β link probe at start-up: rank 0 sends it, the worker echoes it back unchanged
    /// but for the rank (`comm::probe`).
    Probe = 7,
    /// Rank 0 tells a `--decode-tree` group member whose leader went silent to send its results
    /// to rank 0 directly from now on (`comm::group`).
    Direct = 8,
    /// Rank 0 tells a member that fell back (its leader answered again) to send its results to
    /// its leader again (`comm::group`).
    Rejoin = 9,
}

impl Kind {
    const ALL: [Kind; 16] = [
        Kind::Params,
        Kind::Result,
        Kind::Check,
        Kind::Stop,
        Kind::Ack,
        Kind::Forward,
        Kind::Backward,
        Kind::Done,
        Kind::Report,
        Kind::Saved,
        Kind::Grant,
        Kind::Halt,
        Kind::Support,
        Kind::Probe,
        Kind::Direct,
        Kind::Rejoin,
    ];

    fn from_f64(v: f64) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as i32 as f64 == v)
    }

    /// The kind sent with `tag`, if any.
    pub fn of_tag(tag: i32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The MPI tag of this kind.
    pub fn tag(self) -> i32 {
        match self {
            Kind::Params => TAG_PARAMS,
            Kind::Result => TAG_RESULT,
            Kind::Check => TAG_CHECK,
            Kind::Stop => TAG_STOP,
            Kind::Ack => TAG_ACK,
            Kind::Forward => TAG_FORWARD,
            Kind::Backward => TAG_BACKWARD,
            Kind::Done => TAG_DONE,
            Kind::Report => TAG_REPORT,
            Kind::Saved => TAG_SAVED,
            Kind::Grant => TAG_GRANT,
            Kind::Halt => TAG_HALT,
            Kind::Support => TAG_SUPPORT,
            Kind::Probe => TAG_PROBE,
            Kind::Direct => TAG_DIRECT,
            Kind::Rejoin => TAG_REJOIN,
        }
    }
}

/// The header of a message. Build one with the constructor of its kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub kind: Kind,
    /// Iteration (round) the message belongs to.
    pub iteration: u64,
    /// Sender's MPI rank (0 for rank 0's messages).
    pub rank: usize,
    /// Which kind of work within a job (e.g. the two mat-vecs of one training step).
    pub phase: usize,
    /// Which part of a worker's work (a chunk of partial work; the piece of a check).
    pub part: usize,
    /// Parameter flags ([`FLAG_CHECK`]).
    pub flags: u32,
    /// Seconds the worker computed for this iteration so far.
    pub compute_s: f64,
    /// Seconds of injected delay the worker applied for this iteration so far.
    pub injected_s: f64,
    /// Messages the worker sent in the whole run (ACK).
    pub count: u64,
    /// The job's exit code (STOP).
    pub exit_code: i32,
    /// Payload values that follow the header.
    pub len: usize,
}

/// Why a message was rejected.
#[derive(Debug, Error, PartialEq)]
pub enum HeaderError {
    #[error("message of {0} values is shorter than the header")]
    Short(usize),
    #[error("bad magic {0}")]
    Magic(f64),
    #[error("unknown message kind {0}")]
    Kind(f64),
    #[error("header field {field} = {value} is not a valid count")]
    Field { field: &'static str, value: f64 },
    #[error("payload length {declared} disagrees with the message ({actual} values)")]
    Length { declared: usize, actual: usize },
    #[error("timing field {field} = {value} is not a finite non-negative number")]
    Timing { field: &'static str, value: f64 },
    #[error("header field {field} = {value} is not used by a {kind:?} message and must be 0")]
    Unused {
        kind: Kind,
        field: &'static str,
        value: f64,
    },
    #[error("unknown parameter flags {0}")]
    Flags(u32),
    #[error("exit code {0} is outside 0..=255")]
    ExitCode(f64),
}

fn count(field: &'static str, v: f64, max: f64) -> Result<u64, HeaderError> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= max {
        Ok(v as u64)
    } else {
        Err(HeaderError::Field { field, value: v })
    }
}

fn timing(field: &'static str, v: f64) -> Result<f64, HeaderError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(HeaderError::Timing { field, value: v })
    }
}

/// Largest count field (2^53: integers above it are not exact in f64).
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

impl Header {
    fn empty(kind: Kind) -> Header {
        Header {
            kind,
            iteration: 0,
            rank: 0,
            phase: 0,
            part: 0,
            flags: 0,
            compute_s: 0.0,
            injected_s: 0.0,
            count: 0,
            exit_code: 0,
            len: 0,
        }
    }

    /// Rank 0's parameters for `iteration` of `phase`, `len` values.
    pub fn params(iteration: u64, phase: usize, flags: u32, len: usize) -> Header {
        Header {
            iteration,
            phase,
            flags,
            len,
            ..Header::empty(Kind::Params)
        }
    }

    /// A worker's result for `part` of (`iteration`, `phase`), `len` values (0: abandoned).
    pub fn result(iteration: u64, rank: usize, phase: usize, part: usize, len: usize) -> Header {
        Header {
            iteration,
            rank,
            phase,
            part,
            len,
            ..Header::empty(Kind::Result)
        }
    }

    /// An uncoded piece `part` of a worker's work for the check of (`iteration`, `phase`).
    pub fn check(iteration: u64, rank: usize, phase: usize, part: usize, len: usize) -> Header {
        Header {
            kind: Kind::Check,
            ..Header::result(iteration, rank, phase, part, len)
        }
    }

    /// STOP with the job's exit code.
    pub fn stop(exit_code: i32) -> Header {
        Header {
            exit_code,
            ..Header::empty(Kind::Stop)
        }
    }

    /// A worker's acknowledgement of STOP: it sent `count` messages in the run; [`ACK_LEN`]
    /// payload values follow ([`Header::ack_message`]).
    pub fn ack(rank: usize, count: u64) -> Header {
        Header {
            rank,
            count,
            len: ACK_LEN,
            ..Header::empty(Kind::Ack)
        }
    }

    /// The whole ACK message: the header and the sender's peak resident memory in KiB.
    pub fn ack_message(rank: usize, count: u64, peak_rss_kib: f64) -> [f64; HEADER_LEN + ACK_LEN] {
        let mut m = [0.0; HEADER_LEN + ACK_LEN];
        m[..HEADER_LEN].copy_from_slice(&Header::ack(rank, count).to_message());
        m[HEADER_LEN] = peak_rss_kib;
        m
    }

    /// The peak resident memory (KiB) an ACK carries; `None` when it is not a finite
    /// non-negative number.
    pub fn ack_peak_rss_kib(message: &[f64]) -> Option<f64> {
        message
            .get(HEADER_LEN)
            .copied()
            .filter(|v| v.is_finite() && *v >= 0.0)
    }

    /// Layer `layer`'s values for the neighbour (`Kind::Forward` or `Kind::Backward`), used by its
    /// `iteration`, `len` values, from `rank`.
    pub fn neighbour(kind: Kind, iteration: u64, rank: usize, layer: usize, len: usize) -> Header {
        Header {
            iteration,
            rank,
            part: layer,
            len,
            ..Header::empty(kind)
        }
    }

    /// The last message on a neighbour link: `rank` sent `count` data messages before it.
    pub fn done(rank: usize, count: u64) -> Header {
        Header {
            rank,
            count,
            ..Header::empty(Kind::Done)
        }
    }

    /// A layer rank's report of `iteration`, `len` values.
    pub fn report(
        iteration: u64,
        rank: usize,
        compute_s: f64,
        injected_s: f64,
        len: usize,
    ) -> Header {
        Header {
            iteration,
            rank,
            compute_s,
            injected_s,
            len,
            ..Header::empty(Kind::Report)
        }
    }

    /// A layer rank wrote its checkpoint of boundary `iteration`.
    pub fn saved(iteration: u64, rank: usize) -> Header {
        Header {
            iteration,
            rank,
            ..Header::empty(Kind::Saved)
        }
    }

    /// Rank 0's grant of every iteration below `until`, or its halt at boundary `until`.
    pub fn control(kind: Kind, until: u64) -> Header {
        Header {
            iteration: until,
            ..Header::empty(kind)
        }
    }

    /// Rank 0's order to a tree-decode member: results to rank 0 from round `iteration` on.
    pub fn direct(iteration: u64) -> Header {
        Header {
            iteration,
            ..Header::empty(Kind::Direct)
        }
    }

    /// Rank 0's order to a member that fell back: results to its leader again.
    pub fn rejoin(iteration: u64) -> Header {
        Header {
            iteration,
            ..Header::empty(Kind::Rejoin)
        }
    }

    /// A worker's support of `len` columns.
    pub fn support(rank: usize, len: usize) -> Header {
        Header {
            rank,
            len,
            ..Header::empty(Kind::Support)
        }
    }

    /// Link probe number `seq` from `rank` (0: rank 0's, a worker's rank: its echo), `len`
    /// payload values.
    pub fn probe(rank: usize, seq: usize, len: usize) -> Header {
        Header {
            rank,
            part: seq,
            len,
            ..Header::empty(Kind::Probe)
        }
    }

    /// Write the header into the first [`HEADER_LEN`] values of `buf`.
    pub fn write(&self, buf: &mut [f64]) {
        buf[..HEADER_LEN].copy_from_slice(&[
            MAGIC,
            self.kind as i32 as f64,
            self.iteration as f64,
            self.rank as f64,
            self.phase as f64,
            self.part as f64,
            f64::from(self.flags),
            self.compute_s,
            self.injected_s,
            self.count as f64,
            f64::from(self.exit_code),
            self.len as f64,
        ]);
    }

    /// The header alone, as a message of [`HEADER_LEN`] values.
    pub fn to_message(&self) -> [f64; HEADER_LEN] {
        let mut buf = [0.0; HEADER_LEN];
        self.write(&mut buf);
        buf
    }

    /// Parse and check the header of a received message of `buf.len()` values.
    pub fn parse(buf: &[f64]) -> Result<Header, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Short(buf.len()));
        }
        if buf[0] != MAGIC {
            return Err(HeaderError::Magic(buf[0]));
        }
        let kind = Kind::from_f64(buf[1]).ok_or(HeaderError::Kind(buf[1]))?;
        let exit = buf[10];
        if !(exit.is_finite() && exit.fract() == 0.0 && (0.0..=255.0).contains(&exit)) {
            return Err(HeaderError::ExitCode(exit));
        }
        let h = Header {
            kind,
            iteration: count("iteration", buf[2], MAX_COUNT)?,
            rank: count("rank", buf[3], MAX_COUNT)? as usize,
            phase: count("phase", buf[4], MAX_COUNT)? as usize,
            part: count("part", buf[5], MAX_COUNT)? as usize,
            flags: count("flags", buf[6], f64::from(u32::MAX))? as u32,
            compute_s: timing("compute_s", buf[7])?,
            injected_s: timing("injected_s", buf[8])?,
            count: count("count", buf[9], MAX_COUNT)?,
            exit_code: exit as i32,
            len: count("len", buf[11], MAX_LEN as f64)? as usize,
        };
        if h.len != buf.len() - HEADER_LEN {
            return Err(HeaderError::Length {
                declared: h.len,
                actual: buf.len() - HEADER_LEN,
            });
        }
        if h.kind == Kind::Ack && h.len != ACK_LEN {
            return Err(HeaderError::Field {
                field: "len",
                value: buf[11],
            });
        }
        h.check_fields(buf)?;
        Ok(h)
    }

    /// Every field the kind does not use is zero; flags are known.
    fn check_fields(&self, buf: &[f64]) -> Result<(), HeaderError> {
        // (field, slot) pairs a kind must leave at zero.
        let unused: &[(&'static str, usize)] = match self.kind {
            Kind::Params => &[
                ("rank", 3),
                ("part", 5),
                ("compute_s", 7),
                ("injected_s", 8),
                ("exit_code", 10),
            ],
            Kind::Result => &[("flags", 6), ("exit_code", 10)],
            Kind::Check => &[
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("count", 9),
                ("exit_code", 10),
            ],
            Kind::Stop => &[
                ("iteration", 2),
                ("rank", 3),
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("count", 9),
                ("len", 11),
            ],
            Kind::Support => &[
                ("iteration", 2),
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("count", 9),
                ("exit_code", 10),
            ],
            Kind::Ack => &[
                ("iteration", 2),
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("exit_code", 10),
            ],
            // A probe's iteration is 0 (start-up): checked like a neighbour message's.
            Kind::Forward | Kind::Backward | Kind::Probe => &[
                ("phase", 4),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("count", 9),
                ("exit_code", 10),
            ],
            Kind::Done => &[
                ("iteration", 2),
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("exit_code", 10),
                ("len", 11),
            ],
            Kind::Report => &[
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("count", 9),
                ("exit_code", 10),
            ],
            Kind::Saved => &[
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("count", 9),
                ("exit_code", 10),
                ("len", 11),
            ],
            Kind::Grant | Kind::Halt | Kind::Direct | Kind::Rejoin => &[
                ("rank", 3),
                ("phase", 4),
                ("part", 5),
                ("flags", 6),
                ("compute_s", 7),
                ("injected_s", 8),
                ("count", 9),
                ("exit_code", 10),
                ("len", 11),
            ],
        };
        if let Some(&(field, slot)) = unused.iter().find(|(_, slot)| buf[*slot] != 0.0) {
            return Err(HeaderError::Unused {
                kind: self.kind,
                field,
                value: buf[slot],
            });
        }
        if self.flags & !FLAG_CHECK != 0 {
            return Err(HeaderError::Flags(self.flags));
        }
        Ok(())
    }

    /// Whether a parameter message asks for the check pieces.
    pub fn wants_check(&self) -> bool {
        self.kind == Kind::Params && self.flags & FLAG_CHECK != 0
    }
}

/// Whether every payload value is finite.
pub fn payload_is_finite(payload: &[f64]) -> bool {
    payload.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(h: Header) {
        let mut buf = vec![0.0; HEADER_LEN + h.len];
        h.write(&mut buf);
        assert_eq!(Header::parse(&buf), Ok(h), "{h:?}");
    }

    #[test]
    fn every_kind_round_trips() {
        let mut r = Header::result(41, 3, 1, 2, 4);
        r.compute_s = 0.25;
        r.injected_s = 1.5;
        round_trip(r);
        round_trip(Header::params(7, 1, FLAG_CHECK, 3));
        round_trip(Header::check(7, 2, 0, 5, 6));
        round_trip(Header::stop(75));
        round_trip(Header::ack(4, 1234));
        round_trip(Header::neighbour(Kind::Forward, 9, 2, 3, 8));
        round_trip(Header::neighbour(Kind::Backward, 9, 3, 4, 5));
        round_trip(Header::done(2, 17));
        round_trip(Header::report(6, 1, 0.5, 0.25, 10));
        round_trip(Header::saved(20, 3));
        round_trip(Header::control(Kind::Grant, 12));
        round_trip(Header::control(Kind::Halt, 12));
        round_trip(Header::support(3, 4));
        round_trip(Header::probe(0, 5, 16));
        round_trip(Header::probe(2, 5, 0));
        round_trip(Header::direct(8));
        for k in Kind::ALL {
            assert_eq!(Kind::of_tag(k.tag()), Some(k));
        }
        assert!(Header::params(7, 0, FLAG_CHECK, 0).wants_check());
        assert!(!Header::params(7, 0, 0, 0).wants_check());
        assert_eq!(Kind::of_tag(TAG_ACK), Some(Kind::Ack));
        assert_eq!(Kind::of_tag(99), None);
    }

    #[test]
    fn bad_headers_are_rejected() {
        let h = Header::result(0, 1, 0, 0, 2);
        let mut buf = vec![0.0; HEADER_LEN + 2];
        h.write(&mut buf);
        assert_eq!(Header::parse(&buf[..5]), Err(HeaderError::Short(5)));
        assert!(matches!(
            Header::parse(&buf[..HEADER_LEN + 1]),
            Err(HeaderError::Length { .. })
        ));
        let edit = |slot: usize, v: f64| {
            let mut b = buf.clone();
            b[slot] = v;
            Header::parse(&b)
        };
        assert!(matches!(edit(0, 1.0), Err(HeaderError::Magic(_))));
        assert!(matches!(edit(1, 99.0), Err(HeaderError::Kind(_))));
        assert!(matches!(
            edit(2, 1.5),
            Err(HeaderError::Field {
                field: "iteration",
                ..
            })
        ));
        assert!(matches!(edit(7, f64::NAN), Err(HeaderError::Timing { .. })));
        assert!(matches!(edit(8, -1.0), Err(HeaderError::Timing { .. })));
        // A result's count is the s whose partitions the worker holds (`train --adapt`).
        assert_eq!(edit(9, 3.0).map(|h| h.count), Ok(3));
        assert!(matches!(
            edit(6, 1.0),
            Err(HeaderError::Unused { field: "flags", .. })
        ));
        assert!(matches!(edit(10, 300.0), Err(HeaderError::ExitCode(_))));
        assert!(matches!(
            edit(11, 1e300),
            Err(HeaderError::Field { field: "len", .. })
        ));
        assert!(!payload_is_finite(&[1.0, f64::INFINITY]));
    }

    #[test]
    fn fields_a_kind_does_not_use_must_be_zero() {
        // A STOP carrying an iteration, an ACK carrying an exit code, parameters naming a sender.
        let mut stop = Header::stop(3).to_message();
        stop[2] = 5.0;
        assert!(matches!(
            Header::parse(&stop),
            Err(HeaderError::Unused {
                kind: Kind::Stop,
                field: "iteration",
                ..
            })
        ));
        let mut ack = Header::ack_message(2, 9, 2048.0);
        assert_eq!(Header::parse(&ack).unwrap(), Header::ack(2, 9));
        assert_eq!(Header::ack_peak_rss_kib(&ack), Some(2048.0));
        ack[HEADER_LEN] = f64::NAN;
        assert_eq!(Header::ack_peak_rss_kib(&ack), None);
        assert!(matches!(
            Header::parse(&Header::ack(2, 9).to_message()),
            Err(HeaderError::Length {
                declared: 1,
                actual: 0
            })
        ));
        ack[10] = 1.0;
        assert!(matches!(
            Header::parse(&ack),
            Err(HeaderError::Unused {
                field: "exit_code",
                ..
            })
        ));
        let mut p = Header::params(1, 0, 0, 0).to_message();
        p[3] = 2.0;
        assert!(matches!(
            Header::parse(&p),
            Err(HeaderError::Unused { field: "rank", .. })
        ));
        let mut p = Header::params(1, 0, 0, 0).to_message();
        p[6] = 6.0;
        assert_eq!(Header::parse(&p), Err(HeaderError::Flags(6)));
        // A grant naming a sender, a neighbour message carrying a count, a report a part.
        let mut g = Header::control(Kind::Grant, 4).to_message();
        g[3] = 1.0;
        assert!(matches!(
            Header::parse(&g),
            Err(HeaderError::Unused {
                kind: Kind::Grant,
                field: "rank",
                ..
            })
        ));
        let mut f = Header::neighbour(Kind::Forward, 1, 1, 1, 0).to_message();
        f[9] = 2.0;
        assert!(matches!(
            Header::parse(&f),
            Err(HeaderError::Unused { field: "count", .. })
        ));
        let mut r = Header::report(1, 1, 0.0, 0.0, 0).to_message();
        r[5] = 1.0;
        assert!(matches!(
            Header::parse(&r),
            Err(HeaderError::Unused { field: "part", .. })
        ));
    }
}
