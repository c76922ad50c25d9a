//! The report for programs that read tables: one CSV header line and one
//! value line, with the same columns whatever the run, so that files from
//! different runs can be concatenated.

use super::{percentile_key, Latency, Report};

impl Report {
    /// The report as one CSV header line and one value line. Nested values
    /// are flattened with `_`: `latency_us_p99`, `latency_us_p99.99`,
    /// `errors_by_kind_reset`. The series is not included (see the JSON).
    pub fn to_csv(&self) -> String {
        let mut cols = self.csv_counters();
        // Absent values are empty cells, so that closed- and open-loop files
        // share one header and can be concatenated.
        latency_csv(&mut cols, "latency_us", &self.latency_us, true);
        match &self.latency_corrected_us {
            Some(c) => latency_csv(&mut cols, "latency_corrected_us", c, true),
            None => latency_csv(&mut cols, "latency_corrected_us", &self.latency_us, false),
        }
        for (k, n) in &self.errors_by_kind {
            cols.push((format!("errors_by_kind_{}", k.name()), n.to_string()));
        }
        cols.extend(self.csv_settings());
        cols.extend(self.csv_churn());
        cols.push(("interrupted".into(), self.interrupted.to_string()));
        cols.push((
            "interrupted_after_s".into(),
            self.interrupted_after_s
                .map_or(String::new(), |t| format!("{t:.6}")),
        ));
        cols.extend(self.csv_spread());
        // A ramp or steps, without commas: `ramp 1000..50000 over 30s`,
        // `steps 1000;5000 each 10s`; empty for a fixed rate or a closed loop.
        cols.push((
            "rate_profile".into(),
            self.rate_profile
                .as_ref()
                .map_or(String::new(), |p| match p {
                    super::RateProfile::Ramp { from, to, over_s } => {
                        format!("ramp {from}..{to} over {over_s}s")
                    }
                    super::RateProfile::Steps { rates, each_s } => {
                        let rates: Vec<String> = rates.iter().map(|r| r.to_string()).collect();
                        format!("steps {} each {each_s}s", rates.join(";"))
                    }
                }),
        ));
        // Open loop: how late the generator sent (empty in a closed loop).
        let late = self.send_lateness_us.as_ref();
        for (key, v) in [
            ("send_lateness_us_p50", late.map(|l| l.p50)),
            ("send_lateness_us_p99", late.map(|l| l.p99)),
            ("send_lateness_us_max", late.map(|l| l.max)),
        ] {
            cols.push((key.into(), v.map_or(String::new(), |v| v.to_string())));
        }
        cols.push(("generator_late".into(), self.generator_late.to_string()));
        let (keys, values): (Vec<String>, Vec<String>) = cols.into_iter().unzip();
        format!("{}\n{}\n", keys.join(","), values.join(","))
    }

    /// The CSV columns before the latencies: connections, messages and
    /// bytes counted, and the rates.
    fn csv_counters(&self) -> Vec<(String, String)> {
        let opt = |v: Option<u64>| v.map_or(String::new(), |n| n.to_string());
        vec![
            ("connections".into(), self.connections.to_string()),
            (
                "connections_opened".into(),
                self.connections_opened.to_string(),
            ),
            (
                "connections_completed".into(),
                self.connections_completed.to_string(),
            ),
            (
                "connections_failed".into(),
                self.connections_failed.to_string(),
            ),
            ("messages_scheduled".into(), opt(self.messages_scheduled)),
            ("messages_sent".into(), self.messages_sent.to_string()),
            (
                "messages_verified".into(),
                self.messages_verified.to_string(),
            ),
            ("mismatches".into(), self.mismatches.to_string()),
            ("errors".into(), self.errors.to_string()),
            ("bytes_sent".into(), self.bytes_sent.to_string()),
            ("bytes_received".into(), self.bytes_received.to_string()),
            ("elapsed_s".into(), format!("{:.6}", self.elapsed_s)),
            ("msgs_per_sec".into(), format!("{:.3}", self.msgs_per_sec)),
            ("mb_per_sec".into(), format!("{:.6}", self.mb_per_sec)),
        ]
    }

