//! Running a load: start the threads of the chosen engine, start the clock
//! once every connection is open, watch the series, merge, report.
//!
//! The clock starts only when every thread has opened (or failed to open)
//! its connections, so connection setup — which can take seconds at ten
//! thousand connections — is never mistaken for server latency. It is
//! reported on its own as `connect_s`. With `start_at`, the coordinator
//! then holds the start line until that wall-clock time, so generators on
//! several machines begin together; with `hdr_log`, it writes each interval
//! of the series to the log as it completes.

use crate::config::{Config, Engine};
use crate::hdrlog::{self, Header, Session};
use crate::report::{Measured, Report};
use crate::series::{Ready, Series};
use crate::start::{workload, Gate, Shared, WorkerOut};
use crate::stats::{run_histogram, Totals};
use crate::steps::StepTally;
use crate::LoadError;
use hdrhistogram::Histogram;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Descriptors a run needs besides one per connection: pollers, stdio, files.
const SPARE_FDS: u64 = 64;

/// Raise the descriptor limit and check that the connections fit under it.
fn check_fd_limit(config: &Config) -> Result<(), LoadError> {
    let Ok(limit) = crate::sys::raise_fd_limit() else {
        return Ok(());
    };
    let need = config.connections as u64 + SPARE_FDS;
    if need > limit {
        return Err(LoadError::Config(format!(
            "{} connections need about {need} file descriptors, but this process may open only {limit} \
             (its hard limit); raise it (ulimit -Hn as root, or limits.conf) or use fewer --connections",
            config.connections
        )));
    }
    Ok(())
}

/// Run the load and return what it measured.
pub fn run(config: &Config) -> Result<Report, LoadError> {
    config.validate()?;
    check_fd_limit(config)?;
    let threads = match config.engine {
        Engine::Events | Engine::Completion => config.threads.clamp(1, config.connections),
        Engine::Threads => config.connections,
    };
    // The series runs for `--interval`, for the log, which needs one, and
    // for a ramp or steps, whose series shows each part.
    let series_len = config.series_interval();
    let shared = Arc::new(Shared {
        gate: Gate::new(threads + 1),
        t0: OnceLock::new(),
        series: series_len.map(|len| {
            let schedule = workload(config, Instant::now()).schedule;
            Series::new(len, threads, schedule.map(|s| (s, config.warmup)))
        }),
    });
    let spawned_at = Instant::now();
    let handles = spawn(config, &shared, threads)?;
    let (t0, connect) = start_line(config, &shared, threads, spawned_at);
    let measure_start = t0 + config.warmup;
    let wall_start = wall_clock_at(t0) + config.warmup;
    if let Some(p) = &config.progress {
        p.set_measure_start(measure_start);
    }
    let header = Header {
        start: wall_start,
        comment: log_comment(config),
        rate_varies: config.rate.as_ref().is_some_and(|r| r.fixed().is_none()),
    };
    let Watched {
        series,
        steps,
        joined,
    } = hdrlog::with_session(config.hdr_log.as_deref(), &header, |log| {
        watch(config, &shared, handles, measure_start, log)
    });
    if let Some(p) = &config.progress {
        p.set_done();
    }
    let Joined {
        totals,
        raw,
        corrected,
        finished,
        ended,
    } = joined?;
    let elapsed = finished.saturating_duration_since(measure_start);
    // What the run asked for, from the same schedule the connections
    // followed, for every connection, opened or not.
    let w = workload(config, t0);
    let asked = (0..config.connections as u64)
        .map(|c| w.asked(c))
        .sum::<Option<u64>>();
    Ok(Report::new(
        config,
        Measured {
            totals: &totals,
            raw: &raw,
            corrected: corrected.as_ref(),
            elapsed,
            connect,
            warmup: ended.saturating_duration_since(t0).min(config.warmup),
            measure_start: wall_start,
            interrupted_after: config
                .interrupt
                .triggered_at()
                .map(|at| at.saturating_duration_since(measure_start)),
            threads: threads as u64,
            series,
            steps,
            asked,
        },
    ))
}

/// Hold the start line: once every thread has opened its connections (and,
/// with `start_at`, that time has come), arrive, and return the common
/// clock's zero and how long the connections took to open.
fn start_line(
    config: &Config,
    shared: &Shared,
    threads: usize,
    spawned_at: Instant,
) -> (Instant, Duration) {
    let mut connected = None;
    if let Some(at) = config.start_at {
        shared.gate.wait_arrivals(threads);
        connected = Some(Instant::now());
        let late = SystemTime::now().duration_since(at).unwrap_or_default();
        if late > Duration::from_millis(1) {
            tracing::warn!(
                "the connections were open {:.3} s after --start-at: the warm-up starts late",
                late.as_secs_f64()
            );
        }
        wait_until(at, &config.interrupt);
    }
    if !shared.gate.arrive() {
        unreachable!("only this thread abandons the gate");
    }
    let t0 = *shared.t0.get_or_init(Instant::now);
    let connected = connected.unwrap_or(t0);
    (t0, connected.saturating_duration_since(spawned_at))
}

