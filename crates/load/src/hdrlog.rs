//! HdrHistogram interval logs: `stress --hdr-log` writes one, `merge` reads many.
//!
//! The format is HdrHistogram's standard one (the Java `HistogramLogWriter`'s,
//! which `HistogramLogProcessor` and the other implementations read), written
//! and parsed by the `hdrhistogram` crate: comment lines, a `#[StartTime: …]`
//! and a `#[BaseTime: …]` header, then one line per interval and tag,
//! `Tag=send,<start>,<length>,<max>,<base64 of a V2 compressed histogram>`.
//!
//! - Values are microseconds, as in the report. The max column is divided by
//!   [`MAX_VALUE_DIVISOR`] (so it reads in milliseconds, as in Java's logs).
//! - StartTime and BaseTime are both the wall-clock instant measuring began
//!   (after the warm-up); interval starts are seconds after it. Two logs are
//!   therefore aligned by absolute time: BaseTime plus the interval's start.
//! - Tag [`TAG_SEND`] is latency from send; in an open loop, [`TAG_SCHEDULE`]
//!   is latency from when the schedule said the message was due.
//!
//! The interval histograms have the run histogram's bounds and precision, so
//! the intervals of one log add up to exactly the run's histogram.

use crate::series::Ready;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriter, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tag of latency from send: from a message handed to the socket to its
/// last byte verified.
pub const TAG_SEND: &str = "send";
/// The tag of latency from schedule (open loop only): from when the message
/// was due, which corrects coordinated omission.
pub const TAG_SCHEDULE: &str = "schedule";
/// The max column of each interval line is the interval's largest value
/// divided by this: microseconds shown as milliseconds.
pub const MAX_VALUE_DIVISOR: f64 = 1000.0;
/// The log's interval when `--interval` is not given.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Where a run writes its interval log; put one in
/// [`Config::hdr_log`](crate::Config::hdr_log). The run writes the headers
/// when measuring starts and a line per interval and tag as each interval
/// completes (from the thread that called [`run`](crate::run), never a load
/// thread). A write that fails does not stop the run: [`HdrLog::finish`]
/// returns the first failure.
pub struct HdrLog {
    state: Mutex<State>,
}

struct State {
    out: Box<dyn Write + Send>,
    error: Option<io::Error>,
}

impl std::fmt::Debug for HdrLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HdrLog(..)")
    }
}

impl HdrLog {
    /// A log written to `out` (a file opened before the run).
    pub fn new(out: Box<dyn Write + Send>) -> HdrLog {
        HdrLog {
            state: Mutex::new(State { out, error: None }),
        }
    }

    /// Flush, and return the first write that failed, if any.
    pub fn finish(&self) -> io::Result<()> {
        let mut s = self.state.lock().expect("hdr log lock");
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        s.out.flush()
    }
}

/// What the log's headers say.
pub(crate) struct Header {
    /// When measuring began, by the wall clock.
    pub start: SystemTime,
    /// A comment on what was run.
    pub comment: String,
    /// The rate changes over the run (a ramp or steps): each interval is
    /// preceded by a comment with the rate the schedule asked of it.
    pub rate_varies: bool,
}

/// A log being written: the crate's writer over the [`HdrLog`]'s output.
pub(crate) struct Session<'a> {
    writer: Option<IntervalLogWriter<'a, 'a, Box<dyn Write + Send>, V2DeflateSerializer>>,
    error: Option<io::Error>,
    rate_varies: bool,
}

impl Session<'_> {
    /// Write one interval: a `send` line and, in an open loop, a `schedule` line.
    pub fn write(&mut self, r: &Ready) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        if let Some(rate) = r.stat.rate_asked.filter(|_| self.rate_varies) {
            // A comment, which every reader of the format skips: the lines
            // stay what `merge` and HistogramLogProcessor read.
            let line = format!(
                "[Rate asked: {rate:.1} msgs/s from {:.3} s to {:.3} s]",
                r.from.as_secs_f64(),
                r.to.as_secs_f64()
            );
            if let Err(e) = w.write_comment(&line) {
                self.error = Some(e);
                return;
            }
        }
        let tags = [
            (TAG_SEND, Some(&r.raw)),
            (TAG_SCHEDULE, r.corrected.as_ref()),
        ];
        for (tag, h) in tags {
            let Some(h) = h else { continue };
            if let Err(e) = w.write_histogram(h, r.from, r.to - r.from, Tag::new(tag)) {
                self.error = Some(io::Error::other(e.to_string()));
                return;
            }
        }
    }
}

