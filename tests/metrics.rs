//! `stress --metrics`: the live counters, read by an outside implementation
//! of the format.
//!
//! A real Prometheus server (Debian's `prometheus`, which `.ci/run`
//! installs) scrapes a short run every second, and its HTTP API must then
//! hold the run's own totals, with the metadata only OpenMetrics carries
//! (the family name without `_total`, the unit). Where Prometheus is
//! missing, the Prometheus project's Python OpenMetrics parser
//! (`prometheus_client`, in the venv of RINGPORT_TEST_PYTHON) reads the
//! last scrape instead; where neither is, the test says so
//! (`skip_or_fail`). Everything is on loopback and every wait is bounded.

use crate::util::{free_port, ringport, run, skip_or_fail, wait_with_timeout, Server, WAIT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What an OpenMetrics answer must say it is.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A fresh directory for one test's files.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringport-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One HTTP/1.0 GET; the status line, the headers and the body, or None
/// when nothing answers.
fn get(addr: SocketAddr, path: &str, accept: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// `ringport stress` against `addr` with `load` and `--metrics` on `port`.
fn spawn_stress(addr: &SocketAddr, load: &[&str], port: u16, json: &Path) -> Child {
    ringport()
        .args(["stress", &addr.to_string()])
        .args(load)
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .args(["--metrics-grace", "20s", "--no-progress", "--json"])
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ringport stress")
}

/// Scrape until `stress` ends: the endpoint closes once a scrape has read
/// the final totals, so the last answer holds them.
fn last_scrape(stress: &mut Child, metrics: SocketAddr) -> (String, String) {
    let deadline = Instant::now() + WAIT * 2;
    let mut last = None;
    while stress.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "stress did not end");
        if let Some(answer) = get(metrics, "/metrics", "application/openmetrics-text") {
            last = Some(answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last.expect("at least one scrape")
}

fn report(json: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(json).expect("the JSON report")).unwrap()
}

/// A child killed on drop, so a failed assertion leaves no Prometheus behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_binary() -> Option<&'static str> {
    ["/usr/bin/prometheus", "prometheus"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `s` as a URL query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant query that returns one series, if it does yet.
fn query(prom: SocketAddr, expr: &str) -> Option<f64> {
    let (_, body) = get(
        prom,
        &format!("/api/v1/query?query={}", encode(expr)),
        "application/json",
    )?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Query until `expr` has a value that `ok` accepts, within [`WAIT`].
fn query_until(prom: SocketAddr, expr: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = query(prom, expr);
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus: {expr} was {v:?} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_openmetrics_and_ends_with_the_reports_totals() {
    let Some(prometheus) = prometheus_binary() else {
        return python_parses_the_last_scrape();
    };
    let dir = test_dir("metrics-prometheus");
    let server = Server::start("epoll", &[]);
    let (port, prom_port) = (free_port(), free_port());
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
             - job_name: ringport_stress\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let deadline = Instant::now() + WAIT;
    while !get(prom, "/-/ready", "*/*").is_some_and(|(head, _)| head.contains(" 200 ")) {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready in {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let json = dir.join("report.json");
    let mut stress = spawn_stress(&server.addr, &["-c", "4", "-d", "6s"], port, &json);
    // While the run goes on: answered in OpenMetrics when asked, and
    // ingested by Prometheus with messages already verified.
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + WAIT;
    let (head, body) = loop {
        if let Some(answer) = get(metrics, "/metrics", "application/openmetrics-text") {
            break answer;
        }
        assert!(Instant::now() < deadline, "no /metrics in {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        head.contains(&format!("Content-Type: {OPENMETRICS}")),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    // A scraper that does not ask for OpenMetrics gets Prometheus's own text format.
    let (head, _) = get(metrics, "/metrics", "text/plain").expect("/metrics");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    query_until(prom, "ringport_stress_messages_verified_total", |v| v > 0.0);

    let status = wait_with_timeout(&mut stress, WAIT * 2).expect("stress ends");
    assert!(status.success(), "stress: {status}");
    let r = report(&json);
    // The grace holds the endpoint until a scrape has read the final
    // totals; a stale marker may follow, so read the highest sample.
    let last = |name: &str| format!("max_over_time({name}[5m])");
    let verified = r["messages_verified"].as_f64().unwrap();
    assert!(verified > 0.0);
    query_until(
        prom,
        &last("ringport_stress_messages_verified_total"),
        |v| v == verified,
    );
    for (series, key) in [
        ("ringport_stress_messages_sent_total", "messages_sent"),
        (
            "ringport_stress_connections_opened_total",
            "connections_opened",
        ),
        ("ringport_stress_latency_seconds_count", "messages_verified"),
    ] {
        let want = r[key].as_f64().unwrap();
        query_until(prom, &last(series), |v| v == want);
    }
    query_until(
        prom,
        "sum(max_over_time(ringport_stress_connections_failed_total[5m]))",
        |v| v == 0.0,
    );
    // Only OpenMetrics names a counter's family without `_total` and
    // carries a unit: Prometheus negotiated it and parsed it as such.
    let (_, meta) = get(prom, "/api/v1/metadata", "application/json").expect("metadata");
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(
        meta["data"]["ringport_stress_messages_verified"][0]["type"], "counter",
        "{meta}"
    );
    assert_eq!(
        meta["data"]["ringport_stress_latency_seconds"][0]["unit"], "seconds",
        "{meta}"
    );
}

/// Reads an exposition with the Prometheus project's Python parser and
/// prints each sample as `name{labels}` to its value, in JSON.
const PY_PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
    out[f"type:{family.name}"] = family.type
print(json.dumps(out))
"#;

/// Without Prometheus: the last scrape of a run, read by the Python parser.
fn python_parses_the_last_scrape() {
    let python = std::env::var("RINGPORT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let parser = Command::new(&python)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !parser {
        return skip_or_fail(
            "prometheus",
            "neither prometheus (apt-get install prometheus) nor the PyPI prometheus_client \
             package (RINGPORT_TEST_PYTHON) is here",
        );
    }
    let dir = test_dir("metrics-python");
    let server = Server::start("epoll", &[]);
    let port = free_port();
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let json = dir.join("report.json");
    let mut stress = spawn_stress(&server.addr, &["-c", "4", "-d", "6s"], port, &json);
    let (head, body) = last_scrape(&mut stress, metrics);
    assert!(stress.wait().unwrap().success());
    assert!(
        head.contains(&format!("Content-Type: {OPENMETRICS}")),
        "{head}"
    );
    let mut py = Command::new(&python)
        .args(["-c", PY_PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused:\n{body}");
    let samples: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = report(&json);
    assert!(r["messages_verified"].as_u64().unwrap() > 0);
    for (sample, key) in [
        (
            "ringport_stress_messages_verified_total{}",
            "messages_verified",
        ),
        ("ringport_stress_messages_sent_total{}", "messages_sent"),
        (
            "ringport_stress_connections_opened_total{}",
            "connections_opened",
        ),
        (
            "ringport_stress_latency_seconds_count{}",
            "messages_verified",
        ),
    ] {
        assert_eq!(samples[sample].as_f64(), r[key].as_f64(), "{sample}");
    }
    assert_eq!(samples["type:ringport_stress_latency_seconds"], "histogram");
}

#[test]
fn failed_connections_are_counted_under_their_kind() {
    // A server that closes every connection at accept: each one fails, as
    // `early_close`, or as `reset` where the client's first message was
    // already in the server's socket when it closed (the kernel then
    // answers with a reset). Whatever the split, the metrics count each
    // kind as the report does.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let dir = test_dir("metrics-kinds");
    let json = dir.join("report.json");
    let port = free_port();
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stress = spawn_stress(&addr, &["-c", "3", "-n", "5"], port, &json);
    let (_, body) = last_scrape(&mut stress, metrics);
    assert_eq!(stress.wait().unwrap().code(), Some(1));
    let r = report(&json);
    assert_eq!(r["connections_failed"], 3, "{r}");
    for (kind, n) in r["errors_by_kind"].as_object().unwrap() {
        let line = format!("ringport_stress_connections_failed_total{{kind=\"{kind}\"}} {n}\n");
        assert!(body.contains(&line), "{line}in\n{body}");
    }
}

#[test]
fn a_bad_metrics_address_or_one_with_find_rate_exits_2() {
    let (status, _, err) = run(&["stress", "127.0.0.1:9", "-n", "1", "--metrics", "nowhere"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--metrics"), "{err}");
    // Each step of a search is a run of its own: no one set of counters.
    let (status, _, err) = run(&[
        "stress",
        "127.0.0.1:9",
        "--find-rate",
        "--slo",
        "p99<=1ms",
        "--metrics",
        "127.0.0.1:0",
    ]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--metrics"), "{err}");
}

#[test]
fn a_metrics_port_in_use_exits_2_before_anything_starts() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    echo.set_nonblocking(true).unwrap();
    let in_use = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = in_use.local_addr().unwrap().to_string();
    let target = echo.local_addr().unwrap().to_string();
    let (status, _, err) = run(&["stress", &target, "-n", "1", "--metrics", &taken]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--metrics") && err.contains(&taken), "{err}");
    assert!(
        echo.accept().is_err(),
        "a connection reached the echo server"
    );
}

/// A ramp's rate, as the schedule asks it at each scrape: it rises from the
/// first rate to the last, and stays within them.
#[test]
fn the_rate_asked_follows_a_ramp() {
    let server = Server::start("epoll", &["--workers", "1"]);
    let dir = test_dir("ramp-metrics");
    let json = dir.join("report.json");
    let port = free_port();
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stress = spawn_stress(
        &server.addr,
        &["-c", "2", "--rate", "100..300", "--ramp", "3s"],
        port,
        &json,
    );
    let deadline = Instant::now() + WAIT * 2;
    let mut rates = Vec::new();
    while stress.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "stress did not end");
        if let Some((_, body)) = get(metrics, "/metrics", "application/openmetrics-text") {
            let rate = body
                .lines()
                .find_map(|l| l.strip_prefix("ringport_stress_rate_asked "))
                .map(|v| v.trim().parse::<f64>().unwrap());
            rates.extend(rate);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = wait_with_timeout(&mut stress, WAIT).expect("stress ended");
    assert!(status.success(), "{}", report(&json));
    assert!(rates.len() >= 2, "{rates:?}");
    assert!(
        rates.iter().all(|r| (100.0..=300.0).contains(r)),
        "{rates:?}"
    );
    assert!(
        rates.windows(2).all(|w| w[1] >= w[0]),
        "a ramp only rises: {rates:?}"
    );
    assert!(rates.last() > rates.first(), "{rates:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
