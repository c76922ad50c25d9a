//! What a wrong echo was: on the first wrong byte of a connection, work out
//! whose bytes came instead, from the payload alone.
//!
//! Every message is a pure function of (connection, message number) (and
//! the seed, `payload.rs`), so the bytes received from the first wrong one
//! on can be looked for among the messages the run sends: another
//! connection's, an earlier one of the same connection, the same stream
//! shifted, or none at all. The search ([`search`]) is bounded: it runs
//! once per failed connection, at most [`PER_THREAD`] times per load
//! thread, over every connection but only a window of message numbers
//! around the wrong one, and it looks at no more than [`EVIDENCE`]
//! received bytes. Engines call [`diagnose`] from the one place each
//! verifies bytes (`exchange.rs`, `threads.rs`).
//!
//! The diagnosis claims no more than the bytes show. A source "explains"
//! the received bytes when they equal its stream from some byte on, up to
//! the end of its message at least (or of what was received); of those,
//! the ones that explain the most bytes are kept. Two or more left are
//! stated as such: text payloads repeat the same text in every message,
//! so a piece of it can be anyone's.

mod search;

use crate::payload::Messages;
use serde::Serialize;
use std::fmt::Write as _;

/// Diagnoses each load thread works out; later mismatches are only counted.
pub(crate) const PER_THREAD: usize = 16;
/// Diagnoses the report lists; `mismatch_details_left_off` counts the rest.
pub(crate) const LISTED: usize = 16;
/// Bytes of expected and received shown in a diagnosis.
pub(crate) const EXCERPT: usize = 16;
/// Received bytes, from the first wrong one, that the search looks at.
pub(crate) const EVIDENCE: usize = 64 * 1024;
/// Fewer received bytes than this say nothing about where they came from.
const MIN_BYTES: usize = 4;
/// A source must explain at least this many bytes (or all received).
const MIN_MATCH: usize = 8;
/// Message numbers searched either side of the wrong one, at most.
const WINDOW: u64 = 32;
/// Candidate (connection, message) pairs searched, at most: the window
/// narrows as the connections grow (1,000 connections: 32 either side;
/// 10,000: 2), so that a diagnosis costs some milliseconds whatever the
/// run (a debug build: 0.1 to 0.2 s at 10,000 connections).
const BUDGET: u64 = 1 << 16;
/// Bytes after the first wrong one within which the expected bytes may resume.
const RESUME_WITHIN: usize = 16;

/// What the bytes received in place of the expected ones were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// Another connection's message (`source_connection`; its
    /// `source_message` and `source_offset` when they are certain).
    OtherConnection,
    /// An earlier message of the same connection, again, from the same
    /// byte of it (`source_message`).
    EarlierMessage,
    /// The connection's own stream, `shift` bytes off: negative when bytes
    /// came again (duplicated), positive when bytes were skipped.
    Shifted,
    /// Bytes no message in the search explains: corrupted, garbage, or
    /// pieces of the stream out of order (a piece that stops before its
    /// message's end explains nothing) (`resumes_after`: the expected bytes
    /// came back after so many).
    Corrupt,
    /// Several sources explain the bytes alike (`candidates`), all of this
    /// connection (`source_connection`) or of several: no message is named.
    Ambiguous,
    /// Too few bytes came after the first wrong one to tell.
    Unknown,
}

impl MismatchKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [MismatchKind; 6] = [
        MismatchKind::OtherConnection,
        MismatchKind::EarlierMessage,
        MismatchKind::Shifted,
        MismatchKind::Corrupt,
        MismatchKind::Ambiguous,
        MismatchKind::Unknown,
    ];

    /// The JSON name (a test holds it to serde's).
    pub fn name(self) -> &'static str {
        match self {
            MismatchKind::OtherConnection => "other_connection",
            MismatchKind::EarlierMessage => "earlier_message",
            MismatchKind::Shifted => "shifted",
            MismatchKind::Corrupt => "corrupt",
            MismatchKind::Ambiguous => "ambiguous",
            MismatchKind::Unknown => "unknown",
        }
    }
}

