//! `ringport merge`: the interval logs of several generators, added up.
//!
//! Every figure comes from exact histogram addition (`Histogram::add`),
//! never from averaging percentiles:
//!
//! - The summary adds every interval of every log, per tag: `send` (and
//!   untagged histograms, as other tools write them) is latency from send,
//!   `schedule` latency from schedule.
//! - The series puts each interval, by its absolute time (BaseTime plus its
//!   start), into the bucket of `--interval` that holds the interval's
//!   midpoint, counting buckets from the earliest interval start of all the
//!   logs. Logs whose clocks differ by less than half a bucket therefore
//!   line up, and finer intervals fall into the bucket that holds them.
//!
//! Logs that ringport wrote share one precision and lowest value, so their
//! addition is exact; logs of other tools are added at the coarser of the
//! two precisions, as HdrHistogram always does.

use crate::hdrlog::{LogFile, TAG_SCHEDULE, TAG_SEND};
use crate::report::{latency_table, Latency};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Why logs cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No log was given.
    #[error("no log to merge")]
    NoLogs,
    /// A log holds a tag that is neither `send` nor `schedule`.
    #[error("{path}: tag '{tag}' is not one ringport merges (send, schedule, or none)")]
    UnknownTag {
        /// The log.
        path: String,
        /// The tag.
        tag: String,
    },
    /// A log holds no `send` histogram.
    #[error("{0}: no latency from send (tag send, or untagged) in this log")]
    NoSend(String),
    /// Two histograms cannot be added (a value beyond any range).
    #[error("{path}: a histogram cannot be added: {why}")]
    Add {
        /// The log.
        path: String,
        /// What HdrHistogram said.
        why: String,
    },
    /// The bucket length is not a positive number of seconds.
    #[error("the interval must be longer than 0")]
    BadInterval,
}

/// One generator's log, as it went into the merge.
#[derive(Debug, Clone, Serialize)]
pub struct MergedLog {
    /// The file it came from.
    pub path: String,
    /// Its StartTime, in seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// From its first interval's start to its last one's end.
    pub elapsed_s: f64,
    /// Messages in its `send` histograms: the generator's verified messages.
    pub messages_verified: u64,
    /// The same per second of `elapsed_s`.
    pub msgs_per_sec: f64,
}

/// One bucket of the merged series.
#[derive(Debug, Clone, Serialize)]
pub struct MergedInterval {
    /// The end of the bucket, in seconds from the merge's start.
    pub t: f64,
    /// The start of the bucket, in seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// How many logs have an interval in this bucket.
    pub logs: u64,
    /// Messages verified in the bucket, all logs together.
    pub messages: u64,
    /// The same, per second of the bucket.
    pub msgs_per_sec: f64,
    /// Median latency from send in the bucket (null, like the three
    /// below, when the bucket verified no message).
    pub p50_us: Option<u64>,
    /// 99th percentile of latency from send in the bucket.
    pub p99_us: Option<u64>,
    /// The slowest message from send in the bucket.
    pub max_us: Option<u64>,
    /// 99th percentile of latency from schedule (null without `schedule`).
    pub p99_corrected_us: Option<u64>,
}

/// Every log, added up.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    /// The logs, in the order given.
    pub logs: Vec<MergedLog>,
    /// The earliest interval start of all the logs, Unix seconds.
    pub start_unix_s: f64,
    /// From `start_unix_s` to the latest interval end of all the logs.
    pub elapsed_s: f64,
    /// Messages verified, all logs together.
    pub messages_verified: u64,
    /// Messages verified per second of `elapsed_s`: the load of every
    /// generator together.
    pub msgs_per_sec: f64,
    /// The length of the series' buckets, in seconds.
    pub interval_s: f64,
    /// Latency from send, from the merged histogram.
    pub latency_us: Latency,
    /// Latency from schedule, from the merged histogram; null when no log
    /// has one (closed-loop runs).
    pub latency_corrected_us: Option<Latency>,
    /// The series, a row per bucket.
    pub series: Vec<MergedInterval>,
}

/// Histograms added as they come, created at the first one's precision.
#[derive(Default)]
struct Sum(Option<Histogram<u64>>);

