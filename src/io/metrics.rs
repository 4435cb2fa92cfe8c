//! What one row of a results file holds: the per-iteration metrics, by name as enums (an unknown
//! metric does not compile), and the late-arrival events. Pure data; [`super::results`] writes
//! and reads them.
//!
//! The names are the dataset names of the schema (GUIDE §5, `docs/results.md`): scalars under
//! `/metrics/<name>`, per-(iteration, worker) matrices under `/<group>/<name>`, per-(iteration,
//! layer) matrices under `/layers/<name>` (`gradcode admm` only), late arrivals as columns under
//! `/late/<name>`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::model::Evaluation;

/// Declares a metric enum with its dataset names, in schema order.
macro_rules! metric_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }
        impl $name {
            /// Every metric, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many there are.
            pub const COUNT: usize = $name::ALL.len();
            /// Its dataset name.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

metric_enum! {
    /// Scalar per-iteration metrics in `/metrics`, all f64 (counts are exact integers).
    Metric {
        /// Iteration number (0-based, continued across resumes).
        Iteration => "iteration",
        /// Wall seconds from the post of the parameters to the step.
        WallS => "wall_s",
        /// The training clock: seconds since the start of the run (across resumes), without
        /// gradient checks.
        ElapsedS => "elapsed_s",
        /// Seconds spent decoding.
        DecodeS => "decode_s",
        /// The oracle: earliest moment the workers' own finish times formed a decodable set.
        OracleS => "oracle_s",
        /// Training objective at the evaluation point.
        TrainLoss => "train_loss",
        TestLoss => "test_loss",
        TestAccuracy => "test_accuracy",
        /// ROC AUC of the score (binary logistic).
        TestAuc => "test_auc",
        /// Workers whose every part arrived on time.
        NResponders => "n_responders",
        /// 1 when the decoded gradient equals the full gradient.
        Exact => "exact",
        /// err(F) = ‖B_Fᵀa − 1‖₂ (√Σ over chunks).
        DecodeResidual => "decode_residual",
        /// Guaranteed bound on err(F) (expander codes).
        ErrorBound => "error_bound",
        /// Largest cond(B_F) over the chunks.
        Cond => "cond",
        /// ‖ĝ − g‖/‖g‖ against the exact gradient, where checked.
        GradRelErr => "grad_rel_err",
        /// Late messages (of earlier iterations) drained during this iteration.
        Late => "late",
        /// Messages rejected as invalid during this iteration.
        Rejected => "rejected",
        /// Bytes rank 0 received during this iteration.
        BytesReceived => "bytes_received",
        /// Results folded in one iteration late (`--reuse-stale`).
        Stale => "stale",
        /// Bytes of parameters rank 0 posted during this iteration.
        BytesSent => "bytes_sent",
        /// Epochs completed after this iteration: (iteration + 1) / iterations per epoch
        /// (`--batch`; without it every iteration is one epoch).
        Epoch => "epoch",
        /// pdADMM (`admm`): the objective F = R(z_L; y) + Σ φ_l + Σ (ν/2)‖q_l − f(z_l)‖².
        Objective => "objective",
        /// pdADMM: the augmented Lagrangian L_ρ = F + Σ ⟨u_l, p_{l+1} − q_l⟩ + (ρ/2)‖p_{l+1} − q_l‖².
        Lagrangian => "lagrangian",
        /// pdADMM: √Σ_l ‖p_{l+1} − q_l‖² (the primal residual of the coupling constraints).
        PrimalResidual => "primal_residual",
        /// pdADMM: √Σ_l ρ²‖q_l^{k+1} − q_l^k‖² (the dual residual).
        DualResidual => "dual_residual",
        /// Fraction of the training rows classified correctly (admm: the assembled network).
        TrainAccuracy => "train_accuracy",
        /// pdADMM: bytes the layer ranks sent to each other during this iteration.
        BytesNeighbour => "bytes_neighbour",
        /// ‖ĝ − ĝ_u‖/‖ĝ_u‖ at a gradient check with `--compress`: ĝ decoded from the compressed
        /// messages, ĝ_u from the same responders' uncompressed ones.
        CompressRelErr => "compress_rel_err",
        /// Σ a² over the decoding weights used (with `--compress`): the factor by which the
        /// decode amplifies independent per-message compression noise.
        DecodeWeightSq => "decode_weight_sq",
        /// K-FAC (`--optimizer kfac`): rank 0's seconds folding the decoded factors in,
        /// eigendecomposing and preconditioning.
        KfacS => "kfac_s",
        /// K-FAC: of [`Metric::KfacS`], the seconds of the eigendecompositions.
        KfacEigS => "kfac_eig_s",
        /// K-FAC: the KL-clip scale ν of the step (1: not clipped).
        KfacNu => "kfac_nu",
        /// `train --adapt`: the s of the code this iteration was computed with.
        CodeS => "code_s",
        /// `train --adapt`: the s the next iteration switches to (NaN: no switch after this
        /// iteration).
        AdaptNextS => "adapt_next_s",
        /// `train --adapt`: the predicted gain of that switch, 1 − t(new s)/t(old s) per
        /// iteration by simulation of the refitted workers (NaN: no switch).
        AdaptGain => "adapt_gain",
        /// Result messages rank 0 received during this iteration (those of
        /// [`Metric::BytesReceived`]): only the leaders' with `--decode-tree G`.
        MessagesReceived => "messages_received",
        /// `train --adapt --adapt-deadline`: the deadline in force this iteration, in ms (NaN
        /// without it).
        AdaptDeadlineMs => "adapt_deadline_ms",
        /// An uncoded `--batch` run: this iteration's estimate of |G|², the squared norm of the
        /// true per-row gradient, from the workers' partition gradients and their sum (the
        /// gradient noise scale, `sim::efficiency`; NaN otherwise).
        GnsGradSq => "gns_grad_sq",
        /// With [`Metric::GnsGradSq`]: the estimate of tr Σ, the per-row gradient variance.
        /// B_noise = mean(gns_trace)/mean(gns_grad_sq).
        GnsTrace => "gns_trace",
        /// K-FAC with `--kfac-eig workers`: the factors of this iteration's refresh whose
        /// eigenbasis did not come back by the deadline (their previous one was kept).
        KfacEigFallbacks => "kfac_eig_fallbacks",
        /// K-FAC: of [`Metric::KfacS`], the seconds of the preconditioning (the rest of it,
        /// beside the eigendecompositions, is folding the decoded factors in).
        KfacPrecondS => "kfac_precond_s",
        /// K-FAC, on refresh iterations: 1 when the eigendecompositions ran on the workers (an
        /// eigen round), 0 at rank 0 (NaN otherwise); `--kfac-eig auto`'s choices.
        KfacEigWorkers => "kfac_eig_workers",
        /// `--decode-tree`: groups whose members send to rank 0 after this iteration (their
        /// leader fell silent and has not answered again; NaN without the tree decode).
        TreeFallenGroups => "tree_fallen_groups",
    }
}

metric_enum! {
    /// Per-(iteration, worker) metrics; NaN = no value.
    WorkerMetric {
        /// Seconds from the post to the arrival of the worker's last on-time part.
        ArrivalS => "arrival_s",
        /// Compute seconds the worker reported.
        ComputeS => "compute_s",
        /// Delay the worker injected for what it sent, as it reported it (inf = failed).
        InjectedS => "injected_s",
        /// Parts (chunks, or mat-vec phases) that arrived on time.
        Chunks => "chunks",
        /// 0 for a fresh response, 1 for one folded in an iteration late.
        StaleAge => "stale_age",
        /// The delay the straggler model drew for the worker at this iteration, whether or not
        /// it was applied (inf = failed): every draw, unbiased by who answered.
        PlannedS => "planned_s",
        /// pdADMM: seconds the layer rank waited for its neighbours and rank 0's grants.
        WaitS => "wait_s",
    }
}

metric_enum! {
    /// Per-(iteration, layer) metrics of `gradcode admm`, in `/layers`; NaN = no value (the
    /// output layer L has no q_L, u_L, so no residuals).
    LayerMetric {
        /// ‖p_{l+1} − q_l‖.
        PrimalResidual => "primal_residual",
        /// ρ‖q_l^{k+1} − q_l^k‖.
        DualResidual => "dual_residual",
        /// φ_l = (ν/2)‖z_l − W_l p_l − b_l‖².
        Phi => "phi",
        /// (ν/2)‖q_l − f(z_l)‖².
        ActivationGap => "activation_gap",
        /// ⟨u_l, p_{l+1} − q_l⟩ + (ρ/2)‖p_{l+1} − q_l‖².
        Coupling => "coupling",
        /// R(z_L; y), the cross-entropy summed over the rows (output layer only).
        Loss => "loss",
        /// τ_l of the p-update's backtracking.
        Tau => "tau",
        /// θ_l of the W-update's backtracking.
        Theta => "theta",
        /// Iterations by which the previous layer's q, u that the layer used were old (negative:
        /// the neighbour ran ahead and its newer values were used; `--max-staleness` bounds both).
        LeftAge => "left_age",
        /// The same for the next layer's p.
        RightAge => "right_age",
    }
}

impl LayerMetric {
    /// `layers/name`.
    pub fn path(self) -> String {
        format!("layers/{}", self.name())
    }
}

impl WorkerMetric {
    /// The group holding the dataset.
    pub fn group(self) -> &'static str {
        match self {
            WorkerMetric::InjectedS | WorkerMetric::PlannedS => "stragglers",
            _ => "timing",
        }
    }
    /// `group/name`.
    pub fn path(self) -> String {
        format!("{}/{}", self.group(), self.name())
    }
}

