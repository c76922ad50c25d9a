//! The marks the table puts in its cells, declared once: each one's label
//! and what it means. The cells write the label, the footnotes explain the
//! marks a table used (and only those), and `report.html`'s key to the
//! columns explains every one, all from here.

use super::{CLIENT_BOUND_PCT, STEAL_NOTE_PCT};
use crate::order_stats::NOISE_THRESHOLD;
use crate::{Results, UNAVAILABLE};

/// A mark in a cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// A ratio whose interval says no difference.
    WithinNoise,
    /// A row still above the interference threshold after retries.
    Disturbed,
    /// A repetition whose warm-up did not reach a steady state.
    SlowStart,
    /// A connection that got under half the median connection's rate.
    Starved,
    /// The load sent later than the latency it measured (open loop).
    GeneratorLate,
    /// A count of the cost breakdown that may be too low: threads or
    /// processes of the server ended in the window.
    LowerBound,
    /// A server that handles one client at a time.
    Serialized,
    /// A churn cell: connections replaced after N messages.
    Churn,
    /// The load was busy enough to be the limit.
    ClientBound,
    /// The hypervisor took a share of the pinned CPUs.
    Steal,
    /// A figure the run could not measure.
    NotAvailable,
    /// A server that did not run.
    DidNotRun,
}

impl Mark {
    /// Every mark, in the order their footnotes come.
    pub const ALL: [Mark; 12] = [
        Mark::WithinNoise,
        Mark::Disturbed,
        Mark::SlowStart,
        Mark::Starved,
        Mark::GeneratorLate,
        Mark::LowerBound,
        Mark::Serialized,
        Mark::Churn,
        Mark::ClientBound,
        Mark::Steal,
        Mark::NotAvailable,
        Mark::DidNotRun,
    ];

    /// What a cell shows, and its footnote names.
    pub fn label(self) -> &'static str {
        match self {
            Mark::WithinNoise => "≈",
            Mark::Disturbed => "DISTURBED",
            Mark::SlowStart => "SLOW START",
            Mark::Starved => "STARVED",
            Mark::GeneratorLate => "GENERATOR LATE",
            Mark::LowerBound => "≥",
            Mark::Serialized => "serialized",
            Mark::Churn => "churn",
            Mark::ClientBound => "client-bound?",
            Mark::Steal => "steal",
            Mark::NotAvailable => "n/a",
            Mark::DidNotRun => "—",
        }
    }

    /// Whether the label is set in bold: the marks that make a row's
    /// figures doubtful.
    pub fn is_loud(self) -> bool {
        matches!(
            self,
            Mark::WithinNoise
                | Mark::Disturbed
                | Mark::SlowStart
                | Mark::Starved
                | Mark::GeneratorLate
                | Mark::LowerBound
        )
    }

    /// The label as a cell or footnote writes it (Markdown emphasis).
    pub fn shown(self) -> String {
        if self.is_loud() {
            format!("**{}**", self.label())
        } else {
            self.label().to_string()
        }
    }

    /// What it means, with the thresholds of this run.
    pub fn meaning(self, results: &Results) -> String {
        match self {
            Mark::WithinNoise => format!(
                "a ratio within noise: its interval includes no difference, or it is within {:.0}% of 1; only the others are results.",
                NOISE_THRESHOLD * 100.0
            ),
            Mark::Disturbed => format!(
                "the cell stayed above {:.0}% interference (the interference column) after {} retry(s): other work shared its CPUs, so its figures are doubtful; consider re-running on a quiet system.",
                results.config.max_interference_pct, results.config.retries
            ),
            Mark::SlowStart => format!(
                "in these repetitions the first 1/{} of the measured run verified messages at under {:.0}% of the rate of the rest: the warm-up did not reach a steady state, so the cell's msgs/s and p99 include a start, and no claim is made from it. results.json's notes give each one's rate and p99; a longer --warmup may help.",
                crate::measure::STEADY_INTERVALS,
                crate::measure::SLOW_START_RATIO * 100.0
            ),
            Mark::Starved => format!(
                "in these repetitions the slowest connection verified under {:.0}% of the median connection's messages per second: the server did not share itself evenly, so its msgs/s hides connections that waited. results.json gives per_connection_rate_min, _median and _jain (Jain's fairness index: 1 even, 1/n one connection got everything).",
                crate::stats::STARVED_RATIO * 100.0
            ),
            Mark::GeneratorLate => "open loop: in these repetitions the load sent 1 in 100 messages later than the median latency it measured (its own delay, from each due time, not counting waits for the server's previous echo): the cell's latency from schedule is as much the load's as the server's. results.json's notes give the worst lateness; more load CPUs (--client-cpus) or a lower --rate may help.".to_string(),
            Mark::LowerBound => "in the cost breakdown, a lower bound: in some repetitions threads of the server (for CPU and read/write calls, processes of its tree) ended inside the measured window, and the kernel keeps an exited thread's context switches only for getrusage, so the median may be too low. results.json counts those repetitions in switches_lower_bound_reps and rw_calls_lower_bound_reps; the explanations beside the verdict never rest on such a figure where a low one is claimed.".to_string(),
            Mark::Serialized => "the server handles one client at a time; the other connections wait in the backlog, so its figures above one connection measure the queue, not the server.".to_string(),
            Mark::Churn => "marked in size as `(N/conn)` and in the notes: each connection carries N messages, is closed and is replaced by a new one, so the cell measures accepts and closes as much as echoes; conns/s counts the connections replaced, and µs CPU/conn is the server's CPU per connection, its messages included.".to_string(),
            Mark::ClientBound => format!(
                "the load used ≥ {CLIENT_BOUND_PCT:.0}% of its CPUs; the server may be faster than shown (the verdict says what would fix it)."
            ),
            Mark::Steal => format!(
                "the hypervisor took this share of the pinned CPUs during the run (median); above {STEAL_NOTE_PCT:.0}% the figures are unreliable: run again on a quieter host."
            ),
            Mark::NotAvailable => format!("{UNAVAILABLE}, or no echo came back to measure."),
            Mark::DidNotRun => "the server did not run; see notes.".to_string(),
        }
    }

    /// Its footnote: the label, then what it means.
    pub fn footnote(self, results: &Results) -> String {
        format!("{}: {}", self.shown(), self.meaning(results))
    }
}

/// Which marks a table used, so that its footnotes explain just those.
#[derive(Debug, Default)]
pub struct Used(Vec<Mark>);

impl Used {
    /// Note that `mark` appears in a cell; returns its label as shown.
    pub fn mark(&mut self, mark: Mark) -> String {
        if !self.0.contains(&mark) {
            self.0.push(mark);
        }
        mark.shown()
    }

    /// Whether `mark` appears.
    pub fn has(&self, mark: Mark) -> bool {
        self.0.contains(&mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_every_mark_is_listed_once() {
        let mut labels: Vec<&str> = Mark::ALL.iter().map(|m| m.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Mark::ALL.len());
        let mut sorted = Mark::ALL;
        sorted.sort();
        assert_eq!(sorted, Mark::ALL, "ALL is in declaration order");
    }
}
