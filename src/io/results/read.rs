//! Reading results files: rows (SWMR, so a running or killed writer's file opens), late
//! arrivals, vectors and attributes.

use std::path::Path;

use hdf5::types::{FixedUnicode, TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, File, OpenMode};
use ndarray::{s, Array1, Array2};

use super::{
    h5e, AdaptSwitch, IoError, LateColumn, LateRow, LayerMetric, Metric, RecordedRows,
    WorkerMetric, ADAPT_REASON_BYTES,
};

fn read_f64_attr(file: &File, name: &str) -> Option<f64> {
    file.attr(name)
        .ok()
        .and_then(|a| a.read_scalar::<f64>().ok())
}

/// Open a results file read-only (SWMR read, so a file left by a killed writer opens too).
pub fn open(path: &Path) -> Result<File, IoError> {
    if !path.exists() {
        return Err(IoError::NotFound {
            path: path.to_path_buf(),
        });
    }
    File::open_as(path, OpenMode::ReadSWMR)
        .or_else(|_| File::open(path))
        .map_err(|err| IoError::NotHdf5 {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })
}

/// The root attribute `status`, if present (trimmed: earlier versions stored `running` padded
/// with spaces to 12 characters).
pub fn status(file: &File) -> Option<String> {
    file.attr("status")
        .ok()
        .and_then(|a| a.read_scalar::<VarLenUnicode>().ok())
        .map(|s| s.as_str().trim().to_string())
}

/// Read every row of a results file (the first `limit` when given), and its late arrivals (those
/// received during the rows kept). Columns missing from an older or partial file read as NaN;
/// per-worker metrics missing from it have no columns ([`RecordedRows::has`]).
pub fn read_rows(path: &Path, limit: Option<usize>) -> Result<RecordedRows, IoError> {
    let file = open(path)?;
    let _ = read_f64_attr(&file, "schema_version");
    let e = h5e(path);
    let it = file
        .dataset("metrics/iteration")
        .map_err(|_| IoError::layout(path, "no /metrics/iteration: not a gradcode results file"))?;
    let mut rows = it.shape().first().copied().unwrap_or(0);
    let worker_ds: Vec<Option<Dataset>> = WorkerMetric::ALL
        .iter()
        .map(|m| file.dataset(&m.path()).ok())
        .collect();
    let scalar_ds: Vec<Option<Dataset>> = Metric::ALL
        .iter()
        .map(|m| file.dataset(&format!("metrics/{}", m.name())).ok())
        .collect();
    let layer_ds: Vec<Option<Dataset>> = LayerMetric::ALL
        .iter()
        .map(|m| file.dataset(&m.path()).ok())
        .collect();
    // Under SWMR a killed writer may have extended some datasets and not others: keep the rows
    // present everywhere.
    for ds in scalar_ds
        .iter()
        .chain(&worker_ds)
        .chain(&layer_ds)
        .flatten()
    {
        rows = rows.min(ds.shape().first().copied().unwrap_or(0));
    }
    if let Some(l) = limit {
        rows = rows.min(l);
    }
    let mut scalars = Vec::new();
    for ds in &scalar_ds {
        scalars.push(match ds {
            Some(ds) => ds.read_slice_1d::<f64, _>(s![0..rows]).map_err(&e)?,
            None => Array1::from_elem(rows, f64::NAN),
        });
    }
    let matrix = |ds: &Option<Dataset>| -> Result<Array2<f64>, IoError> {
        match ds {
            Some(ds) => ds.read_slice_2d::<f64, _>(s![0..rows, ..]).map_err(&e),
            None => Ok(Array2::zeros((rows, 0))),
        }
    };
    let per_worker = worker_ds
        .iter()
        .map(matrix)
        .collect::<Result<Vec<_>, _>>()?;
    let per_layer = layer_ds.iter().map(matrix).collect::<Result<Vec<_>, _>>()?;
    Ok(RecordedRows {
        scalars,
        per_worker,
        per_layer,
        present: worker_ds.iter().map(Option::is_some).collect(),
        late: read_late(&file, path, limit.map(|_| rows as u64))?,
    })
}

/// The late arrivals (none in older files); with `rows`, only those received during the first
/// `rows` iterations (the part of a run a resume keeps).
fn read_late(file: &File, path: &Path, rows: Option<u64>) -> Result<Vec<LateRow>, IoError> {
    let e = h5e(path);
    let mut cols = Vec::new();
    for c in LateColumn::ALL {
        match file.dataset(&format!("late/{}", c.name())) {
            Ok(ds) => cols.push(ds.read_1d::<f64>().map_err(&e)?),
            Err(_) => return Ok(Vec::new()),
        }
    }
    let len = cols.iter().map(Array1::len).min().unwrap_or(0);
    Ok((0..len)
        .map(|i| LateRow::from_values(&std::array::from_fn(|c| cols[c][i])))
        .filter(|row| rows.map_or(true, |r| row.received_during < r))
        .collect())
}

