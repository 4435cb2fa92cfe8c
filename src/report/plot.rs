//! `gradcode report --plot FILE.png`: a fixed-size 2 × 2 figure drawn with `plotters` on its
//! bitmap backend. Text uses DejaVu Sans embedded in the binary (the `dejavu` crate, registered
//! with plotters' `ab_glyph` font backend), so no system font is needed at run time.
//!
//! Panels: training loss against wall-clock time (`elapsed_s`) and against iterations; time per
//! iteration (`wall_s`, solid, light tint) with the oracle (`oracle_s`, dashed, full colour,
//! drawn on top so it stays visible where the two coincide); and a worker × iteration heat map
//! of `/timing/arrival_s` of the first run that recorded any arrival (named in the panel title),
//! missed arrivals in red. A run that did not finish (status `running`) is labelled `(partial)`.
//! A `train --adapt` run's switches of s (`/adapt`) are vertical lines, labelled `s a→b`, at the
//! first iteration run with the new s, on the two panels with an iteration axis.
//!
//! A `gradcode admm` run (pdADMM) adds two panels (the figure is then 3 × 2 panels): the primal
//! residual √Σ‖p_{l+1} − q_l‖² (solid) and the dual residual (dashed) on a log10 axis, and the
//! train (solid) and test (dashed) accuracy of the assembled network at its evaluations.
//!
//! Runs are told apart by more than colour ([`run_style`]): each has its own dash pattern on
//! the loss curves and its own marker on every line, placed at points shifted from run to run.
//! An MPI run and its serial reference have the same loss curve, and the run drawn second would
//! otherwise hide the first. The time panel keeps solid (iteration time) and dashed (oracle) for
//! every run, so there the marker and the colour name the run.
//!
//! Not drawn: log scales, error bands over seeds, more than one heat map.

use std::path::Path;

use plotters::coord::Shift;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

use super::load::LoadedRun;
use crate::io::results::Metric;

/// Width of the figure in pixels.
pub const WIDTH: u32 = 1600;
/// Height of the figure in pixels.
pub const HEIGHT: u32 = 1000;

/// Colour of a missed arrival (NaN) in the heat map: not in the viridis scale.
const MISSED: RGBColor = RGBColor(220, 30, 30);

/// Line colours, one per run (tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type Res<T = ()> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn register_font() -> Res {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded DejaVu Sans font was rejected".to_string())
}

/// A dash pattern in pixels: lengths of dash, gap, dash, gap, …; empty for a solid line.
type Dash = &'static [f64];

/// The loss curves' dash pattern per run (cycled): solid, long dashes, dots, dash-dot.
const DASHES: [Dash; 4] = [&[], &[14.0, 6.0], &[3.0, 4.0], &[12.0, 4.0, 3.0, 4.0]];

/// The oracle's dash pattern in the time panel (every run).
const ORACLE_DASH: Dash = &[7.0, 5.0];

/// Markers placed on each line, one shape per run (cycled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
}

const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
];

/// Markers per line (about; fewer on lines with fewer points).
const MARKS_PER_LINE: usize = 10;

/// How run `i` of a figure is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RunStyle {
    color: RGBColor,
    /// Dash pattern of its loss curves.
    dash: Dash,
    marker: Marker,
}

/// The style of the `i`-th run of a figure: colour, dash pattern and marker each cycle, so the
/// first four runs differ in all three and identical curves stay distinguishable.
fn run_style(i: usize) -> RunStyle {
    RunStyle {
        color: PALETTE[i % PALETTE.len()],
        dash: DASHES[i % DASHES.len()],
        marker: MARKERS[i % MARKERS.len()],
    }
}

/// One line of a panel.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    dash: Dash,
    marker: Marker,
    /// Which run of how many (shifts the markers so that coinciding lines show both).
    run: (usize, usize),
}

/// A vertical marker at `x` (an iteration) with a short label at the top: a `train --adapt`
/// switch of s.
struct VLine {
    x: f64,
    label: String,
    color: RGBColor,
}

