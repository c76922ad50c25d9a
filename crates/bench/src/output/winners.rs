//! Which model wins each kind of cell, and by how much: the first
//! sentences of the verdict. Two questions per cell: who handled the most
//! messages per second, and who spent the least server CPU per message.
//! Models within noise of the leader share the lead (the same rule as the
//! ratios: the interval of the ratio of their medians includes 1, or the
//! ratio is within [`NOISE_THRESHOLD`]); the lead is the leaders' worst
//! against the best of the rest, with its interval. Where the load was the
//! limit, no messages/s winner is named: there msgs/s measures the load.

use super::client_bound;
use crate::figure::Figure;
use crate::matrix::Cell;
use crate::order_stats::{ratio_with_ci, within_noise, NOISE_THRESHOLD};
use crate::stats::Row;

/// What kind of load a cell is, in words a reader knows.
pub fn kind(cell: Cell) -> &'static str {
    match cell {
        Cell {
            per_connection: Some(_),
            ..
        } => "churn",
        Cell { size, .. } if size >= 64 * 1024 => "large messages",
        Cell { connections, .. } if connections >= 500 => "many connections",
        Cell { connections: 1, .. } => "one connection",
        _ => "small messages",
    }
}

/// Who won one cell, on each question.
pub struct CellWinners<'a> {
    /// The kind of load, such as "churn".
    pub kind: &'static str,
    /// The cell in words, such as "64 connections × 64 B".
    pub name: String,
    /// Most messages/s: the leaders, or why none is named.
    pub msgs: Outcome<'a>,
    /// Least server CPU per message.
    pub cpu: Outcome<'a>,
}

/// The answer to one question in one cell.
pub enum Outcome<'a> {
    /// These models lead, by this much.
    Lead(Lead<'a>),
    /// No model leads beyond noise.
    Tie,
    /// The load was the limit, so msgs/s measures the load.
    LoadBound,
}

/// Each cell's winners, in table order; cells with fewer than two
/// comparable rows are left out.
pub fn winners(rows: &[Row]) -> Vec<CellWinners<'_>> {
    let mut cells: Vec<Cell> = Vec::new();
    for r in rows {
        if !cells.contains(&r.cell()) {
            cells.push(r.cell());
        }
    }
    cells
        .into_iter()
        .filter_map(|cell| {
            let in_cell: Vec<&Row> = rows
                .iter()
                .filter(|r| r.cell() == cell && comparable(r))
                .collect();
            if in_cell.len() < 2 {
                return None;
            }
            let msgs = if in_cell.iter().any(|r| client_bound(r)) {
                Outcome::LoadBound
            } else {
                lead(&in_cell, Figure::MsgsPerSec, true).map_or(Outcome::Tie, Outcome::Lead)
            };
            Some(CellWinners {
                kind: kind(cell),
                name: super::verdict::cell_name(in_cell[0]),
                msgs,
                cpu: lead(&in_cell, Figure::ServerCpu, false).map_or(Outcome::Tie, Outcome::Lead),
            })
        })
        .collect()
}

/// A row whose figures can be ranked: it ran, is not doubtful, and is not
/// a serialized server above one connection (which measures its queue).
pub(super) fn comparable(r: &Row) -> bool {
    r.reps > 0 && !r.doubtful() && !(r.serialized && r.connections > 1)
}

impl CellWinners<'_> {
    /// The most messages/s, in words.
    pub fn msgs_text(&self) -> String {
        match &self.msgs {
            Outcome::Lead(l) => l.say(
                "handled the most messages/s",
                "{ratio} as many as the next, {next}",
            ),
            Outcome::Tie => {
                "no model handled more messages/s than the others beyond noise".to_string()
            }
            Outcome::LoadBound => {
                "the load was the limit, so no model is named for messages/s".to_string()
            }
        }
    }

    /// The least CPU per message, in words.
    pub fn cpu_text(&self) -> String {
        match &self.cpu {
            Outcome::Lead(l) => l.say(
                "spent the least server CPU per message",
                "where the next, {next}, spent {ratio} as much",
            ),
            Outcome::Tie | Outcome::LoadBound => {
                "no model spent less CPU per message than the others beyond noise".to_string()
            }
        }
    }
}

/// One sentence per cell, in table order: its winners on messages/s and
/// on CPU per message.
pub fn winner_sentences(rows: &[Row]) -> Vec<String> {
    winners(rows)
        .iter()
        .map(|w| {
            format!(
                "{} ({}): {}; {}.",
                capitalized(w.kind),
                w.name,
                w.msgs_text(),
                w.cpu_text()
            )
        })
        .collect()
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The leaders of one figure and their lead over the best of the rest.
pub struct Lead<'a> {
    /// The models within noise of the best, best first.
    pub leaders: Vec<&'a str>,
    /// The best of the rest.
    pub next: &'a str,
    /// The worst leader's lead over it (above 1).
    pub ratio: f64,
    /// That lead's interval.
    pub ci: [f64; 2],
}

