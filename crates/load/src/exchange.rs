//! One connection's exchange, whichever engine moves its bytes: where it is
//! in its life and in its plan, the bytes of its messages in flight, and
//! the rules both event-driven engines follow (readiness, [`crate::events`];
//! completions, [`crate::completion`]).
//!
//! Each connection keeps one buffer holding the bytes of its in-flight
//! template messages (sized messages are sent and checked from the thread's
//! block), with three offsets into the byte stream: how much was generated,
//! written and verified, and the messages complete in order (an echo is
//! FIFO over the stream). Echoed bytes are verified however the stream is
//! split into reads.
//!
//! Once everything asked of it is verified, a connection goes through the
//! end-of-run check (half-close, then the server's end of stream). Churn
//! (`per_connection`): a connection that has carried its messages goes
//! through the same check, then a new connection is opened in its place,
//! which takes over its plan: one slot, a line of connections.
//!
//! [`Tally`] keeps a thread's books over its slots (how many are live and
//! exchanging, what each verified), so that both engines end a connection
//! the same way.

use crate::config::Config;
use crate::diagnose::{diagnose, Mismatch, Scene};
use crate::outcome::{classify, ErrorKind};
use crate::payload::{Cut, Messages};
use crate::schedule::{Next, Plan, Workload};
use crate::stats::{Ending, Recorder};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message sent and not yet verified.
pub(crate) struct InFlight {
    /// Where it starts and ends in the connection's byte stream.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// When it was handed to the socket (raw latency starts here).
    pub(crate) queued: Instant,
    /// When it was due (corrected latency starts here; `queued` in a closed loop).
    pub(crate) intended: Instant,
    pub(crate) measured: bool,
    /// A sized message: where its bytes are (its key and a run of the
    /// thread's block), sent and checked from there. `None`: a template
    /// message, written out in the connection's buffer.
    pub(crate) cut: Option<Cut>,
}

/// Where a connection is in its life.
pub(crate) enum State {
    /// The non-blocking connect has not finished.
    Connecting { since: Instant },
    /// Sending and verifying. `finished` once the plan has no more messages
    /// for it; echoes may still be owed.
    Exchanging { finished: bool },
    /// Everything asked of it was sent and verified; its write side is
    /// shut, and it reads until the server's end of stream: any byte now is
    /// one that was never sent. `reopen`: churn, a new connection takes its
    /// place after it; otherwise the slot is done.
    Closing { since: Instant, reopen: bool },
}

impl State {
    /// Still part of the exchange, for the series: everything but the
    /// final close check (a churn close is followed by more messages).
    pub(crate) fn exchanging(&self) -> bool {
        !matches!(self, State::Closing { reopen: false, .. })
    }
}

/// What became of a connection after a turn.
pub(crate) enum Outcome {
    Continue,
    /// Everything asked was sent and verified, and the server ended the
    /// connection this way.
    Completed(Ending),
    /// Churn: the connection carried its share and the server ended it this
    /// way; a new one takes its place.
    Replace(Ending),
    Failed(ErrorKind),
}

/// What a turn does once it has read and queued what is due.
pub(crate) enum Step {
    /// The connection is over (or, churn, to be replaced).
    End(Outcome),
    /// Everything asked of it is verified: the close check, then the slot is
    /// done, or (`reopen`) a new connection takes its place.
    Close { reopen: bool },
    /// Write what is queued.
    Write,
}

/// What the periodic sweep finds for one connection.
pub(crate) enum Sweep {
    Nothing,
    /// The close check's grace is over.
    Settle(Outcome),
    /// A connect or an echo took longer than the timeout.
    Fail(ErrorKind),
    /// The run has ended and the connection is idle: give it a turn, so
    /// that it notices.
    Nudge,
}

