//! Signals to the servers (Unix): a polite SIGTERM, then SIGKILL, to a
//! server or its whole process group; and the load's own CPU time from
//! `getrusage`, which every Unix has.

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
