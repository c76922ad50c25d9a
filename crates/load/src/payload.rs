//! What the stress client sends: the article's text template, or seeded
//! pseudo-random bytes of a fixed size (`--size`).
//!
//! Sized payloads are cut from one block of pseudo-random bytes made once
//! per run ([`Messages`]): message `k` of connection `c` is the 8 bytes of
//! a 64-bit key of `(seed, c, k)`, then the block from an offset that the
//! key chooses. So a message can be sent straight from the block (and its
//! key), and checked against it, at memory speed, where generating every
//! byte of every message took an eighth of the load's time at 64 KiB. The
//! block and the keys come from SplitMix64, written out here rather than
//! taken from `rand`, because `rand` does not promise that a seeded small
//! generator yields the same bytes across its versions, and `--seed`
//! promises exactly that: the same seed sends the same bytes, on any
//! machine, in any release since the block came in (the byte stream changed
//! then; see docs/STRESS.md).

/// The largest message the client sends; larger sizes are refused up front.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The bytes of each message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The article's message: message `k` on connection `i` is
    /// `"<k>. Thread <i> - <text>"`, both counted from 1.
    Template(String),
    /// Exactly `len` pseudo-random bytes per message, a pure function of
    /// `(seed, connection, k)`, so two runs with the same seed send the
    /// same streams, every message differs from its neighbours, and an echo
    /// from the wrong offset or connection cannot pass verification.
    Sized {
        /// Bytes per message, 1 to [`MAX_MESSAGE_SIZE`] (an empty message
        /// never gets an echo).
        len: usize,
        /// The seed; the report records it so a run can be repeated.
        seed: u64,
    },
}

/// How much longer than a message the block is: the room for the
/// messages' offsets into it.
const SPREAD: usize = 64 * 1024;

/// The bytes of a sized message's head: its key.
const HEAD: usize = 8;

/// A payload ready to write many messages: for a sized payload, its block,
/// made once. Engines make one per thread (or share one) before the start.
#[derive(Debug, Clone)]
pub struct Messages {
    payload: Payload,
    /// Sized payloads: `len + SPREAD` bytes, a pure function of the seed.
    block: Vec<u8>,
}

/// Where the bytes of one sized message are: the head (its key's bytes,
/// or as many as the message has), then `body` bytes of the block from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    head: [u8; HEAD],
    head_len: u8,
    from: usize,
    body: usize,
}

impl Cut {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.head_len as usize + self.body
    }

    /// The head: the key's bytes (as many as the message has).
    pub(crate) fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    /// Where the body starts in [`Messages::block`].
    pub(crate) fn from(&self) -> usize {
        self.from
    }

    /// Never: an empty message is refused up front.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message's bytes from `rel` on, up to the end of the head or of
    /// the message: one contiguous piece, empty at the end. `block` is
    /// [`Messages::block`].
    pub fn piece<'a>(&'a self, block: &'a [u8], rel: usize) -> &'a [u8] {
        let head = self.head_len as usize;
        if rel < head {
            &self.head[rel..head]
        } else {
            let rel = (rel - head).min(self.body);
            &block[self.from + rel..self.from + self.body]
        }
    }
}

impl Messages {
    /// Make the block of `payload` (nothing for the text template).
    pub fn new(payload: &Payload) -> Messages {
        let block = match payload {
            Payload::Template(_) => Vec::new(),
            Payload::Sized { len, seed } => {
                let mut block = vec![0u8; len + SPREAD];
                SplitMix64::new(finalize(*seed ^ BLOCK_TAG)).fill(&mut block);
                block
            }
        };
        Messages {
            payload: payload.clone(),
            block,
        }
    }

    /// The payload these messages are of.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The block that [`Cut`]s point into.
    pub fn block(&self) -> &[u8] {
        &self.block
    }

    /// Where message `k` (from 1) of connection `conn` (from 1) is, for a
    /// sized payload; `None` for the text template, which has to be written
    /// out ([`Messages::write`]).
    pub fn cut(&self, conn: u64, k: u64) -> Option<Cut> {
        let Payload::Sized { len, seed } = self.payload else {
            return None;
        };
        let key = message_seed(seed, conn, k);
        let head_len = len.min(HEAD);
        Some(Cut {
            head: key.to_le_bytes(),
            head_len: head_len as u8,
            from: (finalize(key) % SPREAD as u64) as usize,
            body: len - head_len,
        })
    }

