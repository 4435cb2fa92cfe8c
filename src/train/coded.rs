//! The gradient-coding engine (Tandon et al. 2017; GUIDE §3): worker i holds the partitions
//! S_i of the code, computes the coded gradient Σ_j b_ij g_j of its held rows in one pass
//! (row weights b_ij, GUIDE §1) and sends it; rank 0 decodes ĝ = Σ_{i∈F} a_i c_i from the first
//! decodable responder set F (or the best-effort set at the deadline).
//!
//! Partial work (`--chunks C`): each held partition is cut into C sub-partitions; chunk q of a
//! worker stacks the q-th sub-partition of every held partition, so each chunk is a coded message
//! of the same code over sub-partitions. Worker w sends chunks in the cyclic order w, w+1, … as
//! they finish and abandons the rest when rank 0 has moved on; rank 0 decodes every chunk from
//! the workers that delivered it and sums.
//!
//! Split codes (`comm-efficient`, m > 1; Ye & Abbe): a worker keeps each held partition's rows
//! apart ([`Rows::Apart`]), computes each partition's gradient and codes its m pieces into one
//! message of ⌈dim/m⌉ values plus the loss (coded with piece 0); rank 0 decodes piece by piece
//! with the m weight vectors of the decoding. Every other code keeps the one-pass path.
//!
//! Compression (`--compress`, [`crate::compress`]): the worker codes its message as above, then
//! compresses the coded vector (with error feedback, one residual per chunk) and sends it with
//! the loss; rank 0 decompresses every message of the responders before decoding. With
//! `--decode-tree` a result that goes into a group leader's combination (a member's to its
//! leader, the leader's own) is sent uncompressed and the leader compresses the combination
//! (`comm::group`); rank 0 decompresses it, leaving the member mask after the loss.
//!
//! Minibatches (`--batch B`, [`crate::data::batch`]): every iteration each held partition gives
//! B rows drawn from (seed, iteration, partition), the same on every worker that holds it, so
//! the decoded sum is the exact gradient of the k·B rows. The worker keeps its stacked
//! partitions whole and gathers each iteration's rows into reused buffers (timed as compute);
//! with `--chunks C`, chunk q takes the q-th of C consecutive pieces of every held partition's
//! B rows, a coded message of the same code over the pieces, as above.
//!
//! K-FAC (`--optimizer kfac`): on a factor-update iteration rank 0 posts the parameters as a
//! factor post ([`super::phase`]: how each job mode numbers its posts), and each worker
//! appends to its coded message the same coded combination of its
//! partitions' K-FAC factor sums (row weights b_ij again; packed upper triangles,
//! `Model::kfac_factors_into`). Rank 0 decodes the whole longer message with the gradient's
//! weights, so the factors of the k·B rows are exact from any decodable set, in the same round.
//!
//! The gradient check: workers also send the uncoded gradient of every held sub-partition, and
//! rank 0 compares the decoded gradient with their sum (PASSED when exact to 1e-8, or, for an
//! approximate decoding, within the guaranteed bound Σ_q err(F_q)·‖G_q‖_F). With compression
//! the verdict is about the decode of the uncompressed messages, rebuilt from those pieces, and
//! the change compression made is recorded beside it.

use std::ops::Range;
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};

use super::adapt::{Adaptation, StoredShard};
use super::engine::{Check, Computed, GradientEngine, Iteration};
use super::phase::{Ask, Phases};
use super::INTERRUPT;
use crate::coding::{Decoder, GradientCode};
use crate::comm::collector::LateArrival;
use crate::comm::Messages;
use crate::comm::{
    Collected, Collector, CollectorSpec, CommError, Responder, Round, Rule, Transport, WorkerJob,
    WorkerTransport,
};
use crate::compress::{Compressor, ErrorFeedback, NoiseKey};
use crate::config::RunConfig;
use crate::data::batch::{BatchPlan, Minibatch};
use crate::data::{partition_ranges, DataError, Dataset, Features};
use crate::error::{Error, Result};
use crate::io::checkpoint::AdaptState;
use crate::io::results::{AdaptSwitch, AttrValue, IterationRecord, LateRow, Metric, WorkerMetric};
use crate::model::{Model, ModelKind, Workspace};
use crate::optim::kfac::{self, KfacState};
use crate::straggler::StragglerSchedule;

/// The rows of one chunk, as its code computes them.
#[derive(Debug)]
pub enum Rows {
    /// One-pass codes (split m = 1): every held partition's rows stacked, with a per-row
    /// coefficient (rows of partition j get b_ij).
    Stacked {
        data: Dataset,
        row_weights: Array1<f64>,
    },
    /// Split codes (`comm-efficient`, m > 1): each held partition's rows apart, in assignment
    /// order, since each partition's gradient is computed before its pieces are coded.
    Apart(Vec<Dataset>),
}

/// One chunk of a worker's work: for every held partition j, its q-th sub-partition.
#[derive(Debug)]
pub struct Chunk {
    pub rows: Rows,
    /// (partition, local row range) for every held partition: inside the stacked data, or the
    /// whole of its own dataset ([`Rows::Apart`]).
    pub parts: Vec<(usize, Range<usize>)>,
}

impl Chunk {
    /// Features and labels of the `i`-th held partition's rows (a copy only when stacked).
    fn partition(&self, i: usize) -> Option<(std::borrow::Cow<'_, Features>, ArrayView1<'_, f64>)> {
        let (_, range) = self.parts.get(i)?;
        Some(match &self.rows {
            Rows::Stacked { data, .. } => (
                std::borrow::Cow::Owned(data.x.slice_rows(range.clone())),
                data.y.slice(ndarray::s![range.clone()]),
            ),
            Rows::Apart(pieces) => {
                let d = pieces.get(i)?;
                (std::borrow::Cow::Borrowed(&d.x), d.y.view())
            }
        })
    }
}

/// What one worker holds: its partitions, split into chunks (one chunk unless `--chunks`).
#[derive(Debug)]
pub struct Shard {
    /// The chunks; with minibatches, the whole stacked partitions as one chunk, from which
    /// every iteration's chunks are drawn.
    pub chunks: Vec<Chunk>,
    /// With minibatches: the current iteration's chunks.
    draws: Option<Draws>,
}

impl Shard {
    /// Split worker `w`'s stacked rows (`ranges[p]` = rows of its p-th held partition) into
    /// `n_chunks` chunks. Every partition needs at least `n_chunks` rows. With a minibatch
    /// `plan`, keep the rows whole: each iteration draws its chunks from them. Without one, a
    /// split code keeps each partition's rows apart ([`Rows::Apart`]).
    pub fn new(
        code: &dyn GradientCode,
        w: usize,
        data: Dataset,
        ranges: Vec<Range<usize>>,
        n_chunks: usize,
        plan: Option<BatchPlan>,
    ) -> Result<Shard, DataError> {
        let parts = code.assignment(w);
        let coefs = code.coefficients(w);
        let m = code.split();
        if m > 1 && plan.is_none() {
            return Self::apart(parts, &data, &ranges, n_chunks);
        }
        if n_chunks <= 1 || plan.is_some() {
            // A split code's rows carry piece 0's coefficient; its encoder uses its own.
            let mut row_weights = Array1::zeros(data.n_rows());
            for (r, &c) in ranges.iter().zip(coefs.iter().step_by(m)) {
                row_weights.slice_mut(ndarray::s![r.clone()]).fill(c);
            }
            let whole = Chunk {
                rows: Rows::Stacked { data, row_weights },
                parts: parts.iter().copied().zip(ranges).collect(),
            };
            let draws = match plan {
                Some(p) => Some(Draws::new(&whole, p, n_chunks.max(1))?),
                None => None,
            };
            return Ok(Shard {
                chunks: vec![whole],
                draws,
            });
        }
        let splits = Self::sub_ranges(&ranges, n_chunks)?;
        let chunks = (0..n_chunks)
            .map(|q| Self::chunk(&data, &splits, parts, coefs, q))
            .collect::<Result<_, _>>()?;
        Ok(Shard {
            chunks,
            draws: None,
        })
    }

    /// `ranges[p]` cut into `n_chunks` consecutive sub-ranges each.
    fn sub_ranges(
        ranges: &[Range<usize>],
        n_chunks: usize,
    ) -> Result<Vec<Vec<Range<usize>>>, DataError> {
        ranges
            .iter()
            .map(|r| {
                crate::data::partition_ranges(r.len(), n_chunks.max(1)).map(|sub| {
                    sub.into_iter()
                        .map(|s| r.start + s.start..r.start + s.end)
                        .collect()
                })
            })
            .collect()
    }

    /// A split code's shard: chunk q holds the q-th sub-range of every held partition, apart.
    fn apart(
        parts: &[usize],
        data: &Dataset,
        ranges: &[Range<usize>],
        n_chunks: usize,
    ) -> Result<Shard, DataError> {
        let splits = Self::sub_ranges(ranges, n_chunks)?;
        let chunks = (0..n_chunks.max(1))
            .map(|q| {
                let pieces: Vec<Dataset> = splits
                    .iter()
                    .map(|sub| data.slice_rows(sub[q].clone()))
                    .collect();
                let parts = parts
                    .iter()
                    .zip(&pieces)
                    .map(|(&j, d)| (j, 0..d.n_rows()))
                    .collect();
                Chunk {
                    rows: Rows::Apart(pieces),
                    parts,
                }
            })
            .collect();
        Ok(Shard {
            chunks,
            draws: None,
        })
    }