/// Run `f` with the log open: its headers written, its writer in a
/// [`Session`] (that writes nothing when there is no log).
pub(crate) fn with_session<R>(
    log: Option<&HdrLog>,
    header: &Header,
    f: impl FnOnce(&mut Session<'_>) -> R,
) -> R {
    let Some(log) = log else {
        return f(&mut Session {
            writer: None,
            error: None,
            rate_varies: false,
        });
    };
    let mut guard = log.state.lock().expect("hdr log lock");
    let state = &mut *guard;
    let mut serializer = V2DeflateSerializer::new();
    let begun = IntervalLogWriterBuilder::new()
        .add_comment(&header.comment)
        .add_comment("[Histogram log format version 1.3]")
        .add_comment(&format!(
            "values are microseconds; tags: {TAG_SEND} (latency from send), {TAG_SCHEDULE} (open loop: from schedule)"
        ))
        .with_start_time(header.start)
        .with_base_time(header.start)
        .with_max_value_divisor(MAX_VALUE_DIVISOR)
        .begin_log_with(&mut state.out, &mut serializer);
    let mut session = match begun {
        Ok(w) => Session {
            writer: Some(w),
            error: None,
            rate_varies: header.rate_varies,
        },
        Err(e) => Session {
            writer: None,
            error: Some(e),
            rate_varies: false,
        },
    };
    let result = f(&mut session);
    let error = session.error.take();
    drop(session);
    if state.error.is_none() {
        state.error = error;
    }
    result
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HdrLogError {
    /// A line is neither a comment, a header nor an interval.
    #[error("line {line} is not an HdrHistogram interval log line")]
    Parse {
        /// The line, counted from 1.
        line: usize,
    },
    /// An interval's histogram does not decode.
    #[error("line {line}: the histogram does not decode: {why}")]
    Decode {
        /// The line, counted from 1.
        line: usize,
        /// What the decoder said.
        why: String,
    },
    /// The log holds no interval at all.
    #[error("it holds no interval histogram: not an HdrHistogram interval log, or the run measured nothing")]
    Empty,
}

/// One interval of a log, decoded.
#[derive(Debug, Clone)]
pub struct LogInterval {
    /// Its tag; `None` when untagged (logs of other tools).
    pub tag: Option<String>,
    /// When it started: seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// How long it lasted, in seconds.
    pub length_s: f64,
    /// Its histogram.
    pub histogram: Histogram<u64>,
}

/// A whole log, decoded, its interval times made absolute.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// The `#[StartTime: …]` header (or the first interval's start), Unix seconds.
    pub start_unix_s: f64,
    /// The intervals in the order of the file.
    pub intervals: Vec<LogInterval>,
}

/// Decode a log from its bytes. Interval times are made absolute as the
/// Java `HistogramLogReader` does: BaseTime plus the interval's start when
/// there is a BaseTime; else StartTime plus it when the start is more than
/// a year before StartTime (an offset, not a date); else the start itself.
pub fn read_log(bytes: &[u8]) -> Result<LogFile, HdrLogError> {
    let line_at = |offset: usize| {
        bytes[..offset.min(bytes.len())]
            .split(|b| *b == b'\n')
            .count()
    };
    let mut start: Option<f64> = None;
    let mut base: Option<f64> = None;
    let mut intervals = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| match e {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                HdrLogError::Parse {
                    line: line_at(offset),
                }
            }
        })?;
        match entry {
            LogEntry::StartTime(t) => start = Some(t.as_secs_f64()),
            LogEntry::BaseTime(t) => base = Some(t.as_secs_f64()),
            LogEntry::Interval(i) => {
                let encoded = i.encoded_histogram();
                // The line is where the encoded text lies within the input.
                let at = encoded.as_ptr() as usize - bytes.as_ptr() as usize;
                let line = line_at(at);
                let decode = |why: String| HdrLogError::Decode { line, why };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| decode(format!("bad base64: {e}")))?;
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut &raw[..])
                    .map_err(|e| decode(e.to_string()))?;
                let ts = i.start_timestamp().as_secs_f64();
                let start_s = *start.get_or_insert(ts);
                let offset = match base {
                    Some(b) => b,
                    None if ts < start_s - 365.0 * 86_400.0 => start_s,
                    None => 0.0,
                };
                intervals.push(LogInterval {
                    tag: i.tag().map(|t| t.as_str().to_string()),
                    start_unix_s: offset + ts,
                    length_s: i.duration().as_secs_f64(),
                    histogram,
                });
            }
        }
    }
    if intervals.is_empty() {
        return Err(HdrLogError::Empty);
    }
    Ok(LogFile {
        start_unix_s: start.unwrap_or(intervals[0].start_unix_s),
        intervals,
    })
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test can read back after the log is done.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ready(from_ms: u64, values: &[u64], corrected: bool) -> Ready {
        let mut raw = crate::stats::interval_histogram();
        for v in values {
            raw.record(*v).unwrap();
        }
        let corrected = corrected.then(|| {
            let mut h = crate::stats::interval_histogram();
            for v in values {
                h.record(v * 2).unwrap();
            }
            h
        });
        Ready::for_test(
            Duration::from_millis(from_ms),
            Duration::from_millis(from_ms + 1000),
            raw,
            corrected,
        )
    }

    #[test]
    fn a_written_log_reads_back_with_absolute_times_tags_and_exact_histograms() {
        let buf = Shared::default();
        let log = HdrLog::new(Box::new(buf.clone()));
        let start = UNIX_EPOCH + Duration::from_millis(1_800_000_000_250);
        let header = Header {
            start,
            comment: "test, with a comma".into(),
            rate_varies: true,
        };
        let mut a = ready(0, &[10, 20, 30, 40_000], true);
        // A ramp's interval: its rate goes in a comment the readers skip.
        a.stat.rate_asked = Some(1500.0);
        let b = ready(1000, &[5, 7_000_000], true);
        with_session(Some(&log), &header, |s| {
            s.write(&a);
            s.write(&b);
        });
        log.finish().unwrap();
        let bytes = buf.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1800000000.250 "), "{text}");
        assert!(text.contains("#[BaseTime: 1800000000.250 "), "{text}");
        assert!(text.contains("Tag=send,1.000,1.000,7000."), "{text}");
        assert!(
            text.contains("#[Rate asked: 1500.0 msgs/s from 0.000 s to 1.000 s]\nTag=send,0.000,"),
            "{text}"
        );
        let read = read_log(&bytes).unwrap();
        assert_eq!(read.start_unix_s, 1_800_000_000.25);
        assert_eq!(read.intervals.len(), 4);
        let tags: Vec<_> = read.intervals.iter().map(|i| i.tag.clone()).collect();
        assert_eq!(
            tags,
            ["send", "schedule", "send", "schedule"].map(|t| Some(t.to_string()))
        );
        assert_eq!(read.intervals[2].start_unix_s, 1_800_000_001.25);
        assert_eq!(read.intervals[0].histogram, a.raw);
        assert_eq!(read.intervals[3].histogram, *b.corrected.as_ref().unwrap());
    }

    #[test]
    fn logs_without_base_time_follow_the_java_reader() {
        // Absolute timestamps, no headers: the first interval's start is StartTime.
        let buf = Shared::default();
        {
            let mut out = buf.clone();
            let mut ser = V2DeflateSerializer::new();
            let mut w = IntervalLogWriterBuilder::new()
                .begin_log_with(&mut out, &mut ser)
                .unwrap();
            let h = ready(0, &[3], false).raw;
            w.write_histogram(
                &h,
                Duration::from_secs(1_700_000_000),
                Duration::from_secs(1),
                None,
            )
            .unwrap();
        }
        let read = read_log(&buf.0.lock().unwrap()).unwrap();
        assert_eq!(read.start_unix_s, 1_700_000_000.0);
        assert_eq!(read.intervals[0].start_unix_s, 1_700_000_000.0);
        assert_eq!(read.intervals[0].tag, None);
    }

    #[test]
    fn broken_logs_are_errors_that_name_the_line() {
        assert!(matches!(read_log(b""), Err(HdrLogError::Empty)));
        assert!(matches!(
            read_log(b"#just a comment\n"),
            Err(HdrLogError::Empty)
        ));
        let err = read_log(b"#ok\nthis is not a log\n").unwrap_err();
        assert!(matches!(err, HdrLogError::Parse { line: 2 }), "{err}");
        let err = read_log(b"#[BaseTime: 1.000 (seconds since epoch)]\nTag=send,0.000,1.000,0.001,HISTFAAAAnotahistogram\n")
            .unwrap_err();
        assert!(matches!(err, HdrLogError::Decode { line: 2, .. }), "{err}");
    }
}
