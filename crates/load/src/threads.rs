//! The baseline engine (`--engine threads`): one OS thread per connection,
//! blocking calls, one message at a time — the way the article's stress
//! client works, and the way most quick load scripts do.
//!
//! It is here to be measured against, so that the claim "the event-driven
//! engine is never the bottleneck" has a reproducible reference: same
//! workload ([`Plan`]), same payloads, same verification and histograms;
//! only the way connections are driven differs. Each message costs a
//! `write`, a blocking `read` and two context switches, and each connection
//! a kernel thread.

use crate::config::Config;
use crate::diagnose::{diagnose, Scene};
use crate::net;
use crate::outcome::{classify, ErrorKind};
use crate::payload::Messages;
use crate::schedule::{Next, Plan};
use crate::start::{Shared, WorkerOut};
use crate::stats::{Ending, Recorder};
use crate::LoadError;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Progress and intervals are published at most this often per thread, so
/// that sixty-four threads do not contend on shared counters per message.
const TICK: Duration = Duration::from_millis(20);
/// The longest sleep while waiting for a due message, so intervals still close.
const NAP: Duration = Duration::from_millis(50);

/// Run connection `id` on this thread.
pub(crate) fn worker(
    shared: &Shared,
    config: &Config,
    thread: usize,
    id: u64,
) -> Result<WorkerOut, LoadError> {
    let mut rec = Recorder::new(config.rate.is_some(), config.progress.clone());
    if let Some(r) = config.connect_rate {
        std::thread::sleep(Duration::from_secs_f64(id as f64 / r));
    }
    let stream = match connect(config, id) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!("connect to {} failed: {e}", config.addr);
            rec.error(ErrorKind::ConnectFailed);
            None
        }
    };
    // The payload's block is made before the start, not inside the run.
    let messages = Messages::new(&config.payload);
    rec.tick(Instant::now());
    let Some(w) = shared.start(config) else {
        return Err(LoadError::Config("the run was abandoned".into()));
    };
    if let Some(mut stream) = stream {
        rec.opened();
        rec.start_series(shared.series.as_ref(), thread, w.clock.measure_start);
        let mut conn = Conn {
            stream: &mut stream,
            scratch: vec![0u8; 64 * 1024],
            messages: &messages,
            read_timeout: config.timeout,
            last_verified: None,
        };
        let conversed = conn.converse(config, &w, id, &mut rec);
        // The series covers the exchange, not the close check after it.
        rec.end_series();
        match conversed {
            Ok(()) => {
                rec.exchange_done(w.exchange_end(conn.last_verified));
                match conn.close_check(config.close_grace) {
                    Ok(ending) => rec.completed(ending),
                    Err(kind) => {
                        tracing::debug!("connection {}: {}", id + 1, kind.name());
                        rec.error(kind);
                    }
                }
            }
            Err(kind) => {
                rec.exchange_done(Instant::now());
                tracing::debug!("connection {}: {}", id + 1, kind.name());
                rec.error(kind);
            }
        }
        rec.closed();
    }
    rec.finish();
    // One connection per thread: its count is the thread's.
    let verified = rec.totals.messages_verified;
    rec.totals.per_connection.push(verified);
    Ok(WorkerOut {
        finished: rec.done_at.unwrap_or_else(Instant::now),
        totals: rec.totals,
        raw: rec.raw,
        corrected: rec.corrected,
    })
}

fn connect(config: &Config, id: u64) -> io::Result<TcpStream> {
    let source = net::source_for(&config.source_ips, id);
    let stream = net::connect_blocking(config.addr, source, config.timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(config.timeout))?;
    stream.set_write_timeout(Some(config.timeout))?;
    Ok(stream)
}

/// One blocking connection and what it needs to read.
struct Conn<'a> {
    stream: &'a mut TcpStream,
    scratch: Vec<u8>,
    /// The payload, its block made once.
    messages: &'a Messages,
    /// The read timeout set on the socket now, to set it only when it changes.
    read_timeout: Duration,
    /// When the last message came back verified.
    last_verified: Option<Instant>,
}

