//! `bench --slo 'p99<=1ms'`: each model's capacity at the objective, the
//! number a user choosing an architecture wants. After the matrix, every
//! target is searched in every steady cell (churn cells are left out: their
//! rate is of connections as much as of messages) with the capacity search
//! of `stress --find-rate` (`ringport_load::capacity`), on a server of its
//! own pinned like the matrix's, starting from half the msgs/s the matrix
//! measured there. Each step warms up for `--warmup` and lasts at least
//! `--duration`, and long enough for the percentile.

use crate::matrix::{size_text, Cell, Target};
use crate::server::Running;
use crate::stats::Row;
use crate::{BenchError, Plan};
use ringport_load::capacity::{self, Objective, Step};
use ringport_load::report::grouped;
use serde::Serialize;
use std::time::Duration;

/// The search's precision: the first failing rate within this factor of
/// the last passing one.
pub const PRECISION: f64 = 1.1;

/// The longest step.
const MAX_STEP: Duration = Duration::from_secs(30);

/// A step whose load used this share of its CPUs may have been bound by
/// the load (as `client-bound?` in the table).
const LOAD_BOUND_PCT: f64 = 90.0;

/// The first rate when the matrix measured none.
const FALLBACK_START: f64 = 1000.0;

/// One target's capacity in one cell.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityRow {
    /// The model or `--server` name.
    pub model: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// The objective.
    pub objective: String,
    /// The highest rate that met it, msgs/s.
    pub last_pass: Option<f64>,
    /// The lowest rate above that did not.
    pub first_fail: Option<f64>,
    /// `first_fail / last_pass`.
    pub ratio: Option<f64>,
    /// No rate met it, and halving the rate did not lower the percentile.
    pub below_floor: bool,
    /// The load used 90% or more of its CPUs at the first failing rate:
    /// the capacity found may be the load's, not the server's.
    pub load_bound: bool,
    /// Every step of the search.
    pub steps: Vec<Step>,
    /// What went wrong, if the search could not run.
    pub note: Option<String>,
}

impl CapacityRow {
    /// The cell in words.
    pub fn cell_text(&self) -> String {
        format!("{} conns × {}", self.connections, size_text(self.size))
    }

    /// `45,000` or `none` or `—`.
    pub fn holds_text(&self) -> String {
        match (self.last_pass, &self.note) {
            (Some(p), _) => grouped(p),
            (None, Some(_)) => "—".into(),
            (None, None) => "none".into(),
        }
    }
}

/// Search every target in every steady cell; `rows` are the matrix's, for
/// the starting rates. A target that cannot run is a row with a note.
pub fn measure_all(
    plan: &Plan,
    objective: &Objective,
    rows: &[Row],
    on_line: &mut dyn FnMut(String),
) -> Result<Vec<CapacityRow>, BenchError> {
    let mut out = Vec::new();
    for cell in plan
        .cells()
        .into_iter()
        .filter(|c| c.per_connection.is_none())
    {
        for target in &plan.targets {
            let measured = rows
                .iter()
                .find(|r| r.model == target.name() && r.cell() == cell)
                .and_then(|r| r.median(crate::Figure::MsgsPerSec))
                .filter(|m| *m > 0.0);
            let start = measured.map_or(FALLBACK_START, |m| m / 2.0);
            let mut load_pct = Vec::new();
            // What every row says of itself; a search fills in the rest.
            let unsearched = CapacityRow {
                model: target.name().to_string(),
                connections: cell.connections,
                size: cell.size,
                objective: objective.to_string(),
                last_pass: None,
                first_fail: None,
                ratio: None,
                below_floor: false,
                load_bound: false,
                steps: Vec::new(),
                note: None,
            };
            let row = match search(plan, objective, target, cell, start, &mut load_pct) {
                Ok(found) => CapacityRow {
                    last_pass: found.last_pass,
                    first_fail: found.first_fail,
                    ratio: found.ratio,
                    below_floor: found.below_floor,
                    load_bound: found.first_fail.is_some_and(|f| {
                        load_pct
                            .iter()
                            .any(|(r, pct)| *r == f && *pct >= LOAD_BOUND_PCT)
                    }),
                    note: if found.interrupted {
                        Some("the search was interrupted".to_string())
                    } else if found.nothing_echoed {
                        Some(found.summary())
                    } else {
                        None
                    },
                    steps: found.steps,
                    ..unsearched
                },
                Err(BenchError::Server { why, .. }) => CapacityRow {
                    note: Some(format!("did not run: {}", why.lines().next().unwrap_or(""))),
                    ..unsearched
                },
                Err(e) => return Err(e),
            };
            on_line(format!(
                "capacity at {objective}: {} at {cell}: {}",
                row.model,
                summary(&row)
            ));
            out.push(row);
        }
    }
    Ok(out)
}

