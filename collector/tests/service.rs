//! The whole collector on loopback: real UDP sockets (IPv4 and IPv6),
//! recvmmsg, the allow-list, flushes driven by a controllable clock, the
//! HTTP API with authentication and its errors, Prometheus text, and a
//! clean restart through the snapshot that loses nothing.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use collector::{
    config::Config,
    rrd::{Cf, RraDef},
    sflow::encode::*,
    Collector,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token-0123456789";
const T0: u64 = 1_800_000_000; // a multiple of 10

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.sflow.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    c.sflow.workers = 2;
    c.sflow.allow = vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
    c.subnets = vec![
        "10.0.0.0/24".parse().unwrap(),
        "10.0.1.0/24".parse().unwrap(),
        "2001:db8::/64".parse().unwrap(),
    ];
    c.series.step = 10;
    c.series.heartbeat = 3600;
    c.series.flush_interval = 3600; // flushed by hand
    c.series.archives = vec![
        RraDef {
            cf: Cf::Average,
            steps: 1,
            rows: 200,
            xff: 0.5,
        },
        RraDef {
            cf: Cf::Max,
            steps: 6,
            rows: 10,
            xff: 0.5,
        },
    ];
    c.store.path = Some(dir.join("snap.bin"));
    c.store.snapshot_interval = 3600;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.tokens = vec![TOKEN.into()];
    c
}

async fn http(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect API");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text[9..12].parse().expect("status");
    let (_, body) = text.split_once("\r\n\r\n").expect("body");
    // Bodies here are small and sent with Content-Length.
    (status, body.to_string())
}

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (st, body) = http(addr, path, Some(TOKEN)).await;
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One datagram: `n` flow samples 10.0.0.x -> 10.0.1.y (rate 64, 1000 B)
/// and one IPv6 sample inside 2001:db8::/64 (rate 32, 500 B).
fn datagram_bytes(seq: u32, n: u32) -> Vec<u8> {
    let mut samples: Vec<SampleSpec> = (0..n)
        .map(|i| SampleSpec::Flow {
            expanded: false,
            sequence: seq * 100 + i,
            source_index: 1,
            sampling_rate: 64,
            sample_pool: 0,
            drops: 0,
            input: 1,
            output: 2,
            records: vec![FlowRec::RawHeader {
                protocol: 1,
                frame_length: 1000,
                stripped: 4,
                header: frame(&[7], ip("10.0.0.1"), ip("10.0.1.2"), 6, 1, 2, 900),
            }],
        })
        .collect();
    samples.push(SampleSpec::Flow {
        expanded: true,
        sequence: seq,
        source_index: 2,
        sampling_rate: 32,
        sample_pool: 0,
        drops: 0,
        input: 1,
        output: 2,
        records: vec![FlowRec::RawHeader {
            protocol: 1,
            frame_length: 500,
            stripped: 4,
            header: frame(&[], ip("2001:db8::1"), ip("2001:db8::2"), 17, 1, 2, 400),
        }],
    });
    datagram(&DatagramSpec {
        agent: Some(ip("192.0.2.1")),
        sub_agent_id: 0,
        sequence: seq,
        uptime_ms: seq,
        samples,
    })
}

