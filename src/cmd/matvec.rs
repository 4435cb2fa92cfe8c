//! `gradcode matvec`: the coded mat-vec MPI job (issue 6; Lee et al., "Speeding up distributed
//! machine learning using codes", GUIDE §3 "Coded linear algebra").
//!
//! `mpirun -np N+1 gradcode matvec --matrix A.h5 --code C -k K --iterations R ...`: A is cut into
//! the code's k·r row blocks ([`BlockLayout`]); worker w (rank w + 1) holds one coded block.
//! **Workers encode their own block**: each reads by hyperslab only the data blocks its generator
//! rows touch and combines them ([`crate::linalg::job`]); rank 0 sends nothing large at start-up.
//! A CSR block stays CSR where the code only selects it (`replication`, the systematic workers of
//! `mds-systematic`); parity blocks are densified (see the `linalg::job` docs for why).
//!
//! Each iteration t, rank 0 draws x_t (standard normal, seeded by (seed, t): a fresh random
//! vector per iteration, not power iteration, so any rectangular A works and every code sees the
//! same vectors), writes it once into a ring of send buffers ([`SendBuf`], one per iteration,
//! shared by all destinations, recycled only when every send from it has completed) and posts it
//! to every idle worker. Workers compute their coded block times x, inject the seeded straggler
//! delay, and send the r·b values with a nonblocking send carrying the usual header
//! (`Kind::Grad`, iteration, rank, compute and injected seconds). Rank 0 polls with a matched
//! probe, validates every header, and decodes as soon as the arrived workers are decodable:
//! `mds-systematic` through the [`StreamingDecoder`] (only the missing blocks are solved for,
//! parity residuals updated as results stream in), the other codes through [`MdsCode::decode`]
//! on the first decodable set in arrival order. The deadline has training's `wait` semantics:
//! past `--deadline-ms` rank 0 logs the silent workers and keeps waiting, past `--max-wait-ms`
//! the job fails naming them. A worker still busy with an older x gets the current one as soon as
//! its late result arrives (and is drained, never left queued); sends are never cancelled.
//!
//! Every iteration, outside the timed path, rank 0 (which reads the whole A once for this)
//! compares the decoded A·x with the uncoded product and records the relative error as
//! `/metrics/grad_rel_err`; the first iteration's comparison is the `/validation` verdict
//! (PASSED when the error is within [`validation_tol`] of the cond of the system solved).
//! Metrics per iteration: `wall_s` (post of x → decoded), `decode_s`, `n_responders` (on time at
//! decode), `cond` (of the system solved; for systematic the s × s solve, 1 when nothing was
//! missing), `bytes_received`, `late`, `rejected`, per-worker arrival/compute/injected times.
//! `/model/w_final` holds the last decoded A·x.
//!
//! Start-up follows `train`: identical checks of the arguments on every rank before any MPI
//! traffic, rank 0 validates the matrix (isolated child) and broadcasts its shape, one
//! all-gather of the load outcome, then no collectives. Shutdown: STOP, ACK with the count of
//! results sent, drain until the counts match. A panic on any rank aborts the job.
//!
//! Not done here: the polynomial AᵀB job (`matmul`), power iteration, per-worker sparse parity.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mpi::point_to_point::{Message, Status};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::{invalid, rank_result};
use crate::cli::MatvecArgs;
use crate::comm::mpi::{count_f64, receive_checked, SendBuf};
use crate::comm::protocol::{
    payload_is_finite, Header, Kind, HEADER_LEN, TAG_ACK, TAG_GRAD, TAG_PARAMS, TAG_STOP,
};
use crate::comm::CommError;
use crate::data::Features;
use crate::error::{Error, Result};
use crate::io::dataset::{self, Split};
use crate::io::results::{AttrValue, FinalRecord, IterationRecord, RunMeta, RunWriter};
use crate::linalg::job::{
    encode_worker, features_matvec, iteration_vector, rel_err, validation_tol, worker_ranges,
    BlockLayout, CodedBlock,
};
use crate::linalg::{Decoded, Family, MdsCode, StreamingDecoder};
use crate::straggler::StragglerSchedule;

pub use super::EXIT_INPUT;

/// The checked settings of a mat-vec job (identical on every rank).
#[derive(Debug, Clone, PartialEq)]
pub struct MatvecConfig {
    pub matrix: PathBuf,
    pub family: Family,
    /// Workers N (world size − 1).
    pub n: usize,
    pub k: usize,
    pub iterations: u64,
    pub deadline_ms: f64,
    pub max_wait_ms: f64,
    pub straggler_model: String,
    pub seed: u64,
    pub out: PathBuf,
    pub force: bool,
}

