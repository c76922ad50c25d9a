//! Capacity at an objective: `stress --find-rate --slo 'p99<=1ms'` searches
//! for the highest open-loop rate at which the objective holds.
//!
//! An [`Objective`] bounds one percentile of the latency counted from each
//! message's due time (coordinated omission corrected), and is also broken
//! by any failed connection or mismatch, and by messages that fell behind
//! the schedule and were never sent. Each step is one open-loop run at one
//! rate, long enough that at least [`TAIL_SAMPLES`] messages lie beyond
//! the percentile. The search doubles the rate from the start until the
//! objective breaks (or halves it until it holds), then bisects
//! geometrically until the first failing rate is within the precision of
//! the last passing one; it states both, and their ratio. The search
//! itself ([`search`]) is given a function that runs a step, so it is
//! tested without a network.

use crate::{LoadError, Report};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Messages beyond the percentile a step must measure for it to mean
/// something: p99 needs 10,000 messages, p99.9 100,000.
pub const TAIL_SAMPLES: f64 = 100.0;

/// The most steps a search makes, whatever the precision asked.
pub const MAX_STEPS: usize = 40;

/// Rates outside these are not tried.
pub const RATE_RANGE: (f64, f64) = (1.0, 1e8);

/// A bound on one latency percentile, such as `p99<=1ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// The percentile, above 0 and below 100.
    pub percentile: f64,
    /// Its bound, in microseconds.
    pub bound_us: f64,
    /// `<=` (the bound itself passes) rather than `<`.
    pub inclusive: bool,
    text: String,
}

impl FromStr for Objective {
    type Err = String;

    /// `p99<=1ms`, `p99.9<500us`, `p50<=2ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!("'{s}' is not an objective ({why}): write a percentile and a bound, such as p99<=1ms or p99.9<500us")
        };
        let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let rest = t
            .strip_prefix('p')
            .or_else(|| t.strip_prefix('P'))
            .ok_or_else(|| bad("it must start with p"))?;
        let (at, inclusive, width) = match (rest.find("<="), rest.find('<')) {
            (Some(i), _) => (i, true, 2),
            (None, Some(i)) => (i, false, 1),
            (None, None) => return Err(bad("no < or <=")),
        };
        let percentile: f64 = rest[..at]
            .parse()
            .map_err(|_| bad("the percentile is not a number"))?;
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err(bad("the percentile must be above 0 and below 100"));
        }
        let bound = &rest[at + width..];
        let bound = humantime::parse_duration(bound)
            .map_err(|e| bad(&format!("the bound is not a duration: {e}")))?;
        if bound.is_zero() || bound > Duration::from_secs(3600) {
            return Err(bad("the bound must be above 0 and at most an hour"));
        }
        Ok(Objective {
            percentile,
            bound_us: bound.as_secs_f64() * 1e6,
            inclusive,
            text: format!(
                "p{percentile}{}{}",
                if inclusive { "<=" } else { "<" },
                humantime::format_duration(bound)
            ),
        })
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Objective {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl Objective {
    /// How long a step at `rate` must measure for [`TAIL_SAMPLES`] messages
    /// beyond the percentile, at least `min` and at most `max`.
    pub fn step_duration(&self, rate: f64, min: Duration, max: Duration) -> Duration {
        let messages = TAIL_SAMPLES / (1.0 - self.percentile / 100.0);
        Duration::from_secs_f64((messages / rate).min(max.as_secs_f64())).max(min)
    }

    /// Whether one step's report meets the objective: the percentile's
    /// value if it does, what broke it if not.
    pub fn judge(&self, r: &Report) -> Result<u64, Broken> {
        let problems = r.problems();
        if !problems.is_empty() {
            return Err(Broken::Problems(problems.join("; ")));
        }
        if r.messages_unsent > 0 {
            return Err(Broken::FellBehind(r.messages_unsent));
        }
        let latency = match &r.latency_corrected_us {
            Some(l) if l.count > 0 => l,
            _ => return Err(Broken::NothingMeasured),
        };
        let value = latency
            .percentiles
            .get(self.percentile)
            .ok_or(Broken::NothingMeasured)?;
        let v = value as f64;
        let holds = if self.inclusive {
            v <= self.bound_us
        } else {
            v < self.bound_us
        };
        if holds {
            Ok(value)
        } else {
            Err(Broken::OverBound {
                percentile: self.percentile,
                value,
                bound_us: self.bound_us,
            })
        }
    }
}

/// What broke an objective in one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Broken {
    /// Connections failed, echoes mismatched, or messages were lost.
    Problems(String),
    /// This many messages fell behind the schedule and were never sent.
    FellBehind(u64),
    /// No open-loop latency was measured.
    NothingMeasured,
    /// The percentile was over its bound.
    OverBound {
        /// The percentile.
        percentile: f64,
        /// Its value, µs.
        value: u64,
        /// The bound, µs.
        bound_us: f64,
    },
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Problems(p) => f.write_str(p),
            Broken::FellBehind(n) => {
                write!(
                    f,
                    "{n} messages fell behind the schedule and were never sent"
                )
            }
            Broken::NothingMeasured => f.write_str("no open-loop latency was measured"),
            Broken::OverBound {
                percentile,
                value,
                bound_us,
            } => write!(f, "p{percentile} was {value} µs, over {bound_us} µs"),
        }
    }
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// The first rate tried, messages/s.
    pub start: f64,
    /// Stop when the first failing rate is at most this times the last
    /// passing one (above 1).
    pub precision: f64,
    /// The shortest step.
    pub min_step: Duration,
    /// The longest step (a step shorter than the objective's percentile
    /// needs is marked `short`).
    pub max_step: Duration,
}

