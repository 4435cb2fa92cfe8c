//! `gradcode matmul`: AᵀB by polynomial codes over MPI (Yu, Maddah-Ali, Avestimehr,
//! "Polynomial codes"; Dutta et al., MatDot; Ramamoorthy & Tang's rotation embedding; GUIDE §3).
//!
//! `mpirun -np N+1 gradcode matmul --a A.h5 --b B.h5 --code C -m M -p P ...` with C one of
//! `poly-real`, `poly-chebyshev`, `poly-rotation` (any mp workers decode) or `matdot` (any
//! 2m − 1). A (s × ca) and B (s × cb) are matrices in the dataset layout (`/X`, dense or CSR;
//! CSR is densified: the coded shares are dense linear combinations anyway).
//!
//! **Rank 0 encodes**: it reads A and B once, computes every worker's share with
//! [`PolyCode::encode`] and posts each worker its own share through the collector
//! ([`Collector::begin_each`]). Each worker ([`ShareWorker`]) computes ÃᵢᵀB̃ᵢ, injects the seeded
//! straggler delay of iteration 0, and sends the result. Rank 0 decodes from the first threshold
//! results in arrival order (training's `wait` deadline semantics), then, outside the timed
//! path, computes the uncoded AᵀB and records the relative error (Frobenius) against it:
//! `/validation` PASSED when within [`validation_tol`] of the cond of the system solved.
//!
//! Output: `OUT/run.h5` (one row of metrics: `wall_s` from the first share posted to the decode,
//! `decode_s`, `n_responders`, `cond`, `grad_rel_err` = ‖Ĉ − C‖_F/‖C‖_F; provenance, config,
//! `/validation`) and `OUT/product.h5` with `/C` (ca × cb) and attributes `rel_err`, `cond`,
//! `code`, `used_workers`.
//!
//! Not done here: several products per run, worker-side encoding, the uncoded check on large
//! sizes (it costs rank 0 one full product).

use std::time::Instant;

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::{rank_result, EXIT_INPUT};
use crate::comm::mpi::World;
use crate::comm::{
    Collected, Collector, CollectorSpec, CommError, Responder, Round, Rule, WorkerJob, WorkerLink,
    WorkerTransport,
};
use crate::config::{MatmulArgs, MatmulConfig};
use crate::data::Features;
use crate::error::{Error, Result};
use crate::io::matrix::{read_matrix_source, MatrixSource};
use crate::io::results::{AttrValue, FinalRecord, IterationRecord, Metric, RunMeta, RunWriter};
use crate::io::validate::validate_matrix_isolated;
use crate::linalg::job::{rel_err, validation_tol};
use crate::linalg::poly::Share;
use crate::linalg::PolyCode;
use crate::train::coded::late_row;

/// Run `gradcode matmul`; returns the process exit code.
pub fn run(args: &MatmulArgs) -> Result<i32> {
    super::with_mpi(|world| run_mpi(world, args))
}

fn dense(x: Features) -> Array2<f64> {
    match x {
        Features::Dense(m) => m,
        Features::Sparse(m) => m.to_dense(),
    }
}

/// A, B, every worker's share, the results writer.
type Rank0Setup = (Array2<f64>, Array2<f64>, Vec<Share>, RunWriter);

