//! The port contract, checked over loopback sockets: every backend must pass
//! these (on Windows they run under Wine).

use ringport_completion::{is_cancelled, Completion, OpKind, Port, PortConfig, Socket};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Wait (bounded) until a completion of `kind` arrives; returns it and
/// releases every other one.
fn next(port: &mut Port, kind: OpKind) -> Completion {
    let deadline = Instant::now() + WAIT;
    let mut batch = Vec::new();
    let mut found = None;
    while found.is_none() {
        assert!(
            Instant::now() < deadline,
            "no {kind:?} completion within {WAIT:?}"
        );
        port.wait(&mut batch, Some(Duration::from_millis(100)), None)
            .unwrap();
        for c in batch.drain(..) {
            if c.kind == kind && found.is_none() {
                found = Some(c);
            } else {
                let _ = port.release(c);
            }
        }
    }
    found.unwrap()
}

fn accepted(port: &mut Port) -> (TcpStream, Socket) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    port.accept(&listener, 7);
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut c = next(port, OpKind::Accept);
    assert_eq!(c.token, 7);
    c.result.as_ref().expect("accept succeeds");
    let socket = c.take_socket().expect("an accept hands over its socket");
    assert!(c.take_socket().is_none(), "once");
    let _ = port.release(c);
    // The listener may go: the accepted socket lives on.
    std::mem::forget(listener);
    (client, socket)
}

#[test]
fn accept_recv_send_close_round_trip() {
    round_trip(&PortConfig::default());
}

/// `sqpoll` (io_uring `SQPOLL`): the same round trip through a port whose
/// submissions a kernel thread takes; where the backend has no such thread
/// (IOCP), the port refuses to build and says why, never quietly without.
#[test]
fn with_sqpoll_the_round_trip_is_the_same_or_the_port_says_why() {
    let config = PortConfig {
        sqpoll: Some(Duration::from_millis(2)),
        ..PortConfig::default()
    };
    match ringport_completion::probe(&config) {
        Ok(f) => {
            assert!(f.sqpoll, "{f}");
            assert!(!f.defer_taskrun && !f.quiet_send, "{f}");
            round_trip(&config);
        }
        Err(e) => {
            let why = e.to_string();
            assert!(
                why.contains("SQPOLL") || why.contains("unavailable"),
                "{why}"
            );
            assert!(Port::new(&config).is_err());
        }
    }
}

fn round_trip(config: &PortConfig) {
    let mut port = Port::new(config).unwrap();
    let (mut client, socket) = accepted(&mut port);
    client.write_all(b"ping").unwrap();
    let recv_op = port.recv(&socket, 1, 1024);
    let c = next(&mut port, OpKind::Recv);
    assert_eq!(c.token, 1);
    assert_eq!(port.data(&c), b"ping");
    let _ = port.release(c);

    port.send(&socket, 2, b"xxpong".to_vec(), 2);
    let c = next(&mut port, OpKind::Send);
    assert_eq!(*c.result.as_ref().unwrap(), 4);
    let buf = port.release(c).expect("a send gives its buffer back");
    assert_eq!(buf, b"xxpong");
    let mut back = [0u8; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");

    // A multishot receive is still armed: cancel it and reap it before the
    // close, or the kernel's reference would keep the socket open.
    if port.features().multishot_recv {
        port.cancel(recv_op);
        let c = next(&mut port, OpKind::Recv);
        assert!(!c.more);
        let _ = port.release(c);
    }
    port.close(socket, 3);
    let c = next(&mut port, OpKind::Close);
    assert!(c.result.is_ok());
    let _ = port.release(c);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
}

#[test]
fn what_was_received_is_sent_back_from_its_own_buffer() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (mut client, socket) = accepted(&mut port);
    // Many rounds, so that every buffer of the ring is lent at least once
    // and must have come back for the next receive to find one.
    for round in 0..2000u32 {
        let msg = format!("round {round}");
        client.write_all(msg.as_bytes()).unwrap();
        port.recv_once(&socket, 1, 1024);
        let c = next(&mut port, OpKind::Recv);
        assert_eq!(port.data(&c), msg.as_bytes());
        port.send_received(&socket, 2, c);
        let c = next(&mut port, OpKind::Send);
        assert_eq!(*c.result.as_ref().unwrap(), msg.len());
        let _ = port.release(c);
        let mut back = vec![0u8; msg.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    port.close(socket, 3);
    let _ = next(&mut port, OpKind::Close);
}

#[test]
fn peer_close_is_a_zero_byte_receive() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (client, socket) = accepted(&mut port);
    port.recv(&socket, 1, 1024);
    drop(client);
    let c = next(&mut port, OpKind::Recv);
    assert_eq!(*c.result.as_ref().unwrap(), 0);
    assert!(!c.more);
    let _ = port.release(c);
    port.close(socket, 3);
    let _ = next(&mut port, OpKind::Close);
}

#[test]
fn a_cancelled_receive_still_completes_and_says_so() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (_client, socket) = accepted(&mut port);
    let before = port.in_flight();
    let op = port.recv(&socket, 1, 1024);
    // Make sure the receive is really pending in the kernel first.
    let mut batch = Vec::new();
    port.wait(&mut batch, Some(Duration::from_millis(50)), None)
        .unwrap();
    assert!(batch.is_empty());
    port.cancel(op);
    let c = next(&mut port, OpKind::Recv);
    let err = c.result.as_ref().expect_err("cancelled");
    assert!(is_cancelled(err), "{err}");
    assert!(!c.more);
    let _ = port.release(c);
    assert_eq!(port.in_flight(), before, "the receive is over");
    port.close(socket, 3);
    let _ = next(&mut port, OpKind::Close);
}

