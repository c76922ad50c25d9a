//! The cost breakdown end to end: a tiny bench's results.json, results.csv
//! and report.html carry the context switches and read/write calls per
//! message. Nothing here compares models or asserts on timing.

use super::{bench, out_dir, results, row_of};

/// The keys of the cost breakdown, each a number or null in every row.
const COST_KEYS: [&str; 3] = [
    "server_voluntary_switches_per_msg",
    "server_involuntary_switches_per_msg",
    "server_rw_calls_per_msg",
];

#[test]
fn a_bench_reports_switches_and_calls_per_message_with_their_doubts() {
    let dir = out_dir("costs");
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "threaded,epoll",
            "--connections",
            "2",
            "--duration",
            "300ms",
            "--reps",
            "1",
            "--retries",
            "0",
        ],
    );
    assert!(status.success(), "{out}{err}");
    let json = results(&dir);
    for model in ["threaded", "epoll"] {
        let row = row_of(&json, model);
        for k in COST_KEYS {
            let v = &row[k];
            if cfg!(target_os = "linux") {
                let n = v.as_f64().unwrap_or_else(|| panic!("{model}.{k}: {row:#}"));
                assert!(n.is_finite() && n >= 0.0, "{model}.{k}: {row:#}");
            } else {
                assert!(v.is_null(), "{model}.{k} is not measured here: {row:#}");
            }
        }
        for k in ["switches_lower_bound_reps", "rw_calls_lower_bound_reps"] {
            assert!(
                row[k].as_u64().is_some_and(|n| n <= 1),
                "{model}.{k}: {row:#}"
            );
        }
    }
    if cfg!(target_os = "linux") {
        // A thread per connection blocks in its read for every message: with
        // its threads counted whole that is about one switch per message;
        // where they ended inside the window (their switches lost) the row
        // says the figure is a lower bound.
        let threaded = row_of(&json, "threaded");
        let switches = threaded["server_voluntary_switches_per_msg"]
            .as_f64()
            .unwrap();
        assert!(switches > 0.0, "{threaded:#}");
        assert!(
            switches >= 0.5 || threaded["switches_lower_bound_reps"] == 1,
            "threaded: {switches} switches per message, not flagged: {threaded:#}"
        );
        let epoll = row_of(&json, "epoll");
        assert!(
            epoll["server_voluntary_switches_per_msg"].as_f64().unwrap() > 0.0,
            "an event loop that waits for its connections blocks: {epoll:#}"
        );
    }
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for k in COST_KEYS {
        assert!(header.split(',').any(|c| c == k), "{k} in {header}");
    }
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for needed in [
        "<h2>Cost breakdown</h2>",
        "voluntary switches/msg",
        "read/write calls/msg",
        "io_uring_enter",
    ] {
        assert!(page.contains(needed), "{needed} in report.html");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
