//! Observe: dump the kernel's links (with bond, VLAN and bridge details and,
//! through an AF_BRIDGE dump, bridge port VLANs), addresses and routes into
//! [`Observed`], the same model the planner reads.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use hostd_core::{
    model::{AddrGenMode, BondState, Link, LinkKind, Observed, VlanEntry},
    schema::{
        BondMode, BondOptions, BridgeOptions, DnsConfig, NextHop, Route, RouteState, StpOptions,
        VlanConfig, VlanProtocol,
    },
    types::{IfName, MacAddr, VlanId},
};
use ipnet::IpNet;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    link::{
        AfSpecBridge, AfSpecInet6, AfSpecUnspec, BridgeStpState, BridgeVlanInfoFlags, InfoBondPort,
        InfoBridge, InfoData, InfoKind, InfoPortData, InfoVlan, LinkAttribute, LinkExtentMask,
        LinkFlags, LinkInfo, LinkMessage,
    },
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType},
    AddressFamily, RouteNetlinkMessage,
};

use crate::netlink::{NlError, Rtnl};

/// Dumps links, bridge VLANs, addresses and routes; reads the resolver file
/// at `dns_path` when given.
pub fn observe(nl: &mut Rtnl, dns_path: Option<&Path>) -> Result<Observed, NlError> {
    // Without statistics: a third of the bytes the kernel writes per link.
    let mut link_req = LinkMessage::default();
    link_req
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let links = nl.dump(RouteNetlinkMessage::GetLink(link_req))?;
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
    let by_index: HashMap<u32, usize> = out
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| (l.index, i))
        .collect();
    for m in addrs {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        let Some((net, dynamic)) = decode_address(&a) else {
            continue;
        };
        if let Some(&pos) = by_index.get(&a.header.index) {
            let link = &mut out.links[pos];
            if dynamic {
                link.dynamic.push(net);
            } else {
                link.addresses.push(net);
            }
        }
    }
    for link in out.links.iter_mut() {
        link.addresses.sort();
        link.dynamic.sort();
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
    let mut max_mtu = None;
    let mut addr_gen_mode = None;
    let mut keep_addr_on_down = false;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = IfName::new(n).ok(),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::MaxMtu(m) => max_mtu = Some(*m),
            LinkAttribute::AfSpecUnspec(specs) => {
                for spec in specs {
                    let AfSpecUnspec::Inet6(attrs) = spec else {
                        continue;
                    };
                    for x in attrs {
                        match x {
                            AfSpecInet6::AddrGenMode(m) => {
                                addr_gen_mode = AddrGenMode::from_number(u8::from(m))
                            }
                            AfSpecInet6::DevConf(c) => keep_addr_on_down = c.keep_addr_on_down > 0,
                            _ => {}
                        }
                    }
                }
            }
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
        dynamic: Vec::new(),
        addr_gen_mode,
        keep_addr_on_down,
        // Devices without a limit report the IP maximum; only real limits
        // below it matter to the planner.
        max_mtu: max_mtu.filter(|m| *m > 0 && *m < 65535),
    };
    match (kind, data) {
        (LinkKind::Bond, Some(InfoData::Bond(b))) => {
            link.bond = Some(crate::bond_attrs::decode(b, names))
        }
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

/// The address, and whether it is dynamic (a finite lifetime: DHCP, SLAAC,
/// temporary) rather than static (`IFA_F_PERMANENT`).
fn decode_address(a: &AddressMessage) -> Option<(IpNet, bool)> {
    let mut local = None;
    let mut addr = None;
    let mut permanent = a.header.flags.contains(AddressHeaderFlags::Permanent);
    for x in &a.attributes {
        match x {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            AddressAttribute::Flags(f) => permanent = f.contains(AddressFlags::Permanent),
            _ => {}
        }
    }
    let ip = local.or(addr)?;
    if let IpAddr::V6(v6) = ip {
        if (v6.segments()[0] & 0xffc0) == 0xfe80 {
            return None;
        }
    }
    IpNet::new(ip, a.header.prefix_len)
        .ok()
        .map(|n| (n, !permanent))
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
        protocol: Some(hostd_core::route::RouteProtocol::from_number(u8::from(
            h.protocol,
        ))),
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
