//! sFlow version 5 datagrams (<https://sflow.org/sflow_version_5.txt>), as
//! values and their XDR encoding. Pure: no sockets, no clock.
//!
//! Encoded by hand: the Rust sFlow crates we found (`sflow-parser` 0.7 and
//! older ones) only *decode*; sFlow v5 is XDR (big-endian 32-bit words,
//! opaque data padded to 4 bytes) and the few structures an agent emits are
//! short. `sflow-parser` is the oracle of this module's tests, and tshark the
//! oracle of the lab tests.
//!
//! What we emit:
//! - flow samples (enterprise 0, format 1) holding a raw packet header record
//!   (0, 1) and an extended switch record (0, 1001);
//! - counter samples (0, 2) holding generic interface counters (0, 1) for an
//!   interface, or VLAN counters (0, 5) for a VLAN data source.

use std::net::IpAddr;

/// sFlow's "unknown" for 32-bit counters and VLAN / priority fields.
pub const UNKNOWN_U32: u32 = 0xffff_ffff;

/// Data source types (the top 8 bits of `source_id`).
pub const SOURCE_IFINDEX: u32 = 0;
/// smonVlanDataSource: the index is the VLAN id.
pub const SOURCE_VLAN: u32 = 1;

/// Raw packet header protocol: Ethernet (ISO 8802-3).
pub const HEADER_PROTOCOL_ETHERNET: u32 = 1;

/// A data source: type (0 ifIndex, 1 VLAN) and 24-bit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub kind: u32,
    pub index: u32,
}

impl SourceId {
    pub fn interface(ifindex: u32) -> Self {
        Self {
            kind: SOURCE_IFINDEX,
            index: ifindex,
        }
    }
    pub fn vlan(vlan: u32) -> Self {
        Self {
            kind: SOURCE_VLAN,
            index: vlan,
        }
    }
    fn encode(self) -> u32 {
        (self.kind << 24) | (self.index & 0x00ff_ffff)
    }
}

/// One datagram: header plus samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub agent: IpAddr,
    pub sub_agent_id: u32,
    /// Incremented by one for each datagram sent by this sub-agent.
    pub sequence: u32,
    /// Milliseconds since the agent started.
    pub uptime_ms: u32,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    Flow(FlowSample),
    Counters(CounterSample),
}

/// A flow sample (enterprise 0, format 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSample {
    /// Incremented for each flow sample of this source.
    pub sequence: u32,
    pub source: SourceId,
    /// 1 in N.
    pub sampling_rate: u32,
    /// Packets that could have been sampled (all packets seen by the source).
    pub sample_pool: u32,
    /// Samples lost for lack of resources (the ring buffer was full).
    pub drops: u32,
    /// ifIndex the packet came in on (0 unknown).
    pub input: u32,
    /// ifIndex it went out on (0 unknown).
    pub output: u32,
    pub records: Vec<FlowRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowRecord {
    /// Raw packet header (0, 1).
    RawHeader {
        protocol: u32,
        frame_length: u32,
        /// Bytes removed before sampling (e.g. FCS): 0 here.
        stripped: u32,
        header: Vec<u8>,
    },
    /// Extended switch data (0, 1001).
    ExtendedSwitch {
        src_vlan: u32,
        src_priority: u32,
        dst_vlan: u32,
        dst_priority: u32,
    },
}

/// A counter sample (enterprise 0, format 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSample {
    /// Incremented for each counter sample of this source.
    pub sequence: u32,
    pub source: SourceId,
    pub records: Vec<CounterRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterRecord {
    Generic(GenericInterfaceCounters),
    Vlan(VlanCounters),
}

/// Generic interface counters (0, 1), RFC 2233 semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenericInterfaceCounters {
    pub if_index: u32,
    /// ifType (6 = ethernetCsmacd).
    pub if_type: u32,
    /// bits per second, 0 unknown.
    pub if_speed: u64,
    /// 0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out.
    pub if_direction: u32,
    /// bit 0 admin up, bit 1 oper up.
    pub if_status: u32,
    pub in_octets: u64,
    pub in_ucast: u32,
    pub in_multicast: u32,
    pub in_broadcast: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast: u32,
    pub out_multicast: u32,
    pub out_broadcast: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    /// 1 promiscuous, 2 not (RFC 2233 TruthValue); 0 unknown.
    pub promiscuous: u32,
}

/// VLAN counters (0, 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VlanCounters {
    pub vlan_id: u32,
    pub octets: u64,
    pub ucast: u32,
    pub multicast: u32,
    pub broadcast: u32,
    pub discards: u32,
}

