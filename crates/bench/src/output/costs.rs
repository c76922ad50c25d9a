//! The cost breakdown of `report.html`: per cell and model, where the
//! server's CPU per message went (user mode, kernel), how often its threads
//! switched, and how many read/write calls it made per message. Its columns
//! are declared here as the table's are in `columns.rs` (titles, meanings,
//! the keys they show), and a test holds those keys to the CSV header. The
//! Markdown table has no room for them; `results.json` and `results.csv`
//! have every figure.

use super::columns::{Align, Column, COLUMNS};
use super::marks::{Mark, Used};
use super::table::Table;
use crate::figure::Figure;
use crate::matrix::size_text;
use crate::stats::Row;
use crate::Results;

/// What the read/write call count counts, as a literal for `concat!`.
macro_rules! calls_counted {
    () => {
        "read/write-family calls only: read, write, readv, writev, pread, pwrite and sendfile (syscr + syscw of /proc/PID/io); not recv, send, recvmsg or sendmsg, nor epoll_wait, accept or io_uring_enter, nor any of an io_uring's operations"
    };
}

/// What the read/write call count counts and leaves out; the why's calls
/// rule and the column's meaning both say it.
pub const CALLS_COUNTED: &str = calls_counted!();

/// Every column of the cost breakdown, in order; the first three are the
/// table's.
pub const COST_COLUMNS: [Column; 8] = [
    COLUMNS[0],
    COLUMNS[1],
    COLUMNS[2],
    Column {
        title: "user µs/msg",
        align: Align::Right,
        meaning: "the server's user-mode CPU per message (server_user_s_per_million: seconds per million messages are µs per message), over the processes of its tree alive at both ends of the window; marked ≥ where one ended inside it (rw_calls_lower_bound_reps)",
        csv: &["server_user_s_per_million"],
    },
    Column {
        title: "system µs/msg",
        align: Align::Right,
        meaning: "the server's kernel CPU per message: its system calls, and the TCP work done on its behalf; marked ≥ as the user part",
        csv: &["server_sys_s_per_million"],
    },
    Column {
        title: "voluntary switches/msg",
        align: Align::Right,
        meaning: "context switches per message in which a thread of the server gave up its CPU (blocked to wait for data, a lock or a wake-up), over every thread of its process tree (voluntary_ctxt_switches of /proc/PID/task/*/status, read before and after the measured window); marked ≥ where threads ended inside the window",
        csv: &[
            "server_voluntary_switches_per_msg",
            "switches_lower_bound_reps",
        ],
    },
    Column {
        title: "involuntary switches/msg",
        align: Align::Right,
        meaning: "context switches per message in which the scheduler took the CPU from a server thread that could have run on (nonvoluntary_ctxt_switches); marked ≥ as the voluntary ones",
        csv: &[
            "server_involuntary_switches_per_msg",
            "switches_lower_bound_reps",
        ],
    },
    Column {
        title: "read/write calls/msg",
        align: Align::Right,
        meaning: CALLS_MEANING,
        csv: &["server_rw_calls_per_msg", "rw_calls_lower_bound_reps"],
    },
];

/// The meaning of the calls column: [`CALLS_COUNTED`], and when it is n/a.
const CALLS_MEANING: &str = concat!(
    "the server's system calls per message, counted by the kernel for its whole process tree, exited threads included: ",
    calls_counted!(),
    ". Rust's TcpStream reads with recv(2) and writes with sendto(2), so every ringport model reads about 0 here: completion because its I/O goes through io_uring, the others because theirs goes through recv and send. The figure tells apart outside servers that use read(2) and write(2) (go, socat). n/a where /proc/PID/io may not be read (another user's process); ≥ where a process of the tree ended inside the window"
);

