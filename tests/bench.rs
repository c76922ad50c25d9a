//! `ringport bench` end to end: the output files, and an outside server.
//!
//! The loads are tiny and every wait is bounded (`util::run` gives the whole
//! command 300 s); nothing here asserts on timing or throughput.

use crate::util::run;
use std::path::{Path, PathBuf};

mod costs;
mod scale;
mod slo;

/// A fresh directory for one test's results.
fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringport-bench-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The row of results.json for the server called `name`.
fn row_of(json: &serde_json::Value, name: &str) -> serde_json::Value {
    json["results"]
        .as_array()
        .expect("results.json has its rows")
        .iter()
        .find(|r| r["model"] == name)
        .unwrap_or_else(|| panic!("no row for {name} in {json:#}"))
        .clone()
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
        "sweep.svg",
        "report.html",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing; stderr: {err}");
    }
    let json = results(&dir);
    for k in ["cpu_model", "cores", "kernel", "memory"] {
        assert!(json["machine"].get(k).is_some(), "machine.{k}: {json}");
    }
    assert!(json["config"].is_object(), "{json}");
    // The split used and why: the load gets at least as many CPUs as the
    // server (a third for the server from three CPUs on).
    let split = &json["config"]["cpu_split"];
    let (server, client) = (
        split["server_cpus"].as_u64().expect("a count"),
        split["client_cpus"].as_u64().expect("a count"),
    );
    assert!(server >= 1 && client >= server, "{split:#}");
    assert!(
        split["chosen_by"] == "default" || split["chosen_by"] == "unpinned",
        "{split:#}"
    );
    let reason = split["reason"].as_str().expect("a reason");
    assert!(!reason.is_empty(), "{split:#}");
    assert!(
        json["config"]["notes"].to_string().contains("CPU split: "),
        "the notes say which split was used: {json:#}"
    );
    let rows = json["results"].as_array().expect("results is a list");
    assert_eq!(rows.len(), 1, "{json}");
    for k in ROW_KEYS {
        assert!(rows[0].get(k).is_some(), "results[0].{k}: {json}");
    }
    assert_eq!(rows[0]["model"], "threaded", "{json:#}");
    assert_eq!(rows[0]["connections"], 2, "{json:#}");
    assert_eq!(rows[0]["serialized"], false, "{json:#}");
    assert!(rows[0]["msgs_per_sec"].as_f64().unwrap() > 0.0, "{json}");
    assert!(
        out.contains("| threaded | 2 | 64 B |"),
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
        "--retries",
        "0",
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
    assert!(out.contains("| mine | 2 | 64 B |"), "{out}");
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
    assert_eq!(broken["model"], "broken", "{json:#}");
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

/// `ringport bench ARGS --out DIR` with a tiny default load; status, stdout, stderr.
fn bench(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["bench", "--sizes", "64", "--warmup", "0s"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", dir.to_str().unwrap()]);
    run(&all)
}

fn ringport_server(name: &str) -> String {
    format!(
        "{name}={} serve --model epoll --listen 127.0.0.1:{{port}}",
        env!("CARGO_BIN_EXE_ringport")
    )
}

#[cfg(target_os = "linux")]
#[test]
fn a_busy_loop_on_the_server_cpu_is_measured_and_the_cell_retried_or_flagged() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        // What the machine is, not a missing tool: never a CI failure.
        crate::util::skip(&format!("needs 2 CPUs, this machine has {cpus}"));
        return;
    }
    if std::process::Command::new("taskset")
        .arg("-V")
        .output()
        .is_err()
    {
        crate::util::skip_or_fail(
            "util-linux",
            "taskset is not installed (apt-get install util-linux)",
        );
        return;
    }
    // Another process spinning on the server's CPU for the whole bench.
    let mut spinner = std::process::Command::new("taskset")
        .args(["-c", "0", "sh", "-c", "while :; do :; done"])
        .spawn()
        .expect("start a busy loop");
    let dir = out_dir("busy");
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "epoll",
            "--connections",
            "1",
            "--duration",
            "500ms",
            "--reps",
            "1",
            "--retries",
            "1",
            "--server-cpus",
            "0",
            "--client-cpus",
            "1",
        ],
    );
    let _ = spinner.kill();
    let _ = spinner.wait();
    assert!(status.success(), "interference is not an error: {out}{err}");
    let json = results(&dir);
    let row = &json["results"][0];
    let pct = row["interference_pct"].as_f64().expect("measured on Linux");
    // The spinner gets about half of CPU 0: a quarter of the pinned pair.
    assert!(pct > 5.0, "interference {pct}%: {json:#}");
    assert!(
        row["retried"].as_u64().unwrap() >= 1,
        "a disturbed run is run again: {json:#}"
    );
    assert_eq!(row["disturbed"], true, "{json:#}");
    assert_eq!(
        json["config"]["cpu_split"]["chosen_by"], "flags",
        "--server-cpus and --client-cpus override the default split: {json:#}"
    );
    assert_eq!(json["config"]["server_cpus"], "0", "{json:#}");
    assert_eq!(json["config"]["client_cpus"], "1", "{json:#}");
    assert!(out.contains("DISTURBED"), "flagged in the table: {out}");
    assert!(
        out.contains("Not measured cleanly") && out.contains("interference"),
        "named in the verdict: {out}"
    );
    assert!(
        err.contains("busy before the bench started") && err.contains("busiest: "),
        "the preflight warns and names the busiest processes: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_server_entered_twice_is_within_noise() {
    // Seven repetitions: two identical servers' runs then overlap unless all
    // seven of one fall below all seven of the other (2 in 3432) by more
    // than the noise threshold, so this cannot fail by chance in practice.
    let dir = out_dir("twice");
    let (a, b) = (ringport_server("a"), ringport_server("b"));
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "epoll",
            "--server",
            &a,
            "--server",
            &b,
            "--baseline",
            "a",
            "--connections",
            "4",
            "--duration",
            "250ms",
            "--reps",
            "7",
            "--retries",
            "0",
        ],
    );
    assert!(status.success(), "{out}{err}");
    let json = results(&dir);
    let row_b = row_of(&json, "b");
    assert_eq!(row_b["baseline"], "a", "{json:#}");
    let ci = row_b["msgs_per_sec_ratio_ci"]
        .as_array()
        .expect("an interval");
    assert_eq!(ci.len(), 2, "{row_b:#}");
    assert!(row_b["ci_level"].as_f64().unwrap() >= 0.95, "{row_b:#}");
    let line = out
        .lines()
        .find(|l| l.starts_with("| b |"))
        .unwrap_or_else(|| panic!("b's table line: {out}"));
    let cols: Vec<&str> = line.split(" | ").collect();
    assert!(cols[4].starts_with('≈'), "msgs/s vs a within noise: {line}");
    assert!(
        cols[5].starts_with('≈'),
        "CPU/msg vs a within noise: {line}"
    );
    assert!(
        !out.lines().next().unwrap_or("").contains("b handled"),
        "the verdict claims nothing about b: {out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_outside_server_that_crashes_mid_run_is_reported_clearly() {
    let dir = out_dir("crash");
    // Serves for a moment, then dies by SIGKILL in the middle of the run.
    let crash = format!(
        "crash={} serve --model epoll --listen 127.0.0.1:{{port}} & pid=$!; sleep 0.5; kill -9 $pid; wait",
        env!("CARGO_BIN_EXE_ringport")
    );
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "epoll",
            "--server",
            &crash,
            "--connections",
            "2",
            "--duration",
            "2s",
            "--reps",
            "1",
            "--retries",
            "0",
        ],
    );
    assert_eq!(
        status.code(),
        Some(1),
        "a failed cell fails the bench: {out}{err}"
    );
    let json = results(&dir);
    let row = row_of(&json, "crash");
    assert_eq!(row["clean"], false, "{row:#}");
    assert!(row["errors"].as_u64().unwrap() >= 1, "{row:#}");
    assert!(
        out.contains("Not measured cleanly") && out.contains("crash at 2 connections"),
        "the verdict names it: {out}"
    );
    assert!(err.contains("crash"), "{err}");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("crash"), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_html_is_one_self_contained_page_that_renders_in_chromium() {
    let dir = out_dir("html");
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "epoll,threaded",
            "--connections",
            "1,4",
            "--duration",
            "200ms",
            "--reps",
            "2",
            "--retries",
            "0",
        ],
    );
    assert!(status.success(), "{out}{err}");
    let page_path = dir.join("report.html");
    let page = std::fs::read_to_string(&page_path).unwrap();
    for needed in [
        "<svg",
        "<table",
        "ringport bench",
        "How to read the columns",
        "command",
    ] {
        assert!(page.contains(needed), "{needed} in the page");
    }
    // Nothing to fetch and nothing to run: one file is the whole report.
    for banned in ["<script", " src=", " href=", "url(", "@import"] {
        assert!(!page.contains(banned), "{banned} in a self-contained page");
    }
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        crate::util::skip_or_fail(
            "chromium",
            "chromium is not installed (apt-get install chromium), so report.html was not \
             opened in a browser",
        );
        return;
    };
    let shot = dir.join("report.png");
    let url = format!("file://{}", page_path.display());
    let mut cmd = std::process::Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--log-level=0",
        "--window-size=1400,1600",
    ])
    .arg(format!("--screenshot={}", shot.display()))
    .arg(&url);
    let (status, _, log) = crate::util::run_cmd(cmd);
    assert!(status.success(), "chromium: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let decoder = png::Decoder::new(std::fs::File::open(&shot).expect("a screenshot"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let inked = pixels
        .chunks(px)
        .filter(|p| p.iter().take(3).any(|&c| c < 200))
        .count();
    let total = pixels.len() / px;
    assert!(
        inked * 100 > total,
        "the screenshot is blank: {inked} of {total} pixels are not near-white"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(target_os = "linux")]
#[test]
fn a_server_cpu_cap_holds_the_server_to_its_share_and_is_recorded() {
    // bench's cgroups, wherever this machine's CPU controller is.
    let caps = || {
        let mut names: Vec<String> = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"]
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ringport-bench-"))
            .collect();
        names.sort();
        names
    };
    let before = caps();
    let dir = out_dir("cap");
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "epoll",
            "--connections",
            "8",
            "--duration",
            "1s",
            "--reps",
            "1",
            "--server-cpu-cap",
            "20",
        ],
    );
    if status.code() == Some(2) && err.contains("cannot hold the servers") {
        // Whether the controller is delegated is up to whoever runs this
        // machine, not something to install: never a CI failure.
        crate::util::skip(&format!(
            "no cgroup CPU controller that this user may write: {}",
            err.trim()
        ));
        return;
    }
    assert!(status.success(), "{out}{err}");
    let json = results(&dir);
    assert_eq!(json["config"]["server_cpu_cap_pct"], 20, "{json:#}");
    assert!(
        json["config"]["notes"].to_string().contains("held to 20%"),
        "{json:#}"
    );
    let row = &json["results"][0];
    let cpu_per_msg = row["server_cpu_s_per_million"].as_f64().unwrap() / 1e6;
    let share = cpu_per_msg * row["msgs_per_sec"].as_f64().unwrap();
    // An echo server under a closed-loop load would take a whole CPU.
    assert!(
        share < 0.35,
        "the server used {share:.2} of a CPU: {json:#}"
    );
    assert_eq!(caps(), before, "bench removes its cgroup");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An echo server (Python, threads) that holds each echo of a connection's
