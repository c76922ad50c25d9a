//! One run: start a server, warm it up, measure one load, stop it.
//!
//! Warm-up is a discarded load of the same shape (connections, size) for the
//! warm-up time, on the same server process, before the measured one starts:
//! the load engine has no warm-up phase of its own yet. The server's CPU time
//! and the load's are sampled right before and right after the measured load,
//! so the window covers exactly the measured connections, their setup and
//! their teardown included. The context switches and read/write calls of
//! the server's threads are read just outside that window (reading a file
//! per thread takes a while, and the load's CPU must not pay for it), while
//! the server is idle between loads.

use crate::matrix::{Cell, Target};
use crate::server::{Running, Stopped};
use crate::{sys, BenchError, Plan};
use ringport_load::{Config, Payload, StopWhen};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one run measured. Figures the OS cannot provide are `None`.
///
/// The figures a row reports are read from here by their entries in
/// `figure.rs`: a new one is a field here, measured in [`run_one`], and an
/// entry there; the counts and flags below them are not figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Verified messages per second.
    pub msgs_per_sec: f64,
    /// Verified echo bytes per second, in 10^6 bytes.
    pub mb_per_sec: f64,
    /// Median latency, microseconds; `None` when no echo came back.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, microseconds; `None` when no echo came back.
    pub p99_us: Option<f64>,
    /// Server CPU seconds (user + system) per million verified messages.
    pub server_cpu_s_per_million: Option<f64>,
    /// The user-mode part of it.
    pub server_user_s_per_million: Option<f64>,
    /// The kernel part of it.
    pub server_sys_s_per_million: Option<f64>,
    /// Busy seconds of the server's pinned CPUs (all but idle and iowait,
    /// whoever ran there) per million messages; io_uring's waits count as
    /// iowait, so this shows what the process figures may hide.
    pub server_cpus_busy_s_per_million: Option<f64>,
    /// Server peak resident memory, KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// Voluntary context switches of the server tree's threads (each a
    /// block: to wait for I/O, a lock or a wake-up) per verified message.
    pub server_voluntary_switches_per_msg: Option<f64>,
    /// Involuntary ones (the scheduler took the CPU away) per message.
    pub server_involuntary_switches_per_msg: Option<f64>,
    /// Threads of the server came and went in the window, so the two switch
    /// figures are lower bounds ([`sys::Activity::switches_lower_bound`]).
    pub switches_lower_bound: bool,
    /// The server tree's read/write-family calls (`syscr + syscw` of
    /// `/proc/PID/io`: `read`, `write`, their vectored and positioned forms;
    /// not `recv`/`send` and kin, `epoll_wait`, `accept`, `io_uring_enter`,
    /// nor what an io_uring submits) per message; `None` where the server's
    /// `/proc/PID/io` cannot be read (another user's process).
    pub server_rw_calls_per_msg: Option<f64>,
    /// A process of the server's tree ended in the window, so its calls
    /// since the start are lost: the figure is a lower bound.
    pub rw_calls_lower_bound: bool,
    /// Churn: connections carried, closed and replaced per second.
    pub connections_per_sec: Option<f64>,
    /// Churn: server CPU microseconds (user + system) per connection
    /// replaced, its messages included.
    pub server_cpu_us_per_connection: Option<f64>,
    /// The load's CPU time as a percentage of its CPUs' capacity over the window.
    pub client_cpu_pct: Option<f64>,
    /// Time the hypervisor took from the pinned CPUs (server's and load's)
    /// during the run, as a percentage of their capacity: 0 on bare metal.
    pub host_steal_pct: Option<f64>,
    /// Interference: CPU time the pinned CPUs gave to anything but this
    /// server and this load (other processes, and the hypervisor's steal),
    /// as a percentage of their capacity over the run.
    pub interference_pct: Option<f64>,
    /// Runs made to get this sample: 1, plus the retries of disturbed runs.
    pub attempts: usize,
    /// Still above the interference threshold after every retry.
    pub disturbed: bool,
    /// The measured window began at under half the rate of the rest of it.
    pub slow_start: Option<SlowStart>,
    /// Open loop: the load sent late by more than the latency it measured
    /// (the load report's `generator_late`): its p99 lateness and the
    /// median latency from send, in microseconds.
    pub generator_late: Option<(u64, u64)>,
    /// How evenly the measured run's connections shared it: each one's
    /// verified msgs/s, summed up (the load report's `per_connection_rate`).
    pub per_connection_rate: Option<ringport_load::Spread>,
    /// Failed connections (mismatches included).
    pub errors: u64,
    /// Connections whose echo differed from what was sent.
    pub mismatches: u64,
    /// The server broke its contract: it exited during the run, or ignored
    /// SIGTERM. Flags the cell even when every echo was right.
    pub server_failed: bool,
    /// Something a reader must know about this run, such as a server that
    /// had to be killed.
    pub note: Option<String>,
}

