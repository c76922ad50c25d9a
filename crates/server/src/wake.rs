//! How a thread blocked on one client's socket is woken for shutdown: the
//! one place the blocking models' wait is chosen per OS.
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
//! and the caller looks at the shutdown flag each time it expires.

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

#[cfg(unix)]
mod imp {
    use super::Ready;
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    /// The shared wake-up: a pipe whose read end becomes readable for good.
    pub(crate) struct Wake {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Wake {
        pub(crate) fn new() -> io::Result<Wake> {
            // (pipe2 with O_CLOEXEC is not on every Unix: set it after.)
            let (read, write) = rustix::pipe::pipe()?;
            for fd in [&read, &write] {
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
            }
            Ok(Wake { read, write })
        }

        /// Wake every waiter, now and later.
        pub(crate) fn wake(&self) {
            let _ = rustix::io::write(&self.write, &[1]);
        }

        /// Wait for `stream`, a wake-up, or `timeout` (`None`: no limit).
        pub(crate) fn wait(
            &self,
            stream: &TcpStream,
            timeout: Option<Duration>,
        ) -> io::Result<Ready> {
            let ts = timeout.map(|d| Timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: d.subsec_nanos().into(),
            });
            loop {
                let mut fds = [
                    PollFd::new(stream, PollFlags::IN),
                    PollFd::new(&self.read, PollFlags::IN),
                ];
                match poll(&mut fds, ts.as_ref()) {
                    Ok(0) => return Ok(Ready::TimedOut),
                    Ok(_) => {
                        // Shutdown first: a client that keeps sending must not
                        // hold its thread away from the drain.
                        if !fds[1].revents().is_empty() {
                            return Ok(Ready::Woken);
                        }
                        return Ok(Ready::Socket);
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }

        /// Set up `stream` for this way of waiting: blocking reads, no timeout.
        pub(crate) fn prepare(&self, stream: &TcpStream) -> io::Result<()> {
            stream.set_read_timeout(None)
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::Ready;
    use std::io;
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// How often a blocked read wakes to look at the shutdown flag.
    const TICK: Duration = Duration::from_millis(250);

    pub(crate) struct Wake {
        woken: AtomicBool,
    }

    impl Wake {
        pub(crate) fn new() -> io::Result<Wake> {
            Ok(Wake {
                woken: AtomicBool::new(false),
            })
        }

        pub(crate) fn wake(&self) {
            self.woken.store(true, Ordering::SeqCst);
        }

        /// The read that follows is the wait (its timeout is the tick).
        pub(crate) fn wait(&self, _: &TcpStream, timeout: Option<Duration>) -> io::Result<Ready> {
            Ok(if self.woken.load(Ordering::SeqCst) {
                Ready::Woken
            } else if timeout.is_some_and(|t| t.is_zero()) {
                Ready::TimedOut
            } else {
                Ready::Socket
            })
        }

        pub(crate) fn prepare(&self, stream: &TcpStream) -> io::Result<()> {
            stream.set_read_timeout(Some(TICK))
        }
    }
}

pub(crate) use imp::Wake;

/// True for the error a timed-out socket call returns (Unix and Windows).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
