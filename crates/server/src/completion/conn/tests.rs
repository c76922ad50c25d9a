//! Unit tests of the connection state machine, over a recording [`Io`].
use super::*;

/// What the state machine asked for, as the tests see it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cmd {
    /// A receive (multishot where the port has them).
    Recv(usize),
    /// A one-shot receive.
    RecvOnce(usize),
    Send {
        buf: Vec<u8>,
        offset: usize,
        quiet: bool,
    },
    CancelRecv,
    CancelSend,
    ShutdownWrite,
    Close,
    /// A receive's buffer given back unsent.
    Release(Vec<u8>),
}

/// A connection has at most one receive and one send in flight, so which
/// of the two is enough to name an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TestOp {
    Recv,
    Send,
}

impl Io for Vec<Cmd> {
    type Op = TestOp;
    /// A receive's bytes, as its buffer.
    type Received = Vec<u8>;
    fn send_received(&mut self, received: Vec<u8>) -> TestOp {
        self.push(Cmd::Send {
            buf: received,
            offset: 0,
            quiet: false,
        });
        TestOp::Send
    }
    fn release(&mut self, received: Vec<u8>) {
        self.push(Cmd::Release(received));
    }
    fn recv(&mut self, max: usize, once: bool) -> TestOp {
        self.push(if once {
            Cmd::RecvOnce(max)
        } else {
            Cmd::Recv(max)
        });
        TestOp::Recv
    }
    fn send(&mut self, buf: Vec<u8>, offset: usize, quiet: bool) -> TestOp {
        self.push(Cmd::Send { buf, offset, quiet });
        TestOp::Send
    }
    fn cancel(&mut self, op: TestOp) {
        self.push(match op {
            TestOp::Recv => Cmd::CancelRecv,
            TestOp::Send => Cmd::CancelSend,
        });
    }
    fn shutdown_write(&mut self) {
        self.push(Cmd::ShutdownWrite);
    }
    fn close(&mut self) {
        self.push(Cmd::Close);
    }
    // These tests never allow a relay (`relay_sim.rs` tests it).
    fn relay_start(&mut self, _: usize, _: usize) -> Option<usize> {
        None
    }
    fn fill(&mut self, _: usize) -> io::Result<usize> {
        unreachable!("no relay")
    }
    fn drain(&mut self, _: usize) -> io::Result<usize> {
        unreachable!("no relay")
    }
    fn poll(&mut self, _: Interest) -> TestOp {
        unreachable!("no relay")
    }
    fn relay_end(&mut self) {
        unreachable!("no relay")
    }
}

pub(super) fn now() -> Instant {
    Instant::now()
}

fn sends(out: &[Cmd]) -> Vec<(Vec<u8>, usize)> {
    out.iter()
        .filter_map(|c| match c {
            Cmd::Send { buf, offset, .. } => Some((buf.clone(), *offset)),
            _ => None,
        })
        .collect()
}

#[test]
fn recv_then_send_then_recv() {
    let mut c = Conn::new(false, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Recv(1024)]);
    out.clear();
    c.on_recv_data(b"hello", false, now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(b"hello".to_vec(), 0)]);
    assert!(out.iter().any(|c| matches!(c, Cmd::Recv(_))), "{out:?}");
}

fn quiet(out: &[Cmd]) -> Option<bool> {
    out.iter().find_map(|c| match c {
        Cmd::Send { quiet, .. } => Some(*quiet),
        _ => None,
    })
}

#[test]
fn an_echo_is_quiet_only_while_the_peer_next_event_is_awaited_anyway() {
    // Multishot receive armed, nothing queued: the peer's next bytes or
    // FIN will complete a receive, so the send's completion can wait.
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"hi", true, now());
    c.pump(&mut out);
    assert_eq!(quiet(&out), Some(true), "{out:?}");
    out.clear();
    // Bytes queued behind the send in flight: the short rest of a send
    // must not be quiet, or those bytes could wait for the peer.
    c.on_recv_data(b"more", true, now());
    c.pump(&mut out);
    c.on_send(Ok(1), b"hi".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(quiet(&out), Some(false), "{out:?}");
    out.clear();
    // A one-shot receive armed again counts too; a stopping connection
    // sends nothing quietly.
    let mut c2 = Conn::new(false, 1024, now());
    c2.pump(&mut out);
    c2.on_recv_data(b"bye", false, now());
    c2.pump(&mut out);
    assert_eq!(
        quiet(&out),
        Some(true),
        "a one-shot receive is re-armed: {out:?}"
    );
    out.clear();
    c2.shutdown();
    c2.pump(&mut out);
    out.clear();
    c2.on_send(Ok(3), b"bye".to_vec(), now());
    c2.pump(&mut out);
    // Stopping: bytes delivered before the receive's cancel landed are
    // owed and go out, but not quietly.
    c2.on_recv_data(b"late", false, now());
    c2.pump(&mut out);
    assert_eq!(sends(&out), vec![(b"late".to_vec(), 0)], "{out:?}");
    assert_eq!(quiet(&out), Some(false), "{out:?}");
}

