use std::net::IpAddr;

use super::*;
use crate::sflow::encode::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn table() -> Arc<SubnetTable> {
    Arc::new(
        SubnetTable::new(
            [
                "10.0.0.0/24",
                "10.0.1.0/24",
                "2001:db8::/64",
                "10.0.0.128/25",
            ]
            .iter()
            .map(|s| s.parse().unwrap()),
        )
        .unwrap(),
    )
}

fn flow(seq: u32, rate: u32, drops: u32, src: &str, dst: &str, frame_length: u32) -> SampleSpec {
    SampleSpec::Flow {
        expanded: false,
        sequence: seq,
        source_index: 1,
        sampling_rate: rate,
        sample_pool: 0,
        drops,
        input: 1,
        output: 2,
        records: vec![
            FlowRec::ExtendedSwitch {
                src_vlan: 1,
                dst_vlan: 1,
            },
            FlowRec::RawHeader {
                protocol: 1,
                frame_length,
                stripped: 4,
                header: frame(&[10], ip(src), ip(dst), 6, 1, 2, 100),
            },
            // A second IP record in the same sample must not be counted.
            FlowRec::Ipv4 {
                length: 999,
                protocol: 6,
                src: [10, 0, 1, 1],
                dst: [10, 0, 1, 2],
                src_port: 1,
                dst_port: 2,
            },
        ],
    }
}

fn dg(seq: u32, samples: Vec<SampleSpec>) -> Vec<u8> {
    datagram(&DatagramSpec {
        agent: Some(ip("192.0.2.1")),
        sub_agent_id: 0,
        sequence: seq,
        uptime_ms: 0,
        samples,
    })
}

fn totals(s: &mut Shard) -> Vec<(SubnetId, SubnetCounters)> {
    let mut v = s.drain().subnets;
    v.sort_by_key(|x| x.0);
    v
}

#[test]
fn scales_and_attributes_in_and_out() {
    let mut s = Shard::new(table());
    let b = dg(
        1,
        vec![
            flow(1, 100, 0, "10.0.0.5", "10.0.1.7", 1000),
            flow(2, 100, 0, "10.0.0.200", "198.51.100.1", 64),
        ],
    );
    s.datagram(ip("192.0.2.1"), &b, 0);
    let t = totals(&mut s);
    assert_eq!(
        t,
        vec![
            (
                0,
                SubnetCounters {
                    in_bytes: 0,
                    out_bytes: 100_000,
                    in_pkts: 0,
                    out_pkts: 100
                }
            ),
            (
                1,
                SubnetCounters {
                    in_bytes: 100_000,
                    out_bytes: 0,
                    in_pkts: 100,
                    out_pkts: 0
                }
            ),
            // 10.0.0.200 is in the more specific 10.0.0.128/25.
            (
                3,
                SubnetCounters {
                    in_bytes: 0,
                    out_bytes: 6400,
                    in_pkts: 0,
                    out_pkts: 100
                }
            ),
        ]
    );
    assert_eq!(s.stats.flow_samples_attributed, 2);
    // Drained: nothing left.
    assert!(s.drain().subnets.is_empty());
}

#[test]
fn effective_rate_with_agent_drops() {
    let mut s = Shard::new(table());
    // drops: 5 (baseline), 5, 8 (+3), 2 (restart: nothing), 4 (+2).
    let samples = [5, 5, 8, 2, 4]
        .iter()
        .enumerate()
        .map(|(i, d)| flow(i as u32, 10, *d, "10.0.0.1", "203.0.113.1", 100))
        .collect();
    s.datagram(ip("192.0.2.1"), &dg(1, samples), 0);
    let t = totals(&mut s);
    // packets: 10 * (1 + 1 + 4 + 1 + 3) = 100
    assert_eq!(
        t,
        vec![(
            0,
            SubnetCounters {
                in_bytes: 0,
                out_bytes: 10_000,
                in_pkts: 0,
                out_pkts: 100
            }
        )]
    );
    assert_eq!(s.stats.agent_drops, 5);
}

