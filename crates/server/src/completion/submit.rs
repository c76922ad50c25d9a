//! The completion model's [`Io`](super::conn::Io): how a connection's
//! state machine submits its operations to the worker's port, under the
//! connection's token, and how a relaying connection's pipe is made, sized
//! from the worker's relay budget, and dropped. The state machine knows
//! only the trait; this is the one place that knows the port, the socket
//! and the pipe behind it.

use super::conn;
use crate::Stats;
use ringport_completion::{Completion, Interest, OpId, Port, Relay, Socket, Token};
use std::io;

/// A connection's operations, submitted to the port under its token.
pub(super) struct Submit<'a> {
    pub(super) port: &'a mut Port,
    pub(super) socket: &'a mut Option<Socket>,
    pub(super) relay: &'a mut Option<Relay>,
    /// The worker's count of relaying connections.
    pub(super) relays: &'a mut usize,
    /// The worker's open connections, relaying or not, this one included:
    /// the relay pipes' budget is shared among them.
    pub(super) open: usize,
    pub(super) token: Token,
    pub(super) stats: &'a Stats,
}

impl Submit<'_> {
    /// The port, the socket and the token to submit with. The state machine
    /// starts nothing after the close, so the socket is there.
    fn parts(&mut self) -> (&mut Port, &Socket, Token) {
        let socket = self.socket.as_ref().expect("no operation after the close");
        (self.port, socket, self.token)
    }

    /// The socket and the pipe of a relaying connection: the state machine
    /// moves bytes only between `relay_start` and `relay_end`, before the close.
    fn relaying(&mut self) -> (&Socket, &mut Relay) {
        let socket = self.socket.as_ref().expect("relaying before the close");
        let relay = self.relay.as_mut().expect("relay_start made it");
        (socket, relay)
    }

    /// Drop the pipe, if the connection had one.
    fn drop_relay(&mut self) {
        if self.relay.take().is_some() {
            *self.relays -= 1;
        }
    }
}

impl conn::Io for Submit<'_> {
    type Op = OpId;
    type Received = Completion;

    fn send_received(&mut self, received: Completion) -> OpId {
        let (port, socket, token) = self.parts();
        port.send_received(socket, token, received)
    }

    fn release(&mut self, received: Completion) {
        let _ = self.port.release(received);
    }

    fn recv(&mut self, max: usize, once: bool) -> OpId {
        let (port, socket, token) = self.parts();
        if once {
            port.recv_once(socket, token, max)
        } else {
            port.recv(socket, token, max)
        }
    }

    fn send(&mut self, buf: Vec<u8>, offset: usize, quiet: bool) -> OpId {
        let (port, socket, token) = self.parts();
        if quiet {
            port.send_quiet(socket, token, buf, offset)
        } else {
            port.send(socket, token, buf, offset)
        }
    }

    fn cancel(&mut self, op: OpId) {
        self.port.cancel(op);
    }

    fn shutdown_write(&mut self) {
        // Fails only if the peer is already gone; the receive that follows
        // then reports that and the close goes on.
        let (_, socket, _) = self.parts();
        let _ = socket.shutdown(std::net::Shutdown::Write);
    }

    fn close(&mut self) {
        // Nothing is in flight; what a pipe still holds (an abort) is dropped.
        self.drop_relay();
        if let Some(socket) = self.socket.take() {
            self.port.close(socket, self.token);
        }
    }

    fn relay_start(&mut self, capacity: usize, min: usize) -> Option<usize> {
        // `open` counts this connection and every relaying one (relays are
        // never on a shared port, where another worker may close them).
        let capacity = relay_share(capacity, min, self.open);
        let relay = Relay::new(capacity).ok().filter(|r| r.capacity() >= min)?;
        let (_, socket, _) = self.parts();
        socket.set_nonblocking(true).ok()?;
        let capacity = relay.capacity();
        *self.relay = Some(relay);
        *self.relays += 1;
        self.stats.connection_relayed();
        Some(capacity)
    }

    fn fill(&mut self, max: usize) -> io::Result<usize> {
        let (socket, relay) = self.relaying();
        relay.fill(socket, max)
    }

    fn drain(&mut self, max: usize) -> io::Result<usize> {
        let (socket, relay) = self.relaying();
        relay.drain(socket, max)
    }

    fn poll(&mut self, interest: Interest) -> OpId {
        let (port, socket, token) = self.parts();
        port.poll(socket, token, interest)
    }

    fn relay_end(&mut self) {
        self.drop_relay();
        let (_, socket, _) = self.parts();
        // If it stayed non-blocking, the port's next receive would end at
        // once with WouldBlock, which fails the connection: loud, not lost.
        let _ = socket.set_nonblocking(false);
    }
}

/// The kernel memory one worker's relay pipes may pin in all: a pipe holds
/// up to its capacity in pages that stay referenced until the peer reads
/// its echo. Found at 1000 connections × 1 MiB (docs/BENCHMARKS.md): with a
/// 256 KiB pipe each, the peer read its echoes at 0.59× the rate it did
/// with 64 KiB pipes (medians of 11), at the same server CPU. Most likely
/// the pages a relay keeps in flight outgrew what the page allocator
/// recycles while still hot: on a VM that hands freed memory back to its
/// host, a page allocated cold costs a host fault, paid by the peer. Half
/// the kernel's default per-user pipe budget (`fs/pipe-user-pages-soft`,
/// 64 MiB), so that two workers of an unprivileged server stay within it.
const RELAY_BUDGET: usize = 32 << 20;

/// The pipe capacity for a relay that asks for `asked` bytes (at least
/// `min`), on a worker that may relay for `sharers` connections: its share
/// of [`RELAY_BUDGET`], a power of two (the kernel rounds a pipe's size up
/// to one), never below `min` nor above `asked`.
fn relay_share(asked: usize, min: usize, sharers: usize) -> usize {
    let share = RELAY_BUDGET / sharers.max(1);
    let share = match share.checked_ilog2() {
        Some(log) => 1usize << log,
        None => 0,
    };
    share.min(asked).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_pipes_share_the_budget_and_stay_between_the_bounds() {
        const K: usize = 1024;
        // Few connections: each gets what it asks for.
        assert_eq!(relay_share(256 * K, 64 * K, 1), 256 * K);
        assert_eq!(relay_share(256 * K, 64 * K, 128), 256 * K);
        // More: a power-of-two share of the budget.
        assert_eq!(relay_share(256 * K, 64 * K, 129), 128 * K);
        assert_eq!(relay_share(256 * K, 64 * K, 300), 64 * K);
        // Never below the smallest pipe worth relaying through.
        assert_eq!(relay_share(256 * K, 64 * K, 1000), 64 * K);
        assert_eq!(relay_share(256 * K, 64 * K, usize::MAX), 64 * K);
        // Never above what was asked for.
        assert_eq!(relay_share(64 * K, 64 * K, 1), 64 * K);
        assert_eq!(relay_share(1 << 20, 64 * K, 0), 1 << 20);
    }
}
