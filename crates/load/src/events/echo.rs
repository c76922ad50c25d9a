//! One connection's byte stream: writing the bytes of queued messages, and
//! reading echoed bytes and comparing them with what was sent at the same
//! place in the stream, however the stream happens to be split into reads.

use super::conn::{Conn, Reading};
use crate::outcome::{classify, ErrorKind};
use crate::stats::Recorder;
use std::io::{self, IoSlice, Read, Write};
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
    let mismatch = match conn.in_flight.front() {
        Some(m) if m.cut.is_some() => verify_cuts(conn, got),
        _ => {
            let from = (conn.verified - conn.base) as usize;
            let sent = &conn.buf[from..from + got.len()];
            (sent != got).then(|| first_difference(sent, got))
        }
    };
    if let Some(at) = mismatch {
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

/// Sized messages: compare `got`, from stream offset `verified`, with the
/// pieces of the messages in flight there (their keys and the block), in
/// place. The offset into `got` of the first wrong byte, if any.
fn verify_cuts(conn: &Conn, got: &[u8]) -> Option<usize> {
    let block = conn.messages.block();
    let mut pos = conn.verified;
    let mut checked = 0;
    for m in &conn.in_flight {
        if checked == got.len() {
            break;
        }
        if m.end <= pos {
            continue;
        }
        // A run is all sized or all template messages.
        let cut = m.cut.as_ref()?;
        while checked < got.len() && pos < m.end {
            let piece = cut.piece(block, (pos - m.start) as usize);
            let n = piece.len().min(got.len() - checked);
            let echo = &got[checked..checked + n];
            if piece[..n] != *echo {
                return Some(checked + first_difference(&piece[..n], echo));
            }
            checked += n;
            pos += n as u64;
        }
    }
    None
}

/// Where two slices of the same length first differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
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
        conn.measured_verified += u64::from(m.measured);
        conn.last_verified = Some(now);
        conn.in_flight.pop_front();
        conn.in_flight_written -= 1;
    }
    Ok(())
}

/// Free the buffer of verified bytes when that is cheap or worth it.
fn drop_verified(conn: &mut Conn) {
    if conn.verified == conn.generated || conn.buf.is_empty() {
        // (Sized messages have no buffer: its base just follows.)
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
        let sent = match conn.in_flight.front() {
            Some(m) if m.cut.is_some() => write_cuts(conn),
            _ => {
                let from = (conn.written - conn.base) as usize;
                conn.stream.write(&conn.buf[from..])
            }
        };
        match sent {
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

/// The most pieces one vectored write gathers.
const MAX_PIECES: usize = 64;

/// Sized messages: one vectored write of the unwritten pieces of the
/// messages queued (their keys and runs of the block), with no copy.
fn write_cuts(conn: &mut Conn) -> io::Result<usize> {
    let block = conn.messages.block();
    let mut pieces = [IoSlice::new(&[]); MAX_PIECES];
    let mut n = 0;
    let mut pos = conn.written;
    'messages: for m in conn.in_flight.range(conn.in_flight_written..) {
        let Some(cut) = m.cut.as_ref() else { break };
        while pos < m.end {
            if n == MAX_PIECES {
                break 'messages;
            }
            let piece = cut.piece(block, (pos - m.start) as usize);
            pieces[n] = IoSlice::new(piece);
            n += 1;
            pos += piece.len() as u64;
        }
    }
    let pieces = &pieces[..n];
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    if total <= SMALL_WRITE {
        // A few small pieces: one plain write from the stack costs less
        // than the kernel's import of an iovec array.
        let mut bytes = [0u8; SMALL_WRITE];
        let mut at = 0;
        for p in pieces {
            bytes[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        return conn.stream.write(&bytes[..at]);
    }
    conn.stream.write_vectored(pieces)
}

/// Pieces up to this many bytes in all are copied and written plainly.
const SMALL_WRITE: usize = 2048;
