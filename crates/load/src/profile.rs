//! The open loop's rate: fixed, a linear ramp, or steps held in turn.
//!
//! [`Rate`] is what the user asked for (`--rate 1000`, `--rate 1000..50000
//! --ramp 30s`, `--rate 1000,5000,20000 --step 10s`); [`Profile`] is its
//! arithmetic. The open loop's message `i` is due when the integral of the
//! rate from the start reaches `i`, so a ramp's sends are exact instants, not
//! a rate re-sampled per interval. Connection `c` keeps the global slots
//! `c + j·C`, as with a fixed rate. The warm-up runs at the first rate, and
//! the ramp or the first step begins where measuring does; after the last
//! part, its final rate holds.

use std::time::Duration;

/// The rate an open loop asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// The same rate throughout, in messages per second.
    Fixed(f64),
    /// From `from` to `to` messages per second, linearly, over `over`.
    Ramp {
        /// The rate when measuring begins (and during the warm-up).
        from: f64,
        /// The rate at the end of the ramp.
        to: f64,
        /// How long the ramp lasts.
        over: Duration,
    },
    /// Each rate in turn, each held for `each`.
    Steps {
        /// The rates, in messages per second, in order.
        rates: Vec<f64>,
        /// How long each is held.
        each: Duration,
    },
}

impl Rate {
    /// Every rate named, in order.
    pub fn rates(&self) -> Vec<f64> {
        match self {
            Rate::Fixed(r) => vec![*r],
            Rate::Ramp { from, to, .. } => vec![*from, *to],
            Rate::Steps { rates, .. } => rates.clone(),
        }
    }

    /// The rate of a fixed open loop; `None` for a ramp or steps.
    pub fn fixed(&self) -> Option<f64> {
        match self {
            Rate::Fixed(r) => Some(*r),
            _ => None,
        }
    }

    /// How long the ramp or the steps take; `None` for a fixed rate.
    pub fn length(&self) -> Option<Duration> {
        match self {
            Rate::Fixed(_) => None,
            Rate::Ramp { over, .. } => Some(*over),
            Rate::Steps { rates, each } => Some(each.saturating_mul(rates.len() as u32)),
        }
    }

    /// The schedule's arithmetic, from the start of the warm-up: the first
    /// rate for `warmup`, then the ramp or the steps. `None` unless every
    /// rate is finite and positive and every length above zero.
    pub fn profile(&self, warmup: Duration) -> Option<Profile> {
        let held = |r: f64, length: Duration| Segment {
            from: r,
            to: r,
            length,
        };
        let mut segments = Vec::new();
        let first = *self.rates().first()?;
        if !warmup.is_zero() {
            segments.push(held(first, warmup));
        }
        match self {
            Rate::Fixed(r) => segments.push(held(*r, Duration::from_secs(1))),
            Rate::Ramp { from, to, over } => segments.push(Segment {
                from: *from,
                to: *to,
                length: *over,
            }),
            Rate::Steps { rates, each } => segments.extend(rates.iter().map(|r| held(*r, *each))),
        }
        Profile::new(segments)
    }
}

/// One part of a profile: the rate goes linearly from `from` to `to`
/// (messages/s) over `length`. A step has `from == to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// The rate at the segment's start.
    pub from: f64,
    /// The rate at the segment's end.
    pub to: f64,
    /// How long the segment lasts.
    pub length: Duration,
}

impl Segment {
    /// Messages due within the first `t` seconds of the segment.
    fn count(&self, t: f64) -> f64 {
        let len = self.length.as_secs_f64();
        self.from * t + (self.to - self.from) * t * t / (2.0 * len)
    }

    /// The time into the segment at which `k` messages have become due
    /// (`k` at most the segment's count). Solves
    /// `from·t + (to-from)·t²/(2·len) = k` in the form that does not cancel.
    fn time_of(&self, k: f64) -> f64 {
        let len = self.length.as_secs_f64();
        let a = (self.to - self.from) / (2.0 * len);
        if a == 0.0 {
            return k / self.from;
        }
        let disc = (self.from * self.from + 4.0 * a * k).max(0.0);
        2.0 * k / (self.from + disc.sqrt())
    }
}

/// A sequence of segments; after the last, its final rate holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    segments: Vec<Segment>,
}

