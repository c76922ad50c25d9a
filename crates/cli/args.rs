//! Parsers for flag values shared by the subcommands.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    // `::1:0` would resolve as host `::1`, port 0, but `::1:0` is also an
    // IPv6 address: refuse the guess and say how to write it.
    if let Some((host, port)) = s.rsplit_once(':') {
        if host.contains(':') && !host.starts_with('[') {
            return Err(format!(
                "'{s}' is ambiguous: an IPv6 address and its port are written [{host}]:{port}"
            ));
        }
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("'{s}' resolves to no address")),
        Err(e) => Err(format!("'{s}' is not a usable address ({e}): expected HOST:PORT, such as 127.0.0.1:5150 or [::1]:5150")),
    }
}

/// The longest duration any flag takes: beyond it `Instant` arithmetic
/// could overflow, and no run, timeout or drain is meant to last a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parse a duration such as `10s`, `500ms`, `100us`, `1.5s`, `2m` or
/// `1m30s` (humantime's syntax); a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let is_number = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    let parsed = if is_number {
        humantime::parse_duration(&format!("{t}s"))
    } else {
        humantime::parse_duration(t)
    };
    let d = parsed.map_err(|e| {
        format!("'{s}' is not a duration ({e}): write a number and a unit, such as 10s, 500ms, 100us or 1m30s")
    })?;
    if d > MAX_DURATION {
        return Err(format!("'{s}' is too long: durations are at most a year"));
    }
    Ok(d)
}

/// Parse a wall-clock start time: Unix seconds (`1767225600`, `1767225600.5`)
/// or RFC 3339 in UTC (`2026-01-01T00:00:00Z`, `2026-01-01 00:00:00`). It
/// must lie ahead, by at most `MAX_START_AHEAD` (a day).
pub fn start_at(s: &str) -> Result<SystemTime, String> {
    let t = s.trim();
    let at = if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("'{s}' is not a number of Unix seconds"))?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .ok_or_else(|| format!("'{s}' is not a usable time"))?
    } else {
        humantime::parse_rfc3339_weak(t).map_err(|e| {
            format!("'{s}' is not a time ({e}): write Unix seconds, such as 1767225600, or RFC 3339 in UTC, such as 2026-01-01T00:00:00Z")
        })?
    };
    let now = SystemTime::now();
    match at.duration_since(now) {
        Err(e) => Err(format!(
            "'{s}' is {:.3} s in the past (it is now {}): give a time a little ahead",
            e.duration().as_secs_f64(),
            humantime::format_rfc3339_millis(now)
        )),
        Ok(ahead) if ahead > ringport_load::MAX_START_AHEAD => Err(format!(
            "'{s}' is {:.1} hours ahead: at most 24 hours",
            ahead.as_secs_f64() / 3600.0
        )),
        Ok(_) => Ok(at),
    }
}

/// A duration that must be longer than zero, such as a timeout.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "'{s}' is zero: this must be longer than 0, such as 10s or 500ms"
        ));
    }
    Ok(d)
}

/// A count of at least 1, such as messages per connection.
pub fn at_least_one(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("write a whole number of at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number of at least 1")),
    }
}

/// Parse a byte count: `1000`, `4k`/`4KiB` (×1024), `16M`/`16MiB` (×1024²),
/// or `1G`/`1GiB`. Bounds are checked by the caller, which knows them.
pub fn bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("'{s}' is not a size: expected bytes, such as 1000, 64KiB or 16MiB")
    })?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "'{s}' has an unknown unit '{unit}': use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(scale)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// A comma-separated list given as one flag value. (clap would take a bare
/// `Vec` for a flag that repeats; this is one value that holds many.)
#[derive(Debug, Clone, PartialEq)]
pub struct List<T>(pub Vec<T>);

