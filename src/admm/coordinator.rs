//! Rank 0 of the MPI job: receive the layer ranks' reports as a stream, write a row when every
//! rank has reported an iteration, grant iterations, write the checkpoint manifest, halt on a
//! signal, and stop everyone at the end.
//!
//! Grants bound how far ahead of the rows a layer rank may run: every iteration below
//! rows + W, with W = (R − 1)(K + 1) + 4 for R layer ranks and staleness K, more than the ranks
//! can drift apart through their neighbours, so in a healthy run the grants never hold anyone
//! back. A signal (SIGUSR1, SIGTERM, SIGINT) halts every rank at the last granted boundary
//! G — reachable by all, and no rank is past it — where each writes its checkpoint; once the
//! rows before G and every rank's file are there, rank 0 writes the manifest and stops the job
//! with exit code 75. No report from any rank for `--max-wait-ms` (a failed or stopped rank
//! holds its neighbours) fails the run naming the ranks whose report is missing.

use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ndarray::{ArrayView1, ArrayView2};

use super::net::Net;
use super::record::{Recorder, Row};
use super::report::{is_eval, read_report, report_len, Report};
use super::state::Stamp;
use super::Outcome;
use crate::comm::{CommError, Event, Monitor, Transport};
use crate::config::AdmmConfig;
use crate::error::{Error, Result};
use crate::train::{RunStatus, INTERRUPT};

/// The grant window: how many iterations past the rows a rank may run.
pub fn window(ranks: usize, staleness: u64) -> u64 {
    (ranks.saturating_sub(1) as u64) * (staleness + 1) + 4
}

struct Coordinator<'a, T: Transport> {
    cfg: &'a AdmmConfig,
    net: &'a Net,
    mon: Monitor<T>,
    rec: Recorder<'a>,
    stamp: &'a Stamp<'a>,
    groups: Vec<RangeInclusive<usize>>,
    /// Reports received and not yet in a row: (iteration, report, arrival).
    pending: Vec<VecDeque<(u64, Report, Instant)>>,
    /// Checkpoint files written per boundary.
    saved: BTreeMap<u64, usize>,
    granted: u64,
    halt: Option<u64>,
    last_row: Instant,
    last_event: Instant,
    bytes: (f64, f64),
}

/// Run the coordinator from iteration `first` until every row is written, a signal's checkpoint,
/// divergence or an error; then STOP every rank and write the end of the results file.
pub fn run<T: Transport>(
    cfg: &AdmmConfig,
    net: &Net,
    mon: Monitor<T>,
    rec: Recorder<'_>,
    stamp: &Stamp<'_>,
    first: u64,
) -> Outcome {
    let groups = net.groups(cfg.layers_per_rank);
    let ranks = groups.len();
    let now = Instant::now();
    let mut c = Coordinator {
        cfg,
        net,
        mon,
        rec,
        stamp,
        pending: (0..ranks).map(|_| VecDeque::new()).collect(),
        groups,
        saved: BTreeMap::new(),
        granted: first,
        halt: None,
        last_row: now,
        last_event: now,
        bytes: (0.0, 0.0),
    };
    c.grant();
    let (mut status, mut error) = match c.collect() {
        Ok(s) => (s, None),
        Err(e) => {
            log::error!("[rank 0] {e}");
            (RunStatus::Failed, Some(e))
        }
    };
    if status == RunStatus::Diverged {
        let e = Error::Check(format!(
            "pdADMM diverged at iteration {}: the objective is not finite; lower --rho/--nu or check the data",
            c.rec.rows().saturating_sub(1)
        ));
        log::error!("[rank 0] {e}");
        error = Some(e);
    }
    let unreconciled = match c.mon.shutdown(status.exit_code(), cfg.job.shutdown_bound()) {
        Ok(u) => u,
        Err(e) => {
            error.get_or_insert(e.into());
            (1..=ranks).collect()
        }
    };
    if !unreconciled.is_empty() {
        log::error!(
            "[rank 0] layer ranks {unreconciled:?} did not answer the STOP; the run is degraded"
        );
        if status == RunStatus::Complete {
            status = RunStatus::Degraded;
        }
    }
    if let Err(e) = c
        .rec
        .finish(status, error.as_ref(), &unreconciled, c.mon.peak_rss_kib())
    {
        log::error!("[rank 0] could not finish the results file: {e}");
        error.get_or_insert(e);
        status = RunStatus::Failed;
    }
    Outcome {
        status,
        unreconciled,
        error,
    }
}

