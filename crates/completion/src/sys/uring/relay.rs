//! A pipe for moving a connection's bytes inside the kernel (`Relay`):
//! `splice(2)` from the socket into the pipe and from the pipe back out.

use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

#[derive(Debug)]
pub(crate) struct Relay {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Relay {
    pub(crate) fn new(capacity: usize) -> io::Result<Relay> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // Over the per-user pipe budget (fs/pipe-user-pages-soft) the kernel
        // refuses a larger pipe: keep what it gave and report it.
        let _ = fcntl_setpipe_size(&write, capacity);
        let capacity = fcntl_getpipe_size(&write)?;
        Ok(Relay {
            read,
            write,
            capacity,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn fill(&mut self, from: RawFd, max: usize) -> io::Result<usize> {
        // SAFETY: the caller's `Socket` owns `from` and outlives this call.
        let from = unsafe { BorrowedFd::borrow_raw(from) };
        Ok(splice(from, None, &self.write, None, max, Self::flags())?)
    }

    pub(crate) fn drain(&mut self, to: RawFd, max: usize) -> io::Result<usize> {
        // SAFETY: as in `fill`, for `to`.
        let to = unsafe { BorrowedFd::borrow_raw(to) };
        Ok(splice(&self.read, None, to, None, max, Self::flags())?)
    }

    /// Move page references, not bytes, and never wait on the pipe.
    fn flags() -> SpliceFlags {
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK
    }
}
