//! CSV with a header row into a dense split: parsing ([`parse_csv`], label column by name or
//! 0-based position, default last) and the files `gradcode data convert --format csv` reads
//! (`read_splits`; a test file must have the same header). Every malformed line gets an error
//! naming the file, line and column.
//!
//! Not done here: quoted fields containing commas (fields are split on every comma, then
//! stripped of surrounding quotes), the task and the assembly into a dataset (see
//! [`super::convert`]).

use std::io::BufRead;
use std::path::Path;

use ndarray::Array2;

use super::input::{open_input, parse_finite, perr, truncate, Lines};
use super::{parse_train_test, two_valued, ConvertOptions, Parsed, RawSplit, RawX};
use crate::io::dataset::MAX_BYTES;
use crate::io::IoError;

fn csv_fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| {
            let f = f.trim();
            f.strip_prefix('"')
                .and_then(|g| g.strip_suffix('"'))
                .unwrap_or(f)
                .trim()
        })
        .collect()
}

/// The position of the label column in `header` (read at line `hl`): `label_column` as a name,
/// else as a 0-based position; the last column when not given.
fn label_index(
    path: &Path,
    hl: u64,
    header: &[String],
    label_column: Option<&str>,
) -> Result<usize, IoError> {
    if header.len() < 2 {
        return Err(perr(
            path,
            hl,
            "header has fewer than 2 columns (need features and a label)",
        ));
    }
    if let Some(k) = header.iter().position(|h| h.is_empty()) {
        return Err(perr(path, hl, format!("header column {k} has no name")));
    }
    Ok(match label_column {
        None => header.len() - 1,
        Some(name) => match header.iter().position(|h| h == name) {
            Some(k) => k,
            None => match name.parse::<usize>() {
                Ok(k) if k < header.len() => k,
                Ok(k) => {
                    return Err(perr(
                        path,
                        hl,
                        format!(
                            "label column {k} is out of range ({} columns)",
                            header.len()
                        ),
                    ))
                }
                Err(_) => {
                    return Err(perr(
                        path,
                        hl,
                        format!("no column named '{}' in the header", truncate(name)),
                    ))
                }
            },
        },
    })
}

