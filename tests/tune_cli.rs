//! `gradcode tune` as a user runs it: a profiling run in, a ranked table out, and the best
//! configuration as a TOML that `train --config` runs; bad input is one line and exit 2.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{
    assert_one_line_error, gradcode, mpirun, output_text, serial, text, uncoded_batch_profile,
    uncoded_profile, workdir,
};
use gradcode::io::results;

/// An uncoded profiling run (n = 4, exp:20, 30 iterations) on synthetic data, made once.
fn profile() -> PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| uncoded_profile(5, 30, 9)).clone()
}

#[test]
fn the_tuned_config_runs_under_train() {
    let prof = profile();
    let toml_path = workdir().join("tuned.toml");
    let o = gradcode(&[
        "tune",
        "--profile",
        prof.to_str().unwrap(),
        "--config-out",
        toml_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let out = text(&o.stdout);
    assert!(out.contains("candidates simulated"), "{out}");
    // Per-worker speeds fitted from the profile, one per worker, the fastest 1 (for hetero).
    let fitted = out
        .lines()
        .find_map(|l| l.strip_prefix("fitted worker speeds (fastest = 1, for --code hetero): "))
        .unwrap_or_else(|| panic!("no fitted speeds: {out}"));
    let v: Vec<f64> = fitted.split(',').map(|x| x.parse().unwrap()).collect();
    assert_eq!(v.len(), 4, "{fitted}");
    assert!(
        v.iter().all(|x| *x > 0.0 && *x <= 1.0) && v.contains(&1.0),
        "{fitted}"
    );
    let first = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no rank 1: {out}"));
    let cfg: toml::Table = std::fs::read_to_string(&toml_path)
        .unwrap()
        .parse()
        .unwrap();
    let code = cfg["code"].as_str().unwrap().to_string();
    assert!(first.contains(&code), "{first} vs {code}");
    assert_eq!(cfg["workers"].as_integer(), Some(4));
    if code == "hetero" {
        assert_eq!(cfg["worker-speeds"].as_str(), Some(fitted), "{cfg}");
    }
    assert_eq!(cfg["straggler-model"].as_str(), Some("exp:20"));
    // The profile was uncoded with exponential delays on 4 workers: a code that tolerates a
    // straggler is predicted faster.
    assert!(cfg["stragglers"].as_integer().unwrap() >= 1, "{cfg}");
    // train --config runs it.
    let _g = serial();
    let f = run_five(&toml_path, "tuned-run");
    assert_eq!(results::read_str_attr(&f, "config", "code").unwrap(), code);
    assert_eq!(results::read_rows(&f, None).unwrap().len(), 5);
}

#[test]
fn a_replay_simulates_the_recorded_run_by_default() {
    let prof = profile();
    let out = workdir().join("replay-default");
    let o = gradcode(&[
        "simulate",
        "--replay",
        prof.to_str().unwrap(),
        "--iterations",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let f = out.join("run.h5");
    assert_eq!(
        results::read_str_attr(&f, "config", "code").unwrap(),
        "uncoded"
    );
    assert_eq!(
        results::read_str_attr(&f, "config", "straggler-model").unwrap(),
        "exp:20"
    );
}

#[test]
fn the_time_per_iteration_objective_and_more_workers() {
    let prof = profile();
    let toml_path = workdir().join("tuned16.toml");
    let o = gradcode(&[
        "tune",
        "--profile",
        prof.to_str().unwrap(),
        "--np",
        "16",
        "--objective",
        "time-per-iteration",
        "--top",
        "3",
        "--config-out",
        toml_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let cfg: toml::Table = std::fs::read_to_string(&toml_path)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cfg["workers"].as_integer(), Some(16));
    // Ranked rows: exactly --top of them, p50 ascending.
    let out = text(&o.stdout);
    let p50: Vec<f64> = out
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| !l.contains("candidates"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[f.len() - 4].parse().unwrap()
        })
        .collect();
    assert_eq!(p50.len(), 3, "{out}");
    assert!(p50.windows(2).all(|w| w[0] <= w[1]), "{out}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let prof = profile();
    let prof = prof.to_str().unwrap();
    let not_h5 = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/not_hdf5.h5");
    let cfg = workdir().join("bad.toml");
    let cfg = cfg.to_str().unwrap();
    for (args, expect) in [
        (vec!["--profile", prof, "--budget-s", "0"], "budget-s"),
        (vec!["--profile", prof, "--budget-s", "-3"], "budget-s"),
        (vec!["--profile", prof, "--objective", "fastest"], "fastest"),
        (vec!["--profile", not_h5], "not_hdf5.h5"),
        (vec!["--profile", prof, "--np", "0"], "np"),
    ] {
        let mut a = vec!["tune"];
        a.extend(args.iter().copied());
        a.extend(["--config-out", cfg]);
        let o = gradcode(&a);
        let line = assert_one_line_error(&o);
        assert!(line.contains(expect), "{args:?}: {line}");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {line}");
    }
    assert!(!std::path::Path::new(cfg).exists());
}

/// An uncoded minibatch profile (`--batch 16`, n = 4) records the gradient noise scale, and
/// `tune` searches the batch size with it (Pollux's statistical efficiency): the ranked rows
/// and the TOML carry a batch among B₀ × {1/4, 1/2, 1, 2, 4}, which `train --config` runs.
#[test]
fn a_minibatch_profile_has_a_noise_scale_and_tune_searches_the_batch() {
    // Both before serial(): they take the lock themselves.
    let full_batch = profile();
    let out = uncoded_batch_profile(5, 16, 40, 9);
    let _g = serial();
    let rows = results::read_rows(&out, None).unwrap();
    let g2 = rows.column(results::Metric::GnsGradSq).to_vec();
    let tr = rows.column(results::Metric::GnsTrace).to_vec();
    // Every iteration decoded from all 4 workers gives both estimates; tr Σ > 0 always.
    assert_eq!(g2.iter().filter(|x| x.is_finite()).count(), 40, "{g2:?}");
    assert!(tr.iter().all(|x| x.is_finite() && *x > 0.0), "{tr:?}");
    let phi = gradcode::sim::efficiency::noise_scale(&g2, &tr).unwrap();
    // The full-batch profile has none.
    let full = results::read_rows(&full_batch, None).unwrap();
    assert!(full
        .column(results::Metric::GnsGradSq)
        .iter()
        .all(|x| x.is_nan()));

    let toml_path = workdir().join("tuned-batch.toml");
    let o = gradcode(&[
        "tune",
        "--profile",
        out.to_str().unwrap(),
        "--config-out",
        toml_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let text_out = text(&o.stdout);
    let line = text_out
        .lines()
        .find(|l| l.starts_with("gradient noise scale of the profile: B_noise ≈ "))
        .unwrap_or_else(|| panic!("no noise scale line: {text_out}"));
    assert!(
        line.contains(&format!("≈ {phi:.0} rows")),
        "{line} vs {phi}"
    );
    // 2000 rows over 4 partitions: 500 each, so 32 and 64 are allowed too.
    assert!(
        line.contains("batch candidates 4, 8, 16, 32, 64 "),
        "{line}"
    );
    let cfg: toml::Table = std::fs::read_to_string(&toml_path)
        .unwrap()
        .parse()
        .unwrap();
    let b = cfg["batch"].as_integer().unwrap();
    assert!([4, 8, 16, 32, 64].contains(&b), "{cfg}");
    let first = text_out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(first.contains(&format!("batch={b}")), "{first}");
    // Iterations to target follow the efficiency: the TOML's iterations are at least the
    // prediction for its batch (the profile's 40 at 16).
    let predicted = gradcode::sim::efficiency::iterations_at(phi, 40, 64.0, 4.0 * b as f64);
    assert!(
        cfg["iterations"].as_integer().unwrap() as u64 >= predicted,
        "{cfg}"
    );
    let f = run_five(&toml_path, "tuned-batch-run");
    assert_eq!(
        results::read_num_attr(&f, "config", "batch").unwrap(),
        b as f64
    );
}

/// `mpirun -np 5 gradcode train --config TOML --iterations 5` into workdir/NAME; its run.h5.
fn run_five(toml: &std::path::Path, name: &str) -> PathBuf {
    let run = workdir().join(name);
    let o = mpirun(
        5,
        &[
            "train",
            "--config",
            toml.to_str().unwrap(),
            "--iterations",
            "5",
            "--out",
            run.to_str().unwrap(),
        ],
        120,
    );
    assert!(o.status.success(), "{}", output_text(&o));
    run.join("run.h5")
}
