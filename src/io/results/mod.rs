//! The results file `OUT/run.h5` (GUIDE §5), written by rank 0 only.
//!
//! Self-describing: root attributes `schema_version`, `status` (running → complete | degraded |
//! failed | interrupted), `created_utc`, `gradcode_version`; `/code` (version, git revision, build
//! profile, MPI library, HDF5 version), `/env` (world size, host, SLURM_* variables), `/config`
//! (every effective setting as a typed attribute plus the whole TOML), `/code_matrix/B`,
//! `/metrics/*` (one resizable dataset per metric, units in the name), `/timing/arrival_s`,
//! `/timing/compute_s` and `/stragglers/injected_s` ([iteration, worker], NaN = missed; the
//! delay as the worker reported applying it, inf = failed), `/stragglers/planned_s` (every delay
//! the straggler model drew), `/late/*` (one row per message that arrived after its iteration was
//! decoded: [`LateColumn`]), `/layers/*` ([iteration, layer], `gradcode admm` only:
//! [`LayerMetric`]), and at the end `/model/w_final`, `/validation`, `/summary`. The metric names
//! are enums ([`Metric`], [`WorkerMetric`], [`LayerMetric`], in [`super::metrics`]).
//!
//! Crash safety: the file uses the latest HDF5 format and SWMR writing during the iteration loop.
//! Rows are buffered in memory and written in one batch (one resize and one write per dataset),
//! then flushed, at once for the first row, then at most [`FLUSH_INTERVAL`] after the oldest
//! buffered row (and before every
//! checkpoint, see [`RunWriter::flush`]): per-row writes cost ~0.35 ms, 10 % of a fast
//! iteration. So a job killed with SIGKILL loses at most one flush interval of rows and leaves a
//! file that opens read-only in SWMR mode ([`read_rows`] does so; with h5py `h5py.File(p, "r", swmr=True)`, or
//! run `h5clear -s run.h5` once for tools that open it normally) with status `running` and every
//! finished iteration. [`RunWriter::finish`] leaves SWMR mode, then writes the final groups and
//! the status.
//!
//! `/adapt` (`train --adapt`, one row per switch of s: `iteration`, `old_s`, `new_s`, `gain`,
//! `reason`) is created empty with the file and each switch is appended and flushed with the
//! iteration's row, so a killed run keeps its switch log. A file in SWMR mode takes no
//! variable-length strings nor attributes, so during the run `reason` is a fixed-length UTF-8
//! string of [`ADAPT_REASON_BYTES`] bytes and the count attribute `switches` is missing (the
//! rows present in every column count); [`RunWriter::finish`] (and `gradcode recover`) rewrite
//! `reason` as variable-length strings and add `switches`. [`read_adapt`] reads both forms.

use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group};
use ndarray::{Array1, Array2};

use super::IoError;
use crate::model::Evaluation;

mod read;
mod recover;
mod writer;

pub use read::{open, read_adapt, read_num_attr, read_rows, read_str_attr, read_vector, status};
pub use recover::{recover, Recovery};
pub use writer::{RunWriter, ADAPT_REASON_BYTES, FLUSH_INTERVAL};

/// Version of this layout, written as `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

pub use super::metrics::{
    IterationRecord, LateColumn, LateRow, LayerMetric, Metric, RecordedRows, WorkerMetric,
};

/// The `/summary` attributes of the last evaluation of the test split: `final_test_loss`,
/// `final_test_accuracy`, `final_test_auc` (NaN when never evaluated or not measured).
pub fn test_summary(ev: Option<&Evaluation>) -> [(String, AttrValue); 3] {
    let nan = f64::NAN;
    [
        (
            "final_test_loss".into(),
            AttrValue::F64(ev.map_or(nan, |e| e.loss)),
        ),
        (
            "final_test_accuracy".into(),
            AttrValue::F64(ev.and_then(|e| e.accuracy).unwrap_or(nan)),
        ),
        (
            "final_test_auc".into(),
            AttrValue::F64(ev.and_then(|e| e.auc).unwrap_or(nan)),
        ),
    ]
}

/// Peak resident memory of every rank (`ru_maxrss`): rank 0's own and each worker's from its
/// STOP acknowledgement. Written as `/summary` `rank0_peak_rss_mib` and the per-worker column
/// `/summary/peak_rss_mib` (NaN for a worker whose ACK did not arrive), so a user sizes
/// `--max-memory-mb` and the job's `--mem` from a real run.
pub struct PeakMemory {
    rank0_mib: f64,
    workers_mib: Vec<f64>,
}

impl PeakMemory {
    /// From rank 0's peak and each worker's, in KiB as `getrusage` gives them.
    pub fn from_kib(rank0_kib: f64, workers_kib: &[f64]) -> PeakMemory {
        PeakMemory {
            rank0_mib: rank0_kib / 1024.0,
            workers_mib: workers_kib.iter().map(|kib| kib / 1024.0).collect(),
        }
    }

