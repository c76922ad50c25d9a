//! Several generators: `stress --hdr-log`, `--start-at`, and `ringport merge`.
//!
//! The log is checked by an outside implementation (the `hdrhistogram`
//! package from PyPI, which `.ci/run` installs into a virtual environment
//! and names in RINGPORT_TEST_PYTHON), and the merge against histograms
//! added up here from the decoded logs. Runs are small and bounded, and
//! time is only ever asserted as "not before".

use crate::stress::stress_json;
use crate::util::{run, wait_with_timeout, Server, WAIT};
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A fresh directory for one test's files.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringport-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A Python that can `import hdrh`, or why there is none.
fn python_with_hdrh() -> Result<String, String> {
    let python = std::env::var("RINGPORT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import hdrh.histogram, hdrh.log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "{python} cannot import hdrh (the PyPI hdrhistogram package; .ci/run installs it \
             into a venv and sets RINGPORT_TEST_PYTHON)"
        ))
    }
}

/// Reads a log with hdrh's HistogramLogReader, adds each tag's intervals
/// up, and prints per tag the count, min and max, and for each value asked
/// (the JSON's percentiles) how many values lie below its bucket and how
/// many in it or below: an independent check of what a percentile means.
const PY_CHECK: &str = r#"
import json, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
path, asked = sys.argv[1], json.loads(sys.argv[2])
reader = HistogramLogReader(path, HdrHistogram(1, 3600000000, 3))
totals = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    totals.setdefault(h.get_tag(), HdrHistogram(1, 3600000000, 3)).add(h)
out = {"start_time_s": reader.get_start_time_sec()}
for tag, h in totals.items():
    buckets = [(i.value_iterated_to, i.count_at_value_iterated_to) for i in h.get_recorded_iterator()]
    ranks = {}
    for v in asked.get(tag, []):
        below = sum(c for (top, c) in buckets if top < h.get_lowest_equivalent_value(v))
        upto = sum(c for (top, c) in buckets if top <= h.get_highest_equivalent_value(v))
        ranks[str(v)] = [below, upto]
    out[tag] = {"count": h.get_total_count(), "min": h.get_min_value(),
                "max": h.get_max_value(), "p50": h.get_value_at_percentile(50), "ranks": ranks}
print(json.dumps(out))
"#;

/// The percentiles of one latency in the JSON that the check compares, as
/// `(quantile, value)`.
fn asked(latency: &serde_json::Value) -> Vec<(f64, u64)> {
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)]
        .iter()
        .map(|(k, q)| (*q, latency[*k].as_u64().unwrap()))
        .collect()
}