/// One rate tried.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Messages per second asked for.
    pub rate: f64,
    /// Its measured window, seconds.
    pub duration_s: f64,
    /// Verified messages per second.
    pub msgs_per_sec: f64,
    /// The objective's percentile of the latency from each due time, µs.
    pub percentile_us: Option<u64>,
    /// Messages measured.
    pub messages: u64,
    /// The objective held.
    pub pass: bool,
    /// Why it did not.
    pub why: Option<String>,
    /// The step had fewer than [`TAIL_SAMPLES`] messages beyond the
    /// percentile (it hit the longest step): its percentile is rough.
    pub short: bool,
    /// It failed on the percentile alone: no error, nothing fell behind.
    #[serde(skip)]
    over_bound: bool,
}

/// What the search found.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// The objective, as given.
    pub objective: Objective,
    /// The precision asked for.
    pub precision: f64,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The highest rate that met the objective.
    pub last_pass: Option<f64>,
    /// The lowest rate above it that did not.
    pub first_fail: Option<f64>,
    /// `first_fail / last_pass`: how precisely the capacity is known.
    pub ratio: Option<f64>,
    /// The search ended early (Ctrl-C, or a run that could not start).
    pub interrupted: bool,
    /// No rate met the objective, and halving the rate did not lower the
    /// percentile: the bound is under the server's latency at light load,
    /// so lower rates were not tried.
    pub below_floor: bool,
    /// A step failed without a single verified echo (the server refused,
    /// reset, never answered or echoed wrong bytes): no rate will help, so
    /// the search stopped.
    pub nothing_echoed: bool,
}

impl Capacity {
    /// The result in one sentence.
    pub fn summary(&self) -> String {
        if self.interrupted {
            // Cut short: no failing rate was reached only because the
            // search stopped, so "at least" is all that can be said.
            return match (self.last_pass, self.first_fail) {
                (Some(p), Some(f)) => format!(
                    "capacity at {}: search interrupted: {} msgs/s held, {} did not",
                    self.objective,
                    crate::report::grouped(p),
                    crate::report::grouped(f)
                ),
                (Some(p), None) => format!(
                    "capacity at {}: search interrupted: at least {} msgs/s held before it stopped (no upper bound found)",
                    self.objective,
                    crate::report::grouped(p)
                ),
                (None, _) => format!(
                    "capacity at {}: search interrupted before any rate held",
                    self.objective
                ),
            };
        }
        if let (true, Some(f)) = (self.nothing_echoed, self.first_fail) {
            // What that step saw: refused, reset, silent, or wrong bytes.
            let why = self.steps.last().and_then(|s| s.why.as_deref());
            return format!(
                "capacity at {}: not found: at {} msgs/s no echo was verified ({}), so the search stopped",
                self.objective,
                crate::report::grouped(f),
                why.unwrap_or("nothing came back")
            );
        }
        match (self.last_pass, self.first_fail) {
            (Some(p), Some(f)) => format!(
                "capacity at {}: {} msgs/s holds, {} msgs/s does not (within {:.2}×)",
                self.objective,
                crate::report::grouped(p),
                crate::report::grouped(f),
                f / p
            ),
            (Some(p), None) => format!(
                "capacity at {}: at least {} msgs/s (no failing rate was reached)",
                self.objective,
                crate::report::grouped(p)
            ),
            (None, Some(f)) if self.below_floor => format!(
                "capacity at {}: none found: the objective broke at every rate tried, down to {} msgs/s, and halving the rate did not lower p{}: the bound is under this server's latency at light load",
                self.objective,
                crate::report::grouped(f),
                self.objective.percentile
            ),
            (None, Some(f)) => format!(
                "capacity at {}: none found: the objective broke at every rate tried, down to {} msgs/s",
                self.objective,
                crate::report::grouped(f)
            ),
            (None, None) => format!("capacity at {}: no step ran", self.objective),
        }
    }

