//! Unit tests of the readiness model's connection state machine, over a
//! scripted socket.
use super::*;
use proptest::prelude::*;

/// A socket with a script: bytes the client has sent, whether it sent
/// FIN, and how many more bytes the kernel will take before WouldBlock.
#[derive(Default)]
struct Fake {
    incoming: VecDeque<u8>,
    fin: bool,
    write_room: usize,
    out: Vec<u8>,
    write_shut: bool,
    reads: usize,
}

impl Read for Fake {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.incoming.is_empty() {
            return if self.fin {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.incoming.len());
        for (dst, src) in buf.iter_mut().zip(self.incoming.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for Fake {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        assert!(!self.write_shut, "write after shutdown(Write)");
        if self.write_room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.write_room);
        self.write_room -= n;
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Fake {
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

struct Harness {
    conn: Connection<Fake>,
    scratch: Vec<u8>,
    cap: usize,
    echoed: u64,
}

impl Harness {
    fn new(cap: usize, scratch: usize) -> Self {
        Harness {
            conn: Connection::new(Fake::default(), "127.0.0.1:9".parse().unwrap()),
            scratch: vec![0; scratch],
            cap,
            echoed: 0,
        }
    }

    fn fake(&mut self) -> &mut Fake {
        &mut self.conn.sock
    }

    /// An event for both directions, as epoll reports after a change.
    fn event(&mut self) -> Step {
        self.conn.can_read = true;
        self.conn.can_write = true;
        let mut io = Io {
            scratch: &mut self.scratch,
            max_buffered: self.cap,
            verbose: false,
            echoed: 0,
            progressed: false,
        };
        let step = self.conn.drive(&mut io).unwrap();
        self.echoed += io.echoed;
        if step == Step::Finished {
            self.conn.sock.write_shut = true;
        }
        step
    }
}

#[test]
fn echoes_directly_without_buffering_when_the_kernel_takes_it() {
    let mut h = Harness::new(1024, 256);
    h.fake().incoming.extend(b"hello");
    h.fake().write_room = usize::MAX;
    assert_eq!(h.event(), Step::Wait);
    assert_eq!(h.conn.sock.out, b"hello");
    assert_eq!(h.conn.owed.capacity(), 0, "no buffer was committed");
    // One read with data, one that says WouldBlock.
    assert_eq!(h.conn.sock.reads, 2);
    assert_eq!(h.echoed, 5);
}

#[test]
fn stops_reading_at_the_cap() {
    let mut h = Harness::new(1000, 256);
    h.fake().incoming.extend(vec![7u8; 10_000]);
    assert_eq!(h.event(), Step::Wait);
    assert_eq!(h.conn.state, State::Paused);
    assert_eq!(h.conn.owed.len(), 1000);
    assert_eq!(h.conn.sock.incoming.len(), 9000);
    // More events while the client still does not read: no reads at all.
    let reads = h.conn.sock.reads;
    h.event();
    h.event();
    assert_eq!(h.conn.sock.reads, reads);
    assert_eq!(h.conn.owed.len(), 1000);
}

#[test]
fn resumes_reading_only_once_the_buffer_drains() {
    let mut h = Harness::new(1000, 256);
    h.fake().incoming.extend(vec![7u8; 10_000]);
    h.event();
    let reads = h.conn.sock.reads;
    h.fake().write_room = 600;
    h.event();
    assert_eq!(h.conn.state, State::Paused, "400 still owed");
    assert_eq!(h.conn.sock.reads, reads);
    h.fake().write_room = 400;
    h.event();
    // Drained, so it read again at once and filled up again.
    assert!(h.conn.sock.reads > reads);
    assert_eq!(h.conn.state, State::Paused);
    assert_eq!(h.conn.owed.len(), 1000);
    assert_eq!(h.conn.sock.incoming.len(), 8000);
}

#[test]
fn half_close_sends_everything_owed_then_fin() {
    let mut h = Harness::new(1 << 20, 4096);
    let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    h.fake().incoming.extend(&data);
    h.fake().fin = true;
    h.fake().write_room = 10_000;
    assert_eq!(h.event(), Step::Wait);
    assert_eq!(h.conn.state, State::Draining);
    for _ in 0..3 {
        h.fake().write_room = 10_000;
        assert_eq!(h.event(), Step::Wait, "FIN must wait for the owed bytes");
    }
    h.fake().write_room = 10_000;
    assert_eq!(h.event(), Step::Finished);
    assert_eq!(h.conn.sock.out, data);
}

#[test]
fn a_slow_reader_never_costs_more_than_the_cap() {
    // The kernel takes a little at a time, as from a client that reads
    // slowly: reads of whatever room is left make the buffer grow in odd
    // steps, and doubling them would overshoot 256 KiB.
    let cap = 256 * 1024;
    let mut h = Harness::new(cap, 64 * 1024);
    h.fake().incoming.extend(vec![3u8; 4 << 20]);
    h.fake().write_room = 20_000;
    for _ in 0..200 {
        h.event();
        assert!(h.conn.owed.capacity() <= cap, "{}", h.conn.owed.capacity());
        h.fake().write_room = 3_000;
    }
    assert_eq!(h.conn.owed.capacity(), cap, "the full cap was used");
}

#[test]
fn a_drained_large_buffer_is_released() {
    let mut h = Harness::new(256 * 1024, 64 * 1024);
    h.fake().incoming.extend(vec![1u8; 200_000]);
    h.event();
    assert!(h.conn.owed.capacity() > KEEP_OWED_CAPACITY);
    h.fake().write_room = usize::MAX;
    h.event();
    assert!(h.conn.owed.is_empty());
    assert_eq!(h.conn.owed.capacity(), 0);
}

#[test]
fn stopping_sends_what_is_owed_then_fin_then_drops_unread_input() {
    let mut h = Harness::new(1000, 256);
    h.fake().incoming.extend(vec![7u8; 10_000]);
    h.event();
    assert_eq!(h.conn.state, State::Paused);
    h.conn.stop();
    // The client will read everything, then close.
    h.fake().fin = true;
    h.fake().write_room = 600;
    assert_eq!(h.event(), Step::Wait, "400 still owed");
    assert_eq!(h.conn.state, State::Stopping);
    assert_eq!(
        h.conn.sock.incoming.len(),
        9000,
        "nothing more read to echo"
    );
    h.fake().write_room = usize::MAX;
    assert_eq!(h.event(), Step::Finished);
    assert_eq!(
        h.conn.sock.out,
        vec![7u8; 1000],
        "every owed byte, nothing more"
    );
    assert!(
        h.conn.sock.incoming.is_empty(),
        "unread input dropped before the close"
    );
}

proptest! {
    /// Whatever the client sends and however the kernel takes it, the
    /// echo is the input, in order, and never more than the cap is held.
    #[test]
    fn echo_is_exact_and_bounded(
        len in 0usize..20_000,
        cap in 1usize..3000,
        scratch in 1usize..2000,
        rooms in proptest::collection::vec(0usize..4000, 1..40),
        fin in any::<bool>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = Harness::new(cap, scratch);
        h.fake().incoming.extend(&data);
        h.fake().fin = fin;
        let mut finished = false;
        for room in rooms.iter().copied().chain([usize::MAX; 2]) {
            h.fake().write_room = room;
            finished = h.event() == Step::Finished;
            prop_assert!(h.conn.owed.len() <= cap);
            prop_assert!(h.conn.owed.capacity() <= cap, "capacity {} over cap {}", h.conn.owed.capacity(), cap);
            if finished {
                break;
            }
        }
        // With unlimited room at the end everything has come back.
        prop_assert_eq!(&h.conn.sock.out, &data);
        prop_assert_eq!(h.echoed, len as u64);
        prop_assert_eq!(finished, fin);
    }
}
