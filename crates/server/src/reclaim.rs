//! Giving memory back once the clients that needed it are gone.
//!
//! A connection's buffer grows only while its peer reads slower than it
//! sends, never past `max_buffered`, and each model frees a large one as
//! soon as it drains or its connection ends, reporting it here with
//! [`freed`]. Freeing is not enough for the process to shrink: the allocator
//! keeps the pages for reuse (see [`crate::sys`]). So a trimmer thread runs
//! beside the server and, at most once per [`TRIM_EVERY`], if a large buffer
//! was freed or [`CLOSED`] connections have ended since it last trimmed (the
//! models that keep no large buffers free a little per connection: a
//! thread's stack and buffer, a task), asks the allocator to give its free
//! pages back. Nothing is added to the hot path: an echo that needs no large
//! buffer reports nothing, and a report is one relaxed atomic add.

use crate::sys::{trim_heap, CAN_TRIM_HEAP};
use crate::Stats;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How often, at most, the heap is trimmed. Memory freed when the last
/// clients leave is back with the OS within this (plus the trim itself).
pub(crate) const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Buffers up to this size are not worth reporting: they are reused from
/// the allocator's free lists and a few of them cost little.
const SMALL: usize = 16 * 1024;

/// Connections that must have ended since the last trim for their memory
/// alone to be worth one.
const CLOSED: u64 = 32;

/// Bytes of large buffers freed since the last trim.
static FREED: AtomicUsize = AtomicUsize::new(0);

/// A buffer of `capacity` bytes was freed (or is being freed now).
pub(crate) fn freed(capacity: usize) {
    if capacity > SMALL {
        FREED.fetch_add(capacity, Ordering::Relaxed);
    }
}

/// How much room a buffer holding `len` bytes in `capacity` must have to
/// take `more`: doubling as usual, but never past `cap` (unless `more`
/// itself needs it), for left to itself a growing `Vec` or `VecDeque`
/// doubles to up to twice what it holds (a buffer of 160 KiB that needs
/// 256 KiB becomes 320 KiB; 500 slow readers rounded up like that cost
/// 500 KiB each). `None` when it has room already. Growing moves the bytes
/// to a new block and frees the old one, which is reported here.
pub(crate) fn grow_within(len: usize, capacity: usize, more: usize, cap: usize) -> Option<usize> {
    let need = len + more;
    if need <= capacity {
        return None;
    }
    freed(capacity);
    Some(capacity.saturating_mul(2).min(cap).max(need))
}

/// Run `serve` with the trimmer thread beside it (where trimming does
/// anything), and stop the thread when `serve` returns.
pub(crate) fn with_trimmer<R>(stats: &Stats, serve: impl FnOnce() -> R) -> R {
    if !CAN_TRIM_HEAP {
        return serve();
    }
    let stop = Stop::default();
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("ringport-trim".into())
            .spawn_scoped(scope, || trimmer(&stop, stats));
        if let Err(e) = spawned {
            // Serving matters more; freed memory is then only reused.
            tracing::debug!("cannot start the heap trimmer thread: {e}");
        }
        // Set on the way out, even by a panic, so the scope can join.
        let _stop_on_exit = StopOnDrop(&stop);
        serve()
    })
}

fn trimmer(stop: &Stop, stats: &Stats) {
    let closed = || {
        let s = stats.summary();
        s.connections.saturating_sub(s.active)
    };
    let mut closed_at_trim = closed();
    while !stop.wait(TRIM_EVERY) {
        let now_closed = closed();
        let ended = now_closed.saturating_sub(closed_at_trim);
        if FREED.load(Ordering::Relaxed) > 0 || ended >= CLOSED {
            let freed = FREED.swap(0, Ordering::Relaxed);
            closed_at_trim = now_closed;
            trim_heap();
            tracing::trace!(
                "heap trimmed: {} KiB of buffers freed, {ended} connections ended",
                freed >> 10
            );
        }
    }
}

#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    cond: Condvar,
}

impl Stop {
    /// Wait up to `timeout`; true once stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_all();
    }
}

struct StopOnDrop<'a>(&'a Stop);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_trimmer_stops_as_soon_as_serving_ends() {
        let t = Instant::now();
        let r = with_trimmer(&Stats::new(), || {
            freed(1 << 20);
            7
        });
        assert_eq!(r, 7);
        assert!(t.elapsed() < TRIM_EVERY, "joined without waiting a tick");
    }
}
