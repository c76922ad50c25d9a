//! Orchestration: the whole bench from a [`Plan`] to its [`Results`]. It
//! pins the load, runs the preflight, then every run of the interleaved
//! schedule (each again while disturbed, up to the plan's retries), and
//! aggregates them into rows.

use crate::matrix::{self, Cell, Target};
use crate::preflight::preflight;
use crate::results::{ConfigRecord, Results};
use crate::{measure, output, stats, sys, BenchError, Plan};

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
    let mut notes = vec![split_note(&plan.cpus)];
    notes.extend(plan.cpus.notes.iter().cloned());
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
    let results = stats::aggregate(
        &plan.targets,
        &cells,
        &outcomes,
        plan.reps,
        plan.baseline.as_deref(),
    );
    let capacity = match &plan.slo {
        Some(objective) => crate::capacity::measure_all(plan, objective, &results, &mut |line| {
            on_event(Event::Warning(line))
        })?,
        None => Vec::new(),
    };
    Ok(Results {
        machine,
        config: ConfigRecord::new(plan, started_at, preflight, notes),
        results,
        capacity,
    })
}

/// The split used and why, in one line for the notes.
fn split_note(cpus: &crate::CpuPlan) -> String {
    let side = |set: &Option<crate::CpuSet>| {
        set.as_ref()
            .map_or_else(|| "any CPU".to_string(), |s| format!("CPU {s}"))
    };
    format!(
        "CPU split: server on {} ({} worker(s)), load on {} ({} thread(s)); {}",
        side(&cpus.server),
        cpus.server_workers,
        side(&cpus.client),
        cpus.load_threads,
        cpus.split.reason
    )
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
