//! `bench --slo`: each model's capacity at an objective, end to end, with
//! a generous bound so that the search's bracket, not the machine's speed,
//! is what is checked. Nothing here asserts on a rate.

use super::{bench, out_dir, results};

#[test]
fn a_bench_with_an_slo_reports_each_models_capacity_bracket() {
    let dir = out_dir("slo");
    let (status, out, err) = bench(
        &dir,
        &[
            "--models",
            "epoll",
            "--connections",
            "2",
            "--duration",
            "300ms",
            "--reps",
            "1",
            "--slo",
            "p90<=200ms",
        ],
    );
    assert!(status.success(), "{err}\n{out}");
    let json = results(&dir);
    let cap = json["capacity"]
        .as_array()
        .expect("results.json has capacity");
    assert_eq!(cap.len(), 1, "{json:#}");
    let c = &cap[0];
    assert_eq!(c["model"], "epoll");
    assert_eq!(c["objective"], "p90<=200ms");
    let (pass, fail) = (c["last_pass"].as_f64(), c["first_fail"].as_f64());
    let pass = pass.unwrap_or_else(|| panic!("a rate held: {c:#}"));
    if let Some(fail) = fail {
        assert!(pass < fail && fail / pass <= 1.1 + 1e-9, "{c:#}");
    }
    assert!(!c["steps"].as_array().unwrap().is_empty());
    assert!(
        out.contains("At p90<=200ms and 2 connections × 64 B, epoll held the most"),
        "{out}"
    );
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("## Capacity at p90<=200ms"), "{summary}");
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        page.contains("<h2>Capacity at p90&lt;=200ms</h2>"),
        "capacity in the report"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_slo_exits_2_before_anything_starts() {
    let (status, _, err) = crate::util::run(&["bench", "--slo", "p99=1ms", "--quick"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
