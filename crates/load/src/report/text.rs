//! The report for people: a few labelled lines and a latency table, the
//! summary that `stress` prints (and whose table `merge` shares).

use super::{Latency, Report};
use std::fmt::Write as _;

impl Report {
    /// The end-of-run check's line, when there is something to say.
    fn write_end_check(&self, s: &mut String) {
        if self.close_grace_s == 0.0 {
            let _ = writeln!(
                *s,
                "end check        skipped (--close-grace 0): bytes after the last echo were not looked for"
            );
        } else if self.close_not_seen > 0 || self.close_by_reset > 0 {
            let mut parts = Vec::new();
            if self.close_not_seen > 0 {
                parts.push(format!(
                    "{} did not close within {}s of the client's half-close, so bytes after that were not looked for",
                    self.close_not_seen, self.close_grace_s
                ));
            }
            if self.close_by_reset > 0 {
                parts.push(format!(
                    "{} {} reset instead of closed after the last echo",
                    self.close_by_reset,
                    if self.close_by_reset == 1 {
                        "was"
                    } else {
                        "were"
                    }
                ));
            }
            let _ = writeln!(
                *s,
                "end check        note: of the connections checked, {}",
                parts.join("; ")
            );
        }
    }

    /// The first mismatch worked out, in one line, and how many more.
    fn write_mismatch(&self, s: &mut String) {
        let Some(first) = self.mismatch_details.first() else {
            return;
        };
        let more = self.mismatches.saturating_sub(1);
        let _ = write!(s, "mismatch         {}", first.line());
        if more > 0 {
            let _ = write!(
                s,
                " (+{more} more; {} in the JSON's mismatch_details)",
                self.mismatch_details.len()
            );
        }
        let _ = writeln!(s);
    }

    /// The latency percentiles, from send and (open loop) from schedule.
    fn write_latency_table(&self, s: &mut String) {
        s.push_str(&latency_table(
            &self.latency_us,
            self.latency_corrected_us.as_ref(),
        ));
        let Some(l) = self.send_lateness_us.as_ref().filter(|l| l.measured()) else {
            return;
        };
        let _ = writeln!(
            s,
            "  sent late      p50 {}, p99 {}, max {} (the generator's own delay, from each due time; waits for the server's echo not counted)",
            l.p50, l.p99, l.max
        );
        if self.generator_late {
            let _ = writeln!(
                s,
                "GENERATOR LATE   1 in 100 messages went out more than {} us after it was due, more than the median latency measured ({} us): latency from schedule is as much this load generator's as the server's. A busy generator falls behind (give it more --threads or CPUs, or a lower --rate); an idle one wakes late from its sleep between sends (on a VM that alone can take 100 us; --busy-poll spins instead)",
                l.p99, self.latency_us.p50
            );
        }
    }

    /// The summary's first line when the run was interrupted, such as
    /// `INTERRUPTED after 3.2 s of 10 s: the figures cover the part that ran`.
    pub fn interrupted_line(&self) -> Option<String> {
        let after = self.interrupted_after_s?;
        if after <= 0.0 {
            return Some(
                "INTERRUPTED before measuring began (while connecting or warming up): nothing was measured"
                    .to_string(),
            );
        }
        let of = match self.duration_asked_s {
            Some(d) => format!(" of {d} s"),
            None => String::new(),
        };
        Some(format!(
            "INTERRUPTED after {after:.1} s{of}: the figures cover the part that ran"
        ))
    }

