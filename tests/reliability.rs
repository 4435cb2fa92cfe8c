//! Reliability catalogue (`../shared/RELIABILITY.md`): bad input (BI-1..BI-8), fault injection
//! (FI-1..FI-9, through the test-only `GRADCODE_FAULT_PLAN`, `src/faults.rs`), crashes, signals
//! and corruption (CR-2, CR-3, CR-5, CR-6, CR-7; CR-1 and CR-4 are in `tests/mpi_train.rs`, and
//! FI-3, FI-7, FI-9, CR-5 and CR-7 check CR-1 equality after their restarts), and security
//! (SEC-1, SEC-2). The real binary, every run under `timeout` or a wait limit; a timeout is a
//! failure.
//!
//! Quick by default (what `make test` runs). `GRADCODE_RELIABILITY_LONG=1` (what
//! `make reliability` sets) runs the long versions: BI-1 at 2,000 mutants, CR-2 at 60 kills.
//! `GRADCODE_BI1_TRIALS` and `GRADCODE_CR2_TRIALS` override the counts. Every test prints one
//! `RELIAB|case|trials|passed|worst exit s|peak KiB|note` line that `scripts/reliability.sh`
//! turns into the table of docs/reliability.md.

use gradcode::io::results::{Metric, WorkerMetric};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use gradcode::io::checkpoint::{self, Checkpoint};
use gradcode::optim::OptimizerState;
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::hostile::{self, y_of};
use common::{assert_one_mpi_error, output_text, serial, the_error_line, workdir, BIN};

fn long() -> bool {
    std::env::var("GRADCODE_RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

fn trials(var: &str, quick: usize, long_n: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long() { long_n } else { quick })
}

fn table_row(case: &str, trials: usize, passed: usize, worst: Duration, peak_kib: u64, note: &str) {
    println!(
        "RELIAB|{case}|{trials}|{passed}|{:.2}|{peak_kib}|{note}",
        worst.as_secs_f64()
    );
}

fn synth(name: &str, extra: &[&str]) -> PathBuf {
    let p = workdir().join(name);
    if p.exists() {
        return p;
    }
    let out = Command::new(BIN)
        .args(["data", "synth", "--kind", "logistic", "--rows", "240"])
        .args(["--features", "6", "--test-rows", "60", "--seed", "5"])
        .args(extra)
        .arg("--out")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

/// Result of `gradcode data validate --stats FILE` under `timeout`.
struct Validated {
    code: Option<i32>,
    stderr: String,
    outcome: String,
    peak_kib: u64,
    wall: Duration,
}

fn validate(file: &Path, envs: &[(&str, &str)]) -> Validated {
    let t = Instant::now();
    let out = Command::new("timeout")
        .args(["-k", "2", "60", BIN, "data", "validate", "--stats"])
        .arg(file)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let wall = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| -> String {
        stdout
            .lines()
            .find(|l| l.starts_with("stats:"))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(&format!("{k}=")).map(String::from))
            })
            .unwrap_or_default()
    };
    Validated {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outcome: field("outcome"),
        peak_kib: field("peak_rss_kib").parse().unwrap_or(0),
        wall,
    }
}

fn mpirun_train(np: usize, args: &[&str], envs: &[(&str, &str)], timeout_s: u64) -> Output {
    common::mpirun_command(np, timeout_s, envs)
        .arg("train")
        .args(args)
        .output()
        .unwrap()
}

/// `mpirun -np 3 gradcode train` on `data`: must refuse before training (exit 2, no results file,
/// the validator's message on stderr). Returns stderr.
fn train_refuses(data: &Path, envs: &[(&str, &str)], want: &str) -> String {
    let out_dir = workdir().join(format!(
        "run-refused-{}",
        data.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&out_dir);
    let d = data.to_str().unwrap();
    let o = out_dir.to_str().unwrap();
    let args = [
        "--data",
        d,
        "--model",
        "logistic",
        "--code",
        "frc",
        "-s",
        "1",
        "--iterations",
        "3",
        "--deadline-ms",
        "500",
        "--out",
        o,
    ];
    let out = mpirun_train(3, &args, envs, 60);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "train on {d}: {stderr}");
    assert!(
        !out_dir.join("run.h5").exists(),
        "train started on a rejected file {d}"
    );
    assert!(stderr.contains(want), "wanted '{want}' in: {stderr}");
    stderr
}

// ------------------------------------------------------------------------------------------------
// BI-1: seeded random mutations of real dataset files

fn mutate(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let n = b.len();
    // Most mutations hit the metadata near the front (superblock, object headers, B-trees).
    let pos = |rng: &mut ChaCha8Rng| -> usize {
        if rng.gen_bool(0.7) {
            rng.gen_range(0..n.min(4096))
        } else {
            rng.gen_range(0..n)
        }
    };
    for _ in 0..rng.gen_range(1..=4) {
        match rng.gen_range(0..6) {
            0 => {
                let p = pos(rng);
                b[p] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let p = pos(rng);
                b[p] = rng.gen();
            }
            2 => {
                // An extreme little-endian integer (sizes, addresses, counts).
                let p = pos(rng).min(n.saturating_sub(8));
                let v: u64 = match rng.gen_range(0..4) {
                    0 => u64::MAX,
                    1 => 1 << rng.gen_range(20..63),
                    2 => 0,
                    _ => rng.gen(),
                };
                let k = rng.gen_range(1..=8).min(n - p);
                b[p..p + k].copy_from_slice(&v.to_le_bytes()[..k]);
            }
            3 => {
                let p = pos(rng);
                let k = rng.gen_range(1..64).min(n - p);
                let fill = if rng.gen() { 0xff } else { 0x00 };
                b[p..p + k].fill(fill);
            }
            4 => {
                // Copy a block of the file over another place.
                let (src, dst) = (pos(rng), pos(rng));
                let k = rng.gen_range(1..128).min(n - src).min(n - dst);
                let block = b[src..src + k].to_vec();
                b[dst..dst + k].copy_from_slice(&block);
            }
            _ => {
                if rng.gen_bool(0.3) {
                    b.truncate(rng.gen_range(0..n));
                    return b;
                }
            }
        }
    }
    b
}

#[test]
fn bi1_mutated_datasets_are_accepted_or_refused_never_hang() {
    let _g = serial();
    let n = trials("GRADCODE_BI1_TRIALS", 50, 2000);
    let bases = [
        synth("bi1-dense.h5", &[]),
        synth("bi1-csr.h5", &["--sparsity", "0.4"]),
    ];
    let originals: Vec<Vec<u8>> = bases.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let dir = workdir().join("bi1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0xb11);
    let (mut passed, mut worst, mut peak) = (0usize, Duration::ZERO, 0u64);
    let (mut valid, mut invalid, mut refused) = (0usize, 0usize, 0usize);
    let mut rejected: Vec<(PathBuf, String)> = Vec::new();
    let mut failures = Vec::new();
    for t in 0..n {
        let which = t % bases.len();
        let m = mutate(&originals[which], &mut rng);
        let p = dir.join(format!("m{t}.h5"));
        std::fs::write(&p, &m).unwrap();
        // Below the 60 s outer timeout: a libhdf5 hang must end as "refused", not as a timeout.
        let v = validate(&p, &[("GRADCODE_VALIDATE_TIMEOUT_MS", "20000")]);
        worst = worst.max(v.wall);
        peak = peak.max(v.peak_kib);
        let error_lines = v
            .stderr
            .lines()
            .filter(|l| l.starts_with("gradcode: error: "))
            .count();
        let ok = match (v.code, v.outcome.as_str()) {
            (Some(0), "valid") => {
                valid += 1;
                true
            }
            (Some(2), "invalid") if error_lines == 1 => {
                invalid += 1;
                true
            }
            (Some(2), "refused") if error_lines == 1 && v.stderr.contains("refused") => {
                refused += 1;
                if rejected.iter().all(|(_, o)| o != "refused") {
                    rejected.push((p.clone(), "refused".into()));
                }
                true
            }
            _ => false,
        };
        if ok {
            passed += 1;
            if v.outcome == "invalid" && rejected.len() < 2 {
                rejected.push((p.clone(), "invalid".into()));
            }
            if !rejected.iter().any(|(q, _)| q == &p) {
                let _ = std::fs::remove_file(&p);
            }
        } else {
            failures.push(format!(
                "mutant {t} (kept at {}): exit {:?}, outcome '{}', stderr: {}",
                p.display(),
                v.code,
                v.outcome,
                v.stderr
            ));
        }
    }
    println!("BI-1: {n} mutants: {valid} valid, {invalid} invalid, {refused} refused (libhdf5 crashed or over limits), worst {:.2} s, peak {peak} KiB", worst.as_secs_f64());
    table_row(
        "BI-1 mutated datasets via validator",
        n,
        passed,
        worst,
        peak,
        &format!("{valid} valid / {invalid} invalid / {refused} refused"),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        invalid > 0,
        "no mutant was rejected: the mutator is too weak"
    );

    // The training job never starts on a rejected file.
    for (p, outcome) in rejected.iter().take(3) {
        let want = if outcome == "refused" { "refused" } else { "" };
        train_refuses(p, &[], want);
    }
}

/// Two mutants found by the BI-1 run, kept as fixtures: libhdf5 1.10.8 segfaults on one
/// (`gradcode data inspect` in-process dies with SIGSEGV) and never returns on the other.
#[test]
fn bi1_libhdf5_segfault_and_hang_fixtures_are_refused_and_train_never_starts() {
    let _g = serial();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let t0 = Instant::now();
    let (mut worst, mut peak) = (Duration::ZERO, 0u64);
    let segv = fixtures.join("hdf5_segfault.h5");
    let v = validate(&segv, &[]);
    assert_eq!(
        (v.code, v.outcome.as_str()),
        (Some(2), "refused"),
        "{}",
        v.stderr
    );
    assert!(v.stderr.contains("SIGSEGV"), "{}", v.stderr);
    worst = worst.max(v.wall);
    peak = peak.max(v.peak_kib);
    train_refuses(
        &segv,
        &[],
        "libhdf5 crashed or exceeded limits on this file: refused",
    );
    let hang = fixtures.join("hdf5_hang.h5");
    let env = [("GRADCODE_VALIDATE_TIMEOUT_MS", "3000")];
    let v = validate(&hang, &env);
    assert_eq!(
        (v.code, v.outcome.as_str()),
        (Some(2), "refused"),
        "{}",
        v.stderr
    );
    assert!(
        v.stderr.contains("still running after 3.000 s"),
        "{}",
        v.stderr
    );
    assert!(v.wall < Duration::from_secs(10), "{:?}", v.wall);
    worst = worst.max(v.wall);
    peak = peak.max(v.peak_kib);
    train_refuses(&hang, &env, "still running after 3.000 s");
    // `data inspect` opened files in-process and died with SIGSEGV on the first; it now asks
    // the validator child first and refuses both with one error line.
    for (f, env, want) in [
        (&segv, &[][..], "SIGSEGV"),
        (&hang, &env[..], "still running after 3.000 s"),
    ] {
        let o = Command::new("timeout")
            .args(["-k", "2", "20", BIN, "data", "inspect"])
            .arg(f)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let line = common::assert_one_line_error(&o);
        assert_eq!(o.status.code(), Some(2), "{line}");
        assert!(line.contains("refused") && line.contains(want), "{line}");
        assert!(o.stdout.is_empty(), "nothing described before the refusal");
    }
    table_row(
        "BI-1 libhdf5 segfault + hang fixtures",
        2,
        2,
        worst,
        peak,
        &format!(
            "SIGSEGV and hang refused; train refuses both ({:.0} s total)",
            t0.elapsed().as_secs_f64()
        ),
    );
}

#[test]
fn bi1_a_validator_crash_or_hang_refuses_the_file_and_train_never_starts() {
    let _g = serial();
    let data = synth("bi1-ok.h5", &[]);
    // A wall-clock limit no process can meet stands in for a libhdf5 hang; an address-space
    // limit too small to load the libraries for a crash over the memory limit.
    let t = Instant::now();
    let v = validate(&data, &[("GRADCODE_VALIDATE_TIMEOUT_MS", "1")]);
    assert_eq!(
        (v.code, v.outcome.as_str()),
        (Some(2), "refused"),
        "{}",
        v.stderr
    );
    assert!(
        v.stderr
            .contains("libhdf5 crashed or exceeded limits on this file: refused"),
        "{}",
        v.stderr
    );
    let v2 = validate(&data, &[("GRADCODE_VALIDATE_MEMORY_MB", "8")]);
    assert_eq!(v2.code, Some(2), "{}", v2.stderr);
    assert!(v2.stderr.contains("refused"), "{}", v2.stderr);
    train_refuses(
        &data,
        &[("GRADCODE_VALIDATE_TIMEOUT_MS", "1")],
        "libhdf5 crashed or exceeded limits on this file: refused",
    );
    // The same file with the default limits trains.
    let out_dir = workdir().join("run-ok");
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--code",
        "frc",
        "-s",
        "1",
        "--iterations",
        "3",
        "--deadline-ms",
        "500",
        "--out",
        out_dir.to_str().unwrap(),
        "--force",
    ];
    let out = mpirun_train(3, &args, &[], 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    table_row(
        "BI-1 validator hang/over-limit -> refused",
        3,
        3,
        t.elapsed(),
        v.peak_kib.max(v2.peak_kib),
        "timeout 1 ms and 8 MiB address space",
    );
}

// ------------------------------------------------------------------------------------------------
// BI-2 and BI-3: files built with libhdf5

fn build(name: &str, f: impl FnOnce(&hdf5::File, &Path)) -> PathBuf {
    let dir = workdir().join(format!("h-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.h5"));
    common::h5_write(&p, false, |file| {
        f(file, &dir);
        let task: hdf5::types::VarLenUnicode = "binary".parse().unwrap();
        file.new_attr::<hdf5::types::VarLenUnicode>()
            .create("task")
            .unwrap()
            .write_scalar(&task)
            .unwrap();
    });
    p
}

#[test]
fn bi2_absurd_declared_shapes_are_rejected_fast_with_small_memory() {
    let _g = serial();
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "1 PiB dense X",
            build("pib", |f, _| {
                f.new_dataset::<f64>()
                    .chunk((1, 1))
                    .shape((1usize << 27, 1usize << 20))
                    .create("X")
                    .unwrap();
                y_of(f, 4);
            }),
            "over the cap",
        ),
        (
            "overflowing product",
            build("overflow", |f, _| {
                f.new_dataset::<f64>()
                    .chunk((1, 1))
                    .shape((1usize << 31, 1usize << 31))
                    .create("X")
                    .unwrap();
                y_of(f, 4);
            }),
            "overflows",
        ),
        (
            "16 EiB y",
            build("hugey", |f, _| {
                f.new_dataset_builder()
                    .with_data(&Array2::<f64>::zeros((4, 2)))
                    .create("X")
                    .unwrap();
                f.new_dataset::<f64>()
                    .chunk(1)
                    .shape(1usize << 61)
                    .create("y")
                    .unwrap();
            }),
            "/y",
        ),
        (
            "CSR shape attribute 2^62 cells",
            build("csr", |f, _| {
                let g = f.create_group("X").unwrap();
                g.new_dataset_builder()
                    .with_data(&[1.0f64])
                    .create("data")
                    .unwrap();
                g.new_dataset_builder()
                    .with_data(&[0i64])
                    .create("indices")
                    .unwrap();
                g.new_dataset_builder()
                    .with_data(&[0i64, 1])
                    .create("indptr")
                    .unwrap();
                g.new_attr_builder()
                    .with_data(&[1u64, 1 << 62])
                    .create("shape")
                    .unwrap();
                y_of(f, 1);
            }),
            "features, over the cap",
        ),
    ];
    let (mut worst, mut peak) = (Duration::ZERO, 0u64);
    for (what, p, want) in &cases {
        let size = std::fs::metadata(p).unwrap().len();
        let v = validate(p, &[]);
        assert_eq!(v.code, Some(2), "{what}: {}", v.stderr);
        assert!(
            v.stderr.contains(want),
            "{what}: wanted '{want}' in {}",
            v.stderr
        );
        assert!(v.wall < Duration::from_secs(5), "{what}: {:?}", v.wall);
        assert!(v.peak_kib < 64 << 10, "{what}: peak {} KiB", v.peak_kib);
        println!(
            "BI-2 {what}: {size}-byte file rejected in {:.3} s, validator peak {} KiB",
            v.wall.as_secs_f64(),
            v.peak_kib
        );
        worst = worst.max(v.wall);
        peak = peak.max(v.peak_kib);
    }
    train_refuses(&cases[0].1, &[], "over the cap");
    table_row(
        "BI-2 absurd declared shapes",
        cases.len(),
        cases.len(),
        worst,
        peak,
        "PiB / overflow / 2^61 y / CSR 2^62",
    );
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success());
}

