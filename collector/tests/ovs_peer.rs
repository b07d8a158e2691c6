//! Real peer: Open vSwitch's sFlow export. ovsdb-server and ovs-vswitchd
//! run inside a lab namespace ("switch") with a private database, a bridge
//! whose two ports are veths to two host namespaces, and an sFlow agent
//! (sampling 1-in-4, counter polling every second) exporting to the
//! collector in the switch namespace.
//!
//! The bridge uses OVS's userspace datapath (`datapath_type=netdev`): this
//! kernel has no openvswitch module, and the sFlow code of ovs-vswitchd
//! (ofproto-dpif-sflow: sampling decisions, datagram building, counter
//! polling) is the same for both datapaths, so this runs natively without
//! the VM.
//!
//! Checks:
//! - tshark decodes the same datagrams: the collector's per-subnet totals
//!   equal the oracle's exactly, and every datagram and sample arrived;
//! - no decode errors (OVS's counter samples carry OVS-specific records,
//!   which tshark calls malformed; we skip them by length);
//! - per-interface series from OVS's counter samples: octet and packet
//!   counts (exact counters, not sampled) match what was sent through each
//!   port within 2%;
//! - the sampled totals against the traffic sent: never more than 5
//!   sampling standard deviations above (OVS samples each packet with
//!   probability 1/N; see pmacct_peer.rs for the bound). Below, we allow up
//!   to 40% less: the userspace datapath, starved of CPU on this 2-core
//!   machine, was seen delivering only 83-95% of the expected samples while
//!   its interface counters saw every packet (and forwarding only 88% of
//!   one direction). OVS does not report that loss
//!   (its sample_pool grows by N per *delivered* sample and drops stay 0),
//!   so no collector can correct for it; the exact oracle above is what
//!   pins the collector down.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
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

const RATE: u64 = 4;

fn mac(ns: &NetNs, dev: &str) -> String {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", dev])).expect("ip -j");
    j[0]["address"].as_str().expect("mac").to_string()
}

fn ifindex(ns: &NetNs, dev: &str) -> u32 {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", dev])).expect("ip -j");
    j[0]["ifindex"].as_u64().expect("ifindex") as u32
}

