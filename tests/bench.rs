//! `ringport bench` end to end: the output files, and an outside server.
//!
//! The loads are tiny and every wait is bounded (`util::run` gives the whole
//! command 300 s); nothing here asserts on timing or throughput.

use crate::util::run;
use std::path::{Path, PathBuf};

/// A fresh directory for one test's results.
fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringport-bench-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn results(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json is written");
    serde_json::from_str(&text).expect("results.json is JSON")
}

const ROW_KEYS: [&str; 11] = [
    "model",
    "connections",
    "size",
    "msgs_per_sec",
    "mb_per_sec",
    "p50_us",
    "p99_us",
    "server_cpu_s_per_million",
    "server_peak_rss_kib",
    "client_cpu_pct",
    "serialized",
];

#[test]
fn bench_writes_all_five_files_with_the_documented_keys() {
    let dir = out_dir("files");
    let (status, out, err) = run(&[
        "bench",
        "--models",
        "threaded",
        "--connections",
        "2",
        "--sizes",
        "64",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
        "--reps",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}{err}");
    for f in [
        "results.json",
        "results.csv",
        "summary.md",
        "chart.svg",
        "latency.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing; stderr: {err}");
    }
    let json = results(&dir);
    for k in ["cpu_model", "cores", "kernel", "memory"] {
        assert!(json["machine"].get(k).is_some(), "machine.{k}: {json}");
    }
    assert!(json["config"].is_object(), "{json}");
    let rows = json["results"].as_array().expect("results is a list");
    assert_eq!(rows.len(), 1, "{json}");
    for k in ROW_KEYS {
        assert!(rows[0].get(k).is_some(), "results[0].{k}: {json}");
    }
    assert_eq!(rows[0]["model"], "threaded");
    assert_eq!(rows[0]["connections"], 2);
    assert_eq!(rows[0]["serialized"], false);
    assert!(rows[0]["msgs_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert!(
        out.contains("| threaded | 2 | 64 |"),
        "the table goes to stdout: {out}"
    );
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(std::fs::read_to_string(dir.join("chart.svg"))
        .unwrap()
        .contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_outside_server_runs_the_same_load_under_its_own_name() {
    let dir = out_dir("outside");
    let server = format!(
        "mine={} serve --model threaded --listen 127.0.0.1:{{port}}",
        env!("CARGO_BIN_EXE_ringport")
    );
    let (status, out, err) = run(&[
        "bench",
        "--models",
        "threaded",
        "--server",
        &server,
        "--connections",
        "2",
        "--sizes",
        "64",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
        "--reps",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}{err}");
    let json = results(&dir);
    let rows = json["results"].as_array().unwrap();
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["threaded", "mine"], "{json}");
    assert!(rows[1]["msgs_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert_eq!(rows[1]["errors"], 0, "{json}");
    assert!(out.contains("| mine | 2 | 64 |"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_never_listens_is_reported_not_waited_for_forever() {
    let dir = out_dir("broken");
    let (status, out, err) = run(&[
        "bench",
        "--models",
        "threaded",
        "--server",
        "broken=exit 3 # {port}",
        "--connections",
        "1",
        "--sizes",
        "64",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
        "--reps",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(err.contains("broken") && err.contains("exited"), "{err}");
    let json = results(&dir);
    let broken = &json["results"][1];
    assert_eq!(broken["model"], "broken");
    assert!(broken["msgs_per_sec"].is_null(), "{json}");
    assert_eq!(
        json["results"][0]["reps"], 1,
        "the other model still ran: {json}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_command_without_port_placeholder_exits_2() {
    let (status, _, err) = run(&["bench", "--server", "mine=true"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("{port}"), "{err}");
}
