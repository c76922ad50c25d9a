//! Peers that stop moving cost the server nothing. Connections are stalled
//! in three states at once, the server's CPU time is read from `/proc` over
//! 2 s, and then every peer reads and must get back every byte it sent.
//!
//! * **half-closed non-readers**: flood up to 4 MiB that is never read
//!   back, then shut the write side down;
//! * **paused non-readers**: the same flood, with the connection left open;
//! * **finned idle**: shut the write side down at once, then never read.
//!
//! Each peer has an 8 KiB receive buffer, so its server fills up early.
//!
//! What "nothing can move" needs: the kernel's TCP memory below its
//! pressure mark (`tcp_mem`'s middle value: 1.46 GiB on a 24 GiB machine).
//! Under pressure the kernel drops segments and sends them again on its
//! retransmission timers, backing off to seconds, so "stalled" peers go on
//! moving bytes to the server long after the flood ends: work the server
//! must do, not a spin. On loopback's 64 KiB segments the kernel gives each
//! server send buffer 4 MiB, so one of these tests holds some 0.9 GiB;
//! beside another flooding test (two of these, or the slow readers of
//! `echo.rs`) it passed the mark, and tokio's server worked 7.5% of a core
//! in a CI run. So these tests are a binary of their own (`quiet.rs`),
//! which cargo runs after the others, never beside them, and run one at a
//! time within it; the peers' send buffers are a fixed 256 KiB; the
//! settling waits for the TCP memory to be below the mark; and each
//! figure printed names the TCP memory in use. Loopback's segment size is
//! kept: at Ethernet's 1,460 bytes the relay's spin of issue 30 (199% of
//! two cores with `--coalesce 0`) did not show at all.

#![cfg(target_os = "linux")]