#[test]
fn a_waker_from_another_thread_ends_the_wait() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let waker = port.waker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        waker.wake();
    });
    let c = next(&mut port, OpKind::Wake);
    assert_eq!(c.token, ringport_completion::reserved::WAKE);
    let _ = port.release(c);
    t.join().unwrap();
}

#[test]
fn a_large_send_completes_with_the_whole_or_a_short_count() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (client, socket) = accepted(&mut port);
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let reader = std::thread::spawn(move || {
        let mut c = client;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < 8 << 20 {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    // Resubmit from the right offset until everything is sent.
    let mut offset = 0;
    let mut buf = data.clone();
    while offset < buf.len() {
        port.send(&socket, 1, buf, offset);
        let c = next(&mut port, OpKind::Send);
        let n = *c.result.as_ref().unwrap();
        assert!(n > 0);
        offset += n;
        buf = port.release(c).unwrap();
    }
    assert!(reader.join().unwrap() == data);
    port.close(socket, 3);
    let _ = next(&mut port, OpKind::Close);
}

#[test]
fn a_shared_port_hands_a_completion_to_whichever_handle_waits() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let Some(share) = port.try_share() else {
        assert!(
            !port.features().shared_port,
            "a port that says it is shared must give out shares"
        );
        return;
    };
    assert!(port.features().shared_port);
    let (mut client, socket) = accepted(&mut port);
    // Another thread waits on its own handle; this one submits and never waits.
    let other = std::thread::spawn(move || {
        let mut other = share.into_port();
        let c = next(&mut other, OpKind::Recv);
        assert_eq!(c.token, 1);
        let data = other.data(&c).to_vec();
        let _ = other.release(c);
        (other.in_flight(), data)
    });
    port.recv(&socket, 1, 1024);
    client.write_all(b"over there").unwrap();
    let (in_flight, data) = other.join().unwrap();
    assert_eq!(data, b"over there");
    assert_eq!(in_flight, 0, "in_flight counts the whole port");
    port.close(socket, 3);
    let _ = next(&mut port, OpKind::Close);
}

#[test]
fn a_cancelled_accept_still_completes_and_says_so() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let op = port.accept(&listener, 7);
    let mut batch = Vec::new();
    port.wait(&mut batch, Some(Duration::from_millis(50)), None)
        .unwrap();
    assert!(batch.is_empty(), "nobody connected");
    let started = Instant::now();
    port.cancel(op);
    let c = next(&mut port, OpKind::Accept);
    let err = c.result.as_ref().expect_err("cancelled");
    assert!(is_cancelled(err), "{err}");
    assert!(!c.more);
    let _ = port.release(c);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(port.in_flight(), 0);
}

#[test]
fn dropping_a_port_cancels_and_reaps_what_is_in_flight() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (client, socket) = accepted(&mut port);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    port.accept(&listener, 8);
    port.recv(&socket, 1, 1024);
    assert!(port.in_flight() >= 2);
    // Without the cancel the teardown would wait out its whole bound.
    let started = Instant::now();
    drop(port);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "teardown took {:?}",
        started.elapsed()
    );
    // The port never owned the socket: closing it is still up to us.
    drop(socket);
    drop(client);
}

