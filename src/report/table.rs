//! The comparison table: one [`Summary`] per run, printed as text, CSV or JSON.

use std::fmt::Write as _;

use super::load::LoadedRun;
use crate::io::metrics::{count_outcomes, WorkerCounts};
use crate::io::results::{Metric, WorkerMetric};

/// One row of the comparison table. Times are in seconds; NaN means "no value".
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Run name (the folder of `run.h5`).
    pub run: String,
    /// The file read.
    pub file: String,
    /// Gradient code, `reference` for the serial path, "?" when unknown.
    pub code: String,
    /// Stragglers s.
    pub s: Option<u64>,
    /// Injected straggler model.
    pub straggler_model: String,
    /// Workers n.
    pub workers: Option<u64>,
    /// Iterations recorded.
    pub iterations: usize,
    /// Iterations configured.
    pub iterations_planned: Option<u64>,
    /// Time per iteration (`/metrics/wall_s`), 50th and 95th percentiles.
    pub p50_s: f64,
    pub p95_s: f64,
    /// Median oracle iteration time (`/metrics/oracle_s`).
    pub oracle_p50_s: f64,
    /// Median wall time over median oracle time.
    pub overhead: f64,
    /// The `--target-loss` asked for.
    pub target_loss: Option<f64>,
    /// First `elapsed_s` at which `train_loss` ≤ target (None: not reached or no target).
    pub time_to_target_s: Option<f64>,
    /// Iteration at which the target was reached.
    pub iteration_to_target: Option<u64>,
    /// Last finite values.
    pub final_train_loss: f64,
    pub final_test_loss: f64,
    pub final_test_accuracy: f64,
    /// ROC AUC on the test split (binary classifiers; NaN otherwise, and in files written
    /// before `/metrics/test_auc` existed).
    pub final_test_auc: f64,
    /// Validation verdict (VALID / INVALID / REFERENCE), "-" when absent.
    pub verdict: String,
    /// The root `status` attribute ("?" when absent).
    pub status: String,
    /// Whether the run did not finish (status `running`).
    pub partial: bool,
    /// What is missing from the file.
    pub notes: Vec<String>,
    /// How each worker's iterations ended (on time, partial, late, missed: the definition of the
    /// run's own summary); empty for a file without workers or per-worker timing. In a
    /// `--decode-tree` run a member counts through its leader's member mask.
    pub workers_counts: Vec<WorkerCounts>,
    /// Group size of a `--decode-tree` run (None: every worker sent to rank 0).
    pub decode_tree: Option<u64>,
    /// Mean result messages rank 0 received per iteration (`/metrics/messages_received`; NaN:
    /// not recorded).
    pub messages_per_iteration: f64,
    /// The s switches of a `train --adapt` run, `(iteration, old s, new s)`: s changed after
    /// that iteration (empty for other runs).
    pub switches: Vec<(u64, u64, u64)>,
}

/// Nearest-rank percentile of the finite values: the sorted value at index round((n − 1)·p)
/// (the rule of the run's own summary and of `scripts/load_run.py`).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    crate::io::metrics::percentile(&v, p)
}

/// Per-worker counts of a run's iterations from its file: parts on time per iteration
/// (`/timing/chunks`) and the late arrivals (`/late`); the parts a worker owes per iteration are
/// the most any worker delivered on time (1, the chunks, or 2 for coded mat-vecs).
fn worker_counts(run: &LoadedRun) -> Vec<WorkerCounts> {
    let Some(rows) = &run.rows else {
        return Vec::new();
    };
    if !rows.has(WorkerMetric::Chunks) || rows.workers() == 0 {
        return Vec::new();
    }
    let chunks = rows.worker(WorkerMetric::Chunks);
    let parts = chunks
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0) as usize;
    count_outcomes(chunks, parts, &rows.late)
}

/// Ranks on time in fewer than half of the iterations (the run's own `stragglers`).
fn slow_ranks(counts: &[WorkerCounts], iterations: usize) -> String {
    let slow: Vec<usize> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| (c.on_time as f64) < 0.5 * iterations as f64)
        .map(|(w, _)| w + 1)
        .collect();
    format!("{slow:?}")
}

