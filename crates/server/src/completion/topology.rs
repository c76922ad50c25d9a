//! How the completion model's workers are laid out over ports: a port per
//! worker (io_uring), each with its own listener or an inbox fed by the
//! handoff acceptor thread, or one port shared by a pool (IOCP). What the
//! workers of one port share is their [`Hub`]. The workers themselves are
//! the same either way (`worker.rs`); only where their connections come
//! from and who else dequeues from their port differ.

use super::table::Table;
use super::worker::{worker, Entry};
use super::Prepared;
use crate::accept::AcceptBackoff;
use crate::workers::run_pool;
use crate::{Config, ServerError, Shutdown, Spread, Stats};
use ringport_completion::{OpId, Port, PortConfig, PortShare, Socket};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shards of the connection table shared by the workers of a shared port:
/// enough that two workers rarely want the same lock.
const SHARED_SHARDS: usize = 64;
/// Accepts kept posted on a shared port's listener, at least: enough that a
/// burst of connections finds one waiting while completed ones are re-posted.
const MIN_ACCEPTS_POSTED: usize = 4;

/// One port per worker thread, each with its own connections.
pub(super) fn run_per_worker(
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
pub(super) fn run_shared(
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
pub(super) enum Source {
    /// A listener, accepted on through the port.
    Listener(TcpListener),
    /// Sockets accepted by the acceptor thread.
    Inbox(Arc<Inbox>),
}

/// Sockets waiting for a worker, and how to wake it.
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) sockets: Mutex<Vec<Socket>>,
    pub(super) waker: Mutex<Option<ringport_completion::Waker>>,
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
pub(super) enum Handle {
    /// Build its own (on its own thread: io_uring's `SINGLE_ISSUER`).
    Own(PortConfig),
    /// Use the shared port.
    Share(PortShare),
}

/// What the workers of one port share: one worker's own things with a port
/// per worker, everybody's with a shared port.
pub(super) struct Hub {
    pub(super) source: Source,
    pub(super) conns: Table<Entry>,
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

    pub(super) fn accepts(&self) -> std::sync::MutexGuard<'_, Accepts> {
        self.accepts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The accept operations posted on a listener.
pub(super) struct Accepts {
    /// In flight (a multishot accept stays here until its last completion).
    pub(super) ops: Vec<OpId>,
    /// How many to keep posted: one multishot accept, or several one-shot
    /// `AcceptEx` on a shared port.
    pub(super) wanted: usize,
    pub(super) paused_until: Option<Instant>,
    pub(super) backoff: AcceptBackoff,
    /// Shutdown began: post no more.
    pub(super) stopped: bool,
}