    /// The human-readable summary: a few labelled lines and a latency table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(line) = self.interrupted_line() {
            let _ = writeln!(s, "{line}");
        }
        let mode = match (self.rate, &self.rate_profile) {
            (Some(r), _) => format!("open loop at {r} msgs/s"),
            (None, Some(p)) => format!("open loop, {p}"),
            (None, None) => "closed loop".to_string(),
        };
        let _ = writeln!(
            s,
            "run              {} engine, {} thread{}, {mode}, pipeline {}",
            self.engine,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.pipeline
        );
        let _ = write!(
            s,
            "connections      {} asked, {} opened, {} completed, {} failed",
            self.connections,
            self.connections_opened,
            self.connections_completed,
            self.connections_failed
        );
        if self.connections_failed > 0 {
            let _ = write!(s, " ({})", self.error_kinds());
        }
        let _ = writeln!(s);
        let _ = write!(s, "messages         ");
        if let Some(n) = self.messages_scheduled {
            let _ = write!(s, "{n} scheduled, ");
        }
        let _ = write!(
            s,
            "{} sent, {} verified, {} mismatched",
            self.messages_sent, self.messages_verified, self.mismatches
        );
        if let Some(n) = self.messages_never_sent.filter(|n| *n > 0) {
            let _ = write!(s, ", {n} never sent");
        }
        let _ = writeln!(s);
        if let Some(seed) = self.seed {
            let _ = writeln!(
                s,
                "payload          random bytes, seed {seed} (repeat with --seed {seed})"
            );
        }
        if self.warmup_s > 0.0 {
            let _ = writeln!(
                s,
                "warm-up          {:.3} s, {} messages (not counted)",
                self.warmup_s, self.warmup_messages
            );
        }
        if self.messages_unsent > 0 {
            let _ = writeln!(
                s,
                "unsent           {} messages were due but never sent: the server fell behind the rate",
                self.messages_unsent
            );
        }
        if let Some(lost) = self.messages_lost().filter(|n| *n > 0) {
            let why = if self.interrupted {
                "the run was interrupted first"
            } else {
                "their connections failed first"
            };
            let _ = writeln!(s, "never sent       {lost} scheduled messages: {why}");
        }
        let _ = write!(s, "errors           {}", self.errors);
        if self.errors > 0 {
            let _ = write!(s, " ({})", self.error_kinds());
        }
        let _ = writeln!(s);
        self.write_mismatch(&mut s);
        self.write_end_check(&mut s);
        let _ = writeln!(
            s,
            "elapsed          {:.3} s, {:.0} msgs/s, {:.2} MB/s",
            self.elapsed_s, self.msgs_per_sec, self.mb_per_sec
        );
        if let Some(p) = &self.per_connection_rate {
            let _ = writeln!(
                s,
                "per connection   min {:.0}  median {:.0}  max {:.0} msgs/s  Jain {}",
                p.min,
                p.median,
                p.max,
                p.jain.map_or("-".into(), |j| format!("{j:.3}"))
            );
        }
        self.write_churn(&mut s);
        self.write_latency_table(&mut s);
        self.write_steps(&mut s);
        s
    }

    /// `--step`: a row per step, the curve of rate against latency.
    fn write_steps(&self, s: &mut String) {
        if self.steps.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "steps            {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>12}",
            "from (s)", "to (s)", "asked/s", "msgs/s", "p50 (us)", "p99 (us)", "p99 sched"
        );
        for st in &self.steps {
            let _ = writeln!(
                s,
                "                 {:>10.1} {:>10.1} {:>12.0} {:>10.0} {:>10} {:>10} {:>12}",
                st.from_s,
                st.to_s,
                st.rate_asked,
                st.msgs_per_sec,
                st.latency_us.shown(st.latency_us.p50),
                st.latency_us.shown(st.latency_us.p99),
                st.latency_corrected_us.shown(st.latency_corrected_us.p99)
            );
        }
    }

    /// Churn: connections per second and how long their connects took.
    fn write_churn(&self, s: &mut String) {
        let (Some(n), Some(per_sec), Some(c)) = (
            self.per_connection,
            self.connections_per_sec,
            self.connect_latency_us.as_ref(),
        ) else {
            return;
        };
        let _ = writeln!(
            s,
            "churn            {n} messages per connection: {} connections closed and replaced, {per_sec:.0} connections/s",
            self.connections_cycled
        );
        let _ = writeln!(
            s,
            "connect (us)     p50 {}, p90 {}, p99 {}, p99.9 {}, max {} ({} connects)",
            c.shown(c.p50),
            c.shown(c.p90),
            c.shown(c.p99),
            c.shown(c.p999),
            c.shown(c.max),
            c.count
        );
    }
}

/// The latency table of a summary: a header of percentiles, a row from
/// send and, when there is one, a row from schedule. Shared by `stress`
/// and `merge`, so that both print the same shape.
pub fn latency_table(send: &Latency, schedule: Option<&Latency>) -> String {
    let mut s = String::new();
    let mut rows = vec![("from send", send)];
    if let Some(c) = schedule {
        rows.push(("from schedule", c));
    }
    let header = send.columns();
    let width = header
        .iter()
        .map(|(n, _)| n.len())
        .chain(
            rows.iter()
                .flat_map(|(_, l)| l.columns().into_iter().map(|(_, v)| l.shown(v).len())),
        )
        .max()
        .unwrap_or(4)
        + 2;
    let _ = write!(s, "latency (us)    ");
    for (name, _) in &header {
        let _ = write!(s, "{name:>width$}");
    }
    let _ = writeln!(s);
    for (label, l) in rows {
        let _ = write!(s, "  {label:<14}");
        for (_, v) in l.columns() {
            let _ = write!(s, "{:>width$}", l.shown(v));
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::report::tests::report;

    #[test]
    fn the_table_shows_asked_percentiles_and_the_corrected_row() {
        let text = report(true).to_text();
        assert!(text.contains("p99.99"), "{text}");
        assert!(text.contains("from schedule"), "{text}");
        assert!(!report(false).to_text().contains("from schedule"));
    }

    #[test]
    fn the_first_mismatch_is_one_line_of_the_summary() {
        use crate::{Mismatch, MismatchKind};
        let mut r = report(false);
        assert!(!r.to_text().contains("mismatch "));
        r.mismatches = 3;
        r.mismatch_details = vec![Mismatch {
            connection: 2,
            message: 4,
            offset: 0,
            stream_offset: 192,
            kind: MismatchKind::EarlierMessage,
            source_connection: Some(2),
            source_message: Some(1),
            source_offset: Some(0),
            shift: Some(-192),
            candidates: 1,
            resumes_after: None,
            inserted: None,
            expected_hex: "00ff".into(),
            received_hex: "0102".into(),
            received_bytes: 2,
        }];
        let text = r.to_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("mismatch "))
            .collect();
        assert_eq!(
            lines,
            ["mismatch         connection 2, message 4, byte 0 (stream byte 192): message 1 of this connection again; expected 00ff, received 0102 (+2 more; 1 in the JSON's mismatch_details)"],
            "{text}"
        );
    }

    #[test]
    fn the_summary_shows_the_spread_over_connections() {
        let mut r = report(false);
        r.per_connection_rate = crate::Spread::from_counts(&[10, 100, 110, 90, 100], 1.0);
        let text = r.to_text();
        assert!(
            text.contains("per connection   min 10  median 100  max 110 msgs/s  Jain 0.834"),
            "{text}"
        );
    }
}
