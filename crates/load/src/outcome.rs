//! What the parts of a run report to each other and to the caller: why a
//! connection failed (and which kind a socket error is, one mapping for
//! both engines), and one interval of the series. A leaf module, so
//! that the counters (`stats`) and the report (`report`) both use these
//! without using each other.

use serde::Serialize;
use std::io;

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection could not be made (refused, unreachable, or no answer within the timeout).
    ConnectFailed,
    /// The peer reset the connection.
    Reset,
    /// An echo did not come back within the timeout.
    Timeout,
    /// An echoed byte differed from the byte sent.
    Mismatch,
    /// The peer closed before the connection had sent and verified
    /// everything the run asked of it (or closed at accept).
    EarlyClose,
    /// Bytes came back that were never sent: more than the echo owed,
    /// inside the last echo or after it.
    ExtraBytes,
    /// Any other socket error.
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::ConnectFailed,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Mismatch,
        ErrorKind::EarlyClose,
        ErrorKind::ExtraBytes,
        ErrorKind::Other,
    ];

    /// Where this kind stands in [`ErrorKind::ALL`]: an index for arrays
    /// kept per kind (the live counters of [`Progress`](crate::Progress)).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::EarlyClose => "early_close",
            ErrorKind::ExtraBytes => "extra_bytes",
            ErrorKind::Other => "other",
        }
    }
}

/// The kind of failure a socket error is, for both engines.
///
/// `WouldBlock` is a timeout: it is what a blocking socket's read or write
/// timeout returns on Unix (`TimedOut` on Windows). A non-blocking socket
/// also returns it when there is nothing to do, which is no failure at all,
/// so the event-driven engine handles it before it classifies anything.
/// `ConnectionRefused` is a failed connect, as [`ErrorKind::ConnectFailed`]
/// says, whichever call reports it.
pub(crate) fn classify(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectFailed,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

/// One interval of the `--interval` series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalStat {
    /// The end of the interval, in seconds from the start of measuring.
    pub t: f64,
    /// Messages verified in the interval.
    pub messages: u64,
    /// The same, per second of the interval.
    pub msgs_per_sec: f64,
    /// Open loop: the messages per second the schedule asked of the
    /// interval (it changes with `--ramp` and `--step`); null otherwise.
    pub rate_asked: Option<f64>,
    /// 99th percentile of raw latency in the interval; null when it
    /// verified no message (a stall shows as a gap, not as zero latency).
    pub p99_us: Option<u64>,
    /// 99th percentile of corrected latency (open loop only; null otherwise,
    /// and when the interval verified no message).
    pub p99_corrected_us: Option<u64>,
}

/// One step of `--rate a,b,c --step D`: what the server carried at that
/// rate. The last step's row also covers the rest of a `--duration` longer
/// than the steps, where its rate held.
#[derive(Debug, Clone, Serialize)]
pub struct StepStat {
    /// The messages per second the step asked for.
    pub rate_asked: f64,
    /// Where the step starts and ends, in seconds from the start of measuring.
    pub from_s: f64,
    /// See `from_s`.
    pub to_s: f64,
    /// Messages verified in the step.
    pub messages: u64,
    /// The same, per second of the step.
    pub msgs_per_sec: f64,
    /// Latency from send, in the step.
    pub latency_us: crate::report::Latency,
    /// Latency from the schedule, in the step.
    pub latency_corrected_us: crate::report::Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_index_is_its_place_in_all() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
    }

    #[test]
    fn socket_errors_map_to_the_same_kind_in_both_engines() {
        let kind = |k: io::ErrorKind| classify(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::ConnectionAborted), ErrorKind::Reset);
        assert_eq!(
            kind(io::ErrorKind::ConnectionRefused),
            ErrorKind::ConnectFailed
        );
        // A blocking socket's timeout, on Unix and on Windows.
        assert_eq!(kind(io::ErrorKind::WouldBlock), ErrorKind::Timeout);
        assert_eq!(kind(io::ErrorKind::TimedOut), ErrorKind::Timeout);
        assert_eq!(kind(io::ErrorKind::InvalidInput), ErrorKind::Other);
    }
}
