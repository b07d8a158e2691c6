//! The compiler's inputs: the connection intent (what the controller wants
//! for one server) and the inventory (the server's NICs with their LLDP
//! neighbours, and the switches' facts). Both parse from YAML or JSON,
//! kebab-case, refusing unknown fields; values with a range are the
//! validated newtypes of [`crate::types`]. Rules that span fields are checked
//! by the compiler, which names the field path and the value.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    schema::{from_json, from_yaml, BondOptions, LacpRate, ParseError},
    types::{IfName, MacAddr, Mtu, VlanId},
};

fn parse_any<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    if text.trim_start().starts_with('{') {
        from_json(text)
    } else {
        from_yaml(text)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the controller wants for one server's network connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Intent {
    /// The server's name (switch port descriptions).
    pub server: String,
    /// The networks the server joins, all carried over the same NICs.
    pub networks: Vec<Network>,
    /// How the NICs are combined, and what they are cabled to.
    pub redundancy: Redundancy,
    /// The host-side layout and names.
    #[serde(default)]
    pub host: HostOptions,
    /// The NICs to use, by name; default: every NIC of the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nics: Option<Vec<IfName>>,
}

impl Intent {
    /// Parses YAML or JSON (JSON when the text starts with `{`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parse_any(text)
    }
}

/// The kind of a network, as MetalSoft types them. `wan` is the one that
/// provides the default route when several networks have a gateway and none
/// says `default-route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkType {
    /// Internet-facing.
    Wan,
    /// Storage (iSCSI, NFS).
    San,
    /// Private tenant network.
    Lan,
}

impl NetworkType {
    /// Name in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wan => "wan",
            Self::San => "san",
            Self::Lan => "lan",
        }
    }
}

fn default_mtu() -> Mtu {
    Mtu::new(1500).unwrap_or_else(|_| unreachable!("1500 is a valid MTU"))
}

/// One network (a VLAN) the server joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    /// Name (letters, digits, `-`, `_`, `.`; at most 32).
    pub name: String,
    /// wan, san or lan.
    #[serde(rename = "type")]
    pub kind: NetworkType,
    /// The VLAN id on the switch.
    pub vlan: VlanId,
    /// The network's MTU (default 1500): the MTU of the host's interface in
    /// it; the cable carries the largest of the networks'.
    #[serde(default = "default_mtu")]
    pub mtu: Mtu,
    /// Carried untagged (the switch port's native/access VLAN). At most one
    /// network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub untagged: bool,
    /// Static addresses with their prefix (`192.0.2.10/24`); none: the host
    /// has no address in it (the VLAN is still carried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// Gateways, at most one per family, inside one of the addresses' subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<IpAddr>,
    /// Whether this network's gateway is the default route. Unset: the only
    /// network with a gateway of the family, else the only `wan` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<bool>,
    /// Further routes through this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<NetworkRoute>,
}

/// A route through a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkRoute {
    /// Destination prefix (no host bits).
    pub destination: IpNet,
    /// Next hop; default: the network's gateway of the destination's family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// Metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// Redundancy modes (MetalSoft's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedundancyMode {
    /// One NIC, no bond.
    None,
    /// One link active, the others standby (bond mode active-backup; no LACP).
    ActiveBackup,
    /// All links active: an LACP link aggregation (bond mode 802.3ad) over one
    /// switch or an MLAG pair.
    ActiveActive,
}

impl RedundancyMode {
    /// Name in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ActiveBackup => "active-backup",
            Self::ActiveActive => "active-active",
        }
    }
}

/// What the NICs are cabled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Every NIC on one switch (or one stacked switch record).
    SingleSwitch,
    /// NICs on both members of one MLAG pair (MLAG/VLT/vPC).
    MlagPair,
    /// NICs on two switches that are not a pair: no LACP across them.
    IndependentSwitches,
}

impl Topology {
    /// Name in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleSwitch => "single-switch",
            Self::MlagPair => "mlag-pair",
            Self::IndependentSwitches => "independent-switches",
        }
    }
}

/// How the NICs are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Redundancy {
    /// none, active-backup or active-active.
    pub mode: RedundancyMode,
    /// single-switch, mlag-pair or independent-switches.
    pub topology: Topology,
    /// LACPDU rate on both ends (active-active); default fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp_rate: Option<LacpRate>,
    /// Switch-side LACP fallback (the LAG forwards on port #0 alone while the
    /// server does not speak LACP, e.g. while PXE booting); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp_fallback: Option<bool>,
    /// LAG/MLAG id on the switches; default: the number ending port #0's
    /// switch port name (Ethernet10: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_id: Option<u16>,
    /// Host bond options over the compiler's defaults (kernel names).
    #[serde(default, skip_serializing_if = "BondOptions::is_empty")]
    pub bond_options: BondOptions,
}

