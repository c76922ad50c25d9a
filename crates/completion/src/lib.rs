//! A small completion port: submit an operation tagged with a token, then reap
//! completions in batches.
//!
//! This is the article's I/O Completion Port, made portable. On Linux it is
//! io_uring (`sys/uring/`); on Windows it is IOCP (`sys/iocp/`). The server's
//! connection state machine is written once over this API.
//!
//! # The contract every backend provides
//!
//! * **Operations**: [`Port::accept`], [`Port::recv`], [`Port::send`],
//!   [`Port::close`] and [`Port::cancel`]. Each takes a caller's [`Token`]
//!   (which connection: the IOCP *completion key*) and returns an [`OpId`]
//!   (which operation: the IOCP `OVERLAPPED`, io_uring's `user_data`).
//! * **Ownership**: an operation owns its buffer from submission until its
//!   completion is reaped. `send` takes a `Vec<u8>` by value and the same
//!   vector comes back in the [`Completion`]. Received bytes live either in a
//!   buffer the port owns (one per `recv`) or in a kernel-selected buffer of a
//!   provided-buffer ring; either way the caller reads them with
//!   [`Port::data`] and then hands the completion back with
//!   [`Port::release`], which returns the buffer to its owner. The kernel
//!   never holds a buffer borrowed from the caller.
//! * **Multishot**: an `accept` or `recv` may complete several times. Every
//!   completion says whether more will follow ([`Completion::more`]); when it
//!   says no, the operation is over and the caller re-arms it if it wants to.
//!   A backend without multishot (IOCP) simply always says no.
//! * **Cancellation**: [`Port::cancel`] asks for an operation to end early. The
//!   operation still completes (with [`is_cancelled`] true if the cancel won),
//!   and only that completion ends its ownership of its buffer. A caller must
//!   therefore never free a connection while any of its operations is in
//!   flight: cancel, reap, then close.
//! * **Quiet sends**: [`Port::send_quiet`] is a send whose completion, when
//!   it is in full and at once, does not by itself end a [`Port::wait`]; it
//!   comes with the next completion that does (or after a grace period,
//!   [`PortConfig::quiet_grace`]). For a send nothing waits on,
//!   so the worker is not woken just to learn that an echo went out. Where a
//!   backend cannot tell ([`Features::quiet_send`] off, IOCP) it is a send.
//! * **Relaying** (io_uring only, [`Features::relay`]): for bulk traffic a
//!   caller may move a connection's bytes socket → pipe → socket inside the
//!   kernel with a [`Relay`], waiting for readiness with [`Port::poll`]. The
//!   splices are plain non-blocking calls, not port operations: io_uring
//!   hands every `IORING_OP_SPLICE` to a kernel worker thread, which was
//!   measured to cost more than the copy it saves at 64 KiB
//!   (docs/BENCHMARKS.md).
//! * **Waking**: a [`Waker`] may be used from any thread to make a
//!   [`Port::wait`] return with a [`OpKind::Wake`] completion.
//! * **Teardown**: dropping a port cancels what is still in flight and waits
//!   (bounded) for it; if the kernel does not give a buffer back in time, the
//!   port leaks it rather than free memory the kernel may still write.
//! * **Sharing**: where the backend has one kernel queue that many threads
//!   may wait on ([`Features::shared_port`], IOCP), [`Port::try_share`] gives
//!   each extra worker its own handle on the same port. Any handle may then
//!   receive any completion, [`Port::in_flight`] counts the whole port, a
//!   [`Waker`] wakes one waiting handle, and the port is torn down when its
//!   last handle is dropped. On io_uring each thread owns its ring and
//!   `try_share` says no.
#![deny(missing_docs, rust_2018_idioms)]

mod sys;

use std::io;
use std::time::Duration;

use sys::RawSocket;

/// The caller's name for what an operation belongs to (a connection, the
/// listener). Returned unchanged with every completion.
pub type Token = u64;

/// Tokens the caller may not use for its own operations.
pub mod reserved {
    use super::Token;
    /// Completions of the port's own wake-up operation carry this token.
    pub const WAKE: Token = u64::MAX;
}

/// Identifies one in-flight operation, for [`Port::cancel`].
///
/// What it holds is the backend's business: io_uring's `user_data`, or the
/// socket and the `OVERLAPPED` address that IOCP's `CancelIoEx` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) sys::OpKey);

