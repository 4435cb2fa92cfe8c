//! Integration tests of `gradcode report` on real runs: two small MPI runs with different codes
//! and a serial reference run (each MPI run wrapped in `timeout`), a run killed with SIGKILL,
//! damaged files, and the Python example.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::{output_text, serial, synth_logistic, workdir, BIN};

fn dataset() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| synth_logistic(2)).clone()
}

struct Runs {
    frc: PathBuf,
    uncoded: PathBuf,
    reference: PathBuf,
}

/// Two MPI runs (frc s=1 and uncoded, 4 workers, exponential delays) and the serial reference.
fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let _g = serial();
        let data = dataset().display().to_string();
        let train = |name: &str, code: &str, s: &str| {
            let out = workdir().join(name);
            let args: Vec<String> = [
                "--data",
                &data,
                "--code",
                code,
                "-s",
                s,
                "--iterations",
                "30",
                "--straggler-model",
                "exp:3",
                "--seed",
                "4",
                "--out",
                &out.display().to_string(),
                "--force",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            let o = common::mpirun(5, &[&["train".to_string()][..], &args].concat(), 60);
            assert!(o.status.success(), "{}", output_text(&o));
            out.join("run.h5")
        };
        let frc = train("frc-run", "frc", "1");
        let uncoded = train("uncoded-run", "uncoded", "0");
        let out = workdir().join("ref-run");
        let o = Command::new(BIN)
            .args(["train", "--reference", "--iterations", "30", "--seed", "4"])
            .args(["--data", &data, "--force", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        Runs {
            frc,
            uncoded,
            reference: out.join("run.h5"),
        }
    })
}

/// A run killed with SIGKILL on every rank after ~3 s: status stays `running`.
fn killed_run() -> PathBuf {
    static KILLED: OnceLock<PathBuf> = OnceLock::new();
    KILLED
        .get_or_init(|| {
            let _g = serial();
            let data = dataset().display().to_string();
            let out = workdir().join("killed-run");
            let out_s = out.display().to_string();
            std::fs::create_dir_all(workdir()).unwrap();
            let log = workdir().join("killed-run.log");
            let mut child = Command::new("mpirun")
                .args(["--oversubscribe", "--bind-to", "none", "-np", "5", BIN])
                .args(["train", "--data", &data, "--code", "frc", "-s", "1"])
                .args([
                    "--iterations",
                    "100000000",
                    "--straggler-model",
                    "fixed:1:20",
                ])
                .args(["--out", &out_s, "--log-every", "1"])
                .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
                .env("OPENBLAS_NUM_THREADS", "1")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            // Kill it once rank 0 has logged iteration 10 and the writer has flushed since
            // (at most FLUSH_INTERVAL = 1 s later): a loaded machine starts mpirun slowly.
            let started = Instant::now();
            while progress(&log) < 10 && started.elapsed() < Duration::from_secs(120) {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(2500));
            let pattern =
                format!("{BIN} train --data {data} --code frc -s 1 --iterations 100000000");
            let _ = Command::new("pkill").args(["-9", "-f", &pattern]).status();
            let _ = child.kill();
            let _ = child.wait();
            out.join("run.h5")
        })
        .clone()
}

/// The last iteration rank 0's progress lines (`it    12/...`) name in `log`.
fn progress(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once("] it ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.trim_start().split('/').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn report(args: &[&str], files: &[&Path]) -> Output {
    let o = Command::new("timeout")
        .args(["-k", "5", "60", BIN, "report"])
        .args(files)
        .args(args)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        output_text(&o)
    );
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", output_text(o)))
}

#[test]
fn table_has_one_row_per_run_with_code_and_finite_p50() {
    let r = runs();
    let o = report(
        &["--target-loss", "100"],
        &[&r.frc, &r.uncoded, &r.reference],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("run") && lines[0].contains("p50 ms"),
        "{out}"
    );
    // Logistic runs measure ROC AUC, so the table has its column.
    assert!(lines[0].contains("test AUC"), "{out}");
    for (name, code, verdict) in [
        ("frc-run", "frc", "VALID"),
        ("uncoded-run", "uncoded", "VALID"),
        ("ref-run", "reference", "REFERENCE"),
    ] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {out}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[1], code, "{row}");
        let p50: f64 = f[5].parse().unwrap_or_else(|_| panic!("p50 of {row}"));
        assert!(p50.is_finite() && p50 > 0.0, "{row}");
        assert!(row.contains(verdict) && row.ends_with("complete"), "{row}");
        // A target above the initial loss is reached at iteration 0.
        assert!(row.contains("(it 0)"), "{row}");
    }
}

