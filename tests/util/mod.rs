//! Helpers: start `ringport` as a child process, wait with bounds, make
//! payloads; the one list of server models the per-model tests are
//! generated from; and the rule for a test that cannot run here.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The one list of server models. `for_each_model!(callback)` expands to
/// `callback!(blocking, threaded, epoll, tokio, completion)`, so a file
/// generates its own per-model tests (one `#[test]` per model, which fails
/// on its own) from this list and nothing else: a new model gets every
/// per-model test by being added here.
/// `stall::every_model_and_completion_flag_is_stalled_above` checks that
/// this list is exactly the models the binary offers.
macro_rules! for_each_model {
    ($callback:ident) => {
        $callback! { blocking, threaded, epoll, tokio, completion }
    };
}

/// The models of `for_each_model!` that serve clients at the same time:
/// all but `blocking`, which by design serves them one after the other.
/// Tests that hold many clients open at once are generated from this one.
/// `the_concurrent_models_are_every_model_but_blocking` keeps the two in step.
macro_rules! for_each_concurrent_model {
    ($callback:ident) => {
        $callback! { threaded, epoll, tokio, completion }
    };
}

/// The two lists above as names, for tests that need them at run time.
macro_rules! model_names {
    ($($model:ident),* $(,)?) => {
        &[$(stringify!($model)),*]
    };
}

/// Every server model (`for_each_model!`), as names.
pub const MODELS: &[&str] = for_each_model!(model_names);
/// The models that serve clients at the same time (`for_each_concurrent_model!`).
pub const CONCURRENT_MODELS: &[&str] = for_each_concurrent_model!(model_names);

#[test]
fn the_concurrent_models_are_every_model_but_blocking() {
    let rest: Vec<&str> = MODELS
        .iter()
        .copied()
        .filter(|m| !CONCURRENT_MODELS.contains(m))
        .collect();
    assert_eq!(
        rest,
        ["blocking"],
        "{MODELS:?} against {CONCURRENT_MODELS:?}"
    );
    assert!(CONCURRENT_MODELS.iter().all(|m| MODELS.contains(m)));
}

/// The one list of `stress`'s engines that drive many connections per
/// thread: the behavioural stress tests (misbehaving servers, pipeline,
/// open loop, churn, the close check, the log, the JSON) run against each.
/// `threads`, the blocking baseline, is not one of them: it has no
/// pipeline and no churn, and the tests that cover it name it themselves.
pub const LOAD_ENGINES: &[&str] = &["events", "completion"];

/// The engines of [`LOAD_ENGINES`] that can run here. One that cannot (the
/// completion engine where io_uring is unavailable: an old kernel, or a
/// seccomp policy) is left out, with a note, once per test process: what
/// the machine is is not a failure ([`skip`]). Whether it can is what
/// `stress` itself says: a usage error (exit 2) that suggests
/// `--engine events`.
pub fn load_engines() -> Vec<&'static str> {
    static RUNNABLE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    RUNNABLE
        .get_or_init(|| {
            LOAD_ENGINES
                .iter()
                .copied()
                .filter(|engine| {
                    // Refused before any connect: the port is never reached.
                    let (status, _, err) =
                        run(&["stress", "127.0.0.1:9", "-n", "1", "--engine", engine]);
                    let refused = status.code() == Some(2) && err.contains("--engine events");
                    if refused {
                        skip(&format!(
                            "stress --engine {engine} cannot run here ({})",
                            err.trim()
                        ));
                    }
                    !refused
                })
                .collect()
        })
        .clone()
}

