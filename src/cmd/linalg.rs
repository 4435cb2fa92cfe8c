//! Coded linear algebra commands: `gradcode codes cond`.
//!
//! `codes cond --family F -n N -k K` builds the generator of family F (see [`crate::linalg`]),
//! computes cond(G_F) for every k-subset F of the n workers (or a sample: the n
//! contiguous-erasure sets, then seeded random distinct subsets, `--max-subsets` in all) and
//! prints the worst, the mean and the geometric mean, and the worst subset. `--family all` prints
//! one table row per family instead.

use std::time::Instant;

use crate::cli::CondArgs;
use crate::error::Result;
use crate::linalg::{survey, CondSurvey, Family, MdsCode};

/// A condition number: 2 decimals below 1e4, else scientific.
fn fmt_cond(v: f64) -> String {
    if v < 1e4 {
        format!("{v:.2}")
    } else {
        format!("{v:.2e}")
    }
}

fn describe(code: &MdsCode) -> String {
    let (n, k, r) = (code.n_workers(), code.threshold(), code.blocks_per_worker());
    let q = match code.family() {
        Family::Rotation => format!(", 2 × 2 rotations by 2π/{}", code.q()),
        Family::Circulant => format!(", {0} × {0} cyclic permutation, q = {0}", code.q()),
        _ => String::new(),
    };
    format!(
        "family {}: n = {n} workers, any k = {k} decode; {r} coded block(s) per worker, data in \
         {} blocks{q}",
        code.family(),
        code.data_blocks()
    )
}

fn scope(s: &CondSurvey, seed: u64) -> String {
    if s.exhaustive {
        format!(
            "checked all C({}, {}) = {} subsets of size {}",
            s.n, s.k, s.total, s.k
        )
    } else {
        format!(
            "checked a sample of {} distinct subsets of size {} out of C({}, {}) = {} \
             ({} contiguous-erasure sets, then seeded random ones, seed {seed})",
            s.checked, s.k, s.n, s.k, s.total, s.n
        )
    }
}

/// `gradcode codes cond`.
pub fn cond(args: &CondArgs) -> Result<()> {
    let families: Vec<Family> = if args.family.trim().eq_ignore_ascii_case("all") {
        Family::ALL.to_vec()
    } else {
        vec![args.family.parse::<Family>()?]
    };
    let mut codes = Vec::with_capacity(families.len());
    for f in &families {
        codes.push(MdsCode::new(*f, args.workers, args.k)?);
    }
    if codes.len() == 1 {
        let code = &codes[0];
        println!("{}", describe(code));
        let t0 = Instant::now();
        let s = survey(code, args.max_subsets, args.seed)?;
        println!("{}", scope(&s, args.seed));
        if s.undecodable > 0 {
            println!(
                "undecodable subsets {} of {} (they miss a block; cond over the others)",
                s.undecodable, s.checked
            );
        }
        println!("worst cond      {}", fmt_cond(s.worst));
        println!("mean cond       {}", fmt_cond(s.mean));
        println!("geo-mean cond   {}", fmt_cond(s.geo_mean));
        println!("worst subset    {:?}", s.worst_subset);
        println!("time            {:.3} s", t0.elapsed().as_secs_f64());
        return Ok(());
    }
    println!(
        "worst and mean cond(G_F) over k-subsets, n = {}, k = {}",
        args.workers, args.k
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8}  subsets",
        "family", "worst", "mean", "geo-mean", "blocks"
    );
    for code in &codes {
        let s = survey(code, args.max_subsets, args.seed)?;
        let how = if s.exhaustive { "all" } else { "sampled" };
        let und = if s.undecodable > 0 {
            format!(", {} undecodable", s.undecodable)
        } else {
            String::new()
        };
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>8}  {} {how}{und}",
            code.family().name(),
            fmt_cond(s.worst),
            fmt_cond(s.mean),
            fmt_cond(s.geo_mean),
            code.data_blocks(),
            s.checked
        );
    }
    Ok(())
}
