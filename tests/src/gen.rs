//! A seeded generator of valid hostd documents over the whole schema, and of
//! transitions between them, for the differential test
//! (`tests/tests/kernel_hostd.rs`, `differential_*`) and the planner's model
//! test (`tests/tests/planner_model.rs`).
//!
//! A document is built on a host with NICs `eth0..ethN`: bonds in every mode
//! with random options valid for the mode (from hostd-core's option table),
//! VLANs (802.1Q and 802.1ad, QinQ), per-VLAN bridges and one VLAN-aware
//! bridge with access and trunk ports, MTUs (declared or not), IPv4 and IPv6
//! addresses, routes (default, static, ECMP with weights, other tables and
//! metrics, device routes), links left down, DNS. Every document passes
//! `hostd_core::validate::validate` by construction (the generator checks and
//! fails loudly when it does not). A transition is either a small mutation
//! (one option, one VLAN, one MTU, one address, one route) or a fresh
//! document.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use hostd_core::{
    bond::{
        AdSelect, ArpAllTargets, ArpValidate, BondConfig, BondMode, BondOptions, FailOverMac,
        LacpRate, PrimaryReselect, XmitHashPolicy,
    },
    schema::{
        BridgeConfig, BridgeOptions, BridgePort, DnsConfig, DnsResolver, IfState, Interface,
        InterfaceType, IpAddress, IpConfig, NetworkState, NextHop, PortVlan, PortVlanMode, Route,
        RouteState, Routes, StpOptions, TrunkTag, VlanConfig, VlanProtocol, VlanRange,
    },
    types::{IfName, MacAddr, Mtu, VlanId},
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

/// The generator's random source, from a seed.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn name(s: &str) -> IfName {
    IfName::new(s).unwrap_or_else(|e| panic!("generator made a bad name {s:?}: {e}"))
}

fn vid(v: u16) -> VlanId {
    VlanId::new(u32::from(v)).unwrap_or_else(|e| panic!("generator made a bad VLAN {v}: {e}"))
}

fn mtu(m: u32) -> Mtu {
    Mtu::new(m).unwrap_or_else(|e| panic!("generator made a bad MTU {m}: {e}"))
}

/// Builds documents for a host with these NICs.
pub struct Generator {
    nics: Vec<String>,
}

/// An interface that carries IP (for addresses and routes).
#[derive(Clone)]
struct L3 {
    name: String,
    /// Subnet number k: 10.k.0.0/24 and 2001:db8:k::/64.
    subnet: u8,
    v4: bool,
    v6: bool,
    up: bool,
}

