//! The completion model: the article's I/O Completion Port server, on the
//! completion port of `ringport-completion` (io_uring on Linux, IOCP on
//! Windows).
//!
//! Two ways to run the same state machine (`conn.rs`), chosen by what the
//! port is, never by the OS name:
//!
//! * **A port per worker** (io_uring: a ring belongs to one thread). Each
//!   worker owns a ring, a listener and a table of its own connections.
//!   Listeners share the address with `SO_REUSEPORT`, so the kernel spreads
//!   new connections across workers and no connection ever moves between
//!   threads; the table's one lock is only ever taken by its owner. A worker
//!   posts a multishot accept, then for each connection a (multishot) receive.
//! * **One shared port** (IOCP, [`Features::shared_port`]), as in the
//!   article: a pool of twice as many workers as `--workers` (CPUs by
//!   default) dequeues from one port, so while some are inside a system call
//!   the others keep going, and the port lets one per CPU run. Any worker may
//!   get any connection's completion, so they share one table, sharded, and a
//!   completion is handled with its connection's shard locked. One listener;
//!   several `AcceptEx` are kept posted on it and each completed one is
//!   re-posted, by whichever worker saw it.
//!
//! Every completion is routed by its token (the connection's slot, or the
//! listener) and its kind (the operation record) to the connection's state
//! machine, whose answers are submitted back to the port. Nothing blocks and
//! nothing is polled: a worker sleeps in the kernel until completions are
//! ready, then handles them in one batch.

mod conn;
mod table;

use crate::accept::AcceptBackoff;
use crate::verbose::log_received;
use crate::workers::{run_pool, IdleSweep};
use crate::{Coalesce, Config, ServerError, Shutdown, Spread, Stats, RELAY_COALESCE};
use conn::{Conn, EndReason};
use ringport_completion::{
    Completion, Features, Interest, OpId, OpKind, Port, PortConfig, PortShare, Relay, Socket, Token,
};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use table::Table;

pub use ringport_completion::UnavailableError;

/// The listener's token; connection tokens are slot indices, far below it.
const LISTENER: Token = u64::MAX - 1;
/// How long shutdown waits for cancelled operations, after the drain
/// deadline, before leaving the rest to the port's teardown.
const DRAIN_LIMIT: Duration = Duration::from_millis(1500);
/// Completions to batch when coalescing ([`Coalesce`]).
const COALESCE_BATCH: usize = 32;
/// Shards of the connection table shared by the workers of a shared port:
/// enough that two workers rarely want the same lock.
const SHARED_SHARDS: usize = 64;
/// Accepts kept posted on a shared port's listener, at least: enough that a
/// burst of connections finds one waiting while completed ones are re-posted.
const MIN_ACCEPTS_POSTED: usize = 4;

/// The result of probing the kernel, kept from bind time to run time.
#[derive(Debug, Clone)]
pub struct Prepared {
    port_config: PortConfig,
    features: Features,
}

impl Prepared {
    /// Check that a port can be built here (io_uring present and allowed).
    pub fn probe() -> Result<Prepared, UnavailableError> {
        let port_config = PortConfig::default();
        let features = ringport_completion::probe(&port_config)?;
        Ok(Prepared {
            port_config,
            features,
        })
    }

    /// What the kernel offers and the model will use.
    pub fn features(&self) -> &Features {
        &self.features
    }
}

/// Serve until shutdown: a port per worker, or one port shared by a pool.
pub fn run(
    prepared: Prepared,
    listener: TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    if config.verbose {
        tracing::info!("completion port: {}", prepared.features);
        if prepared.features.relay {
            // -v is the one case that turns the relay off by itself.
            tracing::info!(
                "kernel relay not used: with -v every byte is shown, so it passes through the server"
            );
        }
    }
    if prepared.features.shared_port {
        run_shared(&prepared, listener, config, shutdown, stats)
    } else {
        run_per_worker(&prepared, listener, config, shutdown, stats)
    }
}

