//! The readiness model as most Rust services are written: tokio.
//!
//! A multi-thread runtime with `config.workers` threads; one task accepts and
//! spawns a task per client; each client task runs the same read → write_all
//! loop as the blocking server, over one reused buffer, and tokio turns every
//! `WouldBlock` into a suspended task and an epoll registration under the hood.
//!
//! Shutdown is tokio-util's pair: a [`CancellationToken`] that every task
//! selects on, cancelled from our [`Shutdown`] (SIGINT and SIGTERM are caught
//! for every model by the binary, so `tokio::signal` is not needed here), and
//! a [`TaskTracker`] that lets `run` wait until the client tasks have ended.

use crate::accept::AcceptBackoff;
use crate::blocking::BUF_SIZE;
use crate::verbose::log_received;
use crate::{Config, ServerError, Shutdown, Stats};
use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::{TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serve on a tokio runtime with `config.workers` worker threads until shutdown.
pub fn run(
    listener: std::net::TcpListener,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let runtime = ::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .thread_name("tokio-worker")
        .enable_all()
        .build()
        .map_err(|e| ServerError::io("cannot start the tokio runtime", e))?;
    let token = CancellationToken::new();
    {
        let token = token.clone();
        shutdown.on_trigger(move || token.cancel());
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| ServerError::io("cannot make the listener non-blocking", e))?;
    let client = Client {
        // The server never holds more for a client than this one buffer: it
        // does not read again until the last read has been written back.
        buf_size: BUF_SIZE.min(config.max_buffered.max(1)),
        verbose: config.verbose,
        stats: stats.clone(),
        token: token.clone(),
    };
    runtime.block_on(serve(listener, client, token))
}

/// Accept until cancelled, then wait for every client task to end.
async fn serve(
    listener: std::net::TcpListener,
    client: Client,
    token: CancellationToken,
) -> Result<(), ServerError> {
    // Inside the runtime, as registering with its reactor requires.
    let listener = TcpListener::from_std(listener)
        .map_err(|e| ServerError::io("cannot register the listener with tokio", e))?;
    let tracker = TaskTracker::new();
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = ::tokio::select! {
            _ = token.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                client.stats.connection_opened();
                tracker.spawn(client.clone().serve(stream, peer));
            }
            Err(e) => {
                if let Some(pause) = backoff.on_error(&e) {
                    ::tokio::select! {
                        _ = token.cancelled() => break,
                        _ = ::tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    // Stop accepting before waiting, so no client queues up behind a
    // server that will never answer it.
    drop(listener);
    tracker.close();
    // Every client task selects on the same token, so this wait is short.
    tracker.wait().await;
    Ok(())
}

/// What each client task needs; cloned into it (tasks must own their data).
#[derive(Clone)]
struct Client {
    buf_size: usize,
    verbose: bool,
    stats: Stats,
    token: CancellationToken,
}

impl Client {
    async fn serve(self, mut stream: TcpStream, peer: SocketAddr) {
        if self.verbose {
            tracing::info!("client connected from {peer}");
        }
        let _ = stream.set_nodelay(true);
        let result = ::tokio::select! {
            r = self.echo(&mut stream, peer) => r,
            // Dropping the stream on return closes the connection.
            _ = self.token.cancelled() => Ok(()),
        };
        self.stats.connection_closed();
        match result {
            Ok(()) if self.verbose => tracing::info!("client {peer} disconnected"),
            Ok(()) => {}
            Err(e) if self.verbose => tracing::info!("client {peer} disconnected: {e}"),
            Err(e) => tracing::debug!("client {peer} disconnected: {e}"),
        }
    }

    /// Echo until the client half-closes, then finish our side.
    async fn echo(&self, stream: &mut TcpStream, peer: SocketAddr) -> io::Result<()> {
        let mut buf = vec![0u8; self.buf_size];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if self.verbose {
                log_received!(peer, &buf[..n]);
            }
            // While this waits for the client to read, nothing more is read
            // from it: the bounded buffer and TCP push back together.
            stream.write_all(&buf[..n]).await?;
            self.stats.add_bytes(n as u64);
        }
        // Every byte read was written back before the next read, so the
        // client gets all it is owed, then EOF.
        stream.shutdown().await
    }
}
