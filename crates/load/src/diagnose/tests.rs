use super::*;
use crate::payload::Payload;
use proptest::prelude::*;

const L: usize = 64;

fn sized(seed: u64) -> Messages {
    Messages::new(&Payload::Sized { len: L, seed })
}

/// Connection `c`'s stream, messages 1 to `n`.
fn stream(m: &Messages, c: u64, n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for k in 1..=n {
        m.write(c, k, &mut v);
    }
    v
}

/// The first wrong byte of connection `conn` is at stream byte `at` (of
/// its 64-byte messages), and `got` came from there.
fn at(m: &Messages, conn: u64, at: usize, got: &[u8]) -> Mismatch {
    diagnose(&Scene {
        messages: m,
        connections: 4,
        conn,
        message: (at / L) as u64 + 1,
        offset: at % L,
        stream_offset: at as u64,
        sent: (at / L) as u64 + 4,
        got,
    })
}

#[test]
fn kind_names_are_the_json_names() {
    for k in MismatchKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.name());
    }
}

#[test]
fn another_connections_message_is_named() {
    let m = sized(7);
    let other = stream(&m, 3, 6);
    // Connection 1's message 3 came back as connection 3's message 3.
    let d = at(&m, 1, 128, &other[128..192]);
    assert_eq!(d.kind, MismatchKind::OtherConnection, "{d:?}");
    assert_eq!(
        (d.source_connection, d.source_message, d.source_offset),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(d.candidates, 1);
    assert_eq!(d.received_hex, hex(&other[128..144]));
    assert_eq!(d.expected_hex, hex(&stream(&m, 1, 3)[128..144]));
    // From the middle of a message, crossing into the next one.
    let d = at(&m, 2, 64 + 20, &other[64 + 30..]);
    assert_eq!(
        (
            d.kind,
            d.source_connection,
            d.source_message,
            d.source_offset
        ),
        (MismatchKind::OtherConnection, Some(3), Some(2), Some(30))
    );
}

#[test]
fn an_earlier_message_again_is_named() {
    let m = sized(7);
    let own = stream(&m, 1, 4);
    let d = at(&m, 1, 192, &own[..64]);
    assert_eq!(d.kind, MismatchKind::EarlierMessage, "{d:?}");
    assert_eq!((d.source_message, d.shift), (Some(1), Some(-192)));
    assert!(
        d.line().contains("message 1 of this connection again"),
        "{}",
        d.line()
    );
}

#[test]
fn a_duplicated_chunk_is_a_shift_back() {
    let m = sized(7);
    let own = stream(&m, 1, 2);
    let mut got = own[90..100].to_vec();
    got.extend_from_slice(&own[100..128]);
    let d = at(&m, 1, 100, &got);
    assert_eq!(d.kind, MismatchKind::Shifted, "{d:?}");
    assert_eq!(
        (d.shift, d.source_message, d.source_offset),
        (Some(-10), Some(2), Some(26))
    );
    assert!(
        d.line().contains("shifted by -10 (10 repeated"),
        "{}",
        d.line()
    );
}

#[test]
fn a_flipped_byte_is_nobodys_and_the_stream_resumes() {
    let m = sized(7);
    let mut got = stream(&m, 1, 3)[100..].to_vec();
    got[0] ^= 0x20;
    let d = at(&m, 1, 100, &got);
    assert_eq!(d.kind, MismatchKind::Corrupt, "{d:?}");
    assert_eq!((d.resumes_after, d.candidates), (Some(1), 0));
    let d = at(&m, 1, 100, &[0xaa; 40]);
    assert_eq!((d.kind, d.resumes_after), (MismatchKind::Corrupt, None));
}

#[test]
fn bytes_inserted_mid_stream_are_counted_and_the_stream_goes_on() {
    let m = sized(7);
    let s = stream(&m, 1, 3);
    // Five bytes no message has, then the rest of the stream from byte 100.
    let mut got = vec![0xa5, 0x5a, 0xa5, 0x5a, 0xa5];
    got.extend_from_slice(&s[100..]);
    let d = at(&m, 1, 100, &got);
    assert_eq!(d.kind, MismatchKind::Corrupt, "{d:?}");
    assert_eq!((d.resumes_after, d.inserted), (None, Some(5)), "{d:?}");
    assert!(d.line().contains("5 inserted"), "{}", d.line());
}

#[test]
fn nothing_is_expected_past_what_the_connection_sent() {
    let m = sized(7);
    // The wrong byte is the last byte of message 2, the last one sent:
    // one byte was owed, so one byte is expected, whatever came.
    let d = diagnose(&Scene {
        messages: &m,
        connections: 4,
        conn: 1,
        message: 2,
        offset: L - 1,
        stream_offset: 2 * L as u64 - 1,
        sent: 2,
        got: &[0xaa; 6],
    });
    assert_eq!(d.expected_hex.len(), 2, "{d:?}");
}

#[test]
fn a_shift_inside_a_long_message_is_ambiguous_but_measured() {
    // Messages longer than the block's spread: every body covers most of
    // the block, so a stretch of it is in every message, at other places.
    let len = 100_000;
    let m = Messages::new(&Payload::Sized { len, seed: 3 });
    let mut own = Vec::new();
    m.write(1, 1, &mut own);
    let mut got = own[5_000..5_010].to_vec();
    got.extend_from_slice(&own[5_010..9_000]);
    let d = diagnose(&Scene {
        messages: &m,
        connections: 4,
        conn: 1,
        message: 1,
        offset: 5_010,
        stream_offset: 5_010,
        sent: 1,
        got: &got,
    });
    assert_eq!(d.kind, MismatchKind::Ambiguous, "{d:?}");
    assert_eq!((d.shift, d.source_connection), (Some(-10), None));
    assert!(d.candidates > 1);
    assert!(
        d.line().contains("shifted by -10 from the expected ones"),
        "{}",
        d.line()
    );
}

#[test]
fn too_few_bytes_are_not_guessed_at() {
    let m = sized(7);
    let d = at(&m, 1, 100, &[1, 2]);
    assert_eq!(d.kind, MismatchKind::Unknown);
    assert!(d.line().contains("only 2 bytes"), "{}", d.line());
}

#[test]
fn excerpts_are_bounded() {
    let m = sized(7);
    let d = at(&m, 1, 0, &stream(&m, 2, 3));
    assert_eq!(d.expected_hex.len(), 2 * EXCERPT);
    assert_eq!(d.received_hex.len(), 2 * EXCERPT);
}

fn text(m: &Messages, conn: u64, message: u64, offset: usize, got: &[u8]) -> Mismatch {
    diagnose(&Scene {
        messages: m,
        connections: 3,
        conn,
        message,
        offset,
        stream_offset: 0,
        sent: message + 2,
        got,
    })
}

#[test]
fn text_from_another_connection_is_named_only_as_far_as_certain() {
    let m = Messages::new(&Payload::Template("Hello".into()));
    // "1. Thread 1 - Hello" came back as "1. Thread 2 - Hello": wrong from byte 10.
    let two = stream(&m, 2, 3);
    let d = text(&m, 1, 1, 10, &two[10..]);
    assert_eq!(
        (
            d.kind,
            d.source_connection,
            d.source_message,
            d.source_offset
        ),
        (MismatchKind::OtherConnection, Some(2), Some(1), Some(10)),
        "{d:?}"
    );
    // Only "2 - Hello": connection 2, but any of its one-digit messages.
    let d = text(&m, 1, 1, 10, &two[10..19]);
    assert_eq!(
        (d.kind, d.source_connection, d.source_message),
        (MismatchKind::OtherConnection, Some(2), None),
        "{d:?}"
    );
    assert!(d.candidates > 1);
    assert!(d.line().contains("ambiguous"), "{}", d.line());
}

#[test]
fn the_same_text_shifted_is_ambiguous_but_says_by_how_much() {
    let m = Messages::new(&Payload::Template("Hello world".into()));
    // "5. Thread 1 - Hello world": " world" came where "world" was due.
    let own = stream(&m, 1, 5);
    let start = own.len() - "Hello world".len();
    let d = text(&m, 1, 5, "5. Thread 1 - Hello ".len(), &own[start + 5..]);
    assert_eq!(d.kind, MismatchKind::Ambiguous, "{d:?}");
    assert_eq!(d.shift, Some(-1));
    assert_eq!((d.source_connection, d.source_message), (None, None));
    assert!(d.line().contains("several connections"), "{}", d.line());
    // With one connection in the run, they are its own bytes, whichever message.
    let one = diagnose(&Scene {
        messages: &m,
        connections: 1,
        conn: 1,
        message: 5,
        offset: "5. Thread 1 - Hello ".len(),
        stream_offset: 0,
        sent: 5,
        got: &own[start + 5..],
    });
    assert_eq!(
        (
            one.kind,
            one.source_connection,
            one.source_message,
            one.shift
        ),
        (MismatchKind::Ambiguous, Some(1), None, Some(-1)),
        "{one:?}"
    );
    assert!(
        one.line()
            .contains("own bytes, shifted by -1 from the expected ones"),
        "{}",
        one.line()
    );
    // Bytes that are not the text at all.
    let d = text(&m, 1, 5, 3, b"#######");
    assert_eq!(d.kind, MismatchKind::Corrupt, "{d:?}");
}

#[test]
fn ten_thousand_connections_are_searched_quickly() {
    let m = sized(1);
    let got = stream(&m, 9_999, 40);
    let t = std::time::Instant::now();
    let d = diagnose(&Scene {
        messages: &m,
        connections: 10_000,
        conn: 1,
        message: 30,
        offset: 0,
        stream_offset: 29 * L as u64,
        sent: 30,
        got: &got[29 * L..],
    });
    assert_eq!(
        (d.kind, d.source_connection, d.source_message),
        (MismatchKind::OtherConnection, Some(9_999), Some(30))
    );
    // A debug build; release is some ten times faster.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn ten_thousand_connections_of_text_are_searched_quickly() {
    let m = Messages::new(&Payload::Template("Hello".into()));
    let got = stream(&m, 9_999, 31);
    let at = stream(&m, 9_999, 29).len();
    let t = std::time::Instant::now();
    let d = diagnose(&Scene {
        messages: &m,
        connections: 10_000,
        conn: 1,
        message: 30,
        offset: 0,
        stream_offset: 0,
        sent: 30,
        got: &got[at..],
    });
    assert_eq!(
        (d.kind, d.source_connection, d.source_message),
        (MismatchKind::OtherConnection, Some(9_999), Some(30))
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_search_that_stops_at_its_limit_names_no_source() {
    // A text of one letter: every message has "aaaaaaaa" at many places.
    let m = Messages::new(&Payload::Template("a".repeat(200)));
    let d = text(&m, 1, 5, 30, &[b'a'; 8]);
    assert_eq!(d.kind, MismatchKind::Ambiguous, "{d:?}");
    assert!(d.candidates >= 2, "{d:?}");
}

proptest! {
    #[test]
    fn another_connections_bytes_are_traced_to_their_place(
        seed: u64, conn in 1u64..5, other in 1u64..5, k in 1u64..8, j in 1u64..8,
        off in 0usize..L, from in 0usize..L,
    ) {
        prop_assume!(other != conn);
        let m = sized(seed);
        let theirs = stream(&m, other, 10);
        let got = &theirs[(j as usize - 1) * L + from..];
        prop_assume!(got[0] != stream(&m, conn, 9)[(k as usize - 1) * L + off]);
        let d = at(&m, conn, (k as usize - 1) * L + off, got);
        prop_assert_eq!(d.kind, MismatchKind::OtherConnection);
        prop_assert_eq!(
            (d.source_connection, d.source_message, d.source_offset),
            (Some(other), Some(j), Some(from as u64))
        );
    }

    #[test]
    fn the_own_stream_shifted_is_measured(seed: u64, pos in 64usize..400, shift in -64i64..64) {
        prop_assume!(shift != 0);
        let m = sized(seed);
        let own = stream(&m, 2, 12);
        let from = (pos as i64 + shift) as usize;
        prop_assume!(own[from] != own[pos]);
        let d = at(&m, 2, pos, &own[from..from + 80]);
        prop_assert!(
            matches!(d.kind, MismatchKind::Shifted | MismatchKind::EarlierMessage),
            "{:?}", d
        );
        prop_assert_eq!(d.shift, Some(shift));
    }

    #[test]
    fn a_changed_byte_is_corrupt(seed: u64, pos in 0usize..500, flip in 1u8..=255, n in 8usize..100) {
        let m = sized(seed);
        let mut got = stream(&m, 1, 12)[pos..pos + n].to_vec();
        got[0] ^= flip;
        let d = at(&m, 1, pos, &got);
        prop_assert_eq!(d.kind, MismatchKind::Corrupt);
        prop_assert_eq!(d.resumes_after, Some(1));
    }
}
