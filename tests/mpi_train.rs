//! Integration tests of the MPI training job: the real binary under `mpirun`, each run wrapped in
//! `timeout` so a deadlock fails the test instead of hanging CI. Runs are serialized (one MPI job
//! at a time) because the machine has few cores and some tests compare wall times.

use gradcode::io::results::{Metric, WorkerMetric};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gradcode::io::results;

mod common;
use common::{assert_one_mpi_error, output_text, serial, workdir, BIN};

/// A small synthetic logistic dataset with a test split, made once.
fn dataset() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let p = workdir().join("synth.h5");
        let out = Command::new(BIN)
            .args([
                "data",
                "synth",
                "--kind",
                "logistic",
                "--rows",
                "2100",
                "--features",
                "30",
                "--test-rows",
                "300",
            ])
            .args(["--seed", "3", "--out"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "synth failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    })
    .clone()
}

/// `mpirun ... gradcode train ARGS` (timeout enforced), with its wall time.
fn mpirun(np: usize, args: &[&str], timeout_s: u64) -> (Output, Duration) {
    let start = Instant::now();
    let out = common::mpirun(np, &[&["train"], args].concat(), timeout_s);
    (out, start.elapsed())
}

fn out_dir(name: &str) -> PathBuf {
    let d = workdir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn train(np: usize, name: &str, extra: &[&str]) -> (Output, PathBuf, Duration) {
    let data = dataset();
    let out = out_dir(name);
    let mut args: Vec<String> = vec![
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    // Defaults, unless the test sets them.
    for (flag, value) in [
        ("--model", "logistic"),
        ("--iterations", "20"),
        ("--lr", "1.0"),
        ("--seed", "5"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (o, took) = mpirun(np, &refs, 60);
    (o, out, took)
}

/// [`train`] that must complete with its gradient check PASSED: its rows.
fn checked_run(np: usize, name: &str, extra: &[&str]) -> results::RecordedRows {
    let (o, run, _) = train(np, name, extra);
    assert!(o.status.success(), "{name}: {}", output_text(&o));
    assert_eq!(status(&run), "complete", "{name}");
    let f = run.join("run.h5");
    assert_eq!(
        results::read_str_attr(&f, "validation", "check").unwrap(),
        "PASSED",
        "{name}"
    );
    results::read_rows(&f, None).unwrap()
}

fn reference_w() -> ndarray::Array1<f64> {
    static W: OnceLock<ndarray::Array1<f64>> = OnceLock::new();
    W.get_or_init(|| {
        let out = out_dir("reference");
        let o = Command::new(BIN)
            .args([
                "train",
                "--reference",
                "--model",
                "logistic",
                "--iterations",
                "20",
                "--lr",
                "1.0",
                "--seed",
                "5",
                "--data",
            ])
            .arg(dataset())
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        results::read_vector(&out.join("run.h5"), "model/w_final").unwrap()
    })
    .clone()
}

fn rel_diff(a: &ndarray::Array1<f64>, b: &ndarray::Array1<f64>) -> f64 {
    let d = (a - b).mapv(|v| v * v).sum().sqrt();
    d / b.mapv(|v| v * v).sum().sqrt()
}

fn status(run: &Path) -> String {
    results::read_str_attr(&run.join("run.h5"), "", "status").unwrap()
}

#[test]
fn exact_codes_match_the_serial_reference_with_and_without_a_straggler() {
    let _g = serial();
    let w_ref = reference_w();
    let cases: &[(&str, usize, usize)] = &[
        ("uncoded", 6, 0),
        ("frc", 6, 1),
        ("frc", 6, 2),
        ("cyclic-repetition", 6, 1),
        ("cyclic-mds", 6, 1),
        ("cyclic-mds", 7, 2),
    ];
    for &(code, n, s) in cases {
        for stragglers in ["none", "fixed:2:150"] {
            if code == "uncoded" && stragglers != "none" {
                continue;
            }
            let name = format!("{code}-{n}-{s}-{}", stragglers.replace(':', "_"));
            let (o, run) = train_code(n, &name, code, s, stragglers, &[]);
            let rows = assert_exact_run(&name, &o, &run, &w_ref);
            assert_eq!(rows.len(), 20);
        }
    }
}

/// `train` of `code` with s stragglers on n workers under `stragglers`, deadline 5 s, plus `extra`.
fn train_code(
    n: usize,
    name: &str,
    code: &str,
    s: usize,
    stragglers: &str,
    extra: &[&str],
) -> (Output, PathBuf) {
    let s = s.to_string();
    let mut args = vec![
        "--code",
        code,
        "-s",
        &s,
        "--straggler-model",
        stragglers,
        "--deadline-ms",
        "5000",
    ];
    args.extend_from_slice(extra);
    let (o, run, _) = train(n + 1, name, &args);
    (o, run)
}

/// `--code hetero --worker-speeds`: more partitions on the faster workers, and the run still
/// matches the serial reference to 1e-8 with every iteration exact, with and without a straggler
/// (the straggler a slow worker holding fewer partitions, then a fast one holding more).
#[test]
fn hetero_code_matches_the_serial_reference_with_a_straggler() {
    let _g = serial();
    let w_ref = reference_w();
    for (s, speeds, stragglers) in [
        (1, "1,0.5,1,1,1,1", "none"),
        (1, "1,0.5,1,1,1,1", "fixed:2:150"),
        (2, "2,1,1,0.5,0.5,1", "fixed:1:150"),
    ] {
        let name = format!("hetero-{s}-{}", stragglers.replace(':', "_"));
        let (o, run) = train_code(
            6,
            &name,
            "hetero",
            s,
            stragglers,
            &["--worker-speeds", speeds],
        );
        let rows = assert_exact_run(&name, &o, &run, &w_ref);
        assert_eq!(rows.len(), 20);
        let toml = results::read_str_attr(&run.join("run.h5"), "config", "toml").unwrap();
        assert!(
            toml.contains(&format!("worker-speeds = \"{speeds}\"")),
            "{toml}"
        );
    }
}

/// A run that completed, ends within 1e-8 of the reference `w_ref`, decoded every iteration
/// exactly and passed its gradient check; its rows.
fn assert_exact_run(
    name: &str,
    o: &Output,
    run: &Path,
    w_ref: &ndarray::Array1<f64>,
) -> results::RecordedRows {
    assert!(o.status.success(), "{name}: {}", output_text(o));
    assert_eq!(status(run), "complete", "{name}");
    let f = run.join("run.h5");
    let w = results::read_vector(&f, "model/w_final").unwrap();
    let rel = rel_diff(&w, w_ref);
    assert!(
        rel < 1e-8,
        "{name}: relative difference to the reference {rel:e}"
    );
    let rows = results::read_rows(&f, None).unwrap();
    assert!(
        rows.column(Metric::Exact).iter().all(|&e| e == 1.0),
        "{name}: not every iteration exact"
    );
    assert_eq!(
        results::read_str_attr(&f, "validation", "check").unwrap(),
        "PASSED",
        "{name}"
    );
    rows
}

/// `--code comm-efficient --split M` (Ye & Abbe): the MPI job matches the serial reference to
/// 1e-8 with and without a straggler (and with partial work), every iteration decodes exactly,
/// the first-iteration check passes, and every result message is ⌈dim/M⌉ + 1 values long
/// (`/metrics/bytes_received` is a whole number of them after the checked first iteration).
#[test]
fn comm_efficient_matches_the_reference_with_messages_m_times_shorter() {
    let _g = serial();
    let w_ref = reference_w();
    let dim: usize = 31; // 30 features and the intercept
    let cases: &[(usize, usize, usize, &str, &str)] = &[
        (6, 1, 2, "none", "1"),
        (6, 1, 2, "fixed:2:150", "1"),
        (6, 1, 1, "none", "1"),
        (7, 2, 3, "fixed:3:100", "2"),
    ];
    for &(n, s, m, stragglers, chunks) in cases {
        let name = format!("ce-{n}-{s}-{m}-{}-{chunks}", stragglers.replace(':', "_"));
        let (o, run, _) = train(
            n + 1,
            &name,
            &[
                "--code",
                "comm-efficient",
                "-s",
                &s.to_string(),
                "--split",
                &m.to_string(),
                "--chunks",
                chunks,
                "--straggler-model",
                stragglers,
                "--deadline-ms",
                "5000",
            ],
        );
        let rows = assert_exact_run(&name, &o, &run, &w_ref);
        if stragglers == "none" {
            let message = (12 + dim.div_ceil(m) + 1) * 8;
            for (t, &b) in rows
                .column(Metric::BytesReceived)
                .iter()
                .enumerate()
                .skip(1)
            {
                assert!(
                    b > 0.0 && b % message as f64 == 0.0,
                    "{name}: iteration {t} received {b} bytes, not a whole number of {message}-byte messages"
                );
            }
        }
    }
}

/// A compressed run's rows: every iteration received whole `message`-byte messages, and
/// `compress_rel_err` is recorded exactly at the gradient checks (every `check_every`), not
/// zero at the first.
fn assert_compressed_rows(
    name: &str,
    rows: &results::RecordedRows,
    message: usize,
    check_every: usize,
) {
    for (t, &b) in rows.column(Metric::BytesReceived).iter().enumerate() {
        assert!(
            b > 0.0 && b % message as f64 == 0.0,
            "{name}: iteration {t} received {b} bytes, not whole {message}-byte messages"
        );
    }
    let cerr = rows.column(Metric::CompressRelErr);
    for (t, e) in cerr.iter().enumerate() {
        assert_eq!(
            e.is_finite(),
            t % check_every == 0,
            "{name}: iteration {t}: {e}"
        );
    }
    assert!(cerr[0] > 0.0, "{name}: compression changed nothing");
}

/// `--compress` on a comm-efficient code (m = 2): every compressor, with and without error
/// feedback (QSGD with enough levels for feedback to be stable), finishes; every result message is (12 + wire + 1) values with the compressor's
/// fixed wire length (fewer bytes than uncompressed); the first-iteration check PASSES on the
/// uncompressed decode while `compress_rel_err` records what compression changed at every
/// check; `decode_weight_sq` is recorded every iteration; no iteration counts as exact; and
/// the unbiased or error-corrected runs end near the reference's training loss.
#[test]
fn every_compressor_finishes_records_bytes_and_its_error() {
    use gradcode::compress::Compressor;
    let _g = serial();
    let _ = reference_w();
    let ref_rows = results::read_rows(&workdir().join("reference/run.h5"), None).unwrap();
    let ref_loss = *ref_rows.column(Metric::TrainLoss).last().unwrap();
    let len = 16; // ⌈31/2⌉
    for (spec, ef) in [
        ("qsgd:4", false),
        ("qsgd:64", true),
        ("topk:0.25", false),
        ("topk:0.25", true),
        ("sign", false),
        ("sign", true),
    ] {
        let name = format!("compress-{}-{ef}", spec.replace(':', "_"));
        let mut extra = vec![
            "--code",
            "comm-efficient",
            "-s",
            "1",
            "--split",
            "2",
            "--compress",
            spec,
            "--check-gradient-every",
            "5",
            "--deadline-ms",
            "5000",
            // Worker 6 answers the first iteration's check, then never again: every later
            // iteration decodes from the same five workers, so the compressed run does not
            // depend on which message the machine's load made arrive last.
            "--straggler-model",
            "fail:6@1",
        ];
        if ef {
            extra.push("--error-feedback");
        }
        let rows = checked_run(7, &name, &extra);
        let c: Compressor = spec.parse().unwrap();
        let message = (12 + c.wire_len(len) + 1) * 8;
        assert!(message < (12 + len + 1) * 8, "{name}");
        assert_compressed_rows(&name, &rows, message, 5);
        assert!(rows.column(Metric::DecodeWeightSq).iter().all(|v| *v > 0.0));
        assert!(rows.column(Metric::Exact).iter().all(|&e| e == 0.0));
        let loss = *rows.column(Metric::TrainLoss).last().unwrap();
        if ef || spec.starts_with("qsgd") {
            assert!(
                (loss - ref_loss).abs() < 0.05 * ref_loss,
                "{name}: final loss {loss} vs the reference's {ref_loss}"
            );
        }
    }
}

/// The settings of the MLP minibatch runs: a small network on the synthetic (binary) data,
/// 16 rows of every partition per iteration.
const MLP_BATCH: &[&str] = &[
    "--model",
    "mlp",
    "--hidden",
    "8,6",
    "--batch",
    "16",
    "--iterations",
    "12",
    "--lr",
    "0.5",
    "--seed",
    "5",
];

/// The serial reference of [`MLP_BATCH`] drawing the minibatches of `n` workers' partitions.
fn mlp_reference(n: usize) -> ndarray::Array1<f64> {
    let out = out_dir(&format!("mlp-reference-{n}"));
    let o = Command::new(BIN)
        .args(["train", "--reference", "--workers", &n.to_string()])
        .args(["--code", "uncoded", "--data"])
        .arg(dataset())
        .arg("--out")
        .arg(&out)
        .args(MLP_BATCH)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    results::read_vector(&out.join("run.h5"), "model/w_final").unwrap()
}

/// Issue 20 §3 on the MLP: `--compress lowrank:2` factors each layer's weight matrix (biases
/// as they are), with and without error feedback: the run completes, the first-iteration check
/// PASSES (the code is still exact on the uncompressed messages), every result message has
/// low-rank's wire length — 2·(8 + 30) + 8 + 2·(6 + 8) + 6 + 2·(2 + 6) + 2 = 136 values for
/// the 316 parameters of a 30-8-6-2 network — `compress_rel_err` is recorded at every check and
/// is not zero, and the minibatch loss falls.
#[test]
fn lowrank_compresses_the_mlp_layers() {
    use gradcode::compress::Compressor;
    let _g = serial();
    let c = "lowrank:2"
        .parse::<Compressor>()
        .unwrap()
        .with_matrices(&[(8, 30), (6, 8), (2, 6)])
        .unwrap();
    assert_eq!(c.wire_len(316), 136);
    let message = (12 + 136 + 1) * 8;
    for ef in [false, true] {
        let name = format!("lowrank-mlp-{ef}");
        let mut args: Vec<&str> = MLP_BATCH.to_vec();
        args.extend([
            "--code",
            "cyclic-mds",
            "-s",
            "1",
            "--compress",
            "lowrank:2",
            "--check-gradient-every",
            "4",
            "--deadline-ms",
            "5000",
        ]);
        if ef {
            args.push("--error-feedback");
        }
        let (o, run, _) = train(5, &name, &args);
        assert!(o.status.success(), "{name}: {}", output_text(&o));
        let f = run.join("run.h5");
        assert_eq!(
            results::read_str_attr(&f, "validation", "check").unwrap(),
            "PASSED",
            "{name}"
        );
        let rows = results::read_rows(&f, None).unwrap();
        assert_compressed_rows(&name, &rows, message, 4);
        let loss = rows.column(Metric::TrainLoss).to_vec();
        let (first, last) = (loss[..3].iter().sum::<f64>(), loss[9..].iter().sum::<f64>());
        assert!(last < first, "{name}: minibatch loss {loss:?}");
    }
}

/// Issue 20 §2: sparse-support messages. On CSR data (Zipf columns) every worker sends its
/// support once and then its coded gradient on those columns only; rank 0 scatters while
/// decoding, and rank 0 sends each worker the parameters on its support only. The model
/// matches the dense messages' to 1e-12 (with and without a straggler), the first-iteration
/// check PASSES, and rank 0 receives and sends fewer bytes per iteration; `auto` and support
/// messages in two chunks also match. Bad combinations are refused.
#[test]
fn support_messages_match_dense_ones_with_fewer_bytes() {
    let _g = serial();
    let data = workdir().join("sparse.h5");
    let o = Command::new(BIN)
        .args([
            "-q", "data", "synth", "--kind", "logistic", "--rows", "2000",
        ])
        .args(["--features", "6000", "--sparsity", "0.003", "--zipf", "1"])
        .args(["--seed", "3", "--force", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let data = data.display().to_string();
    for stragglers in ["none", "fixed:2:40"] {
        let mut runs = Vec::new();
        for (messages, chunks) in [
            ("dense", "1"),
            ("support", "1"),
            ("auto", "1"),
            ("dense", "2"),
            ("support", "2"),
        ] {
            let name = format!(
                "messages-{messages}-c{chunks}-{}",
                stragglers.replace(':', "_")
            );
            let run = out_dir(&name);
            let out = run.display().to_string();
            let args = [
                "--data",
                &data,
                "--out",
                &out,
                "--model",
                "logistic",
                "--seed",
                "5",
                "--code",
                "cyclic-mds",
                "-s",
                "1",
                "--messages",
                messages,
                "--straggler-model",
                stragglers,
                "--iterations",
                "8",
                "--deadline-ms",
                "5000",
                "--chunks",
                chunks,
            ];
            let (o, _) = mpirun(5, &args, 60);
            assert!(o.status.success(), "{name}: {}", output_text(&o));
            let f = run.join("run.h5");
            assert_eq!(
                results::read_str_attr(&f, "validation", "check").unwrap(),
                "PASSED",
                "{name}"
            );
            let rows = results::read_rows(&f, None).unwrap();
            // Bytes per iteration after the first (which also gathers the check pieces).
            let per_iter = |m: Metric| {
                let b = rows.column(m).to_vec();
                b[1..].iter().sum::<f64>() / (b.len() - 1) as f64
            };
            runs.push((
                name,
                results::read_vector(&f, "model/w_final").unwrap(),
                per_iter(Metric::BytesReceived),
                per_iter(Metric::BytesSent),
            ));
        }
        let (dense, support, auto) = (&runs[0], &runs[1], &runs[2]);
        let (dense_chunked, chunked) = (&runs[3], &runs[4]);
        for other in [support, auto, chunked] {
            let rel = rel_diff(&other.1, &dense.1);
            assert!(rel < 1e-12, "{}: {rel:e} from dense", other.0);
        }
        // Fewer bytes received, and (parameters on the support) fewer sent, than dense messages
        // in as many chunks (two support messages a worker, each on the union of its chunks'
        // supports).
        for (run, dense) in [(support, dense), (chunked, dense_chunked)] {
            for (what, s, d) in [("received", run.2, dense.2), ("sent", run.3, dense.3)] {
                assert!(
                    s < 0.7 * d,
                    "{}: {s} bytes {what} per iteration vs dense {d}",
                    run.0
                );
            }
        }
        // Rank 0 receives three or four messages in an iteration, as the fourth arrives before
        // the decode or after it (then counted with the next iteration): per-iteration bytes
        // of runs that send the same messages differ by up to one message in four.
        assert!(
            auto.2 <= dense.2 * 4.0 / 3.0,
            "{}: {} bytes per iteration vs dense {}",
            auto.0,
            auto.2,
            dense.2
        );
    }
    let bad = out_dir("messages-bad").display().to_string();
    let (o, _) = mpirun(
        5,
        &[
            "--data",
            &data,
            "--out",
            &bad,
            "--messages",
            "support",
            "--reuse-stale",
        ],
        60,
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("sparse-support messages are not available with --reuse-stale"),
        "{}",
        output_text(&o)
    );
}

/// Issue 21: minibatches keep the codes exact. An MLP trained on minibatches (every worker
/// holding a partition draws the same rows from (seed, iteration, partition)) matches the
/// serial reference drawing the same batches, to 1e-8, for every exact code with and without a
/// straggler, and with the batch split into chunks; every iteration decodes exactly.
#[test]
fn mlp_minibatches_match_the_serial_reference_for_every_exact_code() {
    let _g = serial();
    let refs = [(4, mlp_reference(4)), (5, mlp_reference(5))];
    let cases: &[(&str, usize, usize, &[&str])] = &[
        ("uncoded", 4, 0, &[]),
        ("frc", 4, 1, &[]),
        ("frc", 4, 1, &["--chunks", "2"]),
        ("cyclic-repetition", 4, 1, &[]),
        ("cyclic-mds", 4, 1, &[]),
        ("cyclic-mds", 5, 2, &[]),
    ];
    for &(code, n, s, extra) in cases {
        let w_ref = &refs.iter().find(|(m, _)| *m == n).unwrap().1;
        for stragglers in ["none", "fixed:2:40"] {
            if code == "uncoded" && stragglers != "none" {
                continue;
            }
            let name = format!(
                "mlp-{code}-{n}-{s}-{}{}",
                stragglers.replace(':', "_"),
                extra.join("")
            );
            let mut args: Vec<&str> = MLP_BATCH.to_vec();
            let s_text = s.to_string();
            args.extend([
                "--code",
                code,
                "-s",
                &s_text,
                "--straggler-model",
                stragglers,
            ]);
            args.extend(["--deadline-ms", "5000"]);
            args.extend(extra);
            let (o, run, _) = train(n + 1, &name, &args);
            assert!(o.status.success(), "{name}: {}", output_text(&o));
            let f = run.join("run.h5");
            let w = results::read_vector(&f, "model/w_final").unwrap();
            let rel = rel_diff(&w, w_ref);
            assert!(
                rel < 1e-8,
                "{name}: relative difference to the reference {rel:e}"
            );
            let rows = results::read_rows(&f, None).unwrap();
            assert_eq!(rows.len(), 12);
            assert!(
                rows.column(Metric::Exact).iter().all(|&e| e == 1.0),
                "{name}: not every iteration exact"
            );
            assert_eq!(
                results::read_str_attr(&f, "validation", "check").unwrap(),
                "PASSED",
                "{name}"
            );
            // 2100 rows, k = n partitions of 16 rows per step: ⌈2100 / (16 n)⌉ per epoch.
            let per_epoch = 2100f64 / (16 * n) as f64;
            let epoch = rows.column(Metric::Epoch);
            assert_eq!(epoch[11], 12.0 / per_epoch.ceil(), "{name}");
        }
    }
    // The references of 4 and 5 workers draw other batches: the partitions are part of the
    // trajectory.
    assert!(rel_diff(&refs[0].1, &refs[1].1) > 1e-6);
}

/// The serial reference (4 workers' partitions, uncoded) on `data` with `settings` and `extra`
/// in `name`, and the K-FAC reference's final parameters against momentum's: K-FAC changed
/// them by more than `acts` (relative). Returns the K-FAC reference's result file and final
/// parameters.
fn kfac_references(
    name: &str,
    data: &Path,
    settings: &[&str],
    acts: f64,
) -> (PathBuf, ndarray::Array1<f64>) {
    let reference = |name: &str, extra: &[&str]| {
        let out = out_dir(name);
        let o = Command::new(BIN)
            .args(["train", "--reference", "--workers", "4"])
            .args(["--code", "uncoded", "--data"])
            .arg(data)
            .arg("--out")
            .arg(&out)
            .args(settings)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", output_text(&o));
        out.join("run.h5")
    };
    let ref_file = reference(&format!("{name}-reference"), KFAC);
    let w_ref = results::read_vector(&ref_file, "model/w_final").unwrap();
    let momentum = reference(
        &format!("{name}-momentum"),
        &["--optimizer", "momentum", "--momentum", "0.5"],
    );
    let w_mom = results::read_vector(&momentum, "model/w_final").unwrap();
    assert!(
        rel_diff(&w_ref, &w_mom) > acts,
        "{name}: K-FAC changed nothing"
    );
    (ref_file, w_ref)
}

/// The K-FAC settings of the tests: factors every second iteration (so rounds with and without
/// them alternate), eigenbases every third, a damping and a KL clip that act.
const KFAC: &[&str] = &[
    "--optimizer",
    "kfac",
    "--kfac-update-every",
    "2",
    "--kfac-inv-every",
    "3",
    "--kfac-damping",
    "0.01",
    "--kfac-kl-clip",
    "0.01",
    "--momentum",
    "0.5",
];

/// Issue 21, K-FAC: the coded factor sums decode with the gradient's weights, so K-FAC on an
/// MLP with minibatches under cyclic MDS matches the serial reference running the same K-FAC to
/// 1e-8, with and without a straggler; every iteration is exact; the preconditioner acts (ν
/// recorded, the trajectory differs from momentum's); and a factor round costs exactly the
/// packed factors more per message: per layer (i + 1)(i + 2)/2 + u(u + 1)/2 values for a layer
/// of u units over i inputs, 496 + 36 + 45 + 21 + 28 + 3 = 629 for the 30-8-6-2 network.
#[test]
fn kfac_matches_the_serial_reference_with_and_without_a_straggler() {
    let _g = serial();
    let (ref_file, w_ref) = kfac_references("kfac", &dataset(), MLP_BATCH, 1e-3);
    let ref_rows = results::read_rows(&ref_file, None).unwrap();
    assert!(ref_rows
        .column(Metric::KfacNu)
        .iter()
        .all(|&v| v > 0.0 && v <= 1.0));
    // (header + gradient + loss + factors) values of 8 bytes per message.
    let (plain, with_factors) = ((12 + 316 + 1) * 8, (12 + 316 + 1 + 629) * 8);
    for stragglers in ["none", "fixed:2:40"] {
        let name = format!("kfac-cyclic-mds-{}", stragglers.replace(':', "_"));
        let mut args: Vec<&str> = MLP_BATCH.to_vec();
        args.extend(KFAC);
        args.extend(["--code", "cyclic-mds", "-s", "1", "--deadline-ms", "5000"]);
        args.extend(["--straggler-model", stragglers]);
        let (o, run, _) = train(5, &name, &args);
        let rows = assert_exact_run(&name, &o, &run, &w_ref);
        let nu = rows.column(Metric::KfacNu);
        assert!(nu.iter().all(|&v| v > 0.0 && v <= 1.0), "{name}: {nu:?}");
        assert_bytes_received(&name, &rows, 4, |i| {
            if i % 2 == 0 {
                with_factors
            } else {
                plain
            }
        });
    }
}

/// Issue 21, spread inverses (`--kfac-eig workers`): the eigendecompositions of the 30-8-6-2
/// MLP's six factors go to the four workers (greedy by n³) in a round after the factors'. With
/// nobody straggling the run matches the serial reference to 1e-8 like `--kfac-eig rank0`,
/// their losses agree to 1e-8 and the checkpointed eigenbases to rounding (columns up to
/// sign); no factor falls back. With the owner of the largest factor (rank 1: the 31×31 A)
/// 2.5 s late and a 1 s deadline, every refresh goes on without it — rank 0 computes that
/// factor at the first refresh and keeps its previous eigenbasis at the others — recorded as
/// one fallback per refresh, and the run finishes with every gradient exact.
#[test]
fn kfac_eigendecompositions_on_the_workers_match_rank0_and_fall_back() {
    let _g = serial();
    let (_, w_ref) = kfac_references("kfac-eig", &dataset(), MLP_BATCH, 1e-3);
    let run = |site: &str, extra: &[&str]| {
        let name = format!("kfac-eig-{site}{}", extra.len());
        let mut args: Vec<&str> = MLP_BATCH.to_vec();
        args.extend(KFAC);
        args.extend(["--code", "cyclic-mds", "-s", "1", "--kfac-eig", site]);
        args.extend(["--checkpoint-every", "11"]);
        args.extend(extra);
        let (o, dir, _) = train(5, &name, &args);
        (name, o, dir)
    };
    let refreshes = |rows: &results::RecordedRows, want: f64| {
        let f = rows.column(Metric::KfacEigFallbacks);
        for (t, &v) in f.iter().enumerate() {
            if t % 3 == 0 {
                assert_eq!(v, want, "iteration {t}: {f:?}");
            } else {
                assert!(v.is_nan(), "iteration {t}: {f:?}");
            }
        }
    };
    let mut losses = Vec::new();
    let mut bases = Vec::new();
    for site in ["rank0", "workers"] {
        let (name, o, dir) = run(site, &["--deadline-ms", "5000"]);
        let rows = assert_exact_run(&name, &o, &dir, &w_ref);
        if site == "workers" {
            refreshes(&rows, 0.0);
        } else {
            assert!(rows
                .column(Metric::KfacEigFallbacks)
                .iter()
                .all(|v| v.is_nan()));
        }
        losses.push(rows.column(Metric::TrainLoss).to_vec());
        let ck = gradcode::io::checkpoint::read(&dir.join("ckpt.h5"), &attr_hash(&dir)).unwrap();
        assert_eq!(ck.iteration, 11);
        bases.push(ck.state.kfac.expect("K-FAC's state is in the checkpoint"));
    }
    for (a, b) in losses[0].iter().zip(&losses[1]) {
        assert!(
            (a - b).abs() < 1e-8,
            "losses {:?} and {:?}",
            losses[0],
            losses[1]
        );
    }
    for (l, (x, y)) in bases[0].layers.iter().zip(&bases[1].layers).enumerate() {
        for (f, g) in [(&x.a, &y.a), (&x.g, &y.g)] {
            for (u, v) in f.eigenvalues.iter().zip(&g.eigenvalues) {
                assert!(
                    (u - v).abs() <= 1e-10 * u.abs().max(1.0),
                    "layer {l}: {u} {v}"
                );
            }
            for (p, q) in f.basis.columns().into_iter().zip(g.basis.columns()) {
                let same = (&p - &q).iter().fold(0.0f64, |m, d| m.max(d.abs()));
                let flipped = (&p + &q).iter().fold(0.0f64, |m, d| m.max(d.abs()));
                assert!(same.min(flipped) < 1e-6, "layer {l}: {same:e} {flipped:e}");
            }
        }
    }
    let (name, o, dir) = run(
        "workers",
        &["--deadline-ms", "1000", "--straggler-model", "fixed:1:2500"],
    );
    assert!(o.status.success(), "{name}: {}", output_text(&o));
    assert_eq!(status(&dir), "complete");
    let rows = results::read_rows(&dir.join("run.h5"), None).unwrap();
    assert_eq!(rows.len(), 12);
    assert!(rows.column(Metric::Exact).iter().all(|&e| e == 1.0));
    refreshes(&rows, 1.0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("their previous eigenbases are kept"),
        "{}",
        output_text(&o)
    );
}

/// Issue 21, `--kfac-eig auto`: of the four refreshes of a 12-iteration run (every third), the
/// first runs at rank 0, the second on the workers and the third at rank 0 again, timed; the
/// fourth where that measurement says, which `/metrics/kfac_eig_workers` records (NaN on the
/// other iterations) and rank 0 logs. Either way nobody straggles, so the run matches the serial
/// reference and `--kfac-eig rank0` to 1e-8 (losses and parameters) with no fallback.
#[test]
fn kfac_eig_auto_measures_picks_and_stays_exact() {
    let _g = serial();
    let (_, w_ref) = kfac_references("kfac-auto", &dataset(), MLP_BATCH, 1e-3);
    let mut losses = Vec::new();
    let mut fourth = f64::NAN;
    for site in ["rank0", "auto"] {
        let name = format!("kfac-auto-{site}");
        let mut args: Vec<&str> = MLP_BATCH.to_vec();
        args.extend(KFAC);
        args.extend(["--code", "cyclic-mds", "-s", "1", "--kfac-eig", site]);
        args.extend(["--deadline-ms", "5000"]);
        let (o, dir, _) = train(5, &name, &args);
        let rows = assert_exact_run(&name, &o, &dir, &w_ref);
        let at = rows.column(Metric::KfacEigWorkers);
        for (t, &v) in at.iter().enumerate() {
            if t % 3 != 0 {
                assert!(v.is_nan(), "{name}: iteration {t}: {at:?}");
            } else if site == "rank0" {
                assert_eq!(v, 0.0, "{name}: iteration {t}");
            }
        }
        if site == "auto" {
            assert_eq!(at[0], 0.0, "{at:?}");
            assert_eq!(at[3], 1.0, "{at:?}");
            assert_eq!(at[6], 0.0, "{at:?}");
            assert!(at[9] == 0.0 || at[9] == 1.0, "{at:?}");
            fourth = at[9];
            let fallbacks = rows.column(Metric::KfacEigFallbacks);
            assert_eq!(fallbacks[3], 0.0, "{fallbacks:?}");
            let log = String::from_utf8_lossy(&o.stderr);
            let chosen = if at[9] == 1.0 { "workers" } else { "rank0" };
            assert!(
                log.contains("--kfac-eig auto: the workers' eigen round took ")
                    && log.contains(&format!("refreshes after iteration 6 run at {chosen}")),
                "{}",
                output_text(&o)
            );
        }
        losses.push(rows.column(Metric::TrainLoss).to_vec());
    }
    for (a, b) in losses[0].iter().zip(&losses[1]) {
        assert!(
            (a - b).abs() < 1e-8,
            "losses {:?} and {:?} (auto chose {fourth})",
            losses[0],
            losses[1]
        );
    }
}

/// `/metrics/bytes_received` and `messages_received` exactly (docs/results.md, "Traffic"):
/// iteration t counts every result message rank 0 received from its post until its row was
/// written — the on-time ones (`/timing/chunks`) and the late ones of earlier iterations drained
/// meanwhile (`/late` rows received during t) — each `bytes(i)` bytes for a result of iteration
/// i; nothing else (no parameters, check pieces, probe echoes). Nothing is rejected, and at
/// least n − 1 of the `n` workers answer on time.
fn assert_bytes_received(
    name: &str,
    rows: &results::RecordedRows,
    n: usize,
    bytes: impl Fn(u64) -> usize,
) {
    let chunks = rows.worker(WorkerMetric::Chunks);
    let (got, msgs) = (
        rows.column(Metric::BytesReceived),
        rows.column(Metric::MessagesReceived),
    );
    assert!(rows.column(Metric::Rejected).iter().all(|&r| r == 0.0));
    for t in 0..rows.len() {
        let on_time = chunks.row(t).sum() as usize;
        assert!(on_time >= n - 1, "{name}: iteration {t}: {on_time} on time");
        let late: Vec<u64> = rows
            .late
            .iter()
            .filter(|l| l.received_during == t as u64)
            .map(|l| l.iteration)
            .collect();
        let want = on_time * bytes(t as u64) + late.iter().map(|&i| bytes(i)).sum::<usize>();
        assert_eq!(
            got[t], want as f64,
            "{name}: iteration {t}: {on_time} on time, late of iterations {late:?}"
        );
        assert_eq!(
            msgs[t],
            (on_time + late.len()) as f64,
            "{name}: iteration {t}"
        );
    }
}

/// Issue 21, K-FAC: resume is bit-identical — the factors, eigenbases and the iteration of the
/// last factor update are in the checkpoint: 14 straight iterations equal 7 (checkpoint at 5,
/// between two eigendecompositions and after a factor update), a stop, and 9 more after --resume.
#[test]
fn resume_of_kfac_is_bit_identical() {
    let _g = serial();
    let args = |iterations: &str| -> Vec<String> {
        let mut v: Vec<&str> = MLP_BATCH
            .iter()
            .copied()
            .filter(|a| !["--iterations", "12"].contains(a))
            .collect();
        v.extend(KFAC);
        v.extend(["--iterations", iterations, "--code", "frc", "-s", "1"]);
        v.extend(["--checkpoint-every", "5"]);
        v.iter().map(|s| s.to_string()).collect()
    };
    let (full, part, ck, resumed) = stop_and_resume("kfac", &args, "14", "7");
    assert_eq!(ck.iteration, 5);
    let k = ck.state.kfac.expect("K-FAC's state is in the checkpoint");
    assert_eq!(k.last_update, Some(4));
    assert_eq!(k.layers.len(), 3);
    assert_resumed_equals_straight(&full, &part, 14);
    let mut other = resumed.clone();
    let i = other.iter().position(|a| a == "0.01").unwrap();
    other[i] = "0.02".into();
    assert_refused_as_another_configuration(&other);
}

/// A small image dataset converted from IDX files written here: 240 training and 60 test
/// images of 16×16 pixels in 3 classes (a class brightens its own band of rows), made once.
fn image_dataset() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = workdir().join("idx");
        std::fs::create_dir_all(&dir).unwrap();
        let write_idx = |name: &str, n: u32, offset: u32| -> (PathBuf, PathBuf) {
            let (images, labels) = (
                dir.join(format!("{name}-images")),
                dir.join(format!("{name}-labels")),
            );
            let mut img = vec![0, 0, 8, 3];
            for d in [n, 16, 16] {
                img.extend(d.to_be_bytes());
            }
            let mut lab = vec![0, 0, 8, 1];
            lab.extend(n.to_be_bytes());
            for i in 0..n {
                let class = (i + offset) % 3;
                lab.push(class as u8);
                for p in 0..256u32 {
                    let band = (p / 16) / 6 == class;
                    let noise = (p * 37 + (i + offset) * 101) % 90;
                    img.push((noise + if band { 160 } else { 0 }).min(255) as u8);
                }
            }
            std::fs::write(&images, img).unwrap();
            std::fs::write(&labels, lab).unwrap();
            (images, labels)
        };
        let (ti, tl) = write_idx("train", 240, 0);
        let (vi, vl) = write_idx("test", 60, 1);
        let p = workdir().join("images.h5");
        let o = Command::new(BIN)
            .args(["data", "convert", "--format", "idx", "--force", "--input"])
            .arg(&ti)
            .arg("--labels")
            .arg(&tl)
            .arg("--test-input")
            .arg(&vi)
            .arg("--test-labels")
            .arg(&vl)
            .arg("--out")
            .arg(&p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        p
    })
    .clone()
}

/// The MPI job's data, output, and cyclic MDS (s = 1) with worker 2 straggling by 40 ms.
fn cyclic_mds_with_a_straggler<'a>(data: &'a str, out: &'a str) -> [&'a str; 12] {
    [
        "--data",
        data,
        "--out",
        out,
        "--code",
        "cyclic-mds",
        "-s",
        "1",
        "--straggler-model",
        "fixed:2:40",
        "--deadline-ms",
        "5000",
    ]
}

/// Issue 21: the CNN on minibatches of IDX images (the image shape recorded by `data convert`)
/// matches the serial reference drawing the same batches to 1e-8 under cyclic MDS with a
/// straggler, every iteration exact; on a dataset without an image shape every rank refuses
/// `--model cnn` with one error line and exit 2.
#[test]
fn cnn_matches_the_serial_reference_and_needs_an_image_shape() {
    let _g = serial();
    let data = image_dataset().display().to_string();
    let o = common::gradcode(&["data", "inspect", &data]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("images: 1×16×16"),
        "{}",
        output_text(&o)
    );
    let settings = [
        "--model",
        "cnn",
        "--batch",
        "8",
        "--iterations",
        "5",
        "--lr",
        "0.05",
        "--seed",
        "2",
    ];
    let reference = out_dir("cnn-reference");
    let o = common::gradcode(
        &[
            &[
                "train",
                "--reference",
                "--workers",
                "4",
                "--code",
                "uncoded",
            ][..],
            &["--data", &data, "--out", &reference.display().to_string()],
            &settings,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let w_ref = results::read_vector(&reference.join("run.h5"), "model/w_final").unwrap();
    let run = out_dir("cnn-cyclic-mds");
    let run_text = run.display().to_string();
    let coded = cyclic_mds_with_a_straggler(&data, &run_text);
    let (o, _) = mpirun(5, &[&coded[..], &settings].concat(), 120);
    assert!(o.status.success(), "{}", output_text(&o));
    let f = run.join("run.h5");
    let w = results::read_vector(&f, "model/w_final").unwrap();
    let rel = rel_diff(&w, &w_ref);
    assert!(rel < 1e-8, "relative difference to the reference {rel:e}");
    let rows = results::read_rows(&f, None).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.column(Metric::Exact).iter().all(|&e| e == 1.0));
    // Memory-bounded ranks: a budget too small for one row of activations is refused, naming
    // the smallest that could work; under that budget the kernels run on micro-batches (one
    // image at a time here) and the run still matches the reference.
    let _ = std::fs::remove_dir_all(&run);
    let small = [&coded[..], &settings, &["--max-memory-mb", "0.01"]].concat();
    let (o, _) = mpirun(5, &small, 60);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let line = common::the_error_line(&o);
    let needle = "the smallest budget that could work is --max-memory-mb ";
    let at = line.find(needle).unwrap_or_else(|| panic!("{line}")) + needle.len();
    let smallest = line[at..].split_whitespace().next().unwrap().to_string();
    let _ = std::fs::remove_dir_all(&run);
    let fits = [
        &coded[..],
        &settings,
        &["--max-memory-mb", smallest.as_str()],
    ]
    .concat();
    let (o, _) = mpirun(5, &fits, 120);
    assert!(
        o.status.success(),
        "--max-memory-mb {smallest}: {}",
        output_text(&o)
    );
    let w = results::read_vector(&f, "model/w_final").unwrap();
    let rel = rel_diff(&w, &w_ref);
    assert!(
        rel < 1e-8,
        "micro-batches: relative difference to the reference {rel:e}"
    );
    // No image shape: refused by every rank before anything is allocated.
    let synth = dataset().display().to_string();
    let bad = out_dir("cnn-no-image").display().to_string();
    let (o, _) = mpirun(
        5,
        &[
            "--data", &synth, "--out", &bad, "--model", "cnn", "--code", "frc", "-s", "1",
        ],
        60,
    );
    assert_one_mpi_error(&o, "records no image shape");
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

/// Issue 21: a CNN of other widths (`--conv-filters 4,8 --hidden 20`) matches the serial
/// reference to 1e-8 under cyclic MDS with a straggler, records its widths in the run's config,
/// and its checkpoint refuses a resume with other filters; zero filters are refused by every
/// rank with one error line and exit 2.
#[test]
fn cnn_widths_are_trained_recorded_and_checked_on_resume() {
    let _g = serial();
    let data = image_dataset().display().to_string();
    let settings = [
        "--model",
        "cnn",
        "--conv-filters",
        "4,8",
        "--hidden",
        "20",
        "--batch",
        "8",
        "--iterations",
        "4",
        "--lr",
        "0.05",
        "--seed",
        "3",
        "--checkpoint-every",
        "2",
    ];
    let reference = out_dir("cnn-widths-reference");
    let o = common::gradcode(
        &[
            &[
                "train",
                "--reference",
                "--workers",
                "4",
                "--code",
                "uncoded",
            ][..],
            &["--data", &data, "--out", &reference.display().to_string()],
            &settings,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let w_ref = results::read_vector(&reference.join("run.h5"), "model/w_final").unwrap();
    // 16×16 → 12×12 → pooled 6×6 → 2×2 → pooled 1×1; 10 outputs (an IDX dataset's classes).
    assert_eq!(w_ref.len(), 4 * 26 + 8 * 101 + 20 * 9 + 10 * 21);
    let run = out_dir("cnn-widths");
    let run_text = run.display().to_string();
    let coded = cyclic_mds_with_a_straggler(&data, &run_text);
    let (o, _) = mpirun(5, &[&coded[..], &settings].concat(), 120);
    assert!(o.status.success(), "{}", output_text(&o));
    let w = results::read_vector(&run.join("run.h5"), "model/w_final").unwrap();
    let rel = rel_diff(&w, &w_ref);
    assert!(rel < 1e-8, "relative difference to the reference {rel:e}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("conv-filters = \"4,8\"") && config.contains("hidden = \"20\""),
        "{config}"
    );
    // The same run resumed with other filters: refused by its checkpoint.
    let mut other: Vec<String> = [&coded[..], &settings, &["--resume"]]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let at = other.iter().position(|a| a == "4,8").unwrap();
    other[at] = "4,6".into();
    assert_refused_as_another_configuration(&other);
    // Zero filters: every rank refuses before anything is allocated.
    let bad = out_dir("cnn-widths-bad").display().to_string();
    let (o, _) = mpirun(
        5,
        &[
            "--data",
            &data,
            "--out",
            &bad,
            "--model",
            "cnn",
            "--conv-filters",
            "0,8",
        ],
        60,
    );
    assert_one_mpi_error(
        &o,
        "--conv-filters = '0,8': must be the filters of the cnn's two",
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

/// Issue 21, K-FAC on the CNN: the conv layers' KFC factors (sums over the positions) ride on
/// the coded messages like the dense layers' and decode with the gradient's weights, so CNN +
/// K-FAC on minibatches of IDX images under cyclic MDS with a straggler matches the serial
/// reference running the same K-FAC to 1e-8, every iteration exact; the preconditioner acts (ν
/// recorded, the trajectory differs from momentum's), and a factor round's messages carry the
/// packed upper triangles of all four layers' A and G: 351 + 21 (conv 5×5 over 1 channel, 6
/// filters) + 11,476 + 136 (over 6 channels, 16 filters) + 153 + 7,260 (dense 16 → 120) +
/// 7,381 + 55 (dense 120 → 10) = 26,833 values more for 16×16 images (the IDX conversion makes
/// at least 10 classes: the digits' convention; the labels use 3 of them), counted exactly.
#[test]
fn cnn_kfac_matches_the_serial_reference() {
    let _g = serial();
    let data = image_dataset().display().to_string();
    let settings = [
        "--model",
        "cnn",
        "--batch",
        "8",
        "--iterations",
        "6",
        "--lr",
        "0.05",
        "--seed",
        "2",
    ];
    let (_, w_ref) = kfac_references("cnn-kfac", &image_dataset(), &settings, 1e-6);
    let run = out_dir("cnn-kfac-cyclic-mds");
    let run_text = run.display().to_string();
    let coded = cyclic_mds_with_a_straggler(&data, &run_text);
    let (o, _) = mpirun(5, &[&coded[..], &settings, KFAC].concat(), 120);
    let rows = assert_exact_run("cnn-kfac", &o, &run, &w_ref);
    let nu = rows.column(Metric::KfacNu);
    assert!(nu.iter().all(|&v| v > 0.0 && v <= 1.0), "{nu:?}");
    // Parameters of the 16×16 network over 10 classes: 6·26 + 16·151 + 120·17 + 10·121.
    let dim = 6 * 26 + 16 * 151 + 120 * 17 + 10 * 121;
    assert_eq!(
        results::read_vector(&run.join("run.h5"), "model/w_final")
            .unwrap()
            .len(),
        dim
    );
    let (plain, with_factors) = ((12 + dim + 1) * 8, (12 + dim + 1 + 26_833) * 8);
    assert_bytes_received("cnn-kfac", &rows, 4, |i| {
        if i % 2 == 0 {
            with_factors
        } else {
            plain
        }
    });
}

/// Issue 21, memory-bounded K-FAC: the factors, eigenbases and eigensolver workspace count in
/// the `--max-memory-mb` sizing. A 30-2000-2 MLP (A and G of the two layers up to 2001×2001,
/// about 350 MB with K-FAC's scratch) trains under 50 MB with momentum, and K-FAC under the
/// same budget is refused up front, naming K-FAC's share and the smallest budget, by the serial
/// reference and by every rank of the MPI job (one error line, exit 2, no results file).
#[test]
fn kfac_scratch_counts_in_the_memory_budget() {
    let _g = serial();
    let data = dataset().display().to_string();
    let wide = [
        "--model",
        "mlp",
        "--hidden",
        "2000",
        "--batch",
        "16",
        "--iterations",
        "2",
        "--max-memory-mb",
        "50",
    ];
    let out = out_dir("kfac-budget");
    let out_text = out.display().to_string();
    let base = [
        "train",
        "--reference",
        "--workers",
        "4",
        "--code",
        "uncoded",
        "--data",
        &data,
        "--out",
        &out_text,
    ];
    let o = common::gradcode(&[&base[..], &wide, &["--optimizer", "momentum"]].concat());
    assert!(o.status.success(), "momentum: {}", output_text(&o));
    let _ = std::fs::remove_dir_all(&out);
    let o = common::gradcode(&[&base[..], &wide, &["--optimizer", "kfac"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let line = common::the_error_line(&o);
    for needle in [
        "--max-memory-mb = 50: the serial reference needs ",
        "K-FAC's factors, eigenbases and workspace take ",
        "the smallest budget that could work is --max-memory-mb ",
    ] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    assert!(!out.join("run.h5").exists());
    let mpi = [
        "--data",
        &data,
        "--out",
        &out_text,
        "--code",
        "cyclic-mds",
        "-s",
        "1",
        "--optimizer",
        "kfac",
    ];
    let share = |o: &Output| -> f64 {
        let line = common::the_error_line(o);
        let needle = "K-FAC's factors, eigenbases and workspace take ";
        let at = line.find(needle).unwrap_or_else(|| panic!("{line}")) + needle.len();
        let mut words = line[at..].split(' ');
        let value: f64 = words.next().unwrap().parse().unwrap();
        assert_eq!(words.next(), Some("MB"), "{line}");
        value
    };
    let (o, _) = mpirun(5, &[&mpi[..], &wide].concat(), 60);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_one_mpi_error(&o, "K-FAC's factors, eigenbases and workspace take ");
    assert!(!out.join("run.h5").exists());
    // Spread eigendecompositions add the eigen rounds' posts and results to the count.
    let rank0_site = share(&o);
    let (o, _) = mpirun(
        5,
        &[&mpi[..], &wide, &["--kfac-eig", "workers"]].concat(),
        60,
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(share(&o) > rank0_site, "{}", output_text(&o));
}

/// Issue 21 item 5: bad network, minibatch and run-length settings are refused with one error
/// line and exit 2, by the serial reference and (a batch larger than a partition, which only
/// the data reveals) by every rank of the MPI job; `--epochs` runs whole epochs.
#[test]
fn network_and_minibatch_settings_are_checked() {
    let _g = serial();
    let data = dataset().display().to_string();
    let out = out_dir("bad-nn").display().to_string();
    let base = ["train", "--reference", "--data", &data, "--out", &out];
    let cases: &[(&[&str], &str)] = &[
        (&["--model", "mlp", "--hidden", ""], "--hidden = ''"),
        (&["--model", "mlp", "--hidden", "16,0"], "each > 0"),
        (&["--model", "mlp", "--hidden", "16,x"], "--hidden = '16,x'"),
        (
            &["--model", "logistic", "--hidden", "16"],
            "applies to --model mlp",
        ),
        (
            &["--model", "cnn", "--conv-filters", "16"],
            "--conv-filters = '16': must be the filters of the cnn's two convolutions",
        ),
        (
            &["--model", "cnn", "--hidden", "64,32"],
            "--hidden = '64,32': must be the width > 0 of the cnn's one hidden dense layer",
        ),
        (
            &["--model", "mlp", "--conv-filters", "16,32"],
            "--conv-filters = '16,32': applies to --model cnn",
        ),
        (&["--model", "mlp", "--no-intercept"], "--no-intercept"),
        (&["--model", "cnn"], "records no image shape"),
        (&["--batch", "0", "--workers", "4"], "--batch = 0"),
        (&["--batch", "8"], "needs --workers N"),
        (
            &["--epochs", "2", "--iterations", "5"],
            "conflicts with --iterations",
        ),
        (
            &["--optimizer", "adam", "--beta1", "1"],
            "--beta1 = 1: must be in [0, 1)",
        ),
        (&["--optimizer", "adam", "--beta2", "1.5"], "--beta2 = 1.5"),
        (
            &["--optimizer", "adam", "--eps=-1e-8"],
            "--eps = -0.00000001",
        ),
        (&["--beta1", "0.5"], "applies to --optimizer adam"),
        (
            &["--optimizer", "kfac", "--model", "logistic"],
            "--optimizer = kfac: preconditions the layers of --model mlp or cnn (the model is logistic",
        ),
        (&["--kfac-decay", "0.9"], "applies to --optimizer kfac"),
        (
            &["--lr-schedule", "step:0:0.5"],
            "--lr-schedule = 'step:0:0.5'",
        ),
        // 30 → 200,000 → 200,000 → 2: 4·10¹⁰ parameters, sized before anything is allocated.
        (
            &["--model", "mlp", "--hidden", "200000,200000"],
            "30 features, 40006800002 parameters",
        ),
        // 2100 rows in 4 partitions: 525 in each.
        (
            &["--batch", "600", "--workers", "4", "--code", "frc"],
            "--batch = 600: is larger than a partition",
        ),
    ];
    for (extra, needle) in cases {
        let o = common::gradcode(&[&base[..], extra].concat());
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", output_text(&o));
        let line = common::the_error_line(&o);
        assert!(line.contains(needle), "{extra:?}: {line}");
    }
    assert!(!Path::new(&out).join("run.h5").exists());
    let o = mpirun(
        5,
        &[
            "--data", &data, "--out", &out, "--code", "frc", "-s", "1", "--batch", "526",
        ],
        60,
    )
    .0;
    assert_one_mpi_error(&o, "--batch = 526: is larger than a partition");
    // K-FAC on a GLM: refused at validation on every rank, one line, exit 2.
    let o = mpirun(
        5,
        &[
            "--data",
            &data,
            "--out",
            &out,
            "--code",
            "frc",
            "-s",
            "1",
            "--optimizer",
            "kfac",
        ],
        60,
    )
    .0;
    assert_one_mpi_error(
        &o,
        "--optimizer = kfac: preconditions the layers of --model mlp or cnn (the model is logistic",
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    // Two epochs of 4 × 64 rows over 2100 rows: 2 × ⌈2100 / 256⌉ = 18 iterations.
    let run = out_dir("epochs");
    let o = common::gradcode(&[
        "train",
        "--reference",
        "--data",
        &data,
        "--batch",
        "64",
        "--workers",
        "4",
        "--epochs",
        "2",
        "--out",
        &run.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
    assert_eq!(rows.len(), 18);
    assert_eq!(rows.column(Metric::Epoch)[17], 2.0);
    let toml = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        toml.contains("epochs = 2") && !toml.contains("iterations"),
        "{toml}"
    );
}

#[test]
fn approximate_decodings_finish_and_record_their_residuals() {
    let _g = serial();
    // ignore-stragglers: never waits for the straggler, decodes approximately.
    let (o, run, _) = train(
        7,
        "ignore",
        &[
            "--code",
            "ignore-stragglers",
            "-s",
            "1",
            "--straggler-model",
            "fixed:3:200",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows
        .column(Metric::DecodeResidual)
        .iter()
        .all(|&r| r.is_finite() && r > 0.0));
    assert_eq!(
        results::read_str_attr(&run.join("run.h5"), "validation", "check").unwrap(),
        "PASSED"
    );
    // best-effort with more stragglers than the code tolerates: decodes at the deadline.
    let (o, run, _) = train(
        7,
        "best-effort",
        &[
            "--code",
            "cyclic-mds",
            "-s",
            "1",
            "--straggler-model",
            "fixed:2,5:400",
            "--deadline-ms",
            "60",
            "--on-deadline",
            "best-effort",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
    assert_eq!(rows.len(), 20);
    let res = rows.column(Metric::DecodeResidual);
    assert!(
        res.iter().any(|&r| r > 1e-6),
        "best-effort should record non-zero residuals: {res}"
    );
    assert!(rows.column(Metric::Exact).iter().any(|&e| e == 0.0));
    // An expander code beyond its stragglers, with the true gradient error checked every 2nd
    // iteration and the (λ/d)-bound recorded every iteration.
    let (o, run, _) = train(
        11,
        "expander",
        &[
            "--code",
            "expander",
            "--degree",
            "3",
            "-s",
            "3",
            "--straggler-model",
            "exp:5",
            "--check-gradient-every",
            "2",
            "--chunks",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let f = run.join("run.h5");
    let rows = results::read_rows(&f, None).unwrap();
    let err = rows.column(Metric::GradRelErr);
    let bound = rows.column(Metric::ErrorBound);
    let used = rows.column(Metric::NResponders);
    for t in 0..20 {
        assert_eq!(err[t].is_finite(), t % 2 == 0, "grad_rel_err at {t}: {err}");
        // The bound is positive exactly when some worker's chunk was left out (it is 0 when
        // every worker made it before rank 0 looked, which a loaded machine can produce).
        assert!(bound[t].is_finite(), "error_bound at {t}: {bound}");
        assert_eq!(
            bound[t] > 0.0,
            used[t] < 10.0,
            "error_bound {} with {} of 10 workers complete at {t}",
            bound[t],
            used[t]
        );
    }
    assert!(
        err.iter().filter(|v| v.is_finite()).all(|&e| e < 1.0),
        "{err}"
    );
    assert_eq!(
        results::read_str_attr(&f, "validation", "check").unwrap(),
        "PASSED"
    );
}

#[test]
fn an_exact_code_beats_uncoded_with_a_slow_worker() {
    let _g = serial();
    let (o, _, uncoded) = train(
        7,
        "slow-uncoded",
        &[
            "--code",
            "uncoded",
            "-s",
            "0",
            "--straggler-model",
            "fixed:1:300",
            "--iterations",
            "12",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let (o, _, coded) = train(
        7,
        "slow-frc",
        &[
            "--code",
            "frc",
            "-s",
            "1",
            "--straggler-model",
            "fixed:1:300",
            "--iterations",
            "12",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        coded.as_secs_f64() < 0.5 * uncoded.as_secs_f64(),
        "frc {coded:?} vs uncoded {uncoded:?}"
    );
}

#[test]
fn a_failed_worker_is_tolerated_by_exact_codes_and_stops_uncoded_cleanly() {
    let _g = serial();
    let w_ref = reference_w();
    for (code, s) in [
        ("frc", "1"),
        ("cyclic-repetition", "1"),
        ("cyclic-mds", "1"),
    ] {
        let (o, run, _) = train(
            7,
            &format!("fail-{code}"),
            &["--code", code, "-s", s, "--straggler-model", "fail:2@5"],
        );
        assert!(o.status.success(), "{code}: {}", output_text(&o));
        let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
        assert_eq!(rows.len(), 20);
        assert!(rows.column(Metric::Exact).iter().all(|&e| e == 1.0));
        let arrivals = rows.worker(WorkerMetric::ArrivalS);
        assert!(
            arrivals.column(1).iter().skip(5).all(|v| v.is_nan()),
            "rank 2 must be silent from iteration 5"
        );
        let w = results::read_vector(&run.join("run.h5"), "model/w_final").unwrap();
        assert!(rel_diff(&w, &w_ref) < 1e-8);
    }
    let (o, run, took) = train(
        7,
        "fail-uncoded",
        &[
            "--code",
            "uncoded",
            "-s",
            "0",
            "--straggler-model",
            "fail:2@5",
            "--deadline-ms",
            "200",
            "--max-wait-ms",
            "1500",
        ],
    );
    assert!(
        !o.status.success(),
        "uncoded with a failed worker must fail: {}",
        output_text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no decodable set") && err.contains("silent workers"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < Duration::from_secs(30));
    assert_eq!(status(&run), "failed");
    assert_eq!(
        results::read_rows(&run.join("run.h5"), None).unwrap().len(),
        5
    );
}

/// Issue 20 §4: the α–β link probe at start-up writes the fitted latency and inverse bandwidth
/// of the links to rank 0 into `/env`, finite and positive, within its budget.
#[test]
fn the_link_probe_records_alpha_and_beta() {
    let _g = serial();
    let (o, run, _) = train(5, "link-probe", &["--code", "frc", "-s", "1"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let f = run.join("run.h5");
    let alpha = results::read_num_attr(&f, "env", "link_alpha_s").unwrap();
    let beta = results::read_num_attr(&f, "env", "link_beta_s_per_byte").unwrap();
    assert!(alpha.is_finite() && alpha > 0.0, "alpha {alpha}");
    assert!(beta.is_finite() && beta > 0.0, "beta {beta}");
    let trips = results::read_num_attr(&f, "env", "link_probe_round_trips").unwrap();
    assert!(
        trips >= 8.0,
        "at least two sizes to each of the 4 workers: {trips}"
    );
    let took = results::read_num_attr(&f, "env", "link_probe_s").unwrap();
    assert!(took < 0.2 + 0.1, "the probe keeps to its budget: {took} s");
    assert!(
        output_text(&o).contains("link probe: alpha"),
        "logged once at rank 0: {}",
        output_text(&o)
    );
}

#[test]
fn results_file_describes_itself() {
    let _g = serial();
    let (o, run, _) = train(
        5,
        "schema",
        &["--code", "frc", "-s", "1", "--straggler-model", "exp:5"],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let f = run.join("run.h5");
    assert_eq!(status(&run), "complete");
    for (g, a) in [
        ("code", "git_revision"),
        ("code", "mpi_library"),
        ("code", "hdf5_version"),
        ("config", "toml"),
        ("config", "code"),
    ] {
        assert!(
            !results::read_str_attr(&f, g, a).unwrap().is_empty(),
            "/{g} @{a}"
        );
    }
    assert!(results::read_str_attr(&f, "code", "mpi_library")
        .unwrap()
        .contains("MPI"));
    assert_eq!(
        results::read_str_attr(&f, "validation", "verdict").unwrap(),
        "VALID"
    );
    let rows = results::read_rows(&f, None).unwrap();
    assert_eq!(rows.worker(WorkerMetric::ArrivalS).ncols(), 4);
    assert!(rows.column(Metric::OracleS).iter().all(|v| v.is_finite()));
    assert!(rows
        .column(Metric::TestAccuracy)
        .iter()
        .any(|v| v.is_finite()));
    // ROC AUC, recorded where the test split was evaluated, equals the AUC of the final
    // parameters' scores on the test split (`model::roc_auc`, itself checked against counting
    // every pair in the unit tests).
    let (acc, auc) = (
        rows.column(Metric::TestAccuracy),
        rows.column(Metric::TestAuc),
    );
    for (a, u) in acc.iter().zip(auc) {
        assert_eq!(a.is_finite(), u.is_finite(), "accuracy {a}, AUC {u}");
    }
    let test =
        gradcode::io::dataset::read_all(&dataset(), gradcode::io::dataset::Split::Test).unwrap();
    let w = results::read_vector(&f, "model/w_final").unwrap();
    let gradcode::data::Features::Dense(x) = &test.x else {
        panic!("synthetic data is dense")
    };
    let d = x.ncols();
    let z = x.dot(&w.slice(ndarray::s![..d])) + w[d];
    let mut scored: Vec<(f64, bool)> = z.iter().zip(&test.y).map(|(&z, &y)| (z, y > 0.0)).collect();
    let counted = gradcode::model::roc_auc(&mut scored).unwrap();
    let last_auc = auc[auc.len() - 1];
    assert!(
        (last_auc - counted).abs() < 1e-12,
        "recorded AUC {last_auc}, counted {counted}"
    );
    assert!(
        last_auc > 0.5,
        "a trained classifier ranks better than chance: {last_auc}"
    );
    let summary_auc = hdf5::File::open(&f)
        .and_then(|h| h.group("summary"))
        .and_then(|g| g.attr("final_test_auc"))
        .and_then(|a| a.read_scalar::<f64>())
        .unwrap();
    assert_eq!(summary_auc, last_auc);
    // Every message that arrived reports the delay its worker injected (exp:5: finite, ≥ 0);
    // no message, no delay (NaN).
    for (a, d) in rows
        .worker(WorkerMetric::ArrivalS)
        .iter()
        .zip(rows.worker(WorkerMetric::InjectedS).iter())
    {
        assert_eq!(a.is_finite(), d.is_finite(), "arrival {a}, injected {d}");
        assert!(d.is_nan() || *d >= 0.0, "injected {d}");
    }
    assert!(rows
        .worker(WorkerMetric::InjectedS)
        .iter()
        .any(|d| *d > 0.0));
    for m in [
        Metric::WallS,
        Metric::DecodeS,
        Metric::TrainLoss,
        Metric::NResponders,
        Metric::DecodeResidual,
        Metric::Cond,
    ] {
        let c = rows.column(m);
        let m = m.name();
        assert_eq!(c.len(), 20, "/metrics/{m}");
        assert!(c.iter().all(|v| v.is_finite()), "/metrics/{m}: {c}");
    }
    for a in ["hostname", "command_line"] {
        assert!(
            !results::read_str_attr(&f, "env", a).unwrap().is_empty(),
            "/env @{a}"
        );
    }
    let b = hdf5::File::open(&f)
        .and_then(|h| h.dataset("code_matrix/B"))
        .and_then(|d| d.read_2d::<f64>())
        .unwrap();
    // FRC, n = 4, s = 1: 4 workers × 4 partitions, each worker holding s + 1 = 2 of them.
    assert_eq!(b.dim(), (4, 4));
    assert!(b
        .rows()
        .into_iter()
        .all(|r| r.iter().filter(|v| **v != 0.0).count() == 2));
    for a in ["responders", "not_decoded", "silent"] {
        assert!(
            results::read_str_attr(&f, "validation", a).is_ok(),
            "/validation @{a}"
        );
    }
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(cfg.contains("code = \"frc\""), "{cfg}");
    // An existing run is not overwritten without --force.
    let (o, _, _) = {
        let data = dataset();
        let out = run.display().to_string();
        let (o, t) = mpirun(
            5,
            &[
                "--data",
                &data.display().to_string(),
                "--code",
                "frc",
                "-s",
                "1",
                "--out",
                &out,
            ],
            60,
        );
        (o, (), t)
    };
    // Refused before any MPI traffic: one error line naming --force, non-zero exit.
    assert_one_mpi_error(&o, "--force");
    assert_eq!(status(&run), "complete");
}

/// The resumed run in `part` ended where the straight one in `full` did, bit for bit: the
/// parameters, and every one of its `rows` rows of loss, iteration and epoch.
fn assert_resumed_equals_straight(full: &Path, part: &Path, rows: usize) {
    let a = results::read_vector(&full.join("run.h5"), "model/w_final").unwrap();
    let b = results::read_vector(&part.join("run.h5"), "model/w_final").unwrap();
    assert_eq!(a, b, "resumed parameters differ from the uninterrupted run");
    let ra = results::read_rows(&full.join("run.h5"), None).unwrap();
    let rb = results::read_rows(&part.join("run.h5"), None).unwrap();
    assert_eq!(rb.len(), rows);
    for m in [Metric::TrainLoss, Metric::Iteration, Metric::Epoch] {
        assert_eq!(ra.column(m), rb.column(m), "{}", m.name());
    }
}

#[test]
fn resume_from_a_checkpoint_is_bit_identical() {
    let _g = serial();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--code",
            "frc",
            "-s",
            "1",
            "--optimizer",
            "nesterov",
            "--checkpoint-every",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let straight = args(&["--iterations", "20"]);
    let s: Vec<&str> = straight.iter().map(String::as_str).collect();
    let (o, full, _) = train(5, "straight", &s);
    assert!(o.status.success(), "{}", output_text(&o));
    // The same run stopped at 12 (config hash ignores the iteration count), then resumed to 20.
    let first = args(&["--iterations", "12"]);
    let f: Vec<&str> = first.iter().map(String::as_str).collect();
    let (o, part, _) = train(5, "resumed", &f);
    assert!(o.status.success(), "{}", output_text(&o));
    let data = dataset().display().to_string();
    let out = part.display().to_string();
    let resumed = args(&[
        "--iterations",
        "20",
        "--resume",
        "--data",
        &data,
        "--out",
        &out,
        "--model",
        "logistic",
        "--lr",
        "1.0",
        "--seed",
        "5",
    ]);
    let r: Vec<&str> = resumed.iter().map(String::as_str).collect();
    let (o, _) = mpirun(5, &r, 120);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_resumed_equals_straight(&full, &part, 20);
    // A checkpoint from another configuration is refused.
    let other = args(&[
        "--iterations",
        "30",
        "--resume",
        "--data",
        &data,
        "--out",
        &out,
        "--model",
        "logistic",
        "--lr",
        "0.5",
        "--seed",
        "5",
    ]);
    assert_refused_as_another_configuration(&other);
}

/// Issue 21 item 3: resume is bit-identical for Adam (its moments are in the checkpoint) with
/// a warmed-up cosine schedule, an MLP and minibatches: 16 straight iterations equal 10, a stop,
/// and 6 more after --resume, parameters and every row of the loss.
#[test]
fn resume_of_adam_on_mlp_minibatches_is_bit_identical() {
    let _g = serial();
    let args = |iterations: &str| -> Vec<String> {
        let mut v: Vec<&str> = MLP_BATCH
            .iter()
            .copied()
            .filter(|a| !["--iterations", "12", "--lr", "0.5"].contains(a))
            .collect();
        v.extend([
            "--iterations",
            iterations,
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--beta2",
            "0.99",
            "--lr-schedule",
            "cosine:30",
            "--warmup",
            "4",
            "--code",
            "frc",
            "-s",
            "1",
            "--checkpoint-every",
            "5",
        ]);
        v.iter().map(|s| s.to_string()).collect()
    };
    let (full, part, ck, resumed) = stop_and_resume("adam", &args, "16", "10");
    assert_eq!(ck.iteration, 5, "the last checkpoint before iteration 10");
    assert!(
        ck.state.adam.is_some(),
        "Adam's moments are in the checkpoint"
    );
    assert_resumed_equals_straight(&full, &part, 16);
    // The same folder under gd (another trajectory) is refused.
    let mut other = resumed.clone();
    let i = other.iter().position(|a| a == "adam").unwrap();
    other[i] = "gd".into();
    other.retain(|a| a != "--beta2" && a != "0.99");
    assert_refused_as_another_configuration(&other);
}

/// Run `args(total)` into `NAME-straight` and `args(stop)` into `NAME-resumed` (5 ranks each),
/// read the latter's checkpoint, then resume it to `total`. Returns both folders, the
/// checkpoint the resume started from and the resume's arguments.
fn stop_and_resume(
    name: &str,
    args: &dyn Fn(&str) -> Vec<String>,
    total: &str,
    stop: &str,
) -> (
    PathBuf,
    PathBuf,
    gradcode::io::checkpoint::Checkpoint,
    Vec<String>,
) {
    let straight = args(total);
    let s: Vec<&str> = straight.iter().map(String::as_str).collect();
    let (o, full, _) = train(5, &format!("{name}-straight"), &s);
    assert!(o.status.success(), "{}", output_text(&o));
    let first = args(stop);
    let f: Vec<&str> = first.iter().map(String::as_str).collect();
    let (o, part, _) = train(5, &format!("{name}-resumed"), &f);
    assert!(o.status.success(), "{}", output_text(&o));
    let ck = gradcode::io::checkpoint::read(&part.join("ckpt.h5"), &attr_hash(&part)).unwrap();
    let data = dataset().display().to_string();
    let out = part.display().to_string();
    let mut resumed = args(total);
    resumed.extend(["--resume", "--data", &data, "--out", &out].map(String::from));
    let r: Vec<&str> = resumed.iter().map(String::as_str).collect();
    let (o, _) = mpirun(5, &r, 120);
    assert!(o.status.success(), "{}", output_text(&o));
    (full, part, ck, resumed)
}

/// `mpirun -np 5 gradcode train ARGS` with `--resume` into a folder whose checkpoint another
/// configuration wrote: refused.
fn assert_refused_as_another_configuration(args: &[String]) {
    let x: Vec<&str> = args.iter().map(String::as_str).collect();
    let (o, _) = mpirun(5, &x, 60);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another configuration"),
        "{}",
        output_text(&o)
    );
}

/// The trajectory hash a run recorded in its results file.
fn attr_hash(run: &Path) -> String {
    results::read_str_attr(&run.join("run.h5"), "config", "config_sha256").unwrap()
}

/// `--reuse-stale`: two workers slow (30 and 45 ms), more than the s = 1 the code tolerates, so
/// an iteration waits for the first and the second's gradient arrives one iteration late. With the
/// flag it is folded into the next decode and recorded (`stale`, `/timing/stale_age` = 1);
/// without it, it is dropped as late. The first (validated) iteration never uses one, an
/// iteration is flagged exact exactly when it used none, and training still converges.
#[test]
fn gradients_one_iteration_late_are_folded_in_with_reuse_stale_and_recorded() {
    let _g = serial();
    let common = [
        "--code",
        "cyclic-mds",
        "-s",
        "1",
        "--iterations",
        "40",
        "--straggler-model",
        "fixed:1:30+fixed:2:45",
    ];
    let mut reuse = common.to_vec();
    reuse.push("--reuse-stale");
    for (name, args, flag) in [
        ("stale-off", &common[..], false),
        ("stale-on", &reuse[..], true),
    ] {
        let (o, run, _) = train(5, name, args);
        assert!(o.status.success(), "{}", output_text(&o));
        assert_eq!(status(&run), "complete");
        let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
        let stale = rows.column(Metric::Stale);
        let ages = rows.worker(WorkerMetric::StaleAge);
        let responders = rows.column(Metric::NResponders);
        let exact = rows.column(Metric::Exact);
        let loss = rows.column(Metric::TrainLoss);
        assert_eq!(
            stale[0], 0.0,
            "{name}: the validated iteration uses no stale gradient"
        );
        for i in 0..rows.len() {
            let row = ages.row(i);
            assert!(
                row.iter().all(|&a| a.is_nan() || a == 0.0 || a == 1.0),
                "{name}: ages {row}"
            );
            let folded = row.iter().filter(|&&a| a == 1.0).count();
            assert_eq!(stale[i], folded as f64, "{name}: iteration {i}");
            assert!(responders[i] >= 3.0, "{name}: iteration {i}");
            // Exact means the gradient at the current parameters: not with a stale one in it.
            assert_eq!(
                exact[i],
                f64::from(u8::from(folded == 0)),
                "{name}: iteration {i}"
            );
        }
        let total: f64 = stale.sum();
        if flag {
            assert!(
                total >= 5.0,
                "{name}: only {total} stale gradients folded in"
            );
            let c = results::read_str_attr(&run.join("run.h5"), "config", "toml").unwrap();
            assert!(c.contains("reuse-stale = true"), "{c}");
        } else {
            assert_eq!(total, 0.0, "{name}: stale gradients used without the flag");
        }
        assert!(loss[loss.len() - 1] < loss[0], "{name}: loss {loss}");
    }
}

#[test]
fn partial_work_of_slow_workers_is_decoded_exactly_and_sooner() {
    let _g = serial();
    let w_ref = reference_w();
    // Two workers 300 ms slow, more than the s = 1 the code tolerates: without chunks every
    // iteration waits for one of them; with 3 chunks their first chunks (cyclic orders) cover
    // every sub-partition after about two thirds of their delay.
    let common = [
        "--code",
        "cyclic-mds",
        "-s",
        "1",
        "--straggler-model",
        "fixed:2,4:300",
        "--log-every",
        "1",
    ];
    let mut one: Vec<&str> = common.to_vec();
    one.extend(["--chunks", "1"]);
    let (o, run1, _) = train(7, "chunks-1", &one);
    assert!(o.status.success(), "{}", output_text(&o));
    let mut three: Vec<&str> = common.to_vec();
    three.extend(["--chunks", "3"]);
    let (o, run3, _) = train(7, "chunks-3", &three);
    assert!(o.status.success(), "{}", output_text(&o));
    for run in [&run1, &run3] {
        let w = results::read_vector(&run.join("run.h5"), "model/w_final").unwrap();
        assert!(
            rel_diff(&w, &w_ref) < 1e-8,
            "{}: not the reference",
            run.display()
        );
        assert_eq!(
            results::read_str_attr(&run.join("run.h5"), "validation", "check").unwrap(),
            "PASSED"
        );
    }
    let r1 = results::read_rows(&run1.join("run.h5"), None).unwrap();
    let r3 = results::read_rows(&run3.join("run.h5"), None).unwrap();
    assert!(r3.column(Metric::Exact).iter().all(|&e| e == 1.0));
    // Iteration 0 starts with every worker idle: the chunked run decodes it well before 300 ms.
    let (w1, w3) = (r1.column(Metric::WallS)[0], r3.column(Metric::WallS)[0]);
    assert!(
        w1 >= 0.29 && w3 < w1 - 0.05,
        "first iteration: {w1} s without chunks, {w3} s with 3"
    );
    // The slow workers' partial results were used: they delivered some but not all chunks.
    let chunks = r3.worker(WorkerMetric::Chunks);
    assert!(
        chunks.column(1).iter().any(|&c| c > 0.0 && c < 3.0),
        "rank 2 chunks: {:?}",
        chunks.column(1)
    );
    assert!(chunks.column(0).iter().all(|&c| c == 3.0));
}

/// Start a long FRC run (1 + 4 ranks, 20 ms straggler) into `run`, returning the mpirun child.
fn spawn_long_run(data: &str, run: &Path) -> std::process::Child {
    Command::new("mpirun")
        .args([
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
            "5",
            BIN,
            "train",
            "--data",
            data,
        ])
        .args([
            // Few log lines: MPICH's hydra can abort when a signal interrupts its forwarding of
            // output (EINTR in HYDU_sock_write), which is not what this test is about.
            "--log-every",
            "1000000",
            "--code",
            "frc",
            "-s",
            "1",
            "--iterations",
            "100000",
            "--straggler-model",
            "fixed:1:20",
            "--out",
        ])
        .arg(run)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_leaves_a_readable_file_and_usr1_checkpoints_for_requeue() {
    let _g = serial();
    let data = dataset().display().to_string();
    // kill -9 of every rank mid-run, as an OOM killer or a node failure would.
    let run = out_dir("killed");
    let mut child = spawn_long_run(&data, &run);
    std::thread::sleep(Duration::from_secs(4));
    let pattern = format!("{BIN} train --data {data} --log-every 1000000 --code frc");
    let _ = Command::new("pkill").args(["-9", "-f", &pattern]).status();
    let _ = child.kill();
    let _ = child.wait();
    let rows =
        results::read_rows(&run.join("run.h5"), None).expect("killed run's results must open");
    assert!(rows.len() > 5, "only {} rows survived", rows.len());
    assert_eq!(status(&run), "running");
    let it = rows.column(Metric::Iteration);
    assert!(
        it.iter().enumerate().all(|(i, &v)| v == i as f64),
        "rows are the finished iterations in order"
    );

    // USR1: checkpoint at the next iteration boundary, status interrupted, exit code 75.
    let run = out_dir("usr1");
    let child = spawn_long_run(&data, &run);
    std::thread::sleep(Duration::from_secs(4));
    let _ = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status();
    let start = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    // gradcode's own verdict is the file's status (exit code 75 on rank 0). Open MPI's mpirun
    // always passes 75 on; MPICH's hydra, which forwards the USR1 to every process itself, was
    // seen once (of dozens of runs) to return 0 for the same run, so under hydra the launcher's
    // code may be 0 or 75 and nothing else.
    let code = o.status.code();
    let hydra = std::env::var("GRADCODE_TEST_LAUNCHER").as_deref() == Ok("hydra");
    assert!(
        code == Some(75) || (hydra && code == Some(0)),
        "exit code {code:?}\n{}",
        output_text(&o)
    );
    assert_eq!(status(&run), "interrupted");
    assert!(run.join("ckpt.h5").exists());
}

/// The PID of rank 0 of the job whose command line contains `marker` (Open MPI sets
/// OMPI_COMM_WORLD_RANK, MPICH's hydra PMI_RANK in each rank's environment).
fn rank0_pid(marker: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.starts_with(BIN) || !cmd.contains(marker) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let rank0 = env
            .split(|b| *b == 0)
            .any(|v| v == b"OMPI_COMM_WORLD_RANK=0" || v == b"PMI_RANK=0");
        if rank0 {
            return Some(pid);
        }
    }
    None
}

#[test]
fn sigterm_while_waiting_for_a_failed_worker_checkpoints_at_once() {
    let _g = serial();
    let data = dataset().display().to_string();
    let run = out_dir("sigterm-wait");
    let out = run.display().to_string();
    // uncoded needs every worker; rank 2 fails at iteration 3, so iteration 3 waits for it up
    // to --max-wait-ms (a minute). SIGTERM (Slurm's scancel, with SIGKILL KillWait seconds
    // later) must not wait that minute out: rank 0 checkpoints iteration 3 and stops.
    let child = common::mpirun_command(5, 90, &[])
        .args([
            "train", "--data", &data, "--model", "logistic", "--code", "uncoded",
        ])
        .args([
            "-s",
            "0",
            "--iterations",
            "50",
            "--lr",
            "1.0",
            "--seed",
            "5",
        ])
        .args(["--straggler-model", "fail:2@3", "--deadline-ms", "100"])
        .args([
            "--on-deadline",
            "wait",
            "--max-wait-ms",
            "60000",
            "--out",
            &out,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until iteration 3 is stuck: rows 0..2 are flushed at most 1 s after they were made.
    let start = Instant::now();
    let pid = loop {
        let rows = results::read_rows(&run.join("run.h5"), None).map_or(0, |r| r.len());
        match rank0_pid(&out) {
            Some(pid) if rows == 3 => break pid,
            _ if start.elapsed() > Duration::from_secs(30) => {
                let o = child.wait_with_output().unwrap();
                panic!("the job never reached iteration 3: {}", output_text(&o));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let signalled = Instant::now();
    let o = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "stopped {took:?} after SIGTERM: {}",
        output_text(&o)
    );
    assert!(!o.status.success(), "{}", output_text(&o));
    assert_eq!(status(&run), "interrupted", "{}", output_text(&o));
    let hash = results::read_str_attr(&run.join("run.h5"), "config", "config_sha256").unwrap();
    let (ck, _, _) = gradcode::io::checkpoint::load(&run, &hash).unwrap();
    assert_eq!(
        ck.iteration, 3,
        "the checkpoint resumes at the abandoned iteration"
    );
    assert_eq!(
        results::read_rows(&run.join("run.h5"), None).unwrap().len(),
        3
    );
}

#[test]
fn a_config_file_sets_the_run_and_flags_override_it() {
    let _g = serial();
    let dir = out_dir("config-file");
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("run.toml");
    let run = dir.join("run");
    std::fs::write(
        &toml,
        format!(
            "data = \"{}\"\nmodel = \"logistic\"\ncode = \"cyclic-mds\"\nstragglers = 1\niterations = 7\nlr = 0.3\nseed = 5\n",
            dataset().display()
        ),
    )
    .unwrap();
    let (o, _) = mpirun(
        5,
        &[
            "--config",
            &toml.display().to_string(),
            "--lr",
            "0.7",
            "--out",
            &run.display().to_string(),
        ],
        60,
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let f = run.join("run.h5");
    assert_eq!(
        results::read_rows(&f, None).unwrap().len(),
        7,
        "iterations from the file"
    );
    assert_eq!(
        results::read_str_attr(&f, "config", "code").unwrap(),
        "cyclic-mds"
    );
    // The effective config (the flag over the file) is written back, beside run.h5 and in it.
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let eff: toml::Table = written.parse().unwrap();
    assert_eq!(eff["lr"].as_float(), Some(0.7), "{written}");
    assert_eq!(eff["iterations"].as_integer(), Some(7), "{written}");
    assert_eq!(eff["code"].as_str(), Some("cyclic-mds"), "{written}");
    let inside: toml::Table = results::read_str_attr(&f, "config", "toml")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(inside, eff);
}

#[test]
fn bad_input_fails_cleanly_on_every_rank() {
    let _g = serial();
    let data = dataset().display().to_string();
    let out = out_dir("bad").display().to_string();
    let cases: Vec<(usize, Vec<&str>, &str)> = vec![
        (
            7,
            vec!["--code", "frc", "-s", "3"],
            "must divide the number of workers",
        ),
        (5, vec!["--code", "cyclic-mds", "-s", "2"], "nearest"),
        (
            5,
            vec!["--code", "frc", "-s", "4"],
            "smaller than the number of workers",
        ),
        (
            5,
            vec!["--code", "frc", "-s", "1", "--deadline-ms=0"],
            "--deadline-ms",
        ),
        (
            5,
            vec!["--code", "frc", "-s", "1", "--model", "softmax"],
            "softmax",
        ),
        (
            5,
            vec![
                "--code",
                "frc",
                "-s",
                "1",
                "--straggler-model",
                "fixed:9:10",
            ],
            "not a worker rank",
        ),
        (1, vec!["--code", "frc", "-s", "1"], "mpirun -np N+1"),
        // Compression settings: a fraction of 0, low rank on a GLM, an unknown compressor
        // (the parser, on every rank), error feedback without a compressor.
        (
            5,
            vec!["--compress", "topk:0"],
            "invalid value 'topk:0' for '--compress <SPEC>': the fraction of entries kept must be a number in (0, 1]",
        ),
        (
            5,
            vec!["--compress", "lowrank:2"],
            "--compress lowrank on a GLM (logistic)",
        ),
        (5, vec!["--compress", "zip"], "unknown compressor"),
        (5, vec!["--error-feedback"], "needs a compressor"),
        (
            5,
            vec!["--compress", "qsgd:4", "--error-feedback"],
            "feeding back the error of --compress qsgd:4 is unstable",
        ),
        // A split that does not fit: each worker holds s + m of the n partitions.
        (
            5,
            vec!["--code", "comm-efficient", "-s", "1", "--split", "4"],
            "m must be between 1 and n − s = 3",
        ),
        (
            5,
            vec!["--code", "cyclic-mds", "-s", "1", "--split", "2"],
            "applies only to the comm-efficient code",
        ),
        // An unknown code name is refused by the parser on every rank, printed once (rank 0).
        (
            5,
            vec!["--code", "bogus", "-s", "1"],
            "invalid value 'bogus' for '--code",
        ),
    ];
    for (np, extra, needle) in cases {
        let mut args = vec!["--data", data.as_str(), "--out", out.as_str()];
        args.extend(extra.iter());
        let start = Instant::now();
        let (o, _) = mpirun(np, &args, 60);
        assert_one_mpi_error(&o, needle);
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    // Fewer rows than the code has partitions: no partition may be empty.
    let tiny = workdir().join("tiny.h5");
    let o = Command::new(BIN)
        .args(["data", "synth", "--kind", "logistic", "--rows", "3"])
        .args(["--features", "4", "--seed", "1", "--force", "--out"])
        .arg(&tiny)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let tiny = tiny.display().to_string();
    let (o, _) = mpirun(
        7,
        &["--data", &tiny, "--out", &out, "--code", "frc", "-s", "1"],
        60,
    );
    assert_one_mpi_error(&o, "cannot split 3 rows into 6 non-empty partitions");
    let missing = workdir().join("missing.h5").display().to_string();
    let (o, _) = mpirun(5, &["--data", &missing, "--out", &out], 60);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{}",
        output_text(&o)
    );
}

/// `--decode-tree G` (issue 20 §4): leaders forward one combined result per group, and the run
/// matches the serial reference to 1e-8 with every iteration exact and the decoded gradient
/// checked against the exact one at every iteration (to 1e-8), with a straggling member, and
/// with a straggling leader (its group is lost; rank 0's outer code decodes without it);
/// rank 0 receives only the leaders' results (G + 1 values longer than a member's by the
/// mask), so its bytes per iteration are at most n/G such messages. Members count through their
/// leaders' member masks: `/timing/chunks` adds up to `n_responders` every iteration, a group's
/// members count only when its leader's combination came on time (then at least a decodable
/// set of the group: G − s members under the cyclic codes, G/(s + 1) under frc), so every
/// iteration counts at least a decodable set of groups times that, not just the leaders;
/// the end-of-run summary and `gradcode report` say that rank 0 heard from the leaders only, and
/// the report's per-worker counts are the file's.
#[test]
fn tree_decode_matches_the_reference_with_a_straggling_member() {
    let _g = serial();
    let w_ref = reference_w();
    // (code, n, G, s, straggler): rank 2 is a member of the first group, rank 1 its leader.
    let cases = [
        ("cyclic-mds", 8, 4, 1, "fixed:2:150"),
        ("frc", 8, 4, 1, "fixed:2:150"),
        ("cyclic-repetition", 6, 3, 1, "fixed:2:150"),
        ("cyclic-mds", 8, 4, 1, "fixed:1:150"),
    ];
    for (code, n, g, s, stragglers) in cases {
        let name = format!("tree-{code}-{n}-{g}");
        let g_text = g.to_string();
        let extra = ["--decode-tree", &g_text, "--check-gradient-every", "1"];
        let (o, run) = train_code(n, &name, code, s, stragglers, &extra);
        let rows = assert_exact_run(&name, &o, &run, &w_ref);
        assert_eq!(rows.len(), 20);
        assert!(
            rows.column(Metric::GradRelErr).iter().all(|&e| e < 1e-8),
            "{name}: {:?}",
            rows.column(Metric::GradRelErr)
        );
        // A leader's result: header, 31 parameters' gradient, the loss and the member mask;
        // each leader sends one per round it is given (a late one counts in the round it
        // arrives in), where the flat decode receives n results of 12 + 32 values.
        let leader_bytes = ((12 + 31 + 2) * 8) as f64;
        let bytes = rows.column(Metric::BytesReceived);
        let total: f64 = bytes.iter().sum();
        assert!(
            bytes.iter().all(|&b| b > 0.0) && total <= 20.0 * (n / g) as f64 * leader_bytes,
            "{name}: {bytes:?} bytes received"
        );
        assert!(total < 20.0 * (n * (12 + 32) * 8) as f64 / 2.0, "{name}");
        // Leaders only: at most n/G results a round, every one at most a leader's length.
        let msgs = rows.column(Metric::MessagesReceived);
        assert!(
            msgs.iter()
                .zip(bytes.iter())
                .all(|(&m, &b)| m >= 1.0 && b <= m * leader_bytes)
                && msgs.iter().sum::<f64>() <= 20.0 * (n / g) as f64,
            "{name}: {msgs:?} messages received"
        );
        assert_tree_members_counted(&name, &o, &run, &rows, code, (n, g, s));
    }
}

/// A `--decode-tree G` run's per-worker counts go through the leaders' member masks (see
/// [`tree_decode_matches_the_reference_with_a_straggling_member`]).
fn assert_tree_members_counted(
    name: &str,
    o: &Output,
    run: &Path,
    rows: &results::RecordedRows,
    code: &str,
    (n, g, s): (usize, usize, usize),
) {
    // The fewest members (groups) a group (rank 0) decodes from: any G − s (n/G − s) under the
    // cyclic codes, one of each of the G/(s + 1) ((n/G)/(s + 1)) blocks under frc.
    let fewest = |k: usize| if code == "frc" { k / (s + 1) } else { k - s };
    let chunks = rows.worker(WorkerMetric::Chunks);
    let responders = rows.column(Metric::NResponders);
    for t in 0..rows.len() {
        let row = chunks.row(t);
        assert!(row.iter().all(|&c| c == 0.0 || c == 1.0), "{name}: {row}");
        assert_eq!(row.sum(), responders[t], "{name}: iteration {t}: {row}");
        assert!(
            row.sum() >= (fewest(n / g) * fewest(g)) as f64,
            "{name}: iteration {t}: only {row} counted"
        );
        for group in row.as_slice().unwrap().chunks(g) {
            let counted = group.iter().sum::<f64>();
            if group[0] == 1.0 {
                assert!(counted >= fewest(g) as f64, "{name}: iteration {t}: {row}");
            } else {
                assert_eq!(counted, 0.0, "{name}: iteration {t}: {row}");
            }
        }
    }
    let leaders: Vec<usize> = (1..=n).step_by(g).collect();
    let note =
        format!("tree decode (groups of {g}): rank 0 heard from the leaders {leaders:?} only");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&note), "{name}: {stdout}");
    let file = run.display().to_string();
    let text = common::gradcode(&["report", &file]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&note), "{name}: {text}");
    let o = common::gradcode(&["report", "--json", &file]);
    assert!(o.status.success(), "{}", output_text(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let on_time: Vec<f64> = json["runs"][0]["on_time"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no on_time in {json}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let expect: Vec<f64> = (0..n).map(|w| chunks.column(w).sum()).collect();
    assert_eq!(on_time, expect, "{name}: report on_time vs /timing/chunks");
}

/// `--decode-tree 2 --compress` (issue 20 §3 with §4): the leaders compress the combinations
/// they forward. n = 4, s = 1, cyclic-mds: with qsgd:4, and with topk:0.25 and error feedback,
/// the run completes, the gradient check PASSES on the uncompressed decode while
/// `compress_rel_err` records a change at every check, every iteration rank 0 receives whole
/// compressed leader messages (12 + wire(31) + loss + mask values: 18 and 23 against 45
/// uncompressed) and fewer bytes than the uncompressed tree run (same command without
/// `--compress`), and the final training loss is within 5 % of that run's (QSGD unbiased, top-k
/// corrected by the leader's error feedback). `lowrank:2` on the MLP works on the combination
/// unchanged: the leaders' messages have low-rank's length plus the mask (12 + 136 + 2), and
/// the minibatch loss falls.
#[test]
fn tree_decode_leaders_compress_their_combinations() {
    use gradcode::compress::Compressor;
    let _g = serial();
    let tree = [
        "--code",
        "cyclic-mds",
        "-s",
        "1",
        "--decode-tree",
        "2",
        "--check-gradient-every",
        "5",
        "--deadline-ms",
        "5000",
    ];
    let (o, run, _) = train(5, "tree-compress-none", &tree);
    assert!(o.status.success(), "{}", output_text(&o));
    let plain = results::read_rows(&run.join("run.h5"), None).unwrap();
    let plain_bytes = plain.column(Metric::BytesReceived).to_vec();
    let plain_loss = *plain.column(Metric::TrainLoss).last().unwrap();
    let leader = (12 + 31 + 2) * 8;
    assert!(plain_bytes
        .iter()
        .all(|&b| b > 0.0 && b % leader as f64 == 0.0));
    for (spec, ef) in [("qsgd:4", false), ("topk:0.25", true)] {
        let name = format!("tree-compress-{}-{ef}", spec.replace(':', "_"));
        let mut args = tree.to_vec();
        args.extend(["--compress", spec]);
        if ef {
            args.push("--error-feedback");
        }
        let rows = checked_run(5, &name, &args);
        let c: Compressor = spec.parse().unwrap();
        let message = (12 + c.wire_len(31) + 2) * 8;
        assert!(message < leader, "{name}");
        assert_compressed_rows(&name, &rows, message, 5);
        let bytes = rows.column(Metric::BytesReceived);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(bytes.as_slice().unwrap()) < mean(&plain_bytes),
            "{name}: {bytes:?} vs uncompressed {plain_bytes:?}"
        );
        let msgs = rows.column(Metric::MessagesReceived);
        assert!(
            msgs.iter()
                .zip(bytes.iter())
                .all(|(&m, &b)| b == m * message as f64),
            "{name}: {msgs:?} messages, {bytes:?} bytes"
        );
        assert!(rows.column(Metric::Exact).iter().all(|&e| e == 0.0));
        let loss = *rows.column(Metric::TrainLoss).last().unwrap();
        assert!(
            (loss - plain_loss).abs() < 0.05 * plain_loss,
            "{name}: final loss {loss} vs the uncompressed tree run's {plain_loss}"
        );
    }
    let c = "lowrank:2"
        .parse::<Compressor>()
        .unwrap()
        .with_matrices(&[(8, 30), (6, 8), (2, 6)])
        .unwrap();
    let name = "tree-compress-lowrank-mlp";
    let mut args: Vec<&str> = MLP_BATCH.to_vec();
    args.extend(&tree);
    args.extend(["--compress", "lowrank:2", "--error-feedback"]);
    let (o, run, _) = train(5, name, &args);
    assert!(o.status.success(), "{name}: {}", output_text(&o));
    let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
    assert_compressed_rows(name, &rows, (12 + c.wire_len(316) + 2) * 8, 5);
    let loss = rows.column(Metric::TrainLoss).to_vec();
    let (first, last) = (loss[..3].iter().sum::<f64>(), loss[9..].iter().sum::<f64>());
    assert!(last < first, "{name}: minibatch loss {loss:?}");
}

#[test]
fn decode_tree_is_refused_where_it_cannot_serve() {
    let _g = serial();
    let data = dataset().display().to_string();
    let out = out_dir("tree-refused").display().to_string();
    let base = ["--data", &data, "--out", &out, "--code", "cyclic-mds"];
    for (extra, expect) in [
        (
            &["-s", "1", "--decode-tree", "8"][..],
            "--decode-tree = 8: must be at least 2, at most the number of workers n = 4",
        ),
        (
            &["-s", "1", "--decode-tree", "3"][..],
            "--decode-tree = 3: must be at least 2, at most the number of workers n = 4, and divide it",
        ),
        (
            &["-s", "1", "--decode-tree", "2", "--chunks", "2"][..],
            "--decode-tree = 2: the tree decode is not available with --chunks above 1",
        ),
        (
            &["-s", "1", "--decode-tree", "2", "--messages", "support"][..],
            "--decode-tree = 2: the tree decode is not available with --messages support|auto",
        ),
        (
            &["-s", "1", "--decode-tree", "2", "--compress", "lowrank:2"][..],
            "--compress = lowrank:2: --compress lowrank on a GLM (logistic)",
        ),
        (
            &["-s", "2", "--decode-tree", "2"][..],
            "--decode-tree = 2: with -s 2 needs groups of more than 2 workers",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let o = mpirun(5, &args, 60).0;
        assert_one_mpi_error(&o, expect);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    }
}
