//! The kernel relay of a completion connection: a bulk connection's bytes
//! go socket → pipe → socket with `splice`, never copied into the server's
//! memory.
//!
//! The connection asks for it ([`Relay::Wanted`]) when a large one-shot
//! receive arrives, starts it ([`Conn::start_relay`]) once everything owed
//! through the port's buffers is out, so the bytes stay in order, and from
//! then on its `pump` makes one call here, [`Conn::pump_relay`], which
//! moves bytes until the socket or the pipe would block and arms a
//! readiness wait for that. The relay ends when the connection stops
//! taking input (the peer's FIN, urgent data, the server's shutdown) and
//! the pipe is empty; the connection then goes on through the port.
//! Kept apart from `conn.rs` because it is a second way of moving bytes,
//! with its own states ([`Relay`], [`Flow`], [`Wait`]) and its own events
//! ([`Conn::on_ready`]), which the port's receives and sends never see.

use super::{Conn, EndReason, Io, Life};
use ringport_completion::Interest;
use std::io;
use std::time::Instant;

/// Whether the bytes go through a kernel relay: socket → pipe → socket with
/// `splice`, never copied into the server's memory. For bulk traffic only:
/// a relayed message costs two system calls and a readiness wait each way,
/// more than a small message's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Relay<Op> {
    /// Through the port's buffers. `allowed`: the port and the server let
    /// this connection relay, and no attempt to start one failed.
    Off { allowed: bool },
    /// A bulk receive arrived: receive no more, send what is owed, then
    /// relay.
    Wanted,
    /// Relaying: `held` bytes are in the pipe of `capacity`; `wait` is
    /// the readiness wait in flight, if any; `flow` whether input is still
    /// taken.
    On {
        held: usize,
        capacity: usize,
        wait: Wait<Op>,
        flow: Flow,
    },
}

/// Whether a relaying connection still moves input into its pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Both ways: fill from the socket, drain to it.
    Both,
    /// Only drain what the pipe holds, then go back to the port's
    /// receives: `splice` could not go on (it found the end of stream, or
    /// stopped at urgent data, which only a receive skips), and the port
    /// tells end of stream from the rest for certain.
    Leaving,
}

/// A relaying connection's readiness wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait<Op> {
    /// None in flight.
    Idle,
    /// Waiting for bytes to fill the pipe with.
    Readable(Op),
    /// Waiting for room to drain the pipe into.
    Writable(Op),
    /// A wait for this just completed: the next move must make progress.
    /// Readiness that no move can use would otherwise wake the connection
    /// again at once, for ever (urgent data stops `splice` at its mark while
    /// the socket stays readable).
    Ready(Interest),
    /// The wait in flight is being cancelled.
    Cancelling,
}

/// A one-shot receive at least this large marks a connection as bulk: it is
/// relayed from then on, where it may be. Whether anything was held before
/// it does not matter: a bulk sender whose peer reads slowly is always owed
/// something, and would otherwise never be relayed. Half
/// the bulk ring's buffer: a bulk sender's write arrives in 64 KiB pieces on
/// loopback, and a 16 KiB ping-pong (which a relay does not pay for) never
/// fills one.
pub(super) const RELAY_AT: usize = 32 * 1024;
/// The largest pipe a relay asks for (the kernel's default limit for
/// unprivileged users, `fs/pipe-max-size`), and the smallest it uses: with
/// less, each move costs more system calls than the copy it saves.
const RELAY_PIPE_MAX: usize = 1024 * 1024;
const RELAY_PIPE_MIN: usize = 64 * 1024;
/// Moves a relaying connection makes, each way, before it lets the others
/// run (it then waits for readiness, which is at once if bytes remain).
const RELAY_ROUNDS: usize = 4;

impl<Op: Copy, R> Conn<Op, R> {
    /// Everything owed through the port is out and nothing is in flight:
    /// start relaying, the pipe empty so the bytes stay in order. When no
    /// pipe could be had, the connection receives through the port again,
    /// and never asks for a relay again.
    pub(super) fn start_relay(&mut self, io: &mut impl Io<Op = Op, Received = R>) {
        self.relay = match io.relay_start(self.max_buffered.min(RELAY_PIPE_MAX), RELAY_PIPE_MIN) {
            Some(capacity) => Relay::On {
                held: 0,
                capacity,
                wait: Wait::Idle,
                flow: Flow::Both,
            },
            None => Relay::Off { allowed: false },
        };
    }

    /// Whether bytes are going through the pipe.
    pub(super) fn is_relay_on(&self) -> bool {
        matches!(self.relay, Relay::On { .. })
    }

    /// Bytes in the relay's pipe.
    pub(super) fn relayed(&self) -> usize {
        match self.relay {
            Relay::On { held, .. } => held,
            _ => 0,
        }
    }

    /// Whether the relay's readiness wait (or its cancel) is in flight.
    pub(super) fn relay_wait_in_flight(&self) -> bool {
        matches!(
            self.relay,
            Relay::On {
                wait: Wait::Readable(_) | Wait::Writable(_) | Wait::Cancelling,
                ..
            }
        )
    }

    /// The connection is ending: cancel the readiness wait in flight, if
    /// any; its completion still comes, and the close waits for it.
    pub(super) fn cancel_relay_wait(&mut self, io: &mut impl Io<Op = Op, Received = R>) {
        if let Relay::On {
            wait: ref mut wait @ (Wait::Readable(_) | Wait::Writable(_)),
            ..
        } = self.relay
        {
            if let Wait::Readable(op) | Wait::Writable(op) = *wait {
                io.cancel(op);
            }
            *wait = Wait::Cancelling;
        }
    }

