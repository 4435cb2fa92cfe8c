//! Checks of single HDF5 objects before their data is read (GUIDE §5: input files are hostile),
//! shared by the dataset layout ([`super::layout`]) and a user's own matrix
//! ([`crate::io::matrix`]): the HDF5 signature, hard links only, a dataset's rank, dtype,
//! storage layout (no virtual, external or filtered storage) and allocated size, integer
//! attributes, caps with checked arithmetic.
//!
//! Not done here: anything that reads a dataset's values beyond an `indptr` slice (see
//! [`super::read`]), or knowledge of which objects a dataset file holds (see [`super::layout`]).

use std::fs;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{IndexType, IterationOrder, LinkType};
use ndarray::{s, Array1};

use super::{MAX_FEATURES, MAX_ROWS};
use crate::io::IoError;

const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];
/// Most attributes listed by `inspect` (a hostile file may declare many).
pub(crate) const MAX_ATTRS: usize = 256;

pub(crate) fn layout_err(path: &Path, detail: impl Into<String>) -> IoError {
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

/// Open `path` read-only after checking that it is a regular file with an HDF5 signature (so
/// libhdf5 never parses anything else); returns the file and its length in bytes.
pub(crate) fn open_hdf5(path: &Path) -> Result<(hdf5::File, u64), IoError> {
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
    Ok((file, file_len))
}

/// Hard links of `group` by name (soft and external links are reported as such).
pub(crate) fn links_of(
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
pub(crate) fn hard_link(
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

pub(crate) fn checked_product(
    path: &Path,
    dims: &[usize],
    elem: u64,
    what: &str,
) -> Result<u64, IoError> {
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

/// Element kind of a numeric dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Float,
    Int,
    UInt,
}

/// Checks one dataset's storage, rank and dtype; returns its shape and element kind.
pub(crate) fn check_dataset(
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
    let kind = element_kind(path, ds, full, allowed)?;
    check_plain_storage(path, ds, full)?;
    Ok((shape, kind))
}

/// The element kind of `ds`, which must be one of `allowed`.
fn element_kind(
    path: &Path,
    ds: &hdf5::Dataset,
    full: &str,
    allowed: &[Kind],
) -> Result<Kind, IoError> {
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
    Ok(kind)
}

/// Refuses a virtual layout, external storage and any filter (no other file is read, no filter
/// plugin is loaded).
fn check_plain_storage(path: &Path, ds: &hdf5::Dataset, full: &str) -> Result<(), IoError> {
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
    Ok(())
}

/// The allocated storage of `ds` must cover its declared size and fit in the file: this bounds
/// every later read (and allocation) by the size of the file. Call after the caps.
pub(crate) fn check_storage(
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

pub(crate) fn open_dataset(
    path: &Path,
    group: &hdf5::Group,
    name: &str,
    full: &str,
) -> Result<hdf5::Dataset, IoError> {
    group
        .dataset(name)
        .map_err(|e| layout_err(path, format!("{full} is not a readable dataset: {e}")))
}

pub(crate) fn read_u64_attr(
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

pub(crate) fn read_scalar_u64_attr(
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
pub(crate) fn attr_to_string(attr: &hdf5::Attribute) -> String {
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

pub(crate) fn string_attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Read `range` of a 1-D integer dataset as u64 (refusing negatives).
pub(crate) fn read_index_slice(
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

pub(crate) fn check_caps(path: &Path, what: &str, rows: usize, cols: usize) -> Result<(), IoError> {
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
