//! From decoded samples to numbers: per-subnet scaled byte and packet
//! counts, the latest interface counters per agent and ifIndex, and ingest
//! statistics. No I/O: one [`Shard`] per ingest worker, drained periodically.
//!
//! Rules (documented in docs/collector.md):
//! - A flow sample stands for `sampling_rate * (1 + new_drops)` packets,
//!   where `new_drops` is the increase of the sample's `drops` counter since
//!   the previous sample of the same source (agent, sub-agent, source id):
//!   packets the agent selected but could not send are spread onto the next
//!   sample, which keeps the estimate unbiased. The first sample of a source,
//!   or a `drops` that went down (agent restart), adds nothing.
//! - Bytes are the sampled frame's `frame_length` (the original L2 length as
//!   the agent reports it) times the same factor; sampled-IPv4/IPv6 records
//!   give the IP length.
//! - The first record of a sample that yields IP addresses is used (a raw
//!   header, else a sampled IPv4/IPv6 record); the rest are ignored, so a
//!   sample is never counted twice.
//! - The source address's subnet gets the packet as *out*, the destination's
//!   as *in* (longest prefix). Traffic inside one subnet counts as both.
//! - Every datagram and sample lands in exactly one outcome counter, so the
//!   statistics account for all input ("zero unaccounted loss").

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use serde::Serialize;

use crate::{
    header,
    sflow::{self, CounterRecord, FlowRecord, IfCounters, Sample},
    subnets::{IntMap, SubnetId, SubnetTable},
};

/// Scaled counters of one subnet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SubnetCounters {
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
}

impl SubnetCounters {
    pub fn add(&mut self, o: &SubnetCounters) {
        self.in_bytes = self.in_bytes.wrapping_add(o.in_bytes);
        self.out_bytes = self.out_bytes.wrapping_add(o.out_bytes);
        self.in_pkts = self.in_pkts.wrapping_add(o.in_pkts);
        self.out_pkts = self.out_pkts.wrapping_add(o.out_pkts);
    }
}

/// An interface as (agent address, ifIndex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfKey {
    pub agent: IpAddr,
    pub if_index: u32,
}

/// Agent identity for sequence tracking: agent address and sub-agent id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentKey {
    pub agent: IpAddr,
    pub sub_agent: u32,
}

/// Sequence and volume statistics of one agent/sub-agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AgentStats {
    pub datagrams: u64,
    pub samples: u64,
    /// Datagrams missing from the sequence (net of late arrivals).
    pub lost: u64,
    pub restarts: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    #[serde(skip)]
    last_seq: Option<u32>,
    /// Flow-sample sources of this agent in the drops map.
    #[serde(skip)]
    sources: usize,
    /// When its last datagram arrived (unix seconds).
    #[serde(skip)]
    pub last_seen: u64,
}

