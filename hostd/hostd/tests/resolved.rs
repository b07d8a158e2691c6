//! `dns-resolver` through a real systemd-resolved (root).
//!
//! The test re-executes itself under `unshare --mount --net`: a private
//! mount namespace (tmpfs on /run, a copy of /etc/resolv.conf bind-mounted
//! over it so the host's file cannot be touched) and a private network
//! namespace with a veth `h0`. In there it starts a private system bus
//! (`dbus-daemon` with its own config, the distribution's policy files
//! included) and `/lib/systemd/systemd-resolved`, then runs the `hostd`
//! binary against them. Missing prerequisites fail the test, naming them.
//!
//! Run: `cargo test -p hostd --test resolved`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hostd::cli::exit;

const INNER: &str = "HOSTD_RESOLVED_TEST_INNER";
const RESOLVED: &str = "/lib/systemd/systemd-resolved";
const BUS: &str = "unix:path=/run/dbus/system_bus_socket";
const DIR: &str = "/run/hostd-resolved-test";

const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
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
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
"#;

const STATE_A: &str = "
interfaces:
  - name: h0
    type: ethernet
    state: up
    ipv4: { address: [{ ip: 192.0.2.10, prefix-length: 24 }] }
routes:
  config:
    - { destination: 0.0.0.0/0, next-hop-address: 192.0.2.1, next-hop-interface: h0 }
dns-resolver:
  config: { server: [192.0.2.53, '2001:db8::53'], search: [example.test, lab.example] }
";

const DNS_B: &str = "
dns-resolver:
  config: { server: [203.0.113.53], search: [b.example] }
";

const FIREWALL: &str = "
firewall:
  management: { controllers: [192.0.2.1], channel_port: 7443 }
";

/// A process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", BUS)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e}"))
}

fn ok(prog: &str, args: &[&str]) -> String {
    let out = run(prog, args);
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hostd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = if env.iter().any(|(k, _)| k.starts_with("HOSTD_FAULT")) {
        env!("CARGO_BIN_EXE_hostd-fault")
    } else {
        env!("CARGO_BIN_EXE_hostd")
    };
    let mut c = Command::new(bin);
    c.args(["--state-file", &format!("{DIR}/owned.json")])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", BUS)
        .env_remove("HOSTD_RESOLV_CONF")
        .env_remove("HOSTD_FAULT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running hostd")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn file(name: &str, text: &str) -> String {
    let p = Path::new(DIR).join(name);
    std::fs::write(&p, text).expect("write state file");
    p.display().to_string()
}

/// `resolvectl dns h0` / `resolvectl domain h0`, without the `Link N (h0):` prefix.
fn link_dns() -> (String, String) {
    let strip = |s: String| {
        s.split_once("):")
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("unexpected resolvectl output: {s:?}"))
    };
    (
        strip(ok("resolvectl", &["--no-pager", "dns", "h0"])),
        strip(ok("resolvectl", &["--no-pager", "domain", "h0"])),
    )
}

fn check_prerequisites() {
    use std::os::unix::fs::MetadataExt as _;
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid());
    assert_eq!(
        euid.ok(),
        Some(0),
        "this test needs root (network and mount namespaces)"
    );
    for (p, what) in [
        (
            RESOLVED,
            "systemd-resolved (Debian package systemd-resolved)",
        ),
        (
            "/usr/bin/resolvectl",
            "resolvectl (package systemd-resolved)",
        ),
        ("/usr/bin/dbus-daemon", "dbus-daemon (package dbus-daemon)"),
        ("/usr/bin/unshare", "unshare (package util-linux)"),
        (
            "/usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf",
            "resolved's D-Bus policy (package systemd-resolved)",
        ),
    ] {
        assert!(Path::new(p).exists(), "missing prerequisite {p}: {what}");
    }
    for prog in ["ip", "nft", "mount"] {
        let found = Command::new(prog)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(found, "missing prerequisite {prog} (not on PATH)");
    }
}

