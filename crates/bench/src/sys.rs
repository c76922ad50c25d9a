//! Everything that depends on the operating system, in one place: pinning to
//! CPUs, a process's CPU time and peak memory, the machine's description,
//! signals to the servers, and the descriptor limit.
//!
//! Linux provides all of it (`sched_setaffinity`, `/proc`). Other Unix
//! systems get signals and the load's own CPU time (`getrusage`); the rest
//! returns `None`, which the reports print as [`UNAVAILABLE`]. Nothing outside
//! this file uses `cfg(target_os)` or `unsafe`.

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

#[cfg(unix)]
mod unix {
    use std::io;
    use std::process::{Child, Command};

    pub fn own_group(cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }

    pub fn terminate_pid(pid: u32, group: bool) {
        let _ = signal_pid(pid, group, libc::SIGTERM);
    }

    fn signal(child: &Child, group: bool, sig: libc::c_int) -> io::Result<()> {
        signal_pid(child.id(), group, sig)
    }

    fn signal_pid(pid: u32, group: bool, sig: libc::c_int) -> io::Result<()> {
        let pid = pid as libc::pid_t;
        // A process group started with `process_group(0)` has the child's pid as its id.
        let target = if group { -pid } else { pid };
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        if unsafe { libc::kill(target, sig) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn terminate(child: &mut Child, group: bool) -> io::Result<()> {
        signal(child, group, libc::SIGTERM)
    }

    pub fn kill(child: &mut Child, group: bool) {
        if group {
            let _ = signal(child, true, libc::SIGKILL);
        }
        let _ = child.kill();
    }

    pub fn self_cpu_seconds() -> Option<f64> {
        // SAFETY: rusage is plain data, so all-zero is a valid value, and
        // getrusage writes exactly one rusage through the pointer.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `ru` lives across the call.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return None;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(secs(ru.ru_utime) + secs(ru.ru_stime))
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::unix;
    pub use super::unix::{kill, self_cpu_seconds, terminate, terminate_pid};

    /// Linux routes all of 127.0.0.0/8 to `lo`: run `run` takes
    /// 127.A.B.1 to 127.A.B.n, with A.B counting runs from 0.1 and
    /// wrapping after 60,000 (.0 and .255 are never used).
    pub fn loopback_sources(run: u64, n: u8) -> Option<Vec<std::net::IpAddr>> {
        let block = 1 + (run % 60_000) as u32;
        let n = n.min(254);
        Some(
            (1..=u32::from(n))
                .map(|host| std::net::Ipv4Addr::from(0x7f00_0000 | block << 8 | host).into())
                .collect(),
        )
    }
    use crate::cpus::CpuSet;
    use std::collections::HashMap;
    use std::io;
    use std::process::Command;

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
        kib_field(&info, "MemTotal:")
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

    /// The number in a `/proc` line such as `VmHWM:     1234 kB`.
    fn kib_field(text: &str, key: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    }

    pub fn allowed_cpus() -> Option<CpuSet> {
        // SAFETY: cpu_set_t is a plain bit array, so all-zero is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes at most the size we pass into `set`,
        // which lives across the call; pid 0 means this thread.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return None;
        }
        let cpus = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE, so the bit lies inside `set`.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        Some(CpuSet::new(cpus))
    }

    fn mask(cpus: &CpuSet) -> io::Result<libc::cpu_set_t> {
        // SAFETY: as in `allowed_cpus`, all-zero is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus.cpus() {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("CPU {c} is beyond what sched_setaffinity can name"),
                ));
            }
            // SAFETY: `c` was just checked to be below CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        Ok(set)
    }

    pub fn pin_current_thread(cpus: &CpuSet) -> io::Result<()> {
        let set = mask(cpus)?;
        // SAFETY: the kernel reads one cpu_set_t from `set`, which lives
        // across the call; pid 0 means the calling thread only.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A cgroup with a CPU quota: cgroup v2's `cpu.max`, or cgroup v1's
    /// `cpu` controller (`cpu.cfs_quota_us`), whichever this machine has.
    #[derive(Debug)]
    pub struct CpuCap {
        dir: std::path::PathBuf,
        pub percent: u32,
    }

    impl CpuCap {
        /// The quota's period: short, so that a capped server is held back
        /// in slices of milliseconds, not stopped for most of 100 ms.
        const PERIOD_US: u64 = 10_000;

        pub fn new(percent: u32, cpus: usize) -> io::Result<CpuCap> {
            use std::fs;
            use std::path::Path;
            let name = format!("ringport-bench-{}", std::process::id());
            let quota =
                (Self::PERIOD_US * u64::from(percent) * cpus.max(1) as u64 / 100).max(1_000);
            let make = |dir: std::path::PathBuf| {
                fs::create_dir(&dir).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
                })?;
                caps().push(dir.clone());
                Ok::<_, io::Error>(CpuCap { dir, percent })
            };
            let v1 = Path::new("/sys/fs/cgroup/cpu");
            if v1.join("cpu.cfs_quota_us").exists() {
                let cap = make(v1.join(name))?;
                fs::write(
                    cap.dir.join("cpu.cfs_period_us"),
                    Self::PERIOD_US.to_string(),
                )?;
                fs::write(cap.dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                return Ok(cap);
            }
            let v2 = Path::new("/sys/fs/cgroup");
            let Ok(enabled) = fs::read_to_string(v2.join("cgroup.subtree_control")) else {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "no cgroup CPU controller (neither /sys/fs/cgroup/cpu nor cgroup v2 at /sys/fs/cgroup)",
                ));
            };
            if !enabled.split_whitespace().any(|c| c == "cpu") {
                fs::write(v2.join("cgroup.subtree_control"), "+cpu").map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("the cgroup cpu controller is not enabled and cannot be: {e}"),
                    )
                })?;
            }
            let cap = make(v2.join(name))?;
            fs::write(
                cap.dir.join("cpu.max"),
                format!("{quota} {}", Self::PERIOD_US),
            )?;
            Ok(cap)
        }

        /// `cgroup.procs`, opened for the child to write itself into.
        fn procs(&self) -> io::Result<std::fs::File> {
            std::fs::OpenOptions::new()
                .write(true)
                .open(self.dir.join("cgroup.procs"))
        }
    }

    impl Drop for CpuCap {
        fn drop(&mut self) {
            // Every server has been reaped by now; a group with a process
            // left in it cannot be removed, and is left for the next boot.
            let _ = std::fs::remove_dir(&self.dir);
            caps().retain(|d| d != &self.dir);
        }
    }

    /// Every cap made and not yet dropped, for an interrupted bench, which
    /// exits without running destructors.
    static CAPS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

    fn caps() -> std::sync::MutexGuard<'static, Vec<std::path::PathBuf>> {
        CAPS.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remove every cap, waiting up to `bound` for the servers just told to
    /// stop to leave them.
    pub fn remove_caps(bound: std::time::Duration) {
        let until = std::time::Instant::now() + bound;
        for dir in caps().drain(..) {
            while std::fs::remove_dir(&dir).is_err() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }

    pub fn prepare_child(
        cmd: &mut Command,
        cpus: Option<&CpuSet>,
        own_group: bool,
        cap: Option<&CpuCap>,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        if own_group {
            unix::own_group(cmd);
        }
        // Built here, before fork: the hook below may not allocate.
        let set = cpus.map(mask).transpose()?;
        // Opened close-on-exec (std's default), so the server never sees it.
        let procs = cap.map(CpuCap::procs).transpose()?;
        let hook = move || {
            if let Some(procs) = &procs {
                // SAFETY: write(2) from a byte string that lives in the
                // binary, to a descriptor this closure owns: "0" moves the
                // writing process (the child, before exec) into the group.
                let n = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
                if n != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(set) = &set {
                // SAFETY: as in `pin_current_thread`; in the forked child
                // pid 0 is its only thread, and exec keeps the mask.
                let rc = unsafe {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set)
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and
            // touches no memory. The signal is sent when the *thread* that
            // spawned us ends; bench spawns and stops every server from the
            // same thread, which outlives them.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
            Ok(())
        };
        // SAFETY: the hook runs between fork and exec, where only
        // async-signal-safe calls are allowed: it makes up to three system
        // calls and neither allocates nor takes a lock.
        unsafe { cmd.pre_exec(hook) };
        Ok(())
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

    pub fn tree_cpu_split(pid: u32) -> Option<super::CpuTimes> {
        let hz = clock_ticks()?;
        // The root must be readable; a descendant that exited meanwhile is skipped.
        let (_, u, s) = stat(pid)?;
        let (mut user, mut system) = (u, s);
        for (_, u, s) in tree(pid)[1..].iter().filter_map(|&p| stat(p)) {
            user += u;
            system += s;
        }
        Some(super::CpuTimes {
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

    pub fn process_cpu_seconds() -> Option<Vec<super::ProcessCpu>> {
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
                out.push(super::ProcessCpu {
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
            kib_field(&s, "VmHWM:")
        };
        let root = hwm(pid)?;
        Some(root + tree(pid)[1..].iter().filter_map(|&p| hwm(p)).sum::<u64>())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn each_run_gets_loopback_sources_of_its_own() {
            let a = loopback_sources(0, 32).unwrap();
            let b = loopback_sources(1, 32).unwrap();
            assert_eq!(a.len(), 32);
            assert_eq!(a[0], "127.0.1.1".parse::<std::net::IpAddr>().unwrap());
            assert_eq!(b[31], "127.0.2.32".parse::<std::net::IpAddr>().unwrap());
            assert!(a.iter().all(|ip| ip.is_loopback() && !b.contains(ip)));
            let last = loopback_sources(59_999, 254).unwrap();
            assert_eq!(
                last[253],
                "127.234.96.254".parse::<std::net::IpAddr>().unwrap()
            );
            assert_eq!(loopback_sources(60_000, 1), loopback_sources(0, 1));
        }

        #[test]
        fn stat_fields_count_from_the_last_parenthesis() {
            let line =
                "4242 (my (odd) srv) S 17 4242 17 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
            assert_eq!(parse_stat(line), Some((17, 250, 75)));
        }

        #[test]
        fn busy_time_leaves_out_idle_and_iowait() {
            let f = fields("cpu0 10 1 5 1000 70 2 3 4 0 0").unwrap();
            assert_eq!(super::super::busy_ticks(&f), Some(10 + 1 + 5 + 2 + 3));
            assert_eq!(f.get(7), Some(&4));
        }

        #[test]
        fn our_own_figures_are_readable() {
            let me = std::process::id();
            assert!(tree_cpu_split(me).is_some());
            assert!(super::super::cpus_busy_seconds(&[0]).is_some());
            assert!(super::super::cpus_steal_seconds(&[0]).is_some());
            assert!(tree_peak_rss_kib(me).unwrap() > 0);
            assert!(!allowed_cpus().unwrap().is_empty());
        }
    }
}

/// The figures only Linux is asked for here: elsewhere each is missing, and
/// the tables say `n/a`.
#[cfg(not(target_os = "linux"))]
mod unmeasured {
    use crate::cpus::CpuSet;
    use std::io;

    pub fn cpu_model() -> Option<String> {
        None
    }
    pub fn kernel() -> Option<String> {
        None
    }
    pub fn memory_kib() -> Option<u64> {
        None
    }
    pub fn returns_free_memory() -> bool {
        false
    }
    pub fn allowed_cpus() -> Option<CpuSet> {
        None
    }
    pub fn pin_current_thread(_: &CpuSet) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            super::UNAVAILABLE,
        ))
    }
    pub fn tree_cpu_split(_: u32) -> Option<super::CpuTimes> {
        None
    }
    pub fn cpus_ticks(_: &[usize], _: fn(&[u64]) -> Option<u64>) -> Option<f64> {
        None
    }
    pub fn tree_peak_rss_kib(_: u32) -> Option<u64> {
        None
    }
    pub fn process_cpu_seconds() -> Option<Vec<super::ProcessCpu>> {
        None
    }
    pub fn loopback_sources(_: u64, _: u8) -> Option<Vec<std::net::IpAddr>> {
        None
    }

    pub fn remove_caps(_: std::time::Duration) {}

    /// No cgroups here: [`CpuCap::new`] always says so.
    #[derive(Debug)]
    pub struct CpuCap {
        pub percent: u32,
    }

    impl CpuCap {
        pub fn new(_: u32, _: usize) -> std::io::Result<CpuCap> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "holding a server to a share of its CPUs needs Linux cgroups",
            ))
        }
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
    pub use super::unix::{kill, self_cpu_seconds, terminate, terminate_pid};
    pub use super::unmeasured::*;
    use crate::cpus::CpuSet;
    use std::io;
    use std::process::Command;

    pub fn prepare_child(
        cmd: &mut Command,
        _: Option<&CpuSet>,
        own_group: bool,
        _: Option<&super::unmeasured::CpuCap>,
    ) -> io::Result<()> {
        if own_group {
            super::unix::own_group(cmd);
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod imp {
    pub use super::unmeasured::*;
    use crate::cpus::CpuSet;
    use std::io;
    use std::process::{Child, Command};

    pub fn prepare_child(
        _: &mut Command,
        _: Option<&CpuSet>,
        _: bool,
        _: Option<&super::unmeasured::CpuCap>,
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
