//! `ringport serve`: bind, print the readiness line, serve until a signal.

use crate::{args, signals, UsageError};
use ringport_server::{
    Coalesce, Config, ListenError, Model, Server, ServerError, Shutdown, Spread, Stats,
};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Flags of `ringport serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The architecture: blocking, threaded, epoll, tokio, completion, or auto
    /// (completion where its port works: io_uring on Linux, IOCP on Windows; else epoll).
    #[arg(long, short, value_name = "M", default_value = "auto")]
    model: Model,
    /// The address to accept on: HOST:PORT, [::1]:PORT; port 0 picks a free one.
    #[arg(long, short, value_name = "ADDR", default_value = "127.0.0.1:5150", value_parser = args::socket_addr)]
    listen: SocketAddr,
    /// Worker threads for the event-driven models [default: number of CPUs]. A shared completion port (IOCP) runs twice this many.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// How the completion model spreads connections over its workers, each with its own port [default: reuseport]. Not on Windows, where the workers share one IOCP port and one listener.
    #[arg(long, value_enum, value_name = "HOW")]
    spread: Option<SpreadArg>,
    /// Completion model: wait up to this long (e.g. 100us) for a batch of
    /// completions before handling them, for up to this much added latency;
    /// never waits with nothing in flight. On a 2-vCPU VM at 50k msgs/s it
    /// saved only 7-9% of the server's CPU (docs/BENCHMARKS.md): measure it
    /// on your load. Without it a worker batches only while it relays bulk
    /// connections (up to 500us, for one completion per two relays); 0 never
    /// batches. Needs io_uring min_wait (Linux 6.12+); ignored without it.
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    coalesce: Option<std::time::Duration>,
    /// Completion model (io_uring): copy every byte through the port's
    /// buffers. By default a bulk connection (a receive of 32 KiB or more)
    /// is relayed inside the kernel, socket → pipe → socket with splice(2),
    /// and its bytes never enter the server's memory.
    #[arg(long)]
    no_relay: bool,
    /// Completion model (io_uring): each worker's ring submits through a
    /// kernel thread that polls its submission queue (SQPOLL) and sleeps
    /// after this long without work (whole milliseconds, e.g. 2ms). No
    /// system call to submit while it polls, but the thread spins on a CPU
    /// of its own: give the server one more CPU per worker. Its CPU is the
    /// server's in every figure. It rules out DEFER_TASKRUN and quiet sends.
    #[arg(long, value_name = "IDLE", value_parser = args::duration)]
    sqpoll: Option<std::time::Duration>,
    /// Serve at most N connections at once; each one over the limit is closed
    /// at once and counted in the summary. The blocking model serves one at a
    /// time anyway, so for it any N ≥ 1 changes nothing.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Close a connection that sends nothing and takes none of its echo for
    /// this long (e.g. 30s). Off by default, or with 0.
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    idle_timeout: Option<std::time::Duration>,
    /// On SIGINT/SIGTERM, keep sending the echoes already owed to clients that
    /// still read for up to this long, then close everything (0: close at
    /// once, owed echoes dropped). A second signal exits at once.
    #[arg(long, value_name = "DURATION", value_parser = args::duration, default_value = "5s")]
    drain_timeout: std::time::Duration,
    /// Print each client's events: connected, bytes received, disconnected.
    #[arg(long, short)]
    verbose: bool,
}

/// `--spread` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SpreadArg {
    /// One SO_REUSEPORT listener per worker; the kernel picks the worker.
    Reuseport,
    /// One acceptor thread hands connections to the workers in turn.
    Handoff,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::init_logging(a.verbose);
    let config = server_config(&a)?;
    let (model, why) = a.model.resolve();
    completion_flags_need_completion(&a, model)?;
    check_descriptors(model, &config)?;
    if a.spread.is_some() && model == Model::Completion {
        warn_if_spread_ignored();
    }
    let server = bind(model, a.listen, config)?;
    if let Some(why) = why {
        // stderr: stdout's first line is reserved for the readiness line;
        // and only once bound, so that a bad address is the only line.
        crate::out::eprintln_quiet!("ringport: model auto: {why}");
    }
    let shutdown = Shutdown::new();
    signals::install(shutdown.clone())?;
    let stats = Stats::new();
    // The readiness line is a contract with scripts, tests and `bench`:
    // exactly this text, once, flushed, only after the kernel accepts.
    // A closed stdout does not stop the server: it serves on unannounced.
    crate::out::stdout(&format!("listening on {}\n", server.local_addr()))?;
    tracing::info!(
        "model {} serving on {}",
        server.model(),
        server.local_addr()
    );
    server.run(shutdown, &stats)?;
    crate::out::stdout(&format!("{}\n", stats.summary()))?;
    Ok(ExitCode::SUCCESS)
}

/// The server's configuration from the flags; a usage error for values
/// out of range.
fn server_config(a: &Args) -> anyhow::Result<Config> {
    let mut config = Config {
        verbose: a.verbose,
        spread: match a.spread {
            None | Some(SpreadArg::Reuseport) => Spread::ReusePort,
            Some(SpreadArg::Handoff) => Spread::Handoff,
        },
        coalesce: match a.coalesce {
            None => Coalesce::WhileRelaying,
            Some(d) if d.is_zero() => Coalesce::Never,
            Some(d) => Coalesce::Always(d),
        },
        relay: !a.no_relay,
        sqpoll: a.sqpoll,
        max_connections: a.max_connections,
        idle_timeout: a.idle_timeout.filter(|d| !d.is_zero()),
        drain_timeout: a.drain_timeout,
        ..Config::default()
    };
    // The kernel takes the idle time in whole milliseconds, and 0 there
    // means its own default (a second): under 1ms is refused, not rounded.
    if let Some(d) = a.sqpoll.filter(|d| d.as_millis() == 0) {
        return Err(UsageError(format!(
            "--sqpoll {}: give the polling thread's idle time, 1ms or more (without --sqpoll, no thread)",
            humantime::format_duration(d)
        ))
        .into());
    }
    if a.max_connections == Some(0) {
        return Err(UsageError("--max-connections must be at least 1".into()).into());
    }
    if let Some(n) = a.workers {
        if n == 0 || n > ringport_server::MAX_WORKERS {
            return Err(UsageError(format!(
                "--workers {n} is out of range: write 1 to {} (each worker is a thread with its own event loop, and more than the CPUs gives no more parallelism)",
                ringport_server::MAX_WORKERS
            ))
            .into());
        }
        config.workers = n;
    }
    Ok(config)
}

/// The flags that only the completion model reads, as given.
fn completion_flags(a: &Args) -> Vec<&'static str> {
    [
        (a.spread.is_some(), "--spread"),
        (a.coalesce.is_some(), "--coalesce"),
        (a.no_relay, "--no-relay"),
        (a.sqpoll.is_some(), "--sqpoll"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect()
}

/// A completion flag with another model would change nothing that was
/// asked for: refuse it rather than run something else in silence.
fn completion_flags_need_completion(a: &Args, model: Model) -> Result<(), UsageError> {
    let given = completion_flags(a);
    if given.is_empty() || model == Model::Completion {
        return Ok(());
    }
    let which = match a.model {
        Model::Auto => format!("model auto chose {model} here"),
        _ => format!("this is model {model}"),
    };
    Err(UsageError(format!(
        "{} {} for the completion model only, and {which}",
        given.join(", "),
        if given.len() == 1 { "is" } else { "are" }
    )))
}

/// Descriptors a server holds besides its workers': stdio, the signal
/// thread's pipe, and room for a few clients.
const SPARE_FDS: u64 = 16;
/// Each worker's: its listener, its poller or ring, and its waker.
const FDS_PER_WORKER: u64 = 3;

/// Refuse, before anything starts, a descriptor limit under what the server
/// needs to start and serve a few clients: past the listening line, a
/// poller or ring that cannot be made stops the server, and one step above
/// that it would accept no one at all.
fn check_descriptors(model: Model, config: &Config) -> Result<(), UsageError> {
    let Ok(limit) = ringport_load::raise_fd_limit() else {
        return Ok(());
    };
    let workers = if model.has_workers() {
        config.workers as u64
    } else {
        1
    };
    let need = SPARE_FDS + FDS_PER_WORKER * workers;
    if limit >= need {
        return Ok(());
    }
    let (with, fewer) = if model.has_workers() {
        (
            format!(" with {workers} worker(s)"),
            " or ask for fewer --workers",
        )
    } else {
        (String::new(), "")
    };
    Err(UsageError(format!(
        "the open-file limit is {limit}, and model {model}{with} needs about {need} descriptors to start and serve a few clients: raise it (ulimit -n){fewer}"
    )))
}

/// `--spread` with the completion model: say so when it is ignored.
fn warn_if_spread_ignored() {
    // Spreading is a choice between ports; a shared port has only one.
    if let Ok(f) = ringport_completion::probe(&ringport_completion::PortConfig::default()) {
        if f.shared_port {
            crate::out::eprintln_quiet!(
                "ringport: --spread is not available on this OS: the workers share one {} port and one listener; ignored",
                f.backend
            );
        }
    }
}

/// Bind the server; the errors the user can fix by choosing another address
/// or model are usage errors (exit 2).
fn bind(model: Model, listen: SocketAddr, config: Config) -> anyhow::Result<Server> {
    let sqpoll = config.sqpoll.is_some();
    match Server::bind(model, listen, config) {
        Ok(s) => Ok(s),
        // The library says what went wrong; the flags to change are ours to name.
        Err(ServerError::Listen(e)) => {
            let hint = match &e {
                ListenError::AddrInUse { .. } => "; pick another port with --listen",
                ListenError::NoDescriptors { .. } => {
                    "; raise the limit (ulimit -n) or ask for fewer --workers"
                }
                _ => "",
            };
            Err(UsageError(format!("{e}{hint}")).into())
        }
        Err(ServerError::CompletionUnavailable(e)) if sqpoll => {
            Err(UsageError(format!("{e}; run without --sqpoll")).into())
        }
        Err(ServerError::CompletionUnavailable(e)) => {
            Err(UsageError(format!(
                "{e}; use --model epoll, or --model auto to take the completion model only where it works"
            ))
            .into())
        }
        Err(e) => Err(e.into()),
    }
}
