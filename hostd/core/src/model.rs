//! The observed model: what the kernel holds, as hostd reads it back over
//! netlink (status types, only ever read). [`Observed::to_state`] renders it
//! in the desired-state schema for `hostd show`.

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
    /// Static addresses (permanent: no lifetime), without IPv6 link-local.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// Dynamic addresses (with a finite lifetime: DHCP, SLAAC, temporary).
    /// They belong to whoever set them; hostd never deletes them and only
    /// makes one static when the document lists it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dynamic: Vec<IpNet>,
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
    /// How the kernel makes the IPv6 link-local address
    /// (`IFLA_INET6_ADDR_GEN_MODE`); `None` when IPv6 is off on the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr_gen_mode: Option<AddrGenMode>,
    /// `net.ipv6.conf.LINK.keep_addr_on_down` > 0: IPv6 addresses survive
    /// the link going down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_addr_on_down: bool,
    /// Largest MTU the device accepts (`IFLA_MAX_MTU`), when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mtu: Option<u32>,
}

/// `IFLA_INET6_ADDR_GEN_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrGenMode {
    /// EUI-64 from the MAC (0, the default).
    Eui64,
    /// No link-local address (1).
    None,
    /// RFC 7217 stable privacy (2).
    StablePrivacy,
    /// Random (3).
    Random,
}

impl AddrGenMode {
    /// Kernel number.
    pub fn number(self) -> u8 {
        match self {
            Self::Eui64 => 0,
            Self::None => 1,
            Self::StablePrivacy => 2,
            Self::Random => 3,
        }
    }

    /// From the kernel number.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            0 => Some(Self::Eui64),
            1 => Some(Self::None),
            2 => Some(Self::StablePrivacy),
            3 => Some(Self::Random),
            _ => None,
        }
    }
}

fn default_mtu() -> u32 {
    1500
}

impl Observed {
    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name.as_str() == name)
    }

    /// Every link by name, for callers that look up many (`link` is a scan:
    /// once per link of a 2000-link host makes a no-op re-apply quadratic).
    pub fn links_by_name(&self) -> std::collections::HashMap<&str, &Link> {
        self.links.iter().map(|l| (l.name.as_str(), l)).collect()
    }

    /// Renders the observation in the desired-state schema (`hostd show`).
    pub fn to_state(&self) -> NetworkState {
        let mut ports: BTreeMap<&str, Vec<&Link>> = BTreeMap::new();
        for l in &self.links {
            if let Some(c) = &l.controller {
                ports.entry(c.as_str()).or_default().push(l);
            }
        }
        let mut interfaces = Vec::new();
        for l in &self.links {
            let kind = l.kind.interface_type();
            let mut i = Interface::new(l.name.clone(), kind);
            i.state = if l.up { IfState::Up } else { IfState::Down };
            i.mtu = Mtu::new(l.mtu).ok();
            if kind == InterfaceType::Ethernet {
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
            if !v4.is_empty() {
                i.ipv4 = Some(conv(v4));
            }
            if !v6.is_empty() {
                i.ipv6 = Some(conv(v6));
            }
            let my_ports = ports.get(l.name.as_str()).cloned().unwrap_or_default();
            if let Some(b) = &l.bond {
                i.link_aggregation = Some(BondConfig {
                    mode: b.mode,
                    port: my_ports.iter().map(|p| p.name.clone()).collect(),
                    options: b.options.clone(),
                });
            }
            i.vlan = l.vlan.clone();
            if let Some(opts) = &l.bridge {
                let filtering = opts.vlan_filtering == Some(true);
                i.bridge = Some(BridgeConfig {
                    vlan: if filtering {
                        port_vlan_from_entries(&l.vlans)
                    } else {
                        None
                    },
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
