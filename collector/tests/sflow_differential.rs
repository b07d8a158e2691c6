//! Differential test: our zero-copy decoder against `sflow-parser` 0.7.
//!
//! - Valid datagrams (varied samples and records, IPv4 and IPv6 agents):
//!   both decoders give the same fields.
//! - Corrupted datagrams (bytes flipped, truncated, lengths changed): ours
//!   never panics; whenever sflow-parser accepts a datagram, ours decodes
//!   every sample and record of it without error and with the same fields
//!   (sflow-parser rejects a whole datagram on any error, so ours returns at
//!   least what it returns).

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::net::IpAddr;

use collector::sflow::{self, encode::*, CounterRecord, FlowRecord, IfCounters, Sample};
use sflow_parser::models::{
    core::{Address, CounterData, FlowData, SampleData},
    record_counters::GenericInterfaceCounters,
};

#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Header {
        proto: u32,
        frame_length: u32,
        stripped: u32,
        bytes: Vec<u8>,
    },
    Ip {
        length: u32,
        proto: u32,
        src: IpAddr,
        dst: IpAddr,
        sport: u32,
        dport: u32,
    },
    Switch {
        src_vlan: u32,
        dst_vlan: u32,
    },
    Generic([u64; 19]),
    Ethernet(u32, u32),
    Other(u32, u32),
}

#[derive(Debug, Clone, PartialEq)]
enum Smp {
    Flow {
        expanded: bool,
        seq: u32,
        src: (u32, u32),
        rate: u32,
        pool: u32,
        drops: u32,
        input: (u32, u32),
        output: (u32, u32),
        recs: Vec<Rec>,
    },
    Counters {
        expanded: bool,
        seq: u32,
        src: (u32, u32),
        recs: Vec<Rec>,
    },
    Other(u32, u32),
}

#[derive(Debug, Clone, PartialEq)]
struct Dg {
    agent: Option<IpAddr>,
    sub: u32,
    seq: u32,
    uptime: u32,
    samples: Vec<Smp>,
}

fn generic(c: &IfCounters) -> [u64; 19] {
    [
        c.if_index as u64,
        c.if_type as u64,
        c.if_speed,
        c.if_direction as u64,
        c.if_status as u64,
        c.in_octets,
        c.in_ucast_pkts as u64,
        c.in_multicast_pkts as u64,
        c.in_broadcast_pkts as u64,
        c.in_discards as u64,
        c.in_errors as u64,
        c.in_unknown_protos as u64,
        c.out_octets,
        c.out_ucast_pkts as u64,
        c.out_multicast_pkts as u64,
        c.out_broadcast_pkts as u64,
        c.out_discards as u64,
        c.out_errors as u64,
        c.promiscuous_mode as u64,
    ]
}

fn their_generic(c: &GenericInterfaceCounters) -> [u64; 19] {
    [
        c.if_index as u64,
        c.if_type as u64,
        c.if_speed,
        c.if_direction as u64,
        c.if_status as u64,
        c.if_in_octets,
        c.if_in_ucast_pkts as u64,
        c.if_in_multicast_pkts as u64,
        c.if_in_broadcast_pkts as u64,
        c.if_in_discards as u64,
        c.if_in_errors as u64,
        c.if_in_unknown_protos as u64,
        c.if_out_octets,
        c.if_out_ucast_pkts as u64,
        c.if_out_multicast_pkts as u64,
        c.if_out_broadcast_pkts as u64,
        c.if_out_discards as u64,
        c.if_out_errors as u64,
        c.if_promiscuous_mode as u64,
    ]
}

