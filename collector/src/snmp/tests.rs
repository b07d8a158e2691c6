use super::{
    config::{Secret, SnmpConfig, REDACTED},
    decode::{self, oids, Column, Counter, SnmpValue},
    schedule::{first_offset, names_due, Schedule},
    series::{Kind, PollData, PollOutcome, SnmpSeries},
};
use crate::{
    config::{Config, SeriesConfig},
    rrd::{Cf, RraDef},
};

fn col(base: &[u32], rows: &[(u32, SnmpValue)]) -> Column {
    let vbs: Vec<_> = rows
        .iter()
        .map(|(i, v)| {
            let mut o = base.to_vec();
            o.push(*i);
            (o, v.clone())
        })
        .collect();
    decode::column(base, &vbs)
}

#[test]
fn column_keeps_single_arc_rows_of_its_subtree() {
    let base = oids::IF_HC_IN_OCTETS;
    let mut other = oids::IF_HC_OUT_OCTETS.to_vec();
    other.push(1);
    let mut long = base.to_vec();
    long.extend([1, 2]);
    let mut ok = base.to_vec();
    ok.push(7);
    let mut exc = base.to_vec();
    exc.push(8);
    let c = decode::column(
        base,
        &[
            (other, SnmpValue::Counter64(1)),
            (long, SnmpValue::Counter64(2)),
            (ok, SnmpValue::Counter64(3)),
            (exc, SnmpValue::Other),
        ],
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c[&7], SnmpValue::Counter64(3));
}

#[test]
fn interfaces_fall_back_to_32_bit_counters_per_interface() {
    let hc = [
        col(oids::IF_HC_IN_OCTETS, &[(1, SnmpValue::Counter64(1 << 40))]),
        col(oids::IF_HC_OUT_OCTETS, &[(1, SnmpValue::Counter64(5))]),
        col(oids::IF_HC_IN_UCAST, &[(1, SnmpValue::Counter64(6))]),
        col(oids::IF_HC_OUT_UCAST, &[(1, SnmpValue::Counter64(7))]),
    ];
    let errors = [
        col(
            oids::IF_IN_ERRORS,
            &[(1, SnmpValue::Counter32(1)), (2, SnmpValue::Counter32(2))],
        ),
        col(
            oids::IF_OUT_ERRORS,
            &[(1, SnmpValue::Counter32(0)), (2, SnmpValue::Counter32(0))],
        ),
        col(oids::IF_IN_DISCARDS, &[(2, SnmpValue::Counter32(9))]),
        col(oids::IF_OUT_DISCARDS, &[]),
    ];
    assert!(decode::lacking_hc(&hc, &[1, 2]));
    assert!(!decode::lacking_hc(&hc, &[1]));
    let c32 = [
        col(
            oids::IF_IN_OCTETS,
            &[(1, SnmpValue::Counter32(11)), (2, SnmpValue::Counter32(12))],
        ),
        col(oids::IF_OUT_OCTETS, &[(2, SnmpValue::Counter32(13))]),
        col(oids::IF_IN_UCAST, &[(2, SnmpValue::Counter32(14))]),
        col(oids::IF_OUT_UCAST, &[(2, SnmpValue::Counter32(15))]),
    ];
    let r = decode::interfaces(&hc, &c32, &errors);
    assert_eq!(r.len(), 2);
    assert!(r[0].is_hc());
    assert_eq!(r[0].traffic[0], Some(Counter::C64(1 << 40)));
    assert!(!r[1].is_hc());
    assert_eq!(
        r[1].traffic,
        [
            Some(Counter::C32(12)),
            Some(Counter::C32(13)),
            Some(Counter::C32(14)),
            Some(Counter::C32(15))
        ]
    );
    assert_eq!(r[1].errors[2], Some(Counter::C32(9)));
    assert_eq!(r[0].errors[3], None);
}

