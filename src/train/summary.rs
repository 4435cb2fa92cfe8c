//! The end of a run, as the user reads it: time per iteration (p50/p95) against the oracle,
//! final losses, the validation verdict, and per worker how its iterations ended
//! ([`WorkerCounts`]: on time, partial, late, missed) with its arrival times. Printed on rank 0's
//! console and written to `/summary`, over the whole run: a resumed run is seeded with the rows
//! its results file already holds, so the figures are the same as `gradcode report`'s.

use crate::io::metrics::{count_outcomes, p50_p95, tree_decode_note, WorkerCounts};
use crate::io::results::{AttrValue, IterationRecord, LateRow, Metric, RecordedRows, WorkerMetric};
use crate::model::Evaluation;

/// Totals of a run, accumulated iteration by iteration.
#[derive(Debug, Clone)]
pub struct RunSummary {
    n: usize,
    parts: usize,
    wall: Vec<f64>,
    oracle: Vec<f64>,
    /// Parts on time, row-major [iteration, worker].
    chunks: Vec<f64>,
    /// On-time arrival seconds per worker.
    arrivals: Vec<Vec<f64>>,
    late: Vec<LateRow>,
    /// Iterations already in the results file when this session started.
    resumed_at: u64,
}

/// The `/summary` attributes and per-worker columns.
pub type SummaryRecord = (Vec<(String, AttrValue)>, Vec<(String, Vec<f64>)>);

impl RunSummary {
    /// A summary of `n` workers owing `parts` messages per iteration, seeded with the rows of a
    /// resumed run.
    pub fn new(n: usize, parts: usize, initial: Option<&RecordedRows>) -> Self {
        let mut s = RunSummary {
            n,
            parts,
            wall: Vec::new(),
            oracle: Vec::new(),
            chunks: Vec::new(),
            arrivals: vec![Vec::new(); n],
            late: Vec::new(),
            resumed_at: 0,
        };
        if let Some(rows) = initial {
            for i in 0..rows.len() {
                s.add(&rows.row(i));
            }
            s.late.extend_from_slice(&rows.late);
            s.resumed_at = rows.len() as u64;
        }
        s
    }

    /// Count one iteration's record.
    pub fn add(&mut self, rec: &IterationRecord) {
        self.wall.push(rec.get(Metric::WallS));
        self.oracle.push(rec.get(Metric::OracleS));
        let chunks = rec.worker(WorkerMetric::Chunks);
        let arrival = rec.worker(WorkerMetric::ArrivalS);
        for (w, arrivals) in self.arrivals.iter_mut().enumerate() {
            let c = chunks.get(w).copied().unwrap_or(f64::NAN);
            self.chunks.push(c);
            if c >= self.parts as f64 {
                arrivals.push(arrival[w]);
            }
        }
    }

    /// Count a late arrival.
    pub fn add_late(&mut self, l: &LateRow) {
        self.late.push(*l);
    }

    /// Iterations counted.
    pub fn iterations(&self) -> usize {
        self.wall.len()
    }

    /// How each worker's iterations ended.
    pub fn counts(&self) -> Vec<WorkerCounts> {
        let iters = self.wall.len();
        match ndarray::ArrayView2::from_shape((iters, self.n), &self.chunks) {
            Ok(m) => count_outcomes(m, self.parts, &self.late),
            Err(_) => vec![WorkerCounts::default(); self.n],
        }
    }

    /// Ranks of the workers on time in fewer than half the iterations.
    pub fn stragglers(&self) -> Vec<usize> {
        let iters = self.iterations() as f64;
        self.counts()
            .iter()
            .enumerate()
            .filter(|(_, c)| iters > 0.0 && (c.on_time as f64) < 0.5 * iters)
            .map(|(w, _)| w + 1)
            .collect()
    }

    /// Print the summary on rank 0's console.
    pub fn print(&self, out: &SummaryText<'_>) {
        let (p50, p95) = p50_p95(self.wall.iter().copied());
        let (o50, _) = p50_p95(self.oracle.iter().copied());
        let done = self.iterations();
        println!();
        let resumed = if self.resumed_at > 0 {
            format!(
                " ({} in this session, resumed at iteration {})",
                done as u64 - self.resumed_at,
                self.resumed_at
            )
        } else {
            String::new()
        };
        println!(
            "gradcode summary: {done} of {} iterations run{resumed}, status {}",
            out.iterations, out.status
        );
        println!(
            "  time per iteration  p50 {:8.2} ms   p95 {:8.2} ms",
            p50 * 1e3,
            p95 * 1e3
        );
        if o50.is_finite() {
            println!(
                "  oracle              p50 {:8.2} ms   overhead p50/oracle p50 = {:.3}",
                o50 * 1e3,
                p50 / o50
            );
        }
        println!("  final train loss    {:.6}", out.final_loss);
        if let Some(ev) = out.test {
            println!("  {ev}");
        }
        for (k, v) in out.validation {
            if let AttrValue::Str(s) = v {
                println!("  validation {k}: {s}");
            }
        }
        if self.n == 0 {
            return;
        }
        println!(
            "  {:>6} {:>8} {:>8} {:>6} {:>7} {:>9} {:>12} {:>12}",
            "rank",
            "on-time",
            "partial",
            "late",
            "missed",
            "rejected",
            "arrival p50",
            "arrival p95"
        );
        for (w, c) in self.counts().iter().enumerate() {
            let (a50, a95) = p50_p95(self.arrivals[w].iter().copied());
            println!(
                "  {:>6} {:>8} {:>8} {:>6} {:>7} {:>9} {:>9.2} ms {:>9.2} ms",
                w + 1,
                c.on_time,
                c.partial,
                c.late,
                c.missed,
                out.rejected.get(w).copied().unwrap_or(0),
                a50 * 1e3,
                a95 * 1e3
            );
        }
        println!("  (every iteration of a worker is one of: on time; partial (some chunks on time); late (answered after the iteration was decoded); missed (busy with an older iteration, or never answered))");
        println!(
            "  stragglers (on time in < 50% of iterations): {:?}",
            self.stragglers()
        );
        if let Some(g) = out.decode_tree {
            println!("  {}", tree_decode_note(self.n, g));
        }
    }

