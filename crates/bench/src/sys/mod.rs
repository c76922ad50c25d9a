//! Everything that depends on the operating system, behind one set of
//! functions: pinning to CPUs, a process's CPU time and peak memory, the
//! machine's description, signals to the servers, and the CPU cap.
//!
//! Linux provides all of it (`sched_setaffinity`, `/proc`, cgroups). Other
//! Unix systems get signals and the load's own CPU time (`getrusage`); the
//! rest returns `None`, which the reports print as [`UNAVAILABLE`]. Which
//! operating system gets which is decided here, in the `imp` modules at the
//! end of this file, and nowhere else; nothing outside `sys/` uses
//! `cfg(target_os)` or `unsafe`.

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod loopback;
#[cfg(target_os = "linux")]
mod pin;
#[cfg(target_os = "linux")]
mod proc;
#[cfg(unix)]
mod signals;
#[cfg(not(target_os = "linux"))]
mod stubs;

use crate::cpus::CpuSet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io;
use std::process::{Child, Command};

/// What the reports say for a figure this operating system cannot provide.
pub const UNAVAILABLE: &str = "not available on this OS";

/// The machine the bench ran on, for `results.json` and `summary.md`.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `linux`, `macos`, `windows`…
    pub os: String,
    /// `x86_64`, `aarch64`…
    pub arch: String,
    /// The CPU's marketing name.
    pub cpu_model: String,
    /// Logical CPUs this process may run on.
    pub cores: usize,
    /// Their numbers, such as `0-1`.
    pub allowed_cpus: String,
    /// The kernel release.
    pub kernel: String,
    /// Physical memory, such as `23.5 GiB`.
    pub memory: String,
    /// This machine is a VM that hands the memory it frees back to its
    /// host (virtio-balloon free page reporting), so that a page allocated
    /// again costs a fault in the host as well, which no CPU or steal
    /// figure shows.
    pub returns_free_memory: bool,
}

/// Describe this machine.
pub fn machine() -> Machine {
    Machine {
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cpu_model: imp::cpu_model().unwrap_or_else(|| UNAVAILABLE.into()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        allowed_cpus: allowed_cpus().map_or_else(|| UNAVAILABLE.into(), |s| s.to_string()),
        kernel: imp::kernel().unwrap_or_else(|| UNAVAILABLE.into()),
        memory: imp::memory_kib().map_or_else(
            || UNAVAILABLE.into(),
            |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
        ),
        returns_free_memory: imp::returns_free_memory(),
    }
}

/// The CPUs this process may run on, or `None` where pinning is unavailable.
pub fn allowed_cpus() -> Option<CpuSet> {
    imp::allowed_cpus()
}

/// Pin the calling thread (and so every thread it spawns afterwards, which
/// inherit its mask) to `cpus`.
pub fn pin_current_thread(cpus: &CpuSet) -> io::Result<()> {
    imp::pin_current_thread(cpus)
}

/// Set up a server's process before it starts: pinned to `cpus`, sent
/// SIGTERM if bench dies first (so an interrupted bench leaves no server
/// holding a port), and, for a `sh -c` command, in a process group of its own
/// so that one signal reaches the shell and whatever it started; with a
/// `cap`, in its cgroup before it runs a line of its own, children included.
pub fn prepare_child(
    cmd: &mut Command,
    cpus: Option<&CpuSet>,
    own_group: bool,
    cap: Option<&CpuCap>,
) -> io::Result<()> {
    imp::prepare_child(cmd, cpus, own_group, cap.map(|c| &c.0))
}

/// Remove the caps of a bench that is being interrupted, once the servers
/// told to stop have left them (waiting up to `bound`).
pub fn remove_caps(bound: std::time::Duration) {
    imp::remove_caps(bound)
}

/// A cgroup that holds every server to a share of its CPUs
/// (`bench --server-cpu-cap`), so that the server, not the load, is the
/// limit. Linux only (the cgroup v1 `cpu` controller or cgroup v2);
/// removed on drop.
#[derive(Debug)]
pub struct CpuCap(imp::CpuCap);

impl CpuCap {
    /// `percent` of `cpus` CPUs: an error says why it cannot be had here.
    pub fn new(percent: u32, cpus: usize) -> io::Result<CpuCap> {
        imp::CpuCap::new(percent, cpus).map(CpuCap)
    }

    /// The share asked for, percent.
    pub fn percent(&self) -> u32 {
        self.0.percent
    }
}

/// Ask a server to stop: SIGTERM to it, or to its whole group.
pub fn terminate(child: &mut Child, group: bool) -> io::Result<()> {
    imp::terminate(child, group)
}

/// Stop a server that ignored [`terminate`]: SIGKILL to it or its group.
pub fn kill(child: &mut Child, group: bool) {
    imp::kill(child, group);
}

/// SIGTERM to a process (or its group) known only by pid: for stopping the
/// servers from a signal handler thread, which cannot borrow their `Child`.
pub fn terminate_pid(pid: u32, group: bool) {
    imp::terminate_pid(pid, group);
}

/// CPU seconds a process tree spent in user mode and in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuTimes {
    /// User-mode seconds.
    pub user: f64,
    /// Kernel-mode seconds.
    pub system: f64,
}

