//! What a completion connection starts next: [`Conn::pump`], which the
//! driver calls after every event, looks at the connection's states and
//! submits the operations they call for through [`Io`]: the next receive
//! and send while echoing (with backpressure, quiet sends and the switch
//! to the kernel relay), the drain and FIN of a shutdown, and the cancels
//! and close of a connection that is ending. Kept apart from the events
//! (`conn.rs`), which only record what completed, so each reads alone.

use super::relay::Relay;
use super::{Conn, EndReason, Intake, Io, Life, Recv, Send, KEEP_SPARE_UP_TO};
use crate::reclaim;

impl<Op: Copy, R> Conn<Op, R> {
    /// Start what the connection needs next. The driver calls it after
    /// every event (and once to start a new connection).
    ///
    /// One pass may move the connection from one way of moving bytes to
    /// the other (the port's buffers, the kernel relay) or start it ending;
    /// the new state then needs its own pass, so it loops until a pass
    /// leaves the state as it found it in that respect.
    pub fn pump(&mut self, io: &mut impl Io<Op = Op, Received = R>) {
        loop {
            let again = match self.life {
                Life::Closing(_) | Life::Closed(_) => false,
                Life::Ending(why) => {
                    self.pump_ending(why, io);
                    false
                }
                Life::Open | Life::HalfClosed(_) | Life::Draining if self.is_relay_on() => {
                    self.pump_relay(io);
                    // Relaying ended (the pipe is empty: on through the
                    // port), or a move failed (cancel, close).
                    !self.is_relay_on() || self.is_ending()
                }
                Life::Draining => {
                    self.pump_draining(io);
                    false
                }
                Life::Lingering => {
                    self.arm_to_drop(io);
                    false
                }
                Life::Open | Life::HalfClosed(_) => self.pump_echoing(io),
            };
            if !again {
                return;
            }
        }
    }

    /// Echoing (or half-closed, sending what is owed). True when the
    /// connection started relaying, or could not and wants its receive
    /// armed through the port again: [`pump`](Conn::pump) goes round again.
    fn pump_echoing(&mut self, io: &mut impl Io<Op = Op, Received = R>) -> bool {
        // Backpressure with hysteresis: stop at the cap, resume once half of
        // it has drained, so a slow reader does not cost one tiny receive per
        // send completion. Starting the next send moves bytes from the queue
        // into its buffer, so it changes nothing here.
        let held = self.held();
        if held >= self.max_buffered {
            self.intake = Intake::Paused;
        } else if self.intake == Intake::Paused && held <= self.resume_at {
            self.intake = Self::fresh_intake(self.multishot);
        }
        let half_closed = matches!(self.life, Life::HalfClosed(_));
        if half_closed && matches!(self.relay, Relay::Wanted) {
            self.relay = Relay::Off { allowed: false };
        }
        let wanted = matches!(self.relay, Relay::Wanted);
        match self.recv {
            Recv::Idle if !half_closed && !wanted && self.intake != Intake::Paused => {
                let once = matches!(self.intake, Intake::Bounded { .. });
                let op = io.recv(self.max_buffered - held, once);
                self.recv = Recv::Armed {
                    op,
                    multishot: self.multishot && !once,
                };
            }
            Recv::Armed {
                op,
                multishot: true,
            } if self.intake == Intake::Paused => {
                io.cancel(op);
                self.recv = Recv::Cancelling;
            }
            _ => {}
        }
        // A send may be quiet while the peer's next bytes (or FIN) will
        // complete the armed receive anyway and bring the send's completion
        // along. Not when paused: then only the send's completion resumes.
        let quiet = matches!(self.recv, Recv::Armed { .. })
            && !half_closed
            && self.intake != Intake::Paused;
        self.send_next(io, quiet);
        if wanted && self.is_idle() {
            // Everything owed is out and nothing is in flight. Relaying
            // or not (then receive through the port again), the next pass
            // does what the new state needs.
            self.start_relay(io);
            return true;
        }
        if let Life::HalfClosed(why) = self.life {
            if self.is_idle() {
                // Everything owed has been sent: close, and the peer sees EOF
                // right after its last byte.
                self.life = Life::Closing(why);
                io.close();
            }
        }
        if self.queued.is_empty()
            && matches!(self.send, Send::Idle)
            && self.queued.capacity() > KEEP_SPARE_UP_TO
        {
            reclaim::freed(self.queued.capacity());
            self.queued = Vec::new();
        }
        false
    }