/// What an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A new connection (the result is its socket).
    Accept,
    /// Bytes received (the result is the count; 0 means the peer closed).
    Recv,
    /// Bytes sent (the result is the count, possibly short).
    Send,
    /// The socket was closed.
    Close,
    /// The socket became ready for what [`Port::poll`] asked (the result is
    /// the kernel's event mask).
    Ready,
    /// A [`Waker`] was used.
    Wake,
}

/// One finished (or, for multishot, progressed) operation.
#[derive(Debug)]
pub struct Completion {
    /// The token given at submission.
    pub token: Token,
    /// The operation.
    pub op: OpId,
    /// What it was.
    pub kind: OpKind,
    /// A byte count, or the error. An accept's is `Ok(0)`: its socket comes
    /// from [`take_socket`](Completion::take_socket).
    pub result: io::Result<usize>,
    /// Whether this operation will complete again (multishot).
    pub more: bool,
    /// An accept's new socket, until taken ([`Completion::take_socket`]).
    pub(crate) accepted: Option<Socket>,
    // Read by the backends that have buffers; the unsupported shell has none.
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    pub(crate) buf: sys::CompletionBuf,
}

impl Completion {
    /// The socket a successful accept made, once (then `None`). A socket
    /// not taken is closed with the completion.
    pub fn take_socket(&mut self) -> Option<Socket> {
        self.accepted.take()
    }
}

/// True if the error is the one an operation ends with when its cancel won.
pub fn is_cancelled(err: &io::Error) -> bool {
    sys::is_cancelled(err)
}

/// True if a receive ended because the provided-buffer ring was empty for a
/// moment; the caller should simply receive again.
pub fn is_out_of_buffers(err: &io::Error) -> bool {
    sys::is_out_of_buffers(err)
}

/// The error an operation ends with when its cancel won (for tests of code
/// above the port).
pub fn cancelled_error() -> io::Error {
    sys::cancelled_error()
}

/// What the port found the kernel can do, and which of it is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// The backend: "io_uring" or "IOCP".
    pub backend: &'static str,
    /// One kernel queue that several threads wait on ([`Port::try_share`]).
    pub shared_port: bool,
    /// One accept submission yields many connections.
    pub multishot_accept: bool,
    /// One recv submission yields many receives, into kernel-selected buffers.
    pub multishot_recv: bool,
    /// Receive buffers come from a shared ring rather than one per connection.
    pub provided_buffers: bool,
    /// The ring is used by one thread only (io_uring `SINGLE_ISSUER`).
    pub single_issuer: bool,
    /// Completion work runs only when the owner waits (io_uring `DEFER_TASKRUN`).
    pub defer_taskrun: bool,
    /// Completion work does not interrupt the owner (io_uring `COOP_TASKRUN`).
    pub coop_taskrun: bool,
    /// A kernel thread takes submissions off the queue (io_uring `SQPOLL`,
    /// asked for with [`PortConfig::sqpoll`]): no system call to submit
    /// while it polls. It excludes `DEFER_TASKRUN`.
    pub sqpoll: bool,
    /// A wait can ask for a minimum batch within a time bound (io_uring `min_wait`).
    pub min_wait: bool,
    /// Waits are not accounted as iowait (io_uring `NO_IOWAIT`, Linux 6.15+).
    pub no_iowait: bool,
    /// A send that completes at once and in full does not end a wait
    /// ([`Port::send_quiet`]; io_uring with `DEFER_TASKRUN`).
    pub quiet_send: bool,
    /// [`Port::send_received`] saves a copy and costs nothing else: the
    /// receive buffers come from a ring the kernel fills (io_uring's
    /// provided buffers). Elsewhere it works too, but the receive buffer it
    /// takes has to be replaced by a new one.
    pub lent_sends: bool,
    /// [`Relay`] and [`Port::poll`] work: a connection's bytes can go
    /// socket → pipe → socket inside the kernel (Linux `splice`), never
    /// copied into user memory.
    pub relay: bool,
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yn = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "{}: shared port {}, multishot accept {}, multishot recv {}, provided buffer ring {}, single issuer {}, defer taskrun {}, coop taskrun {}, sqpoll {}, min_wait {}, no_iowait {}, quiet send {}, sends from receive buffers {}, kernel relay (splice) {}",
            self.backend,
            yn(self.shared_port),
            yn(self.multishot_accept),
            yn(self.multishot_recv),
            yn(self.provided_buffers),
            yn(self.single_issuer),
            yn(self.defer_taskrun),
            yn(self.coop_taskrun),
            yn(self.sqpoll),
            yn(self.min_wait),
            yn(self.no_iowait),
            yn(self.quiet_send),
            yn(self.lent_sends),
            yn(self.relay),
        )
    }
}

