//! `ringport bench`: every server model side by side under the same load.
//!
//! Each model runs as its own child process (`ringport serve`), pinned to
//! CPUs apart from the load, which runs in this process on the load engine
//! of `ringport-load`. Repetitions are interleaved across models and cells,
//! each figure is the median of its repetitions, and the results are written
//! as JSON, CSV, a Markdown table and two SVG charts.
//!
//! | file         | what it does                                              |
//! |--------------|-----------------------------------------------------------|
//! | `matrix.rs`  | targets, cells, the interleaved schedule, `--server` specs |
//! | `cpus.rs`    | CPU lists (`0-3,6`) and the server/client split            |
//! | `server.rs`  | start a server, wait until it accepts, stop it             |
//! | `measure.rs` | one run: warm-up, measured load, CPU and memory samples    |
//! | `figure.rs`  | the per-run figures, declared once                         |
//! | `stats.rs`   | medians, one row per target and cell                       |
//! | `output.rs`  | results.json, results.csv, summary.md                      |
//! | `chart.rs`   | chart.svg and latency.svg                                  |
//! | `sys.rs`     | everything OS-specific: pinning, /proc, signals            |
#![deny(missing_docs, rust_2018_idioms)]

pub mod chart;
pub mod cpus;
pub mod figure;
pub mod files;
pub mod matrix;
pub mod measure;
pub mod output;
pub mod report;
mod server;
pub mod stats;
mod sys;

pub use cpus::CpuSet;
pub use figure::Figure;
pub use matrix::{Cell, Target};
pub use stats::Row;
pub use sys::{CpuCap, Machine, UNAVAILABLE};

