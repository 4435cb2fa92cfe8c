//! The resource-limited validator child (RELIABILITY BI-1, SEC-3): [`run_child`] and
//! [`run_matrix_child`] start `gradcode data validate --child FILE` under [`Limits`] (address
//! space, CPU, no core dumps, no file writes, 64 descriptors, a wall clock, death with the
//! parent, no HDF5 filter plugins), reap it and classify how it ended ([`Outcome`], [`Report`]).
//!
//! Not done here: the checks the child runs (see [`super::check`], [`super::check_matrix`]).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::io::matrix::MatrixSource;
use crate::io::IoError;

/// Most bytes kept of each of the child's output streams.
const MAX_CAPTURE: usize = 64 << 10;

/// Environment variable: wall-clock limit of the validator child in milliseconds.
pub const ENV_TIMEOUT_MS: &str = "GRADCODE_VALIDATE_TIMEOUT_MS";
/// Environment variable: address-space limit of the validator child in MiB.
pub const ENV_MEMORY_MB: &str = "GRADCODE_VALIDATE_MEMORY_MB";

/// Resource limits of the validator child.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `RLIMIT_AS` in bytes.
    pub address_space: u64,
    /// `RLIMIT_CPU` in seconds (soft; `SIGKILL` one second later): one second above the wall
    /// clock, so a spinning child is stopped by the wall clock (a deterministic message) and the
    /// CPU limit is the backstop.
    pub cpu_s: u64,
    /// Wall-clock time before the child is killed.
    pub wall: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            address_space: 2 << 30,
            cpu_s: 61,
            wall: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The defaults, overridden by [`ENV_TIMEOUT_MS`] and [`ENV_MEMORY_MB`] when set (a value
    /// that does not parse is ignored with a warning).
    pub fn from_env() -> Limits {
        let mut l = Limits::default();
        let num = |name: &str| -> Option<u64> {
            let v = std::env::var(name).ok()?;
            match v.trim().parse::<u64>() {
                Ok(x) if x > 0 => Some(x),
                _ => {
                    log::warn!("ignoring {name}={v}: expected a positive integer");
                    None
                }
            }
        };
        if let Some(ms) = num(ENV_TIMEOUT_MS) {
            l.wall = Duration::from_millis(ms);
            l.cpu_s = l.cpu_s.min(ms.div_ceil(1000).max(1) + 1);
        }
        if let Some(mb) = num(ENV_MEMORY_MB) {
            l.address_space = mb.saturating_mul(1 << 20);
        }
        l
    }

    fn describe(&self) -> String {
        format!(
            "limits: {} MiB address space, {} s CPU, {:.3} s wall clock",
            self.address_space >> 20,
            self.cpu_s,
            self.wall.as_secs_f64()
        )
    }
}

/// What the validator child decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit 0: the file passed every check.
    Valid,
    /// Exit 2: the file was rejected; the child's error line (without `gradcode: error: `).
    Invalid(String),
    /// Killed by a signal, timed out, or any other exit: why.
    Refused(String),
}

/// The outcome with what the child cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub outcome: Outcome,
    /// Wall-clock time from spawn to exit (or kill).
    pub elapsed: Duration,
    /// Peak resident memory of the child in KiB (`ru_maxrss`).
    pub peak_rss_kib: u64,
    /// The signal that ended the child, if any.
    pub signal: Option<i32>,
    /// Whether the wall-clock limit killed it.
    pub timed_out: bool,
    /// What the child printed on stdout (at most 64 KiB).
    pub stdout: String,
}

impl Report {
    /// One machine-readable line (for tests and `--stats`).
    pub fn stats_line(&self) -> String {
        let outcome = match self.outcome {
            Outcome::Valid => "valid",
            Outcome::Invalid(_) => "invalid",
            Outcome::Refused(_) => "refused",
        };
        format!(
            "stats: outcome={outcome} elapsed_ms={:.1} peak_rss_kib={} signal={} timed_out={}",
            self.elapsed.as_secs_f64() * 1e3,
            self.peak_rss_kib,
            self.signal.map_or("none".to_string(), |s| s.to_string()),
            self.timed_out
        )
    }

