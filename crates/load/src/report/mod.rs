//! The result of a run: counters, latency percentiles, and how to print them
//! (a table for people, JSON and CSV for programs).
//!
//! This module holds what a run measured and whether it was clean; the JSON
//! form is theirs, through `serde`. The two other forms have a module each:
//! the summary for people (`text`, [`Report::to_text`] and
//! [`latency_table`]) and the one-row CSV ([`Report::to_csv`]). A latency,
//! in every form, is `latency`'s.
//!
//! JSON keys are a contract: later versions add keys and never rename them.

mod csv;
mod latency;
mod text;

use crate::diagnose::LISTED;
pub use crate::diagnose::{Mismatch, MismatchKind};
pub use crate::outcome::{ErrorKind, IntervalStat, StepStat};
use crate::profile::Rate;
use crate::stats::Totals;
use hdrhistogram::Histogram;
pub use latency::{percentile_key, Latency, Percentiles};
use serde::Serialize;
use std::collections::BTreeMap;
pub use text::latency_table;

/// `1234567.8` as `1,234,568`: a count or rate for people to read.
pub fn grouped(v: f64) -> String {
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

/// A rate that changes over the run, as the JSON gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RateProfile {
    /// `--rate FROM..TO --ramp OVER`.
    Ramp {
        /// Messages per second where measuring begins.
        from: f64,
        /// Messages per second at the end of the ramp, and after it.
        to: f64,
        /// The ramp's length in seconds.
        over_s: f64,
    },
    /// `--rate A,B,C --step EACH`.
    Steps {
        /// Messages per second of each step, in order.
        rates: Vec<f64>,
        /// Each step's length in seconds.
        each_s: f64,
    },
}

impl std::fmt::Display for RateProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateProfile::Ramp { from, to, over_s } => {
                write!(f, "ramp from {from} to {to} msgs/s over {over_s} s")
            }
            RateProfile::Steps { rates, each_s } => {
                let rates: Vec<String> = rates.iter().map(|r| r.to_string()).collect();
                write!(f, "steps of {} msgs/s, {each_s} s each", rates.join(", "))
            }
        }
    }
}

impl RateProfile {
    /// The profile of a ramp or steps; `None` for a fixed rate.
    pub fn of(rate: &Rate) -> Option<RateProfile> {
        match rate {
            Rate::Fixed(_) => None,
            Rate::Ramp { from, to, over } => Some(RateProfile::Ramp {
                from: *from,
                to: *to,
                over_s: over.as_secs_f64(),
            }),
            Rate::Steps { rates, each } => Some(RateProfile::Steps {
                rates: rates.clone(),
                each_s: each.as_secs_f64(),
            }),
        }
    }
}

/// How evenly the connections shared the measured window: each
/// connection's verified messages per second (churn: each connection
/// slot's), summed up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// The slowest connection, messages per second.
    pub min: f64,
    /// The median connection (the mean of the two middle ones when even).
    pub median: f64,
    /// The fastest connection.
    pub max: f64,
    /// Jain's fairness index, (Σx)² / (n·Σx²): 1 when every connection
    /// got the same, 1/n when one got everything; `None` when none got
    /// any (nothing was shared, so nothing was shared fairly).
    pub jain: Option<f64>,
    /// Connections counted: every connection asked for (churn: every slot).
    pub connections: u64,
}

