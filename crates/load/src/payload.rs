//! What the stress client sends: the article's text template, or seeded
//! pseudo-random bytes of a fixed size (`--size`).
//!
//! Sized payloads come from SplitMix64, written out here rather than taken
//! from `rand`, because `rand` does not promise that a seeded small generator
//! yields the same bytes across its versions, and `--seed` promises exactly
//! that: the same seed sends the same bytes, on any machine, in any release.

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

impl Payload {
    /// Append message `k` (from 1) of connection `conn` (from 1) to `out`.
    pub fn write_message(&self, conn: u64, k: u64, out: &mut Vec<u8>) {
        match self {
            Payload::Template(text) => {
                use std::io::Write;
                write!(out, "{k}. Thread {conn} - {text}").expect("writing to a Vec cannot fail");
            }
            Payload::Sized { len, seed } => {
                let mut rng = SplitMix64::new(message_seed(*seed, conn, k));
                let start = out.len();
                out.resize(start + len, 0);
                rng.fill(&mut out[start..]);
            }
        }
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
        // the generator must fail this test.
        let p = Payload::Sized { len: 8, seed: 42 };
        assert_eq!(p.message(1, 1), p.message(1, 1));
        let first = SplitMix64::new(message_seed(42, 1, 1)).next().to_le_bytes();
        assert_eq!(p.message(1, 1), first);
        assert_eq!(finalize(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
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
