//! The host's side: a [`NetworkState`] for hostd (bond, VLAN interfaces or
//! bridges with their own VLANs, addresses, routes).

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    cabling::Cabling,
    error::Errs,
    input::{HostLayout, Intent, Network, RedundancyMode},
    networks::Nets,
};
use crate::{
    schema::{
        BondConfig, BondMode, BondOptions, BridgeConfig, BridgeOptions, BridgePort, Interface,
        InterfaceType, IpAddress, IpConfig, LacpRate, NetworkState, PortVlan, PortVlanMode, Route,
        Routes, StpOptions, TrunkTag, VlanConfig, VlanProtocol, VlanRange, XmitHashPolicy,
    },
    types::{IfName, VlanId},
};

/// The host side of a compiled intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostSide {
    /// The desired state for hostd; it passes [`crate::validate::validate`].
    pub state: NetworkState,
    /// The interface holding each network's addresses (or carrying it when
    /// it has none), by network name.
    pub network_interfaces: BTreeMap<String, IfName>,
}

/// `BASE.VID` when it fits in an interface name, else `vlanVID`.
pub(crate) fn vlan_name(base: &IfName, vid: VlanId) -> IfName {
    IfName::new(&format!("{base}.{vid}"))
        .or_else(|_| IfName::new(&format!("vlan{vid}")))
        .unwrap_or_else(|_| unreachable!("vlan4094 is a valid interface name"))
}

/// `brVID`.
pub(crate) fn bridge_name(vid: VlanId) -> IfName {
    IfName::new(&format!("br{vid}"))
        .unwrap_or_else(|_| unreachable!("br4094 is a valid interface name"))
}

/// Trunk entries for `vids` (ascending): single ids, and id-ranges for runs.
pub(crate) fn trunk_tags(vids: &[VlanId]) -> Vec<TrunkTag> {
    let mut out: Vec<TrunkTag> = Vec::new();
    let mut i = 0;
    while i < vids.len() {
        let mut j = i;
        while j + 1 < vids.len() && vids[j + 1].get() == vids[j].get() + 1 {
            j += 1;
        }
        out.push(if j == i {
            TrunkTag {
                id: Some(vids[i]),
                id_range: None,
            }
        } else {
            TrunkTag {
                id: None,
                id_range: Some(VlanRange {
                    min: vids[i],
                    max: vids[j],
                }),
            }
        });
        i = j + 1;
    }
    out
}

/// The bridge-port VLAN settings carrying `tagged` tagged and `native`
/// untagged.
pub(crate) fn port_vlan(native: Option<VlanId>, tagged: &[VlanId]) -> PortVlan {
    if tagged.is_empty() {
        PortVlan {
            mode: PortVlanMode::Access,
            tag: native,
            enable_native: false,
            trunk_tags: Vec::new(),
        }
    } else {
        PortVlan {
            mode: PortVlanMode::Trunk,
            tag: native,
            enable_native: native.is_some(),
            trunk_tags: trunk_tags(tagged),
        }
    }
}

fn addresses(iface: &mut Interface, n: &Network) {
    let pick = |v4: bool| -> Option<IpConfig> {
        let address: Vec<IpAddress> = n
            .addresses
            .iter()
            .filter(|a| a.addr().is_ipv4() == v4)
            .map(|a| IpAddress {
                ip: a.addr(),
                prefix_length: a.prefix_len(),
            })
            .collect();
        (!address.is_empty()).then_some(IpConfig { address })
    };
    iface.ipv4 = pick(true);
    iface.ipv6 = pick(false);
}

/// The compiler's bond mode for the intent.
pub(crate) fn bond_mode(mode: RedundancyMode) -> Option<BondMode> {
    match mode {
        RedundancyMode::None => None,
        RedundancyMode::ActiveBackup => Some(BondMode::ActiveBackup),
        RedundancyMode::ActiveActive => Some(BondMode::Lacp),
    }
}

/// The LACP rate both ends use.
pub(crate) fn lacp_rate(intent: &Intent) -> LacpRate {
    intent.redundancy.lacp_rate.unwrap_or(LacpRate::Fast)
}

