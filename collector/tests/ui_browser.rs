//! The HTML page and its graphs in a real browser: a collector fed with
//! real sFlow datagrams over UDP (flows both ways between two subnets, and
//! counter samples of one interface) over 60 steps, then Debian's
//! `chromium` in headless mode loads `/ui?token=...` (which moves the token
//! into a cookie and redirects), renders the page with its `<img>` graphs
//! and writes a screenshot. The screenshot is decoded and must show the
//! graphs' "in" area fill and "out" line colours over areas far larger than
//! the legend swatches: the images loaded, were authorised by the cookie,
//! and were drawn with data. Requests without a token are refused.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use collector::{
    config::Config,
    graph::{AREA_COLOR, LINE_COLOR},
    rrd::{Cf, RraDef},
    sflow::{encode::*, IfCounters},
    Collector,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "browser-token-0123456789";
const T0: u64 = 1_800_000_000;
const STEPS: u32 = 60;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config() -> Config {
    let mut c = Config::default();
    c.sflow.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.sflow.workers = 1;
    c.sflow.allow = vec!["127.0.0.1/32".parse().unwrap()];
    c.subnets = vec![
        "10.0.0.0/24".parse().unwrap(),
        "10.0.1.0/24".parse().unwrap(),
    ];
    c.series.step = 10;
    c.series.heartbeat = 3600;
    c.series.flush_interval = 3600; // flushed by the test
    c.series.archives = vec![RraDef {
        cf: Cf::Average,
        steps: 1,
        rows: 400,
        xff: 0.5,
    }];
    c.store.path = None;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.tokens = vec![TOKEN.into()];
    c
}

/// Step `k`'s datagram: flows both ways between the two subnets (amounts
/// vary with k, so "in" and "out" differ) and one interface's counters.
fn datagram_at(k: u32) -> Vec<u8> {
    let flow = |seq: u32, src: &str, dst: &str, len: u32| SampleSpec::Flow {
        expanded: false,
        sequence: seq,
        source_index: 1,
        sampling_rate: 100,
        sample_pool: 0,
        drops: 0,
        input: 1,
        output: 2,
        records: vec![FlowRec::RawHeader {
            protocol: 1,
            frame_length: len,
            stripped: 4,
            header: frame(&[], ip(src), ip(dst), 6, 1, 2, 900),
        }],
    };
    let mut samples: Vec<SampleSpec> = (0..(4 + k % 5))
        .map(|i| flow(k * 100 + i, "10.0.0.1", "10.0.1.2", 1400))
        .collect();
    samples.extend((0..2).map(|i| flow(k * 100 + 50 + i, "10.0.1.2", "10.0.0.1", 800)));
    samples.push(SampleSpec::Counters {
        expanded: false,
        sequence: k,
        source_index: 3,
        records: vec![CounterRec::Generic(IfCounters {
            if_index: 3,
            in_octets: u64::from(k) * 1_000_000 + u64::from(k * k) * 10_000,
            out_octets: u64::from(k) * 400_000,
            in_ucast_pkts: k * 1000,
            out_ucast_pkts: k * 500,
            ..Default::default()
        })],
    });
    datagram(&DatagramSpec {
        agent: Some(ip("192.0.2.1")),
        sub_agent_id: 0,
        sequence: k,
        uptime_ms: k * 10_000,
        samples,
    })
}

