//! The one training loop, end to end, for every engine (the real binary, alone or under
//! `mpirun` with a timeout): coded training through mat-vecs checkpoints and resumes bit for bit
//! like gradient coding; every run's written config re-runs it; a run too big for memory is
//! refused before allocating (reliability BI-9); divergence stops the run; SIGINT checkpoints like SIGTERM; the
//! reference writes the same schema; per-worker counts add up; and the rough edges a new user hit
//! (negative flag values, `uncoded`'s s, the help text, the config dump before an error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gradcode::io::results::{self, Metric, WorkerMetric};

mod common;
use common::{
    assert_one_line_error, assert_one_mpi_error, mpirun_direct, output_text, python_with_h5py,
    serial, the_error_line, wait_bounded, workdir, BIN,
};

fn synth(name: &str, args: &[&str]) -> PathBuf {
    let p = workdir().join(name);
    if !p.exists() {
        let o = Command::new(BIN)
            .args(["data", "synth"])
            .args(args)
            .arg("--out")
            .arg(&p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
    }
    p
}

/// Logistic data with a test split (shared).
fn logistic() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        synth(
            "logistic.h5",
            &[
                "--kind",
                "logistic",
                "--rows",
                "1200",
                "--features",
                "12",
                "--test-rows",
                "200",
                "--seed",
                "4",
            ],
        )
    })
    .clone()
}