    /// `Ok` for a valid file, otherwise the error to report (the child's message, or "refused").
    pub fn into_result(self, path: &Path) -> Result<(), IoError> {
        match self.outcome {
            Outcome::Valid => Ok(()),
            Outcome::Invalid(msg) => {
                let prefix = format!("{}: ", path.display());
                let detail = msg.strip_prefix(&prefix).unwrap_or(&msg).to_string();
                Err(IoError::layout(path, detail))
            }
            Outcome::Refused(why) => Err(IoError::layout(
                path,
                format!("libhdf5 crashed or exceeded limits on this file: refused ({why})"),
            )),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Reads at most [`MAX_CAPTURE`] bytes (keeps draining so the child never blocks on a full pipe).
fn capture(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_CAPTURE.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// `exe data validate --child FILE` with the limits applied between fork and exec.
fn limited_command(exe: &Path, file: &Path, limits: &Limits) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("data")
        .arg("validate")
        .arg("--child")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("HDF5_PLUGIN_PRELOAD", "::")
        .env(
            "HDF5_PLUGIN_PATH",
            "/nonexistent/gradcode-hdf5-plugins-disabled",
        )
        .env("RUST_BACKTRACE", "0");
    let (address_space, cpu_s) = (limits.address_space, limits.cpu_s);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (close_range, getrlimit, fcntl, setrlimit, prctl) on values captured by copy; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, soft: u64, hard: u64| -> std::io::Result<()> {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(res, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            // The parent's other descriptors (an HDF5 file it holds open, with its lock) must
            // not live on in the child: a lock the child inherits makes the parent's next
            // open of that file fail. Mark them close-on-exec (std's own pipes already are).
            // One syscall where the kernel has close_range (Linux 5.11), else one fcntl per
            // descriptor number below the limit.
            let all_cloexec = libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) == 0;
            if !all_cloexec {
                let mut open_max = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut open_max) == 0 {
                    open_max.rlim_cur.min(65_536) as libc::c_int
                } else {
                    1024
                };
                for fd in 3..top {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            set(libc::RLIMIT_AS, address_space, address_space)?;
            set(libc::RLIMIT_CPU, cpu_s, cpu_s.saturating_add(1))?;
            set(libc::RLIMIT_CORE, 0, 0)?;
            set(libc::RLIMIT_FSIZE, 0, 0)?;
            set(libc::RLIMIT_NOFILE, 64, 64)?;
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Run `exe data validate --child FILE` under `limits` and classify how it ended.
///
/// `Err` only when the child cannot be started at all.
pub fn run_child(exe: &Path, file: &Path, limits: &Limits) -> Result<Report, IoError> {
    run_limited(limited_command(exe, file, limits), exe, file, limits)
}

/// [`run_child`] for a user's matrix: the child checks `src` as a matrix
/// ([`super::check_matrix`]), told so by its hidden `--matrix OBJECT` argument ("" = find it).
pub fn run_matrix_child(
    exe: &Path,
    src: &MatrixSource,
    limits: &Limits,
) -> Result<Report, IoError> {
    let mut cmd = limited_command(exe, &src.file, limits);
    cmd.arg("--matrix").arg(src.object.as_deref().unwrap_or(""));
    run_limited(cmd, exe, &src.file, limits)
}

/// How the child ended: its wait status, resource usage, whether the wall clock killed it, and
/// how long it ran.
struct Ended {
    status: libc::c_int,
    usage: libc::rusage,
    timed_out: bool,
    elapsed: Duration,
}

/// Spawn `cmd`, kill it at the wall-clock limit, reap it and classify how it ended.
fn run_limited(
    mut cmd: Command,
    exe: &Path,
    file: &Path,
    limits: &Limits,
) -> Result<Report, IoError> {
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        IoError::layout(
            file,
            format!("cannot start the dataset validator {} ({e})", exe.display()),
        )
    })?;
    let out = child.stdout.take().map(capture);
    let err = child.stderr.take().map(capture);
    let ended = wait_limited(&child, file, limits, start);
    drop(child);
    let ended = ended?;
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let signal = libc::WIFSIGNALED(ended.status).then(|| libc::WTERMSIG(ended.status));
    Ok(Report {
        outcome: classify(&ended, signal, &stderr, limits),
        elapsed: ended.elapsed,
        peak_rss_kib: ended.usage.ru_maxrss.max(0) as u64,
        signal,
        timed_out: ended.timed_out,
        stdout,
    })
}

/// Reap `child`, killing it once `limits.wall` has passed since `start`.
fn wait_limited(
    child: &std::process::Child,
    file: &Path,
    limits: &Limits,
    start: Instant,
) -> Result<Ended, IoError> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: wait4 on our own child's pid with valid pointers. Once it has reaped the
        // child, `child` is never waited on or killed again (only dropped, which does neither).
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(IoError::layout(
                file,
                format!("waiting for the dataset validator failed ({e})"),
            ));
        }
        if !timed_out && start.elapsed() >= limits.wall {
            timed_out = true;
            // SAFETY: the child has not been reaped yet (wait4 returned 0), so pid is ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(if timed_out { 1 } else { 3 }));
    }
    Ok(Ended {
        status,
        usage,
        timed_out,
        elapsed: start.elapsed(),
    })
}

/// The outcome of an ended child from its exit and its last `gradcode: error: ` line.
fn classify(ended: &Ended, signal: Option<i32>, stderr: &str, limits: &Limits) -> Outcome {
    let (status, timed_out, elapsed) = (ended.status, ended.timed_out, ended.elapsed);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let last_error = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("gradcode: error: "))
        .map(|l| l.trim().to_string());
    if timed_out {
        Outcome::Refused(format!(
            "the validator was still running after {:.3} s and was killed; {}",
            limits.wall.as_secs_f64(),
            limits.describe()
        ))
    } else {
        match (code, signal) {
            (Some(0), _) => Outcome::Valid,
            (Some(2), _) if last_error.is_some() => {
                Outcome::Invalid(last_error.unwrap_or_default())
            }
            (_, Some(sig)) => Outcome::Refused(format!(
                "the validator was killed by {} ({sig}) after {:.3} s; {}",
                signal_name(sig),
                elapsed.as_secs_f64(),
                limits.describe()
            )),
            (code, _) => {
                let tail: String = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect();
                Outcome::Refused(format!(
                    "the validator exited with code {} ({}); {}",
                    code.map_or("?".to_string(), |c| c.to_string()),
                    if tail.is_empty() { "no message" } else { &tail },
                    limits.describe()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn fake(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("fake-gradcode");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn quick() -> Limits {
        Limits {
            address_space: 1 << 30,
            cpu_s: 5,
            wall: Duration::from_secs(5),
        }
    }

    #[test]
    fn exit_codes_map_to_outcomes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.h5");
        let exe = fake(d.path(), "echo fine; exit 0");
        let r = run_child(&exe, &f, &quick()).unwrap();
        assert_eq!(r.outcome, Outcome::Valid);
        assert_eq!(r.stdout, "fine\n");
        assert!(r.clone().into_result(&f).is_ok());

        let exe = fake(
            d.path(),
            &format!(
                "echo noise >&2; echo 'gradcode: error: {}: /X has rank 1 (expected 2)' >&2; exit 2",
                f.display()
            ),
        );
        let r = run_child(&exe, &f, &quick()).unwrap();
        assert_eq!(
            r.outcome,
            Outcome::Invalid(format!("{}: /X has rank 1 (expected 2)", f.display()))
        );
        let e = r.into_result(&f).unwrap_err().to_string();
        assert_eq!(e, format!("{}: /X has rank 1 (expected 2)", f.display()));

        // Exit 2 without an error line, or any other code: refused, never "valid".
        for body in ["exit 2", "echo boom >&2; exit 101", "exit 1"] {
            let exe = fake(d.path(), body);
            let r = run_child(&exe, &f, &quick()).unwrap();
            assert!(matches!(r.outcome, Outcome::Refused(_)), "{body}: {r:?}");
        }
    }

    #[test]
    fn a_crash_is_refused_with_the_signal_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.h5");
        let exe = fake(d.path(), "kill -SEGV $$");
        let r = run_child(&exe, &f, &quick()).unwrap();
        assert_eq!(r.signal, Some(libc::SIGSEGV));
        let e = r.into_result(&f).unwrap_err().to_string();
        assert!(
            e.contains("libhdf5 crashed or exceeded limits on this file: refused")
                && e.contains("SIGSEGV"),
            "{e}"
        );
    }

    #[test]
    fn a_hang_is_killed_at_the_wall_clock_limit() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.h5");
        let exe = fake(d.path(), "exec sleep 30");
        let lim = Limits {
            wall: Duration::from_millis(300),
            ..quick()
        };
        let t = Instant::now();
        let r = run_child(&exe, &f, &lim).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(r.timed_out && r.signal == Some(libc::SIGKILL), "{r:?}");
        let e = r.into_result(&f).unwrap_err().to_string();
        assert!(e.contains("still running after 0.300 s"), "{e}");
    }

    #[test]
    fn limits_and_environment_reach_the_child() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.h5");
        let exe = fake(
            d.path(),
            "echo \"$(ulimit -v) $(ulimit -c) $(ulimit -f) $(ulimit -t) $(ulimit -n) $HDF5_PLUGIN_PRELOAD $HDF5_PLUGIN_PATH\"",
        );
        let r = run_child(&exe, &f, &quick()).unwrap();
        assert_eq!(
            r.stdout.trim(),
            "1048576 0 0 5 64 :: /nonexistent/gradcode-hdf5-plugins-disabled"
        );
        // Memory over the limit kills the child or makes it fail: refused either way.
        let exe = fake(
            d.path(),
            "v=$(head -c 600000000 /dev/zero | tr '\\0' x); echo ${#v}; exit 0",
        );
        let lim = Limits {
            address_space: 256 << 20,
            ..quick()
        };
        let r = run_child(&exe, &f, &lim).unwrap();
        assert!(matches!(r.outcome, Outcome::Refused(_)), "{r:?}");
        assert!(r.peak_rss_kib < 300 << 10, "{r:?}");
    }

    #[test]
    fn the_parents_open_files_do_not_reach_the_child() {
        // An HDF5 file the parent holds open (libhdf5 opens without close-on-exec) must not be
        // inherited: its lock would outlive the parent's close and refuse the next open.
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.h5");
        let held = std::fs::File::create(d.path().join("held")).unwrap();
        const FD: i32 = 987;
        // SAFETY: dup2 onto an fd number this test owns; the result is checked and closed below.
        assert_eq!(unsafe { libc::dup2(held.as_raw_fd(), FD) }, FD);
        let exe = fake(
            d.path(),
            &format!("if [ -e /proc/$$/fd/{FD} ]; then echo inherited; else echo closed; fi"),
        );
        let r = run_child(&exe, &f, &quick());
        // SAFETY: closes the descriptor dup2 made above.
        unsafe { libc::close(FD) };
        assert_eq!(r.unwrap().stdout.trim(), "closed");
    }

    #[test]
    fn missing_executable_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = run_child(&d.path().join("nope"), &d.path().join("x.h5"), &quick()).unwrap_err();
        assert!(e.to_string().contains("cannot start the dataset validator"));
    }

    #[test]
    fn a_matrix_child_is_told_the_in_file_path() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("m.h5");
        let exe = fake(d.path(), "echo \"$# [$1 $2 $3 $4 $5 $6]\"");
        let src = MatrixSource {
            file: f.clone(),
            object: Some("/grp/M".into()),
        };
        let r = run_matrix_child(&exe, &src, &quick()).unwrap();
        assert_eq!(
            r.stdout.trim(),
            format!("6 [data validate --child {} --matrix /grp/M]", f.display())
        );
        // No path: an empty one (the child searches the file).
        let r = run_matrix_child(&exe, &MatrixSource::file(&f), &quick()).unwrap();
        assert!(r.stdout.trim().starts_with("6 ["), "{}", r.stdout);
        // A dataset child is not told of a matrix.
        let r = run_child(&exe, &f, &quick()).unwrap();
        assert!(r.stdout.trim().starts_with("4 ["), "{}", r.stdout);
    }
}
