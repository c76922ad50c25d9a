//! The records of the operations in flight: a slab indexed by the low 32
//! bits of an SQE's `user_data`, whose high 32 bits are the slot's
//! generation, so that a late cancel or completion can never reach a slot
//! that was reused. A record owns its operation's buffer until the final
//! CQE for it is reaped.

use super::bufring::Group;
use crate::{OpKind, Token};
use std::os::fd::RawFd;

pub(super) enum OpBuf {
    None,
    /// A receive that selects its buffer from this provided-buffer ring.
    Ring(Group),
    Recv(Vec<u8>),
    Send(Vec<u8>),
    /// A send straight from buffer `bid` of provided-buffer ring `group`,
    /// of its first `len` bytes: the buffer goes back on the ring only when
    /// this send's final completion is reaped, or when the send is made
    /// again from a copy (`resend`).
    Lent {
        group: Group,
        bid: u16,
        len: usize,
    },
    /// The eventfd read's target; held only so the kernel has somewhere to write.
    Wake(#[allow(dead_code)] Box<[u8; 8]>),
    /// A readiness wait: no memory, but what `reap` needs to arm it again.
    Poll(Poll),
}

/// A readiness wait (`OpKind::Ready`) on socket `fd` for the events in
/// `mask`, and how it is armed now.
pub(super) struct Poll {
    pub(super) fd: RawFd,
    pub(super) mask: u32,
    pub(super) arm: Arm,
}

/// How a readiness wait is armed in the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Arm {
    /// One-shot, as asked: its completion is the caller's.
    OneShot,
    /// Multishot and edge-triggered, under the same `user_data`: a one-shot
    /// wait came back with nothing the caller asked for (see
    /// `Port::poll_answer`). Only a completion that has what was asked for
    /// goes to the caller.
    Edge,
    /// Multishot, already answered: the caller has its completion and the
    /// kernel is cancelling the rest; its final CQE is dropped.
    Answered,
}

pub(super) struct Record {
    pub(super) token: Token,
    pub(super) kind: OpKind,
    pub(super) buf: OpBuf,
    /// A quiet send: where to send again if the socket was full (`fd`, offset).
    pub(super) quiet: Option<(RawFd, usize)>,
    /// The caller asked to cancel this operation.
    pub(super) cancelled: bool,
}

struct Slot {
    generation: u32,
    record: Option<Record>,
}

/// The slots, and the free list of their indices.
#[derive(Default)]
pub(super) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slab {
    /// Take a slot for `record`; returns the operation's user_data.
    pub(super) fn insert(&mut self, record: Record) -> u64 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    record: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.record = Some(record);
        (u64::from(slot.generation) << 32) | u64::from(idx)
    }

    /// The record of the operation `ud` names, if it is still in flight.
    pub(super) fn lookup(&mut self, ud: u64) -> Option<&mut Record> {
        let slot = self.slots.get_mut((ud & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != ud >> 32 {
            return None;
        }
        slot.record.as_mut()
    }

    /// Run `f` on every record in flight.
    pub(super) fn for_each_mut(&mut self, mut f: impl FnMut(&mut Record)) {
        for rec in self.slots.iter_mut().filter_map(|s| s.record.as_mut()) {
            f(rec);
        }
    }

    /// Take the record of operation `ud` out: its final CQE was reaped.
    pub(super) fn remove(&mut self, ud: u64) -> Option<Record> {
        let idx = (ud & 0xffff_ffff) as u32;
        let slot = self.slots.get_mut(idx as usize)?;
        if u64::from(slot.generation) != ud >> 32 {
            return None;
        }
        let r = slot.record.take()?;
        self.free.push(idx);
        Some(r)
    }
}