/// The switches of every run as vertical markers, at the first iteration run with the new s.
fn switch_lines(runs: &[LoadedRun]) -> Vec<VLine> {
    runs.iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let color = run_style(i).color;
            r.switches.iter().map(move |w| VLine {
                x: (w.iteration + 1) as f64,
                label: format!("s {}→{}", w.old_s, w.new_s),
                color,
            })
        })
        .collect()
}

/// Indices of the marked points of a line of `len` points, drawn as run `run` of `runs`: about
/// [`MARKS_PER_LINE`] evenly spaced, shifted by a fraction `run / runs` of the spacing.
fn mark_indices(len: usize, run: usize, runs: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let step = len.div_ceil(MARKS_PER_LINE).max(1);
    let shift = step * (run % runs.max(1)) / runs.max(1);
    (shift..len).step_by(step).collect()
}

/// A marker (and, for a legend, a line sample through it) as a plotters element: the position
/// is in the chart's coordinates, the shape in pixels.
struct Mark<C> {
    at: C,
    marker: Marker,
    color: RGBColor,
    /// A 24-pixel line sample in this dash pattern, centred on the marker (legend entries).
    sample: Option<Dash>,
}

impl<'a, C> PointCollection<'a, C> for &'a Mark<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Mark<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = pos.next() else {
            return Ok(());
        };
        let line = self.color.stroke_width(2);
        if let Some(dash) = self.sample {
            let ends = [
                (f64::from(x - 12), f64::from(y)),
                (f64::from(x + 12), f64::from(y)),
            ];
            for pl in dashes(&ends, |p| (p.0 as i32, p.1 as i32), dash) {
                let px: Vec<BackendCoord> = pl.iter().map(|p| (p.0 as i32, p.1 as i32)).collect();
                backend.draw_path(px, &line)?;
            }
        }
        let r = 4;
        match self.marker {
            Marker::Circle => backend.draw_circle((x, y), r as u32, &self.color, true),
            Marker::Square => backend.draw_rect((x - r, y - r), (x + r, y + r), &self.color, true),
            Marker::Triangle => backend.fill_polygon(
                [(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)],
                &self.color,
            ),
            Marker::Cross => {
                backend.draw_line((x - r, y - r), (x + r, y + r), &line)?;
                backend.draw_line((x - r, y + r), (x + r, y - r), &line)
            }
        }
    }
}

/// The finite (x, y) pairs.
fn points(x: &[f64], y: &[f64], scale: f64) -> Vec<(f64, f64)> {
    x.iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (*a, *b * scale))
        .collect()
}

/// x values: the `iteration` column, or the row index where it is missing.
fn iterations(run: &LoadedRun) -> Vec<f64> {
    let it = run.column(Metric::Iteration);
    (0..run.iterations())
        .map(|i| {
            it.get(i)
                .copied()
                .filter(|v| v.is_finite())
                .unwrap_or(i as f64)
        })
        .collect()
}

