//! What runs, and in which order: the targets (our models and outside
//! servers), the cells (connections × message size), and the schedule that
//! interleaves repetitions so slow drift (thermal, page cache, a noisy
//! neighbour) spreads over every target instead of landing on one.

use ringport_server::Model;
use std::fmt;

/// A server under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One of ringport's own models, run as `ringport serve --model M`.
    Model(Model),
    /// An outside echo server: `command` is run by `sh -c` after `{port}` is
    /// replaced by a free port.
    Outside {
        /// The name its rows carry as `model`.
        name: String,
        /// The command, still holding `{port}`.
        command: String,
    },
}

impl Target {
    /// The name in tables, charts and `results.json`.
    pub fn name(&self) -> &str {
        match self {
            Target::Model(m) => m.name(),
            Target::Outside { name, .. } => name,
        }
    }

    /// True for a server that serves one client at a time, so that every
    /// other connection waits in the backlog: its figures are not comparable
    /// with the others' at more than one connection, and its runs need a
    /// longer echo timeout (see `measure.rs`).
    pub fn serialized(&self) -> bool {
        matches!(self, Target::Model(Model::Blocking))
    }
}

/// The models `bench` runs when `--models` is not given: every model the
/// binary knows. `auto` only picks one of the others, so it would measure a
/// model twice; it is left out by name because it may not exist as a variant.
pub fn default_models() -> Vec<Model> {
    Model::ALL
        .iter()
        .copied()
        .filter(|m| m.name() != "auto")
        .collect()
}

/// The loads a bench runs when its flags do not say: the full matrix, or
/// `--quick`'s. Each field can be overridden by its flag; a `--connections`,
/// `--sizes` or `--per-connection` given makes the cells the grid of the
/// connections and sizes ([`Preset::grid`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// The cells, in table order.
    pub cells: Vec<Cell>,
    /// Each measured run.
    pub duration: std::time::Duration,
    /// The discarded load before each.
    pub warmup: std::time::Duration,
    /// Repetitions, interleaved.
    pub reps: usize,
}

impl Preset {
    /// 1, 64 and 1000 connections × 64 and 4096 B, three 5 s repetitions.
    pub fn full() -> Preset {
        Preset {
            cells: cells(&[1, 64, 1000], &[64, 4096], None),
            duration: std::time::Duration::from_secs(5),
            warmup: std::time::Duration::from_secs(1),
            reps: 3,
        }
    }

    /// About a minute and a half on two cores: one cell for each kind of
    /// load where the architectures differ, three 1 s repetitions, so there
    /// is a spread to show.
    ///
    /// * 64 connections × 64 B: many small echoes, where a thread per client
    ///   pays a context switch per message and blocking serves one client;
    /// * 1000 connections × 64 B: many connections, a thread each for
    ///   threaded;
    /// * 64 connections × 64 B, each replaced after 1 message: churn, where
    ///   accepting and closing is the work and threaded starts a thread per
    ///   message;
    /// * 64 connections × 1 MiB: large messages, where the completion model
    ///   relays in the kernel instead of copying.
    pub fn quick() -> Preset {
        let cell = |connections, size, per_connection| Cell {
            connections,
            size,
            per_connection,
        };
        Preset {
            cells: vec![
                cell(64, 64, None),
                cell(1000, 64, None),
                cell(64, 64, Some(1)),
                cell(64, 1 << 20, None),
            ],
            duration: std::time::Duration::from_secs(1),
            warmup: std::time::Duration::from_millis(250),
            reps: 3,
        }
    }

