//! Open vSwitch with the kernel datapath (the VM's 6.1 kernel has the
//! `openvswitch` module), one document for the kernel and OVS parts:
//!
//! - `srv1` runs a private ovsdb-server + ovs-vswitchd (ovs-vswitchd in its
//!   namespace, system datapath) and applies the CloudStack OVS layout of
//!   `hostd/examples/cloudstack-ovs.yaml` with the kernel parts: an OVS bond
//!   (balance-tcp, LACP active, fast) over eth0/eth1 to the switch LAG Po1
//!   (a Linux 802.3ad bond on sw1), `mgmt0` (internal, VLAN 200) carrying an
//!   address and a route, `trunk0` (internal, trunk of VLAN 300) under a
//!   kernel VLAN `trunk0.300` with an address, the fake bridge `cloudbr100`,
//!   and a Linux bond `lbond0` (eth2, eth3) as the port of `cloudbr1`;
//! - `srv2` sits on VLAN 200 of sw1, `srv3` on VLAN 300; each also holds an
//!   address of the other's subnet, so reaching it in the wrong VLAN would
//!   show.
//!
//! Checked: LACP negotiated on both sides (the switch's partner is OVS's
//! system id), pings through the switch in the right VLANs only, rollback at
//! a few steps restores the kernel and OVSDB exactly, OpenStack's foreign
//! bridge untouched, idempotent re-apply, `show`, ovs-vswitchd restarted while
//! an apply waits for it, teardown.

use std::time::{Duration, Instant};

use hostd::{
    apply::Fault,
    engine::{self, ApplyOptions, Config, DnsBackend, Error},
};
use hostd_core::{ovs::OvsObserved, NetworkState};
use hostd_ovsdb::sandbox::Sandbox;
use lab::{
    bonding,
    kernel::{self, Feature},
    spec::{LagMode, LagSpec, NicSpec, PortRef, PortSpec, ServerSpec, SwitchSpec, VlanMembership},
    traffic,
    wait::{scaled, try_wait_until},
    NetNs, Rack, RackSpec,
};

fn spec() -> RackSpec {
    RackSpec {
        switches: vec![SwitchSpec {
            name: "sw1".into(),
            ports: vec![
                PortSpec::new("Ethernet3", VlanMembership::access(200)),
                PortSpec::new("Ethernet4", VlanMembership::access(300)),
            ],
            lags: vec![LagSpec {
                name: "Po1".into(),
                members: vec![
                    PortRef::new("sw1", "Ethernet1"),
                    PortRef::new("sw1", "Ethernet2"),
                ],
                vlans: VlanMembership::trunk([100, 200, 300]),
                lacp_rate: "fast".into(),
                mode: LagMode::Lacp,
            }],
            lldp: false,
        }],
        pairs: vec![],
        servers: vec![
            ServerSpec::new(
                "srv1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                    NicSpec::cabled("eth1", "sw1", "Ethernet2"),
                    NicSpec::cabled("eth2", "sw1", "Ethernet5"),
                    NicSpec::cabled("eth3", "sw1", "Ethernet6"),
                ],
            ),
            ServerSpec::new("srv2", vec![NicSpec::cabled("eth0", "sw1", "Ethernet3")]),
            ServerSpec::new("srv3", vec![NicSpec::cabled("eth0", "sw1", "Ethernet4")]),
        ],
    }
}

/// The CloudStack layout (hostd/examples/cloudstack-ovs.yaml) with the
/// kernel parts around it.
fn document() -> NetworkState {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../hostd/examples/cloudstack-ovs.yaml"
    );
    let text = std::fs::read_to_string(path).expect("cloudstack-ovs.yaml");
    NetworkState::parse(&text).unwrap_or_else(|e| panic!("cloudstack-ovs.yaml: {e}"))
}