    /// Relaying: drain the pipe into the socket, fill it from the socket,
    /// until one of them would block, then wait for that. Once the server
    /// is draining, or `splice` cannot go on ([`Flow::Leaving`]), only
    /// drain; with the pipe empty then, stop relaying (the caller goes on
    /// through the port, which finds the peer's FIN itself).
    pub(super) fn pump_relay(&mut self, io: &mut impl Io<Op = Op, Received = R>) {
        let Relay::On {
            held,
            capacity,
            wait,
            flow,
        } = self.relay
        else {
            return;
        };
        let set = |held, wait, flow| Relay::On {
            held,
            capacity,
            wait,
            flow,
        };
        let reading = self.life == Life::Open && flow == Flow::Both;
        let woke_for = match wait {
            Wait::Readable(op) if !reading => {
                // Draining began: no more input to relay.
                io.cancel(op);
                self.relay = set(held, Wait::Cancelling, flow);
                return;
            }
            // A wait is in flight: its completion brings the next move.
            Wait::Readable(_) | Wait::Writable(_) | Wait::Cancelling => return,
            Wait::Ready(interest) => Some(interest),
            Wait::Idle => None,
        };
        let Some((held, wait, flow)) = self.relay_moves(io, held, capacity, flow, woke_for) else {
            return;
        };
        self.relay = set(held, wait, flow);
        let reading = self.life == Life::Open && flow == Flow::Both;
        if !reading && held == 0 && matches!(wait, Wait::Idle) {
            io.relay_end();
            self.relay = Relay::Off { allowed: false };
        }
    }

    /// One turn of a relaying connection's moves, from `held` bytes in
    /// the pipe: what it holds after, the wait to arm, and the flow. `None`
    /// when a move failed (the connection is failing).
    fn relay_moves(
        &mut self,
        io: &mut impl Io<Op = Op, Received = R>,
        mut held: usize,
        capacity: usize,
        mut flow: Flow,
        woke_for: Option<Interest>,
    ) -> Option<(usize, Wait<Op>, Flow)> {
        let mut reading = self.life == Life::Open && flow == Flow::Both;
        let mut moved = false;
        let mut rounds = 0;
        let wait = loop {
            if held > 0 {
                match io.drain(held) {
                    Ok(0) => {
                        self.relay_failed(held, capacity, flow);
                        return None;
                    }
                    Ok(n) => {
                        held -= n;
                        moved = true;
                        self.echoed += n as u64;
                        if held > 0 {
                            // Short: the socket is full now; the next
                            // drain says so.
                            continue;
                        }
                    }
                    // Also right after the socket said writable: TCP
                    // reports room before its memory accounting lets a
                    // splice in (seen here), and the ACKs that free it
                    // are on their way, so wait again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        break Wait::Writable(io.poll(Interest::Write));
                    }
                    Err(_) => {
                        self.relay_failed(held, capacity, flow);
                        return None;
                    }
                }
            }
            if !reading {
                break Wait::Idle;
            }
            if rounds == RELAY_ROUNDS {
                // Let the other connections run; bytes waiting make the
                // readiness wait complete at once.
                break Wait::Readable(io.poll(Interest::Read));
            }
            rounds += 1;
            match io.fill(capacity - held) {
                Ok(n) if n > 0 => {
                    held += n;
                    moved = true;
                }
                // The end of stream, or readable but nothing `splice` can
                // take: leave it to the port's receives.
                Ok(_) => (flow, reading) = (Flow::Leaving, false),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        && woke_for == Some(Interest::Read)
                        && !moved =>
                {
                    (flow, reading) = (Flow::Leaving, false);
                }
                // Nothing to read, or the pipe has no free slot left (it
                // holds page pieces, so it can fill before `capacity`
                // bytes): either way the next drain or readiness moves on.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    break Wait::Readable(io.poll(Interest::Read));
                }
                Err(_) => {
                    self.relay_failed(held, capacity, flow);
                    return None;
                }
            }
        };
        Some((held, wait, flow))
    }

    /// A move failed (reset, broken pipe): what the pipe holds is lost with
    /// the connection.
    fn relay_failed(&mut self, held: usize, capacity: usize, flow: Flow) {
        self.relay = Relay::On {
            held,
            capacity,
            wait: Wait::Idle,
            flow,
        };
        self.fail(EndReason::Error);
    }

    /// A relaying connection's readiness wait completed at `now`.
    pub fn on_ready(&mut self, result: io::Result<usize>, now: Instant) {
        match &mut self.relay {
            Relay::On { wait, .. } => match *wait {
                Wait::Readable(_) => *wait = Wait::Ready(Interest::Read),
                Wait::Writable(_) => *wait = Wait::Ready(Interest::Write),
                Wait::Cancelling => *wait = Wait::Idle,
                Wait::Idle | Wait::Ready(_) => {
                    debug_assert!(false, "a readiness wait completed with none in flight");
                    return;
                }
            },
            _ => {
                debug_assert!(false, "a readiness wait completed with none in flight");
                return;
            }
        }
        match result {
            // What it was ready for (or its error) is for the next move to find.
            Ok(_) => self.last_active = now,
            Err(e) if ringport_completion::is_cancelled(&e) => {}
            Err(_) => self.fail(EndReason::Error),
        }
    }
}
