//! The state machine under arbitrary interleavings of partial receives,
//! short sends, backpressure and end of stream.
use super::tests::{now, Cmd, TestOp};
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Ev {
    /// The peer's next `len` bytes arrive (if a receive is armed).
    Deliver(usize),
    /// The send in flight completes with this fraction of what it asked for (at least 1 byte).
    Send(f64),
    /// The multishot receive ends by itself (ring ran dry); must be re-armed.
    RecvEnds,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        4 => (1usize..5000).prop_map(Ev::Deliver),
        4 => (0.0f64..1.0).prop_map(Ev::Send),
        1 => Just(Ev::RecvEnds),
    ]
}

struct Sim {
    conn: Conn<TestOp, Vec<u8>>,
    recv_armed: bool,
    /// The armed receive is one-shot, with this limit.
    once: Option<usize>,
    send: Option<(Vec<u8>, usize)>,
    /// The send in flight is quiet.
    quiet: bool,
    /// A quiet send that went out in full: as on io_uring, its completion
    /// is not seen until another one comes (buffer, offset, count).
    parked: Option<(Vec<u8>, usize, usize)>,
    closed: bool,
    /// `ShutdownWrite` was asked for: the FIN is out.
    fin_sent: bool,
    input: Vec<u8>,
    fed: usize,
    output: Vec<u8>,
    max: usize,
    peak: usize,
    /// The most memory the connection's buffers took at once, the send
    /// in flight's included.
    peak_memory: usize,
}

impl Sim {
    fn apply(&mut self, out: Vec<Cmd>) {
        for cmd in out {
            match cmd {
                Cmd::Recv(limit) => {
                    assert!(!self.recv_armed, "two receives armed");
                    assert!(limit > 0);
                    self.recv_armed = true;
                    self.once = None;
                }
                Cmd::RecvOnce(limit) => {
                    assert!(!self.recv_armed, "two receives armed");
                    assert!(limit > 0);
                    self.recv_armed = true;
                    self.once = Some(limit);
                }
                Cmd::Send { buf, offset, quiet } => {
                    assert!(
                        self.send.is_none() && self.parked.is_none(),
                        "two sends in flight"
                    );
                    assert!(offset < buf.len());
                    self.send = Some((buf, offset));
                    self.quiet = quiet;
                }
                Cmd::CancelRecv => {
                    // The cancel lands: the receive ends with ECANCELED.
                    assert!(self.recv_armed);
                    self.recv_armed = false;
                    let mut o = vec![];
                    self.conn
                        .on_recv_end(Err(ringport_completion::cancelled_error()), false);
                    self.conn.pump(&mut o);
                    self.apply(o);
                }
                Cmd::CancelSend => panic!("no error happened, nothing to cancel"),
                Cmd::Release(_) => panic!("no error happened, nothing to give back unsent"),
                Cmd::ShutdownWrite => {
                    assert!(self.send.is_none(), "FIN with a send in flight");
                    assert!(!self.fin_sent, "FIN twice");
                    self.fin_sent = true;
                }
                Cmd::Close => {
                    assert!(
                        !self.recv_armed && self.send.is_none(),
                        "close with ops in flight"
                    );
                    assert!(!self.closed, "closed twice");
                    self.closed = true;
                }
            }
        }
        self.peak = self.peak.max(self.conn.held());
        let in_flight = self
            .send
            .as_ref()
            .map(|(b, _)| b.capacity())
            .or(self.parked.as_ref().map(|(b, _, _)| b.capacity()))
            .unwrap_or(0);
        self.peak_memory = self.peak_memory.max(self.conn.capacity() + in_flight);
    }

    /// Another completion arrived: a parked quiet send's comes with it, first.
    fn unpark(&mut self) {
        if let Some((buf, _offset, n)) = self.parked.take() {
            let mut out = vec![];
            self.conn.on_send(Ok(n), buf, now());
            self.conn.pump(&mut out);
            self.apply(out);
        }
    }

    fn step(&mut self, ev: &Ev) {
        let mut out = vec![];
        if !matches!(ev, Ev::Send(_)) {
            // A quiet send is finished inside the submit that starts it,
            // before anything else can happen: in full (parked), unless
            // an `Ev::Send` made it short first.
            if self.quiet && self.send.is_some() {
                self.step(&Ev::Send(1.0));
            }
            // Whatever happens next brings the parked completion along.
            self.unpark();
        }
        match *ev {
            Ev::Deliver(len) if self.recv_armed && self.fed < self.input.len() => {
                let len = len
                    .min(self.input.len() - self.fed)
                    .min(self.once.unwrap_or(usize::MAX));
                let data = self.input[self.fed..self.fed + len].to_vec();
                self.fed += len;
                // A one-shot receive ends with its completion.
                let more = self.once.is_none();
                self.recv_armed = more;
                // Half the time, when the connection offers, its bytes go
                // back from the buffer they came in.
                if len % 2 == 0 && self.conn.lends_next_receive() {
                    self.conn.on_recv_lent(data, len, more, now());
                } else {
                    self.conn.on_recv_data(&data, more, now());
                }
                self.conn.pump(&mut out);
            }
            Ev::Send(frac) if self.send.is_some() => {
                let (buf, offset) = self.send.take().unwrap();
                let left = buf.len() - offset;
                let n = ((left as f64 * frac) as usize).clamp(1, left);
                self.output.extend_from_slice(&buf[offset..offset + n]);
                if self.quiet && n == left {
                    // Nothing more happens until the peer acts, which it
                    // can only do through the receive: one must be armed.
                    assert!(self.recv_armed, "a quiet send with no receive armed");
                    self.parked = Some((buf, offset, n));
                    return;
                }
                self.conn.on_send(Ok(n), buf, now());
                self.conn.pump(&mut out);
            }
            Ev::RecvEnds if self.recv_armed => {
                self.recv_armed = false;
                // On io_uring a multishot receive ends by itself when the
                // buffer ring runs dry (ENOBUFS); elsewhere use a cancel.
                let err = if cfg!(target_os = "linux") {
                    io::Error::from_raw_os_error(105)
                } else {
                    ringport_completion::cancelled_error()
                };
                self.conn.on_recv_end(Err(err), false);
                self.conn.pump(&mut out);
            }
            _ => {}
        }
        self.apply(out);
    }
}

