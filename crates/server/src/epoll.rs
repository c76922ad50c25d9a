//! The readiness model: one mio event loop (epoll on Linux) per worker thread.
//!
//! Each worker owns a `Poll`, its own listener of a `SO_REUSEPORT` group (so
//! the kernel spreads new connections across workers and no lock is shared),
//! and the connections it accepted. Sockets are non-blocking and registered
//! once, edge-triggered, for both directions: an event says "something
//! changed", and the worker then reads until `WouldBlock` and writes until
//! `WouldBlock`, because no further event comes until the state changes again.
//!
//! Each connection is an explicit state machine ([`State`]) around a bounded
//! buffer of bytes it owes its client. Bytes are read into one scratch buffer
//! per worker and written straight back; only what the kernel will not take
//! at once is copied into the connection's own buffer. A client that sends
//! without reading can make the server hold at most `max_buffered` bytes for
//! it: then the worker stops reading from it, the kernel's receive buffer
//! fills, and TCP flow control pushes back on the client. The buffer grows by
//! doubling but never past that cap, so the cap is also what it costs in
//! memory, and once it drains (or the connection ends) a large one is freed
//! and reported to `reclaim`, which makes the allocator give it back.

use crate::accept::AcceptBackoff;
use crate::listener::join_group;
use crate::reclaim;
use crate::verbose::log_received;
use crate::workers::IdleSweep;
use crate::{Config, ServerError, Shutdown, Stats};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown as How, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of a worker's listener. Connection tokens are slab indices,
/// which never come near the top of the range.
const LISTENER: Token = Token(usize::MAX);
/// The token of the waker that shutdown uses to interrupt `poll`.
const WAKE: Token = Token(usize::MAX - 1);

/// Events handled per `poll` call.
const EVENTS_PER_POLL: usize = 1024;

/// The per-worker buffer every read lands in. Large enough that one read
/// usually empties the socket's receive queue.
const SCRATCH_SIZE: usize = 64 * 1024;

/// A drained owed-buffer larger than this is freed rather than kept, so a
/// connection that was backpressured once does not pin 256 KiB for good.
const KEEP_OWED_CAPACITY: usize = 16 * 1024;

/// Serve with `config.workers` event loops until shutdown.
pub fn run(
    listener: std::net::TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let workers = config.workers.max(1);
    // Set every worker up before any runs, so a failure (out of descriptors,
    // say) is reported as the server's and nothing is left half-started.
    let mut listeners = vec![listener];
    for _ in 1..workers {
        listeners.push(join_group(&listeners[0])?);
    }
    let mut loops = Vec::with_capacity(workers);
    for listener in listeners {
        loops.push(Worker::new(listener, config, shutdown, stats)?);
    }
    let jobs: Vec<_> = loops.into_iter().map(|w| move || w.run()).collect();
    crate::workers::run_pool("epoll", jobs, shutdown, || {})
}

/// One event loop: a poll, a listener, the connections accepted on it.
struct Worker<'a> {
    poll: Poll,
    /// Kept open for as long as `poll` may be waiting on it.
    _waker: Arc<Waker>,
    listener: TcpListener,
    /// Connections by token; `None` marks a free slot.
    conns: Vec<Option<Connection<TcpStream>>>,
    free: Vec<usize>,
    /// Every read lands here first; see [`Connection::drive`].
    scratch: Box<[u8]>,
    backoff: AcceptBackoff,
    /// While set, the listener is deregistered: accepting is paused until then.
    accept_paused_until: Option<Instant>,
    /// Bytes echoed since the last flush into `stats`, once per loop iteration.
    echoed: u64,
    max_buffered: usize,
    verbose: bool,
    max_connections: Option<usize>,
    idle_timeout: Option<Duration>,
    /// When the next sweep for idle connections is due.
    sweep: Option<IdleSweep>,
    drain_timeout: Duration,
    shutdown: &'a Shutdown,
    stats: &'a Stats,
}

