//! The sFlow v5 agent: turns ring-buffer samples into flow samples and the
//! eBPF counters into counter samples, and sends them over UDP to every
//! configured collector.
//!
//! Side effects live here (sockets, netlink, the clock); datagram layout is
//! in [`crate::sflow`]. The agent is synchronous: [`Agent::run`] blocks on
//! `poll(2)` over the ring buffer's fd, so hostd runs it on its own thread
//! (inside the network namespace of the interfaces it watches).

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use telemetry_common::{SampleRecord, DIR_INGRESS, NO_VLAN};

use crate::{
    loader::{Telemetry, TelemetryError},
    sflow::{
        insert_vlan_tag, pack, CounterRecord, CounterSample, FlowRecord, FlowSample,
        GenericInterfaceCounters, Sample, SourceId, VlanCounters, HEADER_PROTOCOL_ETHERNET,
        UNKNOWN_U32,
    },
};

/// Errors of the sFlow agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("sFlow socket: {0}")]
    Socket(#[source] io::Error),
    #[error("no agent address: none configured and no route to collector {collector}")]
    NoAgentAddress {
        collector: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no collectors configured")]
    NoCollectors,
    #[error("reading interface {ifindex} over netlink: {reason}")]
    Netlink { ifindex: u32, reason: String },
}

/// What the agent sends, where, and as whom.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub collectors: Vec<SocketAddr>,
    /// The agent address in every datagram; `None`: the source address the
    /// kernel picks towards the first collector.
    pub agent_address: Option<IpAddr>,
    pub sub_agent_id: u32,
    /// 1 in N, as configured on the programs (reported in flow samples).
    pub sampling_rate: u32,
    /// How often counter samples are sent.
    pub counter_interval: Duration,
    /// Largest datagram (bytes of UDP payload).
    pub max_datagram: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            agent_address: None,
            sub_agent_id: 0,
            sampling_rate: 0,
            counter_interval: Duration::from_secs(20),
            max_datagram: 1400,
        }
    }
}

/// What one call sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub samples: usize,
    pub datagrams: usize,
}

/// An sFlow agent over a loaded [`Telemetry`].
pub struct Agent {
    cfg: AgentConfig,
    socket: UdpSocket,
    agent: IpAddr,
    started: Instant,
    ring: RingBuf<MapData>,
    datagram_seq: u32,
    flow_seq: BTreeMap<SourceId, u32>,
    counter_seq: BTreeMap<SourceId, u32>,
}

impl Agent {
    /// Takes the sample ring buffer out of `telemetry` and opens the socket.
    pub fn new(telemetry: &mut Telemetry, cfg: AgentConfig) -> Result<Self, AgentError> {
        let first = *cfg.collectors.first().ok_or(AgentError::NoCollectors)?;
        let agent = match cfg.agent_address {
            Some(a) => a,
            None => route_source(first)?,
        };
        let bind: SocketAddr = match first {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().map_err(|_| AgentError::NoCollectors)?,
            SocketAddr::V6(_) => "[::]:0".parse().map_err(|_| AgentError::NoCollectors)?,
        };
        let socket = UdpSocket::bind(bind).map_err(AgentError::Socket)?;
        let ring = telemetry.take_samples()?;
        tracing::info!(%agent, collectors = ?cfg.collectors, "sFlow agent ready");
        Ok(Self {
            cfg,
            socket,
            agent,
            started: Instant::now(),
            ring,
            datagram_seq: 0,
            flow_seq: BTreeMap::new(),
            counter_seq: BTreeMap::new(),
        })
    }

    /// The agent address put in datagrams.
    pub fn agent_address(&self) -> IpAddr {
        self.agent
    }