/// User and system CPU seconds of `pid` and its descendants, summed.
pub fn tree_cpu_split(pid: u32) -> Option<CpuTimes> {
    imp::tree_cpu_split(pid)
}

/// Busy seconds (every state but idle, iowait and steal) of the given CPUs,
/// summed, from /proc/stat. io_uring waits count as iowait, so this is the
/// figure that shows what a pinned CPU really did, whichever process did it.
pub fn cpus_busy_seconds(cpus: &[usize]) -> Option<f64> {
    imp::cpus_ticks(cpus, busy_ticks)
}

/// Seconds the given CPUs spent running tasks (user, nice, system), summed:
/// [`cpus_busy_seconds`] without interrupts. A server held back by a CPU
/// quota leaves its CPU idle, and the packets of its own connections are
/// then handled there in interrupt context, charged to no process.
pub fn cpus_task_seconds(cpus: &[usize]) -> Option<f64> {
    imp::cpus_ticks(cpus, |f| (f.len() >= 3).then(|| f[..3].iter().sum()))
}

/// Seconds the hypervisor ran something else while the given CPUs (virtual
/// ones) wanted to run, summed, from /proc/stat: 0 on bare metal.
pub fn cpus_steal_seconds(cpus: &[usize]) -> Option<f64> {
    imp::cpus_ticks(cpus, |f| f.get(7).copied())
}

/// user nice system idle iowait irq softirq steal …: all but idle, iowait
/// and steal.
fn busy_ticks(f: &[u64]) -> Option<u64> {
    if f.len() < 7 {
        return None;
    }
    Some(
        f.iter()
            .take(7)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum(),
    )
}

/// Every process's CPU seconds so far (user + system, every thread), with
/// its pid and name, for naming what else is busy on this machine.
pub fn process_cpu_seconds() -> Option<Vec<ProcessCpu>> {
    imp::process_cpu_seconds()
}

/// One process and the CPU time it has used.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCpu {
    /// Its pid.
    pub pid: u32,
    /// Its command name.
    pub name: String,
    /// User + system seconds so far.
    pub seconds: f64,
}

/// Peak resident memory (VmHWM) of `pid` and its descendants, summed, in KiB.
pub fn tree_peak_rss_kib(pid: u32) -> Option<u64> {
    imp::tree_peak_rss_kib(pid)
}

/// How many threads process `pid` has now (`Threads:` of its status);
/// `None` where it cannot be read, or off Linux.
pub fn thread_count(pid: u32) -> Option<u64> {
    imp::thread_count(pid)
}

/// What the threads of a process tree had done at one instant: each live
/// thread's context switches, and each process's read/write-family calls
/// and the CPU time of its threads that have exited. Two readings,
/// [`TreeActivity::since`], give what the tree did between them. `None`
/// where the root process cannot be read, or off Linux.
pub fn tree_activity(pid: u32) -> Option<TreeActivity> {
    imp::tree_activity(pid)
}

/// Exited threads that ran this long in all between two readings make the
/// switch figures a lower bound. Below it, lost switches are few: a switch
/// costs its thread a few µs of CPU, so under 1 ms holds at most a few
/// hundred. (Reading the tree while the server works can read as an exit,
/// which errs towards a doubt too many.)
pub const EXITED_CPU_NS: u64 = 1_000_000;

/// One reading of [`tree_activity`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeActivity {
    /// Each live thread's switches so far, by (process id, thread id).
    pub threads: BTreeMap<(u32, u32), Switches>,
    /// Each process's counters, by process id.
    pub processes: BTreeMap<u32, ProcessActivity>,
}

