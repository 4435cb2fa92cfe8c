//! Loading one results file for the report, through the readers of [`crate::io::results`] (the
//! only module that imports `hdf5`). Whatever can be read is kept; what is missing is listed.

use std::path::{Path, PathBuf};

use crate::io::results::{self, Metric, RecordedRows, WorkerMetric};
use crate::io::IoError;

/// Metric columns the report uses; each one found missing is named in the notes.
const USED_METRICS: &[Metric] = &[
    Metric::WallS,
    Metric::ElapsedS,
    Metric::OracleS,
    Metric::TrainLoss,
    Metric::TestLoss,
    Metric::TestAccuracy,
];

/// Run settings, from the `/config` group (the `toml` attribute, or the typed attributes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Gradient code (`reference` for the serial reference path).
    pub code: Option<String>,
    /// Stragglers s the code tolerates.
    pub stragglers: Option<u64>,
    /// Injected straggler model.
    pub straggler_model: Option<String>,
    /// Iterations the run was configured for.
    pub iterations: Option<u64>,
    /// Workers n (0 for the reference path).
    pub workers: Option<u64>,
    /// Model.
    pub model: Option<String>,
    /// Whether this is the serial reference path.
    pub reference: bool,
    /// Group size of a `--decode-tree` run (None: every worker sent to rank 0).
    pub decode_tree: Option<u64>,
}

/// One results file as read: every part that was there, and a note for each part that was not.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The file.
    pub path: PathBuf,
    /// Run name: the folder holding `run.h5` (or the file's stem for other names).
    pub name: String,
    /// Root attribute `status`, trimmed.
    pub status: Option<String>,
    /// Settings from `/config`.
    pub settings: Settings,
    /// `/metrics` and the per-worker matrices (absent when `/metrics` is).
    pub rows: Option<RecordedRows>,
    /// `/validation` verdict (VALID / INVALID), or its `check` for the reference path.
    pub verdict: Option<String>,
    /// What is missing or unreadable, one phrase each (e.g. "no /validation").
    pub missing: Vec<String>,
    /// The s switches of a `train --adapt` run (the `/adapt` rows that change s, not the
    /// deadline only; empty for other runs).
    pub switches: Vec<results::AdaptSwitch>,
}

impl LoadedRun {
    /// Column `m` of `/metrics`, empty when `/metrics` is missing.
    pub fn column(&self, m: Metric) -> Vec<f64> {
        self.rows
            .as_ref()
            .map(|r| r.column(m).to_vec())
            .unwrap_or_default()
    }

    /// Number of recorded iterations.
    pub fn iterations(&self) -> usize {
        self.rows.as_ref().map_or(0, RecordedRows::len)
    }

    /// Whether the run did not end (status `running`: the job was killed or is still going).
    pub fn is_partial(&self) -> bool {
        self.status.as_deref() == Some("running")
    }
}

/// The run's display name: the folder of `.../NAME/run.h5`, else the file stem.
pub fn run_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.file_name().is_some_and(|f| f == "run.h5") {
        if let Some(dir) = path.parent().and_then(Path::file_name) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem
}

fn settings_from_toml(text: &str) -> Option<Settings> {
    let t: toml::Table = text.parse().ok()?;
    let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let u = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_integer())
            .and_then(|i| u64::try_from(i).ok())
    };
    let reference = t
        .get("reference")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    // `gradcode admm` (pdADMM): no code; the network is its model.
    let admm = t.contains_key("rho") && t.contains_key("layers");
    Some(Settings {
        code: match (admm, reference) {
            (true, false) => Some("pdadmm".into()),
            (true, true) => Some("pdadmm-reference".into()),
            (false, true) => Some("reference".into()),
            (false, false) => s("code"),
        },
        stragglers: if reference { Some(0) } else { u("stragglers") },
        straggler_model: s("straggler-model"),
        iterations: u("iterations"),
        workers: u("workers"),
        model: if admm {
            s("layers").map(|l| format!("mlp {l}"))
        } else {
            s("model")
        },
        reference,
        decode_tree: u("decode-tree"),
    })
}

