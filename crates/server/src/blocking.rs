//! The article's first server: one client at a time, blocking calls.
//!
//! `accept` → read/write until the client closes → `accept` again. Other
//! clients wait in the kernel's backlog. It is the simplest correct server and
//! the baseline that shows why the others exist. The echo loop it runs for
//! each client is the one `threaded` runs too (`client_thread.rs`).

use crate::accept::accept_loop;
use crate::client_thread::{serve, OpenConnections, BUF_SIZE};
use crate::{Config, ServerError, Shutdown, Stats};
use std::net::TcpListener;

/// Serve clients one after another until shutdown.
pub fn run(
    listener: TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let open = OpenConnections::watch(&listener, shutdown, config.drain_timeout)?;
    let mut buf = vec![0u8; BUF_SIZE];
    accept_loop(&listener, shutdown, |stream, peer| {
        // One client at a time: a limit of 1 or more is never reached.
        if !stats.admit(config.max_connections) {
            return;
        }
        let (id, stream) = open.insert(stream);
        serve(
            &stream,
            peer,
            &mut buf,
            config,
            shutdown,
            open.wake(),
            stats,
        );
        open.remove(id);
        stats.connection_closed();
    });
    Ok(())
}