#[test]
fn bi3_external_virtual_links_and_filters_are_refused_without_opening_other_files() {
    let _g = serial();
    // Each outside file is replaced by a FIFO after the dataset is built: opening it would block
    // (no writer), so a quick "invalid" proves the validator never opened it.
    let ext = build("external", |f, dir| {
        hostile::external_storage_x(f, dir, "secret.bin");
        y_of(f, 4);
    });
    mkfifo(&ext.parent().unwrap().join("secret.bin"));
    let vds = build("virtual", |f, dir| {
        hostile::virtual_x(f, dir, "src.h5");
        y_of(f, 4);
    });
    mkfifo(&vds.parent().unwrap().join("src.h5"));
    let link = build("extlink", |f, dir| {
        hostile::external_link_x(f, dir, "linked.h5");
        y_of(f, 4);
    });
    mkfifo(&link.parent().unwrap().join("linked.h5"));
    let filt = build("deflate", |f, _| {
        hostile::filtered_x(f, true);
        y_of(f, 4);
    });
    let cases = [
        (&ext, "external storage"),
        (&vds, "virtual dataset"),
        (&link, "/X is an external link"),
        (&filt, "filters in its pipeline"),
    ];
    let (mut worst, mut peak) = (Duration::ZERO, 0u64);
    for (p, want) in cases {
        let v = validate(p, &[]);
        assert_eq!(
            (v.code, v.outcome.as_str()),
            (Some(2), "invalid"),
            "{}: {}",
            p.display(),
            v.stderr
        );
        assert!(v.stderr.contains(want), "wanted '{want}': {}", v.stderr);
        assert!(v.wall < Duration::from_secs(5), "{:?}", v.wall);
        worst = worst.max(v.wall);
        peak = peak.max(v.peak_kib);
        train_refuses(p, &[], want);
    }
    table_row(
        "BI-3 external/virtual/link/filter",
        cases.len(),
        cases.len(),
        worst,
        peak,
        "outside files are FIFOs: never opened",
    );
}

// ------------------------------------------------------------------------------------------------
// CR-2: kill -9 during checkpointing

const STRESS_HASH: &str = "ckpt-stress-config";

fn stress_bin() -> PathBuf {
    // target/<profile>/deps/reliability-<hash> -> target/<profile>/examples/ckpt_stress
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join("examples").join("ckpt_stress");
    if !bin.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--example", "ckpt_stress", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().unwrap();
        assert!(
            st.success() && bin.exists(),
            "cannot build {}",
            bin.display()
        );
    }
    bin
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".ckpt.h5.tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cr2_kill9_during_checkpointing_leaves_the_newest_complete_generation() {
    let _g = serial();
    let n = trials("GRADCODE_CR2_TRIALS", 5, 60);
    let bin = stress_bin();
    let dir = workdir().join("cr2");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0xc22);
    let (mut passed, mut worst) = (0usize, Duration::ZERO);
    let (mut mid_write, mut between_renames) = (0usize, 0usize);
    let mut failures = Vec::new();
    for t in 0..n {
        let mut child = Command::new(&bin)
            .arg(&dir)
            .arg(if t % 2 == 0 { "4096" } else { "64" })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Wait for the first save, then a random delay: kills land anywhere in a save.
        let first = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        assert!(first.starts_with("start "), "trial {t}: {first}");
        let _ = rx.recv_timeout(Duration::from_secs(20));
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..150_000)));
        let t_kill = Instant::now();
        // SAFETY: pid is our child, not yet waited on.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        let _ = child.wait();
        worst = worst.max(t_kill.elapsed());
        let _ = reader.join();
        let lines: Vec<String> = rx.try_iter().collect();
        let start: u64 = first["start ".len()..].parse().unwrap();
        let last_saved = lines
            .iter()
            .filter_map(|l| l.strip_prefix("saved "))
            .filter_map(|v| v.parse::<u64>().ok())
            .max()
            .unwrap_or(start + 1);
        let tmps = temporaries(&dir);
        let stale: Vec<&String> = tmps
            .iter()
            .filter(|n| !n.ends_with(&format!(".{pid}")))
            .collect();
        if !tmps.is_empty() {
            mid_write += 1;
        }
        let [cur, prev] = checkpoint::generations(&dir);
        if !cur.exists() && prev.exists() {
            between_renames += 1;
        }
        match checkpoint::load(&dir, STRESS_HASH) {
            Ok((c, from, reasons))
                if (c.iteration == last_saved || c.iteration == last_saved + 1)
                    && stale.is_empty()
                    && c.state.w[0] == c.iteration as f64 =>
            {
                if !reasons.is_empty() {
                    println!(
                        "CR-2 trial {t}: fell back to {} ({reasons:?})",
                        from.display()
                    );
                }
                passed += 1;
            }
            other => failures.push(format!(
                "trial {t}: last saved {last_saved}, stale temporaries {stale:?}, load: {:?}",
                other.map(|(c, p, r)| (c.iteration, p, r))
            )),
        }
    }
    // A final save cleans every stale temporary.
    let c = checkpoint::load(&dir, STRESS_HASH).unwrap().0;
    let next = Checkpoint {
        iteration: c.iteration + 1,
        ..c
    };
    checkpoint::save(&dir, &next).unwrap();
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    println!(
        "CR-2: {n} kills; {mid_write} left a temporary (killed while writing), {between_renames} between the two renames"
    );
    table_row(
        "CR-2 kill -9 during checkpoint save",
        n,
        passed,
        worst,
        0,
        &format!("{mid_write} mid-write, {between_renames} between renames"),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// CR-3: corrupted checkpoints fall back to the previous generation

const MARKER: f64 = 12_345.678_9;

fn ckpt(it: u64, hash: &str) -> Checkpoint {
    Checkpoint {
        iteration: it,
        state: OptimizerState {
            w: Array1::from(vec![MARKER, it as f64, 3.0]),
            w_prev: Array1::from(vec![0.5, 0.25, 0.125]),
            steps: it,
            adam: None,
            kfac: None,
        },
        config_hash: hash.into(),
        seed: 7,
        elapsed_s: 1.5,
        adapt: None,
    }
}

fn set_attr_u64(p: &Path, name: &str, v: u64) {
    common::h5_write(p, true, |f| f.attr(name).unwrap().write_scalar(&v).unwrap());
}

fn set_attr_str(p: &Path, name: &str, v: &str) {
    let v: hdf5::types::VarLenUnicode = v.parse().unwrap();
    common::h5_write(p, true, |f| f.attr(name).unwrap().write_scalar(&v).unwrap());
}

#[test]
fn cr3_corrupted_checkpoints_are_rejected_and_fall_back() {
    // Alone: in one CI run under load, opening ckpt.prev.h5 here failed with libhdf5's
    // "unable to lock file, errno = 11" while other tests of this binary used HDF5 in parallel.
    let _g = serial();
    type Corrupt = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Corrupt, &str)> = vec![
        (
            "truncated",
            Box::new(|p| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() * 2 / 3]).unwrap();
            }),
            "not an HDF5 file or unreadable",
        ),
        (
            "zero-length",
            Box::new(|p| std::fs::write(p, b"").unwrap()),
            "not an HDF5 file or unreadable",
        ),
        (
            "flipped bit in the parameters",
            Box::new(|p| {
                let mut b = std::fs::read(p).unwrap();
                let m = MARKER.to_le_bytes();
                let at = b.windows(8).position(|w| w == m).unwrap();
                b[at + 3] ^= 0x10;
                std::fs::write(p, &b).unwrap();
            }),
            "state checksum mismatch",
        ),
        (
            "wrong config hash",
            Box::new(|p| set_attr_str(p, "config_sha256", "0123456789abcdef-other")),
            "written by another configuration",
        ),
        (
            "wrong format version",
            Box::new(|p| set_attr_u64(p, "format_version", 99)),
            "checkpoint format version 99",
        ),
        (
            "iteration changed (checksum)",
            Box::new(|p| set_attr_u64(p, "iteration", 1_000_000)),
            "state checksum mismatch",
        ),
    ];
    let t0 = Instant::now();
    for (what, corrupt, want) in &cases {
        let d = tempfile::tempdir().unwrap();
        checkpoint::save(d.path(), &ckpt(4, "h")).unwrap();
        checkpoint::save(d.path(), &ckpt(5, "h")).unwrap();
        let [cur, _] = checkpoint::generations(d.path());
        corrupt(&cur);
        let e = checkpoint::read(&cur, "h").unwrap_err().to_string();
        assert!(e.contains(want), "{what}: wanted '{want}' in {e}");
        let (c, from, reasons) = checkpoint::load(d.path(), "h").unwrap();
        assert_eq!(c, ckpt(4, "h"), "{what}");
        assert!(from.ends_with("ckpt.prev.h5"), "{what}");
        assert_eq!(reasons.len(), 1, "{what}: {reasons:?}");
        assert!(reasons[0].contains(want), "{what}: {reasons:?}");
        // Both generations bad: a clear error naming both reasons, never a silent start.
        corrupt(&d.path().join("ckpt.prev.h5"));
        let e = checkpoint::load(d.path(), "h").unwrap_err().to_string();
        assert!(
            e.contains("no usable checkpoint") && e.contains(want),
            "{what}: {e}"
        );
    }
    // Random byte flips anywhere: rejected, or (flip in unused bytes) the exact saved state.
    let mut rng = ChaCha8Rng::seed_from_u64(0xc33);
    let n_random = 40;
    let d = tempfile::tempdir().unwrap();
    checkpoint::save(d.path(), &ckpt(1, "h")).unwrap();
    let [cur, _] = checkpoint::generations(d.path());
    let good = std::fs::read(&cur).unwrap();
    let (mut rejected, mut intact) = (0, 0);
    for _ in 0..n_random {
        let mut b = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let p = rng.gen_range(0..b.len());
            b[p] ^= 1 << rng.gen_range(0..8);
        }
        std::fs::write(&cur, &b).unwrap();
        match checkpoint::read(&cur, "h") {
            Ok(c) => {
                assert_eq!(c, ckpt(1, "h"), "a flipped file read as a different state");
                intact += 1;
            }
            Err(_) => rejected += 1,
        }
    }
    println!("CR-3 random flips: {rejected} rejected, {intact} read back the exact saved state");
    table_row(
        "CR-3 corrupted checkpoints fall back",
        cases.len() + n_random,
        cases.len() + n_random,
        t0.elapsed(),
        0,
        &format!("6 kinds + {n_random} random flips ({rejected} rejected, {intact} intact)"),
    );
}