impl Conn<'_> {
    fn set_read_timeout(&mut self, t: Duration) -> Result<(), ErrorKind> {
        // A zero timeout means "block for ever" to the socket: never ask for it.
        let t = t.max(Duration::from_millis(1));
        if t != self.read_timeout {
            self.stream
                .set_read_timeout(Some(t))
                .map_err(|e| classify(&e))?;
            self.read_timeout = t;
        }
        Ok(())
    }

    /// Send, wait for the whole echo, verify, repeat, until the plan says
    /// stop. Between open-loop messages, watch the socket: a server that
    /// closes or sends while nothing is owed is caught then, not later.
    fn converse(
        &mut self,
        config: &Config,
        w: &crate::schedule::Workload,
        id: u64,
        rec: &mut Recorder,
    ) -> Result<(), ErrorKind> {
        let mut plan = Plan::new(id);
        let mut msg = Vec::new();
        // Bytes of the stream verified so far: where a wrong byte is.
        let mut stream = 0u64;
        let mut last_tick = Instant::now();
        // The message this thread slept for: if it wakes late, the plan is
        // asked as of when that message was due, so the thread's own
        // lateness is never counted as messages the server left unsent.
        let mut slept_for: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now.duration_since(last_tick) >= TICK {
                rec.tick(now);
                last_tick = now;
            }
            let plan_now = slept_for.take().filter(|at| *at <= now).unwrap_or(now);
            let (intended, measured) = match plan.next(w, plan_now) {
                Next::Send { intended, measured } => (intended, measured),
                Next::Wait(at) => {
                    let nap = at.saturating_duration_since(now);
                    if nap <= NAP {
                        slept_for = Some(at);
                    }
                    self.watch_idle(nap.min(NAP))?;
                    continue;
                }
                Next::Finished { unsent } => {
                    rec.unsent(unsent);
                    return Ok(());
                }
            };
            msg.clear();
            self.messages.write(id + 1, plan.sent, &mut msg);
            let queued = Instant::now();
            if w.schedule.is_some() {
                // One message at a time: the connection was free from its
                // last echo (or the start) on.
                rec.sent_late(queued, intended, self.last_verified, measured);
            }
            self.stream.write_all(&msg).map_err(|e| classify(&e))?;
            rec.sent(measured, msg.len() as u64);
            // The timeout bounds the whole echo, not each read of it.
            let deadline = queued + config.timeout;
            let mut got = 0;
            while got < msg.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ErrorKind::Timeout);
                }
                self.set_read_timeout(left)?;
                // Read what is there, not just what is owed: nothing else
                // was sent, so a byte beyond the echo is one never sent.
                let n = match self.stream.read(&mut self.scratch) {
                    Ok(0) => return Err(ErrorKind::EarlyClose),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(classify(&e)),
                };
                let owed = msg.len() - got;
                let checked = n.min(owed);
                if self.scratch[..checked] != msg[got..got + checked] {
                    if rec.wants_diagnosis() {
                        let wrong = self.scratch[..checked]
                            .iter()
                            .zip(&msg[got..])
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                        rec.diagnosed(diagnose(&Scene {
                            messages: self.messages,
                            connections: config.connections as u64,
                            conn: id + 1,
                            message: plan.sent,
                            offset: got + wrong,
                            stream_offset: stream + (got + wrong) as u64,
                            sent: plan.sent,
                            got: &self.scratch[wrong..n],
                        }));
                    }
                    return Err(ErrorKind::Mismatch);
                }
                got += checked;
                if n > owed {
                    if Instant::now() <= deadline {
                        rec.verified(Instant::now(), queued, intended, measured, msg.len() as u64);
                    }
                    return Err(ErrorKind::ExtraBytes);
                }
            }
            let now = Instant::now();
            if now > deadline {
                return Err(ErrorKind::Timeout);
            }
            rec.verified(now, queued, intended, measured, msg.len() as u64);
            self.last_verified = Some(now);
            stream += msg.len() as u64;
        }
    }

    /// Nothing is owed: wait up to `d` for the next message to fall due,
    /// reading meanwhile. An end of stream now is early (the plan has more
    /// for this connection), and any byte is one that was never sent.
    fn watch_idle(&mut self, d: Duration) -> Result<(), ErrorKind> {
        self.set_read_timeout(d)?;
        match self.stream.read(&mut self.scratch) {
            Ok(0) => Err(ErrorKind::EarlyClose),
            Ok(_) => Err(ErrorKind::ExtraBytes),
            Err(e) if matches!(classify(&e), ErrorKind::Timeout) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }

    /// The end-of-run check: half-close, then read until the server's end
    /// of stream for at most `grace`. A byte now was never sent.
    fn close_check(&mut self, grace: Duration) -> Result<Ending, ErrorKind> {
        if grace.is_zero() {
            return Ok(Ending::Unchecked);
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Ending::NotSeen);
            }
            self.set_read_timeout(left)?;
            match self.stream.read(&mut self.scratch) {
                Ok(0) => return Ok(Ending::Eof),
                Ok(_) => return Err(ErrorKind::ExtraBytes),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match classify(&e) {
                    ErrorKind::Timeout => return Ok(Ending::NotSeen),
                    ErrorKind::Reset => return Ok(Ending::Reset),
                    kind => return Err(kind),
                },
            }
        }
    }
}