metric_enum! {
    /// Columns of `/late`: one row per message that arrived after its iteration was decoded.
    LateColumn {
        /// The iteration being collected when it arrived (the iteration count, for messages
        /// drained at shutdown).
        ReceivedDuring => "received_during",
        /// The iteration it was computed for.
        Iteration => "iteration",
        /// Sender's rank.
        Rank => "rank",
        /// Mat-vec phase (0 for gradient coding).
        Phase => "phase",
        /// Chunk.
        Part => "part",
        /// Seconds from the post of its parameters to its arrival.
        DelayS => "delay_s",
        ComputeS => "compute_s",
        InjectedS => "injected_s",
        /// 1 when folded into the next iteration (`--reuse-stale`).
        Used => "used",
    }
}

/// One row of results.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationRecord {
    scalars: [f64; Metric::COUNT],
    per_worker: [Vec<f64>; WorkerMetric::COUNT],
    per_layer: [Vec<f64>; LayerMetric::COUNT],
}

impl IterationRecord {
    /// A record for `n` workers with every value NaN.
    pub fn new(n: usize) -> Self {
        IterationRecord::with_layers(n, 0)
    }
    /// A record for `n` workers and `layers` layers (admm) with every value NaN.
    pub fn with_layers(n: usize, layers: usize) -> Self {
        IterationRecord {
            scalars: [f64::NAN; Metric::COUNT],
            per_worker: std::array::from_fn(|_| vec![f64::NAN; n]),
            per_layer: std::array::from_fn(|_| vec![f64::NAN; layers]),
        }
    }
    /// Every value back to NaN (reuse one record across iterations without allocating).
    pub fn reset(&mut self) {
        self.scalars.fill(f64::NAN);
        self.per_worker.iter_mut().for_each(|r| r.fill(f64::NAN));
        self.per_layer.iter_mut().for_each(|r| r.fill(f64::NAN));
    }
    /// Layers in the record (0 outside admm).
    pub fn layers(&self) -> usize {
        self.per_layer[0].len()
    }
    /// Per-layer row `m`.
    pub fn layer(&self, m: LayerMetric) -> &[f64] {
        &self.per_layer[m.index()]
    }
    /// Per-layer row `m`, for writing.
    pub fn layer_mut(&mut self, m: LayerMetric) -> &mut [f64] {
        &mut self.per_layer[m.index()]
    }
    /// Set scalar `m`.
    pub fn set(&mut self, m: Metric, v: f64) {
        self.scalars[m.index()] = v;
    }
    /// Scalar `m`.
    pub fn get(&self, m: Metric) -> f64 {
        self.scalars[m.index()]
    }
    /// Workers in the record.
    pub fn workers(&self) -> usize {
        self.per_worker[0].len()
    }
    /// Per-worker row `m`.
    pub fn worker(&self, m: WorkerMetric) -> &[f64] {
        &self.per_worker[m.index()]
    }
    /// Per-worker row `m`, for writing.
    pub fn worker_mut(&mut self, m: WorkerMetric) -> &mut [f64] {
        &mut self.per_worker[m.index()]
    }
    /// Every scalar in schema order.
    pub fn scalars(&self) -> &[f64] {
        &self.scalars
    }
    /// Record an evaluation of the test split: `test_loss`, `test_accuracy`, `test_auc` (NaN
    /// for what the model does not measure).
    pub fn set_test(&mut self, ev: &Evaluation) {
        self.set(Metric::TestLoss, ev.loss);
        self.set(Metric::TestAccuracy, ev.accuracy.unwrap_or(f64::NAN));
        self.set(Metric::TestAuc, ev.auc.unwrap_or(f64::NAN));
    }
}

