//! The connection state machine of the completion model, written once for
//! every completion backend (io_uring, IOCP).
//!
//! It does no I/O. It is told what completed and answers with the operations
//! to start ([`Cmd`]), so the same code runs over a ring per thread or a
//! shared IOCP port, and tests can feed it any sequence of partial
//! completions, short sends and errors.
//!
//! The invariants it keeps:
//! * recv → send → recv: received bytes are queued, and at most one send is in
//!   flight, so bytes go back in order.
//! * A short send is resubmitted from where it stopped.
//! * Backpressure: when `max_buffered` bytes are held for the peer, receiving
//!   stops (a multishot receive is cancelled), and resumes once half has been
//!   sent. What is held is what the buffers hold: the queued bytes and the
//!   whole buffer of the send in flight, including the part a short send
//!   already got out (the kernel still has the buffer), and the queue grows
//!   by doubling but never past the room left. So the buffers of one
//!   connection never pass `max_buffered` plus one kept spare of at most
//!   64 KiB (and a multishot overshoot, below). A multishot receive delivers whatever the socket holds before a
//!   cancel can land (1.6 MB for one connection was measured), so it is used
//!   only for interactive traffic: a connection starts on one-shot receives
//!   of at most the room left ("bounded"), switches to multishot once a small
//!   receive arrives with nothing held, and goes back to bounded receives
//!   when it hits the cap. A client that was interactive and then floods can
//!   still overshoot once, by what one batch of completions holds.
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
use std::io;

/// An operation the driver must start for this connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Arm a receive of at most this many bytes (multishot where the
    /// connection uses them, so then only a hint).
    Recv(usize),
    /// Arm a one-shot receive of at most this many bytes, even on a
    /// multishot connection.
    RecvOnce(usize),
    /// Send `buf[offset..]`.
    Send {
        /// The bytes; owned by the operation until it completes.
        buf: Vec<u8>,
        /// Where to start.
        offset: usize,
        /// Nothing waits on this send's completion: a receive is armed,
        /// nothing is queued behind it and the connection is not ending, so
        /// the next event comes from the peer anyway. The driver may then
        /// use [`Port::send_quiet`](ringport_completion::Port::send_quiet).
        quiet: bool,
    },
    /// Cancel the receive in flight.
    CancelRecv,
    /// Cancel the send in flight.
    CancelSend,
    /// Shut the sending side of the socket down now (not through the port):
    /// FIN after the last byte sent. No send is in flight. (Not the read side:
    /// Linux resets a connection that has sent its FIN and shut its read side
    /// as soon as more data arrives.)
    ShutdownWrite,
    /// Close the socket (nothing is in flight any more).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvState {
    /// No receive in flight.
    Idle,
    /// A receive is in flight.
    Armed,
    /// A receive is in flight and a cancel was asked for.
    Cancelling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    Open,
    Closing,
    Closed,
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

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    recv: RecvState,
    /// A multishot receive keeps delivering until cancelled; a one-shot
    /// receive ends with each completion.
    multishot: bool,
    /// Bytes of the send in flight not yet sent (0 when none is).
    sending: usize,
    /// The whole length of the send in flight's buffer, sent part included
    /// (0 when none is): memory that stays held until the send completes.
    send_len: usize,
    send_in_flight: bool,
    cancel_send_asked: bool,
    /// Received bytes waiting for the send in flight to finish.
    queued: Vec<u8>,
    /// A finished send's buffer, kept to avoid an allocation per message.
    spare: Option<Vec<u8>>,
    peer_closed: bool,
    /// Stopped receiving because `max_buffered` bytes are held.
    paused: bool,
    /// Receive one bounded one-shot at a time: from the start and after
    /// backpressure, until traffic looks interactive.
    bounded: bool,
    /// The receive in flight is one-shot and bounded.
    armed_once: bool,
    /// Shutdown began: receive nothing more to echo, send what is owed.
    stopping: bool,
    /// Shutdown, everything owed sent and FIN out: receiving only to drop
    /// unread input until end of stream.
    lingering: bool,
    end: Option<EndReason>,
    close: CloseState,
    max_buffered: usize,
    /// Below this, a backpressured connection receives again.
    resume_at: usize,
    /// Bytes echoed and not yet counted in the server's stats.
    pub echoed: u64,
}

/// A receive smaller than this, with nothing held, marks a connection as
/// interactive (multishot receives from then on). Well below the port's
/// receive buffers (16 KiB), so a bulk sender, which fills them, never is.
const INTERACTIVE: usize = 4096;

/// A new connection's buffers are allocated lazily and freed when idle, so
/// an idle connection costs only this struct.
const KEEP_SPARE_UP_TO: usize = 64 * 1024;

impl Conn {
    /// A connection that receives with multishot operations or not.
    pub fn new(multishot: bool, max_buffered: usize) -> Self {
        let max_buffered = max_buffered.max(1);
        Conn {
            recv: RecvState::Idle,
            multishot,
            sending: 0,
            send_len: 0,
            send_in_flight: false,
            cancel_send_asked: false,
            queued: Vec::new(),
            spare: None,
            peer_closed: false,
            paused: false,
            bounded: multishot,
            armed_once: false,
            stopping: false,
            lingering: false,
            end: None,
            close: CloseState::Open,
            max_buffered,
            resume_at: max_buffered / 2,
            echoed: 0,
        }
    }

