//! `hostd daemon` in the lab, on a kernel with bonds and VLANs (the VM's):
//! the real binary in a server namespace, serving a private `dbus-daemon`,
//! driven by the real CLI. A bond (active-backup over eth0) carries the
//! management VLAN 10 to a switch namespace.
//!
//! Checked: drift of each kind repaired (bond down, VLAN deleted, MTU
//! changed, address removed, route removed); the report policy only
//! reports; a fight with another manager is detected and repairs stop;
//! foreign links, addresses and routes are never touched; an apply that
//! cuts the management VLAN reverts by itself (deadline, and probes) and the
//! management path answers again; `kill -9` of the daemon in the middle of a
//! 400-VLAN commit-confirmed apply, and while one waits, converges to the
//! confirmed state after restart.
//!
//! `fleet_in_the_lab` (kernel_daemon/fleet.rs): the daemon as the fleet
//! agent of two real `controller serve` processes; `fabric_in_the_lab`
//! (kernel_daemon/fabric.rs): the fabric service configuring a server and
//! its Linux switch from LLDP and an intent.

use std::{
    path::{Path, PathBuf},
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

#[path = "kernel_daemon/fabric.rs"]
mod fabric;
#[path = "kernel_daemon/fleet.rs"]
mod fleet;

/// The tests of this binary one at a time: each runs a daemon whose
/// timings (fights, deadlines) a second one beside it on the VM's two
/// emulated CPUs would disturb.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const NAME: &str = "org.hostnet.Hostd1";
const PATH: &str = "/org/hostnet/Hostd1";

/// The `hostd` binary: `HOSTD_BIN`, else `hostd` in this test binary's
/// target directory (`cargo xtask test` builds every target first).
fn hostd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOSTD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("hostd"))
        .expect("target directory");
    assert!(
        p.exists(),
        "{} missing: cargo build -p hostd --bin hostd",
        p.display()
    );
    p
}

/// A private, permissive dbus-daemon (authorisation is tested natively in
/// hostd/hostd/tests/daemon_dbus.rs).
struct Bus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Bus {
    fn new(dir: &Path) -> Self {
        let sock = dir.join("bus");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/> <allow own="*"/>
    <allow send_type="method_call"/> <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/> <allow receive_type="method_return"/>
    <allow receive_type="error"/> <allow receive_type="signal"/>
  </policy>
</busconfig>
"#,
                sock.display()
            ),
        )
        .expect("bus conf");
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        wait_until("the bus socket", scaled(Duration::from_secs(10)), || {
            sock.exists()
        });
        Self {
            child,
            address: format!("unix:path={}", sock.display()),
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Server {
    srv: NetNs,
    sw: NetNs,
    dir: PathBuf,
    bus: String,
    daemon: Option<Child>,
    daemon_args: Vec<String>,
}

impl Server {
    fn hostd_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.srv.command(hostd_bin().to_str().expect("utf8"));
        c.arg("--state-file")
            .arg(self.dir.join("owned.json"))
            .arg("--resolv-conf")
            .arg(self.dir.join("resolv.conf"))
            .args(["--bus-address", &self.bus])
            .args(args)
            .env("HOSTD_LOG", "info,zbus=warn")
            .stdin(Stdio::null());
        c
    }

    fn hostd(&self, args: &[&str]) -> Output {
        self.hostd_cmd(args).output().expect("hostd")
    }

    #[track_caller]
    fn expect(&self, args: &[&str], code: i32) -> Output {
        let o = self.hostd(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "hostd {args:?}: {}\n--- daemon log tail ---\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        o
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("log");
        let sd = self.dir.join("state").display().to_string();
        let mut args = vec!["daemon", "--state-dir", &sd, "--telemetry-no-pin"];
        let extra: Vec<&str> = self.daemon_args.iter().map(String::as_str).collect();
        args.extend(extra);
        let child = self
            .hostd_cmd(&args)
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
                    .arg(format!("--address={}", self.bus))
                    .args(["get-property", NAME, PATH, NAME, "Health"])
                    .output()
                    .expect("busctl");
                o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("starting")
            },
        );
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status(&self) -> Value {
        let o = self.expect(&["-o", "json", "state"], exit::NO_CHANGE);
        serde_json::from_slice(&o.stdout).expect("status JSON")
    }

    fn stat(&self, key: &str) -> u64 {
        self.status()["daemon"]["stats"][key].as_u64().unwrap_or(0)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    fn ip(&self, args: &[&str]) -> String {
        self.srv.try_ip(args).unwrap_or_default()
    }

    fn mgmt_answers(&self) -> bool {
        self.srv
            .try_run(&["ping", "-c", "1", "-W", "1", "10.10.0.1"])
            .is_ok()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_tail());
        }
    }
}

