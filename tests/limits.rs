//! The servers at their limits: the drain at the descriptor limit, what a
//! descriptor limit lets a model serve, idle cost, and bad values refused
//! before anything starts.

#[cfg(target_os = "linux")]
use crate::util::{cpu_time, limit_open_files, raise_own_open_files, ringport, WAIT};
use crate::util::{run, Server};
#[cfg(target_os = "linux")]
use std::io::{Read, Write};
#[cfg(target_os = "linux")]
use std::net::TcpStream;
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

/// One echo on an open connection; `false` if it did not come back.
#[cfg(target_os = "linux")]
fn echo_once(s: &mut TcpStream, msg: &[u8]) -> bool {
    let _ = s.set_read_timeout(Some(WAIT));
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).is_ok() && back == msg
}

/// One test per model of `for_each_model!`.
macro_rules! limit_tests {
    ($($model:ident),* $(,)?) => {$(
        mod $model {
            #[cfg(target_os = "linux")]
            #[test]
            fn sigterm_at_the_descriptor_limit_drains_within_the_deadline() {
                super::sigterm_at_the_descriptor_limit_drains_within_the_deadline(stringify!($model))
            }
            #[test]
            fn the_largest_workers_value_serves() {
                super::the_largest_workers_value_serves(stringify!($model))
            }
            #[cfg(target_os = "linux")]
            #[test]
            fn a_descriptor_limit_too_low_to_start_exits_2_before_listening() {
                super::a_descriptor_limit_too_low_to_start_exits_2_before_listening(stringify!($model))
            }
        }
    )*};
}

for_each_model!(limit_tests);

/// At 10 open files (soft and hard) no model can make its poller or ring,
/// its signal pipe and a client's socket: refused with exit 2 and one line
/// before the listening line, never a panic or a server that serves no one.
#[cfg(target_os = "linux")]
fn a_descriptor_limit_too_low_to_start_exits_2_before_listening(model: &str) {
    let mut cmd = ringport();
    cmd.args(["serve", "--model", model, "--listen", "127.0.0.1:0"]);
    limit_open_files(&mut cmd, 10);
    let (status, out, err) = crate::util::run_cmd(cmd);
    assert_eq!(status.code(), Some(2), "{model}: {out}{err}");
    assert!(!out.contains("listening"), "{model}: {out}");
    assert_eq!(err.lines().count(), 1, "{model}: one line: {err}");
    assert!(err.contains("open-file limit is 10"), "{model}: {err}");
}

/// One test per model of `for_each_concurrent_model!`: thousands of clients
/// at once, which the blocking model would serve one at a time.
macro_rules! concurrent_limit_tests {
    ($($model:ident),* $(,)?) => {$(
        mod $model {
            #[cfg(target_os = "linux")]
            #[test]
            fn an_idle_server_with_thousands_of_connections_uses_next_to_no_cpu() {
                super::super::an_idle_server_with_thousands_of_connections_uses_next_to_no_cpu(stringify!($model))
            }
        }
    )*};
}

mod concurrent {
    for_each_concurrent_model!(concurrent_limit_tests);
}

/// SIGTERM with 200 clients that never close, 10 of which never read, and
/// only 64 descriptors: every model exits within its 1 s drain deadline
/// (the test allows 15 s for a loaded machine; a hang is what it catches).
#[cfg(target_os = "linux")]
fn sigterm_at_the_descriptor_limit_drains_within_the_deadline(model: &str) {
    raise_own_open_files(1024);
    let mut cmd = ringport();
    cmd.args([
        "serve",
        "--model",
        model,
        "--listen",
        "127.0.0.1:0",
        "--drain-timeout",
        "1s",
    ]);
    limit_open_files(&mut cmd, 64);
    let server = Server::start_cmd(cmd, model);
    // Eleven clients that are being served (each echoed once) before
    // the descriptors run out: which of the later ones are accepted is
    // up to the kernel.
    // (blocking serves one client at a time: just the one, which floods.)
    let (n_served, floods_from) = if model == "blocking" { (1, 0) } else { (11, 1) };
    let mut served: Vec<TcpStream> = Vec::new();
    for i in 0..n_served {
        let mut c = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
        assert!(
            echo_once(&mut c, b"served"),
            "{model}: client {i} was not served"
        );
        served.push(c);
    }
    // Ten of them flood the server and never read their echo.
    for c in served.iter_mut().skip(floods_from) {
        c.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while c.write(&chunk).is_ok() {}
    }
    // And 189 more that never close: far more than 64 descriptors allow.
    let rest: Vec<TcpStream> = (0..189)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, WAIT).ok())
        .collect();
    assert_eq!(rest.len(), 189, "{model}: the backlog takes them all");
    let (status, took, _) = server.signal_and_wait(libc::SIGTERM);
    eprintln!("{model}: SIGTERM at the descriptor limit: exited in {took:?}");
    assert!(status.success(), "{model}: {status}");
    assert!(
        took < Duration::from_secs(15),
        "{model}: took {took:?} to drain with a 1 s deadline"
    );
}

