//! Loading, attaching and detaching the TC programs, and reading their maps.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
    },
    programs::{
        tc::{self, TcError},
        SchedClassifier, TcAttachType,
    },
    Ebpf, EbpfLoader,
};
use ipnet::IpNet;
use telemetry_common::{
    maps, programs, Config, DirCounters, IfVlanCounters, IfVlanKey, SubnetCounters,
    SubnetTableMeta, DEFAULT_HEADER_BYTES, FLAG_SUBNETS_V4, FLAG_SUBNETS_V6, MAX_HEADER_BYTES,
};

use crate::subnet_table::{self, SubnetLookup, SubnetTables};

/// The eBPF object built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telemetry-ebpf"));

/// The maps pinned with [`LoadOptions::pin_dir`]: every counter and the
/// subnet tries (their slots index the subnet counters).
const PINNED_MAPS: [&str; 6] = [
    maps::IF_COUNTERS,
    maps::IF_MISSES,
    maps::LOST,
    maps::SUBNET_COUNTERS,
    maps::SUBNETS_V4,
    maps::SUBNETS_V6,
];

/// Where hostd pins its counter maps by default, so that counters survive a
/// restart of hostd and stay monotonic for sFlow collectors.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/hostd";

/// Errors from loading, attaching or reading the telemetry programs.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("loading the eBPF object failed")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("map {name} is missing from the eBPF object (or was taken)")]
    MissingMap { name: &'static str },
    #[error("program {name} failed to load into the kernel")]
    Program {
        name: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {name} to {interface} ({direction}) failed")]
    Attach {
        name: &'static str,
        interface: String,
        direction: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("detaching {name} from {interface} failed")]
    Detach {
        name: &'static str,
        interface: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("removing a stale {name} filter from {interface} failed")]
    Stale {
        name: &'static str,
        interface: String,
        #[source]
        source: Box<TcError>,
    },
    #[error(
        "{name} is still attached to {interface} through TCX by another owner \
         (a pinned link?); refusing to attach twice (it would double count)"
    )]
    AlreadyAttached {
        name: &'static str,
        interface: String,
    },
    #[error("interface {interface} is not attached")]
    NotAttached { interface: String },
    #[error("interface {interface} not found in this network namespace")]
    NoInterface {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {value} {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> TelemetryError {
    move |source| TelemetryError::Map {
        name,
        source: Box::new(source),
    }
}

/// Sizes the maps as `opts` asks (both loaders: the agent's and the
/// benchmarks' raw object).
fn sized<'a, 'b>(loader: &'a mut EbpfLoader<'b>, opts: &LoadOptions) -> &'a mut EbpfLoader<'b> {
    loader
        .map_max_entries(maps::IF_COUNTERS, opts.max_if_vlans)
        .map_max_entries(maps::IF_MISSES, opts.max_interfaces)
        .map_max_entries(maps::SUBNETS_V4, opts.max_subnets)
        .map_max_entries(maps::SUBNETS_V6, opts.max_subnets)
        .map_max_entries(maps::SUBNET_COUNTERS, opts.max_subnets)
        .map_max_entries(
            maps::SUBNET_TABLE_V4,
            2 * subnet_table::buckets_for(opts.max_subnets),
        )
        .map_max_entries(
            maps::SUBNET_TABLE_V6,
            2 * subnet_table::buckets_for(opts.max_subnets),
        )
        .map_max_entries(maps::SAMPLES, opts.ring_bytes)
}

/// Writes the buckets of one generation of a subnet table (`base` is the
/// generation's first index): every one when `all`, else only those that
/// differ from `old`, what the generation held.
fn write_buckets<B: aya::Pod + PartialEq + Default>(
    ebpf: &mut Ebpf,
    name: &'static str,
    base: u32,
    new: &[B],
    old: Option<&[B]>,
    all: bool,
) -> Result<(), TelemetryError> {
    let map = ebpf
        .map_mut(name)
        .ok_or(TelemetryError::MissingMap { name })?;
    let mut a: Array<_, B> = Array::try_from(map).map_err(map_err(name))?;
    for (i, b) in new.iter().enumerate() {
        let was = old.and_then(|o| o.get(i)).copied().unwrap_or_default();
        if all || *b != was {
            a.set(base + i as u32, *b, 0).map_err(map_err(name))?;
        }
    }
    Ok(())
}

/// skb metadata for [`Telemetry::test_run_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestSkb {
    /// The device the skb is on (0: the loopback device, as without a
    /// context).
    pub ifindex: u32,
    /// `skb_shinfo(skb)->gso_segs` (0 with a non-zero `gso_size`: not yet
    /// counted, as for SKB_GSO_DODGY skbs).
    pub gso_segs: u32,
    /// `skb_shinfo(skb)->gso_size` (0: not GSO).
    pub gso_size: u32,
}

impl TestSkb {
    /// A `struct __sk_buff` (as the kernel's UAPI lays it out) with these
    /// fields set and the rest zero: the only fields the kernel's test run
    /// accepts non-zero are these, mark, priority, cb, tstamp, wire_len and
    /// hwtstamp.
    fn to_ctx(self) -> Vec<u8> {
        // Offsets in `struct __sk_buff` (include/uapi/linux/bpf.h), the same
        // on every architecture: ifindex 40, gso_segs 164, gso_size 176;
        // the struct is 192 bytes since 5.16 (hwtstamp), and older kernels
        // accept a longer context as long as the tail is zero.
        let mut ctx = vec![0u8; 192];
        ctx[40..44].copy_from_slice(&self.ifindex.to_ne_bytes());
        ctx[164..168].copy_from_slice(&self.gso_segs.to_ne_bytes());
        ctx[176..180].copy_from_slice(&self.gso_size.to_ne_bytes());
        ctx
    }
}

/// How the programs were attached: TCX links (kernel >= 6.6) or netlink
/// filters under a clsact qdisc (older kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    Clsact,
}

