//! SIGINT and SIGTERM: the first one shuts the server down gracefully, a
//! second one exits at once.

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