#[test]
fn a_quiet_send_comes_back_with_the_next_completion() {
    // A grace period longer than any scheduling delay of the peer thread.
    let config = PortConfig {
        quiet_grace: WAIT,
        ..PortConfig::default()
    };
    let mut port = Port::new(&config).unwrap();
    let (mut client, socket) = accepted(&mut port);
    port.recv(&socket, 1, 1024);
    // The peer reads the echo, then answers: only that answer's receive may
    // end the wait, and the send's completion must come with it.
    let peer = std::thread::spawn(move || {
        let mut back = [0u8; 5];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        client.write_all(b"again").unwrap();
        client
    });
    port.send_quiet(&socket, 2, b"hello".to_vec(), 0);
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let mut first_batch = None;
    while !seen.contains(&OpKind::Recv) {
        assert!(Instant::now() < deadline, "no receive within {WAIT:?}");
        let mut batch = Vec::new();
        port.wait(&mut batch, Some(WAIT), None).unwrap();
        if batch.is_empty() {
            continue;
        }
        let kinds: Vec<OpKind> = batch.iter().map(|c| c.kind).collect();
        first_batch.get_or_insert(kinds.clone());
        for c in batch {
            if c.kind == OpKind::Send {
                assert_eq!(*c.result.as_ref().unwrap(), 5);
            }
            if c.kind == OpKind::Recv {
                assert_eq!(port.data(&c), b"again");
            }
            let _ = port.release(c);
        }
        seen.extend(kinds);
    }
    assert!(seen.contains(&OpKind::Send), "the send completed: {seen:?}");
    if port.features().quiet_send {
        let first = first_batch.unwrap();
        assert!(
            first.contains(&OpKind::Send) && first.contains(&OpKind::Recv),
            "the quiet send's completion alone ended a wait: {first:?}"
        );
    }
    drop(peer.join().unwrap());
}

#[test]
fn a_quiet_send_with_nothing_after_it_is_handed_over_within_the_grace() {
    let config = PortConfig {
        quiet_grace: Duration::from_millis(50),
        ..PortConfig::default()
    };
    let mut port = Port::new(&config).unwrap();
    let (mut client, socket) = accepted(&mut port);
    port.recv(&socket, 1, 1024);
    port.send_quiet(&socket, 2, b"bye".to_vec(), 0);
    // The peer does nothing: the completion still comes (the wait's own
    // timeout is far longer than the grace), and the bytes went out.
    let deadline = Instant::now() + WAIT;
    let mut batch = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no send completion within {WAIT:?}"
        );
        port.wait(&mut batch, Some(WAIT), None).unwrap();
        if let Some(c) = batch.iter().find(|c| c.kind == OpKind::Send) {
            assert_eq!(*c.result.as_ref().unwrap(), 3);
            break;
        }
        batch.clear();
    }
    let mut back = [0u8; 3];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"bye");
}

#[test]
fn quiet_sends_into_a_full_socket_still_complete_in_order() {
    // The peer reads nothing for a while, so on io_uring the first quiet send
    // comes back short and the next finds no room at all (which the port
    // must send again on its own, as an ordinary send); on IOCP a send simply
    // completes once the peer reads. Either way every byte arrives, in order.
    const TOTAL: usize = 16 << 20;
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (mut client, socket) = accepted(&mut port);
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let peer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut got = vec![0u8; TOTAL];
        client.read_exact(&mut got).unwrap();
        assert!(got == expected, "bytes came back out of order");
    });
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent < TOTAL {
        assert!(
            Instant::now() < deadline,
            "sent {sent} of {TOTAL} bytes in 60 s"
        );
        port.send_quiet(&socket, 2, data.clone(), sent);
        let c = next(&mut port, OpKind::Send);
        let n = *c
            .result
            .as_ref()
            .expect("a send into a full socket waits, it does not fail");
        assert!(n > 0 && sent + n <= TOTAL);
        let _ = port.release(c);
        sent += n;
    }
    peer.join().unwrap();
}

/// Receive `len` bytes with one-shot receives, checking them against
/// `expected`; the last completion is returned unreleased, the rest released.
fn receive_checked(port: &mut Port, socket: &Socket, expected: &[u8]) -> Completion {
    let mut got = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "only {got} bytes within {WAIT:?}"
        );
        port.recv_once(socket, 1, 16 * 1024);
        let c = next(port, OpKind::Recv);
        let data = port.data(&c);
        assert!(!data.is_empty(), "EOF after {got} bytes");
        assert!(
            data == &expected[got..got + data.len()],
            "bytes {got}.. differ"
        );
        got += data.len();
        if got == expected.len() {
            return c;
        }
        let _ = port.release(c);
    }
}