/// One search on a server of its own.
fn search(
    plan: &Plan,
    objective: &Objective,
    target: &Target,
    cell: Cell,
    start: f64,
    load_pct: &mut Vec<(f64, f64)>,
) -> Result<capacity::Capacity, BenchError> {
    let server = Running::start(
        &plan.exe,
        target,
        plan.cpus.server_workers,
        plan.cpus.server.as_ref(),
        plan.server_cpu_cap.as_deref(),
        plan.ready_timeout,
    )?;
    let search_plan = capacity::Plan {
        start,
        precision: PRECISION,
        min_step: plan.duration,
        max_step: MAX_STEP,
    };
    let found = capacity::search(&search_plan, objective, |rate, duration| {
        let mut c = crate::measure::load_config(plan, target, cell, server.addr, duration);
        c.rate = Some(ringport_load::Rate::Fixed(rate));
        c.warmup = plan.warmup;
        c.percentiles = vec![objective.percentile];
        let (t0, cpu0) = (std::time::Instant::now(), crate::sys::self_cpu_seconds());
        let report = ringport_load::run(&c)?;
        let wall = t0.elapsed().as_secs_f64() * plan.cpus.load_threads.max(1) as f64;
        if let (Some(a), Some(b)) = (cpu0, crate::sys::self_cpu_seconds()) {
            load_pct.push((rate, (b - a) / wall * 100.0));
        }
        Ok(report)
    })
    .map_err(|source| BenchError::Load {
        target: target.name().to_string(),
        source,
    });
    server.stop(plan.stop_timeout);
    found
}

/// A row's result in words.
pub fn summary(r: &CapacityRow) -> String {
    let text = summary_of_search(r);
    if r.load_bound {
        format!("{text}; the load used 90% or more of its CPUs at the failing rate, so this may be the load's capacity, not the server's")
    } else {
        text
    }
}

fn summary_of_search(r: &CapacityRow) -> String {
    match (r.last_pass, r.first_fail, &r.note) {
        (_, _, Some(note)) if r.last_pass.is_none() => note.clone(),
        (Some(p), Some(f), _) => format!(
            "{} msgs/s holds, {} does not (within {:.2}×)",
            grouped(p),
            grouped(f),
            f / p
        ),
        (Some(p), None, _) => format!("at least {} msgs/s", grouped(p)),
        (None, Some(f), _) if r.below_floor => format!(
            "none: it broke down to {} msgs/s, and lower rates did not help (the bound is under its light-load latency)",
            grouped(f)
        ),
        (None, Some(f), _) => format!("none down to {} msgs/s", grouped(f)),
        (None, None, _) => "no step ran".into(),
    }
}

/// One sentence per cell: who holds the most at the objective, and the
/// others' capacities; models whose brackets overlap the leader's are
/// within the search's precision of it.
pub fn sentences(rows: &[CapacityRow]) -> Vec<String> {
    let mut cells: Vec<(usize, usize)> = Vec::new();
    for r in rows {
        if !cells.contains(&(r.connections, r.size)) {
            cells.push((r.connections, r.size));
        }
    }
    let mut out = Vec::new();
    for (conns, size) in cells {
        let mut in_cell: Vec<&CapacityRow> = rows
            .iter()
            .filter(|r| r.connections == conns && r.size == size && r.last_pass.is_some())
            .collect();
        let Some(objective) = rows.first().map(|r| r.objective.clone()) else {
            continue;
        };
        if in_cell.is_empty() {
            out.push(format!(
                "At {objective} and {conns} connections × {}, no model met the objective at any rate tried.",
                size_text(size)
            ));
            continue;
        }
        in_cell.sort_by(|a, b| {
            let pass = |r: &CapacityRow| r.last_pass.unwrap_or(0.0);
            pass(b).total_cmp(&pass(a))
        });
        let best = in_cell[0];
        let best_pass = best.last_pass.unwrap_or(0.0);
        // A bracket that reaches the leader's last passing rate may be as
        // high: within the search's precision.
        let tied: Vec<&str> = in_cell[1..]
            .iter()
            .filter(|r| r.first_fail.is_none_or(|f| f > best_pass))
            .map(|r| r.model.as_str())
            .collect();
        let others: Vec<String> = in_cell[1..]
            .iter()
            .map(|r| format!("{} {}", r.model, r.holds_text()))
            .collect();
        let load_bound: Vec<&str> = in_cell
            .iter()
            .filter(|r| r.load_bound)
            .map(|r| r.model.as_str())
            .collect();
        let lead = if tied.is_empty() {
            format!("{} held the most", best.model)
        } else {
            format!(
                "{} and {} held the most (within the search's precision of each other)",
                best.model,
                tied.join(", ")
            )
        };
        out.push(format!(
            "At {objective} and {conns} connections × {}, {lead}: {} msgs/s{}{}.",
            size_text(size),
            best.holds_text(),
            if others.is_empty() {
                String::new()
            } else {
                format!(" (then {})", others.join(", "))
            },
            if load_bound.is_empty() {
                String::new()
            } else {
                format!(
                    "; the load was near its limit where {} broke, so those capacities may be the load's",
                    load_bound.join(", ")
                )
            }
        ));
    }
    out
}