/// Ours, requiring every sample and record to decode.
fn ours(buf: &[u8]) -> Result<Dg, String> {
    let d = sflow::decode(buf).map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for s in d.samples() {
        samples.push(match s.map_err(|e| e.to_string())? {
            Sample::Flow(f) => {
                let mut recs = Vec::new();
                for r in f.records() {
                    recs.push(match r.map_err(|e| e.to_string())? {
                        FlowRecord::RawHeader {
                            protocol,
                            frame_length,
                            stripped,
                            header,
                        } => Rec::Header {
                            proto: protocol,
                            frame_length,
                            stripped,
                            bytes: header.to_vec(),
                        },
                        FlowRecord::Ipv4 {
                            length,
                            protocol,
                            src,
                            dst,
                            src_port,
                            dst_port,
                        } => Rec::Ip {
                            length,
                            proto: protocol,
                            src: src.into(),
                            dst: dst.into(),
                            sport: src_port,
                            dport: dst_port,
                        },
                        FlowRecord::Ipv6 {
                            length,
                            protocol,
                            src,
                            dst,
                            src_port,
                            dst_port,
                        } => Rec::Ip {
                            length,
                            proto: protocol,
                            src: src.into(),
                            dst: dst.into(),
                            sport: src_port,
                            dport: dst_port,
                        },
                        FlowRecord::ExtendedSwitch {
                            src_vlan, dst_vlan, ..
                        } => Rec::Switch { src_vlan, dst_vlan },
                        FlowRecord::Other {
                            enterprise, format, ..
                        } => Rec::Other(enterprise, format),
                        _ => unreachable!(),
                    });
                }
                Smp::Flow {
                    expanded: f.expanded,
                    seq: f.sequence,
                    src: (f.source.kind, f.source.index),
                    rate: f.sampling_rate,
                    pool: f.sample_pool,
                    drops: f.drops,
                    input: (f.input.format, f.input.value),
                    output: (f.output.format, f.output.value),
                    recs,
                }
            }
            Sample::Counters(c) => {
                let mut recs = Vec::new();
                for r in c.records() {
                    recs.push(match r.map_err(|e| e.to_string())? {
                        CounterRecord::Generic(g) => Rec::Generic(generic(&g)),
                        CounterRecord::Ethernet(e) => Rec::Ethernet(e.fcs_errors, e.symbol_errors),
                        CounterRecord::Other {
                            enterprise, format, ..
                        } => Rec::Other(enterprise, format),
                        _ => unreachable!(),
                    });
                }
                Smp::Counters {
                    expanded: c.expanded,
                    seq: c.sequence,
                    src: (c.source.kind, c.source.index),
                    recs,
                }
            }
            Sample::Other {
                enterprise, format, ..
            } => Smp::Other(enterprise, format),
            _ => unreachable!(),
        });
    }
    Ok(Dg {
        agent: d.agent,
        sub: d.sub_agent_id,
        seq: d.sequence,
        uptime: d.uptime_ms,
        samples,
    })
}

fn theirs(buf: &[u8]) -> Option<Dg> {
    let d = sflow_parser::parse_datagram(buf).ok()?;
    let agent = match d.agent_address {
        Address::Unknown => None,
        Address::IPv4(a) => Some(IpAddr::V4(a)),
        Address::IPv6(a) => Some(IpAddr::V6(a)),
    };
    let flow_recs = |rs: &[sflow_parser::models::core::FlowRecord]| -> Vec<Rec> {
        rs.iter()
            .map(|r| match &r.flow_data {
                FlowData::SampledHeader(h) => Rec::Header {
                    proto: h.protocol as u32,
                    frame_length: h.frame_length,
                    stripped: h.stripped,
                    bytes: h.header.clone(),
                },
                FlowData::SampledIpv4(i) => Rec::Ip {
                    length: i.length,
                    proto: i.protocol,
                    src: i.src_ip.into(),
                    dst: i.dst_ip.into(),
                    sport: i.src_port,
                    dport: i.dst_port,
                },
                FlowData::SampledIpv6(i) => Rec::Ip {
                    length: i.length,
                    proto: i.protocol,
                    src: i.src_ip.into(),
                    dst: i.dst_ip.into(),
                    sport: i.src_port,
                    dport: i.dst_port,
                },
                FlowData::ExtendedSwitch(s) => Rec::Switch {
                    src_vlan: s.src_vlan,
                    dst_vlan: s.dst_vlan,
                },
                _ => Rec::Other(r.flow_format.enterprise(), r.flow_format.format()),
            })
            .collect()
    };
    let samples = d
        .samples
        .iter()
        .map(|s| match &s.sample_data {
            SampleData::FlowSample(f) => Smp::Flow {
                expanded: false,
                seq: f.sequence_number,
                src: (f.source_id.source_type() as u32, f.source_id.index()),
                rate: f.sampling_rate,
                pool: f.sample_pool,
                drops: f.drops,
                input: (f.input.0 >> 30, f.input.0 & 0x3fff_ffff),
                output: (f.output.0 >> 30, f.output.0 & 0x3fff_ffff),
                recs: flow_recs(&f.flow_records),
            },
            SampleData::FlowSampleExpanded(f) => Smp::Flow {
                expanded: true,
                seq: f.sequence_number,
                src: (f.source_id.source_id_type, f.source_id.source_id_index),
                rate: f.sampling_rate,
                pool: f.sample_pool,
                drops: f.drops,
                input: (f.input.format, f.input.value),
                output: (f.output.format, f.output.value),
                recs: flow_recs(&f.flow_records),
            },
            SampleData::CountersSample(c) => Smp::Counters {
                expanded: false,
                seq: c.sequence_number,
                src: (c.source_id.source_type() as u32, c.source_id.index()),
                recs: counter_recs(&c.counters),
            },
            SampleData::CountersSampleExpanded(c) => Smp::Counters {
                expanded: true,
                seq: c.sequence_number,
                src: (c.source_id.source_id_type, c.source_id.source_id_index),
                recs: counter_recs(&c.counters),
            },
            _ => Smp::Other(s.sample_type.enterprise(), s.sample_type.format()),
        })
        .collect();
    Some(Dg {
        agent,
        sub: d.sub_agent_id,
        seq: d.sequence_number,
        uptime: d.uptime,
        samples,
    })
}