    /// Drains the ring buffer and sends one flow sample per sampled packet.
    pub fn export_samples(&mut self, telemetry: &Telemetry) -> Result<Sent, AgentError> {
        let mut records = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<SampleRecord>() {
                continue;
            }
            // SAFETY: the program writes exactly one `SampleRecord` per entry;
            // read_unaligned copes with the ring's 8-byte alignment.
            let rec: SampleRecord = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            records.push(rec);
        }
        if records.is_empty() {
            return Ok(Sent::default());
        }
        // Sample pool and drops per data source, read once per batch.
        let totals = telemetry.interface_counters()?;
        let mut samples = Vec::with_capacity(records.len());
        for rec in &records {
            let source = SourceId::interface(rec.ifindex);
            let t = totals.get(&rec.ifindex).copied().unwrap_or_default();
            let n = (rec.header_len as usize).min(rec.header.len());
            let header = if rec.tag_offloaded != 0 {
                // Put the tag back; keep the configured header size when the
                // packet was cut (the whole frame otherwise).
                let mut h = insert_vlan_tag(&rec.header[..n], rec.vlan, u32::from(rec.priority));
                if n + 4 < rec.frame_len as usize {
                    h.truncate(n);
                }
                h
            } else {
                rec.header[..n].to_vec()
            };
            let (vlan, prio) = if rec.vlan == NO_VLAN {
                (UNKNOWN_U32, UNKNOWN_U32)
            } else {
                (rec.vlan, u32::from(rec.priority))
            };
            let (input, output) = if rec.direction == DIR_INGRESS {
                (rec.ifindex, 0)
            } else {
                (0, rec.ifindex)
            };
            // One flow sample per sampled frame: a GSO skb sampled k times
            // among its segments gives k samples, as k frames would on a
            // switch.
            for frame_length in frame_lengths(rec) {
                let seq = self.flow_seq.entry(source).or_insert(0);
                *seq = seq.wrapping_add(1);
                samples.push(Sample::Flow(FlowSample {
                    sequence: *seq,
                    source,
                    sampling_rate: self.cfg.sampling_rate,
                    sample_pool: (t.rx.packets + t.tx.packets) as u32,
                    drops: (t.rx.sample_drops + t.tx.sample_drops) as u32,
                    input,
                    output,
                    records: vec![
                        FlowRecord::RawHeader {
                            protocol: HEADER_PROTOCOL_ETHERNET,
                            frame_length,
                            stripped: 0,
                            // Never longer than the frame: a GSO skb's
                            // first bytes past a segment are the next one's.
                            header: header[..header.len().min(frame_length as usize)].to_vec(),
                        },
                        FlowRecord::ExtendedSwitch {
                            src_vlan: vlan,
                            src_priority: prio,
                            dst_vlan: vlan,
                            dst_priority: prio,
                        },
                    ],
                }));
            }
        }
        self.send(samples)
    }

    /// Sends a counter sample for every attached interface (generic interface
    /// counters) and for every VLAN seen (VLAN counters, summed over
    /// interfaces).
    pub fn export_counters(&mut self, telemetry: &Telemetry) -> Result<Sent, AgentError> {
        let per_vlan = telemetry.interface_vlan_counters()?;
        let totals = telemetry.interface_counters()?;
        let mut samples = Vec::new();
        for (_, ifindex) in telemetry.attached() {
            let t = totals.get(&ifindex).copied().unwrap_or_default();
            let link = link_info(ifindex)?;
            let ucast = |d: &telemetry_common::DirCounters| (d.packets - d.multicast) as u32;
            let g = GenericInterfaceCounters {
                if_index: ifindex,
                if_type: link.if_type,
                if_speed: 0,
                if_direction: 0,
                if_status: link.status,
                in_octets: t.rx.bytes,
                in_ucast: ucast(&t.rx),
                in_multicast: (t.rx.multicast - t.rx.broadcast) as u32,
                in_broadcast: t.rx.broadcast as u32,
                in_discards: link.rx_dropped as u32,
                in_errors: link.rx_errors as u32,
                in_unknown_protos: UNKNOWN_U32,
                out_octets: t.tx.bytes,
                out_ucast: ucast(&t.tx),
                out_multicast: (t.tx.multicast - t.tx.broadcast) as u32,
                out_broadcast: t.tx.broadcast as u32,
                out_discards: link.tx_dropped as u32,
                out_errors: link.tx_errors as u32,
                promiscuous: if link.promisc { 1 } else { 2 },
            };
            let source = SourceId::interface(ifindex);
            let seq = self.counter_seq.entry(source).or_insert(0);
            *seq = seq.wrapping_add(1);
            samples.push(Sample::Counters(CounterSample {
                sequence: *seq,
                source,
                records: vec![CounterRecord::Generic(g)],
            }));
        }
        let mut vlans: BTreeMap<u32, VlanCounters> = BTreeMap::new();
        for (k, c) in per_vlan.iter().filter(|(k, _)| k.vlan <= 4095) {
            let v = vlans.entry(k.vlan).or_insert(VlanCounters {
                vlan_id: k.vlan,
                ..Default::default()
            });
            for d in [&c.rx, &c.tx] {
                v.octets += d.bytes;
                v.ucast = v.ucast.wrapping_add((d.packets - d.multicast) as u32);
                v.multicast = v.multicast.wrapping_add((d.multicast - d.broadcast) as u32);
                v.broadcast = v.broadcast.wrapping_add(d.broadcast as u32);
            }
        }
        for (vlan, v) in vlans {
            let source = SourceId::vlan(vlan);
            let seq = self.counter_seq.entry(source).or_insert(0);
            *seq = seq.wrapping_add(1);
            samples.push(Sample::Counters(CounterSample {
                sequence: *seq,
                source,
                records: vec![CounterRecord::Vlan(v)],
            }));
        }
        self.send(samples)
    }

    fn send(&mut self, samples: Vec<Sample>) -> Result<Sent, AgentError> {
        let n = samples.len();
        let uptime = self.started.elapsed().as_millis() as u32;
        let seq = &mut self.datagram_seq;
        let datagrams = pack(
            self.agent,
            self.cfg.sub_agent_id,
            uptime,
            samples,
            self.cfg.max_datagram,
            || {
                *seq = seq.wrapping_add(1);
                *seq
            },
        );
        for d in &datagrams {
            let bytes = d.encode();
            for c in &self.cfg.collectors {
                if let Err(e) = self.socket.send_to(&bytes, c) {
                    // One unreachable collector must not stop the others.
                    tracing::warn!(collector = %c, error = %e, "sending sFlow datagram");
                }
            }
        }
        Ok(Sent {
            samples: n,
            datagrams: datagrams.len(),
        })
    }

    /// Exports until `stop` is set: flow samples as soon as the ring buffer
    /// has data (checked at least every 100 ms), counter samples every
    /// `counter_interval`. A final counter export happens on stop.
    pub fn run(&mut self, telemetry: &Telemetry, stop: &AtomicBool) -> Result<(), AgentError> {
        let mut next_counters = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_counters {
                self.export_counters(telemetry)?;
                next_counters = now + self.cfg.counter_interval;
            }
            let wait = next_counters
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let fd = self.ring.as_fd();
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let timeout =
                nix::poll::PollTimeout::try_from(wait).unwrap_or(nix::poll::PollTimeout::ZERO);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(AgentError::Socket(io::Error::from_raw_os_error(e as i32))),
            }
            self.export_samples(telemetry)?;
        }
        self.export_samples(telemetry)?;
        self.export_counters(telemetry)?;
        Ok(())
    }
}

