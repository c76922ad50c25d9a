//! One connection's byte stream: writing the bytes of queued messages, and
//! reading echoed bytes and comparing them with what was sent at the same
//! place in the stream, however the stream happens to be split into reads.

use super::conn::{Conn, Reading};
use crate::outcome::{classify, ErrorKind};
use crate::stats::Recorder;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Bytes read per `read` call.
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// How a read pass ended without failing.
pub(super) enum ReadEnd {
    /// The receive queue is empty for now.
    Drained,
    /// The server closed its side.
    Eof,
}

/// Read and verify until the socket is drained, the server closes, or a
/// byte is wrong.
pub(super) fn read(
    conn: &mut Conn,
    rec: &mut Recorder,
    scratch: &mut [u8],
    reading: Reading,
    timeout: Duration,
) -> Result<ReadEnd, ErrorKind> {
    loop {
        let n = match conn.stream.read(scratch) {
            Ok(0) => return Ok(ReadEnd::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(&e)),
        };
        let owed = (conn.written - conn.verified) as usize;
        verify(conn, &scratch[..n.min(owed)])?;
        complete_verified(conn, rec, timeout)?;
        if n > owed {
            tracing::debug!(
                "connection {}: {} bytes came back that were never sent (stream offset {})",
                conn.id + 1,
                n - owed,
                conn.written
            );
            return Err(ErrorKind::ExtraBytes);
        }
        drop_verified(conn);
        // A short read emptied the receive queue: for a TCP socket `read`
        // returns less than asked only when nothing more is queued, and new
        // data raises a new readiness edge. This saves one `read` that
        // would fail with WouldBlock per turn, a third of the system calls
        // of a pipeline of 1. Not when the peer has closed: its FIN or
        // reset is behind the data, raised no edge of its own, and only
        // the next `read` reports it.
        if n < scratch.len() && reading == Reading::Data {
            return Ok(ReadEnd::Drained);
        }
    }
}

/// Compare echoed bytes, all of them owed, with what was sent at the same
/// place in the stream; what matched is verified.
fn verify(conn: &mut Conn, got: &[u8]) -> Result<(), ErrorKind> {
    let from = (conn.verified - conn.base) as usize;
    let sent = &conn.buf[from..from + got.len()];
    if sent != got {
        let at = sent.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
        tracing::debug!(
            "connection {}: echo mismatch at stream offset {}",
            conn.id + 1,
            conn.verified + at as u64
        );
        return Err(ErrorKind::Mismatch);
    }
    // What was owed and matched is verified, even when more follows.
    conn.verified += got.len() as u64;
    Ok(())
}

/// Record every message now verified to its end, in order.
fn complete_verified(
    conn: &mut Conn,
    rec: &mut Recorder,
    timeout: Duration,
) -> Result<(), ErrorKind> {
    let now = Instant::now();
    while let Some(m) = conn.in_flight.front() {
        if m.end > conn.verified {
            break;
        }
        // The sweep looks for overdue echoes only now and then; an
        // echo that took longer than the timeout fails here, exactly.
        if now.duration_since(m.queued) > timeout {
            return Err(ErrorKind::Timeout);
        }
        rec.verified(now, m.queued, m.intended, m.measured, m.end - m.start);
        conn.last_verified = Some(now);
        conn.in_flight.pop_front();
        conn.in_flight_written -= 1;
    }
    Ok(())
}

/// Free the buffer of verified bytes when that is cheap or worth it.
fn drop_verified(conn: &mut Conn) {
    if conn.verified == conn.generated {
        // Everything sent came back: start the buffer afresh, no copying.
        conn.buf.clear();
        conn.base = conn.verified;
    } else {
        // Drop verified bytes once they are a large, leading part of the buffer.
        let dead = (conn.verified - conn.base) as usize;
        if dead >= 64 * 1024 && dead * 2 >= conn.buf.len() {
            conn.buf.drain(..dead);
            conn.base = conn.verified;
        }
    }
}

/// Write until everything queued is out or the socket is full (a writable
/// edge will bring the connection back).
pub(super) fn write(conn: &mut Conn, rec: &mut Recorder) -> Result<(), ErrorKind> {
    while conn.written < conn.generated {
        let from = (conn.written - conn.base) as usize;
        match conn.stream.write(&conn.buf[from..]) {
            Ok(0) => return Err(ErrorKind::Reset),
            Ok(n) => conn.written += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(&e)),
        }
    }
    while let Some(m) = conn.in_flight.get(conn.in_flight_written) {
        if m.end > conn.written {
            break;
        }
        rec.sent(m.measured, m.end - m.start);
        conn.in_flight_written += 1;
    }
    Ok(())
}