impl Profile {
    /// `None` unless there is a segment, every rate is finite and positive,
    /// and every length is above zero.
    pub fn new(segments: Vec<Segment>) -> Option<Profile> {
        let ok = !segments.is_empty()
            && segments.iter().all(|s| {
                s.from.is_finite()
                    && s.to.is_finite()
                    && s.from > 0.0
                    && s.to > 0.0
                    && !s.length.is_zero()
            });
        ok.then_some(Profile { segments })
    }

    /// Messages due in `[0, t)` as a real number: the integral of the rate.
    pub fn integral(&self, t: Duration) -> f64 {
        let mut left = t.as_secs_f64();
        let mut n = 0.0;
        for s in &self.segments {
            let len = s.length.as_secs_f64();
            if left <= len {
                return n + s.count(left);
            }
            n += s.count(len);
            left -= len;
        }
        n + self.segments.last().map_or(0.0, |s| s.to) * left
    }

    /// When global message `i` (from 0) is due, from the start of the run.
    pub fn offset_of_slot(&self, i: u64) -> Duration {
        let mut k = i as f64;
        let mut start = 0.0;
        for s in &self.segments {
            let len = s.length.as_secs_f64();
            let whole = s.count(len);
            if k <= whole {
                return Duration::from_secs_f64(start + s.time_of(k).min(len));
            }
            k -= whole;
            start += len;
        }
        let last = self.segments.last().map_or(1.0, |s| s.to);
        Duration::from_secs_f64(start + k / last)
    }

    /// Whether the rate is the same throughout.
    pub fn is_constant(&self) -> bool {
        let r = self.segments[0].from;
        self.segments.iter().all(|s| s.from == r && s.to == r)
    }

    /// The rate in force at `t`.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut left = t.as_secs_f64();
        for s in &self.segments {
            let len = s.length.as_secs_f64();
            if left < len {
                return s.from + (s.to - s.from) * left / len;
            }
            left -= len;
        }
        self.segments.last().map_or(0.0, |s| s.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ramp(from: f64, to: f64, secs: f64) -> Profile {
        Profile::new(vec![Segment {
            from,
            to,
            length: Duration::from_secs_f64(secs),
        }])
        .unwrap()
    }

    #[test]
    fn a_constant_rate_is_the_plain_schedule() {
        let p = ramp(1000.0, 1000.0, 10.0);
        assert_eq!(p.offset_of_slot(2500), Duration::from_secs_f64(2.5));
    }

    #[test]
    fn a_ramp_ends_with_its_integral() {
        // 1000 → 3000 over 10 s: 20,000 messages, the last due at 10 s.
        let p = ramp(1000.0, 3000.0, 10.0);
        let t = p.offset_of_slot(20_000).as_secs_f64();
        assert!((t - 10.0).abs() < 1e-6, "{t}");
        assert!((p.rate_at(Duration::from_secs(5)) - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn a_zero_rate_is_refused() {
        assert!(Profile::new(vec![Segment {
            from: 0.0,
            to: 5.0,
            length: Duration::from_secs(1)
        }])
        .is_none());
        assert!(Profile::new(vec![]).is_none());
    }

    proptest! {
        /// The sends due in any window match the rate's integral within one.
        #[test]
        fn the_count_in_any_window_matches_the_integral(
            rates in proptest::collection::vec(1.0f64..50_000.0, 2..5),
            lens in proptest::collection::vec(0.05f64..3.0, 4),
            a in 0.0f64..8.0,
            w in 0.0f64..4.0,
        ) {
            let segs: Vec<Segment> = rates.windows(2).zip(&lens).map(|(r, l)| Segment {
                from: r[0], to: r[1], length: Duration::from_secs_f64(*l),
            }).collect();
            let p = Profile::new(segs).unwrap();
            let (lo, hi) = (Duration::from_secs_f64(a), Duration::from_secs_f64(a + w));
            let first = p.integral(lo).floor() as u64;
            let mut i = first.saturating_sub(2);
            while p.offset_of_slot(i) < lo { i += 1; }
            let mut n = 0u64;
            while p.offset_of_slot(i + n) < hi { n += 1; }
            let want = p.integral(hi) - p.integral(lo);
            prop_assert!((n as f64 - want).abs() <= 1.0, "{n} sends, integral {want}");
        }
    }
}
