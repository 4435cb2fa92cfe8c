//! `gradcode codes show | verify`.
//!
//! `show` prints the code matrix B and each worker's partitions and coefficients, and with
//! `--out B.h5` writes B to `/B` (attributes `code`, `n`, `k`, `s`, `seed`).
//!
//! `verify` decodes every responder set of size n − s (all of them when there are at most
//! 10,000, else a seeded sample of 10,000 distinct sets), multiplies the weights into the coded
//! messages of random partial gradients G (k × 8), and compares with the full gradient 1ᵀG. It
//! prints the input summary first, then the worst residual, condition number and relative error,
//! and a PASSED/FAILED verdict; a failure is an error (non-zero exit).
//! For `ignore-stragglers`, approximate by design, the check is that the decoded gradient carries
//! exactly the error the code reports: ĝ − g = (B_Fᵀa − 1)ᵀG and residual = ‖B_Fᵀa − 1‖₂.
//! For `uncoded` (which tolerates no stragglers whatever s is) the one set of all n is checked.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::cli::{CodeArgs, CodesCommand};
use crate::coding::{self, CodeKind, GradientCode};
use crate::error::{Error, Result};
use crate::io::IoError;

/// Relative error above which a responder set fails `verify`.
pub const VERIFY_TOL: f64 = 1e-8;
/// Responder sets `verify` checks at most (all of them when there are no more).
pub const VERIFY_MAX_SETS: usize = 10_000;
/// Columns of the random partial gradients G used by `verify`.
const VERIFY_COLS: usize = 8;

/// Run a `codes` subcommand.
pub fn run(cmd: &CodesCommand) -> Result<()> {
    match cmd {
        CodesCommand::Show(args) => show(args),
        CodesCommand::Cond(args) => crate::cmd::linalg::cond(args),
        CodesCommand::Verify(args) => {
            let report = verify(args)?;
            if report.passed() {
                Ok(())
            } else {
                Err(Error::Check(report.failure_message()))
            }
        }
    }
}

fn build(args: &CodeArgs) -> Result<Box<dyn GradientCode>> {
    Ok(coding::build(
        args.code,
        args.workers,
        args.stragglers,
        args.seed,
    )?)
}

/// A positive figure such as a condition number: 3 decimals below 1e4, else scientific.
fn fmt_big(v: f64) -> String {
    if v < 1e4 {
        format!("{v:.3}")
    } else {
        format!("{v:.3e}")
    }
}

