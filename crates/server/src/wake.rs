//! How a thread blocked on one client's socket is woken for shutdown.
//!
//! On Unix a thread waits in `poll(2)` on its socket and on the read end of
//! one pipe shared by the whole server; shutdown writes a byte to the pipe,
//! which is never read, so it stays readable and every waiting thread wakes
//! at once. An idle connection costs nothing until then: no timer, no
//! periodic wake-up (ten thousand idle clients on a 250 ms tick cost a
//! fifth of a CPU). `shutdown(SHUT_RD)` would wake a blocked `read` too,
//! but it cannot be undone, and Linux resets a connection that has shut its
//! read side and sent its FIN as soon as more data arrives, which would
//! destroy the end of the echo still on its way.
//!
//! Elsewhere (Windows) the read itself is the wait, with a short timeout,
//! and the caller looks at the shutdown flag each time it expires. Both
//! `Wake`s live in `sys.rs`, with the crate's other choices of OS.

use std::io;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The socket has data, an end of stream or an error: read it.
    Socket,
    /// Shutdown was triggered.
    Woken,
    /// The timeout passed with neither.
    TimedOut,
}

/// True for the error a timed-out socket call returns (Unix and Windows).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
