//! `ringport bench`: every server model side by side under the same load.
//!
//! Each model runs as its own child process (`ringport serve`), pinned to
//! CPUs apart from the load, which runs in this process on the load engine
//! of `ringport-load`. Repetitions are interleaved across models and cells,
//! each figure is the median of its repetitions, and the results are written
//! as JSON, CSV, a Markdown table and two SVG charts.
//!
//! | file              | what it holds                                          |
//! |-------------------|--------------------------------------------------------|
//! | `plan.rs`         | the plan: CPUs for each side, the flags, their checks  |
//! | `preflight.rs`    | how busy the pinned CPUs were before the bench         |
//! | `run.rs`          | orchestration: every run, retries, aggregation         |
//! | `results.rs`      | what results.json holds: machine, settings, rows       |
//! | `matrix.rs`       | targets, cells, the interleaved schedule, `--server` specs |
//! | `cpus.rs`         | CPU lists (`0-3,6`) and the default server/load split  |
//! | `server.rs`       | start a server, wait until it accepts, stop it         |
//! | `measure.rs`      | one run: warm-up, measured load, CPU and memory samples |
//! | `figure.rs`       | the per-run figures, declared once                     |
//! | `order_stats.rs`  | medians, their intervals, ratios: pure arithmetic      |
//! | `notes.rs`        | a row's notes, typed, and the one place they become text |
//! | `stats.rs`        | one row per target and cell, with spreads and ratios   |
//! | `output/`         | results.csv, the table, the verdict and why, the cost breakdown, summary.md |
//! | `report.rs`       | report.html                                            |
//! | `chart.rs`        | chart.svg and latency.svg                              |
//! | `files.rs`        | writes every file of a bench                           |
//! | `sys/`            | everything OS-specific: pinning, /proc, cgroups, signals |
#![deny(missing_docs, rust_2018_idioms)]

pub mod capacity;
pub mod chart;
pub mod cpus;
pub mod curves;
pub mod figure;
pub mod files;
pub mod matrix;
pub mod measure;
pub mod notes;
pub mod order_stats;
pub mod output;
mod plan;
mod preflight;
pub mod report;
mod results;
mod run;
pub mod scale;
mod server;
pub mod stats;
mod sys;

pub use cpus::CpuSet;
pub use figure::Figure;
pub use matrix::{Cell, Target};
pub use plan::{CpuPlan, CpuSplit, Plan, SplitChoice};
pub use preflight::Preflight;
pub use results::{ConfigRecord, OutsideServer, Results};
pub use run::{run, Event};
pub use stats::Row;
pub use sys::{CpuCap, Machine, UNAVAILABLE};

/// Errors that stop a bench.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The flags describe a bench that cannot run.
    #[error("{0}")]
    Config(String),
    /// A server under test did not start or never accepted. Inside a bench
    /// this is recorded in that target's rows and the bench goes on.
    #[error("{target}: {why}")]
    Server {
        /// The model or `--server` name.
        target: String,
        /// What happened, with the server's last stderr lines.
        why: String,
    },
    /// The load engine could not run (threads, poller).
    #[error("load against {target}: {source}")]
    Load {
        /// The model or `--server` name.
        target: String,
        /// The engine's error.
        source: ringport_load::LoadError,
    },
    /// A file or process could not be handled.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and on which path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("cannot draw {file}: {why}")]
    Chart {
        /// The chart's file name.
        file: String,
        /// The drawing library's message.
        why: String,
    },
}

/// SIGTERM every server this bench is running (an outside server's whole
/// process group), for a caller that is being interrupted and will exit.
pub fn stop_all_servers() {
    server::stop_all();
    // A cgroup of `--server-cpu-cap` is removable once its servers exit.
    sys::remove_caps(std::time::Duration::from_secs(3));
}