impl Sum {
    fn add(&mut self, h: &Histogram<u64>) -> Result<(), String> {
        let acc = self.0.get_or_insert_with(|| {
            let mut acc = Histogram::new_from(h);
            acc.auto(true);
            acc
        });
        acc.add(h).map_err(|e| format!("{e:?}"))
    }

    fn latency(&self, percentiles: &[f64]) -> Option<Latency> {
        self.0
            .as_ref()
            .map(|h| Latency::from_histogram(h, percentiles))
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        self.0
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q))
    }
}

/// One bucket while it is being filled.
#[derive(Default)]
struct Bucket {
    send: Sum,
    schedule: Sum,
    logs: std::collections::BTreeSet<usize>,
}

/// Which histogram of a log an interval's tag names.
fn is_schedule(path: &str, tag: Option<&str>) -> Result<bool, MergeError> {
    match tag {
        None | Some(TAG_SEND) => Ok(false),
        Some(TAG_SCHEDULE) => Ok(true),
        Some(t) => Err(MergeError::UnknownTag {
            path: path.to_string(),
            tag: t.to_string(),
        }),
    }
}

/// The earliest interval start and the latest interval end of a log.
fn bounds(l: &LogFile) -> (f64, f64) {
    l.intervals.iter().fold((f64::MAX, f64::MIN), |(a, b), i| {
        (a.min(i.start_unix_s), b.max(i.start_unix_s + i.length_s))
    })
}

/// What the merge adds up as it goes: both tags over every log, and the buckets.
#[derive(Default)]
struct Totals {
    send: Sum,
    schedule: Sum,
    buckets: BTreeMap<u64, Bucket>,
}

impl Totals {
    /// Add every interval of log number `n`, bucketed from `origin`.
    fn add_log(
        &mut self,
        n: usize,
        (path, log): &(String, LogFile),
        origin: f64,
        interval_s: f64,
    ) -> Result<MergedLog, MergeError> {
        let add_err = |why| MergeError::Add {
            path: path.clone(),
            why,
        };
        let mut messages = 0;
        let mut has_send = false;
        for i in &log.intervals {
            let sched = is_schedule(path, i.tag.as_deref())?;
            let mid = i.start_unix_s + i.length_s / 2.0 - origin;
            let index = (mid / interval_s).floor().max(0.0) as u64;
            let bucket = self.buckets.entry(index).or_default();
            bucket.logs.insert(n);
            if sched {
                self.schedule.add(&i.histogram).map_err(add_err)?;
                bucket.schedule.add(&i.histogram).map_err(add_err)?;
            } else {
                has_send = true;
                messages += i.histogram.len();
                self.send.add(&i.histogram).map_err(add_err)?;
                bucket.send.add(&i.histogram).map_err(add_err)?;
            }
        }
        if !has_send {
            return Err(MergeError::NoSend(path.clone()));
        }
        let (from, to) = bounds(log);
        Ok(MergedLog {
            path: path.clone(),
            start_unix_s: log.start_unix_s,
            elapsed_s: to - from,
            messages_verified: messages,
            msgs_per_sec: rate(messages, to - from),
        })
    }

    /// The series: a row per bucket that any log has an interval in, the
    /// last one cut where the last log ends.
    fn series(&self, origin: f64, end: f64, interval_s: f64) -> Vec<MergedInterval> {
        self.buckets
            .iter()
            .map(|(index, b)| {
                let from = *index as f64 * interval_s;
                let to = (from + interval_s).min(end - origin).max(from);
                let messages = b.send.0.as_ref().map_or(0, |h| h.len());
                MergedInterval {
                    t: to,
                    start_unix_s: origin + from,
                    logs: b.logs.len() as u64,
                    messages,
                    msgs_per_sec: rate(messages, to - from),
                    p50_us: b.send.quantile(0.5),
                    p99_us: b.send.quantile(0.99),
                    max_us: b.send.0.as_ref().filter(|h| !h.is_empty()).map(|h| h.max()),
                    p99_corrected_us: b.schedule.quantile(0.99),
                }
            })
            .collect()
    }
}