/// A condition on the server.
type Check<'a> = &'a dyn Fn(&Server) -> bool;

const BASE: &str = "interfaces:
  - { name: eth0, type: ethernet, state: up }
  - name: bond0
    type: bond
    state: up
    mtu: 1500
    link-aggregation: { mode: active-backup, port: [eth0], options: { miimon: 100 } }
  - name: bond0.10
    type: vlan
    state: up
    vlan: { base-iface: bond0, id: 10 }
    ipv4:
      address: [{ ip: 10.10.0.2, prefix-length: 24 }]
routes:
  config:
    - { destination: 10.20.0.0/24, next-hop-address: 10.10.0.1, next-hop-interface: bond0.10 }
";

fn setup() -> (Server, Bus) {
    kernel::require(&[Feature::Veth, Feature::Bonding, Feature::Vlan8021q]);
    let dir = std::env::temp_dir().join(format!("hostd-kd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let bus = Bus::new(&dir);
    let srv = NetNs::new("srv").expect("netns");
    let sw = NetNs::new("sw").expect("netns");
    srv.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "sw0",
        "netns",
        sw.name(),
    ]);
    srv.ip(&[
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "sw1",
        "netns",
        sw.name(),
    ]);
    sw.ip(&["link", "set", "sw0", "up"]);
    sw.ip(&["link", "set", "sw1", "up"]);
    sw.ip(&[
        "link", "add", "link", "sw0", "name", "sw0.10", "type", "vlan", "id", "10",
    ]);
    sw.ip(&["link", "set", "sw0.10", "up"]);
    sw.ip(&["addr", "add", "10.10.0.1/24", "dev", "sw0.10"]);
    sw.ip(&["addr", "add", "10.20.0.1/24", "dev", "lo"]);
    let s = Server {
        srv,
        sw,
        dir,
        bus: bus.address.clone(),
        daemon: None,
        daemon_args: [
            "--backoff-initial",
            "300ms",
            "--backoff-max",
            "10s",
            "--fight-threshold",
            "4",
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    (s, bus)
}

#[test]
fn daemon_in_the_lab() {
    let _one_at_a_time = serial();
    let (mut s, _bus) = setup();
    let _ = &s.sw;
    s.start();
    let base = s.file("base.yaml", BASE);
    let t = Instant::now();
    s.expect(&["apply", &base], exit::CHANGED);
    println!("base applied through the daemon in {:?}", t.elapsed());
    wait_until("management path", scaled(Duration::from_secs(20)), || {
        s.mgmt_answers()
    });

    // Foreign objects, made by someone else.
    s.ip(&["link", "set", "eth1", "up"]);
    s.ip(&[
        "link", "add", "link", "eth1", "name", "eth1.77", "type", "vlan", "id", "77",
    ]);
    s.ip(&["addr", "add", "10.77.0.1/24", "dev", "eth1.77"]);
    s.ip(&["link", "set", "eth1.77", "up"]);
    s.ip(&[
        "route",
        "add",
        "10.78.0.0/24",
        "via",
        "10.77.0.254",
        "dev",
        "eth1.77",
    ]);
    let foreign = |s: &Server| {
        s.ip(&["-4", "addr", "show", "dev", "eth1.77"])
            .contains("10.77.0.1/24")
            && s.ip(&["route", "show", "10.78.0.0/24"])
                .contains("10.77.0.254")
    };
    assert!(foreign(&s));

    // 1. Drift of each kind, repaired.
    let route_ok = |s: &Server| {
        s.ip(&["route", "show", "10.20.0.0/24"])
            .contains("10.10.0.1")
    };
    let cases: [(&str, &[&str], Check<'_>); 5] = [
        ("bond down", &["link", "set", "bond0", "down"], &|s| {
            s.ip(&["link", "show", "bond0"]).contains(",UP") && route_ok(s)
        }),
        ("VLAN deleted", &["link", "del", "bond0.10"], &|s| {
            s.ip(&["-4", "addr", "show", "dev", "bond0.10"])
                .contains("10.10.0.2/24")
                && route_ok(s)
        }),
        (
            "MTU changed",
            &["link", "set", "bond0", "mtu", "1400"],
            &|s| s.ip(&["link", "show", "bond0"]).contains("mtu 1500"),
        ),
        (
            "address removed",
            &["addr", "del", "10.10.0.2/24", "dev", "bond0.10"],
            &|s| {
                s.ip(&["-4", "addr", "show", "dev", "bond0.10"])
                    .contains("10.10.0.2/24")
                    && route_ok(s)
            },
        ),
        (
            "route removed",
            &["route", "del", "10.20.0.0/24"],
            &route_ok,
        ),
    ];
    for (what, cmd, fixed) in cases {
        assert!(fixed(&s), "{what}: not in place before");
        let repairs = s.stat("repairs");
        let t = Instant::now();
        s.ip(cmd);
        wait_until(what, scaled(Duration::from_secs(30)), || fixed(&s));
        let took = t.elapsed();
        wait_until(
            "the repair counted",
            scaled(Duration::from_secs(10)),
            || s.stat("repairs") > repairs,
        );
        println!("{what}: repaired in {took:?} (emulated)");
    }
    wait_until(
        "management path after the repairs",
        scaled(Duration::from_secs(20)),
        || s.mgmt_answers(),
    );
    assert!(foreign(&s), "foreign objects touched by the repairs");

    // 2. A fight: another manager keeps the bond's MTU at 1400.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fighter = {
        let (stop, ns) = (stop.clone(), s.srv.name().to_owned());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let o = Command::new("ip")
                    .args(["-n", &ns, "link", "show", "bond0"])
                    .output();
                if o.is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).contains("mtu 1400")) {
                    let _ = Command::new("ip")
                        .args(["-n", &ns, "link", "set", "bond0", "mtu", "1400"])
                        .status();
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        })
    };
    wait_until("fight detected", scaled(Duration::from_secs(60)), || {
        s.status()["daemon"]["health"]
            .as_str()
            .unwrap_or("")
            .starts_with("fight")
    });
    let repairs = s.stat("repairs");
    std::thread::sleep(scaled(Duration::from_secs(3)));
    assert_eq!(
        s.stat("repairs"),
        repairs,
        "repairs continued during a fight"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    println!(
        "fight: the other manager undid {} repairs",
        fighter.join().expect("fighter")
    );
    assert!(std::fs::read_to_string(s.dir.join("daemon.log"))
        .unwrap_or_default()
        .contains("another manager keeps undoing"));
    s.expect(&["apply", &base], exit::CHANGED);

    // 3. Report policy: drift reported, not repaired.
    let report = s.file(
        "report.yaml",
        &format!("{BASE}daemon: {{ policy: report }}\n"),
    );
    s.expect(&["apply", &report], exit::NO_CHANGE);
    s.ip(&["link", "set", "bond0", "mtu", "1400"]);
    wait_until("drift reported", scaled(Duration::from_secs(20)), || {
        s.status()["daemon"]["health"]
            .as_str()
            .unwrap_or("")
            .starts_with("drift")
    });
    std::thread::sleep(scaled(Duration::from_secs(2)));
    assert!(
        s.ip(&["link", "show", "bond0"]).contains("mtu 1400"),
        "report policy repaired"
    );
    s.expect(&["apply", &base], exit::CHANGED);

    // 4. Commit-confirmed: an apply that moves management to VLAN 11 cuts
    // the path; not confirmed, it reverts and the path answers again.
    let cut = s.file(
        "cut.yaml",
        &BASE
            .replace("bond0.10", "bond0.11")
            .replace("id: 10", "id: 11"),
    );
    // (60 s: the apply itself takes seconds under a loaded emulator.)
    s.expect(&["apply", &cut, "--confirm-within", "60s"], exit::CHANGED);
    assert!(
        !s.status()["daemon"]["pending"].is_null(),
        "the apply outlasted its deadline"
    );
    assert!(!s.mgmt_answers(), "the cut apply did not cut");
    let t = Instant::now();
    wait_until(
        "revert at the deadline",
        scaled(Duration::from_secs(120)),
        || s.mgmt_answers(),
    );
    println!(
        "management path back {:?} after the cut (deadline 60 s)",
        t.elapsed()
    );
    assert_eq!(s.status()["daemon"]["pending"], Value::Null);
    // With a probe of the management peer: reverted as soon as it fails.
    let t = Instant::now();
    s.expect(
        &[
            "apply",
            &cut,
            "--confirm-within",
            "300s",
            "--probe",
            "ping:10.10.0.1",
            "--probe-timeout",
            "5s",
        ],
        exit::CHANGED,
    );
    wait_until(
        "revert after the probe",
        scaled(Duration::from_secs(60)),
        || s.mgmt_answers(),
    );
    println!(
        "failed probe: management path back after {:?} (deadline 300 s)",
        t.elapsed()
    );
    // A probe that answers confirms: the MTU change stays.
    let mtu = s.file("mtu.yaml", &BASE.replace("mtu: 1500", "mtu: 1496"));
    s.expect(
        &[
            "apply",
            &mtu,
            "--confirm-within",
            "300s",
            "--probe",
            "ping:10.10.0.1",
        ],
        exit::CHANGED,
    );
    wait_until(
        "confirmed by the probe",
        scaled(Duration::from_secs(60)),
        || s.status()["daemon"]["pending"].is_null(),
    );
    assert!(s.ip(&["link", "show", "bond0"]).contains("mtu 1496"));
    s.expect(&["apply", &base], exit::CHANGED);

    // 5. kill -9 in the middle of a 400-VLAN commit-confirmed apply.
    let mut big = BASE.to_owned();
    big = big.replacen("routes:", &{
        let mut v = String::new();
        for id in 1000..1400 {
            v.push_str(&format!("  - {{ name: bond0.{id}, type: vlan, state: up, vlan: {{ base-iface: bond0, id: {id} }} }}\n"));
        }
        v + "routes:"
    }, 1);
    let big = s.file("big.yaml", &big);
    let vlans = |s: &Server| {
        s.ip(&["-o", "link", "show", "type", "vlan"])
            .lines()
            .filter(|l| l.contains("bond0.1") && !l.contains("bond0.10@"))
            .count()
    };
    let mut apply = s
        .hostd_cmd(&["apply", &big, "--confirm-within", "90s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apply");
    wait_until(
        "the apply under way",
        scaled(Duration::from_secs(120)),
        || vlans(&s) >= 20,
    );
    let in_flight = apply.try_wait().ok().flatten().is_none();
    s.kill9();
    let at_kill = vlans(&s);
    let _ = apply.wait();
    println!("daemon killed with {at_kill} of 400 VLANs created (apply call still in flight: {in_flight})");
    assert!(
        s.dir.join("state/pending.json").exists(),
        "pending record written before the apply"
    );
    s.start();
    // Resumed (and completed by the reconcile loop) until the deadline, or,
    // on a slow VM, found expired at start: reverted either way.
    let log = std::fs::read_to_string(s.dir.join("daemon.log")).unwrap_or_default();
    assert!(
        log.contains("pending apply resumed") || log.contains("expired while the daemon was down"),
        "the restarted daemon did not act on the pending record"
    );
    let t = Instant::now();
    wait_until(
        "revert of the interrupted apply",
        scaled(Duration::from_secs(300)),
        || s.status()["daemon"]["pending"].is_null() && vlans(&s) == 0,
    );
    println!("interrupted apply reverted {:?} after restart", t.elapsed());
    wait_until(
        "management path after the crash",
        scaled(Duration::from_secs(30)),
        || s.mgmt_answers(),
    );

    // 6. kill -9 while an apply waits; the daemon restarts after its
    // deadline: reverted at start.
    // (A deadline long enough that the apply itself, slow under emulation,
    // cannot outlast it; the daemon is killed well before it.)
    s.expect(&["apply", &cut, "--confirm-within", "40s"], exit::CHANGED);
    let deadline = s.status()["daemon"]["pending"]["deadline"]
        .as_u64()
        .expect("pending deadline");
    s.kill9();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    std::thread::sleep(Duration::from_secs(deadline.saturating_sub(now) + 2));
    assert!(
        !s.mgmt_answers(),
        "something reverted while the daemon was down"
    );
    s.start();
    wait_until("revert at start", scaled(Duration::from_secs(60)), || {
        s.mgmt_answers()
    });
    assert_eq!(s.status()["daemon"]["pending"], Value::Null);
    assert!(foreign(&s), "foreign objects touched");
    assert!(s.ip(&["link", "show", "eth1.77"]).contains("eth1.77"));
    let _ = &_bus.dir;
}
