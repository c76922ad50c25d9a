//! What `/proc` (and `/sys`) say (Linux): the machine's description, the
//! CPU time, peak memory, context switches and read/write calls of a
//! process tree, and the time each CPU spent in each state. The parsing is kept apart from the reading so that it can
//! be tested on fixed text.

use super::{CpuTimes, ProcessActivity, ProcessCpu, Switches, TreeActivity};
use std::collections::HashMap;

pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

pub fn kernel() -> Option<String> {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    Some(format!("Linux {}", r.trim()))
}

pub fn memory_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    field(&info, "MemTotal:")
}

/// Is a virtio balloon bound here that reports free pages to the host?
/// Its `features` file is one character per feature bit, and bit 5 is
/// `VIRTIO_BALLOON_F_REPORTING` (virtio 1.2, 5.5.3).
pub fn returns_free_memory() -> bool {
    const REPORTING: usize = 5;
    let Ok(devices) = std::fs::read_dir("/sys/bus/virtio/drivers/virtio_balloon") else {
        return false;
    };
    devices.flatten().any(|d| {
        std::fs::read_to_string(d.path().join("features"))
            .is_ok_and(|f| f.as_bytes().get(REPORTING) == Some(&b'1'))
    })
}

/// The number after `key` at the start of a `/proc` line, such as
/// `VmHWM:     1234 kB` or `syscr: 12`.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `(ppid, utime + stime in ticks)` from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub(super) fn parse_stat(text: &str) -> Option<(u32, u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15).
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime, stime))
}

/// `pid` and every live descendant. An outside server may be a shell
/// that forked the real one, so its figures must cover the whole tree.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, _, _)) = stat(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant and touches no memory.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

pub fn tree_cpu_split(pid: u32) -> Option<CpuTimes> {
    let hz = clock_ticks()?;
    // The root must be readable; a descendant that exited meanwhile is skipped.
    let (_, u, s) = stat(pid)?;
    let (mut user, mut system) = (u, s);
    for (_, u, s) in tree(pid)[1..].iter().filter_map(|&p| stat(p)) {
        user += u;
        system += s;
    }
    Some(CpuTimes {
        user: user as f64 / hz,
        system: system as f64 / hz,
    })
}

/// `pick` chooses from a CPU's /proc/stat fields (user nice system idle
/// iowait irq softirq steal …); the result is summed over `cpus`, in seconds.
pub fn cpus_ticks(cpus: &[usize], pick: fn(&[u64]) -> Option<u64>) -> Option<f64> {
    let hz = clock_ticks()?;
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let mut total = 0u64;
    for &cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&name))?;
        total += pick(&fields(line)?)?;
    }
    Some(total as f64 / hz)
}

/// The numbers of one /proc/stat CPU line, its name skipped.
pub(super) fn fields(line: &str) -> Option<Vec<u64>> {
    line.split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect()
}

pub fn process_cpu_seconds() -> Option<Vec<ProcessCpu>> {
    let hz = clock_ticks()?;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let name = text
            .find('(')
            .zip(text.rfind(')'))
            .map_or("?", |(a, b)| &text[a + 1..b.max(a + 1)]);
        if let Some((_, u, s)) = parse_stat(&text) {
            out.push(ProcessCpu {
                pid,
                name: name.to_string(),
                seconds: (u + s) as f64 / hz,
            });
        }
    }
    Some(out)
}

pub fn tree_peak_rss_kib(pid: u32) -> Option<u64> {
    let hwm = |p: u32| {
        let s = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        field(&s, "VmHWM:")
    };
    let root = hwm(pid)?;
    Some(root + tree(pid)[1..].iter().filter_map(|&p| hwm(p)).sum::<u64>())
}

/// A thread's switches, from its `/proc/PID/task/TID/status`.
pub(super) fn parse_switches(status: &str) -> Option<Switches> {
    Some(Switches {
        voluntary: field(status, "voluntary_ctxt_switches:")?,
        involuntary: field(status, "nonvoluntary_ctxt_switches:")?,
    })
}

/// Read-like plus write-like calls (`syscr + syscw`), from a `/proc/…/io`.
pub(super) fn parse_calls(io: &str) -> Option<u64> {
    Some(field(io, "syscr:")? + field(io, "syscw:")?)
}

/// `cminflt` (field 11) of a `/proc/PID/stat`: the minor faults of the
/// children it waited for.
pub(super) fn parse_children_faults(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) … minflt(10) cminflt(11).
    rest.split_whitespace().nth(8)?.parse().ok()
}

/// A thread's run time so far, nanoseconds: the first field of its
/// `/proc/PID/task/TID/schedstat`.
pub(super) fn parse_run_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// The CPU time of a whole thread group, exited threads included, in
/// nanoseconds: its process CPU clock.
fn group_cpu_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t through the pointer,
    // which points at a local that outlives the call.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which
    // points at a local that outlives the call.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return None;
    }
    Some(u64::try_from(t.tv_sec).ok()? * 1_000_000_000 + u64::try_from(t.tv_nsec).ok()?)
}