/// A test that cannot run here because something is missing.
///
/// Without `CI` in the environment (or with it empty) this prints `note: WHY; skipped` and
/// returns, and the caller returns too: a developer's machine need not have
/// every tool. With `CI` set it panics, naming what is missing and how to
/// install it, because `.ci/run` installs every tool these tests need
/// (socat, chromium, taskset from util-linux, python3, prometheus, the PyPI
/// `hdrhistogram` and `prometheus_client` packages in the venv named by
/// `RINGPORT_TEST_PYTHON`), so
/// a missing one in CI is a broken CI, not a reason to pass.
///
/// Only for what can be installed. What the machine is, rather than what
/// is installed on it, is not a failure anywhere and goes to [`skip`]
/// instead: a single CPU, no IPv6 loopback, or no cgroup CPU controller
/// that this user may write (whether a container delegates the controller
/// is up to whoever runs it; no package and no step of `.ci/run` can
/// change it without root, and failing there would fail CI on every
/// unprivileged runner for something no commit can fix).
///
/// `tool` names what is missing as `.ci/run` does: a tool it tried and
/// failed to install (no network, say) is listed in
/// `RINGPORT_TEST_UNINSTALLABLE`, and then the test only says it skipped,
/// since no commit could have made it run.
pub fn skip_or_fail(tool: &str, why: &str) {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let uninstallable = std::env::var("RINGPORT_TEST_UNINSTALLABLE").unwrap_or_default();
    if ci && !uninstallable.split_whitespace().any(|t| t == tool) {
        panic!(
            "{why}; CI is set, and .ci/run installs {tool}, so the test fails instead of skipping"
        );
    }
    if ci {
        eprintln!("note: {why}; skipped (.ci/run could not install {tool})");
    } else {
        eprintln!("note: {why}; skipped (this fails where CI is set)");
    }
}

/// A test that cannot run because of what this machine is (see
/// [`skip_or_fail`] for what may only be skipped): prints a note, under CI too.
pub fn skip(why: &str) {
    eprintln!("note: {why}; skipped");
}

/// Every wait in the tests is bounded by this; generous for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn ringport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringport"))
}

/// A running `ringport serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub model: String,
    #[cfg_attr(not(unix), allow(dead_code))] // read by the Unix-only signal tests
    stdout_rest: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Start `ringport serve --model MODEL --listen 127.0.0.1:0 EXTRA...` and
    /// wait for its `listening on` line.
    pub fn start(model: &str, extra: &[&str]) -> Server {
        Self::start_on(model, "127.0.0.1:0", extra)
    }

    pub fn start_on(model: &str, listen: &str, extra: &[&str]) -> Server {
        let mut cmd = ringport();
        cmd.args(["serve", "--model", model, "--listen", listen])
            .args(extra);
        Self::start_cmd(cmd, model)
    }

    /// Start a prepared `ringport serve …` command.
    pub fn start_cmd(mut cmd: Command, model: &str) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringport serve");
        let stdout = child.stdout.take().unwrap();
        // Keep stderr for assertions, and pass it on so failures show it.
        let stderr_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr_buf.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[server] {line}");
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("listening on ") {
                        break a.parse().expect("listening line has an address");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("{model}: no 'listening on' line within {WAIT:?}");
                }
            }
        };
        Server {
            child,
            addr,
            model: model.to_string(),
            stdout_rest: rx,
            stderr: stderr_buf,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, WAIT).expect("connect to server");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        s
    }

    /// Send a signal and wait (bounded) for the exit; returns the status,
    /// how long it took, and the rest of stdout.
    #[cfg(unix)]
    pub fn signal_and_wait(mut self, sig: i32) -> (ExitStatus, Duration, String) {
        let t = Instant::now();
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status =
            wait_with_timeout(&mut self.child, WAIT).expect("server exits after the signal");
        let took = t.elapsed();
        (status, took, self.stdout_to_eof())
    }

    /// Send a signal without waiting for the exit.
    #[cfg(unix)]
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait (bounded) for the exit; returns the status, how long it took,
    /// and the rest of stdout.
    #[cfg_attr(not(unix), allow(dead_code))] // used by Unix-only tests
    pub fn wait_exit(mut self) -> (ExitStatus, Duration, String) {
        let t = Instant::now();
        let status = wait_with_timeout(&mut self.child, WAIT).expect("server exits");
        let took = t.elapsed();
        (status, took, self.stdout_to_eof())
    }

    /// The rest of stdout once the server has exited: everything up to the
    /// reader thread's end of file (bounded), not just what it has passed on
    /// so far, which can be nothing yet when the last lines were written just
    /// before the exit.
    #[cfg_attr(not(unix), allow(dead_code))] // used by Unix-only tests
    fn stdout_to_eof(&self) -> String {
        let deadline = Instant::now() + WAIT;
        let mut rest = Vec::new();
        while let Ok(line) = self
            .stdout_rest
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            rest.push(line);
        }
        rest.join("\n")
    }

    /// What the server has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait (bounded) until stderr contains `needle`; returns all of stderr.
    #[cfg_attr(not(unix), allow(dead_code))] // used by Unix-only tests
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.stderr();
            if s.contains(needle) || Instant::now() >= deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `ringport ARGS` to completion (bounded), returning status, stdout, stderr.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = ringport();
    cmd.args(args);
    run_cmd(cmd)
}

