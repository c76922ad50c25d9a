//! `scaling.svg`: for each cell, msgs/s (left) and server CPU per message
//! (right) against the server's CPUs, one line per model, its knee ringed.
//! Doubtful points are drawn hollow; points where the load was near its
//! limit carry a small `L`.

use super::{Scaling, Series};
use crate::chart::{color, err, si, text_style, FONT};
use crate::BenchError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

const PANEL_W: u32 = 560;
const PANEL_H: u32 = 320;
const TOP: u32 = 90;

/// The chart as an SVG document.
pub fn scaling_svg(scaling: &Scaling) -> Result<String, BenchError> {
    let mut svg = String::new();
    draw(scaling, &mut svg).map_err(err("scaling.svg"))?;
    Ok(svg)
}

fn draw(scaling: &Scaling, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let cells = scaling.cells();
    let rows = cells.len().max(1) as u32;
    let (w, h) = (PANEL_W * 2, TOP + PANEL_H * rows);
    let root = SVGBackend::with_string(svg, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(TOP);
    top.draw(&Text::new(
        "ringport bench --scale-cpus: each model against the server's CPUs (ring: knee; L: load near its limit; hollow: doubtful)",
        (w as i32 / 2, 10),
        text_style(18, HPos::Center, VPos::Top),
    ))?;
    let mut models: Vec<&str> = Vec::new();
    for s in &scaling.series {
        if !models.contains(&s.model.as_str()) {
            models.push(&s.model);
        }
    }
    let mut x = 20;
    for (i, m) in models.iter().enumerate() {
        top.draw(&Rectangle::new([(x, 50), (x + 14, 64)], color(i).filled()))?;
        top.draw(&Text::new(
            m.to_string(),
            (x + 20, 57),
            text_style(15, HPos::Left, VPos::Center),
        ))?;
        x += 30 + 9 * m.len() as i32;
    }
    let panels = rest.split_evenly((rows as usize, 2));
    let counts = &scaling.server_cpus;
    for (ci, cell) in cells.iter().enumerate() {
        let in_cell: Vec<(usize, &Series)> = scaling
            .series
            .iter()
            .filter(|s| s.cell() == *cell)
            .map(|s| (models.iter().position(|m| *m == s.model).unwrap_or(0), s))
            .collect();
        for (col, (what, get)) in [
            ("msgs/s", msgs as fn(&super::Point) -> Option<f64>),
            ("server µs CPU/msg", cpu),
        ]
        .into_iter()
        .enumerate()
        {
            let area = &panels[ci * 2 + col];
            let ymax = in_cell
                .iter()
                .flat_map(|(_, s)| s.points.iter().filter_map(get))
                .fold(0.0, f64::max);
            let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
            let n = counts.len().max(1);
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{cell}: {what}"), (FONT, 16))
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
                        counts
                            .get(i as usize)
                            .map_or(String::new(), |c| c.to_string())
                    } else {
                        String::new()
                    }
                })
                .x_desc("server CPUs")
                .y_labels(6)
                .y_label_formatter(&|v| si(*v))
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .light_line_style(RGBColor(242, 242, 242))
                .draw()?;
            for (mi, s) in &in_cell {
                let style = color(*mi);
                let at = |n: usize| counts.iter().position(|c| *c == n).unwrap_or(0) as f64;
                let line: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter_map(|p| Some((at(p.server_cpus), get(p)?)))
                    .collect();
                chart.draw_series(std::iter::once(PathElement::new(
                    line,
                    style.stroke_width(2),
                )))?;
                for p in &s.points {
                    let Some(v) = get(p) else { continue };
                    let xy = (at(p.server_cpus), v);
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
                    if s.knee.is_some_and(|k| k.server_cpus == p.server_cpus) {
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

fn msgs(p: &super::Point) -> Option<f64> {
    p.msgs_per_sec
}

fn cpu(p: &super::Point) -> Option<f64> {
    p.server_cpu_us_per_msg
}
