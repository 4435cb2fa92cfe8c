//! `gradcode data ...` end to end: the binary on the real datasets (skipped when
//! `../shared/datasets` is absent) and on bad input (one clear error line, no panic).

use std::path::{Path, PathBuf};
mod common;

use common::{assert_one_line_error, gradcode};

use gradcode::data::{Features, Task};
use gradcode::io::dataset::{self, Split};

const DATASETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn ok(args: &[&str]) -> String {
    let out = gradcode(args);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{args:?} failed:\n{so}\n{se}");
    so.into_owned()
}

/// Non-zero exit, exactly one stderr line `gradcode: error: ...` containing `want`, no panic.
fn fails(args: &[&str], want: &str) -> String {
    let line = assert_one_line_error(&gradcode(args));
    assert!(line.contains(want), "{args:?}: wanted '{want}' in:\n{line}");
    line
}

fn datasets() -> Option<PathBuf> {
    let p = PathBuf::from(DATASETS);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {DATASETS} is absent");
        None
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn label_counts(y: &ndarray::Array1<f64>, labels: &[f64]) -> Vec<usize> {
    labels
        .iter()
        .map(|l| y.iter().filter(|&&v| v == *l).count())
        .collect()
}

#[test]
fn a9a_converts_to_sparse_binary() {
    let Some(d) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a9a.h5");
    let input = d.join("a9a/a9a");
    let so = ok(&[
        "data",
        "convert",
        "--format",
        "libsvm",
        "--input",
        s(&input),
        "--license",
        "CC BY 4.0",
        "--out",
        s(&out),
    ]);
    assert!(so.contains("32561 x 123 (CSR, 451592 non-zeros)"), "{so}");
    let info = dataset::inspect(&out).unwrap();
    assert_eq!(
        (info.n_rows, info.n_features, info.nnz),
        (32_561, 123, 451_592)
    );
    assert!(info.sparse);
    assert_eq!(info.task, Task::Binary);
    let attr = |k: &str| {
        info.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attr("license").as_deref(), Some("CC BY 4.0"));
    assert_eq!(attr("sha256").map(|h| h.len()), Some(64));
    let all = dataset::read_all(&out, Split::Train).unwrap();
    assert!(matches!(all.x, Features::Sparse(_)));
    assert_eq!(label_counts(&all.y, &[-1.0, 1.0]), vec![24_720, 7_841]);
    let so = ok(&["data", "inspect", s(&out)]);
    assert!(so.contains("train: 32561 x 123 (CSR, nnz 451592"), "{so}");
    assert!(so.contains("-1: 24720") && so.contains("1: 7841"), "{so}");
    // A worker's shard equals the same rows of the whole file.
    let (shard, local) = dataset::read_partitions(&out, Split::Train, 32_561, 8, &[7, 0]).unwrap();
    assert_eq!(local, vec![0..4070, 4070..8141]);
    let parts = gradcode::data::partition_ranges(32_561, 8).unwrap();
    assert_eq!(
        shard.slice_rows(local[0].clone()),
        all.slice_rows(parts[7].clone())
    );
    assert_eq!(
        shard.slice_rows(local[1].clone()),
        all.slice_rows(parts[0].clone())
    );
}

#[test]
fn mnist_test_split_converts_to_dense_multiclass() {
    let Some(d) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mnist.h5");
    let (img, lab) = (
        d.join("mnist/t10k-images-idx3-ubyte.gz"),
        d.join("mnist/t10k-labels-idx1-ubyte.gz"),
    );
    ok(&[
        "data",
        "convert",
        "--format",
        "idx",
        "--input",
        s(&img),
        "--labels",
        s(&lab),
        "--out",
        s(&out),
    ]);
    let info = dataset::inspect(&out).unwrap();
    assert_eq!(
        (info.n_rows, info.n_features, info.sparse),
        (10_000, 784, false)
    );
    assert_eq!(info.task, Task::Multiclass { classes: 10 });
    let all = dataset::read_all(&out, Split::Train).unwrap();
    let classes: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(
        label_counts(&all.y, &classes),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let Features::Dense(x) = &all.x else {
        panic!("dense expected")
    };
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(x.iter().any(|&v| v == 1.0));
}

#[test]
fn reuters_bz2_converts_sparse_with_test_split() {
    let Some(d) = datasets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reuters.h5");
    let (trn, tst) = (
        d.join("reuters_lasvm/reuters.trn.bz2"),
        d.join("reuters_lasvm/reuters.tst.bz2"),
    );
    ok(&[
        "data",
        "convert",
        "--format",
        "libsvm",
        "--input",
        s(&trn),
        "--test-input",
        s(&tst),
        "--out",
        s(&out),
    ]);
    let info = dataset::inspect(&out).unwrap();
    assert_eq!((info.n_rows, info.test_rows), (7_770, Some(3_299)));
    assert_eq!(info.n_features, 8_315);
    assert!(info.sparse);
    assert_eq!(info.task, Task::Binary);
    let test = dataset::read_all(&out, Split::Test).unwrap();
    assert_eq!((test.n_rows(), test.n_features()), (3_299, 8_315));
    assert!(test.x.is_sparse());
}

#[test]
fn synth_round_trips_through_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.h5");
    ok(&[
        "data",
        "synth",
        "--kind",
        "logistic",
        "--rows",
        "300",
        "--features",
        "40",
        "--sparsity",
        "0.1",
        "--test-rows",
        "50",
        "--seed",
        "4",
        "--out",
        s(&out),
    ]);
    let so = ok(&["data", "inspect", s(&out)]);
    assert!(so.contains("train: 300 x 40 (CSR"), "{so}");
    assert!(so.contains("test: 50 x 40 (CSR"), "{so}");
    let a = dataset::read_all(&out, Split::Train).unwrap();
    let out2 = tmp.path().join("s2.h5");
    ok(&[
        "data",
        "synth",
        "--kind",
        "logistic",
        "--rows",
        "300",
        "--features",
        "40",
        "--sparsity",
        "0.1",
        "--test-rows",
        "50",
        "--seed",
        "4",
        "--out",
        s(&out2),
    ]);
    assert_eq!(dataset::read_all(&out2, Split::Train).unwrap(), a);
    fails(
        &[
            "data",
            "synth",
            "--kind",
            "linear",
            "--rows",
            "10",
            "--features",
            "3",
            "--sparsity",
            "2",
            "--out",
            s(&tmp.path().join("bad.h5")),
        ],
        "--sparsity must be in (0, 1]",
    );
}

/// `--zipf A`: skewed one-hot-like columns, round(sparsity × features) a row, recorded in the
/// dataset's source; an exponent that is not > 0 is one clear error line.
#[test]
fn synth_zipf_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("z.h5");
    let args = "data synth --kind logistic --rows 500 --features 2000 --sparsity 0.005 --zipf 1.1 --seed 2 --out";
    let mut a: Vec<&str> = args.split(' ').collect();
    a.push(s(&out));
    ok(&a);
    let d = dataset::read_all(&out, Split::Train).unwrap();
    assert_eq!(d.x.nnz(), 500 * 10);
    let so = ok(&["data", "inspect", s(&out)]);
    assert!(so.contains("zipf=1.1"), "{so}");
    let bad_args = args.replace("--zipf 1.1", "--zipf 0");
    let mut bad: Vec<&str> = bad_args.split(' ').collect();
    bad.push(s(&out));
    bad.push("--force");
    fails(&bad, "--zipf must be a finite exponent > 0");
}

