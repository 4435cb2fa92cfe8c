//! Rank 0's side of a pdADMM run, shared by the serial reference and the MPI coordinator: one
//! results row per iteration from every layer's terms and every layer rank's timing, the
//! assembled network's evaluation, the checkpoint manifest, progress lines, and the end of the
//! results file.
//!
//! A row holds: `/metrics/objective` F, `lagrangian` L_ρ, `primal_residual` √Σ‖p_{l+1} − q_l‖²,
//! `dual_residual` √Σρ²‖Δq_l‖², `bytes_neighbour`, `wall_s` (the iteration's time: the
//! reference's compute, the coordinator's time between two completed rows), `elapsed_s`; at
//! evaluation iterations `train_loss`/`train_accuracy` and `test_loss`/`test_accuracy` of the
//! network assembled from every layer's W and b (mean cross-entropy, fraction correct); per
//! layer rank `/timing/compute_s`, `wait_s`, `arrival_s` (seconds after the previous row that
//! its report arrived, 0 when it was already there), `/stragglers/injected_s`,
//! `/timing/stale_age` (the oldest neighbour value it used); per layer `/layers/*`.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::layer::Terms;
use super::net::{evaluate, Net};
use super::report::RankTiming;
use super::state::{save_manifest, Stamp};
use crate::config::AdmmConfig;
use crate::error::{Error, Result};
use crate::io::metrics::p50_p95;
use crate::io::results::{
    AttrValue, FinalRecord, IterationRecord, LayerMetric, Metric, PeakMemory, RunWriter,
    WorkerMetric,
};
use crate::train::RunStatus;

/// The rows rank 0 evaluates the assembled network on.
#[derive(Debug)]
pub struct EvalData {
    pub train_x: Array2<f64>,
    pub train_y: Vec<usize>,
    /// The test split, or the held-out rows.
    pub test: Option<(Array2<f64>, Vec<usize>)>,
}

/// One iteration's values from every layer rank (or the reference's one group).
#[derive(Debug)]
pub struct Row<'a> {
    pub t: u64,
    pub wall_s: f64,
    /// Every layer's terms, layer 1 first.
    pub terms: Vec<Terms>,
    /// Each layer rank's timing and report arrival (seconds after the previous row); empty for
    /// the reference.
    pub ranks: Vec<(RankTiming, f64)>,
    /// Every layer's W and b at evaluation iterations.
    pub weights: Option<Vec<(ArrayView2<'a, f64>, ArrayView1<'a, f64>)>>,
    /// Bytes rank 0 received and sent for this row.
    pub bytes_in: f64,
    pub bytes_out: f64,
}

/// The last evaluation.
#[derive(Debug, Clone, Copy)]
struct Evaluated {
    train_loss: f64,
    train_accuracy: f64,
    test_loss: f64,
    test_accuracy: f64,
}

/// Rank 0's recorder.
pub struct Recorder<'a> {
    cfg: &'a AdmmConfig,
    net: &'a Net,
    writer: RunWriter,
    eval: EvalData,
    rec: IterationRecord,
    start: Instant,
    elapsed0: f64,
    first: u64,
    rows: u64,
    last_objective: f64,
    last_lagrangian: f64,
    last_primal: f64,
    last_eval: Option<Evaluated>,
    walls: Vec<f64>,
    bytes_neighbour: f64,
    compute: Vec<f64>,
    waits: Vec<f64>,
    weights: Vec<f64>,
}

/// Sum of `f` over the layers, ignoring NaN (the output layer's residuals).
fn total(terms: &[Terms], f: impl Fn(&Terms) -> f64) -> f64 {
    terms.iter().map(f).filter(|v| !v.is_nan()).sum()
}

