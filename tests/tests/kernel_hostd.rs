//! hostd in the lab: the examples applied to servers cabled to switches
//! (LACP, VLAN traffic to the right peer and no other, active-backup
//! failover), moves between examples, rollback after a failure injected at
//! each step, bad input changing nothing, and foreign state left alone.
//!
//! hostd runs in-process: the library's engine is called on a thread inside
//! the server's namespace (`NetNs::enter`). Needs bonding, 802.1Q and bridge
//! VLAN filtering: on a kernel without them the VM runner boots Debian's.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use hostd::engine::{self, ApplyOptions, Config, Error, Report};
use hostd_core::{model::Observed, NetworkState};
use lab::{
    bonding::wait_lacp,
    kernel::{self, Feature},
    spec::{LagSpec, NicSpec, PortRef, PortSpec, ServerSpec, SwitchSpec, VlanMembership},
    traffic::{ping, reachable, Pinger},
    wait::scaled,
    wait_until, NetNs, Rack, RackSpec,
};
use serde_json::Value;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hostd/examples");

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(EXAMPLES).join(name))
        .unwrap_or_else(|e| panic!("example {name}: {e}"))
}

/// A private state directory per test.
fn config(tag: &str) -> (Config, PathBuf) {
    let dir = std::env::temp_dir().join(format!("hostd-lab-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    let cfg = Config {
        state_file: dir.join("owned.json"),
        resolv_conf: dir.join("resolv.conf"),
        verify_attempts: 60,
        ..Config::default()
    };
    (cfg, dir)
}

fn parse(yaml: &str) -> NetworkState {
    NetworkState::parse(yaml).unwrap_or_else(|e| panic!("desired state: {e}"))
}

fn try_apply(
    ns: &NetNs,
    cfg: &Config,
    desired: &NetworkState,
    fail_at_step: Option<usize>,
) -> Result<Report, Error> {
    ns.enter(|| {
        engine::apply(
            cfg,
            desired,
            ApplyOptions {
                fail_at_step,
                ..Default::default()
            },
        )
    })
}

#[track_caller]
fn apply(ns: &NetNs, cfg: &Config, yaml: &str) -> Report {
    let d = parse(yaml);
    let r = try_apply(ns, cfg, &d, None).unwrap_or_else(|e| panic!("apply in {}: {e}", ns.name()));
    println!(
        "applied {} ops in {:?}:\n{}",
        r.plan.ops.len(),
        r.elapsed,
        r.plan
    );
    // Idempotent: the same state again plans nothing.
    let again = ns
        .enter(|| engine::plan_only(cfg, &d))
        .unwrap_or_else(|e| panic!("re-plan: {e}"));
    assert!(again.is_empty(), "second plan is not empty:\n{again}");
    r
}

fn observe(ns: &NetNs, cfg: &Config) -> Observed {
    ns.enter(|| engine::show(cfg)).expect("observe")
}

/// Netlink state of a namespace as JSON (links with details, addresses,
/// routes of both families in all tables, bridge VLANs), without counters
/// and timers. `loose` also drops what a recreated link cannot keep
/// (ifindex, MAC-derived values, link-local addresses) and LACP/MII status.
fn snapshot(ns: &NetNs, loose: bool) -> Value {
    let j = |s: String| -> Value { serde_json::from_str(&s).unwrap_or(Value::Null) };
    let mut v = serde_json::json!({
        "link": j(ns.ip(&["-d", "-j", "link", "show"])),
        "addr": j(ns.ip(&["-j", "addr", "show"])),
        "route4": j(ns.ip(&["-4", "-j", "route", "show", "table", "all"])),
        "route6": j(ns.ip(&["-6", "-j", "route", "show", "table", "all"])),
        "vlan": j(ns.run(&["bridge", "-j", "vlan", "show"])),
    });
    let always = [
        "hello_timer",
        "tcn_timer",
        "topology_change_timer",
        "gc_timer",
        "valid_life_time",
        "preferred_life_time",
        "mcast_router",
        "ad_info",
        "ad_aggregator_id",
        "ad_actor_oper_port_state",
        "ad_actor_oper_port_state_str",
        "ad_partner_oper_port_state",
        "ad_partner_oper_port_state_str",
        "link_failure_count",
        "mii_status",
        "active_slave",
        "state",
        "operstate",
        "linkdown",
    ];
    let loose_keys = [
        "ifindex",
        "link_index",
        "address",
        "perm_address",
        "broadcast",
        "bridge_id",
        "root_id",
        "designated_root",
        "perm_hwaddr",
        "ad_actor_system",
        "no_linklocal_learn",
        // A NIC brought up for the first time gets its default qdisc for good.
        "qdisc",
        "inet6_addr_gen_mode",
        "id",
    ];
    fn strip(v: &mut Value, keys: &[&str], loose: bool) {
        match v {
            Value::Object(m) => {
                for k in keys {
                    m.remove(*k);
                }
                // Bridge and port timers run on their own.
                m.retain(|k, _| !k.ends_with("_timer"));
                if let Some(Value::Array(flags)) = m.get_mut("flags") {
                    flags.retain(|f| {
                        !matches!(
                            f.as_str(),
                            Some("LOWER_UP" | "NO-CARRIER" | "M-DOWN" | "linkdown")
                        )
                    });
                }
                if loose {
                    if let Some(Value::Array(a)) = m.get_mut("addr_info") {
                        a.retain(|x| x.get("scope").and_then(Value::as_str) != Some("link"));
                    }
                }
                for (_, x) in m.iter_mut() {
                    strip(x, keys, loose);
                }
            }
            Value::Array(a) => {
                for x in a.iter_mut() {
                    strip(x, keys, loose);
                }
                if loose {
                    // Without ifindexes, order by content.
                    a.sort_by_key(|x| x.to_string());
                }
            }
            _ => {}
        }
    }
    let mut keys: Vec<&str> = always.to_vec();
    if loose {
        keys.extend(loose_keys);
    }
    strip(&mut v, &keys, loose);
    v
}

fn diff(a: &Value, b: &Value) -> String {
    let a = serde_json::to_string_pretty(a).unwrap_or_default();
    let b = serde_json::to_string_pretty(b).unwrap_or_default();
    let al: Vec<&str> = a.lines().collect();
    let bl: Vec<&str> = b.lines().collect();
    let mut out = String::new();
    for (i, (x, y)) in al.iter().zip(bl.iter()).enumerate() {
        if x != y {
            out.push_str(&format!("line {i}: {x}  |  {y}\n"));
            if out.len() > 2000 {
                break;
            }
        }
    }
    if al.len() != bl.len() {
        out.push_str(&format!("({} vs {} lines)\n", al.len(), bl.len()));
    }
    out
}

/// A server with `n` NICs eth0.. whose peers sit in a second namespace (up),
/// plus foreign state hostd must leave alone: a veth `keep0` with an
/// address and a route, and an unrelated bridge `keepbr`.
fn simple_server(n: usize) -> (NetNs, NetNs) {
    let srv = NetNs::new("srv").expect("netns");
    let peer = NetNs::new("peer").expect("netns");
    let mut lines = Vec::new();
    for i in 0..n {
        lines.push(format!(
            "link add eth{i} type veth peer name p{i} netns {}",
            peer.name()
        ));
    }
    lines.push("link add keep0 type veth peer name keep1".into());
    lines.push("link add keepbr type bridge".into());
    lines.push("link set keep1 master keepbr".into());
    lines.push("addr add 203.0.113.1/24 dev keep0".into());
    lines.push("link set keep0 up".into());
    lines.push("link set keep1 up".into());
    lines.push("route add 203.0.114.0/24 via 203.0.113.254 dev keep0".into());
    srv.ip_batch(&lines).expect("server links");
    let up: Vec<String> = (0..n).map(|i| format!("link set p{i} up")).collect();
    peer.ip_batch(&up).expect("peer links up");
    (srv, peer)
}

/// Waits until IPv6 duplicate address detection has finished on every
/// address of `ns`: the kernel then changes the address flags and adds local
/// routes on its own, which a snapshot taken earlier would blame on hostd.
fn wait_dad(ns: &NetNs) {
    wait_until("IPv6 DAD finished", scaled(Duration::from_secs(30)), || {
        ns.ip(&["-6", "addr", "show", "tentative"])
            .trim()
            .is_empty()
    });
}

/// The foreign objects of [`simple_server`], strictly.
fn foreign(ns: &NetNs) -> String {
    let mut s = ns.ip(&["-d", "-j", "link", "show", "keep0"]);
    s.push_str(&ns.ip(&["-d", "-j", "link", "show", "keep1"]));
    s.push_str(&ns.ip(&["-j", "addr", "show", "keep0"]));
    s.push_str(&ns.ip(&["-j", "route", "show", "203.0.114.0/24"]));
    s.push_str(
        &ns.ip(&["-d", "-j", "link", "show", "keepbr"])
            .replace(|c: char| c.is_ascii_digit(), ""),
    );
    s
}

const NEEDS: &[Feature] = &[
    Feature::Bonding,
    Feature::Vlan8021q,
    Feature::BridgeVlanFiltering,
    Feature::Veth,
];

/// CloudStack: two active-backup bonds, management on cloudbr0 (untagged),
/// storage on VLAN 100; traffic reaches the peer on both; a cable pull on
/// the active port fails over with little loss; teardown leaves NICs down.
#[test]
fn cloudstack_example_traffic_failover_teardown() {
    kernel::require(NEEDS);
    let trunk = VlanMembership {
        access: Some(10),
        tagged: vec![100],
    };
    let spec = RackSpec {
        switches: vec![SwitchSpec {
            name: "sw1".into(),
            ports: vec![
                PortSpec::new("Ethernet1", trunk.clone()),
                PortSpec::new("Ethernet2", trunk.clone()),
                PortSpec::new("Ethernet3", VlanMembership::access(20)),
                PortSpec::new("Ethernet4", VlanMembership::access(20)),
                PortSpec::new("Ethernet9", trunk.clone()),
            ],
            lags: vec![],
            lldp: false,
        }],
        pairs: vec![],
        servers: vec![
            ServerSpec::new(
                "kvm1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                    NicSpec::cabled("eth1", "sw1", "Ethernet2"),
                    NicSpec::cabled("eth2", "sw1", "Ethernet3"),
                    NicSpec::cabled("eth3", "sw1", "Ethernet4"),
                ],
            ),
            ServerSpec::new("peer", vec![NicSpec::cabled("eth0", "sw1", "Ethernet9")]),
        ],
    };
    let rack = Rack::build(spec).expect("rack");
    let kvm = rack.server("kvm1");
    let peer = rack.server("peer");
    peer.ip_batch(&[
        "link set eth0 up".into(),
        "addr add 192.0.2.1/24 dev eth0".into(),
        "link add link eth0 name eth0.100 type vlan id 100".into(),
        "addr add 198.51.100.20/24 dev eth0.100".into(),
        "link set eth0.100 up".into(),
    ])
    .expect("peer addresses");
    let (cfg, _dir) = config("cloudstack");
    apply(kvm, &cfg, &example("cloudstack.yaml"));

    let obs = observe(kvm, &cfg);
    for (l, ctrl) in [
        ("eth0", "bond0"),
        ("eth1", "bond0"),
        ("eth2", "bond1"),
        ("eth3", "bond1"),
        ("bond0", "cloudbr0"),
        ("bond1", "cloudbr1"),
        ("bond0.100", "cloudbr100"),
    ] {
        let link = obs.link(l).unwrap_or_else(|| panic!("{l} exists"));
        assert_eq!(
            link.controller.as_ref().map(|c| c.as_str()),
            Some(ctrl),
            "{l} is a port of {ctrl}"
        );
    }
    let resolv = std::fs::read_to_string(&cfg.resolv_conf).expect("resolv.conf written");
    assert!(
        resolv.contains("nameserver 192.0.2.53") && resolv.contains("search cloud.example"),
        "{resolv}"
    );

    // Management (untagged on the switch's VLAN 10) and storage (VLAN 100).
    wait_until(
        "management path to 192.0.2.1",
        scaled(Duration::from_secs(30)),
        || reachable(kvm, "192.0.2.1"),
    );
    wait_until(
        "storage path to 198.51.100.20",
        scaled(Duration::from_secs(30)),
        || reachable(kvm, "198.51.100.20"),
    );
    let route = kvm.ip(&["route", "show", "default"]);
    assert!(
        route.contains("via 192.0.2.1 dev cloudbr0"),
        "default route: {route}"
    );

    // Failover: pull the active port's cable while pinging.
    let pinger = Pinger::start(kvm, "192.0.2.1", Duration::from_millis(50)).expect("pinger");
    std::thread::sleep(scaled(Duration::from_millis(500)));
    rack.pull_cable("kvm1", "eth0");
    std::thread::sleep(scaled(Duration::from_secs(2)));
    let (stats, took) = pinger.stop().expect("pinger stats");
    println!(
        "active-backup failover on cable pull: {} of {} lost over {took:?} ({:.1}%)",
        stats.lost(),
        stats.transmitted,
        stats.loss() * 100.0
    );
    assert!(
        stats.received > 0,
        "traffic continued after the pull: {stats:?}"
    );
    assert!(
        reachable(kvm, "192.0.2.1"),
        "management reachable on the backup port"
    );
    rack.restore_cable("kvm1", "eth0");

    // Teardown: hostd's links gone, NICs down without addresses.
    let r = kvm
        .enter(|| engine::teardown(&cfg, ApplyOptions::default()))
        .expect("teardown");
    println!("teardown: {} ops", r.plan.ops.len());
    let obs = observe(kvm, &cfg);
    for gone in [
        "bond0",
        "bond1",
        "bond0.100",
        "cloudbr0",
        "cloudbr1",
        "cloudbr100",
    ] {
        assert!(obs.link(gone).is_none(), "{gone} removed by teardown");
    }
    for n in ["eth0", "eth1", "eth2", "eth3"] {
        let l = obs.link(n).expect("NIC kept");
        assert!(
            !l.up && l.addresses.is_empty() && l.controller.is_none(),
            "{n} left down and unconfigured: {l:?}"
        );
    }
}