/// One port per worker thread, each with its own connections.
fn run_per_worker(
    prepared: &Prepared,
    listener: TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let workers = config.workers.max(1);
    if config.verbose {
        tracing::info!(
            "completion model: {workers} workers, one port each, spread by {:?}",
            config.spread
        );
    }
    // Either every worker accepts on its own SO_REUSEPORT listener, or one
    // acceptor thread hands connections out through per-worker inboxes.
    let mut hubs: Vec<Hub> = Vec::with_capacity(workers);
    let mut acceptor = None;
    match config.spread {
        Spread::ReusePort => {
            let mut others = Vec::with_capacity(workers - 1);
            for _ in 1..workers {
                others.push(crate::listener::join_group(&listener)?);
            }
            hubs.push(Hub::new(Source::Listener(listener), 1, 1));
            hubs.extend(
                others
                    .into_iter()
                    .map(|l| Hub::new(Source::Listener(l), 1, 1)),
            );
        }
        Spread::Handoff => {
            let inboxes: Vec<Arc<Inbox>> =
                (0..workers).map(|_| Arc::new(Inbox::default())).collect();
            hubs.extend(
                inboxes
                    .iter()
                    .map(|i| Hub::new(Source::Inbox(i.clone()), 1, 1)),
            );
            acceptor = Some((listener, inboxes));
        }
    }
    let jobs: Vec<_> = hubs
        .into_iter()
        .map(|hub| {
            let handle = Handle::Own(prepared.port_config.clone());
            move || worker(&hub, handle, config, shutdown, stats)
        })
        .collect();
    run_pool("completion", jobs, shutdown, || {
        if let Some((listener, inboxes)) = acceptor {
            hand_off(&listener, &inboxes, shutdown);
        }
    })
}

/// One port shared by a pool of workers, with one listener and one table.
fn run_shared(
    prepared: &Prepared,
    listener: TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    // Twice the CPUs, as in the article: a worker inside a system call (or
    // waiting for a connection's lock) leaves its CPU to another.
    let pool = 2 * config.workers.max(1);
    if config.verbose {
        tracing::info!("completion model: {pool} workers sharing one port and one listener");
        if config.spread == Spread::Handoff {
            tracing::info!("--spread handoff does not apply to a shared port: every worker accepts on the one listener");
        }
    }
    // This thread keeps the first handle, so the port lives until every
    // worker is done; dropping it last tears the port down.
    let port = Port::new(&prepared.port_config)?;
    let accepts = pool.max(MIN_ACCEPTS_POSTED);
    let hub = Hub::new(Source::Listener(listener), SHARED_SHARDS, accepts);
    let shares: Vec<PortShare> = (0..pool)
        .map(|_| port.try_share().expect("a shared port gives out shares"))
        .collect();
    let hub = &hub;
    let jobs: Vec<_> = shares
        .into_iter()
        .map(|share| move || worker(hub, Handle::Share(share), config, shutdown, stats))
        .collect();
    let result = run_pool("completion", jobs, shutdown, || {});
    drop(port);
    result
}

/// Where a worker's connections come from.
enum Source {
    /// A listener, accepted on through the port.
    Listener(TcpListener),
    /// Sockets accepted by the acceptor thread.
    Inbox(Arc<Inbox>),
}

/// Sockets waiting for a worker, and how to wake it.
#[derive(Default)]
struct Inbox {
    sockets: Mutex<Vec<Socket>>,
    waker: Mutex<Option<ringport_completion::Waker>>,
}

/// The acceptor thread of `Spread::Handoff`: blocking accepts, round robin.
fn hand_off(listener: &TcpListener, inboxes: &[Arc<Inbox>], shutdown: &Shutdown) {
    if let Ok(l) = listener.try_clone() {
        shutdown.on_trigger(move || crate::accept::interrupt_accept(&l));
    }
    let mut next = 0usize;
    crate::accept::accept_loop(listener, shutdown, |stream, _peer| {
        let inbox = &inboxes[next % inboxes.len()];
        next = next.wrapping_add(1);
        inbox.sockets.lock().unwrap().push(Socket::from(stream));
        if let Some(w) = inbox.waker.lock().unwrap().as_ref() {
            w.wake();
        }
    });
}

