//! Pinning (Linux): the CPUs this process may use, pinning the bench's own
//! threads, and setting up a server's process between fork and exec, where
//! it is pinned, joins the CPU cap's cgroup and asks to die with the bench.

use super::cgroup::CpuCap;
use super::signals;
use crate::cpus::CpuSet;
use std::io;
use std::process::Command;

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
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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
        signals::own_group(cmd);
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
            let rc =
                unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
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
