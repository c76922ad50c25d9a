//! The notes of a row: what went wrong or needs saying about a cell, one
//! variant per kind, each carrying its data. They are written as text in
//! one place, [`Note`]'s `Display`, which `results.json`, `results.csv` and
//! the table all use, so that readers of any of them see the same words;
//! the table chooses which to show by variant, never by reading the text.

use crate::measure::SlowStart;
use serde::{Serialize, Serializer};
use std::fmt;

/// One note of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// What a run said about itself, or why it could not run, in its own
    /// words (several of one run joined with `; `).
    Run(String),
    /// A server returned bytes that were not sent.
    EchoMismatch,
    /// Connections failed; the row's `errors` says how many.
    ConnectionErrors,
    /// Repetitions that stayed above the interference threshold after
    /// their retries.
    Disturbed {
        /// How many did.
        disturbed: usize,
        /// Of how many repetitions that produced figures.
        reps: usize,
    },
    /// Repetitions whose measured run began slowly.
    SlowStart {
        /// Each one's first interval against the rest; never empty.
        starts: Vec<SlowStart>,
        /// Of how many repetitions that produced figures.
        reps: usize,
    },
    /// Open loop: repetitions in which the load sent 1 in 100 messages
    /// later than the median latency it measured, so that the cell's
    /// latency from schedule is as much the load's as the server's.
    GeneratorLate {
        /// How many did.
        late: usize,
        /// Of how many repetitions that produced figures.
        reps: usize,
        /// The worst of them: the load's p99 lateness,
        lateness_p99_us: u64,
        /// and that repetition's median latency from send.
        latency_p50_us: u64,
    },
    /// Repetitions in which the slowest connection verified under half the
    /// median connection's messages per second: the server starved some
    /// connections ([`crate::stats::STARVED_RATIO`]).
    Starved {
        /// How many did.
        starved: usize,
        /// Of how many repetitions that measured it.
        reps: usize,
        /// The worst of them (the lowest slowest-to-median ratio): its
        /// slowest connection's msgs/s,
        min: f64,
        /// its median connection's msgs/s,
        median: f64,
        /// and its Jain's fairness index.
        jain: f64,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Run(text) => f.write_str(text),
            Note::EchoMismatch => {
                f.write_str("ECHO MISMATCH: the server returned bytes that were not sent")
            }
            Note::ConnectionErrors => f.write_str("connection errors: see errors"),
            Note::Disturbed { disturbed, reps } => write!(
                f,
                "DISTURBED: {disturbed} of {reps} repetition(s) stayed above the interference threshold after retries"
            ),
            Note::SlowStart { starts, reps } => {
                let each: Vec<String> = starts
                    .iter()
                    .map(|s| {
                        let ms = |v: Option<u64>| {
                            v.map_or("none verified".to_string(), |v| {
                                format!("{:.1}", v as f64 / 1e3)
                            })
                        };
                        format!(
                            "{:.0}% of the later rate, p99 {} against {} ms",
                            s.rate_ratio * 100.0,
                            ms(s.first_p99_us),
                            ms(s.later_p99_us)
                        )
                    })
                    .collect();
                write!(
                    f,
                    "SLOW START: in {} of {reps} repetition(s) the first {:.2} s of the measured run went slowly ({}); the warm-up did not reach a steady state, so msgs/s and p99 include the start (a longer --warmup may help)",
                    starts.len(),
                    starts.first().map_or(0.0, |s| s.first_s),
                    each.join("; ")
                )
            }
            Note::GeneratorLate {
                late,
                reps,
                lateness_p99_us,
                latency_p50_us,
            } => write!(
                f,
                "GENERATOR LATE: in {late} of {reps} repetition(s) the load sent 1 in 100 messages more than {lateness_p99_us} µs after they were due, more than the median latency it measured ({latency_p50_us} µs): the cell's latency from schedule is as much the load's as the server's"
            ),
            Note::Starved {
                starved,
                reps,
                min,
                median,
                jain,
            } => write!(
                f,
                "STARVED: in {starved} of {reps} repetition(s) the slowest connection got under half the median connection's messages/s (worst: {min:.0} against {median:.0} msgs/s, Jain {jain:.3})"
            ),
        }
    }
}

/// In `results.json` a note is its text, as it has always been.
impl Serialize for Note {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A note in a run's own words.
impl From<&str> for Note {
    fn from(text: &str) -> Note {
        Note::Run(text.to_string())
    }
}

/// A note equals the text it is written as.
impl PartialEq<&str> for Note {
    fn eq(&self, text: &&str) -> bool {
        let written = self.to_string();
        written.as_str() == *text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_written_as_they_always_were() {
        assert_eq!(Note::Run("did not start".into()), "did not start");
        assert_eq!(
            Note::Disturbed {
                disturbed: 1,
                reps: 3
            }
            .to_string(),
            "DISTURBED: 1 of 3 repetition(s) stayed above the interference threshold after retries"
        );
        let slow = SlowStart {
            first_s: 0.25,
            rate_ratio: 0.2,
            first_p99_us: Some(4000),
            later_p99_us: Some(1000),
        };
        assert_eq!(
            Note::SlowStart {
                starts: vec![slow],
                reps: 3
            }
            .to_string(),
            "SLOW START: in 1 of 3 repetition(s) the first 0.25 s of the measured run went slowly (20% of the later rate, p99 4.0 against 1.0 ms); the warm-up did not reach a steady state, so msgs/s and p99 include the start (a longer --warmup may help)"
        );
        assert_eq!(
            Note::Starved {
                starved: 2,
                reps: 3,
                min: 12.4,
                median: 1040.0,
                jain: 0.8734
            }
            .to_string(),
            "STARVED: in 2 of 3 repetition(s) the slowest connection got under half the median connection's messages/s (worst: 12 against 1040 msgs/s, Jain 0.873)"
        );
        assert_eq!(
            Note::GeneratorLate {
                late: 1,
                reps: 3,
                lateness_p99_us: 250,
                latency_p50_us: 110
            }
            .to_string(),
            "GENERATOR LATE: in 1 of 3 repetition(s) the load sent 1 in 100 messages more than 250 µs after they were due, more than the median latency it measured (110 µs): the cell's latency from schedule is as much the load's as the server's"
        );
        assert_eq!(
            serde_json::to_string(&vec![Note::EchoMismatch]).unwrap(),
            "[\"ECHO MISMATCH: the server returned bytes that were not sent\"]"
        );
    }
}
