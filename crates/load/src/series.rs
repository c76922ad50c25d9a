//! The per-interval series (`--interval`, `--hdr-log`, ramps and steps):
//! each load thread records its current interval and hands it over when it
//! ends; the series merges the threads' intervals and gives out each one
//! once every thread has handed it over.

use crate::outcome::IntervalStat;
use crate::schedule::Schedule;
use crate::stats::{interval_histogram, MAX_US};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Record `us` in an interval histogram, clamped as the run histogram clamps it.
fn record_interval(h: &mut Histogram<u64>, us: u64) {
    h.record(us.min(MAX_US))
        .expect("an auto-resizing histogram takes any value up to MAX_US");
}

/// One thread's current interval.
pub(crate) struct IntervalRecorder {
    series: Arc<Series>,
    thread: usize,
    measure_start: Instant,
    index: u64,
    messages: u64,
    raw: Histogram<u64>,
    corrected: Option<Histogram<u64>>,
}

impl IntervalRecorder {
    pub(crate) fn new(series: Arc<Series>, thread: usize, measure_start: Instant) -> Self {
        let corrected = series.open_loop.then(interval_histogram);
        IntervalRecorder {
            series,
            thread,
            measure_start,
            index: 0,
            messages: 0,
            raw: interval_histogram(),
            corrected,
        }
    }

    fn index_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.measure_start);
        (since.as_nanos() / self.series.len.as_nanos()) as u64
    }

    pub(crate) fn record(&mut self, now: Instant, raw: u64, corrected: Option<u64>) {
        self.tick(now);
        self.messages += 1;
        record_interval(&mut self.raw, raw);
        if let (Some(h), Some(us)) = (self.corrected.as_mut(), corrected) {
            record_interval(h, us);
        }
    }

    pub(crate) fn tick(&mut self, now: Instant) {
        let index = self.index_at(now);
        if index > self.index {
            self.hand_over(index);
        }
    }

    /// Give the current interval to the series; everything before `next` is then reported.
    fn hand_over(&mut self, next: u64) {
        self.hand_over_as(next, false);
    }

    /// The same; `last` also marks this thread done, under the same lock,
    /// so the series never sees its last interval as complete in between.
    fn hand_over_as(&mut self, next: u64, last: bool) {
        self.series.report(
            self.thread,
            self.index,
            (self.messages, &self.raw, self.corrected.as_ref()),
            next,
            last,
        );
        self.index = next;
        self.messages = 0;
        self.raw.reset();
        if let Some(h) = self.corrected.as_mut() {
            h.reset();
        }
    }

    pub(crate) fn finish(mut self) {
        let next = self.index + 1;
        self.hand_over_as(next, true);
    }
}

/// The per-interval series, merged across threads while the run goes on.
pub(crate) struct Series {
    len: Duration,
    open_loop: bool,
    /// Open loop: the schedule, and the warm-up before the series' start.
    schedule: Option<(Schedule, Duration)>,
    state: Mutex<SeriesState>,
    changed: Condvar,
}

struct Slot {
    messages: u64,
    raw: Histogram<u64>,
    corrected: Option<Histogram<u64>>,
}

struct SeriesState {
    /// Slots from index `emitted` on.
    slots: VecDeque<Slot>,
    emitted: u64,
    /// Per thread: every interval before this one has been handed over.
    reported_upto: Vec<u64>,
    done: Vec<bool>,
}

impl Series {
    /// A series of intervals `len` long over `threads`; `schedule`: an open
    /// loop's, and the warm-up that precedes the first interval.
    pub fn new(
        len: Duration,
        threads: usize,
        schedule: Option<(Schedule, Duration)>,
    ) -> Arc<Series> {
        Arc::new(Series {
            len,
            open_loop: schedule.is_some(),
            schedule,
            state: Mutex::new(SeriesState {
                slots: VecDeque::new(),
                emitted: 0,
                reported_upto: vec![0; threads],
                done: vec![false; threads],
            }),
            changed: Condvar::new(),
        })
    }

