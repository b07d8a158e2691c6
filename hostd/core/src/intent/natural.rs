//! Natural order of names: runs of digits compare as numbers, so
//! `Ethernet2 < Ethernet10`, `Ethernet1/2 < Ethernet1/10` and
//! `sw2 < sw10`.
//!
//! Hand-written (a few lines) rather than a crate: the one on crates.io
//! (`natord`) skips whitespace and treats equal numbers with different
//! leading zeros as equal, so it is not a total order consistent with `==`,
//! which sorting port indexes needs (two distinct names must never tie).
//!
//! The comparison: split both names into runs of ASCII digits and runs of
//! other characters; compare run by run, digit runs by numeric value
//! (leading zeros ignored; any length), other runs case-insensitively; a name
//! that is a prefix of the other sorts first. Names still equal (they differ
//! only in case or leading zeros) are ordered by their bytes, so the order is
//! total and `Equal` only for identical names.

use std::cmp::Ordering;

/// One run of a name.
enum Run<'a> {
    Digits(&'a str),
    Text(&'a str),
}

fn runs(s: &str) -> impl Iterator<Item = Run<'_>> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() != digit)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(if digit {
            Run::Digits(run)
        } else {
            Run::Text(run)
        })
    })
}

fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    // Without leading zeros, a longer run is a larger number.
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_text(a: &str, b: &str) -> Ordering {
    a.chars()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.chars().map(|c| c.to_ascii_lowercase()))
}

/// Compares two names in natural order (see the module documentation).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut ra = runs(a);
    let mut rb = runs(b);
    loop {
        let ord = match (ra.next(), rb.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(Run::Digits(x)), Some(Run::Digits(y))) => cmp_digits(x, y),
            (Some(Run::Text(x)), Some(Run::Text(y))) => cmp_text(x, y),
            // A digit run sorts before text at the same place ("a1" < "ab"),
            // as in byte order.
            (Some(Run::Digits(_)), Some(Run::Text(_))) => Ordering::Less,
            (Some(Run::Text(_)), Some(Run::Digits(_))) => Ordering::Greater,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

/// The number a name ends with (`Ethernet10` -> 10, `swp1s2` -> 2), if any
/// and if it fits in a `u32`.
pub fn trailing_number(s: &str) -> Option<u32> {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    s[s.len() - digits..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    #[test]
    fn ethernet_ports_in_number_order() {
        assert_eq!(
            sorted(vec!["Ethernet10", "Ethernet2", "Ethernet1", "Ethernet100"]),
            vec!["Ethernet1", "Ethernet2", "Ethernet10", "Ethernet100"]
        );
    }

    #[test]
    fn slashed_and_breakout_ports() {
        assert_eq!(
            sorted(vec![
                "Ethernet1/10",
                "Ethernet1/2",
                "Ethernet2/1",
                "Ethernet1/1"
            ]),
            vec!["Ethernet1/1", "Ethernet1/2", "Ethernet1/10", "Ethernet2/1"]
        );
        assert_eq!(
            sorted(vec!["swp10", "swp1s1", "swp2", "swp1s0", "swp1"]),
            vec!["swp1", "swp1s0", "swp1s1", "swp2", "swp10"]
        );
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            sorted(vec!["sw10", "sw2", "leaf-b", "sw1", "leaf-a"]),
            vec!["leaf-a", "leaf-b", "sw1", "sw2", "sw10"]
        );
    }

    #[test]
    fn prefix_sorts_first_and_case_is_a_tie_breaker() {
        assert_eq!(natural_cmp("Eth", "Eth1"), Ordering::Less);
        assert_eq!(natural_cmp("eth1", "Eth2"), Ordering::Less);
        assert_eq!(natural_cmp("Eth2", "eth10"), Ordering::Less);
        // Equal but for case: byte order decides ('E' < 'e').
        assert_eq!(natural_cmp("Eth1", "eth1"), Ordering::Less);
        assert_eq!(natural_cmp("eth1", "Eth1"), Ordering::Greater);
    }

    #[test]
    fn leading_zeros_and_long_numbers() {
        assert_eq!(natural_cmp("Ethernet02", "Ethernet10"), Ordering::Less);
        assert_eq!(natural_cmp("Ethernet010", "Ethernet9"), Ordering::Greater);
        // Same value: byte order decides, never Equal for distinct names.
        assert_ne!(natural_cmp("Ethernet01", "Ethernet1"), Ordering::Equal);
        // Longer than any integer type.
        assert_eq!(
            natural_cmp(
                "p123456789012345678901234567890",
                "p99999999999999999999999999999"
            ),
            Ordering::Greater
        );
    }

    #[test]
    fn equal_only_for_identical_names() {
        assert_eq!(natural_cmp("Ethernet10", "Ethernet10"), Ordering::Equal);
        assert_eq!(natural_cmp("", ""), Ordering::Equal);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
    }

    #[test]
    fn trailing_numbers() {
        assert_eq!(trailing_number("Ethernet10"), Some(10));
        assert_eq!(trailing_number("swp1s2"), Some(2));
        assert_eq!(trailing_number("Ethernet1/48"), Some(48));
        assert_eq!(trailing_number("eth-a"), None);
        assert_eq!(trailing_number("p99999999999"), None);
    }
}
