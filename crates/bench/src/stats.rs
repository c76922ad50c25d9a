//! From the samples of every repetition to one row per target and cell:
//! each figure is the median of its repetitions, taken figure by figure, so
//! one disturbed run moves none of them; with its spread (the minimum, the
//! maximum and a 95% confidence interval of the median), and the ratio to
//! the baseline model with an interval of its own, so that a difference
//! smaller than the noise is never shown as a result.
//!
//! The arithmetic of the medians and their intervals is in
//! [`order_stats`](crate::order_stats).

use crate::figure::{Figure, Kind};
use crate::matrix::{Cell, Run, Target};
use crate::measure::{Sample, SlowStart};
use crate::notes::Note;
use crate::order_stats::{median, median_ci, median_interval, ratio_with_ci};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A repetition whose slowest connection verified under this share of the
/// median connection's messages per second starved it ([`Note::Starved`]).
pub const STARVED_RATIO: f64 = 0.5;

/// Whether a run's spread over its connections shows one starved.
pub fn starved(s: &ringport_load::Spread) -> bool {
    s.min < STARVED_RATIO * s.median
}

/// The model every ratio is taken against when it is in the run.
pub const PREFERRED_BASELINE: &str = "tokio";

/// One line of `results.json`, `results.csv` and the table.
///
/// The keys are a contract like the load report's: later versions add keys
/// and never rename them. A figure is `null` when no repetition produced it
/// (the server did not start, or the OS cannot provide it).
///
/// The figures live in [`Row::figures`], one [`Summary`] per [`Figure`];
/// serialized, each figure is its key with the median, and for the figures
/// in [`Figure::KEPT`] and [`Figure::RATIOS`] the keys of the spread and
/// the ratio besides (see [`Row::serialize`] for the whole layout).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// The model, or the name given to `--server`.
    pub model: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Churn cells: messages per connection before it is replaced.
    pub per_connection: Option<u64>,
    /// Every figure over the repetitions, indexed by [`Figure::index`];
    /// read them with [`Row::median`] and [`Row::figure`].
    pub figures: [Summary; Figure::COUNT],
    /// The model the ratios are taken against (`null` for the baseline itself).
    pub baseline: Option<String>,
    /// The confidence the `_ci` intervals of this row's medians really have:
    /// 0.95 from 6 repetitions on, less below (0.75 at 3); `null` below 2.
    pub ci_level: Option<f64>,
    /// Interference: the share of the pinned CPUs' capacity that went to
    /// neither this server nor the load (other processes, host steal), in
    /// percent; the worst repetition's.
    pub interference_pct: Option<f64>,
    /// A repetition stayed above the interference threshold after all its
    /// retries: the cell's figures are doubtful.
    pub disturbed: bool,
    /// Runs repeated because they were disturbed, over all repetitions.
    pub retried: usize,
    /// Repetitions whose measured window began at under half its later
    /// rate ([`SlowStart`]): the cell's
    /// figures mix a start with the steady run, so they are doubtful.
    pub slow_starts: usize,
    /// How evenly the connections shared each repetition (the load
    /// report's `per_connection_rate`), the median over the repetitions
    /// that measured it: the slowest connection's msgs/s,
    pub per_connection_rate_min: Option<f64>,
    /// the median connection's msgs/s,
    pub per_connection_rate_median: Option<f64>,
    /// and Jain's fairness index (1: perfectly even, 1/n: one got all).
    pub per_connection_rate_jain: Option<f64>,
    /// Repetitions whose slowest connection got under [`STARVED_RATIO`] of
    /// the median connection's msgs/s.
    pub starved_reps: usize,
    /// Repetitions in which threads of the server came and went, so that
    /// their context switch figures are lower bounds; when any did, the
    /// median of those figures is doubtful (it may be too low).
    pub switches_lower_bound_reps: usize,
    /// Repetitions in which a process of the server's tree ended, so that
    /// its read/write call figure is a lower bound (and its CPU figures,
    /// summed over the processes alive at both readings, too).
    pub rw_calls_lower_bound_reps: usize,
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
    pub notes: Vec<Note>,
}