/// The threaded model no longer duplicates each socket to be able to close
/// it at the drain deadline, so a 256-descriptor limit serves about 240
/// clients at once, not half of that.
#[cfg(target_os = "linux")]
#[test]
fn a_descriptor_limit_lets_threaded_serve_about_as_many_clients() {
    raise_own_open_files(1024);
    let mut cmd = ringport();
    cmd.args(["serve", "--model", "threaded", "--listen", "127.0.0.1:0"]);
    limit_open_files(&mut cmd, 256);
    let server = Server::start_cmd(cmd, "threaded");
    let mut held = Vec::new();
    for i in 0..230 {
        let mut c = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let msg = format!("client {i}");
        assert!(
            echo_once(&mut c, msg.as_bytes()),
            "client {} of 230 was not served with 256 descriptors: {}",
            i + 1,
            server.stderr()
        );
        held.push(c);
    }
}

/// An idle server with a few thousand open connections uses next to no
/// CPU: no model wakes per connection on a timer. (The threaded model
/// used to wake every thread every 250 ms: 22% of a CPU at 10,000.)
/// `scripts/idle-cost.sh` measures 10,000.
#[cfg(target_os = "linux")]
fn an_idle_server_with_thousands_of_connections_uses_next_to_no_cpu(model: &str) {
    const CONNECTIONS: usize = 3000;
    raise_own_open_files(CONNECTIONS as u64 + 200);
    let server = Server::start(model, &[]);
    let pid = server.child.id();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        match TcpStream::connect_timeout(&server.addr, WAIT) {
            Ok(c) => clients.push(c),
            Err(e) => panic!("{model}: connect {} failed: {e}", clients.len() + 1),
        }
    }
    // Every one of them is being served, not waiting in the backlog.
    for (i, c) in clients.iter_mut().enumerate().step_by(100) {
        assert!(echo_once(c, b"awake?"), "{model}: connection {i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let busy = (cpu_time(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    eprintln!(
        "{model}: {CONNECTIONS} idle connections: {:.2}% of a CPU",
        busy * 100.0
    );
    // A timer per connection would show several percent here even on a
    // quiet machine; a loaded one cannot make an idle server busier.
    assert!(
        busy < 0.02,
        "{model}: {:.1}% of a CPU with {CONNECTIONS} idle connections",
        busy * 100.0
    );
}

