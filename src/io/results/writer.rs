//! The append-only writer of `run.h5`: rows buffered and written in batches, flushed within
//! [`FLUSH_INTERVAL`], SWMR mode during the run, the final groups at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdf5::types::FixedUnicode;
use hdf5::{Dataset, File};
use ndarray::{s, ArrayView2};

use super::{
    group, h5e, vlu, write_attr, write_attrs, AdaptSwitch, AttrValue, FinalRecord, IoError,
    IterationRecord, LateColumn, LateRow, LayerMetric, Metric, RecordedRows, RunMeta, WorkerMetric,
    SCHEMA_VERSION,
};

/// Longest time a row stays buffered before it is written and flushed to `run.h5`: the most a
/// SIGKILL can lose.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Most rows buffered before a write, whatever the interval.
const FLUSH_ROWS: usize = 4096;

/// Bytes of an `/adapt/reason` written during the run (fixed-length: SWMR mode takes no
/// variable-length strings); a longer reason is cut at a character boundary until
/// [`RunWriter::finish`] rewrites the column whole.
pub const ADAPT_REASON_BYTES: usize = 512;

/// An `/adapt/reason` as written during the run.
type LiveReason = FixedUnicode<ADAPT_REASON_BYTES>;

/// The `/adapt` columns (`reason` last: written last during the run).
const ADAPT_COLUMNS: [&str; 7] = [
    "iteration",
    "old_s",
    "new_s",
    "gain",
    "old_deadline_ms",
    "new_deadline_ms",
    "reason",
];

/// The integer column `name` of `rows`.
fn adapt_ints(rows: &[AdaptSwitch], name: &str) -> Vec<u64> {
    rows.iter()
        .map(|w| match name {
            "iteration" => w.iteration,
            "old_s" => w.old_s,
            _ => w.new_s,
        })
        .collect()
}

/// The float column `name` of `rows` (deadlines NaN when not refitted).
fn adapt_floats(rows: &[AdaptSwitch], name: &str) -> Vec<f64> {
    rows.iter()
        .map(|w| match (name, w.deadline_ms) {
            ("gain", _) => w.gain,
            ("old_deadline_ms", Some((old, _))) => old,
            ("new_deadline_ms", Some((_, new))) => new,
            _ => f64::NAN,
        })
        .collect()
}

/// `reason` cut to at most [`ADAPT_REASON_BYTES`] bytes, at a character boundary.
fn live_reason(path: &Path, reason: &str) -> Result<LiveReason, IoError> {
    let clean: String = reason.chars().filter(|c| *c != '\0').collect();
    let mut end = clean.len().min(ADAPT_REASON_BYTES);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end]
        .parse::<LiveReason>()
        .map_err(|e| IoError::hdf5(path, e))
}

/// `/adapt` of a `train --adapt` run while it is written: its columns, the rows written, the
/// rows buffered, and every row appended (rewritten whole by [`RunWriter::finish`]).
struct AdaptLog {
    columns: Vec<Dataset>,
    written: usize,
    pending: Vec<AdaptSwitch>,
    all: Vec<AdaptSwitch>,
}

impl AdaptLog {
    /// Create the empty, resizable columns of `/adapt` (before SWMR mode).
    fn create(path: &Path, file: &File) -> Result<AdaptLog, IoError> {
        let e = h5e(path);
        group(path, file, "adapt")?;
        let mut columns = Vec::new();
        for name in ADAPT_COLUMNS {
            let b = file.new_dataset_builder();
            let b = match name {
                "reason" => b.empty::<LiveReason>(),
                "iteration" | "old_s" | "new_s" => b.empty::<u64>(),
                _ => b.empty::<f64>(),
            };
            let ds = b
                .chunk(16)
                .shape(0..)
                .create(format!("adapt/{name}").as_str())
                .map_err(&e)?;
            columns.push(ds);
        }
        Ok(AdaptLog {
            columns,
            written: 0,
            pending: Vec::new(),
            all: Vec::new(),
        })
    }

