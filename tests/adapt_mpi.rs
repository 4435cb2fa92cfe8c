//! `train --adapt` end to end under `mpirun` (issue 22 §3): a run whose straggler regime
//! changes mid-run switches s at least once, and every iteration (the switch included) matches
//! the serial reference to 1e-8, since the exact codes decode the full gradient whatever s is;
//! the switches are recorded per iteration and in `/adapt`, which a run killed after a switch
//! keeps; `--adapt-deadline` refits the deadline from the arrivals, below the user's cap, and
//! every iteration stays exact; the settings that cannot switch are refused with one line and
//! exit 2.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gradcode::io::checkpoint;
use gradcode::io::results::{self, Metric, WorkerMetric};

mod common;
use common::{
    assert_one_mpi_error, gradcode, mpirun, mpirun_direct, output_text, serial, synth_logistic, BIN,
};

/// The synthetic logistic data, made once per test binary.
fn data() -> String {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| synth_logistic(3)).display().to_string()
}

fn fresh(name: &str) -> PathBuf {
    let d = fresh_path(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// workdir/NAME, as [`fresh`] made it.
fn fresh_path(name: &str) -> PathBuf {
    common::workdir().join(name)
}

fn train_mpi(np: usize, out: &Path, args: &[&str]) -> std::process::Output {
    let mut a: Vec<String> = vec!["train".into(), "--out".into(), out.display().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    mpirun(np, &a, 120)
}

/// The adaptive settings of these tests: cyclic-repetition from s = 0, a decision every 5
/// iterations, s up to 2.
const ADAPT_FROM_0: [&str; 9] = [
    "--code",
    "cyclic-repetition",
    "-s",
    "0",
    "--adapt",
    "--adapt-every",
    "5",
    "--adapt-max-s",
    "2",
];

/// `train --reference` with `common` into workdir/NAME; its run.h5.
fn reference_run(name: &str, common: &[&str]) -> PathBuf {
    let reference = fresh(name);
    let ref_out = reference.display().to_string();
    let mut a = vec!["train", "--reference", "--out", &ref_out];
    a.extend(common);
    let o = gradcode(&a);
    assert!(o.status.success(), "{}", output_text(&o));
    reference.join("run.h5")
}

/// [`reference_run`]'s rows.
fn reference_rows(name: &str, common: &[&str]) -> results::RecordedRows {
    results::read_rows(&reference_run(name, common), None).unwrap()
}

/// The final model of run file `h5` within 1e-8 (relative, 2-norm) of the reference's.
fn assert_w_matches(h5: &Path, reference: &Path) {
    let w = results::read_vector(h5, "model/w_final").unwrap();
    let wr = results::read_vector(reference, "model/w_final").unwrap();
    let diff = (&w - &wr).mapv(|v| v * v).sum().sqrt() / wr.mapv(|v| v * v).sum().sqrt();
    assert!(diff < 1e-8, "w_final vs reference: {diff:e}");
}

/// Every iteration's training loss within 1e-8 of the reference's, and every one exact.
fn assert_matches_reference(rows: &results::RecordedRows, ref_rows: &results::RecordedRows) {
    assert_eq!(rows.len(), ref_rows.len());
    let (loss, ref_loss) = (
        rows.column(Metric::TrainLoss),
        ref_rows.column(Metric::TrainLoss),
    );
    for t in 0..rows.len() {
        let rel = (loss[t] - ref_loss[t]).abs() / ref_loss[t].abs();
        assert!(rel < 1e-8, "iteration {t}: {} vs {}", loss[t], ref_loss[t]);
    }
    let exact = rows.column(Metric::Exact);
    assert!(exact.iter().all(|&e| e == 1.0), "{exact:?}");
}

/// Ranks 1 and 2 turn slow from iteration 10 on: s = 1 still waits for one of them, so the
/// adapter switches to s = 2 (regression: a post of s = 2 shares its phase number with
/// K-FAC's eigen rounds, and workers once answered it as one, so the run stalled until
/// --max-wait-ms); every iteration matches the reference.
#[test]
fn a_switch_to_s_2_answers_with_the_gradient_and_matches_the_reference() {
    let _g = serial();
    let data = data();
    let common = ["--data", &data, "--iterations", "30", "--lr", "0.5"];
    let ref_rows = reference_rows("adapt-s2-ref", &common);
    let run = fresh("adapt-s2-run");
    let mut a = common.to_vec();
    a.extend(ADAPT_FROM_0);
    a.extend(["--max-wait-ms", "10000"]);
    a.extend(["--straggler-model", "fixed:1,2:60@10"]);
    let o = train_mpi(5, &run, &a);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
    assert_matches_reference(&rows, &ref_rows);
    let s = rows.column(Metric::CodeS);
    assert_eq!(s[29], 2.0, "{s:?}");
}

/// Rank 2 turns slow (60 ms per iteration) from iteration 10 on: s = 0 waits for it, so the
/// adapter, deciding every 5 iterations and switching after 2 decisions in a row (the
/// default `--adapt-confirm`), switches to a larger s within two windows of the change.
#[test]
fn a_regime_change_switches_s_and_every_iteration_matches_the_reference() {
    let _g = serial();
    let data = data();
    let common = ["--data", &data, "--iterations", "40", "--lr", "0.5"];
    let ref_rows = reference_rows("adapt-ref", &common);
    let run = fresh("adapt-run");
    let mut a = common.to_vec();
    a.extend(ADAPT_FROM_0);
    a.extend(["--straggler-model", "fixed:2:60@10"]);
    let o = train_mpi(5, &run, &a);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&run.join("run.h5"), None).unwrap();
    assert_eq!(rows.len(), 40);
    assert_matches_reference(&rows, &ref_rows);
    assert_w_matches(&run.join("run.h5"), &fresh_path("adapt-ref").join("run.h5"));
    // The s in force: 0 before the regime changes, larger after a recorded switch.
    let s = rows.column(Metric::CodeS);
    assert!(s.iter().take(10).all(|&v| v == 0.0), "{s:?}");
    let next = rows.column(Metric::AdaptNextS);
    let switches: Vec<usize> = (0..40).filter(|&t| next[t].is_finite()).collect();
    assert!(!switches.is_empty(), "no switch: {s:?}");
    // Windows end at 4, 9, 14, 19: the two after the change (or one noisy window before it
    // and the first after it) confirm the switch, which is prepared then and taken once the
    // workers have loaded the new s's partitions in the background (at least one iteration
    // later: the next post asks for them, a later result confirms them).
    let log = results::read_adapt(&run.join("run.h5")).unwrap().unwrap();
    let first = log
        .iter()
        .find(|w| w.switches_s())
        .expect("no switch in /adapt");
    let prepared = [14u64, 19].into_iter().find(|t| {
        first
            .reason
            .contains(&format!("answered since iteration {t} held"))
    });
    assert!(
        prepared.is_some_and(|t| (switches[0] as u64) > t && switches[0] < 25),
        "first switch at {switches:?} ({}): {s:?}",
        first.reason
    );
    // Workers start with the partitions of s = 0 only (one of the 4 partitions, where they
    // loaded those of --adapt-max-s 2 before) and read the others when rank 0 asks. Their
    // start-up line is at info level, which workers log only at debug level: a short run
    // (worker logging slows the workers enough to move the adapter's decisions).
    let short = fresh("adapt-startup");
    let mut b = a.clone();
    let i = b.iter().position(|v| *v == "40").unwrap();
    b[i] = "2";
    let o = common::mpirun_command(5, 120, &[])
        .env("RUST_LOG", "debug")
        .args(["train", "--out", short.to_str().unwrap()])
        .args(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let text = output_text(&o);
    let rows_total = gradcode::io::dataset::inspect(Path::new(&data))
        .unwrap()
        .n_rows;
    let startup: Vec<usize> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split("--adapt: holds the partitions of s = 0 (").nth(1)?;
            rest.split(" rows) at start-up").next()?.parse().ok()
        })
        .collect();
    assert_eq!(startup.len(), 4, "{text}");
    assert!(
        startup.iter().all(|&r| 4 * r <= rows_total + 3),
        "{startup:?} of {rows_total}"
    );
    for &t in &switches {
        assert!(t >= 10, "switched at {t} before the regime changed: {s:?}");
        assert!(rows.column(Metric::AdaptGain)[t] > 0.1);
        if t + 1 < 40 {
            assert_eq!(s[t + 1], next[t], "{s:?}");
        }
    }
    assert!(s[39] >= 1.0, "{s:?}");
    // The switch log, /adapt: one row per switch, the same as the per-iteration columns.
    let log = results::read_adapt(&run.join("run.h5")).unwrap().unwrap();
    assert_eq!(log.len(), switches.len(), "{log:?}");
    for (row, &t) in log.iter().zip(&switches) {
        assert_eq!(row.iteration, t as u64);
        assert_eq!(row.old_s as f64, s[t]);
        assert_eq!(row.new_s as f64, next[t]);
        assert_eq!(row.gain, rows.column(Metric::AdaptGain)[t]);
        assert!(row.reason.contains("predicted"), "{}", row.reason);
        assert!(
            row.reason.contains("2 windows in a row") || row.reason.contains("cannot finish"),
            "{}",
            row.reason
        );
    }
    assert!(
        log[0].reason.contains("loaded in the background"),
        "{}",
        log[0].reason
    );
    // `gradcode report` lists the switches (and `--plot` marks them on the iteration panels).
    let png = run.join("adapt.png");
    let o = gradcode(&[
        "report",
        run.join("run.h5").to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let each: Vec<String> = log
        .iter()
        .map(|w| format!("s {}→{} after iteration {}", w.old_s, w.new_s, w.iteration))
        .collect();
    let note = format!(
        "--adapt switched s {} time(s): {}",
        log.len(),
        each.join(", ")
    );
    assert!(text.contains(&note), "{note} not in\n{text}");
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
    // A run without --adapt has no /adapt group.
    assert_eq!(
        results::read_adapt(&fresh_path("adapt-ref").join("run.h5")).unwrap(),
        None
    );
}

/// Pids of the gradcode ranks whose command line names `out`.
fn rank_pids(out: &Path) -> Vec<u32> {
    let me = std::fs::canonicalize(BIN).unwrap();
    let out = out.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == me)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(out.as_str()))
        })
        .collect()
}

