//! The provided-buffer ring (`IORING_REGISTER_PBUF_RING`): memory shared
//! with the kernel, which picks receive buffers from it. The unsafe island
//! of the backend: raw allocations, the ring's tail published to the
//! kernel, and pages given back with `madvise`.

use super::PAGE;
use io_uring::{types, IoUring};
use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// Which of a port's provided-buffer rings; its buffer group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Many small buffers, for multishot (interactive) receives: one per
    /// completion of a batch, across every connection of the port.
    Small = 0,
    /// Fewer large ones, for bulk one-shot receives, which one buffer
    /// should take whole and which send from it (`send_received`).
    Bulk = 1,
}

impl Group {
    pub(super) fn bgid(self) -> u16 {
        self as u16
    }
}

/// A ring of receive buffers the kernel picks from (`IORING_REGISTER_PBUF_RING`).
pub(super) struct BufRing {
    group: Group,
    /// `entries` ring slots of 16 bytes, page-aligned, shared with the kernel.
    ring: *mut types::BufRingEntry,
    ring_layout: Layout,
    /// `entries * buf_size` bytes of buffers.
    bufs: *mut u8,
    bufs_layout: Layout,
    entries: u16,
    buf_size: usize,
    tail: u16,
    /// Buffers the kernel filled and the caller has not released yet.
    lent: usize,
    /// A buffer was filled since the pages were last given back.
    dirty: bool,
}

impl BufRing {
    pub(super) fn new(
        ring: &IoUring,
        group: Group,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_layout = Layout::from_size_align(
            entries as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // Page-aligned, so that `give_back` can hand back whole pages.
        let bufs_layout =
            Layout::from_size_align(entries as usize * buf_size, PAGE).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size.
        let (ring_mem, bufs) =
            unsafe { (alloc::alloc_zeroed(ring_layout), alloc::alloc(bufs_layout)) };
        if ring_mem.is_null() || bufs.is_null() {
            alloc::handle_alloc_error(ring_layout);
        }
        let mut br = BufRing {
            group,
            ring: ring_mem.cast(),
            ring_layout,
            bufs,
            bufs_layout,
            entries,
            buf_size,
            tail: 0,
            lent: 0,
            dirty: false,
        };
        // SAFETY: the ring memory is page-aligned, sized for `entries`, and
        // lives until `unregister` (or is leaked if the kernel may still use it).
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(br.ring as u64, entries, group.bgid(), 0)
        };
        if let Err(e) = reg {
            br.free();
            return Err(e);
        }
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Put buffer `bid` at the tail (not yet visible to the kernel).
    pub(super) fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries; the kernel only reads slots between its head
        // and the published tail, and this slot is past the published tail.
        unsafe {
            let e = &mut *self.ring.add(idx);
            e.set_addr(self.bufs.add(bid as usize * self.buf_size) as u64);
            e.set_len(self.buf_size as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make pushed buffers visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: the tail field lives inside the first ring entry; the kernel
        // reads it concurrently, hence the atomic release store.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The kernel filled buffer `bid` and handed it to the caller.
    pub(super) fn lend(&mut self) {
        self.lent += 1;
        self.dirty = true;
    }

    /// The caller is done with buffer `bid`: back on the ring for the kernel.
    pub(super) fn take_back(&mut self, bid: u16) {
        self.lent -= 1;
        self.push(bid);
        self.publish();
    }

    /// Give the pages of every buffer back to the OS, if any was used since
    /// the last time. The caller guarantees that no receive that selects
    /// from this ring is in flight; with none lent out either, no buffer
    /// holds anything anybody will read, and nothing will write one until
    /// the next receive is submitted.
    pub(super) fn give_back(&mut self) {
        if !self.dirty || self.lent > 0 {
            return;
        }
        self.dirty = false;
        let len = self.bufs_layout.size() / PAGE * PAGE;
        // Should the call fail, the pages simply stay resident until next time.
        // SAFETY: `bufs` is our own page-aligned allocation of at least
        // `len` bytes, and nobody reads or writes it now (see above): the
        // kernel has no operation that may select a buffer, and the caller
        // holds none. MADV_DONTNEED on private anonymous memory only makes
        // its pages read as zeros until written again, so the allocation
        // stays valid for the allocator and for later receives.
        let _ = unsafe { libc::madvise(self.bufs.cast(), len, libc::MADV_DONTNEED) };
    }

    /// The size of each buffer.
    pub(super) fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The first `len` bytes of buffer `bid` (checked to lie within it).
    ///
    /// # Safety
    ///
    /// Buffer `bid` must be one the kernel handed over in a CQE with at
    /// least `len` bytes written, and not yet given back
    /// ([`take_back`](Self::take_back)): otherwise the kernel may be
    /// writing it while the slice lives.
    pub(super) unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.entries && len <= self.buf_size);
        // SAFETY: in bounds (asserted); the caller holds buffer `bid`, which
        // the kernel filled and will not touch again until it is pushed back.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * self.buf_size), len) }
    }

    pub(super) fn unregister(mut self, ring: &IoUring) {
        if ring
            .submitter()
            .unregister_buf_ring(self.group.bgid())
            .is_ok()
        {
            self.free();
        }
        // Otherwise the kernel may still own it: leak.
    }

    /// Give up the memory without freeing it (the kernel may still use it).
    /// `BufRing` has no `Drop`: only `unregister` frees.
    pub(super) fn leak(self) {}

    pub(super) fn free(&mut self) {
        // SAFETY: allocated in `new` with these layouts, and the kernel no
        // longer references them (unregistered, or never registered).
        unsafe {
            alloc::dealloc(self.ring.cast(), self.ring_layout);
            alloc::dealloc(self.bufs, self.bufs_layout);
        }
    }
}
