//! `gradcode codes show | verify` as a user runs them: exit codes, output, errors, /B files.

mod common;

use common::{assert_one_line_error, gradcode, text};

#[test]
fn verify_passes_for_valid_codes() {
    for (code, n, s) in [
        ("uncoded", "5", "0"),
        ("frc", "6", "2"),
        ("cyclic-repetition", "8", "3"),
        ("cyclic-mds", "8", "1"),
        ("cyclic-mds", "12", "3"),
        ("cyclic-mds", "9", "0"),
    ] {
        let o = gradcode(&["codes", "verify", "--code", code, "-n", n, "-s", s]);
        let out = text(&o.stdout);
        assert!(
            o.status.success(),
            "{code} {n} {s}: {out}{}",
            text(&o.stderr)
        );
        assert!(out.lines().any(|l| l == "PASSED"), "{out}");
        assert!(out.contains("sets checked"), "{out}");
        assert!(out.contains("worst condition"), "{out}");
    }
}

#[test]
fn verify_samples_large_codes() {
    let o = gradcode(&["codes", "verify", "--code", "frc", "-n", "30", "-s", "4"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("sample of 10000"), "{out}");
    assert!(out.contains("sets checked         10000"), "{out}");
}

#[test]
fn verify_ignore_stragglers_reports_an_approximation() {
    let o = gradcode(&[
        "codes",
        "verify",
        "--code",
        "ignore-stragglers",
        "-n",
        "6",
        "-s",
        "2",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("approximate"), "{out}");
    assert!(out.lines().any(|l| l == "PASSED"), "{out}");
}

#[test]
fn show_prints_matrix_and_assignment() {
    let o = gradcode(&["codes", "show", "--code", "frc", "-n", "4", "-s", "1"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("code frc: n = 4 workers, k = 4 partitions, s = 1"),
        "{out}"
    );
    assert!(out.contains("B (4 × 4"), "{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('w') && !l.contains(','))
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    let cells: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    assert_eq!(cells[0], ["w0", "1", "1", "0", "0"]);
    assert_eq!(cells[3], ["w3", "0", "0", "1", "1"]);
    // aligned: every matrix row has the same length
    assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{out}");
    assert!(out.contains("w2      2, 3"), "{out}");
}

#[test]
fn frc_with_non_dividing_s_is_a_one_line_error() {
    let o = gradcode(&["codes", "verify", "--code", "frc", "-n", "7", "-s", "1"]);
    let line = assert_one_line_error(&o);
    assert!(line.contains("must divide"), "{line}");
    assert!(line.contains("valid s for n = 7: 0, 6"), "{line}");
}

#[test]
fn cyclic_mds_with_even_n_minus_s_names_the_nearest_valid_s() {
    let o = gradcode(&[
        "codes",
        "show",
        "--code",
        "cyclic-mds",
        "-n",
        "8",
        "-s",
        "2",
    ]);
    let line = assert_one_line_error(&o);
    assert!(line.contains("s = 1 or s = 3"), "{line}");
}

#[test]
fn too_many_stragglers_is_a_one_line_error() {
    let o = gradcode(&[
        "codes",
        "verify",
        "--code",
        "cyclic-repetition",
        "-n",
        "4",
        "-s",
        "4",
    ]);
    let line = assert_one_line_error(&o);
    assert!(
        line.contains("s = 4 must be smaller than the number of workers n = 4"),
        "{line}"
    );
}

#[test]
fn show_out_writes_b_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("B.h5");
    let p = path.to_str().unwrap();
    let args = [
        "codes",
        "show",
        "--code",
        "cyclic-mds",
        "-n",
        "5",
        "-s",
        "2",
        "--out",
        p,
    ];
    let o = gradcode(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let f = hdf5::File::open(&path).unwrap();
    let ds = f.dataset("B").unwrap();
    let b: ndarray::Array2<f64> = ds.read_2d().unwrap();
    assert_eq!(b.dim(), (5, 5));
    assert_eq!(b[[0, 0]], b[[1, 1]]);
    assert_eq!(b[[0, 3]], 0.0);
    let code: hdf5::types::VarLenUnicode = ds.attr("code").unwrap().read_scalar().unwrap();
    assert_eq!(code.as_str(), "cyclic-mds");
    for (key, want) in [("n", 5u64), ("s", 2), ("seed", 1)] {
        let v: u64 = ds.attr(key).unwrap().read_scalar().unwrap();
        assert_eq!(v, want, "{key}");
    }
    drop(ds);
    drop(f);

    let before = std::fs::read(&path).unwrap();
    let again = [
        "codes", "show", "--code", "frc", "-n", "4", "-s", "1", "--out", p,
    ];
    let o = gradcode(&again);
    let line = assert_one_line_error(&o);
    assert!(
        line.contains("already exists") && line.contains("--force"),
        "{line}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let mut forced = again.to_vec();
    forced.push("--force");
    let o = gradcode(&forced);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let f = hdf5::File::open(&path).unwrap();
    let b: ndarray::Array2<f64> = f.dataset("B").unwrap().read_2d().unwrap();
    assert_eq!(b.dim(), (4, 4));
}

/// The per-s row of the approximate table: (sets, bound, one-step mean, one-step worst,
/// optimal mean, optimal worst); bound is NaN when printed as "-".
fn table_row(out: &str, s: usize) -> Vec<f64> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&s.to_string()))
        .unwrap_or_else(|| panic!("no row for s = {s}: {out}"));
    line.split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn verify_expander_range_prints_the_guide_table() {
    let o = gradcode(&[
        "codes", "verify", "--code", "expander", "-n", "50", "-s", "3..10", "--degree", "3",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.lines().any(|l| l == "PASSED"), "{out}");
    assert!(out.contains("λ = "), "{out}");
    assert!(out.contains("one-step mean"), "{out}");
    for s in 3..=10 {
        let r = table_row(&out, s);
        assert_eq!(r.len(), 6, "{out}");
        assert_eq!(r[0], 1000.0, "{out}");
        // optimal well under one-step, one-step under the bound
        assert!(
            r[4] < 0.75 * r[2] && r[2] < r[1] && r[5] <= r[1],
            "s = {s}: {out}"
        );
    }
    // GUIDE §3: s = 3: 1.62 / 1.01 / 0.26; s = 5: 2.14 / 1.33 / 0.48; s = 10: 3.21 / 1.99 / 1.07
    for (s, bound, one, opt) in [
        (3, 1.62, 1.01, 0.26),
        (5, 2.14, 1.33, 0.48),
        (10, 3.21, 1.99, 1.07),
    ] {
        let r = table_row(&out, s);
        assert!((r[1] - bound).abs() < 0.3, "s = {s}: {out}");
        assert!((r[2] - one).abs() < 0.3 * one, "s = {s}: {out}");
        assert!((r[4] - opt).abs() < 0.5 * opt, "s = {s}: {out}");
    }
}

#[test]
fn verify_other_approximate_codes_pass() {
    for args in [
        ["bgc", "20", "2..4", "--degree", "3"],
        ["frc-approx", "12", "2..5", "--degree", "3"],
        ["stochastic", "12", "3", "--straggle-prob", "0.2"],
    ] {
        let mut cmd = vec![
            "codes", "verify", "--code", args[0], "-n", args[1], "-s", args[2],
        ];
        cmd.extend_from_slice(&args[3..]);
        cmd.extend_from_slice(&["--sets", "200"]);
        let o = gradcode(&cmd);
        let out = text(&o.stdout);
        assert!(o.status.success(), "{args:?}: {out}{}", text(&o.stderr));
        assert!(out.lines().any(|l| l == "PASSED"), "{out}");
        // no bound for these codes
        let first: usize = args[2].split("..").next().unwrap().parse().unwrap();
        assert!(table_row(&out, first)[1].is_nan(), "{out}");
    }
}

#[test]
fn verify_exact_codes_accept_a_range() {
    let o = gradcode(&[
        "codes",
        "verify",
        "--code",
        "cyclic-mds",
        "-n",
        "9",
        "-s",
        "0..2",
    ]);
    let out = text(&o.stdout);
    // s = 1 has n − s even: every s is checked before anything is printed
    let line = assert_one_line_error(&o);
    assert!(line.contains("n − s odd"), "{line}");
    assert!(out.is_empty(), "{out}");
    let o = gradcode(&["codes", "verify", "--code", "frc", "-n", "6", "-s", "1..2"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.lines().filter(|l| *l == "PASSED").count(), 2, "{out}");
}

#[test]
fn invalid_approximate_parameters_are_one_line_errors() {
    for (args, want) in [
        (
            ["expander", "15", "2", "--degree", "3"],
            "n·d = 15·3 = 45 is odd",
        ),
        (
            ["expander", "6", "2", "--degree", "6"],
            "d = 6 must be smaller than the number of workers n = 6",
        ),
        (
            ["expander", "10", "3..12", "--degree", "3"],
            "s = 10 must be smaller than the number of workers n = 10",
        ),
        (
            ["cyclic-mds", "9", "2", "--degree", "3"],
            "--degree 3 applies only",
        ),
        (
            ["frc-approx", "10", "2", "--degree", "3"],
            "valid d for n = 10",
        ),
    ] {
        let mut cmd = vec![
            "codes", "verify", "--code", args[0], "-n", args[1], "-s", args[2],
        ];
        cmd.extend_from_slice(&args[3..]);
        let o = gradcode(&cmd);
        let line = assert_one_line_error(&o);
        assert!(line.contains(want), "{args:?}: {line}");
        assert!(text(&o.stdout).is_empty(), "{args:?}: {}", text(&o.stdout));
    }
    let o = gradcode(&[
        "codes", "show", "--code", "expander", "-n", "8", "-s", "1..3",
    ]);
    let line = assert_one_line_error(&o);
    assert!(line.contains("not the range 1..3"), "{line}");
    let o = gradcode(&[
        "codes", "verify", "--code", "expander", "-n", "8", "-s", "5..3",
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("is empty"), "{}", text(&o.stderr));
}

#[test]
fn show_expander_prints_lambda_and_a_regular_matrix() {
    let o = gradcode(&[
        "codes", "show", "--code", "expander", "-n", "8", "-s", "1", "--degree", "3", "--seed", "4",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("(seed 4)"), "{out}");
    assert!(out.contains("λ = "), "{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('w') && !l.contains(','))
        .collect();
    assert_eq!(rows.len(), 8, "{out}");
    for r in rows {
        assert_eq!(r.matches("0.3333").count(), 3, "{r}");
    }
}

#[test]
fn unknown_code_name_is_a_one_line_error_listing_the_codes() {
    let o = gradcode(&["codes", "show", "--code", "bogus", "-n", "4", "-s", "1"]);
    let line = assert_one_line_error(&o);
    assert_eq!(o.status.code(), Some(2), "{line}");
    assert!(line.contains("'bogus'"), "{line}");
    for code in [
        "uncoded",
        "ignore-stragglers",
        "frc",
        "cyclic-repetition",
        "cyclic-mds",
    ] {
        assert!(line.contains(code), "{code} not listed: {line}");
    }
}

#[test]
fn verify_exits_non_zero_when_a_set_misses_the_tolerance() {
    // The real cyclic MDS code loses digits past n ≈ 30 (GUIDE §3): at n = 61, s = 50 many
    // responder sets decode with relative errors of 1e-7..1e-5.
    let o = gradcode(&[
        "codes",
        "verify",
        "--code",
        "cyclic-mds",
        "-n",
        "61",
        "-s",
        "50",
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}{}", text(&o.stderr));
    assert!(out.lines().any(|l| l.starts_with("FAILED: ")), "{out}");
    assert!(!out.lines().any(|l| l == "PASSED"), "{out}");
    let line = assert_one_line_error(&o);
    assert!(line.contains("miss the tolerance"), "{line}");
}

#[test]
fn show_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // `codes show | head -c 16` on 0.5 MB of output: the reader goes away long before the end.
    let mut child = Command::new(common::BIN)
        .args(["codes", "show", "--code", "frc", "-n", "300", "-s", "2"])
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// The comm-efficient code (Ye & Abbe): show prints one column per (partition, piece) and the
/// s + m partitions of each worker; verify passes on every straggler set; a split that does not
/// fit n and s is one clear error line, exit 2, naming what is required.
#[test]
fn comm_efficient_show_verify_and_a_split_that_does_not_fit() {
    let run = |line: &str| gradcode(&line.split(' ').collect::<Vec<_>>());
    let o = run("codes show --code comm-efficient -n 5 -s 1 --split 2");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("B (5 × 10"), "{out}");
    assert!(out.contains("p4.1"), "{out}");
    assert!(out.contains("d = s + m = 3 partitions"), "{out}");
    assert!(out.contains("w3      3, 4, 0"), "{out}");
    for nsm in [
        "-n 8 -s 1 --split 2",
        "-n 8 -s 1 --split 4",
        "-n 10 -s 3 --split 4",
        "-n 7 -s 2 --split 1",
    ] {
        let o = run(&format!("codes verify --code comm-efficient {nsm}"));
        let out = text(&o.stdout);
        assert!(o.status.success(), "{nsm}: {out}");
        assert!(out.lines().any(|l| l == "PASSED"), "{out}");
    }
    let o = run("codes verify --code comm-efficient -n 8 -s 2 --split 7");
    assert_eq!(o.status.code(), Some(2));
    let line = assert_one_line_error(&o);
    assert!(
        line.contains("--split 7") && line.contains("between 1 and n − s = 6"),
        "{line}"
    );
}

/// The heterogeneity-aware code: show prints the speeds and more partitions on the faster
/// workers; verify passes on every straggler set for a range of s; speeds that do not fit n, or
/// speeds on another code, are one clear error line, exit 2.
#[test]
fn hetero_show_verify_and_speeds_that_do_not_fit() {
    let run = |line: &str| gradcode(&line.split(' ').collect::<Vec<_>>());
    let o = run("codes show --code hetero -n 6 -s 1 --worker-speeds 1,0.5,1,1,2,1");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("k = 48 partitions"), "{out}");
    assert!(out.contains("speeds 1,0.5,1,1,2,1"), "{out}");
    let loads: Vec<usize> = out
        .lines()
        .filter(|l| l.starts_with("  w") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take_while(|p| p.ends_with(','))
                .count()
                + 1
        })
        .collect();
    assert_eq!(loads.len(), 6, "{out}");
    assert_eq!(loads.iter().sum::<usize>(), 96, "{loads:?}");
    assert!(loads[4] > loads[0] && loads[0] > loads[1], "{loads:?}");
    let o = run("codes verify --code hetero -n 8 -s 0..3 --worker-speeds 1,1,0.5,0.5,1,1,1,2");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert_eq!(out.lines().filter(|l| *l == "PASSED").count(), 4, "{out}");
    for (line, needle) in [
        (
            "codes verify --code hetero -n 4 -s 1 --worker-speeds 1,1",
            "2 speeds for n = 4",
        ),
        (
            "codes verify --code frc -n 4 -s 1 --worker-speeds 1,1,1,1",
            "only to the hetero code",
        ),
        (
            "codes show --code hetero -n 3 -s 1 --worker-speeds 1,0,1",
            "not a number > 0",
        ),
    ] {
        let o = run(line);
        assert_eq!(o.status.code(), Some(2), "{line}");
        let err = assert_one_line_error(&o);
        assert!(err.contains(needle), "{line}: {err}");
    }
}
