//! The preflight: how busy the pinned CPUs were for a second before the
//! bench started, and which processes kept them busy, so that a bench run on
//! a busy machine says so up front.

use crate::sys;
use serde::Serialize;

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
pub(crate) fn preflight(cpus: &[usize], window: std::time::Duration) -> Option<Preflight> {
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
