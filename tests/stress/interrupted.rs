//! Ctrl-C (SIGINT) during `ringport stress`: the first one stops the run,
//! which is then reported as interrupted; the exit status stays 130.

use crate::util::{ringport, wait_with_timeout, Server, WAIT};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringport-test-{}-interrupt-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Start `ringport stress ADDR -c 4 -d 30s EXTRA... --json PATH`, wait
/// until it has measured for about a second (its first `--interval` row
/// is the sign that it is measuring), send SIGINT, and return the exit
/// status, stdout and stderr together, and the JSON report.
fn interrupt(name: &str, extra: &[&str]) -> (Option<i32>, String, serde_json::Value, PathBuf) {
    interrupt_with(name, extra, &[libc::SIGINT])
}

/// [`interrupt`] with `signals` sent at once (back to back).
fn interrupt_with(
    name: &str,
    extra: &[&str],
    signals: &[i32],
) -> (Option<i32>, String, serde_json::Value, PathBuf) {
    let server = Server::start("epoll", &[]);
    let dir = scratch(name);
    let json = dir.join("report.json");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = ringport()
        .args(["stress", &server.addr.to_string(), "-c", "4", "-d", "30s"])
        .args(["--interval", "250ms", "--no-progress", "--json"])
        .arg(&json)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let measuring = std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("msgs/s");
        if measuring && started.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(started.elapsed() < WAIT, "no interval row within {WAIT:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for &sig in signals {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
    }
    let status = wait_with_timeout(&mut child, WAIT).expect("exits after the signal");
    let text = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let report = serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {report}\n{text}"));
    (status.code(), text, report, dir)
}

fn assert_interrupted(code: Option<i32>, text: &str, json: &serde_json::Value) {
    assert_interrupted_by(libc::SIGINT, code, text, json);
}

