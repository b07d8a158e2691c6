//! The `hostd` binary end to end, in a private network namespace (root;
//! veth and a plain bridge only, so it runs on the host kernel): output
//! formats and every documented exit code.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use hostd::cli::exit;
use hostd_core::{NetworkState, Plan};

/// A uniquely named namespace with veth NICs eth0 and eth1 (peers up),
/// removed on drop.
struct Ns {
    name: String,
    dir: PathBuf,
}

impl Ns {
    fn new(tag: &str) -> Self {
        let name = format!("hostdcli{}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ns = Self { name, dir };
        ns.ip(&["netns", "add", &ns.name]);
        for l in [
            "link set lo up",
            "link add eth0 type veth peer name p0",
            "link add eth1 type veth peer name p1",
            "link set p0 up",
            "link set p1 up",
        ] {
            let mut args = vec!["-n", &ns.name];
            args.extend(l.split(' '));
            ns.ip(&args);
        }
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn hostd(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("ip");
        // Failure injection needs the test binary; `hostd` has no hook.
        let bin = if env.iter().any(|(k, _)| k.starts_with("HOSTD_FAULT")) {
            env!("CARGO_BIN_EXE_hostd-fault")
        } else {
            env!("CARGO_BIN_EXE_hostd")
        };
        c.args(["netns", "exec", &self.name, bin]);
        c.args(args);
        c.env("HOSTD_STATE_FILE", self.dir.join("owned.json"));
        c.env("HOSTD_RESOLV_CONF", self.dir.join("resolv.conf"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run hostd")
    }

    /// Links, addresses and routes, for before/after comparisons, without
    /// running timers and carrier/STP state (`state X`, `*_timer N`) and
    /// DAD's `tentative` flag, which change on their own.
    fn state(&self) -> String {
        let mut s = self.ip(&["-n", &self.name, "-d", "link", "show"]);
        s.push_str(&self.ip(&["-n", &self.name, "addr", "show"]));
        s.push_str(&self.ip(&["-n", &self.name, "route", "show", "table", "all"]));
        s.lines()
            .map(|l| {
                let mut out = Vec::new();
                let mut it = l.split_whitespace();
                while let Some(t) = it.next() {
                    if t == "state" || t.ends_with("_timer") {
                        it.next();
                    } else if t != "tentative" {
                        out.push(t);
                    }
                }
                out.join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const DESIRED: &str = "
interfaces:
  - { name: eth0, type: ethernet }
  - name: eth1
    type: ethernet
    ipv4: { address: [{ ip: 10.1.0.2, prefix-length: 24 }] }
  - name: br0
    type: linux-bridge
    bridge: { options: { stp: { enabled: false } }, port: [{ name: eth0 }] }
    ipv4: { address: [{ ip: 10.0.0.2, prefix-length: 24 }] }
routes:
  config:
    - { destination: 10.20.0.0/16, next-hop-address: 10.1.0.1 }
dns-resolver:
  config: { server: [10.0.0.53], search: [lab.example] }
";

#[test]
fn exit_codes_and_outputs() {
    let ns = Ns::new("a");
    let desired = ns.file("desired.yaml", DESIRED);
    let d = desired.to_str().expect("utf-8 path");

    // Invalid input: 3, with the field path; nothing touched.
    let before = ns.state();
    let bad = ns.file(
        "bad.yaml",
        "interfaces:\n  - { name: eth0, type: ethernet, mtu: 20 }\n",
    );
    let o = ns.hostd(&["apply", bad.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::INVALID, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("interfaces[0].mtu"),
        "{}",
        text(&o)
    );
    // A NIC that does not exist: 4.
    let missing = ns.file(
        "missing.yaml",
        "interfaces:\n  - { name: eth9, type: ethernet }\n",
    );
    let o = ns.hostd(&["apply", missing.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::CONFLICT, "{}", text(&o));
    // An unreadable file: 7.
    let o = ns.hostd(&["plan", "/nonexistent/desired.yaml"], &[]);
    assert_eq!(code(&o), exit::HOST, "{}", text(&o));
    assert_eq!(ns.state(), before, "rejected input changed nothing");

    // plan: 10 (changes pending), as text and JSON; dry-run changes nothing.
    let o = ns.hostd(&["plan", d], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("create bridge br0"),
        "{}",
        text(&o)
    );
    let o = ns.hostd(&["plan", d, "--output", "json"], &[]);
    let plan: Plan = serde_json::from_slice(&o.stdout).expect("plan JSON");
    assert!(plan.ops.len() >= 6, "{plan}");
    let o = ns.hostd(&["apply", d, "--dry-run"], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert_eq!(ns.state(), before, "dry run changed nothing");

    // A failure injected at step 3: rolled back, 5, host as before.
    let o = ns.hostd(&["apply", d], &[("HOSTD_FAULT", "3")]);
    assert_eq!(code(&o), exit::ROLLED_BACK, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("step 3"),
        "{}",
        text(&o)
    );
    assert_eq!(ns.state(), before, "rolled back exactly");

    // apply: 10, then 0 (idempotent).
    let o = ns.hostd(&["apply", d], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    let o = ns.hostd(&["apply", d], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no changes"),
        "{}",
        text(&o)
    );
    let resolv = std::fs::read_to_string(ns.dir.join("resolv.conf")).expect("resolv.conf");
    assert!(resolv.contains("nameserver 10.0.0.53"), "{resolv}");

    // show: YAML and JSON that parse back into the schema.
    let o = ns.hostd(&["show"], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    let shown =
        NetworkState::parse(&String::from_utf8_lossy(&o.stdout)).expect("show output is a state");
    let br0 = shown.interface("br0").expect("br0 shown");
    assert_eq!(br0.bridge.as_ref().map(|b| b.port.len()), Some(1));
    let o = ns.hostd(&["show", "-o", "json"], &[]);
    let _: NetworkState = serde_json::from_slice(&o.stdout).expect("show JSON");

    // teardown: 10, then 0; bridge gone, NICs down.
    let o = ns.hostd(&["teardown"], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    let o = ns.hostd(&["teardown"], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    let links = ns.ip(&["-n", &ns.name, "-br", "link"]);
    assert!(!links.contains("br0"), "{links}");
    assert!(
        links
            .lines()
            .filter(|l| l.starts_with("eth"))
            .all(|l| l.contains("DOWN")),
        "{links}"
    );
}

/// An empty or truncated document never tears the network down (exit 3,
/// nothing touched); a second hostd while one holds the lock gets exit 12
/// and a message naming the holder.
#[test]
fn empty_documents_and_a_second_hostd_change_nothing() {
    let ns = Ns::new("e");
    let desired = ns.file("desired.yaml", DESIRED);
    let o = ns.hostd(&["apply", desired.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    // Let IPv6 DAD and the bridge settle (they change flags on their own).
    let mut before = ns.state();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = ns.state();
        let tentative = ns.ip(&["-n", &ns.name, "-6", "addr", "show", "tentative"]);
        if now == before && tentative.trim().is_empty() {
            break;
        }
        before = now;
    }
    for (name, body, says) in [
        ("empty.yaml", "", "empty"),
        ("blank.yaml", "\n   \n# only a comment\n---\n", "empty"),
        ("null.yaml", "null\n", "empty"),
        ("braces.json", "{}", "declares no interface"),
        ("truncated.yaml", "interfaces:\n", "declares no interface"),
        (
            "dns-only.yaml",
            "dns-resolver:\n  config: { server: [10.0.0.53] }\n",
            "declares no interface",
        ),
    ] {
        let f = ns.file(name, body);
        let o = ns.hostd(&["apply", f.to_str().expect("path")], &[]);
        assert_eq!(code(&o), exit::INVALID, "{name}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{name}: {}",
            text(&o)
        );
        assert_eq!(ns.state(), before, "{name} changed nothing");
    }
    // Teardown is the way to remove everything.
    let o = ns.hostd(&["teardown", "--dry-run"], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));

    // Another hostd holds the lock.
    let lock_path = ns.dir.join("owned.json.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("lock file");
    std::fs::write(&lock_path, "4242\n").expect("holder pid");
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("take the lock");
    let changed = ns.file("changed.yaml", &DESIRED.replace("10.1.0.2", "10.1.0.3"));
    let o = ns.hostd(&["apply", changed.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::LOCKED, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("another hostd") && err.contains("4242"),
        "{err}"
    );
    assert_eq!(ns.state(), before, "a second hostd changed nothing");
    drop(held);
    let o = ns.hostd(&["apply", changed.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
}

#[test]
fn usage_error_is_clap_code() {
    let o = Command::new(env!("CARGO_BIN_EXE_hostd"))
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(code(&o), exit::USAGE);
}

const FIREWALL: &str = "
firewall:
  management: { controllers: [192.0.2.200/32], channel_port: 7443 }
  rules:
    - { action: accept, protocol: tcp, ports: [80], sources: [10.1.0.0/24, 198.51.100.0/24] }
    - { action: drop, protocol: tcp, ports: [23] }
";

const NETWORK: &str = "
interfaces:
  - name: eth1
    type: ethernet
    ipv4: { address: [{ ip: 10.1.0.2, prefix-length: 24 }] }
";

impl Ns {
    fn nft(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, "nft"];
        full.extend_from_slice(args);
        self.ip(&full)
    }

    fn ipv4(&self) -> String {
        self.ip(&["-n", &self.name, "-4", "addr", "show"])
    }

    fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .nft(&["list", "tables"])
            .lines()
            .map(|l| l.trim().to_owned())
            .collect();
        t.sort();
        t
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn firewall_section_is_part_of_plan_apply_and_teardown() {
    let ns = Ns::new("f");
    // A foreign table that hostd must never touch.
    let foreign = ns.file(
        "foreign.nft",
        "table inet operator {\n  chain input {\n    type filter hook input priority -10; policy accept;\n  }\n}\n",
    );
    ns.nft(&["-f", foreign.to_str().expect("path")]);
    let operator = || ns.nft(&["-j", "list", "table", "inet", "operator"]);
    let operator_before = operator();
    let full = ns.file("full.yaml", &format!("{NETWORK}{FIREWALL}"));
    let full = full.to_str().expect("path");

    // A bad rule: 3, path and value named, nothing touched (links nor nft).
    let before = (ns.state(), ns.nft(&["-j", "list", "ruleset"]));
    let ipv4_before = ns.ipv4();
    let bad = ns.file(
        "bad.yaml",
        &format!(
            "{NETWORK}firewall:\n  management: {{ controllers: [192.0.2.200/32], channel_port: 7443 }}\n  rules:\n    - {{ action: accept, protocol: icmp, ports: [22] }}\n"
        ),
    );
    for cmd in ["plan", "apply"] {
        let o = ns.hostd(&[cmd, bad.to_str().expect("path")], &[]);
        assert_eq!(code(&o), exit::INVALID, "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("firewall.rules[0].ports: ports need protocol tcp or udp")
                && err.contains("(value: [22])"),
            "{}",
            text(&o)
        );
    }
    assert_eq!(
        (ns.state(), ns.nft(&["-j", "list", "ruleset"])),
        before,
        "an invalid firewall touched nothing"
    );

    // plan: the firewall step, in text and JSON.
    let o = ns.hostd(&["plan", full], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    let out = stdout(&o);
    assert!(
        out.contains(". firewall: create table inet hostd (2 rules -> ")
            && out.contains(", 3 CIDRs, fingerprint "),
        "{}",
        text(&o)
    );
    let o = ns.hostd(&["plan", full, "-o", "json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan JSON");
    assert_eq!(v["firewall"]["action"], "create", "{v}");
    assert_eq!(v["firewall"]["rules"], 2, "{v}");
    assert_eq!(v["firewall"]["cidrs"], 3, "{v}");
    assert!(!v["ops"].as_array().expect("ops").is_empty(), "{v}");

    // The firewall step fails (injected after the network ops): the
    // network is rolled back too, no table is left: all or nothing.
    let steps = v["ops"].as_array().expect("ops").len() + 1;
    let o = ns.hostd(&["apply", full], &[("HOSTD_FAULT", &steps.to_string())]);
    assert_eq!(code(&o), exit::ROLLED_BACK, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("step {steps} (firewall: create")),
        "{}",
        text(&o)
    );
    // Rolled back: eth1 down again, without its address (a NIC brought up
    // once keeps the kernel's default qdisc, and its veth peer a link-local
    // address: not modelled, see docs/hostd.md).
    assert_eq!(ns.ipv4(), ipv4_before, "addresses rolled back");
    assert!(
        !ns.ip(&["-n", &ns.name, "link", "show", "eth1"])
            .contains(",UP"),
        "eth1 down again"
    );
    assert_eq!(ns.tables(), ["table inet operator"], "no hostd table");

    // apply: 10, table there; again: 0 with the firewall unchanged.
    let o = ns.hostd(&["apply", full], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert_eq!(ns.tables(), ["table inet hostd", "table inet operator"]);
    assert!(ns
        .ip(&["-n", &ns.name, "addr", "show", "eth1"])
        .contains("10.1.0.2/24"));
    let o = ns.hostd(&["apply", full], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    assert!(
        stdout(&o).contains("no changes\n      firewall: unchanged table inet hostd"),
        "{}",
        text(&o)
    );
    let o = ns.hostd(&["firewall", "show", "--json"], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).expect("show JSON");
    assert_eq!(shown["installed"], true);

    // Only the firewall changes: planned and applied as one step.
    let changed = ns.file(
        "changed.yaml",
        &format!(
            "{NETWORK}{}",
            FIREWALL.replace("ports: [23]", "ports: [23, 24]")
        ),
    );
    let changed = changed.to_str().expect("path");
    let o = ns.hostd(&["plan", changed], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert!(
        stdout(&o).starts_with("   1. firewall: replace table inet hostd"),
        "{}",
        text(&o)
    );
    // The kernel's fingerprint, as `plan` reads it.
    let fp = |ns: &Ns| {
        let o = ns.hostd(&["plan", full, "-o", "json"], &[]);
        let v = serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("plan");
        let f = v["firewall"]["current-fingerprint"].clone();
        assert!(f.is_string(), "{v}");
        f
    };
    let fp_before = fp(&ns);
    // A failure at that step keeps the old table exactly.
    let o = ns.hostd(&["apply", changed], &[("HOSTD_FAULT", "1")]);
    assert_eq!(code(&o), exit::ROLLED_BACK, "{}", text(&o));
    assert_eq!(fp(&ns), fp_before);
    let o = ns.hostd(&["apply", changed], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert_ne!(fp(&ns), fp_before);

    // No `firewall` key: the table is left alone.
    let net_only = ns.file("net.yaml", NETWORK);
    let o = ns.hostd(&["apply", net_only.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    assert!(!stdout(&o).contains("firewall"), "{}", text(&o));
    assert_eq!(ns.tables(), ["table inet hostd", "table inet operator"]);

    // `enabled: false`: only hostd's table goes.
    let off = ns.file(
        "off.yaml",
        &format!("{NETWORK}firewall: {{ enabled: false }}\n"),
    );
    let off = off.to_str().expect("path");
    let o = ns.hostd(&["apply", off], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert!(
        stdout(&o).contains("1. firewall: remove table inet hostd"),
        "{}",
        text(&o)
    );
    assert_eq!(ns.tables(), ["table inet operator"]);
    let o = ns.hostd(&["apply", off], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));

    // teardown removes hostd's table and no other.
    let o = ns.hostd(&["apply", full], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    let o = ns.hostd(&["teardown", "--dry-run"], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert!(
        stdout(&o).contains("firewall: remove table inet hostd"),
        "{}",
        text(&o)
    );
    assert_eq!(ns.tables(), ["table inet hostd", "table inet operator"]);
    let o = ns.hostd(&["teardown"], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    assert_eq!(ns.tables(), ["table inet operator"]);
    let o = ns.hostd(&["teardown"], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    assert_eq!(
        operator(),
        operator_before,
        "foreign table untouched throughout"
    );
}

#[test]
fn telemetry_section_errors_name_path_and_value() {
    let ns = Ns::new("t");
    let run = |name: &str, yaml: &str| {
        let f = ns.file(name, yaml);
        ns.hostd(
            &["telemetry", "run", f.to_str().expect("path"), "--no-pin"],
            &[],
        )
    };
    let o = run(
        "bad.yaml",
        "telemetry:\n  interfaces: [eth0]\n  header-bytes: 300\n  collectors: [{ address: 127.0.0.1 }]\n",
    );
    assert_eq!(code(&o), exit::INVALID, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("telemetry.header-bytes: must be in 1..=256 (value: 300)"),
        "{}",
        text(&o)
    );
    let o = run(
        "none.yaml",
        "interfaces:\n  - { name: eth0, type: ethernet }\n",
    );
    assert_eq!(code(&o), exit::INVALID, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no telemetry section"),
        "{}",
        text(&o)
    );
    // Not declared and not a NIC here: 4, for `telemetry run` and `plan`.
    let missing = "telemetry:\n  interfaces: [eth0, eth9]\n";
    let o = run("missing.yaml", missing);
    assert_eq!(code(&o), exit::CONFLICT, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "telemetry.interfaces[1]: not declared in interfaces and no such NIC on this host (value: eth9)"
        ),
        "{}",
        text(&o)
    );
    let f = ns.file("missing2.yaml", missing);
    let o = ns.hostd(&["plan", f.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::CONFLICT, "{}", text(&o));
    // Unknown field: 3 with its path.
    let o = run(
        "unknown.yaml",
        "telemetry:\n  interfaces: [eth0]\n  rate: 5\n",
    );
    assert_eq!(code(&o), exit::INVALID, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("telemetry.rate"),
        "{}",
        text(&o)
    );
    // `show` with nothing pinned: 11, saying where it looked.
    let o = ns.hostd(
        &["telemetry", "show", "--pin-dir", "/nonexistent/hostd-pins"],
        &[],
    );
    assert_eq!(code(&o), exit::TELEMETRY, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no pinned telemetry maps in /nonexistent/hostd-pins"),
        "{}",
        text(&o)
    );
}

/// `hostd import` end to end: an ifupdown file imported, the document
/// applied by `hostd apply` (and then a no-op), the kernel as the file says;
/// a refusal names file and line, exit 3.
#[test]
fn import_eni_then_apply() {
    let ns = Ns::new("imp");
    let src = ns.file(
        "interfaces",
        "auto lo\niface lo inet loopback\n\nauto eth1\niface eth1 inet static\n    address 10.1.0.2/24\n    dns-nameservers 10.0.0.53\n\nauto br0\niface br0 inet static\n    address 10.0.0.2\n    netmask 255.255.255.0\n    gateway 10.0.0.1\n    bridge_ports eth0\n    bridge_stp off\n    bridge_fd 0\n    bridge_maxwait 0\n",
    );
    let doc = ns.dir.join("imported.yaml");
    let o = ns.hostd(
        &[
            "import",
            "--from",
            "eni",
            src.to_str().expect("path"),
            "--output-file",
            doc.to_str().expect("path"),
        ],
        &[],
    );
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bridge-maxwait") && err.contains("forward delay"),
        "{err}"
    );
    let state = NetworkState::parse(&std::fs::read_to_string(&doc).expect("read")).expect("parse");
    assert_eq!(state.interfaces.len(), 3);
    let o = ns.hostd(&["apply", doc.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::CHANGED, "{}", text(&o));
    let o = ns.hostd(&["plan", doc.to_str().expect("path")], &[]);
    assert_eq!(code(&o), exit::NO_CHANGE, "{}", text(&o));
    let addrs = ns.ipv4();
    assert!(
        addrs.contains("inet 10.0.0.2/24") && addrs.contains("br0"),
        "{addrs}"
    );
    let routes = ns.ip(&["-n", &ns.name, "route", "show", "default"]);
    assert!(routes.contains("via 10.0.0.1 dev br0"), "{routes}");
    let master = ns.ip(&["-n", &ns.name, "link", "show", "eth0"]);
    assert!(master.contains("master br0"), "{master}");

    let bad = ns.file("bad", "auto eth0\niface eth0 inet dhcp\n");
    let o = ns.hostd(
        &["import", "--from", "eni", bad.to_str().expect("path")],
        &[],
    );
    assert_eq!(code(&o), exit::INVALID, "{}", text(&o));
    assert!(
        text(&o).contains("bad:line 2: iface \"dhcp\""),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty());
}