/// A count per message: two decimals, three below 0.1.
pub fn per_msg_text(v: f64) -> String {
    if v.abs() < 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// The cost breakdown as cells of text (Markdown emphasis allowed), with
/// the footnotes of the marks it used.
pub fn cost_table(results: &Results) -> Table {
    let mut marks = Used::default();
    let rows = results
        .results
        .iter()
        .map(|r| (cost_cells(r, &mut marks), r.doubtful()))
        .collect();
    Table {
        header: COST_COLUMNS.iter().map(|c| c.title.to_string()).collect(),
        rows,
        footnotes: Mark::ALL
            .into_iter()
            .filter(|&m| marks.has(m))
            .map(|m| m.footnote(results))
            .collect(),
    }
}

fn cost_cells(r: &Row, marks: &mut Used) -> Vec<String> {
    let ran = r.reps > 0;
    let mut cell = |f: Figure, lower_bound: bool, text: fn(f64) -> String| match r.median(f) {
        Some(v) if lower_bound => format!("{} {}", marks.mark(Mark::LowerBound), text(v)),
        Some(v) => text(v),
        None if ran => marks.mark(Mark::NotAvailable),
        None => marks.mark(Mark::DidNotRun),
    };
    let switches_low = r.switches_lower_bound_reps > 0;
    // A process of the tree that ended took its CPU time along too: the
    // tree's CPU is summed over the processes alive at each reading.
    let process_ended = r.rw_calls_lower_bound_reps > 0;
    let cells = [
        r.model.clone(),
        r.connections.to_string(),
        match r.per_connection {
            Some(n) => format!("{} ({n}/conn)", size_text(r.size)),
            None => size_text(r.size),
        },
        cell(Figure::ServerUser, process_ended, |v| format!("{v:.2}")),
        cell(Figure::ServerSys, process_ended, |v| format!("{v:.2}")),
        cell(Figure::ServerVoluntarySwitches, switches_low, per_msg_text),
        cell(
            Figure::ServerInvoluntarySwitches,
            switches_low,
            per_msg_text,
        ),
        cell(Figure::ServerRwCalls, process_ended, per_msg_text),
    ];
    cells.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::csv_header;
    use crate::output::fixtures::{results, row};

    #[test]
    fn every_key_a_cost_column_names_is_a_csv_column() {
        let header = csv_header();
        let csv: Vec<&str> = header.split(',').collect();
        for c in COST_COLUMNS {
            for key in c.csv {
                assert!(csv.contains(key), "{}: {key} is not in {header}", c.title);
            }
        }
    }

    #[test]
    fn costs_are_shown_per_message_with_lower_bounds_and_gaps_marked() {
        let mut threaded = row("threaded", 64, Some(1000.0));
        threaded.figure_mut(Figure::ServerVoluntarySwitches).median = Some(1.92);
        threaded
            .figure_mut(Figure::ServerInvoluntarySwitches)
            .median = Some(0.04);
        threaded.figure_mut(Figure::ServerRwCalls).median = Some(1.0);
        threaded.switches_lower_bound_reps = 1;
        let mut epoll = row("epoll", 64, Some(2000.0));
        epoll.figure_mut(Figure::ServerVoluntarySwitches).median = Some(0.1);
        let t = cost_table(&results(
            vec![threaded, epoll, row("mine", 64, None)],
            &["threaded", "epoll", "mine"],
        ));
        assert_eq!(
            t.header[3..],
            [
                "user µs/msg",
                "system µs/msg",
                "voluntary switches/msg",
                "involuntary switches/msg",
                "read/write calls/msg"
            ]
        );
        assert_eq!(
            t.rows[0].0[3..],
            ["0.50", "3.00", "**≥** 1.92", "**≥** 0.040", "1.00"]
        );
        assert_eq!(t.rows[1].0[5..], ["0.10", "n/a", "n/a"]);
        assert_eq!(
            t.rows[2].0[5], "—",
            "the fixture sets CPU even where it did not run"
        );
        assert!(
            t.footnotes[0].starts_with("**≥**: in the cost breakdown, a lower bound"),
            "{:?}",
            t.footnotes
        );
        assert_eq!(t.footnotes.len(), 3, "≥, n/a and —: {:?}", t.footnotes);
        // A process of the tree that ended: its calls and CPU are lost.
        let mut forking = row("socat", 64, Some(1000.0));
        forking.figure_mut(Figure::ServerRwCalls).median = Some(6.0);
        forking.rw_calls_lower_bound_reps = 1;
        let t = cost_table(&results(vec![forking], &["socat"]));
        assert_eq!(t.rows[0].0[3..5], ["**≥** 0.50", "**≥** 3.00"]);
        assert_eq!(t.rows[0].0[7], "**≥** 6.00");
    }
}
