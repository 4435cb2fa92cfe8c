//! Rank 0's end of `gradcode admm`: the layer ranks' reports as a stream.
//!
//! Layer ranks run their iterations on their own (bounded by rank 0's grants and by how stale
//! their neighbours' values may be); each sends one [`Kind::Report`] per iteration, in order, and
//! a [`Kind::Saved`] when it has written a checkpoint. [`Monitor::poll`] receives one message
//! without waiting (a matched probe from any rank, the whole message received), checks its
//! header (kind, sender, the next iteration of that rank, a known sender) and hands it to the job
//! as an [`Event`]; a message that fails is a protocol error, because a row needs every rank's
//! report. [`Monitor::grant`] and [`Monitor::halt`] steer the ranks; [`Monitor::shutdown`] sends
//! STOP and reconciles every rank's message count with its ACK (draining what is still in
//! flight), within a bound, like the collector's.
//!
//! Whether a report's payload has the right length and what it means is the job's business.

use std::time::{Duration, Instant};

use super::protocol::{Header, Kind, HEADER_LEN, TAG_ACK, TAG_STOP};
use super::{CommError, Transport};

/// What arrived from a layer rank.
#[derive(Debug)]
pub enum Event<'a> {
    /// The report of `header.iteration` (the next one of that rank); the payload is borrowed until
    /// the next call.
    Report {
        rank: usize,
        header: Header,
        payload: &'a [f64],
    },
    /// The rank's checkpoint of boundary `iteration` is written.
    Saved { rank: usize, iteration: u64 },
    /// The rank's answer to STOP.
    Ack { rank: usize },
}

/// Rank 0's end over transport `T`, for layer ranks 1..=workers.
pub struct Monitor<T: Transport> {
    t: T,
    workers: usize,
    staging: Vec<f64>,
    next_report: Vec<u64>,
    received: Vec<u64>,
    acked: Vec<Option<u64>>,
    /// Each layer rank's peak resident memory (KiB) from its ACK; NaN until it arrived.
    peak_rss_kib: Vec<f64>,
    /// Bytes received from and sent to the layer ranks (whole run).
    pub bytes_in: f64,
    pub bytes_out: f64,
}

fn sleep_poll() {
    std::thread::sleep(Duration::from_micros(50));
}

impl<T: Transport> Monitor<T> {
    /// A monitor of `workers` layer ranks whose first report is of iteration `first`.
    pub fn new(t: T, workers: usize, first: u64) -> Self {
        Monitor {
            t,
            workers,
            staging: Vec::new(),
            next_report: vec![first; workers],
            received: vec![0; workers],
            acked: vec![None; workers],
            peak_rss_kib: vec![f64::NAN; workers],
            bytes_in: 0.0,
            bytes_out: 0.0,
        }
    }

    /// Each layer rank's peak resident memory in KiB from its STOP acknowledgement (NaN for a
    /// rank whose ACK did not arrive).
    pub fn peak_rss_kib(&self) -> &[f64] {
        &self.peak_rss_kib
    }

    /// Layer ranks.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The iteration of the next report expected from rank `rank`.
    pub fn next_report(&self, rank: usize) -> u64 {
        self.next_report[rank - 1]
    }

    fn control(&mut self, kind: Kind, until: u64) {
        let m = Header::control(kind, until).to_message();
        for w in 1..=self.workers {
            self.t.send(w, kind.tag(), &m);
            self.bytes_out += (m.len() * 8) as f64;
        }
    }

    /// Let every layer rank run every iteration below `until`.
    pub fn grant(&mut self, until: u64) {
        self.control(Kind::Grant, until);
    }

    /// Ask every layer rank to checkpoint at boundary `at` and stop there.
    pub fn halt(&mut self, at: u64) {
        self.control(Kind::Halt, at);
    }

