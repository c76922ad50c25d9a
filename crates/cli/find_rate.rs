//! `ringport stress --find-rate --slo OBJ`: the capacity search of
//! `ringport_load::capacity`, one open-loop run per step, each step's line
//! on stderr as it ends, the curve and the capacity on stdout, and the
//! whole search in the JSON.

use crate::UsageError;
use anyhow::Context;
use ringport_load::capacity::{self, Capacity, Objective, Plan};
use ringport_load::{Config, LoadError, StopWhen};
use std::process::ExitCode;
use std::time::Duration;

/// The first rate tried without `--rate`.
const DEFAULT_START: f64 = 1000.0;
/// The shortest step without `--duration`.
const DEFAULT_MIN_STEP: Duration = Duration::from_secs(2);
/// The longest step: past it a step's percentile is marked rough.
const MAX_STEP: Duration = Duration::from_secs(60);

/// What the flags say about the search.
pub struct Search {
    /// The objective.
    pub objective: Objective,
    /// The first rate, if given.
    pub start: Option<f64>,
    /// The shortest step, if given.
    pub min_step: Option<Duration>,
    /// The precision asked for.
    pub precision: f64,
}

/// Run the search with `config` as each step's load (its rate and length
/// are the step's); write the JSON to `json` when asked.
pub fn run(
    mut config: Config,
    search: Search,
    json: Option<super::stress::ReportFile>,
    data_on_stdout: bool,
    stopped_by: &std::sync::atomic::AtomicI32,
) -> anyhow::Result<ExitCode> {
    if !(search.precision.is_finite() && search.precision > 1.0) {
        return Err(UsageError(format!(
            "--precision {} must be above 1, such as 1.1 (the first failing rate within 10% of the last passing one)",
            search.precision
        ))
        .into());
    }
    if !config.percentiles.contains(&search.objective.percentile) {
        config.percentiles.push(search.objective.percentile);
    }
    let plan = Plan {
        start: search.start.unwrap_or(DEFAULT_START),
        precision: search.precision,
        min_step: search.min_step.unwrap_or(DEFAULT_MIN_STEP),
        max_step: MAX_STEP,
    };
    crate::out::eprintln_quiet!(
        "ringport stress: finding the highest rate at which {} holds, from {} msgs/s, within {:.2}×",
        search.objective,
        plan.start,
        plan.precision
    );
    let mut n = 0;
    let found = capacity::search(&plan, &search.objective, |rate, duration| {
        n += 1;
        let mut step = config.clone();
        step.rate = Some(ringport_load::Rate::Fixed(rate));
        step.stop = StopWhen::Duration(duration);
        let report = ringport_load::run(&step)?;
        let verdict = search.objective.judge(&report);
        crate::out::eprintln_quiet!(
            "ringport stress: step {n}: {rate:.0} msgs/s for {:.1} s: {}",
            duration.as_secs_f64(),
            match &verdict {
                _ if report.interrupted => "interrupted, not counted".to_string(),
                Ok(v) => format!("holds (p{} {v} µs)", search.objective.percentile),
                Err(why) => format!("breaks: {why}"),
            }
        );
        Ok(report)
    });
    let found: Capacity = match found {
        Ok(c) => c,
        Err(LoadError::Config(why)) => return Err(UsageError(why).into()),
        Err(e) => {
            return Err(e).context(format!("stress --find-rate against {} failed", config.addr))
        }
    };
    let text = found.to_text();
    if data_on_stdout {
        crate::out::stderr(&text);
    } else {
        crate::out::stdout(&text)?;
    }
    if let Some(f) = json {
        let body = serde_json::to_string_pretty(&serde_json::json!({ "find_rate": found }))? + "\n";
        if let Err(e) = f.write(&body) {
            anyhow::bail!("{e}");
        }
    }
    if found.interrupted {
        let sig = match stopped_by.load(std::sync::atomic::Ordering::SeqCst) {
            0 => 2,
            sig => sig,
        };
        crate::out::eprintln_quiet!(
            "ringport: INTERRUPTED by signal {sig}: the search ended early; the steps above are those that ran"
        );
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    match found.last_pass {
        Some(_) => Ok(ExitCode::SUCCESS),
        None => anyhow::bail!("FAILED: {}", found.summary()),
    }
}