impl Generator {
    /// A generator for a host with `nics` (e.g. eth0..eth5).
    pub fn new(nics: &[&str]) -> Self {
        Self {
            nics: nics.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A random valid document.
    pub fn document(&self, r: &mut impl Rng) -> NetworkState {
        let mut d = NetworkState::default();
        let mut nics = self.nics.clone();
        nics.shuffle(r);
        let mut l3: Vec<L3> = Vec::new();
        let mut subnet: u8 = r.random_range(1..50);
        let mut next_subnet = || {
            subnet = subnet.wrapping_add(r_step(subnet));
            if subnet == 0 {
                subnet = 1;
            }
            subnet
        };
        fn r_step(s: u8) -> u8 {
            1 + s % 3
        }

        // Bonds.
        let mut carriers: Vec<(String, Option<u32>)> = Vec::new();
        let n_bonds = r.random_range(0..=2usize);
        for b in 0..n_bonds {
            let n_ports = r.random_range(1..=3usize).min(nics.len());
            if n_ports == 0 {
                break;
            }
            let ports: Vec<String> = nics.drain(..n_ports).collect();
            let bname = format!("bond{b}");
            let mode = BondMode::ALL[r.random_range(0..BondMode::ALL.len())];
            let options = bond_options(r, mode, &ports);
            let bmtu = pick_mtu(r);
            for p in &ports {
                let mut i = Interface::new(name(p), InterfaceType::Ethernet);
                if r.random_bool(0.2) {
                    i.mtu = bmtu.map(mtu);
                }
                d.interfaces.push(i);
            }
            let mut i = Interface::new(name(&bname), InterfaceType::Bond);
            i.mtu = bmtu.map(mtu);
            i.link_aggregation = Some(BondConfig {
                mode,
                port: ports.iter().map(|p| name(p)).collect(),
                options,
            });
            d.interfaces.push(i);
            carriers.push((bname, bmtu));
        }
        // Standalone NICs (some left undeclared; at least one interface).
        for n in nics.drain(..) {
            if r.random_bool(0.75) || (carriers.is_empty() && d.interfaces.is_empty()) {
                let m = pick_mtu(r);
                let mut i = Interface::new(name(&n), InterfaceType::Ethernet);
                i.mtu = m.map(mtu);
                d.interfaces.push(i);
                carriers.push((n, m));
            }
        }

        // What each carrier does.
        let mut aware_ports: Vec<(String, Option<u32>)> = Vec::new();
        let mut vlan_ids: BTreeSet<u16> = BTreeSet::new();
        let mut fresh_vid = |r: &mut dyn rand::RngCore| loop {
            let v = r.random_range(2..4000u16);
            if vlan_ids.insert(v) {
                return v;
            }
        };
        let mut n_bridges = 0;
        for (c, cmtu) in &carriers {
            match r.random_range(0..4) {
                0 => l3.push(L3 {
                    name: c.clone(),
                    subnet: next_subnet(),
                    v4: r.random_bool(0.8),
                    v6: r.random_bool(0.5),
                    up: true,
                }),
                1 | 2 => {
                    // VLANs on it, each with an address or in its own bridge.
                    for _ in 0..r.random_range(1..=3) {
                        let id = fresh_vid(r);
                        let qinq = r.random_bool(0.15);
                        let vname = format!("{c}.{id}");
                        if vname.len() > 15 {
                            continue;
                        }
                        let mut v = Interface::new(name(&vname), InterfaceType::Vlan);
                        v.vlan = Some(VlanConfig {
                            base_iface: name(c),
                            id: vid(id),
                            protocol: if qinq {
                                VlanProtocol::Dot1Ad
                            } else {
                                VlanProtocol::Dot1Q
                            },
                        });
                        // A VLAN's MTU, when declared, fits its base's.
                        if let Some(bm) = cmtu {
                            if r.random_bool(0.3) {
                                v.mtu = Some(mtu((*bm).min(1500)));
                            }
                        }
                        let vmtu = v.mtu.map(|m| m.get()).or(*cmtu);
                        d.interfaces.push(v);
                        let mut top = vname.clone();
                        let mut top_mtu = vmtu;
                        if qinq {
                            // A C-tag VLAN inside the S-tag one.
                            let inner = format!("q{n}.{}", id % 100, n = d.interfaces.len());
                            let mut q = Interface::new(name(&inner), InterfaceType::Vlan);
                            q.vlan = Some(VlanConfig {
                                base_iface: name(&vname),
                                id: vid(r.random_range(2..100)),
                                protocol: VlanProtocol::Dot1Q,
                            });
                            d.interfaces.push(q);
                            top = inner;
                        }
                        if r.random_bool(0.5) {
                            let br = format!("vbr{n_bridges}");
                            n_bridges += 1;
                            let mut b = Interface::new(name(&br), InterfaceType::LinuxBridge);
                            b.bridge = Some(BridgeConfig {
                                vlan: None,
                                options: bridge_options(r, false),
                                port: vec![BridgePort {
                                    name: name(&top),
                                    vlan: None,
                                }],
                            });
                            if let Some(m) = top_mtu.filter(|_| r.random_bool(0.3)) {
                                b.mtu = Some(mtu(m.min(1500)));
                            }
                            top_mtu = b.mtu.map(|m| m.get());
                            d.interfaces.push(b);
                            top = br;
                        }
                        let _ = top_mtu;
                        l3.push(L3 {
                            name: top,
                            subnet: next_subnet(),
                            v4: r.random_bool(0.8),
                            v6: r.random_bool(0.4),
                            up: true,
                        });
                    }
                }
                _ => aware_ports.push((c.clone(), *cmtu)),
            }
        }
        // The VLAN-aware bridge.
        if !aware_ports.is_empty() {
            let mut ports = Vec::new();
            let mut all: Vec<u16> = Vec::new();
            for (p, _) in &aware_ports {
                let vlan = if r.random_bool(0.4) {
                    let t = fresh_vid(r);
                    all.push(t);
                    PortVlan {
                        mode: PortVlanMode::Access,
                        tag: Some(vid(t)),
                        enable_native: false,
                        trunk_tags: Vec::new(),
                    }
                } else {
                    let lo = r.random_range(100..3000u16);
                    let hi = lo + r.random_range(0..200u16);
                    let single = fresh_vid(r);
                    let in_range = (lo..=hi).contains(&single);
                    let mut tags = vec![TrunkTag {
                        id: None,
                        id_range: Some(VlanRange {
                            min: vid(lo),
                            max: vid(hi),
                        }),
                    }];
                    if !in_range {
                        tags.push(TrunkTag {
                            id: Some(vid(single)),
                            id_range: None,
                        });
                    }
                    all.push(lo);
                    let native = r.random_bool(0.4).then(|| loop {
                        let n = r.random_range(2..100u16);
                        if !(lo..=hi).contains(&n) && n != single {
                            break n;
                        }
                    });
                    PortVlan {
                        mode: PortVlanMode::Trunk,
                        tag: native.map(vid),
                        enable_native: native.is_some(),
                        trunk_tags: tags,
                    }
                };
                ports.push(BridgePort {
                    name: name(p),
                    vlan: Some(vlan),
                });
            }
            let mut b = Interface::new(name("br0"), InterfaceType::LinuxBridge);
            // The bridge's own VLANs: where its address lives.
            let own = match r.random_range(0..3) {
                0 => None,
                1 => Some(PortVlan {
                    mode: PortVlanMode::Access,
                    tag: Some(vid(fresh_vid(r))),
                    enable_native: false,
                    trunk_tags: Vec::new(),
                }),
                _ => {
                    let t = fresh_vid(r);
                    let native = fresh_vid(r);
                    Some(PortVlan {
                        mode: PortVlanMode::Trunk,
                        tag: Some(vid(native)),
                        enable_native: true,
                        trunk_tags: vec![TrunkTag {
                            id: Some(vid(t)),
                            id_range: None,
                        }],
                    })
                }
            };
            b.bridge = Some(BridgeConfig {
                vlan: own,
                options: bridge_options(r, true),
                port: ports,
            });
            let min_port = aware_ports.iter().filter_map(|(_, m)| *m).min();
            if r.random_bool(0.4) {
                // At most the smallest port's MTU: a jumbo bond under a
                // bridge of 1500 is the classic case.
                let m = match min_port {
                    Some(9000) if r.random_bool(0.5) => 9000,
                    Some(p) => p.min(1500),
                    None => 1500,
                };
                b.mtu = Some(mtu(m));
            }
            d.interfaces.push(b);
            if r.random_bool(0.6) {
                l3.push(L3 {
                    name: "br0".into(),
                    subnet: next_subnet(),
                    v4: true,
                    v6: r.random_bool(0.4),
                    up: true,
                });
            }
        }

        // Some leaf L3 links stay down (never the ones routes use).
        for x in l3.iter_mut() {
            if r.random_bool(0.1) {
                x.up = false;
            }
        }
        // Addresses.
        for x in &l3 {
            let Some(i) = d.interfaces.iter_mut().find(|i| i.name.as_str() == x.name) else {
                continue;
            };
            if !x.up {
                i.state = IfState::Down;
            }
            let host = r.random_range(2..250u8);
            if x.v4 {
                i.ipv4 = Some(IpConfig {
                    address: vec![IpAddress {
                        ip: IpAddr::V4(Ipv4Addr::new(10, x.subnet, 0, host)),
                        prefix_length: 24,
                    }],
                });
            } else if r.random_bool(0.3) {
                // Declared empty: no IPv4 address at all.
                i.ipv4 = Some(IpConfig::default());
            }
            if x.v6 {
                i.ipv6 = Some(IpConfig {
                    address: vec![IpAddress {
                        ip: IpAddr::V6(Ipv6Addr::new(
                            0x2001,
                            0xdb8,
                            u16::from(x.subnet),
                            0,
                            0,
                            0,
                            0,
                            u16::from(host),
                        )),
                        prefix_length: 64,
                    }],
                });
            }
        }
        // A link whose base is down cannot be up.
        propagate_down(&mut d);

        // Routes, through links that are up.
        let usable: Vec<&L3> = l3
            .iter()
            .filter(|x| d.interface(&x.name).is_some_and(|i| i.state == IfState::Up))
            .collect();
        let v4: Vec<&&L3> = usable.iter().filter(|x| x.v4).collect();
        let v6: Vec<&&L3> = usable.iter().filter(|x| x.v6).collect();
        let mut keys = BTreeSet::new();
        let mut add = |route: Route, d: &mut NetworkState| {
            if keys.insert(route.key()) {
                d.routes.config.push(route);
            }
        };
        if let Some(x) = v4.first().filter(|_| r.random_bool(0.6)) {
            add(
                route(
                    "0.0.0.0/0",
                    Some(gw4(x.subnet)),
                    r.random_bool(0.7).then(|| x.name.clone()),
                ),
                &mut d,
            );
        }
        for _ in 0..r.random_range(0..3) {
            if v4.is_empty() {
                break;
            }
            let x = v4[r.random_range(0..v4.len())];
            let mut rt = route(
                &format!(
                    "172.{}.{}.0/24",
                    16 + r.random_range(0..15u8),
                    r.random_range(0..255u8)
                ),
                Some(gw4(x.subnet)),
                r.random_bool(0.6).then(|| x.name.clone()),
            );
            if r.random_bool(0.3) {
                rt.metric = Some(r.random_range(1..500));
            }
            if r.random_bool(0.3) {
                rt.table_id = Some(r.random_range(100..200));
            }
            add(rt, &mut d);
        }
        if v4.len() >= 2 && r.random_bool(0.5) {
            let a = v4[0];
            let b = v4[1];
            let mut rt = route("192.168.200.0/24", None, None);
            rt.multipath = vec![
                NextHop {
                    next_hop_address: Some(gw4(a.subnet)),
                    next_hop_interface: Some(name(&a.name)),
                    weight: Some(r.random_range(1..5)),
                },
                NextHop {
                    next_hop_address: Some(gw4(b.subnet)),
                    next_hop_interface: Some(name(&b.name)),
                    weight: Some(r.random_range(1..5)),
                },
            ];
            add(rt, &mut d);
        }
        if let Some(x) = v4.last().filter(|_| r.random_bool(0.3)) {
            // A device route (scope link).
            add(route("198.18.0.0/24", None, Some(x.name.clone())), &mut d);
        }
        if let Some(x) = v6.first().filter(|_| r.random_bool(0.5)) {
            let mut rt = route(
                "2001:db8:ffff::/48",
                Some(gw6(x.subnet)),
                Some(x.name.clone()),
            );
            if r.random_bool(0.3) {
                rt.metric = Some(r.random_range(1..2000));
            }
            add(rt, &mut d);
            if r.random_bool(0.4) {
                add(
                    route("::/0", Some(gw6(x.subnet)), Some(x.name.clone())),
                    &mut d,
                );
            }
        }
        if r.random_bool(0.3) {
            d.dns_resolver = Some(DnsResolver {
                config: DnsConfig {
                    server: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, r.random_range(1..250)))],
                    search: vec![format!("d{}.example", r.random_range(0..9))],
                },
            });
        }
        if let Err(e) = hostd_core::validate::validate(&d) {
            panic!(
                "the generator made an invalid document ({e}):\n{}",
                serde_norway::to_string(&d).unwrap_or_default()
            );
        }
        d
    }

    /// A transition from `from`: a small change of it, or a new document.
    pub fn next(&self, r: &mut impl Rng, from: &NetworkState) -> NetworkState {
        if r.random_bool(0.35) {
            return self.document(r);
        }
        for _ in 0..20 {
            let mut d = from.clone();
            mutate(r, &mut d);
            // A document without interfaces is refused (it would tear the
            // network down): that is its own test.
            if !d.interfaces.is_empty() && hostd_core::validate::validate(&d).is_ok() {
                return d;
            }
        }
        self.document(r)
    }
}