/// One connection's exchange: where it is in its life and in its plan,
/// and the bytes of its messages in flight.
pub(crate) struct Exchange {
    pub(crate) id: u64,
    pub(crate) state: State,
    pub(crate) plan: Plan,
    /// The thread's payload, its block made once.
    pub(crate) messages: Arc<Messages>,
    /// Connections in the run: whose bytes a wrong echo may be.
    connections: u64,
    /// Template messages: the bytes of the messages not yet verified;
    /// `buf[0]` is stream offset `base`. Sized messages are not written
    /// out: they are sent and checked from the block.
    pub(crate) buf: Vec<u8>,
    pub(crate) base: u64,
    pub(crate) generated: u64,
    pub(crate) written: u64,
    pub(crate) verified: u64,
    pub(crate) in_flight: VecDeque<InFlight>,
    /// How many of `in_flight` are fully written.
    pub(crate) in_flight_written: usize,
    /// When the last message came back verified.
    pub(crate) last_verified: Option<Instant>,
    /// When this connection could last take another message: an echo
    /// freed a place in its full pipeline, or a replacement connection came
    /// up (`None`: since the start). A message due earlier waited for the
    /// server, not for the generator.
    free_since: Option<Instant>,
    /// The pipeline was full when the plan was last asked: the next echo
    /// verified is what frees a place (and moves `free_since`).
    full: bool,
    /// Measured messages verified in this slot (churn: by every
    /// connection of the slot, so not reset when one is replaced).
    pub(crate) measured_verified: u64,
    /// Messages handed to this connection (churn: its share is
    /// `per_connection`, then it is replaced).
    sent_here: u64,
    /// Churn: this connection has carried its share, and its slot has
    /// more to send, so a new connection will take its place.
    retire: bool,
}

impl Exchange {
    /// The exchange of connection `id`, whose send buffer is `buf` (empty,
    /// its pages already touched: see [`Config::send_buffer_at_start`]),
    /// connecting since `now`, one of `connections` in the run.
    pub(crate) fn new(
        id: u64,
        now: Instant,
        buf: Vec<u8>,
        messages: Arc<Messages>,
        connections: u64,
    ) -> Exchange {
        Exchange {
            id,
            state: State::Connecting { since: now },
            plan: Plan::new(id),
            messages,
            connections,
            buf,
            base: 0,
            generated: 0,
            written: 0,
            verified: 0,
            in_flight: VecDeque::new(),
            in_flight_written: 0,
            last_verified: None,
            free_since: None,
            full: false,
            measured_verified: 0,
            sent_here: 0,
            retire: false,
        }
    }

    /// A new connection takes this one's place (churn), connecting since
    /// `now`: the plan goes on, the byte stream starts afresh.
    pub(crate) fn restart(&mut self, now: Instant) {
        debug_assert!(self.in_flight.is_empty());
        self.state = State::Connecting { since: now };
        self.buf.clear();
        self.base = 0;
        self.generated = 0;
        self.written = 0;
        self.verified = 0;
        self.in_flight_written = 0;
        self.sent_here = 0;
        self.retire = false;
    }

    /// Churn: this connection has carried its share and has nothing owed.
    pub(crate) fn carried_its_share(&self) -> bool {
        self.retire && !self.finished() && self.in_flight.is_empty()
    }

    pub(crate) fn finished(&self) -> bool {
        matches!(self.state, State::Exchanging { finished: true })
    }

    /// A replacement connect (churn) that began at `since` is up at `now`:
    /// it joins the exchange, and its connect latency is recorded.
    pub(crate) fn reconnected(
        &mut self,
        rec: &mut Recorder,
        w: &Workload,
        since: Instant,
        now: Instant,
    ) {
        self.state = State::Exchanging { finished: false };
        self.free_since = Some(now);
        let in_window = since >= w.clock.measure_start && w.clock.end.is_none_or(|e| since < e);
        rec.reconnected(now.saturating_duration_since(since), in_window);
    }

