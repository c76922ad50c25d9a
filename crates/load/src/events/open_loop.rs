//! The open loop on one thread: the cursor ([`crate::cursor`]) walks this
//! thread's share of the global schedule in time order and wakes the
//! connection whose message is due; the poll timeout (or a precise timer,
//! where the OS has one) is the time to the next due message.

use super::Driver;
use crate::cursor::Cursor;
use crate::schedule::{Schedule, Workload};
use mio::Token;
use std::time::{Duration, Instant};

/// The open-loop timer's token; connection tokens are indices, far below it.
pub(super) const TIMER: Token = Token(usize::MAX);

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
        open.cursor.take_due(w, ids, now, &mut open.due);
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