/// One late arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LateRow {
    pub received_during: u64,
    pub iteration: u64,
    pub rank: usize,
    pub phase: usize,
    pub part: usize,
    pub delay_s: f64,
    pub compute_s: f64,
    pub injected_s: f64,
    pub used: bool,
}

impl LateRow {
    /// The row's values in the order of [`LateColumn::ALL`].
    pub fn values(&self) -> [f64; LateColumn::COUNT] {
        [
            self.received_during as f64,
            self.iteration as f64,
            self.rank as f64,
            self.phase as f64,
            self.part as f64,
            self.delay_s,
            self.compute_s,
            self.injected_s,
            f64::from(u8::from(self.used)),
        ]
    }
    /// A row from values in the order of [`LateColumn::ALL`].
    pub fn from_values(v: &[f64; LateColumn::COUNT]) -> LateRow {
        LateRow {
            received_during: v[0] as u64,
            iteration: v[1] as u64,
            rank: v[2] as usize,
            phase: v[3] as usize,
            part: v[4] as usize,
            delay_s: v[5],
            compute_s: v[6],
            injected_s: v[7],
            used: v[8] != 0.0,
        }
    }
}

/// All rows of a results file, as columns.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRows {
    /// Columns in the order of [`Metric::ALL`].
    pub(crate) scalars: Vec<Array1<f64>>,
    /// Matrices in the order of [`WorkerMetric::ALL`]; zero columns when absent from the file.
    pub(crate) per_worker: Vec<Array2<f64>>,
    /// Which per-worker metrics the file holds.
    pub(crate) present: Vec<bool>,
    /// Matrices in the order of [`LayerMetric::ALL`] [iteration, layer]; zero columns when the
    /// file has none (every run but admm).
    pub(crate) per_layer: Vec<Array2<f64>>,
    /// Late arrivals (empty in files written before they were recorded).
    pub late: Vec<LateRow>,
}

