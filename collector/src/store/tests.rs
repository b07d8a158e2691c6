use super::*;
use crate::rrd::RraDef;

fn cfg() -> SeriesConfig {
    SeriesConfig {
        step: 10,
        heartbeat: 30,
        archives: vec![
            RraDef {
                cf: Cf::Average,
                steps: 1,
                rows: 100,
                xff: 0.5,
            },
            RraDef {
                cf: Cf::Average,
                steps: 6,
                rows: 50,
                xff: 0.5,
            },
        ],
        flush_interval: 10,
        max_interfaces: 2,
    }
}

fn nets() -> Vec<IpNet> {
    vec![
        "10.0.0.0/24".parse().unwrap(),
        "2001:db8::/64".parse().unwrap(),
    ]
}

const T0: u64 = 1_700_000_000;

fn traffic(s: &mut Store, from: u64, to: u64) {
    for t in (from..to).step_by(10) {
        // 1000 B/s in, 500 B/s out for subnet 0; subnet 1 varies.
        s.apply(Drained {
            subnets: vec![
                (
                    0,
                    SubnetCounters {
                        in_bytes: 10_000,
                        out_bytes: 5_000,
                        in_pkts: 10,
                        out_pkts: 5,
                    },
                ),
                (
                    1,
                    SubnetCounters {
                        in_bytes: (t % 70) * 10,
                        out_bytes: 0,
                        in_pkts: 1,
                        out_pkts: 0,
                    },
                ),
            ],
            ifaces: vec![],
        });
        s.flush_subnets(t + 10);
    }
}

#[test]
fn clean_restart_loses_nothing() {
    let mut a = Store::new(&cfg(), &nets(), T0);
    traffic(&mut a, T0, T0 + 600);
    let snap = a.snapshot(T0 + 600);
    let (mut b, rep) = Store::restore(&cfg(), &nets(), &snap, T0 + 605).unwrap();
    assert_eq!(
        rep,
        RestoreReport {
            subnets_restored: 2,
            saved_at: T0 + 600,
            ..Default::default()
        }
    );
    traffic(&mut a, T0 + 600, T0 + 1200);
    traffic(&mut b, T0 + 600, T0 + 1200);
    assert_eq!(
        a.snapshot(1),
        b.snapshot(1),
        "restored store continues exactly like the original"
    );
    let r = b.report(T0 + 600, T0 + 1200, 10, 95.0, None).unwrap();
    assert_eq!(r.subnets[0].in_bytes, 600_000.0);
    assert_eq!(r.subnets[0].out_pkts, 300.0);
    assert_eq!(r.subnets[0].in_percentile_bps, Some(8000.0));
}

#[test]
fn corrupt_or_foreign_snapshots_are_refused() {
    let mut a = Store::new(&cfg(), &nets(), T0);
    traffic(&mut a, T0, T0 + 100);
    let mut snap = a.snapshot(T0);
    let i = snap.len() / 2;
    snap[i] ^= 1;
    assert_eq!(
        Store::restore(&cfg(), &nets(), &snap, T0)
            .unwrap_err()
            .to_string(),
        "corrupt snapshot: checksum mismatch"
    );
    assert!(Store::restore(&cfg(), &nets(), b"something else entirely", T0).is_err());
    assert!(Store::restore(&cfg(), &nets(), &[], T0).is_err());
}

#[test]
fn restore_follows_configuration_changes() {
    let mut a = Store::new(&cfg(), &nets(), T0);
    traffic(&mut a, T0, T0 + 100);
    let snap = a.snapshot(T0);
    // One subnet removed, one added.
    let new_nets: Vec<IpNet> = vec![
        "10.0.0.0/24".parse().unwrap(),
        "192.0.2.0/24".parse().unwrap(),
    ];
    let (b, rep) = Store::restore(&cfg(), &new_nets, &snap, T0 + 200).unwrap();
    assert_eq!((rep.subnets_restored, rep.subnets_dropped), (1, 1));
    assert_eq!(b.subnets[0].totals.in_bytes, 100_000);
    assert_eq!(b.subnets[1].totals, SubnetCounters::default());
    // Archives changed: nothing reused.
    let mut c2 = cfg();
    c2.archives[0].rows = 99;
    let (_, rep) = Store::restore(&c2, &nets(), &snap, T0 + 200).unwrap();
    assert_eq!((rep.subnets_restored, rep.reshaped), (0, 2));
}

