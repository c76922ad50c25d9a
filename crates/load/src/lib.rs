//! The load generator behind `ringport stress` and `ringport bench`.
//!
//! Many connections per thread on a readiness loop (mio): each thread owns its
//! connections, its own HdrHistograms and its own counters, and they are
//! merged once at the end, so memory stays bounded however long the run and
//! nothing is shared on the per-message path. Every echoed byte is compared
//! with what was sent, from the byte stream, never assuming that one `read`
//! returns one message.
//!
//! A run is a closed loop (each echo triggers the next message, `pipeline`
//! in flight per connection) or an open loop (`rate` messages per second on
//! a fixed schedule, with latency also measured from when each message was
//! due, which corrects coordinated omission). A warm-up is excluded from
//! every figure. A blocking thread-per-connection engine is kept as the
//! baseline that the event-driven one is measured against. A second
//! many-connection engine drives the same connections on ringport's own
//! completion port (io_uring, Linux: [`Engine::Completion`]); both share one
//! connection protocol (`exchange.rs`).
//!
//! Several generators combine through HdrHistogram's standard interval log
//! ([`hdrlog`]: each run writes one, starting at an agreed wall-clock time)
//! and an exact merge of the logs ([`merge`]).
//!
//! ```no_run
//! use ringport_load::{run, Config, StopWhen};
//! let mut config = Config::new("127.0.0.1:5150".parse().unwrap());
//! config.connections = 64;
//! config.stop = StopWhen::Duration(std::time::Duration::from_secs(10));
//! let report = run(&config).unwrap();
//! println!("{}", report.to_text());
//! ```
#![deny(missing_docs, rust_2018_idioms)]

pub mod capacity;
mod completion;
mod config;
mod cursor;
mod diagnose;
mod engine;
mod events;
mod exchange;
pub mod hdrlog;
mod interrupt;
pub mod merge;
mod net;
mod outcome;
pub mod payload;
pub mod profile;
pub mod progress;
pub mod report;
pub mod schedule;
mod series;
mod start;
mod stats;
mod steps;
mod sys;
mod tally;
mod threads;

pub use config::{
    Config, Engine, IntervalSink, StopWhen, DEFAULT_CLOSE_GRACE, MAX_START_AHEAD,
    THREADS_MAX_MESSAGE,
};
pub use diagnose::{Mismatch, MismatchKind};
pub use engine::run;
pub use hdrlog::HdrLog;
pub use interrupt::Interrupt;
pub use payload::{Messages, Payload, MAX_MESSAGE_SIZE};
pub use profile::Rate;
pub use progress::{LiveLatency, Phase, Progress, LATENCY_BUCKETS_US};
pub use report::{ErrorKind, IntervalStat, Latency, Percentiles, Report, Spread, StepStat};
pub use sys::raise_fd_limit;

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot be run; the message names the flag to change.
    #[error("{0}")]
    Config(String),
    /// A thread or poller could not be created.
    #[error("{context}: {error}")]
    Io {
        /// What was being set up.
        context: String,
        /// The underlying error (in the message, so not a `source`: a
        /// report that prints the chain would say it twice).
        error: std::io::Error,
    },
}
