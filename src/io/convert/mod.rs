//! Converters from LIBSVM, IDX and CSV text (gzip / bzip2 read transparently) into [`crate::data::Dataset`].
//!
//! Input files are hostile (GUIDE §5, RELIABILITY BI-5/BI-6): every malformed input gets a
//! specific error naming the file and line, lines are capped at [`MAX_LINE`] bytes, counts are
//! capped, and nothing is allocated beyond what the input actually holds (IDX payloads are read
//! incrementally up to the declared size, never pre-allocated from a header).
//!
//! Compression is detected from magic bytes (`1f 8b` gzip, `BZh` bzip2), not the file name.
//! LIBSVM stays sparse (CSR) end to end. One file per format ([`libsvm`], [`idx`], [`csv`]:
//! parsing and the files each reads); [`input`] holds the shared plumbing, and this module the
//! options, the task inference and the assembly of parsed splits into datasets ([`convert()`]).
//!
//! Not done here: writing the dataset file (see [`super::dataset::write()`]).

pub mod csv;
pub mod idx;
pub mod input;
pub mod libsvm;

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};

pub use self::csv::parse_csv;
pub use self::idx::parse_idx;
use self::input::perr;
pub use self::input::{open_input, sha256_file};
pub use self::libsvm::parse_libsvm;
use super::dataset::{DatasetMeta, MAX_BYTES, MAX_FEATURES};
use super::IoError;
use crate::data::{CsrMatrix, DataError, Dataset, Features, Task};

/// Longest accepted text line (bytes, before decoding).
pub const MAX_LINE: usize = 4 << 20;
/// Most stored entries of one converted split (12 bytes each in CSR).
pub(crate) const MAX_NNZ: u64 = MAX_BYTES / 12;

/// Input text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Libsvm,
    Idx,
    Csv,
}

/// The task asked for on the command line (`None` in [`ConvertOptions`]: inferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskChoice {
    Binary,
    Regression,
    Multiclass,
}

/// Everything `gradcode data convert` needs besides the output path.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub format: InputFormat,
    pub input: PathBuf,
    /// IDX only: labels of `input`.
    pub labels: Option<PathBuf>,
    pub test_input: Option<PathBuf>,
    /// IDX only: labels of `test_input`.
    pub test_labels: Option<PathBuf>,
    /// LIBSVM: number of features (default: the largest index over all splits).
    pub features: Option<usize>,
    /// Task (default: binary for LIBSVM with ±1 or 0/1 labels, regression for other LIBSVM and
    /// CSV, multiclass for IDX).
    pub task: Option<TaskChoice>,
    /// CSV: label column by name or 0-based position (default: last).
    pub label_column: Option<String>,
    /// IDX: divide pixels by 255.
    pub scale: bool,
    pub license: Option<String>,
}

/// Converted splits and their provenance.
#[derive(Debug, Clone)]
pub struct Converted {
    pub train: Dataset,
    pub test: Option<Dataset>,
    pub meta: DatasetMeta,
    /// What the user may want to change, one line each (the caller prints them): a CSV label
    /// column taken by default, ±1 or 0/1 CSV labels kept as regression targets.
    pub warnings: Vec<String>,
}

// ------------------------------------------------------------------------------------------------
// Parsed splits before the task is decided

#[derive(Debug, Clone)]
pub(crate) enum RawX {
    /// CSR with 0-based column indices; `max_col` = largest 1-based index seen.
    Sparse {
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f64>,
        max_col: usize,
    },
    Dense(Array2<f64>),
}

/// One parsed split: features, labels, and where each row came from.
#[derive(Debug, Clone)]
pub struct RawSplit {
    pub(crate) x: RawX,
    pub(crate) y: Vec<f64>,
    /// Source line of each row (0 when there are no lines, as in IDX).
    pub(crate) lines: Vec<u64>,
    pub(crate) path: PathBuf,
}

impl RawSplit {
    pub fn n_rows(&self) -> usize {
        self.y.len()
    }
    pub fn labels(&self) -> &[f64] {
        &self.y
    }
}

