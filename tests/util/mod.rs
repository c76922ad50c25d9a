//! Helpers: start `ringport` as a child process, wait with bounds, make payloads.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    stdout_rest: mpsc::Receiver<String>,
}

impl Server {
    /// Start `ringport serve --model MODEL --listen 127.0.0.1:0 EXTRA...` and
    /// wait for its `listening on` line.
    pub fn start(model: &str, extra: &[&str]) -> Server {
        Self::start_on(model, "127.0.0.1:0", extra)
    }

    pub fn start_on(model: &str, listen: &str, extra: &[&str]) -> Server {
        let mut child = ringport()
            .args(["serve", "--model", model, "--listen", listen])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ringport serve");
        let stdout = child.stdout.take().unwrap();
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
        let rest: Vec<String> = self.stdout_rest.try_iter().collect();
        (status, took, rest.join("\n"))
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
    let mut child = ringport()
        .args(args)
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

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