fn assert_interrupted_by(sig: i32, code: Option<i32>, text: &str, json: &serde_json::Value) {
    assert_eq!(code, Some(128 + sig), "{text}");
    assert!(text.contains("INTERRUPTED after"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(json["interrupted"], true, "{json}");
    let after = json["interrupted_after_s"]
        .as_f64()
        .expect("how long it ran");
    assert!(after > 0.0 && after < 30.0, "{json}");
    assert!(json["messages_verified"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["mismatches"], 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    // The run stopped well before the 30 s it was asked for.
    assert!(json["elapsed_s"].as_f64().unwrap() < 25.0, "{json}");
}

#[test]
fn sigint_reports_what_was_measured_and_exits_130() {
    let (code, text, json, dir) = interrupt("events", &["--csv", "-"]);
    assert_interrupted(code, &text, &json);
    // The CSV (on stdout here) has the columns too.
    let header = text
        .lines()
        .find(|l| l.starts_with("connections,"))
        .expect("CSV header");
    assert!(
        header.contains(",interrupted,interrupted_after_s,"),
        "{header}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// GNU `timeout` signals the child and then its whole process group: two
/// SIGTERMs at once are one request, reported like one, not a second
/// signal that exits with no report.
#[test]
fn a_sigterm_sent_twice_at_once_is_one_request_with_a_report() {
    let (code, text, json, dir) =
        interrupt_with("twice-at-once", &[], &[libc::SIGTERM, libc::SIGTERM]);
    assert_interrupted_by(libc::SIGTERM, code, &text, &json);
    assert!(!text.contains("second signal"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigint_with_every_load_engine_in_an_open_loop_with_a_pipeline() {
    for engine in crate::util::load_engines() {
        let extra = ["--engine", engine, "--rate", "2000", "--pipeline", "2"];
        let (code, text, json, dir) = interrupt(&format!("engine-{engine}"), &extra);
        assert_interrupted(code, &text, &json);
        assert_eq!(json["engine"], engine, "{json}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn sigint_with_the_threads_engine() {
    let (code, text, json, dir) = interrupt("threads", &["--engine", "threads"]);
    assert_interrupted(code, &text, &json);
    assert_eq!(json["engine"], "threads", "{json}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigint_in_an_open_loop_finishes_the_hdr_log() {
    let dir = scratch("rate-log");
    let log = dir.join("run.hlog");
    let log_arg = log.to_str().unwrap();
    let (code, text, json, scratch_dir) =
        interrupt("rate", &["--rate", "2000", "--hdr-log", log_arg]);
    assert_interrupted(code, &text, &json);
    assert!(json["latency_corrected_us"].is_object(), "{json}");
    // The log is complete: `merge` reads it back.
    let (status, out, err) = crate::util::run(&["merge", log_arg, "--json", "-"]);
    assert!(status.success(), "{out}{err}");
    let merged: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        merged["messages_verified"], json["messages_verified"],
        "{merged}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(scratch_dir);
}

/// Spawn `ringport stress ADDR --no-progress --json DIR/report.json
/// ARGS...` with its stdout and stderr in files in DIR.
fn spawn(dir: &Path, addr: &str, args: &[&str]) -> std::process::Child {
    ringport()
        .args(["stress", addr, "--no-progress", "--json"])
        .arg(dir.join("report.json"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap()
}

fn sigint(child: &std::process::Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// What the child wrote so far, stdout then stderr.
fn output(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stdout")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

#[test]
fn sigint_in_the_warm_up_reports_that_nothing_was_measured() {
    let server = Server::start("epoll", &[]);
    let dir = scratch("warmup");
    let addr = server.addr.to_string();
    let mut child = spawn(&dir, &addr, &["-c", "4", "-d", "30s", "--warmup", "60s"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.try_wait().unwrap().is_none(), "{}", output(&dir));
    sigint(&child);
    let status = wait_with_timeout(&mut child, WAIT).expect("exits after SIGINT");
    let text = output(&dir);
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        text.contains("INTERRUPTED before measuring began"),
        "{text}"
    );
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {report}\n{text}"));
    assert_eq!(json["interrupted"], true, "{json}");
    assert_eq!(json["interrupted_after_s"], 0.0, "{json}");
    assert_eq!(json["messages_verified"], 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    // The warm-up that ran, not the 60 s asked: its messages are per that.
    let warmup = json["warmup_s"].as_f64().unwrap();
    assert!((0.5..30.0).contains(&warmup), "{json}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_second_sigint_exits_at_once_without_a_report() {
    // A server that reads and never echoes: after the first SIGINT the
    // run waits for the echoes in flight (up to --timeout).
    let got_bytes = Arc::new(AtomicBool::new(false));
    let got = got_bytes.clone();
    let addr = super::spawn_server(move |mut s| {
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {
            got.store(true, Ordering::SeqCst);
        }
    });
    let dir = scratch("twice");
    let args = ["-c", "2", "-d", "30s", "--timeout", "60s"];
    let mut child = spawn(&dir, &addr.to_string(), &args);
    let started = Instant::now();
    while !got_bytes.load(Ordering::SeqCst) {
        assert!(started.elapsed() < WAIT, "nothing sent: {}", output(&dir));
        std::thread::sleep(Duration::from_millis(20));
    }
    sigint(&child);
    // The first signal was handled: the run stops, and waits.
    while !output(&dir).contains("stopping") {
        assert!(
            started.elapsed() < WAIT,
            "no stopping line: {}",
            output(&dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "{}", output(&dir));
    // Later than the 100 ms within which a signal is the first one's echo.
    std::thread::sleep(Duration::from_millis(300));
    sigint(&child);
    let status = wait_with_timeout(&mut child, WAIT).expect("exits after a second SIGINT");
    let text = output(&dir);
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("second signal"), "{text}");
    assert!(!text.contains("INTERRUPTED after"), "no report: {text}");
    let _ = std::fs::remove_dir_all(dir);
}
