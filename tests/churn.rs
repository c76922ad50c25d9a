//! `stress --per-connection`: connections carry a share of the messages,
//! pass the close check, and are replaced, against every server model; the
//! report counts the connections and times their connects.

use crate::stress::stress_json;
use crate::util::{run, Server};

/// One test per model of `for_each_model!`: every model that serves many
/// clients at once, and the blocking one, which serves them one after the
/// other (churn is its natural load).
macro_rules! churn_tests {
    ($($model:ident),* $(,)?) => {$(
        mod $model {
            #[test]
            fn each_connection_is_replaced_after_its_share() {
                super::each_connection_is_replaced_after_its_share(stringify!($model))
            }
        }
    )*};
}

for_each_model!(churn_tests);

/// The same churn from every engine of `util::load_engines`, against one model.
#[test]
fn every_load_engine_replaces_each_connection_after_its_share() {
    let server = Server::start("epoll", &[]);
    for engine in crate::util::load_engines() {
        churn_against(&server, engine);
    }
}

fn each_connection_is_replaced_after_its_share(model: &str) {
    churn_against(&Server::start(model, &[]), "events");
}

/// Churn against `server` from `engine`: every connection replaced after
/// its share, each through the close check, each connect timed.
fn churn_against(server: &Server, engine: &str) {
    let model = format!("{} from {engine}", server.model);
    let addr = server.addr.to_string();
    // 30 messages per slot, 4 per connection: 8 connections per slot
    // (7 of 4 and one of 2), 7 of them replaced.
    let (status, json, err) = stress_json(
        &addr,
        &[
            "-c",
            "4",
            "-n",
            "30",
            "--per-connection",
            "4",
            "--size",
            "100",
            "--no-progress",
            "--engine",
            engine,
        ],
    );
    assert!(status.success(), "{model}: {json:#}\n{err}");
    assert_eq!(json["messages_verified"], 120, "{model}: {json:#}");
    assert_eq!(json["connections_opened"], 32, "{model}: {json:#}");
    assert_eq!(json["connections_completed"], 4, "{model}: {json:#}");
    assert_eq!(json["connections_cycled"], 28, "{model}: {json:#}");
    assert_eq!(json["per_connection"], 4, "{model}: {json:#}");
    assert_eq!(
        json["connect_latency_us"]["count"], 28,
        "{model}: every replacement connect is timed: {json:#}"
    );
    assert!(
        json["connections_per_sec"].as_f64().unwrap() > 0.0,
        "{model}: {json:#}"
    );
    // The close check ran on each: the server closed every one.
    assert_eq!(json["close_not_seen"], 0, "{model}: {json:#}");
    assert_eq!(json["errors"], 0, "{model}: {json:#}");
}

#[test]
fn an_open_loop_with_churn_keeps_its_schedule_and_counts_only_the_window() {
    let server = Server::start("epoll", &[]);
    let addr = server.addr.to_string();
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &addr,
            &[
                "-c",
                "4",
                "-d",
                "1s",
                "--warmup",
                "0.3s",
                "--rate",
                "400",
                "--per-connection",
                "2",
                "--no-progress",
                "--engine",
                engine,
            ],
        );
        assert!(status.success(), "{json:#}\n{err}");
        let verified = json["messages_verified"].as_u64().unwrap();
        assert_eq!(
            json["messages_scheduled"].as_u64().unwrap(),
            verified,
            "{json:#}"
        );
        // Two messages a connection: about half as many replacements as
        // messages in the window, give or take one per slot at either edge.
        let cycled = json["connections_cycled"].as_u64().unwrap();
        assert!(
            cycled + 8 >= verified / 2 && cycled <= verified / 2 + 8,
            "{cycled} replacements for {verified} messages: {json:#}"
        );
        let connects = json["connect_latency_us"]["count"].as_u64().unwrap();
        assert!(
            connects <= cycled + 4,
            "only the window's connects: {json:#}"
        );
        let per_sec = json["connections_per_sec"].as_f64().unwrap();
        let elapsed = json["elapsed_s"].as_f64().unwrap();
        assert!((per_sec * elapsed - cycled as f64).abs() < 1e-6, "{json:#}");
    }
}

#[test]
fn the_summary_and_the_csv_carry_the_churn_figures() {
    let server = Server::start("threaded", &[]);
    let addr = server.addr.to_string();
    let dir = std::env::temp_dir().join(format!("ringport-test-{}-churn", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("r.csv");
    let (status, out, err) = run(&[
        "stress",
        &addr,
        "-c",
        "2",
        "-n",
        "6",
        "--per-connection",
        "1",
        "--no-progress",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains(
            "churn            1 messages per connection: 10 connections closed and replaced"
        ),
        "{out}"
    );
    assert!(out.contains("connect (us)"), "{out}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |k: &str| row[header.iter().position(|h| *h == k).expect(k)];
    assert_eq!(col("per_connection"), "1");
    assert_eq!(col("connections_cycled"), "10");
    assert_eq!(col("connect_latency_us_count"), "10");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn churn_on_the_threads_engine_or_with_zero_is_refused_before_anything_starts() {
    for bad in [
        &["--per-connection", "2", "--engine", "threads"][..],
        &["--per-connection", "0"][..],
        &["--per-connection", "x"][..],
    ] {
        let mut args = vec!["stress", "127.0.0.1:9"];
        args.extend_from_slice(bad);
        let (status, out, err) = run(&args);
        assert_eq!(status.code(), Some(2), "{bad:?}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: one line: {err}");
    }
}

#[test]
fn under_churn_the_interval_series_ends_with_the_run_and_adds_up() {
    let server = Server::start("epoll", &[]);
    let addr = server.addr.to_string();
    let (status, json, err) = stress_json(
        &addr,
        &[
            "-c",
            "20",
            "--threads",
            "1",
            "-d",
            "1s",
            "--interval",
            "250ms",
            "--per-connection",
            "2",
            "--no-progress",
        ],
    );
    assert!(status.success(), "{json:#}\n{err}");
    let elapsed = json["elapsed_s"].as_f64().unwrap();
    let series = json["series"].as_array().unwrap();
    let last = series.last().expect("intervals")["t"].as_f64().unwrap();
    assert!(
        last <= elapsed + 1e-3,
        "no interval after the run ({last} s > {elapsed} s): {json:#}"
    );
    let sum: u64 = series.iter().map(|i| i["messages"].as_u64().unwrap()).sum();
    assert_eq!(sum, json["messages_verified"].as_u64().unwrap(), "{json:#}");
}
