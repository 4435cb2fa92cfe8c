//! Integration tests of the coded linear-algebra MPI jobs (`gradcode matvec`): the real binary
//! under `mpirun`, each run wrapped in `timeout` so a deadlock fails the test instead of hanging
//! CI, runs serialized by a mutex (few cores).

use gradcode::io::results::{Metric, WorkerMetric};
use std::path::{Path, PathBuf};
use std::process::Command;

use gradcode::io::results;

mod common;
use common::{assert_one_mpi_error, mpirun, output_text, serial, workdir, BIN};

/// A synthetic matrix: dense (`sparsity` None) or CSR.
fn matrix(name: &str, rows: usize, cols: usize, sparsity: Option<f64>) -> PathBuf {
    let p = workdir().join(name);
    if p.exists() {
        return p;
    }
    let mut cmd = Command::new(BIN);
    cmd.args(["data", "synth", "--kind", "linear", "--seed", "7"])
        .args(["--rows", &rows.to_string(), "--features", &cols.to_string()]);
    if let Some(s) = sparsity {
        cmd.args(["--sparsity", &s.to_string()]);
    }
    let out = cmd.arg("--out").arg(&p).output().unwrap();
    assert!(out.status.success(), "synth failed: {}", output_text(&out));
    p
}

const CODES: [&str; 7] = [
    "replication",
    "mds-systematic",
    "mds-vandermonde",
    "mds-chebyshev",
    "mds-rotation",
    "mds-circulant",
    "mds-systematic-rotation",
];

