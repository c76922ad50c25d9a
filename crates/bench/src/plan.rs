//! The plan of a bench: which CPUs the server and the load run on
//! ([`CpuPlan`]), and everything else the flags decide ([`Plan`]), checked
//! before anything runs.

use crate::cpus::{self, CpuSet};
use crate::matrix::{Cell, Target};
use crate::sys::{self, CpuCap, UNAVAILABLE};
use crate::BenchError;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Which CPUs the server and the load run on, and how many threads each gets.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuPlan {
    /// The server's CPUs; `None` where pinning is unavailable.
    pub server: Option<CpuSet>,
    /// The load's CPUs; `None` where pinning is unavailable.
    pub client: Option<CpuSet>,
    /// `--workers` for the server: one per server CPU.
    pub server_workers: usize,
    /// Load threads: one per client CPU.
    pub load_threads: usize,
    /// Caveats for the reader, such as CPUs shared by both sides.
    pub notes: Vec<String>,
    /// How the split was chosen, and why.
    pub split: CpuSplit,
}

/// Who chose the CPU split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitChoice {
    /// Neither `--server-cpus` nor `--client-cpus`: [`cpus::default_split`].
    Default,
    /// One or both of the flags.
    Flags,
    /// No pinning here: the counts size the two sides' threads only.
    Unpinned,
}

/// The split of the CPUs between the server and the load, as
/// `results.json` records it (`config.cpu_split`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuSplit {
    /// How many CPUs (or, unpinned, workers) the server got.
    pub server_cpus: usize,
    /// How many CPUs (or, unpinned, threads) the load got.
    pub client_cpus: usize,
    /// Who chose it.
    pub chosen_by: SplitChoice,
    /// True when this process may use at most two CPUs: one for each side
    /// is then the only split, and no other can take the load off the
    /// limit (only `--server-cpu-cap` can).
    pub no_better_split: bool,
    /// Why, in one line.
    pub reason: String,
}