#[test]
fn a_send_at_the_cap_is_never_quiet() {
    // At the cap the receive is cancelled: only the send's completion
    // can resume the connection.
    let mut c = Conn::new(true, 8, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"12345678", true, now());
    c.pump(&mut out);
    assert_eq!(quiet(&out), Some(false), "{out:?}");
}

#[test]
fn short_send_resumes_from_the_right_offset_before_queued_bytes() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"abcdef", true, now());
    c.pump(&mut out);
    out.clear();
    c.on_recv_data(b"XYZ", true, now());
    c.pump(&mut out);
    assert!(sends(&out).is_empty(), "one send at a time");
    c.on_send(Ok(2), b"abcdef".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(b"abcdef".to_vec(), 2)]);
    out.clear();
    c.on_send(Ok(4), b"abcdef".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(b"XYZ".to_vec(), 0)]);
    assert_eq!(c.echoed, 6);
}

#[test]
fn a_multishot_connection_starts_bounded_and_goes_multishot_on_small_receives() {
    let mut c = Conn::new(true, 100_000, now());
    let mut out = vec![];
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::RecvOnce(100_000)]);
    out.clear();
    // A bulk sender fills whole buffers: still bounded.
    c.on_recv_data(&[0; 16 * 1024], false, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::RecvOnce(100_000 - 16 * 1024)), "{out:?}");
    c.on_send(Ok(16 * 1024), vec![0; 16 * 1024], now());
    c.pump(&mut out);
    out.clear();
    // One small message with nothing held may be the tail of a large
    // write that TCP pushed in two pieces: still bounded.
    c.on_recv_data(b"ping", false, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::RecvOnce(100_000 - 4)), "{out:?}");
    c.on_send(Ok(4), b"ping".to_vec(), now());
    c.pump(&mut out);
    out.clear();
    // The second in a row: interactive.
    c.on_recv_data(b"pong", false, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::Recv(100_000 - 4)), "{out:?}");
}

#[test]
fn a_small_receive_between_large_ones_keeps_the_connection_bounded() {
    let mut c = Conn::new(true, 100_000, now());
    let mut out = vec![];
    c.pump(&mut out);
    for len in [32_741, 3_259, 36_000, 3_000, 36_000] {
        out.clear();
        c.on_recv_data(&vec![7; len], false, now());
        c.pump(&mut out);
        assert!(out.contains(&Cmd::RecvOnce(100_000 - len)), "{out:?}");
        c.on_send(Ok(len), vec![7; len], now());
        c.pump(&mut out);
    }
}

#[test]
fn multishot_receive_is_cancelled_at_the_cap_and_rearmed_after_draining() {
    let mut c = Conn::new(true, 100, now());
    let mut out = vec![];
    c.pump(&mut out);
    // Interactive first (two small receives), so the receive is multishot.
    for _ in 0..2 {
        c.on_recv_data(b"hi", false, now());
        c.pump(&mut out);
        c.on_send(Ok(2), b"hi".to_vec(), now());
        c.pump(&mut out);
    }
    out.clear();
    c.on_recv_data(&[1; 60], true, now());
    c.pump(&mut out);
    out.clear();
    c.on_recv_data(&[2; 60], true, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::CancelRecv), "{out:?}");
    out.clear();
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    assert!(
        !out.iter().any(|c| matches!(c, Cmd::Recv(_))),
        "still over the cap: {out:?}"
    );
    c.on_send(Ok(60), vec![1; 60], now());
    c.pump(&mut out);
    // The queued 60 bytes now go out; 60 held ≥ resume point 50: no receive yet.
    assert_eq!(sends(&out), vec![(vec![2; 60], 0)], "{out:?}");
    assert!(!out.iter().any(|c| matches!(c, Cmd::Recv(_))), "{out:?}");
    out.clear();
    c.on_send(Ok(60), vec![2; 60], now());
    c.pump(&mut out);
    // Drained: receive again, one bounded receive at a time until the
    // traffic looks interactive again.
    assert_eq!(out, vec![Cmd::RecvOnce(100)], "drained: receive again");
}