async fn wait_datagrams(addr: SocketAddr, n: u64) -> Value {
    for _ in 0..200 {
        let s = json(addr, "/api/v1/stats").await;
        if s["ingest"]["datagrams"].as_u64() >= Some(n) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("collector did not receive {n} datagrams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_restart() {
    let dir = std::env::temp_dir().join(format!("collector-svc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = Arc::new(AtomicU64::new(T0 - 5));
    let n2 = now.clone();
    let clock: collector::ingest::Clock = Arc::new(move || n2.load(Ordering::SeqCst));

    let c = Collector::start(config(&dir), clock.clone())
        .await
        .expect("start");
    let (v4, v6, api) = (c.sflow_addrs[0], c.sflow_addrs[1], c.api_addr);
    now.store(T0, Ordering::SeqCst);
    c.flush(); // baseline at T0

    let tx4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx6 = UdpSocket::bind("[::1]:0").unwrap();
    // 40 datagrams of 5+1 samples, half over IPv6 transport.
    for seq in 1..=40u32 {
        let b = datagram_bytes(seq, 5);
        if seq % 2 == 0 {
            tx6.send_to(&b, v6).unwrap()
        } else {
            tx4.send_to(&b, v4).unwrap()
        };
    }
    // From a source outside the allow-list: counted, not accounted.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger.send_to(&datagram_bytes(99, 5), v4).unwrap();
    // Garbage.
    tx4.send_to(b"not sflow at all", v4).unwrap();
    let s = wait_datagrams(api, 42).await;
    assert_eq!(s["ingest"]["datagrams_not_allowed"], 1);
    assert_eq!(s["ingest"]["datagrams_rejected"], 1);
    assert_eq!(s["ingest"]["flow_samples"], 240);
    assert_eq!(s["ingest"]["flow_samples_attributed"], 240);
    // Both transports carry one agent: half of its datagrams arrive on each
    // socket, so each shard sees every other sequence number.
    now.store(T0 + 10, Ordering::SeqCst);
    c.flush();

    let r = json(api, &format!("/api/v1/report?start={T0}&end={}", T0 + 10)).await;
    let subnet = |r: &Value, name: &str| {
        r["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["subnet"] == name)
            .cloned()
            .unwrap()
    };
    let a = subnet(&r, "10.0.0.0/24");
    assert_eq!(a["out_bytes"], 200.0 * 64.0 * 1000.0);
    assert_eq!(a["out_pkts"], 200.0 * 64.0);
    assert_eq!(a["in_bytes"], 0.0);
    let b = subnet(&r, "10.0.1.0/24");
    assert_eq!(b["in_bytes"], 200.0 * 64.0 * 1000.0);
    assert_eq!(b["in_percentile_bps"], 200.0 * 64.0 * 1000.0 * 8.0 / 10.0);
    let v6n = subnet(&r, "2001:db8::/64");
    assert_eq!(
        (v6n["in_bytes"].as_f64(), v6n["out_bytes"].as_f64()),
        (Some(40.0 * 32.0 * 500.0), Some(40.0 * 32.0 * 500.0))
    );

    // Series listing and data.
    let l = json(api, "/api/v1/series").await;
    assert_eq!(l["series"].as_array().unwrap().len(), 3);
    let d = json(
        api,
        &format!(
            "/api/v1/series/data?id=subnet/10.0.1.0/24&start={T0}&end={}&resolution=10",
            T0 + 10
        ),
    )
    .await;
    assert_eq!(d["ds"][0], "in_bytes");
    assert_eq!(d["rows"][0][0], T0 + 10);
    assert_eq!(d["rows"][0][1], 200.0 * 64.0 * 1000.0 / 10.0);

    // Errors and authentication.
    assert_eq!(http(api, "/api/v1/health", None).await.0, 200);
    let (st, body) = http(api, "/api/v1/stats", None).await;
    assert_eq!(st, 401, "{body}");
    assert!(
        body.contains("missing 'Authorization: Bearer <token>' header"),
        "{body}"
    );
    assert_eq!(
        http(api, "/api/v1/stats", Some("wrong-token-wrong-token"))
            .await
            .0,
        401
    );
    let (st, body) = http(api, "/api/v1/report?start=yesterday", Some(TOKEN)).await;
    assert_eq!(st, 400);
    assert!(
        body.contains("'start' must be a Unix time in seconds"),
        "{body}"
    );
    let (st, body) = http(
        api,
        &format!("/api/v1/report?start={}&end={T0}", T0 + 10),
        Some(TOKEN),
    )
    .await;
    assert_eq!((st, body.contains("must be before")), (400, true), "{body}");
    let (st, body) = http(
        api,
        "/api/v1/series/data?id=subnet/192.0.2.0/24",
        Some(TOKEN),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = http(
        api,
        "/api/v1/series/data?id=subnet/10.0.0.0/24&cf=MEDIAN",
        Some(TOKEN),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("'cf' must be AVERAGE, MIN, MAX or LAST"));
    let (st, body) = http(
        api,
        "/api/v1/series/data?id=subnet/10.0.0.0/24&cf=MIN",
        Some(TOKEN),
    )
    .await;
    assert_eq!((st, body.contains("no MIN archive")), (400, true), "{body}");
    let (st, body) = http(
        api,
        &format!(
            "/api/v1/series/data?id=subnet/10.0.0.0/24&start={}&end={T0}&resolution=1",
            T0 - 19 * 365 * 86_400
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (st, body.contains("exceed the limit")),
        (400, true),
        "{body}"
    );
    let (st, body) = http(api, "/api/v1/report?bogus=1", Some(TOKEN)).await;
    assert_eq!(
        (st, body.contains("unknown parameter 'bogus'")),
        (400, true),
        "{body}"
    );
    assert_eq!(http(api, "/nope", Some(TOKEN)).await.0, 404);

    // Prometheus text.
    let (st, m) = http(api, "/metrics", Some(TOKEN)).await;
    assert_eq!(st, 200);
    assert!(m.contains("collector_datagrams_total 42\n"), "{m}");
    assert!(
        m.contains("collector_flow_samples_total{outcome=\"attributed\"} 240\n"),
        "{m}"
    );
    assert!(
        m.contains("collector_decode_errors_total{kind=\"datagram.version\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("collector_agent_datagrams_total{agent=\"192.0.2.1\",sub_agent=\"0\"} 40\n"),
        "{m}"
    );

    // More traffic, then a clean shutdown without a manual flush: the
    // shutdown flushes at T0+20 and snapshots.
    for seq in 41..=50u32 {
        tx4.send_to(&datagram_bytes(seq, 5), v4).unwrap();
    }
    wait_datagrams(api, 52).await;
    now.store(T0 + 20, Ordering::SeqCst);
    c.shutdown().await.expect("shutdown");
    assert!(dir.join("snap.bin").exists());

    // Restart: restored, and the next interval continues from the totals.
    now.store(T0 + 25, Ordering::SeqCst);
    let c = Collector::start(config(&dir), clock.clone())
        .await
        .expect("restart");
    let api = c.api_addr;
    let s = json(api, "/api/v1/stats").await;
    assert_eq!(s["restored"]["subnets_restored"], 3);
    for seq in 51..=60u32 {
        tx4.send_to(&datagram_bytes(seq, 5), c.sflow_addrs[0])
            .unwrap();
    }
    wait_datagrams(api, 10).await;
    now.store(T0 + 30, Ordering::SeqCst);
    c.flush();
    let r = json(api, &format!("/api/v1/report?start={T0}&end={}", T0 + 30)).await;
    let b = subnet(&r, "10.0.1.0/24");
    // All 60 datagrams x 5 samples x 64 x 1000 B, none lost across the restart.
    assert_eq!(b["in_bytes"], 300.0 * 64.0 * 1000.0);
    assert_eq!(b["unknown_rows"], 0);
    c.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A damaged snapshot (crash mid-way through a disk, bad copy) is moved
/// aside and the collector starts empty instead of refusing to start; a
/// leftover temporary file from an interrupted write is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshot_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("collector-svc-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("snap.bin"), b"HNCOLSNP but then garbage").unwrap();
    std::fs::write(dir.join("snap.tmp"), b"half-written").unwrap();
    let clock: collector::ingest::Clock = Arc::new(|| T0);
    let c = Collector::start(config(&dir), clock)
        .await
        .expect("start despite a bad snapshot");
    assert!(dir.join("snap.corrupt").exists());
    let s = json(c.api_addr, "/api/v1/stats").await;
    assert_eq!(s["restored"], Value::Null);
    assert_eq!(s["series"]["subnets"], 3);
    c.shutdown().await.unwrap();
    // The shutdown snapshot replaced the temporary file and is readable.
    assert!(!dir.join("snap.tmp").exists());
    let c = Collector::start(config(&dir), Arc::new(|| T0 + 10))
        .await
        .unwrap();
    let s = json(c.api_addr, "/api/v1/stats").await;
    assert_eq!(s["restored"]["subnets_restored"], 3);
    c.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
