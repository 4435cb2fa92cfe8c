//! `make bench`: gradcode measured against the physical limit (issue 7).
//!
//! One program, five sections, each printing a Markdown table and writing a CSV under
//! `results/bench/<mode>/` (`mode` = `full` or `smoke`), then a table of every target with
//! MET / NOT MET (also in `report.md` there):
//!
//! 1. streaming bandwidth (copy, triad, read on arrays far larger than the last-level cache) and
//!    the effective bandwidth of the gradient kernel, dense and CSR;
//! 2. decode cost at rank 0 (weighted sum of n coded gradients of dimension d; cached and
//!    uncached weights);
//! 3. protocol overhead over the oracle (GUIDE §4) in the standard configuration;
//! 4. time to a target loss for every code, with and without injected stragglers;
//! 5. scaling with n and d, rank-0 receive rate, peak RSS per rank, and rank 0's RSS over a long
//!    run with a failed worker.
//! 6. coded linear algebra: mat-vec decode time and error versus n per family, and the MPI
//!    `matvec` speed-up over uncoded under exponential delays.
//!
//! MPI runs are real `mpirun` jobs of the `gradcode` binary; their `run.h5` files (kept under
//! `results/bench/<mode>/runs/`) are read back through `gradcode::io::results`. Peak RSS per rank
//! comes from this same program acting as a wrapper around each rank (`--rss-wrap`, which
//! `wait4`s the rank for its `ru_maxrss` and samples rank 0's `VmRSS`).
//!
//! Usage: `cargo bench --bench suite [-- --smoke] [--only 1,3] [--out DIR]`.
//! `GRADCODE_DATASETS` overrides the folder of the real datasets (default `../shared/datasets`).
//! Benchmark harness code: errors abort the run with a message and exit code 1; unmet targets
//! do not (they are reported).

use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ndarray::{Array1, ArrayView1};

use gradcode::coding::{self, CodeKind, Decoder};
use gradcode::data::synth::{self, SynthKind, SynthSpec};
use gradcode::data::{Dataset, Features};
use gradcode::io::convert::{self, ConvertOptions, InputFormat};
use gradcode::io::results::{self, Metric, RecordedRows, WorkerMetric};
use gradcode::model::{Logistic, Model, Workspace};

// ------------------------------------------------------------------------------------------------
// Harness plumbing

/// One line of the final table.
struct Target {
    what: String,
    value: String,
    target: String,
    met: Option<bool>,
}

struct Ctx {
    smoke: bool,
    out: PathBuf,
    tmp: tempfile::TempDir,
    bin: PathBuf,
    me: PathBuf,
    datasets: PathBuf,
    start: Instant,
    md: String,
    targets: Vec<Target>,
    /// Streaming bandwidths measured in section 1 (GB/s): copy, triad, read.
    stream: Option<(f64, f64, f64)>,
    /// a9a as HDF5 (or a small synthetic stand-in in smoke mode), for sections 3 and 4.
    std_data: Option<PathBuf>,
    /// Section 3's runs, reused by section 4 (code name → rows).
    exp_runs: Vec<(CodeKind, RecordedRows)>,
    exp_mean_ms: f64,
    /// Cores this process may run on (all ranks of the MPI runs share them).
    cores: usize,
}

impl Ctx {
    fn log(&self, msg: &str) {
        eprintln!("[bench {:6.1} s] {msg}", self.start.elapsed().as_secs_f64());
    }
    fn target(&mut self, what: impl Into<String>, value: String, target: &str, met: Option<bool>) {
        self.targets.push(Target {
            what: what.into(),
            value,
            target: target.into(),
            met,
        });
    }
    /// Append a section (heading, notes, table) to the report, print it, write its CSV.
    fn section(
        &mut self,
        title: &str,
        notes: &str,
        csv: &str,
        header: &[&str],
        rows: &[Vec<String>],
    ) -> Result<()> {
        let mut s = format!("\n## {title}\n\n");
        if !notes.is_empty() {
            s.push_str(notes.trim_end());
            s.push_str("\n\n");
        }
        s.push_str(&md_table(header, rows));
        print!("{s}");
        self.md.push_str(&s);
        let mut c = header.join(",");
        c.push('\n');
        for r in rows {
            c.push_str(&r.join(","));
            c.push('\n');
        }
        let path = self.out.join(csv);
        fs::write(&path, c).with_context(|| format!("writing {}", path.display()))
    }
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", header.join(" | "));
    for _ in header {
        s.push_str("---|");
    }
    s.push('\n');
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// Best and median of repeated timings (seconds).
#[derive(Debug, Clone, Copy)]
struct Timing {
    best: f64,
    median: f64,
}

/// Time `f` once to warm up, then repeatedly until `min_total` seconds (at least 3 runs).
fn time_it(mut f: impl FnMut(), min_total: f64) -> Timing {
    f();
    let mut t = Vec::new();
    let start = Instant::now();
    while t.len() < 3 || (start.elapsed().as_secs_f64() < min_total && t.len() < 10_000) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Timing {
        best: t[0],
        median: t[t.len() / 2],
    }
}

fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn met_str(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "MET",
        Some(false) => "NOT MET",
        None => "not judged",
    }
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn git_rev() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

// ------------------------------------------------------------------------------------------------
// Per-rank peak RSS: this program wraps each rank (`--rss-wrap DIR SAMPLE_MS -- cmd ...`).

fn rss_wrap(args: &[String]) -> Result<i32> {
    let (dir, sample_ms, cmd) = match args {
        [dir, ms, dash, cmd @ ..] if dash == "--" && !cmd.is_empty() => {
            (PathBuf::from(dir), ms.parse::<u64>()?, cmd)
        }
        _ => bail!("usage: --rss-wrap DIR SAMPLE_MS -- CMD [ARGS...]"),
    };
    let rank = std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .unwrap_or_else(|_| "x".into());
    let child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .spawn()
        .with_context(|| format!("starting {}", cmd[0]))?;
    let pid = child.id() as libc::pid_t;
    let sample = rank == "0" && sample_ms > 0;
    let t0 = Instant::now();
    let mut series = String::from("t_s,vmrss_kb\n");
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data; wait4 fills it for our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if sample { libc::WNOHANG } else { 0 };
        // SAFETY: valid pointers to locals; pid is our child.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            fs::write(
                dir.join(format!("rss.{rank}")),
                format!("{}\n", ru.ru_maxrss),
            )?;
            if sample {
                fs::write(dir.join("rss0_series.csv"), &series)?;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            return Ok(code);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            bail!("wait4: {e}");
        }
        if let Ok(st) = fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = st
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
            {
                let _ = writeln!(series, "{:.3},{kb}", t0.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(sample_ms));
    }
}