pub fn thread_count(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

pub fn tree_activity(pid: u32) -> Option<TreeActivity> {
    let mut out = TreeActivity::default();
    for (i, p) in tree(pid).into_iter().enumerate() {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            // The root must be readable; a descendant may have exited.
            if i == 0 {
                return None;
            }
            continue;
        };
        let mut live_ns = Some(0);
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let base = format!("/proc/{p}/task/{tid}");
            // A thread that exits meanwhile is left out, as if read after;
            // its run time then reads as an exited thread's.
            let Some(switches) = std::fs::read_to_string(format!("{base}/status"))
                .ok()
                .and_then(|s| parse_switches(&s))
            else {
                continue;
            };
            out.threads.insert((p, tid), switches);
            let run_ns = std::fs::read_to_string(format!("{base}/schedstat"))
                .ok()
                .and_then(|s| parse_run_ns(&s));
            live_ns = live_ns.zip(run_ns).map(|(a, b)| a + b);
        }
        // The group's clock after its threads': run time in between reads
        // as an exited thread's, a doubt too many rather than one too few.
        let exited_cpu_ns = group_cpu_ns(p)
            .zip(live_ns)
            .map(|(group, live)| group.saturating_sub(live));
        let calls = std::fs::read_to_string(format!("/proc/{p}/io"))
            .ok()
            .and_then(|s| parse_calls(&s));
        let ended_children_faults = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| parse_children_faults(&s));
        out.processes.insert(
            p,
            ProcessActivity {
                calls,
                exited_cpu_ns,
                ended_children_faults,
            },
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line =
            "4242 (my (odd) srv) S 17 4242 17 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat(line), Some((17, 250, 75)));
    }

    #[test]
    fn switches_are_read_from_a_threads_status() {
        let status = "Name:\tclient\nState:\tS (sleeping)\nVmHWM:\t  2048 kB\n\
voluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n";
        assert_eq!(
            parse_switches(status),
            Some(Switches {
                voluntary: 1234,
                involuntary: 56
            })
        );
        // `nonvoluntary_…` is not taken for `voluntary_…`, whichever comes first.
        let swapped = "nonvoluntary_ctxt_switches:\t7\nvoluntary_ctxt_switches:\t9\n";
        assert_eq!(
            parse_switches(swapped),
            Some(Switches {
                voluntary: 9,
                involuntary: 7
            })
        );
        assert_eq!(parse_switches("Name:\tzombie\n"), None);
    }

    #[test]
    fn calls_are_the_read_and_write_counts_of_an_io_file() {
        let io = "rchar: 4096\nwchar: 100\nsyscr: 12\nsyscw: 30\nread_bytes: 0\n\
write_bytes: 0\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_calls(io), Some(42));
        assert_eq!(parse_calls("rchar: 1\nsyscr: 2\n"), None, "no syscw");
    }

    #[test]
    fn ended_childrens_faults_are_field_eleven_of_stat() {
        let line =
            "4242 (my (odd) srv) S 17 4242 17 0 -1 4194560 100 377 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_children_faults(line), Some(377));
        assert_eq!(parse_children_faults("4242 (srv) S 17"), None);
    }

    #[test]
    fn run_time_is_the_first_field_of_schedstat() {
        assert_eq!(parse_run_ns("1234567 89 10\n"), Some(1_234_567));
        assert_eq!(parse_run_ns(""), None);
    }

    #[test]
    fn a_thread_that_ran_and_ended_shows_in_the_exited_cpu_time() {
        let me = std::process::id();
        let exited = |a: &TreeActivity| a.processes[&me].exited_cpu_ns.expect("readable");
        let before = tree_activity(me).unwrap();
        // Spins until it has run 25 ms, however busy the machine.
        std::thread::spawn(|| {
            let ran = || {
                std::fs::read_to_string("/proc/thread-self/schedstat")
                    .ok()
                    .and_then(|s| parse_run_ns(&s))
                    .expect("our own schedstat")
            };
            while ran() < 25_000_000 {
                std::hint::black_box(0);
            }
        })
        .join()
        .unwrap();
        let after = tree_activity(me).unwrap();
        assert!(
            exited(&after) >= exited(&before) + 20_000_000,
            "{} then {}",
            exited(&before),
            exited(&after)
        );
        assert!(after.since(&before).switches_lower_bound);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let f = fields("cpu0 10 1 5 1000 70 2 3 4 0 0").unwrap();
        assert_eq!(crate::sys::busy_ticks(&f), Some(10 + 1 + 5 + 2 + 3));
        assert_eq!(f.get(7), Some(&4));
    }
}
