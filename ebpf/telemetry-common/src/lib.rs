//! Types shared by the eBPF programs in `ebpf/telemetry-ebpf` and their
//! userspace loader in `hostd/telemetry`.
//!
//! Everything here is `#[repr(C)]`, `no_std`, and laid out identically on both
//! sides of the map boundary (no implicit padding: every struct is made of
//! `u32`/`u64` fields in an order that needs none). The `user` feature derives
//! `aya::Pod` so the loader can read and write these values in BPF maps.
//!
//! Maps (names are the ELF symbols the loader looks up):
//!
//! | map | type | key | value |
//! |---|---|---|---|
//! | `CONFIG` | array[1] | 0 | [`Config`] |
//! | `IF_COUNTERS` | per-CPU hash | [`IfVlanKey`] | [`IfVlanCounters`] |
//! | `IF_MISSES` | per-CPU hash | ifindex (`u32`) | [`IfVlanCounters`] of packets `IF_COUNTERS` had no room for |
//! | `LOST` | per-CPU array[1] | 0 | [`IfVlanCounters`] of packets neither map had room for |
//! | `SUBNETS_V4` | LPM trie | prefix length + 4 address bytes | slot (`u32`) |
//! | `SUBNETS_V6` | LPM trie | prefix length + 16 address bytes | slot (`u32`) |
//! | `SUBNET_META` | array[2] | generation (0, 1) | [`SubnetTableMeta`] |
//! | `SUBNET_TABLE_V4` | array | `meta.base + bucket` | [`BucketV4`] |
//! | `SUBNET_TABLE_V6` | array | `meta.base + bucket` | [`BucketV6`] |
//! | `SUBNET_COUNTERS` | per-CPU array | slot | [`SubnetCounters`] |
//! | `SAMPLES` | ring buffer | - | [`SampleRecord`] |
//! | `ZERO` | array[1] | 0 | an all-zero [`IfVlanCounters`] (never written): new entries' initial value |
//! | `SKIP` | per-CPU array[1] | 0 | packets left before the next sample (`u64`) |
#![no_std]

/// Index of the ingress direction (`DirCounters` in `IfVlanCounters::rx`).
pub const DIR_INGRESS: u32 = 0;
/// Index of the egress direction.
pub const DIR_EGRESS: u32 = 1;

/// Largest number of header bytes a sample can carry.
pub const MAX_HEADER_BYTES: usize = 256;
/// Default number of header bytes copied into a sample (as hsflowd).
pub const DEFAULT_HEADER_BYTES: u32 = 128;

/// Map names, shared so the loader cannot drift from the program.
pub mod maps {
    pub const CONFIG: &str = "CONFIG";
    pub const IF_COUNTERS: &str = "IF_COUNTERS";
    pub const IF_MISSES: &str = "IF_MISSES";
    pub const LOST: &str = "LOST";
    pub const SUBNETS_V4: &str = "SUBNETS_V4";
    pub const SUBNETS_V6: &str = "SUBNETS_V6";
    pub const SUBNET_META: &str = "SUBNET_META";
    pub const SUBNET_TABLE_V4: &str = "SUBNET_TABLE_V4";
    pub const SUBNET_TABLE_V6: &str = "SUBNET_TABLE_V6";
    pub const SUBNET_COUNTERS: &str = "SUBNET_COUNTERS";
    pub const SAMPLES: &str = "SAMPLES";
    pub const SKIP: &str = "SKIP";
}

/// Program names (ELF symbols).
pub mod programs {
    pub const INGRESS: &str = "telemetry_ingress";
    pub const EGRESS: &str = "telemetry_egress";
    /// Returns `TC_ACT_UNSPEC` and does nothing else: the "no program"
    /// baseline of the BPF_PROG_TEST_RUN benchmark. hostd never attaches it.
    pub const NOOP: &str = "telemetry_noop";
}

/// Runtime configuration, written by userspace into `CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Sample 1 in N packets on average; 0 turns sampling off. Each CPU
    /// counts down a random skip drawn uniformly from 1..=2N-1 (mean N) with
    /// `bpf_get_prandom_u32` and samples the packet that reaches zero: one
    /// random draw per sample instead of one per packet.
    pub sampling_rate: u32,
    /// Bytes of each sampled packet copied into the ring buffer
    /// (1..=[`MAX_HEADER_BYTES`]; fewer when the packet is shorter).
    pub header_bytes: u32,
    /// Bit 0: IPv4 subnets configured; bit 1: IPv6 subnets configured. Saves
    /// the LPM lookups when there is nothing to find.
    pub flags: u32,
    /// Which generation of `SUBNET_META` (and of the bucket tables) the
    /// programs use (0 or 1): userspace writes the other one, then flips
    /// this, so a packet never sees a half-written table.
    pub subnet_gen: u32,
}

/// [`Config::flags`] bit: look IPv4 packets up in `SUBNETS_V4`.
pub const FLAG_SUBNETS_V4: u32 = 1;
/// [`Config::flags`] bit: look IPv6 packets up in `SUBNETS_V6`.
pub const FLAG_SUBNETS_V6: u32 = 2;

