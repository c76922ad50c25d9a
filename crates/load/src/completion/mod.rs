//! The completion engine: many connections per thread on ringport's own
//! completion port ([`ringport_completion::Port`], io_uring), `--engine
//! completion`.
//!
//! Where the events engine asks the kernel which sockets are ready and then
//! reads and writes each one (a wait, a `recvfrom` and a `sendto` per
//! message, and a timer re-armed for the open loop), this one keeps a
//! multishot receive armed on every connection, into the port's provided
//! buffers, and verifies the echoed bytes in place, in the kernel's buffer,
//! before handing it back. Sends are submitted with the receives of every
//! connection the thread has, in one system call per wait; they are quiet
//! (their completion does not wake the thread, the echo does). The open
//! loop needs no timer: the wait's own timeout is the next due instant.
//!
//! The connection's protocol (plan, bytes in flight, verification, close
//! check, churn, sweep, books) is [`crate::exchange`], shared with the
//! events engine; this module only moves operations in and completions out:
//!
//! - [`connect`]: the connect phase and churn's replacement connects,
//!   non-blocking connects whose writability the port reports;
//! - [`conn`]: one connection's sockets and operations, and what each
//!   completion does to its exchange.
//!
//! Ownership: the port owns every buffer while the kernel has it (a send's
//! vector comes back with its completion, a receive's buffer goes back to
//! the ring with [`Port::release`]). A connection that ends, or is replaced,
//! has its operations cancelled; its socket is closed only when the last of
//! them has completed (`Retired`).

mod conn;
mod connect;

use crate::config::Config;
use crate::cursor::Cursor;
use crate::exchange::{Outcome, Sweep};
use crate::payload::Messages;
use crate::schedule::Workload;
use crate::start::{Driving, Shared, WorkerOut};
use crate::stats::{Ending, Recorder};
use crate::tally::Tally;
use crate::LoadError;
use conn::Conn;
use ringport_completion::{Completion, OpKind, Port, PortConfig, Socket, Token};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often timeouts are checked and finished connections noticed.
const SWEEP: Duration = Duration::from_millis(50);

/// Can a load thread build a port here? The reason, with the kernel's
/// error, if not. A run asks this before anything starts.
pub(crate) fn available() -> Result<(), String> {
    match ringport_completion::probe(&port_config(1, 1)) {
        Err(e) => Err(format!("--engine completion: {e}")),
        // Connects are waited for with the port's readiness operation.
        Ok(f) if !f.relay => Err(format!(
            "--engine completion needs io_uring (Linux); {} has no readiness operation for connects",
            f.backend
        )),
        Ok(_) => Ok(()),
    }
}

/// The most memory a thread's receive buffers take.
const RING_BYTES: usize = 64 << 20;

/// The port of a thread with `conns` connections and messages of at most
/// `message` bytes: receive buffers as large as a message, from 16 to 64
/// KiB (a 64 KiB echo in 16 KiB buffers is four completions), a buffer
/// each and as many again for echoes that come faster than they are
/// verified, within [`RING_BYTES`].
fn port_config(conns: usize, message: usize) -> PortConfig {
    let buf_size = message.next_power_of_two().clamp(16 << 10, 64 << 10);
    let bufs = (conns * 2)
        .next_power_of_two()
        .clamp(256, (RING_BYTES / buf_size).min(1 << 15));
    PortConfig {
        entries: (conns * 2).next_power_of_two().clamp(256, 4096) as u32,
        buf_size,
        ring_bufs: bufs as u16,
        ..PortConfig::default()
    }
}

/// The token of slot `k`'s connection of generation `gen` (churn opens a
/// new generation in the same slot): a completion of an older one belongs
/// to a retired socket.
fn token(k: usize, gen: u32) -> Token {
    (u64::from(gen) << 32) | k as u64
}

fn slot_of(token: Token) -> usize {
    (token & u64::from(u32::MAX)) as usize
}

/// A socket whose connection is over, with operations still in flight:
/// closed through the port when the last one has completed.
struct Retired {
    socket: Socket,
    ops: usize,
}

