//! The echo servers: one module per architecture, and the parts they share.
//!
//! Every model speaks RFC 862 (every byte comes back, in order) over the same
//! listener, obeys the same [`Shutdown`] and counts into the same [`Stats`], so
//! the binary can swap them freely and `bench` can compare them fairly.
//!
//! | model        | file                 | one thread per…           |
//! |--------------|----------------------|---------------------------|
//! | `blocking`   | `blocking.rs`        | server (one client at a time) |
//! | `threaded`   | `threaded.rs`        | client                    |
//! | `epoll`      | `epoll/`             | worker (readiness loop)   |
//! | `tokio`      | `tokio.rs`           | worker (tokio runtime)    |
//! | `completion` | `completion/`        | worker (a completion port)|
#![deny(missing_docs, rust_2018_idioms)]

mod accept;
pub mod blocking;
mod client_thread;
pub mod completion;
pub mod epoll;
mod listener;
mod model;
mod reclaim;
mod shutdown;
mod stats;
mod sys;
pub mod threaded;
pub mod tokio;
mod verbose;
mod wake;
mod workers;

pub use accept::AcceptBackoff;
pub use listener::{bind, bind_group, join_group, ListenError};
pub use model::{Model, ParseModelError};
pub use shutdown::Shutdown;
pub use stats::{Stats, Summary};
pub use verbose::printable_preview;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// Default cap on bytes a server holds for one connection whose peer is not
/// reading. Past it the server stops receiving from that connection.
pub const DEFAULT_MAX_BUFFERED: usize = 256 * 1024;

/// What every model needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads for the event-driven models (ignored by blocking and threaded).
    pub workers: usize,
    /// Log the article's per-client events (connect, bytes received, disconnect).
    pub verbose: bool,
    /// The most bytes held for one connection before it stops being read.
    pub max_buffered: usize,
    /// When the completion model waits for a batch of completions before
    /// handling them.
    pub coalesce: Coalesce,
    /// Let the completion model relay bulk connections in the kernel
    /// (socket → pipe → socket with `splice`) where the port can.
    pub relay: bool,
    /// How the completion model spreads connections over its workers.
    pub spread: Spread,
    /// The completion model on io_uring: each worker's ring submits through
    /// a kernel thread (`SQPOLL`) that sleeps after this long without work.
    /// Binding fails where the kernel refuses it. `None`: system calls.
    pub sqpoll: Option<Duration>,
    /// Connections served at once, at most; each one over it is closed at
    /// once and counted as rejected. `None`: no limit.
    pub max_connections: Option<usize>,
    /// Close a connection that has neither sent a byte nor taken one of its
    /// echo for this long. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// On shutdown, how long to keep sending the echoes already owed to
    /// peers that still read, before closing every connection regardless.
    pub drain_timeout: Duration,
}

/// Default for [`Config::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// When the completion model's workers wait for a batch of completions
/// instead of handling each as it comes (io_uring's `min_wait`, Linux 6.12+;
/// elsewhere every variant handles them at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coalesce {
    /// Only while a worker relays two or more bulk connections in the
    /// kernel: then it waits up to [`RELAY_COALESCE`] for one completion
    /// per two relaying connections (at most 32); waiting for one from each
    /// would hold every peer until the slowest had answered. A relay's moves are cheap and its waits
    /// many, and each wake-up is paid by the peer's side of the machine;
    /// messages that large take milliseconds, so the wait costs them little.
    #[default]
    WhileRelaying,
    /// Never: every completion is handled at once (`--coalesce 0`).
    Never,
    /// Always wait up to this long for a batch (`--coalesce D`).
    Always(Duration),
}

/// How long a relaying worker waits for a batch ([`Coalesce::WhileRelaying`]).
pub const RELAY_COALESCE: Duration = Duration::from_micros(500);