/// Run a prepared command to completion (bounded).
pub fn run_cmd(mut cmd: Command) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringport");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(300)).expect("ringport finished in time");
    (status, t_out.join().unwrap(), t_err.join().unwrap())
}

/// `len` bytes cycling through all 256 values with a per-call twist, so an
/// offset error cannot go unnoticed.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8 ^ seed)
        .collect()
}

/// Write `data` on one thread while reading the echo on this one; returns what came back.
/// Reading concurrently is what any echo client must do for large messages.
pub fn echo_concurrently(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let to_send = data.to_vec();
    let h = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&to_send).expect("write payload");
    });
    let mut back = vec![0u8; data.len()];
    let mut r = stream;
    r.read_exact(&mut back).expect("read the whole echo");
    h.join().unwrap();
    back
}

/// Close with SO_LINGER 0, which sends a RST instead of a FIN.
pub fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Resident memory of a process in KiB (Linux).
#[cfg(target_os = "linux")]
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Make `cmd` run with `io_uring_setup(2)` failing with EPERM, as under a
/// container's seccomp policy, so the fallback paths can be tested for real.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn deny_io_uring(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    const IO_URING_SETUP: u32 = 425; // the same number on x86_64 and aarch64
                                     // SAFETY: the closure runs in the child between fork and exec and only
                                     // makes two prctl calls on data that lives on its own stack.
    unsafe {
        cmd.pre_exec(|| {
            let filter = [
                // A = seccomp_data.nr
                libc::sock_filter {
                    code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: IO_URING_SETUP,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ALLOW,
                },
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut _,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// CPU time (user + system) a process has used so far (Linux).
#[cfg(target_os = "linux")]
pub fn cpu_time(pid: u32) -> Duration {
    let ticks = cpu_ticks(std::path::Path::new(&format!("/proc/{pid}/stat")));
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// utime + stime, in clock ticks, from a `stat` file of /proc (a
/// process's, or one of its threads' under `task/`).
#[cfg(target_os = "linux")]
pub fn cpu_ticks(stat: &std::path::Path) -> u64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // The command name may hold spaces; the fields after it do not. utime
    // and stime are fields 14 and 15, the 12th and 13th after the name.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

/// Run `cmd` with at most `n` open files, soft and hard: the binary raises
/// its soft limit to the hard one at start, so both must be lowered.
#[cfg(unix)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // used by Linux-only tests
pub fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit(2) on a value on its own stack.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Let this test process open at least `n` files, if its hard limit allows:
/// some tests hold hundreds of client sockets.
#[cfg(unix)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // used by Linux-only tests
pub fn raise_own_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < n as libc::rlim_t {
            lim.rlim_cur = (n as libc::rlim_t).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// One echo round trip on a fresh connection: `true` if `msg` came back.
/// Never panics, so callers can retry while a server recovers.
pub fn round_trip(addr: SocketAddr, msg: &[u8]) -> bool {
    use std::io::Write;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, WAIT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(WAIT));
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).is_ok() && back == msg
}
