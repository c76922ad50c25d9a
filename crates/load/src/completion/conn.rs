//! One connection of the completion engine: its socket, its operations in
//! flight and its exchange ([`crate::exchange`]), and what each completion
//! does: received bytes are verified in the port's buffer, a send's count
//! moves the written offset, and each is followed by the same turn as in
//! the events engine (queue what is due, then write, or the close check).

use super::{token, Driver};
use crate::exchange::{after_end, replaced_if, Exchange, Outcome, State, Step};
use crate::outcome::{classify, ErrorKind};
use crate::schedule::Workload;
use crate::stats::Ending;
use ringport_completion::{is_cancelled, is_out_of_buffers, Completion, OpId, Port, Socket, Token};
use std::io;
use std::time::Instant;

/// The most bytes one send carries: a larger backlog goes in several.
const MAX_SEND: usize = 256 * 1024;

/// The receive size asked for; the provided buffers' size bounds it.
const RECV_HINT: usize = 64 * 1024;

/// The connection's one send.
pub(super) enum Send {
    /// No send in flight; the vector is kept for the next one.
    Idle(Vec<u8>),
    /// In flight: the port holds the vector, `len` bytes from `offset`.
    InFlight { op: OpId },
}

/// One connection: its socket, its operations in flight, its exchange.
pub(super) struct Conn {
    pub(super) socket: Socket,
    pub(super) ex: Exchange,
    /// Churn: which connection of its slot this is (part of its token).
    gen: u32,
    /// The connect's readiness wait, while connecting.
    pub(super) connect: Option<OpId>,
    /// The multishot receive, while armed.
    recv: Option<OpId>,
    send: Send,
    /// The server's end of stream (or reset) has come: nothing more will.
    eof: bool,
}

impl Conn {
    pub(super) fn new(socket: Socket, ex: Exchange) -> Conn {
        Conn {
            socket,
            ex,
            gen: 0,
            connect: None,
            recv: None,
            send: Send::Idle(Vec::new()),
            eof: false,
        }
    }

    pub(super) fn token(&self, k: usize) -> Token {
        token(k, self.gen)
    }

    /// The operations in flight.
    fn ops(&self) -> Vec<OpId> {
        let send = match self.send {
            Send::InFlight { op } => Some(op),
            Send::Idle(_) => None,
        };
        [self.connect, self.recv, send]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The connection is over: its socket, and the operations to cancel
    /// and reap before it may be closed.
    pub(super) fn into_retired(self) -> (Socket, Vec<OpId>) {
        let ops = self.ops();
        (self.socket, ops)
    }

    /// Churn: `socket` is the slot's new connection, a new generation; the
    /// old socket and its operations in flight are returned.
    pub(super) fn renew(&mut self, socket: Socket) -> (Socket, Vec<OpId>) {
        let ops = self.ops();
        self.gen = self.gen.wrapping_add(1);
        self.connect = None;
        self.recv = None;
        if let Send::InFlight { .. } = self.send {
            // The port keeps the old vector until the cancelled send ends.
            self.send = Send::Idle(Vec::new());
        }
        self.eof = false;
        (std::mem::replace(&mut self.socket, socket), ops)
    }

    /// The connect's readiness `c` came: is the connection up? If so, it is
    /// made ready for the port's sends and receives, and its receive armed.
    pub(super) fn up(&mut self, port: &mut Port, k: usize, c: &Completion) -> io::Result<()> {
        result_of(c)?;
        // Writable, or failed: a connected socket has a peer.
        self.socket.peer_addr()?;
        self.socket.set_nonblocking(false)?;
        // One small message per send: without this, Nagle holds the next
        // message back until the previous echo's ACK.
        let _ = self.socket.set_nodelay();
        self.recv = Some(port.recv(&self.socket, self.token(k), RECV_HINT));
        Ok(())
    }
}

/// A completion's result, as an owned value: the completion goes back to
/// the port while its result is still needed. The OS error stays the same
/// (a cancel, or an empty buffer ring, is told by it).
fn result_of(c: &Completion) -> io::Result<usize> {
    match &c.result {
        Ok(n) => Ok(*n),
        Err(e) => Err(match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        }),
    }
}

