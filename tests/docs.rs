//! The documentation, run: every fenced `sh`/`bash` or `python` block of `README.md` and
//! `docs/*.md` whose fence follows a `<!-- runnable -->` line is executed, so a documented
//! command that stops working fails `make test` (the convention: docs/README.md, "Runnable
//! examples"). Also: relative links between the project's Markdown files resolve, to a file and,
//! with `#anchor`, to a heading of it.
//!
//! The blocks of one file run in order in one fresh folder laid out like a checkout (`scripts/`,
//! `jobscripts/` and `target/release/gradcode` linked in, empty `datasets/` and `results/`,
//! `../shared` linked to the real one when it exists), with the binary under test and a
//! `python3` that has h5py and pandas first on PATH, each block under a timeout. Not done here:
//! output is not compared with what the docs show (timings differ from run to run).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{output_text, BIN};

/// The marker line, alone on the line just before the opening fence.
const MARKER: &str = "<!-- runnable -->";
/// What the shell blocks' ERR trap prints before the failing line and command.
const FAILED_AT: &str = "docs test: failed at line";
/// Timeout of one block.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lang {
    Shell,
    Python,
}

/// One runnable block: the 1-based line of its opening fence and its text.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    line: usize,
    lang: Lang,
    code: String,
}

/// An opening or closing fence: its backtick count and info string.
fn fence(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    let n = t.chars().take_while(|c| *c == '`').count();
    (n >= 3).then(|| (n, t[n..].trim()))
}

/// The runnable blocks of a Markdown text, or the problems of its markers (a marker not
/// followed by a fence, a language that cannot run, `mpirun` without `--oversubscribe`).
fn runnable_blocks(text: &str) -> Result<Vec<Block>, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut blocks, mut problems) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        if let Some((ticks, info)) = fence(lines[i]) {
            let marked = i > 0 && lines[i - 1].trim() == MARKER;
            let start = i;
            i += 1;
            let mut body = Vec::new();
            while i < lines.len()
                && !fence(lines[i]).is_some_and(|(n, rest)| n >= ticks && rest.is_empty())
            {
                body.push(lines[i]);
                i += 1;
            }
            if marked {
                let lang = match info.split_whitespace().next().unwrap_or("") {
                    "sh" | "bash" | "shell" => Some(Lang::Shell),
                    "python" | "py" => Some(Lang::Python),
                    other => {
                        problems.push(format!(
                            "line {}: a runnable block must be sh, bash or python, not '{other}'",
                            start + 1
                        ));
                        None
                    }
                };
                for (k, l) in body.iter().enumerate() {
                    if l.contains("mpirun ") && !l.contains("--oversubscribe") {
                        problems.push(format!(
                            "line {}: mpirun without --oversubscribe (ranks outnumber the cores of small machines)",
                            start + 2 + k
                        ));
                    }
                }
                if let Some(lang) = lang {
                    blocks.push(Block {
                        line: start + 1,
                        lang,
                        code: body.join("\n") + "\n",
                    });
                }
            }
        } else if lines[i].trim() == MARKER && !lines.get(i + 1).is_some_and(|l| fence(l).is_some())
        {
            problems.push(format!(
                "line {}: {MARKER} must stand on the line just before a fence",
                i + 1
            ));
        }
        i += 1;
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

/// README.md and docs/*.md, in that order.
fn documented_files() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut files = vec![repo().join("README.md")];
    files.extend(docs);
    files
}

/// A `python3` that imports h5py and pandas, as an absolute path.
fn python_with_h5py() -> Option<PathBuf> {
    ["python3", "/usr/bin/python3"].into_iter().find_map(|py| {
        let o = Command::new(py)
            .args(["-c", "import h5py, pandas, sys; print(sys.executable)"])
            .output()
            .ok()?;
        let exe = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (o.status.success() && !exe.is_empty()).then(|| PathBuf::from(exe))
    })
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("link {} -> {}: {e}", link.display(), target.display()));
}

