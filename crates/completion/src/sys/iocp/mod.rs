//! The IOCP backend of the completion port (Windows; CI runs it under Wine).
//!
//! One I/O completion port is shared by every worker: [`Port::try_share`]
//! hands out more handles on it, and whichever thread dequeues a completion
//! handles it. How the port contract (see the crate docs) maps onto IOCP:
//!
//! * **Operations** are heap records whose first field is the `OVERLAPPED`
//!   (`op.rs`). `AcceptEx` (loaded with `SIO_GET_EXTENSION_FUNCTION_POINTER`)
//!   accepts into a socket made beforehand, then `SO_UPDATE_ACCEPT_CONTEXT`;
//!   `WSARecv` and `WSASend` are overlapped. There is no multishot: every
//!   completion says `more: false`, and the caller re-arms. There are no
//!   provided buffers: each receive owns a buffer of `buf_size` bytes.
//! * **Completion keys** say what the `OVERLAPPED*` of a packet is ([`key`]),
//!   not which connection: the contract's token is per operation (a socket
//!   may be accepted under the listener's token and then read under its own),
//!   so it lives in the record. Keys and tokens are full 64-bit values.
//! * **Association**: a socket is tied to the port (`CreateIoCompletionPort`)
//!   before its first operation; the port remembers which, because Windows
//!   refuses a second association. So a socket the port has used must be
//!   closed through [`Port::close`], which forgets it.
//! * **Close** is `closesocket`, done at once, and its completion is posted
//!   to the port (`PostQueuedCompletionStatus`), so the caller sees an
//!   `OpKind::Close` completion like on io_uring. An operation that fails to
//!   start is reported the same way.
//! * **Cancel** is `CancelIoEx(socket, overlapped)`; the operation then
//!   completes with `STATUS_CANCELLED`, which Winsock (and Wine) report as
//!   `WSA_OPERATION_ABORTED` (995).
//! * **Waking** posts a packet with the reserved [`key::WAKE`]; on a shared
//!   port it wakes one waiting thread, so the driver posts one per worker.
//! * **Teardown** happens when the last handle goes: cancel everything on the
//!   sockets still associated, drain (bounded), and leak any record whose
//!   packet did not come back, since the kernel may still write into it.

mod op;

use crate::{Completion, Features, OpId, OpKind, PortConfig, Token, UnavailableError};
use op::Record;
use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawSocket, BorrowedSocket, FromRawSocket, IntoRawSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::{
    CloseHandle, FALSE, HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
};
use windows_sys::Win32::Networking::WinSock::{closesocket, SOCKET, SOCKET_ERROR};
use windows_sys::Win32::System::Threading::INFINITE;
use windows_sys::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatusEx, PostQueuedCompletionStatus,
    OVERLAPPED, OVERLAPPED_ENTRY,
};

/// A socket as Winsock names it.
pub type RawSocket = SOCKET;

pub(super) const INVALID_SOCKET: SOCKET = windows_sys::Win32::Networking::WinSock::INVALID_SOCKET;

/// What an [`OpId`] holds here: what `CancelIoEx` needs, the socket and the
/// record's address. The address is only compared by the kernel, never
/// dereferenced, so a stale id cannot touch freed memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct OpKey {
    socket: SOCKET,
    record: usize,
}

/// Completion keys: what the `OVERLAPPED*` of a dequeued packet points at.
mod key {
    /// A kernel-completed operation on an associated socket: a `Record`.
    pub const IO: usize = 1;
    /// A `Record` the port posted itself, its result already inside.
    pub const DONE: usize = 2;
    /// A [`Waker`](super::Waker) packet; no `OVERLAPPED`.
    pub const WAKE: usize = 3;
}

/// Completions taken per `GetQueuedCompletionStatusEx`. Small on purpose: a
/// thread that grabs a large batch keeps it from idle workers, and balancing
/// work across threads is the point of a shared port.
const BATCH: usize = 32;
/// Shards of the set of associated sockets, so workers rarely contend.
const SHARDS: usize = 16;
/// How long the last handle waits for the kernel to hand back its records.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);
/// Receive buffers each handle keeps for reuse.
const RECV_POOL: usize = 64;

