//! The completion model: the article's I/O Completion Port server, on the
//! completion port of `ringport-completion` (io_uring on Linux).
//!
//! Each worker thread owns one port (a ring) and one listener. Listeners share
//! the address with `SO_REUSEPORT`, so the kernel spreads new connections
//! across workers and no connection ever moves between threads. A worker posts
//! a multishot accept, then for each connection a multishot receive; every
//! completion is routed by its token (the connection's slot: the IOCP
//! completion key) and its kind (the operation record) to the connection's
//! state machine in `conn.rs`, whose answers are submitted back to the port.
//! Nothing blocks and nothing is polled: the worker sleeps in the kernel until
//! completions are ready, then handles them in one batch.

mod conn;

use crate::accept::AcceptBackoff;
use crate::verbose::log_received;
use crate::{Config, ServerError, Shutdown, Spread, Stats};
use conn::{Cmd, Conn, EndReason};
use ringport_completion::{Completion, Features, OpId, OpKind, Port, PortConfig, RawSocket, Token};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use ringport_completion::UnavailableError;

/// The listener's token; connection tokens are slot indices, far below it.
const LISTENER: Token = u64::MAX - 1;
/// How long shutdown waits for cancelled operations before giving up.
const DRAIN_LIMIT: Duration = Duration::from_millis(1500);
/// Completions to batch when `--coalesce` is on.
const COALESCE_BATCH: usize = 32;

/// The result of probing the kernel, kept from bind time to run time.
#[derive(Debug, Clone)]
pub struct Prepared {
    port_config: PortConfig,
    features: Features,
}