/// Rank 0's start-up: check and read both matrices, encode, open the results file.
fn setup_rank0(cfg: &MatmulConfig, code: &PolyCode, size: usize) -> Result<Rank0Setup> {
    let results = cfg.job.results_path();
    crate::io::check_overwrite(&results, cfg.job.force)?;
    let mut shapes = Vec::new();
    let mut sources = Vec::new();
    for p in [&cfg.a, &cfg.b] {
        let src: MatrixSource = p.parse()?;
        let info = validate_matrix_isolated(&src)?;
        shapes.push((info.rows, info.cols));
        sources.push(MatrixSource {
            object: Some(info.object),
            ..src
        });
    }
    if shapes[0].0 != shapes[1].0 {
        return Err(Error::Check(format!(
            "AᵀB needs A and B with the same number of rows: {} has {} × {}, {} has {} × {}",
            cfg.a, shapes[0].0, shapes[0].1, cfg.b, shapes[1].0, shapes[1].1
        )));
    }
    let a = dense(read_matrix_source(&sources[0])?);
    let b = dense(read_matrix_source(&sources[1])?);
    let shares = code.encode(a.view(), b.view())?;
    let (toml, mut config) = super::write_run_config(
        &cfg.job.out,
        &cfg.job.config_path(),
        cfg.to_toml(),
        cfg,
        "matmul",
    )?;
    let (code_attrs, env_attrs) = super::provenance(size);
    config.extend([
        (
            "code_name".into(),
            AttrValue::Str(code.family().name().into()),
        ),
        ("shared_rows".into(), AttrValue::U64(a.nrows() as u64)),
        ("a_cols".into(), AttrValue::U64(a.ncols() as u64)),
        ("b_cols".into(), AttrValue::U64(b.ncols() as u64)),
        ("threshold".into(), AttrValue::U64(code.threshold() as u64)),
    ]);
    let meta = RunMeta {
        code: code_attrs,
        env: env_attrs,
        config,
        config_toml: toml,
        code_matrix: Array2::ones((1, 1)),
        n_workers: cfg.workers(),
        n_layers: 0,
        adapt: false,
    };
    log::info!(
        "[rank 0] gradcode {} matmul: Aᵀ B with A {} × {}, B {} × {}, code {} (n = {}, m = {}, p = {}, threshold {})",
        crate::VERSION,
        a.nrows(),
        a.ncols(),
        b.nrows(),
        b.ncols(),
        code.family(),
        cfg.workers(),
        cfg.m,
        cfg.p,
        code.threshold()
    );
    let writer = RunWriter::create(&results, &meta, None)?;
    Ok((a, b, shares, writer))
}

fn run_mpi(world: &World, args: &MatmulArgs) -> Result<i32> {
    let rank = world.rank();
    let (cfg, code) = match MatmulConfig::from_args(args, world.size()) {
        Ok(c) => c,
        Err(e) => return rank_result(rank, e.into()),
    };
    // Rank 0 loads and encodes; one broadcast of the outcome and of the largest share, then no
    // collectives.
    let mut setup = None;
    let mut err = None;
    let mut msg = [0.0f64; 2];
    if rank == 0 {
        match setup_rank0(&cfg, &code, world.size()) {
            Ok(s) => {
                msg = [
                    1.0,
                    s.2.iter().map(|sh| pack(sh).len()).max().unwrap_or(0) as f64,
                ];
                setup = Some(s);
            }
            Err(e) => err = Some(e),
        }
    }
    world.broadcast(&mut msg);
    if msg[0] != 1.0 {
        return match err {
            Some(e) => rank_result(rank, e),
            None => Ok(EXIT_INPUT),
        };
    }
    if rank == 0 {
        let Some((a, b, shares, writer)) = setup else {
            return Err(Error::Check("internal: rank 0 set-up missing".into()));
        };
        coordinate(world, &cfg, &code, a.view(), b.view(), &shares, writer)
    } else {
        let mut job = ShareWorker {
            max_len: msg[1] as usize,
        };
        match WorkerLink::new(world.worker(), cfg.job.schedule(), 1).serve(&mut job) {
            Ok(s) => Ok(s.stop_code),
            Err(e) => {
                log::error!("[rank {rank}] {e}");
                crate::comm::mpi::abort(1);
            }
        }
    }
}

/// A share as one message payload: [ar, ac, br, bc, A row-major, B row-major].
fn pack(share: &Share) -> Vec<f64> {
    let mut v = Vec::with_capacity(4 + share.a.len() + share.b.len());
    v.extend([
        share.a.nrows() as f64,
        share.a.ncols() as f64,
        share.b.nrows() as f64,
        share.b.ncols() as f64,
    ]);
    v.extend(share.a.iter());
    v.extend(share.b.iter());
    v
}

fn unpack(p: &[f64]) -> Option<Share> {
    let dims: Vec<usize> = p.get(..4)?.iter().map(|&d| d as usize).collect();
    let (la, lb) = (dims[0].checked_mul(dims[1])?, dims[2].checked_mul(dims[3])?);
    if p.len() != 4 + la + lb {
        return None;
    }
    let a = Array2::from_shape_vec((dims[0], dims[1]), p[4..4 + la].to_vec()).ok()?;
    let b = Array2::from_shape_vec((dims[2], dims[3]), p[4 + la..].to_vec()).ok()?;
    Some(Share { a, b })
}

/// The worker of a product: ÃᵢᵀB̃ᵢ of the share rank 0 posts.
struct ShareWorker {
    max_len: usize,
}

