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
//!
//! This file holds the port itself: its setup, the slab of records, `push`
//! (the one door to the submission queue, with its SAFETY contract),
//! cancels, handing buffers back, and teardown. Submitting the operations
//! is in `ops.rs`, readiness waits and their answers in `readiness.rs`, and
//! waiting and reaping in `reap.rs`; `bufring.rs`, `slab.rs`, `setup.rs` and
//! `relay.rs` hold the buffer rings, the records, the ring's construction
//! and the kernel relay's pipe.

mod bufring;
mod ops;
mod readiness;
mod reap;
mod relay;
mod setup;
mod slab;

use bufring::{BufRing, Group};
pub(crate) use relay::Relay;
pub(crate) use setup::probe;
use setup::{build_ring, unavailable};
use slab::{OpBuf, Record, Slab};

use crate::{Completion, Features, OpId, OpKind, PortConfig, UnavailableError};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
                // With SQPOLL the kernel's thread empties the queue in its
                // own time: wait for room rather than spin on `submit`.
                let made_room = if self.features.sqpoll {
                    self.ring
                        .submit()
                        .and_then(|_| self.ring.submitter().squeue_wait())
                } else {
                    self.ring.submit()
                };
                if made_room.is_err() {
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

    pub(crate) fn cancel(&mut self, op: OpId) {
        if let Some(rec) = self.lookup(op.0) {
            // A quiet send that comes back with EAGAIN is then not sent again.
            rec.cancelled = true;
        }
        // SAFETY: a cancel points at no memory.
        unsafe { self.push(opcode::AsyncCancel::new(op.0).build().user_data(CANCEL_UD)) };
    }

    pub(crate) fn data<'a>(&'a self, c: &'a Completion) -> &'a [u8] {
        let n = match c.result {
            Ok(n) if c.kind == OpKind::Recv => n,
            _ => return &[],
        };
        match &c.buf {
            CompletionBuf::Provided { group, bid, len } => {
                // SAFETY: `c` holds buffer `bid`, filled with `len` bytes:
                // its CQE handed it over, and only `release`, which takes
                // `c`, gives it back to the kernel.
                self.ring(*group)
                    .map_or(&[], |r| unsafe { r.slice(*bid, *len) })
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