impl Prepared {
    /// Check that a port can be built here (io_uring present and allowed).
    pub fn probe(_config: &Config) -> Result<Prepared, UnavailableError> {
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

/// Serve with one port per worker until shutdown.
pub fn run(
    prepared: Prepared,
    listener: TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let workers = config.workers.max(1);
    if config.verbose {
        tracing::info!("completion port: {}", prepared.features);
        tracing::info!(
            "completion model: {workers} workers, one port each, spread by {:?}",
            config.spread
        );
    }
    // Either every worker accepts on its own SO_REUSEPORT listener, or one
    // acceptor thread hands connections out through per-worker inboxes.
    let mut sources: Vec<Source> = Vec::with_capacity(workers);
    let mut acceptor = None;
    match config.spread {
        Spread::ReusePort => {
            for _ in 1..workers {
                sources.push(Source::Listener(crate::listener::join_group(&listener)?));
            }
            sources.insert(0, Source::Listener(listener));
        }
        Spread::Handoff => {
            let inboxes: Vec<Arc<Inbox>> =
                (0..workers).map(|_| Arc::new(Inbox::default())).collect();
            sources.extend(inboxes.iter().cloned().map(Source::Inbox));
            acceptor = Some((listener, inboxes));
        }
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .into_iter()
            .enumerate()
            .map(|(i, source)| {
                let port_config = prepared.port_config.clone();
                std::thread::Builder::new()
                    .name(format!("completion-{i}"))
                    .spawn_scoped(scope, move || {
                        worker(source, &port_config, config, shutdown, stats)
                    })
                    .map_err(|e| ServerError::io("cannot start a worker thread", e))
            })
            .collect();
        if let Some((listener, inboxes)) = acceptor {
            hand_off(&listener, &inboxes, shutdown);
        }
        let mut first_err = None;
        for h in handles {
            let r = match h {
                Ok(h) => h.join().expect("worker panicked"),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                // One failed worker stops the others, so the server exits.
                shutdown.trigger();
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

/// Where a worker's connections come from.
enum Source {
    /// Its own listener, accepted through its port.
    Listener(TcpListener),
    /// Sockets accepted by the acceptor thread.
    Inbox(Arc<Inbox>),
}

/// Sockets waiting for a worker, and how to wake it.
#[derive(Default)]
struct Inbox {
    sockets: Mutex<Vec<RawSocket>>,
    waker: Mutex<Option<ringport_completion::Waker>>,
}

/// The acceptor thread of `Spread::Handoff`: blocking accepts, round robin.
fn hand_off(listener: &TcpListener, inboxes: &[Arc<Inbox>], shutdown: &Shutdown) {
    if let Ok(l) = listener.try_clone() {
        shutdown.on_trigger(move || crate::blocking::interrupt_accept(&l));
    }
    let mut next = 0usize;
    crate::blocking::accept_loop(listener, shutdown, |stream, _peer| {
        let inbox = &inboxes[next % inboxes.len()];
        next = next.wrapping_add(1);
        inbox
            .sockets
            .lock()
            .unwrap()
            .push(ringport_completion::into_raw_socket(stream));
        if let Some(w) = inbox.waker.lock().unwrap().as_ref() {
            w.wake();
        }
    });
}

struct Entry {
    conn: Conn,
    socket: RawSocket,
    peer: Option<SocketAddr>,
    recv_op: Option<OpId>,
    send_op: Option<OpId>,
    /// Where the send in flight started in its buffer.
    send_offset: usize,
}

struct Worker<'a> {
    port: Port,
    source: Source,
    accept_op: Option<OpId>,
    accept_paused_until: Option<Instant>,
    backoff: AcceptBackoff,
    conns: Vec<Option<Entry>>,
    free: Vec<usize>,
    live: usize,
    cmds: Vec<Cmd>,
    config: &'a Config,
    stats: &'a Stats,
    echoed: u64,
    stopping: Option<Instant>,
}

fn worker(
    source: Source,
    port_config: &PortConfig,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    // The port is built on the thread that uses it (SINGLE_ISSUER).
    let port = Port::new(port_config)?;
    let waker = port.waker();
    if let Source::Inbox(inbox) = &source {
        *inbox.waker.lock().unwrap() = Some(waker.clone());
        // Sockets that arrived before the waker was set.
        waker.wake();
    }
    shutdown.on_trigger(move || waker.wake());
    let mut w = Worker {
        port,
        source,
        accept_op: None,
        accept_paused_until: None,
        backoff: AcceptBackoff::new(),
        conns: Vec::new(),
        free: Vec::new(),
        live: 0,
        cmds: Vec::new(),
        config,
        stats,
        echoed: 0,
        stopping: None,
    };
    let coalesce = config.coalesce.map(|d| (COALESCE_BATCH, d));
    let mut batch: Vec<Completion> = Vec::with_capacity(256);
    loop {
        if shutdown.is_triggered() && w.stopping.is_none() {
            w.begin_stop();
        }
        if let Some(since) = w.stopping {
            if (w.live == 0 && w.accept_op.is_none()) || since.elapsed() > DRAIN_LIMIT {
                break;
            }
        }
        w.arm_accept();
        let timeout = match (w.stopping, w.accept_paused_until) {
            (Some(_), _) => Some(Duration::from_millis(50)),
            (None, Some(t)) => Some(t.saturating_duration_since(Instant::now())),
            (None, None) => None,
        };
        w.port
            .wait(&mut batch, timeout, coalesce)
            .map_err(|e| ServerError::io("waiting for completions failed", e))?;
        for c in batch.drain(..) {
            w.handle(c);
        }
        stats.add_bytes(std::mem::take(&mut w.echoed));
    }
    Ok(())
}

impl Worker<'_> {
    fn arm_accept(&mut self) {
        if self.accept_op.is_some() || self.stopping.is_some() {
            return;
        }
        if let Some(t) = self.accept_paused_until {
            if Instant::now() < t {
                return;
            }
            self.accept_paused_until = None;
        }
        if let Source::Listener(l) = &self.source {
            let fd = ringport_completion::raw_listener(l);
            self.accept_op = Some(self.port.accept(fd, LISTENER));
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = Some(Instant::now());
        if let Some(op) = self.accept_op {
            self.port.cancel(op);
        }
        for idx in 0..self.conns.len() {
            if let Some(e) = self.conns[idx].as_mut() {
                e.conn.shutdown(&mut self.cmds);
                self.apply(idx);
            }
        }
    }

    fn handle(&mut self, c: Completion) {
        match c.kind {
            OpKind::Wake => self.drain_inbox(),
            OpKind::Accept => {
                if !c.more {
                    self.accept_op = None;
                }
                match &c.result {
                    Ok(fd) => self.add_connection(*fd as RawSocket),
                    Err(e) if ringport_completion::is_cancelled(e) => {}
                    Err(e) => {
                        if let Some(pause) = self.backoff.on_error(e) {
                            // A multishot accept ends on error; it is re-armed after the pause.
                            self.accept_paused_until = Some(Instant::now() + pause);
                        }
                    }
                }
                let _ = self.port.release(c);
            }
            OpKind::Recv => self.on_recv(c),
            OpKind::Send => self.on_send(c),
            OpKind::Close => self.on_close(c),
        }
    }

    fn drain_inbox(&mut self) {
        let sockets = match &self.source {
            Source::Inbox(inbox) => std::mem::take(&mut *inbox.sockets.lock().unwrap()),
            Source::Listener(_) => return,
        };
        for socket in sockets {
            self.add_connection(socket);
        }
    }

    fn add_connection(&mut self, socket: RawSocket) {
        if self.stopping.is_some() {
            ringport_completion::close_now(socket);
            return;
        }
        let _ = ringport_completion::set_nodelay(socket);
        let peer = if self.config.verbose {
            ringport_completion::peer_addr(socket).ok()
        } else {
            None
        };
        if let Some(p) = peer {
            tracing::info!("client connected from {p}");
        }
        self.stats.connection_opened();
        let multishot = self.port.features().multishot_recv;
        let entry = Entry {
            conn: Conn::new(multishot, self.config.max_buffered),
            socket,
            peer,
            recv_op: None,
            send_op: None,
            send_offset: 0,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.conns[i] = Some(entry);
                i
            }
            None => {
                self.conns.push(Some(entry));
                self.conns.len() - 1
            }
        };
        self.live += 1;
        self.conns[idx].as_mut().unwrap().conn.start(&mut self.cmds);
        self.apply(idx);
    }

    fn on_recv(&mut self, mut c: Completion) {
        let idx = c.token as usize;
        let Some(e) = self.conns.get_mut(idx).and_then(|e| e.as_mut()) else {
            let _ = self.port.release(c);
            return;
        };
        if !c.more {
            e.recv_op = None;
        }
        match c.result {
            Ok(0) => e.conn.on_recv_end(Ok(()), c.more, &mut self.cmds),
            Ok(_) => {
                let data = self.port.data(&c);
                if let Some(p) = e.peer {
                    log_received!(p, data);
                }
                e.conn.on_recv_data(data, c.more, &mut self.cmds);
            }
            Err(_) => {
                let err = std::mem::replace(&mut c.result, Ok(0)).unwrap_err();
                e.conn.on_recv_end(Err(err), c.more, &mut self.cmds);
            }
        }
        let _ = self.port.release(c);
        self.apply(idx);
    }

    fn on_send(&mut self, mut c: Completion) {
        let idx = c.token as usize;
        let result = std::mem::replace(&mut c.result, Ok(0));
        let buf = self.port.release(c).unwrap_or_default();
        let Some(e) = self.conns.get_mut(idx).and_then(|e| e.as_mut()) else {
            return;
        };
        e.send_op = None;
        e.conn.on_send(result, buf, e.send_offset, &mut self.cmds);
        self.apply(idx);
    }

    fn on_close(&mut self, c: Completion) {
        let idx = c.token as usize;
        let _ = self.port.release(c);
        let Some(mut e) = self.conns.get_mut(idx).and_then(|e| e.take()) else {
            return;
        };
        e.conn.on_close();
        debug_assert!(e.conn.is_finished());
        self.echoed += std::mem::take(&mut e.conn.echoed);
        self.free.push(idx);
        self.live -= 1;
        self.stats.connection_closed();
        if let Some(p) = e.peer {
            match e.conn.end_reason() {
                Some(EndReason::Error) => tracing::info!("client {p} disconnected (reset)"),
                _ => tracing::info!("client {p} disconnected"),
            }
        }
    }

    /// Submit what the state machine of connection `idx` asked for.
    fn apply(&mut self, idx: usize) {
        let Some(e) = self.conns.get_mut(idx).and_then(|e| e.as_mut()) else {
            self.cmds.clear();
            return;
        };
        self.echoed += std::mem::take(&mut e.conn.echoed);
        let token = idx as Token;
        for cmd in self.cmds.drain(..) {
            match cmd {
                Cmd::Recv(max) => e.recv_op = Some(self.port.recv(e.socket, token, max)),
                Cmd::Send { buf, offset } => {
                    e.send_offset = offset;
                    e.send_op = Some(self.port.send(e.socket, token, buf, offset));
                }
                Cmd::CancelRecv => {
                    if let Some(op) = e.recv_op {
                        self.port.cancel(op);
                    }
                }
                Cmd::CancelSend => {
                    if let Some(op) = e.send_op {
                        self.port.cancel(op);
                    }
                }
                Cmd::Close => {
                    self.port.close(e.socket, token);
                }
            }
        }
    }
}
