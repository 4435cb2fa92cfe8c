//! Converters from LIBSVM, IDX and CSV text (gzip / bzip2 read transparently) into [`crate::data::Dataset`].
//!
//! Input files are hostile (GUIDE §5, RELIABILITY BI-5/BI-6): every malformed input gets a
//! specific error naming the file and line, lines are capped at [`MAX_LINE`] bytes, counts are
//! capped, and nothing is allocated beyond what the input actually holds (IDX payloads are read
//! incrementally up to the declared size, never pre-allocated from a header).
//!
//! Compression is detected from magic bytes (`1f 8b` gzip, `BZh` bzip2), not the file name.
//! LIBSVM stays sparse (CSR) end to end.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use sha2::{Digest, Sha256};

use super::dataset::{DatasetMeta, MAX_BYTES, MAX_FEATURES, MAX_ROWS};
use super::IoError;
use crate::data::{CsrMatrix, DataError, Dataset, Features, Task};

/// Longest accepted text line (bytes, before decoding).
pub const MAX_LINE: usize = 4 << 20;
/// Most stored entries of one converted split (12 bytes each in CSR).
const MAX_NNZ: u64 = MAX_BYTES / 12;

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
}

fn perr(path: &Path, line: u64, detail: impl Into<String>) -> IoError {
    IoError::Parse {
        path: path.to_path_buf(),
        line,
        detail: detail.into(),
    }
}

// ------------------------------------------------------------------------------------------------
// Input plumbing

/// Open a file, transparently decompressing gzip or bzip2 (detected by magic bytes).
pub fn open_input(path: &Path) -> Result<Box<dyn BufRead>, IoError> {
    let f = fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let meta = f.metadata().map_err(|e| IoError::os(path, e))?;
    if meta.is_dir() {
        return Err(IoError::layout(path, "is a directory, not an input file"));
    }
    let mut br = BufReader::with_capacity(1 << 16, f);
    let head = br.fill_buf().map_err(|e| IoError::os(path, e))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(br),
        ))
    } else if head.starts_with(b"BZh") {
        Box::new(BufReader::with_capacity(
            1 << 16,
            bzip2::bufread::MultiBzDecoder::new(br),
        ))
    } else {
        Box::new(br)
    })
}

/// Hex SHA-256 of a file's bytes (as stored, i.e. of the compressed file).
pub fn sha256_file(path: &Path) -> Result<String, IoError> {
    let mut f = fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| IoError::os(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A line reader with a length cap, UTF-8 check, CRLF handling and 1-based line numbers.
struct Lines<'p, R> {
    r: R,
    path: &'p Path,
    buf: Vec<u8>,
    line: u64,
}

impl<'p, R: BufRead> Lines<'p, R> {
    fn new(r: R, path: &'p Path) -> Self {
        Lines {
            r,
            path,
            buf: Vec::new(),
            line: 0,
        }
    }

    /// The next line (number, text without its terminator), or `None` at the end.
    fn next_line(&mut self) -> Result<Option<(u64, &str)>, IoError> {
        self.buf.clear();
        let n = (&mut self.r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| {
                perr(
                    self.path,
                    self.line + 1,
                    format!("read error (corrupt or truncated compressed data?): {e}"),
                )
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Err(perr(
                self.path,
                self.line,
                format!("line is longer than {MAX_LINE} bytes"),
            ));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some((self.line, s))),
            Err(e) => Err(perr(
                self.path,
                self.line,
                format!("not valid UTF-8 (at byte {} of the line)", e.valid_up_to()),
            )),
        }
    }
}

/// Parse a finite f64 (Rust's parser also accepts `nan`, `inf`: refused here).
fn parse_finite(tok: &str) -> Option<f64> {
    tok.parse::<f64>().ok().filter(|v| v.is_finite())
}

// ------------------------------------------------------------------------------------------------
// Parsed splits before the task is decided

#[derive(Debug, Clone)]
enum RawX {
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
    x: RawX,
    y: Vec<f64>,
    /// Source line of each row (0 when there are no lines, as in IDX).
    lines: Vec<u64>,
    path: PathBuf,
}

impl RawSplit {
    pub fn n_rows(&self) -> usize {
        self.y.len()
    }
    pub fn labels(&self) -> &[f64] {
        &self.y
    }
}

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

/// Shorten a token for an error message.
fn truncate(s: &str) -> String {
    const N: usize = 40;
    if s.chars().count() <= N {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(N).collect::<String>())
    }
}

