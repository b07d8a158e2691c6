//! The observed model: what the kernel holds, as hostd reads it back over
//! netlink (status types, only ever read). [`Observed::to_state`] renders it
//! in the desired-state schema for `hostd show`; [`Observed::to_restore_state`]
//! turns a pre-apply observation into the state a rollback restores.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    schema::{
        BondConfig, BondMode, BondOptions, BridgeConfig, BridgeOptions, BridgePort, DnsConfig,
        DnsResolver, IfState, Interface, InterfaceType, IpAddress, IpConfig, NetworkState,
        PortVlan, PortVlanMode, Route, Routes, TrunkTag, VlanConfig, VlanRange,
    },
    types::{IfName, MacAddr, Mtu, VlanId},
};

/// Everything hostd observed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Observed {
    /// Links, by name.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Routes hostd may manage (no kernel-generated ones, no local table).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The resolver configuration file's content, if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
}

/// Kind of link as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// Physical NIC (no IFLA_INFO_KIND).
    Ethernet,
    /// veth (the lab's NICs).
    Veth,
    /// Loopback.
    Loopback,
    /// bond.
    Bond,
    /// vlan.
    Vlan,
    /// bridge.
    Bridge,
    /// Anything else (dummy, tun, vxlan...): never touched.
    Other,
}

impl LinkKind {
    /// The schema type it shows as.
    pub fn interface_type(self) -> InterfaceType {
        match self {
            Self::Ethernet | Self::Veth => InterfaceType::Ethernet,
            Self::Loopback => InterfaceType::Loopback,
            Self::Bond => InterfaceType::Bond,
            Self::Vlan => InterfaceType::Vlan,
            Self::Bridge => InterfaceType::LinuxBridge,
            Self::Other => InterfaceType::Unknown,
        }
    }
}

/// A bond as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BondState {
    /// Mode.
    pub mode: BondMode,
    /// Options as the kernel reports them.
    #[serde(default)]
    pub options: BondOptions,
}

/// VLAN membership entry of a bridge port (a range when `max` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanEntry {
    /// First VLAN id.
    pub min: u16,
    /// Last VLAN id of a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u16>,
    /// Port VLAN id (ingress untagged goes here).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pvid: bool,
    /// Egress untagged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untagged: bool,
}

/// Flags of one VID on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VidFlags {
    /// PVID.
    pub pvid: bool,
    /// Egress untagged.
    pub untagged: bool,
}

/// VIDs of a port, expanded.
pub type VlanSet = BTreeMap<u16, VidFlags>;

/// Expands entries to one VID each.
pub fn expand_vlans(entries: &[VlanEntry]) -> VlanSet {
    let mut set = VlanSet::new();
    for e in entries {
        for vid in e.min..=e.max.unwrap_or(e.min).max(e.min) {
            set.insert(
                vid,
                VidFlags {
                    pvid: e.pvid,
                    untagged: e.untagged,
                },
            );
        }
    }
    set
}

/// Compresses a VID set into ranges of equal flags; a PVID entry stays single
/// (the kernel refuses a range carrying PVID).
pub fn compress_vlans(set: &VlanSet) -> Vec<VlanEntry> {
    let mut out: Vec<VlanEntry> = Vec::new();
    for (&vid, f) in set {
        if let Some(last) = out.last_mut() {
            let end = last.max.unwrap_or(last.min);
            if !f.pvid && !last.pvid && last.untagged == f.untagged && end + 1 == vid {
                last.max = Some(vid);
                continue;
            }
        }
        out.push(VlanEntry {
            min: vid,
            max: None,
            pvid: f.pvid,
            untagged: f.untagged,
        });
    }
    out
}

