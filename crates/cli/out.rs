//! Writing to stdout and stderr without panicking when they are closed.
//!
//! `print!` and `eprintln!` panic when the write fails, and a reader that
//! goes away (`ringport serve | head -1`, `ringport stress | head`) makes
//! every later write fail with EPIPE: Rust ignores SIGPIPE, so the process
//! is not killed by the signal, it panics instead. ripgrep's convention is
//! followed: output nobody reads any more is dropped quietly, and the
//! process goes on and exits with the status its work earned.

use std::io::{self, Write};

/// Write `text` to stdout and flush. A closed stdout is not an error: the
/// text is dropped. Any other failure (a full disk behind a redirect) is.
pub fn stdout(text: &str) -> io::Result<()> {
    stdout_bytes(text.as_bytes())
}

/// Write raw bytes to stdout and flush; a closed stdout drops them, as above.
pub fn stdout_bytes(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Write `text` to stderr, best effort: there is nowhere left to report
/// a failure to write a diagnostic.
pub fn stderr(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// `eprintln!` that never panics.
macro_rules! eprintln_quiet {
    ($($arg:tt)*) => {
        $crate::out::stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use eprintln_quiet;
