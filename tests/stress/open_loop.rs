//! The open loop's schedule, the warm-up, and the bound every closed
//! loop's latency must keep (Little's law).

use super::*;

#[test]
fn an_open_loop_below_one_message_per_connection_sends_each_its_share() {
    let server = Server::start("threaded", &[]);
    // 60 msg/s over 30 connections with one message each: half a second,
    // every connection sends once, at its own point of the schedule.
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &["--engine", engine, "-c", "30", "--rate", "60", "-n", "1"],
        );
        assert!(status.success(), "{json}{err}");
        assert_eq!(json["messages_verified"], 30, "{json}");
        assert_eq!(json["rate"], 60.0, "{json}");
        let corrected = &json["latency_corrected_us"];
        assert_eq!(corrected["count"], 30, "{json}");
        // Measured from the due time, which is never after the send.
        assert!(
            corrected["max"].as_u64().unwrap() >= json["latency_us"]["max"].as_u64().unwrap(),
            "{json}"
        );
    }
}

#[test]
fn an_open_loop_duration_run_schedules_rate_times_duration_messages() {
    let server = Server::start("threaded", &[]);
    // 20 msg/s for 1 s over 40 connections: slots 0..20 are due, one each
    // on connections 0..20; the other 20 connections never get a turn.
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "--engine",
                engine,
                "-c",
                "40",
                "--rate",
                "20",
                "--duration",
                "1s",
            ],
        );
        assert!(status.success(), "{json}{err}");
        let verified = json["messages_verified"].as_u64().unwrap();
        let unsent = json["messages_unsent"].as_u64().unwrap();
        assert_eq!(verified + unsent, 20, "{json}");
        assert_eq!(json["errors"], 0, "{json}");
    }
}

#[test]
fn an_open_loop_reports_how_late_the_generator_sent() {
    let server = Server::start("epoll", &["--workers", "1"]);
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "--engine", engine, "-c", "4", "--rate", "400", "-d", "1s", "--warmup", "200ms",
            ],
        );
        assert!(status.success(), "{json}{err}");
        let late = &json["send_lateness_us"];
        // One figure per measured message sent, ordered.
        assert_eq!(late["count"], json["messages_sent"], "{json}");
        let (p50, p99, max) = (
            late["p50"].as_u64().unwrap(),
            late["p99"].as_u64().unwrap(),
            late["max"].as_u64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{json}");
        // A send is never later than its message's latency from schedule.
        assert!(
            max <= json["latency_corrected_us"]["max"].as_u64().unwrap(),
            "{json}"
        );
        assert!(json["generator_late"].is_boolean(), "{json}");
    }
    // A closed loop has no schedule to be late for.
    let (status, json, err) = stress_json(&server.addr.to_string(), &["-c", "2", "-n", "10"]);
    assert!(status.success(), "{json}{err}");
    assert!(json["send_lateness_us"].is_null(), "{json}");
    assert_eq!(json["generator_late"], false, "{json}");
}

#[test]
fn the_warmup_is_excluded_from_every_count() {
    let server = Server::start("threaded", &[]);
    for engine in crate::util::load_engines() {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "--engine", engine, "-c", "2", "-n", "10", "--size", "10", "--warmup", "300ms",
            ],
        );
        assert!(status.success(), "{json}{err}");
        // Exactly the counted messages, however many the warm-up sent.
        assert_eq!(json["messages_verified"], 20, "{json}");
        assert_eq!(json["messages_sent"], 20, "{json}");
        assert_eq!(json["bytes_sent"], 200, "{json}");
        assert_eq!(json["bytes_received"], 200, "{json}");
        assert_eq!(json["latency_us"]["count"], 20, "{json}");
        assert!(json["warmup_messages"].as_u64().unwrap() > 0, "{json}");
        assert_eq!(json["warmup_s"], 0.3, "{json}");
    }
}

/// In a closed loop with one message in flight, a connection's latencies
/// are disjoint stretches of the measured run: their sum cannot exceed
/// connections × elapsed (Little's law). The events engine once started a
/// message's clock when its thread's batch of readiness began, not when the
/// message was written, and so counted the load's own time for the turns
/// before it: the mean came out ~1.5× the bound at 64 connections × 64 KiB.
#[test]
fn latency_is_never_more_than_the_connections_had_time_for() {
    // One server worker and one load thread: two threads that the loaded
    // machine gives unequal CPU would split the connections into a fast
    // and a slow half, which is the machine's unfairness, not the server's.
    let server = Server::start("epoll", &["--workers", "1"]);
    let engines = crate::util::load_engines().into_iter().map(|e| (e, "200"));
    for (engine, conns) in engines.chain([("threads", "16")]) {
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "-c",
                conns,
                "--size",
                "65536",
                "-d",
                "1s",
                "--warmup",
                "200ms",
                "--threads",
                "1",
                "--engine",
                engine,
            ],
        );
        assert!(status.success(), "{engine}: {json}{err}");
        let verified = json["messages_verified"].as_f64().unwrap();
        let elapsed_us = json["elapsed_s"].as_f64().unwrap() * 1e6;
        let mean_us = json["latency_us"]["mean"].as_f64().unwrap();
        let conns: f64 = conns.parse().unwrap();
        assert!(verified > conns, "{engine}: {json}");
        // 2% for the histogram's 3 significant digits and µs rounding.
        let bound = conns * elapsed_us / verified;
        assert!(
            mean_us <= bound * 1.02,
            "{engine}: mean latency {mean_us:.0} µs, but {conns} connections over {elapsed_us:.0} µs \
             for {verified} messages allow at most {bound:.0} µs each: {json}"
        );
    }
}

/// A message that waits for the server's echo of the previous one is
/// delayed by the server, not by the generator: a server that holds each
/// echo back 100 ms makes the messages due every 10 ms wait hundreds of
/// milliseconds from their schedule, and none of that is lateness. (From
/// a helper's parallel version of the lateness work.)
#[test]
fn a_wait_for_the_previous_echo_is_not_lateness() {
    let addr = spawn_server(|mut s| {
        let mut buf = [0u8; 4096];
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let engines = crate::util::load_engines();
    for engine in engines.iter().copied().chain(["threads"]) {
        let (status, json, err) = stress_json(
            &addr.to_string(),
            &[
                "--engine",
                engine,
                "-c",
                "1",
                "--rate",
                "100",
                "-n",
                "5",
                "--pipeline",
                "1",
            ],
        );
        assert!(status.success(), "{engine}: {json}{err}");
        assert_eq!(json["send_lateness_us"]["count"], 5, "{engine}: {json}");
        // Message 4 was due at 40 ms and went out after four echoes (400 ms).
        let schedule_max = json["latency_corrected_us"]["max"].as_u64().unwrap();
        assert!(schedule_max >= 400_000, "{engine}: {json}");
        // Counting the waits, the median would be some 200 ms; the
        // generator's own delay is microseconds, allowed far more here.
        let p50 = json["send_lateness_us"]["p50"].as_u64().unwrap();
        assert!(p50 < 50_000, "{engine}: {json}");
    }
}
