//! The connection table of the completion model: slots named by tokens, in
//! shards that each sit behind their own lock.
//!
//! With a ring per worker (io_uring), each worker owns a table of one shard:
//! only that worker ever locks it, so the lock is never contended. With one
//! port shared by every worker (IOCP), any worker may dequeue any
//! connection's completion, so all workers share one table of many shards; a
//! completion locks only its connection's shard, and while it holds it no
//! other worker can run that connection's state machine. That lock is what
//! keeps a receive completion and a send completion of the same connection,
//! dequeued by two workers at once, from racing.
//!
//! A token encodes the shard in its low part (`slot * shards + shard`). Slots
//! are reused: that is safe because a connection is removed only when its
//! close completes, and the state machine closes only once every other
//! operation of the connection has completed, so no stale completion can
//! name a reused slot.

use ringport_completion::Token;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Shard<E> {
    slots: Vec<Option<E>>,
    free: Vec<usize>,
}

/// Connections by token.
pub(super) struct Table<E> {
    shards: Box<[Mutex<Shard<E>>]>,
    live: AtomicUsize,
    /// Spreads new connections over the shards.
    next: AtomicUsize,
}

impl<E> Table<E> {
    /// A table of `shards` shards (at least one).
    pub(super) fn new(shards: usize) -> Self {
        Table {
            shards: (0..shards.max(1))
                .map(|_| {
                    Mutex::new(Shard {
                        slots: Vec::new(),
                        free: Vec::new(),
                    })
                })
                .collect(),
            live: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    fn split(&self, token: Token) -> (usize, usize) {
        let n = self.shards.len() as u64;
        ((token % n) as usize, (token / n) as usize)
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard<E>> {
        // A worker that panicked while holding a shard has already taken the
        // server down (the scope re-raises it); the data is still usable for
        // the others to drain.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Add a connection; returns its token.
    pub(super) fn insert(&self, entry: E) -> Token {
        let n = self.shards.len();
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut s = self.lock(shard);
        let slot = match s.free.pop() {
            Some(i) => {
                s.slots[i] = Some(entry);
                i
            }
            None => {
                s.slots.push(Some(entry));
                s.slots.len() - 1
            }
        };
        self.live.fetch_add(1, Ordering::Relaxed);
        (slot * n + shard) as Token
    }

    /// Run `f` on connection `token` with its shard locked; `None` if there
    /// is no such connection.
    pub(super) fn with<R>(&self, token: Token, f: impl FnOnce(&mut E) -> R) -> Option<R> {
        let (shard, slot) = self.split(token);
        let mut s = self.lock(shard);
        s.slots.get_mut(slot).and_then(|e| e.as_mut()).map(f)
    }

    /// Take connection `token` out, freeing its slot.
    pub(super) fn remove(&self, token: Token) -> Option<E> {
        let (shard, slot) = self.split(token);
        let mut s = self.lock(shard);
        let e = s.slots.get_mut(slot)?.take()?;
        s.free.push(slot);
        self.live.fetch_sub(1, Ordering::Relaxed);
        Some(e)
    }

    /// Run `f` on every connection, one shard locked at a time.
    pub(super) fn for_each(&self, mut f: impl FnMut(Token, &mut E)) {
        let n = self.shards.len();
        for shard in 0..n {
            let mut s = self.lock(shard);
            for (slot, e) in s.slots.iter_mut().enumerate() {
                if let Some(e) = e.as_mut() {
                    f((slot * n + shard) as Token, e);
                }
            }
        }
    }

    /// Connections in the table.
    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_entry_across_shards_and_slots_are_reused() {
        let t = Table::new(4);
        let tokens: Vec<Token> = (0..10).map(|i| t.insert(i)).collect();
        for (i, &tok) in tokens.iter().enumerate() {
            assert_eq!(t.with(tok, |e| *e), Some(i));
        }
        assert_eq!(t.live(), 10);
        assert_eq!(t.remove(tokens[3]), Some(3));
        assert_eq!(t.remove(tokens[3]), None, "removed once");
        assert_eq!(t.with(tokens[3], |e| *e), None);
        let mut seen = 0;
        t.for_each(|_, _| seen += 1);
        assert_eq!(seen, 9);
        assert_eq!(t.live(), 9);
    }

    #[test]
    fn one_shard_tables_give_plain_slot_indices() {
        let t = Table::new(1);
        assert_eq!(t.insert('a'), 0);
        assert_eq!(t.insert('b'), 1);
        t.remove(0);
        assert_eq!(t.insert('c'), 0, "the freed slot is reused");
    }
}