    /// Draining for shutdown: cancel the receive, send what is owed, FIN.
    fn pump_draining(&mut self, io: &mut impl Io<Op = Op, Received = R>) {
        if let Recv::Armed { op, .. } = self.recv {
            io.cancel(op);
            self.recv = Recv::Cancelling;
        }
        // Bytes the kernel delivered before the cancel landed were read by
        // the server, so they are owed too and go out in order.
        self.send_next(io, false);
        if self.is_idle() {
            self.life = Life::Lingering;
            reclaim::freed(self.spare.as_ref().map_or(0, Vec::capacity));
            self.spare = None;
            io.shutdown_write();
            self.arm_to_drop(io);
        }
    }

    /// Lingering: receive (and drop) until end of stream; a receive that
    /// ended without it (the buffer ring ran dry) is armed again.
    fn arm_to_drop(&mut self, io: &mut impl Io<Op = Op, Received = R>) {
        if let Recv::Idle = self.recv {
            let op = io.recv(self.max_buffered, false);
            self.recv = Recv::Armed {
                op,
                multishot: self.multishot,
            };
        }
    }

    /// Ending: cancel whatever is in flight, close once nothing is.
    fn pump_ending(&mut self, why: EndReason, io: &mut impl Io<Op = Op, Received = R>) {
        if let Recv::Armed { op, .. } = self.recv {
            io.cancel(op);
            self.recv = Recv::Cancelling;
        }
        match self.send {
            Send::InFlight { op, offset, len } => {
                io.cancel(op);
                self.send = Send::Cancelling { offset, len };
            }
            Send::Lent { .. } => {
                if let Send::Lent { received, .. } = std::mem::replace(&mut self.send, Send::Idle) {
                    io.release(received);
                }
            }
            Send::Idle | Send::Rest { .. } | Send::Cancelling { .. } => {}
        }
        self.cancel_relay_wait(io);
        if !self.has_ops_in_flight() {
            self.life = Life::Closing(why);
            io.close();
        }
    }

    /// Nothing in flight, nothing owed.
    fn is_idle(&self) -> bool {
        matches!(self.send, Send::Idle)
            && self.queued.is_empty()
            && matches!(self.recv, Recv::Idle)
            && !self.is_relay_on()
    }

    /// Start the next send if none is in flight: a short send's rest, or
    /// everything queued. `quiet_ok`: the connection's next event is coming
    /// anyway; the send is then quiet unless bytes wait behind it.
    fn send_next(&mut self, io: &mut impl Io<Op = Op, Received = R>, quiet_ok: bool) {
        let (buf, offset) = match std::mem::replace(&mut self.send, Send::Idle) {
            Send::Lent { received, len } => {
                let op = io.send_received(received);
                self.send = Send::InFlight { op, offset: 0, len };
                return;
            }
            Send::Rest { buf, offset } => (buf, offset),
            Send::Idle if !self.queued.is_empty() => {
                let next = self.spare.take().unwrap_or_default();
                (std::mem::replace(&mut self.queued, next), 0)
            }
            other => {
                self.send = other;
                return;
            }
        };
        let len = buf.len();
        let quiet = quiet_ok && self.queued.is_empty();
        let op = io.send(buf, offset, quiet);
        self.send = Send::InFlight { op, offset, len };
    }
}
