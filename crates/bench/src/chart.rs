//! `chart.svg` (messages/s) and `latency.svg` (p50 and p99): grouped bars,
//! one group per cell, one bar per model, drawn with plotters' SVG backend.
//!
//! Text is written as SVG `<text>` elements and rendered by whatever shows
//! the file, so no font is loaded here (plotters is built without `ttf`). The
//! cell labels under each group and the legend above the plot are placed by
//! hand, in pixels, because plotters picks its own tick positions on a
//! numeric axis and its legend box would cover the tallest bars.

use crate::figure::Figure;
use crate::matrix::Cell;
use crate::stats::Row;
use crate::{BenchError, Results};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(153, 153, 153),
    RGBColor(0, 0, 0),
];

pub(crate) const FONT: &str = "sans-serif";
const HEIGHT: u32 = 560;
/// Share of a group's width taken by its bars; the rest separates groups.
const GROUP_FILL: f64 = 0.8;

pub(crate) fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Width that leaves every bar at least ~24 px, so its value label fits.
fn width(cells: usize, models: usize) -> u32 {
    (cells * models * 30 + 240).clamp(900, 2400) as u32
}

/// `1234` as `1.2k`, `2500000` as `2.50M`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Microseconds as `250 µs`, `1.5 ms`, `2 s`.
pub fn micros(v: f64) -> String {
    if v >= 1e6 {
        format!("{} s", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{} ms", trim(v / 1e3))
    } else {
        format!("{} µs", trim(v))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// The cells in table order and the models in the order they ran.
struct Layout<'a> {
    cells: Vec<Cell>,
    models: Vec<(&'a str, bool)>,
}

impl<'a> Layout<'a> {
    fn new(rows: &'a [Row]) -> Self {
        let mut cells = Vec::new();
        let mut models: Vec<(&str, bool)> = Vec::new();
        for r in rows {
            if !cells.contains(&r.cell()) {
                cells.push(r.cell());
            }
            if !models.iter().any(|(m, _)| *m == r.model) {
                models.push((&r.model, r.serialized));
            }
        }
        Layout { cells, models }
    }

    fn find<'r>(&self, rows: &'r [Row], cell: usize, model: usize) -> Option<&'r Row> {
        let cell = self.cells[cell];
        rows.iter()
            .find(|r| r.cell() == cell && r.model == self.models[model].0)
    }

    /// Left and right edge of a bar on the x axis, where cell `c` spans `c..c+1`.
    fn bar(&self, cell: usize, model: usize) -> (f64, f64) {
        let w = GROUP_FILL / self.models.len() as f64;
        let x0 = cell as f64 + (1.0 - GROUP_FILL) / 2.0 + w * model as f64;
        (x0 + w * 0.06, x0 + w * 0.94)
    }
}

pub(crate) fn err(file: &str) -> impl Fn(Box<dyn std::error::Error + '_>) -> BenchError + '_ {
    move |e| BenchError::Chart {
        file: file.to_string(),
        why: e.to_string(),
    }
}

pub(crate) fn text_style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font())
        .color(&BLACK)
        .pos(Pos::new(h, v))
}

/// The legend: a row of swatches and names, wrapped to the width, at the top
/// of `area`. `extra` is a note appended after the names.
fn legend(
    area: &Area<'_>,
    layout: &Layout<'_>,
    extra: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (w, _) = area.dim_in_pixel();
    let (mut x, mut y) = (70i32, 8i32);
    let style = text_style(17, HPos::Left, VPos::Center);
    for (i, (name, serialized)) in layout.models.iter().enumerate() {
        let label = if *serialized {
            format!("{name} (serialized)")
        } else {
            name.to_string()
        };
        // The SVG viewer picks the font, so widths are estimated: ~8 px a character.
        let item = 22 + label.chars().count() as i32 * 8 + 18;
        if x + item > w as i32 - 20 {
            x = 70;
            y += 22;
        }
        area.draw(&Rectangle::new(
            [(x, y + 3), (x + 14, y + 17)],
            color(i).filled(),
        ))?;
        area.draw(&Text::new(label, (x + 20, y + 10), style.clone()))?;
        x += item;
    }
    if let Some(extra) = extra {
        let item = extra.chars().count() as i32 * 7;
        if x + item > w as i32 - 20 {
            x = 70;
            y += 22;
        }
        area.draw(&Text::new(
            extra.to_string(),
            (x, y + 10),
            text_style(15, HPos::Left, VPos::Center).color(&RGBColor(80, 80, 80)),
        ))?;
    }
    Ok(())
}