/// Read a 1-D f64 dataset, e.g. `model/w_final`.
pub fn read_vector(path: &Path, name: &str) -> Result<Array1<f64>, IoError> {
    let file = open(path)?;
    let ds = file
        .dataset(name)
        .map_err(|_| IoError::layout(path, format!("no /{name}")))?;
    ds.read_1d::<f64>().map_err(h5e(path))
}

/// Group `group` of the results file `path` ("" for the root), opened read-only.
fn group_of(path: &Path, group: &str) -> Result<hdf5::Group, IoError> {
    let file = open(path)?;
    if group.is_empty() {
        return Ok((*file).clone());
    }
    file.group(group)
        .map_err(|_| IoError::layout(path, format!("no /{group}")))
}

/// Read a string attribute `name` of group `group` ("" for the root).
pub fn read_str_attr(path: &Path, group: &str, name: &str) -> Result<String, IoError> {
    group_of(path, group)?
        .attr(name)
        .and_then(|a| a.read_scalar::<VarLenUnicode>())
        .map(|s| s.as_str().trim().to_string())
        .map_err(|_| IoError::layout(path, format!("no string attribute {name} on /{group}")))
}

/// Read a numeric attribute `name` of group `group` ("" for the root) as f64.
pub fn read_num_attr(path: &Path, group: &str, name: &str) -> Result<f64, IoError> {
    group_of(path, group)?
        .attr(name)
        .and_then(|a| a.read_scalar::<f64>())
        .map_err(|_| IoError::layout(path, format!("no numeric attribute {name} on /{group}")))
}

/// The switches of a `train --adapt` run (`/adapt`); None when the run did not adapt (no
/// `/adapt` group). A file still being written (or killed) has no `switches` attribute yet: its
/// rows are those present in every column, `reason` as the run wrote it (fixed-length).
pub fn read_adapt(path: &Path) -> Result<Option<Vec<AdaptSwitch>>, IoError> {
    let file = open(path)?;
    let Ok(g) = file.group("adapt") else {
        return Ok(None);
    };
    let count = g.attr("switches").and_then(|a| a.read_scalar::<u64>());
    let finished = count.is_ok();
    if count.as_ref().is_ok_and(|&n| n == 0) {
        return Ok(Some(Vec::new()));
    }
    let col = |name: &str| {
        g.dataset(name)
            .map_err(|_| IoError::layout(path, format!("no /adapt/{name}")))
    };
    let ints = |name: &str| col(name)?.read_raw::<u64>().map_err(h5e(path));
    let (iteration, old_s, new_s) = (ints("iteration")?, ints("old_s")?, ints("new_s")?);
    let gain = col("gain")?.read_raw::<f64>().map_err(h5e(path))?;
    // Files from before --adapt-deadline have no deadline columns.
    let deadline = |name: &str| match g.dataset(name) {
        Ok(d) => d.read_raw::<f64>().map_err(h5e(path)),
        Err(_) => Ok(vec![f64::NAN; iteration.len()]),
    };
    let (old_deadline, new_deadline) = (deadline("old_deadline_ms")?, deadline("new_deadline_ms")?);
    let reason_ds = col("reason")?;
    let fixed = matches!(
        reason_ds.dtype().and_then(|t| t.to_descriptor()),
        Ok(TypeDescriptor::FixedUnicode(_) | TypeDescriptor::FixedAscii(_))
    );
    let reason: Vec<String> = if fixed {
        reason_ds
            .read_raw::<FixedUnicode<ADAPT_REASON_BYTES>>()
            .map_err(h5e(path))?
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    } else {
        reason_ds
            .read_raw::<VarLenUnicode>()
            .map_err(h5e(path))?
            .iter()
            .map(|r| r.as_str().to_string())
            .collect()
    };
    let lens = [
        iteration.len(),
        old_s.len(),
        new_s.len(),
        gain.len(),
        old_deadline.len(),
        new_deadline.len(),
        reason.len(),
    ];
    let len = match count {
        Ok(n) => n as usize,
        Err(_) => lens.iter().copied().min().unwrap_or(0),
    };
    if finished && lens.iter().any(|&l| l != len) {
        return Err(IoError::layout(
            path,
            format!("/adapt columns are not all of {len} rows"),
        ));
    }
    Ok(Some(
        (0..len)
            .map(|i| AdaptSwitch {
                iteration: iteration[i],
                old_s: old_s[i],
                new_s: new_s[i],
                gain: gain[i],
                reason: reason[i].clone(),
                deadline_ms: (old_deadline[i].is_finite() && new_deadline[i].is_finite())
                    .then(|| (old_deadline[i], new_deadline[i])),
            })
            .collect(),
    ))
}
