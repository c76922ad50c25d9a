//! When each message is due, and which part of the run it belongs to.
//!
//! This is the pure part of the workload, shared by both engines so that they
//! run the same experiment: given the clock and a connection's progress, say
//! whether to send now, wait until a given instant, or stop.
//!
//! Open loop (`--rate R`): message `i` of the whole run is due at
//! `t0 + i/R` and goes to connection `i mod C`. So connection `c` sends its
//! `j`-th message at `t0 + (c + j·C)/R`: every connection has a period of
//! `C/R`, offset by `c/R`, and the union over all connections is exactly the
//! global schedule, even when `R` is below `C` (a connection then simply
//! waits longer than the run for its turn). Latency is measured from that
//! intended instant, so a server that stalls is charged for every message it
//! delayed, not only the one it was holding (coordinated omission). A ramp or
//! steps (`crate::profile`) keep the same slots; only their instants follow
//! the changing rate.

use crate::profile::{Profile, Rate};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The open-loop schedule: messages due over `connections`, at a fixed rate
/// or one that changes over the run (a ramp, steps).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pace: Pace,
    connections: u64,
}

/// How fast messages fall due.
#[derive(Debug, Clone, PartialEq)]
enum Pace {
    /// Message `i` is due at `i/R`, exactly.
    Fixed(f64),
    /// Message `i` is due where the profile's integral reaches `i`.
    Varying(Arc<Profile>),
}

impl Schedule {
    /// A schedule of `rate` messages/s in total; `None` unless the rate is
    /// finite and positive and there is a connection.
    pub fn new(rate: f64, connections: u64) -> Option<Schedule> {
        (rate.is_finite() && rate > 0.0 && connections > 0).then_some(Schedule {
            pace: Pace::Fixed(rate),
            connections,
        })
    }

    /// The schedule of `rate` for a run whose warm-up lasts `warmup` (at the
    /// first rate; a ramp or the steps begin where measuring does).
    pub fn of(rate: &Rate, warmup: Duration, connections: u64) -> Option<Schedule> {
        match rate {
            Rate::Fixed(r) => Schedule::new(*r, connections),
            _ => (connections > 0).then_some(Schedule {
                pace: Pace::Varying(Arc::new(rate.profile(warmup)?)),
                connections,
            }),
        }
    }

    /// The global index of connection `conn`'s message `j` (both from 0).
    pub fn slot(&self, conn: u64, j: u64) -> u64 {
        conn + j * self.connections
    }

    /// When global message `i` is due, from the start of the run.
    pub fn offset_of_slot(&self, i: u64) -> Duration {
        match &self.pace {
            Pace::Fixed(r) => Duration::from_secs_f64(i as f64 / r),
            Pace::Varying(p) => p.offset_of_slot(i),
        }
    }

    /// When connection `conn`'s message `j` is due, from the start of the run.
    pub fn offset(&self, conn: u64, j: u64) -> Duration {
        self.offset_of_slot(self.slot(conn, j))
    }

    /// Messages due in `[0, t)` from the start of the run, as a real number.
    fn due_by(&self, t: Duration) -> f64 {
        match &self.pace {
            Pace::Fixed(r) => t.as_secs_f64() * r,
            Pace::Varying(p) => p.integral(t),
        }
    }

    /// The rate the schedule asks between `from` and `to` (from the start of
    /// the run), in messages per second over all connections: what an
    /// interval of the series was asked to carry.
    pub fn rate_between(&self, from: Duration, to: Duration) -> f64 {
        match &self.pace {
            Pace::Fixed(r) => *r,
            Pace::Varying(p) if to > from => {
                (p.integral(to) - p.integral(from)) / (to - from).as_secs_f64()
            }
            Pace::Varying(p) => p.rate_at(from),
        }
    }

    /// Whether the rate changes over the run.
    pub fn varies(&self) -> bool {
        matches!(&self.pace, Pace::Varying(p) if !p.is_constant())
    }

