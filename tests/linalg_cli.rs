//! `gradcode codes cond` as a user runs it: output, numbers, errors.

mod common;

use common::{assert_one_line_error, gradcode, text};

/// The value printed after `label` on its line.
fn figure(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no '{label}' in {out}"));
    line[label.len()..].trim().parse().expect("a number")
}

#[test]
fn cond_prints_worst_and_mean() {
    let o = gradcode(&[
        "codes", "cond", "--family", "rotation", "-n", "12", "-k", "10",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("checked all C(12, 10) = 66 subsets"), "{out}");
    let worst = figure(&out, "worst cond");
    let mean = figure(&out, "mean cond");
    assert!(worst >= mean && mean >= 1.0 && worst < 100.0, "{out}");
    assert!(out.contains("worst subset"), "{out}");
}

#[test]
fn cond_shows_vandermonde_growth() {
    let o = gradcode(&[
        "codes",
        "cond",
        "--family",
        "mds-vandermonde",
        "-n",
        "24",
        "-k",
        "20",
        "--max-subsets",
        "500",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("sample of 500"), "{out}");
    assert!(figure(&out, "worst cond") > 1e8, "{out}");
}

#[test]
fn cond_table_of_all_families() {
    let o = gradcode(&["codes", "cond", "--family", "all", "-n", "8", "-k", "6"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    for f in [
        "replication",
        "vandermonde",
        "chebyshev",
        "rotation",
        "circulant",
        "systematic",
    ] {
        assert!(out.lines().any(|l| l.starts_with(f)), "{f}: {out}");
    }
}

#[test]
fn cond_bad_family_is_one_error_line() {
    let o = gradcode(&[
        "codes",
        "cond",
        "--family",
        "vandermonde2",
        "-n",
        "8",
        "-k",
        "6",
    ]);
    let line = assert_one_line_error(&o);
    assert!(
        line.contains("vandermonde2") && line.contains("rotation"),
        "{line}"
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn cond_bad_sizes_are_one_error_line() {
    let o = gradcode(&[
        "codes", "cond", "--family", "rotation", "-n", "4", "-k", "6",
    ]);
    let line = assert_one_line_error(&o);
    assert!(line.contains("k ≤ n"), "{line}");
}
