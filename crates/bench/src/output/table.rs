//! The Markdown table printed at the end of a bench and kept in
//! `summary.md` (and, as cells, in `report.html`): one line per row, its
//! notes column, and the footnotes that explain just the marks it used.

use super::columns::{Column, COLUMNS, VS_BASE};
use super::{CLIENT_BOUND_PCT, STEAL_NOTE_PCT};
use crate::figure::Figure;
use crate::notes::Note;
use crate::order_stats::{order_coverage, within_noise, CONFIDENCE, NOISE_THRESHOLD};
use crate::stats::{baseline, Row, PREFERRED_BASELINE};
use crate::{Results, UNAVAILABLE};
use std::fmt::Write as _;

/// `1234567` as `1,234,567`.
fn grouped(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `median ±N%`: the larger distance from the median to an end of its 95%
/// interval, in percent of the median; just the median without an interval.
pub fn with_spread(text: String, median: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (median, ci) {
        (Some(m), Some([lo, hi])) if m > 0.0 => {
            let pct = (hi - m).max(m - lo).max(0.0) / m * 100.0;
            if pct < 10.0 {
                format!("{text} ±{pct:.1}%")
            } else {
                format!("{text} ±{pct:.0}%")
            }
        }
        _ => text,
    }
}

/// A ratio for the table: `1.25× (1.18–1.31)`, `≈ (0.97–1.05)` within
/// noise, `1.25× (1 rep)` when there is no spread to judge it by.
pub fn ratio_text(ratio: Option<f64>, ci: Option<[f64; 2]>) -> Option<String> {
    let x = ratio?;
    Some(match ci {
        None => format!("{x:.2}× (1 rep)"),
        Some([lo, hi]) if within_noise(x, ci) => format!("≈ ({lo:.2}–{hi:.2})"),
        Some([lo, hi]) => format!("{x:.2}× ({lo:.2}–{hi:.2})"),
    })
}

/// A run is disturbed above this much interference unless the plan says otherwise.
fn interference_limit(results: &Results) -> f64 {
    results.config.max_interference_pct
}

/// The table, as cells of text (Markdown emphasis allowed), and its footnotes.
pub struct Table {
    /// Column titles, those of [`COLUMNS`].
    pub header: Vec<String>,
    /// One line per row of the results, and whether its figures are doubtful.
    pub rows: Vec<(Vec<String>, bool)>,
    /// What the columns and marks mean, a line each.
    pub footnotes: Vec<String>,
}

/// The table with its footnotes: printed at the end and part of `summary.md`.
pub fn table_markdown(results: &Results) -> String {
    let t = table(results);
    let mut s = format!("| {} |\n", t.header.join(" | "));
    let separator: Vec<&str> = COLUMNS.iter().map(Column::separator).collect();
    let _ = writeln!(s, "|{}|", separator.join("|"));
    for (cols, _) in &t.rows {
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    }
    s.push('\n');
    for f in &t.footnotes {
        let _ = writeln!(s, "- {f}");
    }
    s
}

/// The table's contents, for Markdown and HTML alike.
pub fn table(results: &Results) -> Table {
    let rows = &results.results;
    let (base, base_is_tokio) =
        baseline(&results.config.models, results.config.baseline.as_deref()).unwrap_or(("", false));
    let header: Vec<String> = COLUMNS.iter().map(|c| c.title_for(base)).collect();
    let mut marks = Marks::default();
    let lines = rows
        .iter()
        .map(|r| (row_cells(r, base, &mut marks), r.doubtful()))
        .collect();
    Table {
        header,
        rows: lines,
        footnotes: footnotes(results, base, base_is_tokio, &marks),
    }
}

/// Which marks the table used, so that its footnotes explain just those.
#[derive(Default)]
struct Marks {
    na: bool,
    serialized: bool,
    client_bound: bool,
    steal: bool,
    disturbed: bool,
    slow_start: bool,
    churn: bool,
    starved: bool,
}

/// One row of the table.
fn row_cells(r: &Row, base: &str, marks: &mut Marks) -> Vec<String> {
    let notes = notes_column(r, marks);
    let ran = r.reps > 0;
    let mut na = |v: Option<String>| -> String {
        match v {
            Some(v) => v,
            None if ran => {
                marks.na = true;
                "n/a".into()
            }
            None => "—".into(),
        }
    };
    let is_base = r.model == base;
    let ratio_col = |f: Figure| {
        if is_base && ran {
            Some("baseline".to_string())
        } else {
            ratio_text(r.figure(f).ratio, r.figure(f).ratio_ci)
        }
    };
    // The median, with its spread when the row keeps one.
    let spread = |f: Figure, text: fn(f64) -> String| {
        let x = r.figure(f);
        x.median.map(|v| with_spread(text(v), x.median, x.ci))
    };
    let plain = |f: Figure, text: fn(f64) -> String| r.median(f).map(text);
    // One cell per column of the registry, in its order.
    let cols: [String; COLUMNS.len()] = [
        r.model.clone(),
        r.connections.to_string(),
        match r.per_connection {
            Some(n) => format!("{} ({n}/conn)", r.size),
            None => r.size.to_string(),
        },
        na(spread(Figure::MsgsPerSec, grouped)),
        na(ratio_col(Figure::MsgsPerSec)),
        na(ratio_col(Figure::ServerCpu)),
        na(plain(Figure::MbPerSec, |v| format!("{v:.2}"))),
        na(plain(Figure::P50, |v| format!("{v:.0}"))),
        na(spread(Figure::P99, |v| format!("{v:.0}"))),
        na(spread(Figure::ServerCpu, |v| format!("{v:.2}"))),
        na(plain(Figure::ServerPeakRss, |k| {
            format!("{:.1}", k / 1024.0)
        })),
        na(plain(Figure::ClientCpu, |v| format!("{v:.0}"))),
        na(r.interference_pct.map(|v| format!("{v:.1}"))),
        notes.join(", "),
    ];
    cols.to_vec()
}

/// The notes column of a row: its marks, then what went wrong, then the
/// row's own notes less those the marks already say.
fn notes_column(r: &Row, marks: &mut Marks) -> Vec<String> {
    let mut notes = Vec::new();
    if r.disturbed {
        marks.disturbed = true;
        notes.push(format!(
            "**DISTURBED** ({:.0}% interference)",
            r.interference_pct.unwrap_or(0.0)
        ));
    } else if r.retried > 0 {
        notes.push(format!("{} run(s) retried", r.retried));
    }
    if r.slow_starts > 0 {
        marks.slow_start = true;
        notes.push(format!(
            "**SLOW START** ({} of {} reps)",
            r.slow_starts, r.reps
        ));
    }
    if r.serialized {
        marks.serialized = true;
        notes.push("serialized".to_string());
    }
    for n in &r.notes {
        if let Note::Starved {
            starved,
            reps,
            min,
            median,
            ..
        } = n
        {
            marks.starved = true;
            notes.push(format!(
                "**STARVED** ({starved} of {reps} reps: slowest conn {} of median {} msgs/s)",
                grouped(*min),
                grouped(*median)
            ));
        }
    }
    if r.per_connection.is_some() {
        marks.churn = true;
        let per_sec = r
            .median(Figure::ConnsPerSec)
            .map_or_else(|| UNAVAILABLE.to_string(), grouped);
        let cpu = r
            .median(Figure::ServerCpuPerConn)
            .map_or_else(|| UNAVAILABLE.to_string(), |v| format!("{v:.1}"));
        notes.push(format!("churn: {per_sec} conns/s, {cpu} µs CPU/conn"));
    }
    if super::client_bound(r) {
        marks.client_bound = true;
        notes.push("client-bound?".to_string());
    }
    if let Some(p) = r.median(Figure::HostSteal).filter(|&p| p >= STEAL_NOTE_PCT) {
        marks.steal = true;
        notes.push(format!("steal {p:.0}%"));
    }
    if r.mismatches > 0 {
        notes.push(format!("**{} MISMATCHED**", r.mismatches));
    }
    if r.errors > r.mismatches {
        notes.push(format!("**{} errors**", r.errors - r.mismatches));
    }
    for n in &r.notes {
        match n {
            Note::Run(text) => notes.push(text.replace('|', "\\|").replace('\n', " ")),
            // The marks and counts above already say these.
            Note::EchoMismatch
            | Note::ConnectionErrors
            | Note::Disturbed { .. }
            | Note::SlowStart { .. }
            | Note::Starved { .. } => {}
        }
    }
    notes
}

/// What the columns and the marks mean.
fn footnotes(results: &Results, base: &str, base_is_tokio: bool, marks: &Marks) -> Vec<String> {
    let rows = &results.results;
    let mut s = String::new();
    // The ratio's footnote names its column as the table titles it.
    let vs = VS_BASE.title_for(base);
    let reps = results.config.reps;
    if base_is_tokio {
        let _ = writeln!(
            s,
            "- {vs}: the median relative to {base}'s on the same load, with its interval (from both medians' intervals). **≈**: within noise, the interval includes no difference or the ratio is within {:.0}% of 1; only the others are results.",
            NOISE_THRESHOLD * 100.0
        );
    } else if !base.is_empty() {
        let _ = writeln!(
            s,
            "- {vs}: {PREFERRED_BASELINE} is not in this run, so ratios are to {base}, the first model, on the same load, with their interval. **≈**: within noise (the interval includes no difference, or the ratio is within {:.0}% of 1).",
            NOISE_THRESHOLD * 100.0
        );
    }
    if reps >= 2 {
        let _ = writeln!(
            s,
            "- Each figure is the median of {reps} repetitions; **±** is its confidence interval, distribution-free: at 95% from 6 repetitions on, and below that the lowest to the highest run ({:.0}% confidence at {reps}). Latency is from a message's first byte written to its last byte verified.",
            order_coverage(reps, 1).min(CONFIDENCE) * 100.0
        );
    } else {
        let _ = writeln!(
            s,
            "- Each figure is one repetition's. Latency is from a message's first byte written to its last byte verified."
        );
    }
    if reps < 2 {
        let _ = writeln!(
            s,
            "- (1 rep): with one repetition there is no spread, so no difference can be told from noise; use --reps 3 or more."
        );
    }
    let _ = writeln!(
        s,
        "- interference: the share of the pinned CPUs that went to neither this server nor the load (other processes, host steal), the worst repetition's. A run above {:.0}% is run again (up to {} time(s)); **DISTURBED** cells stayed above it: their figures are doubtful.",
        interference_limit(results),
        results.config.retries
    );
    if marks.serialized {
        let _ = writeln!(
            s,
            "- serialized: the server handles one client at a time; the other connections wait in the backlog, so its figures above one connection measure the queue, not the server."
        );
    }
    if marks.churn {
        let _ = writeln!(
            s,
            "- churn (size `(N/conn)`): each connection carries N messages, is closed and is replaced by a new one, so the cell measures accepts and closes as much as echoes; conns/s counts the connections replaced, and µs CPU/conn is the server's CPU per connection, its messages included."
        );
    }
    if marks.steal {
        let _ = writeln!(
            s,
            "- steal: the hypervisor took this share of the pinned CPUs during the run (median); above {STEAL_NOTE_PCT:.0}% the figures are unreliable: run again on a quieter host."
        );
    }
    if marks.client_bound {
        let _ = writeln!(
            s,
            "- client-bound?: the load used ≥ {CLIENT_BOUND_PCT:.0}% of its CPUs; the server may be faster than shown."
        );
    }
    if marks.disturbed {
        let _ = writeln!(
            s,
            "- Some cells were disturbed by other work on the pinned CPUs: consider re-running on a quiet system."
        );
    }
    if marks.slow_start {
        let _ = writeln!(
            s,
            "- **SLOW START**: in these repetitions the first 1/{} of the measured run verified messages at under {:.0}% of the rate of the rest: the warm-up did not reach a steady state, so the cell's msgs/s and p99 include a start, and no claim is made from it. results.json's notes give each one's rate and p99; a longer --warmup may help.",
            crate::measure::STEADY_INTERVALS,
            crate::measure::SLOW_START_RATIO * 100.0
        );
    }
    if marks.starved {
        let _ = writeln!(
            s,
            "- **STARVED**: in these repetitions the slowest connection verified under {:.0}% of the median connection's messages per second: the server did not share itself evenly, so its msgs/s hides connections that waited. results.json gives per_connection_rate_min, _median and _jain (Jain's fairness index: 1 even, 1/n one connection got everything).",
            crate::stats::STARVED_RATIO * 100.0
        );
    }
    if marks.na {
        let _ = writeln!(s, "- n/a: {UNAVAILABLE}, or no echo came back to measure.");
    }
    if rows.iter().any(|r| r.reps == 0) {
        let _ = writeln!(s, "- —: the server did not run; see notes.");
    }
    s.lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::{results, row};

    #[test]
    fn ratios_are_against_tokio_when_it_ran() {
        let models = ["blocking", "tokio", "threaded"].map(String::from);
        assert_eq!(baseline(&models, None), Some(("tokio", true)));
        assert_eq!(
            baseline(&models, Some("threaded")),
            Some(("threaded", true))
        );
        let rows = vec![row("blocking", 1, Some(50.0)), row("tokio", 1, Some(200.0))];
        let r = results(rows, &["blocking", "tokio"]);
        let table = table_markdown(&r);
        assert!(table.contains("| vs tokio |"), "{table}");
        assert!(table.contains("| 0.25× (1 rep) |"), "{table}");
        assert!(
            table.contains("relative to tokio's on the same load"),
            "{table}"
        );
    }

    #[test]
    fn without_tokio_ratios_are_against_the_first_model_and_say_so() {
        let rows = vec![
            row("blocking", 64, Some(100.0)),
            row("threaded", 64, Some(300.0)),
            row("mine", 64, None),
        ];
        let r = results(rows, &["blocking", "threaded", "mine"]);
        let table = table_markdown(&r);
        assert!(table.contains("| vs blocking |"), "{table}");
        assert!(table.contains("| 3.00× (1 rep) |"), "{table}");
        assert!(table.contains("tokio is not in this run"), "{table}");
        assert!(table.contains("serialized"), "{table}");
        assert!(table.contains("the server did not run"), "{table}");
        assert_eq!(table.lines().filter(|l| l.starts_with("| ")).count(), 4);
    }

    #[test]
    fn the_header_and_separator_come_from_the_registry_as_they_were() {
        let r = results(vec![row("tokio", 1, Some(200.0))], &["tokio"]);
        let table = table_markdown(&r);
        let mut lines = table.lines();
        assert_eq!(
            lines.next(),
            Some("| model | conns | size | msgs/s | vs tokio | CPU/msg vs tokio | MB/s | p50 µs | p99 µs | server CPU s per M msgs | server peak RSS MiB | client CPU % | interference % | notes |")
        );
        assert_eq!(
            lines.next(),
            Some("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(1_234_567.4), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1000.0), "1,000");
    }
}
