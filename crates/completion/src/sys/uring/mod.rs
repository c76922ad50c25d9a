//! The io_uring backend of the completion port.
//!
//! One ring per worker thread, created on that thread. What the kernel is
//! asked to do, and how its answers map onto the port contract (see the crate
//! docs):
//!
//! * Every in-flight operation has a record in `ops`, a slab indexed by the
//!   low 32 bits of the SQE's `user_data`; the high 32 bits are the slot's
//!   generation, so a late cancel can never hit a reused slot. The record owns
//!   the operation's buffer (a send's `Vec`, an owned receive buffer, the
//!   eventfd read's 8 bytes) until the final CQE for it is reaped.
//! * Receive buffers come, where the kernel has them (5.19+), from a provided
//!   buffer ring registered once per port: idle connections then hold no
//!   receive buffer at all, and multishot recv (6.0+) re-arms itself. A
//!   buffer the kernel filled belongs to the caller until `release` puts it
//!   back on the ring. The kernel takes the ring's buffers in turn, so under
//!   load every page of them becomes resident (8 MiB per port by default);
//!   when a port next waits with no receive in flight and no buffer lent
//!   out, nothing can write them, and it gives those pages back to the OS
//!   (`MADV_DONTNEED`: they read as zeros and are faulted in again on use).
//! * `DEFER_TASKRUN` + `SINGLE_ISSUER` (6.1+) were the largest measured win
//!   here: completion work then runs only inside our own `io_uring_enter`, not
//!   as interrupts of the worker. `COOP_TASKRUN` is the fallback.
//! * Quiet sends (`send_quiet`): a `MSG_DONTWAIT` send linked to a NOP that
//!   posts only on failure; the wait asks for one more completion per quiet
//!   send it submits, so an echo's own completion does not wake the worker.
//! * Dropping the port cancels everything and waits (bounded) for the CQEs.
//!   Memory whose operation did not come back is leaked, never freed.
//!
//! Registered (fixed) files and a registered ring fd were measured at 0–3%,
//! inside the noise, and fixed files would also take away the plain socket
//! that `setsockopt` needs, so neither is used.

mod bufring;
mod relay;
mod setup;
mod slab;

use bufring::{BufRing, Group};
pub(crate) use relay::Relay;
pub(crate) use setup::probe;
use setup::{build_ring, unavailable};
use slab::{Arm, OpBuf, Poll, Record, Slab};

use crate::{Completion, Features, Interest, OpId, OpKind, PortConfig, Token, UnavailableError};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A socket as the kernel names it.
pub use super::fd::RawSocket;
pub(crate) use super::fd::{
    accepted_socket, cancelled_error, into_raw, is_cancelled, is_out_of_buffers, raw, raw_listener,
};

/// What an [`OpId`] holds here: the SQE's `user_data`.
pub(crate) type OpKey = u64;

/// `user_data` of cancel requests, whose own completions are ignored.
const CANCEL_UD: u64 = u64::MAX;
/// `user_data` of the NOP linked behind a quiet send: it posts a completion
/// (ignored) only when the send failed or was short, to end the wait.
const QUIET_LINK_UD: u64 = u64::MAX - 1;
/// The bulk ring's buffers (`Group::Bulk`, for one-shot receives): one
/// receive takes what a bulk sender's write brings (64 KiB on loopback),
/// and it goes back from the same buffer (`send_received`); 16 KiB ones
/// cost a bulk echo 1.5–2.5× the CPU (docs/BENCHMARKS.md). A lent buffer
/// is out only for one non-blocking send, so a few dozen cover a batch of
/// completions; the many small ones of `PortConfig` serve the multishot
/// receives of interactive connections, one per completion.
const BULK_BUF_SIZE: usize = 64 * 1024;
const BULK_BUFS: u16 = 64;
/// The timeout of a batching wait that has none of its own (see `wait`).
const BATCH_WAIT_LIMIT: Duration = Duration::from_secs(3600);
/// How long a dropped port waits for the kernel to hand back its buffers.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);
/// A multiple of every page size Linux uses (4, 16 or 64 KiB): receive
/// buffers start on such a boundary, and what `madvise` is given is rounded
/// down to it, so it never reaches past them whatever the page size.
const PAGE: usize = 64 * 1024;

