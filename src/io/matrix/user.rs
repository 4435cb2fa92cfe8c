//! A user's own matrix for `gradcode matvec` / `gradcode matmul` (issue 18): a plain HDF5 file as
//! h5py writes it, with no labels and no task. The matrix is a 2-D numeric dataset or a CSR group
//! (`data`, `indices`, `indptr` and a `shape` attribute `[rows, cols]`), named by a
//! [`MatrixSource`]:
//! - `FILE.h5:/path` names it;
//! - `FILE.h5` alone: `/X` of a gradcode dataset file (one with `/X` and `/y`), else the file's
//!   only 2-D dataset or CSR group, found by following hard links from the root (at most
//!   [`MAX_VISITED`] objects, [`MAX_DEPTH`] groups deep); none or several is an error that lists
//!   the candidates.
//!
//! The matrix gets the checks of a dataset's `/X` (GUIDE §5, [`crate::io::dataset`]): HDF5
//! signature, hard links only along its path, no virtual, external or filtered storage, shapes
//! multiplied with checked arithmetic against the caps, storage inside the file, `indptr` from 0
//! to nnz. Float and integer values are accepted; integers are converted to f64 when read (exact
//! up to 2^53). Reads are hyperslabs of the rows asked for; non-finite values are refused.
//!
//! Not done here: running these checks in the resource-limited child process (see
//! [`crate::io::validate::validate_matrix_isolated`], which callers use first: libhdf5 is not
//! safe on crafted files).

use std::ops::Range;
use std::path::Path;

use hdf5::{LinkType, LocationType};

use super::MatrixSource;
use crate::data::{DataError, Features};
use crate::io::dataset::checks::{hard_link, layout_err, links_of, open_hdf5, Kind};
use crate::io::dataset::object::{check_x, SplitLayout};
use crate::io::dataset::read::{global_row, read_x_rows};
use crate::io::IoError;

/// Value kinds accepted in a user's matrix (integers are converted to f64 on read).
const VALUES: [Kind; 3] = [Kind::Float, Kind::Int, Kind::UInt];
/// Most objects visited while looking for the matrix of a file named without a path.
pub const MAX_VISITED: usize = 4096;
/// Deepest group nesting searched for the matrix of a file named without a path.
pub const MAX_DEPTH: usize = 32;

/// What a user's matrix declares, checked without reading its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixInfo {
    /// The object named or found, e.g. `/A`, `/grp/M` or `/X`.
    pub object: String,
    pub rows: usize,
    pub cols: usize,
    /// Stored as a CSR group.
    pub sparse: bool,
    /// Stored entries (rows × cols when dense).
    pub nnz: u64,
}

/// An open file and its checked matrix object `name` of `parent` (absolute path `full`).
struct Located {
    parent: hdf5::Group,
    name: String,
    full: String,
    layout: SplitLayout,
}

/// Check the matrix of `src` (its layout and shape, not its values) in this process.
///
/// Callers that have not validated the file yet use
/// [`crate::io::validate::validate_matrix_isolated`] instead.
pub fn matrix_info(src: &MatrixSource) -> Result<MatrixInfo, IoError> {
    let m = locate(src)?;
    let s = m.layout.shape;
    Ok(MatrixInfo {
        object: m.full,
        rows: s.n_rows,
        cols: s.n_features,
        sparse: s.sparse,
        nnz: s.nnz,
    })
}

/// Read the whole matrix of `src`.
pub fn read_matrix_source(src: &MatrixSource) -> Result<Features, IoError> {
    let m = locate(src)?;
    let all = 0..m.layout.shape.n_rows;
    read_located(src, &m, std::slice::from_ref(&all))
}

/// Read the rows in `ranges` of the matrix of `src`, stacked in the order given (hyperslab
/// reads only, dense or CSR as stored).
pub fn read_matrix_rows(src: &MatrixSource, ranges: &[Range<usize>]) -> Result<Features, IoError> {
    let m = locate(src)?;
    read_located(src, &m, ranges)
}

fn read_located(
    src: &MatrixSource,
    m: &Located,
    ranges: &[Range<usize>],
) -> Result<Features, IoError> {
    let path = src.file.as_path();
    let data_err = |source: DataError| IoError::Data {
        path: path.to_path_buf(),
        source,
    };
    let rows = m.layout.shape.n_rows;
    if let Some(r) = ranges.iter().find(|r| r.start > r.end || r.end > rows) {
        return Err(data_err(DataError::Invalid(format!(
            "row range {}..{} is outside the {rows} rows of {}",
            r.start, r.end, m.full
        ))));
    }
    let x = read_x_rows(path, &m.parent, &m.name, &m.full, m.layout, ranges)?;
    if let Some(row) = x.first_non_finite_row() {
        return Err(data_err(DataError::NonFinite {
            what: format!("matrix {}", m.full),
            row: global_row(ranges, row),
        }));
    }
    Ok(x)
}

