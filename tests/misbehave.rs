//! `stress` against echo servers that misbehave, one way each: every one
//! must make it exit 1 with the right error kind, in every engine (`util::LOAD_ENGINES`, and the baseline), in a
//! closed and an open loop, and with churn (connections replaced after a
//! few messages); a correct server that echoes in 1-byte pieces must pass. The servers are written here, over real loopback sockets.
//!
//! Every run is small: 2 connections of 20 messages of 64 bytes (random,
//! seeded, so every message and every connection's stream differs and a
//! byte from the wrong place cannot pass), so message boundaries sit at
//! multiples of 64 in each connection's stream.

mod mismatch;

use crate::stress::{spawn_server, stress_json};
use crate::util::{free_port, reset, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

const SIZE: u64 = 64;
const COUNT: u64 = 20;
/// Messages per connection in the churn modes.
const SHARE: u64 = 8;

/// A way a run is driven: its name and its flags.
type Mode = (String, Vec<&'static str>);

/// The ways a run is driven, for each engine of `util::load_engines`
/// (closed and open loop, a pipeline, churn) and for the baseline engine
/// (closed and open loop; it has no pipeline and no churn). The events
/// engine, the default, gets each on its own; the others a pipeline in the
/// open loop, to keep the suite's time. In churn, each connection carries
/// `SHARE` messages, then a new one takes its place (20 per slot: 8, 8, 4);
/// each server below misbehaves within the first 8 messages of a
/// connection's stream, or, where it waits for the end of the stream, has a
/// churn twin. The steady modes come first, then the churn ones.
fn modes() -> (Vec<Mode>, Vec<Mode>) {
    const RATE: &str = "400";
    let mut steady: Vec<Mode> = Vec::new();
    let mut churn: Vec<Mode> = Vec::new();
    let mode = |name: String, engine: &'static str, flags: &[&'static str]| {
        let mut all = vec!["--engine", engine];
        all.extend_from_slice(flags);
        (name, all)
    };
    for engine in crate::util::load_engines() {
        if engine == "events" {
            steady.push(mode(format!("{engine} closed"), engine, &[]));
            steady.push(mode(
                format!("{engine} pipeline"),
                engine,
                &["--pipeline", "4"],
            ));
            steady.push(mode(format!("{engine} open"), engine, &["--rate", RATE]));
            churn.push(mode(
                format!("{engine} churn open"),
                engine,
                &["--rate", RATE, "--per-connection", "8"],
            ));
        } else {
            steady.push(mode(format!("{engine} closed"), engine, &[]));
            steady.push(mode(
                format!("{engine} open pipeline"),
                engine,
                &["--rate", RATE, "--pipeline", "4"],
            ));
        }
        churn.push(mode(
            format!("{engine} churn"),
            engine,
            &["--per-connection", "8"],
        ));
    }
    steady.push(mode("threads closed".into(), "threads", &[]));
    steady.push(mode("threads open".into(), "threads", &["--rate", RATE]));
    (steady, churn)
}

/// Every mode of [`modes`], steady and churn.
fn all_modes() -> Vec<Mode> {
    let (mut steady, churn) = modes();
    steady.extend(churn);
    steady
}

/// Run `stress` in every mode (count mode, `COUNT` messages) and check it
/// fails with one of `kinds`, accounting for every connection.
fn fails_in_every_mode(addr: SocketAddr, kinds: &[&str]) {
    fails_with(addr, kinds, &["-n", &COUNT.to_string()], &all_modes());
}

fn fails_with(addr: SocketAddr, kinds: &[&str], stop: &[&str], modes: &[Mode]) {
    fails_checked(addr, kinds, stop, SIZED, modes, &|_, _| {});
}

/// The payload of these runs: random, seeded, `SIZE` bytes.
const SIZED: &[&str] = &["--size", "64", "--seed", "7"];

/// [`fails_with`] with the messages of `payload` (flags), then `check`
/// each run's mode and JSON report.
fn fails_checked(
    addr: SocketAddr,
    kinds: &[&str],
    stop: &[&str],
    payload: &[&str],
    modes: &[Mode],
    check: &dyn Fn(&str, &serde_json::Value),
) {
    let addr = addr.to_string();
    for (mode, extra) in modes {
        let mut args = vec!["-c", "2", "--timeout", "2s", "--no-progress"];
        args.extend_from_slice(payload);
        args.extend_from_slice(stop);
        args.extend_from_slice(extra);
        let (status, json, err) = stress_json(&addr, &args);
        let seen: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| json["errors_by_kind"][k].as_u64().unwrap_or(0) > 0)
            .collect();
        assert_eq!(
            status.code(),
            Some(1),
            "{mode} {stop:?}: must fail\n{json:#}\n{err}"
        );
        assert!(
            !seen.is_empty(),
            "{mode} {stop:?}: expected an error of kind {kinds:?}\n{json:#}\n{err}"
        );
        let (completed, failed) = (
            json["connections_completed"].as_u64().unwrap(),
            json["connections_failed"].as_u64().unwrap(),
        );
        assert_eq!(
            completed + failed,
            2,
            "{mode}: every connection accounted for\n{json:#}"
        );
        assert!(failed >= 1, "{mode}: {json:#}");
        assert!(err.contains("FAILED"), "{mode}: says so plainly: {err}");
        check(mode, &json);
    }
}

