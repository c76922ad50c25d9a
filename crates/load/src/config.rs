//! What a run is asked to do: the [`Config`] that `stress` and `bench` fill in.
//!
//! Every field is public and [`Config::new`] gives the defaults, so a caller
//! sets only what it cares about. New fields are only ever added.

use crate::hdrlog::HdrLog;
use crate::outcome::IntervalStat;
use crate::payload::{Payload, MAX_MESSAGE_SIZE};
use crate::profile::Rate;
use crate::progress::Progress;
use crate::LoadError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// When each connection stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopWhen {
    /// After this many measured messages per connection (warm-up messages come on top).
    Count(u64),
    /// After this much measured time (the warm-up comes on top).
    Duration(Duration),
}

/// Which driver runs the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Many non-blocking connections per thread on a readiness loop (mio).
    /// The load generator proper.
    #[default]
    Events,
    /// The baseline: one OS thread per connection, blocking `write_all` then
    /// `read`. It exists to be measured against, not to be used for load;
    /// it supports a pipeline of 1 and messages of at most
    /// [`THREADS_MAX_MESSAGE`] bytes.
    Threads,
    /// Many connections per thread on a completion port (io_uring, Linux):
    /// receives are multishot into the port's provided buffers and verified
    /// in place, sends and receives of all the thread's connections are
    /// submitted in one batch per wait. Where the port is unavailable the
    /// run is refused before it starts.
    Completion,
}

/// How long the events engine polls without blocking before it sleeps, in a closed loop.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

/// The most connections one run opens: about what one process's
/// descriptors and ephemeral ports allow, and well past what the engines
/// are built for.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// The open-loop rates a run takes, in messages per second. Below the
/// minimum a schedule of a few messages spans days; above the maximum no
/// single process paces messages (split the load over several `stress`).
pub const MIN_RATE: f64 = 0.001;
/// See [`MIN_RATE`].
pub const MAX_RATE: f64 = 1e8;

/// The longest an open-loop schedule may run.
const MAX_SCHEDULE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The furthest ahead a start time may be: a day. Further than that is
/// more likely a typo than a plan, and the connections would idle all along.
pub const MAX_START_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// The most message bytes a run may hold in flight, all connections together.
pub const MAX_IN_FLIGHT: u64 = 4 << 30;

/// How long each connection waits for the server's end of stream after its
/// half-close, by default: long enough for servers that close a moment after
/// the client does (socat waits half a second), short enough not to matter.
pub const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The largest message the blocking baseline takes: it writes a whole
/// message before reading any echo, which deadlocks once a message outgrows
/// the socket buffers on both sides.
pub const THREADS_MAX_MESSAGE: usize = 64 * 1024;

impl Engine {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Events => "events",
            Engine::Threads => "threads",
            Engine::Completion => "completion",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "events" => Ok(Engine::Events),
            "threads" => Ok(Engine::Threads),
            "completion" => Ok(Engine::Completion),
            _ => Err(format!(
                "unknown engine '{s}'; valid engines: events, threads, completion"
            )),
        }
    }
}

/// Called with each interval of the series as soon as every thread has
/// reported it (from the thread that called [`run`](crate::run)).
#[derive(Clone)]
pub struct IntervalSink(pub Arc<dyn Fn(&IntervalStat) + Send + Sync>);

impl std::fmt::Debug for IntervalSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntervalSink(..)")
    }
}

