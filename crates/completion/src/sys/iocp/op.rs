//! Operation records of the IOCP backend, and the Winsock calls that start
//! and finish them.
//!
//! A record is a heap allocation whose first field is the `OVERLAPPED`, so the
//! `OVERLAPPED*` that IOCP hands back with a completion *is* the record: no
//! table lookup, and nothing 32-bit in the way (the article squeezed pointers
//! into DWORD completion keys). While an operation is in flight the record is
//! a raw pointer that only the kernel holds (`Box::into_raw`); it becomes a
//! `Box` again when its completion is dequeued, and then travels inside the
//! [`Completion`](crate::Completion) until the caller releases it. Keeping it
//! alive until the release means its address cannot be reused by a new
//! operation while a driver may still hold its `OpId` for a cancel.
//!
//! Every function here that takes a `*mut Record` starts an operation: it
//! must not touch the record after the Winsock call, because from that moment
//! another thread may dequeue the completion and free it.

use super::{Token, INVALID_SOCKET};
use crate::OpKind;
use std::io;
use std::ptr::{addr_of, addr_of_mut};
use windows_sys::Win32::Foundation::{ERROR_IO_PENDING, FALSE};

const _: () = assert!(ERROR_IO_PENDING as i32 == WSA_IO_PENDING);
use windows_sys::Win32::Networking::WinSock::{
    closesocket, setsockopt, WSAGetLastError, WSAGetOverlappedResult, WSAIoctl, WSARecv, WSASend,
    LPFN_ACCEPTEX, SIO_GET_EXTENSION_FUNCTION_POINTER, SOCKADDR_STORAGE, SOCKET, SOCKET_ERROR,
    SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, WSABUF, WSAID_ACCEPTEX, WSA_IO_PENDING,
};
use windows_sys::Win32::System::IO::OVERLAPPED;

/// Room AcceptEx needs for each of the two addresses it writes: the largest
/// address plus 16 bytes, as its documentation requires.
const ADDR_ROOM: usize = std::mem::size_of::<SOCKADDR_STORAGE>() + 16;

/// The `AcceptEx` extension function, as `WSAIoctl` hands it out.
pub(super) type AcceptExFn = unsafe extern "system" fn(
    SOCKET,
    SOCKET,
    *mut core::ffi::c_void,
    u32,
    u32,
    u32,
    *mut u32,
    *mut OVERLAPPED,
) -> windows_sys::core::BOOL;

/// One operation, from submission until the caller releases its completion.
#[repr(C)]
pub(super) struct Record {
    /// First, so that the kernel's `OVERLAPPED*` is a `*mut Record`.
    overlapped: OVERLAPPED,
    pub(super) token: Token,
    pub(super) kind: OpKind,
    /// The socket the operation runs on (the listener for an accept), or
    /// `INVALID_SOCKET` for a record that never reaches the kernel.
    pub(super) socket: SOCKET,
    /// A receive's target or a send's source. The kernel reads or writes its
    /// heap memory while the operation is in flight; the `Vec` itself is not
    /// touched until the completion is dequeued.
    pub(super) buf: Vec<u8>,
    wsabuf: WSABUF,
    flags: u32,
    /// An accept's new socket, created before `AcceptEx` (IOCP accepts into a
    /// socket the caller made); owned by the record until handed out.
    accepted: SOCKET,
    /// Where `AcceptEx` writes the local and remote addresses.
    addrs: [u8; 2 * ADDR_ROOM],
    /// The result, for records completed without the kernel: a close (done
    /// at once) or an operation that failed to start. `None` means "ask the
    /// `OVERLAPPED`".
    pub(super) done: Option<io::Result<usize>>,
}

// SAFETY: the raw pointers inside (the OVERLAPPED's event, the WSABUF) are
// null or point into the record's own `buf`. A record moves between threads
// only while no kernel operation holds it: before it starts, or after its
// completion was dequeued.
unsafe impl Send for Record {}

impl Record {
    pub(super) fn new(token: Token, kind: OpKind, socket: SOCKET, buf: Vec<u8>) -> Box<Record> {
        Box::new(Record {
            overlapped: OVERLAPPED::default(),
            token,
            kind,
            socket,
            buf,
            wsabuf: WSABUF::default(),
            flags: 0,
            accepted: INVALID_SOCKET,
            addrs: [0; 2 * ADDR_ROOM],
            done: None,
        })
    }

    /// An accept that will land in `accepted`, which the record now owns.
    pub(super) fn accept(token: Token, listener: SOCKET, accepted: SOCKET) -> Box<Record> {
        let mut rec = Record::new(token, OpKind::Accept, listener, Vec::new());
        rec.accepted = accepted;
        rec
    }

    /// The result of a dequeued operation. For an accept, this also finishes
    /// it (`SO_UPDATE_ACCEPT_CONTEXT`) and hands the new socket out.
    pub(super) fn take_result(&mut self) -> io::Result<usize> {
        let result = match self.done.take() {
            Some(r) => r,
            None => self.overlapped_result(),
        };
        match (self.kind, result) {
            (OpKind::Accept, Ok(_)) => self.finish_accept(),
            (_, r) => r,
        }
    }

    fn overlapped_result(&self) -> io::Result<usize> {
        let mut bytes = 0u32;
        let mut flags = 0u32;
        // SAFETY: the operation's packet has been dequeued, so the kernel is
        // done with the OVERLAPPED; with fWait FALSE the call only reads it
        // (and maps its NTSTATUS to a Winsock error code).
        let ok = unsafe {
            WSAGetOverlappedResult(self.socket, &self.overlapped, &mut bytes, FALSE, &mut flags)
        };
        if ok != 0 {
            Ok(bytes as usize)
        } else {
            Err(last_wsa_error())
        }
    }