    /// Echoed bytes `got` came: compare them with what was sent at the same
    /// place in the stream, and record every message now verified to its
    /// end. Bytes beyond what was written were never sent.
    pub(crate) fn received(
        &mut self,
        rec: &mut Recorder,
        got: &[u8],
        timeout: Duration,
    ) -> Result<(), ErrorKind> {
        let owed = (self.written - self.verified) as usize;
        if let Err(at) = self.verify(&got[..got.len().min(owed)]) {
            if rec.wants_diagnosis() {
                rec.diagnosed(self.diagnose(self.verified + at as u64, &got[at..]));
            }
            return Err(ErrorKind::Mismatch);
        }
        self.complete_verified(rec, timeout)?;
        if got.len() > owed {
            tracing::debug!(
                "connection {}: {} bytes came back that were never sent (stream offset {})",
                self.id + 1,
                got.len() - owed,
                self.written
            );
            return Err(ErrorKind::ExtraBytes);
        }
        self.drop_verified();
        Ok(())
    }

    /// Compare echoed bytes, all of them owed, with what was sent at the same
    /// place in the stream; what matched is verified. `Err`: the offset in
    /// `got` of the first wrong byte.
    fn verify(&mut self, got: &[u8]) -> Result<(), usize> {
        let mismatch = match self.in_flight.front() {
            Some(m) if m.cut.is_some() => self.verify_cuts(got),
            _ => {
                let from = (self.verified - self.base) as usize;
                let sent = &self.buf[from..from + got.len()];
                (sent != got).then(|| first_difference(sent, got))
            }
        };
        if let Some(at) = mismatch {
            tracing::debug!(
                "connection {}: echo mismatch at stream offset {}",
                self.id + 1,
                self.verified + at as u64
            );
            return Err(at);
        }
        // What was owed and matched is verified, even when more follows.
        self.verified += got.len() as u64;
        Ok(())
    }

    /// What came from the first wrong byte on (`got`, all of the read from
    /// there), which is at stream offset `pos`: worked out against the
    /// payload (`diagnose.rs`).
    fn diagnose(&self, pos: u64, got: &[u8]) -> Mismatch {
        let count = self.in_flight.len() as u64;
        let (i, m) = self
            .in_flight
            .iter()
            .enumerate()
            .find(|(_, m)| m.start <= pos && pos < m.end)
            .expect("a wrong byte is in a message in flight");
        diagnose(&Scene {
            messages: &self.messages,
            connections: self.connections,
            conn: self.id + 1,
            message: self.plan.sent - (count - 1 - i as u64),
            offset: (pos - m.start) as usize,
            stream_offset: pos,
            sent: self.plan.sent,
            got,
        })
    }

