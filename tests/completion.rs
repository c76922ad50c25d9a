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
    fn stress_engine_completion_exits_2_before_anything_starts_suggesting_events() {
        // A server that counts connections: none may be opened.
        let server = Server::start("epoll", &[]);
        let mut cmd = ringport();
        let addr = server.addr.to_string();
        cmd.args(["stress", &addr, "-n", "5", "--engine", "completion"]);
        deny_io_uring(&mut cmd);
        let (status, out, err) = run_cmd(cmd);
        assert_eq!(status.code(), Some(2), "{out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("io_uring is unavailable"), "{err}");
        assert!(err.contains("--engine events"), "{err}");
        assert!(!out.contains("verified"), "nothing ran: {out}");
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

/// The kernel relay (io_uring): bulk connections move socket → pipe →
/// socket with splice, and must still echo every byte, in order, through
/// half-close, resets and shutdown.
#[cfg(target_os = "linux")]
mod relay {
    use super::*;
    use std::net::{Shutdown, TcpStream};

    /// Write `data` in `chunk`-byte writes, then the FIN, while reading the
    /// echo until the server's EOF.
    pub(super) fn echo_then_eof(s: &TcpStream, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = s.try_clone().unwrap();
        let to_send = data.to_vec();
        let h = std::thread::spawn(move || {
            for c in to_send.chunks(chunk) {
                w.write_all(c).expect("write payload");
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::with_capacity(data.len());
        let mut r = s;
        r.read_to_end(&mut back).expect("read the echo to EOF");
        h.join().unwrap();
        back
    }

    /// One connection per entry of `chunks`, all at once: each writes `each`
    /// bytes in writes of its chunk size, then the FIN, and must read back
    /// exactly what it wrote, then the server's EOF.
    fn echo_each_then_eof(server: &Server, each: usize, chunks: &[usize]) {
        let handles: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, &chunk)| {
                let s = server.connect();
                std::thread::spawn(move || {
                    let data = pattern(each, i as u8);
                    let back = echo_then_eof(&s, &data, chunk);
                    assert!(
                        back == data,
                        "connection {i}: {} bytes back, differ",
                        back.len()
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn bulk_connections_are_relayed_and_every_byte_comes_back_then_eof() {
        let server = Server::start("completion", &[]);
        const EACH: usize = 8 << 20;
        // Odd-sized writes, so pieces straddle every boundary.
        echo_each_then_eof(&server, EACH, &[65_536, 100_003, 1 << 20, 40_000]);
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(
            out.contains(&format!("echoed {} bytes", 4 * EACH)),
            "summary: {out}"
        );
        assert!(out.contains("4 relayed in the kernel"), "summary: {out}");
    }

    #[test]
    fn relays_on_a_crowded_worker_share_the_pipe_budget_and_stay_exact() {
        // One worker with 300 connections open: each relay's share of the
        // worker's pipe budget is the smallest pipe (64 KiB), not 256 KiB.
        crate::util::raise_own_open_files(1024);
        let server = Server::start("completion", &["--workers", "1"]);
        let idle: Vec<_> = (0..300).map(|_| server.connect()).collect();
        // The server has accepted them all once one of them echoes.
        let mut probe = server.connect();
        probe
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        probe.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        probe.read_exact(&mut back).expect("an echo within 30 s");
        assert_eq!(&back, b"ping");
        const EACH: usize = 4 << 20;
        let chunks = [65_536, 100_003, 1 << 20];
        echo_each_then_eof(&server, EACH, &[chunks, chunks].concat());
        drop(idle);
        drop(probe);
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(out.contains("6 relayed in the kernel"), "summary: {out}");
    }

    #[test]
    fn interactive_echoes_go_on_beside_relayed_transfers() {
        // One worker: while it relays it batches its waits (up to 500 µs),
        // and a small ping-pong on the same worker must keep going.
        let server = Server::start("completion", &["--workers", "1"]);
        const EACH: usize = 16 << 20;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bulk: Vec<_> = (0..3u8)
            .map(|i| {
                let s = server.connect();
                let done = done.clone();
                std::thread::spawn(move || {
                    let data = pattern(EACH, i);
                    let back = echo_then_eof(&s, &data, 65_536);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert!(back == data, "bulk {i}: {} bytes back, differ", back.len());
                })
            })
            .collect();
        let mut s = server.connect();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut back = [0u8; 64];
        let mut exchanged = 0u32;
        // Bounded in count as well as by the bulk transfers' end.
        while done.load(std::sync::atomic::Ordering::SeqCst) < 3 && exchanged < 200_000 {
            let msg = pattern(64, exchanged as u8);
            s.write_all(&msg).unwrap();
            s.read_exact(&mut back).expect("an echo within 10 s");
            assert!(back[..] == msg[..], "message {exchanged}");
            exchanged += 1;
        }
        assert!(exchanged > 0);
        for h in bulk {
            h.join().unwrap();
        }
        drop(s);
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(out.contains("3 relayed in the kernel"), "summary: {out}");
    }

    #[test]
    fn with_no_relay_nothing_is_relayed() {
        let server = Server::start("completion", &["--no-relay"]);
        let data = pattern(8 << 20, 3);
        assert!(echo_then_eof(&server.connect(), &data, 1 << 20) == data);
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(!out.contains("relayed"), "summary: {out}");
    }

    #[test]
    fn small_messages_are_not_relayed() {
        let server = Server::start("completion", &[]);
        let mut s = server.connect();
        let mut back = [0u8; 512];
        for i in 0..200u32 {
            let msg = pattern(512, i as u8);
            s.write_all(&msg).unwrap();
            s.read_exact(&mut back).unwrap();
            assert!(back[..] == msg[..], "message {i}");
        }
        drop(s);
        let (_, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert!(!out.contains("relayed"), "summary: {out}");
    }

    #[test]
    fn a_reset_while_relayed_leaves_the_others_served() {
        let server = Server::start("completion", &[]);
        // One that floods without reading, then resets with bytes unread.
        let flood = server.connect();
        let data = pattern(4 << 20, 7);
        let mut w = flood.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = w.write_all(&data); // may stop when the server's cap is reached
        drop(w);
        crate::util::reset(flood);
        // The next connection is relayed and served in full.
        let data = pattern(8 << 20, 8);
        assert!(echo_then_eof(&server.connect(), &data, 1 << 20) == data);
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(out.contains("served 2 connections"), "summary: {out}");
    }

    #[test]
    fn urgent_data_on_a_relayed_connection_neither_stalls_nor_spins() {
        // splice stops at an urgent mark while the socket stays readable:
        // the connection must go back to the port's receives, which skip
        // the out-of-band byte as they do without a relay.
        let server = Server::start("completion", &["--workers", "1"]);
        let pid = server.child.id();
        let mut s = server.connect();
        let bulk = pattern(1 << 20, 5);
        assert!(echo_concurrently(&s, &bulk) == bulk, "the bulk echo");
        socket2::SockRef::from(&s).send_out_of_band(b"U").unwrap();
        let tail = pattern(100_000, 6);
        s.write_all(&tail).unwrap();
        let mut back = vec![0u8; tail.len()];
        s.read_exact(&mut back)
            .expect("the bytes after the urgent one come back");
        assert!(back == tail, "the bytes after the urgent one differ");
        // Idle now, with the connection open: a spinning worker would use
        // the whole second.
        let before = crate::util::cpu_time(pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = crate::util::cpu_time(pid) - before;
        assert!(
            used < Duration::from_millis(500),
            "{used:?} of CPU in 1 s idle"
        );
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("EOF");
        assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(
            out.contains(&format!("echoed {} bytes", bulk.len() + tail.len())),
            "summary: {out}"
        );
    }

    #[test]
    fn shutdown_while_relaying_sends_what_was_taken_then_eof() {
        let server = Server::start("completion", &[]);
        let s = server.connect();
        let data = pattern(64 << 20, 9);
        let mut w = s.try_clone().unwrap();
        let to_send = data.clone();
        // Writes until the server, lingering after its FIN, has dropped the
        // rest; then its own FIN ends the connection.
        let writer = std::thread::spawn(move || {
            for c in to_send.chunks(1 << 20) {
                if w.write_all(c).is_err() {
                    break;
                }
            }
            let _ = w.shutdown(Shutdown::Write);
        });
        let mut back = vec![0u8; 1 << 20];
        let mut r = &s;
        r.read_exact(&mut back).expect("the first MiB of the echo");
        server.signal(libc::SIGTERM);
        r.read_to_end(&mut back).expect("the rest, then EOF");
        writer.join().unwrap();
        let (status, _, out) = server.wait_exit();
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(back.len() >= 1 << 20 && back.len() <= data.len());
        assert!(
            back == data[..back.len()],
            "the echo is not a prefix of what was sent"
        );
        assert!(
            out.contains(&format!("echoed {} bytes", back.len())),
            "the summary must count exactly what came back ({}): {out}",
            back.len()
        );
        assert!(out.contains("1 relayed in the kernel"), "summary: {out}");
    }
}

/// `--sqpoll`: submissions through a kernel thread (io_uring SQPOLL). The
/// same echo, small and relayed, and the thread's CPU is the server's.
#[cfg(target_os = "linux")]
mod sqpoll {
    use super::relay::echo_then_eof;
    use super::*;

    use crate::util::cpu_ticks as ticks;

    /// Each thread of a process: its name and its CPU ticks.
    fn threads(pid: u32) -> Vec<(String, u64)> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|t| {
                        let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
                        Some((name.trim().to_string(), ticks(&t.path().join("stat"))))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn every_byte_comes_back_and_the_polling_thread_is_the_servers() {
        let server = Server::start("completion", &["--sqpoll", "2ms", "--workers", "1", "-v"]);
        server.wait_stderr("sqpoll on");
        let pid = server.child.id();
        let before = threads(pid);
        assert!(
            before.iter().any(|(n, _)| n.starts_with("iou-sqp")),
            "no SQPOLL thread among {before:?}"
        );
        let addr = server.addr.to_string();
        let (status, out, err) = run(&[
            "stress",
            &addr,
            "-c",
            "64",
            "--size",
            "512",
            "--count",
            "100",
            "--pipeline",
            "4",
            "--json",
            "-",
        ]);
        assert!(status.success(), "{out}\n{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["messages_verified"], 6_400, "{json}");
        // A bulk connection (relayed unless -v, which shows every byte).
        let data = pattern(4 << 20, 5);
        assert!(echo_then_eof(&server.connect(), &data, 1 << 20) == data);
        // The polling thread is one of the process's: what it spent is in the
        // process's CPU time, the figure bench reads (read after the threads',
        // so it can only be larger; one tick of rounding per thread).
        let threads = threads(pid);
        let total = ticks(std::path::Path::new(&format!("/proc/{pid}/stat")));
        let sum: u64 = threads.iter().map(|(_, t)| t).sum();
        assert!(
            total + threads.len() as u64 >= sum,
            "process {total} ticks, its threads {threads:?}"
        );
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{out}");
    }

    #[test]
    fn asked_of_another_model_or_with_no_idle_time_it_exits_2_before_binding() {
        for args in [
            &["serve", "--model", "epoll", "--sqpoll", "2ms"][..],
            &["serve", "--model", "threaded", "--sqpoll", "2ms"],
            &["serve", "--model", "completion", "--sqpoll", "0"],
            &["serve", "--model", "completion", "--sqpoll", "500us"],
            &["serve", "--model", "tokio", "--no-relay", "--sqpoll", "1ms"],
        ] {
            let (status, out, err) = run(args);
            assert_eq!(status.code(), Some(2), "{args:?}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
            assert!(err.contains("--sqpoll"), "{args:?}: {err}");
            assert!(!out.contains("listening"), "{args:?}: {out}");
        }
    }
}