/// Sizes and pinning, fixed at load time.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Pin the counter maps (`IF_COUNTERS`, `IF_MISSES`, `LOST`,
    /// `SUBNET_COUNTERS`, `SUBNETS_V4`, `SUBNETS_V6`) here, and reuse them when already pinned: counters then
    /// survive a restart. Must be on a bpffs mount. `None`: no pinning.
    pub pin_dir: Option<PathBuf>,
    /// Capacity of the per-(interface, VLAN) counter map. Packets of pairs
    /// beyond it are still counted per interface ([`Telemetry::unattributed_counters`]).
    pub max_if_vlans: u32,
    /// Capacity of the per-interface overflow counters (`IF_MISSES`):
    /// interfaces whose packets can be counted when the per-VLAN map is
    /// full. Beyond it, packets are counted in `LOST` ([`Telemetry::lost_counters`]).
    pub max_interfaces: u32,
    /// Capacity of the subnet tries and counters (slots).
    pub max_subnets: u32,
    /// Size of the sample ring buffer in bytes (a power of two, multiple of
    /// the page size).
    pub ring_bytes: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pin_dir: None,
            max_if_vlans: 4096,
            max_interfaces: 1024,
            max_subnets: 1024,
            ring_bytes: 1 << 20,
        }
    }
}

/// One attached interface.
#[derive(Debug)]
struct Attached {
    ifindex: u32,
    ingress: aya::programs::tc::SchedClassifierLinkId,
    egress: aya::programs::tc::SchedClassifierLinkId,
}

/// Loaded telemetry programs. Dropping it detaches everything it attached
/// (TCX links are closed, clsact filters deleted).
pub struct Telemetry {
    ebpf: Ebpf,
    mode: AttachMode,
    attached: BTreeMap<String, Attached>,
    config: Config,
    subnets: Vec<IpNet>,
    max_subnets: u32,
    /// Buckets per generation of the subnet hash tables.
    buckets: u32,
    /// What each generation of the table maps holds (`None`: zeroes, as
    /// created), so a change rewrites only the buckets that differ.
    written: [Option<SubnetTables>; 2],
    /// A write into that generation failed half-way: rewrite all of it.
    stale: [bool; 2],
    /// Look every family up in its trie (benchmarks).
    trie_only: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("mode", &self.mode)
            .field("attached", &self.attached)
            .field("config", &self.config)
            .field("subnets", &self.subnets)
            .finish_non_exhaustive()
    }
}

const DIRECTIONS: [(&str, TcAttachType, &str); 2] = [
    (programs::INGRESS, TcAttachType::Ingress, "ingress"),
    (programs::EGRESS, TcAttachType::Egress, "egress"),
];

impl Telemetry {
    /// Loads with [`LoadOptions::default`] (no pinning).
    pub fn load() -> Result<Self, TelemetryError> {
        Self::load_with(&LoadOptions::default())
    }