    /// Start serving: arm the first receive.
    pub fn start(&mut self, out: &mut Vec<Cmd>) {
        self.pump(out);
    }

    /// Bytes owed to the peer: queued plus the unsent part of the send in flight.
    pub fn buffered(&self) -> usize {
        self.queued.len() + self.sending
    }

    /// Bytes the buffers hold for the peer: queued plus the whole buffer of
    /// the send in flight. This is what `max_buffered` caps.
    pub fn held(&self) -> usize {
        self.queued.len() + self.send_len
    }

    /// Memory of the buffers this connection keeps (the send in flight's
    /// belongs to its operation until it completes, so it is not counted).
    pub fn capacity(&self) -> usize {
        self.queued.capacity() + self.spare.as_ref().map_or(0, Vec::capacity)
    }

    /// Why the connection ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// True once the socket is closed and nothing is in flight: the driver
    /// may free the connection.
    pub fn is_finished(&self) -> bool {
        self.close == CloseState::Closed
    }

    /// True while any operation of this connection is in flight.
    pub fn has_ops_in_flight(&self) -> bool {
        self.recv != RecvState::Idle || self.send_in_flight || self.close == CloseState::Closing
    }

    /// Bytes received now would be dropped, not echoed: the connection is
    /// ending, or lingering after its FIN (for `-v`, which says "discarded").
    pub fn discards_input(&self) -> bool {
        self.end.is_some() || self.lingering
    }

    /// A receive delivered `data`. `more` is false when the receive operation is over.
    pub fn on_recv_data(&mut self, data: &[u8], more: bool, out: &mut Vec<Cmd>) {
        if !more {
            self.recv = RecvState::Idle;
        }
        // Interactive: a small receive (less than any ring buffer) while
        // nothing is held. Bulk senders fill whole buffers and stay bounded.
        if self.bounded && !self.paused && self.buffered() == 0 && data.len() < INTERACTIVE {
            self.bounded = false;
        }
        // Bytes received while lingering are dropped: the FIN is out.
        if self.end.is_none() && !self.lingering {
            let room = self.max_buffered.saturating_sub(self.send_len);
            reserve_within(&mut self.queued, data.len(), room);
            self.queued.extend_from_slice(data);
        }
        self.pump(out);
    }

    /// A receive ended with an error or end of stream (`Ok(())` = the peer sent FIN).
    pub fn on_recv_end(&mut self, result: io::Result<()>, more: bool, out: &mut Vec<Cmd>) {
        if !more {
            self.recv = RecvState::Idle;
        }
        match result {
            Ok(()) => self.peer_closed = true,
            Err(e) if ringport_completion::is_cancelled(&e) => {}
            // The buffer ring ran dry for a moment: receive again.
            Err(e) if ringport_completion::is_out_of_buffers(&e) => {}
            Err(_) => self.fail(EndReason::Error),
        }
        self.pump(out);
    }