#[test]
fn names_storage_processors() {
    let n = decode::if_names(&[
        col(oids::IF_NAME, &[(1, SnmpValue::Bytes(b"eth0".to_vec()))]),
        col(
            oids::IF_ALIAS,
            &[(1, SnmpValue::Bytes(b"uplink\0".to_vec()))],
        ),
        col(oids::IF_DESCR, &[(2, SnmpValue::Bytes(vec![0xff, b'x']))]),
    ]);
    assert_eq!(n[&1].name.as_deref(), Some("eth0"));
    assert_eq!(n[&1].alias.as_deref(), Some("uplink"));
    assert_eq!(n[&2].descr.as_deref(), Some("\u{fffd}x"));
    let s = decode::storage(&[
        col(
            oids::HR_STORAGE_TYPE,
            &[(1, SnmpValue::Bytes(b"1.3.6.1.2.1.25.2.1.2".to_vec()))],
        ),
        col(
            oids::HR_STORAGE_DESCR,
            &[(1, SnmpValue::Bytes(b"Physical memory".to_vec()))],
        ),
        col(
            oids::HR_STORAGE_UNITS,
            &[(1, SnmpValue::Int(1024)), (2, SnmpValue::Int(0))],
        ),
        col(
            oids::HR_STORAGE_SIZE,
            &[(1, SnmpValue::Int(100)), (2, SnmpValue::Int(1))],
        ),
        col(
            oids::HR_STORAGE_USED,
            &[(1, SnmpValue::Int(40)), (2, SnmpValue::Int(1))],
        ),
    ]);
    assert_eq!(s.len(), 1, "row 2 has zero allocation units");
    assert_eq!(s[0].kind, 2);
    assert_eq!(s[0].size_bytes, 102_400.0);
    assert_eq!(s[0].used_bytes, 40_960.0);
    let p = decode::processors(&col(
        oids::HR_PROCESSOR_LOAD,
        &[
            (196608, SnmpValue::Int(12)),
            (196609, SnmpValue::Bytes(vec![])),
        ],
    ));
    assert_eq!(p, vec![(196608, 12.0)]);
}

#[test]
fn sensor_scale_and_precision() {
    assert_eq!(decode::sensor_value(425, 9, 1), Some(42.5));
    assert_eq!(decode::sensor_value(42_500, 8, 0), Some(42.5));
    assert_eq!(decode::scale_exponent(14), Some(18));
    assert_eq!(decode::scale_exponent(15), Some(15));
    assert_eq!(decode::sensor_value(1, 0, 0), None);
    assert_eq!(decode::sensor_value(1, 9, 12), None);
    let t = decode::temperatures(&[
        col(
            oids::ENT_SENSOR_TYPE,
            &[
                (10, SnmpValue::Int(8)),
                (11, SnmpValue::Int(8)),
                (12, SnmpValue::Int(4)),
            ],
        ),
        col(
            oids::ENT_SENSOR_SCALE,
            &[
                (10, SnmpValue::Int(9)),
                (11, SnmpValue::Int(9)),
                (12, SnmpValue::Int(9)),
            ],
        ),
        col(
            oids::ENT_SENSOR_PRECISION,
            &[
                (10, SnmpValue::Int(1)),
                (11, SnmpValue::Int(0)),
                (12, SnmpValue::Int(0)),
            ],
        ),
        col(
            oids::ENT_SENSOR_VALUE,
            &[
                (10, SnmpValue::Int(385)),
                (11, SnmpValue::Int(99)),
                (12, SnmpValue::Int(12)),
            ],
        ),
        col(
            oids::ENT_SENSOR_STATUS,
            &[(10, SnmpValue::Int(1)), (11, SnmpValue::Int(2))],
        ),
    ]);
    // Volts (type 4) are not temperatures; a non-ok sensor is unknown.
    assert_eq!(t, vec![(10, Some(38.5)), (11, None)]);
}

fn series_cfg() -> SeriesConfig {
    SeriesConfig {
        step: 10,
        heartbeat: 60,
        archives: vec![RraDef {
            cf: Cf::Average,
            steps: 1,
            rows: 100,
            xff: 0.5,
        }],
        ..SeriesConfig::default()
    }
}

fn target_cfg(yaml: &str) -> SnmpConfig {
    let c = Config::from_yaml(yaml, "t").unwrap();
    c.snmp
}

fn if_poll(up: u32, in64: u64, in32: Option<u32>) -> PollData {
    let traffic = match in32 {
        None => [Some(Counter::C64(in64)); 4],
        Some(v) => [Some(Counter::C32(v)); 4],
    };
    PollData {
        uptime: Some(up),
        interfaces: vec![decode::IfReading {
            if_index: 3,
            traffic,
            errors: [Some(Counter::C32(0)); 4],
        }],
        ..Default::default()
    }
}

fn rates(s: &SnmpSeries, id: &str, start: u64, end: u64) -> Vec<f64> {
    let (rrd, _) = s.find(id).unwrap();
    let f = rrd.fetch(Cf::Average, start, end, 10).unwrap();
    f.rows.iter().map(|r| r[0]).collect()
}

const ONE_TARGET: &str = "snmp: {targets: [{name: sw1, address: 192.0.2.1, version: v2c, community: c0mmun1ty, interval: 10}]}";