#[test]
fn bad_input_gives_one_clear_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Path::new(FIXTURES);
    let out = tmp.path().join("o.h5");
    fails(
        &[
            "data",
            "convert",
            "--format",
            "libsvm",
            "--input",
            s(&tmp.path().join("nope")),
            "--out",
            s(&out),
        ],
        "nope: file not found",
    );
    fails(
        &["data", "inspect", s(&tmp.path().join("nope.h5"))],
        "file not found",
    );
    fails(
        &["data", "inspect", s(&fx.join("not_hdf5.h5"))],
        "not an HDF5 file or unreadable (no HDF5 signature)",
    );
    fails(
        &[
            "data",
            "convert",
            "--format",
            "csv",
            "--input",
            s(&fx.join("nan.csv")),
            "--out",
            s(&out),
        ],
        "nan.csv:3: non-finite value 'NaN' in column 'x2'",
    );
    fails(
        &[
            "data",
            "convert",
            "--format",
            "libsvm",
            "--task",
            "binary",
            "--input",
            s(&fx.join("label2.libsvm")),
            "--out",
            s(&out),
        ],
        "label2.libsvm:2: label 2 is not valid for a binary task",
    );
    fails(
        &[
            "data",
            "convert",
            "--format",
            "libsvm",
            "--input",
            s(&fx.join("unsorted.libsvm")),
            "--out",
            s(&out),
        ],
        "unsorted.libsvm:2: feature indices are not increasing (2 after 3)",
    );
    fails(
        &[
            "data",
            "convert",
            "--format",
            "idx",
            "--input",
            s(&fx.join("nan.csv")),
            "--labels",
            s(&fx.join("nan.csv")),
            "--out",
            s(&out),
        ],
        "bad IDX magic",
    );
    assert!(!out.exists(), "no output after failures");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "no temporary files left"
    );

    // An existing output is refused without --force and left untouched.
    std::fs::write(&out, b"precious").unwrap();
    let csv = tmp.path().join("ok.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,4\n").unwrap();
    fails(
        &[
            "data",
            "convert",
            "--format",
            "csv",
            "--input",
            s(&csv),
            "--out",
            s(&out),
        ],
        "already exists (pass --force to overwrite)",
    );
    fails(
        &[
            "data",
            "synth",
            "--kind",
            "linear",
            "--rows",
            "5",
            "--features",
            "2",
            "--out",
            s(&out),
        ],
        "already exists",
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    ok(&[
        "data",
        "convert",
        "--format",
        "csv",
        "--input",
        s(&csv),
        "--out",
        s(&out),
        "--force",
    ]);
    assert_eq!(dataset::inspect(&out).unwrap().n_rows, 2);
}

