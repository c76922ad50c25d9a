//! `summary.md`, and the UTC timestamps that date a bench and name its
//! default output folder.

use super::{table_markdown, verdict, why};
use crate::Results;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The whole `summary.md`: the verdict and why, the setup, then the table.
pub fn summary_markdown(results: &Results) -> String {
    let m = &results.machine;
    let c = &results.config;
    let mut s = String::from("# ringport bench\n\n");
    s.push_str(&verdict(results));
    s.push_str("\n\n");
    if let Some(why) = why(results) {
        s.push_str(&why);
        s.push_str("\n\n");
    }
    let _ = writeln!(s, "- date: {}", c.started_at);
    let _ = writeln!(
        s,
        "- machine: {}, {} logical CPUs (allowed: {}), {} {}, {} memory",
        m.cpu_model, m.cores, m.allowed_cpus, m.kernel, m.arch, m.memory
    );
    let _ = writeln!(s, "- command: `{}`", c.command);
    let _ = writeln!(
        s,
        "- load: {} s measured after {} s of discarded warm-up, per run; one message in flight per connection; every echoed byte verified",
        c.duration_s, c.warmup_s
    );
    let _ = writeln!(
        s,
        "- pinning: server on CPU {} ({} worker(s)), load on CPU {} ({} thread(s))",
        c.server_cpus, c.server_workers, c.client_cpus, c.load_threads
    );
    if let Some(p) = &c.preflight {
        let _ = writeln!(
            s,
            "- before the bench: the pinned CPUs were {:.0}% busy over one second",
            p.busy_pct
        );
    }
    for n in &c.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    s.push('\n');
    s.push_str(&table_markdown(results));
    if let Some(capacity) = crate::capacity::markdown(&results.capacity) {
        s.push('\n');
        s.push_str(&capacity);
    }
    s
}

/// `2023-11-14T22:13:20Z`.
pub fn utc_timestamp(t: SystemTime) -> String {
    // humantime refuses times before 1970 and after 9999 (it panics in
    // `to_string`); a clock that far off gets the nearest date it can write.
    let last = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    humantime::format_rfc3339_seconds(t.clamp(SystemTime::UNIX_EPOCH, last)).to_string()
}

/// `bench-results/2023-11-14T22-13-20Z`: no colons, which some file systems refuse.
pub fn default_out_dir(t: SystemTime) -> PathBuf {
    Path::new("bench-results").join(utc_timestamp(t).replace(':', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_dir_names_have_no_colons() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_timestamp(t), "2023-11-14T22:13:20Z");
        assert_eq!(
            utc_timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00Z");
        assert_eq!(
            default_out_dir(t),
            Path::new("bench-results").join("2023-11-14T22-13-20Z")
        );
    }
}