/// "64 conns" and "4 KiB" (or "4 KiB, 1/conn" for churn) under each
/// group, in the x label area.
fn cell_labels<C>(
    root: &Area<'_>,
    layout: &Layout<'_>,
    to_px: C,
) -> Result<(), Box<dyn std::error::Error>>
where
    C: Fn(f64) -> (i32, i32),
{
    for (ci, cell) in layout.cells.iter().enumerate() {
        let (x, y) = to_px(ci as f64 + 0.5);
        let (conns, size) = (cell.connections, cell.size);
        let unit = if conns == 1 { "conn" } else { "conns" };
        let size = match cell.per_connection {
            Some(n) => format!("{}, {n}/conn", crate::matrix::size_text(size)),
            None => crate::matrix::size_text(size),
        };
        root.draw(&Text::new(
            format!("{conns} {unit}"),
            (x, y + 8),
            text_style(17, HPos::Center, VPos::Top),
        ))?;
        root.draw(&Text::new(
            size,
            (x, y + 28),
            text_style(16, HPos::Center, VPos::Top),
        ))?;
    }
    Ok(())
}

fn footer(root: &Area<'_>, results: &Results) -> Result<(), Box<dyn std::error::Error>> {
    let m = &results.machine;
    let c = &results.config;
    let (w, h) = root.dim_in_pixel();
    let cap = c
        .server_cpu_cap_pct
        .map_or(String::new(), |p| format!(" held to {p}%"));
    let text = format!(
        "{} · {} · server CPU {}{cap}, load CPU {} · {} s runs, median of {} · {}",
        m.cpu_model, m.kernel, c.server_cpus, c.client_cpus, c.duration_s, c.reps, c.started_at
    );
    root.draw(&Text::new(
        text,
        (w as i32 / 2, h as i32 - 8),
        text_style(14, HPos::Center, VPos::Bottom).color(&RGBColor(90, 90, 90)),
    ))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The parts both charts share: a white canvas `w` wide with the title and
/// the legend on top. Returns the whole canvas and the area left for the plot.
fn frame<'a>(
    svg: &'a mut String,
    w: u32,
    title: String,
    layout: &Layout<'_>,
    legend_note: Option<&str>,
) -> Result<(Area<'a>, Area<'a>), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (w, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(84);
    top.draw(&Text::new(
        title,
        (w as i32 / 2, 10),
        text_style(24, HPos::Center, VPos::Top),
    ))?;
    let (_, legend_area) = top.split_vertically(38);
    legend(&legend_area, layout, legend_note)?;
    Ok((root, rest))
}

/// A figure (or "n/a") just above the point `(px, py)` of a bar's top.
fn bar_label(
    root: &Area<'_>,
    text: String,
    (px, py): (i32, i32),
) -> Result<(), Box<dyn std::error::Error>> {
    root.draw(&Text::new(
        text,
        (px, py - 3),
        text_style(13, HPos::Center, VPos::Bottom),
    ))?;
    Ok(())
}

/// What the whiskers and the marks mean, in the legend.
const WHISKERS: &str =
    "whiskers: interval of the median · pale, ⚠: disturbed, slow to start or failed, see the table";
const LATENCY_NOTE: &str =
    "solid: p50 · pale: p99, whiskers: its interval · ⚠: disturbed, slow to start or failed · log scale";

/// A bar's value label, marked when the cell is doubtful.
fn label(value: String, r: &Row) -> String {
    if r.doubtful() {
        format!("⚠ {value}")
    } else {
        value
    }
}

