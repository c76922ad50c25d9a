//! The per-run figures, declared once.
//!
//! A figure is one number that every run measures and every row reports as
//! the median of its repetitions: msgs/s, p99, server CPU per message, ...
//! Each is declared by one entry of the `figures!` table below: its name in
//! `results.json` and `results.csv`, whether it is a count, and how to read
//! it from a [`Sample`]. From that entry come the [`Figure`] variant, the
//! row's summary of it ([`crate::stats::Summary`], in
//! [`Row::figures`](crate::stats::Row::figures)), its JSON key and its CSV
//! column.
//!
//! To add a figure: give [`Sample`] a field and measure it in
//! `measure.rs`, then add its entry here, and to [`Figure::APPENDED`] (its
//! last group, or a new one if keys were added after that group) so that
//! its column and key come after all those already there. That is all a
//! figure needs; two opt-ins sit right below the table: [`Figure::KEPT`]
//! to also report every repetition and the spread (`<key>_min`, `_max`,
//! `_ci`, `_reps`), and [`Figure::RATIOS`] to report a ratio to the
//! baseline. They are lists of their own, not flags in the table, because
//! their columns come in the order they were added, not in the table's.
//!
//! What is not a figure: the counts and flags of a run (errors, attempts,
//! disturbed) and its interference, which a row reports as the worst
//! repetition's rather than the median.

use crate::measure::Sample;

/// How a figure's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A measurement: written as a float (3 decimals in the CSV).
    Real,
    /// A whole number: the median is rounded and written as an integer.
    Count,
}

/// Declares the figures: the enum, [`Figure::ALL`] in table order, and each
/// figure's key, kind and accessor.
macro_rules! figures {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $key:literal, $kind:ident, |$s:ident| $get:expr;
    )*) => {
        /// One per-run figure; see the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Figure {
            $($(#[$doc])* $variant,)*
        }

        impl Figure {
            /// Every figure, in the order of their columns.
            pub const ALL: [Figure; Figure::COUNT] = [$(Figure::$variant),*];
            /// How many figures there are.
            pub const COUNT: usize = [$(stringify!($variant)),*].len();

            /// The key in `results.json` and the column in `results.csv`.
            pub fn key(self) -> &'static str {
                match self {
                    $(Figure::$variant => $key,)*
                }
            }

            /// Whether it is a measurement or a whole number.
            pub fn kind(self) -> Kind {
                match self {
                    $(Figure::$variant => Kind::$kind,)*
                }
            }

            /// Its value in one run; `None` when that run could not measure it.
            pub fn of(self, sample: &Sample) -> Option<f64> {
                match self {
                    $(Figure::$variant => {
                        let $s = sample;
                        $get
                    })*
                }
            }
        }
    };
}