// ------------------------------------------------------------------------------------------------
// IDX

const IDX_IMAGES: u32 = 0x0000_0803;
const IDX_LABELS: u32 = 0x0000_0801;

/// Read an IDX file of unsigned bytes with `ndim` dimensions: (dims, payload).
///
/// The payload is read incrementally up to the declared size, so a header that lies costs at
/// most the bytes the file really holds.
fn read_idx(path: &Path, expect_ndim: u8, what: &str) -> Result<(Vec<usize>, Vec<u8>), IoError> {
    let mut r = open_input(path)?;
    let mut head = [0u8; 4];
    r.read_exact(&mut head)
        .map_err(|_| IoError::layout(path, "file is shorter than the 4-byte IDX header"))?;
    if head[0] != 0 || head[1] != 0 {
        return Err(IoError::layout(
            path,
            format!(
                "bad IDX magic {:02x}{:02x}{:02x}{:02x} (expected 0000080{expect_ndim} for {what})",
                head[0], head[1], head[2], head[3]
            ),
        ));
    }
    if head[2] != 0x08 {
        let name = match head[2] {
            0x09 => "signed byte",
            0x0B => "short",
            0x0C => "int",
            0x0D => "float",
            0x0E => "double",
            _ => "unknown",
        };
        return Err(IoError::layout(
            path,
            format!(
                "IDX type code 0x{:02x} ({name}) is not supported (expected 0x08, unsigned byte)",
                head[2]
            ),
        ));
    }
    let ndim = head[3];
    if ndim != expect_ndim {
        return Err(IoError::layout(path, format!(
                "IDX file has {ndim} dimensions, expected {expect_ndim} for {what} (magic 0x{:08x})",
                if expect_ndim == 3 { IDX_IMAGES } else { IDX_LABELS }
            ),
        ));
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut total: u64 = 1;
    for d in 0..ndim {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)
            .map_err(|_| IoError::layout(path, "file ends inside the IDX header"))?;
        let v = u32::from_be_bytes(b);
        total = total.checked_mul(v as u64).ok_or_else(|| {
            IoError::layout(path, format!("IDX dimensions overflow at dimension {d}"))
        })?;
        dims.push(v as usize);
    }
    if dims[0] > MAX_ROWS {
        return Err(IoError::layout(
            path,
            format!(
                "IDX file declares {} items, over the cap of {MAX_ROWS}",
                dims[0]
            ),
        ));
    }
    let f64_bytes = total.saturating_mul(8);
    if f64_bytes > MAX_BYTES {
        return Err(IoError::layout(path, format!(
                "IDX file declares dimensions {dims:?} ({f64_bytes} bytes as f64), over the cap of {MAX_BYTES} bytes"
            ),
        ));
    }
    let mut data = Vec::new();
    r.by_ref().take(total).read_to_end(&mut data).map_err(|e| {
        IoError::layout(
            path,
            format!("read error (corrupt or truncated compressed data?): {e}"),
        )
    })?;
    if (data.len() as u64) < total {
        return Err(IoError::layout(path, format!(
                "file is shorter than declared: {} of {total} payload bytes for dimensions {dims:?}",
                data.len()
            ),
        ));
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(IoError::layout(
                path,
                format!(
                    "file is longer than declared ({total} payload bytes for dimensions {dims:?})"
                ),
            ))
        }
        Err(e) => {
            return Err(IoError::layout(
                path,
                format!("read error after the payload: {e}"),
            ))
        }
    }
    Ok((dims, data))
}

/// Parse an IDX images file and its labels file into dense rows (pixels scaled by 1/255 when
/// `scale`) and raw labels.
pub fn parse_idx(images: &Path, labels: &Path, scale: bool) -> Result<RawSplit, IoError> {
    let (idims, pixels) = read_idx(images, 3, "images")?;
    let (ldims, lab) = read_idx(labels, 1, "labels")?;
    if idims[0] != ldims[0] {
        return Err(IoError::layout(
            labels,
            format!(
                "{} labels for {} images in {}",
                ldims[0],
                idims[0],
                images.display()
            ),
        ));
    }
    let (n, cols) = (idims[0], idims[1] * idims[2]);
    if cols == 0 {
        return Err(IoError::layout(images, "images have no pixels"));
    }
    let s = if scale { 1.0 / 255.0 } else { 1.0 };
    let x = Array2::from_shape_vec((n, cols), pixels.iter().map(|&p| p as f64 * s).collect())
        .map_err(|e| IoError::layout(images, e.to_string()))?;
    Ok(RawSplit {
        x: RawX::Dense(x),
        y: lab.iter().map(|&l| l as f64).collect(),
        lines: vec![0; n],
        path: labels.to_path_buf(),
    })
}