/// Checks the intent's bond options (mode, fields the compiler owns).
pub(crate) fn check_bond_options(intent: &Intent, cab: &Cabling, e: &mut Errs) {
    let o = &intent.redundancy.bond_options;
    let p = "intent.redundancy.bond-options";
    let Some(mode) = bond_mode(intent.redundancy.mode) else {
        if !o.is_empty() {
            e.push(p, "set", "redundancy none has no bond");
        }
        return;
    };
    let kept = o.for_mode(mode);
    if let (Ok(serde_json::Value::Object(all)), Ok(serde_json::Value::Object(ok))) =
        (serde_json::to_value(o), serde_json::to_value(&kept))
    {
        for (k, v) in all {
            if !ok.contains_key(&k) {
                e.push(
                    format!("{p}.{k}"),
                    v,
                    format!(
                        "not valid in bond mode {} ({})",
                        mode.as_str(),
                        intent.redundancy.mode.as_str()
                    ),
                );
            }
        }
    }
    if let Some(r) = o.lacp_rate {
        e.push(
            format!("{p}.lacp_rate"),
            r.as_str(),
            "both ends must agree: set intent.redundancy.lacp-rate instead",
        );
    }
    if let Some(m) = o.ad_actor_system {
        e.push(
            format!("{p}.ad_actor_system"),
            m,
            "the host's LACP system id is its own; only the switches share one (MLAG)",
        );
    }
    if let Some(primary) = &o.primary {
        if !cab.nics.iter().any(|c| &c.nic.name == primary) {
            e.push(
                format!("{p}.primary"),
                primary,
                "not one of the NICs the bond uses",
            );
        }
    }
}

