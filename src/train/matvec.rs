//! The coded mat-vec engine (`--code mds-<family>`; Lee et al., "Speeding up distributed machine
//! learning using codes", §IV; GUIDE §3 "Coded linear algebra").
//!
//! For linear and logistic models every gradient step is two coded mat-vecs over the same MDS
//! code with k = n − s. Phase 0 computes z = X w (X cut into k·r row blocks); rank 0 adds the
//! intercept, forms the per-row loss and residual r_i = ∂ℓ/∂z(z_i, y_i) with the model's own
//! [`Model::row_loss`]; phase 1 computes Xᵀ r (Xᵀ cut into k·r row blocks); rank 0 adds Σ r for
//! the intercept. Each phase decodes from the first decodable set of workers
//! ([`MdsRound`]). Rounds are numbered 2t + phase.
//!
//! Each worker holds two coded blocks (one of X, one of Xᵀ): it reads the whole X once at
//! start-up (the column blocks of X are not a hyperslab of the CSR layout), encodes, and keeps
//! only its blocks; Xᵀ blocks are dense. Rank 0 holds y and, for the gradient check, X: the check
//! compares the decoded gradient sum with [`Model::gradient_into`] on the whole data, within the
//! tolerance of the two systems' conditioning.
//!
//! Not here: chunks, stale reuse and best-effort decoding (each mat-vec decodes exactly from any
//! N − s workers; refused by the config), softmax (its mat-vecs have C columns).

use std::time::{Duration, Instant};

use ndarray::{s, Array1, Array2, ArrayView1};

use super::coded::late_row;
use super::engine::{Check, Computed, GradientEngine, Iteration};
use super::INTERRUPT;
use crate::comm::{Collected, Collector, CollectorSpec, Round, Transport};
use crate::config::RunConfig;
use crate::data::{Dataset, Features};
use crate::error::{Error, Result};
use crate::io::results::{AttrValue, LateRow, Metric, WorkerMetric};
use crate::linalg::job::{
    encode_worker, rel_err, validation_tol, worker_ranges, BlockLayout, CodedBlock,
};
use crate::linalg::serve::MdsRound;
use crate::linalg::{Decoded, MdsCode};
use crate::model::{Model, Workspace};
use crate::straggler::StragglerSchedule;

/// The two block layouts of coded training over `rows` × `features` data: X (phase 0) and Xᵀ
/// (phase 1).
pub fn layouts(code: &MdsCode, rows: usize, features: usize) -> Result<[BlockLayout; 2]> {
    Ok([
        BlockLayout::new(code, rows, features)?,
        BlockLayout::new(code, features, rows)?,
    ])
}

/// Worker `w`'s two coded blocks, from the whole training X.
pub fn worker_blocks(
    code: &MdsCode,
    layouts: &[BlockLayout; 2],
    w: usize,
    x: &Features,
) -> Result<Vec<CodedBlock>> {
    let b0 = encode_worker(
        code,
        &layouts[0],
        w,
        stacked(x, worker_ranges(code, &layouts[0], w))?,
    )?;
    let xt = transpose(x);
    let b1 = encode_worker(
        code,
        &layouts[1],
        w,
        stacked(&xt, worker_ranges(code, &layouts[1], w))?,
    )?;
    Ok(vec![b0, b1])
}

fn transpose(x: &Features) -> Features {
    match x {
        Features::Dense(m) => Features::Dense(m.t().as_standard_layout().to_owned()),
        Features::Sparse(m) => Features::Dense(m.to_dense().t().as_standard_layout().to_owned()),
    }
}

fn stacked(x: &Features, ranges: Vec<std::ops::Range<usize>>) -> Result<Features> {
    if ranges.is_empty() {
        return Ok(x.slice_rows(0..0));
    }
    let parts: Vec<Features> = ranges.into_iter().map(|r| x.slice_rows(r)).collect();
    let refs: Vec<&Features> = parts.iter().collect();
    Ok(Features::vstack(&refs)?)
}

/// What one phase left behind for the iteration's record.
#[derive(Debug, Clone, Default)]
struct PhaseStats {
    decode_s: f64,
    responders: usize,
    late: u32,
    rejected: u32,
    bytes_in: f64,
    bytes_out: f64,
    arrival: Vec<f64>,
    compute: Vec<f64>,
    injected: Vec<f64>,
    on_time: Vec<usize>,
}