fn counter_recs(rs: &[sflow_parser::models::core::CounterRecord]) -> Vec<Rec> {
    rs.iter()
        .map(|r| match &r.counter_data {
            CounterData::GenericInterface(g) => Rec::Generic(their_generic(g)),
            CounterData::EthernetInterface(e) => {
                Rec::Ethernet(e.dot3_stats_fcs_errors, e.dot3_stats_symbol_errors)
            }
            _ => Rec::Other(r.counter_format.enterprise(), r.counter_format.format()),
        })
        .collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_datagram(r: &mut Rng) -> Vec<u8> {
    let ip = |r: &mut Rng, v6: bool| -> IpAddr {
        if v6 {
            IpAddr::V6(((0x2001_0db8u128 << 96) | r.next() as u128).into())
        } else {
            IpAddr::V4((0x0a00_0000 | (r.next() as u32 & 0xffffff)).into())
        }
    };
    let n = r.below(8) as usize;
    let samples = (0..n)
        .map(|i| match r.below(4) {
            0 | 1 => {
                let v6 = r.below(3) == 0;
                let (a, b) = (ip(r, v6), ip(r, v6));
                let vl: Vec<u16> = (0..r.below(3))
                    .map(|_| (r.below(4094) + 1) as u16)
                    .collect();
                let mut h = frame(&vl, a, b, if r.below(2) == 0 { 6 } else { 17 }, 1, 2, 1000);
                h.truncate(14 + r.below(h.len() as u64 - 13) as usize);
                let mut recs = vec![FlowRec::RawHeader {
                    protocol: [1, 11, 12][r.below(3) as usize],
                    frame_length: r.below(9000) as u32,
                    stripped: 4,
                    header: h,
                }];
                if r.below(2) == 0 {
                    recs.push(FlowRec::ExtendedSwitch {
                        src_vlan: r.below(4096) as u32,
                        dst_vlan: r.below(4096) as u32,
                    });
                }
                if r.below(3) == 0 {
                    recs.push(FlowRec::Ipv4 {
                        length: 1500,
                        protocol: 6,
                        src: [10, 0, 0, 1],
                        dst: [10, 0, 0, 2],
                        src_port: 80,
                        dst_port: 1234,
                    });
                }
                if r.below(4) == 0 {
                    recs.push(FlowRec::Raw {
                        enterprise: 0,
                        format: 1036,
                        body: vec![7; 8],
                    });
                }
                SampleSpec::Flow {
                    expanded: r.below(2) == 0,
                    sequence: r.next() as u32,
                    source_index: r.next() as u32 & 0xffffff,
                    sampling_rate: r.next() as u32,
                    sample_pool: r.next() as u32,
                    drops: r.next() as u32,
                    input: r.next() as u32,
                    output: r.next() as u32,
                    records: recs,
                }
            }
            2 => SampleSpec::Counters {
                expanded: r.below(2) == 0,
                sequence: i as u32,
                source_index: r.next() as u32 & 0xffffff,
                records: vec![
                    CounterRec::Generic(IfCounters {
                        if_index: r.next() as u32,
                        in_octets: r.next(),
                        out_errors: r.next() as u32,
                        if_speed: r.next(),
                        ..Default::default()
                    }),
                    CounterRec::Ethernet(sflow::EthCounters {
                        fcs_errors: r.next() as u32,
                        symbol_errors: 3,
                        ..Default::default()
                    }),
                ],
            },
            _ => SampleSpec::Raw {
                enterprise: 4300,
                format: 1002,
                body: vec![1, 2, 3, 4],
            },
        })
        .collect();
    let agent = match r.below(3) {
        0 => None,
        1 => Some(ip(r, false)),
        _ => Some(ip(r, true)),
    };
    datagram(&DatagramSpec {
        agent,
        sub_agent_id: r.next() as u32,
        sequence: r.next() as u32,
        uptime_ms: r.next() as u32,
        samples,
    })
}

#[test]
fn valid_datagrams_decode_identically() {
    let mut r = Rng(0x1234_5678_9abc_def1);
    for i in 0..3000 {
        let b = random_datagram(&mut r);
        let t = theirs(&b).unwrap_or_else(|| panic!("sflow-parser rejected valid datagram {i}"));
        let o = ours(&b).unwrap_or_else(|e| panic!("ours rejected valid datagram {i}: {e}"));
        assert_eq!(o, t, "datagram {i}");
    }
}

#[test]
fn corrupted_datagrams_never_lose_what_sflow_parser_keeps() {
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let (mut both, mut only_ours_partial, mut total) = (0, 0, 0);
    for _ in 0..20_000 {
        let mut b = random_datagram(&mut r);
        if b.is_empty() {
            continue;
        }
        match r.below(4) {
            0 => {
                let i = r.below(b.len() as u64) as usize;
                b[i] ^= 1 << r.below(8);
            }
            1 => b.truncate(r.below(b.len() as u64) as usize),
            2 => {
                // Corrupt a 32-bit word (often a length or a count).
                let i = (r.below(b.len() as u64 / 4) * 4) as usize;
                let v = r.next() as u32 % 300;
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => {
                let i = r.below(b.len() as u64) as usize;
                b.insert(i, r.next() as u8);
            }
        }
        total += 1;
        // Ours must never panic, whatever the input; walk everything.
        if let Ok(d) = sflow::decode(&b) {
            for s in d.samples() {
                match s {
                    Ok(Sample::Flow(f)) => f.records().for_each(drop),
                    Ok(Sample::Counters(c)) => c.records().for_each(drop),
                    _ => {}
                }
            }
        }
        match theirs(&b) {
            Some(t) => {
                let o = ours(&b)
                    .unwrap_or_else(|e| panic!("sflow-parser accepts, ours fails: {e}\n{b:02x?}"));
                assert_eq!(o, t);
                both += 1;
            }
            None => {
                if sflow::decode(&b).is_ok_and(|d| d.samples().any(|s| s.is_ok())) {
                    only_ours_partial += 1;
                }
            }
        }
    }
    eprintln!("{total} corrupted datagrams: {both} accepted by both; {only_ours_partial} rejected by sflow-parser with samples still read by ours");
    assert!(
        both > 1000 && only_ours_partial > 1000,
        "the corpus should exercise both cases"
    );
}

/// The synthetic seeds of the fuzz corpus (collector/fuzz/corpus) are what
/// this generator produces, byte for byte: a change to the generators shows
/// up here. `COLLECTOR_WRITE_SEEDS=1 cargo test -p collector --test
/// sflow_differential fuzz_seeds` rewrites them.
#[test]
fn fuzz_seeds_match_the_generators() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = std::env::var_os("COLLECTOR_WRITE_SEEDS").is_some();
    let mut checked = 0;
    let mut put = |path: std::path::PathBuf, bytes: Vec<u8>| {
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (COLLECTOR_WRITE_SEEDS=1 writes it)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{} differs from its generator",
                path.display()
            );
        }
        checked += 1;
    };
    let mut r = Rng(0x5eed_5eed_5eed_5eed);
    for i in 0..24 {
        put(
            root.join(format!("datagram/synthetic-{i}")),
            random_datagram(&mut r),
        );
    }
    let hosts: [(IpAddr, IpAddr); 2] = [
        ("10.0.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()),
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        ),
    ];
    for (i, vlans) in [&[][..], &[10], &[100, 200]].iter().enumerate() {
        for (j, (a, b)) in hosts.iter().enumerate() {
            let f = frame(vlans, *a, *b, if j == 0 { 6 } else { 17 }, 1234, 80, 100);
            let mut eth = vec![0u8];
            eth.extend_from_slice(&f);
            put(root.join(format!("header/synthetic-eth-{i}-{j}")), eth);
            if i == 0 {
                let mut ip = vec![if j == 0 { 1u8 } else { 2 }];
                ip.extend_from_slice(&f[14..]);
                put(root.join(format!("header/synthetic-ip-{j}")), ip);
            }
        }
    }
    assert_eq!(checked, 24 + 6 + 2, "every seed written or checked");
}
