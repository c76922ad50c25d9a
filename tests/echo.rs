//! The per-model suite: every test runs against every server model.

use crate::util::{echo_concurrently, pattern, ringport, run, Server, WAIT};
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
            #[test] fn a_4mib_write_comes_back_intact() { super::a_4mib_write_comes_back_intact(M) }
            #[test] fn half_close_gets_everything_back_then_eof() { super::half_close_gets_everything_back_then_eof(M) }
            #[test] fn reset_mid_stream_then_next_client_is_served() { super::reset_mid_stream_then_next_client_is_served(M) }
            #[test] fn client_vanishing_with_unread_echo_does_not_hurt() { super::client_vanishing_with_unread_echo_does_not_hurt(M) }
            #[test] fn all_256_byte_values_echo() { super::all_256_byte_values_echo(M) }
            #[test] fn ipv6_loopback_works() { super::ipv6_loopback_works(M) }
            #[cfg(unix)]
            #[test] fn sigterm_exits_0_promptly_with_an_idle_client() { super::sigterm_exits_0_promptly_with_an_idle_client(M, libc::SIGTERM) }
            #[cfg(unix)]
            #[test] fn sigint_exits_0_promptly_while_waiting_in_accept() { super::sigint_exits_0_promptly_while_waiting_in_accept(M, libc::SIGINT) }
            #[test] fn a_client_that_never_reads_is_backpressured_then_gets_every_byte() { super::a_client_that_never_reads_is_backpressured_then_gets_every_byte(M) }
            #[test] fn verbose_logs_connect_receive_and_disconnect() { super::verbose_logs_connect_receive_and_disconnect(M) }
        }
    )*};
}

model_tests!(blocking, threaded, epoll, tokio, completion);

/// Tests that need clients served at the same time, which the blocking
/// model by design does not do (it serves them in turn).
macro_rules! concurrent_model_tests {
    ($($model:ident),* $(,)?) => {$(
        mod $model {
            const M: &str = stringify!($model);
            #[test] fn five_hundred_concurrent_connections_all_verified() { super::super::five_hundred_concurrent_connections_all_verified(M) }
            #[test] fn a_client_that_never_reads_does_not_stall_the_others() { super::super::a_client_that_never_reads_does_not_stall_the_others(M) }
            #[test] fn three_workers_serve_every_connection() { super::super::three_workers_serve_every_connection(M) }
        }
    )*};
}

mod concurrent {
    concurrent_model_tests!(threaded, epoll, tokio, completion);
}

fn one_client_echoes(model: &str) {
    let server = Server::start(model, &[]);
    let mut s = server.connect();
    s.write_all(b"hello, ringport").unwrap();
    let mut back = [0u8; 15];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello, ringport");
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

fn a_4mib_write_comes_back_intact(model: &str) {
    let server = Server::start(model, &[]);
    let s = server.connect();
    let data = pattern(4 << 20, 7);
    let back = echo_concurrently(&s, &data);
    assert!(back == data, "{model}: 4 MiB echo differs");
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
    assert!(back == data);
}

/// Close with SO_LINGER 0, which sends a RST instead of a FIN.
fn reset(s: std::net::TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
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
    assert_eq!(&back, b"still there?");
    assert!(server.is_running());
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
    assert_eq!(&back, b"next");
    assert!(server.is_running());
}

fn all_256_byte_values_echo(model: &str) {
    let server = Server::start(model, &[]);
    let mut s = server.connect();
    let data: Vec<u8> = (0..=255u8).cycle().take(256 * 16).collect();
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

fn ipv6_loopback_works(model: &str) {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let server = Server::start_on(model, "[::1]:0", &[]);
    assert!(server.addr.is_ipv6());
    let mut s = server.connect();
    s.write_all(b"v6").unwrap();
    let mut back = [0u8; 2];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"v6");
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
    assert_eq!(n, 0);
}

#[cfg(unix)]
fn sigint_exits_0_promptly_while_waiting_in_accept(model: &str, sig: i32) {
    let server = Server::start(model, &[]);
    let (status, took, out) = server.signal_and_wait(sig);
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    assert!(out.contains("served 0 connections"), "{out}");
    assert!(took < WAIT);
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

fn five_hundred_concurrent_connections_all_verified(model: &str) {
    let server = Server::start(model, &[]);
    stress_all_verified(&server, 500, 20);
}

fn three_workers_serve_every_connection(model: &str) {
    // More workers than this machine may have cores: for epoll that is
    // three listeners in one SO_REUSEPORT group, each on its own thread.
    let server = Server::start(model, &["--workers", "3"]);
    stress_all_verified(&server, 60, 50);
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
        let n = s.read(&mut buf[..want]).expect("read the echo");
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
    assert!(sent > 0);
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
    assert!(server.is_running());
}

fn a_client_that_never_reads_does_not_stall_the_others(model: &str) {
    let mut server = Server::start(model, &[]);
    let mut flood = server.connect();
    let sent = send_until_stalled(&mut flood, model);
    // While that client is backpressured, another one is served as usual.
    let mut other = server.connect();
    other.write_all(b"still serving?").unwrap();
    let mut back = [0u8; 14];
    other.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still serving?");
    // And the flooding client is still owed, and gets, everything.
    read_back_stream(&mut flood, sent, model);
    assert!(server.is_running());
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