impl<T: Transport> Coordinator<'_, T> {
    /// Grant every iteration below rows + W (never past the end or a halt).
    fn grant(&mut self) {
        if self.halt.is_some() {
            return;
        }
        let w = window(self.groups.len(), self.cfg.max_staleness);
        let target = (self.rec.rows() + w).min(self.cfg.iterations);
        if target > self.granted {
            self.granted = target;
            self.mon.grant(target);
        }
    }

    /// Receive and record until the run is over; its status.
    fn collect(&mut self) -> Result<RunStatus> {
        let cfg = self.cfg;
        loop {
            if self.halt.is_none() && INTERRUPT.load(Ordering::SeqCst) {
                let h = self.granted;
                log::warn!("[rank 0] signal received: every layer rank checkpoints at iteration {h} and stops");
                self.halt = Some(h);
                self.mon.halt(h);
            }
            let got = self.receive()?;
            while self.pending.iter().all(|q| !q.is_empty()) {
                if self.row()? {
                    return Ok(RunStatus::Diverged);
                }
                self.grant();
            }
            if let Some(status) = self.manifests()? {
                return Ok(status);
            }
            if self.halt.is_none() && self.rec.rows() >= cfg.iterations {
                return Ok(RunStatus::Complete);
            }
            if !got {
                self.rec.idle()?;
                let waited = self.last_event.elapsed();
                if waited > cfg.job.max_wait() {
                    let silent: Vec<usize> = (0..self.pending.len())
                        .filter(|&w| self.pending[w].is_empty())
                        .map(|w| w + 1)
                        .collect();
                    return Err(CommError::Fatal(format!(
                        "iteration {}: no report from layer ranks {silent:?} for {:.0} ms (--max-wait-ms); a layer rank that stops holds its neighbours",
                        self.rec.rows(),
                        waited.as_secs_f64() * 1e3
                    ))
                    .into());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// One message from a layer rank, if any; whether one came.
    fn receive(&mut self) -> Result<bool> {
        let before = self.mon.bytes_in;
        let Some(ev) = self.mon.poll()? else {
            return Ok(false);
        };
        self.last_event = Instant::now();
        match ev {
            Event::Report {
                rank,
                header,
                payload,
            } => {
                let range = &self.groups[rank - 1];
                let t = header.iteration;
                let eval = is_eval(self.cfg.eval_every, self.cfg.iterations, t);
                let expect = report_len(self.net, range, eval);
                if payload.len() != expect {
                    return Err(CommError::Protocol {
                        rank,
                        reason: format!(
                            "report of iteration {t} has {} values, expected {expect}",
                            payload.len()
                        ),
                    }
                    .into());
                }
                let report = read_report(
                    payload,
                    self.net,
                    range,
                    header.compute_s,
                    header.injected_s,
                );
                self.pending[rank - 1].push_back((t, report, Instant::now()));
            }
            Event::Saved { iteration, .. } => {
                *self.saved.entry(iteration).or_insert(0) += 1;
            }
            Event::Ack { rank } => {
                return Err(CommError::Protocol {
                    rank,
                    reason: "an ACK before STOP".into(),
                }
                .into())
            }
        }
        self.bytes.0 += self.mon.bytes_in - before;
        Ok(true)
    }

    /// The row of the oldest iteration every rank has reported; whether the run diverged.
    fn row(&mut self) -> Result<bool> {
        let reports: Vec<(u64, Report, Instant)> = self
            .pending
            .iter_mut()
            .filter_map(VecDeque::pop_front)
            .collect();
        let t = reports[0].0;
        if reports.iter().any(|r| r.0 != t) {
            return Err(Error::Check(format!(
                "internal: reports of different iterations in one row ({:?})",
                reports.iter().map(|r| r.0).collect::<Vec<_>>()
            )));
        }
        let now = Instant::now();
        let since = |at: Instant| at.saturating_duration_since(self.last_row).as_secs_f64();
        let ranks = reports
            .iter()
            .map(|(_, r, at)| (r.timing, since(*at)))
            .collect();
        let terms = reports
            .iter()
            .flat_map(|(_, r, _)| r.terms.iter().copied())
            .collect();
        let weights: Option<Vec<(ArrayView2<f64>, ArrayView1<f64>)>> =
            is_eval(self.cfg.eval_every, self.cfg.iterations, t).then(|| {
                reports
                    .iter()
                    .flat_map(|(_, r, _)| r.weights.iter().map(|(w, b)| (w.view(), b.view())))
                    .collect()
            });
        let wall_s = now.duration_since(self.last_row).as_secs_f64();
        let bytes_out = self.mon.bytes_out - self.bytes.1;
        self.bytes.1 = self.mon.bytes_out;
        let diverged = self.rec.row(Row {
            t,
            wall_s,
            terms,
            ranks,
            weights,
            bytes_in: std::mem::take(&mut self.bytes.0),
            bytes_out,
        })?;
        self.last_row = now;
        Ok(diverged)
    }

    /// Write the manifest of every boundary whose files are all written and whose rows are all
    /// recorded; the run's status when it was the halt's.
    fn manifests(&mut self) -> Result<Option<RunStatus>> {
        let ranks = self.groups.len();
        while let Some((&c, &count)) = self.saved.first_key_value() {
            if count < ranks || self.rec.rows() < c {
                break;
            }
            self.saved.remove(&c);
            let path = self.rec.manifest(self.stamp, c)?;
            if self.halt == Some(c) {
                log::warn!(
                    "[rank 0] checkpoint at iteration {c} written ({} and one file per layer rank); stopping",
                    path.display()
                );
                return Ok(Some(if c >= self.cfg.iterations {
                    RunStatus::Complete
                } else {
                    RunStatus::Interrupted
                }));
            }
            log::debug!("[rank 0] checkpoint at iteration {c} written");
        }
        Ok(None)
    }
}