#[test]
fn the_hdr_log_decodes_with_the_pypi_package_and_agrees_with_the_json() {
    let python = match python_with_hdrh() {
        Ok(p) => p,
        Err(why) => {
            crate::util::skip_or_fail("hdrhistogram", &why);
            return;
        }
    };
    let server = Server::start("epoll", &[]);
    let dir = test_dir("pylog");
    let log = dir.join("run.hdrlog");
    let (status, json, err) = stress_json(
        &server.addr.to_string(),
        &[
            "-c",
            "4",
            "-n",
            "400",
            "--rate",
            "2000",
            "--interval",
            "250ms",
            "--hdr-log",
            path_str(&log),
        ],
    );
    assert!(status.success(), "{json}{err}");
    let tags = [("send", "latency_us"), ("schedule", "latency_corrected_us")];
    let wanted: serde_json::Map<String, serde_json::Value> = tags
        .iter()
        .map(|(tag, key)| {
            let values: Vec<u64> = asked(&json[*key]).iter().map(|(_, v)| *v).collect();
            (tag.to_string(), serde_json::json!(values))
        })
        .collect();
    let mut cmd = Command::new(&python);
    cmd.args([
        "-c",
        PY_CHECK,
        path_str(&log),
        &serde_json::Value::Object(wanted).to_string(),
    ]);
    let (status, out, err) = crate::util::run_cmd(cmd);
    assert!(status.success(), "python: {out}{err}");
    let py: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (tag, key) in tags {
        let (ours, theirs) = (&json[key], &py[tag]);
        assert_eq!(theirs["count"], ours["count"], "{tag}: {py} vs {json}");
        assert_eq!(theirs["count"], 1600, "{tag}: every message is in the log");
        assert_eq!(theirs["max"], ours["max"], "{tag}: {py} vs {json}");
        assert_eq!(theirs["min"], ours["min"], "{tag}: {py} vs {json}");
        let n = 1600.0;
        for (q, v) in asked(ours) {
            // v is a q-quantile of what hdrh decoded: no more than q of the
            // values lie below its bucket, and at least q lie in it or below
            // (a rank of slack for the two libraries' rounding of q × n).
            let r = &theirs["ranks"][v.to_string()];
            let (below, upto) = (r[0].as_f64().unwrap(), r[1].as_f64().unwrap());
            assert!(below <= q * n + 1.0, "{tag} p{q}={v}: {below} below; {py}");
            assert!(upto >= q * n - 1.0, "{tag} p{q}={v}: {upto} up to; {py}");
        }
    }
    let start = json["measure_start_unix_s"].as_f64().unwrap();
    let theirs = py["start_time_s"].as_f64().unwrap();
    assert!(
        (theirs - start).abs() < 0.002,
        "StartTime {theirs} vs {start}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merging_one_log_gives_the_runs_own_figures_exactly() {
    let server = Server::start("epoll", &[]);
    let dir = test_dir("onelog");
    let log = dir.join("run.hdrlog");
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "-c",
                "2",
                "-n",
                "300",
                "--engine",
                engine,
                "--hdr-log",
                path_str(&log),
            ],
        );
        assert!(status.success(), "{json}{err}");
        let (status, out, err) = run(&["merge", path_str(&log), "--json", "-"]);
        assert!(status.success(), "{out}{err}");
        let merged: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(merged["messages_verified"], json["messages_verified"]);
        for key in ["count", "p50", "p90", "p99", "p999", "max", "min"] {
            assert_eq!(
                merged["latency_us"][key], json["latency_us"][key],
                "{key}: {merged} vs {json}"
            );
        }
        assert!(
            merged["latency_corrected_us"].is_null(),
            "closed loop: {merged}"
        );
        let elapsed = json["elapsed_s"].as_f64().unwrap();
        let merged_elapsed = merged["elapsed_s"].as_f64().unwrap();
        assert!(
            (merged_elapsed - elapsed).abs() < 0.002,
            "{merged} vs {json}"
        );
        assert!(
            err.contains("from send"),
            "the summary goes to stderr: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Start `ringport stress` in the background with a start time and a log.
fn spawn_stress(addr: &str, start_at: &str, log: &Path, json: &Path) -> std::process::Child {
    crate::util::ringport()
        .args(["stress", addr, "-c", "3", "-n", "400", "--rate", "1500"])
        .args(["--interval", "100ms", "--start-at", start_at])
        .args(["--hdr-log", path_str(log), "--json", path_str(json)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringport stress")
}

#[test]
fn merging_two_real_runs_equals_their_added_histograms() {
    let server = Server::start("epoll", &[]);
    let addr = server.addr.to_string();
    let dir = test_dir("twologs");
    // Far enough ahead that a loaded machine starts both in time.
    let start_at = format!("{:.3}", unix_now() + 5.0);
    let paths: Vec<(PathBuf, PathBuf)> = ["a", "b"]
        .iter()
        .map(|n| {
            (
                dir.join(format!("{n}.hdrlog")),
                dir.join(format!("{n}.json")),
            )
        })
        .collect();
    let mut children: Vec<_> = paths
        .iter()
        .map(|(log, json)| spawn_stress(&addr, &start_at, log, json))
        .collect();
    for c in &mut children {
        let status = wait_with_timeout(c, WAIT * 2).expect("stress finishes");
        assert!(status.success(), "{status}");
    }
    let reports: Vec<serde_json::Value> = paths
        .iter()
        .map(|(_, j)| serde_json::from_str(&std::fs::read_to_string(j).unwrap()).unwrap())
        .collect();
    let csv = dir.join("series.csv");
    let (a, b) = (path_str(&paths[0].0), path_str(&paths[1].0));
    let (status, out, err) = run(&["merge", a, b, "--json", "-", "--csv", path_str(&csv)]);
    assert!(status.success(), "{out}{err}");
    let merged: serde_json::Value = serde_json::from_str(&out).unwrap();
    let verified: Vec<u64> = reports
        .iter()
        .map(|r| r["messages_verified"].as_u64().unwrap())
        .collect();
    assert_eq!(verified, [1200, 1200], "{reports:?}");
    assert_eq!(merged["messages_verified"], 2400, "{merged}");
    assert_eq!(merged["logs"][0]["messages_verified"], 1200, "{merged}");
    assert_eq!(merged["logs"][1]["messages_verified"], 1200, "{merged}");
    assert_eq!(merged["latency_us"]["count"], 2400, "{merged}");
    // The same sum, built here from the decoded logs.
    for (tag, key) in [("send", "latency_us"), ("schedule", "latency_corrected_us")] {
        let sum = added(&[&paths[0].0, &paths[1].0], tag);
        assert_eq!(merged[key]["count"], sum.len(), "{tag}");
        assert_eq!(merged[key]["max"], sum.max(), "{tag}");
        for (q, k) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p999")] {
            assert_eq!(
                merged[key][k],
                sum.value_at_quantile(q),
                "{tag} {k}: {merged}"
            );
        }
    }
    let series = merged["series"].as_array().unwrap();
    let in_series: u64 = series.iter().map(|r| r["messages"].as_u64().unwrap()).sum();
    assert_eq!(in_series, 2400, "every message in one bucket: {merged}");
    assert!(
        series.iter().any(|r| r["logs"] == 2),
        "the runs started together, so some bucket has both: {merged}"
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), series.len() + 1, "{csv}");
    assert!(csv.starts_with("t_s,start_unix_s,logs,messages,"), "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `tag` histogram of these logs, added up with HdrHistogram's own `add`.
fn added(logs: &[&Path], tag: &str) -> Histogram<u64> {
    let mut sum: Histogram<u64> = Histogram::new(3).unwrap();
    for path in logs {
        let log = ringport_load::hdrlog::read_log(&std::fs::read(path).unwrap()).unwrap();
        for i in log
            .intervals
            .iter()
            .filter(|i| i.tag.as_deref() == Some(tag))
        {
            sum.add(&i.histogram).unwrap();
        }
    }
    sum
}

#[test]
fn a_start_time_in_the_past_or_too_far_ahead_exits_2_before_anything_starts() {
    // A closed port: had the run started, it would have failed with 1.
    let addr = format!("127.0.0.1:{}", crate::util::free_port());
    let past = format!("{:.3}", unix_now() - 10.0);
    let far = format!("{:.0}", unix_now() + 25.0 * 3600.0);
    for (when, says) in [
        (past.as_str(), "in the past"),
        ("2001-09-09T01:46:40Z", "in the past"),
        (far.as_str(), "at most 24 hours"),
        ("next tuesday", "not a time"),
    ] {
        let (status, out, err) = run(&["stress", &addr, "-n", "1", "--start-at", when]);
        assert_eq!(status.code(), Some(2), "{when}: {out}{err}");
        assert!(err.contains(says), "{when}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn a_start_time_ahead_holds_the_start_until_then() {
    let server = Server::start("epoll", &[]);
    let dir = test_dir("startat");
    let log = dir.join("run.hdrlog");
    // Far enough ahead that a loaded machine still parses the flag in time.
    let start_at = unix_now() + 5.0;
    let spawned = Instant::now();
    let ahead = Duration::from_secs_f64(start_at - unix_now());
    let (status, json, err) = stress_json(
        &server.addr.to_string(),
        &[
            "-c",
            "2",
            "-n",
            "20",
            "--warmup",
            "100ms",
            "--start-at",
            &format!("{start_at:.3}"),
            "--hdr-log",
            path_str(&log),
        ],
    );
    let took = spawned.elapsed();
    assert!(status.success(), "{json}{err}");
    assert!(
        err.contains("warm-up starts at"),
        "the wait is announced: {err}"
    );
    // Not before: the time asked for plus the warm-up (a millisecond of
    // slack for reading the clock twice).
    let measured = json["measure_start_unix_s"].as_f64().unwrap();
    assert!(
        measured >= start_at + 0.1 - 0.001,
        "{measured} < {start_at}"
    );
    assert!(
        took + Duration::from_millis(500) >= ahead,
        "took only {took:?}, the start was {ahead:?} ahead"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let log_start = ringport_load::hdrlog::read_log(text.as_bytes())
        .unwrap()
        .start_unix_s;
    assert!(log_start >= start_at + 0.1 - 0.001, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_the_wait_for_the_start_time() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let server = Server::start("epoll", &[]);
    let mut cmd = crate::util::ringport();
    cmd.args(["stress", &server.addr.to_string(), "-n", "1"])
        .args(["--start-at", &format!("{:.0}", unix_now() + 600.0)]);
    // A Ctrl-C at a terminal has SIGINT's default action; a test runner
    // started in the background may have left it ignored, so restore it.
    // SAFETY: signal(2) is async-signal-safe, called between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(WAIT).expect("the wait is announced");
    assert!(line.contains("warm-up starts at"), "{line}");
    let t = Instant::now();
    // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_with_timeout(&mut child, WAIT).expect("exits on Ctrl-C, not in 10 minutes");
    assert!(!status.success(), "{status}");
    assert!(t.elapsed() < WAIT, "{:?}", t.elapsed());
}

#[test]
fn an_unwritable_hdr_log_exits_2_before_the_run() {
    let addr = format!("127.0.0.1:{}", crate::util::free_port());
    let dir = test_dir("badlog");
    let path = dir.join("no-such-dir").join("run.hdrlog");
    let (status, out, err) = run(&["stress", &addr, "-n", "1", "--hdr-log", path_str(&path)]);
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("HdrHistogram log") && err.contains("no-such-dir"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merge_refuses_bad_input_with_one_line() {
    let dir = test_dir("mergebad");
    let (status, _, err) = run(&["merge"]);
    assert_eq!(status.code(), Some(2), "no file is a usage error: {err}");
    let missing = dir.join("missing.hdrlog");
    let garbage = dir.join("garbage.hdrlog");
    std::fs::write(&garbage, "#a comment\nnot,a,log\n").unwrap();
    let empty = dir.join("empty.hdrlog");
    std::fs::write(&empty, "").unwrap();
    let broken = dir.join("broken.hdrlog");
    std::fs::write(&broken, "Tag=send,0.000,1.000,0.010,HISTFAAAAnotbase64!!\n").unwrap();
    for (path, says) in [
        (&missing, "cannot read"),
        (&garbage, "line 2"),
        (&empty, "no interval histogram"),
        (&broken, "does not decode"),
    ] {
        let (status, out, err) = run(&["merge", path_str(path)]);
        assert_eq!(status.code(), Some(1), "{}: {out}{err}", path.display());
        assert!(err.contains(says), "{}: {err}", path.display());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(out.is_empty(), "no figures from a bad file: {out}");
    }
    let (status, _, err) = run(&["merge", path_str(&empty), "--json", "-", "--csv", "-"]);
    assert_eq!(status.code(), Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