// ------------------------------------------------------------------------------------------------
// SEC-2: symlinks at the checkpoint and temporary paths

#[test]
fn sec2_symlinks_at_checkpoint_paths_are_never_written_through() {
    let t0 = Instant::now();
    let tmp_name = format!(".ckpt.h5.tmp.{}", std::process::id());
    let mut n = 0;
    for link_name in ["ckpt.h5", "ckpt.prev.h5", tmp_name.as_str()] {
        for dangling in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let victim = d.path().join("victim");
            if !dangling {
                std::fs::write(&victim, b"keep").unwrap();
            }
            std::os::unix::fs::symlink(&victim, d.path().join(link_name)).unwrap();
            let r = checkpoint::save(d.path(), &ckpt(1, "h"));
            let e = r.expect_err("save must refuse a symlink").to_string();
            assert!(e.contains("symbolic link") || e.contains("symlink"), "{e}");
            if dangling {
                assert!(!victim.exists(), "{link_name}: created through the link");
            } else {
                assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "{link_name}");
            }
            assert!(std::fs::symlink_metadata(d.path().join(link_name))
                .unwrap()
                .file_type()
                .is_symlink());
            n += 1;
        }
    }
    table_row(
        "SEC-2 symlinked checkpoint/temp paths",
        n,
        n,
        t0.elapsed(),
        0,
        "ckpt.h5, ckpt.prev.h5, temporary; existing and dangling targets",
    );
}

// ------------------------------------------------------------------------------------------------
// SEC-1: no listening socket of gradcode's own

/// Socket inodes in LISTEN state (TCP) or listening (unix) in `pid`'s network namespace.
fn listening_inodes(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" {
                if let Ok(ino) = f[9].parse() {
                    out.push((format!("{proto} {}", f[1]), ino));
                }
            }
        }
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Flags 00010000 = __SO_ACCEPTCON: a listening socket.
        if f.len() > 6 && f[3] == "00010000" {
            if let Ok(ino) = f[6].parse() {
                out.push((format!("unix {}", f.get(7).unwrap_or(&"")), ino));
            }
        }
    }
    out
}

fn socket_inodes(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|it| {
            it.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Pids whose executable is the gradcode binary (the MPI ranks).
fn rank_pids() -> Vec<u32> {
    let me = std::fs::canonicalize(BIN).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == me)
                && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains("sec1-run"))
        })
        .collect()
}