    /// The send in flight finished: `buf` is its buffer back, `offset` where it started.
    pub fn on_send(
        &mut self,
        result: io::Result<usize>,
        mut buf: Vec<u8>,
        offset: usize,
        out: &mut Vec<Cmd>,
    ) {
        self.send_in_flight = false;
        self.sending = 0;
        self.send_len = 0;
        self.cancel_send_asked = false;
        match result {
            Ok(n) if self.end.is_none() && n > 0 && offset + n < buf.len() => {
                // A short send: the rest goes next, before anything queued.
                self.echoed += n as u64;
                self.start_send(buf, offset + n, out);
            }
            Ok(n) if n > 0 || offset >= buf.len() => {
                self.echoed += n as u64;
                buf.clear();
                if buf.capacity() <= KEEP_SPARE_UP_TO {
                    self.spare = Some(buf);
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
        self.pump(out);
    }

    /// The close finished.
    pub fn on_close(&mut self) {
        self.close = CloseState::Closed;
    }

    /// The server is stopping: cancel the receive, let the send in flight
    /// and the queued bytes go out, FIN, drop unread input, then close. A
    /// peer that does not read keeps this going until the driver calls
    /// [`abort`](Conn::abort) at its drain deadline.
    pub fn shutdown(&mut self, out: &mut Vec<Cmd>) {
        self.stopping = true;
        self.pump(out);
    }

    /// End now: cancel everything in flight, then close. Bytes still owed
    /// are dropped.
    pub fn abort(&mut self, why: EndReason, out: &mut Vec<Cmd>) {
        self.fail(why);
        self.pump(out);
    }

    /// Whether the connection is already on its way out (closing, or
    /// cancelling to close), so an abort would change nothing.
    pub fn is_ending(&self) -> bool {
        self.end.is_some() || self.close != CloseState::Open
    }

    fn fail(&mut self, why: EndReason) {
        if self.end.is_none() {
            self.end = Some(why);
        }
        reclaim::freed(self.capacity());
        self.queued = Vec::new();
        self.spare = None;
    }

    fn start_send(&mut self, buf: Vec<u8>, offset: usize, out: &mut Vec<Cmd>) {
        self.sending = buf.len() - offset;
        self.send_len = buf.len();
        self.send_in_flight = true;
        out.push(Cmd::Send {
            buf,
            offset,
            quiet: false,
        });
    }

    /// Decide what to start next. Called after every event.
    fn pump(&mut self, out: &mut Vec<Cmd>) {
        if self.close != CloseState::Open {
            return;
        }
        if self.end.is_some() {
            if self.recv == RecvState::Armed {
                self.recv = RecvState::Cancelling;
                out.push(Cmd::CancelRecv);
            }
            if self.send_in_flight && !self.cancel_send_asked {
                self.cancel_send_asked = true;
                out.push(Cmd::CancelSend);
            }
            if !self.has_ops_in_flight() {
                self.close = CloseState::Closing;
                out.push(Cmd::Close);
            }
            return;
        }
        // Once the peer's FIN has been seen, a stopping connection finishes
        // like any half-closed one, below.
        if self.stopping && !self.peer_closed {
            self.pump_stopping(out);
            return;
        }
        if !self.send_in_flight && !self.queued.is_empty() {
            let next = self.spare.take().unwrap_or_default();
            let buf = std::mem::replace(&mut self.queued, next);
            self.start_send(buf, 0, out);
        }
        // Backpressure with hysteresis: stop at the cap, resume once half of
        // it has drained, so a slow reader does not cost one tiny receive per
        // send completion.
        let held = self.held();
        if held >= self.max_buffered {
            self.paused = true;
            self.bounded = self.multishot;
        } else if self.paused && held <= self.resume_at {
            self.paused = false;
        }
        match self.recv {
            RecvState::Idle if !self.peer_closed && !self.paused => {
                self.recv = RecvState::Armed;
                let room = self.max_buffered - held;
                self.armed_once = self.bounded;
                out.push(if self.bounded {
                    Cmd::RecvOnce(room)
                } else {
                    Cmd::Recv(room)
                });
            }
            RecvState::Armed if self.multishot && self.paused && !self.armed_once => {
                self.recv = RecvState::Cancelling;
                out.push(Cmd::CancelRecv);
            }
            _ => {}
        }
        if self.peer_closed
            && !self.send_in_flight
            && self.queued.is_empty()
            && self.recv == RecvState::Idle
        {
            // Everything owed has been sent: close, and the peer sees EOF
            // right after its last byte.
            self.end = Some(if self.stopping {
                EndReason::Shutdown
            } else {
                EndReason::PeerClosed
            });
            self.close = CloseState::Closing;
            out.push(Cmd::Close);
        }
        if self.queued.is_empty()
            && !self.send_in_flight
            && self.queued.capacity() > KEEP_SPARE_UP_TO
        {
            reclaim::freed(self.queued.capacity());
            self.queued = Vec::new();
        }
        // The send just started can be quiet when its completion is needed
        // for nothing: the peer's next bytes (or FIN) complete the armed
        // receive, and that event brings the send's completion along.
        let quiet_ok = self.recv == RecvState::Armed
            && self.queued.is_empty()
            && !self.paused
            && !self.peer_closed
            && self.end.is_none()
            && self.close == CloseState::Open;
        if quiet_ok {
            for cmd in out.iter_mut().rev() {
                if let Cmd::Send { quiet, .. } = cmd {
                    *quiet = true;
                    break;
                }
            }
        }
    }

    /// `pump` for a connection the server is draining.
    fn pump_stopping(&mut self, out: &mut Vec<Cmd>) {
        if !self.lingering {
            if self.recv == RecvState::Armed {
                self.recv = RecvState::Cancelling;
                out.push(Cmd::CancelRecv);
            }
            // Bytes the kernel delivered before the cancel landed were read
            // by the server, so they are owed too and go out in order.
            if !self.send_in_flight && !self.queued.is_empty() {
                let next = self.spare.take().unwrap_or_default();
                let buf = std::mem::replace(&mut self.queued, next);
                self.start_send(buf, 0, out);
            }
            if !self.send_in_flight && self.queued.is_empty() && self.recv == RecvState::Idle {
                self.lingering = true;
                reclaim::freed(self.spare.as_ref().map_or(0, Vec::capacity));
                self.spare = None;
                out.push(Cmd::ShutdownWrite);
            }
        }
        // Receive (and drop) until end of stream; a receive that ended
        // without it (the buffer ring ran dry) is armed again.
        if self.lingering && self.recv == RecvState::Idle {
            self.recv = RecvState::Armed;
            self.armed_once = false;
            out.push(Cmd::Recv(self.max_buffered));
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
mod tests {
    use super::*;

    fn sends(out: &[Cmd]) -> Vec<(Vec<u8>, usize)> {
        out.iter()
            .filter_map(|c| match c {
                Cmd::Send { buf, offset, .. } => Some((buf.clone(), *offset)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn recv_then_send_then_recv() {
        let mut c = Conn::new(false, 1024);
        let mut out = vec![];
        c.start(&mut out);
        assert_eq!(out, vec![Cmd::Recv(1024)]);
        out.clear();
        c.on_recv_data(b"hello", false, &mut out);
        assert_eq!(sends(&out), vec![(b"hello".to_vec(), 0)]);
        assert!(out.iter().any(|c| matches!(c, Cmd::Recv(_))), "{out:?}");
    }

    fn quiet(out: &[Cmd]) -> Option<bool> {
        out.iter().find_map(|c| match c {
            Cmd::Send { quiet, .. } => Some(*quiet),
            _ => None,
        })
    }

    #[test]
    fn an_echo_is_quiet_only_while_the_peer_next_event_is_awaited_anyway() {
        // Multishot receive armed, nothing queued: the peer's next bytes or
        // FIN will complete a receive, so the send's completion can wait.
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"hi", true, &mut out);
        assert_eq!(quiet(&out), Some(true), "{out:?}");
        out.clear();
        // Bytes queued behind the send in flight: the short rest of a send
        // must not be quiet, or those bytes could wait for the peer.
        c.on_recv_data(b"more", true, &mut out);
        c.on_send(Ok(1), b"hi".to_vec(), 0, &mut out);
        assert_eq!(quiet(&out), Some(false), "{out:?}");
        out.clear();
        // A one-shot receive armed again counts too; a stopping connection
        // sends nothing quietly.
        let mut c2 = Conn::new(false, 1024);
        c2.start(&mut out);
        c2.on_recv_data(b"bye", false, &mut out);
        assert_eq!(
            quiet(&out),
            Some(true),
            "a one-shot receive is re-armed: {out:?}"
        );
        out.clear();
        c2.shutdown(&mut out);
        out.clear();
        c2.on_send(Ok(3), b"bye".to_vec(), 0, &mut out);
        // Stopping: nothing more is sent quietly.
        c2.on_recv_data(b"late", false, &mut out);
        assert_ne!(quiet(&out), Some(true), "{out:?}");
    }

    #[test]
    fn a_send_at_the_cap_is_never_quiet() {
        // At the cap the receive is cancelled: only the send's completion
        // can resume the connection.
        let mut c = Conn::new(true, 8);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"12345678", true, &mut out);
        assert_eq!(quiet(&out), Some(false), "{out:?}");
    }

    #[test]
    fn short_send_resumes_from_the_right_offset_before_queued_bytes() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"abcdef", true, &mut out);
        out.clear();
        c.on_recv_data(b"XYZ", true, &mut out);
        assert!(sends(&out).is_empty(), "one send at a time");
        c.on_send(Ok(2), b"abcdef".to_vec(), 0, &mut out);
        assert_eq!(sends(&out), vec![(b"abcdef".to_vec(), 2)]);
        out.clear();
        c.on_send(Ok(4), b"abcdef".to_vec(), 2, &mut out);
        assert_eq!(sends(&out), vec![(b"XYZ".to_vec(), 0)]);
        assert_eq!(c.echoed, 6);
    }

    #[test]
    fn a_multishot_connection_starts_bounded_and_goes_multishot_on_small_receives() {
        let mut c = Conn::new(true, 100_000);
        let mut out = vec![];
        c.start(&mut out);
        assert_eq!(out, vec![Cmd::RecvOnce(100_000)]);
        out.clear();
        // A bulk sender fills whole buffers: still bounded.
        c.on_recv_data(&[0; 16 * 1024], false, &mut out);
        assert!(out.contains(&Cmd::RecvOnce(100_000 - 16 * 1024)), "{out:?}");
        c.on_send(Ok(16 * 1024), vec![0; 16 * 1024], 0, &mut out);
        out.clear();
        // A small message with nothing held: interactive.
        c.on_recv_data(b"ping", false, &mut out);
        assert!(out.contains(&Cmd::Recv(100_000 - 4)), "{out:?}");
    }

    #[test]
    fn multishot_receive_is_cancelled_at_the_cap_and_rearmed_after_draining() {
        let mut c = Conn::new(true, 100);
        let mut out = vec![];
        c.start(&mut out);
        // Interactive first, so the receive is multishot.
        c.on_recv_data(b"hi", false, &mut out);
        c.on_send(Ok(2), b"hi".to_vec(), 0, &mut out);
        out.clear();
        c.on_recv_data(&[1; 60], true, &mut out);
        out.clear();
        c.on_recv_data(&[2; 60], true, &mut out);
        assert!(out.contains(&Cmd::CancelRecv), "{out:?}");
        out.clear();
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        assert!(
            !out.iter().any(|c| matches!(c, Cmd::Recv(_))),
            "still over the cap: {out:?}"
        );
        c.on_send(Ok(60), vec![1; 60], 0, &mut out);
        // The queued 60 bytes now go out; 60 held ≥ resume point 50: no receive yet.
        assert!(!out.iter().any(|c| matches!(c, Cmd::Recv(_))), "{out:?}");
        out.clear();
        c.on_send(Ok(60), vec![2; 60], 0, &mut out);
        // Drained: receive again, one bounded receive at a time until the
        // traffic looks interactive again.
        assert_eq!(out, vec![Cmd::RecvOnce(100)], "drained: receive again");
    }

    #[test]
    fn after_backpressure_receives_are_bounded_one_shots_until_all_is_sent() {
        let mut c = Conn::new(true, 100);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(&[1; 60], true, &mut out);
        c.on_recv_data(&[2; 40], true, &mut out);
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        out.clear();
        c.on_send(Ok(60), vec![1; 60], 0, &mut out);
        // The queued 40 go out; 40 held, under the resume point: one bounded
        // receive of the room left, not multishot.
        assert!(out.contains(&Cmd::RecvOnce(60)), "{out:?}");
        out.clear();
        c.on_recv_data(&[3; 60], false, &mut out);
        assert!(
            !out.iter()
                .any(|c| matches!(c, Cmd::Recv(_) | Cmd::RecvOnce(_))),
            "full again: {out:?}"
        );
        c.on_send(Ok(40), vec![2; 40], 0, &mut out);
        // 60 held, over the resume point.
        assert!(
            !out.iter()
                .any(|c| matches!(c, Cmd::Recv(_) | Cmd::RecvOnce(_))),
            "{out:?}"
        );
        out.clear();
        c.on_send(Ok(60), vec![3; 60], 0, &mut out);
        // Everything held has gone out: still bounded, until a small
        // receive arrives with nothing held.
        assert_eq!(out, vec![Cmd::RecvOnce(100)]);
        out.clear();
        c.on_recv_data(b"x", false, &mut out);
        assert!(out.contains(&Cmd::Recv(99)), "{out:?}");
    }

    #[test]
    fn a_short_send_holds_its_whole_buffer_until_it_completes() {
        let mut c = Conn::new(false, 100);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(&[1; 100], false, &mut out);
        out.clear();
        // 90 of 100 out: only 10 are owed, but the kernel still has the
        // whole buffer, so receiving more now would hold up to twice the cap.
        c.on_send(Ok(90), vec![1; 100], 0, &mut out);
        assert_eq!(sends(&out), vec![(vec![1; 100], 90)]);
        assert!(!out.iter().any(|c| matches!(c, Cmd::Recv(_))), "{out:?}");
        assert_eq!((c.buffered(), c.held()), (10, 100));
        out.clear();
        c.on_send(Ok(10), vec![1; 100], 90, &mut out);
        assert_eq!(out, vec![Cmd::Recv(100)]);
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn the_queue_grows_only_into_the_room_left() {
        let cap = 256 * 1024;
        let mut c = Conn::new(false, cap);
        let mut out = vec![];
        c.start(&mut out);
        // A send of 16 KiB in flight, then receives of odd sizes queue up
        // behind it: doubling alone would end at 2 × 159,000 bytes.
        c.on_recv_data(&[1; 16 * 1024], false, &mut out);
        let mut queued = 0;
        while c.held() < cap {
            let n = 10_600.min(cap - c.held());
            c.on_recv_data(&vec![2; n], false, &mut out);
            queued += n;
            assert!(c.capacity() <= cap - 16 * 1024, "{} bytes", c.capacity());
        }
        assert_eq!(c.buffered(), 16 * 1024 + queued);
    }

    #[test]
    fn one_shot_receive_asks_only_for_the_room_left() {
        let mut c = Conn::new(false, 100);
        let mut out = vec![];
        c.start(&mut out);
        out.clear();
        c.on_recv_data(&[0; 30], false, &mut out);
        assert!(out.contains(&Cmd::Recv(70)), "{out:?}");
    }

    #[test]
    fn half_close_sends_everything_owed_then_closes() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"last words", true, &mut out);
        out.clear();
        c.on_recv_end(Ok(()), false, &mut out);
        assert!(!out.contains(&Cmd::Close), "a send is still in flight");
        c.on_send(Ok(10), b"last words".to_vec(), 0, &mut out);
        assert_eq!(out.last(), Some(&Cmd::Close));
        assert_eq!(c.end_reason(), Some(EndReason::PeerClosed));
        assert!(!c.is_finished());
        c.on_close();
        assert!(c.is_finished());
    }

    #[test]
    fn reset_cancels_in_flight_ops_and_closes_only_after_reaping_them() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"data", true, &mut out);
        out.clear();
        // The multishot receive fails with ECONNRESET while the send is in flight.
        c.on_recv_end(
            Err(io::Error::from(io::ErrorKind::ConnectionReset)),
            false,
            &mut out,
        );
        assert_eq!(out, vec![Cmd::CancelSend]);
        out.clear();
        c.on_send(
            Err(ringport_completion::cancelled_error()),
            b"data".to_vec(),
            0,
            &mut out,
        );
        assert_eq!(out, vec![Cmd::Close]);
    }

    #[test]
    fn abort_cancels_both_and_closes_once() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"x", true, &mut out);
        out.clear();
        c.abort(EndReason::Shutdown, &mut out);
        assert_eq!(out, vec![Cmd::CancelRecv, Cmd::CancelSend]);
        out.clear();
        c.abort(EndReason::Shutdown, &mut out);
        assert!(out.is_empty(), "asked once");
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        assert!(out.is_empty());
        c.on_send(Ok(1), b"x".to_vec(), 0, &mut out);
        assert_eq!(out, vec![Cmd::Close]);
        assert_eq!(c.end_reason(), Some(EndReason::Shutdown));
    }

    #[test]
    fn shutdown_drains_the_send_and_the_queue_then_fin_then_drops_input_until_eof() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"first", true, &mut out);
        c.on_recv_data(b"second", true, &mut out);
        out.clear();
        c.shutdown(&mut out);
        assert_eq!(out, vec![Cmd::CancelRecv], "only the receive is cancelled");
        out.clear();
        c.shutdown(&mut out);
        assert!(out.is_empty(), "asked once");
        // Delivered before the cancel landed: owed too.
        c.on_recv_data(b"third", true, &mut out);
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        assert!(out.is_empty(), "{out:?}");
        c.on_send(Ok(5), b"first".to_vec(), 0, &mut out);
        assert_eq!(sends(&out), vec![(b"secondthird".to_vec(), 0)]);
        out.clear();
        // A short send still resumes from where it stopped.
        c.on_send(Ok(4), b"secondthird".to_vec(), 0, &mut out);
        assert_eq!(sends(&out), vec![(b"secondthird".to_vec(), 4)]);
        out.clear();
        c.on_send(Ok(7), b"secondthird".to_vec(), 4, &mut out);
        assert_eq!(out, vec![Cmd::ShutdownWrite, Cmd::Recv(1024)]);
        out.clear();
        // Unread input is dropped, not echoed; a receive that ends without
        // EOF is armed again.
        c.on_recv_data(b"ignored", false, &mut out);
        assert_eq!(out, vec![Cmd::Recv(1024)]);
        out.clear();
        c.on_recv_end(Ok(()), false, &mut out);
        assert_eq!(out, vec![Cmd::Close]);
        assert_eq!(c.end_reason(), Some(EndReason::Shutdown));
        assert_eq!(c.echoed, 16);
        c.on_close();
        assert!(c.is_finished());
    }

    #[test]
    fn shutdown_of_an_idle_connection_fins_at_once() {
        let mut c = Conn::new(false, 1024);
        let mut out = vec![];
        c.start(&mut out);
        out.clear();
        c.shutdown(&mut out);
        assert_eq!(out, vec![Cmd::CancelRecv]);
        out.clear();
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        assert_eq!(out, vec![Cmd::ShutdownWrite, Cmd::Recv(1024)]);
    }

    #[test]
    fn abort_after_shutdown_cancels_the_send_a_peer_never_reads() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"stuck", true, &mut out);
        c.shutdown(&mut out);
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        out.clear();
        // The drain deadline passes with the send still in flight.
        c.abort(EndReason::Shutdown, &mut out);
        assert_eq!(out, vec![Cmd::CancelSend]);
        out.clear();
        c.on_send(
            Err(ringport_completion::cancelled_error()),
            b"stuck".to_vec(),
            0,
            &mut out,
        );
        assert_eq!(out, vec![Cmd::Close]);
    }

    #[test]
    fn abort_while_lingering_cancels_the_receive_then_closes() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.shutdown(&mut out);
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        out.clear();
        c.abort(EndReason::Shutdown, &mut out);
        assert_eq!(out, vec![Cmd::CancelRecv]);
        out.clear();
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        assert_eq!(out, vec![Cmd::Close]);
    }

    #[test]
    fn bytes_that_arrive_while_lingering_are_discarded_and_said_so() {
        let mut c = Conn::new(true, 1024);
        let mut out = vec![];
        c.start(&mut out);
        assert!(!c.discards_input());
        c.shutdown(&mut out);
        c.on_recv_end(Err(ringport_completion::cancelled_error()), false, &mut out);
        assert!(out.contains(&Cmd::ShutdownWrite), "{out:?}");
        // The FIN is out: what comes now is dropped, and `-v` says so.
        assert!(c.discards_input());
        let held = c.buffered();
        c.on_recv_data(b"late", true, &mut out);
        assert_eq!(c.buffered(), held, "nothing is queued to echo");
    }

    #[test]
    fn a_zero_byte_send_is_an_error_not_a_loop() {
        let mut c = Conn::new(false, 1024);
        let mut out = vec![];
        c.start(&mut out);
        c.on_recv_data(b"abc", false, &mut out);
        out.clear();
        c.on_send(Ok(0), b"abc".to_vec(), 0, &mut out);
        assert_eq!(c.end_reason(), Some(EndReason::Error));
    }
}

