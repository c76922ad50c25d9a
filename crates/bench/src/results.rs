//! What a bench produced, as `results.json` holds it: the machine, the
//! settings of the bench, and one row per cell and target.

use crate::cpus::CpuSet;
use crate::matrix::Target;
use crate::plan::CpuSplit;
use crate::preflight::Preflight;
use crate::stats::Row;
use crate::sys::{Machine, UNAVAILABLE};
use crate::Plan;
use serde::Serialize;

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
    /// How the CPUs were split between the server and the load, and why.
    pub cpu_split: CpuSplit,
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
    /// `--slo`: each target's capacity at the objective in each steady
    /// cell; absent without `--slo`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capacity: Vec<crate::capacity::CapacityRow>,
}

impl Results {
    /// Rows that are not clean: errors, mismatches, or missing repetitions.
    pub fn flagged(&self) -> impl Iterator<Item = &Row> {
        self.results.iter().filter(|r| !r.clean)
    }
}

impl ConfigRecord {
    pub(crate) fn new(
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
            connections: plan.connections(),
            sizes: plan.sizes(),
            per_connection: plan.per_connection(),
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
            cpu_split: plan.cpus.split.clone(),
        }
    }
}
