//! The connection state machine of the completion model, written once for
//! every completion backend (io_uring, IOCP).
//!
//! It does no I/O. The driver tells it what completed (the `on_*` events,
//! [`Conn::shutdown`], [`Conn::abort`]), then calls [`Conn::pump`], which
//! starts the next operations through the driver's [`Io`]. So the same code
//! runs over a ring per thread or a shared IOCP port, and tests can feed it
//! any sequence of partial completions, short sends and errors. `Conn` holds
//! everything a connection is: its states, its buffers, the ids of its
//! operations in flight and when a byte last moved. The driver only moves
//! operations and completions. This file holds the states and the events;
//! what they start is chosen in `pump.rs`, and the kernel relay, a second
//! way of moving bytes, lives in `relay.rs`.
//!
//! Its states are enums, each variant carrying its data:
//! * [`Life`]: echoing, half-closed by the peer, draining for shutdown,
//!   lingering after the FIN, ending (cancelling), closing, closed.
//! * [`Recv`] and [`Send`]: what is in flight, with its id, or being
//!   cancelled; a send carries its offset and length, and the rest of a
//!   short send waits in its own variant until `pump` sends it.
//! * [`Intake`]: how input is taken: bounded one-shot receives, multishot,
//!   or paused by backpressure.
//! * The kernel relay's, in [`relay`]: whether bytes go through a pipe,
//!   and the readiness wait that moves them.
//!
//! The invariants it keeps:
//! * recv → send → recv: received bytes are queued, and at most one send is in
//!   flight, so bytes go back in order.
//! * A short send is resubmitted from where it stopped, before anything queued.
//! * Backpressure: when `max_buffered` bytes are held for the peer, receiving
//!   stops (a multishot receive is cancelled), and resumes once half has been
//!   sent. What is held is what the buffers hold: the queued bytes and the
//!   whole buffer of the send in flight, including the part a short send
//!   already got out (the kernel still has the buffer), and the queue grows
//!   by doubling but never past the room left. So the buffers of one
//!   connection never pass `max_buffered` plus one kept spare of at most
//!   64 KiB (and a multishot overshoot, below). A multishot receive delivers
//!   whatever the socket holds before a cancel can land (1.6 MB for one
//!   connection was measured), so it is used only for interactive traffic: a
//!   connection starts on one-shot receives of at most the room left
//!   ([`Intake::Bounded`]), switches to multishot once two small receives in
//!   a row arrive with nothing held, and goes back to bounded receives when
//!   it hits the cap. A client that was interactive and then floods can still
//!   overshoot once, by what one batch of completions holds.
//! * A send is quiet (its completion may wait) only when that is decided as
//!   it is emitted: a receive is armed, nothing is queued behind it, and the
//!   connection is echoing, so the peer's next event comes anyway.
//! * Closing: every operation in flight is cancelled and its completion reaped
//!   before the socket is closed, and the connection may be freed only after
//!   the close completes ([`Conn::is_finished`]), so no buffer is freed while
//!   the kernel may still use it.
//! * Shutdown drains ([`Conn::shutdown`]): the receive is cancelled, the send
//!   in flight and the queued bytes go out, then FIN; what the peer sends is
//!   received and dropped until it closes too, and only then is the socket
//!   closed, because closing with unread bytes makes the kernel reset the
//!   connection and destroy the end of the echo still on its way.
//!   [`Conn::abort`] is the forced path (drain deadline, idle timeout).

use crate::reclaim;
use relay::{Relay, RELAY_AT};
use ringport_completion::Interest;
use std::io;

mod pump;
mod relay;
use std::time::Instant;

