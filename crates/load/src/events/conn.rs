//! One connection of the event-driven engine: its socket and its
//! exchange ([`crate::exchange`]), and its turn, which the driver gives it
//! when it is ready or a message of its falls due: read and verify, queue
//! what is due, write, and the end-of-run close check.

use super::echo::{self, ReadEnd};
use crate::config::Config;
use crate::exchange::{after_end, replaced_if, Exchange, Step};
pub(super) use crate::exchange::{Outcome, State};
use crate::outcome::ErrorKind;
use crate::schedule::Workload;
use crate::stats::{Ending, Recorder};
use mio::net::TcpStream;
use std::io::{self, Read};
use std::time::Instant;

/// One connection: its socket and its exchange (which it derefs to).
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) ex: Exchange,
}

impl std::ops::Deref for Conn {
    type Target = Exchange;
    fn deref(&self) -> &Exchange {
        &self.ex
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Exchange {
        &mut self.ex
    }
}

impl Conn {
    /// A connection connecting on `stream`, with its exchange.
    pub(super) fn new(stream: TcpStream, ex: Exchange) -> Conn {
        Conn { stream, ex }
    }

    /// Take `stream`, a new connection in this one's place (churn): the
    /// plan goes on, the byte stream starts afresh.
    pub(super) fn replace_stream(&mut self, stream: TcpStream, now: Instant) {
        self.stream = stream;
        self.ex.restart(now);
    }

    /// Has the non-blocking connect finished? `Err` if it failed.
    pub(super) fn connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.ex.state = State::Exchanging { finished: false };
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
    if let Some(outcome) = outside_exchange(conn, w, rec, scratch, now, reading) {
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
    conn.ex
        .refill(config, w, rec, plan_at.unwrap_or_else(Instant::now));
    match conn.ex.next_step(w, rec, ended) {
        Step::End(outcome) => outcome,
        Step::Close { reopen } => begin_close_check(conn, config, scratch, now, reopen),
        Step::Write => match echo::write(conn, rec) {
            Err(kind) => Outcome::Failed(kind),
            Ok(()) => Outcome::Continue,
        },
    }
}

/// The turn of a connection that is not exchanging: a replacement connect
/// (churn), which joins the exchange once it is up, or a close check.
/// `None` once the connection is exchanging.
fn outside_exchange(
    conn: &mut Conn,
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
                conn.ex.reconnected(rec, w, since, now);
                None
            }
            Err(e) => {
                tracing::debug!("connect failed: {e}");
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
    if let Some(outcome) = conn.ex.begin_close(config, now, reopen) {
        return outcome;
    }
    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    // The end of stream may already be queued, with its edge consumed.
    replaced_if(reopen, read_after_end(conn, scratch))
}

/// Read after the last echo: only the server's end of stream may come.
fn read_after_end(conn: &mut Conn, scratch: &mut [u8]) -> Outcome {
    loop {
        let read = conn.stream.read(scratch);
        match &read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return after_end(conn.id, conn.verified, read),
        }
    }
}
