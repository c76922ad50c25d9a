//! Tests that read a server's CPU while none of its peers can move, in a
//! binary of their own: cargo runs test binaries one after another, so no
//! other test's flood shares the machine's TCP memory or CPUs with them
//! (`stall.rs` says why that matters).

// `util` serves both test binaries; this one uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod util;

mod stall;
