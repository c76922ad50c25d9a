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

/// Shutdown's way to the client threads (see `wake.rs`): a flag each one
/// looks at before every read, and a way to end a read already blocked,
/// which differs by OS (`waiters`).
pub(crate) struct Wake {
    woken: std::sync::atomic::AtomicBool,
    waiters: waiters::Waiters,
}

impl Wake {
    pub(crate) fn new() -> std::io::Result<Wake> {
        Ok(Wake {
            woken: std::sync::atomic::AtomicBool::new(false),
            waiters: waiters::Waiters::new()?,
        })
    }

    /// Wake every waiter, now and later.
    pub(crate) fn wake(&self) {
        self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
        self.interrupt();
    }

    /// After [`Wake::wake`]: end the blocked reads of the threads that have
    /// not yet seen the flag; returns how many there were. A wake-up can
    /// land just before its thread blocks, and be lost, so shutdown repeats
    /// this until none is left.
    pub(crate) fn interrupt(&self) -> usize {
        if self.woken.load(std::sync::atomic::Ordering::SeqCst) {
            self.waiters.interrupt()
        } else {
            0
        }
    }

    /// The check before each read; the socket's `read` is the wait itself.
    pub(crate) fn wait(&self, timeout: Option<std::time::Duration>) -> crate::wake::Ready {
        use crate::wake::Ready;
        if self.woken.load(std::sync::atomic::Ordering::SeqCst) {
            Ready::Woken
        } else if timeout.is_some_and(|t| t.is_zero()) {
            Ready::TimedOut
        } else {
            Ready::Socket
        }
    }

    /// Register this thread to be woken, and set `stream` up for this way
    /// of waiting, reads that time out after `idle` at most.
    pub(crate) fn prepare(
        &self,
        stream: &std::net::TcpStream,
        idle: Option<std::time::Duration>,
    ) -> std::io::Result<Waiter<'_>> {
        self.waiters.prepare(stream, idle)
    }
}

/// Unix: each thread blocks in `read` alone, with the idle timeout as its
/// read timeout; shutdown interrupts it with a signal.
#[cfg(unix)]
mod waiters {
    use std::cell::Cell;
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

    /// The threads serving a client, by registration. A message costs a
    /// `read` and a `write`, as in the plainest thread-per-client echo.
    pub(super) struct Waiters {
        next: AtomicU64,
        waiting: Mutex<HashMap<u64, Arc<Waiting>>>,
    }

    /// A thread's handle for `pthread_kill`: an integer on glibc, a pointer
    /// on musl.
    struct Thread(libc::pthread_t);

    // SAFETY: a pthread_t is an opaque name of a thread that any thread of
    // the process may pass to pthread_kill; it is never dereferenced here
    // (musl's is a pointer to the thread's control block, which only libc
    // reads, under its own locking).
    unsafe impl Send for Thread {}
    // SAFETY: as above; sharing it only lets other threads read the handle.
    unsafe impl Sync for Thread {}

    struct Waiting {
        thread: Thread,
        /// The thread is in, or about to enter, a `read` for its next
        /// message: the only call a signal is sent to end. (A `write_all`
        /// under way is owed; shutdown lets it finish.)
        reading: AtomicBool,
        /// The thread has seen the shutdown: no more signals for it (a
        /// signal would cut its drain's `read`s short).
        noticed: AtomicBool,
    }

