//! One document, one pipeline (root): kernel objects and OVS entries in the
//! same `NetworkState`, planned, applied, verified, rolled back and torn down
//! by the engine, against a private ovsdb-server + ovs-vswitchd (dummy
//! datapath: no kernel module, so no OVS netdevs here; addresses on internal
//! ports and kernel VLANs on them run in the VM: tests/tests/kernel_ovs.rs)
//! and a private network namespace with veth NICs.

use std::{path::PathBuf, process::Command};

use hostd::{
    apply::Fault,
    engine::{self, ApplyOptions, Config, DnsBackend, Error},
};
use hostd_core::{ovs::OvsObserved, NetworkState};
use hostd_ovsdb::sandbox::Sandbox;

fn in_fresh_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "{cmd}: {st}");
}

fn config(tag: &str, socket: PathBuf) -> Config {
    let dir = std::env::temp_dir().join(format!("hostd-ovs-pipe-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut cfg = Config {
        state_file: dir.join("owned.json"),
        resolv_conf: dir.join("resolv.conf"),
        dns_backend: DnsBackend::File,
        ovs_db_socket: socket,
        ..Config::default()
    };
    cfg.ovs.step_timeout = std::time::Duration::from_secs(30);
    cfg
}

const DOC: &str = r#"
interfaces:
  - name: eth0
    type: ethernet
    ipv4: { address: [{ ip: 192.0.2.1, prefix-length: 24 }] }
  - name: eth1
    type: ethernet
  - name: lbr0
    type: linux-bridge
    bridge: { port: [{ name: eth1 }] }
    ipv4: { address: [{ ip: 198.51.100.1, prefix-length: 24 }] }
  - name: br0
    type: ovs-bridge
    bridge:
      options: { datapath: dummy, fail-mode: standalone }
      port:
        - name: bond0
          link-aggregation:
            mode: balance-slb
            port: [{ name: d1 }, { name: d2 }]
        - name: mgmt0
          vlan: { mode: access, tag: 200 }
        - name: patch-a
  - name: br1
    type: ovs-bridge
    bridge:
      options: { datapath: dummy }
      port: [{ name: patch-b }]
  - name: br100
    type: ovs-bridge
    bridge: { parent: br0, tag: 100, port: [{ name: vm1 }] }
  - name: mgmt0
    type: ovs-interface
    mtu: 1500
  - name: patch-a
    type: ovs-interface
    patch: { peer: patch-b }
  - name: patch-b
    type: ovs-interface
    patch: { peer: patch-a }
routes:
  config:
    - { destination: 203.0.113.0/24, next-hop-address: 192.0.2.254 }
"#;

fn kernel_now(cfg: &Config) -> NetworkState {
    engine::show(cfg).expect("observe").to_state()
}

fn ovs_now(cfg: &Config) -> OvsObserved {
    engine::show_ovs(cfg)
        .expect("ovsdb")
        .expect("socket exists")
        .config_view()
}

#[test]
fn mixed_document_plan_apply_rollback_teardown() {
    let sb = Sandbox::start(true).expect("private OVS (openvswitch-switch installed?)");
    // Foreign rows: OpenStack's bridge, libvirt's vnet on a bridge of ours
    // is added after the first apply.
    sb.vsctl(&[
        "add-br",
        "br-int",
        "--",
        "set",
        "Bridge",
        "br-int",
        "datapath_type=dummy",
    ])
    .expect("foreign bridge");
    let cfg = config("mixed", sb.db_socket());
    let desired = NetworkState::parse(DOC).expect("document");
    in_fresh_netns(|| {
        sh("ip link set lo up && ip link add eth0 type veth peer name p0 && ip link add eth1 type veth peer name p1 && ip link set p0 up && ip link set p1 up");
        let k0 = kernel_now(&cfg);
        let o0 = ovs_now(&cfg);

        // The plan: kernel operations and OVS steps, numbered in order.
        let p = engine::plan_only(&cfg, &desired).expect("plan");
        let stages = p.ovs.clone().expect("OVS stages");
        assert_eq!(stages.steps.len(), 2, "one step per bridge:\n{p}");
        assert!(stages.remove.is_none(), "{p}");
        let text = p.to_string();
        assert!(
            text.contains(". ovs: bridge br0 (one transaction)"),
            "{text}"
        );
        assert!(text.contains("create bridge lbr0"), "{text}");
        // Addresses and routes come after the OVS steps.
        let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in {text}"));
        assert!(
            pos("ovs: bridge br1") < pos("add address 192.0.2.1/24 to eth0"),
            "{text}"
        );
        assert!(pos("create bridge lbr0") < pos("ovs: bridge br0"), "{text}");
        let steps = p.steps();
        assert_eq!(steps, p.ops.len() + 2);

        // Rollback at every step restores both sides exactly.
        for n in 1..=steps {
            let e = engine::apply(
                &cfg,
                &desired,
                ApplyOptions {
                    fault: Some(Fault::StopBefore(n)),
                    ..ApplyOptions::default()
                },
            )
            .expect_err("injected");
            assert!(matches!(e, Error::RolledBack { .. }), "step {n}: {e}");
            assert_eq!(
                kernel_now(&cfg),
                k0,
                "kernel after rollback at step {n}: {e}"
            );
            assert_eq!(ovs_now(&cfg), o0, "OVS after rollback at step {n}: {e}");
        }

        // Apply, verify, idempotent.
        let r = engine::apply(&cfg, &desired, ApplyOptions::default()).expect("apply");
        assert!(r.executed && r.plan.ovs_steps() == 2, "{}", r.plan);
        let again = engine::plan_only(&cfg, &desired).expect("re-plan");
        assert!(again.is_empty(), "not idempotent:\n{again}");
        let k1 = kernel_now(&cfg);
        let lbr0 = k1.interface("lbr0").expect("lbr0");
        assert!(lbr0.bridge.is_some());
        let list = sb.vsctl(&["list-br"]).expect("list-br");
        assert_eq!(
            list.split_whitespace().collect::<Vec<_>>(),
            ["br-int", "br0", "br1", "br100"]
        );
        assert_eq!(
            sb.vsctl(&["br-to-vlan", "br100"]).expect("vlan").trim(),
            "100"
        );
        assert_eq!(
            sb.vsctl(&["get", "Port", "mgmt0", "tag"])
                .expect("tag")
                .trim(),
            "200"
        );

        // show: the OVS entries beside the kernel ones.
        let mut shown = k1.clone();
        let o1 = engine::show_ovs(&cfg).expect("ovs").expect("some");
        hostd_core::ovs::doc::merge_into_shown(&mut shown, &o1);
        let br0 = shown.interface("br0").expect("br0 shown");
        assert_eq!(br0.kind, hostd_core::schema::InterfaceType::OvsBridge);
        let ports: Vec<&str> = br0
            .ovs_bridge
            .as_ref()
            .expect("ovs bridge")
            .port
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(ports, ["bond0", "mgmt0", "patch-a"]);
        let br100 = shown.interface("br100").expect("fake bridge shown");
        let fb = br100.ovs_bridge.as_ref().expect("ovs bridge");
        assert_eq!(fb.parent.as_ref().map(|p| p.as_str()), Some("br0"));
        assert_eq!(
            fb.port.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["vm1"]
        );
        assert!(shown.interface("br-int").is_some(), "foreign bridge shown");
        let y = serde_norway::to_string(&shown).expect("yaml");
        NetworkState::parse(&y).expect("show output parses back");

        // A failure in the last kernel stage (the route) after both OVS
        // steps changed something: change the document, fail at the end.
        sb.vsctl(&[
            "add-port",
            "br0",
            "vnet0",
            "--",
            "set",
            "Interface",
            "vnet0",
            "type=internal",
        ])
        .expect("libvirt's vnet on our bridge");
        let o_before = ovs_now(&cfg);
        let k_before = kernel_now(&cfg);
        let changed = DOC
            .replace("tag: 200", "tag: 201")
            .replace("203.0.113.0/24", "203.0.113.0/25")
            .replace(
                "port: [{ name: patch-b }]",
                "port: [{ name: patch-b }, { name: d3 }]",
            );
        let changed = NetworkState::parse(&changed).expect("changed");
        let p2 = engine::plan_only(&cfg, &changed).expect("plan 2");
        let last = p2.steps();
        let e = engine::apply(
            &cfg,
            &changed,
            ApplyOptions {
                fault: Some(Fault::StopBefore(last)),
                ..ApplyOptions::default()
            },
        )
        .expect_err("injected at the last step");
        assert!(matches!(e, Error::RolledBack { .. }), "{e}");
        assert_eq!(ovs_now(&cfg), o_before, "OVS after late rollback");
        assert_eq!(kernel_now(&cfg), k_before, "kernel after late rollback");
        engine::apply(&cfg, &changed, ApplyOptions::default()).expect("apply changed");
        assert_eq!(
            sb.vsctl(&["get", "Port", "mgmt0", "tag"])
                .expect("tag")
                .trim(),
            "201"
        );

        // Teardown: every OVS row hostd made goes; libvirt's vnet0 keeps
        // br0 alive (refused: nothing touched), removed, then teardown runs.
        let e = engine::teardown(&cfg, ApplyOptions::default()).expect_err("foreign port on br0");
        assert!(e.to_string().contains("vnet0"), "{e}");
        sb.vsctl(&["del-port", "br0", "vnet0"]).expect("del vnet0");
        engine::teardown(&cfg, ApplyOptions::default()).expect("teardown");
        assert_eq!(
            sb.vsctl(&["list-br"])
                .expect("list-br")
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["br-int"]
        );
        let k2 = kernel_now(&cfg);
        assert!(k2.interface("lbr0").is_none(), "lbr0 removed");
    });
}

#[test]
fn no_ovs_entries_never_read_ovsdb_and_missing_ovsdb_touches_nothing() {
    // A socket path that does not exist: a kernel-only document works.
    let cfg = config("none", PathBuf::from("/nonexistent/hostd-test/db.sock"));
    let kernel_only = NetworkState::parse(
        "interfaces:\n  - name: eth0\n    type: ethernet\n    ipv4: { address: [{ ip: 192.0.2.1, prefix-length: 24 }] }\n",
    )
    .expect("doc");
    let desired = NetworkState::parse(DOC).expect("document");
    in_fresh_netns(|| {
        sh("ip link set lo up && ip link add eth0 type veth peer name p0 && ip link add eth1 type veth peer name p1");
        let r = engine::apply(&cfg, &kernel_only, ApplyOptions::default()).expect("apply");
        assert!(r.executed && r.plan.ovs.is_none());
        assert!(engine::show_ovs(&cfg).expect("no socket").is_none());
        let k0 = kernel_now(&cfg);
        let e = engine::apply(&cfg, &desired, ApplyOptions::default()).expect_err("no ovsdb");
        assert!(matches!(e, Error::Ovs(_)), "{e}");
        assert!(e.to_string().contains("does not answer"), "{e}");
        assert_eq!(kernel_now(&cfg), k0, "nothing touched");
        engine::teardown(&cfg, ApplyOptions::default()).expect("teardown without OVS");
    });
}
