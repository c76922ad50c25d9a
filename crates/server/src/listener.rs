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
    #[error("cannot listen on {addr}: address already in use (is another server running there?)")]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address is not one of this machine's, or not one a socket can
    /// listen on as written (a link-local IPv6 address without its scope).
    #[error("cannot listen on {addr}: not an address of this machine{hint}; use one that is, such as 127.0.0.1:0 or [::1]:0")]
    AddrNotAvailable {
        /// The address asked for.
        addr: SocketAddr,
        /// More on why, where there is more to say.
        hint: &'static str,
    },
    /// The process has no descriptor left for the listener(s).
    #[error("cannot listen on {addr}: out of file descriptors")]
    NoDescriptors {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Anything else: permission, ….
    #[error("cannot listen on {addr}: {error}")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error (in the message, so not a `source`: it
        /// would be printed twice).
        error: io::Error,
    },
}

impl ListenError {
    fn new(addr: SocketAddr, error: io::Error) -> Self {
        let link_local = matches!(addr, SocketAddr::V6(a) if a.ip().is_unicast_link_local() && a.scope_id() == 0);
        match error.kind() {
            io::ErrorKind::AddrInUse => ListenError::AddrInUse { addr },
            io::ErrorKind::AddrNotAvailable | io::ErrorKind::InvalidInput => {
                ListenError::AddrNotAvailable {
                    addr,
                    hint: if link_local {
                        " (a link-local IPv6 address needs its interface's scope, such as [fe80::1%2]:0)"
                    } else {
                        ""
                    },
                }
            }
            _ if crate::sys::is_out_of_descriptors(&error) => ListenError::NoDescriptors { addr },
            _ => ListenError::Other { addr, error },
        }
    }
}

/// Bind and listen on `addr` (a blocking socket).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    listen(addr, false)
}

/// The first listener of a group that several workers accept on, each on its
/// own listener (see [`join_group`]).
///
/// On Unix the group is a `SO_REUSEPORT` set, and the kernel spreads new
/// connections across it. `SO_REUSEPORT` would also let this server join a
/// group that another server (of the same user) already listens in, silently
/// sharing its clients; so a fixed port is first checked with a plain bind,
/// which fails if anyone listens there. The check and the real bind are two
/// steps, so a server started in between could still slip in; that window is
/// a few microseconds long. Port 0 needs no check: the kernel never picks a
/// port that a listener holds.
pub fn bind_group(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    if !crate::sys::REUSE_PORT {
        return listen(addr, false);
    }
    if addr.port() != 0 {
        probe(addr)?;
    }
    listen(addr, true)
}

/// One more listener for the group that `first` (made by [`bind_group`])
/// leads, on the same address and port, for one more worker.
///
/// Without `SO_REUSEPORT` the workers share `first`'s accept queue through a
/// duplicated handle instead: each is woken for a new connection, one wins
/// the accept and the others see `WouldBlock`.
pub fn join_group(first: &TcpListener) -> Result<TcpListener, ListenError> {
    // The resolved address: with port 0 asked for, the port the kernel picked.
    let addr = first.local_addr().expect("a bound listener has an address");
    if crate::sys::REUSE_PORT {
        listen(addr, true)
    } else {
        first.try_clone().map_err(|e| ListenError::new(addr, e))
    }
}

/// Fail as a plain listener would if `addr` is already listened on.
fn probe(addr: SocketAddr) -> Result<(), ListenError> {
    let err = |e| ListenError::new(addr, e);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    // Same options as the real listener, so TIME_WAIT leftovers do not fail
    // the check while a live listener does.
    crate::sys::set_listener_options(&socket, false).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)
}

fn listen(addr: SocketAddr, reuseport: bool) -> Result<TcpListener, ListenError> {
    let err = |e| ListenError::new(addr, e);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    crate::sys::set_listener_options(&socket, reuseport).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_have_nodelay() {
        // From the listener where it is inherited, else set as the models
        // set it: either way it must be on.
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = bind(addr.parse().unwrap()) else {
                continue; // no IPv6 loopback here
            };
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            crate::sys::nodelay_if_not_inherited(|| accepted.set_nodelay(true));
            assert!(accepted.nodelay().unwrap(), "{addr}: TCP_NODELAY is off");
        }
    }
}