/// Where the bytes of a completion live: in its record, kept until release.
#[derive(Debug)]
pub(crate) struct CompletionBuf(Option<Box<Record>>);

pub(crate) fn is_cancelled(err: &io::Error) -> bool {
    use windows_sys::Win32::Foundation::{ERROR_OPERATION_ABORTED, STATUS_CANCELLED};
    match err.raw_os_error() {
        // WSAGetOverlappedResult maps STATUS_CANCELLED to
        // WSA_OPERATION_ABORTED, which is ERROR_OPERATION_ABORTED (995), on
        // Windows and on Wine 8 alike; the raw NTSTATUS is accepted in case a
        // layer passes it through unmapped.
        Some(code) => code == ERROR_OPERATION_ABORTED as i32 || code == STATUS_CANCELLED,
        None => false,
    }
}

/// IOCP has no provided-buffer ring, so a receive never runs out of one.
pub(crate) fn is_out_of_buffers(_err: &io::Error) -> bool {
    false
}

pub(crate) fn cancelled_error() -> io::Error {
    io::Error::from_raw_os_error(windows_sys::Win32::Foundation::ERROR_OPERATION_ABORTED as i32)
}

fn unavailable(err: io::Error) -> UnavailableError {
    UnavailableError::new(format!("IOCP is unavailable ({err})"), err)
}

fn features() -> Features {
    Features {
        backend: "IOCP",
        shared_port: true,
        ..Features::default()
    }
}

/// The port's kernel handle, closed when the last owner (a port handle or a
/// waker) lets go.
struct PortHandle(HANDLE);

// SAFETY: a completion port handle may be used from any thread; that is what
// it is for.
unsafe impl Send for PortHandle {}
// SAFETY: as above; every call on it is thread-safe in the kernel.
unsafe impl Sync for PortHandle {}

impl PortHandle {
    fn create() -> io::Result<PortHandle> {
        // SAFETY: INVALID_HANDLE_VALUE with no existing port asks for a new,
        // unassociated port; concurrency 0 means one running thread per CPU.
        let h = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, std::ptr::null_mut(), 0, 0) };
        if h.is_null() {
            Err(io::Error::last_os_error())
        } else {
            Ok(PortHandle(h))
        }
    }

    /// Queue a packet. `overlapped` must be null or a leaked `Record`.
    fn post(&self, key: usize, overlapped: *const OVERLAPPED) -> bool {
        // SAFETY: the handle is open while `self` lives; the kernel stores
        // the pointer without reading it, and whoever dequeues the packet
        // reclaims the record.
        unsafe { PostQueuedCompletionStatus(self.0, 0, key, overlapped) != 0 }
    }
}

impl Drop for PortHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and nobody uses it any more.
        unsafe { CloseHandle(self.0) };
    }
}

pub(crate) fn probe(config: &PortConfig) -> Result<Features, UnavailableError> {
    no_sqpoll(config)?;
    PortHandle::create().map_err(unavailable)?;
    Ok(features())
}

/// `SQPOLL` is io_uring's: an IOCP port has no submission queue to poll.
/// Asked for here, it is an error rather than quietly ignored.
fn no_sqpoll(config: &PortConfig) -> Result<(), UnavailableError> {
    match config.sqpoll {
        None => Ok(()),
        Some(_) => Err(UnavailableError::new(
            "SQPOLL is io_uring's (Linux): an IOCP port submits with a system call per operation"
                .into(),
            io::Error::from(io::ErrorKind::Unsupported),
        )),
    }
}

/// What all handles on one port share.
struct Shared {
    handle: Arc<PortHandle>,
    features: Features,
    buf_size: usize,
    in_flight: AtomicUsize,
    /// Sockets tied to the port, by shard.
    associated: Vec<Mutex<HashSet<SOCKET>>>,
    accept_ex: OnceLock<op::AcceptExFn>,
}

