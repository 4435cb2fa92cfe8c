//! Helpers shared by the integration tests: run the binary (alone or under `mpirun` with a
//! timeout), read its output, keep MPI jobs one at a time, and check the one-line error contract
//! (non-zero exit, exactly one `gradcode: error: ...` line, no panic).
// Each test binary uses a subset of these.
#![allow(dead_code)]

pub mod hostile;
#[allow(unused_imports)] // not every test binary writes HDF5 files
pub use hostile::h5_write;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gradcode");

/// Run `gradcode ARGS` to completion (no backtraces, so a panic shows as "panicked").
pub fn gradcode(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run gradcode")
}

/// Bytes of stdout or stderr as text.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A failure with exactly one stderr line `gradcode: error: ...` and no panic; returns that line.
pub fn assert_one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure: {}", text(&o.stdout));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("gradcode: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// One MPI job at a time: the machine has few cores and every job oversubscribes them.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// This test binary's scratch folder, `$TMPDIR/gradcode-<test binary>-<pid>`, created once.
pub fn workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!(
            "gradcode-{}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        std::fs::create_dir_all(&d).expect("create the test work folder");
        d
    })
}

/// `gradcode data synth --kind logistic` of 2000 training and 200 test rows with 20 features
/// into this test binary's work folder as `synth-SEED.h5` (made once per seed); the path.
pub fn synth_logistic(seed: u64) -> PathBuf {
    let p = workdir().join(format!("synth-{seed}.h5"));
    if p.is_file() {
        return p;
    }
    let o = Command::new(BIN)
        .args(["data", "synth", "--kind", "logistic", "--rows", "2000"])
        .args(["--features", "20", "--test-rows", "200", "--seed"])
        .arg(seed.to_string())
        .arg("--out")
        .arg(&p)
        .output()
        .expect("run gradcode data synth");
    assert!(o.status.success(), "{}", output_text(&o));
    p
}

/// Exit status, stdout and stderr of a finished process, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// `timeout -k 5 T mpirun --oversubscribe --bind-to none -np NP [-x VAR ...] gradcode`, with
/// root allowed, one BLAS thread, `RUST_LOG=info`, stdin closed and `envs` exported to every
/// rank; the caller appends the subcommand and its arguments. Under `make mpich` the `mpirun`
/// found first is `tests/mpich/mpirun` (hydra, Open MPI-only flags dropped).
pub fn mpirun_command(np: usize, timeout_s: u64, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &timeout_s.to_string(), "mpirun"]);
    mpirun_setup(&mut cmd, np, envs);
    cmd.env("RUST_LOG", "info");
    cmd
}

/// `mpirun --oversubscribe --bind-to none -np NP gradcode` itself, not under `timeout` (a
/// signal to `timeout` would end it; mpirun forwards USR1 to the ranks), with root allowed, one
/// BLAS thread, stdin closed and the output piped; the caller appends the subcommand and bounds
/// the wait with [`wait_bounded`].
pub fn mpirun_direct(np: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    mpirun_setup(&mut cmd, np, &[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// The launch flags, `-x` of `envs`, the binary and the environment every MPI test run has.
fn mpirun_setup(cmd: &mut Command, np: usize, envs: &[(&str, &str)]) {
    cmd.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
        &np.to_string(),
    ]);
    for (k, _) in envs {
        cmd.args(["-x", k]);
    }
    cmd.arg(BIN)
        .envs(envs.iter().copied())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdin(Stdio::null());
}

/// Wait for `child` at most `bound`, then kill it (a hang fails the test instead of CI).
pub fn wait_bounded(mut child: std::process::Child, bound: std::time::Duration) -> Output {
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > bound {
            let _ = child.kill();
            panic!("the job did not end within {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Run `mpirun ... gradcode ARGS` to completion; a timeout (exit 124) fails the test.
pub fn mpirun<S: AsRef<OsStr>>(np: usize, args: &[S], timeout_s: u64) -> Output {
    let out = mpirun_command(np, timeout_s, &[])
        .args(args)
        .output()
        .expect("run mpirun");
    assert_ne!(
        out.status.code(),
        Some(124),
        "mpirun timed out after {timeout_s} s: {}",
        output_text(&out)
    );
    out
}

/// An MPI job that refused its input: a failure, exactly one `gradcode: error: ...` line on
/// stderr (from rank 0; the other ranks exit quietly) containing `expect`, and no panic.
pub fn assert_one_mpi_error(o: &Output, expect: &str) {
    assert!(!o.status.success(), "{expect}: {}", output_text(o));
    let err = text(&o.stderr);
    assert_eq!(
        err.matches("gradcode: error:").count(),
        1,
        "one error line expected for {expect}: {}",
        output_text(o)
    );
    assert!(err.contains(expect), "{expect}: {}", output_text(o));
    assert!(!err.contains("panicked"), "{}", output_text(o));
}

/// A Python interpreter that imports every module of `modules` (`python3` on PATH, else the
/// system's `/usr/bin/python3`: `make test-deps` installs Debian's python3-h5py and
/// python3-pandas, which a pyenv or conda `python3` first on PATH may lack). `None` prints why
/// the caller skips, except under CI, where the set-up installed them and a miss is a failure.
pub fn python_with(modules: &str) -> Option<&'static str> {
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if python.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no python3 imports {modules} (make test-deps installs python3-h5py python3-pandas)"
        );
        eprintln!(
            "skipped: no python3 with {modules} (make test-deps, or pip install h5py pandas)"
        );
    }
    python
}

/// A `python3` that imports h5py and pandas ([`python_with`]).
pub fn python_with_h5py() -> Option<&'static str> {
    python_with("h5py, pandas")
}

/// A failure whose stderr holds exactly one `gradcode: error: ...` line (log lines may come
/// before it) and no panic; returns that line.
pub fn the_error_line(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure: {}", output_text(o));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("gradcode: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", output_text(o));
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// An uncoded profiling run under `exp:20` (`np` ranks, `iterations`, synthetic logistic data of
/// `seed`) in `workdir()/profile`, for `tune` and `plan`; its run.h5.
pub fn uncoded_profile(np: usize, iterations: u64, seed: u64) -> PathBuf {
    uncoded_run(
        np,
        iterations,
        seed,
        "profile",
        &["--straggler-model", "exp:20"],
    )
}

/// An uncoded minibatch profiling run (`--batch B` rows per partition, `--lr 0.5`, no injected
/// delays) with `np` ranks on `synth_logistic(seed)` into workdir/profile-batch; its run.h5.
/// Every iteration decodes from all workers, so it records the gradient noise scale.
pub fn uncoded_batch_profile(np: usize, batch: usize, iterations: u64, seed: u64) -> PathBuf {
    let batch = batch.to_string();
    let extra = ["--batch", &batch, "--lr", "0.5"];
    uncoded_run(np, iterations, seed, "profile-batch", &extra)
}

/// `mpirun -np NP gradcode train --code uncoded` on `synth_logistic(seed)` with `extra` flags
/// into workdir/NAME (under [`serial`]); its run.h5.
fn uncoded_run(np: usize, iterations: u64, seed: u64, name: &str, extra: &[&str]) -> PathBuf {
    let _g = serial();
    let data = synth_logistic(seed);
    let out = workdir().join(name);
    let iterations = iterations.to_string();
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--code",
        "uncoded",
    ];
    args.extend_from_slice(extra);
    args.extend(["--iterations", &iterations, "--out", out.to_str().unwrap()]);
    let o = mpirun(np, &args, 120);
    assert!(o.status.success(), "{}", output_text(&o));
    out.join("run.h5")
}
