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
//!
//! This file is the event loop: the workers, accepting, and dispatching
//! readiness to connections. The connection's state machine is in
//! `conn.rs`.

use crate::accept::AcceptBackoff;
use crate::listener::join_group;
use crate::reclaim;
use crate::workers::IdleSweep;
use crate::{Config, ServerError, Shutdown, Stats};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod conn;

use conn::{Connection, Io, Step};

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