fn config(tag: &str, sb: &Sandbox) -> Config {
    let dir = std::env::temp_dir().join(format!("kernel-ovs-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut cfg = Config {
        state_file: dir.join("owned.json"),
        resolv_conf: dir.join("resolv.conf"),
        dns_backend: DnsBackend::File,
        ovs_db_socket: sb.db_socket(),
        ..Config::default()
    };
    // ovs-vswitchd under emulation: generous, and bounded.
    cfg.ovs.step_timeout = scaled(Duration::from_secs(60));
    cfg.verify_attempts = 40;
    cfg
}

fn kernel_now(srv: &NetNs, cfg: &Config) -> NetworkState {
    srv.enter(|| engine::show(cfg)).expect("observe").to_state()
}

fn ovs_now(cfg: &Config) -> OvsObserved {
    engine::show_ovs(cfg)
        .expect("ovsdb")
        .expect("socket")
        .config_view()
}

/// OVS's LACP system id for bond0, once `lacp/show` reports it negotiated.
fn ovs_lacp_negotiated(sb: &Sandbox) -> Option<(String, Vec<String>)> {
    let bond = sb.appctl(&["bond/show"]).ok()?;
    let lacp = sb.appctl(&["lacp/show"]).ok()?;
    let stats = sb.appctl(&["lacp/show-stats"]).ok()?;
    let all = hostd_core::ovs::status::merge(&bond, &lacp, &stats);
    let b = all.into_iter().find(|b| b.name == "bond0")?;
    let sys = b.lacp.as_ref()?.sys_id.clone()?;
    (b.lacp_status.as_deref() == Some("negotiated")).then(|| (sys, b.problems()))
}

fn check_traffic(rack: &Rack) {
    let srv1 = rack.server("srv1");
    for (dst, what) in [
        ("10.200.0.2", "srv2 on VLAN 200 via mgmt0"),
        ("10.30.0.3", "srv3 on VLAN 300 via trunk0.300"),
    ] {
        let ok = try_wait_until(scaled(Duration::from_secs(30)), || {
            traffic::reachable(srv1, dst)
        });
        assert!(ok.is_ok(), "srv1 cannot reach {what} ({dst})");
    }
    // The same subnets in the other VLAN: never answered.
    for (dst, what) in [
        ("10.200.0.3", "srv3's VLAN-200 subnet address, on VLAN 300"),
        ("10.30.0.2", "srv2's VLAN-300 subnet address, on VLAN 200"),
    ] {
        let s = traffic::ping(srv1, dst, 3, Duration::from_millis(200), None);
        assert!(
            matches!(&s, Ok(st) if st.received == 0) || s.is_err(),
            "srv1 reached {what} ({dst}) across VLANs: {s:?}"
        );
    }
}

#[test]
fn ovs_kernel_datapath() {
    let t0 = Instant::now();
    kernel::require(&[
        Feature::Veth,
        Feature::Bridge,
        Feature::Bonding,
        Feature::Vlan8021q,
        Feature::OvsDatapath,
    ]);
    let rack = Rack::build(spec()).expect("rack");
    let srv1 = rack.server("srv1");
    for (srv, addrs) in [
        ("srv2", ["10.200.0.2/24", "10.30.0.2/24"]),
        ("srv3", ["10.30.0.3/24", "10.200.0.3/24"]),
    ] {
        let ns = rack.server(srv);
        for a in addrs {
            ns.ip(&["addr", "add", a, "dev", "eth0"]);
        }
        ns.ip(&["link", "set", "eth0", "up"]);
    }
    let mut sb =
        Sandbox::start_system(srv1.name()).expect("ovsdb-server + ovs-vswitchd (system datapath)");
    eprintln!(
        "kernel_ovs: OVS started after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // OpenStack's bridge: never touched.
    sb.vsctl(&[
        "add-br",
        "br-int",
        "--",
        "set",
        "Bridge",
        "br-int",
        "fail_mode=secure",
    ])
    .expect("foreign bridge");
    let foreign = |cfg: &Config| {
        let o = ovs_now(cfg);
        o.bridges
            .iter()
            .filter(|r| r.name == "br-int")
            .cloned()
            .collect::<Vec<_>>()
    };
    let cfg = config("main", &sb);
    let desired = document();
    let br_int = foreign(&cfg);
    assert_eq!(br_int.len(), 1);

    // Rollback at a few steps: the first kernel operation, the first OVS
    // step, the first operation after the OVS steps, the last step.
    let k0 = kernel_now(srv1, &cfg);
    let o0 = ovs_now(&cfg);
    let plan = srv1
        .enter(|| engine::plan_only(&cfg, &desired))
        .expect("plan");
    eprintln!("kernel_ovs: plan ({} steps):\n{plan}", plan.steps());
    let st = plan.ovs.clone().expect("ovs stages");
    let first_ovs = st.before_remove + usize::from(st.remove.is_some()) + st.before_steps + 1;
    let after_ovs = first_ovs + st.steps.len();
    for n in [1, first_ovs, first_ovs + 1, after_ovs, plan.steps()] {
        let t = Instant::now();
        let e = srv1
            .enter(|| {
                engine::apply(
                    &cfg,
                    &desired,
                    ApplyOptions {
                        fault: Some(Fault::StopBefore(n)),
                        ..ApplyOptions::default()
                    },
                )
            })
            .expect_err("injected");
        assert!(matches!(e, Error::RolledBack { .. }), "step {n}: {e}");
        assert_eq!(
            kernel_now(srv1, &cfg),
            k0,
            "kernel after rollback at step {n}"
        );
        assert_eq!(ovs_now(&cfg), o0, "OVSDB after rollback at step {n}");
        eprintln!(
            "kernel_ovs: rollback at step {n} verified ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }

    // Apply.
    let t = Instant::now();
    let r = srv1
        .enter(|| engine::apply(&cfg, &desired, ApplyOptions::default()))
        .unwrap_or_else(|e| panic!("apply: {e}"));
    eprintln!(
        "kernel_ovs: applied {} kernel ops + {} OVS steps in {:.1} s",
        r.plan.ops.len(),
        r.plan.ovs_steps(),
        t.elapsed().as_secs_f64()
    );
    let again = srv1
        .enter(|| engine::plan_only(&cfg, &desired))
        .expect("re-plan");
    assert!(again.is_empty(), "re-apply not empty:\n{again}");

    // LACP: OVS negotiated, and the switch's partner is OVS's system id.
    let mut seen = None;
    let ok = try_wait_until(scaled(Duration::from_secs(60)), || {
        seen = ovs_lacp_negotiated(&sb);
        seen.as_ref().is_some_and(|(_, p)| p.is_empty())
    });
    assert!(
        ok.is_ok(),
        "OVS bond0 LACP not negotiated: {seen:?}\n{}",
        sb.appctl(&["lacp/show"]).unwrap_or_default()
    );
    let (sys_id, _) = seen.expect("negotiated");
    let sw = bonding::wait_lacp(
        rack.switch("sw1"),
        "Po1",
        &sys_id,
        scaled(Duration::from_secs(60)),
    );
    eprintln!("kernel_ovs: LACP negotiated: switch Po1 {}", sw.summary());

    // Addresses and routes on OVS netdevs, the kernel VLAN, the Linux bond.
    let k1 = kernel_now(srv1, &cfg);
    let mgmt0 = k1.interface("mgmt0").expect("mgmt0 netdev");
    assert!(
        mgmt0.ipv4.as_ref().is_some_and(|c| c.address.len() == 1),
        "{mgmt0:?}"
    );
    assert!(k1.interface("trunk0.300").is_some_and(|i| i.vlan.is_some()));
    let out = srv1.ip(&["-d", "link", "show", "lbond0"]);
    assert!(
        out.contains("master ovs-system") && out.contains("bond mode active-backup"),
        "{out}"
    );
    let routes = srv1.ip(&["route", "show", "10.99.0.0/24"]);
    assert!(routes.contains("via 10.200.0.254 dev mgmt0"), "{routes}");
    check_traffic(&rack);

    // show: OVS entries in place of the kernel's view of their netdevs.
    let mut shown = k1.clone();
    hostd_core::ovs::doc::merge_into_shown(
        &mut shown,
        &engine::show_ovs(&cfg).expect("ovs").expect("some"),
    );
    let m = shown.interface("mgmt0").expect("mgmt0 shown");
    assert_eq!(m.kind, hostd_core::schema::InterfaceType::OvsInterface);
    assert!(m.ipv4.is_some(), "{m:?}");
    assert!(shown
        .interface("cloudbr100")
        .is_some_and(|i| i.ovs_bridge.as_ref().is_some_and(|b| b.parent.is_some())));

    // ovs-vswitchd restarted while an apply waits for it: tear down, stop
    // it, apply (the first OVS step waits for cur_cfg), start it again.
    srv1.enter(|| engine::teardown(&cfg, ApplyOptions::default()))
        .expect("teardown");
    assert_eq!(foreign(&cfg), br_int, "foreign bridge after teardown");
    sb.kill_vswitchd();
    let t = Instant::now();
    std::thread::scope(|s| {
        let h = s.spawn(|| srv1.enter(|| engine::apply(&cfg, &desired, ApplyOptions::default())));
        // Wait until the apply committed a step that ovs-vswitchd has not
        // applied: next_cfg ahead of cur_cfg.
        let waiting = try_wait_until(scaled(Duration::from_secs(60)), || {
            let v = |c: &str| {
                sb.vsctl(&["--no-wait", "get", "Open_vSwitch", ".", c])
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
            };
            matches!((v("next_cfg"), v("cur_cfg")), (Some(n), Some(c)) if n > c)
        });
        assert!(waiting.is_ok(), "the apply never waited for ovs-vswitchd");
        sb.start_vswitchd().expect("restart ovs-vswitchd");
        h.join()
            .expect("apply thread")
            .unwrap_or_else(|e| panic!("apply across the restart: {e}"));
    });
    eprintln!(
        "kernel_ovs: apply across an ovs-vswitchd restart: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ok = try_wait_until(scaled(Duration::from_secs(60)), || {
        ovs_lacp_negotiated(&sb).is_some_and(|(_, p)| p.is_empty())
    });
    assert!(ok.is_ok(), "LACP after the restart");
    check_traffic(&rack);

    // Teardown: hostd's rows and links gone, the foreign bridge intact.
    srv1.enter(|| engine::teardown(&cfg, ApplyOptions::default()))
        .expect("teardown");
    let o = ovs_now(&cfg);
    assert_eq!(
        o.bridges
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["br-int"]
    );
    assert_eq!(foreign(&cfg), br_int);
    assert!(
        srv1.try_ip(&["link", "show", "lbond0"]).is_err(),
        "lbond0 deleted"
    );
    assert!(
        srv1.try_ip(&["link", "show", "trunk0.300"]).is_err(),
        "trunk0.300 deleted"
    );
    eprintln!("kernel_ovs: done in {:.1} s", t0.elapsed().as_secs_f64());
}
