//! Prometheus remote-write against a real receiver: Debian's `prometheus`
//! (scripts/setup.sh) started privately with `--web.enable-remote-write-receiver`.
//!
//! - `prometheus_receives_series_and_an_outage_loses_nothing`: the whole
//!   collector fed sFlow over loopback UDP writes its subnet and interface
//!   series; every row the store consolidated is in Prometheus with the
//!   same value and the documented labels, also across a 60 s outage of
//!   Prometheus (killed, restarted on the same storage and port) while
//!   traffic goes on; the totals equal what was sent.
//! - `retries_honour_retry_after_and_back_off_and_4xx_is_dropped`: against a
//!   small HTTP server answering 429 (Retry-After: 1), 503, 204, then 400:
//!   the request headers and body, the waits, and the counters.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use collector::{
    config::Config,
    remote_write::{proto, RemoteWrite, RemoteWriteConfig},
    rrd::{Cf, RraDef},
    sflow::{encode::*, IfCounters},
    store::Store,
    Collector,
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Prometheus {
    child: Child,
}

impl Prometheus {
    /// Starts `prometheus` on 127.0.0.1:`port` with `dir/data` as storage.
    fn start(dir: &Path, port: u16) -> Self {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("prometheus.log"))
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run prometheus (Debian package prometheus, scripts/setup.sh)");
        Self { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get(client: &HttpClient, url: &str) -> Option<(u16, String)> {
    let resp = client.get(url.parse().unwrap()).await.ok()?;
    let st = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((st, String::from_utf8_lossy(&body).into_owned()))
}

async fn wait_ready(client: &HttpClient, port: u16, dir: &Path) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Some((200, _)) = get(client, &format!("http://127.0.0.1:{port}/-/ready")).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "prometheus not ready: {}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Raw samples of every series matching `selector` over the last `range`
/// (an instant query of a range vector: exact timestamps, no lookback fill).
async fn raw_samples(
    client: &HttpClient,
    port: u16,
    selector: &str,
    range: &str,
) -> Vec<(BTreeMap<String, String>, BTreeMap<i64, f64>)> {
    let q = urlencode(&format!("{selector}[{range}]"));
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
    let (st, body) = get(client, &url).await.expect("query prometheus");
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = p[0].as_f64().unwrap();
                    let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                    ((t * 1000.0).round() as i64, v)
                })
                .collect();
            (labels, values)
        })
        .collect()
}

const SRC_NET: &str = "10.1.0.0/24";
const DST_NET: &str = "10.2.0.0/24";
const AGENT: &str = "192.0.2.7";
const RATE: u32 = 10;
const FRAME: u32 = 1000;

/// One datagram: one flow sample 10.1.0.5 -> 10.2.0.9 (rate 10, 1000 B),
/// and, when `octets` is set, a counter sample of ifIndex 3.
fn datagram_bytes(seq: u32, octets: Option<u64>) -> Vec<u8> {
    let mut samples = vec![SampleSpec::Flow {
        expanded: false,
        sequence: seq,
        source_index: 3,
        sampling_rate: RATE,
        sample_pool: 0,
        drops: 0,
        input: 3,
        output: 4,
        records: vec![FlowRec::RawHeader {
            protocol: 1,
            frame_length: FRAME,
            stripped: 4,
            header: frame(&[], ip("10.1.0.5"), ip("10.2.0.9"), 6, 1000, 80, 900),
        }],
    }];
    if let Some(o) = octets {
        samples.push(SampleSpec::Counters {
            expanded: false,
            sequence: seq,
            source_index: 3,
            records: vec![CounterRec::Generic(IfCounters {
                if_index: 3,
                if_type: 6,
                if_speed: 10_000_000_000,
                if_direction: 1,
                if_status: 3,
                in_octets: o,
                out_octets: o / 2,
                in_ucast_pkts: (o / 1000) as u32,
                ..Default::default()
            })],
        });
    }
    datagram(&DatagramSpec {
        agent: Some(ip(AGENT)),
        sub_agent_id: 0,
        sequence: seq,
        uptime_ms: seq,
        samples,
    })
}

