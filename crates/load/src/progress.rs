//! Live counters a caller can watch while [`run`](crate::run) blocks, for a
//! progress bar or a log line.
//!
//! Load threads add to these in batches (once per loop turn, not once per
//! message), so watching costs the run next to nothing. They are for display
//! only: the [`Report`](crate::Report) is the measurement.

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

/// Counters shared between the load threads and whoever watches them.
#[derive(Debug, Default)]
pub struct Progress {
    messages: AtomicU64,
    warmup_messages: AtomicU64,
    errors: AtomicU64,
    open: AtomicU64,
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

    /// Failed connections so far, of every kind.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
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
        if d.errors > 0 {
            self.errors.fetch_add(d.errors, Ordering::Relaxed);
        }
        if d.opened > 0 {
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
    pub errors: u64,
    pub opened: u64,
    pub closed: u64,
}

impl Delta {
    /// Add to `progress` (if any is watched) and start again from zero.
    pub fn flush(&mut self, progress: Option<&Progress>) {
        if let Some(p) = progress {
            p.add(self);
        }
        *self = Delta::default();
    }
}
