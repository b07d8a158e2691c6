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
        c.args(["netns", "exec", &self.name, env!("CARGO_BIN_EXE_hostd")]);
        c.args(args);
        c.env("HOSTD_STATE_FILE", self.dir.join("owned.json"));
        c.env("HOSTD_RESOLV_CONF", self.dir.join("resolv.conf"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run hostd")
    }

    /// Links, addresses and routes, for before/after comparisons.
    fn state(&self) -> String {
        let mut s = self.ip(&["-n", &self.name, "-d", "link", "show"]);
        s.push_str(&self.ip(&["-n", &self.name, "addr", "show"]));
        s.push_str(&self.ip(&["-n", &self.name, "route", "show", "table", "all"]));
        s
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
    let o = ns.hostd(&["apply", d], &[("HOSTD_FAIL_AT_STEP", "3")]);
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

#[test]
fn usage_error_is_clap_code() {
    let o = Command::new(env!("CARGO_BIN_EXE_hostd"))
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(code(&o), exit::USAGE);
}
