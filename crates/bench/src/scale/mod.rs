//! `bench --scale-cpus 1,2,4,…`: the whole matrix again with the server on
//! each number of CPUs, the load on others, and how each model's msgs/s
//! and CPU per message change with the server's CPUs.
//!
//! Each value runs as a bench of its own, written to `cpus-N/` like any
//! other; this module decides which values this machine can run
//! ([`steps`]), puts the runs side by side ([`Scaling`]), finds each
//! model's knee ([`Knee`]) and writes `scaling.json`, `scaling.md`,
//! `scaling.svg` (`curves.rs`) and `report.html`, one self-contained page
//! of the knees, the table and the chart that links each count's own.
//!
//! The load must not be the limit, or a "knee" would be the load's: a
//! value runs only when the CPUs left for the load are at least
//! [`LOAD_PER_SERVER_CPU`] times the server's, since the load spends up to
//! twice the server's CPU per message (`docs/BENCHMARKS.md`, the load's
//! own cost). `--client-cpus` given puts the load there for every value
//! instead, and the server on the first N of the other CPUs.

use crate::cpus::CpuSet;
use crate::figure::Figure;
use crate::matrix::Cell;
use crate::order_stats::ratio_with_ci;
use crate::{output, sys, BenchError, CpuPlan, Results};
use serde::Serialize;
use std::path::Path;

mod text;

pub use text::scaling_svg;

/// The load's CPUs per server CPU that a value of `--scale-cpus` needs.
pub const LOAD_PER_SERVER_CPU: usize = 2;

/// Below this gain per doubling of the server's CPUs, a model has passed
/// its knee.
pub const KNEE_GAIN: f64 = 1.5;

/// What one value of `--scale-cpus` will do.
#[derive(Debug, Clone)]
pub enum Step {
    /// Run the matrix with these CPUs.
    Run {
        /// The server's CPU count.
        server_cpus: usize,
        /// Where the server and the load are pinned.
        cpus: CpuPlan,
    },
    /// Left out, and why.
    Skip {
        /// The server's CPU count asked for.
        server_cpus: usize,
        /// Why this machine cannot run it.
        why: String,
    },
}

/// The steps for `counts` (each once, ascending) on the CPUs this process
/// may use, the load on `client` where given.
pub fn steps(counts: &[usize], client: Option<&CpuSet>) -> Result<Vec<Step>, BenchError> {
    let allowed = sys::allowed_cpus().ok_or_else(|| {
        BenchError::Config(format!(
            "--scale-cpus pins the server to each number of CPUs, and CPU pinning is {}",
            sys::UNAVAILABLE
        ))
    })?;
    steps_on(&allowed, counts, client)
}

fn steps_on(
    allowed: &CpuSet,
    counts: &[usize],
    client: Option<&CpuSet>,
) -> Result<Vec<Step>, BenchError> {
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() || counts.contains(&0) {
        return Err(BenchError::Config(
            "--scale-cpus needs server CPU counts of at least 1, such as 1,2,4".into(),
        ));
    }
    let mut steps = Vec::with_capacity(counts.len());
    for n in counts {
        let skip = |why: String| Step::Skip {
            server_cpus: n,
            why,
        };
        let step = match client {
            Some(client) => {
                let free = allowed.difference(client);
                if free.len() < n {
                    skip(format!(
                        "only {} CPU(s) are left besides the load's ({client})",
                        free.len()
                    ))
                } else {
                    let server = CpuSet::new(free.cpus()[..n].to_vec());
                    Step::Run {
                        server_cpus: n,
                        cpus: CpuPlan::with_allowed(allowed, Some(server), Some(client.clone()))?,
                    }
                }
            }
            None => {
                let load = allowed.len().saturating_sub(n);
                if load < LOAD_PER_SERVER_CPU * n {
                    skip(format!(
                        "{n} server CPU(s) leave {load} of this machine's {} for the load, under the {} it needs (the load spends up to twice the server's CPU per message, so it would be the limit); --client-cpus chooses the load's CPUs instead",
                        allowed.len(),
                        LOAD_PER_SERVER_CPU * n
                    ))
                } else {
                    let server = CpuSet::new(allowed.cpus()[..n].to_vec());
                    let load = CpuSet::new(allowed.cpus()[n..].to_vec());
                    Step::Run {
                        server_cpus: n,
                        cpus: CpuPlan::with_allowed(allowed, Some(server), Some(load))?,
                    }
                }
            }
        };
        steps.push(step);
    }
    Ok(steps)
}

