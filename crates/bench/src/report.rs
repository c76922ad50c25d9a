//! `report.html`: one self-contained page with the verdict and why, the
//! table and its flags, the cost breakdown, both charts, the machine and
//! the exact command, and how to read each column. The charts are inlined as SVG and the styles as one
//! `<style>` element: the page fetches nothing, runs no script, and can be
//! mailed or archived as one file.

use crate::output::{self, Align, Column, Mark, Table, COLUMNS, COST_COLUMNS};
use crate::Results;
use std::fmt::Write as _;

/// What the charts' marks mean, after the columns in the page's key.
const CHART_KEY: [(&str, &str); 4] = [
    (
        "pale bars, ⚠",
        "on the charts: a cell whose figures are doubtful (disturbed or not clean)",
    ),
    (
        "whiskers",
        "on the charts: the interval of the median, as in the table",
    ),
    (
        "hollow points",
        "on the curves against connections: a doubtful cell, as pale bars are on the others",
    ),
    (
        "L",
        "on the curves: the load used so much of its CPUs that it may have been the limit (client-bound? in the table)",
    ),
];

/// The page.
pub fn html(results: &Results, charts: &[&str]) -> String {
    let c = &results.config;
    let t = output::table(results);
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>ringport bench, {}</title>", esc(&c.started_at));
    s.push_str(STYLE);
    s.push_str("</head>\n<body>\n<h1>ringport bench</h1>\n");
    let _ = writeln!(
        s,
        "<p class=\"verdict\">{}</p>",
        emphasis(&esc(&output::verdict(results)))
    );
    if let Some(why) = output::why(results) {
        let _ = writeln!(s, "<p class=\"why\">{}</p>", esc(&why));
    }
    winners_html(&mut s, results);
    capacity_html(&mut s, results);
    s.push_str("<h2>Results</h2>\n");
    table_html(&mut s, &t, &COLUMNS);
    notes_html(&mut s, &t);
    s.push_str("<h2>Cost breakdown</h2>\n");
    s.push_str("<p>Per message, the median of the repetitions: where the server's CPU went, how often its threads switched, and the read/write calls it made. The why beside the verdict rests on these; the key below says what each counts.</p>\n");
    let costs = output::cost_table(results);
    table_html(&mut s, &costs, &COST_COLUMNS);
    notes_html(&mut s, &costs);
    s.push_str("<h2>Charts</h2>\n");
    for svg in charts {
        let _ = writeln!(s, "<figure>{}</figure>", strip_xml_declaration(svg));
    }
    s.push_str("<h2>How to read the columns</h2>\n<dl>\n");
    // The cost breakdown's first columns are the table's.
    let columns = COLUMNS
        .iter()
        .chain(&COST_COLUMNS[3..])
        .map(|c| (c.title_for("baseline"), c.meaning.to_string()));
    let marks = Mark::ALL
        .into_iter()
        .map(|m| (m.label().to_string(), m.meaning(results)));
    let charts = CHART_KEY
        .iter()
        .map(|&(name, what)| (name.to_string(), what.to_string()));
    for (name, what) in columns.chain(marks).chain(charts) {
        let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", esc(&name), esc(&what));
    }
    s.push_str("</dl>\n");
    machine_html(&mut s, results);
    s.push_str("</body>\n</html>\n");
    s
}

/// The "Machine and command" section: what ran, where and how, then the
/// plan's notes and the commands of outside servers.
fn machine_html(s: &mut String, results: &Results) {
    let c = &results.config;
    s.push_str("<h2>Machine and command</h2>\n<ul>\n");
    for (k, v) in setup_items(results) {
        let _ = writeln!(s, "<li><b>{k}</b>: {v}</li>");
    }
    for n in &c.notes {
        let _ = writeln!(s, "<li><b>note</b>: {}</li>", esc(n));
    }
    for o in &c.outside_servers {
        let _ = writeln!(
            s,
            "<li><b>{}</b>: <code>{}</code></li>",
            esc(&o.name),
            esc(&o.command)
        );
    }
    s.push_str("</ul>\n");
}

