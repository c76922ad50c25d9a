//! `--rate a,b,c --step D`: what each step of the rate carried, added up
//! from the series' intervals (which the configuration makes divide a step,
//! so no interval straddles two rates).

use crate::outcome::StepStat;
use crate::profile::Rate;
use crate::report::Latency;
use crate::series::Ready;
use crate::stats::run_histogram;
use hdrhistogram::Histogram;
use std::time::Duration;

/// The steps' figures as the series' intervals complete.
pub(crate) struct StepTally {
    rates: Vec<f64>,
    each: Duration,
    steps: Vec<Acc>,
}

/// One step, so far.
struct Acc {
    messages: u64,
    /// Where its last interval so far ends, from the start of measuring.
    to: Duration,
    raw: Histogram<u64>,
    corrected: Histogram<u64>,
}

impl StepTally {
    /// A tally for `rate` if it is steps; `None` for any other rate.
    pub fn new(rate: Option<&Rate>) -> Option<StepTally> {
        match rate? {
            Rate::Steps { rates, each } => Some(StepTally {
                rates: rates.clone(),
                each: *each,
                steps: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Add one interval to the step it lies in. After the last step its
    /// rate holds, and so does its row.
    pub fn add(&mut self, r: &Ready) {
        let index = (r.from.as_nanos() / self.each.as_nanos().max(1)) as usize;
        let index = index.min(self.rates.len() - 1);
        while self.steps.len() <= index {
            self.steps.push(Acc {
                messages: 0,
                to: self.each.saturating_mul(self.steps.len() as u32),
                raw: run_histogram(),
                corrected: run_histogram(),
            });
        }
        let acc = &mut self.steps[index];
        acc.messages += r.stat.messages;
        acc.to = acc.to.max(r.to);
        acc.raw.add(&r.raw).expect("same histogram bounds");
        if let Some(c) = &r.corrected {
            acc.corrected.add(c).expect("same histogram bounds");
        }
    }

    /// The rows, one per step that began, with the percentiles asked for.
    pub fn finish(self, percentiles: &[f64]) -> Vec<StepStat> {
        let each = self.each;
        self.steps
            .into_iter()
            .zip(&self.rates)
            .enumerate()
            .map(|(i, (acc, rate))| {
                let from = each.saturating_mul(i as u32);
                let secs = acc.to.saturating_sub(from).as_secs_f64();
                StepStat {
                    rate_asked: *rate,
                    from_s: from.as_secs_f64(),
                    to_s: acc.to.as_secs_f64(),
                    messages: acc.messages,
                    msgs_per_sec: if secs > 0.0 {
                        acc.messages as f64 / secs
                    } else {
                        0.0
                    },
                    latency_us: Latency::from_histogram(&acc.raw, percentiles),
                    latency_corrected_us: Latency::from_histogram(&acc.corrected, percentiles),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(from_ms: u64, to_ms: u64, values: &[u64]) -> Ready {
        let mut raw = run_histogram();
        for v in values {
            raw.record(*v).unwrap();
        }
        let corrected = Some(raw.clone());
        Ready::for_test(
            Duration::from_millis(from_ms),
            Duration::from_millis(to_ms),
            raw,
            corrected,
        )
    }

    #[test]
    fn intervals_add_up_to_their_steps_and_the_last_rate_holds() {
        let rate = Rate::Steps {
            rates: vec![100.0, 200.0],
            each: Duration::from_secs(2),
        };
        let mut t = StepTally::new(Some(&rate)).unwrap();
        t.add(&ready(0, 1000, &[10, 20]));
        t.add(&ready(1000, 2000, &[30]));
        t.add(&ready(2000, 3000, &[400]));
        // After the steps: the last rate held, in the last row.
        t.add(&ready(4000, 4500, &[500]));
        let rows = t.finish(&[]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].rate_asked, rows[0].messages), (100.0, 3));
        assert_eq!((rows[0].from_s, rows[0].to_s), (0.0, 2.0));
        assert_eq!(rows[0].msgs_per_sec, 1.5);
        assert!(rows[0].latency_us.max >= 30 && rows[0].latency_us.max < 31);
        assert_eq!((rows[1].rate_asked, rows[1].messages), (200.0, 2));
        assert_eq!((rows[1].from_s, rows[1].to_s), (2.0, 4.5));
        assert!(rows[1].latency_corrected_us.max >= 500);
    }

    #[test]
    fn only_steps_are_tallied() {
        assert!(StepTally::new(Some(&Rate::Fixed(5.0))).is_none());
        assert!(StepTally::new(None).is_none());
    }
}