/// How to build a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Submission queue size (the completion queue is larger).
    pub entries: u32,
    /// Size of each receive buffer.
    pub buf_size: usize,
    /// Receive buffers in the provided-buffer ring (a power of two).
    pub ring_bufs: u16,
    /// The longest a quiet send's completion waits for another one
    /// ([`Port::send_quiet`]): a wait with quiet sends in it ends by then.
    pub quiet_grace: Duration,
    /// Submit through a kernel thread that polls the submission queue
    /// (io_uring `SQPOLL`), which goes to sleep after this long without
    /// work. The thread is one of the process's, so its CPU is the
    /// process's. `None` (the default): submit with a system call. A port
    /// that cannot have it fails to build; it never quietly goes without.
    pub sqpoll: Option<Duration>,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            entries: 1024,
            buf_size: 16 * 1024,
            ring_bufs: 512,
            quiet_grace: Duration::from_millis(50),
            sqpoll: None,
        }
    }
}

/// The completion port cannot be used on this system.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UnavailableError {
    message: String,
    /// The error from the kernel (already described in the message).
    pub os_error: io::Error,
}

impl UnavailableError {
    pub(crate) fn new(message: String, source: io::Error) -> Self {
        UnavailableError {
            message,
            os_error: source,
        }
    }
}

/// Check that a port can be built here, and report what it would use.
///
/// The kernel is asked once per process for each ring size and SQPOLL
/// setting: the answer cannot change while the process runs, and building a
/// ring to find out costs a few system calls and some locked memory.
pub fn probe(config: &PortConfig) -> Result<Features, UnavailableError> {
    use std::sync::Mutex;
    type Probed = (
        (u32, Option<Duration>),
        Result<Features, (String, Option<i32>, io::ErrorKind)>,
    );
    static PROBED: Mutex<Vec<Probed>> = Mutex::new(Vec::new());
    let mut probed = PROBED.lock().unwrap_or_else(|p| p.into_inner());
    let answer = match probed
        .iter()
        .find(|(key, _)| *key == (config.entries, config.sqpoll))
    {
        Some((_, answer)) => answer.clone(),
        None => {
            let answer = sys::probe(config).map_err(|e| {
                (
                    e.message.clone(),
                    e.os_error.raw_os_error(),
                    e.os_error.kind(),
                )
            });
            probed.push(((config.entries, config.sqpoll), answer.clone()));
            answer
        }
    };
    answer.map_err(|(message, raw, kind)| {
        let os_error = raw.map_or_else(|| io::Error::from(kind), io::Error::from_raw_os_error);
        UnavailableError::new(message, os_error)
    })
}

