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
//!
//! For the approximate codes (`expander`, `bgc`, `frc-approx`, `stochastic`) `verify` samples
//! `--sets` (default 1,000) distinct seeded random responder sets of size n − s per s (all of
//! them when there are no more) and prints, per s, the bound where the code has one, and the
//! mean and worst err(F) = ‖B_Fᵀa − 1‖₂ of the one-step and the optimal decoder. It passes
//! when, on every sampled set, both decoders meet the bound, the optimal decoder is no worse than
//! one-step, and the decoded gradient carries exactly the error reported (ĝ − g = (B_Fᵀa − 1)ᵀG);
//! otherwise it exits non-zero naming the first failing set. `-s A..B` (inclusive) checks every
//! s in the range, for every code.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::cli::{CodeArgs, CodesCommand, ShowArgs};
use crate::coding::{self, ApproxCode, CodeError, CodeKind, CodeOptions, GradientCode};
use crate::error::{Error, Result};
use crate::io::results::AttrValue;

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
            let mut failures = Vec::new();
            if is_table_code(args.code) {
                let report = verify_approx(args)?;
                if !report.passed() {
                    failures.push(report.failure_message());
                }
            } else {
                // every s must be valid before anything is printed
                for s in args.stragglers.values() {
                    build(args, s)?;
                }
                for s in args.stragglers.values() {
                    if args.stragglers.single().is_none() {
                        println!("\n== s = {s}");
                    }
                    let report = verify(args, s)?;
                    if !report.passed() {
                        failures.push(report.failure_message());
                    }
                }
            }
            match failures.first() {
                None => Ok(()),
                Some(first) if failures.len() == 1 => Err(Error::Check(first.clone())),
                Some(first) => Err(Error::Check(format!(
                    "{first} (and {} more s failed)",
                    failures.len() - 1
                ))),
            }
        }
    }
}

/// The approximate codes verify reports per s as a table of bound / one-step / optimal.
fn is_table_code(kind: CodeKind) -> bool {
    kind.takes_degree()
}

fn options(args: &CodeArgs) -> CodeOptions {
    CodeOptions {
        degree: args.degree,
        decoder: args.decoder,
        straggle_prob: args.straggle_prob,
        split: args.split,
        speeds: args.worker_speeds.as_ref().map(|v| v.0.clone()),
    }
}