impl Shared {
    fn shard(&self, socket: SOCKET) -> &Mutex<HashSet<SOCKET>> {
        // Socket handles are multiples of 4.
        &self.associated[(socket >> 2) % SHARDS]
    }

    /// Tie `socket` to the port, once.
    fn associate(&self, socket: SOCKET) -> io::Result<()> {
        let mut set = self.shard(socket).lock().unwrap();
        if set.contains(&socket) {
            return Ok(());
        }
        // SAFETY: `socket` is a socket the caller owns; the call only records
        // the (socket, port, key) triple in the kernel.
        let h = unsafe { CreateIoCompletionPort(socket as HANDLE, self.handle.0, key::IO, 0) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        set.insert(socket);
        Ok(())
    }

    fn forget(&self, socket: SOCKET) {
        self.shard(socket).lock().unwrap().remove(&socket);
    }

    fn accept_ex(&self, listener: SOCKET) -> io::Result<op::AcceptExFn> {
        if let Some(f) = self.accept_ex.get() {
            return Ok(*f);
        }
        let f = op::load_accept_ex(listener)?;
        Ok(*self.accept_ex.get_or_init(|| f))
    }

    /// Turn a dequeued packet back into a completion, or `None` for a packet
    /// this port does not know.
    fn complete(&self, entry: &OVERLAPPED_ENTRY) -> Option<Completion> {
        match entry.lpCompletionKey {
            key::WAKE => Some(Completion {
                token: crate::reserved::WAKE,
                op: OpId(OpKey {
                    socket: INVALID_SOCKET,
                    record: 0,
                }),
                kind: OpKind::Wake,
                result: Ok(0),
                more: false,
                accepted: None,
                buf: CompletionBuf(None),
            }),
            key::IO | key::DONE if !entry.lpOverlapped.is_null() => {
                // SAFETY: packets with these keys carry the OVERLAPPED of a
                // record leaked by `submit` or `post_done`; the OVERLAPPED is
                // its first field, and now that the packet is dequeued the
                // kernel no longer uses any of it.
                let rec = unsafe { Box::from_raw(entry.lpOverlapped.cast::<Record>()) };
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                Some(finish(rec))
            }
            _ => None,
        }
    }
}

/// Build the completion of a record that is back from the kernel.
fn finish(mut rec: Box<Record>) -> Completion {
    let socket = if rec.done.is_some() {
        INVALID_SOCKET
    } else {
        rec.socket
    };
    let op = OpId(OpKey {
        socket,
        record: &*rec as *const Record as usize,
    });
    let result = rec.take_result();
    Completion {
        token: rec.token,
        op,
        kind: rec.kind,
        result,
        more: false,
        accepted: None,
        buf: CompletionBuf(Some(rec)),
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: cancel whatever is still running on our
        // sockets and take the records back as their packets arrive.
        for shard in &self.associated {
            for &socket in shard.lock().unwrap().iter() {
                // SAFETY: a null OVERLAPPED cancels every request on the
                // socket; nothing is dereferenced.
                unsafe { CancelIoEx(socket as HANDLE, std::ptr::null()) };
            }
        }
        let deadline = Instant::now() + TEARDOWN_WAIT;
        let mut entries = [OVERLAPPED_ENTRY::default(); BATCH];
        while self.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            let n = dequeue(&self.handle, &mut entries, 50).unwrap_or(0);
            for e in &entries[..n] {
                drop(self.complete(e));
            }
        }
        // Records still in flight were never turned back into a Box: they
        // are leaked, which is what the kernel may still write into needs.
    }
}