/// Oracle VM: 802.3ad with the switch LAG; VLANs 50, 51, 100 each in its own
/// bridge. Traffic on each VLAN reaches its peer and not the others.
#[test]
fn oraclevm_example_lacp_and_vlan_isolation() {
    kernel::require(NEEDS);
    let spec = RackSpec {
        switches: vec![SwitchSpec {
            name: "sw1".into(),
            ports: vec![
                PortSpec::new("Ethernet5", VlanMembership::access(50)),
                PortSpec::new("Ethernet6", VlanMembership::access(51)),
                PortSpec::new("Ethernet7", VlanMembership::access(100)),
            ],
            lags: vec![LagSpec {
                name: "Po1".into(),
                members: vec![
                    PortRef::new("sw1", "Ethernet1"),
                    PortRef::new("sw1", "Ethernet2"),
                ],
                vlans: VlanMembership::trunk([50, 51, 100]),
                lacp_rate: "fast".into(),
                mode: Default::default(),
            }],
            lldp: false,
        }],
        pairs: vec![],
        servers: vec![
            ServerSpec::new(
                "ovm1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                    NicSpec::cabled("eth1", "sw1", "Ethernet2"),
                ],
            ),
            ServerSpec::new("p50", vec![NicSpec::cabled("eth0", "sw1", "Ethernet5")]),
            ServerSpec::new("p51", vec![NicSpec::cabled("eth0", "sw1", "Ethernet6")]),
            ServerSpec::new("p100", vec![NicSpec::cabled("eth0", "sw1", "Ethernet7")]),
        ],
    };
    let rack = Rack::build(spec).expect("rack");
    // p50 and p51 use the same subnet: only the VLAN separates them.
    for (s, a) in [
        ("p50", "10.9.0.50/24"),
        ("p51", "10.9.0.51/24"),
        ("p100", "10.100.0.1/24"),
    ] {
        rack.server(s)
            .ip_batch(&["link set eth0 up".into(), format!("addr add {a} dev eth0")])
            .expect("peer");
    }
    let ovm = rack.server("ovm1");
    let (cfg, _dir) = config("oraclevm");
    // The example, plus a test address on vlan50's bridge.
    let yaml = example("oraclevm.yaml").replace(
        "    bridge: { port: [{ name: bond0.50 }] }",
        "    bridge: { port: [{ name: bond0.50 }] }\n    ipv4: { address: [{ ip: 10.9.0.10, prefix-length: 24 }] }",
    );
    assert!(yaml.contains("10.9.0.10"), "test address inserted");
    apply(ovm, &cfg, &yaml);
    let status = wait_lacp(
        ovm,
        "bond0",
        &rack.switch_system_mac("sw1"),
        scaled(Duration::from_secs(60)),
    );
    println!("bond0: {}", status.summary());

    wait_until(
        "VLAN 100 to the gateway",
        scaled(Duration::from_secs(30)),
        || reachable(ovm, "10.100.0.1"),
    );
    wait_until(
        "VLAN 50 to its peer",
        scaled(Duration::from_secs(30)),
        || reachable(ovm, "10.9.0.50"),
    );
    let other = ping(ovm, "10.9.0.51", 3, Duration::from_millis(200), None).expect("ping");
    assert_eq!(
        other.received, 0,
        "VLAN 50 must not reach the VLAN 51 peer: {other:?}"
    );
    let route = ovm.ip(&["route", "show", "default"]);
    assert!(route.contains("via 10.100.0.1"), "default route: {route}");
}

