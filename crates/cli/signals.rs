//! SIGINT and SIGTERM: the first one shuts the server down gracefully, a
//! second one exits at once. For `bench`, an interrupt stops the servers it
//! started before it exits.

use ringport_server::Shutdown;

/// Watch for SIGINT and SIGTERM on a background thread.
#[cfg(unix)]
pub fn install(shutdown: Shutdown) -> anyhow::Result<()> {
    use anyhow::Context;
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if shutdown.is_triggered() {
                    eprintln!("ringport: second signal, exiting now");
                    std::process::exit(0);
                }
                tracing::info!("signal {sig}: shutting down");
                shutdown.trigger();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// On other systems only Ctrl-C ends the process (without a summary).
#[cfg(not(unix))]
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
                eprintln!("\nringport bench: interrupted by signal {sig}; servers stopped");
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