    /// Chunk `q`: the q-th sub-range of every held partition, stacked.
    fn chunk(
        data: &Dataset,
        splits: &[Vec<Range<usize>>],
        parts: &[usize],
        coefs: &[f64],
        q: usize,
    ) -> Result<Chunk, DataError> {
        let pieces: Vec<Dataset> = splits
            .iter()
            .map(|sub| data.slice_rows(sub[q].clone()))
            .collect();
        let xs: Vec<&Features> = pieces.iter().map(|d| &d.x).collect();
        let x = Features::vstack(&xs)?;
        let ys: Vec<ArrayView1<f64>> = pieces.iter().map(|d| d.y.view()).collect();
        let y = ndarray::concatenate(ndarray::Axis(0), &ys)
            .map_err(|e| DataError::Invalid(e.to_string()))?;
        let mut row_weights = Array1::zeros(y.len());
        let mut local = Vec::with_capacity(pieces.len());
        let mut at = 0;
        for ((piece, &j), &c) in pieces.iter().zip(parts).zip(coefs) {
            let len = piece.n_rows();
            row_weights.slice_mut(ndarray::s![at..at + len]).fill(c);
            local.push((j, at..at + len));
            at += len;
        }
        Ok(Chunk {
            rows: Rows::Stacked {
                data: Dataset {
                    x,
                    y,
                    task: data.task,
                },
                row_weights,
            },
            parts: local,
        })
    }

    /// Chunks per iteration.
    pub fn n_chunks(&self) -> usize {
        self.draws
            .as_ref()
            .map_or(self.chunks.len(), |d| d.chunks.len())
    }

    /// The order in which worker `w` processes its chunks.
    pub fn order(&self, w: usize) -> impl Iterator<Item = usize> + '_ {
        let c = self.n_chunks();
        (0..c).map(move |t| (w + t) % c)
    }
}

/// `out` (⌈dim/m⌉ values, then the loss) += the pieces of one partition's gradient and loss
/// `grad` (dim + 1) with its m coefficients `b` (piece u scaled by b[u]; the loss by b[0]).
fn add_coded(out: &mut [f64], b: &[f64], grad: &[f64], len: usize) {
    let dim = grad.len() - 1;
    for (u, &bu) in b.iter().enumerate() {
        let lo = (u * len).min(dim);
        let hi = ((u + 1) * len).min(dim);
        for (o, g) in out[..hi - lo].iter_mut().zip(&grad[lo..hi]) {
            *o += bu * g;
        }
    }
    out[len] += b[0] * grad[dim];
}

/// How a worker of a split code (m > 1) codes its partitions' gradients into one message of
/// ⌈dim/m⌉ values and the loss: Σ_p Σ_u b[p, u] · (piece u of partition p's gradient).
#[derive(Debug)]
struct SplitEncoder {
    m: usize,
    /// ⌈dim/m⌉.
    len: usize,
    /// The worker's coefficients, `[p·m + u]`.
    coefs: Vec<f64>,
    /// One partition's gradient and loss (dim + 1).
    grad: Vec<f64>,
}

impl SplitEncoder {
    /// Code chunk `c`'s partitions at `w` into `out` (⌈dim/m⌉ values, then the loss coded with
    /// piece 0's coefficients).
    fn encode(
        &mut self,
        model: &dyn Model,
        ws: &mut Workspace,
        w: ArrayView1<f64>,
        c: &Chunk,
        out: &mut [f64],
    ) {
        out.fill(0.0);
        for (p, cp) in self.coefs.chunks(self.m).enumerate() {
            let Some((x, y)) = c.partition(p) else {
                continue;
            };
            CodedWorker::gradient(model, ws, w, &x, y, None, &mut self.grad);
            add_coded(out, cp, &self.grad, self.len);
        }
    }
}

/// A worker's compressor of its coded messages (`--compress`), with its error feedback.
#[derive(Debug)]
struct Sender {
    c: Compressor,
    /// Values of the coded vector before compression (⌈dim/m⌉).
    len: usize,
    /// One residual per chunk (`--error-feedback`).
    feedback: Option<Vec<ErrorFeedback>>,
    /// Without feedback: the compressor's state per chunk (low-rank's warm start).
    warm: Vec<Vec<f64>>,
    /// The coded vector and the loss, before compression.
    coded: Vec<f64>,
    seed: u64,
}

impl Sender {
    /// Compress `self.coded` into `out` (the compressed vector, then the loss as it is).
    fn send(&mut self, key: NoiseKey, out: &mut [f64]) -> Result<(), CommError> {
        let (v, loss) = self.coded.split_at(self.len);
        let (wire, rest) = out.split_at_mut(self.c.wire_len(self.len));
        match self.feedback.as_mut().and_then(|f| f.get_mut(key.part)) {
            Some(e) => e.compress(&self.c, v, key, wire),
            None => match self.warm.get_mut(key.part) {
                Some(warm) => self.c.compress_with(v, key, wire, warm),
                None => self.c.compress(v, key, wire),
            },
        }
        .map_err(|e| CommError::Fatal(e.to_string()))?;
        rest[0] = loss[0];
        Ok(())
    }
}

/// A worker's minibatch of the current iteration: its chunks, refilled every iteration from
/// the shard's whole partitions.
#[derive(Debug)]
struct Draws {
    minibatch: Minibatch,
    /// The batch positions (a sub-range of 0..B) each chunk takes of every partition.
    pieces: Vec<Range<usize>>,
    /// Chunk q of the current iteration (row weights and layout fixed, rows refilled).
    chunks: Vec<Chunk>,
}

impl Draws {
    /// `n_chunks` chunks of minibatches of `plan` drawn from `whole`.
    fn new(whole: &Chunk, plan: BatchPlan, n_chunks: usize) -> Result<Draws, DataError> {
        let pieces = partition_ranges(plan.batch(), n_chunks)?;
        let minibatch = Minibatch::new(plan, whole.parts.iter().cloned())?;
        let Rows::Stacked {
            data: whole_data,
            row_weights: whole_weights,
        } = &whole.rows
        else {
            return Err(DataError::Invalid(
                "internal: minibatches are drawn from stacked rows".into(),
            ));
        };
        let chunks = pieces
            .iter()
            .map(|piece| {
                let mut row_weights = Vec::with_capacity(piece.len() * whole.parts.len());
                let mut parts = Vec::with_capacity(whole.parts.len());
                for (j, range) in &whole.parts {
                    let coef = whole_weights[range.start];
                    parts.push((*j, row_weights.len()..row_weights.len() + piece.len()));
                    row_weights.extend(std::iter::repeat(coef).take(piece.len()));
                }
                Chunk {
                    rows: Rows::Stacked {
                        data: whole_data.slice_rows(0..0),
                        row_weights: Array1::from(row_weights),
                    },
                    parts,
                }
            })
            .collect();
        Ok(Draws {
            minibatch,
            pieces,
            chunks,
        })
    }

    /// Chunk `q` of iteration `t`, drawn from `whole`.
    fn fill(&mut self, whole: &Chunk, q: usize, t: u64) -> &Chunk {
        let c = &mut self.chunks[q];
        if let (Rows::Stacked { data: from, .. }, Rows::Stacked { data: to, .. }) =
            (&whole.rows, &mut c.rows)
        {
            self.minibatch.gather(t, self.pieces[q].clone(), from, to);
        }
        c
    }
}

/// `c` set to factor `model`'s weight matrices (`lowrank`: every parameter block, which must
/// follow each other from the vector's start); the other compressors as they are.
pub fn for_model(c: Compressor, model: &dyn Model) -> Result<Compressor> {
    if !matches!(c, Compressor::LowRank { .. }) {
        return Ok(c);
    }
    let mut at = 0;
    let mut shapes = Vec::with_capacity(model.blocks().len());
    for b in model.blocks() {
        if b.offset != at {
            return Err(Error::Check(format!(
                "--compress {c}: the model's parameter blocks are not consecutive (one starts at {}, expected {at})",
                b.offset
            )));
        }
        shapes.push((b.units, b.inputs));
        at += b.len();
    }
    c.with_matrices(&shapes)
        .map_err(|e| Error::Check(e.to_string()))
}

/// A worker's results on its support (`--messages support|auto`, issue 20 §2): its rows
/// re-indexed to the columns they touch, a model of that many features (and the intercept),
/// and the parameters gathered there every iteration.
struct OnSupport {
    /// The columns of the full model (without the intercept) the rows touch, increasing.
    columns: Vec<u32>,
    model: Box<dyn Model>,
    /// The parameters on the support, then the intercept.
    w: Vec<f64>,
}

impl OnSupport {
    /// `self.w` ← the parameters `params` on the support (the intercept last): rank 0 sends
    /// them gathered already (then they have the support's length), or in full.
    fn gather(&mut self, params: &[f64]) {
        if params.len() == self.w.len() {
            self.w.copy_from_slice(params);
        } else {
            on_support(params, &self.columns, &mut self.w);
        }
    }

    /// `full` (dim + 1: gradient, intercept, loss) ← `piece` (on the support: gradient,
    /// intercept, loss) scattered.
    fn scatter(&self, piece: &[f64], full: &mut [f64]) {
        full.fill(0.0);
        let n = self.columns.len();
        for (&j, &v) in self.columns.iter().zip(piece) {
            full[j as usize] = v;
        }
        let dim = full.len() - 1;
        full[dim - 1] = piece[n];
        full[dim] = piece[n + 1];
    }
}