/// What one MPI training run left behind.
struct Run {
    rows: RecordedRows,
    /// Peak RSS per rank in kB (index = rank), 0 where unknown.
    rss_kb: Vec<u64>,
    /// Rank 0's VmRSS samples (seconds, kB).
    rss0: Vec<(f64, u64)>,
    exit: i32,
    launch_s: f64,
}

impl Run {
    fn col(&self, m: Metric) -> Vec<f64> {
        self.rows.column(m).to_vec()
    }
    /// Median of a metric over iterations 1.. (iteration 0 includes start-up effects).
    fn median_of(&self, m: Metric) -> f64 {
        median(self.col(m).into_iter().skip(1))
    }
}

struct TrainSpec<'a> {
    name: &'a str,
    workers: usize,
    data: &'a Path,
    code: CodeKind,
    s: usize,
    iterations: usize,
    stragglers: &'a str,
    lr: f64,
    sample_ms: u64,
}

fn train(ctx: &Ctx, t: &TrainSpec) -> Result<Run> {
    let dir = ctx.out.join("runs").join(t.name);
    fs::create_dir_all(&dir)?;
    for e in fs::read_dir(&dir)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("rss") {
            fs::remove_file(e.path())?;
        }
    }
    let np = t.workers + 1;
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k",
        "10",
        "600",
        "mpirun",
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .args(["-np", &np.to_string()])
    .arg(&ctx.me)
    .args([
        "--rss-wrap",
        &dir.to_string_lossy(),
        &t.sample_ms.to_string(),
        "--",
    ])
    .arg(&ctx.bin)
    .args(["train", "--data", &t.data.to_string_lossy()])
    .args(["--model", "logistic", "--code", t.code.name()])
    .args(["-s", &t.s.to_string()])
    .args(["--iterations", &t.iterations.to_string()])
    .args(["--lr", &t.lr.to_string(), "--optimizer", "gd"])
    .args(["--straggler-model", t.stragglers, "--seed", "1"])
    .args(["--deadline-ms", "1000", "--max-wait-ms", "60000"])
    .args(["--eval-every", "0", "--log-every", "1000000", "-q"])
    .args(["--out", &dir.to_string_lossy(), "--force"])
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("OPENBLAS_NUM_THREADS", "1")
    .env("OMP_NUM_THREADS", "1");
    let s = Instant::now();
    let out = cmd.output().context("running mpirun")?;
    let launch_s = s.elapsed().as_secs_f64();
    fs::write(dir.join("stdout.txt"), &out.stdout)?;
    fs::write(dir.join("stderr.txt"), &out.stderr)?;
    let exit = out.status.code().unwrap_or(-1);
    let h5 = dir.join("run.h5");
    let rows = results::read_rows(&h5, None).with_context(|| {
        format!(
            "run {} (exit {exit}) left no readable {}; stderr:\n{}",
            t.name,
            h5.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let rss_kb = (0..np)
        .map(|r| {
            fs::read_to_string(dir.join(format!("rss.{r}")))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        })
        .collect();
    let rss0 = fs::read_to_string(dir.join("rss0_series.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    ctx.log(&format!(
        "run {} ({} workers, {} × {}, {}): {:.1} s, exit {exit}",
        t.name,
        t.workers,
        t.code.name(),
        rows.len(),
        t.stragglers,
        launch_s
    ));
    Ok(Run {
        rows,
        rss_kb,
        rss0,
        exit,
        launch_s,
    })
}

fn run_cli(ctx: &Ctx, args: &[&str]) -> Result<()> {
    let out = Command::new(&ctx.bin)
        .args(args)
        .output()
        .context("running gradcode")?;
    if !out.status.success() {
        bail!(
            "gradcode {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `gradcode data synth` of a logistic dataset with about `nnz_row` entries per row.
fn synth_h5(ctx: &Ctx, rows: usize, d: usize, nnz_row: usize) -> Result<PathBuf> {
    let p = ctx.tmp.path().join(format!("synth-{rows}x{d}.h5"));
    if !p.exists() {
        let sp = (nnz_row as f64 / d as f64).min(1.0);
        run_cli(
            ctx,
            &[
                "data",
                "synth",
                "--kind",
                "logistic",
                "--rows",
                &rows.to_string(),
                "--features",
                &d.to_string(),
                "--sparsity",
                &sp.to_string(),
                "--seed",
                "1",
                "--out",
                &p.to_string_lossy(),
            ],
        )?;
    }
    Ok(p)
}

// ------------------------------------------------------------------------------------------------
// Section 1: streaming bandwidth and the gradient kernel

fn stream(n: usize, min_total: f64) -> (Timing, Timing, Timing) {
    let b = vec![1.0f64; n];
    let c = vec![2.0f64; n];
    let mut a = vec![0.0f64; n];
    let copy = time_it(
        || {
            for (x, y) in a.iter_mut().zip(black_box(&b)) {
                *x = *y;
            }
            black_box(&mut a);
        },
        min_total,
    );
    let q = black_box(3.0);
    let triad = time_it(
        || {
            for ((x, y), z) in a.iter_mut().zip(black_box(&b)).zip(&c) {
                *x = y + q * z;
            }
            black_box(&mut a);
        },
        min_total,
    );
    let read = time_it(
        || {
            let mut acc = [0.0f64; 8];
            for ch in black_box(&c).chunks_exact(8) {
                for (s, v) in acc.iter_mut().zip(ch) {
                    *s += v;
                }
            }
            black_box(acc);
        },
        min_total,
    );
    (copy, triad, read)
}

fn libsvm(path: &Path, features: Option<usize>) -> Result<Dataset> {
    let conv = convert::convert(&ConvertOptions {
        format: InputFormat::Libsvm,
        input: path.to_path_buf(),
        labels: None,
        test_input: None,
        test_labels: None,
        features,
        task: None,
        label_column: None,
        scale: false,
        license: None,
    })
    .with_context(|| format!("converting {}", path.display()))?;
    Ok(conv.train)
}

fn synth_data(rows: usize, d: usize, sparsity: f64) -> Result<Dataset> {
    let (train, _) = synth::generate(&SynthSpec {
        kind: SynthKind::Logistic,
        rows,
        features: d,
        sparsity,
        test_rows: 0,
        seed: 1,
        zipf: None,
    })?;
    Ok(train)
}

/// Bytes of a shard the gradient reads per pass: X's storage, labels and row weights.
fn shard_bytes(x: &Features) -> f64 {
    let n = x.n_rows() as f64;
    let xb = match x {
        Features::Dense(m) => 8.0 * m.len() as f64,
        Features::Sparse(m) => 12.0 * m.nnz() as f64 + 8.0 * (n + 1.0),
    };
    xb + 16.0 * n
}

fn section_kernels(ctx: &mut Ctx) -> Result<()> {
    let (n_stream, min_t) = if ctx.smoke {
        (1 << 20, 0.05)
    } else {
        (1 << 24, 1.0)
    };
    ctx.log("section 1: streaming bandwidth");
    let (copy, triad, read) = stream(n_stream, min_t);
    let gbs = |bytes: f64, t: f64| bytes / t / 1e9;
    let nb = n_stream as f64 * 8.0;
    let bw = (
        gbs(2.0 * nb, copy.best),
        gbs(3.0 * nb, triad.best),
        gbs(nb, read.best),
    );
    ctx.stream = Some(bw);
    let rows = vec![
        vec![
            "copy a=b".into(),
            format!("{:.0}", 2.0 * nb / 1e6),
            format!("{:.2}", bw.0),
            format!("{:.2}", gbs(2.0 * nb, copy.median)),
        ],
        vec![
            "triad a=b+q·c".into(),
            format!("{:.0}", 3.0 * nb / 1e6),
            format!("{:.2}", bw.1),
            format!("{:.2}", gbs(3.0 * nb, triad.median)),
        ],
        vec![
            "read Σc".into(),
            format!("{:.0}", nb / 1e6),
            format!("{:.2}", bw.2),
            format!("{:.2}", gbs(nb, read.median)),
        ],
    ];
    ctx.section(
        "1a. Streaming bandwidth (one core)",
        "STREAM byte counting (copy 16 B, triad 24 B, read 8 B per element), best and median of \
         repeated passes over arrays much larger than the 32 MiB L3. Triad is the reference for \
         the targets below.",
        "stream.csv",
        &["kernel", "working set MB", "best GB/s", "median GB/s"],
        &rows,
    )?;

    ctx.log("section 1: gradient kernels");
    let ds = ctx.datasets.clone();
    let mut cases: Vec<(String, Dataset)> = Vec::new();
    let (dr, dd) = if ctx.smoke {
        (2_000, 200)
    } else {
        (20_000, 1_000)
    };
    cases.push((format!("dense {dr}×{dd}"), synth_data(dr, dd, 1.0)?));
    let real: &[(&str, &str, Option<usize>)] = if ctx.smoke {
        &[("a9a", "a9a/a9a", Some(123))]
    } else {
        &[
            ("a9a", "a9a/a9a", Some(123)),
            ("w8a", "w8a/w8a", Some(300)),
            ("reuters", "reuters_lasvm/reuters.trn.bz2", None),
        ]
    };
    for (name, rel, f) in real {
        let p = ds.join(rel);
        if p.exists() {
            cases.push((format!("CSR {name}"), libsvm(&p, *f)?));
        } else {
            ctx.log(&format!("{} not found: skipped", p.display()));
        }
    }
    let (sr, sd) = if ctx.smoke {
        (2_000, 1_000_000)
    } else {
        (100_000, 1_000_000)
    };
    cases.push((
        format!("CSR synthetic {sr}×10⁶"),
        synth_data(sr, sd, 50.0 / sd as f64)?,
    ));

    let triad_bw = bw.1;
    let mut rows = Vec::new();
    let mut worst = [f64::INFINITY; 2];
    for (name, data) in &cases {
        let d = data.n_features();
        let model = Logistic::new(d);
        let w = Array1::from_elem(model.dim(), 0.01);
        let rw = Array1::from_elem(data.n_rows(), 0.5);
        let mut out = Array1::zeros(model.dim());
        let mut ws = Workspace::default();
        let tm = time_it(
            || {
                black_box(model.gradient_into(
                    w.view(),
                    &data.x,
                    data.y.view(),
                    Some(rw.view()),
                    &mut ws,
                    out.view_mut(),
                ));
            },
            min_t,
        );
        let bytes = shard_bytes(&data.x);
        let eff = 2.0 * bytes / tm.best / 1e9;
        let frac = eff / triad_bw;
        let sparse = data.x.is_sparse();
        let need = if sparse { 0.40 } else { 0.60 };
        let k = usize::from(sparse);
        worst[k] = worst[k].min(frac);
        rows.push(vec![
            name.clone(),
            format!("{}", data.n_rows()),
            format!("{}", data.x.nnz()),
            format!("{:.1}", bytes / 1e6),
            format!("{:.3}", tm.best * 1e3),
            format!("{:.3}", tm.median * 1e3),
            format!("{:.2}", eff),
            format!("{:.2}", bytes / tm.best / 1e9),
            format!("{:.0} %", 100.0 * frac),
            format!("≥ {:.0} %", 100.0 * need),
            met_str(Some(frac >= need)).into(),
        ]);
        ctx.target(
            format!("1. gradient kernel {name}: effective / triad bandwidth"),
            format!("{:.0} %", 100.0 * frac),
            if sparse { "≥ 40 %" } else { "≥ 60 %" },
            Some(frac >= need),
        );
    }
    ctx.section(
        "1b. Gradient kernel (logistic, coded: with row weights) vs memory bandwidth",
        "Effective bandwidth = 2 passes (X·w and Xᵀ·r) × shard bytes (X storage: 8 B per dense \
         entry, 12 B per CSR non-zero + 8 B per row pointer; labels and row weights) / best time. \
         The kernel fuses both passes per row block (dense) or per row (CSR), so it reads X from \
         memory once: 100 % of triad is reachable, up to 200 % when the shard is in cache. \
         a9a (5.6 MB), w8a and reuters fit in the 32 MiB L3: their figures are cache bandwidth. \
         One thread, no BLAS threads.",
        "kernels.csv",
        &[
            "case",
            "rows",
            "nnz",
            "shard MB",
            "best ms",
            "median ms",
            "effective GB/s",
            "1-pass GB/s",
            "of triad",
            "target",
            "",
        ],
        &rows,
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Section 2: decode

/// The coordinator's loop today: zero the sum, then one `scaled_add` per responder.
fn decode_naive(gsum: &mut Array1<f64>, bufs: &[Vec<f64>], a: &[f64]) {
    gsum.fill(0.0);
    for (b, &w) in bufs.iter().zip(a) {
        if w != 0.0 {
            gsum.scaled_add(w, &ArrayView1::from(b.as_slice()));
        }
    }
}

/// Blocked: for each chunk of 2,048 entries (16 KiB, stays in L1) sum every responder's chunk,
/// so the output is written once instead of read and written n + 1 times.
fn decode_blocked(gsum: &mut [f64], bufs: &[Vec<f64>], a: &[f64]) {
    const CH: usize = 2048;
    let d = gsum.len();
    let mut start = 0;
    while start < d {
        let end = (start + CH).min(d);
        let g = &mut gsum[start..end];
        g.fill(0.0);
        for (b, &w) in bufs.iter().zip(a) {
            if w != 0.0 {
                for (x, y) in g.iter_mut().zip(&b[start..end]) {
                    *x += w * y;
                }
            }
        }
        start = end;
    }
}

fn section_decode(ctx: &mut Ctx) -> Result<()> {
    ctx.log("section 2: decode");
    let (ns, ds, cap, min_t): (&[usize], &[usize], usize, f64) = if ctx.smoke {
        (&[8, 16], &[1_000, 10_000, 100_000], 2_000_000, 0.02)
    } else {
        (
            &[8, 16, 32, 64],
            &[1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            80_000_000,
            0.3,
        )
    };
    let triad = ctx.stream.map_or(f64::NAN, |s| s.1);
    let mut rows = Vec::new();
    for &d in ds {
        for &n in ns {
            if n * d > cap {
                continue;
            }
            let bufs: Vec<Vec<f64>> = (0..n)
                .map(|i| (0..d).map(|j| ((i * 31 + j) % 97) as f64 * 1e-3).collect())
                .collect();
            let a: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
            let mut g1 = Array1::<f64>::zeros(d);
            let mut g2 = vec![0.0; d];
            let t1 = time_it(|| decode_naive(&mut g1, black_box(&bufs), &a), min_t);
            let t2 = time_it(|| decode_blocked(&mut g2, black_box(&bufs), &a), min_t);
            let diff = g1
                .iter()
                .zip(&g2)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            if diff > 1e-9 {
                bail!("blocked decode differs from the naive one by {diff:e} (n={n}, d={d})");
            }
            let elems = (n * d) as f64;
            let min_bytes = ((n + 1) * d * 8) as f64;
            rows.push(vec![
                n.to_string(),
                d.to_string(),
                format!("{:.3}", t1.best * 1e3),
                format!("{:.3}", t1.best / elems * 1e9),
                format!("{:.2}", min_bytes / t1.best / 1e9),
                format!("{:.3}", t2.best * 1e3),
                format!("{:.3}", t2.best / elems * 1e9),
                format!("{:.2}", min_bytes / t2.best / 1e9),
                format!("{:.0} %", 100.0 * min_bytes / t2.best / 1e9 / triad),
                format!("{:.2}×", t1.best / t2.best),
            ]);
        }
    }
    ctx.section(
        "2a. Decode: weighted sum of n coded gradients of dimension d (rank 0's hot path)",
        "`naive` is the coordinator's loop today (`gsum.fill(0)` then one `scaled_add` per \
         responder: the sum is read and written n + 1 times); `blocked` sums all responders per \
         16 KiB chunk of the output, which then stays in L1 (an alternative tried here: it is \
         not faster, the hardware prefetcher handles two streams better than n + 1). Bandwidth counts the minimal traffic \
         (n inputs read + the sum written once, (n+1)·d·8 B). Best of repeated runs.",
        "decode.csv",
        &[
            "n",
            "d",
            "naive ms",
            "naive ns/elem",
            "naive GB/s",
            "blocked ms",
            "blocked ns/elem",
            "blocked GB/s",
            "blocked of triad",
            "speed-up",
        ],
        &rows,
    )?;

    let mut rows = Vec::new();
    for &n in ns {
        for kind in [
            CodeKind::CyclicMds,
            CodeKind::CyclicRepetition,
            CodeKind::Frc,
        ] {
            let s = 1;
            let code = coding::build(kind, n, s, 1)?;
            let resp: Vec<usize> = (1..n).collect();
            let un = time_it(
                || {
                    let _ = black_box(code.decode(black_box(&resp)));
                },
                min_t,
            );
            let mut dec = Decoder::new(coding::build(kind, n, s, 1)?);
            dec.decode(&resp)?;
            let ca = time_it(
                || {
                    let _ = black_box(dec.decode(black_box(&resp)).map(|d| d.weights.len()));
                },
                min_t,
            );
            rows.push(vec![
                kind.name().into(),
                n.to_string(),
                s.to_string(),
                format!("{:.2}", un.median * 1e6),
                format!("{:.3}", ca.median * 1e6),
            ]);
        }
    }
    ctx.section(
        "2b. Decode weights: uncached solve vs cache hit",
        "Responders: every worker but the first. Uncached = `GradientCode::decode` (SVD least \
         squares, or the code's own rule for FRC); cached = `Decoder::decode` on a set seen \
         before (hash of the responder list). Median µs.",
        "decode_solve.csv",
        &["code", "n", "s", "uncached µs", "cached µs"],
        &rows,
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Sections 3 and 4: the standard configuration

const EXACT: [CodeKind; 3] = [
    CodeKind::Frc,
    CodeKind::CyclicRepetition,
    CodeKind::CyclicMds,
];
const ALL: [CodeKind; 5] = [
    CodeKind::Uncoded,
    CodeKind::IgnoreStragglers,
    CodeKind::Frc,
    CodeKind::CyclicRepetition,
    CodeKind::CyclicMds,
];

fn std_params(ctx: &Ctx) -> (usize, usize) {
    if ctx.smoke {
        (4, 30)
    } else {
        (8, 200)
    }
}

fn prepare_std_data(ctx: &mut Ctx) -> Result<PathBuf> {
    if let Some(p) = &ctx.std_data {
        return Ok(p.clone());
    }
    let a9a = ctx.datasets.join("a9a/a9a");
    let p = if ctx.smoke || !a9a.exists() {
        if !ctx.smoke {
            ctx.log("a9a not found: the standard configuration uses synthetic data instead");
        }
        synth_h5(ctx, 2_000, 100, 20)?
    } else {
        let p = ctx.tmp.path().join("a9a.h5");
        run_cli(
            ctx,
            &[
                "data",
                "convert",
                "--format",
                "libsvm",
                "--input",
                &a9a.to_string_lossy(),
                "--features",
                "123",
                "--out",
                &p.to_string_lossy(),
            ],
        )?;
        p
    };
    ctx.std_data = Some(p.clone());
    Ok(p)
}

fn section_overhead(ctx: &mut Ctx) -> Result<()> {
    ctx.log("section 3: protocol overhead over the oracle");
    let data = prepare_std_data(ctx)?;
    let (n, iters) = std_params(ctx);
    // One worker's compute time, without injected delays.
    let probe = train(
        ctx,
        &TrainSpec {
            name: "std-probe",
            workers: n,
            data: &data,
            code: CodeKind::CyclicMds,
            s: 1,
            iterations: if ctx.smoke { 10 } else { 40 },
            stragglers: "none",
            lr: 1.0,
            sample_ms: 0,
        },
    )?;
    let compute = median(probe.rows.worker(WorkerMetric::ComputeS).iter().copied());
    let mean_ms = (compute * 1e3).max(0.01);
    ctx.exp_mean_ms = mean_ms;
    let spec = format!("exp:{mean_ms:.3}");
    let mut rows = Vec::new();
    for kind in EXACT {
        let run = train(
            ctx,
            &TrainSpec {
                name: &format!("std-exp-{}", kind.name()),
                workers: n,
                data: &data,
                code: kind,
                s: 1,
                iterations: iters,
                stragglers: &spec,
                lr: 1.0,
                sample_ms: 0,
            },
        )?;
        let wall = run.median_of(Metric::WallS);
        let oracle = run.median_of(Metric::OracleS);
        let dec = run.median_of(Metric::DecodeS);
        let ratio = wall / oracle;
        let code = coding::build(kind, n, 1, 1)?;
        let core_oracle = core_limited_oracle(&run.rows, code.as_ref(), ctx.cores);
        let dec_frac = dec / wall;
        let p95 = {
            let mut v: Vec<f64> = run.col(Metric::WallS).into_iter().skip(1).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() * 95 / 100).copied().unwrap_or(f64::NAN)
        };
        rows.push(vec![
            kind.name().into(),
            format!("{:.3}", wall * 1e3),
            format!("{:.3}", p95 * 1e3),
            format!("{:.3}", oracle * 1e3),
            format!("{:.2}", ratio),
            format!("{:.3}", core_oracle * 1e3),
            format!("{:.2}", wall / core_oracle),
            format!("{:.1}", (wall - oracle) * 1e3),
            format!("{:.1}", dec * 1e6),
            format!("{:.2} %", 100.0 * dec_frac),
            met_str(Some(ratio <= 1.10)).into(),
        ]);
        ctx.target(
            format!("3. wall / oracle, {} (median)", kind.name()),
            format!("{ratio:.2}"),
            "≤ 1.10",
            Some(ratio <= 1.10),
        );
        ctx.target(
            format!("2. decode / iteration time, {} (median)", kind.name()),
            format!("{:.2} %", 100.0 * dec_frac),
            "< 2 %",
            Some(dec_frac < 0.02),
        );
        ctx.exp_runs.push((kind, run.rows));
    }
    let what = if ctx.smoke {
        "synthetic 2,000 × 100"
    } else {
        "a9a (32,561 × 123, CSR)"
    };
    ctx.section(
        "3. Protocol overhead over the oracle (standard configuration)",
        &format!(
            "{n} workers (`mpirun -np {}` on 2 cores, oversubscribed), logistic regression on \
             {what}, s = 1, {iters} iterations, `--straggler-model {spec}` (mean = one worker's \
             measured median compute time, {mean_ms:.3} ms, from a {}-iteration probe without \
             delays), gd with lr 1. Medians over iterations 1..; `decode_s` is rank 0's decode \
             + optimizer step as the coordinator records it. The oracle (GUIDE §4) is the \
             earliest decodable moment from the workers' own compute + injected delay; it \
             assumes a core per worker. The core-limited oracle is, per iteration, the larger \
             of that and the workers' compute in the oracle's decodable set divided by the {} \
             cores the ranks share (those workers cannot compute faster than that); wall over \
             it is the overhead that is the protocol's own. The target is on the first.",
            n + 1,
            probe.rows.len(),
            ctx.cores
        ),
        "overhead.csv",
        &[
            "code",
            "wall p50 ms",
            "wall p95 ms",
            "oracle p50 ms",
            "wall / oracle",
            "core-limited oracle p50 ms",
            "wall / core-limited",
            "excess ms",
            "decode p50 µs",
            "decode / wall",
            "≤ 1.10",
        ],
        &rows,
    )?;
    Ok(())
}

/// Median over iterations 1.. of the oracle bounded by the cores: max(oracle, Σ compute of the
/// oracle's decodable set / cores). The set is rebuilt from the file as the coordinator builds
/// it: workers in order of finish time (compute + injected delay) until `code` can decode.
fn core_limited_oracle(rows: &RecordedRows, code: &dyn coding::GradientCode, cores: usize) -> f64 {
    let oracle = rows.column(Metric::OracleS);
    let compute = rows.worker(WorkerMetric::ComputeS);
    let injected = rows.worker(WorkerMetric::InjectedS);
    if compute.ncols() == 0 || injected.ncols() == 0 {
        return f64::NAN;
    }
    let mut per_iter = Vec::new();
    let mut set = Vec::new();
    for i in 1..rows.len() {
        let mut fin: Vec<(f64, usize)> = (0..compute.ncols())
            .map(|w| (compute[[i, w]] + injected[[i, w]], w))
            .filter(|(f, _)| f.is_finite())
            .collect();
        fin.sort_by(|a, b| a.0.total_cmp(&b.0));
        set.clear();
        let mut work = 0.0;
        for &(_, w) in &fin {
            set.push(w);
            set.sort_unstable();
            work += compute[[i, w]];
            if code.is_decodable(&set) {
                per_iter.push(oracle[i].max(work / cores as f64));
                break;
            }
        }
    }
    median(per_iter)
}

/// First iteration whose loss is at most `target`: (iteration, elapsed seconds).
fn time_to(rows: &RecordedRows, target: f64) -> Option<(usize, f64)> {
    let loss = rows.column(Metric::TrainLoss);
    let el = rows.column(Metric::ElapsedS);
    let i = loss.iter().position(|&l| l <= target)?;
    Some((i, el[i]))
}

fn section_ttt(ctx: &mut Ctx) -> Result<()> {
    ctx.log("section 4: time to target loss");
    let data = prepare_std_data(ctx)?;
    let (n, iters) = std_params(ctx);
    if ctx.exp_mean_ms == 0.0 {
        ctx.exp_mean_ms = 0.3;
    }
    let spec = format!("exp:{:.3}", ctx.exp_mean_ms);
    let mut rows = Vec::new();
    for (label, strag) in [("exp", spec.as_str()), ("none", "none")] {
        let mut runs: Vec<(CodeKind, RecordedRows)> = Vec::new();
        for kind in ALL {
            if label == "exp" {
                if let Some((_, r)) = ctx.exp_runs.iter().find(|(k, _)| *k == kind) {
                    runs.push((kind, r.clone()));
                    continue;
                }
            }
            let r = train(
                ctx,
                &TrainSpec {
                    name: &format!("std-{label}-{}", kind.name()),
                    workers: n,
                    data: &data,
                    code: kind,
                    s: 1,
                    iterations: iters,
                    stragglers: strag,
                    lr: 1.0,
                    sample_ms: 0,
                },
            )?;
            runs.push((kind, r.rows));
        }
        let unc = runs
            .iter()
            .find(|(k, _)| *k == CodeKind::Uncoded)
            .map(|(_, r)| r)
            .context("no uncoded run")?;
        let at = iters * 3 / 4;
        let target = unc
            .column(Metric::TrainLoss)
            .get(at)
            .copied()
            .context("uncoded run too short")?;
        let base = time_to(unc, target).map(|t| t.1);
        let unc_compute = median(unc.worker(WorkerMetric::ComputeS).iter().copied());
        let unc_wall = median(unc.column(Metric::WallS).iter().copied());
        for (kind, r) in &runs {
            let tt = time_to(r, target);
            let compute = median(r.worker(WorkerMetric::ComputeS).iter().copied());
            let wall = median(r.column(Metric::WallS).iter().copied());
            let ratio = match (tt, base) {
                (Some((_, t)), Some(b)) => format!("{:.2}", t / b),
                _ => "—".into(),
            };
            rows.push(vec![
                label.into(),
                kind.name().into(),
                tt.map_or("not reached".into(), |t| t.0.to_string()),
                tt.map_or("—".into(), |t| format!("{:.3}", t.1)),
                ratio,
                format!("{:.3}", wall * 1e3),
                format!("{:.2}", wall / unc_wall),
                format!("{:.3}", compute * 1e3),
                format!("{:.2}", compute / unc_compute),
                format!("{:.6}", target),
            ]);
            if label == "exp" && *kind == CodeKind::CyclicMds {
                if let (Some((_, t)), Some(b)) = (tt, base) {
                    ctx.target(
                        "4. time to target, cyclic-mds / uncoded (exp delays)",
                        format!("{:.2}", t / b),
                        "< 1 (coding pays)",
                        Some(t < b),
                    );
                }
            }
        }
    }
    ctx.section(
        "4. Time to target loss, every code under the same seeded delays",
        &format!(
            "Standard configuration as in section 3 ({n} workers, s = 1, {iters} iterations). \
             Target loss = uncoded's training objective at iteration {} of the same delay model; \
             time = `elapsed_s` at the first iteration at or below it. The exact codes follow \
             uncoded's trajectory step for step, so they reach it at the same iteration; \
             `ignore-stragglers` is approximate. With `none` the columns compare the price of \
             redundancy: compute per worker should be ≈ (s+1)× uncoded's, wall time no more.",
            iters * 3 / 4
        ),
        "time_to_target.csv",
        &[
            "delays",
            "code",
            "iterations to target",
            "time to target s",
            "vs uncoded",
            "wall p50 ms",
            "wall vs uncoded",
            "compute p50 ms",
            "compute vs uncoded",
            "target loss",
        ],
        &rows,
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Section 5: scaling, receive rate, memory

fn section_scaling(ctx: &mut Ctx) -> Result<()> {
    ctx.log("section 5: scaling with n and d");
    let (rows_n, iters, ns, ds, d_fixed, n_fixed): (
        usize,
        usize,
        &[usize],
        &[usize],
        usize,
        usize,
    ) = if ctx.smoke {
        (800, 5, &[2, 4], &[1_000, 10_000], 10_000, 4)
    } else {
        (
            16_000,
            40,
            &[2, 4, 8, 16, 32],
            &[1_000, 10_000, 100_000, 1_000_000],
            10_000,
            8,
        )
    };
    let mut grid: Vec<(usize, usize)> = ns.iter().map(|&n| (n, d_fixed)).collect();
    for &d in ds {
        if !grid.contains(&(n_fixed, d)) {
            grid.push((n_fixed, d));
        }
    }
    let mut rows = Vec::new();
    for (n, d) in grid {
        let data = synth_h5(ctx, rows_n, d, 32)?;
        let run = train(
            ctx,
            &TrainSpec {
                name: &format!("scale-n{n}-d{d}"),
                workers: n,
                data: &data,
                code: CodeKind::CyclicMds,
                s: 1,
                iterations: iters,
                stragglers: "none",
                lr: 0.5,
                sample_ms: 0,
            },
        )?;
        let bytes: f64 = run.col(Metric::BytesReceived).iter().skip(1).sum();
        let wall: f64 = run.col(Metric::WallS).iter().skip(1).sum();
        let mb = |kb: u64| kb as f64 / 1024.0;
        let worker_max = run.rss_kb.iter().skip(1).copied().max().unwrap_or(0);
        rows.push(vec![
            n.to_string(),
            d.to_string(),
            format!("{}", n + 1),
            format!("{:.3}", run.median_of(Metric::WallS) * 1e3),
            format!("{:.3}", run.median_of(Metric::OracleS) * 1e3),
            format!(
                "{:.3}",
                median(run.rows.worker(WorkerMetric::ComputeS).iter().copied()) * 1e3
            ),
            format!("{:.1}", bytes / wall / 1e6),
            format!("{:.1}", mb(run.rss_kb.first().copied().unwrap_or(0))),
            format!("{:.1}", mb(worker_max)),
            format!("{:.1}", run.launch_s),
        ]);
    }
    ctx.section(
        "5a. Scaling with n (workers) and d (features)",
        &format!(
            "Synthetic logistic data, {rows_n} rows, ~32 non-zeros per row (CSR), cyclic-mds s = 1, \
             no injected delays, {iters} iterations. All ranks share 2 cores: every run with more \
             than 1 worker is oversubscribed (up to {} processes), so times grow with n through \
             time-sharing, not through the protocol alone. Receive rate = Σ `bytes_received` / \
             Σ `wall_s` over iterations 1..; peak RSS from `wait4` `ru_maxrss` of each rank.",
            ns.last().copied().unwrap_or(0) + 1
        ),
        "scaling.csv",
        &[
            "n",
            "d",
            "ranks",
            "wall p50 ms",
            "oracle p50 ms",
            "compute p50 ms",
            "rank-0 recv MB/s",
            "rank 0 peak RSS MB",
            "worker peak RSS MB (max)",
            "job s",
        ],
        &rows,
    )?;

    // Rank 0's memory over a long run with a failed worker and late messages.
    ctx.log("section 5: long run with a failed worker");
    let (iters, d) = if ctx.smoke {
        (100, 10_000)
    } else {
        (2_000, 100_000)
    };
    let data = synth_h5(ctx, rows_n, d, 32)?;
    let spec = "exp:2+fail:2@10";
    let run = train(
        ctx,
        &TrainSpec {
            name: "fail-long",
            workers: 8,
            data: &data,
            code: CodeKind::CyclicMds,
            s: 3,
            iterations: iters,
            stragglers: spec,
            lr: 0.5,
            sample_ms: 50,
        },
    )?;
    let late: f64 = run.col(Metric::Late).iter().filter(|x| x.is_finite()).sum();
    let rss = &run.rss0;
    let q = |a: usize, b: usize| {
        let n = rss.len();
        median(
            rss[n * a / 4..(n * b / 4).max(n * a / 4 + 1).min(n)]
                .iter()
                .map(|x| x.1 as f64),
        )
    };
    let (early, last) = if rss.len() >= 8 {
        (q(1, 2), q(3, 4))
    } else {
        (f64::NAN, f64::NAN)
    };
    let peak = rss.iter().map(|x| x.1).max().unwrap_or(0);
    let growth_mb = (last - early) / 1024.0;
    let flat = growth_mb.is_finite() && growth_mb <= 4.0;
    // 100 iterations (smoke) are start-up: the allocator and HDF5's caches still grow. The target
    // is on the full run's 2,000 (results/bench/full: flat).
    let verdict = (!ctx.smoke).then_some(flat);
    let mut series = String::from("t_s,vmrss_kb\n");
    for (t, kb) in rss {
        let _ = writeln!(series, "{t:.3},{kb}");
    }
    fs::write(ctx.out.join("rank0_rss_series.csv"), series)?;
    let rows = vec![vec![
        iters.to_string(),
        run.rows.len().to_string(),
        format!("{}", run.exit),
        format!("{late}"),
        rss.len().to_string(),
        format!("{:.1}", early / 1024.0),
        format!("{:.1}", last / 1024.0),
        format!("{:.1}", peak as f64 / 1024.0),
        format!("{growth_mb:+.2}"),
        met_str(verdict).into(),
    ]];
    ctx.target(
        "5. rank 0 RSS growth over a long run with a failed worker",
        if ctx.smoke {
            format!("{growth_mb:+.2} MB over {iters} iterations (start-up; judged on the full run)")
        } else {
            format!("{growth_mb:+.2} MB")
        },
        "≤ 4 MB",
        verdict,
    );
    ctx.section(
        "5b. Rank 0 memory with a failed worker",
        &format!(
            "8 workers, cyclic-mds s = 3, synthetic {rows_n} × {d} CSR data (messages of {:.0} KB), \
             `--straggler-model {spec}` (rank 2 stops answering at iteration 10, the others have \
             exponential delays so that late messages must be drained every iteration). Rank 0's \
             VmRSS sampled every 50 ms (`rank0_rss_series.csv`); growth = median of the last \
             quarter of samples − median of the second quarter.",
            (d + 1) as f64 * 8.0 / 1e3
        ),
        "rank0_rss.csv",
        &[
            "iterations",
            "recorded",
            "exit",
            "late messages",
            "samples",
            "RSS 2nd quarter MB",
            "RSS last quarter MB",
            "peak MB",
            "growth MB",
            "flat",
        ],
        &rows,
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Section 6: coded linear algebra (issue 6)

/// One `gradcode matvec` job under mpirun; returns its rows.
fn matvec_run(ctx: &Ctx, name: &str, np: usize, args: &[String]) -> Result<RecordedRows> {
    let dir = ctx.out.join("runs").join(name);
    fs::create_dir_all(&dir)?;
    let out = Command::new("timeout")
        .args([
            "-k",
            "10",
            "600",
            "mpirun",
            "--oversubscribe",
            "--bind-to",
            "none",
        ])
        .args(["-np", &np.to_string()])
        .arg(&ctx.bin)
        .arg("-q")
        .arg("matvec")
        .args(args)
        .args(["--out", &dir.to_string_lossy(), "--force"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .context("running mpirun")?;
    fs::write(dir.join("stderr.txt"), &out.stderr)?;
    if !out.status.success() {
        bail!(
            "matvec run {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    results::read_rows(&dir.join("run.h5"), None)
        .with_context(|| format!("reading the results of {name}"))
}

fn section_linalg(ctx: &mut Ctx) -> Result<()> {
    use gradcode::linalg::{Family, MdsCode, StreamingDecoder};
    use ndarray::Array2;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    ctx.log("section 6: coded linear algebra");
    let (sizes, rows_a, cols_a, min_t): (&[(usize, usize)], usize, usize, f64) = if ctx.smoke {
        (&[(8, 6), (12, 10)], 960, 32, 0.02)
    } else {
        (
            &[(8, 6), (12, 10), (24, 20), (31, 28), (40, 36)],
            40_320,
            64,
            0.2,
        )
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let a = Array2::from_shape_fn((rows_a, cols_a), |_| StandardNormal.sample(&mut rng));
    let x = Array1::from_shape_fn(cols_a, |_| StandardNormal.sample(&mut rng));
    let truth = a.dot(&x);
    let rel = |y: ArrayView1<f64>| {
        let d: f64 = y.iter().zip(&truth).map(|(p, q)| (p - q) * (p - q)).sum();
        let t: f64 = truth.iter().map(|q| q * q).sum();
        (d / t).sqrt()
    };
    let mut rows = Vec::new();
    for &(n, k) in sizes {
        // The same seeded arrival order of all n workers for every family: MDS codes decode from
        // the first k, replication from the first covering set.
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for family in Family::ALL {
            let code = MdsCode::new(family, n, k)?;
            let enc = code.encode(a.view());
            let res: Vec<Array2<f64>> = enc
                .blocks
                .iter()
                .map(|blk| blk.dot(&x).insert_axis(ndarray::Axis(1)))
                .collect();
            let views: Vec<(usize, ndarray::ArrayView2<f64>)> =
                order.iter().map(|&w| (w, res[w].view())).collect();
            let d = match code.decode(&views, rows_a) {
                Ok(d) => d,
                Err(e) => {
                    // Past n ≈ 30 the real Vandermonde systems exceed 1/ε: the decoder refuses.
                    rows.push(vec![
                        family.name().into(),
                        n.to_string(),
                        k.to_string(),
                        "-".into(),
                        "> 1/ε".into(),
                        format!("refused: {e}"),
                    ]);
                    continue;
                }
            };
            let t = time_it(
                || {
                    let _ = black_box(code.decode(black_box(&views), rows_a));
                },
                min_t,
            );
            rows.push(vec![
                family.name().into(),
                n.to_string(),
                k.to_string(),
                format!("{:.3}", t.median * 1e3),
                format!("{:.2e}", d.cond),
                format!("{:.2e}", rel(d.value.column(0))),
            ]);
            if family.is_systematic() {
                let run = || -> Result<(usize, gradcode::linalg::Decoded)> {
                    let mut s = StreamingDecoder::new(&code, rows_a)?;
                    for &w in &order {
                        s.add_result(w, res[w].view())?;
                        if s.is_decodable() {
                            break;
                        }
                    }
                    let d = s.try_decode()?.context("streaming decoder not decodable")?;
                    Ok((s.stats().solve_dim, d))
                };
                let (sdim, d) = run()?;
                let t = time_it(
                    || {
                        let _ = black_box(run().map(|r| r.1.cond));
                    },
                    min_t,
                );
                rows.push(vec![
                    format!("{family}, streaming (s = {sdim})"),
                    n.to_string(),
                    k.to_string(),
                    format!("{:.3}", t.median * 1e3),
                    format!("{:.2e}", d.cond),
                    format!("{:.2e}", rel(d.value.column(0))),
                ]);
            }
        }
    }
    ctx.section(
        "6a. Coded mat-vec: decode time and relative error versus n",
        &format!(
            "A is {rows_a} × {cols_a} (seeded normal), x seeded normal; every worker's coded \
             block times x; the decoder gets all n results in one seeded random arrival order \
             (the same for every family at a given n) and uses the first k (replication: the \
             first covering set). Decode = `MdsCode::decode` (SVD solve of the (k·r) × (k·r) \
             system G_F), median ms; the streaming row folds results in arrival order until \
             decodable, then solves for the s missing systematic blocks. cond = cond of the \
             system solved; error = ‖ŷ − Ax‖/‖Ax‖."
        ),
        "linalg_decode.csv",
        &["family", "n", "k", "decode ms", "cond", "rel. error"],
        &rows,
    )?;

    // 6b. Real MPI mat-vec jobs under exponential delays: uncoded (replication with k = n: every
    // worker must answer) against MDS codes that wait for the fastest k.
    let (n, k, iters, mean_ms, mrows, mcols) = if ctx.smoke {
        (4, 3, 5, 20, 800, 50)
    } else {
        (8, 6, 30, 50, 8_000, 400)
    };
    let a_path = ctx.tmp.path().join(format!("matvec-{mrows}x{mcols}.h5"));
    if !a_path.exists() {
        run_cli(
            ctx,
            &[
                "data",
                "synth",
                "--kind",
                "linear",
                "--rows",
                &mrows.to_string(),
                "--features",
                &mcols.to_string(),
                "--seed",
                "6",
                "--out",
                &a_path.to_string_lossy(),
            ],
        )?;
    }
    let spec = format!("exp:{mean_ms}");
    let mut rows = Vec::new();
    let mut base = f64::NAN;
    for (code, kk) in [
        ("replication", n),
        ("mds-systematic", k),
        ("mds-systematic-rotation", k),
        ("mds-rotation", k),
        ("mds-circulant", k),
    ] {
        let args: Vec<String> = [
            "--matrix",
            &a_path.to_string_lossy(),
            "--code",
            code,
            "-k",
            &kk.to_string(),
            "--iterations",
            &iters.to_string(),
            "--straggler-model",
            &spec,
            "--seed",
            "1",
            "--max-wait-ms",
            "60000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = matvec_run(ctx, &format!("matvec-{code}-k{kk}"), n + 1, &args)?;
        let mean = |m: Metric| {
            let c = r.column(m);
            c.iter().sum::<f64>() / c.len().max(1) as f64
        };
        let wall = mean(Metric::WallS);
        if code == "replication" {
            base = wall;
        }
        let max_err = r
            .column(Metric::GradRelErr)
            .iter()
            .copied()
            .fold(0.0, f64::max);
        rows.push(vec![
            if kk == n {
                "uncoded (replication, k = n)".to_string()
            } else {
                code.to_string()
            },
            n.to_string(),
            kk.to_string(),
            format!("{:.2}", wall * 1e3),
            format!("{:.3}", mean(Metric::DecodeS) * 1e3),
            format!("{:.2}×", base / wall),
            format!("{max_err:.1e}"),
        ]);
    }
    ctx.section(
        "6b. Coded mat-vec over MPI: speed-up over uncoded under exponential delays",
        &format!(
            "`gradcode matvec` on a {mrows} × {mcols} dense matrix, n = {n} workers, {iters} \
             iterations, `--straggler-model {spec}` with the same seed for every code (every \
             worker sleeps an exponential delay after computing). Uncoded waits for all n; the \
             MDS codes decode from the fastest k. Wall = mean ms from posting x to the decoded \
             A·x (real time, stragglers' late results drained); speed-up = uncoded wall / wall; \
             error = the largest ‖ŷ − Ax‖/‖Ax‖ over the iterations."
        ),
        "linalg_matvec.csv",
        &[
            "code",
            "n",
            "k",
            "wall ms",
            "decode ms",
            "speed-up",
            "max rel. error",
        ],
        &rows,
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-wrap") {
        let code = rss_wrap(&args[i + 1..])?;
        std::process::exit(code);
    }
    let mut smoke = false;
    let mut only: Option<Vec<u32>> = None;
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--only" => {
                let v = it.next().context("--only needs a list such as 1,3")?;
                only = Some(
                    v.split(',')
                        .map(|x| x.trim().parse::<u32>())
                        .collect::<Result<_, _>>()?,
                );
            }
            "--out" => out = Some(PathBuf::from(it.next().context("--out needs a folder")?)),
            "--bench" => {}
            other if other.starts_with('-') => bail!("unknown option {other}"),
            _ => {}
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = out.unwrap_or_else(|| {
        manifest
            .join("results/bench")
            .join(if smoke { "smoke" } else { "full" })
    });
    fs::create_dir_all(&out)?;
    let datasets = std::env::var_os("GRADCODE_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../shared/datasets"));
    let mut ctx = Ctx {
        smoke,
        out,
        tmp: tempfile::tempdir()?,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_gradcode")),
        me: std::env::current_exe()?,
        datasets,
        start: Instant::now(),
        md: String::new(),
        targets: Vec::new(),
        stream: None,
        std_data: None,
        exp_runs: Vec::new(),
        exp_mean_ms: 0.0,
        cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
    };
    let load0 = load_average();
    let want = |s: u32| only.as_ref().map_or(true, |o| o.contains(&s));
    if want(1) || want(2) {
        section_kernels(&mut ctx)?;
    }
    if want(2) {
        section_decode(&mut ctx)?;
    }
    if want(3) || want(4) {
        section_overhead(&mut ctx)?;
    }
    if want(4) {
        section_ttt(&mut ctx)?;
    }
    if want(5) {
        section_scaling(&mut ctx)?;
    }
    if want(6) {
        section_linalg(&mut ctx)?;
    }
    let total = ctx.start.elapsed().as_secs_f64();
    let load1 = load_average();
    let rows: Vec<Vec<String>> = ctx
        .targets
        .iter()
        .map(|t| {
            vec![
                t.what.clone(),
                t.value.clone(),
                t.target.clone(),
                met_str(t.met).into(),
            ]
        })
        .collect();
    let mut head = format!(
        "# gradcode benchmarks ({})\n\n\
         - command: `cargo bench --bench suite{}` (`make bench{}`), git {}\n\
         - machine: {} × {}, load average {} at start, {} at the end; the cores are shared \
         with other jobs, so every time here is noisy\n\
         - total {:.0} s\n",
        if ctx.smoke { "smoke" } else { "full" },
        if ctx.smoke { " -- --smoke" } else { "" },
        if ctx.smoke { "-smoke" } else { "" },
        git_rev(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load0,
        load1,
        total
    );
    let tgt = md_table(&["target", "measured", "goal", "status"], &rows);
    let _ = write!(head, "\n## Targets\n\n{tgt}");
    let report = format!("{head}{}", ctx.md);
    fs::write(ctx.out.join("report.md"), &report)?;
    let mut c = String::from("target,measured,goal,status\n");
    for r in &rows {
        let _ = writeln!(c, "\"{}\",\"{}\",\"{}\",{}", r[0], r[1], r[2], r[3]);
    }
    fs::write(ctx.out.join("targets.csv"), c)?;
    println!("\n## Targets (load average {load0} → {load1}; shared cores: noisy)\n\n{tgt}");
    println!(
        "report: {} ({total:.0} s)",
        ctx.out.join("report.md").display()
    );
    Ok(())
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: error: {e:#}");
        std::process::exit(1);
    }
}
