//! The Markdown table printed at the end of a bench and kept in
//! `summary.md` (and, as cells, in `report.html`): one line per row, its
//! notes column, and the footnotes that explain just the marks it used.

use super::columns::{Column, COLUMNS, INTERFERENCE, VS_BASE};
use super::marks::{Mark, Used};
use super::STEAL_NOTE_PCT;
use crate::figure::Figure;
use crate::matrix::size_text;
use crate::notes::Note;
use crate::order_stats::{order_coverage, within_noise, CONFIDENCE};
use crate::stats::{baseline, Row, PREFERRED_BASELINE};
use crate::{Results, UNAVAILABLE};
use ringport_load::report::grouped;
use std::fmt::Write as _;

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
    let mut marks = Used::default();
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

/// One row of the table.
fn row_cells(r: &Row, base: &str, marks: &mut Used) -> Vec<String> {
    let notes = notes_column(r, marks);
    let ran = r.reps > 0;
    let is_base = r.model == base;
    let mut ratio_col = |f: Figure| {
        if is_base && ran {
            Some("baseline".to_string())
        } else {
            let text = ratio_text(r.figure(f).ratio, r.figure(f).ratio_ci)?;
            if text.starts_with(Mark::WithinNoise.label()) {
                marks.mark(Mark::WithinNoise);
            }
            Some(text)
        }
    };
    let (vs_msgs, vs_cpu) = (ratio_col(Figure::MsgsPerSec), ratio_col(Figure::ServerCpu));
    let mut na = |v: Option<String>| -> String {
        match v {
            Some(v) => v,
            None if ran => marks.mark(Mark::NotAvailable),
            None => marks.mark(Mark::DidNotRun),
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
            Some(n) => format!("{} ({n}/conn)", size_text(r.size)),
            None => size_text(r.size),
        },
        na(spread(Figure::MsgsPerSec, grouped)),
        na(vs_msgs),
        na(vs_cpu),
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
fn notes_column(r: &Row, marks: &mut Used) -> Vec<String> {
    let mut notes = Vec::new();
    if r.disturbed {
        notes.push(format!(
            "{} ({:.0}% interference)",
            marks.mark(Mark::Disturbed),
            r.interference_pct.unwrap_or(0.0)
        ));
    } else if r.retried > 0 {
        notes.push(format!("{} run(s) retried", r.retried));
    }
    if r.slow_starts > 0 {
        notes.push(format!(
            "{} ({} of {} reps)",
            marks.mark(Mark::SlowStart),
            r.slow_starts,
            r.reps
        ));
    }
    if r.serialized {
        notes.push(marks.mark(Mark::Serialized));
    }
    for n in &r.notes {
        if let Note::GeneratorLate { late, reps, .. } = n {
            notes.push(format!(
                "{} ({late} of {reps} reps)",
                marks.mark(Mark::GeneratorLate)
            ));
        }
        if let Note::Starved {
            starved,
            reps,
            min,
            median,
            ..
        } = n
        {
            notes.push(format!(
                "{} ({starved} of {reps} reps: slowest conn {} of median {} msgs/s)",
                marks.mark(Mark::Starved),
                grouped(*min),
                grouped(*median)
            ));
        }
    }
    if r.per_connection.is_some() {
        let per_sec = r
            .median(Figure::ConnsPerSec)
            .map_or_else(|| UNAVAILABLE.to_string(), grouped);
        let cpu = r
            .median(Figure::ServerCpuPerConn)
            .map_or_else(|| UNAVAILABLE.to_string(), |v| format!("{v:.1}"));
        let churn = marks.mark(Mark::Churn);
        notes.push(format!("{churn}: {per_sec} conns/s, {cpu} µs CPU/conn"));
    }
    if super::client_bound(r) {
        notes.push(marks.mark(Mark::ClientBound));
    }
    if let Some(p) = r.median(Figure::HostSteal).filter(|&p| p >= STEAL_NOTE_PCT) {
        notes.push(format!("{} {p:.0}%", marks.mark(Mark::Steal)));
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
            | Note::GeneratorLate { .. }
            | Note::Starved { .. } => {}
        }
    }
    notes
}

/// What the columns and the marks mean: the ratio's baseline, how figures
/// are summed up over repetitions, the interference column, then each mark
/// the table used ([`Mark`]).
fn footnotes(results: &Results, base: &str, base_is_tokio: bool, marks: &Used) -> Vec<String> {
    let mut notes = Vec::new();
    // The ratio's footnote names its column as the table titles it.
    let vs = VS_BASE.title_for(base);
    if base_is_tokio {
        notes.push(format!(
            "{vs}: {}; the baseline is {base}.",
            VS_BASE.meaning
        ));
    } else if !base.is_empty() {
        notes.push(format!(
            "{vs}: {}; {PREFERRED_BASELINE} is not in this run, so the baseline is {base}, the first model.",
            VS_BASE.meaning
        ));
    }
    let reps = results.config.reps;
    if reps >= 2 {
        notes.push(format!(
            "Each figure is the median of {reps} repetitions; **±** is its confidence interval, distribution-free: at 95% from 6 repetitions on, and below that the lowest to the highest run ({:.0}% confidence at {reps}). Latency is from a message's first byte written to its last byte verified.",
            order_coverage(reps, 1).min(CONFIDENCE) * 100.0
        ));
    } else {
        notes.push(
            "Each figure is one repetition's. Latency is from a message's first byte written to its last byte verified. (1 rep): with one repetition there is no spread, so no difference can be told from noise; use --reps 3 or more."
                .to_string(),
        );
    }
    notes.push(format!(
        "{}: {}. A run above {:.0}% is run again (up to {} time(s)).",
        INTERFERENCE.title,
        INTERFERENCE.meaning,
        results.config.max_interference_pct,
        results.config.retries
    ));
    notes.extend(
        Mark::ALL
            .into_iter()
            .filter(|&m| marks.has(m))
            .map(|m| m.footnote(results)),
    );
    notes
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
            table.contains("msgs/s over the baseline model's on the same load")
                && table.contains("the baseline is tokio."),
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