/// The parsed splits of one conversion and every file read, in order (for provenance).
pub(crate) struct Parsed {
    pub(crate) train: RawSplit,
    pub(crate) test: Option<RawSplit>,
    pub(crate) inputs: Vec<PathBuf>,
    /// See [`Converted::warnings`].
    pub(crate) warnings: Vec<String>,
    /// The image shape of the rows (IDX).
    pub(crate) image: Option<crate::data::ImageShape>,
}

/// Parse `opts.input` and, when given, `opts.test_input` with `parse` (LIBSVM and CSV, which
/// refuse IDX's `--labels` / `--test-labels`).
fn parse_train_test(
    opts: &ConvertOptions,
    mut parse: impl FnMut(&Path) -> Result<RawSplit, IoError>,
) -> Result<Parsed, IoError> {
    refuse_idx_labels(opts)?;
    let train = parse(&opts.input)?;
    let test = opts.test_input.as_deref().map(&mut parse).transpose()?;
    let inputs = std::iter::once(&opts.input)
        .chain(&opts.test_input)
        .cloned()
        .collect();
    Ok(Parsed {
        train,
        test,
        inputs,
        warnings: Vec::new(),
        image: None,
    })
}

/// `--labels` / `--test-labels` belong to IDX input only.
fn refuse_idx_labels(opts: &ConvertOptions) -> Result<(), IoError> {
    if opts.labels.is_some() || opts.test_labels.is_some() {
        return Err(IoError::Data {
            path: opts.input.clone(),
            source: DataError::Invalid("--labels / --test-labels are for IDX input only".into()),
        });
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Task inference and assembly

/// `Some("-1 and +1")` or `Some("0 and 1")` when every label of `splits` is in that pair (the
/// labels a binary task accepts), else `None`.
fn two_valued(splits: &[&RawSplit]) -> Option<&'static str> {
    let labels = || splits.iter().flat_map(|s| s.y.iter().copied());
    if labels().all(|v| v == 1.0 || v == -1.0) {
        Some("-1 and +1")
    } else if labels().all(|v| v == 0.0 || v == 1.0) {
        Some("0 and 1")
    } else {
        None
    }
}

fn infer_task(
    format: InputFormat,
    choice: Option<TaskChoice>,
    splits: &[&RawSplit],
) -> Result<Task, IoError> {
    let labels = || splits.iter().flat_map(|s| s.y.iter().copied());
    let choice = choice.unwrap_or(match format {
        InputFormat::Idx => TaskChoice::Multiclass,
        InputFormat::Csv => TaskChoice::Regression,
        InputFormat::Libsvm => {
            if two_valued(splits).is_some() {
                TaskChoice::Binary
            } else {
                TaskChoice::Regression
            }
        }
    });
    Ok(match choice {
        TaskChoice::Binary => Task::Binary,
        TaskChoice::Regression => Task::Regression,
        TaskChoice::Multiclass => {
            // Labels are checked per row later; here only the class count.
            let max = labels().fold(f64::NEG_INFINITY, f64::max);
            let from_labels = if max.is_finite() && max >= 0.0 && max < MAX_FEATURES as f64 {
                max as usize + 1
            } else {
                0
            };
            let classes = if format == InputFormat::Idx {
                from_labels.max(10)
            } else {
                from_labels
            };
            if classes < 2 {
                let first = splits.first().map(|s| s.path.clone()).unwrap_or_default();
                return Err(IoError::Data {
                    path: first,
                    source: DataError::Invalid(format!(
                        "multiclass needs labels 0..classes-1 with at least 2 classes (largest label: {max})"
                    )),
                });
            }
            Task::Multiclass { classes }
        }
    })
}

fn finish(raw: RawSplit, n_features: usize, task: Task) -> Result<Dataset, IoError> {
    let path = raw.path.clone();
    let lines = raw.lines;
    let x = match raw.x {
        RawX::Dense(x) => Features::Dense(x),
        RawX::Sparse {
            indptr,
            indices,
            values,
            ..
        } => Features::Sparse(
            CsrMatrix::new(lines.len(), n_features, indptr, indices, values).map_err(|e| {
                IoError::Data {
                    path: path.clone(),
                    source: e,
                }
            })?,
        ),
    };
    let with_line = |row: usize, detail: String| -> IoError {
        match lines.get(row) {
            Some(&ln) if ln > 0 => perr(&path, ln, detail),
            _ => IoError::Data {
                path: path.clone(),
                source: DataError::Invalid(format!("row {row}: {detail}")),
            },
        }
    };
    Dataset::new(x, Array1::from(raw.y), task).map_err(|e| match e {
        DataError::BadLabel {
            label, row, hint, ..
        } => with_line(
            row,
            format!(
                "label {label} is not valid for a {} task{hint}",
                task.name()
            ),
        ),
        DataError::NonFinite { what, row } => {
            with_line(row, format!("{what} contains a non-finite value"))
        }
        other => IoError::Data {
            path: path.clone(),
            source: other,
        },
    })
}

fn required<'a>(p: &'a Option<PathBuf>, flag: &str, why: &str) -> Result<&'a Path, IoError> {
    p.as_deref().ok_or_else(|| IoError::Data {
        path: PathBuf::from(flag),
        source: DataError::Invalid(format!("{flag} is required {why}")),
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Refuses an input without data rows.
fn check_not_empty(opts: &ConvertOptions, parsed: &Parsed) -> Result<(), IoError> {
    if parsed.train.n_rows() == 0 {
        return Err(IoError::Data {
            path: opts.input.clone(),
            source: DataError::Invalid("no data rows".into()),
        });
    }
    if let Some(t) = &parsed.test {
        if t.n_rows() == 0 {
            return Err(IoError::Data {
                path: t.path.clone(),
                source: DataError::Invalid("no data rows in the test input".into()),
            });
        }
    }
    Ok(())
}

/// The number of features: LIBSVM's `--features` or its largest index; the width of CSV and IDX
/// files, which must agree between splits and with `--features` when given.
fn n_features(opts: &ConvertOptions, parsed: &Parsed) -> Result<usize, IoError> {
    let width = |s: &RawSplit| match &s.x {
        RawX::Sparse { max_col, .. } => *max_col,
        RawX::Dense(x) => x.ncols(),
    };
    let (train, test) = (&parsed.train, parsed.test.as_ref());
    let seen = width(train).max(test.map_or(0, width));
    let n = match (opts.format, opts.features) {
        (InputFormat::Libsvm, Some(f)) => f,
        (InputFormat::Libsvm, None) => seen,
        _ => {
            if let Some(t) = test {
                if width(t) != width(train) {
                    return Err(IoError::Data {
                        path: t.path.clone(),
                        source: DataError::ShapeMismatch {
                            what: "features of the train and test inputs".into(),
                            left: width(train),
                            right: width(t),
                        },
                    });
                }
            }
            let w = width(train);
            match opts.features {
                Some(f) if f != w => {
                    return Err(IoError::Data {
                        path: opts.input.clone(),
                        source: DataError::Invalid(format!(
                            "--features {f} disagrees with the {w} feature columns of the \
                             input (CSV and IDX files carry their width; --features sets it \
                             for LIBSVM)"
                        )),
                    });
                }
                _ => w,
            }
        }
    };
    if n == 0 {
        return Err(IoError::Data {
            path: opts.input.clone(),
            source: DataError::Invalid("no features (every row is empty; give --features)".into()),
        });
    }
    Ok(n)
}

/// Provenance: the format and file names read, their SHA-256 sums, the license.
fn provenance(opts: &ConvertOptions, inputs: &[PathBuf]) -> Result<DatasetMeta, IoError> {
    let sha: Result<Vec<String>, IoError> = inputs.iter().map(|p| sha256_file(p)).collect();
    let fmt = match opts.format {
        InputFormat::Libsvm => "libsvm",
        InputFormat::Idx => "idx",
        InputFormat::Csv => "csv",
    };
    Ok(DatasetMeta {
        source: format!(
            "{fmt}: {}",
            inputs
                .iter()
                .map(|p| file_name(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        sha256: sha?.join(","),
        license: opts
            .license
            .clone()
            .unwrap_or_else(|| "unspecified".to_string()),
        image: None,
    })
}

/// Convert the input files described by `opts` into train (and test) datasets with provenance.
pub fn convert(opts: &ConvertOptions) -> Result<Converted, IoError> {
    let parsed = match opts.format {
        InputFormat::Libsvm => libsvm::read_splits(opts)?,
        InputFormat::Csv => csv::read_splits(opts)?,
        InputFormat::Idx => idx::read_splits(opts)?,
    };
    check_not_empty(opts, &parsed)?;
    let n_features = n_features(opts, &parsed)?;
    let splits: Vec<&RawSplit> = std::iter::once(&parsed.train)
        .chain(parsed.test.as_ref())
        .collect();
    let task = infer_task(opts.format, opts.task, &splits)?;
    let Parsed {
        train,
        test,
        inputs,
        warnings,
        image,
    } = parsed;
    let train = finish(train, n_features, task)?;
    let test = test.map(|t| finish(t, n_features, task)).transpose()?;
    let meta = DatasetMeta {
        image,
        ..provenance(opts, &inputs)?
    };
    Ok(Converted {
        train,
        test,
        meta,
        warnings,
    })
}

/// Helpers shared by the converters' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::fs;
    use std::io::Cursor;
    use std::path::{Path, PathBuf};

    use super::{parse_libsvm, ConvertOptions, InputFormat, IoError, RawSplit};

    pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    pub(crate) fn opts(format: InputFormat, input: PathBuf) -> ConvertOptions {
        ConvertOptions {
            format,
            input,
            labels: None,
            test_input: None,
            test_labels: None,
            features: None,
            task: None,
            label_column: None,
            scale: true,
            license: None,
        }
    }

    pub(crate) fn p() -> PathBuf {
        PathBuf::from("in.txt")
    }

    pub(crate) fn libsvm(text: &[u8], features: Option<usize>) -> Result<RawSplit, IoError> {
        parse_libsvm(Cursor::new(text.to_vec()), &p(), features)
    }

    pub(crate) fn idx(magic: [u8; 4], dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = magic.to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{idx, libsvm, p, write};
    use super::*;
    use std::io::Cursor;

    /// Seeded random mutations of valid inputs: every parser returns (Ok or a clear error),
    /// never panics.
    #[test]
    fn mutated_inputs_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mutate = |src: &[u8], rng: &mut rand_chacha::ChaCha8Rng| {
            let mut b = src.to_vec();
            for _ in 0..rng.gen_range(1..6) {
                match rng.gen_range(0..3) {
                    0 if !b.is_empty() => {
                        let i = rng.gen_range(0..b.len());
                        b[i] = rng.gen();
                    }
                    1 if !b.is_empty() => {
                        let i = rng.gen_range(0..b.len());
                        b.truncate(i);
                    }
                    _ => {
                        let i = rng.gen_range(0..=b.len());
                        let tok: &[u8] = [
                            &b":"[..],
                            b" ",
                            b"\n",
                            b"-",
                            b"0",
                            b"99999999999999999999",
                            b"e",
                            b",",
                        ][rng.gen_range(0..8)];
                        b.splice(i..i, tok.iter().copied());
                    }
                }
            }
            b
        };
        let svm = b"+1 1:0.5 3:2\n-1 2:1 7:-1e3\n0.5 4:1\n";
        let csv = b"a,b,c\n1,2,3\n4.5,-6,7e2\n";
        let dir = tempfile::tempdir().unwrap();
        let img = idx([0, 0, 8, 3], &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let lab = write(dir.path(), "l", &idx([0, 0, 8, 1], &[2], &[1, 0]));
        let (mut ok, mut err) = (0, 0);
        for _ in 0..3000 {
            let r = libsvm(&mutate(svm, &mut rng), None);
            if r.is_ok() {
                ok += 1
            } else {
                err += 1
            }
            let r = parse_csv(Cursor::new(mutate(csv, &mut rng)), &p(), None);
            if r.is_ok() {
                ok += 1
            } else {
                err += 1
            }
        }
        for _ in 0..300 {
            let f = write(dir.path(), "i", &mutate(&img, &mut rng));
            let r = parse_idx(&f, &lab, true);
            if r.is_ok() {
                ok += 1
            } else {
                err += 1
            }
        }
        assert!(ok > 100 && err > 100, "{ok} accepted, {err} refused");
    }
}