/// Sleep until the wall clock reads `at`. The clock is read again after
/// every nap of at most half a second, so a clock that is stepped (NTP)
/// while waiting is followed, and a signal's default action (Ctrl-C ends
/// the process, or interrupts the run) is never held up.
fn wait_until(at: SystemTime, interrupt: &crate::Interrupt) {
    while let Ok(left) = at.duration_since(SystemTime::now()) {
        if left.is_zero() || interrupt.is_triggered() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// The wall-clock time of the instant `t` (a moment ago).
fn wall_clock_at(t: Instant) -> SystemTime {
    let ago = Instant::now().saturating_duration_since(t);
    SystemTime::now() - ago
}

/// The log's first comment: what was run, and against what.
fn log_comment(config: &Config) -> String {
    let mode = match &config.rate {
        Some(r) => match crate::report::RateProfile::of(r) {
            Some(p) => format!("open loop, {p}"),
            None => format!("open loop at {} msgs/s", r.rates()[0]),
        },
        None => "closed loop".to_string(),
    };
    format!(
        "ringport {} stress against {}: {} connections, {mode}, pipeline {}",
        env!("CARGO_PKG_VERSION"),
        config.addr,
        config.connections,
        config.pipeline
    )
}

/// While the threads run, hand each complete interval to the caller's
/// sink, the report's series and the log; then join the threads and hand
/// over the last, partial interval.
fn watch(
    config: &Config,
    shared: &Shared,
    handles: Vec<Handle>,
    measure_start: Instant,
    log: &mut Session<'_>,
) -> Watched {
    let mut series = Vec::new();
    let mut steps = StepTally::new(config.rate.as_ref());
    let mut emit = |ready: Vec<Ready>| {
        for r in ready {
            log.write(&r);
            if let Some(t) = steps.as_mut() {
                t.add(&r);
            }
            if !config.reports_series() {
                continue;
            }
            if let Some(sink) = &config.on_interval {
                (sink.0)(&r.stat);
            }
            series.push(r.stat);
        }
    };
    if let Some(s) = &shared.series {
        while !handles.iter().all(|h| h.is_finished()) {
            s.wait(Duration::from_millis(100));
            emit(s.take_ready(None));
        }
    }
    let joined = join(handles, config.rate.is_some(), measure_start);
    if let (Some(s), Ok(j)) = (&shared.series, &joined) {
        emit(s.take_ready(Some(j.finished.saturating_duration_since(measure_start))));
    }
    let steps = steps.map_or_else(Vec::new, |t| t.finish(&config.percentiles));
    Watched {
        series,
        steps,
        joined,
    }
}

/// What [`watch`] saw: the series, the steps (`--step`), and the threads' results.
struct Watched {
    series: Vec<crate::IntervalStat>,
    steps: Vec<crate::StepStat>,
    joined: Result<Joined, LoadError>,
}

type Handle = std::thread::JoinHandle<Result<WorkerOut, LoadError>>;

/// Start the load threads, each with its share of the connections. If one
/// cannot be started, the gate is abandoned and the others are joined.
fn spawn(config: &Config, shared: &Arc<Shared>, threads: usize) -> Result<Vec<Handle>, LoadError> {
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let ids: Vec<u64> = (t as u64..config.connections as u64)
            .step_by(threads)
            .collect();
        let config = config.clone();
        let share = shared.clone();
        let builder = std::thread::Builder::new().name(format!("load-{t}"));
        let spawned = match config.engine {
            // One connection per thread and a small loop: the default 2 MiB
            // stack would reserve gigabytes at a few thousand connections.
            Engine::Threads => builder
                .stack_size(256 * 1024)
                .spawn(move || crate::threads::worker(&share, &config, t, ids[0])),
            Engine::Events => builder.spawn(move || crate::events::worker(&share, &config, t, ids)),
            Engine::Completion => {
                builder.spawn(move || crate::completion::worker(&share, &config, t, ids))
            }
        };
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.gate.abandon();
                for h in handles {
                    let _ = h.join();
                }
                return Err(LoadError::Io {
                    context: format!("cannot start load thread {} of {threads}", t + 1),
                    error: e,
                });
            }
        }
    }
    Ok(handles)
}

/// What the threads measured, merged.
struct Joined {
    totals: Totals,
    raw: Histogram<u64>,
    corrected: Option<Histogram<u64>>,
    /// The latest instant any thread finished, no earlier than the start of measuring.
    finished: Instant,
    /// The same, before the start of measuring if every thread ended in
    /// the warm-up (interrupted or failed there).
    ended: Instant,
}

/// Wait for every load thread and merge what they measured: counters,
/// histograms, and the latest instant any of them finished (no earlier
/// than `measure_start`). The first thread's error, if any, is the run's.
fn join(
    handles: Vec<Handle>,
    open_loop: bool,
    measure_start: Instant,
) -> Result<Joined, LoadError> {
    let mut totals = Totals::default();
    let mut raw = run_histogram();
    let mut corrected = open_loop.then(run_histogram);
    let mut ended: Option<Instant> = None;
    let mut first_err = None;
    for h in handles {
        match h.join().expect("load thread panicked") {
            Ok(out) => {
                totals.merge(&out.totals);
                raw.add(&out.raw).expect("same histogram bounds");
                if let (Some(c), Some(o)) = (corrected.as_mut(), out.corrected.as_ref()) {
                    c.add(o).expect("same histogram bounds");
                }
                ended = ended.max(Some(out.finished));
            }
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(Joined {
            totals,
            raw,
            corrected,
            finished: ended.map_or(measure_start, |e| e.max(measure_start)),
            ended: ended.unwrap_or(measure_start),
        }),
    }
}
