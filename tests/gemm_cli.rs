//! `gradcode gemm` end to end: the per-layer GEMM shapes and flops of an MLP on a synthetic
//! dataset's shape, every row of the CSV, and bad input (one error line, exit 2).

use std::path::Path;
mod common;

use common::{assert_one_line_error, gradcode};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn gemm_reports_every_layer_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s.h5");
    let synth = gradcode(&[
        "data",
        "synth",
        "--kind",
        "logistic",
        "--rows",
        "100",
        "--features",
        "40",
        "--seed",
        "3",
        "--out",
        s(&data),
    ]);
    assert!(synth.status.success());
    let o = gradcode(&[
        "gemm",
        "--data",
        s(&data),
        "--hidden",
        "8,4",
        "--rows",
        "10",
        "--repeats",
        "3",
        "--csv",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        ["layer", "gemms", "mflop", "model_ms", "dgemm_ms", "fraction"]
    );
    // 40-8-4-2 (binary: two outputs) on 10 rows: 2 GEMMs for the first layer, 3 after it.
    let layers: Vec<(&str, &str, f64)> = rows[1..]
        .iter()
        .map(|r| (r[0], r[1], r[2].parse().unwrap_or(f64::NAN)))
        .collect();
    let mflop = |f: usize| f as f64 / 1e6;
    assert_eq!(layers[0].0, "dense 40-8");
    assert_eq!(layers[0].1, "2");
    assert!((layers[0].2 - mflop(2 * 2 * 10 * 40 * 8)).abs() < 1e-3);
    assert_eq!((layers[1].0, layers[1].1), ("dense 8-4", "3"));
    assert_eq!((layers[2].0, layers[2].1), ("dense 4-2", "3"));
    assert_eq!((layers[3].0, layers[3].1), ("pass", "8"));
    let total = 2 * 10 * (2 * 40 * 8 + 3 * 8 * 4 + 3 * 4 * 2);
    assert!((layers[3].2 - mflop(total)).abs() < 1e-3);
    for r in &rows[1..5] {
        let t: Vec<f64> = r[3..].iter().map(|v| v.parse().unwrap()).collect();
        assert!(t.iter().all(|v| *v >= 0.0), "{r:?}");
    }
    assert_eq!(rows[5][0], "kfac_factors");
    assert!(rows[5][3].parse::<f64>().unwrap() >= 0.0);
    assert_eq!(rows.len(), 6);
    for (args, want) in [
        (vec!["--model", "logistic"], "use mlp or cnn"),
        (vec!["--rows", "0"], "--rows = 0"),
        (vec!["--repeats", "0"], "--repeats = 0"),
        (vec!["--hidden", "0"], "--hidden"),
        (
            vec!["--model", "cnn", "--conv-filters", "0,4"],
            "--conv-filters",
        ),
        (vec!["--model", "cnn"], "needs images"),
    ] {
        let mut a = vec!["gemm", "--data", s(&data)];
        a.extend(args);
        let o = gradcode(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}");
        let line = assert_one_line_error(&o);
        assert!(line.contains(want), "{a:?}: {line}");
    }
}