impl CpuPlan {
    /// Every CPU either side is pinned to, once each, in order.
    pub fn pinned(&self) -> Vec<usize> {
        self.server
            .iter()
            .chain(self.client.iter())
            .flat_map(|c| c.cpus().iter().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Resolve `--server-cpus` and `--client-cpus` against the CPUs this
    /// process may use. Neither given: the default split (a third for the
    /// server, the rest for the load, see [`cpus::default_split`]). One
    /// given: the other side gets the allowed CPUs it leaves, or, when it
    /// leaves none, its side of the default split.
    pub fn new(server: Option<CpuSet>, client: Option<CpuSet>) -> Result<CpuPlan, BenchError> {
        match sys::allowed_cpus() {
            Some(allowed) => Self::with_allowed(&allowed, server, client),
            None => {
                // No pinning: the lists, if given, still size the two sides.
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                let def_server = cpus::default_server_count(n).max(1);
                let server_workers = server.as_ref().map_or(def_server, |s| s.len().max(1));
                let load_threads = client
                    .as_ref()
                    .map_or((n - def_server).max(1), |c| c.len().max(1));
                let reason = if server.is_some() || client.is_some() {
                    "--server-cpus/--client-cpus sized the two sides; no pinning here".to_string()
                } else {
                    format!(
                        "no pinning here; sized as the {}",
                        cpus::default_split_reason(n)
                    )
                };
                Ok(CpuPlan {
                    split: CpuSplit {
                        server_cpus: server_workers,
                        client_cpus: load_threads,
                        chosen_by: SplitChoice::Unpinned,
                        no_better_split: n <= 2,
                        reason,
                    },
                    server: None,
                    client: None,
                    server_workers,
                    load_threads,
                    notes: vec![format!(
                        "CPU pinning: {UNAVAILABLE}; server and load share every CPU"
                    )],
                })
            }
        }
    }

    pub(crate) fn with_allowed(
        allowed: &CpuSet,
        server: Option<CpuSet>,
        client: Option<CpuSet>,
    ) -> Result<CpuPlan, BenchError> {
        let (def_server, def_client) = cpus::default_split(allowed);
        let check = |flag: &str,
                     set: Option<CpuSet>,
                     default: CpuSet|
         -> Result<CpuSet, BenchError> {
            let Some(set) = set else { return Ok(default) };
            if set.is_empty() {
                return Err(BenchError::Config(format!("{flag} names no CPU")));
            }
            let missing = set.difference(allowed);
            if !missing.is_empty() {
                return Err(BenchError::Config(format!(
                    "{flag} {set}: CPU {missing} is not available to this process (it may use {allowed})"
                )));
            }
            Ok(set)
        };
        let chosen_by = if server.is_none() && client.is_none() {
            SplitChoice::Default
        } else {
            SplitChoice::Flags
        };
        let given = match (&server, &client) {
            (Some(_), Some(_)) => "--server-cpus and --client-cpus as given",
            (Some(_), None) => "--server-cpus as given, the load on the CPUs it leaves",
            (None, Some(_)) => "--client-cpus as given, the server on the CPUs it leaves",
            (None, None) => "",
        };
        // One side given: the other takes what it leaves, if anything.
        let rest = |given: &Option<CpuSet>, default: CpuSet| match given {
            Some(g) if !allowed.difference(g).is_empty() => allowed.difference(g),
            _ => default,
        };
        let def_client = rest(&server, def_client);
        let def_server = rest(&client, def_server);
        let server = check("--server-cpus", server, def_server)?;
        let client = check("--client-cpus", client, def_client)?;
        let reason = match chosen_by {
            SplitChoice::Default => cpus::default_split_reason(allowed.len()),
            _ => given.to_string(),
        };
        let split = CpuSplit {
            server_cpus: server.len(),
            client_cpus: client.len(),
            chosen_by,
            no_better_split: allowed.len() <= 2,
            reason,
        };
        let mut notes = Vec::new();
        let shared = server.intersection(&client);
        if !shared.is_empty() {
            notes.push(format!(
                "server and load share CPU {shared}: each steals time from the other, so figures understate the server"
            ));
        }
        Ok(CpuPlan {
            server_workers: server.len(),
            load_threads: client.len(),
            server: Some(server),
            client: Some(client),
            notes,
            split,
        })
    }
}

/// Everything a bench needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `ringport` binary whose `serve` runs the models.
    pub exe: PathBuf,
    /// Models and outside servers, in table order.
    pub targets: Vec<Target>,
    /// The loads, in table order (a preset's, or the grid of the flags:
    /// [`crate::matrix::Preset`]).
    pub cells: Vec<Cell>,
    /// Length of each measured load.
    pub duration: Duration,
    /// Length of the discarded load before each measured one.
    pub warmup: Duration,
    /// Open loop: total messages per second, paced; `None` is a closed loop
    /// (as fast as the server answers).
    pub rate: Option<f64>,
    /// Repetitions of the whole matrix.
    pub reps: usize,
    /// CPUs and thread counts.
    pub cpus: CpuPlan,
    /// Every server held to a share of its CPUs (`--server-cpu-cap`), so
    /// that it, not the load, is the limit.
    pub server_cpu_cap: Option<std::sync::Arc<CpuCap>>,
    /// An echo slower than this fails its connection (stretched by the
    /// duration for servers that serve one client at a time).
    pub timeout: Duration,
    /// How long a server may take to start accepting.
    pub ready_timeout: Duration,
    /// How long a server may take to exit after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// The command line, for the record.
    pub command_line: String,
    /// A run whose interference (see [`crate::measure::Sample::interference_pct`])
    /// is above this percentage of the pinned CPUs is disturbed: it is run
    /// again, up to `retries` times, and flagged if it stays so.
    pub max_interference_pct: f64,
    /// How many times a disturbed run is repeated.
    pub retries: usize,
    /// The target every ratio is taken against; `None`: tokio when it
    /// runs, else the first target.
    pub baseline: Option<String>,
    /// `--slo`: after the matrix, search each target's capacity at this
    /// objective (`capacity.rs`).
    pub slo: Option<ringport_load::capacity::Objective>,
}

impl Plan {
    /// The cells of the matrix, in table order.
    pub fn cells(&self) -> Vec<Cell> {
        self.cells.clone()
    }

    /// Each connection count of the cells, once, in order.
    pub fn connections(&self) -> Vec<usize> {
        distinct(self.cells.iter().map(|c| c.connections))
    }

    /// Each message size of the cells, once, in order.
    pub fn sizes(&self) -> Vec<usize> {
        distinct(self.cells.iter().map(|c| c.size))
    }

    /// The churn cells' messages per connection, where there are any.
    pub fn per_connection(&self) -> Option<u64> {
        self.cells.iter().find_map(|c| c.per_connection)
    }

    /// How many server runs the bench makes.
    pub fn total_runs(&self) -> usize {
        self.reps * self.cells().len() * self.targets.len()
    }