/// Context switches (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`
/// of `/proc/PID/task/TID/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// The thread gave up its CPU: it blocked, to wait or to sleep.
    pub voluntary: u64,
    /// The scheduler took its CPU away while it could have run on.
    pub involuntary: u64,
}

/// What one process of the tree had done, as a whole thread group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessActivity {
    /// Read/write-family calls, exited threads' included: `syscr + syscw`
    /// of `/proc/PID/io`, which the kernel counts in `read(2)`, `write(2)`,
    /// their vectored and positioned forms and `sendfile(2)`, and not in
    /// `recv`/`send` and their kin (which Rust's `TcpStream` uses),
    /// `epoll_wait`, `accept` or `io_uring_enter`, nor in an io_uring's
    /// operations. `None` where it may not be read (another user's process).
    pub calls: Option<u64>,
    /// CPU nanoseconds of its threads that have exited: the group's CPU
    /// clock (`clock_getcpuclockid`) less its live threads' run time
    /// (`/proc/PID/task/TID/schedstat`), read after them. `None` where
    /// either could not be read.
    pub exited_cpu_ns: Option<u64>,
    /// Minor page faults of its children that ended and were waited for
    /// (`cminflt` of `/proc/PID/stat`): a child process that ran at all
    /// faulted, so growth means children ended, taking their switches
    /// and calls along. `None` where it could not be read.
    pub ended_children_faults: Option<u64>,
}

/// What a process tree did between two [`TreeActivity`] readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Context switches of its threads.
    pub switches: Switches,
    /// Threads or processes ended between the readings, so their switches
    /// since the first are lost (the kernel keeps an exited thread's
    /// counts only for `getrusage`): `switches` is a lower bound. Seen as a
    /// thread of the first reading missing from the second (or counting
    /// less: its id reused), or as exited threads' CPU time that grew by
    /// [`EXITED_CPU_NS`] or more, which also catches threads born and ended
    /// between the readings. Threads born between the readings and alive at
    /// the second are counted whole, which is right: their lives began there.
    pub switches_lower_bound: bool,
    /// Read/write-family calls of its processes; `None` where one could not
    /// be read.
    pub calls: Option<u64>,
    /// A process of the first reading had ended by the second, or one
    /// that was waited for ended in between (born there too, maybe: a
    /// server that forks per connection), so its calls are lost: `calls`
    /// is a lower bound. Such a process makes `switches` one as well.
    pub calls_lower_bound: bool,
}

impl TreeActivity {
    /// What the tree did from `before` to this reading.
    pub fn since(&self, before: &TreeActivity) -> Activity {
        let mut a = Activity {
            calls: Some(0),
            ..Activity::default()
        };
        for (key, now) in &self.threads {
            let then = before.threads.get(key).copied().unwrap_or_default();
            if now.voluntary < then.voluntary || now.involuntary < then.involuntary {
                // The id was reused by a thread born in between.
                a.switches_lower_bound = true;
            }
            a.switches.voluntary += now.voluntary.saturating_sub(then.voluntary);
            a.switches.involuntary += now.involuntary.saturating_sub(then.involuntary);
        }
        if before.threads.keys().any(|k| !self.threads.contains_key(k)) {
            a.switches_lower_bound = true;
        }
        if before
            .processes
            .keys()
            .any(|p| !self.processes.contains_key(p))
        {
            a.switches_lower_bound = true;
            a.calls_lower_bound = true;
        }
        for (pid, now) in &self.processes {
            // A process born in between: all it did is in the window.
            let then = before
                .processes
                .get(pid)
                .copied()
                .unwrap_or(ProcessActivity {
                    calls: Some(0),
                    exited_cpu_ns: Some(0),
                    ended_children_faults: Some(0),
                });
            match now.ended_children_faults.zip(then.ended_children_faults) {
                Some((now, then)) if now <= then => {}
                // Children ended, or whether they did cannot be told.
                _ => {
                    a.switches_lower_bound = true;
                    a.calls_lower_bound = true;
                }
            }
            match now.exited_cpu_ns.zip(then.exited_cpu_ns) {
                Some((now, then)) if now < then.saturating_add(EXITED_CPU_NS) => {}
                // Threads ended, or whether they did cannot be told.
                _ => a.switches_lower_bound = true,
            }
            a.calls = match (a.calls, now.calls, then.calls) {
                (Some(sum), Some(now), Some(then)) => Some(sum + now.saturating_sub(then)),
                _ => None,
            };
        }
        a
    }
}

