//! Observe: dump the kernel's links (with bond, VLAN and bridge details and,
//! through an AF_BRIDGE dump, bridge port VLANs), addresses and routes into
//! [`Observed`], the same model the planner reads.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use hostd_core::{
    model::{BondState, Link, LinkKind, Observed, VlanEntry},
    schema::{
        AdSelect, ArpAllTargets, ArpValidate, BondMode, BondOptions, BridgeOptions, DnsConfig,
        FailOverMac, LacpRate, NextHop, PrimaryReselect, Route, RouteState, StpOptions, VlanConfig,
        VlanProtocol, XmitHashPolicy,
    },
    types::{IfName, MacAddr, VlanId},
};
use ipnet::IpNet;
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{
        AfSpecBridge, BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate,
        BondFailOverMac, BondLacpRate, BondPrimaryReselect, BondXmitHashPolicy, BridgeStpState,
        BridgeVlanInfoFlags, InfoBond, InfoBondPort, InfoBridge, InfoData, InfoKind, InfoPortData,
        InfoVlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
    },
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType},
    AddressFamily, RouteNetlinkMessage,
};

use crate::netlink::{NlError, Rtnl};

/// Dumps links, bridge VLANs, addresses and routes; reads the resolver file
/// at `dns_path` when given.
pub fn observe(nl: &mut Rtnl, dns_path: Option<&Path>) -> Result<Observed, NlError> {
    let links = nl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    let mut bridge_req = LinkMessage::default();
    bridge_req.header.interface_family = AddressFamily::Bridge;
    bridge_req.attributes.push(LinkAttribute::ExtMask(vec![
        LinkExtentMask::BrvlanCompressed,
    ]));
    // Kernels without bridge VLAN filtering answer with nothing or EOPNOTSUPP.
    let bridge = nl
        .dump(RouteNetlinkMessage::GetLink(bridge_req))
        .unwrap_or_default();
    let addrs = nl.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
    let routes = nl.dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))?;

    let mut names: HashMap<u32, IfName> = HashMap::new();
    let mut msgs: Vec<LinkMessage> = Vec::new();
    for m in links {
        if let RouteNetlinkMessage::NewLink(l) = m {
            if let Some(name) = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => IfName::new(n).ok(),
                _ => None,
            }) {
                names.insert(l.header.index, name);
                msgs.push(l);
            }
        }
    }
    let mut port_vlans: HashMap<u32, Vec<VlanEntry>> = HashMap::new();
    for m in bridge {
        if let RouteNetlinkMessage::NewLink(l) = m {
            let mut entries = Vec::new();
            let mut range_start: Option<u16> = None;
            for a in &l.attributes {
                let LinkAttribute::AfSpecBridge(spec) = a else {
                    continue;
                };
                for s in spec {
                    let AfSpecBridge::VlanInfo(v) = s else {
                        continue;
                    };
                    let pvid = v.flags.contains(BridgeVlanInfoFlags::Pvid);
                    let untagged = v.flags.contains(BridgeVlanInfoFlags::Untagged);
                    if v.flags.contains(BridgeVlanInfoFlags::RangeBegin) {
                        range_start = Some(v.vid);
                    } else if v.flags.contains(BridgeVlanInfoFlags::RangeEnd) {
                        let min = range_start.take().unwrap_or(v.vid);
                        entries.push(VlanEntry {
                            min,
                            max: Some(v.vid),
                            pvid,
                            untagged,
                        });
                    } else {
                        entries.push(VlanEntry {
                            min: v.vid,
                            max: None,
                            pvid,
                            untagged,
                        });
                    }
                }
            }
            if !entries.is_empty() {
                port_vlans.insert(l.header.index, entries);
            }
        }
    }

    let mut out = Observed::default();
    for l in &msgs {
        if let Some(link) = decode_link(l, &names, &port_vlans) {
            out.links.push(link);
        }
    }
    for m in addrs {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        let Some(net) = decode_address(&a) else {
            continue;
        };
        if let Some(name) = names.get(&a.header.index) {
            if let Some(link) = out.links.iter_mut().find(|l| &l.name == name) {
                link.addresses.push(net);
            }
        }
    }
    for link in out.links.iter_mut() {
        link.addresses.sort();
    }
    for m in routes {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        if let Some(route) = decode_route(&r, &names) {
            out.routes.push(route);
        }
    }
    out.routes.sort_by_key(|r| r.key());
    if let Some(p) = dns_path {
        out.dns = read_resolv_conf(p);
    }
    Ok(out)
}