use crate::util::{cpu_time, raise_own_open_files, run, Server, MODELS, WAIT};
use socket2::{Domain, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// One test per model of `for_each_model!`, named after the model.
macro_rules! stall_model_tests {
    ($($model:ident),* $(,)?) => {$(
        #[test]
        fn $model() {
            stalled_peers_cost_no_cpu_then_get_every_byte(stringify!($model), &[])
        }
    )*};
}

for_each_model!(stall_model_tests);

/// One test per completion flag set, and the list of them.
macro_rules! completion_flag_tests {
    ($($name:ident: $($flag:literal),+;)*) => {
        $(
            #[test]
            fn $name() {
                stalled_peers_cost_no_cpu_then_get_every_byte("completion", &[$($flag),+])
            }
        )*
        /// Every completion flag set above (each model runs without flags too).
        const COMPLETION_FLAG_SETS: &[&[&str]] = &[$(&[$($flag),+]),*];
    };
}

completion_flag_tests! {
    completion_coalesce_0: "--coalesce", "0";
    completion_coalesce_100us: "--coalesce", "100us";
    completion_no_relay: "--no-relay";
    completion_sqpoll: "--sqpoll", "2ms";
}

/// Connections in each state; `RINGPORT_STALL_CONNECTIONS` sets another
/// count (1,000 was checked by hand, docs/RELIABILITY.md).
fn per_state() -> usize {
    std::env::var("RINGPORT_STALL_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// What a flooding peer sends at most.
const FLOOD: usize = 4 << 20;
/// The peers' receive buffer.
const PEER_RCVBUF: usize = 8 * 1024;
/// The peers' send buffer (the kernel doubles it).
const PEER_SNDBUF: usize = 128 * 1024;
/// How long the peers stay stalled while the server's CPU is read.
const WINDOW: Duration = Duration::from_secs(2);
/// The most the server may use of one core over the window.
const MAX_BUSY: f64 = 0.05;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    HalfClosed,
    Paused,
    Finned,
}

/// One peer: its socket, its state, and how many bytes it sent and got back.
struct Peer {
    stream: TcpStream,
    state: State,
    id: usize,
    sent: usize,
    read: usize,
    eof: bool,
}

/// The bytes every peer's stream is cut from: 65,521 (a prime) pseudo-random
/// bytes, so no two peers' streams line up with each other or with any
/// power-of-two boundary.
fn block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..65_521)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// Peer `id`'s stream from byte `from` on, into `out`: the block from a
/// starting point of the peer's own, so a byte delivered to the wrong
/// connection or offset is caught.
fn fill(id: usize, from: usize, out: &mut [u8]) {
    let block = block();
    let mut at = (from + id * 7_919) % block.len();
    let mut done = 0;
    while done < out.len() {
        let n = (block.len() - at).min(out.len() - done);
        out[done..done + n].copy_from_slice(&block[at..at + n]);
        done += n;
        at = 0;
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    // Before connect, so the window the server sees is small from the start.
    s.set_recv_buffer_size(PEER_RCVBUF).expect("SO_RCVBUF");
    // And a fixed send buffer (module doc).
    s.set_send_buffer_size(PEER_SNDBUF).expect("SO_SNDBUF");
    s.connect_timeout(&addr.into(), WAIT).expect("connect");
    let s: TcpStream = s.into();
    s.set_nonblocking(true).expect("non-blocking");
    s
}

/// Write to every flooding peer until each has sent `FLOOD` or nothing
/// has moved for a while (the server and the buffers between are full).
fn flood(peers: &mut [Peer]) {
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    let mut still_since = Instant::now();
    while Instant::now() < deadline && still_since.elapsed() < Duration::from_millis(500) {
        let mut moved = false;
        for p in peers.iter_mut().filter(|p| p.state != State::Finned) {
            let want = (FLOOD - p.sent).min(chunk.len());
            if want == 0 {
                continue;
            }
            fill(p.id, p.sent, &mut chunk[..want]);
            match p.stream.write(&chunk[..want]) {
                Ok(n) => {
                    p.sent += n;
                    moved |= n > 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("peer {}: flooding failed: {e}", p.id),
            }
        }
        if moved {
            still_since = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How many of process `pid`'s threads are running or waiting for a CPU
/// (state `R` in `/proc/PID/task/TID/stat`).
fn runnable_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // The state follows the command name, which may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                == Some("R")
        })
        .count()
}

/// Every peer reads everything it is owed, checking each byte, until the
/// server's end of stream. Paused peers first shut their write side down,
/// so that the server's echo has an end. The peers now take larger windows,
/// and only those with bytes waiting are read (`poll`), since the blocking
/// model serves them one at a time.
fn read_back(peers: &mut [Peer], what: &str) {
    for p in peers.iter_mut() {
        let _ = socket2::SockRef::from(&p.stream).set_recv_buffer_size(1 << 20);
        if p.state == State::Paused {
            p.stream.shutdown(Shutdown::Write).expect("shutdown");
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut expected = vec![0u8; buf.len()];
    // Longer for many peers: the blocking model echoes them in turn.
    let limit = 2 * WAIT * (peers.len() as u32 / 300).max(1);
    let deadline = Instant::now() + limit;
    let mut ready = Vec::with_capacity(peers.len());
    loop {
        ready.clear();
        ready.extend(peers.iter().filter(|p| !p.eof).map(|p| libc::pollfd {
            fd: p.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        if ready.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} peers still owed bytes after {limit:?} of reading (the first: {:?})",
            ready.len(),
            peers
                .iter()
                .find(|p| !p.eof)
                .map(|p| (p.id, p.state, p.sent, p.read))
        );
        // SAFETY: `ready` is a live array of `ready.len()` pollfds.
        let n = unsafe { libc::poll(ready.as_mut_ptr(), ready.len() as libc::nfds_t, 100) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        let waiting: std::collections::HashSet<i32> = ready
            .iter()
            .filter(|r| r.revents != 0)
            .map(|r| r.fd)
            .collect();
        for p in peers
            .iter_mut()
            .filter(|p| !p.eof && waiting.contains(&p.stream.as_raw_fd()))
        {
            match p.stream.read(&mut buf) {
                Ok(0) => {
                    assert_eq!(
                        p.read, p.sent,
                        "{what}: peer {} ({:?}) got end of stream after {} of its {} bytes",
                        p.id, p.state, p.read, p.sent
                    );
                    p.eof = true;
                }
                Ok(n) => {
                    assert!(
                        p.read + n <= p.sent,
                        "{what}: peer {} got more than it sent",
                        p.id
                    );
                    fill(p.id, p.read, &mut expected[..n]);
                    if buf[..n] != expected[..n] {
                        let at = (0..n).find(|&i| buf[i] != expected[i]).unwrap();
                        panic!(
                            "{what}: peer {} ({:?}): wrong byte at offset {}",
                            p.id,
                            p.state,
                            p.read + at
                        );
                    }
                    p.read += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{what}: peer {} ({:?}): read failed: {e}", p.id, p.state),
            }
        }
    }
}

/// Held by the stall test running: one at a time (module doc).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The kernel's TCP memory in use and its pressure mark, in pages
/// (`/proc/net/sockstat`, `tcp_mem`), where they can be read.
fn tcp_memory() -> Option<(u64, u64)> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let in_use = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))?
        .split_whitespace()
        .skip_while(|w| *w != "mem")
        .nth(1)?
        .parse()
        .ok()?;
    let mark = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((in_use, mark))
}

fn stalled_peers_cost_no_cpu_then_get_every_byte(model: &str, flags: &[&str]) {
    // A test that failed still let go of the lock, so a poisoned one is fine.
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let what = format!("{model} {}", flags.join(" "));
    let n = per_state();
    raise_own_open_files(3 * n as u64 + 256);
    let server = Server::start(model, flags);
    let pid = server.child.id();
    let mut peers = Vec::with_capacity(3 * n);
    for (i, state) in [State::HalfClosed, State::Paused, State::Finned]
        .into_iter()
        .flat_map(|s| std::iter::repeat_n(s, n))
        .enumerate()
    {
        let stream = connect(server.addr);
        if state == State::Finned {
            stream.shutdown(Shutdown::Write).expect("shutdown");
        }
        peers.push(Peer {
            stream,
            state,
            id: i,
            sent: 0,
            read: 0,
            eof: false,
        });
    }
    flood(&mut peers);
    for p in peers.iter().filter(|p| p.state == State::HalfClosed) {
        p.stream.shutdown(Shutdown::Write).expect("shutdown");
    }
    assert!(
        peers.iter().any(|p| p.sent > 0),
        "{what}: the server took no bytes at all"
    );
    // Let what is in flight settle (the last FINs, and on a loaded machine
    // bytes still on their way): until, twice in a row half a second apart,
    // the server's CPU time stood still, none of its threads was runnable
    // and the kernel's TCP memory was below its pressure mark (module
    // doc), for at most 20 s. CPU time alone is not enough: on a busy
    // machine a server with work left may wait that long for a CPU, and
    // then do the work inside the window. A server that spins never
    // settles, and then fails below.
    let settle_by = Instant::now() + Duration::from_secs(20);
    let (mut last, mut quiet) = (cpu_time(pid), 0);
    while quiet < 2 && Instant::now() < settle_by {
        std::thread::sleep(Duration::from_millis(500));
        let now = cpu_time(pid);
        let no_pressure = tcp_memory().is_none_or(|(in_use, mark)| in_use < mark);
        quiet = if now == last && runnable_threads(pid) == 0 && no_pressure {
            quiet + 1
        } else {
            0
        };
        last = now;
    }

    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    std::thread::sleep(WINDOW);
    let busy = (cpu_time(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let sent: usize = peers.iter().map(|p| p.sent).sum();
    let memory = tcp_memory().map_or_else(
        || "TCP memory unknown".to_string(),
        |(in_use, mark)| format!("TCP memory {in_use} pages, pressure at {mark}"),
    );
    eprintln!(
        "{what}: {} peers stalled ({n} in each state, {:.1} MiB sent); the server used {:.2}% of a core; {memory}",
        peers.len(),
        sent as f64 / (1 << 20) as f64,
        busy * 100.0
    );
    assert!(
        busy <= MAX_BUSY,
        "{what}: the server used {:.1}% of a core over {WINDOW:?} while no peer could move (at most {:.0}%; {memory})",
        busy * 100.0,
        MAX_BUSY * 100.0
    );
    read_back(&mut peers, &what);
}

/// The models stalled above are the one list of `for_each_model!`, and it
/// is exactly the models the binary offers; the flag sets above cover every
/// flag that the help of `serve` says is the completion model's.
#[test]
fn every_model_and_completion_flag_is_stalled_above() {
    let (_, _, err) = run(&["serve", "--model", "?"]);
    let models = err
        .split("valid models: ")
        .nth(1)
        .expect("the unknown-model error lists the models");
    let models = models.split(" (").next().unwrap_or(models);
    let offered: Vec<&str> = models
        .split(',')
        .map(str::trim)
        .filter(|m| *m != "auto")
        .collect();
    for model in &offered {
        assert!(
            MODELS.contains(model),
            "the binary offers the {model} model, which for_each_model! in tests/util does not list"
        );
    }
    for model in MODELS {
        assert!(
            offered.contains(model),
            "for_each_model! in tests/util lists the {model} model, which the binary does not offer \
             (it offers {offered:?})"
        );
    }
    let (_, help, _) = run(&["serve", "--help"]);
    let mut flag = None;
    for line in help.lines().map(str::trim) {
        if let Some(f) = line.split_whitespace().find(|w| w.starts_with("--")) {
            if line.starts_with('-') {
                flag = Some(f.trim_end_matches(',').to_string());
            }
        }
        if line.starts_with("Completion model") {
            let f = flag.clone().expect("a flag before its help");
            assert!(
                COMPLETION_FLAG_SETS
                    .iter()
                    .any(|fl| fl.contains(&f.as_str())),
                "tests/stall.rs does not stall the completion model with {f}"
            );
        }
    }
}