/// How a worker gets its handle on a port.
enum Handle {
    /// Build its own (on its own thread: io_uring's `SINGLE_ISSUER`).
    Own(PortConfig),
    /// Use the shared port.
    Share(PortShare),
}

/// What the workers of one port share: one worker's own things with a port
/// per worker, everybody's with a shared port.
struct Hub {
    source: Source,
    conns: Table<Entry>,
    accepts: Mutex<Accepts>,
}

impl Hub {
    fn new(source: Source, shards: usize, accepts_wanted: usize) -> Hub {
        Hub {
            source,
            conns: Table::new(shards),
            accepts: Mutex::new(Accepts {
                ops: Vec::new(),
                wanted: accepts_wanted,
                paused_until: None,
                backoff: AcceptBackoff::new(),
                stopped: false,
            }),
        }
    }

    fn accepts(&self) -> std::sync::MutexGuard<'_, Accepts> {
        self.accepts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The accept operations posted on a listener.
struct Accepts {
    /// In flight (a multishot accept stays here until its last completion).
    ops: Vec<OpId>,
    /// How many to keep posted: one multishot accept, or several one-shot
    /// `AcceptEx` on a shared port.
    wanted: usize,
    paused_until: Option<Instant>,
    backoff: AcceptBackoff,
    /// Shutdown began: post no more.
    stopped: bool,
}

/// A connection in the table: its socket (given to the port when its close
/// is submitted), its peer (kept only for `-v`), and its state machine,
/// which holds everything else.
struct Entry {
    conn: Conn<OpId, Completion>,
    socket: Option<Socket>,
    /// The pipe of a relaying connection.
    relay: Option<Relay>,
    peer: Option<SocketAddr>,
}

/// A connection's operations, submitted to the port under its token.
struct Submit<'a> {
    port: &'a mut Port,
    socket: &'a mut Option<Socket>,
    relay: &'a mut Option<Relay>,
    /// The worker's count of relaying connections.
    relays: &'a mut usize,
    /// The worker's open connections, relaying or not, this one included:
    /// the relay pipes' budget is shared among them.
    open: usize,
    token: Token,
    stats: &'a Stats,
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

struct Worker<'a> {
    port: Port,
    hub: &'a Hub,
    /// Other workers dequeue from the same port.
    shared: bool,
    config: &'a Config,
    shutdown: &'a Shutdown,
    stats: &'a Stats,
    echoed: u64,
    /// Connections of this worker relaying in the kernel now.
    relays: usize,
    /// Connections this worker accepted and has not closed yet.
    open: usize,
    stopping: Option<Instant>,
    /// The drain deadline passed and every connection was aborted.
    forced: bool,
    /// With an idle timeout: when this batch of completions was reaped (one
    /// clock read per batch, not per completion), and when to sweep next.
    now: Instant,
    sweep: Option<IdleSweep>,
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

/// The batch a worker with `relays` relaying connections waits for, and
/// for how long at most (see [`Coalesce`]).
fn batching(coalesce: Coalesce, relays: usize) -> Option<(usize, Duration)> {
    match coalesce {
        Coalesce::Always(d) => Some((COALESCE_BATCH, d)),
        // One completion per relaying connection: a lone relay is never
        // held back waiting for others.
        Coalesce::WhileRelaying if relays > 0 => Some((relays.min(COALESCE_BATCH), RELAY_COALESCE)),
        Coalesce::WhileRelaying | Coalesce::Never => None,
    }
}

fn worker(
    hub: &Hub,
    handle: Handle,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let (port, shared) = match handle {
        Handle::Own(port_config) => (Port::new(&port_config)?, false),
        Handle::Share(share) => (share.into_port(), true),
    };
    let waker = port.waker();
    if let Source::Inbox(inbox) = &hub.source {
        *inbox.waker.lock().unwrap() = Some(waker.clone());
        // Sockets that arrived before the waker was set.
        waker.wake();
    }
    // On a shared port this posts one wake per worker; see the end of the
    // loop for why that is enough.
    let on_stop = waker.clone();
    shutdown.on_trigger(move || on_stop.wake());
    let mut w = Worker {
        port,
        hub,
        shared,
        config,
        shutdown,
        stats,
        echoed: 0,
        relays: 0,
        open: 0,
        stopping: None,
        forced: false,
        now: Instant::now(),
        sweep: IdleSweep::new(config.idle_timeout, Instant::now()),
    };
    let mut batch: Vec<Completion> = Vec::with_capacity(256);
    loop {
        if shutdown.is_triggered() && w.stopping.is_none() {
            w.begin_stop();
        }
        if let Some(since) = w.stopping {
            let drained = hub.conns.live() == 0 && hub.accepts().ops.is_empty();
            if drained || since.elapsed() > config.drain_timeout + DRAIN_LIMIT {
                break;
            }
            if !w.forced && since.elapsed() > config.drain_timeout {
                w.force_all();
            }
        }
        let paused_until = w.arm_accepts();
        let wake_at = match (paused_until, w.sweep.map(|s| s.next())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match (w.stopping, wake_at) {
            (Some(_), _) => Some(Duration::from_millis(50)),
            (None, Some(t)) => Some(t.saturating_duration_since(Instant::now())),
            (None, None) => None,
        };
        w.port
            .wait(&mut batch, timeout, batching(config.coalesce, w.relays))
            .map_err(|e| ServerError::io("waiting for completions failed", e))?;
        if w.sweep.is_some() {
            w.now = Instant::now();
        }
        for c in batch.drain(..) {
            w.handle(c);
        }
        w.sweep_idle();
        stats.add_bytes(std::mem::take(&mut w.echoed));
    }
    if w.shared {
        // The shutdown wakes went to whichever workers were waiting, and one
        // worker may have taken several. Each leaving worker passes one on,
        // so the last one still asleep is woken by the others' exits at worst.
        waker.wake();
    }
    Ok(())
}

impl Worker<'_> {
    /// Keep the wanted number of accepts posted. Returns when accepting may
    /// resume, if it is paused after a resource error.
    fn arm_accepts(&mut self) -> Option<Instant> {
        let Source::Listener(l) = &self.hub.source else {
            return None;
        };
        if self.stopping.is_some() {
            return None;
        }
        let mut a = self.hub.accepts();
        if a.stopped {
            return None;
        }
        if let Some(t) = a.paused_until {
            if Instant::now() < t {
                return Some(t);
            }
            a.paused_until = None;
        }
        while a.ops.len() < a.wanted {
            let op = self.port.accept(l, LISTENER);
            a.ops.push(op);
        }
        None
    }

    fn begin_stop(&mut self) {
        self.stopping = Some(Instant::now());
        let hub = self.hub;
        {
            let mut a = hub.accepts();
            a.stopped = true;
            for &op in &a.ops {
                self.port.cancel(op);
            }
        }
        // On a shared port every worker sweeps once; asking a connection to
        // shut down twice does nothing the second time.
        hub.conns.for_each(|token, e| {
            e.conn.shutdown();
            self.pump(token, e);
        });
    }

    /// The drain deadline passed: end every connection still open,
    /// dropping what it is still owed.
    fn force_all(&mut self) {
        self.forced = true;
        let hub = self.hub;
        hub.conns.for_each(|token, e| {
            e.conn.abort(EndReason::Shutdown);
            self.pump(token, e);
        });
    }

    /// Abort every connection that has moved no byte for the idle timeout.
    /// One periodic sweep for the worker, which it wakes for anyway, instead
    /// of a timer per connection; on a shared port each worker sweeps the
    /// whole table, and aborting twice does nothing the second time.
    fn sweep_idle(&mut self) {
        let now = self.now;
        let Some(limit) = self.sweep.as_mut().and_then(|s| s.due(now)) else {
            return;
        };
        let hub = self.hub;
        hub.conns.for_each(|token, e| {
            if !e.conn.is_ending() && now.saturating_duration_since(e.conn.last_active()) >= limit {
                e.conn.abort(EndReason::Idle);
                self.pump(token, e);
            }
        });
    }

    fn handle(&mut self, c: Completion) {
        match c.kind {
            OpKind::Wake => self.drain_inbox(),
            OpKind::Accept => self.on_accept(c),
            OpKind::Recv => self.on_recv(c),
            OpKind::Send => self.on_send(c),
            OpKind::Close => self.on_close(c),
            OpKind::Ready => self.on_ready(c),
        }
    }

    fn on_accept(&mut self, mut c: Completion) {
        let accepted = {
            let mut a = self.hub.accepts();
            if !c.more {
                a.ops.retain(|&op| op != c.op);
            }
            match &c.result {
                Ok(_) => c.take_socket(),
                Err(e) if ringport_completion::is_cancelled(e) => None,
                Err(e) => {
                    if let Some(pause) = a.backoff.on_error(e) {
                        // Re-posted after the pause (a multishot accept ends on error).
                        a.paused_until = Some(Instant::now() + pause);
                    }
                    None
                }
            }
        };
        // Released only after its id left `ops`, so nobody cancels it later.
        let _ = self.port.release(c);
        if let Some(fd) = accepted {
            self.add_connection(fd);
        }
    }

    fn drain_inbox(&mut self) {
        let sockets = match &self.hub.source {
            Source::Inbox(inbox) => std::mem::take(&mut *inbox.sockets.lock().unwrap()),
            Source::Listener(_) => return,
        };
        for socket in sockets {
            self.add_connection(socket);
        }
    }

    fn add_connection(&mut self, socket: Socket) {
        // A worker's own shutdown sweep covers every connection it added
        // before, so it must add none after; on a shared port another
        // worker's sweep may also have passed already, hence the shared flag.
        if self.stopping.is_some() || self.shutdown.is_triggered() {
            drop(socket);
            return;
        }
        crate::sys::nodelay_if_not_inherited(|| socket.set_nodelay());
        let peer = if self.config.verbose {
            socket.peer_addr().ok()
        } else {
            None
        };
        if let Some(p) = peer {
            tracing::info!("client connected from {p}");
        }
        if !self.stats.admit(self.config.max_connections) {
            // Over the limit: closed before any operation was started on it.
            if let Some(p) = peer {
                tracing::info!("client {p} refused: --max-connections reached");
            }
            drop(socket);
            return;
        }
        let features = self.port.features();
        // With -v the bytes are shown as they arrive, so they must pass
        // through the server's memory: no relay then. A relaying connection
        // stays with the worker that counts it (`relays`), so never on a
        // shared port (IOCP has no relay anyway).
        let relay =
            features.relay && !features.shared_port && self.config.relay && !self.config.verbose;
        let conn = Conn::new(
            features.multishot_recv,
            self.config.max_buffered,
            Instant::now(),
        )
        .lending(features.lent_sends)
        .relaying(relay);
        self.open += 1;
        let token = self.hub.conns.insert(Entry {
            conn,
            socket: Some(socket),
            relay: None,
            peer,
        });
        let hub = self.hub;
        hub.conns.with(token, |e| self.pump(token, e));
    }

    fn on_recv(&mut self, c: Completion) {
        let hub = self.hub;
        let token = c.token;
        let mut c = Some(c);
        hub.conns.with(token, |e| {
            let mut c = c.take().expect("taken once");
            match c.result {
                Ok(0) => e.conn.on_recv_end(Ok(()), c.more),
                Ok(n) if e.conn.lends_next_receive() => {
                    if let Some(p) = e.peer {
                        log_received!(p, self.port.data(&c));
                    }
                    // The bytes go back from the buffer they came in; the
                    // completion (and its buffer) now belongs to that send.
                    let more = c.more;
                    e.conn.on_recv_lent(c, n, more, self.now);
                    self.pump(token, e);
                    return;
                }
                Ok(_) => {
                    let data = self.port.data(&c);
                    if let Some(p) = e.peer {
                        if e.conn.discards_input() {
                            tracing::info!(
                                "{} bytes from {p} discarded: the connection is closing",
                                data.len()
                            );
                        } else {
                            log_received!(p, data);
                        }
                    }
                    e.conn.on_recv_data(data, c.more, self.now);
                }
                Err(_) => {
                    let err = std::mem::replace(&mut c.result, Ok(0)).unwrap_err();
                    e.conn.on_recv_end(Err(err), c.more);
                }
            }
            // With the connection still locked: until now another worker
            // could have wanted to cancel this operation by its id.
            let _ = self.port.release(c);
            self.pump(token, e);
        });
        if let Some(c) = c {
            // No such connection: still give the buffer back.
            let _ = self.port.release(c);
        }
    }

    fn on_send(&mut self, c: Completion) {
        let hub = self.hub;
        let token = c.token;
        let mut c = Some(c);
        hub.conns.with(token, |e| {
            let mut c = c.take().expect("taken once");
            let result = std::mem::replace(&mut c.result, Ok(0));
            let buf = self.port.release(c).unwrap_or_default();
            e.conn.on_send(result, buf, self.now);
            self.pump(token, e);
        });
        if let Some(c) = c {
            let _ = self.port.release(c);
        }
    }

    fn on_ready(&mut self, mut c: Completion) {
        let hub = self.hub;
        let token = c.token;
        let result = std::mem::replace(&mut c.result, Ok(0));
        let _ = self.port.release(c);
        hub.conns.with(token, |e| {
            e.conn.on_ready(result, self.now);
            self.pump(token, e);
        });
    }

    fn on_close(&mut self, c: Completion) {
        let token = c.token;
        let _ = self.port.release(c);
        let Some(mut e) = self.hub.conns.remove(token) else {
            return;
        };
        // On a shared port another worker may close what this one accepted
        // (nothing is relayed there, so the count does not matter).
        self.open = self.open.saturating_sub(1);
        e.conn.on_close();
        debug_assert!(e.conn.is_finished());
        crate::reclaim::freed(e.conn.capacity());
        self.echoed += e.conn.take_echoed();
        self.stats.connection_closed();
        if let Some(p) = e.peer {
            match e.conn.end_reason() {
                Some(EndReason::Error) => tracing::info!("client {p} disconnected (reset)"),
                Some(EndReason::Idle) => tracing::info!("client {p} disconnected (idle)"),
                _ => tracing::info!("client {p} disconnected"),
            }
        }
    }

    /// Let connection `token` start what it needs next, after an event.
    /// The caller holds the connection's lock.
    fn pump(&mut self, token: Token, e: &mut Entry) {
        e.conn.pump(&mut Submit {
            port: &mut self.port,
            socket: &mut e.socket,
            relay: &mut e.relay,
            relays: &mut self.relays,
            open: self.open,
            token,
            stats: self.stats,
        });
        self.echoed += e.conn.take_echoed();
    }
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

    #[test]
    fn batches_while_relaying_one_completion_per_relay() {
        let us = Duration::from_micros;
        assert_eq!(batching(Coalesce::WhileRelaying, 0), None);
        assert_eq!(
            batching(Coalesce::WhileRelaying, 1),
            Some((1, RELAY_COALESCE))
        );
        assert_eq!(
            batching(Coalesce::WhileRelaying, 5),
            Some((5, RELAY_COALESCE))
        );
        assert_eq!(
            batching(Coalesce::WhileRelaying, 1000),
            Some((COALESCE_BATCH, RELAY_COALESCE))
        );
        assert_eq!(batching(Coalesce::Never, 64), None);
        assert_eq!(
            batching(Coalesce::Always(us(100)), 0),
            Some((COALESCE_BATCH, us(100)))
        );
        assert_eq!(
            batching(Coalesce::Always(us(100)), 64),
            Some((COALESCE_BATCH, us(100)))
        );
    }
}
