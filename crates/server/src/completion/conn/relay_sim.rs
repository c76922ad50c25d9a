//! The kernel relay under arbitrary interleavings: a simulated socket and
//! pipe behind the [`Io`] the state machine drives, peers that write in
//! any sizes, read slowly, send their FIN at any point, and a server that
//! shuts down at any point. Bytes come back in order and whole, whether
//! they went through the port's buffers, the pipe, or both in turn.
use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Recv,
    Send,
    Poll,
}

#[derive(Debug, Clone)]
enum Ev {
    /// The peer writes this many bytes.
    Write(usize),
    /// The peer reads: this much room opens in the server's send buffer.
    Read(usize),
    /// The peer sends its FIN.
    Fin,
    /// The peer sends an urgent (out-of-band) byte: `splice` stops at its
    /// mark and moves nothing more, while the socket stays readable; only
    /// a receive goes past it (and drops the byte, as without
    /// `SO_OOBINLINE`).
    Urgent,
    /// The server begins shutting down.
    Shutdown,
    /// The kernel completes whichever operation it can (receive, send or
    /// readiness wait), this one first.
    Complete(Op),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => (1usize..200_000).prop_map(Ev::Write),
        3 => (1usize..300_000).prop_map(Ev::Read),
        1 => Just(Ev::Fin),
        1 => Just(Ev::Urgent),
        1 => Just(Ev::Shutdown),
        8 => prop_oneof![Just(Op::Recv), Just(Op::Send), Just(Op::Poll)].prop_map(Ev::Complete),
    ]
}

/// One socket, its pipe, and what is in flight on them.
#[derive(Default)]
struct Net {
    /// Bytes the peer wrote that the server has not taken.
    rx: VecDeque<u8>,
    peer_fin: bool,
    /// An urgent mark is at the head of `rx`: `fill` is stuck until a
    /// receive passes it.
    urgent: bool,
    /// Readiness waits that completed.
    wakeups: usize,
    /// Room in the server's send buffer.
    room: usize,
    /// What the peer got back.
    got: Vec<u8>,
    /// Bytes the server took before its FIN went out (owed back).
    owed: usize,
    pipe: Option<VecDeque<u8>>,
    /// The pipe's capacity the next `relay_start` gets.
    pipe_cap: usize,
    nonblocking: bool,
    recv: Option<usize>,
    send: Option<(Vec<u8>, usize)>,
    poll: Option<Interest>,
    cancels: Vec<Op>,
    fin_sent: bool,
    closed: bool,
    relays: usize,
}

impl Net {
    fn take(&mut self, n: usize) -> Vec<u8> {
        if !self.fin_sent {
            self.owed += n;
        }
        self.rx.drain(..n).collect()
    }
}

