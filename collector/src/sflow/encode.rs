//! An sFlow v5 encoder for tests, fuzz seeds and the benchmark: builds
//! byte-exact datagrams from plain values. Not used on the ingest path.

use std::net::IpAddr;

use super::{EthCounters, IfCounters};

/// Appends XDR values to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct XdrWriter {
    pub buf: Vec<u8>,
}

impl XdrWriter {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn opaque(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }
    pub fn address(&mut self, a: Option<IpAddr>) -> &mut Self {
        match a {
            None => self.u32(0),
            Some(IpAddr::V4(v)) => {
                self.u32(1);
                self.buf.extend_from_slice(&v.octets());
                self
            }
            Some(IpAddr::V6(v)) => {
                self.u32(2);
                self.buf.extend_from_slice(&v.octets());
                self
            }
        }
    }
}

/// A flow record to encode.
#[derive(Debug, Clone)]
pub enum FlowRec {
    RawHeader {
        protocol: u32,
        frame_length: u32,
        stripped: u32,
        header: Vec<u8>,
    },
    Ipv4 {
        length: u32,
        protocol: u32,
        src: [u8; 4],
        dst: [u8; 4],
        src_port: u32,
        dst_port: u32,
    },
    ExtendedSwitch {
        src_vlan: u32,
        dst_vlan: u32,
    },
    /// Raw (enterprise, format, body) for unknown or deliberately broken records.
    Raw {
        enterprise: u32,
        format: u32,
        body: Vec<u8>,
    },
}

/// A counter record to encode.
#[derive(Debug, Clone)]
pub enum CounterRec {
    Generic(IfCounters),
    Ethernet(EthCounters),
    Raw {
        enterprise: u32,
        format: u32,
        body: Vec<u8>,
    },
}

/// A sample to encode.
#[derive(Debug, Clone)]
pub enum SampleSpec {
    Flow {
        expanded: bool,
        sequence: u32,
        source_index: u32,
        sampling_rate: u32,
        sample_pool: u32,
        drops: u32,
        input: u32,
        output: u32,
        records: Vec<FlowRec>,
    },
    Counters {
        expanded: bool,
        sequence: u32,
        source_index: u32,
        records: Vec<CounterRec>,
    },
    Raw {
        enterprise: u32,
        format: u32,
        body: Vec<u8>,
    },
}

/// A whole datagram to encode.
#[derive(Debug, Clone)]
pub struct DatagramSpec {
    pub agent: Option<IpAddr>,
    pub sub_agent_id: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub samples: Vec<SampleSpec>,
}

fn flow_rec(w: &mut XdrWriter, r: &FlowRec) {
    let mut b = XdrWriter::default();
    let fmt = match r {
        FlowRec::RawHeader {
            protocol,
            frame_length,
            stripped,
            header,
        } => {
            b.u32(*protocol)
                .u32(*frame_length)
                .u32(*stripped)
                .opaque(header);
            1
        }
        FlowRec::Ipv4 {
            length,
            protocol,
            src,
            dst,
            src_port,
            dst_port,
        } => {
            b.u32(*length).u32(*protocol);
            b.buf.extend_from_slice(src);
            b.buf.extend_from_slice(dst);
            b.u32(*src_port).u32(*dst_port).u32(0).u32(0);
            3
        }
        FlowRec::ExtendedSwitch { src_vlan, dst_vlan } => {
            b.u32(*src_vlan).u32(0).u32(*dst_vlan).u32(0);
            1001
        }
        FlowRec::Raw {
            enterprise,
            format,
            body,
        } => {
            w.u32(enterprise << 12 | format).opaque(body);
            return;
        }
    };
    w.u32(fmt).opaque(&b.buf);
}

