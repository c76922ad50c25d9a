//! Listener setup shared by every model.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// The accept backlog. The kernel clamps it to `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another socket already holds the address.
    #[error("cannot listen on {addr}: address already in use (is another server running? pick another port with --listen)")]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address is not one of this machine's.
    #[error("cannot listen on {addr}: address not available on this machine")]
    AddrNotAvailable {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Anything else: permission, out of descriptors, ….
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
}

impl ListenError {
    fn new(addr: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::AddrInUse => ListenError::AddrInUse { addr },
            io::ErrorKind::AddrNotAvailable => ListenError::AddrNotAvailable { addr },
            _ => ListenError::Other { addr, source },
        }
    }
}

/// Bind and listen on `addr` (a blocking socket).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    listen(addr, false)
}

/// Bind another listener on the same address with `SO_REUSEPORT`, so the
/// kernel spreads new connections across several listeners (one per worker).
/// The first listener must have been made with this function too.
///
/// Windows has no such option (its `SO_REUSEADDR` lets a second socket steal
/// the port rather than share the load), so there this fails with
/// `Unsupported`; the completion model does not ask for it there, because
/// its workers share one port and one listener.
pub fn bind_reuseport(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    if cfg!(unix) {
        listen(addr, true)
    } else {
        Err(ListenError::Other {
            addr,
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT is not available on this OS",
            ),
        })
    }
}

fn listen(addr: SocketAddr, reuseport: bool) -> Result<TcpListener, ListenError> {
    let err = |e| ListenError::new(addr, e);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    // On Unix SO_REUSEADDR only lets a restarted server bind over TIME_WAIT
    // connections; it never lets two listeners share a port. On Windows it
    // would, so it is left off there.
    #[cfg(unix)]
    socket.set_reuse_address(true).map_err(err)?;
    #[cfg(unix)]
    if reuseport {
        socket.set_reuse_port(true).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = reuseport;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)?;
    Ok(socket.into())
}
