//! Integration tests over real loopback sockets, compiled as one binary.
//!
//! `echo.rs` holds the per-model suite: every test there runs once for every
//! server model through `model_tests!`, so a new model gets the whole suite
//! by adding one line.

mod util;

mod bench;
mod churn;
mod cli;
mod client;
mod completion;
mod echo;
mod hdrlog;
mod limits;
mod memory;
mod misbehave;
mod stall;
mod stress;
