//! Real peer: pmacct's `pmacctd` with the `sfprobe` plugin samples real
//! traffic between two lab namespaces and exports sFlow v5 to the collector;
//! `tshark` captures the same datagrams and decodes them independently.
//!
//! Checks:
//! 1. Oracle: the collector's per-subnet totals equal, exactly, the totals
//!    computed from tshark's decoding of the captured datagrams (rate x
//!    frame length per sample, attributed by the sampled IP addresses), and
//!    it received every captured datagram and flow sample.
//! 2. Truth: those totals match the traffic actually sent within the
//!    sampling error. pmacct samples each packet independently with
//!    probability 1/N ("simple randomic"), so the estimate N*k of n packets
//!    has standard deviation sqrt(n(N-1)); bytes (fixed frame size L) have
//!    L*sqrt(n(N-1)). We accept 5 standard deviations (a false failure once
//!    in ~1.7 million runs per check). With N = 5 and n = 40,000 that is
//!    +-5.0% of the packets; with n = 15,000, +-8.2%.
//!
//! Frame length: pmacct reports the captured L2 length plus 4 bytes of FCS
//! (and "stripped" = 4), as the sFlow spec asks, so a UDP packet with P
//! payload bytes over IPv4 counts 14 + 20 + 8 + P + 4 bytes.
//!
//! Needs root (namespaces), pmacctd and tshark (Debian packages pmacct,
//! tshark); fails, never skips, without them.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use collector::{
    config::Config,
    rrd::{Cf, RraDef},
    Collector,
};
use ipnet::IpNet;
use lab::NetNs;

mod common;
use common::{start_capture, stop_capture, tshark_oracle, wait_quiet};
use serde_json::Value;

const RATE: u64 = 5;
const T0: u64 = 1_800_000_000;

fn mac(ns: &NetNs, dev: &str) -> String {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", dev])).expect("ip -j");
    j[0]["address"].as_str().expect("mac").to_string()
}