fn build(args: &CodeArgs, s: usize) -> Result<Box<dyn GradientCode>> {
    Ok(coding::build_with(
        args.code,
        args.workers,
        s,
        args.seed,
        &options(args),
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

fn header(code: &dyn GradientCode, args: &CodeArgs, s: impl std::fmt::Display) -> String {
    let seeded = [
        CodeKind::CyclicRepetition,
        CodeKind::Hetero,
        CodeKind::Expander,
        CodeKind::Bgc,
    ];
    let seed = if seeded.contains(&code.kind()) {
        format!("seed {}", args.seed)
    } else {
        "no seed used".into()
    };
    format!(
        "code {}: n = {} workers, k = {} partitions, s = {} stragglers ({seed})",
        code.kind(),
        code.n_workers(),
        code.n_partitions(),
        s
    )
}

/// Notes on what a code promises, printed by show and verify.
fn notes(code: &dyn GradientCode, given_s: usize) -> Vec<String> {
    let mut v = Vec::new();
    let s = code.max_stragglers();
    match code.kind() {
        CodeKind::Uncoded if given_s > 0 => v.push(format!(
            "note: uncoded waits for all n = {} workers: it tolerates 0 stragglers (s = {given_s} is ignored)",
            code.n_workers(),
        )),
        CodeKind::IgnoreStragglers if s > 0 => v.push(format!(
            "note: ignore-stragglers is approximate by design: it scales the first n − s = {} \
             plain gradients by n/(n − s) = {:.4}",
            code.n_workers() - s,
            code.n_workers() as f64 / (code.n_workers() - s) as f64
        )),
        kind if kind.takes_degree() => v.push(format!(
            "note: {kind} is approximate: it stops after n − s = {} responders and reports err(F) \
             = ‖B_Fᵀa − 1‖₂",
            code.n_workers() - s
        )),
        _ => {}
    }
    if let Some(summary) = code.summary() {
        v.push(format!("{}: {summary}", code.kind()));
    }
    v
}

/// `gradcode codes show`.
fn show(show: &ShowArgs) -> Result<()> {
    let args = &show.code;
    let Some(s) = args.stragglers.single() else {
        return Err(CodeError::invalid(
            args.code,
            format!(
                "codes show takes one s, not the range {} (ranges are for codes verify)",
                args.stragglers
            ),
        )
        .into());
    };
    let code = build(args, s)?;
    print!("{}", render(code.as_ref(), args, s));
    if let Some(path) = &show.out {
        write_b(code.as_ref(), args.seed, path, show.force)?;
        println!(
            "wrote /B ({} × {}) to {}",
            code.n_workers(),
            code.n_partitions() * code.split(),
            path.display()
        );
    }
    Ok(())
}

/// The text `show` prints: header, B with aligned columns, the assignment.
pub fn render(code: &dyn GradientCode, args: &CodeArgs, s: usize) -> String {
    use std::fmt::Write;
    let (n, k, m) = (code.n_workers(), code.n_partitions(), code.split());
    let b = code.matrix();
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(code, args, s));
    for note in notes(code, s) {
        let _ = writeln!(out, "{note}");
    }
    // A split code has a column per (partition j, piece u): "pj.u".
    let names: Vec<String> = (0..k * m)
        .map(|c| match m {
            1 => format!("p{c}"),
            _ => format!("p{}.{}", c / m, c % m),
        })
        .collect();
    let cells: Vec<Vec<String>> = (0..n)
        .map(|i| (0..k * m).map(|j| fmt_num(b[[i, j]])).collect())
        .collect();
    let width = cells
        .iter()
        .flatten()
        .map(|c| c.len())
        .chain(names.iter().map(|c| c.len()))
        .max()
        .unwrap_or(1);
    let label = format!("w{}", n.saturating_sub(1)).len().max(2);
    if m == 1 {
        let _ = writeln!(out, "\nB ({n} × {k}; row = worker, column = partition):");
    } else {
        let _ = writeln!(
            out,
            "\nB ({n} × {}; row = worker, column pj.u = piece u of partition j):",
            k * m
        );
    }
    let _ = write!(out, "{:label$}", "");
    for name in &names {
        let _ = write!(out, "  {name:>width$}");
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
            let coefs: Vec<String> = code
                .coefficients(w)
                .chunks(m)
                .map(|c| {
                    let c: Vec<String> = c.iter().map(|&v| fmt_num(v)).collect();
                    match m {
                        1 => c.join(", "),
                        _ => format!("[{}]", c.join(", ")),
                    }
                })
                .collect();
            (format!("w{w}"), parts.join(", "), coefs.join(", "))
        })
        .collect();
    let pw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(10);
    let label = label.max(6);
    let what = match m {
        1 => "coefficients",
        _ => "coefficients [piece 0, …, piece m − 1] per partition",
    };
    let _ = writeln!(out, "  {:<label$}  {:<pw$}  {what}", "worker", "partitions");
    for (w, p, c) in rows {
        let _ = writeln!(out, "  {w:<label$}  {p:<pw$}  {c}");
    }
    out
}

/// Write B to `/B` of a new HDF5 file (refusing to overwrite without `--force`).
fn write_b(code: &dyn GradientCode, seed: u64, path: &Path, force: bool) -> Result<()> {
    let attrs = [
        ("code", AttrValue::Str(code.kind().name().into())),
        ("n", AttrValue::U64(code.n_workers() as u64)),
        ("k", AttrValue::U64(code.n_partitions() as u64)),
        ("s", AttrValue::U64(code.max_stragglers() as u64)),
        ("seed", AttrValue::U64(seed)),
        ("split", AttrValue::U64(code.split() as u64)),
    ]
    .map(|(k, v)| (k.to_string(), v));
    crate::io::matrix::write_matrix(path, "B", code.matrix().view(), &attrs, force)?;
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
pub fn verify(args: &CodeArgs, s: usize) -> Result<VerifyReport> {
    let code = build(args, s)?;
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
    println!("{}", header(code.as_ref(), args, s));
    for note in notes(code.as_ref(), s) {
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
    // A split code's message is one piece long: VERIFY_COLS values per piece.
    let pieces = code.split();
    let cols = VERIFY_COLS * pieces;
    let g: Array2<f64> = Array2::from_shape_fn((k, cols), |_| StandardNormal.sample(&mut rng));
    let full = g.sum_axis(Axis(0));
    let full_norm = full.dot(&full).sqrt().max(f64::MIN_POSITIVE);
    let b = code.matrix();
    let mut report = VerifyReport {
        code: code.kind(),
        n,
        s,
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
    for f in &sets {
        report.sets_checked += 1;
        let decodable = code.is_decodable(f);
        let d = code.decode(f)?;
        let msgs: Vec<Array1<f64>> = f
            .iter()
            .map(|&w| {
                let mut msg = Array1::<f64>::zeros(VERIFY_COLS);
                code.encode_into(w, g.view(), msg.view_mut());
                msg
            })
            .collect();
        let views: Vec<_> = msgs.iter().map(|m| m.view()).collect();
        let mut est = Array1::<f64>::zeros(cols);
        coding::combine_into(&d, &views, est.view_mut());
        let err = &est - &full;
        let rel = err.dot(&err).sqrt() / full_norm;
        // r = B_Fᵀa − 1 from the dense B, independently of the decoder's own residual (split
        // codes: B_Fᵀa_u − t_u for every piece u, stacked)
        let mut r = Array1::<f64>::zeros(k * pieces * pieces);
        for u in 0..pieces {
            let mut ru = r.slice_mut(ndarray::s![u * k * pieces..(u + 1) * k * pieces]);
            for (c, x) in ru.iter_mut().enumerate() {
                if c % pieces == u {
                    *x = -1.0;
                }
            }
            for (&w, &a) in d.responders.iter().zip(d.piece(u)) {
                ru.scaled_add(a, &b.row(w));
            }
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
        println!("tolerance            check error and |residual − ‖B_Fᵀa − 1‖₂| ≤ {VERIFY_TOL:e}");
    } else {
        println!("worst relative error {:.3e}", report.worst_rel_err);
        println!(
            "tolerance            relative error ≤ {VERIFY_TOL:e} on random partial gradients, \
             and the decoder reports the set exact"
        );
    }
    println!("time                 {elapsed:.3} s");
    if report.passed() {
        println!("PASSED");
    } else {
        println!("FAILED: {} of {} sets", report.failed, report.sets_checked);
    }
    Ok(report)
}

/// One s of the approximate-code table printed by `verify`.
#[derive(Debug, Clone)]
pub struct ApproxRow {
    pub s: usize,
    pub sets_checked: usize,
    /// Whether every responder set of size n − s was checked (else a seeded sample).
    pub exhaustive: bool,
    /// The code's bound on err(F) for |F| = n − s, where it has one.
    pub bound: Option<f64>,
    pub one_step_mean: f64,
    pub one_step_worst: f64,
    pub optimal_mean: f64,
    pub optimal_worst: f64,
    /// Worst deviation of a decoded gradient from the error it reports, relative to ‖g‖.
    pub worst_check_err: f64,
    pub failed: usize,
}

/// What `verify` found for an approximate code, per s.
#[derive(Debug, Clone)]
pub struct ApproxReport {
    pub code: CodeKind,
    pub n: usize,
    pub rows: Vec<ApproxRow>,
    pub first_failure: Option<String>,
}

impl ApproxReport {
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.failed == 0)
    }
    fn failure_message(&self) -> String {
        let failed: usize = self.rows.iter().map(|r| r.failed).sum();
        let checked: usize = self.rows.iter().map(|r| r.sets_checked).sum();
        format!(
            "codes verify FAILED: {failed} of {checked} straggler sets of {} (n = {}) break the \
             guarantees; first: {}",
            self.code,
            self.n,
            self.first_failure.as_deref().unwrap_or("?")
        )
    }
}

/// Slack allowed when comparing errors with bounds and with each other (rounding only).
const APPROX_SLACK: f64 = 1e-9;

/// `verify` for `expander`, `bgc`, `frc-approx` and `stochastic`: per s, bound / one-step /
/// optimal err(F) over seeded random responder sets of size n − s (see the module docs).
pub fn verify_approx(args: &CodeArgs) -> Result<ApproxReport> {
    let n = args.workers;
    let opts = options(args);
    if args.sets == 0 {
        return Err(CodeError::invalid(args.code, "--sets must be at least 1").into());
    }
    // build every code first, so a parameter error comes before any output
    let codes = args
        .stragglers
        .values()
        .map(|s| ApproxCode::new(args.code, n, s, args.seed, &opts).map(|c| (s, c)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let Some((_, first)) = codes.first() else {
        return Err(CodeError::invalid(args.code, "no s to check").into());
    };
    let k = first.n_partitions();
    println!("{}", header(first, args, args.stragglers));
    let summaries: Vec<(usize, Option<String>)> =
        codes.iter().map(|(s, c)| (*s, c.summary())).collect();
    let varies = summaries.windows(2).any(|w| w[0].1 != w[1].1);
    for (s, summary) in &summaries {
        if let Some(text) = summary {
            if varies {
                println!("{} (s = {s}): {text}", args.code);
            } else {
                println!("{}: {text}", args.code);
                break;
            }
        }
    }
    println!(
        "err(F) = ‖B_Fᵀa − 1‖₂ over {} seeded random responder sets of size n − s per s \
         (all of them when there are no more; seed {})",
        args.sets, args.seed
    );
    if first.lambda().is_some() {
        println!("bound = (λ/d)·√(ns/(n−s)); both decoders must meet it on every set");
    }
    println!(
        "{:>4}  {:>6}  {:>7}  {:>13}  {:>14}  {:>12}  {:>13}",
        "s", "sets", "bound", "one-step mean", "one-step worst", "optimal mean", "optimal worst"
    );
    let started = Instant::now();
    let mut report = ApproxReport {
        code: args.code,
        n,
        rows: Vec::new(),
        first_failure: None,
    };
    for (s, code) in &codes {
        let row = verify_approx_s(code, *s, args, &mut report.first_failure)?;
        let bound = row.bound.map_or("-".into(), |b| format!("{b:.3}"));
        println!(
            "{:>4}  {:>6}  {:>7}  {:>13.3}  {:>14.3}  {:>12.3}  {:>13.3}",
            s,
            row.sets_checked,
            bound,
            row.one_step_mean,
            row.one_step_worst,
            row.optimal_mean,
            row.optimal_worst
        );
        report.rows.push(row);
    }
    let worst_check = report
        .rows
        .iter()
        .map(|r| r.worst_check_err)
        .fold(0.0, f64::max);
    println!(
        "worst check error    {worst_check:.3e} (decoded − reported error, relative to ‖g‖; k = {k})"
    );
    println!(
        "time                 {:.3} s",
        started.elapsed().as_secs_f64()
    );
    if report.passed() {
        println!("PASSED");
    } else {
        let failed: usize = report.rows.iter().map(|r| r.failed).sum();
        println!("FAILED: {failed} sets");
    }
    Ok(report)
}

/// One row of [`verify_approx`]; records the first failure (naming the set) in `first_failure`.
fn verify_approx_s(
    code: &ApproxCode,
    s: usize,
    args: &CodeArgs,
    first_failure: &mut Option<String>,
) -> Result<ApproxRow> {
    let (n, k) = (code.n_workers(), code.n_partitions());
    let m = n - s;
    let total = binomial(n, m);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    rng.set_stream(s as u64);
    let exhaustive = total <= args.sets as u128;
    let sets = if exhaustive {
        all_subsets(n, m)
    } else {
        sample_subsets(n, m, args.sets, &mut rng)
    };
    let g: Array2<f64> =
        Array2::from_shape_fn((k, VERIFY_COLS), |_| StandardNormal.sample(&mut rng));
    let full = g.sum_axis(Axis(0));
    let full_norm = full.dot(&full).sqrt().max(f64::MIN_POSITIVE);
    let b = code.matrix();
    let mut msg = Array1::<f64>::zeros(VERIFY_COLS);
    // (decoded − reported error) relative to ‖g‖, and |reported − recomputed residual|
    let mut check = |d: &coding::Decoding| -> (f64, bool) {
        let mut est = Array1::<f64>::zeros(VERIFY_COLS);
        let mut r = Array1::<f64>::from_elem(k, -1.0);
        for (&w, &a) in d.responders.iter().zip(&d.weights) {
            code.encode_into(w, g.view(), msg.view_mut());
            est.scaled_add(a, &msg);
            r.scaled_add(a, &b.row(w));
        }
        let dev = &est - &full - r.dot(&g);
        let err = dev.dot(&dev).sqrt() / full_norm;
        let r_norm = r.dot(&r).sqrt();
        let res_ok = (d.residual - r_norm).abs() <= VERIFY_TOL * r_norm.max(1.0);
        (err, err <= VERIFY_TOL && res_ok)
    };
    let mut row = ApproxRow {
        s,
        sets_checked: 0,
        exhaustive,
        bound: None,
        one_step_mean: 0.0,
        one_step_worst: 0.0,
        optimal_mean: 0.0,
        optimal_worst: 0.0,
        worst_check_err: 0.0,
        failed: 0,
    };
    for f in &sets {
        row.sets_checked += 1;
        let one = code.decode_one_step(f)?;
        let opt = code.decode_optimal(f)?;
        let bound = code.error_bound(f);
        row.bound = bound;
        let (c1, ok1) = check(&one);
        let (c2, ok2) = check(&opt);
        row.worst_check_err = row.worst_check_err.max(c1).max(c2);
        row.one_step_mean += one.residual;
        row.optimal_mean += opt.residual;
        row.one_step_worst = row.one_step_worst.max(one.residual);
        row.optimal_worst = row.optimal_worst.max(opt.residual);
        let within = |e: f64, limit: f64| e <= limit * (1.0 + APPROX_SLACK) + APPROX_SLACK;
        let mut why = Vec::new();
        if let Some(bd) = bound {
            if !within(one.residual, bd) {
                why.push(format!("one-step err {:.6} > bound {bd:.6}", one.residual));
            }
            if !within(opt.residual, bd) {
                why.push(format!("optimal err {:.6} > bound {bd:.6}", opt.residual));
            }
        }
        if !within(opt.residual, one.residual) {
            why.push(format!(
                "optimal err {:.6} > one-step err {:.6}",
                opt.residual, one.residual
            ));
        }
        if !(ok1 && ok2) {
            why.push(format!(
                "decoded gradient differs from the reported error by {:.3e}",
                c1.max(c2)
            ));
        }
        if !code.is_decodable(f) {
            why.push("is_decodable is false at n − s responders".into());
        }
        if !why.is_empty() {
            row.failed += 1;
            if first_failure.is_none() {
                let stragglers: Vec<usize> =
                    (0..n).filter(|w| f.binary_search(w).is_err()).collect();
                *first_failure = Some(format!(
                    "s = {s}, stragglers {stragglers:?} (0-based workers): {}",
                    why.join("; ")
                ));
            }
        }
    }
    let count = row.sets_checked.max(1) as f64;
    row.one_step_mean /= count;
    row.optimal_mean /= count;
    Ok(row)
}
