#![allow(clippy::unwrap_used, reason = "tests")]

use std::{collections::BTreeMap, sync::Arc};

use super::{
    config::RemoteWriteConfig,
    proto::{self, Label},
    queue::{self, Queue},
    series::{Exporter, Item},
};
use crate::{
    accounting::{Drained, IfKey, SubnetCounters},
    config::{Config, SeriesConfig},
    rrd::{Cf, RraDef},
    sflow::IfCounters,
    store::Store,
};

fn labels(kv: &[(&str, &str)]) -> Arc<[Label]> {
    kv.iter()
        .map(|(k, v)| Label {
            name: (*k).into(),
            value: (*v).into(),
        })
        .collect::<Vec<_>>()
        .into()
}

#[test]
fn encoder_round_trips_through_prost_and_snappy() {
    let a = labels(&[
        ("__name__", "m"),
        ("direction", "in"),
        ("subnet", "10.0.0.0/24"),
    ]);
    let b = labels(&[
        ("__name__", "m"),
        ("direction", "out"),
        ("subnet", "10.0.0.0/24"),
    ]);
    let batch = vec![
        Item {
            labels: a.clone(),
            ts_ms: 1_000,
            value: 1.5,
        },
        Item {
            labels: b.clone(),
            ts_ms: 1_000,
            value: 2.0,
        },
        Item {
            labels: a.clone(),
            ts_ms: 2_000,
            value: 3.25,
        },
    ];
    let req = queue::request(&batch);
    let body = proto::encode(&req);
    // The body is snappy's block format: the raw decoder accepts it, and it
    // starts with the uncompressed length as a varint.
    let raw = prost::Message::encode_to_vec(&req);
    let len = snap::raw::decompress_len(&body).unwrap();
    assert_eq!(len, raw.len());
    let back = proto::decode(&body).unwrap();
    assert_eq!(back, req);
    assert_eq!(back.timeseries.len(), 2);
    assert_eq!(back.timeseries[0].labels, a.to_vec());
    let s: Vec<_> = back.timeseries[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(s, [(1_000, 1.5), (2_000, 3.25)]);
    assert_eq!(back.timeseries[1].samples.len(), 1);
    // Field numbers are the spec's: WriteRequest.timeseries = 1 (0x0a).
    assert_eq!(raw[0], 0x0a);
}

#[test]
fn queue_drops_oldest_beyond_its_bound() {
    let l = labels(&[("__name__", "m")]);
    let it = |t| Item {
        labels: l.clone(),
        ts_ms: t,
        value: 0.0,
    };
    let mut q = Queue::new(5);
    assert_eq!(q.push((0..4).map(it)), 0);
    assert_eq!(q.push((4..8).map(it)), 3);
    assert_eq!(q.dropped, 3);
    let b = q.take(2);
    assert_eq!(b.iter().map(|i| i.ts_ms).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(q.len(), 3);
    assert_eq!(q.take(10).len(), 3);
    assert!(q.is_empty());
}

fn series_cfg() -> SeriesConfig {
    SeriesConfig {
        step: 10,
        heartbeat: 100,
        archives: vec![
            RraDef {
                cf: Cf::Max,
                steps: 1,
                rows: 50,
                xff: 0.5,
            },
            RraDef {
                cf: Cf::Average,
                steps: 3,
                rows: 20,
                xff: 0.5,
            },
            RraDef {
                cf: Cf::Average,
                steps: 1,
                rows: 50,
                xff: 0.5,
            },
        ],
        flush_interval: 10,
        max_interfaces: 10,
    }
}

fn get(items: &[Item], name: &str, kv: &[(&str, &str)]) -> Vec<(i64, f64)> {
    items
        .iter()
        .filter(|i| {
            i.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == name)
                && kv
                    .iter()
                    .all(|(k, v)| i.labels.iter().any(|l| l.name == *k && l.value == *v))
        })
        .map(|i| (i.ts_ms, i.value))
        .collect()
}

#[test]
fn exporter_hands_out_each_closed_row_once_with_sorted_labels() {
    let net: ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
    let t0 = 1_800_000_000;
    let mut st = Store::new(&series_cfg(), &[net], t0);
    let extra = BTreeMap::from([("collector".to_string(), "c1".to_string())]);
    let mut ex = Exporter::new(&extra, &st);
    let mut out = Vec::new();
    ex.collect(&st, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // 1000 bytes in per 10 s step for three steps.
    for k in 1..=3u64 {
        st.apply(Drained {
            subnets: vec![(
                0,
                SubnetCounters {
                    in_bytes: 1000,
                    out_bytes: 0,
                    in_pkts: 10,
                    out_pkts: 0,
                },
            )],
            ifaces: vec![],
        });
        st.flush_subnets(t0 + 10 * k);
    }
    ex.collect(&st, &mut out);
    let ins = get(
        &out,
        "hostnet_subnet_bytes_per_second",
        &[("direction", "in")],
    );
    // The finest AVERAGE archive (10 s rows), not the MAX one nor the 30 s one.
    assert_eq!(
        ins,
        [1, 2, 3]
            .map(|k| (((t0 + 10 * k) * 1000) as i64, 100.0))
            .to_vec()
    );
    let pk = get(
        &out,
        "hostnet_subnet_packets_per_second",
        &[("direction", "in")],
    );
    assert_eq!(pk.len(), 3);
    assert!(pk.iter().all(|p| p.1 == 1.0));
    assert_eq!(out.len(), 12);
    let names: Vec<_> = out[0].labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", "collector", "direction", "subnet"]);
    assert_eq!(out[0].labels[3].value, "10.0.0.0/24");
    // Nothing new: nothing handed out again.
    let mut again = Vec::new();
    ex.collect(&st, &mut again);
    assert!(again.is_empty());
    // An update inside a step closes no row.
    st.flush_subnets(t0 + 35);
    ex.collect(&st, &mut again);
    assert!(again.is_empty());
    st.flush_subnets(t0 + 40);
    ex.collect(&st, &mut again);
    assert_eq!(again.len(), 4);
    assert!(again
        .iter()
        .all(|i| i.ts_ms == ((t0 + 40) * 1000) as i64 && i.value == 0.0));

    // A new interface: its known rows (from the second reading on), with
    // agent and ifindex labels; unknown rows are not sent.
    let k = IfKey {
        agent: "192.0.2.1".parse().unwrap(),
        if_index: 7,
    };
    for (i, t) in [t0 + 41, t0 + 51, t0 + 61].into_iter().enumerate() {
        let c = IfCounters {
            if_index: 7,
            in_octets: 5000 * i as u64,
            in_ucast_pkts: 50 * i as u32,
            ..Default::default()
        };
        st.apply(Drained {
            subnets: vec![],
            ifaces: vec![(k, c, t)],
        });
    }
    let mut ifs = Vec::new();
    ex.collect(&st, &mut ifs);
    let oct = get(
        &ifs,
        "hostnet_interface_octets_per_second",
        &[
            ("agent", "192.0.2.1"),
            ("ifindex", "7"),
            ("direction", "in"),
        ],
    );
    // Row (t0+40, t0+50] has 1 unknown second of 10 (before the first
    // reading): known, at the rate of the other 9, as rrdtool does.
    assert_eq!(
        oct,
        [50, 60].map(|d| (((t0 + d) * 1000) as i64, 500.0)).to_vec()
    );
    assert!(ifs.iter().all(|i| i.value.is_finite()));
}

#[test]
fn exporter_skips_rows_present_at_start() {
    let net: ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
    let t0 = 1_800_000_000;
    let mut st = Store::new(&series_cfg(), &[net], t0);
    st.flush_subnets(t0 + 30);
    let mut ex = Exporter::new(&BTreeMap::new(), &st);
    let mut out = Vec::new();
    ex.collect(&st, &mut out);
    assert!(out.is_empty());
    st.flush_subnets(t0 + 40);
    ex.collect(&st, &mut out);
    assert_eq!(out.len(), 4);
}

#[test]
fn config_errors_name_the_field() {
    let err = |y: &str| Config::from_yaml(y, "f").unwrap_err().to_string();
    assert_eq!(
        err("remote_write: {url: 'https://x/api/v1/write'}"),
        "remote_write.url: \"https://x/api/v1/write\": only http:// is supported (put a TLS-terminating proxy in front for https)"
    );
    assert!(err("remote_write: {}").starts_with("remote_write.url: "));
    assert_eq!(
        err("remote_write: {url: 'http://x/w', batch_samples: 0}"),
        "remote_write.batch_samples: 0 is not in 1..=100000"
    );
    assert_eq!(
        err("remote_write: {url: 'http://x/w', min_backoff_ms: 500, max_backoff_ms: 100}"),
        "remote_write.max_backoff_ms: 100 is below remote_write.min_backoff_ms 500"
    );
    assert_eq!(
        err("remote_write: {url: 'http://x/w', labels: {subnet: a}}"),
        "remote_write.labels: \"subnet\" is set by the collector itself"
    );
    assert!(err("remote_write: {url: 'http://x/w', labels: {'a-b': a}}")
        .starts_with("remote_write.labels: \"a-b\" is not a valid label name"));
    assert!(err("remote_write: {url: 'http://x/w', bogus: 1}").contains("bogus"));
    assert_eq!(
        err("remote_write: {url: 'http://x/w', bearer_token_file: /a, basic_auth: {username: u, password_file: /b}}"),
        "remote_write.basic_auth: set either bearer_token_file or basic_auth, not both"
    );
    let c = Config::from_yaml(
        "remote_write: {url: 'http://127.0.0.1:9090/api/v1/write', labels: {collector: eu-1}}",
        "f",
    )
    .unwrap();
    let rw = c.remote_write.unwrap();
    assert_eq!(rw.timeout, RemoteWriteConfig::default().timeout);
    assert_eq!(rw.labels["collector"], "eu-1");
}

#[test]
fn secrets_are_read_from_files_and_never_printed() {
    let dir = std::env::temp_dir().join(format!("rw-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = dir.join("token");
    std::fs::write(&tok, "s3cr3t-token-value\n").unwrap();
    let cfg = RemoteWriteConfig {
        url: "http://127.0.0.1:1/api/v1/write".into(),
        bearer_token_file: Some(tok.clone()),
        ..Default::default()
    };
    let st = Store::new(&series_cfg(), &[], 1_800_000_000);
    let rw = super::RemoteWrite::new(&cfg, &st).unwrap();
    let dbg = format!("{rw:?}");
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    let y = serde_norway::to_string(&cfg).unwrap();
    assert!(!y.contains("s3cr3t"), "{y}");
    let missing = RemoteWriteConfig {
        bearer_token_file: Some(dir.join("absent")),
        ..cfg.clone()
    };
    let e = super::RemoteWrite::new(&missing, &st)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("remote_write.bearer_token_file: reading "),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