/// XDR writer.
struct Xdr<'a>(&'a mut Vec<u8>);

impl Xdr<'_> {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Variable-length opaque: length, bytes, zero padding to 4.
    fn opaque(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len() + pad(b.len()), 0);
    }
    /// Writes `format`, a length placeholder, the body from `f`, then the
    /// length: the "opaque" wrapper of every sample and record.
    fn wrapped(&mut self, format: u32, f: impl FnOnce(&mut Xdr<'_>)) {
        self.u32(format);
        let at = self.0.len();
        self.u32(0);
        f(&mut Xdr(self.0));
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Data format word: enterprise (20 bits) and format (12 bits).
const fn data_format(enterprise: u32, format: u32) -> u32 {
    (enterprise << 12) | format
}

impl Datagram {
    /// Appends the XDR encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut x = Xdr(out);
        x.u32(5);
        match self.agent {
            IpAddr::V4(a) => {
                x.u32(1);
                x.0.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                x.u32(2);
                x.0.extend_from_slice(&a.octets());
            }
        }
        x.u32(self.sub_agent_id);
        x.u32(self.sequence);
        x.u32(self.uptime_ms);
        x.u32(self.samples.len() as u32);
        for s in &self.samples {
            s.encode_into(x.0);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1400);
        self.encode_into(&mut v);
        v
    }
}

impl Sample {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v.len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut x = Xdr(out);
        match self {
            Sample::Flow(f) => x.wrapped(data_format(0, 1), |x| {
                x.u32(f.sequence);
                x.u32(f.source.encode());
                x.u32(f.sampling_rate);
                x.u32(f.sample_pool);
                x.u32(f.drops);
                x.u32(f.input);
                x.u32(f.output);
                x.u32(f.records.len() as u32);
                for r in &f.records {
                    match r {
                        FlowRecord::RawHeader {
                            protocol,
                            frame_length,
                            stripped,
                            header,
                        } => {
                            x.wrapped(data_format(0, 1), |x| {
                                x.u32(*protocol);
                                x.u32(*frame_length);
                                x.u32(*stripped);
                                x.opaque(header);
                            });
                        }
                        FlowRecord::ExtendedSwitch {
                            src_vlan,
                            src_priority,
                            dst_vlan,
                            dst_priority,
                        } => {
                            x.wrapped(data_format(0, 1001), |x| {
                                x.u32(*src_vlan);
                                x.u32(*src_priority);
                                x.u32(*dst_vlan);
                                x.u32(*dst_priority);
                            });
                        }
                    }
                }
            }),
            Sample::Counters(c) => x.wrapped(data_format(0, 2), |x| {
                x.u32(c.sequence);
                x.u32(c.source.encode());
                x.u32(c.records.len() as u32);
                for r in &c.records {
                    match r {
                        CounterRecord::Generic(g) => x.wrapped(data_format(0, 1), |x| {
                            x.u32(g.if_index);
                            x.u32(g.if_type);
                            x.u64(g.if_speed);
                            x.u32(g.if_direction);
                            x.u32(g.if_status);
                            x.u64(g.in_octets);
                            x.u32(g.in_ucast);
                            x.u32(g.in_multicast);
                            x.u32(g.in_broadcast);
                            x.u32(g.in_discards);
                            x.u32(g.in_errors);
                            x.u32(g.in_unknown_protos);
                            x.u64(g.out_octets);
                            x.u32(g.out_ucast);
                            x.u32(g.out_multicast);
                            x.u32(g.out_broadcast);
                            x.u32(g.out_discards);
                            x.u32(g.out_errors);
                            x.u32(g.promiscuous);
                        }),
                        CounterRecord::Vlan(v) => x.wrapped(data_format(0, 5), |x| {
                            x.u32(v.vlan_id);
                            x.u64(v.octets);
                            x.u32(v.ucast);
                            x.u32(v.multicast);
                            x.u32(v.broadcast);
                            x.u32(v.discards);
                        }),
                    }
                }
            }),
        }
    }
}