    /// Append message `k` (from 1) of connection `conn` (from 1) to `out`:
    /// exactly [`Payload::write_message`]'s bytes.
    pub fn write(&self, conn: u64, k: u64, out: &mut Vec<u8>) {
        match (&self.payload, self.cut(conn, k)) {
            (_, Some(cut)) => {
                let head = cut.piece(&self.block, 0);
                out.reserve(head.len() + cut.body);
                out.extend_from_slice(head);
                out.extend_from_slice(cut.piece(&self.block, head.len()));
            }
            (Payload::Template(text), None) => {
                use std::io::Write;
                write!(out, "{k}. Thread {conn} - {text}").expect("writing to a Vec cannot fail");
            }
            (Payload::Sized { .. }, None) => unreachable!("a sized payload always has a cut"),
        }
    }
}

/// Distinguishes the block's seed from a message key's.
const BLOCK_TAG: u64 = 0x626c_6f63_6b00_0001;

impl Payload {
    /// Append message `k` (from 1) of connection `conn` (from 1) to `out`.
    /// This makes a sized payload's block each time: to write many
    /// messages, make [`Messages`] once.
    pub fn write_message(&self, conn: u64, k: u64, out: &mut Vec<u8>) {
        Messages::new(self).write(conn, k, out);
    }

    /// Message `k` of connection `conn` as a new vector.
    pub fn message(&self, conn: u64, k: u64) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_message(conn, k, &mut v);
        v
    }

    /// The seed of a random payload.
    pub fn seed(&self) -> Option<u64> {
        match self {
            Payload::Template(_) => None,
            Payload::Sized { seed, .. } => Some(*seed),
        }
    }

    /// The size of the largest message (template messages grow with `k`;
    /// this bounds them for any `k` and connection that fit in a u64).
    pub fn max_len(&self) -> usize {
        match self {
            // "<k>. Thread <i> - " with two 20-digit numbers.
            Payload::Template(text) => text.len() + 2 * 20 + ". Thread  - ".len(),
            Payload::Sized { len, .. } => *len,
        }
    }
}

/// Mix the three inputs so that neighbouring (conn, k) pairs start far apart.
fn message_seed(seed: u64, conn: u64, k: u64) -> u64 {
    finalize(finalize(finalize(seed) ^ conn) ^ k)
}