    /// A client thread's place among the waiters, until it is dropped.
    pub(crate) struct Waiter<'a> {
        waiters: &'a Waiters,
        id: u64,
        me: Arc<Waiting>,
        /// The idle timeout, and the read timeout the socket has now.
        idle: Option<Duration>,
        timeout: Cell<Option<Duration>>,
    }

    impl Waiter<'_> {
        /// This thread has seen the shutdown flag.
        pub(crate) fn noticed(&self) {
            self.me.noticed.store(true, Ordering::SeqCst);
        }

        /// The thread will look at the flag, then block in `read` for at
        /// most `left` (the idle timeout left). The read timeout follows
        /// `left` only when it is off by more than an eighth of the idle
        /// timeout (after a slow write, and back after the next read), so a
        /// message costs no extra system call.
        pub(crate) fn reading(&self, stream: &TcpStream, left: Option<Duration>) -> io::Result<()> {
            self.me.reading.store(true, Ordering::SeqCst);
            if let (Some(idle), Some(left), Some(now)) = (self.idle, left, self.timeout.get()) {
                let want = left.max(Duration::from_millis(1));
                if want.abs_diff(now) > idle / 8 {
                    stream.set_read_timeout(Some(want))?;
                    self.timeout.set(Some(want));
                }
            }
            Ok(())
        }

        /// The `read` returned.
        pub(crate) fn done_reading(&self) {
            self.me.reading.store(false, Ordering::SeqCst);
        }
    }

    impl Drop for Waiter<'_> {
        fn drop(&mut self) {
            // Under the lock that `interrupt` signals under: once this
            // returns, the thread is never signalled again, so it may exit.
            self.waiters.waiting.lock().unwrap().remove(&self.id);
        }
    }

    impl Waiters {
        pub(super) fn new() -> io::Result<Waiters> {
            install()?;
            Ok(Waiters {
                next: AtomicU64::new(0),
                waiting: Mutex::new(HashMap::new()),
            })
        }

        pub(super) fn interrupt(&self) -> usize {
            let waiting = self.waiting.lock().unwrap();
            let mut left = 0;
            for w in waiting
                .values()
                .filter(|w| !w.noticed.load(Ordering::SeqCst))
            {
                left += 1;
                // A thread in a `write_all` finishes it, then sees the flag.
                if !w.reading.load(Ordering::SeqCst) {
                    continue;
                }
                // SAFETY: the thread is registered, and it removes itself
                // (taking this lock) before it exits, so its pthread_t
                // still names a live thread; the signal's handler is
                // installed (`new`) and does nothing.
                unsafe {
                    libc::pthread_kill(w.thread.0, signal());
                }
            }
            left
        }

        pub(super) fn prepare(
            &self,
            stream: &TcpStream,
            idle: Option<Duration>,
        ) -> io::Result<Waiter<'_>> {
            stream.set_read_timeout(idle)?;
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let me = Arc::new(Waiting {
                // SAFETY: pthread_self has no preconditions.
                thread: Thread(unsafe { libc::pthread_self() }),
                reading: AtomicBool::new(false),
                noticed: AtomicBool::new(false),
            });
            self.waiting.lock().unwrap().insert(id, me.clone());
            Ok(Waiter {
                waiters: self,
                id,
                me,
                idle,
                timeout: Cell::new(idle),
            })
        }
    }
}

/// Elsewhere (Windows) the read itself is the wait, with a short timeout,
/// and the caller looks at the flag each time it expires: nothing to
/// interrupt.
#[cfg(not(unix))]
mod waiters {
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    /// How often a blocked read wakes to look at the shutdown flag.
    const TICK: Duration = Duration::from_millis(250);

    pub(super) struct Waiters;

    /// A client thread's place among the waiters: nothing to keep here.
    pub(crate) struct Waiter<'a>(std::marker::PhantomData<&'a Waiters>);

    impl Waiter<'_> {
        pub(crate) fn noticed(&self) {}

        /// The read's own tick is the wait: nothing to prepare.
        pub(crate) fn reading(&self, _: &TcpStream, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }

        pub(crate) fn done_reading(&self) {}
    }

    impl Waiters {
        pub(super) fn new() -> io::Result<Waiters> {
            Ok(Waiters)
        }

        pub(super) fn interrupt(&self) -> usize {
            0
        }

        pub(super) fn prepare(
            &self,
            stream: &TcpStream,
            _: Option<Duration>,
        ) -> io::Result<Waiter<'_>> {
            stream.set_read_timeout(Some(TICK))?;
            Ok(Waiter(std::marker::PhantomData))
        }
    }
}

pub(crate) use waiters::Waiter;
