//! HDF5 dataset layout (GUIDE §5): dense `/X` or CSR `/X/{data,indices,indptr}` with a `shape`
//! attribute, `/y`, optional `/X_test`, `/y_test`; attributes `source`, `sha256`, `license`,
//! `task`, `classes`, row and feature counts.
//!
//! Workers read only the rows of the partitions they hold, by hyperslab. Every declared shape is
//! checked (checked arithmetic, caps) before anything is allocated.
//!
//! Input files are hostile (GUIDE §5), so before any data is read [`inspect`] checks:
//! - the file starts with an HDF5 signature (at offset 0, 512, 1024, ...) before libhdf5 sees it;
//! - `/X`, `/y` (and `/X_test`, `/y_test`, `/X/data`, ...) are hard links, never external or soft
//!   links, so no other file is ever opened;
//! - every dataset has a contiguous, compact or chunked layout (no virtual layout), no external
//!   storage and an empty filter pipeline (so no filter plugin is ever loaded);
//! - ranks, dtypes and every declared count, multiplied with checked arithmetic against caps
//!   ([`MAX_ROWS`], [`MAX_FEATURES`], [`MAX_BYTES`]);
//! - every dataset's allocated storage covers its declared size and fits in the file, which bounds
//!   any later allocation by the size of the file itself;
//! - rows(X) == rows(y), `indptr` has rows + 1 entries running from 0 to nnz.
//!
//! Not done: a full scan of `indptr` in `inspect` (it would read data); [`read_rows`] validates the
//! part of `indptr` it reads, and [`CsrMatrix::new`] validates indices and values.

use std::fs;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{IndexType, IterationOrder, LinkType, LocationType};
use ndarray::{s, Array1, Array2};

use super::IoError;
use crate::data::{partition_ranges, CsrMatrix, DataError, Dataset, Features, Task};

/// Largest number of rows (and of features) a dataset may declare.
pub const MAX_ROWS: usize = 1 << 31;
/// Largest number of features a dataset may declare.
pub const MAX_FEATURES: usize = 1 << 31;
/// Largest in-memory size of any one declared array (dense X, CSR data + indices, y): 64 GiB.
pub const MAX_BYTES: u64 = 64 << 30;
/// The `format_version` attribute written and accepted.
pub const FORMAT_VERSION: u64 = 1;

const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];
/// Most attributes listed by `inspect` (a hostile file may declare many).
const MAX_ATTRS: usize = 256;

/// Which split of a dataset file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("X", "y"),
            Split::Test => ("X_test", "y_test"),
        }
    }
    /// "train" or "test".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// What a dataset file declares, checked without reading the data.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub n_rows: usize,
    pub n_features: usize,
    pub sparse: bool,
    /// Stored non-zeros (rows × features when dense).
    pub nnz: u64,
    pub task: Task,
    /// Rows of the test split, if present.
    pub test_rows: Option<usize>,
    /// String attributes of the root group (source, sha256, license, ...).
    pub attrs: Vec<(String, String)>,
}

/// Provenance recorded as attributes of a written dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetMeta {
    pub source: String,
    pub sha256: String,
    pub license: String,
}

/// Shape of one split as declared by the file (checked, not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitShape {
    pub n_rows: usize,
    pub n_features: usize,
    pub sparse: bool,
    /// Stored entries (rows × features when dense).
    pub nnz: u64,
}

/// Label statistics of a split (read from `y` only).
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSummary {
    /// Binary or multiclass: (label, count), sorted by label.
    Counts(Vec<(f64, usize)>),
    /// Regression targets.
    Range { min: f64, max: f64, mean: f64 },
}

// ------------------------------------------------------------------------------------------------
// Checked opening

#[derive(Debug, Clone, Copy)]
enum XKind {
    Dense,
    Csr,
}

#[derive(Debug, Clone, Copy)]
struct SplitLayout {
    shape: SplitShape,
    kind: XKind,
}

struct Checked {
    path: PathBuf,
    file: hdf5::File,
    train: SplitLayout,
    test: Option<SplitLayout>,
    task: Task,
    attrs: Vec<(String, String)>,
}

impl Checked {
    fn split(&self, split: Split) -> Result<SplitLayout, IoError> {
        match split {
            Split::Train => Ok(self.train),
            Split::Test => self.test.ok_or_else(|| {
                IoError::layout(&self.path, "the file has no test split (/X_test, /y_test)")
            }),
        }
    }
}

fn layout_err(path: &Path, detail: impl Into<String>) -> IoError {
    IoError::layout(path, detail)
}

