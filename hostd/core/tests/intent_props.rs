//! Property tests of the intent compiler: for random valid intents and
//! inventories (every redundancy mode x topology, every host layout, 1..=6
//! networks with random VLANs, MTUs, untagged choice and addressing, 1..=4
//! NICs with random port numbers, port-name styles and inventory order),
//! checked by an interpreter of the produced documents written here, not by
//! the compiler's own code:
//!
//! - the host document validates, and hostd's planner brings a bare host to
//!   it in steps the kernel model accepts, converging;
//! - every VLAN of the intent is reachable on both ends: the host carries it
//!   (a VLAN interface on the uplink, the uplink's VLAN-aware bridge port, or
//!   the untagged uplink) and every switch port of the host's NICs carries it
//!   with the same tagging, in the switch-side intent and in the compiled
//!   Linux switch state;
//! - no VLAN leaks: nothing else is carried on either end;
//! - each network's addresses sit on the interface that terminates its VLAN,
//!   at the network's MTU; the cable's MTU (bond, switch ports, LAG) is the
//!   largest;
//! - the bond's mode follows the intent, its members are in port index order
//!   (switch hostname, then port number), LACP port priorities grow with the
//!   index, and an active-backup primary is port #0;
//! - the output does not depend on the order of the inventory's NICs or
//!   switches;
//! - and, mutated, the same inputs are refused with an error naming the NIC:
//!   a missing LLDP neighbour, two NICs on one switch port, a NIC of an MLAG
//!   intent seeing a third switch.
//!
//! On failure proptest prints the minimal scenario and keeps its seed in
//! `intent_props.proptest-regressions` next to this file (commit it: the
//! case is replayed first on every later run).

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::collections::{BTreeMap, BTreeSet};

use hostd_core::{
    intent::{
        compile, linux_switch, port_priority, Compiled, HostLayout, HostOptions, Intent, Inventory,
        LacpMode, LagKind, LldpNeighbor, MlagFacts, Network, NetworkRoute, NetworkType, Nic,
        Redundancy, RedundancyMode, SwitchFacts, SwitchPortFacts, Topology, VlanMode,
    },
    model::Observed,
    ownership::Ownership,
    plan::plan,
    schema::{BondMode, Interface, InterfaceType, LacpRate, NetworkState, PortVlan, PortVlanMode},
    sim::simulate,
    types::{IfName, MacAddr, Mtu, VlanId},
    validate::validate,
};
use ipnet::IpNet;
use proptest::prelude::*;

// ---------------------------------------------------------------- scenarios

#[derive(Debug, Clone)]
struct NetGen {
    vlan: u16,
    mtu: usize,
    addr: bool,
    v6: bool,
    gw: bool,
    kind: usize,
    route: bool,
}

#[derive(Debug, Clone)]
struct Scenario {
    combo: usize,
    layout: usize,
    nets: Vec<NetGen>,
    native: Option<usize>,
    nics: usize,
    ports: Vec<u16>,
    sides: Vec<bool>,
    names: usize,
    prefix: usize,
    fast: bool,
    uplinks: bool,
}

const COMBOS: [(RedundancyMode, Topology); 6] = [
    (RedundancyMode::None, Topology::SingleSwitch),
    (RedundancyMode::ActiveBackup, Topology::SingleSwitch),
    (RedundancyMode::ActiveBackup, Topology::MlagPair),
    (RedundancyMode::ActiveBackup, Topology::IndependentSwitches),
    (RedundancyMode::ActiveActive, Topology::SingleSwitch),
    (RedundancyMode::ActiveActive, Topology::MlagPair),
];
const LAYOUTS: [HostLayout; 3] = [
    HostLayout::VlanSubinterfaces,
    HostLayout::VlanAwareBridge,
    HostLayout::PerVlanBridges,
];
/// Switch name pairs, first before second in natural order.
const SWITCH_NAMES: [(&str, &str); 3] = [("sw1", "sw2"), ("leaf9", "leaf10"), ("a-1", "b-2")];
const PREFIXES: [&str; 3] = ["Ethernet", "swp", "Eth1/"];
const NIC_NAMES: [&str; 4] = ["eth0", "eth1", "eno2", "ens3"];
const MTUS: [u32; 4] = [1500, 9000, 1280, 9216];
const SPARE: &str = "zz-spare";