/// A measured run that began slowly: its first interval (one
/// [`STEADY_INTERVALS`]th of the window) verified messages at under
/// [`SLOW_START_RATIO`] of the median rate of the later intervals. The
/// warm-up did not bring it to a steady state, so its msgs/s and p99 mix a
/// start with the steady run that the cell is meant to show. Seen on a VM
/// that hands freed memory back to its host (docs/BENCHMARKS.md): the run
/// after another server's spent its first ~0.75 s at a seventh of its
/// rate, at four times its later p99.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    /// Length of the first interval, seconds.
    pub first_s: f64,
    /// Its msgs/s over the median msgs/s of the later intervals.
    pub rate_ratio: f64,
    /// Its p99, microseconds (`None`: it verified no message).
    pub first_p99_us: Option<u64>,
    /// The median p99 of the later intervals, microseconds.
    pub later_p99_us: Option<u64>,
}

/// Intervals the measured window is cut into to tell a slow start (runs of
/// 0.6 s and more).
pub(crate) const STEADY_INTERVALS: u32 = 6;
/// Shorter intervals are not judged: a run this short is mostly its own
/// start (threads, connects, first touches), whatever the server does.
const STEADY_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// A first interval below this share of the later rate is a slow start.
/// Between steady intervals on this noisy VM the rate moves by 20–30%.
pub(crate) const SLOW_START_RATIO: f64 = 0.5;

/// Whether the series of a measured run shows a slow start. Only when its
/// median latency is under a fifth of an interval: a closed loop's first
/// interval loses about one latency to filling the pipeline, which is no
/// slow start. `None` when steady, or when it cannot tell.
fn slow_start(
    series: &[ringport_load::IntervalStat],
    interval: Duration,
    p50_us: u64,
) -> Option<SlowStart> {
    let interval_s = interval.as_secs_f64();
    if interval_s <= 0.0 || p50_us as f64 * 5.0 > interval_s * 1e6 {
        return None;
    }
    let (first, rest) = series.split_first()?;
    // The last interval may be a sliver past the window's end.
    let later: Vec<&ringport_load::IntervalStat> = rest
        .iter()
        .zip(series)
        .filter(|(s, before)| s.t - before.t >= interval_s * 0.5)
        .map(|(s, _)| s)
        .collect();
    if later.len() < 2 {
        return None;
    }
    let rates: Vec<f64> = later.iter().map(|s| s.msgs_per_sec).collect();
    let later_rate = crate::order_stats::median(&rates).filter(|&r| r > 0.0)?;
    let rate_ratio = first.msgs_per_sec / later_rate;
    if rate_ratio >= SLOW_START_RATIO {
        return None;
    }
    let mut p99s: Vec<u64> = later.iter().filter_map(|s| s.p99_us).collect();
    p99s.sort_unstable();
    Some(SlowStart {
        first_s: first.t,
        rate_ratio,
        first_p99_us: first.p99_us,
        later_p99_us: p99s.get(p99s.len().saturating_sub(1) / 2).copied(),
    })
}

/// Loopback source addresses a run connects from, each with its own
/// ephemeral port range.
const LOAD_SOURCES: u8 = 32;
/// Runs started so far by this process, so that each run connects from
/// addresses no run before it used.
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

/// Seed of the message bytes. Fixed, so every target gets the same bytes.
const PAYLOAD_SEED: u64 = 0x7269_6E67_706F_7274;

