//! The dataset layout's check (GUIDE §5): which objects a dataset file holds (`/X` dense or CSR,
//! `/y`, optional `/X_test`, `/y_test`), their shapes against each other and the caps, and the
//! root attributes (`task`, `classes`, `format_version`, counts), all before any data is read.
//!
//! Not done here: reading values (see [`super::read`]); the object-level checks themselves live
//! in [`super::checks`].

use std::path::{Path, PathBuf};

use hdf5::LinkType;

use super::checks::{
    attr_to_string, check_dataset, check_storage, hard_link, layout_err, links_of, open_dataset,
    open_hdf5, read_scalar_u64_attr, read_u64_attr, string_attr, Kind, MAX_ATTRS,
};
use super::object::{check_x, SplitLayout};
use super::{DatasetInfo, Split, SplitShape, FORMAT_VERSION, IMAGE_SHAPE_ATTR, MAX_FEATURES};
use crate::data::{ImageShape, Task};
use crate::io::IoError;

/// An open dataset file whose layout passed [`open_checked`].
pub(crate) struct Checked {
    pub(crate) path: PathBuf,
    pub(crate) file: hdf5::File,
    pub(crate) train: SplitLayout,
    pub(crate) test: Option<SplitLayout>,
    pub(crate) task: Task,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) image: Option<ImageShape>,
}

impl Checked {
    pub(crate) fn split(&self, split: Split) -> Result<SplitLayout, IoError> {
        match split {
            Split::Train => Ok(self.train),
            Split::Test => self.test.ok_or_else(|| {
                IoError::layout(&self.path, "the file has no test split (/X_test, /y_test)")
            }),
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
    let layout = check_x(path, file_len, root, xn, &xf, &[Kind::Float])?;
    let shape = layout.shape;
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
    Ok(Some(layout))
}

/// The root group's attributes rendered as text (at most [`MAX_ATTRS`]).
pub(crate) fn root_attrs(
    path: &Path,
    root: &hdf5::Group,
) -> Result<Vec<(String, String)>, IoError> {
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
    Ok(attrs)
}

/// The task the root attributes declare (`task`, `classes`), after `format_version` is checked.
fn root_task(path: &Path, root: &hdf5::Group, attrs: &[(String, String)]) -> Result<Task, IoError> {
    if let Some(v) = read_scalar_u64_attr(path, root, "format_version")? {
        if v != FORMAT_VERSION {
            return Err(layout_err(
                path,
                format!("format_version {v} is not supported (expected {FORMAT_VERSION})"),
            ));
        }
    }
    let task_name = string_attr(attrs, "task").ok_or_else(|| {
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
    Task::from_name(&task_name, classes).map_err(|e| IoError::Data {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The `image_shape` attribute of `/X` (three positive values whose product is the features of
/// dense rows), `None` when absent.
fn image_shape(
    path: &Path,
    root: &hdf5::Group,
    train: &SplitShape,
) -> Result<Option<ImageShape>, IoError> {
    if train.sparse {
        return Ok(None);
    }
    let x = open_dataset(path, root, "X", "/X")?;
    let has = x
        .attr_names()
        .map_err(|e| IoError::hdf5(path, e))?
        .iter()
        .any(|n| n == IMAGE_SHAPE_ATTR);
    if !has {
        return Ok(None);
    }
    let what = format!("/X attribute '{IMAGE_SHAPE_ATTR}'");
    let v = read_u64_attr(path, &x, IMAGE_SHAPE_ATTR, &what)?;
    let dims: Vec<usize> = v.iter().filter_map(|&d| usize::try_from(d).ok()).collect();
    let image = match dims.as_slice() {
        &[channels, height, width] if channels > 0 && height > 0 && width > 0 => ImageShape {
            channels,
            height,
            width,
        },
        _ => {
            return Err(layout_err(
                path,
                format!("{what} is {v:?} (expected [channels, height, width], each > 0)"),
            ))
        }
    };
    if image.values() != Some(train.n_features) {
        return Err(layout_err(
            path,
            format!(
                "{what} {image} disagrees with /X ({} features)",
                train.n_features
            ),
        ));
    }
    Ok(Some(image))
}

pub(crate) fn open_checked(path: &Path) -> Result<Checked, IoError> {
    let (file, file_len) = open_hdf5(path)?;
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
    let attrs = root_attrs(path, root)?;
    let task = root_task(path, root, &attrs)?;
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
    let image = image_shape(path, root, &train.shape)?;
    Ok(Checked {
        path: path.to_path_buf(),
        file,
        train,
        test,
        task,
        attrs,
        image,
    })
}

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
        image: c.image,
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

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::super::fixtures::{dense_ds, meta};
    use super::super::write::{write, write_str_attr, write_u64_attr};
    use super::super::DatasetMeta;
    use super::super::{read_all, read_rows};
    use super::*;
    use ndarray::{arr1, Array1, Array2};
    use std::fs;

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

    use super::super::hostile_fixtures::{self, y_of};

    /// Issue 21: the image shape written with a dataset is read back by `inspect`; an
    /// `image_shape` that is not three positive values whose product is the features is
    /// refused by name, and a shape that does not describe the rows is refused on writing.
    #[test]
    fn image_shape_round_trip_and_bad_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.h5");
        let image = ImageShape {
            channels: 2,
            height: 3,
            width: 2,
        };
        let m = DatasetMeta {
            image: Some(image),
            ..meta()
        };
        let d = dense_ds(20, 12, Task::Binary);
        write(&p, &d, Some(&dense_ds(5, 12, Task::Binary)), &m, false).unwrap();
        assert_eq!(inspect(&p).unwrap().image, Some(image));
        let plain = dir.path().join("plain.h5");
        write(&plain, &d, None, &meta(), false).unwrap();
        assert_eq!(inspect(&plain).unwrap().image, None);
        let wrong = DatasetMeta {
            image: Some(ImageShape {
                channels: 1,
                height: 3,
                width: 3,
            }),
            ..meta()
        };
        let e = write(&dir.path().join("w.h5"), &d, None, &wrong, false).unwrap_err();
        assert!(e.to_string().contains("1×3×3"), "{e}");
        for (value, want) in [
            (vec![1u64, 3, 3], "disagrees with /X (12 features)"),
            (vec![12u64, 1], "expected [channels, height, width]"),
            (vec![0u64, 3, 4], "each > 0"),
        ] {
            let e = hostile(|f, _| {
                f.new_dataset_builder()
                    .with_data(&Array2::<f64>::zeros((4, 12)))
                    .create("X")
                    .unwrap()
                    .new_attr_builder()
                    .with_data(&value)
                    .create(IMAGE_SHAPE_ATTR)
                    .unwrap();
                y_of(f, 4);
            });
            assert!(
                e.contains("image_shape") && e.contains(want),
                "{value:?}: {e}"
            );
        }
    }

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
        for (want, build) in hostile_fixtures::refused_x() {
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
