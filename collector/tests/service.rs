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

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn report_subnet(r: &Value, name: &str) -> Value {
    r["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["subnet"] == name)
        .cloned()
        .unwrap()
}

/// Issue 13 item 5, through the running collector: a burst sent right after
/// start, with no flush before it, is billed; a clean restart in the middle
/// of traffic after a downtime longer than the heartbeat loses nothing, and
/// only the whole steps of the downtime are unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_after_start_and_restart_are_billed() {
    let dir = std::env::temp_dir().join(format!("collector-svc-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config(&dir);
    cfg.series.heartbeat = 30;
    cfg.series.flush_interval = 30;
    let now = Arc::new(AtomicU64::new(T0 + 3));
    let n2 = now.clone();
    let clock: collector::ingest::Clock = Arc::new(move || n2.load(Ordering::SeqCst));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();

    let c = Collector::start(cfg.clone(), clock.clone())
        .await
        .expect("start");
    for seq in 1..=20u32 {
        tx.send_to(&datagram_bytes(seq, 5), c.sflow_addrs[0])
            .unwrap();
    }
    wait_datagrams(c.api_addr, 20).await;
    now.store(T0 + 13, Ordering::SeqCst);
    c.flush();
    for seq in 21..=30u32 {
        tx.send_to(&datagram_bytes(seq, 5), c.sflow_addrs[0])
            .unwrap();
    }
    wait_datagrams(c.api_addr, 30).await;
    // Shutdown in the middle of a step (its flush is at T0+17).
    now.store(T0 + 17, Ordering::SeqCst);
    c.shutdown().await.expect("shutdown");

    // Down for 83 s (heartbeat 30 s).
    now.store(T0 + 100, Ordering::SeqCst);
    let c = Collector::start(cfg, clock.clone()).await.expect("restart");
    for seq in 31..=40u32 {
        tx.send_to(&datagram_bytes(seq, 5), c.sflow_addrs[0])
            .unwrap();
    }
    wait_datagrams(c.api_addr, 10).await;
    now.store(T0 + 110, Ordering::SeqCst);
    c.flush();
    let r = json(
        c.api_addr,
        &format!("/api/v1/report?start={T0}&end={}", T0 + 110),
    )
    .await;
    let b = report_subnet(&r, "10.0.1.0/24");
    let billed = (b["in_bytes"].as_f64().unwrap() * 1e6).round() / 1e6;
    // 40 datagrams x 5 samples x rate 64 x 1000 B.
    assert_eq!(billed, 40.0 * 5.0 * 64.0 * 1000.0, "{b}");
    // (T0+20, T0+100] is the downtime: 8 unknown rows, nothing else.
    assert_eq!(b["unknown_rows"], 8, "{b}");
    let v6 = report_subnet(&r, "2001:db8::/64");
    let billed6 = (v6["in_bytes"].as_f64().unwrap() * 1e6).round() / 1e6;
    assert_eq!(billed6, 40.0 * 32.0 * 500.0, "{v6}");
    c.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 13 item 4: a flood of datagrams claiming 3,000 random agent
/// addresses (sFlow's agent address is whatever the sender writes), each
/// with counters for 8 interfaces and flow samples of 6 sources, from an
/// allowed source. Agents, interface series and per-agent sources stay at
/// their caps, every refusal is counted in the stats and the metrics, the
/// agent seen before the flood keeps being accounted, and the process's
/// memory does not grow with the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_agent_flood_stays_bounded() {
    let dir = std::env::temp_dir().join(format!("collector-svc-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config(&dir);
    cfg.sflow.workers = 1;
    cfg.sflow.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.limits.max_agents = 64;
    cfg.limits.max_sources_per_agent = 4;
    cfg.limits.max_interfaces_per_agent = 3;
    cfg.series.max_interfaces = 40;
    let series = cfg.series.clone();
    let clock: collector::ingest::Clock = Arc::new(|| T0);
    let c = Collector::start(cfg, clock).await.expect("start");
    let (to, api) = (c.sflow_addrs[0], c.api_addr);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&datagram_bytes(1, 5), to).unwrap();
    wait_datagrams(api, 1).await;

    let flood = |agent: IpAddr, seq: u32| {
        let mut samples: Vec<SampleSpec> = (0..8u32)
            .map(|i| SampleSpec::Counters {
                expanded: false,
                sequence: seq,
                source_index: i + 1,
                records: vec![CounterRec::Generic(collector::sflow::IfCounters {
                    if_index: i + 1,
                    in_octets: seq as u64 * 1000,
                    ..Default::default()
                })],
            })
            .collect();
        samples.extend((0..6u32).map(|i| SampleSpec::Flow {
            expanded: false,
            sequence: seq,
            source_index: 100 + i,
            sampling_rate: 10,
            sample_pool: 0,
            drops: seq,
            input: 1,
            output: 2,
            records: vec![FlowRec::RawHeader {
                protocol: 1,
                frame_length: 100,
                stripped: 4,
                header: frame(&[], ip("198.51.100.1"), ip("198.51.100.2"), 17, 1, 2, 60),
            }],
        }));
        datagram(&DatagramSpec {
            agent: Some(agent),
            sub_agent_id: seq % 3,
            sequence: seq,
            uptime_ms: seq,
            samples,
        })
    };
    let rss_before = rss_bytes();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = 3_000u32;
    for seq in 0..n {
        // xorshift64: a different pseudo-random agent per datagram.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let agent = if seq % 2 == 0 {
            IpAddr::from(std::net::Ipv4Addr::from(x as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from((x as u128) << 64 | seq as u128))
        };
        tx.send_to(&flood(agent, seq), to).unwrap();
        // Pace the sender so the kernel buffer never overflows; while the
        // agent table fills, flush often so that interface readings reach
        // the store's caps rather than the shard's (which bounds what is
        // held between two flushes at series.max_interfaces).
        if seq % 200 == 199 || (seq < 64 && seq % 4 == 3) {
            wait_datagrams(api, 2 + seq as u64).await;
            c.flush();
        }
    }
    wait_datagrams(api, 1 + n as u64).await;
    c.flush();
    // The agent from before the flood is still tracked and accounted.
    tx.send_to(&datagram_bytes(2, 5), to).unwrap();
    let s = wait_datagrams(api, 2 + n as u64).await;
    c.flush();
    let rss_after = rss_bytes();
    eprintln!(
        "flood of {n} spoofed agents: RSS {} -> {} KiB; limits {}",
        rss_before / 1024,
        rss_after / 1024,
        s["limits"]
    );

    let l = &s["limits"];
    assert_eq!(l["agents"]["in_use"], 64, "{l}");
    // 64 agents tracked (the real one and 63 flooding ones); the datagrams
    // of the other 2,937 refused.
    let agent_hits = l["agents"]["hits"].as_u64().unwrap();
    assert_eq!(agent_hits, n as u64 - 63, "{l}");
    assert_eq!(s["agents"].as_array().unwrap().len(), 64);
    assert_eq!(s["ingest"]["datagrams_over_agent_limit"], agent_hits);
    // 63 flooding agents x 6 sources, 4 tracked each.
    assert_eq!(l["sources_per_agent"]["hits"], 63 * 2, "{l}");
    // 40 interface series at most, 3 per agent.
    assert_eq!(l["interfaces"]["in_use"], 40, "{l}");
    assert_eq!(s["series"]["interfaces"], 40);
    assert!(
        l["interfaces_per_agent"]["hits"].as_u64().unwrap() > 0,
        "{l}"
    );
    assert!(l["interfaces"]["hits"].as_u64().unwrap() > 0, "{l}");
    {
        let st = c.shared().store.read().unwrap();
        assert!((14..=40).contains(&st.interface_agents()));
        let mut per_agent = std::collections::BTreeMap::<String, usize>::new();
        for sr in st.list().iter().filter(|s| s.kind == "interface") {
            let agent = sr.id.trim_start_matches("if/").rsplit_once('/').unwrap().0;
            *per_agent.entry(agent.to_string()).or_default() += 1;
        }
        assert!(per_agent.values().all(|&k| k <= 3), "{per_agent:?}");
        // Series memory is what 3 subnets and 40 interfaces take.
        assert_eq!(
            st.memory_bytes(),
            3 * collector::store::subnet_def(&series).memory_bytes()
                + 40 * collector::store::iface_def(&series).memory_bytes()
        );
    }
    // Without caps the flood would hold 3,000 x 8 interface series of
    // 13 KiB each (over 300 MiB); the process grew by far less.
    assert!(
        rss_after.saturating_sub(rss_before) < 32 << 20,
        "RSS grew from {rss_before} to {rss_after}"
    );
    let (_, m) = http(api, "/metrics", Some(TOKEN)).await;
    assert!(
        m.contains(&format!(
            "collector_limit_hits_total{{limit=\"agents\"}} {agent_hits}\n"
        )),
        "{m}"
    );
    assert!(
        m.contains("collector_limit_in_use{limit=\"interfaces\"} 40\n"),
        "{m}"
    );
    assert!(
        m.contains("collector_limit_max{limit=\"agents\"} 64\n"),
        "{m}"
    );
    // The real agent's two datagrams: 2 x 5 samples x 64 x 1000 B.
    let a = c
        .shared()
        .stats()
        .1
        .into_iter()
        .find(|(k, _)| k.agent == ip("192.0.2.1"))
        .unwrap()
        .1;
    assert_eq!(a.datagrams, 2);
    let billed = c.shared().store.read().unwrap().subnets[1].totals.in_bytes;
    assert_eq!(billed, 2 * 5 * 64 * 1000);
    c.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