/// SplitMix64's output function (Steele, Lea and Flood, 2014).
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64: tiny, fast, and its output is fixed by its definition.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        finalize(self.0)
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let last = self.next().to_le_bytes();
            rest.copy_from_slice(&last[..rest.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn template_matches_the_article() {
        let p = Payload::Template("Hello".into());
        assert_eq!(p.message(3, 1), b"1. Thread 3 - Hello");
        assert_eq!(p.message(1, 200), b"200. Thread 1 - Hello");
    }

    #[test]
    fn messages_differ_by_connection_and_number() {
        let p = Payload::Template("x".into());
        assert_ne!(p.message(1, 2), p.message(2, 1));
    }

    #[test]
    fn random_bytes_are_pinned_by_the_seed() {
        // These bytes are a promise to users who recorded a seed: changing
        // the generator must fail this test. (Pinned anew when the block
        // replaced per-message SplitMix64 streams.)
        let p = Payload::Sized { len: 8, seed: 42 };
        assert_eq!(p.message(1, 1), p.message(1, 1));
        assert_eq!(finalize(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        // Spelled out from the definition...
        let key = message_seed(42, 1, 1);
        assert_eq!(p.message(1, 1), key.to_le_bytes());
        let q = Payload::Sized { len: 24, seed: 42 };
        let mut block = vec![0u8; 24 + SPREAD];
        SplitMix64::new(finalize(42 ^ BLOCK_TAG)).fill(&mut block);
        let from = (finalize(key) % SPREAD as u64) as usize;
        let mut want = key.to_le_bytes().to_vec();
        want.extend_from_slice(&block[from..from + 16]);
        assert_eq!(q.message(1, 1), want);
        // ... and as literal bytes, which no refactoring may change.
        assert_eq!(q.message(1, 1), PINNED);
    }

    /// `Payload::Sized { len: 24, seed: 42 }.message(1, 1)`.
    const PINNED: [u8; 24] = [
        211, 188, 156, 155, 55, 144, 61, 57, 245, 71, 118, 38, 137, 59, 26, 90, 198, 5, 254, 157,
        219, 231, 14, 143,
    ];

    #[test]
    fn pieces_spell_the_message() {
        for len in [1, 7, 8, 9, 100, 5000] {
            let p = Payload::Sized { len, seed: 3 };
            let m = Messages::new(&p);
            let cut = m.cut(2, 9).unwrap();
            for start in [0, 1, 7, 8, 9, len / 2, len - 1, len] {
                let mut got = Vec::new();
                let mut rel = start;
                loop {
                    let piece = cut.piece(m.block(), rel);
                    if piece.is_empty() {
                        break;
                    }
                    got.extend_from_slice(piece);
                    rel += piece.len();
                }
                assert_eq!(
                    got,
                    p.message(2, 9)[start.min(len)..],
                    "len {len} from {start}"
                );
            }
        }
        assert_eq!(
            Messages::new(&Payload::Template("x".into())).cut(1, 1),
            None
        );
    }

    #[test]
    fn many_messages_match_one_at_a_time() {
        let p = Payload::Sized {
            len: 10_000,
            seed: 7,
        };
        let m = Messages::new(&p);
        let mut v = Vec::new();
        for k in 1..20 {
            v.clear();
            m.write(3, k, &mut v);
            assert_eq!(v, p.message(3, k));
        }
    }

    #[test]
    fn a_shifted_or_foreign_echo_fails() {
        let p = Payload::Sized { len: 4096, seed: 9 };
        let a = p.message(1, 5);
        // Any shift of the stream by up to a message changes the bytes.
        let mut stream = p.message(1, 4);
        stream.extend_from_slice(&a);
        stream.extend(p.message(1, 6));
        for d in 1..4096 {
            assert_ne!(&stream[4096 + d..8192 + d], &a[..], "shift {d}");
            assert_ne!(&stream[4096 - d..8192 - d], &a[..], "shift -{d}");
        }
        for c in 2..50 {
            assert_ne!(p.message(c, 5), a);
        }
    }

    #[test]
    fn the_largest_size_is_accepted_and_exact() {
        let p = Payload::Sized {
            len: MAX_MESSAGE_SIZE,
            seed: 1,
        };
        assert_eq!(p.message(1, 1).len(), MAX_MESSAGE_SIZE);
    }

    #[test]
    fn template_max_len_bounds_every_message() {
        let p = Payload::Template("abc".into());
        assert!(p.message(u64::MAX, u64::MAX).len() <= p.max_len());
    }

    proptest! {
        #[test]
        fn random_messages_have_the_size_and_repeat(size in 1usize..5000, seed: u64, conn in 1u64..1000, k in 1u64..1000) {
            let p = Payload::Sized { len: size, seed };
            let a = p.message(conn, k);
            prop_assert_eq!(a.len(), size);
            prop_assert_eq!(&a, &p.message(conn, k));
            // Appending keeps what was there.
            let mut v = vec![7u8; 3];
            p.write_message(conn, k, &mut v);
            prop_assert_eq!(&v[..3], &[7u8, 7, 7]);
            prop_assert_eq!(&v[3..], &a[..]);
        }

        #[test]
        fn random_messages_differ_by_seed_connection_and_number(seed: u64, conn in 1u64..1000, k in 1u64..1000) {
            // 16 bytes: a collision would take two equal 64-bit outputs.
            let p = Payload::Sized { len: 16, seed };
            let m = p.message(conn, k);
            prop_assert_ne!(&m, &p.message(conn + 1, k));
            prop_assert_ne!(&m, &p.message(conn, k + 1));
            let q = Payload::Sized { len: 16, seed: seed.wrapping_add(1) };
            prop_assert_ne!(&m, &q.message(conn, k));
        }
    }
}
