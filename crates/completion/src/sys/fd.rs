//! Sockets as raw descriptors, on every Unix: what the io_uring backend and
//! the unsupported shell share. `with_socket` borrows a descriptor for one
//! call through socket2 (the socket helpers in `lib.rs` are written once over
//! it); nothing closes a descriptor but `close_now` and the port's close.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A socket as the kernel's operations name it.
pub type RawSocket = RawFd;

/// Run `f` on a socket we do not own, without closing it afterwards.
pub(crate) fn with_socket<T>(fd: RawFd, f: impl FnOnce(socket2::SockRef<'_>) -> T) -> T {
    // SAFETY: the caller owns `fd` for the duration of this call (every
    // caller holds the socket it names), and the borrowed SockRef does not
    // close it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(socket2::SockRef::from(&borrowed))
}

pub(crate) fn raw_listener(l: &std::net::TcpListener) -> RawFd {
    l.as_raw_fd()
}

pub(crate) fn into_raw_socket(s: std::net::TcpStream) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(s)
}

pub(crate) fn close_now(fd: RawFd) {
    // SAFETY: the caller owns `fd` and gives it up here.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
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
