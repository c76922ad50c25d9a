//! The per-model suite: every test runs against every server model of
//! `for_each_model!` (tests/util), the concurrent ones against every model
//! of `for_each_concurrent_model!`.

use crate::util::{echo_concurrently, pattern, reset, ringport, round_trip, run, Server, WAIT};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generate one `#[test]` per (model, behaviour) pair.
macro_rules! model_tests {
    ($($model:ident),* $(,)?) => {$(
        mod $model {
            const M: &str = stringify!($model);
            #[test] fn one_client_echoes() { super::one_client_echoes(M) }
            #[test] fn fifty_connections_of_200_messages_all_verified() { super::fifty_connections_of_200_messages_all_verified(M) }
            #[test] fn a_16mib_write_comes_back_intact() { super::a_16mib_write_comes_back_intact(M) }
            #[test] fn zero_length_writes_change_nothing() { super::zero_length_writes_change_nothing(M) }
            #[test] fn half_close_gets_everything_back_then_eof() { super::half_close_gets_everything_back_then_eof(M) }
            #[test] fn reset_mid_stream_then_next_client_is_served() { super::reset_mid_stream_then_next_client_is_served(M) }
            #[test] fn client_vanishing_with_unread_echo_does_not_hurt() { super::client_vanishing_with_unread_echo_does_not_hurt(M) }
            #[test] fn all_256_byte_values_echo() { super::all_256_byte_values_echo(M) }
            #[test] fn ipv6_loopback_works() { super::ipv6_loopback_works(M) }
            #[cfg(unix)]
            #[test] fn sigterm_exits_0_promptly_with_an_idle_client() { super::sigterm_exits_0_promptly_with_an_idle_client(M, libc::SIGTERM) }
            #[cfg(unix)]
            #[test] fn sighup_drains_like_sigterm_with_a_summary() { super::sigterm_exits_0_promptly_with_an_idle_client(M, libc::SIGHUP) }
            #[cfg(unix)]
            #[test] fn sigint_exits_0_promptly_while_waiting_in_accept() { super::sigint_exits_0_promptly_while_waiting_in_accept(M, libc::SIGINT) }
            #[test] fn a_client_that_never_reads_is_backpressured_then_gets_every_byte() { super::a_client_that_never_reads_is_backpressured_then_gets_every_byte(M) }
            #[test] fn verbose_logs_connect_receive_and_disconnect() { super::verbose_logs_connect_receive_and_disconnect(M) }
            #[test] fn an_idle_connection_is_closed_after_the_idle_timeout() { super::an_idle_connection_is_closed_after_the_idle_timeout(M) }
            #[cfg(unix)]
            #[test] fn sigterm_sends_the_owed_echo_then_eof_and_exits_0() { super::sigterm_sends_the_owed_echo_then_eof_and_exits_0(M) }
            #[cfg(unix)]
            #[test] fn a_second_signal_exits_0_at_once_while_draining() { super::a_second_signal_exits_0_at_once_while_draining(M) }
            #[cfg(unix)]
            #[test] fn a_signal_sent_twice_at_once_is_one_request() { super::a_signal_sent_twice_at_once_is_one_request(M) }
        }
    )*};
}

for_each_model!(model_tests);

/// Tests that need clients served at the same time, which the blocking
/// model by design does not do (`echo/concurrent.rs`).
mod concurrent;

fn one_client_echoes(model: &str) {
    let server = Server::start(model, &[]);
    let mut s = server.connect();
    s.write_all(b"hello, ringport").unwrap();
    let mut back = [0u8; 15];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello, ringport", "{model}: the echo (as bytes)");
}

