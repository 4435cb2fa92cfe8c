//! `gradcode gemm`: a network's forward and backward GEMMs timed against OpenBLAS `dgemm` on the
//! same shapes, in one process ([`crate::model::gemm`] says what is timed and how). Only the
//! dataset's shape is read (features, image shape, task): the rows are synthetic. Prints a table
//! (or `--csv`) with one row per layer — its GEMMs, Mflop, the model's and `dgemm`'s median
//! milliseconds and the fraction `dgemm`/model — and a `pass` row: the whole `gradient_into`
//! against the layers' `dgemm` in total, the GEMM throughput of the pass as a fraction of
//! `dgemm`'s; then a `kfac_factors` row, the milliseconds of K-FAC's factor sums on the same
//! rows. `make bench-nn` runs it beside every training run.

use crate::cli::GemmArgs;
use crate::config::{conv_filters, hidden_layers, invalid};
use crate::error::Result;
use crate::io::dataset;
use crate::model::{self, gemm::GemmReport, ModelKind};

pub fn run(args: &GemmArgs) -> Result<()> {
    if !matches!(args.model, ModelKind::Mlp | ModelKind::Cnn) {
        return Err(invalid(
            "model",
            args.model.name(),
            "gemm times the networks' GEMMs: use mlp or cnn (the GLMs multiply no matrices)",
        )
        .into());
    }
    if args.rows == 0 {
        return Err(invalid("rows", 0, "must be at least 1").into());
    }
    if args.repeats == 0 {
        return Err(invalid("repeats", 0, "must be at least 1").into());
    }
    let hidden = hidden_layers(args.model, args.hidden.as_ref())?;
    let conv = conv_filters(args.model, args.conv_filters.as_ref())?;
    let info = dataset::inspect(&args.data)?;
    let m = model::build(
        args.model,
        &hidden,
        &conv,
        info.n_features,
        info.image,
        info.task,
    )?;
    let report = model::gemm::measure(m.as_ref(), info.task, args.rows, args.repeats, args.seed);
    print!("{}", render(&report, args.csv));
    Ok(())
}

/// The report as CSV or an aligned table.
fn render(r: &GemmReport, csv: bool) -> String {
    let mut rows: Vec<[String; 6]> = r
        .layers
        .iter()
        .map(|l| {
            [
                l.layer.name.clone(),
                l.layer.gemms().len().to_string(),
                format!("{:.3}", l.layer.flops() as f64 / 1e6),
                format!("{:.4}", l.model_s * 1e3),
                format!("{:.4}", l.dgemm_s * 1e3),
                format!("{:.3}", l.fraction()),
            ]
        })
        .collect();
    rows.push([
        "pass".into(),
        rows.iter()
            .filter_map(|r| r[1].parse::<usize>().ok())
            .sum::<usize>()
            .to_string(),
        format!("{:.3}", r.flops() as f64 / 1e6),
        format!("{:.4}", r.pass_s * 1e3),
        format!("{:.4}", r.dgemm_s() * 1e3),
        format!("{:.3}", r.fraction()),
    ]);
    rows.push([
        "kfac_factors".into(),
        String::new(),
        String::new(),
        format!("{:.4}", r.factors_s * 1e3),
        String::new(),
        String::new(),
    ]);
    let head = [
        "layer", "gemms", "mflop", "model_ms", "dgemm_ms", "fraction",
    ];
    if csv {
        let mut out = head.join(",") + "\n";
        for row in &rows {
            out += &(row.join(",") + "\n");
        }
        return out;
    }
    let mut out = format!(
        "{} rows, median of {} runs; fraction = dgemm time / the model's on the same flops\n",
        r.rows, r.repeats
    );
    let width: Vec<usize> = (0..6)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([head[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let mut l = format!("{:<w$}", cells[0], w = width[0]);
        for (c, cell) in cells.iter().enumerate().skip(1) {
            l += &format!("  {:>w$}", cell, w = width[c]);
        }
        l + "\n"
    };
    out += &line(&head);
    for row in &rows {
        out += &line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gemm::{LayerGemms, LayerTiming};
    use crate::model::ParamBlock;

    fn report() -> GemmReport {
        let layer = |name: &str, inputs, units, input_grad| LayerGemms {
            name: name.into(),
            block: ParamBlock {
                offset: 0,
                units,
                inputs,
            },
            rows: vec![10],
            input_grad,
        };
        GemmReport {
            rows: 10,
            repeats: 3,
            layers: vec![
                LayerTiming {
                    layer: layer("dense 100-50", 100, 50, false),
                    model_s: 2e-3,
                    dgemm_s: 1e-3,
                },
                LayerTiming {
                    layer: layer("dense 50-10", 50, 10, true),
                    model_s: 1e-3,
                    dgemm_s: 1e-3,
                },
            ],
            pass_s: 4e-3,
            factors_s: 5e-3,
        }
    }

    /// Per layer and the pass: flops, times and dgemm/model fractions as computed by hand.
    #[test]
    fn csv_rows_per_layer_and_pass() {
        let out = render(&report(), true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "layer,gemms,mflop,model_ms,dgemm_ms,fraction");
        assert_eq!(lines[1], "dense 100-50,2,0.200,2.0000,1.0000,0.500");
        assert_eq!(lines[2], "dense 50-10,3,0.030,1.0000,1.0000,1.000");
        assert_eq!(lines[3], "pass,5,0.230,4.0000,2.0000,0.500");
        assert_eq!(lines[4], "kfac_factors,,,5.0000,,");
        assert_eq!(lines.len(), 5);
        let table = render(&report(), false);
        assert!(table.starts_with("10 rows, median of 3 runs"));
        assert!(table.lines().nth(4).is_some_and(|l| l.starts_with("pass ")));
    }
}