fn gw4(subnet: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, subnet, 0, 1))
}

fn gw6(subnet: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        u16::from(subnet),
        0,
        0,
        0,
        0,
        1,
    ))
}

fn route(dst: &str, gw: Option<IpAddr>, dev: Option<String>) -> Route {
    Route {
        destination: dst
            .parse()
            .unwrap_or_else(|e| panic!("generator route {dst}: {e}")),
        next_hop_address: gw,
        next_hop_interface: dev.map(|d| name(&d)),
        multipath: Vec::new(),
        metric: None,
        table_id: None,
        state: RouteState::Present,
        protocol: None,
    }
}

fn pick_mtu(r: &mut impl Rng) -> Option<u32> {
    match r.random_range(0..6) {
        0 => Some(1500),
        1 => Some(9000),
        2 => Some(4000),
        _ => None,
    }
}

/// Links whose lower device is declared down are declared down too (a VLAN
/// cannot be up on a down base; a bridge's state is its own).
fn propagate_down(d: &mut NetworkState) {
    loop {
        let down: BTreeSet<String> = d
            .interfaces
            .iter()
            .filter(|i| i.state == IfState::Down)
            .map(|i| i.name.to_string())
            .collect();
        let mut changed = false;
        for i in d.interfaces.iter_mut() {
            if i.state != IfState::Up {
                continue;
            }
            if let Some(v) = &i.vlan {
                if down.contains(v.base_iface.as_str()) {
                    i.state = IfState::Down;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Routes through down links are dropped by the caller; addresses stay.
}

/// Random options valid for `mode` (per hostd-core's option table and the
/// cross-option rules validation checks).
pub fn bond_options(r: &mut impl Rng, mode: BondMode, ports: &[String]) -> BondOptions {
    let mut o = BondOptions::default();
    let arp_modes = !matches!(
        mode,
        BondMode::Lacp | BondMode::BalanceTlb | BondMode::BalanceAlb
    );
    let use_arp = arp_modes && r.random_bool(0.25);
    if use_arp {
        o.miimon = Some(0);
        o.arp_interval = Some(r.random_range(1..10) * 100);
        o.arp_ip_target = Some(
            (0..r.random_range(1..=2))
                .map(|i| Ipv4Addr::new(192, 0, 2, 10 + i))
                .collect(),
        );
        if r.random_bool(0.5) {
            o.arp_validate = Some(ArpValidate::ALL[r.random_range(0..ArpValidate::ALL.len())]);
        }
        if r.random_bool(0.4) {
            o.arp_all_targets = Some(ArpAllTargets::ALL[r.random_range(0..2)]);
        }
        if r.random_bool(0.3) {
            o.missed_max = Some(r.random_range(1..5));
        }
    } else if r.random_bool(0.8) {
        let m = [0, 100, 200][r.random_range(0..3)];
        o.miimon = Some(m);
        if m > 0 {
            if r.random_bool(0.4) {
                o.updelay = Some(m * r.random_range(0..3));
            }
            if r.random_bool(0.4) {
                o.downdelay = Some(m * r.random_range(0..3));
            }
        }
    }
    if r.random_bool(0.2) {
        o.use_carrier = Some(r.random_bool(0.5));
    }
    if r.random_bool(0.3) {
        o.min_links = Some(r.random_range(0..3));
    }
    if r.random_bool(0.2) {
        o.resend_igmp = Some(r.random_range(0..4));
    }
    if r.random_bool(0.2) {
        o.num_grat_arp = Some(r.random_range(0..4));
    }
    if r.random_bool(0.2) {
        o.all_slaves_active = Some(r.random_bool(0.5));
    }
    if r.random_bool(0.2) {
        o.lp_interval = Some(r.random_range(1..4));
    }
    match mode {
        BondMode::ActiveBackup | BondMode::BalanceTlb | BondMode::BalanceAlb => {
            if r.random_bool(0.5) {
                o.primary = Some(name(&ports[r.random_range(0..ports.len())]));
            }
            if r.random_bool(0.3) {
                o.primary_reselect =
                    Some(PrimaryReselect::ALL[r.random_range(0..PrimaryReselect::ALL.len())]);
            }
        }
        _ => {}
    }
    if mode == BondMode::ActiveBackup && r.random_bool(0.3) {
        o.fail_over_mac = Some(FailOverMac::ALL[r.random_range(0..FailOverMac::ALL.len())]);
    }
    if matches!(
        mode,
        BondMode::BalanceXor | BondMode::Lacp | BondMode::BalanceTlb
    ) && r.random_bool(0.5)
    {
        o.xmit_hash_policy =
            Some(XmitHashPolicy::ALL[r.random_range(0..XmitHashPolicy::ALL.len())]);
    }
    if mode == BondMode::Lacp {
        if r.random_bool(0.6) {
            o.lacp_rate = Some(LacpRate::ALL[r.random_range(0..2)]);
        }
        if r.random_bool(0.3) {
            o.ad_select = Some(AdSelect::ALL[r.random_range(0..AdSelect::ALL.len())]);
        }
        if r.random_bool(0.3) {
            o.ad_actor_sys_prio = Some(r.random_range(1..=65535));
        }
        if r.random_bool(0.3) {
            o.ad_user_port_key = Some(r.random_range(0..=1023));
        }
        if r.random_bool(0.3) {
            o.ad_actor_system = Some(MacAddr([0x02, 0, 0, 0, r.random_range(1..200), 1]));
        }
        if r.random_bool(0.2) {
            o.lacp_active = Some(r.random_bool(0.5));
        }
    }
    if mode == BondMode::BalanceRr && r.random_bool(0.3) {
        o.packets_per_slave = Some(r.random_range(0..4));
    }
    if mode == BondMode::BalanceTlb && r.random_bool(0.3) {
        o.tlb_dynamic_lb = Some(r.random_bool(0.5));
    }
    o
}

fn bridge_options(r: &mut impl Rng, aware: bool) -> BridgeOptions {
    let mut o = BridgeOptions::default();
    if r.random_bool(0.5) {
        let enabled = r.random_bool(0.3);
        o.stp = Some(StpOptions {
            enabled,
            forward_delay: r.random_bool(0.4).then(|| r.random_range(4..30)),
            hello_time: r.random_bool(0.3).then(|| r.random_range(1..10)),
            max_age: r.random_bool(0.3).then(|| r.random_range(6..40)),
            priority: r.random_bool(0.3).then(|| r.random_range(0..65535)),
        });
    }
    if aware && r.random_bool(0.3) {
        o.vlan_filtering = Some(true);
    }
    if r.random_bool(0.2) {
        o.mac_ageing_time = Some(r.random_range(10..600));
    }
    if r.random_bool(0.2) {
        o.multicast_snooping = Some(r.random_bool(0.5));
    }
    o
}

/// One small change.
fn mutate(r: &mut impl Rng, d: &mut NetworkState) {
    if d.interfaces.is_empty() {
        return;
    }
    let i = r.random_range(0..d.interfaces.len());
    match r.random_range(0..9) {
        0 => {
            // MTU up or down (on a link that is nobody's VLAN base: a VLAN
            // above must fit).
            let has_uppers = d.interfaces.iter().any(|v| {
                v.vlan
                    .as_ref()
                    .is_some_and(|v| v.base_iface == d.interfaces[i].name)
            });
            // A VLAN's MTU fits the MTU its base declares (an undeclared
            // base keeps its 1500): the host-aware check refuses more.
            let base_mtu = d.interfaces[i].vlan.as_ref().map(|v| {
                d.interface(v.base_iface.as_str())
                    .and_then(|b| b.mtu)
                    .map_or(1500, |m| m.get())
            });
            if !has_uppers {
                d.interfaces[i].mtu = pick_mtu(r)
                    .map(|m| base_mtu.map_or(m, |b| m.min(b)))
                    .map(mtu);
            }
        }
        1 => {
            // Another bond mode (options reset to valid ones).
            if let Some(b) = d.interfaces[i].link_aggregation.as_mut() {
                b.mode = BondMode::ALL[r.random_range(0..BondMode::ALL.len())];
                let ports: Vec<String> = b.port.iter().map(|p| p.to_string()).collect();
                b.options = bond_options(r, b.mode, &ports);
            }
        }
        2 => {
            // New options, same mode.
            if let Some(b) = d.interfaces[i].link_aggregation.as_mut() {
                let ports: Vec<String> = b.port.iter().map(|p| p.to_string()).collect();
                b.options = bond_options(r, b.mode, &ports);
            }
        }
        3 => {
            // Another VLAN id.
            if let Some(v) = d.interfaces[i].vlan.as_mut() {
                v.id = vid(r.random_range(2..4000));
            }
        }
        4 => {
            // Another address in the same subnet.
            if let Some(c) = d.interfaces[i].ipv4.as_mut() {
                for a in c.address.iter_mut() {
                    if let IpAddr::V4(v) = a.ip {
                        let o = v.octets();
                        a.ip = IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], r.random_range(2..250)));
                    }
                }
            }
        }
        5 => {
            // A route removed (explicitly absent, or just gone).
            if !d.routes.config.is_empty() {
                let k = r.random_range(0..d.routes.config.len());
                if r.random_bool(0.5) {
                    d.routes.config[k].state = RouteState::Absent;
                } else {
                    d.routes.config.remove(k);
                }
            }
        }
        6 => {
            // A link down (and what sits on it).
            if d.interfaces[i].kind != InterfaceType::Ethernet
                || d.interfaces.iter().all(|b| {
                    b.link_aggregation
                        .as_ref()
                        .is_none_or(|l| !l.port.contains(&d.interfaces[i].name))
                })
            {
                d.interfaces[i].state = IfState::Down;
                propagate_down(d);
                let down: BTreeSet<String> = d
                    .interfaces
                    .iter()
                    .filter(|i| i.state == IfState::Down)
                    .map(|i| i.name.to_string())
                    .collect();
                d.routes.config.retain(|rt| {
                    rt.state == RouteState::Absent
                        || rt.interfaces().iter().all(|x| !down.contains(*x))
                });
            }
        }
        7 => {
            // Bridge options changed.
            let aware = d.interfaces[i]
                .bridge
                .as_ref()
                .is_some_and(|b| b.port.iter().any(|p| p.vlan.is_some()));
            if let Some(b) = d.interfaces[i].bridge.as_mut() {
                b.options = bridge_options(r, aware);
            }
        }
        _ => {
            // A whole interface removed (with everything that names it).
            let n = d.interfaces[i].name.clone();
            remove_interface(d, &n);
        }
    }
    // Routes must still go through links that are up and carry the subnet.
    let ok: Vec<bool> = d
        .routes
        .config
        .iter()
        .map(|rt| route_still_valid(d, rt))
        .collect();
    let mut k = 0;
    d.routes.config.retain(|_| {
        k += 1;
        ok[k - 1]
    });
}

fn route_still_valid(d: &NetworkState, rt: &Route) -> bool {
    if rt.state == RouteState::Absent {
        return true;
    }
    let hops: Vec<(Option<IpAddr>, Option<&IfName>)> = if rt.multipath.is_empty() {
        vec![(rt.next_hop_address, rt.next_hop_interface.as_ref())]
    } else {
        rt.multipath
            .iter()
            .map(|h| (h.next_hop_address, h.next_hop_interface.as_ref()))
            .collect()
    };
    hops.iter().all(|(gw, dev)| {
        let carriers: Vec<&Interface> = match dev {
            Some(n) => d.interface(n.as_str()).into_iter().collect(),
            None => d.interfaces.iter().collect(),
        };
        carriers.iter().any(|i| {
            i.state == IfState::Up
                && match gw {
                    None => dev.is_some(),
                    Some(g) => [&i.ipv4, &i.ipv6].into_iter().flatten().any(|c| {
                        c.address.iter().any(|a| {
                            ipnet::IpNet::new(a.ip, a.prefix_length)
                                .is_ok_and(|n| n.trunc().contains(g))
                        })
                    }),
                }
        })
    })
}

/// Removes `n` and everything that refers to it (ports, VLANs on it,
/// routes through it), recursively.
fn remove_interface(d: &mut NetworkState, n: &IfName) {
    let uppers: Vec<IfName> = d
        .interfaces
        .iter()
        .filter(|i| i.vlan.as_ref().is_some_and(|v| &v.base_iface == n))
        .map(|i| i.name.clone())
        .collect();
    for u in uppers {
        remove_interface(d, &u);
    }
    // A bond's ports go too (they would be left without a controller,
    // which is fine, but a bond without ports is a different test).
    d.interfaces.retain(|i| &i.name != n);
    for i in d.interfaces.iter_mut() {
        if let Some(b) = i.link_aggregation.as_mut() {
            b.port.retain(|p| p != n);
            if b.options.primary.as_ref() == Some(n) {
                b.options.primary = None;
            }
        }
        if let Some(b) = i.bridge.as_mut() {
            b.port.retain(|p| &p.name != n);
        }
    }
    d.routes
        .config
        .retain(|rt| rt.state == RouteState::Absent || !rt.interfaces().contains(&n.as_str()));
    let _ = Routes::default();
}
