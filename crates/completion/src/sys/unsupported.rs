//! Every OS without a completion port here (macOS, the BSDs, …): a shell
//! that builds, so that the rest of ringport builds and its other models run
//! (through mio's kqueue), and that says at the first use that there is no
//! completion port. No [`Port`] can exist: `Port::new` and `probe` fail, and
//! the types behind a port are uninhabited, so their methods cannot be
//! reached.

use crate::{Completion, Features, OpId, PortConfig, Token, UnavailableError};
use std::io;
use std::time::Duration;

pub use super::fd::RawSocket;
pub(crate) use super::fd::{
    accepted_socket, cancelled_error, into_raw, is_cancelled, is_out_of_buffers, raw, raw_listener,
};

/// What an [`OpId`] would hold.
pub(crate) type OpKey = u64;

/// No completion ever carries a buffer here.
#[derive(Debug)]
pub(crate) struct CompletionBuf;

fn unavailable() -> UnavailableError {
    UnavailableError::new(
        format!(
            "the completion model needs io_uring (Linux) or IOCP (Windows), and this is {}",
            std::env::consts::OS
        ),
        io::Error::from(io::ErrorKind::Unsupported),
    )
}

pub(crate) fn probe(_: &PortConfig) -> Result<Features, UnavailableError> {
    Err(unavailable())
}

/// No port exists here.
pub(crate) enum Port {}

/// No port to share.
pub(crate) enum PortShare {}

/// No port to wake.
#[derive(Clone)]
pub(crate) enum Waker {}

impl Waker {
    pub(crate) fn wake(&self) {
        match *self {}
    }
}

impl PortShare {
    pub(crate) fn into_port(self) -> Port {
        match self {}
    }
}

impl Port {
    pub(crate) fn new(_: &PortConfig) -> Result<Port, UnavailableError> {
        Err(unavailable())
    }
    pub(crate) fn features(&self) -> &Features {
        match *self {}
    }
    pub(crate) fn try_share(&self) -> Option<PortShare> {
        match *self {}
    }
    pub(crate) fn in_flight(&self) -> usize {
        match *self {}
    }
    pub(crate) fn waker(&self) -> Waker {
        match *self {}
    }
    pub(crate) fn accept(&mut self, _: RawSocket, _: Token) -> OpId {
        match *self {}
    }
    pub(crate) fn recv(&mut self, _: RawSocket, _: Token, _: usize) -> OpId {
        match *self {}
    }
    pub(crate) fn recv_once(&mut self, _: RawSocket, _: Token, _: usize) -> OpId {
        match *self {}
    }
    pub(crate) fn send(&mut self, _: RawSocket, _: Token, _: Vec<u8>, _: usize) -> OpId {
        match *self {}
    }
    pub(crate) fn send_received(&mut self, _: RawSocket, _: Token, _: Completion) -> OpId {
        match *self {}
    }
    pub(crate) fn send_quiet(&mut self, _: RawSocket, _: Token, _: Vec<u8>, _: usize) -> OpId {
        match *self {}
    }
    pub(crate) fn close(&mut self, _: RawSocket, _: Token) -> OpId {
        match *self {}
    }
    pub(crate) fn cancel(&mut self, _: OpId) {
        match *self {}
    }
    pub(crate) fn poll(&mut self, _: RawSocket, _: Token, _: crate::Interest) -> OpId {
        match *self {}
    }
    pub(crate) fn wait(
        &mut self,
        _: &mut Vec<Completion>,
        _: Option<Duration>,
        _: Option<(usize, Duration)>,
    ) -> io::Result<()> {
        match *self {}
    }
    pub(crate) fn data<'a>(&'a self, _: &'a Completion) -> &'a [u8] {
        match *self {}
    }
    pub(crate) fn release(&mut self, _: Completion) -> Option<Vec<u8>> {
        match *self {}
    }
}
