//! Counters every model keeps, printed as the summary at exit.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server-wide counters. Event-driven models add to them in batches, so the
/// shared cache line is not touched once per message.
///
/// A clone is another handle on the same counters: tokio tasks must own what
/// they use (`'static`), so they each hold one rather than a borrow.
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    started: Instant,
    connections: AtomicU64,
    active: AtomicU64,
    bytes: AtomicU64,
    rejected: AtomicU64,
    relayed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            inner: Arc::new(Counters {
                started: Instant::now(),
                connections: AtomicU64::new(0),
                active: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                relayed: AtomicU64::new(0),
            }),
        }
    }
}

impl Stats {
    /// Fresh counters; uptime counts from now.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client was accepted.
    pub fn connection_opened(&self) {
        self.inner.connections.fetch_add(1, Relaxed);
        self.inner.active.fetch_add(1, Relaxed);
    }

    /// A client was accepted if fewer than `max` are open (always without a
    /// limit); otherwise it counts as rejected and the caller must close it.
    /// One atomic update, so workers on several threads cannot together
    /// pass the limit.
    pub fn admit(&self, max: Option<usize>) -> bool {
        let Some(max) = max else {
            self.connection_opened();
            return true;
        };
        let admitted = self
            .inner
            .active
            .fetch_update(Relaxed, Relaxed, |n| (n < max as u64).then_some(n + 1))
            .is_ok();
        if admitted {
            self.inner.connections.fetch_add(1, Relaxed);
        } else {
            self.connection_rejected();
        }
        admitted
    }

    /// A client's connection was closed.
    pub fn connection_closed(&self) {
        self.inner.active.fetch_sub(1, Relaxed);
    }

    /// A client was refused (over a limit).
    pub fn connection_rejected(&self) {
        self.inner.rejected.fetch_add(1, Relaxed);
    }

    /// A connection began relaying in the kernel (completion model).
    pub fn connection_relayed(&self) {
        self.inner.relayed.fetch_add(1, Relaxed);
    }

    /// `n` bytes were echoed back.
    pub fn add_bytes(&self, n: u64) {
        if n > 0 {
            self.inner.bytes.fetch_add(n, Relaxed);
        }
    }

    /// A snapshot for printing.
    pub fn summary(&self) -> Summary {
        Summary {
            connections: self.inner.connections.load(Relaxed),
            active: self.inner.active.load(Relaxed),
            bytes_echoed: self.inner.bytes.load(Relaxed),
            rejected: self.inner.rejected.load(Relaxed),
            relayed: self.inner.relayed.load(Relaxed),
            uptime: self.inner.started.elapsed(),
        }
    }
}

/// What the server did, for the final line.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Connections accepted and served.
    pub connections: u64,
    /// Connections open right now.
    pub active: u64,
    /// Bytes sent back to clients.
    pub bytes_echoed: u64,
    /// Connections refused because of a limit.
    pub rejected: u64,
    /// Connections whose bytes went through a kernel relay.
    pub relayed: u64,
    /// Time since the server started.
    pub uptime: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "served {} connections, echoed {} bytes, uptime {:.1}s",
            self.connections,
            self.bytes_echoed,
            self.uptime.as_secs_f64()
        )?;
        if self.rejected > 0 {
            write!(f, ", rejected {} over the connection limit", self.rejected)?;
        }
        if self.relayed > 0 {
            write!(f, ", {} relayed in the kernel (splice)", self.relayed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_stops_at_the_limit_and_counts_the_rest() {
        let s = Stats::new();
        assert!(s.admit(Some(2)));
        assert!(s.admit(Some(2)));
        assert!(!s.admit(Some(2)));
        s.connection_closed();
        assert!(s.admit(Some(2)));
        assert!(s.admit(None));
        let sum = s.summary();
        assert_eq!((sum.connections, sum.active, sum.rejected), (4, 3, 1));
        assert!(sum
            .to_string()
            .contains("rejected 1 over the connection limit"));
    }
}
