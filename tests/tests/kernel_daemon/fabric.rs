//! The fabric service end to end with the real programs (part of the
//! `kernel_daemon` binary: one VM boot). A server whose cabling nobody
//! wrote down, a Linux switch, and the rest of the fabric:
//!
//! ```text
//!  srv (hostd daemon, agent srv1; lldpd)      sw (hostd daemon, agent sw1; lldpd as "sw1")      core
//!    eth0 ─────────────────────────────────── swp1                                      up0 ─── core0 (.10 10.10.0.1, .30 10.30.0.1, .40 10.40.0.1)
//!    eth1 ─────────────────────────────────── swp2                                      oob0 ── oob1 10.99.0.1: controller serve (0.0.0.0:7443)
//! ```
//!
//! As provisioned (applied through each daemon): the server has its
//! management address on eth0, untagged; the switch bridges swp1/swp2 as
//! access ports of VLAN 10 and trunks VLAN 10 to the core. Both agents
//! enrol (the switch over its out-of-band port). The server's agent
//! reports its NICs with the LLDP neighbours lldpd hears from the switch;
//! the operator sets the fabric (switch facts, the Linux driver bound to
//! the switch's agent) and the server's intent (management VLAN 10
//! untagged, storage VLAN 30, active-active on one switch). Checked: the
//! controller compiles both ends, pushes them commit-confirmed, both agents
//! confirm; the server gets an 802.3ad bond of eth0+eth1 and bond0.30, the
//! switch a LAG of swp1+swp2 in its VLAN-aware bridge; LACP negotiates
//! (one aggregator, a partner); VLANs 10 and 30 carry traffic, VLAN 40
//! (not in the intent) does not, and the switch carries exactly 10 and 30
//! on the LAG and the uplink. Then a cable moved to a port the switch
//! facts do not list (the switch port renamed swp2 -> swp9: lldpd then
//! announces swp9 to eth1): the server's next inventory does not compile,
//! `fleet show` names eth1 and swp9 in `fabric.errors`, and nothing new is
//! pushed.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hostd::cli::exit;
use lab::{
    kernel::{self, Feature},
    wait::scaled,
    wait_until, NetNs,
};
use serde_json::Value;

use super::{fleet::controller_bin, hostd_bin, Bus, NAME, PATH};

/// One host (server or switch) running `hostd daemon` as a fleet agent.
struct Host {
    ns: NetNs,
    agent: &'static str,
    dir: PathBuf,
    bus: Bus,
    daemon: Option<Child>,
}

impl Host {
    fn new(ns: NetNs, agent: &'static str, parent: &std::path::Path) -> Self {
        let dir = parent.join(agent);
        std::fs::create_dir_all(&dir).expect("dir");
        let bus = Bus::new(&dir);
        Self {
            ns,
            agent,
            dir,
            bus,
            daemon: None,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.ns.command(hostd_bin().to_str().expect("utf8"));
        c.arg("--state-file")
            .arg(self.dir.join("owned.json"))
            .arg("--resolv-conf")
            .arg(self.dir.join("resolv.conf"))
            .args(["--bus-address", &self.bus.address])
            .args(args)
            .env("HOSTD_LOG", "info,zbus=warn")
            .stdin(Stdio::null());
        c
    }

    #[track_caller]
    fn hostd(&self, args: &[&str], code: i32) -> Output {
        let o = self.cmd(args).output().expect("hostd");
        assert_eq!(
            o.status.code(),
            Some(code),
            "{}: hostd {args:?}: {}\n--- daemon log tail ---\n{}",
            self.agent,
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        o
    }

    fn start(&mut self, ctl: &Ctl, controller: &str, extra: &[&str]) {
        let token = self.dir.join("token");
        std::fs::write(&token, ctl.run(&["token", self.agent]).trim()).expect("token");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("log");
        let sd = self.dir.join("state").display().to_string();
        let fsd = self.dir.join("fleet").display().to_string();
        let token = token.display().to_string();
        let bundle = ctl.bundle.display().to_string();
        let mut args = vec![
            "daemon",
            "--state-dir",
            &sd,
            "--telemetry-no-pin",
            "--controller",
            controller,
            "--agent-id",
            self.agent,
            "--fleet-state-dir",
            &fsd,
            "--trust-bundle",
            &bundle,
            "--bootstrap-token-file",
            &token,
            "--status-every",
            "5s",
        ];
        args.extend_from_slice(extra);
        let child = self
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("daemon");
        self.daemon = Some(child);
        wait_until(
            "the daemon's first reconcile",
            scaled(Duration::from_secs(30)),
            || {
                let o = Command::new("busctl")
                    .arg(format!("--address={}", self.bus.address))
                    .args(["get-property", NAME, PATH, NAME, "Health"])
                    .output()
                    .expect("busctl");
                o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("starting")
            },
        );
    }

    fn apply(&self, name: &str, doc: &str) {
        let p = self.dir.join(name);
        std::fs::write(&p, doc).expect("write");
        self.hostd(&["apply", p.to_str().expect("utf8")], exit::CHANGED);
    }

    fn ip(&self, args: &[&str]) -> String {
        self.ns.try_ip(args).unwrap_or_default()
    }

    fn pings(&self, addr: &str) -> bool {
        self.ns
            .try_run(&["ping", "-c", "1", "-W", "1", addr])
            .is_ok()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} daemon log ---\n{}", self.agent, self.log_tail());
        }
    }
}