use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Errors that stop a bench.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The flags describe a bench that cannot run.
    #[error("{0}")]
    Config(String),
    /// A server under test did not start or never accepted. Inside a bench
    /// this is recorded in that target's rows and the bench goes on.
    #[error("{target}: {why}")]
    Server {
        /// The model or `--server` name.
        target: String,
        /// What happened, with the server's last stderr lines.
        why: String,
    },
    /// The load engine could not run (threads, poller).
    #[error("load against {target}: {source}")]
    Load {
        /// The model or `--server` name.
        target: String,
        /// The engine's error.
        source: ringport_load::LoadError,
    },
    /// A file or process could not be handled.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and on which path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("cannot draw {file}: {why}")]
    Chart {
        /// The chart's file name.
        file: String,
        /// The drawing library's message.
        why: String,
    },
}

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
    /// process may use; either left out takes the default split (first half
    /// for the server, the rest for the load).
    pub fn new(server: Option<CpuSet>, client: Option<CpuSet>) -> Result<CpuPlan, BenchError> {
        match sys::allowed_cpus() {
            Some(allowed) => Self::with_allowed(&allowed, server, client),
            None => {
                // No pinning: the lists, if given, still size the two sides.
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                let server_workers = server.as_ref().map_or((n / 2).max(1), |s| s.len().max(1));
                let load_threads = client
                    .as_ref()
                    .map_or((n - n / 2).max(1), |c| c.len().max(1));
                Ok(CpuPlan {
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

    fn with_allowed(
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
        let server = check("--server-cpus", server, def_server)?;
        let client = check("--client-cpus", client, def_client)?;
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
    /// Connection counts of the matrix.
    pub connections: Vec<usize>,
    /// Message sizes of the matrix, bytes.
    pub sizes: Vec<usize>,
    /// Churn: also run every cell with connections replaced after this
    /// many messages each.
    pub per_connection: Option<u64>,
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
    /// A run whose interference (see [`measure::Sample::interference_pct`])
    /// is above this percentage of the pinned CPUs is disturbed: it is run
    /// again, up to `retries` times, and flagged if it stays so.
    pub max_interference_pct: f64,
    /// How many times a disturbed run is repeated.
    pub retries: usize,
    /// The target every ratio is taken against; `None`: tokio when it
    /// runs, else the first target.
    pub baseline: Option<String>,
}

impl Plan {
    /// The cells of the matrix, in table order.
    pub fn cells(&self) -> Vec<Cell> {
        matrix::cells(&self.connections, &self.sizes, self.per_connection)
    }

    /// How many server runs the bench makes.
    pub fn total_runs(&self) -> usize {
        self.reps * self.cells().len() * self.targets.len()
    }

    fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Config(m.into()));
        if self.targets.is_empty() {
            return bad("nothing to bench: give --models or --server");
        }
        if self.connections.is_empty() || self.connections.contains(&0) {
            return bad("--connections needs numbers of at least 1");
        }
        if self.sizes.is_empty() || self.sizes.contains(&0) {
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

/// Progress, for the caller's progress bar.
#[derive(Debug)]
pub enum Event<'a> {
    /// A run is about to start.
    RunStarting {
        /// Runs before this one.
        index: usize,
        /// All runs.
        total: usize,
        /// Repetition, from 0.
        rep: usize,
        /// The model or `--server` name.
        target: &'a str,
        /// The load.
        cell: Cell,
    },
    /// That run is over.
    RunFinished,
    /// Something the reader should know now, such as a server that failed.
    Warning(String),
}

/// The bench's settings as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRecord {
    /// The command line.
    pub command: String,
    /// When the bench started, UTC.
    pub started_at: String,
    /// ringport's version.
    pub ringport_version: String,
    /// Every target, models and `--server` names, in table order.
    pub models: Vec<String>,
    /// The `--server` commands.
    pub outside_servers: Vec<OutsideServer>,
    /// Connection counts.
    pub connections: Vec<usize>,
    /// Message sizes, bytes.
    pub sizes: Vec<usize>,
    /// Churn cells: messages per connection before it is replaced; null
    /// when there are none.
    pub per_connection: Option<u64>,
    /// Each measured load, seconds.
    pub duration_s: f64,
    /// The discarded load before each, seconds.
    pub warmup_s: f64,
    /// Paced total messages per second, or null for a closed loop.
    pub rate: Option<f64>,
    /// Repetitions (figures are their medians).
    pub reps: usize,
    /// The server's CPUs.
    pub server_cpus: String,
    /// The load's CPUs.
    pub client_cpus: String,
    /// `--workers` given to the server.
    pub server_workers: usize,
    /// Load threads.
    pub load_threads: usize,
    /// The echo timeout, seconds.
    pub timeout_s: f64,
    /// The interference threshold, percent of the pinned CPUs.
    pub max_interference_pct: f64,
    /// Retries of a disturbed run.
    pub retries: usize,
    /// The target the ratios are taken against, when chosen with `--baseline`.
    pub baseline: Option<String>,
    /// The pinned CPUs before the bench started: how busy they were over
    /// about a second, and the busiest processes then.
    pub preflight: Option<Preflight>,
    /// Caveats.
    pub notes: Vec<String>,
    /// The share of their CPUs every server was held to, percent
    /// (`--server-cpu-cap`); `None`: not held.
    pub server_cpu_cap_pct: Option<u32>,
}

/// What the machine was doing just before the bench.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    /// Busy share of the pinned CPUs (plus steal), percent of their capacity.
    pub busy_pct: f64,
    /// The processes that used the most CPU in that second, with their
    /// share of one CPU in percent; busiest first.
    pub busiest: Vec<(String, f64)>,
}

impl Preflight {
    /// The warning to give when the pinned CPUs were busier than `limit`
    /// percent before the bench: how busy, and the busiest processes.
    pub fn warning(&self, limit: f64) -> Option<String> {
        if self.busy_pct <= limit {
            return None;
        }
        let who: Vec<String> = self
            .busiest
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.0}%"))
            .collect();
        Some(format!(
            "the pinned CPUs were {:.0}% busy before the bench started (busiest: {}); its figures may be disturbed: consider re-running on a quiet system",
            self.busy_pct,
            if who.is_empty() { "unknown".to_string() } else { who.join(", ") }
        ))
    }
}

/// Sample the pinned CPUs for `window` while nothing of the bench runs.
fn preflight(cpus: &[usize], window: std::time::Duration) -> Option<Preflight> {
    if cpus.is_empty() {
        return None;
    }
    let me = std::process::id();
    let busy0 = sys::cpus_busy_seconds(cpus)?;
    let steal0 = sys::cpus_steal_seconds(cpus)?;
    let procs0 = sys::process_cpu_seconds().unwrap_or_default();
    let t0 = std::time::Instant::now();
    std::thread::sleep(window);
    let busy1 = sys::cpus_busy_seconds(cpus)?;
    let steal1 = sys::cpus_steal_seconds(cpus)?;
    let procs1 = sys::process_cpu_seconds().unwrap_or_default();
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let before: std::collections::HashMap<u32, f64> =
        procs0.iter().map(|p| (p.pid, p.seconds)).collect();
    let mut busiest: Vec<(String, f64)> = procs1
        .iter()
        .filter(|p| p.pid != me)
        .filter_map(|p| {
            let used = p.seconds - before.get(&p.pid).copied()?;
            (used > 0.0).then(|| (format!("{} (pid {})", p.name, p.pid), used / wall * 100.0))
        })
        .collect();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
    busiest.truncate(3);
    Some(Preflight {
        busy_pct: ((busy1 - busy0).max(0.0) + (steal1 - steal0).max(0.0))
            / wall
            / cpus.len() as f64
            * 100.0,
        busiest,
    })
}

/// Run `target` under `cell`, again while the run is disturbed, up to the
/// plan's retries. The least disturbed attempt is kept; errors are never
/// noise, so those of every attempt are kept too.
fn measure_with_retries(
    plan: &Plan,
    target: &Target,
    cell: Cell,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<measure::Sample, BenchError> {
    let over = |s: &measure::Sample| {
        s.interference_pct
            .is_some_and(|p| p > plan.max_interference_pct)
    };
    let mut kept: Option<measure::Sample> = None;
    let (mut errors, mut mismatches, mut failed, mut notes) = (0, 0, false, Vec::new());
    let mut attempts = 0;
    while attempts <= plan.retries {
        let s = measure::run_one(plan, target, cell)?;
        attempts += 1;
        errors += s.errors;
        mismatches += s.mismatches;
        failed |= s.server_failed;
        if let Some(n) = &s.note {
            notes.push(n.clone());
        }
        let disturbed = over(&s);
        let better = kept
            .as_ref()
            .is_none_or(|k| s.interference_pct.unwrap_or(0.0) < k.interference_pct.unwrap_or(0.0));
        let pct = s.interference_pct.unwrap_or(0.0);
        if better {
            kept = Some(s);
        }
        if !disturbed {
            break;
        }
        if attempts <= plan.retries {
            on_event(Event::Warning(format!(
                "{} ({cell}): {pct:.0}% of the pinned CPUs went to other work (over {}%); running it again ({} of {} retries)",
                target.name(),
                plan.max_interference_pct,
                attempts,
                plan.retries
            )));
        }
    }
    let mut s = kept.expect("at least one attempt");
    s.attempts = attempts;
    s.disturbed = over(&s);
    s.errors = errors;
    s.mismatches = mismatches;
    s.server_failed = failed;
    notes.dedup();
    s.note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(s)
}

/// A `--server` as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct OutsideServer {
    /// Its name in the rows.
    pub name: String,
    /// Its command, with `{port}`.
    pub command: String,
}

/// Everything a bench produced: `results.json` is exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// The settings.
    pub config: ConfigRecord,
    /// One row per cell and target.
    pub results: Vec<Row>,
}

impl Results {
    /// Rows that are not clean: errors, mismatches, or missing repetitions.
    pub fn flagged(&self) -> impl Iterator<Item = &Row> {
        self.results.iter().filter(|r| !r.clean)
    }
}

/// SIGTERM every server this bench is running (an outside server's whole
/// process group), for a caller that is being interrupted and will exit.
pub fn stop_all_servers() {
    server::stop_all();
    // A cgroup of `--server-cpu-cap` is removable once its servers exit.
    sys::remove_caps(std::time::Duration::from_secs(3));
}

/// Run the whole matrix. Must be called from a thread that lives until it
/// returns: servers are tied to it (they get SIGTERM if it dies), and it is
/// pinned to the load's CPUs for the duration of the bench.
pub fn run(plan: &Plan, on_event: &mut dyn FnMut(Event<'_>)) -> Result<Results, BenchError> {
    plan.validate()?;
    let started_at = output::utc_timestamp(std::time::SystemTime::now());
    // Before pinning: afterwards this thread would see only the load's CPUs.
    let machine = sys::machine();
    // The descriptor limit is already raised: the `ringport` binary lifts it
    // to the hard limit at start (servers inherit it), and the load engine
    // checks it against the connections it is asked for.
    let mut notes = plan.cpus.notes.clone();
    if let Some(cap) = &plan.server_cpu_cap {
        notes.push(format!(
            "every server was held to {}% of its CPUs by a cgroup quota (--server-cpu-cap), so that it, not the load, is the limit",
            cap.percent()
        ));
    }
    if let Some(client) = &plan.cpus.client {
        // The load engine's threads inherit this thread's mask.
        if let Err(e) = sys::pin_current_thread(client) {
            let n = format!("cannot pin the load to CPU {client}: {e}");
            on_event(Event::Warning(n.clone()));
            notes.push(n);
        }
    }
    for n in &plan.cpus.notes {
        on_event(Event::Warning(n.clone()));
    }
    if machine.returns_free_memory {
        let n = "this VM hands the memory it frees back to its host (virtio-balloon free page reporting): a page allocated again then costs a host fault that no CPU or steal figure shows, so cells that move much memory (large messages, many connections) vary more here than their interference says".to_string();
        on_event(Event::Warning(n.clone()));
        notes.push(n);
    }
    let preflight = preflight(&plan.cpus.pinned(), std::time::Duration::from_secs(1));
    if let Some(n) = preflight
        .as_ref()
        .and_then(|p| p.warning(plan.max_interference_pct))
    {
        on_event(Event::Warning(n.clone()));
        notes.push(n);
    }
    let cells = plan.cells();
    let outcomes = run_matrix(plan, &cells, on_event)?;
    Ok(Results {
        machine,
        config: ConfigRecord::new(plan, started_at, preflight, notes),
        results: stats::aggregate(
            &plan.targets,
            &cells,
            &outcomes,
            plan.reps,
            plan.baseline.as_deref(),
        ),
    })
}

/// Every run of the interleaved schedule, in order. A server that cannot
/// be run is recorded in its cell and the bench goes on.
fn run_matrix(
    plan: &Plan,
    cells: &[Cell],
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<(matrix::Run, stats::Outcome)>, BenchError> {
    let schedule = matrix::schedule(plan.reps, cells.len(), plan.targets.len());
    let total = schedule.len();
    let mut outcomes = Vec::with_capacity(total);
    for (index, run) in schedule.into_iter().enumerate() {
        let target = &plan.targets[run.target];
        let cell = cells[run.cell];
        on_event(Event::RunStarting {
            index,
            total,
            rep: run.rep,
            target: target.name(),
            cell,
        });
        let outcome = match measure_with_retries(plan, target, cell, on_event) {
            Ok(s) => Ok(s),
            // One broken server (say, io_uring blocked here) must not cost
            // the figures of the others: record it and go on.
            Err(BenchError::Server { target, why }) => {
                on_event(Event::Warning(format!("{target} ({cell}): {why}")));
                Err(format!("did not run: {}", why.lines().next().unwrap_or("")))
            }
            Err(e) => return Err(e),
        };
        if let Ok(s) = &outcome {
            if s.errors > 0 || s.mismatches > 0 {
                on_event(Event::Warning(format!(
                    "{} ({cell}): {} connection errors, {} mismatches",
                    target.name(),
                    s.errors,
                    s.mismatches
                )));
            }
        }
        outcomes.push((run, outcome));
        on_event(Event::RunFinished);
    }
    Ok(outcomes)
}

impl ConfigRecord {
    fn new(
        plan: &Plan,
        started_at: String,
        preflight: Option<Preflight>,
        notes: Vec<String>,
    ) -> ConfigRecord {
        let unavailable = || UNAVAILABLE.to_string();
        let cpus = |set: &Option<CpuSet>| set.as_ref().map_or_else(unavailable, |s| s.to_string());
        ConfigRecord {
            command: plan.command_line.clone(),
            started_at,
            ringport_version: env!("CARGO_PKG_VERSION").to_string(),
            models: plan.targets.iter().map(|t| t.name().to_string()).collect(),
            outside_servers: plan
                .targets
                .iter()
                .filter_map(|t| match t {
                    Target::Outside { name, command } => Some(OutsideServer {
                        name: name.clone(),
                        command: command.clone(),
                    }),
                    Target::Model(_) => None,
                })
                .collect(),
            connections: plan.connections.clone(),
            sizes: plan.sizes.clone(),
            per_connection: plan.per_connection,
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            rate: plan.rate,
            reps: plan.reps,
            server_cpus: cpus(&plan.cpus.server),
            client_cpus: cpus(&plan.cpus.client),
            server_workers: plan.cpus.server_workers,
            load_threads: plan.cpus.load_threads,
            timeout_s: plan.timeout.as_secs_f64(),
            max_interference_pct: plan.max_interference_pct,
            retries: plan.retries,
            baseline: plan.baseline.clone(),
            preflight,
            notes,
            server_cpu_cap_pct: plan.server_cpu_cap.as_ref().map(|c| c.percent()),
        }
    }
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