/// The load for one cell: `duration` long, the plan's threads and timeout.
pub(crate) fn load_config(
    plan: &Plan,
    target: &Target,
    cell: Cell,
    addr: std::net::SocketAddr,
    duration: Duration,
) -> Config {
    let mut c = Config::new(addr);
    c.connections = cell.connections;
    c.threads = plan.cpus.load_threads;
    c.stop = StopWhen::Duration(duration);
    c.rate = plan.rate.map(ringport_load::Rate::Fixed);
    c.per_connection = cell.per_connection;
    if addr.ip().is_loopback() && addr.is_ipv4() {
        // Every run, warm-up and measured alike, connects from loopback
        // addresses no earlier run used, so that none starts from the state
        // another run left in the kernel:
        // - the TCP metrics cache, keyed by source and destination address,
        //   from which a new connection takes its first RTT estimate,
        //   congestion window and reordering (`ip tcp_metrics`);
        // - with churn, the TIME_WAIT sockets of closed connections: from one
        //   source address `connect` searches a port range full of them, and
        //   that search, not the server, limits churn (~14k connections/s,
        //   45% of the load's CPU in `__inet_hash_connect`).
        if let Some(ips) =
            sys::loopback_sources(NEXT_RUN.fetch_add(1, Ordering::Relaxed), LOAD_SOURCES)
        {
            c.source_ips = ips;
        }
    }
    // No busy polling: the load has CPUs of its own, and a spinning load
    // would read ~100% CPU and hide whether it is really the bottleneck.
    c.busy_poll = Some(Duration::ZERO);
    c.payload = Payload::Sized {
        len: cell.size,
        seed: PAYLOAD_SEED,
    };
    // A server that serves one client at a time keeps every other connection
    // waiting in the backlog, its first message unanswered, until the clients
    // before it have finished: up to the whole duration. The echo timeout is
    // stretched by the duration so those connections are served late, not
    // counted as failures; the run still ends within duration + timeout.
    c.timeout = if target.serialized() {
        plan.timeout + duration
    } else {
        plan.timeout
    };
    c
}

/// The counters read right before and right after the measured load.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at: Instant,
    /// The server's process tree.
    server: Option<sys::CpuTimes>,
    /// Busy time of the server's pinned CPUs, whoever ran there.
    server_cpus_busy: Option<f64>,
    /// This process (the load).
    client: Option<f64>,
    /// Steal and busy time of every pinned CPU, both sides.
    steal: Option<f64>,
    pinned_busy: Option<f64>,
}

impl Counters {
    /// `capped`: the server runs under a CPU quota, so other work is what
    /// tasks did ([`sys::cpus_task_seconds`]), not interrupts as well.
    fn read(pid: u32, server_cpus: &[usize], pinned: &[usize], capped: bool) -> Counters {
        Counters {
            at: Instant::now(),
            server: sys::tree_cpu_split(pid),
            server_cpus_busy: (!server_cpus.is_empty())
                .then(|| sys::cpus_busy_seconds(server_cpus))
                .flatten(),
            client: sys::self_cpu_seconds(),
            steal: sys::cpus_steal_seconds(pinned),
            pinned_busy: if capped {
                sys::cpus_task_seconds(pinned)
            } else {
                sys::cpus_busy_seconds(pinned)
            },
        }
    }
}

