//! A worker of the completion model: it waits on its port for a batch of
//! completions, routes each by its token (a connection's slot, or the
//! listener) and kind to the connection's state machine, which answers
//! through [`Submit`], and keeps the accepts posted. It also runs the
//! shutdown (drain, then force at the deadline) and the idle sweep. The
//! same worker serves either topology (`topology.rs`).

use super::conn::{Conn, EndReason};
use super::submit::Submit;
use super::topology::{Handle, Hub, Source};
use crate::verbose::log_received;
use crate::workers::IdleSweep;
use crate::{Coalesce, Config, ServerError, Shutdown, Stats, RELAY_COALESCE};
use ringport_completion::{Completion, OpId, OpKind, Port, Relay, Socket, Token};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The listener's token; connection tokens are slot indices, far below it.
const LISTENER: Token = u64::MAX - 1;
/// How long shutdown waits for cancelled operations, after the drain
/// deadline, before leaving the rest to the port's teardown.
const DRAIN_LIMIT: Duration = Duration::from_millis(1500);
/// Completions to batch when coalescing ([`Coalesce`]).
const COALESCE_BATCH: usize = 32;

/// A connection in the table: its socket (given to the port when its close
/// is submitted), its peer (kept only for `-v`), and its state machine,
/// which holds everything else.
pub(super) struct Entry {
    conn: Conn<OpId, Completion>,
    socket: Option<Socket>,
    /// The pipe of a relaying connection.
    relay: Option<Relay>,
    peer: Option<SocketAddr>,
}

struct Worker<'a> {
    port: Port,
    hub: &'a Hub,
    /// Other workers dequeue from the same port.
    shared: bool,
    config: &'a Config,
    shutdown: &'a Shutdown,
    stats: &'a Stats,
    echoed: u64,
    /// Connections of this worker relaying in the kernel now.
    relays: usize,
    /// Connections this worker accepted and has not closed yet.
    open: usize,
    stopping: Option<Instant>,
    /// The drain deadline passed and every connection was aborted.
    forced: bool,
    /// With an idle timeout: when this batch of completions was reaped (one
    /// clock read per batch, not per completion), and when to sweep next.
    now: Instant,
    sweep: Option<IdleSweep>,
}

/// The batch a worker with `relays` relaying connections waits for, and
/// for how long at most (see [`Coalesce`]).
fn batching(coalesce: Coalesce, relays: usize) -> Option<(usize, Duration)> {
    match coalesce {
        Coalesce::Always(d) => Some((COALESCE_BATCH, d)),
        // One completion per two relaying connections. Waiting for one from
        // each of them is a lockstep: in a closed loop a relay's next
        // readiness comes only after its peer has read the echo the batch
        // still holds, so the worker slept until the slowest peer had
        // answered while the others idled (4 × 64 KiB: 0.76× epoll's
        // msgs/s, the load 86% busy and the server 42%). With half, the
        // other half keep the peers busy while the batch gathers. A lone
        // relay is never held back.
        Coalesce::WhileRelaying if relays >= 2 => {
            Some(((relays / 2).min(COALESCE_BATCH), RELAY_COALESCE))
        }
        Coalesce::WhileRelaying | Coalesce::Never => None,
    }
}