/// The wire length of each frame a ring-buffer record stands for: `count`
/// frames of a full segment's length, one of them the last segment's when
/// that was among the sampled (a record of a non-GSO skb: one frame).
pub fn frame_lengths(rec: &SampleRecord) -> impl Iterator<Item = u32> + '_ {
    let count = rec.count.max(1);
    (0..count).map(move |i| {
        if rec.last_sampled != 0 && i + 1 == count {
            rec.last_frame_len
        } else {
            rec.frame_len
        }
    })
}

/// The source address the kernel would use towards `collector`.
fn route_source(collector: SocketAddr) -> Result<IpAddr, AgentError> {
    let bind = match collector {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    };
    let s = UdpSocket::bind(bind).map_err(AgentError::Socket)?;
    s.connect(collector)
        .map_err(|source| AgentError::NoAgentAddress { collector, source })?;
    let local = s
        .local_addr()
        .map_err(|source| AgentError::NoAgentAddress { collector, source })?;
    Ok(local.ip())
}

/// What the kernel says about an interface, for generic counters.
#[derive(Debug, Default, Clone, Copy)]
struct LinkInfo {
    if_type: u32,
    status: u32,
    promisc: bool,
    rx_dropped: u64,
    rx_errors: u64,
    tx_dropped: u64,
    tx_errors: u64,
}