/// Read `path` (a results file, or a run folder holding `run.h5`). Fails only when the file is
/// missing, is not HDF5, or holds nothing of a gradcode results file.
pub fn load(path: &Path) -> Result<LoadedRun, IoError> {
    let path = if path.is_dir() && path.join("run.h5").is_file() {
        path.join("run.h5")
    } else {
        path.to_path_buf()
    };
    // Missing file / not HDF5: the reader's own error names the file.
    drop(results::open(&path)?);

    let mut missing = Vec::new();
    let status = results::read_str_attr(&path, "", "status").ok();
    if status.is_none() {
        missing.push("no status attribute".to_string());
    }

    let settings = match results::read_str_attr(&path, "config", "toml") {
        Ok(text) => settings_from_toml(&text),
        Err(_) => None,
    };
    let settings = match settings {
        Some(s) => Some(s),
        None => {
            // Fall back to the typed string attributes that can be read.
            let attr = |k: &str| results::read_str_attr(&path, "config", k).ok();
            let s = Settings {
                code: attr("code"),
                straggler_model: attr("straggler-model"),
                model: attr("model"),
                ..Settings::default()
            };
            if s == Settings::default() {
                missing.push("no /config".to_string());
                None
            } else {
                missing.push("no /config toml (settings partly known)".to_string());
                Some(s)
            }
        }
    };

    let rows = match results::read_rows(&path, None) {
        Ok(r) => Some(r),
        Err(IoError::Layout { .. }) => {
            missing.push("no /metrics".to_string());
            None
        }
        Err(e) => {
            missing.push(format!("/metrics unreadable ({e})"));
            None
        }
    };
    if let Some(r) = &rows {
        for m in USED_METRICS {
            let key = format!("metrics/{}", m.name());
            if let Err(IoError::Layout { .. }) = results::read_vector(&path, &key) {
                missing.push(format!("no /{key}"));
            }
        }
        if !r.has(WorkerMetric::ArrivalS) {
            missing.push("no /timing/arrival_s".to_string());
        }
    }

    let verdict = results::read_str_attr(&path, "validation", "verdict")
        .or_else(|_| results::read_str_attr(&path, "validation", "check"))
        .ok()
        .filter(|v| !v.is_empty());
    // A finished run writes /validation; a running one has not got there yet.
    if verdict.is_none() && status.as_deref().is_some_and(|s| s != "running") {
        missing.push("no /validation verdict".to_string());
    }

    let switches = match results::read_adapt(&path) {
        Ok(v) => v
            .unwrap_or_default()
            .into_iter()
            .filter(results::AdaptSwitch::switches_s)
            .collect(),
        Err(e) => {
            missing.push(format!("/adapt unreadable ({e})"));
            Vec::new()
        }
    };

    if status.is_none() && settings.is_none() && rows.is_none() {
        return Err(IoError::Layout {
            path: path.clone(),
            detail: "not a gradcode results file (no status attribute, no /config, no /metrics)"
                .into(),
        });
    }
    Ok(LoadedRun {
        name: run_name(&path),
        path,
        status,
        settings: settings.unwrap_or_default(),
        rows,
        verdict,
        missing,
        switches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_run_folder() {
        assert_eq!(run_name(Path::new("results/a9a/run.h5")), "a9a");
        assert_eq!(run_name(Path::new("x/other.h5")), "other");
        assert_eq!(run_name(Path::new("run.h5")), "run");
    }

    #[test]
    fn settings_parse_from_the_config_toml() {
        let s = settings_from_toml(
            "code = \"frc\"\nstragglers = 1\nstraggler-model = \"exp:5\"\niterations = 60\nworkers = 6\nreference = false\n",
        )
        .unwrap();
        assert_eq!(s.code.as_deref(), Some("frc"));
        assert_eq!(s.stragglers, Some(1));
        assert_eq!(s.iterations, Some(60));
        let r = settings_from_toml("code = \"cyclic-mds\"\nstragglers = 1\nreference = true\n")
            .unwrap();
        assert_eq!(r.code.as_deref(), Some("reference"));
        assert_eq!(r.stragglers, Some(0));
        assert_eq!(r.decode_tree, None);
        let t = settings_from_toml("code = \"frc\"\nworkers = 6\ndecode-tree = 3\n").unwrap();
        assert_eq!(t.decode_tree, Some(3));
    }
}