fn fifty_connections_of_200_messages_all_verified(model: &str) {
    let server = Server::start(model, &[]);
    let addr = server.addr.to_string();
    let (status, out, err) = run(&[
        "stress",
        &addr,
        "--connections",
        "50",
        "--count",
        "200",
        "--json",
        "-",
    ]);
    assert!(status.success(), "{model}: {out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(json["messages_verified"], 10_000, "{json}");
    assert_eq!(json["mismatches"], 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
}

fn a_16mib_write_comes_back_intact(model: &str) {
    let server = Server::start(model, &[]);
    let s = server.connect();
    let data = pattern(16 << 20, 7);
    let back = echo_concurrently(&s, &data);
    assert!(back == data, "{model}: 16 MiB echo differs");
}

/// A `send` of zero bytes puts nothing on the wire: the echo of what
/// surrounds it is unchanged, and the connection stays open.
fn zero_length_writes_change_nothing(model: &str) {
    let mut server = Server::start(model, &[]);
    let mut s = server.connect();
    for part in [&b""[..], b"ab", b"", b"", b"cd", b""] {
        assert_eq!(
            s.write(part).unwrap(),
            part.len(),
            "{model}: a short write of {part:?}"
        );
    }
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"abcd", "{model}: the echo (as bytes)");
    s.write_all(b"ef").unwrap();
    let mut more = [0u8; 2];
    s.read_exact(&mut more).unwrap();
    assert_eq!(&more, b"ef", "{model}: the rest of the echo (as bytes)");
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}

fn half_close_gets_everything_back_then_eof(model: &str) {
    let server = Server::start(model, &[]);
    let mut s = server.connect();
    let data = pattern(200 * 1024, 3);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read to EOF");
    writer.join().unwrap();
    assert_eq!(
        back.len(),
        data.len(),
        "{model}: all bytes owed come back before EOF"
    );
    assert_same_bytes(model, &back, &data);
}

/// The echo is the bytes sent; else say where they first differ.
fn assert_same_bytes(model: &str, back: &[u8], data: &[u8]) {
    assert!(
        back == data,
        "{model}: {} bytes back for {} sent; first difference at byte {:?}",
        back.len(),
        data.len(),
        back.iter().zip(data).position(|(a, b)| a != b)
    );
}

fn reset_mid_stream_then_next_client_is_served(model: &str) {
    let mut server = Server::start(model, &[]);
    let mut s = server.connect();
    // Half a message, some echo unread, then a reset.
    s.write_all(&pattern(100_000, 1)).unwrap();
    let mut some = [0u8; 10];
    s.read_exact(&mut some).unwrap();
    reset(s);
    let mut next = server.connect();
    next.write_all(b"still there?").unwrap();
    let mut back = [0u8; 12];
    next.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still there?", "{model}: the echo (as bytes)");
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}

fn client_vanishing_with_unread_echo_does_not_hurt(model: &str) {
    let mut server = Server::start(model, &[]);
    {
        let mut s = server.connect();
        // More than the socket buffers hold, so the server is blocked or
        // backpressured on this client when it vanishes.
        let w = s.try_clone().unwrap();
        let _ = s.write_all(&pattern(1 << 20, 2));
        drop(w);
    }
    let mut next = server.connect();
    next.write_all(b"next").unwrap();
    let mut back = [0u8; 4];
    next.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"next", "{model}: the echo (as bytes)");
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}

fn all_256_byte_values_echo(model: &str) {
    let server = Server::start(model, &[]);
    let mut s = server.connect();
    let data: Vec<u8> = (0..=255u8).cycle().take(256 * 16).collect();
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_same_bytes(model, &back, &data);
}

fn ipv6_loopback_works(model: &str) {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        // What the machine is, not a missing tool: never a CI failure.
        crate::util::skip("no IPv6 loopback on this machine");
        return;
    }
    let server = Server::start_on(model, "[::1]:0", &[]);
    assert!(
        server.addr.is_ipv6(),
        "{model}: listening on {}",
        server.addr
    );
    let mut s = server.connect();
    s.write_all(b"v6").unwrap();
    let mut back = [0u8; 2];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"v6", "{model}: the echo (as bytes)");
}

#[cfg(unix)]
fn sigterm_exits_0_promptly_with_an_idle_client(model: &str, sig: i32) {
    let server = Server::start(model, &[]);
    let mut idle = server.connect();
    idle.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    idle.read_exact(&mut b).unwrap();
    let (status, took, out) = server.signal_and_wait(sig);
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    assert!(
        out.contains("served 1 connections"),
        "{model}: summary missing: {out}"
    );
    // The 2 s promise is measured in docs/; here only a generous bound, so a
    // loaded machine cannot make the test flaky.
    assert!(took < WAIT, "{model}: took {took:?}");
    // The idle client sees its connection closed.
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let n = idle.read(&mut b).unwrap_or(0);
    assert_eq!(
        n, 0,
        "{model}: {n} more bytes instead of EOF after the summary"
    );
}

