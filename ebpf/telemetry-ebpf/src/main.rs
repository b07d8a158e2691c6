//! eBPF programs hostd attaches to the interfaces it manages (TC ingress and
//! egress, through TCX where the kernel has it and clsact otherwise).
//!
//! For every skb, [`programs::telemetry_ingress`] and
//! [`programs::telemetry_egress`] count what it is on the wire: a GSO/GRO
//! super-packet of N segments is N frames (`gso_segs`, or
//! `ceil(payload / gso_size)` when the kernel has not counted them yet) and
//! its wire bytes are `skb->len` plus N-1 copies of the per-segment headers
//! (Ethernet and VLAN tags, IP, TCP with options or UDP). Then they:
//!
//! 1. add it to the per-CPU counters of its (interface, outer VLAN) and
//!    direction: packets, bytes, multicast, broadcast (`IF_COUNTERS`); when
//!    that map is full, to the interface's overflow counters (`IF_MISSES`;
//!    `LOST` should that be full too), so nothing goes uncounted;
//! 2. for IPv4/IPv6 (untagged, one tag or QinQ, the outer tag in the frame
//!    or offloaded), find the longest configured prefix of its source and of
//!    its destination and add it to the per-CPU counters of their slots
//!    (`SUBNET_COUNTERS`): for each configured prefix length, longest first,
//!    the address masked to it is looked up in a two-choice cuckoo hash
//!    table built by the loader (`SUBNET_TABLE_V4`/`V6`, at most two bucket
//!    reads per length, inlined array lookups); with more than
//!    `MAX_PREFIX_LENGTHS` distinct lengths, in the LPM trie (`SUBNETS_V4`/
//!    `V6`) instead;
//! 3. sample 1 in N frames on average: a per-CPU countdown of random skips
//!    (`bpf_get_prandom_u32`, mean N) runs through the skb's segments, each
//!    one chance to be sampled; the skb's first `CONFIG.header_bytes` bytes
//!    go into the `SAMPLES` ring buffer once, with the number of samples
//!    taken among its segments, and the samples (or drops, ring buffer full)
//!    are counted.
//!
//! They never drop or alter traffic: they only read the packet and always
//! return `TC_ACT_UNSPEC` (`TCX_NEXT` under TCX), so the next program or the
//! default action decides. Map layouts are in `telemetry-common`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::BPF_NOEXIST,
        helpers::{bpf_get_prandom_u32, bpf_skb_load_bytes},
        macros::{classifier, map},
        maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray, PerCpuHashMap, RingBuf},
        programs::TcContext,
    };
    use telemetry_common::{
        buckets_of, key_v4, key_v6, next_skip, BucketV4, BucketV6, Config, DirCounters,
        IfVlanCounters, IfVlanKey, SampleRecord, SubnetCounters, SubnetTableMeta, DIR_EGRESS,
        DIR_INGRESS, FLAG_SUBNETS_V4, FLAG_SUBNETS_V6, MAX_DRAWS_PER_SKB, MAX_HEADER_BYTES,
        MAX_PREFIX_LENGTHS, NO_VLAN, SUBNET_MODE_TRIE,
    };

    /// "Continue with the next program / default action" in both clsact and TCX.
    const TC_ACT_UNSPEC: i32 = -1;

    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86dd;
    const ETH_P_8021Q: u16 = 0x8100;
    const ETH_P_8021AD: u16 = 0x88a8;
    const ETH_HLEN: usize = 14;
    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;
    const VLAN_HLEN: u32 = 4;

    // Sizes below are defaults; the loader sets the real ones at load time
    // (`EbpfLoader::set_max_entries`).

    #[map]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[map]
    static IF_COUNTERS: PerCpuHashMap<IfVlanKey, IfVlanCounters> =
        PerCpuHashMap::with_max_entries(4096, 0);

    /// Per interface: packets IF_COUNTERS had no room for (map full).
    #[map]
    static IF_MISSES: PerCpuHashMap<u32, IfVlanCounters> = PerCpuHashMap::with_max_entries(1024, 0);

    /// Packets neither IF_COUNTERS nor IF_MISSES had room for.
    #[map]
    static LOST: PerCpuArray<IfVlanCounters> = PerCpuArray::with_max_entries(1, 0);

    #[map]
    static SUBNETS_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1024, 0);

    #[map]
    static SUBNETS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1024, 0);

    /// Two generations of the lookup parameters ([`SubnetTableMeta`]);
    /// `CONFIG.subnet_gen` says which one is live.
    #[map]
    static SUBNET_META: Array<SubnetTableMeta> = Array::with_max_entries(2, 0);

    /// Both generations' buckets (the loader sizes them).
    #[map]
    static SUBNET_TABLE_V4: Array<BucketV4> = Array::with_max_entries(2 * 1024, 0);

    #[map]
    static SUBNET_TABLE_V6: Array<BucketV6> = Array::with_max_entries(2 * 1024, 0);

    #[map]
    static SUBNET_COUNTERS: PerCpuArray<SubnetCounters> = PerCpuArray::with_max_entries(1024, 0);

    /// One all-zero [`IfVlanCounters`] (never written): the initial value
    /// of new counter entries.
    #[map]
    static ZERO: Array<IfVlanCounters> = Array::with_max_entries(1, 0);

    /// Per CPU: packets left before the next sample.
    #[map]
    static SKIP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    #[map]
    static SAMPLES: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

    /// What one skb stands for on the wire.
    struct Wire {
        /// Frames (GSO segments; 1 when not GSO).
        segs: u32,
        /// Bytes of all of them.
        bytes: u64,
        /// Length of a full-size segment (the frame when not GSO).
        full_len: u32,
        /// Length of the last segment.
        last_len: u32,
    }

    #[inline(always)]
    fn is_vlan(ethertype: u16) -> bool {
        ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
    }

    #[inline(always)]
    fn handle(ctx: &TcContext, dir: u32) -> i32 {
        let Some(cfg) = CONFIG.get(0) else {
            return TC_ACT_UNSPEC;
        };
        let skb = ctx.skb.skb;
        // SAFETY: `skb` is the context pointer the kernel passed in; these
        // __sk_buff fields are readable by TC programs (gso_segs since 4.20,
        // gso_size since 5.7).
        let (ifindex, vlan_present, tci, gso_segs, gso_size) = unsafe {
            (
                (*skb).ifindex,
                (*skb).vlan_present,
                (*skb).vlan_tci,
                (*skb).gso_segs,
                (*skb).gso_size,
            )
        };

        // Ethernet header: destination MAC (6), source MAC (6), EtherType,
        // then room for two VLAN tags (TCI and next EtherType each). Direct
        // packet access when the bytes are in the linear area (no helper
        // call), `bpf_skb_load_bytes` otherwise; frames shorter than 22
        // bytes (no tags then) are read in their first 14.
        let eth: [u8; 22] = match read::<[u8; 22]>(ctx, 0) {
            Some(v) => v,
            None => match ctx.load::<[u8; 22]>(0) {
                Ok(v) => v,
                Err(_) => {
                    let mut v = [0u8; 22];
                    if let Ok(h) = ctx.load::<[u8; 14]>(0) {
                        v[..14].copy_from_slice(&h);
                    }
                    v
                }
            },
        };
        let outer_type = u16::from_be_bytes([eth[12], eth[13]]);
        let len = ctx.len();
        // The outer tag (the counters' key) and where the IP header starts.
        // Up to two tags are parsed: 802.1ad (or 802.1Q) outer plus 802.1Q
        // inner (QinQ), each in the frame or, for the outer one, in skb
        // metadata (the kernel takes it out of received frames).
        let (vlan, priority, offloaded, mut l3_off, mut ethertype) = if vlan_present != 0 {
            (tci & 0x0fff, (tci >> 13) & 7, 1u16, ETH_HLEN, outer_type)
        } else if is_vlan(outer_type) {
            let tci = u32::from(u16::from_be_bytes([eth[14], eth[15]]));
            let inner = u16::from_be_bytes([eth[16], eth[17]]);
            (tci & 0x0fff, (tci >> 13) & 7, 0u16, ETH_HLEN + 4, inner)
        } else {
            (NO_VLAN, 0, 0u16, ETH_HLEN, outer_type)
        };
        if is_vlan(ethertype) {
            // The inner tag (QinQ), or the first one in the frame under an
            // offloaded outer tag.
            if l3_off == ETH_HLEN {
                ethertype = u16::from_be_bytes([eth[16], eth[17]]);
                l3_off = ETH_HLEN + 4;
            } else {
                ethertype = u16::from_be_bytes([eth[20], eth[21]]);
                l3_off = ETH_HLEN + 8;
            }
        }
        // An offloaded tag is on the wire in every segment.
        let tag = if offloaded != 0 { VLAN_HLEN } else { 0 };

        // IP addresses (for subnets) and, for GSO skbs, the per-segment
        // header length: L2 + IP header + TCP header (with options) or UDP.
        let want_v4 = cfg.flags & FLAG_SUBNETS_V4 != 0;
        let want_v6 = cfg.flags & FLAG_SUBNETS_V6 != 0;
        let gso = gso_size != 0;
        let mut hdr_len = l3_off as u32;
        let mut l4: Option<(usize, u8)> = None;
        let mut v4: Option<[u8; 8]> = None;
        let mut v6: Option<[[u8; 16]; 2]> = None;
        if ethertype == ETH_P_IP && (gso || want_v4) {
            if let Some(ip) = read::<[u8; 20]>(ctx, l3_off).or_else(|| ctx.load(l3_off).ok()) {
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                hdr_len += ihl as u32;
                l4 = Some((l3_off + ihl, ip[9]));
                v4 = Some([
                    ip[12], ip[13], ip[14], ip[15], ip[16], ip[17], ip[18], ip[19],
                ]);
            }
        } else if ethertype == ETH_P_IPV6 && (gso || want_v6) {
            if let Some(ip) = read::<[u8; 40]>(ctx, l3_off).or_else(|| ctx.load(l3_off).ok()) {
                hdr_len += 40;
                // Extension headers are not walked: the L4 header is found
                // only right after the fixed header.
                l4 = Some((l3_off + 40, ip[6]));
                let mut a = [[0u8; 16]; 2];
                a[0].copy_from_slice(&ip[8..24]);
                a[1].copy_from_slice(&ip[24..40]);
                v6 = Some(a);
            }
        }
        let w = if gso {
            if let Some((off, proto)) = l4 {
                if proto == IPPROTO_TCP {
                    // Data offset: the high nibble of byte 12, in words. A
                    // helper call rather than direct access: the verifier
                    // cannot follow a bounds check on an offset that
                    // depends on packet data (the IHL) once LLVM folds it.
                    if let Ok(b) = ctx.load::<u8>(off + 12) {
                        hdr_len += u32::from(b >> 4) * 4;
                    }
                } else if proto == IPPROTO_UDP {
                    hdr_len += 8;
                }
            }
            let payload = len.saturating_sub(hdr_len);
            // gso_segs is 0 on GSO skbs the kernel has not counted yet
            // (SKB_GSO_DODGY: from a tap/virtio device or a packet socket):
            // count them as it will when segmenting.
            let segs = if gso_segs != 0 {
                gso_segs
            } else {
                payload.div_ceil(gso_size).max(1)
            };
            let seg_hdr = hdr_len + tag;
            let last_payload = payload.saturating_sub((segs - 1).wrapping_mul(gso_size));
            Wire {
                segs,
                bytes: u64::from(len + tag) + u64::from(segs - 1) * u64::from(seg_hdr),
                full_len: seg_hdr + gso_size,
                last_len: seg_hdr + last_payload.min(gso_size),
            }
        } else {
            Wire {
                segs: 1,
                bytes: u64::from(len + tag),
                full_len: len + tag,
                last_len: len + tag,
            }
        };

        // Per (interface, VLAN) counters; the first frame of a new pair
        // creates the entry. When the map is full the packet is counted per
        // interface in IF_MISSES (and, should that be full too, in LOST), so
        // interface totals, the sample pool and sampling stay exact.
        let counters = match get_or_create(&IF_COUNTERS, &IfVlanKey { ifindex, vlan }) {
            Some(p) => p,
            None => match get_or_create(&IF_MISSES, &ifindex) {
                Some(p) => p,
                None => match LOST.get_ptr_mut(0) {
                    Some(p) => p,
                    None => return TC_ACT_UNSPEC,
                },
            },
        };
        // SAFETY: per-CPU value of this CPU, valid for the program's run.
        let d: &mut DirCounters = unsafe {
            if dir == DIR_INGRESS {
                &mut (*counters).rx
            } else {
                &mut (*counters).tx
            }
        };
        let segs = u64::from(w.segs);
        d.packets += segs;
        d.bytes += w.bytes;
        if eth[0] & 1 != 0 {
            d.multicast += segs;
            if eth[..6] == [0xff; 6] {
                d.broadcast += segs;
            }
        }

        if want_v4 || want_v6 {
            // The lookups take scalars: arrays and options on the stack
            // pushed the program past BPF's 512 bytes of stack.
            let meta = SUBNET_META.get(cfg.subnet_gen & 1);
            if let (true, Some(a)) = (want_v4, v4) {
                let src = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
                let dst = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
                let (src, dst) = match meta {
                    Some(m) if m.v4_count != SUBNET_MODE_TRIE => (find_v4(m, src), find_v4(m, dst)),
                    _ => (trie_v4(src), trie_v4(dst)),
                };
                count_subnets(src, dst, segs, w.bytes);
            }
            if let (true, Some(a)) = (want_v6, v6) {
                let sh = u64::from_be_bytes([
                    a[0][0], a[0][1], a[0][2], a[0][3], a[0][4], a[0][5], a[0][6], a[0][7],
                ]);
                let sl = u64::from_be_bytes([
                    a[0][8], a[0][9], a[0][10], a[0][11], a[0][12], a[0][13], a[0][14], a[0][15],
                ]);
                let dh = u64::from_be_bytes([
                    a[1][0], a[1][1], a[1][2], a[1][3], a[1][4], a[1][5], a[1][6], a[1][7],
                ]);
                let dl = u64::from_be_bytes([
                    a[1][8], a[1][9], a[1][10], a[1][11], a[1][12], a[1][13], a[1][14], a[1][15],
                ]);
                let (src, dst) = match meta {
                    Some(m) if m.v6_count != SUBNET_MODE_TRIE => {
                        (find_v6(m, sh, sl), find_v6(m, dh, dl))
                    }
                    _ => (trie_v6(sh, sl), trie_v6(dh, dl)),
                };
                count_subnets(src, dst, segs, w.bytes);
            }
        }

        if cfg.sampling_rate != 0 {
            if let Some(skip) = SKIP.get_ptr_mut(0) {
                // SAFETY: this CPU's slot, valid for the program's run.
                let skip = unsafe { &mut *skip };
                // 0: first packet on this CPU since the rate was set.
                if *skip == 0 {
                    *skip = next_skip(cfg.sampling_rate, unsafe { bpf_get_prandom_u32() });
                }
                if *skip > segs {
                    *skip -= segs;
                } else {
                    // Each segment is one chance to be sampled, as each
                    // frame is for a switch: walk the countdown through the
                    // segments; every time it reaches zero is one sample.
                    let rate = cfg.sampling_rate;
                    let first = (*skip - 1) as u32;
                    let mut left = segs;
                    let mut count = 0u32;
                    let mut last_sampled = false;
                    let mut done = false;
                    for _ in 0..MAX_DRAWS_PER_SKB {
                        // Here *skip <= left: the segment it points at is sampled.
                        left -= *skip;
                        count += 1;
                        if left == 0 {
                            last_sampled = true;
                        }
                        *skip = next_skip(rate, unsafe { bpf_get_prandom_u32() });
                        if *skip > left {
                            *skip -= left;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        // More samples in this skb than draws allowed.
                        if rate == 1 {
                            count += left as u32;
                            last_sampled = true;
                            *skip = 1;
                        } else {
                            count += (left / u64::from(rate)) as u32;
                        }
                    }
                    let s = Sampled {
                        count,
                        first,
                        last_sampled,
                    };
                    sample(ctx, cfg, d, dir, ifindex, vlan, priority, offloaded, &w, &s);
                }
            }
        }
        TC_ACT_UNSPEC
    }

    /// The samples one skb gave.
    struct Sampled {
        count: u32,
        first: u32,
        last_sampled: bool,
    }

    /// This CPU's value for `key`, created (zeroed) if missing; `None` when
    /// the map is full. Another CPU may create it at the same time:
    /// BPF_NOEXIST, then look up again.
    #[inline(always)]
    fn get_or_create<K>(
        map: &PerCpuHashMap<K, IfVlanCounters>,
        key: &K,
    ) -> Option<*mut IfVlanCounters> {
        if let Some(p) = map.get_ptr_mut(key) {
            return Some(p);
        }
        // The zeroed value comes from a map, not the stack: two 96-byte
        // values on the stack left too little of BPF's 512 bytes.
        let zero = ZERO.get(0)?;
        let _ = map.insert(key, zero, u64::from(BPF_NOEXIST));
        map.get_ptr_mut(key)
    }

    /// `T` at `offset` of the packet by direct access, if the linear data
    /// holds it.
    #[inline(always)]
    fn read<T: Copy>(ctx: &TcContext, offset: usize) -> Option<T> {
        let start = ctx.data();
        let end = ctx.data_end();
        if start + offset + core::mem::size_of::<T>() > end {
            return None;
        }
        // SAFETY: bounds checked against data_end just above (the verifier
        // checks it too); packet data has no alignment guarantee.
        Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
    }

    /// No subnet (the lookups' "none").
    const NO_SLOT: u32 = u32::MAX;

    /// Slot of the longest configured IPv4 prefix holding `addr` (host
    /// order), or [`NO_SLOT`]: the configured lengths, longest first, each
    /// one bucket read (two when the first bucket is marked `moved`).
    #[inline(always)]
    fn find_v4(m: &SubnetTableMeta, addr: u32) -> u32 {
        for i in 0..MAX_PREFIX_LENGTHS {
            if i as u32 >= m.v4_count {
                break;
            }
            let tag = m.v4_lens[i] + 1;
            let net = addr & m.v4_masks[i];
            let (b1, b2) = buckets_of(key_v4(net, tag), m.seed, m.bucket_mask);
            let Some(b) = SUBNET_TABLE_V4.get(m.base + b1) else {
                continue;
            };
            if b.e[0].tag == tag && b.e[0].addr == net {
                return b.e[0].slot;
            }
            if b.e[1].tag == tag && b.e[1].addr == net {
                return b.e[1].slot;
            }
            if b.moved == 0 {
                continue;
            }
            if let Some(b) = SUBNET_TABLE_V4.get(m.base + b2) {
                if b.e[0].tag == tag && b.e[0].addr == net {
                    return b.e[0].slot;
                }
                if b.e[1].tag == tag && b.e[1].addr == net {
                    return b.e[1].slot;
                }
            }
        }
        NO_SLOT
    }

    /// As [`find_v4`] for an IPv6 address as two host-order halves.
    #[inline(always)]
    fn find_v6(m: &SubnetTableMeta, hi: u64, lo: u64) -> u32 {
        for i in 0..MAX_PREFIX_LENGTHS {
            if i as u32 >= m.v6_count {
                break;
            }
            let tag = m.v6_lens[i] + 1;
            let nh = hi & m.v6_masks[i][0];
            let nl = lo & m.v6_masks[i][1];
            let (b1, b2) = buckets_of(key_v6(nh, nl, tag), m.seed, m.bucket_mask);
            let Some(b) = SUBNET_TABLE_V6.get(m.base + b1) else {
                continue;
            };
            if b.e[0].tag == tag && b.e[0].hi == nh && b.e[0].lo == nl {
                return b.e[0].slot;
            }
            if b.e[1].tag == tag && b.e[1].hi == nh && b.e[1].lo == nl {
                return b.e[1].slot;
            }
            if b.moved == 0 {
                continue;
            }
            if let Some(b) = SUBNET_TABLE_V6.get(m.base + b2) {
                if b.e[0].tag == tag && b.e[0].hi == nh && b.e[0].lo == nl {
                    return b.e[0].slot;
                }
                if b.e[1].tag == tag && b.e[1].hi == nh && b.e[1].lo == nl {
                    return b.e[1].slot;
                }
            }
        }
        NO_SLOT
    }

    /// The LPM trie's answer for `addr` (host order), or [`NO_SLOT`].
    #[inline(always)]
    fn trie_v4(addr: u32) -> u32 {
        SUBNETS_V4
            .get(Key::new(32, addr.to_be_bytes()))
            .copied()
            .unwrap_or(NO_SLOT)
    }

    /// As [`trie_v4`] for IPv6.
    #[inline(always)]
    fn trie_v6(hi: u64, lo: u64) -> u32 {
        let h = hi.to_be_bytes();
        let l = lo.to_be_bytes();
        let a = [
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5],
            l[6], l[7],
        ];
        SUBNETS_V6.get(Key::new(128, a)).copied().unwrap_or(NO_SLOT)
    }

    #[inline(always)]
    fn count_subnets(src: u32, dst: u32, packets: u64, bytes: u64) {
        if src != NO_SLOT {
            if let Some(c) = SUBNET_COUNTERS.get_ptr_mut(src) {
                // SAFETY: per-CPU value of this CPU.
                unsafe {
                    (*c).from_packets += packets;
                    (*c).from_bytes += bytes;
                }
            }
        }
        if dst != NO_SLOT {
            if let Some(c) = SUBNET_COUNTERS.get_ptr_mut(dst) {
                // SAFETY: per-CPU value of this CPU.
                unsafe {
                    (*c).to_packets += packets;
                    (*c).to_bytes += bytes;
                }
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments, reason = "inlined helper of one program")]
    fn sample(
        ctx: &TcContext,
        cfg: &Config,
        d: &mut DirCounters,
        dir: u32,
        ifindex: u32,
        vlan: u32,
        priority: u32,
        offloaded: u16,
        w: &Wire,
        s: &Sampled,
    ) {
        let Some(mut entry) = SAMPLES.reserve::<SampleRecord>(0) else {
            d.sample_drops += u64::from(s.count);
            return;
        };
        let rec = entry.as_mut_ptr();
        // 1..=MAX_HEADER_BYTES in a form the verifier can follow (a mask,
        // not compares LLVM may reorder). Userspace keeps header_bytes in
        // 1..=256 and skb->len is never 0, so this is min(header_bytes, len).
        const _: () = assert!(MAX_HEADER_BYTES == 256);
        let n = (cfg.header_bytes.min(ctx.len()).wrapping_sub(1) & 0xff) + 1;
        // SAFETY: `rec` points to a reserved, writable record; `n` is in
        // 1..=MAX_HEADER_BYTES, the size of `header`.
        let ret = unsafe {
            (*rec).ifindex = ifindex;
            (*rec).direction = dir;
            (*rec).vlan = vlan;
            (*rec).frame_len = w.full_len;
            (*rec).header_len = n;
            (*rec).priority = priority as u16;
            (*rec).tag_offloaded = offloaded;
            (*rec).count = s.count;
            (*rec).last_frame_len = w.last_len;
            (*rec).last_sampled = u32::from(s.last_sampled);
            (*rec).segments = w.segs;
            (*rec).first_segment = s.first;
            bpf_skb_load_bytes(skb_ptr(ctx), 0, (*rec).header.as_mut_ptr().cast(), n)
        };
        if ret != 0 {
            entry.discard(0);
            d.sample_drops += u64::from(s.count);
            return;
        }
        entry.submit(0);
        d.samples += u64::from(s.count);
    }

    #[inline(always)]
    fn skb_ptr(ctx: &TcContext) -> *const core::ffi::c_void {
        ctx.skb.skb.cast()
    }

    #[classifier]
    pub fn telemetry_ingress(ctx: TcContext) -> i32 {
        handle(&ctx, DIR_INGRESS)
    }

    #[classifier]
    pub fn telemetry_egress(ctx: TcContext) -> i32 {
        handle(&ctx, DIR_EGRESS)
    }

    /// Benchmark baseline: the cost of running any TC program.
    #[classifier]
    pub fn telemetry_noop(_ctx: TcContext) -> i32 {
        TC_ACT_UNSPEC
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// Host builds (clippy, `cargo test --workspace`) compile this file as an
/// ordinary binary that does nothing; the real object is built for
/// `bpfel-unknown-none` by hostd-telemetry's build script.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