/// How connections reach the workers of the completion model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// One `SO_REUSEPORT` listener per worker, each with its own (multishot)
    /// accept: the kernel hashes each new connection to a worker.
    #[default]
    ReusePort,
    /// One acceptor thread takes every connection and hands them to the
    /// workers in turn, waking each through its port.
    Handoff,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: default_workers(),
            verbose: false,
            max_buffered: DEFAULT_MAX_BUFFERED,
            coalesce: Coalesce::default(),
            relay: true,
            spread: Spread::default(),
            sqpoll: None,
            max_connections: None,
            idle_timeout: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// The most workers a server takes. Each worker is an OS thread with an
/// event loop of its own (an epoll instance, an io_uring ring with its
/// locked memory, a tokio worker) and, for epoll and the completion model,
/// a listener of its own: far past the CPUs it adds no parallelism, only
/// descriptors, memory and scheduling, and at some point the kernel refuses
/// the rings. 1024 is well above any CPU count this runs on.
pub const MAX_WORKERS: usize = 1024;

/// The number of CPUs this process may run on, at least 1.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Errors a server can stop with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be set up.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// io_uring (or the platform's completion port) cannot be used here.
    #[error(transparent)]
    CompletionUnavailable(#[from] ringport_completion::UnavailableError),
    /// Any other I/O failure that stops the whole server.
    #[error("{context}: {error}")]
    Io {
        /// What the server was doing.
        context: String,
        /// The underlying error (in the message, so not a `source`: a
        /// report that prints the chain would say it twice).
        error: std::io::Error,
    },
}

impl ServerError {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        ServerError::Io {
            context: context.into(),
            error,
        }
    }
}

/// A bound server, ready to [`run`](Server::run).
///
/// Binding is separate from running so the caller can print the resolved
/// address (the `listening on` line) only once the kernel is accepting.
pub struct Server {
    model: Model,
    listener: TcpListener,
    config: Config,
    prepared: Option<completion::Prepared>,
}

impl Server {
    /// Bind `addr` for `model`. `Model::Auto` must be resolved first with
    /// [`Model::resolve`].
    pub fn bind(model: Model, addr: SocketAddr, config: Config) -> Result<Server, ServerError> {
        let model = model.resolve().0;
        // The completion model checks the kernel before it binds, so an
        // unusable io_uring is reported as such, not as a later failure.
        let prepared = match model {
            Model::Completion => Some(completion::Prepared::probe(config.sqpoll)?),
            _ => None,
        };
        // A listener per worker: for epoll, and for the completion model with
        // a port per worker; the workers of a shared port (IOCP) all accept on
        // the one listener.
        let per_worker_ports = prepared.as_ref().is_some_and(|p| !p.features().shared_port);
        let per_worker_listeners = model.wants_reuseport()
            && (model != Model::Completion
                || (per_worker_ports && config.spread == Spread::ReusePort));
        let listener = if per_worker_listeners {
            bind_group(addr)?
        } else {
            bind(addr)?
        };
        Ok(Server {
            model,
            listener,
            config,
            prepared,
        })
    }

    /// The address the server accepts on, with the real port when 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The model this server runs.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Serve until `shutdown` is triggered, then close every connection and return.
    pub fn run(self, shutdown: Shutdown, stats: &Stats) -> Result<(), ServerError> {
        let Server {
            model,
            listener,
            config,
            prepared,
        } = self;
        // Only the completion model uses what was prepared (its probed port).
        // Every model frees a slow reader's buffers when it can; the trimmer
        // makes sure the process actually shrinks (see `reclaim`).
        reclaim::with_trimmer(stats, || match model {
            Model::Blocking => blocking::run(listener, &config, &shutdown, stats),
            Model::Threaded => threaded::run(listener, &config, &shutdown, stats),
            Model::Epoll => epoll::run(listener, &config, &shutdown, stats),
            Model::Tokio => tokio::run(listener, &config, &shutdown, stats),
            Model::Completion => completion::run(
                prepared.expect("probed at bind"),
                listener,
                &config,
                &shutdown,
                stats,
            ),
            Model::Auto => unreachable!("resolved at bind"),
        })
    }
}
