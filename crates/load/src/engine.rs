//! Running a load: start the threads of the chosen engine, start the clock
//! once every connection is open, watch the series, merge, report.
//!
//! The clock starts only when every thread has opened (or failed to open)
//! its connections, so connection setup — which can take seconds at ten
//! thousand connections — is never mistaken for server latency. It is
//! reported on its own as `connect_s`.

use crate::config::{Config, Engine};
use crate::report::{Measured, Report};
use crate::start::{workload, Gate, Shared, WorkerOut};
use crate::stats::{run_histogram, Series, Totals};
use crate::LoadError;
use hdrhistogram::Histogram;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
        Engine::Events => config.threads.clamp(1, config.connections),
        Engine::Threads => config.connections,
    };
    let shared = Arc::new(Shared {
        gate: Gate::new(threads + 1),
        t0: OnceLock::new(),
        series: config
            .interval
            .map(|len| Series::new(len, threads, config.rate.is_some())),
    });
    let spawned_at = Instant::now();
    let handles = spawn(config, &shared, threads)?;
    if !shared.gate.arrive() {
        unreachable!("only this thread abandons the gate");
    }
    let t0 = *shared.t0.get_or_init(Instant::now);
    let connect = t0.saturating_duration_since(spawned_at);
    let measure_start = t0 + config.warmup;
    if let Some(p) = &config.progress {
        p.set_measure_start(measure_start);
    }

    let mut series = Vec::new();
    let emit = |rows: Vec<crate::IntervalStat>, series: &mut Vec<crate::IntervalStat>| {
        for row in rows {
            if let Some(sink) = &config.on_interval {
                (sink.0)(&row);
            }
            series.push(row);
        }
    };
    if let Some(s) = &shared.series {
        while !handles.iter().all(|h| h.is_finished()) {
            s.wait(Duration::from_millis(100));
            emit(s.take_ready(None), &mut series);
        }
    }
    let joined = join(handles, config.rate.is_some(), measure_start);
    if let Some(p) = &config.progress {
        p.set_done();
    }
    let (totals, raw, corrected, finished) = joined?;
    let elapsed = finished.saturating_duration_since(measure_start);
    // What the run asked for, from the same schedule the connections
    // followed, for every connection, opened or not.
    let w = workload(config, t0);
    let asked = (0..config.connections as u64)
        .map(|c| w.asked(c))
        .sum::<Option<u64>>();
    if let Some(s) = &shared.series {
        emit(s.take_ready(Some(elapsed)), &mut series);
    }
    Ok(Report::new(
        config,
        Measured {
            totals: &totals,
            raw: &raw,
            corrected: corrected.as_ref(),
            elapsed,
            connect,
            threads: threads as u64,
            series,
            asked,
        },
    ))
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
                    source: e,
                });
            }
        }
    }
    Ok(handles)
}

type Joined = (Totals, Histogram<u64>, Option<Histogram<u64>>, Instant);

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
    let mut finished = measure_start;
    let mut first_err = None;
    for h in handles {
        match h.join().expect("load thread panicked") {
            Ok(out) => {
                totals.merge(&out.totals);
                raw.add(&out.raw).expect("same histogram bounds");
                if let (Some(c), Some(o)) = (corrected.as_mut(), out.corrected.as_ref()) {
                    c.add(o).expect("same histogram bounds");
                }
                finished = finished.max(out.finished);
            }
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((totals, raw, corrected, finished)),
    }
}