impl<'a> Worker<'a> {
    fn new(
        listener: std::net::TcpListener,
        config: &Config,
        shutdown: &'a Shutdown,
        stats: &'a Stats,
    ) -> Result<Self, ServerError> {
        let poll = Poll::new().map_err(|e| ServerError::io("cannot create a poll", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::io("cannot make the listener non-blocking", e))?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| ServerError::io("cannot register the listener", e))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKE)
                .map_err(|e| ServerError::io("cannot create a poll waker", e))?,
        );
        // The loop checks the flag after every wake-up, so a wake is all the
        // trigger has to do. The trigger drops its handle right after; the
        // worker keeps another, because closing the eventfd before `poll`
        // has collected its event would remove the event with it.
        let trigger_waker = Arc::clone(&waker);
        shutdown.on_trigger(move || {
            let _ = trigger_waker.wake();
        });
        Ok(Worker {
            poll,
            _waker: waker,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            scratch: vec![0u8; SCRATCH_SIZE].into_boxed_slice(),
            backoff: AcceptBackoff::new(),
            accept_paused_until: None,
            echoed: 0,
            // A cap of 0 would never read anything.
            max_buffered: config.max_buffered.max(1),
            verbose: config.verbose,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            sweep: IdleSweep::new(config.idle_timeout, Instant::now()),
            drain_timeout: config.drain_timeout,
            shutdown,
            stats,
        })
    }

    fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut result = self.serve(&mut events);
        if result.is_ok() {
            result = self.drain(&mut events);
        }
        // On shutdown and on a fatal error alike, every client is closed and counted.
        self.close_all();
        result
    }

    /// The earliest of the instants the loop must wake for by itself.
    fn timeout(&self, deadline: Option<Instant>) -> Option<Duration> {
        [
            self.accept_paused_until,
            self.sweep.map(|s| s.next()),
            deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|until| until.saturating_duration_since(Instant::now()))
    }

    fn serve(&mut self, events: &mut Events) -> Result<(), ServerError> {
        while !self.shutdown.is_triggered() {
            // While accepting is paused, wake up in time to resume it; with
            // an idle timeout, in time for the next sweep.
            let timeout = self.timeout(None);
            match self.poll.poll(events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ServerError::io("waiting for socket events failed", e)),
            }
            for event in events.iter() {
                match event.token() {
                    // The loop condition checks the flag.
                    WAKE => {}
                    LISTENER => self.accept_all(),
                    Token(slot) => self.on_connection_event(slot, event),
                }
            }
            if self
                .accept_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.resume_accepting()?;
            }
            self.sweep_idle();
            self.stats.add_bytes(std::mem::take(&mut self.echoed));
        }
        Ok(())
    }

    /// Shutdown: accept no more, stop reading, and keep sending what is
    /// owed until every connection has finished or the drain deadline.
    fn drain(&mut self, events: &mut Events) -> Result<(), ServerError> {
        if self.accept_paused_until.take().is_none() {
            let _ = self.poll.registry().deregister(&mut self.listener);
        }
        let deadline = Instant::now() + self.drain_timeout;
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.stop();
                self.drive(slot);
            }
        }
        while self.conns.iter().any(Option::is_some) && Instant::now() < deadline {
            match self.poll.poll(events, self.timeout(Some(deadline))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ServerError::io("waiting for socket events failed", e)),
            }
            for event in events.iter() {
                match event.token() {
                    WAKE | LISTENER => {}
                    Token(slot) => self.on_connection_event(slot, event),
                }
            }
            self.sweep_idle();
            self.stats.add_bytes(std::mem::take(&mut self.echoed));
        }
        Ok(())
    }

    /// Close every connection that has made no progress for `idle_timeout`.
    /// One timer for the worker rather than one per connection: a sweep
    /// every quarter of the limit costs a walk over the slab.
    fn sweep_idle(&mut self) {
        let now = Instant::now();
        let Some(limit) = self.sweep.as_mut().and_then(|s| s.due(now)) else {
            return;
        };
        for slot in 0..self.conns.len() {
            let idle = self.conns[slot]
                .as_ref()
                .is_some_and(|c| now.duration_since(c.last_active) >= limit);
            if idle {
                let e = io::Error::new(io::ErrorKind::TimedOut, format!("idle for {limit:?}"));
                self.remove(slot, Some(e));
            }
        }
    }

    /// Accept until the queue is empty (edge-triggered: no new event comes
    /// for connections already waiting).
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.add(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => match self.backoff.on_error(&e) {
                    None => continue,
                    Some(pause) => {
                        // The failed connection stays in the backlog, so the
                        // listener stays readable: stop listening for it
                        // rather than spin, and come back after the pause.
                        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
                            tracing::warn!("cannot pause accepting: {e}");
                        }
                        self.accept_paused_until = Some(Instant::now() + pause);
                        return;
                    }
                },
            }
        }
    }

    fn resume_accepting(&mut self) -> Result<(), ServerError> {
        self.accept_paused_until = None;
        self.poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)
            .map_err(|e| ServerError::io("cannot resume accepting", e))?;
        // Registering reports a non-empty queue as an event too, but there is
        // no reason to wait for it.
        self.accept_all();
        Ok(())
    }

    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if !self.stats.admit(self.max_connections) {
            // Over the limit: dropping the stream closes it at once.
            if self.verbose {
                tracing::info!("client {peer} refused: --max-connections reached");
            }
            return;
        }
        if self.verbose {
            tracing::info!("client connected from {peer}");
        }
        crate::sys::nodelay_if_not_inherited(|| stream.set_nodelay(true));
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        // Registered once for both directions and never changed: an
        // edge-triggered registration costs no system call per message.
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("cannot watch the connection from {peer}: {e}; closed it");
            self.free.push(slot);
            self.stats.connection_closed();
            return;
        }
        self.conns[slot] = Some(Connection::new(stream, peer));
    }

    fn on_connection_event(&mut self, slot: usize, event: &Event) {
        // An event may name a slot whose connection closed earlier in this
        // batch, or was even reused by a new one. A stale event on a new
        // connection only costs a read that says WouldBlock.
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        // Errors and hang-ups count as readiness: the next read or write
        // reports them.
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.can_read = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            conn.can_write = true;
        }
        self.drive(slot);
    }

    /// Let connection `slot` make all the progress it can, and close it if it
    /// has finished or failed.
    fn drive(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let mut io = Io {
            scratch: &mut self.scratch,
            max_buffered: self.max_buffered,
            verbose: self.verbose,
            echoed: 0,
            progressed: false,
        };
        let step = conn.drive(&mut io);
        self.echoed += io.echoed;
        if io.progressed && self.idle_timeout.is_some() {
            conn.last_active = Instant::now();
        }
        match step {
            Ok(Step::Wait) => {}
            Ok(Step::Finished) => self.remove(slot, None),
            Err(e) => self.remove(slot, Some(e)),
        }
    }

    /// Close a connection. Closing the socket also removes it from the epoll
    /// set, so no `deregister` call is needed.
    fn remove(&mut self, slot: usize, error: Option<io::Error>) {
        let Some(conn) = self.conns[slot].take() else {
            return;
        };
        reclaim::freed(conn.owed.capacity());
        self.free.push(slot);
        self.stats.connection_closed();
        log_disconnect(conn.peer, error.as_ref(), self.verbose);
    }

    /// Shutdown: stop accepting and drop every connection without flushing.
    fn close_all(&mut self) {
        for slot in 0..self.conns.len() {
            self.remove(slot, None);
        }
        self.stats.add_bytes(std::mem::take(&mut self.echoed));
    }
}

