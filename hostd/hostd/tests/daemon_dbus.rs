//! `hostd daemon` end to end on this kernel (root; veth only): the real
//! binary in a private network namespace, serving a real private
//! `dbus-daemon`. Checked: who may change state (the daemon's own check
//! from the caller's credentials, and the shipped bus policy), `busctl` and
//! `gdbus` calls, the CLI as a client, drift repair of a link, an address
//! and a route with the `Repaired` signal, report-only policy, foreign
//! objects never touched, commit-confirmed apply with confirm, rollback,
//! expiry, probes, and `kill -9` of the daemon while an apply waits.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use hostd::cli::exit;
use serde_json::Value;

const NAME: &str = "org.hostnet.Hostd1";
const PATH: &str = "/org/hostnet/Hostd1";
const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../packaging/dbus/org.hostnet.Hostd1.conf"
);

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private dbus-daemon on a socket in a world-readable directory.
struct Bus {
    dir: PathBuf,
    child: Child,
    address: String,
}

impl Bus {
    /// `strict`: a system-bus-like policy (method calls denied by default)
    /// plus the shipped org.hostnet.Hostd1.conf. Otherwise everything is
    /// allowed on the bus, so only the daemon's own check stands.
    fn new(tag: &str, strict: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("hostd-bus-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bus dir");
        set_mode(&dir, 0o755);
        let sock = dir.join("bus");
        let policy = if strict {
            format!(
                r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{POLICY}</include>"#
            )
        } else {
            r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#
                .to_owned()
        };
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
            sock.display()
        );
        let conf_path = dir.join("bus.conf");
        std::fs::write(&conf_path, conf).expect("bus conf");
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf_path.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon)");
        wait_for("the bus socket", Duration::from_secs(10), || sock.exists());
        set_mode(&sock, 0o777);
        Self {
            dir,
            child,
            address: format!("unix:path={}", sock.display()),
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A namespace with veth NICs eth0/eth1 (peers up) and a state directory.
struct Host {
    ns: String,
    dir: PathBuf,
    daemon: Option<Child>,
    bus: String,
}

impl Host {
    fn new(tag: &str, bus: &Bus) -> Self {
        let ns = format!("hostdd{}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&ns);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        run("ip", &["netns", "add", &ns]);
        let h = Self {
            ns,
            dir,
            daemon: None,
            bus: bus.address.clone(),
        };
        for l in [
            "link set lo up",
            "link add eth0 type veth peer name p0",
            "link add eth1 type veth peer name p1",
            "link set p0 up",
            "link set p1 up",
        ] {
            h.ip(l);
        }
        h
    }

    fn ip(&self, line: &str) -> String {
        let mut args = vec!["-n", &self.ns];
        args.extend(line.split(' '));
        run("ip", &args)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        set_mode(&self.dir, 0o755);
        set_mode(&p, 0o644);
        p
    }

    fn hostd_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_hostd")])
            .arg("--state-file")
            .arg(self.dir.join("owned.json"))
            .arg("--resolv-conf")
            .arg(self.dir.join("resolv.conf"))
            .args(["--bus-address", &self.bus])
            .args(args)
            .env("HOSTD_LOG", "info,zbus=warn")
            .stdin(Stdio::null());
        c
    }

    /// The CLI (a client of the daemon when it runs).
    fn hostd(&self, args: &[&str]) -> Output {
        self.hostd_cmd(args).output().expect("hostd")
    }

    fn start(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("log");
        let mut args = vec!["daemon", "--state-dir"];
        let sd = self.dir.join("state").display().to_string();
        args.push(&sd);
        args.push("--telemetry-no-pin");
        args.extend(extra);
        let child = self
            .hostd_cmd(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.daemon = Some(child);
        let bus = self.bus.clone();
        wait_for("the daemon on the bus", Duration::from_secs(20), || {
            busctl(&bus, None, &["status", NAME]).status.success()
        });
        // The first reconcile sets the health.
        wait_for("the first reconcile", Duration::from_secs(20), || {
            let o = busctl(&bus, None, &["get-property", NAME, PATH, NAME, "Health"]);
            o.status.success() && !stdout(&o).contains("starting")
        });
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // `ip netns exec` execs hostd: the child pid is the daemon.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect(prog);
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// busctl as root, or as `as_user` (uid, gid, supplementary groups).
fn busctl(address: &str, as_user: Option<(u32, u32, &str)>, args: &[&str]) -> Output {
    let mut c = match as_user {
        None => Command::new("busctl"),
        Some((uid, gid, groups)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"));
            if groups.is_empty() {
                c.arg("--clear-groups");
            } else {
                c.arg(format!("--groups={groups}"));
            }
            c.arg("busctl");
            c
        }
    };
    c.arg(format!("--address={address}"))
        .args(args)
        .output()
        .expect("busctl (systemd)")
}

fn call(
    address: &str,
    as_user: Option<(u32, u32, &str)>,
    method: &str,
    sig_args: &[&str],
) -> Output {
    let mut a = vec!["call", NAME, PATH, NAME, method];
    a.extend(sig_args);
    busctl(address, as_user, &a)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON string a `busctl call` printed (`s "..."`).
fn json_reply(o: &Output) -> Value {
    assert!(o.status.success(), "busctl: {}", stderr(o));
    let text = stdout(o);
    let s = text.trim().strip_prefix("s ").expect("a string reply");
    let inner: String = serde_json::from_str(s).expect("busctl quotes like JSON");
    serde_json::from_str(&inner).expect("JSON reply")
}

fn status(h: &Host) -> Value {
    let o = h.hostd(&["-o", "json", "state"]);
    assert_eq!(
        o.status.code(),
        Some(exit::NO_CHANGE),
        "status: {}",
        stderr(&o)
    );
    serde_json::from_str(&stdout(&o)).expect("status JSON")
}

const NOBODY: (u32, u32, &str) = (65534, 65534, "");

const BASE: &str = "interfaces:
  - name: eth0
    type: ethernet
    state: up
    mtu: 1500
    ipv4:
      address: [{ ip: 10.77.0.1, prefix-length: 24 }]
routes:
  config:
    - { destination: 10.78.0.0/24, next-hop-address: 10.77.0.254, next-hop-interface: eth0 }
";

#[test]
fn authorisation_busctl_gdbus_and_the_cli_as_client() {
    // 1. A permissive bus: only the daemon's own check stands.
    let bus = Bus::new("open", false);
    let mut h = Host::new("auth", &bus);
    let doc = h.file("base.yaml", BASE);
    h.start(&["--admin-group", "adm"]);

    // Reads for everyone, over busctl and gdbus.
    let o = call(&bus.address, Some(NOBODY), "Status", &[]);
    let st = json_reply(&o);
    assert_eq!(st["daemon"]["health"], "ok", "{st}");
    let o = busctl(
        &bus.address,
        Some(NOBODY),
        &["get-property", NAME, PATH, NAME, "PendingDeadline"],
    );
    assert_eq!(stdout(&o).trim(), "t 0", "{}", stderr(&o));
    let gd = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "gdbus",
            "call",
            "--address",
        ])
        .arg(&bus.address)
        .args([
            "--dest",
            NAME,
            "--object-path",
            PATH,
            "--method",
            "org.hostnet.Hostd1.Show",
        ])
        .output()
        .expect("gdbus (libglib2.0-bin)");
    assert!(gd.status.success(), "gdbus Show: {}", stderr(&gd));
    assert!(stdout(&gd).contains("eth0"), "{}", stdout(&gd));
    let plan_doc = std::fs::read_to_string(&doc).expect("doc");
    let o = call(&bus.address, Some(NOBODY), "Plan", &["s", &plan_doc]);
    let p = json_reply(&o);
    assert_eq!(p["empty"], false);

    // Changes: refused for nobody by the daemon itself...
    for (m, args) in [
        ("Apply", vec!["su", plan_doc.as_str(), "0"]),
        ("Confirm", vec![]),
        ("Rollback", vec![]),
    ] {
        let o = call(&bus.address, Some(NOBODY), m, &args);
        assert!(!o.status.success(), "{m} as nobody succeeded");
        assert!(
            stderr(&o).contains("may not change hostd's state"),
            "{m}: {}",
            stderr(&o)
        );
    }
    // ... and over gdbus too, with the daemon's error name.
    let gd = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "gdbus",
            "call",
            "--address",
        ])
        .arg(&bus.address)
        .args([
            "--dest",
            NAME,
            "--object-path",
            PATH,
            "--method",
            "org.hostnet.Hostd1.Confirm",
        ])
        .output()
        .expect("gdbus");
    assert!(!gd.status.success());
    assert!(
        stderr(&gd).contains("org.hostnet.Hostd1.Error.AccessDenied"),
        "{}",
        stderr(&gd)
    );
    // Nothing changed.
    assert!(!h.ip("-4 addr show dev eth0").contains("10.77.0.1"));

    // A member of the admin group passes the check (Confirm then fails for
    // the right reason: nothing is pending).
    let o = call(&bus.address, Some((65534, 65534, "4")), "Confirm", &[]);
    assert!(stderr(&o).contains("nothing is pending"), "{}", stderr(&o));

    // Root succeeds, through the CLI as a client.
    let o = h.hostd(&["apply", doc.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    assert!(stderr(&o).contains("through the daemon"), "{}", stderr(&o));
    assert!(h.ip("-4 addr show dev eth0").contains("10.77.0.1/24"));
    let o = h.hostd(&["apply", doc.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(exit::NO_CHANGE), "{}", stderr(&o));
    let st = status(&h);
    let id = st["daemon"]["confirmed_id"]
        .as_str()
        .expect("confirmed id")
        .to_owned();
    let o = busctl(
        &bus.address,
        Some(NOBODY),
        &["get-property", NAME, PATH, NAME, "ConfirmedId"],
    );
    assert_eq!(stdout(&o).trim(), format!("s \"{id}\""));
    // Confirm/rollback without anything pending: exit 14.
    let o = h.hostd(&["confirm"]);
    assert_eq!(
        o.status.code(),
        Some(exit::NOTHING_PENDING),
        "{}",
        stderr(&o)
    );
    drop(h);
    drop(bus);

    // 2. The shipped policy on a system-like bus: the bus itself refuses
    // nobody's changes, lets reads through.
    let bus = Bus::new("strict", true);
    let mut h = Host::new("pol", &bus);
    h.start(&[]);
    let o = call(&bus.address, Some(NOBODY), "Status", &[]);
    json_reply(&o);
    let o = call(&bus.address, Some(NOBODY), "Rollback", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("access denied") || stderr(&o).contains("AccessDenied"),
        "{}",
        stderr(&o)
    );
    let o = call(&bus.address, None, "Rollback", &[]);
    assert!(
        stderr(&o).contains("nothing is pending"),
        "root passes the bus: {}",
        stderr(&o)
    );
}

/// Receives the daemon's signals on a separate connection.
struct Signals {
    rt: tokio::runtime::Runtime,
    stream: Option<zbus::MessageStream>,
}

impl Drop for Signals {
    fn drop(&mut self) {
        // zbus tears the stream down on the runtime.
        let _g = self.rt.enter();
        self.stream.take();
    }
}

impl Signals {
    fn new(address: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stream = rt.block_on(async {
            let conn = zbus::connection::Builder::address(address)
                .expect("address")
                .build()
                .await
                .expect("connect");
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .interface(NAME)
                .expect("iface")
                .build();
            zbus::MessageStream::for_match_rule(rule, &conn, Some(256))
                .await
                .expect("match")
        });
        Self {
            rt,
            stream: Some(stream),
        }
    }

    /// Waits for the signal `member`; returns its (id, details JSON).
    fn wait(&mut self, member: &str, limit: Duration) -> Value {
        let stream = self.stream.as_mut().expect("stream");
        self.rt.block_on(async {
            tokio::time::timeout(limit, async {
                while let Some(Ok(m)) = stream.next().await {
                    let h = m.header();
                    if h.member().map(|x| x.as_str()) == Some(member) {
                        let body = m.body();
                        let (_, details): (String, String) = body.deserialize().expect("body");
                        return serde_json::from_str::<Value>(&details).expect("json");
                    }
                }
                panic!("signal stream ended")
            })
            .await
            .unwrap_or_else(|_| panic!("no {member} signal within {limit:?}"))
        })
    }
}

#[test]
fn drift_is_repaired_foreign_objects_untouched_report_policy_only_reports() {
    let bus = Bus::new("drift", false);
    let mut h = Host::new("drift", &bus);
    let doc = h.file("base.yaml", BASE);
    h.start(&[]);
    let o = h.hostd(&["apply", doc.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    // Foreign objects: a link, an address on it, a route through it.
    h.ip("link set eth1 up");
    h.ip("addr add 10.99.0.1/24 dev eth1");
    h.ip("route add 10.98.0.0/24 via 10.99.0.254 dev eth1");
    let mut sig = Signals::new(&bus.address);
    for (what, break_it, fixed) in [
        (
            "link down",
            "link set eth0 down",
            &(|h: &Host| h.ip("link show eth0").contains(",UP")) as &dyn Fn(&Host) -> bool,
        ),
        (
            "address removed",
            "addr del 10.77.0.1/24 dev eth0",
            &|h: &Host| h.ip("-4 addr show dev eth0").contains("10.77.0.1/24"),
        ),
        ("MTU changed", "link set eth0 mtu 1400", &|h: &Host| {
            h.ip("link show eth0").contains("mtu 1500")
        }),
        ("route removed", "route del 10.78.0.0/24", &|h: &Host| {
            h.ip("route show 10.78.0.0/24").contains("10.77.0.254")
        }),
    ] {
        assert!(fixed(&h), "{what}: not in place before breaking it");
        let t = Instant::now();
        h.ip(break_it);
        let r = sig.wait("Repaired", Duration::from_secs(20));
        assert_eq!(r["ok"], true, "{what}: {r}");
        wait_for(what, Duration::from_secs(10), || fixed(&h));
        println!("{what}: repaired in {:?} ({r})", t.elapsed());
    }
    // Foreign objects untouched through all of it.
    assert!(h.ip("-4 addr show dev eth1").contains("10.99.0.1/24"));
    assert!(h.ip("route show 10.98.0.0/24").contains("10.99.0.254"));
    // A foreign change alone causes no repair.
    let before = status(&h)["daemon"]["stats"]["repairs"]
        .as_u64()
        .expect("repairs");
    h.ip("link set eth1 mtu 1300");
    h.ip("addr add 10.99.1.1/24 dev eth1");
    wait_for(
        "a reconcile of the foreign change",
        Duration::from_secs(10),
        || {
            status(&h)["daemon"]["stats"]["reconciles"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        status(&h)["daemon"]["stats"]["repairs"].as_u64(),
        Some(before)
    );
    assert!(h.ip("link show eth1").contains("mtu 1300"));

    // Report policy: drift is reported (signal, health), never repaired.
    let report = h.file(
        "report.yaml",
        &format!("{BASE}daemon: {{ policy: report }}\n"),
    );
    let o = h.hostd(&["apply", report.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(exit::NO_CHANGE), "{}", stderr(&o));
    h.ip("link set eth0 down");
    let d = sig.wait("Drift", Duration::from_secs(20));
    assert_eq!(d["policy"], "report", "{d}");
    wait_for("health drift", Duration::from_secs(10), || {
        status(&h)["daemon"]["health"]
            .as_str()
            .unwrap_or("")
            .starts_with("drift")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !h.ip("link show eth0").contains(",UP"),
        "report policy repaired"
    );
}

#[test]
fn a_fight_is_detected_and_repairs_stop() {
    let bus = Bus::new("fight", false);
    let mut h = Host::new("fight", &bus);
    let doc = h.file("base.yaml", BASE);
    h.start(&[
        "--backoff-initial",
        "200ms",
        "--backoff-max",
        "1s",
        "--fight-threshold",
        "4",
    ]);
    let o = h.hostd(&["apply", doc.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    let mut sig = Signals::new(&bus.address);
    // Another manager: sets eth0's MTU back to 1400 whenever it differs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, ns) = (stop.clone(), h.ns.clone());
    let fighter = std::thread::spawn(move || {
        let mut undone = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let show = run("ip", &["-n", &ns, "link", "show", "eth0"]);
            if !show.contains("mtu 1400") {
                run("ip", &["-n", &ns, "link", "set", "eth0", "mtu", "1400"]);
                undone += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        undone
    });
    let f = sig.wait("FightDetected", Duration::from_secs(60));
    assert!(f["repairs"].as_u64().unwrap_or(0) >= 4, "{f}");
    let repairs = status(&h)["daemon"]["stats"]["repairs"]
        .as_u64()
        .expect("repairs");
    // Not looped: no further repair while the fight lasts.
    std::thread::sleep(Duration::from_secs(4));
    let st = status(&h);
    assert_eq!(
        st["daemon"]["stats"]["repairs"].as_u64(),
        Some(repairs),
        "{st}"
    );
    assert!(
        st["daemon"]["health"]
            .as_str()
            .unwrap_or("")
            .starts_with("fight"),
        "{st}"
    );
    assert!(st["daemon"]["fight"].is_object(), "{st}");
    let busy = busctl(
        &bus.address,
        None,
        &["get-property", NAME, PATH, NAME, "Health"],
    );
    assert!(stdout(&busy).contains("fight"), "{}", stdout(&busy));
    assert!(
        h.log().contains("another manager keeps undoing"),
        "log line"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let undone = fighter.join().expect("fighter");
    println!("fighter undid {undone} repairs; daemon repaired {repairs} times then stopped");
    // Applying the document again resumes repairs.
    let o = h.hostd(&["apply", doc.to_str().expect("utf8")]);
    assert!(
        o.status.success() || o.status.code() == Some(exit::CHANGED),
        "{}",
        stderr(&o)
    );
    wait_for("mtu back", Duration::from_secs(10), || {
        h.ip("link show eth0").contains("mtu 1500")
    });
}

#[test]
fn commit_confirmed_confirm_rollback_expiry_probes_and_kill9() {
    let bus = Bus::new("cc", false);
    let mut h = Host::new("cc", &bus);
    let base = h.file("base.yaml", BASE);
    // A second address in another subnet (changing the subnet's only
    // address would also flush the route: see docs/daemon.md).
    let next_text = BASE.replace(
        "address: [{ ip: 10.77.0.1, prefix-length: 24 }]",
        "address: [{ ip: 10.77.0.1, prefix-length: 24 }, { ip: 10.79.0.1, prefix-length: 24 }]",
    );
    assert_ne!(next_text, BASE);
    let next = h.file("next.yaml", &next_text);
    h.start(&[]);
    let path = |p: &PathBuf| p.to_str().expect("utf8").to_owned();
    let has = |h: &Host, a: &str| h.ip("-4 addr show dev eth0").contains(a);

    // Without a confirmed document there is nothing to return to.
    let o = h.hostd(&["apply", &path(&next), "--confirm-within", "30s"]);
    assert_eq!(o.status.code(), Some(exit::BUSY), "{}", stderr(&o));
    let o = h.hostd(&["apply", &path(&base)]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));

    // Confirmed in time: kept.
    let o = h.hostd(&["apply", &path(&next), "--confirm-within", "60s"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    assert!(has(&h, "10.79.0.1/24"));
    let o = busctl(
        &bus.address,
        None,
        &["get-property", NAME, PATH, NAME, "PendingDeadline"],
    );
    assert_ne!(stdout(&o).trim(), "t 0");
    assert!(
        h.dir.join("state/pending.json").exists(),
        "pending record on disk"
    );
    let o = h.hostd(&["apply", &path(&base), "--confirm-within", "60s"]);
    assert_eq!(
        o.status.code(),
        Some(exit::BUSY),
        "second pending apply: {}",
        stderr(&o)
    );
    let o = h.hostd(&["confirm"]);
    assert_eq!(o.status.code(), Some(exit::NO_CHANGE), "{}", stderr(&o));
    assert!(!h.dir.join("state/pending.json").exists());
    assert!(has(&h, "10.79.0.1/24"));

    // Rolled back on request.
    let o = h.hostd(&["apply", &path(&base), "--confirm-within", "60s"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    assert!(!has(&h, "10.79.0.1/24"));
    let o = h.hostd(&["rollback"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    assert!(has(&h, "10.79.0.1/24"));

    // Not confirmed: reverted at the deadline by itself.
    let t = Instant::now();
    let o = h.hostd(&["apply", &path(&base), "--confirm-within", "3s"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    wait_for("revert at the deadline", Duration::from_secs(15), || {
        has(&h, "10.79.0.1/24") && !h.dir.join("state/pending.json").exists()
    });
    println!("reverted {:?} after the apply (deadline 3 s)", t.elapsed());
    assert!(!h.dir.join("state/pending.json").exists());

    // Probes: a TCP listener in the namespace answers -> confirmed by itself;
    // a dead one -> reverted at once.
    let listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &h.ns,
            "socat",
            "TCP-LISTEN:7777,bind=127.0.0.1,fork,reuseaddr",
            "SYSTEM:true",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("socat");
    let mut listener = scopeguard(listener);
    wait_for("listener", Duration::from_secs(5), || {
        run("ip", &["netns", "exec", &h.ns, "ss", "-ltn"]).contains("127.0.0.1:7777")
    });
    let o = h.hostd(&[
        "apply",
        &path(&base),
        "--confirm-within",
        "60s",
        "--probe",
        "tcp:127.0.0.1:7777",
    ]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    wait_for("probe confirmation", Duration::from_secs(15), || {
        status(&h)["daemon"]["pending"].is_null()
    });
    assert!(!has(&h, "10.79.0.1/24"), "probe-confirmed document kept");
    let _ = listener.0.kill();
    let _ = listener.0.wait();
    // socat's forked children may hold the listening socket a moment
    // longer (under load): the probe must find the port closed.
    wait_for("listener gone", Duration::from_secs(10), || {
        !run("ip", &["netns", "exec", &h.ns, "ss", "-ltn"]).contains("127.0.0.1:7777")
    });
    let o = h.hostd(&[
        "apply",
        &path(&next),
        "--confirm-within",
        "60s",
        "--probe",
        "tcp:127.0.0.1:7777",
        "--probe-timeout",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    wait_for(
        "revert after failed probes",
        Duration::from_secs(15),
        || status(&h)["daemon"]["pending"].is_null() && !has(&h, "10.79.0.1/24"),
    );

    // kill -9 while an apply waits; restarted before the deadline: resumed,
    // then reverted at the deadline.
    let o = h.hostd(&["apply", &path(&next), "--confirm-within", "8s"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    h.kill9();
    assert!(has(&h, "10.79.0.1/24"));
    h.start(&[]);
    assert_ne!(status(&h)["daemon"]["pending"], Value::Null, "resumed");
    wait_for("revert after restart", Duration::from_secs(20), || {
        !has(&h, "10.79.0.1/24")
    });
    // kill -9 while waiting, restarted after the deadline: reverted at start.
    let o = h.hostd(&["apply", &path(&next), "--confirm-within", "2s"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    h.kill9();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        has(&h, "10.79.0.1/24"),
        "nobody reverted while the daemon was down"
    );
    h.start(&[]);
    wait_for("revert at start", Duration::from_secs(10), || {
        !has(&h, "10.79.0.1/24")
    });
    assert!(h.log().contains("expired while the daemon was down"));
    // Boot: a pending apply is dropped, the confirmed document applied.
    let o = h.hostd(&["apply", &path(&next), "--confirm-within", "600s"]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    h.kill9();
    let sd = h.dir.join("state").display().to_string();
    let o = h.hostd(&["boot", "--state-dir", &sd, "--telemetry-no-pin"]);
    assert_eq!(o.status.code(), Some(exit::NO_CHANGE), "{}", stderr(&o));
    assert!(
        !has(&h, "10.79.0.1/24"),
        "boot applied the confirmed document"
    );
    assert!(!h.dir.join("state/pending.json").exists());
}

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn scopeguard(c: Child) -> Guard {
    Guard(c)
}

/// The `attached=[("eth1", N)]` ifindexes the daemon logged, in order.
fn attached_ifindexes(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("telemetry agent attached"))
        .filter_map(|l| {
            let rest = &l[l.find("(\"eth1\", ")? + 9..];
            rest[..rest.find(')')?].parse().ok()
        })
        .collect()
}

#[test]
fn telemetry_agent_is_supervised_and_follows_a_recreated_interface() {
    let bus = Bus::new("tele", false);
    let mut h = Host::new("tele", &bus);
    h.start(&[]);
    let doc = h.file(
        "tele.yaml",
        &format!("{BASE}telemetry:\n  interfaces: [eth1]\n  sampling-rate: 0\n"),
    );
    let o = h.hostd(&["apply", doc.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(exit::CHANGED), "{}", stderr(&o));
    wait_for("the agent attached", Duration::from_secs(30), || {
        attached_ifindexes(&h.log()).len() == 1
    });
    let first = attached_ifindexes(&h.log())[0];
    // eth1 disappears: the daemon keeps running and waits for it.
    h.ip("link del eth1");
    wait_for("the agent stopped", Duration::from_secs(30), || {
        h.log().contains("none of the telemetry interfaces exists")
    });
    // eth1 is recreated (a new ifindex): the agent attaches to it again.
    h.ip("link add eth1 type veth peer name p1");
    wait_for("the agent re-attached", Duration::from_secs(30), || {
        attached_ifindexes(&h.log()).len() == 2
    });
    let second = attached_ifindexes(&h.log())[1];
    assert_ne!(first, second, "re-attached to the new interface");
    assert_eq!(
        h.ip("-o link show eth1").split(':').next().map(str::trim),
        Some(second.to_string().as_str())
    );
    // The daemon is still there and answers.
    let st = status(&h);
    assert!(st["daemon"]["stats"]["reconciles"].as_u64().unwrap_or(0) > 0);
    // The section removed: the agent stops.
    let o = h.hostd(&["apply", h.file("base.yaml", BASE).to_str().expect("utf8")]);
    assert!(
        o.status.success() || o.status.code() == Some(exit::CHANGED),
        "{}",
        stderr(&o)
    );
    wait_for(
        "the agent stopped with its section",
        Duration::from_secs(30),
        || h.log().contains("telemetry section gone"),
    );
}