/// Whether a readiness wait's CQE goes to the caller (`Port::poll_answer`).
enum PollAnswer {
    /// It is the caller's completion, as any other.
    Pass,
    /// It is the caller's last completion, but the record stays until the
    /// kernel's final CQE.
    PassAndKeep,
    /// Not the caller's.
    Keep,
}

/// Where the bytes of a completion live.
#[derive(Debug)]
pub(crate) enum CompletionBuf {
    None,
    /// A buffer owned by the completion (a send's, or an owned receive buffer).
    Owned(Vec<u8>),
    /// Buffer `bid` of provided-buffer ring `group`, filled with `len` bytes.
    Provided {
        group: Group,
        bid: u16,
        len: usize,
    },
}

/// Never made: a ring is not shared (see `Port::try_share`).
pub(crate) enum PortShare {}

impl PortShare {
    pub(crate) fn into_port(self) -> Port {
        match self {}
    }
}

/// Wakes a port through its eventfd.
#[derive(Clone)]
pub(crate) struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

pub(crate) struct Port {
    ring: IoUring,
    ops: Slab,
    in_flight: usize,
    /// Receive operations in flight (submitted or still queued).
    recvs: usize,
    /// Entries that did not fit in a full submission queue.
    backlog: VecDeque<squeue::Entry>,
    /// The provided-buffer rings: small buffers for multishot receives,
    /// and large ones for one-shot (bulk) receives where it registered.
    bufring: Option<BufRing>,
    bulk: Option<BufRing>,
    features: Features,
    config: PortConfig,
    wake_fd: Arc<OwnedFd>,
    wake_armed: bool,
    recv_pool: Vec<Vec<u8>>,
    cqes: Vec<cqueue::Entry>,
    /// Quiet sends in the submission queue, not yet submitted: each will
    /// post its completion during the next submit, so the next wait asks
    /// for that many more.
    quiet_queued: u32,
}

