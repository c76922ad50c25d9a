//! What the multi-worker models (epoll, completion) share: a pool of worker
//! threads in one scope, where the first failure stops them all, and the
//! periodic sweep against `--idle-timeout`.

use crate::{ServerError, Shutdown};
use std::time::{Duration, Instant};

/// Run each job on a thread of its own, named `{name}-{i}`, then
/// `on_caller` on this thread (the completion model's acceptor), and wait
/// for them all. A job that fails, or a thread that cannot be started,
/// triggers `shutdown` so that the others stop rather than leave their
/// share of the clients unserved; the first error is returned.
pub(crate) fn run_pool<'env, J>(
    name: &str,
    jobs: Vec<J>,
    shutdown: &'env Shutdown,
    on_caller: impl FnOnce(),
) -> Result<(), ServerError>
where
    J: FnOnce() -> Result<(), ServerError> + Send + 'env,
{
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(jobs.len());
        let mut first_err = None;
        for (i, job) in jobs.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn_scoped(scope, move || {
                    let result = job();
                    if result.is_err() {
                        shutdown.trigger();
                    }
                    result
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // The workers already running see the trigger and end.
                    shutdown.trigger();
                    first_err = Some(ServerError::io(
                        format!("cannot start {name} worker thread {i}"),
                        e,
                    ));
                    break;
                }
            }
        }
        if first_err.is_none() {
            on_caller();
        }
        for h in handles {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

/// How often, at most, connections are checked against `--idle-timeout`:
/// a quarter of it, so one is closed within 1.25 times the limit, but never
/// more often than this (a sweep walks every connection). One sweep per
/// worker, which it wakes for anyway, instead of a timer per connection.
const MIN_SWEEP: Duration = Duration::from_millis(10);

/// When a worker next sweeps its connections for idle ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleSweep {
    limit: Duration,
    next: Instant,
}

impl IdleSweep {
    /// The sweep for `--idle-timeout`, if one was given.
    pub(crate) fn new(idle_timeout: Option<Duration>, now: Instant) -> Option<IdleSweep> {
        idle_timeout.map(|limit| IdleSweep {
            limit,
            next: now + every(limit),
        })
    }

    /// When the worker must wake for the next sweep.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// At `now`: `Some(limit)` if a sweep is due (the next one is then
    /// scheduled), `None` if not yet.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Duration> {
        if now < self.next {
            return None;
        }
        self.next = now + every(self.limit);
        Some(self.limit)
    }
}

fn every(limit: Duration) -> Duration {
    (limit / 4).max(MIN_SWEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_due_every_quarter_of_the_limit_but_not_more_often_than_the_minimum() {
        let t = Instant::now();
        let mut s = IdleSweep::new(Some(Duration::from_secs(4)), t).unwrap();
        assert_eq!(s.next(), t + Duration::from_secs(1));
        assert_eq!(s.due(t), None);
        assert_eq!(
            s.due(t + Duration::from_secs(1)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(s.next(), t + Duration::from_secs(2));
        let s = IdleSweep::new(Some(Duration::from_millis(1)), t).unwrap();
        assert_eq!(s.next(), t + MIN_SWEEP);
        assert!(IdleSweep::new(None, t).is_none());
    }

    #[test]
    fn the_first_failure_stops_the_pool_and_is_returned() {
        let shutdown = Shutdown::new();
        let jobs: Vec<Box<dyn FnOnce() -> Result<(), ServerError> + Send>> = vec![
            Box::new(|| {
                while !shutdown.is_triggered() {
                    std::thread::yield_now();
                }
                Ok(())
            }),
            Box::new(|| Err(ServerError::io("boom", std::io::Error::other("x")))),
        ];
        let r = run_pool("test", jobs, &shutdown, || {});
        assert!(r.unwrap_err().to_string().contains("boom"));
        assert!(shutdown.is_triggered());
    }
}
