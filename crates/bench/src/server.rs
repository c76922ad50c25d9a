//! Start a server under test, wait (bounded) until it accepts, and stop it.
//!
//! Our own models are started as `EXE serve --model M --listen 127.0.0.1:0`
//! and announce their port with the `listening on ADDR` line. An outside
//! server gets a free port in its command and is ready once the port accepts
//! a connection. Either way the server's stderr is kept (its last lines) for
//! the error message if it fails, instead of tearing through the progress bar.

use crate::cpus::CpuSet;
use crate::matrix::{substitute_port, Target};
use crate::{sys, BenchError};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How many of a server's last stderr lines an error message quotes.
const STDERR_TAIL: usize = 12;

/// A server's last stderr lines, filled by a reader thread.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// Servers running now: pid, and whether its process group is signalled.
/// Kept so that an interrupted bench can stop them ([`stop_all`]): a server
/// started through `sh -c` may be the shell's child, which the kernel's
/// parent-death signal does not reach.
static LIVE: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<(u32, bool)>> {
    // A panic elsewhere must not stop the cleanup: the list stays valid.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGTERM every running server (the whole group of an outside one).
pub fn stop_all() {
    for &(pid, group) in live().iter() {
        sys::terminate_pid(pid, group);
    }
}

/// How a server ended when asked to stop.
#[derive(Debug)]
pub enum Stopped {
    /// It exited after SIGTERM (or had already exited: `early` is then true).
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// True when it had exited before it was asked to.
        early: bool,
    },
    /// It ignored SIGTERM within the bound and was killed.
    Killed,
}

/// A running server under test; killed on drop, so an error path never
/// leaves one behind.
pub struct Running {
    child: Child,
    /// Where it accepts.
    pub addr: SocketAddr,
    /// True when the child leads a process group that is signalled as a whole.
    group: bool,
    stderr: Tail,
}

impl Running {
    /// Start `target`, pinned to `cpus`, and wait up to `bound` until it accepts.
    pub fn start(
        exe: &Path,
        target: &Target,
        workers: usize,
        cpus: Option<&CpuSet>,
        cap: Option<&sys::CpuCap>,
        bound: Duration,
    ) -> Result<Running, BenchError> {
        match target {
            Target::Model(m) => {
                let mut cmd = Command::new(exe);
                cmd.args(["serve", "--model", m.name(), "--listen", "127.0.0.1:0"])
                    .arg("--workers")
                    .arg(workers.to_string());
                Self::start_model(cmd, target.name(), cpus, cap, bound)
            }
            Target::Outside { name, command } => {
                let port = free_port().map_err(|e| BenchError::Io {
                    what: "cannot find a free loopback port".into(),
                    source: e,
                })?;
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(substitute_port(command, port));
                Self::start_outside(cmd, name, port, cpus, cap, bound)
            }
        }
    }

    fn spawn(
        mut cmd: Command,
        name: &str,
        cpus: Option<&CpuSet>,
        cap: Option<&sys::CpuCap>,
        group: bool,
    ) -> Result<(Child, Tail), BenchError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        sys::prepare_child(&mut cmd, cpus, group, cap).map_err(|e| BenchError::Io {
            what: format!("cannot prepare {name} (CPU pinning, CPU cap)"),
            source: e,
        })?;
        let mut child = cmd.spawn().map_err(|e| BenchError::Io {
            what: format!("cannot start {name} ({cmd:?})"),
            source: e,
        })?;
        live().push((child.id(), group));
        let tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut t = tail.lock().expect("stderr tail lock");
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        Ok((child, tail))
    }

    fn start_model(
        cmd: Command,
        name: &str,
        cpus: Option<&CpuSet>,
        cap: Option<&sys::CpuCap>,
        bound: Duration,
    ) -> Result<Running, BenchError> {
        let (mut child, stderr) = Self::spawn(cmd, name, cpus, cap, false)?;
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // The thread keeps draining stdout after the readiness line, so the
        // server never blocks writing its exit summary to a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(a) = line.strip_prefix("listening on ") {
                    let _ = tx.send(a.trim().parse::<SocketAddr>().ok());
                    break;
                }
            }
            drop(tx);
            for _ in lines {}
        });
        let mut running = Running {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            group: false,
            stderr,
        };
        match rx.recv_timeout(bound) {
            Ok(Some(addr)) => {
                running.addr = addr;
                Ok(running)
            }
            Ok(None) => Err(running.failed(name, "printed an unreadable 'listening on' line")),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed without the line: it exited; give it a moment
                // to be reaped so the message can carry its status.
                let _ = wait_bounded(&mut running.child, Duration::from_secs(2));
                Err(running.failed(name, "exited before it was listening"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(running.failed(
                name,
                &format!("printed no 'listening on' line within {bound:?}"),
            )),
        }
    }

    fn start_outside(
        cmd: Command,
        name: &str,
        port: u16,
        cpus: Option<&CpuSet>,
        cap: Option<&sys::CpuCap>,
        bound: Duration,
    ) -> Result<Running, BenchError> {
        let (mut child, stderr) = Self::spawn(cmd, name, cpus, cap, true)?;
        if let Some(mut out) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                while matches!(out.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut running = Running {
            child,
            addr,
            group: true,
            stderr,
        };
        let deadline = Instant::now() + bound;
        loop {
            if let Ok(Some(_)) = running.child.try_wait() {
                return Err(running.failed(name, "exited before it accepted connections"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(running);
            }
            if Instant::now() >= deadline {
                return Err(running.failed(
                    name,
                    &format!("did not accept connections on {addr} within {bound:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id, for sampling its CPU time and memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the server and describe why it is unusable, quoting its stderr.
    fn failed(mut self, name: &str, why: &str) -> BenchError {
        sys::kill(&mut self.child, self.group);
        let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!(" ({s})"),
            _ => String::new(),
        };
        // Give the reader thread a moment to collect the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let tail: Vec<String> = self
            .stderr
            .lock()
            .expect("stderr tail lock")
            .iter()
            .cloned()
            .collect();
        let stderr = if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n    {}", tail.join("\n    "))
        };
        BenchError::Server {
            target: name.to_string(),
            why: format!("{why}{status}{stderr}"),
        }
    }

    /// SIGTERM, wait up to `bound`, and kill it if it is still running.
    pub fn stop(mut self, bound: Duration) -> Stopped {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Stopped::Exited {
                status,
                early: true,
            };
        }
        if sys::terminate(&mut self.child, self.group).is_ok() {
            if let Some(status) = wait_bounded(&mut self.child, bound) {
                if self.group {
                    // The shell has gone; make sure nothing it started lingers.
                    sys::kill(&mut self.child, true);
                }
                return Stopped::Exited {
                    status,
                    early: false,
                };
            }
        }
        sys::kill(&mut self.child, self.group);
        let _ = wait_bounded(&mut self.child, bound);
        Stopped::Killed
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            sys::kill(&mut self.child, self.group);
            let _ = self.child.wait();
        }
        let pid = self.child.id();
        live().retain(|&(p, _)| p != pid);
    }
}

/// Poll for the exit for at most `bound`.
fn wait_bounded(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// A loopback port nobody holds right now. Another process could take it
/// before the server binds; the readiness wait then fails with a clear message.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