/// first `slow_s` seconds for 50 ms, then echoes at once.
fn slow_starting_server(name: &str, slow_s: f64) -> String {
    let script = format!(
        r#"import socket, sys, threading, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(64)
def serve(c):
    born = time.monotonic()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d:
            break
        if time.monotonic() - born < {slow_s}:
            time.sleep(0.05)
        c.sendall(d)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#
    );
    format!("{name}=exec python3 -c '{script}' {{port}}")
}

#[test]
fn a_run_that_starts_slowly_after_its_warm_up_is_flagged_and_not_claimed() {
    if std::process::Command::new("python3")
        .arg("-V")
        .output()
        .is_err()
    {
        crate::util::skip_or_fail(
            "python3",
            "python3 is not installed (apt-get install python3): the slow-starting server is a Python script",
        );
        return;
    }
    let dir = out_dir("slow-start");
    // Every connection, the warm-up's and then the measured run's, is slow
    // for its first 0.7 s: the first 0.5 s interval of the measured run
    // goes at a few dozen messages/s, the later ones at thousands.
    let slow = slow_starting_server("slow", 0.7);
    let (status, out, err) = run(&[
        "bench",
        "--sizes",
        "64",
        "--out",
        dir.to_str().unwrap(),
        "--models",
        "epoll",
        "--server",
        &slow,
        "--baseline",
        "epoll",
        "--connections",
        "2",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--reps",
        "1",
        "--retries",
        "0",
        // Other tests run beside this one: their CPU is not what this
        // test is about, and a disturbed cell would be named for that.
        "--max-interference",
        "100",
    ]);
    assert!(
        status.success(),
        "a slow start is doubtful, not a failure: {out}{err}"
    );
    let json = results(&dir);
    let row = row_of(&json, "slow");
    assert_eq!(row["slow_starts"], 1, "{row:#}");
    assert_eq!(row["clean"], true, "every echo was right: {row:#}");
    assert!(
        row["notes"].to_string().contains("SLOW START: in 1 of 1"),
        "{row:#}"
    );
    assert!(out.contains("**SLOW START** (1 of 1 reps)"), "{out}");
    let verdict = out.lines().next().unwrap_or("");
    assert!(!verdict.contains("slow handled"), "no claim: {out}");
    assert!(
        out.contains("slow at 2 connections × 64 B (a slow start in 1 of 1 repetition(s))"),
        "named in the verdict: {out}"
    );
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().contains(",slow_starts,"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
