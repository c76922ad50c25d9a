//! The article's first server: one client at a time, blocking calls.
//!
//! `accept` → read/write until the client closes → `accept` again. Other
//! clients wait in the kernel's backlog. It is the simplest correct server and
//! the baseline that shows why the others exist.

use crate::accept::AcceptBackoff;
use crate::verbose::log_received;
use crate::{Config, ServerError, Shutdown, Stats};
use socket2::SockRef;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown as How, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read buffer for one connection of the blocking models.
pub(crate) const BUF_SIZE: usize = 16 * 1024;

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
        let id = open.insert(&stream);
        serve(stream, peer, &mut buf, config, shutdown, stats);
        open.remove(id);
        stats.connection_closed();
    });
    Ok(())
}

/// Accept until shutdown, handing each client to `handle`. Accept errors are
/// paced by [`AcceptBackoff`], never fatal.
pub(crate) fn accept_loop(
    listener: &TcpListener,
    shutdown: &Shutdown,
    mut handle: impl FnMut(TcpStream, SocketAddr),
) {
    let mut backoff = AcceptBackoff::new();
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if shutdown.is_triggered() {
                    break;
                }
                handle(stream, peer)
            }
            Err(_) if shutdown.is_triggered() => break,
            Err(e) => {
                if let Some(pause) = backoff.on_error(&e) {
                    std::thread::sleep(pause);
                }
            }
        }
    }
}

/// Echo one client until it closes, resets, stays idle too long, or shutdown
/// stops it.
///
/// On shutdown the loop stops reading, but a `write_all` in progress goes on
/// (the bytes it sends were read, so they are owed) until the drain deadline
/// shuts the socket down under it.
pub(crate) fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    buf: &mut [u8],
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) {
    if config.verbose {
        tracing::info!("client connected from {peer}");
    }
    let _ = stream.set_nodelay(true);
    // A blocked read wakes every tick to look at the shutdown flag (see
    // `TICK`); an idle client shows as reads that time out for the whole
    // idle timeout, or as a write (it takes none of its echo) that does.
    let idle = config.idle_timeout;
    let _ = stream.set_read_timeout(Some(idle.map_or(TICK, |d| d.min(TICK))));
    let _ = stream.set_write_timeout(idle);
    let mut last_read = Instant::now();
    let result = (|| -> io::Result<()> {
        loop {
            if shutdown.is_triggered() {
                // Everything read so far has been written back.
                stream.shutdown(How::Write)?;
                discard_until_eof(&mut stream, buf);
                return Ok(());
            }
            let n = match stream.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    if idle.is_some_and(|d| last_read.elapsed() >= d) {
                        return Err(e);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            last_read = Instant::now();
            if config.verbose {
                log_received!(peer, &buf[..n]);
            }
            // write_all continues a partial write from where it stopped.
            stream.write_all(&buf[..n])?;
            stats.add_bytes(n as u64);
        }
        // The client half-closed and everything it sent has been written
        // back: finish our side so it sees EOF after the last byte.
        stream.shutdown(How::Write)
    })();
    match result {
        Ok(()) => {
            if config.verbose {
                tracing::info!("client {peer} disconnected");
            }
        }
        Err(e) if is_timeout(&e) => {
            if config.verbose {
                tracing::info!(
                    "client {peer} disconnected: idle for {:?}",
                    config.idle_timeout.unwrap_or_default()
                );
            }
        }
        Err(e) => {
            if config.verbose {
                tracing::info!("client {peer} disconnected: {e}");
            } else {
                tracing::debug!("client {peer} disconnected: {e}");
            }
        }
    }
}

/// How often a blocked read wakes to check for shutdown. The only other way
/// to wake it, `shutdown(SHUT_RD)`, cannot be undone, and Linux resets a
/// connection that has both sent its FIN and shut its read side as soon as
/// more data arrives, which would destroy the echo still on its way. Four
/// wake-ups a second per connection cost next to nothing.
const TICK: Duration = Duration::from_millis(250);

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// After our FIN on shutdown: read and drop what the client sends until it
/// closes too. Closing a socket with unread bytes makes the kernel send a
/// reset, which would destroy the end of the echo still on its way to the
/// client; a client that reads to EOF and then closes ends this at once, any
/// other is cut off at the drain deadline (which shuts the socket down).
pub(crate) fn discard_until_eof(stream: &mut TcpStream, buf: &mut [u8]) {
    loop {
        match stream.read(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// The sockets of the clients being served, so shutdown can stop their
/// reads and, after the drain deadline, interrupt their writes (a
/// `shutdown(2)` wakes them with EOF or EPIPE).
#[derive(Clone, Default)]
pub(crate) struct OpenConnections {
    inner: Arc<OpenInner>,
}

#[derive(Default)]
struct OpenInner {
    next: AtomicU64,
    streams: Mutex<HashMap<u64, TcpStream>>,
    closing: std::sync::atomic::AtomicBool,
}

impl OpenConnections {
    /// Register with `shutdown`: on trigger, wake a blocked `accept` on
    /// `listener` (blocked reads see the flag within a `TICK`, and a
    /// `write_all` under way finishes); after `drain`, shut every connection
    /// down entirely, which ends any write still blocked.
    pub(crate) fn watch(
        listener: &TcpListener,
        shutdown: &Shutdown,
        drain: Duration,
    ) -> Result<Self, ServerError> {
        let open = OpenConnections::default();
        let listener = listener
            .try_clone()
            .map_err(|e| ServerError::io("cannot clone the listening socket", e))?;
        let wake_open = open.clone();
        shutdown.on_trigger(move || {
            interrupt_accept(&listener);
            let force = wake_open.clone();
            // Detached: if every client finishes first, the process exits
            // without waiting for it.
            let _ = std::thread::Builder::new()
                .name("drain-deadline".into())
                .spawn(move || {
                    std::thread::sleep(drain);
                    force.close_all();
                });
        });
        Ok(open)
    }

    pub(crate) fn insert(&self, stream: &TcpStream) -> u64 {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            let mut streams = self.inner.streams.lock().unwrap();
            if self.inner.closing.load(Ordering::SeqCst) {
                let _ = clone.shutdown(How::Both);
            }
            streams.insert(id, clone);
        }
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.inner.streams.lock().unwrap().remove(&id);
    }

    fn close_all(&self) {
        let streams = self.inner.streams.lock().unwrap();
        self.inner.closing.store(true, Ordering::SeqCst);
        for s in streams.values() {
            let _ = s.shutdown(How::Both);
        }
    }
}

/// Wake a thread blocked in `accept` on `listener`. On Linux `shutdown(2)`
/// on a listening socket does it; elsewhere a connection to ourselves does.
pub(crate) fn interrupt_accept(listener: &TcpListener) {
    if SockRef::from(listener).shutdown(How::Both).is_ok() && cfg!(target_os = "linux") {
        return;
    }
    if let Ok(mut addr) = listener.local_addr() {
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500));
    }
}
