//! The list of models and how `auto` picks one.

use std::fmt;
use std::str::FromStr;

/// A server architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// One client at a time, blocking calls: the article's first server.
    Blocking,
    /// One OS thread per client: the article's second server.
    Threaded,
    /// Readiness: a mio (epoll) loop per worker thread, non-blocking sockets.
    Epoll,
    /// Readiness through tokio: a task per client on a multi-thread runtime.
    Tokio,
}

impl Model {
    /// Every model that can be named on the command line, in the order they are documented.
    pub const ALL: &'static [Model] =
        &[Model::Blocking, Model::Threaded, Model::Epoll, Model::Tokio];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Model::Blocking => "blocking",
            Model::Threaded => "threaded",
            Model::Epoll => "epoll",
            Model::Tokio => "tokio",
        }
    }

    /// Whether each worker accepts on its own listener of a `SO_REUSEPORT`
    /// group, so the first listener must be made for one.
    pub fn wants_reuseport(self) -> bool {
        matches!(self, Model::Epoll)
    }

    /// Turn `auto` into a concrete model. The second value says why, for `auto` only.
    pub fn resolve(self) -> (Model, Option<String>) {
        (self, None)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown model name.
#[derive(Debug, thiserror::Error)]
#[error("unknown model '{given}'; valid models: {}", valid_names())]
pub struct ParseModelError {
    given: String,
}

fn valid_names() -> String {
    Model::ALL
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Model {
    type Err = ParseModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Model::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseModelError {
                given: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for &m in Model::ALL {
            assert_eq!(m.name().parse::<Model>().unwrap(), m);
        }
    }

    #[test]
    fn unknown_model_lists_the_valid_ones() {
        let err = "iocp2".parse::<Model>().unwrap_err().to_string();
        assert!(err.contains("'iocp2'"), "{err}");
        for &m in Model::ALL {
            assert!(err.contains(m.name()), "{err}");
        }
    }
}
