//! One connection's byte stream: writing the bytes of queued messages, and
//! reading echoed bytes and comparing them with what was sent at the same
//! place in the stream, however the stream happens to be split into reads.

use super::conn::{Conn, Reading};
use crate::outcome::{classify, ErrorKind};
use crate::stats::Recorder;
use std::io::{self, IoSlice, Read, Write};
use std::time::Duration;

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
        conn.ex.received(rec, &scratch[..n], timeout)?;
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

/// Write until everything queued is out or the socket is full (a writable
/// edge will bring the connection back).
pub(super) fn write(conn: &mut Conn, rec: &mut Recorder) -> Result<(), ErrorKind> {
    while conn.ex.unwritten_len() > 0 {
        match write_pieces(conn) {
            Ok(0) => return Err(ErrorKind::Reset),
            Ok(n) => conn.ex.wrote(rec, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(&e)),
        }
    }
    Ok(())
}

/// The most pieces one vectored write gathers.
const MAX_PIECES: usize = 64;

/// One write of the unwritten bytes: a template run as it is; sized
/// messages as one vectored write of their pieces (their keys and runs of
/// the block), with no copy.
fn write_pieces(conn: &mut Conn) -> io::Result<usize> {
    let mut pieces = [IoSlice::new(&[]); MAX_PIECES];
    let mut n = 0;
    conn.ex.unwritten(|piece| {
        pieces[n] = IoSlice::new(piece);
        n += 1;
        n < MAX_PIECES
    });
    let pieces = &pieces[..n];
    if let [one] = pieces {
        return conn.stream.write(one);
    }
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