/// The operations a connection starts, submitted by the driver.
pub trait Io {
    /// Names an operation in flight, so that it can be cancelled.
    type Op: Copy;
    /// A receive's completion with its buffer, to send from as it is.
    type Received;
    /// Arm a receive of at most `max` bytes: multishot where the port has
    /// them (then `max` is only a hint), one-shot if `once`.
    fn recv(&mut self, max: usize, once: bool) -> Self::Op;
    /// Send `buf[offset..]`; the buffer belongs to the operation until it
    /// completes. `quiet`: nothing waits on this completion, so the driver
    /// may use [`Port::send_quiet`](ringport_completion::Port::send_quiet).
    fn send(&mut self, buf: Vec<u8>, offset: usize, quiet: bool) -> Self::Op;
    /// Send what a receive delivered straight from its buffer (see
    /// [`Conn::lends_next_receive`]); never quiet, so the buffer goes back
    /// as soon as the send completes.
    fn send_received(&mut self, received: Self::Received) -> Self::Op;
    /// Give a receive's buffer back unsent (the connection is ending).
    fn release(&mut self, received: Self::Received);
    /// Cancel an operation in flight; it still completes (cancelled).
    fn cancel(&mut self, op: Self::Op);
    /// Shut the sending side of the socket down now: FIN after the last byte
    /// sent. No send is in flight. (Not the read side: Linux resets a
    /// connection that has sent its FIN and shut its read side as soon as
    /// more data arrives.)
    fn shutdown_write(&mut self);
    /// Close the socket; nothing is in flight any more.
    fn close(&mut self);
    /// Start relaying in the kernel (see [`Conn::relaying`]): make a pipe of
    /// about `capacity` bytes and the socket non-blocking. Returns the
    /// pipe's capacity, or `None` to go on through the port's buffers: no
    /// pipe could be made, or the kernel gave less than `min` (then it is
    /// closed and the socket left as it was).
    fn relay_start(&mut self, capacity: usize, min: usize) -> Option<usize>;
    /// Move at most `max` bytes from the socket into the pipe, never
    /// waiting: `Ok(0)` is the peer's FIN, `WouldBlock` nothing to read.
    fn fill(&mut self, max: usize) -> io::Result<usize>;
    /// Move at most `max` bytes from the pipe to the socket, never waiting:
    /// `WouldBlock` means the socket is full.
    fn drain(&mut self, max: usize) -> io::Result<usize>;
    /// Arm a one-shot readiness wait on the socket.
    fn poll(&mut self, interest: Interest) -> Self::Op;
    /// Stop relaying: the pipe is empty; close it and make the socket
    /// blocking again, for the port's receives and sends.
    fn relay_end(&mut self);
}

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer closed its side and got everything back.
    PeerClosed,
    /// A receive or send failed (reset, broken pipe).
    Error,
    /// The server is shutting down.
    Shutdown,
    /// Nothing moved either way for the idle timeout.
    Idle,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Echoing.
    Open,
    /// The peer sent its FIN: send what is owed, then close, for this reason
    /// (`PeerClosed`, or `Shutdown` if the server was stopping too).
    HalfClosed(EndReason),
    /// Shutdown began: the receive is cancelled, what is owed goes out,
    /// then the FIN.
    Draining,
    /// Shutdown, everything owed sent and the FIN out: receiving only to
    /// drop unread input until the peer's end of stream.
    Lingering,
    /// Ending for this reason: cancel what is in flight, then close.
    Ending(EndReason),
    /// The close is in flight.
    Closing(EndReason),
    /// Closed; the driver may free the connection.
    Closed(EndReason),
}

/// The receive side.
#[derive(Debug, Clone, Copy)]
enum Recv<Op> {
    /// No receive in flight.
    Idle,
    /// A receive is in flight. `multishot`: it keeps delivering until
    /// cancelled (otherwise it ends with its completion).
    Armed { op: Op, multishot: bool },
    /// A receive is in flight and its cancel was asked for.
    Cancelling,
}

/// The send side: at most one send at a time.
#[derive(Debug)]
enum Send<Op, R> {
    /// Nothing to send in flight.
    Idle,
    /// A receive's `len` bytes, in the buffer they arrived in, to go out
    /// from there next (nothing was queued before them).
    Lent { received: R, len: usize },
    /// A short send's rest, to go out next, before anything queued.
    Rest { buf: Vec<u8>, offset: usize },
    /// A send of `buf[offset..]` is in flight; `len` is the whole buffer's,
    /// memory that stays held until the send completes.
    InFlight { op: Op, offset: usize, len: usize },
    /// The send in flight (of `buf[offset..]`, `len` long) is being
    /// cancelled: the connection is ending. It still completes, and holds
    /// its buffer until then.
    Cancelling { offset: usize, len: usize },
}

/// How the connection takes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intake {
    /// The port has no multishot receives: one-shot receives of at most
    /// the room left.
    OneShot,
    /// One-shot receives of at most the room left, on a multishot port:
    /// from the start and after backpressure, until traffic looks
    /// interactive: two small receives in a row with nothing held. One is
    /// not enough: TCP may push a large write in two pieces (a new
    /// connection's first write at half the peer's first window, 32,741
    /// bytes on loopback), and the second can be small. `small`: the last
    /// receive was.
    Bounded { small: bool },
    /// Multishot receives: interactive traffic.
    Multishot,
    /// Stopped: `max_buffered` bytes are held. Resumes (bounded) once no
    /// more than half are.
    Paused,
}