/// Parse CSV with a header row; `label_column` is a header name or a 0-based position (default:
/// last). Returns the split and the header (for matching a test file).
pub fn parse_csv<R: BufRead>(
    r: R,
    path: &Path,
    label_column: Option<&str>,
) -> Result<(RawSplit, Vec<String>), IoError> {
    let mut lines = Lines::new(r, path);
    let header: Vec<String> = loop {
        match lines.next_line()? {
            None => return Err(perr(path, lines.line, "empty file (expected a header row)")),
            Some((_, t)) if t.trim().is_empty() => continue,
            Some((_, t)) => break csv_fields(t).into_iter().map(String::from).collect(),
        }
    };
    let label_at = label_index(path, lines.line, &header, label_column)?;
    let cols = header.len() - 1;
    let (mut data, mut y, mut rows_at) = (Vec::new(), Vec::new(), Vec::new());
    while let Some((ln, text)) = lines.next_line()? {
        if text.trim().is_empty() {
            continue;
        }
        let fields = csv_fields(text);
        if fields.len() != header.len() {
            return Err(perr(
                path,
                ln,
                format!(
                    "{} fields, but the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        if (data.len() as u64).saturating_add(cols as u64) > MAX_BYTES / 8 {
            return Err(perr(path, ln, "too much data for a dense matrix"));
        }
        for (k, f) in fields.iter().enumerate() {
            let v = match parse_finite(f) {
                Some(v) => v,
                None if f.is_empty() => {
                    return Err(perr(
                        path,
                        ln,
                        format!("empty field in column '{}'", header[k]),
                    ))
                }
                None => {
                    let kind = if f.parse::<f64>().is_ok() {
                        "non-finite value"
                    } else {
                        "not a number"
                    };
                    return Err(perr(
                        path,
                        ln,
                        format!("{kind} '{}' in column '{}'", truncate(f), header[k]),
                    ));
                }
            };
            if k == label_at {
                y.push(v);
            } else {
                data.push(v);
            }
        }
        rows_at.push(ln);
    }
    let n = y.len();
    let x = Array2::from_shape_vec((n, cols), data)
        .map_err(|e| IoError::layout(path, e.to_string()))?;
    Ok((
        RawSplit {
            x: RawX::Dense(x),
            y,
            lines: rows_at,
            path: path.to_path_buf(),
        },
        header,
    ))
}

/// Header names that say "this is the label": no warning when the default (last) column has one.
const LABEL_NAMES: [&str; 5] = ["label", "labels", "y", "target", "class"];

/// Parse `opts.input` (and `opts.test_input`, whose header must match) as CSV, with a warning
/// when the label column is taken by default (the last one, unless its name says it is the
/// label) and when the labels, kept as regression targets by default, are only ±1 or 0/1.
pub(super) fn read_splits(opts: &ConvertOptions) -> Result<Parsed, IoError> {
    let col = opts.label_column.as_deref();
    let mut first: Option<Vec<String>> = None;
    let mut parsed = parse_train_test(opts, |p| {
        let (split, header) = parse_csv(open_input(p)?, p, col)?;
        match &first {
            None => first = Some(header),
            Some(h) if *h != header => {
                return Err(perr(
                    p,
                    1,
                    format!("header differs from {}'s", opts.input.display()),
                ))
            }
            Some(_) => {}
        }
        Ok(split)
    })?;
    let header = first.unwrap_or_default();
    let at = label_index(&opts.input, 1, &header, col)?;
    let name = header.get(at).map_or("", String::as_str);
    let input = opts.input.display();
    if col.is_none() && !LABEL_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        parsed.warnings.push(format!(
            "{input}: no --label-column given: the last column '{name}' is used as the label \
             (pass --label-column NAME or a 0-based position to choose another)"
        ));
    }
    let splits: Vec<&RawSplit> = std::iter::once(&parsed.train)
        .chain(parsed.test.as_ref())
        .collect();
    if let (None, Some(pair)) = (opts.task, two_valued(&splits)) {
        parsed.warnings.push(format!(
            "{input}: the labels in column '{name}' are only {pair}, converted as a regression \
             task (the CSV default); pass --task binary to train a classifier such as \
             --model logistic"
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{opts, write};
    use super::super::{convert, InputFormat, TaskChoice};
    use crate::data::{Features, Task};

    #[test]
    fn csv_parsing_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "a.csv",
            b"a,b,\"label\",c\r\n1,2,1,3\n\n4, 5.5,0,6\n",
        );
        let mut o = opts(InputFormat::Csv, f.clone());
        o.label_column = Some("label".into());
        let c = convert(&o).unwrap();
        assert_eq!(c.train.task, Task::Regression);
        let Features::Dense(x) = &c.train.x else {
            panic!()
        };
        assert_eq!(x, &ndarray::arr2(&[[1.0, 2.0, 3.0], [4.0, 5.5, 6.0]]));
        assert_eq!(c.train.y.to_vec(), vec![1.0, 0.0]);
        o.label_column = Some("2".into());
        o.task = Some(TaskChoice::Binary);
        assert_eq!(convert(&o).unwrap().train.y.to_vec(), vec![1.0, -1.0]);
        // Default: last column.
        let c = convert(&opts(InputFormat::Csv, f)).unwrap();
        assert_eq!(c.train.y.to_vec(), vec![3.0, 6.0]);

        for (text, col, want) in [
            (
                &b"a,b\n1,NaN\n"[..],
                None,
                "a.csv:2: non-finite value 'NaN' in column 'b'",
            ),
            (b"a,b\n1,inf\n", None, "non-finite value 'inf'"),
            (
                b"a,b\n1,x\n",
                None,
                "a.csv:2: not a number 'x' in column 'b'",
            ),
            (b"a,b\n1,\n", None, "empty field in column 'b'"),
            (
                b"a,b\n1,2,3\n",
                None,
                "a.csv:2: 3 fields, but the header has 2",
            ),
            (b"a,b\n1,2\n", Some("z"), "no column named 'z'"),
            (b"a,b\n1,2\n", Some("5"), "label column 5 is out of range"),
            (b"a\n1\n", None, "fewer than 2 columns"),
            (b"", None, "empty file"),
            (b"a,b\n", None, "no data rows"),
            (b"a,b\n1,\xfe\n", None, "not valid UTF-8"),
        ] {
            let f = write(dir.path(), "a.csv", text);
            let mut o = opts(InputFormat::Csv, f);
            o.label_column = col.map(String::from);
            let e = convert(&o).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        // Test split header must match.
        let a = write(dir.path(), "a.csv", b"a,b\n1,2\n");
        let b = write(dir.path(), "b.csv", b"a,c\n1,2\n");
        let mut o = opts(InputFormat::Csv, a);
        o.test_input = Some(b);
        let e = convert(&o).unwrap_err().to_string();
        assert!(e.contains("b.csv:1: header differs"), "{e}");
        // --features is LIBSVM's: for CSV it must agree with the file's own width.
        let f = write(dir.path(), "w.csv", b"a,b,c\n1,2,1\n");
        let mut o = opts(InputFormat::Csv, f);
        o.features = Some(2);
        assert_eq!(convert(&o).unwrap().train.n_features(), 2);
        o.features = Some(7);
        let e = convert(&o).unwrap_err().to_string();
        assert!(
            e.contains("--features 7 disagrees with the 2 feature columns"),
            "{e}"
        );
    }

    #[test]
    fn csv_warnings_name_the_label_column_and_task_binary() {
        let dir = tempfile::tempdir().unwrap();
        let warnings = |text: &[u8], col: Option<&str>, task: Option<TaskChoice>| {
            let mut o = opts(InputFormat::Csv, write(dir.path(), "w.csv", text));
            o.label_column = col.map(String::from);
            o.task = task;
            convert(&o).unwrap().warnings
        };
        let w = warnings(b"a,b,c\n1,2,0.5\n3,4,7\n", None, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("the last column 'c' is used as the label"),
            "{w:?}"
        );
        assert!(warnings(b"a,b,c\n1,2,0.5\n", Some("c"), None).is_empty());
        assert!(warnings(b"a,b,Y\n1,2,0.5\n", None, None).is_empty());
        // Two-valued labels: regression kept, with the fix named; not when the task is given
        // or the labels are not a binary pair.
        for (text, pair) in [
            (&b"a,label\n1,1\n2,-1\n3,1\n"[..], "-1 and +1"),
            (b"a,label\n1,0\n2,1\n", "0 and 1"),
        ] {
            let w = warnings(text, None, None);
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].contains(&format!("column 'label' are only {pair}"))
                    && w[0].contains("--task binary"),
                "{w:?}"
            );
            let c = {
                let o = opts(InputFormat::Csv, write(dir.path(), "w.csv", text));
                convert(&o).unwrap()
            };
            assert_eq!(c.train.task, Task::Regression);
            assert!(warnings(text, None, Some(TaskChoice::Binary)).is_empty());
        }
        assert!(warnings(b"a,label\n1,0\n2,2\n", None, None).is_empty());
    }
}
