//! Building a ring and finding out what the kernel offers: the features a
//! port uses, and what to say when io_uring cannot be used at all.
//!
//! Nothing is inferred from the kernel's version (distributions backport,
//! and seccomp or a container may refuse what the version would have): the
//! opcodes come from io_uring's own probe (`IORING_REGISTER_PROBE`), the
//! setup flags from trying them, and the multishot operations, which are
//! flags on existing opcodes that no probe lists, from submitting one and
//! seeing whether the kernel takes it.

use super::bufring::{BufRing, Group};
use crate::{Features, PortConfig, UnavailableError};
use io_uring::{opcode, squeue, types, IoUring, Probe};
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

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

/// Build a ring with the best setup flags the kernel takes. The features
/// returned are those of the setup only; [`probe`] finds the rest.
pub(super) fn build_ring(config: &PortConfig) -> io::Result<(IoUring, Features)> {
    let cq = config.entries.saturating_mul(4);
    let mut features = Features {
        backend: "io_uring",
        ..Features::default()
    };
    let ring = if let Some(idle) = config.sqpoll {
        features.single_issuer = true;
        features.sqpoll = true;
        sqpoll_ring(config.entries, cq, idle)?
    } else {
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
    features.min_wait = ring.params().is_feature_min_timeout();
    features.no_iowait = ring.params().is_feature_no_iowait();
    // Quiet sends count on every inline completion being posted before
    // the wait begins, which DEFER_TASKRUN guarantees (6.1+; DONTWAIT,
    // links and CQE_SKIP_SUCCESS are older).
    features.quiet_send = features.defer_taskrun;
    Ok((ring, features))
}

/// A ring whose submissions a kernel thread takes (`SQPOLL`), asleep after
/// `idle` without work (whole milliseconds, at least one). The kernel takes
/// none of `DEFER_TASKRUN`, `COOP_TASKRUN` or `TASKRUN_FLAG` with it (they
/// are about interrupting the submitting task, which is now the kernel's
/// thread), so completion work runs as it did before them. Asked for
/// explicitly: a refusal is an error, never a quiet fallback.
fn sqpoll_ring(entries: u32, cq: u32, idle: Duration) -> io::Result<IoUring> {
    let idle_ms = idle.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
    IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_sqpoll(idle_ms)
        .build(entries)
        .map_err(|e| match e.raw_os_error() {
            // The causes `unavailable` explains from the errno.
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::ENOMEM) => e,
            _ => io::Error::new(e.kind(), format!("the kernel refused SQPOLL: {e}")),
        })
}

/// The opcodes every port submits.
const NEEDED: [(u8, &str); 7] = [
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Read::CODE, "READ"),
    (opcode::Nop::CODE, "NOP"),
];

/// How long a trial operation may take to be cancelled and reaped.
const TRIAL_WAIT: Duration = Duration::from_secs(1);

/// What this kernel offers, found out on a ring of its own. Called once per
/// process and ring size (see [`crate::probe`]).
pub(crate) fn probe(config: &PortConfig) -> Result<Features, UnavailableError> {
    let (mut ring, mut features) = build_ring(config).map_err(unavailable)?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(unavailable)?;
    if let Some((_, name)) = NEEDED.iter().find(|(op, _)| !probe.is_supported(*op)) {
        return Err(unavailable(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this kernel lacks IORING_OP_{name}"),
        )));
    }
    features.multishot_accept = multishot_accept_works(&mut ring);
    // A relay's readiness waits fall back on multishot polls (5.13+) where
    // one-shot ones cannot wait (`Port::poll_answer`); a working multishot
    // accept (5.19+) says the kernel has them.
    features.relay = probe.is_supported(opcode::PollAdd::CODE) && features.multishot_accept;
    match BufRing::new(&ring, Group::Small, 8, 64) {
        Ok(b) => {
            features.provided_buffers = true;
            features.lent_sends = true;
            let (works, settled) = multishot_recv_works(&mut ring);
            features.multishot_recv = works;
            if settled {
                b.unregister(&ring);
            } else {
                // The trial receive may still hold the ring: never free it.
                b.leak();
            }
        }
        Err(_) => {
            features.provided_buffers = false;
            features.multishot_recv = false;
        }
    }
    Ok(features)
}

/// Whether a multishot accept is taken (Linux 5.19+): posted on a listener
/// nobody connects to, then cancelled.
fn multishot_accept_works(ring: &mut IoUring) -> bool {
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd())).build();
    trial(ring, accept).0
}

/// Whether a multishot receive into the provided buffers is taken (Linux
/// 6.0+): posted on one end of a socket pair nothing is written to, then
/// cancelled. Also says whether the trial settled (see [`trial`]).
fn multishot_recv_works(ring: &mut IoUring) -> (bool, bool) {
    let Ok((a, _b)) = UnixStream::pair() else {
        return (false, true);
    };
    let recv = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), Group::Small.bgid()).build();
    trial(ring, recv)
}

/// Submit `entry`, cancel it, and reap both. Returns whether the kernel took
/// the operation (it ended cancelled, not refused with `EINVAL`), and whether
/// its final completion came within [`TRIAL_WAIT`]; if not, memory it may use
/// must not be freed.
fn trial(ring: &mut IoUring, entry: squeue::Entry) -> (bool, bool) {
    const TRIAL: u64 = 1;
    const CANCEL: u64 = 2;
    let cancel = opcode::AsyncCancel::new(TRIAL).build().user_data(CANCEL);
    // SAFETY: the trial operations point at no memory of ours (an accept
    // with no address, a receive into the ring's registered buffers, which
    // the caller keeps until the trial settles), and the queue of a fresh
    // ring has room for two entries.
    let pushed = unsafe {
        let mut sq = ring.submission();
        sq.push(&entry.user_data(TRIAL)).is_ok() && sq.push(&cancel).is_ok()
    };
    if !pushed {
        return (false, true);
    }
    let ts = types::Timespec::from(TRIAL_WAIT);
    let args = types::SubmitArgs::new().timespec(&ts);
    let mut took = None;
    let mut cancel_seen = false;
    // At most a few rounds: each ends with completions or the timeout.
    for _ in 0..4 {
        if took.is_some() && cancel_seen {
            break;
        }
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break,
        }
        for cqe in ring.completion() {
            match cqe.user_data() {
                TRIAL if !io_uring::cqueue::more(cqe.flags()) => {
                    took = Some(cqe.result() != -libc::EINVAL);
                }
                CANCEL => cancel_seen = true,
                _ => {}
            }
        }
    }
    match took {
        Some(took) => (took, true),
        None => (false, false),
    }
}