/// Most distinct prefix lengths per address family the hash tables serve;
/// with more, that family is looked up in its LPM trie
/// ([`SUBNET_MODE_TRIE`]). Each configured length costs an address that
/// matches none of them one or two bucket reads (an inlined array lookup
/// and a compare, ~1-2 ns each); at 8 lengths a miss costs about what the
/// trie's walk does, so beyond it the trie is the better structure.
pub const MAX_PREFIX_LENGTHS: usize = 8;

/// [`SubnetTableMeta::v4_count`] / `v6_count`: look this family up in its
/// LPM trie (too many distinct lengths, or no hash table could be built).
pub const SUBNET_MODE_TRIE: u32 = 0xff;

/// How the programs find the longest configured prefix of an address
/// (per generation, see [`Config::subnet_gen`]).
///
/// For each family: `*_count` distinct prefix lengths, longest first, in
/// `*_lens` (with their masks); the address, masked to each length in turn,
/// is looked up in a two-choice cuckoo hash table of two-entry buckets
/// (`SUBNET_TABLE_V4`/`V6`, this generation's part starts at `base`, has
/// `bucket_mask + 1` buckets): its first bucket, and its second only when
/// the first is marked `moved`; the first hit is the longest matching
/// prefix. `*_count` 0: no subnet of the family; [`SUBNET_MODE_TRIE`]: use
/// the trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubnetTableMeta {
    /// Seed of the bucket hash ([`buckets_of`]).
    pub seed: u64,
    pub _reserved: u64,
    /// Buckets per generation minus one (a power of two minus one).
    pub bucket_mask: u32,
    /// Index of this generation's first bucket in the table maps.
    pub base: u32,
    pub v4_count: u32,
    pub v6_count: u32,
    /// Prefix lengths, longest first; the entry tag is the length plus one.
    pub v4_lens: [u32; MAX_PREFIX_LENGTHS],
    /// `u32` masks (host order) of `v4_lens`.
    pub v4_masks: [u32; MAX_PREFIX_LENGTHS],
    pub v6_lens: [u32; MAX_PREFIX_LENGTHS],
    /// (high, low) `u64` masks (host order) of `v6_lens`.
    pub v6_masks: [[u64; 2]; MAX_PREFIX_LENGTHS],
}

/// One configured IPv4 prefix in a bucket: `tag` is its length plus one
/// (0: empty entry), `addr` the network address as a host-order `u32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryV4 {
    pub addr: u32,
    pub tag: u32,
    pub slot: u32,
}

/// One configured IPv6 prefix: the network address as two host-order
/// `u64` halves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryV6 {
    pub hi: u64,
    pub lo: u64,
    pub tag: u32,
    pub slot: u32,
}

/// A bucket of the IPv4 table: two entries; `moved` 1 when some key whose
/// first bucket this is sits in its second bucket (only then does a lookup
/// that missed here read the second one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketV4 {
    pub e: [EntryV4; 2],
    pub moved: u32,
    pub _pad: u32,
}

/// A bucket of the IPv6 table, as [`BucketV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketV6 {
    pub e: [EntryV6; 2],
    pub moved: u32,
    pub _pad: u32,
}

/// The hash key of a masked IPv4 address with its tag.
#[inline(always)]
pub fn key_v4(addr: u32, tag: u32) -> u64 {
    (u64::from(addr) << 8) | u64::from(tag)
}

/// The hash key of a masked IPv6 address with its tag.
#[inline(always)]
pub fn key_v6(hi: u64, lo: u64, tag: u32) -> u64 {
    hi ^ (lo << 23) ^ (lo >> 41) ^ (u64::from(tag) << 56)
}

/// The two buckets (within a generation) of `key` under `seed`, from one
/// multiply-xorshift mix: the low and the high half. The same function in
/// the programs and in the loader that fills the table.
#[inline(always)]
pub fn buckets_of(key: u64, seed: u64, bucket_mask: u32) -> (u32, u32) {
    let h = (key ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = h ^ (h >> 32);
    ((h as u32) & bucket_mask, ((h >> 32) as u32) & bucket_mask)
}

/// Most random draws one skb may take for sampling (each draw is one
/// sample among its segments). Past that (only when the sampling rate is far
/// below the skb's segment count, e.g. 1:2 over a 200-segment BIG TCP skb)
/// the remaining segments are sampled by their expected count (`left / rate`;
/// all of them at 1:1). A bound the verifier needs.
pub const MAX_DRAWS_PER_SKB: u32 = 64;

/// The next skip count for 1-in-`rate` sampling from a random `r`:
/// uniform in 1..=2*rate-1 (mean `rate`); 1 for rate 1.
#[inline(always)]
pub fn next_skip(rate: u32, r: u32) -> u64 {
    let span = 2 * rate as u64 - 1;
    1 + ((r as u64 * span) >> 32)
}

/// Key of the per-interface, per-VLAN counters. `vlan` is the 802.1Q VLAN id
/// (0..=4095) of the outermost tag, whether the kernel carries it in the skb
/// metadata (offloaded) or in the frame; [`NO_VLAN`] for untagged frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfVlanKey {
    pub ifindex: u32,
    pub vlan: u32,
}

