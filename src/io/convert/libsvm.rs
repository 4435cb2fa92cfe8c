//! LIBSVM text (`label idx:val ...`, 1-based increasing indices) into a sparse split: parsing
//! ([`parse_libsvm`]) and the files `gradcode data convert --format libsvm` reads
//! (`read_splits`). LIBSVM stays sparse (CSR) end to end; every malformed line gets an error
//! naming the file and line (RELIABILITY BI-5).
//!
//! Not done here: the task (±1 or 0/1 labels make it binary by default) and the assembly into a
//! dataset, which are shared by every format (see [`super::convert`]).

use std::io::BufRead;
use std::path::Path;

use super::input::{open_input, parse_finite, perr, truncate, Lines};
use super::{parse_train_test, ConvertOptions, Parsed, RawSplit, RawX, MAX_NNZ};
use crate::io::dataset::{MAX_FEATURES, MAX_ROWS};
use crate::io::IoError;

/// Parse LIBSVM text (`label idx:val ...`, 1-based increasing indices).
///
/// `features` caps the index (an index above it is an error). Blank lines and `#` comments are
/// skipped; `qid:` is refused.
pub fn parse_libsvm<R: BufRead>(
    r: R,
    path: &Path,
    features: Option<usize>,
) -> Result<RawSplit, IoError> {
    let max_index = features.unwrap_or(MAX_FEATURES).min(MAX_FEATURES);
    let mut lines = Lines::new(r, path);
    let (mut indptr, mut indices, mut values) = (vec![0usize], Vec::new(), Vec::new());
    let (mut y, mut rows_at) = (Vec::new(), Vec::new());
    let mut max_col = 0usize;
    while let Some((ln, text)) = lines.next_line()? {
        let text = match text.find('#') {
            Some(k) => &text[..k],
            None => text,
        };
        let mut toks = text.split_ascii_whitespace();
        let Some(label) = toks.next() else { continue };
        let label = parse_finite(label).ok_or_else(|| {
            let hint = if label.contains(':') {
                " (the line must start with a label)"
            } else {
                ""
            };
            perr(path, ln, format!("bad label '{}'{hint}", truncate(label)))
        })?;
        if y.len() >= MAX_ROWS {
            return Err(perr(path, ln, format!("more than {MAX_ROWS} rows")));
        }
        let mut prev = 0usize;
        for tok in toks {
            let (idx, val) = tok.split_once(':').ok_or_else(|| {
                perr(
                    path,
                    ln,
                    format!("expected index:value, found '{}'", truncate(tok)),
                )
            })?;
            if idx == "qid" {
                return Err(perr(path, ln, "'qid:' (ranking data) is not supported"));
            }
            let idx = parse_index(idx).map_err(|m| perr(path, ln, m))?;
            if idx > max_index {
                return Err(perr(
                    path,
                    ln,
                    match features {
                        Some(f) if f < MAX_FEATURES => {
                            format!("feature index {idx} exceeds --features {f}")
                        }
                        _ => format!("feature index {idx} exceeds the cap of {MAX_FEATURES}"),
                    },
                ));
            }
            if idx == prev {
                return Err(perr(path, ln, format!("duplicate feature index {idx}")));
            }
            if idx < prev {
                return Err(perr(
                    path,
                    ln,
                    format!("feature indices are not increasing ({idx} after {prev})"),
                ));
            }
            prev = idx;
            let v = parse_finite(val).ok_or_else(|| {
                perr(
                    path,
                    ln,
                    format!("bad value '{}' for feature {idx}", truncate(val)),
                )
            })?;
            if values.len() as u64 >= MAX_NNZ {
                return Err(perr(path, ln, format!("more than {MAX_NNZ} non-zeros")));
            }
            // idx <= MAX_FEATURES = 2^31, so idx - 1 fits in u32.
            indices.push((idx - 1) as u32);
            values.push(v);
        }
        max_col = max_col.max(prev);
        indptr.push(values.len());
        y.push(label);
        rows_at.push(ln);
    }
    Ok(RawSplit {
        x: RawX::Sparse {
            indptr,
            indices,
            values,
            max_col,
        },
        y,
        lines: rows_at,
        path: path.to_path_buf(),
    })
}