/// A worker of gradient coding: the coded gradient (and loss) of each chunk of its shard at the
/// parameters rank 0 posts.
pub struct CodedWorker<'a> {
    model: &'a dyn Model,
    shard: Shard,
    order: Vec<usize>,
    ws: Workspace,
    /// Split codes only.
    split: Option<SplitEncoder>,
    /// `--compress` only.
    sender: Option<Sender>,
    /// `--messages support|auto`: None for dense messages.
    local: Option<OnSupport>,
    /// `--messages support|auto`: the support sent at start-up (empty: dense).
    announce: Option<Vec<u32>>,
    /// A check piece on the support, before it is scattered to full length.
    piece: Vec<f64>,
    /// K-FAC: values of the packed factor sums appended in phase 1 (0: no K-FAC).
    kfac_len: usize,
    /// `--adapt`: the stored partitions and the s of `shard` (a post's phase is its s).
    stored: Option<(StoredShard, usize)>,
    /// K-FAC `--kfac-eig workers`: the sides of the factors this worker eigendecomposes.
    eigen: Option<Vec<usize>>,
}

impl<'a> CodedWorker<'a> {
    /// Worker index `w` (rank w + 1) of `code` serving `shard`.
    pub fn new(model: &'a dyn Model, shard: Shard, code: &dyn GradientCode, w: usize) -> Self {
        let m = code.split();
        let split = (m > 1).then(|| SplitEncoder {
            m,
            len: crate::coding::piece_len(model.dim(), m),
            coefs: code.coefficients(w).to_vec(),
            grad: vec![0.0; model.dim() + 1],
        });
        CodedWorker {
            model,
            order: shard.order(w).collect(),
            shard,
            ws: Workspace::default(),
            split,
            sender: None,
            local: None,
            announce: None,
            piece: Vec::new(),
            kfac_len: 0,
            stored: None,
            eigen: None,
        }
    }

    /// K-FAC `--kfac-eig workers`: answer eigen rounds ([`Ask::Eigen`]) for worker `w`'s
    /// share of the factors of sides `sides` among `workers` ([`kfac::assign_eigen`], the plan
    /// rank 0 makes).
    pub fn with_eigen(mut self, sides: &[usize], workers: usize, w: usize) -> Self {
        let plan = kfac::assign_eigen(sides, workers);
        let mine = plan
            .get(w)
            .map_or_else(Vec::new, |p| p.iter().map(|&i| sides[i]).collect());
        self.eigen = Some(mine);
        self
    }

    /// How this worker reads a post's phase: by the s it switches to under `--adapt`, as the
    /// fixed code's gradient, factor and eigen posts otherwise ([`Phases`]).
    fn phases(&self) -> Phases {
        match &self.stored {
            Some((stored, _)) => Phases::Adapt {
                max_s: stored.max_s(),
            },
            None => Phases::Fixed,
        }
    }

    /// The packed values of this worker's eigen posts.
    fn eigen_params_len(&self) -> Option<usize> {
        let mine = self.eigen.as_ref()?;
        Some(mine.iter().map(|&n| kfac::tri(n)).sum())
    }

    /// `--adapt`: answer a post of phase s with the code of s, cutting its shard from
    /// `stored` when s changes; `s` is the s of the shard given to [`Self::new`].
    pub fn adaptive(mut self, stored: StoredShard, s: usize) -> Self {
        self.stored = Some((stored, s));
        self
    }

    /// `--adapt`: the shard of the post's s (its phase), when it is not the one in force.
    fn switch_to(&mut self, s: usize, w: usize) -> std::result::Result<(), CommError> {
        let Some((stored, current)) = &mut self.stored else {
            return Ok(());
        };
        if *current != s {
            self.shard = stored
                .shard(s)
                .map_err(|e| CommError::Fatal(e.to_string()))?;
            self.order = self.shard.order(w).collect();
            *current = s;
        }
        Ok(())
    }

    /// K-FAC: answer phase-1 posts with the coded factor sums (`len` packed values) appended.
    pub fn with_kfac(mut self, len: usize) -> Self {
        self.kfac_len = len;
        self
    }

    /// Send results on the support of this worker's rows (`messages` support, or auto when
    /// the support is at most half the columns): re-index its rows to the columns they touch
    /// (in every chunk: the union of the chunks' supports) and build `kind`'s model on them.
    /// Dense features have every column as support. Needs stacked chunks and no minibatch
    /// draws (the configuration refuses --batch and --split with it).
    pub fn messages(mut self, messages: Messages, kind: ModelKind) -> Result<Self> {
        if messages == Messages::Dense {
            return Ok(self);
        }
        let n_cols = self.model.dim() - 1;
        let mut datasets = Vec::with_capacity(self.shard.chunks.len());
        for c in &mut self.shard.chunks {
            match &mut c.rows {
                Rows::Stacked { data, .. } if self.shard.draws.is_none() => datasets.push(data),
                _ => {
                    return Err(Error::Check(
                        "internal: --messages support needs stacked chunks without draws".into(),
                    ))
                }
            }
        }
        let Some(task) = datasets.first().map(|d| d.task) else {
            return Err(Error::Check("internal: a worker without rows".into()));
        };
        let mut columns: Vec<u32> = Vec::new();
        for data in &datasets {
            match &data.x {
                Features::Sparse(x) => columns.extend(x.support()),
                Features::Dense(_) => columns.extend(0..n_cols as u32),
            }
        }
        columns.sort_unstable();
        columns.dedup();
        if messages == Messages::Auto && 2 * columns.len() > n_cols {
            self.announce = Some(Vec::new());
            return Ok(self);
        }
        for data in datasets {
            if let Features::Sparse(x) = &data.x {
                data.x = Features::Sparse(x.on_support(&columns)?);
            }
        }
        let model = crate::model::build(kind, &[], &[], columns.len(), None, task)?;
        let dim = model.dim();
        self.piece = vec![0.0; dim + 1];
        self.local = Some(OnSupport {
            w: vec![0.0; dim],
            model,
            columns: columns.clone(),
        });
        self.announce = Some(columns);
        Ok(self)
    }

    /// Compress every message with `c` (nothing for `none`), with one error-feedback residual
    /// per chunk when `error_feedback`; QSGD's draws are keyed by `seed`.
    pub fn compressing(mut self, c: Compressor, error_feedback: bool, seed: u64) -> Self {
        if c.is_none() {
            return self;
        }
        let len = self.coded_len();
        self.sender = Some(Sender {
            c,
            len,
            feedback: error_feedback.then(|| vec![ErrorFeedback::default(); self.shard.n_chunks()]),
            warm: vec![Vec::new(); self.shard.n_chunks()],
            coded: vec![0.0; len + 1],
            seed,
        });
        self
    }

    /// Values of the coded vector (⌈dim/m⌉; dim for one-pass codes).
    fn coded_len(&self) -> usize {
        self.split.as_ref().map_or(self.model.dim(), |sp| sp.len)
    }

    /// Values of one result message for `ask`: the coded vector (compressed when `compressed`
    /// and a compressor is set) and the loss, and for a factor post the coded K-FAC factor sums.
    fn result_len(&self, ask: Ask, compressed: bool) -> usize {
        if let Some(l) = &self.local {
            return l.model.dim() + 1;
        }
        let len = self.coded_len();
        let factors = if ask == Ask::Factors {
            self.kfac_len
        } else {
            0
        };
        let sent = match &self.sender {
            Some(sd) if compressed => sd.c.wire_len(len),
            _ => len,
        };
        sent + 1 + factors
    }

    /// The coded message of chunk `c` at `w` into `out` (coded vector, then the loss).
    fn code_chunk(
        model: &dyn Model,
        ws: &mut Workspace,
        split: &mut Option<SplitEncoder>,
        w: ArrayView1<f64>,
        c: &Chunk,
        out: &mut [f64],
    ) -> Result<(), CommError> {
        match (&c.rows, split) {
            (Rows::Stacked { data, row_weights }, _) => {
                let (x, y, rw) = (&data.x, data.y.view(), Some(row_weights.view()));
                let (head, factors) = out.split_at_mut(model.dim() + 1);
                Self::gradient(model, ws, w, x, y, rw, head);
                if !factors.is_empty() {
                    model.kfac_factors_into(w, x, y, rw, ws, factors);
                }
            }
            (Rows::Apart(_), Some(sp)) => sp.encode(model, ws, w, c, out),
            (Rows::Apart(_), None) => {
                return Err(CommError::Fatal(
                    "internal: a split shard without its encoder".into(),
                ))
            }
        }
        Ok(())
    }

    fn gradient(
        model: &dyn Model,
        ws: &mut Workspace,
        w: ArrayView1<f64>,
        x: &Features,
        y: ArrayView1<f64>,
        weights: Option<ArrayView1<f64>>,
        buf: &mut [f64],
    ) {
        let dim = model.dim();
        let (g, loss) = buf.split_at_mut(dim);
        loss[0] = model.gradient_into(w, x, y, weights, ws, ArrayViewMut1::from(g));
    }
}