    /// The grid of `connections` × `sizes` (each the preset's own values
    /// where not given), with churn copies at `per_connection` messages.
    pub fn grid(
        &self,
        connections: &[usize],
        sizes: &[usize],
        per_connection: Option<u64>,
    ) -> Vec<Cell> {
        let own = |pick: fn(&Cell) -> usize| {
            let mut v: Vec<usize> = Vec::new();
            for c in self.cells.iter().filter(|c| c.per_connection.is_none()) {
                if !v.contains(&pick(c)) {
                    v.push(pick(c));
                }
            }
            v
        };
        let connections = if connections.is_empty() {
            own(|c| c.connections)
        } else {
            connections.to_vec()
        };
        let sizes = if sizes.is_empty() {
            own(|c| c.size)
        } else {
            sizes.to_vec()
        };
        cells(&connections, &sizes, per_connection)
    }
}

/// A message size as people write it: `64 B`, `4 KiB`, `1 MiB`, `1000 B`
/// (whole KiB and MiB only; anything else in bytes).
pub fn size_text(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = KIB * KIB;
    match bytes {
        0 => "0 B".to_string(),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

/// One point of the load matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Churn: each connection carries this many messages, then a new one
    /// takes its place (`stress --per-connection`); `None`: they stay open.
    pub per_connection: Option<u64>,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} conn × {}", self.connections, size_text(self.size))?;
        if let Some(n) = self.per_connection {
            write!(f, ", {n} msg/conn")?;
        }
        Ok(())
    }
}

/// Every combination of connections and sizes, connections varying
/// slowest; with churn, the same again with `per_connection` messages per
/// connection, after them.
pub fn cells(connections: &[usize], sizes: &[usize], per_connection: Option<u64>) -> Vec<Cell> {
    let grid = |per_connection: Option<u64>| {
        connections.iter().flat_map(move |&c| {
            sizes.iter().map(move |&s| Cell {
                connections: c,
                size: s,
                per_connection,
            })
        })
    };
    let mut all: Vec<Cell> = grid(None).collect();
    if per_connection.is_some() {
        all.extend(grid(per_connection));
    }
    all
}

/// One server start, load and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Repetition, from 0.
    pub rep: usize,
    /// Index into the cells.
    pub cell: usize,
    /// Index into the targets.
    pub target: usize,
}

/// The order of the runs: each repetition covers every cell and target once
/// before the next begins (A B C A B C, never A A A), and within a cell the
/// targets run back to back so the ones compared are measured close in time.
pub fn schedule(reps: usize, cells: usize, targets: usize) -> Vec<Run> {
    let mut runs = Vec::with_capacity(reps * cells * targets);
    for rep in 0..reps {
        for cell in 0..cells {
            for target in 0..targets {
                runs.push(Run { rep, cell, target });
            }
        }
    }
    runs
}