    /// Sized messages: compare `got`, from stream offset `verified`, with the
    /// pieces of the messages in flight there (their keys and the block), in
    /// place. The offset into `got` of the first wrong byte, if any.
    fn verify_cuts(&self, got: &[u8]) -> Option<usize> {
        let block = self.messages.block();
        let mut pos = self.verified;
        let mut checked = 0;
        for m in &self.in_flight {
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

    /// Record every message now verified to its end, in order.
    fn complete_verified(
        &mut self,
        rec: &mut Recorder,
        timeout: Duration,
    ) -> Result<(), ErrorKind> {
        let now = Instant::now();
        while let Some(m) = self.in_flight.front() {
            if m.end > self.verified {
                break;
            }
            // The sweep looks for overdue echoes only now and then; an
            // echo that took longer than the timeout fails here, exactly.
            if now.duration_since(m.queued) > timeout {
                return Err(ErrorKind::Timeout);
            }
            rec.verified(now, m.queued, m.intended, m.measured, m.end - m.start);
            self.measured_verified += u64::from(m.measured);
            self.last_verified = Some(now);
            if std::mem::take(&mut self.full) {
                self.free_since = Some(now);
            }
            self.in_flight.pop_front();
            self.in_flight_written -= 1;
        }
        Ok(())
    }

    /// Free the buffer of verified bytes when that is cheap or worth it.
    fn drop_verified(&mut self) {
        if self.verified == self.generated || self.buf.is_empty() {
            // (Sized messages have no buffer: its base just follows.)
            // Everything sent came back: start the buffer afresh, no copying.
            self.buf.clear();
            self.base = self.verified;
        } else {
            // Drop verified bytes once they are a large, leading part of the buffer.
            let dead = (self.verified - self.base) as usize;
            if dead >= 64 * 1024 && dead * 2 >= self.buf.len() {
                self.buf.drain(..dead);
                self.base = self.verified;
            }
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn unwritten_len(&self) -> u64 {
        self.generated - self.written
    }

    /// The unwritten bytes in stream order, piece by piece (a template
    /// run is one piece; a sized message is its key and runs of the
    /// block), until `take` says it has enough.
    pub(crate) fn unwritten<'a>(&'a self, mut take: impl FnMut(&'a [u8]) -> bool) {
        let mut pos = self.written;
        if pos == self.generated {
            return;
        }
        match self.in_flight.get(self.in_flight_written) {
            Some(m) if m.cut.is_some() => {}
            _ => {
                let from = (pos - self.base) as usize;
                take(&self.buf[from..]);
                return;
            }
        }
        let block = self.messages.block();
        for m in self.in_flight.range(self.in_flight_written..) {
            let Some(cut) = m.cut.as_ref() else { return };
            while pos < m.end {
                let piece = cut.piece(block, (pos - m.start) as usize);
                if !take(piece) {
                    return;
                }
                pos += piece.len() as u64;
            }
        }
    }

    /// `n` more bytes went out: record the messages now written in full.
    pub(crate) fn wrote(&mut self, rec: &mut Recorder, n: usize) {
        self.written += n as u64;
        while let Some(m) = self.in_flight.get(self.in_flight_written) {
            if m.end > self.written {
                break;
            }
            rec.sent(m.measured, m.end - m.start);
            self.in_flight_written += 1;
        }
    }

    /// Queue what the plan says is due, up to the pipeline depth (and, with
    /// churn, this connection's share). `plan_now` is the instant the plan is
    /// asked at: the turn's own clock, or, for a turn started by a due message
    /// the thread noticed late, when it was due.
    pub(crate) fn refill(
        &mut self,
        config: &Config,
        w: &Workload,
        rec: &mut Recorder,
        plan_now: Instant,
    ) {
        let share = config.per_connection.unwrap_or(u64::MAX);
        while !self.finished() && self.in_flight.len() < config.pipeline && self.sent_here < share {
            match self.plan.next(w, plan_now) {
                Next::Send { intended, measured } => {
                    self.sent_here += 1;
                    let start = self.generated;
                    let cut = self.messages.cut(self.id + 1, self.plan.sent);
                    match &cut {
                        Some(cut) => self.generated += cut.len() as u64,
                        None => {
                            self.messages
                                .write(self.id + 1, self.plan.sent, &mut self.buf);
                            self.generated = self.base + self.buf.len() as u64;
                        }
                    }
                    // Its own clock read, once it is ready to write: the
                    // turns before this one in the batch (reading,
                    // verifying and generating up to a megabyte each) took
                    // the load's time, not the server's. Stamped with the
                    // batch's start, the mean latency at 1000 connections ×
                    // 64 KiB came out half again above what Little's law
                    // allows (docs/BENCHMARKS.md).
                    let queued = Instant::now();
                    if w.schedule.is_some() {
                        rec.sent_late(queued, intended, self.free_since, measured);
                    }
                    self.in_flight.push_back(InFlight {
                        start,
                        end: self.generated,
                        queued,
                        intended,
                        measured,
                        cut,
                    });
                }
                Next::Wait(_) => break,
                Next::Finished { unsent } => self.plan_finished(rec, unsent),
            }
        }
        // Only an echo can now make room: the one that does moves `free_since`.
        self.full = self.in_flight.len() >= config.pipeline;
        if self.sent_here >= share && self.in_flight.is_empty() && !self.finished() && !self.retire
        {
            // The share is carried. Replace the connection only if its slot has
            // more to send: look without taking a message.
            let mut ahead = self.plan.clone();
            match ahead.next(w, plan_now) {
                Next::Finished { unsent } => {
                    self.plan = ahead;
                    self.plan_finished(rec, unsent);
                }
                // Nothing more is due in the window: stay open until it ends,
                // like any connection with nothing left to send.
                Next::Wait(at) if Some(at) == w.clock.end => {}
                Next::Wait(_) | Next::Send { .. } => self.retire = true,
            }
        }
    }

    /// The plan has no more messages for this connection.
    fn plan_finished(&mut self, rec: &mut Recorder, unsent: u64) {
        rec.unsent(unsent);
        self.state = State::Exchanging { finished: true };
    }

    /// After reading and queueing: what the turn does next. `ended`: the
    /// server closed (or reset) the connection, as this ending, which is
    /// this error if anything more was asked of the connection.
    pub(crate) fn next_step(
        &mut self,
        w: &Workload,
        rec: &mut Recorder,
        ended: Option<(Ending, ErrorKind)>,
    ) -> Step {
        let done = self.finished() && self.in_flight.is_empty();
        let carried = self.carried_its_share();
        if let Some((ending, early)) = ended {
            // An ending only if nothing more was asked of this connection:
            // the count is reached, the window is over, or (churn) it
            // carried its share. Anything else is early, however much was
            // verified so far.
            if carried {
                return Step::End(Outcome::Replace(ending));
            }
            if !done {
                return Step::End(Outcome::Failed(early));
            }
            rec.exchange_done(w.exchange_end(self.last_verified));
            return Step::End(Outcome::Completed(ending));
        }
        if carried {
            return Step::Close { reopen: true };
        }
        if done {
            rec.exchange_done(w.exchange_end(self.last_verified));
            return Step::Close { reopen: false };
        }
        Step::Write
    }

    /// Begin the close check: `Some` outcome at once when there is no
    /// check (`--close-grace 0`); otherwise the connection is now closing,
    /// and the caller half-closes it and reads what follows
    /// ([`after_end`]).
    pub(crate) fn begin_close(
        &mut self,
        config: &Config,
        now: Instant,
        reopen: bool,
    ) -> Option<Outcome> {
        if config.close_grace.is_zero() {
            return Some(replaced_if(reopen, Outcome::Completed(Ending::Unchecked)));
        }
        self.state = State::Closing { since: now, reopen };
        None
    }

    /// What the periodic sweep at `now` finds for this connection; `ended`:
    /// the run's window is over (or it was interrupted).
    pub(crate) fn sweep(&self, config: &Config, now: Instant, ended: bool) -> Sweep {
        match self.state {
            State::Closing { since, reopen } => {
                if now.duration_since(since) < config.close_grace {
                    return Sweep::Nothing;
                }
                Sweep::Settle(replaced_if(reopen, Outcome::Completed(Ending::NotSeen)))
            }
            // A replacement connect that takes too long.
            State::Connecting { since } if now.duration_since(since) > config.timeout => {
                Sweep::Fail(ErrorKind::ConnectFailed)
            }
            State::Connecting { .. } => Sweep::Nothing,
            State::Exchanging { .. } => {
                let overdue = self
                    .in_flight
                    .front()
                    .is_some_and(|m| now.duration_since(m.queued) > config.timeout);
                if overdue {
                    Sweep::Fail(ErrorKind::Timeout)
                } else if ended && self.in_flight.is_empty() {
                    Sweep::Nudge
                } else {
                    Sweep::Nothing
                }
            }
        }
    }
}

/// Where two slices of the same length first differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
}

/// A close check's outcome, for a connection that is replaced after it
/// (`reopen`) or not.
pub(crate) fn replaced_if(reopen: bool, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Completed(ending) if reopen => Outcome::Replace(ending),
        other => other,
    }
}

/// A read after the last echo (the close check): only the server's end of
/// stream may come. `read` is the result of one read that did not block.
pub(crate) fn after_end(id: u64, verified: u64, read: io::Result<usize>) -> Outcome {
    match read {
        Ok(0) => Outcome::Completed(Ending::Eof),
        Ok(_) => {
            tracing::debug!(
                "connection {}: bytes after the last echo (stream offset {verified})",
                id + 1,
            );
            Outcome::Failed(ErrorKind::ExtraBytes)
        }
        Err(e) if classify(&e) == ErrorKind::Reset => Outcome::Completed(Ending::Reset),
        Err(e) => Outcome::Failed(classify(&e)),
    }
}
