//! The one place in the load crate where the operating system is chosen:
//! the descriptor limit and how a non-blocking connect says "in progress".

use std::io;

/// Raise the soft limit on open descriptors to the hard limit, and return
/// the limit now in force. Ten thousand connections need ten thousand
/// descriptors, and the usual soft limit is 1024. (macOS caps the soft limit
/// below an infinite hard one; the crate knows.)
#[cfg(unix)]
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Elsewhere there is no such limit to raise.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> io::Result<u64> {
    Ok(u64::MAX)
}

/// True when a non-blocking `connect` has started rather than failed.
pub(crate) fn connect_in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    // Windows reports WSAEWOULDBLOCK, which std maps to WouldBlock.
    e.kind() == io::ErrorKind::WouldBlock
}

/// A wake-up at a precise instant for the readiness loop. epoll's own
/// timeout has millisecond granularity (mio rounds up), which would make
/// every open-loop message up to a millisecond late and put the load
/// generator's own lateness into the corrected latency. A timerfd wakes
/// within microseconds.
#[cfg(target_os = "linux")]
pub(crate) struct Timer {
    fd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl Timer {
    /// A timer registered with `registry` under `token` (readable on expiry).
    pub fn new(registry: &mio::Registry, token: mio::Token) -> io::Result<Timer> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create takes no pointers; a non-negative result is
        // a new descriptor that nothing else owns.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by no one else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            token,
            mio::Interest::READABLE,
        )?;
        Ok(Timer { fd })
    }

    /// Expire once, `after` from now (re-arming replaces the previous expiry
    /// and resets its count, so the next expiry raises a fresh edge).
    pub fn arm(&self, after: std::time::Duration) {
        use std::os::fd::AsRawFd;
        // A zero it_value would disarm the timer: one nanosecond fires at once.
        let after = after.max(std::time::Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is ours and open; `spec` is a valid
        // itimerspec on our stack; the old value is not asked for.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }
}

/// Without a timerfd, the loop falls back to the poll timeout.
#[cfg(not(target_os = "linux"))]
pub(crate) struct Timer;

#[cfg(not(target_os = "linux"))]
impl Timer {
    pub fn new(_: &mio::Registry, _: mio::Token) -> io::Result<Timer> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no timerfd"))
    }
    pub fn arm(&self, _: std::time::Duration) {}
}
