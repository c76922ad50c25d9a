//! Servers that echo wrong bytes: each must fail the run as a `mismatch`
//! (swapped streams: or `extra_bytes`) in every mode, and the report must
//! say what came instead (`mismatch_details`): whose bytes, or how far
//! off, or that they are nobody's.

use super::{all_modes, fails_checked, twisted_echo, COUNT, SIZE, SIZED};
use crate::stress::spawn_server;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

/// Run in every mode and check each diagnosis with `check`; every
/// mismatch is diagnosed (there are two connections), at least one.
fn diagnosed_in_every_mode(addr: SocketAddr, kinds: &[&str], check: impl Fn(&str, &Value)) {
    diagnosed_with(addr, kinds, SIZED, check);
}

/// [`diagnosed_in_every_mode`] with the messages of `payload` (flags).
fn diagnosed_with(
    addr: SocketAddr,
    kinds: &[&str],
    payload: &[&str],
    check: impl Fn(&str, &Value),
) {
    let check = |mode: &str, json: &Value| {
        let details = json["mismatch_details"].as_array().expect("a list");
        assert_eq!(
            details.len() as u64,
            json["mismatches"].as_u64().unwrap(),
            "{mode}: every mismatch is worked out\n{json:#}"
        );
        assert_eq!(json["mismatch_details_left_off"], 0, "{mode}: {json:#}");
        for d in details {
            check(mode, d);
        }
    };
    let stop = ["-n", &COUNT.to_string()];
    fails_checked(addr, kinds, &stop, payload, &all_modes(), &check);
}

#[test]
fn one_flipped_byte_is_a_mismatch() {
    let addr = twisted_echo(|s, offset, chunk| {
        let mut out = chunk.to_vec();
        if (offset..offset + chunk.len() as u64).contains(&100) {
            out[(100 - offset) as usize] ^= 0x20;
        }
        s.write_all(&out).is_ok()
    });
    diagnosed_in_every_mode(addr, &["mismatch"], |mode, d| {
        // Stream byte 100 is byte 36 of message 2; nobody's, then right again.
        assert_eq!(d["kind"], "corrupt", "{mode}: {d:#}");
        assert_eq!(
            (&d["message"], &d["offset"], &d["stream_offset"]),
            (&Value::from(2), &Value::from(36), &Value::from(100)),
            "{mode}: {d:#}"
        );
        assert_eq!(d["resumes_after"], 1, "{mode}: {d:#}");
        assert_eq!(d["source_connection"], Value::Null, "{mode}: {d:#}");
        let (want, got) = (
            d["expected_hex"].as_str().unwrap(),
            d["received_hex"].as_str().unwrap(),
        );
        assert_eq!((want.len(), got.len()), (32, 32), "{mode}: {d:#}");
        // The first byte differs by the flipped bit, the rest agree.
        assert_eq!(want[2..], got[2..], "{mode}: {d:#}");
        let byte = |h: &str| u8::from_str_radix(&h[..2], 16).unwrap();
        assert_eq!(byte(want) ^ byte(got), 0x20, "{mode}: {d:#}");
    });
}

#[test]
fn a_duplicated_chunk_is_a_mismatch() {
    // Bytes 90..100 come twice, in the middle of the second message.
    let addr = twisted_echo(|s, offset, chunk| {
        let end = offset + chunk.len() as u64;
        if (offset..end).contains(&100) || (offset < 100 && end == 100) {
            let cut = (100 - offset) as usize;
            let dup_from = cut.saturating_sub(10);
            let mut out = chunk[..cut].to_vec();
            out.extend_from_slice(&chunk[dup_from..cut]);
            out.extend_from_slice(&chunk[cut..]);
            return s.write_all(&out).is_ok();
        }
        s.write_all(chunk).is_ok()
    });
    diagnosed_in_every_mode(addr, &["mismatch"], |mode, d| {
        // The stream is 10 bytes behind from byte 100 on (later, where the
        // repeated byte happens to be the one due).
        assert_eq!(d["kind"], "shifted", "{mode}: {d:#}");
        assert_eq!(d["shift"], -10, "{mode}: {d:#}");
        assert_eq!(d["message"], 2, "{mode}: {d:#}");
        assert_eq!(d["source_message"], 2, "{mode}: {d:#}");
        assert_eq!(
            d["source_offset"].as_u64().unwrap() + 10,
            d["offset"].as_u64().unwrap(),
            "{mode}: {d:#}"
        );
        assert_eq!(d["candidates"], 1, "{mode}: {d:#}");
    });
}