/// One figure of one row, over its repetitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The median of the repetitions that measured it (rounded for a
    /// [`Kind::Count`]); `None` when none did.
    pub median: Option<f64>,
    /// Each repetition's value, in the order they ran; the repetitions that
    /// did not measure it are left out.
    pub reps: Vec<f64>,
    /// The lowest repetition.
    pub min: Option<f64>,
    /// The highest repetition.
    pub max: Option<f64>,
    /// The 95% confidence interval of the median (distribution-free; `None`
    /// with fewer than 2 repetitions; below 6, the lowest to the highest,
    /// with the confidence that has in [`Row::ci_level`]).
    pub ci: Option<[f64; 2]>,
    /// The median over the baseline's in the same cell; only for the
    /// figures in [`Figure::RATIOS`], and only in rows that have a baseline.
    pub ratio: Option<f64>,
    /// Interval of that ratio: the quotients of the two medians' intervals.
    pub ratio_ci: Option<[f64; 2]>,
}

impl Summary {
    /// `figure` over `samples`.
    fn of(figure: Figure, samples: &[&Sample]) -> Summary {
        let reps: Vec<f64> = samples.iter().filter_map(|s| figure.of(s)).collect();
        let median = median(&reps);
        Summary {
            median: match figure.kind() {
                Kind::Real => median,
                Kind::Count => median.map(f64::round),
            },
            min: reps.iter().copied().reduce(f64::min),
            max: reps.iter().copied().reduce(f64::max),
            ci: median_ci(&reps),
            reps,
            ratio: None,
            ratio_ci: None,
        }
    }
}

impl Row {
    /// The median of `figure` over the repetitions.
    pub fn median(&self, figure: Figure) -> Option<f64> {
        self.figure(figure).median
    }

    /// Everything this row has on `figure`.
    pub fn figure(&self, figure: Figure) -> &Summary {
        &self.figures[figure.index()]
    }

    /// Everything this row has on `figure`, to change.
    pub fn figure_mut(&mut self, figure: Figure) -> &mut Summary {
        &mut self.figures[figure.index()]
    }
}

impl Row {
    /// Its figures are doubtful: a repetition was disturbed or began
    /// slowly, or the row is not clean. No claim is made from it.
    pub fn doubtful(&self) -> bool {
        self.disturbed || self.slow_starts > 0 || !self.clean
    }

    /// The cell of the matrix this row is of.
    pub fn cell(&self) -> Cell {
        Cell {
            connections: self.connections,
            size: self.size,
            per_connection: self.per_connection,
        }
    }
}

/// The layout of a row in `results.json`, key by key: the cell, every
/// figure's median, the spread of the [`Figure::KEPT`] ones, the baseline
/// and the [`Figure::RATIOS`], the run's quality, the repetitions of the
/// kept figures, and the rest.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("model", &self.model)?;
        m.serialize_entry("connections", &self.connections)?;
        m.serialize_entry("size", &self.size)?;
        let median = |f: Figure| self.median(f);
        for f in Figure::ALL.into_iter().filter(|f| f.in_block()) {
            match f.kind() {
                Kind::Real => m.serialize_entry(f.key(), &median(f))?,
                Kind::Count => m.serialize_entry(f.key(), &median(f).map(|v| v as u64))?,
            }
        }
        for f in Figure::KEPT {
            let x = self.figure(f);
            m.serialize_entry(&format!("{}_min", f.key()), &x.min)?;
            m.serialize_entry(&format!("{}_max", f.key()), &x.max)?;
            m.serialize_entry(&format!("{}_ci", f.key()), &x.ci)?;
        }
        m.serialize_entry("baseline", &self.baseline)?;
        for (f, key) in Figure::RATIOS {
            let x = self.figure(f);
            m.serialize_entry(key, &x.ratio)?;
            m.serialize_entry(&format!("{key}_ci"), &x.ratio_ci)?;
        }
        m.serialize_entry("ci_level", &self.ci_level)?;
        m.serialize_entry("interference_pct", &self.interference_pct)?;
        m.serialize_entry("disturbed", &self.disturbed)?;
        m.serialize_entry("retried", &self.retried)?;
        for f in Figure::KEPT {
            m.serialize_entry(&format!("{}_reps", f.key()), &self.figure(f).reps)?;
        }
        m.serialize_entry("serialized", &self.serialized)?;
        m.serialize_entry("reps", &self.reps)?;
        m.serialize_entry("errors", &self.errors)?;
        m.serialize_entry("mismatches", &self.mismatches)?;
        m.serialize_entry("clean", &self.clean)?;
        m.serialize_entry("notes", &self.notes)?;
        m.serialize_entry("per_connection", &self.per_connection)?;
        for f in Figure::APPENDED[0] {
            m.serialize_entry(f.key(), &median(*f))?;
        }
        m.serialize_entry("slow_starts", &self.slow_starts)?;
        m.serialize_entry("per_connection_rate_min", &self.per_connection_rate_min)?;
        m.serialize_entry(
            "per_connection_rate_median",
            &self.per_connection_rate_median,
        )?;
        m.serialize_entry("per_connection_rate_jain", &self.per_connection_rate_jain)?;
        m.serialize_entry("starved_reps", &self.starved_reps)?;
        for f in Figure::APPENDED[1] {
            m.serialize_entry(f.key(), &median(*f))?;
        }
        m.serialize_entry("switches_lower_bound_reps", &self.switches_lower_bound_reps)?;
        m.serialize_entry("rw_calls_lower_bound_reps", &self.rw_calls_lower_bound_reps)?;
        m.end()
    }
}