/// Builds the host's state. Inputs are checked.
pub(crate) fn build(intent: &Intent, cab: &Cabling, nets: &Nets) -> HostSide {
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut l3: BTreeMap<String, IfName> = BTreeMap::new();
    let max = nets.max_mtu;

    // NICs, in index order.
    let bonded = bond_mode(intent.redundancy.mode);
    for c in &cab.nics {
        let mut nic = Interface::new(c.nic.name.clone(), InterfaceType::Ethernet);
        nic.mac_address = Some(c.nic.mac);
        if bonded.is_none() {
            nic.mtu = Some(max);
        }
        ifaces.push(nic);
    }

    // The uplink: the bond, or the only NIC.
    let uplink: IfName = match bonded {
        Some(mode) => {
            let mut bond = Interface::new(intent.host.bond.clone(), InterfaceType::Bond);
            bond.mtu = Some(max);
            bond.link_aggregation = Some(BondConfig {
                mode,
                port: cab.nics.iter().map(|c| c.nic.name.clone()).collect(),
                options: bond_options(intent, cab, mode),
            });
            ifaces.push(bond);
            intent.host.bond.clone()
        }
        None => cab.nics[0].nic.name.clone(),
    };
    let uplink_at = ifaces.len() - 1;
    let native_vid = nets.native.map(|(_, n)| n.vlan);
    let tagged = nets.tagged_vlans();

    match intent.host.layout {
        HostLayout::VlanSubinterfaces => {
            if let Some((_, n)) = nets.native {
                addresses(&mut ifaces[uplink_at], n);
                l3.insert(n.name.clone(), uplink.clone());
            }
            for (_, n) in nets.tagged() {
                let mut v = Interface::new(vlan_name(&uplink, n.vlan), InterfaceType::Vlan);
                v.mtu = Some(n.mtu);
                v.vlan = Some(VlanConfig {
                    base_iface: uplink.clone(),
                    id: n.vlan,
                    protocol: VlanProtocol::Dot1Q,
                });
                addresses(&mut v, n);
                l3.insert(n.name.clone(), v.name.clone());
                ifaces.push(v);
            }
        }
        HostLayout::VlanAwareBridge => {
            let brname = intent.host.bridge.clone();
            let mut br = Interface::new(brname.clone(), InterfaceType::LinuxBridge);
            br.mtu = Some(max);
            br.bridge = Some(BridgeConfig {
                vlan: None,
                options: BridgeOptions {
                    stp: Some(StpOptions {
                        enabled: false,
                        ..StpOptions::default()
                    }),
                    vlan_filtering: Some(true),
                    ..BridgeOptions::default()
                },
                port: vec![BridgePort {
                    name: uplink.clone(),
                    vlan: Some(port_vlan(native_vid, &tagged)),
                }],
            });
            // The bridge's own VLANs (`bridge vlan ... self`): the native
            // VLAN untagged when the host has an address on the bridge, and
            // each VLAN interface's VLAN tagged. Without them the kernel
            // leaves PVID 1 and those addresses get no traffic (checked in
            // the VM on Debian's 6.1 kernel, docs/intent.md).
            let mut self_pvid = None;
            if let Some((_, n)) = nets.native {
                l3.insert(n.name.clone(), brname.clone());
                if !n.addresses.is_empty() {
                    addresses(&mut br, n);
                    self_pvid = Some(n.vlan);
                }
            }
            let mut self_tagged = Vec::new();
            ifaces.push(br);
            for (_, n) in nets.tagged() {
                if n.addresses.is_empty() {
                    // Carried by the bridge for its other ports (VMs).
                    l3.insert(n.name.clone(), brname.clone());
                    continue;
                }
                let mut v = Interface::new(vlan_name(&brname, n.vlan), InterfaceType::Vlan);
                v.mtu = Some(n.mtu);
                v.vlan = Some(VlanConfig {
                    base_iface: brname.clone(),
                    id: n.vlan,
                    protocol: VlanProtocol::Dot1Q,
                });
                addresses(&mut v, n);
                self_tagged.push(n.vlan);
                l3.insert(n.name.clone(), v.name.clone());
                ifaces.push(v);
            }
            if self_pvid.is_some() || !self_tagged.is_empty() {
                self_tagged.sort();
                if let Some(b) = ifaces
                    .iter_mut()
                    .find(|i| i.name == brname)
                    .and_then(|i| i.bridge.as_mut())
                {
                    b.vlan = Some(port_vlan(self_pvid, &self_tagged));
                }
            }
        }
        HostLayout::PerVlanBridges => {
            let bridge = |name: IfName, port: IfName, n: &Network| {
                let mut br = Interface::new(name, InterfaceType::LinuxBridge);
                br.mtu = Some(n.mtu);
                br.bridge = Some(BridgeConfig {
                    vlan: None,
                    options: BridgeOptions {
                        stp: Some(StpOptions {
                            enabled: false,
                            ..StpOptions::default()
                        }),
                        ..BridgeOptions::default()
                    },
                    port: vec![BridgePort {
                        name: port,
                        vlan: None,
                    }],
                });
                addresses(&mut br, n);
                br
            };
            for (_, n) in &nets.all {
                let brname = bridge_name(n.vlan);
                if n.untagged {
                    ifaces.push(bridge(brname.clone(), uplink.clone(), n));
                } else {
                    let mut v = Interface::new(vlan_name(&uplink, n.vlan), InterfaceType::Vlan);
                    v.mtu = Some(n.mtu);
                    v.vlan = Some(VlanConfig {
                        base_iface: uplink.clone(),
                        id: n.vlan,
                        protocol: VlanProtocol::Dot1Q,
                    });
                    let port = v.name.clone();
                    ifaces.push(v);
                    ifaces.push(bridge(brname.clone(), port, n));
                }
                l3.insert(n.name.clone(), brname);
            }
        }
    }

    // Routes: the default route of each family, then each network's.
    let mut routes = Vec::new();
    for (i, gw) in nets.defaults.iter().flatten() {
        let n = &intent.networks[*i];
        let dest: IpNet = match gw {
            IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
        };
        routes.push(Route {
            protocol: None,
            destination: dest,
            next_hop_address: Some(*gw),
            next_hop_interface: l3.get(&n.name).cloned(),
            multipath: Vec::new(),
            metric: None,
            table_id: None,
            state: Default::default(),
        });
    }
    for (_, n) in &nets.all {
        for r in &n.routes {
            let v4 = r.destination.addr().is_ipv4();
            let via = r
                .via
                .or_else(|| n.gateways.iter().copied().find(|g| g.is_ipv4() == v4));
            routes.push(Route {
                protocol: None,
                destination: r.destination,
                next_hop_address: via,
                next_hop_interface: l3.get(&n.name).cloned(),
                multipath: Vec::new(),
                metric: r.metric,
                table_id: None,
                state: Default::default(),
            });
        }
    }

    HostSide {
        state: NetworkState {
            interfaces: ifaces,
            routes: Routes { config: routes },
            ..NetworkState::default()
        },
        network_interfaces: l3,
    }
}

/// The bond's options: the compiler's defaults for the mode, then the
/// intent's `bond-options` over them.
fn bond_options(intent: &Intent, cab: &Cabling, mode: BondMode) -> BondOptions {
    let mut d = BondOptions {
        miimon: Some(100),
        ..BondOptions::default()
    };
    match mode {
        BondMode::Lacp => {
            d.lacp_rate = Some(lacp_rate(intent));
            d.xmit_hash_policy = Some(XmitHashPolicy::Layer34);
        }
        BondMode::ActiveBackup => {
            // Port #0 is the active one whenever it is up.
            d.primary = cab.nics.first().map(|c| c.nic.name.clone());
        }
        _ => {}
    }
    let user = &intent.redundancy.bond_options;
    match (serde_json::to_value(&d), serde_json::to_value(user)) {
        (Ok(serde_json::Value::Object(mut base)), Ok(serde_json::Value::Object(over))) => {
            base.extend(over);
            serde_json::from_value(serde_json::Value::Object(base)).unwrap_or(d)
        }
        _ => d,
    }
}
