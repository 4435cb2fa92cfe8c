//! `gradcode simulate` as a user runs it: a short real run replayed by the simulator gives the
//! real run's iteration times (the validation of issue 22 §1 in small), the results file is
//! marked simulated and `gradcode report` shows it, and bad input gets one error line, exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{
    assert_one_line_error, gradcode, mpirun, output_text, serial, synth_logistic, text, workdir,
};
use gradcode::io::results;

/// A small synthetic logistic dataset, made once.
fn dataset() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| synth_logistic(5)).clone()
}

/// A real run into workdir/NAME: n = 4 workers, `-s 1` with `code_flags`, exponential delays
/// of mean 20 ms (they dominate the compute, ≈ 1 ms, as in the benchmark), seed 7; its run.h5.
fn recorded_run(name: &str, code_flags: &[&str], iterations: u64) -> PathBuf {
    let _g = serial();
    let out = workdir().join(name);
    let data = dataset();
    let iterations = iterations.to_string();
    let mut args = vec!["train", "--data", data.to_str().unwrap(), "-s", "1"];
    args.extend_from_slice(code_flags);
    args.extend([
        "--straggler-model",
        "exp:20",
        "--iterations",
        &iterations,
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    let o = mpirun(5, &args, 120);
    assert!(o.status.success(), "{}", output_text(&o));
    out.join("run.h5")
}

/// The cyclic-mds recorded run (41 iterations), made once.
fn real_run() -> PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| recorded_run("real", &["--code", "cyclic-mds"], 41))
        .clone()
}

/// `simulate --replay REAL --replay-order sequential --iterations N` into workdir/NAME: the
/// recorded delays in their recorded order, after the first iteration (warm-up); its run.h5.
fn replay_in_order(real: &Path, name: &str, iterations: u64) -> PathBuf {
    let sim = workdir().join(name);
    let iterations = iterations.to_string();
    let o = simulate(&[
        "--replay",
        real.to_str().unwrap(),
        "--replay-order",
        "sequential",
        "--iterations",
        &iterations,
        "--out",
        sim.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    sim.join("run.h5")
}

fn simulate(args: &[&str]) -> std::process::Output {
    let mut a = vec!["simulate"];
    a.extend_from_slice(args);
    gradcode(&a)
}

fn summary(path: &Path, name: &str) -> f64 {
    results::read_num_attr(path, "summary", name).unwrap()
}

/// Nearest-rank percentiles `ps` of `/metrics/wall_s` from row `first` on.
fn wall_percentiles(path: &Path, first: usize, ps: &[f64]) -> Vec<f64> {
    let rows = results::read_rows(path, None).unwrap();
    let mut w: Vec<f64> = rows
        .column(gradcode::io::results::Metric::WallS)
        .iter()
        .skip(first)
        .copied()
        .collect();
    w.sort_by(f64::total_cmp);
    ps.iter()
        .map(|p| w[((w.len() - 1) as f64 * p).round() as usize])
        .collect()
}

/// The replayed run's p50 and p75 time per iteration against the real run's. The simulation
/// replays the recorded delays in their recorded order (`--replay-order sequential`, the same
/// 40 iterations after the first, which the replay leaves out as warm-up), so what differs is
/// only what the simulator models: compute, the link and rank 0's own time, each replayed as
/// recorded medians. Tolerance 25 % on the median, 30 % on p75: the real run's iteration
/// times on this shared 2-core machine carry the scheduling noise of nine processes on two
/// cores (a few ms on a 20–40 ms iteration, more when other jobs run), which the replay sees
/// only through its medians. Not p95: of 40 iterations it is the third slowest, and one
/// scheduling stall of rank 0 under load doubles it (seen: 116 ms real against 53 ms replayed
/// at a load average of 22). The benchmark (docs/tuning.md) measures p50 and p95 at n = 8.
#[test]
fn a_replayed_real_run_has_its_iteration_times() {
    let real = real_run();
    let sim = replay_in_order(&real, "sim", 40);
    let r = wall_percentiles(&real, 1, &[0.5, 0.75]);
    let s = wall_percentiles(&sim, 0, &[0.5, 0.75]);
    for (i, (name, tol)) in [("p50", 0.25), ("p75", 0.30)].into_iter().enumerate() {
        let ratio = s[i] / r[i];
        assert!(
            (1.0 - tol..=1.0 + tol).contains(&ratio),
            "{name}: real {:.2} ms, simulated {:.2} ms (ratio {ratio:.3})",
            r[i] * 1e3,
            s[i] * 1e3
        );
    }
    // Marked simulated, with the trace's settings.
    assert_eq!(
        results::read_str_attr(&sim, "config", "job").unwrap(),
        "simulate"
    );
    assert_eq!(
        results::read_str_attr(&sim, "validation", "verdict").unwrap(),
        "SIMULATED"
    );
    assert_eq!(
        results::read_str_attr(&sim, "config", "straggler-model").unwrap(),
        "exp:20"
    );
    let rows = results::read_rows(&sim, None).unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows.workers(), 4);
    // The report lists both, the simulated one as such.
    let o = gradcode(&["report", real.to_str().unwrap(), sim.to_str().unwrap()]);
    assert!(o.status.success(), "{}", output_text(&o));
    let out = text(&o.stdout);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}: {out}"))
            .to_string()
    };
    assert!(line("sim ").contains("SIMULATED"), "{out}");
    assert!(line("real ").contains("VALID"), "{out}");
}

