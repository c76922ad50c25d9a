//! `ringport bench`: flags, the progress bar and the final table; the work
//! is in `ringport-bench`.

use crate::{args, signals, UsageError};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringport_bench::{files, matrix, output, CpuPlan, CpuSet, Event, Plan, Target};
use ringport_server::Model;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `ringport bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Models to run, comma-separated [default: every model].
    #[arg(long, value_name = "M,...", value_delimiter = ',')]
    models: Vec<Model>,
    /// Also run an outside echo server: CMD is run by `sh -c` with {port} replaced by a free port.
    #[arg(long = "server", value_name = "NAME=CMD", value_parser = matrix::parse_server_spec)]
    servers: Vec<Target>,
    /// Concurrent connections, one cell per value [default: 1,64,1000; --quick: 64,1000].
    #[arg(long, short, value_name = "N,...", value_delimiter = ',')]
    connections: Vec<usize>,
    /// Message sizes in bytes, one cell per value [default: 64,4096; --quick: 64,1048576].
    #[arg(long, value_name = "BYTES,...", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Length of each measured run [default: 5s; --quick: 1s].
    #[arg(long, short, value_name = "DURATION", value_parser = args::positive_duration)]
    duration: Option<Duration>,
    /// Discarded load before each measured run [default: 1s; --quick: 0.25s].
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    warmup: Option<Duration>,
    /// Open loop: pace the load at R messages per second in total (spread
    /// over the connections), so CPU per message is compared at equal work;
    /// without it each server runs flat out.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Churn: also run every cell with each connection closed after N
    /// messages and replaced (`stress --per-connection`); those cells add
    /// connections/s and server CPU per connection.
    #[arg(long, value_name = "N", value_parser = args::at_least_one)]
    per_connection: Option<u64>,
    /// Repetitions of the whole matrix, interleaved; figures are medians with their spread [default: 3].
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// CPUs for the server, such as 0 or 0-3 [default: the first third, at least one].
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<CpuSet>,
    /// CPUs for the load [default: the rest].
    #[arg(long, value_name = "LIST")]
    client_cpus: Option<CpuSet>,
    /// Repeat the matrix with the server on each number of CPUs (one worker
    /// each) and draw msgs/s and CPU per message against them, with each
    /// model's knee; a value that leaves the load under twice the server's
    /// CPUs is skipped and says so (--client-cpus places the load instead).
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        conflicts_with = "server_cpus"
    )]
    scale_cpus: Vec<usize>,
    /// Hold every server to PCT percent of its CPUs (a cgroup CPU quota;
    /// Linux, as root), so that the server, not the load, is the limit: for
    /// comparing what servers can do where the load cannot outrun them.
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..=100))]
    server_cpu_cap: Option<u32>,
    /// An echo slower than this fails its connection.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = args::positive_duration)]
    timeout: Duration,
    /// Directory for the results [default: bench-results/<UTC timestamp>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A run is disturbed when more than PCT percent of the pinned CPUs'
    /// capacity went to other work (other processes, host steal).
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    max_interference: f64,
    /// Run a disturbed run again up to N times before flagging its cell.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: usize,
    /// Take every ratio against this model or --server name [default: tokio when it runs, else the first].
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// After the matrix, search each model's capacity at this objective in
    /// each steady cell, such as 'p99<=1ms' (as `stress --find-rate`): the
    /// highest paced rate at which the percentile, from each due time,
    /// holds with no error and nothing left behind.
    #[arg(long, value_name = "OBJ", value_parser = clap::value_parser!(ringport_load::capacity::Objective))]
    slo: Option<ringport_load::capacity::Objective>,
    /// Four cells, one per kind of load where the models differ: 64
    /// connections × 64 B, 1000 × 64 B, 64 × 64 B replaced after each
    /// message (churn) and 64 × 1 MiB; 1 s runs, 3 repetitions, about a
    /// minute and a half on two cores. --connections, --sizes or
    /// --per-connection make the cells their grid instead.
    #[arg(long)]
    quick: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::init_logging(false);
    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| output::default_out_dir(std::time::SystemTime::now()));
    let scale = a.scale_cpus.clone();
    let (client_cpus, cap_pct) = (a.client_cpus.clone(), a.server_cpu_cap);
    let plan = plan_from(a)?;
    if !scale.is_empty() {
        return run_scaled(plan, &scale, client_cpus.as_ref(), cap_pct, &out_dir);
    }
    // Servers started through `sh -c` may be grandchildren that die with
    // nothing else, so an interrupted bench stops them itself.
    signals::on_interrupt(ringport_bench::stop_all_servers)?;
    let results = run_with_progress(&plan)?;
    files::write_all(&results, &out_dir)?;
    let why = output::why(&results).map_or_else(String::new, |w| format!("{w}\n\n"));
    crate::out::stdout(&format!(
        "{}\n\n{why}{}",
        output::verdict(&results),
        output::table_markdown(&results)
    ))?;
    crate::out::eprintln_quiet!(
        "ringport bench: wrote {} ({})",
        out_dir.display(),
        files::FILES.join(", ")
    );
    fail_if_flagged(&results)
}

/// `--scale-cpus`: the plan once per server CPU count this machine can
/// run, each into `OUT/cpus-N/`, then the scaling files into `OUT`.
fn run_scaled(
    plan: Plan,
    counts: &[usize],
    client: Option<&CpuSet>,
    cap_pct: Option<u32>,
    out_dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use ringport_bench::scale::{self, Scaling, Skipped, Step};
    let config = |e: ringport_bench::BenchError| anyhow::Error::new(UsageError(e.to_string()));
    let steps = scale::steps(counts, client).map_err(config)?;
    let skipped: Vec<Skipped> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Skip { server_cpus, why } => Some(Skipped {
                server_cpus: *server_cpus,
                why: why.clone(),
            }),
            Step::Run { .. } => None,
        })
        .collect();
    if skipped.len() == steps.len() {
        let why: Vec<String> = skipped
            .iter()
            .map(|k| format!("{}: {}", k.server_cpus, k.why))
            .collect();
        return Err(anyhow::Error::new(UsageError(format!(
            "--scale-cpus: no value can run on this machine ({})",
            why.join("; ")
        ))));
    }
    for k in &skipped {
        crate::out::eprintln_quiet!(
            "ringport bench: --scale-cpus {} skipped: {}",
            k.server_cpus,
            k.why
        );
    }
    signals::on_interrupt(ringport_bench::stop_all_servers)?;
    let mut runs = Vec::new();
    for step in steps {
        let Step::Run { server_cpus, cpus } = step else {
            continue;
        };
        let server_cpu_cap = server_cap(cap_pct, cpus.server_workers)?;
        let plan = Plan {
            cpus,
            server_cpu_cap,
            ..plan.clone()
        };
        crate::out::eprintln_quiet!("ringport bench: the server on {server_cpus} CPU(s)");
        let results = run_with_progress(&plan)?;
        let dir = out_dir.join(format!("cpus-{server_cpus}"));
        files::write_all(&results, &dir)?;
        runs.push((server_cpus, results));
    }
    let scaling = Scaling::new(&runs, skipped);
    scale::write(&scaling, out_dir)?;
    crate::out::stdout(&scaling.markdown())?;
    crate::out::eprintln_quiet!(
        "ringport bench: wrote {} ({}, and each count's files in cpus-N/)",
        out_dir.display(),
        scale::FILES.join(", ")
    );
    let mut code = ExitCode::SUCCESS;
    for (_, results) in &runs {
        code = fail_if_flagged(results)?;
    }
    Ok(code)
}

/// Success, or the error that names every cell with errors, mismatched
/// echoes or runs that failed.
fn fail_if_flagged(results: &ringport_bench::Results) -> anyhow::Result<ExitCode> {
    let flagged: Vec<String> = results
        .flagged()
        .map(|r| {
            format!(
                "{} at {} conns × {}",
                r.model,
                r.connections,
                matrix::size_text(r.size)
            )
        })
        .collect();
    if flagged.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "{} cell(s) had errors, mismatched echoes or runs that failed: {}",
            flagged.len(),
            flagged.join("; ")
        )
    }
}

/// The bench the flags ask for: the preset matrix with each flag given
/// taking its place.
fn plan_from(a: Args) -> anyhow::Result<Plan> {
    let preset = if a.quick {
        matrix::Preset::quick()
    } else {
        matrix::Preset::full()
    };
    // A flag that shapes the cells makes them the grid of the flags.
    let cells = if a.connections.is_empty() && a.sizes.is_empty() && a.per_connection.is_none() {
        preset.cells.clone()
    } else {
        preset.grid(&a.connections, &a.sizes, a.per_connection)
    };
    // Without --models every model runs, also next to a --server, since
    // comparing an outside server with ours is what --server is for.
    let mut targets: Vec<Target> = if a.models.is_empty() {
        matrix::default_models()
            .into_iter()
            .map(Target::Model)
            .collect()
    } else {
        a.models.iter().copied().map(Target::Model).collect()
    };
    targets.extend(a.servers);
    let cpus = CpuPlan::new(a.server_cpus, a.client_cpus).map_err(|e| UsageError(e.to_string()))?;
    let server_cpu_cap = server_cap(a.server_cpu_cap, cpus.server_workers)?;
    Ok(Plan {
        exe: std::env::current_exe().context("cannot find the ringport binary to start servers")?,
        targets,
        cells,
        duration: a.duration.unwrap_or(preset.duration),
        warmup: a.warmup.unwrap_or(preset.warmup),
        rate: a.rate,
        reps: a.reps.unwrap_or(preset.reps),
        cpus,
        server_cpu_cap,
        timeout: a.timeout,
        ready_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(10),
        command_line: command_line(),
        max_interference_pct: a.max_interference,
        retries: a.retries,
        baseline: a.baseline,
        slo: a.slo,
    })
}

/// `--server-cpu-cap PCT` for servers of `workers` workers.
fn server_cap(
    pct: Option<u32>,
    workers: usize,
) -> Result<Option<std::sync::Arc<ringport_bench::CpuCap>>, UsageError> {
    pct.map(|pct| {
        ringport_bench::CpuCap::new(pct, workers)
            .map(std::sync::Arc::new)
            .map_err(|e| {
                UsageError(format!(
                    "--server-cpu-cap {pct}: cannot hold the servers to a share of their CPUs here: {e}"
                ))
            })
    })
    .transpose()
}

/// Run the bench with a progress bar on stderr, warnings printed above it.
fn run_with_progress(plan: &Plan) -> anyhow::Result<ringport_bench::Results> {
    let bar = ProgressBar::with_draw_target(
        Some(plan.total_runs() as u64),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} runs, eta {eta}  {msg}")
            .expect("valid progress template"),
    );
    let mut on_event = |e: Event<'_>| match e {
        Event::RunStarting {
            index,
            rep,
            target,
            cell,
            ..
        } => {
            if index == 0 {
                // Started here, not before `run`: by now this thread is pinned
                // to the load's CPUs, and the ticker thread inherits that, so
                // it never runs on the server's CPU.
                bar.enable_steady_tick(Duration::from_millis(250));
            }
            bar.set_message(format!("rep {}/{}: {target}, {cell}", rep + 1, plan.reps))
        }
        Event::RunFinished => bar.inc(1),
        Event::Warning(w) => bar.suspend(|| crate::out::eprintln_quiet!("ringport bench: {w}")),
    };
    let results = ringport_bench::run(plan, &mut on_event).map_err(|e| match e {
        ringport_bench::BenchError::Config(m) => anyhow::Error::new(UsageError(m)),
        e => anyhow::Error::new(e),
    })?;
    bar.finish_and_clear();
    Ok(results)
}

/// The command as typed, for `summary.md`.
fn command_line() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if let Some(first) = words.first_mut() {
        *first = "ringport".into();
    }
    words
        .iter()
        .map(|w| {
            if w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '$') {
                format!("'{}'", w.replace('\'', r"'\''"))
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
