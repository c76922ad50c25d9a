//! The article's second server: one OS thread per client.
//!
//! Simple and fast for a few clients; each one costs a thread (stack, kernel
//! task, scheduler work), which is what the event-driven models avoid.

use crate::accept::accept_loop;
use crate::client_thread::{serve, OpenConnections, BUF_SIZE};
use crate::{Config, ServerError, Shutdown, Stats};
use std::time::Duration;

/// Stack for a client thread: the echo loop needs little, and the 2 MiB
/// default would reserve gigabytes of address space at 1000+ clients.
const STACK_SIZE: usize = 128 * 1024;

/// Serve each client on its own thread until shutdown.
pub fn run(
    listener: std::net::TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let open = OpenConnections::watch(&listener, shutdown, config.drain_timeout)?;
    // The scope joins every client thread before `run` returns; shutdown has
    // closed their sockets by then, so each one ends promptly.
    std::thread::scope(|scope| {
        accept_loop(&listener, shutdown, |stream, peer| {
            if !stats.admit(config.max_connections) {
                // Dropping the stream closes it at once.
                return;
            }
            let (id, stream) = open.insert(stream);
            let thread_open = open.clone();
            let spawned = std::thread::Builder::new()
                .name("client".into())
                .stack_size(STACK_SIZE)
                .spawn_scoped(scope, move || {
                    let mut buf = vec![0u8; BUF_SIZE];
                    serve(
                        &stream,
                        peer,
                        &mut buf,
                        config,
                        shutdown,
                        thread_open.wake(),
                        stats,
                    );
                    thread_open.remove(id);
                    stats.connection_closed();
                });
            if let Err(e) = spawned {
                // The closure, and with it the socket, was dropped: the client sees a close.
                tracing::warn!("cannot start a thread for {peer}: {e}; closed that connection");
                open.remove(id);
                stats.connection_closed();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    });
    Ok(())
}
