//! Loopback source addresses for the load (Linux): each run connects from
//! addresses of its own, so that none starts from the kernel state another
//! run left behind (the TCP metrics cache, TIME_WAIT sockets; see
//! `measure.rs`).

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
}
