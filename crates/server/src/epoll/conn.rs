//! One connection of the readiness model: its state machine ([`State`])
//! around the bounded buffer of bytes it owes its client, driven by the
//! worker after each readiness event ([`Connection::drive`]). It reads
//! into the worker's scratch buffer and writes straight back, keeping only
//! what the kernel would not take at once. Kept apart from the event loop
//! (`mod.rs`) so that it can be tested over a scripted socket
//! (`conn/tests.rs`), with no event loop at all.

use crate::reclaim;
use crate::verbose::log_received;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown as How, SocketAddr};
use std::time::Instant;

/// A drained owed-buffer larger than this is freed rather than kept, so a
/// connection that was backpressured once does not pin 256 KiB for good.
const KEEP_OWED_CAPACITY: usize = 16 * 1024;

/// Where a connection is in its life. Reading is what changes between states;
/// writing whatever is owed goes on in all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Reading and echoing; fewer than `max_buffered` bytes are owed.
    Open,
    /// `max_buffered` bytes are owed to a client that is not reading: no
    /// reads until all of them are sent, so the server's memory for this
    /// client stays bounded and TCP pushes back on it.
    Paused,
    /// The client sent FIN: send what is still owed, then FIN back.
    Draining,
    /// The server is shutting down: no more reads to echo; send what is
    /// owed, then FIN.
    Stopping,
    /// Shutting down, FIN sent: read and drop whatever the client sends
    /// until it closes too. Closing with unread bytes would make the kernel
    /// send a reset, which destroys the echo still on its way. (The read side
    /// is not shut: Linux resets a connection that has sent its FIN and shut
    /// its read side as soon as more data arrives.) The drain deadline ends
    /// this for a client that never closes.
    Lingering,
}

/// What the event loop should do with a connection after driving it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing more can happen until the next event.
    Wait,
    /// Everything owed was sent and the FIN too: close it.
    Finished,
}

/// What [`Connection::drive`] borrows from its worker.
pub(crate) struct Io<'b> {
    pub(super) scratch: &'b mut [u8],
    pub(super) max_buffered: usize,
    pub(super) verbose: bool,
    /// Bytes the connection wrote back during this drive.
    pub(super) echoed: u64,
    /// Whether any byte moved either way during this drive.
    pub(super) progressed: bool,
}

/// A socket as the state machine sees it: `mio::net::TcpStream` in the
/// server, a scripted fake in the tests.
pub(crate) trait Socket: Read + Write {
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(How::Write)
    }
}

/// One client: its socket, its state, and the bytes it is owed.
pub(crate) struct Connection<S> {
    sock: S,
    pub(super) peer: SocketAddr,
    state: State,
    /// Bytes read but not yet written back, in order. Never longer than
    /// `max_buffered`; empty (usually without an allocation) unless the
    /// client is slower to read than to send.
    pub(super) owed: VecDeque<u8>,
    /// The last read did not say WouldBlock, or an event came since.
    pub(super) can_read: bool,
    /// The last write did not say WouldBlock, or an event came since.
    pub(super) can_write: bool,
    /// When a byte last moved either way (kept only with an idle timeout).
    pub(super) last_active: Instant,
}

impl<S: Socket> Connection<S> {
    pub(super) fn new(sock: S, peer: SocketAddr) -> Self {
        Connection {
            sock,
            peer,
            state: State::Open,
            owed: VecDeque::new(),
            // Unknown until tried; trying costs one call that says WouldBlock.
            can_read: true,
            can_write: true,
            last_active: Instant::now(),
        }
    }

    /// Shutdown began: read nothing more to echo.
    pub(super) fn stop(&mut self) {
        if matches!(self.state, State::Open | State::Paused) {
            self.state = State::Stopping;
        }
    }

    /// Make all the progress the socket allows: send what is owed, read and
    /// echo while under the cap, and finish a half-closed connection. Returns
    /// when every further step would block, so the next edge-triggered event
    /// is guaranteed to come.
    ///
    /// The common path costs three system calls per message: a `read` that
    /// gets it, a `write` that sends it all from the scratch buffer (no copy
    /// into `owed`), and a `read` that says WouldBlock.
    pub(crate) fn drive(&mut self, io: &mut Io<'_>) -> io::Result<Step> {
        loop {
            // Older bytes go first, so new ones are written directly only
            // when nothing is owed: that keeps the echo in order.
            if !self.owed.is_empty() && self.can_write && self.flush_owed(io)? {
                continue;
            }
            if let Some(step) = self.advance(io)? {
                return Ok(step);
            }
        }
    }