/// One HTTP/1.1 request; returns status, head and body.
async fn http(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status: u16 = head[9..12].parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

async fn datagrams(api: SocketAddr) -> u64 {
    let (st, _, body) = http(
        api,
        "/api/v1/stats",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["ingest"]["datagrams"].as_u64().unwrap()
}

fn count(img: &(u32, u32, Vec<u8>), c: (u8, u8, u8)) -> (usize, u32, u32) {
    let (w, _, px) = img;
    let mut n = 0;
    let (mut ymin, mut ymax) = (u32::MAX, 0);
    for (i, p) in px.chunks_exact(3).enumerate() {
        if (p[0], p[1], p[2]) == c {
            n += 1;
            let y = i as u32 / w;
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
    }
    (n, ymin, ymax)
}

fn decode_rgb(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(bytes);
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        o => panic!("unexpected screenshot colour type {o:?}"),
    };
    (info.width, info.height, rgb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_graphs_in_chromium() {
    let now = Arc::new(AtomicU64::new(T0 - 5));
    let n2 = now.clone();
    let clock: collector::ingest::Clock = Arc::new(move || n2.load(Ordering::SeqCst));
    let c = Collector::start(config(), clock).await.expect("start");
    let (to, api) = (c.sflow_addrs[0], c.api_addr);
    now.store(T0, Ordering::SeqCst);
    c.flush();

    // Real datagrams over UDP, one step at a time.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for k in 1..=STEPS {
        tx.send_to(&datagram_at(k), to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while datagrams(api).await < u64::from(k) {
            assert!(Instant::now() < deadline, "datagram {k} not received");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        now.store(T0 + u64::from(k) * 10, Ordering::SeqCst);
        c.flush();
    }

    // Without a token (or with a wrong one) everything is refused.
    let graph = "/graph/subnet/10.0.1.0/24.png?range=15m";
    for (path, extra) in [
        ("/ui", String::new()),
        (graph, String::new()),
        (
            graph,
            "Cookie: collector_token=wrong-wrong-wrong\r\n".into(),
        ),
        ("/ui?token=wrong-wrong-wrong", String::new()),
    ] {
        let (st, _, body) = http(api, path, &extra).await;
        assert_eq!(st, 401, "{path}: {}", String::from_utf8_lossy(&body));
    }
    // With it (header, cookie, query): a PNG.
    for extra in [
        format!("Authorization: Bearer {TOKEN}\r\n"),
        format!("Cookie: a=b; collector_token={TOKEN}\r\n"),
    ] {
        let (st, head, body) = http(api, graph, &extra).await;
        assert_eq!(st, 200, "{head}");
        assert!(head.contains("content-type: image/png"), "{head}");
        assert_eq!(&body[1..4], b"PNG");
    }
    // SVG by extension or parameter, for an interface too.
    for path in [
        "/graph/subnet/10.0.0.0/24.svg?range=15m",
        "/graph/if/192.0.2.1/3?format=svg&range=15m&ds=packets",
    ] {
        let (st, head, body) = http(api, path, &format!("Authorization: Bearer {TOKEN}\r\n")).await;
        assert_eq!(st, 200, "{path}: {head}");
        assert!(head.contains("content-type: image/svg+xml"), "{head}");
        let svg = String::from_utf8(body).unwrap();
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let (st, _, _) = http(
        api,
        "/graph/subnet/192.0.2.0/24.png",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(st, 404);
    let (st, head, _) = http(api, &format!("/ui?token={TOKEN}&range=15m"), "").await;
    assert_eq!(st, 303, "{head}");
    assert!(
        head.contains(&format!(
            "set-cookie: collector_token={TOKEN}; Path=/; HttpOnly"
        )),
        "{head}"
    );
    assert!(head.contains("location: /ui?range=15m"), "{head}");
    let (st, _, body) = http(
        api,
        "/graph/subnet/10.0.1.0/24.png?width=99999",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("'width' must be between"), "{body}");
    let (st, _, body) = http(
        api,
        "/ui?range=15m",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    let html = String::from_utf8_lossy(&body);
    assert_eq!(st, 200, "{html}");
    for id in ["subnet/10.0.0.0/24", "subnet/10.0.1.0/24", "if/192.0.2.1/3"] {
        assert!(
            html.contains(&format!("src=\"/graph/{id}.png?")),
            "{id}: {html}"
        );
    }
    assert!(html.contains("192.0.2.1"), "{html}");
    assert!(!html.contains(TOKEN), "the token must not be in the page");

    // The browser.
    let dir = std::env::temp_dir().join(format!("collector-ui-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("ui.png");
    let url = format!("http://{api}/ui?token={TOKEN}&range=15m");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--force-device-scale-factor=1",
            &format!("--user-data-dir={}", dir.join("profile").display()),
            &format!("--screenshot={}", shot.display()),
            "--window-size=1500,1300",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (Debian package chromium, installed by scripts/setup.sh)");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "chromium failed: {status}: {err}");
    let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}: {err}", shot.display()));
    let img = decode_rgb(&bytes);
    assert_eq!((img.0, img.1), (1500, 1300));

    // Each graph's legend has a 12x10 "in" swatch and a 12x2 "out" swatch:
    // three graphs hold 360 and 72 such pixels. Areas and lines with data
    // are far more.
    let (green, gy0, gy1) = count(&img, AREA_COLOR);
    let (blue, by0, by1) = count(&img, LINE_COLOR);
    assert!(
        green > 20_000,
        "only {green} pixels of the area colour: the graphs did not load or have no data"
    );
    assert!(
        blue > 1_000,
        "only {blue} pixels of the line colour: the graphs did not load or have no data"
    );
    // Below the heading and agent table, in the graphs' part of the page,
    // and on more than one row of graphs (subnets, then the interface).
    assert!(gy0 > 100 && by0 > 100, "colours at the top: {gy0} {by0}");
    assert!(
        gy1 - gy0 > 260 && by1 - by0 > 260,
        "{gy0}..{gy1} {by0}..{by1}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    c.shutdown().await.unwrap();
}