    /// Loads the embedded object and both classifier programs into the
    /// kernel. Sampling starts off; subnets start empty.
    pub fn load_with(opts: &LoadOptions) -> Result<Self, TelemetryError> {
        let mut loader = EbpfLoader::new();
        sized(&mut loader, opts);
        let pins: Vec<(&'static str, PathBuf)> = match &opts.pin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| TelemetryError::PinDir {
                    path: dir.clone(),
                    source,
                })?;
                PINNED_MAPS.into_iter().map(|m| (m, dir.join(m))).collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| TelemetryError::Load(Box::new(e)))?;
        for name in [programs::INGRESS, programs::EGRESS] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| TelemetryError::Program {
                    name,
                    source: Box::new(source),
                })?;
        }
        // aya attaches with TCX from 6.6 on and with netlink (clsact) before.
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let mode = if tcx {
            AttachMode::Tcx
        } else {
            AttachMode::Clsact
        };
        let mut t = Self {
            ebpf,
            mode,
            attached: BTreeMap::new(),
            config: Config {
                sampling_rate: 0,
                subnet_gen: 0,
                header_bytes: DEFAULT_HEADER_BYTES,
                flags: 0,
            },
            subnets: Vec::new(),
            max_subnets: opts.max_subnets,
            buckets: subnet_table::buckets_for(opts.max_subnets),
            written: [None, None],
            stale: [false, false],
            trie_only: false,
        };
        // Subnets already in pinned tries (hostd restarted): keep their slots
        // until `set_subnets` says otherwise.
        t.subnets = t.pinned_subnets()?;
        t.config.flags = subnet_flags(&t.subnets);
        // The hash tables are not pinned: rebuilt from the tries.
        let slots = t.slots()?;
        t.publish_tables(&slots)?;
        tracing::info!(
            ?mode,
            pinned = opts.pin_dir.is_some(),
            "telemetry programs loaded"
        );
        Ok(t)
    }

    /// Loads the embedded object without loading any program into the
    /// kernel, for benchmarks that load single programs themselves.
    pub fn raw_object(opts: &LoadOptions) -> Result<Ebpf, TelemetryError> {
        sized(&mut EbpfLoader::new(), opts)
            .load(OBJECT)
            .map_err(|e| TelemetryError::Load(Box::new(e)))
    }

    /// How [`Telemetry::attach`] hooks interfaces on this kernel.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Samples 1 in `rate` packets (0: off), copying `header_bytes`
    /// (1..=256) of each.
    pub fn set_sampling(&mut self, rate: u32, header_bytes: u32) -> Result<(), TelemetryError> {
        if header_bytes == 0 || header_bytes as usize > MAX_HEADER_BYTES {
            return Err(TelemetryError::Invalid {
                what: "header_bytes",
                value: header_bytes.to_string(),
                reason: format!("is outside 1..={MAX_HEADER_BYTES}"),
            });
        }
        self.config.sampling_rate = rate;
        self.config.header_bytes = header_bytes;
        self.write_config()?;
        // Restart every CPU's countdown with the new rate.
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| TelemetryError::Map {
            name: maps::SKIP,
            source: Box::new(aya::maps::MapError::IoError(source)),
        })?;
        let zero =
            PerCpuValues::try_from(vec![0u64; cpus]).map_err(|source| TelemetryError::Map {
                name: maps::SKIP,
                source: Box::new(aya::maps::MapError::IoError(source)),
            })?;
        let map = self
            .ebpf
            .map_mut(maps::SKIP)
            .ok_or(TelemetryError::MissingMap { name: maps::SKIP })?;
        let mut skip: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(map_err(maps::SKIP))?;
        skip.set(0, zero, 0).map_err(map_err(maps::SKIP))
    }

    /// The subnets counted, in slot order.
    pub fn subnets(&self) -> &[IpNet] {
        &self.subnets
    }

    /// Makes `subnets` the counted subnets. A subnet that was configured
    /// before keeps its slot and its counters (also across a restart with
    /// pinned maps); a new one gets a free slot with zeroed counters; removed
    /// ones leave the tries.
    pub fn set_subnets(&mut self, subnets: &[IpNet]) -> Result<(), TelemetryError> {
        if subnets.len() > self.max_subnets as usize {
            return Err(TelemetryError::Invalid {
                what: "subnets",
                value: subnets.len().to_string(),
                reason: format!("exceeds the capacity of {} subnets", self.max_subnets),
            });
        }
        let wanted: Vec<IpNet> = subnets.iter().map(IpNet::trunc).collect();
        // Current slots: keep those still wanted.
        let current = self.slots()?;
        let mut used = vec![false; self.max_subnets as usize];
        let mut assigned: BTreeMap<IpNet, u32> = BTreeMap::new();
        for (net, slot) in &current {
            if wanted.contains(net) {
                if let Some(u) = used.get_mut(*slot as usize) {
                    *u = true;
                    assigned.insert(*net, *slot);
                }
            } else {
                self.trie_remove(net)?;
            }
        }
        let mut free = (0..self.max_subnets).filter(|s| !used[*s as usize]);
        for net in &wanted {
            if assigned.contains_key(net) {
                continue;
            }
            let Some(slot) = free.next() else {
                return Err(TelemetryError::Invalid {
                    what: "subnets",
                    value: net.to_string(),
                    reason: "no free slot".to_owned(),
                });
            };
            let zero = self.zero_subnet_values()?;
            self.subnet_counters_map_mut()?
                .set(slot, zero, 0)
                .map_err(map_err(maps::SUBNET_COUNTERS))?;
            self.trie_insert(net, slot)?;
            assigned.insert(*net, slot);
        }
        // Slot order is stable: sort by slot.
        let mut by_slot: Vec<(u32, IpNet)> = assigned.into_iter().map(|(n, s)| (s, n)).collect();
        by_slot.sort();
        let slots: BTreeMap<IpNet, u32> = by_slot.iter().map(|(s, n)| (*n, *s)).collect();
        self.subnets = by_slot.into_iter().map(|(_, n)| n).collect();
        self.config.flags = subnet_flags(&self.subnets);
        self.publish_tables(&slots)?;
        tracing::info!(
            count = self.subnets.len(),
            lookup = ?self.subnet_lookup(),
            "telemetry subnets set"
        );
        Ok(())
    }

    /// How the programs look up (IPv4, IPv6) addresses for the configured
    /// subnets.
    pub fn subnet_lookup(&self) -> (SubnetLookup, SubnetLookup) {
        match &self.written[(self.config.subnet_gen & 1) as usize] {
            Some(t) => (t.lookup_v4(), t.lookup_v6()),
            None => (SubnetLookup::None, SubnetLookup::None),
        }
    }

    /// `true`: look every address up in the LPM tries, as before the hash
    /// tables (to compare the two in one benchmark run); `false` (the
    /// default): hash tables where they apply.
    pub fn set_trie_only(&mut self, on: bool) -> Result<(), TelemetryError> {
        self.trie_only = on;
        let slots = self.slots()?;
        self.publish_tables(&slots)
    }

    /// Builds the hash tables for `slots` into the generation the programs
    /// do not use, then switches `CONFIG` to it (with the subnet flags): a
    /// packet sees either the old tables or the new ones, never a mix.
    fn publish_tables(&mut self, slots: &BTreeMap<IpNet, u32>) -> Result<(), TelemetryError> {
        let list: Vec<(IpNet, u32)> = slots.iter().map(|(n, s)| (*n, *s)).collect();
        let next = (self.config.subnet_gen ^ 1) & 1;
        let base = next * self.buckets;
        let mut tables = subnet_table::build(&list, self.buckets, self.trie_only);
        tables.meta.base = base;
        let old = self.written[next as usize].take();
        let old = if self.stale[next as usize] { None } else { old };
        let all = self.stale[next as usize];
        // Until every write below succeeded, this generation's content is
        // unknown.
        self.stale[next as usize] = true;
        write_buckets(
            &mut self.ebpf,
            maps::SUBNET_TABLE_V4,
            base,
            &tables.v4,
            old.as_ref().map(|o| o.v4.as_slice()),
            all,
        )?;
        write_buckets(
            &mut self.ebpf,
            maps::SUBNET_TABLE_V6,
            base,
            &tables.v6,
            old.as_ref().map(|o| o.v6.as_slice()),
            all,
        )?;
        {
            let map = self
                .ebpf
                .map_mut(maps::SUBNET_META)
                .ok_or(TelemetryError::MissingMap {
                    name: maps::SUBNET_META,
                })?;
            let mut a: Array<_, SubnetTableMeta> =
                Array::try_from(map).map_err(map_err(maps::SUBNET_META))?;
            a.set(next, tables.meta, 0)
                .map_err(map_err(maps::SUBNET_META))?;
        }
        self.written[next as usize] = Some(tables);
        self.stale[next as usize] = false;
        self.config.subnet_gen = next;
        self.write_config()
    }

    /// Attaches both directions of `interface` (resolved in the calling
    /// thread's network namespace). A filter of ours left by a previous hostd
    /// (clsact filters outlive their process) is removed first, so a packet
    /// is never counted twice.
    #[tracing::instrument(skip(self))]
    pub fn attach(&mut self, interface: &str) -> Result<(), TelemetryError> {
        if self.attached.contains_key(interface) {
            return Ok(());
        }
        let ifindex = ifindex(interface)?;
        match self.mode {
            AttachMode::Clsact => {
                // Adding clsact fails with EEXIST when it is there already: fine.
                if let Err(e) = tc::qdisc_add_clsact(interface) {
                    tracing::debug!(error = %e, "clsact qdisc not added (probably present)");
                }
                for (name, attach_type, _) in DIRECTIONS {
                    match tc::qdisc_detach_program(interface, attach_type, name) {
                        Ok(()) => {
                            tracing::warn!(name, "removed a stale filter left by a previous run")
                        }
                        Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(TelemetryError::Stale {
                                name,
                                interface: interface.to_owned(),
                                source: Box::new(source),
                            })
                        }
                    }
                }
            }
            AttachMode::Tcx => {
                // Our own TCX links die with the process that held them; one
                // still there belongs to someone who pinned it.
                for (name, attach_type, _) in DIRECTIONS {
                    if tcx_attached(interface, attach_type, name) {
                        return Err(TelemetryError::AlreadyAttached {
                            name,
                            interface: interface.to_owned(),
                        });
                    }
                }
            }
        }
        let mut links = Vec::with_capacity(2);
        for (name, attach_type, direction) in DIRECTIONS {
            let link = classifier(&mut self.ebpf, name)?
                .attach(interface, attach_type)
                .map_err(|source| TelemetryError::Attach {
                    name,
                    interface: interface.to_owned(),
                    direction,
                    source: Box::new(source),
                });
            match link {
                Ok(l) => links.push(l),
                Err(e) => {
                    // Undo the ingress half.
                    if let Some(l) = links.pop() {
                        let _ = classifier(&mut self.ebpf, programs::INGRESS).and_then(|p| {
                            p.detach(l).map_err(|source| TelemetryError::Detach {
                                name: programs::INGRESS,
                                interface: interface.to_owned(),
                                source: Box::new(source),
                            })
                        });
                    }
                    return Err(e);
                }
            }
        }
        let egress = links.pop().ok_or(TelemetryError::MissingProgram {
            name: programs::EGRESS,
        })?;
        let ingress = links.pop().ok_or(TelemetryError::MissingProgram {
            name: programs::INGRESS,
        })?;
        self.attached.insert(
            interface.to_owned(),
            Attached {
                ifindex,
                ingress,
                egress,
            },
        );
        tracing::info!(interface, ifindex, mode = ?self.mode, "telemetry attached");
        Ok(())
    }

    /// Detaches both directions of `interface`.
    #[tracing::instrument(skip(self))]
    pub fn detach(&mut self, interface: &str) -> Result<(), TelemetryError> {
        let a = self
            .attached
            .remove(interface)
            .ok_or_else(|| TelemetryError::NotAttached {
                interface: interface.to_owned(),
            })?;
        for (name, link) in [(programs::INGRESS, a.ingress), (programs::EGRESS, a.egress)] {
            classifier(&mut self.ebpf, name)?
                .detach(link)
                .map_err(|source| TelemetryError::Detach {
                    name,
                    interface: interface.to_owned(),
                    source: Box::new(source),
                })?;
        }
        tracing::info!(interface, "telemetry detached");
        Ok(())
    }

    /// Detaches every interface (dropping does the same, silently).
    pub fn detach_all(&mut self) -> Result<(), TelemetryError> {
        let names: Vec<String> = self.attached.keys().cloned().collect();
        for n in names {
            self.detach(&n)?;
        }
        Ok(())
    }

    /// Attached interfaces and their ifindex.
    pub fn attached(&self) -> impl Iterator<Item = (&str, u32)> {
        self.attached.iter().map(|(n, a)| (n.as_str(), a.ifindex))
    }

    /// Counters of every (interface, VLAN) seen, summed over CPUs.
    pub fn interface_vlan_counters(
        &self,
    ) -> Result<BTreeMap<IfVlanKey, IfVlanCounters>, TelemetryError> {
        let map = self
            .ebpf
            .map(maps::IF_COUNTERS)
            .ok_or(TelemetryError::MissingMap {
                name: maps::IF_COUNTERS,
            })?;
        let hash: PerCpuHashMap<_, IfVlanKey, IfVlanCounters> =
            PerCpuHashMap::try_from(map).map_err(map_err(maps::IF_COUNTERS))?;
        let mut out = BTreeMap::new();
        for entry in hash.iter() {
            let (key, per_cpu) = entry.map_err(map_err(maps::IF_COUNTERS))?;
            let mut sum = IfVlanCounters::default();
            for c in per_cpu.iter() {
                sum.add(c);
            }
            out.insert(key, sum);
        }
        Ok(out)
    }

    /// Per interface, by ifindex: packets that could not be counted per
    /// VLAN because the (interface, VLAN) map was full (`IF_MISSES`). They
    /// are in [`Telemetry::interface_counters`] all the same; only their
    /// VLAN is unknown.
    pub fn unattributed_counters(&self) -> Result<BTreeMap<u32, IfVlanCounters>, TelemetryError> {
        let map = self
            .ebpf
            .map(maps::IF_MISSES)
            .ok_or(TelemetryError::MissingMap {
                name: maps::IF_MISSES,
            })?;
        let hash: PerCpuHashMap<_, u32, IfVlanCounters> =
            PerCpuHashMap::try_from(map).map_err(map_err(maps::IF_MISSES))?;
        let mut out = BTreeMap::new();
        for entry in hash.iter() {
            let (ifindex, per_cpu) = entry.map_err(map_err(maps::IF_MISSES))?;
            let mut sum = IfVlanCounters::default();
            for c in per_cpu.iter() {
                sum.add(c);
            }
            out.insert(ifindex, sum);
        }
        Ok(out)
    }

    /// Packets that neither the (interface, VLAN) map nor the per-interface
    /// overflow map had room for (`LOST`): counted, but for no interface.
    /// Zero unless more interfaces than `IF_MISSES` holds (1024) overflowed.
    pub fn lost_counters(&self) -> Result<IfVlanCounters, TelemetryError> {
        let map = self
            .ebpf
            .map(maps::LOST)
            .ok_or(TelemetryError::MissingMap { name: maps::LOST })?;
        let array: PerCpuArray<_, IfVlanCounters> =
            PerCpuArray::try_from(map).map_err(map_err(maps::LOST))?;
        let per_cpu = array.get(&0, 0).map_err(map_err(maps::LOST))?;
        let mut sum = IfVlanCounters::default();
        for c in per_cpu.iter() {
            sum.add(c);
        }
        Ok(sum)
    }

    /// Per-interface totals (over VLANs, and packets the per-VLAN map had
    /// no room for), by ifindex.
    pub fn interface_counters(&self) -> Result<BTreeMap<u32, IfVlanCounters>, TelemetryError> {
        let mut out: BTreeMap<u32, IfVlanCounters> = BTreeMap::new();
        for (k, c) in self.interface_vlan_counters()? {
            out.entry(k.ifindex).or_default().add(&c);
        }
        for (ifindex, c) in self.unattributed_counters()? {
            out.entry(ifindex).or_default().add(&c);
        }
        Ok(out)
    }

    /// Totals over every interface and VLAN, unattributed and lost packets
    /// included: (ingress, egress).
    pub fn counters(&self) -> Result<(DirCounters, DirCounters), TelemetryError> {
        let mut total = self.lost_counters()?;
        for c in self.interface_counters()?.values() {
            total.add(c);
        }
        Ok((total.rx, total.tx))
    }

    /// Counters of each configured subnet, in slot order.
    pub fn subnet_counters(&self) -> Result<Vec<(IpNet, SubnetCounters)>, TelemetryError> {
        let slots = self.slots()?;
        let map = self
            .ebpf
            .map(maps::SUBNET_COUNTERS)
            .ok_or(TelemetryError::MissingMap {
                name: maps::SUBNET_COUNTERS,
            })?;
        let array: PerCpuArray<_, SubnetCounters> =
            PerCpuArray::try_from(map).map_err(map_err(maps::SUBNET_COUNTERS))?;
        let mut out = Vec::with_capacity(self.subnets.len());
        for net in &self.subnets {
            let Some(slot) = slots.get(net) else { continue };
            let per_cpu = array.get(slot, 0).map_err(map_err(maps::SUBNET_COUNTERS))?;
            let mut sum = SubnetCounters::default();
            for c in per_cpu.iter() {
                sum.add(c);
            }
            out.push((*net, sum));
        }
        Ok(out)
    }

    /// Takes the sample ring buffer out (once), for the sFlow agent.
    pub fn take_samples(&mut self) -> Result<RingBuf<MapData>, TelemetryError> {
        let map = self
            .ebpf
            .take_map(maps::SAMPLES)
            .ok_or(TelemetryError::MissingMap {
                name: maps::SAMPLES,
            })?;
        RingBuf::try_from(map).map_err(map_err(maps::SAMPLES))
    }

    /// Runs program `name` (an [`programs`] name: ingress, egress or the
    /// no-op baseline, loaded on first use) `repeat` times over `packet` in
    /// the kernel with `BPF_PROG_TEST_RUN`, and returns the kernel's average
    /// time per run. For benchmarks: the runs are counted (on ifindex 1).
    pub fn test_run(
        &mut self,
        name: &'static str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<Duration, TelemetryError> {
        self.test_run_with(name, packet, &TestSkb::default(), repeat)
    }

    /// As [`Telemetry::test_run`], with the skb metadata of `skb`: the
    /// device (ifindex) and GSO segments and size, as the kernel's
    /// `BPF_PROG_TEST_RUN` lets a caller set them. What the programs count
    /// lands in the maps as for real traffic.
    pub fn test_run_with(
        &mut self,
        name: &'static str,
        packet: &[u8],
        skb: &TestSkb,
        repeat: u32,
    ) -> Result<Duration, TelemetryError> {
        use aya::programs::{TestRun as _, TestRunOptions};
        let prog = classifier(&mut self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load().map_err(|source| TelemetryError::Program {
                name,
                source: Box::new(source),
            })?;
        }
        let ctx = skb.to_ctx();
        let opts = TestRunOptions {
            data_in: Some(packet),
            ctx_in: (*skb != TestSkb::default()).then_some(ctx.as_slice()),
            repeat,
            ..TestRunOptions::new()
        };
        let r = prog
            .test_run(opts)
            .map_err(|source| TelemetryError::Program {
                name,
                source: Box::new(source),
            })?;
        Ok(r.duration)
    }

    /// Discards every sample waiting in the ring buffer (when no agent took
    /// it); returns how many.
    pub fn drain_samples(&mut self) -> Result<usize, TelemetryError> {
        let Some(map) = self.ebpf.map_mut(maps::SAMPLES) else {
            return Ok(0);
        };
        let mut ring = RingBuf::try_from(map).map_err(map_err(maps::SAMPLES))?;
        let mut n = 0;
        while ring.next().is_some() {
            n += 1;
        }
        Ok(n)
    }

    fn write_config(&mut self) -> Result<(), TelemetryError> {
        let map = self
            .ebpf
            .map_mut(maps::CONFIG)
            .ok_or(TelemetryError::MissingMap { name: maps::CONFIG })?;
        let mut array: Array<_, Config> = Array::try_from(map).map_err(map_err(maps::CONFIG))?;
        array.set(0, self.config, 0).map_err(map_err(maps::CONFIG))
    }

    fn subnet_counters_map_mut(
        &mut self,
    ) -> Result<PerCpuArray<&mut MapData, SubnetCounters>, TelemetryError> {
        let map = self
            .ebpf
            .map_mut(maps::SUBNET_COUNTERS)
            .ok_or(TelemetryError::MissingMap {
                name: maps::SUBNET_COUNTERS,
            })?;
        PerCpuArray::try_from(map).map_err(map_err(maps::SUBNET_COUNTERS))
    }

    fn zero_subnet_values(&self) -> Result<PerCpuValues<SubnetCounters>, TelemetryError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| TelemetryError::Map {
            name: maps::SUBNET_COUNTERS,
            source: Box::new(aya::maps::MapError::IoError(source)),
        })?;
        PerCpuValues::try_from(vec![SubnetCounters::default(); cpus]).map_err(|source| {
            TelemetryError::Map {
                name: maps::SUBNET_COUNTERS,
                source: Box::new(aya::maps::MapError::IoError(source)),
            }
        })
    }

    /// Subnet -> slot, as found in the tries.
    fn slots(&self) -> Result<BTreeMap<IpNet, u32>, TelemetryError> {
        let mut out = BTreeMap::new();
        let map = self
            .ebpf
            .map(maps::SUBNETS_V4)
            .ok_or(TelemetryError::MissingMap {
                name: maps::SUBNETS_V4,
            })?;
        let v4: LpmTrie<_, [u8; 4], u32> =
            LpmTrie::try_from(map).map_err(map_err(maps::SUBNETS_V4))?;
        for entry in v4.iter() {
            let (k, slot) = entry.map_err(map_err(maps::SUBNETS_V4))?;
            let addr = std::net::Ipv4Addr::from(k.data());
            if let Ok(n) = ipnet::Ipv4Net::new(addr, k.prefix_len() as u8) {
                out.insert(IpNet::V4(n), slot);
            }
        }
        let map = self
            .ebpf
            .map(maps::SUBNETS_V6)
            .ok_or(TelemetryError::MissingMap {
                name: maps::SUBNETS_V6,
            })?;
        let v6: LpmTrie<_, [u8; 16], u32> =
            LpmTrie::try_from(map).map_err(map_err(maps::SUBNETS_V6))?;
        for entry in v6.iter() {
            let (k, slot) = entry.map_err(map_err(maps::SUBNETS_V6))?;
            let addr = std::net::Ipv6Addr::from(k.data());
            if let Ok(n) = ipnet::Ipv6Net::new(addr, k.prefix_len() as u8) {
                out.insert(IpNet::V6(n), slot);
            }
        }
        Ok(out)
    }

    fn pinned_subnets(&self) -> Result<Vec<IpNet>, TelemetryError> {
        let mut by_slot: Vec<(u32, IpNet)> =
            self.slots()?.into_iter().map(|(n, s)| (s, n)).collect();
        by_slot.sort();
        Ok(by_slot.into_iter().map(|(_, n)| n).collect())
    }

    fn trie_insert(&mut self, net: &IpNet, slot: u32) -> Result<(), TelemetryError> {
        match net {
            IpNet::V4(n) => {
                let map =
                    self.ebpf
                        .map_mut(maps::SUBNETS_V4)
                        .ok_or(TelemetryError::MissingMap {
                            name: maps::SUBNETS_V4,
                        })?;
                let mut t: LpmTrie<_, [u8; 4], u32> =
                    LpmTrie::try_from(map).map_err(map_err(maps::SUBNETS_V4))?;
                t.insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    slot,
                    0,
                )
                .map_err(map_err(maps::SUBNETS_V4))
            }
            IpNet::V6(n) => {
                let map =
                    self.ebpf
                        .map_mut(maps::SUBNETS_V6)
                        .ok_or(TelemetryError::MissingMap {
                            name: maps::SUBNETS_V6,
                        })?;
                let mut t: LpmTrie<_, [u8; 16], u32> =
                    LpmTrie::try_from(map).map_err(map_err(maps::SUBNETS_V6))?;
                t.insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    slot,
                    0,
                )
                .map_err(map_err(maps::SUBNETS_V6))
            }
        }
    }

    fn trie_remove(&mut self, net: &IpNet) -> Result<(), TelemetryError> {
        match net {
            IpNet::V4(n) => {
                let map =
                    self.ebpf
                        .map_mut(maps::SUBNETS_V4)
                        .ok_or(TelemetryError::MissingMap {
                            name: maps::SUBNETS_V4,
                        })?;
                let mut t: LpmTrie<_, [u8; 4], u32> =
                    LpmTrie::try_from(map).map_err(map_err(maps::SUBNETS_V4))?;
                t.remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                    .map_err(map_err(maps::SUBNETS_V4))
            }
            IpNet::V6(n) => {
                let map =
                    self.ebpf
                        .map_mut(maps::SUBNETS_V6)
                        .ok_or(TelemetryError::MissingMap {
                            name: maps::SUBNETS_V6,
                        })?;
                let mut t: LpmTrie<_, [u8; 16], u32> =
                    LpmTrie::try_from(map).map_err(map_err(maps::SUBNETS_V6))?;
                t.remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                    .map_err(map_err(maps::SUBNETS_V6))
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.detach_all() {
            tracing::warn!(error = %e, "detaching telemetry on drop");
        }
    }
}

/// Removes the pinned maps of `dir` (counters restart from zero next load).
pub fn unpin(dir: &Path) -> Result<(), TelemetryError> {
    for m in PINNED_MAPS {
        match std::fs::remove_file(dir.join(m)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TelemetryError::PinDir {
                    path: dir.join(m),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// [`Config::flags`] for a set of subnets: which tries to look up.
fn subnet_flags(subnets: &[IpNet]) -> u32 {
    let mut flags = 0;
    if subnets.iter().any(|n| matches!(n, IpNet::V4(_))) {
        flags |= FLAG_SUBNETS_V4;
    }
    if subnets.iter().any(|n| matches!(n, IpNet::V6(_))) {
        flags |= FLAG_SUBNETS_V6;
    }
    flags
}

/// ifindex of `interface` in the calling thread's network namespace.
pub fn ifindex(interface: &str) -> Result<u32, TelemetryError> {
    nix::net::if_::if_nametoindex(interface).map_err(|e| TelemetryError::NoInterface {
        interface: interface.to_owned(),
        source: io::Error::from_raw_os_error(e as i32),
    })
}

/// Names of the programs attached to `interface` through TCX in `direction`
/// (kernels >= 6.6; the kernel keeps 15 bytes of each name). For checks that
/// nothing is left attached.
pub fn tcx_programs(
    interface: &str,
    direction: TcAttachType,
) -> Result<Vec<String>, TelemetryError> {
    let (_, progs) = SchedClassifier::query_tcx(interface, direction).map_err(|source| {
        TelemetryError::Attach {
            name: "query",
            interface: interface.to_owned(),
            direction: "tcx query",
            source: Box::new(source),
        }
    })?;
    Ok(progs
        .iter()
        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
        .collect())
}

/// True when a program named `name` (the kernel keeps 15 bytes of it) is
/// attached to `interface` through TCX.
fn tcx_attached(interface: &str, attach_type: TcAttachType, name: &str) -> bool {
    let short = &name[..name.len().min(15)];
    match SchedClassifier::query_tcx(interface, attach_type) {
        Ok((_, progs)) => progs.iter().any(|p| p.name_as_str() == Some(short)),
        Err(e) => {
            tracing::debug!(error = %e, "TCX query failed");
            false
        }
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, TelemetryError> {
    ebpf.program_mut(name)
        .ok_or(TelemetryError::MissingProgram { name })?
        .try_into()
        .map_err(|source| TelemetryError::Program {
            name,
            source: Box::new(source),
        })
}