impl WorkerJob for CodedWorker<'_> {
    fn support(&self) -> Option<Vec<u32>> {
        self.announce.clone()
    }
    fn accepts(&self, phase: usize, len: usize) -> bool {
        let on_support = self.local.as_ref().is_some_and(|l| len == l.w.len());
        let dim = self.model.dim();
        match self.phases().ask(phase) {
            Some(Ask::Gradient) => len == dim || on_support,
            Some(Ask::Factors) => self.kfac_len > 0 && len == dim,
            Some(Ask::Eigen) => self.eigen_params_len() == Some(len),
            Some(Ask::Code(s)) => {
                len == dim
                    && self
                        .stored
                        .as_ref()
                        .is_some_and(|(st, _)| st.code(s).is_some())
            }
            None => false,
        }
    }
    fn max_params_len(&self) -> usize {
        self.model.dim().max(self.eigen_params_len().unwrap_or(0))
    }
    fn serve<T: WorkerTransport>(
        &mut self,
        params: &[f64],
        out: &mut Responder<'_, T>,
    ) -> std::result::Result<(), CommError> {
        // The phase number means what the job's mode says ([`Phases`]); `accepts` has
        // refused every number the mode does not use.
        let Some(ask) = self.phases().ask(out.phase()) else {
            return Err(CommError::Fatal(format!(
                "internal: a post of phase {} the job does not use",
                out.phase()
            )));
        };
        if ask == Ask::Eigen {
            let mine = self.eigen.as_deref().unwrap_or(&[]);
            let len = kfac::eigen_result_len(mine.iter().copied()).max(1);
            return out.send_result(0, len, |buf| {
                if mine.is_empty() {
                    buf.fill(0.0);
                    return Ok(());
                }
                kfac::eigen_packed(params, mine, buf).map_err(CommError::Fatal)
            });
        }
        if let Some((stored, _)) = &mut self.stored {
            // --adapt: take in partitions read in the background, start reading those rank 0
            // asks for, and say in this round's results which s are held.
            let fatal = |e: Error| CommError::Fatal(e.to_string());
            stored.poll(false).map_err(fatal)?;
            stored.prepare(usize::try_from(out.prepare()).unwrap_or(usize::MAX));
        }
        if let Ask::Code(s) = ask {
            self.switch_to(s, out.rank() - 1)?;
        }
        if let Some((stored, _)) = &self.stored {
            out.set_held(stored.held_s() as u64);
        }
        // A tree-decode member sending to its leader, or a leader's own result: uncompressed
        // (the leader compresses its combination, `comm::group`).
        let combined = out.combined();
        let len = self.result_len(ask, !combined);
        let n_chunks = self.shard.n_chunks();
        let t = out.iteration();
        if let Some(l) = &mut self.local {
            l.gather(params);
        }
        let (model, w) = match &self.local {
            Some(l) => (l.model.as_ref(), ArrayView1::from(&l.w[..])),
            None => (self.model, ArrayView1::from(params)),
        };
        for (i, &q) in self.order.iter().enumerate() {
            // Newer parameters waiting (rank 0 decoded this iteration without us): skip the rest.
            if i > 0 && out.superseded() {
                for &skip in &self.order[i..] {
                    out.abandon(skip);
                }
                return Ok(());
            }
            let key = NoiseKey {
                seed: self.sender.as_ref().map_or(0, |sd| sd.seed),
                iteration: t,
                rank: out.rank(),
                part: q,
            };
            let (ws, split) = (&mut self.ws, &mut self.split);
            let Shard { chunks, draws } = &mut self.shard;
            let sender = &mut self.sender;
            out.send_result(q, len, |buf| {
                let c = match draws {
                    Some(d) => d.fill(&chunks[0], q, t),
                    None => &chunks[q],
                };
                match sender {
                    Some(_) if combined => Self::code_chunk(model, ws, split, w, c, buf),
                    None => Self::code_chunk(model, ws, split, w, c, buf),
                    Some(sd) => {
                        Self::code_chunk(model, ws, split, w, c, &mut sd.coded)?;
                        sd.send(key, buf)
                    }
                }
            })?;
        }
        if out.wants_check() {
            // The uncoded gradient of every held sub-partition (partition j, chunk q), as piece
            // j · chunks + q, full length.
            let check_len = self.model.dim() + 1;
            let chunks = match &self.shard.draws {
                Some(d) => &d.chunks,
                None => &self.shard.chunks,
            };
            for (q, c) in chunks.iter().enumerate() {
                for (i, (j, _)) in c.parts.iter().enumerate() {
                    let Some((x, y)) = c.partition(i) else {
                        continue;
                    };
                    let (ws, piece, local) = (&mut self.ws, &mut self.piece, &self.local);
                    out.send_check(j * n_chunks + q, check_len, |buf| {
                        match local {
                            Some(l) => {
                                Self::gradient(model, ws, w, &x, y, None, piece);
                                l.scatter(piece, buf);
                            }
                            None => Self::gradient(model, ws, w, &x, y, None, buf),
                        }
                        Ok(())
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Rank 0's rule: every chunk's responder set is decodable by the code.
struct CodeRule<'a>(&'a dyn GradientCode);

impl Rule for CodeRule<'_> {
    fn decodable(&self, round: &Round) -> bool {
        round.responders.iter().all(|set| self.0.is_decodable(set))
    }
}

/// The decodings of every chunk of one iteration, combined.
#[derive(Debug, Clone, Copy)]
struct Combined {
    /// Every chunk decoded exactly (and nothing stale folded in).
    exact: bool,
    /// √(Σ_q err(F_q)²).
    residual: f64,
    /// Largest cond(B_F) over the chunks.
    condition: f64,
    /// Σ a² over every decoding weight used (chunks, pieces, responders): with independent
    /// compression errors of variance σ² per message, E‖ĝ − ĝ_uncompressed‖² ≤ Σ a² · max σ².
    weight_sq: f64,
}

/// Rank 0's side of gradient coding over transport `T`.
pub struct CodedGradients<T: Transport> {
    c: Collector<T>,
    decoder: Decoder,
    dim: usize,
    chunks: usize,
    /// err(F_q) of the last decoding, per chunk (NaN: nobody delivered that chunk).
    chunk_residual: Vec<f64>,
    /// Scratch of the oracle: the finished workers per chunk.
    oracle_sets: Vec<Vec<usize>>,
    schedule: StragglerSchedule,
    check_wait: Duration,
    shutdown: Duration,
    params: Vec<f64>,
    /// `--compress` (none: messages are decoded as they are).
    compress: Compressor,
    /// Values of a coded vector before compression (⌈dim/m⌉).
    coded_len: usize,
    /// Per worker: its decompressed message (or, at a check, its uncompressed one) and loss.
    dense: Vec<Vec<f64>>,
    /// ‖ĝ − ĝ_uncompressed‖/‖ĝ_uncompressed‖ at the last check (NaN: none).
    compress_err: f64,
    /// Per worker, the columns its results carry (`--messages`; empty: the full vector).
    supports: Vec<Vec<u32>>,
    /// `--adapt`: the window, the adapter and the other s's decoders.
    adapt: Option<Adaptation>,
    /// `--decode-tree G` (the leaders' results end with their member mask).
    tree: Option<usize>,
    /// `--batch B`: rows per partition, for the gradient noise scale of an uncoded run.
    batch: Option<usize>,
    /// Scratch of the noise scale: the sum of the partition gradients.
    gns_sum: Vec<f64>,
    /// `--decode-tree`: per group, whether its members were told to send to rank 0 (their
    /// leader owed a round for longer than `deadline`).
    fallen: Vec<bool>,
    deadline: Duration,
    /// K-FAC `--kfac-eig workers`: each worker's factors ([`kfac::assign_eigen`]).
    eigen: Option<Vec<Vec<usize>>>,
}

/// Rank 0's rule of an eigen round: every worker with factors assigned has answered.
struct EigenRule<'a>(&'a [Vec<usize>]);

impl Rule for EigenRule<'_> {
    fn decodable(&self, round: &Round) -> bool {
        (self.0.iter().zip(&round.parts_in)).all(|(mine, &n)| mine.is_empty() || n > 0)
    }
}

/// Values of worker `w`'s eigen result: its factors' eigenvalues and bases, at least 1 (a
/// worker without factors answers one 0, so that every worker answers the round).
fn eigen_len(plan: &[Vec<usize>], sides: &[usize], w: usize) -> usize {
    let mine = plan[w].iter().map(|&i| sides[i]);
    kfac::eigen_result_len(mine).max(1)
}

impl<T: Transport> CodedGradients<T> {
    /// Rank 0 of `cfg` with `code`, for a model of `dim` parameters, over `transport`.
    /// `compress` is `cfg.compress` set for the model ([`for_model`]); `kfac_len` the packed
    /// K-FAC factor values phase-1 results append (0: no K-FAC).
    pub fn new(
        transport: T,
        cfg: &RunConfig,
        code: Box<dyn GradientCode>,
        dim: usize,
        compress: Compressor,
        kfac_len: usize,
    ) -> Self {
        let n = code.n_workers();
        let chunks = cfg.chunks;
        let coded_len = crate::coding::piece_len(dim, code.split());
        if compress.is_biased() && !cfg.error_feedback {
            log::warn!(
                "[rank 0] --compress {compress} is biased: without --error-feedback the decoded gradient is biased"
            );
        }
        // With --decode-tree a leader's combined result carries its member mask after the loss;
        // the members send to their leaders, not here.
        let tree = cfg.decode_tree;
        let is_leader = |w: usize| tree.map_or(true, |g| w % g == 0);
        let mut result_len: Vec<Vec<usize>> = vec![(0..n)
            .map(|w| compress.wire_len(coded_len) + 1 + usize::from(tree.is_some() && is_leader(w)))
            .collect()];
        // --adapt: phase s is the coded gradient of the code with s (same length).
        for _ in 0..cfg.adapt_max_s.unwrap_or(0) {
            result_len.push(result_len[0].clone());
        }
        if kfac_len > 0 {
            result_len.push(vec![coded_len + 1 + kfac_len; n]);
        }
        let spec = CollectorSpec {
            workers: n,
            parts: chunks,
            result_len,
            check_len: dim + 1,
            deadline: cfg.job.deadline(),
            max_wait: cfg.job.max_wait(),
            on_deadline: cfg.on_deadline,
            reuse_stale: cfg.reuse_stale,
            overlap: chunks > 1,
            compressed: (!compress.is_none()).then_some((compress, coded_len)),
            relayed: tree.map_or_else(Vec::new, |_| (0..n).map(|w| !is_leader(w)).collect()),
        };
        let j = &cfg.job;
        CodedGradients {
            c: Collector::new(transport, spec),
            decoder: Decoder::new(code),
            dim,
            chunks,
            chunk_residual: vec![f64::NAN; chunks],
            oracle_sets: vec![Vec::with_capacity(n); chunks],
            schedule: j.schedule(),
            check_wait: Duration::from_secs_f64(
                (2.0 * j.deadline_ms / 1e3)
                    .max(2.0)
                    .min(j.max_wait_ms / 1e3),
            ),
            shutdown: j.shutdown_bound(),
            params: vec![0.0; dim],
            compress,
            coded_len,
            dense: if compress.is_none() {
                Vec::new()
            } else {
                vec![vec![0.0; coded_len + 1]; n]
            },
            compress_err: f64::NAN,
            supports: vec![Vec::new(); n],
            adapt: None,
            tree,
            batch: cfg.batch,
            gns_sum: Vec::new(),
            fallen: tree.map_or_else(Vec::new, |g| vec![false; n / g.max(1)]),
            deadline: cfg.job.deadline(),
            eigen: None,
        }
    }

    /// `--decode-tree` fallback (`comm::group`): a leader that has owed rank 0 a round for
    /// longer than the deadline is taken as silent, and its group's members are told to send
    /// their results to rank 0 from round `next` on; rank 0 then decodes that group from them
    /// (`coding::RootCode`) and posts nothing to the leader. When the leader owes nothing any
    /// more (its late result came), the members are told to send to it again from round `next`
    /// and it is posted that round with them. Returns the groups fallen back after this.
    fn fall_back_silent_groups(&mut self, next: u64) -> usize {
        let Some(g) = self.tree else {
            return 0;
        };
        for grp in 0..self.fallen.len() {
            let leader = grp * g;
            let owed = self.c.owed_for(leader);
            if self.fallen[grp] && owed.is_none() {
                self.fallen[grp] = false;
                let members: Vec<usize> = (leader + 2..leader + g + 1).collect();
                log::warn!(
                    "[rank 0] group leader rank {} answers again: its members {members:?} send to it from iteration {next}",
                    leader + 1
                );
                for m in 1..g {
                    self.c.rejoin(leader + m, next);
                }
                self.c.hold(leader, false);
                continue;
            }
            if self.fallen[grp] || !owed.is_some_and(|d| d > self.deadline) {
                continue;
            }
            self.fallen[grp] = true;
            self.c.hold(leader, true);
            let members: Vec<usize> = (leader + 2..leader + g + 1).collect();
            log::warn!(
                "[rank 0] group leader rank {} silent for {:.0} ms (deadline {:.0} ms): its members {members:?} send to rank 0 from iteration {next}",
                leader + 1,
                owed.map_or(0.0, |d| d.as_secs_f64() * 1e3),
                self.deadline.as_secs_f64() * 1e3
            );
            for m in 1..g {
                self.c.redirect(leader + m, next);
            }
        }
        self.fallen.iter().filter(|&&f| f).count()
    }

    /// K-FAC `--kfac-eig workers`: spread the eigendecompositions of factors of sides `sides`
    /// over the workers ([`kfac::assign_eigen`]; the workers make the same plan).
    pub fn with_eigen(mut self, sides: &[usize]) -> Result<Self> {
        let plan = kfac::assign_eigen(sides, self.c.workers());
        let lens = (0..plan.len())
            .map(|w| eigen_len(&plan, sides, w))
            .collect();
        self.c.set_result_len(self.phase(Ask::Eigen)?, lens);
        self.eigen = Some(plan);
        Ok(self)
    }

    /// How rank 0 numbers its posts: by the s in force under `--adapt`, as the fixed code's
    /// gradient, factor and eigen posts otherwise ([`Phases`]; the workers read them alike).
    fn phases(&self) -> Phases {
        match &self.adapt {
            Some(a) => Phases::Adapt { max_s: a.max_s() },
            None => Phases::Fixed,
        }
    }

    /// The phase number of a post asking `ask`.
    fn phase(&self, ask: Ask) -> Result<usize> {
        self.phases().number(ask).ok_or_else(|| {
            Error::Check(format!(
                "internal: a {ask:?} post in the {:?} phase numbering",
                self.phases()
            ))
        })
    }

    /// `--adapt`: switch s by `adapt`'s decisions (the engine's code is the one it starts at).
    pub fn adaptive(mut self, adapt: Adaptation) -> Self {
        self.adapt = Some(adapt);
        self
    }

    /// `--adapt`: after iteration `t`, record the round's and the late arrivals' samples and
    /// decide when due; the s in force at `t` and a switch's predicted gain go to `rec`.
    fn adapt_after(
        &mut self,
        t: u64,
        late: &[LateArrival],
        rec: &mut IterationRecord,
    ) -> Result<()> {
        let Some(a) = &mut self.adapt else {
            return Ok(());
        };
        rec.set(Metric::CodeS, a.current() as f64);
        let deadline = a.deadline_ms();
        rec.set(Metric::AdaptDeadlineMs, deadline.unwrap_or(f64::NAN));
        a.observe(self.c.round(), late);
        let decided = a.after(t, &mut self.decoder, self.c.stored_s())?;
        self.c.set_prepare(a.prepare_target() as u64);
        if let Some(new) = a.deadline_ms().filter(|&new| Some(new) != deadline) {
            log::info!(
                "[rank 0] --adapt-deadline after iteration {t}: deadline {:.3} -> {new:.3} ms",
                deadline.unwrap_or(f64::NAN)
            );
            self.c.set_deadline(Duration::from_secs_f64(new / 1e3));
        }
        if let Some(d) = decided {
            if d.switches() {
                log::info!(
                    "[rank 0] --adapt after iteration {t}: s {} -> {} ({})",
                    d.old_s,
                    d.new_s,
                    d.reason
                );
                rec.set(Metric::AdaptNextS, d.new_s as f64);
                rec.set(Metric::AdaptGain, d.gain);
            } else {
                log::debug!("[rank 0] --adapt after iteration {t}: {}", d.reason);
            }
        }
        Ok(())
    }

    fn code(&self) -> &dyn GradientCode {
        self.decoder.code()
    }

    /// Receive every worker's support once, before the first round (`--messages
    /// support|auto`): its results then carry the gradient on those columns, the intercept and
    /// the loss, and are scattered while decoding.
    pub fn receive_supports(&mut self, wait: Duration) -> Result<()> {
        self.supports = self.c.receive_supports(self.dim - 1, 2, wait)?;
        Ok(())
    }

    /// The α–β link probe ([`crate::comm::probe`]), once, before the first round.
    pub fn probe_links(&mut self) -> Result<crate::comm::probe::LinkProbe> {
        let plan = crate::comm::probe::ProbePlan::startup();
        Ok(crate::comm::probe::probe_links(&mut self.c, &plan)?)
    }

    /// Decode every chunk from its responders into `g` (gradient sum and loss sum); `None` when
    /// nobody answered at all. Weighted sums run in worker order, so the result depends only on
    /// the responder sets, not on arrival order.
    fn decode_into(&mut self, g: &mut Array1<f64>) -> Result<Option<Combined>> {
        let round = self.c.round();
        if round.responders.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        g.fill(0.0);
        let k = self.decoder.code().n_partitions();
        let (mut exact, mut res2, mut cond, mut weight_sq) = (true, 0.0, 0.0f64, 0.0);
        for q in 0..self.chunks {
            let set = &round.responders[q];
            if set.is_empty() {
                exact = false;
                res2 += k as f64;
                self.chunk_residual[q] = f64::NAN;
                continue;
            }
            // Borrowed from the cache (no copy of the weights on the hot path).
            let d = self.decoder.decode(set)?;
            if self.supports.iter().any(|s| !s.is_empty()) {
                scatter_add(d, |w| self.c.payload(w, q), &self.supports, g);
            } else if self.compress.is_none() {
                // A leader's member mask is not part of the sum (a member's own result, after
                // its group fell back, has none).
                let tree = self.tree;
                let msg = |w: usize| {
                    let m = self.c.payload(w, q);
                    let tail = usize::from(tree.is_some_and(|g| w % g == 0));
                    &m[..m.len() - tail]
                };
                accumulate(d, msg, self.dim, g);
            } else {
                for &w in &d.responders {
                    // A leader's compressed combination ends with its exact member mask.
                    let msg = self.c.payload(w, q);
                    let tail = usize::from(self.tree.is_some_and(|g| w % g == 0));
                    let (wire, loss) = msg[..msg.len() - tail].split_at(msg.len() - tail - 1);
                    let dense = &mut self.dense[w];
                    self.compress
                        .decompress(wire, &mut dense[..self.coded_len])
                        .map_err(|e| CommError::Protocol {
                            rank: w + 1,
                            reason: e.to_string(),
                        })?;
                    dense[self.coded_len] = loss[0];
                }
                accumulate(d, |w| &self.dense[w], self.dim, g);
            }
            weight_sq += d.weights.iter().map(|a| a * a).sum::<f64>();
            exact &= d.exact;
            res2 += d.residual * d.residual;
            cond = cond.max(d.condition);
            self.chunk_residual[q] = d.residual;
        }
        Ok(Some(Combined {
            // With a gradient of the previous iteration folded in (--reuse-stale) the decode is
            // exact for the messages, not the gradient at the current parameters.
            exact: exact && round.stale == 0,
            residual: res2.sqrt(),
            condition: cond,
            weight_sq,
        }))
    }

    /// The gradient (and loss) rank 0 would have decoded from uncompressed messages at the
    /// check: each responder's coded message rebuilt from the check pieces (the uncoded
    /// gradients of its partitions) with the code's coefficients, decoded with this iteration's
    /// weights. None when a check piece is missing.
    fn uncompressed_decode(&mut self) -> Result<Option<Array1<f64>>> {
        let (chunks, len) = (self.chunks, self.coded_len);
        let k = self.decoder.code().n_partitions();
        if (0..k * chunks).any(|i| self.c.check(i).is_none()) {
            return Ok(None);
        }
        let mut g = Array1::<f64>::zeros(self.dim + 1);
        for q in 0..chunks {
            let set = self.c.round().responders[q].clone();
            let code = self.decoder.code();
            let m = code.split();
            for &w in &set {
                let dense = &mut self.dense[w];
                dense.fill(0.0);
                let held = code.assignment(w).iter();
                for (&j, b) in held.zip(code.coefficients(w).chunks(m)) {
                    if let Some(piece) = self.c.check(j * chunks + q) {
                        add_coded(dense, b, piece, len);
                    }
                }
            }
            if set.is_empty() {
                continue;
            }
            let d = self.decoder.decode(&set)?;
            accumulate(d, |w| &self.dense[w], self.dim, &mut g);
        }
        Ok(Some(g))
    }

    /// The oracle: the earliest moment the workers' own finish times (per chunk) formed a
    /// decodable set for every chunk. Reuses its scratch: no allocation.
    fn oracle(&mut self) -> f64 {
        let mut fin = self.c.round().finish.clone();
        fin.retain(|(f, _, _)| f.is_finite());
        fin.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sets = &mut self.oracle_sets;
        sets.iter_mut().for_each(Vec::clear);
        let code = self.decoder.code();
        for &(f, w, q) in &fin {
            if let Err(p) = sets[q].binary_search(&w) {
                sets[q].insert(p, w);
            }
            if sets.iter().all(|set| code.is_decodable(set)) {
                return f;
            }
        }
        f64::NAN
    }

    /// `--decode-tree`: the member mask leader `w`'s combined result ends with (bit m: the
    /// m-th worker of its group is in the combination).
    fn member_mask(&self, w: usize) -> u64 {
        self.c.payload(w, 0).last().copied().unwrap_or(0.0) as u64
    }

    /// Workers whose results reached the decode: with --decode-tree, the members in the
    /// combinations of the leaders that answered (their masks, logged per leader), and the
    /// members of a fallen-back group that answered rank 0 themselves ([`Self::parts_decoded`]).
    fn responders(&self) -> usize {
        let round = self.c.round();
        let Some(g) = self.tree else {
            return round.complete_responders();
        };
        for &w in round.responders.iter().flatten().filter(|&&w| w % g == 0) {
            log::debug!(
                "[rank 0] iteration {}: group of rank {} decoded from members {:#b}",
                round.iteration,
                w + 1,
                self.member_mask(w)
            );
        }
        self.parts_decoded().iter().filter(|&&p| p > 0).count()
    }

    /// Parts of each worker's share that reached the decode this round: its on-time parts;
    /// with --decode-tree, a member (which rank 0 never hears from directly) has its one part
    /// in when the on-time combination of its leader includes it (bit m of the leader's member
    /// mask for the m-th worker of the group), none otherwise.
    fn parts_decoded(&self) -> Vec<usize> {
        let round = self.c.round();
        let mut parts = round.parts_in.clone();
        let Some(g) = self.tree else {
            return parts;
        };
        for &leader in round.responders.iter().flatten().filter(|&&w| w % g == 0) {
            let mask = self.member_mask(leader);
            for m in 1..g {
                if let Some(p) = parts.get_mut(leader + m) {
                    *p = usize::from((mask >> m) & 1 == 1);
                }
            }
        }
        parts
    }

    /// Record the iteration's decode and per-worker metrics.
    fn record(&mut self, it: &mut Iteration<'_>, d: Option<Combined>, oracle: f64, decode_s: f64) {
        let round = self.c.round();
        let rec = &mut *it.rec;
        rec.set(Metric::DecodeS, decode_s);
        rec.set(Metric::OracleS, oracle);
        rec.set(Metric::NResponders, self.responders() as f64);
        rec.set(Metric::Stale, f64::from(round.stale));
        if let Some(d) = d {
            rec.set(Metric::DecodeResidual, d.residual);
            rec.set(Metric::Cond, d.condition);
            // The guarantee of approximate codes (expander: (λ/d)·√(ns/(n−s))), worst chunk.
            let bound = round
                .responders
                .iter()
                .filter_map(|set| self.decoder.code().error_bound(set))
                .fold(f64::NAN, f64::max);
            rec.set(Metric::ErrorBound, bound);
            if !self.compress.is_none() {
                rec.set(Metric::DecodeWeightSq, d.weight_sq);
            }
        }
        // A --decode-tree member's part counts through its leader's mask (its arrival and
        // compute time stay NaN: they reached its leader, not rank 0).
        let parts = self.parts_decoded();
        for (w, &p) in parts.iter().enumerate() {
            let stale = round.stale_age[w] == 1.0;
            rec.worker_mut(WorkerMetric::ArrivalS)[w] = round.arrival_s[w];
            rec.worker_mut(WorkerMetric::ComputeS)[w] = round.compute_s[w];
            rec.worker_mut(WorkerMetric::Chunks)[w] = (p - usize::from(stale)) as f64;
            rec.worker_mut(WorkerMetric::StaleAge)[w] = round.stale_age[w];
            // What the worker says it injected for the gradient it sent (a `slow` worker's
            // busy-spin included): a worker busy with an earlier iteration never applied this
            // one's delay. NaN = no message this iteration, inf = failed.
            let failed = self.schedule.failed(it.t, w + 1);
            rec.worker_mut(WorkerMetric::InjectedS)[w] = if failed {
                f64::INFINITY
            } else {
                round.injected_s[w]
            };
            rec.worker_mut(WorkerMetric::PlannedS)[w] = if failed {
                f64::INFINITY
            } else {
                self.schedule.delay_s(it.t, w + 1)
            };
        }
    }

    /// An uncoded `--batch` run: this iteration's |G|² and tr Σ estimates from the responders'
    /// partition gradients (`sim::efficiency::noise_estimates`) into `rec`. Nothing for any
    /// other run: a coded message is not one partition's gradient, and a compressed, chunked,
    /// on-support or relayed one is not the plain vector either.
    fn record_noise_scale(&mut self, rec: &mut IterationRecord) {
        let Some(b) = self.batch else {
            return;
        };
        if self.chunks != 1
            || !self.compress.is_none()
            || self.tree.is_some()
            || self.adapt.is_some()
            || self.supports.iter().any(|s| !s.is_empty())
        {
            return;
        }
        let round = self.c.round();
        let set = &round.responders[0];
        let code = self.decoder.code();
        let plain = |w: usize| code.assignment(w).len() == 1 && code.coefficients(w) == [1.0];
        if round.stale > 0 || !set.iter().all(|&w| plain(w)) {
            return;
        }
        self.gns_sum.clear();
        self.gns_sum.resize(self.dim, 0.0);
        let mut sum_sq = 0.0;
        for &w in set {
            let Some(g) = self.c.payload(w, 0).get(..self.dim) else {
                return;
            };
            sum_sq += g.iter().map(|x| x * x).sum::<f64>();
            for (t, x) in self.gns_sum.iter_mut().zip(g) {
                *t += x;
            }
        }
        let total_sq = self.gns_sum.iter().map(|x| x * x).sum::<f64>();
        if let Some((g2, trace)) =
            crate::sim::efficiency::noise_estimates(sum_sq, total_sq, set.len(), b)
        {
            rec.set(Metric::GnsGradSq, g2);
            rec.set(Metric::GnsTrace, trace);
        }
    }

    /// Compare the decoded gradient `ghat` with the exact one from the check pieces.
    fn check(&mut self, d: Option<Combined>, ghat: &Array1<f64>, t: u64) -> Result<Check> {
        let start = Instant::now();
        self.c.await_checks(self.check_wait)?;
        self.compress_err = f64::NAN;
        let uncompressed = if self.compress.is_none() {
            None
        } else {
            self.uncompressed_decode()?
        };
        let (attrs, passed, rel_err) = match &uncompressed {
            Some(g_unc) => self.check_compressed(d, ghat, g_unc, t),
            None => self.check_attrs(d, ghat, t),
        };
        self.c.end_checks();
        Ok(Check {
            attrs,
            passed,
            rel_err,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// `/validation` attributes, verdict and relative error of the check.
    fn check_attrs(
        &self,
        d: Option<Combined>,
        ghat: &Array1<f64>,
        t: u64,
    ) -> (Vec<(String, AttrValue)>, bool, f64) {
        let k = self.code().n_partitions();
        let pieces = k * self.chunks;
        let missing: Vec<usize> = (0..pieces)
            .filter(|&i| self.c.check(i).is_none())
            .map(|i| i / self.chunks)
            .collect();
        // With --decode-tree, members decoded through their leaders count as responders.
        let parts = self.parts_decoded();
        let n = parts.len();
        let responders: Vec<usize> = (0..n)
            .filter(|&w| parts[w] == self.chunks)
            .map(|w| w + 1)
            .collect();
        let mut attrs: Vec<(String, AttrValue)> = vec![("iteration".into(), AttrValue::U64(t))];
        let Some(d) = d else {
            attrs.push(("check".into(), AttrValue::Str("FAILED".into())));
            attrs.push((
                "reason".into(),
                AttrValue::Str("no decoding at the checked iteration".into()),
            ));
            return (attrs, false, f64::NAN);
        };
        let not_decoded: Vec<usize> = (1..=n).filter(|r| !responders.contains(r)).collect();
        attrs.push((
            "responders".into(),
            AttrValue::Str(format!("{responders:?}")),
        ));
        // Who was left out of the decoding (late or failed).
        attrs.push((
            "not_decoded".into(),
            AttrValue::Str(format!("{not_decoded:?}")),
        ));
        let missed = self.missed_check();
        attrs.push(("missed_check".into(), AttrValue::Str(format!("{missed:?}"))));
        if !missing.is_empty() {
            let mut parts = missing;
            parts.dedup();
            attrs.push(("check".into(), AttrValue::Str("INCOMPLETE".into())));
            attrs.push((
                "reason".into(),
                AttrValue::Str(format!(
                    "partitions {parts:?} never reported; workers that sent nothing in time for the check (ranks): {missed:?}"
                )),
            ));
            log::warn!("[rank 0] gradient check incomplete: partitions {parts:?} missing; ranks {missed:?} sent nothing in time");
            return (attrs, false, f64::NAN);
        }
        let (rel, diff, norm, bound) = self.compare(ghat, k);
        let passed = if d.exact {
            rel <= 1e-8
        } else {
            diff <= bound * (1.0 + 1e-9) + 1e-12 * norm
        };
        let verdict = if passed { "PASSED" } else { "FAILED" };
        log::info!(
            "[rank 0] gradient check at iteration {t}: decoded vs exact gradient rel. error {rel:.3e} ({} decoding, residual {:.3e}): {verdict}",
            if d.exact { "exact" } else { "approximate" },
            d.residual
        );
        attrs.extend([
            ("check".into(), AttrValue::Str(verdict.into())),
            ("rel_err".into(), AttrValue::F64(rel)),
            ("abs_err".into(), AttrValue::F64(diff)),
            (
                "bound".into(),
                AttrValue::F64(if d.exact { 1e-8 * norm } else { bound }),
            ),
            ("exact_decoding".into(), AttrValue::Bool(d.exact)),
            ("decode_residual".into(), AttrValue::F64(d.residual)),
        ]);
        (attrs, passed, rel)
    }

    /// The check of a run with `--compress`: the code's verdict on the uncompressed decode
    /// `g_unc` (what the code must get exactly), the compression's error ‖ĝ − g_unc‖/‖g_unc‖
    /// (kept for `/metrics/compress_rel_err`), and as the relative error the true error of the
    /// gradient used, ‖ĝ − g‖/‖g‖.
    fn check_compressed(
        &mut self,
        d: Option<Combined>,
        ghat: &Array1<f64>,
        g_unc: &Array1<f64>,
        t: u64,
    ) -> (Vec<(String, AttrValue)>, bool, f64) {
        let (mut attrs, passed, _) = self.check_attrs(d, g_unc, t);
        let k = self.code().n_partitions();
        let (rel, ..) = self.compare(ghat, k);
        let dim = self.dim;
        let norm2 = |v: ArrayView1<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let diff =
            norm2((&ghat.slice(ndarray::s![..dim]) - &g_unc.slice(ndarray::s![..dim])).view());
        let norm = norm2(g_unc.slice(ndarray::s![..dim]));
        self.compress_err = if norm > 0.0 { diff / norm } else { diff };
        log::info!(
            "[rank 0] gradient check at iteration {t}: --compress {} changes the decoded gradient by {:.3e} (relative); its error against the exact gradient is {rel:.3e}",
            self.compress,
            self.compress_err
        );
        attrs.extend([
            ("compress".into(), AttrValue::Str(self.compress.to_string())),
            ("compress_rel_err".into(), AttrValue::F64(self.compress_err)),
            ("compressed_grad_rel_err".into(), AttrValue::F64(rel)),
        ]);
        (attrs, passed, rel)
    }

    /// Ranks of the workers that sent no check piece in time.
    fn missed_check(&self) -> Vec<usize> {
        (0..self.code().n_workers())
            .filter(|&w| !self.c.sent_check(w))
            .map(|w| w + 1)
            .collect()
    }

    /// (relative error, absolute error, ‖g‖, bound Σ_q err(F_q)·‖G_q‖_F) of `ghat` against the
    /// sum of the check pieces. A chunk nobody delivered is bounded by err(∅) = ‖1‖ = √k.
    fn compare(&self, ghat: &Array1<f64>, k: usize) -> (f64, f64, f64, f64) {
        let dim = self.dim;
        let mut g = Array1::<f64>::zeros(dim + 1);
        let mut chunk_frob2 = vec![0.0; self.chunks];
        for i in 0..k * self.chunks {
            if let Some(p) = self.c.check(i) {
                let p = ArrayView1::from(p);
                g += &p;
                chunk_frob2[i % self.chunks] += p.iter().take(dim).map(|v| v * v).sum::<f64>();
            }
        }
        let norm2 = |v: ArrayView1<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let diff = norm2((&ghat.slice(ndarray::s![..dim]) - &g.slice(ndarray::s![..dim])).view());
        let norm = norm2(g.slice(ndarray::s![..dim]));
        let rel = if norm > 0.0 { diff / norm } else { diff };
        let bound: f64 = self
            .chunk_residual
            .iter()
            .zip(&chunk_frob2)
            .map(|(&r, f2)| if r.is_nan() { (k as f64).sqrt() } else { r } * f2.sqrt())
            .sum();
        (rel, diff, norm, bound)
    }
}

/// `g` += the gradient (`g[..dim]`) and loss (`g[dim]`) decoded by `d` from the responders'
/// messages (`message(w)`), in worker order: one weight per whole message (dim + 1 values), or
/// for a split code m weights per message ([`add_pieces`]).
fn accumulate<'m>(
    d: &crate::coding::Decoding,
    message: impl Fn(usize) -> &'m [f64],
    dim: usize,
    g: &mut Array1<f64>,
) {
    if d.pieces() > 1 {
        return add_pieces(d, message, dim, g);
    }
    for (&w, &a) in d.responders.iter().zip(&d.weights) {
        if a != 0.0 {
            // A message without K-FAC factors fills the front of a longer `g`.
            let msg = message(w);
            g.slice_mut(ndarray::s![..msg.len()])
                .scaled_add(a, &ArrayView1::from(msg));
        }
    }
}

/// `buf` (`cols.len() + 1` values) ← `params` gathered on the columns `cols` (increasing),
/// then the intercept (the last parameter).
fn on_support(params: &[f64], cols: &[u32], buf: &mut [f64]) {
    for (b, &j) in buf.iter_mut().zip(cols) {
        *b = params[j as usize];
    }
    if let (Some(b), Some(&v)) = (buf.last_mut(), params.last()) {
        *b = v;
    }
}

/// `g` += Σ a_w · (worker w's message scattered from its support `supports[w]`: gradient on
/// those columns, intercept, loss; an empty support: the full vector), in worker order: the
/// same additions as [`accumulate`] on the scattered messages, without the zeros.
fn scatter_add<'m>(
    d: &crate::coding::Decoding,
    message: impl Fn(usize) -> &'m [f64],
    supports: &[Vec<u32>],
    g: &mut Array1<f64>,
) {
    let dim = g.len() - 1;
    for (&w, &a) in d.responders.iter().zip(&d.weights) {
        if a == 0.0 {
            continue;
        }
        let msg = message(w);
        let cols = &supports[w];
        if cols.is_empty() {
            g.scaled_add(a, &ArrayView1::from(msg));
            continue;
        }
        for (&j, &v) in cols.iter().zip(msg) {
            g[j as usize] += a * v;
        }
        g[dim - 1] += a * msg[cols.len()];
        g[dim] += a * msg[cols.len() + 1];
    }
}

/// `g` += the gradient (`g[..dim]`) and loss (`g[dim]`) decoded by `d` (split m > 1) from the
/// responders' messages (`message(w)`: ⌈dim/m⌉ values, then the loss coded with piece 0), in
/// worker order.
fn add_pieces<'m>(
    d: &crate::coding::Decoding,
    message: impl Fn(usize) -> &'m [f64],
    dim: usize,
    g: &mut Array1<f64>,
) {
    let m = d.pieces();
    let len = crate::coding::piece_len(dim, m);
    for (i, &w) in d.responders.iter().enumerate() {
        let msg = message(w);
        for u in 0..m {
            let a = d.piece(u)[i];
            if a == 0.0 {
                continue;
            }
            let lo = (u * len).min(dim);
            let hi = ((u + 1) * len).min(dim);
            g.slice_mut(ndarray::s![lo..hi])
                .scaled_add(a, &ArrayView1::from(&msg[..hi - lo]));
        }
        g[dim] += d.piece(0)[i] * msg[len];
    }
}

/// A late arrival as a results row (gradient coding: one phase, iterations are rounds).
pub(crate) fn late_row(l: &LateArrival) -> LateRow {
    LateRow {
        received_during: l.received_during,
        iteration: l.iteration,
        rank: l.rank,
        phase: l.phase,
        part: l.part,
        delay_s: l.delay_s,
        compute_s: l.compute_s,
        injected_s: l.injected_s,
        used: l.used,
    }
}

impl<T: Transport> GradientEngine for CodedGradients<T> {
    fn describe(&self) -> String {
        let code = self.code();
        let mut s = format!(
            "{} workers, code {} (k = {}, s = {})",
            code.n_workers(),
            code.kind(),
            code.n_partitions(),
            code.max_stragglers()
        );
        if let Some(summary) = code.summary() {
            s.push_str(&format!("; {summary}"));
        }
        if !self.compress.is_none() {
            s.push_str(&format!(
                "; messages compressed by {} ({} of {} values)",
                self.compress,
                self.compress.wire_len(self.coded_len),
                self.coded_len
            ));
        }
        s
    }
    fn workers(&self) -> usize {
        self.code().n_workers()
    }
    fn parts(&self) -> usize {
        self.chunks
    }
    fn code_matrix(&self) -> Array2<f64> {
        self.code().matrix()
    }

    fn spread_eigen(
        &mut self,
        t: u64,
        state: &mut KfacState,
        rec: &mut IterationRecord,
        late: &mut Vec<LateRow>,
    ) -> Result<Option<Vec<usize>>> {
        let Some(plan) = self.eigen.take() else {
            return Ok(None);
        };
        let sides = state.factor_sides();
        let packed_len = |w: usize| plan[w].iter().map(|&i| kfac::tri(sides[i])).sum();
        let phase = self.phase(Ask::Eigen)?;
        self.c.begin_each(t, phase, 0, packed_len, |w, buf| {
            state.pack_factors(&plan[w], buf);
        });
        let collected = self.c.collect_until::<Error>(
            &mut EigenRule(&plan),
            self.c.deadline(),
            Some(&INTERRUPT),
            &mut || Ok(()),
        );
        self.c.end();
        let mut missing = Vec::new();
        // A signal during the round: rank 0 eigendecomposes everything itself (the same bits
        // the workers would have sent), so the step does not depend on when it came.
        let interrupted = matches!(collected, Ok(Collected::Interrupted));
        let outcome = collected.and_then(|_| {
            if interrupted {
                return Ok(());
            }
            let parts_in = self.c.round().parts_in.clone();
            for (w, mine) in plan.iter().enumerate() {
                if parts_in[w] > 0 {
                    state
                        .install_eigen(mine, self.c.payload(w, 0))
                        .map_err(|e| Error::Check(e.to_string()))?;
                } else {
                    missing.extend_from_slice(mine);
                }
            }
            Ok(())
        });
        // The eigen round's traffic belongs to the iteration.
        let round = self.c.round();
        for (m, v) in [
            (Metric::BytesReceived, round.bytes_in),
            (Metric::MessagesReceived, f64::from(round.messages_in)),
            (Metric::BytesSent, round.bytes_out),
            (Metric::Late, f64::from(round.late)),
            (Metric::Rejected, f64::from(round.rejected)),
        ] {
            let before = rec.get(m);
            rec.set(m, if before.is_nan() { v } else { before + v });
        }
        late.extend(self.c.take_late().iter().map(late_row));
        self.eigen = Some(plan);
        outcome?;
        if interrupted {
            return Ok(None);
        }
        missing.sort_unstable();
        Ok(Some(missing))
    }

    fn compute(&mut self, it: &mut Iteration<'_>, g: &mut Array1<f64>) -> Result<Computed> {
        for (dst, &v) in self.params.iter_mut().zip(it.point.iter()) {
            *dst = v;
        }
        let pieces = if it.check {
            self.code().n_partitions() * self.chunks
        } else {
            0
        };
        // A factor post: the results also carry the coded K-FAC factor sums; under --adapt
        // the post asks for the code of the s in force.
        let ask = match &self.adapt {
            Some(a) => Ask::Code(a.current()),
            None if it.factors => Ask::Factors,
            None => Ask::Gradient,
        };
        let phase = self.phase(ask)?;
        if self.supports.iter().all(Vec::is_empty) {
            self.c.begin(it.t, phase, &self.params, pieces);
        } else {
            // Each worker gets the parameters on its support (then the intercept) only.
            let (params, supports) = (&self.params, &self.supports);
            self.c.begin_each(
                it.t,
                phase,
                pieces,
                |w| match supports[w].len() {
                    0 => params.len(),
                    cols => cols + 1,
                },
                |w, buf| match supports[w].len() {
                    0 => buf.copy_from_slice(params),
                    _ => on_support(params, &supports[w], buf),
                },
            );
        }
        let collected = {
            let rule = &mut CodeRule(self.decoder.code());
            let idle = &mut *it.idle;
            let mut on_idle = || idle();
            self.c
                .collect::<Error>(rule, Some(&INTERRUPT), &mut on_idle)
        };
        let collected = match collected {
            Ok(c) => c,
            Err(e) => {
                it.late.extend(self.c.take_late().iter().map(late_row));
                return Err(e);
            }
        };
        if collected == Collected::Interrupted {
            self.c.end();
            self.c.end_checks();
            return Ok(Computed::Interrupted);
        }
        self.c.end();
        let td = Instant::now();
        let d = self.decode_into(g)?;
        let decode_s = td.elapsed().as_secs_f64();
        let oracle = if collected == Collected::Decodable {
            self.oracle()
        } else {
            f64::NAN
        };
        self.record(it, d, oracle, decode_s);
        if d.is_some() {
            self.record_noise_scale(it.rec);
        }
        let check = if it.check {
            let ghat = g.clone();
            let c = self.check(d, &ghat, it.t)?;
            it.rec.set(Metric::CompressRelErr, self.compress_err);
            Some(c)
        } else {
            None
        };
        // Traffic of the whole iteration, the check's wait included.
        let round = self.c.round();
        it.rec.set(Metric::Late, f64::from(round.late));
        it.rec.set(Metric::Rejected, f64::from(round.rejected));
        it.rec.set(Metric::BytesReceived, round.bytes_in);
        it.rec
            .set(Metric::MessagesReceived, f64::from(round.messages_in));
        it.rec.set(Metric::BytesSent, round.bytes_out);
        let late = self.c.take_late();
        it.late.extend(late.iter().map(late_row));
        self.adapt_after(it.t, &late, it.rec)?;
        let fallen = self.fall_back_silent_groups(it.t + 1);
        if self.tree.is_some() {
            it.rec.set(Metric::TreeFallenGroups, fallen as f64);
        }
        Ok(match d {
            // A compressed message is not the gradient it codes: exact decoding of it is not
            // the exact gradient.
            Some(d) => Computed::Gradient {
                exact: d.exact && self.compress.is_none(),
                check,
            },
            None => Computed::Nothing,
        })
    }

    fn finish(&mut self, exit_code: i32, late: &mut Vec<LateRow>) -> Result<Vec<usize>> {
        let r = self.c.shutdown(exit_code, self.shutdown);
        late.extend(self.c.take_late().iter().map(late_row));
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

    fn take_adapt_switches(&mut self) -> Vec<AdaptSwitch> {
        self.adapt
            .as_mut()
            .map(Adaptation::take_switches)
            .unwrap_or_default()
    }

    fn adapt_state(&self) -> Option<AdaptState> {
        self.adapt.as_ref().map(Adaptation::state)
    }

    fn restore_adapt(&mut self, state: &AdaptState, next: u64) -> Result<bool> {
        let Some(a) = &mut self.adapt else {
            return Ok(false);
        };
        if !a.restore(state, next, &mut self.decoder)? {
            return Ok(false);
        }
        if let Some(d) = a.deadline_ms() {
            self.c.set_deadline(Duration::from_secs_f64(d / 1e3));
        }
        self.c.set_prepare(a.prepare_target() as u64);
        log::info!(
            "[rank 0] --adapt: resuming at iteration {next} with s = {}{}{}",
            a.current(),
            a.deadline_ms()
                .map_or(String::new(), |d| format!(", deadline {d:.3} ms")),
            state
                .pending
                .as_ref()
                .map_or(String::new(), |(up, g)| format!(
                    ", {} window(s) in a row favouring a {} s",
                    g.len(),
                    if *up { "larger" } else { "smaller" }
                ))
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Task;

    /// Issue 20 §4: the parameters rank 0 sends on a worker's support (gathered, then the
    /// intercept) are, bit for bit, what the worker gathers from the full vector, so its
    /// messages are those of a run that sends the full parameters; a support of every column
    /// and an empty support (intercept only) too.
    #[test]
    fn parameters_on_the_support_are_the_gathered_full_ones_bit_for_bit() {
        let n_cols = 9;
        let full: Vec<f64> = (0..=n_cols)
            .map(|i| (i as f64 * 0.37).sin() / 3.0)
            .collect();
        for columns in [vec![1u32, 4, 5, 8], (0..n_cols as u32).collect(), vec![]] {
            let model = crate::model::build(
                ModelKind::Logistic,
                &[],
                &[],
                columns.len(),
                None,
                Task::Binary,
            )
            .unwrap();
            let dim = model.dim();
            let mut from_full = OnSupport {
                columns: columns.clone(),
                model,
                w: vec![f64::NAN; dim],
            };
            from_full.gather(&full);
            let mut sent = vec![f64::NAN; columns.len() + 1];
            on_support(&full, &columns, &mut sent);
            assert_eq!(sent.len(), dim, "{columns:?}");
            let mut from_sent = OnSupport {
                columns: columns.clone(),
                model: crate::model::build(
                    ModelKind::Logistic,
                    &[],
                    &[],
                    columns.len(),
                    None,
                    Task::Binary,
                )
                .unwrap(),
                w: vec![f64::NAN; dim],
            };
            from_sent.gather(&sent);
            let bits = |w: &[f64]| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&from_sent.w), bits(&from_full.w), "{columns:?}");
            let want: Vec<f64> = columns
                .iter()
                .map(|&j| full[j as usize])
                .chain([full[n_cols]])
                .collect();
            assert_eq!(bits(&from_full.w), bits(&want), "{columns:?}");
        }
    }
}