#[test]
fn counter64_backwards_is_a_reset_and_restart_makes_unknown() {
    let sc = target_cfg(ONE_TARGET);
    let mut s = SnmpSeries::default();
    s.configure(&series_cfg(), &sc.targets, Default::default());
    let ok = |d| PollOutcome {
        target: 0,
        duration_ms: 1,
        result: Ok(d),
    };
    s.apply(ok(if_poll(100, 1_000, None)), 1000);
    s.apply(ok(if_poll(200, 2_000, None)), 1010); // +1000 in 10 s
    s.apply(ok(if_poll(300, 500, None)), 1020); // backwards: reset
    s.apply(ok(if_poll(400, 1_500, None)), 1030);
    s.apply(ok(if_poll(50, 99_999_999, None)), 1040); // agent restart
    s.apply(ok(if_poll(150, 99_999_999 + 3_000, None)), 1050);
    let r = rates(&s, "sw1/if/3", 1000, 1050);
    assert_eq!(r.len(), 5, "{r:?}");
    assert_eq!(r[0], 100.0);
    assert!(r[1].is_nan(), "64-bit decrease must be unknown: {r:?}");
    assert_eq!(r[2], 100.0);
    assert!(r[3].is_nan(), "restart must be unknown, not a spike: {r:?}");
    assert_eq!(r[4], 300.0);
    assert_eq!(s.targets[0].restarts, 1);
}

#[test]
fn counter32_wraps_near_the_top() {
    let sc = target_cfg(ONE_TARGET);
    let mut s = SnmpSeries::default();
    s.configure(&series_cfg(), &sc.targets, Default::default());
    let ok = |d| PollOutcome {
        target: 0,
        duration_ms: 1,
        result: Ok(d),
    };
    s.apply(ok(if_poll(1, 0, Some(u32::MAX - 499))), 1000);
    s.apply(ok(if_poll(2, 0, Some(500))), 1010); // wrap: +1000
    s.apply(ok(if_poll(3, 0, Some(100))), 1020); // big decrease: reset
    s.apply(ok(if_poll(4, 0, Some(1100))), 1030);
    // HC appears: width changed, unknown (series stays 32-bit).
    s.apply(ok(if_poll(5, 5, None)), 1040);
    let r = rates(&s, "sw1/if/3", 1000, 1040);
    assert_eq!(r[0], 100.0, "{r:?}");
    assert!(r[1].is_nan(), "{r:?}");
    assert_eq!(r[2], 100.0, "{r:?}");
    assert!(r[3].is_nan(), "{r:?}");
    assert_eq!(s.readings_dropped, 1);
}

#[test]
fn limits_and_failures_are_counted() {
    let sc = target_cfg(ONE_TARGET);
    let mut s = SnmpSeries::default();
    s.configure(
        &series_cfg(),
        &sc.targets,
        super::series::Limits {
            max_interfaces_per_target: 2,
            max_rows_per_table: 1,
            max_series: 3,
        },
    );
    let mut d = PollData::default();
    for i in 1..=5 {
        let mut r = if_poll(1, 1, None).interfaces.remove(0);
        r.if_index = i;
        d.interfaces.push(r);
    }
    d.processors = vec![(1, 5.0), (2, 7.0)];
    // The overall cap (3) stops the storage row the table cap would allow.
    d.storage = vec![decode::StorageRow {
        index: 1,
        kind: 2,
        descr: "RAM".into(),
        used_bytes: 1.0,
        size_bytes: 2.0,
    }];
    s.apply(
        PollOutcome {
            target: 0,
            duration_ms: 3,
            result: Ok(d),
        },
        1000,
    );
    assert_eq!(s.series.len(), 3);
    assert_eq!(s.rows_over_limit, 5);
    assert!(s.find("sw1/storage/1").is_none());
    assert!(s.find("sw1/cpu/1").is_some());
    assert!(s.find("sw1/cpu/2").is_none());
    assert!(s.find("sw1/if/1/x").is_none());
    assert!(s.find("other/if/1").is_none());
    s.apply(
        PollOutcome {
            target: 0,
            duration_ms: 3,
            result: Err("timeout".into()),
        },
        1010,
    );
    assert_eq!(s.targets[0].polls_failed, 1);
    assert_eq!(s.targets[0].polls_ok, 1);
    assert_eq!(s.targets[0].last_error.as_deref(), Some("timeout"));
    let ids: Vec<String> = s.ids().map(|(id, _, _)| id).collect();
    assert_eq!(ids, ["snmp/sw1/if/1", "snmp/sw1/if/2", "snmp/sw1/cpu/1"]);
    assert_eq!(Kind::If.ds().len(), 8);
}

