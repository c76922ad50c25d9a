//! Waiting for completions and reaping them: `Port::wait` flushes the
//! backlog, gives idle receive buffers' pages back, and sleeps in the
//! kernel (batching where asked); `reap` turns each CQE into the caller's
//! `Completion`, frees the operation's record only at its final CQE,
//! resends quiet or lent sends that found the socket full, and keeps from
//! the caller the CQEs that are not theirs (cancels, the quiet sends'
//! linked NOPs, readiness re-arms).

use super::bufring::Group;
use super::readiness::PollAnswer;
use super::slab::OpBuf;
use super::{CompletionBuf, Port, BATCH_WAIT_LIMIT, CANCEL_UD, QUIET_LINK_UD};
use crate::{Completion, OpId, OpKind};
use io_uring::{cqueue, types};
use std::io;
use std::time::Duration;

impl Port {
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

    pub(super) fn reap(&mut self, out: &mut Vec<Completion>) {
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
            let Some(rec) = self.lookup(ud) else { continue };
            let (token, kind) = (rec.token, rec.kind);
            let group = match rec.buf {
                OpBuf::Ring(g) => g,
                _ => Group::Small,
            };
            // Only a readiness wait's CQE may be kept from the caller.
            let answered = kind == OpKind::Ready
                && match self.poll_answer(ud, res, more) {
                    PollAnswer::Keep => continue,
                    PollAnswer::Pass => false,
                    PollAnswer::PassAndKeep => true,
                };
            let result = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
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
            // SAFETY: the send that just ended held buffer `bid` (lent by
            // a receive's completion); it goes back only below.
            Ok(n) if *n > 0 && *n < len => unsafe { ring.slice(bid, len) }.to_vec(),
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
            // SAFETY: the send that found the socket full holds buffer
            // `bid` (lent by a receive's completion); it goes back below.
            let copy = unsafe { ring.slice(bid, len) }.to_vec();
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
}