/// The model ratios are taken against: the one chosen (`--baseline`), else
/// tokio when it ran, else the first. The flag is false only for that last,
/// fallback choice, which the table explains.
pub fn baseline<'a>(models: &'a [String], chosen: Option<&'a str>) -> Option<(&'a str, bool)> {
    if let Some(c) = chosen.filter(|c| models.iter().any(|m| m == c)) {
        return Some((c, true));
    }
    if let Some(t) = models.iter().find(|m| *m == PREFERRED_BASELINE) {
        return Some((t, true));
    }
    models.first().map(|m| (m.as_str(), false))
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
    chosen_baseline: Option<&str>,
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
    let names: Vec<String> = targets.iter().map(|t| t.name().to_string()).collect();
    if let Some((base, _)) = baseline(&names, chosen_baseline) {
        add_ratios(&mut rows, base);
    }
    rows
}

/// Each row's ratios to the baseline's row in the same cell.
pub fn add_ratios(rows: &mut [Row], base: &str) {
    let bases: Vec<Row> = rows.iter().filter(|r| r.model == base).cloned().collect();
    for r in rows.iter_mut().filter(|r| r.model != base) {
        let Some(b) = bases.iter().find(|b| b.cell() == r.cell()) else {
            continue;
        };
        r.baseline = Some(base.to_string());
        for (f, _) in Figure::RATIOS {
            if let Some((x, ci)) = ratio_with_ci(&r.figure(f).reps, &b.figure(f).reps) {
                let mine = r.figure_mut(f);
                mine.ratio = Some(x);
                mine.ratio_ci = ci;
            }
        }
    }
}