/// One model in one cell, at each server CPU count that ran.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// The model or `--server` name.
    pub model: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Churn's messages per connection, if a churn cell.
    pub per_connection: Option<u64>,
    /// One point per server CPU count, ascending.
    pub points: Vec<Point>,
    /// Where the next doubling of CPUs first gave under [`KNEE_GAIN`]×.
    pub knee: Option<Knee>,
}

/// A model's figures in one cell at one server CPU count.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The server's CPUs.
    pub server_cpus: usize,
    /// Verified messages per second, the median.
    pub msgs_per_sec: Option<f64>,
    /// Each repetition's msgs/s.
    #[serde(skip)]
    pub msgs_reps: Vec<f64>,
    /// Server CPU µs per message, the median.
    pub server_cpu_us_per_msg: Option<f64>,
    /// The load used so much of its CPUs that it may have been the limit.
    pub load_bound: bool,
    /// The row's figures are doubtful (disturbed, a slow start, errors).
    pub doubtful: bool,
}

/// The knee of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Knee {
    /// The server CPU count after which more CPUs stopped paying.
    pub server_cpus: usize,
    /// msgs/s gained per doubling from there to the next count.
    pub gain_per_doubling: f64,
    /// The gain's interval is wholly under [`KNEE_GAIN`]; else it is
    /// within noise of it.
    pub sure: bool,
    /// The load was near its limit at the next count, so the knee may be
    /// the load's.
    pub load_bound: bool,
}

/// The runs of a `--scale-cpus` bench, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    /// The server CPU counts that ran, ascending.
    pub server_cpus: Vec<usize>,
    /// Those left out, and why.
    pub skipped: Vec<Skipped>,
    /// One per model and cell.
    pub series: Vec<Series>,
}

/// A value of `--scale-cpus` that did not run.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The server's CPU count asked for.
    pub server_cpus: usize,
    /// Why.
    pub why: String,
}

impl Scaling {
    /// Put the runs side by side: `runs` holds each count's results.
    pub fn new(runs: &[(usize, Results)], skipped: Vec<Skipped>) -> Scaling {
        let mut series: Vec<Series> = Vec::new();
        for (n, results) in runs {
            for r in &results.results {
                let point = Point {
                    server_cpus: *n,
                    msgs_per_sec: r.median(Figure::MsgsPerSec),
                    msgs_reps: r.figure(Figure::MsgsPerSec).reps.clone(),
                    server_cpu_us_per_msg: r.median(Figure::ServerCpu),
                    load_bound: output::client_bound(r),
                    doubtful: r.doubtful() || !r.clean,
                };
                let cell = r.cell();
                match series
                    .iter_mut()
                    .find(|s| s.model == r.model && s.cell() == cell)
                {
                    Some(s) => s.points.push(point),
                    None => series.push(Series {
                        model: r.model.clone(),
                        connections: r.connections,
                        size: r.size,
                        per_connection: r.per_connection,
                        points: vec![point],
                        knee: None,
                    }),
                }
            }
        }
        for s in &mut series {
            s.points.sort_by_key(|p| p.server_cpus);
            s.knee = knee(&s.points);
        }
        Scaling {
            server_cpus: runs.iter().map(|(n, _)| *n).collect(),
            skipped,
            series,
        }
    }

    /// The cells, in the order they first appear.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for s in &self.series {
            if !cells.contains(&s.cell()) {
                cells.push(s.cell());
            }
        }
        cells
    }
}

impl Series {
    /// The cell it measures.
    pub fn cell(&self) -> Cell {
        Cell {
            connections: self.connections,
            size: self.size,
            per_connection: self.per_connection,
        }
    }
}

