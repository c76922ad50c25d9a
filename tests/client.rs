//! `ringport client` is byte-transparent and checks every byte it gets;
//! `stress` and `serve` survive a closed stdout; a server killed mid-run
//! fails the run.

use crate::stress::spawn_server;
use crate::util::{ringport, wait_with_timeout, Server, WAIT};
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Run `ringport client ARGS` with `input` on stdin; status, stdout, stderr.
fn client(args: &[&str], input: Vec<u8>) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut child = ringport()
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringport client");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_with_timeout(&mut child, WAIT).expect("client finished in time");
    feeder.join().unwrap();
    (status, reader.join().unwrap(), err_reader.join().unwrap())
}

#[test]
fn client_is_byte_transparent_for_lines_larger_than_the_socket_buffers() {
    let server = Server::start("epoll", &[]);
    let addr = server.addr.to_string();
    // 8 MiB without a newline but the last, far more than both sides'
    // buffers: a client that writes it all before reading would deadlock.
    let mut big: Vec<u8> = crate::util::pattern(8 << 20, 3)
        .into_iter()
        .map(|b| if b == b'\n' { b'x' } else { b })
        .collect();
    big.push(b'\n');
    // Not UTF-8 either, and more lines after it.
    big.extend_from_slice(b"\xff\xfe\x00 bytes\nlast line without newline");
    let (status, out, err) = client(&[&addr, "--timeout", "20s"], big.clone());
    assert!(status.success(), "{err}");
    assert_eq!(out.len(), big.len(), "{err}");
    assert!(out == big, "the output is the input, byte for byte");
}

#[test]
fn client_refuses_a_reply_that_is_not_the_echo() {
    let addr = spawn_server(|mut s| {
        let mut buf = [0u8; 1024];
        while let Ok(1..) = s.read(&mut buf) {
            if s.write_all(b"FIXED TEXT\n").is_err() {
                return;
            }
        }
    });
    let (status, out, err) = client(&[&addr.to_string()], b"hello there\n".to_vec());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("differs from what was sent at byte 0")
            && err.contains(&format!("{addr} is not an echo server")),
        "{err}"
    );
    assert!(out.is_empty(), "nothing unverified is printed: {out:?}");
}

#[test]
fn client_refuses_a_short_reply_and_bytes_after_the_echo() {
    // Echoes 3 bytes and closes.
    let short = spawn_server(|mut s| {
        let mut buf = [0u8; 1024];
        if let Ok(n @ 1..) = s.read(&mut buf) {
            let _ = s.write_all(&buf[..n.min(3)]);
        }
    });
    let (status, _, err) = client(&[&short.to_string(), "-m", "hello"], Vec::new());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("after echoing 3 of 5 bytes"), "{err}");

    // Echoes exactly, then adds bytes a moment later.
    let extra = spawn_server(|mut s| {
        let mut buf = [0u8; 1024];
        if let Ok(n @ 1..) = s.read(&mut buf) {
            let _ = s.write_all(&buf[..n]);
            std::thread::sleep(Duration::from_millis(20));
            let _ = s.write_all(b"more");
        }
        let _ = s.read(&mut buf);
    });
    let (status, _, err) = client(&[&extra.to_string(), "-m", "hello"], Vec::new());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("after the last echo"), "{err}");
}

#[test]
fn client_timeout_bounds_writes_too() {
    // A server that never reads: the client's write blocks once the
    // buffers are full, and --timeout must end it.
    let addr = spawn_server(|s| {
        std::thread::sleep(Duration::from_secs(20));
        drop(s);
    });
    let t = Instant::now();
    let (status, _, err) = client(
        &[&addr.to_string(), "--timeout", "1s"],
        vec![b'a'; 32 << 20],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}: {err}",
        t.elapsed()
    );
    assert!(err.contains("within"), "{err}");
}

#[cfg(unix)]
#[test]
fn serve_survives_a_closed_stdout_and_exits_0_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    let mut child = ringport()
        .args(["serve", "--model", "epoll", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The reader is gone, as after `ringport serve | head -1`.
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(crate::util::round_trip(addr, b"still serving"), "serves on");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_with_timeout(&mut child, WAIT).expect("exits after SIGTERM");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Run `ringport ARGS` with its stdout closed before it writes anything.
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut cmd = ringport();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let mut err = child.stderr.take().unwrap();
    let h = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_with_timeout(&mut child, WAIT).expect("finished in time");
    (status, h.join().unwrap())
}

#[test]
fn stress_into_a_closed_pipe_keeps_its_exit_status_and_does_not_panic() {
    let server = Server::start("epoll", &[]);
    let addr = server.addr.to_string();
    let (status, err) =
        with_closed_stdout(&["stress", &addr, "-c", "2", "-n", "50", "--json", "-"]);
    assert_eq!(status.code(), Some(0), "a clean run: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let closed = format!("127.0.0.1:{}", crate::util::free_port());
    let (status, err) = with_closed_stdout(&["stress", &closed, "-n", "5"]);
    assert_eq!(status.code(), Some(1), "a failed run stays failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_server_killed_mid_run_fails_the_run() {
    for engine in ["events", "threads"] {
        let server = Server::start("threaded", &[]);
        let addr = server.addr.to_string();
        let mut cmd = ringport();
        cmd.args([
            "stress", &addr, "-c", "4", "-d", "5s", "--engine", engine, "--json", "-",
        ]);
        let stress = std::thread::spawn(move || crate::util::run_cmd(cmd));
        std::thread::sleep(Duration::from_millis(700));
        drop(server); // SIGKILL
        let (status, out, err) = stress.join().unwrap();
        assert_eq!(status.code(), Some(1), "{engine}: {out}{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["connections_failed"], 4, "{engine}: {json:#}");
    }
}