    pub(crate) fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Config(m.into()));
        if self.targets.is_empty() {
            return bad("nothing to bench: give --models or --server");
        }
        if self.cells.is_empty() || self.cells.iter().any(|c| c.connections == 0) {
            return bad("--connections needs numbers of at least 1");
        }
        if self.cells.iter().any(|c| c.size == 0) {
            return bad("--sizes needs sizes of at least 1 byte");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return bad("--rate must be a positive number of messages per second");
        }
        if self.reps == 0 {
            return bad("--reps must be at least 1");
        }
        if self.duration.is_zero() {
            return bad("--duration must be longer than 0");
        }
        if !(self.max_interference_pct.is_finite()
            && self.max_interference_pct > 0.0
            && self.max_interference_pct <= 100.0)
        {
            return bad(
                "--max-interference must be a percentage above 0 and at most 100, such as 5",
            );
        }
        if let Some(b) = &self.baseline {
            if !self.targets.iter().any(|t| t.name() == b) {
                return Err(BenchError::Config(format!(
                    "--baseline {b} is not in this bench: name one of {}",
                    self.targets
                        .iter()
                        .map(Target::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut names: Vec<&str> = self.targets.iter().map(Target::name).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(BenchError::Config(format!(
                "'{}' is named twice (a model and a --server may not share a name)",
                w[0]
            )));
        }
        Ok(())
    }
}

/// The values of `it`, each once, in the order first seen.
fn distinct(it: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut v = Vec::new();
    for x in it {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    #[test]
    fn two_cpus_default_to_server_0_and_client_1() {
        let p = CpuPlan::with_allowed(&set("0-1"), None, None).unwrap();
        assert_eq!(p.server, Some(set("0")));
        assert_eq!(p.client, Some(set("1")));
        assert_eq!((p.server_workers, p.load_threads), (1, 1));
        assert!(p.notes.is_empty());
        assert_eq!(p.split.chosen_by, SplitChoice::Default);
        assert!(p.split.no_better_split);
        assert!(p.split.reason.contains("only split"), "{}", p.split.reason);
    }

    #[test]
    fn the_default_split_gives_the_load_two_thirds() {
        for (allowed, server, client) in [
            ("0-3", "0", "1-3"),
            ("0-7", "0-1", "2-7"),
            ("0-15", "0-4", "5-15"),
        ] {
            let p = CpuPlan::with_allowed(&set(allowed), None, None).unwrap();
            assert_eq!(p.server, Some(set(server)), "{allowed}");
            assert_eq!(p.client, Some(set(client)), "{allowed}");
            assert_eq!(p.server_workers, set(server).len());
            assert_eq!(p.load_threads, set(client).len());
            assert_eq!(p.split.chosen_by, SplitChoice::Default);
            assert!(!p.split.no_better_split);
            assert!(p.split.reason.contains("a third"), "{}", p.split.reason);
        }
    }

    #[test]
    fn the_flags_override_the_default_split() {
        let p = CpuPlan::with_allowed(&set("0-7"), Some(set("0-3")), Some(set("4-7"))).unwrap();
        assert_eq!((p.server, p.client), (Some(set("0-3")), Some(set("4-7"))));
        assert_eq!(p.split.chosen_by, SplitChoice::Flags);
        assert_eq!((p.split.server_cpus, p.split.client_cpus), (4, 4));
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // One flag: the other side gets the CPUs it leaves, never overlapping.
        let p = CpuPlan::with_allowed(&set("0-7"), Some(set("0-3")), None).unwrap();
        assert_eq!((p.server, p.client), (Some(set("0-3")), Some(set("4-7"))));
        let p = CpuPlan::with_allowed(&set("0-3"), None, Some(set("2-3"))).unwrap();
        assert_eq!((p.server, p.client), (Some(set("0-1")), Some(set("2-3"))));
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // A flag that takes every CPU leaves the other side its default.
        let p = CpuPlan::with_allowed(&set("0-2"), Some(set("0-2")), None).unwrap();
        assert_eq!(p.client, Some(set("1-2")));
        assert!(p.notes[0].contains("share CPU 1-2"), "{:?}", p.notes);
    }

    #[test]
    fn cpus_outside_the_allowed_set_are_refused() {
        let err = CpuPlan::with_allowed(&set("0-1"), Some(set("0,5")), None).unwrap_err();
        assert!(err.to_string().contains("CPU 5"), "{err}");
    }

    #[test]
    fn overlapping_sets_run_with_a_note() {
        let p = CpuPlan::with_allowed(&set("0-3"), Some(set("0-1")), Some(set("1-3"))).unwrap();
        assert_eq!((p.server_workers, p.load_threads), (2, 3));
        assert!(p.notes[0].contains("share CPU 1"), "{:?}", p.notes);
    }
}
