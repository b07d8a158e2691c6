//! The hash tables the programs use to find the longest configured prefix of
//! an address (pure: no I/O; the loader writes the result into the maps).
//!
//! Per address family, the distinct prefix lengths of the configured
//! subnets, longest first, and one two-choice cuckoo hash table of two-entry
//! buckets holding every subnet under the key (masked address, length). The
//! program masks the address to each length in turn and reads the key's
//! first bucket, and its second only when the first is marked `moved` (some
//! key of that first bucket lives in its second one; at load <= 1/2 that is
//! rare): the first hit is the longest matching prefix, whatever the
//! nesting. A family with more than
//! [`MAX_PREFIX_LENGTHS`] distinct lengths (or whose table cannot be built,
//! which the sizing makes practically impossible) is looked up in its LPM
//! trie instead ([`SUBNET_MODE_TRIE`]).
//!
//! Hand-written rather than a crate: the layout and the hash are dictated by
//! what a BPF program can read with inlined array lookups, and must match
//! `telemetry-common` bit for bit.

use std::collections::BTreeSet;

use ipnet::IpNet;
use telemetry_common::{
    buckets_of, key_v4, key_v6, BucketV4, BucketV6, EntryV4, EntryV6, SubnetTableMeta,
    MAX_PREFIX_LENGTHS, SUBNET_MODE_TRIE,
};

/// How one family's addresses are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubnetLookup {
    /// No subnet of the family is configured.
    None,
    /// Hash tables, one probe of one or two buckets per distinct length.
    Hash { lengths: usize },
    /// The kernel's LPM trie.
    Trie,
}

/// Both families' tables for one generation, and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetTables {
    /// `base` is 0 here; the loader sets it to the generation's offset.
    pub meta: SubnetTableMeta,
    pub v4: Vec<BucketV4>,
    pub v6: Vec<BucketV6>,
}

impl SubnetTables {
    pub fn lookup_v4(&self) -> SubnetLookup {
        lookup(self.meta.v4_count)
    }

    pub fn lookup_v6(&self) -> SubnetLookup {
        lookup(self.meta.v6_count)
    }
}

fn lookup(count: u32) -> SubnetLookup {
    match count {
        0 => SubnetLookup::None,
        SUBNET_MODE_TRIE => SubnetLookup::Trie,
        n => SubnetLookup::Hash {
            lengths: n as usize,
        },
    }
}

/// Buckets per generation for `max_subnets`: a power of two with room for
/// twice the subnets (load at most 1/2 of the two-entry buckets; two-choice
/// cuckoo hashing with two-entry buckets fills to ~90 % before failing).
pub fn buckets_for(max_subnets: u32) -> u32 {
    max_subnets.max(16).next_power_of_two()
}

