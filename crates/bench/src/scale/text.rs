//! What a `--scale-cpus` bench shows, for people: `scaling.md`,
//! `report.html` and `scaling.svg`.

use super::{Point, Scaling, KNEE_GAIN};
use crate::BenchError;
use std::fmt::Write as _;

/// `scaling.svg`: each cell's msgs/s and CPU per message against the
/// server's CPUs, one line per model, its knee ringed.
pub fn scaling_svg(scaling: &Scaling) -> Result<String, BenchError> {
    use crate::curves::{svg, Chart, Curve, CurvePoint, Panel};
    let mut models: Vec<String> = Vec::new();
    for s in &scaling.series {
        if !models.contains(&s.model) {
            models.push(s.model.clone());
        }
    }
    let panels = scaling
        .cells()
        .into_iter()
        .map(|cell| Panel {
            title: cell.to_string(),
            curves: scaling
                .series
                .iter()
                .filter(|s| s.cell() == cell)
                .map(|s| Curve {
                    model: models.iter().position(|m| *m == s.model).unwrap_or(0),
                    points: s
                        .points
                        .iter()
                        .map(|p| CurvePoint {
                            x: p.server_cpus,
                            y: [p.msgs_per_sec, p.server_cpu_us_per_msg],
                            doubtful: p.doubtful,
                            load_bound: p.load_bound,
                            ringed: s.knee.is_some_and(|k| k.server_cpus == p.server_cpus),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    svg(&Chart {
        file: "scaling.svg",
        title: "ringport bench --scale-cpus: each model against the server's CPUs (ring: knee; L: load near its limit; hollow: doubtful)".into(),
        x_desc: "server CPUs",
        xs: scaling.server_cpus.clone(),
        models,
        panels,
    })
}

impl Scaling {
    /// `scaling.md`: the knees in words, then a table of msgs/s and CPU
    /// per message at each count.
    pub fn markdown(&self) -> String {
        let mut s = String::from("# ringport bench --scale-cpus\n\n");
        for k in &self.skipped {
            let _ = writeln!(s, "- {} server CPU(s): skipped: {}", k.server_cpus, k.why);
        }
        if !self.skipped.is_empty() {
            s.push('\n');
        }
        for line in self.knee_sentences() {
            let _ = writeln!(s, "- {line}");
        }
        s.push('\n');
        let counts: Vec<String> = self
            .server_cpus
            .iter()
            .map(|n| format!("{n} CPU"))
            .collect();
        let _ = writeln!(
            s,
            "| model | cell | {} | knee |",
            counts
                .iter()
                .map(|c| format!("msgs/s at {c} | µs CPU/msg at {c}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|---|{}---|", "---:|---:|".repeat(counts.len()));
        for series in &self.series {
            let mut cols = vec![series.model.clone(), series.cell().to_string()];
            for n in &self.server_cpus {
                let p = series.points.iter().find(|p| p.server_cpus == *n);
                let mark = |p: &Point| match (p.doubtful, p.load_bound) {
                    (true, _) => " (doubtful)",
                    (false, true) => " (load-bound?)",
                    _ => "",
                };
                cols.push(
                    p.and_then(|p| Some(format!("{:.0}{}", p.msgs_per_sec?, mark(p))))
                        .unwrap_or_else(|| "—".into()),
                );
                cols.push(
                    p.and_then(|p| p.server_cpu_us_per_msg)
                        .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
                );
            }
            cols.push(
                series
                    .knee
                    .map_or_else(|| "none seen".into(), |k| k.to_string()),
            );
            let _ = writeln!(s, "| {} |", cols.join(" | "));
        }
        s
    }

    /// `report.html`: the knees, the table, the chart, and a link to each
    /// count's own report; self-contained like every bench page.
    pub fn html(&self, svg: &str) -> String {
        use crate::report::{esc, strip_xml_declaration, STYLE};
        let mut s = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ringport bench --scale-cpus</title>\n",
        );
        s.push_str(STYLE);
        s.push_str(
            "</head>\n<body>\n<h1>ringport bench --scale-cpus</h1>\n<ul class=\"verdict\">\n",
        );
        for k in &self.skipped {
            let _ = writeln!(
                s,
                "<li>{} server CPU(s): skipped: {}</li>",
                k.server_cpus,
                esc(&k.why)
            );
        }
        for line in self.knee_sentences() {
            let _ = writeln!(s, "<li>{}</li>", esc(&line));
        }
        s.push_str("</ul>\n<h2>Msgs/s and CPU per message against the server's CPUs</h2>\n");
        let _ = writeln!(s, "<figure>{}</figure>", strip_xml_declaration(svg));
        s.push_str("<div class=\"scroll\"><table>\n<tr><th>model</th><th>cell</th>");
        for n in &self.server_cpus {
            let _ = write!(
                s,
                "<th>msgs/s at {n} CPU</th><th>µs CPU/msg at {n} CPU</th>"
            );
        }
        s.push_str("<th>knee</th></tr>\n");
        for series in &self.series {
            let _ = write!(
                s,
                "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td>",
                esc(&series.model),
                esc(&series.cell().to_string())
            );
            for n in &self.server_cpus {
                let p = series.points.iter().find(|p| p.server_cpus == *n);
                let cell = |v: Option<f64>, digits: usize| {
                    v.map_or_else(|| "—".to_string(), |v| format!("{v:.digits$}"))
                };
                let _ = write!(
                    s,
                    "<td>{}</td><td>{}</td>",
                    cell(p.and_then(|p| p.msgs_per_sec), 0),
                    cell(p.and_then(|p| p.server_cpu_us_per_msg), 2)
                );
            }
            let knee = series
                .knee
                .map_or_else(|| "none seen".to_string(), |k| k.to_string());
            let _ = writeln!(s, "<td class=\"text\">{}</td></tr>", esc(&knee));
        }
        s.push_str("</table></div>\n<h2>Each count's own bench</h2>\n<ul>\n");
        for n in &self.server_cpus {
            let _ = writeln!(
                s,
                "<li><a href=\"cpus-{n}/report.html\">the server on {n} CPU(s)</a></li>"
            );
        }
        s.push_str("</ul>\n</body>\n</html>\n");
        s
    }

    /// One sentence per series: where its knee is, or that none was seen.
    pub fn knee_sentences(&self) -> Vec<String> {
        if self.server_cpus.len() < 2 {
            return vec![format!(
                "Only {} server CPU count ran, so no scaling can be told; give --scale-cpus two or more values this machine can run.",
                self.server_cpus.len()
            )];
        }
        self.series
            .iter()
            .map(|s| match s.knee {
                Some(k) => format!("{} at {}: {k}.", s.model, s.cell()),
                None => format!(
                    "{} at {}: each doubling of the server's CPUs gave {KNEE_GAIN}× or more msgs/s up to {} CPUs; no knee seen.",
                    s.model,
                    s.cell(),
                    self.server_cpus.last().copied().unwrap_or(0)
                ),
            })
            .collect()
    }
}
