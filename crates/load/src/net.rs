//! Opening connections: optionally bound to a chosen source address first,
//! so that one process can hold more connections to one server than a
//! single source address has ephemeral ports.

use crate::sys::connect_in_progress;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The source address of connection `id`: the list in turn, or the kernel's choice.
pub(crate) fn source_for(sources: &[IpAddr], id: u64) -> Option<IpAddr> {
    (!sources.is_empty()).then(|| sources[(id % sources.len() as u64) as usize])
}

fn socket_for(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = source {
        // Port 0: the kernel picks a free port for this source address.
        socket
            .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot bind source address {ip}: {e}"))
            })?;
    }
    Ok(socket)
}

/// Start a non-blocking connect; the caller waits for writability.
pub(crate) fn start_connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> io::Result<std::net::TcpStream> {
    let socket = socket_for(addr, source)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if connect_in_progress(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Connect, blocking for at most `timeout`.
pub(crate) fn connect_blocking(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let socket = socket_for(addr, source)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_used_in_turn() {
        let ips: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
        assert_eq!(source_for(&ips, 0), Some(ips[0]));
        assert_eq!(source_for(&ips, 1), Some(ips[1]));
        assert_eq!(source_for(&ips, 2), Some(ips[0]));
        assert_eq!(source_for(&[], 5), None);
    }
}
