//! Why the models differ, beside the verdict: a handful of rules over the
//! cost breakdown (`costs.rs`), each stating the figure it rests on and the
//! threshold it used. A rule speaks only of rows that ran cleanly (the
//! verdict's own [`comparable`] rows) and of figures that exist. Counts per
//! message (context switches, read/write calls) keep no interval, so their
//! rules ask for a plain factor, [`FACTOR`], and an absolute difference
//! besides; CPU per connection is a measurement with intervals, so its rule
//! uses bench's noise rule. A figure that is a lower bound (`≥`) may stand
//! on the high side of a comparison ("at least"), never on the low side.

use super::costs::{per_msg_text, CALLS_COUNTED};
use super::verdict::cell_name;
use super::winners::comparable;
use crate::figure::Figure;
use crate::matrix::Cell;
use crate::order_stats::{ratio_with_ci, within_noise};
use crate::stats::Row;
use crate::Results;

/// A count per message explains a difference when it is at least this
/// many times the other's.
pub const FACTOR: f64 = 2.0;
/// ... and at least this many switches per message more: 0.003 against
/// 0.001 is three times as many and explains nothing.
const SWITCHES_FLOOR: f64 = 0.1;
/// The models with many read/write calls must make at least this many per
/// message for a model with few to be explained by them.
const CALLS_FLOOR: f64 = 0.5;
/// One connection: a model that blocks at least this often per message
/// waits for each one.
const WAITS_EACH: f64 = 0.5;

/// The paragraph beside the verdict, `Why, from the cost breakdown: …`;
/// `None` when no rule applies.
pub fn why(results: &Results) -> Option<String> {
    let rows = &results.results;
    let mut cells: Vec<Cell> = Vec::new();
    for r in rows {
        if !cells.contains(&r.cell()) {
            cells.push(r.cell());
        }
    }
    let mut sentences = Vec::new();
    for &cell in &cells {
        let in_cell: Vec<&Row> = rows
            .iter()
            .filter(|r| r.cell() == cell && comparable(r))
            .collect();
        sentences.extend(switches_rule(&in_cell));
        sentences.extend(calls_rule(&in_cell));
        sentences.extend(churn_rule(&in_cell));
    }
    sentences.extend(one_connection_rule(rows));
    (!sentences.is_empty())
        .then(|| format!("Why, from the cost breakdown: {}", sentences.join(" ")))
}

/// Its median, and whether that is a lower bound.
fn switches(r: &Row) -> Option<(f64, bool)> {
    let v = r.median(Figure::ServerVoluntarySwitches)?;
    Some((v, r.switches_lower_bound_reps > 0))
}

fn calls(r: &Row) -> Option<(f64, bool)> {
    let v = r.median(Figure::ServerRwCalls)?;
    Some((v, r.rw_calls_lower_bound_reps > 0))
}

