//! What the stress client sends.

/// The bytes of each message.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The article's message: message `k` on connection `i` is
    /// `"<k>. Thread <i> - <text>"`, both counted from 1.
    Template(String),
}

impl Payload {
    /// Append message `k` (from 1) of connection `conn` (from 1) to `out`.
    pub fn write_message(&self, conn: u64, k: u64, out: &mut Vec<u8>) {
        match self {
            Payload::Template(text) => {
                use std::io::Write;
                write!(out, "{k}. Thread {conn} - {text}").expect("writing to a Vec cannot fail");
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
    fn messages_differ_by_connection_and_number() {
        let p = Payload::Template("x".into());
        assert_ne!(p.message(1, 2), p.message(2, 1));
    }
}
