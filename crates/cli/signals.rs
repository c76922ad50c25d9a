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

/// Watch for SIGINT, SIGTERM and SIGHUP on a background thread.
#[cfg(unix)]
pub fn install(shutdown: Shutdown) -> anyhow::Result<()> {
    use anyhow::Context;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if shutdown.is_triggered() {
                    crate::out::eprintln_quiet!("ringport: second signal, exiting now");
                    std::process::exit(0);
                }
                tracing::info!("signal {sig}: shutting down");
                shutdown.trigger();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Watch for Ctrl-C and Ctrl-Break (console control events) on a background
/// thread. tokio's handler is `SetConsoleCtrlHandler` underneath, which saves
/// this crate an `unsafe` callback; Wine turns a SIGINT sent to the process
/// into the same Ctrl-C event.
#[cfg(windows)]
pub fn install(shutdown: Shutdown) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::windows::{ctrl_break, ctrl_c};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the signal thread's runtime")?;
    // Registered here, before the listening line is printed, so an early
    // Ctrl-C is not lost.
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
                    if shutdown.is_triggered() {
                        crate::out::eprintln_quiet!("ringport: second {what}, exiting now");
                        std::process::exit(0);
                    }
                    tracing::info!("{what}: shutting down");
                    shutdown.trigger();
                }
            })
        })
        .context("cannot start the signal thread")?;
    Ok(())
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
    use anyhow::Context;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                cleanup();
                crate::out::eprintln_quiet!(
                    "\nringport bench: interrupted by signal {sig}; servers stopped"
                );
                std::process::exit(128 + sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
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
    use anyhow::Context;
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for sig in signals.forever() {
                if stopping {
                    crate::out::eprintln_quiet!(
                        "ringport stress: second signal ({sig}), exiting now without a report"
                    );
                    std::process::exit(128 + sig);
                }
                stopping = true;
                stop(sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// For `stress` on Windows: Ctrl-C or Ctrl-Break calls `stop` with SIGINT's
/// number (2), as on Unix; a second one exits at once with 130.
#[cfg(windows)]
pub fn on_stop(stop: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::windows::{ctrl_break, ctrl_c};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the signal thread's runtime")?;
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
                let mut stopping = false;
                loop {
                    let what = tokio::select! {
                        _ = c.recv() => "Ctrl-C",
                        _ = b.recv() => "Ctrl-Break",
                    };
                    if stopping {
                        crate::out::eprintln_quiet!(
                            "ringport stress: second {what}, exiting now without a report"
                        );
                        std::process::exit(130);
                    }
                    stopping = true;
                    stop(2);
                }
            })
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Elsewhere only the default handling applies (the run ends with no report).
#[cfg(not(any(unix, windows)))]
pub fn on_stop(_stop: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    Ok(())
}
