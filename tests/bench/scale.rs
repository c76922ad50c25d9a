//! `bench --scale-cpus`: counts no machine can run exit 2 naming why;
//! counts it can run each get a bench of their own beside the scaling files.

#[cfg(target_os = "linux")]
use super::{bench, out_dir};
use crate::util::run;

/// The CPUs this process may run on (`Cpus_allowed_list`), expanded.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

#[test]
fn scale_cpus_that_no_machine_can_run_exit_2_with_the_reason() {
    let (status, _, err) = run(&["bench", "--scale-cpus", "100000", "--quick"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--scale-cpus: no value can run on this machine (100000:"),
        "{err}"
    );
    let (status, _, err) = run(&["bench", "--scale-cpus", "1", "--server-cpus", "0"]);
    assert_eq!(status.code(), Some(2), "{err}");
}

/// With the load on the last CPU, one server CPU runs and a count past the
/// machine is skipped and named; each count gets its own bench files and
/// the scaling files sit beside them.
#[cfg(target_os = "linux")]
#[test]
fn scale_cpus_runs_each_count_it_can_and_names_the_rest() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        crate::util::skip("--scale-cpus with --client-cpus needs two CPUs");
        return;
    }
    let last = cpus[cpus.len() - 1].to_string();
    let dir = out_dir("scale");
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
            "--client-cpus",
            &last,
            "--scale-cpus",
            "1,4096",
        ],
    );
    assert!(status.success(), "{err}\n{out}");
    assert!(
        err.contains("--scale-cpus 4096 skipped: only"),
        "the skipped count is named: {err}"
    );
    assert!(out.contains("| epoll | 2 conn × 64 B |"), "{out}");
    for f in ["scaling.json", "scaling.md", "scaling.svg", "report.html"] {
        assert!(dir.join(f).is_file(), "{f} is written");
    }
    assert!(dir.join("cpus-1/results.json").is_file());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scaling.json")).unwrap()).unwrap();
    assert_eq!(json["server_cpus"], serde_json::json!([1]));
    assert_eq!(json["skipped"][0]["server_cpus"], 4096);
    let point = &json["series"][0]["points"][0];
    assert_eq!(point["server_cpus"], 1);
    assert!(point["msgs_per_sec"].as_f64().unwrap() > 0.0, "{json:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