/// `gradcode data convert --format csv --input CSV EXTRA --out OUT --force`, which must succeed;
/// returns its stderr.
fn convert_csv(csv: &Path, extra: &[&str], out: &Path) -> String {
    let mut args = vec!["data", "convert", "--format", "csv", "--input", s(csv)];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", s(out), "--force"]);
    let o = gradcode(&args);
    let se = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{args:?} failed:\n{se}");
    se
}

/// A CSV converted without `--label-column` says which column became the label, unless its
/// header names it as the label.
#[test]
fn csv_default_label_column_is_named_in_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.h5");
    let csv = tmp.path().join("nolabel.csv");
    std::fs::write(&csv, "x1,x2,x3\n1,2,3.5\n4,5,6.25\n7,8,9\n").unwrap();
    let convert = |extra: &[&str]| convert_csv(&csv, extra, &out);
    let err = convert(&[]);
    assert!(
        err.contains("the last column 'x3' is used as the label") && err.contains("--label-column"),
        "{err}"
    );
    assert_eq!(
        dataset::read_all(&out, Split::Train).unwrap().y.to_vec(),
        [3.5, 6.25, 9.0]
    );
    let err = convert(&["--label-column", "x3"]);
    assert!(!err.contains("--label-column"), "{err}");
    std::fs::write(&csv, "x1,x2,Target\n1,2,3.5\n4,5,6.25\n7,8,9\n").unwrap();
    let err = convert(&[]);
    assert!(!err.contains("--label-column"), "{err}");
}

