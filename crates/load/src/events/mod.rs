//! The load generator proper: many non-blocking connections per thread on a
//! readiness loop (mio), never a thread per connection.
//!
//! This module is the driver: the thread's run loop, which waits for
//! readiness (or a due message), gives each ready connection its turn and
//! settles what the turn decided, and the sweep that catches what no
//! readiness edge reports (timeouts, the end of the run, close checks whose
//! grace is over). The parts it drives:
//!
//! - [`connect`]: opening connections, the connect phase before the start
//!   and churn's replacement connects;
//! - [`open_loop`]: the open-loop cursor, which walks this thread's share of
//!   the global schedule in time order and wakes the connection whose
//!   message is due;
//! - [`conn`]: one connection's state and its turn, including the
//!   end-of-run close check and churn's hand-over to a new connection;
//! - [`echo`]: the byte stream of one connection: writing what was
//!   generated, and verifying echoed bytes however the stream is split into
//!   reads.

mod conn;
mod connect;
mod echo;
mod open_loop;

use crate::config::Config;
use crate::exchange::Sweep;
use crate::payload::Messages;
use crate::schedule::Workload;
use crate::start::{Driving, Shared, WorkerOut};
use crate::stats::Recorder;
use crate::tally::Tally;
use crate::LoadError;
use conn::{Conn, Outcome, Reading};
use mio::{Events, Poll};
use open_loop::{OpenLoop, TIMER};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often timeouts are checked and finished connections noticed.
const SWEEP: Duration = Duration::from_millis(50);

/// The thread's connections and everything needed to drive them.
struct Driver<'a> {
    config: &'a Config,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    /// The books over `conns`.
    tally: Tally,
    scratch: Vec<u8>,
    /// The payload, its block made once for the thread's connections.
    messages: Arc<Messages>,
}

/// Run connections `ids` on this thread.
pub(crate) fn worker(
    shared: &Shared,
    config: &Config,
    thread: usize,
    ids: Vec<u64>,
) -> Result<WorkerOut, LoadError> {
    let rec = Recorder::new(config.rate.is_some(), config.progress.clone());
    let threads = config.threads.clamp(1, config.connections);
    let setup = Poll::new()
        .map_err(|source| LoadError::Io {
            context: "cannot create a poller".into(),
            error: source,
        })
        .and_then(|poll| {
            let mut d = Driver {
                config,
                poll,
                conns: Vec::with_capacity(ids.len()),
                tally: Tally::new(rec, ids.len()),
                // Written, not just allocated: calloc's pages are first touched by the
                // first read otherwise, inside the measured window.
                scratch: vec![1u8; echo::READ_CHUNK],
                messages: Arc::new(Messages::new(&config.payload)),
            };
            d.connect_all(&ids, threads)?;
            Ok(d)
        });
    crate::start::drive(shared, config, thread, &ids, setup)
}

impl Driving for Driver<'_> {
    fn tally(&mut self) -> &mut Tally {
        &mut self.tally
    }

    fn run(&mut self, w: &Workload, ids: &[u64]) -> Result<(), LoadError> {
        Driver::run(self, w, ids)
    }

    fn close_books(self) -> Recorder {
        let left = self.conns.iter().enumerate();
        self.tally
            .close_books(left.filter_map(|(k, c)| c.as_ref().map(|c| (k, &c.ex))))
    }
}