/// RTM_GETLINK for one ifindex, in the calling thread's network namespace.
fn link_info(ifindex: u32) -> Result<LinkInfo, AgentError> {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_route::{
        link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage, State},
        RouteNetlinkMessage,
    };
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr as NlAddr};

    let err = |reason: String| AgentError::Netlink { ifindex, reason };
    let socket = Socket::new(NETLINK_ROUTE).map_err(|e| err(e.to_string()))?;
    socket
        .connect(&NlAddr::new(0, 0))
        .map_err(|e| err(e.to_string()))?;
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(msg));
    req.header.flags = NLM_F_REQUEST;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0).map_err(|e| err(e.to_string()))?;
    let (reply, _) = socket.recv_from_full().map_err(|e| err(e.to_string()))?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| err(e.to_string()))?;
    let link = match msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => l,
        NetlinkPayload::Error(e) => return Err(err(e.to_string())),
        other => return Err(err(format!("unexpected reply {other:?}"))),
    };
    let mut info = LinkInfo {
        // ethernetCsmacd (6) for Ethernet, other (1) for the rest.
        if_type: if link.header.link_layer_type == LinkLayerType::Ether {
            6
        } else {
            1
        },
        promisc: link.header.flags.contains(LinkFlags::Promisc),
        ..Default::default()
    };
    let admin_up = link.header.flags.contains(LinkFlags::Up);
    let mut oper_up = link.header.flags.contains(LinkFlags::LowerUp);
    for a in &link.attributes {
        match a {
            LinkAttribute::OperState(s) => oper_up = *s == State::Up,
            LinkAttribute::Stats64(s) => {
                info.rx_dropped = s.rx_dropped;
                info.rx_errors = s.rx_errors;
                info.tx_dropped = s.tx_dropped;
                info.tx_errors = s.tx_errors;
            }
            _ => {}
        }
    }
    info.status = u32::from(admin_up) | (u32::from(oper_up) << 1);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use telemetry_common::MAX_HEADER_BYTES;

    use super::*;

    fn record(count: u32, frame_len: u32, last_frame_len: u32, last_sampled: u32) -> SampleRecord {
        SampleRecord {
            ifindex: 2,
            direction: DIR_INGRESS,
            vlan: NO_VLAN,
            frame_len,
            header_len: 0,
            priority: 0,
            tag_offloaded: 0,
            count,
            last_frame_len,
            last_sampled,
            segments: 10,
            first_segment: 0,
            header: [0; MAX_HEADER_BYTES],
        }
    }

    #[test]
    fn a_record_gives_one_frame_per_sampled_segment() {
        let lens = |r: &SampleRecord| frame_lengths(r).collect::<Vec<_>>();
        // Not GSO: one frame.
        assert_eq!(lens(&record(1, 98, 98, 1)), [98]);
        // Three full segments sampled.
        assert_eq!(lens(&record(3, 1514, 700, 0)), [1514, 1514, 1514]);
        // Two, the last segment among them.
        assert_eq!(lens(&record(2, 1514, 700, 1)), [1514, 700]);
        // A record from an older program (count 0) still stands for one.
        assert_eq!(lens(&record(0, 60, 60, 0)), [60]);
    }
}