impl MatvecConfig {
    /// Check `args` for an MPI world of `world` ranks; also builds the code.
    pub fn from_args(args: &MatvecArgs, world: usize) -> Result<(MatvecConfig, MdsCode)> {
        let n = super::workers_of(world, "matvec")?;
        let family: Family = args.code.parse().map_err(|_| {
            invalid(
                "code",
                &args.code,
                "expected one of replication, mds-systematic, mds-vandermonde, mds-chebyshev, mds-rotation, mds-circulant, mds-systematic-rotation",
            )
        })?;
        if args.k == 0 || args.k > n {
            return Err(invalid(
                "k",
                args.k,
                format!(
                    "need 1 ≤ K ≤ N, and the MPI world has N = {n} workers (mpirun -np {world})"
                ),
            ));
        }
        if args.iterations == 0 {
            return Err(invalid("iterations", 0, "need at least one iteration"));
        }
        super::check_timing(
            args.deadline_ms,
            args.max_wait_ms,
            &args.straggler_model,
            n,
            args.seed,
        )?;
        let code = MdsCode::new(family, n, args.k)
            .map_err(|e| invalid("code", &args.code, e.to_string()))?;
        Ok((
            MatvecConfig {
                matrix: args.matrix.clone(),
                family,
                n,
                k: args.k,
                iterations: args.iterations,
                deadline_ms: args.deadline_ms,
                max_wait_ms: args.max_wait_ms,
                straggler_model: args.straggler_model.clone(),
                seed: args.seed,
                out: args.out.clone(),
                force: args.force,
            },
            code,
        ))
    }

    /// OUT/run.h5.
    pub fn results_path(&self) -> PathBuf {
        self.out.join("run.h5")
    }

    /// The code's name as given on the command line.
    pub fn code_name(&self) -> String {
        match self.family {
            Family::Replication => "replication".into(),
            f => format!("mds-{}", f.name()),
        }
    }

    fn attrs(&self) -> Vec<(String, AttrValue)> {
        let s = |v: String| AttrValue::Str(v);
        vec![
            ("job".into(), s("matvec".into())),
            ("matrix".into(), s(self.matrix.display().to_string())),
            ("code_name".into(), s(self.code_name())),
            ("workers".into(), AttrValue::U64(self.n as u64)),
            ("k".into(), AttrValue::U64(self.k as u64)),
            ("iterations".into(), AttrValue::U64(self.iterations)),
            ("deadline_ms".into(), AttrValue::F64(self.deadline_ms)),
            ("max_wait_ms".into(), AttrValue::F64(self.max_wait_ms)),
            ("straggler_model".into(), s(self.straggler_model.clone())),
            ("seed".into(), AttrValue::U64(self.seed)),
            ("out".into(), s(self.out.display().to_string())),
        ]
    }

    fn to_toml(&self) -> String {
        format!(
            "job = \"matvec\"\nmatrix = {:?}\ncode = {:?}\nworkers = {}\nk = {}\niterations = {}\n\
             deadline-ms = {}\nmax-wait-ms = {}\nstraggler-model = {:?}\nseed = {}\nout = {:?}\n",
            self.matrix.display().to_string(),
            self.code_name(),
            self.n,
            self.k,
            self.iterations,
            self.deadline_ms,
            self.max_wait_ms,
            self.straggler_model,
            self.seed,
            self.out.display().to_string()
        )
    }
}

/// Run `gradcode matvec`; returns the process exit code.
pub fn run(args: &MatvecArgs) -> Result<i32> {
    super::with_mpi(|world| run_mpi(world, args))
}