/// A fresh folder laid out like a checkout (see the module docs); returns (root, checkout).
fn checkout_like(python: Option<&Path>) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix("gradcode-docs-")
        .tempdir()
        .expect("temporary folder");
    let work = root.path().join("gradcode");
    let bin = root.path().join("bin");
    for d in [
        &work.join("datasets"),
        &work.join("results"),
        &work.join("target/release"),
        &bin,
    ] {
        std::fs::create_dir_all(d).expect("create folders");
    }
    for d in ["scripts", "jobscripts"] {
        symlink(&repo().join(d), &work.join(d));
    }
    symlink(Path::new(BIN), &work.join("target/release/gradcode"));
    symlink(Path::new(BIN), &bin.join("gradcode"));
    if let Some(py) = python {
        symlink(py, &bin.join("python3"));
    }
    let shared = repo().join("../shared");
    if shared.is_dir() {
        symlink(&shared, &root.path().join("shared"));
    }
    (root, work)
}

/// The last `max` characters of `s` (on a character boundary).
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Run one block in `work`; Err(message naming the file, line, block and its output).
fn run_block(name: &str, b: &Block, root: &Path, work: &Path) -> Result<(), String> {
    let (script, interpreter): (PathBuf, Vec<&str>) = match b.lang {
        Lang::Shell => (
            root.join(format!("block-{}.sh", b.line)),
            vec!["bash", "-e", "-o", "pipefail"],
        ),
        Lang::Python => (root.join(format!("block-{}.py", b.line)), vec!["python3"]),
    };
    // Shell blocks name the command that failed and its line in the Markdown file (the trap
    // line comes first, so script line L is file line b.line + L - 1).
    let text = match b.lang {
        Lang::Shell => format!(
            "trap 'echo \"{FAILED_AT} $((LINENO + {})): $BASH_COMMAND\" >&2' ERR\n{}",
            b.line - 1,
            b.code
        ),
        Lang::Python => b.code.clone(),
    };
    std::fs::write(&script, text).expect("write the block");
    let path = format!(
        "{}:{}:{}",
        root.join("bin").display(),
        Path::new(BIN).parent().expect("binary folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let o = Command::new("timeout")
        .args(["-k", "5", &BLOCK_TIMEOUT.as_secs().to_string()])
        .args(&interpreter)
        .arg(&script)
        .current_dir(work)
        .env("PATH", path)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env_remove("GRADCODE_FAULT_PLAN")
        .stdin(Stdio::null())
        .output()
        .expect("run timeout");
    eprintln!(
        "{name}:{}: {:.1} s",
        b.line,
        started.elapsed().as_secs_f64()
    );
    if o.status.success() {
        return Ok(());
    }
    let why = if o.status.code() == Some(124) {
        format!("timed out after {} s", BLOCK_TIMEOUT.as_secs())
    } else {
        format!("failed with exit status {:?}", o.status.code())
    };
    let stderr = String::from_utf8_lossy(&o.stderr);
    let (line, command) = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(FAILED_AT))
        .and_then(|l| l.trim().split_once(": "))
        .map_or((b.line.to_string(), "the block".to_string()), |(n, c)| {
            (n.to_string(), format!("`{c}`"))
        });
    Err(format!(
        "{name}:{line}: {command} {why}\n--- runnable block at {name}:{} ---\n{}--- output (end) ---\n{}",
        b.line,
        b.code,
        tail(&output_text(&o), 6000)
    ))
}

/// Why `b` cannot run here (None: it can): no `../shared` for a block that reads it, no
/// python3 with h5py and pandas for one that needs them.
fn missing_for(b: &Block, python: bool) -> Option<&'static str> {
    if b.code.contains("../shared/") && !repo().join("../shared/datasets").is_dir() {
        return Some("../shared/datasets is missing");
    }
    if (b.lang == Lang::Python || b.code.contains("python3")) && !python {
        return Some("no python3 imports h5py and pandas (make test-deps)");
    }
    None
}

