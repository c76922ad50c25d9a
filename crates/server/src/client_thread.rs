//! One client on one thread, with blocking calls: the echo loop that the
//! `blocking` and `threaded` models both run, and the registry that lets
//! shutdown wake and, at the drain deadline, close every client's socket.

use crate::accept::interrupt_accept;
use crate::sys::{Waiter, Wake};
use crate::verbose::log_received;
use crate::wake::{is_timeout, Ready};
use crate::Config;
use crate::{ServerError, Shutdown, Stats};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown as How, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often shutdown wakes again the client threads that have not yet seen it.
const REWAKE: Duration = Duration::from_millis(5);

/// Read buffer for one connection of the blocking models.
pub(crate) const BUF_SIZE: usize = 16 * 1024;

/// Echo one client until it closes, resets, stays idle too long, or shutdown
/// stops it.
///
/// The thread waits for the socket and for shutdown at once (see
/// `wake.rs`), so an idle client costs nothing. On shutdown the loop stops
/// reading, but a `write_all` in progress goes on (the bytes it sends were
/// read, so they are owed) until the drain deadline shuts the socket down
/// under it.
pub(crate) fn serve(
    stream: &TcpStream,
    peer: SocketAddr,
    buf: &mut [u8],
    config: &Config,
    shutdown: &Shutdown,
    wake: &Wake,
    stats: &Stats,
) {
    if config.verbose {
        tracing::info!("client connected from {peer}");
    }
    crate::sys::nodelay_if_not_inherited(|| stream.set_nodelay(true));
    let idle = config.idle_timeout;
    let waiter = match wake.prepare(stream, idle) {
        Ok(w) => w,
        Err(e) => {
            log_disconnect(peer, config, Err(e));
            return;
        }
    };
    // An idle client shows as a wait that times out for the whole idle
    // timeout, or as a write (it takes none of its echo) that does.
    let _ = stream.set_write_timeout(idle);
    let result = echo_until_closed(stream, peer, buf, config, shutdown, (wake, &waiter), stats);
    log_disconnect(peer, config, result);
}

/// The echo loop: read, write back, until the client half-closes (then our
/// side is finished too), stays idle too long, fails, or shutdown stops it.
fn echo_until_closed(
    mut stream: &TcpStream,
    peer: SocketAddr,
    buf: &mut [u8],
    config: &Config,
    shutdown: &Shutdown,
    (wake, waiter): (&Wake, &Waiter<'_>),
    stats: &Stats,
) -> io::Result<()> {
    let idle = config.idle_timeout;
    let mut last_read = Instant::now();
    loop {
        if shutdown.is_triggered() {
            waiter.noticed();
            // Everything read so far has been written back.
            stream.shutdown(How::Write)?;
            discard_until_eof(stream, buf);
            return Ok(());
        }
        let left = idle.map(|d| d.saturating_sub(last_read.elapsed()));
        // Marked as reading before the flag is looked at: a shutdown after
        // that look interrupts the read below.
        waiter.reading(stream, left)?;
        match wake.wait(left) {
            Ready::Woken => continue,
            Ready::TimedOut => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle"));
            }
            Ready::Socket => {}
        }
        let read = stream.read(buf);
        waiter.done_reading();
        let n = match read {
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
}

/// Say how the client's connection ended: in verbose mode always, else
/// errors only at debug level.
fn log_disconnect(peer: SocketAddr, config: &Config, result: io::Result<()>) {
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

/// After our FIN on shutdown: read and drop what the client sends until it
/// closes too. Closing a socket with unread bytes makes the kernel send a
/// reset, which would destroy the end of the echo still on its way to the
/// client; a client that reads to EOF and then closes ends this at once, any
/// other is cut off at the drain deadline (which shuts the socket down).
pub(crate) fn discard_until_eof(mut stream: &TcpStream, buf: &mut [u8]) {
    loop {
        match stream.read(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// The sockets of the clients being served, so that shutdown can wake
/// their threads and, after the drain deadline, interrupt their writes (a
/// `shutdown(2)` wakes them with EOF or EPIPE).
///
/// Each socket is shared with its thread (`Arc`), not duplicated: a second
/// descriptor per connection would halve the clients a descriptor limit
/// allows, and a duplicate that cannot be made (no descriptor left) would
/// leave a connection the drain cannot close. The registry's reference is
/// dropped when the client is done, so a closed socket's number is never
/// shut down after the kernel gave it to someone else.
#[derive(Clone)]
pub(crate) struct OpenConnections {
    inner: Arc<OpenInner>,
}

struct OpenInner {
    next: AtomicU64,
    streams: Mutex<HashMap<u64, Arc<TcpStream>>>,
    closing: std::sync::atomic::AtomicBool,
    wake: Wake,
}

impl OpenConnections {
    /// Register with `shutdown`: on trigger, wake a blocked `accept` on
    /// `listener` and every client thread (a `write_all` under way
    /// finishes); after `drain`, shut every connection down entirely, which
    /// ends any write still blocked.
    pub(crate) fn watch(
        listener: &TcpListener,
        shutdown: &Shutdown,
        drain: Duration,
    ) -> Result<Self, ServerError> {
        let open = OpenConnections {
            inner: Arc::new(OpenInner {
                next: AtomicU64::new(0),
                streams: Mutex::new(HashMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
                wake: Wake::new()
                    .map_err(|e| ServerError::io("cannot create the shutdown wake-up", e))?,
            }),
        };
        let listener = listener
            .try_clone()
            .map_err(|e| ServerError::io("cannot clone the listening socket", e))?;
        let wake_open = open.clone();
        shutdown.on_trigger(move || {
            interrupt_accept(&listener);
            wake_open.inner.wake.wake();
            let force = wake_open.clone();
            // Detached: if every client finishes first, the process exits
            // without waiting for it.
            let _ = std::thread::Builder::new()
                .name("drain-deadline".into())
                .spawn(move || {
                    // A wake-up can land just before its thread blocks, and
                    // be lost: repeat it until every thread has seen it.
                    let deadline = Instant::now() + drain;
                    while force.inner.wake.interrupt() > 0 && Instant::now() < deadline {
                        std::thread::sleep(REWAKE);
                    }
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    force.close_all();
                });
        });
        Ok(open)
    }

    /// What client threads wait on besides their socket.
    pub(crate) fn wake(&self) -> &Wake {
        &self.inner.wake
    }

    /// Take `stream` into the registry; the caller serves the returned handle.
    pub(crate) fn insert(&self, stream: TcpStream) -> (u64, Arc<TcpStream>) {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(stream);
        let mut streams = self.inner.streams.lock().unwrap();
        if self.inner.closing.load(Ordering::SeqCst) {
            let _ = stream.shutdown(How::Both);
        }
        streams.insert(id, stream.clone());
        (id, stream)
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
