//! Ending a run early from outside: `ringport stress` triggers it on the
//! first Ctrl-C (SIGINT) or SIGTERM, so that what was measured up to then
//! is still reported.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A handle that ends a run early. Once triggered, no connection sends
/// another message (warm-up or measured); the echoes already in flight are
/// awaited as at the normal end of a run (each within `timeout`), the
/// connections go through their close check (`close_grace`), and the run
/// returns its report with [`Report::interrupted`](crate::Report::interrupted)
/// set. Clones share one state; a run's connections read it on their way to
/// each message, one atomic load.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<OnceLock<Instant>>);

impl Interrupt {
    /// A handle not yet triggered.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// End the run now. Only the first call counts.
    pub fn trigger(&self) {
        let _ = self.0.set(Instant::now());
    }

    /// When it was first triggered, if it was.
    pub fn triggered_at(&self) -> Option<Instant> {
        self.0.get().copied()
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        self.0.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_first_trigger() {
        let a = Interrupt::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        a.trigger();
        let first = b.triggered_at().expect("triggered");
        a.trigger();
        assert_eq!(b.triggered_at(), Some(first));
    }
}
