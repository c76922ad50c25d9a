//! `ringport stress`: load an echo server, verify every byte, and report
//! throughput and latency truthfully (see `ringport_load` for how).
//!
//! This module only turns flags into a [`Config`], shows progress while the
//! run goes on, and writes the report where it was asked to go.

use crate::paths::{self, is_stdout};
use crate::{args, signals, UsageError};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringport_load::capacity::Objective;
use ringport_load::{
    Config, Engine, HdrLog, IntervalSink, IntervalStat, LoadError, Payload, Phase, Progress, Rate,
    Report, StopWhen, MAX_MESSAGE_SIZE,
};
use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The article's default message.
const DEFAULT_MESSAGE: &str = "Hello from ringport";
/// Messages per connection when none is asked for and nobody can be asked.
const DEFAULT_COUNT: u64 = 100;
/// How often the progress display is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// Flags of `ringport stress`, boxed: they are many, and the subcommand
/// enum would otherwise be as large as its largest variant.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: Box<Flags>,
}

#[derive(clap::Args)]
struct Flags {
    /// The echo server.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:5150", value_parser = args::socket_addr)]
    addr: SocketAddr,
    /// Concurrent connections.
    #[arg(long, short, value_name = "M", default_value_t = 1)]
    connections: usize,
    /// Measured messages per connection [default: asked when stdin is a terminal, else 100].
    #[arg(long, short = 'n', value_name = "N", conflicts_with = "duration")]
    count: Option<u64>,
    /// Send for this long instead of a count, such as 10s (the warm-up comes on top).
    #[arg(long, short, value_name = "DURATION", value_parser = args::positive_duration)]
    duration: Option<Duration>,
    /// The text of each message: message k on connection i is "<k>. Thread <i> - <TEXT>".
    #[arg(long, short, value_name = "TEXT", conflicts_with = "size")]
    message: Option<String>,
    /// Send random messages of this size instead of the text (up to 16MiB), such as 64 or 4KiB.
    #[arg(long, value_name = "BYTES", value_parser = args::bytes)]
    size: Option<usize>,
    /// Seed of the --size payload; the same seed sends the same bytes [default: from the clock, reported].
    #[arg(long, value_name = "N", requires = "size")]
    seed: Option<u64>,
    /// Messages in flight per connection (in an open loop: at most in flight).
    #[arg(long, value_name = "P", default_value_t = 1)]
    pipeline: usize,
    /// Open loop: send R messages per second in total on a fixed schedule,
    /// and also report latency from when each was due. A..B with --ramp
    /// changes the rate linearly; A,B,C with --step holds each in turn.
    #[arg(long, value_name = "R", value_parser = args::rate_arg)]
    rate: Option<args::RateArg>,
    /// With --rate A..B: go linearly from A to B messages/s over this long,
    /// such as 30s (the warm-up runs at A). The run lasts the ramp, or
    /// --duration if longer (B holds). The series shows each second's rate.
    #[arg(long, value_name = "DURATION", value_parser = args::positive_duration, conflicts_with_all = ["step", "count", "find_rate"])]
    ramp: Option<Duration>,
    /// With --rate A,B,C: hold each rate this long in turn, such as 10s (the
    /// warm-up runs at A). The run lasts the steps, or --duration if longer
    /// (the last rate holds); the report gives a row per step.
    #[arg(long, value_name = "DURATION", value_parser = args::positive_duration, conflicts_with_all = ["count", "find_rate"])]
    step: Option<Duration>,
    /// Send this long before measuring, such as 2s; nothing in it is counted but errors.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = args::duration)]
    warmup: Duration,
    /// Threads driving the connections [default: number of CPUs].
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// events: many connections per thread (the load generator). completion:
    /// the same on io_uring (Linux; exits 2 where it is unavailable). threads:
    /// one blocking thread per connection, kept as the baseline to compare with.
    #[arg(long, value_name = "E", default_value = "events")]
    engine: Engine,
    /// A connection whose connect or echo takes longer than this fails.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = args::positive_duration)]
    timeout: Duration,
    /// At the end, each connection half-closes and waits this long for the
    /// server's end of stream; a byte that comes then is an `extra_bytes`
    /// error, a server that stays open only a note. 0 skips the check.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = args::duration)]
    close_grace: Duration,
    /// Churn: close each connection after N verified messages (through the
    /// same close check) and open a new one in its place; the report adds
    /// connections/s and connect latency. -n still counts messages per
    /// connection slot, so -n 100 --per-connection 1 makes 100 connections
    /// one after the other in each slot. Events and completion engines.
    #[arg(long, value_name = "N", value_parser = args::at_least_one)]
    per_connection: Option<u64>,
    /// Latency percentiles to print and store, such as 50,90,99,99.9,99.99
    /// (p50, p90, p99, p99.9 and max are always in the JSON).
    #[arg(long, value_name = "LIST", value_parser = args::percentiles)]
    percentiles: Option<args::List<f64>>,
    /// Also report every interval of this length, such as 1s: rows on stderr and `series` in the JSON.
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    interval: Option<Duration>,
    /// Bind connections to these source addresses in turn, such as 127.0.0.2,127.0.0.3.
    #[arg(long, value_name = "LIST", value_parser = args::ip_list)]
    source_ips: Option<args::List<IpAddr>>,
    /// Open at most this many connections per second.
    #[arg(long, value_name = "N", value_parser = args::rate)]
    connect_rate: Option<f64>,
    /// Also write the report as JSON to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write the report as CSV (a header and one row) to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Write an HdrHistogram interval log to PATH: one V2 compressed
    /// histogram per --interval (1s without one) and tag, `send` and (open
    /// loop) `schedule`, in microseconds; `ringport merge` adds logs up.
    #[arg(long, value_name = "PATH")]
    hdr_log: Option<PathBuf>,
    /// Open the connections, then hold the start until this wall-clock time
    /// (Unix seconds, or RFC 3339 in UTC such as 2026-01-01T12:00:00Z),
    /// so that generators on several machines start their warm-up together.
    /// It must lie ahead, at most 24 hours; Ctrl-C ends the wait.
    #[arg(long, value_name = "TIME", value_parser = args::start_at)]
    start_at: Option<std::time::SystemTime>,
    /// Events engine: poll without blocking this long before sleeping; 0 never spins
    /// [default: 50us in a closed loop, 0 with --rate].
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    busy_poll: Option<Duration>,
    /// Serve the run's live counters at http://ADDR/metrics in the
    /// OpenMetrics text format, for Prometheus, such as 127.0.0.1:9464
    /// (port 0: any free one, printed). Bound before the run: a port in use exits 2.
    #[arg(long, value_name = "ADDR", value_parser = args::socket_addr)]
    metrics: Option<SocketAddr>,
    /// After the run, keep serving --metrics until one scrape has read the
    /// final totals, at most this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = args::duration)]
    metrics_grace: Duration,
    /// No live progress display, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Search for the highest open-loop rate at which --slo holds: steps of
    /// --duration (at least, and long enough for the percentile) from
    /// --rate [default: 1000], doubling until it breaks, then bisecting.
    #[arg(long, requires = "slo", conflicts_with_all = ["count", "per_connection", "csv", "hdr_log", "interval", "metrics"])]
    find_rate: bool,
    /// The objective of --find-rate, such as 'p99<=1ms' or 'p99.9<500us';
    /// it also breaks on any error or mismatch, and on messages that fell
    /// behind the schedule.
    #[arg(long, value_name = "OBJ", requires = "find_rate", value_parser = clap::value_parser!(Objective))]
    slo: Option<Objective>,
    /// --find-rate stops when the first failing rate is at most this many
    /// times the last passing one.
    #[arg(long, value_name = "X", default_value_t = 1.1, requires = "find_rate")]
    precision: f64,
}

