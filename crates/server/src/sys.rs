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
    use std::collections::HashMap;
    use std::io;
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    /// The signal that interrupts a client thread's blocked `read`: its
    /// handler does nothing, and it is installed without `SA_RESTART`, so
    /// the call returns `EINTR`. Linux has real-time signals nobody else
    /// here uses; elsewhere SIGUSR2.
    #[cfg(target_os = "linux")]
    fn signal() -> libc::c_int {
        libc::SIGRTMIN()
    }
    #[cfg(not(target_os = "linux"))]
    fn signal() -> libc::c_int {
        libc::SIGUSR2
    }

    extern "C" fn interrupted(_: libc::c_int) {}

    /// Install the do-nothing handler, once per process.
    fn install() -> io::Result<()> {
        static INSTALLED: OnceLock<Option<i32>> = OnceLock::new();
        let failed = *INSTALLED.get_or_init(|| {
            // SAFETY: a zeroed sigaction is a valid empty one (no flags, so
            // no SA_RESTART; the mask emptied by sigemptyset); the handler
            // is an `extern "C"` function that touches nothing, so it is
            // async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = interrupted as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                (libc::sigaction(signal(), &action, std::ptr::null_mut()) != 0)
                    .then(|| io::Error::last_os_error().raw_os_error().unwrap_or(0))
            }
        });
        match failed {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(()),
        }
    }

    /// Shutdown's way to the client threads. Each thread blocks in `read`
    /// on its own socket, with nothing else to wait on, so a message costs
    /// a `read` and a `write` as in the plainest thread-per-client echo (a
    /// `poll` on the socket and a shared pipe before each read cost 1.4×
    /// a plain `std::thread` echo's CPU at 1000 connections). On shutdown
    /// every waiting thread is sent a signal that ends its `read` with
    /// `EINTR`; it then sees the flag.
    pub(crate) struct Wake {
        woken: AtomicBool,
        next: AtomicU64,
        /// The threads serving a client, by registration.
        waiting: Mutex<HashMap<u64, Arc<Waiting>>>,
    }

    struct Waiting {
        thread: libc::pthread_t,
        /// The thread has seen the shutdown: no more signals for it (a
        /// signal would cut its drain's `read`s short).
        noticed: AtomicBool,
    }

    /// A client thread's place among the waiters, until it is dropped.
    pub(crate) struct Waiter<'a> {
        wake: &'a Wake,
        id: u64,
        me: Arc<Waiting>,
    }

    impl Waiter<'_> {
        /// This thread has seen the shutdown flag.
        pub(crate) fn noticed(&self) {
            self.me.noticed.store(true, Ordering::SeqCst);
        }
    }

    impl Drop for Waiter<'_> {
        fn drop(&mut self) {
            // Under the lock that `interrupt` signals under: once this
            // returns, the thread is never signalled again, so it may exit.
            self.wake.waiting.lock().unwrap().remove(&self.id);
        }
    }

    impl Wake {
        pub(crate) fn new() -> io::Result<Wake> {
            install()?;
            Ok(Wake {
                woken: AtomicBool::new(false),
                next: AtomicU64::new(0),
                waiting: Mutex::new(HashMap::new()),
            })
        }

        /// Wake every waiter, now and later.
        pub(crate) fn wake(&self) {
            self.woken.store(true, Ordering::SeqCst);
            self.interrupt();
        }

        /// Signal every waiter that has not yet seen the shutdown; returns
        /// how many were. A signal that lands just before its thread enters
        /// `read` is lost, so shutdown repeats this until none is left.
        pub(crate) fn interrupt(&self) -> usize {
            if !self.woken.load(Ordering::SeqCst) {
                return 0;
            }
            let waiting = self.waiting.lock().unwrap();
            let mut left = 0;
            for w in waiting
                .values()
                .filter(|w| !w.noticed.load(Ordering::SeqCst))
            {
                // SAFETY: the thread is registered, and it removes itself
                // (taking this lock) before it exits, so its pthread_t
                // still names a live thread; the signal's handler is
                // installed (`new`) and does nothing.
                unsafe {
                    libc::pthread_kill(w.thread, signal());
                }
                left += 1;
            }
            left
        }

        /// The check before each read: the socket's `read` is the wait
        /// (its read timeout is the idle timeout).
        pub(crate) fn wait(&self, _: &TcpStream, timeout: Option<Duration>) -> io::Result<Ready> {
            Ok(if self.woken.load(Ordering::SeqCst) {
                Ready::Woken
            } else if timeout.is_some_and(|t| t.is_zero()) {
                Ready::TimedOut
            } else {
                Ready::Socket
            })
        }

        /// Register this thread to be woken, and set `stream` up for this way
        /// of waiting: blocking reads that time out after `idle`.
        pub(crate) fn prepare(
            &self,
            stream: &TcpStream,
            idle: Option<Duration>,
        ) -> io::Result<Waiter<'_>> {
            stream.set_read_timeout(idle)?;
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let me = Arc::new(Waiting {
                // SAFETY: pthread_self has no preconditions.
                thread: unsafe { libc::pthread_self() },
                noticed: AtomicBool::new(false),
            });
            self.waiting.lock().unwrap().insert(id, me.clone());
            Ok(Waiter { wake: self, id, me })
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

        /// Nothing to interrupt: each read wakes on its own within a tick.
        pub(crate) fn interrupt(&self) -> usize {
            0
        }

        pub(crate) fn prepare(
            &self,
            stream: &TcpStream,
            _idle: Option<Duration>,
        ) -> io::Result<Waiter<'_>> {
            stream.set_read_timeout(Some(TICK))?;
            Ok(Waiter(std::marker::PhantomData))
        }
    }

    /// A client thread's place among the waiters: nothing to keep here.
    pub(crate) struct Waiter<'a>(std::marker::PhantomData<&'a Wake>);

    impl Waiter<'_> {
        pub(crate) fn noticed(&self) {}
    }
}

pub(crate) use wake::{Waiter, Wake};