/// User plus system CPU seconds of this process, every thread included.
pub fn self_cpu_seconds() -> Option<f64> {
    imp::self_cpu_seconds()
}

/// `n` loopback source addresses of the load's own for run number `run`,
/// none of them used by another run among the next thousands, or `None`
/// where only 127.0.0.1 can be counted on.
pub fn loopback_sources(run: u64, n: u8) -> Option<Vec<std::net::IpAddr>> {
    imp::loopback_sources(run, n)
}

#[cfg(target_os = "linux")]
mod imp {
    pub use super::cgroup::{remove_caps, CpuCap};
    pub use super::loopback::loopback_sources;
    pub use super::pin::{allowed_cpus, pin_current_thread, prepare_child};
    pub use super::proc::{
        cpu_model, cpus_ticks, kernel, memory_kib, process_cpu_seconds, returns_free_memory,
        thread_count, tree_activity, tree_cpu_split, tree_peak_rss_kib,
    };
    pub use super::signals::{kill, self_cpu_seconds, terminate, terminate_pid};
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
    pub use super::signals::{kill, self_cpu_seconds, terminate, terminate_pid};
    pub use super::stubs::*;
    use crate::cpus::CpuSet;
    use std::io;
    use std::process::Command;

    pub fn prepare_child(
        cmd: &mut Command,
        _: Option<&CpuSet>,
        own_group: bool,
        _: Option<&super::stubs::CpuCap>,
    ) -> io::Result<()> {
        if own_group {
            super::signals::own_group(cmd);
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod imp {
    pub use super::stubs::*;
    use crate::cpus::CpuSet;
    use std::io;
    use std::process::{Child, Command};

    pub fn prepare_child(
        _: &mut Command,
        _: Option<&CpuSet>,
        _: bool,
        _: Option<&super::stubs::CpuCap>,
    ) -> io::Result<()> {
        Ok(())
    }
    /// Without signals the only stop is the hard one.
    pub fn terminate(child: &mut Child, _: bool) -> io::Result<()> {
        child.kill()
    }
    pub fn kill(child: &mut Child, _: bool) {
        let _ = child.kill();
    }
    /// Without signals nothing can be asked of a process known only by pid;
    /// the caller's `Child` handles kill it on drop.
    pub fn terminate_pid(_: u32, _: bool) {}
    pub fn self_cpu_seconds() -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod activity_tests {
    use super::*;

    fn sw(voluntary: u64, involuntary: u64) -> Switches {
        Switches {
            voluntary,
            involuntary,
        }
    }

    /// A reading of one process, 7, with these threads, calls and exited
    /// threads' CPU (ms).
    fn reading(threads: &[(u32, Switches)], calls: Option<u64>, exited_ms: u64) -> TreeActivity {
        let p = ProcessActivity {
            calls,
            exited_cpu_ns: Some(exited_ms * 1_000_000),
            ended_children_faults: Some(0),
        };
        TreeActivity {
            threads: threads.iter().map(|&(t, s)| ((7, t), s)).collect(),
            processes: [(7, p)].into(),
        }
    }

    #[test]
    fn the_same_threads_give_exact_differences() {
        let before = reading(&[(7, sw(10, 1)), (8, sw(100, 5))], Some(50), 3);
        let after = reading(&[(7, sw(12, 1)), (8, sw(300, 9))], Some(250), 3);
        let a = after.since(&before);
        assert_eq!(a.switches, sw(202, 4));
        assert_eq!(a.calls, Some(200));
        assert!(!a.switches_lower_bound && !a.calls_lower_bound, "{a:?}");
    }

    #[test]
    fn a_thread_born_in_between_is_counted_whole_and_is_no_doubt() {
        let before = reading(&[(7, sw(10, 0))], Some(5), 0);
        let after = reading(&[(7, sw(11, 0)), (9, sw(40, 2))], Some(85), 0);
        let a = after.since(&before);
        assert_eq!(a.switches, sw(41, 2));
        assert_eq!(a.calls, Some(80));
        assert!(!a.switches_lower_bound, "{a:?}");
    }

    #[test]
    fn a_thread_that_ended_makes_the_switches_a_lower_bound_but_not_the_calls() {
        // Thread 8 is gone: its switches since the first reading are lost,
        // its calls are in the group's.
        let before = reading(&[(7, sw(10, 0)), (8, sw(50, 0))], Some(60), 0);
        let after = reading(&[(7, sw(20, 0))], Some(90), 0);
        let a = after.since(&before);
        assert_eq!(a.switches, sw(10, 0));
        assert!(a.switches_lower_bound && !a.calls_lower_bound, "{a:?}");
        assert_eq!(a.calls, Some(30));
    }

    #[test]
    fn threads_born_and_ended_in_between_are_seen_by_their_cpu_time() {
        // The same threads at both readings, but exited threads ran 40 ms.
        let before = reading(&[(7, sw(10, 0))], Some(0), 2);
        let after = reading(&[(7, sw(11, 0))], Some(0), 42);
        assert!(after.since(&before).switches_lower_bound);
        // Under a millisecond more is reading noise, not an exit.
        let after = reading(&[(7, sw(11, 0))], Some(0), 2);
        assert!(!after.since(&before).switches_lower_bound);
    }

    #[test]
    fn a_reused_thread_id_is_a_lower_bound() {
        let before = reading(&[(7, sw(10, 0)), (8, sw(500, 3))], Some(5), 0);
        let after = reading(&[(7, sw(11, 0)), (8, sw(2, 0))], Some(5), 0);
        let a = after.since(&before);
        assert!(a.switches_lower_bound, "{a:?}");
        assert_eq!(a.switches, sw(1, 0), "never negative");
    }

    #[test]
    fn unreadable_counters_are_none_or_a_doubt() {
        let before = reading(&[(7, sw(10, 0))], None, 0);
        let after = reading(&[(7, sw(12, 0))], None, 0);
        let a = after.since(&before);
        assert_eq!(a.calls, None);
        assert_eq!(a.switches, sw(2, 0));
        assert!(!a.switches_lower_bound, "{a:?}");
        let mut blind = after.clone();
        blind.processes.get_mut(&7).unwrap().exited_cpu_ns = None;
        assert!(blind.since(&before).switches_lower_bound);
    }

    #[test]
    fn a_process_that_ended_makes_both_lower_bounds_and_a_new_one_counts_whole() {
        let mut before = reading(&[(7, sw(10, 0))], Some(5), 0);
        before.threads.insert((8, 8), sw(3, 0));
        before.processes.insert(8, ProcessActivity::default());
        let after = reading(&[(7, sw(12, 0))], Some(6), 0);
        let a = after.since(&before);
        assert!(a.switches_lower_bound && a.calls_lower_bound, "{a:?}");
        assert_eq!(a.calls, Some(1));
        let mut forked = after.clone();
        forked.threads.insert((9, 9), sw(4, 0));
        let child = ProcessActivity {
            calls: Some(10),
            exited_cpu_ns: Some(0),
            ended_children_faults: Some(0),
        };
        forked.processes.insert(9, child);
        let a = forked.since(&after);
        assert_eq!((a.switches, a.calls), (sw(4, 0), Some(10)));
        assert!(!a.switches_lower_bound && !a.calls_lower_bound, "{a:?}");
    }

    #[test]
    fn children_born_and_ended_in_between_are_seen_by_their_faults() {
        // A server that forks per connection: its children came and went
        // between the readings, and it waited for them.
        let before = reading(&[(7, sw(10, 0))], Some(5), 0);
        let mut after = reading(&[(7, sw(12, 0))], Some(9), 0);
        after.processes.get_mut(&7).unwrap().ended_children_faults = Some(380);
        let a = after.since(&before);
        assert!(a.switches_lower_bound && a.calls_lower_bound, "{a:?}");
    }
}
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn our_own_figures_are_readable() {
        let me = std::process::id();
        assert!(tree_cpu_split(me).is_some());
        assert!(cpus_busy_seconds(&[0]).is_some());
        assert!(cpus_steal_seconds(&[0]).is_some());
        assert!(tree_peak_rss_kib(me).unwrap() > 0);
        assert!(!allowed_cpus().unwrap().is_empty());
        let before = tree_activity(me).expect("our own threads");
        assert!(before.threads.keys().any(|&(p, t)| p == me && t == me));
        // A file write is a write-family call of ours.
        let path = std::env::temp_dir().join(format!("ringport-activity-{me}"));
        std::fs::write(&path, b"x").unwrap();
        let _ = std::fs::remove_file(&path);
        let after = tree_activity(me).unwrap();
        let a = after.since(&before);
        assert!(a.calls.unwrap() >= 1, "{a:?}");
    }
}
