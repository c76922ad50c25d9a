//! Submitting the port's operations to the ring: accepts, receives (from
//! the provided-buffer rings or owned buffers, one-shot or multishot),
//! sends (owned, quiet, or straight from a ring buffer), and closes. Each
//! makes the operation's record in the slab, which owns whatever memory
//! the SQE points at, then queues the SQE with `Port::push`, whose SAFETY
//! contract every call here states it keeps. Readiness waits are in
//! `readiness.rs`; the completions come back through `reap.rs`.

use super::bufring::{BufRing, Group};
use super::slab::{OpBuf, Record};
use super::{CompletionBuf, Port, QUIET_LINK_UD};
use crate::{Completion, OpId, OpKind, Token};
use io_uring::{opcode, squeue, types};
use std::os::fd::RawFd;

impl Port {
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
    pub(super) fn ring(&self, group: Group) -> Option<&BufRing> {
        match group {
            Group::Small => self.bufring.as_ref(),
            Group::Bulk => self.bulk.as_ref(),
        }
    }

    pub(super) fn ring_mut(&mut self, group: Group) -> Option<&mut BufRing> {
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
        // SAFETY: the caller sends from a buffer a receive's completion
        // lent it (`send_received`); it goes back to the ring only when
        // that send is over (`end_lent`, `resend`).
        Self::span(unsafe { ring.slice(bid, len) }, 0)
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
    pub(super) fn span(buf: &[u8], offset: usize) -> (*const u8, u32) {
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
    pub(super) fn plain_send(fd: RawFd, span: (*const u8, u32), ud: u64) -> squeue::Entry {
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
}
