//! Sockets as raw descriptors, on every Unix: what the io_uring backend and
//! the unsupported shell share. The owned [`Socket`](crate::Socket) is a
//! socket2 socket, the same on every OS; this is only how it becomes the
//! number the kernel's operations name, and back.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// A socket as the kernel's operations name it.
pub type RawSocket = RawFd;

pub(crate) fn raw_listener(l: &std::net::TcpListener) -> RawFd {
    l.as_raw_fd()
}

pub(crate) fn raw(s: &socket2::Socket) -> RawFd {
    s.as_raw_fd()
}

pub(crate) fn into_raw(s: socket2::Socket) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(s)
}

/// Take ownership of the descriptor an accept's completion carries.
///
/// # Safety
///
/// `fd` must be an open socket that nothing else owns or will close: the
/// one an accept's completion hands over, taken exactly once.
pub(crate) unsafe fn accepted_socket(fd: RawFd) -> socket2::Socket {
    // SAFETY: the caller passes an open socket nobody else owns.
    unsafe { socket2::Socket::from_raw_fd(fd) }
}

/// True for the error an operation ends with when cancelled.
pub(crate) fn is_cancelled(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ECANCELED)
}

/// True when a receive found no buffer left in the provided-buffer ring.
pub(crate) fn is_out_of_buffers(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOBUFS)
}

/// The error a cancelled operation ends with.
pub(crate) fn cancelled_error() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}