/// A number for a matrix or coefficient column: "0" for zero, 4 decimals, or scientific.
fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.fract() == 0.0 && v.abs() < 1e5 {
        format!("{v:.0}")
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn header(code: &dyn GradientCode, args: &CodeArgs) -> String {
    let seed = if code.kind() == CodeKind::CyclicRepetition {
        format!("seed {}", args.seed)
    } else {
        "no seed used".into()
    };
    format!(
        "code {}: n = {} workers, k = {} partitions, s = {} stragglers ({seed})",
        code.kind(),
        code.n_workers(),
        code.n_partitions(),
        args.stragglers
    )
}

/// Notes on what a code promises, printed by show and verify.
fn notes(code: &dyn GradientCode, args: &CodeArgs) -> Vec<String> {
    let mut v = Vec::new();
    match code.kind() {
        CodeKind::Uncoded if args.stragglers > 0 => v.push(format!(
            "note: uncoded waits for all n = {} workers: it tolerates 0 stragglers (s = {} is ignored)",
            code.n_workers(),
            args.stragglers
        )),
        CodeKind::IgnoreStragglers if args.stragglers > 0 => v.push(format!(
            "note: ignore-stragglers is approximate by design: it scales the first n − s = {} \
             plain gradients by n/(n − s) = {:.4}",
            code.n_workers() - args.stragglers,
            code.n_workers() as f64 / (code.n_workers() - args.stragglers) as f64
        )),
        _ => {}
    }
    v
}

/// `gradcode codes show`.
fn show(args: &CodeArgs) -> Result<()> {
    let code = build(args)?;
    print!("{}", render(code.as_ref(), args));
    if let Some(path) = &args.out {
        write_b(code.as_ref(), args, path)?;
        println!(
            "wrote /B ({} × {}) to {}",
            code.n_workers(),
            code.n_partitions(),
            path.display()
        );
    }
    Ok(())
}

/// The text `show` prints: header, B with aligned columns, the assignment.
pub fn render(code: &dyn GradientCode, args: &CodeArgs) -> String {
    use std::fmt::Write;
    let (n, k) = (code.n_workers(), code.n_partitions());
    let b = code.matrix();
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(code, args));
    for note in notes(code, args) {
        let _ = writeln!(out, "{note}");
    }
    let cells: Vec<Vec<String>> = (0..n)
        .map(|i| (0..k).map(|j| fmt_num(b[[i, j]])).collect())
        .collect();
    let width = cells
        .iter()
        .flatten()
        .map(|c| c.len())
        .chain((0..k).map(|j| format!("p{j}").len()))
        .max()
        .unwrap_or(1);
    let label = format!("w{}", n.saturating_sub(1)).len().max(2);
    let _ = writeln!(out, "\nB ({n} × {k}; row = worker, column = partition):");
    let _ = write!(out, "{:label$}", "");
    for j in 0..k {
        let _ = write!(out, "  {:>width$}", format!("p{j}"));
    }
    let _ = writeln!(out);
    for (i, row) in cells.iter().enumerate() {
        let _ = write!(out, "{:<label$}", format!("w{i}"));
        for c in row {
            let _ = write!(out, "  {c:>width$}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "\nassignment (worker i is MPI rank i + 1):");
    let rows: Vec<(String, String, String)> = (0..n)
        .map(|w| {
            let parts: Vec<String> = code.assignment(w).iter().map(|p| p.to_string()).collect();
            let coefs: Vec<String> = code.coefficients(w).iter().map(|&c| fmt_num(c)).collect();
            (format!("w{w}"), parts.join(", "), coefs.join(", "))
        })
        .collect();
    let pw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(10);
    let label = label.max(6);
    let _ = writeln!(
        out,
        "  {:<label$}  {:<pw$}  coefficients",
        "worker", "partitions"
    );
    for (w, p, c) in rows {
        let _ = writeln!(out, "  {w:<label$}  {p:<pw$}  {c}");
    }
    out
}

/// Write B to `/B` of a new HDF5 file (refusing to overwrite without `--force`).
fn write_b(code: &dyn GradientCode, args: &CodeArgs, path: &Path) -> Result<()> {
    if path.exists() && !args.force {
        return Err(IoError::Exists {
            path: path.to_path_buf(),
        }
        .into());
    }
    let h5 = |e: hdf5::Error| Error::from(IoError::hdf5(path, e));
    let file = if args.force {
        hdf5::File::create(path)
    } else {
        hdf5::File::create_excl(path)
    }
    .map_err(h5)?;
    let b = code.matrix();
    let ds = file
        .new_dataset_builder()
        .with_data(&b)
        .create("B")
        .map_err(h5)?;
    let name: hdf5::types::VarLenUnicode = code
        .kind()
        .name()
        .parse()
        .map_err(|e| Error::from(IoError::hdf5(path, e)))?;
    ds.new_attr::<hdf5::types::VarLenUnicode>()
        .create("code")
        .and_then(|a| a.write_scalar(&name))
        .map_err(h5)?;
    for (key, v) in [
        ("n", code.n_workers() as u64),
        ("k", code.n_partitions() as u64),
        ("s", args.stragglers as u64),
        ("seed", args.seed),
    ] {
        ds.new_attr::<u64>()
            .create(key)
            .and_then(|a| a.write_scalar(&v))
            .map_err(h5)?;
    }
    file.close().map_err(h5)?;
    Ok(())
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub code: CodeKind,
    pub n: usize,
    pub s: usize,
    /// Size of the responder sets checked (n − tolerated stragglers).
    pub set_size: usize,
    pub sets_checked: usize,
    /// Whether every set of that size was checked (else a seeded sample).
    pub exhaustive: bool,
    pub worst_residual: f64,
    pub worst_condition: f64,
    /// Worst ‖ĝ − g‖/‖g‖.
    pub worst_rel_err: f64,
    /// Worst deviation from what the code promises (the error itself for exact codes).
    pub worst_check_err: f64,
    pub failed: usize,
    pub first_failure: Option<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
    fn failure_message(&self) -> String {
        format!(
            "codes verify FAILED: {} of {} responder sets of {} (n = {}, s = {}) miss the \
             tolerance {VERIFY_TOL:e}; first: {}",
            self.failed,
            self.sets_checked,
            self.code,
            self.n,
            self.s,
            self.first_failure.as_deref().unwrap_or("?")
        )
    }
}

/// C(n, m), saturating.
fn binomial(n: usize, m: usize) -> u128 {
    let m = m.min(n - m);
    let mut c: u128 = 1;
    for i in 0..m {
        c = c.saturating_mul((n - i) as u128) / (i as u128 + 1);
    }
    c
}

/// Every sorted subset of 0..n of size m (lexicographic).
fn all_subsets(n: usize, m: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = (0..m).collect();
    loop {
        out.push(cur.clone());
        // rightmost position that can still advance
        let Some(pos) = (0..m).rev().find(|&p| cur[p] < n - m + p) else {
            return out;
        };
        cur[pos] += 1;
        for q in pos + 1..m {
            cur[q] = cur[q - 1] + 1;
        }
    }
}

/// `count` distinct sorted subsets of 0..n of size m drawn from `rng` (needs C(n, m) > count).
fn sample_subsets(n: usize, m: usize, count: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut f = rand::seq::index::sample(rng, n, m).into_vec();
        f.sort_unstable();
        if seen.insert(f.clone()) {
            out.push(f);
        }
    }
    out
}

/// Check `code` on every responder set it promises to handle (or a seeded sample), printing
/// the summary; the caller turns a failed report into an error.
pub fn verify(args: &CodeArgs) -> Result<VerifyReport> {
    let code = build(args)?;
    let (n, k) = (code.n_workers(), code.n_partitions());
    let approximate = code.kind() == CodeKind::IgnoreStragglers;
    let m = n - code.max_stragglers();
    let total = binomial(n, m);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let exhaustive = total <= VERIFY_MAX_SETS as u128;
    let sets = if exhaustive {
        all_subsets(n, m)
    } else {
        sample_subsets(n, m, VERIFY_MAX_SETS, &mut rng)
    };
    println!("{}", header(code.as_ref(), args));
    for note in notes(code.as_ref(), args) {
        println!("{note}");
    }
    if exhaustive {
        println!("checking all C({n}, {m}) = {total} responder sets of size {m}");
    } else {
        println!(
            "checking a sample of {} distinct responder sets of size {m} out of C({n}, {m}) = {total} (seed {})",
            sets.len(),
            args.seed
        );
    }
    if approximate {
        println!(
            "ignore-stragglers is approximate: each set must carry exactly the error it reports, \
             ĝ − g = (B_Fᵀa − 1)ᵀG with residual ‖B_Fᵀa − 1‖₂ (relative check error ≤ {VERIFY_TOL:e})"
        );
    }

    let started = Instant::now();
    let g: Array2<f64> =
        Array2::from_shape_fn((k, VERIFY_COLS), |_| StandardNormal.sample(&mut rng));
    let full = g.sum_axis(Axis(0));
    let full_norm = full.dot(&full).sqrt().max(f64::MIN_POSITIVE);
    let b = code.matrix();
    let mut report = VerifyReport {
        code: code.kind(),
        n,
        s: args.stragglers,
        set_size: m,
        sets_checked: 0,
        exhaustive,
        worst_residual: 0.0,
        worst_condition: 0.0,
        worst_rel_err: 0.0,
        worst_check_err: 0.0,
        failed: 0,
        first_failure: None,
    };
    let mut msg = Array1::<f64>::zeros(VERIFY_COLS);
    for f in &sets {
        report.sets_checked += 1;
        let decodable = code.is_decodable(f);
        let d = code.decode(f)?;
        let mut est = Array1::<f64>::zeros(VERIFY_COLS);
        for (&w, &a) in d.responders.iter().zip(&d.weights) {
            code.encode_into(w, g.view(), msg.view_mut());
            est.scaled_add(a, &msg);
        }
        let err = &est - &full;
        let rel = err.dot(&err).sqrt() / full_norm;
        // r = B_Fᵀa − 1 from the dense B, independently of the decoder's own residual
        let mut r = Array1::<f64>::from_elem(k, -1.0);
        for (&w, &a) in d.responders.iter().zip(&d.weights) {
            r.scaled_add(a, &b.row(w));
        }
        let r_norm = r.dot(&r).sqrt();
        let (check, ok) = if approximate {
            let dev = &err - &r.dot(&g);
            let check = dev.dot(&dev).sqrt() / full_norm;
            let res_ok = (d.residual - r_norm).abs() <= VERIFY_TOL * r_norm.max(1.0);
            (check, check <= VERIFY_TOL && res_ok && decodable)
        } else {
            (rel, rel <= VERIFY_TOL && d.exact && decodable)
        };
        report.worst_residual = report.worst_residual.max(d.residual);
        if d.condition.is_finite() {
            report.worst_condition = report.worst_condition.max(d.condition);
        }
        report.worst_rel_err = report.worst_rel_err.max(rel);
        report.worst_check_err = report.worst_check_err.max(check);
        if !ok {
            report.failed += 1;
            if report.first_failure.is_none() {
                report.first_failure = Some(format!(
                    "responders {f:?}: is_decodable {decodable}, exact {}, residual {:.3e}, \
                     relative error {rel:.3e}",
                    d.exact, d.residual
                ));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("sets checked         {}", report.sets_checked);
    println!("worst residual       {:.3e}", report.worst_residual);
    println!("worst condition      {}", fmt_big(report.worst_condition));
    if approximate {
        println!(
            "worst relative error {:.3e} (the approximation, as promised)",
            report.worst_rel_err
        );
        println!(
            "worst check error    {:.3e} (decoded − promised, relative)",
            report.worst_check_err
        );
    } else {
        println!("worst relative error {:.3e}", report.worst_rel_err);
    }
    println!("time                 {elapsed:.3} s");
    if report.passed() {
        println!("PASSED");
    } else {
        println!("FAILED: {} of {} sets", report.failed, report.sets_checked);
    }
    Ok(report)
}
