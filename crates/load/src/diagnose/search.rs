//! The search behind a diagnosis: which (connection, message, byte) the
//! received bytes are the stream of, among the connections of the run and
//! a window of message numbers.
//!
//! A `--size` message is its 8-byte key, then a run of the thread's block
//! from an offset the key chooses. So the candidates are found without
//! writing a message out: a key's bytes at the start of what came (or part
//! of one), a key found further on (the bytes before it are the end of the
//! message before), or the received bytes found in the block (then each
//! message whose body covers that place). Text messages are short and
//! written out, each compared at every byte. Every candidate is then held
//! to the received bytes ([`match_len`]).

use super::{Scene, BUDGET, MIN_MATCH, WINDOW};
use crate::payload::{Messages, Payload};
use std::collections::HashMap;
use std::ops::RangeInclusive;

/// A source that explains the received bytes: connection `conn`'s stream
/// from byte `offset` of its message `message`, for `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub conn: u64,
    pub message: u64,
    pub offset: usize,
    pub len: usize,
}

/// Block places of the received bytes looked at, at most: random bytes
/// have one; more mean the bytes are too common to place.
const PLACES: usize = 16;
/// Candidates held to the received bytes, at most.
const RAW: usize = 256;

/// Sources found that explain the received bytes, at most.
const FOUND: usize = 4096;

/// What the search found: the sources that explain the received bytes
/// best (the most bytes), and whether it held every candidate to them
/// (`false`: it stopped at [`RAW`] candidates or [`FOUND`] sources, so
/// others may explain them as well).
pub(crate) struct Sources {
    pub found: Vec<Found>,
    pub complete: bool,
}

/// Search for the sources of `got`.
pub(crate) fn sources(scene: &Scene<'_>, got: &[u8]) -> Sources {
    let (conns, window) = searched(scene);
    let mut found = Vec::new();
    let m = scene.messages;
    let in_reach = |c: u64, j: u64| c != scene.conn || j <= scene.sent;
    let mut complete = true;
    let held = |c: u64, j: u64, o: usize, len: usize, found: &mut Vec<Found>| {
        if explains(m, c, j, o, len, got.len()) {
            found.push(Found {
                conn: c,
                message: j,
                offset: o,
                len,
            });
        }
        found.len() < FOUND
    };
    if matches!(m.payload(), Payload::Sized { .. }) {
        let mut raw: Vec<(u64, u64, usize)> = Vec::new();
        sized_candidates(scene, got, conns, window, &mut raw);
        raw.sort_unstable();
        raw.dedup();
        complete = raw.len() <= RAW;
        for &(c, j, o) in raw.iter().take(RAW) {
            if j >= 1 && in_reach(c, j) {
                held(c, j, o, match_len(m, c, j, o, got), &mut found);
            }
        }
    } else {
        let mut text = Vec::new();
        'all: for c in conns {
            for j in window.clone().filter(|j| in_reach(c, *j)) {
                text.clear();
                m.write(c, j, &mut text);
                for o in 0..text.len() {
                    let k = got.len().min(text.len() - o);
                    if text[o..o + k] != got[..k] {
                        continue;
                    }
                    let len = if k < got.len() {
                        match_len(m, c, j, o, got)
                    } else {
                        k
                    };
                    if !held(c, j, o, len, &mut found) {
                        complete = false;
                        break 'all;
                    }
                }
            }
        }
    }
    let best = found.iter().map(|f| f.len).max().unwrap_or(0);
    found.retain(|f| f.len == best);
    Sources { found, complete }
}

/// A source at (`c`, `j`, `o`) that matched `len` of `n` received bytes
/// explains them if it matched to the end of its message at least (or all
/// that came), and no fewer than [`MIN_MATCH`] bytes (or all).
fn explains(m: &Messages, c: u64, j: u64, o: usize, len: usize, n: usize) -> bool {
    let to_end = message_len(m, c, j).saturating_sub(o);
    len >= n.min(MIN_MATCH) && len >= n.min(to_end)
}

/// The connections and message numbers searched: every connection (at
/// most [`BUDGET`] of them, around this one) and [`WINDOW`] message
/// numbers either side of the wrong one, fewer when the connections are many.
fn searched(scene: &Scene<'_>) -> (RangeInclusive<u64>, RangeInclusive<u64>) {
    let n = scene.connections.max(scene.conn);
    let conns = if n <= BUDGET {
        1..=n
    } else {
        let from = scene.conn.saturating_sub(BUDGET / 2).max(1);
        let to = (from + BUDGET - 1).min(n);
        (to + 1 - BUDGET).max(1)..=to
    };
    let per = BUDGET / (conns.end() - conns.start() + 1);
    let half = WINDOW.min(per.saturating_sub(1) / 2);
    let k = scene.message;
    (
        conns,
        k.saturating_sub(half).max(1)..=k.saturating_add(half),
    )
}

