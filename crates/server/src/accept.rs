//! Accepting, shared by the models: what to do when `accept` fails (every
//! model), the blocking accept loop (blocking, threaded, and the completion
//! model's acceptor thread), and how to wake a thread blocked in it.
//!
//! Running out of descriptors (EMFILE, ENFILE) is the failure that takes
//! naive servers down: the pending connection stays in the backlog, the
//! listener stays readable, and a loop that retries at once spins at 100% CPU
//! and floods the log. We pause instead, log at most once a second, and keep
//! serving the connections we already have.

use crate::Shutdown;
use socket2::SockRef;
use std::io;
use std::net::{Shutdown as How, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long to stop accepting after running out of a resource.
pub const RESOURCE_PAUSE: Duration = Duration::from_millis(100);

/// Rate-limited handling of accept errors. Each accept loop keeps its own,
/// but the log limit is shared by the whole process: a server whose workers
/// each accept on their own listener still logs at most once a second.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    _private: (),
}

/// When the last "accept failed" line was written, and how many were held
/// back since: one for every accept loop of the process.
static LOG: Mutex<LogLimit> = Mutex::new(LogLimit {
    last_log: None,
    suppressed: 0,
});

#[derive(Debug)]
struct LogLimit {
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    /// A fresh backoff.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classify an accept error. `None`: try again at once (the peer gave up
    /// before we accepted, or a signal interrupted us). `Some(d)`: a resource
    /// ran out; stop accepting for `d`.
    pub fn on_error(&mut self, err: &io::Error) -> Option<Duration> {
        if is_transient(err) {
            return None;
        }
        let now = Instant::now();
        let mut log = LOG.lock().unwrap_or_else(|p| p.into_inner());
        let log_now = log
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if log_now {
            if log.suppressed > 0 {
                tracing::warn!(
                    "accept failed: {err} ({} more since the last message); pausing accepts, existing clients are still served",
                    log.suppressed
                );
            } else {
                tracing::warn!(
                    "accept failed: {err}; pausing accepts, existing clients are still served"
                );
            }
            log.last_log = Some(now);
            log.suppressed = 0;
        } else {
            log.suppressed += 1;
        }
        Some(RESOURCE_PAUSE)
    }
}

/// Errors that concern only the one connection being accepted.
pub fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
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

/// Wake a thread blocked in `accept` on `listener`. On Linux `shutdown(2)`
/// on a listening socket does it; elsewhere a connection to ourselves does.
pub(crate) fn interrupt_accept(listener: &TcpListener) {
    if SockRef::from(listener).shutdown(How::Both).is_ok() && crate::sys::SHUTDOWN_WAKES_ACCEPT {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborted_connections_are_retried_at_once() {
        let mut b = AcceptBackoff::new();
        let e = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.on_error(&e), None);
    }

    #[test]
    fn running_out_of_descriptors_pauses_and_logs_once() {
        // Two loops, as two workers would have: one line between them.
        let (mut a, mut b) = (AcceptBackoff::new(), AcceptBackoff::new());
        #[cfg(unix)]
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        #[cfg(not(unix))]
        let e = io::Error::other("too many open files");
        assert_eq!(a.on_error(&e), Some(RESOURCE_PAUSE));
        assert_eq!(b.on_error(&e), Some(RESOURCE_PAUSE));
        assert_eq!(a.on_error(&e), Some(RESOURCE_PAUSE));
        assert_eq!(LOG.lock().unwrap().suppressed, 2);
    }
}