fn fresh(name: &str) -> PathBuf {
    let d = workdir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn gradcode(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn train_mpi(np: usize, out: &Path, args: &[&str]) -> Output {
    let mut a: Vec<String> = vec!["train".into(), "--out".into(), out.display().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    common::mpirun(np, &a, 120)
}

fn w_final(run: &Path) -> ndarray::Array1<f64> {
    results::read_vector(&run.join("run.h5"), "model/w_final").unwrap()
}

fn attr(run: &Path, group: &str, name: &str) -> String {
    results::read_str_attr(&run.join("run.h5"), group, name).unwrap()
}

/// Issue 18's proof: `--code mds-rotation -s 2 --checkpoint-every 10`, interrupted by SIGUSR1
/// and resumed with `--resume`, ends bit-identical to an uninterrupted run under a fixed
/// straggler schedule (ranks 1 and 2 slow: the responders are always ranks 3..5), and its file
/// reports like any other run. Its written config re-runs it to the same parameters.
#[test]
fn coded_matvec_training_checkpoints_resumes_bit_identical_and_reruns_from_its_config() {
    let _g = serial();
    let data = logistic().display().to_string();
    let common_args = [
        "--data",
        &data,
        "--model",
        "logistic",
        "--code",
        "mds-rotation",
        "-s",
        "2",
        "--lr",
        "0.8",
        "--iterations",
        "300",
        "--checkpoint-every",
        "10",
        "--straggler-model",
        "fixed:3,4,5:4+fixed:1,2:200",
        "--seed",
        "7",
        "--log-every",
        "1000",
    ];
    let straight = fresh("mds-straight");
    let o = train_mpi(6, &straight, &common_args);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(attr(&straight, "validation", "verdict"), "VALID");
    assert_eq!(attr(&straight, "config", "code"), "mds-rotation");

    // The same run, interrupted once it has passed the first checkpoint.
    let cut = fresh("mds-cut");
    // mpirun itself (not under `timeout`, which a USR1 would end): it forwards USR1 to the ranks.
    let child = mpirun_direct(6)
        .args(["train", "--out"])
        .arg(&cut)
        .args(common_args)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !cut.join("ckpt.h5").exists() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status();
    let o = wait_bounded(child, Duration::from_secs(120));
    let rows_of = |p: &Path| results::read_rows(&p.join("run.h5"), None).map_or(0, |r| r.len());
    let done = rows_of(&cut);
    assert!(
        done < 300,
        "the run ended before the signal: {}",
        output_text(&o)
    );
    assert_eq!(o.status.code(), Some(75), "{}", output_text(&o));
    assert_eq!(attr(&cut, "", "status"), "interrupted");
    let mut resume_args: Vec<&str> = common_args.to_vec();
    resume_args.push("--resume");
    let o = train_mpi(6, &cut, &resume_args);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        w_final(&cut),
        w_final(&straight),
        "resumed after {done} rows"
    );
    let (ra, rb) = (
        results::read_rows(&straight.join("run.h5"), None).unwrap(),
        results::read_rows(&cut.join("run.h5"), None).unwrap(),
    );
    assert_eq!(ra.column(Metric::TrainLoss), rb.column(Metric::TrainLoss));
    assert_eq!(rb.len(), 300);
    assert_eq!(attr(&cut, "validation", "verdict"), "VALID");
    let report = gradcode(&[
        "report",
        "--json",
        &cut.join("run.h5").display().to_string(),
    ]);
    assert!(report.status.success(), "{}", output_text(&report));
    let json = String::from_utf8_lossy(&report.stdout);
    assert!(
        json.contains("mds-rotation") && json.contains("\"complete\""),
        "{json}"
    );
    // Issue 24 item 9: after a resume, the run's own /summary and the report give the same p50,
    // over the whole run.
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let report_p50 = parsed["runs"][0]["p50_s"].as_f64().unwrap();
    let summary_p50 =
        results::read_num_attr(&cut.join("run.h5"), "summary", "time_per_iteration_p50_s").unwrap();
    assert_eq!(report_p50, summary_p50);

    // The written config re-runs the job (--out moved elsewhere) to the same parameters.
    let again = fresh("mds-again");
    let config = straight.join("config.toml").display().to_string();
    let o = train_mpi(6, &again, &["--config", &config]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(w_final(&again), w_final(&straight));
}

/// Issue 24 item 2: every run's written config re-runs it to the same result — a gradient-coding
/// run and the serial reference.
#[test]
fn a_written_config_reruns_the_same_job() {
    let _g = serial();
    let data = logistic().display().to_string();
    let first = fresh("cfg-first");
    let o = train_mpi(
        5,
        &first,
        &[
            "--data",
            &data,
            "--code",
            "frc",
            "-s",
            "1",
            "--iterations",
            "12",
            "--lr",
            "0.7",
            "--optimizer",
            "nesterov",
            "--momentum-schedule",
            "nesterov-t",
            "--l2",
            "0.01",
            "--straggler-model",
            "exp:2",
            "--eval-every",
            "4",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let written = std::fs::read_to_string(first.join("config.toml")).unwrap();
    assert!(
        written.contains("workers = 4") && !written.contains("force"),
        "{written}"
    );
    let second = fresh("cfg-second");
    let config = first.join("config.toml").display().to_string();
    let o = train_mpi(5, &second, &["--config", &config]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(w_final(&second), w_final(&first));
    // Another world size is refused, naming the setting.
    let o = train_mpi(4, &fresh("cfg-third"), &["--config", &config]);
    assert_one_mpi_error(&o, "--workers = 4");

    let r1 = fresh("cfg-ref1");
    let o = gradcode(&[
        "train",
        "--reference",
        "--data",
        &data,
        "--iterations",
        "9",
        "--lr",
        "0.9",
        "--out",
        &r1.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let written = std::fs::read_to_string(r1.join("config.toml")).unwrap();
    assert!(written.contains("reference = true"), "{written}");
    for unused in [
        "code =",
        "stragglers =",
        "deadline-ms",
        "straggler-model",
        "workers =",
    ] {
        assert!(
            !written.contains(unused),
            "the reference's config holds {unused}: {written}"
        );
    }
    let r2 = fresh("cfg-ref2");
    let config = r1.join("config.toml").display().to_string();
    let o = gradcode(&[
        "train",
        "--config",
        &config,
        "--out",
        &r2.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(w_final(&r2), w_final(&r1));
}

/// Issue 24 item 4: the reference writes the schema the MPI job writes (verdict REFERENCE, code
/// `reference`, its own config, p50/p95), and the README's h5py example reads both.
#[test]
fn the_reference_writes_the_same_schema_and_the_python_example_reads_both() {
    let _g = serial();
    let data = logistic().display().to_string();
    let reference = fresh("schema-ref");
    let o = gradcode(&[
        "train",
        "--reference",
        "--data",
        &data,
        "--iterations",
        "6",
        "--out",
        &reference.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let mpi = fresh("schema-mpi");
    let o = train_mpi(
        4,
        &mpi,
        &[
            "--data",
            &data,
            "--iterations",
            "6",
            "--code",
            "frc",
            "-s",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(attr(&reference, "validation", "verdict"), "REFERENCE");
    assert_eq!(attr(&reference, "config", "code"), "reference");
    assert!(reference.join("config.toml").exists());
    for run in [&reference, &mpi] {
        let f = run.join("run.h5");
        for a in ["time_per_iteration_p50_s", "time_per_iteration_p95_s"] {
            let file = results::read_num_attr(&f, "summary", a).unwrap();
            assert!(
                file.is_finite() && file > 0.0,
                "{}: {a} = {file}",
                f.display()
            );
        }
        let script = format!(
            r#"
import h5py, pandas as pd
with h5py.File("{}", "r", swmr=True) as f:
    m = pd.DataFrame({{k: f["metrics"][k][:] for k in f["metrics"]}})
    print(f.attrs["status"], f["validation"].attrs["verdict"], f["config"].attrs["code"])
    assert f.attrs["status"] == "complete", repr(f.attrs["status"])
print(m[["iteration", "wall_s", "oracle_s", "train_loss", "test_accuracy"]].tail())
"#,
            f.display()
        );
        let Some(python) = python_with_h5py() else {
            return;
        };
        let py = Command::new(python).args(["-c", &script]).output().unwrap();
        assert!(py.status.success(), "{}: {}", f.display(), output_text(&py));
    }
}

/// Issue 24 item 17: a diverging objective stops the run with status `diverged`, exit 1, the
/// rows kept and the setting to lower named — gd and nesterov, each model; the same job with a
/// sane step completes.
#[test]
fn divergence_stops_the_run_and_names_the_setting() {
    let _g = serial();
    let linear = synth(
        "linear.h5",
        &[
            "--kind",
            "linear",
            "--rows",
            "400",
            "--features",
            "8",
            "--seed",
            "2",
        ],
    );
    let digits = mnist_subset();
    let cases: Vec<(&str, PathBuf, &str, &str)> = vec![
        ("linear", linear.clone(), "gd", "5"),
        ("linear", linear.clone(), "nesterov", "3"),
        ("logistic", logistic(), "gd", "1e9"),
        ("logistic", logistic(), "nesterov", "1e9"),
        ("softmax", digits, "gd", "1e9"),
    ];
    for (model, data, opt, lr) in cases {
        let out = fresh(&format!("div-{model}-{opt}"));
        let o = gradcode(&[
            "train",
            "--reference",
            "--data",
            &data.display().to_string(),
            "--model",
            model,
            "--optimizer",
            opt,
            "--lr",
            lr,
            "--iterations",
            "200",
            "--out",
            &out.display().to_string(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{model} {opt}: {}",
            output_text(&o)
        );
        let line = the_error_line(&o);
        assert!(line.contains("diverged") && line.contains("--lr"), "{line}");
        if opt == "nesterov" {
            assert!(line.contains("--momentum"), "{line}");
        }
        assert_eq!(attr(&out, "", "status"), "diverged");
        let rows = results::read_rows(&out.join("run.h5"), None).unwrap();
        assert!(
            rows.len() < 200 && !rows.is_empty(),
            "{model} {opt}: {} rows",
            rows.len()
        );
    }
    let out = fresh("div-sane");
    let o = gradcode(&[
        "train",
        "--reference",
        "--data",
        &linear.display().to_string(),
        "--model",
        "linear",
        "--lr",
        "0.2",
        "--iterations",
        "50",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(attr(&out, "", "status"), "complete");
    // Under MPI too.
    let out = fresh("div-mpi");
    let o = train_mpi(
        4,
        &out,
        &[
            "--data",
            &linear.display().to_string(),
            "--model",
            "linear",
            "--code",
            "frc",
            "-s",
            "0",
            "--lr",
            "5",
            "--iterations",
            "200",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("diverged"),
        "{}",
        output_text(&o)
    );
    assert_eq!(attr(&out, "", "status"), "diverged");
}

/// The MNIST test split (10,000 × 784, 10 classes) from `../shared/datasets`, converted once.
fn mnist_subset() -> PathBuf {
    let p = workdir().join("mnist.h5");
    if !p.exists() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/mnist");
        let o = gradcode(&[
            "data",
            "convert",
            "--format",
            "idx",
            "--input",
            &dir.join("t10k-images-idx3-ubyte.gz").display().to_string(),
            "--labels",
            &dir.join("t10k-labels-idx1-ubyte.gz").display().to_string(),
            "--out",
            &p.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", output_text(&o));
    }
    p
}

/// Issue 24 item 3: Ctrl-C (SIGINT) checkpoints and exits 75 like SIGTERM (the serial path,
/// where the process gets the signal itself).
#[test]
fn sigint_checkpoints_and_exits_75() {
    let _g = serial();
    let out = fresh("sigint");
    let mut child = Command::new(BIN)
        .args([
            "train",
            "--reference",
            "--data",
            &logistic().display().to_string(),
            "--iterations",
            "10000000",
            "--log-every",
            "1000000",
            "--out",
            &out.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !out.join("run.h5").exists() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(75));
    assert_eq!(attr(&out, "", "status"), "interrupted");
    assert!(out.join("ckpt.h5").exists());
}

/// Issue 24 item 8 and the late-arrival record: a persistent straggler's late messages are
/// recorded in `/late` (iteration, rank, delay), and per worker on time + partial + late +
/// missed = iterations, in `/summary` and on the console; `silent` lists only workers that never
/// answered.
#[test]
fn late_arrivals_are_recorded_and_counts_add_up() {
    let _g = serial();
    let out = fresh("counts");
    let o = train_mpi(
        5,
        &out,
        &[
            "--data",
            &logistic().display().to_string(),
            "--code",
            "cyclic-mds",
            "-s",
            "1",
            "--iterations",
            "12",
            "--straggler-model",
            "fixed:1,2,4:20+fixed:3:150",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let f = out.join("run.h5");
    let rows = results::read_rows(&f, None).unwrap();
    assert!(!rows.late.is_empty(), "no late arrival recorded");
    assert!(
        rows.late.iter().all(|l| l.rank == 3 && l.delay_s >= 0.15),
        "{:?}",
        rows.late
    );
    // Every drawn delay is recorded, whoever answered.
    let planned = rows.worker(WorkerMetric::PlannedS);
    assert!((0..12).all(|t| (planned[[t, 2]] - 0.15).abs() < 1e-12 && planned[[t, 0]] == 0.02));
    let counts: Vec<Vec<f64>> = ["on_time", "partial", "late", "missed"]
        .iter()
        .map(|c| {
            results::read_vector(&f, &format!("summary/{c}"))
                .unwrap()
                .to_vec()
        })
        .collect();
    for w in 0..4 {
        let total: f64 = counts.iter().map(|c| c[w]).sum();
        assert_eq!(total, 12.0, "rank {}: {counts:?}", w + 1);
    }
    assert!(counts[2][2] >= 1.0, "rank 3 never counted late: {counts:?}");
    assert_eq!(attr(&out, "validation", "silent"), "[]");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("missed") && stdout.contains("partial"),
        "{stdout}"
    );
    let sum_late: f64 = rows.column(Metric::Late).sum();
    assert!(sum_late >= 1.0);
    // The report counts with the same definition, from the file.
    let o = gradcode(&["report", "--json", &f.display().to_string()]);
    assert!(o.status.success(), "{}", output_text(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = &json["runs"][0];
    for (key, col) in [
        ("on_time", 0),
        ("partial_iterations", 1),
        ("late", 2),
        ("missed", 3),
    ] {
        let got: Vec<f64> = run[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {run}"))
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, counts[col], "report {key} vs /summary");
    }
    let text = String::from_utf8_lossy(&gradcode(&["report", &f.display().to_string()]).stdout)
        .to_string();
    assert!(
        text.contains("slow ranks") && text.contains("[3]"),
        "{text}"
    );
}

/// Issue 24 items 6, 7, 11, 12 and the `--no-intercept` / `--momentum-schedule` options.
#[test]
fn rough_edges_a_new_user_hit() {
    let _g = serial();
    let data = logistic().display().to_string();
    // 7: a negative value reaches the range check, which names the flag.
    let o = gradcode(&["train", "--reference", "--data", &data, "--lr", "-1"]);
    let line = assert_one_line_error(&o);
    assert!(line.contains("--lr = -1"), "{line}");
    // 6: uncoded records and reports s = 0.
    let out = fresh("uncoded");
    let o = train_mpi(
        4,
        &out,
        &["--data", &data, "--code", "uncoded", "--iterations", "3"],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let toml = attr(&out, "config", "toml");
    assert!(toml.contains("stragglers = 0"), "{toml}");
    // 11: a data error under mpirun comes alone, after no config dump.
    let o = train_mpi(3, &fresh("missing"), &["--data", "/nonexistent/d.h5"]);
    assert_one_mpi_error(&o, "file not found");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains("effective config"), "{all}");
    // 12: the help says the objective's convention, the intercept and the straggler models.
    let help = String::from_utf8_lossy(&gradcode(&["train", "--help"]).stdout).to_string();
    for needle in [
        "(λ/2)‖w‖²",
        "--no-intercept",
        "markov:P01:P10:MS",
        "slow:RANKS:FACTOR",
        "½",
    ] {
        assert!(help.contains(needle), "train --help lacks {needle}");
    }
    let synth_help =
        String::from_utf8_lossy(&gradcode(&["data", "synth", "--help"]).stdout).to_string();
    let test_rows = synth_help
        .lines()
        .skip_while(|l| !l.contains("--test-rows"))
        .take(5)
        .collect::<String>();
    assert_eq!(test_rows.matches("[default: 0]").count(), 1, "{test_rows}");
    let verify =
        String::from_utf8_lossy(&gradcode(&["codes", "verify", "--help"]).stdout).to_string();
    assert!(!verify.contains("--out"), "codes verify --help lists --out");
    // --no-intercept: the intercepts stay exactly 0, and the MPI job matches the reference.
    let r = fresh("noint-ref");
    let o = gradcode(&[
        "train",
        "--reference",
        "--data",
        &data,
        "--iterations",
        "15",
        "--no-intercept",
        "--optimizer",
        "nesterov",
        "--momentum-schedule",
        "nesterov-t",
        "--out",
        &r.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let w = w_final(&r);
    assert_eq!(w[w.len() - 1], 0.0);
    let m = fresh("noint-mpi");
    let o = train_mpi(
        5,
        &m,
        &[
            "--data",
            &data,
            "--iterations",
            "15",
            "--no-intercept",
            "--optimizer",
            "nesterov",
            "--momentum-schedule",
            "nesterov-t",
            "--code",
            "cyclic-mds",
            "-s",
            "1",
            "--straggler-model",
            "exp:3",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let wm = w_final(&m);
    assert_eq!(wm[wm.len() - 1], 0.0);
    let diff = (&wm - &w).mapv(|v| v * v).sum().sqrt() / w.mapv(|v| v * v).sum().sqrt();
    assert!(
        diff < 1e-8,
        "MPI vs reference with --no-intercept and nesterov-t: {diff:e}"
    );
}

/// Issue 24 item 3 under a launcher: a terminal's Ctrl-C hits the whole foreground process group.
/// Open MPI's `mpirun` aborts the job on SIGINT and returns 1 whatever the ranks did, so
/// `jobscripts/workstation.sh` runs the launcher in its own session and turns Ctrl-C into USR1:
/// the ranks checkpoint and the script exits 75.
#[test]
fn ctrl_c_on_the_workstation_script_checkpoints_and_exits_75() {
    use std::os::unix::process::CommandExt;
    let _g = serial();
    let run = fresh("ws-ctrl-c");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(root.join("jobscripts/workstation.sh"))
        .current_dir(root)
        .env("GRADCODE", BIN)
        .env("DATA", logistic())
        .env("ITERATIONS", "10000000")
        .env("STRAGGLERS", "fixed:1:5")
        .env("WORKERS", "2")
        .env("RUN_DIR", &run)
        .env("GRADCODE_LAUNCH_GRACE", "1")
        .env("EXTRA_ARGS", "--log-every 1000000")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !run.join("run.h5").exists() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let pgid = child.id().to_string();
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the script did not end after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(75));
    assert_eq!(attr(&run, "", "status"), "interrupted");
    assert!(run.join("ckpt.h5").exists());
}