fn per_worker(counts: &[WorkerCounts], f: fn(&WorkerCounts) -> u64) -> String {
    counts
        .iter()
        .map(|c| f(c).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_finite(v: &[f64]) -> f64 {
    v.iter()
        .rev()
        .copied()
        .find(|x| x.is_finite())
        .unwrap_or(f64::NAN)
}

impl Summary {
    /// Summarize a loaded run; `target_loss` is `--target-loss`.
    pub fn of(run: &LoadedRun, target_loss: Option<f64>) -> Summary {
        let wall = run.column(Metric::WallS);
        let oracle = run.column(Metric::OracleS);
        let elapsed = run.column(Metric::ElapsedS);
        let train = run.column(Metric::TrainLoss);
        let iteration = run.column(Metric::Iteration);
        let (p50, o50) = (percentile(&wall, 0.5), percentile(&oracle, 0.5));
        let reached = target_loss.and_then(|x| {
            train
                .iter()
                .zip(&elapsed)
                .enumerate()
                .find(|(_, (l, e))| l.is_finite() && e.is_finite() && **l <= x)
                .map(|(i, (_, e))| {
                    let it = iteration
                        .get(i)
                        .copied()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .map_or(i as u64, |v| v as u64);
                    (*e, it)
                })
        });
        let st = &run.settings;
        Summary {
            run: run.name.clone(),
            file: run.path.display().to_string(),
            code: st.code.clone().unwrap_or_else(|| "?".into()),
            s: st.stragglers,
            straggler_model: st.straggler_model.clone().unwrap_or_else(|| "?".into()),
            workers: st.workers,
            iterations: run.iterations(),
            iterations_planned: st.iterations,
            p50_s: p50,
            p95_s: percentile(&wall, 0.95),
            oracle_p50_s: o50,
            overhead: p50 / o50,
            target_loss,
            time_to_target_s: reached.map(|r| r.0),
            iteration_to_target: reached.map(|r| r.1),
            final_train_loss: last_finite(&train),
            final_test_loss: last_finite(&run.column(Metric::TestLoss)),
            final_test_accuracy: last_finite(&run.column(Metric::TestAccuracy)),
            final_test_auc: last_finite(&run.column(Metric::TestAuc)),
            verdict: run.verdict.clone().unwrap_or_else(|| "-".into()),
            status: run.status.clone().unwrap_or_else(|| "?".into()),
            partial: run.is_partial(),
            notes: run.missing.clone(),
            workers_counts: worker_counts(run),
            decode_tree: st.decode_tree,
            messages_per_iteration: {
                let m: Vec<f64> = run
                    .column(Metric::MessagesReceived)
                    .into_iter()
                    .filter(|v| v.is_finite())
                    .collect();
                m.iter().sum::<f64>() / m.len() as f64
            },
            switches: run
                .switches
                .iter()
                .map(|w| (w.iteration, w.old_s, w.new_s))
                .collect(),
        }
    }

    /// A `train --adapt` run's switches, in order (None for a run without any).
    pub fn switches_text(&self) -> Option<String> {
        if self.switches.is_empty() {
            return None;
        }
        let each: Vec<String> = self
            .switches
            .iter()
            .map(|(t, a, b)| format!("s {a}→{b} after iteration {t}"))
            .collect();
        Some(format!(
            "--adapt switched s {} time(s): {}",
            self.switches.len(),
            each.join(", ")
        ))
    }

    /// What a `--decode-tree` run's per-worker counts mean, with the leaders' results per
    /// iteration (None for other runs).
    pub fn tree_text(&self) -> Option<String> {
        let (g, n) = (self.decode_tree?, self.workers?);
        let mut t = crate::io::metrics::tree_decode_note(n as usize, g as usize);
        if self.messages_per_iteration.is_finite() {
            let _ = write!(
                t,
                "; {:.2} leader results an iteration (of {})",
                self.messages_per_iteration,
                n / g.max(1)
            );
        }
        Some(t)
    }

    /// The status column: `partial (status running)` for a run that did not end.
    pub fn status_text(&self) -> String {
        if self.partial {
            format!("partial (status {})", self.status)
        } else {
            self.status.clone()
        }
    }

    fn iterations_text(&self) -> String {
        match self.iterations_planned {
            Some(p) if p as usize != self.iterations => format!("{}/{p}", self.iterations),
            _ => self.iterations.to_string(),
        }
    }

    fn target_text(&self) -> String {
        match (self.time_to_target_s, self.iteration_to_target) {
            (Some(t), Some(i)) => format!("{t:.3} s (it {i})"),
            (Some(t), None) => format!("{t:.3} s"),
            _ => "not reached".into(),
        }
    }
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The table as aligned text, then one `note:` line per missing part.
pub fn text(rows: &[Summary]) -> String {
    let with_target = rows.iter().any(|r| r.target_loss.is_some());
    // The AUC column only when some run measured it (binary classifiers).
    let with_auc = rows.iter().any(|r| r.final_test_auc.is_finite());
    let target_head = match rows.iter().find_map(|r| r.target_loss) {
        Some(x) => format!("to loss {x}"),
        None => String::new(),
    };
    let mut head: Vec<String> = [
        "run",
        "code",
        "s",
        "stragglers",
        "iters",
        "p50 ms",
        "p95 ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if with_target {
        head.push(target_head);
    }
    head.extend(["train loss", "test loss", "test acc"].map(String::from));
    if with_auc {
        head.push("test AUC".into());
    }
    // Ranks on time in fewer than half the iterations, when some run has workers.
    let with_workers = rows.iter().any(|r| !r.workers_counts.is_empty());
    if with_workers {
        head.push("slow ranks".into());
    }
    head.extend(["overhead", "verdict", "status"].map(String::from));
    let mut cells: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let mut c = vec![
            r.run.clone(),
            r.code.clone(),
            opt(r.s),
            r.straggler_model.clone(),
            r.iterations_text(),
            num(r.p50_s * 1e3, 3),
            num(r.p95_s * 1e3, 3),
        ];
        if with_target {
            c.push(r.target_text());
        }
        c.extend([
            num(r.final_train_loss, 6),
            num(r.final_test_loss, 6),
            num(r.final_test_accuracy, 4),
        ]);
        if with_auc {
            c.push(num(r.final_test_auc, 4));
        }
        if with_workers {
            c.push(if r.workers_counts.is_empty() {
                "-".into()
            } else {
                slow_ranks(&r.workers_counts, r.iterations)
            });
        }
        c.extend([num(r.overhead, 3), r.verdict.clone(), r.status_text()]);
        cells.push(c);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|j| {
            cells
                .iter()
                .map(|c| c[j].chars().count())
                .chain([head[j].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Text columns left-aligned, numbers right-aligned.
    let left = |j: usize| j <= 1 || j == 3 || j + 2 >= head.len();
    let line = |c: &[String]| {
        let mut s = String::new();
        for (j, v) in c.iter().enumerate() {
            let w = widths[j];
            if j > 0 {
                s.push_str("  ");
            }
            if left(j) {
                let _ = write!(s, "{v:<w$}");
            } else {
                let _ = write!(s, "{v:>w$}");
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&head);
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    for r in rows {
        if r.partial {
            let _ = writeln!(
                out,
                "note: {}: the run did not finish (status running: killed or still going); {} iterations reported",
                r.run, r.iterations
            );
        }
        if let Some(t) = r.tree_text() {
            let _ = writeln!(out, "note: {}: {t}", r.run);
        }
        if let Some(t) = r.switches_text() {
            let _ = writeln!(out, "note: {}: {t}", r.run);
        }
        for n in &r.notes {
            let _ = writeln!(out, "note: {}: {n}", r.run);
        }
    }
    out
}

const CSV_HEAD: &[&str] = &[
    "run",
    "file",
    "code",
    "s",
    "straggler_model",
    "workers",
    "iterations",
    "iterations_planned",
    "p50_s",
    "p95_s",
    "oracle_p50_s",
    "overhead",
    "target_loss",
    "time_to_target_s",
    "iteration_to_target",
    "final_train_loss",
    "final_test_loss",
    "final_test_accuracy",
    "final_test_auc",
    "verdict",
    "status",
    "partial",
    "notes",
    "on_time",
    "partial_iterations",
    "late",
    "missed",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn raw(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn raw_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn fields(r: &Summary) -> Vec<String> {
    vec![
        r.run.clone(),
        r.file.clone(),
        r.code.clone(),
        raw_opt(r.s),
        r.straggler_model.clone(),
        raw_opt(r.workers),
        r.iterations.to_string(),
        raw_opt(r.iterations_planned),
        raw(r.p50_s),
        raw(r.p95_s),
        raw(r.oracle_p50_s),
        raw(r.overhead),
        r.target_loss.map_or_else(String::new, raw),
        r.time_to_target_s.map_or_else(String::new, raw),
        raw_opt(r.iteration_to_target),
        raw(r.final_train_loss),
        raw(r.final_test_loss),
        raw(r.final_test_accuracy),
        raw(r.final_test_auc),
        r.verdict.clone(),
        r.status.clone(),
        r.partial.to_string(),
        r.notes.join("; "),
        per_worker(&r.workers_counts, |c| c.on_time),
        per_worker(&r.workers_counts, |c| c.partial),
        per_worker(&r.workers_counts, |c| c.late),
        per_worker(&r.workers_counts, |c| c.missed),
    ]
}

/// The table as CSV (RFC 4180 quoting; empty field = no value; times in seconds).
pub fn csv(rows: &[Summary]) -> String {
    let mut out = CSV_HEAD.join(",");
    out.push('\n');
    for r in rows {
        let f: Vec<String> = fields(r).iter().map(|s| csv_field(s)).collect();
        out.push_str(&f.join(","));
        out.push('\n');
    }
    out
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `v` as a JSON number (`null` when not finite).
pub fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        "null".into()
    }
}

/// Per-worker counts as a JSON array (by rank).
fn json_list(counts: &[WorkerCounts], f: fn(&WorkerCounts) -> u64) -> String {
    format!(
        "[{}]",
        counts
            .iter()
            .map(|c| f(c).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn json_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// The table as JSON: `{"runs": [{...}], "errors": [{"file", "error"}]}`; no value = null.
pub fn json(rows: &[Summary], errors: &[(String, String)]) -> String {
    let mut out = String::from("{\n  \"runs\": [");
    for (i, r) in rows.iter().enumerate() {
        let notes: Vec<String> = r.notes.iter().map(|n| json_str(n)).collect();
        let members = [
            ("run", json_str(&r.run)),
            ("file", json_str(&r.file)),
            ("code", json_str(&r.code)),
            ("s", json_opt(r.s)),
            ("straggler_model", json_str(&r.straggler_model)),
            ("workers", json_opt(r.workers)),
            ("iterations", r.iterations.to_string()),
            ("iterations_planned", json_opt(r.iterations_planned)),
            ("p50_s", json_num(r.p50_s)),
            ("p95_s", json_num(r.p95_s)),
            ("oracle_p50_s", json_num(r.oracle_p50_s)),
            ("overhead", json_num(r.overhead)),
            ("target_loss", r.target_loss.map_or("null".into(), json_num)),
            (
                "time_to_target_s",
                r.time_to_target_s.map_or("null".into(), json_num),
            ),
            ("iteration_to_target", json_opt(r.iteration_to_target)),
            ("final_train_loss", json_num(r.final_train_loss)),
            ("final_test_loss", json_num(r.final_test_loss)),
            ("final_test_accuracy", json_num(r.final_test_accuracy)),
            ("final_test_auc", json_num(r.final_test_auc)),
            ("verdict", json_str(&r.verdict)),
            ("status", json_str(&r.status)),
            ("partial", r.partial.to_string()),
            ("notes", format!("[{}]", notes.join(", "))),
            ("on_time", json_list(&r.workers_counts, |c| c.on_time)),
            (
                "partial_iterations",
                json_list(&r.workers_counts, |c| c.partial),
            ),
            ("late", json_list(&r.workers_counts, |c| c.late)),
            ("missed", json_list(&r.workers_counts, |c| c.missed)),
        ];
        out.push_str(if i == 0 { "\n    {" } else { ",\n    {" });
        for (j, (k, v)) in members.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n      {}: {v}",
                if j == 0 { "" } else { "," },
                json_str(k)
            );
        }
        out.push_str("\n    }");
    }
    out.push_str(if rows.is_empty() { "],\n" } else { "\n  ],\n" });
    out.push_str("  \"errors\": [");
    for (i, (f, e)) in errors.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"file\": {}, \"error\": {}}}",
            if i == 0 { "" } else { ", " },
            json_str(f),
            json_str(e)
        );
    }
    out.push_str("]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            run: "a,b".into(),
            file: "x/\"a\"/run.h5".into(),
            code: "frc".into(),
            s: Some(1),
            straggler_model: "fixed:1,2:200".into(),
            workers: Some(6),
            iterations: 5,
            iterations_planned: Some(10),
            p50_s: 0.01,
            p95_s: 0.02,
            oracle_p50_s: f64::NAN,
            overhead: f64::NAN,
            target_loss: Some(0.5),
            time_to_target_s: None,
            iteration_to_target: None,
            final_train_loss: 0.4,
            final_test_loss: f64::NAN,
            final_test_accuracy: 0.9,
            final_test_auc: f64::NAN,
            verdict: "-".into(),
            status: "running".into(),
            partial: true,
            notes: vec!["no /validation".into()],
            workers_counts: Vec::new(),
            decode_tree: None,
            messages_per_iteration: f64::NAN,
            switches: Vec::new(),
        }
    }

    #[test]
    fn an_adapting_run_lists_its_switches() {
        let mut r = sample();
        assert_eq!(r.switches_text(), None);
        r.switches = vec![(19, 0, 1), (44, 1, 0)];
        assert_eq!(
            r.switches_text().as_deref(),
            Some(
                "--adapt switched s 2 time(s): s 0→1 after iteration 19, s 1→0 after iteration 44"
            )
        );
        assert!(text(&[r]).contains("note: a,b: --adapt switched s 2 time(s)"));
    }

    #[test]
    fn percentile_is_nearest_rank_over_finite_values() {
        assert_eq!(percentile(&[3.0, f64::NAN, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), 4.0);
        assert!(percentile(&[f64::NAN], 0.5).is_nan());
    }

    #[test]
    fn csv_quotes_and_json_escapes() {
        let rows = [sample()];
        let c = csv(&rows);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("\"a,b\",\"x/\"\"a\"\"/run.h5\",frc,1,\"fixed:1,2:200\""));
        let j = json(&rows, &[("f\"".into(), "bad\nfile".into())]);
        assert!(j.contains("\"overhead\": null"));
        assert!(j.contains("\"file\": \"x/\\\"a\\\"/run.h5\""));
        assert!(j.contains("\"error\": \"bad\\nfile\""));
        let t = text(&rows);
        assert!(t.contains("partial (status running)"));
        assert!(t.contains("5/10"));
        assert!(t.contains("not reached"));
        assert!(t.contains("note: a,b: no /validation"));
        assert!(!t.contains("tree decode"));
    }

    #[test]
    fn a_tree_run_says_rank_0_heard_from_the_leaders() {
        let mut r = sample();
        r.decode_tree = Some(3);
        r.messages_per_iteration = 1.5;
        assert_eq!(
            r.tree_text().unwrap(),
            "tree decode (groups of 3): rank 0 heard from the leaders [1, 4] only, but for the \
             members of a group whose leader fell silent (after it did); a member is on time \
             when its leader's combination included it (the leader's member mask) or its own \
             result came on time, missed otherwise; 1.50 leader results an iteration (of 2)"
        );
        assert!(text(&[r]).contains("note: a,b: tree decode (groups of 3)"));
    }
}