fn decode_link(
    l: &LinkMessage,
    names: &HashMap<u32, IfName>,
    port_vlans: &HashMap<u32, Vec<VlanEntry>>,
) -> Option<Link> {
    let mut name = None;
    let mut mtu = 1500;
    let mut mac = None;
    let mut perm = None;
    let mut controller = None;
    let mut lower = None;
    let mut kind_name: Option<InfoKind> = None;
    let mut data: Option<&InfoData> = None;
    let mut port_perm = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = IfName::new(n).ok(),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Address(b) => mac = mac_of(b),
            LinkAttribute::PermAddress(b) => perm = mac_of(b),
            LinkAttribute::Controller(c) => controller = names.get(c).cloned(),
            LinkAttribute::Link(i) => lower = names.get(i).cloned(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => kind_name = Some(k.clone()),
                        LinkInfo::Data(d) => data = Some(d),
                        LinkInfo::PortData(InfoPortData::BondPort(bp)) => {
                            port_perm = bp.iter().find_map(|x| match x {
                                InfoBondPort::PermHwaddr(b) => mac_of(b),
                                _ => None,
                            })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let name = name?;
    let is_loopback = l.header.flags.contains(LinkFlags::Loopback);
    let kind = match &kind_name {
        None if is_loopback => LinkKind::Loopback,
        None => LinkKind::Ethernet,
        Some(InfoKind::Veth) => LinkKind::Veth,
        Some(InfoKind::Bond) => LinkKind::Bond,
        Some(InfoKind::Vlan) => LinkKind::Vlan,
        Some(InfoKind::Bridge) => LinkKind::Bridge,
        Some(_) => LinkKind::Other,
    };
    // The identity MAC of a NIC: the bonding driver's record of the port's
    // own address, else the permanent address, else the current one.
    let ident = port_perm.or(perm.filter(|m| !m.is_zero())).or(mac);
    let mut link = Link {
        name,
        index: l.header.index,
        kind,
        mac: ident,
        mtu,
        up: l.header.flags.contains(LinkFlags::Up),
        controller,
        addresses: Vec::new(),
        bond: None,
        vlan: None,
        bridge: None,
        vlans: port_vlans.get(&l.header.index).cloned().unwrap_or_default(),
    };
    match (kind, data) {
        (LinkKind::Bond, Some(InfoData::Bond(b))) => link.bond = Some(decode_bond(b, names)),
        (LinkKind::Bond, _) => {
            link.bond = Some(BondState {
                mode: BondMode::BalanceRr,
                options: BondOptions::default(),
            })
        }
        (LinkKind::Vlan, Some(InfoData::Vlan(v))) => {
            let id = v.iter().find_map(|x| {
                if let InfoVlan::Id(i) = x {
                    Some(*i)
                } else {
                    None
                }
            });
            let proto = v.iter().find_map(|x| {
                if let InfoVlan::Protocol(p) = x {
                    Some(*p)
                } else {
                    None
                }
            });
            if let (Some(base), Some(Ok(id))) = (lower, id.map(|i| VlanId::new(u32::from(i)))) {
                link.vlan = Some(VlanConfig {
                    base_iface: base,
                    id,
                    protocol: match proto {
                        Some(netlink_packet_route::link::VlanProtocol::Ieee8021Ad) => {
                            VlanProtocol::Dot1Ad
                        }
                        _ => VlanProtocol::Dot1Q,
                    },
                });
            }
        }
        (LinkKind::Bridge, Some(InfoData::Bridge(b))) => link.bridge = Some(decode_bridge(b)),
        (LinkKind::Bridge, _) => link.bridge = Some(BridgeOptions::default()),
        _ => {}
    }
    if kind != LinkKind::Bridge && link.controller.is_none() {
        link.vlans.clear();
    }
    Some(link)
}

fn mac_of(b: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(b).ok().map(MacAddr)
}

fn decode_bond(b: &[InfoBond], names: &HashMap<u32, IfName>) -> BondState {
    let mut mode = BondMode::BalanceRr;
    let mut o = BondOptions::default();
    for x in b {
        use netlink_packet_route::link::BondMode as K;
        match x {
            InfoBond::Mode(m) => {
                mode = match m {
                    K::BalanceRr => BondMode::BalanceRr,
                    K::ActiveBackup => BondMode::ActiveBackup,
                    K::BalanceXor => BondMode::BalanceXor,
                    K::Broadcast => BondMode::Broadcast,
                    K::Ieee8023Ad => BondMode::Lacp,
                    K::BalanceTlb => BondMode::BalanceTlb,
                    K::BalanceAlb => BondMode::BalanceAlb,
                    _ => BondMode::BalanceRr,
                }
            }
            InfoBond::MiiMon(v) => o.miimon = Some(*v),
            InfoBond::UpDelay(v) => o.updelay = Some(*v),
            InfoBond::DownDelay(v) => o.downdelay = Some(*v),
            InfoBond::UseCarrier(v) => o.use_carrier = Some(*v),
            InfoBond::ArpInterval(v) => o.arp_interval = Some(*v),
            InfoBond::ArpIpTarget(v) => o.arp_ip_target = Some(v.clone()),
            InfoBond::ArpValidate(v) => {
                o.arp_validate = Some(match v {
                    BondArpValidate::Active => ArpValidate::Active,
                    BondArpValidate::Backup => ArpValidate::Backup,
                    BondArpValidate::All => ArpValidate::All,
                    BondArpValidate::Filter => ArpValidate::Filter,
                    BondArpValidate::FilterActive => ArpValidate::FilterActive,
                    BondArpValidate::FilterBackup => ArpValidate::FilterBackup,
                    _ => ArpValidate::None,
                })
            }
            InfoBond::ArpAllTargets(v) => {
                o.arp_all_targets = Some(if *v == BondArpAllTargets::All {
                    ArpAllTargets::All
                } else {
                    ArpAllTargets::Any
                })
            }
            InfoBond::Primary(i) => o.primary = names.get(i).cloned(),
            InfoBond::PrimaryReselect(v) => {
                o.primary_reselect = Some(match v {
                    BondPrimaryReselect::Better => PrimaryReselect::Better,
                    BondPrimaryReselect::Failure => PrimaryReselect::Failure,
                    _ => PrimaryReselect::Always,
                })
            }
            InfoBond::FailOverMac(v) => {
                o.fail_over_mac = Some(match v {
                    BondFailOverMac::Active => FailOverMac::Active,
                    BondFailOverMac::Follow => FailOverMac::Follow,
                    _ => FailOverMac::None,
                })
            }
            InfoBond::XmitHashPolicy(v) => {
                o.xmit_hash_policy = Some(match v {
                    BondXmitHashPolicy::Layer34 => XmitHashPolicy::Layer34,
                    BondXmitHashPolicy::Layer23 => XmitHashPolicy::Layer23,
                    BondXmitHashPolicy::Encap23 => XmitHashPolicy::Encap23,
                    BondXmitHashPolicy::Encap34 => XmitHashPolicy::Encap34,
                    BondXmitHashPolicy::VlanSrcMac => XmitHashPolicy::VlanSrcMac,
                    _ => XmitHashPolicy::Layer2,
                })
            }
            InfoBond::ResendIgmp(v) => o.resend_igmp = Some(*v),
            InfoBond::NumPeerNotif(v) => o.num_grat_arp = Some(*v),
            InfoBond::AllPortsActive(v) => {
                o.all_slaves_active = Some(*v == BondAllPortActive::Delivered)
            }
            InfoBond::MinLinks(v) => o.min_links = Some(*v),
            InfoBond::LpInterval(v) => o.lp_interval = Some(*v),
            InfoBond::PacketsPerPort(v) => o.packets_per_slave = Some(*v),
            InfoBond::AdLacpRate(v) => {
                o.lacp_rate = Some(if *v == BondLacpRate::Fast {
                    LacpRate::Fast
                } else {
                    LacpRate::Slow
                })
            }
            InfoBond::AdSelect(v) => {
                o.ad_select = Some(match v {
                    BondAdSelect::Bandwidth => AdSelect::Bandwidth,
                    BondAdSelect::Count => AdSelect::Count,
                    _ => AdSelect::Stable,
                })
            }
            InfoBond::AdActorSysPrio(v) => o.ad_actor_sys_prio = Some(*v),
            InfoBond::AdUserPortKey(v) => o.ad_user_port_key = Some(*v),
            InfoBond::AdActorSystem(m) => o.ad_actor_system = Some(MacAddr(*m)),
            InfoBond::TlbDynamicLb(v) => o.tlb_dynamic_lb = Some(*v),
            InfoBond::PeerNotifDelay(v) => o.peer_notif_delay = Some(*v),
            InfoBond::AdLacpActive(v) => o.lacp_active = Some(*v),
            InfoBond::MissedMax(v) => o.missed_max = Some(*v),
            _ => {}
        }
    }
    BondState { mode, options: o }
}

fn decode_bridge(b: &[InfoBridge]) -> BridgeOptions {
    let mut o = BridgeOptions::default();
    let mut stp = StpOptions::default();
    for x in b {
        match x {
            InfoBridge::StpState(s) => stp.enabled = !matches!(s, BridgeStpState::Disabled),
            InfoBridge::ForwardDelay(v) => stp.forward_delay = Some(v / 100),
            InfoBridge::HelloTime(v) => stp.hello_time = Some(v / 100),
            InfoBridge::MaxAge(v) => stp.max_age = Some(v / 100),
            InfoBridge::Priority(v) => stp.priority = Some(*v),
            InfoBridge::VlanFiltering(v) => o.vlan_filtering = Some(*v),
            InfoBridge::VlanProtocol(p) => {
                o.vlan_protocol = Some(match p {
                    netlink_packet_route::link::VlanProtocol::Ieee8021Ad => VlanProtocol::Dot1Ad,
                    _ => VlanProtocol::Dot1Q,
                })
            }
            InfoBridge::AgeingTime(v) => o.mac_ageing_time = Some(v / 100),
            InfoBridge::MulticastSnooping(v) => o.multicast_snooping = Some(*v),
            _ => {}
        }
    }
    o.stp = Some(stp);
    o
}

fn decode_address(a: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut addr = None;
    for x in &a.attributes {
        match x {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(addr)?;
    if let IpAddr::V6(v6) = ip {
        if (v6.segments()[0] & 0xffc0) == 0xfe80 {
            return None;
        }
    }
    IpNet::new(ip, a.header.prefix_len).ok()
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn decode_route(r: &RouteMessage, names: &HashMap<u32, IfName>) -> Option<Route> {
    let h = &r.header;
    if h.kind != RouteType::Unicast || h.protocol == RouteProtocol::Kernel {
        return None;
    }
    let v4 = match h.address_family {
        AddressFamily::Inet => true,
        AddressFamily::Inet6 => false,
        _ => return None,
    };
    let mut table = u32::from(h.table);
    let mut dst: Option<IpAddr> = None;
    let mut gw = None;
    let mut oif = None;
    let mut metric = None;
    let mut multipath = Vec::new();
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gw = route_ip(g),
            RouteAttribute::Oif(i) => oif = names.get(i).cloned(),
            RouteAttribute::Priority(p) => metric = Some(*p),
            RouteAttribute::MultiPath(hops) => {
                for nh in hops {
                    let gw = nh.attributes.iter().find_map(|a| {
                        if let RouteAttribute::Gateway(g) = a {
                            route_ip(g)
                        } else {
                            None
                        }
                    });
                    multipath.push(NextHop {
                        next_hop_address: gw,
                        next_hop_interface: names.get(&nh.interface_index).cloned(),
                        weight: Some(u16::from(nh.hops) + 1),
                    });
                }
            }
            _ => {}
        }
    }
    if table == 255 {
        return None;
    }
    let dst = dst.unwrap_or(if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    });
    if let IpAddr::V6(v6) = dst {
        if v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80 {
            return None;
        }
    }
    let destination = IpNet::new(dst, h.destination_prefix_length).ok()?;
    let route = Route {
        destination,
        next_hop_address: if multipath.is_empty() { gw } else { None },
        next_hop_interface: if multipath.is_empty() { oif } else { None },
        multipath,
        metric: Some(metric.unwrap_or(0)),
        table_id: Some(table),
        state: RouteState::Present,
    };
    Some(route.normalized())
}

/// Reads `nameserver` and `search` lines of a resolv.conf.
pub fn read_resolv_conf(path: &Path) -> Option<DnsConfig> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("nameserver") => {
                if let Some(ip) = it.next().and_then(|s| s.parse().ok()) {
                    c.server.push(ip);
                }
            }
            Some("search") => c.search = it.map(str::to_owned).collect(),
            _ => {}
        }
    }
    Some(c)
}
