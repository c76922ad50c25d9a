//! The files a bench leaves: `results.json`, `results.csv`, `summary.md`,
//! and (from `chart.rs`) `chart.svg` and `latency.svg`; plus the Markdown
//! table printed at the end. One module per concern: the CSV, the table's
//! columns, its marks, the table and its footnotes, the verdict and the
//! why beside it, `report.html`'s cost breakdown, and `summary.md` that
//! puts them together.

mod columns;
mod costs;
mod csv;
mod marks;
mod summary;
mod table;
mod verdict;
mod why;
pub mod winners;

pub use crate::stats::{baseline, PREFERRED_BASELINE};
pub use columns::{Align, Column, COLUMNS};
pub use costs::{cost_table, COST_COLUMNS};
pub use csv::{csv_header, to_csv};
pub use marks::Mark;
pub use summary::{default_out_dir, summary_markdown, utc_timestamp};
pub use table::{ratio_text, table, table_markdown, with_spread, Table};
pub use verdict::verdict;
pub use why::why;

/// A client using this much of its CPUs may be what limits the figures.
const CLIENT_BOUND_PCT: f64 = 90.0;

/// True when the load used so much of its CPUs that it, not the server,
/// may be what limits the row's msgs/s (`client-bound?` in the table).
pub(crate) fn client_bound(r: &crate::stats::Row) -> bool {
    r.median(crate::figure::Figure::ClientCpu)
        .is_some_and(|p| p >= CLIENT_BOUND_PCT)
}
/// Above this share of the pinned CPUs taken by the hypervisor, a cell's
/// figures say more about the host than about the server.
const STEAL_NOTE_PCT: f64 = 5.0;

/// Rows and results to test the outputs with.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::figure::Figure;
    use crate::stats::{baseline, Row};
    use crate::{ConfigRecord, Machine, Results};

    pub fn row(model: &str, conns: usize, msgs: Option<f64>) -> Row {
        let mut r = Row {
            model: model.into(),
            connections: conns,
            size: 64,
            serialized: model == "blocking",
            reps: usize::from(msgs.is_some()),
            errors: 0,
            mismatches: 0,
            clean: msgs.is_some(),
            notes: vec![],
            ..Row::default()
        };
        let medians = [
            (Figure::MsgsPerSec, msgs),
            (Figure::MbPerSec, msgs.map(|m| m * 128.0 / 1e6)),
            (Figure::P50, Some(20.0)),
            (Figure::P99, Some(80.0)),
            (Figure::ServerCpu, Some(3.5)),
            (Figure::ServerUser, Some(0.5)),
            (Figure::ServerSys, Some(3.0)),
            (Figure::ServerCpusBusy, Some(3.6)),
            (Figure::ServerPeakRss, Some(4096.0)),
            (Figure::ClientCpu, Some(50.0)),
            (Figure::HostSteal, Some(0.0)),
        ];
        for (f, v) in medians {
            r.figure_mut(f).median = v;
        }
        r.figure_mut(Figure::MsgsPerSec).reps = msgs.into_iter().collect();
        r.figure_mut(Figure::ServerCpu).reps = vec![3.5];
        r
    }

    pub fn results(mut rows: Vec<Row>, models: &[&str]) -> Results {
        let names: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        if let Some((base, _)) = baseline(&names, None) {
            crate::stats::add_ratios(&mut rows, base);
        }
        Results {
            machine: Machine {
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu_model: "Test CPU".into(),
                cores: 2,
                allowed_cpus: "0-1".into(),
                kernel: "Linux 6.1".into(),
                memory: "1.0 GiB".into(),
                returns_free_memory: false,
            },
            config: ConfigRecord {
                command: "ringport bench".into(),
                started_at: "2023-11-14T22:13:20Z".into(),
                ringport_version: "0.1.0".into(),
                models: models.iter().map(|m| m.to_string()).collect(),
                outside_servers: vec![],
                connections: vec![1, 64],
                sizes: vec![64],
                per_connection: None,
                duration_s: 1.0,
                warmup_s: 0.0,
                rate: None,
                reps: 1,
                server_cpus: "0".into(),
                client_cpus: "1".into(),
                server_workers: 1,
                load_threads: 1,
                timeout_s: 10.0,
                max_interference_pct: 5.0,
                retries: 2,
                preflight: None,
                baseline: None,
                notes: vec![],
                server_cpu_cap_pct: None,
                cpu_split: crate::CpuSplit {
                    server_cpus: 1,
                    client_cpus: 1,
                    chosen_by: crate::SplitChoice::Default,
                    no_better_split: true,
                    reason: crate::cpus::default_split_reason(2),
                },
            },
            results: rows,
            capacity: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::results;
    use super::fixtures::row;

    #[test]
    fn json_has_the_documented_shape() {
        let r = results(vec![row("threaded", 1, Some(1000.0))], &["threaded"]);
        let v = serde_json::to_value(&r).unwrap();
        for k in ["machine", "config", "results"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in ["cpu_model", "cores", "kernel", "memory"] {
            assert!(v["machine"].get(k).is_some(), "machine.{k}");
        }
        // The split is added next to the lists it explains, never in their place.
        for k in [
            "server_cpus",
            "client_cpus",
            "server_workers",
            "load_threads",
        ] {
            assert!(v["config"].get(k).is_some(), "config.{k}");
        }
        let split = &v["config"]["cpu_split"];
        assert_eq!(split["server_cpus"], 1, "{split}");
        assert_eq!(split["client_cpus"], 1, "{split}");
        assert_eq!(split["chosen_by"], "default", "{split}");
        assert_eq!(split["no_better_split"], true, "{split}");
        assert!(split["reason"].as_str().is_some_and(|r| !r.is_empty()));
        let keys = [
            "model",
            "connections",
            "size",
            "msgs_per_sec",
            "mb_per_sec",
            "p50_us",
            "p99_us",
            "server_cpu_s_per_million",
            "server_peak_rss_kib",
            "client_cpu_pct",
            "host_steal_pct",
            "serialized",
        ];
        for k in keys {
            assert!(v["results"][0].get(k).is_some(), "results[0].{k}");
        }
    }
}