fn ifc(octets: u64, ucast: u32, mcast: u32) -> IfCounters {
    IfCounters {
        if_index: 3,
        in_octets: octets,
        out_octets: octets / 2,
        in_ucast_pkts: ucast,
        in_multicast_pkts: mcast,
        ..Default::default()
    }
}

#[test]
fn interface_series_and_packet_resets() {
    let mut s = Store::new(&cfg(), &nets(), T0);
    let k = IfKey {
        agent: "192.0.2.1".parse().unwrap(),
        if_index: 3,
    };
    let readings = [
        (T0 + 10, ifc(1_000, 100, 10)),
        (T0 + 20, ifc(11_000, 200, 20)),
        (T0 + 30, ifc(21_000, 300, 30)),
        // ucast near the 32-bit top wraps next time: still counted.
        (T0 + 40, ifc(31_000, u32::MAX - 49, 40)),
        (T0 + 50, ifc(41_000, 50, 50)),
        // Agent reboot: every counter restarts.
        (T0 + 60, ifc(500, 5, 0)),
        (T0 + 70, ifc(10_500, 105, 10)),
    ];
    for (t, c) in readings {
        s.apply(Drained {
            subnets: vec![],
            ifaces: vec![(k, c, t)],
        });
    }
    let (rrd, names) = s.find("if/192.0.2.1/3").unwrap();
    assert_eq!(names[2], "in_pkts");
    let rows = rrd.fetch(Cf::Average, T0, T0 + 70, 10).unwrap();
    let octets: Vec<f64> = rows.rows.iter().map(|r| r[0]).collect();
    let pkts: Vec<f64> = rows.rows.iter().map(|r| r[2]).collect();
    assert!(octets[0].is_nan() && pkts[0].is_nan());
    assert_eq!(&octets[1..5], &[1000.0; 4]);
    assert_eq!(&pkts[1..3], &[11.0; 2]);
    // (2^32 - (2^32-50) + 50) + 10 = 110 packets in 10 s.
    assert_eq!(pkts[3], (u32::MAX as f64 - 49.0 - 300.0 + 10.0) / 10.0);
    assert_eq!(pkts[4], 11.0);
    assert!(
        octets[5].is_nan() && pkts[5].is_nan(),
        "the reset interval is unknown, not a spike"
    );
    assert_eq!(octets[6], 1000.0);
    // Out-of-order and over-limit readings are dropped and counted.
    s.apply(Drained {
        subnets: vec![],
        ifaces: vec![(k, ifc(0, 0, 0), T0 + 65)],
    });
    for i in 10..12 {
        s.apply(Drained {
            subnets: vec![],
            ifaces: vec![(IfKey { if_index: i, ..k }, ifc(0, 0, 0), T0 + 80)],
        });
    }
    assert_eq!(s.ifaces.len(), 2);
    assert_eq!(s.iface_readings_dropped, 2);
    // Interfaces survive a snapshot.
    let (b, rep) = Store::restore(&cfg(), &nets(), &s.snapshot(T0), T0).unwrap();
    assert_eq!(rep.interfaces_restored, 2);
    assert_eq!(b.snapshot(0), s.snapshot(0));
}

#[test]
fn percentile_nearest_rank() {
    let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(nearest_rank(&mut v, 95.0), Some(95.0));
    let mut v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
    assert_eq!(nearest_rank(&mut v, 95.0), Some(19.0));
    assert_eq!(nearest_rank(&mut v, 100.0), Some(20.0));
    assert_eq!(nearest_rank(&mut [], 95.0), None);
    assert_eq!(nearest_rank(&mut [7.0], 95.0), Some(7.0));
}