/// Split the polyline `pts` into the dashes of `pattern` (pixels of dash, gap, dash, gap, …,
/// repeated; empty: one solid polyline), in data coordinates (`to_px` maps a point to pixels; the
/// axes are linear, so a fraction of a segment in pixels is the same fraction in data).
fn dashes(
    pts: &[(f64, f64)],
    to_px: impl Fn(&(f64, f64)) -> (i32, i32),
    pattern: Dash,
) -> Vec<Vec<(f64, f64)>> {
    if pattern.is_empty() || pattern.iter().any(|l| *l <= 0.0) {
        return vec![pts.to_vec()];
    }
    let mut out = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let mut k = 0;
    let (mut drawing, mut left) = (true, pattern[0]);
    for w in pts.windows(2) {
        let (p, q) = (w[0], w[1]);
        let (a, b) = (to_px(&p), to_px(&q));
        let len = f64::from(b.0 - a.0).hypot(f64::from(b.1 - a.1));
        let lerp = |t: f64| (p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t);
        if len <= 0.0 {
            continue;
        }
        let mut t = 0.0;
        while t < len {
            let step = left.min(len - t);
            if drawing {
                if cur.is_empty() {
                    cur.push(lerp(t / len));
                }
                cur.push(lerp((t + step) / len));
            }
            t += step;
            left -= step;
            if left <= 1e-9 {
                if drawing && cur.len() >= 2 {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
                drawing = !drawing;
                k = (k + 1) % pattern.len();
                left = pattern[k];
            }
        }
    }
    if cur.len() >= 2 {
        out.push(cur);
    }
    out
}

/// Tick label with as many decimals as a tenth of `span` needs (400 for 0..1400, 0.05 for
/// 0.35..0.7).
fn tick(v: f64, span: f64) -> String {
    let d = if span > 0.0 && span.is_finite() {
        (-(span / 10.0).log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        2
    };
    format!("{v:.d$}")
}

/// A padded range covering `v` (never empty).
fn range(v: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite()) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let d = (lo.abs() * 0.05).max(1e-9);
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

fn empty_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, title: &str) -> Res {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        format!("{title}: no data in the file(s)"),
        (w as i32 / 2 - 160, h as i32 / 2),
        ("sans-serif", 18).into_font(),
    ))
    .map_err(err)
}

fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    lines: &[Line],
    vlines: &[VLine],
) -> Res {
    if lines.iter().all(|l| l.points.is_empty()) {
        return empty_panel(area, title);
    }
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let (x0, x1) = range(all().map(|p| p.0), 0.0);
    let (y0, y1) = range(all().map(|p| p.1), 0.05);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let fmt_x = |x: &f64| tick(*x, x1 - x0);
    let fmt_y = |y: &f64| tick(*y, y1 - y0);
    chart
        .configure_mesh()
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .x_desc(xlabel)
        .y_desc(ylabel)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    for v in vlines.iter().filter(|v| v.x >= x0 && v.x <= x1) {
        let style = v.color.mix(0.8).stroke_width(1);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(v.x, y0), (v.x, y1)],
                style,
            )))
            .map_err(err)?;
        let font = ("sans-serif", 14).into_font().color(&v.color);
        chart
            .draw_series(std::iter::once(Text::new(v.label.clone(), (v.x, y1), font)))
            .map_err(err)?;
    }
    for l in lines.iter().filter(|l| !l.points.is_empty()) {
        let color = l.color;
        // Thick polylines in plotters get miter spikes at sharp turns (jagged timing series), so
        // every segment is drawn on its own. plotters' DashedLineSeries overshoots short
        // segments: dashes are cut in pixel space instead.
        let style = color.stroke_width(2);
        let coord = chart.as_coord_spec().clone();
        let polylines = dashes(&l.points, move |p| coord.translate(p), l.dash);
        let segments: Vec<[(f64, f64); 2]> = polylines
            .iter()
            .flat_map(|pl| pl.windows(2).map(|w| [w[0], w[1]]))
            .collect();
        chart
            .draw_series(
                segments
                    .into_iter()
                    .map(move |seg| PathElement::new(seg.to_vec(), style)),
            )
            .map_err(err)?;
        let (marker, dash) = (l.marker, l.dash);
        let marks = mark_indices(l.points.len(), l.run.0, l.run.1);
        let anno = chart
            .draw_series(marks.into_iter().map(|i| Mark {
                at: l.points[i],
                marker,
                color,
                sample: None,
            }))
            .map_err(err)?;
        anno.label(l.label.as_str()).legend(move |(x, y)| Mark {
            at: (x + 12, y),
            marker,
            color,
            sample: Some(dash),
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// The arrival matrix of `run` when it holds at least one finite arrival.
fn arrivals(run: &LoadedRun) -> Option<&ndarray::Array2<f64>> {
    run.rows
        .as_ref()
        .and_then(|r| r.per_worker.first())
        .filter(|m| m.iter().any(|v| v.is_finite()))
}

/// The run label: its name, with `(partial)` when it did not finish.
fn label(run: &LoadedRun) -> String {
    if run.is_partial() {
        format!("{} (partial)", run.name)
    } else {
        run.name.clone()
    }
}

/// A lighter tint of `c` (mixed `t` of the way to white).
fn tint(c: RGBColor, t: f64) -> RGBColor {
    let mix = |v: u8| (f64::from(v) + (255.0 - f64::from(v)) * t).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn heat_map<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, run: &LoadedRun) -> Res {
    let title = format!(
        "arrival at rank 0, {} (ms; red = missed: late or never)",
        label(run)
    );
    let Some(m) = arrivals(run) else {
        return empty_panel(area, "arrival heat map");
    };
    let (iters, n) = m.dim();
    if iters == 0 || n == 0 {
        return empty_panel(area, "arrival heat map");
    }
    let ms: Vec<f64> = m
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v * 1e3)
        .collect();
    let lo = 0.0;
    let hi = ms.iter().copied().fold(0.0_f64, f64::max).max(1e-6);
    let (w, _) = area.dim_in_pixel();
    let (left, right) = area.split_horizontally(w.saturating_sub(120));
    let mut chart = ChartBuilder::on(&left)
        .caption(&title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(0.0..iters as f64, 0.5..n as f64 + 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("worker (MPI rank)")
        .y_labels(n.min(16))
        .y_label_formatter(&|y| format!("{:.0}", y))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(err)?;
    let cells = (0..iters).flat_map(|i| (0..n).map(move |j| (i, j)));
    chart
        .draw_series(cells.map(|(i, j)| {
            let v = m[[i, j]];
            let color = if v.is_finite() {
                ViridisRGB.get_color_normalized(v * 1e3, lo, hi)
            } else {
                MISSED
            };
            // Rank j + 1 on row j + 1.
            let y = j as f64 + 1.0;
            Rectangle::new(
                [(i as f64, y - 0.5), (i as f64 + 1.0, y + 0.5)],
                color.filled(),
            )
        }))
        .map_err(err)?;
    // Colour bar.
    let mut bar = ChartBuilder::on(&right)
        .margin_top(46)
        .margin_bottom(60)
        .margin_right(10)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..1.0, lo..hi)
        .map_err(err)?;
    let fmt_bar = |y: &f64| tick(*y, hi - lo);
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_label_formatter(&fmt_bar)
        .y_desc("ms")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let steps = 100;
    bar.draw_series((0..steps).map(|k| {
        let a = lo + (hi - lo) * k as f64 / steps as f64;
        let b = lo + (hi - lo) * (k + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, a), (1.0, b)],
            ViridisRGB.get_color_normalized(a, lo, hi).filled(),
        )
    }))
    .map_err(err)?;
    Ok(())
}

/// Draw the figure for `runs` into `out` (PNG, [`WIDTH`] × [`HEIGHT`]).
pub fn draw(runs: &[LoadedRun], out: &Path) -> Res {
    register_font()?;
    let root = BitMapBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let root = root
        .titled(
            &format!("gradcode report: {}", names.join(", ")),
            ("sans-serif", 26),
        )
        .map_err(err)?;
    let admm = runs.iter().any(has_residuals);
    let panels = root.split_evenly(if admm { (2, 3) } else { (2, 2) });
    let n = runs.len();
    let switches = switch_lines(runs);
    let loss_lines = |x: &dyn Fn(&LoadedRun) -> Vec<f64>| -> Vec<Line> {
        runs.iter()
            .enumerate()
            .map(|(i, r)| {
                let st = run_style(i);
                Line {
                    label: label(r),
                    color: st.color,
                    points: points(&x(r), &r.column(Metric::TrainLoss), 1.0),
                    dash: st.dash,
                    marker: st.marker,
                    run: (i, n),
                }
            })
            .collect()
    };
    line_panel(
        &panels[0],
        "training loss against wall-clock time",
        "elapsed (s)",
        "train loss",
        &loss_lines(&|r| r.column(Metric::ElapsedS)),
        &[],
    )?;
    line_panel(
        &panels[1],
        "training loss against iterations",
        "iteration",
        "train loss",
        &loss_lines(&iterations),
        &switches,
    )?;

    // Every run's iteration time first (light tint), then every oracle on top (full colour):
    // the oracle is often within a millisecond of the iteration time and would vanish under it.
    let mut times = Vec::new();
    let mut oracles = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let st = run_style(i);
        let it = iterations(r);
        times.push(Line {
            label: label(r),
            color: tint(st.color, 0.45),
            points: points(&it, &r.column(Metric::WallS), 1e3),
            dash: &[],
            marker: st.marker,
            run: (i, n),
        });
        let oracle = points(&it, &r.column(Metric::OracleS), 1e3);
        if !oracle.is_empty() {
            oracles.push(Line {
                label: format!("{} oracle", r.name),
                color: st.color,
                points: oracle,
                dash: ORACLE_DASH,
                marker: st.marker,
                run: (i, n),
            });
        }
    }
    times.extend(oracles);
    line_panel(
        &panels[2],
        "time per iteration (solid, light) and the oracle (dashed)",
        "iteration",
        "ms",
        &times,
        &switches,
    )?;

    // A reference run (one process) or a run whose every message missed has no arrivals: the
    // map shows the first run that has some.
    match runs.iter().find(|r| arrivals(r).is_some()) {
        Some(r) => heat_map(&panels[3], r)?,
        None => empty_panel(&panels[3], "arrival heat map")?,
    }
    if admm {
        let pair = |first: Metric, second: Metric, f: fn(f64) -> f64| -> Vec<Line> {
            let mut lines = Vec::new();
            for (i, r) in runs.iter().enumerate().filter(|(_, r)| has_residuals(r)) {
                let st = run_style(i);
                let it = iterations(r);
                for (m, dash, what) in [
                    (first, &[][..], first.name()),
                    (second, ORACLE_DASH, second.name()),
                ] {
                    let y: Vec<f64> = r.column(m).iter().map(|&v| f(v)).collect();
                    lines.push(Line {
                        label: format!("{} {what}", label(r)),
                        color: st.color,
                        points: points(&it, &y, 1.0),
                        dash,
                        marker: st.marker,
                        run: (i, n),
                    });
                }
            }
            lines
        };
        let log10 = |v: f64| if v > 0.0 { v.log10() } else { f64::NAN };
        line_panel(
            &panels[4],
            "pdADMM residuals: primal (solid), dual (dashed)",
            "iteration",
            "log10 residual",
            &pair(Metric::PrimalResidual, Metric::DualResidual, log10),
            &[],
        )?;
        line_panel(
            &panels[5],
            "accuracy of the assembled network: train (solid), test (dashed)",
            "iteration",
            "accuracy",
            &pair(Metric::TrainAccuracy, Metric::TestAccuracy, |v| v),
            &[],
        )?;
    }
    root.present().map_err(err)
}