fn run_mpi(world: &SimpleCommunicator, args: &MatvecArgs) -> Result<i32> {
    let rank = world.rank();
    let size = world.size() as usize;
    // 1. Identical checks on every rank, no MPI traffic.
    let (cfg, code) = match MatvecConfig::from_args(args, size) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e),
    };
    // 2. Rank 0 validates the matrix and the output, then broadcasts the shape.
    let shape = match super::broadcast_data_shape(world, &cfg.matrix, || {
        crate::io::check_overwrite(&cfg.results_path(), cfg.force)?;
        if cfg.matrix.exists() {
            Ok(())
        } else {
            Err(crate::io::IoError::NotFound {
                path: cfg.matrix.clone(),
            }
            .into())
        }
    })? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (rows, cols, sparse) = (shape.rows, shape.features, shape.sparse);
    let layout = match BlockLayout::new(&code, rows, cols) {
        Ok(l) => l,
        Err(e) => return rank_result(rank, e.into()),
    };
    // 3. Per-rank loading; one all-gather of the outcome.
    let mut rank0: Option<(Features, RunWriter)> = None;
    let mut block: Option<CodedBlock> = None;
    let local: Result<()> = if rank == 0 {
        setup_rank0(&cfg, &code, &layout, size, sparse).map(|s| rank0 = Some(s))
    } else {
        let w = rank as usize - 1;
        dataset::read_rows(&cfg.matrix, Split::Train, &worker_ranges(&code, &layout, w))
            .map_err(Error::from)
            .and_then(|d| encode_worker(&code, &layout, w, d.x).map_err(Error::from))
            .map(|b| {
                log::debug!(
                    "[rank {rank}] holds a {} coded block of {} rows",
                    if b.is_sparse() { "sparse" } else { "dense" },
                    b.result_len()
                );
                block = Some(b);
            })
    };
    if let Err(code) = super::gather_startup(world, local)? {
        return Ok(code);
    }
    // 4. The run.
    if rank == 0 {
        let Some((a, writer)) = rank0 else {
            return Err(Error::Check("internal: rank 0 set-up missing".into()));
        };
        coordinate(world, &cfg, &code, &layout, &a, writer)
    } else {
        let Some(block) = block else {
            return Err(Error::Check("internal: worker block missing".into()));
        };
        work_or_abort(world, std::slice::from_ref(&block), &cfg)
    }
}

fn setup_rank0(
    cfg: &MatvecConfig,
    code: &MdsCode,
    layout: &BlockLayout,
    size: usize,
    sparse: bool,
) -> Result<(Features, RunWriter)> {
    let a = dataset::read_all(&cfg.matrix, Split::Train)?.x;
    std::fs::create_dir_all(&cfg.out).map_err(|e| crate::io::IoError::os(&cfg.out, e))?;
    let (code_attrs, env_attrs) = super::train::provenance(size);
    let mut config = cfg.attrs();
    config.extend([
        ("rows".into(), AttrValue::U64(layout.rows as u64)),
        ("cols".into(), AttrValue::U64(layout.cols as u64)),
        ("sparse".into(), AttrValue::Bool(sparse)),
        ("data_blocks".into(), AttrValue::U64(layout.blocks as u64)),
        (
            "block_rows".into(),
            AttrValue::U64(layout.block_rows as u64),
        ),
        (
            "blocks_per_worker".into(),
            AttrValue::U64(code.blocks_per_worker() as u64),
        ),
        ("q".into(), AttrValue::U64(code.q() as u64)),
    ]);
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml: cfg.to_toml(),
        code_matrix: code.generator().as_standard_layout().into_owned(),
        n_workers: cfg.n,
    };
    log::info!(
        "[rank 0] gradcode {} matvec: {} × {} {} matrix, code {} (n = {}, k = {}, {} data blocks of {} rows)",
        crate::VERSION,
        layout.rows,
        layout.cols,
        if sparse { "CSR" } else { "dense" },
        cfg.code_name(),
        cfg.n,
        cfg.k,
        layout.blocks,
        layout.block_rows
    );
    let writer = RunWriter::create(&cfg.results_path(), &meta, None)?;
    Ok((a, writer))
}

