//! Smoke tests that prove the lab on a kernel with bonding, 802.1Q and
//! VLAN-aware bridges (the VM runner boots Debian's kernel when this one
//! lacks them): LACP between a server bond and a switch-pair LAG, and VLAN
//! isolation across the switch.

use std::time::Duration;

use futures::TryStreamExt as _;
use lab::{
    bonding::wait_lacp,
    kernel::{self, Feature},
    lldp::LldpListener,
    spec::{LagSpec, NicSpec, PairSpec, PortRef, PortSpec, ServerSpec, SwitchSpec, VlanMembership},
    traffic::{packet_counters, ping},
    wait::scaled,
    Rack, RackSpec,
};
use netlink_packet_route::link::BondMode;
use rtnetlink::{LinkBond, LinkUnspec};

fn switch(name: &str) -> SwitchSpec {
    SwitchSpec {
        name: name.into(),
        ports: vec![],
        lags: vec![],
        lldp: false,
    }
}

/// Creates bond0 (802.3ad, lacp_rate fast, miimon 100) over `ports` with
/// rtnetlink, from a thread inside the server's namespace.
fn netlink_bond(ns: &lab::NetNs, ports: &[&str]) {
    ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
            tokio::spawn(conn);
            let bond = LinkBond::new("bond0")
                .mode(BondMode::Ieee8023Ad)
                .miimon(100)
                .ad_lacp_rate(netlink_packet_route::link::BondLacpRate::Fast)
                .up()
                .build();
            handle
                .link()
                .add(bond)
                .execute()
                .await
                .expect("create bond0");
            let bond_index = index_of(&handle, "bond0").await;
            for port in ports {
                let idx = index_of(&handle, port).await;
                let msg = LinkUnspec::new_with_index(idx)
                    .down()
                    .controller(bond_index)
                    .build();
                handle
                    .link()
                    .change(msg)
                    .execute()
                    .await
                    .unwrap_or_else(|e| panic!("enslave {port}: {e}"));
                let msg = LinkUnspec::new_with_index(idx).up().build();
                handle
                    .link()
                    .change(msg)
                    .execute()
                    .await
                    .unwrap_or_else(|e| panic!("up {port}: {e}"));
            }
        });
    });
}

async fn index_of(handle: &rtnetlink::Handle, name: &str) -> u32 {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    links
        .try_next()
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
        .unwrap_or_else(|| panic!("no link {name}"))
        .header
        .index
}

#[test]
fn server_bond_negotiates_lacp_with_switch_pair_lag() {
    kernel::require(&[Feature::Bonding, Feature::Bridge, Feature::Veth]);
    let spec = RackSpec {
        switches: vec![
            SwitchSpec {
                lags: vec![LagSpec {
                    name: "Po1".into(),
                    members: vec![
                        PortRef::new("sw1", "Ethernet1"),
                        PortRef::new("sw2", "Ethernet1"),
                    ],
                    vlans: VlanMembership::default(),
                    lacp_rate: "fast".into(),
                    mode: Default::default(),
                }],
                lldp: true,
                ..switch("sw1")
            },
            SwitchSpec {
                lldp: true,
                ..switch("sw2")
            },
        ],
        pairs: vec![PairSpec {
            name: "leaf1".into(),
            members: ["sw1".into(), "sw2".into()],
            system_mac: None,
        }],
        servers: vec![ServerSpec {
            name: "srv1".into(),
            nics: vec![
                NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                NicSpec::cabled("eth1", "sw2", "Ethernet1"),
            ],
            ipv6: true,
        }],
    };
    let rack = Rack::build(spec).expect("build rack");
    let srv = rack.server("srv1");
    netlink_bond(srv, &["eth0", "eth1"]);

    let switch_mac = rack.switch_system_mac("sw1");
    let status = wait_lacp(srv, "bond0", &switch_mac, scaled(Duration::from_secs(40)));
    println!("server bond0: {}", status.summary());
    assert_eq!(
        status.ports.len(),
        2,
        "both NICs are bond ports: {status:?}"
    );
    let agg = status.active_aggregator.expect("an active aggregator");
    assert!(
        status.ports.iter().all(|p| p.aggregator_id == Some(agg)),
        "one aggregator: {status:?}"
    );
    for p in &status.ports {
        assert_eq!(
            p.partner_mac.as_deref(),
            Some(switch_mac.as_str()),
            "partner of {} is the switch pair",
            p.name
        );
    }

    // And the switch side sees the server as its partner, on both members.
    let server_mac = srv.ip(&["-br", "link", "show", "bond0"]);
    let server_mac = server_mac
        .split_whitespace()
        .nth(2)
        .expect("bond0 MAC")
        .to_owned();
    // The switch side converges on its own schedule (its second member may
    // join the aggregator a LACPDU later than the server saw it): wait.
    let sw = wait_lacp(
        rack.switch("sw1"),
        "Po1",
        &server_mac,
        scaled(Duration::from_secs(40)),
    );
    println!("switch Po1: {}", sw.summary());

    // LLDP: each NIC hears its own switch and port, also as a bond port.
    let lldp = LldpListener::start(srv, &["eth0", "eth1"]).expect("lldpd on the server");
    let heard = lldp
        .wait_for(&["eth0", "eth1"], scaled(Duration::from_secs(30)))
        .expect("LLDP neighbours");
    println!("LLDP: {heard:?}");
    for (nic, sw) in [("eth0", "sw1"), ("eth1", "sw2")] {
        let n = heard
            .iter()
            .find(|n| n.local_interface == nic)
            .expect("neighbour");
        assert_eq!(
            (n.system_name.as_str(), n.port_id.as_str()),
            (sw, "Ethernet1"),
            "{nic} is cabled to {sw}:Ethernet1"
        );
    }
}

