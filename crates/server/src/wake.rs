//! How a thread blocked on one client's socket is woken for shutdown.
//!
//! On Unix a thread blocks in `read(2)` on its socket and nothing else, so a
//! message costs one `read` and one `write`, as in the plainest
//! thread-per-client echo. Shutdown sends each registered thread a signal
//! whose handler does nothing and which is installed without `SA_RESTART`:
//! the blocked `read` returns `EINTR`, and the loop sees the flag. A signal
//! that lands just before its thread enters `read` is lost, so shutdown
//! repeats it every few milliseconds to the threads that have not yet said
//! they saw it (the way the JDK interrupts a thread blocked on a socket).
//! Only a thread marked as reading is signalled: one in a `write_all`
//! finishes it (those bytes are owed), then sees the flag. The read timeout
//! is the idle timeout, brought down to what is left of it only after a
//! slow write, so a message costs no extra system call. An
//! idle connection costs nothing until then: no timer, no periodic wake-up
//! (ten thousand idle clients on a 250 ms tick cost a fifth of a CPU).
//!
//! Tried before: waiting in `poll(2)` on the socket and on one pipe shared
//! by the whole server, which shutdown made readable. That `poll` before
//! every `read` cost a fifth of the server's CPU: 1.4× a plain `std::thread`
//! echo's CPU per message at 1000 connections (docs/BENCHMARKS.md).
//! `shutdown(SHUT_RD)` would wake a blocked `read` too, but it cannot be
//! undone, and Linux resets a connection that has shut its read side and
//! sent its FIN as soon as more data arrives, which would destroy the end
//! of the echo still on its way.
//!
//! Elsewhere (Windows) the read itself is the wait, with a short timeout,
//! and the caller looks at the shutdown flag each time it expires. `Wake`
//! (the flag, the same everywhere) and each OS's way to end a blocked read
//! live in `sys.rs`, with the crate's other choices of OS.

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