/// Every bad value is refused before anything starts: exit 2, one line
/// that says what is wrong (and, where it helps, what to write instead),
/// and never a `listening on` line.
#[test]
fn every_bad_value_is_refused_with_one_line_before_anything_starts() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--workers", "0"], "--workers"),
        (&["serve", "--workers", "100000"], "1 to 1024"),
        (&["serve", "--max-connections", "0"], "--max-connections"),
        (&["serve", "--listen", "::1:0"], "[::1]:0"),
        (&["serve", "--listen", "[fe80::1]:0"], "scope"),
        (&["serve", "--listen", "300.1.1.1:80"], "300.1.1.1:80"),
        (&["serve", "--drain-timeout", "100years"], "too long"),
        (&["serve", "--idle-timeout", "soon"], "not a duration"),
        (&["serve", "--coalesce", "fast"], "not a duration"),
        (&["stress", "--threads", "0", "-n", "1"], "--threads"),
        (&["stress", "--timeout", "0s", "-n", "1"], "longer than 0"),
        (&["stress", "--duration", "0s"], "longer than 0"),
        (
            &["stress", "--connections", "0", "-n", "1"],
            "--connections",
        ),
        (&["stress", "--pipeline", "0", "-n", "1"], "--pipeline"),
        (&["stress", "--rate", "0", "-n", "1"], "rate"),
        (&["stress", "--size", "0", "-n", "1"], "--size"),
        (&["stress", "--interval", "1ms", "-n", "1"], "--interval"),
        (
            &["stress", "--close-grace", "forever", "-n", "1"],
            "not a duration",
        ),
        (&["stress", "::1:5150", "-n", "1"], "[::1]:5150"),
        (&["stress", "127.0.0.1:0", "-n", "1"], "port 0"),
        (
            &["stress", "--source-ips", "192.0.2.1", "-n", "1"],
            "cannot be used here",
        ),
        (
            &["stress", "--source-ips", ",", "-n", "1"],
            "names no address",
        ),
        (
            &["serve", "--model", "epoll", "--no-relay"],
            "completion model only",
        ),
        (
            &[
                "serve",
                "--model",
                "threaded",
                "--spread",
                "handoff",
                "--coalesce",
                "1ms",
            ],
            "--spread, --coalesce are for the completion model only",
        ),
        (
            &["serve", "--model", "blocking", "--sqpoll", "1ms"],
            "--sqpoll",
        ),
        // clap skips a `requires` whose flag conflicts with one given.
        (
            &["stress", "--rate", "100", "--slo", "p99<=1ms", "-n", "5"],
            "--find-rate",
        ),
        (&["stress", "--seed", "5", "-m", "hi", "-n", "1"], "--size"),
        (
            &[
                "stress",
                "--engine",
                "threads",
                "--busy-poll",
                "0",
                "-n",
                "1",
            ],
            "events engine",
        ),
        (&["stress", "-n", "1", "--hdr-log", "-"], "not stdout"),
        // Two reports to one place (nothing is created before the check).
        (
            &["stress", "-n", "1", "--json", "r.out", "--csv", "./r.out"],
            "--json and --csv both name",
        ),
        (
            &["stress", "-n", "1", "--json", "-", "--csv", "-"],
            "stdout",
        ),
        (&["merge", "a.log", "./a.log"], "given twice"),
        (&["merge", "a.log", "--csv", "a.log"], "both name"),
        (&["client", "--timeout", "0s"], "longer than 0"),
        (&["bench", "--timeout", "0"], "longer than 0"),
        (&["bench", "--reps", "0"], "--reps"),
        (&["bench", "--server-cpu-cap", "0"], "1..=100"),
        (&["bench", "--server-cpu-cap", "101"], "1..=100"),
        (&["bench", "--max-interference", "0"], "--max-interference"),
        (
            &["bench", "--baseline", "nobody", "--models", "epoll"],
            "--baseline",
        ),
    ];
    for (args, says) in cases {
        let (status, out, err) = run(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(says), "{args:?}: should mention {says}: {err}");
        assert!(!out.contains("listening on"), "{args:?}: {out}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Whether a model takes `--workers`: `serve --help` says it sets the
/// "worker threads for the event-driven models". The threaded model starts
/// a thread per connection and the blocking one serves on the thread that
/// accepts, so both accept the flag and ignore it. A new model must be
/// placed here.
fn takes_workers(model: &str) -> bool {
    match model {
        "epoll" | "tokio" | "completion" => true,
        "threaded" | "blocking" => false,
        other => panic!("say in tests/limits.rs whether the {other} model takes --workers"),
    }
}

/// The largest `--workers` allowed really serves, in every model: those
/// that take it start that many threads (at least: tokio and completion
/// add a few of their own), and those that ignore it start next to none.
fn the_largest_workers_value_serves(model: &str) {
    let server = Server::start(model, &["--workers", "1024"]);
    assert!(
        crate::util::round_trip(server.addr, b"a thousand workers"),
        "{model}: not served with --workers 1024: {}",
        server.stderr()
    );
    #[cfg(target_os = "linux")]
    {
        let pid = server.child.id();
        if takes_workers(model) {
            // The workers start one after the other, the first of them
            // serving while the rest are still being started.
            let deadline = Instant::now() + WAIT;
            let mut threads = threads_of(pid);
            while threads < 1024 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                threads = threads_of(pid);
            }
            assert!(
                threads >= 1024,
                "{model}: {threads} threads {WAIT:?} after --workers 1024: the flag was not taken"
            );
        } else {
            let threads = threads_of(pid);
            assert!(
                threads < 64,
                "{model}: {threads} threads with --workers 1024 and no client left: \
                 this model was thought to ignore --workers"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = takes_workers(model);
}

/// The number of threads of a process (Linux).
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Threads: line in /proc/PID/status")
}
