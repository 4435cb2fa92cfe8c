//! BI-7: the `--config` TOML file through `RunConfig::from_args` (TOML parse, merge, every check).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use gradcode::config::{JobArgs, RunConfig, TrainArgs};
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static F: OnceLock<PathBuf> = OnceLock::new();
    F.get_or_init(|| {
        std::env::temp_dir().join(format!("gradcode-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(file(), data).expect("write config");
    let args = TrainArgs {
        job: JobArgs {
            config: Some(file().clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    for world in [1, 2, 5] {
        if let Ok(cfg) = RunConfig::from_args(&args, world) {
            assert!(cfg.reference || cfg.stragglers < cfg.workers());
            assert!(cfg.job.deadline_ms.is_finite() && cfg.job.deadline_ms > 0.0);
            let _ = cfg.to_toml();
            let _ = cfg.trajectory_hash();
        }
    }
});