/// Trunk: 802.3ad bond, MTU 9000, 1000 VLANs into one VLAN-aware bridge. A
/// VM port (not hostd's) on VLAN 600 reaches its peer through the trunk,
/// and re-applying leaves that port alone.
#[test]
fn trunk_example_1000_vlans_vm_port_traffic() {
    kernel::require(NEEDS);
    let spec = RackSpec {
        switches: vec![SwitchSpec {
            name: "sw1".into(),
            ports: vec![
                PortSpec::new("Ethernet5", VlanMembership::access(600)),
                PortSpec::new("Ethernet6", VlanMembership::access(601)),
            ],
            lags: vec![LagSpec {
                name: "Po1".into(),
                members: vec![
                    PortRef::new("sw1", "Ethernet1"),
                    PortRef::new("sw1", "Ethernet2"),
                ],
                vlans: VlanMembership::trunk(100..=1099),
                lacp_rate: "fast".into(),
                mode: Default::default(),
            }],
            lldp: false,
        }],
        pairs: vec![],
        servers: vec![
            ServerSpec::new(
                "kvm1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                    NicSpec::cabled("eth1", "sw1", "Ethernet2"),
                ],
            ),
            ServerSpec::new("p600", vec![NicSpec::cabled("eth0", "sw1", "Ethernet5")]),
            ServerSpec::new("p601", vec![NicSpec::cabled("eth0", "sw1", "Ethernet6")]),
        ],
    };
    let rack = Rack::build(spec).expect("rack");
    for (s, a) in [("p600", "10.6.0.2/24"), ("p601", "10.6.0.3/24")] {
        rack.server(s)
            .ip_batch(&["link set eth0 up".into(), format!("addr add {a} dev eth0")])
            .expect("peer");
    }
    let kvm = rack.server("kvm1");
    let (cfg, _dir) = config("trunk");
    apply(kvm, &cfg, &example("trunk.yaml"));
    wait_lacp(
        kvm,
        "bond0",
        &rack.switch_system_mac("sw1"),
        scaled(Duration::from_secs(60)),
    );
    let obs = observe(kvm, &cfg);
    let bond = obs.link("bond0").expect("bond0");
    assert_eq!(bond.mtu, 9000);
    let vids = hostd_core::model::expand_vlans(&bond.vlans);
    assert_eq!(
        vids.len(),
        1000,
        "bond0 carries 1000 VLANs: {:?}",
        bond.vlans
    );
    assert!(vids.keys().all(|v| (100..=1099).contains(v)));

    // A VM's tap, added by the hypervisor (not hostd), on VLAN 600.
    let vm = NetNs::new("vm").expect("vm netns");
    kvm.ip_batch(&[
        format!(
            "link add vnet0 mtu 9000 type veth peer name eth0 netns {}",
            vm.name()
        ),
        "link set vnet0 master br0".into(),
        "link set vnet0 up".into(),
    ])
    .expect("vm port");
    kvm.run(&["bridge", "vlan", "del", "dev", "vnet0", "vid", "1"]);
    kvm.run(&[
        "bridge", "vlan", "add", "dev", "vnet0", "vid", "600", "pvid", "untagged",
    ]);
    vm.ip_batch(&[
        "link set eth0 up".into(),
        "addr add 10.6.0.1/24 dev eth0".into(),
    ])
    .expect("vm address");
    wait_until(
        "VM on VLAN 600 reaches its peer",
        scaled(Duration::from_secs(30)),
        || reachable(&vm, "10.6.0.2"),
    );
    let other = ping(&vm, "10.6.0.3", 3, Duration::from_millis(200), None).expect("ping");
    assert_eq!(
        other.received, 0,
        "VLAN 600 must not reach the VLAN 601 peer: {other:?}"
    );

    // Re-applying changes nothing, and the VM port stays in the bridge.
    apply(kvm, &cfg, &example("trunk.yaml"));
    let obs = observe(kvm, &cfg);
    assert_eq!(
        obs.link("vnet0")
            .and_then(|l| l.controller.clone())
            .map(|c| c.to_string())
            .as_deref(),
        Some("br0")
    );
    assert!(reachable(&vm, "10.6.0.2"), "VM traffic still passes");
}