#[test]
fn schedule_spreads_skips_overruns_and_refreshes_names() {
    let mut s = Schedule::new(&[("a", 10), ("b", 10)], 0);
    let (oa, ob) = (first_offset("a", 10_000), first_offset("b", 10_000));
    assert!(oa < 1000 && ob < 1000 && oa != ob);
    assert_eq!(
        s.take_due(0).len(),
        usize::from(oa == 0) + usize::from(ob == 0)
    );
    let due = s.take_due(1000);
    assert_eq!(due.len() + usize::from(oa == 0) + usize::from(ob == 0), 2);
    // Both running; a due time passes while "a" still runs: skipped.
    s.finished(1);
    let due = s.take_due(11_000);
    assert_eq!(due, vec![1]);
    assert_eq!(s.slots[0].overruns, 1);
    s.finished(0);
    s.finished(1);
    // Far behind (a stalled scheduler): one poll, the missed ones counted.
    let due = s.take_due(51_000);
    assert_eq!(due, vec![0, 1]);
    assert_eq!(s.slots[0].overruns, 1 + 3);
    assert!(s.slots[0].next_due > 51_000 && s.slots[0].next_due <= 61_000);
    assert_eq!(
        s.next_wake(),
        Some(s.slots[0].next_due.min(s.slots[1].next_due))
    );
    let refreshed: Vec<u64> = (1..=25).filter(|p| names_due(*p, 10)).collect();
    assert_eq!(refreshed, vec![1, 11, 21]);
}

#[test]
fn config_errors_name_the_field() {
    let e = |y: &str| Config::from_yaml(y, "f").unwrap_err().to_string();
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v2c}]}"),
        "snmp.targets[0].community: required for version v2c"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v3, user: u, auth_protocol: sha, auth_password: short}]}"),
        "snmp.targets[0].auth_password: at least 8 characters"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v3, user: u, auth_protocol: sha, auth_password: longenough, priv_protocol: aes}]}"),
        "snmp.targets[0].priv_password: required with priv_protocol"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v2c, community: x}, {name: a, address: 10.0.0.2, version: v2c, community: x}]}"),
        "snmp.targets[1].name: \"a\" is used twice"
    );
    assert_eq!(
        e("snmp: {targets: [{name: 'a/b', address: 10.0.0.1, version: v2c, community: x}]}"),
        "snmp.targets[0].name: \"a/b\": 1 to 64 letters, digits, '.', '_' or '-'"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 'h:0', version: v2c, community: x}]}"),
        "snmp.targets[0].address: \"h:0\" is not host, host:port or [v6]:port"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v2c, community: x, max_repetitions: 0}]}"),
        "snmp.targets[0].max_repetitions: 0 is not in 1..=100"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v2c, community: x, interval: 5, deadline_ms: 6000}]}"),
        "snmp.targets[0].deadline_ms: 6000 ms is not in 1..=5000 (the interval)"
    );
    assert_eq!(
        e("snmp: {max_targets: 1, targets: [{name: a, address: 10.0.0.1, version: v2c, community: x}, {name: b, address: 10.0.0.2, version: v2c, community: x}]}"),
        "snmp.targets: 2 targets exceed snmp.max_targets 1"
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v2c, community_file: /nonexistent/c}]}")
            .split(':')
            .next(),
        Some("snmp.targets[0].community_file")
    );
    assert_eq!(
        e("snmp: {targets: [{name: a, address: 10.0.0.1, version: v2c, community: x, user: u}]}"),
        "snmp.targets[0].user: only for version v3"
    );
    for a in [
        "10.0.0.1",
        "10.0.0.1:1161",
        "[::1]:161",
        "[::1]",
        "::1",
        "sw1.example.net:16100",
        "sw1",
    ] {
        assert!(super::config::split_address(a).is_some(), "{a}");
    }
}

#[test]
fn secrets_from_files_and_never_printed() {
    let dir = std::env::temp_dir().join(format!("snmp-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("auth");
    std::fs::write(&f, "s3cretAuthPass\n").unwrap();
    let y = format!(
        "snmp: {{targets: [{{name: a, address: 10.0.0.1, version: v3, user: u, auth_protocol: sha256, auth_password_file: {}, priv_protocol: aes, priv_password: s3cretPrivPass}}]}}",
        f.display()
    );
    let c = Config::from_yaml(&y, "f").unwrap();
    let t = &c.snmp.targets[0];
    assert_eq!(t.auth_password.as_ref().unwrap().expose(), "s3cretAuthPass");
    let printed = serde_norway::to_string(&c).unwrap() + &format!("{c:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains(REDACTED));
    assert_eq!(format!("{:?}", Secret::new("x")), REDACTED);
    std::fs::remove_dir_all(&dir).unwrap();
}
