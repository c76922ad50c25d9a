//! From the samples of every repetition to one row per target and cell:
//! each figure is the median of its repetitions, taken figure by figure, so
//! one disturbed run moves none of them.

use crate::matrix::{Cell, Run, Target};
use crate::measure::Sample;
use serde::Serialize;

/// One line of `results.json`, `results.csv` and the table.
///
/// The keys are a contract like the load report's: later versions add keys
/// and never rename them. A figure is `null` when no repetition produced it
/// (the server did not start, or the OS cannot provide it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The model, or the name given to `--server`.
    pub model: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Verified messages per second.
    pub msgs_per_sec: Option<f64>,
    /// Verified echo bytes per second, in 10^6 bytes.
    pub mb_per_sec: Option<f64>,
    /// Median latency, microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, microseconds.
    pub p99_us: Option<f64>,
    /// Server CPU seconds (user + system) per million messages.
    pub server_cpu_s_per_million: Option<f64>,
    /// The user-mode part, seconds per million messages.
    pub server_user_s_per_million: Option<f64>,
    /// The kernel part, seconds per million messages.
    pub server_sys_s_per_million: Option<f64>,
    /// Busy time of the server's pinned CPUs (all but idle and iowait), seconds per million messages.
    pub server_cpus_busy_s_per_million: Option<f64>,
    /// Server peak resident memory, KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// The load's CPU use, percent of its CPUs (100 = all of them busy).
    pub client_cpu_pct: Option<f64>,
    /// Time the hypervisor took from the pinned CPUs, percent of their
    /// capacity; above a few percent the figures are unreliable.
    pub host_steal_pct: Option<f64>,
    /// The server handles one client at a time; the others wait their turn.
    pub serialized: bool,
    /// Repetitions that produced figures.
    pub reps: usize,
    /// Failed connections over all repetitions (mismatches included).
    pub errors: u64,
    /// Connections whose echo differed from what was sent, over all repetitions.
    pub mismatches: u64,
    /// Every repetition ran and every echo was verified.
    pub clean: bool,
    /// What went wrong or needs saying, one entry per distinct note.
    pub notes: Vec<String>,
}

/// The median; the mean of the middle two for an even count; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// What one run ended with: figures, or why the server could not be run.
pub type Outcome = Result<Sample, String>;

/// One row per cell and target, cells in matrix order and targets in the
/// order given within each cell.
pub fn aggregate(
    targets: &[Target],
    cells: &[Cell],
    runs: &[(Run, Outcome)],
    planned_reps: usize,
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(cells.len() * targets.len());
    for (ci, cell) in cells.iter().enumerate() {
        for (ti, target) in targets.iter().enumerate() {
            let mine: Vec<&Outcome> = runs
                .iter()
                .filter(|(r, _)| r.cell == ci && r.target == ti)
                .map(|(_, o)| o)
                .collect();
            rows.push(row(target, *cell, &mine, planned_reps));
        }
    }
    rows
}

