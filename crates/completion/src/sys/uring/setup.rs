//! Building a ring and finding out what the kernel offers: the features a
//! port uses, and what to say when io_uring cannot be used at all.

use super::bufring::BufRing;
use crate::{Features, PortConfig, UnavailableError};
use io_uring::IoUring;
use std::io;

fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

pub(super) fn unavailable(err: io::Error) -> UnavailableError {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let cause = match err.raw_os_error() {
        Some(libc::ENOSYS) => "ENOSYS: this kernel has no io_uring".to_string(),
        Some(libc::EPERM) if disabled > 0 => {
            format!("EPERM: disabled by the sysctl kernel.io_uring_disabled={disabled}")
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "EPERM: blocked by seccomp or a container policy?".to_string()
        }
        Some(libc::ENOMEM) => "ENOMEM: RLIMIT_MEMLOCK too low for the ring?".to_string(),
        _ => err.to_string(),
    };
    UnavailableError::new(format!("io_uring is unavailable ({cause})"), err)
}

pub(super) fn build_ring(config: &PortConfig) -> io::Result<(IoUring, Features)> {
    let (major, minor) = kernel_version();
    let at_least = |a: u32, b: u32| (major, minor) >= (a, b);
    let cq = config.entries.saturating_mul(4);
    let mut features = Features {
        backend: "io_uring",
        ..Features::default()
    };
    let ring = {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq)
            .setup_single_issuer()
            .setup_defer_taskrun();
        match b.build(config.entries) {
            Ok(r) => {
                features.single_issuer = true;
                features.defer_taskrun = true;
                r
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let mut b = IoUring::builder();
                b.setup_cqsize(cq).setup_coop_taskrun().setup_taskrun_flag();
                match b.build(config.entries) {
                    Ok(r) => {
                        features.coop_taskrun = true;
                        r
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        IoUring::builder().setup_cqsize(cq).build(config.entries)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    };
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel too old: io_uring without EXT_ARG (needs 5.11+)",
        ));
    }
    features.multishot_accept = at_least(5, 19);
    features.provided_buffers = at_least(5, 19);
    features.multishot_recv = at_least(6, 0);
    features.min_wait = ring.params().is_feature_min_timeout();
    features.no_iowait = ring.params().is_feature_no_iowait();
    // Quiet sends count on every inline completion being posted before
    // the wait begins, which DEFER_TASKRUN guarantees (6.1+; DONTWAIT,
    // links and CQE_SKIP_SUCCESS are older).
    features.quiet_send = features.defer_taskrun;
    Ok((ring, features))
}

pub(crate) fn probe(config: &PortConfig) -> Result<Features, UnavailableError> {
    let (ring, mut features) = build_ring(config).map_err(unavailable)?;
    if features.provided_buffers {
        match BufRing::new(&ring, 8, 64) {
            Ok(b) => b.unregister(&ring),
            Err(_) => {
                features.provided_buffers = false;
                features.multishot_recv = false;
            }
        }
    }
    Ok(features)
}