pub(super) fn worker(
    hub: &Hub,
    handle: Handle,
    config: &Config,
    shutdown: &Shutdown,
    stats: &Stats,
) -> Result<(), ServerError> {
    let (port, shared) = match handle {
        Handle::Own(port_config) => (Port::new(&port_config)?, false),
        Handle::Share(share) => (share.into_port(), true),
    };
    let waker = port.waker();
    if let Source::Inbox(inbox) = &hub.source {
        *inbox.waker.lock().unwrap() = Some(waker.clone());
        // Sockets that arrived before the waker was set.
        waker.wake();
    }
    // On a shared port this posts one wake per worker; see the end of the
    // loop for why that is enough.
    let on_stop = waker.clone();
    shutdown.on_trigger(move || on_stop.wake());
    let mut w = Worker {
        port,
        hub,
        shared,
        config,
        shutdown,
        stats,
        echoed: 0,
        relays: 0,
        open: 0,
        stopping: None,
        forced: false,
        now: Instant::now(),
        sweep: IdleSweep::new(config.idle_timeout, Instant::now()),
    };
    let mut batch: Vec<Completion> = Vec::with_capacity(256);
    loop {
        if shutdown.is_triggered() && w.stopping.is_none() {
            w.begin_stop();
        }
        if let Some(since) = w.stopping {
            let drained = hub.conns.live() == 0 && hub.accepts().ops.is_empty();
            if drained || since.elapsed() > config.drain_timeout + DRAIN_LIMIT {
                break;
            }
            if !w.forced && since.elapsed() > config.drain_timeout {
                w.force_all();
            }
        }
        let paused_until = w.arm_accepts();
        let wake_at = match (paused_until, w.sweep.map(|s| s.next())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match (w.stopping, wake_at) {
            (Some(_), _) => Some(Duration::from_millis(50)),
            (None, Some(t)) => Some(t.saturating_duration_since(Instant::now())),
            (None, None) => None,
        };
        w.port
            .wait(&mut batch, timeout, batching(config.coalesce, w.relays))
            .map_err(|e| ServerError::io("waiting for completions failed", e))?;
        if w.sweep.is_some() {
            w.now = Instant::now();
        }
        for c in batch.drain(..) {
            w.handle(c);
        }
        w.sweep_idle();
        stats.add_bytes(std::mem::take(&mut w.echoed));
    }
    if w.shared {
        // The shutdown wakes went to whichever workers were waiting, and one
        // worker may have taken several. Each leaving worker passes one on,
        // so the last one still asleep is woken by the others' exits at worst.
        waker.wake();
    }
    Ok(())
}

impl Worker<'_> {
    /// Keep the wanted number of accepts posted. Returns when accepting may
    /// resume, if it is paused after a resource error.
    fn arm_accepts(&mut self) -> Option<Instant> {
        let Source::Listener(l) = &self.hub.source else {
            return None;
        };
        if self.stopping.is_some() {
            return None;
        }
        let mut a = self.hub.accepts();
        if a.stopped {
            return None;
        }
        if let Some(t) = a.paused_until {
            if Instant::now() < t {
                return Some(t);
            }
            a.paused_until = None;
        }
        while a.ops.len() < a.wanted {
            let op = self.port.accept(l, LISTENER);
            a.ops.push(op);
        }
        None
    }

    fn begin_stop(&mut self) {
        self.stopping = Some(Instant::now());
        let hub = self.hub;
        {
            let mut a = hub.accepts();
            a.stopped = true;
            for &op in &a.ops {
                self.port.cancel(op);
            }
        }
        // On a shared port every worker sweeps once; asking a connection to
        // shut down twice does nothing the second time.
        hub.conns.for_each(|token, e| {
            e.conn.shutdown();
            self.pump(token, e);
        });
    }

    /// The drain deadline passed: end every connection still open,
    /// dropping what it is still owed.
    fn force_all(&mut self) {
        self.forced = true;
        let hub = self.hub;
        hub.conns.for_each(|token, e| {
            e.conn.abort(EndReason::Shutdown);
            self.pump(token, e);
        });
    }

    /// Abort every connection that has moved no byte for the idle timeout.
    /// One periodic sweep for the worker, which it wakes for anyway, instead
    /// of a timer per connection; on a shared port each worker sweeps the
    /// whole table, and aborting twice does nothing the second time.
    fn sweep_idle(&mut self) {
        let now = self.now;
        let Some(limit) = self.sweep.as_mut().and_then(|s| s.due(now)) else {
            return;
        };
        let hub = self.hub;
        hub.conns.for_each(|token, e| {
            if !e.conn.is_ending() && now.saturating_duration_since(e.conn.last_active()) >= limit {
                e.conn.abort(EndReason::Idle);
                self.pump(token, e);
            }
        });
    }

    fn handle(&mut self, c: Completion) {
        match c.kind {
            OpKind::Wake => self.drain_inbox(),
            OpKind::Accept => self.on_accept(c),
            OpKind::Recv => self.on_recv(c),
            OpKind::Send => self.on_send(c),
            OpKind::Close => self.on_close(c),
            OpKind::Ready => self.on_ready(c),
        }
    }

    fn on_accept(&mut self, mut c: Completion) {
        let accepted = {
            let mut a = self.hub.accepts();
            if !c.more {
                a.ops.retain(|&op| op != c.op);
            }
            match &c.result {
                Ok(_) => c.take_socket(),
                Err(e) if ringport_completion::is_cancelled(e) => None,
                Err(e) => {
                    if let Some(pause) = a.backoff.on_error(e) {
                        // Re-posted after the pause (a multishot accept ends on error).
                        a.paused_until = Some(Instant::now() + pause);
                    }
                    None
                }
            }
        };
        // Released only after its id left `ops`, so nobody cancels it later.
        let _ = self.port.release(c);
        if let Some(fd) = accepted {
            self.add_connection(fd);
        }
    }

    fn drain_inbox(&mut self) {
        let sockets = match &self.hub.source {
            Source::Inbox(inbox) => std::mem::take(&mut *inbox.sockets.lock().unwrap()),
            Source::Listener(_) => return,
        };
        for socket in sockets {
            self.add_connection(socket);
        }
    }

    fn add_connection(&mut self, socket: Socket) {
        // A worker's own shutdown sweep covers every connection it added
        // before, so it must add none after; on a shared port another
        // worker's sweep may also have passed already, hence the shared flag.
        if self.stopping.is_some() || self.shutdown.is_triggered() {
            drop(socket);
            return;
        }
        crate::sys::nodelay_if_not_inherited(|| socket.set_nodelay());
        let peer = if self.config.verbose {
            socket.peer_addr().ok()
        } else {
            None
        };
        if let Some(p) = peer {
            tracing::info!("client connected from {p}");
        }
        if !self.stats.admit(self.config.max_connections) {
            // Over the limit: closed before any operation was started on it.
            if let Some(p) = peer {
                tracing::info!("client {p} refused: --max-connections reached");
            }
            drop(socket);
            return;
        }
        let features = self.port.features();
        // With -v the bytes are shown as they arrive, so they must pass
        // through the server's memory: no relay then. A relaying connection
        // stays with the worker that counts it (`relays`), so never on a
        // shared port (IOCP has no relay anyway).
        let relay =
            features.relay && !features.shared_port && self.config.relay && !self.config.verbose;
        let conn = Conn::new(
            features.multishot_recv,
            self.config.max_buffered,
            Instant::now(),
        )
        .lending(features.lent_sends)
        .relaying(relay);
        self.open += 1;
        let token = self.hub.conns.insert(Entry {
            conn,
            socket: Some(socket),
            relay: None,
            peer,
        });
        let hub = self.hub;
        hub.conns.with(token, |e| self.pump(token, e));
    }

    fn on_recv(&mut self, c: Completion) {
        let hub = self.hub;
        let token = c.token;
        let mut c = Some(c);
        hub.conns.with(token, |e| {
            let mut c = c.take().expect("taken once");
            match c.result {
                Ok(0) => e.conn.on_recv_end(Ok(()), c.more),
                Ok(n) if e.conn.lends_next_receive() => {
                    if let Some(p) = e.peer {
                        log_received!(p, self.port.data(&c));
                    }
                    // The bytes go back from the buffer they came in; the
                    // completion (and its buffer) now belongs to that send.
                    let more = c.more;
                    e.conn.on_recv_lent(c, n, more, self.now);
                    self.pump(token, e);
                    return;
                }
                Ok(_) => {
                    let data = self.port.data(&c);
                    if let Some(p) = e.peer {
                        if e.conn.discards_input() {
                            tracing::info!(
                                "{} bytes from {p} discarded: the connection is closing",
                                data.len()
                            );
                        } else {
                            log_received!(p, data);
                        }
                    }
                    e.conn.on_recv_data(data, c.more, self.now);
                }
                Err(_) => {
                    let err = std::mem::replace(&mut c.result, Ok(0)).unwrap_err();
                    e.conn.on_recv_end(Err(err), c.more);
                }
            }
            // With the connection still locked: until now another worker
            // could have wanted to cancel this operation by its id.
            let _ = self.port.release(c);
            self.pump(token, e);
        });
        if let Some(c) = c {
            // No such connection: still give the buffer back.
            let _ = self.port.release(c);
        }
    }

    fn on_send(&mut self, c: Completion) {
        let hub = self.hub;
        let token = c.token;
        let mut c = Some(c);
        hub.conns.with(token, |e| {
            let mut c = c.take().expect("taken once");
            let result = std::mem::replace(&mut c.result, Ok(0));
            let buf = self.port.release(c).unwrap_or_default();
            e.conn.on_send(result, buf, self.now);
            self.pump(token, e);
        });
        if let Some(c) = c {
            let _ = self.port.release(c);
        }
    }

    fn on_ready(&mut self, mut c: Completion) {
        let hub = self.hub;
        let token = c.token;
        let result = std::mem::replace(&mut c.result, Ok(0));
        let _ = self.port.release(c);
        hub.conns.with(token, |e| {
            e.conn.on_ready(result, self.now);
            self.pump(token, e);
        });
    }

    fn on_close(&mut self, c: Completion) {
        let token = c.token;
        let _ = self.port.release(c);
        let Some(mut e) = self.hub.conns.remove(token) else {
            return;
        };
        // On a shared port another worker may close what this one accepted
        // (nothing is relayed there, so the count does not matter).
        self.open = self.open.saturating_sub(1);
        e.conn.on_close();
        debug_assert!(e.conn.is_finished());
        crate::reclaim::freed(e.conn.capacity());
        self.echoed += e.conn.take_echoed();
        self.stats.connection_closed();
        if let Some(p) = e.peer {
            match e.conn.end_reason() {
                Some(EndReason::Error) => tracing::info!("client {p} disconnected (reset)"),
                Some(EndReason::Idle) => tracing::info!("client {p} disconnected (idle)"),
                _ => tracing::info!("client {p} disconnected"),
            }
        }
    }

    /// Let connection `token` start what it needs next, after an event.
    /// The caller holds the connection's lock.
    fn pump(&mut self, token: Token, e: &mut Entry) {
        e.conn.pump(&mut Submit {
            port: &mut self.port,
            socket: &mut e.socket,
            relay: &mut e.relay,
            relays: &mut self.relays,
            open: self.open,
            token,
            stats: self.stats,
        });
        self.echoed += e.conn.take_echoed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_while_relaying_one_completion_per_two_relays() {
        let us = Duration::from_micros;
        assert_eq!(batching(Coalesce::WhileRelaying, 0), None);
        assert_eq!(batching(Coalesce::WhileRelaying, 1), None);
        assert_eq!(
            batching(Coalesce::WhileRelaying, 4),
            Some((2, RELAY_COALESCE))
        );
        assert_eq!(
            batching(Coalesce::WhileRelaying, 5),
            Some((2, RELAY_COALESCE))
        );
        assert_eq!(
            batching(Coalesce::WhileRelaying, 1000),
            Some((COALESCE_BATCH, RELAY_COALESCE))
        );
        assert_eq!(batching(Coalesce::Never, 64), None);
        assert_eq!(
            batching(Coalesce::Always(us(100)), 0),
            Some((COALESCE_BATCH, us(100)))
        );
        assert_eq!(
            batching(Coalesce::Always(us(100)), 64),
            Some((COALESCE_BATCH, us(100)))
        );
    }
}
