//! Where there is no `splice` (Windows, the other Unixes): no `Relay`.

use std::io;

#[derive(Debug)]
pub(crate) enum Relay {}

impl Relay {
    pub(crate) fn new(_: usize) -> io::Result<Relay> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a kernel relay needs Linux splice",
        ))
    }
    pub(crate) fn capacity(&self) -> usize {
        match *self {}
    }
    pub(crate) fn fill(&mut self, _: super::RawSocket, _: usize) -> io::Result<usize> {
        match *self {}
    }
    pub(crate) fn drain(&mut self, _: super::RawSocket, _: usize) -> io::Result<usize> {
        match *self {}
    }
}
