//! The CPU cap (Linux): a cgroup that holds every server to a share of its
//! CPUs, under cgroup v1's `cpu` controller or cgroup v2, and the list of
//! caps still to remove if the bench is interrupted.

use std::io;

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
        let quota = (Self::PERIOD_US * u64::from(percent) * cpus.max(1) as u64 / 100).max(1_000);
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
    pub(super) fn procs(&self) -> io::Result<std::fs::File> {
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