/// The controller (one `controller serve`) in the core namespace.
struct Ctl {
    ns: NetNs,
    dir: PathBuf,
    bundle: PathBuf,
    child: Option<Child>,
}

impl Ctl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.ns.command(controller_bin().to_str().expect("utf8"));
        c.arg("--state-dir")
            .arg(self.dir.join("store"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        let o = self.cmd(args).output().expect("controller");
        assert!(
            o.status.success(),
            "controller {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `fleet show AGENT`, or `None` while the controller does not know
    /// the agent yet (not enrolled) or answers otherwise than JSON.
    fn try_show(&self, agent: &str) -> Option<Value> {
        let o = self.cmd(&["fleet", "show", agent]).output().ok()?;
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    fn show(&self, agent: &str) -> Value {
        serde_json::from_str(&self.run(&["fleet", "show", agent])).expect("fleet show JSON")
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- controller log ---\n{}", self.log_tail());
        }
    }
}

fn veth(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str) {
    a.ip(&[
        "link",
        "add",
        a_name,
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ]);
}

/// The switch as provisioned: its server ports access ports of VLAN 10,
/// VLAN 10 trunked to the core.
const SWITCH_BASE: &str = "interfaces:
  - { name: swp1, type: ethernet, state: up }
  - { name: swp2, type: ethernet, state: up }
  - { name: up0, type: ethernet, state: up }
  - name: br0
    type: linux-bridge
    state: up
    bridge:
      options: { stp: { enabled: false }, vlan-filtering: true }
      port:
        - { name: swp1, vlan: { mode: access, tag: 10 } }
        - { name: swp2, vlan: { mode: access, tag: 10 } }
        - { name: up0, vlan: { mode: trunk, trunk-tags: [{ id: 10 }] } }
";

/// The server as provisioned: its management address on eth0.
const SERVER_BASE: &str = "interfaces:
  - name: eth0
    type: ethernet
    state: up
    ipv4:
      address: [{ ip: 10.10.0.2, prefix-length: 24 }]
  - { name: eth1, type: ethernet, state: up }
";

const FABRIC: &str = "confirm-within: 120
switches:
  - hostname: sw1
    ports: [{ name: swp1 }, { name: swp2 }, { name: up0 }]
    uplinks: [up0]
drivers:
  - { hostnames: [sw1], driver: linux, agent: sw1 }
";

const INTENT: &str = "server: srv1
networks:
  - { name: mgmt, type: lan, vlan: 10, untagged: true, addresses: [10.10.0.2/24] }
  - { name: san, type: san, vlan: 30, addresses: [10.30.0.2/24] }
redundancy: { mode: active-active, topology: single-switch, lacp-rate: fast }
nics: [eth0, eth1]
";

/// The VLAN ids the switch's bridge carries on `port` (`bridge -j vlan`).
fn bridge_vlans(sw: &Host, port: &str) -> Vec<u64> {
    let out = sw
        .ns
        .try_run(&["bridge", "-j", "vlan", "show", "dev", port])
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut ids: Vec<u64> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["ifname"] == port)
        .flat_map(|e| e["vlans"].as_array().cloned().unwrap_or_default())
        .filter_map(|x| x["vlan"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

/// The LLDP neighbour (system name, port) of `nic` in an inventory.
fn neighbour(inventory: &Value, nic: &str) -> Option<(String, String)> {
    inventory["nics"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == nic)
        .and_then(|n| {
            Some((
                n["lldp"]["system-name"].as_str()?.to_owned(),
                n["lldp"]["port"].as_str()?.to_owned(),
            ))
        })
}

#[test]
fn fabric_in_the_lab() {
    kernel::require(&[
        Feature::Veth,
        Feature::Bridge,
        Feature::BridgeVlanFiltering,
        Feature::Bonding,
        Feature::Vlan8021q,
    ]);
    let _one_at_a_time = super::serial();
    let t_all = Instant::now();
    let dir = std::env::temp_dir().join(format!("hostd-kdfab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    // The cables.
    let srv_ns = NetNs::new("srv").expect("netns");
    let sw_ns = NetNs::new("sw").expect("netns");
    let core = NetNs::new("core").expect("netns");
    veth(&srv_ns, "eth0", &sw_ns, "swp1");
    veth(&srv_ns, "eth1", &sw_ns, "swp2");
    veth(&sw_ns, "up0", &core, "core0");
    veth(&sw_ns, "oob0", &core, "oob1");
    for ns in [&srv_ns, &sw_ns, &core] {
        ns.ip(&["link", "set", "lo", "up"]);
    }
    sw_ns.ip(&["addr", "add", "10.99.0.2/24", "dev", "oob0"]);
    sw_ns.ip(&["link", "set", "oob0", "up"]);
    core.ip(&["addr", "add", "10.99.0.1/24", "dev", "oob1"]);
    core.ip(&["link", "set", "oob1", "up"]);
    core.ip(&["link", "set", "core0", "up"]);
    for vid in ["10", "30", "40"] {
        let name = format!("core0.{vid}");
        core.ip(&[
            "link", "add", "link", "core0", "name", &name, "type", "vlan", "id", vid,
        ]);
        core.ip(&["addr", "add", &format!("10.{vid}.0.1/24"), "dev", &name]);
        core.ip(&["link", "set", &name, "up"]);
    }

    // The controller.
    let cdir = dir.join("controller");
    std::fs::create_dir_all(&cdir).expect("dir");
    let mut ctl = Ctl {
        ns: core,
        dir: cdir.clone(),
        bundle: cdir.join("bundle.pem"),
        child: None,
    };
    let bundle = ctl.run(&["init"]);
    std::fs::write(&ctl.bundle, bundle).expect("bundle");
    let log = std::fs::File::create(cdir.join("controller.log")).expect("log");
    ctl.child = Some(
        ctl.cmd(&[
            "serve",
            "--listen",
            "0.0.0.0:7443",
            "--name",
            "c1",
            "--cert-validity-s",
            "3600",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("controller serve"),
    );
    let sock = cdir.join("store").join("admin.sock");
    wait_until(
        "the controller's admin socket",
        scaled(Duration::from_secs(20)),
        || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
    );

    // The switch: lldpd announcing itself as sw1, its ports by name; its
    // hostd agent over the out-of-band port; the switch as provisioned.
    let lldp_sock = format!("/run/{}-lldpd.socket", sw_ns.name());
    sw_ns
        .spawn(&[
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            "hostname \"$0\" && exec \"$@\"",
            "sw1",
            "lldpd",
            "-d",
            "-u",
            &lldp_sock,
            "-I",
            "swp*",
            "-M",
            "4",
        ])
        .expect("lldpd on the switch");
    wait_until(
        "the switch's lldpd socket",
        scaled(Duration::from_secs(10)),
        || std::path::Path::new(&lldp_sock).exists(),
    );
    for args in [
        &["configure", "system", "hostname", "sw1"][..],
        &["configure", "lldp", "portidsubtype", "ifname"],
        &["configure", "lldp", "tx-interval", "1"],
    ] {
        let mut argv = vec!["lldpcli", "-u", &lldp_sock];
        argv.extend_from_slice(args);
        sw_ns.run(&argv);
    }
    let mut sw = Host::new(sw_ns, "sw1", &dir);
    sw.start(&ctl, "10.99.0.1:7443", &["--no-lldp"]);
    sw.apply("base.yaml", SWITCH_BASE);

    // The server: lldpd (its agent: hostd configures what it announces),
    // hostd's agent over management.
    let srv_lldp_sock = format!("/run/{}-lldpd.socket", srv_ns.name());
    srv_ns
        .spawn(&["lldpd", "-d", "-u", &srv_lldp_sock, "-I", "eth0,eth1"])
        .expect("lldpd on the server");
    wait_until(
        "the server's lldpd socket",
        scaled(Duration::from_secs(10)),
        || std::path::Path::new(&srv_lldp_sock).exists(),
    );
    let mut srv = Host::new(srv_ns, "srv1", &dir);
    srv.start(
        &ctl,
        "10.10.0.1:7443",
        &[
            "--lldpd-socket",
            &srv_lldp_sock,
            "--lldp-system-name",
            "srv1",
        ],
    );
    srv.apply("base.yaml", SERVER_BASE);
    wait_until(
        "the server's management path",
        scaled(Duration::from_secs(20)),
        || srv.pings("10.10.0.1"),
    );

    // Both enrolled; the server's inventory names its switch ports.
    let t = Instant::now();
    wait_until(
        "both agents connected, the server's LLDP in its inventory",
        scaled(Duration::from_secs(60)),
        || {
            // An agent not enrolled yet is not an error while waiting.
            let (Some(s), Some(w)) = (ctl.try_show("srv1"), ctl.try_show("sw1")) else {
                return false;
            };
            s["summary"]["connected"] == true
                && w["summary"]["connected"] == true
                && neighbour(&s["inventory"], "eth0").is_some()
                && neighbour(&s["inventory"], "eth1").is_some()
        },
    );
    let inv = ctl.show("srv1")["inventory"].clone();
    println!(
        "agents enrolled, LLDP cabling reported in {:?}: eth0 {:?}, eth1 {:?}",
        t.elapsed(),
        neighbour(&inv, "eth0"),
        neighbour(&inv, "eth1")
    );
    assert_eq!(
        neighbour(&inv, "eth0"),
        Some(("sw1".into(), "swp1".into())),
        "{inv}"
    );
    assert_eq!(
        neighbour(&inv, "eth1"),
        Some(("sw1".into(), "swp2".into())),
        "{inv}"
    );

    // The fabric and the intent: both ends compiled, pushed, confirmed.
    let t = Instant::now();
    ctl.run(&["fabric", &ctl.file("fabric.yaml", FABRIC)]);
    let r = ctl.run(&["intent", "srv1", &ctl.file("intent.yaml", INTENT)]);
    println!("controller intent: {r}");
    wait_until(
        "both ends applied and confirmed",
        scaled(Duration::from_secs(120)),
        || {
            let s = ctl.show("srv1")["summary"].clone();
            let w = ctl.show("sw1")["summary"].clone();
            s["fabric_ok"] == true
                && s["state"] == "confirmed"
                && s["confirmed_generation"].as_u64() >= Some(1)
                && w["state"] == "confirmed"
                && w["confirmed_generation"].as_u64() >= Some(1)
        },
    );
    println!("both ends configured and confirmed in {:?}", t.elapsed());
    let show = ctl.show("srv1");
    let lag = show["fabric"]["switch-side"]["switches"][0]["ports"][0]["lag"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no LAG in the switch side: {}", show["fabric"]))
        .to_owned();
    let links = srv.ip(&["-o", "link", "show"]);
    assert_eq!(
        srv.ip(&["-o", "link", "show", "master", "bond0"])
            .lines()
            .count(),
        2,
        "{links}"
    );
    assert!(links.contains("bond0.30@bond0"), "{links}");
    assert_eq!(
        sw.ip(&["-o", "link", "show", "master", &lag])
            .lines()
            .count(),
        2,
        "{}",
        sw.ip(&["-o", "link", "show"])
    );

    // LACP: both server ports in one aggregator, with a partner.
    let t = Instant::now();
    let lacp = |h: &Host, bond: &str| -> bool {
        let p =
            h.ns.try_run(&["cat", &format!("/proc/net/bonding/{bond}")])
                .unwrap_or_default();
        let aggs: Vec<&str> = p
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Aggregator ID:"))
            .collect();
        // The bond's active aggregator, then one line per port.
        aggs.len() == 3
            && aggs.iter().all(|a| *a == aggs[0])
            && p.contains("Partner Mac Address:")
            && !p
                .lines()
                .filter(|l| l.trim_start().starts_with("Partner Mac Address:"))
                .any(|l| l.contains("00:00:00:00:00:00"))
    };
    if lab::wait::try_wait_until(scaled(Duration::from_secs(10)), || {
        lacp(&srv, "bond0") && lacp(&sw, &lag)
    })
    .is_err()
    {
        panic!(
            "LACP not negotiated:\n{}\n{}",
            srv.ns
                .try_run(&["cat", "/proc/net/bonding/bond0"])
                .unwrap_or_default(),
            sw.ns
                .try_run(&["cat", &format!("/proc/net/bonding/{lag}")])
                .unwrap_or_default()
        );
    }
    println!(
        "LACP negotiated ({lag}) {:?} after confirmation",
        t.elapsed()
    );

    // VLAN traffic where intended, and only there.
    wait_until("VLAN 10 and 30", scaled(Duration::from_secs(30)), || {
        srv.pings("10.10.0.1") && srv.pings("10.30.0.1")
    });
    assert_eq!(bridge_vlans(&sw, &lag), vec![10, 30]);
    assert_eq!(bridge_vlans(&sw, "up0"), vec![10, 30]);
    // A VLAN the intent does not have, made on the server by hand: the
    // switch does not carry it.
    srv.ip(&[
        "link", "add", "link", "bond0", "name", "bond0.40", "type", "vlan", "id", "40",
    ]);
    srv.ip(&["addr", "add", "10.40.0.2/24", "dev", "bond0.40"]);
    srv.ip(&["link", "set", "bond0.40", "up"]);
    for _ in 0..3 {
        assert!(!srv.pings("10.40.0.1"), "VLAN 40 leaked through the switch");
    }
    srv.ip(&["link", "del", "bond0.40"]);

    // A cable moved to a port the facts do not list: reported, naming the
    // NIC, and nothing pushed.
    let before = ctl.show("srv1")["summary"]["desired_generation"].clone();
    let t = Instant::now();
    sw.ip(&["link", "set", "swp2", "down"]);
    sw.ip(&["link", "set", "swp2", "name", "swp9"]);
    sw.ip(&["link", "set", "swp9", "up"]);
    wait_until(
        "the miscabling reported",
        scaled(Duration::from_secs(60)),
        || {
            let s = ctl.show("srv1");
            s["summary"]["fabric_ok"] == false
                && s["fabric"]["errors"].to_string().contains("eth1")
                && s["fabric"]["errors"].to_string().contains("swp9")
        },
    );
    let s = ctl.show("srv1");
    println!(
        "cable moved to swp9: reported in {:?}: {}",
        t.elapsed(),
        s["fabric"]["errors"]
    );
    assert_eq!(s["summary"]["desired_generation"], before, "pushed anyway");
    println!("fabric_in_the_lab total {:?}", t_all.elapsed());
}
