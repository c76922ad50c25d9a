//! Latency as a report gives it: the percentiles read off a histogram, and
//! how each form shows a latency with nothing measured (JSON `null`, CSV
//! empty, text `-`).

use hdrhistogram::Histogram;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Percentiles asked for with `--percentiles`, as `(percentile, microseconds)`
/// in ascending order. In JSON, a map whose keys are the percentiles written
/// the shortest way (`"50"`, `"99.9"`, `"99.99"`, `"100"`), inside a
/// [`Latency`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Percentiles(pub Vec<(f64, u64)>);

impl Percentiles {
    /// The value for percentile `p`, if it was asked for.
    pub fn get(&self, p: f64) -> Option<u64> {
        self.0.iter().find(|(q, _)| *q == p).map(|(_, v)| *v)
    }
}

/// `99.9` → `"99.9"`, `50` → `"50"`: the key of a percentile in JSON and CSV.
pub fn percentile_key(p: f64) -> String {
    format!("{p}")
}

/// Latency in microseconds. With nothing measured (`count` 0) every figure
/// is `null` in JSON, empty in CSV and `-` in text: a zero would read as a
/// latency that was measured and was nothing.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The slowest message.
    pub max: u64,
    /// The fastest message.
    pub min: u64,
    /// The mean.
    pub mean: f64,
    /// Messages measured.
    pub count: u64,
    /// The percentiles asked for with `--percentiles` (empty if none were).
    pub percentiles: Percentiles,
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let measured = self.measured();
        let v = |x: u64| measured.then_some(x);
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("p50", &v(self.p50))?;
        m.serialize_entry("p90", &v(self.p90))?;
        m.serialize_entry("p99", &v(self.p99))?;
        m.serialize_entry("p999", &v(self.p999))?;
        m.serialize_entry("max", &v(self.max))?;
        m.serialize_entry("min", &v(self.min))?;
        m.serialize_entry("mean", &measured.then_some(self.mean))?;
        m.serialize_entry("count", &self.count)?;
        m.serialize_entry(
            "percentiles",
            &PercentilesShown {
                p: &self.percentiles,
                measured,
            },
        )?;
        m.end()
    }
}

/// [`Percentiles`] as the JSON gives them: `null` values with nothing measured.
struct PercentilesShown<'a> {
    p: &'a Percentiles,
    measured: bool,
}

impl Serialize for PercentilesShown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.p.0.len()))?;
        for (p, v) in &self.p.0 {
            m.serialize_entry(&percentile_key(*p), &self.measured.then_some(*v))?;
        }
        m.end()
    }
}

impl Latency {
    /// Whether any message was measured: without one there are no figures.
    pub fn measured(&self) -> bool {
        self.count > 0
    }

    /// Each figure as text: the number, or `-` with nothing measured.
    pub fn shown(&self, v: u64) -> String {
        if self.measured() {
            v.to_string()
        } else {
            "-".into()
        }
    }

    /// The figures of a histogram a thread creates on its first value
    /// (`None`: nothing was recorded), without extra percentiles.
    pub(super) fn of_recorded(h: Option<&Histogram<u64>>) -> Self {
        match h {
            Some(h) => Latency::from_histogram(h, &[]),
            None => Latency::from_histogram(&crate::stats::run_histogram(), &[]),
        }
    }

    /// Read the percentiles off a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>, asked: &[f64]) -> Self {
        if h.is_empty() {
            return Latency {
                percentiles: Percentiles(asked.iter().map(|p| (*p, 0)).collect()),
                ..Latency::default()
            };
        }
        let q = |p: f64| {
            if p >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(p / 100.0)
            }
        };
        Latency {
            p50: q(50.0),
            p90: q(90.0),
            p99: q(99.0),
            p999: q(99.9),
            max: h.max(),
            min: h.min(),
            mean: h.mean(),
            count: h.len(),
            percentiles: Percentiles(asked.iter().map(|p| (*p, q(*p))).collect()),
        }
    }

    /// The columns of the table and CSV: the fixed ones, then any asked for
    /// that are not among them.
    pub(super) fn columns(&self) -> Vec<(String, u64)> {
        let mut cols = vec![
            ("p50".to_string(), self.p50),
            ("p90".to_string(), self.p90),
            ("p99".to_string(), self.p99),
            ("p99.9".to_string(), self.p999),
        ];
        for (p, v) in &self.percentiles.0 {
            if ![50.0, 90.0, 99.0, 99.9].contains(p) {
                cols.push((format!("p{}", percentile_key(*p)), *v));
            }
        }
        cols.push(("max".to_string(), self.max));
        cols
    }
}
