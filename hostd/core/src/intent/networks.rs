//! Checks of the intent's networks (names, VLANs, addresses, gateways,
//! routes, MTUs) and what follows from them: which network is untagged,
//! which are tagged, the largest MTU, which gateway is the default route.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;

use super::{
    error::Errs,
    input::{HostLayout, Intent, Network, NetworkType},
};
use crate::types::{Mtu, VlanId};

/// The networks, checked.
#[derive(Debug, Clone)]
pub(crate) struct Nets<'a> {
    /// Every network with its position in `intent.networks`, by VLAN id.
    pub all: Vec<(usize, &'a Network)>,
    /// The untagged one.
    pub native: Option<(usize, &'a Network)>,
    /// The largest MTU: the cable's (bond, switch ports).
    pub max_mtu: Mtu,
    /// The default route per family (IPv4, IPv6): network position and
    /// gateway.
    pub defaults: [Option<(usize, IpAddr)>; 2],
}

impl<'a> Nets<'a> {
    /// The tagged networks, by VLAN id.
    pub fn tagged(&self) -> impl Iterator<Item = &(usize, &'a Network)> {
        self.all.iter().filter(|(_, n)| !n.untagged)
    }

    /// The tagged VLAN ids, ascending.
    pub fn tagged_vlans(&self) -> Vec<VlanId> {
        self.tagged().map(|(_, n)| n.vlan).collect()
    }
}

fn family(ip: &IpAddr) -> usize {
    if ip.is_ipv4() {
        0
    } else {
        1
    }
}

fn valid_network_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `intent.networks`; `None` when something is wrong (errors in `e`).
pub(crate) fn check<'a>(intent: &'a Intent, e: &mut Errs) -> Option<Nets<'a>> {
    let before = e.0.len();
    if intent.networks.is_empty() {
        e.push("intent.networks", "[]", "the server joins no network");
        return None;
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut vlans: BTreeMap<VlanId, usize> = BTreeMap::new();
    let mut native: Option<(usize, &Network)> = None;
    // Every address with its network and path, for overlaps.
    let mut addrs: Vec<(IpNet, usize, String)> = Vec::new();
    for (i, n) in intent.networks.iter().enumerate() {
        let p = format!("intent.networks[{i}]");
        if !valid_network_name(&n.name) {
            e.push(
                format!("{p}.name"),
                format!("{:?}", n.name),
                "a network name is 1..=32 letters, digits, '-', '_' or '.'",
            );
        }
        if let Some(first) = names.insert(n.name.as_str(), i) {
            e.push(
                format!("{p}.name"),
                &n.name,
                format!("duplicate network name (first at intent.networks[{first}])"),
            );
        }
        if let Some(first) = vlans.insert(n.vlan, i) {
            e.push(
                format!("{p}.vlan"),
                n.vlan,
                format!(
                    "VLAN already used by network {} (intent.networks[{first}])",
                    intent.networks[first].name
                ),
            );
        }
        if n.untagged {
            if let Some((first, f)) = native {
                e.push(
                    format!("{p}.untagged"),
                    "true",
                    format!(
                        "network {} (intent.networks[{first}]) is already the untagged one: a port has one native VLAN",
                        f.name
                    ),
                );
            } else {
                native = Some((i, n));
            }
        }
        for (j, a) in n.addresses.iter().enumerate() {
            let ap = format!("{p}.addresses[{j}]");
            let bad = match a.addr() {
                IpAddr::V4(v) => {
                    v.is_unspecified() || v.is_multicast() || v.is_broadcast() || v.is_loopback()
                }
                IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
            };
            if bad {
                e.push(&ap, a, "not a usable host address");
                continue;
            }
            if let IpAddr::V6(v) = a.addr() {
                if (v.segments()[0] & 0xffc0) == 0xfe80 {
                    e.push(&ap, a, "link-local addresses are the kernel's");
                    continue;
                }
            }
            if let IpNet::V4(v) = a {
                if v.prefix_len() < 31 && (v.addr() == v.network() || v.addr() == v.broadcast()) {
                    e.push(&ap, a, "the network or broadcast address of its subnet");
                    continue;
                }
            }
            for (other, oi, op) in &addrs {
                if other.addr() == a.addr() {
                    e.push(&ap, a, format!("address already given at {op}"));
                } else if *oi != i && (other.contains(&a.addr()) || a.contains(&other.addr())) {
                    e.push(
                        &ap,
                        a,
                        format!(
                            "subnet overlaps {other} of network {} ({op})",
                            intent.networks[*oi].name
                        ),
                    );
                }
            }
            addrs.push((*a, i, ap));
        }
        let mut gw_family = [false; 2];
        for (j, g) in n.gateways.iter().enumerate() {
            let gp = format!("{p}.gateways[{j}]");
            let f = family(g);
            if std::mem::replace(&mut gw_family[f], true) {
                e.push(&gp, g, "a second gateway of the same family");
                continue;
            }
            if n.addresses.iter().any(|a| a.addr() == *g) {
                e.push(&gp, g, "the gateway is one of the host's own addresses");
            } else if !n.addresses.iter().any(|a| a.contains(g)) {
                e.push(
                    &gp,
                    g,
                    format!(
                        "not inside any subnet of network {}'s addresses ({})",
                        n.name,
                        list(&n.addresses)
                    ),
                );
            }
        }
        if n.default_route == Some(true) && n.gateways.is_empty() {
            e.push(
                format!("{p}.default-route"),
                "true",
                "a network provides the default route through its gateway, and this one has none",
            );
        }
        let mut keys = BTreeMap::new();
        for (j, r) in n.routes.iter().enumerate() {
            let rp = format!("{p}.routes[{j}]");
            if r.destination.trunc() != r.destination {
                e.push(
                    format!("{rp}.destination"),
                    r.destination,
                    format!("host bits set; did you mean {}?", r.destination.trunc()),
                );
            }
            if r.destination.prefix_len() == 0 {
                e.push(
                    format!("{rp}.destination"),
                    r.destination,
                    "the default route comes from gateways and default-route",
                );
            }
            let f = family(&r.destination.addr());
            let via = r
                .via
                .or_else(|| n.gateways.iter().copied().find(|g| family(g) == f));
            match via {
                None => e.push(
                    format!("{rp}.via"),
                    "none",
                    format!("network {} has no gateway of this family: give via", n.name),
                ),
                Some(v) if family(&v) != f => e.push(
                    format!("{rp}.via"),
                    v,
                    "address family differs from the destination's",
                ),
                Some(v) if !n.addresses.iter().any(|a| a.contains(&v) && a.addr() != v) => e.push(
                    format!("{rp}.via"),
                    v,
                    format!(
                        "not a neighbour inside network {}'s subnets ({})",
                        n.name,
                        list(&n.addresses)
                    ),
                ),
                Some(_) => {}
            }
            if let Some(first) = keys.insert((r.destination.trunc(), r.metric), j) {
                e.push(
                    &rp,
                    r.destination,
                    format!("same destination and metric as {p}.routes[{first}]"),
                );
            }
        }
    }
    // Routes of different networks to the same destination and metric.
    let mut keys: BTreeMap<(IpNet, Option<u32>), String> = BTreeMap::new();
    for (i, n) in intent.networks.iter().enumerate() {
        for (j, r) in n.routes.iter().enumerate() {
            let rp = format!("intent.networks[{i}].routes[{j}]");
            if let Some(first) = keys.insert((r.destination.trunc(), r.metric), rp.clone()) {
                if !first.starts_with(&format!("intent.networks[{i}].")) {
                    e.push(
                        &rp,
                        r.destination,
                        format!("same destination and metric as {first}"),
                    );
                }
            }
        }
    }

    let mut all: Vec<(usize, &Network)> = intent.networks.iter().enumerate().collect();
    all.sort_by_key(|(_, n)| n.vlan);
    let max_mtu = all.iter().map(|(_, n)| n.mtu).max()?;

    // An untagged network's addresses sit on the bond (or the VLAN-aware
    // bridge), which carries the largest MTU.
    if let Some((i, n)) = native {
        if !n.addresses.is_empty()
            && n.mtu != max_mtu
            && intent.host.layout != HostLayout::PerVlanBridges
        {
            e.push(
                format!("intent.networks[{i}].mtu"),
                n.mtu,
                format!(
                    "in the {} layout the untagged network's addresses sit on the {}, whose MTU is the largest of the networks ({max_mtu}); give {} mtu {max_mtu}, or use the per-vlan-bridges layout",
                    intent.host.layout.as_str(),
                    if intent.host.layout == HostLayout::VlanAwareBridge { "bridge" } else { "bond" },
                    n.name
                ),
            );
        }
    }

    // The default route of each family.
    let mut defaults = [None, None];
    for (f, name) in [(0, "IPv4"), (1, "IPv6")] {
        let with_gw: Vec<(usize, &Network, IpAddr)> = intent
            .networks
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.gateways
                    .iter()
                    .find(|g| family(g) == f)
                    .map(|g| (i, n, *g))
            })
            .collect();
        let chosen: Vec<_> = with_gw
            .iter()
            .filter(|(_, n, _)| n.default_route == Some(true))
            .collect();
        let pick = match chosen.as_slice() {
            [one] => Some(**one),
            [] => {
                let open: Vec<_> = with_gw
                    .iter()
                    .filter(|(_, n, _)| n.default_route.is_none())
                    .collect();
                let wan: Vec<_> = open
                    .iter()
                    .filter(|(_, n, _)| n.kind == NetworkType::Wan)
                    .collect();
                match (open.as_slice(), wan.as_slice()) {
                    ([], _) => None,
                    ([one], _) => Some(**one),
                    (_, [one]) => Some(***one),
                    (many, _) => {
                        let names: Vec<&str> =
                            many.iter().map(|(_, n, _)| n.name.as_str()).collect();
                        e.push(
                            "intent.networks",
                            names.join(", "),
                            format!("several networks have an {name} gateway and none (or more than one wan) is the default route: set default-route on one"),
                        );
                        None
                    }
                }
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(_, n, _)| n.name.as_str()).collect();
                for (i, _, _) in many.iter().skip(1) {
                    e.push(
                        format!("intent.networks[{i}].default-route"),
                        "true",
                        format!(
                            "more than one network provides the {name} default route ({})",
                            names.join(", ")
                        ),
                    );
                }
                None
            }
        };
        defaults[f] = pick.map(|(i, _, g)| (i, g));
    }

    if e.0.len() > before {
        return None;
    }
    Some(Nets {
        all,
        native,
        max_mtu,
        defaults,
    })
}

fn list(a: &[IpNet]) -> String {
    if a.is_empty() {
        return "none".into();
    }
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
