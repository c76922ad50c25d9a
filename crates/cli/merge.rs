//! `ringport merge LOG...`: add up the `--hdr-log` files of several
//! generators (see `ringport_load::merge` for how) and print the summary
//! of one `stress` run, the series, and JSON or CSV.
//!
//! Exit status: 0 when merged; 2 for a usage error (no file, a bad flag);
//! 1 when a file cannot be read or is not an interval log.

use crate::args;
use crate::paths::{self, is_stdout};
use anyhow::Context;
use ringport_load::hdrlog::read_log;
use ringport_load::merge::{log_interval_s, merge};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `ringport merge`.
#[derive(clap::Args)]
pub struct Args {
    /// The interval logs, one per generator (`stress --hdr-log`).
    #[arg(value_name = "LOG", required = true)]
    logs: Vec<PathBuf>,
    /// The series' bucket, such as 1s: each interval goes into the bucket
    /// that holds its midpoint [default: the first log's interval].
    #[arg(long, value_name = "DURATION", value_parser = args::positive_duration)]
    interval: Option<Duration>,
    /// Latency percentiles to print and store besides p50, p90, p99, p99.9
    /// and max, such as 99.99.
    #[arg(long, value_name = "LIST", value_parser = args::percentiles)]
    percentiles: Option<args::List<f64>>,
    /// Also write the merged summary and series as JSON to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write the series as CSV, a row per bucket, to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::init_logging(false);
    // A log given twice would count its messages twice; an output over a
    // log would destroy it.
    let logs = a.logs.iter().map(|p| ("LOG", p.as_path()));
    let outputs = [("--json", &a.json), ("--csv", &a.csv)]
        .into_iter()
        .filter_map(|(flag, p)| Some((flag, p.as_deref()?)));
    paths::distinct(&logs.chain(outputs).collect::<Vec<_>>())?;
    let mut logs = Vec::with_capacity(a.logs.len());
    for path in &a.logs {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let log = read_log(&bytes).with_context(|| {
            format!(
                "{} is not a usable HdrHistogram interval log",
                path.display()
            )
        })?;
        logs.push((path.display().to_string(), log));
    }
    let interval_s = match a.interval {
        Some(d) => d.as_secs_f64(),
        None => log_interval_s(&logs).unwrap_or(1.0),
    };
    let percentiles = a.percentiles.map(|l| l.0).unwrap_or_default();
    let merged = merge(&logs, interval_s, &percentiles)?;
    let text = format!("{}\n{}", merged.series_text(), merged.to_text());
    if is_stdout(&a.json) || is_stdout(&a.csv) {
        crate::out::stderr(&text);
    } else {
        crate::out::stdout(&text).context("cannot write the summary to stdout")?;
    }
    if let Some(path) = &a.json {
        write_to(path, &(serde_json::to_string_pretty(&merged)? + "\n"))?;
    }
    if let Some(path) = &a.csv {
        write_to(path, &merged.series_csv())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `text` to `path`, or to stdout for `-`.
fn write_to(path: &Path, text: &str) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return crate::out::stdout(text).context("cannot write to stdout");
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