#[cfg(unix)]
fn sigint_exits_0_promptly_while_waiting_in_accept(model: &str, sig: i32) {
    let server = Server::start(model, &[]);
    let (status, took, out) = server.signal_and_wait(sig);
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    assert!(out.contains("served 0 connections"), "{out}");
    assert!(took < WAIT, "{model}: took {took:?}");
}

/// Run the stress client against `server` and check every message came back.
fn stress_all_verified(server: &Server, connections: u64, count: u64) {
    let addr = server.addr.to_string();
    let (c, n) = (connections.to_string(), count.to_string());
    // A generous per-echo timeout: this checks correctness, not latency, on
    // a machine that may be running the rest of the suite at the same time.
    let (status, out, err) = run(&[
        "stress",
        &addr,
        "--connections",
        &c,
        "--count",
        &n,
        "--timeout",
        "30s",
        "--json",
        "-",
    ]);
    let model = &server.model;
    assert!(status.success(), "{model}: {out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(json["connections"], connections, "{json}");
    assert_eq!(json["messages_verified"], connections * count, "{json}");
    assert_eq!(json["mismatches"], 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
}

/// The byte at `offset` of the stream the backpressure tests send: a period
/// of 251 (a prime) so any lost, repeated or reordered chunk shows.
fn stream_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// More than any server may hold for a client that does not read, plus
/// every kernel buffer on the way (a few MiB each on loopback).
const FLOOD_LIMIT: usize = 128 << 20;

/// Send without reading until a write makes no progress for a second, and
/// return how many bytes were sent. A server that keeps reading whatever
/// the client sends would take all of `FLOOD_LIMIT`: that fails the test.
///
/// The second is not a timing assertion: on a slow machine the loop may stop
/// early, which only makes the test check less, never fail wrongly.
fn send_until_stalled(s: &mut TcpStream, model: &str) -> usize {
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut sent = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        assert!(
            sent < FLOOD_LIMIT,
            "{model}: took {sent} bytes from a client that reads nothing; no backpressure"
        );
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = stream_byte(sent + i);
        }
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("{model}: write failed after {sent} bytes: {e}"),
        }
    }
    s.set_write_timeout(Some(WAIT)).unwrap();
    sent
}

/// Read `len` bytes of the backpressure stream back and check each one.
fn read_back_stream(s: &mut TcpStream, len: usize, model: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < len {
        let want = buf.len().min(len - got);
        let n = s
            .read(&mut buf[..want])
            .unwrap_or_else(|e| panic!("{model}: read the echo after {got} of {len} bytes: {e}"));
        assert!(n > 0, "{model}: EOF after {got} of {len} bytes");
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                stream_byte(got + i),
                "{model}: wrong byte at {}",
                got + i
            );
        }
        got += n;
    }
}

fn a_client_that_never_reads_is_backpressured_then_gets_every_byte(model: &str) {
    let mut server = Server::start(model, &[]);
    let mut s = server.connect();
    let sent = send_until_stalled(&mut s, model);
    assert!(sent > 0, "{model}: the server took no byte at all");
    // The client half-closes and starts reading: the server, which stopped
    // reading, resumes once it has sent what it held, reaches the FIN, and
    // finishes with every byte, then EOF.
    s.shutdown(Shutdown::Write).unwrap();
    read_back_stream(&mut s, sent, model);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("EOF after the echo");
    assert!(
        rest.is_empty(),
        "{model}: {} bytes more than sent",
        rest.len()
    );
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}