impl Driver<'_> {
    /// Drive every connection until each one is done or failed.
    fn run(&mut self, w: &Workload, ids: &[u64]) -> Result<(), LoadError> {
        let mut events = Events::with_capacity(1024);
        let mut open = w
            .schedule
            .clone()
            .map(|s| OpenLoop::new(s, ids.len(), self.poll.registry()));
        self.tally.exchanging = self.tally.live;
        if self.tally.exchanging == 0 {
            self.tally.rec.end_series();
        }
        // No readiness edge will come for an idle, open connection: start each one.
        for k in 0..self.conns.len() {
            self.drive(k, w, Instant::now(), Reading::Drain);
        }
        let mut last_sweep = Instant::now();
        while self.tally.live > 0 {
            let now = Instant::now();
            let mut wait = SWEEP.saturating_sub(now.duration_since(last_sweep));
            if let Some(o) = open.as_mut() {
                wait = o.wait(w, ids, now, wait);
            }
            if let Err(e) = self.wait(&mut events, wait) {
                return Err(LoadError::Io {
                    context: "poll failed".into(),
                    error: e,
                });
            }
            let mut now = Instant::now();
            self.drive_ready(&events, w, now);
            if let Some(o) = open.as_mut() {
                now = self.drive_due_messages(o, w, ids, now);
            }
            if now.duration_since(last_sweep) >= SWEEP {
                last_sweep = now;
                self.sweep(w, now);
            }
            self.tally.rec.tick(now);
        }
        Ok(())
    }

    /// Drive the connections that `events` show ready.
    fn drive_ready(&mut self, events: &Events, w: &Workload, now: Instant) {
        for ev in events.iter() {
            // The timer needs no read: re-arming resets it, and each
            // expiry raises a new edge.
            if ev.token() == TIMER {
                continue;
            }
            // A FIN or a reset that came with the last data raised the
            // same edge; epoll reports it in this event's flags.
            let reading = if ev.is_read_closed() || ev.is_error() {
                Reading::Drain
            } else {
                Reading::Data
            };
            self.drive(ev.token().0, w, now, reading);
        }
    }

    /// Wait for readiness, at most `wait`. With `busy_poll`, first ask
    /// without blocking for that long: an echo is usually microseconds away,
    /// and a thread that blocks must then be woken, which on a CPU shared
    /// with any other runnable task can take a whole scheduler slice
    /// (milliseconds), while a thread that stays runnable keeps its share.
    fn wait(&mut self, events: &mut Events, wait: Duration) -> io::Result<()> {
        let spin = self.config.busy_poll_window();
        let spin_until =
            (!spin.is_zero() && !wait.is_zero()).then(|| Instant::now() + spin.min(wait));
        if let Some(until) = spin_until {
            loop {
                match self.poll.poll(events, Some(Duration::ZERO)) {
                    Ok(()) if !events.is_empty() => return Ok(()),
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                if Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        match self.poll.poll(events, Some(wait)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r,
        }
    }

    /// Fail connections whose oldest echo is overdue, let idle ones notice
    /// that the run has ended, and end close checks whose grace is over.
    fn sweep(&mut self, w: &Workload, now: Instant) {
        let ended = w.clock.end.is_some_and(|e| now >= e) || w.interrupt.is_triggered();
        for k in 0..self.conns.len() {
            let Some(conn) = self.conns[k].as_ref() else {
                continue;
            };
            match conn.ex.sweep(self.config, now, ended) {
                Sweep::Nothing => {}
                Sweep::Settle(outcome) => self.settle(k, w, outcome, now),
                Sweep::Fail(kind) => self.finish(k, Outcome::Failed(kind)),
                Sweep::Nudge => self.drive(k, w, now, Reading::Skip),
            }
        }
    }

    /// Make all the progress connection `k` allows: read and verify, queue, write.
    fn drive(&mut self, k: usize, w: &Workload, now: Instant, reading: Reading) {
        self.turn_and_settle(k, w, now, None, reading);
    }

    /// Connection `k`'s message due at `at` is to go: no read. If this
    /// thread noticed it late (`now` past `at`), the plan is asked as of
    /// `at`, so that the generator's own lateness near the end of a run is
    /// never counted as messages the server left unsent.
    fn drive_due(&mut self, k: usize, w: &Workload, now: Instant, at: Instant) {
        self.turn_and_settle(k, w, now, Some(at.min(now)), Reading::Skip);
    }

    /// Give connection `k` its turn ([`conn::run_turn`]), keep the count of
    /// connections still exchanging, and settle what the turn decided.
    /// `plan_at`: the instant to ask the plan at, if not the moment the
    /// turn queues its messages.
    fn turn_and_settle(
        &mut self,
        k: usize,
        w: &Workload,
        now: Instant,
        plan_at: Option<Instant>,
        reading: Reading,
    ) {
        let Some(conn) = self.conns[k].as_mut() else {
            return;
        };
        let was_exchanging = conn.state.exchanging();
        let outcome = conn::run_turn(
            conn,
            self.config,
            w,
            &mut self.tally.rec,
            &mut self.scratch,
            (now, plan_at),
            reading,
        );
        if was_exchanging && !conn.state.exchanging() {
            self.tally.exchange_ended();
        }
        self.settle(k, w, outcome, now);
    }

    /// What a turn or a sweep decided for connection `k`: nothing, a
    /// replacement (churn), or the end of the slot.
    fn settle(&mut self, k: usize, w: &Workload, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Replace(ending) => self.replace(k, w, ending, now),
            other => self.finish(k, other),
        }
    }

    /// Remove a completed or failed connection.
    fn finish(&mut self, k: usize, outcome: Outcome) {
        if matches!(outcome, Outcome::Continue) {
            return;
        }
        let Some(mut conn) = self.conns[k].take() else {
            return;
        };
        self.tally.removed(k, &conn.ex, outcome);
        let _ = self.poll.registry().deregister(&mut conn.stream);
    }
}