/// The setup of the bench, one item of that section each, already escaped:
/// command, date, machine, pinning, load, interference rule, version.
fn setup_items(results: &Results) -> [(&'static str, String); 7] {
    let m = &results.machine;
    let c = &results.config;
    [
        ("command", format!("<code>{}</code>", esc(&c.command))),
        ("date", esc(&c.started_at)),
        (
            "machine",
            esc(&format!(
                "{}, {} logical CPUs (allowed: {}), {} {}, {} memory",
                m.cpu_model, m.cores, m.allowed_cpus, m.kernel, m.arch, m.memory
            )),
        ),
        (
            "pinning",
            esc(&format!(
                "server on CPU {} ({} worker(s)), load on CPU {} ({} thread(s))",
                c.server_cpus, c.server_workers, c.client_cpus, c.load_threads
            )),
        ),
        (
            "load",
            esc(&format!(
                "{} s measured after {} s of discarded warm-up per run, {} repetition(s) interleaved, {}",
                c.duration_s,
                c.warmup_s,
                c.reps,
                c.rate
                    .map_or("closed loop".to_string(), |r| format!("open loop at {r} msgs/s"))
            )),
        ),
        (
            "interference",
            esc(&format!(
                "a run above {}% is repeated up to {} time(s){}",
                c.max_interference_pct,
                c.retries,
                c.preflight.as_ref().map_or(String::new(), |p| format!(
                    "; before the bench the pinned CPUs were {:.0}% busy",
                    p.busy_pct
                ))
            )),
        ),
        ("ringport", esc(&c.ringport_version)),
    ]
}

/// A table's footnotes, as a list under it.
fn notes_html(s: &mut String, t: &Table) {
    s.push_str("<ul class=\"notes\">\n");
    for f in &t.footnotes {
        let _ = writeln!(s, "<li>{}</li>", emphasis(&esc(f)));
    }
    s.push_str("</ul>\n");
}

fn table_html(s: &mut String, t: &Table, columns: &[Column]) {
    s.push_str("<div class=\"scroll\"><table>\n<thead><tr>");
    for h in &t.header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (cols, doubtful) in &t.rows {
        let class = if *doubtful { " class=\"doubtful\"" } else { "" };
        let _ = write!(s, "<tr{class}>");
        for (c, column) in cols.iter().zip(columns) {
            let text = emphasis(&esc(&c.replace("\\|", "|")));
            if column.align == Align::Left {
                let _ = write!(s, "<td class=\"text\">{text}</td>");
            } else {
                let _ = write!(s, "<td>{text}</td>");
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table></div>\n");
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `**text**` (the Markdown table's emphasis) as `<strong>`, in escaped text.
fn emphasis(s: &str) -> String {
    let mut out = String::new();
    let mut open = false;
    for (i, part) in s.split("**").enumerate() {
        if i > 0 {
            out.push_str(if open { "</strong>" } else { "<strong>" });
            open = !open;
        }
        out.push_str(part);
    }
    if open {
        out.push_str("</strong>");
    }
    out
}

/// The map of winners: for each kind of cell, who handled the most
/// messages/s and who spent the least CPU per message, and by how much.
fn winners_html(s: &mut String, results: &Results) {
    use crate::output::winners::{winners, Outcome};
    let all = winners(&results.results);
    if all.is_empty() {
        return;
    }
    s.push_str("<h2>Who wins where</h2>\n<div class=\"scroll\"><table class=\"winners\">\n");
    s.push_str("<tr><th>kind</th><th>cell</th><th>most messages/s</th><th>least server CPU per message</th></tr>\n");
    let who = |o: &Outcome<'_>, text: String| match o {
        Outcome::Lead(l) => format!(
            "<strong>{}</strong> ({:.2}× the next, {}: {:.2}–{:.2})",
            esc(&l.leaders.join(", ")),
            l.ratio,
            esc(l.next),
            l.ci[0],
            l.ci[1]
        ),
        Outcome::Tie | Outcome::LoadBound => esc(&text),
    };
    for w in &all {
        let _ = writeln!(
            s,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
            esc(w.kind),
            esc(&w.name),
            who(&w.msgs, w.msgs_text()),
            who(&w.cpu, w.cpu_text())
        );
    }
    s.push_str("</table></div>\n");
}

/// `--slo`: each target's capacity at the objective.
fn capacity_html(s: &mut String, results: &Results) {
    let Some(first) = results.capacity.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "<h2>Capacity at {}</h2>\n<p>The highest paced rate at which the objective held (latency from each message's due time, no error, nothing left behind), searched to within {}×.</p>\n<div class=\"scroll\"><table>\n<tr><th>model</th><th>cell</th><th>holds, msgs/s</th><th>breaks at</th><th>within</th><th>steps</th></tr>",
        esc(&first.objective),
        crate::capacity::PRECISION
    );
    for r in &results.capacity {
        let _ = writeln!(
            s,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.model),
            esc(&r.cell_text()),
            esc(&r.holds_text()),
            r.first_fail.map_or("—".into(), ringport_load::report::grouped),
            r.ratio.map_or("—".into(), |x| format!("{x:.2}×")),
            r.steps.len()
        );
    }
    s.push_str("</table></div>\n");
}

/// The SVG element of a document, for inlining into a page.
pub fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// The stylesheet every page of a bench carries inline.
pub const STYLE: &str = "<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.verdict { font-size: 1.05em; line-height: 1.5; background: #f3f6fa; border-left: 4px solid #0072b2; padding: 0.8em 1em; }
.why { line-height: 1.5; background: #f7f7f2; border-left: 4px solid #999; padding: 0.6em 1em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: right; white-space: nowrap; }
th { background: #eee; } td.text { text-align: left; white-space: normal; }
tr.doubtful td { background: #fff3e0; }
ul.notes { font-size: 0.9em; color: #444; }
figure { margin: 1em 0; overflow-x: auto; } figure svg { max-width: 100%; height: auto; }
dt { font-weight: bold; margin-top: 0.4em; } dd { margin-left: 1.5em; }
code { background: #f4f4f4; padding: 0 0.2em; }
</style>
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_maps_who_wins_each_kind_of_cell() {
        use crate::figure::Figure;
        use crate::output::fixtures::{results, row};
        let measured = |model: &str, msgs: [f64; 3], cpu: [f64; 3]| {
            let mut r = row(model, 64, Some(msgs[1]));
            r.reps = 3;
            for (f, v) in [(Figure::MsgsPerSec, msgs), (Figure::ServerCpu, cpu)] {
                r.figure_mut(f).reps = v.to_vec();
                r.figure_mut(f).median = Some(v[1]);
            }
            r
        };
        let r = results(
            vec![
                measured("threaded", [40.0, 50.0, 60.0], [14.0, 15.0, 16.0]),
                measured("epoll", [100.0, 110.0, 120.0], [7.0, 7.5, 8.0]),
            ],
            &["threaded", "epoll"],
        );
        let page = html(&r, &[]);
        assert!(page.contains("<h2>Who wins where</h2>"), "{page}");
        assert!(
            page.contains("<td class=\"text\">small messages</td><td class=\"text\">64 connections × 64 B</td><td class=\"text\"><strong>epoll</strong> (2.20× the next, threaded: 1.67–3.00)</td>"),
            "{page}"
        );
    }

    #[test]
    fn text_is_escaped_and_emphasis_is_balanced() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(
            emphasis("x **DISTURBED** y"),
            "x <strong>DISTURBED</strong> y"
        );
        assert_eq!(emphasis("**open"), "<strong>open</strong>");
    }
}
