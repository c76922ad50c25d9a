//! Parsers for flag values shared by the subcommands.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parse `host:port`, `[v6]:port` or `ip:port` into one address. A host name
/// resolves to its first address.
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!(
            "'{s}' is not an address: expected HOST:PORT, such as 127.0.0.1:5150 or [::1]:5150"
        ));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("'{s}' resolves to no address")),
        Err(e) => Err(format!("'{s}' is not a usable address ({e}): expected HOST:PORT, such as 127.0.0.1:5150 or [::1]:5150")),
    }
}

/// Parse a duration such as `10s`, `500ms`, `100us`, `2m` or `1.5s`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!(
            "'{s}' is not a duration: expected a number and a unit, such as 10s, 500ms or 100us"
        )
    })?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "'{s}' has an unknown unit '{unit}': use ns, us, ms, s, m or h"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("'{s}' is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_socket_address_parses_back_to_itself(addr in any::<SocketAddr>()) {
            // Scope ids and flow info are not part of the text form.
            let addr = match addr {
                SocketAddr::V6(a) => SocketAddr::V6(std::net::SocketAddrV6::new(*a.ip(), a.port(), 0, 0)),
                a => a,
            };
            prop_assert_eq!(socket_addr(&addr.to_string()).unwrap(), addr);
        }

        #[test]
        fn garbage_addresses_are_errors_not_panics(s in "[^:]{0,40}") {
            prop_assert!(socket_addr(&s).is_err());
        }

        #[test]
        fn durations_scale_by_their_unit(n in 0u64..1_000_000, unit in prop::sample::select(vec![("us", 1u64), ("ms", 1_000), ("s", 1_000_000)])) {
            let d = duration(&format!("{n}{}", unit.0)).unwrap();
            prop_assert_eq!(d.as_micros() as u64, n * unit.1);
        }

        #[test]
        fn any_text_is_a_duration_or_an_error(s in ".{0,20}") {
            let _ = duration(&s);
        }
    }

    #[test]
    fn addresses_of_every_form() {
        assert_eq!(socket_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(socket_addr("[::1]:5150").unwrap().is_ipv6());
        assert!(socket_addr("localhost:5150").unwrap().ip().is_loopback());
        assert!(socket_addr("nonsense").is_err());
        assert!(socket_addr("127.0.0.1:99999").is_err());
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert!(duration("fast").is_err());
        assert!(duration("10parsecs").is_err());
    }
}
