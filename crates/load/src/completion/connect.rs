//! Opening connections through the port: the connect phase before the
//! start line, paced and bounded like the events engine's, and churn's
//! replacement connects during the run. Each connect is non-blocking; the
//! port reports when the socket becomes writable (connected, or failed),
//! and the socket is then made blocking again, since io_uring's receives
//! and sends on a non-blocking socket end at once instead of waiting.

use super::conn::Conn;
use super::{token, Driver, SWEEP};
use crate::exchange::{Exchange, State};
use crate::net;
use crate::outcome::ErrorKind;
use crate::payload::Payload;
use crate::schedule::Workload;
use crate::LoadError;
use ringport_completion::{Completion, Interest, OpKind, Socket};
use std::io;
use std::time::{Duration, Instant};

/// Connects in progress at once per thread, so that ten thousand SYNs do
/// not all land in the server's backlog in the same millisecond.
const MAX_PENDING_CONNECTS: usize = 256;

/// An empty vector with room for `bytes`, every page of it written once.
fn touched(bytes: usize) -> Vec<u8> {
    let mut v = vec![1u8; bytes];
    v.clear();
    v
}

/// Start connection `id`'s non-blocking connect.
fn start(config: &crate::Config, id: u64) -> io::Result<Socket> {
    let source = net::source_for(&config.source_ips, id);
    net::start_connect(config.addr, source).map(Socket::from)
}

impl Driver<'_> {
    /// Open every connection (or count it failed), at most
    /// `MAX_PENDING_CONNECTS` at a time and at this thread's share of
    /// `--connect-rate`.
    pub(super) fn connect_all(&mut self, ids: &[u64], threads: usize) -> Result<(), LoadError> {
        let rate = self.config.connect_rate.map(|r| r / threads as f64);
        let start = Instant::now();
        let mut issued = 0usize;
        let mut last_sweep = start;
        loop {
            let now = Instant::now();
            let mut wait = SWEEP;
            while issued < ids.len() && self.pending_connects() < MAX_PENDING_CONNECTS {
                if let Some(r) = rate {
                    let at = start + Duration::from_secs_f64(issued as f64 / r);
                    if at > now {
                        wait = wait.min(at - now);
                        break;
                    }
                }
                self.start_connect(ids[issued]);
                issued += 1;
            }
            if issued == ids.len() && self.pending_connects() == 0 {
                break;
            }
            self.wait(wait)?;
            let mut done = std::mem::take(&mut self.done);
            for c in done.drain(..) {
                let k = super::slot_of(c.token);
                let current = self
                    .conns
                    .get(k)
                    .and_then(|s| s.as_ref())
                    .map(|c| c.token(k));
                if c.kind == OpKind::Ready && current == Some(c.token) {
                    self.first_connect_done(k, &c);
                    let _ = self.port.release(c);
                } else {
                    self.retired_completion(c);
                }
            }
            self.done = done;
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP {
                last_sweep = now;
                self.connects_timed_out(now);
            }
            self.tally.rec.tick(now);
        }
        self.tally.rec.tick(Instant::now());
        Ok(())
    }

    fn pending_connects(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.connect.is_some())
            .count()
    }

    /// Start connection `id`'s connect in the next slot; a connect that
    /// fails at once is counted here.
    fn start_connect(&mut self, id: u64) {
        let config = self.config;
        let k = self.conns.len();
        // Touched before the connect starts, so that the time it takes is
        // in no connect's latency or timeout. Sized messages are sent from
        // the thread's block: no buffer.
        let buf = match config.payload {
            Payload::Sized { .. } => Vec::new(),
            Payload::Template(_) => touched(config.send_buffer_at_start()),
        };
        match start(config, id) {
            Ok(socket) => {
                let ex = Exchange::new(
                    id,
                    Instant::now(),
                    buf,
                    self.messages.clone(),
                    config.connections as u64,
                );
                let mut conn = Conn::new(socket, ex);
                conn.connect = Some(self.port.poll(&conn.socket, token(k, 0), Interest::Write));
                self.conns.push(Some(conn));
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                self.conns.push(None);
                self.tally.rec.error(ErrorKind::ConnectFailed);
            }
        }
    }

    /// A first connect finished (before the start line): opened or failed.
    fn first_connect_done(&mut self, k: usize, c: &Completion) {
        let conn = self.conns[k].as_mut().expect("checked by the caller");
        conn.connect = None;
        match conn.up(&mut self.port, k, c) {
            Ok(()) => {
                conn.ex.state = State::Exchanging { finished: false };
                self.tally.live += 1;
                self.tally.rec.opened();
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", self.config.addr);
                self.tally.rec.error(ErrorKind::ConnectFailed);
                let conn = self.conns[k].take().expect("checked above");
                let (socket, _) = conn.into_retired();
                self.port.close(socket, token(k, 0));
            }
        }
    }

    /// Fail the first connects in progress for longer than the timeout.
    fn connects_timed_out(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        for k in 0..self.conns.len() {
            let timed_out = self.conns[k].as_ref().is_some_and(|c| match c.ex.state {
                State::Connecting { since } => now.duration_since(since) > timeout,
                _ => false,
            });
            if timed_out {
                let conn = self.conns[k].take().expect("checked above");
                let t = conn.token(k);
                let (socket, ops) = conn.into_retired();
                self.tally.rec.error(ErrorKind::ConnectFailed);
                self.retire(socket, t, ops);
            }
        }
    }

    /// Churn: open a new connection in slot `k`, a new generation; the old
    /// socket is retired.
    pub(super) fn reconnect(&mut self, k: usize) -> io::Result<()> {
        let conn = self.conns[k].as_mut().expect("the caller's slot");
        let socket = start(self.config, conn.ex.id)?;
        let old_token = conn.token(k);
        let (old, ops) = conn.renew(socket);
        conn.ex.restart(Instant::now());
        conn.connect = Some(self.port.poll(&conn.socket, conn.token(k), Interest::Write));
        self.retire(old, old_token, ops);
        Ok(())
    }

    /// A replacement connect (churn) finished during the run.
    pub(super) fn connect_ready(&mut self, k: usize, c: Completion, w: &Workload) {
        let conn = self.conns[k].as_mut().expect("the caller's slot");
        conn.connect = None;
        let up = conn.up(&mut self.port, k, &c);
        let _ = self.port.release(c);
        let State::Connecting { since } = conn.ex.state else {
            return;
        };
        match up {
            Ok(()) => {
                conn.ex
                    .reconnected(&mut self.tally.rec, w, since, Instant::now());
                self.turn(k, w, None, None);
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", self.config.addr);
                self.finish(
                    k,
                    crate::exchange::Outcome::Failed(ErrorKind::ConnectFailed),
                );
            }
        }
    }
}