    /// The first `j` of connection `conn` whose offset is at or after `limit`.
    pub fn first_at_or_after(&self, conn: u64, limit: Duration) -> u64 {
        let x = self.due_by(limit);
        let mut j = if (conn as f64) >= x {
            0
        } else {
            ((x - conn as f64) / self.connections as f64).ceil() as u64
        };
        // The estimate is within one of the answer; settle it with the very
        // comparison `offset` makes, so the two can never disagree.
        while j > 0 && self.offset(conn, j - 1) >= limit {
            j -= 1;
        }
        while self.offset(conn, j) < limit {
            j += 1;
        }
        j
    }
}

/// The instants that divide a run: start, end of warm-up, end of sending.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// When the connections were all open and sending began.
    pub t0: Instant,
    /// The end of the warm-up: messages due before it are not measured.
    pub measure_start: Instant,
    /// No message due at or after this is sent (duration runs only).
    pub end: Option<Instant>,
}

impl Clock {
    /// The clock of a run that starts at `t0`.
    pub fn new(t0: Instant, warmup: Duration, duration: Option<Duration>) -> Clock {
        let measure_start = t0 + warmup;
        Clock {
            t0,
            measure_start,
            end: duration.map(|d| measure_start + d),
        }
    }
}

/// What one run asks of every connection.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The run's clock.
    pub clock: Clock,
    /// The open-loop schedule, or `None` for a closed loop.
    pub schedule: Option<Schedule>,
    /// Measured messages per connection, or `None` to run until `clock.end`.
    pub count: Option<u64>,
    /// Once triggered, every connection is finished: nothing more is sent.
    pub interrupt: crate::Interrupt,
}

impl Workload {
    /// When a connection that has done all it was asked finished its
    /// exchange: now, except in a duration run, where an idle connection's
    /// exchange ends with the window (its thread notices a sweep or a nap
    /// later), and one with echoes still owed at the end ends with its last
    /// one. So the measured run is never stretched by how late a thread
    /// looked. Both engines ask this.
    pub fn exchange_end(&self, last_verified: Option<Instant>) -> Instant {
        let now = Instant::now();
        match self.clock.end {
            Some(end) if now > end => last_verified.map_or(end, |v| v.max(end)).min(now),
            _ => now,
        }
    }

    /// The measured messages the run asks of connection `conn`: the count,
    /// or in an open-loop duration run the slots due in the measured window.
    /// `None` for a closed-loop duration run, which asks for no number.
    pub fn asked(&self, conn: u64) -> Option<u64> {
        if let Some(n) = self.count {
            return Some(n);
        }
        let (s, end) = (self.schedule.as_ref()?, self.clock.end?);
        let from = s.first_at_or_after(conn, self.clock.measure_start - self.clock.t0);
        let to = s.first_at_or_after(conn, end - self.clock.t0);
        Some(to.saturating_sub(from))
    }
}

/// One connection's place in the workload.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The connection, from 0.
    pub conn: u64,
    /// Open loop: the next slot `j` not yet sent.
    pub next_slot: u64,
    /// Measured messages handed out so far.
    pub measured: u64,
    /// Messages handed out so far, warm-up included.
    pub sent: u64,
}

/// What a connection should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send a message now. `intended` is when it was due (now, in a closed loop).
    Send {
        /// When the message was due.
        intended: Instant,
        /// False for a warm-up message.
        measured: bool,
    },
    /// Nothing is due before this instant.
    Wait(Instant),
    /// This connection is done sending. `unsent` counts measured messages
    /// that were due before the end but could not be sent by then (the
    /// server fell behind the rate); they are reported, never silently lost.
    Finished {
        /// Due but never sent.
        unsent: u64,
    },
}

impl Plan {
    /// The plan of connection `conn` (from 0).
    pub fn new(conn: u64) -> Plan {
        Plan {
            conn,
            ..Plan::default()
        }
    }