fn log_disconnect(peer: SocketAddr, error: Option<&io::Error>, verbose: bool) {
    match error {
        None if verbose => tracing::info!("client {peer} disconnected"),
        None => {}
        Some(e) if verbose => tracing::info!("client {peer} disconnected: {e}"),
        Some(e) => tracing::debug!("client {peer} disconnected: {e}"),
    }
}

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
    scratch: &'b mut [u8],
    max_buffered: usize,
    verbose: bool,
    /// Bytes the connection wrote back during this drive.
    echoed: u64,
    /// Whether any byte moved either way during this drive.
    progressed: bool,
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
    peer: SocketAddr,
    state: State,
    /// Bytes read but not yet written back, in order. Never longer than
    /// `max_buffered`; empty (usually without an allocation) unless the
    /// client is slower to read than to send.
    owed: VecDeque<u8>,
    /// The last read did not say WouldBlock, or an event came since.
    can_read: bool,
    /// The last write did not say WouldBlock, or an event came since.
    can_write: bool,
    /// When a byte last moved either way (kept only with an idle timeout).
    last_active: Instant,
}

impl<S: Socket> Connection<S> {
    fn new(sock: S, peer: SocketAddr) -> Self {
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
    fn stop(&mut self) {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A socket with a script: bytes the client has sent, whether it sent
    /// FIN, and how many more bytes the kernel will take before WouldBlock.
    #[derive(Default)]
    struct Fake {
        incoming: VecDeque<u8>,
        fin: bool,
        write_room: usize,
        out: Vec<u8>,
        write_shut: bool,
        reads: usize,
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.incoming.is_empty() {
                return if self.fin {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.incoming.len());
            for (dst, src) in buf.iter_mut().zip(self.incoming.drain(..n)) {
                *dst = src;
            }
            Ok(n)
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            assert!(!self.write_shut, "write after shutdown(Write)");
            if self.write_room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.write_room);
            self.write_room -= n;
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Fake {
        fn shutdown_write(&self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Harness {
        conn: Connection<Fake>,
        scratch: Vec<u8>,
        cap: usize,
        echoed: u64,
    }

    impl Harness {
        fn new(cap: usize, scratch: usize) -> Self {
            Harness {
                conn: Connection::new(Fake::default(), "127.0.0.1:9".parse().unwrap()),
                scratch: vec![0; scratch],
                cap,
                echoed: 0,
            }
        }

        fn fake(&mut self) -> &mut Fake {
            &mut self.conn.sock
        }

        /// An event for both directions, as epoll reports after a change.
        fn event(&mut self) -> Step {
            self.conn.can_read = true;
            self.conn.can_write = true;
            let mut io = Io {
                scratch: &mut self.scratch,
                max_buffered: self.cap,
                verbose: false,
                echoed: 0,
                progressed: false,
            };
            let step = self.conn.drive(&mut io).unwrap();
            self.echoed += io.echoed;
            if step == Step::Finished {
                self.conn.sock.write_shut = true;
            }
            step
        }
    }

    #[test]
    fn echoes_directly_without_buffering_when_the_kernel_takes_it() {
        let mut h = Harness::new(1024, 256);
        h.fake().incoming.extend(b"hello");
        h.fake().write_room = usize::MAX;
        assert_eq!(h.event(), Step::Wait);
        assert_eq!(h.conn.sock.out, b"hello");
        assert_eq!(h.conn.owed.capacity(), 0, "no buffer was committed");
        // One read with data, one that says WouldBlock.
        assert_eq!(h.conn.sock.reads, 2);
        assert_eq!(h.echoed, 5);
    }

    #[test]
    fn stops_reading_at_the_cap() {
        let mut h = Harness::new(1000, 256);
        h.fake().incoming.extend(vec![7u8; 10_000]);
        assert_eq!(h.event(), Step::Wait);
        assert_eq!(h.conn.state, State::Paused);
        assert_eq!(h.conn.owed.len(), 1000);
        assert_eq!(h.conn.sock.incoming.len(), 9000);
        // More events while the client still does not read: no reads at all.
        let reads = h.conn.sock.reads;
        h.event();
        h.event();
        assert_eq!(h.conn.sock.reads, reads);
        assert_eq!(h.conn.owed.len(), 1000);
    }

    #[test]
    fn resumes_reading_only_once_the_buffer_drains() {
        let mut h = Harness::new(1000, 256);
        h.fake().incoming.extend(vec![7u8; 10_000]);
        h.event();
        let reads = h.conn.sock.reads;
        h.fake().write_room = 600;
        h.event();
        assert_eq!(h.conn.state, State::Paused, "400 still owed");
        assert_eq!(h.conn.sock.reads, reads);
        h.fake().write_room = 400;
        h.event();
        // Drained, so it read again at once and filled up again.
        assert!(h.conn.sock.reads > reads);
        assert_eq!(h.conn.state, State::Paused);
        assert_eq!(h.conn.owed.len(), 1000);
        assert_eq!(h.conn.sock.incoming.len(), 8000);
    }

    #[test]
    fn half_close_sends_everything_owed_then_fin() {
        let mut h = Harness::new(1 << 20, 4096);
        let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        h.fake().incoming.extend(&data);
        h.fake().fin = true;
        h.fake().write_room = 10_000;
        assert_eq!(h.event(), Step::Wait);
        assert_eq!(h.conn.state, State::Draining);
        for _ in 0..3 {
            h.fake().write_room = 10_000;
            assert_eq!(h.event(), Step::Wait, "FIN must wait for the owed bytes");
        }
        h.fake().write_room = 10_000;
        assert_eq!(h.event(), Step::Finished);
        assert_eq!(h.conn.sock.out, data);
    }

    #[test]
    fn a_slow_reader_never_costs_more_than_the_cap() {
        // The kernel takes a little at a time, as from a client that reads
        // slowly: reads of whatever room is left make the buffer grow in odd
        // steps, and doubling them would overshoot 256 KiB.
        let cap = 256 * 1024;
        let mut h = Harness::new(cap, 64 * 1024);
        h.fake().incoming.extend(vec![3u8; 4 << 20]);
        h.fake().write_room = 20_000;
        for _ in 0..200 {
            h.event();
            assert!(h.conn.owed.capacity() <= cap, "{}", h.conn.owed.capacity());
            h.fake().write_room = 3_000;
        }
        assert_eq!(h.conn.owed.capacity(), cap, "the full cap was used");
    }

    #[test]
    fn a_drained_large_buffer_is_released() {
        let mut h = Harness::new(256 * 1024, 64 * 1024);
        h.fake().incoming.extend(vec![1u8; 200_000]);
        h.event();
        assert!(h.conn.owed.capacity() > KEEP_OWED_CAPACITY);
        h.fake().write_room = usize::MAX;
        h.event();
        assert!(h.conn.owed.is_empty());
        assert_eq!(h.conn.owed.capacity(), 0);
    }

    #[test]
    fn stopping_sends_what_is_owed_then_fin_then_drops_unread_input() {
        let mut h = Harness::new(1000, 256);
        h.fake().incoming.extend(vec![7u8; 10_000]);
        h.event();
        assert_eq!(h.conn.state, State::Paused);
        h.conn.stop();
        // The client will read everything, then close.
        h.fake().fin = true;
        h.fake().write_room = 600;
        assert_eq!(h.event(), Step::Wait, "400 still owed");
        assert_eq!(h.conn.state, State::Stopping);
        assert_eq!(
            h.conn.sock.incoming.len(),
            9000,
            "nothing more read to echo"
        );
        h.fake().write_room = usize::MAX;
        assert_eq!(h.event(), Step::Finished);
        assert_eq!(
            h.conn.sock.out,
            vec![7u8; 1000],
            "every owed byte, nothing more"
        );
        assert!(
            h.conn.sock.incoming.is_empty(),
            "unread input dropped before the close"
        );
    }

    proptest! {
        /// Whatever the client sends and however the kernel takes it, the
        /// echo is the input, in order, and never more than the cap is held.
        #[test]
        fn echo_is_exact_and_bounded(
            len in 0usize..20_000,
            cap in 1usize..3000,
            scratch in 1usize..2000,
            rooms in proptest::collection::vec(0usize..4000, 1..40),
            fin in any::<bool>(),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut h = Harness::new(cap, scratch);
            h.fake().incoming.extend(&data);
            h.fake().fin = fin;
            let mut finished = false;
            for room in rooms.iter().copied().chain([usize::MAX; 2]) {
                h.fake().write_room = room;
                finished = h.event() == Step::Finished;
                prop_assert!(h.conn.owed.len() <= cap);
                prop_assert!(h.conn.owed.capacity() <= cap, "capacity {} over cap {}", h.conn.owed.capacity(), cap);
                if finished {
                    break;
                }
            }
            // With unlimited room at the end everything has come back.
            prop_assert_eq!(&h.conn.sock.out, &data);
            prop_assert_eq!(h.echoed, len as u64);
            prop_assert_eq!(finished, fin);
        }
    }
}