/// Packs samples into as few datagrams as fit in `max_bytes` each (a sample
/// larger than that still goes out, alone). `next_sequence` numbers them.
pub fn pack(
    agent: IpAddr,
    sub_agent_id: u32,
    uptime_ms: u32,
    samples: Vec<Sample>,
    max_bytes: usize,
    mut next_sequence: impl FnMut() -> u32,
) -> Vec<Datagram> {
    let mut out = Vec::new();
    let header = match agent {
        IpAddr::V4(_) => 28,
        IpAddr::V6(_) => 40,
    };
    let mut cur: Vec<Sample> = Vec::new();
    let mut size = header;
    for s in samples {
        let len = s.encoded_len();
        if !cur.is_empty() && size + len > max_bytes {
            out.push(Datagram {
                agent,
                sub_agent_id,
                sequence: next_sequence(),
                uptime_ms,
                samples: std::mem::take(&mut cur),
            });
            size = header;
        }
        size += len;
        cur.push(s);
    }
    if !cur.is_empty() {
        out.push(Datagram {
            agent,
            sub_agent_id,
            sequence: next_sequence(),
            uptime_ms,
            samples: cur,
        });
    }
    out
}

/// Puts an offloaded 802.1Q tag back into an Ethernet header (after the two
/// MAC addresses), so the exported header is the frame as on the wire.
pub fn insert_vlan_tag(header: &[u8], vlan: u32, priority: u32) -> Vec<u8> {
    if header.len() < 12 {
        return header.to_vec();
    }
    let tci = ((priority & 7) << 13) | (vlan & 0x0fff);
    let mut v = Vec::with_capacity(header.len() + 4);
    v.extend_from_slice(&header[..12]);
    v.extend_from_slice(&[0x81, 0x00]);
    v.extend_from_slice(&(tci as u16).to_be_bytes());
    v.extend_from_slice(&header[12..]);
    v
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use sflow_parser::models::{CounterData, FlowData, SampleData};

    use super::*;

    fn flow(seq: u32, header: Vec<u8>) -> Sample {
        Sample::Flow(FlowSample {
            sequence: seq,
            source: SourceId::interface(7),
            sampling_rate: 1000,
            sample_pool: 123_456,
            drops: 3,
            input: 7,
            output: 0,
            records: vec![
                FlowRecord::RawHeader {
                    protocol: HEADER_PROTOCOL_ETHERNET,
                    frame_length: 1514,
                    stripped: 0,
                    header,
                },
                FlowRecord::ExtendedSwitch {
                    src_vlan: 100,
                    src_priority: 5,
                    dst_vlan: 100,
                    dst_priority: 5,
                },
            ],
        })
    }

    fn generic() -> GenericInterfaceCounters {
        GenericInterfaceCounters {
            if_index: 7,
            if_type: 6,
            if_speed: 10_000_000_000,
            if_direction: 1,
            if_status: 3,
            in_octets: 1 << 40,
            in_ucast: 10,
            in_multicast: 2,
            in_broadcast: 1,
            in_discards: 4,
            in_errors: 5,
            in_unknown_protos: UNKNOWN_U32,
            out_octets: (1 << 33) + 7,
            out_ucast: 11,
            out_multicast: 0,
            out_broadcast: 0,
            out_discards: 6,
            out_errors: 8,
            promiscuous: 2,
        }
    }

    #[test]
    fn flow_sample_round_trips_through_sflow_parser() {
        // 61 bytes: the opaque needs 3 bytes of padding.
        let header: Vec<u8> = (0..61).collect();
        let d = Datagram {
            agent: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            sub_agent_id: 3,
            sequence: 42,
            uptime_ms: 99_000,
            samples: vec![flow(17, header.clone())],
        };
        let bytes = d.encode();
        assert_eq!(bytes.len() % 4, 0);
        let p = sflow_parser::parse_datagram(&bytes).expect("parses");
        assert_eq!(
            p.agent_address,
            sflow_parser::models::Address::IPv4(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert_eq!(
            (p.sub_agent_id, p.sequence_number, p.uptime),
            (3, 42, 99_000)
        );
        assert_eq!(p.samples.len(), 1);
        let SampleData::FlowSample(f) = &p.samples[0].sample_data else {
            panic!("{:?}", p.samples[0])
        };
        assert_eq!(f.sequence_number, 17);
        assert_eq!((f.source_id.source_type(), f.source_id.index()), (0, 7));
        assert_eq!(
            (f.sampling_rate, f.sample_pool, f.drops),
            (1000, 123_456, 3)
        );
        assert_eq!((f.input.0, f.output.0), (7, 0));
        assert_eq!(f.flow_records.len(), 2);
        let FlowData::SampledHeader(h) = &f.flow_records[0].flow_data else {
            panic!()
        };
        assert_eq!((h.frame_length, h.stripped), (1514, 0));
        assert_eq!(h.header, header);
        let FlowData::ExtendedSwitch(s) = &f.flow_records[1].flow_data else {
            panic!()
        };
        assert_eq!(
            (s.src_vlan, s.src_priority, s.dst_vlan, s.dst_priority),
            (100, 5, 100, 5)
        );
    }

    #[test]
    fn counter_samples_round_trip_through_sflow_parser() {
        let g = generic();
        let v = VlanCounters {
            vlan_id: 100,
            octets: 5_000_000_000,
            ucast: 9,
            multicast: 8,
            broadcast: 7,
            discards: 0,
        };
        let d = Datagram {
            agent: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            sub_agent_id: 0,
            sequence: 1,
            uptime_ms: 5,
            samples: vec![
                Sample::Counters(CounterSample {
                    sequence: 9,
                    source: SourceId::interface(7),
                    records: vec![CounterRecord::Generic(g)],
                }),
                Sample::Counters(CounterSample {
                    sequence: 2,
                    source: SourceId::vlan(100),
                    records: vec![CounterRecord::Vlan(v)],
                }),
            ],
        };
        let bytes = d.encode();
        let p = sflow_parser::parse_datagram(&bytes).expect("parses");
        assert_eq!(p.samples.len(), 2);
        let SampleData::CountersSample(c) = &p.samples[0].sample_data else {
            panic!()
        };
        assert_eq!(c.sequence_number, 9);
        let CounterData::GenericInterface(pg) = &c.counters[0].counter_data else {
            panic!()
        };
        assert_eq!(
            (
                pg.if_index,
                pg.if_type,
                pg.if_speed,
                pg.if_direction,
                pg.if_status
            ),
            (7, 6, 10_000_000_000, 1, 3)
        );
        assert_eq!(
            (
                pg.if_in_octets,
                pg.if_in_ucast_pkts,
                pg.if_in_multicast_pkts,
                pg.if_in_broadcast_pkts
            ),
            (1 << 40, 10, 2, 1)
        );
        assert_eq!(
            (pg.if_in_discards, pg.if_in_errors, pg.if_in_unknown_protos),
            (4, 5, UNKNOWN_U32)
        );
        assert_eq!(
            (
                pg.if_out_octets,
                pg.if_out_ucast_pkts,
                pg.if_out_discards,
                pg.if_out_errors
            ),
            ((1 << 33) + 7, 11, 6, 8)
        );
        assert_eq!(pg.if_promiscuous_mode, 2);
        let SampleData::CountersSample(c) = &p.samples[1].sample_data else {
            panic!()
        };
        assert_eq!((c.source_id.source_type(), c.source_id.index()), (1, 100));
        let CounterData::Vlan(pv) = &c.counters[0].counter_data else {
            panic!()
        };
        assert_eq!(
            (
                pv.vlan_id,
                pv.octets,
                pv.ucast_pkts,
                pv.multicast_pkts,
                pv.broadcast_pkts,
                pv.discards
            ),
            (100, 5_000_000_000, 9, 8, 7, 0)
        );
    }

    #[test]
    fn pack_respects_the_size_limit_and_numbers_datagrams() {
        let samples: Vec<Sample> = (0..20).map(|i| flow(i, vec![0xab; 128])).collect();
        let one = samples[0].encoded_len();
        let mut seq = 100;
        let ds = pack(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 1, samples, 1400, || {
            seq += 1;
            seq
        });
        let per = (1400 - 28) / one;
        assert_eq!(ds.len(), 20usize.div_ceil(per));
        let mut n = 0;
        for (i, d) in ds.iter().enumerate() {
            assert_eq!(d.sequence, 101 + i as u32);
            let bytes = d.encode();
            assert!(bytes.len() <= 1400, "{}", bytes.len());
            let p = sflow_parser::parse_datagram(&bytes).expect("parses");
            for s in &p.samples {
                let SampleData::FlowSample(f) = &s.sample_data else {
                    panic!()
                };
                assert_eq!(f.sequence_number, n);
                n += 1;
            }
        }
        assert_eq!(n, 20);
    }

    #[test]
    fn oversized_sample_goes_out_alone() {
        let ds = pack(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            0,
            1,
            vec![flow(0, vec![1; 256]), flow(1, vec![1; 4])],
            100,
            || 1,
        );
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].samples.len(), 1);
    }

    #[test]
    fn vlan_tag_is_reinserted_after_the_macs() {
        let h: Vec<u8> = (0..20).collect();
        let t = insert_vlan_tag(&h, 100, 5);
        assert_eq!(&t[..12], &h[..12]);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0xa0, 0x64]);
        assert_eq!(&t[16..], &h[12..]);
    }
}
