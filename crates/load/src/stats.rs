//! What each load thread counts, and how the threads' counts come together.
//!
//! Every thread owns a [`Recorder`]: plain counters and HdrHistograms, no
//! sharing on the per-message path. They are merged once, at the end. The
//! per-interval series is the one thing merged while the run goes on: a
//! thread hands over an interval's histogram when it crosses into the next
//! one, and [`Series`] emits a row once every thread has handed that
//! interval over (or finished), so a row is never a partial sum.

use crate::diagnose::{Mismatch, PER_THREAD};
use crate::outcome::ErrorKind;
use crate::progress::{Delta, Progress};
use crate::series::{IntervalRecorder, Series};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The slowest latency a histogram holds exactly: one hour, in microseconds.
/// Anything slower is recorded as one hour (and the run has bigger problems).
pub(crate) const MAX_US: u64 = 3_600_000_000;

/// A histogram for a whole run: 3 significant digits, 1 µs to one hour.
pub(crate) fn run_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// A histogram for one interval, with the run histogram's precision (so
/// that the intervals of an `--hdr-log` add up to exactly the run's
/// histogram) but growing only as far as the slowest latency recorded in
/// it: about 40 KiB while latencies stay under 10 ms, 90 KiB under a
/// second, and at most 184 KiB (the run histogram's size), rather than
/// the whole hour's range up front.
pub(crate) fn interval_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, 3).expect("valid histogram bounds");
    h.auto(true);
    h
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Lateness in whole microseconds: 0 is on time (a latency is at least 1).
fn lateness_us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Counters one thread keeps; merged at the end.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    pub messages_sent: u64,
    pub messages_verified: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub warmup_messages: u64,
    pub messages_unsent: u64,
    /// Failed connections by kind: each failed connection counts once.
    pub errors: BTreeMap<ErrorKind, u64>,
    pub connections_opened: u64,
    /// Connections that sent and verified everything asked of them.
    pub connections_completed: u64,
    /// Completed connections whose server did not close within the grace
    /// after the client's half-close.
    pub close_not_seen: u64,
    /// Completed connections that the server reset instead of closing.
    pub close_by_reset: u64,
    /// Churn: connections closed after their messages and replaced, whose
    /// close check ended in the measured window.
    pub connections_cycled: u64,
    /// Churn: how long the connects started in the measured window took.
    pub connect_us: Option<Histogram<u64>>,
    /// Open loop: how late the generator handed each measured message to
    /// its socket (see [`Recorder::sent_late`]).
    pub lateness_us: Option<Histogram<u64>>,
    /// Measured messages verified by each connection asked for, in no
    /// particular order (churn: by each connection slot, its line of
    /// connections together); 0 for one that never opened.
    pub per_connection: Vec<u64>,
    /// What the first wrong bytes of failed connections were: at most
    /// [`PER_THREAD`] a thread, the rest only counted as mismatches.
    pub mismatch_details: Vec<Mismatch>,
}

impl Totals {
    pub fn merge(&mut self, o: &Totals) {
        self.messages_sent += o.messages_sent;
        self.messages_verified += o.messages_verified;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.warmup_messages += o.warmup_messages;
        self.messages_unsent += o.messages_unsent;
        self.connections_opened += o.connections_opened;
        self.connections_completed += o.connections_completed;
        self.close_not_seen += o.close_not_seen;
        self.close_by_reset += o.close_by_reset;
        self.connections_cycled += o.connections_cycled;
        self.per_connection.extend_from_slice(&o.per_connection);
        self.mismatch_details
            .extend(o.mismatch_details.iter().cloned());
        for (mine, theirs) in [
            (&mut self.connect_us, &o.connect_us),
            (&mut self.lateness_us, &o.lateness_us),
        ] {
            if let Some(h) = theirs {
                mine.get_or_insert_with(run_histogram)
                    .add(h)
                    .expect("same histogram bounds");
            }
        }
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_default() += n;
        }
    }
}

/// Everything one load thread measures.
pub(crate) struct Recorder {
    pub totals: Totals,
    /// From the moment a message was handed to the socket to its last byte verified.
    pub raw: Histogram<u64>,
    /// From the moment a message was due (open loop only).
    pub corrected: Option<Histogram<u64>>,
    interval: Option<IntervalRecorder>,
    delta: Delta,
    progress: Option<Arc<Progress>>,
    /// When the last of this thread's connections finished its exchange
    /// (its last echo verified, or its failure): the end of the measured
    /// run, which the end-of-run close check does not lengthen.
    pub done_at: Option<Instant>,
}

/// How the server ended a connection that had done all its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// End of stream after the client's half-close: the clean ending.
    Eof,
    /// A reset instead of an end of stream.
    Reset,
    /// Nothing within the close grace (some echo servers never close).
    NotSeen,
    /// The check was switched off (`close_grace` of zero).
    Unchecked,
}

impl Recorder {
    pub fn new(open_loop: bool, progress: Option<Arc<Progress>>) -> Recorder {
        Recorder {
            totals: Totals::default(),
            raw: run_histogram(),
            corrected: open_loop.then(run_histogram),
            interval: None,
            delta: Delta::default(),
            progress,
            done_at: None,
        }
    }

    /// A connection finished its exchange at `now`, one way or the other.
    pub fn exchange_done(&mut self, now: Instant) {
        self.done_at = Some(self.done_at.map_or(now, |t| t.max(now)));
    }

    /// A connection did everything asked of it and the server ended it so.
    pub fn completed(&mut self, ending: Ending) {
        self.totals.connections_completed += 1;
        self.ended(ending);
    }