/// Run `target` under `cell` once.
pub fn run_one(plan: &Plan, target: &Target, cell: Cell) -> Result<Sample, BenchError> {
    let server = Running::start(
        &plan.exe,
        target,
        plan.cpus.server_workers,
        plan.cpus.server.as_ref(),
        plan.server_cpu_cap.as_deref(),
        plan.ready_timeout,
    )?;
    let load_err = |source| BenchError::Load {
        target: target.name().to_string(),
        source,
    };
    // The warm-up's figures are discarded, its verification is not: a wrong
    // echo is a broken server whenever it happens.
    let (mut warm_errors, mut warm_mismatches) = (0, 0);
    if !plan.warmup.is_zero() {
        let warm = ringport_load::run(&load_config(plan, target, cell, server.addr, plan.warmup))
            .map_err(load_err)?;
        (warm_errors, warm_mismatches) = (warm.errors, warm.mismatches);
    }
    let pid = server.pid();
    let server_cpus: Vec<usize> = plan
        .cpus
        .server
        .as_ref()
        .map_or_else(Vec::new, |c| c.cpus().to_vec());
    let pinned = plan.cpus.pinned();
    let capped = plan.server_cpu_cap.is_some();
    let mut measured = load_config(plan, target, cell, server.addr, plan.duration);
    let interval = plan.duration / STEADY_INTERVALS;
    measured.interval = (interval >= STEADY_MIN_INTERVAL).then_some(interval);
    let readings = Arc::new(Mutex::new(Vec::new()));
    measured.on_interval = Some(interval_readings(pid, readings.clone()));
    settle_threads(pid);
    let activity_before = sys::tree_activity(pid);
    let before = Counters::read(pid, &server_cpus, &pinned, capped);
    let report = ringport_load::run(&measured).map_err(load_err)?;
    let after = Counters::read(pid, &server_cpus, &pinned, capped);
    let readings = std::mem::take(&mut *readings.lock().unwrap_or_else(|p| p.into_inner()));
    let activity = activity_before.and_then(|before| {
        let whole = sys::tree_activity(pid)?.since(&before);
        Some(switches_while_open(
            whole,
            report.messages_verified,
            &before,
            &readings,
        ))
    });
    let server_peak_rss_kib = sys::tree_peak_rss_kib(pid);

    let mut notes = Vec::new();
    if report.errors > 0 {
        let kinds: Vec<String> = report
            .errors_by_kind
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(kind, n)| format!("{n} {}", kind.name()))
            .collect();
        // The kinds are what the row's error count does not say.
        notes.push(format!("errors by kind: {}", kinds.join(", ")));
    }
    if warm_errors > 0 {
        notes.push(format!(
            "warm-up: {warm_errors} connection errors, {warm_mismatches} mismatches"
        ));
    }
    let server_failed = match server.stop(plan.stop_timeout) {
        Stopped::Exited {
            early: true,
            status,
        } => {
            notes.push(format!("the server exited during the run ({status})"));
            true
        }
        Stopped::Exited { .. } => false,
        Stopped::Killed => {
            notes.push(format!(
                "the server ignored SIGTERM for {:?} and was killed",
                plan.stop_timeout
            ));
            true
        }
    };
    let client_cpus_n = plan
        .cpus
        .client
        .as_ref()
        .map_or(plan.cpus.load_threads, |c| c.len())
        .max(1);
    let mut sample = figures(&report, &before, &after, client_cpus_n, pinned.len());
    if let Some((a, switch_messages)) = activity {
        let per = |n: u64, messages: u64| (messages > 0).then(|| n as f64 / messages as f64);
        sample.server_voluntary_switches_per_msg = per(a.switches.voluntary, switch_messages);
        sample.server_involuntary_switches_per_msg = per(a.switches.involuntary, switch_messages);
        sample.switches_lower_bound = a.switches_lower_bound;
        sample.server_rw_calls_per_msg = a.calls.and_then(|n| per(n, report.messages_verified));
        sample.rw_calls_lower_bound = a.calls_lower_bound;
    }
    sample.server_peak_rss_kib = server_peak_rss_kib;
    sample.errors = report.errors + warm_errors;
    sample.mismatches = report.mismatches + warm_mismatches;
    sample.server_failed = server_failed;
    sample.slow_start = measured
        .interval
        .and_then(|i| slow_start(&report.series, i, report.latency_us.p50));
    sample.generator_late = report
        .send_lateness_us
        .as_ref()
        .filter(|_| report.generator_late)
        .map(|l| (l.p99, report.latency_us.p50));
    sample.note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(sample)
}

/// The warm-up's connections are closed, but a server with a thread per
/// connection may still be ending their threads: wait, at most a second,
/// until its thread count stops falling, so that none of them ends inside
/// the measured window and takes its context switches with it.
fn settle_threads(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut last = sys::thread_count(pid);
    while last.is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = sys::thread_count(pid);
        if now >= last {
            break;
        }
        last = now;
    }
}

/// The server tree's activity at the end of each complete interval of the
/// measured load, with the messages verified by then.
type Readings = Arc<Mutex<Vec<(u64, Option<sys::TreeActivity>)>>>;

