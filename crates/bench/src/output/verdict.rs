//! The verdict: what a bench shows, in plain words, at the top of
//! `summary.md` and `report.html` and printed at the end. Only differences
//! that survive the noise are claimed, and the cells that could not be
//! measured cleanly are named instead.

use super::{client_bound, CLIENT_BOUND_PCT};
use crate::figure::Figure;
use crate::matrix::{size_text, Cell};
use crate::notes::Note;
use crate::order_stats::{within_noise, NOISE_THRESHOLD};
use crate::stats::{baseline, Row};
use crate::{Results, UNAVAILABLE};

pub(super) fn cell_name(r: &Row) -> String {
    let unit = if r.connections == 1 {
        "connection"
    } else {
        "connections"
    };
    match r.per_connection {
        Some(n) => format!(
            "{} {unit} × {}, replaced after {n} message{}",
            r.connections,
            size_text(r.size),
            if n == 1 { "" } else { "s" }
        ),
        None => format!("{} {unit} × {}", r.connections, size_text(r.size)),
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
    // First who wins each kind of cell, then each model against the baseline.
    sentences.extend(super::winners::winner_sentences(rows));
    sentences.extend(crate::capacity::sentences(&results.capacity));
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
    sentences.extend(load_bound_sentences(results, &cells));
    sentences.extend(starved_sentence(rows));
    sentences.extend(unclean_sentences(rows));
    if sentences.is_empty() {
        sentences.push(format!("No model could be compared with {base}."));
    }
    sentences.push(format!(
        "Differences within noise (an interval that includes no difference, or under {:.0}%) are not claimed.",
        NOISE_THRESHOLD * 100.0
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
    let load_bound = in_cell.iter().any(|r| client_bound(r));
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
            if !within_noise(x, Some([lo, hi])) {
                parts.push(format!(
                    "handled {x:.2}× {base}'s messages/s ({lo:.2}–{hi:.2})"
                ));
                msgs_claimed = true;
            }
        }
        let cpu = r.figure(Figure::ServerCpu);
        if let (Some(x), Some([lo, hi])) = (cpu.ratio, cpu.ratio_ci) {
            if !within_noise(x, Some([lo, hi])) {
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

/// One sentence per group of cells where the load, not the server, was the
/// limit (`client-bound?` in the table): what their msgs/s means, and what
/// would make the server the limit. Cells are grouped by which targets were
/// load-bound in them, so that a bench where every busy cell is says it once.
fn load_bound_sentences(results: &Results, cells: &[Cell]) -> Vec<String> {
    let rows = &results.results;
    // (targets, cell names), in table order.
    let mut groups: Vec<(Vec<&str>, Vec<String>)> = Vec::new();
    for &cell in cells {
        let in_cell: Vec<&Row> = rows
            .iter()
            .filter(|r| r.cell() == cell && r.reps > 0 && !r.doubtful())
            .collect();
        let bound: Vec<&str> = in_cell
            .iter()
            .filter(|r| client_bound(r))
            .map(|r| r.model.as_str())
            .collect();
        if bound.is_empty() {
            continue;
        }
        let name = cell_name(in_cell[0]);
        match groups.iter_mut().find(|(m, _)| *m == bound) {
            Some((_, names)) => names.push(name),
            None => groups.push((bound, vec![name])),
        }
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let c = &results.config;
    let had = if c.client_cpus == UNAVAILABLE {
        String::new()
    } else {
        format!(" (it had CPU {})", c.client_cpus)
    };
    let fix = match (c.cpu_split.no_better_split, c.server_cpu_cap_pct) {
        (true, None) => "on this machine no split of the CPUs helps (one for the server and one for the load is the only one), so to make the server the limit cap it with --server-cpu-cap PCT (such as 50)".to_string(),
        (true, Some(p)) => format!(
            "on this machine no split of the CPUs helps (one for the server and one for the load is the only one), so to make the server the limit cap it lower than --server-cpu-cap {p}"
        ),
        (false, None) => format!(
            "to make the server the limit, give the load more CPUs with --client-cpus{had} or cap the server with --server-cpu-cap PCT"
        ),
        (false, Some(p)) => format!(
            "to make the server the limit, give the load more CPUs with --client-cpus{had} or cap the server lower than --server-cpu-cap {p}"
        ),
    };
    groups
        .iter()
        .map(|(models, names)| {
            format!(
                "At {} the load used {CLIENT_BOUND_PCT:.0}% or more of its CPUs with {} (client-bound? in the table): there msgs/s measures the load generator, not the server, while the server's CPU per message is still valid; {fix}.",
                names.join(" and at "),
                list(models)
            )
        })
        .collect()
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The sentence that names the models that starved some of their
/// connections (a `STARVED` note), cell by cell; none when none did. A
/// serialized server is left out: one client at a time is its design, and
/// its row says so.
fn starved_sentence(rows: &[Row]) -> Option<String> {
    let each: Vec<String> = rows
        .iter()
        .filter(|r| r.reps > 0 && !r.serialized)
        .filter_map(|r| {
            r.notes.iter().find_map(|n| match n {
                Note::Starved {
                    starved,
                    reps,
                    min,
                    median,
                    jain,
                } => Some(format!(
                    "{} at {} (slowest {min:.0} against a median of {median:.0} msgs/s, Jain {jain:.2}, in {starved} of {reps} repetition(s))",
                    r.model,
                    cell_name(r)
                )),
                _ => None,
            })
        })
        .collect();
    (!each.is_empty()).then(|| {
        format!(
            "Some connections were starved, their slowest getting under half the median connection's messages/s (STARVED in the table), so those msgs/s are not shared evenly: {}.",
            each.join("; ")
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::{results, row};
    use crate::output::table_markdown;

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

    /// Rows of three repetitions; `bound` rows had the load at 99%.
    fn bound_rows(cells: &[(usize, &[(&str, bool)])]) -> Vec<Row> {
        let mut rows = Vec::new();
        for &(conns, models) in cells {
            for &(model, bound) in models {
                let mut r = Row {
                    reps: 3,
                    ..row(model, conns, Some(100.0))
                };
                r.figure_mut(Figure::MsgsPerSec).reps = vec![99.0, 100.0, 101.0];
                r.figure_mut(Figure::ServerCpu).reps = vec![3.4, 3.5, 3.6];
                if bound {
                    r.figure_mut(Figure::ClientCpu).median = Some(99.0);
                }
                rows.push(r);
            }
        }
        rows
    }

    #[test]
    fn load_bound_cells_are_explained_once_per_group() {
        let all: &[(&str, bool)] = &[("tokio", true), ("epoll", true)];
        let rows = bound_rows(&[
            (1, &[("tokio", false), ("epoll", false)]),
            (64, all),
            (1000, all),
        ]);
        let mut r = results(rows, &["tokio", "epoll"]);
        r.config.reps = 3;
        r.config.connections = vec![1, 64, 1000];
        r.config.server_cpus = "0-1".into();
        r.config.client_cpus = "2-7".into();
        r.config.cpu_split.no_better_split = false;
        let v = verdict(&r);
        let expected = "At 64 connections × 64 B and at 1000 connections × 64 B the load used 90% or more of its CPUs with tokio and epoll (client-bound? in the table): there msgs/s measures the load generator, not the server, while the server's CPU per message is still valid; to make the server the limit, give the load more CPUs with --client-cpus (it had CPU 2-7) or cap the server with --server-cpu-cap PCT.";
        assert!(v.contains(expected), "{v}");
        assert_eq!(v.matches("client-bound? in the table").count(), 1, "{v}");
        assert!(!v.contains("no split"), "{v}");
        let table = table_markdown(&r);
        assert!(table.contains("client-bound?"), "the tag stays: {table}");
    }

    #[test]
    fn on_two_cpus_the_verdict_says_no_split_helps_and_suggests_the_cap() {
        let rows = bound_rows(&[(64, &[("tokio", true), ("epoll", false)])]);
        let mut r = results(rows, &["tokio", "epoll"]);
        r.config.reps = 3;
        // The fixture is a 2-CPU machine: server 0, load 1.
        assert!(r.config.cpu_split.no_better_split);
        let v = verdict(&r);
        assert!(
            v.contains("At 64 connections × 64 B the load used 90% or more of its CPUs with tokio (client-bound? in the table): there msgs/s measures the load generator, not the server")
                && v.contains("no split of the CPUs helps")
                && v.contains("--server-cpu-cap PCT (such as 50)"),
            "{v}"
        );
        r.config.server_cpu_cap_pct = Some(50);
        let v = verdict(&r);
        assert!(v.contains("cap it lower than --server-cpu-cap 50"), "{v}");
    }

    #[test]
    fn a_model_that_starves_connections_is_named_and_marked() {
        let rows = bound_rows(&[(64, &[("tokio", false), ("epoll", false)])]);
        let mut r = results(rows, &["tokio", "epoll"]);
        r.config.reps = 3;
        let v = verdict(&r);
        assert!(!v.contains("starved"), "{v}");
        r.results[1].starved_reps = 2;
        r.results[1].notes.push(Note::Starved {
            starved: 2,
            reps: 3,
            min: 12.0,
            median: 1040.0,
            jain: 0.874,
        });
        let v = verdict(&r);
        assert!(
            v.contains("Some connections were starved, their slowest getting under half the median connection's messages/s (STARVED in the table), so those msgs/s are not shared evenly: epoll at 64 connections × 64 B (slowest 12 against a median of 1040 msgs/s, Jain 0.87, in 2 of 3 repetition(s))."),
            "{v}"
        );
        let table = table_markdown(&r);
        assert!(
            table.contains("**STARVED** (2 of 3 reps: slowest conn 12 of median 1,040 msgs/s)")
                && table.contains("did not share itself evenly"),
            "{table}"
        );
    }

    #[test]
    fn no_load_bound_cell_no_explanation() {
        let rows = bound_rows(&[(64, &[("tokio", false), ("epoll", false)])]);
        let mut r = results(rows, &["tokio", "epoll"]);
        r.config.reps = 3;
        let v = verdict(&r);
        assert!(
            !v.contains("client-bound?") && !v.contains("--server-cpu-cap"),
            "{v}"
        );
    }
}
