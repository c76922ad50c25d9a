//! `ringport client`: the article's one-to-one client, byte for byte.
//!
//! Each line of stdin (bytes up to and including `\n`, UTF-8 or not) is
//! written while its echo is read on the same connection, so a line larger
//! than both sides' socket buffers cannot deadlock. Every byte that comes
//! back is compared with what was sent before it is printed; a reply that
//! differs, falls short or runs over ends the client with status 1. At the
//! end the client half-closes and waits briefly for the server's end of
//! stream, so bytes a server sends after the last echo are caught too.

use crate::args;
use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// The longest the client waits for the server to close after its own half-close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Flags of `ringport client`.
#[derive(clap::Args)]
pub struct Args {
    /// The echo server.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:5150", value_parser = args::socket_addr)]
    addr: SocketAddr,
    /// Send this text once, print the echo and exit.
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    /// How long to wait for the connection, for each write and for each read.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = args::positive_duration)]
    timeout: Duration,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::init_logging(false);
    if a.timeout.is_zero() {
        return Err(
            crate::UsageError("--timeout must be longer than 0, such as 10s".into()).into(),
        );
    }
    let stream = TcpStream::connect_timeout(&a.addr, a.timeout).with_context(|| {
        format!(
            "cannot connect to {} (is `ringport serve` running there?)",
            a.addr
        )
    })?;
    stream.set_read_timeout(Some(a.timeout))?;
    stream.set_write_timeout(Some(a.timeout))?;
    let _ = stream.set_nodelay(true);
    let mut session = Session {
        stream,
        addr: a.addr,
        timeout: a.timeout,
        offset: 0,
    };
    if let Some(text) = a.message {
        session.exchange(text.as_bytes())?;
        crate::out::stdout("\n")?;
        session.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        if interactive {
            crate::out::stdout("> ")?;
        }
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("cannot read stdin")?
            == 0
        {
            break;
        }
        session.exchange(&line)?;
    }
    session.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// One connection and how far its stream has been verified.
struct Session {
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
    /// Bytes sent and verified so far on this connection.
    offset: u64,
}

impl Session {
    /// Send `msg` while reading its echo; print each verified piece.
    fn exchange(&mut self, msg: &[u8]) -> anyhow::Result<()> {
        let addr = self.addr;
        let stream = &self.stream;
        let read = std::thread::scope(|s| {
            let writer = s.spawn(move || {
                let mut w = stream;
                w.write_all(msg)
            });
            let read = self.read_echo(msg);
            if read.is_err() {
                // Unblock a writer stuck on a full socket; the error stands.
                let _ = stream.shutdown(Shutdown::Both);
            }
            let wrote = writer.join().expect("the writer thread panicked");
            match (read, wrote) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) if timed_out(&e) => Err(anyhow::anyhow!(
                    "cannot send to {addr}: it took in nothing for {:?}",
                    self.timeout
                )),
                (Ok(()), Err(e)) => {
                    Err(anyhow::Error::new(e).context(format!("cannot send to {addr}")))
                }
                (Ok(()), Ok(())) => Ok(()),
            }
        });
        read?;
        self.offset += msg.len() as u64;
        Ok(())
    }

    /// Read exactly `msg.len()` bytes, checking each against `msg`.
    fn read_echo(&self, msg: &[u8]) -> anyhow::Result<()> {
        let addr = self.addr;
        let mut buf = vec![0u8; msg.len().clamp(1, 64 * 1024)];
        let mut got = 0;
        let mut r = &self.stream;
        while got < msg.len() {
            let want = (msg.len() - got).min(buf.len());
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => bail!(
                    "{addr} closed the connection after echoing {got} of {} bytes",
                    msg.len()
                ),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if timed_out(&e) => bail!(
                    "no echo from {addr} within {:?} ({got} of {} bytes came back)",
                    self.timeout,
                    msg.len()
                ),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot receive from {addr} ({got} of {} bytes came back)",
                            msg.len()
                        )
                    })
                }
            };
            let sent = &msg[got..got + n];
            if let Some(at) = sent.iter().zip(&buf[..n]).position(|(a, b)| a != b) {
                bail!(
                    "the reply differs from what was sent at byte {}: {addr} is not an echo server",
                    self.offset + (got + at) as u64
                );
            }
            crate::out::stdout_bytes(&buf[..n])?;
            got += n;
        }
        Ok(())
    }

    /// Half-close and wait (briefly) for the server's end of stream: a byte
    /// now is one that was never sent.
    fn finish(self) -> anyhow::Result<()> {
        let addr = self.addr;
        let _ = self.stream.shutdown(Shutdown::Write);
        self.stream
            .set_read_timeout(Some(self.timeout.min(CLOSE_GRACE)))?;
        let mut byte = [0u8; 1];
        let mut r = &self.stream;
        loop {
            match r.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => bail!(
                    "{addr} sent bytes after the last echo, at byte {}: it is not an echo server",
                    self.offset
                ),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A server that stays open, or resets: every echo was verified.
                Err(_) => return Ok(()),
            }
        }
    }
}

/// A socket timeout, as Unix and Windows report it.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
