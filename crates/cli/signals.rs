//! SIGINT, SIGTERM and SIGHUP (Ctrl-C and Ctrl-Break on Windows): the first
//! one shuts the server down gracefully, a second one exits at once. SIGHUP
//! (the terminal went away) drains like SIGTERM rather than killing the
//! server with no summary. For `bench`, an
//! interrupt stops the servers it started before it exits. For `stress`,
//! the first SIGINT or SIGTERM ends the run early so that what it measured
//! is still reported; a second one exits at once.
//!
//! This is the one place that knows how each OS delivers them.

use ringport_server::Shutdown;

/// Call `each` with every signal of `which` that arrives, on a thread of
/// its own: the one watcher that `install`, `on_interrupt` and `on_stop`
/// share on Unix.
#[cfg(unix)]
fn watch(which: &[i32], mut each: impl FnMut(i32) + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut signals =
        signal_hook::iterator::Signals::new(which).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                each(sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Call `each` with the name of every Ctrl-C or Ctrl-Break (console control
/// events) that arrives, on a thread of its own: the one watcher that
/// `install` and `on_stop` share on Windows. tokio's handler is
/// `SetConsoleCtrlHandler` underneath, which saves this crate an `unsafe`
/// callback; Wine turns a SIGINT sent to the process into the same Ctrl-C
/// event.
#[cfg(windows)]
fn watch_console(mut each: impl FnMut(&'static str) + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::windows::{ctrl_break, ctrl_c};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the signal thread's runtime")?;
    // Registered here, before the caller goes on (for `serve`, before the
    // listening line is printed), so an early Ctrl-C is not lost.
    let (mut c, mut b) = {
        let _in_rt = rt.enter();
        (
            ctrl_c().context("cannot install the Ctrl-C handler")?,
            ctrl_break().context("cannot install the Ctrl-Break handler")?,
        )
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    let what = tokio::select! {
                        _ = c.recv() => "Ctrl-C",
                        _ = b.recv() => "Ctrl-Break",
                    };
                    each(what);
                }
            })
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Signals within this long of the first are the same request, not a
/// second one: GNU `timeout` sends its signal to the child and then to the
/// whole process group, so the child gets it twice within microseconds,
/// and a second signal would skip the drain and the report. A person's
/// second Ctrl-C comes later than this.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
const SAME_REQUEST: std::time::Duration = std::time::Duration::from_millis(100);

/// Tells a second signal from the first one's echo ([`SAME_REQUEST`]).
#[derive(Default)]
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
struct Signals {
    first: Option<std::time::Instant>,
}

impl Signals {
    /// The first signal (`false`, and it is remembered), one within
    /// [`SAME_REQUEST`] of it (`false`), or a second one (`true`).
    fn is_second(&mut self) -> bool {
        match self.first {
            None => {
                self.first = Some(std::time::Instant::now());
                false
            }
            Some(at) => at.elapsed() >= SAME_REQUEST,
        }
    }
}

/// Watch for SIGINT, SIGTERM and SIGHUP on a background thread.
#[cfg(unix)]
pub fn install(shutdown: Shutdown) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut seen = Signals::default();
    watch(&[SIGINT, SIGTERM, SIGHUP], move |sig| {
        if seen.is_second() {
            crate::out::eprintln_quiet!("ringport: second signal, exiting now");
            std::process::exit(0);
        }
        if shutdown.is_triggered() {
            return;
        }
        tracing::info!("signal {sig}: shutting down");
        shutdown.trigger();
    })
}

/// Watch for Ctrl-C and Ctrl-Break on a background thread.
#[cfg(windows)]
pub fn install(shutdown: Shutdown) -> anyhow::Result<()> {
    let mut seen = Signals::default();
    watch_console(move |what| {
        if seen.is_second() {
            crate::out::eprintln_quiet!("ringport: second {what}, exiting now");
            std::process::exit(0);
        }
        if shutdown.is_triggered() {
            return;
        }
        tracing::info!("{what}: shutting down");
        shutdown.trigger();
    })
}

/// Elsewhere only the default handling applies (the process ends without a summary).
#[cfg(not(any(unix, windows)))]
pub fn install(_shutdown: Shutdown) -> anyhow::Result<()> {
    Ok(())
}

/// For `bench`: on SIGINT, SIGTERM or SIGHUP run `cleanup` (stop the servers
/// it started), then exit with 128 + the signal number as a shell would.
#[cfg(unix)]
pub fn on_interrupt(cleanup: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut cleanup = Some(cleanup);
    watch(&[SIGINT, SIGTERM, SIGHUP], move |sig| {
        if let Some(cleanup) = cleanup.take() {
            cleanup();
        }
        crate::out::eprintln_quiet!(
            "\nringport bench: interrupted by signal {sig}; servers stopped"
        );
        std::process::exit(128 + sig);
    })
}

/// On other systems the servers end with their `Child` handles.
#[cfg(not(unix))]
pub fn on_interrupt(_cleanup: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    Ok(())
}

/// For `stress`: the first SIGINT or SIGTERM calls `stop` with its number
/// (the run ends early and is reported); a second one exits at once, with
/// no report, as 128 + its number, as a shell would.
#[cfg(unix)]
pub fn on_stop(stop: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut seen = Signals::default();
    let mut stopping = false;
    watch(&[SIGINT, SIGTERM], move |sig| {
        if seen.is_second() {
            crate::out::eprintln_quiet!(
                "ringport stress: second signal ({sig}), exiting now without a report"
            );
            std::process::exit(128 + sig);
        }
        if !std::mem::replace(&mut stopping, true) {
            stop(sig);
        }
    })
}

/// For `stress` on Windows: Ctrl-C or Ctrl-Break calls `stop` with SIGINT's
/// number (2), as on Unix; a second one exits at once with 130.
#[cfg(windows)]
pub fn on_stop(stop: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    let mut seen = Signals::default();
    let mut stopping = false;
    watch_console(move |what| {
        if seen.is_second() {
            crate::out::eprintln_quiet!(
                "ringport stress: second {what}, exiting now without a report"
            );
            std::process::exit(130);
        }
        if !std::mem::replace(&mut stopping, true) {
            stop(2);
        }
    })
}

/// Elsewhere only the default handling applies (the run ends with no report).
#[cfg(not(any(unix, windows)))]
pub fn on_stop(_stop: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    Ok(())
}