/// Parse `NAME=CMD` of `--server`. The name may not contain `=`; the command may.
pub fn parse_server_spec(spec: &str) -> Result<Target, String> {
    let Some((name, command)) = spec.split_once('=') else {
        return Err(format!(
            "'{spec}' is not NAME=CMD, such as: mine=./echo --port {{port}}"
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("'{spec}' has no name before '='"));
    }
    if !command.contains("{port}") {
        return Err(format!(
            "the command of '{name}' has no {{port}}: bench picks the port and needs to tell the server"
        ));
    }
    Ok(Target::Outside {
        name: name.to_string(),
        command: command.to_string(),
    })
}

/// Replace every `{port}` in `command` with `port`.
pub fn substitute_port(command: &str, port: u16) -> String {
    command.replace("{port}", &port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(64), "64 B");
        assert_eq!(size_text(4096), "4 KiB");
        assert_eq!(size_text(1 << 20), "1 MiB");
        assert_eq!(size_text(1000), "1000 B");
        assert_eq!(size_text(1536), "1536 B");
    }

    #[test]
    fn quick_has_one_cell_of_each_kind_and_a_flag_makes_a_grid() {
        let q = Preset::quick();
        assert_eq!(q.cells.len(), 4);
        assert!(q.cells.iter().any(|c| c.per_connection == Some(1)));
        assert!(q.cells.iter().any(|c| c.connections >= 1000));
        assert!(q.cells.iter().any(|c| c.size >= 1 << 20));
        // --sizes 4096 alone: the preset's connections (of its steady
        // cells), no churn.
        let g = q.grid(&[], &[4096], None);
        assert_eq!(
            g.iter()
                .map(|c| (c.connections, c.size))
                .collect::<Vec<_>>(),
            [(64, 4096), (1000, 4096)]
        );
        assert!(g.iter().all(|c| c.per_connection.is_none()));
        // --per-connection 5 alone: the grid of the preset's values, and
        // its churn copies.
        let g = q.grid(&[], &[], Some(5));
        assert_eq!(g.len(), 8);
        assert_eq!(Preset::full().cells.len(), 6);
    }

    #[test]
    fn repetitions_are_interleaved_never_back_to_back() {
        let runs = schedule(3, 2, 3);
        let order: Vec<(usize, usize, usize)> =
            runs.iter().map(|r| (r.rep, r.cell, r.target)).collect();
        assert_eq!(order.len(), 18);
        // A B C for cell 0, then cell 1, then the same again for rep 1.
        assert_eq!(
            &order[..7],
            &[
                (0, 0, 0),
                (0, 0, 1),
                (0, 0, 2),
                (0, 1, 0),
                (0, 1, 1),
                (0, 1, 2),
                (1, 0, 0)
            ]
        );
        for w in runs.windows(2) {
            assert!(
                (w[0].cell, w[0].target) != (w[1].cell, w[1].target),
                "the same run twice in a row: {w:?}"
            );
        }
        // Every repetition is complete before the next starts.
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.rep, i / 6);
        }
    }

    #[test]
    fn cells_vary_connections_slowest() {
        let c = cells(&[1, 64], &[64, 4096], None);
        let pairs: Vec<(usize, usize)> = c.iter().map(|c| (c.connections, c.size)).collect();
        assert_eq!(pairs, [(1, 64), (1, 4096), (64, 64), (64, 4096)]);
        assert!(c.iter().all(|c| c.per_connection.is_none()));
    }

    #[test]
    fn churn_adds_the_same_cells_again_after_the_steady_ones() {
        let c = cells(&[1, 64], &[64], Some(1));
        let keys: Vec<(usize, Option<u64>)> = c
            .iter()
            .map(|c| (c.connections, c.per_connection))
            .collect();
        assert_eq!(keys, [(1, None), (64, None), (1, Some(1)), (64, Some(1))]);
        assert_eq!(c[3].to_string(), "64 conn × 64 B, 1 msg/conn");
    }

    #[test]
    fn port_is_substituted_everywhere() {
        assert_eq!(
            substitute_port("srv --listen 127.0.0.1:{port} # {port}", 5150),
            "srv --listen 127.0.0.1:5150 # 5150"
        );
    }

    #[test]
    fn server_spec_splits_at_the_first_equals_sign() {
        let t = parse_server_spec("mine=env A=1 srv -p {port}").unwrap();
        assert_eq!(t.name(), "mine");
        assert_eq!(
            t,
            Target::Outside {
                name: "mine".into(),
                command: "env A=1 srv -p {port}".into()
            }
        );
        assert!(parse_server_spec("no-equals {port}").is_err());
        assert!(parse_server_spec("=srv {port}").is_err());
        assert!(parse_server_spec("mine=srv --port 5150")
            .unwrap_err()
            .contains("{port}"));
    }

    #[test]
    fn default_models_are_all_but_auto() {
        let names: Vec<&str> = default_models().iter().map(|m| m.name()).collect();
        assert!(names.contains(&"blocking") && names.contains(&"threaded"));
        assert!(!names.contains(&"auto"));
    }

    #[test]
    fn only_blocking_is_serialized() {
        assert!(Target::Model(Model::Blocking).serialized());
        assert!(!Target::Model(Model::Threaded).serialized());
        assert!(!parse_server_spec("x=y {port}").unwrap().serialized());
    }
}