/// A sink that reads the server tree's activity at the end of each
/// interval, while the connections are still open.
fn interval_readings(pid: u32, readings: Readings) -> ringport_load::IntervalSink {
    ringport_load::IntervalSink(Arc::new(move |stat| {
        let mut r = readings.lock().unwrap_or_else(|p| p.into_inner());
        let messages = r.last().map_or(0, |(m, _)| *m) + stat.messages;
        r.push((messages, sys::tree_activity(pid)));
    }))
}

/// The context switches to report, and the messages they are per. The
/// kernel keeps an ended thread's switches only for `getrusage`, so over
/// the whole window a server with a thread per connection (threaded) loses
/// them all when the load closes its connections. When it did, the latest
/// reading taken at an interval's end that lost no thread stands instead,
/// per the messages verified by then: the connections were open, so their
/// threads were alive. Without such a reading the whole window's figure
/// stays, marked a lower bound.
fn switches_while_open(
    whole: sys::Activity,
    messages: u64,
    before: &sys::TreeActivity,
    readings: &[(u64, Option<sys::TreeActivity>)],
) -> (sys::Activity, u64) {
    if !whole.switches_lower_bound {
        return (whole, messages);
    }
    let open = readings.iter().rev().find_map(|(m, reading)| {
        let a = reading.as_ref()?.since(before);
        (*m > 0 && !a.switches_lower_bound).then_some((a.switches, *m))
    });
    match open {
        Some((switches, m)) => (
            sys::Activity {
                switches,
                switches_lower_bound: false,
                ..whole
            },
            m,
        ),
        None => (whole, messages),
    }
}

/// What one measured load comes to, from its report and the counters
/// around it.
fn figures(
    report: &ringport_load::Report,
    before: &Counters,
    after: &Counters,
    client_cpus: usize,
    pinned_cpus: usize,
) -> Sample {
    let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let messages = report.messages_verified;
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a).max(0.0));
    let per_million = |a: Option<f64>, b: Option<f64>| {
        delta(a, b)
            .filter(|_| messages > 0)
            .map(|d| d / messages as f64 * 1e6)
    };
    let user = per_million(before.server.map(|t| t.user), after.server.map(|t| t.user));
    let system = per_million(
        before.server.map(|t| t.system),
        after.server.map(|t| t.system),
    );
    let server_cpu = delta(
        before.server.map(|t| t.user + t.system),
        after.server.map(|t| t.user + t.system),
    );
    let client = delta(before.client, after.client);
    let steal = delta(before.steal, after.steal);
    // Everything the pinned CPUs did, less what this server and this load
    // did, plus what the hypervisor took: someone else's share.
    let own = server_cpu.zip(client).map(|(s, c)| s + c);
    let of_pinned = |secs: f64| secs / wall / pinned_cpus as f64 * 100.0;
    let interference_pct = match (delta(before.pinned_busy, after.pinned_busy), own, steal) {
        (Some(busy), Some(own), Some(steal)) if pinned_cpus > 0 => {
            Some(of_pinned((busy - own).max(0.0) + steal))
        }
        _ => None,
    };
    Sample {
        interference_pct,
        attempts: 1,
        disturbed: false,
        msgs_per_sec: report.msgs_per_sec,
        mb_per_sec: report.mb_per_sec,
        p50_us: (messages > 0).then_some(report.latency_us.p50 as f64),
        p99_us: (messages > 0).then_some(report.latency_us.p99 as f64),
        server_cpu_s_per_million: user.zip(system).map(|(u, s)| u + s),
        server_user_s_per_million: user,
        server_sys_s_per_million: system,
        server_cpus_busy_s_per_million: per_million(
            before.server_cpus_busy,
            after.server_cpus_busy,
        ),
        connections_per_sec: report.connections_per_sec,
        per_connection_rate: report.per_connection_rate.clone(),
        server_cpu_us_per_connection: report
            .per_connection
            .filter(|_| report.connections_cycled > 0)
            .and(server_cpu)
            .map(|secs| secs / report.connections_cycled as f64 * 1e6),
        client_cpu_pct: client.map(|c| c / wall / client_cpus as f64 * 100.0),
        host_steal_pct: steal.filter(|_| pinned_cpus > 0).map(of_pinned),
        ..Sample::default()
    }
}

#[cfg(test)]
mod tests {
    use super::switches_while_open;
    use crate::sys::{Activity, Switches, TreeActivity};