fn net_gen() -> impl Strategy<Value = NetGen> {
    (
        1u16..=4094,
        0usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(vlan, mtu, addr, v6, gw, kind, route)| NetGen {
            vlan,
            mtu,
            addr,
            v6,
            gw,
            kind,
            route,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        0usize..6,
        0usize..3,
        prop::collection::vec(net_gen(), 1..=6),
        prop::option::of(0usize..6),
        1usize..=4,
        prop::collection::vec(1u16..=48, 4),
        prop::collection::vec(any::<bool>(), 4),
        0usize..3,
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(combo, layout, nets, native, nics, ports, sides, names, prefix, fast, uplinks)| {
                Scenario {
                    combo,
                    layout,
                    nets,
                    native,
                    nics,
                    ports,
                    sides,
                    names,
                    prefix,
                    fast,
                    uplinks,
                }
            },
        )
}

/// Where the generator cabled each NIC: (switch rank 0/1, port number).
#[derive(Debug, Clone)]
struct Built {
    intent: Intent,
    inventory: Inventory,
    /// Per NIC (inventory order): switch rank and port number.
    cable: Vec<(usize, u32)>,
}

fn build(s: &Scenario) -> Built {
    let (mode, topology) = COMBOS[s.combo];
    let layout = LAYOUTS[s.layout];
    let (a, b) = SWITCH_NAMES[s.names];
    let prefix = PREFIXES[s.prefix];

    // Networks: unique VLANs.
    let mut seen = BTreeSet::new();
    let gens: Vec<&NetGen> = s.nets.iter().filter(|g| seen.insert(g.vlan)).collect();
    let native = s.native.map(|i| i % gens.len());
    let mut networks: Vec<Network> = gens
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let mut addresses = Vec::new();
            let mut gateways = Vec::new();
            if g.addr {
                addresses.push(format!("10.{k}.0.10/24").parse::<IpNet>().unwrap());
                if g.v6 {
                    addresses.push(format!("fd00:{k}::10/64").parse().unwrap());
                }
                if g.gw {
                    gateways.push(format!("10.{k}.0.1").parse().unwrap());
                    if g.v6 {
                        gateways.push(format!("fd00:{k}::1").parse().unwrap());
                    }
                }
            }
            let routes = if g.route && g.addr && g.gw {
                vec![NetworkRoute {
                    destination: format!("172.{}.0.0/16", 16 + k).parse().unwrap(),
                    via: None,
                    metric: None,
                }]
            } else {
                Vec::new()
            };
            Network {
                name: format!("net{k}"),
                kind: [NetworkType::Wan, NetworkType::San, NetworkType::Lan][g.kind],
                vlan: VlanId::new(g.vlan as u32).unwrap(),
                mtu: Mtu::new(MTUS[g.mtu]).unwrap(),
                untagged: native == Some(k),
                addresses,
                gateways,
                default_route: None,
                routes,
            }
        })
        .collect();
    // Valid by construction: one default route; an untagged network with
    // addresses on the bond or the VLAN-aware bridge has the largest MTU.
    let mut first_gw = true;
    for n in &mut networks {
        if !n.gateways.is_empty() {
            n.default_route = Some(std::mem::replace(&mut first_gw, false));
        }
    }
    let max = networks.iter().map(|n| n.mtu).max().unwrap();
    if layout != HostLayout::PerVlanBridges {
        for n in &mut networks {
            if n.untagged && !n.addresses.is_empty() {
                n.mtu = max;
            }
        }
    }

    // NICs and their cables.
    let count = if mode == RedundancyMode::None {
        1
    } else {
        s.nics.max(2)
    };
    let two = matches!(topology, Topology::MlagPair | Topology::IndependentSwitches);
    let mut used: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut cable = Vec::new();
    let mut nics = Vec::new();
    for (i, nic_name) in NIC_NAMES.iter().enumerate().take(count) {
        let side = if !two {
            0
        } else if i < 2 {
            i
        } else {
            usize::from(s.sides[i])
        };
        let mut number = u32::from(s.ports[i]);
        while !used.insert((side, number)) {
            number += 48;
        }
        cable.push((side, number));
        nics.push(Nic {
            name: IfName::new(nic_name).unwrap(),
            mac: MacAddr([0x02, 0, 0, 0, 0, i as u8 + 1]),
            speed: None,
            lldp: Some(LldpNeighbor {
                system_name: Some([a, b][side].to_owned()),
                chassis_id: None,
                port: format!("{prefix}{number}"),
            }),
        });
    }
    let ports_of = |side: usize| -> Vec<SwitchPortFacts> {
        let mut v: Vec<SwitchPortFacts> = cable
            .iter()
            .filter(|(sd, _)| *sd == side)
            .map(|(_, n)| SwitchPortFacts {
                name: format!("{prefix}{n}"),
                ifname: Some(IfName::new(&format!("{}p{n}", ["a", "b"][side])).unwrap()),
            })
            .collect();
        v.push(SwitchPortFacts {
            name: "Uplink1".into(),
            ifname: Some(IfName::new(&format!("{}up1", ["a", "b"][side])).unwrap()),
        });
        v
    };
    let pair_mac = MacAddr([0x02, 0x5a, 0, 0, 0xaa, 1]);
    let mlag = |peer: &str| {
        (topology == Topology::MlagPair).then(|| MlagFacts {
            peer: peer.to_owned(),
            system_mac: pair_mac,
        })
    };
    let switches = vec![
        SwitchFacts {
            hostname: b.to_owned(),
            chassis_id: None,
            system_mac: None,
            mlag: mlag(a),
            ports: ports_of(1),
            uplinks: if s.uplinks {
                vec!["Uplink1".into()]
            } else {
                vec![]
            },
            bridge: None,
        },
        SwitchFacts {
            hostname: a.to_owned(),
            chassis_id: None,
            system_mac: Some(MacAddr([0x02, 0x5a, 0, 0, 0xbb, 1])),
            mlag: mlag(b),
            ports: ports_of(0),
            uplinks: if s.uplinks {
                vec!["Uplink1".into()]
            } else {
                vec![]
            },
            bridge: None,
        },
        SwitchFacts {
            hostname: SPARE.to_owned(),
            chassis_id: None,
            system_mac: None,
            mlag: None,
            ports: Vec::new(),
            uplinks: Vec::new(),
            bridge: None,
        },
    ];
    Built {
        intent: Intent {
            server: "srv".into(),
            networks,
            redundancy: Redundancy {
                mode,
                topology,
                lacp_rate: Some(if s.fast {
                    LacpRate::Fast
                } else {
                    LacpRate::Slow
                }),
                lacp_fallback: None,
                lag_id: None,
                bond_options: Default::default(),
            },
            host: HostOptions {
                layout,
                ..HostOptions::default()
            },
            nics: None,
        },
        inventory: Inventory { nics, switches },
        cable,
    }
}

