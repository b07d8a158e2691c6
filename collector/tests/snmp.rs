//! The SNMP poller against a real net-snmp `snmpd` (Debian package
//! `snmpd`, started privately on 127.0.0.1 with a generated snmpd.conf, a
//! v2c community and a v3 user made by `createUser`), checked against
//! `snmpbulkwalk` (Debian package `snmp`); a dead and a slow target next to
//! a healthy one; secrets never printed, logged or served.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use collector::{
    config::Config,
    rrd::{Cf, RraDef},
    snmp::{
        config::{Secret, SnmpVersion, TargetConfig},
        decode::Counter,
        poller::poll_target_once,
    },
    system_clock, Collector,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COMMUNITY: &str = "c0mmunity-SECRET-v2";
const AUTH_PASS: &str = "authSECRETpass1";
const PRIV_PASS: &str = "privSECRETpass1";
const USER: &str = "pollv3";
const TOKEN: &str = "test-token-0123456789";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snmp-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private snmpd.
struct Snmpd {
    child: Child,
    port: u16,
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Snmpd {
    fn start(dir: &Path) -> Self {
        let port = free_udp_port();
        let conf = dir.join("snmpd.conf");
        std::fs::write(
            &conf,
            format!(
                "agentAddress udp:127.0.0.1:{port}\n\
                 rocommunity {COMMUNITY} 127.0.0.1\n\
                 createUser {USER} SHA \"{AUTH_PASS}\" AES \"{PRIV_PASS}\"\n\
                 rouser {USER} priv\n"
            ),
        )
        .unwrap();
        let persist = dir.join("persist");
        std::fs::create_dir_all(&persist).unwrap();
        let log = std::fs::File::create(dir.join("snmpd.log")).unwrap();
        let child = Command::new("/usr/sbin/snmpd")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("snmpd.pid"))
            .arg(format!("--persistentDir={}", persist.display()))
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("snmpd (Debian package snmpd)");
        let s = Snmpd { child, port };
        lab::wait_until("snmpd answering", Duration::from_secs(20), || {
            Command::new("snmpget")
                .args(["-v2c", "-c", COMMUNITY, "-t", "0.3", "-r", "0"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("1.3.6.1.2.1.1.3.0")
                .env("MIBS", "")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("snmpget (Debian package snmp)")
                .success()
        });
        s
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// `snmpbulkwalk -v2c` of one column: index -> (type, value text).
fn bulkwalk(addr: &str, oid: &str) -> BTreeMap<u32, (String, String)> {
    let out = Command::new("snmpbulkwalk")
        .args(["-v2c", "-c", COMMUNITY, "-On", "-Cr25", addr, oid])
        .env("MIBS", "")
        .output()
        .expect("snmpbulkwalk (Debian package snmp)");
    assert!(out.status.success(), "snmpbulkwalk {oid}: {out:?}");
    let prefix = format!(".{oid}.");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (o, v) = l.split_once(" = ")?;
            let idx: u32 = o.strip_prefix(&prefix)?.parse().ok()?;
            let (ty, val) = v.split_once(": ").unwrap_or((v, ""));
            Some((idx, (ty.to_string(), val.trim_matches('"').to_string())))
        })
        .collect()
}

fn v2c(name: &str, addr: &str) -> TargetConfig {
    TargetConfig {
        name: name.into(),
        address: addr.into(),
        version: SnmpVersion::V2c,
        community: Some(Secret::new(COMMUNITY)),
        community_file: None,
        user: None,
        auth_protocol: None,
        auth_password: None,
        auth_password_file: None,
        priv_protocol: None,
        priv_password: None,
        priv_password_file: None,
        interval: 10,
        timeout_ms: 1000,
        retries: 1,
        deadline_ms: None,
        max_repetitions: 25,
    }
}

fn v3(name: &str, addr: &str, auth: &str) -> TargetConfig {
    use collector::snmp::config::{AuthProto, PrivProto};
    TargetConfig {
        version: SnmpVersion::V3,
        community: None,
        user: Some(USER.into()),
        auth_protocol: Some(AuthProto::Sha),
        auth_password: Some(Secret::new(auth)),
        priv_protocol: Some(PrivProto::Aes),
        priv_password: Some(Secret::new(PRIV_PASS)),
        ..v2c(name, addr)
    }
}

fn counter_val(c: Option<Counter>) -> u64 {
    match c {
        Some(Counter::C64(v)) => v,
        Some(Counter::C32(v)) => v as u64,
        None => panic!("counter missing"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2c_poll_matches_snmpbulkwalk_and_host_resources() {
    let dir = tmpdir("v2c");
    let d = Snmpd::start(&dir);
    let addr = d.addr();
    const HC_IN: &str = "1.3.6.1.2.1.31.1.1.1.6";
    const HC_OUT: &str = "1.3.6.1.2.1.31.1.1.1.10";
    let before = [bulkwalk(&addr, HC_IN), bulkwalk(&addr, HC_OUT)];
    let mut t = v2c("local", &addr);
    t.max_repetitions = 3; // several GETBULKs per column even on a small host
    let p = poll_target_once(&t, true).await.expect("v2c poll");
    let after = [bulkwalk(&addr, HC_IN), bulkwalk(&addr, HC_OUT)];

    // The same interfaces, the same names, 64-bit counters between the
    // two snmpbulkwalk readings taken before and after our poll.
    let names = bulkwalk(&addr, "1.3.6.1.2.1.31.1.1.1.1");
    let descr = bulkwalk(&addr, "1.3.6.1.2.1.2.2.1.2");
    assert!(!names.is_empty());
    let ours: Vec<u32> = p.interfaces.iter().map(|r| r.if_index).collect();
    assert_eq!(ours, names.keys().copied().collect::<Vec<_>>());
    let n = p.if_names.as_ref().unwrap();
    for (i, (_, name)) in &names {
        assert_eq!(n[i].name.as_deref(), Some(name.as_str()), "ifName.{i}");
        assert_eq!(
            n[i].descr.as_deref(),
            Some(descr[i].1.as_str()),
            "ifDescr.{i}"
        );
    }
    for r in &p.interfaces {
        assert!(r.is_hc(), "snmpd has ifXTable HC counters: {r:?}");
        for (k, col) in [(0usize, 0usize), (1, 1)] {
            let lo: u64 = before[col][&r.if_index].1.parse().unwrap();
            let hi: u64 = after[col][&r.if_index].1.parse().unwrap();
            let v = counter_val(r.traffic[k]);
            assert!(
                lo <= v && v <= hi,
                "ifIndex {} counter {k}: {lo} <= {v} <= {hi}",
                r.if_index
            );
        }
        assert!(r.errors.iter().all(|e| matches!(e, Some(Counter::C32(_)))));
    }
    // The loopback counter matches the kernel's (net-snmp reads
    // /sys/class/net or /proc/net/dev): within the traffic of the walks.
    if let Some(lo) = n.iter().find(|(_, v)| v.name.as_deref() == Some("lo")) {
        let sys: u64 = std::fs::read_to_string("/sys/class/net/lo/statistics/rx_bytes")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let r = p.interfaces.iter().find(|r| r.if_index == *lo.0).unwrap();
        let v = counter_val(r.traffic[0]);
        assert!(v <= sys, "lo ifHCInOctets {v} <= sysfs {sys}");
    }

    // HOST-RESOURCES: storage rows with the agent's sizes; RAM present.
    let units = bulkwalk(&addr, "1.3.6.1.2.1.25.2.3.1.4");
    let size = bulkwalk(&addr, "1.3.6.1.2.1.25.2.3.1.5");
    assert!(!p.storage.is_empty());
    for s in &p.storage {
        let u: f64 = units[&s.index].1.parse().unwrap();
        let z: f64 = size[&s.index].1.parse().unwrap();
        if s.kind == 2 || s.descr.starts_with('/') {
            // RAM and file systems do not change size between two reads.
            assert_eq!(s.size_bytes, u * z, "{s:?}");
        }
    }
    let ram = p
        .storage
        .iter()
        .find(|s| s.kind == 2)
        .expect("hrStorageRam row");
    assert!(ram.size_bytes > 1e8 && ram.used_bytes > 0.0, "{ram:?}");
    let cpus = bulkwalk(&addr, "1.3.6.1.2.1.25.3.3.1.2");
    assert_eq!(
        p.processors.iter().map(|c| c.0).collect::<Vec<_>>(),
        cpus.keys().copied().collect::<Vec<_>>(),
        "hrProcessorLoad rows as snmpbulkwalk shows them"
    );
    // net-snmp has no ENTITY-SENSOR-MIB: no temperatures, no error.
    assert!(p.temperatures.is_empty());
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_auth_priv_works_and_a_wrong_password_fails_clearly() {
    let dir = tmpdir("v3");
    let d = Snmpd::start(&dir);
    let p = poll_target_once(&v3("v3", &d.addr(), AUTH_PASS), false)
        .await
        .expect("v3 authPriv poll");
    assert!(!p.interfaces.is_empty() && !p.storage.is_empty());
    assert!(p.uptime.is_some());

    let mut bad = v3("v3bad", &d.addr(), "wrongSECRETpass");
    bad.deadline_ms = Some(5000);
    let t0 = Instant::now();
    let e = poll_target_once(&bad, false).await.unwrap_err();
    eprintln!("wrong password: {e} after {:?}", t0.elapsed());
    assert!(
        e.to_ascii_lowercase().contains("auth")
            || e.contains("wrongDigest")
            || e.contains("digest"),
        "the error says authentication failed: {e}"
    );
    assert!(
        !e.contains("wrongSECRETpass") && !e.contains(PRIV_PASS),
        "{e}"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP proxy that forwards every datagram after `delay` (a slow agent).
async fn slow_proxy(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(upstream).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let (f, b, c) = (front.clone(), back.clone(), client.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            let (b, msg) = (b.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = b.send(&msg).await;
            });
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

async fn http(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, body.to_string())
}

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (st, body) = http(addr, path).await;
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn collector_config(targets: Vec<TargetConfig>) -> Config {
    let mut c = Config::default();
    c.sflow.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.sflow.workers = 1;
    c.series.step = 1;
    c.series.heartbeat = 10;
    c.series.flush_interval = 10;
    c.series.archives = vec![RraDef {
        cf: Cf::Average,
        steps: 1,
        rows: 600,
        xff: 0.5,
    }];
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.tokens = vec![TOKEN.into()];
    c.snmp.targets = targets;
    c.snmp.max_in_flight = 3;
    c
}

fn target<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_slow_targets_do_not_delay_a_healthy_one_and_series_are_served() {
    let dir = tmpdir("mixed");
    let d = Snmpd::start(&dir);
    // Nobody reads this socket: requests vanish, no ICMP error comes back.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let slow = slow_proxy(d.addr().parse().unwrap(), Duration::from_millis(400)).await;

    let mut healthy = v3("healthy", &d.addr(), AUTH_PASS);
    healthy.interval = 1;
    healthy.deadline_ms = Some(900);
    healthy.timeout_ms = 400;
    let mut dead_t = v2c("dead", &dead.local_addr().unwrap().to_string());
    dead_t.interval = 2;
    dead_t.deadline_ms = Some(1500);
    dead_t.timeout_ms = 700;
    let mut slow_t = v2c("slow", &slow.to_string());
    slow_t.interval = 2;
    slow_t.deadline_ms = Some(1500);
    slow_t.timeout_ms = 1000;
    let c = Collector::start(
        collector_config(vec![healthy, dead_t, slow_t]),
        system_clock(),
    )
    .await
    .unwrap();
    let api = c.api_addr;

    let t0 = Instant::now();
    let mut st = json(api, "/api/v1/snmp/targets").await;
    while t0.elapsed() < Duration::from_secs(20) {
        st = json(api, "/api/v1/snmp/targets").await;
        let ok = |n: &str| target(&st, n)["polls_ok"].as_u64().unwrap();
        let failed = |n: &str| target(&st, n)["polls_failed"].as_u64().unwrap();
        if ok("healthy") >= 4 && failed("dead") >= 2 && failed("slow") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = t0.elapsed();
    let h = target(&st, "healthy");
    eprintln!("after {elapsed:?}: {st:#}");
    assert!(h["polls_ok"].as_u64().unwrap() >= 4, "{h}");
    assert_eq!(h["polls_failed"], 0, "{h}");
    // Each healthy poll finished within its own deadline, while the dead
    // and slow targets each held a poll open until theirs.
    assert!(h["last_duration_ms"].as_u64().unwrap() < 900, "{h}");
    for n in ["dead", "slow"] {
        let t = target(&st, n);
        assert!(t["polls_failed"].as_u64().unwrap() >= 2, "{t}");
        assert_eq!(t["polls_ok"], 0, "{t}");
        let e = t["last_error"].as_str().unwrap();
        assert!(e.contains("deadline") || e.contains("timeout"), "{n}: {e}");
        assert!(t["last_duration_ms"].as_u64().unwrap() <= 1500 + 300, "{t}");
    }
    assert_eq!(h["interfaces"]["1"]["name"], "lo", "{h}");

    // Series listed and served: the loopback interface, RAM.
    let list = json(api, "/api/v1/series").await;
    let ids: Vec<&str> = list["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"snmp/healthy/if/1"), "{ids:?}");
    let ram = h["storage"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v["kind"] == 2)
        .map(|(k, _)| k.clone())
        .expect("RAM storage row");
    assert!(
        ids.contains(&format!("snmp/healthy/storage/{ram}").as_str()),
        "{ids:?}"
    );
    let now = system_clock()();
    let data = json(
        api,
        &format!(
            "/api/v1/series/data?id=snmp/healthy/if/1&start={}&end={now}",
            now - 30
        ),
    )
    .await;
    assert_eq!(data["ds"][0], "in_octets");
    // Our own SNMP traffic crosses lo: some known, positive in_octets rates.
    let known: Vec<f64> = data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[1].as_f64())
        .collect();
    assert!(
        !known.is_empty() && known.iter().any(|v| *v > 0.0),
        "{data}"
    );
    let data = json(
        api,
        &format!(
            "/api/v1/series/data?id=snmp/healthy/storage/{ram}&start={}&end={now}",
            now - 30
        ),
    )
    .await;
    assert!(
        data["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[2].as_f64().is_some_and(|v| v > 1e8)),
        "RAM size in bytes: {data}"
    );

    // No secret in anything served.
    for path in [
        "/api/v1/snmp/targets",
        "/api/v1/series",
        "/api/v1/stats",
        "/metrics",
    ] {
        let (_, body) = http(api, path).await;
        for s in [COMMUNITY, AUTH_PASS, PRIV_PASS] {
            assert!(!body.contains(s), "{path} serves a secret");
        }
    }
    c.shutdown().await.unwrap();
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary: `--check` prints the configuration with secrets redacted,
/// and a running collector logs (at trace level) no secret, even for a
/// target that fails.
#[test]
fn secrets_never_printed_or_logged_by_the_binary() {
    let dir = tmpdir("bin");
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = dead.local_addr().unwrap();
    std::fs::write(dir.join("priv"), format!("{PRIV_PASS}\n")).unwrap();
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sflow: {{listen: ['127.0.0.1:0'], workers: 1}}\n\
             api: {{listen: '127.0.0.1:0'}}\n\
             snmp:\n  targets:\n\
             \x20   - {{name: a, address: '{dead}', version: v2c, community: {COMMUNITY}, interval: 1, timeout_ms: 200, retries: 0}}\n\
             \x20   - {{name: b, address: '{dead}', version: v3, user: {USER}, auth_protocol: sha, auth_password: {AUTH_PASS}, priv_protocol: aes, priv_password_file: {}, interval: 1, timeout_ms: 200, retries: 0}}\n",
            dir.join("priv").display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_collector");
    let out = Command::new(bin)
        .arg("--check")
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("<redacted>"), "{text}");
    for s in [COMMUNITY, AUTH_PASS, PRIV_PASS] {
        assert!(!text.contains(s), "--check prints a secret: {text}");
    }
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let mut log = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("SNMP poll failed"),
        "the failing polls are logged: {log}"
    );
    for s in [COMMUNITY, AUTH_PASS, PRIV_PASS] {
        assert!(!log.contains(s), "the log shows a secret");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- snmpsim (PyPI, in the venv made by scripts/setup.sh) ----

const WRAP_RATE: u64 = 1_000_000; // bytes/s of the simulated wrapping counters
const WRAP_AFTER_S: u64 = 10; // the 32-bit counter wraps this long after snmpsim starts

/// `OID|TAG|VALUE` lines sorted by OID, as snmpsim wants them.
fn snmprec(mut rows: Vec<(Vec<u32>, String)>) -> String {
    rows.sort();
    rows.iter()
        .map(|(o, v)| {
            let o: Vec<String> = o.iter().map(|a| a.to_string()).collect();
            format!("{}|{v}\n", o.join("."))
        })
        .collect()
}

fn oid(base: &[u32], idx: &[u32]) -> Vec<u32> {
    base.iter().chain(idx).copied().collect()
}

/// A switch with 1,000 interfaces: 999 with HC counters, the last with
/// 32-bit counters only; a RAM row; two temperature sensors (scales units
/// and milli) and a voltage sensor; ifName/ifAlias/entPhysicalName.
fn big_agent() -> String {
    let mut r = vec![(vec![1, 3, 6, 1, 2, 1, 1, 3, 0], "67|1000".to_string())];
    let if_t = [1, 3, 6, 1, 2, 1, 2, 2, 1];
    let ifx = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
    for i in 1..=1000u32 {
        r.push((oid(&if_t, &[2, i]), format!("4|port {i}")));
        for col in [10, 11, 13, 14, 16, 17, 19, 20] {
            r.push((oid(&if_t, &[col, i]), format!("65|{}", i * 100 + col)));
        }
        r.push((oid(&ifx, &[1, i]), format!("4|Eth1/{i}")));
        r.push((oid(&ifx, &[18, i]), format!("4|customer {i}")));
        if i < 1000 {
            for col in [6, 7, 10, 11] {
                r.push((
                    oid(&ifx, &[col, i]),
                    format!("70|{}", (1u64 << 40) + i as u64),
                ));
            }
        }
    }
    let st = [1, 3, 6, 1, 2, 1, 25, 2, 3, 1];
    r.push((oid(&st, &[2, 1]), "6|1.3.6.1.2.1.25.2.1.2".into()));
    r.push((oid(&st, &[3, 1]), "4|Physical memory".into()));
    r.push((oid(&st, &[4, 1]), "2|1024".into()));
    r.push((oid(&st, &[5, 1]), "2|1048576".into()));
    r.push((oid(&st, &[6, 1]), "2|524288".into()));
    let se = [1, 3, 6, 1, 2, 1, 99, 1, 1, 1];
    for (idx, ty, scale, prec, val) in [
        (10, 8, 9, 1, 425),
        (11, 8, 8, 0, 38_000),
        (12, 4, 9, 2, 1200),
    ] {
        for (col, v) in [(1, ty), (2, scale), (3, prec), (4, val), (5, 1)] {
            r.push((oid(&se, &[col, idx]), format!("2|{v}")));
        }
    }
    let names = [1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1, 7];
    r.push((oid(&names, &[10]), "4|CPU".into()));
    r.push((oid(&names, &[11]), "4|Inlet".into()));
    r.push((oid(&names, &[12]), "4|12V".into()));
    snmprec(r)
}

/// Two interfaces counting WRAP_RATE bytes/s: ifIndex 1 with only 32-bit
/// counters, wrapping WRAP_AFTER_S after start; ifIndex 2 with HC.
fn wrap_agent() -> String {
    let if_t = [1, 3, 6, 1, 2, 1, 2, 2, 1];
    let ifx = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
    let initial = u32::MAX as u64 - WRAP_RATE * WRAP_AFTER_S;
    let mut r = vec![(vec![1, 3, 6, 1, 2, 1, 1, 3, 0], "67|1000".to_string())];
    for i in 1..=2u32 {
        r.push((oid(&if_t, &[2, i]), format!("4|if{i}")));
        for col in [11, 13, 14, 16, 17, 19, 20] {
            r.push((oid(&if_t, &[col, i]), "65|0".into()));
        }
        r.push((oid(&ifx, &[1, i]), format!("4|if{i}")));
    }
    r.push((
        oid(&if_t, &[10, 1]),
        format!("65:numeric|rate={WRAP_RATE},initial={initial},wrap=1"),
    ));
    r.push((oid(&if_t, &[10, 2]), "65|0".into()));
    r.push((
        oid(&ifx, &[6, 2]),
        format!("70:numeric|rate={WRAP_RATE},initial=1000"),
    ));
    for col in [7, 10, 11] {
        r.push((oid(&ifx, &[col, 2]), "70|0".into()));
    }
    snmprec(r)
}

struct Snmpsim {
    child: Child,
    port: u16,
}

impl Drop for Snmpsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Snmpsim {
    /// Serves `data/<community>.snmprec` files on 127.0.0.1.
    fn start(dir: &Path, agents: &[(&str, String)]) -> Self {
        let data = dir.join("data");
        let cache = dir.join("cache");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        for (community, text) in agents {
            std::fs::write(data.join(format!("{community}.snmprec")), text).unwrap();
        }
        // snmpsim refuses to run as root and drops to nobody.
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [
            (dir, 0o755),
            (data.as_path(), 0o755),
            (cache.as_path(), 0o777),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let venv = std::env::var("HOSTNET_VENV").unwrap_or_else(|_| "/opt/hostnet/venv".into());
        let python = format!("{venv}/bin/python");
        let have = Command::new(&python)
            .args(["-c", "import snmpsim"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(have, "snmpsim missing in {venv}: run scripts/setup.sh");
        let port = free_udp_port();
        // After the drop to nobody, Python's lazy stdlib imports fail where
        // the interpreter lives in a private directory (pyenv under /root
        // here): import what snmpsim needs before it drops privileges.
        let pre = "import dbm, dbm.dumb, encodings.latin_1, encodings.ascii, encodings.idna, \
                   sys, random, math, bisect, struct, hashlib, hmac, json, logging.handlers; \
                   from snmpsim.commands.responder import main; \
                   sys.argv[0] = 'snmpsim-command-responder'; sys.exit(main())";
        let log = std::fs::File::create(dir.join("snmpsim.log")).unwrap();
        let child = Command::new(&python)
            .args(["-c", pre])
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--cache-dir={}", cache.display()))
            .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
            .args([
                "--process-user=nobody",
                "--process-group=nogroup",
                "--logging-method=null",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Snmpsim { child, port };
        let community = agents[0].0;
        lab::wait_until("snmpsim answering", Duration::from_secs(60), || {
            Command::new("snmpget")
                .args(["-v2c", "-c", community, "-t", "0.5", "-r", "0"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("1.3.6.1.2.1.1.3.0")
                .env("MIBS", "")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        });
        s
    }
}

fn snmpget_u64(port: u16, community: &str, oid: &str) -> u64 {
    let out = Command::new("snmpget")
        .args(["-v2c", "-c", community, "-On", "-Oqv"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(oid)
        .env("MIBS", "")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpsim_1000_interfaces_sensors_and_a_counter_wrap() {
    // Two instances: the small one starts fast, so its counter's wrap
    // (timed from snmpsim's start) falls inside the polled window.
    let dir = tmpdir("simwrap");
    let sim = Snmpsim::start(&dir, &[("wrap", wrap_agent())]);
    let addr = format!("127.0.0.1:{}", sim.port);

    // The wrapping agent, polled every second by the collector across the
    // 32-bit wrap: no unknown interval, no spike.
    let start = snmpget_u64(sim.port, "wrap", "1.3.6.1.2.1.2.2.1.10.1");
    assert!(
        u32::MAX as u64 - start > WRAP_RATE * 4,
        "snmpsim took too long to start: the counter ({start}) wraps in less than 4 s"
    );
    let mut wrap = v2c("wrap", &addr);
    wrap.community = Some(Secret::new("wrap"));
    wrap.interval = 1;
    wrap.timeout_ms = 500;
    let c = Collector::start(collector_config(vec![wrap]), system_clock())
        .await
        .unwrap();
    let t_start = system_clock()();
    lab::wait_until("the counter wrapped", Duration::from_secs(30), || {
        snmpget_u64(sim.port, "wrap", "1.3.6.1.2.1.2.2.1.10.1") < start
    });
    // At least 3 s after the wrap and 9 s after the collector's start.
    let wait = 3.max(9u64.saturating_sub(system_clock()() - t_start));
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let t_end = system_clock()();
    let st = json(c.api_addr, "/api/v1/snmp/targets").await;
    let t = target(&st, "wrap");
    assert_eq!(t["polls_failed"], 0, "{t}");
    for id in ["snmp/wrap/if/1", "snmp/wrap/if/2"] {
        let data = json(
            c.api_addr,
            &format!(
                "/api/v1/series/data?id={id}&start={}&end={}",
                t_start + 2,
                t_end - 1
            ),
        )
        .await;
        let rows: Vec<Option<f64>> = data["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[1].as_f64())
            .collect();
        assert!(rows.len() >= 5, "{id}: {data}");
        let known: Vec<f64> = rows.iter().flatten().copied().collect();
        assert_eq!(
            known.len(),
            rows.len(),
            "{id}: a wrap must not be unknown: {rows:?}"
        );
        for v in &known {
            // Readings land on whole seconds: one row may hold up to ~2 s.
            assert!(
                *v > 0.3 * WRAP_RATE as f64 && *v < 3.0 * WRAP_RATE as f64,
                "{id}: {rows:?}"
            );
        }
        let mean = known.iter().sum::<f64>() / known.len() as f64;
        assert!(
            (mean / WRAP_RATE as f64 - 1.0).abs() < 0.2,
            "{id}: mean {mean} B/s, {rows:?}"
        );
    }
    c.shutdown().await.unwrap();
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);

    // 1,000 interfaces in one poll, the odd one on 32-bit counters.
    let dir = tmpdir("simbig");
    let sim = Snmpsim::start(&dir, &[("big", big_agent())]);
    let addr = format!("127.0.0.1:{}", sim.port);
    let mut big = v2c("big", &addr);
    big.community = Some(Secret::new("big"));
    big.deadline_ms = Some(60_000);
    big.timeout_ms = 5000;
    let t0 = Instant::now();
    let p = poll_target_once(&big, true)
        .await
        .expect("poll of 1,000 interfaces");
    let took = t0.elapsed();
    let t1 = Instant::now();
    for col in ["1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10"] {
        assert_eq!(bulkwalk_c(&addr, "big", col), 999);
    }
    eprintln!(
        "snmpsim: one poll of 1,000 interfaces (names, 8 counter columns, the \
         32-bit fallback, storage, sensors) {took:?}; snmpbulkwalk of 2 HC columns {:?}",
        t1.elapsed()
    );
    assert_eq!(p.interfaces.len(), 1000);
    assert_eq!(p.interfaces.iter().filter(|r| r.is_hc()).count(), 999);
    let last = &p.interfaces[999];
    assert_eq!(last.if_index, 1000);
    assert_eq!(last.traffic[0], Some(Counter::C32(100_010)));
    assert_eq!(
        p.interfaces[0].traffic[1],
        Some(Counter::C64((1 << 40) + 1))
    );
    assert_eq!(p.interfaces[4].errors[0], Some(Counter::C32(514)));
    let names = p.if_names.as_ref().unwrap();
    assert_eq!(names[&1000].name.as_deref(), Some("Eth1/1000"));
    assert_eq!(names[&7].alias.as_deref(), Some("customer 7"));
    assert_eq!(p.temperatures, vec![(10, Some(42.5)), (11, Some(38.0))]);
    let sn = p.sensor_names.as_ref().unwrap();
    assert_eq!(sn[&10], "CPU");
    assert_eq!(sn[&11], "Inlet");
    assert_eq!(p.storage.len(), 1);
    assert_eq!(p.storage[0].kind, 2);
    assert_eq!(p.storage[0].size_bytes, 1024.0 * 1_048_576.0);

    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bulkwalk_c(addr: &str, community: &str, oid: &str) -> usize {
    let out = Command::new("snmpbulkwalk")
        .args(["-v2c", "-c", community, "-On", "-Cr25", addr, oid])
        .env("MIBS", "")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!(".{oid}.")))
        .count()
}

#[tokio::test]
async fn start_fails_on_an_unreadable_secret_file_naming_the_field() {
    let mut t = v2c("a", "127.0.0.1:161");
    t.community = None;
    t.community_file = Some("/nonexistent/community".into());
    let e = Collector::start(collector_config(vec![t]), system_clock())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("snmp.targets[0].community_file: reading /nonexistent/community"),
        "{e}"
    );
}

/// 100 targets (all the same snmpd under different names) share one UDP
/// socket, at most 8 polls at a time, and all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_targets_share_one_socket_with_bounded_concurrency() {
    let dir = tmpdir("many");
    let d = Snmpd::start(&dir);
    let targets: Vec<TargetConfig> = (0..100)
        .map(|i| {
            let mut t = v2c(&format!("t{i}"), &d.addr());
            t.interval = 5;
            t.deadline_ms = Some(4000);
            t.timeout_ms = 1000;
            t
        })
        .collect();
    let mut cfg = collector_config(targets);
    cfg.snmp.max_in_flight = 8;
    let c = Collector::start(cfg, system_clock()).await.unwrap();
    let t0 = Instant::now();
    let st = loop {
        let st = json(c.api_addr, "/api/v1/snmp/targets").await;
        let all = st["targets"].as_array().unwrap();
        if all.iter().all(|t| t["polls_ok"].as_u64().unwrap() >= 1)
            || t0.elapsed() > Duration::from_secs(30)
        {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = t0.elapsed();
    let sockets = st["sockets"].as_u64().unwrap();
    let all = st["targets"].as_array().unwrap();
    let failed: Vec<&Value> = all.iter().filter(|t| t["polls_ok"] == 0).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(all.iter().all(|t| t["polls_failed"] == 0), "{st}");
    eprintln!("100 targets polled once in {took:?} over {sockets} SNMP socket(s)");
    assert_eq!(sockets, 1, "one IPv4 socket for 100 IPv4 targets");
    let peak = st["peak_in_flight"].as_u64().unwrap();
    eprintln!("peak polls in flight: {peak}");
    assert!(
        (2..=8).contains(&peak),
        "concurrent but bounded by max_in_flight 8: {peak}"
    );
    c.shutdown().await.unwrap();
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
