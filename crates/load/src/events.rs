//! The load generator proper: many non-blocking connections per thread on a
//! readiness loop (mio), never a thread per connection.
//!
//! Each connection keeps one buffer holding the bytes of its in-flight
//! messages, with three offsets into the byte stream: how much was
//! generated, written and verified. Echoed bytes are compared against that
//! buffer as they arrive, however the stream happens to be split into reads,
//! and the messages complete in order (an echo is FIFO over the stream).
//!
//! Open loop: a cursor walks this thread's share of the global schedule in
//! time order and wakes the connection whose message is due; the poll
//! timeout is the time to the next due message.
//!
//! Churn (`per_connection`): a connection that has carried its messages
//! goes through the end-of-run check (half-close, the server's end of
//! stream), then a new connection is opened in its place, which takes over
//! its plan: one slot, a line of connections. Each connect is timed.

use crate::config::Config;
use crate::net;
use crate::outcome::{classify, ErrorKind};
use crate::schedule::{Next, Plan, Schedule, Workload};
use crate::start::{Shared, WorkerOut};
use crate::stats::{Ending, Recorder};
use crate::LoadError;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// How often timeouts are checked and finished connections noticed.
const SWEEP: Duration = Duration::from_millis(50);
/// Connects in progress at once per thread, so that ten thousand SYNs do
/// not all land in the server's backlog in the same millisecond.
const MAX_PENDING_CONNECTS: usize = 256;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// The open-loop timer's token; connection tokens are indices, far below it.
const TIMER: Token = Token(usize::MAX);

/// A message sent and not yet verified.
struct InFlight {
    /// Where it starts and ends in the connection's byte stream.
    start: u64,
    end: u64,
    /// When it was handed to the socket (raw latency starts here).
    queued: Instant,
    /// When it was due (corrected latency starts here; `queued` in a closed loop).
    intended: Instant,
    measured: bool,
}

/// Where a connection is in its life.
enum State {
    /// The non-blocking connect has not finished.
    Connecting { since: Instant },
    /// Sending and verifying. `finished` once the plan has no more messages
    /// for it; echoes may still be owed.
    Exchanging { finished: bool },
    /// Everything asked of it was sent and verified; its write side is
    /// shut, and it reads until the server's end of stream: any byte now is
    /// one that was never sent. `reopen`: churn, a new connection takes its
    /// place after it; otherwise the slot is done.
    Closing { since: Instant, reopen: bool },
}

impl State {
    /// Still part of the exchange, for the series: everything but the
    /// final close check (a churn close is followed by more messages).
    fn exchanging(&self) -> bool {
        !matches!(self, State::Closing { reopen: false, .. })
    }
}

struct Conn {
    stream: TcpStream,
    id: u64,
    state: State,
    plan: Plan,
    /// Bytes of the messages not yet verified; `buf[0]` is stream offset `base`.
    buf: Vec<u8>,
    base: u64,
    generated: u64,
    written: u64,
    verified: u64,
    in_flight: VecDeque<InFlight>,
    /// How many of `in_flight` are fully written.
    in_flight_written: usize,
    /// When the last message came back verified.
    last_verified: Option<Instant>,
    /// Messages handed to this connection (churn: its share is
    /// `per_connection`, then it is replaced).
    sent_here: u64,
    /// Churn: this connection has carried its share, and its slot has
    /// more to send, so a new connection will take its place.
    retire: bool,
}

impl Conn {
    /// A connection whose send buffer is `buf` (empty, its pages already
    /// touched: see [`Config::send_buffer_at_start`]), connecting since `now`.
    fn new(stream: TcpStream, id: u64, now: Instant, buf: Vec<u8>) -> Conn {
        Conn {
            stream,
            id,
            state: State::Connecting { since: now },
            plan: Plan::new(id),
            buf,
            base: 0,
            generated: 0,
            written: 0,
            verified: 0,
            in_flight: VecDeque::new(),
            in_flight_written: 0,
            last_verified: None,
            sent_here: 0,
            retire: false,
        }
    }