/// What clap's attributes cannot say. A `requires` is skipped when the
/// flag it requires conflicts with one given (`--slo` with `-n`, `--seed`
/// with `-m`), so those are checked again here; and no two reports go to
/// one place.
fn check_flags(a: &Flags) -> Result<(), UsageError> {
    let usage = |s: &str| Err(UsageError(s.into()));
    if a.slo.is_some() && !a.find_rate {
        return usage("--slo is the objective of --find-rate: add --find-rate, or leave --slo out");
    }
    if a.seed.is_some() && a.size.is_none() {
        return usage(
            "--seed chooses the bytes of a --size payload: add --size, or leave --seed out",
        );
    }
    if a.busy_poll.is_some() && a.engine != Engine::Events {
        return Err(UsageError(format!(
            "--busy-poll is the events engine's, and this run's engine is {}",
            a.engine.name()
        )));
    }
    if a.hdr_log.as_deref() == Some(Path::new("-")) {
        return usage("--hdr-log writes a file, not stdout: give it a path");
    }
    let reports = [
        ("--json", &a.json),
        ("--csv", &a.csv),
        ("--hdr-log", &a.hdr_log),
    ];
    let places: Vec<_> = reports
        .iter()
        .filter_map(|(flag, p)| Some((*flag, p.as_deref()?)))
        .collect();
    paths::distinct(&places)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let a = *a.flags;
    crate::init_logging(false);
    check_flags(&a)?;
    let mut config = config_from(&a)?;
    // Before the run: a report that cannot be written is found now, not
    // after a long run whose figures would then be lost.
    let json_out = a.json.as_deref().map(ReportFile::open).transpose()?;
    if let Some(objective) = a.slo.clone().filter(|_| a.find_rate) {
        let search = crate::find_rate::Search {
            objective,
            start: config.rate.as_ref().and_then(Rate::fixed),
            min_step: a.duration,
            precision: a.precision,
        };
        let stopped_by = stop_on_signal(&config)?;
        return crate::find_rate::run(config, search, json_out, is_stdout(&a.json), &stopped_by);
    }
    let csv_out = a.csv.as_deref().map(ReportFile::open).transpose()?;
    if let Some(path) = &a.hdr_log {
        config.hdr_log = Some(Arc::new(open_hdr_log(path)?));
    }
    // Bound before the run, so that a port in use stops it before it starts.
    let metrics = match a.metrics {
        Some(addr) => {
            let progress = config.progress.get_or_insert_with(Progress::new).clone();
            let pace = config.rate.as_ref().map(|r| (r, config.warmup));
            let exporter = crate::metrics::Exporter::start(addr, progress, pace)?;
            crate::out::eprintln_quiet!(
                "ringport stress: metrics at http://{}{}",
                exporter.addr(),
                crate::metrics::PATH
            );
            Some(exporter)
        }
        None => None,
    };
    if let Some(at) = config.start_at {
        announce_start(at);
    }

    let stopped_by = stop_on_signal(&config)?;

    let show_progress = !a.no_progress && std::io::stderr().is_terminal();
    let bar = show_progress.then(|| new_bar(&config));
    if config.reports_series() {
        config.on_interval = Some(interval_printer(bar.clone()));
    }
    let report = match &bar {
        Some(bar) => run_with_progress(&mut config, bar),
        None => ringport_load::run(&config),
    };
    let report = match report {
        Ok(r) => r,
        Err(LoadError::Config(why)) => return Err(UsageError(why).into()),
        Err(e) => return Err(e).context(format!("stress run against {} failed", config.addr)),
    };
    let data_on_stdout = is_stdout(&a.json) || is_stdout(&a.csv);
    let mut unwritten = write_report(&report, data_on_stdout, json_out, csv_out)?;
    churn_hint(&config, &report);
    if let (Some(log), Some(path)) = (&config.hdr_log, &a.hdr_log) {
        if let Err(e) = log.finish() {
            let e = format!(
                "cannot write the HdrHistogram log to {}: {e}",
                path.display()
            );
            crate::out::eprintln_quiet!("ringport: {e}");
            unwritten.push(e);
        }
    }
    if let Some(exporter) = metrics {
        exporter.finish(a.metrics_grace);
    }
    if report.interrupted {
        // The run did less than it was asked: never a success. The status
        // is the signal's, as a shell reports a process it ended.
        let sig = match stopped_by.load(Ordering::SeqCst) {
            0 => 2,
            sig => sig,
        };
        crate::out::eprintln_quiet!(
            "ringport: INTERRUPTED by signal {sig}: the run did less than it was asked; the report covers the part that ran"
        );
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    let problems = report.problems();
    if problems.is_empty() {
        if !unwritten.is_empty() {
            anyhow::bail!("the run was clean, but its report could not be written in full");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "FAILED: the run did less than it was asked: {}",
            problems.join("; ")
        )
    }
}

/// Ctrl-C (SIGINT) or SIGTERM ends the run early; it is still reported.
/// Returns where the signal's number will be.
fn stop_on_signal(config: &Config) -> anyhow::Result<Arc<AtomicI32>> {
    let stopped_by = Arc::new(AtomicI32::new(0));
    let interrupt = config.interrupt.clone();
    let by = stopped_by.clone();
    signals::on_stop(move |sig| {
        by.store(sig, Ordering::SeqCst);
        interrupt.trigger();
        crate::out::eprintln_quiet!(
            "\nringport stress: signal {sig}: stopping; the report of what ran follows (again to exit at once)"
        );
    })?;
    Ok(stopped_by)
}

/// The rate --rate, --ramp and --step ask for, checked against each other.
fn rate_from(a: &Flags) -> Result<Option<Rate>, UsageError> {
    use args::RateArg;
    let usage = |s: &str| Err(UsageError(s.into()));
    Ok(Some(match (a.rate.clone(), a.ramp, a.step) {
        (None, None, None) => return Ok(None),
        (None, _, _) => {
            return usage("--ramp and --step need --rate: A..B for a ramp, A,B,C for steps")
        }
        (Some(RateArg::One(r)), None, None) => Rate::Fixed(r),
        (Some(RateArg::Range(from, to)), Some(over), None) => Rate::Ramp { from, to, over },
        (Some(RateArg::List(rates)), None, Some(each)) => Rate::Steps { rates, each },
        (Some(RateArg::Range(..)), _, _) => {
            return usage("--rate A..B is a ramp: give its length with --ramp, such as --ramp 30s")
        }
        (Some(RateArg::List(_)), _, _) => {
            return usage(
                "--rate A,B,C are steps: give each one's length with --step, such as --step 10s",
            )
        }
        (Some(RateArg::One(_)), Some(_), _) => {
            return usage("--ramp needs a range of rates, such as --rate 1000..50000")
        }
        (Some(RateArg::One(_)), _, Some(_)) => {
            return usage("--step needs two or more rates, such as --rate 1000,5000,20000")
        }
    }))
}

/// The load the flags ask for (asking the article's three questions on a
/// terminal when neither a count nor a duration is given), checked.
fn config_from(a: &Flags) -> anyhow::Result<Config> {
    let mut config = Config::new(a.addr);
    let mut message = a.message.clone();
    let mut connections = a.connections;
    let rate = rate_from(a)?;
    let stop = match (a.count, a.duration) {
        // Each step of the search sets its own length.
        _ if a.find_rate => StopWhen::Duration(Duration::from_secs(1)),
        // A ramp or steps last their length, or --duration if longer.
        (None, d) if rate.as_ref().is_some_and(|r| r.length().is_some()) => StopWhen::Duration(
            d.or(rate.as_ref().and_then(Rate::length))
                .unwrap_or_default(),
        ),
        (Some(n), _) => StopWhen::Count(n),
        (None, Some(d)) => StopWhen::Duration(d),
        (None, None) if std::io::stdin().is_terminal() => {
            // The article's three questions.
            let ask = Asker;
            if a.size.is_none() {
                message = Some(ask.text(
                    "Message to send",
                    message.as_deref().unwrap_or(DEFAULT_MESSAGE),
                )?);
            }
            connections = ask.number("Number of connections", connections as u64)? as usize;
            StopWhen::Count(ask.number("Number of times to send it", DEFAULT_COUNT)?)
        }
        (None, None) => StopWhen::Count(DEFAULT_COUNT),
    };
    config.connections = connections;
    config.stop = stop;
    config.pipeline = a.pipeline;
    config.timeout = a.timeout;
    config.close_grace = a.close_grace;
    config.per_connection = a.per_connection;
    config.engine = a.engine;
    config.rate = rate;
    config.warmup = a.warmup;
    config.interval = a.interval;
    config.connect_rate = a.connect_rate;
    config.busy_poll = a.busy_poll;
    config.start_at = a.start_at;
    config.source_ips = a.source_ips.clone().map(|l| l.0).unwrap_or_default();
    config.percentiles = a.percentiles.clone().map(|l| l.0).unwrap_or_default();
    if let Some(t) = a.threads {
        if t == 0 {
            return Err(UsageError(
                "--threads must be at least 1 (or left out: one per CPU)".into(),
            )
            .into());
        }
        config.threads = t;
    }
    config.payload = match a.size {
        Some(size) if size > MAX_MESSAGE_SIZE => {
            return Err(UsageError(format!(
                "--size {size} is too large: messages are at most 16 MiB ({MAX_MESSAGE_SIZE} bytes)"
            ))
            .into())
        }
        Some(size) => Payload::Sized {
            len: size,
            seed: a.seed.unwrap_or_else(clock_seed),
        },
        None => Payload::Template(message.unwrap_or_else(|| DEFAULT_MESSAGE.into())),
    };
    if let Err(LoadError::Config(why)) = config.validate() {
        return Err(UsageError(why).into());
    }
    Ok(config)
}

/// Print the summary and write the files. Every output is attempted, and
/// none of their failures hides the verdict: what could not be written is
/// said on stderr and returned, and the caller decides the exit status.
fn write_report(
    report: &Report,
    data_on_stdout: bool,
    json_out: Option<ReportFile>,
    csv_out: Option<ReportFile>,
) -> anyhow::Result<Vec<String>> {
    let mut unwritten = Vec::new();
    if data_on_stdout {
        crate::out::stderr(&report.to_text());
    } else if let Err(e) = crate::out::stdout(&report.to_text()) {
        unwritten.push(format!("cannot write the summary to stdout: {e}"));
    }
    if let Some(f) = json_out {
        let text = serde_json::to_string_pretty(report)? + "\n";
        if let Err(e) = f.write(&text) {
            unwritten.push(e);
        }
    }
    if let Some(f) = csv_out {
        if let Err(e) = f.write(&report.to_csv()) {
            unwritten.push(e);
        }
    }
    for e in &unwritten {
        crate::out::eprintln_quiet!("ringport: {e}");
    }
    Ok(unwritten)
}

/// The `--hdr-log` file, created before the run so that a path that cannot
/// be written is a usage error now rather than a lost log later.
fn open_hdr_log(path: &Path) -> anyhow::Result<HdrLog> {
    let file = std::fs::File::create(path).map_err(|e| {
        UsageError(format!(
            "cannot write the HdrHistogram log to {}: {e}",
            path.display()
        ))
    })?;
    Ok(HdrLog::new(Box::new(file)))
}

/// Fast churn from one source address: say that this side's TIME_WAIT
/// sockets may have been the limit, so the rate is not taken for the server's.
fn churn_hint(config: &Config, report: &ringport_load::Report) {
    /// About where, on a 2-vCPU VM, `connect`'s search of a port range full
    /// of TIME_WAIT sockets began to cost more than the server.
    const FAST: f64 = 5_000.0;
    match report.connections_per_sec {
        Some(rate) if rate >= FAST && config.source_ips.is_empty() => crate::out::eprintln_quiet!(
            "ringport: note: {rate:.0} connections/s from one source address: each closed connection leaves a TIME_WAIT socket on this side for a minute, and `connect` searches past them for a port, which can be the limit before the server is; spread the load with --source-ips (docs/STRESS.md)"
        ),
        _ => {}
    }
}

/// Say on stderr when the run will start, so that a wait is not mistaken for a hang.
fn announce_start(at: std::time::SystemTime) {
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    crate::out::eprintln_quiet!(
        "ringport: the connections open now; the warm-up starts at {} (in {:.1} s); Ctrl-C cancels",
        humantime::format_rfc3339_millis(at),
        left.as_secs_f64()
    );
}

/// A seed nobody chose: different each run, and printed so the run can be repeated.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Where `--json` or `--csv` goes: stdout, or a file opened before the run.
pub(crate) enum ReportFile {
    Stdout,
    File(PathBuf, std::fs::File),
}

impl ReportFile {
    pub(crate) fn open(path: &Path) -> anyhow::Result<ReportFile> {
        if path == Path::new("-") {
            return Ok(ReportFile::Stdout);
        }
        let file = std::fs::File::create(path).map_err(|e| {
            UsageError(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
        Ok(ReportFile::File(path.to_path_buf(), file))
    }

    /// Write and flush; a reader that went away (EPIPE) is not an error.
    pub(crate) fn write(self, text: &str) -> Result<(), String> {
        match self {
            ReportFile::Stdout => crate::out::stdout(text)
                .map_err(|e| format!("cannot write the report to stdout: {e}")),
            ReportFile::File(path, mut f) => {
                match f.write_all(text.as_bytes()).and_then(|()| f.flush()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!(
                        "cannot write the report to {}: {e}",
                        path.display()
                    )),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// A bar when the total is known (a count), a spinner-like bar over the
/// run's length otherwise.
fn new_bar(config: &Config) -> ProgressBar {
    let len = match config.stop {
        StopWhen::Count(n) => n * config.connections as u64,
        StopWhen::Duration(d) => (config.warmup + d).as_millis() as u64,
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Run on a second thread while this one redraws the bar from the live counters.
fn run_with_progress(config: &mut Config, bar: &ProgressBar) -> Result<Report, LoadError> {
    let progress = config.progress.get_or_insert_with(Progress::new).clone();
    let config = &*config;
    let count_mode = matches!(config.stop, StopWhen::Count(_));
    std::thread::scope(|s| {
        let h = s.spawn(|| ringport_load::run(config));
        let mut last = (Instant::now(), 0u64);
        let mut rate = 0.0;
        while !h.is_finished() {
            std::thread::sleep(REDRAW);
            let now = Instant::now();
            let msgs = progress.messages();
            let dt = now.duration_since(last.0).as_secs_f64();
            if dt > 0.0 {
                rate = (msgs - last.1) as f64 / dt;
            }
            last = (now, msgs);
            let phase = progress.phase();
            let what = match phase {
                Phase::Connecting => "connecting",
                Phase::WarmingUp => "warming up",
                Phase::Measuring | Phase::Done => "measuring",
            };
            if count_mode {
                bar.set_position(msgs);
            } else if let Some(start) = progress.measure_start() {
                let t0 = start - config.warmup;
                bar.set_position(now.saturating_duration_since(t0).as_millis() as u64);
            }
            bar.set_message(format!(
                "{what}: {msgs} msgs, {rate:.0} msgs/s, {} errors, {} open",
                progress.errors(),
                progress.open_connections()
            ));
        }
        bar.finish_and_clear();
        h.join().expect("the load run panicked")
    })
}

/// Print each interval as a row on stderr (above the bar, if there is one).
fn interval_printer(bar: Option<ProgressBar>) -> IntervalSink {
    let header_done = AtomicBool::new(false);
    IntervalSink(Arc::new(move |row: &IntervalStat| {
        let mut lines = Vec::new();
        if !header_done.swap(true, Ordering::Relaxed) {
            lines.push(format!(
                "{:>8} {:>10} {:>12} {:>12} {:>10} {:>14}",
                "t (s)", "messages", "asked/s", "msgs/s", "p99 (us)", "p99 corr (us)"
            ));
        }
        lines.push(format!(
            "{:>8.3} {:>10} {:>12} {:>12.0} {:>10} {:>14}",
            row.t,
            row.messages,
            row.rate_asked
                .map_or("-".to_string(), |r| format!("{r:.0}")),
            row.msgs_per_sec,
            row.p99_us.map_or("-".to_string(), |v| v.to_string()),
            row.p99_corrected_us
                .map_or("-".to_string(), |v| v.to_string())
        ));
        for line in lines {
            match &bar {
                Some(b) => b.println(line),
                None => crate::out::eprintln_quiet!("{line}"),
            }
        }
    }))
}

/// Prompts on stderr, answers from stdin; an empty answer takes the default.
struct Asker;

impl Asker {
    fn line(&self, question: &str, default: &str) -> anyhow::Result<String> {
        crate::out::stderr(&format!("{question} [{default}]: "));
        std::io::stderr().flush()?;
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        let s = s.trim();
        Ok(if s.is_empty() {
            default.to_string()
        } else {
            s.to_string()
        })
    }

    fn text(&self, question: &str, default: &str) -> anyhow::Result<String> {
        self.line(question, default)
    }

    fn number(&self, question: &str, default: u64) -> anyhow::Result<u64> {
        let s = self.line(question, &default.to_string())?;
        s.parse()
            .map_err(|_| UsageError(format!("'{s}' is not a whole number")).into())
    }
}