#[test]
fn after_backpressure_receives_are_bounded_one_shots_until_all_is_sent() {
    let mut c = Conn::new(true, 100, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(&[1; 60], true, now());
    c.pump(&mut out);
    c.on_recv_data(&[2; 40], true, now());
    c.pump(&mut out);
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    out.clear();
    c.on_send(Ok(60), vec![1; 60], now());
    c.pump(&mut out);
    // The queued 40 go out; 40 held, under the resume point: one bounded
    // receive of the room left, not multishot.
    assert_eq!(sends(&out), vec![(vec![2; 40], 0)], "{out:?}");
    assert!(out.contains(&Cmd::RecvOnce(60)), "{out:?}");
    out.clear();
    c.on_recv_data(&[3; 60], false, now());
    c.pump(&mut out);
    assert!(
        !out.iter()
            .any(|c| matches!(c, Cmd::Recv(_) | Cmd::RecvOnce(_))),
        "full again: {out:?}"
    );
    out.clear();
    c.on_send(Ok(40), vec![2; 40], now());
    c.pump(&mut out);
    // The 60 go out: 60 held, over the resume point.
    assert_eq!(sends(&out), vec![(vec![3; 60], 0)], "{out:?}");
    assert!(
        !out.iter()
            .any(|c| matches!(c, Cmd::Recv(_) | Cmd::RecvOnce(_))),
        "{out:?}"
    );
    out.clear();
    c.on_send(Ok(60), vec![3; 60], now());
    c.pump(&mut out);
    // Everything held has gone out: still bounded, until two small
    // receives in a row arrive with nothing held.
    assert_eq!(out, vec![Cmd::RecvOnce(100)]);
    out.clear();
    c.on_recv_data(b"x", false, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::RecvOnce(99)), "{out:?}");
    c.on_send(Ok(1), b"x".to_vec(), now());
    c.pump(&mut out);
    out.clear();
    c.on_recv_data(b"y", false, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::Recv(99)), "{out:?}");
}

#[test]
fn a_short_send_holds_its_whole_buffer_until_it_completes() {
    let mut c = Conn::new(false, 100, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(&[1; 100], false, now());
    c.pump(&mut out);
    out.clear();
    // 90 of 100 out: only 10 are owed, but the kernel still has the
    // whole buffer, so receiving more now would hold up to twice the cap.
    c.on_send(Ok(90), vec![1; 100], now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(vec![1; 100], 90)]);
    assert!(!out.iter().any(|c| matches!(c, Cmd::Recv(_))), "{out:?}");
    assert_eq!((c.buffered(), c.held()), (10, 100));
    out.clear();
    c.on_send(Ok(10), vec![1; 100], now());
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Recv(100)]);
    assert_eq!(c.held(), 0);
}

#[test]
fn the_queue_grows_only_into_the_room_left() {
    let cap = 256 * 1024;
    let mut c = Conn::new(false, cap, now());
    let mut out = vec![];
    c.pump(&mut out);
    // A send of 16 KiB in flight, then receives of odd sizes queue up
    // behind it: doubling alone would end at 2 × 159,000 bytes.
    c.on_recv_data(&[1; 16 * 1024], false, now());
    c.pump(&mut out);
    let mut queued = 0;
    while c.held() < cap {
        let n = 10_600.min(cap - c.held());
        c.on_recv_data(&vec![2; n], false, now());
        c.pump(&mut out);
        queued += n;
        assert!(c.capacity() <= cap - 16 * 1024, "{} bytes", c.capacity());
    }
    assert_eq!(c.buffered(), 16 * 1024 + queued);
}