    /// Let the accepted socket inherit the listener's properties, so that
    /// `getpeername`, `setsockopt` and `shutdown` work on it, then give it out.
    fn finish_accept(&mut self) -> io::Result<usize> {
        let listener = self.socket;
        // SAFETY: `accepted` is the socket AcceptEx just connected and that
        // the record owns; the option value is a live local of the size given.
        let rc = unsafe {
            setsockopt(
                self.accepted,
                SOL_SOCKET,
                SO_UPDATE_ACCEPT_CONTEXT,
                addr_of!(listener).cast(),
                std::mem::size_of::<SOCKET>() as i32,
            )
        };
        if rc == SOCKET_ERROR {
            // The record's drop closes the socket.
            return Err(last_wsa_error());
        }
        Ok(std::mem::replace(&mut self.accepted, INVALID_SOCKET))
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if self.accepted != INVALID_SOCKET {
            // SAFETY: an accept socket that was never handed out belongs to
            // the record alone, and its AcceptEx is over (the record is only
            // dropped after its completion was dequeued).
            unsafe { closesocket(self.accepted) };
        }
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("token", &self.token)
            .field("kind", &self.kind)
            .field("socket", &self.socket)
            .field("buf_len", &self.buf.len())
            .finish()
    }
}

pub(super) fn last_wsa_error() -> io::Error {
    // SAFETY: reads this thread's last Winsock error; no preconditions.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// Map a start call's return value: success or "pending" both mean a
/// completion packet will be queued (the port is not in skip-on-success
/// mode); any other error means none will. (`AcceptEx` reports pending as
/// ERROR_IO_PENDING and the others as WSA_IO_PENDING: both are 997.)
fn started(failed: bool) -> io::Result<()> {
    if !failed {
        return Ok(());
    }
    let err = last_wsa_error();
    if err.raw_os_error() == Some(WSA_IO_PENDING) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Start an overlapped receive of at most `len` bytes into the record's buffer.
///
/// # Safety
/// `r` comes from `Box::into_raw`, its socket is associated with the port,
/// `len <= buf.len()`, and on `Ok` the caller never touches `r` again (the
/// dequeuing thread owns it).
pub(super) unsafe fn start_recv(r: *mut Record, len: usize) -> io::Result<()> {
    // SAFETY: `r` is live and ours until the call below hands it over; the
    // WSABUF points into the record's own buffer, which stays put (the Vec is
    // never resized while the operation is in flight).
    unsafe {
        (*r).wsabuf = WSABUF {
            len: len as u32,
            buf: (*r).buf.as_mut_ptr(),
        };
        (*r).flags = 0;
        let rc = WSARecv(
            (*r).socket,
            addr_of!((*r).wsabuf),
            1,
            std::ptr::null_mut(),
            addr_of_mut!((*r).flags),
            addr_of_mut!((*r).overlapped),
            None,
        );
        started(rc == SOCKET_ERROR)
    }
}

/// Start an overlapped send of the record's `buf[offset..]`.
///
/// # Safety
/// As for [`start_recv`], with `offset < buf.len()`.
pub(super) unsafe fn start_send(r: *mut Record, offset: usize) -> io::Result<()> {
    // SAFETY: as in `start_recv`; `offset` is inside the buffer.
    unsafe {
        let len = ((*r).buf.len() - offset).min(u32::MAX as usize);
        (*r).wsabuf = WSABUF {
            len: len as u32,
            buf: (*r).buf.as_mut_ptr().add(offset),
        };
        let rc = WSASend(
            (*r).socket,
            addr_of!((*r).wsabuf),
            1,
            std::ptr::null_mut(),
            0,
            addr_of_mut!((*r).overlapped),
            None,
        );
        started(rc == SOCKET_ERROR)
    }
}

/// Start an `AcceptEx` on the record's listener into its accept socket. No
/// bytes are received with the connection, so it completes on connect rather
/// than waiting for the client's first message.
///
/// # Safety
/// As for [`start_recv`]; `accept_ex` was loaded for a socket of this provider.
pub(super) unsafe fn start_accept(r: *mut Record, accept_ex: AcceptExFn) -> io::Result<()> {
    let mut received = 0u32;
    // SAFETY: as in `start_recv`; the address buffer is inside the record and
    // has the room AcceptEx requires for both addresses.
    let ok = unsafe {
        accept_ex(
            (*r).socket,
            (*r).accepted,
            addr_of_mut!((*r).addrs).cast(),
            0,
            ADDR_ROOM as u32,
            ADDR_ROOM as u32,
            &mut received,
            addr_of_mut!((*r).overlapped),
        )
    };
    started(ok == 0)
}

/// Ask Winsock for `AcceptEx` (it is an extension: its address comes from
/// the provider of `socket`, not from a static import).
pub(super) fn load_accept_ex(socket: SOCKET) -> io::Result<AcceptExFn> {
    let guid = WSAID_ACCEPTEX;
    let mut f: LPFN_ACCEPTEX = None;
    let mut returned = 0u32;
    // SAFETY: the input is the GUID (a live local of the size given) and the
    // output is a function-pointer slot of the size given; no OVERLAPPED, so
    // the call is synchronous.
    let rc = unsafe {
        WSAIoctl(
            socket,
            SIO_GET_EXTENSION_FUNCTION_POINTER,
            addr_of!(guid).cast(),
            std::mem::size_of_val(&guid) as u32,
            addr_of_mut!(f).cast(),
            std::mem::size_of_val(&f) as u32,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc == SOCKET_ERROR {
        return Err(last_wsa_error());
    }
    f.ok_or_else(|| io::Error::other("Winsock returned no AcceptEx"))
}