/// Parse a comma-separated list of percentiles, such as `50,90,99,99.9,99.99`.
/// Each must be above 0 and at most 100; the list comes back sorted, without repeats.
pub fn percentiles(s: &str) -> Result<List<f64>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: f64 = part.parse().map_err(|_| {
            format!("'{part}' is not a percentile: expected numbers such as 50,99,99.9")
        })?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!(
                "percentile '{part}' is out of range: each must be above 0 and at most 100"
            ));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(format!(
            "'{s}' names no percentile: expected a list such as 50,99,99.9"
        ));
    }
    out.sort_by(f64::total_cmp);
    out.dedup();
    Ok(List(out))
}

/// Parse a comma-separated list of IP addresses.
pub fn ip_list(s: &str) -> Result<List<std::net::IpAddr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse().map_err(|_| {
                format!("'{p}' is not an IP address: expected a list such as 127.0.0.2,127.0.0.3")
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|ips| match ips.is_empty() {
            true => Err(format!(
                "'{s}' names no address: expected a list such as 127.0.0.2,127.0.0.3"
            )),
            false => Ok(List(ips)),
        })
}

/// Parse a positive rate per second, such as `1000` or `0.5`.
pub fn rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{s}' is not a rate: expected a positive number per second, such as 1000 or 0.5"
        )),
    }
}

/// What `stress --rate` was given: one rate, a range for `--ramp`, or a
/// list for `--step`.
#[derive(Debug, Clone, PartialEq)]
pub enum RateArg {
    /// `1000`.
    One(f64),
    /// `1000..50000`.
    Range(f64, f64),
    /// `1000,5000,20000`.
    List(Vec<f64>),
}

