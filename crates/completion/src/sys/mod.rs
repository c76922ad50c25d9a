//! The one place where the operating system is chosen.
//!
//! Every backend provides: `Port` (new, features, accept, recv, send, close,
//! cancel, wait, data, release, waker, in_flight), `Waker` (wake),
//! `CompletionBuf`, `RawSocket`, and the free functions `probe`,
//! `is_cancelled`, `set_nodelay`, `peer_addr`, `raw_listener`, `close_now`.

#[cfg(target_os = "linux")]
mod uring;
#[cfg(target_os = "linux")]
pub use uring::RawSocket;
#[cfg(target_os = "linux")]
pub(crate) use uring::*;

#[cfg(not(target_os = "linux"))]
compile_error!("the completion port needs io_uring (Linux); IOCP (Windows) is not written yet");