impl RecordedRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.scalars.first().map_or(0, |c| c.len())
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Column `m`.
    pub fn column(&self, m: Metric) -> ArrayView1<'_, f64> {
        self.scalars[m.index()].view()
    }
    /// Matrix `m` [iteration, worker] (no columns when the file does not hold it).
    pub fn worker(&self, m: WorkerMetric) -> ArrayView2<'_, f64> {
        self.per_worker[m.index()].view()
    }
    /// Whether the file holds per-worker metric `m`.
    pub fn has(&self, m: WorkerMetric) -> bool {
        self.present[m.index()]
    }
    /// Workers (columns of the per-worker metrics).
    pub fn workers(&self) -> usize {
        self.per_worker.iter().map(|m| m.ncols()).max().unwrap_or(0)
    }
    /// Layers (columns of the per-layer metrics; 0 outside admm).
    pub fn layers(&self) -> usize {
        self.per_layer.iter().map(|m| m.ncols()).max().unwrap_or(0)
    }
    /// Per-layer matrix `m` [iteration, layer] (no columns when the file has none).
    pub fn layer(&self, m: LayerMetric) -> ArrayView2<'_, f64> {
        self.per_layer[m.index()].view()
    }
    /// Row `i` as a record. A per-worker metric absent from the file (written by an older
    /// version, or lost) reads as NaN for every worker, so the row can be appended to a results
    /// file (resume) like any other.
    pub fn row(&self, i: usize) -> IterationRecord {
        let n = self.workers();
        let layers = self.layers();
        let mut rec = IterationRecord::with_layers(n, layers);
        for m in LayerMetric::ALL {
            let src = &self.per_layer[m.index()];
            if src.ncols() == layers {
                rec.layer_mut(*m).copy_from_slice(&src.row(i).to_vec());
            }
        }
        for m in Metric::ALL {
            rec.set(*m, self.scalars[m.index()][i]);
        }
        for m in WorkerMetric::ALL {
            let src = &self.per_worker[m.index()];
            if src.ncols() == n {
                rec.worker_mut(*m).copy_from_slice(&src.row(i).to_vec());
            }
        }
        rec
    }
}