impl WorkerJob for ShareWorker {
    fn accepts(&self, phase: usize, len: usize) -> bool {
        phase == 0 && (4..=self.max_len).contains(&len)
    }
    fn max_params_len(&self) -> usize {
        self.max_len
    }
    fn serve<T: WorkerTransport>(
        &mut self,
        params: &[f64],
        out: &mut Responder<'_, T>,
    ) -> std::result::Result<(), CommError> {
        let share = unpack(params).ok_or_else(|| CommError::Protocol {
            rank: 0,
            reason: "malformed share message".into(),
        })?;
        let len = share.a.ncols() * share.b.ncols();
        out.send_result(0, len, |buf| {
            let c = share.compute();
            for (dst, v) in buf.iter_mut().zip(c.iter()) {
                *dst = *v;
            }
            Ok(())
        })
    }
}

/// Rank 0's rule: the first `threshold` results, in arrival order.
struct Threshold<'a> {
    need: usize,
    shares: &'a [Share],
    arrived: Vec<(usize, Array2<f64>)>,
}

impl Rule for Threshold<'_> {
    fn accept(
        &mut self,
        w: usize,
        _part: usize,
        payload: &[f64],
    ) -> std::result::Result<(), CommError> {
        let (r, c) = (self.shares[w].a.ncols(), self.shares[w].b.ncols());
        let m = Array2::from_shape_vec((r, c), payload.to_vec())
            .map_err(|e| CommError::Fatal(format!("rank {}'s result: {e}", w + 1)))?;
        self.arrived.push((w, m));
        Ok(())
    }
    fn decodable(&self, _round: &Round) -> bool {
        self.arrived.len() >= self.need
    }
}

/// The decoded product, its error against the uncoded AᵀB, the cond of the system solved, and
/// the ranks used.
type Product = (Array2<f64>, f64, f64, Vec<usize>);

/// `/validation`, whether the check passed, and the product.
type Checked = (Vec<(String, AttrValue)>, bool, Product);

/// Decode AᵀB from the arrived results and check it against the uncoded product (outside the
/// timed path): `/validation`, the row's metrics, and the product when it decoded.
fn decode_and_check(
    code: &PolyCode,
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    arrived: &[(usize, Array2<f64>)],
    t0: Instant,
    rec: &mut IterationRecord,
) -> Result<Checked> {
    let td = Instant::now();
    let views: Vec<(usize, ArrayView2<f64>)> =
        arrived.iter().map(|(w, m)| (*w, m.view())).collect();
    let d = code.decode(&views, a.ncols(), b.ncols())?;
    let decode_s = td.elapsed().as_secs_f64();
    let wall = t0.elapsed().as_secs_f64();
    let truth = a.t().dot(&b);
    let flat = |m: &Array2<f64>| -> Vec<f64> { m.iter().copied().collect() };
    let (dv, tv) = (flat(&d.value), flat(&truth));
    let err = if d.value.dim() == truth.dim() {
        rel_err(ArrayView1::from(&dv[..]), ArrayView1::from(&tv[..]))
    } else {
        f64::INFINITY
    };
    let tol = validation_tol(d.cond);
    let passed = err <= tol;
    let verdict = if passed { "PASSED" } else { "FAILED" };
    let used: Vec<usize> = d.used.iter().map(|w| w + 1).collect();
    log::info!(
        "[rank 0] decoded AᵀB from ranks {used:?}: rel. error {err:.3e} vs uncoded (cond {:.3e}, tolerance {tol:.1e}): {verdict}",
        d.cond
    );
    let validation = vec![
        ("check".into(), AttrValue::Str(verdict.into())),
        ("verdict".into(), AttrValue::Str(verdict.into())),
        ("rel_err".into(), AttrValue::F64(err)),
        ("tolerance".into(), AttrValue::F64(tol)),
        ("cond".into(), AttrValue::F64(d.cond)),
        ("used_workers".into(), AttrValue::Str(format!("{used:?}"))),
    ];
    rec.set(Metric::Iteration, 0.0);
    rec.set(Metric::WallS, wall);
    rec.set(Metric::ElapsedS, wall);
    rec.set(Metric::DecodeS, decode_s);
    rec.set(Metric::NResponders, arrived.len() as f64);
    rec.set(Metric::Exact, 1.0);
    rec.set(Metric::Cond, d.cond);
    rec.set(Metric::GradRelErr, err);
    Ok((validation, passed, (d.value, err, d.cond, used)))
}

