//! The columns of the table, declared once: each one's title, alignment,
//! meaning, and the `results.csv` (and `results.json`) keys it shows. The
//! Markdown header and separator, the HTML table's cell classes,
//! `report.html`'s key to the columns and the title the ratio's footnote
//! gives its column all come from here (the marks in the cells come from
//! `marks.rs`), and a test holds every key named
//! here to the CSV header, so none of them can drift from the others. The
//! CSV's own columns and their order are a contract kept by `csv.rs` from
//! the figures (`figure.rs`); this list only points into it.

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: names and notes.
    Left,
    /// Numbers, so that their digits line up.
    Right,
}

/// One column of the table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its title; `{base}` stands for the baseline model's name.
    pub title: &'static str,
    /// How its cells are aligned.
    pub align: Align,
    /// What it shows, for the reader of `report.html`.
    pub meaning: &'static str,
    /// The `results.csv` columns that hold what it shows.
    pub csv: &'static [&'static str],
}

impl Column {
    /// Its title for a table whose ratios are to `base`.
    pub fn title_for(&self, base: &str) -> String {
        self.title.replace("{base}", base)
    }

    /// Its cell of a Markdown separator line: `---`, or `---:` right-aligned.
    pub fn separator(&self) -> &'static str {
        match self.align {
            Align::Left => "---",
            Align::Right => "---:",
        }
    }
}

/// The ratio of msgs/s to the baseline's; its footnote names it too.
pub const VS_BASE: Column = Column {
    title: "vs {base}",
    align: Align::Right,
    meaning: "msgs/s over the baseline model's on the same load, with its interval (from both medians' intervals); ≈ marks a ratio within noise",
    csv: &[
        "msgs_per_sec_ratio",
        "msgs_per_sec_ratio_ci_lo",
        "msgs_per_sec_ratio_ci_hi",
    ],
};

/// How much of the pinned CPUs went to others; its footnote names it too.
pub const INTERFERENCE: Column = Column {
    title: "interference %",
    align: Align::Right,
    meaning: "the share of the pinned CPUs that went to neither the server nor the load (other processes and host steal), the worst repetition's; disturbed runs are repeated, and cells that stay disturbed are marked DISTURBED",
    csv: &["interference_pct"],
};

/// Every column of the table, in order.
pub const COLUMNS: [Column; 14] = [
    Column {
        title: "model",
        align: Align::Left,
        meaning: "the server model, or the name given to --server",
        csv: &["model"],
    },
    Column {
        title: "conns",
        align: Align::Right,
        meaning: "the load: concurrent connections",
        csv: &["connections"],
    },
    Column {
        title: "size",
        align: Align::Right,
        meaning: "the load: bytes per message; `(N/conn)` marks a churn cell, whose connections are closed and replaced after N messages each",
        csv: &["size", "per_connection"],
    },
    Column {
        title: "msgs/s",
        align: Align::Right,
        meaning: "echoes verified byte for byte per second, the median of the repetitions; ± is the confidence interval of that median (95% from 6 repetitions; with fewer, the lowest to the highest run, whose confidence the notes give)",
        csv: &["msgs_per_sec", "msgs_per_sec_ci_lo", "msgs_per_sec_ci_hi"],
    },
    VS_BASE,
    Column {
        title: "CPU/msg vs {base}",
        align: Align::Right,
        meaning: "the server's CPU per message over the baseline's (below 1: cheaper), with its interval; ≈ marks a ratio within noise",
        csv: &[
            "server_cpu_ratio",
            "server_cpu_ratio_ci_lo",
            "server_cpu_ratio_ci_hi",
        ],
    },
    Column {
        title: "MB/s",
        align: Align::Right,
        meaning: "verified echo bytes per second, 10^6 bytes",
        csv: &["mb_per_sec"],
    },
    Column {
        title: "p50 µs",
        align: Align::Right,
        meaning: "the median latency, from a message's first byte written to its last byte verified",
        csv: &["p50_us"],
    },
    Column {
        title: "p99 µs",
        align: Align::Right,
        meaning: "the 99th percentile of that latency; it carries the interval of its median",
        csv: &["p99_us", "p99_us_ci_lo", "p99_us_ci_hi"],
    },
    Column {
        title: "server CPU s per M msgs",
        align: Align::Right,
        meaning: "user + system CPU the server process spent per million messages: the cost of the architecture (equal to µs per message)",
        csv: &[
            "server_cpu_s_per_million",
            "server_cpu_s_per_million_ci_lo",
            "server_cpu_s_per_million_ci_hi",
        ],
    },
    Column {
        title: "server peak RSS MiB",
        align: Align::Right,
        meaning: "the server's peak resident memory",
        csv: &["server_peak_rss_kib"],
    },
    Column {
        title: "client CPU %",
        align: Align::Right,
        meaning: "how busy the load generator's CPUs were; at 90% and above the load may be what limits msgs/s",
        csv: &["client_cpu_pct"],
    },
    INTERFERENCE,
    Column {
        title: "notes",
        align: Align::Left,
        meaning: "the row's marks (each explained below), the runs retried, errors and mismatches, and what the runs said, such as servers that failed",
        csv: &[
            "notes",
            "disturbed",
            "retried",
            "slow_starts",
            "serialized",
            "connections_per_sec",
            "server_cpu_us_per_connection",
            "client_cpu_pct",
            "host_steal_pct",
            "errors",
            "mismatches",
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::csv_header;

    #[test]
    fn every_key_a_column_names_is_a_csv_column() {
        let header = csv_header();
        let csv: Vec<&str> = header.split(',').collect();
        for c in COLUMNS {
            for key in c.csv {
                assert!(csv.contains(key), "{}: {key} is not in {header}", c.title);
            }
        }
    }
}