impl<'a> Recorder<'a> {
    /// A recorder writing into `writer` (which holds the rows before `first` of a resumed run);
    /// `elapsed0` is the training clock at `first`; `ranks` layer ranks (0 for the reference).
    pub fn new(
        cfg: &'a AdmmConfig,
        net: &'a Net,
        writer: RunWriter,
        eval: EvalData,
        ranks: usize,
        first: u64,
        elapsed0: f64,
    ) -> Recorder<'a> {
        Recorder {
            cfg,
            net,
            writer,
            eval,
            rec: IterationRecord::with_layers(ranks, net.layers()),
            start: Instant::now(),
            elapsed0,
            first,
            rows: first,
            last_objective: f64::NAN,
            last_lagrangian: f64::NAN,
            last_primal: f64::NAN,
            last_eval: None,
            walls: Vec::new(),
            bytes_neighbour: 0.0,
            compute: vec![0.0; ranks],
            waits: vec![0.0; ranks],
            weights: Vec::new(),
        }
    }

    /// The training clock: seconds since the start of the run, across resumes.
    pub fn elapsed(&self) -> f64 {
        self.elapsed0 + self.start.elapsed().as_secs_f64()
    }

    /// Rows written (the next iteration to record).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush the rows within the flush interval while rank 0 waits.
    pub fn idle(&mut self) -> Result<()> {
        Ok(self.writer.flush_due()?)
    }

    /// Record iteration `row.t`; returns whether the run diverged (a non-finite objective).
    pub fn row(&mut self, row: Row<'_>) -> Result<bool> {
        let evaluated = row.weights.as_ref().map(|w| self.evaluate(w));
        let elapsed = self.elapsed();
        let rec = &mut self.rec;
        rec.reset();
        let terms = &row.terms;
        let objective = total(terms, |t| t.phi + t.gap + t.loss);
        let lagrangian = objective + total(terms, |t| t.coupling);
        let primal = total(terms, |t| t.primal * t.primal).sqrt();
        let dual = total(terms, |t| t.dual * t.dual).sqrt();
        rec.set(Metric::Iteration, row.t as f64);
        rec.set(Metric::WallS, row.wall_s);
        rec.set(Metric::Objective, objective);
        rec.set(Metric::Lagrangian, lagrangian);
        rec.set(Metric::PrimalResidual, primal);
        rec.set(Metric::DualResidual, dual);
        rec.set(Metric::Exact, 1.0);
        rec.set(Metric::NResponders, row.ranks.len() as f64);
        rec.set(Metric::BytesReceived, row.bytes_in);
        rec.set(Metric::BytesSent, row.bytes_out);
        let bytes: f64 = row.ranks.iter().map(|(r, _)| r.bytes_sent).sum();
        rec.set(Metric::BytesNeighbour, bytes);
        for (m, f) in [
            (
                LayerMetric::PrimalResidual,
                (|t: &Terms| t.primal) as fn(&Terms) -> f64,
            ),
            (LayerMetric::DualResidual, |t| t.dual),
            (LayerMetric::Phi, |t| t.phi),
            (LayerMetric::ActivationGap, |t| t.gap),
            (LayerMetric::Coupling, |t| t.coupling),
            (LayerMetric::Loss, |t| t.loss),
            (LayerMetric::Tau, |t| t.tau),
            (LayerMetric::Theta, |t| t.theta),
            (LayerMetric::LeftAge, |t| t.left_age),
            (LayerMetric::RightAge, |t| t.right_age),
        ] {
            for (v, t) in rec.layer_mut(m).iter_mut().zip(terms) {
                *v = f(t);
            }
        }
        let last = terms.len().saturating_sub(1);
        rec.layer_mut(LayerMetric::Loss)
            .iter_mut()
            .take(last)
            .for_each(|v| *v = f64::NAN);
        for (w, (timing, arrival)) in row.ranks.iter().enumerate() {
            rec.worker_mut(WorkerMetric::ComputeS)[w] = timing.compute_s;
            rec.worker_mut(WorkerMetric::InjectedS)[w] = timing.injected_s;
            rec.worker_mut(WorkerMetric::WaitS)[w] = timing.wait_s;
            rec.worker_mut(WorkerMetric::ArrivalS)[w] = *arrival;
            rec.worker_mut(WorkerMetric::Chunks)[w] = 1.0;
            self.compute[w] += timing.compute_s;
            self.waits[w] += timing.wait_s;
        }
        // The oldest neighbour value each rank used.
        if !row.ranks.is_empty() {
            let groups = self.net.groups(self.cfg.layers_per_rank);
            for (w, g) in groups.iter().enumerate() {
                let age = g
                    .clone()
                    .map(|l| terms[l - 1].left_age.max(terms[l - 1].right_age))
                    .fold(0.0, f64::max);
                rec.worker_mut(WorkerMetric::StaleAge)[w] = age;
            }
        }
        if let (Some(e), Some(weights)) = (evaluated, &row.weights) {
            rec.set(Metric::TrainLoss, e.train_loss);
            rec.set(Metric::TrainAccuracy, e.train_accuracy);
            rec.set(Metric::TestLoss, e.test_loss);
            rec.set(Metric::TestAccuracy, e.test_accuracy);
            self.last_eval = Some(e);
            self.weights = weights
                .iter()
                .flat_map(|(w, b)| w.iter().chain(b.iter()).copied().collect::<Vec<_>>())
                .collect();
        }
        rec.set(Metric::ElapsedS, elapsed);
        self.writer.append(&self.rec)?;
        self.rows = row.t + 1;
        self.walls.push(row.wall_s);
        self.bytes_neighbour += bytes;
        self.last_objective = objective;
        self.last_lagrangian = lagrangian;
        self.last_primal = primal;
        self.log(row.t, dual);
        Ok(!objective.is_finite())
    }

    /// Train and test loss and accuracy of the assembled network.
    fn evaluate(&self, weights: &[(ArrayView2<f64>, ArrayView1<f64>)]) -> Evaluated {
        let (train_loss, train_accuracy) =
            evaluate(weights, self.eval.train_x.view(), &self.eval.train_y);
        let (test_loss, test_accuracy) = match &self.eval.test {
            Some((x, y)) => evaluate(weights, x.view(), y),
            None => (f64::NAN, f64::NAN),
        };
        Evaluated {
            train_loss,
            train_accuracy,
            test_loss,
            test_accuracy,
        }
    }

    fn log(&self, t: u64, dual: f64) {
        let cfg = self.cfg;
        if t % cfg.log_every != 0 && t + 1 != cfg.iterations {
            return;
        }
        let r = &self.rec;
        // The newest evaluation (of this iteration or an earlier one).
        let acc = match self.last_eval {
            Some(e) => format!(
                "  train acc {:.4}  test acc {:.4}",
                e.train_accuracy, e.test_accuracy
            ),
            None => String::new(),
        };
        log::info!(
            "{} it {t:>5}/{}  objective {:.6e}  lagrangian {:.6e}  primal {:.3e}  dual {:.3e}  iter {:7.1} ms{acc}",
            if self.compute.is_empty() { "reference" } else { "[rank 0]" },
            cfg.iterations,
            r.get(Metric::Objective),
            r.get(Metric::Lagrangian),
            r.get(Metric::PrimalResidual),
            dual,
            r.get(Metric::WallS) * 1e3,
        );
    }

    /// Flush the rows, then write the manifest of boundary `iteration` (never a checkpoint ahead
    /// of the results: a resume would refuse the pair).
    pub fn manifest(&mut self, stamp: &Stamp<'_>, iteration: u64) -> Result<PathBuf> {
        self.writer.flush()?;
        let elapsed = self.elapsed();
        Ok(save_manifest(stamp, iteration, elapsed)?)
    }

    /// Write the end of the results file: status, the last weights, `/validation`, `/summary`
    /// (with rank 0's peak memory and each layer rank's, `peak_rss_kib`, from its STOP
    /// acknowledgement; empty for the serial reference).
    pub fn finish(
        self,
        status: RunStatus,
        error: Option<&Error>,
        unreconciled: &[usize],
        peak_rss_kib: &[f64],
    ) -> Result<()> {
        let iterations = self.rows - self.first;
        let (p50, p95) = p50_p95(self.walls.iter().copied());
        let finite = self.weights.iter().all(|v| v.is_finite()) && self.last_objective.is_finite();
        let verdict = if self.compute.is_empty() {
            "REFERENCE"
        } else if finite && matches!(status, RunStatus::Complete | RunStatus::Interrupted) {
            "VALID"
        } else {
            "INVALID"
        };
        let ev = self.last_eval;
        let f = |v: Option<f64>| AttrValue::F64(v.unwrap_or(f64::NAN));
        let n = iterations.max(1) as f64;
        let mut summary = vec![
            ("iterations_run".into(), AttrValue::U64(iterations)),
            ("resumed_at".into(), AttrValue::U64(self.first)),
            (
                "final_objective".into(),
                AttrValue::F64(self.last_objective),
            ),
            (
                "final_lagrangian".into(),
                AttrValue::F64(self.last_lagrangian),
            ),
            (
                "final_primal_residual".into(),
                AttrValue::F64(self.last_primal),
            ),
            ("final_train_loss".into(), f(ev.map(|e| e.train_loss))),
            (
                "final_train_accuracy".into(),
                f(ev.map(|e| e.train_accuracy)),
            ),
            ("final_test_loss".into(), f(ev.map(|e| e.test_loss))),
            ("final_test_accuracy".into(), f(ev.map(|e| e.test_accuracy))),
            ("final_test_auc".into(), AttrValue::F64(f64::NAN)),
            ("p50_wall_s".into(), AttrValue::F64(p50)),
            ("p95_wall_s".into(), AttrValue::F64(p95)),
            (
                "mean_wall_s".into(),
                AttrValue::F64(self.walls.iter().sum::<f64>() / n),
            ),
            (
                "bytes_neighbour".into(),
                AttrValue::F64(self.bytes_neighbour),
            ),
            (
                "bytes_neighbour_per_iteration".into(),
                AttrValue::F64(self.bytes_neighbour / n),
            ),
            (
                "unreconciled_workers".into(),
                AttrValue::Str(format!("{unreconciled:?}")),
            ),
            (
                "error".into(),
                AttrValue::Str(error.map(|e| e.to_string()).unwrap_or_default()),
            ),
        ];
        let mut per_worker = vec![
            (
                "mean_compute_s".into(),
                self.compute.iter().map(|c| c / n).collect(),
            ),
            (
                "mean_wait_s".into(),
                self.waits.iter().map(|c| c / n).collect(),
            ),
        ];
        let memory = PeakMemory::from_kib(crate::comm::peak_rss_kib(), peak_rss_kib);
        memory.record(&mut summary, &mut per_worker);
        let validation = vec![
            (
                "check".into(),
                AttrValue::Str(
                    if verdict == "REFERENCE" {
                        "REFERENCE"
                    } else {
                        "NOT APPLICABLE"
                    }
                    .into(),
                ),
            ),
            ("verdict".into(), AttrValue::Str(verdict.into())),
            ("finite".into(), AttrValue::Bool(finite)),
        ];
        let line = match ev {
            Some(e) => format!(
                "train accuracy {:.4}, test accuracy {:.4}",
                e.train_accuracy, e.test_accuracy
            ),
            None => "not evaluated".into(),
        };
        println!(
            "admm: {} after {} iterations ({} layers{}): objective {:.6e}, primal residual {:.3e}; {line}; p50 {:.1} ms per iteration, {:.3e} bytes between layer ranks per iteration",
            status.name(),
            self.rows,
            self.net.layers(),
            if self.compute.is_empty() { String::new() } else { format!(" on {} layer ranks", self.compute.len()) },
            self.last_objective,
            self.last_primal,
            p50 * 1e3,
            self.bytes_neighbour / n
        );
        memory.print();
        println!("  results: {}", self.writer.path().display());
        self.writer.finish(&FinalRecord {
            status: status.name().into(),
            w_final: self.weights.into(),
            validation,
            summary,
            per_worker,
            adapt: None,
        })?;
        Ok(())
    }
}
