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
        tree_cpu_split, tree_peak_rss_kib,
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
    }
}
