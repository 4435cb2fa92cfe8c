//! `gradcode data convert | synth | inspect | validate`.
use std::path::Path;

use crate::cli::{
    ConvertArgs, DataCommand, InputFormat, SynthArgs, SynthKind, TaskArg, ValidateArgs,
};
use crate::data::synth::{self, SynthSpec};
use crate::data::{Dataset, Task};
use crate::error::Result;
use crate::io::check_overwrite;
use crate::io::convert::{self, ConvertOptions, TaskChoice};
use crate::io::dataset::{self, DatasetMeta, LabelSummary, Split};
use crate::io::matrix::MatrixSource;
use crate::io::validate;

/// Run a `data` subcommand.
pub fn run(cmd: &DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Convert(a) => run_convert(a),
        DataCommand::Synth(a) => run_synth(a),
        DataCommand::Inspect(a) => run_inspect(&a.path),
        DataCommand::Validate(a) => run_validate(a),
    }
}

fn describe(d: &Dataset) -> String {
    let kind = if d.x.is_sparse() {
        format!("CSR, {} non-zeros", d.x.nnz())
    } else {
        "dense".to_string()
    };
    format!("{} x {} ({kind})", d.n_rows(), d.n_features())
}

fn task_text(t: Task) -> String {
    match t {
        Task::Multiclass { classes } => format!("multiclass ({classes} classes)"),
        other => other.name().to_string(),
    }
}

fn report_written(out: &Path, train: &Dataset, test: Option<&Dataset>) {
    println!("wrote {}", out.display());
    println!("  train: {}", describe(train));
    if let Some(t) = test {
        println!("  test:  {}", describe(t));
    }
    println!("  task:  {}", task_text(train.task));
}

fn run_convert(a: &ConvertArgs) -> Result<()> {
    // Refuse early: before a long parse, and without touching the existing file.
    check_overwrite(&a.out, a.force)?;
    let opts = ConvertOptions {
        format: match a.format {
            InputFormat::Libsvm => convert::InputFormat::Libsvm,
            InputFormat::Idx => convert::InputFormat::Idx,
            InputFormat::Csv => convert::InputFormat::Csv,
        },
        input: a.input.clone(),
        labels: a.labels.clone(),
        test_input: a.test_input.clone(),
        test_labels: a.test_labels.clone(),
        features: a.features,
        task: a.task.map(|t| match t {
            TaskArg::Binary => TaskChoice::Binary,
            TaskArg::Regression => TaskChoice::Regression,
            TaskArg::Multiclass => TaskChoice::Multiclass,
        }),
        label_column: a.label_column.clone(),
        scale: a.scale,
        license: a.license.clone(),
    };
    let c = convert::convert(&opts)?;
    for w in &c.warnings {
        log::warn!("{w}");
    }
    dataset::write(&a.out, &c.train, c.test.as_ref(), &c.meta, a.force)?;
    report_written(&a.out, &c.train, c.test.as_ref());
    Ok(())
}

fn run_synth(a: &SynthArgs) -> Result<()> {
    check_overwrite(&a.out, a.force)?;
    let spec = SynthSpec {
        kind: match a.kind {
            SynthKind::Logistic => synth::SynthKind::Logistic,
            SynthKind::Linear => synth::SynthKind::Linear,
        },
        rows: a.rows,
        features: a.features,
        sparsity: a.sparsity.unwrap_or(1.0),
        test_rows: a.test_rows,
        seed: a.seed,
        zipf: a.zipf,
    };
    let (train, test) = synth::generate(&spec)?;
    let kind = match spec.kind {
        synth::SynthKind::Logistic => "logistic",
        synth::SynthKind::Linear => "linear",
    };
    let meta = DatasetMeta {
        source: format!(
            "gradcode synth: kind={kind} rows={} features={} sparsity={} test_rows={} seed={}{}",
            spec.rows,
            spec.features,
            spec.sparsity,
            spec.test_rows,
            spec.seed,
            spec.zipf.map_or(String::new(), |a| format!(" zipf={a}"))
        ),
        sha256: String::new(),
        license: "none (synthetic data)".into(),
        image: None,
    };
    dataset::write(&a.out, &train, test.as_ref(), &meta, a.force)?;
    report_written(&a.out, &train, test.as_ref());
    Ok(())
}