/// A LIBSVM feature index: decimal, 1-based.
fn parse_index(tok: &str) -> Result<usize, String> {
    if let Some(rest) = tok.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("negative feature index {}", truncate(tok)));
        }
    }
    if tok.is_empty() || !tok.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad feature index '{}'", truncate(tok)));
    }
    match tok.parse::<u64>() {
        Ok(0) => Err("feature index 0 (indices are 1-based)".into()),
        Ok(v) if v <= MAX_FEATURES as u64 => Ok(v as usize),
        _ => Err(format!(
            "feature index {} exceeds the cap of {MAX_FEATURES}",
            truncate(tok)
        )),
    }
}

/// Parse `opts.input` (and `opts.test_input`) as LIBSVM, with `opts.features` as the index cap.
pub(super) fn read_splits(opts: &ConvertOptions) -> Result<Parsed, IoError> {
    parse_train_test(opts, |p| parse_libsvm(open_input(p)?, p, opts.features))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{libsvm, opts, write};
    use super::super::{convert, sha256_file, InputFormat, TaskChoice, MAX_LINE};
    use super::*;
    use crate::data::Task;
    use std::io::Write;

    fn libsvm_err(text: &[u8]) -> (u64, String) {
        match libsvm(text, None).unwrap_err() {
            IoError::Parse { line, detail, .. } => (line, detail),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn libsvm_accepts_label_forms_blank_lines_crlf_and_comments() {
        let raw = libsvm(
            b"+1 1:0.5 3:2\r\n\n-1.0 2:1 # comment\r\n1.0\n  \n-1 10:-3e-1  \n0.25 4:1",
            None,
        )
        .unwrap();
        assert_eq!(raw.labels(), &[1.0, -1.0, 1.0, -1.0, 0.25]);
        assert_eq!(raw.lines, vec![1, 3, 4, 6, 7]);
        let RawX::Sparse {
            indptr,
            indices,
            values,
            max_col,
        } = &raw.x
        else {
            panic!()
        };
        assert_eq!(indptr, &[0, 2, 3, 3, 4, 5]);
        assert_eq!(indices, &[0, 2, 1, 9, 3]);
        assert_eq!(values, &[0.5, 2.0, 1.0, -0.3, 1.0]);
        assert_eq!(*max_col, 10);
    }

    #[test]
    fn libsvm_bad_inputs_get_specific_errors() {
        for (text, line, want) in [
            (&b"1 0:1\n"[..], 1, "feature index 0 (indices are 1-based)"),
            (b"1 1:1\n1 -2:1\n", 2, "negative feature index -2"),
            (b"1 2:1 2:3\n", 1, "duplicate feature index 2"),
            (b"1 3:1 2:3\n", 1, "not increasing (2 after 3)"),
            (
                b"1 qid:3 1:1\n",
                1,
                "'qid:' (ranking data) is not supported",
            ),
            (b"1 9223372036854775808:1\n", 1, "exceeds the cap"),
            (b"1 1:abc\n", 1, "bad value 'abc' for feature 1"),
            (b"1 1:nan\n", 1, "bad value 'nan'"),
            (b"1 1:inf\n", 1, "bad value 'inf'"),
            (b"1 1\n", 1, "expected index:value, found '1'"),
            (b"1 x:1\n", 1, "bad feature index 'x'"),
            (b"\n\nabc 1:1\n", 3, "bad label 'abc'"),
            (b"1:1 2:1\n", 1, "the line must start with a label"),
            (b"nan 1:1\n", 1, "bad label 'nan'"),
            (b"1 1:1\n-1 2:\xff\n", 2, "not valid UTF-8"),
        ] {
            let (l, d) = libsvm_err(text);
            assert_eq!(l, line, "{d}");
            assert!(d.contains(want), "{d} (wanted {want})");
        }
        let e = libsvm(b"1 3:1\n1 5:1\n", Some(4)).unwrap_err().to_string();
        assert!(
            e.contains("in.txt:2: feature index 5 exceeds --features 4"),
            "{e}"
        );
    }

    #[test]
    fn libsvm_line_cap() {
        let mut long = b"1".to_vec();
        while long.len() <= MAX_LINE + 10 {
            long.extend_from_slice(b" 1:1");
        }
        let mut text = b"1 1:1\n".to_vec();
        text.extend_from_slice(&long);
        let (l, d) = libsvm_err(&text);
        assert_eq!(l, 2);
        assert!(d.contains("longer than"), "{d}");
    }

    #[test]
    fn libsvm_convert_infers_task_features_and_reads_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"1 1:1 3:1\n0 2:1\n1 5:2\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        // Compression is found by magic bytes, whatever the name.
        let a = write(dir.path(), "train.txt", &gz.finish().unwrap());
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(b"0 7:1\n").unwrap();
        let b = write(dir.path(), "test", &bz.finish().unwrap());
        let mut o = opts(InputFormat::Libsvm, a.clone());
        o.test_input = Some(b);
        let c = convert(&o).unwrap();
        assert_eq!(c.train.task, Task::Binary);
        assert_eq!(c.train.n_features(), 7);
        assert_eq!(c.train.y.to_vec(), vec![1.0, -1.0, 1.0]);
        assert_eq!(c.test.as_ref().unwrap().y.to_vec(), vec![-1.0]);
        assert!(c.train.x.is_sparse());
        assert_eq!(c.train.x.nnz(), 4);
        assert_eq!(c.meta.source, "libsvm: train.txt, test");
        assert_eq!(c.meta.sha256.split(',').count(), 2);
        assert_eq!(
            c.meta.sha256.split(',').next().unwrap(),
            sha256_file(&a).unwrap()
        );
        // Explicit features, regression inference, multiclass.
        let r = write(dir.path(), "r.txt", b"2.5 1:1\n-1 2:1\n");
        let mut o = opts(InputFormat::Libsvm, r.clone());
        o.features = Some(10);
        let c = convert(&o).unwrap();
        assert_eq!((c.train.task, c.train.n_features()), (Task::Regression, 10));
        let m = write(dir.path(), "m.txt", b"0 1:1\n2 2:1\n1 1:1\n");
        let mut o = opts(InputFormat::Libsvm, m);
        o.task = Some(TaskChoice::Multiclass);
        assert_eq!(
            convert(&o).unwrap().train.task,
            Task::Multiclass { classes: 3 }
        );
        // A label outside the task names file and line.
        let mut o = opts(InputFormat::Libsvm, r);
        o.task = Some(TaskChoice::Binary);
        let e = convert(&o).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "r.txt:1: label 2.5 is not valid for a binary task (expected -1/+1 or 0/1)"
            ),
            "{e}"
        );
        // Empty input, truncated gzip, missing file.
        let e = convert(&opts(InputFormat::Libsvm, write(dir.path(), "e", b"\n\n"))).unwrap_err();
        assert!(e.to_string().contains("no data rows"), "{e}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"1 1:1\n".repeat(1000)).unwrap();
        let bytes = gz.finish().unwrap();
        let t = write(dir.path(), "t.gz", &bytes[..bytes.len() / 2]);
        let e = convert(&opts(InputFormat::Libsvm, t))
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt or truncated"), "{e}");
        let e = convert(&opts(InputFormat::Libsvm, dir.path().join("nope"))).unwrap_err();
        assert!(matches!(e, IoError::NotFound { .. }), "{e}");
    }
}