    /// Decide what to do at `now`. A `Send` is taken: the next call moves on.
    pub fn next(&mut self, w: &Workload, now: Instant) -> Next {
        if w.interrupt.is_triggered() {
            // Stopped from outside: what was not sent is neither unsent
            // (the server did not fall behind) nor lost; the report says
            // the run was interrupted.
            return Next::Finished { unsent: 0 };
        }
        let intended = match &w.schedule {
            None => now,
            Some(s) => w.clock.t0 + s.offset(self.conn, self.next_slot),
        };
        let measured = intended >= w.clock.measure_start;
        if measured && w.count.is_some_and(|n| self.measured >= n) {
            return Next::Finished { unsent: 0 };
        }
        if let Some(end) = w.clock.end {
            if intended >= end {
                // Nothing more is due in the window, but the window is not
                // over: a connection stays open and served until it is.
                return if now >= end {
                    Next::Finished { unsent: 0 }
                } else {
                    Next::Wait(end)
                };
            }
            if let Some(s) = &w.schedule {
                if now >= end {
                    // Due before the end, but the end has passed: sending now
                    // would stretch the run past its length.
                    let from = self
                        .next_slot
                        .max(s.first_at_or_after(self.conn, w.clock.measure_start - w.clock.t0));
                    let to = s.first_at_or_after(self.conn, end - w.clock.t0);
                    self.next_slot = to;
                    return Next::Finished {
                        unsent: to.saturating_sub(from),
                    };
                }
            }
        }
        if intended > now {
            return Next::Wait(intended);
        }
        self.next_slot += 1;
        self.sent += 1;
        if measured {
            self.measured += 1;
        }
        Next::Send { intended, measured }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `first_at_or_after` is the first of `conn`'s messages due at or after
    /// the limit: the one before it is due earlier. Returns it.
    fn boundary(s: &Schedule, conn: u64, limit_us: u64) -> Result<u64, TestCaseError> {
        let limit = Duration::from_micros(limit_us);
        let j = s.first_at_or_after(conn, limit);
        prop_assert!(s.offset(conn, j) >= limit);
        if j > 0 {
            prop_assert!(s.offset(conn, j - 1) < limit);
        }
        Ok(j)
    }

    #[test]
    fn a_rate_below_the_connection_count_spreads_one_message_each() {
        // 10 msg/s over 100 connections: connection c's first message is at c/10 s.
        let s = Schedule::new(10.0, 100).unwrap();
        assert_eq!(s.offset(0, 0), Duration::ZERO);
        assert_eq!(s.offset(37, 0), Duration::from_secs_f64(3.7));
        assert_eq!(s.offset(37, 1), Duration::from_secs_f64(13.7));
        // Within a 2 s run, connection 5 sends once (at 0.5 s), connection 37 never.
        assert_eq!(s.first_at_or_after(5, Duration::from_secs(2)), 1);
        assert_eq!(s.first_at_or_after(37, Duration::from_secs(2)), 0);
    }

    #[test]
    fn nonsense_rates_have_no_schedule() {
        assert!(Schedule::new(0.0, 1).is_none());
        assert!(Schedule::new(-1.0, 1).is_none());
        assert!(Schedule::new(f64::NAN, 1).is_none());
        assert!(Schedule::new(1.0, 0).is_none());
    }

    #[test]
    fn closed_loop_counts_only_messages_after_the_warmup() {
        let t0 = Instant::now();
        let w = Workload {
            interrupt: crate::Interrupt::new(),
            clock: Clock::new(t0, ms(100), None),
            schedule: None,
            count: Some(2),
        };
        let mut p = Plan::new(0);
        assert_eq!(
            p.next(&w, t0),
            Next::Send {
                intended: t0,
                measured: false
            }
        );
        assert_eq!(
            p.next(&w, t0 + ms(50)),
            Next::Send {
                intended: t0 + ms(50),
                measured: false
            }
        );
        let later = t0 + ms(100);
        assert_eq!(
            p.next(&w, later),
            Next::Send {
                intended: later,
                measured: true
            }
        );
        assert_eq!(
            p.next(&w, later),
            Next::Send {
                intended: later,
                measured: true
            }
        );
        assert_eq!(p.next(&w, later), Next::Finished { unsent: 0 });
        assert_eq!(p.sent, 4);
    }

    #[test]
    fn closed_loop_stops_at_the_end() {
        let t0 = Instant::now();
        let w = Workload {
            interrupt: crate::Interrupt::new(),
            clock: Clock::new(t0, Duration::ZERO, Some(ms(10))),
            schedule: None,
            count: None,
        };
        let mut p = Plan::new(3);
        assert!(matches!(
            p.next(&w, t0 + ms(9)),
            Next::Send { measured: true, .. }
        ));
        assert_eq!(p.next(&w, t0 + ms(10)), Next::Finished { unsent: 0 });
    }

    #[test]
    fn open_loop_waits_for_the_due_time_then_sends_late_messages_at_once() {
        let t0 = Instant::now();
        let w = Workload {
            interrupt: crate::Interrupt::new(),
            clock: Clock::new(t0, Duration::ZERO, None),
            schedule: Schedule::new(100.0, 2),
            count: Some(3),
        };
        // Connection 1: slots 1, 3, 5 → 10 ms, 30 ms, 50 ms.
        let mut p = Plan::new(1);
        assert_eq!(p.next(&w, t0), Next::Wait(t0 + ms(10)));
        // Late by 35 ms: both overdue messages go now, each with its own due time.
        assert_eq!(
            p.next(&w, t0 + ms(45)),
            Next::Send {
                intended: t0 + ms(10),
                measured: true
            }
        );
        assert_eq!(
            p.next(&w, t0 + ms(45)),
            Next::Send {
                intended: t0 + ms(30),
                measured: true
            }
        );
        assert_eq!(p.next(&w, t0 + ms(45)), Next::Wait(t0 + ms(50)));
        assert!(matches!(p.next(&w, t0 + ms(50)), Next::Send { .. }));
        assert_eq!(p.next(&w, t0 + ms(60)), Next::Finished { unsent: 0 });
    }

    #[test]
    fn open_loop_reports_what_it_could_not_send_before_the_end() {
        let t0 = Instant::now();
        let w = Workload {
            interrupt: crate::Interrupt::new(),
            clock: Clock::new(t0, ms(20), Some(ms(100))),
            schedule: Schedule::new(100.0, 1),
            count: None,
        };
        // One connection at 100/s: due every 10 ms; warm-up 0..20 ms, measured 20..120 ms.
        let mut p = Plan::new(0);
        assert!(matches!(
            p.next(&w, t0),
            Next::Send {
                measured: false,
                ..
            }
        ));
        // Stuck until after the end: slots 1 (warm-up) to 11 were due and never sent;
        // of those, slots 2..=11 were measured ones.
        assert_eq!(p.next(&w, t0 + ms(500)), Next::Finished { unsent: 10 });
        assert_eq!(p.next(&w, t0 + ms(500)), Next::Finished { unsent: 0 });
    }

    proptest! {
        #[test]
        fn the_connections_together_follow_the_global_schedule(rate in 0.5f64..1e6, conns in 1u64..500, i in 0u64..1_000_000) {
            let s = Schedule::new(rate, conns).unwrap();
            let (c, j) = (i % conns, i / conns);
            prop_assert_eq!(s.slot(c, j), i);
            prop_assert_eq!(s.offset(c, j), Duration::from_secs_f64(i as f64 / rate));
            // Each connection's messages are C/R apart, in order.
            prop_assert!(s.offset(c, j + 1) > s.offset(c, j));
        }

        #[test]
        fn first_at_or_after_is_the_boundary(rate in 0.5f64..1e5, conns in 1u64..300, conn_pick: u64, limit_us in 0u64..100_000_000) {
            boundary(&Schedule::new(rate, conns).unwrap(), conn_pick % conns, limit_us)?;
        }

        /// The same boundary, and the same slots in order, when the rate
        /// ramps or steps after a warm-up.
        #[test]
        fn first_at_or_after_is_the_boundary_of_a_changing_rate(
            from in 1.0f64..5e4, to in 1.0f64..5e4, steps in proptest::bool::ANY,
            conns in 1u64..300, conn_pick: u64, warm_ms in 0u64..2000, limit_us in 0u64..20_000_000,
        ) {
            let length = Duration::from_secs(3);
            let rate = if steps {
                Rate::Steps { rates: vec![from, to, from], each: length }
            } else {
                Rate::Ramp { from, to, over: length }
            };
            let s = Schedule::of(&rate, ms(warm_ms), conns).unwrap();
            let j = boundary(&s, conn_pick % conns, limit_us)?;
            prop_assert!(s.offset(conn_pick % conns, j + 1) > s.offset(conn_pick % conns, j));
            // The warm-up runs at the first rate, exactly.
            prop_assert!((s.rate_between(Duration::ZERO, ms(warm_ms)) - from).abs() < 1e-6 * from || warm_ms == 0);
        }

        #[test]
        fn a_closed_loop_with_a_count_sends_exactly_the_count(count in 0u64..50, warm in 0u64..50) {
            let t0 = Instant::now();
            let w = Workload { interrupt: crate::Interrupt::new(), clock: Clock::new(t0, ms(warm), None), schedule: None, count: Some(count) };
            let mut p = Plan::new(0);
            let mut measured = 0;
            for step in 0..200u64 {
                match p.next(&w, t0 + ms(step)) {
                    Next::Send { measured: m, .. } => measured += u64::from(m),
                    Next::Finished { unsent } => { prop_assert_eq!(unsent, 0); break }
                    Next::Wait(_) => prop_assert!(false, "a closed loop never waits"),
                }
            }
            prop_assert_eq!(measured, count);
        }

        /// What the report calls scheduled is exactly what a plan that keeps
        /// up sends, and what a plan that falls behind sends plus what it
        /// reports unsent: "never sent" beyond that is always a real loss.
        #[test]
        fn asked_is_what_an_open_loop_plan_sends_or_reports_unsent(
            rate in 1.0f64..2000.0, conns in 1u64..20, conn_pick: u64,
            warm in 0u64..100, dur in 1u64..300, stall_at in 0u64..400,
        ) {
            let t0 = Instant::now();
            let w = Workload { interrupt: crate::Interrupt::new(),
                clock: Clock::new(t0, ms(warm), Some(ms(dur))),
                schedule: Schedule::new(rate, conns),
                count: None,
            };
            let conn = conn_pick % conns;
            let asked = w.asked(conn).unwrap();
            // Keeps up: sends each message exactly when due.
            let mut p = Plan::new(conn);
            let (mut now, mut sent) = (t0, 0u64);
            let finished = loop {
                match p.next(&w, now) {
                    Next::Send { measured, .. } => sent += u64::from(measured),
                    Next::Wait(at) => now = at,
                    Next::Finished { unsent } => break unsent,
                }
            };
            prop_assert_eq!(finished, 0);
            prop_assert_eq!(sent, asked);
            // Falls behind: stalls from `stall_at` ms until after the end.
            let mut p = Plan::new(conn);
            let (mut now, mut sent) = (t0, 0u64);
            let unsent = loop {
                if now >= t0 + ms(stall_at) {
                    now = t0 + ms(warm + dur + 1);
                }
                match p.next(&w, now) {
                    Next::Send { measured, .. } => sent += u64::from(measured),
                    Next::Wait(at) => now = at,
                    Next::Finished { unsent } => break unsent,
                }
            };
            prop_assert_eq!(sent + unsent, asked);
        }
    }
}
