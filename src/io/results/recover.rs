//! `gradcode recover`: a killed run's results file made consistent, its complete iterations
//! (and a `train --adapt` run's switch log, `/adapt`) kept.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::File;
use ndarray::Array1;

use super::writer::utc_now;
use super::{
    h5e, open, read_adapt, read_rows, status, write_attrs, AttrValue, FinalRecord, IoError,
    RunMeta, RunWriter, WorkerMetric,
};

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The results file examined.
    pub path: PathBuf,
    /// Its status before (`running` for a killed job).
    pub status_before: String,
    /// Complete iterations it holds (rows present in every metric).
    pub rows: usize,
    /// The status written: `recovered` (rows kept), `failed` (no complete row), or the old one
    /// when there was nothing to recover.
    pub status_after: String,
    /// Where the original file was kept (`run.h5.killed`), when a consistent copy replaced it.
    pub kept: Option<PathBuf>,
}

/// Every attribute of `loc` as a typed value (strings, integers, floats, booleans; others are
/// skipped).
fn read_attrs(loc: &hdf5::Location) -> Vec<(String, AttrValue)> {
    use hdf5::types::TypeDescriptor as T;
    let mut out = Vec::new();
    for name in loc.attr_names().unwrap_or_default() {
        let Ok(a) = loc.attr(&name) else { continue };
        let Ok(desc) = a.dtype().and_then(|d| d.to_descriptor()) else {
            continue;
        };
        let v = match desc {
            T::VarLenUnicode => a
                .read_scalar::<VarLenUnicode>()
                .ok()
                .map(|s| AttrValue::Str(s.as_str().to_string())),
            T::Unsigned(_) | T::Integer(_) => a.read_scalar::<u64>().ok().map(AttrValue::U64),
            T::Float(_) => a.read_scalar::<f64>().ok().map(AttrValue::F64),
            T::Boolean => a.read_scalar::<bool>().ok().map(AttrValue::Bool),
            _ => None,
        };
        if let Some(v) = v {
            out.push((name, v));
        }
    }
    out
}

/// Recover the results file of a killed job (status `running`): keep its complete iterations in
/// a consistent copy that any HDF5 reader opens normally (no SWMR flag, no `h5clear` needed),
/// with status `recovered` (or `failed` when not one iteration is complete), the original
/// self-description, the `/adapt` switches written before the kill, and `/summary` attributes `iterations_run`, `recovered_from` and `error`.
/// The copy is written next to the file, then the original is renamed to `run.h5.killed` (kept,
/// never deleted) and the copy renamed into its place. A file whose status is not `running` is
/// left alone.
pub fn recover(path: &Path) -> Result<Recovery, IoError> {
    let file = open(path)?;
    let status_before = status(&file).unwrap_or_default();
    let rows = read_rows(path, None)?;
    let n_rows = rows.len();
    // `train --adapt`: the switches written before the kill (a damaged log is dropped, not
    // the rows).
    let adapt = read_adapt(path).unwrap_or_else(|err| {
        log::warn!("{}: /adapt dropped: {err}", path.display());
        None
    });
    if status_before != "running" {
        return Ok(Recovery {
            path: path.to_path_buf(),
            status_after: status_before.clone(),
            status_before,
            rows: n_rows,
            kept: None,
        });
    }
    let e = h5e(path);
    let grp = |name: &str| -> Vec<(String, AttrValue)> {
        file.group(name).map(|g| read_attrs(&g)).unwrap_or_default()
    };
    let mut config = grp("config");
    let config_toml = match config.iter().position(|(k, _)| k == "toml") {
        Some(i) => match config.remove(i).1 {
            AttrValue::Str(s) => s,
            _ => String::new(),
        },
        None => String::new(),
    };
    let code_matrix = file
        .dataset("code_matrix/B")
        .and_then(|d| d.read_2d::<f64>())
        .map_err(&e)?;
    let n_workers = if rows.has(WorkerMetric::ArrivalS) {
        rows.workers()
    } else {
        code_matrix.nrows()
    };
    let meta = RunMeta {
        code: grp("code"),
        env: grp("env"),
        config,
        config_toml,
        code_matrix,
        n_workers,
        n_layers: rows.layers(),
        adapt: false,
    };
    let root: &hdf5::Location = &file;
    let root_attrs: Vec<(String, AttrValue)> = read_attrs(root)
        .into_iter()
        .filter(|(k, _)| k != "status")
        .collect();
    drop(file);

    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run.h5".into());
    let tmp = dir.join(format!(".{name}.recover.tmp"));
    if tmp
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(IoError::layout(
            &tmp,
            "is a symbolic link; refusing to write",
        ));
    }
    let _ = std::fs::remove_file(&tmp);
    let status_after = if n_rows > 0 { "recovered" } else { "failed" };
    let written = (|| -> Result<(), IoError> {
        let writer = RunWriter::create(&tmp, &meta, Some(&rows))?;
        writer.finish(&FinalRecord {
            status: status_after.into(),
            w_final: Array1::zeros(0),
            validation: vec![
                ("check".into(), AttrValue::Str("NOT RUN".into())),
                (
                    "verdict".into(),
                    AttrValue::Str("INCOMPLETE (recovered after the job was killed)".into()),
                ),
            ],
            summary: vec![
                ("iterations_run".into(), AttrValue::U64(n_rows as u64)),
                ("recovered_from".into(), AttrValue::Str(name.clone())),
                ("recovered_utc".into(), AttrValue::Str(utc_now())),
                (
                    "error".into(),
                    AttrValue::Str(format!(
                        "the job was killed; {n_rows} complete iterations recovered"
                    )),
                ),
            ],
            per_worker: Vec::new(),
            adapt: adapt.clone(),
        })?;
        // The original creation time, schema and version (create() wrote new ones).
        let f = open_rw_retrying(&tmp)?;
        let loc: &hdf5::Location = &f;
        write_attrs(&tmp, loc, &root_attrs)?;
        f.flush().map_err(h5e(&tmp))?;
        f.close().map_err(h5e(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|err| IoError::os(&tmp, err))
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    let kept = dir.join(format!("{name}.killed"));
    std::fs::rename(path, &kept).map_err(|err| IoError::os(path, err))?;
    std::fs::rename(&tmp, path).map_err(|err| IoError::os(&tmp, err))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    log::info!(
        "{}: {n_rows} complete iterations recovered (status {status_after}); original kept as {}",
        path.display(),
        kept.display()
    );
    Ok(Recovery {
        path: path.to_path_buf(),
        status_before,
        rows: n_rows,
        status_after: status_after.into(),
        kept: Some(kept),
    })
}

/// Open `path` (a file this process has just closed) for writing. A child process forked by
/// another thread while the file was open holds its lock until it execs, so a lock refusal is
/// retried for up to 2 s before it is an error.
fn open_rw_retrying(path: &Path) -> Result<File, IoError> {
    let mut tries = 0;
    loop {
        match File::open_rw(path) {
            Ok(f) => return Ok(f),
            Err(e) if tries < 100 && e.to_string().contains("unable to lock file") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(h5e(path)(e)),
        }
    }
}