/// The article's `-v` events, on stderr, for one client's whole life.
fn verbose_logs_connect_receive_and_disconnect(model: &str) {
    let mut child = ringport()
        .args(["serve", "-v", "--model", model, "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringport serve -v");
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let mut wait_for = |what: &dyn Fn(&str) -> bool, label: &str| -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if what(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("{model}: no {label} line; saw {seen:#?}");
                }
            }
        }
    };
    let listening = wait_for(&|l| l.starts_with("listening on "), "listening");
    let addr: std::net::SocketAddr = listening["listening on ".len()..].parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let local = s.local_addr().unwrap().to_string();
    s.write_all(b"hello, verbose\n").unwrap();
    let mut back = [0u8; 15];
    s.read_exact(&mut back).unwrap();
    drop(s);
    wait_for(
        &|l| l.contains(&format!("client connected from {local}")),
        "connected",
    );
    wait_for(
        &|l| {
            l.contains(&format!(
                "15 bytes received from {local}: \"hello, verbose\""
            ))
        },
        "received",
    );
    wait_for(
        &|l| l.contains(&format!("client {local} disconnected")),
        "disconnected",
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Read until the server closes; `Ok(n)` on a clean EOF, an error on reset
/// (or if nothing happens within `WAIT`).
fn read_until_closed(s: &mut TcpStream) -> std::io::Result<usize> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

fn an_idle_connection_is_closed_after_the_idle_timeout(model: &str) {
    let mut server = Server::start(model, &["--idle-timeout", "1s"]);
    let mut s = server.connect();
    s.write_all(b"once").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    // Then nothing: the server closes it (a FIN or a reset are both a close;
    // only the read timing out would mean it was never closed).
    match read_until_closed(&mut s) {
        Ok(n) => assert_eq!(n, 0, "{model}: nothing more was owed"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{model}: idle connection still open after {WAIT:?}"
        ),
    }
    assert!(round_trip(server.addr, b"others are served"), "{model}");
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}

/// Start a server whose signal thread says when it has seen a signal.
#[cfg(unix)]
fn start_logging_signals(model: &str, extra: &[&str]) -> Server {
    let mut cmd = ringport();
    cmd.args(["serve", "--model", model, "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn,ringport::signals=info");
    Server::start_cmd(cmd, model)
}

/// SIGTERM while the server holds echo for a client that is not reading:
/// once that client reads, it gets a correct prefix of its stream (every
/// byte the server had read), then a clean EOF, and the server exits 0.
#[cfg(unix)]
fn sigterm_sends_the_owed_echo_then_eof_and_exits_0(model: &str) {
    let server = start_logging_signals(model, &["--drain-timeout", "60s"]);
    let mut s = server.connect();
    let sent = send_until_stalled(&mut s, model);
    assert!(sent > 0, "{model}: the server took no byte at all");
    server.signal(libc::SIGTERM);
    let err = server.wait_stderr("shutting down");
    assert!(err.contains("shutting down"), "{model}: {err}");
    // Not an assertion: a little time for the workers to act on the trigger
    // before the client reads, so the drain path is what gets exercised.
    std::thread::sleep(Duration::from_millis(200));
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{model}: after {got} bytes: {e} (not a clean EOF)"));
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                stream_byte(got + i),
                "{model}: wrong byte at {}",
                got + i
            );
        }
        got += n;
    }
    assert!(got > 0, "{model}: the echo owed was dropped");
    assert!(got <= sent, "{model}: {got} bytes back, {sent} sent");
    // The server drops what it never read until the client closes too (so
    // its close cannot reset the echo), then exits.
    drop(s);
    let (status, _, out) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    assert!(out.contains("served 1 connections"), "{model}: {out}");
}

/// A client that never reads would hold the drain for its whole timeout; a
/// second signal ends it at once, still with exit code 0.
#[cfg(unix)]
fn a_second_signal_exits_0_at_once_while_draining(model: &str) {
    let server = start_logging_signals(model, &["--drain-timeout", "10m"]);
    let mut s = server.connect();
    send_until_stalled(&mut s, model);
    server.signal(libc::SIGTERM);
    let err = server.wait_stderr("shutting down");
    assert!(err.contains("shutting down"), "{model}: {err}");
    // Later than the 100 ms within which a signal is the first one's echo.
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.signal(libc::SIGINT);
    let (status, took, out) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    assert!(took < WAIT, "{model}: {took:?}");
}

/// GNU `timeout` sends its signal to the child and then to the whole
/// process group: the server gets SIGTERM twice at once. That is one
/// request: it drains and prints its summary, exit 0.
#[cfg(unix)]
fn a_signal_sent_twice_at_once_is_one_request(model: &str) {
    let server = start_logging_signals(model, &[]);
    let mut s = server.connect();
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    server.signal(libc::SIGTERM);
    server.signal(libc::SIGTERM);
    drop(s);
    let (status, _, out) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    // A second signal would have exited at once, with no summary.
    assert!(
        out.contains("served "),
        "{model}: one request, drained, with its summary: {out}"
    );
}
