//! Longest-prefix match over the configured IPv4 and IPv6 subnets.
//!
//! One hash map per prefix length present, probed from the longest length
//! down: a lookup costs at most one probe per distinct length (usually a
//! handful), independent of the number of subnets, and building is a plain
//! insert. Keys are the masked address as an integer; the hasher is a
//! multiply-shift hash (keys are our own configuration, not attacker input).
//!
//! Nested subnets are allowed; traffic is attributed to the most specific
//! one only. Duplicates are a configuration error.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    net::IpAddr,
};

use ipnet::IpNet;

/// Index of a subnet in the table (its position in the configuration).
pub type SubnetId = u32;

/// Multiply-shift hasher for integer keys.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        for b in chunks.remainder() {
            self.write_u64(*b as u64);
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(26) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[derive(Debug, Clone, Default)]
struct Lpm<K> {
    /// (prefix length, map from masked key to id), longest first.
    levels: Vec<(u8, IntMap<K, SubnetId>)>,
}

trait Key: Copy + Eq + std::hash::Hash {
    const BITS: u8;
    fn mask(self, len: u8) -> Self;
}
impl Key for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - len))
        }
    }
}
impl Key for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - len))
        }
    }
}

impl<K: Key> Lpm<K> {
    fn insert(&mut self, key: K, len: u8, id: SubnetId) -> Option<SubnetId> {
        debug_assert!(len <= K::BITS);
        let pos = match self.levels.iter().position(|(l, _)| *l <= len) {
            Some(p) if self.levels[p].0 == len => p,
            Some(p) => {
                self.levels.insert(p, (len, IntMap::default()));
                p
            }
            None => {
                self.levels.push((len, IntMap::default()));
                self.levels.len() - 1
            }
        };
        self.levels[pos].1.insert(key.mask(len), id)
    }
    #[inline]
    fn lookup(&self, key: K) -> Option<SubnetId> {
        self.levels
            .iter()
            .find_map(|(len, m)| m.get(&key.mask(*len)).copied())
    }
}

/// The subnet table.
#[derive(Debug, Clone, Default)]
pub struct SubnetTable {
    v4: Lpm<u32>,
    v6: Lpm<u128>,
    nets: Vec<IpNet>,
}

/// A subnet listed twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subnet {0} is listed more than once")]
pub struct Duplicate(pub IpNet);

impl SubnetTable {
    /// Builds the table; ids are positions in `nets`. Host bits are ignored
    /// (10.0.0.1/24 is 10.0.0.0/24).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Result<Self, Duplicate> {
        let mut t = SubnetTable::default();
        for n in nets {
            let n = n.trunc();
            let id = t.nets.len() as SubnetId;
            let dup = match n {
                IpNet::V4(v) => t.v4.insert(u32::from(v.network()), v.prefix_len(), id),
                IpNet::V6(v) => t.v6.insert(u128::from(v.network()), v.prefix_len(), id),
            };
            if dup.is_some() {
                return Err(Duplicate(n));
            }
            t.nets.push(n);
        }
        Ok(t)
    }

    /// The most specific subnet containing `addr`. An IPv4-mapped IPv6
    /// address (::ffff:a.b.c.d) is looked up as IPv4.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<SubnetId> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.lookup(u32::from(v4)),
                None => self.v6.lookup(u128::from(a)),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.nets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
    pub fn net(&self, id: SubnetId) -> IpNet {
        self.nets[id as usize]
    }
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(nets: &[&str]) -> SubnetTable {
        SubnetTable::new(nets.iter().map(|n| n.parse().unwrap())).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let tab = t(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "2001:db8:1::/48",
        ]);
        assert_eq!(tab.lookup(ip("10.1.2.3")), Some(3));
        assert_eq!(tab.lookup(ip("10.1.2.4")), Some(2));
        assert_eq!(tab.lookup(ip("10.1.3.4")), Some(1));
        assert_eq!(tab.lookup(ip("10.200.0.1")), Some(0));
        assert_eq!(tab.lookup(ip("192.0.2.1")), Some(4));
        assert_eq!(tab.lookup(ip("2001:db8:1::5")), Some(6));
        assert_eq!(tab.lookup(ip("2001:db8:2::5")), Some(5));
        assert_eq!(tab.lookup(ip("2001:db9::1")), None);
        assert_eq!(tab.lookup(ip("::ffff:10.1.2.9")), Some(2));
    }

    #[test]
    fn host_bits_and_duplicates() {
        let tab = t(&["192.0.2.77/24"]);
        assert_eq!(tab.net(0).to_string(), "192.0.2.0/24");
        assert_eq!(tab.lookup(ip("192.0.2.1")), Some(0));
        let e = SubnetTable::new([
            "192.0.2.0/24".parse().unwrap(),
            "192.0.2.5/24".parse().unwrap(),
        ]);
        assert_eq!(
            e.unwrap_err().to_string(),
            "subnet 192.0.2.0/24 is listed more than once"
        );
    }

    #[test]
    fn agrees_with_linear_scan() {
        // Pseudo-random nested prefixes against a brute-force reference.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut nets = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while nets.len() < 2000 {
            let len = [8u8, 12, 16, 20, 24, 28, 32][(next() % 7) as usize];
            let a = std::net::Ipv4Addr::from(((next() as u32) & 0x0fff_ffff) | 0x0a00_0000);
            let n = IpNet::V4(ipnet::Ipv4Net::new(a, len).unwrap().trunc());
            if seen.insert(n) {
                nets.push(n);
            }
        }
        let tab = SubnetTable::new(nets.clone()).unwrap();
        for _ in 0..20_000 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(
                ((next() as u32) & 0x0fff_ffff) | 0x0a00_0000,
            ));
            let want = nets
                .iter()
                .enumerate()
                .filter(|(_, n)| n.contains(&a))
                .max_by_key(|(_, n)| n.prefix_len())
                .map(|(i, _)| i as SubnetId);
            assert_eq!(tab.lookup(a), want, "{a}");
        }
    }
}