/// A connection's first wrong byte, and what came in its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The connection, from 1 (churn: its slot).
    pub connection: u64,
    /// The message the wrong byte is in, from 1.
    pub message: u64,
    /// The wrong byte's offset in that message.
    pub offset: u64,
    /// The same, in the connection's byte stream.
    pub stream_offset: u64,
    /// What the received bytes were.
    pub kind: MismatchKind,
    /// Whose bytes they were, when one connection explains them.
    pub source_connection: Option<u64>,
    /// Which of its messages, when certain.
    pub source_message: Option<u64>,
    /// From which byte of that message.
    pub source_offset: Option<u64>,
    /// The connection's own stream: received byte = expected byte this
    /// far on (negative: bytes repeated; positive: bytes skipped).
    /// `ambiguous`: the own stream's shift when that is one of the
    /// candidates, or else the shift within the message that every
    /// candidate shares, counted from the message's start or, where that
    /// differs, from its end (text messages differ in length, their text
    /// does not).
    pub shift: Option<i64>,
    /// Sources that explain the bytes alike (0 when none does; a lower
    /// bound when the search stopped at its limit, which is never 1).
    pub candidates: u64,
    /// `corrupt`: the expected bytes came back after this many wrong ones.
    pub resumes_after: Option<u64>,
    /// `corrupt`: this many bytes came in between, then the expected ones
    /// went on from the wrong byte (inserted, not in place of them).
    pub inserted: Option<u64>,
    /// The expected bytes from the wrong one on, in hex (16 at most).
    pub expected_hex: String,
    /// The received bytes from the wrong one on, in hex (16 at most).
    pub received_hex: String,
    /// Received bytes looked at, from the wrong one on (64 KiB at most).
    pub received_bytes: u64,
}

/// Where a connection's first wrong byte is, and what came from it on.
pub(crate) struct Scene<'a> {
    pub messages: &'a Messages,
    /// Connections in the run.
    pub connections: u64,
    /// The connection, from 1.
    pub conn: u64,
    /// The message the wrong byte is in, from 1, and its offset there.
    pub message: u64,
    pub offset: usize,
    pub stream_offset: u64,
    /// Messages handed to this connection's slot so far (the last one's number).
    pub sent: u64,
    /// The bytes received from the wrong one on (all of the read).
    pub got: &'a [u8],
}

/// Work out what the bytes of `scene` were.
pub(crate) fn diagnose(scene: &Scene<'_>) -> Mismatch {
    let got = &scene.got[..scene.got.len().min(EVIDENCE)];
    let m = scene.messages;
    // Never more than the connection sent: bytes of messages it has not
    // sent yet were expected of nobody.
    let sent = search::sent_from(m, scene.conn, scene.message, scene.offset, scene.sent);
    let expected = search::stream_bytes(
        m,
        scene.conn,
        scene.message,
        scene.offset,
        got.len().min(EXCERPT + RESUME_WITHIN + 64).min(sent),
    );
    let mut d = Mismatch {
        connection: scene.conn,
        message: scene.message,
        offset: scene.offset as u64,
        stream_offset: scene.stream_offset,
        kind: MismatchKind::Unknown,
        source_connection: None,
        source_message: None,
        source_offset: None,
        shift: None,
        candidates: 0,
        resumes_after: None,
        inserted: None,
        expected_hex: hex(&expected[..expected.len().min(EXCERPT)]),
        received_hex: hex(&got[..got.len().min(EXCERPT)]),
        received_bytes: got.len() as u64,
    };
    if got.len() < MIN_BYTES {
        return d;
    }
    let search::Sources { found, complete } = search::sources(scene, got);
    d.candidates = match (found.len() as u64, complete) {
        (0, _) | (_, true) => found.len() as u64,
        (n, false) => n.max(2),
    };
    match found.as_slice() {
        [] => {
            d.kind = MismatchKind::Corrupt;
            d.resumes_after = resumes(got, &expected, Resume::InPlace);
            if d.resumes_after.is_none() {
                d.inserted = resumes(got, &expected, Resume::AfterInserted);
            }
        }
        [one] if complete => {
            d.source_connection = Some(one.conn);
            d.source_message = Some(one.message);
            d.source_offset = Some(one.offset as u64);
            if one.conn != scene.conn {
                d.kind = MismatchKind::OtherConnection;
            } else {
                d.shift = Some(search::own_shift(scene, one.message, one.offset));
                d.kind = if one.message < scene.message && one.offset == scene.offset {
                    MismatchKind::EarlierMessage
                } else {
                    MismatchKind::Shifted
                };
            }
        }
        many => {
            // One connection's bytes, but which of its messages is not
            // certain; or not even whose.
            let conn = many[0].conn;
            if many.iter().all(|f| f.conn == conn) {
                d.source_connection = Some(conn);
            }
            if conn != scene.conn && d.source_connection.is_some() {
                d.kind = MismatchKind::OtherConnection;
            } else {
                d.kind = MismatchKind::Ambiguous;
                // A shift that explains the bytes: the connection's own
                // stream's, when that is one of the candidates (a `--size`
                // body is a run of the one block, so a shifted stretch of it
                // is in other messages too), or else the one they all share.
                let own: Vec<&search::Found> =
                    many.iter().filter(|f| f.conn == scene.conn).collect();
                d.shift = match own.as_slice() {
                    [one] => Some(search::own_shift(scene, one.message, one.offset)),
                    _ => search::common_shift(scene, many),
                };
            }
        }
    }
    d
}

