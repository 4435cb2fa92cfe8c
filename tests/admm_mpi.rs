//! Integration tests of `gradcode admm` (pdADMM, issue 19): the real binary under `mpirun`,
//! each run under `timeout`, one MPI job at a time; tiny networks, a few iterations, seconds
//! each.
//!
//! - The MPI job reproduces the serial reference to 1e-9 per iteration (one layer per rank, and
//!   two layers per rank with 16-bit quantized exchange).
//! - Bad input is one error line and exit 2 on every rank: fewer ranks than layers, ρ ≤ 0, layer
//!   sizes that do not match the data, a run too big for the memory budget.
//! - Checkpoints: a run stopped at a checkpoint and resumed, and one interrupted by SIGUSR1
//!   (exit 75) and resumed, end bit-identical to an uninterrupted run.
//! - Bounded staleness with a slow layer rank and 8-bit exchange runs to the end, records its
//!   bytes (fewer than full precision) and the ages within the bound; `report` plots it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gradcode::io::results::{self, LayerMetric, Metric};

mod common;
use common::{
    assert_one_mpi_error, gradcode, mpirun, mpirun_direct, output_text, serial, wait_bounded,
    workdir,
};

/// A binary dataset: 240 training rows, 60 test rows, 8 features.
fn dataset() -> PathBuf {
    let p = workdir().join("admm.h5");
    if !p.exists() {
        let o = gradcode(&[
            "data",
            "synth",
            "--kind",
            "logistic",
            "--rows",
            "240",
            "--features",
            "8",
            "--test-rows",
            "60",
            "--seed",
            "3",
            "--out",
            &p.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", output_text(&o));
    }
    p
}

fn fresh(name: &str) -> PathBuf {
    let d = workdir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["admm", "--data"].iter().map(|s| s.to_string()).collect();
    a.push(dataset().display().to_string());
    a.extend(["--out".to_string(), out.display().to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_mpi(np: usize, out: &Path, extra: &[&str]) -> Output {
    mpirun(np, &args(out, extra), 120)
}

fn run_reference(out: &Path, extra: &[&str]) -> Output {
    let mut a = args(out, extra);
    a.push("--reference".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    gradcode(&a)
}

fn rows(out: &Path) -> results::RecordedRows {
    results::read_rows(&out.join("run.h5"), None).unwrap()
}

fn w_final(out: &Path) -> Vec<f64> {
    results::read_vector(&out.join("run.h5"), "model/w_final")
        .unwrap()
        .to_vec()
}

/// Every value of `a` within `tol` (relative) of `b`, NaN where `b` is NaN.
fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * (1.0 + y.abs());
        assert!(ok, "{what}[{i}]: {x} vs {y}");
    }
}

const NET: [&str; 10] = [
    "--layers",
    "8,6,5,2",
    "--iterations",
    "8",
    "--eval-every",
    "3",
    "--rho",
    "0.05",
    "--nu",
    "0.1",
];

#[test]
fn the_mpi_job_matches_the_serial_reference_per_iteration() {
    let _g = serial();
    for (np, layers, extra) in [
        (4, "8,6,5,2", vec![]),
        (
            3,
            "8,6,6,5,2",
            vec!["--layers-per-rank", "2", "--quantize-bits", "16"],
        ),
    ] {
        let mut flags: Vec<&str> = NET.to_vec();
        flags[1] = layers;
        flags.extend(extra.iter().copied());
        let (job, reference) = (
            fresh(&format!("match-{np}")),
            fresh(&format!("match-ref-{np}")),
        );
        let o = run_mpi(np, &job, &flags);
        assert!(o.status.success(), "{}", output_text(&o));
        let o = run_reference(&reference, &flags);
        assert!(o.status.success(), "{}", output_text(&o));
        let (a, b) = (rows(&job), rows(&reference));
        assert_eq!(a.len(), 8);
        for m in [
            Metric::Objective,
            Metric::Lagrangian,
            Metric::PrimalResidual,
            Metric::DualResidual,
            Metric::TrainAccuracy,
            Metric::TestAccuracy,
            Metric::TrainLoss,
        ] {
            close(
                &a.column(m).to_vec(),
                &b.column(m).to_vec(),
                1e-9,
                &format!("{np} ranks {m:?}"),
            );
        }
        for m in [
            LayerMetric::Phi,
            LayerMetric::PrimalResidual,
            LayerMetric::Theta,
        ] {
            close(
                &a.layer(m).iter().copied().collect::<Vec<_>>(),
                &b.layer(m).iter().copied().collect::<Vec<_>>(),
                1e-9,
                &format!("{np} ranks {m:?}"),
            );
        }
        close(&w_final(&job), &w_final(&reference), 1e-9, "w_final");
        // The reference's file says what it is; the job's records its layer ranks' traffic.
        assert_eq!(
            results::read_str_attr(&reference.join("run.h5"), "validation", "verdict").unwrap(),
            "REFERENCE"
        );
        assert_eq!(
            results::read_str_attr(&job.join("run.h5"), "validation", "verdict").unwrap(),
            "VALID"
        );
        assert!(a.column(Metric::BytesNeighbour).iter().all(|&v| v > 0.0));
        assert_eq!(a.workers(), np - 1);
        assert!(a.column(Metric::Objective)[7] < a.column(Metric::Objective)[0]);
    }
}

#[test]
fn bad_input_is_one_error_line_and_exit_2_on_every_rank() {
    let _g = serial();
    let out = fresh("bad");
    let cases: [(usize, &[&str], &str); 5] = [
        (3, &["--layers", "8,6,5,2"], "--layers-per-rank"),
        (4, &["--layers", "8,6,5,2", "--rho", "0"], "--rho = 0"),
        (
            4,
            &["--layers", "8,6,5,2", "--rho", "-0.001"],
            "--rho = -0.001",
        ),
        (4, &["--layers", "9,6,5,2"], "8 features"),
        // A run too big for the memory budget (RELIABILITY BI-9), named with its bytes.
        (
            4,
            &["--layers", "8,6,5,2", "--max-memory-mb", "0.01"],
            "--max-memory-mb 0.01 allows",
        ),
    ];
    for (np, flags, expect) in cases {
        let o = run_mpi(np, &out, flags);
        assert_one_mpi_error(&o, expect);
        assert_eq!(o.status.code(), Some(2), "{expect}: {}", output_text(&o));
        assert!(
            !out.join("run.h5").exists(),
            "{expect}: a results file was written"
        );
    }
    // The serial reference refuses the same sizes with the same line.
    let o = run_reference(&out, &["--layers", "8,6,3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::text(&o.stderr).contains("2 classes"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn checkpoints_resume_bit_identical_after_a_stop_and_after_sigusr1() {
    let _g = serial();
    // Every layer rank sleeps 40 ms per iteration, so the run lasts long enough to be signalled;
    // with --max-staleness 0 the delays do not change the arithmetic.
    let mut flags: Vec<&str> = NET.to_vec();
    flags.extend([
        "--checkpoint-every",
        "3",
        "--straggler-model",
        "fixed:1,2,3:40",
    ]);
    let with = |iterations: &'static str| {
        let mut f = flags.clone();
        f[3] = iterations;
        f
    };
    let straight = fresh("ckpt-straight");
    let o = run_mpi(4, &straight, &with("40"));
    assert!(o.status.success(), "{}", output_text(&o));

    // Stopped after 7 iterations (checkpoints at 3 and 6), resumed to 40: from 6.
    let cut = fresh("ckpt-cut");
    let o = run_mpi(4, &cut, &with("7"));
    assert!(o.status.success(), "{}", output_text(&o));
    for f in [
        "ckpt.h5",
        "ckpt.prev.h5",
        "ckpt.layers1-1.h5",
        "ckpt.layers3-3.h5",
    ] {
        assert!(cut.join(f).exists(), "{f}");
    }
    let mut resume = with("40");
    resume.push("--resume");
    let o = run_mpi(4, &cut, &resume);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        common::text(&o.stderr).contains("resuming from the checkpoints of iteration 6"),
        "{}",
        output_text(&o)
    );
    assert_eq!(w_final(&cut), w_final(&straight));
    let (a, b) = (rows(&cut), rows(&straight));
    assert_eq!(a.len(), 40);
    assert_eq!(a.column(Metric::Objective), b.column(Metric::Objective));
    // Bit for bit, the output layer's NaN (no dual residual) included.
    let bits = |r: &results::RecordedRows| -> Vec<u64> {
        r.layer(LayerMetric::DualResidual)
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));

    // SIGUSR1 once the first checkpoint is there: every rank checkpoints at a common boundary,
    // exit 75, status interrupted; the resumed run ends where the straight one did.
    let sig = fresh("ckpt-usr1");
    let child = mpirun_direct(4)
        .args(args(&sig, &with("40")))
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !sig.join("ckpt.h5").exists() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status();
    let o = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(75), "{}", output_text(&o));
    assert_eq!(
        results::read_str_attr(&sig.join("run.h5"), "", "status").unwrap(),
        "interrupted"
    );
    let done = rows(&sig).len();
    assert!(done < 40, "the run ended before the signal");
    let o = run_mpi(4, &sig, &resume);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        w_final(&sig),
        w_final(&straight),
        "resumed after {done} rows"
    );
    assert_eq!(
        rows(&sig).column(Metric::Objective),
        b.column(Metric::Objective)
    );
}

#[test]
fn bounded_staleness_with_a_slow_rank_and_quantized_exchange_runs_and_reports() {
    let _g = serial();
    let mut flags: Vec<&str> = NET.to_vec();
    flags[3] = "12";
    flags.extend(["--straggler-model", "fixed:2:30"]);
    let raw = fresh("stale-raw");
    let o = run_mpi(4, &raw, &flags);
    assert!(o.status.success(), "{}", output_text(&o));
    flags.extend(["--max-staleness", "2", "--quantize-bits", "8"]);
    let q = fresh("stale-q8");
    let o = run_mpi(4, &q, &flags);
    assert!(o.status.success(), "{}", output_text(&o));
    let (a, b) = (rows(&q), rows(&raw));
    assert_eq!(a.len(), 12);
    assert!(a.column(Metric::Objective).iter().all(|v| v.is_finite()));
    let bytes = |r: &results::RecordedRows| r.column(Metric::BytesNeighbour).sum();
    // 8-bit codes and two f64 per block, against f64 values, plus the 96-byte headers.
    assert!(
        bytes(&a) < 0.3 * bytes(&b),
        "{} vs {}",
        bytes(&a),
        bytes(&b)
    );
    for m in [LayerMetric::LeftAge, LayerMetric::RightAge] {
        assert!(a.layer(m).iter().all(|&v| v.abs() <= 2.0), "{m:?}");
        assert!(b.layer(m).iter().all(|&v| v == 0.0), "{m:?}");
    }
    // The slow rank's injected delay is recorded.
    let inj = a.worker(gradcode::io::results::WorkerMetric::InjectedS);
    assert!(inj.column(1).iter().all(|&v| v >= 0.03), "{inj:?}");
    // report: a table naming the job, and a figure with the residual panel.
    let png = q.join("report.png");
    let o = gradcode(&[
        "report",
        &q.join("run.h5").display().to_string(),
        &raw.join("run.h5").display().to_string(),
        "--plot",
        &png.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        common::text(&o.stdout).contains("pdadmm"),
        "{}",
        output_text(&o)
    );
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
}