/// Busy-spin for `secs` (CPU contention, unlike a sleep).
fn spin(secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// The worker loop: compute block · x for every x rank 0 posts, until STOP. Returns the exit
/// code rank 0 sent with STOP.
///
/// `blocks[p]` serves the vectors of phase p (the header's `part`): one phase for `matvec`, two
/// for coded training (X w, then Xᵀ r).
/// A worker of a mat-vec job ([`work`] with the job's straggler schedule); a fatal error on
/// the data path aborts the whole job.
pub(crate) fn work_or_abort(
    world: &SimpleCommunicator,
    blocks: &[CodedBlock],
    cfg: &MatvecConfig,
) -> Result<i32> {
    let mut schedule = StragglerSchedule::parse(&cfg.straggler_model, cfg.n, cfg.seed)
        .map_err(|e| Error::Config(e.into()))?;
    match work(world, blocks, &mut schedule) {
        Ok(code) => Ok(code),
        Err(e) => {
            log::error!("[rank {}] {e}", world.rank());
            crate::comm::mpi::abort(1);
        }
    }
}

pub(crate) fn work(
    world: &SimpleCommunicator,
    blocks: &[CodedBlock],
    schedule: &mut StragglerSchedule,
) -> std::result::Result<i32, CommError> {
    let rank = world.rank();
    let urank = rank as usize;
    let max_out = blocks.iter().map(CodedBlock::result_len).max().unwrap_or(0);
    let max_cols = blocks.iter().map(CodedBlock::cols).max().unwrap_or(0);
    let msg_len = HEADER_LEN + max_out;
    let root = world.process_at_rank(0);
    let mut params = vec![0.0; HEADER_LEN + max_cols];
    let mut scratch = Vec::new();
    let mut bufs = [SendBuf::new(msg_len), SendBuf::new(msg_len)];
    let mut which = 0;
    let mut sent: u64 = 0;
    let protocol = |reason: String| CommError::Protocol { rank: 0, reason };
    loop {
        let (msg, status) = root.matched_probe();
        match status.tag() {
            TAG_PARAMS => {
                let (n, ok) = receive_checked(msg, &status, &mut params, &mut scratch);
                if !ok {
                    return Err(protocol(format!(
                        "vector message of {n} values is too long"
                    )));
                }
                let h = Header::parse(&params[..n])
                    .map_err(|e| protocol(format!("vector header: {e}")))?;
                if h.kind != Kind::Params {
                    return Err(protocol(format!("expected a vector, got {:?}", h.kind)));
                }
                let Some(block) = blocks.get(h.part) else {
                    return Err(protocol(format!("vector for unknown phase {}", h.part)));
                };
                if n != HEADER_LEN + block.cols() {
                    return Err(protocol(format!(
                        "vector message of {n} values, expected {}",
                        HEADER_LEN + block.cols()
                    )));
                }
                let out_len = block.result_len();
                let it = h.iteration;
                if schedule.failed(it, urank) {
                    log::debug!("[rank {rank}] iteration {it}: injected failure, not answering");
                    continue;
                }
                let t = Instant::now();
                let slot = &mut bufs[which];
                let buf = slot.write();
                let (head, rest) = buf[..HEADER_LEN + out_len].split_at_mut(HEADER_LEN);
                block
                    .matvec_into(ArrayView1::from(&params[HEADER_LEN..n]), rest)
                    .map_err(|e| CommError::Fatal(format!("rank {rank}: {e}")))?;
                let compute_s = t.elapsed().as_secs_f64();
                let spun = (schedule.slow_factor(urank) - 1.0) * compute_s;
                spin(spun);
                let delay = schedule.delay_s(it, urank);
                if delay > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(delay));
                }
                Header {
                    kind: Kind::Grad,
                    iteration: it,
                    rank: urank,
                    compute_s,
                    injected_s: spun.max(0.0) + delay,
                    part: h.part,
                    len: out_len,
                }
                .write(head);
                slot.post(world, 0, Kind::Grad.tag(), HEADER_LEN + out_len);
                which ^= 1;
                sent += 1;
            }
            TAG_STOP => {
                let (n, ok) = receive_checked(msg, &status, &mut params, &mut scratch);
                let code = if ok {
                    Header::parse(&params[..n])
                        .ok()
                        .and_then(|h| i32::try_from(h.iteration).ok())
                        .unwrap_or(1)
                } else {
                    1
                };
                let mut ack = vec![0.0; HEADER_LEN];
                Header {
                    iteration: sent,
                    rank: urank,
                    ..Header::new(Kind::Ack)
                }
                .write(&mut ack);
                root.send_with_tag(&ack[..], Kind::Ack.tag());
                for b in bufs.iter_mut() {
                    b.wait();
                }
                return Ok(code);
            }
            tag => {
                let n = count_f64(&status);
                let _ = receive_checked(msg, &status, &mut params, &mut scratch);
                return Err(protocol(format!(
                    "unexpected message with tag {tag} ({n} values)"
                )));
            }
        }
    }
}

/// One kind of vector rank 0 posts (the header's `part`): the code, the decoded length, the
/// vector length, the length of one worker's result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase<'a> {
    pub code: &'a MdsCode,
    pub rows: usize,
    pub cols: usize,
    pub out_len: usize,
}