/// The row of one target in one cell, from the outcomes of its repetitions.
fn row(target: &Target, cell: Cell, outcomes: &[&Outcome], planned_reps: usize) -> Row {
    let samples: Vec<&Sample> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let reps = samples.len();
    let errors = samples.iter().map(|s| s.errors).sum();
    let mismatches = samples.iter().map(|s| s.mismatches).sum();
    let disturbed_reps = samples.iter().filter(|s| s.disturbed).count();
    let slow: Vec<&SlowStart> = samples
        .iter()
        .filter_map(|s| s.slow_start.as_ref())
        .collect();
    let figures = Figure::ALL.map(|f| Summary::of(f, &samples));
    let spreads: Vec<&ringport_load::Spread> = samples
        .iter()
        .filter_map(|s| s.per_connection_rate.as_ref())
        .collect();
    let spread_median = |f: fn(&ringport_load::Spread) -> Option<f64>| {
        median(&spreads.iter().filter_map(|s| f(s)).collect::<Vec<f64>>())
    };
    let starved_runs: Vec<&ringport_load::Spread> =
        spreads.iter().copied().filter(|s| starved(s)).collect();
    let starved_note = starved_runs
        .iter()
        .min_by(|a, b| {
            let ratio = |s: &ringport_load::Spread| s.min / s.median.max(f64::MIN_POSITIVE);
            ratio(a).total_cmp(&ratio(b))
        })
        .map(|worst| Note::Starved {
            starved: starved_runs.len(),
            reps: spreads.len(),
            min: worst.min,
            median: worst.median,
            // A starved run had a median connection above nothing, so
            // some connection got messages and the index exists.
            jain: worst.jain.unwrap_or(1.0),
        });
    let late: Vec<(u64, u64)> = samples.iter().filter_map(|s| s.generator_late).collect();
    let late_note =
        late.iter()
            .max_by_key(|(p99, _)| *p99)
            .map(|&(lateness_p99_us, latency_p50_us)| Note::GeneratorLate {
                late: late.len(),
                reps,
                lateness_p99_us,
                latency_p50_us,
            });
    let mut notes = notes_of_runs(outcomes, errors, mismatches, disturbed_reps, &slow);
    notes.extend(starved_note);
    notes.extend(late_note);
    Row {
        model: target.name().to_string(),
        connections: cell.connections,
        size: cell.size,
        per_connection: cell.per_connection,
        ci_level: median_interval(&figures[Figure::MsgsPerSec.index()].reps)
            .map(|(_, level)| level),
        figures,
        baseline: None,
        interference_pct: samples
            .iter()
            .filter_map(|s| s.interference_pct)
            .reduce(f64::max),
        disturbed: disturbed_reps > 0,
        retried: samples.iter().map(|s| s.attempts.saturating_sub(1)).sum(),
        slow_starts: slow.len(),
        per_connection_rate_min: spread_median(|s| Some(s.min)),
        per_connection_rate_median: spread_median(|s| Some(s.median)),
        per_connection_rate_jain: spread_median(|s| s.jain),
        starved_reps: starved_runs.len(),
        switches_lower_bound_reps: samples
            .iter()
            .filter(|s| s.switches_lower_bound && s.server_voluntary_switches_per_msg.is_some())
            .count(),
        rw_calls_lower_bound_reps: samples
            .iter()
            .filter(|s| s.rw_calls_lower_bound && s.server_rw_calls_per_msg.is_some())
            .count(),
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

/// The notes of a row, each once, in this order: what the runs said (or why
/// they could not run), then wrong echoes or failed connections, then
/// disturbed repetitions, then slow starts.
fn notes_of_runs(
    outcomes: &[&Outcome],
    errors: u64,
    mismatches: u64,
    disturbed: usize,
    slow: &[&SlowStart],
) -> Vec<Note> {
    let mut notes: Vec<Note> = Vec::new();
    let mut note = |n: Note| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for o in outcomes {
        match o {
            Err(why) => note(Note::Run(why.clone())),
            Ok(s) => {
                if let Some(n) = &s.note {
                    note(Note::Run(n.clone()));
                }
            }
        }
    }
    let reps = outcomes.iter().filter(|o| o.is_ok()).count();
    if mismatches > 0 {
        note(Note::EchoMismatch);
    } else if errors > 0 {
        note(Note::ConnectionErrors);
    }
    if disturbed > 0 {
        note(Note::Disturbed { disturbed, reps });
    }
    if !slow.is_empty() {
        note(Note::SlowStart {
            starts: slow.iter().map(|s| **s).collect(),
            reps,
        });
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringport_server::Model;

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
            per_connection: None,
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
        let rows = aggregate(&targets, &cells, &runs, 3, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].model, "threaded");
        assert_eq!(rows[0].median(Figure::MsgsPerSec), Some(200.0));
        assert_eq!(rows[0].median(Figure::P50), Some(2.0));
        assert_eq!(rows[0].median(Figure::ServerPeakRss), Some(200.0));
        assert!(rows[0].clean && !rows[0].serialized);
        assert_eq!(rows[1].median(Figure::MsgsPerSec), Some(20.0));
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
            per_connection: None,
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
        let rows = aggregate(&targets, &cells, &runs, 1, None);
        assert_eq!((rows[0].errors, rows[0].mismatches), (2, 1));
        assert!(!rows[0].clean);
        assert!(rows[0].notes[0].to_string().contains("MISMATCH"));
    }

    #[test]
    fn a_server_that_broke_its_contract_flags_a_clean_cell() {
        let targets = [Target::Model(Model::Threaded)];
        let cells = [Cell {
            connections: 1,
            size: 64,
            per_connection: None,
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
        let rows = aggregate(&targets, &cells, &runs, 1, None);
        assert_eq!(rows[0].errors, 0);
        assert!(!rows[0].clean);
        assert_eq!(rows[0].notes, ["the server exited during the run"]);
    }

    #[test]
    fn a_load_later_than_the_latency_it_measured_is_noted_with_its_worst() {
        let targets = [Target::Model(Model::Epoll)];
        let cells = [Cell {
            connections: 4,
            size: 64,
            per_connection: None,
        }];
        let run = |rep| Run {
            rep,
            cell: 0,
            target: 0,
        };
        let late = |l| Sample {
            generator_late: l,
            ..sample(5.0)
        };
        let runs = vec![
            (run(0), Ok(late(Some((250, 110))))),
            (run(1), Ok(late(None))),
            (run(2), Ok(late(Some((900, 120))))),
        ];
        let rows = aggregate(&targets, &cells, &runs, 3, None);
        let note = Note::GeneratorLate {
            late: 2,
            reps: 3,
            lateness_p99_us: 900,
            latency_p50_us: 120,
        };
        assert!(rows[0].notes.contains(&note), "{:?}", rows[0].notes);
        // The load's delay is a doubt about latency only: msgs/s and CPU stand.
        assert!(!rows[0].doubtful());
        let on_time = vec![(run(0), Ok(late(None)))];
        let rows = aggregate(&targets, &cells, &on_time, 1, None);
        assert!(rows[0].notes.is_empty(), "{:?}", rows[0].notes);
    }

    #[test]
    fn a_cell_whose_slowest_connection_got_under_half_the_median_is_starved() {
        let targets = [Target::Model(Model::Threaded)];
        let cells = [Cell {
            connections: 8,
            size: 64,
            per_connection: None,
        }];
        let with = |counts: &[u64]| Sample {
            per_connection_rate: ringport_load::Spread::from_counts(counts, 1.0),
            ..sample(5.0)
        };
        let run = |rep| Run {
            rep,
            cell: 0,
            target: 0,
        };
        let even = [100, 101, 99, 100, 102, 98, 100, 100];
        let one_starved = [10, 101, 99, 100, 102, 98, 100, 100];
        let worse = [2, 101, 99, 100, 102, 98, 100, 100];
        let runs = vec![
            (run(0), Ok(with(&even))),
            (run(1), Ok(with(&one_starved))),
            (run(2), Ok(with(&worse))),
        ];
        let rows = aggregate(&targets, &cells, &runs, 3, None);
        let r = &rows[0];
        assert_eq!(r.starved_reps, 2);
        assert_eq!(r.per_connection_rate_min, Some(10.0));
        assert_eq!(r.per_connection_rate_median, Some(100.0));
        let Some(Note::Starved {
            starved,
            reps,
            min,
            median,
            jain,
        }) = r.notes.iter().find(|n| matches!(n, Note::Starved { .. }))
        else {
            panic!("a starved note: {:?}", r.notes);
        };
        assert_eq!((*starved, *reps, *min, *median), (2, 3, 2.0, 100.0));
        assert!(*jain < 0.95, "{jain}");
        // Starvation is a finding, not a doubt about the figures.
        assert!(r.clean && !r.doubtful());
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["starved_reps"], 2, "{json}");
        assert_eq!(json["per_connection_rate_min"], 10.0, "{json}");
        assert!(json["per_connection_rate_jain"].as_f64().unwrap() < 1.0);
        // An even cell has no note.
        let runs = vec![(run(0), Ok(with(&even)))];
        let rows = aggregate(&targets, &cells, &runs, 1, None);
        assert_eq!(rows[0].starved_reps, 0);
        assert!(rows[0].notes.is_empty(), "{:?}", rows[0].notes);
    }
}
