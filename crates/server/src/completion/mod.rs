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
mod submit;
mod table;
mod topology;
mod worker;

use crate::{Config, ServerError, Shutdown, Stats};
use ringport_completion::{Features, PortConfig};
use std::net::TcpListener;

pub use ringport_completion::UnavailableError;

/// The result of probing the kernel, kept from bind time to run time.
#[derive(Debug, Clone)]
pub struct Prepared {
    port_config: PortConfig,
    features: Features,
}

impl Prepared {
    /// Check that a port can be built here (io_uring present and allowed),
    /// submitting through a polling kernel thread if `sqpoll` is given.
    pub fn probe(sqpoll: Option<std::time::Duration>) -> Result<Prepared, UnavailableError> {
        let port_config = PortConfig {
            sqpoll,
            ..PortConfig::default()
        };
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
        topology::run_shared(&prepared, listener, config, shutdown, stats)
    } else {
        topology::run_per_worker(&prepared, listener, config, shutdown, stats)
    }
}
