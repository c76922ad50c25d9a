//! One run: start a server, warm it up, measure one load, stop it.
//!
//! Warm-up is a discarded load of the same shape (connections, size) for the
//! warm-up time, on the same server process, before the measured one starts:
//! the load engine has no warm-up phase of its own yet. The server's CPU time
//! and the load's are sampled right before and right after the measured load,
//! so the window covers exactly the measured connections, their setup and
//! their teardown included.

use crate::matrix::{Cell, Target};
use crate::server::{Running, Stopped};
use crate::{sys, BenchError, Plan};
use ringport_load::{Config, Payload, StopWhen};
use std::time::{Duration, Instant};

/// What one run measured. Figures the OS cannot provide are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Verified messages per second.
    pub msgs_per_sec: f64,
    /// Verified echo bytes per second, in 10^6 bytes.
    pub mb_per_sec: f64,
    /// Median latency, microseconds; `None` when no echo came back.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, microseconds; `None` when no echo came back.
    pub p99_us: Option<f64>,
    /// Server CPU seconds (user + system) per million verified messages.
    pub server_cpu_s_per_million: Option<f64>,
    /// The user-mode part of it.
    pub server_user_s_per_million: Option<f64>,
    /// The kernel part of it.
    pub server_sys_s_per_million: Option<f64>,
    /// Busy seconds of the server's pinned CPUs (all but idle and iowait,
    /// whoever ran there) per million messages; io_uring's waits count as
    /// iowait, so this shows what the process figures may hide.
    pub server_cpus_busy_s_per_million: Option<f64>,
    /// Server peak resident memory, KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// The load's CPU time as a percentage of its CPUs' capacity over the window.
    pub client_cpu_pct: Option<f64>,
    /// Time the hypervisor took from the pinned CPUs (server's and load's)
    /// during the run, as a percentage of their capacity: 0 on bare metal.
    pub host_steal_pct: Option<f64>,
    /// Interference: CPU time the pinned CPUs gave to anything but this
    /// server and this load (other processes, and the hypervisor's steal),
    /// as a percentage of their capacity over the run.
    pub interference_pct: Option<f64>,
    /// Runs made to get this sample: 1, plus the retries of disturbed runs.
    pub attempts: usize,
    /// Still above the interference threshold after every retry.
    pub disturbed: bool,
    /// Failed connections (mismatches included).
    pub errors: u64,
    /// Connections whose echo differed from what was sent.
    pub mismatches: u64,
    /// The server broke its contract: it exited during the run, or ignored
    /// SIGTERM. Flags the cell even when every echo was right.
    pub server_failed: bool,
    /// Something a reader must know about this run, such as a server that
    /// had to be killed.
    pub note: Option<String>,
}

/// Seed of the message bytes. Fixed, so every target gets the same bytes.
const PAYLOAD_SEED: u64 = 0x7269_6E67_706F_7274;

/// The load for one cell: `duration` long, the plan's threads and timeout.
fn load_config(
    plan: &Plan,
    target: &Target,
    cell: Cell,
    addr: std::net::SocketAddr,
    duration: Duration,
) -> Config {
    let mut c = Config::new(addr);
    c.connections = cell.connections;
    c.threads = plan.cpus.load_threads;
    c.stop = StopWhen::Duration(duration);
    c.rate = plan.rate;
    // No busy polling: the load has CPUs of its own, and a spinning load
    // would read ~100% CPU and hide whether it is really the bottleneck.
    c.busy_poll = Some(Duration::ZERO);
    c.payload = Payload::Sized {
        len: cell.size,
        seed: PAYLOAD_SEED,
    };
    // A server that serves one client at a time keeps every other connection
    // waiting in the backlog, its first message unanswered, until the clients
    // before it have finished: up to the whole duration. The echo timeout is
    // stretched by the duration so those connections are served late, not
    // counted as failures; the run still ends within duration + timeout.
    c.timeout = if target.serialized() {
        plan.timeout + duration
    } else {
        plan.timeout
    };
    c
}

