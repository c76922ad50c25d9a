//! The load generator behind `ringport stress` and `ringport bench`.
//!
//! Many connections per thread on a readiness loop (mio): each thread owns its
//! connections, its own HdrHistogram and its own counters, and they are merged
//! once at the end, so memory stays bounded however long the run. Every echoed
//! byte is compared with what was sent, from the byte stream, never assuming
//! that one `read` returns one message.
#![deny(missing_docs, rust_2018_idioms)]

mod engine;
pub mod payload;
pub mod report;

pub use engine::{run, Config, StopWhen};
pub use payload::Payload;
pub use report::{ErrorKind, Report};

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot be run.
    #[error("{0}")]
    Config(String),
    /// A thread or poller could not be created.
    #[error("{context}: {source}")]
    Io {
        /// What was being set up.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
