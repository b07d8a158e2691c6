//! eBPF programs hostd attaches to the interfaces it manages (TC ingress and
//! egress, through TCX where the kernel has it and clsact otherwise).
//!
//! For every frame, [`programs::telemetry_ingress`] and
//! [`programs::telemetry_egress`]:
//!
//! 1. add it to the per-CPU counters of its (interface, VLAN) and direction:
//!    packets, bytes, multicast, broadcast (`IF_COUNTERS`);
//! 2. for IPv4/IPv6, look its source and destination up in the LPM tries of
//!    configured subnets and add it to the per-CPU counters of the matching
//!    slots (`SUBNET_COUNTERS`);
//! 3. 1 in N on average (a per-CPU countdown of random skips drawn with
//!    `bpf_get_prandom_u32`, mean N), copy the first `CONFIG.header_bytes`
//!    bytes into the `SAMPLES` ring buffer, and count the sample, or the drop
//!    when the ring buffer is full.
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
        next_skip, Config, DirCounters, IfVlanCounters, IfVlanKey, SampleRecord, SubnetCounters,
        DIR_EGRESS, DIR_INGRESS, FLAG_SUBNETS_V4, FLAG_SUBNETS_V6, MAX_HEADER_BYTES, NO_VLAN,
    };

    /// "Continue with the next program / default action" in both clsact and TCX.
    const TC_ACT_UNSPEC: i32 = -1;

    const ETH_P_IP: u16 = 0x0800;
    const ETH_P_IPV6: u16 = 0x86dd;
    const ETH_P_8021Q: u16 = 0x8100;
    const ETH_P_8021AD: u16 = 0x88a8;
    const ETH_HLEN: usize = 14;
    const VLAN_HLEN: u32 = 4;

    // Sizes below are defaults; the loader sets the real ones at load time
    // (`EbpfLoader::set_max_entries`).

    #[map]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[map]
    static IF_COUNTERS: PerCpuHashMap<IfVlanKey, IfVlanCounters> =
        PerCpuHashMap::with_max_entries(4096, 0);

    #[map]
    static SUBNETS_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1024, 0);

    #[map]
    static SUBNETS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1024, 0);

    #[map]
    static SUBNET_COUNTERS: PerCpuArray<SubnetCounters> = PerCpuArray::with_max_entries(1024, 0);

    /// Per CPU: packets left before the next sample.
    #[map]
    static SKIP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    #[map]
    static SAMPLES: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

    #[inline(always)]
    fn handle(ctx: &TcContext, dir: u32) -> i32 {
        let Some(cfg) = CONFIG.get(0) else {
            return TC_ACT_UNSPEC;
        };
        let skb = ctx.skb.skb;
        // SAFETY: `skb` is the context pointer the kernel passed in; these
        // __sk_buff fields are readable by TC programs.
        let (ifindex, vlan_present, tci) =
            unsafe { ((*skb).ifindex, (*skb).vlan_present, (*skb).vlan_tci) };

        // Ethernet header: destination MAC (6), source MAC (6), EtherType,
        // and the next 4 bytes (a VLAN tag's TCI and inner EtherType).
        // Direct packet access when the bytes are in the linear area (no
        // helper call), `bpf_skb_load_bytes` otherwise.
        let eth: [u8; 18] = match read::<[u8; 18]>(ctx, 0) {
            Some(v) => v,
            None => ctx.load(0).unwrap_or([0; 18]),
        };
        let outer_type = u16::from_be_bytes([eth[12], eth[13]]);
        let mut len = ctx.len();
        let (vlan, priority, offloaded, l3_off, ethertype) = if vlan_present != 0 {
            // Tag in skb metadata: count it as on the wire.
            len += VLAN_HLEN;
            (tci & 0x0fff, (tci >> 13) & 7, 1u16, ETH_HLEN, outer_type)
        } else if outer_type == ETH_P_8021Q || outer_type == ETH_P_8021AD {
            let tci = u32::from(u16::from_be_bytes([eth[14], eth[15]]));
            let inner = u16::from_be_bytes([eth[16], eth[17]]);
            (tci & 0x0fff, (tci >> 13) & 7, 0u16, ETH_HLEN + 4, inner)
        } else {
            (NO_VLAN, 0, 0u16, ETH_HLEN, outer_type)
        };

        // Per (interface, VLAN) counters; the first frame of a new pair
        // creates the entry (another CPU may race us: NOEXIST, look up again).
        let key = IfVlanKey { ifindex, vlan };
        let counters = match IF_COUNTERS.get_ptr_mut(&key) {
            Some(p) => p,
            None => {
                let _ =
                    IF_COUNTERS.insert(&key, &IfVlanCounters::default(), u64::from(BPF_NOEXIST));
                match IF_COUNTERS.get_ptr_mut(&key) {
                    Some(p) => p,
                    // Map full: nothing to count into.
                    None => return TC_ACT_UNSPEC,
                }
            }
        };
        // SAFETY: per-CPU value of this CPU, valid for the program's run.
        let d: &mut DirCounters = unsafe {
            if dir == DIR_INGRESS {
                &mut (*counters).rx
            } else {
                &mut (*counters).tx
            }
        };
        d.packets += 1;
        d.bytes += u64::from(len);
        if eth[0] & 1 != 0 {
            d.multicast += 1;
            if eth[..6] == [0xff; 6] {
                d.broadcast += 1;
            }
        }

        if cfg.flags & FLAG_SUBNETS_V4 != 0 && ethertype == ETH_P_IP {
            // Source and destination addresses, at 12..20 of the IPv4 header.
            if let Some(addrs) =
                read::<[u8; 8]>(ctx, l3_off + 12).or_else(|| ctx.load(l3_off + 12).ok())
            {
                let src = SUBNETS_V4.get(Key::new(32, [addrs[0], addrs[1], addrs[2], addrs[3]]));
                let dst = SUBNETS_V4.get(Key::new(32, [addrs[4], addrs[5], addrs[6], addrs[7]]));
                count_subnets(src.copied(), dst.copied(), len);
            }
        } else if cfg.flags & FLAG_SUBNETS_V6 != 0 && ethertype == ETH_P_IPV6 {
            // Source and destination addresses, at 8..40 of the IPv6 header.
            if let Some(addrs) =
                read::<[[u8; 16]; 2]>(ctx, l3_off + 8).or_else(|| ctx.load(l3_off + 8).ok())
            {
                let src = SUBNETS_V6.get(Key::new(128, addrs[0]));
                let dst = SUBNETS_V6.get(Key::new(128, addrs[1]));
                count_subnets(src.copied(), dst.copied(), len);
            }
        }

        if cfg.sampling_rate != 0 {
            if let Some(skip) = SKIP.get_ptr_mut(0) {
                // SAFETY: this CPU's slot; the helper takes no arguments.
                unsafe {
                    // 0: first packet on this CPU since the rate was set.
                    if *skip == 0 {
                        *skip = next_skip(cfg.sampling_rate, bpf_get_prandom_u32());
                    }
                    if *skip > 1 {
                        *skip -= 1;
                    } else {
                        sample(ctx, cfg, d, dir, ifindex, vlan, priority, offloaded, len);
                        *skip = next_skip(cfg.sampling_rate, bpf_get_prandom_u32());
                    }
                }
            }
        }
        TC_ACT_UNSPEC
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

    #[inline(always)]
    fn count_subnets(src: Option<u32>, dst: Option<u32>, len: u32) {
        if let Some(slot) = src {
            if let Some(c) = SUBNET_COUNTERS.get_ptr_mut(slot) {
                // SAFETY: per-CPU value of this CPU.
                unsafe {
                    (*c).from_packets += 1;
                    (*c).from_bytes += u64::from(len);
                }
            }
        }
        if let Some(slot) = dst {
            if let Some(c) = SUBNET_COUNTERS.get_ptr_mut(slot) {
                // SAFETY: per-CPU value of this CPU.
                unsafe {
                    (*c).to_packets += 1;
                    (*c).to_bytes += u64::from(len);
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
        frame_len: u32,
    ) {
        let Some(mut entry) = SAMPLES.reserve::<SampleRecord>(0) else {
            d.sample_drops += 1;
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
            (*rec).frame_len = frame_len;
            (*rec).header_len = n;
            (*rec).priority = priority as u16;
            (*rec).tag_offloaded = offloaded;
            bpf_skb_load_bytes(skb_ptr(ctx), 0, (*rec).header.as_mut_ptr().cast(), n)
        };
        if ret != 0 {
            entry.discard(0);
            d.sample_drops += 1;
            return;
        }
        entry.submit(0);
        d.samples += 1;
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