/// Rank 0's state (shared with the coded training loop).
pub(crate) struct Rank0<'a> {
    world: &'a SimpleCommunicator,
    cfg: &'a MatvecConfig,
    phases: Vec<Phase<'a>>,
    phase: usize,
    /// (iteration, phase) each worker was given and has not answered yet.
    pending: Vec<Option<(u64, usize)>>,
    /// Last iteration posted to each worker.
    given: Vec<Option<u64>>,
    recv: Vec<f64>,
    scratch: Vec<f64>,
    received: Vec<u64>,
    acked: Vec<Option<u64>>,
    ring: Vec<SendBuf>,
    slot: usize,
    // The current iteration.
    it: u64,
    pub(crate) t0: Instant,
    pub(crate) collecting: bool,
    arrived: Vec<(usize, Array2<f64>)>,
    stream: Option<StreamingDecoder<'a>>,
    pub(crate) decode_s: f64,
    pub(crate) arrival_s: Vec<f64>,
    pub(crate) compute_s: Vec<f64>,
    pub(crate) injected_s: Vec<f64>,
    pub(crate) late: u32,
    pub(crate) rejected: u32,
    pub(crate) bytes: f64,
}

impl<'a> Rank0<'a> {
    /// Rank 0's state for `phases` (vector kinds), nothing posted yet.
    pub(crate) fn new(
        world: &'a SimpleCommunicator,
        cfg: &'a MatvecConfig,
        phases: Vec<Phase<'a>>,
    ) -> Self {
        let n = cfg.n;
        let max_out = phases.iter().map(|p| p.out_len).max().unwrap_or(0);
        Rank0 {
            world,
            cfg,
            phases,
            phase: 0,
            pending: vec![None; n],
            given: vec![None; n],
            recv: vec![0.0; HEADER_LEN + max_out],
            scratch: Vec::new(),
            received: vec![0; n],
            acked: vec![None; n],
            ring: Vec::new(),
            slot: 0,
            it: 0,
            t0: Instant::now(),
            collecting: false,
            arrived: Vec::with_capacity(n),
            stream: None,
            decode_s: 0.0,
            arrival_s: vec![f64::NAN; n],
            compute_s: vec![f64::NAN; n],
            injected_s: vec![f64::NAN; n],
            late: 0,
            rejected: 0,
            bytes: 0.0,
        }
    }

    /// Start round `t` of phase `phase`: post x to every idle worker. Rounds must increase.
    pub(crate) fn begin(&mut self, t: u64, phase: usize, x: ArrayView1<f64>) -> Result<()> {
        let ph = *self
            .phases
            .get(phase)
            .ok_or_else(|| Error::Check(format!("internal: unknown phase {phase}")))?;
        if x.len() != ph.cols {
            return Err(Error::Check(format!(
                "internal: vector of {} values for phase {phase} of {} columns",
                x.len(),
                ph.cols
            )));
        }
        self.it = t;
        self.phase = phase;
        self.t0 = Instant::now();
        self.collecting = true;
        self.arrived.clear();
        self.stream = if ph.code.family().is_systematic() {
            Some(StreamingDecoder::new(ph.code, ph.rows)?)
        } else {
            None
        };
        self.decode_s = 0.0;
        for v in [
            &mut self.arrival_s,
            &mut self.compute_s,
            &mut self.injected_s,
        ] {
            v.fill(f64::NAN);
        }
        self.late = 0;
        self.rejected = 0;
        self.bytes = 0.0;
        let max_cols = self.phases.iter().map(|p| p.cols).max().unwrap_or(0);
        let slot = match self.ring.iter_mut().position(|b| b.is_free()) {
            Some(i) => i,
            None => {
                self.ring.push(SendBuf::new(HEADER_LEN + max_cols));
                self.ring.len() - 1
            }
        };
        self.slot = slot;
        let buf = self.ring[slot].write();
        Header {
            iteration: t,
            part: phase,
            len: ph.cols,
            ..Header::new(Kind::Params)
        }
        .write(buf);
        for (dst, &v) in buf[HEADER_LEN..].iter_mut().zip(x.iter()) {
            *dst = v;
        }
        for w in 0..self.cfg.n {
            if self.pending[w].is_none() {
                self.post_to(w);
            }
        }
        Ok(())
    }

    fn post_to(&mut self, w: usize) {
        self.ring[self.slot].post(
            self.world,
            (w + 1) as i32,
            Kind::Params.tag(),
            HEADER_LEN + self.phases[self.phase].cols,
        );
        self.pending[w] = Some((self.it, self.phase));
        self.given[w] = Some(self.it);
    }

    fn poll(&mut self) -> Result<bool> {
        let mut any = false;
        while let Some((msg, status)) = self.world.any_process().immediate_matched_probe() {
            self.handle(msg, status)?;
            any = true;
        }
        Ok(any)
    }