impl Io for Net {
    type Op = Op;
    type Received = Vec<u8>;
    fn recv(&mut self, max: usize, _once: bool) -> Op {
        // A port without multishot: every receive is one-shot.
        assert!(self.recv.is_none(), "two receives");
        assert!(!self.nonblocking, "a port receive on a relayed socket");
        assert!(!self.closed);
        self.recv = Some(max);
        Op::Recv
    }
    fn send(&mut self, buf: Vec<u8>, offset: usize, _: bool) -> Op {
        assert!(self.send.is_none(), "two sends");
        assert!(!self.nonblocking, "a port send on a relayed socket");
        assert!(offset < buf.len() && !self.fin_sent && !self.closed);
        self.send = Some((buf, offset));
        Op::Send
    }
    fn send_received(&mut self, received: Vec<u8>) -> Op {
        self.send(received, 0, false)
    }
    fn release(&mut self, _: Vec<u8>) {}
    fn cancel(&mut self, op: Op) {
        self.cancels.push(op);
    }
    fn shutdown_write(&mut self) {
        assert!(self.send.is_none() && self.pipe.is_none());
        self.fin_sent = true;
    }
    fn close(&mut self) {
        assert!(
            self.recv.is_none() && self.send.is_none() && self.poll.is_none(),
            "close with operations in flight"
        );
        assert!(!self.closed, "closed twice");
        self.closed = true;
        self.pipe = None;
    }
    fn relay_start(&mut self, capacity: usize, min: usize) -> Option<usize> {
        assert!(self.pipe.is_none() && self.recv.is_none() && self.send.is_none());
        self.relays += 1;
        let capacity = capacity.min(self.pipe_cap);
        if capacity < min {
            return None;
        }
        self.pipe = Some(VecDeque::new());
        self.nonblocking = true;
        Some(capacity)
    }
    fn fill(&mut self, max: usize) -> io::Result<usize> {
        assert!(self.nonblocking && max > 0);
        let held = self.pipe.as_ref().expect("a pipe").len();
        assert!(
            held + max <= self.pipe_cap,
            "more asked than the pipe has room for"
        );
        if self.urgent {
            // tcp_splice_read at the urgent mark: nothing, and with the
            // FIN already in, 0.
            return if self.peer_fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        if self.rx.is_empty() {
            return if self.peer_fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = max.min(self.rx.len());
        let bytes = self.take(n);
        self.pipe.as_mut().unwrap().extend(bytes);
        Ok(n)
    }
    fn drain(&mut self, max: usize) -> io::Result<usize> {
        assert!(self.nonblocking && !self.fin_sent);
        let pipe = self.pipe.as_mut().expect("a pipe");
        assert!(max > 0 && max <= pipe.len());
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = max.min(self.room);
        self.room -= n;
        self.got.extend(pipe.drain(..n));
        Ok(n)
    }
    fn poll(&mut self, interest: Interest) -> Op {
        assert!(self.poll.is_none(), "two readiness waits");
        self.poll = Some(interest);
        Op::Poll
    }
    fn relay_end(&mut self) {
        assert!(
            self.pipe.take().expect("a pipe").is_empty(),
            "relay ended with bytes in the pipe"
        );
        self.nonblocking = false;
    }
}

struct Sim {
    conn: Conn<Op, Vec<u8>>,
    net: Net,
    written: Vec<u8>,
}

impl Sim {
    fn new(max_buffered: usize, pipe_cap: usize, lend: bool) -> Sim {
        let mut s = Sim {
            conn: Conn::new(false, max_buffered, Instant::now())
                .lending(lend)
                .relaying(true),
            net: Net {
                pipe_cap,
                ..Net::default()
            },
            written: Vec::new(),
        };
        s.conn.pump(&mut s.net);
        s
    }

    fn step(&mut self, ev: &Ev) {
        match *ev {
            Ev::Write(n) if !self.net.peer_fin => {
                let start = self.written.len();
                let bytes: Vec<u8> = (start..start + n).map(|i| (i % 251) as u8).collect();
                self.written.extend_from_slice(&bytes);
                self.net.rx.extend(bytes);
            }
            Ev::Write(_) => {}
            Ev::Read(n) => self.net.room += n,
            Ev::Fin => self.net.peer_fin = true,
            Ev::Urgent if !self.net.peer_fin => self.net.urgent = true,
            Ev::Urgent => {}
            Ev::Shutdown => self.conn.shutdown(),
            Ev::Complete(first) => {
                for op in [first, Op::Recv, Op::Send, Op::Poll] {
                    if self.complete(op) {
                        break;
                    }
                }
            }
        }
        self.conn.pump(&mut self.net);
        assert!(
            self.conn.held() <= self.conn.max_buffered,
            "held past the cap"
        );
    }

    /// Complete `op` if it is in flight and the kernel could finish it now.
    fn complete(&mut self, op: Op) -> bool {
        let cancelled = self.net.cancels.contains(&op);
        let now = Instant::now();
        match op {
            Op::Recv => {
                let Some(max) = self.net.recv else {
                    return false;
                };
                if cancelled {
                    self.net.recv = None;
                    self.net.cancels.retain(|&o| o != op);
                    self.conn
                        .on_recv_end(Err(ringport_completion::cancelled_error()), false);
                } else if !self.net.rx.is_empty() {
                    // A receive goes past an urgent mark (and drops the byte).
                    self.net.urgent = false;
                    self.net.recv = None;
                    let n = max.min(self.net.rx.len()).min(64 * 1024);
                    let bytes = self.net.take(n);
                    if self.conn.lends_next_receive() {
                        self.conn.on_recv_lent(bytes, n, false, now);
                    } else {
                        self.conn.on_recv_data(&bytes, false, now);
                    }
                } else if self.net.peer_fin {
                    self.net.recv = None;
                    self.conn.on_recv_end(Ok(()), false);
                } else {
                    return false;
                }
            }
            Op::Send => {
                let Some((buf, offset)) = self.net.send.take() else {
                    return false;
                };
                if cancelled {
                    self.net.cancels.retain(|&o| o != op);
                    self.conn
                        .on_send(Err(ringport_completion::cancelled_error()), buf, now);
                } else if self.net.room > 0 {
                    let n = (buf.len() - offset).min(self.net.room);
                    self.net.room -= n;
                    self.net.got.extend_from_slice(&buf[offset..offset + n]);
                    self.conn.on_send(Ok(n), buf, now);
                } else {
                    self.net.send = Some((buf, offset));
                    return false;
                }
            }
            Op::Poll => {
                let Some(interest) = self.net.poll else {
                    return false;
                };
                let ready = match interest {
                    Interest::Read => {
                        !self.net.rx.is_empty() || self.net.peer_fin || self.net.urgent
                    }
                    Interest::Write => self.net.room > 0,
                };
                if cancelled {
                    self.net.cancels.retain(|&o| o != op);
                    self.net.poll = None;
                    self.conn
                        .on_ready(Err(ringport_completion::cancelled_error()), now);
                } else if ready {
                    self.net.poll = None;
                    self.net.wakeups += 1;
                    self.conn.on_ready(Ok(1), now);
                } else {
                    return false;
                }
            }
        }
        true
    }

    /// The peer sends its FIN and reads everything: the connection must
    /// close, having sent back everything it took before its own FIN.
    fn finish(&mut self) {
        self.net.peer_fin = true;
        for _ in 0..100_000 {
            if self.conn.is_finished() || self.net.closed {
                break;
            }
            self.net.room += 1 << 20;
            self.step(&Ev::Complete(Op::Poll));
        }
        assert!(self.net.closed, "never closed: {:?}", self.conn);
        self.conn.on_close();
        assert!(self.conn.is_finished());
        assert_eq!(self.net.got.len(), self.net.owed, "bytes lost or invented");
        assert!(
            self.net.got == self.written[..self.net.owed],
            "bytes out of order or changed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn relayed_or_not_every_byte_comes_back_in_order(
        evs in proptest::collection::vec(ev(), 1..120),
        pipe_cap in prop_oneof![Just(4096usize), Just(65536), Just(262_144), Just(1 << 20)],
        max_buffered in prop_oneof![Just(65536usize), Just(262_144)],
        lend: bool,
    ) {
        let mut sim = Sim::new(max_buffered, pipe_cap, lend);
        for ev in &evs {
            sim.step(ev);
        }
        sim.finish();
    }
}

#[test]
fn a_bulk_receive_moves_the_connection_onto_the_pipe_and_fin_ends_it() {
    let mut sim = Sim::new(256 * 1024, 1 << 20, true);
    sim.step(&Ev::Write(100_000));
    sim.step(&Ev::Read(1 << 20));
    sim.step(&Ev::Complete(Op::Recv));
    // The first 64 KiB go back through the port; the rest through the pipe.
    sim.step(&Ev::Complete(Op::Send));
    assert!(sim.conn.is_relaying());
    assert_eq!(sim.net.got.len(), 100_000);
    sim.step(&Ev::Write(500_000));
    sim.step(&Ev::Complete(Op::Poll));
    assert_eq!(sim.net.got.len(), 600_000);
    assert_eq!(sim.net.relays, 1);
    sim.finish();
}

#[test]
fn a_bulk_sender_whose_peer_reads_slowly_is_relayed_too() {
    // The first write arrives in a piece just under the bulk mark (TCP
    // pushed it at half the first window), and the peer reads a write's
    // worth only after it has sent the next, so every receive after the
    // first finds something owed.
    let mut sim = Sim::new(256 * 1024, 1 << 20, false);
    sim.step(&Ev::Write(32_741));
    sim.step(&Ev::Complete(Op::Recv));
    assert!(!sim.conn.is_relaying());
    for _ in 0..20 {
        sim.step(&Ev::Write(65_536));
        sim.step(&Ev::Complete(Op::Recv));
        sim.step(&Ev::Read(65_536));
        sim.step(&Ev::Complete(Op::Send));
        sim.step(&Ev::Complete(Op::Poll));
    }
    assert!(sim.conn.is_relaying());
    assert_eq!(sim.net.relays, 1);
    sim.finish();
    assert_eq!(sim.net.got.len(), 32_741 + 20 * 65_536);
}

#[test]
fn a_pipe_too_small_keeps_the_connection_on_the_port() {
    let mut sim = Sim::new(256 * 1024, 4096, false);
    sim.step(&Ev::Write(100_000));
    sim.step(&Ev::Read(1 << 20));
    for _ in 0..10 {
        sim.step(&Ev::Complete(Op::Recv));
        sim.step(&Ev::Complete(Op::Send));
    }
    assert!(!sim.conn.is_relaying());
    assert_eq!(sim.net.relays, 1, "tried once, then never again");
    assert_eq!(sim.net.got.len(), 100_000);
    sim.finish();
}

#[test]
fn small_messages_never_relay() {
    let mut sim = Sim::new(256 * 1024, 1 << 20, true);
    for _ in 0..50 {
        sim.step(&Ev::Write(512));
        sim.step(&Ev::Read(512));
        sim.step(&Ev::Complete(Op::Recv));
        sim.step(&Ev::Complete(Op::Send));
    }
    assert_eq!(sim.net.relays, 0);
    sim.finish();
}

#[test]
fn urgent_data_sends_the_connection_back_to_the_port_instead_of_spinning() {
    let mut sim = Sim::new(256 * 1024, 1 << 20, true);
    sim.step(&Ev::Write(64 * 1024));
    sim.step(&Ev::Read(1 << 30));
    sim.step(&Ev::Complete(Op::Recv));
    sim.step(&Ev::Complete(Op::Send));
    assert!(sim.conn.is_relaying());
    sim.step(&Ev::Urgent);
    sim.step(&Ev::Write(1000));
    for _ in 0..10 {
        sim.step(&Ev::Complete(Op::Poll));
        sim.step(&Ev::Complete(Op::Recv));
        sim.step(&Ev::Complete(Op::Send));
    }
    assert!(
        !sim.conn.is_relaying(),
        "still relaying past the urgent mark"
    );
    assert!(
        sim.net.wakeups <= 2,
        "{} wake-ups for one urgent byte",
        sim.net.wakeups
    );
    assert_eq!(sim.net.got.len(), 64 * 1024 + 1000);
    sim.finish();
}

#[test]
fn a_peer_that_stops_reading_leaves_the_relay_waiting_to_write_and_an_abort_cancels_it() {
    let mut sim = Sim::new(256 * 1024, 1 << 20, true);
    sim.step(&Ev::Read(64 * 1024));
    sim.step(&Ev::Write(64 * 1024));
    sim.step(&Ev::Complete(Op::Recv));
    sim.step(&Ev::Complete(Op::Send));
    assert!(sim.conn.is_relaying());
    sim.step(&Ev::Write(2_000_000));
    sim.step(&Ev::Complete(Op::Poll));
    assert_eq!(sim.net.poll, Some(Interest::Write));
    assert!(sim.conn.held() <= 256 * 1024);
    sim.conn.abort(EndReason::Idle);
    sim.conn.pump(&mut sim.net);
    assert_eq!(sim.net.cancels, vec![Op::Poll]);
    assert!(sim.complete(Op::Poll));
    sim.conn.pump(&mut sim.net);
    assert!(sim.net.closed);
}