#[test]
fn resolved_per_link_dns() {
    if std::env::var_os(INNER).is_none() {
        check_prerequisites();
        let exe = std::env::current_exe().expect("test executable");
        let status = Command::new("unshare")
            .args(["--mount", "--net", "--propagation", "private", "--"])
            .arg(exe)
            .args([
                "--exact",
                "resolved_per_link_dns",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER, "1")
            .status()
            .expect("running unshare");
        assert!(status.success(), "inner test run failed: {status}");
        return;
    }
    inner();
}

fn inner() {
    // Private /run (bus socket, resolved's runtime files); the host's
    // /etc/resolv.conf shadowed by a copy nobody may replace.
    ok("mount", &["-t", "tmpfs", "tmpfs", "/run"]);
    for d in ["/run/dbus", "/run/systemd", DIR] {
        std::fs::create_dir_all(d).expect("mkdir under /run");
    }
    let resolv_copy = PathBuf::from(DIR).join("etc-resolv.conf");
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(&resolv_copy, &host_resolv).expect("copy resolv.conf");
    ok(
        "mount",
        &[
            "--bind",
            &resolv_copy.display().to_string(),
            "/etc/resolv.conf",
        ],
    );

    for l in [
        "link set lo up",
        "link add h0 type veth peer name p0",
        "link set p0 up",
    ] {
        ok("ip", &l.split(' ').collect::<Vec<_>>());
    }

    // The bus, in the foreground: ready once it prints its address.
    let conf = file("bus.conf", BUS_CONFIG);
    let mut bus = Command::new("dbus-daemon")
        .args([
            &format!("--config-file={conf}"),
            "--nofork",
            "--print-address=1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting dbus-daemon");
    let stdout = bus.stdout.take().expect("dbus-daemon stdout");
    let bus = Proc(bus);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the bus address");
    assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");

    let log_path = PathBuf::from(DIR).join("resolved.log");
    let log = std::fs::File::create(&log_path).expect("resolved log");
    let resolved = Command::new(RESOLVED)
        .env("DBUS_SYSTEM_BUS_ADDRESS", BUS)
        .env("SYSTEMD_LOG_TARGET", "console")
        .env("SYSTEMD_LOG_LEVEL", "info")
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("starting systemd-resolved");
    let resolved = Proc(resolved);
    let resolved_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = Instant::now();
    while !run("resolvectl", &["--no-pager", "status"])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "systemd-resolved did not come up on the private bus:\n{}",
            resolved_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Values someone else set on the link before hostd: what a rollback restores.
    ok("resolvectl", &["dns", "h0", "198.51.100.1"]);
    ok("resolvectl", &["domain", "h0", "old.example"]);
    assert_eq!(
        link_dns(),
        ("198.51.100.1".to_owned(), "old.example".to_owned())
    );

    // Bad input: DNS but no link to carry it. Refused, naming the field; nothing changes.
    let bad = file(
        "bad.yaml",
        "interfaces: [{ name: h0, type: ethernet, state: up }]\n\
         dns-resolver: { config: { server: [192.0.2.99] } }\n",
    );
    let out = hostd(&["apply", &bad], &[]);
    assert_eq!(code(&out), exit::INVALID, "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dns-resolver") && err.contains("192.0.2.99"),
        "{}",
        show(&out)
    );
    assert_eq!(
        link_dns(),
        ("198.51.100.1".to_owned(), "old.example".to_owned())
    );
    assert!(
        !ok("ip", &["-o", "link", "show", "h0"]).contains(",UP"),
        "h0 was set up by a refused apply"
    );

    // Apply: the servers and domains land on h0 (the default route's link).
    let a = file("a.yaml", STATE_A);
    let out = hostd(&["apply", &a], &[]);
    assert_eq!(code(&out), exit::CHANGED, "{}", show(&out));
    assert_eq!(
        link_dns(),
        (
            "192.0.2.53 2001:db8::53".to_owned(),
            "example.test lab.example".to_owned()
        )
    );
    assert!(
        resolved_log().contains("h0: Bus client set DNS server list to: 192.0.2.53, 2001:db8::53"),
        "{}",
        resolved_log()
    );

    // Idempotent: a second plan and apply do nothing.
    let out = hostd(&["-o", "json", "plan", &a], &[]);
    assert_eq!(code(&out), exit::NO_CHANGE, "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    assert_eq!(plan["ops"], serde_json::json!([]), "{}", show(&out));
    let out = hostd(&["apply", &a], &[]);
    assert_eq!(code(&out), exit::NO_CHANGE, "{}", show(&out));

    // A failure after the DNS step (the firewall step) restores the previous values.
    let base = STATE_A.split("dns-resolver:").next().expect("state text");
    let b_fw = file("b-fw.yaml", &format!("{base}{DNS_B}{FIREWALL}"));
    let out = hostd(&["-o", "json", "plan", &b_fw], &[]);
    assert_eq!(code(&out), exit::CHANGED, "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    let ops = plan["ops"].as_array().expect("ops");
    assert_eq!(ops.len(), 1, "{}", show(&out));
    assert_eq!(ops[0]["op"], "write-dns", "{}", show(&out));
    assert_eq!(plan["firewall"]["action"], "create", "{}", show(&out));
    let out = hostd(&["apply", &b_fw], &[("HOSTD_FAULT", "2")]);
    assert_eq!(code(&out), exit::ROLLED_BACK, "{}", show(&out));
    assert!(
        resolved_log().contains("h0: Bus client set DNS server list to: 203.0.113.53"),
        "the DNS step did not run before the injected failure:\n{}",
        resolved_log()
    );
    assert_eq!(
        link_dns(),
        (
            "192.0.2.53 2001:db8::53".to_owned(),
            "example.test lab.example".to_owned()
        ),
        "rollback did not restore h0's DNS"
    );
    assert!(
        !ok("nft", &["list", "tables"]).contains("hostd"),
        "the firewall table stayed after the rollback"
    );

    // `--resolv-conf` given explicitly: the file, and resolved is left alone.
    let b = file("b.yaml", &format!("{base}{DNS_B}"));
    let written = format!("{DIR}/resolv.conf");
    let out = hostd(&["--resolv-conf", &written, "apply", &b], &[]);
    assert_eq!(code(&out), exit::CHANGED, "{}", show(&out));
    let text = std::fs::read_to_string(&written).expect("resolv.conf written");
    assert!(
        text.contains("nameserver 203.0.113.53") && text.contains("search b.example"),
        "{text}"
    );
    assert_eq!(
        link_dns(),
        (
            "192.0.2.53 2001:db8::53".to_owned(),
            "example.test lab.example".to_owned()
        )
    );

    // Through resolved again: the new values replace the old ones on h0.
    let out = hostd(&["apply", &b], &[]);
    assert_eq!(code(&out), exit::CHANGED, "{}", show(&out));
    assert_eq!(
        link_dns(),
        ("203.0.113.53".to_owned(), "b.example".to_owned())
    );

    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        host_resolv,
        "/etc/resolv.conf changed"
    );
    drop(resolved);
    drop(bus);
}