    #[test]
    fn switches_lost_at_the_close_come_from_a_reading_while_open() {
        let thread = |tid: u32, voluntary: u64| {
            (
                (1, tid),
                Switches {
                    voluntary,
                    involuntary: 0,
                },
            )
        };
        let before = TreeActivity {
            threads: [thread(1, 5)].into(),
            ..TreeActivity::default()
        };
        // A thread per connection, alive at the interval's end: 800 switches
        // over 750 messages.
        let open = TreeActivity {
            threads: [thread(1, 5), thread(2, 400), thread(3, 400)].into(),
            ..TreeActivity::default()
        };
        let lost = Activity {
            switches: Switches {
                voluntary: 3,
                involuntary: 0,
            },
            switches_lower_bound: true,
            ..Activity::default()
        };
        let readings = [(0, None), (750, Some(open))];
        let (a, messages) = switches_while_open(lost, 1000, &before, &readings);
        assert_eq!(
            (a.switches.voluntary, messages, a.switches_lower_bound),
            (800, 750, false)
        );
        // No reading lost nothing: the whole window's figure stays, doubtful.
        let (a, messages) = switches_while_open(lost, 1000, &before, &[]);
        assert_eq!(
            (a.switches.voluntary, messages, a.switches_lower_bound),
            (3, 1000, true)
        );
        // Nothing was lost: the whole window stands.
        let whole = Activity {
            switches_lower_bound: false,
            ..lost
        };
        assert_eq!(switches_while_open(whole, 1000, &before, &readings).1, 1000);
    }

    use super::*;
    use ringport_load::IntervalStat;

    fn series(rates: &[f64], p99s: &[u64]) -> Vec<IntervalStat> {
        rates
            .iter()
            .zip(p99s)
            .enumerate()
            .map(|(i, (&r, &p99_us))| IntervalStat {
                t: 0.5 * (i + 1) as f64,
                messages: (r * 0.5) as u64,
                msgs_per_sec: r,
                rate_asked: None,
                p99_us: Some(p99_us),
                p99_corrected_us: None,
            })
            .collect()
    }

    const HALF_S: Duration = Duration::from_millis(500);

    #[test]
    fn a_first_interval_at_a_seventh_of_the_rest_is_a_slow_start() {
        let s = series(
            &[3_600.0, 24_000.0, 26_000.0, 25_000.0, 27_000.0, 22_000.0],
            &[35_000, 6_000, 5_000, 5_500, 7_000, 5_200],
        );
        let slow = slow_start(&s, HALF_S, 2_500).expect("a slow start");
        assert_eq!(slow.first_s, 0.5);
        assert!((slow.rate_ratio - 3_600.0 / 25_000.0).abs() < 1e-9);
        assert_eq!(
            (slow.first_p99_us, slow.later_p99_us),
            (Some(35_000), Some(5_500))
        );
    }

    #[test]
    fn steady_runs_and_runs_it_cannot_judge_are_not_slow_starts() {
        // Noise between intervals is not a slow start.
        let steady = series(&[18_000.0, 25_000.0, 21_000.0, 26_000.0], &[9_000; 4]);
        assert_eq!(slow_start(&steady, HALF_S, 2_500), None);
        // A closed loop whose latency is a good part of an interval fills
        // its pipeline in the first one: not judged.
        let filling = series(&[400.0, 1_500.0, 1_400.0, 1_500.0], &[900_000; 4]);
        assert_eq!(slow_start(&filling, HALF_S, 700_000), None);
        // Too few intervals, a sliver at the end, nothing measured later.
        let short = series(&[100.0, 20_000.0], &[1_000; 2]);
        assert_eq!(slow_start(&short, HALF_S, 1_000), None);
        let mut sliver = series(&[100.0, 20_000.0], &[1_000; 2]);
        sliver.push(IntervalStat {
            t: 1.01,
            ..sliver[1].clone()
        });
        assert_eq!(slow_start(&sliver, HALF_S, 1_000), None);
        let idle = series(&[0.0, 0.0, 0.0], &[0; 3]);
        assert_eq!(slow_start(&idle, HALF_S, 0), None);
        assert_eq!(slow_start(&[], HALF_S, 0), None);
    }
}