    /// Write the buffered rows: one resize and one write per column (`reason` last, so a
    /// reader sees a row in every column only once it is whole).
    fn write(&mut self, path: &Path) -> Result<(), IoError> {
        let k = self.pending.len();
        if k == 0 {
            return Ok(());
        }
        let e = h5e(path);
        let (r, rows) = (self.written, &self.pending);
        let reason = rows
            .iter()
            .map(|w| live_reason(path, &w.reason))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, ds) in self.columns.iter().enumerate() {
            ds.resize(r + k).map_err(&e)?;
            match ADAPT_COLUMNS[i] {
                "reason" => ds.write_slice(&reason, s![r..r + k]),
                c @ ("iteration" | "old_s" | "new_s") => {
                    ds.write_slice(&adapt_ints(rows, c), s![r..r + k])
                }
                c => ds.write_slice(&adapt_floats(rows, c), s![r..r + k]),
            }
            .map_err(&e)?;
        }
        self.written += k;
        self.all.append(&mut self.pending);
        Ok(())
    }
}

/// Append-only writer of `run.h5`.
pub struct RunWriter {
    path: PathBuf,
    file: File,
    n: usize,
    /// Rows written to the file.
    pub(super) rows: usize,
    scalars: Vec<Dataset>,
    per_worker: Vec<Dataset>,
    /// Layers of a pdADMM run and their `/layers/*` matrices (none when 0).
    layers: usize,
    per_layer: Vec<Dataset>,
    pending_layers: [Vec<f64>; LayerMetric::COUNT],
    /// Rows appended but not yet written, flat (row-major, reused: appending allocates nothing
    /// once the buffers have grown), and when the oldest of them arrived.
    pending: usize,
    pending_scalars: Vec<f64>,
    pending_workers: [Vec<f64>; WorkerMetric::COUNT],
    pending_since: Instant,
    /// `/late` columns, late rows written, and late rows buffered (row-major).
    late: Vec<Dataset>,
    late_rows: usize,
    pending_late: Vec<f64>,
    /// Scratch column for writing one scalar metric.
    column: Vec<f64>,
    /// `/env` attributes learnt after creation (SWMR mode creates no attributes): written by
    /// [`RunWriter::finish`].
    late_env: Vec<(String, AttrValue)>,
    /// `/adapt` of a `train --adapt` run (None: created without [`RunMeta::adapt`]).
    adapt: Option<AdaptLog>,
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .field("pending", &self.pending)
            .finish()
    }
}

