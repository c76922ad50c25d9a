//! Live counters a caller can watch while [`run`](crate::run) blocks, for a
//! progress bar, a log line or `stress --metrics`.
//!
//! Load threads add to these in batches (once per loop turn, not once per
//! message), so watching costs the run next to nothing: a message costs a
//! few additions to the thread's own [`Delta`], and a loop turn one atomic
//! addition per counter that changed. They are for display only: the
//! [`Report`](crate::Report) is the measurement, though once the run is
//! done the message, connection and error counts equal the report's.

use crate::outcome::ErrorKind;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections; the clock has not started.
    Connecting,
    /// Sending, before the end of the warm-up.
    WarmingUp,
    /// Sending and measuring.
    Measuring,
    /// Every thread has finished.
    Done,
}

/// The upper bounds of the live latency buckets, in microseconds: 1, 2 and
/// 5 of each decade from 10 µs to 10 s, 19 buckets and one above them all.
/// A loopback echo takes tens of microseconds and a stalled server seconds;
/// `--timeout` is 10 s by default, so nothing verified lies far beyond.
/// Fixed buckets can be summed across generators and over time by the
/// scraper, which percentiles cannot; the report's HdrHistogram stays the
/// exact measurement.
pub const LATENCY_BUCKETS_US: [u64; 19] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
    500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// Buckets of [`LATENCY_BUCKETS_US`], and the one above the last bound.
const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// The bucket that holds a latency of `us`: the first whose bound is at
/// least `us`, or the last, unbounded one.
fn bucket_of(us: u64) -> usize {
    LATENCY_BUCKETS_US.partition_point(|&bound| bound < us)
}

/// The live latency of measured messages (from send), by bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveLatency {
    /// For each bound of [`LATENCY_BUCKETS_US`], the messages verified
    /// within it and above the bound before it (each bucket its own count,
    /// not cumulative).
    pub buckets: Vec<(u64, u64)>,
    /// Messages slower than the last bound.
    pub above: u64,
    /// The sum of every counted message's latency, in microseconds.
    pub sum_us: u64,
}

impl LiveLatency {
    /// Every message counted, those above the last bound too.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum::<u64>() + self.above
    }
}

/// Counters shared between the load threads and whoever watches them.
#[derive(Debug, Default)]
pub struct Progress {
    messages: AtomicU64,
    warmup_messages: AtomicU64,
    sent: AtomicU64,
    errors: AtomicU64,
    errors_by_kind: [AtomicU64; ErrorKind::ALL.len()],
    opened: AtomicU64,
    open: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    done: AtomicU8,
    measure_start: OnceLock<Instant>,
}

impl Progress {
    /// New counters, to put in [`Config::progress`](crate::Config::progress).
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// Measured messages verified so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Warm-up messages verified so far.
    pub fn warmup_messages(&self) -> u64 {
        self.warmup_messages.load(Ordering::Relaxed)
    }

    /// Measured messages written in full so far.
    pub fn messages_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Failed connections so far, of every kind.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Failed connections so far of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors_by_kind[kind.index()].load(Ordering::Relaxed)
    }

    /// Connections opened so far (with churn, every replacement too).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// The latency of the measured messages verified so far.
    pub fn latency(&self) -> LiveLatency {
        LiveLatency {
            buckets: LATENCY_BUCKETS_US
                .iter()
                .zip(&self.latency)
                .map(|(bound, n)| (*bound, n.load(Ordering::Relaxed)))
                .collect(),
            above: self.latency[BUCKETS - 1].load(Ordering::Relaxed),
            sum_us: self.latency_sum_us.load(Ordering::Relaxed),
        }
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// When measuring starts (or started): known once every connection is open.
    pub fn measure_start(&self) -> Option<Instant> {
        self.measure_start.get().copied()
    }

    /// Where the run is now.
    pub fn phase(&self) -> Phase {
        if self.done.load(Ordering::Acquire) != 0 {
            return Phase::Done;
        }
        match self.measure_start() {
            None => Phase::Connecting,
            Some(t) if Instant::now() < t => Phase::WarmingUp,
            Some(_) => Phase::Measuring,
        }
    }

    pub(crate) fn add(&self, d: &Delta) {
        if d.messages > 0 {
            self.messages.fetch_add(d.messages, Ordering::Relaxed);
        }
        if d.warmup_messages > 0 {
            self.warmup_messages
                .fetch_add(d.warmup_messages, Ordering::Relaxed);
        }
        if d.sent > 0 {
            self.sent.fetch_add(d.sent, Ordering::Relaxed);
        }
        for (total, n) in self.errors_by_kind.iter().zip(&d.errors) {
            if *n > 0 {
                total.fetch_add(*n, Ordering::Relaxed);
                self.errors.fetch_add(*n, Ordering::Relaxed);
            }
        }
        for (total, n) in self.latency.iter().zip(&d.latency) {
            if *n > 0 {
                total.fetch_add(*n, Ordering::Relaxed);
            }
        }
        if d.latency_sum_us > 0 {
            self.latency_sum_us
                .fetch_add(d.latency_sum_us, Ordering::Relaxed);
        }
        if d.opened > 0 {
            self.opened.fetch_add(d.opened, Ordering::Relaxed);
            self.open.fetch_add(d.opened, Ordering::Relaxed);
        }
        if d.closed > 0 {
            self.open.fetch_sub(d.closed, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_measure_start(&self, t: Instant) {
        let _ = self.measure_start.set(t);
    }

    pub(crate) fn set_done(&self) {
        self.done.store(1, Ordering::Release);
    }
}

/// What one thread has to add since it last flushed.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub messages: u64,
    pub warmup_messages: u64,
    pub sent: u64,
    /// Failed connections, by [`ErrorKind::index`].
    pub errors: [u64; ErrorKind::ALL.len()],
    pub opened: u64,
    pub closed: u64,
    /// Measured messages by latency bucket, and their latencies' sum.
    latency: [u64; BUCKETS],
    latency_sum_us: u64,
}

impl Delta {
    /// A measured message was verified `us` after it was sent.
    pub fn latency(&mut self, us: u64) {
        self.latency[bucket_of(us)] += 1;
        self.latency_sum_us += us;
    }

    /// Add to `progress` (if any is watched) and start again from zero.
    pub fn flush(&mut self, progress: Option<&Progress>) {
        if let Some(p) = progress {
            p.add(self);
        }
        *self = Delta::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_goes_into_the_first_bucket_that_holds_it() {
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(10), 0);
        assert_eq!(bucket_of(11), 1);
        assert_eq!(bucket_of(10_000_000), LATENCY_BUCKETS_US.len() - 1);
        assert_eq!(bucket_of(10_000_001), LATENCY_BUCKETS_US.len());
    }

    #[test]
    fn flushed_deltas_add_up_to_buckets_and_kinds() {
        let p = Progress::default();
        let mut d = Delta::default();
        for us in [5, 15, 15, 20_000_000] {
            d.latency(us);
        }
        d.errors[ErrorKind::Reset.index()] += 2;
        d.opened = 3;
        d.closed = 1;
        d.flush(Some(&p));
        let l = p.latency();
        assert_eq!((l.count(), l.sum_us, l.above), (4, 20_000_035, 1));
        assert_eq!(l.buckets[0], (10, 1));
        assert_eq!(l.buckets[1], (20, 2));
        assert_eq!(*l.buckets.last().unwrap(), (10_000_000, 0));
        assert_eq!(p.errors_of(ErrorKind::Reset), 2);
        assert_eq!(p.errors(), 2);
        assert_eq!((p.connections_opened(), p.open_connections()), (3, 2));
    }
}
