//! The tests that need clients served at the same time, which the blocking
//! model by design does not do (it serves them in turn): one per model of
//! `for_each_concurrent_model!` (tests/util).

use super::*;

macro_rules! concurrent_model_tests {
    ($($model:ident),* $(,)?) => {$(
        mod $model {
            const M: &str = stringify!($model);
            #[test] fn five_hundred_concurrent_connections_all_verified() { super::five_hundred_concurrent_connections_all_verified(M) }
            #[test] fn a_client_that_never_reads_does_not_stall_the_others() { super::a_client_that_never_reads_does_not_stall_the_others(M) }
            #[test] fn three_workers_serve_every_connection() { super::three_workers_serve_every_connection(M) }
            #[test] fn connections_over_the_limit_are_closed_and_counted() { super::connections_over_the_limit_are_closed_and_counted(M) }
            #[cfg(unix)]
            #[test] fn sigterm_wakes_every_idle_client_long_before_the_drain_deadline() { super::sigterm_wakes_every_idle_client_long_before_the_drain_deadline(M) }
            #[cfg(target_os = "linux")]
            #[test] fn a_hundred_slow_readers_cost_bounded_memory_and_others_are_served() { super::a_hundred_slow_readers_cost_bounded_memory_and_others_are_served(M) }
            #[cfg(target_os = "linux")]
            #[test] fn out_of_descriptors_it_keeps_serving_without_spinning_then_recovers() { super::out_of_descriptors_it_keeps_serving_without_spinning_then_recovers(M) }
        }
    )*};
}

for_each_concurrent_model!(concurrent_model_tests);

/// Every client blocked waiting for its next message is woken by the
/// shutdown itself, not by the drain deadline's close: with 300 idle
/// clients (300 threads blocked in `read`, for threaded) and a 120 s
/// deadline, the server finishes and every client sees EOF in far less.
#[cfg(unix)]
fn sigterm_wakes_every_idle_client_long_before_the_drain_deadline(model: &str) {
    let server = Server::start(model, &["--drain-timeout", "120s"]);
    let mut clients: Vec<TcpStream> = (0..300).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    let t = Instant::now();
    server.signal(libc::SIGTERM);
    // Each client sees the server's end of stream, then closes: the drain
    // then has nothing left to wait for.
    for c in clients {
        let mut c = c;
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap_or(1), 0, "{model}: no EOF");
    }
    let (status, _, out) = server.wait_exit();
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "{model}: {out}");
    assert!(out.contains("served 300 connections"), "{model}: {out}");
    // Generous for a loaded machine, and still a sixth of the deadline.
    assert!(took < Duration::from_secs(20), "{model}: took {took:?}");
}

fn five_hundred_concurrent_connections_all_verified(model: &str) {
    let server = Server::start(model, &[]);
    stress_all_verified(&server, 500, 20);
}

fn a_client_that_never_reads_does_not_stall_the_others(model: &str) {
    let mut server = Server::start(model, &[]);
    let mut flood = server.connect();
    let sent = send_until_stalled(&mut flood, model);
    // While that client is backpressured, another one is served as usual.
    let mut other = server.connect();
    other.write_all(b"still serving?").unwrap();
    let mut back = [0u8; 14];
    other.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still serving?", "{model}: the echo (as bytes)");
    // And the flooding client is still owed, and gets, everything.
    read_back_stream(&mut flood, sent, model);
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}

fn three_workers_serve_every_connection(model: &str) {
    // More workers than this machine may have cores: for epoll that is
    // three listeners in one SO_REUSEPORT group, each on its own thread.
    let server = Server::start(model, &["--workers", "3"]);
    stress_all_verified(&server, 60, 50);
}

fn connections_over_the_limit_are_closed_and_counted(model: &str) {
    let server = Server::start(model, &["--max-connections", "2"]);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = server.connect();
            s.write_all(&[i]).unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s
        })
        .collect();
    // The third is accepted by the kernel, then closed by the server at once.
    let mut third = server.connect();
    let _ = third.write_all(b"over the limit");
    match read_until_closed(&mut third) {
        Ok(n) => assert_eq!(n, 0, "{model}: a rejected connection got an echo"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{model}: the connection over the limit was not closed"
        ),
    }
    // The two admitted ones are still served.
    for (i, s) in held.iter_mut().enumerate() {
        s.write_all(b"ok").unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("{model}: client {i}: {e}"));
    }
    // Once one leaves, a new one is admitted (the server notices the close
    // a little later, hence the retries).
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    while !round_trip(server.addr, b"room again") {
        assert!(Instant::now() < deadline, "{model}: no room after a close");
        std::thread::sleep(Duration::from_millis(50));
    }
    #[cfg(unix)]
    {
        let (status, _, out) = server.signal_and_wait(libc::SIGTERM);
        assert_eq!(status.code(), Some(0), "{model}: {out}");
        assert!(out.contains("over the connection limit"), "{model}: {out}");
    }
}