impl Driver<'_> {
    /// Connection `k`'s turn, after a completion, a due message (`plan_at`:
    /// when it was due) or a sweep: queue what the plan says is due, then
    /// write it, or begin the close check, or settle how it ended.
    /// `ended`: the server closed or reset the connection, as that ending
    /// (or that error, if more was asked of it).
    pub(super) fn turn(
        &mut self,
        k: usize,
        w: &Workload,
        plan_at: Option<Instant>,
        ended: Option<(Ending, ErrorKind)>,
    ) {
        let now = Instant::now();
        let Some(conn) = self.conns[k].as_mut() else {
            return;
        };
        if !matches!(conn.ex.state, State::Exchanging { .. }) {
            return;
        }
        let rec = &mut self.tally.rec;
        conn.ex.refill(self.config, w, rec, plan_at.unwrap_or(now));
        let outcome = match conn.ex.next_step(w, rec, ended) {
            Step::End(outcome) => outcome,
            Step::Close { reopen } => match conn.ex.begin_close(self.config, now, reopen) {
                Some(outcome) => outcome,
                None => {
                    // The receive stays armed: the server's end of stream,
                    // or a stray byte, completes it.
                    let _ = conn.socket.shutdown(std::net::Shutdown::Write);
                    Outcome::Continue
                }
            },
            Step::Write => match self.write(k) {
                Ok(()) => Outcome::Continue,
                Err(kind) => Outcome::Failed(kind),
            },
        };
        let closing = self.conns[k]
            .as_ref()
            .is_some_and(|c| !c.ex.state.exchanging());
        if closing {
            self.tally.exchange_ended();
        }
        self.settle(k, w, outcome, now);
    }

    /// Send what is queued and unwritten, unless a send is in flight (its
    /// completion sends the rest).
    fn write(&mut self, k: usize) -> Result<(), ErrorKind> {
        let conn = self.conns[k].as_mut().expect("the caller's slot");
        if conn.ex.unwritten_len() == 0 {
            return Ok(());
        }
        let Send::Idle(buf) = &mut conn.send else {
            return Ok(());
        };
        let mut buf = std::mem::take(buf);
        buf.clear();
        conn.ex.unwritten(|piece| {
            let room = MAX_SEND.saturating_sub(buf.len());
            buf.extend_from_slice(&piece[..piece.len().min(room)]);
            buf.len() < MAX_SEND
        });
        let t = conn.token(k);
        // Quiet: the echo wakes this thread, not the send.
        let op = self.port.send_quiet(&conn.socket, t, buf, 0);
        conn.send = Send::InFlight { op };
        Ok(())
    }

    /// A send completed: count what went out; send the rest of a short one.
    pub(super) fn sent(&mut self, k: usize, c: Completion) {
        let result = result_of(&c);
        let buf = self.port.release(c).unwrap_or_default();
        let conn = self.conns[k].as_mut().expect("the caller's slot");
        conn.send = Send::Idle(Vec::new());
        let n = match result {
            Ok(0) => return self.finish(k, Outcome::Failed(ErrorKind::Reset)),
            Ok(n) => n,
            Err(e) if is_cancelled(&e) => return,
            Err(e) => {
                tracing::debug!("connection {}: send failed: {e}", conn.ex.id + 1);
                return self.finish(k, Outcome::Failed(classify(&e)));
            }
        };
        conn.ex.wrote(&mut self.tally.rec, n);
        conn.send = Send::Idle(buf);
        if matches!(conn.ex.state, State::Exchanging { .. }) && conn.ex.unwritten_len() > 0 {
            if let Err(kind) = self.write(k) {
                self.finish(k, Outcome::Failed(kind));
            }
        }
    }

    /// A receive completed: verify the bytes in the port's buffer, or take
    /// note of the end of stream or the error; then the connection's turn.
    pub(super) fn received(&mut self, k: usize, c: Completion, w: &Workload) {
        let conn = self.conns[k].as_mut().expect("the caller's slot");
        if !c.more {
            conn.recv = None;
        }
        let read = match result_of(&c) {
            Err(e) if is_cancelled(&e) => {
                let _ = self.port.release(c);
                return;
            }
            // The ring was empty for a moment: receive again.
            Err(e) if is_out_of_buffers(&e) => {
                let _ = self.port.release(c);
                self.rearm(k);
                return;
            }
            other => other,
        };
        let closing = match conn.ex.state {
            State::Closing { reopen, .. } => Some(reopen),
            _ => None,
        };
        if let Some(reopen) = closing {
            let _ = self.port.release(c);
            conn.eof = true;
            let outcome = replaced_if(reopen, after_end(conn.ex.id, conn.ex.verified, read));
            return self.settle(k, w, outcome, Instant::now());
        }
        let ended = match read {
            Ok(n) if n > 0 => {
                let got = self.port.data(&c);
                let verified = conn
                    .ex
                    .received(&mut self.tally.rec, got, self.config.timeout);
                let _ = self.port.release(c);
                if let Err(kind) = verified {
                    return self.finish(k, Outcome::Failed(kind));
                }
                None
            }
            Ok(_) => {
                let _ = self.port.release(c);
                Some((Ending::Eof, ErrorKind::EarlyClose))
            }
            // A reset is an ending like an end of stream, just a rude one.
            Err(e) => {
                let _ = self.port.release(c);
                tracing::debug!("connection {}: receive failed: {e}", conn.ex.id + 1);
                match classify(&e) {
                    ErrorKind::Reset => Some((Ending::Reset, ErrorKind::Reset)),
                    kind => return self.finish(k, Outcome::Failed(kind)),
                }
            }
        };
        if ended.is_some() {
            if let Some(conn) = self.conns[k].as_mut() {
                conn.eof = true;
            }
        } else {
            self.rearm(k);
        }
        self.turn(k, w, None, ended);
    }

    /// Arm the receive again if it ended and the connection still reads.
    fn rearm(&mut self, k: usize) {
        let Some(conn) = self.conns[k].as_mut() else {
            return;
        };
        if conn.recv.is_none() && !conn.eof {
            conn.recv = Some(self.port.recv(&conn.socket, conn.token(k), RECV_HINT));
        }
    }
}