/// `data inspect`: the validator child first (libhdf5 is not safe on crafted files, so a file
/// that crashes or hangs it is refused before this process opens it), then the description, then
/// the validator's verdict: a file that training would refuse is described and then reported as
/// an error.
fn run_inspect(path: &Path) -> Result<()> {
    let verdict = validate::validate_isolated(path)?;
    if matches!(verdict.outcome, validate::Outcome::Refused(_)) {
        return Ok(verdict.into_result(path)?);
    }
    let info = dataset::inspect(path)?;
    println!("{}", path.display());
    println!("  task: {}", task_text(info.task));
    if let Some(image) = info.image {
        println!("  images: {image} (channels × height × width)");
    }
    for split in [Split::Train, Split::Test] {
        let Some(shape) = dataset::split_shape(path, split)? else {
            continue;
        };
        let cells = shape.n_rows as f64 * shape.n_features as f64;
        let kind = if shape.sparse {
            format!(
                "CSR, nnz {}, density {:.4}%",
                shape.nnz,
                100.0 * shape.nnz as f64 / cells
            )
        } else {
            "dense".to_string()
        };
        println!(
            "  {}: {} x {} ({kind})",
            split.name(),
            shape.n_rows,
            shape.n_features
        );
        match dataset::label_summary(path, split)? {
            LabelSummary::Counts(c) => {
                let parts: Vec<String> = c
                    .iter()
                    .map(|(l, n)| {
                        format!(
                            "{}: {n} ({:.1}%)",
                            l,
                            100.0 * *n as f64 / shape.n_rows as f64
                        )
                    })
                    .collect();
                println!("    labels {}", parts.join(", "));
            }
            LabelSummary::Range { min, max, mean } => {
                println!("    targets min {min}, max {max}, mean {mean:.6}");
            }
        }
    }
    println!("  attributes:");
    for (k, v) in &info.attrs {
        println!("    {k} = {v}");
    }
    let valid = verdict.outcome == validate::Outcome::Valid;
    println!(
        "  validation: {}",
        if valid {
            "valid (the checks `gradcode train` applies)"
        } else {
            "INVALID"
        }
    );
    Ok(verdict.into_result(path)?)
}

/// The child side of [`validate::validate_matrix_isolated`]: a user's matrix, not a dataset.
fn validate_matrix_child(src: &MatrixSource) -> Result<()> {
    let (info, full) = validate::check_matrix(src)?;
    println!(
        "{}: valid matrix {} ({} x {}, {}, {})",
        src.file.display(),
        info.object,
        info.rows,
        info.cols,
        if info.sparse { "CSR" } else { "dense" },
        if full {
            "every value read"
        } else {
            "layout only: file over the full-read cap"
        }
    );
    Ok(())
}

/// `data validate`: the checks in a resource-limited child (`--child`: the checks themselves).
fn run_validate(a: &ValidateArgs) -> Result<()> {
    if a.child {
        if let Some(object) = &a.matrix {
            return validate_matrix_child(&MatrixSource {
                file: a.path.clone(),
                object: (!object.is_empty()).then(|| object.clone()),
            });
        }
        let (info, full) = validate::check(&a.path)?;
        println!(
            "{}: valid ({} x {}, {}{}, {})",
            a.path.display(),
            info.n_rows,
            info.n_features,
            if info.sparse { "CSR" } else { "dense" },
            info.test_rows
                .map_or(String::new(), |t| format!(", test {t} rows")),
            if full {
                "every value read"
            } else {
                "layout only: file over the full-read cap"
            }
        );
        return Ok(());
    }
    let report = validate::validate_isolated(&a.path)?;
    if a.stats {
        println!("{}", report.stats_line());
    }
    print!("{}", report.stdout);
    report.into_result(&a.path)?;
    Ok(())
}