/// Take up to `entries.len()` packets, waiting at most `ms` milliseconds.
fn dequeue(handle: &PortHandle, entries: &mut [OVERLAPPED_ENTRY], ms: u32) -> io::Result<usize> {
    let mut n = 0u32;
    // SAFETY: `entries` is a live, writable array of the length given, and
    // `n` receives how many were filled.
    let ok = unsafe {
        GetQueuedCompletionStatusEx(
            handle.0,
            entries.as_mut_ptr(),
            entries.len() as u32,
            &mut n,
            ms,
            FALSE,
        )
    };
    if ok != 0 {
        return Ok(n as usize);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(WAIT_TIMEOUT as i32) {
        Ok(0)
    } else {
        Err(err)
    }
}

/// Wakes one thread waiting on the port.
#[derive(Clone)]
pub(crate) struct Waker {
    handle: Arc<PortHandle>,
}

impl Waker {
    pub(crate) fn wake(&self) {
        // A full kernel pool is the only failure; the caller wakes again later.
        let _ = self.handle.post(key::WAKE, std::ptr::null());
    }
}

/// Another handle on the same port, on its way to its thread.
pub(crate) struct PortShare(Arc<Shared>);

impl PortShare {
    pub(crate) fn into_port(self) -> Port {
        Port {
            shared: self.0,
            recv_pool: Vec::new(),
            local: Vec::new(),
        }
    }
}

/// One worker's handle on a (possibly shared) port.
pub(crate) struct Port {
    shared: Arc<Shared>,
    recv_pool: Vec<Vec<u8>>,
    /// Records whose completion could not be posted (the kernel was out of
    /// memory); the next `wait` returns them without sleeping. Boxed so each
    /// keeps the address its `OpId` was made from.
    #[allow(clippy::vec_box)]
    local: Vec<Box<Record>>,
}

impl Port {
    pub(crate) fn new(config: &PortConfig) -> Result<Port, UnavailableError> {
        no_sqpoll(config)?;
        let handle = PortHandle::create().map_err(unavailable)?;
        let shared = Shared {
            handle: Arc::new(handle),
            features: features(),
            buf_size: config.buf_size.max(1),
            in_flight: AtomicUsize::new(0),
            associated: (0..SHARDS).map(|_| Mutex::default()).collect(),
            accept_ex: OnceLock::new(),
        };
        Ok(Port {
            shared: Arc::new(shared),
            recv_pool: Vec::new(),
            local: Vec::new(),
        })
    }

    pub(crate) fn features(&self) -> &Features {
        &self.shared.features
    }

    pub(crate) fn try_share(&self) -> Option<PortShare> {
        Some(PortShare(self.shared.clone()))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn waker(&self) -> Waker {
        Waker {
            handle: self.shared.handle.clone(),
        }
    }

    /// Hand `rec` to the kernel with `start`, which says whether a packet
    /// will be queued for it. If not, the failure is posted as its completion.
    fn submit(
        &mut self,
        mut rec: Box<Record>,
        start: impl FnOnce(*mut Record) -> io::Result<()>,
    ) -> OpId {
        let socket = rec.socket;
        if let Err(e) = self.shared.associate(socket) {
            rec.done = Some(Err(e));
            return self.post_done(rec);
        }
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let ptr = Box::into_raw(rec);
        match start(ptr) {
            // The record now belongs to whichever thread dequeues its packet.
            Ok(()) => OpId(OpKey {
                socket,
                record: ptr as usize,
            }),
            Err(e) => {
                self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: the start failed, so no packet will be queued and
                // nothing but us holds the pointer.
                let mut rec = unsafe { Box::from_raw(ptr) };
                rec.done = Some(Err(e));
                self.post_done(rec)
            }
        }
    }

    /// Complete `rec` (its result already set) through the port.
    fn post_done(&mut self, rec: Box<Record>) -> OpId {
        debug_assert!(rec.done.is_some());
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let ptr = Box::into_raw(rec);
        let id = OpId(OpKey {
            socket: INVALID_SOCKET,
            record: ptr as usize,
        });
        if !self.shared.handle.post(key::DONE, ptr.cast()) {
            // SAFETY: the post failed, so no packet holds the pointer.
            self.local.push(unsafe { Box::from_raw(ptr) });
        }
        id
    }

    pub(crate) fn accept(&mut self, listener: SOCKET, token: Token) -> OpId {
        let prepared = self.shared.accept_ex(listener).and_then(|f| {
            // The accept socket must match the listener's family; socket2
            // makes it overlapped and not inheritable.
            // SAFETY: `listener` is the caller's open listener, which it
            // keeps open while its accepts are posted (`Port::accept`).
            let family = unsafe { with_socket(listener, |s| s.local_addr()) }?.domain();
            let s =
                socket2::Socket::new(family, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
            Ok((f, s.into_raw_socket() as SOCKET))
        });
        match prepared {
            Ok((accept_ex, accepted)) => {
                let rec = Record::accept(token, listener, accepted);
                // SAFETY: `submit` passes a leaked record whose listener is
                // associated, and does not touch it after an `Ok`.
                self.submit(rec, |r| unsafe { op::start_accept(r, accept_ex) })
            }
            Err(e) => {
                let mut rec = Record::new(token, OpKind::Accept, listener, Vec::new());
                rec.done = Some(Err(e));
                self.post_done(rec)
            }
        }
    }

    /// Every receive completes once here: the same as `recv`.
    pub(crate) fn recv_once(&mut self, socket: SOCKET, token: Token, max_len: usize) -> OpId {
        self.recv(socket, token, max_len)
    }

    pub(crate) fn recv(&mut self, socket: SOCKET, token: Token, max_len: usize) -> OpId {
        let size = self.shared.buf_size;
        let len = max_len.clamp(1, size).min(u32::MAX as usize);
        let mut buf = self.recv_pool.pop().unwrap_or_default();
        buf.resize(size, 0);
        let rec = Record::new(token, OpKind::Recv, socket, buf);
        // SAFETY: as in `accept`; `len` fits the buffer.
        self.submit(rec, |r| unsafe { op::start_recv(r, len) })
    }

    /// Every IOCP completion wakes a waiter; a quiet send is a send.
    pub(crate) fn send_quiet(
        &mut self,
        socket: SOCKET,
        token: Token,
        buf: Vec<u8>,
        offset: usize,
    ) -> OpId {
        self.send(socket, token, buf, offset)
    }

    /// Send what receive completion `c` delivered: its record's buffer
    /// becomes the send's (no copy).
    pub(crate) fn send_received(&mut self, socket: SOCKET, token: Token, c: Completion) -> OpId {
        let n = match c.result {
            Ok(n) if c.kind == OpKind::Recv && n > 0 => n,
            _ => panic!("send_received needs a receive completion with data"),
        };
        let mut rec = c.buf.0.expect("a receive with data has a buffer");
        let mut buf = std::mem::take(&mut rec.buf);
        buf.truncate(n);
        self.send(socket, token, buf, 0)
    }

    pub(crate) fn send(
        &mut self,
        socket: SOCKET,
        token: Token,
        buf: Vec<u8>,
        offset: usize,
    ) -> OpId {
        assert!(offset < buf.len(), "send of nothing");
        let rec = Record::new(token, OpKind::Send, socket, buf);
        // SAFETY: as in `accept`; `offset` is inside the buffer.
        self.submit(rec, |r| unsafe { op::start_send(r, offset) })
    }

    pub(crate) fn close(&mut self, socket: SOCKET, token: Token) -> OpId {
        // Forget it first: once closed, Windows may hand the same number to
        // a new socket, which must then be associated afresh.
        self.shared.forget(socket);
        // SAFETY: the caller gives the socket up, with nothing in flight on
        // it (the contract), so no record refers to it any more.
        let rc = unsafe { closesocket(socket) };
        let mut rec = Record::new(token, OpKind::Close, INVALID_SOCKET, Vec::new());
        rec.done = Some(if rc == SOCKET_ERROR {
            Err(op::last_wsa_error())
        } else {
            Ok(0)
        });
        self.post_done(rec)
    }

    /// IOCP has no readiness operation, and `Features::relay` is off, so
    /// `Port::poll` refuses before it gets here.
    pub(crate) fn poll(&mut self, _: SOCKET, _: Token, _: crate::Interest) -> OpId {
        unreachable!("Port::poll without Features::relay")
    }

    pub(crate) fn cancel(&mut self, op: OpId) {
        let OpKey { socket, record } = op.0;
        if socket == INVALID_SOCKET {
            // A posted completion: there is no kernel request to cancel.
            return;
        }
        // SAFETY: CancelIoEx only compares `record` with the OVERLAPPED
        // addresses of the requests pending on `socket`; it never reads it.
        // A record stays allocated until its completion is released, so the
        // address cannot name a newer operation while the caller may still
        // cancel this one. If the operation already finished, nothing matches
        // (ERROR_NOT_FOUND) and its completion is on its way: fine.
        unsafe { CancelIoEx(socket as HANDLE, record as *const OVERLAPPED) };
    }

    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
        // IOCP has no "wait for a batch" bound like io_uring's min_wait.
        _coalesce: Option<(usize, Duration)>,
    ) -> io::Result<()> {
        let mut ms = match timeout {
            None => INFINITE,
            // Round up, so a sub-millisecond timeout does not spin.
            Some(d) => d
                .as_nanos()
                .div_ceil(1_000_000)
                .min(u128::from(INFINITE - 1)) as u32,
        };
        if !self.local.is_empty() {
            ms = 0;
            for rec in self.local.drain(..) {
                self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                out.push(finish(rec));
            }
        }
        let mut entries = [OVERLAPPED_ENTRY::default(); BATCH];
        let n = dequeue(&self.shared.handle, &mut entries, ms)?;
        out.extend(entries[..n].iter().filter_map(|e| self.shared.complete(e)));
        Ok(())
    }

    pub(crate) fn data<'a>(&'a self, c: &'a Completion) -> &'a [u8] {
        match (&c.result, &c.buf.0) {
            (Ok(n), Some(rec)) if c.kind == OpKind::Recv => &rec.buf[..(*n).min(rec.buf.len())],
            _ => &[],
        }
    }

    pub(crate) fn release(&mut self, c: Completion) -> Option<Vec<u8>> {
        let mut rec = c.buf.0?;
        let buf = std::mem::take(&mut rec.buf);
        match c.kind {
            OpKind::Send => Some(buf),
            OpKind::Recv => {
                if self.recv_pool.len() < RECV_POOL {
                    self.recv_pool.push(buf);
                }
                None
            }
            _ => None,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let n = self.local.len();
        self.local.clear();
        self.shared.in_flight.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Run `f` on a socket we do not own, without closing it afterwards.
///
/// # Safety
///
/// `socket` must be an open socket, and stay open until this returns.
pub(crate) unsafe fn with_socket<T>(
    socket: SOCKET,
    f: impl FnOnce(socket2::SockRef<'_>) -> T,
) -> T {
    // SAFETY: the caller keeps `socket` open for the duration of this call;
    // a BorrowedSocket never closes what it borrows.
    let borrowed = unsafe { BorrowedSocket::borrow_raw(socket as std::os::windows::io::RawSocket) };
    f(socket2::SockRef::from(&borrowed))
}

pub(crate) fn raw_listener(l: &std::net::TcpListener) -> SOCKET {
    l.as_raw_socket() as SOCKET
}

pub(crate) fn raw(s: &socket2::Socket) -> SOCKET {
    s.as_raw_socket() as SOCKET
}

pub(crate) fn into_raw(s: socket2::Socket) -> SOCKET {
    s.into_raw_socket() as SOCKET
}

/// Take ownership of the socket an accept's completion carries.
///
/// # Safety
///
/// `socket` must be an open socket that nothing else owns or will close:
/// the one an accept's completion hands over, taken exactly once.
pub(crate) unsafe fn accepted_socket(socket: SOCKET) -> socket2::Socket {
    // SAFETY: the caller passes an open socket nobody else owns.
    unsafe { socket2::Socket::from_raw_socket(socket as std::os::windows::io::RawSocket) }
}