// ------------------------------------------------------------------------------------------------
// CSV

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
    let hl = lines.line;
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
    let label_at = match label_column {
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
    };
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

// ------------------------------------------------------------------------------------------------
// Task inference and assembly

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
            let pm1 = labels().all(|v| v == 1.0 || v == -1.0);
            let zo = labels().all(|v| v == 0.0 || v == 1.0);
            if pm1 || zo {
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

/// Convert the input files described by `opts` into train (and test) datasets with provenance.
pub fn convert(opts: &ConvertOptions) -> Result<Converted, IoError> {
    let mut inputs: Vec<&Path> = vec![&opts.input];
    let (train, test) = match opts.format {
        InputFormat::Libsvm | InputFormat::Csv => {
            if opts.labels.is_some() || opts.test_labels.is_some() {
                return Err(IoError::Data {
                    path: opts.input.clone(),
                    source: DataError::Invalid(
                        "--labels / --test-labels are for IDX input only".into(),
                    ),
                });
            }
            if opts.format == InputFormat::Libsvm {
                let train = parse_libsvm(open_input(&opts.input)?, &opts.input, opts.features)?;
                let test = match &opts.test_input {
                    Some(t) => {
                        inputs.push(t);
                        Some(parse_libsvm(open_input(t)?, t, opts.features)?)
                    }
                    None => None,
                };
                (train, test)
            } else {
                let col = opts.label_column.as_deref();
                let (train, header) = parse_csv(open_input(&opts.input)?, &opts.input, col)?;
                let test = match &opts.test_input {
                    Some(t) => {
                        inputs.push(t);
                        let (s, h) = parse_csv(open_input(t)?, t, col)?;
                        if h != header {
                            return Err(perr(
                                t,
                                1,
                                format!("header differs from {}'s", opts.input.display()),
                            ));
                        }
                        Some(s)
                    }
                    None => None,
                };
                (train, test)
            }
        }
        InputFormat::Idx => {
            let labels = required(&opts.labels, "--labels", "for IDX input")?;
            inputs.push(labels);
            let train = parse_idx(&opts.input, labels, opts.scale)?;
            let test = match &opts.test_input {
                Some(t) => {
                    let tl = required(&opts.test_labels, "--test-labels", "with --test-input")?;
                    inputs.push(t);
                    inputs.push(tl);
                    Some(parse_idx(t, tl, opts.scale)?)
                }
                None => None,
            };
            (train, test)
        }
    };
    if train.n_rows() == 0 {
        return Err(IoError::Data {
            path: opts.input.clone(),
            source: DataError::Invalid("no data rows".into()),
        });
    }
    if let Some(t) = &test {
        if t.n_rows() == 0 {
            return Err(IoError::Data {
                path: t.path.clone(),
                source: DataError::Invalid("no data rows in the test input".into()),
            });
        }
    }
    let n_features = {
        let width = |s: &RawSplit| match &s.x {
            RawX::Sparse { max_col, .. } => *max_col,
            RawX::Dense(x) => x.ncols(),
        };
        let seen = width(&train).max(test.as_ref().map_or(0, width));
        match (opts.format, opts.features) {
            (InputFormat::Libsvm, Some(f)) => f,
            (InputFormat::Libsvm, None) => seen,
            _ => {
                if let Some(t) = &test {
                    if width(t) != width(&train) {
                        return Err(IoError::Data {
                            path: t.path.clone(),
                            source: DataError::ShapeMismatch {
                                what: "features of the train and test inputs".into(),
                                left: width(&train),
                                right: width(t),
                            },
                        });
                    }
                }
                let w = width(&train);
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
        }
    };
    if n_features == 0 {
        return Err(IoError::Data {
            path: opts.input.clone(),
            source: DataError::Invalid("no features (every row is empty; give --features)".into()),
        });
    }
    let splits: Vec<&RawSplit> = std::iter::once(&train).chain(test.as_ref()).collect();
    let task = infer_task(opts.format, opts.task, &splits)?;
    let train = finish(train, n_features, task)?;
    let test = test.map(|t| finish(t, n_features, task)).transpose()?;
    let sha: Result<Vec<String>, IoError> = inputs.iter().map(|p| sha256_file(p)).collect();
    let fmt = match opts.format {
        InputFormat::Libsvm => "libsvm",
        InputFormat::Idx => "idx",
        InputFormat::Csv => "csv",
    };
    let meta = DatasetMeta {
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
    };
    Ok(Converted { train, test, meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn p() -> PathBuf {
        PathBuf::from("in.txt")
    }

    fn libsvm(text: &[u8], features: Option<usize>) -> Result<RawSplit, IoError> {
        parse_libsvm(Cursor::new(text.to_vec()), &p(), features)
    }

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

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn opts(format: InputFormat, input: PathBuf) -> ConvertOptions {
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

    fn idx(magic: [u8; 4], dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = magic.to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn idx_round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = write(
            dir.path(),
            "i",
            &idx(
                [0, 0, 8, 3],
                &[3, 2, 2],
                &[0, 255, 51, 0, 1, 2, 3, 4, 255, 255, 255, 255],
            ),
        );
        let labs = write(dir.path(), "l", &idx([0, 0, 8, 1], &[3], &[7, 0, 3]));
        let s = parse_idx(&imgs, &labs, true).unwrap();
        let RawX::Dense(x) = &s.x else { panic!() };
        assert_eq!(x.shape(), &[3, 4]);
        assert_eq!(x[[0, 1]], 1.0);
        assert_eq!(x[[0, 2]], 0.2);
        assert_eq!(s.labels(), &[7.0, 0.0, 3.0]);
        let mut o = opts(InputFormat::Idx, imgs.clone());
        o.labels = Some(labs.clone());
        o.scale = false;
        let c = convert(&o).unwrap();
        assert_eq!(c.train.task, Task::Multiclass { classes: 10 });
        let Features::Dense(x) = &c.train.x else {
            panic!()
        };
        assert_eq!(x[[2, 3]], 255.0);

        let bad = |name: &str, bytes: Vec<u8>, images: bool| -> String {
            let f = write(dir.path(), name, &bytes);
            let r = if images {
                parse_idx(&f, &labs, true)
            } else {
                parse_idx(&imgs, &f, true)
            };
            r.unwrap_err().to_string()
        };
        for (bytes, images, want) in [
            (idx([1, 0, 8, 3], &[1, 1, 1], &[0]), true, "bad IDX magic"),
            (
                idx([0, 0, 0x0D, 3], &[1, 1, 1], &[0; 4]),
                true,
                "type code 0x0d (float)",
            ),
            (
                idx([0, 0, 8, 0], &[], &[]),
                true,
                "0 dimensions, expected 3",
            ),
            (idx([0, 0, 8, 255], &[1, 1, 1], &[]), true, "255 dimensions"),
            (
                idx([0, 0, 8, 1], &[3], &[0, 0, 0]),
                true,
                "1 dimensions, expected 3",
            ),
            (
                idx([0, 0, 8, 3], &[u32::MAX, u32::MAX, u32::MAX], &[]),
                true,
                "overflow",
            ),
            (
                idx([0, 0, 8, 3], &[1 << 30, 1 << 20, 1], &[]),
                true,
                "over the cap",
            ),
            (
                idx([0, 0, 8, 3], &[3, 2, 2], &[0; 11]),
                true,
                "shorter than declared: 11 of 12",
            ),
            (
                idx([0, 0, 8, 3], &[3, 2, 2], &[0; 13]),
                true,
                "longer than declared",
            ),
            (
                idx([0, 0, 8, 3], &[3, 2], &[]),
                true,
                "ends inside the IDX header",
            ),
            (vec![0, 0], true, "shorter than the 4-byte IDX header"),
            (
                idx([0, 0, 8, 1], &[2], &[1, 2]),
                false,
                "2 labels for 3 images",
            ),
            (
                idx([0, 0, 8, 1], &[3], &[1, 2]),
                false,
                "shorter than declared",
            ),
        ] {
            let e = bad("bad", bytes, images);
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        // Huge declared size, tiny file: refused without allocating the declared size.
        let e = bad(
            "big",
            idx([0, 0, 8, 3], &[60000, 1000, 100], &[1, 2, 3]),
            true,
        );
        assert!(e.contains("shorter than declared: 3 of 6000000000"), "{e}");
        // Label file needs --labels.
        let e = convert(&opts(InputFormat::Idx, imgs))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--labels is required"), "{e}");
    }

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