    /// The CSV columns after the latencies and errors: how the run was set
    /// up, and what its end and warm-up came to.
    fn csv_settings(&self) -> Vec<(String, String)> {
        let opt = |v: Option<u64>| v.map_or(String::new(), |n| n.to_string());
        vec![
            ("engine".into(), self.engine.to_string()),
            ("threads".into(), self.threads.to_string()),
            ("pipeline".into(), self.pipeline.to_string()),
            (
                "rate".into(),
                self.rate.map_or(String::new(), |r| r.to_string()),
            ),
            ("messages_unsent".into(), self.messages_unsent.to_string()),
            ("messages_never_sent".into(), opt(self.messages_never_sent)),
            ("close_grace_s".into(), format!("{:.6}", self.close_grace_s)),
            ("close_not_seen".into(), self.close_not_seen.to_string()),
            ("close_by_reset".into(), self.close_by_reset.to_string()),
            ("warmup_s".into(), format!("{:.6}", self.warmup_s)),
            ("warmup_messages".into(), self.warmup_messages.to_string()),
            ("connect_s".into(), format!("{:.6}", self.connect_s)),
            (
                "seed".into(),
                self.seed.map_or(String::new(), |s| s.to_string()),
            ),
        ]
    }

    /// The churn columns, after the settings (only the spread comes after
    /// them: columns are added at the end, so older files still line up);
    /// empty cells without churn.
    fn csv_churn(&self) -> Vec<(String, String)> {
        let opt = |v: Option<u64>| v.map_or(String::new(), |n| n.to_string());
        let mut cols = vec![
            ("per_connection".into(), opt(self.per_connection)),
            (
                "connections_cycled".into(),
                self.connections_cycled.to_string(),
            ),
            (
                "connections_per_sec".into(),
                self.connections_per_sec
                    .map_or(String::new(), |r| format!("{r:.3}")),
            ),
        ];
        match &self.connect_latency_us {
            Some(c) => latency_csv(&mut cols, "connect_latency_us", c, true),
            None => latency_csv(&mut cols, "connect_latency_us", &self.latency_us, false),
        }
        cols
    }
}

impl Report {
    /// The spread over connections, after the churn columns:
    /// `per_connection_rate_min` and so on; empty cells when there is none.
    fn csv_spread(&self) -> Vec<(String, String)> {
        let p = self.per_connection_rate.as_ref();
        let f = |v: fn(&super::Spread) -> f64| p.map_or(String::new(), |p| format!("{:.3}", v(p)));
        vec![
            ("per_connection_rate_min".into(), f(|p| p.min)),
            ("per_connection_rate_median".into(), f(|p| p.median)),
            ("per_connection_rate_max".into(), f(|p| p.max)),
            (
                "per_connection_rate_jain".into(),
                p.and_then(|p| p.jain)
                    .map_or(String::new(), |j| format!("{j:.6}")),
            ),
            (
                "per_connection_rate_connections".into(),
                p.map_or(String::new(), |p| p.connections.to_string()),
            ),
        ]
    }
}

/// The CSV columns of one latency, named `<prefix>_p50` and so on; all
/// empty when the run has no such latency (`present` false), so that every
/// report has the same columns.
fn latency_csv(cols: &mut Vec<(String, String)>, prefix: &str, l: &Latency, present: bool) {
    // Nothing measured: empty figures, as for a latency the run lacks.
    let present = present && l.measured();
    let mut put = |name: &str, v: String| cols.push((format!("{prefix}_{name}"), v));
    let v = |x: u64| {
        if present {
            x.to_string()
        } else {
            String::new()
        }
    };
    put("p50", v(l.p50));
    put("p90", v(l.p90));
    put("p99", v(l.p99));
    put("p999", v(l.p999));
    put("max", v(l.max));
    put("min", v(l.min));
    put(
        "mean",
        if present {
            format!("{:.3}", l.mean)
        } else {
            String::new()
        },
    );
    put("count", v(l.count));
    for (p, x) in &l.percentiles.0 {
        put(&format!("p{}", percentile_key(*p)), v(*x));
    }
}

#[cfg(test)]
mod tests {
    use crate::report::tests::report;

    #[test]
    fn csv_has_one_header_and_one_row_of_equal_width() {
        for corrected in [false, true] {
            let csv = report(corrected).to_csv();
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines.len(), 2, "{csv}");
            assert_eq!(
                lines[0].split(',').count(),
                lines[1].split(',').count(),
                "{csv}"
            );
            assert!(lines[0].contains("latency_us_p99.99"), "{csv}");
            assert!(lines[0].contains("latency_corrected_us_p99.99"), "{csv}");
            assert!(lines[0].contains("errors_by_kind_early_close"), "{csv}");
        }
        // Closed and open runs share the header, so their files concatenate.
        assert_eq!(
            report(false).to_csv().lines().next(),
            report(true).to_csv().lines().next()
        );
    }
}
