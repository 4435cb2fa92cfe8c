//! `gradcode plan` as a user runs it: a jobs file of profiled jobs in, a table of the plan
//! against an equal split and FIFO out, and per job a Slurm script and a `train --config`;
//! bad input is one line and exit 2.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{
    assert_one_line_error, gradcode, output_text, text, uncoded_batch_profile, uncoded_profile,
    workdir,
};
use gradcode::io::results;

/// An uncoded profiling run (n = 3, exp:20, 20 iterations) on synthetic data, made once.
fn profile() -> PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| uncoded_profile(4, 20, 5)).clone()
}

fn jobs_file(name: &str, body: &str) -> PathBuf {
    let p = workdir().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// `gradcode plan JOBS --nodes 2 --cores-per-node 5 EXTRA --out OUT`, which must succeed; its
/// stdout.
fn plan_2x5(jobs: &Path, out: &Path, extra: &[&str]) -> String {
    let mut a = vec!["plan", jobs.to_str().unwrap(), "--nodes", "2"];
    a.extend(["--cores-per-node", "5", "--out", out.to_str().unwrap()]);
    a.extend_from_slice(extra);
    let o = gradcode(&a);
    assert!(o.status.success(), "{}", output_text(&o));
    text(&o.stdout)
}

/// The (mean, max) completion of a schedule row of the printed table.
fn row(out: &str, name: &str) -> (f64, f64) {
    let l = out
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name}: {out}"));
    let f: Vec<f64> = l[name.len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[1])
}

#[test]
fn three_jobs_are_planned_compared_and_written_as_job_scripts() {
    let prof = profile();
    let p = prof.to_str().unwrap();
    let jobs = jobs_file(
        "jobs.toml",
        &format!(
            "[[job]]\nname = \"short\"\nprofile = \"{p}\"\niterations = 10\n\n\
             [[job]]\nname = \"long\"\nprofile = \"{p}\"\niterations = 80\n\n\
             [[job]]\nname = \"fixed\"\nprofile = \"{p}\"\niterations = 20\nranks = 3\n"
        ),
    );
    let out_dir = workdir().join("plan");
    let out = plan_2x5(&jobs, &out_dir, &["--replan-every", "1"]);
    let (plan, equal, fifo) = (
        row(&out, "plan "),
        row(&out, "equal split"),
        row(&out, "FIFO"),
    );
    // The simulated schedules are deterministic (seeded replay): the plan's mean completion is
    // no worse than an equal split of the same ranks, and FIFO's max is the sum of the jobs
    // run one after another, so at least its mean.
    assert!(plan.0 <= equal.0 + 1e-9, "{out}");
    assert!(fifo.1 >= fifo.0 && plan.1 >= plan.0, "{out}");
    let json = std::fs::read_to_string(out_dir.join("plan.json")).unwrap();
    for key in [
        "\"plan\"",
        "\"equal-split\"",
        "\"fifo\"",
        "\"replan_every\": 1",
    ] {
        assert!(json.contains(key), "{key}: {json}");
    }
    let mut total = 0;
    for name in ["short", "long", "fixed"] {
        let cfg: toml::Table = std::fs::read_to_string(out_dir.join(format!("{name}.toml")))
            .unwrap()
            .parse()
            .unwrap();
        let workers = cfg["workers"].as_integer().unwrap();
        let script = std::fs::read_to_string(out_dir.join(format!("{name}.sbatch"))).unwrap();
        assert!(
            script.contains(&format!("#SBATCH --job-name={name}\n")),
            "{script}"
        );
        assert!(
            script.contains(&format!("#SBATCH --ntasks={}\n", workers + 1)),
            "{name}: {workers} workers\n{script}"
        );
        assert!(script.contains(&format!("{name}.toml}}")), "{script}");
        total += workers + 1;
        if name == "fixed" {
            assert_eq!(workers, 2);
        }
        if name == "long" {
            assert_eq!(cfg["iterations"].as_integer(), Some(80));
        }
        assert!(Path::new(cfg["data"].as_str().unwrap()).is_absolute());
    }
    assert!(total <= 10, "{total} ranks planned on 10");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let prof = profile();
    let p = prof.to_str().unwrap();
    let missing = jobs_file(
        "missing.toml",
        &format!("[[job]]\nprofile = \"{p}\"\ndata = \"/nonexistent/data.h5\"\n"),
    );
    let too_many = jobs_file(
        "too_many.toml",
        &format!("[[job]]\nprofile = \"{p}\"\nranks = 3\n[[job]]\nprofile = \"{p}\"\nranks = 3\n"),
    );
    let too_big = jobs_file(
        "too_big.toml",
        &format!("[[job]]\nprofile = \"{p}\"\nranks = 9\n"),
    );
    let ok = jobs_file("ok.toml", &format!("[[job]]\nprofile = \"{p}\"\n"));
    let out = workdir().join("bad-plan");
    let out = out.to_str().unwrap();
    for (jobs, extra, expect) in [
        (&ok, vec!["--objective", "median"], "median"),
        (&missing, vec![], "/nonexistent/data.h5 does not exist"),
        (&too_many, vec![], "more than the allocation's 4"),
        (&too_big, vec![], "ranks = 9: more than the allocation's 4"),
        (&ok, vec!["--nodes", "0"], "nodes"),
    ] {
        let mut a = vec!["plan", jobs.to_str().unwrap(), "--out", out];
        if !extra.contains(&"--nodes") {
            a.extend(["--nodes", "1"]);
        }
        a.extend(["--cores-per-node", "4"]);
        a.extend(extra.iter().copied());
        let o = gradcode(&a);
        let line = assert_one_line_error(&o);
        assert!(line.contains(expect), "{a:?}: {line}");
        assert_eq!(o.status.code(), Some(2), "{a:?}: {line}");
    }
    assert!(!Path::new(out).exists());
}

