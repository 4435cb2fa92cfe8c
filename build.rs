//! Records the git revision and build profile for the `/code` group of result files.
use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GRADCODE_GIT_REV={rev}");
    println!(
        "cargo:rustc-env=GRADCODE_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    // In a linked worktree `.git` is a file: ask git where HEAD and the index are, so the
    // script reruns when they change and not on every build (a missing path always reruns it).
    for name in ["HEAD", "index"] {
        let path = Command::new("git")
            .args(["rev-parse", "--git-path", name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!(".git/{name}"));
        println!("cargo:rerun-if-changed={path}");
    }
}