    /// The curve of rate against the percentile, a line per step in rate
    /// order, then the summary.
    pub fn to_text(&self) -> String {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let mut s = format!(
            "find-rate       {}, precision {:.2}×, latency from each message's due time\n",
            self.objective, self.precision
        );
        s.push_str(&format!(
            "{:>14} {:>14} {:>12} {:>10}  result\n",
            "rate msgs/s",
            "verified/s",
            format!("p{} µs", self.objective.percentile),
            "messages"
        ));
        for st in steps {
            let result = match (&st.why, st.short) {
                (None, false) => "pass".to_string(),
                (None, true) => "pass (short step: rough percentile)".to_string(),
                (Some(why), _) => format!("FAIL: {why}"),
            };
            s.push_str(&format!(
                "{:>14} {:>14} {:>12} {:>10}  {result}\n",
                crate::report::grouped(st.rate),
                crate::report::grouped(st.msgs_per_sec),
                st.percentile_us.map_or("—".into(), |v| v.to_string()),
                st.messages
            ));
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }
}

/// Search for the capacity: `run(rate, duration)` runs one open-loop step
/// and returns its report. A step whose report was interrupted ends the
/// search; an error ends it with that error.
pub fn search(
    plan: &Plan,
    objective: &Objective,
    mut run: impl FnMut(f64, Duration) -> Result<Report, LoadError>,
) -> Result<Capacity, LoadError> {
    let mut cap = Capacity {
        objective: objective.clone(),
        precision: plan.precision,
        steps: Vec::new(),
        last_pass: None,
        first_fail: None,
        ratio: None,
        interrupted: false,
        below_floor: false,
        nothing_echoed: false,
    };
    let (lo_limit, hi_limit) = RATE_RANGE;
    let mut rate = plan.start.clamp(lo_limit, hi_limit);
    while cap.steps.len() < MAX_STEPS {
        let duration = objective.step_duration(rate, plan.min_step, plan.max_step);
        let report = run(rate, duration)?;
        if report.interrupted {
            cap.interrupted = true;
            break;
        }
        let verdict = objective.judge(&report);
        let tail = report.latency_corrected_us.as_ref().map_or(0.0, |l| {
            l.count as f64 * (1.0 - objective.percentile / 100.0)
        });
        cap.steps.push(Step {
            rate,
            duration_s: report.elapsed_s,
            msgs_per_sec: report.msgs_per_sec,
            percentile_us: report
                .latency_corrected_us
                .as_ref()
                .and_then(|l| l.percentiles.get(objective.percentile)),
            messages: report.latency_corrected_us.as_ref().map_or(0, |l| l.count),
            pass: verdict.is_ok(),
            why: verdict.as_ref().err().map(Broken::to_string),
            short: tail < TAIL_SAMPLES,
            over_bound: matches!(verdict, Err(Broken::OverBound { .. })),
        });
        if verdict.is_err() && report.messages_verified == 0 {
            cap.first_fail = Some(cap.first_fail.map_or(rate, |f: f64| f.min(rate)));
            cap.nothing_echoed = true;
            break;
        }
        match verdict {
            Ok(_) => cap.last_pass = Some(cap.last_pass.map_or(rate, |p: f64| p.max(rate))),
            Err(_) => cap.first_fail = Some(cap.first_fail.map_or(rate, |f: f64| f.min(rate))),
        }
        rate = match (cap.last_pass, cap.first_fail) {
            (Some(p), Some(f)) if f <= p => {
                // A rate failed below one that passed: the server is not
                // monotonic here, or the machine hiccuped. The lower
                // failure is what counts; search below it.
                cap.last_pass = cap
                    .steps
                    .iter()
                    .filter(|s| s.pass && s.rate < f)
                    .map(|s| s.rate)
                    .reduce(f64::max);
                match cap.last_pass {
                    Some(p) if f / p > plan.precision => (p * f).sqrt(),
                    Some(_) => break,
                    None if f / 2.0 >= lo_limit => f / 2.0,
                    None => break,
                }
            }
            (Some(p), Some(f)) if f / p <= plan.precision => break,
            (Some(p), Some(f)) => (p * f).sqrt(),
            (Some(p), None) if p * 2.0 <= hi_limit => p * 2.0,
            (None, Some(_)) if no_better_at_half(&cap.steps) => {
                cap.below_floor = true;
                break;
            }
            (None, Some(f)) if f / 2.0 >= lo_limit => f / 2.0,
            _ => break,
        };
    }
    cap.ratio = cap.last_pass.zip(cap.first_fail).map(|(p, f)| f / p);
    Ok(cap)
}

/// Two failing steps, the last at half the rate of the one before, whose
/// percentile did not fall below [`FLOOR_GAIN`] of it: lower rates will
/// not help.
fn no_better_at_half(steps: &[Step]) -> bool {
    let [.., a, b] = steps else { return false };
    match (a.percentile_us, b.percentile_us) {
        (Some(pa), Some(pb)) => {
            a.over_bound && b.over_bound && b.rate < a.rate && pb as f64 >= FLOOR_GAIN * pa as f64
        }
        _ => false,
    }
}

/// Halving the rate must bring the percentile under this share of what it
/// was, or the objective is taken to be under the light-load floor.
pub const FLOOR_GAIN: f64 = 0.8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, Percentiles};
    use proptest::prelude::*;

    /// A report of a step at `rate` against a server that meets the
    /// objective's bound exactly up to `capacity`.
    fn step(rate: f64, capacity: f64, p: f64) -> Report {
        // Over capacity the queue, and so the latency, grows with the excess.
        let value = if rate <= capacity {
            500
        } else {
            5_000 + ((rate / capacity - 1.0) * 1e5) as u64
        };
        let mut r = crate::report::tests::report(true);
        r.connections_completed = r.connections;
        (r.messages_sent, r.messages_verified) = (1000, 1000);
        r.msgs_per_sec = rate.min(capacity);
        r.latency_corrected_us = Some(Latency {
            count: 100_000,
            percentiles: Percentiles(vec![(p, value)]),
            ..Latency::default()
        });
        r
    }

    fn objective(s: &str) -> Objective {
        s.parse().unwrap()
    }

    #[test]
    fn objectives_parse_and_bad_ones_say_why() {
        let o = objective("p99<=1ms");
        assert_eq!(
            (o.percentile, o.bound_us, o.inclusive),
            (99.0, 1000.0, true)
        );
        assert_eq!(o.to_string(), "p99<=1ms");
        let o = objective(" p99.9 < 500us ");
        assert_eq!(
            (o.percentile, o.bound_us, o.inclusive),
            (99.9, 500.0, false)
        );
        for (bad, why) in [
            ("99<=1ms", "start with p"),
            ("p99=1ms", "no < or <="),
            ("pxx<=1ms", "not a number"),
            ("p100<=1ms", "below 100"),
            ("p0<=1ms", "above 0"),
            ("p99<=fast", "not a duration"),
            ("p99<=0s", "above 0"),
        ] {
            let e = bad.parse::<Objective>().unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
    }

    #[test]
    fn a_step_lasts_long_enough_for_its_percentile() {
        let (min, max) = (Duration::from_secs(2), Duration::from_secs(60));
        let p99 = objective("p99<=1ms");
        // 10,000 messages at 1,000/s: 10 s.
        assert_eq!(p99.step_duration(1000.0, min, max), Duration::from_secs(10));
        assert_eq!(p99.step_duration(1e6, min, max), min);
        assert_eq!(p99.step_duration(1.0, min, max), max);
    }

    #[test]
    fn the_objective_breaks_on_errors_and_unsent_messages_too() {
        let o = objective("p99<=1ms");
        assert!(o.judge(&step(10.0, 100.0, 99.0)).is_ok());
        let mut r = step(10.0, 100.0, 99.0);
        r.messages_unsent = 3;
        assert_eq!(o.judge(&r), Err(Broken::FellBehind(3)));
        let over = o.judge(&step(1000.0, 100.0, 99.0)).unwrap_err();
        assert!(
            matches!(over, Broken::OverBound { value: 905_000, .. }),
            "{over:?}"
        );
        assert_eq!(over.to_string(), "p99 was 905000 µs, over 1000 µs");
    }

    #[test]
    fn a_server_that_echoes_nothing_ends_the_search_at_once() {
        let plan = Plan {
            start: 1000.0,
            precision: 1.1,
            min_step: Duration::from_secs(1),
            max_step: Duration::from_secs(1),
        };
        let dead = |_rate: f64| {
            let mut r = crate::report::tests::report(true);
            r.connections_failed = r.connections;
            r.messages_verified = 0;
            r
        };
        let cap = search(&plan, &objective("p99<=1ms"), |rate, _| Ok(dead(rate))).unwrap();
        assert_eq!(cap.steps.len(), 1);
        assert!(cap.nothing_echoed);
        assert!(
            cap.summary().contains("no echo was verified (")
                && cap.summary().contains(&cap.steps[0].why.clone().unwrap()),
            "{}",
            cap.summary()
        );
    }

    #[test]
    fn an_interrupted_search_says_so_and_claims_no_upper_bound() {
        let plan = Plan {
            start: 1000.0,
            precision: 1.1,
            min_step: Duration::from_secs(1),
            max_step: Duration::from_secs(1),
        };
        let o = objective("p99<=1ms");
        // The first step holds; the second is cut short by a signal.
        let mut steps = 0;
        let cap = search(&plan, &o, |rate, _| {
            steps += 1;
            let mut r = step(rate, 1e9, 99.0);
            r.interrupted = steps > 1;
            Ok(r)
        })
        .unwrap();
        assert!(cap.interrupted);
        assert_eq!(cap.last_pass, Some(1000.0));
        let s = cap.summary();
        assert!(s.contains("search interrupted"), "{s}");
        assert!(s.contains("at least 1,000 msgs/s"), "{s}");
        assert!(!s.contains("no failing rate was reached"), "{s}");
    }

    #[test]
    fn a_capacity_that_no_rate_meets_is_reported_as_none() {
        let plan = Plan {
            start: 100.0,
            precision: 1.1,
            min_step: Duration::from_secs(1),
            max_step: Duration::from_secs(1),
        };
        let o = objective("p99<=1ms");
        // A floor: 5 ms at any rate.
        let floor = |rate: f64| {
            let mut r = step(rate, 1e9, 99.0);
            r.latency_corrected_us.as_mut().unwrap().percentiles = Percentiles(vec![(99.0, 5_000)]);
            r
        };
        let cap = search(&plan, &o, |rate, _| Ok(floor(rate))).unwrap();
        assert_eq!(cap.last_pass, None);
        // The percentile stayed put as the rate halved: two steps, not a
        // walk down to 1 msg/s.
        assert!(cap.below_floor);
        assert_eq!(cap.steps.len(), 2);
        assert!(cap.summary().contains("none found"), "{}", cap.summary());
        assert!(cap
            .summary()
            .contains("under this server's latency at light load"));
    }

    proptest! {
        /// Wherever the truth lies, the search brackets it within the
        /// precision asked, in a bounded number of steps.
        #[test]
        fn the_search_brackets_the_truth_within_its_precision(
            truth in 2.0f64..5e6,
            start in 1.0f64..1e6,
            precision in 1.01f64..2.0,
        ) {
            let plan = Plan {
                start,
                precision,
                min_step: Duration::from_secs(1),
                max_step: Duration::from_secs(1),
            };
            let o = objective("p99<=1ms");
            let cap = search(&plan, &o, |rate, _| Ok(step(rate, truth, 99.0))).unwrap();
            let (p, f) = (cap.last_pass.unwrap(), cap.first_fail.unwrap());
            prop_assert!(p <= truth && truth < f, "{p} {truth} {f}");
            prop_assert!(f / p <= precision * (1.0 + 1e-9), "{}", f / p);
            prop_assert!(cap.steps.len() < MAX_STEPS);
        }
    }
}
