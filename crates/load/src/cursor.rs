//! The open-loop cursor of one load thread: it walks the thread's share of
//! the global schedule in time order, so that the engine knows when the
//! next message is due and which connection's it is.

use crate::schedule::{Schedule, Workload};
use std::time::Instant;

/// Walks this thread's connections' schedule slots in time order: for
/// connections `c_0 < c_1 < …` (indices `k`), slot `j` of `c_k` is due at
/// `(c_k + j·C)/R`, which orders by `(j, k)`.
pub(crate) struct Cursor {
    schedule: Schedule,
    len: usize,
    k: usize,
    j: u64,
}

impl Cursor {
    pub(crate) fn new(schedule: Schedule, len: usize) -> Cursor {
        Cursor {
            schedule,
            len,
            k: 0,
            j: 0,
        }
    }

    /// When the next slot is due, or `None` once past the end of the run.
    pub(crate) fn at(&self, w: &Workload, ids: &[u64]) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let at = w.clock.t0 + self.schedule.offset(ids[self.k], self.j);
        w.clock.end.is_none_or(|e| at < e).then_some(at)
    }

    fn advance(&mut self) {
        self.k += 1;
        if self.k == self.len {
            self.k = 0;
            self.j += 1;
        }
    }

    /// Move to the round before the first one whose first slot is after
    /// `now`: everything earlier is already being driven.
    fn skip_to(&mut self, w: &Workload, ids: &[u64], now: Instant) {
        let since = now.saturating_duration_since(w.clock.t0);
        let round = self.schedule.first_at_or_after(ids[0], since);
        self.j = self.j.max(round.saturating_sub(1));
        self.k = 0;
    }

    /// Collect into `due` every slot due by `now`, as (index of the
    /// connection in this thread's share, when it was due).
    pub(crate) fn take_due(
        &mut self,
        w: &Workload,
        ids: &[u64],
        now: Instant,
        due: &mut Vec<(usize, Instant)>,
    ) {
        let mut pushed = 0;
        while let Some(at) = self.at(w, ids) {
            if at > now {
                break;
            }
            due.push((self.k, at));
            self.advance();
            pushed += 1;
            if pushed >= self.len && self.k == 0 {
                // A whole round fell due at once: this thread is a
                // round or more behind the schedule. Every
                // connection is being driven now; skip the rounds
                // in between rather than walk them slot by slot
                // (at a rate of 10^9 that walk never ends).
                self.skip_to(w, ids, now);
            }
        }
    }
}