#[test]
fn vlan_100_crosses_the_switch_and_vlan_200_stays_out_of_a_vlan_100_server() {
    kernel::require(&[
        Feature::Vlan8021q,
        Feature::BridgeVlanFiltering,
        Feature::Veth,
    ]);
    let port = |name: &str, vlans: &[u16]| PortSpec {
        name: name.into(),
        vlans: VlanMembership::trunk(vlans.iter().copied()),
    };
    let spec = RackSpec {
        switches: vec![SwitchSpec {
            ports: vec![
                port("Ethernet1", &[100, 200]),
                port("Ethernet2", &[100]),
                port("Ethernet3", &[200]),
            ],
            ..switch("sw1")
        }],
        pairs: vec![],
        servers: ["srv1", "srv2", "srv3"]
            .iter()
            .enumerate()
            .map(|(i, s)| ServerSpec {
                name: (*s).into(),
                nics: vec![NicSpec::cabled(
                    "eth0",
                    "sw1",
                    &format!("Ethernet{}", i + 1),
                )],
                ipv6: false,
            })
            .collect(),
    };
    let rack = Rack::build(spec).expect("build rack");
    // srv1 in 100 and 200; srv2 configures both too, but its switch port only
    // carries 100; srv3 is in 200 only.
    let vlans: &[(&str, &[(u16, &str)])] = &[
        ("srv1", &[(100, "10.100.0.1/24"), (200, "10.200.0.1/24")]),
        ("srv2", &[(100, "10.100.0.2/24"), (200, "10.200.0.2/24")]),
        ("srv3", &[(200, "10.200.0.3/24")]),
    ];
    for (srv, subifs) in vlans {
        let ns = rack.server(srv);
        let mut batch = vec!["link set eth0 up".to_owned()];
        for (vid, addr) in *subifs {
            batch.push(format!(
                "link add link eth0 name eth0.{vid} type vlan id {vid}"
            ));
            batch.push(format!("addr add {addr} dev eth0.{vid}"));
            batch.push(format!("link set eth0.{vid} up"));
        }
        ns.ip_batch(&batch).expect("server VLANs");
    }
    let srv1 = rack.server("srv1");
    let srv2 = rack.server("srv2");

    lab::wait_until(
        "VLAN 100 path srv1 -> srv2",
        scaled(Duration::from_secs(20)),
        || lab::traffic::reachable(srv1, "10.100.0.2"),
    );
    let v100 =
        ping(srv1, "10.100.0.2", 10, Duration::from_millis(50), None).expect("ping VLAN 100");
    assert_eq!(v100.received, 10, "VLAN 100 srv1 -> srv2: {v100:?}");
    lab::wait_until(
        "VLAN 200 path srv1 -> srv3",
        scaled(Duration::from_secs(20)),
        || lab::traffic::reachable(srv1, "10.200.0.3"),
    );

    let (rx_before, _) = packet_counters(srv2, "eth0.200").expect("counters");
    let v200 =
        ping(srv1, "10.200.0.2", 10, Duration::from_millis(50), None).expect("ping VLAN 200");
    let v200_ok = ping(srv1, "10.200.0.3", 10, Duration::from_millis(50), None)
        .expect("ping VLAN 200 to srv3");
    let (rx_after, _) = packet_counters(srv2, "eth0.200").expect("counters");
    assert_eq!(
        v200.received, 0,
        "srv2 is not in VLAN 200 on the switch: {v200:?}"
    );
    assert_eq!(
        v200_ok.received, 10,
        "VLAN 200 works between srv1 and srv3: {v200_ok:?}"
    );
    assert_eq!(
        rx_after, rx_before,
        "no VLAN 200 frame (not even ARP broadcast) reached srv2"
    );
}
