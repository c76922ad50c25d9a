//! Readiness waits (`Port::poll`): a one-shot `POLL_ADD`, and what to make
//! of its answers. io_uring reports conditions nobody asked for (see
//! `Port::poll_answer`), so a wait that comes back with nothing it was
//! asked for is re-armed here as an edge-triggered multishot, and only the
//! first answer the caller wanted is passed on. Kept apart from the other
//! operations because of that extra state (`slab::Arm`) and because the
//! reap path asks it about every readiness CQE.

use super::slab::{Arm, OpBuf, Poll, Record};
use super::{Port, CANCEL_UD};
use crate::{Interest, OpId, OpKind, Token};
use io_uring::{opcode, types};
use std::os::fd::RawFd;

/// Whether a readiness wait's CQE goes to the caller (`Port::poll_answer`).
pub(super) enum PollAnswer {
    /// It is the caller's completion, as any other.
    Pass,
    /// It is the caller's last completion, but the record stays until the
    /// kernel's final CQE.
    PassAndKeep,
    /// Not the caller's.
    Keep,
}

impl Port {
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
    pub(super) fn poll_answer(&mut self, ud: u64, res: i32, more: bool) -> PollAnswer {
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
}