    /// Take `stream`, a new connection in this one's place (churn): the
    /// plan goes on, the byte stream starts afresh.
    fn replace_stream(&mut self, stream: TcpStream, now: Instant) {
        debug_assert!(self.in_flight.is_empty());
        self.stream = stream;
        self.state = State::Connecting { since: now };
        self.buf.clear();
        self.base = 0;
        self.generated = 0;
        self.written = 0;
        self.verified = 0;
        self.in_flight_written = 0;
        self.sent_here = 0;
        self.retire = false;
    }

    /// Churn: this connection has carried its share and has nothing owed.
    fn carried_its_share(&self) -> bool {
        self.retire && !self.finished() && self.in_flight.is_empty()
    }

    fn finished(&self) -> bool {
        matches!(self.state, State::Exchanging { finished: true })
    }

    /// Has the non-blocking connect finished? `Err` if it failed.
    fn connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.state = State::Exchanging { finished: false };
                // One small message per write: without this, Nagle holds
                // the next message back until the previous echo's ACK.
                let _ = self.stream.set_nodelay(true);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How much reading a turn does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// None: the turn was not started by readiness (a message fell due).
    Skip,
    /// Until a short read, which means the data queue is empty.
    Data,
    /// Until WouldBlock, end of stream or an error: the peer has closed or
    /// failed, and that state is seen only by one more `read` after the data.
    Drain,
}

enum Outcome {
    Continue,
    /// Everything asked was sent and verified, and the server ended the
    /// connection this way.
    Completed(Ending),
    /// Churn: the connection carried its share and the server ended it this
    /// way; a new one takes its place.
    Replace(Ending),
    Failed(ErrorKind),
}

/// How a read pass ended without failing.
enum ReadEnd {
    /// The receive queue is empty for now.
    Drained,
    /// The server closed its side.
    Eof,
}

/// An empty vector with room for `bytes`, every page of it written once.
fn touched(bytes: usize) -> Vec<u8> {
    let mut v = vec![1u8; bytes];
    v.clear();
    v
}

/// The thread's connections and everything needed to drive them.
struct Driver<'a> {
    config: &'a Config,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    live: usize,
    /// Connections open and not yet done with their messages.
    exchanging: usize,
    rec: Recorder,
    scratch: Vec<u8>,
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
            source,
        })
        .and_then(|poll| {
            let mut d = Driver {
                config,
                poll,
                conns: Vec::with_capacity(ids.len()),
                live: 0,
                exchanging: 0,
                rec,
                // Written, not just allocated: calloc's pages are first touched by the
                // first read otherwise, inside the measured window.
                scratch: vec![1u8; READ_CHUNK],
            };
            d.connect_all(&ids, threads)?;
            Ok(d)
        });
    // Arrive at the start line even after a failure, or the others would wait for ever.
    let Some(w) = shared.start(config) else {
        return Err(LoadError::Config("the run was abandoned".into()));
    };
    let mut d = setup?;
    d.rec
        .start_series(shared.series.as_ref(), thread, w.clock.measure_start);
    d.run(&w, &ids)?;
    d.rec.finish();
    let rec = d.rec;
    Ok(WorkerOut {
        finished: rec.done_at.unwrap_or_else(Instant::now),
        totals: rec.totals,
        raw: rec.raw,
        corrected: rec.corrected,
    })
}

