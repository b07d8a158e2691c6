//! The demo rack: a switch pair (standing for MLAG) with LLDP, and two
//! servers each bonded with 802.3ad over two NICs, one to each switch; VLAN
//! 100 between them. Prints what was built, the LACP state and the traffic
//! result; exits non-zero if LACP or traffic fails.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use lab::{
    bonding::wait_lacp,
    spec::{LagSpec, NicSpec, PairSpec, PortRef, ServerSpec, SwitchSpec, VlanMembership},
    traffic::ping,
    wait::scaled,
    Rack, RackSpec,
};

fn main() -> anyhow::Result<()> {
    let lag = |n: u8| LagSpec {
        name: format!("Po{n}"),
        members: vec![
            PortRef::new("sw1", &format!("Ethernet{n}")),
            PortRef::new("sw2", &format!("Ethernet{n}")),
        ],
        vlans: VlanMembership::trunk([100, 200]),
        lacp_rate: "fast".into(),
    };
    let server = |n: u8| ServerSpec {
        name: format!("srv{n}"),
        nics: vec![
            NicSpec {
                name: "eth0".into(),
                mac: None,
                cable: PortRef::new("sw1", &format!("Ethernet{n}")),
            },
            NicSpec {
                name: "eth1".into(),
                mac: None,
                cable: PortRef::new("sw2", &format!("Ethernet{n}")),
            },
        ],
        ipv6: true,
    };
    let spec = RackSpec {
        switches: vec![
            SwitchSpec {
                name: "sw1".into(),
                ports: vec![],
                lags: vec![lag(1), lag(2)],
                lldp: true,
            },
            SwitchSpec {
                name: "sw2".into(),
                ports: vec![],
                lags: vec![],
                lldp: true,
            },
        ],
        pairs: vec![PairSpec {
            name: "leaf1".into(),
            members: ["sw1".into(), "sw2".into()],
            system_mac: None,
        }],
        servers: vec![server(1), server(2)],
    };
    println!("kernel: {}", lab::kernel::release());
    let rack = Rack::build(spec).context("building the demo rack")?;
    println!("built:\n{}", rack.describe());

    for (n, srv) in ["srv1", "srv2"].iter().enumerate() {
        rack.server(srv).ip_batch(&[
            "link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100".into(),
            "link set eth0 master bond0".into(),
            "link set eth1 master bond0".into(),
            "link set bond0 up".into(),
            "link add link bond0 name bond0.100 type vlan id 100".into(),
            format!("addr add 10.100.0.{}/24 dev bond0.100", n + 1),
            "link set bond0.100 up".into(),
        ])?;
    }
    let partner = rack.switch_system_mac("sw1");
    for srv in ["srv1", "srv2"] {
        let st = wait_lacp(
            rack.server(srv),
            "bond0",
            &partner,
            scaled(Duration::from_secs(40)),
        );
        println!("{srv} bond0 LACP negotiated: {}", st.summary());
    }
    for srv in ["srv1", "srv2"] {
        let lldp = lab::lldp::LldpListener::start(rack.server(srv), &["eth0", "eth1"])?;
        for n in lldp.wait_for(&["eth0", "eth1"], scaled(Duration::from_secs(30)))? {
            println!(
                "{srv} {} LLDP neighbour: {} port {}",
                n.local_interface, n.system_name, n.port_id
            );
        }
    }
    let srv1 = rack.server("srv1");
    lab::wait_until(
        "VLAN 100 srv1 -> srv2",
        scaled(Duration::from_secs(20)),
        || lab::traffic::reachable(srv1, "10.100.0.2"),
    );
    let stats = ping(srv1, "10.100.0.2", 20, Duration::from_millis(50), None)?;
    println!(
        "VLAN 100 srv1 -> srv2: {}/{} echoes answered",
        stats.received, stats.transmitted
    );
    ensure!(
        stats.received == stats.transmitted,
        "loss on VLAN 100: {stats:?}"
    );
    println!("demo OK");
    Ok(())
}