/// 100 clients each try to send 8 MiB and read nothing. Every server but
/// blocking holds a bounded amount per client (epoll and completion: up to
/// `max_buffered`; threaded and tokio: one 16 KiB buffer), so its memory
/// grows by far less than what was sent, and a new client is still served.
#[cfg(target_os = "linux")]
fn a_hundred_slow_readers_cost_bounded_memory_and_others_are_served(model: &str) {
    use crate::util::{raise_own_open_files, rss_kib};
    raise_own_open_files(1024);
    let server = Server::start(model, &[]);
    let pid = server.child.id();
    assert!(round_trip(server.addr, b"warm"), "{model}");
    let before = rss_kib(pid);
    const CLIENTS: usize = 100;
    const EACH: usize = 8 << 20;
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    for c in &clients {
        c.set_nonblocking(true).unwrap();
    }
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut sent = [0usize; CLIENTS];
    let mut last_progress = [Instant::now(); CLIENTS];
    let mut active = [true; CLIENTS];
    // Bounded: a client stops when it has sent everything or the server has
    // taken nothing from it for a second; the whole flood stops at WAIT.
    let deadline = Instant::now() + WAIT;
    while active.iter().any(|&a| a) && Instant::now() < deadline {
        let mut progressed = false;
        for i in 0..CLIENTS {
            if !active[i] {
                continue;
            }
            let want = chunk.len().min(EACH - sent[i]);
            match (&clients[i]).write(&chunk[..want]) {
                Ok(n) => {
                    sent[i] += n;
                    last_progress[i] = Instant::now();
                    progressed = true;
                    if sent[i] >= EACH {
                        active[i] = false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if last_progress[i].elapsed() > Duration::from_secs(1) {
                        active[i] = false;
                    }
                }
                Err(e) => panic!(
                    "{model}: client {i} write failed after {} bytes: {e}",
                    sent[i]
                ),
            }
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let after = rss_kib(pid);
    let total: usize = sent.iter().sum();
    let grew = after.saturating_sub(before);
    eprintln!(
        "{model}: {CLIENTS} slow readers, {} MiB sent unread, server RSS +{grew} KiB",
        total >> 20
    );
    assert!(
        grew < 64 * 1024,
        "{model}: server RSS grew by {grew} KiB after {total} unread bytes"
    );
    assert!(
        round_trip(server.addr, b"still serving"),
        "{model}: a new client is not served"
    );
    drop(clients);
}

/// A server limited to 256 descriptors gets 600 connections. It keeps
/// serving the client it had, does not spin on the listener that stays
/// readable, logs the failure about once a second, and accepts again once
/// the extra connections are gone.
#[cfg(target_os = "linux")]
fn out_of_descriptors_it_keeps_serving_without_spinning_then_recovers(model: &str) {
    use crate::util::{cpu_time, limit_open_files, raise_own_open_files};
    raise_own_open_files(2048);
    let mut cmd = ringport();
    cmd.args(["serve", "--model", model, "--listen", "127.0.0.1:0"]);
    limit_open_files(&mut cmd, 256);
    let mut server = Server::start_cmd(cmd, model);
    let pid = server.child.id();
    let mut first = server.connect();
    first.write_all(b"before").unwrap();
    let mut b = [0u8; 6];
    first.read_exact(&mut b).unwrap();

    let extra: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, WAIT).ok())
        .collect();
    assert!(
        extra.len() >= 300,
        "{model}: only {} connections",
        extra.len()
    );
    let err = server.wait_stderr("accept failed");
    assert!(
        err.contains("accept failed"),
        "{model}: never ran out: {err}"
    );

    // A 2 s window: CPU used and lines logged.
    let lines = |s: &str| s.matches("accept failed").count();
    let (cpu0, logged0, t0) = (cpu_time(pid), lines(&server.stderr()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (cpu1, logged1, window) = (cpu_time(pid), lines(&server.stderr()), t0.elapsed());
    let busy = (cpu1 - cpu0).as_secs_f64() / window.as_secs_f64();
    // Spinning would be ~100%; a loaded machine cannot make a paused server
    // look busier than this.
    assert!(
        busy < 0.2,
        "{model}: {:.0}% CPU while out of descriptors",
        busy * 100.0
    );
    let logged = logged1 - logged0;
    eprintln!(
        "{model}: out of descriptors: {:.1}% CPU and {logged} 'accept failed' lines over {window:?}",
        busy * 100.0
    );
    assert!(
        logged <= 1 + window.as_secs() as usize + 1,
        "{model}: {logged} 'accept failed' lines in {window:?}"
    );

    // The client it had is still served.
    first.write_all(b"during").unwrap();
    first.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"during", "{model}: the echo (as bytes)");

    // Without the extra connections it accepts again.
    drop(extra);
    let deadline = Instant::now() + WAIT;
    while !round_trip(server.addr, b"after") {
        assert!(Instant::now() < deadline, "{model}: does not accept again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.is_running(),
        "{model}: the server exited; stderr: {}",
        server.stderr()
    );
}