/// Parse `stress --rate`: `R`, `A..B` (with `--ramp`) or `A,B,C` (with `--step`).
pub fn rate_arg(s: &str) -> Result<RateArg, String> {
    let one = |p: &str| {
        rate(p).map_err(|_| {
            format!("'{s}' is not a rate: expected a positive number per second such as 1000, a range such as 1000..50000 (with --ramp), or a list such as 1000,5000,20000 (with --step)")
        })
    };
    if let Some((a, b)) = s.split_once("..") {
        return Ok(RateArg::Range(one(a)?, one(b)?));
    }
    if s.contains(',') {
        let rates = s.split(',').map(one).collect::<Result<Vec<_>, _>>()?;
        return Ok(RateArg::List(rates));
    }
    one(s).map(RateArg::One)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_rate_is_one_a_range_or_a_list() {
        assert_eq!(rate_arg("1000"), Ok(RateArg::One(1000.0)));
        assert_eq!(rate_arg("1000..5e4"), Ok(RateArg::Range(1000.0, 50000.0)));
        assert_eq!(rate_arg("50000..1000"), Ok(RateArg::Range(50000.0, 1000.0)));
        assert_eq!(rate_arg("1, 2.5,3"), Ok(RateArg::List(vec![1.0, 2.5, 3.0])));
        for bad in [
            "", "..", "1..", "..2", "1..2..3", "0..5", "1,,2", "1,x", "-1", "1,0",
        ] {
            assert!(rate_arg(bad).is_err(), "{bad}");
        }
    }

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

        /// Any text, and text shaped like a duration (a number, maybe a
        /// fraction, maybe a unit, maybe more parts), is either a duration
        /// of at most a year that reads back the same from its canonical
        /// form, or an error of one line that quotes the input as given.
        #[test]
        fn any_text_is_a_duration_or_an_error(
            s in prop_oneof![
                ".{0,20}",
                " ?[0-9]{1,12}(\\.[0-9]{0,3})?(ns|us|ms|s|m|min|h|d|w|y|years|parsecs)?( ?[0-9]{1,3}(ms|s|m))? ?",
            ]
        ) {
            match duration(&s) {
                Ok(d) => {
                    prop_assert!(d <= MAX_DURATION, "{s:?} gave {d:?}, over a year");
                    let canonical = humantime::format_duration(d).to_string();
                    prop_assert_eq!(
                        duration(&canonical),
                        Ok(d),
                        "{:?} gave {:?}, whose canonical form {:?} does not read back",
                        s,
                        d,
                        canonical
                    );
                }
                Err(e) => {
                    prop_assert!(!e.contains('\n'), "{s:?}: not one line: {e}");
                    prop_assert!(e.contains(&format!("'{s}'")), "{s:?}: does not quote the input: {e}");
                    prop_assert!(
                        e.contains("not a duration") || e.contains("too long"),
                        "{s:?}: says neither what is wrong nor what to write: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn addresses_of_every_form() {
        assert_eq!(socket_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(socket_addr("[::1]:5150").unwrap().is_ipv6());
        assert!(socket_addr("localhost:5150").unwrap().ip().is_loopback());
        assert!(socket_addr("nonsense").is_err());
        assert!(socket_addr("127.0.0.1:99999").is_err());
        let err = socket_addr("::1:0").unwrap_err();
        assert!(err.contains("[::1]:0"), "{err}");
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("0s").unwrap(), Duration::ZERO);
        assert!(duration("fast").is_err());
        assert!(duration("10parsecs").is_err());
        assert!(duration("100years").unwrap_err().contains("too long"));
        assert!(positive_duration("0s")
            .unwrap_err()
            .contains("longer than 0"));
        assert_eq!(positive_duration("1ms").unwrap(), Duration::from_millis(1));
    }

    #[test]
    fn start_times_in_both_forms_ahead_and_bounded() {
        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let soon = start_at(&format!("{:.3}", unix + 60.0)).unwrap();
        let off = soon.duration_since(now).unwrap().as_secs_f64();
        assert!((59.0..61.0).contains(&off), "{off}");
        let rfc = humantime::format_rfc3339_seconds(now + Duration::from_secs(120)).to_string();
        let t = start_at(&rfc).unwrap();
        assert!(t > now, "{rfc}");
        assert!(start_at(&rfc.replace('T', " ").replace('Z', "")).is_ok());
        assert!(start_at(&format!("{}", unix - 5.0))
            .unwrap_err()
            .contains("in the past"));
        assert!(start_at("2000-01-01T00:00:00Z")
            .unwrap_err()
            .contains("in the past"));
        assert!(start_at(&format!("{}", unix + 25.0 * 3600.0))
            .unwrap_err()
            .contains("at most 24 hours"));
        assert!(start_at("tomorrow").is_err());
        assert!(start_at("1.2.3").is_err());
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(bytes("1000").unwrap(), 1000);
        assert_eq!(bytes("64KiB").unwrap(), 64 << 10);
        assert_eq!(bytes("16MiB").unwrap(), 16 << 20);
        assert_eq!(bytes("16m").unwrap(), 16 << 20);
        assert!(bytes("lots").is_err());
        assert!(bytes("3parsecs").is_err());
        assert!(bytes("99999999999999999999").is_err());
    }

    #[test]
    fn percentile_lists_are_sorted_and_checked() {
        assert_eq!(
            percentiles("99.99,50, 90,50").unwrap().0,
            vec![50.0, 90.0, 99.99]
        );
        assert_eq!(percentiles("100").unwrap().0, vec![100.0]);
        assert!(percentiles("0").is_err());
        assert!(percentiles("101").is_err());
        assert!(percentiles("fifty").is_err());
        assert!(percentiles(",").is_err());
    }

    #[test]
    fn ip_lists_and_rates() {
        assert_eq!(ip_list("127.0.0.2, 127.0.0.3").unwrap().0.len(), 2);
        assert!(ip_list("127.0.0.2,nope").is_err());
        assert_eq!(rate("0.5").unwrap(), 0.5);
        assert!(rate("0").is_err());
        assert!(rate("-3").is_err());
        assert!(rate("inf").is_err());
    }
}
