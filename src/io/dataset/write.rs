//! Creating a dataset file in the layout of GUIDE §5 ([`write()`]): `/X` dense or CSR, `/y`, the
//! optional test split and the root attributes (provenance, task, counts, `format_version`),
//! published atomically (temporary file, fsync, no-clobber rename).
//!
//! Not done here: checking or reading a file (see [`super::layout`], [`super::read`]); the
//! results files and checkpoints have their own writers.

use std::fs;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;

use super::{DatasetMeta, Split, FORMAT_VERSION, IMAGE_SHAPE_ATTR};
use crate::data::{DataError, Dataset, Features, ImageShape, Task};
use crate::io::IoError;

fn h5w<'a>(path: &'a Path, what: &str) -> impl Fn(hdf5::Error) -> IoError + 'a {
    let what = what.to_string();
    move |e| IoError::hdf5(path, format!("writing {what}: {e}"))
}

pub(crate) fn write_str_attr(
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

pub(crate) fn write_u64_attr(
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

/// The `image_shape` attribute [channels, height, width] of `/X` (and `/X_test`), after checking
/// that an image is a dense row.
fn write_image_shape(
    path: &Path,
    file: &hdf5::File,
    train: &Dataset,
    test: Option<&Dataset>,
    image: ImageShape,
) -> Result<(), IoError> {
    if image.values() != Some(train.n_features()) || matches!(train.x, Features::Sparse(_)) {
        return Err(IoError::Data {
            path: path.to_path_buf(),
            source: DataError::Invalid(format!(
                "image shape {image} does not describe dense rows of {} features",
                train.n_features()
            )),
        });
    }
    let shape = [
        image.channels as u64,
        image.height as u64,
        image.width as u64,
    ];
    let split_names = std::iter::once(Split::Train).chain(test.map(|_| Split::Test));
    for split in split_names {
        let name = split.names().0;
        let ds = file.dataset(name).map_err(h5w(path, &format!("/{name}")))?;
        ds.new_attr_builder()
            .with_data(&shape)
            .create(IMAGE_SHAPE_ATTR)
            .map_err(h5w(path, &format!("/{name} attribute {IMAGE_SHAPE_ATTR}")))?;
    }
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
    if let Some(image) = meta.image {
        write_image_shape(path, &file, train, test, image)?;
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
    crate::io::check_overwrite(path, force)?;
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{dense_ds, meta};
    use super::super::{read_all, Split};
    use super::*;

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
}
