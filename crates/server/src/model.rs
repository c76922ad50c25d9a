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
    /// A pool of workers handling completed operations: the article's IOCP
    /// server (io_uring on Linux, IOCP on Windows).
    Completion,
    /// `completion` where the kernel allows it, otherwise a readiness model.
    Auto,
}

impl Model {
    /// Every model that can be named on the command line, in the order they are documented.
    pub const ALL: &'static [Model] = &[
        Model::Blocking,
        Model::Threaded,
        Model::Epoll,
        Model::Tokio,
        Model::Completion,
        Model::Auto,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Model::Blocking => "blocking",
            Model::Threaded => "threaded",
            Model::Epoll => "epoll",
            Model::Tokio => "tokio",
            Model::Completion => "completion",
            Model::Auto => "auto",
        }
    }

    /// Turn `auto` into a concrete model. The second value says why, for `auto` only.
    pub fn resolve(self) -> (Model, Option<String>) {
        if self != Model::Auto {
            return (self, None);
        }
        match ringport_completion::probe(&ringport_completion::PortConfig::default()) {
            Ok(f) => (
                Model::Completion,
                Some(format!("using completion ({} is available)", f.backend)),
            ),
            Err(e) => (Model::Epoll, Some(format!("using epoll: {e}"))),
        }
    }

    /// Concrete models, without `auto`: what `bench` compares.
    pub fn concrete() -> impl Iterator<Item = Model> {
        Model::ALL.iter().copied().filter(|m| *m != Model::Auto)
    }

    /// Whether the model runs `Config::workers` worker threads (the
    /// event-driven ones); blocking and threaded have none.
    pub fn has_workers(self) -> bool {
        !matches!(self, Model::Blocking | Model::Threaded)
    }

    /// Whether each worker may get its own `SO_REUSEPORT` listener, so the
    /// first listener must be bound with the option too. Only with a port per
    /// worker: the server checks that against the port's features.
    pub fn wants_reuseport(self) -> bool {
        matches!(self, Model::Epoll | Model::Completion)
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