/// Ingest statistics. Sums over shards are meaningful.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub datagrams: u64,
    pub bytes: u64,
    /// Datagrams whose header could not be decoded (nothing used).
    pub datagrams_rejected: u64,
    /// Datagrams from sources not in the allow-list (counted, not decoded).
    pub datagrams_not_allowed: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    pub other_samples: u64,
    /// Flow samples that hit at least one configured subnet.
    pub flow_samples_attributed: u64,
    /// Flow samples with addresses in no configured subnet.
    pub flow_samples_unattributed: u64,
    /// Flow samples with no usable IP record (non-IP frames, bad headers).
    pub flow_samples_no_ip: u64,
    /// Flow samples with sampling rate 0 (invalid; not counted).
    pub flow_samples_zero_rate: u64,
    /// Scaled packets and bytes of unattributed samples.
    pub unattributed_pkts: u64,
    pub unattributed_bytes: u64,
    /// Samples added for agent-side drops (sum of `new_drops`).
    pub agent_drops: u64,
    /// Datagrams lost in transit, from sequence gaps (all agents).
    pub sequence_lost: u64,
    /// Datagrams dropped because `limits.max_agents` agents are tracked
    /// already and theirs is a new one.
    pub datagrams_over_agent_limit: u64,
    /// Flow samples of a source beyond `limits.max_sources_per_agent`
    /// (accounted at their plain sampling rate, without drops correction).
    pub flow_samples_over_source_limit: u64,
    /// Interface readings of a new interface dropped because this shard
    /// already holds `series.max_interfaces` readings since the last flush.
    pub interface_readings_over_limit: u64,
    /// Agents forgotten after `limits.agent_idle_expiry` seconds without a
    /// datagram (their slot under `limits.max_agents` freed).
    pub agents_expired: u64,
    /// Decode errors by "level.kind" (datagram, sample, record, header).
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        macro_rules! add { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        add!(
            datagrams,
            bytes,
            datagrams_rejected,
            datagrams_not_allowed,
            flow_samples,
            counter_samples,
            other_samples,
            flow_samples_attributed,
            flow_samples_unattributed,
            flow_samples_no_ip,
            flow_samples_zero_rate,
            unattributed_pkts,
            unattributed_bytes,
            agent_drops,
            sequence_lost,
            datagrams_over_agent_limit,
            flow_samples_over_source_limit,
            interface_readings_over_limit,
            agents_expired
        );
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }
    fn error(&mut self, level: &str, kind: &str) {
        let key = format!("{level}.{kind}");
        match self.errors.get_mut(&key) {
            Some(v) => *v += 1,
            None => {
                self.errors.insert(key, 1);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey {
    agent: AgentKey,
    kind: u32,
    index: u32,
}

/// Memory guards of a shard (see [`crate::config::LimitsConfig`]).
#[derive(Debug, Clone)]
pub struct ShardLimits {
    pub max_agents: usize,
    pub max_sources_per_agent: usize,
    /// Distinct interfaces held between two drains.
    pub max_interfaces: usize,
    /// Agents tracked by all shards together (shared).
    pub agents: Arc<AtomicUsize>,
}

impl ShardLimits {
    pub fn new(cfg: &crate::config::Config) -> Self {
        Self {
            max_agents: cfg.limits.max_agents,
            max_sources_per_agent: cfg.limits.max_sources_per_agent,
            max_interfaces: cfg.series.max_interfaces,
            agents: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Default for ShardLimits {
    fn default() -> Self {
        Self::new(&crate::config::Config::default())
    }
}

/// One worker's accounting state.
#[derive(Debug)]
pub struct Shard {
    limits: ShardLimits,
    subnets: Arc<SubnetTable>,
    /// Deltas since the last drain, indexed by [`SubnetId`].
    deltas: Vec<SubnetCounters>,
    /// Subnets with a non-zero delta (to drain without a full scan).
    dirty: Vec<SubnetId>,
    /// Latest generic interface counters per interface, with receive time.
    ifaces: HashMap<IfKey, (IfCounters, u64)>,
    agents: IntMap<AgentKey, AgentStats>,
    drops: IntMap<SourceKey, u32>,
    pub stats: Stats,
}

/// What a drain hands to the store.
#[derive(Debug, Default)]
pub struct Drained {
    pub subnets: Vec<(SubnetId, SubnetCounters)>,
    pub ifaces: Vec<(IfKey, IfCounters, u64)>,
}

impl Shard {
    /// A shard with the default limits and its own agent count.
    pub fn new(subnets: Arc<SubnetTable>) -> Self {
        Self::with_limits(subnets, ShardLimits::default())
    }

    pub fn with_limits(subnets: Arc<SubnetTable>, limits: ShardLimits) -> Self {
        let n = subnets.len();
        Self {
            limits,
            subnets,
            deltas: vec![SubnetCounters::default(); n],
            dirty: Vec::new(),
            ifaces: HashMap::new(),
            agents: IntMap::default(),
            drops: IntMap::default(),
            stats: Stats::default(),
        }
    }

    /// Per-agent statistics of this shard.
    pub fn agents(&self) -> &IntMap<AgentKey, AgentStats> {
        &self.agents
    }

    /// Counts a datagram refused by the allow-list.
    pub fn not_allowed(&mut self, len: usize) {
        self.stats.datagrams += 1;
        self.stats.bytes += len as u64;
        self.stats.datagrams_not_allowed += 1;
    }

    /// Accounts one datagram received from `from` at `now` (unix seconds).
    pub fn datagram(&mut self, from: IpAddr, buf: &[u8], now: u64) {
        self.stats.datagrams += 1;
        self.stats.bytes += buf.len() as u64;
        let dg = match sflow::decode(buf) {
            Ok(d) => d,
            Err(e) => {
                self.stats.datagrams_rejected += 1;
                self.stats.error("datagram", e.kind());
                return;
            }
        };
        let agent = AgentKey {
            agent: dg.agent.unwrap_or(from),
            sub_agent: dg.sub_agent_id,
        };
        if !self.agents.contains_key(&agent) {
            // Reserve a slot in the shared count; give it back when full.
            let l = &self.limits;
            if l.agents.fetch_add(1, Ordering::Relaxed) >= l.max_agents {
                l.agents.fetch_sub(1, Ordering::Relaxed);
                self.stats.datagrams_over_agent_limit += 1;
                return;
            }
        }
        let a = self.agents.entry(agent).or_default();
        a.datagrams += 1;
        a.last_seen = now;
        let lost_before = a.lost;
        track_sequence(a, dg.sequence);
        self.stats.sequence_lost = (self.stats.sequence_lost + a.lost).saturating_sub(lost_before);
        let mut n = 0u64;
        for s in dg.samples() {
            n += 1;
            match s {
                Ok(Sample::Flow(f)) => {
                    self.stats.flow_samples += 1;
                    self.flow(agent, &f);
                }
                Ok(Sample::Counters(c)) => {
                    self.stats.counter_samples += 1;
                    for r in c.records() {
                        match r {
                            Ok(CounterRecord::Generic(g)) => {
                                let k = IfKey {
                                    agent: agent.agent,
                                    if_index: g.if_index,
                                };
                                if self.ifaces.len() >= self.limits.max_interfaces
                                    && !self.ifaces.contains_key(&k)
                                {
                                    self.stats.interface_readings_over_limit += 1;
                                } else {
                                    self.ifaces.insert(k, (g, now));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => self.stats.error("counter_record", e.kind()),
                        }
                    }
                }
                Ok(_) => self.stats.other_samples += 1,
                Err(e) => self.stats.error("sample", e.kind()),
            }
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.samples += n;
        }
    }

    fn flow(&mut self, agent: AgentKey, f: &sflow::FlowSample<'_>) {
        if f.sampling_rate == 0 {
            self.stats.flow_samples_zero_rate += 1;
            return;
        }
        // Effective rate with agent-side drops.
        let key = SourceKey {
            agent,
            kind: f.source.kind,
            index: f.source.index,
        };
        let new_drops = match self.drops.get_mut(&key) {
            Some(last) => {
                let d = f.drops.saturating_sub(*last) as u64;
                *last = f.drops;
                d
            }
            None => {
                let a = self.agents.entry(agent).or_default();
                if a.sources < self.limits.max_sources_per_agent {
                    a.sources += 1;
                    self.drops.insert(key, f.drops);
                } else {
                    self.stats.flow_samples_over_source_limit += 1;
                }
                0
            }
        };
        self.stats.agent_drops += new_drops;
        let scale = f.sampling_rate as u64 * (1 + new_drops);

        let mut found = None;
        for r in f.records() {
            match r {
                Ok(FlowRecord::RawHeader {
                    protocol,
                    frame_length,
                    header,
                    ..
                }) => match header::decode(protocol, header) {
                    Ok(p) => {
                        found = Some((p.src, p.dst, frame_length));
                        break;
                    }
                    Err(e) => self.stats.error("header", e.kind()),
                },
                Ok(FlowRecord::Ipv4 {
                    length, src, dst, ..
                }) => {
                    found = Some((src.into(), dst.into(), length));
                    break;
                }
                Ok(FlowRecord::Ipv6 {
                    length, src, dst, ..
                }) => {
                    found = Some((src.into(), dst.into(), length));
                    break;
                }
                Ok(_) => {}
                Err(e) => self.stats.error("flow_record", e.kind()),
            }
        }
        let Some((src, dst, len)) = found else {
            self.stats.flow_samples_no_ip += 1;
            return;
        };
        let bytes = len as u64 * scale;
        let s = self.subnets.lookup(src);
        let d = self.subnets.lookup(dst);
        if s.is_none() && d.is_none() {
            self.stats.flow_samples_unattributed += 1;
            self.stats.unattributed_pkts += scale;
            self.stats.unattributed_bytes += bytes;
            return;
        }
        self.stats.flow_samples_attributed += 1;
        if let Some(s) = s {
            let c = self.touch(s);
            c.out_bytes += bytes;
            c.out_pkts += scale;
        }
        if let Some(d) = d {
            let c = self.touch(d);
            c.in_bytes += bytes;
            c.in_pkts += scale;
        }
    }

    #[inline]
    fn touch(&mut self, id: SubnetId) -> &mut SubnetCounters {
        let c = &mut self.deltas[id as usize];
        if *c == SubnetCounters::default() {
            self.dirty.push(id);
        }
        c
    }

    /// Hands over and clears the deltas and interface readings.
    /// Forgets the agents whose last datagram arrived before `before` (unix
    /// seconds): their statistics, sequence state and drops baselines, and
    /// their slot in the shared agent count. Returns how many went.
    pub fn expire(&mut self, before: u64) -> usize {
        let gone: Vec<AgentKey> = self
            .agents
            .iter()
            .filter(|(_, a)| a.last_seen < before)
            .map(|(k, _)| *k)
            .collect();
        if gone.is_empty() {
            return 0;
        }
        for k in &gone {
            self.agents.remove(k);
        }
        self.drops.retain(|s, _| !gone.contains(&s.agent));
        self.limits.agents.fetch_sub(gone.len(), Ordering::Relaxed);
        self.stats.agents_expired += gone.len() as u64;
        gone.len()
    }

    pub fn drain(&mut self) -> Drained {
        let mut out = Drained::default();
        for id in self.dirty.drain(..) {
            let c = std::mem::take(&mut self.deltas[id as usize]);
            if c != SubnetCounters::default() {
                out.subnets.push((id, c));
            }
        }
        out.ifaces = self.ifaces.drain().map(|(k, (c, t))| (k, c, t)).collect();
        out
    }
}

/// Sequence rule: a forward jump of up to 100,000 counts the missing
/// datagrams as lost; a repeat is a duplicate; a step back of up to 1,000 is
/// a late (out-of-order) datagram, which was counted lost and is taken back;
/// anything else is an agent restart (new baseline, nothing lost).
fn track_sequence(a: &mut AgentStats, seq: u32) {
    let Some(last) = a.last_seq else {
        a.last_seq = Some(seq);
        return;
    };
    let fwd = seq.wrapping_sub(last);
    let back = last.wrapping_sub(seq);
    if fwd == 0 {
        a.duplicates += 1;
    } else if fwd <= 100_000 {
        a.lost += (fwd - 1) as u64;
        a.last_seq = Some(seq);
    } else if back <= 1_000 {
        a.out_of_order += 1;
        a.lost = a.lost.saturating_sub(1);
    } else {
        a.restarts += 1;
        a.last_seq = Some(seq);
    }
}

#[cfg(test)]
mod tests;
