use std::net::{IpAddr, Ipv4Addr};

use super::encode::*;
use super::*;

/// A datagram written out byte by byte from the sFlow v5 spec, not with our
/// encoder: one compact flow sample with one sampled-header record.
#[rustfmt::skip]
const HAND_MADE: &[u8] = &[
    0, 0, 0, 5,             // version
    0, 0, 0, 1, 192, 0, 2, 1, // agent address IPv4 192.0.2.1
    0, 0, 0, 7,             // sub_agent_id
    0, 0, 1, 0,             // sequence 256
    0, 0, 0x27, 0x10,       // uptime 10000 ms
    0, 0, 0, 1,             // 1 sample
    0, 0, 0, 1,             // sample format (0,1) flow sample
    0, 0, 0, 76,            // sample length
      0, 0, 0, 9,           // sample sequence
      0, 0, 0, 3,           // source id: type 0, index 3
      0, 0, 1, 0,           // sampling rate 256
      0, 0, 16, 0,          // sample pool 4096
      0, 0, 0, 2,           // drops 2
      0, 0, 0, 3,           // input ifIndex 3
      0x40, 0, 0, 1,        // output: discarded, reason 1
      0, 0, 0, 1,           // 1 record
      0, 0, 0, 1,           // record format (0,1) raw header
      0, 0, 0, 36,          // record length
        0, 0, 0, 1,         // header protocol ethernet
        0, 0, 5, 0xdc,      // frame length 1500
        0, 0, 0, 4,         // stripped 4
        0, 0, 0, 18,        // header length 18
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0x45, 0, 0, 20, 0, 0, // 18 bytes + 2 pad
];