/// Moving between examples converges (in place where possible: bond mode
/// change, VLANs removed, MTU raised), foreign state untouched throughout.
#[test]
fn moving_between_examples_converges_and_leaves_foreign_state() {
    kernel::require(NEEDS);
    let (srv, _peer) = simple_server(4);
    wait_dad(&srv);
    let before = foreign(&srv);
    let (cfg, _dir) = config("moves");
    for name in [
        "cloudstack.yaml",
        "oraclevm.yaml",
        "trunk.yaml",
        "cloudstack.yaml",
    ] {
        println!("== {name}");
        apply(&srv, &cfg, &example(name));
        wait_dad(&srv);
        assert_eq!(foreign(&srv), before, "foreign state untouched by {name}");
    }
    let obs = observe(&srv, &cfg);
    assert!(
        obs.link("vlan50").is_none() && obs.link("br0").is_none(),
        "links of earlier examples removed"
    );
    let r = srv
        .enter(|| engine::teardown(&cfg, ApplyOptions::default()))
        .expect("teardown");
    assert!(!r.plan.is_empty());
    assert_eq!(foreign(&srv), before, "foreign state untouched by teardown");
}

/// A failure injected at each step of a plan (deletes, modifications,
/// creations) rolls the host back to exactly where it was.
#[test]
fn failure_at_each_step_rolls_back_exactly() {
    kernel::require(NEEDS);
    let (srv, _peer) = simple_server(4);
    let (cfg, _dir) = config("rollback");
    apply(&srv, &cfg, &example("oraclevm.yaml"));
    let target = parse(&example("cloudstack.yaml"));
    let plan = srv
        .enter(|| engine::plan_only(&cfg, &target))
        .expect("plan");
    println!("plan under test:\n{plan}");
    assert!(
        plan.ops.len() > 15,
        "a plan with deletes, changes and creates"
    );
    wait_dad(&srv);
    let start = snapshot(&srv, true);
    let own_before = std::fs::read_to_string(&cfg.state_file).expect("ownership");
    for step in 1..=plan.ops.len() {
        let err = try_apply(&srv, &cfg, &target, Some(step))
            .expect_err("the injected failure fails the apply");
        assert!(
            matches!(err, Error::RolledBack { .. }),
            "step {step}: {err}"
        );
        let mut last = Value::Null;
        let ok = lab::wait::try_wait_until(scaled(Duration::from_secs(10)), || {
            last = snapshot(&srv, true);
            last == start
        });
        assert!(
            ok.is_ok(),
            "step {step} ({}): not rolled back exactly:\n{}",
            plan.ops[step - 1],
            diff(&start, &last)
        );
        assert_eq!(
            std::fs::read_to_string(&cfg.state_file).expect("ownership"),
            own_before,
            "ownership restored"
        );
    }
    // And without a failure, it applies.
    apply(&srv, &cfg, &example("cloudstack.yaml"));
}