/// A real `--decode-tree 2` run (n = 4, cyclic-repetition s = 1, `exp:20`) replayed: simulated
/// as a tree (the replayed run's setting), rank 0 receives the two leaders' combined messages
/// only — at most n/G a round, about as many as in the real run — of the real run's size,
/// and the time per iteration is the real one's within a factor 2 (the members'
/// compute is not in the trace, and leaders gathering on 2 shared cores are slower than the
/// simulator's idle links: docs/tuning.md measures the gap at n = 9).
#[test]
fn a_replayed_tree_run_is_simulated_as_a_tree() {
    let code = ["--code", "cyclic-repetition", "--decode-tree", "2"];
    let real = recorded_run("real-tree", &code, 21);
    let sim = replay_in_order(&real, "sim-tree", 20);
    let (rr, sr) = (
        results::read_rows(&real, None).unwrap(),
        results::read_rows(&sim, None).unwrap(),
    );
    let sum = |rows: &gradcode::io::metrics::RecordedRows, m, first: usize| -> f64 {
        rows.column(m).iter().skip(first).sum()
    };
    use gradcode::io::results::Metric::{BytesReceived, MessagesReceived};
    // Never a member's own message; a leader owing a round is not given the next (the busy
    // rule), so fewer than n/G a round under exp:20, as in the real run.
    let (real_messages, messages) = (sum(&rr, MessagesReceived, 1), sum(&sr, MessagesReceived, 0));
    assert!(messages <= 40.0, "{messages}");
    assert!(
        (messages / real_messages - 1.0).abs() <= 0.3,
        "rank-0 messages: real {real_messages}, simulated {messages}"
    );
    let per_message =
        |rows, first| sum(rows, BytesReceived, first) / sum(rows, MessagesReceived, first);
    let (real_size, sim_size) = (per_message(&rr, 1), per_message(&sr, 0));
    assert!(
        (real_size / sim_size - 1.0).abs() < 1e-9,
        "bytes per message: real {real_size}, simulated {sim_size}"
    );
    let (r, s) = (
        wall_percentiles(&real, 1, &[0.5])[0],
        wall_percentiles(&sim, 0, &[0.5])[0],
    );
    assert!(
        (0.5..=2.0).contains(&(s / r)),
        "p50 real {r}, simulated {s}"
    );
}