/// A completion port. On Linux each worker thread owns one; on Windows the
/// workers share one through [`Port::try_share`].
///
/// Not `Send` on any system, so code written against it moves between them:
/// an io_uring is tied to the thread that built it, and on IOCP, where the
/// handle itself could move, the way to another thread is a [`PortShare`].
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<ringport_completion::Port>();
/// ```
pub struct Port {
    sys: sys::Port,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Port {
    /// Build a port on the calling thread (io_uring's `SINGLE_ISSUER` ties it
    /// to this thread).
    pub fn new(config: &PortConfig) -> Result<Port, UnavailableError> {
        Ok(Port {
            sys: sys::Port::new(config)?,
            _not_send: std::marker::PhantomData,
        })
    }

    /// What this port uses.
    pub fn features(&self) -> &Features {
        self.sys.features()
    }

    /// A way for another worker thread to use this same port, where the
    /// backend shares one kernel queue among threads
    /// ([`Features::shared_port`]: IOCP). `None` where each thread must own
    /// its port (io_uring).
    ///
    /// It is a [`PortShare`], not a `Port`, because a `Port` is not `Send`
    /// (an io_uring is tied to the thread that built it): send the share to
    /// the worker and turn it into that worker's handle there. Every handle
    /// may submit and wait; a completion goes to whichever handle dequeues it,
    /// and may be released through any handle.
    pub fn try_share(&self) -> Option<PortShare> {
        self.sys.try_share().map(PortShare)
    }

    /// Accept connections on `listener` (multishot where supported).
    pub fn accept(&mut self, listener: &std::net::TcpListener, token: Token) -> OpId {
        self.sys.accept(sys::raw_listener(listener), token)
    }

    /// Receive at most `max_len` bytes from `socket` (multishot from the
    /// buffer ring where supported, in which case `max_len` is only a hint).
    pub fn recv(&mut self, socket: &Socket, token: Token, max_len: usize) -> OpId {
        self.sys.recv(socket.raw(), token, max_len)
    }

    /// Receive once, at most `max_len` bytes, even where `recv` would be
    /// multishot: for a caller that must not be given more than it has room
    /// for (a multishot receive delivers whatever the socket holds before a
    /// cancel lands, which can be megabytes).
    pub fn recv_once(&mut self, socket: &Socket, token: Token, max_len: usize) -> OpId {
        self.sys.recv_once(socket.raw(), token, max_len)
    }

    /// Send `buf[offset..]`. The buffer comes back with the completion; the
    /// count may be short, in which case the caller sends the rest.
    pub fn send(&mut self, socket: &Socket, token: Token, buf: Vec<u8>, offset: usize) -> OpId {
        self.sys.send(socket.raw(), token, buf, offset)
    }

    /// Send the bytes that receive completion `c` delivered, straight from
    /// the buffer they were received into: no copy. `c` must be a successful
    /// receive with data, from `socket`; the buffer belongs to the send
    /// until it completes. Its completion's [`release`](Port::release)
    /// gives back a buffer with the bytes when the send was short (send the
    /// rest from the count on, as after [`send`](Port::send)); otherwise the
    /// buffer it gives back may be empty.
    pub fn send_received(&mut self, socket: &Socket, token: Token, c: Completion) -> OpId {
        self.sys.send_received(socket.raw(), token, c)
    }

    /// Like [`send`](Port::send), for a send nothing waits on: when it
    /// completes at once and in full, its completion alone does not end a
    /// [`wait`](Port::wait); it is handed over with the next completion that
    /// does. A short or failed send still ends the wait. Use it only while
    /// some other operation (such as a receive) will complete when the peer
    /// next does something, or the completion may stay unseen until then.
    /// Where the backend cannot do this ([`Features::quiet_send`] off), it is
    /// an ordinary send.
    pub fn send_quiet(
        &mut self,
        socket: &Socket,
        token: Token,
        buf: Vec<u8>,
        offset: usize,
    ) -> OpId {
        self.sys.send_quiet(socket.raw(), token, buf, offset)
    }

    /// Close `socket` through the port; the close completes like any other
    /// operation. No operation on it may still be in flight. A socket the
    /// port has used should be closed here (dropping it closes it at once,
    /// behind the port's back: on IOCP the port would not know the handle
    /// is gone).
    pub fn close(&mut self, socket: Socket, token: Token) -> OpId {
        self.sys.close(sys::into_raw(socket.0), token)
    }

    /// Complete once `socket` is ready for `interest` (readable: data, end of
    /// stream or an error; writable: room, or an error), with
    /// [`OpKind::Ready`]. One-shot. For moving bytes outside the port
    /// ([`Relay`]); only where [`Features::relay`] says so.
    ///
    /// # Panics
    /// Where [`Features::relay`] is off (IOCP has no readiness operation).
    pub fn poll(&mut self, socket: &Socket, token: Token, interest: Interest) -> OpId {
        assert!(self.features().relay, "Port::poll needs Features::relay");
        self.sys.poll(socket.raw(), token, interest)
    }

    /// Ask `op` to end early. It still completes; see the crate docs.
    pub fn cancel(&mut self, op: OpId) {
        self.sys.cancel(op)
    }

    /// Submit what is queued and wait until at least one completion is ready
    /// (or `timeout` passes), then append every ready completion to `out`.
    ///
    /// With `coalesce`, wait up to that long for a batch of `batch` completions
    /// before returning; it never waits for more than are in flight.
    pub fn wait(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
        coalesce: Option<(usize, Duration)>,
    ) -> io::Result<()> {
        let from = out.len();
        self.sys.wait(out, timeout, coalesce)?;
        for c in &mut out[from..] {
            if c.kind == OpKind::Accept {
                if let Ok(raw) = c.result {
                    // The backend hands the new socket over exactly once,
                    // here; from now on it is owned.
                    // SAFETY: an accept's successful result is the socket
                    // the kernel made for it, open and owned by nobody; this
                    // loop sees each completion once, and `result` is reset
                    // below so it is never taken again.
                    let socket = unsafe { sys::accepted_socket(raw as RawSocket) };
                    c.accepted = Some(Socket(socket));
                    c.result = Ok(0);
                }
            }
        }
        Ok(())
    }

    /// The bytes a successful `recv` completion delivered.
    pub fn data<'a>(&'a self, c: &'a Completion) -> &'a [u8] {
        self.sys.data(c)
    }

    /// Finish with a completion: receive buffers go back to their owner, and
    /// a send's buffer is returned to the caller.
    pub fn release(&mut self, c: Completion) -> Option<Vec<u8>> {
        self.sys.release(c)
    }

    /// A handle that wakes this port's `wait` from any thread (on a shared
    /// port: one of the waiting handles).
    pub fn waker(&self) -> Waker {
        Waker(self.sys.waker())
    }

    /// Operations submitted and not yet finally completed (on a shared port:
    /// through any of its handles).
    pub fn in_flight(&self) -> usize {
        self.sys.in_flight()
    }
}

/// Another worker's future handle on a shared port ([`Port::try_share`]).
pub struct PortShare(sys::PortShare);

impl PortShare {
    /// Become a handle on the shared port, on the thread that will use it.
    pub fn into_port(self) -> Port {
        Port {
            sys: self.0.into_port(),
            _not_send: std::marker::PhantomData,
        }
    }
}

/// Wakes a [`Port`] from another thread.
#[derive(Clone)]
pub struct Waker(sys::Waker);

impl Waker {
    /// Make the port's current or next `wait` return with an [`OpKind::Wake`] completion.
    pub fn wake(&self) {
        self.0.wake()
    }
}

/// What [`Port::poll`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Bytes to read, the end of stream, or an error.
    Read,
    /// Room to write, or an error.
    Write,
}