/// The same regime change in a run far too long to end: once a switch shows in the rows, every
/// rank is killed with SIGKILL. `/adapt` already holds the switch (written and flushed with its
/// iteration's row, not at the end), `gradcode report` lists it, and `gradcode recover` keeps it.
#[test]
fn a_run_killed_after_a_switch_keeps_its_switch_log() {
    let _g = serial();
    let data = data();
    let run = fresh("adapt-killed");
    let run_s = run.display().to_string();
    let h5 = run.join("run.h5");
    let mut child = mpirun_direct(5)
        .args(["train", "--out", &run_s, "--data", &data])
        .args([
            "--iterations",
            "1000000",
            "--lr",
            "0.5",
            "--log-every",
            "1000",
        ])
        .args(["--code", "cyclic-repetition", "-s", "0", "--adapt"])
        .args(["--adapt-every", "5", "--adapt-max-s", "2"])
        .args(["--straggler-model", "fixed:2:60@10"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut switched = None;
    while switched.is_none() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if let Ok(rows) = results::read_rows(&h5, None) {
            let next = rows.column(Metric::AdaptNextS);
            switched = (0..rows.len())
                .find(|&t| next[t].is_finite())
                .map(|t| (t, next[t]));
        }
    }
    let pids = rank_pids(&run);
    for &pid in &pids {
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let (t, new_s) = switched.unwrap_or_else(|| panic!("no switch seen: {}", output_text(&o)));
    assert_eq!(pids.len(), 5, "{pids:?}");
    assert_eq!(
        results::read_str_attr(&h5, "", "status").unwrap(),
        "running"
    );
    let log = results::read_adapt(&h5).unwrap().expect("no /adapt");
    assert!(
        !log.is_empty(),
        "the switch after iteration {t} is not in /adapt"
    );
    assert_eq!((log[0].iteration, log[0].old_s), (t as u64, 0));
    assert_eq!(log[0].new_s as f64, new_s);
    assert!(log[0].gain > 0.1, "{log:?}");
    assert!(log[0].reason.contains("predicted"), "{}", log[0].reason);
    let note = format!("s 0→{} after iteration {t}", log[0].new_s);
    let o = gradcode(&["report", h5.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&note),
        "{note} not in\n{}",
        output_text(&o)
    );
    let o = gradcode(&["recover", h5.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(
        results::read_str_attr(&h5, "", "status").unwrap(),
        "recovered"
    );
    assert_eq!(results::read_adapt(&h5).unwrap().unwrap(), log);
}

/// `--adapt-deadline` on the same regime change, with a 500 ms cap: at every decision rank 0
/// refits the deadline (1.5 × the 95 % nearest-rank quantile of the window's (n − s)-th
/// arrival times, at most 500 ms), records each change in `/adapt` and in
/// `/metrics/adapt_deadline_ms`, and every iteration still matches the serial reference.
#[test]
fn adapt_deadline_refits_the_deadline_below_the_cap_and_stays_exact() {
    let _g = serial();
    let data = data();
    let common = ["--data", &data, "--iterations", "40", "--lr", "0.5"];
    let ref_rows = reference_rows("adapt-deadline-ref", &common);
    let run = fresh("adapt-deadline-run");
    let mut a = common.to_vec();
    a.extend(ADAPT_FROM_0);
    a.extend([
        "--deadline-ms",
        "500",
        "--adapt-deadline",
        "--straggler-model",
        "fixed:2:60@10",
    ]);
    let o = train_mpi(5, &run, &a);
    assert!(o.status.success(), "{}", output_text(&o));
    let h5 = run.join("run.h5");
    let rows = results::read_rows(&h5, None).unwrap();
    assert_eq!(rows.len(), 40);
    assert_matches_reference(&rows, &ref_rows);
    let dl = rows.column(Metric::AdaptDeadlineMs);
    let s = rows.column(Metric::CodeS);
    assert!(dl.iter().take(5).all(|&v| v == 500.0), "{dl:?}");
    let log = results::read_adapt(&h5).unwrap().unwrap();
    // The first decision (after iteration 4, rounds 0..=4 at s = 0, no straggler yet): the
    // 4th arrival of each round, the 5th smallest of the 5 (95 % nearest rank), × 1.5.
    let n = 4;
    let kth = |t: usize, k: usize| {
        let mut a: Vec<f64> = rows
            .row(t)
            .worker(WorkerMetric::ArrivalS)
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        a.sort_by(f64::total_cmp);
        a.get(k - 1).copied().unwrap_or(f64::INFINITY)
    };
    let k = n - s[5] as usize;
    let q = (0..5).map(|t| kth(t, k)).fold(f64::NEG_INFINITY, f64::max);
    let want = (1.5 * q * 1e3).min(500.0);
    assert!(
        want < 450.0,
        "arrivals as slow as {q} s before the regime change"
    );
    assert_eq!(log[0].iteration, 4, "{log:?}");
    assert_eq!(log[0].deadline_ms, Some((500.0, want)), "{log:?}");
    assert!(log[0].reason.contains("quantile"), "{}", log[0].reason);
    // Every row carries the deadline, never above the cap; the metric follows the log: the
    // deadline changes only after a row, to its new value.
    let mut prev = (500.0, 0.0);
    for row in &log {
        let (old, new) = row.deadline_ms.expect("no deadline in a row");
        assert!(new <= 500.0 && new > 0.0, "{row:?}");
        assert_eq!(old, prev.0, "{row:?}");
        let t = row.iteration as usize;
        assert_eq!(dl[t], old, "{row:?}");
        if t + 1 < 40 {
            assert_eq!(dl[t + 1], new, "{row:?}");
        }
        assert!(row.switches_s() || (new - old).abs() > 0.1 * old, "{row:?}");
        prev = (new, 0.0);
    }
    let changes = log.iter().map(|r| r.iteration as usize).collect::<Vec<_>>();
    for t in 0..39 {
        if !changes.contains(&t) {
            assert_eq!(dl[t + 1], dl[t], "deadline changed after {t} without a row");
        }
    }
    // The s switches are still the rows that change s (`report` lists only those).
    let next = rows.column(Metric::AdaptNextS);
    let switched: Vec<u64> = (0..40)
        .filter(|&t| next[t].is_finite())
        .map(|t| t as u64)
        .collect();
    let in_log: Vec<u64> = log
        .iter()
        .filter(|r| r.switches_s())
        .map(|r| r.iteration)
        .collect();
    assert_eq!(switched, in_log, "{log:?}");
}

#[test]
fn settings_that_cannot_switch_are_refused() {
    let _g = serial();
    let data = data();
    let out = fresh("adapt-refused");
    for (extra, expect) in [
        (vec!["--code", "uncoded", "-s", "0"], "--adapt"),
        (vec!["--adapt-max-s", "4"], "--adapt-max-s"),
        (vec!["--adapt-confirm", "0"], "--adapt-confirm"),
        (vec!["--chunks", "2"], "--chunks"),
        (vec!["--decode-tree", "2"], "--decode-tree 2"),
    ] {
        let mut a = vec!["--data", &data, "--iterations", "3", "--adapt"];
        a.extend(extra);
        let o = train_mpi(5, &out, &a);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
        assert_one_mpi_error(&o, expect);
    }
    let a = ["--data", &data, "--iterations", "3", "--adapt-deadline"];
    let o = train_mpi(5, &out, &a);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_one_mpi_error(&o, "--adapt-deadline");
}

/// Issue 22 §3: a resumed `--adapt` run goes on with the s (and the pending confirmation) in
/// force at its checkpoint. The regime change of the first test, stopped after 26 iterations
/// (checkpoints every 5: the last at 25, after the switch) and resumed to 40: the resumed
/// iterations start with the switched s, the switches before the checkpoint stay in `/adapt`,
/// and every iteration and the final model match the serial reference (the codes decode the
/// full gradient whatever s is, so no run with switches at other times is bit-identical). A
/// checkpoint without the adaptive state (format 3) still resumes, at `--stragglers`, with a
/// warning.
#[test]
fn a_resumed_run_continues_with_the_s_of_its_checkpoint() {
    let _g = serial();
    let data = data();
    let reference = reference_run(
        "adapt-resume-ref",
        &["--data", &data, "--iterations", "40", "--lr", "0.5"],
    );
    let args = |iterations: &'static str, resume: bool| {
        let mut a = vec!["--data", &data, "--iterations", iterations, "--lr", "0.5"];
        a.extend(ADAPT_FROM_0);
        a.extend([
            "--straggler-model",
            "fixed:2:60@10",
            "--checkpoint-every",
            "5",
        ]);
        if resume {
            a.push("--resume");
        }
        a.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run = fresh("adapt-resume");
    let first = args("26", false);
    let o = train_mpi(5, &run, &strs(&first));
    assert!(o.status.success(), "{}", output_text(&o));
    let h5 = run.join("run.h5");
    let before = results::read_rows(&h5, None).unwrap();
    assert_eq!(before.len(), 26);
    let (s0, next0) = (
        before.column(Metric::CodeS),
        before.column(Metric::AdaptNextS),
    );
    // The s in force at iteration 25 (the checkpoint's): after iteration 24's switch, if any.
    let at_ckpt = if next0[24].is_finite() {
        next0[24]
    } else {
        s0[24]
    };
    assert!(at_ckpt >= 1.0, "no switch before the checkpoint: {s0:?}");
    assert_eq!(s0[25], at_ckpt);
    let ck = hdf5::File::open(run.join("ckpt.h5")).unwrap();
    let read_u64 = |f: &hdf5::File, name: &str| f.attr(name).unwrap().read_scalar::<u64>().unwrap();
    assert_eq!(read_u64(&ck, "iteration"), 25);
    assert_eq!(read_u64(&ck, "format_version"), 4);
    assert_eq!(read_u64(&ck, "adapt_s") as f64, at_ckpt);
    drop(ck);
    let log0: Vec<_> = results::read_adapt(&h5)
        .unwrap()
        .unwrap()
        .into_iter()
        .filter(|w| w.iteration < 25)
        .collect();
    assert!(log0.iter().any(|w| w.switches_s()), "{log0:?}");
    // The same folder, its checkpoint made format 3 (no adaptive state): resumes at s = 0.
    let old = fresh("adapt-resume-format3");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["run.h5", "ckpt.h5", "ckpt.prev.h5", "config.toml"] {
        std::fs::copy(run.join(f), old.join(f)).unwrap();
    }
    strip_adapt_state(&old);
    // Resumed to 40 from iteration 25.
    let resumed = args("40", true);
    let o = train_mpi(5, &run, &strs(&resumed));
    assert!(o.status.success(), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(
        text.contains(&format!("resuming at iteration 25 with s = {at_ckpt}")),
        "{text}"
    );
    let rows = results::read_rows(&h5, None).unwrap();
    assert_eq!(rows.len(), 40);
    let s = rows.column(Metric::CodeS);
    assert_eq!(s[25], at_ckpt, "{s:?}");
    assert_eq!(&s.to_vec()[..25], &s0.to_vec()[..25]);
    let ref_rows = results::read_rows(&reference, None).unwrap();
    assert_matches_reference(&rows, &ref_rows);
    assert_w_matches(&h5, &reference);
    // /adapt keeps the switches before the checkpoint, then the resumed run's.
    let log = results::read_adapt(&h5).unwrap().unwrap();
    assert_eq!(&log[..log0.len()], &log0[..], "{log:?}");
    assert!(
        log[log0.len()..].iter().all(|w| w.iteration >= 25),
        "{log:?}"
    );
    let next = rows.column(Metric::AdaptNextS);
    let switched: Vec<u64> = (0..40)
        .filter(|&t| next[t].is_finite())
        .map(|t| t as u64)
        .collect();
    let in_log: Vec<u64> = log.iter().map(|w| w.iteration).collect();
    assert_eq!(switched, in_log, "{log:?}");
    // The format-3 checkpoint: starts again at s = 0, with the warning, and stays exact.
    let o = train_mpi(5, &old, &strs(&resumed));
    assert!(o.status.success(), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(text.contains("holds no adaptive state"), "{text}");
    let rows = results::read_rows(&old.join("run.h5"), None).unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows.column(Metric::CodeS)[25], 0.0);
    assert_matches_reference(&rows, &ref_rows);
}

/// Rewrite the checkpoint of folder `dir` as a format-3 file: the same state without the
/// adaptive one (format 4 without it has format 3's layout and checksum).
fn strip_adapt_state(dir: &Path) {
    let p = dir.join("ckpt.h5");
    let hash = results::read_str_attr(&p, "", "config_sha256").unwrap();
    let mut c = checkpoint::read(&p, &hash).unwrap();
    assert!(c.adapt.is_some());
    c.adapt = None;
    checkpoint::save(dir, &c).unwrap();
    let f = hdf5::File::open_rw(&p).unwrap();
    f.attr("format_version")
        .unwrap()
        .write_scalar(&3u64)
        .unwrap();
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