#[test]
fn csv_has_a_header_and_one_row_per_run() {
    let r = runs();
    let o = report(&["--csv"], &[&r.frc, &r.uncoded]);
    assert!(o.status.success(), "{}", output_text(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let head: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    for row in &rows {
        assert_eq!(row.len(), head.len(), "{out}");
        let p50: f64 = row[col("p50_s")].parse().unwrap();
        assert!(p50 > 0.0 && p50.is_finite());
        assert_eq!(row[col("verdict")], "VALID");
    }
    assert_eq!(rows[0][col("code")], "frc");
    assert_eq!(rows[1][col("code")], "uncoded");
    assert_eq!(rows[0][col("s")], "1");
    assert_eq!(rows[0][col("straggler_model")], "exp:3");
}

#[test]
fn json_parses_and_carries_the_table() {
    let r = runs();
    let o = report(
        &["--json", "--target-loss", "1e-9"],
        &[&r.frc, &r.uncoded, &r.reference],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let v = json(&o);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(v["errors"].as_array().unwrap().is_empty());
    assert_eq!(runs[0]["code"], "frc");
    assert_eq!(runs[0]["s"], 1);
    assert_eq!(runs[0]["workers"], 4);
    assert_eq!(runs[0]["iterations"], 30);
    assert_eq!(runs[1]["code"], "uncoded");
    assert_eq!(runs[2]["code"], "reference");
    for run in &runs[..2] {
        let p50 = run["p50_s"].as_f64().unwrap();
        let p95 = run["p95_s"].as_f64().unwrap();
        assert!(p50 > 0.0 && p95 >= p50, "{run}");
        assert!(run["overhead"].as_f64().unwrap() > 0.0, "{run}");
        assert!(run["final_test_accuracy"].as_f64().unwrap() > 0.5, "{run}");
        assert_eq!(run["verdict"], "VALID");
        assert_eq!(run["partial"], false);
        // A target no run reaches.
        assert!(run["time_to_target_s"].is_null(), "{run}");
    }
    // The exact codes follow the reference trajectory.
    let f = |i: usize| runs[i]["final_train_loss"].as_f64().unwrap();
    assert!((f(0) - f(2)).abs() < 1e-8 && (f(1) - f(2)).abs() < 1e-8);
    // ROC AUC of a trained classifier: better than chance, and the exact codes' parameters
    // rank the test rows as the reference's do (within a pair or so of 100 × 100).
    let auc = |i: usize| runs[i]["final_test_auc"].as_f64().unwrap();
    for (i, run) in runs.iter().enumerate() {
        assert!(auc(i) > 0.5 && auc(i) <= 1.0, "{run}");
    }
    assert!((auc(0) - auc(2)).abs() < 1e-3 && (auc(1) - auc(2)).abs() < 1e-3);
    // The reference has no oracle: overhead is null, not a number.
    assert!(runs[2]["overhead"].is_null());
}

#[test]
fn plot_writes_a_png_of_the_documented_size() {
    let r = runs();
    let png_path = workdir().join("figure.png");
    let o = report(
        &["--plot", png_path.to_str().unwrap()],
        &[&r.frc, &r.uncoded, &r.reference],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let bytes = std::fs::read(&png_path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (1600, 1000));
    // It decodes in full, and is not blank.
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1600, 1000));
    let px = &buf[..info.buffer_size()];
    let non_white = px.chunks(3).filter(|c| c.iter().any(|&b| b < 200)).count();
    assert!(non_white > 10_000, "only {non_white} non-white pixels");
    // Not a .png name: refused with one line.
    let o = report(&["--plot", "/tmp/x.jpg"], &[&r.frc]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

/// Pixels of exactly `rgb` in the rectangle x in `xs`, y in `ys` of an RGB8 PNG.
fn count_pixels(
    png_path: &Path,
    rgb: [u8; 3],
    xs: std::ops::Range<usize>,
    ys: std::ops::Range<usize>,
) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let width = info.width as usize;
    ys.flat_map(|y| xs.clone().map(move |x| (y * width + x) * 3))
        .filter(|&i| buf[i..i + 3] == rgb)
        .count()
}

#[test]
fn plot_keeps_identical_runs_apart() {
    // An MPI run next to an exact copy of itself: both loss curves coincide, and each must
    // still show (the first run's line used to vanish under the second's).
    let r = runs();
    let mut files = Vec::new();
    for name in ["same-a", "same-b"] {
        let f = workdir().join(name).join("run.h5");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::copy(&r.frc, &f).unwrap();
        files.push(f);
    }
    let png_path = workdir().join("same.png");
    let o = report(
        &["--plot", png_path.to_str().unwrap()],
        &[&files[0], &files[1]],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    // The left half of the top-left panel (loss against time; its legend sits top right), in
    // the first two palette colours (tab10 blue and orange).
    let (blue, orange) = ([31, 119, 180], [255, 127, 14]);
    let (xs, ys) = (0..400, 40..500);
    let first = count_pixels(&png_path, blue, xs.clone(), ys.clone());
    let second = count_pixels(&png_path, orange, xs, ys);
    assert!(
        first > 100 && second > 100,
        "both runs must be visible: {first} pixels of the first run, {second} of the second"
    );
}

#[test]
fn killed_run_is_reported_as_partial() {
    let run = killed_run();
    let o = report(&[], &[&run]);
    assert!(o.status.success(), "{}", output_text(&o));
    let out = stdout(&o);
    assert!(out.contains("partial (status running)"), "{out}");
    assert!(out.contains("did not finish"), "{out}");
    let o = report(&["--json"], &[&run]);
    let v = json(&o);
    let r = &v["runs"][0];
    assert_eq!(r["partial"], true);
    assert_eq!(r["status"], "running");
    assert!(r["iterations"].as_u64().unwrap() > 5, "{r}");
    assert_eq!(r["iterations_planned"], 100_000_000);
    assert!(r["p50_s"].as_f64().unwrap() > 0.0);
    assert!(r["verdict"] == "-");
    // The figure is drawn from what is there.
    let png_path = workdir().join("killed.png");
    let o = report(&["--plot", png_path.to_str().unwrap()], &[&run]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(std::fs::metadata(&png_path).unwrap().len() > 1000);
}

#[test]
fn missing_groups_are_named_and_the_rest_reported() {
    let r = runs();
    // A complete run whose /validation group was lost.
    let damaged = workdir().join("damaged").join("run.h5");
    std::fs::create_dir_all(damaged.parent().unwrap()).unwrap();
    std::fs::copy(&r.frc, &damaged).unwrap();
    common::h5_write(&damaged, true, |f| {
        f.unlink("validation").unwrap();
        f.unlink("timing").unwrap();
    });
    let o = report(&[], &[&damaged]);
    assert!(o.status.success(), "{}", output_text(&o));
    let out = stdout(&o);
    assert!(
        out.contains("note: damaged: no /validation verdict"),
        "{out}"
    );
    assert!(out.contains("note: damaged: no /timing/arrival_s"), "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("damaged  frc"),
        "{out}"
    );
    let png_path = workdir().join("damaged.png");
    let o = report(&["--plot", png_path.to_str().unwrap()], &[&damaged]);
    assert!(o.status.success(), "{}", output_text(&o));

    // Only a status and a config: no /metrics.
    let bare = workdir().join("bare.h5");
    common::h5_write(&bare, false, |f| {
        let s: hdf5::types::VarLenUnicode = "complete".parse().unwrap();
        f.new_attr::<hdf5::types::VarLenUnicode>()
            .create("status")
            .unwrap()
            .write_scalar(&s)
            .unwrap();
        let g = f.create_group("config").unwrap();
        let t: hdf5::types::VarLenUnicode =
            "code = \"cyclic-mds\"\nstragglers = 2\n".parse().unwrap();
        g.new_attr::<hdf5::types::VarLenUnicode>()
            .create("toml")
            .unwrap()
            .write_scalar(&t)
            .unwrap();
    });
    let o = report(&["--json"], &[&bare]);
    assert!(o.status.success(), "{}", output_text(&o));
    let v = json(&o);
    let run = &v["runs"][0];
    assert_eq!(run["code"], "cyclic-mds");
    assert_eq!(run["s"], 2);
    assert_eq!(run["iterations"], 0);
    assert!(run["p50_s"].is_null());
    let notes = run["notes"].to_string();
    assert!(notes.contains("no /metrics"), "{notes}");
}

fn one_error_line(o: &Output, file: &str, what: &str) {
    assert!(!o.status.success(), "{}", output_text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{}", output_text(o));
    assert!(
        lines[0].starts_with("gradcode: error: ")
            && lines[0].contains(file)
            && lines[0].contains(what),
        "{}",
        output_text(o)
    );
}

#[test]
fn bad_files_give_one_clear_error_and_good_ones_are_still_reported() {
    let missing = workdir().join("no-such-run").join("run.h5");
    let o = report(&[], &[&missing]);
    one_error_line(&o, "no-such-run", "file not found");
    assert!(stdout(&o).is_empty());

    let not_hdf5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/not_hdf5.h5");
    let o = report(&[], &[&not_hdf5]);
    one_error_line(&o, "not_hdf5.h5", "not an HDF5 file");

    // An HDF5 file that is not a results file (a dataset).
    let o = report(&[], &[&dataset()]);
    one_error_line(&o, "synth-2.h5", "not a gradcode results file");

    // Mixed: the good run is reported, the exit code says something failed.
    let r = runs();
    let o = report(&[], &[&r.frc, &missing]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("frc-run")),
        "{}",
        output_text(&o)
    );
    one_error_line(&o, "no-such-run", "file not found");
    let o = report(&["--json"], &[&missing, &r.frc]);
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
}

#[test]
fn python_example_loads_a_run_into_pandas() {
    let Some(python) = common::python_with("h5py, pandas") else {
        return;
    };
    let r = runs();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/load_run.py");
    let load = |run: &Path| {
        let o = Command::new("timeout")
            .args(["60", python])
            .arg(&script)
            .arg(run)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        stdout(&o)
    };
    for (run, expect) in [(&r.frc, "code frc s=1"), (&r.reference, "code reference")] {
        let out = load(run);
        assert!(
            out.contains(expect) && out.contains("iterations 30"),
            "{out}"
        );
        same_percentiles_as_report(&out, run);
    }
    // The MPI run lists its four workers; the reference (one process) has none to list.
    let per_rank = |out: &str| {
        out.lines()
            .filter(|l| {
                l.strip_prefix("rank")
                    .and_then(|t| t.split_whitespace().next())
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count()
    };
    assert_eq!(per_rank(&load(&r.frc)), 4);
    let out = load(&r.reference);
    assert_eq!(per_rank(&out), 0, "{out}");
    assert!(out.contains("no workers (serial reference run)"), "{out}");

    let killed = killed_run();
    let out = load(&killed);
    assert!(out.contains("status running"), "{out}");
    same_percentiles_as_report(&out, &killed);
}

/// load_run.py's `time per iteration p50 X ms p95 Y ms` equals `gradcode report --json` on the
/// same file, to the printed digits (one nearest-rank rule over every complete row).
fn same_percentiles_as_report(out: &str, run: &Path) {
    let line = out
        .lines()
        .find(|l| l.contains("time per iteration p50"))
        .unwrap_or_else(|| panic!("no p50 line: {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1];
    let v = json(&report(&["--json"], &[run]));
    let ms = |key: &str| format!("{:.3}", v["runs"][0][key].as_f64().unwrap() * 1e3);
    assert_eq!(
        (after("p50"), after("p95")),
        (ms("p50_s").as_str(), ms("p95_s").as_str()),
        "load_run.py and report --json on {}: {line}",
        run.display()
    );
    assert_eq!(
        after("iterations"),
        v["runs"][0]["iterations"].to_string(),
        "{line}"
    );
}

/// h5py reads the status exactly (no padding): `f.attrs["status"]` equals `"running"` in the
/// file of a reference run killed with SIGKILL, and `"complete"` once a run has finished.
#[test]
fn h5py_reads_the_status_of_a_run_exactly() {
    let Some(python) = common::python_with("h5py") else {
        return;
    };
    let data = dataset().display().to_string();
    let status_is = |run: &Path, want: &str| {
        let check = "import sys, h5py\n\
                     s = h5py.File(sys.argv[1], 'r', swmr=True).attrs['status']\n\
                     print(repr(s))\n\
                     sys.exit(0 if s == sys.argv[2] else 1)";
        let o = Command::new(python)
            .args(["-c", check])
            .arg(run)
            .arg(want)
            .output()
            .unwrap();
        assert!(o.status.success(), "{want}: {}", output_text(&o));
    };
    let killed = workdir().join("status-killed");
    let mut child = Command::new(BIN)
        .args(["train", "--reference", "--iterations", "100000000"])
        .args(["--data", &data, "--force", "--out"])
        .arg(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run = killed.join("run.h5");
    let t = std::time::Instant::now();
    while !run.exists() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    status_is(&run, "running");

    let done = workdir().join("status-done");
    let o = Command::new(BIN)
        .args(["train", "--reference", "--iterations", "3", "--seed", "4"])
        .args(["--data", &data, "--force", "--out"])
        .arg(&done)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    status_is(&done.join("run.h5"), "complete");
}