    /// Churn: a connection carried its messages and the server ended it
    /// so; a new one takes its place. `measured`: this happened in the
    /// measured window.
    pub fn cycled(&mut self, ending: Ending, measured: bool) {
        if measured {
            self.totals.connections_cycled += 1;
        }
        self.ended(ending);
        self.closed();
    }

    /// Churn: a replacement connection opened, `took` after its connect
    /// began; `measured`: it began in the measured window.
    pub fn reconnected(&mut self, took: Duration, measured: bool) {
        self.opened();
        if measured {
            self.totals
                .connect_us
                .get_or_insert_with(run_histogram)
                .saturating_record(micros(took));
        }
    }

    fn ended(&mut self, ending: Ending) {
        match ending {
            Ending::Eof | Ending::Unchecked => {}
            Ending::Reset => self.totals.close_by_reset += 1,
            Ending::NotSeen => self.totals.close_not_seen += 1,
        }
    }

    /// Start recording intervals for `thread` once the clock is known.
    pub fn start_series(
        &mut self,
        series: Option<&Arc<Series>>,
        thread: usize,
        measure_start: Instant,
    ) {
        self.interval = series.map(|s| IntervalRecorder::new(s.clone(), thread, measure_start));
    }

    /// An open loop's message due at `intended` was handed to the socket at
    /// `queued`, by a connection that could take it from `free_since` on
    /// (`None`: from the start). Its lateness is the generator's own delay:
    /// from the later of the two to `queued`. A message that waited for the
    /// server's previous echo was held back by the server, not by the
    /// generator (that wait shows in latency from schedule).
    pub fn sent_late(
        &mut self,
        queued: Instant,
        intended: Instant,
        free_since: Option<Instant>,
        measured: bool,
    ) {
        if !measured {
            return;
        }
        let ready = free_since.map_or(intended, |f| f.max(intended));
        self.totals
            .lateness_us
            .get_or_insert_with(run_histogram)
            .saturating_record(lateness_us(queued.saturating_duration_since(ready)));
    }

    /// A message of `len` bytes was written in full.
    pub fn sent(&mut self, measured: bool, len: u64) {
        if measured {
            self.totals.messages_sent += 1;
            self.totals.bytes_sent += len;
            self.delta.sent += 1;
        }
    }

    /// A message of `len` bytes came back byte-exact at `now`.
    pub fn verified(
        &mut self,
        now: Instant,
        queued: Instant,
        intended: Instant,
        measured: bool,
        len: u64,
    ) {
        if !measured {
            self.totals.warmup_messages += 1;
            self.delta.warmup_messages += 1;
            return;
        }
        self.totals.messages_verified += 1;
        self.totals.bytes_received += len;
        self.delta.messages += 1;
        let raw = micros(now.saturating_duration_since(queued));
        self.raw.saturating_record(raw);
        if self.progress.is_some() {
            self.delta.latency(raw);
        }
        let corrected = self.corrected.as_mut().map(|h| {
            let us = micros(now.saturating_duration_since(intended));
            h.saturating_record(us);
            us
        });
        if let Some(i) = self.interval.as_mut() {
            i.record(now, raw, corrected);
        }
    }

    /// Whether a mismatch now is still worked out ([`PER_THREAD`] a thread).
    pub fn wants_diagnosis(&self) -> bool {
        self.totals.mismatch_details.len() < PER_THREAD
    }

    /// A connection's first wrong byte, worked out.
    pub fn diagnosed(&mut self, d: Mismatch) {
        tracing::debug!("connection {}: mismatch: {}", d.connection, d.line());
        self.totals.mismatch_details.push(d);
    }

    /// A connection failed.
    pub fn error(&mut self, kind: ErrorKind) {
        *self.totals.errors.entry(kind).or_default() += 1;
        self.delta.errors[kind.index()] += 1;
    }

    /// Measured messages that were due but never sent before the end.
    pub fn unsent(&mut self, n: u64) {
        self.totals.messages_unsent += n;
    }

    pub fn opened(&mut self) {
        self.totals.connections_opened += 1;
        self.delta.opened += 1;
    }

    pub fn closed(&mut self) {
        self.delta.closed += 1;
    }

    /// Publish progress and close intervals that have ended; call often.
    pub fn tick(&mut self, now: Instant) {
        self.delta.flush(self.progress.as_deref());
        if let Some(i) = self.interval.as_mut() {
            i.tick(now);
        }
    }

    /// The thread's connections are done with their messages: hand over
    /// the last interval now, so that the close checks that may follow do
    /// not stretch the series past the measured run.
    pub fn end_series(&mut self) {
        if let Some(i) = self.interval.take() {
            i.finish();
        }
    }

    /// The thread is done: hand over the last interval.
    pub fn finish(&mut self) {
        self.delta.flush(self.progress.as_deref());
        if let Some(i) = self.interval.take() {
            i.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_the_generators_delay_not_a_wait_for_the_server() {
        let mut rec = Recorder::new(true, None);
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Due at t, the connection free since the start, sent 5 ms late.
        rec.sent_late(t + ms(5), t, None, true);
        // Due at t, but the previous echo came back only at t + 40 ms and it
        // went out 1 ms after that: the server's wait is not the generator's.
        rec.sent_late(t + ms(41), t, Some(t + ms(40)), true);
        // Free long before it was due, sent on time.
        rec.sent_late(t + ms(50), t + ms(50), Some(t), true);
        // A warm-up message is not measured.
        rec.sent_late(t + ms(900), t, None, false);
        let h = rec.totals.lateness_us.as_ref().unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), 0);
        assert!(
            h.value_at_quantile(0.5).abs_diff(1000) <= 1,
            "{}",
            h.value_at_quantile(0.5)
        );
        assert!(h.max().abs_diff(5000) <= 5, "{}", h.max());
    }
}