/// Merge `logs` (each with the path it came from), in buckets of
/// `interval_s` seconds, reporting `percentiles` besides the fixed ones.
pub fn merge(
    logs: &[(String, LogFile)],
    interval_s: f64,
    percentiles: &[f64],
) -> Result<Merged, MergeError> {
    if logs.is_empty() {
        return Err(MergeError::NoLogs);
    }
    if !(interval_s.is_finite() && interval_s > 0.0) {
        return Err(MergeError::BadInterval);
    }
    let origin = logs
        .iter()
        .map(|(_, l)| bounds(l).0)
        .fold(f64::MAX, f64::min);
    let end = logs
        .iter()
        .map(|(_, l)| bounds(l).1)
        .fold(f64::MIN, f64::max);
    let mut totals = Totals::default();
    let per_log = logs
        .iter()
        .enumerate()
        .map(|(n, l)| totals.add_log(n, l, origin, interval_s))
        .collect::<Result<Vec<_>, _>>()?;
    let messages_verified = per_log.iter().map(|l| l.messages_verified).sum();
    Ok(Merged {
        logs: per_log,
        start_unix_s: origin,
        elapsed_s: end - origin,
        messages_verified,
        msgs_per_sec: rate(messages_verified, end - origin),
        interval_s,
        latency_us: totals.send.latency(percentiles).unwrap_or_default(),
        latency_corrected_us: totals.schedule.latency(percentiles),
        series: totals.series(origin, end, interval_s),
    })
}

/// The longest interval of the first log (its `--interval`; only the
/// last interval is shorter): `merge`'s bucket when none is asked for.
pub fn log_interval_s(logs: &[(String, LogFile)]) -> Option<f64> {
    let (_, first) = logs.first()?;
    let longest = first
        .intervals
        .iter()
        .map(|i| i.length_s)
        .fold(0.0, f64::max);
    (longest > 0.0).then_some(longest)
}

fn rate(messages: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        messages as f64 / secs
    } else {
        0.0
    }
}

impl Merged {
    /// The summary, in the shape of one `stress` run's: the logs, the
    /// messages, the time and rate, and the latency table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "merged           {} log{}, intervals aligned by absolute time in buckets of {} s",
            self.logs.len(),
            if self.logs.len() == 1 { "" } else { "s" },
            self.interval_s
        );
        for l in &self.logs {
            let _ = writeln!(
                s,
                "  {:<14} {} verified in {:.3} s, {:.0} msgs/s",
                l.path, l.messages_verified, l.elapsed_s, l.msgs_per_sec
            );
        }
        let _ = writeln!(
            s,
            "messages         {} verified, all logs together",
            self.messages_verified
        );
        let _ = writeln!(
            s,
            "elapsed          {:.3} s, {:.0} msgs/s (from the earliest interval start to the latest end)",
            self.elapsed_s, self.msgs_per_sec
        );
        s.push_str(&latency_table(
            &self.latency_us,
            self.latency_corrected_us.as_ref(),
        ));
        s
    }

    /// The series as a table, a row per bucket.
    pub fn series_text(&self) -> String {
        let mut s = format!(
            "{:>8} {:>5} {:>10} {:>12} {:>10} {:>10} {:>10} {:>14}\n",
            "t (s)",
            "logs",
            "messages",
            "msgs/s",
            "p50 (us)",
            "p99 (us)",
            "max (us)",
            "p99 corr (us)"
        );
        for r in &self.series {
            let _ = writeln!(
                s,
                "{:>8.3} {:>5} {:>10} {:>12.0} {:>10} {:>10} {:>10} {:>14}",
                r.t,
                r.logs,
                r.messages,
                r.msgs_per_sec,
                dash(r.p50_us),
                dash(r.p99_us),
                dash(r.max_us),
                dash(r.p99_corrected_us)
            );
        }
        s
    }

    /// The series as CSV: a header, then a row per bucket; a figure of an
    /// empty bucket is an empty cell.
    pub fn series_csv(&self) -> String {
        let mut s = String::from(
            "t_s,start_unix_s,logs,messages,msgs_per_sec,p50_us,p99_us,max_us,p99_corrected_us\n",
        );
        for r in &self.series {
            let _ = writeln!(
                s,
                "{:.6},{:.3},{},{},{:.3},{},{},{},{}",
                r.t,
                r.start_unix_s,
                r.logs,
                r.messages,
                r.msgs_per_sec,
                cell(r.p50_us),
                cell(r.p99_us),
                cell(r.max_us),
                cell(r.p99_corrected_us)
            );
        }
        s
    }
}