#[test]
fn one_shot_receive_asks_only_for_the_room_left() {
    let mut c = Conn::new(false, 100, now());
    let mut out = vec![];
    c.pump(&mut out);
    out.clear();
    c.on_recv_data(&[0; 30], false, now());
    c.pump(&mut out);
    assert!(out.contains(&Cmd::Recv(70)), "{out:?}");
}

#[test]
fn half_close_sends_everything_owed_then_closes() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"last words", true, now());
    c.pump(&mut out);
    out.clear();
    c.on_recv_end(Ok(()), false);
    c.pump(&mut out);
    assert!(!out.contains(&Cmd::Close), "a send is still in flight");
    c.on_send(Ok(10), b"last words".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(out.last(), Some(&Cmd::Close));
    assert_eq!(c.end_reason(), Some(EndReason::PeerClosed));
    assert!(!c.is_finished());
    c.on_close();
    assert!(c.is_finished());
}

#[test]
fn reset_cancels_in_flight_ops_and_closes_only_after_reaping_them() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"data", true, now());
    c.pump(&mut out);
    out.clear();
    // The multishot receive fails with ECONNRESET while the send is in flight.
    c.on_recv_end(Err(io::Error::from(io::ErrorKind::ConnectionReset)), false);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::CancelSend]);
    out.clear();
    c.on_send(
        Err(ringport_completion::cancelled_error()),
        b"data".to_vec(),
        now(),
    );
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Close]);
}

#[test]
fn abort_cancels_both_and_closes_once() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"x", true, now());
    c.pump(&mut out);
    out.clear();
    c.abort(EndReason::Shutdown);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::CancelRecv, Cmd::CancelSend]);
    out.clear();
    c.abort(EndReason::Shutdown);
    c.pump(&mut out);
    assert!(out.is_empty(), "asked once");
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    assert!(out.is_empty());
    c.on_send(Ok(1), b"x".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Close]);
    assert_eq!(c.end_reason(), Some(EndReason::Shutdown));
}

#[test]
fn shutdown_drains_the_send_and_the_queue_then_fin_then_drops_input_until_eof() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"first", true, now());
    c.pump(&mut out);
    c.on_recv_data(b"second", true, now());
    c.pump(&mut out);
    out.clear();
    c.shutdown();
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::CancelRecv], "only the receive is cancelled");
    out.clear();
    c.shutdown();
    c.pump(&mut out);
    assert!(out.is_empty(), "asked once");
    // Delivered before the cancel landed: owed too.
    c.on_recv_data(b"third", true, now());
    c.pump(&mut out);
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    assert!(out.is_empty(), "{out:?}");
    c.on_send(Ok(5), b"first".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(b"secondthird".to_vec(), 0)]);
    out.clear();
    // A short send still resumes from where it stopped.
    c.on_send(Ok(4), b"secondthird".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(b"secondthird".to_vec(), 4)]);
    out.clear();
    c.on_send(Ok(7), b"secondthird".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::ShutdownWrite, Cmd::Recv(1024)]);
    out.clear();
    // Unread input is dropped, not echoed; a receive that ends without
    // EOF is armed again.
    c.on_recv_data(b"ignored", false, now());
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Recv(1024)]);
    out.clear();
    c.on_recv_end(Ok(()), false);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Close]);
    assert_eq!(c.end_reason(), Some(EndReason::Shutdown));
    assert_eq!(c.echoed, 16);
    c.on_close();
    assert!(c.is_finished());
}

#[test]
fn shutdown_of_an_idle_connection_fins_at_once() {
    let mut c = Conn::new(false, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    out.clear();
    c.shutdown();
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::CancelRecv]);
    out.clear();
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::ShutdownWrite, Cmd::Recv(1024)]);
}

#[test]
fn abort_after_shutdown_cancels_the_send_a_peer_never_reads() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"stuck", true, now());
    c.pump(&mut out);
    c.shutdown();
    c.pump(&mut out);
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    out.clear();
    // The drain deadline passes with the send still in flight.
    c.abort(EndReason::Shutdown);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::CancelSend]);
    out.clear();
    c.on_send(
        Err(ringport_completion::cancelled_error()),
        b"stuck".to_vec(),
        now(),
    );
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Close]);
}

#[test]
fn abort_while_lingering_cancels_the_receive_then_closes() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.shutdown();
    c.pump(&mut out);
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    out.clear();
    c.abort(EndReason::Shutdown);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::CancelRecv]);
    out.clear();
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Close]);
}