/// [`IfVlanKey::vlan`] of untagged frames.
pub const NO_VLAN: u32 = 0xffff;

/// Counters of one direction of one (interface, VLAN).
///
/// Packets are frames on the wire: an skb that carries a GSO/GRO/TSO
/// super-packet counts as the segments it is (`gso_segs`, or
/// `ceil(payload / gso_size)` when the kernel has not computed it, as for
/// GSO packets from a VM's tap or a packet socket).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounters {
    /// Every frame seen (the sFlow sample pool).
    pub packets: u64,
    /// Wire bytes: each frame from the Ethernet header on, without FCS, with
    /// VLAN tags counted whether or not the outer one was offloaded into skb
    /// metadata. For a GSO skb of N segments: `skb->len` plus N-1 copies of
    /// the per-segment headers (Ethernet and tags, IP, TCP with options or
    /// UDP), what the N frames add up to once segmented.
    pub bytes: u64,
    /// Frames with the group bit of the destination MAC set (broadcast
    /// included).
    pub multicast: u64,
    /// Frames to ff:ff:ff:ff:ff:ff.
    pub broadcast: u64,
    /// Frames chosen for sampling and written to the ring buffer (one
    /// record may carry several samples of one GSO skb: see
    /// [`SampleRecord::count`]).
    pub samples: u64,
    /// Frames chosen for sampling that did not fit into the ring buffer.
    pub sample_drops: u64,
}

impl DirCounters {
    /// Field-wise sum (for per-CPU values and totals over VLANs).
    pub fn add(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.multicast += o.multicast;
        self.broadcast += o.broadcast;
        self.samples += o.samples;
        self.sample_drops += o.sample_drops;
    }
}

/// Value of `IF_COUNTERS`: both directions of one (interface, VLAN).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfVlanCounters {
    /// Received (TC ingress).
    pub rx: DirCounters,
    /// Sent (TC egress).
    pub tx: DirCounters,
}

impl IfVlanCounters {
    pub fn add(&mut self, o: &Self) {
        self.rx.add(&o.rx);
        self.tx.add(&o.tx);
    }
}

/// Value of `SUBNET_COUNTERS`, per configured subnet (slot).
///
/// `to_*` counts IP packets whose destination is in the subnet, `from_*`
/// those whose source is; a packet between two configured subnets counts in
/// both. Every hook a packet passes counts it (as interface counters do).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubnetCounters {
    pub to_packets: u64,
    pub to_bytes: u64,
    pub from_packets: u64,
    pub from_bytes: u64,
}

impl SubnetCounters {
    pub fn add(&mut self, o: &Self) {
        self.to_packets += o.to_packets;
        self.to_bytes += o.to_bytes;
        self.from_packets += o.from_packets;
        self.from_bytes += o.from_bytes;
    }
}

/// One sampled skb, as written into the `SAMPLES` ring buffer: `count`
/// samples (frames) taken among its segments.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SampleRecord {
    pub ifindex: u32,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u32,
    /// As [`IfVlanKey::vlan`].
    pub vlan: u32,
    /// Wire length (as in [`DirCounters::bytes`]) of a full-size segment of
    /// the skb; of the frame itself when it is not GSO.
    pub frame_len: u32,
    /// Valid bytes at the start of `header`.
    pub header_len: u32,
    /// 802.1p priority from the VLAN tag (0 when untagged).
    pub priority: u16,
    /// 1 when the VLAN tag was in the skb metadata (offloaded), not in
    /// `header`: userspace puts it back into the header it exports.
    pub tag_offloaded: u16,
    /// Samples (frames) this record stands for: segments of the skb the
    /// per-CPU countdown stopped at. 1 for an skb that is not GSO.
    pub count: u32,
    /// Wire length of the skb's last segment (shorter than `frame_len` when
    /// the payload does not divide evenly).
    pub last_frame_len: u32,
    /// 1 when the last segment is among the `count` sampled ones (one of
    /// the samples then has `last_frame_len`).
    pub last_sampled: u32,
    /// Segments of the skb (1 when not GSO).
    pub segments: u32,
    /// Index of the first sampled segment (0-based).
    pub first_segment: u32,
    /// The first bytes of the skb (the first segment's headers).
    pub header: [u8; MAX_HEADER_BYTES],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): `repr(C)`, `Copy`, plain integers and byte arrays, no
    // padding (checked by the layout tests in hostd-telemetry).
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::IfVlanKey {}
    unsafe impl aya::Pod for super::DirCounters {}
    unsafe impl aya::Pod for super::IfVlanCounters {}
    unsafe impl aya::Pod for super::SubnetCounters {}
    unsafe impl aya::Pod for super::SampleRecord {}
    unsafe impl aya::Pod for super::SubnetTableMeta {}
    unsafe impl aya::Pod for super::BucketV4 {}
    unsafe impl aya::Pod for super::BucketV6 {}
}
