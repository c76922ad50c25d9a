//! The open loop on one thread: a cursor walks this thread's share of the
//! global schedule in time order and wakes the connection whose message is
//! due; the poll timeout (or a precise timer, where the OS has one) is the
//! time to the next due message.

use super::Driver;
use crate::schedule::{Schedule, Workload};
use mio::Token;
use std::time::{Duration, Instant};

/// The open-loop timer's token; connection tokens are indices, far below it.
pub(super) const TIMER: Token = Token(usize::MAX);

/// Walks this thread's connections' schedule slots in time order: for
/// connections `c_0 < c_1 < …` (indices `k`), slot `j` of `c_k` is due at
/// `(c_k + j·C)/R`, which orders by `(j, k)`.
struct Cursor {
    schedule: Schedule,
    len: usize,
    k: usize,
    j: u64,
}

impl Cursor {
    fn new(schedule: Schedule, len: usize) -> Cursor {
        Cursor {
            schedule,
            len,
            k: 0,
            j: 0,
        }
    }

    /// When the next slot is due, or `None` once past the end of the run.
    fn at(&self, w: &Workload, ids: &[u64]) -> Option<Instant> {
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
}

/// An open loop's state on this thread: where it is in the schedule, the
/// timer that wakes the poll when the next message is due (none where the
/// OS has no precise one: the poll timeout does it), and the due messages
/// collected in a pass.
pub(super) struct OpenLoop {
    cursor: Cursor,
    timer: Option<crate::sys::Timer>,
    /// The instant the timer is armed for.
    armed_for: Option<Instant>,
    due: Vec<(usize, Instant)>,
}

impl OpenLoop {
    pub(super) fn new(schedule: Schedule, len: usize, registry: &mio::Registry) -> OpenLoop {
        OpenLoop {
            cursor: Cursor::new(schedule, len),
            timer: crate::sys::Timer::new(registry, TIMER).ok(),
            armed_for: None,
            due: Vec::new(),
        }
    }

    /// How long the poll may wait, at most `wait`, so that the next due
    /// message is not late: not at all when it is due, else until the
    /// timer (armed here) or the poll timeout wakes it.
    pub(super) fn wait(
        &mut self,
        w: &Workload,
        ids: &[u64],
        now: Instant,
        wait: Duration,
    ) -> Duration {
        let Some(at) = self.cursor.at(w, ids) else {
            return wait;
        };
        match &self.timer {
            _ if at <= now => Duration::ZERO,
            Some(t) => {
                if self.armed_for != Some(at) {
                    t.arm(at - now);
                    self.armed_for = Some(at);
                }
                wait
            }
            None => wait.min(at - now),
        }
    }
}

impl Driver<'_> {
    /// Open loop: drive every connection whose message fell due by `now`;
    /// returns the time after collecting them, when they were driven.
    pub(super) fn drive_due_messages(
        &mut self,
        open: &mut OpenLoop,
        w: &Workload,
        ids: &[u64],
        now: Instant,
    ) -> Instant {
        let c = &mut open.cursor;
        let mut pushed = 0;
        while let Some(at) = c.at(w, ids) {
            if at > now {
                break;
            }
            open.due.push((c.k, at));
            c.advance();
            pushed += 1;
            if pushed >= c.len && c.k == 0 {
                // A whole round fell due at once: this thread is a
                // round or more behind the schedule. Every
                // connection is being driven now; skip the rounds
                // in between rather than walk them slot by slot
                // (at a rate of 10^9 that walk never ends).
                c.skip_to(w, ids, now);
            }
        }
        let now = Instant::now();
        // A message is due, not an echo: skip the read, which
        // would only fail with WouldBlock; echoed bytes that are
        // still unread have a readiness edge of their own pending.
        for (k, at) in open.due.drain(..) {
            self.drive_due(k, w, now, at);
        }
        now
    }
}