/// One client connection. `Op` names its operations in flight
/// ([`ringport_completion::OpId`] in the server), `R` a receive's completion
/// that it sends from as it is ([`ringport_completion::Completion`]).
#[derive(Debug)]
pub struct Conn<Op, R> {
    life: Life,
    recv: Recv<Op>,
    send: Send<Op, R>,
    intake: Intake,
    /// The port has multishot receives.
    multishot: bool,
    /// Bulk input goes back from the buffers it arrives in, where the port
    /// does that for free ([`Conn::lending`]).
    lend: bool,
    /// Bulk input goes through a kernel relay ([`Conn::relaying`]).
    relay: Relay<Op>,
    /// Received bytes waiting for the send in flight to finish.
    queued: Vec<u8>,
    /// A finished send's buffer, kept to avoid an allocation per message.
    spare: Option<Vec<u8>>,
    max_buffered: usize,
    /// Below this, a backpressured connection receives again.
    resume_at: usize,
    /// Bytes echoed and not yet counted in the server's stats.
    echoed: u64,
    /// When a byte last moved either way.
    last_active: Instant,
}

/// Two receives in a row smaller than this, with nothing held, mark a
/// connection as interactive (multishot receives from then on). Well below
/// the port's receive buffers (16 or 64 KiB), so a bulk sender, which fills
/// them, never is.
const INTERACTIVE: usize = 4096;

/// A new connection's buffers are allocated lazily and freed when idle, so
/// an idle connection costs only this struct.
const KEEP_SPARE_UP_TO: usize = 64 * 1024;

impl<Op: Copy, R> Conn<Op, R> {
    /// A connection on a port with multishot receives or not, accepted `now`.
    pub fn new(multishot: bool, max_buffered: usize, now: Instant) -> Self {
        let max_buffered = max_buffered.max(1);
        Conn {
            life: Life::Open,
            recv: Recv::Idle,
            send: Send::Idle,
            intake: Self::fresh_intake(multishot),
            multishot,
            lend: false,
            relay: Relay::Off { allowed: false },
            queued: Vec::new(),
            spare: None,
            max_buffered,
            resume_at: max_buffered / 2,
            echoed: 0,
            last_active: now,
        }
    }

    /// Send bulk input from the buffers it arrives in (see
    /// [`lends_next_receive`](Conn::lends_next_receive)), where the port
    /// does that without a copy or an allocation
    /// ([`Features::lent_sends`](ringport_completion::Features::lent_sends)).
    pub fn lending(mut self, on: bool) -> Self {
        self.lend = on;
        self
    }

    /// Relay bulk input in the kernel (socket → pipe → socket, `splice`),
    /// where the port can ([`Features::relay`](ringport_completion::Features::relay)):
    /// a connection whose one-shot receive brings at least [`RELAY_AT`]
    /// bytes (owed bytes or not) sends what it owes, then moves its bytes
    /// without copying them, until its peer's FIN or the server's shutdown.
    pub fn relaying(mut self, on: bool) -> Self {
        self.relay = Relay::Off { allowed: on };
        self
    }

    /// Whether bytes are going through a kernel relay (for tests).
    #[cfg(test)]
    pub fn is_relaying(&self) -> bool {
        self.is_relay_on()
    }

    /// A receive brought `len` bytes; `once`: it was one-shot; `owed`: bytes
    /// were owed to the peer before it. A large one-shot receive asks for
    /// the relay ([`RELAY_AT`]); the second small one in a row with nothing
    /// owed turns bounded receives multishot ([`INTERACTIVE`]).
    fn note_receive(&mut self, len: usize, once: bool, owed: bool) {
        if once
            && matches!(self.relay, Relay::Off { allowed: true })
            && len >= RELAY_AT
            && matches!(self.intake, Intake::Bounded { .. } | Intake::OneShot)
            && self.life == Life::Open
        {
            self.relay = Relay::Wanted;
        }
        if let Intake::Bounded { small } = self.intake {
            let small_now = !owed && len < INTERACTIVE;
            self.intake = if small && small_now {
                Intake::Multishot
            } else {
                Intake::Bounded { small: small_now }
            };
        }
    }

    fn fresh_intake(multishot: bool) -> Intake {
        if multishot {
            Intake::Bounded { small: false }
        } else {
            Intake::OneShot
        }
    }

