//! `ringport`: TCP echo servers in five architectures, a load generator that
//! tells the truth about latency, and a bench that compares them.
//!
//! This binary is thin: it parses flags, sets up logging and signals, and
//! calls into `ringport-server`, `ringport-load` and `ringport-bench`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod bench;
mod client;
mod find_rate;
mod merge;
mod metrics;
mod out;
mod paths;
mod serve;
mod signals;
mod stress;

// Only with `--features mimalloc`, for comparing allocators; the release
// archives keep the platform's malloc (musl's in the static Linux build).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Echo servers in five architectures, side by side.
#[derive(Parser)]
#[command(name = "ringport", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one TCP echo server (RFC 862).
    Serve(serve::Args),
    /// Send lines to an echo server and print what comes back.
    Client(client::Args),
    /// Load an echo server and verify every byte it echoes.
    Stress(stress::Args),
    /// Run every model side by side on the same load: a table and charts.
    Bench(Box<bench::Args>),
    /// Add up the --hdr-log files of several `stress` generators exactly.
    Merge(merge::Args),
}

/// An error the user can fix by changing the command line or environment;
/// exits with status 2 like clap's own usage errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    raise_fd_limit();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Client(a) => client::run(a),
        Command::Stress(a) => stress::run(a),
        Command::Bench(a) => bench::run(*a),
        Command::Merge(a) => merge::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // (A closed stdout never gets here: every write to it drops
            // output nobody reads, and the status stays what the work earned.)
            out::eprintln_quiet!("ringport: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// A bad flag or value: one line on stderr, exit 2, before anything starts.
/// `--help` and `--version` print as clap writes them, and exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
        // "were not provided:" introduces the list on the next lines.
        .replace(":; ", ": ");
    out::eprintln_quiet!("ringport: {line} (see --help)");
    ExitCode::from(2)
}

/// Servers and load generators hold a descriptor per connection: lift the
/// soft limit to the hard one, as a demanding user would by hand.
fn raise_fd_limit() {
    if let Err(e) = ringport_load::raise_fd_limit() {
        out::eprintln_quiet!("ringport: warning: cannot raise the open-file limit: {e}");
    }
}

/// Log to stderr: the article's events with `-v`, warnings otherwise.
/// `RUST_LOG` overrides either.
pub fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}