/// Echo, handing each chunk and its offset in the connection's stream to
/// `twist`, which writes what it likes; `false` from it ends the echo, and
/// the server then closes cleanly: a FIN, and it reads (and drops) what
/// still comes so that its close never turns into a reset.
fn twisted_echo<F>(twist: F) -> SocketAddr
where
    F: Fn(&mut TcpStream, u64, &[u8]) -> bool + Send + Sync + Clone + 'static,
{
    spawn_server(move |mut s| {
        let _ = s.set_nodelay(true);
        let mut buf = [0u8; 4096];
        let mut offset = 0u64;
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !twist(&mut s, offset, &buf[..n]) {
                close_cleanly(s);
                return;
            }
            offset += n as u64;
        }
    })
}

fn close_cleanly(mut s: TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

/// A server that echoes the first `limit` bytes of each connection, then closes.
fn closes_after(limit: u64) -> SocketAddr {
    twisted_echo(move |s, offset, chunk| {
        let keep = (limit.saturating_sub(offset) as usize).min(chunk.len());
        let _ = s.write_all(&chunk[..keep]);
        offset + (chunk.len() as u64) < limit
    })
}

#[test]
fn a_clean_close_between_two_messages_is_early_close() {
    fails_in_every_mode(closes_after(5 * SIZE), &["early_close"]);
}

#[test]
fn a_clean_close_in_a_duration_run_is_early_close() {
    // The case: the run asked for a second; the server stopped after
    // 5 messages. In every mode, count or duration, it must fail.
    let mut duration_modes: Vec<Mode> = Vec::new();
    for engine in crate::util::load_engines().into_iter().chain(["threads"]) {
        duration_modes.push((format!("{engine} closed"), vec!["--engine", engine]));
        duration_modes.push((
            format!("{engine} open"),
            vec!["--engine", engine, "--rate", "200"],
        ));
    }
    fails_with(
        closes_after(5 * SIZE),
        &["early_close"],
        &["-d", "600ms"],
        &duration_modes,
    );
}

#[test]
fn a_close_in_the_middle_of_a_message_is_early_close() {
    fails_in_every_mode(closes_after(5 * SIZE + 10), &["early_close"]);
}

#[test]
fn a_reset_is_reset() {
    // Two messages echoed, then a close with SO_LINGER 0: a reset, no FIN.
    let addr = spawn_server(|mut s| {
        let mut buf = [0u8; 4096];
        let mut offset = 0;
        while offset < 2 * SIZE as usize {
            let n = match s.read(&mut buf[..2 * SIZE as usize - offset]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = s.write_all(&buf[..n]);
            offset += n;
        }
        reset(s);
    });
    fails_in_every_mode(addr, &["reset"]);
}

#[test]
fn a_refused_connection_is_connect_failed() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    fails_in_every_mode(addr, &["connect_failed"]);
}

#[test]
fn a_connection_closed_at_accept_fails() {
    // A plain close at once: a FIN, and a reset for whatever the client
    // manages to send before it sees the FIN, so either kind is the truth.
    let addr = spawn_server(drop);
    fails_in_every_mode(addr, &["early_close", "reset"]);
    let addr = spawn_server(close_cleanly);
    fails_in_every_mode(addr, &["early_close"]);
}

/// Run in every mode against a server made by `server(total)`, where
/// `total` is the length of one connection's stream: all the messages
/// without churn, a share of them with it.
fn fails_at_stream_end(server: impl Fn(u64) -> SocketAddr, kinds: &[&str]) {
    let stop = ["-n", &COUNT.to_string()];
    let (steady, churn) = modes();
    fails_with(server(COUNT * SIZE), kinds, &stop, &steady);
    fails_with(server(SHARE * SIZE), kinds, &stop, &churn);
}

#[test]
fn extra_bytes_inside_the_last_echo_are_caught() {
    let server = |total: u64| {
        twisted_echo(move |s, offset, chunk| {
            let mut out = chunk.to_vec();
            if offset + chunk.len() as u64 == total {
                // In the same write, so usually in the same segment.
                out.extend_from_slice(b"JUNK");
            }
            s.write_all(&out).is_ok()
        })
    };
    fails_at_stream_end(server, &["extra_bytes"]);
}

#[test]
fn extra_bytes_after_the_last_echo_are_caught() {
    let server = |total: u64| {
        twisted_echo(move |s, offset, chunk| {
            if s.write_all(chunk).is_err() {
                return false;
            }
            if offset + chunk.len() as u64 == total {
                std::thread::sleep(Duration::from_millis(20));
                let _ = s.write_all(b"JUNK");
            }
            true
        })
    };
    fails_at_stream_end(server, &["extra_bytes"]);
}

#[test]
fn a_server_that_never_echoes_is_a_timeout() {
    let addr = spawn_server(|mut s| {
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    fails_in_every_mode(addr, &["timeout"]);
}

/// Nothing came back, so nothing was measured: no latency and no fairness
/// index, in JSON (null) and in text (`-`), never a zero that reads as a
/// measured instant answer.
#[test]
fn a_server_that_never_echoes_shows_no_latency_and_no_fairness() {
    let addr = spawn_server(|mut s| {
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    let count = COUNT.to_string();
    fails_checked(
        addr,
        &["timeout"],
        &["-n", &count],
        SIZED,
        &modes().0,
        &|mode, json| {
            let l = &json["latency_us"];
            assert_eq!(l["count"], 0, "{mode}: {l}");
            for k in ["p50", "p99", "max", "min", "mean"] {
                assert!(l[k].is_null(), "{mode}: latency_us.{k} must be null: {l}");
            }
            let jain = &json["per_connection_rate"]["jain"];
            assert!(jain.is_null(), "{mode}: jain must be null: {json:#}");
        },
    );
    let (_, out, _) = crate::util::run(&[
        "stress",
        &addr.to_string(),
        "-c",
        "2",
        "-n",
        "3",
        "--timeout",
        "1s",
        "--no-progress",
    ]);
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("from send"))
        .unwrap_or_else(|| panic!("no latency row: {out}"));
    assert!(
        row.split_whitespace().skip(2).all(|c| c == "-"),
        "no figure where nothing was measured: {row}"
    );
    assert!(out.contains("Jain -"), "{out}");
}

/// A correct echo server that writes its echo back one byte at a time.
fn one_byte_echo() -> SocketAddr {
    twisted_echo(|s, _, chunk| chunk.iter().all(|b| s.write_all(&[*b]).is_ok()))
}

#[test]
fn a_correct_server_echoing_in_one_byte_pieces_passes() {
    let addr = one_byte_echo().to_string();
    for (mode, extra) in all_modes() {
        for stop in [&["-n", "20"][..], &["-d", "300ms"][..]] {
            let mut args = vec!["-c", "2", "--size", "64", "--timeout", "5s"];
            args.extend_from_slice(stop);
            args.extend_from_slice(&extra);
            let (status, json, err) = stress_json(&addr, &args);
            assert!(status.success(), "{mode} {stop:?}\n{json:#}\n{err}");
            assert_eq!(json["connections_completed"], 2, "{mode}: {json:#}");
            assert_eq!(json["connections_failed"], 0, "{mode}: {json:#}");
            assert_eq!(json["close_not_seen"], 0, "{mode}: {json:#}");
            assert_eq!(
                json["messages_sent"], json["messages_verified"],
                "{mode}: {json:#}"
            );
            if stop[0] == "-n" {
                assert_eq!(json["messages_verified"], 40, "{mode}: {json:#}");
                assert_eq!(json["messages_scheduled"], 40, "{mode}: {json:#}");
            }
        }
    }
}

#[test]
fn a_server_that_never_closes_passes_with_a_note() {
    // Some echo servers keep a half-closed connection open: every echo was
    // right, so the run is clean, and the summary says what was not checked.
    let addr = twisted_echo(|s, _, chunk| s.write_all(chunk).is_ok());
    let addr = spawn_server_never_closing(addr);
    let (status, json, err) = stress_json(
        &addr.to_string(),
        &["-c", "2", "-n", "10", "--close-grace", "200ms"],
    );
    assert!(status.success(), "{json:#}\n{err}");
    assert_eq!(json["close_not_seen"], 2, "{json:#}");
    assert_eq!(json["connections_completed"], 2, "{json:#}");
    assert!(err.contains("did not close within"), "{err}");
}

/// A proxy in front of `echo` that never passes the client's half-close on
/// and never closes by itself.
fn spawn_server_never_closing(echo: SocketAddr) -> SocketAddr {
    spawn_server(move |client| {
        let upstream = TcpStream::connect(echo).unwrap();
        let (mut c_read, mut u_write) =
            (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = c_read.read(&mut buf) {
                if u_write.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            // The client half-closed: hold everything open for a while.
            std::thread::sleep(Duration::from_secs(3));
        });
        let (mut u_read, mut c_write) = (upstream, client);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = u_read.read(&mut buf) {
            if c_write.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[test]
fn connections_a_ringport_server_rejects_fail_the_run() {
    // `--max-connections 2` closes the other 8 at accept: an open-loop
    // duration run must not pass with the 2 it kept.
    let server = Server::start("epoll", &["--max-connections", "2"]);
    let (status, json, err) = stress_json(
        &server.addr.to_string(),
        &["-c", "10", "--rate", "200", "-d", "1s"],
    );
    assert_eq!(status.code(), Some(1), "{json:#}\n{err}");
    assert_eq!(json["connections_failed"], 8, "{json:#}");
    assert_eq!(json["connections_completed"], 2, "{json:#}");
    assert!(
        json["messages_never_sent"].as_u64().unwrap() > 0,
        "{json:#}"
    );
}

#[test]
fn a_reset_right_after_the_last_echo_is_a_note_in_both_engines() {
    // Every echo came back; the server then resets instead of closing.
    // The run did all it was asked: clean, with a note, every time.
    let total = COUNT * SIZE;
    let addr = spawn_server(move |mut s| {
        let mut buf = [0u8; 4096];
        let mut got = 0u64;
        while got < total {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
            got += n as u64;
        }
        reset(s);
    });
    for _ in 0..3 {
        for (mode, extra) in all_modes() {
            let mut args = vec!["-c", "2", "--size", "64", "-n", "20"];
            args.extend_from_slice(&extra);
            let (status, json, err) = stress_json(&addr.to_string(), &args);
            assert!(status.success(), "{mode}: {json:#}\n{err}");
            assert_eq!(json["connections_completed"], 2, "{mode}: {json:#}");
        }
    }
}

#[test]
fn an_echo_slower_than_the_timeout_fails_even_when_it_comes() {
    // Each echo is held for 300 ms; the timeout is 100 ms. The echo does
    // come, but too late: a timeout, in both engines.
    let addr = twisted_echo(|s, _, chunk| {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(chunk).is_ok()
    });
    for (mode, extra) in all_modes() {
        let mut args = vec!["-c", "1", "--size", "64", "-n", "3", "--timeout", "100ms"];
        args.extend_from_slice(&extra);
        let (status, json, err) = stress_json(&addr.to_string(), &args);
        assert_eq!(status.code(), Some(1), "{mode}: {json:#}\n{err}");
        assert_eq!(json["errors_by_kind"]["timeout"], 1, "{mode}: {json:#}");
    }
}

#[test]
fn an_open_loop_duration_run_keeps_every_connection_open_until_the_window_ends() {
    // At 2 messages a second over 4 connections most have one message or
    // none in a 1.5 s window; each must stay open, served, until the end,
    // not leave after its last message. The server times each connection.
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = spawn_server(move |mut s| {
        let opened = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = tx.send(opened.elapsed());
    });
    for engine in ["events", "threads"] {
        let (status, json, err) = stress_json(
            &addr.to_string(),
            &["-c", "4", "--rate", "2", "-d", "1500ms", "--engine", engine],
        );
        assert!(status.success(), "{engine}: {json:#}\n{err}");
        assert!(
            json["elapsed_s"].as_f64().unwrap() >= 1.4,
            "{engine}: the run covers the window: {json:#}"
        );
        for _ in 0..4 {
            let open = rx.recv_timeout(crate::util::WAIT).unwrap();
            assert!(
                open >= Duration::from_millis(1400),
                "{engine}: a connection was open only {open:?} of a 1.5 s window"
            );
        }
    }
}

#[test]
fn a_report_file_that_cannot_be_written_is_refused_before_the_run() {
    let t = std::time::Instant::now();
    let (status, _, err) = crate::util::run(&[
        "stress",
        "127.0.0.1:9",
        "-d",
        "30s",
        "--json",
        "/nonexistent-dir/report.json",
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent-dir/report.json"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "refused up front, not after the run"
    );
}
