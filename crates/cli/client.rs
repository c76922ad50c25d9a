//! `ringport client`: the article's one-to-one client.

use crate::args;
use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `ringport client`.
#[derive(clap::Args)]
pub struct Args {
    /// The echo server.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:5150", value_parser = args::socket_addr)]
    addr: SocketAddr,
    /// Send this text once, print the echo and exit.
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    /// How long to wait for the connection and for each echo.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = args::duration)]
    timeout: Duration,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::init_logging(false);
    let mut stream = TcpStream::connect_timeout(&a.addr, a.timeout).with_context(|| {
        format!(
            "cannot connect to {} (is `ringport serve` running there?)",
            a.addr
        )
    })?;
    stream.set_read_timeout(Some(a.timeout))?;
    let _ = stream.set_nodelay(true);
    let mut out = std::io::stdout().lock();
    if let Some(text) = a.message {
        let echo = exchange(&mut stream, text.as_bytes(), a.addr)?;
        out.write_all(&echo)?;
        out.write_all(b"\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        if interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let echo = exchange(&mut stream, line.as_bytes(), a.addr)?;
        out.write_all(&echo)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Send `msg` and read back exactly as many bytes, however the stream splits them.
fn exchange(stream: &mut TcpStream, msg: &[u8], addr: SocketAddr) -> anyhow::Result<Vec<u8>> {
    stream
        .write_all(msg)
        .with_context(|| format!("cannot send to {addr}"))?;
    let mut echo = vec![0u8; msg.len()];
    let mut got = 0;
    while got < echo.len() {
        match stream.read(&mut echo[got..]) {
            Ok(0) => bail!(
                "{addr} closed the connection after echoing {got} of {} bytes",
                msg.len()
            ),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!(
                    "no echo from {addr} within the timeout ({got} of {} bytes came back)",
                    msg.len()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot receive from {addr}")),
        }
    }
    Ok(echo)
}