#[test]
fn a_replayed_earlier_message_is_a_mismatch() {
    // The fourth message's echo is the first message again: the right
    // length, at the right time, the wrong bytes.
    let addr = spawn_server(|mut s| {
        let mut first = Vec::new();
        let mut buf = [0u8; 4096];
        let mut offset = 0u64;
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut out = buf[..n].to_vec();
            for (i, b) in out.iter_mut().enumerate() {
                let at = offset + i as u64;
                if at < SIZE {
                    first.push(*b);
                } else if (3 * SIZE..4 * SIZE).contains(&at) {
                    *b = first[(at - 3 * SIZE) as usize];
                }
            }
            offset += n as u64;
            if s.write_all(&out).is_err() {
                return;
            }
        }
    });
    diagnosed_in_every_mode(addr, &["mismatch"], |mode, d| {
        assert_eq!(d["kind"], "earlier_message", "{mode}: {d:#}");
        assert_eq!(
            (&d["message"], &d["source_message"], &d["source_connection"]),
            (&Value::from(4), &Value::from(1), &d["connection"]),
            "{mode}: {d:#}"
        );
        assert_eq!(d["source_offset"], d["offset"], "{mode}: {d:#}");
        assert_eq!(d["shift"], -3 * SIZE as i64, "{mode}: {d:#}");
    });
}

#[test]
fn swapped_streams_are_caught() {
    // Connections are paired as they arrive, and each gets the other's
    // bytes. What the client sees depends on timing: the other
    // connection's bytes where its own were due (mismatch), or bytes while
    // it has sent nothing yet (extra_bytes). Both say the same thing.
    let addr = swapping_server();
    diagnosed_in_every_mode(addr, &["mismatch", "extra_bytes"], |mode, d| {
        // The other connection's stream, byte for byte at the same place.
        assert_eq!(d["kind"], "other_connection", "{mode}: {d:#}");
        let conn = d["connection"].as_u64().unwrap();
        assert_eq!(d["source_connection"], 3 - conn, "{mode}: {d:#}");
        assert_eq!(d["source_message"], d["message"], "{mode}: {d:#}");
        assert_eq!(d["source_offset"], d["offset"], "{mode}: {d:#}");
    });
}

/// Connections are paired as they arrive, and each gets the other's bytes.
fn swapping_server() -> SocketAddr {
    let waiting: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
    spawn_server(move |s| {
        // Take the waiting one, or become it, under one lock: two
        // connections that arrive together must not both wait (the second
        // would drop the first, which then sees a close, and itself wait
        // for a partner that never comes).
        let other = {
            let mut w = waiting.lock().unwrap();
            match w.take() {
                Some(other) => other,
                None => {
                    *w = Some(s);
                    return;
                }
            }
        };
        let (a, b) = (s.try_clone().unwrap(), other.try_clone().unwrap());
        std::thread::spawn(move || relay(a, other));
        relay(b, s);
    })
}

#[test]
fn swapped_text_streams_are_traced_as_far_as_the_text_tells() {
    // "1. Thread 1 - Hello" came back as "1. Thread 2 - Hello": the other
    // connection's, certainly; which of its messages only when the bytes
    // run on into the next one (a pipeline), since every message of
    // connection 2 with a one-digit number has "2 - Hello" at byte 10.
    let addr = swapping_server();
    let text = ["--message", "Hello"];
    diagnosed_with(addr, &["mismatch", "extra_bytes"], &text, |mode, d| {
        assert_eq!(d["kind"], "other_connection", "{mode}: {d:#}");
        let conn = d["connection"].as_u64().unwrap();
        assert_eq!(d["source_connection"], 3 - conn, "{mode}: {d:#}");
        assert_eq!(d["offset"], 10, "{mode}: {d:#}");
        if !d["source_message"].is_null() {
            assert_eq!(d["source_message"], d["message"], "{mode}: {d:#}");
            assert_eq!(d["candidates"], 1, "{mode}: {d:#}");
        } else {
            assert!(d["candidates"].as_u64().unwrap() > 1, "{mode}: {d:#}");
        }
    });
}

fn relay(mut from: TcpStream, mut to: TcpStream) {
    let _ = to.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