    fn report(
        &self,
        thread: usize,
        index: u64,
        (messages, raw, corrected): (u64, &Histogram<u64>, Option<&Histogram<u64>>),
        upto: u64,
        last: bool,
    ) {
        let mut s = self.state.lock().expect("series lock");
        if index >= s.emitted {
            let at = (index - s.emitted) as usize;
            while s.slots.len() <= at {
                s.slots.push_back(Slot {
                    messages: 0,
                    raw: interval_histogram(),
                    corrected: self.open_loop.then(interval_histogram),
                });
            }
            let slot = &mut s.slots[at];
            slot.messages += messages;
            slot.raw.add(raw).expect("same histogram bounds");
            if let (Some(h), Some(c)) = (slot.corrected.as_mut(), corrected) {
                h.add(c).expect("same histogram bounds");
            }
        }
        s.reported_upto[thread] = s.reported_upto[thread].max(upto);
        if last {
            s.done[thread] = true;
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Wait up to `timeout` for a change.
    pub fn wait(&self, timeout: Duration) {
        let s = self.state.lock().expect("series lock");
        let _ = self.changed.wait_timeout(s, timeout);
    }

    /// Every interval that all threads have handed over and not yet taken.
    /// With `end` (the measured length of the run, once every thread is
    /// done) the last, partial interval is taken too and ends there.
    pub fn take_ready(&self, end: Option<Duration>) -> Vec<Ready> {
        let mut s = self.state.lock().expect("series lock");
        let bound = match end {
            Some(_) => s.emitted + s.slots.len() as u64,
            // Once every thread is done, the last slot is the partial one:
            // it waits for the final call, which knows where the run ended.
            None => s
                .reported_upto
                .iter()
                .zip(&s.done)
                .filter(|(_, d)| !**d)
                .map(|(u, _)| *u)
                .min()
                .unwrap_or(s.emitted + (s.slots.len() as u64).saturating_sub(1)),
        };
        let mut out = Vec::new();
        while s.emitted < bound {
            let index = s.emitted;
            let slot = s.slots.pop_front();
            s.emitted += 1;
            let from = self.len.mul_f64(index as f64);
            let mut to = self.len.mul_f64((index + 1) as f64);
            if let Some(e) = end {
                to = to.min(e.max(from));
            }
            out.push(self.ready(from, to, slot));
        }
        out
    }

    /// One interval, from `from` to `to` after the start of measuring, as
    /// the row of the series and the histograms behind it.
    fn ready(&self, from: Duration, to: Duration, slot: Option<Slot>) -> Ready {
        let slot = slot.unwrap_or_else(|| Slot {
            messages: 0,
            raw: interval_histogram(),
            corrected: self.open_loop.then(interval_histogram),
        });
        let secs = (to - from).as_secs_f64();
        let stat = IntervalStat {
            t: to.as_secs_f64(),
            messages: slot.messages,
            msgs_per_sec: if secs > 0.0 {
                slot.messages as f64 / secs
            } else {
                0.0
            },
            rate_asked: self
                .schedule
                .as_ref()
                .map(|(s, warmup)| s.rate_between(*warmup + from, *warmup + to)),
            p99_us: (!slot.raw.is_empty()).then(|| quantile(&slot.raw, 0.99)),
            p99_corrected_us: slot
                .corrected
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| quantile(h, 0.99)),
        };
        Ready {
            stat,
            from,
            to,
            raw: slot.raw,
            corrected: slot.corrected,
        }
    }
}

/// One interval of the series, complete: its row and its histograms.
pub(crate) struct Ready {
    pub stat: IntervalStat,
    /// Where the interval starts and ends, from the start of measuring.
    pub from: Duration,
    pub to: Duration,
    /// Latency from send, and (open loop) from schedule, in microseconds.
    pub raw: Histogram<u64>,
    pub corrected: Option<Histogram<u64>>,
}

#[cfg(test)]
impl Ready {
    /// An interval from `from` to `to`, its row only counting `raw`'s
    /// messages, for tests of what consumes intervals.
    pub(crate) fn for_test(
        from: Duration,
        to: Duration,
        raw: Histogram<u64>,
        corrected: Option<Histogram<u64>>,
    ) -> Ready {
        Ready {
            stat: IntervalStat {
                t: to.as_secs_f64(),
                messages: raw.len(),
                msgs_per_sec: 0.0,
                rate_asked: None,
                p99_us: None,
                p99_corrected_us: None,
            },
            from,
            to,
            raw,
            corrected,
        }
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::run_histogram;

    #[test]
    fn a_row_waits_for_every_thread_then_merges_them() {
        let series = Series::new(Duration::from_secs(1), 2, None);
        let t = Instant::now();
        let mut a = IntervalRecorder::new(series.clone(), 0, t);
        let mut b = IntervalRecorder::new(series.clone(), 1, t);
        a.record(t + Duration::from_millis(10), 100, None);
        a.tick(t + Duration::from_millis(1500));
        assert!(
            series.take_ready(None).is_empty(),
            "thread 1 has not handed interval 0 over"
        );
        b.record(t + Duration::from_millis(20), 300, None);
        b.tick(t + Duration::from_millis(2500));
        let rows: Vec<_> = series
            .take_ready(None)
            .into_iter()
            .map(|r| r.stat)
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].messages, 2);
        assert_eq!(rows[0].t, 1.0);
        assert!(rows[0].p99_us.unwrap() >= 299, "{:?}", rows[0]);
        a.finish();
        b.finish();
        // Interval 1 was empty; interval 2 is the partial last one, cut at 2.25 s.
        let rows: Vec<_> = series
            .take_ready(Some(Duration::from_millis(2250)))
            .into_iter()
            .map(|r| r.stat)
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].messages, 0);
        assert_eq!(rows[1].t, 2.25);
    }

    #[test]
    fn an_interval_histogram_grows_only_as_far_as_its_slowest_value() {
        let kib = |h: &Histogram<u64>| h.distinct_values() * 8 / 1024;
        let mut h = interval_histogram();
        record_interval(&mut h, 10_000);
        assert!(kib(&h) <= 40, "10 ms: {} KiB", kib(&h));
        record_interval(&mut h, 1_000_000);
        assert!(kib(&h) <= 90, "1 s: {} KiB", kib(&h));
        record_interval(&mut h, u64::MAX);
        assert!(kib(&h) <= 184, "clamped to an hour: {} KiB", kib(&h));
        assert_eq!(h.max(), run_histogram().highest_equivalent(MAX_US));
    }

    #[test]
    fn a_finished_thread_does_not_hold_rows_back() {
        let series = Series::new(
            Duration::from_millis(100),
            2,
            Schedule::new(100.0, 2).map(|s| (s, Duration::ZERO)),
        );
        let t = Instant::now();
        let a = IntervalRecorder::new(series.clone(), 0, t);
        let mut b = IntervalRecorder::new(series.clone(), 1, t);
        a.finish();
        b.record(t + Duration::from_millis(50), 10, Some(20));
        b.tick(t + Duration::from_millis(350));
        let rows: Vec<_> = series
            .take_ready(None)
            .into_iter()
            .map(|r| r.stat)
            .collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].messages, 1);
        assert!(rows[0].p99_corrected_us.unwrap() >= 19);
    }
}
