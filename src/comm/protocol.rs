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
//! | [`Kind::Params`] | rank 0 | `iteration`, `phase`, `flags` ([`FLAG_CHECK`]), `len` |
//! | [`Kind::Result`] | worker | `iteration`, `rank`, `phase`, `part`, `compute_s`, `injected_s`, `len` (0: the part was abandoned) |
//! | [`Kind::Check`] | worker | `iteration`, `rank`, `phase`, `part` (which uncoded piece), `len` |
//! | [`Kind::Stop`] | rank 0 | `exit_code` |
//! | [`Kind::Ack`] | worker | `rank`, `count` (messages the worker sent in the whole run) |
//! | [`Kind::Support`] | worker, once at start-up | `rank`, `len` (the payload: the columns its results carry, increasing) |
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
/// Tag of a worker's support, sent once at start-up (worker → rank 0; issue 20 §2).
pub const TAG_SUPPORT: i32 = 16;

/// Values in the header.
pub const HEADER_LEN: usize = 12;
/// Marks a gradcode message ("gc" in ASCII).
pub const MAGIC: f64 = 26_467.0;
/// Parameter flag: the worker also sends the uncoded pieces of its work ([`Kind::Check`]) so rank
/// 0 can compare the decoded result with the exact one.
pub const FLAG_CHECK: u32 = 1;
/// Largest payload a header may declare (2^40 values, 8 TiB: beyond any real message, below the
/// exactness limit of f64 integers).
pub const MAX_LEN: usize = 1 << 40;

/// What a message is.
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
    /// A worker's support: the columns (indices into the full result vector) its results carry,
    /// in this order, sent once before the first round.
    Support = 6,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Params,
        Kind::Result,
        Kind::Check,
        Kind::Stop,
        Kind::Ack,
        Kind::Support,
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
            Kind::Support => TAG_SUPPORT,
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

    /// A worker's acknowledgement of STOP: it sent `count` messages in the run.
    pub fn ack(rank: usize, count: u64) -> Header {
        Header {
            rank,
            count,
            ..Header::empty(Kind::Ack)
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
                ("count", 9),
                ("exit_code", 10),
            ],
            Kind::Result => &[("flags", 6), ("count", 9), ("exit_code", 10)],
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
        assert!(matches!(edit(1, 9.0), Err(HeaderError::Kind(_))));
        assert!(matches!(
            edit(2, 1.5),
            Err(HeaderError::Field {
                field: "iteration",
                ..
            })
        ));
        assert!(matches!(edit(7, f64::NAN), Err(HeaderError::Timing { .. })));
        assert!(matches!(edit(8, -1.0), Err(HeaderError::Timing { .. })));
        assert!(matches!(
            edit(9, 3.0),
            Err(HeaderError::Unused { field: "count", .. })
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
        let mut ack = Header::ack(2, 9).to_message();
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
    }
}