/// A figure in the text table: `-` when there is none.
fn dash(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// A figure in CSV: an empty cell when there is none.
fn cell(v: Option<u64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hdrlog::LogInterval;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = crate::stats::interval_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    fn log(start: f64, intervals: &[(&str, f64, f64, &[u64])]) -> LogFile {
        LogFile {
            start_unix_s: start,
            intervals: intervals
                .iter()
                .map(|(tag, at, len, values)| LogInterval {
                    tag: (!tag.is_empty()).then(|| tag.to_string()),
                    start_unix_s: start + at,
                    length_s: *len,
                    histogram: hist(values),
                })
                .collect(),
        }
    }

    #[test]
    fn merging_adds_histograms_exactly_and_aligns_offset_clocks() {
        // b's clock is 30 ms behind a's: its intervals still share a's buckets.
        let a = log(
            1000.0,
            &[("send", 0.0, 1.0, &[10, 20]), ("send", 1.0, 0.5, &[30])],
        );
        let b = log(
            999.97,
            &[
                ("send", 0.0, 1.0, &[100]),
                ("schedule", 0.0, 1.0, &[150]),
                ("send", 1.0, 1.0, &[1000, 2000]),
                ("schedule", 1.0, 1.0, &[2500, 2600]),
            ],
        );
        let logs = vec![("a".to_string(), a), ("b".to_string(), b)];
        let m = merge(&logs, 1.0, &[50.0]).unwrap();
        assert_eq!(m.messages_verified, 6);
        assert_eq!(m.logs[0].messages_verified, 3);
        assert_eq!(m.logs[1].messages_verified, 3);
        let all = hist(&[10, 20, 30, 100, 1000, 2000]);
        assert_eq!(m.latency_us.count, 6);
        assert_eq!(m.latency_us.p50, all.value_at_quantile(0.5));
        assert_eq!(m.latency_us.max, all.max());
        let corrected = m.latency_corrected_us.as_ref().unwrap();
        assert_eq!(corrected.count, 3);
        assert_eq!(m.series.len(), 2, "{:?}", m.series);
        assert_eq!((m.series[0].logs, m.series[0].messages), (2, 3));
        assert_eq!((m.series[1].logs, m.series[1].messages), (2, 3));
        assert_eq!(m.series[1].p99_corrected_us, Some(hist(&[2600]).max()));
        // From b's first start (999.97) to b's last end (1001.97).
        assert!((m.elapsed_s - 2.0).abs() < 1e-9, "{}", m.elapsed_s);
        assert!(
            (m.series[1].t - 2.0).abs() < 1e-9,
            "the last bucket ends with the logs"
        );
    }

    #[test]
    fn finer_intervals_fall_into_the_bucket_that_holds_them() {
        let a = log(
            0.0,
            &[
                ("", 0.0, 0.25, &[1]),
                ("", 0.25, 0.25, &[1]),
                ("", 0.5, 0.25, &[1]),
                ("", 0.75, 0.25, &[1]),
                ("", 1.0, 0.25, &[1]),
            ],
        );
        let m = merge(&[("a".into(), a)], 1.0, &[]).unwrap();
        let counts: Vec<u64> = m.series.iter().map(|r| r.messages).collect();
        assert_eq!(counts, [4, 1]);
        assert!(m.latency_corrected_us.is_none(), "untagged is from send");
    }

    #[test]
    fn unknown_tags_and_logs_without_send_are_refused() {
        let odd = log(0.0, &[("gc", 0.0, 1.0, &[1])]);
        let err = merge(&[("odd".into(), odd)], 1.0, &[]).unwrap_err();
        assert!(err.to_string().contains("tag 'gc'"), "{err}");
        let only = log(0.0, &[("schedule", 0.0, 1.0, &[1])]);
        let err = merge(&[("only".into(), only)], 1.0, &[]).unwrap_err();
        assert!(matches!(err, MergeError::NoSend(_)), "{err}");
        assert!(matches!(merge(&[], 1.0, &[]), Err(MergeError::NoLogs)));
    }
}