#[test]
fn bytes_that_arrive_while_lingering_are_discarded_and_said_so() {
    let mut c = Conn::new(true, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    assert!(!c.discards_input());
    c.shutdown();
    c.pump(&mut out);
    c.on_recv_end(Err(ringport_completion::cancelled_error()), false);
    c.pump(&mut out);
    assert!(out.contains(&Cmd::ShutdownWrite), "{out:?}");
    // The FIN is out: what comes now is dropped, and `-v` says so.
    assert!(c.discards_input());
    let held = c.buffered();
    c.on_recv_data(b"late", true, now());
    c.pump(&mut out);
    assert_eq!(c.buffered(), held, "nothing is queued to echo");
}

#[test]
fn a_zero_byte_send_is_an_error_not_a_loop() {
    let mut c = Conn::new(false, 1024, now());
    let mut out = vec![];
    c.pump(&mut out);
    c.on_recv_data(b"abc", false, now());
    c.pump(&mut out);
    out.clear();
    c.on_send(Ok(0), b"abc".to_vec(), now());
    c.pump(&mut out);
    assert_eq!(c.end_reason(), Some(EndReason::Error));
}

#[test]
fn bulk_input_goes_back_from_the_buffer_it_arrived_in() {
    let mut c = Conn::new(true, 100_000, now()).lending(true);
    let mut out = vec![];
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::RecvOnce(100_000)]);
    out.clear();
    assert!(
        c.lends_next_receive(),
        "a bulk connection with nothing owed"
    );
    let block = vec![7u8; 16 * 1024];
    c.on_recv_lent(block.clone(), block.len(), false, now());
    assert_eq!(c.held(), block.len(), "the lent buffer counts as held");
    c.pump(&mut out);
    assert_eq!(
        out,
        vec![
            Cmd::RecvOnce(100_000 - block.len()),
            Cmd::Send {
                buf: block.clone(),
                offset: 0,
                quiet: false
            }
        ]
    );
    out.clear();
    // With a send in flight, the next bytes are copied behind it.
    assert!(!c.lends_next_receive());
    c.on_recv_data(&[1; 100], false, now());
    c.pump(&mut out);
    out.clear();
    // A short send from a ring buffer comes back as a copy of its bytes.
    c.on_send(Ok(1000), block.clone(), now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(block.clone(), 1000)]);
    out.clear();
    // In full: an empty buffer back, which is not kept as the spare.
    c.on_send(Ok(block.len() - 1000), Vec::new(), now());
    c.pump(&mut out);
    assert_eq!(sends(&out), vec![(vec![1; 100], 0)]);
    assert_eq!(c.echoed, block.len() as u64);
}

#[test]
fn interactive_and_draining_connections_copy_instead_of_lending() {
    let mut c = Conn::new(true, 100_000, now()).lending(true);
    let mut out = vec![];
    c.pump(&mut out);
    for _ in 0..2 {
        assert!(c.lends_next_receive());
        c.on_recv_lent(b"ping".to_vec(), 4, false, now());
        c.pump(&mut out);
        c.on_send(Ok(4), Vec::new(), now());
        c.pump(&mut out);
    }
    // Two small receives made it interactive: multishot, quiet sends, copies.
    assert!(!c.lends_next_receive());
    let mut d = Conn::new(false, 1024, now()).lending(true);
    d.pump(&mut out);
    assert!(d.lends_next_receive(), "one-shot ports lend too");
    d.shutdown();
    assert!(!d.lends_next_receive(), "not while draining");
    let e: Conn<TestOp, Vec<u8>> = Conn::new(true, 1024, now());
    assert!(
        !e.lends_next_receive(),
        "only where the port lends for free"
    );
}

#[test]
fn an_unsent_lent_buffer_is_given_back_when_the_connection_ends() {
    let mut c = Conn::new(true, 100_000, now()).lending(true);
    let mut out = vec![];
    c.pump(&mut out);
    out.clear();
    c.on_recv_lent(vec![9; 5000], 5000, false, now());
    // The connection fails before its next pump sends the buffer.
    c.abort(EndReason::Idle);
    c.pump(&mut out);
    assert_eq!(out, vec![Cmd::Release(vec![9; 5000]), Cmd::Close]);
}