/// How each worker's share of the iterations ended. One definition, used by the run's console
/// summary, `/summary` and `gradcode report`; for every worker
/// `on_time + partial + late + missed` = iterations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    /// Every part arrived before rank 0 decoded the iteration (a result folded in a round late
    /// does not count).
    pub on_time: u64,
    /// Some parts on time, the rest late or abandoned (partial work, `--chunks`).
    pub partial: u64,
    /// Nothing on time; its result arrived after the iteration was decoded (drained, recorded
    /// in `/late`, not used unless `--reuse-stale` folded it into the next iteration).
    pub late: u64,
    /// Nothing arrived for the iteration: the worker was still busy with an older one (and was
    /// not given these parameters), or it never answered (failed, stopped, cut off).
    pub missed: u64,
}

/// [`WorkerCounts`] from `chunks` [iteration, worker] (parts on time, as in `/timing/chunks`),
/// the parts owed per iteration, and the late arrivals.
pub fn count_outcomes(
    chunks: ArrayView2<f64>,
    parts: usize,
    late: &[LateRow],
) -> Vec<WorkerCounts> {
    let (iters, n) = chunks.dim();
    let late_pairs: std::collections::HashSet<(u64, usize)> =
        late.iter().map(|l| (l.iteration, l.rank)).collect();
    let mut out = vec![WorkerCounts::default(); n];
    for t in 0..iters {
        for (w, c) in out.iter_mut().enumerate() {
            let got = chunks[[t, w]];
            if got >= parts as f64 {
                c.on_time += 1;
            } else if got > 0.0 {
                c.partial += 1;
            } else if late_pairs.contains(&(t as u64, w + 1)) {
                c.late += 1;
            } else {
                c.missed += 1;
            }
        }
    }
    out
}

/// What the per-worker counts of a `--decode-tree G` run over `n` workers mean: rank 0 hears
/// from the group leaders only (but for the members of a group whose leader fell silent, once
/// told to send to rank 0), and a member is on time when its leader's on-time combination
/// included it (the leader's member mask), or when its own result reached rank 0 on time.
pub fn tree_decode_note(n: usize, g: usize) -> String {
    let leaders: Vec<usize> = (1..=n).step_by(g.max(1)).collect();
    format!(
        "tree decode (groups of {g}): rank 0 heard from the leaders {leaders:?} only, but for the members of a group whose leader fell silent (after it did); a member is on time when its leader's combination included it (the leader's member mask) or its own result came on time, missed otherwise"
    )
}