    /// Bytes owed to the peer: queued plus the unsent part of the send in flight.
    pub fn buffered(&self) -> usize {
        let sending = match self.send {
            Send::Idle => 0,
            Send::Rest { ref buf, offset } => buf.len() - offset,
            Send::Lent { len, .. } => len,
            Send::InFlight { offset, len, .. } | Send::Cancelling { offset, len } => len - offset,
        };
        self.queued.len() + sending + self.relayed()
    }

    /// Bytes the buffers hold for the peer: queued plus the whole buffer of
    /// the send in flight, plus what the relay's pipe holds. This is what
    /// `max_buffered` caps.
    pub fn held(&self) -> usize {
        self.queued.len() + self.send_len() + self.relayed()
    }

    /// The whole length of the buffer of the send in flight (or waiting to be).
    fn send_len(&self) -> usize {
        match self.send {
            Send::Idle => 0,
            Send::Rest { ref buf, .. } => buf.len(),
            Send::Lent { len, .. } => len,
            Send::InFlight { len, .. } | Send::Cancelling { len, .. } => len,
        }
    }

    /// Memory of the buffers this connection keeps (the send in flight's
    /// belongs to its operation until it completes, so it is not counted).
    pub fn capacity(&self) -> usize {
        self.queued.capacity() + self.spare.as_ref().map_or(0, Vec::capacity)
    }