    /// One line of the end-of-run summary: rank 0's peak and the largest worker's.
    pub fn print(&self) {
        let known = self
            .workers_mib
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_finite());
        match known.max_by(|a, b| a.1.total_cmp(b.1)) {
            Some((w, m)) => println!(
                "  peak memory         rank 0 {:.1} MiB, workers up to {m:.1} MiB (rank {})",
                self.rank0_mib,
                w + 1
            ),
            None => println!("  peak memory         rank 0 {:.1} MiB", self.rank0_mib),
        }
    }

    /// Add `rank0_peak_rss_mib` to `summary` and the `peak_rss_mib` column (when there are
    /// workers) to `per_worker`.
    pub fn record(
        &self,
        summary: &mut Vec<(String, AttrValue)>,
        per_worker: &mut Vec<(String, Vec<f64>)>,
    ) {
        summary.push(("rank0_peak_rss_mib".into(), AttrValue::F64(self.rank0_mib)));
        if !self.workers_mib.is_empty() {
            per_worker.push(("peak_rss_mib".into(), self.workers_mib.clone()));
        }
    }
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    F64(f64),
    U64(u64),
    Bool(bool),
}

/// What the file says about itself, written once at creation.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    /// Attributes of `/code`.
    pub code: Vec<(String, AttrValue)>,
    /// Attributes of `/env`.
    pub env: Vec<(String, AttrValue)>,
    /// Attributes of `/config` (typed settings).
    pub config: Vec<(String, AttrValue)>,
    /// The whole effective config as TOML.
    pub config_toml: String,
    /// The code matrix B (n × k).
    pub code_matrix: Array2<f64>,
    /// Number of workers n.
    pub n_workers: usize,
    /// Number of layers of a pdADMM run (`/layers/*` columns); 0 for every other job, which
    /// then has no `/layers` group.
    pub n_layers: usize,
    /// `train --adapt`: create `/adapt` with empty columns that [`RunWriter::append_adapt`]
    /// extends during the run (false: no `/adapt` group unless [`FinalRecord::adapt`] asks).
    pub adapt: bool,
}

/// What is written when the run ends.
#[derive(Debug, Clone, Default)]
pub struct FinalRecord {
    /// complete | degraded | failed | interrupted.
    pub status: String,
    /// Final parameters.
    pub w_final: Array1<f64>,
    /// Attributes of `/validation`.
    pub validation: Vec<(String, AttrValue)>,
    /// Attributes of `/summary`.
    pub summary: Vec<(String, AttrValue)>,
    /// Per-worker summary columns in `/summary` (name, values of length n).
    pub per_worker: Vec<(String, Vec<f64>)>,
    /// `/adapt` written as these switches of s (`gradcode recover`). None: the switches
    /// appended with [`RunWriter::append_adapt`] when the file was created with
    /// [`RunMeta::adapt`], else no `/adapt` group.
    pub adapt: Option<Vec<AdaptSwitch>>,
}

/// One switch of `train --adapt`, a row of `/adapt`: after iteration `iteration` s went from
/// `old_s` to `new_s` (in force from the next iteration on), for a predicted gain `gain`
/// (1 − t(new)/t(old) per iteration; NaN when s stayed) and the adapter's `reason`. With
/// `--adapt-deadline`, `deadline_ms` is the deadline (old, new) in ms (columns
/// `old_deadline_ms`, `new_deadline_ms`, NaN without it); a row whose s stays
/// (`old_s == new_s`) changed the deadline only.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptSwitch {
    pub iteration: u64,
    pub old_s: u64,
    pub new_s: u64,
    pub gain: f64,
    pub reason: String,
    pub deadline_ms: Option<(f64, f64)>,
}

impl AdaptSwitch {
    /// Whether s changed (not only the deadline).
    pub fn switches_s(&self) -> bool {
        self.old_s != self.new_s
    }
}

pub(super) fn h5e(path: &Path) -> impl Fn(hdf5::Error) -> IoError + '_ {
    move |e| IoError::hdf5(path, e)
}

pub(super) fn vlu(path: &Path, s: &str) -> Result<VarLenUnicode, IoError> {
    // NUL bytes cannot be stored (MPI's library_version ends in them): drop them.
    let clean: String = s.chars().filter(|c| *c != '\0').collect();
    clean
        .parse::<VarLenUnicode>()
        .map_err(|e| IoError::hdf5(path, e))
}

/// Write (or overwrite) attribute `name` on `loc`.
pub(super) fn write_attr(
    path: &Path,
    loc: &hdf5::Location,
    name: &str,
    value: &AttrValue,
) -> Result<(), IoError> {
    let e = h5e(path);
    if loc.attr(name).is_ok() {
        loc.delete_attr(name).map_err(&e)?;
    }
    match value {
        AttrValue::Str(v) => {
            let v = vlu(path, v)?;
            loc.new_attr::<VarLenUnicode>()
                .create(name)
                .and_then(|a| a.write_scalar(&v))
        }
        AttrValue::F64(v) => loc
            .new_attr::<f64>()
            .create(name)
            .and_then(|a| a.write_scalar(v)),
        AttrValue::U64(v) => loc
            .new_attr::<u64>()
            .create(name)
            .and_then(|a| a.write_scalar(v)),
        AttrValue::Bool(v) => loc
            .new_attr::<bool>()
            .create(name)
            .and_then(|a| a.write_scalar(v)),
    }
    .map_err(&e)
}

pub(crate) fn write_attrs(
    path: &Path,
    loc: &hdf5::Location,
    attrs: &[(String, AttrValue)],
) -> Result<(), IoError> {
    attrs
        .iter()
        .try_for_each(|(k, v)| write_attr(path, loc, k, v))
}

pub(super) fn group(path: &Path, file: &File, name: &str) -> Result<Group, IoError> {
    file.group(name)
        .or_else(|_| file.create_group(name))
        .map_err(h5e(path))
}

#[cfg(test)]
mod tests;