#[test]
fn list_and_find() {
    let s = Store::new(&cfg(), &nets(), T0);
    let l = s.list();
    assert_eq!(
        l.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        vec!["subnet/10.0.0.0/24", "subnet/2001:db8::/64"]
    );
    assert_eq!(l[0].archives[1].resolution, 60);
    assert!(s.find("subnet/2001:db8::/64").is_some());
    assert!(s.find("subnet/10.9.0.0/24").is_none());
    assert!(s.find("if/x/1").is_none());
    assert!(s.find("nonsense").is_none());
}

fn burst(s: &mut Store, bytes: u64) {
    s.apply(Drained {
        subnets: vec![(
            0,
            SubnetCounters {
                in_bytes: bytes,
                out_bytes: 0,
                in_pkts: bytes / 100,
                out_pkts: 0,
            },
        )],
        ifaces: vec![],
    });
}

/// (known in_bytes summed over the rows of (start, end], rounded to 1e-6
/// (rates are floating point), unknown rows).
fn billed(s: &Store, start: u64, end: u64) -> (f64, usize) {
    let r = s.report(start, end, 10, 95.0, None).unwrap();
    let b = (r.subnets[0].in_bytes * 1e6).round() / 1e6;
    (b, r.subnets[0].unknown_rows)
}

/// Issue 13 item 5: a burst received right after start, before the first
/// flush, is in the series (the first push used to become the baseline and
/// the burst read as 0 bytes), and the first row is exact even though the
/// collector started in the middle of a step.
#[test]
fn burst_right_after_start_is_counted() {
    for start in [T0, T0 + 3, T0 + 9] {
        let mut s = Store::new(&cfg(), &nets(), start);
        burst(&mut s, 123_400);
        s.flush_subnets(start + 10);
        burst(&mut s, 5_000);
        s.flush_subnets(start + 20);
        s.flush_subnets(T0 + 40);
        assert_eq!(s.subnets[0].totals.in_bytes, 128_400);
        assert_eq!(
            billed(&s, T0 - 100, T0 + 40),
            (128_400.0, 10),
            "start {start}"
        );
        // Nothing before the start reads as traffic or as a gap.
        assert_eq!(billed(&s, T0, T0 + 40), (128_400.0, 0), "start {start}");
    }
}

/// Issue 13 item 5: a restart from a snapshot in the middle of traffic
/// (the shutdown's last flush in the middle of a step), after a downtime
/// shorter and longer than the heartbeat: the sum over the series is what
/// was received, and only whole steps of a long downtime are unknown.
#[test]
fn restart_mid_traffic_keeps_the_sum() {
    for (down_until, unknown) in [(T0 + 147, 0), (T0 + 305, 17)] {
        let mut a = Store::new(&cfg(), &nets(), T0 + 3);
        let mut sent = 0;
        for k in 0..12 {
            burst(&mut a, 10_000 + k * 77);
            sent += 10_000 + k * 77;
            a.flush_subnets(T0 + 13 + k * 10);
        }
        // The shutdown: received samples accounted, flushed mid-step, saved.
        burst(&mut a, 4_321);
        sent += 4_321;
        a.flush_subnets(T0 + 127);
        let snap = a.snapshot(T0 + 127);
        let (mut b, rep) = Store::restore(&cfg(), &nets(), &snap, down_until).unwrap();
        assert_eq!(rep.subnets_restored, 2);
        // Right after the restart, before any flush.
        burst(&mut b, 9_999);
        sent += 9_999;
        for k in 1..=8 {
            b.flush_subnets(down_until + k * 10);
            burst(&mut b, 1_000);
            sent += 1_000;
        }
        let end = (down_until + 100).div_ceil(10) * 10;
        b.flush_subnets(end);
        assert_eq!(
            billed(&b, T0, end),
            (sent as f64, unknown),
            "restart at {down_until}"
        );
    }
}