impl Port {
    pub(crate) fn new(config: &PortConfig) -> Result<Port, UnavailableError> {
        // What the kernel offers was probed once for the process; this
        // ring is built with the same setup flags.
        let mut features = crate::probe(config)?;
        let (ring, _) = build_ring(config).map_err(unavailable)?;
        let bufring = if features.provided_buffers {
            match BufRing::new(
                &ring,
                Group::Small,
                config.ring_bufs.max(1).next_power_of_two(),
                config.buf_size,
            ) {
                Ok(b) => Some(b),
                Err(_) => {
                    features.provided_buffers = false;
                    features.multishot_recv = false;
                    features.lent_sends = false;
                    None
                }
            }
        } else {
            None
        };
        // Without it, bulk receives take the small buffers.
        let bulk = bufring
            .as_ref()
            .and_then(|_| BufRing::new(&ring, Group::Bulk, BULK_BUFS, BULK_BUF_SIZE).ok());
        // SAFETY: eventfd(2) has no memory-safety preconditions.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(unavailable(io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let mut port = Port {
            ring,
            ops: Slab::default(),
            in_flight: 0,
            recvs: 0,
            backlog: VecDeque::new(),
            bufring,
            bulk,
            features,
            config: config.clone(),
            wake_fd,
            wake_armed: false,
            recv_pool: Vec::new(),
            cqes: Vec::with_capacity(256),
            quiet_queued: 0,
        };
        port.arm_wake();
        Ok(port)
    }

    pub(crate) fn features(&self) -> &Features {
        &self.features
    }

    /// A ring has one submitter (`SINGLE_ISSUER`) and one reaper; threads
    /// that want to share one would need a lock around every submit and
    /// reap, so each worker builds its own instead.
    pub(crate) fn try_share(&self) -> Option<PortShare> {
        None
    }

    pub(crate) fn in_flight(&self) -> usize {
        // The port's own eventfd read is not the caller's business.
        self.in_flight - usize::from(self.wake_armed)
    }

    pub(crate) fn waker(&self) -> Waker {
        Waker {
            fd: self.wake_fd.clone(),
        }
    }

    /// Take a slot for a new operation; returns its user_data.
    fn insert(&mut self, record: Record) -> u64 {
        self.recvs += usize::from(record.kind == OpKind::Recv);
        self.in_flight += 1;
        self.ops.insert(record)
    }

    fn lookup(&mut self, ud: u64) -> Option<&mut Record> {
        self.ops.lookup(ud)
    }

    fn remove(&mut self, ud: u64) -> Option<Record> {
        let r = self.ops.remove(ud)?;
        self.in_flight -= 1;
        self.recvs -= usize::from(r.kind == OpKind::Recv);
        Some(r)
    }

    /// Queue one SQE: into the submission queue, or, when it is full, into
    /// the backlog that the next wait flushes.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must refer to memory that stays valid, and
    /// that nothing else writes, until the kernel posts the operation's
    /// final completion: memory owned by the operation's record in the slab
    /// (its buffer, which `reap` drops only after that completion), by the
    /// port itself (the buffer ring), or no memory at all (close, cancel).
    unsafe fn push(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: every pointer in `entry` refers to memory owned by the
            // operation's record (or the port), which outlives the operation.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
            // Their completions are now posted (and the next wait will not sleep).
            self.quiet_queued = 0;
            // SAFETY: as above.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
        }
        self.backlog.push_back(entry);
    }

    fn flush_backlog(&mut self) {
        while let Some(e) = self.backlog.pop_front() {
            // SAFETY: as in `push`.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                self.backlog.push_front(e);
                self.quiet_queued = 0;
                if self.ring.submit().is_err() {
                    return;
                }
            }
        }
    }

    fn arm_wake(&mut self) {
        let mut buf = Box::new([0u8; 8]);
        let ptr = buf.as_mut_ptr();
        let ud = self.insert(Record {
            token: crate::reserved::WAKE,
            kind: OpKind::Wake,
            buf: OpBuf::Wake(buf),
            quiet: None,
            cancelled: false,
        });
        let e = opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), ptr, 8)
            .build()
            .user_data(ud);
        // SAFETY: the 8 bytes the read fills are the record's `OpBuf::Wake`.
        unsafe { self.push(e) };
        self.wake_armed = true;
    }

    pub(crate) fn accept(&mut self, listener: RawFd, token: Token) -> OpId {
        let ud = self.insert(Record {
            token,
            kind: OpKind::Accept,
            buf: OpBuf::None,
            quiet: None,
            cancelled: false,
        });
        let e = if self.features.multishot_accept {
            opcode::AcceptMulti::new(types::Fd(listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(
                types::Fd(listener),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .flags(libc::SOCK_CLOEXEC)
            .build()
        };
        // SAFETY: an accept points at no memory of ours (null addresses).
        unsafe { self.push(e.user_data(ud)) };
        OpId(ud)
    }

    pub(crate) fn recv(&mut self, fd: RawFd, token: Token, max_len: usize) -> OpId {
        self.recv_op(
            fd,
            token,
            max_len,
            self.features.multishot_recv,
            Group::Small,
        )
    }

    pub(crate) fn recv_once(&mut self, fd: RawFd, token: Token, max_len: usize) -> OpId {
        let group = if self.bulk.is_some() {
            Group::Bulk
        } else {
            Group::Small
        };
        self.recv_op(fd, token, max_len, false, group)
    }

    /// The provided-buffer ring of `group`.
    fn ring(&self, group: Group) -> Option<&BufRing> {
        match group {
            Group::Small => self.bufring.as_ref(),
            Group::Bulk => self.bulk.as_ref(),
        }
    }

    fn ring_mut(&mut self, group: Group) -> Option<&mut BufRing> {
        match group {
            Group::Small => self.bufring.as_mut(),
            Group::Bulk => self.bulk.as_mut(),
        }
    }

    fn recv_op(
        &mut self,
        fd: RawFd,
        token: Token,
        max_len: usize,
        multishot: bool,
        group: Group,
    ) -> OpId {
        if let Some(size) = self.ring(group).map(BufRing::buf_size) {
            let ud = self.insert(Record {
                token,
                kind: OpKind::Recv,
                buf: OpBuf::Ring(group),
                quiet: None,
                cancelled: false,
            });
            let e = if multishot {
                opcode::RecvMulti::new(types::Fd(fd), group.bgid()).build()
            } else {
                opcode::Recv::new(
                    types::Fd(fd),
                    std::ptr::null_mut(),
                    max_len.clamp(1, size) as u32,
                )
                .buf_group(group.bgid())
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
            };
            // SAFETY: the kernel picks the buffer from the port's own ring,
            // which lives as long as the port.
            unsafe { self.push(e.user_data(ud)) };
            return OpId(ud);
        }
        let len = max_len.clamp(1, self.config.buf_size);
        let mut buf = self.recv_pool.pop().unwrap_or_default();
        buf.resize(self.config.buf_size, 0);
        let ptr = buf.as_mut_ptr();
        let ud = self.insert(Record {
            token,
            kind: OpKind::Recv,
            buf: OpBuf::Recv(buf),
            quiet: None,
            cancelled: false,
        });
        let e = opcode::Recv::new(types::Fd(fd), ptr, len as u32).build();
        // SAFETY: `ptr..ptr+len` is the record's own `OpBuf::Recv` buffer.
        unsafe { self.push(e.user_data(ud)) };
        OpId(ud)
    }

    pub(crate) fn send(&mut self, fd: RawFd, token: Token, buf: Vec<u8>, offset: usize) -> OpId {
        self.send_op(fd, token, buf, offset, false)
    }

    /// Send what receive completion `c` delivered, from its own buffer: a
    /// provided-ring buffer stays lent to the send until its completion is
    /// reaped (no copy); an owned receive buffer becomes the send's.
    pub(crate) fn send_received(&mut self, fd: RawFd, token: Token, c: Completion) -> OpId {
        let n = match c.result {
            Ok(n) if c.kind == OpKind::Recv && n > 0 => n,
            _ => panic!("send_received needs a receive completion with data"),
        };
        match c.buf {
            CompletionBuf::Owned(mut v) => {
                v.truncate(n);
                self.send_op(fd, token, v, 0, false)
            }
            CompletionBuf::Provided { group, bid, len } => {
                let len = len.min(n);
                let span = self.lent_span(group, bid, len);
                let ud = self.insert(Record {
                    token,
                    kind: OpKind::Send,
                    buf: OpBuf::Lent { group, bid, len },
                    quiet: Some((fd, 0)),
                    cancelled: false,
                });
                // Never parked on poll: a peer that does not read must not
                // hold a ring buffer, or enough of them would starve every
                // other connection's receives. A full socket ends it with
                // EAGAIN and `resend` sends again from a copy; a short count
                // goes to the caller with a copy (`end_lent`).
                let e = Self::send_entry(fd, span, libc::MSG_DONTWAIT, ud);
                // SAFETY: the span lies in ring buffer `bid`, which the
                // kernel handed to us and which is not pushed back on the
                // ring (so no receive can select it) until this send's
                // final completion is reaped or `resend` has copied it; the
                // ring outlives the port's operations (see `Drop`).
                unsafe { self.push(e) };
                OpId(ud)
            }
            CompletionBuf::None => panic!("a receive with data has a buffer"),
        }
    }

    /// Where the first `len` bytes of buffer `bid` of ring `group` are.
    fn lent_span(&self, group: Group, bid: u16, len: usize) -> (*const u8, u32) {
        let ring = self.ring(group).expect("a provided buffer has a ring");
        Self::span(ring.slice(bid, len), 0)
    }

    /// A send whose completion alone does not end a wait, when it completes
    /// at once and in full. It goes out as a `MSG_DONTWAIT` send, which the
    /// kernel always finishes inline (never parking it on poll), linked to a
    /// NOP with `CQE_SKIP_SUCCESS`:
    ///
    /// * sent in full: one completion, posted before the wait starts, so the
    ///   wait asks for one more than it would have (`quiet_queued`);
    /// * short (`MSG_WAITALL` makes that a failure) or `EAGAIN`: the link
    ///   breaks and the NOP posts a cancelled completion as well, which ends
    ///   the wait. A short count goes to the caller, who sends the rest; on
    ///   `EAGAIN` the send is resubmitted here as an ordinary one.
    pub(crate) fn send_quiet(
        &mut self,
        fd: RawFd,
        token: Token,
        buf: Vec<u8>,
        offset: usize,
    ) -> OpId {
        // The pair must reach the kernel in one submit, so only straight
        // into a submission queue with room for both.
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len() >= 2
        };
        let quiet = self.features.quiet_send && self.backlog.is_empty() && room;
        self.send_op(fd, token, buf, offset, quiet)
    }

    /// Where `buf[offset..]` is, as a send takes it (at most 4 GiB at once).
    fn span(buf: &[u8], offset: usize) -> (*const u8, u32) {
        let rest = &buf[offset..];
        (rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32)
    }

    /// A send of `ptr..ptr+len` with these `MSG_` flags besides
    /// `MSG_NOSIGNAL` (a peer that is gone is an error, not a signal).
    fn send_entry(fd: RawFd, (ptr, len): (*const u8, u32), flags: i32, ud: u64) -> squeue::Entry {
        opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL | flags)
            .build()
            .user_data(ud)
    }

    /// An ordinary send: parked on poll until the socket has room, so it
    /// completes only when sent (or failed).
    fn plain_send(fd: RawFd, span: (*const u8, u32), ud: u64) -> squeue::Entry {
        Self::send_entry(fd, span, 0, ud)
    }

    fn send_op(
        &mut self,
        fd: RawFd,
        token: Token,
        buf: Vec<u8>,
        offset: usize,
        quiet: bool,
    ) -> OpId {
        assert!(offset < buf.len(), "send of nothing");
        // Moving the Vec into the record does not move its heap buffer.
        let (ptr, len) = Self::span(&buf, offset);
        let ud = self.insert(Record {
            token,
            kind: OpKind::Send,
            buf: OpBuf::Send(buf),
            quiet: quiet.then_some((fd, offset)),
            cancelled: false,
        });
        if !quiet {
            // SAFETY: `ptr..ptr+len` lies in the record's `OpBuf::Send` buffer.
            unsafe { self.push(Self::plain_send(fd, (ptr, len), ud)) };
            return OpId(ud);
        }
        let send = Self::send_entry(fd, (ptr, len), libc::MSG_DONTWAIT | libc::MSG_WAITALL, ud)
            .flags(squeue::Flags::IO_LINK);
        let nop = opcode::Nop::new()
            .build()
            .user_data(QUIET_LINK_UD)
            .flags(squeue::Flags::SKIP_SUCCESS);
        // SAFETY: the send points into the buffer its record owns; the NOP
        // points at nothing. `send_quiet` checked there is room for both.
        if unsafe { self.ring.submission().push_multiple(&[send, nop]) }.is_ok() {
            self.quiet_queued += 1;
        } else {
            // Cannot happen (room was checked); if it did, an ordinary send.
            debug_assert!(false, "no room for a quiet send's pair");
            if let Some(rec) = self.lookup(ud) {
                rec.quiet = None;
            }
            // SAFETY: as above, the record's own send buffer.
            unsafe { self.push(Self::plain_send(fd, (ptr, len), ud)) };
        }
        OpId(ud)
    }

    pub(crate) fn close(&mut self, fd: RawFd, token: Token) -> OpId {
        let ud = self.insert(Record {
            token,
            kind: OpKind::Close,
            buf: OpBuf::None,
            quiet: None,
            cancelled: false,
        });
        // SAFETY: a close points at no memory.
        unsafe { self.push(opcode::Close::new(types::Fd(fd)).build().user_data(ud)) };
        OpId(ud)
    }

    pub(crate) fn poll(&mut self, fd: RawFd, token: Token, interest: Interest) -> OpId {
        // Errors and hang-ups are always reported, whatever is asked.
        let mask = match interest {
            Interest::Read => libc::POLLIN | libc::POLLRDHUP,
            Interest::Write => libc::POLLOUT,
        } as u32;
        let ud = self.insert(Record {
            token,
            kind: OpKind::Ready,
            buf: OpBuf::Poll(Poll {
                fd,
                mask,
                arm: Arm::OneShot,
            }),
            quiet: None,
            cancelled: false,
        });
        let e = opcode::PollAdd::new(types::Fd(fd), mask)
            .build()
            .user_data(ud);
        // SAFETY: a poll points at no memory.
        unsafe { self.push(e) };
        OpId(ud)
    }

    /// What to do with a readiness wait's CQE (`res`, `more`): `Pass` it on
    /// as the caller's completion, or keep it from the caller.
    ///
    /// io_uring reports `POLLRDHUP` (and errors and hang-ups) to every poll,
    /// whatever it asked for (`IO_POLL_UNMASK` in the kernel). So once the
    /// peer has sent its FIN, a one-shot wait for `POLLOUT` on a socket that
    /// stays full completes at once each time it is armed, and a relay
    /// whose peer stopped reading would wait, find the socket still full,
    /// and wait again, for ever, at full speed. A one-shot wait that comes
    /// back with nothing asked for is therefore armed again, under the same
    /// `user_data`, as a multishot wait, which is edge-triggered: after the
    /// report of the state at arming (ignored), it completes only when the
    /// socket is woken again (ACKs free room, an error, a reset). Its first
    /// completion with what was asked for is the caller's; the rest of the
    /// multishot is cancelled here, and its final CQE dropped.
    fn poll_answer(&mut self, ud: u64, res: i32, more: bool) -> PollAnswer {
        let Some(rec) = self.ops.lookup(ud) else {
            return PollAnswer::Pass;
        };
        let cancelled = rec.cancelled;
        let OpBuf::Poll(poll) = &mut rec.buf else {
            return PollAnswer::Pass;
        };
        let always = (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) as u32;
        let answers = res < 0 || (res as u32) & (poll.mask | always) != 0;
        match (poll.arm, more) {
            (Arm::OneShot, false) if !answers && !cancelled => {
                poll.arm = Arm::Edge;
                let e = opcode::PollAdd::new(types::Fd(poll.fd), poll.mask)
                    .multi(true)
                    .build()
                    .user_data(ud);
                // SAFETY: a poll points at no memory.
                unsafe { self.push(e) };
                PollAnswer::Keep
            }
            (Arm::OneShot, _) => PollAnswer::Pass,
            // Nothing asked for yet, or cancelled by the caller: the
            // cancel's final CQE is the caller's.
            (Arm::Edge, true) if !answers || cancelled => PollAnswer::Keep,
            (Arm::Edge, true) => {
                poll.arm = Arm::Answered;
                // SAFETY: a cancel points at no memory.
                unsafe { self.push(opcode::AsyncCancel::new(ud).build().user_data(CANCEL_UD)) };
                PollAnswer::PassAndKeep
            }
            // The multishot ended by itself (an error, or the kernel
            // stopped it), or on the caller's cancel.
            (Arm::Edge, false) => PollAnswer::Pass,
            (Arm::Answered, true) => PollAnswer::Keep,
            (Arm::Answered, false) => {
                self.remove(ud);
                PollAnswer::Keep
            }
        }
    }

    pub(crate) fn cancel(&mut self, op: OpId) {
        if let Some(rec) = self.lookup(op.0) {
            // A quiet send that comes back with EAGAIN is then not sent again.
            rec.cancelled = true;
        }
        // SAFETY: a cancel points at no memory.
        unsafe { self.push(opcode::AsyncCancel::new(op.0).build().user_data(CANCEL_UD)) };
    }

    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
        coalesce: Option<(usize, Duration)>,
    ) -> io::Result<()> {
        if self.recvs == 0 {
            // Nothing can select a receive buffer now: a good moment to give
            // their pages back, if any were used (no-op otherwise).
            for r in [self.bufring.as_mut(), self.bulk.as_mut()]
                .into_iter()
                .flatten()
            {
                r.give_back();
            }
        }
        self.flush_backlog();
        let ready = !self.ring.completion().is_empty();
        let quiet = std::mem::take(&mut self.quiet_queued) as usize;
        let result = if ready {
            // Completions are waiting: submit, run deferred work, don't sleep.
            self.ring.submitter().submit_and_wait(0)
        } else {
            let (want, min_wait) = match coalesce {
                Some((batch, d)) if self.features.min_wait => {
                    (batch.clamp(1, self.in_flight().max(1)), Some(d))
                }
                _ => (1, None),
            };
            // Each quiet send submitted now posts its completion before the
            // wait begins: wait for that many more, so they alone do not end it.
            let want = want + quiet;
            // A safety net, not the mechanism: should a quiet send's
            // completion ever be the only one coming (the count above
            // assumes the kernel finishes it inline), it is still handed over
            // within the grace period instead of waiting for the next event.
            // It also hands over an idle connection's last echo promptly.
            let timeout = match timeout {
                _ if quiet == 0 => timeout,
                Some(t) => Some(t.min(self.config.quiet_grace)),
                None => Some(self.config.quiet_grace),
            };
            // With `min_wait` and no timeout the kernel ends the wait when
            // `min_wait` runs out, events or not (ETIME): a worker with
            // nothing to do would wake every `min_wait` for ever. With a
            // timeout, it waits past `min_wait` for the first event. So a
            // batching wait always has one; a long one, that only means
            // "wait again".
            let timeout = match (timeout, min_wait) {
                (None, Some(_)) => Some(BATCH_WAIT_LIMIT),
                (t, _) => t,
            };
            let ts;
            let mut args = types::SubmitArgs::new();
            if let Some(t) = timeout {
                ts = types::Timespec::from(t);
                args = args.timespec(&ts);
            }
            if let Some(d) = min_wait {
                args = args.min_wait_usec(d.as_micros().min(u32::MAX as u128) as u32);
            }
            // Our waits are for network events, not disk I/O: with NO_IOWAIT
            // (6.15+) the kernel does not mark the sleeping worker as in
            // iowait, so the CPU is accounted (and its idle state chosen) as
            // plain idle, as for epoll_wait.
            let flags = if self.features.no_iowait {
                io_uring::EnterFlags::NO_IOWAIT
            } else {
                io_uring::EnterFlags::empty()
            };
            self.ring
                .submitter()
                .submit_with_args_and_flags(want, &args, flags)
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap(out);
        if !self.wake_armed {
            self.arm_wake();
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        // Copy the CQEs out first (they are 16 bytes each), so the ring's
        // head advances before handling, and reuse the vector across waits.
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion());
        for cqe in cqes.iter() {
            let ud = cqe.user_data();
            if ud == CANCEL_UD || ud == QUIET_LINK_UD {
                continue;
            }
            let flags = cqe.flags();
            let more = cqueue::more(flags);
            let res = cqe.result();
            if res == -libc::EAGAIN && self.resend(ud) {
                continue;
            }
            let answered = match self.poll_answer(ud, res, more) {
                PollAnswer::Keep => continue,
                PollAnswer::Pass => false,
                PollAnswer::PassAndKeep => true,
            };
            let result = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
            };
            let Some(rec) = self.lookup(ud) else { continue };
            let (token, kind) = (rec.token, rec.kind);
            let group = match rec.buf {
                OpBuf::Ring(g) => g,
                _ => Group::Small,
            };
            let mut buf = CompletionBuf::None;
            if let Some(bid) = cqueue::buffer_select(flags) {
                if let Some(r) = self.ring_mut(group) {
                    r.lend();
                }
                buf = CompletionBuf::Provided {
                    group,
                    bid,
                    len: res.max(0) as usize,
                };
            }
            if !more {
                let rec = self.remove(ud).expect("looked up above");
                match rec.buf {
                    OpBuf::Send(v) | OpBuf::Recv(v) => buf = CompletionBuf::Owned(v),
                    OpBuf::Lent { group, bid, len } => {
                        buf = self.end_lent(group, bid, len, &result);
                    }
                    OpBuf::Wake(_) => self.wake_armed = false,
                    OpBuf::None | OpBuf::Ring(_) | OpBuf::Poll(_) => {}
                }
            }
            out.push(Completion {
                token,
                op: OpId(ud),
                kind,
                result,
                // An answered wait's completion is the caller's last, while
                // the port keeps its record until the kernel's final CQE.
                more: more && !answered,
                accepted: None,
                buf,
            });
        }
        self.cqes = cqes;
    }

    /// A send from ring buffer `bid` is over: the buffer goes back on the
    /// ring. The caller gets the bytes in a buffer of its own when it must
    /// send the rest (a short send), and an empty one otherwise.
    fn end_lent(
        &mut self,
        group: Group,
        bid: u16,
        len: usize,
        result: &io::Result<usize>,
    ) -> CompletionBuf {
        let Some(ring) = self.ring_mut(group) else {
            return CompletionBuf::Owned(Vec::new());
        };
        let rest = match result {
            Ok(n) if *n > 0 && *n < len => ring.slice(bid, len).to_vec(),
            _ => Vec::new(),
        };
        ring.take_back(bid);
        CompletionBuf::Owned(rest)
    }

    /// A quiet send found the socket full: send it again as an ordinary send,
    /// which waits for room. False when `ud` is not such a send (or its
    /// caller cancelled it), so the completion goes to the caller.
    ///
    /// A send from a ring buffer that found the socket full is sent again
    /// the same way, from a copy, and the ring buffer goes back at once.
    fn resend(&mut self, ud: u64) -> bool {
        if let Some(OpBuf::Lent { group, bid, len }) = self.lookup(ud).map(|r| &r.buf) {
            let (group, bid, len) = (*group, *bid, *len);
            let Some(ring) = self.ring_mut(group) else {
                return false;
            };
            let copy = ring.slice(bid, len).to_vec();
            ring.take_back(bid);
            let rec = self.lookup(ud).expect("looked up above");
            rec.buf = OpBuf::Send(copy);
        }
        let Some(rec) = self.lookup(ud) else {
            return false;
        };
        let (Some((fd, offset)), false, OpBuf::Send(buf)) = (rec.quiet, rec.cancelled, &rec.buf)
        else {
            return false;
        };
        let e = Self::plain_send(fd, Self::span(buf, offset), ud);
        rec.quiet = None;
        // SAFETY: the span lies in the record's own send buffer, which the
        // record keeps until this send's final completion.
        unsafe { self.push(e) };
        true
    }

    pub(crate) fn data<'a>(&'a self, c: &'a Completion) -> &'a [u8] {
        let n = match c.result {
            Ok(n) if c.kind == OpKind::Recv => n,
            _ => return &[],
        };
        match &c.buf {
            CompletionBuf::Provided { group, bid, len } => {
                self.ring(*group).map_or(&[], |r| r.slice(*bid, *len))
            }
            CompletionBuf::Owned(v) => &v[..n.min(v.len())],
            CompletionBuf::None => &[],
        }
    }

    pub(crate) fn release(&mut self, c: Completion) -> Option<Vec<u8>> {
        match c.buf {
            CompletionBuf::Provided { group, bid, .. } => {
                if let Some(r) = self.ring_mut(group) {
                    r.take_back(bid);
                }
                None
            }
            CompletionBuf::Owned(v) if c.kind == OpKind::Recv => {
                if self.recv_pool.len() < 64 {
                    self.recv_pool.push(v);
                }
                None
            }
            CompletionBuf::Owned(v) => Some(v),
            CompletionBuf::None => None,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Cancel everything still in flight, then reap until the kernel has
        // given every buffer back (or the time is up).
        // Nothing is sent again now: a send that finds the socket full
        // just ends (`resend` skips cancelled records).
        self.ops.for_each_mut(|rec| rec.cancelled = true);
        let all = types::CancelBuilder::any();
        self.backlog.clear();
        // SAFETY: a cancel points at no memory.
        unsafe { self.push(opcode::AsyncCancel2::new(all).build().user_data(CANCEL_UD)) };
        let deadline = Instant::now() + TEARDOWN_WAIT;
        let mut sink = Vec::new();
        while self.in_flight > 0 && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            sink.clear();
            self.reap(&mut sink);
            for c in sink.drain(..) {
                if let CompletionBuf::Provided { group, bid, .. } = c.buf {
                    if let Some(r) = self.ring_mut(group) {
                        r.push(bid);
                    }
                }
            }
        }
        if self.in_flight > 0 {
            // The kernel may still write into these: never free them.
            std::mem::forget(std::mem::take(&mut self.ops));
            for r in [self.bufring.take(), self.bulk.take()]
                .into_iter()
                .flatten()
            {
                r.leak();
            }
            return;
        }
        for r in [self.bufring.take(), self.bulk.take()]
            .into_iter()
            .flatten()
        {
            r.unregister(&self.ring);
        }
    }
}