fn row(target: &Target, cell: Cell, outcomes: &[&Outcome], planned_reps: usize) -> Row {
    let samples: Vec<&Sample> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let f = |get: fn(&Sample) -> Option<f64>| -> Option<f64> {
        median(&samples.iter().filter_map(|s| get(s)).collect::<Vec<_>>())
    };
    let mut notes: Vec<String> = Vec::new();
    let mut note = |n: &str| {
        if !notes.iter().any(|x| x == n) {
            notes.push(n.to_string());
        }
    };
    for o in outcomes {
        match o {
            Err(why) => note(why),
            Ok(s) => {
                if let Some(n) = &s.note {
                    note(n);
                }
            }
        }
    }
    let errors = samples.iter().map(|s| s.errors).sum();
    let mismatches = samples.iter().map(|s| s.mismatches).sum();
    if mismatches > 0 {
        note("ECHO MISMATCH: the server returned bytes that were not sent");
    } else if errors > 0 {
        note("connection errors: see errors");
    }
    let reps = samples.len();
    Row {
        model: target.name().to_string(),
        connections: cell.connections,
        size: cell.size,
        msgs_per_sec: f(|s| Some(s.msgs_per_sec)),
        mb_per_sec: f(|s| Some(s.mb_per_sec)),
        p50_us: f(|s| s.p50_us),
        p99_us: f(|s| s.p99_us),
        server_cpu_s_per_million: f(|s| s.server_cpu_s_per_million),
        server_user_s_per_million: f(|s| s.server_user_s_per_million),
        server_sys_s_per_million: f(|s| s.server_sys_s_per_million),
        server_cpus_busy_s_per_million: f(|s| s.server_cpus_busy_s_per_million),
        server_peak_rss_kib: f(|s| s.server_peak_rss_kib.map(|k| k as f64))
            .map(|k| k.round() as u64),
        client_cpu_pct: f(|s| s.client_cpu_pct),
        host_steal_pct: f(|s| s.host_steal_pct),
        serialized: target.serialized(),
        reps,
        errors,
        mismatches,
        clean: reps == planned_reps
            && reps == outcomes.len()
            && errors == 0
            && mismatches == 0
            && !samples.iter().any(|s| s.server_failed),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringport_server::Model;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    fn sample(msgs: f64) -> Sample {
        Sample {
            msgs_per_sec: msgs,
            p50_us: Some(msgs / 100.0),
            server_peak_rss_kib: Some(msgs as u64),
            ..Sample::default()
        }
    }

    #[test]
    fn each_figure_is_the_median_of_its_repetitions() {
        let targets = [
            Target::Model(Model::Threaded),
            Target::Model(Model::Blocking),
        ];
        let cells = [Cell {
            connections: 1,
            size: 64,
        }];
        let run = |rep, target| Run {
            rep,
            cell: 0,
            target,
        };
        let runs = vec![
            (run(0, 0), Ok(sample(100.0))),
            (run(0, 1), Ok(sample(10.0))),
            (run(1, 0), Ok(sample(300.0))),
            (run(1, 1), Ok(sample(30.0))),
            (run(2, 0), Ok(sample(200.0))),
            (run(2, 1), Err("did not start".to_string())),
        ];
        let rows = aggregate(&targets, &cells, &runs, 3);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].model, "threaded");
        assert_eq!(rows[0].msgs_per_sec, Some(200.0));
        assert_eq!(rows[0].p50_us, Some(2.0));
        assert_eq!(rows[0].server_peak_rss_kib, Some(200));
        assert!(rows[0].clean && !rows[0].serialized);
        assert_eq!(rows[1].msgs_per_sec, Some(20.0));
        assert!(rows[1].serialized);
        assert!(!rows[1].clean, "a missing repetition is not clean");
        assert_eq!(rows[1].notes, ["did not start"]);
    }

    #[test]
    fn errors_are_summed_and_flagged() {
        let targets = [Target::Model(Model::Threaded)];
        let cells = [Cell {
            connections: 2,
            size: 64,
        }];
        let bad = Sample {
            errors: 2,
            mismatches: 1,
            ..sample(5.0)
        };
        let runs = vec![(
            Run {
                rep: 0,
                cell: 0,
                target: 0,
            },
            Ok(bad),
        )];
        let rows = aggregate(&targets, &cells, &runs, 1);
        assert_eq!((rows[0].errors, rows[0].mismatches), (2, 1));
        assert!(!rows[0].clean);
        assert!(rows[0].notes[0].contains("MISMATCH"));
    }

    #[test]
    fn a_server_that_broke_its_contract_flags_a_clean_cell() {
        let targets = [Target::Model(Model::Threaded)];
        let cells = [Cell {
            connections: 1,
            size: 64,
        }];
        let crashed = Sample {
            server_failed: true,
            note: Some("the server exited during the run".into()),
            ..sample(5.0)
        };
        let runs = vec![(
            Run {
                rep: 0,
                cell: 0,
                target: 0,
            },
            Ok(crashed),
        )];
        let rows = aggregate(&targets, &cells, &runs, 1);
        assert_eq!(rows[0].errors, 0);
        assert!(!rows[0].clean);
        assert_eq!(rows[0].notes, ["the server exited during the run"]);
    }
}