/// A vertical whisker from `lo` to `hi` at `x`, with caps `half` wide.
fn whisker<DB, CT>(
    chart: &mut ChartContext<'_, DB, CT>,
    x: f64,
    half: f64,
    lo: f64,
    hi: f64,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    CT: CoordTranslate<From = (f64, f64)>,
{
    let style = ShapeStyle::from(&BLACK).stroke_width(1);
    chart
        .plotting_area()
        .draw(&PathElement::new(vec![(x, lo), (x, hi)], style))?;
    for y in [lo, hi] {
        chart
            .plotting_area()
            .draw(&PathElement::new(vec![(x - half, y), (x + half, y)], style))?;
    }
    Ok(())
}

type Draw = fn(&Results, &mut String) -> Result<(), Box<dyn std::error::Error>>;

/// Draw one chart into a string; errors name `file`.
fn render(results: &Results, file: &str, draw: Draw) -> Result<String, BenchError> {
    let mut svg = String::new();
    draw(results, &mut svg).map_err(err(file))?;
    Ok(svg)
}

/// Grouped bars of messages per second.
pub fn throughput_svg(results: &Results) -> Result<String, BenchError> {
    render(results, "chart.svg", draw_throughput)
}

fn draw_throughput(results: &Results, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let rows = &results.results;
    let layout = Layout::new(rows);
    let n = layout.cells.len().max(1);
    let title = format!(
        "ringport bench: echoed messages per second (median of {}), higher is better",
        results.config.reps
    );
    let (root, rest) = frame(
        svg,
        width(n, layout.models.len()),
        title,
        &layout,
        Some(WHISKERS),
    )?;
    let ymax = rows
        .iter()
        .map(|r| r.figure(Figure::MsgsPerSec))
        .flat_map(|x| [x.median, x.ci.map(|c| c[1])])
        .flatten()
        .fold(0.0, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.12 } else { 1.0 };
    let mut chart = ChartBuilder::on(&rest)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(28)
        .x_label_area_size(62)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_label_formatter(&|v| si(*v))
        .y_desc("messages / s")
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .light_line_style(RGBColor(242, 242, 242))
        .draw()?;
    for (mi, _) in layout.models.iter().enumerate() {
        for ci in 0..n {
            let (x0, x1) = layout.bar(ci, mi);
            let row = layout.find(rows, ci, mi);
            let mid = (x0 + x1) / 2.0;
            match row.and_then(|r| Some((r, r.median(Figure::MsgsPerSec)?))) {
                Some((r, v)) => {
                    let fill = if r.doubtful() {
                        color(mi).mix(0.4).filled()
                    } else {
                        color(mi).filled()
                    };
                    chart
                        .draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x1, v)], fill)))?;
                    let top = match r.figure(Figure::MsgsPerSec).ci {
                        Some([lo, hi]) => {
                            whisker(&mut chart, mid, (x1 - x0) * 0.25, lo, hi)?;
                            hi.max(v)
                        }
                        None => v,
                    };
                    bar_label(&root, label(si(v), r), chart.backend_coord(&(mid, top)))?;
                }
                None => bar_label(&root, "n/a".into(), chart.backend_coord(&(mid, 0.0)))?,
            }
        }
    }
    cell_labels(&root, &layout, |x| chart.backend_coord(&(x, 0.0)))?;
    footer(&root, results)?;
    root.present()?;
    Ok(())
}

/// p50 (solid, narrow) inside p99 (pale, wide), per model and cell, on a log scale.
pub fn latency_svg(results: &Results) -> Result<String, BenchError> {
    render(results, "latency.svg", draw_latency)
}

fn draw_latency(results: &Results, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let rows = &results.results;
    let layout = Layout::new(rows);
    let n = layout.cells.len().max(1);
    let title = format!(
        "ringport bench: echo latency p50 and p99 (median of {}), lower is better",
        results.config.reps
    );
    let (root, rest) = frame(
        svg,
        width(n, layout.models.len()),
        title,
        &layout,
        Some(LATENCY_NOTE),
    )?;
    let (ymin, ymax) = latency_range(rows);
    let mut chart = ChartBuilder::on(&rest)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(28)
        .x_label_area_size(62)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| micros(*v))
        .y_desc("latency")
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .light_line_style(RGBColor(242, 242, 242))
        .draw()?;
    for (mi, _) in layout.models.iter().enumerate() {
        for ci in 0..n {
            let (x0, x1) = layout.bar(ci, mi);
            let row = layout.find(rows, ci, mi);
            let mid = (x0 + x1) / 2.0;
            match row.and_then(|r| Some((r, r.median(Figure::P50)?, r.median(Figure::P99)?))) {
                Some((r, p50, p99)) => {
                    latency_bar(&mut chart, &root, r, (p50, p99), (x0, x1), color(mi), ymin)?
                }
                None => bar_label(&root, "n/a".into(), chart.backend_coord(&(mid, ymin)))?,
            }
        }
    }
    cell_labels(&root, &layout, |x| chart.backend_coord(&(x, ymin)))?;
    footer(&root, results)?;
    root.present()?;
    Ok(())
}