impl PhaseStats {
    fn of(round: &Round, decode_s: f64) -> Self {
        PhaseStats {
            decode_s,
            responders: round.complete_responders(),
            late: round.late,
            rejected: round.rejected,
            bytes_in: round.bytes_in,
            bytes_out: round.bytes_out,
            arrival: round.arrival_s.clone(),
            compute: round.compute_s.clone(),
            injected: round.injected_s.clone(),
            on_time: round.parts_in.clone(),
        }
    }
}

/// Rank 0's side of coded training through mat-vecs over transport `T`.
pub struct MatVecGradients<'a, T: Transport> {
    c: Collector<T>,
    code: &'a MdsCode,
    model: &'a dyn Model,
    /// The training split (rank 0 needs y, and X for the check).
    data: &'a Dataset,
    r: Array1<f64>,
    x: Vec<f64>,
    ws: Workspace,
    schedule: StragglerSchedule,
    shutdown: Duration,
}

impl<'a, T: Transport> MatVecGradients<'a, T> {
    /// Rank 0 of `cfg` with `code` and the block `layouts`, training `model` on `data`.
    pub fn new(
        transport: T,
        cfg: &RunConfig,
        code: &'a MdsCode,
        layouts: &[BlockLayout; 2],
        model: &'a dyn Model,
        data: &'a Dataset,
    ) -> Self {
        let n = code.n_workers();
        let spec = CollectorSpec::one_message(
            n,
            layouts
                .iter()
                .map(|l| vec![l.result_len(code); n])
                .collect(),
            cfg.job.deadline(),
            cfg.job.max_wait(),
        );
        MatVecGradients {
            c: Collector::new(transport, spec),
            code,
            model,
            data,
            r: Array1::zeros(data.n_rows()),
            x: Vec::new(),
            ws: Workspace::default(),
            schedule: cfg.job.schedule(),
            shutdown: cfg.job.shutdown_bound(),
        }
    }

    /// One coded mat-vec: post `x` for round (`round`, `phase`), collect, decode. `None` when a
    /// signal arrived meanwhile.
    fn mat_vec(
        &mut self,
        round: u64,
        phase: usize,
        rows: usize,
        it: &mut Iteration<'_>,
    ) -> Result<Option<(Decoded, PhaseStats)>> {
        self.c.begin(round, phase, &self.x, 0);
        let mut rule = MdsRound::new(self.code, rows)?;
        let collected = {
            let idle = &mut *it.idle;
            let mut on_idle = || idle();
            self.c
                .collect::<Error>(&mut rule, Some(&INTERRUPT), &mut on_idle)
        };
        self.c.end();
        it.late.extend(self.c.take_late().iter().map(|l| {
            let mut row = late_row(l);
            (row.iteration, row.phase) = (l.iteration / 2, (l.iteration % 2) as usize);
            row.received_during = l.received_during / 2;
            row
        }));
        if collected? == Collected::Interrupted {
            return Ok(None);
        }
        let d = rule.decode()?;
        let stats = PhaseStats::of(self.c.round(), rule.decode_s);
        Ok(Some((d, stats)))
    }

    fn record(&mut self, it: &mut Iteration<'_>, p: [&PhaseStats; 2], cond: f64) {
        let rec = &mut *it.rec;
        rec.set(Metric::DecodeS, p[0].decode_s + p[1].decode_s);
        rec.set(
            Metric::NResponders,
            p[0].responders.min(p[1].responders) as f64,
        );
        rec.set(Metric::DecodeResidual, 0.0);
        rec.set(Metric::Cond, cond);
        rec.set(Metric::Late, f64::from(p[0].late + p[1].late));
        rec.set(Metric::Rejected, f64::from(p[0].rejected + p[1].rejected));
        rec.set(Metric::BytesReceived, p[0].bytes_in + p[1].bytes_in);
        rec.set(Metric::BytesSent, p[0].bytes_out + p[1].bytes_out);
        for w in 0..self.code.n_workers() {
            let failed = self.schedule.failed(2 * it.t, w + 1);
            let planned: f64 = (0..2)
                .map(|ph| self.schedule.delay_s(2 * it.t + ph, w + 1))
                .sum();
            rec.worker_mut(WorkerMetric::ArrivalS)[w] = p[0].arrival[w];
            rec.worker_mut(WorkerMetric::ComputeS)[w] = p[0].compute[w] + p[1].compute[w];
            rec.worker_mut(WorkerMetric::InjectedS)[w] = if failed {
                f64::INFINITY
            } else {
                p[0].injected[w] + p[1].injected[w]
            };
            rec.worker_mut(WorkerMetric::Chunks)[w] = (p[0].on_time[w] + p[1].on_time[w]) as f64;
            rec.worker_mut(WorkerMetric::PlannedS)[w] =
                if failed { f64::INFINITY } else { planned };
        }
    }