/// Rank 0: post the shares, collect until the threshold, decode, check, write, stop.
fn coordinate(
    world: &World,
    cfg: &MatmulConfig,
    code: &PolyCode,
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    shares: &[Share],
    writer: RunWriter,
) -> Result<i32> {
    let n = cfg.workers();
    let mut c = Collector::new(
        world.transport(),
        CollectorSpec::one_message(
            n,
            vec![shares.iter().map(|s| s.a.ncols() * s.b.ncols()).collect()],
            cfg.job.deadline(),
            cfg.job.max_wait(),
        ),
    );
    let t0 = Instant::now();
    let packed: Vec<Vec<f64>> = shares.iter().map(pack).collect();
    c.begin_each(
        0,
        0,
        0,
        |w| packed[w].len(),
        |w, buf| buf.copy_from_slice(&packed[w]),
    );
    let mut rule = Threshold {
        need: code.threshold(),
        shares,
        arrived: Vec::new(),
    };
    let collected = c
        .collect::<Error>(&mut rule, None, &mut || Ok(()))
        .and_then(|got| match got {
            Collected::Decodable => Ok(()),
            _ => Err(Error::Check(
                "internal: a product round ended undecoded".into(),
            )),
        });
    c.end();
    let mut rec = IterationRecord::new(n);
    let checked =
        collected.and_then(|()| decode_and_check(code, a, b, &rule.arrived, t0, &mut rec));
    finish(cfg, code, &mut c, writer, rec, checked)
}

/// Stop the workers, write the results and the product, report.
fn finish<T: crate::comm::Transport>(
    cfg: &MatmulConfig,
    code: &PolyCode,
    c: &mut Collector<T>,
    mut writer: RunWriter,
    mut rec: IterationRecord,
    checked: Result<Checked>,
) -> Result<i32> {
    let (validation, passed, product, result) = match checked {
        Ok((v, p, prod)) => (v, p, Some(prod), Ok(())),
        Err(e) => (
            vec![
                ("check".to_string(), AttrValue::Str("FAILED".into())),
                ("verdict".to_string(), AttrValue::Str("FAILED".into())),
            ],
            false,
            None,
            Err(e),
        ),
    };
    super::record_round(&mut rec, c.round());
    // Shutdown: STOP, reconcile counts, drain.
    let exit = i32::from(!(result.is_ok() && passed));
    let unreconciled = c.shutdown(exit, cfg.job.shutdown_bound())?;
    let late = c.take_late();
    for l in &late {
        writer.append_late(&late_row(l));
    }
    writer.append(&rec)?;
    if let Some((m, err, cond, used)) = &product {
        crate::io::matrix::write_matrix(
            &cfg.job.out.join("product.h5"),
            "C",
            m.view(),
            &[
                ("rel_err".into(), AttrValue::F64(*err)),
                ("cond".into(), AttrValue::F64(*cond)),
                ("code".into(), AttrValue::Str(code.family().name().into())),
                ("used_workers".into(), AttrValue::Str(format!("{used:?}"))),
            ],
            true,
        )?;
    }
    let path = writer.path().to_path_buf();
    writer.finish(&FinalRecord {
        status: if exit == 0 { "complete" } else { "failed" }.into(),
        w_final: ndarray::Array1::zeros(0),
        validation,
        summary: vec![
            ("late".into(), AttrValue::U64(late.len() as u64)),
            (
                "unreconciled_workers".into(),
                AttrValue::Str(format!("{unreconciled:?}")),
            ),
        ],
        per_worker: Vec::new(),
        adapt: None,
    })?;
    super::abort_if_unreconciled(&unreconciled, &path, 3);
    result?;
    if !passed {
        return Err(Error::Check(format!(
            "matmul validation FAILED: the decoded AᵀB differs from the uncoded product beyond the tolerance; see /validation in {}",
            path.display()
        )));
    }
    if let Some((_, err, cond, used)) = product {
        println!(
            "matmul: {} decoded AᵀB from ranks {used:?} (cond {cond:.3e}, rel. error {err:.3e}); validation PASSED; results: {}, {}",
            code.family(),
            path.display(),
            cfg.job.out.join("product.h5").display()
        );
    }
    Ok(0)
}
