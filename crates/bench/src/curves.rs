//! Line charts of msgs/s (left) and server CPU per message (right) against
//! a count on the x axis, one panel pair per group of cells, one line per
//! model: `scaling.svg` (against the server's CPUs, each model's knee
//! ringed) and `sweep.svg` (against the connections). Doubtful points are
//! drawn hollow; points where the load was near its limit carry an `L`.

use crate::chart::{color, err, si, text_style, FONT};
use crate::BenchError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

const PANEL_W: u32 = 560;
const PANEL_H: u32 = 320;
const TOP: u32 = 90;

/// One model's line in a panel.
pub struct Curve {
    /// Its index in the legend, for its colour.
    pub model: usize,
    /// Its points, by ascending x.
    pub points: Vec<CurvePoint>,
}

/// A point of a curve.
pub struct CurvePoint {
    /// The x value (one of the chart's `xs`).
    pub x: usize,
    /// Msgs/s and server µs CPU per message.
    pub y: [Option<f64>; 2],
    /// Drawn hollow.
    pub doubtful: bool,
    /// Marked `L`.
    pub load_bound: bool,
    /// Ringed (a knee).
    pub ringed: bool,
}

/// A pair of panels: one group of cells.
pub struct Panel {
    /// Its title, such as the cell.
    pub title: String,
    /// One line per model.
    pub curves: Vec<Curve>,
}

/// What a chart shows.
pub struct Chart<'a> {
    /// The file name, for errors.
    pub file: &'a str,
    /// The line above the legend.
    pub title: String,
    /// The x axis's name.
    pub x_desc: &'a str,
    /// The x values, ascending, placed evenly.
    pub xs: Vec<usize>,
    /// The legend's names, in colour order.
    pub models: Vec<String>,
    /// The panel pairs, top to bottom.
    pub panels: Vec<Panel>,
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart<'_>) -> Result<String, BenchError> {
    let mut svg = String::new();
    draw(chart, &mut svg).map_err(err(chart.file))?;
    Ok(svg)
}

fn draw(c: &Chart<'_>, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let rows = c.panels.len().max(1) as u32;
    let (w, h) = (PANEL_W * 2, TOP + PANEL_H * rows);
    let root = SVGBackend::with_string(svg, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(TOP);
    top.draw(&Text::new(
        c.title.clone(),
        (w as i32 / 2, 10),
        text_style(18, HPos::Center, VPos::Top),
    ))?;
    let mut x = 20;
    for (i, m) in c.models.iter().enumerate() {
        top.draw(&Rectangle::new([(x, 50), (x + 14, 64)], color(i).filled()))?;
        top.draw(&Text::new(
            m.clone(),
            (x + 20, 57),
            text_style(15, HPos::Left, VPos::Center),
        ))?;
        x += 30 + 9 * m.chars().count() as i32;
    }
    let areas = rest.split_evenly((rows as usize, 2));
    let xs = &c.xs;
    let n = xs.len().max(1);
    let at = |x: usize| xs.iter().position(|v| *v == x).unwrap_or(0) as f64;
    for (pi, panel) in c.panels.iter().enumerate() {
        for (col, what) in ["msgs/s", "server µs CPU/msg"].into_iter().enumerate() {
            let ymax = panel
                .curves
                .iter()
                .flat_map(|cv| cv.points.iter().filter_map(|p| p.y[col]))
                .fold(0.0, f64::max);
            let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
            let mut chart = ChartBuilder::on(&areas[pi * 2 + col])
                .caption(format!("{}: {what}", panel.title), (FONT, 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..ymax)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 0.01 && i >= 0.0 {
                        xs.get(i as usize).map_or(String::new(), |v| v.to_string())
                    } else {
                        String::new()
                    }
                })
                .x_desc(c.x_desc)
                .y_labels(6)
                .y_label_formatter(&|v| si(*v))
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .light_line_style(RGBColor(242, 242, 242))
                .draw()?;
            for curve in &panel.curves {
                let style = color(curve.model);
                let line: Vec<(f64, f64)> = curve
                    .points
                    .iter()
                    .filter_map(|p| Some((at(p.x), p.y[col]?)))
                    .collect();
                chart.draw_series(std::iter::once(PathElement::new(
                    line,
                    style.stroke_width(2),
                )))?;
                for p in &curve.points {
                    let Some(v) = p.y[col] else { continue };
                    let xy = (at(p.x), v);
                    let dot = if p.doubtful {
                        style.stroke_width(2)
                    } else {
                        style.filled()
                    };
                    chart.draw_series(std::iter::once(Circle::new(xy, 4, dot)))?;
                    if p.load_bound {
                        chart.draw_series(std::iter::once(Text::new(
                            "L",
                            xy,
                            text_style(12, HPos::Left, VPos::Bottom),
                        )))?;
                    }
                    if p.ringed {
                        chart.draw_series(std::iter::once(Circle::new(
                            xy,
                            10,
                            style.stroke_width(2),
                        )))?;
                    }
                }
            }
        }
    }
    root.present()?;
    Ok(())
}

/// `sweep.svg`: each model's msgs/s and CPU per message against the
/// connections, one panel pair per message size (and churn setting).
pub fn sweep_svg(results: &crate::Results) -> Result<String, BenchError> {
    use crate::figure::Figure;
    let rows = &results.results;
    let mut models: Vec<String> = Vec::new();
    let mut xs: Vec<usize> = Vec::new();
    let mut groups: Vec<(usize, Option<u64>)> = Vec::new();
    for r in rows {
        if !models.contains(&r.model) {
            models.push(r.model.clone());
        }
        if !xs.contains(&r.connections) {
            xs.push(r.connections);
        }
        if !groups.contains(&(r.size, r.per_connection)) {
            groups.push((r.size, r.per_connection));
        }
    }
    xs.sort_unstable();
    let panels = groups
        .iter()
        .map(|&(size, per_connection)| {
            let title = match per_connection {
                Some(n) => format!("{}, {n} msg/conn", crate::matrix::size_text(size)),
                None => crate::matrix::size_text(size),
            };
            let curves = models
                .iter()
                .enumerate()
                .map(|(mi, m)| {
                    let mut points: Vec<CurvePoint> = rows
                        .iter()
                        .filter(|r| {
                            &r.model == m && r.size == size && r.per_connection == per_connection
                        })
                        .map(|r| CurvePoint {
                            x: r.connections,
                            y: [r.median(Figure::MsgsPerSec), r.median(Figure::ServerCpu)],
                            doubtful: r.doubtful() || !r.clean,
                            load_bound: crate::output::client_bound(r),
                            ringed: false,
                        })
                        .collect();
                    points.sort_by_key(|p| p.x);
                    Curve { model: mi, points }
                })
                .collect();
            Panel { title, curves }
        })
        .collect();
    svg(&Chart {
        file: "sweep.svg",
        title: format!(
            "ringport bench: msgs/s and server CPU per message against connections (median of {}; L: load near its limit; hollow: doubtful)",
            results.config.reps
        ),
        x_desc: "connections",
        xs,
        models,
        panels,
    })
}