impl Spread {
    /// The spread of `counts` messages over `secs` seconds; `None` for no
    /// connections.
    pub fn from_counts(counts: &[u64], secs: f64) -> Option<Spread> {
        if counts.is_empty() {
            return None;
        }
        let secs = secs.max(1e-9);
        let mut x: Vec<f64> = counts.iter().map(|c| *c as f64 / secs).collect();
        x.sort_by(f64::total_cmp);
        let n = x.len();
        let median = if n % 2 == 1 {
            x[n / 2]
        } else {
            (x[n / 2 - 1] + x[n / 2]) / 2.0
        };
        let sum: f64 = x.iter().sum();
        let squares: f64 = x.iter().map(|v| v * v).sum();
        let jain = (squares > 0.0).then(|| sum * sum / (n as f64 * squares));
        Some(Spread {
            min: x[0],
            median,
            max: x[n - 1],
            jain,
            connections: n as u64,
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Connections asked for.
    pub connections: u64,
    /// Connections that opened (their connect completed).
    pub connections_opened: u64,
    /// Connections that sent and verified everything the run asked of
    /// them: the count, or until the measured window ended. A clean run
    /// completes every connection asked for.
    pub connections_completed: u64,
    /// Connections that failed, each counted once under its kind in
    /// `errors_by_kind`. Completed plus failed is the connections asked for.
    pub connections_failed: u64,
    /// The end-of-run check: how long each connection waited for the
    /// server's end of stream after its half-close (0: not checked).
    pub close_grace_s: f64,
    /// Connections whose server did not close within the grace, of those
    /// completed (and, with churn, replaced). Not an error (some echo
    /// servers never close); noted.
    pub close_not_seen: u64,
    /// Connections that the server reset instead of closing, of the same.
    pub close_by_reset: u64,
    /// Churn (`--per-connection`): messages each connection carries before
    /// it is closed (through the same check) and a new one opened in its
    /// place. Null when every connection stays open for the run.
    pub per_connection: Option<u64>,
    /// Churn: connections that carried their messages, were closed and
    /// were replaced, with their close in the measured window.
    pub connections_cycled: u64,
    /// Churn: `connections_cycled` per second of the measured window;
    /// null without churn.
    pub connections_per_sec: Option<f64>,
    /// Churn: how long the replacement connects begun in the measured
    /// window took, from `connect` to established; null without churn.
    pub connect_latency_us: Option<Latency>,
    /// Measured messages the run asked for: the count times the
    /// connections, or in an open-loop duration run the slots due in the
    /// measured window. Null for a closed-loop duration run.
    pub messages_scheduled: Option<u64>,
    /// Of `messages_scheduled`, those never sent: because their connection
    /// failed, or (`messages_unsent`) because the server fell behind the
    /// rate. Null when nothing was scheduled.
    pub messages_never_sent: Option<u64>,
    /// Messages fully written to the server (after the warm-up).
    pub messages_sent: u64,
    /// Messages whose echo came back byte-exact (after the warm-up).
    pub messages_verified: u64,
    /// Messages whose echo differed.
    pub mismatches: u64,
    /// What the first wrong bytes of mismatched connections were, by
    /// connection: at most 16 of them (and at most 16 worked out per load thread).
    pub mismatch_details: Vec<Mismatch>,
    /// Mismatches not in `mismatch_details`.
    pub mismatch_details_left_off: u64,
    /// Failed connections, of every kind (mismatches included), warm-up
    /// included: the same as `connections_failed`.
    pub errors: u64,
    /// The errors by kind; every kind is present, zero or not.
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
    /// Payload bytes of the measured messages written.
    pub bytes_sent: u64,
    /// Payload bytes of the measured messages read back (and compared).
    pub bytes_received: u64,
    /// Wall time of the measured part of the run.
    pub elapsed_s: f64,
    /// Verified messages per second.
    pub msgs_per_sec: f64,
    /// Verified echo bytes per second, in 10^6 bytes.
    pub mb_per_sec: f64,
    /// Latency from a message being handed to the socket to its last byte verified.
    pub latency_us: Latency,
    /// Open loop only (null otherwise): latency from when the schedule said
    /// the message was due, which charges a stalled server for every message
    /// it held back (coordinated omission corrected).
    pub latency_corrected_us: Option<Latency>,
    /// Open loop only (null otherwise): how late the generator itself sent
    /// each measured message, from when it was due, or, if later, from when
    /// its connection could take it (a wait for the server's previous echo
    /// is the server's, and is not counted here). Microseconds, 0 on time.
    pub send_lateness_us: Option<Latency>,
    /// Open loop: the generator fell behind its own schedule by more than
    /// the latency it measured (`send_lateness_us.p99` above
    /// `latency_us.p50`), so latency from schedule is as much the
    /// generator's as the server's; the summary says so in words.
    pub generator_late: bool,
    /// The driver: "events" or "threads".
    pub engine: &'static str,
    /// Load threads used.
    pub threads: u64,
    /// Messages in flight per connection (at most, in an open loop).
    pub pipeline: u64,
    /// Open loop: messages per second asked for; null for a closed loop,
    /// and for a ramp or steps (`rate_profile`).
    pub rate: Option<f64>,
    /// Open loop with `--ramp` or `--step`: the rates asked for; null otherwise
    /// (then `rate` is null too, and `series` gives the rate of each interval).
    pub rate_profile: Option<RateProfile>,
    /// Open loop: measured messages that were due before the end but never
    /// sent because the pipeline stayed full (the server fell behind).
    pub messages_unsent: u64,
    /// Length of the warm-up, not measured.
    pub warmup_s: f64,
    /// Messages verified during the warm-up (in no other count).
    pub warmup_messages: u64,
    /// Time it took to open the connections, before the clock started.
    pub connect_s: f64,
    /// When measuring began (after the warm-up) by this machine's wall
    /// clock, in seconds since the Unix epoch: the StartTime of `--hdr-log`.
    pub measure_start_unix_s: f64,
    /// The seed of a `--size` payload; null for the text template.
    pub seed: Option<u64>,
    /// Per-interval figures with `--interval`, `--ramp` or `--step`; empty otherwise.
    pub series: Vec<IntervalStat>,
    /// With `--step`: what each step carried, in order; empty otherwise.
    pub steps: Vec<StepStat>,
    /// True when the run was stopped early (Ctrl-C or SIGTERM in `ringport
    /// stress`): the figures cover the part that ran, and the run did less
    /// than it was asked.
    pub interrupted: bool,
    /// When it was interrupted, in seconds from the start of measuring
    /// (0 if during the connects or the warm-up); null if it was not.
    pub interrupted_after_s: Option<f64>,
    /// The measured length asked for (`--duration`), for the summary's
    /// interrupted line; null for a count.
    #[serde(skip)]
    pub(crate) duration_asked_s: Option<f64>,
    /// How evenly the connections shared the measured window (each one's
    /// verified messages per second); null when there were none.
    pub per_connection_rate: Option<Spread>,
}

/// What the engine hands over to build a report.
pub(crate) struct Measured<'a> {
    pub totals: &'a Totals,
    pub raw: &'a Histogram<u64>,
    pub corrected: Option<&'a Histogram<u64>>,
    pub elapsed: std::time::Duration,
    pub connect: std::time::Duration,
    /// How long the warm-up ran: as asked, or less when the run ended
    /// (interrupted, failed) before it was over.
    pub warmup: std::time::Duration,
    /// When measuring began, by the wall clock.
    pub measure_start: std::time::SystemTime,
    /// How long after the start of measuring the run was interrupted
    /// (zero if before it), or `None` if it was not.
    pub interrupted_after: Option<std::time::Duration>,
    pub threads: u64,
    pub series: Vec<IntervalStat>,
    pub steps: Vec<StepStat>,
    /// Measured messages asked for, where the run asks for a number.
    pub asked: Option<u64>,
}

impl Report {
    /// Build the report from merged counters.
    pub(crate) fn new(config: &crate::Config, m: Measured<'_>) -> Self {
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let mut errors_by_kind: BTreeMap<ErrorKind, u64> =
            ErrorKind::ALL.iter().map(|k| (*k, 0)).collect();
        for (k, n) in &m.totals.errors {
            *errors_by_kind.entry(*k).or_default() += n;
        }
        let t = m.totals;
        let errors: u64 = errors_by_kind.values().sum();
        let mismatches = errors_by_kind[&ErrorKind::Mismatch];
        let mut mismatch_details = t.mismatch_details.clone();
        mismatch_details.sort_by_key(|d| (d.connection, d.stream_offset));
        mismatch_details.truncate(LISTED);
        let latency_us = Latency::from_histogram(m.raw, &config.percentiles);
        let send_lateness = config
            .rate
            .as_ref()
            .map(|_| Latency::of_recorded(t.lateness_us.as_ref()));
        let generator_late = send_lateness
            .as_ref()
            .is_some_and(|l| l.measured() && latency_us.measured() && l.p99 > latency_us.p50);
        Report {
            connections: config.connections as u64,
            connections_opened: t.connections_opened,
            connections_completed: t.connections_completed,
            connections_failed: errors,
            close_grace_s: config.close_grace.as_secs_f64(),
            close_not_seen: t.close_not_seen,
            close_by_reset: t.close_by_reset,
            per_connection: config.per_connection,
            connections_cycled: t.connections_cycled,
            connections_per_sec: config
                .per_connection
                .map(|_| t.connections_cycled as f64 / secs),
            connect_latency_us: config
                .per_connection
                .map(|_| Latency::of_recorded(t.connect_us.as_ref())),
            messages_scheduled: m.asked,
            messages_never_sent: m.asked.map(|n| n.saturating_sub(t.messages_sent)),
            messages_sent: t.messages_sent,
            messages_verified: t.messages_verified,
            mismatches,
            mismatch_details_left_off: mismatches.saturating_sub(mismatch_details.len() as u64),
            mismatch_details,
            errors,
            errors_by_kind,
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
            // The window as measured (0 when nothing was), not the
            // divisor's floor.
            elapsed_s: m.elapsed.as_secs_f64(),
            msgs_per_sec: t.messages_verified as f64 / secs,
            mb_per_sec: t.bytes_received as f64 / secs / 1e6,
            latency_us,
            latency_corrected_us: m
                .corrected
                .map(|h| Latency::from_histogram(h, &config.percentiles)),
            send_lateness_us: send_lateness,
            generator_late,
            engine: config.engine.name(),
            threads: m.threads,
            pipeline: config.pipeline as u64,
            rate: config.rate.as_ref().and_then(Rate::fixed),
            rate_profile: config.rate.as_ref().and_then(RateProfile::of),
            messages_unsent: t.messages_unsent,
            warmup_s: m.warmup.as_secs_f64(),
            warmup_messages: t.warmup_messages,
            connect_s: m.connect.as_secs_f64(),
            measure_start_unix_s: crate::hdrlog::unix_seconds(m.measure_start),
            seed: config.payload.seed(),
            series: m.series,
            steps: m.steps,
            interrupted: m.interrupted_after.is_some(),
            interrupted_after_s: m.interrupted_after.map(|d| d.as_secs_f64()),
            duration_asked_s: match config.stop {
                crate::StopWhen::Duration(d) => Some(d.as_secs_f64()),
                crate::StopWhen::Count(_) => None,
            },
            per_connection_rate: Spread::from_counts(&t.per_connection, secs),
        }
    }

    /// True when the run did everything it was asked: every connection
    /// completed, every message scheduled was sent (or was due while the
    /// server had fallen behind the rate, which is a measurement), and
    /// every message sent came back byte-exact.
    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }

    /// Why the run is not clean, a phrase each; empty when it is.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.connections_failed > 0 {
            p.push(format!(
                "{} of {} connections failed ({})",
                self.connections_failed,
                self.connections,
                self.error_kinds()
            ));
        }
        let accounted = self.connections_completed + self.connections_failed;
        if accounted < self.connections {
            p.push(format!(
                "{} of {} connections neither completed nor failed",
                self.connections - accounted,
                self.connections
            ));
        }
        if self.messages_verified < self.messages_sent {
            p.push(format!(
                "{} of {} messages sent never came back verified",
                self.messages_sent - self.messages_verified,
                self.messages_sent
            ));
        }
        if let (Some(n), Some(lost)) = (self.messages_scheduled, self.messages_lost()) {
            if lost > 0 {
                p.push(format!(
                    "{} of {n} scheduled messages verified, {lost} never sent",
                    self.messages_verified
                ));
            }
        }
        p
    }

    /// Scheduled messages never sent for a reason other than the server
    /// falling behind the rate (their connection failed first).
    fn messages_lost(&self) -> Option<u64> {
        self.messages_never_sent
            .map(|n| n.saturating_sub(self.messages_unsent))
    }

    /// `early_close 8, reset 1`: the kinds that occurred.
    fn error_kinds(&self) -> String {
        let kinds: Vec<String> = self
            .errors_by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        kinds.join(", ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_generator_later_than_the_latency_it_measured_says_so() {
        // Sends late by 5 and 80 µs against a median latency of 20 µs.
        let late = Totals {
            lateness_us: Some(hist(&[5, 5, 80])),
            ..Totals::default()
        };
        let r = report_with(true, &late);
        assert!(r.generator_late);
        assert_eq!(r.send_lateness_us.as_ref().unwrap().count, 3);
        let text = r.to_text();
        assert!(
            text.contains("  sent late      p50 5, p99 80, max 80"),
            "{text}"
        );
        assert!(
            text.contains("GENERATOR LATE   1 in 100 messages went out more than 80 us"),
            "{text}"
        );
        // On time (under the median latency): the figures, and no alarm.
        let on_time = Totals {
            lateness_us: Some(hist(&[0, 1, 3])),
            ..Totals::default()
        };
        let r = report_with(true, &on_time);
        assert!(!r.generator_late);
        assert!(!r.to_text().contains("GENERATOR LATE"));
        // A closed loop has no schedule to be late for.
        let r = report_with(false, &late);
        assert!(r.send_lateness_us.is_none() && !r.generator_late);
        assert!(!r.to_text().contains("sent late"));
    }

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = crate::stats::run_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn asked_percentiles_serialize_as_a_map_with_short_keys() {
        let h = hist(&(1..=10_000).collect::<Vec<_>>());
        let l = Latency::from_histogram(&h, &[50.0, 99.99, 100.0]);
        let text = serde_json::to_string(&l).unwrap();
        assert!(
            text.contains(r#""percentiles":{"50":"#),
            "ascending order: {text}"
        );
        assert!(text.find(r#""99.99":"#) < text.find(r#""100":"#), "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        // 100 is the maximum (as HdrHistogram rounds it: within 0.1%).
        assert_eq!(json["percentiles"]["100"], l.max);
        assert_eq!(json["p999"], l.p999);
    }

    #[test]
    fn an_empty_histogram_reports_zeros_not_a_panic() {
        let l = Latency::from_histogram(&crate::stats::run_histogram(), &[99.99]);
        assert_eq!(l.max, 0);
        assert_eq!(l.percentiles.get(99.99), Some(0));
    }

    #[test]
    fn the_spread_of_even_connections_is_fair_and_of_one_starved_is_not() {
        let even = Spread::from_counts(&[100, 100, 100, 100], 2.0).unwrap();
        assert_eq!((even.min, even.median, even.max), (50.0, 50.0, 50.0));
        assert!((even.jain.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(even.connections, 4);
        // One connection got everything: 1/n.
        let one = Spread::from_counts(&[0, 0, 0, 400], 1.0).unwrap();
        assert!((one.jain.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(one.median, 0.0);
        let starved = Spread::from_counts(&[10, 100, 110, 90, 100], 1.0).unwrap();
        assert_eq!((starved.min, starved.median), (10.0, 100.0));
        let j = starved.jain.unwrap();
        assert!(j < 0.95 && j > 0.8, "{starved:?}");
        assert_eq!(Spread::from_counts(&[], 1.0), None);
        assert_eq!(Spread::from_counts(&[0, 0], 1.0).unwrap().jain, None);
    }

    pub(crate) fn report(corrected: bool) -> Report {
        report_with(corrected, &Totals::default())
    }

    /// A report of three messages of 10, 20 and 30 µs, with `totals`.
    pub(crate) fn report_with(corrected: bool, totals: &Totals) -> Report {
        let mut config = crate::Config::new("127.0.0.1:1".parse().unwrap());
        config.percentiles = vec![99.99];
        if corrected {
            config.rate = Some(Rate::Fixed(100.0));
        }
        let h = hist(&[10, 20, 30]);
        Report::new(
            &config,
            Measured {
                totals,
                raw: &h,
                corrected: corrected.then_some(&h),
                elapsed: std::time::Duration::from_secs(1),
                connect: std::time::Duration::ZERO,
                warmup: std::time::Duration::ZERO,
                measure_start: std::time::SystemTime::now(),
                interrupted_after: None,
                threads: 1,
                series: Vec::new(),
                steps: Vec::new(),
                asked: None,
            },
        )
    }
}
