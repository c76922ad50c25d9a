//! `ringport stress`: the article's stress client, verifying every byte.

use crate::{args, UsageError};
use anyhow::Context;
use ringport_load::{Config, Payload, Report, StopWhen};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The article's default message.
const DEFAULT_MESSAGE: &str = "Hello from ringport";
/// Messages per connection when none is asked for and nobody can be asked.
const DEFAULT_COUNT: u64 = 100;

/// Flags of `ringport stress`.
#[derive(clap::Args)]
pub struct Args {
    /// The echo server.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:5150", value_parser = args::socket_addr)]
    addr: SocketAddr,
    /// Concurrent connections.
    #[arg(long, short, value_name = "M", default_value_t = 1)]
    connections: usize,
    /// Messages per connection [default: asked when stdin is a terminal, else 100].
    #[arg(long, short = 'n', value_name = "N", conflicts_with = "duration")]
    count: Option<u64>,
    /// Send for this long instead of a count, such as 10s.
    #[arg(long, short, value_name = "DURATION", value_parser = args::duration)]
    duration: Option<Duration>,
    /// The text of each message: message k on connection i is "<k>. Thread <i> - <TEXT>".
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    /// Messages in flight per connection.
    #[arg(long, value_name = "P", default_value_t = 1)]
    pipeline: usize,
    /// Threads driving the connections [default: number of CPUs].
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// A connection whose connect or echo takes longer than this fails.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = args::duration)]
    timeout: Duration,
    /// Also write the report as JSON to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::init_logging(false);
    let mut config = Config::new(a.addr);
    let mut message = a.message.clone();
    let mut connections = a.connections;
    let stop = match (a.count, a.duration) {
        (Some(n), _) => StopWhen::Count(n),
        (None, Some(d)) => StopWhen::Duration(d),
        (None, None) if std::io::stdin().is_terminal() => {
            // The article's three questions.
            let ask = Asker::new();
            message = Some(ask.text(
                "Message to send",
                message.as_deref().unwrap_or(DEFAULT_MESSAGE),
            )?);
            connections = ask.number("Number of connections", connections as u64)? as usize;
            StopWhen::Count(ask.number("Number of times to send it", DEFAULT_COUNT)?)
        }
        (None, None) => StopWhen::Count(DEFAULT_COUNT),
    };
    if connections == 0 {
        return Err(UsageError("--connections must be at least 1".into()).into());
    }
    if a.pipeline == 0 {
        return Err(UsageError("--pipeline must be at least 1".into()).into());
    }
    config.connections = connections;
    config.stop = stop;
    config.pipeline = a.pipeline;
    config.timeout = a.timeout;
    if let Some(t) = a.threads {
        config.threads = t.max(1);
    }
    config.payload = Payload::Template(message.unwrap_or_else(|| DEFAULT_MESSAGE.into()));

    let report = ringport_load::run(&config)?;
    let json_to_stdout = a.json.as_deref() == Some(std::path::Path::new("-"));
    if json_to_stdout {
        eprint!("{}", report.to_text());
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = &a.json {
        write_json(&report, path)?;
    }
    if report.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "{} of {} messages verified: {} mismatched, {} errors",
            report.messages_verified,
            expected_messages(&config)
                .map_or(report.messages_sent, |n| n.max(report.messages_sent)),
            report.mismatches,
            report.errors
        )
    }
}

fn expected_messages(config: &Config) -> Option<u64> {
    match config.stop {
        StopWhen::Count(n) => Some(n * config.connections as u64),
        StopWhen::Duration(_) => None,
    }
}

fn write_json(report: &Report, path: &std::path::Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)? + "\n";
    if path == std::path::Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    } else {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Prompts on stderr, answers from stdin; an empty answer takes the default.
struct Asker;

impl Asker {
    fn new() -> Self {
        Asker
    }

    fn line(&self, question: &str, default: &str) -> anyhow::Result<String> {
        eprint!("{question} [{default}]: ");
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
