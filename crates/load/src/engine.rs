//! The connection driver: many non-blocking connections per thread on mio.
//!
//! Each connection keeps one buffer holding the bytes of its in-flight
//! messages, with three offsets into the byte stream: how much was generated,
//! written and verified. Echoed bytes are compared against that buffer as they
//! arrive, however the stream happens to be split into reads.

use crate::payload::Payload;
use crate::report::{ErrorKind, Report};
use crate::LoadError;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// When each connection stops sending.
#[derive(Debug, Clone, Copy)]
pub enum StopWhen {
    /// After this many messages per connection.
    Count(u64),
    /// After this much time.
    Duration(Duration),
}

/// A load to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The echo server.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Threads that drive them (each owns connections `i` with `i % threads == t`).
    pub threads: usize,
    /// When to stop.
    pub stop: StopWhen,
    /// Messages in flight per connection (closed loop).
    pub pipeline: usize,
    /// What to send.
    pub payload: Payload,
    /// How long an echo (or a connect) may take before the connection counts as timed out.
    pub timeout: Duration,
}

impl Config {
    /// A config with the defaults for everything but the target.
    pub fn new(addr: SocketAddr) -> Self {
        Config {
            addr,
            connections: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop: StopWhen::Count(1),
            pipeline: 1,
            payload: Payload::Template("Hello from ringport".into()),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Counters one thread keeps; merged at the end.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    pub messages_sent: u64,
    pub messages_verified: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Totals {
    fn merge(&mut self, o: &Totals) {
        self.messages_sent += o.messages_sent;
        self.messages_verified += o.messages_verified;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_default() += n;
        }
    }

    fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Run the load and return what it measured.
pub fn run(config: &Config) -> Result<Report, LoadError> {
    if config.connections == 0 {
        return Err(LoadError::Config("--connections must be at least 1".into()));
    }
    if config.pipeline == 0 {
        return Err(LoadError::Config("--pipeline must be at least 1".into()));
    }
    let threads = config.threads.clamp(1, config.connections);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let labels: Vec<u64> = (0..config.connections as u64)
            .filter(|i| (*i as usize) % threads == t)
            .map(|i| i + 1)
            .collect();
        let config = config.clone();
        let barrier = barrier.clone();
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || worker(&config, labels, &barrier))
            .map_err(|e| LoadError::Io {
                context: "cannot start a load thread".into(),
                source: e,
            })?;
        handles.push(h);
    }
    barrier.wait();
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut hist = new_histogram();
    let mut first_err = None;
    for h in handles {
        match h.join().expect("load thread panicked") {
            Ok((t, h)) => {
                totals.merge(&t);
                hist.add(&h).expect("same histogram bounds");
            }
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Report::new(
        config.connections as u64,
        &totals,
        &hist,
        started.elapsed(),
    ))
}

enum Phase {
    Connecting,
    Open,
}

struct Conn {
    stream: TcpStream,
    label: u64,
    phase: Phase,
    opened: Instant,
    /// Bytes of the messages not yet verified; `buf[0]` is stream offset `base`.
    buf: Vec<u8>,
    base: u64,
    generated: u64,
    written: u64,
    verified: u64,
    /// Stream offset where each in-flight message ends, and when it was queued.
    in_flight: VecDeque<(u64, Instant)>,
    /// How many of `in_flight` are fully written.
    in_flight_written: usize,
    next_k: u64,
}

enum Outcome {
    Continue,
    Done,
    Failed(ErrorKind),
}

struct Worker<'a> {
    config: &'a Config,
    deadline: Option<Instant>,
    totals: Totals,
    hist: Histogram<u64>,
    scratch: Vec<u8>,
}

fn worker(
    config: &Config,
    labels: Vec<u64>,
    barrier: &Barrier,
) -> Result<(Totals, Histogram<u64>), LoadError> {
    let io_err = |context: &str| {
        let context = context.to_string();
        move |source| LoadError::Io { context, source }
    };
    let poll = Poll::new();
    barrier.wait();
    let mut poll = poll.map_err(io_err("cannot create a poller"))?;
    let start = Instant::now();
    let mut w = Worker {
        config,
        deadline: match config.stop {
            StopWhen::Duration(d) => Some(start + d),
            StopWhen::Count(_) => None,
        },
        totals: Totals::default(),
        hist: new_histogram(),
        scratch: vec![0u8; 64 * 1024],
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(labels.len());
    let mut live = 0usize;
    for label in labels {
        match TcpStream::connect(config.addr) {
            Ok(mut stream) => {
                poll.registry()
                    .register(
                        &mut stream,
                        Token(conns.len()),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(io_err("cannot register a connection"))?;
                conns.push(Some(Conn::new(stream, label)));
                live += 1;
            }
            Err(e) => {
                tracing::debug!("connect to {} failed: {e}", config.addr);
                w.totals.error(ErrorKind::ConnectFailed);
            }
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut last_sweep = Instant::now();
    while live > 0 {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(50))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err("poll failed")(e));
        }
        for ev in events.iter() {
            let idx = ev.token().0;
            let Some(conn) = conns[idx].as_mut() else {
                continue;
            };
            let outcome = w.drive(conn);
            if w.finish(&mut conns[idx], outcome, &poll) {
                live -= 1;
            }
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_millis(50) {
            last_sweep = now;
            for slot in conns.iter_mut() {
                let Some(conn) = slot.as_mut() else { continue };
                let outcome = if conn.timed_out(now, config.timeout) {
                    match conn.phase {
                        Phase::Connecting => Outcome::Failed(ErrorKind::ConnectFailed),
                        Phase::Open => Outcome::Failed(ErrorKind::Timeout),
                    }
                } else if matches!(conn.phase, Phase::Open) && conn.in_flight.is_empty() {
                    // A duration run that just passed its deadline.
                    w.drive(conn)
                } else {
                    Outcome::Continue
                };
                if w.finish(slot, outcome, &poll) {
                    live -= 1;
                }
            }
        }
    }
    Ok((w.totals, w.hist))
}

impl Conn {
    fn new(stream: TcpStream, label: u64) -> Self {
        Conn {
            stream,
            label,
            phase: Phase::Connecting,
            opened: Instant::now(),
            buf: Vec::new(),
            base: 0,
            generated: 0,
            written: 0,
            verified: 0,
            in_flight: VecDeque::new(),
            in_flight_written: 0,
            next_k: 1,
        }
    }

    fn timed_out(&self, now: Instant, timeout: Duration) -> bool {
        let since = match self.phase {
            Phase::Connecting => self.opened,
            Phase::Open => match self.in_flight.front() {
                Some(&(_, t)) => t,
                None => return false,
            },
        };
        now.duration_since(since) > timeout
    }
}

fn classify(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectFailed,
        _ => ErrorKind::Other,
    }
}

impl Worker<'_> {
    /// Remove a finished or failed connection. Returns true if it was removed.
    fn finish(&mut self, slot: &mut Option<Conn>, outcome: Outcome, poll: &Poll) -> bool {
        match outcome {
            Outcome::Continue => false,
            Outcome::Done | Outcome::Failed(_) => {
                if let Outcome::Failed(kind) = outcome {
                    self.totals.error(kind);
                }
                if let Some(mut conn) = slot.take() {
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
                true
            }
        }
    }

    /// Make all the progress the socket allows: connect, read and verify, queue, write.
    fn drive(&mut self, conn: &mut Conn) -> Outcome {
        if let Phase::Connecting = conn.phase {
            match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    tracing::debug!("connect failed: {e}");
                    return Outcome::Failed(ErrorKind::ConnectFailed);
                }
                Ok(None) => {}
            }
            match conn.stream.peer_addr() {
                Ok(_) => {
                    conn.phase = Phase::Open;
                    let _ = conn.stream.set_nodelay(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Outcome::Continue,
                Err(e) => {
                    tracing::debug!("connect failed: {e}");
                    return Outcome::Failed(ErrorKind::ConnectFailed);
                }
            }
        }
        // Readiness is edge-triggered: `read` goes on to WouldBlock, and
        // `write` either empties the queue or stops at WouldBlock, after which
        // a new writable edge will bring us back.
        if let Some(outcome) = self.read(conn) {
            return outcome;
        }
        self.refill(conn);
        if conn.in_flight.is_empty() {
            return Outcome::Done;
        }
        match self.write(conn) {
            Err(kind) => Outcome::Failed(kind),
            Ok(()) => Outcome::Continue,
        }
    }

    /// Read and verify until WouldBlock. `Some` ends the connection.
    fn read(&mut self, conn: &mut Conn) -> Option<Outcome> {
        loop {
            let n = match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    return Some(if conn.verified < conn.generated {
                        Outcome::Failed(ErrorKind::EarlyClose)
                    } else {
                        Outcome::Done
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Outcome::Failed(classify(&e))),
            };
            let got = &self.scratch[..n];
            let from = (conn.verified - conn.base) as usize;
            let owed = (conn.written - conn.verified) as usize;
            if n > owed || conn.buf[from..from + n] != *got {
                tracing::debug!(
                    "connection {}: echo mismatch at stream offset {}",
                    conn.label,
                    conn.verified
                );
                return Some(Outcome::Failed(ErrorKind::Mismatch));
            }
            conn.verified += n as u64;
            self.totals.bytes_received += n as u64;
            let now = Instant::now();
            while let Some(&(end, queued)) = conn.in_flight.front() {
                if end > conn.verified {
                    break;
                }
                conn.in_flight.pop_front();
                conn.in_flight_written -= 1;
                self.totals.messages_verified += 1;
                let us = now.duration_since(queued).as_micros().max(1) as u64;
                self.hist.saturating_record(us);
            }
            // Drop verified bytes once they are a large, leading part of the buffer.
            let dead = (conn.verified - conn.base) as usize;
            if dead >= 64 * 1024 && dead * 2 >= conn.buf.len() {
                conn.buf.drain(..dead);
                conn.base = conn.verified;
            }
        }
    }

    /// Queue new messages up to the pipeline depth, unless the run is over.
    fn refill(&mut self, conn: &mut Conn) {
        let now = Instant::now();
        while conn.in_flight.len() < self.config.pipeline {
            let more = match self.config.stop {
                StopWhen::Count(n) => conn.next_k <= n,
                // Not `is_none_or`, which is newer than the MSRV.
                StopWhen::Duration(_) => match self.deadline {
                    Some(d) => now < d,
                    None => true,
                },
            };
            if !more {
                break;
            }
            self.config
                .payload
                .write_message(conn.label, conn.next_k, &mut conn.buf);
            conn.next_k += 1;
            conn.generated = conn.base + conn.buf.len() as u64;
            conn.in_flight.push_back((conn.generated, now));
        }
    }

    /// Write until everything queued is out (true) or the socket is full (false).
    fn write(&mut self, conn: &mut Conn) -> Result<(), ErrorKind> {
        while conn.written < conn.generated {
            let from = (conn.written - conn.base) as usize;
            match conn.stream.write(&conn.buf[from..]) {
                Ok(0) => return Err(ErrorKind::Reset),
                Ok(n) => {
                    conn.written += n as u64;
                    self.totals.bytes_sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify(&e)),
            }
        }
        while conn.in_flight_written < conn.in_flight.len()
            && conn.in_flight[conn.in_flight_written].0 <= conn.written
        {
            conn.in_flight_written += 1;
            self.totals.messages_sent += 1;
        }
        Ok(())
    }
}
