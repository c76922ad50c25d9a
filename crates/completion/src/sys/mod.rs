//! The one place where the operating system is chosen.
//!
//! Every backend provides: `Port` (new, features, try_share, accept, recv,
//! recv_once, send, close, cancel, poll, wait, data, release, waker, in_flight), `PortShare`
//! (into_port), `Waker` (wake), `Relay` (new, capacity, fill, drain), `CompletionBuf`, `OpKey` (what an `OpId` holds), `RawSocket`, and
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

#[cfg(all(unix, not(target_os = "linux")))]
mod unsupported;
#[cfg(all(unix, not(target_os = "linux")))]
pub use unsupported::RawSocket;
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) use unsupported::*;

// `Relay` on Linux is the uring backend's; elsewhere there is none.
#[cfg(not(target_os = "linux"))]
mod no_relay;
#[cfg(not(target_os = "linux"))]
pub(crate) use no_relay::Relay;

/// Socket helpers over raw descriptors, for every Unix backend.
#[cfg(unix)]
mod fd;

#[cfg(not(any(unix, windows)))]
compile_error!("ringport builds for Unix and Windows");