/// The thread's connections and everything needed to drive them. The port
/// comes first: dropped first, it reaps what is in flight before any
/// socket below is closed.
struct Driver<'a> {
    port: Port,
    config: &'a Config,
    conns: Vec<Option<Conn>>,
    tally: Tally,
    retired: HashMap<Token, Retired>,
    /// The payload, its block made once for the thread's connections.
    messages: Arc<Messages>,
    /// Completions of one wait; sends are handled before the rest.
    done: Vec<Completion>,
    later: Vec<Completion>,
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
    let setup = Port::new(&port_config(ids.len(), config.payload.max_len()))
        .map_err(|e| LoadError::Config(format!("--engine completion: {e}; use --engine events")))
        .and_then(|port| {
            let mut d = Driver {
                port,
                config,
                conns: Vec::with_capacity(ids.len()),
                tally: Tally::new(rec, ids.len()),
                retired: HashMap::new(),
                messages: Arc::new(Messages::new(&config.payload)),
                done: Vec::with_capacity(256),
                later: Vec::with_capacity(256),
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
        let Driver {
            port,
            conns,
            tally,
            retired,
            ..
        } = self;
        let left = conns.iter().enumerate();
        let rec = tally.close_books(left.filter_map(|(k, c)| c.as_ref().map(|c| (k, &c.ex))));
        // The port first: it reaps what is still in flight before any
        // socket is closed.
        drop(port);
        drop(retired);
        drop(conns);
        rec
    }
}

impl Driver<'_> {
    /// Drive every connection until each one is done or failed.
    fn run(&mut self, w: &Workload, ids: &[u64]) -> Result<(), LoadError> {
        let mut open = w.schedule.clone().map(|s| Cursor::new(s, ids.len()));
        let mut due = Vec::new();
        self.tally.exchanging = self.tally.live;
        if self.tally.exchanging == 0 {
            self.tally.rec.end_series();
        }
        // Start each open connection: fill its pipeline (closed loop).
        for k in 0..self.conns.len() {
            self.turn(k, w, None, None);
        }
        let mut last_sweep = Instant::now();
        while self.tally.live > 0 {
            let now = Instant::now();
            let mut wait = SWEEP.saturating_sub(now.duration_since(last_sweep));
            if let Some(at) = open.as_ref().and_then(|c| c.at(w, ids)) {
                wait = wait.min(at.saturating_duration_since(now));
            }
            self.wait(wait)?;
            let mut now = Instant::now();
            self.handle_completions(w);
            if let Some(c) = open.as_mut() {
                c.take_due(w, ids, now, &mut due);
                now = Instant::now();
                for (k, at) in due.drain(..) {
                    self.turn(k, w, Some(at.min(now)), None);
                }
            }
            if now.duration_since(last_sweep) >= SWEEP {
                last_sweep = now;
                self.sweep(w, now);
            }
            self.tally.rec.tick(now);
        }
        Ok(())
    }

    /// Submit what is queued and wait at most `wait` for completions.
    fn wait(&mut self, wait: Duration) -> Result<(), LoadError> {
        match self.port.wait(&mut self.done, Some(wait), None) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(LoadError::Io {
                context: "waiting on the completion port failed".into(),
                error: e,
            }),
            _ => Ok(()),
        }
    }

    /// Hand each completion of the last wait to its connection: sends
    /// first, so that an echo is never verified before its send is counted.
    fn handle_completions(&mut self, w: &Workload) {
        let mut done = std::mem::take(&mut self.done);
        let mut later = std::mem::take(&mut self.later);
        for c in done.drain(..) {
            if c.kind == OpKind::Send {
                self.completed(c, w);
            } else {
                later.push(c);
            }
        }
        for c in later.drain(..) {
            self.completed(c, w);
        }
        self.done = done;
        self.later = later;
    }

    /// One completion: to its connection, or to a retired socket's count.
    fn completed(&mut self, c: Completion, w: &Workload) {
        let k = slot_of(c.token);
        let current = self
            .conns
            .get(k)
            .and_then(|s| s.as_ref())
            .map(|c| c.token(k));
        if current != Some(c.token) {
            self.retired_completion(c);
            return;
        }
        match c.kind {
            OpKind::Recv => self.received(k, c, w),
            OpKind::Send => self.sent(k, c),
            OpKind::Ready => self.connect_ready(k, c, w),
            // A close is only ever a retired socket's; nothing else is submitted.
            _ => {
                let _ = self.port.release(c);
            }
        }
    }

    /// A completion of a connection that is over: when its socket's last
    /// operation has completed, close it.
    fn retired_completion(&mut self, c: Completion) {
        let (token, last) = (c.token, !c.more);
        let is_close = c.kind == OpKind::Close;
        let _ = self.port.release(c);
        if is_close || !last {
            return;
        }
        if let Some(r) = self.retired.get_mut(&token) {
            r.ops -= 1;
            if r.ops == 0 {
                let r = self.retired.remove(&token).expect("looked up above");
                self.port.close(r.socket, token);
            }
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
                Sweep::Nudge => self.turn(k, w, None, None),
            }
        }
    }

    /// What a turn, a completion or a sweep decided for connection `k`:
    /// nothing, a replacement (churn), or the end of the slot.
    fn settle(&mut self, k: usize, w: &Workload, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Continue => {}
            Outcome::Replace(ending) => self.replace(k, w, ending, now),
            other => self.finish(k, other),
        }
    }

    /// Remove a completed or failed connection.
    fn finish(&mut self, k: usize, outcome: Outcome) {
        if matches!(outcome, Outcome::Continue) {
            return;
        }
        let Some(conn) = self.conns[k].take() else {
            return;
        };
        self.tally.removed(k, &conn.ex, outcome);
        let token = conn.token(k);
        let (socket, ops) = conn.into_retired();
        self.retire(socket, token, ops);
    }

    /// Cancel a socket's operations `ops`, and close it once they are
    /// over (at once if there are none).
    fn retire(&mut self, socket: Socket, token: Token, ops: Vec<ringport_completion::OpId>) {
        if ops.is_empty() {
            self.port.close(socket, token);
            return;
        }
        for op in &ops {
            self.port.cancel(*op);
        }
        self.retired.insert(
            token,
            Retired {
                socket,
                ops: ops.len(),
            },
        );
    }

    /// Churn: connection `k` carried its share and has closed; open a new
    /// one in its place, which takes over its plan.
    fn replace(&mut self, k: usize, w: &Workload, ending: Ending, now: Instant) {
        let Some(conn) = self.conns[k].as_mut() else {
            return;
        };
        if let Some(outcome) = self.tally.cycle(&mut conn.ex, w, ending, now) {
            self.finish(k, outcome);
            return;
        }
        match self.reconnect(k) {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", self.config.addr);
                self.finish(k, Outcome::Failed(crate::outcome::ErrorKind::ConnectFailed));
            }
        }
    }
}