/// Run `target` under `cell` once.
pub fn run_one(plan: &Plan, target: &Target, cell: Cell) -> Result<Sample, BenchError> {
    let server = Running::start(
        &plan.exe,
        target,
        plan.cpus.server_workers,
        plan.cpus.server.as_ref(),
        plan.ready_timeout,
    )?;
    let load_err = |source| BenchError::Load {
        target: target.name().to_string(),
        source,
    };
    // The warm-up's figures are discarded, its verification is not: a wrong
    // echo is a broken server whenever it happens.
    let (mut warm_errors, mut warm_mismatches) = (0, 0);
    if !plan.warmup.is_zero() {
        let warm = ringport_load::run(&load_config(plan, target, cell, server.addr, plan.warmup))
            .map_err(load_err)?;
        (warm_errors, warm_mismatches) = (warm.errors, warm.mismatches);
    }
    let pid = server.pid();
    let server_cpus: Vec<usize> = plan
        .cpus
        .server
        .as_ref()
        .map_or_else(Vec::new, |c| c.cpus().to_vec());
    let server_cpu0 = sys::tree_cpu_split(pid);
    let busy0 = (!server_cpus.is_empty())
        .then(|| sys::cpus_busy_seconds(&server_cpus))
        .flatten();
    let client_cpu0 = sys::self_cpu_seconds();
    let pinned: Vec<usize> = server_cpus
        .iter()
        .chain(plan.cpus.client.as_ref().map_or(&[][..], |c| c.cpus()))
        .copied()
        .collect();
    let steal0 = sys::cpus_steal_seconds(&pinned);
    let pinned_busy0 = sys::cpus_busy_seconds(&pinned);
    let t0 = Instant::now();
    let report = ringport_load::run(&load_config(plan, target, cell, server.addr, plan.duration))
        .map_err(load_err)?;
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let client_cpu1 = sys::self_cpu_seconds();
    let steal1 = sys::cpus_steal_seconds(&pinned);
    let pinned_busy1 = sys::cpus_busy_seconds(&pinned);
    let server_cpu1 = sys::tree_cpu_split(pid);
    let busy1 = (!server_cpus.is_empty())
        .then(|| sys::cpus_busy_seconds(&server_cpus))
        .flatten();
    let server_peak_rss_kib = sys::tree_peak_rss_kib(pid);

    let mut notes = Vec::new();
    if warm_errors > 0 {
        notes.push(format!(
            "warm-up: {warm_errors} connection errors, {warm_mismatches} mismatches"
        ));
    }
    let server_failed = match server.stop(plan.stop_timeout) {
        Stopped::Exited {
            early: true,
            status,
        } => {
            notes.push(format!("the server exited during the run ({status})"));
            true
        }
        Stopped::Exited { .. } => false,
        Stopped::Killed => {
            notes.push(format!(
                "the server ignored SIGTERM for {:?} and was killed",
                plan.stop_timeout
            ));
            true
        }
    };

    let messages = report.messages_verified;
    let per_million = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if messages > 0 => Some((b - a).max(0.0) / messages as f64 * 1e6),
        _ => None,
    };
    let user = per_million(server_cpu0.map(|t| t.user), server_cpu1.map(|t| t.user));
    let system = per_million(server_cpu0.map(|t| t.system), server_cpu1.map(|t| t.system));
    let server_cpu_s_per_million = user.zip(system).map(|(u, s)| u + s);
    let server_cpus_busy_s_per_million = per_million(busy0, busy1);
    let client_cpus_n = plan
        .cpus
        .client
        .as_ref()
        .map_or(plan.cpus.load_threads, |c| c.len())
        .max(1);
    let client_cpu_pct = match (client_cpu0, client_cpu1) {
        (Some(a), Some(b)) => Some((b - a).max(0.0) / wall / client_cpus_n as f64 * 100.0),
        _ => None,
    };
    let host_steal_pct = match (steal0, steal1) {
        (Some(a), Some(b)) if !pinned.is_empty() => {
            Some((b - a).max(0.0) / wall / pinned.len() as f64 * 100.0)
        }
        _ => None,
    };
    // Everything the pinned CPUs did, less what this server and this load
    // did, plus what the hypervisor took: someone else's share.
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a).max(0.0));
    let own = delta(
        server_cpu0.map(|t| t.user + t.system),
        server_cpu1.map(|t| t.user + t.system),
    )
    .zip(delta(client_cpu0, client_cpu1))
    .map(|(s, c)| s + c);
    let interference_pct = match (
        delta(pinned_busy0, pinned_busy1),
        own,
        delta(steal0, steal1),
    ) {
        (Some(busy), Some(own), Some(steal)) if !pinned.is_empty() => {
            Some(((busy - own).max(0.0) + steal) / wall / pinned.len() as f64 * 100.0)
        }
        _ => None,
    };
    Ok(Sample {
        interference_pct,
        attempts: 1,
        disturbed: false,
        msgs_per_sec: report.msgs_per_sec,
        mb_per_sec: report.mb_per_sec,
        p50_us: (messages > 0).then_some(report.latency_us.p50 as f64),
        p99_us: (messages > 0).then_some(report.latency_us.p99 as f64),
        server_cpu_s_per_million,
        server_user_s_per_million: user,
        server_sys_s_per_million: system,
        server_cpus_busy_s_per_million,
        server_peak_rss_kib,
        client_cpu_pct,
        host_steal_pct,
        errors: report.errors + warm_errors,
        mismatches: report.mismatches + warm_mismatches,
        server_failed,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}