    fn handle(&mut self, msg: Message, status: Status) -> Result<()> {
        let src = status.source_rank();
        if src < 1 || src as usize > self.cfg.n {
            receive_checked(msg, &status, &mut [], &mut self.scratch);
            return Err(CommError::Protocol {
                rank: src,
                reason: "message from a rank that is not a worker".into(),
            }
            .into());
        }
        let w = src as usize - 1;
        match status.tag() {
            TAG_GRAD => {
                let (len, ok) = receive_checked(msg, &status, &mut self.recv, &mut self.scratch);
                self.received[w] += 1;
                self.bytes += (len * 8) as f64;
                let was = self.pending[w].take();
                let buf = if ok {
                    &self.recv[..len]
                } else {
                    &self.scratch[..len]
                };
                let verdict = match Header::parse(buf) {
                    Err(e) => Err(e.to_string()),
                    Ok(h) if h.kind != Kind::Grad => Err(format!("kind {:?}", h.kind)),
                    Ok(h) if h.rank != src as usize => Err(format!("header names rank {}", h.rank)),
                    Ok(h) if Some((h.iteration, h.part)) != was => Err(format!(
                        "(iteration, phase) ({}, {}) but the worker was given {was:?}",
                        h.iteration, h.part
                    )),
                    Ok(h) if h.len != self.phases[h.part].out_len => Err(format!(
                        "{} values, expected {}",
                        h.len, self.phases[h.part].out_len
                    )),
                    Ok(_) if !payload_is_finite(&buf[HEADER_LEN..]) => {
                        Err("non-finite values".into())
                    }
                    Ok(h) => Ok(h),
                };
                match verdict {
                    Err(reason) => {
                        self.rejected += 1;
                        log::warn!("[rank 0] rejected a result from rank {src}: {reason}");
                    }
                    Ok(h) if self.collecting && h.iteration == self.it && h.part == self.phase => {
                        let payload =
                            Array2::from_shape_vec((h.len, 1), buf[HEADER_LEN..].to_vec())
                                .map_err(|e| Error::Check(format!("internal: {e}")))?;
                        self.arrival_s[w] = self.t0.elapsed().as_secs_f64();
                        self.compute_s[w] = h.compute_s;
                        self.injected_s[w] = h.injected_s;
                        if let Some(stream) = self.stream.as_mut() {
                            let t = Instant::now();
                            stream.add_result(w, payload.view())?;
                            self.decode_s += t.elapsed().as_secs_f64();
                        } else {
                            self.arrived.push((w, payload));
                        }
                    }
                    Ok(h) => {
                        self.late += 1;
                        log::debug!(
                            "[rank 0] drained a late result of iteration {} from rank {src}",
                            h.iteration
                        );
                    }
                }
                if self.collecting && self.pending[w].is_none() && self.given[w] != Some(self.it) {
                    self.post_to(w);
                }
            }
            TAG_ACK => {
                let mut ack = [0.0; HEADER_LEN];
                let (len, ok) = receive_checked(msg, &status, &mut ack, &mut self.scratch);
                match Header::parse(if ok {
                    &ack[..len]
                } else {
                    &self.scratch[..len]
                }) {
                    Ok(h) if h.kind == Kind::Ack => self.acked[w] = Some(h.iteration),
                    _ => log::warn!("[rank 0] invalid acknowledgement from rank {src}"),
                }
            }
            tag => {
                receive_checked(msg, &status, &mut [], &mut self.scratch);
                self.rejected += 1;
                log::warn!("[rank 0] rejected a message with unknown tag {tag} from rank {src}");
            }
        }
        Ok(())
    }

    fn decodable(&self) -> bool {
        match &self.stream {
            Some(s) => s.is_decodable(),
            None => {
                let ws: Vec<usize> = self.arrived.iter().map(|(w, _)| *w).collect();
                self.phases[self.phase].code.is_decodable(&ws)
            }
        }
    }

    pub(crate) fn silent(&self) -> Vec<usize> {
        (0..self.cfg.n)
            .filter(|&w| self.arrival_s[w].is_nan())
            .map(|w| w + 1)
            .collect()
    }