/// Open the file of `src`, find or follow the path to its matrix and check the object.
fn locate(src: &MatrixSource) -> Result<Located, IoError> {
    let path = src.file.as_path();
    let (file, file_len) = open_hdf5(path)?;
    let full = match &src.object {
        Some(o) => o.clone(),
        None => find_matrix(path, &file)?,
    };
    let (parent, name) = parent_of(path, &file, &full)?;
    if parent.loc_type_by_name(&name).ok() == Some(LocationType::Group) {
        let g = parent
            .group(&name)
            .map_err(|e| layout_err(path, format!("{full}: cannot open group: {e}")))?;
        if !looks_csr(path, &g, &full)? {
            return Err(layout_err(
                path,
                format!(
                    "{full} is a group, not a 2-D dataset or a CSR group (data, indices, indptr \
                     and a shape attribute)"
                ),
            ));
        }
    }
    let layout = check_x(path, file_len, &parent, &name, &full, &VALUES)?;
    if layout.shape.n_rows == 0 {
        return Err(layout_err(path, format!("{full} has no rows")));
    }
    Ok(Located {
        parent,
        name,
        full,
        layout,
    })
}

/// The group holding `full` (an absolute in-file path) and the last name, following only hard
/// links to groups.
fn parent_of(path: &Path, file: &hdf5::File, full: &str) -> Result<(hdf5::Group, String), IoError> {
    let parts: Vec<&str> = full.split('/').filter(|p| !p.is_empty()).collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(layout_err(path, format!("'{full}' names no object")));
    };
    let mut group: hdf5::Group = (**file).clone();
    let mut at = String::new();
    for (i, part) in parts.iter().enumerate() {
        let shown = if at.is_empty() { "the root group" } else { &at };
        let links = links_of(path, &group, shown)?;
        let next = format!("{at}/{part}");
        if !hard_link(path, &links, part, &next)? {
            let found = candidates(path, file)
                .map(|c| match c.as_slice() {
                    [] => String::new(),
                    _ => format!(" (2-D datasets and CSR groups in it: {})", c.join(", ")),
                })
                .unwrap_or_default();
            return Err(layout_err(
                path,
                format!("no object {next} in the file{found}"),
            ));
        }
        if i < dirs.len() {
            if group.loc_type_by_name(part).ok() != Some(LocationType::Group) {
                return Err(layout_err(path, format!("{next} is not a group")));
            }
            group = group
                .group(part)
                .map_err(|e| layout_err(path, format!("{next}: cannot open group: {e}")))?;
        }
        at = next;
    }
    Ok((group, (*last).to_string()))
}

/// Whether group `g` has members named `data`, `indices` and `indptr` (then it is checked as
/// CSR, which names any other defect).
fn looks_csr(path: &Path, g: &hdf5::Group, full: &str) -> Result<bool, IoError> {
    let links = links_of(path, g, full)?;
    Ok(["data", "indices", "indptr"]
        .iter()
        .all(|m| links.iter().any(|(n, _)| n == m)))
}

/// The matrix of a file named without a path: `/X` of a dataset file, else the only candidate.
fn find_matrix(path: &Path, file: &hdf5::File) -> Result<String, IoError> {
    let links = links_of(path, file, "the root group")?;
    if hard_link(path, &links, "X", "/X")? && hard_link(path, &links, "y", "/y")? {
        return Ok("/X".into());
    }
    let found = candidates(path, file)?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(layout_err(
            path,
            "holds no 2-D dataset or CSR group (a matrix needs one)",
        )),
        [first, ..] => Err(layout_err(
            path,
            format!(
                "holds {} matrices ({}): name one as {}:{first}",
                found.len(),
                found.join(", "),
                path.display()
            ),
        )),
    }
}

/// Every 2-D dataset and CSR-like group reachable from the root by hard links, in name order.
fn candidates(path: &Path, file: &hdf5::File) -> Result<Vec<String>, IoError> {
    let mut out = Vec::new();
    let mut visited = 0;
    walk(path, file, "", 0, &mut visited, &mut out)?;
    Ok(out)
}