/// The latency axis: whole decades around every p50 and p99 and the top of
/// every p99 interval, so the log axis starts and ends on a labelled power
/// of ten.
fn latency_range(rows: &[Row]) -> (f64, f64) {
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.median(Figure::P50), r.median(Figure::P99)])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    if values.is_empty() {
        return (1.0, 10.0);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values
        .iter()
        .copied()
        .chain(
            rows.iter()
                .filter_map(|r| r.figure(Figure::P99).ci.map(|c| c[1])),
        )
        .fold(0.0, f64::max);
    (
        10f64.powf(lo.log10().floor()).max(1.0),
        10f64.powf((hi * 1.5).log10().ceil()),
    )
}

type LatencyChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

/// One row's bars between `x0` and `x1`: p99 pale and wide, p50 solid and
/// narrow inside it, the p99's interval as a whisker, and the p99 as the
/// label.
fn latency_bar(
    chart: &mut LatencyChart<'_, '_>,
    root: &Area<'_>,
    r: &Row,
    (p50, p99): (f64, f64),
    (x0, x1): (f64, f64),
    c: RGBColor,
    ymin: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mid = (x0 + x1) / 2.0;
    let inset = (x1 - x0) * 0.22;
    chart.draw_series([
        Rectangle::new([(x0, ymin), (x1, p99.max(ymin))], c.mix(0.35).filled()),
        Rectangle::new([(x0, ymin), (x1, p99.max(ymin))], c.stroke_width(1)),
        Rectangle::new(
            [(x0 + inset, ymin), (x1 - inset, p50.max(ymin))],
            c.filled(),
        ),
    ])?;
    let top = match r.figure(Figure::P99).ci {
        Some([lo, hi]) => {
            whisker(chart, mid, (x1 - x0) * 0.25, lo.max(ymin), hi.max(ymin))?;
            hi.max(p99)
        }
        None => p99,
    };
    let top = chart.backend_coord(&(mid, top.max(ymin)));
    bar_label(root, label(micros(p99), r), top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_and_micros_read_naturally() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(1234.0), "1.2k");
        assert_eq!(si(45_600.0), "46k");
        assert_eq!(si(2_500_000.0), "2.50M");
        assert_eq!(micros(250.0), "250 µs");
        assert_eq!(micros(1500.0), "1.5 ms");
        assert_eq!(micros(2_000_000.0), "2 s");
    }

    #[test]
    fn bars_of_a_group_stay_inside_their_cell_and_do_not_overlap() {
        let rows: Vec<Row> = ["a", "b", "c"]
            .iter()
            .flat_map(|m| {
                [1, 64].map(|c| {
                    let mut r = Row {
                        model: m.to_string(),
                        connections: c,
                        size: 64,
                        reps: 1,
                        clean: true,
                        ..Row::default()
                    };
                    r.figure_mut(Figure::MsgsPerSec).median = Some(1.0);
                    r
                })
            })
            .collect();
        let l = Layout::new(&rows);
        let cells: Vec<(usize, usize)> = l.cells.iter().map(|c| (c.connections, c.size)).collect();
        assert_eq!(cells, [(1, 64), (64, 64)]);
        assert_eq!(l.models.len(), 3);
        for cell in 0..2 {
            let mut last = cell as f64;
            for m in 0..3 {
                let (x0, x1) = l.bar(cell, m);
                assert!(x0 >= last && x1 > x0 && x1 <= cell as f64 + 1.0);
                last = x1;
            }
        }
    }
}
