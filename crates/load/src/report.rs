//! The result of a run: counters, latency percentiles, and how to print them.
//!
//! JSON keys are a contract: later versions add keys and never rename them.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection could not be made.
    ConnectFailed,
    /// The peer reset the connection.
    Reset,
    /// An echo did not come back within the timeout.
    Timeout,
    /// An echoed byte differed from the byte sent.
    Mismatch,
    /// The peer closed before echoing everything.
    EarlyClose,
    /// Any other socket error.
    Other,
}

impl ErrorKind {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::EarlyClose => "early_close",
            ErrorKind::Other => "other",
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The slowest message.
    pub max: u64,
}

impl Latency {
    /// Read the percentiles off a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Connections asked for.
    pub connections: u64,
    /// Messages fully written to the server.
    pub messages_sent: u64,
    /// Messages whose echo came back byte-exact.
    pub messages_verified: u64,
    /// Messages whose echo differed.
    pub mismatches: u64,
    /// Failed connections, of every kind (mismatches included).
    pub errors: u64,
    /// The errors by kind.
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
    /// Payload bytes written.
    pub bytes_sent: u64,
    /// Payload bytes read back (and compared).
    pub bytes_received: u64,
    /// Wall time of the measured part of the run.
    pub elapsed_s: f64,
    /// Verified messages per second.
    pub msgs_per_sec: f64,
    /// Verified echo bytes per second, in 10^6 bytes.
    pub mb_per_sec: f64,
    /// Latency from a message's first byte written to its last byte verified.
    pub latency_us: Latency,
}

impl Report {
    /// Build the report from merged counters.
    pub(crate) fn new(
        connections: u64,
        totals: &crate::engine::Totals,
        hist: &Histogram<u64>,
        elapsed: Duration,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let errors_by_kind: BTreeMap<ErrorKind, u64> = totals.errors.clone();
        Report {
            connections,
            messages_sent: totals.messages_sent,
            messages_verified: totals.messages_verified,
            mismatches: errors_by_kind
                .get(&ErrorKind::Mismatch)
                .copied()
                .unwrap_or(0),
            errors: errors_by_kind.values().sum(),
            errors_by_kind,
            bytes_sent: totals.bytes_sent,
            bytes_received: totals.bytes_received,
            elapsed_s: secs,
            msgs_per_sec: totals.messages_verified as f64 / secs,
            mb_per_sec: totals.bytes_received as f64 / secs / 1e6,
            latency_us: Latency::from_histogram(hist),
        }
    }

    /// True when every message came back byte-exact and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.errors == 0 && self.mismatches == 0 && self.messages_verified == self.messages_sent
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "connections      {}", self.connections);
        let _ = writeln!(
            s,
            "messages         {} sent, {} verified, {} mismatched",
            self.messages_sent, self.messages_verified, self.mismatches
        );
        let _ = write!(s, "errors           {}", self.errors);
        if self.errors > 0 {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{} {n}", k.name()))
                .collect();
            let _ = write!(s, " ({})", kinds.join(", "));
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "elapsed          {:.3} s, {:.0} msgs/s, {:.2} MB/s",
            self.elapsed_s, self.msgs_per_sec, self.mb_per_sec
        );
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "latency (us)     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        s
    }
}
