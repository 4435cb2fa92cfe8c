//! Message kinds, tags and the header every message carries (GUIDE §2).
//!
//! Every message is one contiguous `f64` buffer: an 8-value header followed by the payload, so a
//! header can never be matched with the wrong payload. Integers in the header are exact in f64
//! (below 2^53). Tags are fixed per kind (all far below the portable bound 32767); the iteration
//! lives in the header. Rank 0 validates every header and payload before use ([`Header::parse`],
//! [`payload_is_finite`]): a wrong magic, kind, sender, length or iteration, or a non-finite
//! value, makes the message an erasure, counted and never used.

use thiserror::Error;

/// Tag of parameter messages (rank 0 → worker).
pub const TAG_PARAMS: i32 = 11;
/// Tag of coded-gradient messages (worker → rank 0).
pub const TAG_GRAD: i32 = 12;
/// Tag of uncoded per-partition gradients for the first-iteration validation (worker → rank 0).
pub const TAG_PARTIAL: i32 = 13;
/// Tag of the STOP message (rank 0 → worker).
pub const TAG_STOP: i32 = 14;
/// Tag of the STOP acknowledgement carrying how many messages the worker sent (worker → rank 0).
pub const TAG_ACK: i32 = 15;

/// Values in the header.
pub const HEADER_LEN: usize = 8;
/// Marks a gradcode message ("gc" in ASCII).
pub const MAGIC: f64 = 26_467.0;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Params = 1,
    Grad = 2,
    Partial = 3,
    Stop = 4,
    Ack = 5,
}

impl Kind {
    fn from_f64(v: f64) -> Option<Kind> {
        [
            Kind::Params,
            Kind::Grad,
            Kind::Partial,
            Kind::Stop,
            Kind::Ack,
        ]
        .into_iter()
        .find(|k| *k as i32 as f64 == v)
    }
    /// The MPI tag of this kind.
    pub fn tag(self) -> i32 {
        match self {
            Kind::Params => TAG_PARAMS,
            Kind::Grad => TAG_GRAD,
            Kind::Partial => TAG_PARTIAL,
            Kind::Stop => TAG_STOP,
            Kind::Ack => TAG_ACK,
        }
    }
}

/// The header of a message.
///
/// Field use by kind: `iteration` (params, grad, partial: the iteration; ack: messages sent),
/// `rank` (sender's rank for worker messages), `compute_s` and `injected_s` (grad: seconds of
/// compute and of injected delay), `part` (partial: partition index; params: 1 when the worker
/// must also send partials for validation), `len` (payload values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    pub kind: Kind,
    pub iteration: u64,
    pub rank: usize,
    pub compute_s: f64,
    pub injected_s: f64,
    pub part: usize,
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
}

fn count(field: &'static str, v: f64) -> Result<usize, HeaderError> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 {
        Ok(v as usize)
    } else {
        Err(HeaderError::Field { field, value: v })
    }
}

impl Header {
    /// A header for `kind` with the other fields zero.
    pub fn new(kind: Kind) -> Header {
        Header {
            kind,
            iteration: 0,
            rank: 0,
            compute_s: 0.0,
            injected_s: 0.0,
            part: 0,
            len: 0,
        }
    }

    /// Write the header into the first [`HEADER_LEN`] values of `buf`.
    pub fn write(&self, buf: &mut [f64]) {
        buf[..HEADER_LEN].copy_from_slice(&[
            MAGIC,
            self.kind as i32 as f64,
            self.iteration as f64,
            self.rank as f64,
            self.compute_s,
            self.injected_s,
            self.part as f64,
            self.len as f64,
        ]);
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
        let timing = |field, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(HeaderError::Timing { field, value: v })
            }
        };
        let h = Header {
            kind,
            iteration: count("iteration", buf[2])? as u64,
            rank: count("rank", buf[3])?,
            compute_s: timing("compute_s", buf[4])?,
            injected_s: timing("injected_s", buf[5])?,
            part: count("part", buf[6])?,
            len: count("len", buf[7])?,
        };
        if h.len != buf.len() - HEADER_LEN {
            return Err(HeaderError::Length {
                declared: h.len,
                actual: buf.len() - HEADER_LEN,
            });
        }
        Ok(h)
    }
}

/// Whether every payload value is finite.
pub fn payload_is_finite(payload: &[f64]) -> bool {
    payload.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            kind: Kind::Grad,
            iteration: 41,
            rank: 3,
            compute_s: 0.25,
            injected_s: 1.5,
            part: 2,
            len: 4,
        };
        let mut buf = vec![0.0; HEADER_LEN + 4];
        h.write(&mut buf);
        assert_eq!(Header::parse(&buf), Ok(h));
    }

    #[test]
    fn bad_headers_are_rejected() {
        let h = Header {
            len: 2,
            ..Header::new(Kind::Grad)
        };
        let mut buf = vec![0.0; HEADER_LEN + 2];
        h.write(&mut buf);
        assert_eq!(Header::parse(&buf[..5]), Err(HeaderError::Short(5)));
        assert!(matches!(
            Header::parse(&buf[..HEADER_LEN + 1]),
            Err(HeaderError::Length { .. })
        ));
        let mut b = buf.clone();
        b[0] = 1.0;
        assert!(matches!(Header::parse(&b), Err(HeaderError::Magic(_))));
        let mut b = buf.clone();
        b[1] = 9.0;
        assert!(matches!(Header::parse(&b), Err(HeaderError::Kind(_))));
        let mut b = buf.clone();
        b[2] = 1.5;
        assert!(matches!(
            Header::parse(&b),
            Err(HeaderError::Field {
                field: "iteration",
                ..
            })
        ));
        let mut b = buf.clone();
        b[4] = f64::NAN;
        assert!(matches!(Header::parse(&b), Err(HeaderError::Timing { .. })));
        assert!(!payload_is_finite(&[1.0, f64::INFINITY]));
    }
}