#[test]
fn decodes_hand_made_datagram_byte_by_byte() {
    let d = decode(HAND_MADE).unwrap();
    assert_eq!(d.agent, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(
        (d.sub_agent_id, d.sequence, d.uptime_ms, d.num_samples),
        (7, 256, 10000, 1)
    );
    let samples: Vec<_> = d.samples().collect();
    assert_eq!(samples.len(), 1);
    let Ok(Sample::Flow(f)) = &samples[0] else {
        panic!("{samples:?}")
    };
    assert!(!f.expanded);
    assert_eq!(
        (
            f.sequence,
            f.source,
            f.sampling_rate,
            f.sample_pool,
            f.drops
        ),
        (9, SourceId { kind: 0, index: 3 }, 256, 4096, 2)
    );
    assert_eq!(f.input_ifindex(), Some(3));
    assert_eq!(f.output_ifindex(), None);
    let recs: Vec<_> = f.records().collect();
    assert_eq!(
        recs,
        vec![Ok(FlowRecord::RawHeader {
            protocol: 1,
            frame_length: 1500,
            stripped: 4,
            header: &HAND_MADE[HAND_MADE.len() - 20..HAND_MADE.len() - 2],
        })]
    );
}

#[test]
fn encoder_matches_hand_made_bytes() {
    let d = DatagramSpec {
        agent: Some("192.0.2.1".parse().unwrap()),
        sub_agent_id: 7,
        sequence: 256,
        uptime_ms: 10000,
        samples: vec![SampleSpec::Flow {
            expanded: false,
            sequence: 9,
            source_index: 3,
            sampling_rate: 256,
            sample_pool: 4096,
            drops: 2,
            input: 3,
            output: 0x4000_0001,
            records: vec![FlowRec::RawHeader {
                protocol: 1,
                frame_length: 1500,
                stripped: 4,
                header: HAND_MADE[HAND_MADE.len() - 20..HAND_MADE.len() - 2].to_vec(),
            }],
        }],
    };
    assert_eq!(datagram(&d), HAND_MADE);
}

#[test]
fn header_errors() {
    assert_eq!(decode(&[0, 0, 0, 4]).unwrap_err(), DecodeError::Version(4));
    assert_eq!(
        decode(&[0, 0, 0, 5, 0, 0, 0, 3]).unwrap_err(),
        DecodeError::AddressType(3)
    );
    assert!(matches!(
        decode(&HAND_MADE[..20]).unwrap_err(),
        DecodeError::Truncated { .. }
    ));
    assert!(matches!(
        decode(&[]).unwrap_err(),
        DecodeError::Truncated {
            what: "version",
            offset: 0
        }
    ));
}

fn good_flow(seq: u32) -> SampleSpec {
    SampleSpec::Flow {
        expanded: seq % 2 == 1,
        sequence: seq,
        source_index: 1,
        sampling_rate: 100,
        sample_pool: 100 * seq,
        drops: 0,
        input: 1,
        output: 2,
        records: vec![
            FlowRec::RawHeader {
                protocol: 1,
                frame_length: 1000,
                stripped: 4,
                header: frame(
                    &[],
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.2".parse().unwrap(),
                    6,
                    1,
                    2,
                    900,
                ),
            },
            FlowRec::ExtendedSwitch {
                src_vlan: 5,
                dst_vlan: 6,
            },
        ],
    }
}

#[test]
fn malformed_sample_does_not_discard_neighbours() {
    let d = DatagramSpec {
        agent: None,
        sub_agent_id: 0,
        sequence: 1,
        uptime_ms: 0,
        samples: vec![
            good_flow(1),
            // A flow sample whose body is cut short: the sample errors alone.
            SampleSpec::Raw {
                enterprise: 0,
                format: 1,
                body: vec![0, 0, 0, 1, 0, 0],
            },
            SampleSpec::Raw {
                enterprise: 9,
                format: 9,
                body: vec![1, 2, 3],
            },
            good_flow(2),
        ],
    };
    let bytes = datagram(&d);
    let dg = decode(&bytes).unwrap();
    let s: Vec<_> = dg.samples().collect();
    assert_eq!(s.len(), 4);
    assert!(matches!(s[0], Ok(Sample::Flow(_))));
    assert!(matches!(s[1], Err(DecodeError::Truncated { .. })));
    assert!(matches!(
        s[2],
        Ok(Sample::Other {
            enterprise: 9,
            format: 9,
            data: [1, 2, 3]
        })
    ));
    let Ok(Sample::Flow(f)) = &s[3] else { panic!() };
    assert!(!f.expanded);
    assert_eq!(f.sequence, 2);
}

#[test]
fn malformed_record_does_not_discard_neighbours() {
    let mut spec = good_flow(3);
    if let SampleSpec::Flow { records, .. } = &mut spec {
        // An IPv4 record 8 bytes long: truncated inside it.
        records.insert(
            0,
            FlowRec::Raw {
                enterprise: 0,
                format: 3,
                body: vec![0; 8],
            },
        );
    }
    let bytes = datagram(&DatagramSpec {
        agent: None,
        sub_agent_id: 0,
        sequence: 1,
        uptime_ms: 0,
        samples: vec![spec],
    });
    let dg = decode(&bytes).unwrap();
    let Some(Ok(Sample::Flow(f))) = dg.samples().next() else {
        panic!()
    };
    assert!(f.expanded);
    let r: Vec<_> = f.records().collect();
    assert_eq!(r.len(), 3);
    assert!(r[0].is_err());
    assert!(matches!(
        r[1],
        Ok(FlowRecord::RawHeader {
            frame_length: 1000,
            ..
        })
    ));
    assert_eq!(
        r[2],
        Ok(FlowRecord::ExtendedSwitch {
            src_vlan: 5,
            src_priority: 0,
            dst_vlan: 6,
            dst_priority: 0
        })
    );
}

#[test]
fn truncated_tail_keeps_earlier_samples() {
    let d = DatagramSpec {
        agent: None,
        sub_agent_id: 0,
        sequence: 1,
        uptime_ms: 0,
        samples: vec![good_flow(1), good_flow(2)],
    };
    let bytes = datagram(&d);
    let cut = &bytes[..bytes.len() - 10];
    let dg = decode(cut).unwrap();
    let s: Vec<_> = dg.samples().collect();
    assert_eq!(s.len(), 2);
    assert!(s[0].is_ok());
    assert!(matches!(
        s[1],
        Err(DecodeError::Truncated { what: "sample", .. })
    ));
    // A count larger than the samples present: one framing error, then the end.
    let mut more = bytes.clone();
    more[23] = 5; // num_samples (agent type 0: 20 header bytes, then the count)
    let dg = decode(&more).unwrap();
    assert_eq!(dg.num_samples, 5);
    let s: Vec<_> = dg.samples().collect();
    assert_eq!(s.len(), 3);
    assert!(s[2].is_err());
}

#[test]
fn counters_generic_and_ethernet() {
    let g = IfCounters {
        if_index: 7,
        if_type: 6,
        if_speed: 10_000_000_000,
        if_direction: 1,
        if_status: 3,
        in_octets: u64::MAX - 5,
        in_ucast_pkts: 1,
        in_multicast_pkts: 2,
        in_broadcast_pkts: 3,
        in_discards: 4,
        in_errors: 5,
        in_unknown_protos: 6,
        out_octets: 1 << 40,
        out_ucast_pkts: 7,
        out_multicast_pkts: 8,
        out_broadcast_pkts: 9,
        out_discards: 10,
        out_errors: 11,
        promiscuous_mode: 0,
    };
    let e = EthCounters {
        fcs_errors: 42,
        symbol_errors: 1,
        ..Default::default()
    };
    let d = DatagramSpec {
        agent: Some("2001:db8::5".parse().unwrap()),
        sub_agent_id: 1,
        sequence: 1,
        uptime_ms: 0,
        samples: vec![SampleSpec::Counters {
            expanded: true,
            sequence: 4,
            source_index: 7,
            records: vec![
                CounterRec::Generic(g),
                CounterRec::Ethernet(e),
                CounterRec::Raw {
                    enterprise: 0,
                    format: 1,
                    body: vec![0; 12],
                },
            ],
        }],
    };
    let bytes = datagram(&d);
    let dg = decode(&bytes).unwrap();
    assert_eq!(dg.agent, Some("2001:db8::5".parse().unwrap()));
    let Some(Ok(Sample::Counters(c))) = dg.samples().next() else {
        panic!()
    };
    assert_eq!((c.expanded, c.sequence, c.source.index), (true, 4, 7));
    let r: Vec<_> = c.records().collect();
    assert_eq!(r[0], Ok(CounterRecord::Generic(g)));
    assert_eq!(r[1], Ok(CounterRecord::Ethernet(e)));
    assert!(r[2].is_err());
}

#[test]
fn absurd_lengths_are_errors_not_panics() {
    let mut w = XdrWriter::default();
    w.u32(5)
        .u32(0)
        .u32(0)
        .u32(0)
        .u32(0)
        .u32(1)
        .u32(1)
        .u32(u32::MAX);
    let dg = decode(&w.buf).unwrap();
    let s: Vec<_> = dg.samples().collect();
    assert!(matches!(s[..], [Err(DecodeError::Truncated { .. })]));
}