fn counter_rec(w: &mut XdrWriter, r: &CounterRec) {
    let mut b = XdrWriter::default();
    let fmt = match r {
        CounterRec::Generic(c) => {
            b.u32(c.if_index)
                .u32(c.if_type)
                .u64(c.if_speed)
                .u32(c.if_direction)
                .u32(c.if_status);
            b.u64(c.in_octets)
                .u32(c.in_ucast_pkts)
                .u32(c.in_multicast_pkts)
                .u32(c.in_broadcast_pkts);
            b.u32(c.in_discards)
                .u32(c.in_errors)
                .u32(c.in_unknown_protos);
            b.u64(c.out_octets)
                .u32(c.out_ucast_pkts)
                .u32(c.out_multicast_pkts)
                .u32(c.out_broadcast_pkts);
            b.u32(c.out_discards)
                .u32(c.out_errors)
                .u32(c.promiscuous_mode);
            1
        }
        CounterRec::Ethernet(e) => {
            for v in [
                e.alignment_errors,
                e.fcs_errors,
                e.single_collision_frames,
                e.multiple_collision_frames,
                e.sqe_test_errors,
                e.deferred_transmissions,
                e.late_collisions,
                e.excessive_collisions,
                e.internal_mac_transmit_errors,
                e.carrier_sense_errors,
                e.frame_too_longs,
                e.internal_mac_receive_errors,
                e.symbol_errors,
            ] {
                b.u32(v);
            }
            2
        }
        CounterRec::Raw {
            enterprise,
            format,
            body,
        } => {
            w.u32(enterprise << 12 | format).opaque(body);
            return;
        }
    };
    w.u32(fmt).opaque(&b.buf);
}

/// Encodes one sample (format word + opaque body).
pub fn sample(w: &mut XdrWriter, s: &SampleSpec) {
    let mut b = XdrWriter::default();
    let fmt = match s {
        SampleSpec::Flow {
            expanded,
            sequence,
            source_index,
            sampling_rate,
            sample_pool,
            drops,
            input,
            output,
            records,
        } => {
            b.u32(*sequence);
            if *expanded {
                b.u32(0).u32(*source_index);
            } else {
                b.u32(*source_index & 0x00ff_ffff);
            }
            b.u32(*sampling_rate).u32(*sample_pool).u32(*drops);
            if *expanded {
                b.u32(input >> 30)
                    .u32(input & 0x3fff_ffff)
                    .u32(output >> 30)
                    .u32(output & 0x3fff_ffff);
            } else {
                b.u32(*input).u32(*output);
            }
            b.u32(records.len() as u32);
            for r in records {
                flow_rec(&mut b, r);
            }
            if *expanded {
                3
            } else {
                1
            }
        }
        SampleSpec::Counters {
            expanded,
            sequence,
            source_index,
            records,
        } => {
            b.u32(*sequence);
            if *expanded {
                b.u32(0).u32(*source_index);
            } else {
                b.u32(*source_index & 0x00ff_ffff);
            }
            b.u32(records.len() as u32);
            for r in records {
                counter_rec(&mut b, r);
            }
            if *expanded {
                4
            } else {
                2
            }
        }
        SampleSpec::Raw {
            enterprise,
            format,
            body,
        } => {
            w.u32(enterprise << 12 | format).opaque(body);
            return;
        }
    };
    w.u32(fmt).opaque(&b.buf);
}

/// Encodes a whole datagram.
pub fn datagram(d: &DatagramSpec) -> Vec<u8> {
    let mut w = XdrWriter::default();
    w.u32(5)
        .address(d.agent)
        .u32(d.sub_agent_id)
        .u32(d.sequence)
        .u32(d.uptime_ms);
    w.u32(d.samples.len() as u32);
    for s in &d.samples {
        sample(&mut w, s);
    }
    w.buf
}

/// Builds an Ethernet (+ optional 802.1Q tags) + IPv4/IPv6 + TCP/UDP frame
/// for sampled-header records. `vlans` are outer first; two give QinQ
/// (outer 0x88a8). `proto` is 6 (TCP) or 17 (UDP). `payload_len` is the
/// L4 payload length written into the IP header (the bytes are not included:
/// a sampled header is truncated).
pub fn frame(
    vlans: &[u16],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    payload_len: u16,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]); // dst mac
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // src mac
    for (i, v) in vlans.iter().enumerate() {
        let tpid: u16 = if i == 0 && vlans.len() > 1 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    let l4_len: u16 = if proto == 6 { 20 } else { 8 };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = 20 + l4_len + payload_len;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let mut sum: u32 = 0;
            for c in h.chunks(2) {
                sum += u16::from_be_bytes([c[0], c[1]]) as u32;
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4_len + payload_len).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            f.extend_from_slice(&h);
        }
        _ => panic!("mixed address families"),
    }
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&(8 + payload_len).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f
}