figures! {
    /// Verified messages per second.
    MsgsPerSec = "msgs_per_sec", Real, |s| Some(s.msgs_per_sec);
    /// Verified echo bytes per second, in 10^6 bytes.
    MbPerSec = "mb_per_sec", Real, |s| Some(s.mb_per_sec);
    /// Median latency, microseconds.
    P50 = "p50_us", Real, |s| s.p50_us;
    /// 99th percentile latency, microseconds.
    P99 = "p99_us", Real, |s| s.p99_us;
    /// Server CPU seconds (user + system) per million messages.
    ServerCpu = "server_cpu_s_per_million", Real, |s| s.server_cpu_s_per_million;
    /// The user-mode part, seconds per million messages.
    ServerUser = "server_user_s_per_million", Real, |s| s.server_user_s_per_million;
    /// The kernel part, seconds per million messages.
    ServerSys = "server_sys_s_per_million", Real, |s| s.server_sys_s_per_million;
    /// Busy time of the server's pinned CPUs (all but idle and iowait),
    /// seconds per million messages.
    ServerCpusBusy = "server_cpus_busy_s_per_million", Real,
        |s| s.server_cpus_busy_s_per_million;
    /// Server peak resident memory, KiB.
    ServerPeakRss = "server_peak_rss_kib", Count, |s| s.server_peak_rss_kib.map(|k| k as f64);
    /// The load's CPU use, percent of its CPUs (100 = all of them busy).
    ClientCpu = "client_cpu_pct", Real, |s| s.client_cpu_pct;
    /// Time the hypervisor took from the pinned CPUs, percent of their
    /// capacity; above a few percent the figures are unreliable.
    HostSteal = "host_steal_pct", Real, |s| s.host_steal_pct;
    /// Churn cells: connections carried, closed and replaced per second.
    ConnsPerSec = "connections_per_sec", Real, |s| s.connections_per_sec;
    /// Churn cells: server CPU microseconds (user + system) per connection
    /// replaced, its messages included.
    ServerCpuPerConn = "server_cpu_us_per_connection", Real, |s| s.server_cpu_us_per_connection;
    /// Voluntary context switches of the server's threads per message (a
    /// lower bound in the repetitions where threads came and went; see the
    /// row's `switches_lower_bound_reps`).
    ServerVoluntarySwitches = "server_voluntary_switches_per_msg", Real,
        |s| s.server_voluntary_switches_per_msg;
    /// Involuntary context switches of the server's threads per message.
    ServerInvoluntarySwitches = "server_involuntary_switches_per_msg", Real,
        |s| s.server_involuntary_switches_per_msg;
    /// The server's read/write-family system calls per message: `read`,
    /// `write` and their kin only, not `recv`/`send`, `epoll_wait`,
    /// `accept` or `io_uring_enter`, nor an io_uring's operations.
    ServerRwCalls = "server_rw_calls_per_msg", Real, |s| s.server_rw_calls_per_msg;
}

impl Figure {
    /// The figures whose every repetition and spread a row also reports:
    /// `<key>_min`, `<key>_max`, `<key>_ci` (the 95% confidence interval of
    /// the median; see `order_stats.rs`) and `<key>_reps`, in this order of columns.
    pub const KEPT: [Figure; 3] = [Figure::MsgsPerSec, Figure::ServerCpu, Figure::P99];

    /// The figures a row compares to the baseline's, with the key of that
    /// ratio (and of its interval, the key plus `_ci`).
    pub const RATIOS: [(Figure, &'static str); 2] = [
        (Figure::MsgsPerSec, "msgs_per_sec_ratio"),
        (Figure::ServerCpu, "server_cpu_ratio"),
    ];

    /// The figures added after the layout of `results.csv` and
    /// `results.json` was fixed, in the groups they came in: each group is
    /// written after every column and key there was when it came, so that
    /// readers of the older files still find theirs where they were. The
    /// first follows `per_connection`; the second (the cost breakdown)
    /// follows `slow_starts` in the CSV and `starved_reps` in the JSON, and
    /// is followed by its doubt counts, `switches_lower_bound_reps` and
    /// `rw_calls_lower_bound_reps`.
    pub const APPENDED: [&'static [Figure]; 2] = [
        &[Figure::ConnsPerSec, Figure::ServerCpuPerConn],
        &[
            Figure::ServerVoluntarySwitches,
            Figure::ServerInvoluntarySwitches,
            Figure::ServerRwCalls,
        ],
    ];

    /// The figures in the block of medians: all but [`Figure::APPENDED`].
    pub fn in_block(self) -> bool {
        !Figure::APPENDED.iter().any(|group| group.contains(&self))
    }

    /// Its place in [`Figure::ALL`], and in a row's figures.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_keys_are_distinct() {
        for (i, f) in Figure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
        let mut keys: Vec<&str> = Figure::ALL.iter().map(|f| f.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Figure::COUNT);
    }

    #[test]
    fn each_figure_reads_its_own_field() {
        let s = Sample {
            msgs_per_sec: 1.0,
            p99_us: Some(2.0),
            server_peak_rss_kib: Some(3),
            ..Sample::default()
        };
        assert_eq!(Figure::MsgsPerSec.of(&s), Some(1.0));
        assert_eq!(Figure::P99.of(&s), Some(2.0));
        assert_eq!(Figure::ServerPeakRss.of(&s), Some(3.0));
        assert_eq!(Figure::P50.of(&s), None);
    }
}