/// The capacities as a Markdown section: a line per target and cell.
pub fn markdown(rows: &[CapacityRow]) -> Option<String> {
    let objective = &rows.first()?.objective;
    let mut s = format!(
        "## Capacity at {objective}\n\nThe highest paced rate at which {objective} held (latency from each message's due time, no error, nothing left behind), searched to within {PRECISION}×.\n\n| model | cell | holds, msgs/s | breaks at | within | steps |\n|---|---|---:|---:|---:|---:|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {}{} | {} | {} | {} |\n",
            r.model,
            r.cell_text(),
            r.holds_text(),
            if r.load_bound { " (load-bound?)" } else { "" },
            r.first_fail.map_or("—".into(), grouped),
            r.ratio.map_or("—".into(), |x| format!("{x:.2}×")),
            r.steps.len()
        ));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, pass: Option<f64>, fail: Option<f64>) -> CapacityRow {
        CapacityRow {
            model: model.into(),
            connections: 64,
            size: 64,
            objective: "p99<=1ms".into(),
            last_pass: pass,
            first_fail: fail,
            ratio: pass.zip(fail).map(|(p, f)| f / p),
            below_floor: false,
            load_bound: false,
            steps: Vec::new(),
            note: None,
        }
    }

    #[test]
    fn the_sentence_names_the_leader_and_who_is_within_precision() {
        let rows = [
            row("threaded", Some(20_000.0), Some(22_000.0)),
            row("epoll", Some(45_000.0), Some(49_000.0)),
            row("completion", Some(44_000.0), Some(48_000.0)),
            row("blocking", None, Some(500.0)),
        ];
        let s = sentences(&rows);
        assert_eq!(
            s,
            ["At p99<=1ms and 64 connections × 64 B, epoll and completion held the most (within the search's precision of each other): 45,000 msgs/s (then completion 44,000, threaded 20,000)."]
        );
        let clear = [
            row("threaded", Some(20_000.0), Some(22_000.0)),
            row("epoll", Some(45_000.0), Some(49_000.0)),
        ];
        assert!(sentences(&clear)[0]
            .contains("epoll held the most: 45,000 msgs/s (then threaded 20,000)"));
        assert!(sentences(&[row("blocking", None, Some(8.0))])[0]
            .contains("no model met the objective"));
        assert_eq!(
            summary(&rows[1]),
            "45,000 msgs/s holds, 49,000 does not (within 1.09×)"
        );
        let md = markdown(&rows).unwrap();
        assert!(md.starts_with("## Capacity at p99<=1ms"), "{md}");
        assert!(
            md.contains("| epoll | 64 conns × 64 B | 45,000 | 49,000 | 1.09× | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| blocking | 64 conns × 64 B | none | 500 | — | 0 |"),
            "{md}"
        );
        assert_eq!(markdown(&[]), None);
        let mut bound = row("epoll", Some(45_000.0), Some(49_000.0));
        bound.load_bound = true;
        assert!(sentences(&[bound.clone()])[0]
            .contains("the load was near its limit where epoll broke"));
        assert!(summary(&bound).ends_with("may be the load's capacity, not the server's"));
    }
}
