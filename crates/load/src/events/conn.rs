//! One connection of the event-driven engine: where it is in its life, and
//! its turn, which the driver gives it when it is ready or a message of its
//! falls due.
//!
//! Each connection keeps one buffer holding the bytes of its in-flight
//! messages, with three offsets into the byte stream: how much was
//! generated, written and verified ([`super::echo`] moves them), and the
//! messages complete in order (an echo is FIFO over the stream).
//!
//! Once everything asked of it is verified, a connection goes through the
//! end-of-run check (half-close, then the server's end of stream). Churn
//! (`per_connection`): a connection that has carried its messages goes
//! through the same check, then a new connection is opened in its place,
//! which takes over its plan: one slot, a line of connections. Each
//! connect is timed.

use super::echo::{self, ReadEnd};
use crate::config::Config;
use crate::outcome::{classify, ErrorKind};
use crate::payload::{Cut, Messages};
use crate::schedule::{Next, Plan, Workload};
use crate::stats::{Ending, Recorder};
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

/// A message sent and not yet verified.
pub(super) struct InFlight {
    /// Where it starts and ends in the connection's byte stream.
    pub(super) start: u64,
    pub(super) end: u64,
    /// When it was handed to the socket (raw latency starts here).
    pub(super) queued: Instant,
    /// When it was due (corrected latency starts here; `queued` in a closed loop).
    pub(super) intended: Instant,
    pub(super) measured: bool,
    /// A sized message: where its bytes are (its key and a run of the
    /// thread's block), sent and checked from there. `None`: a template
    /// message, written out in the connection's buffer.
    pub(super) cut: Option<Cut>,
}

/// Where a connection is in its life.
pub(super) enum State {
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
    pub(super) fn exchanging(&self) -> bool {
        !matches!(self, State::Closing { reopen: false, .. })
    }
}

/// One connection: its socket, where it is in its life and in its plan,
/// and the bytes of its messages in flight.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) id: u64,
    pub(super) state: State,
    pub(super) plan: Plan,
    /// The thread's payload, its block made once.
    pub(super) messages: Arc<Messages>,
    /// Template messages: the bytes of the messages not yet verified;
    /// `buf[0]` is stream offset `base`. Sized messages are not written
    /// out: they are sent and checked from the block.
    pub(super) buf: Vec<u8>,
    pub(super) base: u64,
    pub(super) generated: u64,
    pub(super) written: u64,
    pub(super) verified: u64,
    pub(super) in_flight: VecDeque<InFlight>,
    /// How many of `in_flight` are fully written.
    pub(super) in_flight_written: usize,
    /// When the last message came back verified.
    pub(super) last_verified: Option<Instant>,
    /// Measured messages verified in this slot (churn: by every
    /// connection of the slot, so not reset when one is replaced).
    pub(super) measured_verified: u64,
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
    pub(super) fn new(
        stream: TcpStream,
        id: u64,
        now: Instant,
        buf: Vec<u8>,
        messages: Arc<Messages>,
    ) -> Conn {
        Conn {
            stream,
            id,
            state: State::Connecting { since: now },
            plan: Plan::new(id),
            messages,
            buf,
            base: 0,
            generated: 0,
            written: 0,
            verified: 0,
            in_flight: VecDeque::new(),
            in_flight_written: 0,
            last_verified: None,
            measured_verified: 0,
            sent_here: 0,
            retire: false,
        }
    }

    /// Take `stream`, a new connection in this one's place (churn): the
    /// plan goes on, the byte stream starts afresh.
    pub(super) fn replace_stream(&mut self, stream: TcpStream, now: Instant) {
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
    pub(super) fn carried_its_share(&self) -> bool {
        self.retire && !self.finished() && self.in_flight.is_empty()
    }

    pub(super) fn finished(&self) -> bool {
        matches!(self.state, State::Exchanging { finished: true })
    }

    /// Has the non-blocking connect finished? `Err` if it failed.
    pub(super) fn connected(&mut self) -> io::Result<bool> {
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
pub(super) enum Reading {
    /// None: the turn was not started by readiness (a message fell due).
    Skip,
    /// Until a short read, which means the data queue is empty.
    Data,
    /// Until WouldBlock, end of stream or an error: the peer has closed or
    /// failed, and that state is seen only by one more `read` after the data.
    Drain,
}

pub(super) enum Outcome {
    Continue,
    /// Everything asked was sent and verified, and the server ended the
    /// connection this way.
    Completed(Ending),
    /// Churn: the connection carried its share and the server ended it this
    /// way; a new one takes its place.
    Replace(Ending),
    Failed(ErrorKind),
}

/// One connection's turn: read and verify, queue what is due, write; and
/// once everything asked is verified, the close check. `now` is when the
/// thread's batch of readiness began; `plan_at` as in
/// [`Driver::turn_and_settle`](super::Driver::turn_and_settle).
pub(super) fn run_turn(
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
        match echo::read(conn, rec, scratch, reading, config.timeout) {
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
    match echo::write(conn, rec) {
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
                let cut = conn.messages.cut(conn.id + 1, conn.plan.sent);
                match &cut {
                    Some(cut) => conn.generated += cut.len() as u64,
                    None => {
                        conn.messages
                            .write(conn.id + 1, conn.plan.sent, &mut conn.buf);
                        conn.generated = conn.base + conn.buf.len() as u64;
                    }
                }
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
                    cut,
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
