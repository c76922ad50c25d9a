//! What only the completion model must show: scale, bulk, backpressure, and
//! a clear answer when io_uring is not allowed.

#[cfg(target_os = "linux")]
use crate::util::WAIT;
use crate::util::{echo_concurrently, pattern, run, Server};
#[cfg(target_os = "linux")]
use std::io::{Read, Write};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

#[test]
fn a_thousand_concurrent_connections_all_verified() {
    let server = Server::start("completion", &[]);
    let addr = server.addr.to_string();
    let (status, out, err) = run(&[
        "stress",
        &addr,
        "--connections",
        "1000",
        "--count",
        "10",
        "--json",
        "-",
    ]);
    assert!(status.success(), "{out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["messages_verified"], 10_000, "{json}");
}

#[test]
fn eight_connections_each_echo_16mib_in_parallel() {
    let server = Server::start("completion", &[]);
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let s = server.connect();
            std::thread::spawn(move || {
                let data = pattern(16 << 20, i);
                let back = echo_concurrently(&s, &data);
                assert!(back == data, "connection {i}: 16 MiB echo differs");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_client_that_never_reads_is_capped_and_others_are_still_served() {
    use crate::util::rss_kib;
    let server = Server::start("completion", &[]);
    let pid = server.child.id();
    // Let the server settle, then take its baseline.
    let mut warm = server.connect();
    warm.write_all(b"warm").unwrap();
    let mut b = [0u8; 4];
    warm.read_exact(&mut b).unwrap();
    let before = rss_kib(pid);

    let hog = server.connect();
    hog.set_nonblocking(true).unwrap();
    let chunk = vec![0x5a; 1 << 20];
    let mut sent = 0usize;
    let mut stalled_since: Option<Instant> = None;
    let deadline = Instant::now() + WAIT;
    // Push up to 64 MiB; stop once the server has not taken a byte for 1 s.
    while sent < 64 << 20 && Instant::now() < deadline {
        match (&hog).write(&chunk) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    let after = rss_kib(pid);
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "server RSS grew by {} KiB after {sent} unread bytes",
        after - before
    );
    // Another client is served while the hog is stuck.
    let mut other = server.connect();
    other.write_all(b"still serving").unwrap();
    let mut back = [0u8; 13];
    other.read_exact(&mut back).unwrap();
    assert_eq!(
        &back, b"still serving",
        "the other client's echo (as bytes)"
    );
    drop(hog);
}

/// Bulk input goes back from the receive buffers it arrived in, which are
/// shared by every connection of a worker: more peers that send and never
/// read than there are such buffers must not hold them all, or no other
/// connection could receive anything.
#[cfg(target_os = "linux")]
#[test]
fn peers_that_never_read_hold_no_receive_buffer_from_the_others() {
    let server = Server::start("completion", &["--workers", "1"]);
    let hogs: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let s = server.connect();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // Each pushes bulk data until the server stops taking it: its echoes
    // fill the hog's receive buffer and the server's cap, and stall.
    let chunk = vec![0x3c; 256 * 1024];
    let deadline = Instant::now() + WAIT;
    for hog in &hogs {
        let mut stalled_since: Option<Instant> = None;
        while Instant::now() < deadline {
            match (&*hog).write(&chunk) {
                Ok(_) => stalled_since = None,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(100) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }
    // Others, bulk and interactive, are still served in full.
    let addr = server.addr.to_string();
    let (status, out, err) = run(&[
        "stress",
        &addr,
        "-c",
        "8",
        "-n",
        "20",
        "--size",
        "100000",
        "--timeout",
        "20s",
        "--json",
        "-",
    ]);
    assert!(status.success(), "{out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["messages_verified"], 160, "{json}");
    drop(hogs);
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod without_io_uring {
    use crate::util::{deny_io_uring, ringport, run_cmd, Server};
    use std::io::{Read, Write};

    #[test]
    fn completion_exits_2_naming_the_cause_and_suggesting_epoll() {
        let mut cmd = ringport();
        cmd.args(["serve", "--model", "completion", "--listen", "127.0.0.1:0"]);
        deny_io_uring(&mut cmd);
        let (status, out, err) = run_cmd(cmd);
        assert_eq!(status.code(), Some(2), "{out}{err}");
        assert!(err.contains("io_uring is unavailable"), "{err}");
        assert!(err.contains("EPERM"), "{err}");
        assert!(err.contains("--model epoll"), "{err}");
        assert!(!out.contains("listening on"), "{out}");
    }

    #[test]
    fn auto_falls_back_and_says_so() {
        let mut cmd = ringport();
        cmd.args(["serve", "--model", "auto", "--listen", "127.0.0.1:0"]);
        deny_io_uring(&mut cmd);
        let server = Server::start_cmd(cmd, "auto");
        let mut s = server.connect();
        s.write_all(b"ok?").unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ok?", "the echo from the fallback model (as bytes)");
        let err = server.wait_stderr("io_uring is unavailable");
        assert!(
            err.contains("model auto: using") && err.contains("io_uring is unavailable"),
            "{err}"
        );
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert!(status.success(), "{out}");
    }
}

mod handoff {
    //! The acceptor-thread variant of spreading connections.
    #[cfg(unix)]
    use crate::util::WAIT;
    use crate::util::{run, Server};

    #[test]
    fn fifty_connections_of_200_messages_all_verified() {
        let server = Server::start("completion", &["--spread", "handoff", "--workers", "2"]);
        let addr = server.addr.to_string();
        let (status, out, err) = run(&["stress", &addr, "-c", "50", "-n", "200", "--json", "-"]);
        assert!(status.success(), "{out}\n{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["messages_verified"], 10_000, "{json}");
    }

    #[cfg(unix)]
    #[test]
    fn sigterm_exits_0_while_the_acceptor_waits() {
        let server = Server::start("completion", &["--spread", "handoff"]);
        let _idle = server.connect();
        let (status, took, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(took < WAIT, "took {took:?} to exit: {out}");
    }
}