/// A minibatch job (an uncoded `--batch 16` profile with the gradient noise scale) gets its
/// batch chosen with its worker count, Pollux-style: the TOML's batch is among B₀ × {1/4 .. 4}
/// and its iterations are the statistical efficiency's prediction for that batch over the
/// chosen workers; the same profile with fixed `iterations` keeps its batch and iterations.
#[test]
fn a_minibatch_job_gets_its_batch_chosen_with_its_ranks() {
    let prof = uncoded_batch_profile(5, 16, 40, 5); // before anything else takes serial()
    let rows = results::read_rows(&prof, None).unwrap();
    let phi = gradcode::sim::efficiency::noise_scale(
        rows.column(results::Metric::GnsGradSq).as_slice().unwrap(),
        rows.column(results::Metric::GnsTrace).as_slice().unwrap(),
    )
    .expect("the minibatch profile records the noise scale");
    let p = prof.to_str().unwrap();
    let jobs = jobs_file(
        "minibatch.toml",
        &format!(
            "[[job]]\nname = \"mini\"\nprofile = \"{p}\"\n\n\
             [[job]]\nname = \"fixed-iters\"\nprofile = \"{p}\"\niterations = 30\n"
        ),
    );
    let out_dir = workdir().join("plan-minibatch");
    let out = plan_2x5(&jobs, &out_dir, &[]);
    assert!(
        out.contains(&format!(
            "job mini: gradient noise scale B_noise ≈ {phi:.0} rows (batch 16 × 4 partitions)"
        )),
        "{out}"
    );
    assert!(
        !out.contains("job fixed-iters: gradient noise scale"),
        "{out}"
    );
    let config = |name: &str| -> toml::Table {
        std::fs::read_to_string(out_dir.join(format!("{name}.toml")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let mini = config("mini");
    let (b, workers) = (
        mini["batch"].as_integer().unwrap(),
        mini["workers"].as_integer().unwrap(),
    );
    assert!([4, 8, 16, 32, 64].contains(&b), "{mini}");
    // Every candidate code of plan has one partition per worker: k·B rows an iteration.
    let predicted = gradcode::sim::efficiency::iterations_at(phi, 40, 64.0, (b * workers) as f64);
    assert_eq!(
        mini["iterations"].as_integer().unwrap() as u64,
        predicted,
        "{mini}"
    );
    let fixed = config("fixed-iters");
    assert_eq!(fixed["batch"].as_integer(), Some(16), "{fixed}");
    assert_eq!(fixed["iterations"].as_integer(), Some(30), "{fixed}");
    let json = std::fs::read_to_string(out_dir.join("plan.json")).unwrap();
    assert!(
        json.contains(&format!("\"batch\": {b}, \"iterations\": {predicted},")),
        "{json}"
    );
}
