//! The one place where the operating system is chosen.
//!
//! Every backend provides: `Port` (new, features, try_share, accept, recv,
//! recv_once, send, close, cancel, wait, data, release, waker, in_flight), `PortShare`
//! (into_port), `Waker` (wake), `CompletionBuf`, `OpKey` (what an `OpId` holds), `RawSocket`, and
//! the free functions `probe`, `is_cancelled`, `is_out_of_buffers`,
//! `cancelled_error`, `set_nodelay`, `peer_addr`, `shutdown`, `raw_listener`,
//! `into_raw_socket`, `close_now`.

#[cfg(target_os = "linux")]
mod uring;
#[cfg(target_os = "linux")]
pub use uring::RawSocket;
#[cfg(target_os = "linux")]
pub(crate) use uring::*;

#[cfg(windows)]
mod iocp;
#[cfg(windows)]
pub use iocp::RawSocket;
#[cfg(windows)]
pub(crate) use iocp::*;

#[cfg(not(any(target_os = "linux", windows)))]
compile_error!("the completion port needs io_uring (Linux) or IOCP (Windows)");