/// Bad input is rejected with the field path, and the host's netlink state
/// is byte-identical before and after.
#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    kernel::require(NEEDS);
    let (srv, _peer) = simple_server(2);
    let (cfg, _dir) = config("bad");
    apply(&srv, &cfg, &example("oraclevm.yaml"));
    let cases: &[(&str, &str)] = &[
        ("interfaces:\n  - { name: eth0, type: ethernet, speed: 10 }\n", "interfaces[0].speed"),
        ("interfaces:\n  - { name: eth0, type: ethernet }\n  - { name: v, type: vlan, vlan: { base-iface: eth0, id: 4095 } }\n", "interfaces[1].vlan.id"),
        ("interfaces:\n  - { name: abcdefghijklmnop, type: linux-bridge }\n", "interfaces[0].name"),
        ("interfaces:\n  - { name: eth0, type: ethernet }\n  - { name: eth0, type: ethernet }\n", "interfaces[1].name"),
        ("interfaces:\n  - { name: eth0, type: ethernet }\n  - { name: b1, type: bond, link-aggregation: { mode: 802.3ad, port: [eth0] } }\n  - { name: b2, type: bond, link-aggregation: { mode: 802.3ad, port: [eth0] } }\n", "interfaces[2].link-aggregation.port[0]"),
        ("interfaces:\n  - { name: v, type: vlan, vlan: { base-iface: nothere, id: 5 } }\n", "interfaces[0].vlan.base-iface"),
        ("interfaces:\n  - { name: b1, type: linux-bridge, bridge: { port: [{ name: v1 }] } }\n  - { name: v1, type: vlan, vlan: { base-iface: b1, id: 5 } }\n", "cycle"),
        ("interfaces:\n  - { name: eth0, type: ethernet, mtu: 1500 }\n  - { name: v, type: vlan, mtu: 9000, vlan: { base-iface: eth0, id: 5 } }\n", "interfaces[1].mtu"),
        ("interfaces:\n  - { name: eth0, type: ethernet, ipv4: { address: [{ ip: 10.0.0.1, prefix-length: 24 }] } }\n  - { name: eth1, type: ethernet, ipv4: { address: [{ ip: 10.0.0.2, prefix-length: 16 }] } }\n", "interfaces[1].ipv4.address[0]"),
        ("interfaces:\n  - { name: eth0, type: ethernet }\nroutes:\n  config:\n    - { destination: 10.1.0.0/16, next-hop-interface: eth0 }\n    - { destination: 10.1.0.0/16, next-hop-interface: eth0 }\n", "routes.config[1]"),
        ("interfaces:\n  - { name: eth7, type: ethernet }\n", "eth7"),
        ("interfaces:\n  - { name: keep0, type: bond, link-aggregation: { mode: 802.3ad } }\n", "interfaces[0].type"),
    ];
    wait_dad(&srv);
    let before = snapshot(&srv, false);
    let own = std::fs::read_to_string(&cfg.state_file).expect("ownership");
    for (yaml, path) in cases {
        let err = match NetworkState::parse(yaml) {
            Err(e) => e.to_string(),
            Ok(d) => match try_apply(&srv, &cfg, &d, None) {
                Err(e @ (Error::Plan(_) | Error::Parse(_))) => e.to_string(),
                other => panic!("{yaml}: expected a rejection, got {other:?}"),
            },
        };
        assert!(err.contains(path), "error names {path}: {err}");
        println!("rejected: {err}");
        let after = snapshot(&srv, false);
        assert!(
            after == before,
            "host changed by rejected input {yaml}:\n{}",
            diff(&before, &after)
        );
        assert_eq!(
            std::fs::read_to_string(&cfg.state_file).expect("ownership"),
            own
        );
    }
}
