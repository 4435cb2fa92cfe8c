//! The binary `make build` produces (no `fault-injection` feature) refuses to run an MPI job while
//! the test-only fault plan variable is set: a plan is never silently ignored, and no fault code
//! is in that binary. (`make unit` runs this test against that build; the fault-injection build
//! runs the reliability tests that use the plan.)
#![cfg(not(feature = "fault-injection"))]
mod common;

use common::{assert_one_mpi_error, mpirun_command, output_text, serial, workdir, BIN};

#[test]
fn the_release_binary_refuses_a_fault_plan() {
    let _g = serial();
    let dir = workdir();
    let data = dir.join("d.h5");
    let o = std::process::Command::new(BIN)
        .args([
            "data",
            "synth",
            "--kind",
            "logistic",
            "--rows",
            "60",
            "--features",
            "4",
        ])
        .arg("--out")
        .arg(&data)
        .arg("--force")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let out = dir.join("run");
    let o = mpirun_command(3, 60, &[("GRADCODE_FAULT_PLAN", "kill:1@2")])
        .args(["train", "--iterations", "5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_one_mpi_error(
        &o,
        "GRADCODE_FAULT_PLAN is set but this binary was built without",
    );
    assert!(!out.exists(), "a refused run left {}", out.display());
    // Unset, the same job runs.
    let o = mpirun_command(3, 60, &[])
        .args(["train", "--iterations", "5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
}
