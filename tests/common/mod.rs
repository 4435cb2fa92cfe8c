//! Helpers shared by the CLI integration tests: run the binary, read its output, and check the
//! one-line error contract (non-zero exit, exactly one `gradcode: error: ...` line, no panic).
// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gradcode");

/// Run `gradcode ARGS` to completion (no backtraces, so a panic shows as "panicked").
pub fn gradcode(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run gradcode")
}

/// Bytes of stdout or stderr as text.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A failure with exactly one stderr line `gradcode: error: ...` and no panic; returns that line.
pub fn assert_one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure: {}", text(&o.stdout));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("gradcode: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}