/// A port with no receive in flight gives the pages of its receive buffers
/// back to the OS. It must leave a buffer still lent to the caller alone,
/// and later receives must still get the right bytes in them.
#[test]
fn idle_receive_buffers_are_given_back_but_a_lent_one_is_kept_and_reuse_is_exact() {
    let mut port = Port::new(&PortConfig::default()).unwrap();
    let (mut client, socket) = accepted(&mut port);
    // No zero bytes: a page given back reads as zeros.
    let data: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let (first, second) = data.split_at(200_000);
    client.write_all(first).unwrap();
    let held = receive_checked(&mut port, &socket, first);
    let tail = port.data(&held).to_vec();
    // Nothing in flight but a buffer lent: a wait must not touch it.
    let mut batch = Vec::new();
    port.wait(&mut batch, Some(Duration::from_millis(20)), None)
        .unwrap();
    assert!(batch.is_empty(), "{batch:?}");
    assert_eq!(port.data(&held), &tail[..], "a lent buffer was given back");
    let _ = port.release(held);
    // Nothing lent now either: this wait may give every page back.
    port.wait(&mut batch, Some(Duration::from_millis(20)), None)
        .unwrap();
    assert!(batch.is_empty(), "{batch:?}");
    client.write_all(second).unwrap();
    let last = receive_checked(&mut port, &socket, second);
    let _ = port.release(last);
    port.close(socket, 3);
    let _ = next(&mut port, OpKind::Close);
}

/// io_uring reports `POLLRDHUP` to every poll, whatever it asks for. A wait
/// for room on a full socket whose peer has sent its FIN and stopped reading
/// must still wait for room: it once completed at once, every time it was
/// armed, and a relay spun on it at full speed.
#[test]
fn a_write_wait_after_the_peers_fin_waits_for_room() {
    use ringport_completion::{Interest, Relay};
    let mut port = Port::new(&PortConfig::default()).unwrap();
    if !port.features().relay {
        // Readiness waits exist only for the kernel relay (io_uring).
        return;
    }
    let (mut client, socket) = accepted(&mut port);
    client.set_nonblocking(true).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut relay = Relay::new(1 << 20).unwrap();
    // The client writes and never reads; the server relays its bytes back
    // until its socket is full.
    let chunk = vec![0x5au8; 64 * 1024];
    let (mut sent, mut held) = (0usize, 0usize);
    let deadline = Instant::now() + WAIT;
    let full = loop {
        assert!(
            Instant::now() < deadline,
            "the server's socket never filled"
        );
        match client.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("client write: {e}"),
        }
        if let Ok(n) = relay.fill(&socket, relay.capacity() - held) {
            held += n;
        }
        match relay.drain(&socket, held) {
            Ok(n) => held -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && held > 0 => break held,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("drain: {e}"),
        }
    };
    assert!(full > 0 && sent > 0);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50));

    port.poll(&socket, 9, Interest::Write);
    let mut batch = Vec::new();
    for _ in 0..5 {
        port.wait(&mut batch, Some(Duration::from_millis(100)), None)
            .unwrap();
        for c in batch.drain(..) {
            assert_ne!(
                c.kind,
                OpKind::Ready,
                "a write wait completed on a full socket: {:?}",
                c.result
            );
            let _ = port.release(c);
        }
    }
    // The peer reads: room appears, and the wait completes.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    let deadline = Instant::now() + WAIT;
    let c = loop {
        assert!(Instant::now() < deadline, "no room within {WAIT:?}");
        match client.read(&mut buf) {
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("client read: {e}"),
        }
        port.wait(&mut batch, Some(Duration::from_millis(10)), None)
            .unwrap();
        if let Some(i) = batch.iter().position(|c| c.kind == OpKind::Ready) {
            break batch.swap_remove(i);
        }
    };
    assert!(got > 0);
    assert_eq!(c.token, 9);
    assert!(!c.more, "a readiness wait completes once");
    c.result.as_ref().expect("the wait succeeds");
    assert!(
        relay.drain(&socket, full).unwrap() > 0,
        "room to drain into"
    );
}
