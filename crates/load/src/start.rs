//! The start line the load threads share, and what each hands back.
//!
//! The engine spawns the threads; each one (`events`, `completion` or
//! `threads`) opens its connections, arrives at the [`Gate`], gets the
//! common clock from [`Shared::start`], runs, and returns a [`WorkerOut`];
//! the many-connection engines do all but the first through [`drive`].
//! Both sides use this module, and neither uses the other.

use crate::config::{Config, StopWhen};
use crate::schedule::{Clock, Schedule, Workload};
use crate::series::Series;
use crate::stats::{Recorder, Totals};
use crate::tally::Tally;
use crate::LoadError;
use hdrhistogram::Histogram;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

/// What a load thread hands back when it is done.
pub(crate) struct WorkerOut {
    pub totals: Totals,
    pub raw: Histogram<u64>,
    pub corrected: Option<Histogram<u64>>,
    pub finished: Instant,
}

/// A start line: every load thread and the coordinator arrive, then all go.
/// Unlike `std::sync::Barrier` it can be abandoned, so that a thread that
/// could not be spawned does not leave the others waiting for ever.
pub(crate) struct Gate {
    state: Mutex<(usize, bool)>,
    open: Condvar,
    /// Signalled at every arrival, for [`Gate::wait_arrivals`].
    arrived: Condvar,
    expected: usize,
}

impl Gate {
    pub(crate) fn new(expected: usize) -> Gate {
        Gate {
            state: Mutex::new((0, false)),
            open: Condvar::new(),
            arrived: Condvar::new(),
            expected,
        }
    }

    /// Arrive and wait for everyone. False if the run was abandoned.
    pub(crate) fn arrive(&self) -> bool {
        let mut s = self.state.lock().expect("gate lock");
        s.0 += 1;
        self.arrived.notify_all();
        if s.0 >= self.expected {
            self.open.notify_all();
        }
        while s.0 < self.expected && !s.1 {
            s = self.open.wait(s).expect("gate lock");
        }
        !s.1
    }

    /// Wait, without arriving, until `n` others have arrived (or the gate
    /// was abandoned): the coordinator's way to know that every thread has
    /// opened its connections, before it holds the start line.
    pub(crate) fn wait_arrivals(&self, n: usize) {
        let mut s = self.state.lock().expect("gate lock");
        while s.0 < n && !s.1 {
            s = self.arrived.wait(s).expect("gate lock");
        }
    }

    pub(crate) fn abandon(&self) {
        self.state.lock().expect("gate lock").1 = true;
        self.open.notify_all();
        self.arrived.notify_all();
    }
}

/// What the load threads share.
pub(crate) struct Shared {
    pub(crate) gate: Gate,
    pub(crate) t0: OnceLock<Instant>,
    /// The per-interval series, with `--interval`.
    pub series: Option<Arc<Series>>,
}

impl Shared {
    /// Wait until every connection of every thread is open, then return the
    /// workload with the common clock. `None` if the run was abandoned.
    pub fn start(&self, config: &Config) -> Option<Workload> {
        if !self.gate.arrive() {
            return None;
        }
        // Whoever comes first sets the clock; the rest are microseconds behind.
        let t0 = *self.t0.get_or_init(Instant::now);
        Some(workload(config, t0))
    }
}

/// A many-connection engine's thread (events, completion), as the part
/// of its life that both share sees it.
pub(crate) trait Driving {
    /// The thread's books.
    fn tally(&mut self) -> &mut Tally;
    /// Drive connections `ids` until each one is done or failed.
    fn run(&mut self, w: &Workload, ids: &[u64]) -> Result<(), LoadError>;
    /// Close the books: each connection still held counts its messages.
    fn close_books(self) -> Recorder;
}

/// The life of a many-connection engine's thread after `setup` (its
/// connect phase): arrive at the start line even after a failure, or the
/// others would wait for ever; run; hand over what it measured.
pub(crate) fn drive<D: Driving>(
    shared: &Shared,
    config: &Config,
    thread: usize,
    ids: &[u64],
    setup: Result<D, LoadError>,
) -> Result<WorkerOut, LoadError> {
    let Some(w) = shared.start(config) else {
        return Err(LoadError::Config("the run was abandoned".into()));
    };
    let mut d = setup?;
    d.tally()
        .rec
        .start_series(shared.series.as_ref(), thread, w.clock.measure_start);
    d.run(&w, ids)?;
    d.tally().rec.finish();
    let rec = d.close_books();
    Ok(WorkerOut {
        finished: rec.done_at.unwrap_or_else(Instant::now),
        totals: rec.totals,
        raw: rec.raw,
        corrected: rec.corrected,
    })
}

pub(crate) fn workload(config: &Config, t0: Instant) -> Workload {
    let (count, duration) = match config.stop {
        StopWhen::Count(n) => (Some(n), None),
        StopWhen::Duration(d) => (None, Some(d)),
    };
    Workload {
        clock: Clock::new(t0, config.warmup, duration),
        schedule: config
            .rate
            .as_ref()
            .and_then(|r| Schedule::of(r, config.warmup, config.connections as u64)),
        count,
        interrupt: config.interrupt.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_gate_releases_everyone() {
        let gate = Arc::new(Gate::new(3));
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.arrive());
        // The third party never comes.
        while gate.state.lock().unwrap().0 < 1 {
            std::thread::yield_now();
        }
        gate.abandon();
        assert!(!waiter.join().unwrap());
    }

    #[test]
    fn the_coordinator_sees_every_arrival_before_it_opens_the_gate() {
        let gate = Arc::new(Gate::new(3));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let g = gate.clone();
                std::thread::spawn(move || g.arrive())
            })
            .collect();
        gate.wait_arrivals(2);
        assert_eq!(gate.state.lock().unwrap().0, 2, "both arrived, none gone");
        assert!(!waiters.iter().any(|w| w.is_finished()), "still held");
        assert!(gate.arrive());
        for w in waiters {
            assert!(w.join().unwrap());
        }
    }

    #[test]
    fn a_full_gate_opens() {
        let gate = Arc::new(Gate::new(2));
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.arrive());
        assert!(gate.arrive());
        assert!(waiter.join().unwrap());
    }
}