/// Scan the offsets where an HDF5 superblock may start (0, 512, 1024, ...) for the signature.
fn has_hdf5_signature(path: &Path, len: u64) -> Result<bool, IoError> {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    let mut offset = 0u64;
    while offset.saturating_add(8) <= len {
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| IoError::os(path, e))?;
        let mut buf = [0u8; 8];
        f.read_exact(&mut buf).map_err(|e| IoError::os(path, e))?;
        if buf == HDF5_SIGNATURE {
            return Ok(true);
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
    Ok(false)
}

/// Hard links of `group` by name (soft and external links are reported as such).
fn links_of(
    path: &Path,
    group: &hdf5::Group,
    what: &str,
) -> Result<Vec<(String, LinkType)>, IoError> {
    group
        .links(IndexType::Name, IterationOrder::Native)
        .map(|v| v.into_iter().map(|(n, i)| (n, i.link_type)).collect())
        .map_err(|e| layout_err(path, format!("cannot list the members of {what}: {e}")))
}

/// Whether `name` exists in `links`; refuses anything but a hard link.
fn hard_link(
    path: &Path,
    links: &[(String, LinkType)],
    name: &str,
    full: &str,
) -> Result<bool, IoError> {
    match links.iter().find(|(n, _)| n == name) {
        None => Ok(false),
        Some((_, LinkType::Hard)) => Ok(true),
        Some((_, LinkType::External)) => Err(layout_err(
            path,
            format!("{full} is an external link (refused: it would open another file)"),
        )),
        Some((_, LinkType::Soft)) => Err(layout_err(
            path,
            format!("{full} is a soft link (refused: store the object itself)"),
        )),
    }
}

fn checked_product(path: &Path, dims: &[usize], elem: u64, what: &str) -> Result<u64, IoError> {
    let mut n: u64 = elem;
    for &d in dims {
        n = n.checked_mul(d as u64).ok_or_else(|| {
            layout_err(
                path,
                format!("{what} declares shape {dims:?}, whose size overflows"),
            )
        })?;
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    UInt,
}

/// Checks one dataset's storage, rank and dtype; returns its shape and element kind.
fn check_dataset(
    path: &Path,
    ds: &hdf5::Dataset,
    full: &str,
    ndim: usize,
    allowed: &[Kind],
) -> Result<(Vec<usize>, Kind), IoError> {
    let shape = ds
        .get_shape()
        .map_err(|e| layout_err(path, format!("{full}: cannot read its shape: {e}")))?;
    if shape.len() != ndim {
        return Err(layout_err(
            path,
            format!("{full} has rank {} (expected {ndim})", shape.len()),
        ));
    }
    let dtype = ds
        .dtype()
        .map_err(|e| layout_err(path, format!("{full}: cannot read its datatype: {e}")))?;
    let desc = dtype
        .to_descriptor()
        .map_err(|e| layout_err(path, format!("{full}: unsupported datatype: {e}")))?;
    let kind = match desc {
        TypeDescriptor::Float(_) => Kind::Float,
        TypeDescriptor::Integer(_) => Kind::Int,
        TypeDescriptor::Unsigned(_) => Kind::UInt,
        ref other => {
            return Err(layout_err(
                path,
                format!("{full} has datatype {other:?} (expected a number)"),
            ))
        }
    };
    if !allowed.contains(&kind) {
        let names: Vec<&str> = allowed
            .iter()
            .map(|k| match k {
                Kind::Float => "float",
                Kind::Int => "signed integer",
                Kind::UInt => "unsigned integer",
            })
            .collect();
        return Err(layout_err(
            path,
            format!(
                "{full} has datatype {desc:?} (expected {})",
                names.join(" or ")
            ),
        ));
    }
    let dcpl = ds.dcpl().map_err(|e| {
        layout_err(
            path,
            format!("{full}: cannot read its creation properties: {e}"),
        )
    })?;
    match dcpl.get_layout() {
        Ok(hdf5::dataset::Layout::Virtual) => {
            return Err(layout_err(
                path,
                format!("{full} is a virtual dataset (refused: it maps other files)"),
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(layout_err(path, format!("{full}: unreadable layout: {e}"))),
    }
    match dcpl.get_external() {
        Ok(ext) if ext.is_empty() => {}
        Ok(ext) => {
            return Err(layout_err(
                path,
                format!(
                "{full} uses external storage in {} (refused: it reads files outside the dataset)",
                ext.iter()
                    .map(|e| format!("'{}'", e.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ))
        }
        Err(e) => {
            return Err(layout_err(
                path,
                format!("{full}: unreadable external-storage list: {e}"),
            ))
        }
    }
    match dcpl.get_filters() {
        Ok(f) if f.is_empty() => {}
        Ok(f) => {
            let ids: Vec<String> = f.iter().map(|f| f.id().to_string()).collect();
            return Err(layout_err(
                path,
                format!(
                    "{full} has filters in its pipeline (ids {}); refused: datasets must be stored unfiltered",
                    ids.join(", ")
                ),
            ));
        }
        Err(e) => {
            return Err(layout_err(
                path,
                format!("{full}: refused: unreadable or unknown filter pipeline: {e}"),
            ))
        }
    }
    Ok((shape, kind))
}

/// The allocated storage of `ds` must cover its declared size and fit in the file: this bounds
/// every later read (and allocation) by the size of the file. Call after the caps.
fn check_storage(
    path: &Path,
    file_len: u64,
    ds: &hdf5::Dataset,
    shape: &[usize],
    full: &str,
) -> Result<(), IoError> {
    let dtype = ds
        .dtype()
        .map_err(|e| layout_err(path, format!("{full}: cannot read its datatype: {e}")))?;
    let expected = checked_product(path, shape, dtype.size() as u64, full)?;
    let stored = ds.storage_size();
    if stored < expected {
        return Err(layout_err(
            path,
            format!(
                "{full} declares shape {shape:?} ({expected} bytes) but only {stored} bytes are stored \
                 (truncated, unallocated or sparse dataset)"
            ),
        ));
    }
    if stored > file_len {
        return Err(layout_err(
            path,
            format!("{full} claims {stored} bytes of storage in a {file_len}-byte file"),
        ));
    }
    Ok(())
}

fn open_dataset(
    path: &Path,
    group: &hdf5::Group,
    name: &str,
    full: &str,
) -> Result<hdf5::Dataset, IoError> {
    group
        .dataset(name)
        .map_err(|e| layout_err(path, format!("{full} is not a readable dataset: {e}")))
}

fn read_u64_attr(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
    full: &str,
) -> Result<Vec<u64>, IoError> {
    let attr = loc
        .attr(name)
        .map_err(|e| layout_err(path, format!("missing attribute {full}: {e}")))?;
    let shape = attr
        .get_shape()
        .map_err(|e| layout_err(path, format!("attribute {full}: {e}")))?;
    if shape.len() > 1 || shape.first().is_some_and(|&n| n > 16) {
        return Err(layout_err(
            path,
            format!("attribute {full} has shape {shape:?} (expected at most 16 values)"),
        ));
    }
    let desc = attr
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| layout_err(path, format!("attribute {full}: {e}")))?;
    let bad = |m: String| layout_err(path, format!("attribute {full}: {m}"));
    match desc {
        TypeDescriptor::Unsigned(_) => attr.read_raw::<u64>().map_err(|e| bad(e.to_string())),
        TypeDescriptor::Integer(_) => {
            let v = attr.read_raw::<i64>().map_err(|e| bad(e.to_string()))?;
            v.into_iter()
                .map(|x| u64::try_from(x).map_err(|_| bad(format!("negative value {x}"))))
                .collect()
        }
        other => Err(bad(format!("datatype {other:?} (expected an integer)"))),
    }
}

fn read_scalar_u64_attr(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
) -> Result<Option<u64>, IoError> {
    if !loc
        .attr_names()
        .map_err(|e| IoError::hdf5(path, e))?
        .iter()
        .any(|n| n == name)
    {
        return Ok(None);
    }
    let v = read_u64_attr(path, loc, name, &format!("'{name}'"))?;
    match v.as_slice() {
        [x] => Ok(Some(*x)),
        _ => Err(layout_err(
            path,
            format!("attribute '{name}' has {} values (expected one)", v.len()),
        )),
    }
}

/// Render one attribute as text (strings as they are, numbers formatted, others by type).
fn attr_to_string(attr: &hdf5::Attribute) -> String {
    let desc = match attr.dtype().and_then(|t| t.to_descriptor()) {
        Ok(d) => d,
        Err(e) => return format!("<unreadable: {e}>"),
    };
    let shape = attr.shape();
    let scalar = shape.is_empty();
    let small = shape.len() == 1 && shape[0] <= 16;
    match desc {
        TypeDescriptor::VarLenUnicode if scalar => attr
            .read_scalar::<VarLenUnicode>()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|e| format!("<unreadable: {e}>")),
        TypeDescriptor::VarLenAscii if scalar => attr
            .read_scalar::<VarLenAscii>()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|e| format!("<unreadable: {e}>")),
        TypeDescriptor::Integer(_) if scalar || small => attr
            .read_raw::<i64>()
            .map(|v| join_values(&v))
            .unwrap_or_else(|e| format!("<unreadable: {e}>")),
        TypeDescriptor::Unsigned(_) if scalar || small => attr
            .read_raw::<u64>()
            .map(|v| join_values(&v))
            .unwrap_or_else(|e| format!("<unreadable: {e}>")),
        TypeDescriptor::Float(_) if scalar || small => attr
            .read_raw::<f64>()
            .map(|v| join_values(&v))
            .unwrap_or_else(|e| format!("<unreadable: {e}>")),
        other => format!("<{other:?}, shape {shape:?}>"),
    }
}

fn join_values<T: std::fmt::Display>(v: &[T]) -> String {
    match v {
        [x] => x.to_string(),
        _ => format!(
            "[{}]",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn string_attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Read `range` of a 1-D integer dataset as u64 (refusing negatives).
fn read_index_slice(
    path: &Path,
    ds: &hdf5::Dataset,
    kind: Kind,
    range: Range<usize>,
    full: &str,
) -> Result<Vec<u64>, IoError> {
    let start = range.start;
    match kind {
        Kind::UInt => ds
            .read_slice_1d::<u64, _>(s![range])
            .map(Array1::into_raw_vec_and_offset)
            .map(|(v, _)| v)
            .map_err(|e| IoError::hdf5(path, format!("reading {full}: {e}"))),
        _ => {
            let v = ds
                .read_slice_1d::<i64, _>(s![range])
                .map_err(|e| IoError::hdf5(path, format!("reading {full}: {e}")))?;
            v.iter()
                .enumerate()
                .map(|(i, &x)| {
                    u64::try_from(x).map_err(|_| {
                        layout_err(path, format!("{full}[{}] is negative ({x})", start + i))
                    })
                })
                .collect()
        }
    }
}

fn check_split(
    path: &Path,
    file_len: u64,
    root: &hdf5::Group,
    links: &[(String, LinkType)],
    split: Split,
) -> Result<Option<SplitLayout>, IoError> {
    let (xn, yn) = split.names();
    let (xf, yf) = (format!("/{xn}"), format!("/{yn}"));
    let has_x = hard_link(path, links, xn, &xf)?;
    let has_y = hard_link(path, links, yn, &yf)?;
    match (has_x, has_y) {
        (false, false) if split == Split::Test => return Ok(None),
        (false, _) => return Err(layout_err(path, format!("missing {xf} (features)"))),
        (true, false) => return Err(layout_err(path, format!("missing {yf} (labels)"))),
        (true, true) => {}
    }
    let x_type = root
        .loc_type_by_name(xn)
        .map_err(|e| layout_err(path, format!("{xf}: cannot read object type: {e}")))?;
    let (shape, kind) = match x_type {
        LocationType::Dataset => {
            let ds = open_dataset(path, root, xn, &xf)?;
            let (dims, _) = check_dataset(path, &ds, &xf, 2, &[Kind::Float])?;
            let (rows, cols) = (dims[0], dims[1]);
            check_caps(path, &xf, rows, cols)?;
            let bytes = checked_product(path, &dims, 8, &xf)?;
            if bytes > MAX_BYTES {
                return Err(layout_err(
                    path,
                    format!(
                        "{xf} is {rows} x {cols} dense, {bytes} bytes as f64, over the cap of {MAX_BYTES} bytes"
                    ),
                ));
            }
            check_storage(path, file_len, &ds, &dims, &xf)?;
            let nnz = checked_product(path, &dims, 1, &xf)?;
            (
                SplitShape {
                    n_rows: rows,
                    n_features: cols,
                    sparse: false,
                    nnz,
                },
                XKind::Dense,
            )
        }
        LocationType::Group => {
            let g = root
                .group(xn)
                .map_err(|e| layout_err(path, format!("{xf}: cannot open group: {e}")))?;
            let shape = read_u64_attr(path, &g, "shape", &format!("{xf}/shape"))?;
            let [rows, cols] = shape[..] else {
                return Err(layout_err(
                    path,
                    format!(
                        "attribute {xf}/shape has {} values (expected [rows, cols])",
                        shape.len()
                    ),
                ));
            };
            let too_big = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            let (rows, cols) = (too_big(rows), too_big(cols));
            check_caps(path, &xf, rows, cols)?;
            let glinks = links_of(path, &g, &xf)?;
            let mut dss = Vec::new();
            for name in ["data", "indices", "indptr"] {
                let full = format!("{xf}/{name}");
                if !hard_link(path, &glinks, name, &full)? {
                    return Err(layout_err(
                        path,
                        format!("missing {full} (CSR group needs data, indices, indptr)"),
                    ));
                }
                dss.push((open_dataset(path, &g, name, &full)?, full));
            }
            let (data_dims, _) = check_dataset(path, &dss[0].0, &dss[0].1, 1, &[Kind::Float])?;
            let (idx_dims, _) =
                check_dataset(path, &dss[1].0, &dss[1].1, 1, &[Kind::Int, Kind::UInt])?;
            let (ptr_dims, ptr_kind) =
                check_dataset(path, &dss[2].0, &dss[2].1, 1, &[Kind::Int, Kind::UInt])?;
            let nnz = data_dims[0];
            if idx_dims[0] != nnz {
                return Err(layout_err(
                    path,
                    format!(
                        "{xf}/indices has {} entries but {xf}/data has {nnz}",
                        idx_dims[0]
                    ),
                ));
            }
            let nnz_bytes = checked_product(path, &[nnz], 12, &format!("{xf}/data"))?;
            if nnz_bytes > MAX_BYTES {
                return Err(layout_err(
                    path,
                    format!("{xf} declares {nnz} non-zeros ({nnz_bytes} bytes), over the cap of {MAX_BYTES} bytes"),
                ));
            }
            for ((ds, full), dims) in dss.iter().zip([&data_dims, &idx_dims, &ptr_dims]) {
                check_storage(path, file_len, ds, dims, full)?;
            }
            if Some(ptr_dims[0]) != rows.checked_add(1) {
                return Err(layout_err(
                    path,
                    format!(
                        "{xf}/indptr has {} entries, expected rows + 1 = {} (shape attribute {:?})",
                        ptr_dims[0],
                        rows as u128 + 1,
                        [rows, cols]
                    ),
                ));
            }
            let first = read_index_slice(path, &dss[2].0, ptr_kind, 0..1, &dss[2].1)?;
            let last = read_index_slice(path, &dss[2].0, ptr_kind, rows..rows + 1, &dss[2].1)?;
            if first != [0] || last != [nnz as u64] {
                return Err(layout_err(
                    path,
                    format!(
                        "{xf}/indptr must run from 0 to nnz = {nnz} (found {:?} .. {:?})",
                        first.first(),
                        last.first()
                    ),
                ));
            }
            (
                SplitShape {
                    n_rows: rows,
                    n_features: cols,
                    sparse: true,
                    nnz: nnz as u64,
                },
                XKind::Csr,
            )
        }
        other => {
            return Err(layout_err(
                path,
                format!("{xf} is a {other:?} (expected a dataset or a CSR group)"),
            ))
        }
    };
    let yds = open_dataset(path, root, yn, &yf)?;
    let (ydims, _) = check_dataset(path, &yds, &yf, 1, &[Kind::Float, Kind::Int, Kind::UInt])?;
    if ydims[0] != shape.n_rows {
        return Err(layout_err(
            path,
            format!(
                "{yf} has {} entries but {xf} has {} rows",
                ydims[0], shape.n_rows
            ),
        ));
    }
    check_storage(path, file_len, &yds, &ydims, &yf)?;
    if shape.n_rows == 0 {
        return Err(layout_err(path, format!("{xf} has no rows")));
    }
    Ok(Some(SplitLayout { shape, kind }))
}

fn check_caps(path: &Path, what: &str, rows: usize, cols: usize) -> Result<(), IoError> {
    if rows > MAX_ROWS {
        return Err(layout_err(
            path,
            format!("{what} declares {rows} rows, over the cap of {MAX_ROWS}"),
        ));
    }
    if cols > MAX_FEATURES {
        return Err(layout_err(
            path,
            format!("{what} declares {cols} features, over the cap of {MAX_FEATURES}"),
        ));
    }
    if cols == 0 {
        return Err(layout_err(path, format!("{what} has no features")));
    }
    Ok(())
}

fn open_checked(path: &Path) -> Result<Checked, IoError> {
    let meta = fs::metadata(path).map_err(|e| IoError::os(path, e))?;
    if !meta.is_file() {
        return Err(IoError::NotHdf5 {
            path: path.to_path_buf(),
            detail: "not a regular file".into(),
        });
    }
    let file_len = meta.len();
    if !has_hdf5_signature(path, file_len)? {
        return Err(IoError::NotHdf5 {
            path: path.to_path_buf(),
            detail: "no HDF5 signature".into(),
        });
    }
    let file = hdf5::File::open(path).map_err(|e| IoError::NotHdf5 {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let root: &hdf5::Group = &file;
    let links = links_of(path, root, "the root group")?;
    let train = check_split(path, file_len, root, &links, Split::Train)?
        .ok_or_else(|| layout_err(path, "missing /X"))?;
    let test = check_split(path, file_len, root, &links, Split::Test)?;
    if let Some(t) = test {
        if t.shape.n_features != train.shape.n_features {
            return Err(layout_err(
                path,
                format!(
                    "/X_test has {} features but /X has {}",
                    t.shape.n_features, train.shape.n_features
                ),
            ));
        }
    }

    // Root attributes.
    let names = root.attr_names().map_err(|e| IoError::hdf5(path, e))?;
    if names.len() > MAX_ATTRS {
        return Err(layout_err(
            path,
            format!(
                "the root group has {} attributes (more than {MAX_ATTRS})",
                names.len()
            ),
        ));
    }
    let mut attrs = Vec::with_capacity(names.len());
    for n in &names {
        let a = root
            .attr(n)
            .map_err(|e| layout_err(path, format!("attribute '{n}': {e}")))?;
        attrs.push((n.clone(), attr_to_string(&a)));
    }
    if let Some(v) = read_scalar_u64_attr(path, root, "format_version")? {
        if v != FORMAT_VERSION {
            return Err(layout_err(
                path,
                format!("format_version {v} is not supported (expected {FORMAT_VERSION})"),
            ));
        }
    }
    let task_name = string_attr(&attrs, "task").ok_or_else(|| {
        layout_err(
            path,
            "missing root attribute 'task' (binary, regression or multiclass)",
        )
    })?;
    let classes = read_scalar_u64_attr(path, root, "classes")?;
    let classes = match classes {
        Some(c) => Some(
            usize::try_from(c)
                .ok()
                .filter(|&c| c <= MAX_FEATURES)
                .ok_or_else(|| layout_err(path, format!("attribute 'classes' = {c} is absurd")))?,
        ),
        None => None,
    };
    let task = Task::from_name(&task_name, classes).map_err(|e| IoError::Data {
        path: path.to_path_buf(),
        source: e,
    })?;
    for (attr, actual) in [
        ("n_rows", train.shape.n_rows as u64),
        ("n_features", train.shape.n_features as u64),
        ("nnz", train.shape.nnz),
    ] {
        if let Some(v) = read_scalar_u64_attr(path, root, attr)? {
            if v != actual {
                return Err(layout_err(
                    path,
                    format!("attribute '{attr}' = {v} disagrees with /X ({actual})"),
                ));
            }
        }
    }
    Ok(Checked {
        path: path.to_path_buf(),
        file,
        train,
        test,
        task,
        attrs,
    })
}

// ------------------------------------------------------------------------------------------------
// Public reading API

/// Check the layout and shapes of a dataset file without reading its data.
pub fn inspect(path: &Path) -> Result<DatasetInfo, IoError> {
    let c = open_checked(path)?;
    Ok(DatasetInfo {
        path: path.to_path_buf(),
        n_rows: c.train.shape.n_rows,
        n_features: c.train.shape.n_features,
        sparse: c.train.shape.sparse,
        nnz: c.train.shape.nnz,
        task: c.task,
        test_rows: c.test.map(|t| t.shape.n_rows),
        attrs: c.attrs,
    })
}

/// The checked shape of one split (`None` when asking for an absent test split).
pub fn split_shape(path: &Path, split: Split) -> Result<Option<SplitShape>, IoError> {
    let c = open_checked(path)?;
    Ok(match split {
        Split::Train => Some(c.train.shape),
        Split::Test => c.test.map(|t| t.shape),
    })
}

/// Label counts (classification) or target range (regression) of a split, reading `y` in blocks.
pub fn label_summary(path: &Path, split: Split) -> Result<LabelSummary, IoError> {
    let c = open_checked(path)?;
    let lay = c.split(split)?;
    let (_, yn) = split.names();
    let yds = open_dataset(path, &c.file, yn, &format!("/{yn}"))?;
    let n = lay.shape.n_rows;
    const BLOCK: usize = 1 << 20;
    let mut counts: std::collections::BTreeMap<u64, (f64, usize)> = Default::default();
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    let mut a = 0;
    while a < n {
        let b = (a + BLOCK).min(n);
        let y = yds
            .read_slice_1d::<f64, _>(s![a..b])
            .map_err(|e| IoError::hdf5(path, format!("reading /{yn}: {e}")))?;
        for (i, &v) in y.iter().enumerate() {
            if !v.is_finite() {
                return Err(IoError::Data {
                    path: path.to_path_buf(),
                    source: DataError::NonFinite {
                        what: format!("labels /{yn}"),
                        row: a + i,
                    },
                });
            }
            match c.task {
                Task::Regression => {
                    min = min.min(v);
                    max = max.max(v);
                    sum += v;
                }
                _ => {
                    // Binary files store ±1; a hand-written 0/1 file reads 0 as -1 like `read_rows`.
                    counts.entry(v.to_bits()).or_insert((v, 0)).1 += 1;
                }
            }
        }
        a = b;
    }
    Ok(match c.task {
        Task::Regression => LabelSummary::Range {
            min,
            max,
            mean: sum / n as f64,
        },
        _ => {
            let mut v: Vec<(f64, usize)> = counts.into_values().collect();
            v.sort_by(|p, q| p.0.total_cmp(&q.0));
            LabelSummary::Counts(v)
        }
    })
}

/// The local (shard) row index → global row index.
fn global_row(ranges: &[Range<usize>], local: usize) -> usize {
    let mut off = 0;
    for r in ranges {
        if local < off + r.len() {
            return r.start + (local - off);
        }
        off += r.len();
    }
    local
}

fn data_err(path: &Path, ranges: &[Range<usize>], e: DataError) -> IoError {
    let e = match e {
        DataError::NonFinite { what, row } => DataError::NonFinite {
            what,
            row: global_row(ranges, row),
        },
        DataError::BadLabel {
            label,
            row,
            task,
            hint,
        } => DataError::BadLabel {
            label,
            row: global_row(ranges, row),
            task,
            hint,
        },
        other => other,
    };
    IoError::Data {
        path: path.to_path_buf(),
        source: e,
    }
}

fn read_csr_block(
    c: &Checked,
    g: &hdf5::Group,
    xf: &str,
    shape: SplitShape,
    range: Range<usize>,
) -> Result<CsrMatrix, IoError> {
    let path = c.path.as_path();
    let data = open_dataset(path, g, "data", &format!("{xf}/data"))?;
    let indices = open_dataset(path, g, "indices", &format!("{xf}/indices"))?;
    let indptr = open_dataset(path, g, "indptr", &format!("{xf}/indptr"))?;
    let kind_of = |ds: &hdf5::Dataset| -> Result<Kind, IoError> {
        match ds.dtype().and_then(|t| t.to_descriptor()) {
            Ok(TypeDescriptor::Unsigned(_)) => Ok(Kind::UInt),
            Ok(_) => Ok(Kind::Int),
            Err(e) => Err(IoError::hdf5(path, e)),
        }
    };
    let ptr = read_index_slice(
        path,
        &indptr,
        kind_of(&indptr)?,
        range.start..range.end + 1,
        &format!("{xf}/indptr"),
    )?;
    let nnz = shape.nnz;
    for (i, w) in ptr.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(layout_err(
                path,
                format!(
                    "{xf}/indptr decreases at row {} ({} then {})",
                    range.start + i,
                    w[0],
                    w[1]
                ),
            ));
        }
    }
    let (pa, pb) = (ptr[0], ptr[ptr.len() - 1]);
    if pb > nnz {
        return Err(layout_err(
            path,
            format!("{xf}/indptr[{}] = {pb} exceeds nnz = {nnz}", range.end),
        ));
    }
    // pa <= pb <= nnz <= usize (checked in open_checked).
    let (pa, pb) = (pa as usize, pb as usize);
    let vals = data
        .read_slice_1d::<f64, _>(s![pa..pb])
        .map_err(|e| IoError::hdf5(path, format!("reading {xf}/data: {e}")))?
        .into_raw_vec_and_offset()
        .0;
    let idx64 = read_index_slice(
        path,
        &indices,
        kind_of(&indices)?,
        pa..pb,
        &format!("{xf}/indices"),
    )?;
    let mut idx = Vec::with_capacity(idx64.len());
    for (k, &v) in idx64.iter().enumerate() {
        match u32::try_from(v) {
            Ok(v) if (v as usize) < shape.n_features => idx.push(v),
            _ => {
                return Err(layout_err(
                    path,
                    format!(
                        "{xf}/indices[{}] = {v} is out of range (features: {})",
                        pa + k,
                        shape.n_features
                    ),
                ))
            }
        }
    }
    let local_ptr: Vec<usize> = ptr.iter().map(|&p| p as usize - pa).collect();
    CsrMatrix::new(range.len(), shape.n_features, local_ptr, idx, vals).map_err(|e| {
        let e = match e {
            DataError::BadCsr(m) => {
                DataError::BadCsr(format!("{m} (rows {}..{} of {xf})", range.start, range.end))
            }
            DataError::NonFinite { what, row } => DataError::NonFinite {
                what,
                row: row + range.start,
            },
            other => other,
        };
        IoError::Data {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// Read the rows in `ranges` of `split`, stacked in the order given (hyperslab reads only).
pub fn read_rows(path: &Path, split: Split, ranges: &[Range<usize>]) -> Result<Dataset, IoError> {
    let c = open_checked(path)?;
    let lay = c.split(split)?;
    let shape = lay.shape;
    let (xn, yn) = split.names();
    let (xf, yf) = (format!("/{xn}"), format!("/{yn}"));
    for r in ranges {
        if r.start > r.end || r.end > shape.n_rows {
            return Err(IoError::Data {
                path: path.to_path_buf(),
                source: DataError::Invalid(format!(
                    "row range {}..{} is outside the {} rows of {xf}",
                    r.start, r.end, shape.n_rows
                )),
            });
        }
    }
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let x = match lay.kind {
        XKind::Dense => {
            let ds = open_dataset(path, &c.file, xn, &xf)?;
            let mut out = Array2::<f64>::zeros((total, shape.n_features));
            let mut at = 0;
            for r in ranges.iter().filter(|r| !r.is_empty()) {
                let block = ds.read_slice_2d::<f64, _>(s![r.clone(), ..]).map_err(|e| {
                    IoError::hdf5(
                        path,
                        format!("reading {xf} rows {}..{}: {e}", r.start, r.end),
                    )
                })?;
                out.slice_mut(s![at..at + r.len(), ..]).assign(&block);
                at += r.len();
            }
            Features::Dense(out)
        }
        XKind::Csr => {
            let g = c
                .file
                .group(xn)
                .map_err(|e| layout_err(path, format!("{xf}: cannot open group: {e}")))?;
            let mut blocks = Vec::with_capacity(ranges.len());
            for r in ranges.iter().filter(|r| !r.is_empty()) {
                blocks.push(read_csr_block(&c, &g, &xf, shape, r.clone())?);
            }
            if blocks.is_empty() {
                blocks.push(
                    CsrMatrix::new(0, shape.n_features, vec![0], vec![], vec![]).map_err(|e| {
                        IoError::Data {
                            path: path.to_path_buf(),
                            source: e,
                        }
                    })?,
                );
            }
            let refs: Vec<&CsrMatrix> = blocks.iter().collect();
            Features::Sparse(CsrMatrix::vstack(&refs).map_err(|e| IoError::Data {
                path: path.to_path_buf(),
                source: e,
            })?)
        }
    };
    let yds = open_dataset(path, &c.file, yn, &yf)?;
    let mut y = Vec::with_capacity(total);
    for r in ranges.iter().filter(|r| !r.is_empty()) {
        let block = yds.read_slice_1d::<f64, _>(s![r.clone()]).map_err(|e| {
            IoError::hdf5(
                path,
                format!("reading {yf} rows {}..{}: {e}", r.start, r.end),
            )
        })?;
        y.extend(block.iter().copied());
    }
    Dataset::new(x, Array1::from(y), c.task).map_err(|e| data_err(path, ranges, e))
}

/// Read a whole split.
pub fn read_all(path: &Path, split: Split) -> Result<Dataset, IoError> {
    let n = {
        let c = open_checked(path)?;
        c.split(split)?.shape.n_rows
    };
    read_rows(path, split, std::slice::from_ref(&(0..n)))
}

/// Read the partitions `parts` of `partition_ranges(n_rows, k)` of `split`, stacked in the order
/// given; also returns each held partition's local row range inside the stacked shard.
///
/// `n_rows` must equal the rows of the split (it is what the caller partitioned).
pub fn read_partitions(
    path: &Path,
    split: Split,
    n_rows: usize,
    k: usize,
    parts: &[usize],
) -> Result<(Dataset, Vec<Range<usize>>), IoError> {
    let data_err = |e: DataError| IoError::Data {
        path: path.to_path_buf(),
        source: e,
    };
    let actual = {
        let c = open_checked(path)?;
        c.split(split)?.shape.n_rows
    };
    if actual != n_rows {
        return Err(data_err(DataError::ShapeMismatch {
            what: format!("rows of the {} split and rows partitioned", split.name()),
            left: actual,
            right: n_rows,
        }));
    }
    let all = partition_ranges(n_rows, k).map_err(data_err)?;
    let mut ranges = Vec::with_capacity(parts.len());
    let mut local = Vec::with_capacity(parts.len());
    let mut at = 0;
    for &p in parts {
        let r = all.get(p).cloned().ok_or_else(|| {
            data_err(DataError::Invalid(format!(
                "partition {p} does not exist (k = {k} partitions)"
            )))
        })?;
        local.push(at..at + r.len());
        at += r.len();
        ranges.push(r);
    }
    Ok((read_rows(path, split, &ranges)?, local))
}

// ------------------------------------------------------------------------------------------------
// Writing

fn h5w<'a>(path: &'a Path, what: &str) -> impl Fn(hdf5::Error) -> IoError + 'a {
    let what = what.to_string();
    move |e| IoError::hdf5(path, format!("writing {what}: {e}"))
}

fn write_str_attr(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
    value: &str,
) -> Result<(), IoError> {
    let v: VarLenUnicode = value.parse().map_err(|e| IoError::Data {
        path: path.to_path_buf(),
        source: DataError::Invalid(format!("attribute '{name}' cannot be stored: {e}")),
    })?;
    loc.new_attr::<VarLenUnicode>()
        .shape(())
        .create(name)
        .and_then(|a| a.write_scalar(&v))
        .map_err(h5w(path, &format!("attribute '{name}'")))
}

fn write_u64_attr(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
    value: u64,
) -> Result<(), IoError> {
    loc.new_attr::<u64>()
        .shape(())
        .create(name)
        .and_then(|a| a.write_scalar(&value))
        .map_err(h5w(path, &format!("attribute '{name}'")))
}

fn write_split(path: &Path, file: &hdf5::File, d: &Dataset, split: Split) -> Result<(), IoError> {
    let (xn, yn) = split.names();
    match &d.x {
        Features::Dense(x) => {
            file.new_dataset_builder()
                .with_data(&x.as_standard_layout())
                .create(xn)
                .map_err(h5w(path, &format!("/{xn}")))?;
        }
        Features::Sparse(m) => {
            let g = file
                .create_group(xn)
                .map_err(h5w(path, &format!("/{xn}")))?;
            g.new_dataset_builder()
                .with_data(m.data())
                .create("data")
                .map_err(h5w(path, &format!("/{xn}/data")))?;
            g.new_dataset_builder()
                .with_data(m.indices())
                .create("indices")
                .map_err(h5w(path, &format!("/{xn}/indices")))?;
            let ptr: Vec<u64> = m.indptr().iter().map(|&p| p as u64).collect();
            g.new_dataset_builder()
                .with_data(&ptr)
                .create("indptr")
                .map_err(h5w(path, &format!("/{xn}/indptr")))?;
            let shape = [m.n_rows() as u64, m.n_cols() as u64];
            g.new_attr_builder()
                .with_data(&shape)
                .create("shape")
                .map_err(h5w(path, &format!("/{xn}/shape")))?;
        }
    }
    file.new_dataset_builder()
        .with_data(&d.y)
        .create(yn)
        .map_err(h5w(path, &format!("/{yn}")))?;
    Ok(())
}

fn write_contents(
    path: &Path,
    tmp: &Path,
    file: hdf5::File,
    train: &Dataset,
    test: Option<&Dataset>,
    meta: &DatasetMeta,
) -> Result<(), IoError> {
    write_split(path, &file, train, Split::Train)?;
    if let Some(t) = test {
        write_split(path, &file, t, Split::Test)?;
    }
    let root: &hdf5::Location = &file;
    write_str_attr(path, root, "source", &meta.source)?;
    write_str_attr(path, root, "sha256", &meta.sha256)?;
    write_str_attr(path, root, "license", &meta.license)?;
    write_str_attr(path, root, "task", train.task.name())?;
    if let Task::Multiclass { classes } = train.task {
        write_u64_attr(path, root, "classes", classes as u64)?;
    }
    write_u64_attr(path, root, "n_rows", train.n_rows() as u64)?;
    write_u64_attr(path, root, "n_features", train.n_features() as u64)?;
    write_u64_attr(path, root, "nnz", train.x.nnz() as u64)?;
    write_u64_attr(path, root, "format_version", FORMAT_VERSION)?;
    write_str_attr(
        path,
        root,
        "created_by",
        &format!("gradcode {}", crate::VERSION),
    )?;
    file.close().map_err(|e| IoError::hdf5(tmp, e))?;
    // libhdf5 never fsyncs (GUIDE §5): do it before the rename makes the file visible.
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| IoError::os(tmp, e))
}

/// Write a dataset file (refuses to overwrite unless `force`).
///
/// Writes to a temporary file in the same directory, fsyncs it and renames it into place, so a
/// failed write leaves no half-written file at `path`.
pub fn write(
    path: &Path,
    train: &Dataset,
    test: Option<&Dataset>,
    meta: &DatasetMeta,
    force: bool,
) -> Result<(), IoError> {
    super::check_overwrite(path, force)?;
    let invalid = |m: String| IoError::Data {
        path: path.to_path_buf(),
        source: DataError::Invalid(m),
    };
    if train.n_rows() == 0 {
        return Err(invalid("the training split has no rows".into()));
    }
    if train.n_features() == 0 {
        return Err(invalid("the dataset has no features".into()));
    }
    if let Some(t) = test {
        if t.n_features() != train.n_features() {
            return Err(IoError::Data {
                path: path.to_path_buf(),
                source: DataError::ShapeMismatch {
                    what: "features of the train and test splits".into(),
                    left: train.n_features(),
                    right: t.n_features(),
                },
            });
        }
        if t.task != train.task {
            return Err(invalid(format!(
                "train split is {:?} but test split is {:?}",
                train.task, t.task
            )));
        }
        if t.n_rows() == 0 {
            return Err(invalid(
                "the test split has no rows (omit it instead)".into(),
            ));
        }
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| invalid(format!("'{}' does not name a file", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(invalid(format!(
            "the output directory '{}' does not exist",
            dir.display()
        )));
    }
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    // Exclusive creation: fails on anything already there, a symlink included (nothing to clean).
    let file = hdf5::File::create_excl(&tmp)
        .map_err(|e| IoError::hdf5(&tmp, format!("cannot create the temporary file: {e}")))?;
    if let Err(e) = write_contents(path, &tmp, file, train, test, meta) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let publish = if force {
        fs::rename(&tmp, path).map_err(|e| IoError::os(path, e))
    } else {
        // No-clobber publish: a link fails if `path` appeared meanwhile.
        match fs::hard_link(&tmp, path) {
            Ok(()) => fs::remove_file(&tmp).map_err(|e| IoError::os(&tmp, e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(IoError::Exists {
                path: path.to_path_buf(),
            }),
            Err(_) => fs::rename(&tmp, path).map_err(|e| IoError::os(path, e)),
        }
    };
    if let Err(e) = publish {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Hostile-file builders shared with `tests/reliability.rs`.
#[cfg(test)]
#[path = "../../tests/common/hostile.rs"]
mod hostile_fixtures;

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use ndarray::{arr1, Array2};

    fn dense_ds(rows: usize, cols: usize, task: Task) -> Dataset {
        let x = Array2::from_shape_fn((rows, cols), |(i, j)| (i * cols + j) as f64 * 0.5 - 3.0);
        let y = Array1::from_shape_fn(rows, |i| match task {
            Task::Binary => {
                if i % 3 == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            Task::Multiclass { classes } => (i % classes) as f64,
            Task::Regression => i as f64 * 0.25,
        });
        Dataset::new(Features::Dense(x), y, task).unwrap()
    }

    fn csr_ds(rows: usize, cols: usize) -> Dataset {
        let mut indptr = vec![0];
        let (mut idx, mut val) = (vec![], vec![]);
        for r in 0..rows {
            for c in 0..cols {
                if (r * 7 + c * 3) % 5 == 0 {
                    idx.push(c as u32);
                    val.push((r + c) as f64 + 0.5);
                }
            }
            indptr.push(idx.len());
        }
        let x = CsrMatrix::new(rows, cols, indptr, idx, val).unwrap();
        let y = Array1::from_shape_fn(rows, |i| if i % 2 == 0 { 1.0 } else { -1.0 });
        Dataset::new(Features::Sparse(x), y, Task::Binary).unwrap()
    }

    fn stack(d: &Dataset, ranges: &[Range<usize>]) -> Dataset {
        let parts: Vec<Dataset> = ranges.iter().map(|r| d.slice_rows(r.clone())).collect();
        let xs: Vec<&Features> = parts.iter().map(|p| &p.x).collect();
        let ys: Vec<f64> = parts.iter().flat_map(|p| p.y.iter().copied()).collect();
        Dataset {
            x: Features::vstack(&xs).unwrap(),
            y: Array1::from(ys),
            task: d.task,
        }
    }

    fn meta() -> DatasetMeta {
        DatasetMeta {
            source: "unit test".into(),
            sha256: "abc".into(),
            license: "CC0".into(),
        }
    }

    #[test]
    fn dense_round_trip_and_hyperslabs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.h5");
        let train = dense_ds(23, 4, Task::Multiclass { classes: 3 });
        let test = dense_ds(5, 4, Task::Multiclass { classes: 3 });
        write(&p, &train, Some(&test), &meta(), false).unwrap();
        let info = inspect(&p).unwrap();
        assert_eq!((info.n_rows, info.n_features, info.sparse), (23, 4, false));
        assert_eq!(info.nnz, 92);
        assert_eq!(info.task, Task::Multiclass { classes: 3 });
        assert_eq!(info.test_rows, Some(5));
        let get = |n: &str| info.attrs.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("source"), "unit test");
        assert_eq!(get("format_version"), "1");
        assert!(get("created_by").starts_with("gradcode "));
        for ranges in [vec![0..23], vec![3..7, 0..2, 20..23], vec![5..5, 22..23]] {
            assert_eq!(
                read_rows(&p, Split::Train, &ranges).unwrap(),
                stack(&train, &ranges)
            );
        }
        assert_eq!(read_all(&p, Split::Test).unwrap(), test);
        // Nothing left behind but the file itself.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let s = label_summary(&p, Split::Train).unwrap();
        assert_eq!(s, LabelSummary::Counts(vec![(0.0, 8), (1.0, 8), (2.0, 7)]));
    }

    #[test]
    fn csr_round_trip_and_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.h5");
        let train = csr_ds(31, 9);
        write(&p, &train, None, &meta(), false).unwrap();
        let info = inspect(&p).unwrap();
        assert!(info.sparse);
        assert_eq!(info.nnz as usize, train.x.nnz());
        assert_eq!(info.test_rows, None);
        for ranges in [vec![0..31], vec![10..12, 0..3, 30..31], vec![4..4]] {
            assert_eq!(
                read_rows(&p, Split::Train, &ranges).unwrap(),
                stack(&train, &ranges)
            );
        }
        let (shard, local) = read_partitions(&p, Split::Train, 31, 4, &[3, 1]).unwrap();
        let parts = partition_ranges(31, 4).unwrap();
        assert_eq!(local, vec![0..7, 7..15]);
        assert_eq!(shard, stack(&train, &[parts[3].clone(), parts[1].clone()]));
        let e = read_partitions(&p, Split::Train, 31, 4, &[4]).unwrap_err();
        assert!(e.to_string().contains("partition 4 does not exist"), "{e}");
        let e = read_partitions(&p, Split::Train, 30, 4, &[0]).unwrap_err();
        assert!(e.to_string().contains("31 vs 30"), "{e}");
        let e = read_rows(&p, Split::Test, &[0..1]).unwrap_err();
        assert!(e.to_string().contains("no test split"), "{e}");
        let e = read_rows(&p, Split::Train, &[30..32]).unwrap_err();
        assert!(e.to_string().contains("outside the 31 rows"), "{e}");
    }

    #[test]
    fn csr_with_empty_rows_and_no_nonzeros() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.h5");
        let x = CsrMatrix::new(3, 2, vec![0, 0, 0, 0], vec![], vec![]).unwrap();
        let d = Dataset::new(
            Features::Sparse(x),
            arr1(&[1.0, 2.0, 3.0]),
            Task::Regression,
        )
        .unwrap();
        write(&p, &d, None, &meta(), false).unwrap();
        assert_eq!(read_all(&p, Split::Train).unwrap(), d);
        assert_eq!(
            label_summary(&p, Split::Train).unwrap(),
            LabelSummary::Range {
                min: 1.0,
                max: 3.0,
                mean: 2.0
            }
        );
    }

    #[test]
    fn write_refuses_existing_file_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.h5");
        fs::write(&p, b"keep me").unwrap();
        let d = dense_ds(4, 2, Task::Binary);
        let e = write(&p, &d, None, &meta(), false).unwrap_err();
        assert!(matches!(e, IoError::Exists { .. }), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"keep me");
        write(&p, &d, None, &meta(), true).unwrap();
        assert_eq!(read_all(&p, Split::Train).unwrap(), d);
    }

    #[test]
    fn write_never_follows_a_planted_temporary_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.h5");
        let target = dir.path().join("victim");
        let tmp = dir.path().join(format!(".t.h5.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        let e = write(&p, &dense_ds(3, 2, Task::Binary), None, &meta(), false).unwrap_err();
        assert!(
            e.to_string().contains("cannot create the temporary file"),
            "{e}"
        );
        assert!(!target.exists() && !p.exists());
        assert!(fs::symlink_metadata(&tmp).unwrap().file_type().is_symlink());
        let e = write(
            &dir.path().join("no/such/dir.h5"),
            &dense_ds(3, 2, Task::Binary),
            None,
            &meta(),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("output directory"), "{e}");
    }

    #[test]
    fn missing_and_non_hdf5_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = inspect(&dir.path().join("nope.h5")).unwrap_err();
        assert!(matches!(e, IoError::NotFound { .. }), "{e}");
        let p = dir.path().join("text.h5");
        fs::write(&p, "hello, not hdf5\n").unwrap();
        let e = inspect(&p).unwrap_err();
        assert!(matches!(e, IoError::NotHdf5 { .. }), "{e}");
        let e = inspect(dir.path()).unwrap_err();
        assert!(matches!(e, IoError::NotHdf5 { .. }), "{e}");
        // Truncated real file: signature present, libhdf5 refuses.
        let good = dir.path().join("good.h5");
        write(&good, &dense_ds(50, 3, Task::Binary), None, &meta(), false).unwrap();
        let bytes = fs::read(&good).unwrap();
        let cut = dir.path().join("cut.h5");
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(inspect(&cut).is_err());
    }

    /// Build a file by hand with `f`, then return the inspect error message.
    fn hostile(f: impl FnOnce(&hdf5::File, &Path)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.h5");
        {
            let file = hdf5::File::create(&p).unwrap();
            f(&file, dir.path());
            let root: &hdf5::Location = &file;
            write_str_attr(&p, root, "task", "binary").unwrap();
        }
        let e = inspect(&p).unwrap_err();
        assert!(
            matches!(e, IoError::Layout { .. } | IoError::Data { .. }),
            "{e:?}"
        );
        // read_rows must refuse the same way.
        assert!(read_rows(&p, Split::Train, &[0..1]).is_err());
        e.to_string()
    }

    use super::hostile_fixtures::{self, y_of};

    #[test]
    fn refuses_absurd_and_inconsistent_shapes() {
        let m = hostile(|f, _| {
            f.new_dataset::<f64>()
                .chunk((1, 1))
                .shape((1usize << 31, 1usize << 31))
                .create("X")
                .unwrap();
            y_of(f, 1);
        });
        assert!(m.contains("/X") && m.contains("overflows"), "{m}");
        let m = hostile(|f, _| {
            f.new_dataset::<f64>()
                .chunk((1, 1))
                .shape((1usize << 32, 1usize))
                .create("X")
                .unwrap();
            y_of(f, 1);
        });
        assert!(m.contains("rows, over the cap"), "{m}");
        let m = hostile(|f, _| {
            f.new_dataset::<f64>()
                .chunk((64, 64))
                .shape((1usize << 20, 1usize << 20))
                .create("X")
                .unwrap();
            y_of(f, 1);
        });
        assert!(m.contains("over the cap of"), "{m}");
        // Declared but never written: storage does not cover the shape.
        let m = hostile(|f, _| {
            f.new_dataset::<f64>()
                .chunk((10, 10))
                .shape((1000, 100))
                .create("X")
                .unwrap();
            y_of(f, 1000);
        });
        assert!(m.contains("bytes are stored"), "{m}");
        let m = hostile(|f, _| {
            f.new_dataset_builder()
                .with_data(&Array2::<f64>::zeros((4, 2)))
                .create("X")
                .unwrap();
            y_of(f, 5);
        });
        assert!(m.contains("/y has 5 entries but /X has 4 rows"), "{m}");
        let m = hostile(|f, _| {
            f.new_dataset_builder()
                .with_data(&Array1::<f64>::zeros(4))
                .create("X")
                .unwrap();
            y_of(f, 4);
        });
        assert!(m.contains("/X has rank 1 (expected 2)"), "{m}");
        let m = hostile(|f, _| {
            f.new_dataset_builder()
                .with_data(&Array2::<i32>::zeros((4, 2)))
                .create("X")
                .unwrap();
            y_of(f, 4);
        });
        assert!(
            m.contains("/X has datatype") && m.contains("expected float"),
            "{m}"
        );
        let m = hostile(|f, _| y_of(f, 4));
        assert!(m.contains("missing /X"), "{m}");
        let m = hostile(|f, _| {
            f.new_dataset_builder()
                .with_data(&Array2::<f64>::zeros((0, 2)))
                .create("X")
                .unwrap();
            y_of(f, 0);
        });
        assert!(m.contains("no rows"), "{m}");
    }

    #[test]
    fn refuses_bad_csr_groups() {
        let csr = |f: &hdf5::File, data: &[f64], idx: &[i64], ptr: &[i64], shape: [u64; 2]| {
            let g = f.create_group("X").unwrap();
            g.new_dataset_builder()
                .with_data(data)
                .create("data")
                .unwrap();
            g.new_dataset_builder()
                .with_data(idx)
                .create("indices")
                .unwrap();
            g.new_dataset_builder()
                .with_data(ptr)
                .create("indptr")
                .unwrap();
            g.new_attr_builder()
                .with_data(&shape)
                .create("shape")
                .unwrap();
        };
        let m = hostile(|f, _| {
            csr(f, &[1.0, 2.0], &[0, 1], &[0, 1], [2, 3]);
            y_of(f, 2);
        });
        assert!(
            m.contains("/X/indptr has 2 entries, expected rows + 1 = 3"),
            "{m}"
        );
        let m = hostile(|f, _| {
            csr(f, &[1.0, 2.0], &[0, 1], &[0, 1, 3], [2, 3]);
            y_of(f, 2);
        });
        assert!(m.contains("must run from 0 to nnz = 2"), "{m}");
        let m = hostile(|f, _| {
            csr(f, &[1.0, 2.0], &[0], &[0, 1, 2], [2, 3]);
            y_of(f, 2);
        });
        assert!(
            m.contains("/X/indices has 1 entries but /X/data has 2"),
            "{m}"
        );
        let m = hostile(|f, _| {
            csr(f, &[1.0, 2.0], &[0, 1], &[0, 1, 2], [2, 1 << 40]);
            y_of(f, 2);
        });
        assert!(m.contains("features, over the cap"), "{m}");
        // Passes inspect; read_rows validates what it reads.
        let dir = tempfile::tempdir().unwrap();
        for (ptr, idx, want) in [
            (vec![0i64, 2, 1, 2], vec![0i64, 1], "decreases at row 1"),
            (
                vec![0, 1, 1, 2],
                vec![0, 7],
                "/X/indices[1] = 7 is out of range",
            ),
            (vec![0, 1, 1, 2], vec![0, -1], "/X/indices[1] is negative"),
            (vec![0, 2, 2, 2], vec![1, 0], "not strictly increasing"),
        ] {
            let p = dir.path().join("c.h5");
            let _ = fs::remove_file(&p);
            {
                let f = hdf5::File::create(&p).unwrap();
                csr(&f, &[1.0, 2.0], &idx, &ptr, [3, 3]);
                y_of(&f, 3);
                write_str_attr(&p, &f, "task", "regression").unwrap();
            }
            inspect(&p).unwrap();
            let e = read_all(&p, Split::Train).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }

    #[test]
    fn refuses_external_storage_virtual_filters_and_links() {
        use hostile_fixtures as hf;
        type Build = fn(&hdf5::File, &Path);
        let cases: [(&str, Build); 5] = [
            ("external storage", |f, dir| {
                hf::external_storage_x(f, dir, "secret.bin")
            }),
            ("virtual dataset", |f, dir| hf::virtual_x(f, dir, "src.h5")),
            ("filters", |f, _| hf::filtered_x(f, false)),
            ("/X is an external link", |f, dir| {
                hf::external_link_x(f, dir, "src2.h5")
            }),
            ("/X is a soft link", |f, _| hf::soft_link_x(f)),
        ];
        for (want, build) in cases {
            let m = hostile(|f, dir| {
                build(f, dir);
                y_of(f, 4);
            });
            assert!(m.contains(want), "{want}: {m}");
        }
    }

    #[test]
    fn refuses_bad_attributes_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5");
        {
            let f = hdf5::File::create(&p).unwrap();
            f.new_dataset_builder()
                .with_data(&Array2::<f64>::zeros((3, 2)))
                .create("X")
                .unwrap();
            f.new_dataset_builder()
                .with_data(&arr1(&[1.0, -1.0, 2.0]))
                .create("y")
                .unwrap();
        }
        let e = inspect(&p).unwrap_err().to_string();
        assert!(e.contains("missing root attribute 'task'"), "{e}");
        {
            let f = hdf5::File::open_rw(&p).unwrap();
            write_str_attr(&p, &f, "task", "binary").unwrap();
            write_u64_attr(&p, &f, "n_rows", 4).unwrap();
        }
        let e = inspect(&p).unwrap_err().to_string();
        assert!(e.contains("'n_rows' = 4 disagrees"), "{e}");
        {
            let f = hdf5::File::open_rw(&p).unwrap();
            f.delete_attr("n_rows").unwrap();
            write_u64_attr(&p, &f, "format_version", 2).unwrap();
        }
        let e = inspect(&p).unwrap_err().to_string();
        assert!(e.contains("format_version 2 is not supported"), "{e}");
        {
            let f = hdf5::File::open_rw(&p).unwrap();
            f.delete_attr("format_version").unwrap();
        }
        inspect(&p).unwrap();
        let e = read_all(&p, Split::Train).unwrap_err().to_string();
        assert!(
            e.contains("label 2 at row 2 is not valid for a binary task"),
            "{e}"
        );
        let e = read_rows(&p, Split::Train, &[2..3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at row 2"), "{e}");
    }
}