/// `--size`: the (connection, message, offset) places where `got` may start.
fn sized_candidates(
    scene: &Scene<'_>,
    got: &[u8],
    conns: RangeInclusive<u64>,
    window: RangeInclusive<u64>,
    raw: &mut Vec<(u64, u64, usize)>,
) {
    let m = scene.messages;
    let block = m.block();
    // Where the first 8 received bytes are in the block (body bytes).
    let places: Vec<usize> = if got.len() >= 8 {
        block
            .windows(8)
            .enumerate()
            .filter(|(_, w)| *w == &got[..8])
            .map(|(b, _)| b)
            .take(PLACES + 1)
            .collect()
    } else {
        Vec::new()
    };
    let places = if places.len() > PLACES {
        &[][..]
    } else {
        &places[..]
    };
    // Keys further on in what came, by their bytes: where each first is.
    let msg_len = m.payload().max_len();
    let mut keys: HashMap<&[u8], usize> = HashMap::new();
    if msg_len >= 8 {
        for t in 1..=got.len().saturating_sub(8).min(msg_len) {
            keys.entry(&got[t..t + 8]).or_insert(t);
        }
    }
    for c in conns {
        for j in window.clone() {
            if raw.len() >= 4 * RAW {
                return;
            }
            let cut = m.cut(c, j).expect("a sized payload");
            let head = cut.head();
            // In its key, from byte `o`, and on into its body for
            // [`MIN_MATCH`] bytes in all (a byte or two alike is chance).
            let body = &block[cut.from()..cut.from() + (cut.len() - head.len())];
            for o in 0..head.len() {
                let k = (head.len() - o).min(got.len());
                let more = got.len().min(MIN_MATCH).saturating_sub(k).min(body.len());
                if head[o..o + k] == got[..k] && body[..more] == got[k..k + more] {
                    raw.push((c, j, o));
                }
            }
            // In its body, at a place the received bytes are in the block.
            for &b in places {
                if let Some(o) = (b + head.len()).checked_sub(cut.from()) {
                    if o >= head.len() && o < cut.len() {
                        raw.push((c, j, o));
                    }
                }
            }
            // Its key came `t` bytes on: what came first ends message j - 1.
            if let Some(&t) = keys.get(head) {
                if j > 1 && t <= msg_len {
                    raw.push((c, j - 1, msg_len - t));
                }
            }
        }
    }
}

/// Bytes of message `j` of connection `c`.
/// Bytes of the connection's stream from byte `o` of its message `j` to the
/// end of its message `last`: what it sent from there, at most.
pub(crate) fn sent_from(m: &Messages, c: u64, j: u64, o: usize, last: u64) -> usize {
    let rest = message_len(m, c, j).saturating_sub(o);
    rest + (j + 1..=last).map(|i| message_len(m, c, i)).sum::<usize>()
}

fn message_len(m: &Messages, c: u64, j: u64) -> usize {
    match m.cut(c, j) {
        Some(cut) => cut.len(),
        None => {
            let mut v = Vec::new();
            m.write(c, j, &mut v);
            v.len()
        }
    }
}

/// Call `take` with connection `c`'s stream from byte `o` of its message
/// `j` on, piece by piece, until it returns false.
fn each_piece(m: &Messages, c: u64, mut j: u64, mut o: usize, mut take: impl FnMut(&[u8]) -> bool) {
    let mut text = Vec::new();
    loop {
        let go_on = match m.cut(c, j) {
            Some(cut) => {
                let piece = cut.piece(m.block(), o);
                if piece.is_empty() {
                    (j, o) = (j + 1, 0);
                    continue;
                }
                o += piece.len();
                take(piece)
            }
            None => {
                text.clear();
                m.write(c, j, &mut text);
                let start = o.min(text.len());
                (j, o) = (j + 1, 0);
                if start == text.len() {
                    continue;
                }
                take(&text[start..])
            }
        };
        if !go_on {
            return;
        }
    }
}

/// How many leading bytes of `got` are connection `c`'s stream from byte
/// `o` of its message `j` on.
pub(crate) fn match_len(m: &Messages, c: u64, j: u64, o: usize, got: &[u8]) -> usize {
    let mut n = 0;
    each_piece(m, c, j, o, |piece| {
        let k = piece.len().min(got.len() - n);
        let same = piece[..k]
            .iter()
            .zip(&got[n..n + k])
            .take_while(|(a, b)| a == b)
            .count();
        n += same;
        same == k && n < got.len()
    });
    n
}

/// `len` bytes of connection `c`'s stream from byte `o` of its message `j`.
pub(crate) fn stream_bytes(m: &Messages, c: u64, j: u64, o: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    if len > 0 {
        each_piece(m, c, j, o, |piece| {
            let k = piece.len().min(len - out.len());
            out.extend_from_slice(&piece[..k]);
            out.len() < len
        });
    }
    out
}

/// The connection's own stream: how far on from the wrong byte byte `o`
/// of its message `j` is (negative: before it).
pub(crate) fn own_shift(scene: &Scene<'_>, j: u64, o: usize) -> i64 {
    let (k, m) = (scene.message, scene.messages);
    let span = |from: u64, to: u64| -> i64 {
        (from..to)
            .map(|i| message_len(m, scene.conn, i) as i64)
            .sum()
    };
    let between = if j >= k { span(k, j) } else { -span(j, k) };
    between + o as i64 - scene.offset as i64
}

/// The shift within the message that every one of `found` shares: from
/// the message's start, or else from its end; `None` if neither is shared.
pub(crate) fn common_shift(scene: &Scene<'_>, found: &[Found]) -> Option<i64> {
    let m = scene.messages;
    let own_end = scene.offset as i64 - message_len(m, scene.conn, scene.message) as i64;
    let from_start = |f: &Found| f.offset as i64 - scene.offset as i64;
    let from_end = |f: &Found| f.offset as i64 - message_len(m, f.conn, f.message) as i64 - own_end;
    let shared = |by: &dyn Fn(&Found) -> i64| {
        let first = by(found.first()?);
        found.iter().all(|f| by(f) == first).then_some(first)
    };
    shared(&from_start).or_else(|| shared(&from_end))
}