impl Lead<'_> {
    /// `{leaders} {what}, {ratio} {of}`, where `of` holds `{next}` and
    /// `{ratio}`.
    fn say(&self, what: &str, of: &str) -> String {
        let who = match self.leaders.as_slice() {
            [one] => (*one).to_string(),
            [first @ .., last] => format!(
                "{} and {last} (within noise of each other)",
                first.join(", ")
            ),
            [] => String::new(),
        };
        let [lo, hi] = self.ci;
        let ratio = format!("{:.2}× ({lo:.2}–{hi:.2})", self.ratio);
        format!(
            "{who} {what}, {}",
            of.replace("{next}", self.next).replace("{ratio}", &ratio)
        )
    }
}

/// The rows that lead on `figure` (the most when `more_is_better`, else
/// the least), when their lead over every other row survives the noise.
fn lead<'a>(rows: &[&'a Row], figure: Figure, more_is_better: bool) -> Option<Lead<'a>> {
    let mut ranked: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.median(figure).is_some())
        .collect();
    ranked.sort_by(|a, b| {
        let (a, b) = (a.median(figure), b.median(figure));
        if more_is_better {
            b.partial_cmp(&a)
        } else {
            a.partial_cmp(&b)
        }
        .unwrap_or(std::cmp::Ordering::Equal)
    });
    let best = *ranked.first()?;
    // Better over worse, so that a lead is a ratio above 1.
    let lead_of = |better: &Row, worse: &Row| {
        let (b, w) = (&better.figure(figure).reps, &worse.figure(figure).reps);
        if more_is_better {
            ratio_with_ci(b, w)
        } else {
            ratio_with_ci(w, b)
        }
    };
    let split = ranked.iter().position(|r| {
        lead_of(best, r).is_some_and(|(x, ci)| ci.is_some() && !within_noise(x, ci))
    })?;
    // The worst leader against the best of the rest must be beyond noise too.
    let (leaders, rest) = ranked.split_at(split);
    let (ratio, ci) = lead_of(leaders[leaders.len() - 1], rest[0])?;
    let ci = ci?;
    if within_noise(ratio, Some(ci)) || (ratio - 1.0).abs() < NOISE_THRESHOLD {
        return None;
    }
    Some(Lead {
        leaders: leaders.iter().map(|r| r.model.as_str()).collect(),
        next: rest[0].model.as_str(),
        ratio,
        ci,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::row;

    /// A row whose msgs/s and CPU per message repetitions are given.
    fn measured(model: &str, conns: usize, msgs: [f64; 3], cpu: [f64; 3]) -> Row {
        let mut r = row(model, conns, Some(msgs[1]));
        r.reps = 3;
        for (f, v) in [(Figure::MsgsPerSec, msgs), (Figure::ServerCpu, cpu)] {
            let x = r.figure_mut(f);
            x.reps = v.to_vec();
            x.median = Some(v[1]);
        }
        r.figure_mut(Figure::ClientCpu).median = Some(50.0);
        r
    }

    #[test]
    fn a_clear_leader_is_named_with_its_lead_over_the_next() {
        let rows = vec![
            measured("threaded", 64, [40.0, 50.0, 60.0], [14.0, 15.0, 16.0]),
            measured("epoll", 64, [100.0, 110.0, 120.0], [7.0, 7.5, 8.0]),
            measured("tokio", 64, [98.0, 108.0, 118.0], [7.2, 7.6, 8.1]),
        ];
        let s = winner_sentences(&rows);
        assert_eq!(s.len(), 1);
        assert!(
            s[0].starts_with("Small messages (64 connections × 64 B): epoll and tokio (within noise of each other) handled the most messages/s, 2.16× (1.63–2.95) as many as the next, threaded; epoll and tokio (within noise of each other) spent the least server CPU per message, where the next, threaded, spent 1.97× (1.73–2.22) as much."),
            "{}",
            s[0]
        );
    }

    #[test]
    fn overlapping_figures_name_no_winner_and_a_load_bound_cell_no_msgs_winner() {
        let mut rows = vec![
            measured("epoll", 64, [90.0, 100.0, 110.0], [7.0, 8.0, 9.0]),
            measured("tokio", 64, [95.0, 105.0, 115.0], [7.5, 8.5, 9.5]),
        ];
        let s = winner_sentences(&rows);
        assert!(
            s[0].contains("no model handled more messages/s than the others beyond noise")
                && s[0].contains("no model spent less CPU per message"),
            "{}",
            s[0]
        );
        rows[0].figure_mut(Figure::ClientCpu).median = Some(97.0);
        let s = winner_sentences(&rows);
        assert!(s[0].contains("the load was the limit"), "{}", s[0]);
    }

    #[test]
    fn kinds_name_the_quick_cells() {
        let cell = |connections, size, per_connection| Cell {
            connections,
            size,
            per_connection,
        };
        assert_eq!(kind(cell(64, 64, None)), "small messages");
        assert_eq!(kind(cell(1000, 64, None)), "many connections");
        assert_eq!(kind(cell(64, 64, Some(1))), "churn");
        assert_eq!(kind(cell(64, 1 << 20, None)), "large messages");
        assert_eq!(kind(cell(1, 64, None)), "one connection");
    }
}