#[test]
fn every_sample_has_one_outcome() {
    let mut s = Shard::new(table());
    let samples = vec![
        flow(1, 1, 0, "10.0.0.1", "10.0.0.2", 100), // attributed (both ends)
        flow(2, 1, 0, "192.0.2.9", "198.51.100.9", 100), // unattributed
        flow(3, 0, 0, "10.0.0.1", "10.0.0.2", 100), // zero rate
        SampleSpec::Flow {
            expanded: true,
            sequence: 4,
            source_index: 1,
            sampling_rate: 1,
            sample_pool: 0,
            drops: 0,
            input: 0,
            output: 0,
            records: vec![FlowRec::RawHeader {
                protocol: 1,
                frame_length: 60,
                stripped: 0,
                header: vec![0xff; 12]
                    .into_iter()
                    .chain([0x08, 0x06])
                    .chain([0; 28])
                    .collect(),
            }],
        }, // ARP: no IP
        SampleSpec::Counters {
            expanded: false,
            sequence: 1,
            source_index: 3,
            records: vec![CounterRec::Generic(sflow::IfCounters {
                if_index: 3,
                in_octets: 42,
                ..Default::default()
            })],
        },
        SampleSpec::Raw {
            enterprise: 0,
            format: 1,
            body: vec![0; 6],
        }, // broken flow sample
        SampleSpec::Raw {
            enterprise: 4300,
            format: 1002,
            body: vec![],
        },
    ];
    s.datagram(ip("192.0.2.1"), &dg(7, samples), 55);
    s.datagram(ip("192.0.2.1"), &[0, 0, 0, 4], 55);
    let st = &s.stats;
    assert_eq!(st.datagrams, 2);
    assert_eq!(st.datagrams_rejected, 1);
    assert_eq!(st.flow_samples, 4);
    assert_eq!(
        st.flow_samples,
        st.flow_samples_attributed
            + st.flow_samples_unattributed
            + st.flow_samples_zero_rate
            + st.flow_samples_no_ip
    );
    assert_eq!(
        (
            st.flow_samples_attributed,
            st.flow_samples_unattributed,
            st.flow_samples_zero_rate,
            st.flow_samples_no_ip
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(st.counter_samples, 1);
    assert_eq!(st.other_samples, 1);
    assert_eq!(st.errors.get("sample.truncated"), Some(&1));
    assert_eq!(st.errors.get("datagram.version"), Some(&1));
    assert_eq!(st.errors.get("header.header_not_ip"), Some(&1));
    let d = s.drain();
    assert_eq!(d.ifaces.len(), 1);
    assert_eq!(
        (
            d.ifaces[0].0.if_index,
            d.ifaces[0].1.in_octets,
            d.ifaces[0].2
        ),
        (3, 42, 55)
    );
    // Intra-subnet traffic: in and out of the same subnet.
    assert_eq!(
        d.subnets,
        vec![(
            0,
            SubnetCounters {
                in_bytes: 100,
                out_bytes: 100,
                in_pkts: 1,
                out_pkts: 1
            }
        )]
    );
}

#[test]
fn sequence_gaps_reorder_restart() {
    let mut s = Shard::new(table());
    for seq in [1, 2, 5, 4, 4, 6, 3, 10] {
        s.datagram(ip("192.0.2.1"), &dg(seq, vec![]), 0);
    }
    let a = s.agents()[&AgentKey {
        agent: ip("192.0.2.1"),
        sub_agent: 0,
    }];
    // 1,2 | 5: 3,4 lost (2) | 4: late (1) | 4 again: also behind 5, late (0)
    // | 6 | 3: late (stays 0) | 10: 7,8,9 lost (3). Truly missing: 7, 8, 9.
    assert_eq!(a.lost, 3);
    assert_eq!(a.out_of_order, 3);
    assert_eq!(s.stats.sequence_lost, a.lost);
    s.datagram(ip("192.0.2.1"), &dg(1_000_000, vec![]), 0);
    s.datagram(ip("192.0.2.1"), &dg(1, vec![]), 0);
    s.datagram(ip("192.0.2.1"), &dg(1, vec![]), 0);
    let a = s.agents()[&AgentKey {
        agent: ip("192.0.2.1"),
        sub_agent: 0,
    }];
    assert_eq!((a.restarts, a.duplicates, a.datagrams), (2, 1, 11));
}

/// Issue 13 item 4: the agent table is capped over all shards together (one
/// shared count), new agents beyond it are refused and counted; sources per
/// agent beyond the cap are accounted without the drops correction.
#[test]
fn agent_and_source_limits() {
    let limits = ShardLimits {
        max_agents: 2,
        max_sources_per_agent: 1,
        max_interfaces: 10,
        agents: Arc::new(AtomicUsize::new(0)),
    };
    let mut a = Shard::with_limits(table(), limits.clone());
    let mut b = Shard::with_limits(table(), limits.clone());
    let from = |agent: &str, seq: u32, drops: u32, source: u32| {
        let mut f = flow(seq, 10, drops, "10.0.0.5", "198.51.100.1", 100);
        if let SampleSpec::Flow { source_index, .. } = &mut f {
            *source_index = source;
        }
        datagram(&DatagramSpec {
            agent: Some(ip(agent)),
            sub_agent_id: 0,
            sequence: seq,
            uptime_ms: 0,
            samples: vec![f],
        })
    };
    a.datagram(ip("127.0.0.1"), &from("192.0.2.1", 1, 0, 1), 0);
    b.datagram(ip("127.0.0.1"), &from("192.0.2.2", 1, 0, 1), 0);
    // A third agent, on either shard: refused, counted, nothing accounted.
    a.datagram(ip("127.0.0.1"), &from("192.0.2.3", 1, 0, 1), 0);
    b.datagram(ip("127.0.0.1"), &from("192.0.2.3", 2, 0, 1), 0);
    assert_eq!(limits.agents.load(Ordering::Relaxed), 2);
    assert_eq!(
        (
            a.stats.datagrams_over_agent_limit,
            b.stats.datagrams_over_agent_limit
        ),
        (1, 1)
    );
    assert_eq!(a.agents().len() + b.agents().len(), 2);
    assert_eq!(a.stats.datagrams, 2);
    // Known agents go on; a second source of 192.0.2.1 is over its limit:
    // its drops (5) are not added, the tracked source's (+3) are.
    a.datagram(ip("127.0.0.1"), &from("192.0.2.1", 2, 5, 2), 0);
    a.datagram(ip("127.0.0.1"), &from("192.0.2.1", 3, 3, 1), 0);
    a.datagram(ip("127.0.0.1"), &from("192.0.2.1", 4, 9, 2), 0);
    assert_eq!(a.stats.flow_samples_over_source_limit, 2);
    assert_eq!(a.stats.agent_drops, 3);
    // 10 + 10 + 40 + 10 scaled packets out of 10.0.0.0/24.
    assert_eq!(totals(&mut a)[0].1.out_pkts, 70);
}

/// Agents idle past the expiry are forgotten, with their slot under the
/// shared cap: a new agent is then taken; an active one stays.
#[test]
fn idle_agents_expire_and_free_their_slot() {
    let limits = ShardLimits {
        max_agents: 2,
        max_sources_per_agent: 4,
        max_interfaces: 10,
        agents: Arc::new(AtomicUsize::new(0)),
    };
    let mut a = Shard::with_limits(table(), limits.clone());
    let from = |agent: &str, seq: u32| {
        datagram(&DatagramSpec {
            agent: Some(ip(agent)),
            sub_agent_id: 0,
            sequence: seq,
            uptime_ms: 0,
            samples: vec![flow(seq, 10, 0, "10.0.0.5", "198.51.100.1", 100)],
        })
    };
    a.datagram(ip("127.0.0.1"), &from("192.0.2.1", 1), 100);
    a.datagram(ip("127.0.0.1"), &from("192.0.2.2", 1), 150);
    a.datagram(ip("127.0.0.1"), &from("192.0.2.3", 1), 160);
    assert_eq!(a.stats.datagrams_over_agent_limit, 1);
    assert_eq!(a.expire(120), 1, "192.0.2.1 idle since 100");
    assert_eq!(limits.agents.load(Ordering::Relaxed), 1);
    assert_eq!(a.stats.agents_expired, 1);
    a.datagram(ip("127.0.0.1"), &from("192.0.2.3", 2), 170);
    assert_eq!(
        a.stats.datagrams_over_agent_limit, 1,
        "the freed slot is taken"
    );
    let mut agents: Vec<String> = a.agents().keys().map(|k| k.agent.to_string()).collect();
    agents.sort();
    assert_eq!(agents, ["192.0.2.2", "192.0.2.3"]);
    assert_eq!(a.expire(150), 0, "seen at 150 and 170: none idle");
    // A returning agent starts afresh (new sequence baseline, nothing lost).
    a.expire(171);
    assert_eq!(limits.agents.load(Ordering::Relaxed), 0);
    a.datagram(ip("127.0.0.1"), &from("192.0.2.1", 500), 200);
    let k = AgentKey {
        agent: ip("192.0.2.1"),
        sub_agent: 0,
    };
    assert_eq!((a.agents()[&k].lost, a.agents()[&k].datagrams), (0, 1));
}