/// Whether `run` recorded pdADMM residuals (a `gradcode admm` run).
fn has_residuals(run: &LoadedRun) -> bool {
    run.column(Metric::PrimalResidual)
        .iter()
        .any(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_alternate_along_the_line() {
        // 1 data unit = 1 pixel: a 30-pixel line makes dashes [0,7], [12,19], [24,30].
        let px = |p: &(f64, f64)| (p.0 as i32, p.1 as i32);
        let d = dashes(&[(0.0, 0.0), (10.0, 0.0), (30.0, 0.0)], px, &[7.0, 5.0]);
        let ends: Vec<(f64, f64)> = d.iter().map(|v| (v[0].0, v[v.len() - 1].0)).collect();
        assert_eq!(ends, vec![(0.0, 7.0), (12.0, 19.0), (24.0, 30.0)]);
        assert!(d.iter().flatten().all(|p| p.0 >= 0.0 && p.0 <= 30.0));
    }

    #[test]
    fn dash_dot_patterns_cycle_and_solid_is_one_polyline() {
        let px = |p: &(f64, f64)| (p.0 as i32, p.1 as i32);
        let d = dashes(&[(0.0, 0.0), (40.0, 0.0)], px, &[12.0, 4.0, 3.0, 4.0]);
        let ends: Vec<(f64, f64)> = d.iter().map(|v| (v[0].0, v[v.len() - 1].0)).collect();
        // 12 on, 4 off, 3 on, 4 off, then again from 23 (and from 46, past the end).
        assert_eq!(
            ends,
            vec![(0.0, 12.0), (16.0, 19.0), (23.0, 35.0), (39.0, 40.0)]
        );
        let line = [(0.0, 0.0), (5.0, 1.0), (9.0, 3.0)];
        assert_eq!(dashes(&line, px, &[]), vec![line.to_vec()]);
    }

    #[test]
    fn runs_differ_in_dash_and_marker_as_well_as_colour() {
        // The first four runs differ pairwise in all three, so two identical curves (an MPI run
        // and its reference) are both visible.
        for i in 0..4 {
            for j in 0..i {
                let (a, b) = (run_style(i), run_style(j));
                assert_ne!(a.color, b.color, "runs {i} and {j}");
                assert_ne!(a.dash, b.dash, "runs {i} and {j}");
                assert_ne!(a.marker, b.marker, "runs {i} and {j}");
            }
        }
        // Colours stay the tab10 palette, in order, and the first run is a plain solid line.
        assert_eq!(run_style(0).color, PALETTE[0]);
        assert_eq!(run_style(11).color, PALETTE[1]);
        assert!(run_style(0).dash.is_empty());
        // The oracle's pattern is none of the runs' loss patterns.
        assert!(DASHES.iter().all(|d| *d != ORACLE_DASH));
    }

    #[test]
    fn markers_of_coinciding_lines_do_not_overlap() {
        let a = mark_indices(30, 0, 2);
        let b = mark_indices(30, 1, 2);
        assert_eq!(a, (0..30).step_by(3).collect::<Vec<_>>());
        assert_eq!(b, (1..30).step_by(3).collect::<Vec<_>>());
        assert!(a.iter().all(|i| !b.contains(i)));
        assert!(mark_indices(0, 0, 1).is_empty());
        assert_eq!(mark_indices(3, 2, 3), vec![0, 1, 2]);
        assert!(mark_indices(1000, 3, 4).len() <= MARKS_PER_LINE);
    }

    #[test]
    fn ticks_have_the_decimals_the_span_needs() {
        assert_eq!(tick(1400.0, 1400.0), "1400");
        assert_eq!(tick(0.45, 0.35), "0.45");
        assert_eq!(tick(20.0, 150.0), "20");
        assert_eq!(tick(0.2, 2.3), "0.2");
    }

    #[test]
    fn tints_move_towards_white() {
        assert_eq!(tint(RGBColor(0, 100, 255), 0.0), RGBColor(0, 100, 255));
        assert_eq!(tint(RGBColor(0, 100, 255), 1.0), RGBColor(255, 255, 255));
        assert_eq!(tint(RGBColor(0, 100, 255), 0.5), RGBColor(128, 178, 255));
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(range([].into_iter(), 0.1), (0.0, 1.0));
        let (a, b) = range([2.0, 2.0].into_iter(), 0.1);
        assert!(a < 2.0 && b > 2.0);
        let (a, b) = range([0.0, f64::NAN, 10.0].into_iter(), 0.1);
        assert_eq!((a, b), (-1.0, 11.0));
    }
}
