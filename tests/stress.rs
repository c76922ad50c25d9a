//! The stress client: verification, the closed and open loops, warm-up,
//! payloads, statistics, output formats and error kinds.
//!
//! Every run here is small (a second at most) and every assertion is about
//! counts and shapes, never about speed, so a loaded 2-core machine cannot
//! make these tests flaky. Some servers are written in the test: one that
//! resets, one that holds its echo back, one that records what it received.

use crate::util::{free_port, reset, run, Server, WAIT};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Run `ringport stress ADDR ARGS... --json -` and parse the JSON on stdout.
pub(crate) fn stress_json(
    addr: &str,
    args: &[&str],
) -> (std::process::ExitStatus, serde_json::Value, String) {
    let mut all = vec!["stress", addr];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "-"]);
    let (status, out, err) = run(&all);
    let json = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {out}\n{err}"));
    (status, json, err)
}

/// Accept on loopback and run `handle` on a thread per connection.
pub(crate) fn spawn_server<F>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) + Send + Sync + Clone + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            s.set_read_timeout(Some(WAIT)).unwrap();
            let h = handle.clone();
            std::thread::spawn(move || h(s));
        }
    });
    addr
}

#[test]
fn json_has_every_documented_key() {
    let server = Server::start("threaded", &[]);
    let addr = server.addr.to_string();
    let dir = std::env::temp_dir().join(format!("ringport-test-{}-keys", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.json");
    for engine in crate::util::load_engines() {
        json_keys(&addr, &path, engine);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `json_has_every_documented_key` on one engine.
fn json_keys(addr: &str, path: &std::path::Path, engine: &str) {
    let (status, out, err) = run(&[
        "stress",
        addr,
        "-c",
        "4",
        "-n",
        "25",
        "--engine",
        engine,
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("latency"), "human summary on stdout: {out}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for key in [
        "connections",
        "messages_sent",
        "messages_verified",
        "mismatches",
        "mismatch_details",
        "mismatch_details_left_off",
        "errors",
        "errors_by_kind",
        "bytes_sent",
        "bytes_received",
        "elapsed_s",
        "msgs_per_sec",
        "mb_per_sec",
        "latency_us",
        "latency_corrected_us",
        "send_lateness_us",
        "engine",
        "threads",
        "pipeline",
        "rate",
        "messages_unsent",
        "warmup_s",
        "warmup_messages",
        "connect_s",
        "measure_start_unix_s",
        "seed",
        "series",
        "per_connection_rate",
    ] {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    for key in ["min", "median", "max", "jain", "connections"] {
        assert!(
            json["per_connection_rate"].get(key).is_some(),
            "missing per_connection_rate.{key}: {json}"
        );
    }
    assert_eq!(json["per_connection_rate"]["connections"], 4, "{json:#}");
    for key in ["p50", "p90", "p99", "p999", "max", "percentiles"] {
        assert!(
            json["latency_us"].get(key).is_some(),
            "missing latency_us.{key}: {json}"
        );
    }
    for kind in [
        "connect_failed",
        "reset",
        "timeout",
        "mismatch",
        "early_close",
    ] {
        assert_eq!(json["errors_by_kind"][kind], 0, "{json}");
    }
    assert!(
        json["latency_corrected_us"].is_null(),
        "closed loop has no schedule: {json}"
    );
    assert!(
        json["send_lateness_us"].is_null(),
        "closed loop has no lateness: {json}"
    );
    assert_eq!(json["connections"], 4, "{json:#}");
    assert_eq!(json["messages_verified"], 100, "{json:#}");
    // The article's template: "<k>. Thread <i> - <TEXT>", from 1.
    let expected: usize = (1..=4)
        .flat_map(|i| (1..=25).map(move |k| format!("{k}. Thread {i} - Hello from ringport").len()))
        .sum();
    assert_eq!(json["bytes_sent"], expected as u64, "{json:#}");
    assert_eq!(json["engine"], engine, "{json:#}");
}

/// An "echo" server that flips one bit of every 1000th byte.
fn start_corrupting_server() -> SocketAddr {
    spawn_server(|mut s| {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for (i, b) in buf[..n].iter_mut().enumerate() {
                if (total + i) % 1000 == 999 {
                    *b ^= 1;
                }
            }
            total += n;
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_corrupted_echo_is_caught_and_exits_1() {
    let addr = start_corrupting_server().to_string();
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(&addr, &["--engine", engine, "-c", "2", "-n", "200"]);
        assert_eq!(status.code(), Some(1), "{json}{err}");
        assert!(json["mismatches"].as_u64().unwrap() >= 1, "{json}");
        assert_eq!(
            json["errors_by_kind"]["mismatch"], json["mismatches"],
            "{json}"
        );
        assert!(err.contains("mismatched"), "{err}");
        // The first one worked out, in one line of the summary and in the JSON.
        assert!(err.contains("\nmismatch         connection "), "{err}");
        let first = &json["mismatch_details"][0];
        assert!(first["kind"].is_string(), "{json:#}");
        assert!(first["offset"].is_u64(), "{json:#}");
    }
}

/// An echo server that holds everything back until it has received
/// `threshold` bytes on the connection, then echoes normally: only a client
/// with that much in flight ever gets an answer.
fn start_batching_server(threshold: usize) -> SocketAddr {
    spawn_server(move |mut s| {
        let mut held = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if held.len() < threshold {
                held.extend_from_slice(&buf[..n]);
                if held.len() >= threshold && s.write_all(&held).is_err() {
                    return;
                }
            } else if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[test]
fn pipeline_keeps_that_many_messages_in_flight() {
    // 8 messages of 16 bytes: the server answers nothing until all 8 are in.
    let addr = start_batching_server(8 * 16).to_string();
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &addr,
            &[
                "--engine",
                engine,
                "-c",
                "3",
                "-n",
                "50",
                "--size",
                "16",
                "--pipeline",
                "8",
            ],
        );
        assert!(status.success(), "{json}{err}");
        assert_eq!(json["messages_verified"], 150, "{json}");
        assert_eq!(json["pipeline"], 8, "{json}");
    }
}

#[test]
fn an_echo_that_never_comes_is_a_timeout() {
    // With one message in flight the batching server never answers.
    let addr = start_batching_server(8 * 16).to_string();
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &addr,
            &[
                "--engine",
                engine,
                "-c",
                "2",
                "-n",
                "5",
                "--size",
                "16",
                "--timeout",
                "300ms",
            ],
        );
        assert_eq!(status.code(), Some(1), "{json}{err}");
        assert_eq!(json["errors_by_kind"]["timeout"], 2, "{json}");
        assert_eq!(json["errors"], 2, "{json}");
    }
}

#[test]
fn a_duration_run_stops_by_itself_after_the_duration() {
    let server = Server::start("threaded", &[]);
    for engine in crate::util::load_engines() {
        let mut args = vec!["--engine", engine, "-c", "3", "--duration", "500ms"];
        if engine == "events" {
            // This test also covers the events loop that always blocks.
            args.extend(["--busy-poll", "0"]);
        }
        let (status, json, err) = stress_json(&server.addr.to_string(), &args);
        assert!(status.success(), "{json}{err}");
        assert!(json["messages_verified"].as_u64().unwrap() > 0, "{json}");
        assert_eq!(json["messages_verified"], json["messages_sent"], "{json}");
        // The run cannot end before its duration: each connection sends until then.
        assert!(json["elapsed_s"].as_f64().unwrap() >= 0.5, "{json}");
    }
}
/// The open loop: its schedule, the warm-up and the latency bound (`stress/open_loop.rs`).
mod open_loop;

/// An echo server that also reports a digest of each connection's stream at EOF.
fn start_recording_server() -> (SocketAddr, mpsc::Receiver<(u64, usize, IpAddr)>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
    let addr = spawn_server(move |mut s| {
        let peer = s.peer_addr().unwrap().ip();
        // FNV-1a over the whole stream.
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for b in &buf[..n] {
                digest = (digest ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
            total += n;
            if s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = tx.lock().unwrap().send((digest, total, peer));
    });
    (addr, rx)
}

/// What `n` connections sent, as a sorted list of stream digests.
fn recorded(rx: &mpsc::Receiver<(u64, usize, IpAddr)>, n: usize) -> Vec<(u64, usize, IpAddr)> {
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<_> = (0..n)
        .map(|_| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("every connection closes")
        })
        .collect();
    got.sort();
    got
}

#[test]
fn seeded_size_payloads_are_reproducible() {
    let (addr, rx) = start_recording_server();
    let addr = addr.to_string();
    let mut streams = Vec::new();
    for seed in ["42", "42", "43"] {
        let (status, json, err) = stress_json(
            &addr,
            &["-c", "3", "-n", "5", "--size", "1000", "--seed", seed],
        );
        assert!(status.success(), "{json}{err}");
        assert_eq!(json["bytes_sent"], 3 * 5 * 1000, "{json}");
        assert_eq!(json["seed"], seed.parse::<u64>().unwrap(), "{json}");
        let digests: Vec<(u64, usize)> = recorded(&rx, 3)
            .into_iter()
            .map(|(d, n, _)| (d, n))
            .collect();
        assert!(digests.iter().all(|(_, n)| *n == 5000), "{digests:?}");
        streams.push(digests);
    }
    assert_eq!(streams[0], streams[1], "the same seed sends the same bytes");
    assert_ne!(streams[0], streams[2], "another seed sends other bytes");
    // And every connection sends its own stream.
    assert_eq!(
        streams[0].iter().collect::<HashSet<_>>().len(),
        3,
        "three different streams: {streams:?}"
    );
}

#[test]
fn a_size_above_16mib_exits_2_with_the_limit() {
    let (status, out, err) = run(&["stress", "127.0.0.1:9", "--size", "17MiB", "-n", "1"]);
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(err.contains("16 MiB"), "{err}");
}

#[test]
fn percentiles_flag_adds_them_to_the_table_and_the_json() {
    let server = Server::start("threaded", &[]);
    let dir = std::env::temp_dir().join(format!("ringport-test-{}-pct", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.json");
    let (status, out, err) = run(&[
        "stress",
        &server.addr.to_string(),
        "-c",
        "2",
        "-n",
        "50",
        "--percentiles",
        "50,90,99,99.9,99.99",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("p99.99"), "table has the asked column: {out}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let p = &json["latency_us"]["percentiles"];
    for key in ["50", "90", "99", "99.9", "99.99"] {
        assert!(
            p[key].as_u64().is_some(),
            "missing percentiles.{key}: {json}"
        );
    }
    assert_eq!(p["50"], json["latency_us"]["p50"], "{json}");
    assert!(
        json["latency_us"]["p999"].as_u64().is_some(),
        "fixed keys stay: {json}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn csv_output_is_a_header_and_one_matching_row() {
    let server = Server::start("threaded", &[]);
    let (status, out, err) = run(&[
        "stress",
        &server.addr.to_string(),
        "-c",
        "2",
        "-n",
        "30",
        "--csv",
        "-",
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(err.contains("latency"), "the table moves to stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let values: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(header.len(), values.len(), "{out}");
    let col = |name: &str| {
        values[header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name}: {out}"))]
    };
    assert_eq!(col("messages_verified"), "60", "{out}");
    assert_eq!(col("errors_by_kind_reset"), "0", "{out}");
    assert!(col("latency_us_p99").parse::<u64>().is_ok(), "{out}");
}

/// A server that reads a little, then resets the connection (SO_LINGER 0).
fn start_resetting_server() -> SocketAddr {
    spawn_server(|mut s| {
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
        reset(s);
    })
}

#[test]
fn a_resetting_server_is_counted_as_reset_by_kind() {
    let addr = start_resetting_server().to_string();
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(&addr, &["--engine", engine, "-c", "3", "-n", "10"]);
        assert_eq!(status.code(), Some(1), "{json}{err}");
        assert_eq!(json["errors_by_kind"]["reset"], 3, "{json}");
        assert_eq!(json["errors"], 3, "{json}");
        assert_eq!(json["messages_verified"], 0, "{json}");
    }
}

#[test]
fn interval_series_covers_the_run_and_adds_up() {
    let server = Server::start("threaded", &[]);
    let (status, json, err) = stress_json(
        &server.addr.to_string(),
        &["-c", "2", "--duration", "1s", "--interval", "250ms"],
    );
    assert!(status.success(), "{json}{err}");
    let series = json["series"].as_array().unwrap();
    assert!(series.len() >= 4, "four intervals in a 1 s run: {json}");
    let mut last_t = 0.0;
    let mut total = 0;
    for row in series {
        let t = row["t"].as_f64().unwrap();
        assert!(t > last_t, "{json}");
        last_t = t;
        let messages = row["messages"].as_u64().unwrap();
        total += messages;
        // A p99 where the interval verified messages, none (null) where not.
        assert!(
            row["msgs_per_sec"].as_f64().is_some()
                && row["p99_us"].as_u64().is_some() == (messages > 0),
            "{row}"
        );
    }
    assert_eq!(
        total,
        json["messages_verified"].as_u64().unwrap(),
        "every message in one interval"
    );
    assert!(
        err.contains("msgs/s") && err.lines().count() >= 5,
        "rows on stderr: {err}"
    );
    assert!(
        last_t <= json["elapsed_s"].as_f64().unwrap() + 1e-9,
        "the last interval ends with the run: {json}"
    );
}

#[test]
fn a_short_count_run_with_a_warmup_never_has_an_interval_past_its_end() {
    // Once a race let a finishing thread's last interval out as complete:
    // a row whose end lay past the run's, its rate taken over the full
    // interval. Repeated, because it was a race.
    let server = Server::start("epoll", &[]);
    for _ in 0..8 {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "-c",
                "4",
                "-n",
                "500",
                "--warmup",
                "100ms",
                "--interval",
                "20ms",
            ],
        );
        assert!(status.success(), "{json}{err}");
        let elapsed = json["elapsed_s"].as_f64().unwrap();
        for row in json["series"].as_array().unwrap() {
            assert!(row["t"].as_f64().unwrap() <= elapsed + 1e-9, "{json:#}");
        }
    }
}

#[test]
fn the_threads_engine_is_a_working_baseline() {
    let server = Server::start("threaded", &[]);
    let (status, json, err) = stress_json(
        &server.addr.to_string(),
        &["-c", "4", "-n", "50", "--engine", "threads"],
    );
    assert!(status.success(), "{json}{err}");
    assert_eq!(json["messages_verified"], 200, "{json}");
    assert_eq!(json["engine"], "threads", "{json}");
    assert_eq!(json["threads"], 4, "one thread per connection: {json}");
    let (status, _, err) = run(&[
        "stress",
        "127.0.0.1:9",
        "-n",
        "1",
        "--engine",
        "threads",
        "--pipeline",
        "2",
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn source_ips_spread_connections_over_those_addresses() {
    // All of 127.0.0.0/8 is loopback on Linux.
    let (addr, rx) = start_recording_server();
    let (status, json, err) = stress_json(
        &addr.to_string(),
        &["-c", "4", "-n", "3", "--source-ips", "127.0.0.2,127.0.0.3"],
    );
    assert!(status.success(), "{json}{err}");
    let peers: HashSet<IpAddr> = recorded(&rx, 4).into_iter().map(|(_, _, ip)| ip).collect();
    let want: HashSet<IpAddr> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(peers, want, "the source addresses the server saw");
}

/// `socat TCP-LISTEN:PORT,fork,reuseaddr PIPE`, killed on drop.
struct Socat(std::process::Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn works_against_socat_as_an_independent_echo_server() {
    let port = free_port();
    let child = std::process::Command::new("socat")
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"))
        .arg("PIPE")
        .stdin(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child else {
        crate::util::skip_or_fail("socat", "socat is not installed (apt-get install socat)");
        return;
    };
    let _socat = Socat(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "socat did not listen on {addr} within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, json, err) = stress_json(
        &addr,
        &["-c", "4", "-n", "50", "--pipeline", "4", "--size", "300"],
    );
    assert!(status.success(), "{json}{err}");
    assert_eq!(json["messages_verified"], 200, "{json}");
    assert_eq!(json["mismatches"], 0, "{json}");
}

/// A server that reads one whole 100-byte message, echoes half of it, and closes.
fn start_half_echo_server() -> SocketAddr {
    spawn_server(|mut s| {
        let mut msg = [0u8; 100];
        if s.read_exact(&mut msg).is_ok() {
            let _ = s.write_all(&msg[..50]);
        }
        // Everything sent was read, so the close is a FIN, not a reset.
        let _ = s.shutdown(std::net::Shutdown::Both);
    })
}

#[test]
fn a_server_closing_mid_echo_is_counted_as_early_close() {
    let addr = start_half_echo_server().to_string();
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &addr,
            &["--engine", engine, "-c", "2", "-n", "3", "--size", "100"],
        );
        assert_eq!(status.code(), Some(1), "{json}{err}");
        assert_eq!(json["errors_by_kind"]["early_close"], 2, "{json}");
        assert_eq!(json["errors"], 2, "{json}");
    }
}

#[test]
fn a_closed_port_is_counted_as_connect_failed() {
    let addr = format!("127.0.0.1:{}", free_port());
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(&addr, &["--engine", engine, "-c", "3", "-n", "5"]);
        assert_eq!(status.code(), Some(1), "{json}{err}");
        assert_eq!(json["errors_by_kind"]["connect_failed"], 3, "{json}");
        assert_eq!(json["messages_verified"], 0, "{json}");
    }
}

/// Ctrl-C during `ringport stress` (`stress/interrupted.rs`).
#[cfg(unix)]
mod interrupted;

/// How evenly the connections shared a run (`stress/fairness.rs`).
mod fairness;

/// A rate that changes: `--ramp` and `--step` (`stress/ramp.rs`).
mod ramp;