impl std::fmt::Display for Knee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "knee at {} CPU(s): the next CPUs gave {:.2}× msgs/s per doubling",
            self.server_cpus, self.gain_per_doubling
        )?;
        if !self.sure {
            write!(f, " (within noise of {KNEE_GAIN}×)")?;
        }
        if self.load_bound {
            write!(
                f,
                " (the load was near its limit there: the knee may be the load's)"
            )?;
        }
        Ok(())
    }
}

/// The first count after which msgs/s gained under [`KNEE_GAIN`]× per
/// doubling of the server's CPUs. Counts that are not doublings of each
/// other are compared per doubling (`gain^(1/log2(m/n))`). A doubtful
/// point ends the search: nothing is claimed from it.
fn knee(points: &[Point]) -> Option<Knee> {
    for pair in points.windows(2) {
        let (p, q) = (&pair[0], &pair[1]);
        if p.doubtful || q.doubtful {
            return None;
        }
        let (ratio, ci) = ratio_with_ci(&q.msgs_reps, &p.msgs_reps)?;
        let doublings = (q.server_cpus as f64 / p.server_cpus as f64).log2();
        let per = |x: f64| x.max(0.0).powf(1.0 / doublings);
        let gain = per(ratio);
        if gain < KNEE_GAIN {
            return Some(Knee {
                server_cpus: p.server_cpus,
                gain_per_doubling: gain,
                sure: ci.is_some_and(|[_, hi]| per(hi) < KNEE_GAIN),
                load_bound: q.load_bound,
            });
        }
    }
    None
}

/// The files [`write`] makes.
pub const FILES: [&str; 4] = ["scaling.json", "scaling.md", "scaling.svg", "report.html"];

