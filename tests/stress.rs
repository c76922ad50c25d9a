//! The stress client: verification, JSON, exit status.

use crate::util::{run, Server};
use std::io::{Read, Write};
use std::net::TcpListener;

#[test]
fn json_has_every_documented_key() {
    let server = Server::start("threaded", &[]);
    let addr = server.addr.to_string();
    let dir = std::env::temp_dir().join(format!("ringport-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.json");
    let (status, out, err) = run(&[
        "stress",
        &addr,
        "-c",
        "4",
        "-n",
        "25",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("latency"), "human summary on stdout: {out}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in [
        "connections",
        "messages_sent",
        "messages_verified",
        "mismatches",
        "errors",
        "bytes_sent",
        "bytes_received",
        "elapsed_s",
        "msgs_per_sec",
        "mb_per_sec",
    ] {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            json["latency_us"].get(key).is_some(),
            "missing latency_us.{key}: {json}"
        );
    }
    assert_eq!(json["connections"], 4);
    assert_eq!(json["messages_verified"], 100);
    // The article's template: "<k>. Thread <i> - <TEXT>", from 1.
    let expected: usize = (1..=4)
        .flat_map(|i| (1..=25).map(move |k| format!("{k}. Thread {i} - Hello from ringport").len()))
        .sum();
    assert_eq!(json["bytes_sent"], expected as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An "echo" server that flips one bit of every 1000th byte.
fn start_corrupting_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
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
            });
        }
    });
    addr
}

#[test]
fn a_corrupted_echo_is_caught_and_exits_1() {
    let addr = start_corrupting_server().to_string();
    let (status, out, err) = run(&["stress", &addr, "-c", "2", "-n", "200", "--json", "-"]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(json["mismatches"].as_u64().unwrap() >= 1, "{json}");
    assert!(err.contains("mismatched"), "{err}");
}
