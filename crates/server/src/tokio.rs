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
use crate::client_thread::BUF_SIZE;
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
    // Cancelled at the drain deadline: ends every client task wherever it is.
    let force = CancellationToken::new();
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
        force: force.clone(),
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    runtime.block_on(serve(listener, client, token, force, config.drain_timeout))
}

/// Accept until cancelled, then wait for every client task to end.
async fn serve(
    listener: std::net::TcpListener,
    client: Client,
    token: CancellationToken,
    force: CancellationToken,
    drain: std::time::Duration,
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
                if client.stats.admit(client.max_connections) {
                    tracker.spawn(client.clone().serve(stream, peer));
                }
                // Otherwise dropping the stream closes it at once.
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
    // Client tasks stop reading at once and finish the write they are in;
    // those whose clients do not read are ended at the deadline.
    if ::tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        force.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// What each client task needs; cloned into it (tasks must own their data).
#[derive(Clone)]
struct Client {
    buf_size: usize,
    verbose: bool,
    stats: Stats,
    /// Shutdown began: stop reading.
    token: CancellationToken,
    /// The drain deadline passed: stop everything.
    force: CancellationToken,
    idle_timeout: Option<std::time::Duration>,
    max_connections: Option<usize>,
}

impl Client {
    async fn serve(self, mut stream: TcpStream, peer: SocketAddr) {
        if self.verbose {
            tracing::info!("client connected from {peer}");
        }
        crate::sys::nodelay_if_not_inherited(|| stream.set_nodelay(true));
        // This select is polled at every wake of the task: a token of the
        // connection's own keeps that poll off the shared token's lock (see
        // `echo`).
        let force = self.force.child_token();
        let result = ::tokio::select! {
            r = self.echo(&mut stream, peer) => r,
            // The drain deadline passed. Dropping the stream on return
            // closes the connection.
            _ = force.cancelled() => Ok(()),
        };
        self.stats.connection_closed();
        match result {
            Ok(()) if self.verbose => tracing::info!("client {peer} disconnected"),
            Ok(()) => {}
            Err(e) if self.verbose => tracing::info!("client {peer} disconnected: {e}"),
            Err(e) => tracing::debug!("client {peer} disconnected: {e}"),
        }
    }

    /// Echo until the client half-closes (or shutdown begins), then finish
    /// our side.
    async fn echo(&self, stream: &mut TcpStream, peer: SocketAddr) -> io::Result<()> {
        let mut buf = vec![0u8; self.buf_size];
        let mut echoed = Echoed::new(&self.stats);
        // One wait for shutdown for the whole connection, on a token of its
        // own: a `cancelled()` made for each read would register with the
        // shared token's waiter list and leave it again, and every poll of a
        // waiting one takes that list's lock, so all the workers would
        // contend for one lock on every message.
        let token = self.token.child_token();
        let cancelled = token.cancelled();
        ::tokio::pin!(cancelled);
        loop {
            // Only the read waits on shutdown: a `write_all` under way sends
            // bytes already read, which the client is owed.
            let n = ::tokio::select! {
                biased;
                _ = &mut cancelled => {
                    stream.shutdown().await?;
                    return discard_until_eof(stream, &mut buf).await;
                }
                r = idle(self.idle_timeout, stream.read(&mut buf)) => r?,
            };
            if n == 0 {
                break;
            }
            if self.verbose {
                log_received!(peer, &buf[..n]);
            }
            // While this waits for the client to read, nothing more is read
            // from it: the bounded buffer and TCP push back together.
            idle(self.idle_timeout, stream.write_all(&buf[..n])).await?;
            echoed.add(n);
        }
        // Every byte read was written back before the next read, so the
        // client gets all it is owed, then EOF.
        stream.shutdown().await
    }
}

/// Bytes a client task echoed, added to the server's shared count now and
/// then rather than per message (one contended atomic per message across
/// the workers otherwise), and in full when the task ends: the count is
/// read when the server stops, after every task has ended.
struct Echoed<'a> {
    stats: &'a Stats,
    pending: u64,
}

impl<'a> Echoed<'a> {
    /// Bytes held back before they are added to the shared count.
    const FLUSH_AT: u64 = 1 << 20;

    fn new(stats: &'a Stats) -> Self {
        Echoed { stats, pending: 0 }
    }

    fn add(&mut self, n: usize) {
        self.pending += n as u64;
        if self.pending >= Self::FLUSH_AT {
            self.stats.add_bytes(std::mem::take(&mut self.pending));
        }
    }
}

impl Drop for Echoed<'_> {
    fn drop(&mut self) {
        self.stats.add_bytes(self.pending);
    }
}

/// Run `io`, failing with `TimedOut` if it makes no progress for `limit`.
async fn idle<T>(
    limit: Option<std::time::Duration>,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        None => io.await,
        Some(d) => ::tokio::time::timeout(d, io)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("idle for {d:?}")))?,
    }
}

/// After our FIN on shutdown: read and drop what the client sends until it
/// closes too, so closing does not turn into a reset that would destroy the
/// end of the echo still on its way (see `client_thread::discard_until_eof`). The
/// drain deadline ends it for a client that never closes.
async fn discard_until_eof(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    while stream.read(buf).await? > 0 {}
    Ok(())
}