/// N = 5 workers, K = 3: ranks 1 and 5 (N − K = 2 workers, one systematic and one parity for
/// `mds-systematic`, and leaving a covering set for replication) are delayed far past the
/// others, so every iteration decodes from exactly the other three.
fn every_code_decodes(kind: &str, a: &Path) {
    let _g = serial();
    let (n, k, iterations) = (5usize, 3usize, 3usize);
    for code in CODES {
        let out_dir = workdir().join(format!("{kind}-{code}"));
        let args: Vec<String> = [
            "matvec",
            "--matrix",
            &a.display().to_string(),
            "--code",
            code,
            "-k",
            &k.to_string(),
            "--iterations",
            &iterations.to_string(),
            "--straggler-model",
            "fixed:1,5:400",
            "--seed",
            "11",
            "--force",
            "--out",
            &out_dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = mpirun(n + 1, &args, 60);
        assert!(out.status.success(), "{kind} {code}: {}", output_text(&out));
        let path = out_dir.join("run.h5");
        assert_eq!(
            results::read_str_attr(&path, "", "status").unwrap(),
            "complete"
        );
        assert_eq!(
            results::read_str_attr(&path, "validation", "verdict").unwrap(),
            "PASSED",
            "{kind} {code}"
        );
        let rows = results::read_rows(&path, None).unwrap();
        assert_eq!(rows.len(), iterations);
        let err = rows.column(Metric::GradRelErr);
        let cond = rows.column(Metric::Cond);
        let resp = rows.column(Metric::NResponders);
        let arrival = rows.worker(WorkerMetric::ArrivalS);
        for t in 0..iterations {
            // Small n: every family is well conditioned here, so the decode is accurate to
            // rounding (cond · ε with a margin), and it used only the three fast workers.
            assert!(cond[t].is_finite() && cond[t] >= 1.0 - 1e-12, "{code}");
            assert!(
                err[t] <= 1e3 * cond[t] * f64::EPSILON,
                "{kind} {code} it {t}: rel. error {} with cond {}",
                err[t],
                cond[t]
            );
            assert_eq!(resp[t], k as f64, "{kind} {code} it {t}");
            assert!(arrival[[t, 0]].is_nan() && arrival[[t, 4]].is_nan());
            assert!((1..4).all(|w| arrival[[t, w]].is_finite()));
        }
        // The uncoded product really is recovered: the last decoded A·x is not zero.
        let y = results::read_vector(&path, "model/w_final").unwrap();
        assert!(y.iter().any(|v| v.abs() > 1e-6), "{code}");
    }
}

#[test]
fn every_code_decodes_dense_matvec_with_n_minus_k_stragglers() {
    let a = matrix("dense.h5", 211, 23, None);
    every_code_decodes("dense", &a);
}

#[test]
fn every_code_decodes_csr_matvec_with_n_minus_k_stragglers() {
    let a = matrix("csr.h5", 180, 60, Some(0.1));
    every_code_decodes("csr", &a);
}

/// Bad input fails on rank 0 with one clear message and a non-zero exit, without hanging.
#[test]
fn bad_input_fails_cleanly() {
    let _g = serial();
    let a = matrix("dense.h5", 211, 23, None);
    let a = a.display().to_string();
    let out_dir = workdir().join("bad").display().to_string();
    let cases: [(usize, Vec<&str>, &str); 4] = [
        (4, vec!["--code", "mds-rotation", "-k", "4"], "--k = 4"),
        (
            4,
            vec!["--code", "mds-nope", "-k", "2"],
            "--code = mds-nope",
        ),
        (
            1,
            vec!["--code", "replication", "-k", "1"],
            "mpirun -np N+1",
        ),
        (
            3,
            vec![
                "--code",
                "replication",
                "-k",
                "2",
                "--matrix",
                "/nonexistent/a.h5",
            ],
            "file not found",
        ),
    ];
    for (np, extra, expect) in cases {
        let mut args: Vec<String> = vec!["matvec".into()];
        if !extra.contains(&"--matrix") {
            args.extend(["--matrix".to_string(), a.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".to_string(), out_dir.clone(), "--force".to_string()]);
        assert_one_mpi_error(&mpirun(np, &args, 30), expect);
    }
}

fn dense_of(p: &Path) -> ndarray::Array2<f64> {
    match gradcode::io::dataset::read_all(p, gradcode::io::dataset::Split::Train)
        .unwrap()
        .x
    {
        gradcode::data::Features::Dense(m) => m,
        gradcode::data::Features::Sparse(m) => m.to_dense(),
    }
}

/// `matmul` with `code` on N workers, one of them (rank 2) delayed far past the others, decodes
/// AᵀB (A dense, B CSR) from the threshold many fast workers; the product file matches an
/// independent AᵀB computed here.
fn matmul_decodes(code: &str, np: usize, m: usize, p: usize, threshold: usize) {
    let _g = serial();
    let a = matrix("mm_a.h5", 64, 9, None);
    let b = matrix("mm_b.h5", 64, 7, Some(0.3));
    let out_dir = workdir().join(format!("matmul-{code}"));
    let args: Vec<String> = [
        "matmul",
        "--a",
        &a.display().to_string(),
        "--b",
        &b.display().to_string(),
        "--code",
        code,
        "-m",
        &m.to_string(),
        "-p",
        &p.to_string(),
        "--straggler-model",
        "fixed:2:400",
        "--force",
        "--out",
        &out_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = mpirun(np, &args, 60);
    assert!(out.status.success(), "{code}: {}", output_text(&out));
    let run = out_dir.join("run.h5");
    assert_eq!(
        results::read_str_attr(&run, "validation", "verdict").unwrap(),
        "PASSED"
    );
    let rows = results::read_rows(&run, None).unwrap();
    assert_eq!(rows.column(Metric::NResponders)[0], threshold as f64);
    assert!(
        rows.worker(WorkerMetric::ArrivalS)[[0, 1]].is_nan(),
        "rank 2 must not be used"
    );
    let prod = out_dir.join("product.h5");
    let c = gradcode::io::matrix::read_matrix(&prod, "C").unwrap();
    let cond = gradcode::io::matrix::read_f64_attr(&prod, "C", "cond").unwrap();
    let truth = dense_of(&a).t().dot(&dense_of(&b));
    assert_eq!(c.dim(), truth.dim());
    let diff = (&c - &truth).iter().map(|v| v * v).sum::<f64>().sqrt();
    let norm = truth.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(
        diff / norm <= 1e3 * cond * f64::EPSILON,
        "{code}: rel. error {} with cond {cond}",
        diff / norm
    );
}

#[test]
fn matmul_poly_real() {
    matmul_decodes("poly-real", 6, 2, 2, 4);
}

#[test]
fn matmul_poly_chebyshev() {
    matmul_decodes("poly-chebyshev", 6, 2, 2, 4);
}

#[test]
fn matmul_poly_rotation() {
    matmul_decodes("poly-rotation", 6, 2, 2, 4);
}

#[test]
fn matmul_matdot() {
    matmul_decodes("matdot", 5, 2, 1, 3);
}

/// A and B with different row counts, and a threshold above N: one clear error, no hang.
#[test]
fn matmul_bad_input_fails_cleanly() {
    let _g = serial();
    let a = matrix("mm_a.h5", 64, 9, None).display().to_string();
    let other = matrix("dense.h5", 211, 23, None).display().to_string();
    let out_dir = workdir().join("matmul-bad").display().to_string();
    for (np, b, m, expect) in [
        (4, other.as_str(), "1", "same number of rows"),
        (4, a.as_str(), "2", "needs 4 workers"),
    ] {
        let args: Vec<String> = [
            "matmul",
            "--a",
            &a,
            "--b",
            b,
            "--code",
            "poly-real",
            "-m",
            m,
            "-p",
            "2",
            "--out",
            &out_dir,
            "--force",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_one_mpi_error(&mpirun(np, &args, 30), expect);
    }
}

/// `gradcode train --reference` on the same data and settings; returns its per-iteration
/// records (train loss, and test loss and accuracy where evaluated).
fn reference_rows(data: &Path, model: &str, lr: &str, name: &str) -> results::RecordedRows {
    let out_dir = workdir().join(name);
    let out = Command::new(BIN)
        .args(["-q", "train", "--reference", "--data"])
        .arg(data)
        .args([
            "--model",
            model,
            "--iterations",
            "15",
            "--lr",
            lr,
            "--force",
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "reference: {}", output_text(&out));
    results::read_rows(&out_dir.join("run.h5"), None).unwrap()
}

/// Coded training through mat-vecs (two coded mat-vecs per step, N − K delayed workers)
/// follows the serial reference trajectory: every iteration's loss agrees to rounding, and so
/// do the test loss and accuracy, evaluated at the same iterations (when the data has a test
/// split).
fn coded_training_matches_reference(
    model: &str,
    code: &str,
    data: &Path,
    lr: &str,
    stragglers: &str,
) -> usize {
    let _g = serial();
    let ref_rows = reference_rows(data, model, lr, &format!("ref-{model}-{code}"));
    let reference = ref_rows.column(Metric::TrainLoss).to_vec();
    let out_dir = workdir().join(format!("mds-train-{model}-{code}"));
    let args: Vec<String> = [
        "train",
        "--data",
        &data.display().to_string(),
        "--model",
        model,
        "--code",
        code,
        "-s",
        "2",
        "--iterations",
        "15",
        "--lr",
        lr,
        "--straggler-model",
        stragglers,
        "--force",
        "--out",
        &out_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = mpirun(6, &args, 90);
    assert!(
        out.status.success(),
        "{model} {code}: {}",
        output_text(&out)
    );
    let path = out_dir.join("run.h5");
    // Coded training through mat-vecs runs the one training loop: its check and verdict read
    // like every `train` run's.
    assert_eq!(
        results::read_str_attr(&path, "validation", "check").unwrap(),
        "PASSED"
    );
    assert_eq!(
        results::read_str_attr(&path, "validation", "verdict").unwrap(),
        "VALID"
    );
    let rows = results::read_rows(&path, None).unwrap();
    let loss = rows.column(Metric::TrainLoss);
    assert_eq!(loss.len(), reference.len());
    for (t, (a, b)) in loss.iter().zip(&reference).enumerate() {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{model} {code} iteration {t}: coded loss {a} vs reference {b}"
        );
    }
    for m in [Metric::TestLoss, Metric::TestAccuracy, Metric::TestAuc] {
        let name = m.name();
        let (a, b) = (rows.column(m), ref_rows.column(m));
        for (t, (a, b)) in a.iter().zip(b).enumerate() {
            assert_eq!(
                a.is_nan(),
                b.is_nan(),
                "{model} {code} {name} at {t}: {a} vs {b}"
            );
            assert!(
                a.is_nan() || (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{model} {code} {name} at {t}: coded {a} vs reference {b}"
            );
        }
    }
    // The loss went down (a real run), and every step decoded from N − s = 3 workers.
    assert!(loss[loss.len() - 1] < loss[0]);
    assert!(rows.column(Metric::NResponders).iter().all(|&r| r == 3.0));
    // How many iterations evaluated the test split.
    rows.column(Metric::TestLoss)
        .iter()
        .filter(|v| v.is_finite())
        .count()
}

#[test]
fn coded_training_logistic_rotation_matches_reference() {
    let p = workdir().join("train-logistic.h5");
    if !p.exists() {
        let out = Command::new(BIN)
            .args(["data", "synth", "--kind", "logistic", "--rows", "420"])
            .args([
                "--features",
                "14",
                "--test-rows",
                "100",
                "--seed",
                "5",
                "--out",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let evaluated =
        coded_training_matches_reference("logistic", "mds-rotation", &p, "0.5", "fixed:2,4:300");
    // --eval-every 10 over 15 iterations: after iterations 9 and 14 (the last).
    assert_eq!(evaluated, 2);
}

#[test]
fn coded_training_linear_systematic_csr_matches_reference() {
    let p = matrix("csr.h5", 180, 60, Some(0.1));
    coded_training_matches_reference("linear", "mds-systematic", &p, "0.1", "fixed:1,5:300");
}

/// A worker that stops answering mid-run (`fail:`) is decoded around by the MDS code every
/// iteration after it, and the run still completes and validates.
#[test]
fn matvec_survives_a_failed_worker() {
    let _g = serial();
    let a = matrix("dense.h5", 211, 23, None);
    let out_dir = workdir().join("matvec-fail");
    let args: Vec<String> = [
        "matvec",
        "--matrix",
        &a.display().to_string(),
        "--code",
        "mds-systematic-rotation",
        "-k",
        "3",
        "--iterations",
        "6",
        "--straggler-model",
        "fail:2@2",
        "--force",
        "--out",
        &out_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = mpirun(5, &args, 60);
    assert!(out.status.success(), "{}", output_text(&out));
    let rows = results::read_rows(&out_dir.join("run.h5"), None).unwrap();
    let arrival = rows.worker(WorkerMetric::ArrivalS);
    let err = rows.column(Metric::GradRelErr);
    for t in 0..6 {
        assert!(err[t] < 1e-12, "it {t}: {}", err[t]);
        if t >= 2 {
            assert!(arrival[[t, 1]].is_nan(), "rank 2 answered at iteration {t}");
        }
    }
}

/// Coded training refuses what it cannot do, with one clear error and no hang.
#[test]
fn coded_training_bad_input_fails_cleanly() {
    let _g = serial();
    let a = matrix("dense.h5", 211, 23, None).display().to_string();
    let out_dir = workdir().join("mds-train-bad").display().to_string();
    for (np, extra, expect) in [
        (4, ["--model", "softmax", "-s", "1"], "--model = softmax"),
        (4, ["--model", "linear", "-s", "3"], "--stragglers = 3"),
    ] {
        let mut args: Vec<String> = ["train", "--data", &a, "--code", "mds-rotation"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".to_string(), out_dir.clone(), "--force".to_string()]);
        assert_one_mpi_error(&mpirun(np, &args, 30), expect);
    }
}

/// A user's own matrices, written as h5py would (plain 2-D datasets, no labels, no task):
/// `FILE.h5` holding one 2-D dataset, and `FILE.h5:/path` naming one of several; `matvec` and
/// `matmul` read them, and decode what the uncoded product gives.
#[test]
fn plain_hdf5_matrices_are_accepted() {
    let _g = serial();
    let dir = workdir().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    let a = ndarray::Array2::from_shape_fn((40, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let b = ndarray::Array2::from_shape_fn((40, 3), |(i, j)| ((i + 2 * j) % 5) as f64 * 0.5);
    let a_path = dir.join("a.h5");
    let b_path = dir.join("b.h5");
    common::h5_write(&a_path, false, |f| {
        f.new_dataset_builder().with_data(&a).create("A").unwrap();
    });
    common::h5_write(&b_path, false, |f| {
        let g = f.create_group("grp").unwrap();
        g.new_dataset_builder().with_data(&b).create("M").unwrap();
        f.new_dataset_builder()
            .with_data(&ndarray::Array2::<f64>::zeros((2, 2)))
            .create("other")
            .unwrap();
    });
    let out = dir.join("mv");
    let o = mpirun(
        4,
        &[
            "matvec",
            "--matrix",
            &a_path.display().to_string(),
            "--code",
            "mds-systematic",
            "-k",
            "2",
            "--iterations",
            "2",
            "--out",
            &out.display().to_string(),
            "--force",
        ],
        60,
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        results::read_str_attr(&out.join("run.h5"), "validation", "verdict").unwrap(),
        "PASSED"
    );
    // Without a path the file with two matrices is ambiguous; named, it is read.
    let o = mpirun(
        4,
        &[
            "matmul",
            "--a",
            &a_path.display().to_string(),
            "--b",
            &b_path.display().to_string(),
            "--code",
            "poly-real",
            "-m",
            "2",
            "--out",
            &dir.join("mm0").display().to_string(),
            "--force",
        ],
        60,
    );
    assert_one_mpi_error(&o, "name one as");
    let out = dir.join("mm");
    let named = format!("{}:/grp/M", b_path.display());
    let o = mpirun(
        4,
        &[
            "matmul",
            "--a",
            &a_path.display().to_string(),
            "--b",
            &named,
            "--code",
            "poly-real",
            "-m",
            "2",
            "--out",
            &out.display().to_string(),
            "--force",
        ],
        60,
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let c = dense_of_named(&out.join("product.h5"), "C");
    let truth = a.t().dot(&b);
    let err = (&c - &truth).mapv(|v| v * v).sum().sqrt() / truth.mapv(|v| v * v).sum().sqrt();
    assert!(err < 1e-10, "AᵀB rel. error {err:e}");
}

fn dense_of_named(p: &Path, name: &str) -> ndarray::Array2<f64> {
    hdf5::File::open(p)
        .unwrap()
        .dataset(name)
        .unwrap()
        .read_2d()
        .unwrap()
}
