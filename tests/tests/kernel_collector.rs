//! Open vSwitch's sFlow export with the **kernel** datapath (the VM runner
//! boots Debian's kernel when this one has no openvswitch module), into the
//! collector. The userspace-datapath variant with a tshark oracle runs
//! natively in `collector/tests/ovs_peer.rs`; this one proves the same path
//! with the datapath production uses: sampling in the kernel's `sample`
//! action, upcalls to ovs-vswitchd, counter polling of kernel vports.
//!
//! Checks: no decode errors or sequence gaps; the per-subnet totals
//! against the traffic sent (never more than 5 sampling standard deviations
//! above; below, up to 40% of OVS's own unreported sample loss under
//! emulation is allowed, as in ovs_peer.rs); per-interface series from the
//! counter samples (exact counters) within 2% of the bytes sent.

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use collector::{config::Config, rrd::Cf, Collector};
use lab::{
    kernel::{self, Feature},
    wait::scaled,
    NetNs,
};
use serde_json::Value;

const RATE: u64 = 4;

fn link(ns: &NetNs, dev: &str) -> Value {
    let j: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", dev])).expect("ip -j");
    j[0].clone()
}

fn blast(from: SocketAddr, to: SocketAddr, n: usize, size: usize, per_sec: u64) {
    let s = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let buf = vec![0x5a; size];
    let start = Instant::now();
    for i in 0..n {
        s.send_to(&buf, to)
            .unwrap_or_else(|e| panic!("send to {to}: {e}"));
        let due = Duration::from_micros(1_000_000 * (i as u64 + 1) / per_sec);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

fn vsctl(sw: &NetNs, dir: &Path, args: &[&str]) -> String {
    let db = format!("--db=unix:{}/db.sock", dir.display());
    let mut a = vec!["ovs-vsctl", db.as_str(), "--timeout=60"];
    a.extend_from_slice(args);
    sw.run(&a)
}

#[test]
fn ovs_kernel_datapath_sflow_into_collector() {
    kernel::require(&[Feature::Veth, Feature::OvsDatapath]);
    let sw = NetNs::new("kcsw").expect("namespace");
    let h1 = NetNs::new("kch1").expect("namespace");
    let h2 = NetNs::new("kch2").expect("namespace");
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
    h1.ip(&["addr", "add", "10.72.0.1/24", "dev", "e1"]);
    h2.ip(&["addr", "add", "10.72.0.2/24", "dev", "e2"]);
    for (ns, dev) in [(&h1, "e1"), (&h2, "e2"), (&sw, "p1"), (&sw, "p2")] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    let m1 = link(&h1, "e1")["address"]
        .as_str()
        .expect("mac")
        .to_string();
    let m2 = link(&h2, "e2")["address"]
        .as_str()
        .expect("mac")
        .to_string();
    h1.ip(&[
        "neigh",
        "replace",
        "10.72.0.2",
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
        "10.72.0.1",
        "lladdr",
        &m1,
        "dev",
        "e2",
        "nud",
        "permanent",
    ]);
    let if1 = link(&sw, "p1")["ifindex"].as_u64().expect("ifindex");
    let if2 = link(&sw, "p2")["ifindex"].as_u64().expect("ifindex");

    // A private OVS inside the switch namespace.
    let dir = std::env::temp_dir().join(format!("kernel-collector-ovs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.display().to_string();
    let env: Vec<String> = ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"]
        .iter()
        .map(|k| format!("{k}={d}"))
        .collect();
    sw.run(&[
        "ovsdb-tool",
        "create",
        &format!("{d}/conf.db"),
        "/usr/share/openvswitch/vswitch.ovsschema",
    ]);
    let mut db: Vec<String> = std::iter::once("env".to_string())
        .chain(env.iter().cloned())
        .collect();
    db.extend([
        "ovsdb-server".into(),
        format!("{d}/conf.db"),
        format!("--remote=punix:{d}/db.sock"),
        format!("--log-file={d}/ovsdb.log"),
    ]);
    sw.spawn(&db.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("ovsdb-server (openvswitch-switch)");
    lab::wait_until(
        "ovsdb-server socket",
        scaled(Duration::from_secs(60)),
        || dir.join("db.sock").exists(),
    );
    vsctl(&sw, &dir, &["--no-wait", "init"]);
    let mut vs: Vec<String> = std::iter::once("env".to_string())
        .chain(env.iter().cloned())
        .collect();
    vs.extend([
        "ovs-vswitchd".into(),
        format!("unix:{d}/db.sock"),
        format!("--log-file={d}/vswitchd.log"),
    ]);
    sw.spawn(&vs.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("ovs-vswitchd");
    vsctl(
        &sw,
        &dir,
        &[
            "add-br", "br0", "--", "add-port", "br0", "p1", "--", "add-port", "br0", "p2",
        ],
    );
    let dp = sw.run(&["ovs-dpctl", "show"]);
    assert!(
        dp.contains("p1") && dp.contains("p2"),
        "kernel datapath with both ports: {dp}"
    );

    sw.enter(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let yaml = "sflow: {listen: ['127.0.0.1:0'], workers: 1}\n\
                        subnets: [10.72.0.1/32, 10.72.0.2/32]\n\
                        series: {step: 1, heartbeat: 120, flush_interval: 1, archives: [{cf: AVERAGE, steps: 1, rows: 3600, xff: 0.5}]}\n\
                        api: {listen: '127.0.0.1:0'}\n";
            let cfg = Config::from_yaml(yaml, "test").expect("config");
            let c = Collector::start(cfg, collector::system_clock()).await.expect("collector");
            let port = c.sflow_addrs[0].port();
            let target = format!("target=\"127.0.0.1:{port}\"");
            vsctl(&sw, &dir, &["--", "--id=@s", "create", "sflow", "agent=lo", &target, "header=128", &format!("sampling={RATE}"), "polling=1", "--", "set", "bridge", "br0", "sflow=@s"]);
            lab::wait_until("OVS counter samples", scaled(Duration::from_secs(90)), || c.shared().stats().0.counter_samples >= 2);
            let _sink = h2.enter(|| UdpSocket::bind("10.72.0.2:9000").expect("sink"));
            let _sink_back = h1.enter(|| UdpSocket::bind("10.72.0.1:9001").expect("sink"));
            tokio::time::sleep(Duration::from_secs(2)).await;
            let t_start = collector::system_clock()();

            let (n, nback) = (3_000usize, 1_000usize);
            h1.enter(|| blast("10.72.0.1:9004".parse().unwrap(), "10.72.0.2:9000".parse().unwrap(), n, 500, 1_000));
            h2.enter(|| blast("10.72.0.2:9003".parse().unwrap(), "10.72.0.1:9001".parse().unwrap(), nback, 200, 1_000));

            let mut last = (0, Instant::now());
            lab::wait_until("sFlow export to settle", scaled(Duration::from_secs(120)), || {
                let s = c.shared().stats().0.flow_samples;
                if s != last.0 {
                    last = (s, Instant::now());
                }
                s > 0 && last.1.elapsed() > Duration::from_secs(3)
            });
            tokio::time::sleep(Duration::from_secs(3)).await; // counter polls after the traffic
            c.flush();
            let t_end = collector::system_clock()();
            let (stats, agents, kernel_drops) = c.shared().stats();
            eprintln!("collector stats: {stats:?}\nagents: {agents:?}");
            let (report, p1, p2) = {
                let st = c.shared().store.read().expect("store");
                let r = st.report(t_start - 1, t_end, 1, 95.0, None).expect("report");
                let rows = |i: u64| {
                    let (rrd, _) = st
                        .find(&format!("if/127.0.0.1/{i}"))
                        .unwrap_or_else(|| panic!("interface series for ifIndex {i}: {:?}", st.list().iter().map(|s| s.id.clone()).collect::<Vec<_>>()));
                    rrd.fetch(Cf::Average, t_start - 1, t_end, 1).expect("fetch")
                };
                (r, rows(if1), rows(if2))
            };
            c.shutdown().await.expect("shutdown");

            assert_eq!(kernel_drops, 0);
            assert_eq!(stats.datagrams_rejected, 0);
            assert!(stats.errors.is_empty(), "{:?}", stats.errors);
            assert!(agents.values().all(|a| a.lost == 0), "{agents:?}");

            let sum = |f: &collector::rrd::Fetched, ds: usize| f.rows.iter().map(|r| r[ds]).filter(|v| !v.is_nan()).sum::<f64>();
            let (p1_in, p2_in, p1_pkts) = (sum(&p1, 0), sum(&p2, 0), sum(&p1, 2));
            eprintln!("interface counters: p1 in {p1_in} B / {p1_pkts} packets, p2 in {p2_in} B");
            let close = |what: &str, got: f64, want: f64| assert!((got - want).abs() <= 0.02 * want, "{what}: {got} vs {want}");
            close("p1 in_octets", p1_in, n as f64 * 542.0);
            close("p1 in_pkts", p1_pkts, n as f64);
            close("p2 in_octets", p2_in, nback as f64 * 242.0);

            let get = |name: &str| report.subnets.iter().find(|s| s.subnet == name).expect("subnet").clone();
            let (a, b) = (get("10.72.0.1/32"), get("10.72.0.2/32"));
            let within = |what: &str, est: f64, n: f64, frame: f64| {
                let sd = frame * (n * (RATE as f64 - 1.0)).sqrt();
                let truth = n * frame;
                eprintln!("{what}: estimate {est}, sent {truth}, error {:+.2}% ({:+.2} sd)", 100.0 * (est - truth) / truth, (est - truth) / sd);
                assert!(est - truth <= 5.0 * sd, "{what}: {est} vs {truth}: too high");
                assert!(est >= 0.6 * truth - 5.0 * sd, "{what}: {est} vs {truth}: too low");
            };
            within("10.72.0.1 out bytes", a.out_bytes, n as f64, (14 + 20 + 8 + 500 + 4) as f64);
            within("10.72.0.2 in packets", b.in_pkts, n as f64, 1.0);
            within("10.72.0.2 out bytes", b.out_bytes, nback as f64, (14 + 20 + 8 + 200 + 4) as f64);
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}
