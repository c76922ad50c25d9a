//! The one place the server crate chooses the operating system: how a
//! blocked client thread is woken (`Wake`, see `wake.rs`), what listeners
//! can do (`SO_REUSEPORT` groups), how errors are recognised, and the
//! allocator.
//!
//! ## The allocator
//!
//! glibc's malloc keeps what the program frees: a freed block of 128 KiB or
//! more raises its `mmap` threshold to that size, so later blocks that size
//! come from a heap instead of their own mapping, and a heap gives pages back
//! only from its top. Memory that slow readers once filled then stays
//! resident after they leave. `malloc_trim` returns every free page of every
//! arena. Other allocators (musl, the Windows heap) return large blocks to
//! the OS by themselves, so there this does nothing.

/// Whether [`trim_heap`] does anything on this platform.
pub(crate) const CAN_TRIM_HEAP: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Give the free pages of the allocator's heaps back to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim(3) takes no pointer and frees nothing in use: it
    // only releases pages of free chunks, under each arena's own lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Give the free pages of the allocator's heaps back to the OS.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn trim_heap() {}

// ---- listeners -------------------------------------------------------------

/// Whether several listeners can share one port (`SO_REUSEPORT`, with the
/// kernel spreading new connections over them). Elsewhere the workers
/// share one listener's accept queue through duplicated handles.
pub(crate) const REUSE_PORT: bool = cfg!(unix);

/// Whether `shutdown(2)` on a listening socket wakes a thread blocked in
/// `accept` (Linux); elsewhere the server connects to itself.
pub(crate) const SHUTDOWN_WAKES_ACCEPT: bool = cfg!(target_os = "linux");

/// Whether an accepted socket inherits `TCP_NODELAY` from its listener
/// (Linux copies the listener's options into every socket it accepts), so
/// [`set_listener_options`] sets it once there and the models skip the
/// `setsockopt` per connection: under churn it was the completion model's
/// only system call per connection outside its ring. Elsewhere each
/// accepted socket gets it.
pub(crate) const ACCEPTED_INHERIT_NODELAY: bool = cfg!(target_os = "linux");

/// `TCP_NODELAY` for a socket just accepted, through `set` (each model's
/// socket type has its own setter), where it did not come from the
/// listener. Best effort: a socket that refuses it still echoes.
pub(crate) fn nodelay_if_not_inherited(set: impl FnOnce() -> std::io::Result<()>) {
    if !ACCEPTED_INHERIT_NODELAY {
        let _ = set();
    }
}

/// The options every listener gets before it binds. On Unix SO_REUSEADDR
/// only lets a restarted server bind over TIME_WAIT connections; it never
/// lets two listeners share a port. On Windows it would, so it is left off
/// there, as is `SO_REUSEPORT`, which Windows does not have. On Linux,
/// `TCP_NODELAY` for every socket it accepts ([`ACCEPTED_INHERIT_NODELAY`]).
pub(crate) fn set_listener_options(
    socket: &socket2::Socket,
    reuse_port: bool,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
    }
    if ACCEPTED_INHERIT_NODELAY {
        socket.set_nodelay(true)?;
    }
    #[cfg(not(unix))]
    let _ = (socket, reuse_port);
    Ok(())
}

/// EMFILE or ENFILE, as the OS reports them.
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    return matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

// ---- waking a blocked client thread ------------------------------------------

#[cfg(unix)]
mod wake {
    use crate::wake::Ready;
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
mod wake {
    use crate::wake::Ready;
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

pub(crate) use wake::Wake;