/// How the expected bytes may come back after wrong ones.
#[derive(Clone, Copy)]
enum Resume {
    /// In their place: the wrong bytes replaced as many expected ones.
    InPlace,
    /// From where they stopped: the wrong bytes came in between.
    AfterInserted,
}

/// After how many wrong bytes the expected ones come back, as `how` says
/// (for at least [`MIN_BYTES`] bytes, or to the end of what was received
/// or expected).
fn resumes(got: &[u8], expected: &[u8], how: Resume) -> Option<u64> {
    (1..=RESUME_WITHIN.min(got.len().saturating_sub(1))).find_map(|k| {
        let from = match how {
            Resume::InPlace => k,
            Resume::AfterInserted => 0,
        };
        let n = (got.len() - k).min(expected.len().saturating_sub(from));
        (n > 0 && n >= MIN_BYTES.min(got.len() - k) && got[k..k + n] == expected[from..from + n])
            .then_some(k as u64)
    })
}

/// Lower-case hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Mismatch {
    /// What came instead, in words: `connection 2's message 1 from byte 0`.
    pub fn what(&self) -> String {
        match self.kind {
            MismatchKind::OtherConnection => {
                let c = self.source_connection.unwrap_or(0);
                match (self.source_message, self.source_offset) {
                    (Some(m), Some(o)) => format!("connection {c}'s message {m} from byte {o}"),
                    _ => format!(
                        "connection {c}'s bytes (which of its messages is ambiguous: {} candidates)",
                        self.candidates
                    ),
                }
            }
            MismatchKind::EarlierMessage => format!(
                "message {} of this connection again",
                self.source_message.unwrap_or(0)
            ),
            MismatchKind::Shifted => {
                let shift = self.shift.unwrap_or(0);
                let how = if shift < 0 { "repeated" } else { "skipped" };
                format!(
                    "this connection's own bytes shifted by {shift:+} ({} {how}; message {} from byte {})",
                    shift.unsigned_abs(),
                    self.source_message.unwrap_or(0),
                    self.source_offset.unwrap_or(0),
                )
            }
            MismatchKind::Corrupt => match (self.resumes_after, self.inserted) {
                (Some(r), _) => {
                    format!("bytes no message explains ({r} wrong, then the expected bytes resume)")
                }
                (None, Some(k)) => format!(
                    "bytes no message explains ({k} inserted, then the expected bytes go on from where they stopped)"
                ),
                (None, None) => "bytes no message explains".to_string(),
            },
            MismatchKind::Ambiguous => {
                let whose = match self.source_connection {
                    Some(_) => "this connection's own bytes",
                    None => "bytes of several connections' messages alike",
                };
                let shift = match self.shift {
                    Some(s) => format!(", shifted by {s:+} from the expected ones"),
                    None => String::new(),
                };
                format!(
                    "{whose}{shift} (which message is ambiguous: {} candidates)",
                    self.candidates
                )
            }
            MismatchKind::Unknown => format!(
                "only {} byte{} received from there: too few to tell",
                self.received_bytes,
                if self.received_bytes == 1 { "" } else { "s" }
            ),
        }
    }

    /// The summary's one line, after its label: where, what, and the bytes.
    pub fn line(&self) -> String {
        format!(
            "connection {}, message {}, byte {} (stream byte {}): {}; expected {}, received {}",
            self.connection,
            self.message,
            self.offset,
            self.stream_offset,
            self.what(),
            self.expected_hex,
            self.received_hex,
        )
    }
}

#[cfg(test)]
mod tests;