    /// Receive one message without waiting; `None` when nothing is waiting.
    pub fn poll(&mut self) -> Result<Option<Event<'_>>, CommError> {
        let Some(msg) = self.t.probe() else {
            return Ok(None);
        };
        let (src, tag) = (msg.source, msg.tag);
        self.staging.resize(msg.len, 0.0);
        self.t.receive(msg, &mut self.staging);
        self.bytes_in += (self.staging.len() * 8) as f64;
        let bad = |reason: String| CommError::Protocol { rank: src, reason };
        if src == 0 || src > self.workers {
            return Err(bad("message from a rank that is not a layer rank".into()));
        }
        let w = src - 1;
        if tag != TAG_ACK {
            self.received[w] += 1;
        }
        let h = Header::parse(&self.staging).map_err(|e| bad(format!("header: {e}")))?;
        if h.kind.tag() != tag {
            return Err(bad(format!("a {:?} on tag {tag}", h.kind)));
        }
        if h.rank != src {
            return Err(bad(format!("header names rank {}", h.rank)));
        }
        match h.kind {
            Kind::Report if h.iteration == self.next_report[w] => {
                self.next_report[w] += 1;
                Ok(Some(Event::Report {
                    rank: src,
                    header: h,
                    payload: &self.staging[HEADER_LEN..],
                }))
            }
            Kind::Report => Err(bad(format!(
                "report of iteration {}, expected {}",
                h.iteration, self.next_report[w]
            ))),
            Kind::Saved => Ok(Some(Event::Saved {
                rank: src,
                iteration: h.iteration,
            })),
            Kind::Ack => {
                self.acked[w] = Some(h.count);
                self.peak_rss_kib[w] = Header::ack_peak_rss_kib(&self.staging).unwrap_or(f64::NAN);
                Ok(Some(Event::Ack { rank: src }))
            }
            other => Err(bad(format!("unexpected {other:?} message to rank 0"))),
        }
    }

    /// STOP every layer rank with `exit_code`, then receive until every rank's ACK matches the
    /// messages received from it, for at most `bound`. Returns the ranks not reconciled.
    pub fn shutdown(&mut self, exit_code: i32, bound: Duration) -> Result<Vec<usize>, CommError> {
        let stop = Header::stop(exit_code.clamp(0, 255)).to_message();
        for w in 1..=self.workers {
            self.t.send(w, TAG_STOP, &stop);
        }
        let start = Instant::now();
        loop {
            let got = match self.poll() {
                Ok(e) => e.is_some(),
                // An invalid message during shutdown is received and counted (so the count can
                // still reconcile); it no longer matters for the run.
                Err(CommError::Protocol { rank, reason }) => {
                    log::warn!("[rank 0] ignored an invalid message from rank {rank} at shutdown: {reason}");
                    true
                }
                Err(e) => return Err(e),
            };
            let open: Vec<usize> = (0..self.workers)
                .filter(|&w| self.acked[w] != Some(self.received[w]))
                .map(|w| w + 1)
                .collect();
            if open.is_empty() || start.elapsed() > bound {
                return Ok(open);
            }
            if !got {
                sleep_poll();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::local::{self, LocalPeer};
    use crate::comm::protocol::{TAG_ACK, TAG_REPORT};
    use crate::comm::PeerTransport;

    fn send(p: &mut LocalPeer, h: Header, payload: &[f64]) {
        let mut m = vec![0.0; HEADER_LEN + payload.len()];
        h.write(&mut m);
        m[HEADER_LEN..].copy_from_slice(payload);
        PeerTransport::send(p, 0, h.kind.tag(), &m);
    }

    #[test]
    fn reports_arrive_in_order_per_rank_and_out_of_order_is_refused() {
        let mut peers = local::mesh(3).into_iter();
        let mut mon = Monitor::new(peers.next().unwrap(), 2, 5);
        let (mut a, mut b) = (peers.next().unwrap(), peers.next().unwrap());
        assert!(mon.poll().unwrap().is_none());
        send(&mut a, Header::report(5, 1, 0.5, 0.0, 2), &[1.0, 2.0]);
        send(&mut b, Header::saved(6, 2), &[]);
        match mon.poll().unwrap() {
            Some(Event::Report {
                rank,
                header,
                payload,
            }) => {
                assert_eq!((rank, header.iteration, header.compute_s), (1, 5, 0.5));
                assert_eq!(payload, &[1.0, 2.0]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            mon.poll().unwrap(),
            Some(Event::Saved {
                rank: 2,
                iteration: 6
            })
        ));
        assert_eq!(mon.next_report(1), 6);
        // Rank 1 skips iteration 6; rank 2 sends a report naming rank 1; a report on the saved tag.
        send(&mut a, Header::report(7, 1, 0.0, 0.0, 0), &[]);
        assert!(mon.poll().unwrap_err().to_string().contains("expected 6"));
        send(&mut b, Header::report(5, 1, 0.0, 0.0, 0), &[]);
        assert!(mon.poll().unwrap_err().to_string().contains("names rank 1"));
        let mut m = Header::report(5, 2, 0.0, 0.0, 0).to_message();
        m[1] = 20.0; // kind Saved on the report tag
        PeerTransport::send(&mut b, 0, TAG_REPORT, &m);
        assert!(mon.poll().is_err());
    }

    #[test]
    fn shutdown_reconciles_counts_and_names_a_silent_rank() {
        let mut peers = local::mesh(3).into_iter();
        let mut mon = Monitor::new(peers.next().unwrap(), 2, 0);
        let (mut a, b) = (peers.next().unwrap(), peers.next().unwrap());
        send(&mut a, Header::report(0, 1, 0.0, 0.0, 1), &[3.0]);
        // Rank 1 answers STOP with its count (after a report rank 0 drains at shutdown); rank 2
        // never answers.
        let answer = std::thread::spawn(move || {
            let mut a = a;
            loop {
                if let Some(m) = PeerTransport::probe(&mut a, 0) {
                    let mut buf = vec![0.0; m.len];
                    PeerTransport::receive(&mut a, m, &mut buf);
                    if Header::parse(&buf).unwrap().kind == Kind::Stop {
                        send(&mut a, Header::report(1, 1, 0.0, 0.0, 1), &[4.0]);
                        PeerTransport::send(&mut a, 0, TAG_ACK, &Header::ack_message(1, 2, 1024.0));
                        return;
                    }
                }
            }
        });
        let open = mon.shutdown(0, Duration::from_millis(300)).unwrap();
        answer.join().unwrap();
        assert_eq!(open, vec![2]);
        assert_eq!(mon.peak_rss_kib()[0], 1024.0);
        assert!(mon.peak_rss_kib()[1].is_nan(), "rank 2 never answered");
        drop(b);
    }
}