/// A load to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The echo server.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Threads that drive them (each owns connections `i` with `i % threads == t`).
    /// Ignored by [`Engine::Threads`], which has one per connection.
    pub threads: usize,
    /// When to stop.
    pub stop: StopWhen,
    /// Messages in flight per connection. In a closed loop the connection
    /// keeps exactly this many outstanding; in an open loop it is the most
    /// that may be outstanding, and a message due while the pipeline is full
    /// waits (its corrected latency keeps counting from when it was due).
    pub pipeline: usize,
    /// What to send.
    pub payload: Payload,
    /// How long an echo (or a connect) may take before the connection counts as timed out.
    pub timeout: Duration,
    /// Which driver runs the connections.
    pub engine: Engine,
    /// Open loop: total messages per second over all connections, fixed or
    /// changing over the run (a ramp, steps). `None` is a closed loop, where
    /// each echo triggers the next message.
    pub rate: Option<Rate>,
    /// Run this long before measuring; nothing sent in it is counted, except errors.
    pub warmup: Duration,
    /// The latency percentiles to report besides p50, p90, p99, p99.9 and max,
    /// each in (0, 100].
    pub percentiles: Vec<f64>,
    /// Split the measured part into intervals this long and report each one.
    pub interval: Option<Duration>,
    /// Bind each connection to one of these local addresses, in turn, before
    /// connecting: more source addresses, more ephemeral ports.
    pub source_ips: Vec<IpAddr>,
    /// At most this many connects per second while the connections open.
    pub connect_rate: Option<f64>,
    /// Events engine: before blocking for readiness, poll without blocking
    /// for up to this long. Keeps the thread runnable while echoes are
    /// microseconds away, which avoids a wake-up per batch (and, on a CPU
    /// shared with other work, a scheduler slice per wake-up) at the price
    /// of CPU spent spinning. `None` (the default) picks: 50 µs in a closed
    /// loop, where the thread is busy anyway, and no spinning in an open
    /// loop, where it would burn a core between scheduled messages.
    /// `Some(Duration::ZERO)` never spins.
    pub busy_poll: Option<Duration>,
    /// The end-of-run check: after its last echo each connection shuts its
    /// write side and reads until the server's end of stream, for at most
    /// this long. A byte that arrives then is an `extra_bytes` error; a
    /// server that does not close in time is only noted (some echo servers
    /// never close). `Duration::ZERO` skips the check.
    pub close_grace: Duration,
    /// Churn: close each connection after this many verified messages and
    /// open a new one in its place (the close check above applies to each),
    /// so the run measures connections per second and connect latency
    /// besides the echoes. `None`: every connection stays open for the run.
    pub per_connection: Option<u64>,
    /// Counters a caller may read while the run goes on (for a progress bar).
    pub progress: Option<Arc<Progress>>,
    /// Ends the run early when triggered (Ctrl-C in `ringport stress`);
    /// the report then says `interrupted`.
    pub interrupt: crate::Interrupt,
    /// Receives each interval as it completes (requires `interval`).
    pub on_interval: Option<IntervalSink>,
    /// Write an HdrHistogram interval log here: one interval per `interval`,
    /// or per [`DEFAULT_LOG_INTERVAL`](crate::hdrlog::DEFAULT_LOG_INTERVAL).
    pub hdr_log: Option<Arc<HdrLog>>,
    /// Hold the start line until this wall-clock time: the connections
    /// open at once, then wait; the warm-up (and the clock) start at this
    /// time, or as soon as the connections are open if that is later.
    /// At most [`MAX_START_AHEAD`] ahead.
    pub start_at: Option<SystemTime>,
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
            engine: Engine::Events,
            rate: None,
            warmup: Duration::ZERO,
            percentiles: Vec::new(),
            interval: None,
            source_ips: Vec::new(),
            connect_rate: None,
            busy_poll: None,
            close_grace: DEFAULT_CLOSE_GRACE,
            per_connection: None,
            progress: None,
            interrupt: crate::Interrupt::new(),
            on_interval: None,
            hdr_log: None,
            start_at: None,
        }
    }

    /// The busy-poll window in effect (see [`Config::busy_poll`]).
    pub fn busy_poll_window(&self) -> Duration {
        match self.busy_poll {
            Some(d) => d,
            None if self.rate.is_some() => Duration::ZERO,
            None => DEFAULT_BUSY_POLL,
        }
    }

    /// The length of the series' intervals, if the run keeps a series: the
    /// interval asked for; else, for the HdrHistogram log or a rate that
    /// changes (a ramp or steps, whose series shows each part), a second,
    /// or a step if a second does not divide it.
    pub fn series_interval(&self) -> Option<Duration> {
        let default = crate::hdrlog::DEFAULT_LOG_INTERVAL;
        self.interval.or(match &self.rate {
            Some(Rate::Steps { each, .. }) if each.as_nanos() % default.as_nanos() != 0 => {
                Some(*each)
            }
            Some(Rate::Steps { .. } | Rate::Ramp { .. }) => Some(default),
            _ => self.hdr_log.as_ref().map(|_| default),
        })
    }

    /// Whether the report keeps the series: with `--interval`, and for a
    /// rate that changes (a ramp or steps), whose series shows each part.
    pub fn reports_series(&self) -> bool {
        self.interval.is_some() || self.rate.as_ref().is_some_and(|r| r.fixed().is_none())
    }

    /// Refuse what cannot be run, with a message that names the flag. The
    /// checks run in this order, and the first that fails is the one reported.
    pub fn validate(&self) -> Result<(), LoadError> {
        self.check_counts()?;
        self.check_rate()?;
        self.check_in_flight()?;
        self.check_times()?;
        self.check_percentiles()?;
        self.check_size()?;
        self.check_addresses()?;
        self.check_engine()
    }

    /// Check the number of connections, and of messages per connection.
    fn check_counts(&self) -> Result<(), LoadError> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!(
                "--connections {} is out of range: write 1 to {MAX_CONNECTIONS} (one process cannot hold more sockets)",
                self.connections
            ));
        }
        if let StopWhen::Count(n) = self.stop {
            if n == 0 {
                return bad("--count must be at least 1 message per connection".into());
            }
            if n.checked_mul(self.connections as u64).is_none() {
                return bad(format!(
                    "--count {n} × --connections {} does not fit in a 64-bit count of messages",
                    self.connections
                ));
            }
        }
        Ok(())
    }

    /// Check an open loop's rate, and whether its schedule ends within a year.
    fn check_rate(&self) -> Result<(), LoadError> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        for r in rate.rates() {
            if !(MIN_RATE..=MAX_RATE).contains(&r) {
                return bad(format!(
                    "--rate {r} is out of range: write {MIN_RATE} to {MAX_RATE:e} messages per second"
                ));
            }
        }
        let flag = match rate {
            Rate::Fixed(r) => {
                // The last message's place in the schedule must be a time
                // this run can reach.
                let slots = match self.stop {
                    StopWhen::Count(n) => n as f64 * self.connections as f64,
                    StopWhen::Duration(d) => d.as_secs_f64() * r,
                } + self.warmup.as_secs_f64() * r;
                if slots / r > MAX_SCHEDULE.as_secs_f64() {
                    return bad(format!(
                        "--rate {r} with these counts would take {:.0} days: at most a year; raise --rate or lower --count",
                        slots / r / 86_400.0
                    ));
                }
                return Ok(());
            }
            Rate::Ramp { .. } => "--ramp",
            Rate::Steps { .. } => "--step",
        };
        let length = rate.length().unwrap_or_default();
        if length.is_zero() || length > MAX_SCHEDULE {
            return bad(format!("{flag} must be longer than 0 and at most a year"));
        }
        match self.stop {
            StopWhen::Count(_) => {
                return bad(format!(
                    "{flag} runs for a time, not a count: leave out --count (the run lasts the {flag}, or --duration if longer)"
                ))
            }
            StopWhen::Duration(d) if d < length => {
                return bad(format!(
                    "--duration {} is shorter than the {flag} ({}): the rates after it would never run; leave out --duration",
                    humantime::format_duration(d),
                    humantime::format_duration(length)
                ))
            }
            StopWhen::Duration(d) if d > MAX_SCHEDULE => {
                return bad("--duration must be at most a year".into())
            }
            StopWhen::Duration(_) => {}
        }
        if let Rate::Steps { each, .. } = rate {
            // Each step is at least one interval of the series.
            if *each < Duration::from_millis(10) {
                return bad("--step must be at least 10ms".into());
            }
        }
        if let (Rate::Steps { each, .. }, Some(i)) = (rate, self.interval) {
            // (A zero interval is refused below, by check_times.)
            if !i.is_zero() && each.as_nanos() % i.as_nanos() != 0 {
                return bad(format!(
                    "--interval {} does not divide --step {}: an interval would mix two rates; choose one that does",
                    humantime::format_duration(i),
                    humantime::format_duration(*each)
                ));
            }
        }
        Ok(())
    }

    /// Messages one connection may have in flight at once.
    fn in_flight_per_connection(&self) -> u64 {
        match self.stop {
            StopWhen::Count(n) => (self.pipeline as u64).min(n),
            StopWhen::Duration(_) => self.pipeline as u64,
        }
    }

    /// The bytes a connection's send buffer holds as soon as it starts: a
    /// closed loop fills its pipeline at once, an open loop sends one message
    /// and more only when the server falls behind. The engine touches this
    /// much memory before the start line, so that the load's first touch of
    /// its buffers (a page fault per 4 KiB, and on a VM that returns freed
    /// memory to its host, a host fault too) is not paid inside the
    /// measured window, where it would be charged to the server's echoes.
    pub(crate) fn send_buffer_at_start(&self) -> usize {
        let messages = match self.rate {
            Some(_) => 1,
            None => self.in_flight_per_connection(),
        };
        // At most MAX_IN_FLIGHT over all connections (checked up front).
        self.payload.max_len().saturating_mul(messages as usize)
    }

    /// Check the pipeline, and the bytes all connections may have in flight at once.
    fn check_in_flight(&self) -> Result<(), LoadError> {
        let per_conn = self.in_flight_per_connection();
        let in_flight = (self.payload.max_len() as f64) * per_conn as f64 * self.connections as f64;
        if in_flight > MAX_IN_FLIGHT as f64 {
            return bad(format!(
                "--pipeline {} × message size {} × --connections {} would hold up to {:.1} GiB in flight: at most {} GiB; lower one of them",
                self.pipeline,
                self.payload.max_len(),
                self.connections,
                in_flight / (1u64 << 30) as f64,
                MAX_IN_FLIGHT >> 30
            ));
        }
        if self.pipeline == 0 {
            return bad("--pipeline must be at least 1".into());
        }
        Ok(())
    }

    /// Check the connect rate, the duration and the interval between reports.
    fn check_times(&self) -> Result<(), LoadError> {
        if let Some(r) = self.connect_rate {
            if !(r.is_finite()
                && r >= MIN_RATE
                && self.connections as f64 / r <= MAX_SCHEDULE.as_secs_f64())
            {
                return bad(format!(
                    "--connect-rate must be a number of connects per second that opens the connections within a year, such as 1000, not {r}"
                ));
            }
        }
        if let StopWhen::Duration(d) = self.stop {
            if d.is_zero() {
                return bad("--duration must be longer than 0".into());
            }
        }
        if self.interval.is_some_and(|i| i < Duration::from_millis(10)) {
            return bad("--interval must be at least 10ms".into());
        }
        if let Some(at) = self.start_at {
            let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
            if ahead > MAX_START_AHEAD {
                return bad(format!(
                    "--start-at is {:.0} hours ahead: at most 24 hours",
                    ahead.as_secs_f64() / 3600.0
                ));
            }
        }
        Ok(())
    }

    /// Check the percentiles asked for.
    fn check_percentiles(&self) -> Result<(), LoadError> {
        for &p in &self.percentiles {
            if !(p > 0.0 && p <= 100.0) {
                return bad(format!(
                    "percentile {p} is out of range: each must be above 0 and at most 100"
                ));
            }
        }
        Ok(())
    }

    /// Check the size of a sized payload's messages.
    fn check_size(&self) -> Result<(), LoadError> {
        if let Payload::Sized { len, .. } = self.payload {
            if len == 0 || len > MAX_MESSAGE_SIZE {
                return bad(format!(
                    "--size {len} is out of range: messages are 1 byte to 16 MiB ({MAX_MESSAGE_SIZE} bytes)"
                ));
            }
        }
        Ok(())
    }

    /// Check that the server has a port to connect to, and that the source
    /// addresses are this machine's and of the server's IP version.
    fn check_addresses(&self) -> Result<(), LoadError> {
        if self.addr.port() == 0 {
            return bad(format!(
                "{}: port 0 only asks a listener for a free port; nothing can connect to it (write the port the server printed)",
                self.addr
            ));
        }
        if let Some(ip) = self
            .source_ips
            .iter()
            .find(|ip| ip.is_ipv4() != self.addr.is_ipv4())
        {
            return bad(format!(
                "source address {ip} and server {} are not the same IP version",
                self.addr
            ));
        }
        for ip in &self.source_ips {
            // Binding to it is what each connection will do: a run would
            // only fail every connect with `connect_failed` otherwise.
            if let Err(e) = std::net::TcpListener::bind((*ip, 0)) {
                return bad(format!(
                    "source address {ip} cannot be used here ({e}): name addresses of this machine, such as 127.0.0.2"
                ));
            }
        }
        Ok(())
    }

    /// Check what the threads engine cannot do: pipelining, and messages
    /// too large to write whole before reading.
    fn check_engine(&self) -> Result<(), LoadError> {
        if self.per_connection == Some(0) {
            return bad("--per-connection 0: a connection carries at least 1 message".into());
        }
        if self.engine == Engine::Completion {
            if let Err(why) = crate::completion::available() {
                return bad(format!("{why}; use --engine events"));
            }
        }
        if self.engine == Engine::Threads {
            if self.per_connection.is_some() {
                return bad(
                    "--per-connection runs on the events engine: --engine threads keeps one connection per thread"
                        .into(),
                );
            }
            if self.pipeline != 1 {
                return bad(
                    "--engine threads is the blocking baseline and supports only --pipeline 1"
                        .into(),
                );
            }
            if self.payload.max_len() > THREADS_MAX_MESSAGE {
                return bad(format!(
                    "--engine threads writes a whole message before reading, so messages must be at most {THREADS_MAX_MESSAGE} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// A configuration refused, and why.
fn bad(why: String) -> Result<(), LoadError> {
    Err(LoadError::Config(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new("127.0.0.1:5150".parse().unwrap())
    }

    #[test]
    fn busy_poll_spins_only_in_a_closed_loop_unless_asked() {
        let mut c = config();
        assert_eq!(c.busy_poll_window(), DEFAULT_BUSY_POLL);
        c.rate = Some(Rate::Fixed(1000.0));
        assert_eq!(c.busy_poll_window(), Duration::ZERO);
        c.busy_poll = Some(Duration::from_micros(20));
        assert_eq!(c.busy_poll_window(), Duration::from_micros(20));
    }

    #[test]
    fn the_send_buffer_touched_before_the_start_is_what_the_first_turn_fills() {
        let mut c = config();
        c.payload = Payload::Sized {
            len: 1 << 20,
            seed: 1,
        };
        c.pipeline = 4;
        c.stop = StopWhen::Duration(Duration::from_secs(1));
        // A closed loop fills its pipeline at once.
        assert_eq!(c.send_buffer_at_start(), 4 << 20);
        // ... but never more messages than it will send.
        c.stop = StopWhen::Count(2);
        assert_eq!(c.send_buffer_at_start(), 2 << 20);
        // An open loop sends one, and more only when the server falls behind.
        c.rate = Some(Rate::Fixed(100.0));
        assert_eq!(c.send_buffer_at_start(), 1 << 20);
    }

    #[test]
    fn validation_names_the_flag() {
        let check = |f: &dyn Fn(&mut Config), flag: &str| {
            let mut c = config();
            f(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        };
        check(&|c| c.connections = 0, "--connections");
        check(&|c| c.pipeline = 0, "--pipeline");
        check(&|c| c.rate = Some(Rate::Fixed(0.0)), "--rate");
        let steps = || Rate::Steps {
            rates: vec![100.0, 200.0],
            each: Duration::from_secs(2),
        };
        check(&|c| c.rate = Some(steps()), "--count");
        check(
            &|c| {
                c.rate = Some(steps());
                c.stop = StopWhen::Duration(Duration::from_secs(3));
            },
            "--duration",
        );
        check(
            &|c| {
                c.rate = Some(steps());
                c.stop = StopWhen::Duration(Duration::from_secs(4));
                c.interval = Some(Duration::from_millis(300));
            },
            "--interval",
        );
        check(
            &|c| {
                c.rate = Some(steps());
                c.stop = StopWhen::Duration(Duration::from_secs(4));
                c.interval = Some(Duration::ZERO);
            },
            "--interval",
        );
        check(
            &|c| {
                c.rate = Some(Rate::Ramp {
                    from: 10.0,
                    to: 1e9,
                    over: Duration::from_secs(1),
                });
                c.stop = StopWhen::Duration(Duration::from_secs(1));
            },
            "--rate 1000000000",
        );
        check(
            &|c| {
                c.payload = Payload::Sized {
                    len: MAX_MESSAGE_SIZE + 1,
                    seed: 0,
                }
            },
            "16 MiB",
        );
        check(
            &|c| c.payload = Payload::Sized { len: 0, seed: 0 },
            "--size",
        );
        check(&|c| c.percentiles = vec![100.5], "percentile");
        check(
            &|c| {
                c.engine = Engine::Threads;
                c.pipeline = 2;
            },
            "--engine threads",
        );
        check(
            &|c| c.source_ips = vec!["::1".parse().unwrap()],
            "IP version",
        );
        assert!(config().validate().is_ok());
    }
}