fn collector_config(rw_url: String) -> Config {
    let mut c = Config::default();
    c.sflow.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.sflow.workers = 1;
    c.sflow.allow = vec!["127.0.0.1/32".parse().unwrap()];
    c.subnets = vec![SRC_NET.parse().unwrap(), DST_NET.parse().unwrap()];
    c.series.step = 1;
    c.series.heartbeat = 5;
    c.series.flush_interval = 1;
    c.series.archives = vec![RraDef {
        cf: Cf::Average,
        steps: 1,
        rows: 600,
        xff: 0.5,
    }];
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.remote_write = Some(RemoteWriteConfig {
        url: rw_url,
        batch_samples: 500,
        min_backoff_ms: 50,
        max_backoff_ms: 1000,
        timeout: 5,
        labels: BTreeMap::from([("collector".into(), "rw-test".into())]),
        ..Default::default()
    });
    c
}

/// The store's known rows of one series' data source: time (ms) -> value.
fn store_rows(c: &Collector, id: &str, ds: usize) -> BTreeMap<i64, f64> {
    let st = c.shared().store.read().unwrap();
    let (rrd, _) = st.find(id).unwrap_or_else(|| panic!("series {id}"));
    let f = rrd.rra_rows(0);
    f.iter()
        .filter(|(_, r)| r[ds].is_finite())
        .map(|(t, r)| (t as i64 * 1000, r[ds]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_receives_series_and_an_outage_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("collector-rw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let port = free_port();
    let mut prom = Prometheus::start(&dir, port);
    wait_ready(&client, port, &dir).await;

    let c = Collector::start(
        collector_config(format!("http://127.0.0.1:{port}/api/v1/write")),
        collector::system_clock(),
    )
    .await
    .expect("start collector");
    let rw = c.shared().remote_write.clone().expect("remote_write on");
    let sflow = c.sflow_addrs[0];

    // Traffic: 20 datagrams per second, interface counters every 5th.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut seq = 0u32;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let oct = seq.is_multiple_of(5).then(|| seq as u64 * 12_345);
                tx.send_to(&datagram_bytes(seq, oct), sflow).unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // Series arrive with the documented labels.
    let sel = format!("hostnet_subnet_bytes_per_second{{subnet=\"{DST_NET}\",direction=\"in\"}}");
    let t = Instant::now();
    loop {
        let r = raw_samples(&client, port, &sel, "10m").await;
        if r.first().is_some_and(|(_, v)| v.len() >= 3) {
            let names: Vec<_> = r[0].0.keys().cloned().collect();
            assert_eq!(names, ["__name__", "collector", "direction", "subnet"]);
            assert_eq!(r[0].0["collector"], "rw-test");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no samples in prometheus: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ifsel = format!(
        "hostnet_interface_octets_per_second{{agent=\"{AGENT}\",ifindex=\"3\",direction=\"in\"}}"
    );
    let t = Instant::now();
    while raw_samples(&client, port, &ifsel, "10m").await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no interface samples"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Outage: 60 s without a receiver while traffic goes on.
    prom.kill();
    let down_at = collector::system_clock()();
    let retried_before = rw.counters.requests_retried.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let up_at = collector::system_clock()();
    let queued = rw.queue_len();
    assert!(
        rw.counters.requests_retried.load(Ordering::SeqCst) > retried_before,
        "no retries during the outage"
    );
    assert!(queued > 100, "queue during the outage: {queued}");
    drop(prom);
    let mut prom = Prometheus::start(&dir, port);
    wait_ready(&client, port, &dir).await;

    // A few more seconds of traffic, then stop it. Rows up to `until` (2 s
    // after the last datagram) are compared; the flusher goes on closing
    // (zero) subnet rows after it. Samples are sent in the order they were
    // collected, so once Prometheus holds the subnet row after `until`,
    // every row up to `until` of every series has been sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let until = collector::system_clock()() + 2;
    let t = Instant::now();
    loop {
        let r = raw_samples(&client, port, &sel, "10m").await;
        if r.first()
            .is_some_and(|(_, v)| v.contains_key(&((until as i64 + 1) * 1000)))
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "row {} not in prometheus",
            until + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let until_ms = until as i64 * 1000;
    // Every known row of the store is in Prometheus with its value.
    let mut outage_rows = 0;
    for (id, ds, sel) in [
        (format!("subnet/{DST_NET}"), 0, format!("hostnet_subnet_bytes_per_second{{subnet=\"{DST_NET}\",direction=\"in\"}}")),
        (format!("subnet/{DST_NET}"), 2, format!("hostnet_subnet_packets_per_second{{subnet=\"{DST_NET}\",direction=\"in\"}}")),
        (format!("subnet/{SRC_NET}"), 1, format!("hostnet_subnet_bytes_per_second{{subnet=\"{SRC_NET}\",direction=\"out\"}}")),
        (format!("subnet/{SRC_NET}"), 0, format!("hostnet_subnet_bytes_per_second{{subnet=\"{SRC_NET}\",direction=\"in\"}}")),
        (format!("if/{AGENT}/3"), 0, ifsel.clone()),
        (format!("if/{AGENT}/3"), 1, format!("hostnet_interface_octets_per_second{{agent=\"{AGENT}\",ifindex=\"3\",direction=\"out\"}}")),
    ] {
        let want = store_rows(&c, &id, ds);
        let got = raw_samples(&client, port, &sel, "10m").await;
        assert_eq!(got.len(), 1, "{sel}: {got:?}");
        let got = &got[0].1;
        let first = *got.keys().next().unwrap();
        // Rows from the first one written on (earlier rows were unknown or
        // closed before the collector started).
        let want: BTreeMap<i64, f64> = want
            .range(first..=until_ms)
            .map(|(k, v)| (*k, *v))
            .collect();
        let got: BTreeMap<i64, f64> = got
            .range(..=until_ms)
            .map(|(k, v)| (*k, *v))
            .collect();
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
        assert!(missing.is_empty(), "{sel}: rows missing in prometheus: {missing:?}");
        for (t, v) in &want {
            assert_eq!(got[t], *v, "{sel} at {t}");
        }
        assert_eq!(got.len(), want.len(), "{sel}: extra samples");
        let in_outage = want
            .keys()
            .filter(|t| (down_at as i64 * 1000..=up_at as i64 * 1000).contains(*t))
            .count();
        if id.starts_with("subnet/") {
            assert!(in_outage >= 58, "{sel}: {in_outage} rows of the outage");
        }
        outage_rows += in_outage;
    }
    // Totals: the bytes Prometheus holds are the bytes sent.
    let got = raw_samples(&client, port, &sel, "10m").await;
    let total: f64 = got[0].1.range(..=until_ms).map(|(_, v)| v).sum();
    let datagrams = sent.load(Ordering::SeqCst) as f64;
    // Rates are bytes over whole-second intervals: exact but for float
    // rounding when a flush spanned more than one second.
    let want_total = datagrams * RATE as f64 * FRAME as f64;
    assert!(
        (total - want_total).abs() <= want_total * 1e-9,
        "bytes in {DST_NET}: {total} in prometheus, {want_total} sent"
    );
    let (stats, _, _) = c.shared().stats();
    assert_eq!(stats.flow_samples_attributed, datagrams as u64);

    // The collector's /metrics reports the pipeline.
    let (st, metrics) = get(&client, &format!("http://{}/metrics", c.api_addr))
        .await
        .unwrap();
    assert_eq!(st, 200);
    for line in [
        "collector_remote_write_samples_dropped_total{reason=\"queue_full\"} 0",
        "collector_remote_write_samples_dropped_total{reason=\"rejected\"} 0",
        "collector_remote_write_queue_samples 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(metrics.contains("collector_remote_write_retries_total "));
    let sent_samples = rw.counters.samples_sent.load(Ordering::SeqCst);
    assert!(metrics.contains(&format!(
        "collector_remote_write_samples_sent_total {sent_samples}"
    )));
    eprintln!(
        "outage {}s: {queued} samples queued, {outage_rows} outage rows checked, {sent_samples} samples sent in {} requests, {} retries",
        up_at - down_at,
        rw.counters.requests_sent.load(Ordering::SeqCst),
        rw.counters.requests_retried.load(Ordering::SeqCst),
    );
    c.shutdown().await.unwrap();
    // The final flush's rows were delivered by the shutdown drain.
    assert_eq!(rw.queue_len(), 0);
    assert_eq!(rw.counters.dropped_shutdown.load(Ordering::SeqCst), 0);
    prom.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    headers: String,
    body: Vec<u8>,
}

/// Answers the n-th request with `script[n]` (status, extra headers), then
/// 204; one request per connection.
async fn script_server(script: Vec<(u16, &'static str)>) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let headers = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let len: usize = headers
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            let n = {
                let mut s = s2.lock().unwrap();
                s.push(Seen {
                    at: Instant::now(),
                    headers,
                    body: buf[head_end..head_end + len].to_vec(),
                });
                s.len() - 1
            };
            let (status, extra) = script.get(n).copied().unwrap_or((204, ""));
            let resp = format!(
                "HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
    });
    (addr, seen)
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("collector-rw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_honour_retry_after_and_back_off_and_4xx_is_dropped() {
    let (addr, seen) = script_server(vec![
        (429, "Retry-After: 1\r\n"),
        (503, ""),
        (204, ""),
        (400, ""),
    ])
    .await;
    let dir = tempdir("retry");
    std::fs::write(dir.join("token"), "tok-0123456789abcdef\n").unwrap();
    let cfg = RemoteWriteConfig {
        url: format!("http://{addr}/api/v1/write"),
        bearer_token_file: Some(dir.join("token")),
        min_backoff_ms: 200,
        max_backoff_ms: 400,
        ..Default::default()
    };
    let mut series = Config::default().series;
    series.step = 10;
    let net = "10.9.0.0/24".parse().unwrap();
    let t0 = 1_800_000_000;
    let mut store = Store::new(&series, &[net], t0);
    let rw = RemoteWrite::new(&cfg, &store).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(rw.clone().run(stop_rx));

    // Batch 1: three rows x four data sources.
    store.flush_subnets(t0 + 30);
    rw.collect(&store);
    let t = Instant::now();
    while rw.counters.samples_sent.load(Ordering::SeqCst) < 12 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{:?}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.len(), 3);
        let gap1 = s[1].at - s[0].at;
        let gap2 = s[2].at - s[1].at;
        assert!(
            gap1 >= Duration::from_millis(1000),
            "Retry-After not honoured: {gap1:?}"
        );
        assert!(
            gap2 >= Duration::from_millis(200) && gap2 < Duration::from_millis(1000),
            "back-off after 503: {gap2:?}"
        );
        for r in s.iter() {
            assert!(
                r.headers.starts_with("post /api/v1/write http/1.1\r\n"),
                "{}",
                r.headers
            );
            for h in [
                "content-encoding: snappy\r\n",
                "content-type: application/x-protobuf\r\n",
                "x-prometheus-remote-write-version: 0.1.0\r\n",
                "authorization: bearer tok-0123456789abcdef\r\n",
            ] {
                assert!(r.headers.contains(h), "{h} not in {}", r.headers);
            }
            assert_eq!(r.body, s[0].body, "a retry sends the same batch");
        }
        let req = proto::decode(&s[0].body).unwrap();
        assert_eq!(req.timeseries.len(), 4);
        for ts in &req.timeseries {
            let names: Vec<_> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, ["__name__", "direction", "subnet"]);
            let times: Vec<_> = ts.samples.iter().map(|s| s.timestamp).collect();
            assert_eq!(times, [10, 20, 30].map(|d| (t0 + d) as i64 * 1000));
        }
    }
    assert_eq!(rw.counters.requests_retried.load(Ordering::SeqCst), 2);
    assert_eq!(rw.counters.requests_sent.load(Ordering::SeqCst), 1);

    // Batch 2 is answered 400: dropped and counted, not retried.
    store.flush_subnets(t0 + 40);
    rw.collect(&store);
    let t = Instant::now();
    while rw.counters.dropped_rejected.load(Ordering::SeqCst) < 4 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().len(), 4, "a 400 must not be retried");
    assert_eq!(rw.counters.requests_retried.load(Ordering::SeqCst), 2);
    assert_eq!(rw.queue_len(), 0);

    // Batch 3 goes through (the script answers 204 from now on).
    store.flush_subnets(t0 + 50);
    rw.collect(&store);
    let t = Instant::now();
    while rw.counters.samples_sent.load(Ordering::SeqCst) < 16 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap();

    // Shutdown: the rows of the final flush go out in the drain.
    store.flush_subnets(t0 + 60);
    rw.collect(&store);
    assert_eq!(rw.queue_len(), 4);
    rw.drain(Duration::from_secs(5)).await;
    assert_eq!(rw.counters.samples_sent.load(Ordering::SeqCst), 20);
    assert_eq!(rw.counters.dropped_shutdown.load(Ordering::SeqCst), 0);
    assert_eq!(rw.queue_len(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn queue_bound_drops_oldest_and_counts() {
    let cfg = RemoteWriteConfig {
        url: "http://127.0.0.1:1/api/v1/write".into(),
        batch_samples: 4,
        queue_max_samples: 10,
        ..Default::default()
    };
    let mut series = Config::default().series;
    series.step = 10;
    let t0 = 1_800_000_000;
    let mut store = Store::new(&series, &["10.9.0.0/24".parse().unwrap()], t0);
    let rw = RemoteWrite::new(&cfg, &store).unwrap();
    // No sender runs: 5 rows x 4 data sources = 20 samples for a bound of 10.
    store.flush_subnets(t0 + 50);
    rw.collect(&store);
    assert_eq!(rw.queue_len(), 10);
    assert_eq!(rw.counters.dropped_queue_full.load(Ordering::SeqCst), 10);
    let mut m = String::new();
    rw.write_metrics(&mut m);
    assert!(
        m.contains("collector_remote_write_samples_dropped_total{reason=\"queue_full\"} 10\n"),
        "{m}"
    );
    assert!(
        m.contains("collector_remote_write_queue_samples 10\n"),
        "{m}"
    );
    // Nothing listens on port 1: the shutdown drain gives up, counting them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rw.drain(Duration::from_secs(2)));
    assert_eq!(rw.counters.dropped_shutdown.load(Ordering::SeqCst), 10);
    assert_eq!(rw.queue_len(), 0);
}

/// Benchmark (docs/BENCHMARKS.md goal: at least 100,000 samples/s): 500
/// subnet series x 4 data sources x 150 rows = 300,000 samples queued at
/// once, sent to a private Prometheus in batches of `batch_samples`.
/// `cargo test --release -p collector --test remote_write -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run by hand in release mode"]
async fn bench_samples_per_second_into_prometheus() {
    let dir = tempdir("bench");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let port = free_port();
    let mut prom = Prometheus::start(&dir, port);
    wait_ready(&client, port, &dir).await;
    let nets: Vec<ipnet::IpNet> = (0..500u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap())
        .collect();
    let mut series = Config::default().series;
    series.step = 10;
    series.archives = vec![RraDef {
        cf: Cf::Average,
        steps: 1,
        rows: 200,
        xff: 0.5,
    }];
    let now = collector::system_clock()();
    let t0 = now - now % 10 - 3600;
    for batch in [2000usize, 10_000] {
        let mut store = Store::new(&series, &nets, t0);
        let cfg = RemoteWriteConfig {
            url: format!("http://127.0.0.1:{port}/api/v1/write"),
            batch_samples: batch,
            labels: BTreeMap::from([("run".into(), format!("b{batch}"))]),
            ..Default::default()
        };
        let rw = RemoteWrite::new(&cfg, &store).unwrap();
        for k in 1..=150 {
            store.flush_subnets(t0 + 10 * k);
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        rw.collect(&store);
        let collected = start.elapsed();
        assert_eq!(rw.queue_len(), 500 * 4 * 150);
        let task = tokio::spawn(rw.clone().run(stop_rx));
        let total = 500 * 4 * 150;
        while rw.counters.samples_sent.load(Ordering::SeqCst) < total {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "sent {} requests {} retried {}",
                rw.counters.samples_sent.load(Ordering::SeqCst),
                rw.counters.requests_sent.load(Ordering::SeqCst),
                rw.counters.requests_retried.load(Ordering::SeqCst)
            );
            assert_eq!(rw.counters.dropped_rejected.load(Ordering::SeqCst), 0);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = start.elapsed();
        let rate = total as f64 / took.as_secs_f64();
        eprintln!(
            "batch {batch}: {total} samples in {took:?} ({rate:.0}/s; collect {collected:?}), {} requests, {} retries",
            rw.counters.requests_sent.load(Ordering::SeqCst),
            rw.counters.requests_retried.load(Ordering::SeqCst)
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(rate >= 100_000.0, "{rate:.0} samples/s");
    }
    prom.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