fn walk(
    path: &Path,
    group: &hdf5::Group,
    prefix: &str,
    depth: usize,
    visited: &mut usize,
    out: &mut Vec<String>,
) -> Result<(), IoError> {
    let shown = if prefix.is_empty() {
        "the root group"
    } else {
        prefix
    };
    for (name, link) in links_of(path, group, shown)? {
        if link != LinkType::Hard {
            continue;
        }
        *visited += 1;
        if *visited > MAX_VISITED {
            return Err(layout_err(
                path,
                format!("has more than {MAX_VISITED} objects: name the matrix as FILE.h5:/path"),
            ));
        }
        let full = format!("{prefix}/{name}");
        match group.loc_type_by_name(&name) {
            Ok(LocationType::Dataset) if group.dataset(&name).is_ok_and(|d| d.ndim() == 2) => {
                out.push(full);
            }
            Ok(LocationType::Group) => {
                let Ok(g) = group.group(&name) else { continue };
                if looks_csr(path, &g, &full)? {
                    out.push(full);
                } else if depth < MAX_DEPTH {
                    walk(path, &g, &full, depth + 1, visited, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::data::{CsrMatrix, Dataset, Task};
    use crate::io::dataset::hostile_fixtures as hf;
    use crate::io::dataset::{self, DatasetMeta};
    use ndarray::{arr2, Array1, Array2, Array3};
    use std::path::PathBuf;

    fn a34() -> Array2<f64> {
        Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64 - 2.5)
    }

    /// A new file `name` in `dir` built by `f` (as h5py would write it: no attributes).
    fn h5(dir: &Path, name: &str, f: impl FnOnce(&hdf5::File)) -> PathBuf {
        let p = dir.join(name);
        let file = hdf5::File::create(&p).unwrap();
        f(&file);
        p
    }

    fn dense(g: &hdf5::Group, name: &str, a: &Array2<f64>) {
        g.new_dataset_builder().with_data(a).create(name).unwrap();
    }

    fn err(src: &MatrixSource) -> String {
        let e = matrix_info(src).unwrap_err();
        assert!(matches!(e, IoError::Layout { .. }), "{e:?}");
        assert!(read_matrix_source(src).is_err());
        e.to_string()
    }

    fn named(p: &Path, object: &str) -> MatrixSource {
        MatrixSource {
            file: p.to_path_buf(),
            object: Some(object.into()),
        }
    }

    #[test]
    fn a_single_dataset_is_found_and_read_by_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = h5(dir.path(), "a.h5", |f| dense(f, "A", &a34()));
        let src = MatrixSource::file(&p);
        let info = matrix_info(&src).unwrap();
        assert_eq!(
            info,
            MatrixInfo {
                object: "/A".into(),
                rows: 3,
                cols: 4,
                sparse: false,
                nnz: 12
            }
        );
        assert_eq!(read_matrix_source(&src).unwrap(), Features::Dense(a34()));
        assert_eq!(
            read_matrix_source(&named(&p, "/A")).unwrap(),
            Features::Dense(a34())
        );
        let rows = read_matrix_rows(&src, &[2..3, 0..1]).unwrap();
        let want = ndarray::concatenate![
            ndarray::Axis(0),
            a34().slice(ndarray::s![2..3, ..]),
            a34().slice(ndarray::s![0..1, ..])
        ];
        assert_eq!(rows, Features::Dense(want));
        let e = read_matrix_rows(&src, &[2..4]).unwrap_err().to_string();
        assert!(
            e.contains("row range 2..4 is outside the 3 rows of /A"),
            "{e}"
        );
    }

    #[test]
    fn nested_paths_csr_groups_and_dataset_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = h5(dir.path(), "n.h5", |f| {
            dense(f, "A", &a34());
            let g = f.create_group("grp").unwrap();
            dense(&g, "M", &arr2(&[[1.0, 2.0], [3.0, 4.0]]));
            let s = f.create_group("S").unwrap();
            let m = CsrMatrix::new(3, 5, vec![0, 2, 2, 3], vec![0, 4, 1], vec![1.5, -2.0, 3.0])
                .unwrap();
            s.new_dataset_builder()
                .with_data(m.data())
                .create("data")
                .unwrap();
            s.new_dataset_builder()
                .with_data(m.indices())
                .create("indices")
                .unwrap();
            let ptr: Vec<i64> = m.indptr().iter().map(|&v| v as i64).collect();
            s.new_dataset_builder()
                .with_data(&ptr)
                .create("indptr")
                .unwrap();
            s.new_attr_builder()
                .with_data(&[3u64, 5])
                .create("shape")
                .unwrap();
        });
        let m = read_matrix_source(&named(&p, "/grp/M")).unwrap();
        assert_eq!(m, Features::Dense(arr2(&[[1.0, 2.0], [3.0, 4.0]])));
        let src: MatrixSource = format!("{}:/S", p.display()).parse().unwrap();
        let info = matrix_info(&src).unwrap();
        assert_eq!(
            (info.rows, info.cols, info.sparse, info.nnz),
            (3, 5, true, 3)
        );
        let Features::Sparse(rows) = read_matrix_rows(&src, &[2..3, 0..1]).unwrap() else {
            panic!("expected CSR")
        };
        assert_eq!(
            rows.to_dense(),
            arr2(&[[0.0, 3.0, 0.0, 0.0, 0.0], [1.5, 0.0, 0.0, 0.0, -2.0]])
        );
        // Three candidates, no path: each is listed, with how to name one.
        let e = err(&MatrixSource::file(&p));
        assert!(
            e.contains("holds 3 matrices (/A, /S, /grp/M): name one as") && e.contains("n.h5:/A"),
            "{e}"
        );
        let e = err(&named(&p, "/B"));
        assert!(
            e.contains(
                "no object /B in the file (2-D datasets and CSR groups in it: /A, /S, /grp/M)"
            ),
            "{e}"
        );
        let e = err(&named(&p, "/A/x"));
        assert!(e.contains("/A is not a group"), "{e}");

        // A gradcode dataset file: /X is the matrix, /y and the attributes are ignored.
        let d = dir.path().join("d.h5");
        let y = Array1::from(vec![1.0, -1.0, 1.0]);
        let ds = Dataset::new(Features::Dense(a34()), y, Task::Binary).unwrap();
        dataset::write(&d, &ds, None, &DatasetMeta::default(), false).unwrap();
        assert_eq!(matrix_info(&MatrixSource::file(&d)).unwrap().object, "/X");
        assert_eq!(
            read_matrix_source(&MatrixSource::file(&d)).unwrap(),
            Features::Dense(a34())
        );
    }

    #[test]
    fn ranks_dtypes_groups_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = h5(dir.path(), "r.h5", |f| {
            f.new_dataset_builder()
                .with_data(&Array1::<f64>::zeros(4))
                .create("v")
                .unwrap();
            f.new_dataset_builder()
                .with_data(&Array3::<f64>::zeros((2, 2, 2)))
                .create("t")
                .unwrap();
            f.create_group("empty").unwrap();
        });
        let e = err(&MatrixSource::file(&p));
        assert!(e.contains("holds no 2-D dataset or CSR group"), "{e}");
        let e = err(&named(&p, "/v"));
        assert!(e.contains("/v has rank 1 (expected 2)"), "{e}");
        let e = err(&named(&p, "/t"));
        assert!(e.contains("/t has rank 3 (expected 2)"), "{e}");
        let e = err(&named(&p, "/empty"));
        assert!(
            e.contains("/empty is a group, not a 2-D dataset or a CSR group"),
            "{e}"
        );

        // Integers are accepted and converted; strings are not numbers.
        let p = h5(dir.path(), "i.h5", |f| {
            let a = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as i64 - 1);
            f.new_dataset_builder().with_data(&a).create("I").unwrap();
            let u = Array2::from_shape_fn((2, 2), |(i, j)| (i + j) as u8);
            f.new_dataset_builder().with_data(&u).create("U").unwrap();
        });
        assert_eq!(
            read_matrix_source(&named(&p, "/I")).unwrap(),
            Features::Dense(arr2(&[[-1.0, 0.0, 1.0], [2.0, 3.0, 4.0]]))
        );
        assert_eq!(
            read_matrix_source(&named(&p, "/U")).unwrap(),
            Features::Dense(arr2(&[[0.0, 1.0], [1.0, 2.0]]))
        );

        // Non-finite values are refused when read, with the row.
        let mut bad = a34();
        bad[[1, 2]] = f64::NAN;
        let p = h5(dir.path(), "nan.h5", |f| dense(f, "A", &bad));
        assert!(matrix_info(&MatrixSource::file(&p)).is_ok());
        let e = read_matrix_source(&MatrixSource::file(&p))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("matrix /A contains a non-finite value at row 1"),
            "{e}"
        );
        let e = read_matrix_rows(&MatrixSource::file(&p), &[2..3, 1..2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at row 1"), "{e}");
    }

    #[test]
    fn hostile_storage_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (i, (want, build)) in hf::refused_x().into_iter().enumerate() {
            let p = h5(dir.path(), &format!("h{i}.h5"), |f| build(f, dir.path()));
            let e = err(&named(&p, "/X"));
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = matrix_info(&MatrixSource::file(dir.path().join("none.h5"))).unwrap_err();
        assert!(matches!(e, IoError::NotFound { .. }), "{e}");
        std::fs::write(dir.path().join("t.h5"), "text").unwrap();
        let e = matrix_info(&MatrixSource::file(dir.path().join("t.h5"))).unwrap_err();
        assert!(matches!(e, IoError::NotHdf5 { .. }), "{e}");
    }
}