/// Sampled replay (the distribution, not the sequence) over many iterations lands near the real
/// run's median too, and an uncoded simulation of the same trace is slower at the tail than the
/// code that tolerates one straggler.
#[test]
fn sampled_replay_orders_codes_as_expected() {
    let real = real_run();
    let run = |code: &str, s: &str, name: &str| {
        let out = workdir().join(name);
        let o = simulate(&[
            "--replay",
            real.to_str().unwrap(),
            "--code",
            code,
            "-s",
            s,
            "--iterations",
            "400",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", output_text(&o));
        out.join("run.h5")
    };
    let mds = run("cyclic-mds", "1", "sampled-mds");
    let unc = run("uncoded", "0", "sampled-uncoded");
    let p50 = |p: &Path| summary(p, "time_per_iteration_p50_s");
    let p95 = |p: &Path| summary(p, "time_per_iteration_p95_s");
    let ratio = p50(&mds) / p50(&real);
    assert!((0.7..=1.3).contains(&ratio), "p50 ratio {ratio}");
    assert!(p95(&unc) > p95(&mds), "{} vs {}", p95(&unc), p95(&mds));
}

#[test]
fn a_model_spec_without_replay_runs_and_needs_a_compute_time() {
    let out = workdir().join("spec");
    let o = simulate(&[
        "--workers",
        "1000",
        "--code",
        "cyclic-repetition",
        "-s",
        "10",
        "--dim",
        "124",
        "--straggler-model",
        "exp:20",
        "--compute-ms",
        "100",
        "--iterations",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows = results::read_rows(&out.join("run.h5"), None).unwrap();
    assert_eq!((rows.len(), rows.workers()), (20, 1000));
    // Rank 0's result messages, counted as the real collector does: at least the n − s of a
    // decodable set each iteration, at most one on-time and one late per worker.
    let msgs = rows.column(results::Metric::MessagesReceived);
    assert!(
        msgs.iter().all(|&m| (990.0..=2000.0).contains(&m)),
        "{msgs:?}"
    );
    let o = simulate(&[
        "--workers",
        "8",
        "--dim",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(assert_one_line_error(&o).contains("--compute-ms"));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let real = real_run();
    let real = real.to_str().unwrap();
    let out = workdir().join("bad");
    let out = out.to_str().unwrap();
    let not_h5 = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/not_hdf5.h5");
    // A reference run has no per-worker timing.
    let reference = workdir().join("reference");
    let data = dataset();
    let o = gradcode(&[
        "train",
        "--reference",
        "--data",
        data.to_str().unwrap(),
        "--iterations",
        "3",
        "--out",
        reference.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let reference = reference.join("run.h5");
    for (args, expect) in [
        (
            vec!["--replay", real, "--code", "no-such-code"],
            "no-such-code",
        ),
        (vec!["--replay", not_h5], "not_hdf5.h5"),
        (
            vec!["--replay", reference.to_str().unwrap()],
            "serial reference",
        ),
        (vec!["--replay", real, "--workers", "6"], "only 4 workers"),
        (
            vec!["--replay", real, "--code", "mds-rotation"],
            "gradient codes only",
        ),
        (vec!["--replay", real, "--alpha-ms", "-1"], "alpha-ms"),
        (vec!["--replay", real, "--chunks", "0"], "chunks"),
        (
            vec!["--replay", real, "--decode-tree", "3"],
            "--decode-tree = 3: must be at least 2, at most the number of workers n = 4, and divide it",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--out", out, "--force"]);
        let o = simulate(&a);
        let line = assert_one_line_error(&o);
        assert!(line.contains(expect), "{args:?}: {line}");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {line}");
    }
    // More workers than the trace: pooled on request.
    let o = simulate(&[
        "--replay",
        real,
        "--workers",
        "6",
        "--pool-workers",
        "--iterations",
        "10",
        "--out",
        out,
        "--force",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
}
