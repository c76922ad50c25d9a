//! A rate that changes over the run: `--rate A..B --ramp D` and
//! `--rate A,B,C --step D`. What each part of the run asked for and carried
//! shows in the series, the steps, the JSON and the HdrHistogram log.

use super::*;

#[test]
fn a_ramp_schedules_the_integral_of_its_rate_and_the_series_shows_it() {
    let server = Server::start("epoll", &["--workers", "1"]);
    for engine in crate::util::load_engines() {
        // 100 to 300 msgs/s over 2 s: 400 messages due, 150 in the first
        // second (100 to 200: a mean of 150) and 250 in the second.
        let (status, json, err) = stress_json(
            &server.addr.to_string(),
            &[
                "--engine", engine, "-c", "4", "--size", "32", "--rate", "100..300", "--ramp",
                "2s", "--warmup", "200ms",
            ],
        );
        assert!(status.success(), "{json}{err}");
        assert_eq!(json["messages_scheduled"], 400, "{json}");
        assert_eq!(
            json["messages_verified"].as_u64().unwrap() + json["messages_unsent"].as_u64().unwrap(),
            400,
            "{json}"
        );
        assert_eq!(json["errors"], 0, "{json}");
        assert!(json["rate"].is_null(), "{json}");
        let profile = &json["rate_profile"];
        assert_eq!(profile["kind"], "ramp", "{json}");
        assert_eq!(
            (profile["from"].as_f64(), profile["to"].as_f64()),
            (Some(100.0), Some(300.0))
        );
        assert_eq!(profile["over_s"], 2.0, "{json}");
        let series = json["series"]
            .as_array()
            .expect("a series without --interval");
        assert_eq!(series.len(), 2, "{json}");
        let asked: Vec<f64> = series
            .iter()
            .map(|r| r["rate_asked"].as_f64().unwrap())
            .collect();
        assert!((asked[0] - 150.0).abs() < 0.01, "{asked:?}");
        assert!((asked[1] - 250.0).abs() < 0.01, "{asked:?}");
        let verified: u64 = series.iter().map(|r| r["messages"].as_u64().unwrap()).sum();
        assert_eq!(
            verified,
            json["messages_verified"].as_u64().unwrap(),
            "{json}"
        );
        // Rows on stderr show the rate asked of each second.
        assert!(err.contains("asked/s"), "{err}");
        assert!(json["steps"].as_array().unwrap().is_empty(), "{json}");
    }
}

#[test]
fn steps_hold_each_rate_and_the_report_has_a_row_for_each() {
    let server = Server::start("epoll", &["--workers", "1"]);
    let dir = std::env::temp_dir().join(format!("ringport-test-{}-steps", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("steps.hlog");
    // Two steps of 1 s at 100 and 300 msgs/s, then 300 held for 1 s more.
    let (status, json, err) = stress_json(
        &server.addr.to_string(),
        &[
            "-c",
            "3",
            "--rate",
            "100,300",
            "--step",
            "1s",
            "-d",
            "3s",
            "--interval",
            "500ms",
            "--hdr-log",
            log.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{json}{err}");
    assert_eq!(json["messages_scheduled"], 700, "{json}");
    assert_eq!(json["rate_profile"]["kind"], "steps", "{json}");
    assert_eq!(json["rate_profile"]["each_s"], 1.0, "{json}");
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{json}");
    assert_eq!(steps[0]["rate_asked"], 100.0);
    assert_eq!(steps[1]["rate_asked"], 300.0);
    assert_eq!(
        (steps[0]["from_s"].as_f64(), steps[0]["to_s"].as_f64()),
        (Some(0.0), Some(1.0))
    );
    assert_eq!(steps[1]["from_s"], 1.0);
    assert!(
        steps[1]["to_s"].as_f64().unwrap() > 2.9,
        "the last rate held: {json}"
    );
    let messages: u64 = steps.iter().map(|s| s["messages"].as_u64().unwrap()).sum();
    assert_eq!(
        messages,
        json["messages_verified"].as_u64().unwrap(),
        "{json}"
    );
    // Both steps carried about what they asked: nothing was left unsent.
    assert_eq!(json["messages_unsent"], 0, "{json}");
    let count = |s: &serde_json::Value| s["latency_corrected_us"]["count"].as_u64().unwrap();
    assert!((90..=110).contains(&count(&steps[0])), "{json}");
    assert!((580..=620).contains(&count(&steps[1])), "{json}");
    // Every series row lies within one step and says its rate.
    let asked: Vec<f64> = json["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rate_asked"].as_f64().unwrap())
        .collect();
    assert_eq!(asked, [100.0, 100.0, 300.0, 300.0, 300.0, 300.0], "{json}");
    // The summary's steps table.
    let (_, text, _) = run(&[
        "stress",
        &server.addr.to_string(),
        "--rate",
        "100,200",
        "--step",
        "500ms",
    ]);
    assert!(
        text.contains("open loop, steps of 100, 200 msgs/s, 0.5 s each"),
        "{text}"
    );
    assert!(text.contains("steps            "), "{text}");
    // The log: a comment with the rate before each interval, and `merge`
    // still reads it all.
    let body = std::fs::read_to_string(&log).unwrap();
    assert_eq!(body.matches("#[Rate asked: ").count(), 6, "{body}");
    assert!(
        body.contains("#[Rate asked: 300.0 msgs/s from 1.000 s to 1.500 s]"),
        "{body}"
    );
    let (status, merged, err) = run(&["merge", log.to_str().unwrap(), "--json", "-"]);
    assert!(status.success(), "{merged}{err}");
    let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(
        merged["latency_corrected_us"]["count"],
        json["latency_corrected_us"]["count"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rates_ramps_and_steps_that_do_not_fit_together_exit_2_before_anything_starts() {
    let cases: &[(&[&str], &str)] = &[
        (&["--rate", "100..200"], "--ramp"),
        (&["--rate", "100,200"], "--step"),
        (&["--rate", "100", "--ramp", "1s"], "range"),
        (&["--rate", "100", "--step", "1s"], "two or more"),
        (&["--ramp", "1s"], "--rate"),
        (
            &["--rate", "100..200", "--ramp", "2s", "-d", "1s"],
            "--duration",
        ),
        (
            &["--rate", "100..200", "--ramp", "2s", "-n", "5"],
            "--count",
        ),
        (
            &["--rate", "100,200", "--step", "1s", "--interval", "300ms"],
            "--interval",
        ),
        (&["--rate", "100..0", "--ramp", "1s"], "not a rate"),
        (&["--rate", "100..1e9", "--ramp", "1s"], "out of range"),
    ];
    // Nothing listens there: a run that started would fail, not exit 2.
    let addr = format!("127.0.0.1:{}", free_port());
    for (args, needle) in cases {
        let mut all = vec!["stress", addr.as_str()];
        all.extend_from_slice(args);
        let (status, out, err) = run(&all);
        assert_eq!(status.code(), Some(2), "{args:?}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: wanted {needle}: {err}");
    }
}