/// A pipe that a connection's bytes pass through inside the kernel: read
/// from a socket into the pipe ([`fill`](Relay::fill)), written from the
/// pipe to a socket ([`drain`](Relay::drain)), with `splice(2)`. The bytes
/// are never copied into user memory, and on loopback not copied at all:
/// the pipe holds references to the pages the sender's kernel filled.
/// Both calls never block (the socket must be non-blocking,
/// [`Socket::set_nonblocking`]): `WouldBlock` means wait with
/// [`Port::poll`]. Linux only ([`Features::relay`]).
///
/// It keeps no count of what it holds: the caller knows what it filled
/// and drained, and a pipe that is full cannot be told apart from a socket
/// that is empty, so the caller never asks for more than the room left.
#[derive(Debug)]
pub struct Relay(sys::Relay);

impl Relay {
    /// A pipe of about `capacity` bytes (the kernel rounds it to a power of
    /// two of pages and may give less). Fails with `Unsupported` where
    /// there is no `splice`, or as `pipe(2)` does (out of descriptors).
    pub fn new(capacity: usize) -> io::Result<Relay> {
        sys::Relay::new(capacity).map(Relay)
    }

    /// What the pipe holds at most, in bytes.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Move at most `max` bytes from `from` into the pipe. `Ok(0)`: the
    /// peer sent its FIN, or an urgent (out-of-band) byte stands before
    /// it; `splice` never passes an urgent mark (`WouldBlock` while the
    /// socket stays readable), so after either, receive through the port,
    /// which skips the urgent byte and tells the FIN for certain.
    pub fn fill(&mut self, from: &Socket, max: usize) -> io::Result<usize> {
        self.0.fill(from.raw(), max)
    }

    /// Move at most `max` bytes from the pipe to `to`.
    pub fn drain(&mut self, to: &Socket, max: usize) -> io::Result<usize> {
        self.0.drain(to.raw(), max)
    }
}

/// A connected socket driven through a port, owned: dropped, it is closed
/// at once; [`Port::close`] closes it through the port instead.
#[derive(Debug)]
pub struct Socket(socket2::Socket);

impl Socket {
    /// Set `TCP_NODELAY` (echo replies must not wait for Nagle).
    pub fn set_nodelay(&self) -> io::Result<()> {
        self.0.set_nodelay(true)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
    }

    /// Shut down one or both directions, outside the port: a quick call that
    /// never blocks (the FIN goes out after bytes already sent).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.0.shutdown(how)
    }

    /// Make calls outside the port (a [`Relay`]'s) return `WouldBlock`
    /// instead of waiting. On io_uring a non-blocking socket's receives and
    /// sends end with `WouldBlock` instead of waiting too, so set it only
    /// while the socket is relayed, and clear it before using the port's
    /// receives and sends again.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.0.set_nonblocking(on)
    }

    fn raw(&self) -> RawSocket {
        sys::raw(&self.0)
    }
}

impl From<std::net::TcpStream> for Socket {
    /// Take an accepted std stream, to drive it through a port.
    fn from(stream: std::net::TcpStream) -> Socket {
        Socket(socket2::Socket::from(stream))
    }
}
