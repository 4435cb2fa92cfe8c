//! Peak memory under `mpirun`: every rank's peak resident memory is in the results
//! (`/summary` `rank0_peak_rss_mib`, `/summary/peak_rss_mib` per worker), and `--max-memory-mb`
//! holds when measured that way (issue 21: the micro-batches keep the activations under the
//! budget, "measured by peak RSS in a test").
//!
//! The budget counts gradcode's own buffers; the MPI library, OpenBLAS, libhdf5 and the binary
//! itself come on top. So a rank's peak in a bounded run, minus the same rank's peak in a run
//! that allocates next to nothing (logistic regression on the same data), must stay within the
//! budget.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{mpirun, output_text, serial, workdir, BIN};

/// MiB (what `ru_maxrss` gives, / 1024) in MB (what `--max-memory-mb` counts).
const MB_PER_MIB: f64 = 1.048_576;

fn data() -> PathBuf {
    let p = workdir().join("wide.h5");
    let o = Command::new(BIN)
        .args(["data", "synth", "--kind", "logistic", "--rows", "2000"])
        .args(["--features", "64", "--test-rows", "100", "--seed", "3"])
        .arg("--out")
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    p
}

/// Train 2 iterations with 2 uncoded workers and `extra` flags into `out`; the output.
fn train(data: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train".to_string(),
        "--data".into(),
        data.display().to_string(),
        "--code".into(),
        "uncoded".into(),
        "--iterations".into(),
        "2".into(),
        "--force".into(),
        "--out".into(),
        workdir().join(out).display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    mpirun(3, &args, 120)
}

/// Rank 0's peak and each worker's, in MiB, from a finished run.
fn peaks(out: &str) -> (f64, Vec<f64>) {
    let f = hdf5::File::open(workdir().join(out).join("run.h5")).unwrap();
    let s = f.group("summary").unwrap();
    let rank0: f64 = s.attr("rank0_peak_rss_mib").unwrap().read_scalar().unwrap();
    let workers: Vec<f64> = s.dataset("peak_rss_mib").unwrap().read_raw().unwrap();
    (rank0, workers)
}

fn final_loss(out: &str) -> f64 {
    let f = hdf5::File::open(workdir().join(out).join("run.h5")).unwrap();
    let s = f.group("summary").unwrap();
    s.attr("final_train_loss").unwrap().read_scalar().unwrap()
}

#[test]
fn every_rank_records_its_peak_memory_and_the_budget_holds_under_it() {
    let _g = serial();
    let data = data();
    let mlp = [
        "--model",
        "mlp",
        "--hidden",
        "1024,1024",
        "--batch",
        "256",
        "--seed",
        "5",
    ];

    // Next to nothing allocated: the libraries' and the binary's own share.
    let o = train(&data, "base", &["--model", "logistic"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let (base0, base_w) = peaks("base");
    assert_eq!(base_w.len(), 2);
    assert!(
        base0 > 1.0 && base_w.iter().all(|&p| p > 1.0),
        "{base0} {base_w:?}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("peak memory         rank 0 "),
        "{}",
        output_text(&o)
    );

    // The smallest budget that could work, as the refusal names it; one MB above it leaves room
    // for a few dozen of the 33 kB activation rows instead of the default block of 256.
    let o = train(
        &data,
        "refused",
        &[&mlp[..], &["--max-memory-mb", "0.01"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let needle = "the smallest budget that could work is --max-memory-mb ";
    let at = err.find(needle).unwrap_or_else(|| panic!("{err}")) + needle.len();
    let smallest: f64 = err[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let budget = smallest + 1.0;

    let o = train(&data, "free", &mlp);
    assert!(o.status.success(), "{}", output_text(&o));
    let (_, free_w) = peaks("free");
    let o = train(
        &data,
        "bounded",
        &[&mlp[..], &["--max-memory-mb", &budget.to_string()]].concat(),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let (bounded0, bounded_w) = peaks("bounded");

    eprintln!(
        "peak MiB: rank 0 {base0} without buffers, {bounded0} under {budget} MB; \
         workers {base_w:?} without buffers, {free_w:?} without a budget, {bounded_w:?} under it"
    );
    // Within the budget, every rank, with 5 % for the allocator's rounding.
    let over = |peak: f64, base: f64| (peak - base) * MB_PER_MIB;
    assert!(
        over(bounded0, base0) <= budget * 1.05,
        "rank 0: {bounded0} MiB peak, {base0} MiB without buffers, budget {budget} MB"
    );
    for (w, (&p, &b)) in bounded_w.iter().zip(&base_w).enumerate() {
        assert!(
            over(p, b) <= budget * 1.05,
            "rank {}: {p} MiB peak, {b} MiB without buffers, budget {budget} MB",
            w + 1
        );
    }
    // The budget bit: the workers' activation blocks shrank (256 rows of 33 kB is 8.6 MB).
    for (w, (&f, &b)) in free_w.iter().zip(&bounded_w).enumerate() {
        assert!(
            f - b >= 4.0,
            "rank {}: {f} MiB without a budget, {b} MiB under {budget} MB",
            w + 1
        );
    }
    // Micro-batches change the sums' order only.
    let (a, b) = (final_loss("free"), final_loss("bounded"));
    assert!((a - b).abs() <= 1e-9 * a.abs(), "{a} vs {b}");
}