    /// Write what is owed, in one vectored call. True to go round again
    /// (something was written, or the call was interrupted); false when
    /// the socket is full.
    fn flush_owed(&mut self, io: &mut Io<'_>) -> io::Result<bool> {
        let (a, b) = self.owed.as_slices();
        match self
            .sock
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.owed.drain(..n);
                io.echoed += n as u64;
                io.progressed = true;
                if self.owed.is_empty() && self.owed.capacity() > KEEP_OWED_CAPACITY {
                    reclaim::freed(self.owed.capacity());
                    self.owed = VecDeque::new();
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.can_write = false;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The step the connection's state allows once the flush is done:
    /// `None` to go round again, or what [`Connection::drive`] returns.
    fn advance(&mut self, io: &mut Io<'_>) -> io::Result<Option<Step>> {
        match self.state {
            State::Open if self.owed.len() >= io.max_buffered => {
                self.state = State::Paused;
            }
            State::Open if self.can_read => {
                if self.read_to_echo(io)? {
                    return Ok(None);
                }
            }
            State::Open => {}
            State::Paused if self.owed.is_empty() => {
                // Drained: read again at once. No event would tell us
                // to, since the data that waited arrived long ago.
                self.state = State::Open;
                return Ok(None);
            }
            State::Paused => {}
            State::Draining if self.owed.is_empty() => {
                // read returned 0 only after every earlier byte was read,
                // and all of those are now sent: the client gets them all,
                // then EOF. Closing the socket next is safe, as nothing
                // unread is left to turn the close into a reset.
                self.sock.shutdown_write()?;
                return Ok(Some(Step::Finished));
            }
            State::Draining => {}
            State::Stopping if self.owed.is_empty() => {
                self.sock.shutdown_write()?;
                self.state = State::Lingering;
                return Ok(None);
            }
            State::Stopping => {}
            State::Lingering if self.can_read => match self.sock.read(io.scratch) {
                Ok(0) => return Ok(Some(Step::Finished)),
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.can_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
                Err(e) => return Err(e),
            },
            State::Lingering => {}
        }
        Ok(Some(Step::Wait))
    }

    /// Read what the cap leaves room for and echo it. True to go round
    /// again (bytes came, the client half-closed, or the call was
    /// interrupted); false when nothing is there to read.
    fn read_to_echo(&mut self, io: &mut Io<'_>) -> io::Result<bool> {
        // Never read more than the cap leaves room for, so `owed`
        // stays within it whatever the write below manages.
        let room = io.scratch.len().min(io.max_buffered - self.owed.len());
        match self.sock.read(&mut io.scratch[..room]) {
            Ok(0) => {
                self.state = State::Draining;
                Ok(true)
            }
            Ok(n) => {
                io.progressed = true;
                self.echo(n, io)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.can_read = false;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Echo the `n` bytes just read into the scratch buffer.
    fn echo(&mut self, n: usize, io: &mut Io<'_>) -> io::Result<()> {
        let data = &io.scratch[..n];
        if io.verbose {
            log_received!(self.peer, data);
        }
        let mut sent = 0;
        if self.owed.is_empty() && self.can_write {
            match self.sock.write(data) {
                Ok(m) => sent = m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.can_write = false,
                // Kept in `owed`; the next flush retries.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        io.echoed += sent as u64;
        // The one copy on this path, and only for what the kernel would not
        // take: this is when a connection's own buffer is committed.
        let rest = &data[sent..];
        reserve_within(&mut self.owed, rest.len(), io.max_buffered);
        self.owed.extend(rest);
        Ok(())
    }
}

/// Make room in `owed` for `more` bytes, never growing past `cap` (see
/// `reclaim::grow_within`).
fn reserve_within(owed: &mut VecDeque<u8>, more: usize, cap: usize) {
    if let Some(target) = reclaim::grow_within(owed.len(), owed.capacity(), more, cap) {
        owed.reserve_exact(target - owed.len());
    }
}

#[cfg(test)]
mod tests;
