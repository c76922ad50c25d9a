//! The figures only Linux is asked for here: elsewhere each is missing, and
//! the tables say `n/a`; pinning and the CPU cap say they cannot be had.

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
pub fn thread_count(_: u32) -> Option<u64> {
    None
}
pub fn tree_activity(_: u32) -> Option<super::TreeActivity> {
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