/// A link as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Link {
    /// Name.
    pub name: IfName,
    /// ifindex (0 in fixtures that do not care).
    #[serde(default)]
    pub index: u32,
    /// Kind.
    pub kind: LinkKind,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// IFF_UP.
    #[serde(default)]
    pub up: bool,
    /// Bond or bridge this link is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<IfName>,
    /// Addresses (no IPv6 link-local).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// Bond details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<BondState>,
    /// VLAN details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanConfig>,
    /// Bridge options (all that the kernel reports and hostd models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeOptions>,
    /// VLAN membership when this link is a bridge port (AF_BRIDGE dump).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanEntry>,
}

fn default_mtu() -> u32 {
    1500
}

impl Observed {
    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name.as_str() == name)
    }

    /// Renders the observation in the desired-state schema (`hostd show`).
    pub fn to_state(&self) -> NetworkState {
        self.render(false)
    }

    /// The state a rollback restores: every manageable link exactly as
    /// observed (addresses exact, bond options valid for the mode), all
    /// observed routes, and the resolver file.
    pub fn to_restore_state(&self) -> NetworkState {
        self.render(true)
    }

    fn render(&self, restore: bool) -> NetworkState {
        let mut ports: BTreeMap<&str, Vec<&Link>> = BTreeMap::new();
        for l in &self.links {
            if let Some(c) = &l.controller {
                ports.entry(c.as_str()).or_default().push(l);
            }
        }
        let mut interfaces = Vec::new();
        for l in &self.links {
            let kind = l.kind.interface_type();
            if restore && matches!(kind, InterfaceType::Loopback | InterfaceType::Unknown) {
                continue;
            }
            let mut i = Interface::new(l.name.clone(), kind);
            i.state = if l.up { IfState::Up } else { IfState::Down };
            i.mtu = Mtu::new(l.mtu).ok();
            if kind == InterfaceType::Ethernet && !restore {
                i.mac_address = l.mac;
            }
            let (v4, v6): (Vec<&IpNet>, Vec<&IpNet>) =
                l.addresses.iter().partition(|a| matches!(a, IpNet::V4(_)));
            let conv = |v: Vec<&IpNet>| IpConfig {
                address: v
                    .into_iter()
                    .map(|a| IpAddress {
                        ip: a.addr(),
                        prefix_length: a.prefix_len(),
                    })
                    .collect(),
            };
            if restore || !v4.is_empty() {
                i.ipv4 = Some(conv(v4));
            }
            if restore || !v6.is_empty() {
                i.ipv6 = Some(conv(v6));
            }
            let my_ports = ports.get(l.name.as_str()).cloned().unwrap_or_default();
            if let Some(b) = &l.bond {
                let options = if restore {
                    b.options.for_mode(b.mode)
                } else {
                    b.options.clone()
                };
                i.link_aggregation = Some(BondConfig {
                    mode: b.mode,
                    port: my_ports.iter().map(|p| p.name.clone()).collect(),
                    options,
                });
            }
            i.vlan = l.vlan.clone();
            if let Some(opts) = &l.bridge {
                let filtering = opts.vlan_filtering == Some(true);
                i.bridge = Some(BridgeConfig {
                    options: opts.clone(),
                    port: my_ports
                        .iter()
                        .map(|p| BridgePort {
                            name: p.name.clone(),
                            vlan: if filtering {
                                port_vlan_from_entries(&p.vlans)
                            } else {
                                None
                            },
                        })
                        .collect(),
                });
            }
            interfaces.push(i);
        }
        NetworkState {
            interfaces,
            routes: Routes {
                config: self.routes.clone(),
            },
            dns_resolver: self.dns.clone().map(|config| DnsResolver { config }),
            firewall: None,
            telemetry: None,
        }
    }

    /// Names of all links.
    pub fn names(&self) -> BTreeSet<&str> {
        self.links.iter().map(|l| l.name.as_str()).collect()
    }
}

