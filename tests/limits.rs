//! The servers at their limits: the threaded drain at the descriptor limit, idle cost, bad values.

#[allow(unused_imports)]
use crate::util::{run, Server};