/// Listening sockets held by the ranks of a running job, sampled a few times.
fn sample_listeners(btl: Option<&str>) -> (usize, Vec<String>) {
    let data = synth("sec1.h5", &[]);
    let out_dir = workdir().join(format!("sec1-run-{}", btl.unwrap_or("default")));
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k",
        "5",
        "90",
        "mpirun",
        "--oversubscribe",
        "--bind-to",
        "none",
    ]);
    if let Some(b) = btl {
        cmd.args(["--mca", "btl", b]);
    }
    let mut child = cmd
        .args(["-np", "3", BIN, "train", "--data"])
        .arg(&data)
        .args(["--code", "frc", "-s", "1", "--iterations", "300"])
        .args(["--straggler-model", "fixed:1:10", "--deadline-ms", "2000"])
        .args(["--log-every", "1000", "--force", "--out"])
        .arg(&out_dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut found = Vec::new();
    let mut sampled = 0;
    while start.elapsed() < Duration::from_secs(20) && sampled < 5 {
        std::thread::sleep(Duration::from_millis(400));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let pids = rank_pids();
        if pids.len() < 3 {
            continue;
        }
        sampled += 1;
        for pid in pids {
            let mine = socket_inodes(pid);
            for (what, ino) in listening_inodes(pid) {
                if mine.contains(&ino) {
                    let entry = format!("pid {pid}: {what}");
                    if !found.contains(&entry) {
                        found.push(entry);
                    }
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (sampled, found)
}

#[test]
fn sec1_no_listening_socket_of_gradcode_itself() {
    let _g = serial();
    let t0 = Instant::now();
    // 1. gradcode's own code has no listening-socket API.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut hits = Vec::new();
    let mut stack = vec![src];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for pat in [
                    "TcpListener",
                    "UnixListener",
                    "UdpSocket",
                    "libc::listen",
                    "libc::bind",
                    "libc::socket",
                ] {
                    if text.contains(pat) {
                        hits.push(format!("{}: {pat}", p.display()));
                    }
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "listening-socket APIs in gradcode: {hits:?}"
    );
    // 2. Shared memory only (btl self,vader): the ranks hold no listening socket at all.
    let (sampled, found) = sample_listeners(Some("self,vader"));
    assert!(sampled > 0, "never saw the 3 ranks running");
    assert!(
        found.is_empty(),
        "listening sockets in the ranks: {found:?}"
    );
    // 3. Default btl list: whatever the ranks listen on is Open MPI's (TCP BTL / PMIx), which
    //    step 1 shows gradcode never creates. Recorded, not asserted.
    let (sampled_default, found_default) = sample_listeners(None);
    println!(
        "SEC-1: btl self,vader: {sampled} samples, no listening socket in any rank; default btl: {sampled_default} samples, rank-held listeners (Open MPI's own): {found_default:?}"
    );
    table_row(
        "SEC-1 no listening socket of gradcode",
        sampled + sampled_default,
        sampled + sampled_default,
        t0.elapsed(),
        0,
        &format!(
            "btl self,vader: 0 listeners; default btl: {} listeners, all Open MPI's",
            found_default.len()
        ),
    );
}

// ------------------------------------------------------------------------------------------------
// BI-5, BI-6, BI-7 and message headers: the fuzz corpus, each file with its specific error, and a
// seeded random-mutation run over the same entry points as the cargo-fuzz targets (`fuzz/`).

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Each entry point: bytes in, `Ok(summary)` or `Err(message)`.
fn parse_with(target: &str, data: &[u8], scratch: &Path) -> Result<String, String> {
    use gradcode::io::convert;
    use std::io::Cursor;
    match target {
        "libsvm" => convert::parse_libsvm(Cursor::new(data), Path::new("f"), None)
            .map(|s| format!("{} rows", s.n_rows()))
            .map_err(|e| e.to_string()),
        "csv" => convert::parse_csv(Cursor::new(data), Path::new("f"), None)
            .map(|(s, _)| format!("{} rows", s.n_rows()))
            .map_err(|e| e.to_string()),
        "idx" => {
            if data.len() < 2 {
                return Err("too short".into());
            }
            let rest = &data[2..];
            let split = (usize::from(data[0]) | usize::from(data[1]) << 8) % (rest.len() + 1);
            let (im, lb) = (scratch.join("images"), scratch.join("labels"));
            std::fs::write(&im, &rest[..split]).unwrap();
            std::fs::write(&lb, &rest[split..]).unwrap();
            convert::parse_idx(&im, &lb, true)
                .map(|s| format!("{} rows", s.n_rows()))
                .map_err(|e| e.to_string())
        }
        "config" => {
            let f = scratch.join("c.toml");
            std::fs::write(&f, data).unwrap();
            let args = gradcode::config::TrainArgs {
                job: gradcode::config::JobArgs {
                    config: Some(f),
                    ..Default::default()
                },
                ..Default::default()
            };
            gradcode::config::RunConfig::from_args(&args, 5)
                .map(|c| format!("n={} s={}", c.workers(), c.stragglers))
                .map_err(|e| e.to_string())
        }
        "header" => {
            let buf: Vec<f64> = data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            gradcode::comm::protocol::Header::parse(&buf)
                .map(|h| format!("{:?} len {}", h.kind, h.len))
                .map_err(|e| e.to_string())
        }
        _ => unreachable!(),
    }
}

#[test]
fn bi5_bi6_parsers_corpus_errors_and_seeded_mutations() {
    let expected: &[(&str, &str, &str)] = &[
        ("libsvm", "valid", "ok:3 rows"),
        ("libsvm", "crlf", "ok:2 rows"),
        ("libsvm", "empty", "ok:0 rows"),
        ("libsvm", "long_line", "ok:1 rows"),
        ("libsvm", "index0", "feature index 0 (indices are 1-based)"),
        ("libsvm", "negative", "negative feature index -3"),
        ("libsvm", "duplicate", "duplicate feature index 2"),
        ("libsvm", "unsorted", "not increasing (2 after 5)"),
        ("libsvm", "big_index", "exceeds the cap"),
        ("libsvm", "qid", "'qid:' (ranking data) is not supported"),
        ("libsvm", "non_utf8", "not valid UTF-8"),
        ("libsvm", "nan", "bad value 'nan'"),
        ("csv", "valid", "ok:2 rows"),
        ("csv", "quoted", "ok:1 rows"),
        ("csv", "crlf", "ok:1 rows"),
        ("csv", "header_only", "ok:0 rows"),
        ("csv", "nan", "non-finite value 'nan' in column 'a'"),
        ("csv", "ragged", "2 fields, but the header has 3"),
        ("csv", "empty_name", "header column 1 has no name"),
        ("idx", "valid", "ok:2 rows"),
        ("idx", "bad_magic", "bad IDX magic"),
        ("idx", "type_float", "IDX type code 0x0d (float)"),
        ("idx", "ndim0", "0 dimensions, expected 3"),
        ("idx", "ndim255", "255 dimensions, expected 3"),
        ("idx", "overflow", "IDX dimensions overflow"),
        ("idx", "short", "shorter than declared"),
        ("idx", "long", "longer than declared"),
        ("idx", "count_mismatch", "3 labels for 2 images"),
        ("config", "valid", "ok:n=4 s=1"),
        ("config", "stragglers_spec", "ok:n=4 s=1"),
        ("config", "bad_type", "config file"),
        ("config", "unknown_key", "unknown setting(s) bogus"),
        (
            "config",
            "n_le_s",
            "--stragglers = 9: must be smaller than the number of workers n = 4",
        ),
        (
            "config",
            "deadline0",
            "--deadline-ms = 0: must be a finite number > 0",
        ),
        ("config", "negative", "config file"),
        ("config", "reference", "--out = '': must name a run folder"),
        ("header", "grad", "ok:Result len 2"),
        ("header", "params", "ok:Params len 0"),
        ("header", "short", "shorter than the header"),
        ("header", "bad_kind", "unknown message kind 99"),
        ("header", "nan_time", "timing field compute_s"),
        ("header", "huge_len", "header field len"),
        ("header", "fraction", "header field iteration = 5.5"),
    ];
    let scratch = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut checked = 0;
    for target in ["libsvm", "csv", "idx", "config", "header"] {
        for (name, data) in corpus(target) {
            let got = match parse_with(target, &data, scratch.path()) {
                Ok(s) => format!("ok:{s}"),
                Err(e) => e,
            };
            let want = expected
                .iter()
                .find(|(t, n, _)| *t == target && *n == name)
                .unwrap_or_else(|| panic!("no expectation for corpus file {target}/{name}"))
                .2;
            assert!(
                got.contains(want),
                "{target}/{name}: wanted '{want}', got '{got}'"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, expected.len());
    // A line over the 4 MiB cap.
    let mut big = b"1 ".to_vec();
    big.resize(gradcode::io::convert::MAX_LINE + 10, b'1');
    let e = parse_with("libsvm", &big, scratch.path()).unwrap_err();
    assert!(e.contains("line is longer than"), "{e}");

    // Seeded mutations of every corpus file through every entry point: no panic, no slow input.
    let per_target = trials("GRADCODE_PARSER_TRIALS", 400, 5000);
    let mut rng = ChaCha8Rng::seed_from_u64(0xf022);
    let (mut runs, mut worst) = (0usize, Duration::ZERO);
    let mut failures = Vec::new();
    for target in ["libsvm", "csv", "idx", "config", "header"] {
        let seeds = corpus(target);
        for i in 0..per_target {
            let (_, base) = &seeds[i % seeds.len()];
            let mut b = base.clone();
            for _ in 0..rng.gen_range(1..6) {
                let n = b.len();
                match rng.gen_range(0..5) {
                    0 if n > 0 => {
                        let p = rng.gen_range(0..n);
                        b[p] ^= 1 << rng.gen_range(0..8);
                    }
                    1 if n > 0 => {
                        let p = rng.gen_range(0..n);
                        b[p] = *b":-. 0123456789e\n\r,#\"x\xff\x00=[]"
                            .get(rng.gen_range(0..24))
                            .unwrap_or(&b'9');
                    }
                    2 => {
                        let p = rng.gen_range(0..=n);
                        let k = rng.gen_range(1..16);
                        let chunk: Vec<u8> = (0..k).map(|_| rng.gen()).collect();
                        b.splice(p..p, chunk);
                    }
                    3 if n > 0 => b.truncate(rng.gen_range(0..n)),
                    _ => {
                        let (_, other) = &seeds[rng.gen_range(0..seeds.len())];
                        b.extend_from_slice(other);
                    }
                }
            }
            let t = Instant::now();
            let r = std::panic::catch_unwind(|| parse_with(target, &b, scratch.path()));
            let dt = t.elapsed();
            worst = worst.max(dt);
            runs += 1;
            if r.is_err() || dt > Duration::from_secs(2) {
                failures.push(format!(
                    "{target} mutant {i} ({dt:?}): {:?}",
                    String::from_utf8_lossy(&b)
                ));
            }
        }
    }
    table_row(
        "BI-5/BI-6 parsers: corpus + seeded mutations",
        checked + runs,
        checked + runs - failures.len(),
        worst,
        0,
        &format!("{checked} corpus files with their error; {runs} mutants over libsvm/csv/idx/config/header"),
    );
    let _ = t0;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// FI-1..FI-9 and CR-5..CR-7: the real job under mpirun with the test-only fault plan
// (`GRADCODE_FAULT_PLAN`, src/faults.rs) and signals. FRC with s = 1 on 1 + 4 ranks: workers of a
// group compute bit-identical messages, so a run that lost a worker's message (erasure, late,
// stopped) ends bit for bit where the run without the fault does, and resume is bit-identical.

use gradcode::io::results;

const FAULT_VAR: &str = "GRADCODE_FAULT_PLAN";

/// The dataset of the fault cases (2,100 rows, 30 features, a test split).
fn fi_data() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let p = workdir().join("fi.h5");
        let out = Command::new(BIN)
            .args(["data", "synth", "--kind", "logistic", "--rows", "2100"])
            .args([
                "--features",
                "30",
                "--test-rows",
                "300",
                "--seed",
                "3",
                "--out",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    })
    .clone()
}

/// Arguments of a fault-case run: FRC, s = 1, logistic, `iterations`, into `run`, plus `extra`
/// (which override nothing: callers pass only flags not set here).
fn fi_args(run: &Path, iterations: usize, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--data".into(),
        fi_data().display().to_string(),
        "--out".into(),
        run.display().to_string(),
        "--iterations".into(),
        iterations.to_string(),
    ];
    let has = |f: &str| extra.contains(&f);
    for (flag, value) in [
        ("--code", "frc"),
        ("-s", "1"),
        ("--model", "logistic"),
        ("--lr", "1.0"),
        ("--seed", "5"),
        ("--log-every", "1000000"),
        ("--max-wait-ms", "2000"),
    ] {
        if !has(flag) {
            v.extend([flag.to_string(), value.to_string()]);
        }
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `mpirun -np 5 gradcode train` with `args` and an optional fault plan, under `timeout`.
fn fi_run(args: &[String], plan: Option<&str>, timeout_s: u64) -> (Output, Duration) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = plan.map(|p| (FAULT_VAR, p)).into_iter().collect();
    let t = Instant::now();
    let o = mpirun_train(5, &refs, &envs, timeout_s);
    let took = t.elapsed();
    assert_ne!(o.status.code(), Some(124), "timed out: {}", output_text(&o));
    (o, took)
}

fn fresh(name: &str) -> PathBuf {
    let d = workdir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// w_final of the uninterrupted, fault-free run with `iterations` and `extra`, made once per key.
fn straight_w(iterations: usize, extra: &[&str]) -> Array1<f64> {
    static CACHE: Mutex<Vec<(String, Array1<f64>)>> = Mutex::new(Vec::new());
    let key = format!("{iterations} {extra:?}");
    if let Some((_, w)) = CACHE.lock().unwrap().iter().find(|(k, _)| *k == key) {
        return w.clone();
    }
    let run = fresh(&format!("straight-{}", CACHE.lock().unwrap().len()));
    let (o, _) = fi_run(&fi_args(&run, iterations, extra), None, 120);
    assert!(o.status.success(), "{}", output_text(&o));
    let w = results::read_vector(&run.join("run.h5"), "model/w_final").unwrap();
    CACHE.lock().unwrap().push((key, w.clone()));
    w
}

fn run_h5(run: &Path) -> PathBuf {
    run.join("run.h5")
}

fn status_of(run: &Path) -> String {
    results::read_str_attr(&run_h5(run), "", "status").unwrap()
}

fn config_hash(run: &Path) -> String {
    results::read_str_attr(&run_h5(run), "config", "config_sha256").unwrap()
}

/// Per-worker summary column (`late`, `rejected`, `on_time`) of a finished run.
fn per_worker(run: &Path, name: &str) -> Vec<f64> {
    results::read_vector(&run_h5(run), &format!("summary/{name}"))
        .unwrap()
        .to_vec()
}

fn w_final(run: &Path) -> Array1<f64> {
    results::read_vector(&run_h5(run), "model/w_final").unwrap()
}

/// Checkpoint temporaries left in `run`.
fn ckpt_temps(run: &Path) -> Vec<String> {
    std::fs::read_dir(run)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".ckpt.h5.tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Resume `args` (no fault plan): must complete with every row once, and `w_final` equal to `want`.
fn resume_matches(args: &[String], run: &Path, iterations: usize, want: &Array1<f64>) {
    let mut a = args.to_vec();
    a.push("--resume".into());
    let (o, _) = fi_run(&a, None, 120);
    assert!(o.status.success(), "resume: {}", output_text(&o));
    assert_eq!(status_of(run), "complete");
    assert_eq!(
        &w_final(run),
        want,
        "resumed run differs from the uninterrupted one"
    );
    let rows = results::read_rows(&run_h5(run), None).unwrap();
    let it = rows.column(Metric::Iteration);
    assert_eq!(rows.len(), iterations, "rows after resume");
    assert!(
        it.iter().enumerate().all(|(i, &v)| v == i as f64),
        "no duplicate or missing rows: {it:?}"
    );
    assert!(
        ckpt_temps(run).is_empty(),
        "stale temporaries: {:?}",
        ckpt_temps(run)
    );
}

#[test]
fn fi1_up_to_s_late_workers_decode_the_exact_gradient_without_waiting() {
    let _g = serial();
    // Cyclic MDS, s = 1: worker 3 is 600 ms late at iteration 4; every iteration's decoded
    // gradient is compared with the exact one (--check-gradient-every 1).
    let run = fresh("fi1");
    let args = fi_args(
        &run,
        10,
        &[
            "--code",
            "cyclic-mds",
            "--check-gradient-every",
            "1",
            "--deadline-ms",
            "1000",
        ],
    );
    let (o, took) = fi_run(&args, Some("delay:3@4:600"), 60);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    assert_eq!(rows.len(), 10);
    let err = rows.column(Metric::GradRelErr);
    assert!(
        err.iter().all(|&e| e.is_finite() && e <= 1e-8),
        "gradient errors {err:?}"
    );
    assert!(rows.column(Metric::Exact).iter().all(|&e| e == 1.0));
    let wall4 = rows.column(Metric::WallS)[4];
    assert!(
        wall4 < 0.4,
        "iteration 4 waited for the late worker: {wall4} s"
    );
    assert!(
        rows.worker(WorkerMetric::ArrivalS)[[4, 2]].is_nan(),
        "worker 3 was not late at 4"
    );
    // Its late message was drained and counted, never used.
    assert!(per_worker(&run, "late")[2] >= 1.0);
    table_row(
        "FI-1 <= s late: exact gradient, no wait",
        10,
        10,
        took,
        0,
        &format!(
            "grad rel err max {:.1e}; late iteration {:.0} ms",
            err.fold(0.0f64, |a, &b| a.max(b)),
            wall4 * 1e3
        ),
    );
}

#[test]
fn fi2_more_than_s_late_runs_the_documented_policy_without_hanging() {
    let _g = serial();
    // Workers 2 and 3 700 ms late at iteration 3 (s = 1).
    let plan = "delay:2@3:700,delay:3@3:700";
    // best-effort: decode what arrived by the 150 ms deadline, record the residual, go on.
    let run = fresh("fi2-best");
    let args = fi_args(
        &run,
        8,
        &[
            "--code",
            "cyclic-mds",
            "--on-deadline",
            "best-effort",
            "--deadline-ms",
            "150",
        ],
    );
    let (o, t1) = fi_run(&args, Some(plan), 60);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    assert_eq!(rows.column(Metric::Exact)[3], 0.0);
    let res = rows.column(Metric::DecodeResidual)[3];
    assert!(res.is_finite() && res > 0.0, "residual {res}");
    assert!(rows.column(Metric::WallS)[3] < 0.6);
    assert!(w_final(&run).iter().all(|v| v.is_finite()));
    // wait: up to --max-wait-ms 300, then fail with the silent ranks named, exit 1.
    let run = fresh("fi2-wait");
    let args = fi_args(
        &run,
        8,
        &[
            "--code",
            "cyclic-mds",
            "--deadline-ms",
            "100",
            "--max-wait-ms",
            "300",
        ],
    );
    let (o, t2) = fi_run(&args, Some(plan), 60);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("[2, 3]"), "silent workers not named: {err}");
    assert_eq!(status_of(&run), "failed");
    assert_eq!(results::read_rows(&run_h5(&run), None).unwrap().len(), 3);
    table_row(
        "FI-2 > s late: best-effort / bounded wait",
        2,
        2,
        t1.max(t2),
        0,
        &format!("best-effort residual {res:.2}; wait fails exit 1 naming ranks [2, 3]"),
    );
}

#[test]
fn fi3_killed_worker_ends_the_job_and_resume_meets_cr1() {
    let _g = serial();
    let want = straight_w(40, &["--checkpoint-every", "5"]);
    let run = fresh("fi3");
    let args = fi_args(&run, 40, &["--checkpoint-every", "5"]);
    let (o, took) = fi_run(&args, Some("kill:2@23"), 60);
    assert!(!o.status.success(), "{}", output_text(&o));
    assert!(took < Duration::from_secs(30), "job took {took:?} to end");
    let (ck, _, reasons) = checkpoint::load(&run, &config_hash(&run)).unwrap();
    assert!(reasons.is_empty(), "{reasons:?}");
    assert!(
        ck.iteration >= 20 && ck.iteration % 5 == 0,
        "checkpoint at {}",
        ck.iteration
    );
    assert_eq!(status_of(&run), "running");
    resume_matches(&args, &run, 40, &want);
    table_row(
        "FI-3 worker SIGKILL: job ends, resume = straight",
        1,
        1,
        took,
        0,
        &format!("exit {:?}; resumed from {}", o.status.code(), ck.iteration),
    );
}

#[test]
fn fi4_stopped_worker_is_tolerated_and_shutdown_is_bounded() {
    let _g = serial();
    let want = straight_w(20, &[]);
    let run = fresh("fi4");
    let args = fi_args(&run, 20, &[]);
    let mut job = spawn_job_with(&args, "fi4", Some("stop:2@5"));
    let t = Instant::now();
    // Rank 0 names the silent worker and aborts within the shutdown bound (max(2 s, 10 s)).
    let mut aborted = None;
    while t.elapsed() < Duration::from_secs(25) {
        if std::fs::read_to_string(&job.err)
            .unwrap_or_default()
            .contains("workers [2] never answered the STOP")
        {
            aborted = Some(t.elapsed());
            break;
        }
        if job.child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every rank exits. Open MPI 4.1.4's mpirun was seen (about 1 run in 5 here) never to return
    // after that MPI_Abort although no rank process was left: that hang is mpirun's, recorded in
    // the note; gradcode's own shutdown is what is asserted.
    let mut mpirun_hung = false;
    let t_abort = Instant::now();
    let exit = loop {
        if let Some(st) = job.child.try_wait().unwrap() {
            break Some(st);
        }
        if t_abort.elapsed() > Duration::from_secs(15) {
            let alive = (0..5).filter(|&r| job.rank_pid(r).is_some()).count();
            assert_eq!(alive, 0, "ranks still running 15 s after the abort");
            mpirun_hung = true;
            let _ = job.child.kill();
            let _ = job.child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = exit.and_then(|st| st.code());
    let took = t.elapsed();
    let text = std::fs::read_to_string(&job.err).unwrap_or_default();
    let aborted = aborted.unwrap_or_else(|| panic!("rank 2 never named: {text}"));
    assert!(
        aborted < Duration::from_secs(20),
        "shutdown took {aborted:?}"
    );
    // Degraded: every iteration ran, rank 2 never answered the STOP; rank 0 has named it (above)
    // and calls MPI_Abort(3). What mpirun then returns is Open MPI's: 3 in isolation (every
    // one of 9 runs here), but in full suite runs under load once another non-zero code and
    // once an unsuccessful status that was not "exit 3" (it reports how the stopped rank it
    // killed ended). gradcode's own verdict is the file's status, asserted below; the exit
    // status is recorded in the table row.
    let mpirun_other = !mpirun_hung && code != Some(3);
    if mpirun_other {
        eprintln!("FI-4: mpirun returned {exit:?} after MPI_Abort(3): {text}");
    }
    assert_eq!(status_of(&run), "degraded");
    assert_eq!(
        results::read_str_attr(&run_h5(&run), "summary", "unreconciled_workers").unwrap(),
        "[2]"
    );
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.column(Metric::Exact).iter().all(|&e| e == 1.0));
    assert_eq!(w_final(&run), want);
    table_row(
        "FI-4 worker SIGSTOP: exact, bounded exit 3",
        1,
        1,
        took,
        0,
        &format!(
            "status degraded, rank 2 named after {:.1} s; model = fault-free run{}",
            aborted.as_secs_f64(),
            if mpirun_hung {
                "; mpirun hung after MPI_Abort with no rank left (killed)".to_string()
            } else if mpirun_other {
                format!("; mpirun returned {exit:?} after MPI_Abort(3)")
            } else {
                "; exit 3".to_string()
            }
        ),
    );
}

/// FI-10/FI-11: every one of the run's `iterations` rows decoded exactly and its model the
/// fault-free run's `want` to 1e-9 (relative to its largest entry); its rows, for more checks.
fn exact_as_fault_free(
    run: &Path,
    iterations: usize,
    want: &Array1<f64>,
) -> gradcode::io::metrics::RecordedRows {
    let rows = results::read_rows(&run_h5(run), None).unwrap();
    assert_eq!(rows.len(), iterations);
    let exact = rows.column(Metric::Exact);
    assert!(exact.iter().all(|&e| e == 1.0), "{exact:?}");
    let scale = want.iter().map(|v| v.abs()).fold(1.0, f64::max);
    let diff = (&w_final(run) - want)
        .iter()
        .map(|v| v.abs())
        .fold(0.0, f64::max);
    assert!(
        diff <= 1e-9 * scale,
        "w differs from the fault-free run by {diff}"
    );
    rows
}

/// FI-10/FI-11: rank 0 logged that group leader rank 3 went silent and its member rank 4
/// sends to rank 0.
fn assert_rank_3_fell_back(text: &str) {
    assert!(
        text.contains("group leader rank 3 silent for")
            && text.contains("its members [4] send to rank 0 from iteration"),
        "no fallback logged: {text}"
    );
}

/// FI-10's settings: groups of 2, a 300 ms deadline, rank 1 straggling 150 ms every iteration.
const FI10_TREE: [&str; 6] = [
    "--decode-tree",
    "2",
    "--deadline-ms",
    "300",
    "--straggler-model",
    "fixed:1:150",
];

/// FI-4 with the tree decode (issue 20 §4): a `--decode-tree 2` group leader (rank 3) stopped
/// (SIGSTOP) at iteration 5 while the other group's leader (rank 1) straggles 150 ms every
/// iteration. Rank 0 takes rank 3 as silent once it has owed a round for longer than the
/// deadline, tells its member (rank 4) to send to rank 0, and decodes that group from rank 4's
/// own messages: every iteration exact, the model the fault-free run's to 1e-9, rank 4 on time
/// at rank 0 in the last iterations; `degraded`, rank 3 named at STOP.
#[test]
fn fi10_a_silent_tree_leader_falls_back_to_its_members() {
    let _g = serial();
    let extra = FI10_TREE;
    let want = straight_w(20, &extra);
    let (run, _, took, exit) = fi10_stopped_leader("fi10", &extra);
    exact_as_fault_free(&run, 20, &want);
    table_row(
        "FI-10 tree leader SIGSTOP: members fall back, exact",
        1,
        1,
        took,
        0,
        &format!(
            "status degraded, rank 3 named; rank 4 to rank 0 after the deadline; model = fault-free run to 1e-9; {}",
            exit_note(exit)
        ),
    );
}

/// FI-10 with `--compress qsgd:64` (issue 20 §3 with §4): the leaders compress their
/// combinations; after the stopped leader's member (rank 4) falls back it compresses its own
/// results as a flat worker does. The same fallback as FI-10 (logged, rank 4 on time at rank 0
/// in the last iterations, `degraded`, rank 3 named); every message rank 0 receives is a
/// compressed one, a leader's or rank 4's (an uncompressed one of rank 4 would be longer, and
/// refused); the model within 5 % of the fault-free uncompressed run's.
#[test]
fn fi10c_a_silent_tree_leader_falls_back_to_compressing_members() {
    let _g = serial();
    let extra = FI10_TREE;
    let want = straight_w(20, &extra);
    let compressed = [&extra[..], &["--compress", "qsgd:64"]].concat();
    let (run, rows, took, exit) = fi10_stopped_leader("fi10c", &compressed);
    // 30 features and the intercept: qsgd:64 sends 1 bucket norm and 5 words of 7 codes; the
    // loss follows, and a leader's member mask (rank 4's own results have none).
    let wire = "qsgd:64"
        .parse::<gradcode::compress::Compressor>()
        .unwrap()
        .wire_len(31);
    let (leader, member) = (((12 + wire + 2) * 8) as f64, ((12 + wire + 1) * 8) as f64);
    let bytes = rows.column(Metric::BytesReceived);
    let msgs = rows.column(Metric::MessagesReceived);
    assert!(
        bytes
            .iter()
            .zip(msgs.iter())
            .all(|(&b, &m)| b <= m * leader && b >= m * member),
        "{bytes:?} bytes in {msgs:?} messages"
    );
    let w = w_final(&run);
    let rel = (&w - &want).mapv(|v| v * v).sum().sqrt() / want.mapv(|v| v * v).sum().sqrt();
    assert!(
        rel < 0.05,
        "w differs from the fault-free run by {rel} (relative)"
    );
    table_row(
        "FI-10c tree leader SIGSTOP with --compress: members fall back and compress",
        1,
        1,
        took,
        0,
        &format!(
            "status degraded, rank 3 named; rank 4 to rank 0 compressed after the deadline; model within {rel:.1e} of the fault-free run; {}",
            exit_note(exit)
        ),
    );
}

fn exit_note(exit: Option<std::process::ExitStatus>) -> String {
    match exit.and_then(|st| st.code()) {
        Some(c) => format!("exit {c}"),
        None => "mpirun hung after MPI_Abort with no rank left (killed)".to_string(),
    }
}

/// The FI-10 job with `extra`: leader rank 3 stopped at iteration 5; asserts the fallback (rank
/// 3 named at STOP, the fallback logged by rank 0 and rank 4, `degraded`, 20 rows, rank 4 on
/// time at rank 0 in the last iterations). The run, its rows, its time and mpirun's exit.
fn fi10_stopped_leader(
    tag: &str,
    extra: &[&str],
) -> (
    PathBuf,
    results::RecordedRows,
    Duration,
    Option<std::process::ExitStatus>,
) {
    let run = fresh(tag);
    let args = fi_args(&run, 20, extra);
    let mut job = spawn_job_with(&args, tag, Some("stop:3@5"));
    let t = Instant::now();
    let mut named = false;
    while t.elapsed() < Duration::from_secs(40) {
        let text = std::fs::read_to_string(&job.err).unwrap_or_default();
        if text.contains("workers [3] never answered the STOP") {
            named = true;
            break;
        }
        if job.child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // As in FI-4: what mpirun does after MPI_Abort is Open MPI's (it was seen to hang with no
    // rank left); gradcode's verdict is the file's.
    let t_abort = Instant::now();
    let exit = loop {
        if let Some(st) = job.child.try_wait().unwrap() {
            break Some(st);
        }
        if t_abort.elapsed() > Duration::from_secs(15) {
            let alive = (0..5).filter(|&r| job.rank_pid(r).is_some()).count();
            assert_eq!(alive, 0, "ranks still running 15 s after the abort");
            let _ = job.child.kill();
            let _ = job.child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    let text = std::fs::read_to_string(&job.err).unwrap_or_default();
    assert!(named, "rank 3 never named: {text}");
    assert_rank_3_fell_back(&text);
    assert!(
        text.contains("[rank 4] group member: leader rank 3 silent, results to rank 0"),
        "rank 4 never switched: {text}"
    );
    assert_eq!(status_of(&run), "degraded");
    assert_eq!(
        results::read_str_attr(&run_h5(&run), "summary", "unreconciled_workers").unwrap(),
        "[3]"
    );
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    assert_eq!(rows.len(), 20);
    // Rank 3 silent from iteration 5; rank 4's own results reach rank 0 on time at the end
    // (rank 1 straggles 150 ms, so the last rounds decode from rank 4 alone).
    let chunks = rows.worker(WorkerMetric::Chunks);
    let msgs = rows.column(Metric::MessagesReceived);
    assert!((5..20).all(|t| chunks[[t, 2]] == 0.0), "{chunks}");
    assert!((15..20).all(|t| chunks[[t, 3]] == 1.0), "{chunks}");
    assert!((15..20).all(|t| msgs[t] >= 1.0), "{msgs:?}");
    (run, rows, took, exit)
}

/// FI-11 a returning tree leader (issue 20 §4): `--decode-tree 2`, every worker 50 ms slow (so
/// the run lasts past the stall), group leader rank 3 sleeps 0.6 s more before computing
/// iteration 5 (past the 300 ms deadline) and then answers again. Rank 0 falls back to rank 3's member (rank 4), and once
/// rank 3's late result has come, sends rank 4 back to it: both are logged and recorded
/// (`/metrics/tree_fallen_groups` 1, then 0 again), every iteration exact, the model the
/// fault-free run's to 1e-9, the run complete and VALID.
#[test]
fn fi11_a_returning_tree_leader_is_used_again() {
    let _g = serial();
    let extra = [
        "--decode-tree",
        "2",
        "--deadline-ms",
        "300",
        "--straggler-model",
        "fixed:1,2,3,4:50",
    ];
    let want = straight_w(30, &extra);
    let run = fresh("fi11");
    let (o, took) = fi_run(&fi_args(&run, 30, &extra), Some("delay:3@5:600"), 120);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert_rank_3_fell_back(&text);
    assert!(
        text.contains(
            "group leader rank 3 answers again: its members [4] send to it from iteration"
        ) && text.contains("[rank 4] group member: leader rank 3 answers again"),
        "no return logged: {text}"
    );
    assert_eq!(status_of(&run), "complete");
    assert_eq!(
        results::read_str_attr(&run_h5(&run), "validation", "verdict").unwrap(),
        "VALID"
    );
    let rows = exact_as_fault_free(&run, 30, &want);
    let fallen = rows.column(Metric::TreeFallenGroups);
    let first = fallen.iter().position(|&f| f == 1.0);
    let back = first.and_then(|i| fallen.iter().skip(i).position(|&f| f == 0.0));
    assert!(
        first.is_some() && back.is_some() && fallen[29] == 0.0,
        "no fallback and return in tree_fallen_groups: {fallen:?}"
    );
    table_row(
        "FI-11 tree leader stalls 0.6 s, then answers: members back to it, exact",
        1,
        1,
        took,
        0,
        "status complete, VALID; rank 4 to rank 0 after the deadline and back to rank 3 once its late result came; model = fault-free run to 1e-9",
    );
}

/// FI-11 with `--compress topk:0.25 --error-feedback` (issue 20 §3 with §4): the returning
/// leader's member (rank 4) compresses its own results while it sends to rank 0 and sends
/// uncompressed to its leader again after the return. Both moves logged and recorded
/// (`tree_fallen_groups` 1, then 0), no message refused anywhere (rank 0's `rejected` 0 every
/// iteration, no leader refusal logged), the run complete, the model within 5 % of the
/// fault-free uncompressed run's.
#[test]
fn fi11c_a_returning_tree_leader_with_compression() {
    let _g = serial();
    let extra = [
        "--decode-tree",
        "2",
        "--deadline-ms",
        "300",
        "--straggler-model",
        "fixed:1,2,3,4:50",
    ];
    let want = straight_w(30, &extra);
    let compressed = [&extra[..], &["--compress", "topk:0.25", "--error-feedback"]].concat();
    let run = fresh("fi11c");
    let (o, took) = fi_run(&fi_args(&run, 30, &compressed), Some("delay:3@5:600"), 120);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("[rank 4] group member: leader rank 3 silent, results to rank 0")
            && text.contains("[rank 4] group member: leader rank 3 answers again"),
        "no fallback and return: {text}"
    );
    assert!(!text.contains("group leader: refused"), "{text}");
    assert_eq!(status_of(&run), "complete");
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    assert_eq!(rows.len(), 30);
    assert!(rows.column(Metric::Rejected).iter().all(|&r| r == 0.0));
    let fallen = rows.column(Metric::TreeFallenGroups);
    let first = fallen.iter().position(|&f| f == 1.0);
    let back = first.and_then(|i| fallen.iter().skip(i).position(|&f| f == 0.0));
    assert!(
        first.is_some() && back.is_some() && fallen[29] == 0.0,
        "no fallback and return in tree_fallen_groups: {fallen:?}"
    );
    let w = w_final(&run);
    let rel = (&w - &want).mapv(|v| v * v).sum().sqrt() / want.mapv(|v| v * v).sum().sqrt();
    assert!(
        rel < 0.05,
        "w differs from the fault-free run by {rel} (relative)"
    );
    table_row(
        "FI-11c tree leader stalls 0.6 s with --compress topk+EF: member compresses, then back",
        1,
        1,
        took,
        0,
        &format!("status complete; rank 4 to rank 0 (compressed) and back to rank 3 (uncompressed), nothing refused; model within {rel:.1e} of the fault-free run"),
    );
}

#[test]
fn fi5_a_late_message_is_rejected_by_its_iteration_header() {
    let _g = serial();
    // Every iteration takes about 30 ms (ranks 3 and 4, one FRC group, are 30 ms slow), and rank
    // 2 is 45 ms late at iteration 3, so its message lands while rank 0 collects iteration 4.
    let slow = ["--straggler-model", "fixed:3,4:30"];
    let want = straight_w(20, &slow);
    let run = fresh("fi5");
    let args = fi_args(&run, 20, &slow);
    let (o, took) = fi_run(&args, Some("delay:2@3:45"), 60);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    assert!(
        rows.worker(WorkerMetric::ArrivalS)[[3, 1]].is_nan(),
        "rank 2 answered iteration 3 on time"
    );
    assert!(rows.column(Metric::WallS)[3] < 0.3);
    let late = per_worker(&run, "late");
    assert!(late[1] >= 1.0, "late messages {late:?}");
    // Counted as late in the row of an iteration after 3 (ranks 3 and 4 can add their own).
    let late_col = rows.column(Metric::Late);
    let after: f64 = late_col.iter().skip(4).sum();
    assert!(after >= 1.0, "late column {late_col:?}");
    // Identical to the run in which rank 2 simply was not there at 3 (FRC: its partner's message).
    assert_eq!(w_final(&run), want);
    table_row(
        "FI-5 message for i arriving at i+1",
        1,
        1,
        took,
        0,
        &format!(
            "rank 2's message of iteration 3 drained as late ({} late at iteration 4); model = fault-free run",
            late_col[4]
        ),
    );
}

#[test]
fn fi6_nan_inf_short_and_stale_messages_are_erasures() {
    let _g = serial();
    let want = straight_w(20, &[]);
    let run = fresh("fi6");
    let args = fi_args(&run, 20, &[]);
    // FRC groups are ranks {1, 2} and {3, 4}; a fault fires at its iteration or at the first
    // later one its worker computes (a busy worker skips some), so the two faults of a group are
    // planned 6 and 8 iterations apart: both members of a group rejected in one iteration would
    // leave it undecodable (seen once in CI with the faults one iteration apart).
    let (o, took) = fi_run(&args, Some("nan:2@2,inf:3@3,short:1@8,stale:4@11"), 60);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(status_of(&run), "complete");
    assert_eq!(per_worker(&run, "rejected"), vec![1.0, 1.0, 1.0, 1.0]);
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    let rejected: f64 = rows.column(Metric::Rejected).sum();
    assert_eq!(rejected, 4.0);
    let w = w_final(&run);
    assert!(w.iter().all(|v| v.is_finite()));
    assert_eq!(w, want, "a rejected message changed the model");
    let err = String::from_utf8_lossy(&o.stderr);
    // Promise 7: running as root is warned about (CI runs as root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(err.contains("running as root"), "no root warning: {err}");
    }
    for needle in [
        "non-finite values",
        "payload length",
        "but the worker was given",
    ] {
        assert!(err.contains(needle), "no '{needle}' in the log");
    }
    table_row(
        "FI-6 NaN/Inf/short/stale messages",
        4,
        4,
        took,
        0,
        "each rejected and counted per worker; model = fault-free run",
    );
}

/// A spawned `mpirun ... gradcode train` with its output in files.
struct Job {
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
}

fn spawn_job(args: &[String], tag: &str) -> Job {
    spawn_job_with(args, tag, None)
}

fn spawn_job_with(args: &[String], tag: &str, plan: Option<&str>) -> Job {
    let out = workdir().join(format!("{tag}.stdout"));
    let err = workdir().join(format!("{tag}.stderr"));
    let mut cmd = Command::new("mpirun");
    cmd.args(["--oversubscribe", "--bind-to", "none", "-np", "5"]);
    match plan {
        Some(p) => {
            cmd.args(["-x", FAULT_VAR]).env(FAULT_VAR, p);
        }
        None => {
            cmd.env_remove(FAULT_VAR);
        }
    }
    let child = cmd
        .args([BIN, "train"])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    Job { child, out, err }
}

impl Job {
    /// Wait at most `limit`; a job still running then is killed and the test fails.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let text = format!(
                    "{}{}",
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
                return (st.code(), text);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("job still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of MPI rank `rank` of this job.
    fn rank_pid(&self, rank: u32) -> Option<u32> {
        let me = std::fs::canonicalize(BIN).unwrap();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == me)
                    && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                        s.rsplit(')')
                            .next()
                            .and_then(|r| r.split_whitespace().nth(1))
                            == Some(&self.child.id().to_string())
                    })
                    && std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()))
            })
    }

    fn signal(&self, pid: u32, sig: &str) {
        assert!(try_signal(pid, sig), "kill {sig} {pid}");
    }

    /// Wait (at most 30 s) until rank 0 has logged the start of its iteration loop (its signal
    /// handlers are installed by then).
    fn wait_started(&mut self) {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.err).unwrap_or_default();
            if text.contains("workers, code") {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("job ended before starting ({st}): {text}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "job never started: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Send `sig` to `pid`; false when the process is gone.
fn try_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Arguments of the long runs (signals, kills): 300 iterations, every worker 4 ms slow (a fixed
/// schedule), a checkpoint every 10.
fn long_args(run: &Path) -> Vec<String> {
    fi_args(
        run,
        300,
        &[
            "--checkpoint-every",
            "10",
            "--straggler-model",
            "fixed:1,2,3,4:4",
        ],
    )
}

fn long_straight() -> Array1<f64> {
    straight_w(
        300,
        &[
            "--checkpoint-every",
            "10",
            "--straggler-model",
            "fixed:1,2,3,4:4",
        ],
    )
}

/// Wait until `run` holds a checkpoint (the run is under way), at most 30 s.
fn wait_for_checkpoint(run: &Path) {
    let start = Instant::now();
    while !run.join("ckpt.h5").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fi7_killed_rank0_ends_the_job_leaves_no_partial_checkpoint_and_resumes() {
    let _g = serial();
    let want = long_straight();
    let trials = trials("GRADCODE_FI7_TRIALS", 2, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(0xf17);
    let mut worst = Duration::ZERO;
    for trial in 0..trials {
        let run = fresh(&format!("fi7-{trial}"));
        let args = long_args(&run);
        let job = spawn_job(&args, &format!("fi7-{trial}"));
        wait_for_checkpoint(&run);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..800)));
        let pid = job.rank_pid(0).expect("rank 0 not found");
        job.signal(pid, "-KILL");
        let t = Instant::now();
        let (code, text) = job.wait(Duration::from_secs(30));
        worst = worst.max(t.elapsed());
        assert_ne!(code, Some(0), "{text}");
        // The newest complete generation loads without any rejected one; no temporary promoted.
        let (ck, path, reasons) = checkpoint::load(&run, &config_hash(&run)).unwrap();
        assert!(
            reasons.is_empty(),
            "a partial generation is visible: {reasons:?}"
        );
        assert!(
            ck.iteration % 10 == 0 && ck.iteration > 0,
            "{}",
            path.display()
        );
        resume_matches(&args, &run, 300, &want);
    }
    table_row(
        "FI-7 rank 0 SIGKILL: exit, no partial ckpt, resume",
        trials,
        trials,
        worst,
        0,
        "kill-to-exit; resume = straight run bit for bit",
    );
}

#[test]
fn fi8_large_messages_with_a_straggler_all_complete() {
    let _g = serial();
    // 20,000 features: 160 KB messages (rendezvous protocol, far above 64 KiB).
    let data = workdir().join("fi8.h5");
    if !data.exists() {
        let out = Command::new(BIN)
            .args(["data", "synth", "--kind", "logistic", "--rows", "800"])
            .args([
                "--features",
                "20000",
                "--sparsity",
                "0.01",
                "--seed",
                "8",
                "--out",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run = fresh("fi8");
    let mut args = fi_args(&run, 12, &["--straggler-model", "fixed:2:150"]);
    args[1] = data.display().to_string();
    let (o, took) = fi_run(&args, Some("delay:3@4:400"), 90);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(status_of(&run), "complete");
    assert_eq!(
        results::read_str_attr(&run_h5(&run), "summary", "unreconciled_workers").unwrap(),
        "[]"
    );
    let late = per_worker(&run, "late");
    assert!(
        late[1] + late[2] >= 1.0,
        "no late message was drained: {late:?}"
    );
    let rows = results::read_rows(&run_h5(&run), None).unwrap();
    let bytes = rows
        .column(Metric::BytesReceived)
        .fold(0.0f64, |a, &b| a.max(b));
    assert!(bytes > 2.0 * 160_000.0, "bytes per iteration {bytes}");
    table_row(
        "FI-8 160 KB messages + stragglers drain",
        1,
        1,
        took,
        0,
        &format!(
            "{} late messages drained; every send completed, exit 0",
            late.iter().sum::<f64>()
        ),
    );
}

#[test]
fn fi9_full_disk_at_a_checkpoint_keeps_the_previous_generation() {
    let _g = serial();
    let want = straight_w(20, &["--checkpoint-every", "5"]);
    let run = fresh("fi9");
    let args = fi_args(&run, 20, &["--checkpoint-every", "5"]);
    // The save of iteration 10 fails with ENOSPC after its temporary was created and written to.
    let (o, took) = fi_run(&args, Some("ckpt-enospc@10"), 60);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(status_of(&run), "failed");
    let summary_err = results::read_str_attr(&run_h5(&run), "summary", "error").unwrap();
    assert!(summary_err.contains("No space left"), "{summary_err}");
    let (ck, path, reasons) = checkpoint::load(&run, &config_hash(&run)).unwrap();
    assert_eq!(ck.iteration, 5, "previous generation");
    assert!(path.ends_with("ckpt.h5") && reasons.is_empty());
    assert!(
        !run.join("ckpt.prev.h5").exists(),
        "a generation was rotated"
    );
    assert!(
        ckpt_temps(&run).is_empty(),
        "temporary left: {:?}",
        ckpt_temps(&run)
    );
    // results hold exactly the iterations before the failure; resume continues from 5.
    assert_eq!(results::read_rows(&run_h5(&run), None).unwrap().len(), 10);
    resume_matches(&args, &run, 20, &want);
    table_row(
        "FI-9 ENOSPC at checkpoint write",
        1,
        1,
        took,
        0,
        "exit 1, status failed, error recorded; generation 5 intact, no temp; resume = straight",
    );
}

#[test]
fn bi1_reference_path_validates_in_a_child_before_opening_the_dataset() {
    let _g = serial();
    // `train --reference` runs the same child validator as the MPI path: the libhdf5 segfault
    // fixture is refused with exit 2 and no results file, instead of crashing the process.
    let segv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hdf5_segfault.h5");
    let out = fresh("bi1-reference");
    // Three iterations of the serial reference on `data` into `out`, under a 60 s timeout.
    let reference = |data: &Path, out: &Path| {
        Command::new("timeout")
            .args(["-k", "2", "60", BIN, "train", "--reference"])
            .args(["--model", "logistic", "--iterations", "3", "--data"])
            .arg(data)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let t = Instant::now();
    let o = reference(&segv, &out);
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("libhdf5 crashed or exceeded limits on this file: refused"),
        "{err}"
    );
    assert!(!out.join("run.h5").exists());
    // A valid file still trains.
    let good = fresh("bi1-reference-ok");
    let o = reference(&fi_data(), &good);
    assert!(o.status.success(), "{}", output_text(&o));
    table_row(
        "BI-1 reference path: child validator first",
        2,
        2,
        took,
        0,
        "segfault fixture refused (exit 2, no run.h5); valid file trains",
    );
}

#[test]
fn cr5_sigterm_leaves_no_partial_generation_and_restart_resumes() {
    let _g = serial();
    let want = long_straight();
    let trials = trials("GRADCODE_CR5_TRIALS", 2, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(0xc5);
    let (mut worst, mut codes) = (Duration::ZERO, Vec::new());
    for trial in 0..trials {
        let run = fresh(&format!("cr5-{trial}"));
        let args = long_args(&run);
        let mut job = spawn_job(&args, &format!("cr5-{trial}"));
        job.wait_started();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..1200)));
        // SIGTERM to mpirun, as Slurm's scancel or a node shutdown would.
        let pid = job.child.id();
        let sent = try_signal(pid, "-TERM");
        let t = Instant::now();
        let (code, text) = job.wait(Duration::from_secs(30));
        worst = worst.max(t.elapsed());
        codes.push(code);
        if sent && code != Some(0) {
            // No partial generation visible: every generation present verifies.
            assert!(ckpt_temps(&run).iter().all(|n| !n.ends_with(".h5")));
            let hash = config_hash(&run);
            for p in checkpoint::generations(&run) {
                if p.exists() {
                    checkpoint::read(&p, &hash).unwrap_or_else(|e| panic!("{e}\n{text}"));
                }
            }
        }
        let (ck, _, reasons) = checkpoint::load(&run, &config_hash(&run)).unwrap();
        assert!(reasons.is_empty(), "{reasons:?}");
        assert!(ck.iteration > 0);
        resume_matches(&args, &run, 300, &want);
    }
    table_row(
        "CR-5 SIGTERM: no partial generation, resume",
        trials,
        trials,
        worst,
        0,
        &format!("signal-to-exit; exit codes {codes:?}; resume = straight run"),
    );
}

#[test]
fn cr6_kill9_while_appending_results_is_recovered_losing_at_most_one_flush() {
    let _g = serial();
    let trials = trials("GRADCODE_CR6_TRIALS", 2, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(0xc6);
    let mut worst = Duration::ZERO;
    let mut kept = Vec::new();
    for trial in 0..trials {
        let run = fresh(&format!("cr6-{trial}"));
        let args = fi_args(
            &run,
            100_000,
            &["--log-every", "1", "--straggler-model", "fixed:1:2"],
        );
        let mut job = spawn_job(&args, &format!("cr6-{trial}"));
        job.wait_started();
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..3000)));
        // kill -9 of every rank, rank 0 (the writer) first, as a node failure or OOM killer would.
        for r in 0..5 {
            if let Some(pid) = job.rank_pid(r) {
                try_signal(pid, "-KILL");
            }
        }
        let err_path = job.err.clone();
        let (code, _) = job.wait(Duration::from_secs(30));
        assert_ne!(code, Some(0));
        let log = std::fs::read_to_string(&err_path).unwrap();
        // Every iteration rank 0 reported (it logs after appending the row), with the log
        // timestamp (`[YYYY-MM-DDThh:mm:ss.mmmZ ...`) in seconds of the day.
        let logged: Vec<(f64, usize)> = log
            .lines()
            .filter_map(|l| {
                let it = l.split("[rank 0] it ").nth(1)?.split('/').next()?.trim();
                let ts = l.get(12..24)?;
                let secs = ts
                    .split(':')
                    .try_fold(0.0, |acc, p| p.parse::<f64>().ok().map(|v| acc * 60.0 + v))?;
                Some((secs, it.parse().ok()?))
            })
            .collect();
        let &(t_last, last) = logged
            .iter()
            .max_by_key(|(_, it)| *it)
            .expect("no iteration logged");
        // Rows are flushed at most FLUSH_INTERVAL after they are appended: every iteration
        // logged more than that (plus scheduling slack) before the last line must be on disk.
        let slack = results::FLUSH_INTERVAL.as_secs_f64() + 0.5;
        let must_have = logged
            .iter()
            .filter(|(t, _)| *t <= t_last - slack)
            .map(|&(_, it)| it + 1)
            .max()
            .unwrap_or(1);
        let file = run_h5(&run);
        assert_eq!(status_of(&run), "running");
        let before = results::read_rows(&file, None).unwrap().len();
        // The documented recovery: `gradcode recover RUN_DIR`.
        let t = Instant::now();
        let o = Command::new("timeout")
            .args(["-k", "2", "60", BIN, "recover"])
            .arg(&run)
            .output()
            .unwrap();
        worst = worst.max(t.elapsed());
        assert!(o.status.success(), "{}", output_text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("{before} complete iterations"))
        );
        // Loss at most one flush interval: every row older than that is there, none invented.
        assert!(
            before >= must_have && before <= last + 2,
            "{before} rows recovered; iteration {last} was logged last, {must_have} rows were due"
        );
        // A consistent copy that plain readers open (no SWMR mode, no h5clear).
        let f = hdf5::File::open(&file).expect("recovered file opens normally");
        drop(f);
        assert_eq!(status_of(&run), "recovered");
        let rows = results::read_rows(&file, None).unwrap();
        assert_eq!(rows.len(), before);
        let it = rows.column(Metric::Iteration);
        assert!(it.iter().enumerate().all(|(i, &v)| v == i as f64));
        assert!(run.join("run.h5.killed").exists(), "original not kept");
        let rep = Command::new(BIN).arg("report").arg(&run).output().unwrap();
        assert!(rep.status.success(), "{}", output_text(&rep));
        assert!(String::from_utf8_lossy(&rep.stdout).contains("recovered"));
        // A second recover has nothing to do.
        let o = Command::new(BIN).arg("recover").arg(&run).output().unwrap();
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to recover"));
        kept.push(before);
    }
    table_row(
        "CR-6 kill -9 while appending results",
        trials,
        trials,
        worst,
        0,
        &format!("`gradcode recover` kept {kept:?} rows, each >= every iteration logged over 1.5 s before the kill"),
    );
}

#[test]
fn cr7_repeated_requeue_equals_one_uninterrupted_run() {
    let _g = serial();
    let want = long_straight();
    // Restart counts: quick 3 and 1; long 0, 1, 2, 3.
    let counts: Vec<usize> = if long() { vec![0, 1, 2, 3] } else { vec![3, 1] };
    let mut rng = ChaCha8Rng::seed_from_u64(0xc7);
    let mut worst = Duration::ZERO;
    let mut interrupted = 0;
    for (trial, &restarts) in counts.iter().enumerate() {
        let run = fresh(&format!("cr7-{trial}"));
        let args = long_args(&run);
        for k in 0..restarts {
            let mut a = args.clone();
            if k > 0 {
                a.push("--resume".into());
            }
            let mut job = spawn_job(&a, &format!("cr7-{trial}-{k}"));
            job.wait_started();
            std::thread::sleep(Duration::from_millis(rng.gen_range(100..900)));
            // USR1 to mpirun (forwarded to every rank), as Slurm's --signal=B:USR1 does.
            let sent = try_signal(job.child.id(), "-USR1");
            let t = Instant::now();
            let (code, text) = job.wait(Duration::from_secs(30));
            worst = worst.max(t.elapsed());
            // Finished before the signal landed. A USR1 that reaches mpirun during its own
            // teardown, after the run completed, kills it by the signal (no exit code): the file
            // is the verdict then, and the checks below compare it with the straight run.
            if code == Some(0) || (code.is_none() && status_of(&run) == "complete") {
                break;
            }
            assert!(sent, "{text}");
            assert_eq!(code, Some(75), "{text}");
            assert_eq!(status_of(&run), "interrupted");
            interrupted += 1;
        }
        if run.join("ckpt.h5").exists() && status_of(&run) != "complete" {
            resume_matches(&args, &run, 300, &want);
        } else if restarts == 0 {
            let (o, _) = fi_run(&args, None, 120);
            assert!(o.status.success(), "{}", output_text(&o));
        }
        assert_eq!(status_of(&run), "complete");
        assert_eq!(w_final(&run), want);
        let rows = results::read_rows(&run_h5(&run), None).unwrap();
        assert_eq!(rows.len(), 300);
        assert!(rows
            .column(Metric::Iteration)
            .iter()
            .enumerate()
            .all(|(i, &v)| v == i as f64));
    }
    table_row(
        "CR-7 repeated requeue (USR1 at random times)",
        counts.len(),
        counts.len(),
        worst,
        0,
        &format!(
            "restarts {counts:?}, {interrupted} interruptions; w_final and rows = straight run"
        ),
    );
}

#[test]
fn bi4_schema_violations_are_refused_naming_the_field() {
    let _g = serial();
    let x = |f: &hdf5::File, a: Array2<f64>| {
        f.new_dataset_builder().with_data(&a).create("X").unwrap();
    };
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "integer dtype",
            build("bi4-dtype", |f, _| {
                f.new_dataset_builder()
                    .with_data(&Array2::<i32>::zeros((4, 2)))
                    .create("X")
                    .unwrap();
                y_of(f, 4);
            }),
            "/X has datatype",
        ),
        (
            "rank 1 X",
            build("bi4-rank", |f, _| {
                f.new_dataset_builder()
                    .with_data(&Array1::<f64>::zeros(4))
                    .create("X")
                    .unwrap();
                y_of(f, 4);
            }),
            "/X has rank 1 (expected 2)",
        ),
        (
            "rows(X) != rows(y)",
            build("bi4-rows", |f, _| {
                x(f, Array2::zeros((4, 2)));
                y_of(f, 3);
            }),
            "/y has 3 entries but /X has 4 rows",
        ),
        (
            "NaN feature",
            build("bi4-nan", |f, _| {
                let mut a = Array2::zeros((4, 2));
                a[[2, 1]] = f64::NAN;
                x(f, a);
                y_of(f, 4);
            }),
            "non-finite value at row 2",
        ),
        (
            "label out of range",
            build("bi4-label", |f, _| {
                x(f, Array2::zeros((4, 2)));
                f.new_dataset_builder()
                    .with_data(&Array1::from(vec![1.0, -1.0, 3.0, 1.0]))
                    .create("y")
                    .unwrap();
            }),
            "label 3 at row 2",
        ),
        (
            "empty",
            build("bi4-empty", |f, _| {
                x(f, Array2::zeros((0, 2)));
                y_of(f, 0);
            }),
            "/X has no rows",
        ),
    ];
    let (mut worst, mut peak) = (Duration::ZERO, 0);
    for (what, file, want) in &cases {
        let v = validate(file, &[]);
        println!("BI-4 {what}: {:?} {}", v.code, v.stderr.trim());
        assert_eq!(v.code, Some(2), "{what}: {}", v.stderr);
        assert!(
            v.stderr.contains(want),
            "{what}: wanted '{want}' in {}",
            v.stderr
        );
        assert_eq!(v.stderr.trim().lines().count(), 1, "{what}: one error line");
        assert!(!v.stderr.contains("panicked"));
        worst = worst.max(v.wall);
        peak = peak.max(v.peak_kib);
    }
    // `data inspect` describes a file whose layout is readable, then gives the same verdict.
    for (what, file, want) in cases
        .iter()
        .filter(|c| c.0 == "NaN feature" || c.0 == "label out of range")
    {
        let o = Command::new(BIN)
            .arg("data")
            .arg("inspect")
            .arg(file)
            .output()
            .unwrap();
        let line = common::assert_one_line_error(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {line}");
        assert!(line.contains(want), "{what}: wanted '{want}' in {line}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("train: 4 x 2 (dense)"), "{what}: {out}");
        assert!(out.contains("validation: INVALID"), "{what}: {out}");
    }
    table_row(
        "BI-4 schema violations name the field",
        cases.len(),
        cases.len(),
        worst,
        peak,
        "dtype, rank, rows(X) != rows(y), NaN feature, label out of range, empty",
    );
}

#[test]
fn bi7_config_and_cli_errors_are_refused_before_mpi_traffic_on_every_rank() {
    let _g = serial();
    let data = fi_data().display().to_string();
    let file_out = workdir().join("bi7-a-file");
    std::fs::write(&file_out, b"not a folder").unwrap();
    let file_out = file_out.display().to_string();
    let cases: Vec<(usize, Vec<&str>, Option<&str>, &str)> = vec![
        (
            5,
            vec!["--code", "frc", "-s", "4"],
            None,
            "smaller than the number of workers",
        ),
        (
            5,
            vec!["--code", "frc", "-s", "1", "--deadline-ms=0"],
            None,
            "--deadline-ms",
        ),
        (
            5,
            vec!["--code", "frc", "-s", "1", "--deadline-ms=-5"],
            None,
            "--deadline-ms",
        ),
        (1, vec!["--code", "frc", "-s", "1"], None, "mpirun -np N+1"),
        (
            5,
            vec!["--code", "frc", "-s", "1", "--out", &file_out],
            None,
            "is a file",
        ),
        (
            5,
            vec!["--code", "frc", "-s", "1"],
            Some("kill:7@1"),
            "rank 7 is not a worker",
        ),
        (
            5,
            vec!["--code", "frc", "-s", "1"],
            Some("boom:1@1"),
            "GRADCODE_FAULT_PLAN",
        ),
    ];
    let mut worst = Duration::ZERO;
    for (np, extra, plan, needle) in &cases {
        let run = fresh("bi7");
        let run_s = run.display().to_string();
        let mut args = vec!["--data", data.as_str(), "--iterations", "3"];
        if !extra.contains(&"--out") {
            args.extend(["--out", run_s.as_str()]);
        }
        args.extend(extra.iter());
        let envs: Vec<(&str, &str)> = plan.map(|p| (FAULT_VAR, p)).into_iter().collect();
        let t = Instant::now();
        let o = mpirun_train(*np, &args, &envs, 60);
        let took = t.elapsed();
        worst = worst.max(took);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", output_text(&o));
        assert_one_mpi_error(&o, needle);
        assert!(!run.join("run.h5").exists(), "{args:?} wrote results");
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
    }
    table_row(
        "BI-7 config/CLI errors, every rank exits",
        cases.len(),
        cases.len(),
        worst,
        0,
        "n <= s, deadline <= 0, world size, --out a file, bad fault plan: exit 2, one error line",
    );
}

#[test]
fn bi8_checkpoint_from_another_configuration_is_refused() {
    let _g = serial();
    let run = fresh("bi8");
    let args = fi_args(&run, 10, &["--checkpoint-every", "5"]);
    let (o, _) = fi_run(&args, None, 60);
    assert!(o.status.success(), "{}", output_text(&o));
    let w = w_final(&run);
    // The same run folder resumed with another learning rate, and with another seed.
    let mut worst = Duration::ZERO;
    for (flag, value) in [("--lr", "0.5"), ("--seed", "6")] {
        let a = fi_args(
            &run,
            20,
            &["--checkpoint-every", "5", flag, value, "--resume"],
        );
        let (o, took) = fi_run(&a, None, 60);
        worst = worst.max(took);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
        assert!(err.contains("another configuration"), "{err}");
        // Nothing overwritten.
        assert_eq!(status_of(&run), "complete");
        assert_eq!(w_final(&run), w);
        assert_eq!(results::read_rows(&run_h5(&run), None).unwrap().len(), 10);
    }
    table_row(
        "BI-8 checkpoint of another configuration",
        2,
        2,
        worst,
        0,
        "other --lr / --seed: refused by the config hash (exit 2), run folder untouched",
    );
}

/// Issue 24 item 1 (RELIABILITY BI-9): a LIBSVM index of 2·10⁹ passes validation, but a run
/// over it would need a 16 GB parameter vector per buffer: refused before any allocation, one
/// error line naming the features and the bytes, exit 2, no result folder — serial and MPI.
#[test]
fn bi9_a_run_too_big_for_memory_is_refused_before_allocating() {
    let _g = serial();
    let t0 = Instant::now();
    let dir = workdir().join("huge");
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("huge.libsvm");
    let mut lines = String::new();
    for i in 0..8 {
        lines.push_str(&format!(
            "{} 3:1 {}:1\n",
            if i % 2 == 0 { "+1" } else { "-1" },
            5 + i
        ));
    }
    lines.push_str("+1 3:1 2000000000:1\n");
    std::fs::write(&text, lines).unwrap();
    let h5 = dir.join("huge.h5");
    let o = gradcode_cmd(&[
        "data",
        "convert",
        "--format",
        "libsvm",
        "--input",
        &text.display().to_string(),
        "--out",
        &h5.display().to_string(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let o = gradcode_cmd(&["data", "validate", &h5.display().to_string()]);
    assert!(o.status.success(), "a valid dataset: {}", output_text(&o));
    let out = dir.join("run-ref");
    let o = gradcode_cmd(&[
        "train",
        "--reference",
        "--data",
        &h5.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let line = the_error_line(&o);
    assert!(
        line.contains("2000000000 features") && line.contains("GB"),
        "{line}"
    );
    assert!(!out.exists(), "a refused run left {}", out.display());
    let out = dir.join("run-mpi");
    let o = common::mpirun(
        3,
        &[
            "train",
            "--out",
            &out.display().to_string(),
            "--data",
            &h5.display().to_string(),
        ],
        60,
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_one_mpi_error(&o, "2000000000 features");
    assert!(!out.exists(), "a refused run left {}", out.display());
    // A budget the run does fit passes the same check; one it does not is named.
    let o = gradcode_cmd(&[
        "train",
        "--reference",
        "--data",
        &synth("bi9.h5", &[]).display().to_string(),
        "--iterations",
        "2",
        "--max-memory-mb",
        "0.001",
        "--out",
        &dir.join("tiny").display().to_string(),
    ]);
    let line = the_error_line(&o);
    assert!(line.contains("--max-memory-mb 0.001"), "{line}");
    table_row(
        "BI-9 run too big for memory",
        3,
        3,
        t0.elapsed(),
        0,
        "2e9-feature LIBSVM: serial and MPI refused before allocating (exit 2, bytes named, no run folder); --max-memory-mb honoured",
    );
}

fn gradcode_cmd(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}