// ------------------------------------------------------------- interpreter

/// VLAN membership as carried on a wire: tagged VIDs and the untagged one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wire {
    tagged: BTreeSet<u16>,
    untagged: Option<u16>,
}

fn wire_of_port_vlan(pv: &PortVlan) -> Wire {
    let mut w = Wire::default();
    for t in &pv.trunk_tags {
        match (t.id, t.id_range) {
            (Some(id), None) => {
                w.tagged.insert(id.get());
            }
            (None, Some(r)) => w.tagged.extend(r.min.get()..=r.max.get()),
            _ => panic!("bad trunk tag {t:?}"),
        }
    }
    match pv.mode {
        PortVlanMode::Access => w.untagged = pv.tag.map(|t| t.get()),
        PortVlanMode::Trunk => {
            if pv.enable_native {
                w.untagged = pv.tag.map(|t| t.get());
            }
        }
    }
    w
}

fn iface<'a>(s: &'a NetworkState, name: &str) -> &'a Interface {
    s.interface(name)
        .unwrap_or_else(|| panic!("no interface {name} in\n{s:#?}"))
}

fn addrs(i: &Interface) -> BTreeSet<IpNet> {
    [&i.ipv4, &i.ipv6]
        .into_iter()
        .flatten()
        .flat_map(|c| &c.address)
        .map(|a| IpNet::new(a.ip, a.prefix_length).unwrap())
        .collect()
}

/// What the host carries on its uplink: the wire membership, and for each
/// wire VLAN (None = untagged) the interface terminating it, if any.
struct HostView {
    wire: Wire,
    l3: BTreeMap<Option<u16>, String>,
}

fn host_view(c: &Compiled, uplink: &str) -> HostView {
    let s = &c.host.state;
    let mut wire = Wire::default();
    let mut l3: BTreeMap<Option<u16>, String> = BTreeMap::new();
    let bridge_of = |port: &str| {
        s.interfaces.iter().find(|b| {
            b.bridge
                .as_ref()
                .is_some_and(|br| br.port.iter().any(|p| p.name.as_str() == port))
        })
    };
    match bridge_of(uplink) {
        Some(br) if br.bridge.as_ref().unwrap().options.vlan_filtering == Some(true) => {
            // A VLAN-aware bridge over the uplink.
            let port = br
                .bridge
                .as_ref()
                .unwrap()
                .port
                .iter()
                .find(|p| p.name.as_str() == uplink)
                .unwrap();
            wire = wire_of_port_vlan(port.vlan.as_ref().expect("uplink port has VLANs"));
            // The bridge's own VLANs (`bridge vlan ... self`), as a wire.
            let own = br
                .bridge
                .as_ref()
                .unwrap()
                .vlan
                .as_ref()
                .map(wire_of_port_vlan);
            for v in s
                .interfaces
                .iter()
                .filter(|v| v.vlan.as_ref().is_some_and(|vc| vc.base_iface == br.name))
            {
                let vid = v.vlan.as_ref().unwrap().id;
                assert!(
                    own.as_ref().is_some_and(|o| o.tagged.contains(&vid.get())),
                    "{} on {} needs the bridge in VLAN {vid} (self)",
                    v.name,
                    br.name
                );
                assert!(
                    wire.tagged.contains(&vid.get()),
                    "{} not on the trunk",
                    v.name
                );
                l3.insert(Some(vid.get()), v.name.to_string());
            }
            // Nothing more: the bridge itself is in no VLAN it does not use.
            let used: BTreeSet<u16> = l3.keys().flatten().copied().collect();
            assert_eq!(
                own.as_ref().map(|o| o.tagged.clone()).unwrap_or_default(),
                used,
                "bridge {} self tagged VLANs are its VLAN interfaces'",
                br.name
            );
            if addrs(br).is_empty() {
                assert_eq!(own.as_ref().and_then(|o| o.untagged), None);
            } else {
                let pvid = own.as_ref().and_then(|o| o.untagged);
                assert_eq!(
                    pvid, wire.untagged,
                    "bridge self PVID is the port's native VLAN"
                );
                l3.insert(None, br.name.to_string());
            }
        }
        Some(br) => {
            // A plain bridge over the uplink: untagged.
            wire.untagged = Some(0);
            l3.insert(None, br.name.to_string());
        }
        None => {
            wire.untagged = Some(0);
            if !addrs(iface(s, uplink)).is_empty() {
                l3.insert(None, uplink.to_owned());
            }
        }
    }
    for v in s.interfaces.iter().filter(|v| {
        v.vlan
            .as_ref()
            .is_some_and(|vc| vc.base_iface.as_str() == uplink)
    }) {
        let vid = v.vlan.as_ref().unwrap().id.get();
        assert!(wire.tagged.insert(vid), "VLAN {vid} twice on the uplink");
        let term = bridge_of(v.name.as_str())
            .map(|b| b.name.to_string())
            .unwrap_or_else(|| v.name.to_string());
        l3.insert(Some(vid), term);
    }
    HostView { wire, l3 }
}

