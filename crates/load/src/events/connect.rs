//! Opening connections: the connect phase before the start line, paced
//! and bounded so that the server's backlog is not flooded, and churn's
//! replacement connects during the run. Each connect is non-blocking and
//! registered with the thread's poller; the run loop notices it finish.

use super::conn::{Conn, Outcome, State};
use super::{Driver, SWEEP};
use crate::config::Config;
use crate::exchange::Exchange;
use crate::net;
use crate::outcome::ErrorKind;
use crate::payload::Payload;
use crate::schedule::Workload;
use crate::stats::Ending;
use crate::LoadError;
use mio::net::TcpStream;
use mio::{Events, Interest, Token};
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

impl Driver<'_> {
    fn register_error(source: io::Error) -> LoadError {
        LoadError::Io {
            context: "cannot register a connection with the poller".into(),
            error: source,
        }
    }

    /// Open every connection (or count it failed), at most
    /// `MAX_PENDING_CONNECTS` at a time and at this thread's share of
    /// `--connect-rate`.
    pub(super) fn connect_all(&mut self, ids: &[u64], threads: usize) -> Result<(), LoadError> {
        let rate = self.config.connect_rate.map(|r| r / threads as f64);
        let start = Instant::now();
        let mut issued = 0usize;
        let mut pending = 0usize;
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = start;
        loop {
            let now = Instant::now();
            let mut wait = SWEEP;
            while issued < ids.len() && pending < MAX_PENDING_CONNECTS {
                if let Some(r) = rate {
                    let at = start + Duration::from_secs_f64(issued as f64 / r);
                    if at > now {
                        wait = wait.min(at - now);
                        break;
                    }
                }
                let id = ids[issued];
                issued += 1;
                if self.start_connect(id)? {
                    pending += 1;
                }
            }
            if issued == ids.len() && pending == 0 {
                break;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(LoadError::Io {
                        context: "poll failed".into(),
                        error: e,
                    });
                }
            }
            pending -= self.connects_done(&events);
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP {
                last_sweep = now;
                pending -= self.connects_timed_out(now);
            }
            self.tally.rec.tick(now);
        }
        self.tally.rec.tick(Instant::now());
        Ok(())
    }

    /// Start connection `id`'s non-blocking connect and register it. False
    /// when the connect failed at once, which is counted here.
    fn start_connect(&mut self, id: u64) -> Result<bool, LoadError> {
        let config = self.config;
        let token = Token(self.conns.len());
        // Touched before the connect starts, so that the time it takes (up
        // to seconds for a thousand 1 MiB buffers on a VM) is in no
        // connect's latency or timeout.
        // Sized messages are sent from the thread's block: no buffer.
        let buf = match config.payload {
            Payload::Sized { .. } => Vec::new(),
            Payload::Template(_) => touched(config.send_buffer_at_start()),
        };
        let now = Instant::now();
        match connect_registered(config, self.poll.registry(), id, token)
            .map_err(Self::register_error)?
        {
            Ok(stream) => {
                let ex = Exchange::new(
                    id,
                    now,
                    buf,
                    self.messages.clone(),
                    config.connections as u64,
                );
                self.conns.push(Some(Conn::new(stream, ex)));
                Ok(true)
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                self.conns.push(None);
                self.tally.rec.error(ErrorKind::ConnectFailed);
                Ok(false)
            }
        }
    }

    /// Note the connects that `events` show finished, opened or failed;
    /// returns how many.
    fn connects_done(&mut self, events: &Events) -> usize {
        let mut done = 0;
        for ev in events.iter() {
            let slot = &mut self.conns[ev.token().0];
            let Some(conn) = slot
                .as_mut()
                .filter(|c| matches!(c.state, State::Connecting { .. }))
            else {
                continue;
            };
            match conn.connected() {
                Ok(false) => continue,
                Ok(true) => {
                    self.tally.live += 1;
                    self.tally.rec.opened();
                }
                Err(e) => {
                    tracing::debug!("connect to {} failed: {e}", self.config.addr);
                    self.tally.rec.error(ErrorKind::ConnectFailed);
                    let mut conn = slot.take().expect("checked above");
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
            }
            done += 1;
        }
        done
    }

    /// Fail the connects in progress for longer than the timeout; returns
    /// how many.
    fn connects_timed_out(&mut self, now: Instant) -> usize {
        let timeout = self.config.timeout;
        let mut failed = 0;
        for slot in self.conns.iter_mut() {
            let timed_out = slot.as_ref().is_some_and(|c| match c.state {
                State::Connecting { since } => now.duration_since(since) > timeout,
                _ => false,
            });
            if timed_out {
                let mut conn = slot.take().expect("checked above");
                let _ = self.poll.registry().deregister(&mut conn.stream);
                self.tally.rec.error(ErrorKind::ConnectFailed);
                failed += 1;
            }
        }
        failed
    }

    /// Churn: connection `k` carried its share and has closed; open a new
    /// one in its place, which takes over its plan.
    pub(super) fn replace(&mut self, k: usize, w: &Workload, ending: Ending, now: Instant) {
        let config = self.config;
        let Some(conn) = self.conns[k].as_mut() else {
            return;
        };
        if let Some(outcome) = self.tally.cycle(&mut conn.ex, w, ending, now) {
            self.finish(k, outcome);
            return;
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        // A poller that refuses it fails the slot like a refused connect.
        let opened = connect_registered(config, self.poll.registry(), conn.id, Token(k))
            .and_then(|connect| connect);
        match opened {
            Ok(stream) => conn.replace_stream(stream, Instant::now()),
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                self.finish(k, Outcome::Failed(ErrorKind::ConnectFailed));
            }
        }
    }
}

/// Start connection `id`'s non-blocking connect and register it under
/// `token`. The outer error is the poller's; the inner one the connect's.
fn connect_registered(
    config: &Config,
    registry: &mio::Registry,
    id: u64,
    token: Token,
) -> io::Result<io::Result<TcpStream>> {
    let source = net::source_for(&config.source_ips, id);
    let mut stream = match net::start_connect(config.addr, source) {
        Ok(std) => TcpStream::from_std(std),
        Err(e) => return Ok(Err(e)),
    };
    registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(Ok(stream))
}
