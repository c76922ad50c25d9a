//! CPU lists such as `0-3,6`, and how the machine's CPUs are split between
//! the server and the load so that neither steals the other's time.

use std::fmt;
use std::str::FromStr;

/// A set of CPU numbers, sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet(Vec<usize>);

impl CpuSet {
    /// The set of the given CPUs.
    pub fn new(mut cpus: Vec<usize>) -> Self {
        cpus.sort_unstable();
        cpus.dedup();
        CpuSet(cpus)
    }

    /// The CPU numbers, ascending.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// How many CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(
            self.0
                .iter()
                .copied()
                .filter(|c| other.0.contains(c))
                .collect(),
        )
    }

    /// The CPUs of this set missing from `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet(
            self.0
                .iter()
                .copied()
                .filter(|c| !other.0.contains(c))
                .collect(),
        )
    }
}

/// The largest CPU number accepted; far above any machine, low enough that a
/// typo such as `0-99999999` cannot allocate a huge list.
const MAX_CPU: usize = 65_535;

impl FromStr for CpuSet {
    type Err = String;

    /// Parse the kernel's list format: `0`, `0-3`, `0-3,6,8-9`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("'{s}' is not a CPU list ({why}): expected such as 0-3,6");
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad("empty item"));
            }
            let num = |t: &str| -> Result<usize, String> {
                let n: usize = t.trim().parse().map_err(|_| bad("not a number"))?;
                if n > MAX_CPU {
                    return Err(bad("CPU number too large"));
                }
                Ok(n)
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(bad("range goes down"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(num(part)?),
            }
        }
        Ok(CpuSet::new(cpus))
    }
}

impl fmt::Display for CpuSet {
    /// The same list format, with runs folded into ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// The server's share of the CPUs by default: one in this many (at least
/// one CPU). On loopback a message costs the load about as much CPU as the
/// server, or more: issue 32 measured ringport's load at 1.7–2× the epoll
/// server's CPU per message, and a zero-copy server needs even less. An
/// even split therefore makes the load the limit in every busy cell; with a
/// third for the server the load has at least twice the server's CPUs from
/// three CPUs on.
pub const SERVER_SHARE: usize = 3;

/// How many of `n` CPUs the default split gives the server: a third, at
/// least one, and never all of them when there are two or more.
pub fn default_server_count(n: usize) -> usize {
    if n <= 1 {
        return n;
    }
    (n / SERVER_SHARE).clamp(1, n - 1)
}

/// Split the CPUs this process may use: the first third (at least one) for
/// the server, the rest for the load, since the load spends as much CPU per
/// message as the server or more (see [`SERVER_SHARE`]). On a 2-CPU machine
/// this is server `0`, client `1`, the only split there is; on 4, `0` and
/// `1-3`; on 16, `0-4` and `5-15`. With one CPU both share it, and the
/// caller should say so.
pub fn default_split(allowed: &CpuSet) -> (CpuSet, CpuSet) {
    let n = allowed.len();
    if n <= 1 {
        return (allowed.clone(), allowed.clone());
    }
    let server = default_server_count(n);
    (
        CpuSet(allowed.0[..server].to_vec()),
        CpuSet(allowed.0[server..].to_vec()),
    )
}

/// Why the default split is what it is, in one line for the notes.
pub fn default_split_reason(n: usize) -> String {
    match n {
        0 | 1 => "one CPU: the server and the load share it".to_string(),
        2 => "default split: with 2 CPUs the only split is one for the server and one for the load, so busy cells may be bound by the load; --server-cpu-cap PCT makes the server the limit".to_string(),
        _ => format!(
            "default split: a third of the {n} CPUs for the server (at least one), the rest for the load, because on loopback the load spends about as much CPU per message as the server or more (1.7–2× the epoll server's), so an even split would make the load the limit"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    #[test]
    fn lists_parse_in_the_kernel_format() {
        assert_eq!(set("0-3,6").cpus(), &[0, 1, 2, 3, 6]);
        assert_eq!(set("1").cpus(), &[1]);
        assert_eq!(set("6, 0-1 ,1").cpus(), &[0, 1, 6]);
        for bad in ["", "a", "3-1", "0,,1", "1-", "99999999"] {
            assert!(bad.parse::<CpuSet>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn lists_print_with_ranges_folded() {
        for s in ["0-3,6", "1", "0,2,4", "0-1,3-5"] {
            assert_eq!(set(s).to_string(), s);
        }
    }

    #[test]
    fn two_cpus_split_server_0_client_1() {
        let (s, c) = default_split(&set("0-1"));
        assert_eq!((s.to_string(), c.to_string()), ("0".into(), "1".into()));
    }

    #[test]
    fn bigger_machines_give_the_server_a_third_and_the_load_the_rest() {
        let split = |s: &str| {
            let (a, b) = default_split(&set(s));
            (a.to_string(), b.to_string())
        };
        assert_eq!(split("0-2"), ("0".into(), "1-2".into()));
        assert_eq!(split("0-3"), ("0".into(), "1-3".into()));
        assert_eq!(split("0-5"), ("0-1".into(), "2-5".into()));
        assert_eq!(split("0-7"), ("0-1".into(), "2-7".into()));
        assert_eq!(split("0-15"), ("0-4".into(), "5-15".into()));
        assert_eq!(split("2"), ("2".into(), "2".into()));
        // The allowed CPUs need not start at 0 nor be contiguous.
        assert_eq!(split("2-3,8"), ("2".into(), "3,8".into()));
        for n in 3..=256 {
            let s = default_server_count(n);
            assert!(s >= 1 && n - s >= 2 * s, "{n}: {s} + {}", n - s);
        }
    }

    #[test]
    fn set_operations() {
        assert_eq!(set("0-3").intersection(&set("2-5")), set("2-3"));
        assert_eq!(set("0-3").difference(&set("2-5")), set("0-1"));
    }
}