fn bare(state: &NetworkState) -> Observed {
    // Built from YAML rather than struct literals: the observed model's
    // fields may grow, with defaults.
    let links: Vec<String> = state
        .interfaces
        .iter()
        .filter(|i| i.kind == InterfaceType::Ethernet)
        .enumerate()
        .map(|(k, i)| {
            let mac = i
                .mac_address
                .unwrap_or(MacAddr([0x02, 0x0f, 0, 0, 0, k as u8]));
            format!(
                "  - {{ name: {}, index: {}, kind: veth, mac: '{mac}', mtu: 1500, up: true }}\n",
                i.name,
                k + 2
            )
        })
        .collect();
    hostd_core::schema::from_yaml(&format!("links:\n{}", links.concat()))
        .expect("observed model of a bare machine")
}

fn converges(state: &NetworkState) {
    let observed = bare(state);
    let own = Ownership::default();
    let p = plan(state, &observed, &own).expect("plan from a bare machine");
    let after = simulate(&observed, &p.ops).unwrap_or_else(|e| panic!("kernel model: {e}\n{p}"));
    let again = plan(state, &after, &own.after_apply(state, &p, &after)).expect("second plan");
    assert!(again.is_empty(), "does not converge:\n{again}");
}

/// Every property of a compiled valid scenario.
fn check(b: &Built, c: &Compiled) {
    let i = &b.intent;
    let (a_name, b_name) = (
        b.inventory.switches[1].hostname.as_str(),
        b.inventory.switches[0].hostname.as_str(),
    );
    let switch_name = |side: usize| [a_name, b_name][side];
    let s = &c.host.state;
    validate(s).unwrap_or_else(|e| panic!("host state does not validate: {e}"));
    converges(s);

    // Expected index order: switch rank, then port number.
    let mut order: Vec<usize> = (0..b.inventory.nics.len()).collect();
    order.sort_by_key(|&k| b.cable[k]);
    let nic_names: Vec<&str> = order
        .iter()
        .map(|&k| b.inventory.nics[k].name.as_str())
        .collect();

    // The uplink: bond or NIC.
    let max = i.networks.iter().map(|n| n.mtu).max().unwrap();
    let uplink = match i.redundancy.mode {
        RedundancyMode::None => {
            assert!(s.interfaces.iter().all(|x| x.kind != InterfaceType::Bond));
            assert_eq!(iface(s, nic_names[0]).mtu, Some(max));
            nic_names[0].to_owned()
        }
        mode => {
            let bond = iface(s, "bond0");
            assert_eq!(bond.mtu, Some(max), "the bond carries the largest MTU");
            let la = bond.link_aggregation.as_ref().unwrap();
            let ports: Vec<&str> = la.port.iter().map(|p| p.as_str()).collect();
            assert_eq!(ports, nic_names, "bond members in port index order");
            match mode {
                RedundancyMode::ActiveActive => {
                    assert_eq!(la.mode, BondMode::Lacp);
                    assert_eq!(la.options.lacp_rate, i.redundancy.lacp_rate);
                    assert!(la.options.miimon.is_some_and(|m| m > 0));
                }
                _ => {
                    assert_eq!(la.mode, BondMode::ActiveBackup);
                    assert_eq!(
                        la.options.primary.as_ref().map(|p| p.as_str()),
                        Some(nic_names[0]),
                        "port #0 is the primary"
                    );
                    assert!(la.options.miimon.is_some_and(|m| m > 0));
                }
            }
            "bond0".to_owned()
        }
    };

    // Host: every VLAN carried, nothing else; addresses where the VLAN ends.
    let view = host_view(c, &uplink);
    let tagged: BTreeSet<u16> = i
        .networks
        .iter()
        .filter(|n| !n.untagged)
        .map(|n| n.vlan.get())
        .collect();
    let native = i.networks.iter().find(|n| n.untagged);
    assert_eq!(
        view.wire.tagged, tagged,
        "host carries exactly the tagged VLANs"
    );
    if i.host.layout == HostLayout::VlanAwareBridge {
        assert_eq!(
            view.wire.untagged,
            native.map(|n| n.vlan.get()),
            "bridge port native VLAN"
        );
    }
    for n in &i.networks {
        let key = if n.untagged { None } else { Some(n.vlan.get()) };
        let want: BTreeSet<IpNet> = n.addresses.iter().copied().collect();
        match view.l3.get(&key) {
            Some(name) => {
                let x = iface(s, name);
                assert_eq!(addrs(x), want, "addresses of {} on {name}", n.name);
                assert_eq!(x.mtu, Some(n.mtu), "MTU of {} on {name}", n.name);
            }
            None => assert!(want.is_empty(), "{}'s addresses are nowhere", n.name),
        }
    }
    // No address anywhere else.
    let terminating: BTreeSet<&String> = view.l3.values().collect();
    for x in &s.interfaces {
        if !terminating.contains(&x.name.to_string()) {
            assert!(addrs(x).is_empty(), "stray addresses on {}", x.name);
        }
    }
    // Default routes: one per family with a gateway, through the network's interface.
    let with_default: Vec<&Network> = i
        .networks
        .iter()
        .filter(|n| n.default_route == Some(true))
        .collect();
    let defaults: Vec<_> = s
        .routes
        .config
        .iter()
        .filter(|r| r.destination.prefix_len() == 0)
        .collect();
    let want_defaults: usize = with_default.iter().map(|n| n.gateways.len()).sum();
    assert_eq!(defaults.len(), want_defaults, "default routes");
    for r in &defaults {
        let n = with_default[0];
        assert!(n.gateways.contains(&r.next_hop_address.unwrap()));
        let key = if n.untagged { None } else { Some(n.vlan.get()) };
        assert_eq!(
            r.next_hop_interface.as_ref().map(|x| x.to_string()),
            view.l3.get(&key).cloned()
        );
    }

    // Switch side: one port per NIC, where LLDP saw it, in index order.
    let sw = &c.switches;
    let ports = sw.ports();
    assert_eq!(ports.len(), nic_names.len());
    let want_wire = Wire {
        tagged: tagged.clone(),
        untagged: native.map(|n| n.vlan.get()),
    };
    let lag_ids: BTreeSet<u16> = ports
        .iter()
        .filter_map(|(_, p)| p.lag.as_ref().map(|l| l.id))
        .collect();
    for (idx, (host, p)) in ports.iter().enumerate() {
        let k = order[idx];
        let (side, number) = b.cable[k];
        assert_eq!(p.index, idx);
        assert_eq!(p.nic.as_str(), nic_names[idx]);
        assert_eq!(*host, switch_name(side));
        assert_eq!(
            p.port,
            format!(
                "{}{number}",
                PREFIXES
                    .iter()
                    .find(|x| p.port.starts_with(**x) && p.port[x.len()..].parse::<u32>().is_ok())
                    .unwrap()
            )
        );
        assert_eq!(p.mtu, max, "switch port MTU is the cable's");
        let w = Wire {
            tagged: p.vlans.tagged.iter().map(|v| v.get()).collect(),
            untagged: p.vlans.untagged.map(|v| v.get()),
        };
        assert_eq!(w, want_wire, "switch port {} VLANs", p.port);
        assert_eq!(p.vlans.mode == VlanMode::Access, tagged.is_empty());
        match i.redundancy.mode {
            RedundancyMode::ActiveActive => {
                let lag = p.lag.as_ref().expect("active-active ports are in a LAG");
                assert_eq!(p.lacp, LacpMode::Active);
                assert_eq!(Some(lag.rate), i.redundancy.lacp_rate);
                assert_eq!(lag.port_priority, port_priority(idx));
                if idx > 0 {
                    let prev = ports[idx - 1].1.lag.as_ref().unwrap().port_priority;
                    assert!(
                        prev < lag.port_priority,
                        "port #{idx} priority after #{}",
                        idx - 1
                    );
                }
                if i.redundancy.topology == Topology::MlagPair {
                    assert_eq!(lag.kind, LagKind::Mlag);
                    assert_eq!(lag.system_mac, Some(MacAddr([0x02, 0x5a, 0, 0, 0xaa, 1])));
                } else {
                    assert_eq!(lag.kind, LagKind::Lag);
                }
            }
            _ => {
                assert!(p.lag.is_none());
                assert_eq!(p.lacp, LacpMode::Off);
            }
        }
    }
    assert!(lag_ids.len() <= 1, "one LAG id for the server: {lag_ids:?}");

    // Linux switches: each one alone, and an MLAG pair as one namespace.
    let mut scopes: Vec<Vec<&str>> = sw
        .switches
        .iter()
        .map(|x| vec![x.hostname.as_str()])
        .collect();
    if i.redundancy.topology == Topology::MlagPair {
        scopes.push(vec![a_name, b_name]);
    }
    for scope in scopes {
        let st = linux_switch(&b.inventory.switches, &scope, std::slice::from_ref(sw))
            .unwrap_or_else(|e| panic!("linux switch {scope:?}: {e}"));
        validate(&st).unwrap_or_else(|e| panic!("switch {scope:?} does not validate: {e}"));
        converges(&st);
        let br = st
            .interfaces
            .iter()
            .find(|x| x.kind == InterfaceType::LinuxBridge)
            .expect("the switch bridge");
        let bc = br.bridge.as_ref().unwrap();
        assert_eq!(bc.options.vlan_filtering, Some(true));
        let mut carried_ports = 0;
        for (host, p) in &ports {
            if !scope.contains(host) {
                continue;
            }
            let side = usize::from(*host == b_name);
            let ifname = format!(
                "{}p{}",
                ["a", "b"][side],
                &p.port[p
                    .port
                    .trim_end_matches(|ch: char| ch.is_ascii_digit())
                    .len()..]
            );
            let port_if = iface(&st, &ifname);
            // The bridge port: the LAG's bond, or the port itself.
            let bond = st.interfaces.iter().find(|x| {
                x.link_aggregation
                    .as_ref()
                    .is_some_and(|la| la.port.iter().any(|m| m.as_str() == ifname))
            });
            let member = match bond {
                Some(bond) => {
                    assert_eq!(i.redundancy.mode, RedundancyMode::ActiveActive);
                    let la = bond.link_aggregation.as_ref().unwrap();
                    assert_eq!(la.mode, BondMode::Lacp);
                    assert_eq!(la.options.lacp_rate, i.redundancy.lacp_rate);
                    assert_eq!(bond.mtu, Some(max));
                    // Members in index order: port #0 first.
                    let idx: Vec<usize> = la
                        .port
                        .iter()
                        .map(|m| {
                            ports
                                .iter()
                                .find(|(h, q)| {
                                    let sd = usize::from(*h == b_name);
                                    format!(
                                        "{}p{}",
                                        ["a", "b"][sd],
                                        &q.port[q
                                            .port
                                            .trim_end_matches(|ch: char| ch.is_ascii_digit())
                                            .len()..]
                                    ) == m.as_str()
                                })
                                .map(|(_, q)| q.index)
                                .unwrap()
                        })
                        .collect();
                    let mut sorted = idx.clone();
                    sorted.sort();
                    assert_eq!(idx, sorted, "LAG members in index order");
                    if i.redundancy.topology == Topology::MlagPair {
                        assert_eq!(
                            la.options.ad_actor_system,
                            Some(MacAddr([0x02, 0x5a, 0, 0, 0xaa, 1]))
                        );
                    }
                    bond.name.to_string()
                }
                None => {
                    assert_ne!(i.redundancy.mode, RedundancyMode::ActiveActive);
                    assert_eq!(port_if.mtu, Some(max));
                    ifname.clone()
                }
            };
            let bp = bc
                .port
                .iter()
                .find(|x| x.name.as_str() == member)
                .unwrap_or_else(|| panic!("{member} is not a port of the switch bridge"));
            let w = wire_of_port_vlan(bp.vlan.as_ref().unwrap());
            assert_eq!(w, want_wire, "switch bridge port {member} VLANs");
            // Same tagging on both ends: what the host's uplink sends.
            assert_eq!(w.tagged, view.wire.tagged);
            if i.host.layout == HostLayout::VlanAwareBridge {
                assert_eq!(w.untagged, view.wire.untagged);
            }
            carried_ports += 1;
        }
        assert!(carried_ports > 0);
        // No VLAN leaks to any other bridge port: only uplinks exist besides.
        for bp in &bc.port {
            let w = wire_of_port_vlan(bp.vlan.as_ref().unwrap());
            let mut all = tagged.clone();
            all.extend(native.map(|n| n.vlan.get()));
            let mut got = w.tagged.clone();
            got.extend(w.untagged);
            assert!(
                got.is_subset(&all),
                "{} carries {got:?}, beyond {all:?}",
                bp.name
            );
            if bp.name.as_str().ends_with("up1") {
                assert!(w.untagged.is_none());
                assert_eq!(got, all, "uplink carries every VLAN in use");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn compiled_intents_connect_both_ends(s in scenario()) {
        let b = build(&s);
        let c = compile(&b.intent, &b.inventory)
            .unwrap_or_else(|e| panic!("valid scenario refused: {e}\n{:#?}", b.intent));
        check(&b, &c);

        // Deterministic: the inventory's order does not matter.
        for perm in 0..2 {
            let mut inv = b.inventory.clone();
            if perm == 0 {
                reversed(&mut inv.nics);
                reversed(&mut inv.switches);
            } else {
                rotated(&mut inv.nics);
                rotated(&mut inv.switches);
            }
            let again = compile(&b.intent, &inv).expect("permuted inventory compiles");
            prop_assert_eq!(&again, &c);
            prop_assert_eq!(
                serde_norway::to_string(&again.host.state).unwrap(),
                serde_norway::to_string(&c.host.state).unwrap()
            );
        }
    }

    #[test]
    fn contradicting_cabling_is_refused_naming_the_nic(s in scenario(), pick in 0usize..4, how in 0usize..3) {
        let b = build(&s);
        let n = b.inventory.nics.len();
        let k = pick % n;
        let mut inv = b.inventory.clone();
        let name = inv.nics[k].name.to_string();
        let (path, also) = match how {
            0 => {
                inv.nics[k].lldp = None;
                (format!("inventory.nics[{k}].lldp"), None)
            }
            1 if n > 1 => {
                let other = (k + 1) % n;
                inv.nics[k].lldp = inv.nics[other].lldp.clone();
                let other_name = inv.nics[other].name.to_string();
                // Reported on the NIC whose name sorts last.
                let at = if natural(&name, &other_name) { k } else { other };
                (format!("inventory.nics[{at}].lldp.port"), Some(other_name))
            }
            2 if b.intent.redundancy.topology == Topology::MlagPair => {
                inv.nics[k].lldp.as_mut().unwrap().system_name = Some(SPARE.into());
                (format!("inventory.nics[{k}].lldp"), None)
            }
            _ => {
                inv.nics[k].lldp = None;
                (format!("inventory.nics[{k}].lldp"), None)
            }
        };
        let err = compile(&b.intent, &inv).expect_err("contradicting cabling must be refused");
        prop_assert!(
            err.0.iter().any(|e| e.path == path && e.reason.contains(&name)),
            "no error at {} naming {}: {}", path, name, err
        );
        if let Some(other) = also {
            prop_assert!(err.to_string().contains(&other));
        }
    }

    #[test]
    fn natural_order_is_a_total_order(a in "[a-zA-Z/]{0,3}[0-9]{0,3}[a-z]{0,2}[0-9]{0,2}",
                                      b in "[a-zA-Z/]{0,3}[0-9]{0,3}[a-z]{0,2}[0-9]{0,2}",
                                      c in "[a-zA-Z/]{0,3}[0-9]{0,3}[a-z]{0,2}[0-9]{0,2}") {
        use hostd_core::intent::natural::natural_cmp;
        use std::cmp::Ordering::*;
        prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
        prop_assert_eq!(natural_cmp(&a, &b) == Equal, a == b);
        if natural_cmp(&a, &b) != Greater && natural_cmp(&b, &c) != Greater {
            prop_assert_ne!(natural_cmp(&a, &c), Greater);
        }
    }

    #[test]
    fn natural_order_sorts_numbered_ports_by_number(x in 0u32..100_000, y in 0u32..100_000, p in "[A-Za-z]{1,8}") {
        use hostd_core::intent::natural::natural_cmp;
        prop_assert_eq!(natural_cmp(&format!("{p}{x}"), &format!("{p}{y}")), x.cmp(&y));
    }
}

fn natural(a: &str, b: &str) -> bool {
    hostd_core::intent::natural::natural_cmp(a, b) == std::cmp::Ordering::Greater
}

fn reversed<T>(v: &mut [T]) {
    v.reverse();
}

fn rotated<T>(v: &mut [T]) {
    if !v.is_empty() {
        v.rotate_left(1);
    }
}

#[test]
fn two_servers_on_one_switch_and_their_conflicts() {
    // Two servers on the same single switch: one bridge, two LAGs.
    let mk = |server: &str, ports: [u16; 2], first_nic: u8| {
        let mut s = Scenario {
            combo: 4,
            layout: 0,
            nets: vec![NetGen {
                vlan: 100,
                mtu: 1,
                addr: false,
                v6: false,
                gw: false,
                kind: 0,
                route: false,
            }],
            native: None,
            nics: 2,
            ports: vec![ports[0], ports[1], 3, 4],
            sides: vec![false; 4],
            names: 0,
            prefix: 0,
            fast: true,
            uplinks: true,
        };
        s.nets.push(NetGen {
            vlan: 200 + u16::from(first_nic),
            mtu: 0,
            addr: false,
            v6: false,
            gw: false,
            kind: 2,
            route: false,
        });
        let mut b = build(&s);
        b.intent.server = server.into();
        for n in &mut b.inventory.nics {
            n.mac.0[4] = first_nic;
        }
        b
    };
    let one = mk("srv1", [1, 2], 1);
    let two = mk("srv2", [5, 6], 2);
    let c1 = compile(&one.intent, &one.inventory).unwrap();
    let c2 = compile(&two.intent, &two.inventory).unwrap();
    // Facts of the union of both servers' ports.
    let mut facts = one.inventory.switches.clone();
    for (f, g) in facts.iter_mut().zip(&two.inventory.switches) {
        for p in &g.ports {
            if !f.ports.contains(p) {
                f.ports.push(p.clone());
            }
        }
    }
    let st = linux_switch(
        &facts,
        &["sw1"],
        &[c1.switches.clone(), c2.switches.clone()],
    )
    .unwrap();
    validate(&st).unwrap();
    converges(&st);
    let bonds: Vec<&str> = st
        .interfaces
        .iter()
        .filter(|x| x.kind == InterfaceType::Bond)
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(bonds, ["Po1", "Po5"]);
    let uplink = st
        .interfaces
        .iter()
        .find_map(|x| x.bridge.as_ref())
        .unwrap()
        .port
        .iter()
        .find(|p| p.name.as_str() == "aup1")
        .unwrap();
    assert_eq!(
        wire_of_port_vlan(uplink.vlan.as_ref().unwrap()).tagged,
        BTreeSet::from([100, 201, 202]),
        "the uplink carries both servers' VLANs"
    );
    // Each server's LAG carries its own VLANs only.
    for (bond, other) in [("Po1", 202), ("Po5", 201)] {
        let bp = st
            .interfaces
            .iter()
            .find_map(|x| x.bridge.as_ref())
            .unwrap()
            .port
            .iter()
            .find(|p| p.name.as_str() == bond)
            .unwrap();
        assert!(
            !wire_of_port_vlan(bp.vlan.as_ref().unwrap())
                .tagged
                .contains(&other),
            "{bond} leaks VLAN {other}"
        );
    }

    // The same port claimed by two servers.
    let clash = mk("srv3", [2, 9], 3);
    let c3 = compile(&clash.intent, &clash.inventory).unwrap();
    let err = linux_switch(
        &facts,
        &["sw1"],
        &[c1.switches.clone(), c3.switches.clone()],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("Ethernet2 is already the port of server srv1"),
        "{err}"
    );
    // The same LAG id for two servers.
    let mut c4 = c2.switches.clone();
    for s in &mut c4.switches {
        for p in &mut s.ports {
            if let Some(l) = &mut p.lag {
                l.id = 1;
                l.name = "Po1".into();
            }
        }
    }
    let err = linux_switch(&facts, &["sw1"], &[c1.switches.clone(), c4]).unwrap_err();
    assert!(
        err.to_string()
            .contains("LAG id already used by server srv1"),
        "{err}"
    );
    // An unknown switch.
    let err = linux_switch(&facts, &["sw9"], &[c1.switches]).unwrap_err();
    assert_eq!(err.0[0].path, "hostnames[0]");
}

#[test]
fn vlan_aware_bridge_gets_its_own_vlans_for_host_addresses_only() {
    let mut s = Scenario {
        combo: 4,
        layout: 1,
        nets: vec![NetGen {
            vlan: 100,
            mtu: 0,
            addr: true,
            v6: false,
            gw: true,
            kind: 0,
            route: false,
        }],
        native: None,
        nics: 2,
        ports: vec![1, 2, 3, 4],
        sides: vec![false; 4],
        names: 0,
        prefix: 0,
        fast: true,
        uplinks: false,
    };
    let b = build(&s);
    let c = compile(&b.intent, &b.inventory).unwrap();
    let br = iface(&c.host.state, "br0").bridge.as_ref().unwrap();
    let own = br.vlan.as_ref().expect("bridge self VLANs");
    assert_eq!(wire_of_port_vlan(own).tagged, BTreeSet::from([100]));
    assert_eq!(wire_of_port_vlan(own).untagged, None);
    // VM networks only: the bridge itself is in no VLAN of the intent.
    s.nets[0].addr = false;
    let b = build(&s);
    let c = compile(&b.intent, &b.inventory).unwrap();
    let br = iface(&c.host.state, "br0").bridge.as_ref().unwrap();
    assert!(br.vlan.is_none());
}

#[test]
fn compiled_round_trips_through_json() {
    let s = Scenario {
        combo: 5,
        layout: 1,
        nets: vec![NetGen {
            vlan: 100,
            mtu: 1,
            addr: true,
            v6: true,
            gw: true,
            kind: 0,
            route: true,
        }],
        native: None,
        nics: 3,
        ports: vec![7, 2, 9, 4],
        sides: vec![true; 4],
        names: 1,
        prefix: 2,
        fast: false,
        uplinks: true,
    };
    let b = build(&s);
    let c = compile(&b.intent, &b.inventory).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    let back: Compiled = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    // And the inputs too.
    let i: Intent = Intent::parse(&serde_json::to_string(&b.intent).unwrap()).unwrap();
    assert_eq!(i, b.intent);
    let v: Inventory = Inventory::parse(&serde_norway::to_string(&b.inventory).unwrap()).unwrap();
    assert_eq!(v, b.inventory);
}
