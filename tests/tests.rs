//! Integration tests over real loopback sockets, compiled as one binary.
//!
//! The server models are listed once, in `util` (`for_each_model!` and its
//! concurrent subset); every per-model test (`echo.rs`, `churn.rs`,
//! `limits.rs`, `memory.rs`, and `stall.rs` in `quiet.rs`) is generated from that list, one
//! `#[test]` per model, so a new model gets them all by adding one word there.

#[macro_use]
mod util;

mod bench;
mod capacity;
mod churn;
mod cli;
mod client;
mod completion;
mod echo;
mod hdrlog;
mod limits;
mod memory;
mod metrics;
mod misbehave;
mod stress;
