//! `--config FILE.toml`: settings under the long flag names, checked against the flags of the
//! job before they are read, so a misspelt key is refused naming the valid ones instead of
//! silently doing nothing.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::ConfigError;

/// The keys a config file of the job with arguments `A` may hold: its long flag names, without
/// `--config` itself and the operational flags that are never part of a run's settings.
pub fn settings_keys<A: clap::Args>() -> Vec<String> {
    let cmd = A::augment_args(clap::Command::new("settings"));
    cmd.get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "config" | "help"))
        .map(str::to_string)
        .collect()
}

/// Read the settings of the job with arguments `A` from `path`. Keys may be written with dashes
/// or underscores. A nested `--config` is ignored (`A`'s `config` field is not read from files).
pub fn read_settings<A: clap::Args + DeserializeOwned>(path: &Path) -> Result<A, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string().trim().replace('\n', " ")))?;
    let keys = settings_keys::<A>();
    let mut normalized = toml::Table::new();
    let mut unknown = Vec::new();
    for (k, v) in table {
        let key = k.replace('_', "-");
        if keys.contains(&key) {
            normalized.insert(key, v);
        } else {
            unknown.push(k);
        }
    }
    if !unknown.is_empty() {
        return Err(file_err(format!(
            "unknown setting(s) {}; the settings are the long flag names: {}",
            unknown.join(", "),
            keys.join(", ")
        )));
    }
    A::deserialize(toml::Value::Table(normalized))
        .map_err(|e| file_err(e.to_string().trim().replace('\n', " ")))
}