#[test]
fn documented_runnable_blocks_run() {
    let python = python_with_h5py();
    let ci = std::env::var_os("CI").is_some();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in documented_files() {
        let name = file
            .strip_prefix(repo())
            .unwrap_or(&file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("read a documentation file");
        let blocks = match runnable_blocks(&text) {
            Ok(b) => b,
            Err(problems) => {
                failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
                continue;
            }
        };
        if blocks.is_empty() {
            continue;
        }
        let (root, work) = checkout_like(python.as_deref());
        for b in &blocks {
            if let Some(why) = missing_for(b, python.is_some()) {
                // Later blocks of the file may need what this one makes: skip them too.
                assert!(!ci, "{name}:{}: cannot run under CI: {why}", b.line);
                eprintln!(
                    "{name}:{}: skipped with the rest of the file: {why}",
                    b.line
                );
                break;
            }
            ran += 1;
            if let Err(e) = run_block(&name, b, root.path(), &work) {
                failures.push(e);
                break; // the file's later blocks build on this one
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{ran} runnable blocks ran");
    assert!(ran > 0 || !ci, "no runnable block ran");
}

#[test]
fn markers_select_only_marked_sh_and_python_blocks() {
    let text = "\
intro
<!-- runnable -->
```sh
gradcode codes show --code frc -n 4 -s 1
echo two
```

```sh
not marked
```
<!-- runnable -->
```python
print(1)
```
````markdown
<!-- runnable -->
```sh
inside another fence: an example of the convention, not a block
```
````
";
    let blocks = runnable_blocks(text).unwrap();
    assert_eq!(
        blocks,
        vec![
            Block {
                line: 3,
                lang: Lang::Shell,
                code: "gradcode codes show --code frc -n 4 -s 1\necho two\n".into()
            },
            Block {
                line: 12,
                lang: Lang::Python,
                code: "print(1)\n".into()
            },
        ]
    );
}

#[test]
fn misplaced_markers_and_unrunnable_blocks_are_refused() {
    let problems = runnable_blocks(
        "<!-- runnable -->\n\n```sh\nx\n```\n<!-- runnable -->\n```toml\na = 1\n```\n\
         <!-- runnable -->\n```sh\nmpirun -np 5 gradcode train\n```\n",
    )
    .unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("line 1: <!-- runnable --> must stand"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("line 7") && problems[1].contains("'toml'"),
        "{problems:?}"
    );
    assert!(
        problems[2].contains("line 12") && problems[2].contains("--oversubscribe"),
        "{problems:?}"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (outside fences).
fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced: Option<usize> = None;
    for l in text.lines() {
        match (fence(l), fenced) {
            (Some((n, _)), None) => fenced = Some(n),
            (Some((n, rest)), Some(open)) if n >= open && rest.is_empty() => fenced = None,
            _ if fenced.is_none() && l.starts_with('#') => {
                out.push(slug(l.trim_start_matches('#')));
            }
            _ => {}
        }
    }
    out
}

/// `p` with `.` and `..` resolved by name (the file need not exist).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Relative link targets `](target)` of a Markdown text (outside fences), with their line.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced: Option<usize> = None;
    for (i, l) in text.lines().enumerate() {
        match (fence(l), fenced) {
            (Some((n, _)), None) => fenced = Some(n),
            (Some((n, rest)), Some(open)) if n >= open && rest.is_empty() => fenced = None,
            _ if fenced.is_none() => {
                for part in l.split("](").skip(1) {
                    if let Some(end) = part.find(')') {
                        let target = &part[..end];
                        if !target.contains("://") && !target.starts_with("mailto:") {
                            out.push((i + 1, target.to_string()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn links_between_documents_resolve() {
    assert_eq!(
        slug(" Checkpoints, signals, exit codes"),
        "checkpoints-signals-exit-codes"
    );
    assert_eq!(
        slug(" Recovering a killed run's results"),
        "recovering-a-killed-runs-results"
    );
    let mut files = documented_files();
    for f in [
        "datasets/README.md",
        "results/README.md",
        "jobscripts/README.md",
        "CHANGELOG.md",
    ] {
        files.push(repo().join(f));
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a Markdown file");
        for (line, target) in links(&text) {
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                normalize(&file.parent().expect("file folder").join(path))
            };
            // Links out of the repository (../shared beside the checkout) are not checked.
            if !dest.starts_with(repo()) {
                continue;
            }
            if !dest.exists() {
                broken.push(format!("{}:{line}: {target}: no such file", file.display()));
            } else if let Some(a) = anchor {
                let text = std::fs::read_to_string(&dest).unwrap_or_default();
                if !anchors(&text).iter().any(|h| h == a) {
                    broken.push(format!(
                        "{}:{line}: {target}: no heading with that anchor",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