/// Host layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostLayout {
    /// VLAN interfaces on the bond (`bond0.100`), addresses on them; the
    /// untagged network's on the bond.
    #[default]
    VlanSubinterfaces,
    /// One VLAN-aware bridge over the bond (the bond a trunk port), addresses
    /// on VLAN interfaces of the bridge (`br0.100`); the untagged network's on
    /// the bridge.
    VlanAwareBridge,
    /// A bridge per network (`br100` over `bond0.100`; the untagged network's
    /// bridge over the bond), addresses on the bridges (Oracle VM,
    /// CloudStack KVM).
    PerVlanBridges,
}

impl HostLayout {
    /// Name in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VlanSubinterfaces => "vlan-subinterfaces",
            Self::VlanAwareBridge => "vlan-aware-bridge",
            Self::PerVlanBridges => "per-vlan-bridges",
        }
    }
}

fn default_bond() -> IfName {
    IfName::new("bond0").unwrap_or_else(|_| unreachable!("bond0 is a valid name"))
}

fn default_bridge() -> IfName {
    IfName::new("br0").unwrap_or_else(|_| unreachable!("br0 is a valid name"))
}

/// Host-side layout and names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostOptions {
    /// vlan-subinterfaces (default), vlan-aware-bridge or per-vlan-bridges.
    #[serde(default)]
    pub layout: HostLayout,
    /// The bond's name (default bond0).
    #[serde(default = "default_bond")]
    pub bond: IfName,
    /// The VLAN-aware bridge's name (default br0).
    #[serde(default = "default_bridge")]
    pub bridge: IfName,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            layout: HostLayout::default(),
            bond: default_bond(),
            bridge: default_bridge(),
        }
    }
}

/// The server's NICs as its agent reports them, and the switches' facts as
/// the fabric service knows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Inventory {
    /// The server's NICs.
    pub nics: Vec<Nic>,
    /// The switches the NICs may be cabled to.
    #[serde(default)]
    pub switches: Vec<SwitchFacts>,
}

impl Inventory {
    /// Parses YAML or JSON (JSON when the text starts with `{`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parse_any(text)
    }
}

/// One NIC of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Nic {
    /// Kernel name.
    pub name: IfName,
    /// Permanent MAC address.
    pub mac: MacAddr,
    /// Link speed in Mb/s, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,
    /// The LLDP neighbour seen on it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lldp: Option<LldpNeighbor>,
}

/// An LLDP neighbour: the switch (system name and/or chassis id) and its port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LldpNeighbor {
    /// System name TLV (the switch's hostname, possibly qualified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_name: Option<String>,
    /// Chassis id TLV (usually a MAC address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis_id: Option<String>,
    /// The switch's port name (port id, or port description when the id is
    /// a MAC).
    pub port: String,
}

/// What the fabric service knows of one switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SwitchFacts {
    /// Hostname (LLDP system name).
    pub hostname: String,
    /// Chassis id it sends in LLDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis_id: Option<String>,
    /// LACP system MAC of its own (non-MLAG) LAGs, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_mac: Option<MacAddr>,
    /// Its MLAG pair, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlag: Option<MlagFacts>,
    /// Known ports; when listed, a neighbour on another port is an error.
    /// A port's Linux interface name defaults to its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<SwitchPortFacts>,
    /// Ports towards the rest of the fabric (uplinks, the peer link): they
    /// carry every VLAN of the switch's server ports, tagged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplinks: Vec<String>,
    /// Linux switches: the VLAN-aware bridge holding the VLAN table
    /// (default br0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<IfName>,
}

/// MLAG membership of a switch: both members name each other and the same
/// system MAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MlagFacts {
    /// The other member's hostname.
    pub peer: String,
    /// The LACP system MAC both members present on MLAGs.
    pub system_mac: MacAddr,
}

/// One switch port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SwitchPortFacts {
    /// The switch's name for it (`Ethernet10`, `swp10`).
    pub name: String,
    /// Linux switches: the kernel interface name, when not the port name
    /// (a lab pair's shared namespace prefixes it: `sw1-Ethernet10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<IfName>,
}