pub(super) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl RunWriter {
    /// Create `path` (replacing an existing file: the caller has checked `--force`), write the
    /// self-description and `initial` rows (kept from a resumed run), and enter SWMR mode.
    pub fn create(
        path: &Path,
        meta: &RunMeta,
        initial: Option<&RecordedRows>,
    ) -> Result<RunWriter, IoError> {
        let e = h5e(path);
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|err| IoError::os(dir, err))?;
            }
        }
        // Never write through a pre-created symlink (RELIABILITY SEC-2).
        if path
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            return Err(IoError::layout(
                path,
                "is a symbolic link; refusing to write results through it",
            ));
        }
        let _ = std::fs::remove_file(path);
        let file = File::with_options()
            .with_fapl(|p| p.libver_latest())
            .create_excl(path)
            .map_err(&e)?;
        let root: &hdf5::Location = &file;
        write_attr(
            path,
            root,
            "schema_version",
            &AttrValue::U64(u64::from(SCHEMA_VERSION)),
        )?;
        // Stored exactly (no padding): h5py's `f.attrs["status"] == "running"` must hold.
        write_attr(path, root, "status", &AttrValue::Str("running".into()))?;
        write_attr(path, root, "created_utc", &AttrValue::Str(utc_now()))?;
        write_attr(
            path,
            root,
            "gradcode_version",
            &AttrValue::Str(crate::VERSION.to_string()),
        )?;
        write_attrs(path, &*group(path, &file, "code")?, &meta.code)?;
        write_attrs(path, &*group(path, &file, "env")?, &meta.env)?;
        let cfg = group(path, &file, "config")?;
        write_attrs(path, &cfg, &meta.config)?;
        write_attr(
            path,
            &cfg,
            "toml",
            &AttrValue::Str(meta.config_toml.clone()),
        )?;
        let cm = group(path, &file, "code_matrix")?;
        cm.new_dataset_builder()
            .with_data(&meta.code_matrix)
            .create("B")
            .map_err(&e)?;
        for g in [
            "metrics",
            "timing",
            "stragglers",
            "model",
            "validation",
            "summary",
        ] {
            group(path, &file, g)?;
        }
        group(path, &file, "late")?;
        let n = meta.n_workers;
        let column = |name: String| {
            file.new_dataset::<f64>()
                .chunk(256)
                .shape(0..)
                .create(name.as_str())
                .map_err(&e)
        };
        let scalars = Metric::ALL
            .iter()
            .map(|m| column(format!("metrics/{}", m.name())))
            .collect::<Result<Vec<_>, _>>()?;
        let late = LateColumn::ALL
            .iter()
            .map(|c| column(format!("late/{}", c.name())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut per_worker = Vec::new();
        for m in WorkerMetric::ALL {
            let ds = file
                .new_dataset::<f64>()
                .chunk((64, n.max(1)))
                .shape((0.., n))
                .create(m.path().as_str())
                .map_err(&e)?;
            per_worker.push(ds);
        }
        let layers = meta.n_layers;
        let mut per_layer = Vec::new();
        if layers > 0 {
            group(path, &file, "layers")?;
            for m in LayerMetric::ALL {
                let ds = file
                    .new_dataset::<f64>()
                    .chunk((64, layers))
                    .shape((0.., layers))
                    .create(m.path().as_str())
                    .map_err(&e)?;
                per_layer.push(ds);
            }
        }
        let adapt = if meta.adapt {
            Some(AdaptLog::create(path, &file)?)
        } else {
            None
        };
        let mut w = RunWriter {
            adapt,
            path: path.to_path_buf(),
            file,
            n,
            rows: 0,
            scalars,
            per_worker,
            layers,
            per_layer,
            pending_layers: Default::default(),
            pending: 0,
            pending_scalars: Vec::new(),
            pending_workers: Default::default(),
            pending_since: Instant::now(),
            column: Vec::new(),
            late_env: Vec::new(),
            late,
            late_rows: 0,
            pending_late: Vec::new(),
        };
        if let Some(rows) = initial {
            for i in 0..rows.len() {
                w.buffer(&rows.row(i))?;
            }
            for l in &rows.late {
                w.pending_late.extend_from_slice(&l.values());
            }
            w.write_pending()?;
        }
        w.file.flush().map_err(&e)?;
        w.file.start_swmr().map_err(&e)?;
        Ok(w)
    }

    /// Copy one row into the pending buffers.
    fn buffer(&mut self, rec: &IterationRecord) -> Result<(), IoError> {
        if rec.workers() != self.n {
            return Err(IoError::layout(
                &self.path,
                format!(
                    "per-worker row of {} values for {} workers",
                    rec.workers(),
                    self.n
                ),
            ));
        }
        if rec.layers() != self.layers {
            return Err(IoError::layout(
                &self.path,
                format!(
                    "per-layer row of {} values for {} layers",
                    rec.layers(),
                    self.layers
                ),
            ));
        }
        if self.pending == 0 {
            self.pending_since = Instant::now();
        }
        self.pending_scalars.extend_from_slice(rec.scalars());
        for (buf, m) in self.pending_workers.iter_mut().zip(WorkerMetric::ALL) {
            buf.extend_from_slice(rec.worker(*m));
        }
        for (buf, m) in self.pending_layers.iter_mut().zip(LayerMetric::ALL) {
            buf.extend_from_slice(rec.layer(*m));
        }
        self.pending += 1;
        Ok(())
    }

    /// Write every buffered row: one resize and one hyperslab write per dataset.
    fn write_pending(&mut self) -> Result<(), IoError> {
        self.write_late()?;
        // A switch before the iteration's row: a reader that sees the row sees its switch.
        if let Some(a) = &mut self.adapt {
            a.write(&self.path)?;
        }
        let k = self.pending;
        if k == 0 {
            return Ok(());
        }
        let e = h5e(&self.path);
        let (r, n, m) = (self.rows, self.n, Metric::COUNT);
        for (i, ds) in self.scalars.iter().enumerate() {
            self.column.clear();
            self.column
                .extend(self.pending_scalars.iter().skip(i).step_by(m).copied());
            ds.resize(r + k).map_err(&e)?;
            ds.write_slice(self.column.as_slice(), s![r..r + k])
                .map_err(&e)?;
        }
        let matrices = self
            .per_worker
            .iter()
            .zip(&self.pending_workers)
            .map(|(ds, buf)| (ds, buf, n))
            .chain(
                self.per_layer
                    .iter()
                    .zip(&self.pending_layers)
                    .map(|(ds, buf)| (ds, buf, self.layers)),
            );
        for (ds, buf, cols) in matrices {
            ds.resize((r + k, cols)).map_err(&e)?;
            let a = ArrayView2::from_shape((k, cols), buf.as_slice())
                .map_err(|err| IoError::layout(&self.path, err.to_string()))?;
            ds.write_slice(a, s![r..r + k, ..]).map_err(&e)?;
        }
        self.rows += k;
        self.pending = 0;
        self.pending_scalars.clear();
        self.pending_workers.iter_mut().for_each(Vec::clear);
        self.pending_layers.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Write the buffered late rows: one resize and one write per column.
    fn write_late(&mut self) -> Result<(), IoError> {
        let m = LateColumn::COUNT;
        let k = self.pending_late.len() / m;
        if k == 0 {
            return Ok(());
        }
        let e = h5e(&self.path);
        let r = self.late_rows;
        for (i, ds) in self.late.iter().enumerate() {
            self.column.clear();
            self.column
                .extend(self.pending_late.iter().skip(i).step_by(m).copied());
            ds.resize(r + k).map_err(&e)?;
            ds.write_slice(self.column.as_slice(), s![r..r + k])
                .map_err(&e)?;
        }
        self.late_rows += k;
        self.pending_late.clear();
        Ok(())
    }

    /// Append a late arrival; written with the next rows.
    pub fn append_late(&mut self, row: &LateRow) {
        self.pending_late.extend_from_slice(&row.values());
    }

    /// Append a switch of `train --adapt` to `/adapt`: written and flushed with the next row
    /// (at once, whatever the interval). An error when the file was created without
    /// [`RunMeta::adapt`].
    pub fn append_adapt(&mut self, switch: &AdaptSwitch) -> Result<(), IoError> {
        let Some(a) = &mut self.adapt else {
            return Err(IoError::layout(
                &self.path,
                "a switch of s for a file created without /adapt",
            ));
        };
        a.pending.push(switch.clone());
        Ok(())
    }

    /// Append one iteration (copied; the caller may reuse `rec`). It reaches the file (written
    /// and flushed) within [`FLUSH_INTERVAL`], or at the next [`RunWriter::flush`] or
    /// [`RunWriter::finish`]; at once after a switch appended with [`RunWriter::append_adapt`].
    pub fn append(&mut self, rec: &IterationRecord) -> Result<(), IoError> {
        self.buffer(rec)?;
        let switched = self.adapt.as_ref().is_some_and(|a| !a.pending.is_empty());
        // The first row goes out at once (a run being watched shows up immediately).
        if self.rows == 0
            || switched
            || self.pending >= FLUSH_ROWS
            || self.pending_since.elapsed() >= FLUSH_INTERVAL
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Write every buffered row and flush the file (readers in SWMR mode see them). Called before
    /// a checkpoint, so the results never lag behind a checkpoint a resumed run continues from.
    pub fn flush(&mut self) -> Result<(), IoError> {
        self.write_pending()?;
        self.file.flush().map_err(h5e(&self.path))
    }

    /// Flush when the oldest buffered row is [`FLUSH_INTERVAL`] old: for a caller that waits
    /// (rank 0 blocked on a slow iteration) without appending, so the rows already made still
    /// reach the file within the interval.
    pub fn flush_due(&mut self) -> Result<(), IoError> {
        if self.pending > 0 && self.pending_since.elapsed() >= FLUSH_INTERVAL {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows appended so far (written or buffered).
    pub fn rows(&self) -> usize {
        self.rows + self.pending
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Attributes for `/env` measured after the file was created (the link probe): written when
    /// the run ends, since a file in SWMR mode takes no new attributes.
    pub fn add_env(&mut self, attrs: Vec<(String, AttrValue)>) {
        self.late_env.extend(attrs);
    }

    /// Leave SWMR mode and write the final parameters, validation, summary and status.
    pub fn finish(mut self, fin: &FinalRecord) -> Result<(), IoError> {
        self.write_pending()?;
        let path = self.path.clone();
        let e = h5e(&path);
        drop(self.scalars);
        drop(self.per_worker);
        drop(self.per_layer);
        drop(self.late);
        let live = self.adapt.take().map(|a| {
            drop(a.columns);
            a.all
        });
        self.file.close().map_err(&e)?;
        let file = File::open_rw(&path).map_err(&e)?;
        let model = group(&path, &file, "model")?;
        if model.link_exists("w_final") {
            model.unlink("w_final").map_err(&e)?;
        }
        // Empty only for a recovered file (no final parameters): no /model/w_final then.
        if !fin.w_final.is_empty() {
            model
                .new_dataset_builder()
                .with_data(&fin.w_final)
                .create("w_final")
                .map_err(&e)?;
        }
        if !self.late_env.is_empty() {
            write_attrs(&path, &*group(&path, &file, "env")?, &self.late_env)?;
        }
        write_attrs(&path, &*group(&path, &file, "validation")?, &fin.validation)?;
        let summary = group(&path, &file, "summary")?;
        write_attrs(&path, &summary, &fin.summary)?;
        for (name, values) in &fin.per_worker {
            if summary.link_exists(name) {
                summary.unlink(name).map_err(&e)?;
            }
            summary
                .new_dataset_builder()
                .with_data(values.as_slice())
                .create(name.as_str())
                .map_err(&e)?;
        }
        if let Some(rows) = fin.adapt.as_ref().or(live.as_ref()) {
            write_adapt(&path, &file, rows)?;
        }
        let status = AttrValue::Str(fin.status.trim().to_string());
        write_attr(&path, &file, "status", &status)?;
        file.flush().map_err(&e)?;
        file.close().map_err(&e)
    }
}

/// `/adapt` as the run ends: attribute `switches` (the count) and, when there was one, the
/// columns `iteration`, `old_s`, `new_s`, `gain`, `old_deadline_ms`, `new_deadline_ms` and
/// `reason` (variable-length), one row per switch; the columns written during the run are
/// replaced.
fn write_adapt(path: &Path, file: &File, rows: &[AdaptSwitch]) -> Result<(), IoError> {
    let e = h5e(path);
    let g = group(path, file, "adapt")?;
    write_attr(path, &g, "switches", &AttrValue::U64(rows.len() as u64))?;
    for name in ADAPT_COLUMNS {
        if g.link_exists(name) {
            g.unlink(name).map_err(&e)?;
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    for name in ["iteration", "old_s", "new_s"] {
        g.new_dataset_builder()
            .with_data(adapt_ints(rows, name).as_slice())
            .create(name)
            .map_err(&e)?;
    }
    for name in ["gain", "old_deadline_ms", "new_deadline_ms"] {
        g.new_dataset_builder()
            .with_data(adapt_floats(rows, name).as_slice())
            .create(name)
            .map_err(&e)?;
    }
    let reason = rows
        .iter()
        .map(|r| vlu(path, &r.reason))
        .collect::<Result<Vec<_>, _>>()?;
    g.new_dataset_builder()
        .with_data(reason.as_slice())
        .create("reason")
        .map_err(&e)?;
    Ok(())
}