    /// Poll until decodable; past the deadline keep waiting, past max-wait fail.
    pub(crate) fn collect(&mut self) -> Result<()> {
        let deadline = Duration::from_secs_f64(self.cfg.deadline_ms / 1e3);
        let hard = Duration::from_secs_f64(self.cfg.max_wait_ms / 1e3);
        let mut warned = false;
        loop {
            let got = self.poll()?;
            if self.decodable() {
                return Ok(());
            }
            let waited = self.t0.elapsed();
            if waited >= hard {
                return Err(CommError::Timeout {
                    iteration: self.it,
                    waited_ms: waited.as_secs_f64() * 1e3,
                    have: self.cfg.n - self.silent().len(),
                    n: self.cfg.n,
                    silent: self.silent(),
                }
                .into());
            }
            if waited >= deadline && !warned {
                warned = true;
                log::info!(
                    "[rank 0] iteration {}: deadline passed without a decodable set; silent ranks {:?}; waiting (at most {} ms)",
                    self.it,
                    self.silent(),
                    self.cfg.max_wait_ms
                );
            }
            if !got {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    pub(crate) fn decode(&mut self) -> Result<Decoded> {
        let t = Instant::now();
        let d = match self.stream.as_mut() {
            Some(s) => s
                .try_decode()?
                .ok_or_else(|| Error::Check("internal: systematic results not decodable".into()))?,
            None => {
                let views: Vec<(usize, ArrayView2<f64>)> =
                    self.arrived.iter().map(|(w, m)| (*w, m.view())).collect();
                let ph = self.phases[self.phase];
                ph.code.decode(&views, ph.rows)?
            }
        };
        self.decode_s += t.elapsed().as_secs_f64();
        Ok(d)
    }

    /// STOP every worker, reconcile message counts, drain. Returns unreconciled worker ranks.
    pub(crate) fn shutdown(&mut self, exit_code: i32) -> Result<Vec<usize>> {
        self.collecting = false;
        let mut stop = vec![0.0; HEADER_LEN];
        Header {
            iteration: exit_code.max(0) as u64,
            ..Header::new(Kind::Stop)
        }
        .write(&mut stop);
        for w in 0..self.cfg.n {
            self.world
                .process_at_rank((w + 1) as i32)
                .send_with_tag(&stop[..], Kind::Stop.tag());
        }
        let bound = Duration::from_secs_f64((self.cfg.max_wait_ms / 1e3).max(10.0));
        let start = Instant::now();
        loop {
            let got = self.poll()?;
            if (0..self.cfg.n).all(|w| self.acked[w] == Some(self.received[w])) {
                for b in &mut self.ring {
                    b.wait();
                }
                return Ok(Vec::new());
            }
            if start.elapsed() > bound {
                return Ok((0..self.cfg.n)
                    .filter(|&w| self.acked[w] != Some(self.received[w]))
                    .map(|w| w + 1)
                    .collect());
            }
            if !got {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

/// Running totals for `/summary`.
#[derive(Debug, Default)]
struct Totals {
    iterations: u64,
    wall: f64,
    decode: f64,
    max_cond: f64,
    max_rel_err: f64,
    late: u64,
    rejected: u64,
}

/// Rank 0: run every iteration, write the results, stop the workers. Returns the exit code.
fn coordinate(
    world: &SimpleCommunicator,
    cfg: &MatvecConfig,
    code: &MdsCode,
    layout: &BlockLayout,
    a: &Features,
    mut writer: RunWriter,
) -> Result<i32> {
    let n = cfg.n;
    let out_len = layout.result_len(code);
    let mut c = Rank0::new(
        world,
        cfg,
        vec![Phase {
            code,
            rows: layout.rows,
            cols: layout.cols,
            out_len,
        }],
    );
    let start = Instant::now();
    let mut totals = Totals::default();
    let mut validation: Vec<(String, AttrValue)> = Vec::new();
    let mut passed = false;
    let mut last = Array1::<f64>::zeros(layout.rows);
    let mut truth = vec![0.0; layout.rows];
    let mut run = || -> Result<()> {
        for t in 0..cfg.iterations {
            let x = iteration_vector(cfg.seed, t, layout.cols);
            c.begin(t, 0, x.view())?;
            c.collect()?;
            let d = c.decode()?;
            let wall = c.t0.elapsed().as_secs_f64();
            c.collecting = false;
            // Outside the timed path: the uncoded product.
            features_matvec(a, x.view(), &mut truth)?;
            let y = d.value.column(0);
            let err = if y.len() == layout.rows {
                rel_err(y, ArrayView1::from(&truth[..]))
            } else {
                f64::INFINITY
            };
            let responders = n - c.silent().len();
            if t == 0 {
                let tol = validation_tol(d.cond);
                passed = err <= tol;
                let verdict = if passed { "PASSED" } else { "FAILED" };
                log::info!(
                    "[rank 0] validation at iteration 0: decoded vs uncoded A·x rel. error {err:.3e} (cond {:.3e}, tolerance {tol:.1e}): {verdict}",
                    d.cond
                );
                validation = vec![
                    ("iteration".into(), AttrValue::U64(0)),
                    ("check".into(), AttrValue::Str(verdict.into())),
                    ("verdict".into(), AttrValue::Str(verdict.into())),
                    ("rel_err".into(), AttrValue::F64(err)),
                    ("tolerance".into(), AttrValue::F64(tol)),
                    ("cond".into(), AttrValue::F64(d.cond)),
                    (
                        "used_workers".into(),
                        AttrValue::Str(format!(
                            "{:?}",
                            d.used.iter().map(|w| w + 1).collect::<Vec<_>>()
                        )),
                    ),
                    (
                        "silent_workers".into(),
                        AttrValue::Str(format!("{:?}", c.silent())),
                    ),
                ];
            }
            let mut rec = IterationRecord::new(n);
            rec.set("iteration", t as f64);
            rec.set("wall_s", wall);
            rec.set("elapsed_s", start.elapsed().as_secs_f64());
            rec.set("decode_s", c.decode_s);
            rec.set("n_responders", responders as f64);
            rec.set("exact", 1.0);
            rec.set("cond", d.cond);
            rec.set("grad_rel_err", err);
            rec.set("late", f64::from(c.late));
            rec.set("rejected", f64::from(c.rejected));
            rec.set("bytes_received", c.bytes);
            rec.per_worker[0].clone_from(&c.arrival_s);
            rec.per_worker[1].clone_from(&c.compute_s);
            rec.per_worker[2].clone_from(&c.injected_s);
            rec.per_worker[3] = c
                .arrival_s
                .iter()
                .map(|a| if a.is_nan() { 0.0 } else { 1.0 })
                .collect();
            writer.append(&rec)?;
            totals.iterations += 1;
            totals.wall += wall;
            totals.decode += c.decode_s;
            totals.max_cond = totals.max_cond.max(d.cond);
            totals.max_rel_err = totals.max_rel_err.max(err);
            totals.late += u64::from(c.late);
            totals.rejected += u64::from(c.rejected);
            log::debug!(
                "[rank 0] it {t}: wall {:.3} ms, decode {:.3} ms, used ranks {:?}, cond {:.2e}, rel. error {err:.2e}",
                wall * 1e3,
                c.decode_s * 1e3,
                d.used.iter().map(|w| w + 1).collect::<Vec<_>>(),
                d.cond
            );
            last.assign(&y);
        }
        Ok(())
    };
    let outcome = run();
    let (status, exit) = match (&outcome, passed) {
        (Ok(()), true) => ("complete", 0),
        _ => ("failed", 1),
    };
    let unreconciled = c.shutdown(exit)?;
    if validation.is_empty() {
        validation.push(("check".into(), AttrValue::Str("FAILED".into())));
        validation.push(("verdict".into(), AttrValue::Str("FAILED".into())));
        validation.push((
            "reason".into(),
            AttrValue::Str("the first iteration never decoded".into()),
        ));
    }
    let it = totals.iterations.max(1) as f64;
    let summary = vec![
        ("iterations".into(), AttrValue::U64(totals.iterations)),
        ("mean_wall_s".into(), AttrValue::F64(totals.wall / it)),
        ("mean_decode_s".into(), AttrValue::F64(totals.decode / it)),
        ("max_cond".into(), AttrValue::F64(totals.max_cond)),
        ("max_rel_err".into(), AttrValue::F64(totals.max_rel_err)),
        ("late".into(), AttrValue::U64(totals.late)),
        ("rejected".into(), AttrValue::U64(totals.rejected)),
        (
            "unreconciled_workers".into(),
            AttrValue::Str(format!("{unreconciled:?}")),
        ),
    ];
    let path = writer.path().to_path_buf();
    writer.finish(&FinalRecord {
        status: status.into(),
        w_final: last,
        validation,
        summary,
        per_worker: Vec::new(),
    })?;
    if !unreconciled.is_empty() {
        eprintln!(
            "gradcode: error: workers {unreconciled:?} never answered the STOP; results are in {}; aborting the job",
            path.display()
        );
        crate::comm::mpi::abort(3);
    }
    outcome?;
    if !passed {
        return Err(Error::Check(format!(
            "matvec validation FAILED: the decoded A·x differs from the uncoded product beyond the tolerance; see /validation in {}",
            path.display()
        )));
    }
    println!(
        "matvec: {} iterations with {}, mean wall {:.3} ms, mean decode {:.3} ms, max cond {:.3e}, max rel. error {:.3e}; validation PASSED; results: {}",
        totals.iterations,
        cfg.code_name(),
        totals.wall / it * 1e3,
        totals.decode / it * 1e3,
        totals.max_cond,
        totals.max_rel_err,
        path.display()
    );
    Ok(0)
}