    /// The decoded gradient sum against the exact one on the whole data.
    fn check(
        &mut self,
        t: u64,
        point: ArrayView1<f64>,
        g: &Array1<f64>,
        conds: (f64, f64),
    ) -> Check {
        let start = Instant::now();
        let mut exact = Array1::<f64>::zeros(self.model.dim() + 1);
        let loss = self.model.gradient_into(
            point,
            &self.data.x,
            self.data.y.view(),
            None,
            &mut self.ws,
            exact.slice_mut(s![..self.model.dim()]),
        );
        exact[self.model.dim()] = loss;
        let dim = self.model.dim();
        let err = rel_err(g.slice(s![..dim]), exact.slice(s![..dim]));
        let tol = validation_tol(conds.0.max(1.0) * conds.1.max(1.0));
        let passed = err <= tol;
        let verdict = if passed { "PASSED" } else { "FAILED" };
        log::info!(
            "[rank 0] gradient check at iteration {t}: decoded vs exact gradient rel. error {err:.3e} (conds {:.2e}, {:.2e}; tolerance {tol:.1e}): {verdict}",
            conds.0,
            conds.1
        );
        Check {
            attrs: vec![
                ("iteration".into(), AttrValue::U64(t)),
                ("check".into(), AttrValue::Str(verdict.into())),
                ("rel_err".into(), AttrValue::F64(err)),
                ("tolerance".into(), AttrValue::F64(tol)),
                ("exact_decoding".into(), AttrValue::Bool(true)),
                ("responders".into(), AttrValue::Str("[]".into())),
                ("not_decoded".into(), AttrValue::Str("[]".into())),
            ],
            passed,
            rel_err: err,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

impl<T: Transport> GradientEngine for MatVecGradients<'_, T> {
    fn describe(&self) -> String {
        format!(
            "{} workers, code mds-{} through mat-vecs (any k = {} decode each of 2 mat-vecs per step)",
            self.code.n_workers(),
            self.code.family().name(),
            self.code.threshold()
        )
    }
    fn workers(&self) -> usize {
        self.code.n_workers()
    }
    fn parts(&self) -> usize {
        2
    }
    fn code_matrix(&self) -> Array2<f64> {
        self.code.generator().as_standard_layout().into_owned()
    }

    fn compute(&mut self, it: &mut Iteration<'_>, g: &mut Array1<f64>) -> Result<Computed> {
        let d = self.model.n_features();
        let rows = self.data.n_rows();
        // Phase 0: z = X w; then the intercept, the loss and the residuals.
        self.x.clear();
        self.x.extend(it.point.slice(s![..d]).iter());
        let Some((z, p0)) = self.mat_vec(2 * it.t, 0, rows, it)? else {
            return Ok(Computed::Interrupted);
        };
        let bias = it.point[d];
        let mut loss_sum = 0.0;
        for ((ri, &zi), &yi) in self.r.iter_mut().zip(z.value.column(0)).zip(&self.data.y) {
            let (l, dl) = self
                .model
                .row_loss(zi + bias, yi)
                .unwrap_or((f64::NAN, f64::NAN));
            loss_sum += l;
            *ri = dl;
        }
        // Phase 1: Xᵀ r.
        self.x.clear();
        self.x.extend(self.r.iter());
        let Some((gx, p1)) = self.mat_vec(2 * it.t + 1, 1, d, it)? else {
            return Ok(Computed::Interrupted);
        };
        g.slice_mut(s![..d]).assign(&gx.value.column(0));
        g[d] = self.r.sum();
        g[d + 1] = loss_sum;
        self.record(it, [&p0, &p1], z.cond.max(gx.cond));
        let check = it
            .check
            .then(|| self.check(it.t, it.point, g, (z.cond, gx.cond)));
        Ok(Computed::Gradient { exact: true, check })
    }

    fn finish(&mut self, exit_code: i32, late: &mut Vec<LateRow>) -> Result<Vec<usize>> {
        let r = self.c.shutdown(exit_code, self.shutdown);
        late.extend(self.c.take_late().iter().map(|l| {
            let mut row = late_row(l);
            (row.iteration, row.phase) = (l.iteration / 2, (l.iteration % 2) as usize);
            row.received_during = l.received_during / 2;
            row
        }));
        Ok(r?)
    }

    fn never_answered(&self) -> Vec<usize> {
        self.c.never_answered()
    }

    fn peak_rss_kib(&self) -> Vec<f64> {
        self.c.peak_rss_kib().to_vec()
    }

    fn rejected(&self) -> Vec<u64> {
        self.c.rejected_by_worker()
    }
}