impl Driver<'_> {
    fn register_error(source: io::Error) -> LoadError {
        LoadError::Io {
            context: "cannot register a connection with the poller".into(),
            source,
        }
    }

    /// Open every connection (or count it failed), at most
    /// `MAX_PENDING_CONNECTS` at a time and at this thread's share of
    /// `--connect-rate`.
    fn connect_all(&mut self, ids: &[u64], threads: usize) -> Result<(), LoadError> {
        let rate = self.config.connect_rate.map(|r| r / threads as f64);
        let start = Instant::now();
        let mut issued = 0usize;
        let mut pending = 0usize;
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = start;
        loop {
            let now = Instant::now();
            let mut wait = SWEEP;
            while issued < ids.len() && pending < MAX_PENDING_CONNECTS {
                if let Some(r) = rate {
                    let at = start + Duration::from_secs_f64(issued as f64 / r);
                    if at > now {
                        wait = wait.min(at - now);
                        break;
                    }
                }
                let id = ids[issued];
                issued += 1;
                if self.start_connect(id)? {
                    pending += 1;
                }
            }
            if issued == ids.len() && pending == 0 {
                break;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(LoadError::Io {
                        context: "poll failed".into(),
                        source: e,
                    });
                }
            }
            pending -= self.connects_done(&events);
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP {
                last_sweep = now;
                pending -= self.connects_timed_out(now);
            }
            self.rec.tick(now);
        }
        self.rec.tick(Instant::now());
        Ok(())
    }

    /// Start connection `id`'s non-blocking connect and register it. False
    /// when the connect failed at once, which is counted here.
    fn start_connect(&mut self, id: u64) -> Result<bool, LoadError> {
        let config = self.config;
        let token = Token(self.conns.len());
        // Touched before the connect starts, so that the time it takes (up
        // to seconds for a thousand 1 MiB buffers on a VM) is in no
        // connect's latency or timeout.
        let buf = touched(config.send_buffer_at_start());
        let now = Instant::now();
        match connect_registered(config, self.poll.registry(), id, token)
            .map_err(Self::register_error)?
        {
            Ok(stream) => {
                self.conns.push(Some(Conn::new(stream, id, now, buf)));
                Ok(true)
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                self.conns.push(None);
                self.rec.error(ErrorKind::ConnectFailed);
                Ok(false)
            }
        }
    }

    /// Note the connects that `events` show finished, opened or failed;
    /// returns how many.
    fn connects_done(&mut self, events: &Events) -> usize {
        let mut done = 0;
        for ev in events.iter() {
            let slot = &mut self.conns[ev.token().0];
            let Some(conn) = slot
                .as_mut()
                .filter(|c| matches!(c.state, State::Connecting { .. }))
            else {
                continue;
            };
            match conn.connected() {
                Ok(false) => continue,
                Ok(true) => {
                    self.live += 1;
                    self.rec.opened();
                }
                Err(e) => {
                    tracing::debug!("connect to {} failed: {e}", self.config.addr);
                    self.rec.error(ErrorKind::ConnectFailed);
                    let mut conn = slot.take().expect("checked above");
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
            }
            done += 1;
        }
        done
    }

    /// Fail the connects in progress for longer than the timeout; returns
    /// how many.
    fn connects_timed_out(&mut self, now: Instant) -> usize {
        let timeout = self.config.timeout;
        let mut failed = 0;
        for slot in self.conns.iter_mut() {
            let timed_out = slot.as_ref().is_some_and(|c| match c.state {
                State::Connecting { since } => now.duration_since(since) > timeout,
                _ => false,
            });
            if timed_out {
                let mut conn = slot.take().expect("checked above");
                let _ = self.poll.registry().deregister(&mut conn.stream);
                self.rec.error(ErrorKind::ConnectFailed);
                failed += 1;
            }
        }
        failed
    }

    /// Drive every connection until each one is done or failed.
    fn run(&mut self, w: &Workload, ids: &[u64]) -> Result<(), LoadError> {
        let mut events = Events::with_capacity(1024);
        let mut open = w
            .schedule
            .map(|s| OpenLoop::new(s, ids.len(), self.poll.registry()));
        self.exchanging = self.live;
        if self.exchanging == 0 {
            self.rec.end_series();
        }
        // No readiness edge will come for an idle, open connection: start each one.
        for k in 0..self.conns.len() {
            self.drive(k, w, Instant::now(), Reading::Drain);
        }
        let mut last_sweep = Instant::now();
        while self.live > 0 {
            let now = Instant::now();
            let mut wait = SWEEP.saturating_sub(now.duration_since(last_sweep));
            if let Some(o) = open.as_mut() {
                wait = o.wait(w, ids, now, wait);
            }
            if let Err(e) = self.wait(&mut events, wait) {
                return Err(LoadError::Io {
                    context: "poll failed".into(),
                    source: e,
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
            self.rec.tick(now);
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

    /// Open loop: drive every connection whose message fell due by `now`;
    /// returns the time after collecting them, when they were driven.
    fn drive_due_messages(
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
        let ended = w.clock.end.is_some_and(|e| now >= e);
        for k in 0..self.conns.len() {
            let Some(conn) = self.conns[k].as_ref() else {
                continue;
            };
            match conn.state {
                State::Closing { since, reopen } => {
                    if now.duration_since(since) >= self.config.close_grace {
                        let outcome = if reopen {
                            Outcome::Replace(Ending::NotSeen)
                        } else {
                            Outcome::Completed(Ending::NotSeen)
                        };
                        self.settle(k, w, outcome, now);
                    }
                    continue;
                }
                // A replacement connect that takes too long.
                State::Connecting { since } => {
                    if now.duration_since(since) > self.config.timeout {
                        self.finish(k, Outcome::Failed(ErrorKind::ConnectFailed));
                    }
                    continue;
                }
                State::Exchanging { .. } => {}
            }
            let overdue = conn
                .in_flight
                .front()
                .is_some_and(|m| now.duration_since(m.queued) > self.config.timeout);
            if overdue {
                self.finish(k, Outcome::Failed(ErrorKind::Timeout));
            } else if ended && conn.in_flight.is_empty() {
                self.drive(k, w, now, Reading::Skip);
            }
        }
    }

    /// Make all the progress connection `k` allows: read and verify, queue, write.
    fn drive(&mut self, k: usize, w: &Workload, now: Instant, reading: Reading) {
        self.turn(k, w, now, None, reading);
    }

    /// Connection `k`'s message due at `at` is to go: no read. If this
    /// thread noticed it late (`now` past `at`), the plan is asked as of
    /// `at`, so that the generator's own lateness near the end of a run is
    /// never counted as messages the server left unsent.
    fn drive_due(&mut self, k: usize, w: &Workload, now: Instant, at: Instant) {
        self.turn(k, w, now, Some(at.min(now)), Reading::Skip);
    }

    /// `plan_at`: the instant to ask the plan at, if not the moment the
    /// turn queues its messages.
    fn turn(
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
        let outcome = turn(
            conn,
            self.config,
            w,
            &mut self.rec,
            &mut self.scratch,
            (now, plan_at),
            reading,
        );
        if was_exchanging && !conn.state.exchanging() {
            self.exchange_ended();
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

    /// Churn: connection `k` carried its share and has closed; open a new
    /// one in its place, which takes over its plan.
    fn replace(&mut self, k: usize, w: &Workload, ending: Ending, now: Instant) {
        let config = self.config;
        let Some(conn) = self.conns[k].as_mut() else {
            return;
        };
        if w.clock.end.is_some_and(|e| now >= e) {
            // The window closed during the check: the slot is done, and a
            // new connection would carry nothing.
            if let Next::Finished { unsent } = conn.plan.next(w, now) {
                self.rec.unsent(unsent);
            }
            self.rec.exchange_done(w.exchange_end(conn.last_verified));
            self.finish(k, Outcome::Completed(ending));
            return;
        }
        self.rec.cycled(ending, now >= w.clock.measure_start);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        // A poller that refuses it fails the slot like a refused connect.
        let opened = connect_registered(config, self.poll.registry(), conn.id, Token(k))
            .and_then(|connect| connect);
        match opened {
            Ok(stream) => conn.replace_stream(stream, Instant::now()),
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                self.finish(k, Outcome::Failed(ErrorKind::ConnectFailed));
            }
        }
    }

    /// One fewer connection is still exchanging messages; when none is,
    /// this thread's series ends: the close checks that may follow are not
    /// part of the measured run.
    fn exchange_ended(&mut self) {
        self.exchanging = self.exchanging.saturating_sub(1);
        if self.exchanging == 0 {
            self.rec.end_series();
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
        let exchanging = conn.state.exchanging();
        if exchanging {
            self.exchange_ended();
        }
        // A replacement whose connect never completed was never counted open.
        let established = !matches!(conn.state, State::Connecting { .. });
        match outcome {
            Outcome::Continue | Outcome::Replace(_) => unreachable!("settled before"),
            Outcome::Completed(ending) => self.rec.completed(ending),
            Outcome::Failed(kind) => {
                tracing::debug!("connection {}: {}", conn.id + 1, kind.name());
                self.rec.error(kind);
                if exchanging {
                    self.rec.exchange_done(Instant::now());
                }
            }
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.live -= 1;
        if established {
            self.rec.closed();
        }
    }
}

/// Start connection `id`'s non-blocking connect and register it under
/// `token`. The outer error is the poller's; the inner one the connect's.
fn connect_registered(
    config: &Config,
    registry: &mio::Registry,
    id: u64,
    token: Token,
) -> io::Result<io::Result<TcpStream>> {
    let source = net::source_for(&config.source_ips, id);
    let mut stream = match net::start_connect(config.addr, source) {
        Ok(std) => TcpStream::from_std(std),
        Err(e) => return Ok(Err(e)),
    };
    registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(Ok(stream))
}

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
struct OpenLoop {
    cursor: Cursor,
    timer: Option<crate::sys::Timer>,
    /// The instant the timer is armed for.
    armed_for: Option<Instant>,
    due: Vec<(usize, Instant)>,
}

impl OpenLoop {
    fn new(schedule: Schedule, len: usize, registry: &mio::Registry) -> OpenLoop {
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
    fn wait(&mut self, w: &Workload, ids: &[u64], now: Instant, wait: Duration) -> Duration {
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

/// One connection's turn: read and verify, queue what is due, write; and
/// once everything asked is verified, the close check. `now` is when the
/// thread's batch of readiness began; `plan_at` as in [`Driver::turn`].
fn turn(
    conn: &mut Conn,
    config: &Config,
    w: &Workload,
    rec: &mut Recorder,
    scratch: &mut [u8],
    (now, plan_at): (Instant, Option<Instant>),
    reading: Reading,
) -> Outcome {
    if let Some(outcome) = outside_exchange(conn, config, w, rec, scratch, now, reading) {
        return outcome;
    }
    let mut ended = None;
    if reading != Reading::Skip {
        match read(conn, rec, scratch, reading, config.timeout) {
            Ok(ReadEnd::Drained) => {}
            Ok(ReadEnd::Eof) => ended = Some((Ending::Eof, ErrorKind::EarlyClose)),
            // A reset is an ending like an end of stream, just a rude one.
            Err(ErrorKind::Reset) => ended = Some((Ending::Reset, ErrorKind::Reset)),
            Err(kind) => return Outcome::Failed(kind),
        }
    }
    refill(conn, config, w, rec, plan_at.unwrap_or_else(Instant::now));
    let done = conn.finished() && conn.in_flight.is_empty();
    let carried = conn.carried_its_share();
    if let Some((ending, early)) = ended {
        // The server closed (or reset). That is an ending only if nothing
        // more was asked of this connection: the count is reached, the
        // window is over, or (churn) it carried its share. Anything else is
        // early, however much was verified so far.
        if carried {
            return Outcome::Replace(ending);
        }
        if !done {
            return Outcome::Failed(early);
        }
        rec.exchange_done(w.exchange_end(conn.last_verified));
        return Outcome::Completed(ending);
    }
    if carried {
        return begin_close_check(conn, config, scratch, now, true);
    }
    if done {
        rec.exchange_done(w.exchange_end(conn.last_verified));
        return begin_close_check(conn, config, scratch, now, false);
    }
    match write(conn, rec) {
        Err(kind) => Outcome::Failed(kind),
        Ok(()) => Outcome::Continue,
    }
}

/// The turn of a connection that is not exchanging: a replacement connect
/// (churn), which joins the exchange once it is up, or a close check.
/// `None` once the connection is exchanging.
fn outside_exchange(
    conn: &mut Conn,
    config: &Config,
    w: &Workload,
    rec: &mut Recorder,
    scratch: &mut [u8],
    now: Instant,
    reading: Reading,
) -> Option<Outcome> {
    match conn.state {
        // The first connects finish before the start; after it, only a
        // replacement is here.
        State::Connecting { since } => match conn.connected() {
            Ok(false) => Some(Outcome::Continue),
            Ok(true) => {
                let in_window =
                    since >= w.clock.measure_start && w.clock.end.is_none_or(|e| since < e);
                rec.reconnected(now.saturating_duration_since(since), in_window);
                None
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                Some(Outcome::Failed(ErrorKind::ConnectFailed))
            }
        },
        State::Closing { reopen, .. } => Some(match reading {
            Reading::Skip => Outcome::Continue,
            Reading::Data | Reading::Drain => replaced_if(reopen, read_after_end(conn, scratch)),
        }),
        State::Exchanging { .. } => None,
    }
}

/// Everything asked of the connection is verified: half-close, so that a
/// correct echo server echoes what it has, sees the end of stream and
/// closes, and a stray byte before that is caught. `reopen`: churn, a new
/// connection takes its place after the check.
fn begin_close_check(
    conn: &mut Conn,
    config: &Config,
    scratch: &mut [u8],
    now: Instant,
    reopen: bool,
) -> Outcome {
    if config.close_grace.is_zero() {
        return replaced_if(reopen, Outcome::Completed(Ending::Unchecked));
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    conn.state = State::Closing { since: now, reopen };
    // The end of stream may already be queued, with its edge consumed.
    replaced_if(reopen, read_after_end(conn, scratch))
}

/// A close check's outcome, for a connection that is replaced after it
/// (`reopen`) or not.
fn replaced_if(reopen: bool, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Completed(ending) if reopen => Outcome::Replace(ending),
        other => other,
    }
}

/// Read after the last echo: only the server's end of stream may come.
fn read_after_end(conn: &mut Conn, scratch: &mut [u8]) -> Outcome {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return Outcome::Completed(Ending::Eof),
            Ok(_) => {
                tracing::debug!(
                    "connection {}: bytes after the last echo (stream offset {})",
                    conn.id + 1,
                    conn.verified
                );
                return Outcome::Failed(ErrorKind::ExtraBytes);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if classify(&e) == ErrorKind::Reset => return Outcome::Completed(Ending::Reset),
            Err(e) => return Outcome::Failed(classify(&e)),
        }
    }
}

/// Read and verify until the socket is drained, the server closes, or a
/// byte is wrong.
fn read(
    conn: &mut Conn,
    rec: &mut Recorder,
    scratch: &mut [u8],
    reading: Reading,
    timeout: Duration,
) -> Result<ReadEnd, ErrorKind> {
    loop {
        let n = match conn.stream.read(scratch) {
            Ok(0) => return Ok(ReadEnd::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(&e)),
        };
        let owed = (conn.written - conn.verified) as usize;
        verify(conn, &scratch[..n.min(owed)])?;
        complete_verified(conn, rec, timeout)?;
        if n > owed {
            tracing::debug!(
                "connection {}: {} bytes came back that were never sent (stream offset {})",
                conn.id + 1,
                n - owed,
                conn.written
            );
            return Err(ErrorKind::ExtraBytes);
        }
        drop_verified(conn);
        // A short read emptied the receive queue: for a TCP socket `read`
        // returns less than asked only when nothing more is queued, and new
        // data raises a new readiness edge. This saves one `read` that
        // would fail with WouldBlock per turn, a third of the system calls
        // of a pipeline of 1. Not when the peer has closed: its FIN or
        // reset is behind the data, raised no edge of its own, and only
        // the next `read` reports it.
        if n < scratch.len() && reading == Reading::Data {
            return Ok(ReadEnd::Drained);
        }
    }
}

/// Compare echoed bytes, all of them owed, with what was sent at the same
/// place in the stream; what matched is verified.
fn verify(conn: &mut Conn, got: &[u8]) -> Result<(), ErrorKind> {
    let from = (conn.verified - conn.base) as usize;
    let sent = &conn.buf[from..from + got.len()];
    if sent != got {
        let at = sent.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
        tracing::debug!(
            "connection {}: echo mismatch at stream offset {}",
            conn.id + 1,
            conn.verified + at as u64
        );
        return Err(ErrorKind::Mismatch);
    }
    // What was owed and matched is verified, even when more follows.
    conn.verified += got.len() as u64;
    Ok(())
}

/// Record every message now verified to its end, in order.
fn complete_verified(
    conn: &mut Conn,
    rec: &mut Recorder,
    timeout: Duration,
) -> Result<(), ErrorKind> {
    let now = Instant::now();
    while let Some(m) = conn.in_flight.front() {
        if m.end > conn.verified {
            break;
        }
        // The sweep looks for overdue echoes only now and then; an
        // echo that took longer than the timeout fails here, exactly.
        if now.duration_since(m.queued) > timeout {
            return Err(ErrorKind::Timeout);
        }
        rec.verified(now, m.queued, m.intended, m.measured, m.end - m.start);
        conn.last_verified = Some(now);
        conn.in_flight.pop_front();
        conn.in_flight_written -= 1;
    }
    Ok(())
}

/// Free the buffer of verified bytes when that is cheap or worth it.
fn drop_verified(conn: &mut Conn) {
    if conn.verified == conn.generated {
        // Everything sent came back: start the buffer afresh, no copying.
        conn.buf.clear();
        conn.base = conn.verified;
    } else {
        // Drop verified bytes once they are a large, leading part of the buffer.
        let dead = (conn.verified - conn.base) as usize;
        if dead >= 64 * 1024 && dead * 2 >= conn.buf.len() {
            conn.buf.drain(..dead);
            conn.base = conn.verified;
        }
    }
}

/// Queue what the plan says is due, up to the pipeline depth (and, with
/// churn, this connection's share). `plan_now` is the instant the plan is
/// asked at: the turn's own clock, or, for a turn started by a due message
/// this thread noticed late, when it was due.
fn refill(conn: &mut Conn, config: &Config, w: &Workload, rec: &mut Recorder, plan_now: Instant) {
    let share = config.per_connection.unwrap_or(u64::MAX);
    while !conn.finished() && conn.in_flight.len() < config.pipeline && conn.sent_here < share {
        match conn.plan.next(w, plan_now) {
            Next::Send { intended, measured } => {
                conn.sent_here += 1;
                let start = conn.generated;
                config
                    .payload
                    .write_message(conn.id + 1, conn.plan.sent, &mut conn.buf);
                conn.generated = conn.base + conn.buf.len() as u64;
                conn.in_flight.push_back(InFlight {
                    start,
                    end: conn.generated,
                    // Its own clock read, once it is ready to write: the
                    // turns before this one in the batch (reading,
                    // verifying and generating up to a megabyte each) took
                    // the load's time, not the server's. Stamped with the
                    // batch's start, the mean latency at 1000 connections ×
                    // 64 KiB came out half again above what Little's law
                    // allows (docs/BENCHMARKS.md).
                    queued: Instant::now(),
                    intended,
                    measured,
                });
            }
            Next::Wait(_) => break,
            Next::Finished { unsent } => finished(conn, rec, unsent),
        }
    }
    if conn.sent_here >= share && conn.in_flight.is_empty() && !conn.finished() && !conn.retire {
        // The share is carried. Replace the connection only if its slot has
        // more to send: look without taking a message.
        let mut ahead = conn.plan.clone();
        match ahead.next(w, plan_now) {
            Next::Finished { unsent } => {
                conn.plan = ahead;
                finished(conn, rec, unsent);
            }
            // Nothing more is due in the window: stay open until it ends,
            // like any connection with nothing left to send.
            Next::Wait(at) if Some(at) == w.clock.end => {}
            Next::Wait(_) | Next::Send { .. } => conn.retire = true,
        }
    }
}

/// The plan has no more messages for this connection.
fn finished(conn: &mut Conn, rec: &mut Recorder, unsent: u64) {
    rec.unsent(unsent);
    conn.state = State::Exchanging { finished: true };
}

/// Write until everything queued is out or the socket is full (a writable
/// edge will bring the connection back).
fn write(conn: &mut Conn, rec: &mut Recorder) -> Result<(), ErrorKind> {
    while conn.written < conn.generated {
        let from = (conn.written - conn.base) as usize;
        match conn.stream.write(&conn.buf[from..]) {
            Ok(0) => return Err(ErrorKind::Reset),
            Ok(n) => conn.written += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(&e)),
        }
    }
    while let Some(m) = conn.in_flight.get(conn.in_flight_written) {
        if m.end > conn.written {
            break;
        }
        rec.sent(m.measured, m.end - m.start);
        conn.in_flight_written += 1;
    }
    Ok(())
}
