//! Builders of hostile HDF5 datasets (the BI-3 catalogue of `../shared/RELIABILITY.md`): a
//! 4 × 2 `/X` stored or linked in a way the validator must refuse without opening any other
//! file, plus a label vector. Shared by the `io::dataset` unit tests (through `#[path]`) and
//! `tests/reliability.rs`; each builder writes into an open file `f` whose folder is `dir`.
//! Also [`h5_write`], the one way a test process writes an HDF5 file that a child then reads.
#![allow(dead_code)]

use std::path::Path;

use ndarray::{Array1, Array2};

/// `/y`: n ones.
pub fn y_of(f: &hdf5::File, n: usize) {
    f.new_dataset_builder()
        .with_data(&Array1::<f64>::ones(n))
        .create("y")
        .unwrap();
}

/// A 4 × 2 zero `/X` in a new file `src`.
fn source_file(src: &Path) {
    h5_write(src, false, |s| {
        s.new_dataset_builder()
            .with_data(&Array2::<f64>::zeros((4, 2)))
            .create("X")
            .unwrap();
    });
}

/// `/X` with external storage in `dir/outside` (64 bytes written there).
pub fn external_storage_x(f: &hdf5::File, dir: &Path, outside: &str) {
    let other = dir.join(outside);
    std::fs::write(&other, [0u8; 64]).unwrap();
    f.new_dataset::<f64>()
        .external(other.to_str().unwrap(), 0, 64)
        .shape((4, 2))
        .create("X")
        .unwrap();
}

/// `/X` as a virtual dataset mapping `/X` of `dir/source`.
pub fn virtual_x(f: &hdf5::File, dir: &Path, source: &str) {
    let src = dir.join(source);
    source_file(&src);
    f.new_dataset::<f64>()
        .virtual_map(src.to_str().unwrap(), "X", (4, 2), .., (4, 2), ..)
        .shape((4, 2))
        .create("X")
        .unwrap();
}

/// `/X` as an external link to `/X` of `dir/source`.
pub fn external_link_x(f: &hdf5::File, dir: &Path, source: &str) {
    let src = dir.join(source);
    source_file(&src);
    f.link_external(src.to_str().unwrap(), "X", "X").unwrap();
}

/// `/X` chunked with a filter: deflate when `deflate`, else shuffle.
pub fn filtered_x(f: &hdf5::File, deflate: bool) {
    let zeros = Array2::<f64>::zeros((4, 2));
    let b = f.new_dataset_builder().with_data(&zeros).chunk((2, 2));
    let b = if deflate { b.deflate(4) } else { b.shuffle() };
    b.create("X").unwrap();
}

/// `/X` as a soft link to a dataset `/Z`.
pub fn soft_link_x(f: &hdf5::File) {
    f.new_dataset_builder()
        .with_data(&Array2::<f64>::zeros((4, 2)))
        .create("Z")
        .unwrap();
    f.link_soft("/Z", "X").unwrap();
}

/// A builder of a hostile `/X` in the open file `f` whose folder is `dir`.
pub type Build = fn(&hdf5::File, &Path);

/// Every builder above with a phrase its refusal must contain.
pub fn refused_x() -> [(&'static str, Build); 5] {
    [
        ("external storage", |f, dir| {
            external_storage_x(f, dir, "secret.bin")
        }),
        ("virtual dataset", |f, dir| virtual_x(f, dir, "src.h5")),
        ("filters", |f, _| filtered_x(f, false)),
        ("/X is an external link", |f, dir| {
            external_link_x(f, dir, "src2.h5")
        }),
        ("/X is a soft link", |f, _| soft_link_x(f)),
    ]
}

/// Write or edit the HDF5 file `path` from this test process without leaving a lock on it.
///
/// libhdf5 opens files without `O_CLOEXEC` and holds an `flock` until the last descriptor of the
/// open file closes. A `gradcode` child that another test thread forks while the file is open
/// inherits the descriptor and keeps the lock until it exits, so the next child that opens the
/// file fails with "unable to lock file, errno = 11" (seen in CI). The file is therefore built
/// under a scratch name (a copy of `path` when `edit`), then copied by std (which opens with
/// `O_CLOEXEC`) to a fresh inode that is renamed onto `path`: no HDF5 descriptor ever refers to
/// the inode the children read.
pub fn h5_write<R>(path: &Path, edit: bool, f: impl FnOnce(&hdf5::File) -> R) -> R {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let scratch = path.with_file_name(format!(".{name}.h5write-{}-{n}", std::process::id()));
    let partial = path.with_file_name(format!(".{name}.h5copy-{}-{n}", std::process::id()));
    let r = {
        let file = if edit {
            std::fs::copy(path, &scratch).unwrap();
            hdf5::File::open_rw(&scratch).unwrap()
        } else {
            hdf5::File::create(&scratch).unwrap()
        };
        f(&file)
    };
    std::fs::copy(&scratch, &partial).unwrap();
    std::fs::rename(&partial, path).unwrap();
    let _ = std::fs::remove_file(&scratch);
    r
}
