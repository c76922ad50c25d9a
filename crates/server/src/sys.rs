//! The one place the server crate calls the OS allocator.
//!
//! glibc's malloc keeps what the program frees: a freed block of 128 KiB or
//! more raises its `mmap` threshold to that size, so later blocks that size
//! come from a heap instead of their own mapping, and a heap gives pages back
//! only from its top. Memory that slow readers once filled then stays
//! resident after they leave. `malloc_trim` returns every free page of every
//! arena. Other allocators (musl, the Windows heap) return large blocks to
//! the OS by themselves, so there this does nothing.

/// Whether [`trim_heap`] does anything on this platform.
pub(crate) const CAN_TRIM_HEAP: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Give the free pages of the allocator's heaps back to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim(3) takes no pointer and frees nothing in use: it
    // only releases pages of free chunks, under each arena's own lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Give the free pages of the allocator's heaps back to the OS.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn trim_heap() {}
