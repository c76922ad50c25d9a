//! A load thread's books over its connection slots (`Tally`), shared by
//! both many-connection engines: what is live, what each slot verified, and
//! what each connection's end comes to in the thread's recorder.

use crate::exchange::{Exchange, Outcome, State};
use crate::schedule::{Next, Workload};
use crate::stats::{Ending, Recorder};
use std::time::Instant;

/// A thread's books over its connection slots: how many are live and still
/// exchanging, what each verified, and its recorder.
pub(crate) struct Tally {
    pub(crate) rec: Recorder,
    /// Measured messages verified by each slot, noted when it is removed
    /// (a slot that never opened stays 0).
    pub(crate) counts: Vec<u64>,
    pub(crate) live: usize,
    /// Connections open and not yet done with their messages.
    pub(crate) exchanging: usize,
}

impl Tally {
    pub(crate) fn new(rec: Recorder, slots: usize) -> Tally {
        Tally {
            rec,
            counts: vec![0; slots],
            live: 0,
            exchanging: 0,
        }
    }

    /// One fewer connection is still exchanging messages; when none is,
    /// this thread's series ends: the close checks that may follow are not
    /// part of the measured run.
    pub(crate) fn exchange_ended(&mut self) {
        self.exchanging = self.exchanging.saturating_sub(1);
        if self.exchanging == 0 {
            self.rec.end_series();
        }
    }

    /// Slot `k`'s connection `ex` is removed, completed or failed
    /// (`outcome` is neither `Continue` nor `Replace`).
    pub(crate) fn removed(&mut self, k: usize, ex: &Exchange, outcome: Outcome) {
        if let Some(n) = self.counts.get_mut(k) {
            *n = ex.measured_verified;
        }
        let exchanging = ex.state.exchanging();
        if exchanging {
            self.exchange_ended();
        }
        // A replacement whose connect never completed was never counted open.
        let established = !matches!(ex.state, State::Connecting { .. });
        match outcome {
            Outcome::Continue | Outcome::Replace(_) => unreachable!("settled before"),
            Outcome::Completed(ending) => self.rec.completed(ending),
            Outcome::Failed(kind) => {
                tracing::debug!("connection {}: {}", ex.id + 1, kind.name());
                self.rec.error(kind);
                if exchanging {
                    self.rec.exchange_done(Instant::now());
                }
            }
        }
        self.live -= 1;
        if established {
            self.rec.closed();
        }
    }

    /// Churn: the connection of a slot carried its share and the server
    /// ended it so. `Some` outcome if the window closed (or the run was
    /// interrupted) during the check: the slot is done, and a new
    /// connection would carry nothing. `None`: a new one is to be opened.
    pub(crate) fn cycle(
        &mut self,
        ex: &mut Exchange,
        w: &Workload,
        ending: Ending,
        now: Instant,
    ) -> Option<Outcome> {
        if w.clock.end.is_some_and(|e| now >= e) || w.interrupt.is_triggered() {
            if let Next::Finished { unsent } = ex.plan.next(w, now) {
                self.rec.unsent(unsent);
            }
            self.rec.exchange_done(w.exchange_end(ex.last_verified));
            return Some(Outcome::Completed(ending));
        }
        self.rec.cycled(ending, now >= w.clock.measure_start);
        None
    }

    /// This thread's slots are done: what each verified, into the totals.
    pub(crate) fn close_books<'a>(
        mut self,
        left: impl Iterator<Item = (usize, &'a Exchange)>,
    ) -> Recorder {
        // Every connection is done by now; any left would be counted all the same.
        for (k, ex) in left {
            if let Some(n) = self.counts.get_mut(k) {
                *n = ex.measured_verified;
            }
        }
        self.rec.totals.per_connection = self.counts;
        self.rec
    }
}
