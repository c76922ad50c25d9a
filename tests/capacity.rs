//! `stress --find-rate`: the capacity search against a server whose
//! capacity is known, and objectives that cannot be met or parsed.

use crate::util::run;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An echo server of known capacity: one processor shared by every
/// connection, busy `service` per message of `size` bytes. Deadlines lie
/// on one absolute timeline, so a thread that oversleeps delays its own
/// echo but never lowers the rate the processor keeps: `1/service`.
fn known_capacity_server(service: Duration, size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let next_free = Arc::new(Mutex::new(Instant::now()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let next_free = next_free.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let mut buf = vec![0u8; size];
                while stream.read_exact(&mut buf).is_ok() {
                    let done = {
                        let mut free = next_free.lock().unwrap();
                        let start = (*free).max(Instant::now());
                        *free = start + service;
                        *free
                    };
                    if let Some(wait) = done.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if stream.write_all(&buf).is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Both);
                drop::<TcpStream>(stream);
            });
        }
    });
    addr
}

#[test]
fn the_rate_found_is_within_the_stated_precision_of_the_truth() {
    // 1 ms a message: 1,000 messages/s. Above it the queue grows by the
    // excess every second, so p90 passes 100 ms within a 2 s step at 1.1×;
    // below it the latency is the 1 ms of service.
    let truth = 1000.0;
    let precision = 1.25;
    let addr = known_capacity_server(Duration::from_millis(1), 64);
    let json = std::env::temp_dir().join(format!("ringport-find-rate-{}.json", std::process::id()));
    let (status, out, err) = run(&[
        "stress",
        &addr.to_string(),
        "-c",
        "8",
        "--pipeline",
        "16",
        "--size",
        "64",
        "--threads",
        "1",
        "--find-rate",
        "--slo",
        "p90<=100ms",
        "--rate",
        "250",
        "-d",
        "2s",
        "--precision",
        &precision.to_string(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(status.success(), "{err}\n{out}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON is written"))
            .unwrap();
    let _ = std::fs::remove_file(&json);
    let f = &j["find_rate"];
    let (pass, fail) = (
        f["last_pass"].as_f64().expect("a rate passed"),
        f["first_fail"].as_f64().expect("a rate failed"),
    );
    assert!(
        pass < fail && fail / pass <= precision * 1.000_001,
        "the bracket is within the precision: {pass} .. {fail}\n{out}"
    );
    assert!(
        truth / precision <= pass && pass <= truth * precision,
        "the capacity found, {pass} msgs/s, is within {precision}× of the truth, {truth}\n{out}\n{err}"
    );
    assert_eq!(f["objective"], "p90<=100ms");
    let steps = f["steps"].as_array().unwrap();
    assert!(steps.len() >= 3, "{f:#}");
    assert!(
        steps
            .iter()
            .all(|s| s["rate"].as_f64().is_some() && s["pass"].is_boolean()),
        "{f:#}"
    );
    // The curve: a line per step, then the capacity.
    assert!(
        out.contains("rate msgs/s") && out.contains("p90 µs"),
        "{out}"
    );
    assert!(out.contains("capacity at p90<=100ms: "), "{out}");
    assert!(err.contains("step 1: 250 msgs/s"), "{err}");
}

#[test]
fn an_objective_no_rate_meets_fails_and_says_so() {
    // 20 ms a message: every step's p10 is at least 20 ms, at any rate, so
    // the search stops after one halving that did not help.
    let addr = known_capacity_server(Duration::from_millis(20), 64);
    let (status, out, err) = run(&[
        "stress",
        &addr.to_string(),
        "-c",
        "2",
        "--size",
        "64",
        "--find-rate",
        "--slo",
        "p10<5ms",
        "--rate",
        "40",
        "-d",
        "500ms",
    ]);
    assert_eq!(status.code(), Some(1), "{err}\n{out}");
    assert!(
        out.contains("under this server's latency at light load"),
        "{out}"
    );
    assert!(
        err.contains("FAILED: capacity at p10<5ms: none found"),
        "{err}"
    );
    assert_eq!(err.matches("msgs/s for").count(), 2, "two steps: {err}");
}

#[test]
fn bad_objectives_exit_2_with_one_line_before_anything_starts() {
    for args in [
        &["--find-rate"][..],
        &["--find-rate", "--slo", "p99"],
        &["--find-rate", "--slo", "p100<=1ms"],
        &["--find-rate", "--slo", "p99<=1ms", "--precision", "0.5"],
        &["--slo", "p99<=1ms"],
        &["--find-rate", "--slo", "p99<=1ms", "-n", "10"],
    ] {
        // A closed port: nothing may be tried before the flags are checked.
        let mut all = vec!["stress", "127.0.0.1:9"];
        all.extend_from_slice(args);
        let (status, out, err) = run(&all);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}{out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