/// `n` UDP datagrams of `size` bytes, paced at about 5,000 per second (the
/// userspace datapath on a busy 2-core machine).
fn blast(from: SocketAddr, to: SocketAddr, n: usize, size: usize) {
    let s = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let buf = vec![0x5a; size];
    let start = Instant::now();
    for i in 0..n {
        s.send_to(&buf, to)
            .unwrap_or_else(|e| panic!("send to {to}: {e}"));
        if i % 50 == 49 {
            let due = Duration::from_micros(200 * (i as u64 + 1));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Estimate against truth: never more than 5 sampling standard deviations
/// above; below, OVS's own sample loss is allowed (see the module doc).
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
        err <= 5.0 * sd,
        "{what}: estimate {est} vs sent {truth}: {:.1} standard deviations above",
        err / sd
    );
    assert!(
        est >= 0.6 * truth - 5.0 * sd,
        "{what}: estimate {est} vs sent {truth}: more than OVS's sample loss explains"
    );
}

fn vsctl(sw: &NetNs, dir: &Path, args: &[&str]) -> String {
    let db = format!("--db=unix:{}/db.sock", dir.display());
    let mut a = vec!["ovs-vsctl", db.as_str(), "--timeout=30"];
    a.extend_from_slice(args);
    sw.run(&a)
}

#[test]
fn ovs_sflow_totals_match_traffic() {
    let sw = NetNs::new("ovssw").expect("namespace (needs root)");
    let h1 = NetNs::new("ovsh1").expect("namespace");
    let h2 = NetNs::new("ovsh2").expect("namespace");
    h1.ip(&[
        "link",
        "add",
        "e1",
        "type",
        "veth",
        "peer",
        "name",
        "p1",
        "netns",
        sw.name(),
    ]);
    h2.ip(&[
        "link",
        "add",
        "e2",
        "type",
        "veth",
        "peer",
        "name",
        "p2",
        "netns",
        sw.name(),
    ]);
    h1.ip(&["addr", "add", "10.71.0.1/24", "dev", "e1"]);
    h2.ip(&["addr", "add", "10.71.0.2/24", "dev", "e2"]);
    for (ns, dev) in [(&h1, "e1"), (&h2, "e2"), (&sw, "p1"), (&sw, "p2")] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    let (m1, m2) = (mac(&h1, "e1"), mac(&h2, "e2"));
    h1.ip(&[
        "neigh",
        "replace",
        "10.71.0.2",
        "lladdr",
        &m2,
        "dev",
        "e1",
        "nud",
        "permanent",
    ]);
    h2.ip(&[
        "neigh",
        "replace",
        "10.71.0.1",
        "lladdr",
        &m1,
        "dev",
        "e2",
        "nud",
        "permanent",
    ]);
    let (if1, if2) = (ifindex(&sw, "p1"), ifindex(&sw, "p2"));

    let dir = std::env::temp_dir().join(format!("collector-ovs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.display().to_string();
    let env = [
        format!("OVS_RUNDIR={d}"),
        format!("OVS_DBDIR={d}"),
        format!("OVS_LOGDIR={d}"),
        format!("OVS_SYSCONFDIR={d}"),
    ];
    sw.run(&[
        "ovsdb-tool",
        "create",
        &format!("{d}/conf.db"),
        "/usr/share/openvswitch/vswitch.ovsschema",
    ]);
    let mut a: Vec<&str> = vec!["env"];
    a.extend(env.iter().map(String::as_str));
    let mut db = a.clone();
    let remote = format!("--remote=punix:{d}/db.sock");
    let conf = format!("{d}/conf.db");
    let dblog = format!("--log-file={d}/ovsdb.log");
    db.extend([
        "ovsdb-server",
        conf.as_str(),
        remote.as_str(),
        dblog.as_str(),
    ]);
    sw.spawn(&db)
        .expect("ovsdb-server (Debian package openvswitch-switch)");
    lab::wait_until("ovsdb-server socket", Duration::from_secs(30), || {
        dir.join("db.sock").exists()
    });
    vsctl(&sw, &dir, &["--no-wait", "init"]);
    let mut vs = a.clone();
    let dbsock = format!("unix:{d}/db.sock");
    let vslog = format!("--log-file={d}/vswitchd.log");
    vs.extend(["ovs-vswitchd", dbsock.as_str(), vslog.as_str()]);
    sw.spawn(&vs).expect("ovs-vswitchd");
    vsctl(
        &sw,
        &dir,
        &[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "--",
            "add-port",
            "br0",
            "p1",
            "--",
            "add-port",
            "br0",
            "p2",
        ],
    );

    let nets: Vec<IpNet> = ["10.71.0.1/32", "10.71.0.2/32"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    sw.enter(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut cfg = Config::default();
            cfg.sflow.listen = vec!["127.0.0.1:0".parse().unwrap()];
            cfg.sflow.workers = 1;
            cfg.subnets = nets.clone();
            cfg.series.step = 1;
            cfg.series.heartbeat = 60;
            cfg.series.flush_interval = 1;
            cfg.series.archives = vec![RraDef {
                cf: Cf::Average,
                steps: 1,
                rows: 3600,
                xff: 0.5,
            }];
            cfg.api.listen = "127.0.0.1:0".parse().unwrap();
            let c = Collector::start(cfg, collector::system_clock())
                .await
                .expect("collector");
            let port = c.sflow_addrs[0].port();
            let pcap = dir.join("sflow.pcap");
            let tshark = start_capture(port, &pcap);
            let target = format!("target=\"127.0.0.1:{port}\"");
            vsctl(
                &sw,
                &dir,
                &[
                    "--",
                    "--id=@s",
                    "create",
                    "sflow",
                    "agent=lo",
                    &target,
                    "header=128",
                    &format!("sampling={RATE}"),
                    "polling=1",
                    "--",
                    "set",
                    "bridge",
                    "br0",
                    "sflow=@s",
                ],
            );
            // Counter samples arrive every second once the agent runs.
            lab::wait_until("OVS counter samples", Duration::from_secs(60), || {
                c.shared().stats().0.counter_samples >= 2
            });
            let _sink = h2.enter(|| UdpSocket::bind("10.71.0.2:9000").expect("sink"));
            let _sink_back = h1.enter(|| UdpSocket::bind("10.71.0.1:9001").expect("sink"));
            tokio::time::sleep(Duration::from_secs(2)).await;
            let t_start = collector::system_clock()();

            let (n, nback) = (12_000usize, 4_000usize);
            h1.enter(|| {
                blast(
                    "10.71.0.1:9004".parse().unwrap(),
                    "10.71.0.2:9000".parse().unwrap(),
                    n,
                    500,
                )
            });
            h2.enter(|| {
                blast(
                    "10.71.0.2:9003".parse().unwrap(),
                    "10.71.0.1:9001".parse().unwrap(),
                    nback,
                    200,
                )
            });

            wait_quiet("sFlow export to settle", true, || {
                c.shared().stats().0.flow_samples
            });
            tokio::time::sleep(Duration::from_secs(2)).await; // two more counter polls
                                                              // Stop the export, and the capture only once no datagram has come
                                                              // for a while: a counter datagram between the end of the capture
                                                              // and the read of the stats would be counted by one side only.
            vsctl(&sw, &dir, &["clear", "bridge", "br0", "sflow"]);
            wait_quiet("sFlow export stopped", false, || {
                c.shared().stats().0.datagrams
            });
            stop_capture(tshark);
            c.flush();
            let t_end = collector::system_clock()();
            let (stats, agents, kernel_drops) = c.shared().stats();
            eprintln!("collector stats: {stats:?}\nagents: {agents:?}");
            let (report, if_rows) = {
                let st = c.shared().store.read().expect("store");
                let r = st
                    .report(t_start - 1, t_end, 1, 95.0, None)
                    .expect("report");
                let rows = |i: u32| {
                    let (rrd, _) = st.find(&format!("if/127.0.0.1/{i}")).unwrap_or_else(|| {
                        panic!(
                            "interface series for ifIndex {i}: {:?}",
                            st.list().iter().map(|s| s.id.clone()).collect::<Vec<_>>()
                        )
                    });
                    rrd.fetch(Cf::Average, t_start - 1, t_end, 1)
                        .expect("fetch")
                };
                (r, [rows(if1), rows(if2)])
            };
            c.shutdown().await.expect("shutdown");

            assert_eq!(kernel_drops, 0);
            assert_eq!(stats.datagrams_rejected, 0);
            // OVS's counter samples carry OVS-specific records (OpenFlow port,
            // port name, ...): skipped by length, never errors.
            assert!(stats.errors.is_empty(), "{:?}", stats.errors);
            assert!(stats.flow_samples > (n as u64 / RATE) / 2, "{stats:?}");
            let sum = |f: &collector::rrd::Fetched, ds: usize| {
                f.rows
                    .iter()
                    .map(|r| r[ds])
                    .filter(|v| !v.is_nan())
                    .sum::<f64>()
            };
            let p1_in = sum(&if_rows[0], 0);
            let p1_out = sum(&if_rows[0], 1);
            let p2_in = sum(&if_rows[1], 0);
            eprintln!(
                "p1 in {p1_in} out {p1_out}, p2 in {p2_in}, p1 in_pkts {}",
                sum(&if_rows[0], 2)
            );
            let close = |what: &str, got: f64, want: f64| {
                assert!((got - want).abs() <= 0.02 * want, "{what}: {got} vs {want}")
            };
            let get = |name: &str| {
                report
                    .subnets
                    .iter()
                    .find(|s| s.subnet == name)
                    .unwrap()
                    .clone()
            };
            // The tshark oracle over the same datagrams: exact.
            let o = tshark_oracle(pcap.to_str().expect("utf-8"), port, &nets);
            assert_eq!(
                (stats.datagrams, stats.flow_samples),
                (o.datagrams, o.flow_samples),
                "received vs captured"
            );
            for (net, t) in &o.subnets {
                let r = get(&net.to_string());
                assert_eq!(
                    (r.in_bytes, r.out_bytes, r.in_pkts, r.out_pkts),
                    (t.in_bytes, t.out_bytes, t.in_pkts, t.out_pkts),
                    "{net} vs tshark"
                );
            }
            let (a, b) = (get("10.71.0.1/32"), get("10.71.0.2/32"));
            // OVS reports the frame length with 4 bytes of FCS.
            let f = (14 + 20 + 8 + 500 + 4) as f64;
            let fb = (14 + 20 + 8 + 200 + 4) as f64;
            within("10.71.0.1 out bytes", a.out_bytes, n as f64, f);
            within("10.71.0.2 in packets", b.in_pkts, n as f64, 1.0);
            within("10.71.0.2 out bytes", b.out_bytes, nback as f64, fb);
            within("10.71.0.1 in packets", a.in_pkts, nback as f64, 1.0);

            // Interface counters: port p1 received the 12,000 frames of 542 B
            // from h1 (counters count frames without FCS) and sent the 4,000 of 242.
            close("p1 in_octets", p1_in, n as f64 * 542.0);
            // What p1 sent depends on OVS forwarding, which drops under CPU
            // starvation: at most what p2 received.
            assert!(
                p1_out > 0.5 * nback as f64 * 242.0 && p1_out <= p2_in + 1000.0,
                "p1 out_octets {p1_out}"
            );
            close("p2 in_octets", p2_in, nback as f64 * 242.0);
            let p1_pkts = sum(&if_rows[0], 2);
            close("p1 in_pkts", p1_pkts, n as f64);
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}