    /// The `/summary` attributes (time, oracle, counts over the whole run) and per-worker
    /// columns.
    pub fn record(&self, rejected: &[u64]) -> SummaryRecord {
        let (p50, p95) = p50_p95(self.wall.iter().copied());
        let (o50, _) = p50_p95(self.oracle.iter().copied());
        let counts = self.counts();
        let attrs = vec![
            (
                "iterations_run".into(),
                AttrValue::U64(self.iterations() as u64),
            ),
            ("resumed_at".into(), AttrValue::U64(self.resumed_at)),
            ("time_per_iteration_p50_s".into(), AttrValue::F64(p50)),
            ("time_per_iteration_p95_s".into(), AttrValue::F64(p95)),
            ("oracle_p50_s".into(), AttrValue::F64(o50)),
            ("overhead_over_oracle".into(), AttrValue::F64(p50 / o50)),
            (
                "stragglers".into(),
                AttrValue::Str(format!("{:?}", self.stragglers())),
            ),
        ];
        if self.n == 0 {
            return (attrs, Vec::new());
        }
        let col = |f: fn(&WorkerCounts) -> u64| counts.iter().map(|c| f(c) as f64).collect();
        let per_worker = vec![
            ("on_time".into(), col(|c| c.on_time)),
            ("partial".into(), col(|c| c.partial)),
            ("late".into(), col(|c| c.late)),
            ("missed".into(), col(|c| c.missed)),
            (
                "rejected".into(),
                (0..self.n)
                    .map(|w| rejected.get(w).copied().unwrap_or(0) as f64)
                    .collect(),
            ),
            (
                "mean_arrival_s".into(),
                self.arrivals
                    .iter()
                    .map(|a| {
                        if a.is_empty() {
                            f64::NAN
                        } else {
                            a.iter().sum::<f64>() / a.len() as f64
                        }
                    })
                    .collect(),
            ),
        ];
        (attrs, per_worker)
    }
}

/// What the console summary prints besides the totals.
#[derive(Debug)]
pub struct SummaryText<'a> {
    pub iterations: u64,
    pub status: &'a str,
    pub final_loss: f64,
    pub test: Option<&'a Evaluation>,
    pub validation: &'a [(String, AttrValue)],
    pub rejected: &'a [u64],
    /// `--decode-tree G` (None: every worker sends to rank 0).
    pub decode_tree: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize, wall: f64, chunks: &[f64]) -> IterationRecord {
        let mut r = IterationRecord::new(n);
        r.set(Metric::WallS, wall);
        r.set(Metric::OracleS, wall / 2.0);
        r.worker_mut(WorkerMetric::Chunks).copy_from_slice(chunks);
        for (w, a) in r.worker_mut(WorkerMetric::ArrivalS).iter_mut().enumerate() {
            *a = 0.01 * (w + 1) as f64;
        }
        r
    }

    #[test]
    fn counts_add_up_and_time_covers_every_iteration() {
        let mut s = RunSummary::new(2, 1, None);
        s.add(&rec(2, 0.1, &[1.0, 1.0]));
        s.add(&rec(2, 0.3, &[1.0, 0.0]));
        s.add(&rec(2, 0.2, &[1.0, 0.0]));
        s.add_late(&LateRow {
            received_during: 2,
            iteration: 1,
            rank: 2,
            phase: 0,
            part: 0,
            delay_s: 0.5,
            compute_s: 0.0,
            injected_s: 0.5,
            used: false,
        });
        let c = s.counts();
        assert_eq!((c[1].on_time, c[1].late, c[1].missed), (1, 1, 1));
        assert_eq!(s.stragglers(), vec![2]);
        let (attrs, cols) = s.record(&[0, 3]);
        let p50 = attrs
            .iter()
            .find(|(k, _)| k == "time_per_iteration_p50_s")
            .map(|(_, v)| v.clone());
        assert_eq!(p50, Some(AttrValue::F64(0.2)));
        assert_eq!(cols[4], ("rejected".to_string(), vec![0.0, 3.0]));
    }
}