/// The nearest-rank percentile `p` ∈ [0, 1] of sorted values (NaN when empty): the rule of the
/// run's summary and of `gradcode report`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p95 of the finite values of `v` (the nearest-rank rule of [`percentile`]).
pub fn p50_p95(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let mut s: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    (percentile(&s, 0.5), percentile(&s, 0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_iteration_of_every_worker_has_one_outcome() {
        // 4 iterations, 3 workers, 2 parts: worker 1 always on time; worker 2 partial at 0, late
        // at 1 (a record), missed at 2 and 3; worker 3 late at 3 only.
        let chunks = ndarray::arr2(&[
            [2.0, 1.0, 2.0],
            [2.0, 0.0, 2.0],
            [2.0, f64::NAN, 2.0],
            [2.0, 0.0, 0.0],
        ]);
        let late = |iteration, rank| LateRow {
            received_during: iteration + 1,
            iteration,
            rank,
            phase: 0,
            part: 0,
            delay_s: 1.0,
            compute_s: 0.0,
            injected_s: 1.0,
            used: false,
        };
        // Two late parts of one iteration count once.
        let c = count_outcomes(chunks.view(), 2, &[late(1, 2), late(1, 2), late(3, 3)]);
        assert_eq!(
            c[0],
            WorkerCounts {
                on_time: 4,
                ..Default::default()
            }
        );
        assert_eq!(
            c[1],
            WorkerCounts {
                on_time: 0,
                partial: 1,
                late: 1,
                missed: 2
            }
        );
        assert_eq!(c[2].late, 1);
        for w in &c {
            assert_eq!(w.on_time + w.partial + w.late + w.missed, 4);
        }
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert_eq!(p50_p95([f64::NAN, 2.0, 1.0]), (2.0, 2.0));
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn names_are_the_schema_in_order() {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names[..4], ["iteration", "wall_s", "elapsed_s", "decode_s"]);
        // 20 until minibatches added `epoch`, at the end so older files read as before; then
        // pdADMM's six, then compression's two, then K-FAC's three, then --adapt's three, then
        // the tree decode's message count, then --adapt-deadline's deadline, then the gradient
        // noise scale's two, then K-FAC's eigen fallbacks, then its preconditioning time and
        // where the eigendecompositions ran, then the tree decode's fallen groups.
        assert_eq!(Metric::COUNT, 43);
        assert_eq!(names[20], "epoch");
        assert_eq!(LayerMetric::Tau.path(), "layers/tau");
        assert_eq!(names[27..29], ["compress_rel_err", "decode_weight_sq"]);
        assert_eq!(names[29..32], ["kfac_s", "kfac_eig_s", "kfac_nu"]);
        assert_eq!(names[32..35], ["code_s", "adapt_next_s", "adapt_gain"]);
        assert_eq!(names[35..37], ["messages_received", "adapt_deadline_ms"]);
        assert_eq!(names[37..39], ["gns_grad_sq", "gns_trace"]);
        assert_eq!(
            names[39..43],
            [
                "kfac_eig_fallbacks",
                "kfac_precond_s",
                "kfac_eig_workers",
                "tree_fallen_groups"
            ]
        );
        assert_eq!(WorkerMetric::ArrivalS.path(), "timing/arrival_s");
        assert_eq!(WorkerMetric::InjectedS.path(), "stragglers/injected_s");
        assert_eq!(WorkerMetric::PlannedS.path(), "stragglers/planned_s");
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
    }

    #[test]
    fn records_set_and_reset() {
        let mut r = IterationRecord::new(3);
        r.set(Metric::WallS, 0.5);
        r.worker_mut(WorkerMetric::Chunks)[2] = 1.0;
        assert_eq!(r.get(Metric::WallS), 0.5);
        assert_eq!(r.worker(WorkerMetric::Chunks)[2], 1.0);
        r.reset();
        assert!(r.get(Metric::WallS).is_nan());
        let late = LateRow {
            received_during: 4,
            iteration: 3,
            rank: 2,
            phase: 1,
            part: 0,
            delay_s: 0.25,
            compute_s: 0.01,
            injected_s: 0.2,
            used: true,
        };
        assert_eq!(LateRow::from_values(&late.values()), late);
    }
}