#[cfg(test)]
mod prop {
    //! The state machine under arbitrary interleavings of partial receives,
    //! short sends, backpressure and end of stream.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Ev {
        /// The peer's next `len` bytes arrive (if a receive is armed).
        Deliver(usize),
        /// The send in flight completes with this fraction of what it asked for (at least 1 byte).
        Send(f64),
        /// The multishot receive ends by itself (ring ran dry); must be re-armed.
        RecvEnds,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => (1usize..5000).prop_map(Ev::Deliver),
            4 => (0.0f64..1.0).prop_map(Ev::Send),
            1 => Just(Ev::RecvEnds),
        ]
    }

    struct Sim {
        conn: Conn,
        recv_armed: bool,
        /// The armed receive is one-shot, with this limit.
        once: Option<usize>,
        send: Option<(Vec<u8>, usize)>,
        /// The send in flight is quiet.
        quiet: bool,
        /// A quiet send that went out in full: as on io_uring, its completion
        /// is not seen until another one comes (buffer, offset, count).
        parked: Option<(Vec<u8>, usize, usize)>,
        closed: bool,
        /// `ShutdownWrite` was asked for: the FIN is out.
        fin_sent: bool,
        input: Vec<u8>,
        fed: usize,
        output: Vec<u8>,
        max: usize,
        peak: usize,
        /// The most memory the connection's buffers took at once, the send
        /// in flight's included.
        peak_memory: usize,
    }

    impl Sim {
        fn apply(&mut self, out: Vec<Cmd>) {
            for cmd in out {
                match cmd {
                    Cmd::Recv(limit) => {
                        assert!(!self.recv_armed, "two receives armed");
                        assert!(limit > 0);
                        self.recv_armed = true;
                        self.once = None;
                    }
                    Cmd::RecvOnce(limit) => {
                        assert!(!self.recv_armed, "two receives armed");
                        assert!(limit > 0);
                        self.recv_armed = true;
                        self.once = Some(limit);
                    }
                    Cmd::Send { buf, offset, quiet } => {
                        assert!(
                            self.send.is_none() && self.parked.is_none(),
                            "two sends in flight"
                        );
                        assert!(offset < buf.len());
                        self.send = Some((buf, offset));
                        self.quiet = quiet;
                    }
                    Cmd::CancelRecv => {
                        // The cancel lands: the receive ends with ECANCELED.
                        assert!(self.recv_armed);
                        self.recv_armed = false;
                        let mut o = vec![];
                        self.conn.on_recv_end(
                            Err(ringport_completion::cancelled_error()),
                            false,
                            &mut o,
                        );
                        self.apply(o);
                    }
                    Cmd::CancelSend => panic!("no error happened, nothing to cancel"),
                    Cmd::ShutdownWrite => {
                        assert!(self.send.is_none(), "FIN with a send in flight");
                        assert!(!self.fin_sent, "FIN twice");
                        self.fin_sent = true;
                    }
                    Cmd::Close => {
                        assert!(
                            !self.recv_armed && self.send.is_none(),
                            "close with ops in flight"
                        );
                        assert!(!self.closed, "closed twice");
                        self.closed = true;
                    }
                }
            }
            self.peak = self.peak.max(self.conn.held());
            let in_flight = self
                .send
                .as_ref()
                .map(|(b, _)| b.capacity())
                .or(self.parked.as_ref().map(|(b, _, _)| b.capacity()))
                .unwrap_or(0);
            self.peak_memory = self.peak_memory.max(self.conn.capacity() + in_flight);
        }

        /// Another completion arrived: a parked quiet send's comes with it, first.
        fn unpark(&mut self) {
            if let Some((buf, offset, n)) = self.parked.take() {
                let mut out = vec![];
                self.conn.on_send(Ok(n), buf, offset, &mut out);
                self.apply(out);
            }
        }

        fn step(&mut self, ev: &Ev) {
            let mut out = vec![];
            if !matches!(ev, Ev::Send(_)) {
                // A quiet send is finished inside the submit that starts it,
                // before anything else can happen: in full (parked), unless
                // an `Ev::Send` made it short first.
                if self.quiet && self.send.is_some() {
                    self.step(&Ev::Send(1.0));
                }
                // Whatever happens next brings the parked completion along.
                self.unpark();
            }
            match *ev {
                Ev::Deliver(len) if self.recv_armed && self.fed < self.input.len() => {
                    let len = len
                        .min(self.input.len() - self.fed)
                        .min(self.once.unwrap_or(usize::MAX));
                    let data = self.input[self.fed..self.fed + len].to_vec();
                    self.fed += len;
                    // A one-shot receive ends with its completion.
                    let more = self.once.is_none();
                    self.recv_armed = more;
                    self.conn.on_recv_data(&data, more, &mut out);
                }
                Ev::Send(frac) if self.send.is_some() => {
                    let (buf, offset) = self.send.take().unwrap();
                    let left = buf.len() - offset;
                    let n = ((left as f64 * frac) as usize).clamp(1, left);
                    self.output.extend_from_slice(&buf[offset..offset + n]);
                    if self.quiet && n == left {
                        // Nothing more happens until the peer acts, which it
                        // can only do through the receive: one must be armed.
                        assert!(self.recv_armed, "a quiet send with no receive armed");
                        self.parked = Some((buf, offset, n));
                        return;
                    }
                    self.conn.on_send(Ok(n), buf, offset, &mut out);
                }
                Ev::RecvEnds if self.recv_armed => {
                    self.recv_armed = false;
                    // On io_uring a multishot receive ends by itself when the
                    // buffer ring runs dry (ENOBUFS); elsewhere use a cancel.
                    let err = if cfg!(target_os = "linux") {
                        io::Error::from_raw_os_error(105)
                    } else {
                        ringport_completion::cancelled_error()
                    };
                    self.conn.on_recv_end(Err(err), false, &mut out);
                }
                _ => {}
            }
            self.apply(out);
        }
    }

    proptest! {
        #[test]
        fn bytes_come_back_in_order_within_the_cap_and_close_cleanly(
            input in proptest::collection::vec(any::<u8>(), 0..40_000),
            max in 1024usize..20_000,
            events in proptest::collection::vec(ev(), 0..400),
        ) {
            let mut sim = Sim {
                conn: Conn::new(true, max), recv_armed: false, once: None, send: None, quiet: false, parked: None, closed: false, fin_sent: false,
                input, fed: 0, output: vec![], max, peak: 0, peak_memory: 0,
            };
            let mut out = vec![];
            sim.conn.start(&mut out);
            sim.apply(out);
            for e in &events {
                sim.step(e);
            }
            // Let it finish: deliver the rest, complete every send, then FIN.
            let mut guard = 0;
            while sim.fed < sim.input.len() || sim.send.is_some() {
                guard += 1;
                prop_assert!(guard < 1_000_000, "no progress");
                if sim.send.is_some() {
                    sim.step(&Ev::Send(1.0));
                } else {
                    prop_assert!(sim.recv_armed, "stuck: nothing in flight, input left");
                    sim.step(&Ev::Deliver(4096));
                }
            }
            // The peer's FIN completes the receive (and brings a parked send's
            // completion with it).
            if sim.quiet && sim.send.is_some() {
                sim.step(&Ev::Send(1.0));
            }
            prop_assert!(sim.recv_armed);
            sim.unpark();
            sim.recv_armed = false;
            let mut out = vec![];
            sim.conn.on_recv_end(Ok(()), false, &mut out);
            sim.apply(out);
            while sim.send.is_some() {
                sim.step(&Ev::Send(1.0));
            }
            prop_assert!(sim.closed, "closed after FIN once everything was sent");
            prop_assert_eq!(&sim.output, &sim.input);
            // Deliveries are capped at 4999 bytes and land before the cancel does.
            prop_assert!(sim.peak < sim.max + 5000, "peak {} over cap {}", sim.peak, sim.max);
            // And so is the memory behind them: no doubling past the cap,
            // at most one spare on top (a former send buffer, so no larger
            // than the cap and the overshoot).
            let spare = sim.max.min(KEEP_SPARE_UP_TO) + 5000;
            prop_assert!(
                sim.peak_memory < sim.max + 5000 + spare,
                "buffers of {} bytes for a cap of {}", sim.peak_memory, sim.max
            );
            sim.conn.on_close();
            prop_assert!(sim.conn.is_finished());
        }
    }

    proptest! {
        /// Shutdown at any point: every byte the connection was given comes
        /// back in order, then the FIN (never with a send in flight); what
        /// arrives after it is dropped; the close comes only after the peer's
        /// EOF, with nothing in flight.
        #[test]
        fn shutdown_at_any_point_sends_what_was_received_then_fin_then_closes(
            input in proptest::collection::vec(any::<u8>(), 0..40_000),
            max in 1024usize..20_000,
            events in proptest::collection::vec(ev(), 0..300),
            at in 0usize..300,
        ) {
            let mut sim = Sim {
                conn: Conn::new(true, max), recv_armed: false, once: None, send: None, quiet: false, parked: None, closed: false, fin_sent: false,
                input, fed: 0, output: vec![], max, peak: 0, peak_memory: 0,
            };
            let mut out = vec![];
            sim.conn.start(&mut out);
            sim.apply(out);
            for e in &events[..at.min(events.len())] {
                sim.step(e);
            }
            // The shutdown's wake-up brings a parked send's completion too.
            if sim.quiet && sim.send.is_some() {
                sim.step(&Ev::Send(1.0));
            }
            sim.unpark();
            let mut out = vec![];
            sim.conn.shutdown(&mut out);
            sim.apply(out);
            for e in &events[at.min(events.len())..] {
                if sim.fin_sent {
                    break;
                }
                sim.step(e);
            }
            let mut guard = 0;
            while sim.send.is_some() {
                guard += 1;
                prop_assert!(guard < 1_000_000, "no progress");
                sim.step(&Ev::Send(1.0));
            }
            prop_assert!(sim.fin_sent, "FIN once nothing is owed");
            let received = sim.fed;
            prop_assert_eq!(&sim.output[..], &sim.input[..received]);
            // Whatever comes after the FIN is dropped.
            prop_assert!(sim.recv_armed, "receiving to drop input until EOF");
            sim.step(&Ev::Deliver(3000));
            prop_assert!(sim.send.is_none());
            prop_assert!(sim.recv_armed);
            prop_assert!(!sim.closed, "not closed before the peer's EOF");
            sim.recv_armed = false;
            let mut out = vec![];
            sim.conn.on_recv_end(Ok(()), false, &mut out);
            sim.apply(out);
            prop_assert!(sim.closed);
            prop_assert_eq!(sim.output.len(), received);
            prop_assert_eq!(sim.conn.end_reason(), Some(EndReason::Shutdown));
        }
    }
}
