//! One shutdown signal that every model can wait on in its own way.
//!
//! A blocking `accept` cannot watch a flag, an event loop sleeps in the kernel
//! and a tokio task awaits a future, so the trigger runs a list of wake-up
//! callbacks, each registered by the code that knows how to interrupt itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Waker = Box<dyn Fn() + Send + Sync>;

/// A cloneable, one-way "stop now" flag with wake-up callbacks.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Shutdown {
    /// A shutdown that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask everything to stop. Runs every registered waker once; later calls do nothing.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
            return;
        }
        let wakers = std::mem::take(&mut *self.inner.wakers.lock().unwrap());
        for wake in wakers {
            wake();
        }
    }

    /// Whether [`trigger`](Shutdown::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// Run `wake` when shutdown is triggered, or now if it already was.
    pub fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self.inner.wakers.lock().unwrap();
        // Checked under the lock, so a concurrent trigger either sees this
        // waker in the list or we see the flag: never neither.
        if self.is_triggered() {
            drop(wakers);
            wake();
        } else {
            wakers.push(Box::new(wake));
        }
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn wakers_run_once_and_late_wakers_run_at_once() {
        let s = Shutdown::new();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        s.on_trigger(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        s.trigger();
        s.trigger();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let n3 = n.clone();
        s.on_trigger(move || {
            n3.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 11);
        assert!(s.is_triggered());
    }
}