/// Write [`FILES`] into `dir`.
pub fn write(scaling: &Scaling, dir: &Path) -> Result<(), BenchError> {
    let io = |what: String| move |e| BenchError::Io { what, source: e };
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let json = serde_json::to_string_pretty(scaling).expect("scaling serializes") + "\n";
    let svg = scaling_svg(scaling)?;
    let html = scaling.html(&svg);
    for (name, text) in FILES.into_iter().zip([json, scaling.markdown(), svg, html]) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("cannot write {}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    fn point(n: usize, msgs: [f64; 3]) -> Point {
        Point {
            server_cpus: n,
            msgs_per_sec: Some(msgs[1]),
            msgs_reps: msgs.to_vec(),
            server_cpu_us_per_msg: Some(5.0),
            load_bound: false,
            doubtful: false,
        }
    }

    #[test]
    fn a_value_runs_only_where_the_load_gets_twice_the_servers_cpus() {
        let steps = steps_on(&set("0-15"), &[4, 1, 2, 8, 5, 4], None).unwrap();
        let ran: Vec<usize> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Run { server_cpus, .. } => Some(*server_cpus),
                Step::Skip { .. } => None,
            })
            .collect();
        assert_eq!(ran, [1, 2, 4, 5]);
        let Step::Skip {
            server_cpus: 8,
            why,
        } = &steps[4]
        else {
            panic!("8 is skipped: {steps:?}")
        };
        assert!(
            why.contains("leave 8 of this machine's 16 for the load, under the 16"),
            "{why}"
        );
        // Two CPUs: even one server CPU leaves the load too little.
        let two = steps_on(&set("0-1"), &[1, 2], None).unwrap();
        assert!(two.iter().all(|s| matches!(s, Step::Skip { .. })));
        assert!(steps_on(&set("0-1"), &[0], None).is_err());
    }

    #[test]
    fn with_client_cpus_the_server_takes_the_first_of_the_others() {
        let (allowed, client) = (set("0-1"), set("1"));
        let steps = steps_on(&allowed, &[1, 2], Some(&client)).unwrap();
        match &steps[0] {
            Step::Run { cpus, .. } => {
                assert_eq!(cpus.server, Some(set("0")));
                assert_eq!(cpus.client, Some(client.clone()));
                assert_eq!(cpus.server_workers, 1);
            }
            s => panic!("1 runs: {s:?}"),
        }
        assert!(matches!(&steps[1], Step::Skip { why, .. } if why.contains("besides the load's")));
    }

    /// Two models in one cell at 1, 2 and 4 server CPUs.
    fn synthetic() -> Scaling {
        let series = |model: &str, msgs: [[f64; 3]; 3]| {
            let points: Vec<Point> = [1, 2, 4]
                .into_iter()
                .zip(msgs)
                .map(|(n, m)| point(n, m))
                .collect();
            Series {
                model: model.into(),
                connections: 64,
                size: 64,
                per_connection: None,
                knee: knee(&points),
                points,
            }
        };
        Scaling {
            server_cpus: vec![1, 2, 4],
            skipped: vec![Skipped {
                server_cpus: 8,
                why: "too few CPUs".into(),
            }],
            series: vec![
                series(
                    "threaded",
                    [
                        [95.0, 100.0, 105.0],
                        [120.0, 125.0, 130.0],
                        [125.0, 130.0, 135.0],
                    ],
                ),
                series(
                    "epoll",
                    [
                        [195.0, 200.0, 205.0],
                        [390.0, 400.0, 410.0],
                        [780.0, 800.0, 820.0],
                    ],
                ),
            ],
        }
    }

    #[test]
    fn the_summary_and_the_chart_name_each_knee_and_skip() {
        let s = synthetic();
        let md = s.markdown();
        assert!(
            md.contains("- 8 server CPU(s): skipped: too few CPUs"),
            "{md}"
        );
        assert!(
            md.contains("threaded at 64 conn × 64 B: knee at 1 CPU(s): the next CPUs gave 1.25× msgs/s per doubling."),
            "{md}"
        );
        assert!(
            md.contains("epoll at 64 conn × 64 B: each doubling"),
            "{md}"
        );
        assert!(
            md.contains(
                "| epoll | 64 conn × 64 B | 200 | 5.00 | 400 | 5.00 | 800 | 5.00 | none seen |"
            ),
            "{md}"
        );
        let svg = scaling_svg(&s).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "an SVG");
        for text in ["threaded", "epoll", "64 conn × 64 B: msgs/s", "server CPUs"] {
            assert!(svg.contains(text), "{text} in the chart");
        }
        let html = s.html(&svg);
        assert!(
            html.contains("<a href=\"cpus-4/report.html\">") && html.contains("knee at 1 CPU(s)"),
            "{html}"
        );
        assert!(
            !html.contains("<script") && !html.contains("src=\"http"),
            "self-contained"
        );
    }

    #[test]
    fn the_knee_is_where_a_doubling_first_gives_under_one_and_a_half() {
        let points = [
            point(1, [95.0, 100.0, 105.0]),
            point(2, [190.0, 200.0, 210.0]),
            point(4, [230.0, 240.0, 250.0]),
            point(8, [240.0, 250.0, 260.0]),
        ];
        let k = knee(&points).unwrap();
        assert_eq!(k.server_cpus, 2);
        assert!((k.gain_per_doubling - 1.2).abs() < 1e-9, "{k:?}");
        assert!(k.sure && !k.load_bound);
        // Scaling all the way: no knee.
        let linear = [
            point(1, [99.0, 100.0, 101.0]),
            point(2, [198.0, 200.0, 202.0]),
        ];
        assert_eq!(knee(&linear), None);
        // 1 → 4 is two doublings: 2.56× is 1.6× per doubling, no knee.
        let wide = [
            point(1, [99.0, 100.0, 101.0]),
            point(4, [250.0, 256.0, 260.0]),
        ];
        assert_eq!(knee(&wide), None);
        // An interval that reaches 1.5× is a knee within noise.
        let noisy = [
            point(1, [80.0, 100.0, 120.0]),
            point(2, [130.0, 140.0, 150.0]),
        ];
        let k = knee(&noisy).unwrap();
        assert!(!k.sure, "{k:?}");
        assert!(k.to_string().contains("within noise"), "{k}");
    }
}