    /// Why the connection ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self.life {
            Life::Ending(why) | Life::Closing(why) | Life::Closed(why) => Some(why),
            _ => None,
        }
    }

    /// True once the socket is closed and nothing is in flight: the driver
    /// may free the connection.
    pub fn is_finished(&self) -> bool {
        matches!(self.life, Life::Closed(_))
    }

    /// True while any operation of this connection is in flight.
    pub fn has_ops_in_flight(&self) -> bool {
        !matches!(self.recv, Recv::Idle)
            || matches!(self.send, Send::InFlight { .. } | Send::Cancelling { .. })
            || self.relay_wait_in_flight()
            || matches!(self.life, Life::Closing(_))
    }

    /// Bytes received now would be dropped, not echoed: the connection is
    /// ending, or lingering after its FIN (for `-v`, which says "discarded").
    pub fn discards_input(&self) -> bool {
        self.end_reason().is_some() || self.life == Life::Lingering
    }

    /// Whether the connection is already on its way out (cancelling to
    /// close, closing, closed), so an abort would change nothing.
    pub fn is_ending(&self) -> bool {
        self.end_reason().is_some()
    }

    /// When a byte last moved either way (for the idle timeout).
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// Bytes echoed since the last call, for the server's stats.
    pub fn take_echoed(&mut self) -> u64 {
        std::mem::take(&mut self.echoed)
    }

    /// A receive delivered `data` at `now`. `more` is false when the
    /// receive operation is over.
    pub fn on_recv_data(&mut self, data: &[u8], more: bool, now: Instant) {
        self.recv_completed(more);
        self.last_active = now;
        self.note_receive(data.len(), !more, self.buffered() > 0);
        // Bytes received while lingering (the FIN is out) or ending are dropped.
        if matches!(self.life, Life::Open | Life::HalfClosed(_) | Life::Draining) {
            let room = self.max_buffered.saturating_sub(self.send_len());
            reserve_within(&mut self.queued, data.len(), room);
            self.queued.extend_from_slice(data);
        }
    }

    /// Whether the next receive's bytes should go back from the buffer they
    /// arrive in ([`on_recv_lent`](Conn::on_recv_lent)) instead of being
    /// copied: nothing is queued or in flight before them, the connection is
    /// echoing, and it takes bulk input (one-shot receives). That saves a
    /// copy of every byte, and keeps what is received in the few buffers the
    /// kernel fills, which stay in the cache. Interactive connections copy:
    /// their sends are quiet, and a quiet send's completion, which would
    /// bring the buffer back, may wait for the peer's next message.
    pub fn lends_next_receive(&self) -> bool {
        self.lend
            && self.life == Life::Open
            && matches!(self.send, Send::Idle)
            && self.queued.is_empty()
            && matches!(self.intake, Intake::Bounded { .. } | Intake::OneShot)
    }

    /// A receive delivered `len` bytes at `now`, to be sent from its own
    /// buffer, `received` (only when [`lends_next_receive`] said so).
    ///
    /// [`lends_next_receive`]: Conn::lends_next_receive
    pub fn on_recv_lent(&mut self, received: R, len: usize, more: bool, now: Instant) {
        debug_assert!(self.lends_next_receive() && len > 0);
        self.recv_completed(more);
        self.last_active = now;
        self.note_receive(len, !more, false);
        self.send = Send::Lent { received, len };
    }

    /// A receive ended with an error or end of stream (`Ok(())` = the peer sent FIN).
    pub fn on_recv_end(&mut self, result: io::Result<()>, more: bool) {
        self.recv_completed(more);
        match result {
            Ok(()) => {
                self.life = match self.life {
                    Life::Open => Life::HalfClosed(EndReason::PeerClosed),
                    Life::Draining | Life::Lingering => Life::HalfClosed(EndReason::Shutdown),
                    other => other,
                }
            }
            Err(e) if ringport_completion::is_cancelled(&e) => {}
            // The buffer ring ran dry for a moment: receive again.
            Err(e) if ringport_completion::is_out_of_buffers(&e) => {}
            Err(_) => self.fail(EndReason::Error),
        }
    }

    fn recv_completed(&mut self, more: bool) {
        if !more {
            self.recv = Recv::Idle;
        }
    }

    /// The send in flight finished at `now`: `buf` is its buffer back.
    pub fn on_send(&mut self, result: io::Result<usize>, mut buf: Vec<u8>, now: Instant) {
        let offset = match std::mem::replace(&mut self.send, Send::Idle) {
            Send::InFlight { offset, .. } | Send::Cancelling { offset, .. } => offset,
            other => {
                debug_assert!(false, "a send completed with none in flight");
                self.send = other;
                reclaim::freed(buf.capacity());
                return;
            }
        };
        match result {
            Ok(n) if n > 0 => {
                self.echoed += n as u64;
                self.last_active = now;
                if self.is_ending() {
                    reclaim::freed(buf.capacity());
                } else if offset + n < buf.len() {
                    // A short send: the rest goes next, before anything queued.
                    self.send = Send::Rest {
                        buf,
                        offset: offset + n,
                    };
                } else if buf.capacity() == 0 {
                    // A send from a receive's buffer: nothing to keep.
                } else if buf.capacity() <= KEEP_SPARE_UP_TO {
                    buf.clear();
                    // A short send's rest (a copy) may finish while a spare
                    // is already kept: one is enough.
                    if let Some(old) = self.spare.replace(buf) {
                        reclaim::freed(old.capacity());
                    }
                } else {
                    reclaim::freed(buf.capacity());
                }
            }
            Ok(_) => {
                reclaim::freed(buf.capacity());
                self.fail(EndReason::Error);
            }
            Err(e) => {
                reclaim::freed(buf.capacity());
                if !ringport_completion::is_cancelled(&e) {
                    self.fail(EndReason::Error);
                }
            }
        }
    }

    /// The close finished.
    pub fn on_close(&mut self) {
        self.life = match self.life {
            Life::Closing(why) | Life::Closed(why) => Life::Closed(why),
            other => {
                debug_assert!(false, "closed while {other:?}");
                Life::Closed(EndReason::Error)
            }
        };
    }

    /// The server is stopping: cancel the receive, let the send in flight
    /// and the queued bytes go out, FIN, drop unread input, then close. A
    /// peer that does not read keeps this going until the driver calls
    /// [`abort`](Conn::abort) at its drain deadline.
    pub fn shutdown(&mut self) {
        self.life = match self.life {
            Life::Open => Life::Draining,
            Life::HalfClosed(_) => Life::HalfClosed(EndReason::Shutdown),
            other => other,
        };
    }

    /// End now: cancel everything in flight, then close. Bytes still owed
    /// are dropped.
    pub fn abort(&mut self, why: EndReason) {
        self.fail(why);
    }

    fn fail(&mut self, why: EndReason) {
        if !self.is_ending() {
            self.life = Life::Ending(why);
        }
        reclaim::freed(self.capacity());
        self.queued = Vec::new();
        self.spare = None;
        if let Send::Rest { buf, .. } = &self.send {
            reclaim::freed(buf.capacity());
            self.send = Send::Idle;
        }
    }
}

/// Make room in `queued` for `more` bytes, never growing past `room`
/// (see `reclaim::grow_within`).
fn reserve_within(queued: &mut Vec<u8>, more: usize, room: usize) {
    if let Some(target) = reclaim::grow_within(queued.len(), queued.capacity(), more, room) {
        queued.reserve_exact(target - queued.len());
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop;

#[cfg(test)]
mod relay_sim;
