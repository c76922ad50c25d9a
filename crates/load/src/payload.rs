//! What the stress client sends.

/// The bytes of each message.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The article's message: message `k` on connection `i` is
    /// `"<k>. Thread <i> - <text>"`, both counted from 1.
    Template(String),
    /// Exactly `len` pseudo-random bytes per message, derived from `seed`, the
    /// connection and the message number, so every message differs and an
    /// echo from the wrong offset or connection cannot pass verification.
    /// The engine needs `len >= 1`: an empty message never gets an echo.
    Sized {
        /// Bytes per message.
        len: usize,
        /// Mixed into every message; the same seed gives the same bytes.
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
                // splitmix64, eight bytes a step: cheap enough that making
                // the bytes does not become the client's bottleneck.
                let mut state = seed
                    ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ k.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
                out.reserve(*len);
                let mut left = *len;
                while left > 0 {
                    state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^= z >> 31;
                    let take = left.min(8);
                    out.extend_from_slice(&z.to_le_bytes()[..take]);
                    left -= take;
                }
            }
        }
    }

    /// Message `k` of connection `conn` as a new vector.
    pub fn message(&self, conn: u64, k: u64) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_message(conn, k, &mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_matches_the_article() {
        let p = Payload::Template("Hello".into());
        assert_eq!(p.message(3, 1), b"1. Thread 3 - Hello");
        assert_eq!(p.message(1, 200), b"200. Thread 1 - Hello");
    }

    #[test]
    fn sized_messages_have_the_exact_length() {
        for len in [1, 7, 8, 9, 64, 4096, 65_537] {
            let p = Payload::Sized { len, seed: 1 };
            assert_eq!(p.message(1, 1).len(), len);
        }
    }

    #[test]
    fn sized_messages_are_deterministic_and_differ() {
        let p = Payload::Sized { len: 64, seed: 42 };
        assert_eq!(p.message(2, 3), p.message(2, 3));
        assert_ne!(p.message(1, 2), p.message(2, 1));
        assert_ne!(p.message(1, 1), p.message(1, 2));
        assert_ne!(
            p.message(1, 1),
            Payload::Sized { len: 64, seed: 43 }.message(1, 1)
        );
    }

    #[test]
    fn messages_differ_by_connection_and_number() {
        let p = Payload::Template("x".into());
        assert_ne!(p.message(1, 2), p.message(2, 1));
    }
}