proptest! {
    #[test]
    fn bytes_come_back_in_order_within_the_cap_and_close_cleanly(
        input in proptest::collection::vec(any::<u8>(), 0..40_000),
        max in 1024usize..20_000,
        events in proptest::collection::vec(ev(), 0..400),
    ) {
        let mut sim = Sim {
            conn: Conn::new(true, max, now()).lending(true), recv_armed: false, once: None, send: None, quiet: false, parked: None, closed: false, fin_sent: false,
            input, fed: 0, output: vec![], max, peak: 0, peak_memory: 0,
        };
        let mut out = vec![];
        sim.conn.pump(&mut out);
        sim.apply(out);
        for e in &events {
            sim.step(e);
        }
        // Let it finish: deliver the rest, complete every send, then FIN.
        let mut guard = 0;
        while sim.fed < sim.input.len() || sim.send.is_some() {
            guard += 1;
            prop_assert!(guard < 1_000_000, "no progress");
            if sim.send.is_some() {
                sim.step(&Ev::Send(1.0));
            } else {
                prop_assert!(sim.recv_armed, "stuck: nothing in flight, input left");
                sim.step(&Ev::Deliver(4096));
            }
        }
        // The peer's FIN completes the receive (and brings a parked send's
        // completion with it).
        if sim.quiet && sim.send.is_some() {
            sim.step(&Ev::Send(1.0));
        }
        prop_assert!(sim.recv_armed);
        sim.unpark();
        sim.recv_armed = false;
        let mut out = vec![];
        sim.conn.on_recv_end(Ok(()), false);
        sim.conn.pump(&mut out);
        sim.apply(out);
        while sim.send.is_some() {
            sim.step(&Ev::Send(1.0));
        }
        prop_assert!(sim.closed, "closed after FIN once everything was sent");
        prop_assert_eq!(&sim.output, &sim.input);
        // Deliveries are capped at 4999 bytes and land before the cancel does.
        prop_assert!(sim.peak < sim.max + 5000, "peak {} over cap {}", sim.peak, sim.max);
        // And so is the memory behind them: no doubling past the cap,
        // at most one spare on top (a former send buffer, so no larger
        // than the cap and the overshoot).
        let spare = sim.max.min(KEEP_SPARE_UP_TO) + 5000;
        prop_assert!(
            sim.peak_memory < sim.max + 5000 + spare,
            "buffers of {} bytes for a cap of {}", sim.peak_memory, sim.max
        );
        sim.conn.on_close();
        prop_assert!(sim.conn.is_finished());
    }
}

proptest! {
    /// Shutdown at any point: every byte the connection was given comes
    /// back in order, then the FIN (never with a send in flight); what
    /// arrives after it is dropped; the close comes only after the peer's
    /// EOF, with nothing in flight.
    #[test]
    fn shutdown_at_any_point_sends_what_was_received_then_fin_then_closes(
        input in proptest::collection::vec(any::<u8>(), 0..40_000),
        max in 1024usize..20_000,
        events in proptest::collection::vec(ev(), 0..300),
        at in 0usize..300,
    ) {
        let mut sim = Sim {
            conn: Conn::new(true, max, now()).lending(true), recv_armed: false, once: None, send: None, quiet: false, parked: None, closed: false, fin_sent: false,
            input, fed: 0, output: vec![], max, peak: 0, peak_memory: 0,
        };
        let mut out = vec![];
        sim.conn.pump(&mut out);
        sim.apply(out);
        for e in &events[..at.min(events.len())] {
            sim.step(e);
        }
        // The shutdown's wake-up brings a parked send's completion too.
        if sim.quiet && sim.send.is_some() {
            sim.step(&Ev::Send(1.0));
        }
        sim.unpark();
        let mut out = vec![];
        sim.conn.shutdown();
        sim.conn.pump(&mut out);
        sim.apply(out);
        for e in &events[at.min(events.len())..] {
            if sim.fin_sent {
                break;
            }
            sim.step(e);
        }
        let mut guard = 0;
        while sim.send.is_some() {
            guard += 1;
            prop_assert!(guard < 1_000_000, "no progress");
            sim.step(&Ev::Send(1.0));
        }
        prop_assert!(sim.fin_sent, "FIN once nothing is owed");
        let received = sim.fed;
        prop_assert_eq!(&sim.output[..], &sim.input[..received]);
        // Whatever comes after the FIN is dropped.
        prop_assert!(sim.recv_armed, "receiving to drop input until EOF");
        sim.step(&Ev::Deliver(3000));
        prop_assert!(sim.send.is_none());
        prop_assert!(sim.recv_armed);
        prop_assert!(!sim.closed, "not closed before the peer's EOF");
        sim.recv_armed = false;
        let mut out = vec![];
        sim.conn.on_recv_end(Ok(()), false);
        sim.conn.pump(&mut out);
        sim.apply(out);
        prop_assert!(sim.closed);
        prop_assert_eq!(sim.output.len(), received);
        prop_assert_eq!(sim.conn.end_reason(), Some(EndReason::Shutdown));
    }
}