/// Sends `n` UDP datagrams of `size` bytes from `from` to `to`, paced at
/// about 20,000 per second so that pmacctd's capture keeps up.
fn blast(from: SocketAddr, to: SocketAddr, n: usize, size: usize) {
    let s = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let buf = vec![0x5a; size];
    let start = Instant::now();
    for i in 0..n {
        s.send_to(&buf, to)
            .unwrap_or_else(|e| panic!("send to {to}: {e}"));
        if i % 100 == 99 {
            let due = Duration::from_micros(50 * (i as u64 + 1));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn within(what: &str, est: f64, n: f64, frame: f64) {
    let sd = frame * (n * (RATE as f64 - 1.0)).sqrt();
    let truth = n * frame;
    let err = est - truth;
    eprintln!(
        "{what}: estimate {est}, sent {truth}, error {:+.2}% ({:+.2} sd)",
        100.0 * err / truth,
        err / sd
    );
    assert!(
        err.abs() <= 5.0 * sd,
        "{what}: estimate {est} vs sent {truth}: {:.1} standard deviations off",
        err / sd
    );
}

#[test]
fn pmacct_sfprobe_totals_match_traffic_and_tshark() {
    let h1 = NetNs::new("sfh1").expect("namespace (needs root)");
    let h2 = NetNs::new("sfh2").expect("namespace (needs root)");
    h1.ip(&[
        "link",
        "add",
        "v1",
        "type",
        "veth",
        "peer",
        "name",
        "v2",
        "netns",
        h2.name(),
    ]);
    h1.ip(&["addr", "add", "10.70.0.1/24", "dev", "v1"]);
    h1.ip(&["addr", "add", "fd00:70::1/64", "dev", "v1", "nodad"]);
    h2.ip(&["addr", "add", "10.70.0.2/24", "dev", "v2"]);
    h2.ip(&["addr", "add", "fd00:70::2/64", "dev", "v2", "nodad"]);
    h1.ip(&["link", "set", "v1", "up"]);
    h2.ip(&["link", "set", "v2", "up"]);
    // Static neighbours: no ARP/ND in the measured traffic.
    let (m1, m2) = (mac(&h1, "v1"), mac(&h2, "v2"));
    h1.ip(&[
        "neigh",
        "replace",
        "10.70.0.2",
        "lladdr",
        &m2,
        "dev",
        "v1",
        "nud",
        "permanent",
    ]);
    h1.ip(&[
        "neigh",
        "replace",
        "fd00:70::2",
        "lladdr",
        &m2,
        "dev",
        "v1",
        "nud",
        "permanent",
    ]);
    h2.ip(&[
        "neigh",
        "replace",
        "10.70.0.1",
        "lladdr",
        &m1,
        "dev",
        "v2",
        "nud",
        "permanent",
    ]);
    h2.ip(&[
        "neigh",
        "replace",
        "fd00:70::1",
        "lladdr",
        &m1,
        "dev",
        "v2",
        "nud",
        "permanent",
    ]);

    let dir = std::env::temp_dir().join(format!("collector-pmacct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let nets: Vec<IpNet> = [
        "10.70.0.1/32",
        "10.70.0.2/32",
        "fd00:70::1/128",
        "fd00:70::2/128",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();

    // Everything below runs in h2: the collector, tshark and pmacctd.
    h2.enter(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let mut cfg = Config::default();
            cfg.sflow.listen = vec!["127.0.0.1:0".parse().unwrap()];
            cfg.sflow.workers = 1;
            cfg.subnets = nets.clone();
            cfg.series.step = 60;
            cfg.series.heartbeat = 3600;
            cfg.series.flush_interval = 3600;
            cfg.series.archives = vec![RraDef { cf: Cf::Average, steps: 1, rows: 10, xff: 0.5 }];
            cfg.api.listen = "127.0.0.1:0".parse().unwrap();
            let now = Arc::new(AtomicU64::new(T0 - 5));
            let n2 = now.clone();
            let c = Collector::start(cfg, Arc::new(move || n2.load(Ordering::SeqCst))).await.expect("collector");
            let port = c.sflow_addrs[0].port();
            now.store(T0, Ordering::SeqCst);
            c.flush();

            // Sinks, so that no ICMP port-unreachable joins the traffic.
            let _sink4 = UdpSocket::bind("10.70.0.2:9000").expect("sink");
            let _sink6 = UdpSocket::bind("[fd00:70::2]:9000").expect("sink");
            let _sink_back = h1.enter(|| UdpSocket::bind("10.70.0.1:9001").expect("sink"));

            let pcap = dir.join("sflow.pcap");
            let pcap_s = pcap.to_str().expect("utf-8").to_string();
            let tshark = start_capture(port, &pcap);

            let log = dir.join("pmacctd.log");
            let conf = dir.join("pmacctd.conf");
            std::fs::write(
                &conf,
                format!(
                    "daemonize: false\npcap_interface: v2\nplugins: sfprobe\nsfprobe_receiver: 127.0.0.1:{port}\n\
                     sfprobe_agentip: 10.70.0.2\nsampling_rate: {RATE}\nlogfile: {}\n",
                    log.display()
                ),
            )
            .expect("pmacctd config");
            let pmacctd = h2.spawn(&["pmacctd", "-f", conf.to_str().expect("utf-8")]).expect("pmacctd (Debian package pmacct)");
            lab::wait_until("pmacctd capturing and exporting", Duration::from_secs(20), || {
                std::fs::read_to_string(&log).is_ok_and(|l| l.contains("link type is") && l.contains("Exporting flows to"))
            });

            // The measured traffic.
            let (n4, n6, nback) = (40_000usize, 15_000usize, 15_000usize);
            h1.enter(|| {
                blast("10.70.0.1:9004".parse().unwrap(), "10.70.0.2:9000".parse().unwrap(), n4, 1000);
                blast("[fd00:70::1]:9002".parse().unwrap(), "[fd00:70::2]:9000".parse().unwrap(), n6, 500);
            });
            blast("10.70.0.2:9003".parse().unwrap(), "10.70.0.1:9001".parse().unwrap(), nback, 200);

            // Wait until pmacctd has exported everything (no new samples for 3 s).
            wait_quiet("sFlow export to settle", true, || c.shared().stats().0.flow_samples);
            // Stop the exporter, and the capture only once no datagram has
            // come for a while: one arriving between the end of the capture
            // and the read of the stats would be counted by one side only.
            // SAFETY: signalling a child of ours (spawned in h2).
            unsafe { libc::kill(pmacctd as i32, libc::SIGTERM) };
            wait_quiet("sFlow export stopped", false, || c.shared().stats().0.datagrams);
            stop_capture(tshark);

            now.store(T0 + 60, Ordering::SeqCst);
            c.flush();
            let (stats, agents, kernel_drops) = c.shared().stats();
            let report = c.shared().store.read().expect("store").report(T0, T0 + 60, 60, 95.0, None).expect("report");
            c.shutdown().await.expect("shutdown");
            eprintln!("collector stats: {stats:?}\nagents: {agents:?}");
            assert_eq!(kernel_drops, 0);

            // 1. tshark oracle: same datagrams, same numbers.
            let o = tshark_oracle(&pcap_s, port, &nets);
            assert_eq!(stats.datagrams, o.datagrams, "datagrams received vs captured");
            assert_eq!(stats.flow_samples, o.flow_samples, "flow samples");
            assert_eq!(stats.datagrams_rejected, 0);
            assert!(stats.errors.is_empty(), "{:?}", stats.errors);
            let agent = agents.values().next().expect("one agent");
            assert_eq!(agent.lost, 0, "sequence gaps on loopback");
            let get = |n: &str| report.subnets.iter().find(|s| s.subnet == n).unwrap_or_else(|| panic!("{n}")).clone();
            for (net, t) in &o.subnets {
                let r = get(&net.to_string());
                assert_eq!((r.in_bytes, r.out_bytes, r.in_pkts, r.out_pkts), (t.in_bytes, t.out_bytes, t.in_pkts, t.out_pkts), "{net} vs tshark");
            }

            // 2. Truth within the sampling error.
            let a = get("10.70.0.1/32");
            let b = get("10.70.0.2/32");
            let a6 = get("fd00:70::1/128");
            let b6 = get("fd00:70::2/128");
            let f4 = (14 + 20 + 8 + 1000 + 4) as f64;
            let f6 = (14 + 40 + 8 + 500 + 4) as f64;
            let fb = (14 + 20 + 8 + 200 + 4) as f64;
            within("10.70.0.1 out bytes", a.out_bytes, n4 as f64, f4);
            within("10.70.0.1 out packets", a.out_pkts, n4 as f64, 1.0);
            within("10.70.0.2 in bytes", b.in_bytes, n4 as f64, f4);
            within("fd00:70::1 out bytes", a6.out_bytes, n6 as f64, f6);
            within("fd00:70::2 in packets", b6.in_pkts, n6 as f64, 1.0);
            within("10.70.0.2 out bytes", b.out_bytes, nback as f64, fb);
            within("10.70.0.1 in packets", a.in_pkts, nback as f64, 1.0);
            // Directions do not leak into each other.
            assert_eq!((a6.in_bytes, b6.out_bytes), (0.0, 0.0));
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}