/// Renders a port's VLAN entries in the schema's trunk/access shape.
pub fn port_vlan_from_entries(entries: &[VlanEntry]) -> Option<PortVlan> {
    let set = expand_vlans(entries);
    let native = set
        .iter()
        .find(|(_, f)| f.pvid && f.untagged)
        .map(|(v, _)| *v);
    let tagged: VlanSet = set
        .iter()
        .filter(|(v, _)| Some(**v) != native)
        .map(|(v, f)| (*v, *f))
        .collect();
    let tag = native.and_then(|v| VlanId::new(u32::from(v)).ok());
    if tagged.is_empty() {
        return Some(PortVlan {
            mode: PortVlanMode::Access,
            tag,
            enable_native: false,
            trunk_tags: Vec::new(),
        });
    }
    let mut trunk_tags = Vec::new();
    for e in compress_vlans(&tagged) {
        let (Ok(min), Ok(max)) = (
            VlanId::new(u32::from(e.min)),
            VlanId::new(u32::from(e.max.unwrap_or(e.min))),
        ) else {
            continue;
        };
        if min == max {
            trunk_tags.push(TrunkTag {
                id: Some(min),
                id_range: None,
            });
        } else {
            trunk_tags.push(TrunkTag {
                id: None,
                id_range: Some(VlanRange { min, max }),
            });
        }
    }
    Some(PortVlan {
        mode: PortVlanMode::Trunk,
        tag,
        enable_native: tag.is_some(),
        trunk_tags,
    })
}

impl BondOptions {
    /// The options the kernel accepts in `mode` (others fail with a mode
    /// dependency error), without defaults that cannot be written back.
    pub fn for_mode(&self, mode: BondMode) -> BondOptions {
        use BondMode::*;
        let mut o = self.clone();
        if mode != Lacp {
            o.lacp_rate = None;
            o.lacp_active = None;
            o.ad_select = None;
            o.ad_actor_sys_prio = None;
            o.ad_actor_system = None;
            o.ad_user_port_key = None;
        }
        if !matches!(mode, ActiveBackup | BalanceTlb | BalanceAlb) {
            o.primary = None;
            o.primary_reselect = None;
        }
        if !matches!(mode, BalanceXor | Lacp | BalanceTlb) {
            o.xmit_hash_policy = None;
        }
        if matches!(mode, Lacp | BalanceTlb | BalanceAlb) {
            o.missed_max = None;
            o.arp_interval = None;
            o.arp_ip_target = None;
            o.arp_validate = None;
            o.arp_all_targets = None;
        }
        if mode != BalanceRr {
            o.packets_per_slave = None;
        }
        if mode != BalanceTlb {
            o.tlb_dynamic_lb = None;
        }
        if o.ad_actor_system.is_some_and(|m| m.is_zero()) {
            o.ad_actor_system = None;
        }
        if o.arp_ip_target.as_ref().is_some_and(|v| v.is_empty()) {
            o.arp_ip_target = None;
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ranges_round_trip() {
        let mut set = VlanSet::new();
        set.insert(
            1,
            VidFlags {
                pvid: true,
                untagged: true,
            },
        );
        for v in 100..=1099 {
            set.insert(v, VidFlags::default());
        }
        set.insert(2000, VidFlags::default());
        let c = compress_vlans(&set);
        assert_eq!(
            c,
            vec![
                VlanEntry {
                    min: 1,
                    max: None,
                    pvid: true,
                    untagged: true
                },
                VlanEntry {
                    min: 100,
                    max: Some(1099),
                    pvid: false,
                    untagged: false
                },
                VlanEntry {
                    min: 2000,
                    max: None,
                    pvid: false,
                    untagged: false
                },
            ]
        );
        assert_eq!(expand_vlans(&c), set);
    }

    #[test]
    fn pvid_breaks_a_range() {
        let mut set = VlanSet::new();
        set.insert(10, VidFlags::default());
        set.insert(
            11,
            VidFlags {
                pvid: true,
                untagged: false,
            },
        );
        set.insert(12, VidFlags::default());
        assert_eq!(compress_vlans(&set).len(), 3);
    }
}