/// `1.92`, or `at least 1.92` for a lower bound.
fn amount(v: f64, lower_bound: bool) -> String {
    if lower_bound {
        format!("at least {}", per_msg_text(v))
    } else {
        per_msg_text(v)
    }
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Models that block far more per message than the cell's fewest: each
/// voluntary switch is a thread sleeping and being woken again.
fn switches_rule(rows: &[&Row]) -> Option<String> {
    // The fewest must be exact: a lower bound could be anything above.
    let (low_row, low) = rows
        .iter()
        .filter_map(|r| switches(r).filter(|(_, lb)| !lb).map(|(v, _)| (*r, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let more: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let (v, lb) = switches(r)?;
            (v >= FACTOR * low && v - low >= SWITCHES_FLOOR)
                .then(|| format!("{} made {}", r.model, amount(v, lb)))
        })
        .collect();
    if more.is_empty() {
        return None;
    }
    Some(format!(
        "At {}, {} voluntary context switches per message where {} made {} (server_voluntary_switches_per_msg, at least {FACTOR:.0}× and {SWITCHES_FLOOR} more): each is a thread that blocked and had to be woken again, which costs CPU on both sides of the connection.",
        cell_name(low_row),
        list(&more),
        low_row.model,
        per_msg_text(low)
    ))
}

/// A model whose read/write calls are a fraction of every other's.
fn calls_rule(rows: &[&Row]) -> Option<String> {
    let mut by_calls: Vec<(&Row, f64, bool)> = rows
        .iter()
        .filter_map(|r| calls(r).map(|(v, lb)| (*r, v, lb)))
        .collect();
    by_calls.sort_by(|a, b| a.1.total_cmp(&b.1));
    let [(few_row, few, false), (next_row, next, next_lb), ..] = by_calls[..] else {
        return None;
    };
    if next < FACTOR * few || next < CALLS_FLOOR {
        return None;
    }
    let how = if few_row.model == "completion" {
        "its I/O goes through the io_uring ring, whose operations that count does not see"
    } else {
        "its I/O does not go through those calls"
    };
    Some(format!(
        "At {}, {} made {} read/write calls per message where the next fewest, {}, made {} (server_rw_calls_per_msg, at least {FACTOR:.0}×; {CALLS_COUNTED}): {how}.",
        cell_name(few_row),
        few_row.model,
        per_msg_text(few),
        next_row.model,
        amount(next, next_lb)
    ))
}

/// Churn cells: models whose server CPU per connection is beyond noise
/// above the cheapest's.
fn churn_rule(rows: &[&Row]) -> Option<String> {
    let per_conn: Vec<(&Row, f64)> = rows
        .iter()
        .filter(|r| r.per_connection.is_some())
        .filter_map(|r| Some((*r, r.median(Figure::ServerCpuPerConn)?)))
        .collect();
    let &(cheap, cheap_us) = per_conn.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let cheap_reps = &cheap.figure(Figure::ServerCpuPerConn).reps;
    let dearer: Vec<String> = per_conn
        .iter()
        .filter(|(r, _)| r.model != cheap.model)
        .filter_map(|&(r, us)| {
            let (x, ci) = ratio_with_ci(&r.figure(Figure::ServerCpuPerConn).reps, cheap_reps)?;
            let [lo, hi] = ci.filter(|_| !within_noise(x, ci))?;
            let thread = if r.model == "threaded" {
                ", a thread started and ended per connection"
            } else {
                ""
            };
            Some(format!(
                "{} {us:.1} µs ({x:.2}×, {lo:.2}–{hi:.2}{thread})",
                r.model
            ))
        })
        .collect();
    if dearer.is_empty() {
        return None;
    }
    Some(format!(
        "Churn at {}: server CPU per connection replaced, messages included, was {} against {}'s {cheap_us:.1} µs (server_cpu_us_per_connection, beyond noise).",
        cell_name(cheap),
        list(&dearer),
        cheap.model
    ))
}

/// With one connection there is one message in flight: a completion
/// port's wait brings back one completion, so it sleeps for each message.
/// Said only when a one-connection cell ran and completion blocked about
/// once per message there, with how much less it blocked with more
/// connections of the same size, where that was at most half.
fn one_connection_rule(rows: &[Row]) -> Option<String> {
    let exact = |r: &Row| switches(r).filter(|(_, lb)| !lb).map(|(v, _)| v);
    let one = rows.iter().find(|r| {
        r.model == "completion"
            && r.connections == 1
            && r.per_connection.is_none()
            && comparable(r)
            && exact(r).is_some_and(|v| v >= WAITS_EACH)
    })?;
    let v = exact(one)?;
    let more = rows
        .iter()
        .filter(|r| {
            r.model == "completion"
                && r.connections > 1
                && r.size == one.size
                && r.per_connection.is_none()
                && comparable(r)
        })
        .filter_map(|r| Some((r, exact(r)?)))
        .filter(|&(_, w)| w * FACTOR <= v)
        .max_by_key(|(r, _)| r.connections)
        .map(|(r, w)| {
            format!(
                ", against {} at {}, where one wait brings back many",
                per_msg_text(w),
                cell_name(r)
            )
        })
        .unwrap_or_default();
    Some(format!(
        "With one connection a completion port has nothing to batch: at {} completion made {} voluntary context switches per message (server_voluntary_switches_per_msg, {WAITS_EACH} or more: a sleep for about every message){more}.",
        cell_name(one),
        per_msg_text(v)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::{results, row};

    /// A clean row of three repetitions with these cost medians.
    fn costs(model: &str, conns: usize, switches: Option<f64>, calls: Option<f64>) -> Row {
        let mut r = row(model, conns, Some(1000.0));
        r.reps = 3;
        r.figure_mut(Figure::ServerVoluntarySwitches).median = switches;
        r.figure_mut(Figure::ServerRwCalls).median = calls;
        r
    }

    fn why_of(rows: Vec<Row>) -> String {
        let models: Vec<String> = rows.iter().map(|r| r.model.clone()).collect();
        let names: Vec<&str> = models.iter().map(String::as_str).collect();
        why(&results(rows, &names)).unwrap_or_default()
    }

    #[test]
    fn a_model_that_blocks_twice_as_often_per_message_is_explained() {
        let w = why_of(vec![
            costs("threaded", 64, Some(1.92), None),
            costs("epoll", 64, Some(0.1), None),
            costs("tokio", 64, Some(0.15), None),
        ]);
        assert!(
            w.contains("At 64 connections × 64 B, threaded made 1.92 voluntary context switches per message where epoll made 0.10 (server_voluntary_switches_per_msg, at least 2× and 0.1 more)"),
            "{w}"
        );
        assert!(!w.contains("tokio"), "1.5× is under the factor: {w}");
    }

    #[test]
    fn switches_below_the_factor_or_the_floor_or_against_a_lower_bound_say_nothing() {
        // 3× as many, but 0.002 more per message.
        assert_eq!(
            why_of(vec![
                costs("a", 64, Some(0.003), None),
                costs("b", 64, Some(0.001), None)
            ]),
            ""
        );
        // 1.8×.
        assert_eq!(
            why_of(vec![
                costs("a", 64, Some(1.8), None),
                costs("b", 64, Some(1.0), None)
            ]),
            ""
        );
        // The fewest is a lower bound: no claim rests on it.
        let mut low = costs("b", 64, Some(0.1), None);
        low.switches_lower_bound_reps = 1;
        assert_eq!(why_of(vec![costs("a", 64, Some(1.9), None), low]), "");
        // A lower bound on the high side is "at least".
        let mut high = costs("threaded", 64, Some(1.9), None);
        high.switches_lower_bound_reps = 2;
        let w = why_of(vec![high, costs("epoll", 64, Some(0.1), None)]);
        assert!(w.contains("threaded made at least 1.90 voluntary"), "{w}");
    }

    #[test]
    fn doubtful_rows_are_left_out_of_every_rule() {
        let mut disturbed = costs("threaded", 64, Some(1.9), None);
        disturbed.disturbed = true;
        assert_eq!(
            why_of(vec![disturbed, costs("epoll", 64, Some(0.1), None)]),
            ""
        );
    }

    #[test]
    fn a_model_with_a_fraction_of_the_read_write_calls_is_explained_by_its_ring() {
        let w = why_of(vec![
            costs("epoll", 64, None, Some(1.0)),
            costs("tokio", 64, None, Some(1.1)),
            costs("completion", 64, None, Some(0.02)),
        ]);
        assert!(
            w.contains("At 64 connections × 64 B, completion made 0.020 read/write calls per message where the next fewest, epoll, made 1.00 (server_rw_calls_per_msg, at least 2×; read/write-family calls only")
                && w.contains("io_uring_enter")
                && w.ends_with("its I/O goes through the io_uring ring, whose operations that count does not see."),
            "{w}"
        );
        // Half a call less is no explanation, nor a few calls under the floor.
        assert_eq!(
            why_of(vec![
                costs("epoll", 64, None, Some(1.0)),
                costs("completion", 64, None, Some(0.6))
            ]),
            ""
        );
        assert_eq!(
            why_of(vec![
                costs("epoll", 64, None, Some(0.3)),
                costs("completion", 64, None, Some(0.01))
            ]),
            ""
        );
        // The fewest must be exact.
        let mut low = costs("completion", 64, None, Some(0.0));
        low.rw_calls_lower_bound_reps = 1;
        assert_eq!(why_of(vec![costs("epoll", 64, None, Some(1.0)), low]), "");
    }

    #[test]
    fn with_one_connection_completion_is_said_to_have_nothing_to_batch() {
        let w = why_of(vec![
            costs("epoll", 1, Some(0.99), None),
            costs("completion", 1, Some(0.98), None),
            costs("epoll", 64, Some(0.1), None),
            costs("completion", 64, Some(0.05), None),
        ]);
        assert!(
            w.contains("With one connection a completion port has nothing to batch: at 1 connection × 64 B completion made 0.98 voluntary context switches per message (server_voluntary_switches_per_msg, 0.5 or more: a sleep for about every message), against 0.050 at 64 connections × 64 B, where one wait brings back many."),
            "{w}"
        );
        // No one-connection cell, or completion not blocking per message there: nothing.
        let w = why_of(vec![
            costs("epoll", 64, Some(0.1), None),
            costs("completion", 64, Some(0.05), None),
        ]);
        assert!(!w.contains("nothing to batch"), "{w}");
        let w = why_of(vec![
            costs("epoll", 1, Some(0.3), None),
            costs("completion", 1, Some(0.3), None),
        ]);
        assert!(!w.contains("nothing to batch"), "{w}");
    }

    #[test]
    fn churn_cpu_per_connection_is_explained_only_beyond_noise() {
        let churn = |model: &str, us: [f64; 3]| {
            let mut r = costs(model, 64, None, None);
            r.per_connection = Some(1);
            let x = r.figure_mut(Figure::ServerCpuPerConn);
            x.reps = us.to_vec();
            x.median = Some(us[1]);
            r
        };
        let w = why_of(vec![
            churn("threaded", [38.0, 39.6, 41.0]),
            churn("epoll", [14.0, 14.5, 15.0]),
            churn("tokio", [13.8, 14.9, 15.5]),
        ]);
        assert!(
            w.contains("Churn at 64 connections × 64 B, replaced after 1 message: server CPU per connection replaced, messages included, was threaded 39.6 µs (2.73×, 2.53–2.93, a thread started and ended per connection) against epoll's 14.5 µs (server_cpu_us_per_connection, beyond noise)."),
            "{w}"
        );
        assert!(!w.contains("tokio"), "within noise: {w}");
    }
}