/// Seed of attempt `n` (splitmix64: fixed, so a table is reproducible).
fn seed(n: u64) -> u64 {
    let mut z = (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seed pairs tried before a family falls back to its trie.
const ATTEMPTS: u64 = 16;
/// Evictions one insertion may cause before the attempt is abandoned.
const MAX_KICKS: usize = 512;

/// Builds the tables for `subnets` (each with its counter slot) in `buckets`
/// buckets (a power of two). `trie_only`: every family with subnets uses
/// its trie (for benchmarks comparing the two).
pub fn build(subnets: &[(IpNet, u32)], buckets: u32, trie_only: bool) -> SubnetTables {
    let buckets = buckets.max(1).next_power_of_two();
    let v4: Vec<(u32, u32, u32)> = subnets
        .iter()
        .filter_map(|(n, slot)| match n {
            IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.prefix_len()), *slot)),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<(u128, u32, u32)> = subnets
        .iter()
        .filter_map(|(n, slot)| match n {
            IpNet::V6(n) => Some((u128::from(n.network()), u32::from(n.prefix_len()), *slot)),
            IpNet::V4(_) => None,
        })
        .collect();
    let lens4: BTreeSet<u32> = v4.iter().map(|e| e.1).collect();
    let lens6: BTreeSet<u32> = v6.iter().map(|e| e.1).collect();
    let mut meta = SubnetTableMeta {
        bucket_mask: buckets - 1,
        ..Default::default()
    };
    let hash4 = !v4.is_empty() && !trie_only && lens4.len() <= MAX_PREFIX_LENGTHS;
    let hash6 = !v6.is_empty() && !trie_only && lens6.len() <= MAX_PREFIX_LENGTHS;
    meta.v4_count = family_count(v4.is_empty(), hash4, lens4.len());
    meta.v6_count = family_count(v6.is_empty(), hash6, lens6.len());
    for (i, len) in lens4.iter().rev().enumerate().take(MAX_PREFIX_LENGTHS) {
        meta.v4_lens[i] = *len;
        meta.v4_masks[i] = mask32(*len);
    }
    for (i, len) in lens6.iter().rev().enumerate().take(MAX_PREFIX_LENGTHS) {
        meta.v6_lens[i] = *len;
        let m = mask128(*len);
        meta.v6_masks[i] = [(m >> 64) as u64, m as u64];
    }
    let mut t4 = vec![BucketV4::default(); buckets as usize];
    let mut t6 = vec![BucketV6::default(); buckets as usize];
    let (mut ok4, mut ok6) = (!hash4, !hash6);
    for attempt in 0..ATTEMPTS {
        meta.seed = seed(attempt);
        t4.fill(BucketV4::default());
        t6.fill(BucketV6::default());
        ok4 = !hash4
            || v4.iter().all(|&(addr, len, slot)| {
                let e = EntryV4 {
                    addr,
                    tag: len + 1,
                    slot,
                };
                insert(&mut t4, &meta, e, |e| key_v4(e.addr, e.tag), |e| e.tag == 0)
            });
        ok6 = !hash6
            || v6.iter().all(|&(addr, len, slot)| {
                let e = EntryV6 {
                    hi: (addr >> 64) as u64,
                    lo: addr as u64,
                    tag: len + 1,
                    slot,
                };
                insert(
                    &mut t6,
                    &meta,
                    e,
                    |e| key_v6(e.hi, e.lo, e.tag),
                    |e| e.tag == 0,
                )
            });
        if ok4 && ok6 {
            mark_moved(&mut t4, &meta, |e| key_v4(e.addr, e.tag), |e| e.tag == 0);
            mark_moved(
                &mut t6,
                &meta,
                |e| key_v6(e.hi, e.lo, e.tag),
                |e| e.tag == 0,
            );
            break;
        }
    }
    if !ok4 {
        meta.v4_count = SUBNET_MODE_TRIE;
        t4.fill(BucketV4::default());
    }
    if !ok6 {
        meta.v6_count = SUBNET_MODE_TRIE;
        t6.fill(BucketV6::default());
    }
    if !ok4 || !ok6 {
        tracing::warn!(
            v4 = ok4,
            v6 = ok6,
            "subnet hash table could not be built; using the LPM trie"
        );
    }
    SubnetTables {
        meta,
        v4: t4,
        v6: t6,
    }
}

fn family_count(empty: bool, hash: bool, lengths: usize) -> u32 {
    if empty {
        0
    } else if hash {
        lengths as u32
    } else {
        SUBNET_MODE_TRIE
    }
}

fn mask32(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

fn mask128(len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

/// Buckets that hold two-entry arrays and a `moved` mark.
trait Bucket<E> {
    fn entries(&mut self) -> &mut [E; 2];
    fn set_moved(&mut self);
}

impl Bucket<EntryV4> for BucketV4 {
    fn entries(&mut self) -> &mut [EntryV4; 2] {
        &mut self.e
    }
    fn set_moved(&mut self) {
        self.moved = 1;
    }
}

impl Bucket<EntryV6> for BucketV6 {
    fn entries(&mut self) -> &mut [EntryV6; 2] {
        &mut self.e
    }
    fn set_moved(&mut self) {
        self.moved = 1;
    }
}

/// Marks the first bucket of every entry that sits in its second one.
fn mark_moved<B: Bucket<E>, E: Copy>(
    table: &mut [B],
    meta: &SubnetTableMeta,
    key: impl Fn(&E) -> u64,
    empty: impl Fn(&E) -> bool,
) {
    for i in 0..table.len() {
        for j in 0..2 {
            let e = table[i].entries()[j];
            if empty(&e) {
                continue;
            }
            let (b1, _) = buckets_of(key(&e), meta.seed, meta.bucket_mask);
            if b1 as usize != i {
                table[b1 as usize].set_moved();
            }
        }
    }
}

/// Cuckoo insertion: into a free entry of either bucket, else evict an
/// entry to its other bucket, up to [`MAX_KICKS`] times.
fn insert<B: Bucket<E>, E: Copy>(
    table: &mut [B],
    meta: &SubnetTableMeta,
    mut e: E,
    key: impl Fn(&E) -> u64,
    empty: impl Fn(&E) -> bool,
) -> bool {
    let mask = meta.bucket_mask;
    let mut b = buckets_of(key(&e), meta.seed, mask).0 as usize;
    for kick in 0..MAX_KICKS {
        let (b1, b2) = buckets_of(key(&e), meta.seed, mask);
        let alt = [b1 as usize, b2 as usize];
        for &c in &alt {
            if let Some(slot) = table[c].entries().iter_mut().find(|x| empty(x)) {
                *slot = e;
                return true;
            }
        }
        // Both full: evict from the bucket we did not evict into last time.
        b = if alt[0] == b { alt[1] } else { alt[0] };
        let victim = &mut table[b].entries()[kick % 2];
        std::mem::swap(victim, &mut e);
    }
    false
}

/// The slot of the longest prefix in `subnets` holding `addr`: the
/// reference the tables (and the programs) must agree with.
pub fn longest_match(subnets: &[(IpNet, u32)], addr: std::net::IpAddr) -> Option<u32> {
    subnets
        .iter()
        .filter(|(n, _)| n.contains(&addr))
        .max_by_key(|(n, _)| n.prefix_len())
        .map(|(_, s)| *s)
}

/// What the program does with `tables`, in userspace: for tests.
pub fn find(tables: &SubnetTables, addr: std::net::IpAddr) -> Option<u32> {
    let m = &tables.meta;
    match addr {
        std::net::IpAddr::V4(a) => {
            let addr = u32::from(a);
            for i in 0..(m.v4_count as usize).min(MAX_PREFIX_LENGTHS) {
                let tag = m.v4_lens[i] + 1;
                let net = addr & m.v4_masks[i];
                let (b1, b2) = buckets_of(key_v4(net, tag), m.seed, m.bucket_mask);
                for (n, b) in [b1, b2].into_iter().enumerate() {
                    let b = &tables.v4[b as usize];
                    if let Some(e) = b.e.iter().find(|e| e.tag == tag && e.addr == net) {
                        return Some(e.slot);
                    }
                    if n == 0 && b.moved == 0 {
                        break;
                    }
                }
            }
            None
        }
        std::net::IpAddr::V6(a) => {
            let v = u128::from(a);
            let (hi, lo) = ((v >> 64) as u64, v as u64);
            for i in 0..(m.v6_count as usize).min(MAX_PREFIX_LENGTHS) {
                let tag = m.v6_lens[i] + 1;
                let (nh, nl) = (hi & m.v6_masks[i][0], lo & m.v6_masks[i][1]);
                let (b1, b2) = buckets_of(key_v6(nh, nl, tag), m.seed, m.bucket_mask);
                for (n, b) in [b1, b2].into_iter().enumerate() {
                    let b = &tables.v6[b as usize];
                    if let Some(e) =
                        b.e.iter()
                            .find(|e| e.tag == tag && e.hi == nh && e.lo == nl)
                    {
                        return Some(e.slot);
                    }
                    if n == 0 && b.moved == 0 {
                        break;
                    }
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn nets(v: &[&str]) -> Vec<(IpNet, u32)> {
        v.iter()
            .enumerate()
            .map(|(i, s)| (s.parse::<IpNet>().expect("net").trunc(), i as u32))
            .collect()
    }

    /// A deterministic pseudo-random u64 stream (xorshift).
    fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn nested_prefixes_resolve_to_the_longest() {
        let s = nets(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "2001:db8:1::5/128",
            "::/0",
        ]);
        let t = build(&s, buckets_for(16), false);
        assert_eq!(t.lookup_v4(), SubnetLookup::Hash { lengths: 5 });
        assert_eq!(t.lookup_v6(), SubnetLookup::Hash { lengths: 4 });
        for (a, want) in [
            ("10.1.2.3", 3),
            ("10.1.2.4", 2),
            ("10.1.3.1", 1),
            ("10.2.0.0", 0),
            ("192.0.2.1", 4),
            ("2001:db8:1::5", 7),
            ("2001:db8:1::6", 6),
            ("2001:db8:2::", 5),
            ("2001:db9::", 8),
        ] {
            let a: IpAddr = a.parse().expect("addr");
            assert_eq!(find(&t, a), Some(want), "{a}");
            assert_eq!(longest_match(&s, a), Some(want), "{a}");
        }
    }

    #[test]
    fn full_tables_agree_with_the_reference_on_random_addresses() {
        // 65,536 subnets (the capacity) of 4 lengths in each family, nested
        // and random, probed with addresses in and around them.
        let mut r = rng(0x1234_5678);
        let mut s = Vec::new();
        let mut seen = BTreeSet::new();
        while s.len() < 65_536 {
            let slot = s.len() as u32;
            let net: IpNet = if slot.is_multiple_of(2) {
                let len = [8u8, 16, 24, 32][(r() % 4) as usize];
                let a = (r() as u32) & 0x0aff_ffff;
                ipnet::Ipv4Net::new(a.into(), len)
                    .expect("v4")
                    .trunc()
                    .into()
            } else {
                let len = [32u8, 48, 64, 128][(r() % 4) as usize];
                let a = (u128::from(r()) << 64 | u128::from(r()))
                    & (0x2001_0db8_00ff_u128 << 80 | u128::from(u64::MAX));
                ipnet::Ipv6Net::new(a.into(), len)
                    .expect("v6")
                    .trunc()
                    .into()
            };
            if seen.insert(net) {
                s.push((net, slot));
            }
        }
        let t = build(&s, buckets_for(65_536), false);
        // The reference: every prefix of the address, longest first, in a
        // map of the configured subnets (a linear scan is too slow here).
        let by_net: std::collections::HashMap<IpNet, u32> = s.iter().copied().collect();
        let reference = |a: IpAddr| {
            let max: u8 = if a.is_ipv4() { 32 } else { 128 };
            (0..=max)
                .rev()
                .find_map(|l| by_net.get(&IpNet::new(a, l).expect("len").trunc()).copied())
        };
        assert_eq!(t.lookup_v4(), SubnetLookup::Hash { lengths: 4 });
        assert_eq!(t.lookup_v6(), SubnetLookup::Hash { lengths: 4 });
        for i in 0..10_000usize {
            let (net, _) = s[(r() as usize) % s.len()];
            // An address inside a configured subnet, or a random one.
            let a: IpAddr = match (net, i % 3) {
                (IpNet::V4(n), 0 | 1) => {
                    let host = (r() as u32) & !mask32(u32::from(n.prefix_len()));
                    IpAddr::V4((u32::from(n.network()) | host).into())
                }
                (IpNet::V6(n), 0 | 1) => {
                    let host = (u128::from(r()) << 64 | u128::from(r()))
                        & !mask128(u32::from(n.prefix_len()));
                    IpAddr::V6((u128::from(n.network()) | host).into())
                }
                (IpNet::V4(_), _) => IpAddr::V4((r() as u32).into()),
                (IpNet::V6(_), _) => IpAddr::V6((u128::from(r()) << 64).into()),
            };
            assert_eq!(find(&t, a), reference(a), "{a}");
        }
    }

    #[test]
    fn too_many_lengths_fall_back_to_the_trie() {
        let v: Vec<String> = (8..=16).map(|l| format!("10.0.0.0/{l}")).collect();
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        let mut s = nets(&refs);
        s.push(("2001:db8::/64".parse().expect("v6"), 100));
        let t = build(&s, buckets_for(16), false);
        assert_eq!(t.lookup_v4(), SubnetLookup::Trie, "9 lengths");
        assert_eq!(t.lookup_v6(), SubnetLookup::Hash { lengths: 1 });
        assert!(t.v4.iter().all(|b| *b == BucketV4::default()));
        let t = build(&s, buckets_for(16), true);
        assert_eq!(
            (t.lookup_v4(), t.lookup_v6()),
            (SubnetLookup::Trie, SubnetLookup::Trie)
        );
        let t = build(&[], buckets_for(16), false);
        assert_eq!(
            (t.lookup_v4(), t.lookup_v6()),
            (SubnetLookup::None, SubnetLookup::None)
        );
    }
}
