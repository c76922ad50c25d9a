//! The files a bench leaves: `results.json`, `results.csv`, `summary.md`,
//! and (from `chart.rs`) `chart.svg` and `latency.svg`; plus the Markdown
//! table printed at the end.

use crate::figure::{Figure, Kind};
use crate::matrix::Cell;
use crate::stats::Row;
use crate::{stats, Results, UNAVAILABLE};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A client using this much of its CPUs may be what limits the figures.
const CLIENT_BOUND_PCT: f64 = 90.0;
/// Above this share of the pinned CPUs taken by the hypervisor, a cell's
/// figures say more about the host than about the server.
const STEAL_NOTE_PCT: f64 = 5.0;

/// One line per row, under a header; a missing figure is an empty field.
/// The columns are the keys of a row of `results.json`, less the
/// repetitions and `ci_level`, with each interval as `_ci_lo` and `_ci_hi`.
pub fn to_csv(rows: &[Row]) -> String {
    let mut s = csv_header();
    s.push('\n');
    for r in rows {
        let values: Vec<String> = csv_columns(r).into_iter().map(|(_, v)| v).collect();
        s.push_str(&values.join(","));
        s.push('\n');
    }
    s
}

/// The CSV header: the names of any row's columns.
pub fn csv_header() -> String {
    let names: Vec<String> = csv_columns(&Row::default())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.join(",")
}

/// A row's CSV columns, name and value, in order. The one place that says
/// what the CSV holds, so the header and the lines cannot drift apart.
fn csv_columns(r: &Row) -> Vec<(String, String)> {
    let real = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let interval = |key: &str, ci: Option<[f64; 2]>| {
        [
            (format!("{key}_ci_lo"), real(ci.map(|c| c[0]))),
            (format!("{key}_ci_hi"), real(ci.map(|c| c[1]))),
        ]
    };
    let mut c: Vec<(String, String)> = vec![
        ("model".into(), csv_field(&r.model)),
        ("connections".into(), r.connections.to_string()),
        ("size".into(), r.size.to_string()),
    ];
    for f in Figure::ALL.into_iter().filter(|f| f.in_block()) {
        let median = r.median(f);
        let value = match f.kind() {
            Kind::Real => real(median),
            Kind::Count => median.map_or(String::new(), |k| (k as u64).to_string()),
        };
        c.push((f.key().into(), value));
    }
    c.extend([
        ("serialized".into(), r.serialized.to_string()),
        ("reps".into(), r.reps.to_string()),
        ("errors".into(), r.errors.to_string()),
        ("mismatches".into(), r.mismatches.to_string()),
        ("clean".into(), r.clean.to_string()),
        ("notes".into(), csv_field(&r.notes.join("; "))),
    ]);
    for f in Figure::KEPT {
        let (key, x) = (f.key(), r.figure(f));
        c.push((format!("{key}_min"), real(x.min)));
        c.push((format!("{key}_max"), real(x.max)));
        c.extend(interval(key, x.ci));
    }
    c.push((
        "baseline".into(),
        csv_field(r.baseline.as_deref().unwrap_or("")),
    ));
    for (f, key) in Figure::RATIOS {
        let x = r.figure(f);
        c.push((key.into(), real(x.ratio)));
        c.extend(interval(key, x.ratio_ci));
    }
    c.extend([
        ("interference_pct".into(), real(r.interference_pct)),
        ("disturbed".into(), r.disturbed.to_string()),
        ("retried".into(), r.retried.to_string()),
        (
            "per_connection".into(),
            r.per_connection.map_or(String::new(), |n| n.to_string()),
        ),
    ]);
    for f in Figure::APPENDED {
        c.push((f.key().into(), real(r.median(f))));
    }
    c.push(("slow_starts".into(), r.slow_starts.to_string()));
    c
}

/// Quote a field that holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub use crate::stats::{baseline, PREFERRED_BASELINE};

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
        Some([lo, hi]) if stats::within_noise(x, ci) => format!("≈ ({lo:.2}–{hi:.2})"),
        Some([lo, hi]) => format!("{x:.2}× ({lo:.2}–{hi:.2})"),
    })
}