/// 0/1 CSV labels stay regression targets with a warning naming `--task binary`; logistic
/// regression on that file says how to convert it; with `--task binary` it trains.
#[test]
fn csv_two_valued_labels_point_to_task_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.h5");
    let csv = tmp.path().join("zo.csv");
    let mut text = String::from("a,b,label\n");
    for i in 0..40 {
        let y = i % 2;
        text.push_str(&format!("{},{},{y}\n", i as f64 * 0.1, (y as f64) - 0.3));
    }
    std::fs::write(&csv, text).unwrap();
    let convert = |extra: &[&str]| convert_csv(&csv, extra, &out);
    let err = convert(&[]);
    assert!(
        err.contains("labels in column 'label' are only 0 and 1") && err.contains("--task binary"),
        "{err}"
    );
    assert_eq!(dataset::inspect(&out).unwrap().task, Task::Regression);
    let run = tmp.path().join("run");
    let train = [
        "train",
        "--reference",
        "--model",
        "logistic",
        "--iterations",
        "2",
    ];
    let mut args = train.to_vec();
    args.extend_from_slice(&["--data", s(&out), "--out", s(&run), "--force"]);
    // `train` logs before it fails (as root it also warns): its last stderr line is the error.
    let o = gradcode(&args);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("gradcode: error: ")
            && line.contains("cannot train on a regression dataset")
            && line.contains("gradcode data convert ... --task binary"),
        "{err}"
    );
    let err = convert(&["--task", "binary"]);
    assert!(!err.contains("--task binary"), "{err}");
    assert_eq!(dataset::inspect(&out).unwrap().task, Task::Binary);
    ok(&args);
}

/// A user's own matrix (issue 18) is checked by the real validator child: an h5py-like file is
/// valid; ambiguous, bad or non-HDF5 files get the child's one-line reason.
#[test]
fn matrix_child_checks_a_users_matrix() {
    use gradcode::io::matrix::MatrixSource;
    use gradcode::io::validate::{run_matrix_child, Limits, Outcome};
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.h5");
    common::h5_write(&a, false, |f| {
        let m = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i + j) as f64);
        f.new_dataset_builder().with_data(&m).create("A").unwrap();
        let g = f.create_group("grp").unwrap();
        let mut bad = ndarray::Array2::<f64>::zeros((2, 2));
        bad[[1, 0]] = f64::INFINITY;
        g.new_dataset_builder().with_data(&bad).create("M").unwrap();
        let t = ndarray::Array3::<f64>::zeros((2, 2, 2));
        g.new_dataset_builder().with_data(&t).create("T").unwrap();
    });
    let bin = Path::new(common::BIN);
    let run = |src: &MatrixSource| run_matrix_child(bin, src, &Limits::default()).unwrap();
    let at = |object: &str| {
        format!("{}:{object}", a.display())
            .parse::<MatrixSource>()
            .unwrap()
    };
    let r = run(&at("/A"));
    assert_eq!(r.outcome, Outcome::Valid, "{r:?}");
    assert!(
        r.stdout
            .contains("valid matrix /A (3 x 4, dense, every value read)"),
        "{}",
        r.stdout
    );
    for (src, want) in [
        (
            MatrixSource::file(&a),
            "holds 2 matrices (/A, /grp/M): name one as",
        ),
        (
            at("/grp/M"),
            "matrix /grp/M contains a non-finite value at row 1",
        ),
        (at("/grp/T"), "/grp/T has rank 3 (expected 2)"),
        (at("/B"), "no object /B in the file"),
    ] {
        let r = run(&src);
        match &r.outcome {
            Outcome::Invalid(m) => assert!(m.contains(want), "{src}: {m}"),
            other => panic!("{src}: expected invalid, got {other:?}"),
        }
    }
    // Not HDF5: refused before libhdf5 sees it, with the file named.
    let text = Path::new(FIXTURES).join("not_hdf5.h5");
    let e = run(&MatrixSource::file(&text))
        .into_result(&text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not_hdf5.h5: not an HDF5 file or unreadable (no HDF5 signature)"),
        "{e}"
    );
}