/// A run is disturbed above this much interference unless the plan says otherwise.
fn interference_limit(results: &Results) -> f64 {
    results.config.max_interference_pct
}

/// The table, as cells of text (Markdown emphasis allowed), and its footnotes.
pub struct Table {
    /// Column names.
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
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
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
    let header: Vec<String> = [
        "model".to_string(),
        "conns".into(),
        "size".into(),
        "msgs/s".into(),
        format!("vs {base}"),
        format!("CPU/msg vs {base}"),
        "MB/s".into(),
        "p50 µs".into(),
        "p99 µs".into(),
        "server CPU s per M msgs".into(),
        "server peak RSS MiB".into(),
        "client CPU %".into(),
        "interference %".into(),
        "notes".into(),
    ]
    .into();
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
}

/// One row of the table.
fn row_cells(r: &Row, base: &str, marks: &mut Marks) -> Vec<String> {
    let notes = row_notes(r, marks);
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
    let cols = [
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
fn row_notes(r: &Row, marks: &mut Marks) -> Vec<String> {
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
    if r.median(Figure::ClientCpu)
        .is_some_and(|p| p >= CLIENT_BOUND_PCT)
    {
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
        if !n.starts_with("ECHO MISMATCH")
            && !n.starts_with("connection errors")
            && !n.starts_with("DISTURBED")
            && !n.starts_with("SLOW START")
        {
            notes.push(n.replace('|', "\\|").replace('\n', " "));
        }
    }
    notes
}

/// What the columns and the marks mean.
fn footnotes(results: &Results, base: &str, base_is_tokio: bool, marks: &Marks) -> Vec<String> {
    let rows = &results.results;
    let mut s = String::new();
    let reps = results.config.reps;
    if base_is_tokio {
        let _ = writeln!(
            s,
            "- vs {base}: the median relative to {base}'s on the same load, with its interval (from both medians' intervals). **≈**: within noise, the interval includes no difference or the ratio is within {:.0}% of 1; only the others are results.",
            stats::NOISE_THRESHOLD * 100.0
        );
    } else if !base.is_empty() {
        let _ = writeln!(
            s,
            "- vs {base}: {PREFERRED_BASELINE} is not in this run, so ratios are to {base}, the first model, on the same load, with their interval. **≈**: within noise (the interval includes no difference, or the ratio is within {:.0}% of 1).",
            stats::NOISE_THRESHOLD * 100.0
        );
    }
    if reps >= 2 {
        let _ = writeln!(
            s,
            "- Each figure is the median of {reps} repetitions; **±** is its confidence interval, distribution-free: at 95% from 6 repetitions on, and below that the lowest to the highest run ({:.0}% confidence at {reps}). Latency is from a message's first byte written to its last byte verified.",
            stats::order_coverage(reps, 1).min(stats::CONFIDENCE) * 100.0
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

fn cell_name(r: &Row) -> String {
    let unit = if r.connections == 1 {
        "connection"
    } else {
        "connections"
    };
    match r.per_connection {
        Some(n) => format!(
            "{} {unit} × {} B, replaced after {n} message{}",
            r.connections,
            r.size,
            if n == 1 { "" } else { "s" }
        ),
        None => format!("{} {unit} × {} B", r.connections, r.size),
    }
}

/// What the run shows, in plain words: only the differences that survive
/// the noise, and which cells could not be measured cleanly.
pub fn verdict(results: &Results) -> String {
    let rows = &results.results;
    let (base, _) =
        baseline(&results.config.models, results.config.baseline.as_deref()).unwrap_or(("", false));
    let mut sentences: Vec<String> = Vec::new();
    if results.config.reps < 2 {
        sentences.push(
            "With one repetition there is no spread, so no difference can be told from noise: run with --reps 3 or more before reading anything into the ratios.".into(),
        );
    }
    let mut cells: Vec<Cell> = Vec::new();
    for r in rows {
        if !cells.contains(&r.cell()) {
            cells.push(r.cell());
        }
    }
    let mut quiet_cells = Vec::new();
    for &cell in &cells {
        let in_cell: Vec<&Row> = rows.iter().filter(|r| r.cell() == cell).collect();
        match cell_verdict(&in_cell, base) {
            CellVerdict::Claims(sentence) => sentences.push(sentence),
            CellVerdict::WithinNoise(name) if results.config.reps >= 2 => quiet_cells.push(name),
            CellVerdict::WithinNoise(_) | CellVerdict::NoBaseline => {}
        }
    }
    if !quiet_cells.is_empty() {
        sentences.push(format!(
            "At {} every model measured cleanly is within noise of {base}.",
            quiet_cells.join(" and at ")
        ));
    }
    sentences.extend(unclean_sentences(rows));
    if sentences.is_empty() {
        sentences.push(format!("No model could be compared with {base}."));
    }
    sentences.push(format!(
        "Differences within noise (an interval that includes no difference, or under {:.0}%) are not claimed.",
        stats::NOISE_THRESHOLD * 100.0
    ));
    sentences.join(" ")
}

/// What one cell shows against the baseline.
enum CellVerdict {
    /// A sentence of the differences that survive the noise.
    Claims(String),
    /// None do; the cell's name.
    WithinNoise(String),
    /// The baseline did not run cleanly here: nothing can be compared.
    NoBaseline,
}

fn cell_verdict(in_cell: &[&Row], base: &str) -> CellVerdict {
    let Some(base_row) = in_cell.iter().find(|r| r.model == base && r.reps > 0) else {
        return CellVerdict::NoBaseline;
    };
    if base_row.doubtful() {
        return CellVerdict::NoBaseline;
    }
    let load_bound = in_cell.iter().any(|r| {
        r.median(Figure::ClientCpu)
            .is_some_and(|p| p >= CLIENT_BOUND_PCT)
    });
    let mut claims = Vec::new();
    let mut msgs_claimed = false;
    for r in in_cell {
        if r.model == base || r.reps == 0 || r.doubtful() {
            continue;
        }
        // Above one connection a serialized server measures its queue.
        if r.serialized && r.connections > 1 {
            continue;
        }
        let mut parts = Vec::new();
        let msgs = r.figure(Figure::MsgsPerSec);
        if let (Some(x), Some([lo, hi])) = (msgs.ratio, msgs.ratio_ci) {
            if !stats::within_noise(x, Some([lo, hi])) {
                parts.push(format!(
                    "handled {x:.2}× {base}'s messages/s ({lo:.2}–{hi:.2})"
                ));
                msgs_claimed = true;
            }
        }
        let cpu = r.figure(Figure::ServerCpu);
        if let (Some(x), Some([lo, hi])) = (cpu.ratio, cpu.ratio_ci) {
            if !stats::within_noise(x, Some([lo, hi])) {
                parts.push(format!(
                    "needed {x:.2}× {base}'s CPU per message ({lo:.2}–{hi:.2})"
                ));
            }
        }
        if !parts.is_empty() {
            claims.push(format!("{} {}", r.model, parts.join(" and ")));
        }
    }
    let name = cell_name(base_row);
    if claims.is_empty() {
        return CellVerdict::WithinNoise(name);
    }
    let caveat = if msgs_claimed && load_bound {
        " (the load was near its limit there, so msgs/s may understate the fastest servers)"
    } else {
        ""
    };
    CellVerdict::Claims(format!("At {name}, {}{caveat}.", claims.join("; ")))
}

/// The sentences that name the cells not measured cleanly, and those that
/// did not run.
fn unclean_sentences(rows: &[Row]) -> Vec<String> {
    let doubtful: Vec<String> = rows
        .iter()
        .filter(|r| r.reps > 0 && r.doubtful())
        .map(|r| {
            let why = if r.mismatches > 0 {
                "mismatched echoes".to_string()
            } else if r.errors > 0 {
                format!("{} connection errors", r.errors)
            } else if r.disturbed {
                format!("{:.0}% interference", r.interference_pct.unwrap_or(0.0))
            } else if r.slow_starts > 0 {
                format!(
                    "a slow start in {} of {} repetition(s)",
                    r.slow_starts, r.reps
                )
            } else {
                "a run failed".to_string()
            };
            format!("{} at {} ({why})", r.model, cell_name(r))
        })
        .collect();
    let not_run: Vec<String> = rows
        .iter()
        .filter(|r| r.reps == 0)
        .map(|r| format!("{} at {}", r.model, cell_name(r)))
        .collect();
    let mut out = Vec::new();
    if !doubtful.is_empty() {
        out.push(format!(
            "Not measured cleanly, so left out of the claims above: {}.",
            doubtful.join("; ")
        ));
    }
    if !not_run.is_empty() {
        out.push(format!("Did not run: {}.", not_run.join("; ")));
    }
    out
}

/// The whole `summary.md`: the verdict, the setup, then the table.
pub fn summary_markdown(results: &Results) -> String {
    let m = &results.machine;
    let c = &results.config;
    let mut s = String::from("# ringport bench\n\n");
    s.push_str(&verdict(results));
    s.push_str("\n\n");
    let _ = writeln!(s, "- date: {}", c.started_at);
    let _ = writeln!(
        s,
        "- machine: {}, {} logical CPUs (allowed: {}), {} {}, {} memory",
        m.cpu_model, m.cores, m.allowed_cpus, m.kernel, m.arch, m.memory
    );
    let _ = writeln!(s, "- command: `{}`", c.command);
    let _ = writeln!(
        s,
        "- load: {} s measured after {} s of discarded warm-up, per run; one message in flight per connection; every echoed byte verified",
        c.duration_s, c.warmup_s
    );
    let _ = writeln!(
        s,
        "- pinning: server on CPU {} ({} worker(s)), load on CPU {} ({} thread(s))",
        c.server_cpus, c.server_workers, c.client_cpus, c.load_threads
    );
    if let Some(p) = &c.preflight {
        let _ = writeln!(
            s,
            "- before the bench: the pinned CPUs were {:.0}% busy over one second",
            p.busy_pct
        );
    }
    for n in &c.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    s.push('\n');
    s.push_str(&table_markdown(results));
    s
}

/// `2023-11-14T22:13:20Z`.
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `bench-results/2023-11-14T22-13-20Z`: no colons, which some file systems refuse.
pub fn default_out_dir(t: SystemTime) -> PathBuf {
    Path::new("bench-results").join(utc_timestamp(t).replace(':', "-"))
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigRecord, Machine};
    use std::time::Duration;

    fn row(model: &str, conns: usize, msgs: Option<f64>) -> Row {
        let mut r = Row {
            model: model.into(),
            connections: conns,
            size: 64,
            serialized: model == "blocking",
            reps: usize::from(msgs.is_some()),
            errors: 0,
            mismatches: 0,
            clean: msgs.is_some(),
            notes: vec![],
            ..Row::default()
        };
        let medians = [
            (Figure::MsgsPerSec, msgs),
            (Figure::MbPerSec, msgs.map(|m| m * 128.0 / 1e6)),
            (Figure::P50, Some(20.0)),
            (Figure::P99, Some(80.0)),
            (Figure::ServerCpu, Some(3.5)),
            (Figure::ServerUser, Some(0.5)),
            (Figure::ServerSys, Some(3.0)),
            (Figure::ServerCpusBusy, Some(3.6)),
            (Figure::ServerPeakRss, Some(4096.0)),
            (Figure::ClientCpu, Some(50.0)),
            (Figure::HostSteal, Some(0.0)),
        ];
        for (f, v) in medians {
            r.figure_mut(f).median = v;
        }
        r.figure_mut(Figure::MsgsPerSec).reps = msgs.into_iter().collect();
        r.figure_mut(Figure::ServerCpu).reps = vec![3.5];
        r
    }

    fn results(mut rows: Vec<Row>, models: &[&str]) -> Results {
        let names: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        if let Some((base, _)) = baseline(&names, None) {
            crate::stats::add_ratios(&mut rows, base);
        }
        Results {
            machine: Machine {
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu_model: "Test CPU".into(),
                cores: 2,
                allowed_cpus: "0-1".into(),
                kernel: "Linux 6.1".into(),
                memory: "1.0 GiB".into(),
                returns_free_memory: false,
            },
            config: ConfigRecord {
                command: "ringport bench".into(),
                started_at: "2023-11-14T22:13:20Z".into(),
                ringport_version: "0.1.0".into(),
                models: models.iter().map(|m| m.to_string()).collect(),
                outside_servers: vec![],
                connections: vec![1, 64],
                sizes: vec![64],
                per_connection: None,
                duration_s: 1.0,
                warmup_s: 0.0,
                rate: None,
                reps: 1,
                server_cpus: "0".into(),
                client_cpus: "1".into(),
                server_workers: 1,
                load_threads: 1,
                timeout_s: 10.0,
                max_interference_pct: 5.0,
                retries: 2,
                preflight: None,
                baseline: None,
                notes: vec![],
                server_cpu_cap_pct: None,
            },
            results: rows,
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let r = results(vec![row("threaded", 1, Some(1000.0))], &["threaded"]);
        let v = serde_json::to_value(&r).unwrap();
        for k in ["machine", "config", "results"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in ["cpu_model", "cores", "kernel", "memory"] {
            assert!(v["machine"].get(k).is_some(), "machine.{k}");
        }
        let keys = [
            "model",
            "connections",
            "size",
            "msgs_per_sec",
            "mb_per_sec",
            "p50_us",
            "p99_us",
            "server_cpu_s_per_million",
            "server_peak_rss_kib",
            "client_cpu_pct",
            "host_steal_pct",
            "serialized",
        ];
        for k in keys {
            assert!(v["results"][0].get(k).is_some(), "results[0].{k}");
        }
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row_with_quoting() {
        let mut a = row("threaded", 1, Some(1000.0));
        a.notes = vec!["said \"hi\", then left".into()];
        let b = row("mine", 64, None);
        let csv = to_csv(&[a, b]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], csv_header());
        let columns = lines[0].split(',').count();
        assert!(lines[1].starts_with("threaded,1,64,1000.000,"));
        assert!(
            lines[1].contains(",\"said \"\"hi\"\", then left\","),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[1].split(',').count(),
            columns + 1,
            "one comma inside the quoted note: {}",
            lines[1]
        );
        assert_eq!(lines[2].split(',').count(), columns, "{}", lines[2]);
        assert!(
            lines[2].starts_with("mine,64,64,,"),
            "missing figures are empty: {}",
            lines[2]
        );
    }

    /// The columns and keys are a contract: these are the ones readers have
    /// seen so far, in their order; new figures may only add to them.
    #[test]
    fn csv_columns_and_json_keys_keep_their_names_and_order() {
        let old_header = "model,connections,size,msgs_per_sec,mb_per_sec,p50_us,p99_us,\
server_cpu_s_per_million,server_user_s_per_million,server_sys_s_per_million,server_cpus_busy_s_per_million,\
server_peak_rss_kib,client_cpu_pct,host_steal_pct,serialized,reps,errors,mismatches,clean,notes,\
msgs_per_sec_min,msgs_per_sec_max,msgs_per_sec_ci_lo,msgs_per_sec_ci_hi,\
server_cpu_s_per_million_min,server_cpu_s_per_million_max,server_cpu_s_per_million_ci_lo,server_cpu_s_per_million_ci_hi,\
p99_us_min,p99_us_max,p99_us_ci_lo,p99_us_ci_hi,baseline,msgs_per_sec_ratio,msgs_per_sec_ratio_ci_lo,msgs_per_sec_ratio_ci_hi,\
server_cpu_ratio,server_cpu_ratio_ci_lo,server_cpu_ratio_ci_hi,interference_pct,disturbed,retried";
        assert!(
            csv_header().starts_with(&format!("{old_header},")),
            "new columns only after the old ones: {}",
            csv_header()
        );
        let json = serde_json::to_string_pretty(&row("threaded", 1, Some(1000.0))).unwrap();
        let keys: Vec<&str> = json
            .lines()
            .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
            .collect();
        let old_keys = "model connections size msgs_per_sec mb_per_sec p50_us p99_us \
server_cpu_s_per_million server_user_s_per_million server_sys_s_per_million \
server_cpus_busy_s_per_million server_peak_rss_kib client_cpu_pct host_steal_pct \
msgs_per_sec_min msgs_per_sec_max msgs_per_sec_ci \
server_cpu_s_per_million_min server_cpu_s_per_million_max server_cpu_s_per_million_ci \
p99_us_min p99_us_max p99_us_ci baseline msgs_per_sec_ratio msgs_per_sec_ratio_ci \
server_cpu_ratio server_cpu_ratio_ci ci_level interference_pct disturbed retried \
msgs_per_sec_reps server_cpu_s_per_million_reps p99_us_reps \
serialized reps errors mismatches clean notes";
        let old: Vec<&str> = old_keys.split(' ').collect();
        assert_eq!(
            keys[..old.len()],
            old[..],
            "new keys only after the old ones"
        );
        assert!(
            json.contains("\"server_peak_rss_kib\": 4096,"),
            "a count: {json}"
        );
    }

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
    fn the_verdict_claims_only_what_survives_the_noise_and_names_doubtful_cells() {
        let with = |model: &str, conns: usize, msgs: [f64; 3], cpu: [f64; 3]| {
            let mut r = Row {
                reps: 3,
                ..row(model, conns, Some(msgs[1]))
            };
            r.figure_mut(Figure::MsgsPerSec).reps = msgs.to_vec();
            r.figure_mut(Figure::ServerCpu).reps = cpu.to_vec();
            r
        };
        let mut disturbed = with("epoll", 64, [90.0, 95.0, 99.0], [5.0, 5.0, 5.0]);
        disturbed.disturbed = true;
        disturbed.interference_pct = Some(22.0);
        // Faster beyond the noise, but one repetition began slowly.
        let mut slow = with("slow", 64, [130.0, 131.0, 133.0], [7.0, 7.1, 7.2]);
        slow.slow_starts = 1;
        let rows = vec![
            with("tokio", 1, [100.0, 101.0, 102.0], [10.0, 10.1, 10.2]),
            with("fast", 1, [99.0, 101.5, 103.0], [9.9, 10.0, 10.3]),
            with("tokio", 64, [100.0, 101.0, 102.0], [10.0, 10.1, 10.2]),
            with("fast", 64, [130.0, 131.0, 133.0], [7.0, 7.1, 7.2]),
            disturbed,
            slow,
        ];
        let mut r = results(rows, &["tokio", "fast", "epoll", "slow"]);
        r.config.reps = 3;
        let v = verdict(&r);
        assert!(
            v.contains("At 64 connections × 64 B, fast handled 1.30× tokio's messages/s")
                && v.contains("needed 0.70× tokio's CPU per message"),
            "{v}"
        );
        assert!(
            v.contains(
                "At 1 connection × 64 B every model measured cleanly is within noise of tokio"
            ),
            "{v}"
        );
        assert!(
            v.contains("Not measured cleanly")
                && v.contains("epoll at 64 connections × 64 B (22% interference)"),
            "{v}"
        );
        assert!(
            !v.contains("epoll handled") && !v.contains("slow handled"),
            "no claim from a disturbed cell, nor from one that began slowly: {v}"
        );
        assert!(
            v.contains("slow at 64 connections × 64 B (a slow start in 1 of 3 repetition(s))"),
            "{v}"
        );
        let table = table_markdown(&r);
        assert!(
            table.contains("**DISTURBED** (22% interference)")
                && table.contains("**SLOW START** (1 of 3 reps)")
                && table.contains("the warm-up did not reach a steady state"),
            "{table}"
        );
        assert!(table.contains("| ≈ ("), "{table}");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(1_234_567.4), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1000.0), "1,000");
    }

    #[test]
    fn timestamps_are_utc_and_dir_names_have_no_colons() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_timestamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(
            utc_timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00Z");
        assert_eq!(
            default_out_dir(t),
            Path::new("bench-results").join("2023-11-14T22-13-20Z")
        );
    }
}
